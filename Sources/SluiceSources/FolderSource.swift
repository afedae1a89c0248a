import Foundation
import CSluiceLinux
import SluiceLake
import SluiceSupport
import SluiceManifest
import SluiceIngest
import SluiceConfig
#if canImport(Glibc)
import Glibc
#endif

/// A local drop folder.
///
/// Symlink policy: a symlink to a regular file is ingested (under the link's own path) only if
/// it resolves inside the source root (an absolute target, or one that leaves the root with
/// `..` and comes back, counts when its resolved path is below the root's real path); links
/// that point outside are reported as skipped. Symlinked folders are never descended. Opening
/// goes through `openat2(RESOLVE_BENEATH)`, on the resolved path for such links, so a link
/// swapped in after listing cannot lead out of the root either.
public struct FolderSource: Source {
    public let client: String
    public let name: String
    public let config: FolderSourceConfig
    /// Lists only these paths instead of the whole tree (the daemon's passes for the files
    /// inotify reported); they are taken as they are, with no `min_age` wait.
    public let only: [RelativePath]?

    /// `file://<host>`, the file's absolute path.
    public func lineageDataset(_ path: RelativePath) -> (namespace: String, name: String) {
        ("file://\(ProcessInfo.processInfo.hostName)", config.path + "/" + path.display)
    }

    public init(client: String, name: String, config: FolderSourceConfig, only: [RelativePath]? = nil) {
        self.client = client
        self.name = name
        self.config = config
        self.only = only
    }

    public var minAgeNanoseconds: Int64 { only == nil ? config.minAgeNanoseconds : 0 }
    public var afterIngest: AfterIngest { config.afterIngest }

