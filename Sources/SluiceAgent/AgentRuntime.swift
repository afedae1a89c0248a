import Foundation
import Logging
import Metrics
import SluiceLake
import SluiceManifest
import SluiceSupport
import SluiceIngest
import SluiceConfig
import SluiceSources
import SluiceTransform
import SluiceFormats
#if canImport(Glibc)
import Glibc
#endif

/// A counting semaphore whose waits give up when the waiter is stopped. Its limit can change
/// while slots are held (a reload): holders keep theirs, and new takers wait until fewer than
/// the new limit are in use.
package final class Slots: @unchecked Sendable {  // limit and inUse are guarded by condition
    private let condition = NSCondition()
    private var limit: Int
    private var inUse = 0

    package init(_ count: Int) { limit = count }

    /// Takes a slot; false (nothing taken) when `waker` stops first.
    package func acquire(unless waker: Waker) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while inUse >= limit {
            if waker.isStopped { return false }
            _ = condition.wait(until: Date(timeIntervalSinceNow: 0.2))
        }
        if waker.isStopped { return false }
        inUse += 1
        return true
    }

    package func release() {
        condition.lock()
        inUse -= 1
        condition.broadcast()
        condition.unlock()
    }

    /// A new limit, for the takers from now on.
    package func setLimit(_ count: Int) {
        condition.lock()
        limit = count
        condition.broadcast()
        condition.unlock()
    }
}

/// The long-running agent (`sluice run`): one runner per source (SFTP polls on a schedule,
/// drop folders watched with inotify), a pool of transform workers, and the status and
/// metrics they report. Every pass goes through the same `Ingestor` as `sluice pull`.
public final class AgentRuntime: SourceHost, @unchecked Sendable {  // mutable state guarded by `lock`
    public let logger: Logger
    public let manifest: Manifest
    public let lake: Lake
    /// `state_dir` as the process started with it (a reload needs a restart to change it).
    public let stateDir: String
    public let started = Date()

    private let lock = NSLock()
    private var agent: Agent
    private var mappings: [String: ClientMapping]
    private var runners: [SourceKey: any SourceRunner] = [:]
    private var statuses: [SourceKey: SourceStatus] = [:]
    private var firstCycleStarted = false
    private var stopping = false
    /// Set when shutdown begins: passes take no new batch or file.
    package let draining = Waker()
    /// Set when shutdown_timeout is up: copies in flight are dropped.
    package let shutdown = Waker()
    package let transfers: Slots
    /// One poll at a time per SFTP server ("host:port"), so that the sessions to a server
    /// stay within the polling source's max_connections even when several sources share it.
    private var servers: [String: Slots] = [:]
    package private(set) var transforms: TransformPool!
    /// Delivers alerts, checks the disk, queues reminders.
    package private(set) var alerts: AlertLoop!
    /// The leases of the polled sources this agent polls.
    package private(set) var leases: LeaseKeeper!
    /// Uploads to one path wait for each other.
    package let uploadLocks = PathLocks()

    package func serverSlot(_ key: String) -> Slots {
        lock.withLock {
            if let s = servers[key] { return s }
            let s = Slots(1)
            servers[key] = s
            return s
        }
    }

    public var config: AgentConfig { lock.withLock { agent.config } }

    /// Opens the manifest and lake of `agent`'s config (cleaning up after a crash) and loads
    /// the mappings. Nothing runs until `start()`.
    public init(agent: Agent) throws(AgentError) {
        self.agent = agent
        logger = agent.logger
        (manifest, lake) = try agent.openStore()
        stateDir = agent.config.stateDir
        mappings = try agent.mappings()
        transfers = Slots(agent.config.maxTransfers)
        transforms = TransformPool(daemon: self, workers: agent.config.transformWorkers)
        alerts = AlertLoop(daemon: self)
        leases = LeaseKeeper(daemon: self, owner: agent.config.name, ttlNanoseconds: agent.config.leaseTTLNanoseconds)
    }

    /// Starts every source's runner, and transforms whatever is pending from before.
    public func start() {
        lock.withLock {
            for client in agent.config.clients {
                for source in client.sources { startRunner(client: client.id, source: source) }
            }
        }
        for id in mappingsSnapshot().keys.sorted() { transforms.enqueue(client: id) }
        recordHeldGauge()
        alerts.start()
        leases.start()
    }

