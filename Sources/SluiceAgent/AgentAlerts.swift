import Foundation
import Logging
import SluiceConfig
import SluiceIngest
import SluiceManifest
import SluiceSupport
#if canImport(Glibc)
import Glibc
#endif

/// The alerts the agent raises from what it sees outside a transform: a source that keeps
/// failing, a changed host key, an audit, the free disk space. Each is queued in the outbox;
/// the daemon's sender (or a one-shot command, before it exits) delivers it.
extension Agent {
    /// Sends the alerts that are due now: what a one-shot command queued (the daemon sends
    /// all the time), for up to `budget`. One that cannot be sent (or is left when the budget
    /// is up) stays queued for the next command or the daemon.
    package func deliverAlerts(_ manifest: Manifest, budget: Duration = .seconds(60)) {
        guard config.alerts.sends else { return }
        let sender = AlertSender(manifest: manifest, logger: logger, settings: config.alerts)
        let deadline = ContinuousClock.now + budget
        // A round sends up to 100; a pull of many files queues more lineage events than that.
        while ContinuousClock.now < deadline {
            let (sent, failed) = sender.deliverDue()
            if sent == 0 || failed > 0 { break }
        }
    }

    /// `host_key_changed` for each source of a pass whose server presented another key than
    /// known_hosts has (resolved by a pass of the source that connects).
    package static func hostKeyAlerts(client: String, report: PullReport, sources: [String]) -> [AlertEvent] {
        sources.map { source in
            let e = AlertEvent(event: "host_key_changed", severity: "critical", client: client, source: source,
                               message: report.sourceErrors.first { $0.source == source }?.message ?? "", id: "host_key_changed:\(client)/\(source)")
            let changed = report.sourceErrors.contains { $0.source == source && $0.message.contains(SourceError.hostKeyChanged) }
            return changed ? e : e.resolution("\(client)/\(source) connected with a trusted host key")
        }
    }

    /// `audit_failed` (or its resolution by a clean audit) for the audit's scope.
    package static func auditAlert(_ r: AuditReport, client: String?) -> AlertEvent {
        let scope = client ?? "all clients"
        var problems: [String] = []
        if !r.missing.isEmpty { problems.append("\(r.missing.count) missing (\(r.missing.prefix(3).joined(separator: ", ")))") }
        if !r.corrupt.isEmpty { problems.append("\(r.corrupt.count) corrupt (\(r.corrupt.prefix(3).map(\.lakePath).joined(separator: ", ")))") }
        if !r.orphans.isEmpty { problems.append("\(r.orphans.count) orphan files") }
        if !r.tempFiles.isEmpty { problems.append("\(r.tempFiles.count) temp files") }
        let e = AlertEvent(event: "audit_failed", severity: "critical", client: client,
                           message: "The audit of \(scope) found the lake and the manifest disagree: \(problems.joined(separator: "; ")). Run `sluice audit` for the list.",
                           id: "audit_failed:\(client ?? "*")")
        return r.clean ? e.resolution("The audit of \(scope) found the lake and the manifest agree (\(r.checked) files checked)") : e
    }

    /// `disk_low` for the lake's and the state folder's filesystems (one when they share one).
    package func diskAlerts() -> [AlertEvent] {
        var seen = Set<UInt64>()
        var events: [AlertEvent] = []
        for (key, dir) in [("lake_dir", config.lakeDir), ("state_dir", config.stateDir)] {
            var s = statvfs()
            guard statvfs(dir, &s) == 0, seen.insert(UInt64(s.f_fsid)).inserted else { continue }
            let free = Int64(s.f_bavail) * Int64(s.f_frsize)
            let total = Int64(s.f_blocks) * Int64(s.f_frsize)
            let low: Bool
            let limit: String
            switch config.alerts.minFreeSpace {
            case .bytes(let b):
                low = free < b
                limit = ByteSizeText.format(b)
            case .percent(let p):
                low = total > 0 && Double(free) / Double(total) * 100 < p
                limit = "\(p.formatted())% of \(ByteSizeText.format(total))"
            }
            let e = AlertEvent(event: "disk_low", severity: "critical",
                               message: "agent.\(key) \(dir) has \(ByteSizeText.format(free)) free, under min_free_space (\(limit)): free space or grow the filesystem before ingests fail",
                               id: "disk_low:\(dir)")
            events.append(low ? e : e.resolution("agent.\(key) \(dir) has \(ByteSizeText.format(free)) free again"))
        }
        return events
    }
}

