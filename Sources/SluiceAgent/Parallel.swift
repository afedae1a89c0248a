import Foundation
import SluiceLake
import SluiceParquet
import Synchronization

/// Runs `body(i)` for every `i` in `0..<count` on `threads` dedicated threads (never on
/// Swift's cooperative pool, since the work blocks in system calls) and waits for all.
/// `setup` runs once per thread and its result is handed to each call on that thread.
func parallelFor<State>(count: Int, threads: Int, setup: @escaping @Sendable () -> State, cleanup: @escaping @Sendable (State) -> Void = { _ in }, body: @escaping @Sendable (Int, State) -> Void) {
    guard count > 0 else { return }
    let n = max(1, min(threads, count))
    let next = Atomic<Int>(0)
    let done = DispatchSemaphore(value: 0)
    let work: @Sendable () -> Void = {
        let state = setup()
        while true {
            let i = next.add(1, ordering: .relaxed).oldValue
            if i >= count { break }
            body(i, state)
        }
        cleanup(state)
        done.signal()
    }
    withExtendedLifetime(next) {
        for _ in 1..<n {
            let t = Thread(block: work)
            t.stackSize = 1 << 20
            t.start()
        }
        work()
        for _ in 0..<n { done.wait() }
    }
}

/// A fixed-size array that threads fill at distinct indices. The storage is allocated once
/// and never moves, so writes from several threads to different slots never race.
final class SlotArray<T>: @unchecked Sendable {
    private let storage: UnsafeMutableBufferPointer<T?>

    init(count: Int) {
        storage = .allocate(capacity: count)
        storage.initialize(repeating: nil)
    }

    deinit {
        storage.deinitialize()
        storage.deallocate()
    }

    /// Each index must be written by one thread only, and read after `parallelFor` returns.
    func set(_ i: Int, _ value: T) { storage[i] = value }
    var values: [T?] { Array(storage) }
}

/// A page-aligned byte buffer owned by one thread.
final class IOBuffer: @unchecked Sendable {
    let raw: UnsafeMutableRawBufferPointer
    init(size: Int) { raw = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 4096) }
    deinit { raw.deallocate() }
}

/// Runs a throwing closure on a dedicated thread (ingest work blocks, so it never runs on
/// Swift's cooperative threads). `wait()` blocks until it has ended and rethrows its error;
/// any number of threads may wait, any number of times.
final class BackgroundJob: @unchecked Sendable {
    private let condition = NSCondition()
    private var finished = false
    private var failure: (any Error)?

    init(name: String? = nil, _ body: @escaping @Sendable () throws -> Void) {
        let t = Thread { [self] in
            var error: (any Error)?
            do { try body() } catch let e { error = e }
            condition.lock()
            failure = error
            finished = true
            condition.broadcast()
            condition.unlock()
        }
        if let name { t.name = name }
        t.stackSize = 4 << 20
        t.start()
    }

    func wait() throws {
        condition.lock()
        while !finished { condition.wait() }
        let failure = self.failure
        condition.unlock()
        if let failure { throw failure }
    }

    var isFinished: Bool { condition.withLock { finished } }

    /// Waits for the end up to `deadline`; true if it ended.
    func wait(until deadline: Date) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while !finished {
            if !condition.wait(until: deadline) { return finished }
        }
        return true
    }
}

/// Encodes batches of rows into a Parquet file on a second thread while the caller parses the
/// next batch, so that a transform's two halves (reading and typing values; encoding and
/// compressing them) each get a core. Eight batches circulate (one being filled, some queued,
/// one being encoded), so that neither side waits on the other's short stalls; memory stays
/// bounded by them and the writer's row group.
final class EncodePipeline: @unchecked Sendable {
    private let writer: ParquetWriter
    private let condition = NSCondition()
    private var queued: [ParquetRow] = []
    private var spare: [ParquetRow]
    private var closed = false
    private var failure: (any Error)?
    private var job: BackgroundJob?