    private func startRunner(client: String, source: SourceConfig) {
        let key = SourceKey(client: client, source: source.name)
        var status = statuses[key] ?? SourceStatus(client: client, source: source.name, type: "")
        let runner: any SourceRunner
        status.type = source.type
        switch source.settings.drive {
        case .watch(let makeRunner):
            runner = makeRunner(self, key)
        case .poll(let server, let interval):
            runner = SourcePoller(daemon: self, key: key, config: source, server: server, interval: interval)
        case .push:
            runner = UploadEndpoint(config: source)
        }
        status.state = .idle
        statuses[key] = status
        runners[key] = runner
        runner.start()
    }

    package func mappingsSnapshot() -> [String: ClientMapping] { lock.withLock { mappings } }
    public func agentSnapshot() -> Agent { lock.withLock { agent } }

    /// Applies a new config and its mappings (SIGHUP): sources that were removed or changed
    /// stop (their pass in flight finishes), new and changed ones start. `agent.*` keys other
    /// than the limits need a restart, which is logged.
    public func reload(_ new: Agent) throws(AgentError) {
        let newMappings = try new.mappings()
        let old = agentSnapshot()
        for (key, changed) in [("state_dir", old.config.stateDir != new.config.stateDir), ("lake_dir", old.config.lakeDir != new.config.lakeDir),
                               ("http_listen", old.config.httpListen != new.config.httpListen)] where changed {
            logger.warning("Config change needs a restart; the old value stays in use until then", metadata: ["key": "agent.\(key)"])
        }
        for (key, changed) in [("api", old.config.api != new.config.api), ("lake", old.config.lakeBucket != new.config.lakeBucket)] where changed {
            logger.warning("Config change needs a restart; the old value stays in use until then", metadata: ["key": "\(key)"])
        }
        lock.withLock {
            var keep = new.config
            keep.stateDir = old.config.stateDir
            keep.lakeDir = old.config.lakeDir
            keep.lakeBucket = old.config.lakeBucket
            keep.httpListen = old.config.httpListen
            keep.api = old.config.api
            agent = Agent(config: keep, logger: logger)
            manifest.alertRouting = keep.alerts.routing(lake: keep)
            mappings = newMappings
            transfers.setLimit(keep.maxTransfers)
            var wanted: [SourceKey: (String, SourceConfig)] = [:]
            for c in keep.clients { for s in c.sources { wanted[SourceKey(client: c.id, source: s.name)] = (c.id, s) } }
            for (key, runner) in runners {
                guard let (_, s) = wanted[key], runner.sameConfig(as: s) else {
                    // Its pass in flight finishes; the source lock keeps a replacement from
                    // overlapping it.
                    runner.stop()
                    runners[key] = nil
                    statuses[key] = nil
                    if wanted[key] == nil { leases.forget(key) }
                    continue
                }
                wanted[key] = nil
            }
            for (_, (client, s)) in wanted.sorted(by: { $0.key < $1.key }) {
                startRunner(client: client, source: s)
            }
        }
        transforms.resize(workers: new.config.transformWorkers)
        for id in newMappings.keys.sorted() { transforms.enqueue(client: id) }
        logger.notice("Config reloaded", metadata: ["sources": "\(lock.withLock { runners.count })", "config": "\(new.config.file)"])
    }

    /// Graceful shutdown: stops scheduling, lets the files being copied finish and commit
    /// (a pass takes no new batch or file), and at `timeout` drops the copies still in flight
    /// (nothing partial is ever committed). Returns true if everything ended in time.
    public func stop(timeout: Duration) -> Bool {
        let all: [any SourceRunner] = lock.withLock {
            stopping = true
            return Array(runners.values)
        }
        for r in all { r.stop() }
        draining.stop()
        transforms.stop()
        let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
        let deadline = Date(timeIntervalSinceNow: seconds)
        var clean = true
        for r in all where !r.join(until: deadline) { clean = false }
        if !transforms.join(until: deadline) { clean = false }
        // The passes are over: the sources go to the other agents at once.
        leases.stop()
        // What the last passes queued goes out before the process ends (or at the next start).
        alerts.stop()
        if !alerts.join(until: deadline) { clean = false }
        if !clean {
            // Out of time: in-flight copies give up at their next chunk.
            shutdown.stop()
            let grace = Date(timeIntervalSinceNow: 5)
            for r in all { _ = r.join(until: grace) }
            _ = transforms.join(until: grace)
        }
        return clean
    }

