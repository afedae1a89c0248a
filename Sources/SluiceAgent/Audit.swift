import Foundation
import SluiceLake
import SluiceManifest
import Synchronization
import SluiceSupport
import SluiceIngest
import SluiceConfig
import SluiceSources
import SluiceTransform
import SluiceFormats

/// What `sluice audit` found.
public struct AuditReport: Sendable, Encodable {
    public struct Corrupt: Sendable, Encodable {
        public var lakePath: String
        public var expected: String
        public var actual: String?
        public var expectedSize: Int64
        public var actualSize: Int64
        package enum CodingKeys: String, CodingKey {
            case lakePath = "lake_path", expected, actual, expectedSize = "expected_size", actualSize = "actual_size"
        }
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(lakePath, forKey: .lakePath)
            try c.encode(expected, forKey: .expected)
            try c.encode(actual, forKey: .actual)
            try c.encode(expectedSize, forKey: .expectedSize)
            try c.encode(actualSize, forKey: .actualSize)
        }

        package init(lakePath: String, expected: String, actual: String? = nil, expectedSize: Int64, actualSize: Int64) {
            self.lakePath = lakePath
            self.expected = expected
            self.actual = actual
            self.expectedSize = expectedSize
            self.actualSize = actualSize
        }
    }
    public var checked = 0
    public var ok = 0
    public var missing: [String] = []
    public var corrupt: [Corrupt] = []
    public var orphans: [String] = []
    /// Staging files left by a process that died (removed by the next pull or daemon start).
    public var tempFiles: [String] = []
    /// Bytes re-hashed (0 with --quick).
    public var bytesHashed: Int64 = 0
    public var quick = false

    package enum CodingKeys: String, CodingKey {
        case checked, ok, missing, corrupt, orphans, tempFiles = "temp_files", bytesHashed = "bytes_hashed", quick
    }

    public var clean: Bool { missing.isEmpty && corrupt.isEmpty && orphans.isEmpty && tempFiles.isEmpty }

    package init(missing: [String] = [], corrupt: [Corrupt] = [], orphans: [String] = [], tempFiles: [String] = [], bytesHashed: Int64 = 0) {
        self.missing = missing
        self.corrupt = corrupt
        self.orphans = orphans
        self.tempFiles = tempFiles
        self.bytesHashed = bytesHashed
    }
}

/// Re-hashes every lake file on every core and compares it with the manifest; finds orphans
/// and leftover staging files. Reads only: it never changes the lake or the manifest.
public enum Auditor {
    /// `manifest` is nil when none exists yet: then every file in `raw/` is an orphan.
    ///
    /// With a `bucket`, the objects are listed and streamed from it (hashed as they arrive,
    /// on `threads` connections at least 8); `lakeDir` then holds only staging files.
    public static func run(lakeDir: String, bucket: LakeBucket? = nil, manifest: Manifest?, client: String?, quick: Bool,
                           threads: Int = ProcessInfo.processInfo.activeProcessorCount) throws(ManifestError) -> AuditReport {
        let scope = client.map { "\(LakeNames.rawFolder)/\($0)" } ?? LakeNames.rawFolder
        var listed: [String: Int64] = [:]
        if let bucket {
            do {
                listed = try bucket.list(under: scope)
            } catch {
                throw ManifestError("listing \(bucket.settings.url)\(scope)/ failed: \(error)")
            }
        }
        var entries = try manifest?.lakeEntries(client: client) ?? []
        // Largest first, so the last file to finish is a small one.
        entries.sort { $0.size > $1.size }
        enum Outcome { case ok, missing, corrupt(actualSHA: String?, actualSize: Int64) }
        let results = SlotArray<Outcome>(count: entries.count)
        let hashed = Atomic<Int64>(0)
        let frozen = entries
        let objects = listed
        parallelFor(count: frozen.count, threads: bucket == nil ? max(1, threads) : max(8, threads), setup: { IOBuffer(size: 1 << 20) }) { i, buffer in
            let e = frozen[i]
            if let bucket {
                guard let size = objects[e.lakePath] else { return results.set(i, .missing) }
                if quick { return results.set(i, size == e.size ? .ok : .corrupt(actualSHA: nil, actualSize: size)) }
                guard let got = try? bucket.download(e.lakePath, to: nil, path: e.lakePath) else {
                    return results.set(i, .corrupt(actualSHA: nil, actualSize: size))
                }
                hashed.add(got.size, ordering: .relaxed)
                return results.set(i, got.sha256 == e.sha256 && got.size == e.size ? .ok : .corrupt(actualSHA: got.sha256, actualSize: got.size))
            }
            let full = "\(lakeDir)/\(e.lakePath)"
            var st = stat()
            guard lstat(full, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
                results.set(i, .missing)
                return
            }
            if quick {
                results.set(i, Int64(st.st_size) == e.size ? .ok : .corrupt(actualSHA: nil, actualSize: Int64(st.st_size)))
                return
            }
            do {
                let (sha, size) = try FileDigest.sha256(path: full, buffer: buffer.raw)
                hashed.add(size, ordering: .relaxed)
                results.set(i, sha == e.sha256 && size == e.size ? .ok : .corrupt(actualSHA: sha, actualSize: size))
            } catch {
                results.set(i, .corrupt(actualSHA: nil, actualSize: Int64(st.st_size)))
            }
        }
        var report = AuditReport()
        report.quick = quick
        report.checked = entries.count
        report.bytesHashed = hashed.load(ordering: .relaxed)
        for (i, outcome) in results.values.enumerated() {
            switch outcome! {
            case .ok: report.ok += 1
            case .missing: report.missing.append(entries[i].lakePath)
            case .corrupt(let sha, let size):
                report.corrupt.append(.init(lakePath: entries[i].lakePath, expected: entries[i].sha256, actual: sha,
                                            expectedSize: entries[i].size, actualSize: size))
            }
        }
        report.missing.sort()
        report.corrupt.sort { $0.lakePath < $1.lakePath }

        let known = Set(entries.map(\.lakePath))
        var files: [String] = bucket == nil ? [] : listed.keys.sorted()
        if bucket == nil { listFiles(root: lakeDir, relative: scope, into: &files) }
        var temps = Set<String>()
        for stale in Lake.staleOwners(root: lakeDir) {
            for f in stale.tempFiles { temps.insert(String(f.dropFirst(lakeDir.count + 1))) }
        }
        var orphans: [String] = []
        for f in files {
            let name = f[f.index(after: f.lastIndex(of: "/")!)...]
            if name.hasPrefix(Lake.tempPrefix) {
                // A live process's staging file is not a problem; a dead one's is leftover.
                if !Lake.isLiveTemp(root: lakeDir, name: String(name)) { temps.insert(f) }
            } else if !known.contains(f) {
                orphans.append(f)
            }
        }
        if client != nil {
            temps = temps.filter { $0.hasPrefix(scope + "/") }
        }
        report.orphans = orphans.sorted()
        report.tempFiles = temps.sorted()
        return report
    }

    /// Every non-folder entry below `root/relative`, as paths relative to `root`.
    package static func listFiles(root: String, relative: String, into out: inout [String]) {
        for name in Lake.listDirectory("\(root)/\(relative)") {
            let rel = "\(relative)/\(name)"
            var st = stat()
            guard lstat("\(root)/\(rel)", &st) == 0 else { continue }
            if (st.st_mode & S_IFMT) == S_IFDIR {
                listFiles(root: root, relative: rel, into: &out)
            } else {
                out.append(rel)
            }
        }
    }
}
