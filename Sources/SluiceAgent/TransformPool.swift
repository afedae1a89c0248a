import Foundation
import Logging
import Metrics
import Synchronization
import SluiceManifest
import SluiceSupport
import SluiceLake
import SluiceIngest
import SluiceConfig
import SluiceFormats
import SluiceTransform

/// The daemon's transform workers (`[agent] transform_workers`): after a pass commits new
/// versions, their client is queued, and a worker transforms every version of it still
/// pending. One client is taken by one worker at a time (a client queued again while it runs
/// goes round once more), so no version is ever transformed twice at once; on a shared
/// (PostgreSQL) manifest that worker runs several claimers, and claims keep them and other
/// agents apart. A failed transform is recorded and never stops ingestion.
package final class TransformPool: @unchecked Sendable {  // state guarded by `condition`: workers wait on it
    package unowned let daemon: AgentRuntime
    private let condition = NSCondition()
    private var queue: [String] = []
    private var running = Set<String>()
    private var again = Set<String>()
    private var stopped = false
    private var wanted: Int
    private var threads: [BackgroundJob] = []
    /// Per client, a version id up to which every version has a transform row (a round that
    /// went through all its pending versions): the next round reads only newer versions.
    private var transformedThrough: [String: Int64] = [:]
    /// Per client, how many rounds in a row could not finish (`retryLater(client:)`).
    private var failedRounds: [String: Int] = [:]

    package init(daemon: AgentRuntime, workers: Int) {
        self.daemon = daemon
        wanted = workers
        for i in 0..<workers { threads.append(BackgroundJob(name: "transform \(i)") { [self] in work(index: i) }) }
    }

    package func enqueue(client: String) {
        condition.lock()
        defer { condition.unlock() }
        if running.contains(client) {
            again.insert(client)
        } else if !queue.contains(client) {
            queue.append(client)
            condition.signal()
        }
        Gauge(label: "sluice_transform_queue_depth").record(queue.count)
    }

    package var depth: Int {
        condition.lock()
        defer { condition.unlock() }
        return queue.count
    }

    /// More workers start at once; extra ones end after their current job.
    package func resize(workers: Int) {
        condition.lock()
        defer { condition.unlock() }
        let have = threads.count
        wanted = workers
        if workers > have {
            for i in have..<workers { threads.append(BackgroundJob(name: "transform \(i)") { [self] in work(index: i) }) }
        }
        condition.broadcast()
    }

    package func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }

    package func join(until deadline: Date) -> Bool {
        let all = condition.withLock { threads }
        return all.allSatisfy { $0.wait(until: deadline) }
    }

    package var isAlive: Bool {
        condition.lock()
        defer { condition.unlock() }
        return stopped || threads.prefix(wanted).allSatisfy { !$0.isFinished }
    }

    private func work(index: Int) {
        while true {
            condition.lock()
            // A client being transformed elsewhere (a console re-run) waits in the queue.
            while !stopped && index < wanted && !queue.contains(where: { !running.contains($0) }) { condition.wait() }
            if stopped || index >= wanted {
                condition.unlock()
                return
            }
            let client = queue.remove(at: queue.firstIndex { !running.contains($0) }!)
            running.insert(client)
            Gauge(label: "sluice_transform_queue_depth").record(queue.count)
            condition.unlock()

            transform(client: client)

            condition.lock()
            running.remove(client)
            if again.remove(client) != nil, !queue.contains(client) { queue.append(client) }
            condition.broadcast()
            condition.unlock()
        }
    }

    private func isStopped() -> Bool { condition.withLock { stopped } }

    /// Runs `body` while no worker transforms `client` (and none starts to), as a worker would.
    package func exclusive<T>(client: String, _ body: () -> T) -> T {
        condition.lock()
        while running.contains(client) { condition.wait() }
        running.insert(client)
        condition.unlock()
        defer {
            condition.lock()
            running.remove(client)
            if again.remove(client) != nil, !queue.contains(client) { queue.append(client) }
            condition.broadcast()
            condition.unlock()
        }
        return body()
    }

    /// The lease name under which one agent at a time transforms a client's versions (source
    /// names cannot hold `*`).
    static let leaseName = "*transforms"

    /// Versions claimed at a time on a shared manifest: few, so that the agents share a busy
    /// client's backlog evenly.
    static let claimBatch = 4

    /// The metrics of one transform.
    private func count(_ report: TransformReport, client: String, elapsed: Duration) {
        let dims = [("client", client), ("dataset", report.dataset ?? "")]
        Metrics.Timer(label: "sluice_transform_duration_seconds", dimensions: dims, preferredDisplayUnit: .seconds)
            .recordNanoseconds(elapsed.nanoseconds)
        Counter(label: "sluice_rows_written_total", dimensions: dims).increment(by: Int(report.rowsWritten))
        Counter(label: "sluice_rows_rejected_total", dimensions: dims).increment(by: Int(report.rowsRejected))
        Counter(label: "sluice_transforms_total", dimensions: dims + [("status", report.status.rawValue)]).increment()
        for (kind, n) in report.schemaChanges ?? [:] {
            Counter(label: "sluice_schema_changes_total", dimensions: dims + [("kind", kind)]).increment(by: n)
        }
    }

    private func transform(client: String) {
        guard let mapping = daemon.mappingsSnapshot()[client] else { return }
        if daemon.manifest.dialect == .postgres { return transformClaimed(client: client, mapping: mapping) }
        let agent = daemon.agentSnapshot()
        // Agents sharing the manifest: one transforms a client's pending versions at a time,
        // under the client's transforms lease (its record is refused once the lease is lost).
        // The lease is handed back after the round, so that whichever agent has new versions
        // next takes it; one that finds it held looks again a little later.
        let leaseKey = SourceKey(client: client, source: Self.leaseName)
        guard case .held(let fence) = daemon.leases.claim(leaseKey) else {
            enqueue(client: client, after: .nanoseconds(daemon.leases.renewInterval))
            return
        }
        defer { daemon.leases.release(leaseKey) }
        // With other agents committing too, a version with a smaller id can be committed after
        // a round read the newest id: every round then reads all pending versions.
        let shared = daemon.manifest.dialect == .postgres
        let after = shared ? nil : condition.withLock { transformedThrough[client] }
        do {
            // Read before the candidates: every version up to it is among them, so once they
            // are all transformed, the next round can start above it.
            let newest = try daemon.manifest.newestVersionID()
            let reports = try agent.runTransforms(mapping, manifest: daemon.manifest, lake: daemon.lake, dataset: nil,
                                                  selection: after.map { .pendingAfter($0) } ?? .pending,
                                                  shouldStop: { [self] in isStopped() }, fence: fence) { [self] report, elapsed in
                count(report, client: client, elapsed: elapsed)
            }
            // Read along the held index: a `sluice transform --held` from the shell shows too.
            daemon.recordHeldGauge()
            if reports.contains(where: \.postponed) {
                retryLater(client: client)
            } else if !isStopped() {
                condition.withLock {
                    transformedThrough[client] = newest
                    failedRounds[client] = nil
                }
            }
        } catch {
            daemon.logger.error("Transforms failed", metadata: ["client": "\(client)", "error": "\(error)"])
            retryLater(client: client)
        }
    }

    /// Queues `client` again after `delay` (unless the pool stops meanwhile).
    private func enqueue(client: String, after delay: Duration) {
        DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(Int(delay.nanoseconds))) { [weak self] in
            guard let self, !self.isStopped() else { return }
            self.enqueue(client: client)
        }
    }

    /// A round that could not finish (the manifest busy or away, the disk full): the client's
    /// pending versions are tried again after a delay that doubles with each such round in a
    /// row, from `retryDelay` up to `maxRetryDelay`. A new version's commit queues it sooner.
    private func retryLater(client: String) {
        let n = condition.withLock {
            failedRounds[client, default: 0] += 1
            return failedRounds[client]!
        }
        let delay = min(Self.retryDelay * (1 << min(n - 1, 16)), Self.maxRetryDelay)
        daemon.logger.notice("Pending transforms are tried again later", metadata: ["client": "\(client)", "in_seconds": "\(delay.components.seconds)"])
        enqueue(client: client, after: delay)
    }

    static let retryDelay = Duration.seconds(5)
    static let maxRetryDelay = Duration.seconds(60)

    /// On a shared (PostgreSQL) manifest every agent's workers take part in a client's backlog:
    /// each claims a few pending versions at a time (`SELECT … FOR UPDATE SKIP LOCKED`), keeps
    /// the claims renewed while it works, and records each transform under its claim, which the
    /// record removes. A claim this agent could not use (it stopped) is handed back; one that a
    /// stalled agent lost runs out and is claimed again, and the stalled agent's record is refused.
    private func transformClaimed(client: String, mapping: ClientMapping) {
        let agent = daemon.agentSnapshot()
        // Claims keep this agent's own claimers apart too: the workers' threads are shared
        // among the clients being transformed, so that they stay `transform_workers` in all.
        let busy = condition.withLock { max(1, running.count) }
        let claimers = max(1, agent.config.transformWorkers / busy)
        let unfinished = Mutex(false)
        parallelFor(count: claimers, threads: claimers, setup: {}) { [self] _, _ in
            if !claimAndTransform(client: client, mapping: mapping, agent: agent) { unfinished.withLock { $0 = true } }
        }
        daemon.recordHeldGauge()
        // Once a round, however many of its claimers stopped short.
        if unfinished.withLock({ $0 }) { retryLater(client: client) }
    }

    /// Claims and transforms the client's pending versions until none is left (true), or until
    /// the pool stops (true), or until a claim or a transform could not finish (false).
    private func claimAndTransform(client: String, mapping: ClientMapping, agent: Agent) -> Bool {
        let leases: LeaseKeeper = daemon.leases
        while !isStopped() {
            let claimed: [(candidate: Manifest.TransformCandidate, fence: LeaseFence)]
            do {
                claimed = try daemon.manifest.claimPendingTransforms(client: client, owner: leases.owner, ttlMillis: leases.ttlNanoseconds / 1_000_000,
                                                                     limit: Self.claimBatch)
            } catch {
                daemon.logger.error("Transforms failed", metadata: ["client": "\(client)", "error": "\(error)"])
                return false
            }
            if claimed.isEmpty {
                condition.withLock { failedRounds[client] = nil }
                return true
            }
            for c in claimed { leases.adopt(c.fence) }
            var recorded = Set<String>()
            var postponed = false
            do {
                postponed = try agent.runTransforms(mapping, manifest: daemon.manifest, lake: daemon.lake, claimed: claimed, shouldStop: { [self] in isStopped() },
                                            recording: { fence in
                                                // Renewing stops before the record removes the claim.
                                                leases.forget(SourceKey(client: fence.client, source: fence.source))
                                                recorded.insert(fence.source)
                                            }) { [self] report, elapsed in
                    count(report, client: client, elapsed: elapsed)
                }.contains(where: \.postponed)
            } catch {
                daemon.logger.error("Transforms failed", metadata: ["client": "\(client)", "error": "\(error)"])
                postponed = true
            }
            for c in claimed where !recorded.contains(c.fence.source) {
                leases.release(SourceKey(client: client, source: c.fence.source))
            }
            if postponed { return false }
        }
        return true
    }
}
