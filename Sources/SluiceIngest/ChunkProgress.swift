import Foundation
import SluiceSupport
import Synchronization
import SluiceLake
import SluiceManifest

/// The progress of a file fetched as fixed-size chunks by several workers at once, each
/// writing its chunks in order with `pwrite`: which prefix of the file is complete, and
/// whether the fetch failed or was stopped. The consumer hashes the prefix as it grows.
package final class ChunkProgress: @unchecked Sendable {  // state guarded by `condition`: waiters need a condition variable, which Mutex has not
    package let size: Int64
    package let chunkSize: Int64
    package let chunks: Int
    private let condition = NSCondition()
    /// Bytes written at the start of each chunk.
    private var filled: [Int64]
    private var prefix: Int64 = 0
    private var running: Int
    private var failure: SourceError?
    private var cancelled = false
    /// A worker saw the file change: the others stop, and the consumer finishes with what
    /// was fetched (the stream's change check then discards it).
    private var stopAfterChange = false

    package init(size: Int64, chunkSize: Int64, workers: Int) {
        self.size = size
        self.chunkSize = chunkSize
        chunks = Int((size + chunkSize - 1) / chunkSize)
        filled = [Int64](repeating: 0, count: chunks)
        running = workers
    }

    /// The length of `chunk` (the last one may be short).
    package func length(of chunk: Int) -> Int64 { Swift.min(size, Int64(chunk + 1) * chunkSize) - Int64(chunk) * chunkSize }

    /// Marks `done` as complete before any worker starts (chunks kept from a cut-off transfer
    /// and already in the file), and advances the prefix over them.
    package func preload(_ done: Set<Int>) {
        for chunk in done where chunk < chunks { landed(chunk: chunk, bytes: length(of: chunk) - filled[chunk]) }
    }

    /// The chunks written whole so far.
    package var completeChunks: [Int] {
        condition.lock()
        defer { condition.unlock() }
        return (0..<chunks).filter { filled[$0] == length(of: $0) }
    }

    /// Whether workers should stop: a failure, a change, or a cancel.
    package func shouldStop() -> Bool {
        condition.lock()
        defer { condition.unlock() }
        return failure != nil || cancelled || stopAfterChange
    }

    /// `bytes` more were written at the end of `chunk`'s written part.
    package func landed(chunk: Int, bytes: Int64) {
        condition.lock()
        filled[chunk] += bytes
        // Advance the contiguous prefix over every chunk now complete.
        var grew = false
        while prefix < size {
            let c = Int(prefix / chunkSize)
            let chunkEnd = Swift.min(size, Int64(c + 1) * chunkSize)
            let reached = Int64(c) * chunkSize + filled[c]
            guard reached > prefix else { break }
            prefix = reached
            grew = true
            if reached < chunkEnd { break }
        }
        if grew { condition.broadcast() }
        condition.unlock()
    }

    /// A worker has stopped, with its failure or having seen the file change.
    package func workerEnded(failure workerFailure: SourceError?, changed: Bool) {
        condition.lock()
        if failure == nil, let workerFailure { failure = workerFailure }
        if changed && !cancelled { stopAfterChange = true }
        running -= 1
        condition.broadcast()
        condition.unlock()
    }

    package func waitForPrefix(beyond known: Int64) throws(SourceError) -> (prefix: Int64, done: Bool) {
        condition.lock()
        defer { condition.unlock() }
        while true {
            if let failure {
                while running > 0 { condition.wait() }
                throw failure
            }
            if prefix >= size || (stopAfterChange && running == 0) {
                while running > 0 { condition.wait() }
                return (prefix, true)
            }
            if prefix > known { return (prefix, false) }
            if running == 0 {
                throw SourceError("the transfer stopped at \(prefix) of \(size) bytes")
            }
            condition.wait()
        }
    }

    /// Stops the workers and waits for them.
    package func cancel() {
        condition.lock()
        cancelled = true
        while running > 0 { condition.wait() }
        condition.unlock()
    }

    /// Writes all of `bytes` at `offset`; nil, or why it failed.
    package static func write(fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int64, stagingPath: String) -> String? {
        var done = 0
        while done < bytes.count {
            let w = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
            if w < 0 {
                if errno == EINTR { continue }
                return "writing to the lake failed: \(SystemCallError(call: "pwrite", errno: errno, path: stagingPath))"
            }
            done += w
        }
        return nil
    }
}