    // MARK: Passes

    /// Runs one pass of one source through the ingest pipeline (the code `pull` runs) and
    /// records what it did in the status and metrics. Transforms are queued after it.
    /// An upload passes `stoppable: false` (a graceful shutdown lets it finish) and its own
    /// `abandon` (its shutdown_timeout).
    /// `syncMethod` overrides the config's (an upload, one file, fsyncs just that file rather
    /// than syncing the lake's whole file system).
    package func ingest(_ key: SourceKey, source: any Source, trigger: String, stoppable: Bool = true,
                abandon: (@Sendable () -> Bool)? = nil, syncMethod: SyncMethod? = nil, fence: LeaseFence? = nil) -> PullReport? {
        let agent = agentSnapshot()
        let (draining, shutdown) = (self.draining, self.shutdown)
        var stopRequested: (@Sendable () -> Bool)?
        if stoppable { stopRequested = { draining.isStopped } }
        let abortRequested: @Sendable () -> Bool = abandon ?? { shutdown.isStopped }
        let ingestor = Ingestor(lake: lake, manifest: manifest, stateDir: agent.config.stateDir, logger: logger,
                                syncMethod: syncMethod ?? agent.config.syncMethod, stopRequested: stopRequested, abortRequested: abortRequested,
                                fence: fence)
        let t0 = ContinuousClock.now
        let dims = [("client", key.client), ("source", key.source)]
        update(key) {
            $0.lastPoll = Timestamp.now()
        }
        let report: PullReport
        do {
            report = try ingestor.pull(client: key.client, sources: [source], trigger: trigger, onlySource: key.source)
        } catch {
            logger.about(client: key.client, source: key.source).error("Ingest pass failed", metadata: ["error": "\(error)"])
            Counter(label: "sluice_ingest_failures_total", dimensions: dims).increment()
            update(key) {
                $0.lastError = "\(error)"
                $0.consecutiveFailures += 1
            }
            raiseSourceAlerts(key, report: nil, agent: agent)
            return nil
        }
        let elapsed = ContinuousClock.now - t0
        Metrics.Timer(label: "sluice_transfer_duration_seconds", dimensions: dims, preferredDisplayUnit: .seconds).recordNanoseconds(elapsed.nanoseconds)
        if report.counts.new > 0 {
            Counter(label: "sluice_files_ingested_total", dimensions: dims).increment(by: report.counts.new)
            Counter(label: "sluice_bytes_ingested_total", dimensions: dims).increment(by: Int(report.counts.bytes))
        }
        let failures = report.counts.failed + report.sourceErrors.count + report.afterIngestFailures
        if failures > 0 { Counter(label: "sluice_ingest_failures_total", dimensions: dims).increment(by: failures) }
        let error = report.sourceErrors.first?.message
            ?? report.files.first { $0.status == .failed || ($0.error != nil && $0.status != .skipped) }.map { "\($0.path): \($0.error ?? "failed")" }
        update(key) {
            $0.filesNew += report.counts.new
            $0.filesUnchanged += report.counts.unchanged
            $0.filesFailed += report.counts.failed
            $0.bytesNew += report.counts.bytes
            if report.sourceErrors.isEmpty {
                $0.lastSuccess = Timestamp.now()
                $0.consecutiveFailures = 0
            } else {
                $0.consecutiveFailures += 1
            }
            if let error { $0.lastError = error }
        }
        if report.sourceErrors.isEmpty {
            Gauge(label: "sluice_source_last_success_timestamp_seconds", dimensions: dims).record(Date().timeIntervalSince1970)
        }
        if report.counts.new > 0 { transforms.enqueue(client: key.client) }
        raiseSourceAlerts(key, report: report, agent: agent)
        return report
    }

