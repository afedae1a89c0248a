import CSluiceLinux
import Crypto
import SluiceSupport
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The on-disk data lake: raw versions, staging and the no-clobber publish.
///
/// A file is staged as a temp file **in the folder it will be published in**, so that the
/// publish is a same-folder `renameat2(RENAME_NOREPLACE)`: cross-folder renames take a
/// file-system-wide lock in Linux and would serialize every publish. Temp names are
/// `.%tmp-<owner>-<n>`; `%` followed by `t` never occurs in a version's name (lake names only
/// hold `%` as `%HH`), so a temp file can never be mistaken for a version.
///
/// Each process owns `<root>/.sluice/tmp/<owner>/`, guarded by an `flock` on
/// `<root>/.sluice/tmp/<owner>.lock` (taken before the folder exists), with a journal `folders`
/// listing (fsync'd before first use) every folder it stages in. At start,
/// a process removes the temp files of every owner whose lock is free, folder by folder from
/// that owner's journal, so clean-up never walks the whole lake. Thread-safe.
///
/// With a `bucket` (`[lake] url`), published files are objects in it and `root` holds only
/// this host's staging: temp files are made in the staging folder and uploaded by `publish`.
public final class Lake: Sendable {
    public let root: String
    /// The S3 lake the files are published to; nil: they are published below `root`.
    public let bucket: LakeBucket?
    /// This process's staging folder (absolute).
    public let stagingDirectory: String
    /// This process's owner id, part of every temp name.
    public let owner: String
    private let lockFD: Int32
    private let journalFD: Int32
    private let counter = Atomic<Int>(0)
    /// Folders known to exist and already in this process's journal.
    private let readyFolders = Mutex<Set<String>>([])
    /// Folders (absolute) that hold the entry of a folder this process created, not yet
    /// fsync'd. `syncDirectories` syncs them for the folders it syncs, so a published file's
    /// whole chain of new folders is durable before its manifest row is committed.
    ///
    /// Each entry carries the number of the last folder created in it, so that a sync that
    /// began before a newer folder was made there does not strike that folder off.
    private let unsyncedParents = Mutex<(entries: [String: Int], created: Int)>(([:], 0))

    /// Multipart uploads to the bucket that processes of this host started and died before
    /// finishing: `abortUnfinishedUploads` aborts them.
    public let uploadsLeftByCrashes: [(key: String, uploadID: String)]

    /// The prefix of every temp file name.
    public static let tempPrefix = ".%tmp-"

    /// Opens (creating if needed) the lake at `root`, removes temp files left by dead
    /// processes and creates this process's own staging folder.
    public init(root: String, bucket: LakeBucket? = nil) throws(SystemCallError) {
        self.root = root
        self.bucket = bucket
        try makeDirectories(root)
        let tmpRoot = "\(root)/\(LakeNames.internalFolder)/tmp"
        try makeDirectories(tmpRoot)
        if bucket == nil { try makeDirectories("\(root)/\(LakeNames.rawFolder)") }
        uploadsLeftByCrashes = Self.removeStaleStaging(root: root)
        // The lock comes first and stays outside the owner's folder: a folder never exists
        // without a held lock, so another process's clean-up can never take a live one.
        var owner = ""
        var fd: Int32 = -1
        while fd < 0 {
            owner = "\(getpid())-\(String(UInt64.random(in: 0...UInt64.max), radix: 36))"
            fd = try Self.takeLock("\(tmpRoot)/\(owner).lock")
        }
        let dir = "\(tmpRoot)/\(owner)"
        let journalPath = "\(dir)/folders"
        var jfd: Int32 = -1
        do throws(SystemCallError) {
            try systemCall("mkdir", dir) { mkdir(dir, 0o700) }
            jfd = try systemCall("open", journalPath) { open(journalPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600) }
            try syncDirectory(dir)
            try syncDirectory(tmpRoot)
        } catch {
            closeQuietly(jfd)
            Self.removeTree(dir)
            unlink("\(tmpRoot)/\(owner).lock")
            closeQuietly(fd)
            throw error
        }
        self.owner = owner
        self.stagingDirectory = dir
        self.lockFD = fd
        self.journalFD = jfd
    }

    deinit {
        // Temp files of this process were either published or removed: drop the folder, then
        // the lock file (while still holding it), then the lock.
        Self.removeTree(stagingDirectory)
        unlink("\(stagingDirectory).lock")
        closeQuietly(journalFD)
        closeQuietly(lockFD)
    }

