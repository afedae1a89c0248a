import Foundation

/// A flag and a wake-up: loops sleep on it, `stop()` ends their sleep at once.
package final class Waker: @unchecked Sendable {  // stopped and signalled are guarded by condition
    package init() {}
    private let condition = NSCondition()
    private var stopped = false
    private var signalled = false

    package var isStopped: Bool {
        condition.lock()
        defer { condition.unlock() }
        return stopped
    }

    package func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }

    package func wake() {
        condition.lock()
        signalled = true
        condition.broadcast()
        condition.unlock()
    }

    /// Sleeps up to `nanoseconds`, less if woken or stopped. True unless stopped.
    @discardableResult
    package func sleep(nanoseconds: Int64) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        let until = Date(timeIntervalSinceNow: Double(max(0, nanoseconds)) / 1e9)
        while !stopped && !signalled {
            if !condition.wait(until: until) { break }
        }
        signalled = false
        return !stopped
    }
}