    /// `source_failing` once the source has failed `alert_after_failures` passes in a row
    /// (resolved by the next pass that reaches it), and `host_key_changed`.
    private func raiseSourceAlerts(_ key: SourceKey, report: PullReport?, agent: Agent) {
        guard manifest.alertRouting != nil else { return }
        let status = lock.withLock { statuses[key] }
        let failures = status?.consecutiveFailures ?? 0
        let e = AlertEvent(event: "source_failing", severity: "critical", client: key.client, source: key.source,
                           message: "\(key.client)/\(key.source) failed \(failures) polls in a row: \(status?.lastError ?? "see the log")",
                           id: "source_failing:\(key.client)/\(key.source)")
        var events: [AlertEvent] = []
        if failures >= agent.config.alerts.afterFailures {
            events.append(e)
        } else if failures == 0 {
            events.append(e.resolution("\(key.client)/\(key.source) polled ok again"))
        }
        if let report { events += Agent.hostKeyAlerts(client: key.client, report: report, sources: [key.source]) }
        try? manifest.raiseAlerts(events)
        alerts.poke()
    }

    /// Re-runs, with the mappings as they are now and while no worker transforms the client:
    /// one version whose latest transform failed or was held (after a mapping fix), or every
    /// held version of the client (the console's buttons).
    public func rerunTransforms(client: String, selection: Manifest.TransformSelection) throws(AgentError) -> [TransformReport] {
        guard let mapping = try agentSnapshot().mappings()[client] else {
            throw AgentError(.usage, "client '\(client)' has no mapping file: create \(config.mappingsDir)/\(client).toml")
        }
        lock.withLock { mappings[client] = mapping }
        let result: Result<[TransformReport], AgentError> = transforms.exclusive(client: client) {
            Result { () throws(AgentError) in
                try agentSnapshot().runTransforms(mapping, manifest: manifest, lake: lake, dataset: nil, selection: selection)
            }
        }
        defer { recordHeldGauge() }
        return try result.get()
    }

    /// Sets `sluice_transforms_held{client}`: how many versions of each client are held by a
    /// schema-change policy (0 for a client with none).
    package func recordHeldGauge() {
        guard let held = try? manifest.heldCounts() else { return }
        for client in config.clients {
            Gauge(label: "sluice_transforms_held", dimensions: [("client", client.id)]).record(held[client.id] ?? 0)
        }
    }

    package func runPass(_ key: SourceKey, source: any Source, trigger: String) -> PullReport? {
        ingest(key, source: source, trigger: trigger)
    }

    package func update(_ key: SourceKey, _ body: (inout SourceStatus) -> Void) {
        lock.withLock {
            guard var s = statuses[key] else { return }
            body(&s)
            statuses[key] = s
        }
    }

    /// A runner has begun its first scan or poll.
    package func cycleStarted() { lock.withLock { firstCycleStarted = true } }

    // MARK: Health

    /// Every runner's loop is running (none has ended while the daemon runs).
    public var isAlive: Bool {
        lock.withLock { stopping || runners.values.allSatisfy { !$0.hasEnded } } && transforms.isAlive
    }

    /// The first scan or poll has started (or there is no source) and the manifest takes writes.
    public var isReady: Bool {
        // Upload sources have no cycle: they are ready as soon as they exist.
        let started = lock.withLock { firstCycleStarted || runners.values.allSatisfy { $0 is UploadEndpoint } }
        return started && (try? manifest.checkWritable()) != nil
    }

    public var statusSnapshot: [SourceStatus] {
        let rows = lock.withLock { statuses.keys.sorted().map { statuses[$0]! } }
        return rows.map { row in
            var r = row
            if let h = leases.holder(SourceKey(client: r.client, source: r.source)) {
                r.owner = h.expired ? nil : h.owner
                r.leaseExpiresAt = h.expiresAt
            }
            return r
        }
    }

    public var transformQueueDepth: Int { transforms.depth }

    /// A one-line summary for systemd's STATUS=.
    public var summary: String {
        let all = statusSnapshot
        let new = all.reduce(0) { $0 + $1.filesNew }
        let failing = all.filter { $0.consecutiveFailures > 0 }.count
        return "\(all.count) sources, \(new) files ingested since start, \(failing) failing, \(transformQueueDepth) transforms queued"
    }
}

