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
///
/// The manifest's versions come page by page in byte order of their lake paths, and the lake's
/// folders are walked in the same order beside them (a merge of two sorted lists), so that an
/// audit holds one page and the folders on the way down, whatever the size of the history.
public enum Auditor {
    /// Versions checked (hashed, or looked at with --quick) together, on every core.
    static let pageSize = 8192

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
        var report = AuditReport()
        report.quick = quick
        var walk = LakeWalk(root: lakeDir, relative: scope)
        var orphans: [String] = []
        var temps = Set<String>()
        // A file the walk found that is no version's.
        func unknown(_ f: String) {
            let name = f[f.index(after: f.lastIndex(of: "/")!)...]
            if name.hasPrefix(Lake.tempPrefix) {
                // A live process's staging file is not a problem; a dead one's is leftover.
                if !Lake.isLiveTemp(root: lakeDir, name: String(name)) { temps.insert(f) }
            } else {
                orphans.append(f)
            }
        }
        try manifest?.eachLakeEntryPage(under: scope + "/", pageSize: pageSize, hashes: !quick) { page in
            report.checked += page.count
            var present: [Manifest.LakeEntry] = []
            present.reserveCapacity(page.count)
            for e in page {
                if bucket != nil {
                    present.append(e)
                    continue
                }
                while let f = walk.peek(), f.bytePrecedes(e.lakePath) {
                    unknown(f)
                    _ = walk.next()
                }
                if walk.peek() == e.lakePath { _ = walk.next() }
                // Not seen by the walk (which read its folder before the version was published,
                // or the file is gone): looked at again below, as every other one.
                present.append(e)
            }
            report.bytesHashed += check(present, lakeDir: lakeDir, bucket: bucket, objects: listed, quick: quick, threads: threads, into: &report)
            if bucket != nil { for e in page { listed[e.lakePath] = nil } }
        }
        while let f = walk.next() { unknown(f) }
        report.missing.sort()
        report.corrupt.sort { $0.lakePath < $1.lakePath }

        // The bucket's objects no version has, and the walk's files that no version had when
        // it passed them (one committed since is not an orphan).
        orphans += listed.keys
        var confirmed: [String] = []
        for f in orphans {
            if try manifest?.version(atLakePath: f) == nil { confirmed.append(f) }
        }
        report.orphans = confirmed.sorted()
        for stale in Lake.staleOwners(root: lakeDir) {
            for f in stale.tempFiles { temps.insert(String(f.dropFirst(lakeDir.count + 1))) }
        }
        if client != nil {
            temps = temps.filter { $0.hasPrefix(scope + "/") }
        }
        report.tempFiles = temps.sorted()
        return report
    }

    /// Hashes (or, `quick`, sizes) one page of versions on every core and adds the outcomes to
    /// `report`; returns the bytes hashed.
    private static func check(_ page: [Manifest.LakeEntry], lakeDir: String, bucket: LakeBucket?, objects: [String: Int64], quick: Bool,
                              threads: Int, into report: inout AuditReport) -> Int64 {
        let hashed = Atomic<Int64>(0)
        // Largest first, so the last file to finish is a small one.
        let entries = quick ? page : page.sorted { $0.size > $1.size }
        enum Outcome { case ok, missing, corrupt(actualSHA: String?, actualSize: Int64) }
        let results = SlotArray<Outcome>(count: entries.count)
        parallelFor(count: entries.count, threads: bucket == nil ? max(1, threads) : max(8, threads), setup: { Worker(lakeDir: lakeDir, quick: quick) }) { i, worker in
            let e = entries[i]
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
            guard worker.lstat(e.lakePath, &st), (st.st_mode & S_IFMT) == S_IFREG else {
                results.set(i, .missing)
                return
            }
            if quick {
                results.set(i, Int64(st.st_size) == e.size ? .ok : .corrupt(actualSHA: nil, actualSize: Int64(st.st_size)))
                return
            }
            do {
                let (sha, size) = try FileDigest.sha256(path: full, buffer: worker.buffer.raw)
                hashed.add(size, ordering: .relaxed)
                results.set(i, sha == e.sha256 && size == e.size ? .ok : .corrupt(actualSHA: sha, actualSize: size))
            } catch {
                results.set(i, .corrupt(actualSHA: nil, actualSize: Int64(st.st_size)))
            }
        }
        for (i, outcome) in results.values.enumerated() {
            switch outcome! {
            case .ok: report.ok += 1
            case .missing: report.missing.append(entries[i].lakePath)
            case .corrupt(let sha, let size):
                report.corrupt.append(.init(lakePath: entries[i].lakePath, expected: entries[i].sha256, actual: sha,
                                            expectedSize: entries[i].size, actualSize: size))
            }
        }
        return hashed.load(ordering: .relaxed)
    }

    /// One thread's means: a buffer to hash with, and the lake folder it last looked in, open,
    /// so that the files of one folder (which come one after another) are each one step from it.
    private final class Worker: @unchecked Sendable {  // used by one thread at a time
        let lakeDir: String
        let buffer: IOBuffer
        private var folder = ""
        private var fd: Int32 = -1

        init(lakeDir: String, quick: Bool) {
            self.lakeDir = lakeDir
            buffer = IOBuffer(size: quick ? 4096 : 1 << 20)
        }

        deinit { if fd >= 0 { close(fd) } }

        /// `lstat` of a path relative to the lake's root.
        func lstat(_ relative: String, _ st: inout stat) -> Bool {
            let bytes = relative.utf8
            guard let slash = bytes.lastIndex(of: UInt8(ascii: "/")) else { return Glibc.lstat("\(lakeDir)/\(relative)", &st) == 0 }
            let dir = relative[..<slash]
            if fd < 0 || !dir.utf8.elementsEqual(folder.utf8) {
                if fd >= 0 { close(fd) }
                folder = String(dir)
                fd = open("\(lakeDir)/\(folder)", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            }
            guard fd >= 0 else { return false }
            return fstatat(fd, String(relative[bytes.index(after: slash)...]), &st, AT_SYMLINK_NOFOLLOW) == 0
        }
    }
}
