import Foundation
import SluiceSupport

/// One alert: something the team should hear about (`event`), or that it is over (`resolved`).
/// `id` names the condition, the same for its first alert, its reminders and its resolution.
public struct AlertEvent: Sendable, Equatable {
    public var event: String
    /// "critical", "error", "warning" or "info".
    public var severity: String
    public var client: String?
    public var source: String?
    public var dataset: String?
    public var path: String?
    public var version: Int?
    public var message: String
    /// RFC 3339, UTC.
    public var at: String
    public var id: String
    public var resolved: Bool

    public init(event: String, severity: String, client: String? = nil, source: String? = nil, dataset: String? = nil, path: String? = nil,
                version: Int? = nil, message: String, at: String = Timestamp.now(), id: String, resolved: Bool = false) {
        self.event = event
        self.severity = severity
        self.client = client
        self.source = source
        self.dataset = dataset
        self.path = path
        self.version = version
        self.message = message
        self.at = at
        self.id = id
        self.resolved = resolved
    }

    /// The same condition, over.
    public func resolution(_ message: String, at: String = Timestamp.now()) -> AlertEvent {
        var e = self
        e.message = message
        e.at = at
        e.resolved = true
        return e
    }

    /// The JSON object every channel sends: every field, null where it has no value.
    public var json: String {
        let object: [String: Any] = [
            "event": event, "severity": severity, "client": client ?? NSNull(), "source": source ?? NSNull(), "dataset": dataset ?? NSNull(),
            "path": path ?? NSNull(), "version": version ?? NSNull(), "message": message, "at": at, "id": id, "resolved": resolved,
        ]
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    /// Reads `json` back (nil when it is not an alert).
    public init?(json: String) {
        guard let o = (try? JSONSerialization.jsonObject(with: Data(json.utf8))) as? [String: Any],
              let event = o["event"] as? String, let severity = o["severity"] as? String, let message = o["message"] as? String,
              let at = o["at"] as? String, let id = o["id"] as? String else { return nil }
        self.init(event: event, severity: severity, client: o["client"] as? String, source: o["source"] as? String, dataset: o["dataset"] as? String,
                  path: o["path"] as? String, version: o["version"] as? Int, message: message, at: at, id: id, resolved: o["resolved"] as? Bool ?? false)
    }
}

/// Which targets (by name) an event goes to, and how often an open condition is repeated: the
/// agent's `[[alerts]]`, handed to the manifest so that an alert is queued in the transaction
/// of the event that caused it.
public struct AlertRouting: Sendable {
    public var targets: @Sendable (_ event: String, _ client: String?) -> [String]
    public var repeatNanoseconds: Int64
    /// `[lineage]`: OpenLineage events are queued too (nil: none are).
    public var lineage: LineageRouting?

    public init(repeatNanoseconds: Int64, lineage: LineageRouting? = nil, targets: @escaping @Sendable (_ event: String, _ client: String?) -> [String]) {
        self.targets = targets
        self.repeatNanoseconds = repeatNanoseconds
        self.lineage = lineage
    }
}

/// An alert for one target in the outbox: waiting, or sent.
public struct OutboxEntry: Sendable {
    public var id: Int64
    public var target: String
    public var event: String
    public var conditionID: String
    public var resolved: Bool
    /// The event's JSON.
    public var body: String
    public var createdAt: String
    public var attempts: Int
    /// Nanoseconds since the epoch.
    public var nextAttemptAt: Int64
    public var sentAt: String?
    public var lastError: String?
}

extension Manifest {
    /// Queues `events` in the open write transaction `db`, for the targets the routing names.
    /// A condition alerts once until it is resolved (again after `repeatNanoseconds` if it is
    /// raised again); a resolution is sent only for a condition that alerted.
    static func queueAlerts(_ db: SQLDatabase, _ events: [AlertEvent], routing: AlertRouting?, now: Int64 = nowNanoseconds()) throws {
        guard let routing else { return }
        for e in events {
            let targets = routing.targets(e.event, e.client)
            guard !targets.isEmpty else { continue }
            let state = try db.row("SELECT open, last_alerted_at FROM alert_condition WHERE id = ?", [e.id])
            let open = (state?["open"] as Int?) == 1
            if e.resolved {
                guard open else { continue }
                try db.execute("UPDATE alert_condition SET open = 0, resolved_at = ?, body = ? WHERE id = ?", [e.at, e.json, e.id])
            } else if open {
                let last: Int64 = state?["last_alerted_at"] ?? 0
                guard now - last >= routing.repeatNanoseconds else { continue }
                try db.execute("UPDATE alert_condition SET last_alerted_at = ?, body = ? WHERE id = ?", [now, e.json, e.id])
            } else {
                try db.execute("""
                    INSERT INTO alert_condition (id, event, client, open, body, opened_at, last_alerted_at) VALUES (?, ?, ?, 1, ?, ?, ?)
                    ON CONFLICT(id) DO UPDATE SET event = excluded.event, client = excluded.client, open = 1, body = excluded.body,
                        opened_at = excluded.opened_at, last_alerted_at = excluded.last_alerted_at, resolved_at = NULL
                    """, [e.id, e.event, e.client, e.json, e.at, now])
            }
            try enqueue(db, e, targets: targets, now: now)
        }
    }

