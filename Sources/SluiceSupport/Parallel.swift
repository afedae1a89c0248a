import Foundation
import Synchronization

/// Runs `body(i)` for every `i` in `0..<count` on `threads` dedicated threads (never on
/// Swift's cooperative pool, since the work blocks in system calls) and waits for all.
/// `setup` runs once per thread and its result is handed to each call on that thread.
package func parallelFor<State>(count: Int, threads: Int, setup: @escaping @Sendable () -> State, cleanup: @escaping @Sendable (State) -> Void = { _ in }, body: @escaping @Sendable (Int, State) -> Void) {
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
package final class SlotArray<T>: @unchecked Sendable {
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
package final class IOBuffer: @unchecked Sendable {
    package let raw: UnsafeMutableRawBufferPointer
    package init(size: Int) { raw = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 4096) }
    deinit { raw.deallocate() }
}

/// Runs a throwing closure on a dedicated thread (ingest work blocks, so it never runs on
/// Swift's cooperative threads). `wait()` blocks until it has ended and rethrows its error;
/// any number of threads may wait, any number of times.
package final class BackgroundJob: @unchecked Sendable {
    private let condition = NSCondition()
    private var finished = false
    private var failure: (any Error)?

    package init(name: String? = nil, _ body: @escaping @Sendable () throws -> Void) {
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