    /// Creates and locks a new lock file. Returns -1 when another process removed it between
    /// the open and the lock (the caller picks another name).
    private static func takeLock(_ path: String) throws(SystemCallError) -> Int32 {
        let fd = try systemCall("open", path) { open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600) }
        do {
            try systemCall("flock", path) { flock(fd, LOCK_EX) }
        } catch {
            closeQuietly(fd)
            throw error
        }
        if !stillNamed(path, fd) {
            closeQuietly(fd)
            return -1
        }
        return fd
    }

    /// Whether `path` still names the file open as `fd`.
    private static func stillNamed(_ path: String, _ fd: Int32) -> Bool {
        var a = stat()
        var b = stat()
        return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino
    }

    /// A staging owner whose process is gone, with its temp files (absolute paths).
    public struct StaleOwner: Sendable {
        public var folder: String
        public var tempFiles: [String]
        /// Multipart uploads to an S3 lake it started (`uploads` in its folder): key and id.
        public var uploads: [(key: String, uploadID: String)]
    }

    /// Owners under `<root>/.sluice/tmp` whose process is gone, with the temp files they left.
    /// Used by `audit` to report leftovers without removing them.
    public static func staleOwners(root: String) -> [StaleOwner] {
        withStaleOwners(root: root) { $0 }
    }

    /// Calls `body` with the stale owners while holding each one's lock, so that nobody can
    /// take the same owner while `body` cleans up after it.
    private static func withStaleOwners<T>(root: String, _ body: ([StaleOwner]) -> T) -> T {
        let tmpRoot = "\(root)/\(LakeNames.internalFolder)/tmp"
        var owners = Set<String>()
        for name in listDirectory(tmpRoot) {
            owners.insert(name.hasSuffix(".lock") ? String(name.dropLast(5)) : name)
        }
        var stale: [StaleOwner] = []
        var held: [(fd: Int32, path: String)] = []
        for owner in owners.sorted() {
            let lockPath = "\(tmpRoot)/\(owner).lock"
            let fd = open(lockPath, O_RDWR | O_CLOEXEC)
            if fd >= 0 {
                if flock(fd, LOCK_EX | LOCK_NB) != 0 || !stillNamed(lockPath, fd) {
                    closeQuietly(fd)  // live, or just replaced
                    continue
                }
                held.append((fd, lockPath))
            }
            // No lock file at all: left by a clean-up that was cut short; the folder is stale.
            let dir = "\(tmpRoot)/\(owner)"
            stale.append(StaleOwner(folder: dir, tempFiles: tempFiles(root: root, owner: owner, dir: dir), uploads: uploads(dir: dir)))
        }
        let result = body(stale)
        for h in held { closeQuietly(h.fd) }
        return result
    }

    private static func tempFiles(root: String, owner: String, dir: String) -> [String] {
        var files: [String] = []
        let journal = (try? readSmallFile("\(dir)/folders")) ?? []
        var seen = Set<String>()
        let prefix = "\(tempPrefix)\(owner)-"
        for line in journal.split(separator: UInt8(ascii: "\n")) {
            let folder = String(decoding: line, as: UTF8.self)
            guard seen.insert(folder).inserted, !folder.contains("..") else { continue }
            for name in listDirectory("\(root)/\(folder)") where name.hasPrefix(prefix) {
                files.append("\(root)/\(folder)/\(name)")
            }
        }
        // An S3 lake's temp files are in the owner's folder itself.
        for name in listDirectory(dir) where name.hasPrefix(prefix) { files.append("\(dir)/\(name)") }
        return files
    }

    /// The journal of multipart uploads an owner started: `<upload id> <key>` lines.
    private static func uploads(dir: String) -> [(key: String, uploadID: String)] {
        let journal = (try? readSmallFile("\(dir)/uploads")) ?? []
        return journal.split(separator: UInt8(ascii: "\n")).compactMap { line in
            guard let space = line.firstIndex(of: UInt8(ascii: " ")) else { return nil }
            return (String(decoding: line[(space + 1)...], as: UTF8.self), String(decoding: line[..<space], as: UTF8.self))
        }
    }

    /// Notes a multipart upload this process started, so that the next start aborts it if
    /// this process dies before it is completed or aborted.
    func journalUpload(key: String, uploadID: String) {
        let line = Array("\(uploadID) \(key)\n".utf8)
        let path = "\(stagingDirectory)/uploads"
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        _ = line.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }
        closeQuietly(fd)
    }

    /// Whether a temp file name belongs to a live process (its owner's lock is held).
    public static func isLiveTemp(root: String, name: String) -> Bool {
        guard name.hasPrefix(tempPrefix) else { return false }
        let rest = name.dropFirst(tempPrefix.count)
        guard let dash = rest.lastIndex(of: "-") else { return false }
        let owner = String(rest[..<dash])
        guard !owner.contains("/"), !owner.hasPrefix(".") else { return false }
        let fd = open("\(root)/\(LakeNames.internalFolder)/tmp/\(owner).lock", O_RDWR | O_CLOEXEC)
        if fd < 0 { return false }
        defer { closeQuietly(fd) }
        return flock(fd, LOCK_EX | LOCK_NB) != 0
    }

    /// Removes the temp files, journal folder and lock file of every owner whose process is
    /// gone; returns the multipart uploads those owners had started (to abort).
    static func removeStaleStaging(root: String) -> [(key: String, uploadID: String)] {
        withStaleOwners(root: root) { stale in
            for owner in stale {
                for f in owner.tempFiles { unlink(f) }
                removeTree(owner.folder)
                unlink("\(owner.folder).lock")
            }
            return stale.flatMap(\.uploads)
        }
    }

    static func readSmallFile(_ path: String) throws(SystemCallError) -> [UInt8] {
        let fd = try systemCall("open", path) { open(path, O_RDONLY | O_CLOEXEC) }
        defer { closeQuietly(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = try systemCall("read", path) { buf.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) } }
            if n == 0 { break }
            out += buf[0..<n]
        }
        return out
    }

    /// Creates a new, empty temp file in `folder` (relative to the root), where it will be
    /// published. It is created read-only (0440), the mode it keeps once published; this
    /// descriptor may still write.
    ///
    /// Call `prepare(folders:)` for the folder first, once per batch.
    public func stage(inFolder folder: String) throws(SystemCallError) -> StagedFile {
        let n = counter.add(1, ordering: .relaxed).newValue
        let path = "\(directory(staging: folder))/\(Self.tempPrefix)\(owner)-\(n)"
        let fd = try systemCall("open", path) { open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o440) }
        return StagedFile(fd: fd, path: path)
    }

    /// A fresh temp file name in `folder` (relative to the root), for a caller that creates
    /// the file itself (with `O_EXCL`): like `stage`'s files, it is journaled, so a crash
    /// leaves nothing behind that the next start does not remove. Prepares the folder.
    public func tempPath(inFolder folder: String) throws(SystemCallError) -> String {
        try prepare(folder: folder)
        let n = counter.add(1, ordering: .relaxed).newValue
        return "\(directory(staging: folder))/\(Self.tempPrefix)\(owner)-\(n)"
    }

    /// Where temp files for `folder` are made: the folder itself, or, on an S3 lake, this
    /// process's staging folder (removed whole after a crash).
    private func directory(staging folder: String) -> String {
        bucket == nil ? "\(root)/\(folder)" : stagingDirectory
    }

    /// Makes sure each folder exists and is in this process's journal before the first temp
    /// file is created in it; the folders it creates are made durable by `syncDirectories`,
    /// which every publish calls before its commit. Cheap for folders already prepared.
    public func prepare(folders: some Sequence<String>) throws(SystemCallError) {
        for folder in folders { try prepare(folder: folder) }
    }

    private func prepare(folder: String) throws(SystemCallError) {
        if bucket != nil { return }
        if readyFolders.withLock({ $0.contains(folder) }) { return }
        try readyFolders.withLock { (ready) throws(SystemCallError) in
            if ready.contains(folder) { return }
            // A new folder's entry lives in its parent. The parents are synced with the folder
            // when a file is published in it (`syncDirectories`), not here: syncing now would
            // wait for all the data the file system has in flight (ext4 commits it with the
            // directory), while a temp file needs no durable folder.
            let created = try makeDirectories("\(root)/\(folder)")
            if !created.isEmpty {
                unsyncedParents.withLock { state in
                    for c in created {
                        state.created += 1
                        state.entries[String(c[..<c.lastIndex(of: "/")!])] = state.created
                    }
                }
            }
            let line = Array((folder + "\n").utf8)
            let written = line.withUnsafeBytes { b in write(journalFD, b.baseAddress!, b.count) }
            if written != line.count {
                throw SystemCallError(call: "write", errno: written < 0 ? errno : EIO, path: "\(stagingDirectory)/folders")
            }
            try systemCall("fdatasync", "\(stagingDirectory)/folders") { fdatasync(journalFD) }
            ready.insert(folder)
        }
    }

    public enum PublishOutcome: Sendable, Equatable {
        case published
        /// A file already stands at the target; nothing was replaced.
        case exists
    }

    /// Publishes a finished staging file at `lakePath` (relative to the root) with a rename that
    /// cannot overwrite. The temp file must be in the same folder. The caller must fsync the
    /// folder before committing the manifest.
    ///
    /// On an S3 lake, uploads it with `If-None-Match: *` and its SHA-256 (hex, computed while
    /// it was written), then removes it; a 412 is `.exists`, and the temp file stays.
    public func publish(stagedPath: String, to lakePath: String, sha256: String?) throws -> PublishOutcome {
        if let bucket {
            guard try bucket.upload(path: stagedPath, to: lakePath, sha256: sha256, noClobber: true, started: journal(lakePath)) else { return .exists }
            unlink(stagedPath)
            return .published
        }
        return try publish(stagedPath: stagedPath, to: lakePath)
    }

    public func publish(stagedPath: String, to lakePath: String) throws(SystemCallError) -> PublishOutcome {
        let target = "\(root)/\(lakePath)"
        while true {
            if CSluiceLinux_renameNoReplace(AT_FDCWD, stagedPath, AT_FDCWD, target) == 0 { return .published }
            let err = errno
            if err == EINTR { continue }
            if err == EEXIST { return .exists }
            throw SystemCallError(call: "renameat2", errno: err, path: target)
        }
    }

    /// `syncfs` on the lake's file system: every file written so far is durable when it returns
    /// (writeback errors of any of them are reported, Linux 5.8+).
    public func syncFileSystem() throws(SystemCallError) {
        if bucket != nil { return }  // staged copies need no durability: objects are durable once written
        let fd = try systemCall("open", root) { open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        defer { closeQuietly(fd) }
        try systemCall("syncfs", root) { CSluiceLinux_syncfs(fd) }
    }

    /// fsyncs each folder once (paths relative to the root), and, before it, every folder
    /// above it that holds the entry of a folder this process created and has not synced yet.
    public func syncDirectories(_ relativeFolders: some Sequence<String>) throws(SystemCallError) {
        if bucket != nil { return }
        let folders = Set(relativeFolders).map { $0.isEmpty ? root : "\(root)/\($0)" }
        let parents = unsyncedParents.withLock { state in
            state.entries.filter { p, _ in folders.contains { $0 == p || $0.hasPrefix(p + "/") } }
        }
        for (parent, number) in parents.sorted(by: { $0.key < $1.key }) {
            try syncDirectory(parent)
            unsyncedParents.withLock { state in
                if state.entries[parent] == number { state.entries[parent] = nil }
            }
        }
        for folder in folders where parents[folder] == nil {
            try syncDirectory(folder)
        }
    }

    /// The folders (relative to the root; "" is the root) whose entry for a folder this
    /// process created is not yet synced: what `syncDirectories` still owes.
    public var foldersAwaitingSync: [String] {
        unsyncedParents.withLock { state in
            state.entries.keys.map { $0 == root ? "" : String($0.dropFirst(root.count + 1)) }.sorted()
        }
    }

    /// Moves a file that is in the way of a publish, but that no manifest row points to, into
    /// `<root>/.sluice/quarantine/`. Returns the new path relative to the root.
    public func quarantine(lakePath: String) throws -> String {
        let qdir = "\(LakeNames.internalFolder)/quarantine"
        let flat = lakePath.replacingSlashes()
        let target = "\(qdir)/\(nowNanoseconds())-\(flat)"
        if let bucket {
            try bucket.move(lakePath, to: target)
            return target
        }
        try makeDirectories("\(root)/\(qdir)")
        try systemCall("rename", target) { rename("\(root)/\(lakePath)", "\(root)/\(target)") }
        try syncDirectory("\(root)/\(qdir)")
        return target
    }

    // MARK: - small file-system helpers

    /// Names in a folder, without `.` and `..`; empty when it cannot be read.
    public static func listDirectory(_ path: String) -> [String] {
        guard let d = opendir(path) else { return [] }
        defer { closedir(d) }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    static func removeTree(_ path: String) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            for name in listDirectory(path) { removeTree("\(path)/\(name)") }
            rmdir(path)
        } else {
            unlink(path)
        }
    }
}