    private static func enqueue(_ db: SQLDatabase, _ e: AlertEvent, targets: [String], now: Int64) throws {
        let insert = """
            INSERT INTO alert_outbox (target, event, condition_id, resolved, body, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?)
            """
        for target in targets { try db.execute(insert, [target, e.event, e.id, e.resolved, e.json, e.at, now]) }
    }

    /// Queues `events` in a transaction of their own (conditions the agent sees outside the
    /// manifest: a source's failed polls, the free disk space, an audit).
    public func raiseAlerts(_ events: [AlertEvent]) throws(ManifestError) {
        let routing = alertRouting
        guard routing != nil, !events.isEmpty else { return }
        // Most of what a pass reports is "still fine": a resolution of a condition that is not
        // open changes nothing, and needs no write lock.
        let open = try read("reading open alerts") { db in
            try Set(db.column("SELECT id FROM alert_condition WHERE open = 1 AND id IN (\(events.map { _ in "?" }.joined(separator: ",")))",
                              SQLArguments(events.map(\.id))) as [String])
        }
        let needed = events.filter { !$0.resolved || open.contains($0.id) }
        guard !needed.isEmpty else { return }
        try write("queueing alerts") { db in try Self.queueAlerts(db, needed, routing: routing) }
    }

    /// Queues a reminder of every condition still open `repeatNanoseconds` after it last
    /// alerted; returns how many conditions were reminded.
    @discardableResult
    public func queueReminders(now: Int64 = nowNanoseconds()) throws(ManifestError) -> Int {
        guard let routing = alertRouting else { return 0 }
        return try write("queueing alert reminders") { db in
            let due = try db.rows("SELECT id, body FROM alert_condition WHERE open = 1 AND last_alerted_at <= ?", [now - routing.repeatNanoseconds])
            var reminded = 0
            for row in due {
                guard var e = AlertEvent(json: row["body"]) else { continue }
                e.at = Timestamp.iso8601(nanoseconds: now)
                if !e.message.hasPrefix("Still ") { e.message = "Still open: " + e.message }
                let targets = routing.targets(e.event, e.client)
                try db.execute("UPDATE alert_condition SET last_alerted_at = ?, body = ? WHERE id = ?", [now, e.json, e.id])
                try Self.enqueue(db, e, targets: targets, now: now)
                reminded += targets.isEmpty ? 0 : 1
            }
            return reminded
        }
    }

    /// Up to `limit` alerts whose next attempt is due, oldest first.
    public func dueAlerts(now: Int64 = nowNanoseconds(), limit: Int = 100) throws(ManifestError) -> [OutboxEntry] {
        try read("reading the alert outbox") { db in
            try db.rows("SELECT * FROM alert_outbox WHERE sent_at IS NULL AND next_attempt_at <= ? ORDER BY id LIMIT ?", [now, limit]).map(Self.entry)
        }
    }

    /// When the next unsent alert is due (nanoseconds since the epoch), if any is waiting.
    public func nextAlertDue() throws(ManifestError) -> Int64? {
        try read("reading the alert outbox") { db in
            try db.value("SELECT min(next_attempt_at) FROM alert_outbox WHERE sent_at IS NULL")
        }
    }

    public func markAlertSent(_ id: Int64) throws(ManifestError) {
        try write("marking an alert sent") { db in
            try db.execute("UPDATE alert_outbox SET sent_at = ?, attempts = attempts + 1, last_error = NULL WHERE id = ?", [Timestamp.now(), id])
        }
    }

    public func markAlertFailed(_ id: Int64, error: String, nextAttemptAt: Int64) throws(ManifestError) {
        try write("recording a failed alert delivery") { db in
            try db.execute("UPDATE alert_outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? WHERE id = ?", [error, nextAttemptAt, id])
        }
    }

