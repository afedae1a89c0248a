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
/// With --quick the lake is cut into pieces along its folders (`Piece`), and each piece, its
/// versions and its files, is compared on a core of its own; a full audit hashes each page of
/// versions on every core.
public enum Auditor {
    /// Versions checked (hashed, or looked at with --quick) together, on every core.
    static let pageSize = 8192

    /// `manifest` is nil when none exists yet: then every file in `raw/` is an orphan.
    ///
    /// With a `bucket`, the objects are listed and streamed from it (hashed as they arrive,
    /// on `threads` connections at least 8); `lakeDir` then holds only staging files. `threads`:
    /// the cores this process may use, unless given.
    public static func run(lakeDir: String, bucket: LakeBucket? = nil, manifest: Manifest?, client: String?, quick: Bool,
                           threads: Int? = nil) throws(ManifestError) -> AuditReport {
        let scope = client.map { "\(LakeNames.rawFolder)/\($0)" } ?? LakeNames.rawFolder
        let threads = max(1, threads ?? usableCores)
        var found = Found()
        if let bucket {
            found = try audit(bucket: bucket, lakeDir: lakeDir, scope: scope, manifest: manifest, quick: quick, threads: threads)
        } else {
            if quick {
                let pieces = Piece.plan(lakeDir: lakeDir, scope: scope, threads: threads)
                let results = SlotArray<Result<Found, ManifestError>>(count: pieces.count)
                parallelFor(count: pieces.count, threads: threads, setup: { Worker(lakeDir: lakeDir, quick: true) }) { i, worker in
                    results.set(i, Result { () throws(ManifestError) in try audit(pieces[i], lakeDir: lakeDir, manifest: manifest, worker: worker) })
                }
                for result in results.values { found.add(try result!.get()) }
            } else {
                // One piece: pages of the whole scope, each hashed on every core (pieces would
                // make small pages, as few files to share out as a folder holds).
                let prefix = scope + "/"
                let whole = Piece(folder: scope, entries: LakeWalk.Listing(root: lakeDir, relative: scope, sizes: false),
                                  from: prefix, to: Manifest.prefixEnd(prefix))
                found = try audit(whole, lakeDir: lakeDir, manifest: manifest, threads: threads)
            }
        }
        var report = AuditReport(missing: found.missing.sorted(), corrupt: found.corrupt.sorted { $0.lakePath < $1.lakePath },
                                 bytesHashed: found.bytesHashed)
        report.quick = quick
        report.checked = found.checked
        report.ok = found.ok
        // The bucket's objects no version has, and the walk's files that no version had when
        // it passed them (one committed since is not an orphan).
        for f in found.unknown where try manifest?.version(atLakePath: f) == nil {
            report.orphans.append(f)
        }
        report.orphans.sort()
        var temps = Set(found.temps)
        for stale in Lake.staleOwners(root: lakeDir) {
            for f in stale.tempFiles { temps.insert(String(f.dropFirst(lakeDir.count + 1))) }
        }
        if client != nil {
            temps = temps.filter { $0.hasPrefix(scope + "/") }
        }
        report.tempFiles = temps.sorted()
        return report
    }

    /// What an audit of some of the lake found.
    struct Found: Sendable {
        var checked = 0
        var ok = 0
        var missing: [String] = []
        var corrupt: [AuditReport.Corrupt] = []
        /// Files no version had when the walk passed them (or objects no version has).
        var unknown: [String] = []
        /// Staging files of a process that is gone.
        var temps: [String] = []
        var bytesHashed: Int64 = 0

        mutating func add(_ other: Found) {
            checked += other.checked
            ok += other.ok
            missing += other.missing
            corrupt += other.corrupt
            unknown += other.unknown
            temps += other.temps
            bytesHashed += other.bytesHashed
        }

        /// A file the walk found that is no version's.
        mutating func walked(_ f: String, lakeDir: String) {
            let name = f[f.utf8.index(after: f.utf8.lastIndex(of: UInt8(ascii: "/"))!)...]
            if name.hasPrefix(Lake.tempPrefix) {
                // A live process's staging file is not a problem; a dead one's is leftover.
                if !Lake.isLiveTemp(root: lakeDir, name: String(name)) { temps.append(f) }
            } else {
                unknown.append(f)
            }
        }