extension String {
    fileprivate func replacingSlashes() -> String {
        String(self.map { $0 == "/" ? "_" : $0 })
    }
}

/// A file being written into the lake's staging folder, hashed as it is written.
///
/// Not thread-safe: one writer. End with `seal()` or `discard()`.
public struct StagedFile: ~Copyable {
    public let path: String
    private var fd: Int32
    private var hasher = SHA256()
    public private(set) var size: Int64 = 0

    init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    /// Appends bytes to the file and to the running SHA-256.
    public mutating func write(_ bytes: UnsafeRawBufferPointer) throws(SystemCallError) {
        hasher.update(bufferPointer: bytes)
        try writeAll(fd, bytes, path: path)
        size += Int64(bytes.count)
    }

    /// Appends bytes that the caller hashes itself, as they arrive (an upload's body is hashed
    /// on the network thread while this thread writes). Seal such a file with
    /// `seal(startWriteback:sha256:)`, giving the digest of exactly these bytes.
    public mutating func writeHashedByCaller(_ bytes: UnsafeRawBufferPointer) throws(SystemCallError) {
        try writeAll(fd, bytes, path: path)
        size += Int64(bytes.count)
    }

    /// The descriptor, for a source that writes ranges itself (`pwrite`, several threads);
    /// those bytes are taken into the hash with `absorbWritten(upTo:buffer:)`.
    public var descriptor: Int32 { fd }