/// Polls a remote source (sftp, s3) every `poll_interval` (the first poll at start, spread by
/// a little jitter), backing off exponentially after failures up to 8 × the interval. At most
/// `max_transfers` polls run at once over all sources, one at a time per server (each with up
/// to its `max_connections` connections); a poll never overlaps itself.
package final class SourcePoller: SourceRunner, @unchecked Sendable {  // `loop` is set once by start(), before stop or join
    package unowned let daemon: AgentRuntime
    package let key: SourceKey
    package let config: SourceConfig
    /// `host:port` (sftp) or the endpoint (s3): polls of one server take turns.
    package let server: String
    package let interval: Int64
    package let makeSource: @Sendable () -> any Source
    private let waker = Waker()
    private var loop: BackgroundJob?

    package init(daemon: AgentRuntime, key: SourceKey, config: SourceConfig, server: String, interval: Int64) {
        self.daemon = daemon
        self.key = key
        self.config = config
        self.server = server
        self.interval = interval
        let context = SourceContext(client: key.client, name: key.source, logger: daemon.logger, stateDir: daemon.stateDir)
        let settings = config.settings
        makeSource = {
            guard let source = settings.makeSource(context) else { preconditionFailure("a polled source type makes a source") }
            return source
        }
    }

    package func sameConfig(as source: SourceConfig) -> Bool { source == config }

    package func start() { loop = BackgroundJob(name: "poll \(key)") { [self] in run() } }
    package func stop() { waker.stop() }
    package func join(until deadline: Date) -> Bool { loop?.wait(until: deadline) ?? true }
    package var hasEnded: Bool { loop?.isFinished ?? false }

    /// The wait before the next poll: the interval after a success, doubling per failure up
    /// to 8 × the interval, each with ±10 % jitter so that sources drift apart.
    package static func delay(interval: Int64, failures: Int) -> Int64 {
        let base = failures == 0 ? interval : min(interval * 8, interval << min(failures, 3))
        return base + Int64.random(in: -(base / 10)...(base / 10))
    }

    private func run() {
        // The first poll at start, spread over up to a tenth of the interval (at most 2 s).
        var wait = Int64.random(in: 0...min(interval / 10, 2_000_000_000))
        var failures = 0
        while waker.sleep(nanoseconds: wait) {
            // One agent polls a source at a time: the one holding its lease.
            let fence: LeaseFence
            switch daemon.leases.claim(key) {
            case .held(let f):
                fence = f
            case .elsewhere:
                daemon.update(key) { $0.state = .elsewhere }
                daemon.cycleStarted()  // ready: the source has an agent, just not this one
                wait = min(daemon.leases.renewInterval, interval)
                continue
            case .failed(let why):
                failures += 1
                wait = Self.delay(interval: interval, failures: failures)
                daemon.update(key) {
                    $0.state = .backoff
                    $0.lastError = "cannot claim the source's lease: \(why)"
                    $0.consecutiveFailures += 1
                }
                continue
            }
            let slots = daemon.transfers
            let turn = daemon.serverSlot(server)
            daemon.update(key) { $0.state = .waiting }
            guard slots.acquire(unless: waker) else { break }
            guard turn.acquire(unless: waker) else {
                slots.release()
                break
            }
            daemon.update(key) { $0.state = .polling }
            daemon.cycleStarted()
            let report = daemon.ingest(key, source: makeSource(), trigger: "schedule", fence: fence)
            turn.release()
            slots.release()
            if let report, report.sourceErrors.isEmpty { failures = 0 } else { failures += 1 }
            wait = Self.delay(interval: interval, failures: failures)
            let next = Timestamp.iso8601(nanoseconds: Int64(Date().timeIntervalSince1970 * 1e9) + wait)
            daemon.update(key) {
                $0.state = failures > 0 ? .backoff : .idle
                $0.nextPoll = next
            }
            if failures > 0 {
                daemon.logger.about(client: key.client, source: key.source).warning("Poll failed; backing off", metadata: [
                    "failures": "\(failures)", "retry_in.ms": "\(wait / 1_000_000)",
                ])
            }
        }
        daemon.update(key) { $0.state = .stopped }
    }
}
