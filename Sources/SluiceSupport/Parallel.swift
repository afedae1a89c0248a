import Foundation
import NIOPosix
import Synchronization

/// The cores this process may run on: those of its CPU affinity mask (`taskset`, a cgroup's
/// cpuset), at most the processors online. More busy threads than that only take turns on
/// them, each evicting the others' caches.
package let usableCores: Int = {
    let online = max(1, ProcessInfo.processInfo.activeProcessorCount)
    // The mask as the kernel shows it ("Cpus_allowed:\tff,ffffffff"); sched_getaffinity is
    // not in Glibc's Swift module.
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed:") }) else { return online }
    let mask = line.dropFirst("Cpus_allowed:".count).reduce(0) { n, c in n + (c.hexDigitValue?.nonzeroBitCount ?? 0) }
    return max(1, min(online, mask))
}()

/// The process's long-lived threads for blocking work: file I/O, fsync, hashing and libssh2
/// calls run here, never on Swift's cooperative pool or on an event loop. Started on first
/// use; its threads wait idle between jobs instead of being made for each one.
package enum BlockingPool {
    /// More threads than cores: most of the work waits on disks and networks.
    package static let threads = max(16, 4 * usableCores)

    package static let shared: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: threads)
        pool.start()
        return pool
    }()

    /// Starts the pool now if it has not started (its threads then stay for the process's life).
    package static func start() { _ = shared }

    /// Runs `body` on one of the pool's threads.
    package static func run(_ body: @escaping @Sendable () -> Void) {
        shared.submit { _ in body() }
    }
}

/// The shared counters of one `parallelFor`.
private final class ParallelLoop: Sendable {
    let count: Int
    let next = Atomic<Int>(0)
    let finished = Atomic<Int>(0)
    let done = DispatchSemaphore(value: 0)

    init(count: Int) { self.count = count }

    /// The next index to run, or nil when every index is taken.
    func claim() -> Int? {
        let i = next.add(1, ordering: .relaxed).oldValue
        return i < count ? i : nil
    }

    func finish() {
        if finished.add(1, ordering: .acquiringAndReleasing).newValue == count { done.signal() }
    }
}

/// Runs `body(i)` for every `i` in `0..<count` on up to `threads` threads and waits for all.
/// The caller is one of them, and the others come from `BlockingPool`: the caller takes
/// indices too, so a loop always finishes even when every pool thread is busy (a
/// `parallelFor` inside another one, say). `setup` runs once on each thread that takes an
/// index, and its result is handed to every call on that thread.
package func parallelFor<State>(count: Int, threads: Int, setup: @escaping @Sendable () -> State, body: @escaping @Sendable (Int, State) -> Void) {
    guard count > 0 else { return }
    let helpers = max(1, min(threads, count)) - 1
    let loop = ParallelLoop(count: count)
    let work: @Sendable () -> Void = {
        // A helper that starts after every index is taken does nothing at all.
        guard var i = loop.claim() else { return }
        let state = setup()
        while true {
            body(i, state)
            loop.finish()
            guard let n = loop.claim() else { return }
            i = n
        }
    }
    for _ in 0..<helpers { BlockingPool.run(work) }
    work()
    loop.done.wait()
}

/// A fixed-size array that threads fill at distinct indices. The storage is allocated once
/// and never moves, so writes from several threads to different slots never race.
package final class SlotArray<T>: @unchecked Sendable {  // each slot is written by one thread, read after all have finished
    private let storage: UnsafeMutableBufferPointer<T?>

    package init(count: Int) {
        storage = .allocate(capacity: count)
        storage.initialize(repeating: nil)
    }

    deinit {
        storage.deinitialize()
        storage.deallocate()
    }

    /// Each index must be written by one thread only, and read after `parallelFor` returns.
    package func set(_ i: Int, _ value: T) { storage[i] = value }
    package var values: [T?] { Array(storage) }
}

/// A page-aligned byte buffer owned by one thread.
package final class IOBuffer: @unchecked Sendable {  // owned by one thread at a time
    package let raw: UnsafeMutableRawBufferPointer
    package init(size: Int) { raw = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 4096) }
    deinit { raw.deallocate() }
}

/// Runs a throwing closure on a thread of its own or of `BlockingPool` (ingest work blocks,
/// so it never runs on Swift's cooperative threads). `wait()` blocks until it has ended and rethrows its error;
/// any number of threads may wait, any number of times.
package final class BackgroundJob: @unchecked Sendable {  // finished and failure are guarded by condition
    private let condition = NSCondition()
    private var finished = false
    private var failure: (any Error)?

    /// Runs `body` on a thread of its own, for a loop that lives as long as the agent runs.
    package init(name: String? = nil, _ body: @escaping @Sendable () throws -> Void) {
        let t = Thread { [self] in run(body) }
        if let name { t.name = name }
        t.stackSize = 4 << 20
        t.start()
    }

    /// Runs `body` on a thread of `BlockingPool`, for a job that ends (a listing, a batch's
    /// commit).
    package static func pooled(_ body: @escaping @Sendable () throws -> Void) -> BackgroundJob {
        BackgroundJob(pooledBody: body)
    }

    private init(pooledBody body: @escaping @Sendable () throws -> Void) {
        BlockingPool.run { [self] in run(body) }
    }

    private func run(_ body: @Sendable () throws -> Void) {
        var error: (any Error)?
        do { try body() } catch let e { error = e }
        condition.lock()
        failure = error
        finished = true
        condition.broadcast()
        condition.unlock()
    }

    package func wait() throws {
        condition.lock()
        while !finished { condition.wait() }
        let failure = self.failure
        condition.unlock()
        if let failure { throw failure }
    }

    package var isFinished: Bool { condition.withLock { finished } }

    /// Waits for the end up to `deadline`; true if it ended.
    package func wait(until deadline: Date) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while !finished {
            if !condition.wait(until: deadline) { return finished }
        }
        return true
    }
}
