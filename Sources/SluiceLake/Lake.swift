import CSluiceLinux
import Crypto
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The on-disk data lake: raw versions, staging and the no-clobber publish.
///
/// One `Lake` per process. It owns a private staging folder
/// `<root>/.sluice/tmp/<pid>-<random>/` guarded by an `flock`ed `.lock` file, so another
/// process's start-up clean-up can tell a live staging folder from one left by a crash.
/// Thread-safe: staging and publishing may run from many threads at once.
public final class Lake: Sendable {
    public let root: String
    /// This process's staging folder (absolute).
    public let stagingDirectory: String
    private let lockFD: Int32
    private let counter = Atomic<Int>(0)
    private let createdDirectories = Mutex<Set<String>>([])

    /// Opens (creating if needed) the lake at `root`, removes staging folders left by dead
    /// processes and creates this process's own staging folder.
    public init(root: String) throws(SystemCallError) {
        self.root = root
        try makeDirectories(root)
        let tmpRoot = "\(root)/\(LakeNames.internalFolder)/tmp"
        try makeDirectories(tmpRoot)
        try makeDirectories("\(root)/\(LakeNames.rawFolder)")
        Self.removeStaleStaging(in: tmpRoot)
        var rnd: UInt64 = 0
        rnd = UInt64.random(in: 0...UInt64.max)
        let dir = "\(tmpRoot)/\(getpid())-\(String(rnd, radix: 36))"
        try systemCall("mkdir", dir) { mkdir(dir, 0o700) }
        let lockPath = "\(dir)/.lock"
        let fd = try systemCall("open", lockPath) { open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600) }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let err = errno
            closeQuietly(fd)
            throw SystemCallError(call: "flock", errno: err, path: lockPath)
        }
        self.stagingDirectory = dir
        self.lockFD = fd
    }

    deinit {
        Self.removeTree(stagingDirectory)
        closeQuietly(lockFD)
    }

    /// Staging folders under `tmpRoot` whose owner is gone (their lock can be taken), with
    /// the files inside them. Used by `audit` to report leftovers without removing them.
    public static func staleStaging(in tmpRoot: String) -> [(folder: String, files: [String])] {
        var result: [(String, [String])] = []
        for entry in listDirectory(tmpRoot) {
            let dir = "\(tmpRoot)/\(entry)"
            guard isDirectory(dir), !isLockHeld(dir) else { continue }
            let files = listDirectory(dir).filter { $0 != ".lock" }.map { "\(dir)/\($0)" }
            result.append((dir, files))
        }
        return result
    }

    /// The files left behind in stale staging folders of this lake, relative to the lake root.
    public func leftoverTempFiles() -> [String] {
        let tmpRoot = "\(root)/\(LakeNames.internalFolder)/tmp"
        let prefix = root.hasSuffix("/") ? root : root + "/"
        return Self.staleStaging(in: tmpRoot).flatMap { stale in
            (stale.files.isEmpty ? [stale.folder] : stale.files).map { String($0.dropFirst(prefix.count)) }
        }
    }

    @discardableResult
    static func removeStaleStaging(in tmpRoot: String) -> Int {
        var removed = 0
        for stale in staleStaging(in: tmpRoot) {
            removed += stale.files.count
            removeTree(stale.folder)
        }
        return removed
    }

    private static func isLockHeld(_ dir: String) -> Bool {
        let fd = open("\(dir)/.lock", O_RDWR | O_CLOEXEC)
        if fd < 0 { return false }
        defer { closeQuietly(fd) }
        return flock(fd, LOCK_EX | LOCK_NB) != 0
    }

    /// Creates a new, empty staging file in this process's staging folder. It is created
    /// read-only (0440), the mode it keeps once published; this descriptor may still write.
    public func stage() throws(SystemCallError) -> StagedFile {
        let n = counter.add(1, ordering: .relaxed).newValue
        let path = "\(stagingDirectory)/\(n).tmp"
        let fd = try systemCall("open", path) { open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o440) }
        return StagedFile(fd: fd, path: path)
    }

    /// Creates the parent folders of `lakePath` (relative to the root), remembering which exist.
    public func ensureParent(of lakePath: String) throws(SystemCallError) -> String {
        let parent = String(lakePath[..<(lakePath.lastIndex(of: "/") ?? lakePath.startIndex)])
        let known = createdDirectories.withLock { $0.contains(parent) }
        if !known {
            // A new folder's own entry lives in its parent: sync the parents so a crash cannot
            // lose the folder under a published file.
            for created in try makeDirectories("\(root)/\(parent)") {
                try syncDirectory(String(created[..<created.lastIndex(of: "/")!]))
            }
            createdDirectories.withLock { _ = $0.insert(parent) }
        }
        return parent
    }

    public enum PublishOutcome: Sendable, Equatable {
        case published
        /// A file already stands at the target; nothing was replaced.
        case exists
    }

    /// Publishes a finished staging file at `lakePath` (relative to the root) with a rename that
    /// cannot overwrite. The caller must fsync the parent folder before committing the manifest.
    public func publish(stagedPath: String, to lakePath: String) throws(SystemCallError) -> PublishOutcome {
        _ = try ensureParent(of: lakePath)
        let target = "\(root)/\(lakePath)"
        while true {
            if CSluiceLinux_renameNoReplace(AT_FDCWD, stagedPath, AT_FDCWD, target) == 0 { return .published }
            let err = errno
            if err == EINTR { continue }
            if err == EEXIST { return .exists }
            throw SystemCallError(call: "renameat2", errno: err, path: target)
        }
    }

    /// fsyncs each folder once (paths relative to the root).
    public func syncDirectories(_ relativeFolders: some Sequence<String>) throws(SystemCallError) {
        for folder in Set(relativeFolders) {
            try syncDirectory(folder.isEmpty ? root : "\(root)/\(folder)")
        }
    }

    /// Moves a file that is in the way of a publish, but that no manifest row points to, into
    /// `<root>/.sluice/quarantine/`. Returns the new path relative to the root.
    public func quarantine(lakePath: String) throws(SystemCallError) -> String {
        let qdir = "\(LakeNames.internalFolder)/quarantine"
        try makeDirectories("\(root)/\(qdir)")
        let flat = lakePath.replacingSlashes()
        let target = "\(qdir)/\(nowNanoseconds())-\(flat)"
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

    /// The SHA-256 so far, without closing.
    public var currentDigest: String { hexString(hasher.finalize()) }

    /// Ends writing. The descriptor stays open so that a batch of files can be fsync'd together
    /// after all of them are written (one journal commit instead of one per file).
    public consuming func seal() -> SealedFile {
        _ = CSluiceLinux_startWriteback(fd)
        return SealedFile(fd: fd, path: path, sha256: hexString(hasher.finalize()), size: size)
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
            try systemCall("close", path) { close(fd) }
        } catch {
            closeQuietly(fd)
            unlink(path)
            throw error
        }
    }

    public func discard() {
        closeQuietly(fd)
        unlink(path)
    }
}
