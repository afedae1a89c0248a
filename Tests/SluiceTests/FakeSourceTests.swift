import Foundation
import SluiceIngest
import SluiceLake
import SluiceManifest
import SluiceSupport
import SluiceTestSupport
import Synchronization
import Testing

/// An in-memory source whose files and faults the test sets: the ingest road's failure paths
/// without a disk, a server or a second process.
final class FakeSource: Source, @unchecked Sendable {  // set up before the pass, then only read
    struct File {
        var path: String
        var bytes: [UInt8]
        /// The stream ends after this many bytes (a connection cut short).
        var endsAfter: Int? = nil
        /// After the last read, the file says it changed (it was rewritten meanwhile).
        var changedWhileRead = false
        /// Gone when opened.
        var vanished = false
    }

    let name = "fake"
    let minAgeNanoseconds: Int64 = 0
    let afterIngest = AfterIngest.keep
    var files: [File] = []
    /// The listing throws after handing out this many candidates.
    var listingFailsAfter: Int? = nil

    func beginPass(moveTargets: [String]) throws(SourceError) -> any SourcePass { Pass(source: self) }

    struct Pass: SourcePass {
        let source: FakeSource

        func list(issue: (ListingIssue) -> Void, candidate: (Candidate) -> Void) throws(SourceError) {
            for (i, f) in source.files.enumerated() {
                if let n = source.listingFailsAfter, i == n { throw SourceError("the listing broke off after \(n) files") }
                candidate(Candidate(path: RelativePath(f.path), size: Int64(f.bytes.count), mtimeNs: 1_000_000_000))
            }
        }

        func open(_ candidate: Candidate) throws(SourceError) -> any ByteStream {
            guard let f = source.files.first(where: { RelativePath($0.path) == candidate.path }) else { throw SourceError("no such file") }
            if f.vanished { throw SourceError.vanished("file vanished before it could be read") }
            return Stream(file: f)
        }

        func applyAfterIngest(_ action: AfterIngest, to candidate: Candidate) throws(SourceError) {}
        func end() {}
    }

    final class Stream: ByteStream {
        let file: File
        var offset = 0
        init(file: File) { self.file = file }

        func read(into buffer: UnsafeMutableRawBufferPointer) throws(SourceError) -> Int {
            let end = min(file.bytes.count, file.endsAfter ?? .max)
            let n = min(buffer.count, end - offset, 1000)
            guard n > 0 else { return 0 }
            file.bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + offset, byteCount: n) }
            offset += n
            return n
        }

        func changedWhileReading(bytesRead: Int64) -> String? {
            if bytesRead != Int64(file.bytes.count) { return "size changed while copying (read \(bytesRead) of \(file.bytes.count) bytes)" }
            return file.changedWhileRead ? "file was modified while copying" : nil
        }

        func close() {}
    }
}

@Suite struct FakeSourceTests {
    static func ingestor(_ dir: TempDir) throws -> (Ingestor, Manifest, Lake) {
        let lake = try Lake(root: dir.sub("lake"))
        let manifest = try Manifest(path: dir.sub("manifest.sqlite"))
        return (Ingestor(lake: lake, manifest: manifest, stateDir: dir.sub("state"), logger: testLogger, workers: 3, batchSize: 2), manifest, lake)
    }

    static func bytes(_ n: Int, seed: UInt8) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) } }

    @Test func aStreamCutShortOrAFileChangedWhileCopiedStoresNothingOfIt() throws {
        let dir = TempDir("fake")
        let (ingestor, manifest, _) = try Self.ingestor(dir)
        let source = FakeSource()
        source.files = [
            .init(path: "a.csv", bytes: Self.bytes(5_000, seed: 1)),
            .init(path: "short.csv", bytes: Self.bytes(5_000, seed: 2), endsAfter: 2_500),
            .init(path: "changed.csv", bytes: Self.bytes(5_000, seed: 3), changedWhileRead: true),
            .init(path: "gone.csv", bytes: Self.bytes(10, seed: 4), vanished: true),
            .init(path: "b/c.csv", bytes: Self.bytes(70_000, seed: 5)),
        ]
        let report = try ingestor.pull(client: "acme", sources: [source], trigger: "test")
        let byPath = Dictionary(uniqueKeysWithValues: report.files.map { ($0.path, $0) })
        #expect(byPath["a.csv"]?.status == .new && byPath["b/c.csv"]?.status == .new)
        #expect(byPath["short.csv"]?.status == .skipped && byPath["short.csv"]?.error?.contains("size changed") == true)
        #expect(byPath["changed.csv"]?.status == .skipped && byPath["changed.csv"]?.error?.contains("modified") == true)
        #expect(byPath["gone.csv"]?.status == .skipped && byPath["gone.csv"]?.problem == .vanished)
        #expect(report.counts.new == 2 && report.counts.skipped == 3 && report.counts.failed == 0)
        // What was stored is byte for byte what was offered, and nothing else is left.
        let stored = try #require(byPath["b/c.csv"]?.lakePath)
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir.sub("lake/\(stored)"))) == Data(Self.bytes(70_000, seed: 5)))
        #expect(lakeLeftovers(dir).isEmpty)
        #expect(try manifest.knownFiles(client: "acme", source: "fake").count == 2)

        // The next pass, with the faults gone, takes the files that were skipped, and only them.
        source.files = source.files.map { var f = $0; f.endsAfter = nil; f.changedWhileRead = false; f.vanished = false; return f }
        let again = try ingestor.pull(client: "acme", sources: [source], trigger: "test")
        #expect(again.counts.new == 3 && again.counts.unchanged == 2)
        #expect(try manifest.knownFiles(client: "acme", source: "fake").count == 5)
    }

    @Test func aListingThatBreaksOffMidwayKeepsWhatWasListedBefore() throws {
        let dir = TempDir("fake-listing")
        let (ingestor, manifest, _) = try Self.ingestor(dir)
        let source = FakeSource()
        source.files = (0..<7).map { .init(path: "f\($0).csv", bytes: Self.bytes(100 + $0, seed: UInt8($0))) }
        source.listingFailsAfter = 5
        let report = try ingestor.pull(client: "acme", sources: [source], trigger: "test")
        #expect(report.sourceErrors.map(\.message) == ["the listing broke off after 5 files"])
        #expect(!report.succeeded)
        // The five listed before the break are stored whole, in their batches.
        #expect(report.counts.new == 5)
        #expect(try manifest.knownFiles(client: "acme", source: "fake").count == 5)
        #expect(lakeLeftovers(dir).isEmpty)
        source.listingFailsAfter = nil
        let again = try ingestor.pull(client: "acme", sources: [source], trigger: "test")
        #expect(again.succeeded && again.counts.new == 2 && again.counts.unchanged == 5)
    }
}