    public func beginPass(moveTargets: [String]) throws(SourceError) -> any SourcePass {
        let fd = open(config.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd < 0 {
            let err = errno
            let reason = err == ENOENT ? "does not exist — create it or fix clients.\(client).sources.\(name).path"
                : err == ENOTDIR ? "is not a folder — fix clients.\(client).sources.\(name).path"
                : "cannot be opened: \(String(cString: strerror(err))) — check its owner and mode"
            throw SourceError("drop folder \(config.path) \(reason)")
        }
        let realRoot = Self.realPath(Array(config.path.utf8)) ?? Array(config.path.utf8)
        let moved = moveTargets.compactMap { Self.folderBelow(root: realRoot, target: $0) }
        return FolderPass(rootFD: fd, realRoot: realRoot, config: config, filter: config.filter.excluding(folders: moved), only: only)
    }

    /// The folder below the root that a move target is (relative targets are; an absolute one
    /// is when it lies below the root's real path), or nil.
    package static func folderBelow(root: [UInt8], target: String) -> RelativePath? {
        guard target.hasPrefix("/") else { return RelativePath(target) }
        return RelativePath(path: realPath(Array(target.utf8)) ?? Array(target.utf8), below: root)
    }

    /// `realpath(3)` of a path given as bytes; nil when it cannot be resolved.
    package static func realPath(_ path: [UInt8]) -> [UInt8]? {
        withCString(path) { p -> [UInt8]? in
            guard let resolved = realpath(p, nil) else { return nil }
            defer { free(resolved) }
            return Array(UnsafeRawBufferPointer(start: resolved, count: strlen(resolved)))
        }
    }
}

package final class FolderPass: SourcePass {
    package let rootFD: Int32
    /// The root's real path (symlinks resolved), to tell where a symlink leads.
    package let realRoot: [UInt8]
    package let config: FolderSourceConfig
    /// `config.filter`, also excluding every move target below the root.
    package let filter: PathFilter
    package let only: [RelativePath]?

    package init(rootFD: Int32, realRoot: [UInt8], config: FolderSourceConfig, filter: PathFilter, only: [RelativePath]? = nil) {
        self.rootFD = rootFD
        self.realRoot = realRoot
        self.config = config
        self.filter = filter
        self.only = only
    }

    package func end() { closeQuietly(rootFD) }

    private func errorText(_ err: Int32) -> String { String(cString: strerror(err)) }

    /// Opens `path` below the root, following symlinks only while they stay below it. A link
    /// whose target is written as an absolute path, or leaves the root with `..` and comes back,
    /// is resolved first: it is opened through its resolved path when that is below the root's
    /// real path (and through nothing else, so a link swapped meanwhile fails safely).
    package func openFollowingInside(_ path: RelativePath, flags: Int32) -> (fd: Int32, errno: Int32) {
        let first = openBeneath(path, flags: flags)
        guard first.fd < 0, first.errno == EXDEV || first.errno == ELOOP else { return first }
        let link = realRoot + (realRoot.last == UInt8(ascii: "/") ? [] : [UInt8(ascii: "/")]) + path.bytes
        guard let resolved = FolderSource.realPath(link), let inside = RelativePath(path: resolved, below: realRoot) else { return first }
        let again = openBeneath(inside, flags: flags)
        return again.fd >= 0 ? again : first
    }

    /// Opens `path` below the root, following symlinks only while they stay below it.
    package func openBeneath(_ path: RelativePath, flags: Int32) -> (fd: Int32, errno: Int32) {
        withCString(path.bytes) { cpath in
            var fd: Int32
            repeat { fd = CSluiceLinux_openBeneath(rootFD, cpath, flags | O_CLOEXEC, 0) } while fd < 0 && errno == EINTR
            if fd < 0 && errno == ENOSYS {
                // Kernels before 5.6: refuse every symlink instead.
                fd = openat(rootFD, cpath, flags | O_CLOEXEC | CSluiceLinux_O_NOFOLLOW)
            }
            return (fd, fd < 0 ? errno : 0)
        }
    }

    package func list(issue: (ListingIssue) -> Void, candidate: (Candidate) -> Void) throws(SourceError) {
        guard let only else {
            walk(dirFD: dup(rootFD), prefix: RelativePath(bytes: []), out: candidate, issue: issue)
            return
        }
        for path in only {
            let parts = path.components
            guard let name = parts.last, !name.isEmpty else { continue }
            let parent = RelativePath(bytes: Array(path.bytes.dropLast(name.count + (parts.count > 1 ? 1 : 0))))
            let dirFD = parent.bytes.isEmpty ? dup(rootFD) : openBeneath(parent, flags: O_RDONLY | O_DIRECTORY).fd
            guard dirFD >= 0 else { continue }  // its folder is gone
            defer { closeQuietly(dirFD) }
            _ = examine(dirFD: dirFD, name: Array(name), path: path, out: candidate, issue: issue)
        }
    }

    /// Lists one entry of a folder: a file (or a symlink to one inside the root) becomes a
    /// candidate; true for a folder to descend into.
    private func examine(dirFD: Int32, name: [UInt8], path rel: RelativePath, out: (Candidate) -> Void, issue: (ListingIssue) -> Void) -> Bool {
        var st = stat()
        let rc = withCString(name) { fstatat(dirFD, $0, &st, AT_SYMLINK_NOFOLLOW) }
        if rc != 0 {
            if errno != ENOENT {
                issue(ListingIssue(path: rel, kind: .failed, message: "cannot stat: \(errorText(errno))"))
            }
            return false
        }
        switch st.st_mode & S_IFMT {
        case S_IFDIR:
            return config.recursive && filter.descends(into: rel.bytes)
        case S_IFREG:
            if filter.accepts(file: rel.bytes) {
                out(Candidate(path: rel, size: Int64(st.st_size), mtimeNs: Self.mtime(st)))
            }
        case S_IFLNK:
            guard filter.accepts(file: rel.bytes) else { return false }
            let (fd, err) = openFollowingInside(rel, flags: CSluiceLinux_O_PATH)
            if fd < 0 {
                let why = err == EXDEV || err == ELOOP
                    ? "symlink points outside the source root; not followed"
                    : "dangling or unreadable symlink: \(errorText(err))"
                issue(ListingIssue(path: rel, kind: .skipped, message: why))
                return false
            }
            var tst = stat()
            fstat(fd, &tst)
            closeQuietly(fd)
            if (tst.st_mode & S_IFMT) == S_IFREG {
                out(Candidate(path: rel, size: Int64(tst.st_size), mtimeNs: Self.mtime(tst)))
            } else {
                issue(ListingIssue(path: rel, kind: .skipped, message: "symlink to a folder or special file; not followed"))
            }
        default:
            break  // FIFOs, sockets, devices: never ingested
        }
        return false
    }

    private func walk(dirFD: Int32, prefix: RelativePath, out: (Candidate) -> Void, issue: (ListingIssue) -> Void) {
        guard dirFD >= 0, let dir = fdopendir(dirFD) else {
            closeQuietly(dirFD)
            issue(ListingIssue(path: prefix, kind: .failed, message: "cannot read folder: \(errorText(errno))"))
            return
        }
        defer { closedir(dir) }
        var subdirs: [(name: [UInt8], path: RelativePath)] = []
        while true {
            errno = 0
            guard let entry = readdir(dir) else {
                if errno != 0 {
                    issue(ListingIssue(path: prefix, kind: .failed, message: "reading folder failed: \(errorText(errno))"))
                }
                break
            }
            let name: [UInt8] = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                Array(raw.prefix { $0 != 0 })
            }
            if name == [0x2E] || name == [0x2E, 0x2E] { continue }
            let rel = prefix.appending(name)
            if examine(dirFD: dirfd(dir), name: name, path: rel, out: out, issue: issue) {
                subdirs.append((name, rel))
            }
        }
        for sub in subdirs {
            let fd = withCString(sub.name) { openat(dirfd(dir), $0, O_RDONLY | O_DIRECTORY | O_CLOEXEC | CSluiceLinux_O_NOFOLLOW) }
            if fd < 0 {
                issue(ListingIssue(path: sub.path, kind: .failed, message: "cannot open folder: \(errorText(errno))"))
                continue
            }
            walk(dirFD: fd, prefix: sub.path, out: out, issue: issue)
        }
    }

