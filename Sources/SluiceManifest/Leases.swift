import Foundation
import SluiceSupport

/// The lease an agent holds on one polled source, and the fencing token its commits carry.
public struct LeaseFence: Sendable, Equatable {
    public var client: String
    public var source: String
    public var owner: String
    public var token: Int64

    public init(client: String, source: String, owner: String, token: Int64) {
        self.client = client
        self.source = source
        self.owner = owner
        self.token = token
    }
}

/// Who holds a source's lease, and until when (RFC 3339, by the database's clock).
public struct LeaseHolder: Sendable, Equatable {
    public var owner: String
    public var token: Int64
    public var expiresAt: String
    public var expired: Bool

    public init(owner: String, token: Int64, expiresAt: String, expired: Bool) {
        self.owner = owner
        self.token = token
        self.expiresAt = expiresAt
        self.expired = expired
    }
}

/// A commit that carried a lease no longer held: another agent has taken the source over.
public struct LeaseLost: Error, CustomStringConvertible, Sendable {
    public let fence: LeaseFence
    public let holder: LeaseHolder?
    public var description: String {
        let now = holder.map { $0.owner == fence.owner ? "its lease expired (token \($0.token) now)" : "\($0.owner) holds it now (token \($0.token))" } ?? "nobody holds it now"
        return "commit refused: \(fence.owner) no longer holds the lease of \(fence.client)/\(fence.source) (token \(fence.token)); \(now)"
    }
}

extension SQLDatabase {
    /// Milliseconds since the epoch by the database's clock: every agent's leases expire by
    /// the same clock, whatever the hosts' clocks say.
    var nowMillisSQL: String {
        switch dialect {
        case .sqlite: "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"
        case .postgres: "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
        }
    }
}

extension Manifest {
    /// Takes or renews the lease of `client`/`source` for `owner` for `ttlMillis`: renewed
    /// (same token) while `owner` holds it, taken (token + 1) when it is free or expired.
    /// Returns the token, or nil when another agent holds an unexpired lease.
    public func claimLease(client: String, source: String, owner: String, ttlMillis: Int64) throws(ManifestError) -> Int64? {
        try write("claiming the lease of \(client)/\(source)") { db in
            try Self.claim(db, client: client, source: source, owner: owner, ttlMillis: ttlMillis)
        }
    }

    static func claim(_ db: SQLDatabase, client: String, source: String, owner: String, ttlMillis: Int64) throws -> Int64? {
        let now = db.nowMillisSQL
        let held = "source_lease.owner = excluded.owner AND source_lease.expires_at > \(now)"
        return try db.value("""
            INSERT INTO source_lease (client, source, owner, token, expires_at, acquired_at) VALUES (?, ?, ?, 1, \(now) + ?, ?)
            ON CONFLICT (client, source) DO UPDATE SET
                token = CASE WHEN \(held) THEN source_lease.token ELSE source_lease.token + 1 END,
                acquired_at = CASE WHEN \(held) THEN source_lease.acquired_at ELSE excluded.acquired_at END,
                owner = excluded.owner, expires_at = excluded.expires_at
            WHERE source_lease.owner = excluded.owner OR source_lease.expires_at <= \(now)
            RETURNING token
            """, [client, source, owner, ttlMillis, Timestamp.now()])
    }

    /// The lease "source" of a claim on one version: `*version:<id>` (source names cannot
    /// hold `*`).
    public static let versionClaimPrefix = "*version:"

    /// Claims up to `limit` of `client`'s versions that were never transformed and that no
    /// other agent has claimed (or whose claim ran out), oldest first, for `owner` for
    /// `ttlMillis`: each claim is a lease on the version (renewed like a source's), whose
    /// token fences the transform's record, and which the record removes. On PostgreSQL the
    /// versions are picked with `FOR UPDATE SKIP LOCKED`, so agents claiming at once take
    /// different versions without waiting for each other; the lease's own upsert settles a
    /// race the skip misses.
    public func claimPendingTransforms(client: String, owner: String, ttlMillis: Int64, limit: Int) throws(ManifestError) -> [(candidate: TransformCandidate, fence: LeaseFence)] {
        try write("claiming versions to transform") { db in
            let skip = db.dialect == .postgres ? "FOR UPDATE OF v SKIP LOCKED" : ""
            let rows = try db.rows("""
                SELECT v.id, f.source, f.path_bytes, v.version, v.sha256, v.lake_path, v.ingested_at
                FROM version v JOIN file f ON f.id = v.file_id
                WHERE f.client = ? AND NOT EXISTS (SELECT 1 FROM transform t WHERE t.version_id = v.id)
                  AND NOT EXISTS (SELECT 1 FROM source_lease l WHERE l.client = f.client AND l.source = ? || CAST(v.id AS TEXT)
                                  AND l.expires_at > \(db.nowMillisSQL))
                ORDER BY v.id LIMIT \(max(1, limit)) \(skip)
                """, [client, Self.versionClaimPrefix])
            var out: [(candidate: TransformCandidate, fence: LeaseFence)] = []
            for r in rows {
                let c = TransformCandidate(versionID: r[0], source: r[1], pathBytes: r[2], version: r[3], sha256: r[4], lakePath: r[5], ingestedAt: r[6])
                let source = "\(Self.versionClaimPrefix)\(c.versionID)"
                guard let token = try Self.claim(db, client: client, source: source, owner: owner, ttlMillis: ttlMillis) else { continue }
                out.append((c, LeaseFence(client: client, source: source, owner: owner, token: token)))
            }
            return out
        }
    }