    /// Hashes bytes that were written into the file at [size, end) by others, reading them
    /// back (from the page cache, just written), and counts them in `size`.
    public mutating func absorbWritten(upTo end: Int64, buffer: UnsafeMutableRawBufferPointer) throws(SystemCallError) {
        while size < end {
            let want = Int(min(Int64(buffer.count), end - size))
            let n = try systemCall("pread", path) { pread(fd, buffer.baseAddress!, want, off_t(size)) }
            if n == 0 { throw SystemCallError(call: "pread", errno: EIO, path: path) }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            size += Int64(n)
        }
    }

    /// Starts writing [offset, offset + length) to disk now, without waiting.
    public func startWriteback(offset: Int64, length: Int64) {
        _ = CSluiceLinux_startWritebackRange(fd, off_t(offset), off_t(length))
    }

    /// The SHA-256 so far, without closing.
    public var currentDigest: String { hexString(hasher.finalize()) }

    /// Ends writing. The descriptor stays open so that a batch of files can be fsync'd together
    /// after all of them are written (one journal commit instead of one per file).
    /// `startWriteback` starts writing the file's pages now (`sync_file_range`), for a batch
    /// that fsyncs file by file.
    public consuming func seal(startWriteback: Bool) -> SealedFile {
        if startWriteback { _ = CSluiceLinux_startWriteback(fd) }
        return SealedFile(fd: fd, path: path, sha256: hexString(hasher.finalize()), size: size)
    }

