import Foundation

/// One thread of its own that runs jobs in the order they were submitted, so that a producer
/// can hand work off (hashing a block, compressing a page) and go on with the next. At most
/// `capacity` jobs wait; `submit` blocks beyond that, which bounds the memory the queued jobs
/// hold. The thread starts with the first job and ends with `stop()`, which the owner must call
/// (the thread holds the worker until then).
public final class SerialWorker<Job>: @unchecked Sendable {  // state guarded by `condition`: the worker and submitters wait on it
    private let name: String
    private let capacity: Int
    private let work: (Job) -> Void
    private let condition = NSCondition()
    private var queue: [Job] = []
    private var submitted = 0
    private var completed = 0
    private var stopping = false
    private var running = false

    public init(name: String, capacity: Int, _ work: @escaping (Job) -> Void) {
        self.name = name
        self.capacity = Swift.max(capacity, 1)
        self.work = work
    }

    /// Queues a job, waiting while `capacity` jobs are queued. Returns its ticket for
    /// `wait(for:)`.
    @discardableResult
    public func submit(_ job: Job) -> Int {
        condition.lock()
        defer { condition.unlock() }
        while queue.count >= capacity { condition.wait() }
        queue.append(job)
        submitted += 1
        condition.broadcast()
        if !running {
            running = true
            stopping = false
            let thread = Thread { [self] in loop() }
            thread.name = name
            thread.stackSize = 1 << 20
            thread.start()
        }
        return submitted
    }

    /// Waits until the job with this ticket has run; what it wrote is then visible here.
    public func wait(for ticket: Int) {
        condition.lock()
        while completed < ticket { condition.wait() }
        condition.unlock()
    }

    /// Whether the job with this ticket has run (ticket 0, "none yet", always has).
    public func hasRun(_ ticket: Int) -> Bool {
        condition.withLock { completed >= ticket }
    }

    /// Waits until every job submitted so far has run.
    public func waitForAll() {
        condition.lock()
        while completed < submitted { condition.wait() }
        condition.unlock()
    }

    /// Runs what is queued, then ends the thread. The worker may be used again afterwards.
    public func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        while running { condition.wait() }
        condition.unlock()
    }

    private func loop() {
        condition.lock()
        while true {
            while queue.isEmpty && !stopping { condition.wait() }
            guard !queue.isEmpty else { break }
            let job = queue.removeFirst()
            condition.broadcast()  // room in the queue
            condition.unlock()
            work(job)
            condition.lock()
            completed += 1
            condition.broadcast()
        }
        running = false
        condition.broadcast()
        condition.unlock()
    }
}