    /// Forgets what was sent before `before` (RFC 3339): a source polled every five minutes
    /// sends two lineage events each time, and the outbox need not keep them for ever. Unsent
    /// entries are never removed. Returns how many were.
    @discardableResult
    public func pruneSentAlerts(before: String) throws(ManifestError) -> Int {
        try write("pruning the alert outbox") { db in
            try db.execute("DELETE FROM alert_outbox WHERE sent_at IS NOT NULL AND sent_at < ?", [before])
        }
    }

    /// The newest `limit` alerts (only the unsent ones with `pendingOnly`), newest first.
    public func recentAlerts(limit: Int = 50, pendingOnly: Bool = false) throws(ManifestError) -> [OutboxEntry] {
        try read("reading the alert outbox") { db in
            try db.rows("SELECT * FROM alert_outbox \(pendingOnly ? "WHERE sent_at IS NULL" : "") ORDER BY id DESC LIMIT ?", [limit]).map(Self.entry)
        }
    }

    private static func entry(_ r: SQLRow) -> OutboxEntry {
        OutboxEntry(id: r["id"], target: r["target"], event: r["event"], conditionID: r["condition_id"], resolved: r["resolved"], body: r["body"],
                    createdAt: r["created_at"], attempts: r["attempts"], nextAttemptAt: r["next_attempt_at"], sentAt: r["sent_at"], lastError: r["last_error"])
    }
}

extension Schema {
    /// v14: the alert outbox (each alert for each target, until it is sent) and the conditions
    /// it deduplicates by; when each delivery expectation was first evaluated (no alert for a
    /// deadline before that); versions by ingest time (what arrived since a deadline).
    static let alertTables = """
        CREATE TABLE alert_condition (
            id TEXT PRIMARY KEY,
            event TEXT NOT NULL,
            client TEXT,
            open INTEGER NOT NULL,
            body TEXT NOT NULL,
            opened_at TEXT NOT NULL,
            last_alerted_at INTEGER NOT NULL,
            resolved_at TEXT
        );
        CREATE INDEX alert_condition_open ON alert_condition(last_alerted_at) WHERE open = 1;
        CREATE TABLE alert_outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            target TEXT NOT NULL,
            event TEXT NOT NULL,
            condition_id TEXT NOT NULL,
            resolved INTEGER NOT NULL,
            body TEXT NOT NULL,
            created_at TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at INTEGER NOT NULL,
            sent_at TEXT,
            last_error TEXT
        );
        CREATE INDEX alert_outbox_due ON alert_outbox(next_attempt_at) WHERE sent_at IS NULL;
        CREATE TABLE expectation_seen (
            client TEXT NOT NULL,
            key TEXT NOT NULL,
            first_seen_at INTEGER NOT NULL,
            PRIMARY KEY (client, key)
        );
        CREATE INDEX version_ingested_at ON version(ingested_at);
        """
}

extension Manifest {
    /// When the expectation `key` of `client` was first evaluated, in nanoseconds since the
    /// epoch: recorded as `now` the first time (`record`), else nil when it never was.
    public func expectationFirstSeen(client: String, key: String, record now: Int64?) throws(ManifestError) -> Int64? {
        let select = "SELECT first_seen_at FROM expectation_seen WHERE client = ? AND key = ?"
        // Read first: after the first time, a check takes no write lock.
        if let seen: Int64 = try read("reading an expectation", { db in try db.value(select, [client, key]) }) { return seen }
        guard let now else { return nil }
        return try write("recording an expectation") { db in
            try db.execute("INSERT INTO expectation_seen (client, key, first_seen_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING", [client, key, now])
            return try db.value(select, [client, key])
        }
    }

    /// A committed version: where it came from and when it was committed.
    public struct Arrival: Sendable {
        public var source: String
        public var path: [UInt8]
        public var displayPath: String
        public var ingestedAt: String

        package init(source: String, path: [UInt8], displayPath: String, ingestedAt: String) {
            self.source = source
            self.path = path
            self.displayPath = displayPath
            self.ingestedAt = ingestedAt
        }
    }

    /// The versions of `client` committed after `since` (an RFC 3339 time), oldest first.
    public func arrivals(client: String, since: String) throws(ManifestError) -> [Arrival] {
        try read("reading recent deliveries") { db in
            try db.rows("""
                SELECT f.source, f.path_bytes, f.path, v.ingested_at FROM version v JOIN file f ON f.id = v.file_id
                WHERE v.client = ? AND v.ingested_at > ? ORDER BY v.ingested_at
                """, [client, since]).map { r in
                Arrival(source: r["source"], path: r["path_bytes"], displayPath: r["path"], ingestedAt: r["ingested_at"])
            }
        }
    }
}
