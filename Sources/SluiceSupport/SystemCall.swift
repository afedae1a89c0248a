#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// An error from a system call, carrying `errno`, the call's name and the path it touched.
public struct SystemCallError: Error, CustomStringConvertible, Sendable {
    public let call: String
    public let errno: Int32
    public let path: String

    public init(call: String, errno: Int32, path: String) {
        self.call = call
        self.errno = errno
        self.path = path
    }

    public var description: String {
        let reason = String(cString: strerror(errno))
        var text = "\(call)(\(path)) failed: \(reason) (errno \(errno))"
        switch errno {
        case ENOSPC, EDQUOT:
            text += " — the file system is full; free space and run again, nothing partial was kept"
        case EACCES, EPERM:
            text += " — check the owner and mode of this path for the user sluice runs as"
        case EROFS:
            text += " — the file system is read-only"
        default:
            break
        }
        return text
    }
}

extension SystemCallError {
    /// The file system is full (or the user's quota spent): nothing about the data written.
    public var isOutOfSpace: Bool { errno == ENOSPC || errno == EDQUOT }
}

/// Runs one system call, retrying on `EINTR`, and throws `SystemCallError` on a negative result.
@inline(__always)
@discardableResult
public func systemCall<T: BinaryInteger>(_ name: String, _ path: @autoclosure () -> String, _ body: () -> T) throws(SystemCallError) -> T {
    while true {
        let result = body()
        if result >= 0 { return result }
        let err = errno
        if err == EINTR { continue }
        throw SystemCallError(call: name, errno: err, path: path())
    }
}

/// Closes a descriptor, ignoring errors (used on cleanup paths only).
@inline(__always)
public func closeQuietly(_ fd: Int32) {
    if fd >= 0 { _ = close(fd) }
}

/// Writes all of `buffer` to `fd`, retrying short writes and `EINTR`.
public func writeAll(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, path: @autoclosure () -> String) throws(SystemCallError) {
    var offset = 0
    while offset < buffer.count {
        let n = try systemCall("write", path()) {
            write(fd, buffer.baseAddress! + offset, buffer.count - offset)
        }
        offset += n
    }
}

/// Creates a directory and its missing parents (mode 0750); existing ones are fine.
/// Returns the folders it created, outermost first.
@discardableResult
public func makeDirectories(_ path: String, mode: mode_t = 0o750) throws(SystemCallError) -> [String] {
    if path.isEmpty || path == "/" { return [] }
    var st = stat()
    if stat(path, &st) == 0 {
        if (st.st_mode & S_IFMT) == S_IFDIR { return [] }
        throw SystemCallError(call: "mkdir", errno: ENOTDIR, path: path)
    }
    var created: [String] = []
    if let slash = path.lastIndex(of: "/"), slash != path.startIndex {
        created = try makeDirectories(String(path[..<slash]), mode: mode)
    }
    if mkdir(path, mode) != 0 {
        if errno != EEXIST { throw SystemCallError(call: "mkdir", errno: errno, path: path) }
    } else {
        created.append(path)
    }
    return created
}

/// fsyncs a directory by path.
public func syncDirectory(_ path: String) throws(SystemCallError) {
    let fd = try systemCall("open", path) { open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
    defer { closeQuietly(fd) }
    try systemCall("fsync", path) { fsync(fd) }
}

/// Current time as nanoseconds since the Unix epoch (UTC).
public func nowNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}