        mutating func record(_ e: Manifest.LakeEntry, _ outcome: Outcome) {
            switch outcome {
            case .ok: ok += 1
            case .missing: missing.append(e.lakePath)
            case .corrupt(let sha, let size):
                corrupt.append(.init(lakePath: e.lakePath, expected: e.sha256, actual: sha, expectedSize: e.size, actualSize: size))
            }
        }
    }

    enum Outcome { case ok, missing, corrupt(actualSHA: String?, actualSize: Int64) }

    /// A piece of the lake: some entries of one folder (files, or folders with all below them)
    /// and the versions whose lake paths lie in the same stretch of byte order, from `from`
    /// up to `to`. The pieces of a folder cover its whole stretch, so a version whose folder
    /// is gone still falls in one of them and is found missing.
    struct Piece: Sendable {
        var folder: String
        var entries: LakeWalk.Listing
        var from: String
        var to: String

        /// The pieces of `scope`: its files and folders, then its folders' entries in their
        /// place, level by level, until there are enough for every core to take several.
        static func plan(lakeDir: String, scope: String, threads: Int) -> [Piece] {
            var pieces = split(lakeDir: lakeDir, folder: scope)
            for _ in 0..<4 {
                let folders = pieces.filter(\.isOneFolder).count
                guard folders > 0, folders < 4 * threads else { break }
                pieces = pieces.flatMap { p in
                    p.isOneFolder ? split(lakeDir: lakeDir, folder: "\(p.folder)/\(p.entries.name(0))") : [p]
                }
            }
            return pieces
        }

        /// One piece for each folder in `folder`, and one for the files (and versions) between
        /// two folders, each file's size read.
        static func split(lakeDir: String, folder: String) -> [Piece] {
            let listing = LakeWalk.Listing(root: lakeDir, relative: folder, sizes: true)
            let prefix = folder + "/"
            var pieces: [Piece] = []
            var cursor = prefix
            var filesFrom = 0
            for i in 0..<listing.count where listing.isFolder(i) {
                let sub = prefix + listing.name(i) + "/"
                let end = Manifest.prefixEnd(sub)
                pieces.append(Piece(folder: folder, entries: listing.slice(filesFrom..<i), from: cursor, to: sub))
                pieces.append(Piece(folder: folder, entries: listing.slice(i..<(i + 1)), from: sub, to: end))
                cursor = end
                filesFrom = i + 1
            }
            pieces.append(Piece(folder: folder, entries: listing.slice(filesFrom..<listing.count), from: cursor, to: Manifest.prefixEnd(prefix)))
            return pieces
        }

        var isOneFolder: Bool { entries.count == 1 && entries.isFolder(0) }
    }

    /// The merge of one piece: its versions beside its files, each version's file checked
    /// as a page of versions is read. With a `worker` (--quick) each size is compared where it
    /// is found, on this thread; without, each page is hashed on `threads` cores.
    static func audit(_ piece: Piece, lakeDir: String, manifest: Manifest?, worker: Worker? = nil,
                      threads: Int = 1) throws(ManifestError) -> Found {
        var found = Found()
        let quick = worker != nil
        var walk = LakeWalk(root: lakeDir, relative: piece.folder, entries: piece.entries, sizes: quick)
        try manifest?.eachLakeEntryPage(from: piece.from, to: piece.to, pageSize: pageSize, hashes: !quick) { page in
            found.checked += page.count
            var toHash: [Manifest.LakeEntry] = []
            for e in page {
                // The size the walk saw (nil: it did not see the file, which is gone, or was
                // published after the walk read its folder, or is not a regular file).
                var seen: Int64?
                while let f = walk.peek() {
                    let order = f.path.byteCompare(e.lakePath)
                    guard order <= 0 else { break }
                    _ = walk.next()
                    if order == 0 {
                        seen = f.size
                        break
                    }
                    found.walked(f.path, lakeDir: lakeDir)
                }
                guard let worker else {
                    toHash.append(e)
                    continue
                }
                if seen == nil {
                    var st = stat()
                    if worker.lstat(e.lakePath, &st), (st.st_mode & S_IFMT) == S_IFREG { seen = Int64(st.st_size) }
                }
                found.record(e, seen.map { $0 == e.size ? .ok : .corrupt(actualSHA: nil, actualSize: $0) } ?? .missing)
            }
            if !toHash.isEmpty { found.bytesHashed += hash(toHash, lakeDir: lakeDir, threads: threads, into: &found) }
        }
        while let f = walk.next() { found.walked(f.path, lakeDir: lakeDir) }
        return found
    }

