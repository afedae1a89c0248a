import Foundation
import Logging
@testable import SluiceAgent
import SluiceLake
import SluiceManifest
import SluiceTestSupport
import Testing
import SluiceSupport
import SluiceIngest
import SluiceConfig
import SluiceSources
import SluiceTransform
import SluiceFormats

/// The transform of new versions overlaps their batch's sync and commit; these check that it
/// keeps the order of a write: nothing is published for a version that was not committed,
/// and every version is transformed exactly once with the manifest's own lineage.
@Suite(.enabled(if: ParquetTests.readersAvailable, "needs pyarrow and duckdb"))
struct EarlyTransformTests {
    static let mapping = """
        [datasets.orders]
        match = ["orders_*.csv"]
        format = "csv"
        fields = [
          { name = "id", source = "id", type = "int64", required = true },
          { name = "amount", source = "amount", type = "decimal(10,2)" },
        ]
        """

    /// More files than the early queue takes: the rest are transformed after the pass, and
    /// each version still gets exactly one transform, whose `_ingested_at` is the manifest's.
    @Test func everyVersionOfABigPullIsTransformedOnceWithTheManifestsIngestTime() throws {
        let dir = TempDir("early")
        dir.config()
        dir.write("mappings/acme.toml", Self.mapping)
        let files = EarlyTransforms.maxQueued * 3
        for i in 0..<files { dir.write("drop/orders_\(i).csv", "id,amount\n\(i),\(i).50\n\(i + 1000),1.25\n") }
        let agent = try loadAgent(dir)
        let pulled = try agent.pull(client: "acme", source: nil)
        #expect(pulled.counts.new == files)
        #expect(pulled.transforms.count == files && pulled.transforms.allSatisfy { $0.status == .ok && $0.rowsWritten == 2 },
                "\(pulled.transforms.filter { $0.status != .ok })")
        #expect(Set(pulled.transforms.map(\.path)).count == files)
        let rows = try TestManifest.query(dir, """
            SELECT count(*), count(DISTINCT version_id) FROM transform;
            SELECT v.ingested_at, t.output_path FROM transform t JOIN version v ON v.id = t.version_id ORDER BY t.id LIMIT 1;
            """, separator: "\t").stdout.split(separator: "\n").map { $0.split(separator: "\t").map(String.init) }
        #expect(rows.first == ["\(files)", "\(files)"])
        let first = try #require(rows.dropFirst().first)
        let o = try FormatTests.check(dir.sub("lake/\(first[1])"), """
            d = duck("SELECT strftime(min(_ingested_at), '%Y-%m-%dT%H:%M:%S.%fZ'), count(*) FROM $P")
            print(json.dumps({"pyarrow": t.column('_ingested_at')[0].as_py().strftime('%Y-%m-%dT%H:%M:%S.%fZ'), "duck": [str(x) for x in d]}))
            """)
        #expect(o["pyarrow"] as? String == first[0] && (o["duck"] as? [String])?.first == first[0], "\(o) vs \(first[0])")
        // A second pull finds nothing new and nothing left to transform.
        let again = try agent.pull(client: "acme", source: nil)
        #expect(again.counts.new == 0 && again.transforms.isEmpty)
    }

    /// A staged copy whose batch did not commit: the early transform runs, but publishes no
    /// output, records nothing, and leaves no temp file.
    @Test func aVersionThatIsNotCommittedGetsNoOutput() throws {
        let dir = TempDir("early-uncommitted")
        dir.config()
        dir.write("mappings/acme.toml", Self.mapping)
        let agent = try loadAgent(dir)
        let lake = try agent.openLake()
        let manifest = try agent.openManifest()
        let mapping = try #require(try agent.mappings()["acme"])
        try lake.prepare(folders: ["raw/acme/drop"])
        var file = try lake.stage(inFolder: "raw/acme/drop")
        try Array("id,amount\n1,2.50\n".utf8).withUnsafeBytes { try file.write($0) }
        let sealed = file.seal(startWriteback: false)
        let early = EarlyTransforms(transformer: Transformer(lake: lake, mapping: mapping), manifest: manifest, logger: testLogger)
        let settle = try #require(early.staged(StagedVersion(client: "acme", source: "drop", path: RelativePath("orders_1.csv"), version: 1,
                                                             sha256: sealed.sha256, lakePath: "raw/acme/drop/orders_1.v1.csv",
                                                             ingestedAt: Timestamp.now(), stagedPath: sealed.path)))
        sealed.discard()  // the batch failed: its staged file is removed, then it settles
        settle(nil)
        #expect(try early.finish().isEmpty)
        let processed = FileManager.default.enumerator(atPath: dir.sub("lake/processed"))?.allObjects as? [String] ?? []
        #expect(processed.allSatisfy { !$0.hasSuffix(".parquet") && !$0.contains(".%tmp") }, "\(processed)")
        let count = try TestManifest.query(dir, "SELECT count(*) FROM transform")
        #expect(count.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "0")
    }
}
