import Crypto
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Lowercase hex of a digest.
public func hexString(_ digest: some Sequence<UInt8>) -> String {
    let hex: [UInt8] = Array("0123456789abcdef".utf8)
    var out = [UInt8]()
    out.reserveCapacity(64)
    for b in digest {
        out.append(hex[Int(b >> 4)])
        out.append(hex[Int(b & 0xF)])
    }
    return String(decoding: out, as: UTF8.self)
}

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
/// copy's time. The caller keeps each block unchanged until `wait()` returns.
public final class BackgroundSHA256: @unchecked Sendable {
    private let condition = NSCondition()
    private var hasher = SHA256()
    private var block: UnsafeRawBufferPointer?
    private var closed = false
    private var running = false

    public init() {}

    deinit { stop() }

    /// Starts hashing `bytes` (after the block before it); they must stay as they are until
    /// the next `wait()`.
    public func start(_ bytes: UnsafeRawBufferPointer) {
        condition.lock()
        defer { condition.unlock() }
        while block != nil { condition.wait() }
        block = bytes
        condition.broadcast()
        if !running {
            running = true
            let thread = Thread { [self] in work() }
            thread.name = "sha256"
            thread.start()
        }
    }

    /// Waits until the block being hashed is done.
    public func wait() {
        condition.lock()
        while block != nil { condition.wait() }
        condition.unlock()
    }

    /// The digest of every block (lowercase hex); ends the thread.
    public func finish() -> String {
        stop()
        return hexString(hasher.finalize())
    }

    private func stop() {
        condition.lock()
        closed = true
        condition.broadcast()
        while running { condition.wait() }
        condition.unlock()
    }

    private func work() {
        condition.lock()
        while true {
            while block == nil && !closed { condition.wait() }
            guard let bytes = block else { break }
            condition.unlock()
            hasher.update(bufferPointer: bytes)
            condition.lock()
            block = nil
            condition.broadcast()
        }
        running = false
        condition.broadcast()
        condition.unlock()
    }
}
