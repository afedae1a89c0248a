import Foundation
import SluiceSupport

/// The manifest's reads whose cost must not grow with the history: a manifest only ever grows
/// (every version is kept), to millions of versions. Each reads an index range or a rollup
/// kept by `commit` (migration `v16-history`), never every version of a client or of the
/// manifest; `sluice audit` streams the versions in lake-path order.
extension Manifest {
    // MARK: rollups

    /// What one commit adds to a source's totals.
    struct Rollup {
        var versions = 0
        var newFiles = 0
        var bytes: Int64 = 0

        mutating func add(_ v: NewVersion) {
            versions += 1
            if v.version == 1 { newFiles += 1 }
            bytes += v.size
        }
    }

    struct RollupKey: Hashable {
        var client: String
        var source: String
    }

    /// Adds a commit's new versions to `ingest_day` (the UTC day `day`) and `source_total`,
    /// in the commit's transaction.
    static func addToRollups(_ db: SQLDatabase, _ totals: [RollupKey: Rollup], day: String) throws {
        for (key, r) in totals.sorted(by: { ($0.key.client, $0.key.source) < ($1.key.client, $1.key.source) }) {
            try db.execute("""
                INSERT INTO ingest_day (client, source, day, versions, new_files, bytes) VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT (client, source, day) DO UPDATE SET versions = ingest_day.versions + excluded.versions,
                    new_files = ingest_day.new_files + excluded.new_files, bytes = ingest_day.bytes + excluded.bytes
                """, [key.client, key.source, day, r.versions, r.newFiles, r.bytes])
            try db.execute("""
                INSERT INTO source_total (client, source, versions, new_files, bytes) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (client, source) DO UPDATE SET versions = source_total.versions + excluded.versions,
                    new_files = source_total.new_files + excluded.new_files, bytes = source_total.bytes + excluded.bytes
                """, [key.client, key.source, r.versions, r.newFiles, r.bytes])
        }
    }

    /// Keeps `source_total`'s counts of versions whose latest transform failed or was held as a
    /// version's new transform row (`status`) replaces its latest one, in the transform's
    /// transaction. Reads the latest row first: call it before inserting the new one.
    static func countTransform(_ db: SQLDatabase, versionID: Int64, status: String) throws {
        let previous: String? = try db.value("SELECT status FROM transform WHERE version_id = ? AND parent_id IS NULL ORDER BY id DESC LIMIT 1", [versionID])
        func delta(_ s: String) -> Int { (status == s ? 1 : 0) - (previous == s ? 1 : 0) }
        let failed = delta("failed"), held = delta("held")
        guard failed != 0 || held != 0 else { return }
        guard let key = try db.row("SELECT v.client, f.source FROM version v JOIN file f ON f.id = v.file_id WHERE v.id = ?", [versionID]) else { return }
        try db.execute("""
            UPDATE source_total SET failed_transforms = failed_transforms + ?, held_transforms = held_transforms + ? WHERE client = ? AND source = ?
            """, [failed, held, key[0] as String, key[1] as String])
    }

    /// Files and bytes ingested per client and UTC day since the day `since` (YYYY-MM-DD).
    public struct DailyIngest: Sendable, Equatable {
        public var client: String
        public var day: String
        public var files: Int
        public var bytes: Int64
    }

    public func dailyIngest(since day: String) throws(ManifestError) -> [DailyIngest] {
        try read("reading daily totals") { db in
            try db.rows("""
                SELECT client, day, sum(versions) AS files, sum(bytes) AS bytes FROM ingest_day
                WHERE day >= ? GROUP BY client, day ORDER BY client, day
                """, [String(day.prefix(10))]).map { DailyIngest(client: $0["client"], day: $0["day"], files: $0["files"], bytes: $0["bytes"]) }
        }
    }

    /// Files and bytes each source of `client` took since the UTC day `since` (YYYY-MM-DD), by source.
    public func ingestedSince(_ since: String, client: String) throws(ManifestError) -> [String: (files: Int, bytes: Int64)] {
        try ingestedSince(since, onlyClient: client)[client] ?? [:]
    }