    package static func mtime(_ st: stat) -> Int64 {
        Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
    }

    package func open(_ candidate: Candidate) throws(SourceError) -> any ByteStream {
        let (fd, err) = openFollowingInside(candidate.path, flags: O_RDONLY | O_NOCTTY | O_NONBLOCK)
        if fd < 0 {
            switch err {
            case ENOENT: throw SourceError.vanished("file vanished before it could be read")
            case EACCES, EPERM: throw SourceError("cannot read the file: permission denied — give the sluice user read access")
            case EXDEV, ELOOP: throw SourceError("symlink points outside the source root; not followed")
            default: throw SourceError("cannot open the file: \(errorText(err))")
            }
        }
        var st = stat()
        fstat(fd, &st)
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            closeQuietly(fd)
            throw SourceError("not a regular file any more")
        }
        if st.st_size > 1 << 20 { _ = posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL) }
        return FolderStream(fd: fd, opened: st, candidate: candidate)
    }

    package func applyAfterIngest(_ action: AfterIngest, to candidate: Candidate) throws(SourceError) {
        guard action != .keep else { return }
        let comps = candidate.path.components
        let parent = RelativePath(bytes: Array(comps.dropLast().joined(separator: [UInt8(ascii: "/")])))
        let name = Array(comps.last ?? [])
        let (pfd, perr) = parent.bytes.isEmpty ? (dup(rootFD), Int32(0)) : openBeneath(parent, flags: O_RDONLY | O_DIRECTORY)
        guard pfd >= 0 else { throw SourceError("after_ingest: cannot open its folder: \(errorText(perr))") }
        defer { closeQuietly(pfd) }
        try withCString(name) { cname throws(SourceError) in
            var st = stat()
            guard fstatat(pfd, cname, &st, AT_SYMLINK_NOFOLLOW) == 0 else {
                throw SourceError("after_ingest: file is gone: \(errorText(errno))")
            }
            if (st.st_mode & S_IFMT) == S_IFREG
                && (Int64(st.st_size) != candidate.size || Self.mtime(st) != candidate.mtimeNs) {
                throw SourceError("after_ingest: file changed after it was ingested; left in place for the next pull")
            }
            switch action {
            case .keep:
                return
            case .delete:
                guard unlinkat(pfd, cname, 0) == 0 else {
                    throw SourceError("after_ingest delete failed: \(errorText(errno)) — the version is stored; remove the file by hand or fix permissions")
                }
                fsync(pfd)
            case .move(let folder):
                try moveAside(pfd: pfd, cname: cname, into: folder, relative: parent, name: name)
            }
        }
    }

    /// Moves a file into `folder` (relative to the root, or absolute) at the same relative
    /// place, creating each missing folder level; never replaces a file (`name.1`, `name.2`, …).
    private func moveAside(pfd: Int32, cname: UnsafePointer<CChar>, into folder: String, relative: RelativePath, name: [UInt8]) throws(SourceError) {
        var dfd: Int32
        var levels = relative.components
        var shown = folder
        if folder.hasPrefix("/") {
            // The operator's own folder outside the root: made as needed, its symlinks followed.
            do {
                try makeDirectories(folder)
            } catch {
                throw SourceError("after_ingest move: cannot create \(folder): \(error)")
            }
            dfd = Glibc.open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard dfd >= 0 else { throw SourceError("after_ingest move: cannot open \(folder): \(errorText(errno))") }
        } else {
            dfd = dup(rootFD)
            levels = RelativePath(folder).components + levels
            shown = config.path
        }
        // The levels below are created one by one, never following a symlink.
        for c in levels {
            shown += "/" + RelativePath(bytes: Array(c)).display
            let next: Int32 = withCString(Array(c)) { cc in
                _ = mkdirat(dfd, cc, 0o750)
                return openat(dfd, cc, O_RDONLY | O_DIRECTORY | O_CLOEXEC | CSluiceLinux_O_NOFOLLOW)
            }
            let err = errno
            closeQuietly(dfd)
            guard next >= 0 else { throw SourceError("after_ingest move: cannot create \(shown): \(errorText(err))") }
            dfd = next
        }
        defer { closeQuietly(dfd) }
        var attempt = 0
        while true {
            var target = name
            if attempt > 0 { target += Array(".\(attempt)".utf8) }
            let rc = withCString(target) { CSluiceLinux_renameNoReplace(pfd, cname, dfd, $0) }
            if rc == 0 { break }
            if errno == EEXIST && attempt < 1000 {
                attempt += 1
                continue
            }
            if errno == EXDEV {
                throw SourceError("after_ingest move to \(shown) failed: it is on another file system than the drop folder \(config.path); "
                    + "choose a move folder on the same file system (the file stays in place, its version is stored)")
            }
            throw SourceError("after_ingest move to \(shown) failed: \(errorText(errno))")
        }
        fsync(dfd)
        fsync(pfd)
    }
}

