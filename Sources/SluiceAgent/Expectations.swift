import Foundation
import SluiceConfig
import SluiceFormats
import SluiceManifest
import SluiceSupport
import SluiceTransform

/// One deadline of an expectation and how it went.
public struct DeadlineState: Sendable, Encodable, Equatable {
    /// The schedule's instant (RFC 3339, UTC), and the same as local time in the expectation's zone.
    public var deadline: String
    public var local: String
    /// The deadline plus the grace: a delivery after it is late.
    public var due: String
    /// "on_time", "late" (delivered after `due`), "missing" (nothing yet, past `due`), or
    /// "pending" (nothing yet, not due yet).
    public var status: String
    public var delivered_at: String?
    public var path: String?
}

/// An expectation as `sluice status`, `/status` and the console show it.
public struct ExpectationStatus: Sendable, Encodable {
    public var client: String
    public var match: String
    public var source: String?
    public var schedule: String
    public var timezone: String
    public var grace: String
    /// When the latest delivery that fulfilled a deadline was committed, and that deadline.
    public var last_fulfilled_at: String?
    public var last_fulfilled_deadline: String?
    /// The next deadline after now.
    public var next_deadline: String?
    /// The deadlines still missing (past due, nothing delivered).
    public var missing: [String]
    /// The last 30 days' deadlines, oldest first, and the next one.
    public var deadlines: [DeadlineState]
}

/// Works out an expectation's deadlines and which delivery fulfilled each. A delivery (a
/// committed version whose path, or path without a compression or OpenPGP suffix, matches)
/// falls in one deadline's window — after the previous deadline plus grace, up to this deadline
/// plus grace — and fulfils that deadline on time; but when it comes in the first half of the
/// window and the deadline before was missed, it is that one's delivery, late. A delivery
/// whose deadline is already fulfilled catches up the earliest one still missing, late. A
/// deadline past its grace with no delivery is missing, which `delivery_late` reports.
package struct ExpectationCheck {
    package let client: String
    package let expectation: Expectation
    private let zone: ZoneConverter

    package init(client: String, expectation: Expectation) {
        self.client = client
        self.expectation = expectation
        zone = ZoneConverter(zone: TimeZone(identifier: expectation.timezone) ?? TimeZone(identifier: "UTC")!)
    }

    package static let window: Int64 = 30 * 86_400

    /// The deadlines from 30 days before `now` (seconds) to the first after it, each with how it went.
    package func deadlines(now: Int64, arrivals: [Manifest.Arrival]) -> [DeadlineState] {
        let grace = expectation.graceNanoseconds / 1_000_000_000
        let schedule = expectation.schedule
        var instants = schedule.instants(after: now - Self.window, through: now, utc: zone.utc(local:), offset: zone.offset(at:))
        if let next = schedule.next(after: now, utc: zone.utc(local:), offset: zone.offset(at:)) { instants.append(next) }
        guard let first = instants.first else { return [] }
        let before = schedule.previous(atOrBefore: first - 1, utc: zone.utc(local:), offset: zone.offset(at:)) ?? (first - Self.window)
        // Window k: (previous deadline + grace, this deadline + grace].
        let starts = [before + grace] + instants.dropLast().map { $0 + grace }
        var fulfilled: [(at: Int64, path: String)?] = Array(repeating: nil, count: instants.count)
        for a in arrivals where matches(a) {
            guard let t = Timestamp.nanoseconds(a.ingestedAt).map({ $0 / 1_000_000_000 }), t > starts[0] else { continue }
            guard let own = starts.lastIndex(where: { $0 < t }) else { continue }
            if own > 0, fulfilled[own - 1] == nil, t - starts[own] < instants[own] - t {
                // In the first half of its window, after the deadline before was missed: that
                // deadline's delivery, late (a file at 09:45 for a 09:00 deadline is today's).
                fulfilled[own - 1] = (t, a.displayPath)
            } else if fulfilled[own] == nil {
                fulfilled[own] = (t, a.displayPath)
            } else if let k = fulfilled[..<own].firstIndex(where: { $0 == nil }) {
                // One more: it catches up the earliest deadline still missing.
                fulfilled[k] = (t, a.displayPath)
            }
        }
        return instants.indices.map { k in
            let d = instants[k]
            let status: String
            if let f = fulfilled[k] {
                status = f.at <= d + grace ? "on_time" : "late"
            } else {
                status = d + grace <= now ? "missing" : "pending"
            }
            return DeadlineState(deadline: Self.rfc3339(d), local: localText(d), due: Self.rfc3339(d + grace), status: status,
                                 delivered_at: fulfilled[k].map { Self.rfc3339($0.at) }, path: fulfilled[k]?.path)
        }
    }

    /// Whether an arrival counts: its source, and its path or bare name against the glob.
    package func matches(_ a: Manifest.Arrival) -> Bool {
        guard expectation.source.map({ $0 == a.source }) ?? true else { return false }
        return expectation.glob.matches(a.path) || StoredBytes.bareName(a.path).map { expectation.glob.matches($0) } == true
    }

    package func status(now: Int64, arrivals: [Manifest.Arrival]) -> ExpectationStatus {
        let all = deadlines(now: now, arrivals: arrivals)
        let fulfilled = all.filter { $0.delivered_at != nil }.max { ($0.delivered_at ?? "") < ($1.delivered_at ?? "") }
        return ExpectationStatus(client: client, match: expectation.match, source: expectation.source, schedule: expectation.schedule.description,
                                 timezone: expectation.timezone, grace: DurationText.format(nanoseconds: expectation.graceNanoseconds),
                                 last_fulfilled_at: fulfilled?.delivered_at, last_fulfilled_deadline: fulfilled?.deadline,
                                 next_deadline: all.first { Timestamp.nanoseconds($0.deadline).map { $0 / 1_000_000_000 > now } ?? false }?.deadline,
                                 missing: all.filter { $0.status == "missing" }.map(\.deadline), deadlines: all)
    }

    /// `delivery_late` for each missing deadline due after `firstSeen` (seconds), and its
    /// resolution once it was fulfilled late.
    package func alerts(_ deadlines: [DeadlineState], firstSeen: Int64) -> [AlertEvent] {
        deadlines.compactMap { d in
            guard let due = Timestamp.nanoseconds(d.due).map({ $0 / 1_000_000_000 }), due > firstSeen else { return nil }
            let scope = expectation.source.map { " from source \($0)" } ?? ""
            let e = AlertEvent(event: "delivery_late", severity: "warning", client: client, source: expectation.source, path: expectation.match,
                               message: "\(client): no delivery matching \(expectation.match)\(scope) by \(d.local) \(expectation.timezone)"
                                   + " (schedule \"\(expectation.schedule)\", grace \(DurationText.format(nanoseconds: expectation.graceNanoseconds)))",
                               id: "delivery_late:\(client)/\(expectation.key)@\(d.deadline)")
            switch d.status {
            case "missing": return e
            case "late": return e.resolution("\(client): \(d.path ?? expectation.match) arrived at \(d.delivered_at ?? "") for the deadline \(d.local) \(expectation.timezone), late")
            default: return nil
            }
        }
    }

    private func localText(_ t: Int64) -> String {
        let local = t + zone.offset(at: t)
        let day = CivilDays.floorDiv(local, 86_400)
        let (y, m, d) = CivilDays.date(day)
        let s = local - day * 86_400
        return String(format: "%04lld-%02lld-%02lld %02lld:%02lld", y, m, d, s / 3600, (s / 60) % 60)
    }

    static func rfc3339(_ seconds: Int64) -> String {
        String(Timestamp.iso8601(nanoseconds: seconds * 1_000_000_000).prefix(19)) + "Z"
    }
}