    /// The same for every client (or `onlyClient`), in one read: by client, then by source.
    public func ingestedSince(_ since: String, onlyClient: String? = nil) throws(ManifestError) -> [String: [String: (files: Int, bytes: Int64)]] {
        try read("reading today's totals") { db in
            var out: [String: [String: (files: Int, bytes: Int64)]] = [:]
            for row in try db.rows("""
                SELECT client, source, sum(versions) AS files, sum(bytes) AS bytes FROM ingest_day
                WHERE day >= ?\(onlyClient == nil ? "" : " AND client = ?") GROUP BY client, source
                """, [String(since.prefix(10))] + (onlyClient.map { [$0] } ?? [])) {
                out[row["client"], default: [:]][row["source"]] = (row["files"], row["bytes"])
            }
            return out
        }
    }

    /// How many versions a client has.
    public func versionCount(client: String) throws(ManifestError) -> Int {
        try read("counting versions") { db in
            try db.value("SELECT coalesce(sum(versions), 0) FROM source_total WHERE client = ?", [client]) ?? 0
        }
    }

    // MARK: versions, newest first

    /// Where a page of versions (newest first) ends: the next page starts after it.
    public struct VersionCursor: Sendable, Equatable {
        public var ingestedAt: String
        public var versionID: Int64

        public init(ingestedAt: String, versionID: Int64) {
            self.ingestedAt = ingestedAt
            self.versionID = versionID
        }

        /// As a URL parameter: `<ingested_at>_<version id>`.
        public var text: String { "\(ingestedAt)_\(versionID)" }

        public init?(text: String) {
            guard let sep = text.lastIndex(of: "_"), let id = Int64(text[text.index(after: sep)...]), id > 0 else { return nil }
            let at = String(text[..<sep])
            guard at.utf8.count >= 10, at.utf8.count <= 40, at.utf8.allSatisfy({ (0x20...0x7E).contains($0) }) else { return nil }
            ingestedAt = at
            versionID = id
        }
    }

    /// A client's versions, newest first: `limit` of them; only those older than `after`, or
    /// the `limit` just newer than `before` (each the edge row of the page beside), when given.
    public func recentVersions(client: String, limit: Int, after: VersionCursor? = nil, before: VersionCursor? = nil) throws(ManifestError) -> [VersionRow] {
        try read("reading recent versions") { db in
            var sql = "SELECT version_id, source, path, version, size, sha256, lake_path, ingested_at FROM versions WHERE client = ?"
            var arguments: SQLArguments = [client]
            var order = "DESC"
            if let after {
                sql += " AND ingested_at <= ? AND (ingested_at < ? OR version_id < ?)"
                arguments = arguments + [after.ingestedAt, after.ingestedAt, after.versionID]
            } else if let before {
                sql += " AND ingested_at >= ? AND (ingested_at > ? OR version_id > ?)"
                arguments = arguments + [before.ingestedAt, before.ingestedAt, before.versionID]
                order = "ASC"
            }
            let rows = try db.rows(sql + " ORDER BY ingested_at \(order), version_id \(order) LIMIT ?", arguments + [limit]).map(Self.versionRow)
            return order == "ASC" ? rows.reversed() : rows
        }
    }

    // MARK: queries

    /// Versions of a client, newest first; `path` narrows to one file or one folder.
    public func history(client: String, path: String?) throws(ManifestError) -> [VersionRecord] {
        var all: [VersionRecord] = []
        var next: VersionCursor?
        repeat {
            let page = try historyPage(client: client, path: path, after: next)
            all += page.versions
            next = page.next
        } while next != nil
        return all
    }

