import Crypto
import SluiceSupport
#if canImport(Glibc)
import Glibc
#endif

/// Streams a file through SHA-256 without holding it in memory.
public enum FileDigest {
    /// The size of the read buffer used for hashing whole files.
    public static let bufferSize = 1 << 20

    /// SHA-256 (lowercase hex) and byte count of the file at `path`.
    /// `buffer` must be at least a few KiB; pass one per thread to avoid allocations.
    public static func sha256(path: String, buffer: UnsafeMutableRawBufferPointer) throws(SystemCallError) -> (sha256: String, size: Int64) {
        let fd = try systemCall("open", path) { open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) }
        defer { closeQuietly(fd) }
        _ = posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
        var hasher = SHA256()
        var total: Int64 = 0
        while true {
            let n = try systemCall("read", path) { read(fd, buffer.baseAddress!, buffer.count) }
            if n == 0 { break }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            total += Int64(n)
        }
        return (hexString(hasher.finalize()), total)
    }
}

/// SHA-256 on a thread of its own, a block at a time: a big file's copy hashes block k there
/// while it writes block k and reads block k + 1 itself, so the hash no longer adds to the
/// copy's time. The caller keeps each block unchanged until `wait()` returns. Dropping it
/// ends its thread.
public final class BackgroundSHA256: @unchecked Sendable {  // called by one copying thread; the hasher is touched by the worker only
    /// Touched by the worker's thread, and by `finish` once the thread has ended.
    private final class State: @unchecked Sendable {  // touched by the worker thread, then by finish() once it has ended
        var hasher = SHA256()
    }
    private let state: State
    private let worker: SerialWorker<UnsafeRawBufferPointer>

    public init() {
        let state = State()
        self.state = state
        worker = SerialWorker(name: "sha256", capacity: 1) { state.hasher.update(bufferPointer: $0) }
    }

    deinit { worker.stop() }

    /// Starts hashing `bytes` (after the blocks before it); they must stay as they are until
    /// the next `wait()`.
    public func start(_ bytes: UnsafeRawBufferPointer) { worker.submit(bytes) }

    /// Waits until every block started so far is hashed.
    public func wait() { worker.waitForAll() }

    /// The digest of every block (lowercase hex); ends the thread.
    public func finish() -> String {
        worker.stop()
        return hexString(state.hasher.finalize())
    }
}