extension Agent {
    /// Every expectation of one client (or all), as of `now` (seconds since the epoch).
    /// `record` notes when each was first evaluated (the daemon does; `sluice status` only reads).
    package func expectationChecks(client: String?, manifest: Manifest, now: Int64, record: Bool) throws(AgentError) -> [(ExpectationCheck, ExpectationStatus, Int64)] {
        var out: [(ExpectationCheck, ExpectationStatus, Int64)] = []
        for c in config.clients where client == nil || c.id == client {
            guard !c.expectations.isEmpty else { continue }
            do {
                let arrivals = try manifest.arrivals(client: c.id, since: Timestamp.iso8601(nanoseconds: (now - ExpectationCheck.window - 40 * 86_400) * 1_000_000_000))
                for x in c.expectations {
                    let check = ExpectationCheck(client: c.id, expectation: x)
                    let seen = try manifest.expectationFirstSeen(client: c.id, key: x.key, record: record ? now * 1_000_000_000 : nil)
                    out.append((check, check.status(now: now, arrivals: arrivals), (seen ?? now * 1_000_000_000) / 1_000_000_000))
                }
            } catch {
                throw AgentError(.runtime, error.description)
            }
        }
        return out
    }

    /// The daemon's minute check: `delivery_late` for every missed deadline, resolved when a
    /// delivery comes.
    package func checkExpectations(_ manifest: Manifest, now: Int64) {
        guard let checks = try? expectationChecks(client: nil, manifest: manifest, now: now, record: true) else { return }
        try? manifest.raiseAlerts(checks.flatMap { check, status, firstSeen in check.alerts(status.deadlines, firstSeen: firstSeen) })
    }

    /// `sluice status`' and `/status`' expectations (read only: nothing is recorded), from
    /// `manifest` (the daemon's own), else from the manifest file when there is one.
    public func expectationStatus(client: String?, manifest given: Manifest? = nil) throws(AgentError) -> [ExpectationStatus] {
        let now = Int64(Date().timeIntervalSince1970)
        guard config.clients.contains(where: { !$0.expectations.isEmpty && (client == nil || $0.id == client) }) else { return [] }
        var manifest = given
        if manifest == nil, config.manifestMayExist { manifest = try openManifest() }
        guard let manifest else {
            // No manifest yet: nothing has arrived.
            return config.clients.filter { client == nil || $0.id == client }.flatMap { c in
                c.expectations.map { ExpectationCheck(client: c.id, expectation: $0).status(now: now, arrivals: []) }
            }
        }
        return try expectationChecks(client: client, manifest: manifest, now: now, record: false).map(\.1)
    }
}