    /// One page of that: without `path`, `pageSize` of the client's versions older than
    /// `after` along `version_client` (keyset paging: each page its own short read, so that
    /// listing a whole history holds one page), and the cursor of the next page (nil: this
    /// was the last); with a `path`, the file's or the folder's versions in one page.
    public func historyPage(client: String, path: String?, after: VersionCursor? = nil, pageSize: Int = 4096)
        throws(ManifestError) -> (versions: [VersionRecord], next: VersionCursor?) {
        try read("reading history") { db in
            guard let path, !path.isEmpty else {
                var sql = "SELECT * FROM versions WHERE client = ?"
                var arguments: SQLArguments = [client]
                if let after {
                    sql += " AND ingested_at <= ? AND (ingested_at < ? OR version_id < ?)"
                    arguments = arguments + [after.ingestedAt, after.ingestedAt, after.versionID]
                }
                let rows = try db.rows(sql + " ORDER BY ingested_at DESC, version_id DESC LIMIT ?", arguments + [pageSize])
                let next = rows.count < pageSize ? nil : rows.last.map { VersionCursor(ingestedAt: $0["ingested_at"], versionID: $0["version_id"]) }
                return (rows.map(VersionRecord.init(row:)), next)
            }
            // The file's versions, then those of the files below the folder `path`: each along
            // file_path (client, path), never through the client's other versions.
            let select = """
                SELECT v.client, f.source, f.path, v.version, v.sha256, v.size, v.source_mtime, v.lake_path, v.ingested_at, v.run_id, v.id AS version_id
                FROM file f JOIN version v ON v.file_id = f.id WHERE f.client = ?
                """
            let folder = path.hasSuffix("/") ? path : path + "/"
            // Below the folder: a range of paths in byte order, along file_path (SQLite's
            // BINARY collation) or file_path_c (PostgreSQL, in collation "C").
            let c = Self.byteOrder(db.dialect)
            let rows = try db.rows("""
                \(select) AND f.path = ? UNION ALL \(select) AND f.path\(c) >= ? AND f.path\(c) < ?
                ORDER BY ingested_at DESC, version_id DESC
                """, [client, path, client, folder, Self.prefixEnd(folder)])
            return (rows.map(VersionRecord.init(row:)), nil)
        }
    }

    /// `items` in batches of at most 500, each bound in one statement (SQLite and PostgreSQL
    /// take far more parameters than that; a statement of 500 stays quick to prepare).
    static func batches<T>(_ items: [T]) -> [ArraySlice<T>] {
        stride(from: 0, to: items.count, by: 500).map { items[$0..<min(items.count, $0 + 500)] }
    }

    /// `count` placeholders: `?, ?, ?`.
    static func marks(_ count: Int) -> String {
        Array(repeating: "?", count: count).joined(separator: ", ")
    }

    /// What makes a text comparison byte order: nothing on SQLite (BINARY), collation "C" on
    /// PostgreSQL (the indexes `file_path_c` and `version_lake_path_c` are in it).
    static func byteOrder(_ dialect: SQLDialect) -> String {
        dialect == .postgres ? #" COLLATE "C""# : ""
    }

    /// A join that keeps the table on its left the outer loop: SQLite's CROSS JOIN (whose
    /// planner, without statistics, may start from the wrong side); a plain JOIN elsewhere.
    static func crossJoin(_ db: SQLDatabase) -> String {
        db.dialect == .sqlite ? "CROSS JOIN" : "JOIN"
    }

    /// The first string after every string that starts with `prefix` (which ends in "/"), in
    /// byte order: the prefix with its last byte, "/", raised to "0".
    public static func prefixEnd(_ prefix: String) -> String {
        String(prefix.dropLast()) + "0"
    }

    /// What the manifest knows of one source: its last run, last success, last error, what
    /// it holds, and its versions whose latest transform failed (`sluice status`).
    public struct SourceSummary: Sendable, Encodable {
        public var client: String
        public var source: String
        public var lastRunAt: String?
        public var lastRunStatus: String?
        public var lastRunTrigger: String?
        public var lastSuccess: String?
        public var lastError: String?
        public var lastErrorAt: String?
        public var files = 0
        public var versions = 0
        public var bytes: Int64 = 0
        public var failedTransforms = 0
        /// Polled sources: the agent holding the source's lease (nil when none does), and when
        /// the lease runs out unless renewed.
        public var owner: String?
        public var leaseExpiresAt: String?