package final class FolderStream: ByteStream {
    package let fd: Int32
    package let opened: stat
    package let candidate: Candidate

    package init(fd: Int32, opened: stat, candidate: Candidate) {
        self.fd = fd
        self.opened = opened
        self.candidate = candidate
    }

    private var offset: Int64 = 0

    package func read(into buffer: UnsafeMutableRawBufferPointer) throws(SourceError) -> Int {
        // Stop at the size seen at open: growth shows in the fstat after reading, so the extra
        // read() that would only return 0 is saved.
        if offset >= Int64(opened.st_size) { return 0 }
        while true {
            let n = Glibc.read(fd, buffer.baseAddress!, buffer.count)
            if n >= 0 {
                offset += Int64(n)
                return n
            }
            if errno == EINTR { continue }
            throw SourceError("read failed: \(String(cString: strerror(errno)))")
        }
    }

    package func changedWhileReading(bytesRead: Int64) -> String? {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return "cannot stat after reading" }
        if Int64(opened.st_size) != candidate.size || FolderPass.mtime(opened) != candidate.mtimeNs {
            return "file changed after it was listed; retried on the next pass"
        }
        if Int64(st.st_size) != bytesRead || bytesRead != Int64(opened.st_size) {
            return "size changed while copying (\(opened.st_size) → \(st.st_size) bytes, read \(bytesRead)); retried on the next pass"
        }
        if st.st_mtim.tv_sec != opened.st_mtim.tv_sec || st.st_mtim.tv_nsec != opened.st_mtim.tv_nsec {
            return "file was modified while copying; retried on the next pass"
        }
        return nil
    }

    package func close() { closeQuietly(fd) }
}