    init(writer: ParquetWriter, columns: Int, batchRows: Int) {
        self.writer = writer
        spare = (0..<8).map { _ in ParquetRow(columns: columns, capacity: batchRows) }
        job = BackgroundJob { [self] in try encode() }
    }

    /// An empty batch to fill; waits while all are in use.
    func take() -> ParquetRow {
        condition.lock()
        defer { condition.unlock() }
        while spare.isEmpty { condition.wait() }
        return spare.removeLast()
    }

    /// Queues a filled batch; throws the encoder's error once it has failed.
    func submit(_ rows: ParquetRow) throws {
        condition.lock()
        defer { condition.unlock() }
        if let failure {
            rows.reset()
            spare.append(rows)
            throw failure
        }
        queued.append(rows)
        condition.broadcast()
    }

    /// Waits for every queued batch to be encoded (or for the encoder to fail).
    func finish() throws {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
        try job?.wait()
        condition.lock()
        defer { condition.unlock() }
        if let failure { throw failure }
    }

    private func encode() throws {
        while true {
            condition.lock()
            while queued.isEmpty && !closed { condition.wait() }
            guard !queued.isEmpty else {
                condition.unlock()
                return
            }
            let rows = queued.removeFirst()
            let failed = failure != nil
            condition.unlock()
            var error: (any Error)?
            if !failed {
                do { try writer.append(rows) } catch let e { error = e }
            }
            rows.reset()
            condition.lock()
            if let error, failure == nil { failure = error }
            spare.append(rows)
            condition.broadcast()
            condition.unlock()
        }
    }
}

/// The progress of a file fetched as fixed-size chunks by several workers at once, each
/// writing its chunks in order with `pwrite`: which prefix of the file is complete, and
/// whether the fetch failed or was stopped. The consumer hashes the prefix as it grows.
final class ChunkProgress: @unchecked Sendable {
    let size: Int64
    let chunkSize: Int64
    let chunks: Int
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

    init(size: Int64, chunkSize: Int64, workers: Int) {
        self.size = size
        self.chunkSize = chunkSize
        chunks = Int((size + chunkSize - 1) / chunkSize)
        filled = [Int64](repeating: 0, count: chunks)
        running = workers
    }

    /// The length of `chunk` (the last one may be short).
    func length(of chunk: Int) -> Int64 { Swift.min(size, Int64(chunk + 1) * chunkSize) - Int64(chunk) * chunkSize }

    /// Marks `done` as complete before any worker starts (chunks kept from a cut-off transfer
    /// and already in the file), and advances the prefix over them.
    func preload(_ done: Set<Int>) {
        for chunk in done where chunk < chunks { landed(chunk: chunk, bytes: length(of: chunk) - filled[chunk]) }
    }

    /// The chunks written whole so far.
    var completeChunks: [Int] {
        condition.lock()
        defer { condition.unlock() }
        return (0..<chunks).filter { filled[$0] == length(of: $0) }
    }

    /// Whether workers should stop: a failure, a change, or a cancel.
    func shouldStop() -> Bool {
        condition.lock()
        defer { condition.unlock() }
        return failure != nil || cancelled || stopAfterChange
    }

    /// `bytes` more were written at the end of `chunk`'s written part.
    func landed(chunk: Int, bytes: Int64) {
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
    func workerEnded(failure workerFailure: SourceError?, changed: Bool) {
        condition.lock()
        if failure == nil, let workerFailure { failure = workerFailure }
        if changed && !cancelled { stopAfterChange = true }
        running -= 1
        condition.broadcast()
        condition.unlock()
    }

    func waitForPrefix(beyond known: Int64) throws(SourceError) -> (prefix: Int64, done: Bool) {
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
    func cancel() {
        condition.lock()
        cancelled = true
        while running > 0 { condition.wait() }
        condition.unlock()
    }

    /// Writes all of `bytes` at `offset`; nil, or why it failed.
    static func write(fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int64, stagingPath: String) -> String? {
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