        public init(client: String, source: String) {
            self.client = client
            self.source = source
        }

        /// Whether the last error is newer than the last success (an error that a later
        /// success followed is history).
        public var errorIsCurrent: Bool {
            guard let lastErrorAt else { return false }
            guard let lastSuccess else { return true }
            return lastErrorAt > lastSuccess
        }

        enum CodingKeys: String, CodingKey {
            case client, source, lastRunAt = "last_run_at", lastRunStatus = "last_run_status", lastRunTrigger = "last_run_trigger"
            case lastSuccess = "last_success", lastError = "last_error", lastErrorAt = "last_error_at", files, versions, bytes
            case failedTransforms = "failed_transforms", owner, leaseExpiresAt = "lease_expires_at"
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(client, forKey: .client)
            try c.encode(source, forKey: .source)
            try c.encode(lastRunAt, forKey: .lastRunAt)
            try c.encode(lastRunStatus, forKey: .lastRunStatus)
            try c.encode(lastRunTrigger, forKey: .lastRunTrigger)
            try c.encode(lastSuccess, forKey: .lastSuccess)
            try c.encode(lastError, forKey: .lastError)
            try c.encode(lastErrorAt, forKey: .lastErrorAt)
            try c.encode(files, forKey: .files)
            try c.encode(versions, forKey: .versions)
            try c.encode(bytes, forKey: .bytes)
            try c.encode(failedTransforms, forKey: .failedTransforms)
            try c.encode(owner, forKey: .owner)
            try c.encode(leaseExpiresAt, forKey: .leaseExpiresAt)
        }
    }

    public func sourceSummary(client: String, source: String) throws(ManifestError) -> SourceSummary {
        try sourceSummaries([(client, source)])[0]
    }

    /// What the manifest knows of each of `sources` (client, source), in their order: three
    /// reads for all of them (the totals, the newest runs' ids along the run indexes, those runs).
    public func sourceSummaries(_ sources: [(client: String, source: String)]) throws(ManifestError) -> [SourceSummary] {
        guard !sources.isEmpty else { return [] }
        return try read("reading the status of \(sources.count == 1 ? "\(sources[0].client)/\(sources[0].source)" : "the sources")") { db in
            let clients = Set(sources.map(\.client))
            let oneClient = clients.count == 1 ? clients.first : nil
            var totals: [RollupKey: (files: Int, versions: Int, bytes: Int64, failed: Int)] = [:]
            let scope = oneClient == nil ? "" : " WHERE client = ?"
            for r in try db.rows("SELECT client, source, new_files, versions, bytes, failed_transforms FROM source_total" + scope, oneClient.map { [$0] } ?? []) {
                totals[RollupKey(client: r[0], source: r[1])] = (r[2], r[3], r[4], r[5])
            }
            // For every source at once (a round trip, not six per source, to a database
            // server): the ids of its newest run, newest ok run and newest run with an error,
            // its own or the client's whole pull's (source NULL), each the top of run_source
            // or of one of its partial indexes; then those runs.
            var ids: [[Int64?]] = []
            for chunk in Self.batches(sources) {
                func newest(_ own: Bool, _ filter: String) -> String {
                    "(SELECT max(r.id) FROM run r WHERE r.client = k.client AND \(own ? "r.source = k.source" : "r.source IS NULL")\(filter))"
                }
                let kinds = ["", " AND r.status = 'ok'", " AND r.error IS NOT NULL"].flatMap { [newest(true, $0), newest(false, $0)] }
                let values = Array(repeating: "(?, ?, ?)", count: chunk.count).joined(separator: ", ")
                let rows = try db.rows("""
                    WITH k(n, client, source) AS (VALUES \(values))
                    SELECT \(kinds.joined(separator: ", ")) FROM k ORDER BY k.n
                    """, SQLArguments(chunk.enumerated().flatMap { i, key -> [(any SQLBindable)?] in [i, key.client, key.source] }))
                ids += rows.map { r in (0..<6).map { r[$0] as Int64? } }
            }
            var runs: [Int64: SQLRow] = [:]
            let wanted = Set(ids.flatMap { $0.compactMap { $0 } }).sorted()
            for chunk in Self.batches(wanted) {
                for r in try db.rows("SELECT id, started_at, status, trigger, finished_at, error FROM run WHERE id IN (\(Self.marks(chunk.count)))",
                                     SQLArguments(chunk.map { $0 as (any SQLBindable)? })) {
                    runs[r[0]] = r
                }
            }
            return sources.enumerated().map { i, key in
                let (client, source) = key
                var s = SourceSummary(client: client, source: source)
                // The newer of the source's own and the client's pull.
                func newest(_ kind: Int) -> SQLRow? {
                    let id = [ids[i][kind * 2], ids[i][kind * 2 + 1]].compactMap { $0 }.max()
                    return id.flatMap { runs[$0] }
                }
                if let r = newest(0) {
                    s.lastRunAt = r["started_at"]
                    s.lastRunStatus = r["status"]
                    s.lastRunTrigger = r["trigger"]
                }
                s.lastSuccess = newest(1)?["finished_at"]
                if let r = newest(2) {
                    s.lastError = r["error"]
                    s.lastErrorAt = r["started_at"]
                }
                if let t = totals[RollupKey(client: client, source: source)] {
                    s.files = t.files
                    s.versions = t.versions
                    s.bytes = t.bytes
                    s.failedTransforms = t.failed
                }
                return s
            }
        }
    }