/// `type = "folder"`: a drop folder on this machine.
public struct FolderSourceConfig: Sendable, Equatable {
    public var path: String
    public var filter: PathFilter
    public var recursive: Bool
    public var minAgeNanoseconds: Int64
    public var afterIngest: AfterIngest
    /// `sluice run` rescans the whole folder this often, as a safety net behind inotify.
    public var rescanIntervalNanoseconds: Int64 = 300_000_000_000

    package init(path: String, filter: PathFilter, recursive: Bool, minAgeNanoseconds: Int64, afterIngest: AfterIngest, rescanIntervalNanoseconds: Int64 = 300_000_000_000) {
        self.path = path
        self.filter = filter
        self.recursive = recursive
        self.minAgeNanoseconds = minAgeNanoseconds
        self.afterIngest = afterIngest
        self.rescanIntervalNanoseconds = rescanIntervalNanoseconds
    }
}

extension FolderSourceConfig: SourceSettings {
    package static let typeName = "folder"

    package var drive: SourceDrive {
        .watch { [self] host, key in FolderWatcher(host: host, key: key, config: self) }
    }

    package var summary: String {
        "folder \(path), min_age \(minAgeNanoseconds / 1_000_000) ms, after_ingest \(afterIngest)"
    }

    /// An absolute move target on another file system than the folder (a move is a rename,
    /// which cannot cross file systems). A target not made yet is judged by the nearest
    /// folder above it that exists.
    package func setupProblems(key: String) -> [String] {
        guard case .move(let target) = afterIngest, target.hasPrefix("/") else { return [] }
        var root = stat(), there = stat()
        guard stat(path, &root) == 0 else { return [] }  // the folder itself is checked when a pass starts
        var probe = target
        while stat(probe, &there) != 0, probe != "/" { probe = (probe as NSString).deletingLastPathComponent }
        guard there.st_dev != root.st_dev else { return [] }
        return ["\(key).after_ingest: the move target \(target) is on another file system than the drop folder "
            + "\(path) (a move is a rename and cannot cross file systems): choose a folder on the same file system"]
    }

    package func makeSource(_ context: SourceContext) -> (any Source)? {
        FolderSource(client: context.client, name: context.name, config: self)
    }
}

/// Reads `type = "folder"` tables.
package struct FolderSourceType: SourceType {
    package let name = FolderSourceConfig.typeName
    package init() {}

    package func parse(_ t: TOMLTable, path: String, reader: TableReader, stateDir: String) throws(ConfigError) -> any SourceSettings {
        try reader.checkKeys(t, path: path, allowed: ["type", "path", "include", "exclude", "recursive", "min_age", "after_ingest", "rescan_interval"])
        let root = reader.resolve(try reader.string(t, "path", path, required: true)!)
        let common = try reader.commonKeys(t, path)
        if case .move(let target) = common.afterIngest, target.hasPrefix("/"),
           target == root || target == (root as NSString).standardizingPath {
            throw reader.fail("\(path).after_ingest", "the move target \(target) is the drop folder itself: move into a folder below it or elsewhere")
        }
        var folder = FolderSourceConfig(
            path: root, filter: common.filter,
            recursive: common.recursive, minAgeNanoseconds: common.minAge, afterIngest: common.afterIngest)
        if let rescan = try reader.duration(t, "rescan_interval", path) {
            guard rescan > 0 else { throw reader.fail("\(path).rescan_interval", "must be longer than 0") }
            folder.rescanIntervalNanoseconds = rescan
        }
        return folder
    }
}