    /// Extends a lease `fence` still holds by `ttlMillis`, without ever taking it anew: false
    /// when it is no longer held (or its row is gone).
    public func renewLease(_ fence: LeaseFence, ttlMillis: Int64) throws(ManifestError) -> Bool {
        try write("renewing the lease of \(fence.client)/\(fence.source)") { db in
            let now = db.nowMillisSQL
            let renewed: Int64? = try db.value("""
                UPDATE source_lease SET expires_at = \(now) + ? WHERE client = ? AND source = ? AND owner = ? AND token = ? AND expires_at > \(now)
                RETURNING token
                """, [ttlMillis, fence.client, fence.source, fence.owner, fence.token])
            return renewed != nil
        }
    }

    /// Gives a lease up (an agent that stops, or no longer has the source), so that another
    /// agent takes the source at once instead of after the lease expires.
    public func releaseLease(_ fence: LeaseFence) throws(ManifestError) {
        try write("releasing the lease of \(fence.client)/\(fence.source)") { db in
            try db.execute("UPDATE source_lease SET expires_at = 0 WHERE client = ? AND source = ? AND owner = ? AND token = ?",
                           [fence.client, fence.source, fence.owner, fence.token])
        }
    }

    /// Every lease: its source and who holds it.
    public func leaseHolders() throws(ManifestError) -> [(client: String, source: String, holder: LeaseHolder)] {
        try read("reading the source leases") { db in
            try db.rows("SELECT client, source, \(Self.holderColumns(db)) FROM source_lease").map { ($0[0], $0[1], Self.holder($0, at: 2)) }
        }
    }

    /// The columns `holder(_:at:)` reads: owner, token, expiry, and whether it is past.
    static func holderColumns(_ db: SQLDatabase) -> String { "owner, token, expires_at, expires_at <= \(db.nowMillisSQL)" }

    static func holder(_ r: SQLRow, at i: Int) -> LeaseHolder {
        LeaseHolder(owner: r[i], token: r[i + 1], expiresAt: Timestamp.iso8601(nanoseconds: (r[i + 2] as Int64) * 1_000_000), expired: r[i + 3])
    }

    /// In a commit's transaction, before anything is written: throws `LeaseLost` unless the
    /// fence's lease is still held. On PostgreSQL the lease row stays locked until the commit
    /// ends, so an agent taking the source over waits for this commit, then takes a new token.
    static func checkFence(_ db: SQLDatabase, _ fence: LeaseFence) throws {
        let lock = db.dialect == .postgres ? " FOR UPDATE" : ""
        let held: Int64? = try db.value("""
            SELECT token FROM source_lease WHERE client = ? AND source = ? AND owner = ? AND token = ? AND expires_at > \(db.nowMillisSQL)\(lock)
            """, [fence.client, fence.source, fence.owner, fence.token])
        guard held == nil else { return }
        let row = try db.row("SELECT \(holderColumns(db)) FROM source_lease WHERE client = ? AND source = ?", [fence.client, fence.source])
        throw LeaseLost(fence: fence, holder: row.map { holder($0, at: 0) })
    }
}

extension Schema {
    /// v15: one lease per polled source: the agent that owns it, the fencing token (bumped
    /// each time the lease changes hands), and when it expires (ms since the epoch, by the
    /// database's clock).
    static let leaseTable = """
        CREATE TABLE source_lease (
            client TEXT NOT NULL,
            source TEXT NOT NULL,
            owner TEXT NOT NULL,
            token INTEGER NOT NULL,
            expires_at INTEGER NOT NULL,
            acquired_at TEXT NOT NULL,
            PRIMARY KEY (client, source)
        );
        """
}