    /// A version's lake path, SHA-256 and size, as `sluice audit` checks them.
    public struct LakeEntry: Sendable, Equatable {
        public var lakePath: String
        public var sha256: String
        public var size: Int64
    }

    /// Every version whose lake path starts with `prefix` (a folder, ending in "/"), in byte
    /// order of the path, handed over `pageSize` at a time.
    public func eachLakeEntryPage(under prefix: String, pageSize: Int = 8192, hashes: Bool = true,
                                  _ body: (_ page: [LakeEntry]) -> Void) throws(ManifestError) {
        precondition(prefix.hasSuffix("/"))
        try eachLakeEntryPage(from: prefix, to: Self.prefixEnd(prefix), pageSize: pageSize, hashes: hashes, body)
    }

    /// A page of lake paths (arguments: after, or at with `first`; before; how many). Without
    /// hashes, on PostgreSQL, from the index `version_lake_path_c` alone, which holds the sizes.
    static func lakeEntriesSQL(_ dialect: SQLDialect, first: Bool, hashes: Bool) -> String {
        let c = byteOrder(dialect)
        return """
            SELECT lake_path, \(hashes ? "sha256" : "''"), size FROM version
            WHERE lake_path\(c) \(first ? ">=" : ">") ? AND lake_path\(c) < ? ORDER BY lake_path\(c) LIMIT ?
            """
    }

    /// Every version whose lake path is at or after `from` and before `to` in byte order, in
    /// that order, handed over `pageSize` at a time: each page is its own short read along the
    /// index of lake paths (keyset paging), so that an audit of any
    /// size holds one page and never keeps a read open for long.
    /// Without `hashes` (a size check), `sha256` is left empty.
    public func eachLakeEntryPage(from: String, to: String, pageSize: Int = 8192, hashes: Bool = true,
                                  _ body: (_ page: [LakeEntry]) -> Void) throws(ManifestError) {
        var last = from
        var first = true
        while true {
            let page = try read("listing versions") { db in
                var entries: [LakeEntry] = []
                entries.reserveCapacity(pageSize)
                try db.each(Self.lakeEntriesSQL(db.dialect, first: first, hashes: hashes), [last, to, pageSize]) { r in
                    entries.append(LakeEntry(lakePath: r[0], sha256: r[1], size: r[2]))
                }
                return entries
            }
            guard let final = page.last else { return }
            body(page)
            last = final.lakePath
            first = false
            if page.count < pageSize { return }
        }
    }
}