    /// Ends a file written with `writeHashedByCaller`, whose bytes hash to `sha256`.
    public consuming func seal(startWriteback: Bool, sha256: String) -> SealedFile {
        if startWriteback { _ = CSluiceLinux_startWriteback(fd) }
        return SealedFile(fd: fd, path: path, sha256: sha256, size: size)
    }

    /// Closes and removes the file.
    public consuming func discard() {
        closeQuietly(fd)
        unlink(path)
    }
}

/// A fully written staging file whose descriptor is still open. Call `syncAndClose()` exactly
/// once before publishing it, or `discard()`.
public struct SealedFile: Sendable {
    public let fd: Int32
    public let path: String
    public let sha256: String
    public let size: Int64

    /// fsyncs and closes; on failure the file is removed.
    public func syncAndClose() throws(SystemCallError) {
        do {
            try systemCall("fsync", path) { fsync(fd) }
            try systemCall("close", path) { Glibc.close(fd) }
        } catch {
            closeQuietly(fd)
            unlink(path)
            throw error
        }
    }

    /// Closes without syncing, after `Lake.syncFileSystem()` has made the file durable.
    public func close() throws(SystemCallError) {
        do {
            try systemCall("close", path) { Glibc.close(fd) }
        } catch {
            unlink(path)
            throw error
        }
    }

    public func discard() {
        closeQuietly(fd)
        unlink(path)
    }
}