/// The daemon's alert loop: delivers the outbox as alerts come due, every 20 s checks the
/// delivery expectations' deadlines, every minute checks the free disk space and queues the
/// reminders of conditions still open, and every hour forgets what was sent 30 days ago.
package final class AlertLoop: @unchecked Sendable {  // `job` is set once by start(), before stop or join
    private unowned let daemon: AgentRuntime
    package let waker = Waker()
    private var job: BackgroundJob?

    package init(daemon: AgentRuntime) { self.daemon = daemon }

    /// How long sent alerts and lineage events stay in the outbox (`sluice alerts` lists them).
    static let keepSent: Int64 = 30 * 86_400_000_000_000

    package func start() { job = BackgroundJob(name: "alerts") { [self] in run() } }

    /// Wakes the loop to send what was just queued.
    package func poke() { waker.wake() }

    package func stop() { waker.stop() }
    package func join(until deadline: Date) -> Bool { job?.wait(until: deadline) ?? true }

    private func run() {
        var lastCheck: Int64 = 0
        var lastExpectations: Int64 = 0
        var lastPrune: Int64 = 0
        repeat {
            let agent = daemon.agentSnapshot()
            guard agent.config.alerts.sends else { continue }
            let now = nowNanoseconds()
            if now - lastCheck >= 60_000_000_000 {
                lastCheck = now
                try? daemon.manifest.raiseAlerts(agent.diskAlerts())
                _ = try? daemon.manifest.queueReminders(now: now)
                if now - lastPrune >= 3_600_000_000_000 {
                    lastPrune = now
                    _ = try? daemon.manifest.pruneSentAlerts(before: Timestamp.iso8601(nanoseconds: now - Self.keepSent))
                }
            }
            // Deadlines pass by the clock, not by an event: looked at every 20 s.
            if now - lastExpectations >= 20_000_000_000 {
                lastExpectations = now
                agent.checkExpectations(daemon.manifest, now: now / 1_000_000_000)
            }
            AlertSender(manifest: daemon.manifest, logger: daemon.logger, settings: agent.config.alerts).deliverDue()
        } while waker.sleep(nanoseconds: nextWait())
        // Stopping: one last round for what the last passes queued (the rest waits for the next start).
        let settings = daemon.agentSnapshot().config.alerts
        if settings.sends { AlertSender(manifest: daemon.manifest, logger: daemon.logger, settings: settings).deliverDue() }
    }

    /// Until the next alert is due, at most a second.
    private func nextWait() -> Int64 {
        guard let due = try? daemon.manifest.nextAlertDue() else { return 1_000_000_000 }
        return max(0, min(1_000_000_000, due - nowNanoseconds()))
    }
}

/// One alert in the outbox, as `sluice alerts --json` prints it.
public struct AlertRow: Sendable, Encodable {
    public var id: Int64
    public var alert: String
    public var event: String
    public var condition: String
    public var resolved: Bool
    public var created_at: String
    /// "sent", or "pending" (waiting for its next attempt).
    public var state: String
    public var attempts: Int
    public var sent_at: String?
    public var next_attempt_at: String?
    public var last_error: String?
    /// The event as it is sent.
    public var body: String
}

extension AlertRow {
    public init(_ e: OutboxEntry) {
        self.init(id: e.id, alert: e.target, event: e.event, condition: e.conditionID, resolved: e.resolved, created_at: e.createdAt,
                  state: e.sentAt == nil ? "pending" : "sent", attempts: e.attempts, sent_at: e.sentAt,
                  next_attempt_at: e.sentAt == nil ? Timestamp.iso8601(nanoseconds: e.nextAttemptAt) : nil, last_error: e.lastError, body: e.body)
    }
}

extension Agent {
    /// `sluice alerts`: the newest alerts (or only the unsent ones) and how their delivery went.
    public func alerts(limit: Int, pendingOnly: Bool) throws(AgentError) -> [AlertRow] {
        // Listing never creates a manifest.
        guard config.manifestMayExist else { return [] }
        let manifest = try openManifest()
        do {
            return try manifest.recentAlerts(limit: limit, pendingOnly: pendingOnly).map(AlertRow.init)
        } catch {
            throw AgentError(.runtime, error.description)
        }
    }

    /// `sluice alerts test NAME`: sends a test event to one alert target now (not through the
    /// outbox) and returns what was sent.
    public func testAlert(name: String) throws(AgentError) -> AlertEvent {
        guard let target = config.alerts.targets.first(where: { $0.name == name }) else {
            let known = config.alerts.targets.map(\.name)
            throw AgentError(.usage, "no [[alerts]] entry is named '\(name)' in \(config.file) (configured: \(known.isEmpty ? "none" : known.joined(separator: ", ")))")
        }
        let host = ProcessInfo.processInfo.hostName
        let event = AlertEvent(event: "test", severity: "info", message: "A test alert from sluice on \(host) (`sluice alerts test \(name)`)", id: "test:\(name)")
        // The sender needs no manifest to send one event.
        let sender = AlertSender(manifest: nil, logger: logger, settings: config.alerts)
        do throws(AlertDeliveryError) {
            try sender.deliver(event.json, to: target)
        } catch {
            throw AgentError(.runtime, error.description)
        }
        return event
    }
}

extension Agent {
    /// The alert targets' files that cannot be read here (a warning in `check-config`: the
    /// service may run as another user).
    public func alertSecretProblems() -> [String] {
        config.alerts.targets.flatMap { t in
            [("secret_file", t.secretFile), ("password_file", t.passwordFile), ("ca_file", t.caFile)].compactMap { key, file -> String? in
                guard let file, access(file, R_OK) != 0 else { return nil }
                return "alert '\(t.name)': \(key) \(file) cannot be read: \(String(cString: strerror(errno)))"
            }
        }
    }

    /// `[manifest] password_file` or `ca_file` that cannot be read.
    public func manifestSecretProblems() -> [String] {
        var files: [(String, String?)] = []
        if case .postgres(let pg) = config.manifest { files += [("manifest.password_file", pg.passwordFile), ("manifest.ca_file", pg.caFile)] }
        if let lake = config.lakeBucket { files.append(("lake.credentials_file", lake.credentialsFile)) }
        return files.compactMap { key, file -> String? in
            guard let file, access(file, R_OK) != 0 else { return nil }
            return "\(key) \(file) cannot be read: \(String(cString: strerror(errno)))"
        }
    }
}