    /// Hashes one page of versions on every core and adds the outcomes to `found`; returns
    /// the bytes hashed.
    private static func hash(_ page: [Manifest.LakeEntry], lakeDir: String, threads: Int, into found: inout Found) -> Int64 {
        let hashed = Atomic<Int64>(0)
        // Largest first, so the last file to finish is a small one.
        let entries = page.sorted { $0.size > $1.size }
        let results = SlotArray<Outcome>(count: entries.count)
        parallelFor(count: entries.count, threads: threads, setup: { Worker(lakeDir: lakeDir, quick: false) }) { i, worker in
            let e = entries[i]
            var st = stat()
            guard worker.lstat(e.lakePath, &st), (st.st_mode & S_IFMT) == S_IFREG else { return results.set(i, .missing) }
            do {
                let (sha, size) = try FileDigest.sha256(path: "\(lakeDir)/\(e.lakePath)", buffer: worker.buffer.raw)
                hashed.add(size, ordering: .relaxed)
                results.set(i, sha == e.sha256 && size == e.size ? .ok : .corrupt(actualSHA: sha, actualSize: size))
            } catch {
                results.set(i, .corrupt(actualSHA: nil, actualSize: Int64(st.st_size)))
            }
        }
        for (i, outcome) in results.values.enumerated() { found.record(entries[i], outcome!) }
        return hashed.load(ordering: .relaxed)
    }

    /// The audit of a lake in a bucket: its objects listed (and with a full audit streamed
    /// and hashed, on `threads` connections at least 8) against the manifest's pages; and the
    /// local folder's leftover staging files.
    private static func audit(bucket: LakeBucket, lakeDir: String, scope: String, manifest: Manifest?, quick: Bool, threads: Int) throws(ManifestError) -> Found {
        var listed: [String: Int64]
        do {
            listed = try bucket.list(under: scope)
        } catch {
            throw ManifestError("listing \(bucket.settings.url)\(scope)/ failed: \(error)")
        }
        var found = Found()
        try manifest?.eachLakeEntryPage(under: scope + "/", pageSize: pageSize, hashes: !quick) { page in
            found.checked += page.count
            let hashed = Atomic<Int64>(0)
            let results = SlotArray<Outcome>(count: page.count)
            let objects = listed
            parallelFor(count: page.count, threads: max(8, threads), setup: {}) { i, _ in
                let e = page[i]
                guard let size = objects[e.lakePath] else { return results.set(i, .missing) }
                if quick { return results.set(i, size == e.size ? .ok : .corrupt(actualSHA: nil, actualSize: size)) }
                guard let got = try? bucket.download(e.lakePath, to: nil, path: e.lakePath) else {
                    return results.set(i, .corrupt(actualSHA: nil, actualSize: size))
                }
                hashed.add(got.size, ordering: .relaxed)
                results.set(i, got.sha256 == e.sha256 && got.size == e.size ? .ok : .corrupt(actualSHA: got.sha256, actualSize: got.size))
            }
            for (i, outcome) in results.values.enumerated() { found.record(page[i], outcome!) }
            found.bytesHashed += hashed.load(ordering: .relaxed)
            for e in page { listed[e.lakePath] = nil }
        }
        found.unknown = Array(listed.keys)
        // The local folder holds staging files only; anything else there is no version's.
        for f in LakeWalk(root: lakeDir, relative: scope) { found.walked(f.path, lakeDir: lakeDir) }
        return found
    }

    /// One thread's means: a buffer to hash with, and the lake folder it last looked in, open,
    /// so that the files of one folder (which come one after another) are each one step from it.
    final class Worker: @unchecked Sendable {  // used by one thread at a time
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
