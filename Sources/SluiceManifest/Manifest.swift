import Foundation
import SluiceSupport
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// An error opening or writing the manifest, with what to do about it.
public struct ManifestError: Error, CustomStringConvertible, Sendable {
    public let message: String
    /// Set when a commit was refused because its lease had been lost (another agent may
    /// already have adopted what it published: leave the lake as it is).
    public let leaseLost: LeaseLost?
    public init(_ message: String, leaseLost: LeaseLost? = nil) {
        self.message = message
        self.leaseLost = leaseLost
    }
    public var description: String { message }

    /// The manifest was migrated by a newer Sluice than this one.
    static func newerSchema(_ manifest: String, unknown: Set<String>) -> ManifestError {
        ManifestError("the manifest \(manifest) was written by a newer Sluice: it has schema migration\(unknown.count == 1 ? "" : "s") "
            + "\(unknown.sorted().joined(separator: ", ")), which this sluice does not know. Nothing was changed: run the newer sluice, "
            + "or restore a backup of the manifest taken before it was upgraded")
    }
}

/// What the manifest knows of one file of a source: its latest version and the size and mtime
/// it was last seen with.
public struct KnownFile: Sendable {
    public var fileID: Int64
    public var versionID: Int64
    public var version: Int
    public var sha256: String
    public var lakePath: String
    public var lastSize: Int64
    public var lastMtimeNs: Int64
    /// The object store's ETag when last seen (s3 sources), else nil.
    public var lastETag: String?

    public init(fileID: Int64, versionID: Int64, version: Int, sha256: String, lakePath: String, lastSize: Int64, lastMtimeNs: Int64, lastETag: String? = nil) {
        self.lastETag = lastETag
        self.fileID = fileID
        self.versionID = versionID
        self.version = version
        self.sha256 = sha256
        self.lakePath = lakePath
        self.lastSize = lastSize
        self.lastMtimeNs = lastMtimeNs
    }
}

/// One row of `sluice history`.
public struct VersionRecord: Codable, Sendable, Equatable {
    public var client: String
    public var source: String
    public var path: String
    public var version: Int
    public var sha256: String
    public var size: Int64
    public var source_mtime: String
    public var lake_path: String
    public var ingested_at: String
    public var run_id: Int64?

    init(row r: SQLRow) {
        client = r["client"]
        source = r["source"]
        path = r["path"]
        version = r["version"]
        sha256 = r["sha256"]
        size = r["size"]
        source_mtime = r["source_mtime"]
        lake_path = r["lake_path"]
        ingested_at = r["ingested_at"]
        run_id = r["run_id"]
    }
}

/// One entry of a commit batch.
public enum ManifestEntry: Sendable {
    /// A new version, already published and fsync'd in the lake.
    case version(NewVersion)
    /// Content equal to the latest version, seen again (with another mtime or size record).
    case sighting(versionID: Int64, size: Int64, mtimeNs: Int64, etag: String?)
}

public struct NewVersion: Sendable {
    public var client: String
    public var source: String
    public var path: String
    public var pathBytes: [UInt8]
    public var version: Int
    public var sha256: String
    public var size: Int64
    public var mtimeNs: Int64
    public var lakePath: String
    /// The `file` row, when the file already has versions.
    public var fileID: Int64?
    /// The object store's ETag of the copy (s3 sources).
    public var etag: String?

    public init(client: String, source: String, path: String, pathBytes: [UInt8], version: Int, sha256: String, size: Int64, mtimeNs: Int64, lakePath: String,
                fileID: Int64? = nil, etag: String? = nil) {
        self.fileID = fileID
        self.etag = etag
        self.client = client
        self.source = source
        self.path = path
        self.pathBytes = pathBytes
        self.version = version
        self.sha256 = sha256
        self.size = size
        self.mtimeNs = mtimeNs
        self.lakePath = lakePath
    }
}

/// Counters added to a run row in the same transaction as its versions.
public struct RunCounts: Sendable, Equatable {
    public var new = 0
    public var unchanged = 0
    public var skipped = 0
    public var failed = 0
    public var bytes: Int64 = 0
    public init() {}
    public static func += (lhs: inout RunCounts, rhs: RunCounts) {
        lhs.new += rhs.new
        lhs.unchanged += rhs.unchanged
        lhs.skipped += rhs.skipped
        lhs.failed += rhs.failed
        lhs.bytes += rhs.bytes
    }
}

/// The manifest: every version of every file, sightings, pull runs, transforms and alerts, in
/// a SQLite file (one host, the default) or a PostgreSQL database (many agents). Thread-safe.
public final class Manifest: Sendable {
    /// The SQLite file, or the PostgreSQL URL without secrets: how messages name the manifest.
    public let path: String
    let store: any ManifestStore
    private let routing = Mutex<AlertRouting?>(nil)
    /// Versions this process committed since it last refreshed the planner's statistics, and
    /// how many more make it refresh them (see `noteNewVersions`).
    private let unanalyzed = Mutex<(count: Int, due: Int)>((0, Manifest.firstStatisticsRefresh))
    /// After how many new versions a process first refreshes PostgreSQL's statistics; the
    /// next refreshes come after twice as many each time, up to `statisticsRefreshCap`.
    package static let firstStatisticsRefresh = 10_000
    static let statisticsRefreshCap = 160_000

    /// Where alerts go (nil: none are configured, and none are queued).
    public var alertRouting: AlertRouting? {
        get { routing.withLock { $0 } }
        set { routing.withLock { $0 = newValue } }
    }

    /// Which server the manifest is on.
    public var dialect: SQLDialect { store.dialect }

    /// Opens (creating and migrating if needed) the SQLite manifest at `path`.
    public convenience init(path: String) throws(ManifestError) {
        try self.init(.sqlite(path: path))
    }

    /// Opens (creating and migrating if needed) the manifest at `location`.
    public init(_ location: ManifestLocation) throws(ManifestError) {
        switch location {
        case .sqlite(let file):
            path = file
            do {
                store = try SQLiteStore(path: file, migrations: Schema.migrations)
            } catch let e as ManifestError {
                throw e
            } catch {
                throw ManifestError("cannot open the manifest \(file): \(error) — check that the state_dir exists, is writable by the user sluice runs as, and has free space")
            }
        case .postgres(let target):
            path = target.display
            do {
                store = try PostgresStore(location: target, migrations: Schema.migrations)
            } catch let e as ManifestError {
                throw e
            } catch {
                throw ManifestError("cannot open the manifest \(target.display): \(PostgresStore.describe(error))")
            }
        }
    }

    @discardableResult
    func write<T>(_ what: String, _ body: (SQLDatabase) throws -> T) throws(ManifestError) -> T {
        do {
            return try store.write(body)
        } catch let e as ManifestError {
            throw e
        } catch let e as LeaseLost {
            throw ManifestError("manifest \(path): \(e)", leaseLost: e)
        } catch {
            throw ManifestError("manifest \(path): \(what) failed: \(error)")
        }
    }

    func read<T>(_ what: String, _ body: (SQLDatabase) throws -> T) throws(ManifestError) -> T {
        do {
            return try store.read(body)
        } catch let e as ManifestError {
            throw e
        } catch {
            throw ManifestError("manifest \(path): \(what) failed: \(error)")
        }
    }

    /// PostgreSQL's planner chooses each query's index from sampled statistics, which autovacuum
    /// refreshes only once a tenth of a table has changed. At ten million versions a new
    /// client's first hundred thousand files stay unknown to them: the planner then expects
    /// one row for the client, and the known-files lookup of every pass walks all its files
    /// along `file_path_c` (41–92 ms a batch of 500) instead of looking each path up along the
    /// file key (6.5 ms). So a process that commits many versions runs ANALYZE itself: after
    /// 10,000, then after 20,000 more, 40,000, …, every 160,000 at most (a burst of a million
    /// new files costs nine, about a second each at ten million versions).
    func noteNewVersions(_ n: Int) {
        guard n > 0, store.dialect == .postgres else { return }
        let due = unanalyzed.withLock { s -> Bool in
            s.count += n
            guard s.count >= s.due else { return false }
            s = (0, min(s.due * 2, Self.statisticsRefreshCap))
            return true
        }
        // Only the plans are at stake: a refresh that fails leaves them to autovacuum.
        if due { try? store.refreshStatistics(["file", "version"]) }
    }

    // MARK: runs

    /// A run's `status` in the manifest.
    public enum RunStatus: String, Sendable {
        /// Started and not finished (by a live process, or `interrupted` once it is gone).
        case running
        case ok
        /// Some files or sources failed, others were stored.
        case partial
        case failed
        /// The process ended before the run finished.
        case interrupted
    }

    /// Records the start of a pass; returns the run id.
    public func startRun(client: String, source: String?, trigger: String) throws(ManifestError) -> Int64 {
        try write("starting a run") { db in
            try db.insert("INSERT INTO run (client, source, trigger, pid, started_at, status) VALUES (?, ?, ?, ?, ?, ?)",
                          [client, source, trigger, Int(getpid()), Timestamp.now(), RunStatus.running.rawValue])
        }
    }

    /// How many runs of a client (argument 1) other processes (argument 2: this one's pid)
    /// have marked running. Every pass asks it first, so it reads the `run_running` index,
    /// which holds the running runs only, and never the client's whole history.
    public static let othersRunningRunsSQL = "SELECT count(*) FROM run WHERE client = ? AND status = 'running' AND pid <> ?"

    /// Marks runs of `client` still `running` whose process is gone as `interrupted`.
    public func markInterruptedRuns(client: String) throws(ManifestError) {
        // Usually nothing is left over: look before taking the write lock.
        let others = try read("looking for interrupted runs") { db in
            try db.value(Self.othersRunningRunsSQL, [client, Int(getpid())]) ?? 0
        }
        guard others > 0 else { return }
        try write("marking interrupted runs") { db in
            let rows = try db.rows("SELECT id, pid FROM run WHERE client = ? AND status = 'running'", [client])
            for row in rows {
                let pid: Int32 = row["pid"]
                if pid != getpid() && kill(pid, 0) != 0 && errno == ESRCH {
                    try db.execute("UPDATE run SET status = 'interrupted', error = 'the process ended before the run finished' WHERE id = ?", [row["id"] as Int64])
                }
            }
        }
    }

    /// Throws unless the manifest takes writes now (on SQLite: takes the write lock and rolls
    /// back; on PostgreSQL: the server is a primary), changing nothing.
    public func checkWritable() throws(ManifestError) {
        do {
            try store.checkWritable()
        } catch {
            throw ManifestError("manifest \(path) does not take writes: \(error)")
        }
    }

    /// Records the end of a pass, and queues its OpenLineage events (JSON) in the same transaction.
    public func finishRun(id: Int64, status: RunStatus, error: String?, lineage: [String] = []) throws(ManifestError) {
        try write("finishing a run") { db in
            try db.execute("UPDATE run SET finished_at = ?, status = ?, error = ? WHERE id = ?", [Timestamp.now(), status.rawValue, error, id])
            try Self.queueLineage(db, lineage)
        }
    }

    // MARK: ingest

    /// The latest version of each file of a source (arguments: client, source), or of `paths`
    /// of its files (then the paths' bytes follow), along the file key (client, source,
    /// path_bytes).
    static func knownFilesSQL(paths: Int?) -> String {
        let select = """
            SELECT f.id AS file_id, f.path_bytes, v.id AS version_id, v.version, v.sha256, v.lake_path,
                   COALESCE(s.size, v.size) AS last_size,
                   COALESCE(s.source_mtime_ns, v.source_mtime_ns) AS last_mtime,
                   CASE WHEN s.id IS NULL THEN v.source_etag ELSE s.source_etag END AS last_etag
            FROM file f
            JOIN version v ON v.file_id = f.id
                 AND v.version = (SELECT MAX(version) FROM version WHERE file_id = f.id)
            LEFT JOIN sighting s ON s.id = (SELECT MAX(id) FROM sighting WHERE version_id = v.id)
            WHERE f.client = ? AND f.source = ?
            """
        guard let paths else { return select }
        return select + " AND f.path_bytes IN (\(marks(paths)))"
    }

    /// Everything the manifest knows of one source, keyed by the raw path bytes.
    /// `paths`, when given, narrows the read to those files (a pass looks up what it lists, a
    /// batch at a time), along the file key, 500 to a query.
    public func knownFiles(client: String, source: String, paths: [[UInt8]]? = nil) throws(ManifestError) -> [[UInt8]: KnownFile] {
        try read("reading known files") { db in
            var queries: [(String, SQLArguments)] = [(Self.knownFilesSQL(paths: nil), [client, source])]
            if let paths {
                queries = Self.batches(paths).map { some in
                    (Self.knownFilesSQL(paths: some.count), [client, source] + SQLArguments(some.map { SQLValue.blob($0) as (any SQLBindable)? }))
                }
            }
            var result: [[UInt8]: KnownFile] = [:]
            for (sql, arguments) in queries {
                try db.each(sql, arguments) { row in
                    result[row[1]] = KnownFile(
                        fileID: row[0], versionID: row[2], version: row[3], sha256: row[4], lakePath: row[5],
                        lastSize: row[6], lastMtimeNs: row[7], lastETag: row[8])
                }
            }
            return result
        }
    }

    /// Commits a batch in one transaction and adds `counts` to the run. Returns, for each entry,
    /// the version id it recorded or refers to. `at` (default: now) is the new versions'
    /// `ingested_at`.
    /// `fence`: the lease the pass holds (polled sources of `sluice run`): the commit is refused
    /// with `leaseLost` set when another agent has taken the source over.
    public func commit(_ entries: [ManifestEntry], runID: Int64, counts: RunCounts, at: String? = nil,
                       fence: LeaseFence? = nil) throws(ManifestError) -> [Int64] {
        let now = at ?? Timestamp.now()
        let ids = try write("committing \(entries.count) entries") { db in
            if let fence { try Self.checkFence(db, fence) }
            var ids: [Int64] = []
            ids.reserveCapacity(entries.count)
            let upsertFile = """
                INSERT INTO file (client, source, path, path_bytes, first_seen_at) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (client, source, path_bytes) DO UPDATE SET path = file.path RETURNING id
                """
            let insertVersion = """
                INSERT INTO version (file_id, version, sha256, size, source_mtime, source_mtime_ns, lake_path, ingested_at, run_id, source_etag, client)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """
            var totals: [RollupKey: Rollup] = [:]
            let insertSighting = """
                INSERT INTO sighting (version_id, run_id, seen_at, size, source_mtime, source_mtime_ns, source_etag) VALUES (?, ?, ?, ?, ?, ?, ?)
                """
            for entry in entries {
                switch entry {
                case .version(let v):
                    let fileID: Int64
                    if let known = v.fileID {
                        fileID = known
                    } else {
                        guard let id: Int64 = try db.value(upsertFile, [v.client, v.source, v.path, v.pathBytes, now]) else {
                            throw ManifestError("no file row for \(v.path)")
                        }
                        fileID = id
                    }
                    ids.append(try db.insert(insertVersion, [
                        fileID, v.version, v.sha256, v.size, Timestamp.iso8601(nanoseconds: v.mtimeNs),
                        v.mtimeNs, v.lakePath, now, runID, v.etag, v.client,
                    ]))
                    totals[RollupKey(client: v.client, source: v.source), default: Rollup()].add(v)
                case .sighting(let versionID, let size, let mtimeNs, let etag):
                    try db.execute(insertSighting, [versionID, runID, now, size, Timestamp.iso8601(nanoseconds: mtimeNs), mtimeNs, etag])
                    ids.append(versionID)
                }
            }
            try Self.addToRollups(db, totals, day: String(now.prefix(10)))
            try db.execute("""
                UPDATE run SET new = new + ?, unchanged = unchanged + ?, skipped = skipped + ?,
                               failed = failed + ?, bytes = bytes + ? WHERE id = ?
                """, [counts.new, counts.unchanged, counts.skipped, counts.failed, counts.bytes, runID])
            return ids
        }
        noteNewVersions(entries.count { if case .version = $0 { true } else { false } })
        return ids
    }

    /// The version committed at `lakePath`, if any.
    public func version(atLakePath lakePath: String) throws(ManifestError) -> VersionRecord? {
        try read("looking up a lake path") { db in
            try db.row("SELECT * FROM versions WHERE lake_path = ?", [lakePath]).map(VersionRecord.init(row:))
        }
    }

    // MARK: transforms

    /// Which versions `transform` takes.
    public enum TransformSelection: Sendable {
        /// Versions that have never been transformed.
        case pending
        /// Versions newer than this version id that have never been transformed: for a caller
        /// that knows every version up to it has been (the daemon's workers), so that each
        /// round reads only the new versions instead of the client's whole history.
        case pendingAfter(Int64)
        /// Versions whose latest transform failed.
        case failed
        /// Versions whose latest transform was held by a schema-change policy.
        case held
        /// Every version.
        case all
        /// One version, if its latest transform failed or was held (the console's Re-run).
        case rerunVersion(Int64)
    }

    /// A version to transform, with what the transform needs to know of it.
    public struct TransformCandidate: Sendable {
        public var versionID: Int64
        public var source: String
        public var pathBytes: [UInt8]
        public var version: Int
        public var sha256: String
        public var lakePath: String
        public var ingestedAt: String
    }

    public func transformCandidates(client: String, selection: TransformSelection) throws(ManifestError) -> [TransformCandidate] {
        try read("listing versions to transform") { db in
            let neverTransformed = "AND NOT EXISTS (SELECT 1 FROM transform t WHERE t.version_id = v.id)"
            let latestIs = "(SELECT t.status FROM transform t WHERE t.version_id = v.id AND t.parent_id IS NULL ORDER BY t.id DESC LIMIT 1)"
            let columns = "v.id, f.source, f.path_bytes, v.version, v.sha256, v.lake_path, v.ingested_at"
            let cross = Self.crossJoin(db)
            let sql: String
            switch selection {
            case .failed, .held:
                // From the failed (or held) rows, along their partial index, to their versions:
                // not through every version of the client.
                let status = if case .failed = selection { "failed" } else { "held" }
                sql = """
                    SELECT \(columns) FROM transform t \(cross) version v ON v.id = t.version_id \(cross) file f ON f.id = v.file_id
                    WHERE t.status = '\(status)' AND t.parent_id IS NULL AND v.client = ?
                      AND t.id = (SELECT max(id) FROM transform WHERE version_id = t.version_id AND parent_id IS NULL)
                    ORDER BY v.id
                    """
            case .pendingAfter(let id):
                // Newer than an id: walk the versions from that id on, not every file of the client.
                sql = "SELECT \(columns) FROM version v \(cross) file f ON f.id = v.file_id WHERE f.client = ? AND v.id > \(id) \(neverTransformed) ORDER BY v.id"
            case .pending, .all, .rerunVersion:
                let filter = switch selection {
                case .pending: neverTransformed
                case .rerunVersion(let id): "AND v.id = \(id) AND \(latestIs) IN ('failed', 'held')"
                default: ""
                }
                // Along version_client: from the client's files instead, PostgreSQL's planner
                // misjudged the join at ten million versions and read the whole version table
                // (8.6 s for a client of 198,000 versions; 0.77 s this way).
                sql = "SELECT \(columns) FROM version v JOIN file f ON f.id = v.file_id WHERE v.client = ? \(filter) ORDER BY v.id"
            }
            var out: [TransformCandidate] = []
            try db.each(sql, [client]) { r in
                out.append(TransformCandidate(versionID: r[0], source: r[1], pathBytes: r[2], version: r[3], sha256: r[4], lakePath: r[5], ingestedAt: r[6]))
            }
            return out
        }
    }

    /// The newest version id of all clients (0 for none). Every version committed later gets
    /// a bigger one: the manifest has one writer at a time and never deletes a version.
    public func newestVersionID() throws(ManifestError) -> Int64 {
        try read("reading the newest version id") { db in try db.value("SELECT max(id) FROM version") ?? 0 }
    }

    /// One transform row: of a whole version, or of one member of an archive.
    public struct TransformRecord: Sendable {
        public var dataset: String?
        public var mappingSHA256: String
        public var schemaSHA256: String?
        public var status: String
        public var rowsWritten: Int64
        public var rowsRejected: Int64
        public var outputPath: String?
        public var rejectsPath: String?
        public var error: String?
        /// The member's path inside its archive (as reports show it); nil for a whole version.
        public var member: String?
        /// For an archive's own row: how many members were ok, failed and unmapped.
        public var members: (ok: Int, failed: Int, unmapped: Int)?
        /// The schema the unit was seen to have: its canonical JSON and that JSON's SHA-256.
        public var sourceSchema: (json: String, sha256: String)?
        /// What changed against the previous delivery (JSON), when anything did.
        public var schemaDrift: String?

        public init(dataset: String?, mappingSHA256: String, schemaSHA256: String?, status: String, rowsWritten: Int64, rowsRejected: Int64,
                    outputPath: String?, rejectsPath: String?, error: String?, member: String? = nil, members: (ok: Int, failed: Int, unmapped: Int)? = nil,
                    sourceSchema: (json: String, sha256: String)? = nil, schemaDrift: String? = nil) {
            self.schemaDrift = schemaDrift
            self.dataset = dataset
            self.mappingSHA256 = mappingSHA256
            self.schemaSHA256 = schemaSHA256
            self.status = status
            self.rowsWritten = rowsWritten
            self.rowsRejected = rowsRejected
            self.outputPath = outputPath
            self.rejectsPath = rejectsPath
            self.error = error
            self.member = member
            self.members = members
            self.sourceSchema = sourceSchema
        }
    }

    /// Records one transform of a version and, for an archive, of each of its members, in one
    /// transaction (the latest row without a parent is the version's current state).
    /// `alerts` (raised or resolved by the outcome) and `lineage` (OpenLineage events, JSON) are
    /// queued in the same transaction.
    /// `fence`: the claim on the version (`sluice run` on a shared manifest), or the client's
    /// transforms lease: refused once another agent has it.
    public func recordTransform(versionID: Int64, _ file: TransformRecord, members: [TransformRecord] = [], alerts: [AlertEvent] = [],
                                lineage: [String] = [], fence: LeaseFence? = nil) throws(ManifestError) {
        let routing = alerts.isEmpty ? nil : alertRouting
        try write("recording a transform") { db in
            if let fence {
                try Self.checkFence(db, fence)
                // A claim on this version is done with once its transform is recorded.
                if fence.source.hasPrefix(Self.versionClaimPrefix) {
                    try db.execute("DELETE FROM source_lease WHERE client = ? AND source = ?", [fence.client, fence.source])
                }
            }
            let insert = """
                INSERT INTO transform (version_id, dataset, mapping_sha256, schema_sha256, status, rows_written, rows_rejected, output_path, rejects_path,
                                       error, transformed_at, member, parent_id, members_ok, members_failed, members_unmapped, source_schema_id,
                                       schema_drift)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """
            let now = Timestamp.now()
            // Each distinct schema once; a unit's row points at it.
            func schemaID(_ r: TransformRecord) throws -> Int64? {
                guard let s = r.sourceSchema else { return nil }
                try db.execute("INSERT INTO source_schema (sha256, schema, first_seen_at) VALUES (?, ?, ?) ON CONFLICT(sha256) DO NOTHING", [s.sha256, s.json, now])
                return try db.value("SELECT id FROM source_schema WHERE sha256 = ?", [s.sha256])
            }
            func row(_ r: TransformRecord, parent: Int64?) throws -> SQLArguments {
                [versionID, r.dataset, r.mappingSHA256, r.schemaSHA256, r.status, r.rowsWritten, r.rowsRejected, r.outputPath, r.rejectsPath,
                 r.error, now, r.member, parent, r.members?.ok, r.members?.failed, r.members?.unmapped, try schemaID(r), r.schemaDrift]
            }
            try Self.countTransform(db, versionID: versionID, status: file.status)
            let parent = try db.insert(insert, row(file, parent: nil))
            for m in members { try db.execute(insert, row(m, parent: parent)) }
            try Self.queueAlerts(db, alerts, routing: routing)
            try Self.queueLineage(db, lineage)
        }
    }

    /// The output schemas a client's current outputs of each dataset were written with: for
    /// every dataset, each distinct `schema_sha256` among the versions whose latest transform
    /// is ok, with how many outputs have it (NULL: written before schemas were recorded; then
    /// `mapping_sha256` is given instead).
    public struct OutputSchema: Sendable, Equatable {
        public var dataset: String
        public var schemaSHA256: String?
        public var mappingSHA256: String?
        public var outputs: Int
    }

    /// One transformed unit's observed schema, as `sluice schema` reads them.
    public struct SchemaOccurrence: Sendable {
        public var dataset: String
        public var source: String
        public var path: String
        public var version: Int
        public var member: String?
        public var transformedAt: String
        public var sha256: String
        public var schema: String
        /// The drift the unit showed against the delivery before it (JSON), if any.
        public var drift: String?
    }

    /// The observed schema (canonical JSON) of a client's dataset's latest unit that was
    /// transformed ok: the previous delivery, for the schema-change policies.
    public func latestSchema(client: String, dataset: String) throws(ManifestError) -> String? {
        try read("reading the previous schema") { db in
            try db.value("""
                SELECT s.schema FROM transform t JOIN source_schema s ON s.id = t.source_schema_id
                JOIN version v ON v.id = t.version_id JOIN file f ON f.id = v.file_id
                WHERE t.dataset = ? AND t.status = 'ok' AND f.client = ? ORDER BY t.id DESC LIMIT 1
                """, [dataset, client])
        }
    }

    /// Every transformed unit of a client (optionally of one dataset) with its observed
    /// schema, in the order the versions were ingested.
    public func schemaOccurrences(client: String, dataset: String?) throws(ManifestError) -> [SchemaOccurrence] {
        try read("reading observed schemas") { db in
            var out: [SchemaOccurrence] = []
            try db.each("""
                SELECT t.dataset, f.source, f.path, v.version, t.member, t.transformed_at, s.sha256, s.schema, t.schema_drift
                FROM transform t JOIN version v ON v.id = t.version_id JOIN file f ON f.id = v.file_id
                JOIN source_schema s ON s.id = t.source_schema_id
                WHERE f.client = ? AND t.dataset IS NOT NULL \(dataset == nil ? "" : "AND t.dataset = ?")
                ORDER BY v.id, t.id
                """, SQLArguments([client] + (dataset.map { [$0] } ?? []))) { r in
                out.append(SchemaOccurrence(dataset: r[0], source: r[1], path: r[2], version: r[3], member: r[4], transformedAt: r[5], sha256: r[6], schema: r[7], drift: r[8]))
            }
            return out
        }
    }

    public func outputSchemas(client: String) throws(ManifestError) -> [OutputSchema] {
        try read("reading the schemas of the outputs") { db in
            let rows = try db.rows("""
                SELECT t.dataset, t.schema_sha256, CASE WHEN t.schema_sha256 IS NULL THEN t.mapping_sha256 END, count(*)
                FROM transform t JOIN version v ON v.id = t.version_id JOIN file f ON f.id = v.file_id
                WHERE f.client = ? AND t.status = 'ok' AND t.dataset IS NOT NULL
                  AND coalesce(t.parent_id, t.id) = (SELECT max(t2.id) FROM transform t2 WHERE t2.version_id = t.version_id AND t2.parent_id IS NULL)
                GROUP BY 1, 2, 3 ORDER BY 1
                """, [client])
            return rows.map { OutputSchema(dataset: $0[0], schemaSHA256: $0[1], mappingSHA256: $0[2], outputs: $0[3]) }
        }
    }

    // MARK: move targets

    /// Every folder `after_ingest = "move:…"` of this source has ever pointed at.
    public func moveTargets(client: String, source: String) throws(ManifestError) -> [String] {
        try read("reading the move targets") { db in
            try db.column("SELECT target FROM move_target WHERE client = ? AND source = ? ORDER BY target", [client, source])
        }
    }

    /// Records a move target before anything is moved there.
    public func recordMoveTarget(client: String, source: String, target: String) throws(ManifestError) {
        try write("recording the move target") { db in
            try db.execute("INSERT INTO move_target (client, source, target, first_used_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                           [client, source, target, Timestamp.now()])
        }
    }

    // MARK: lake migrations

    /// Whether the lake migration `name` has been completed.
    public func lakeMigrationDone(_ name: String) throws(ManifestError) -> Bool {
        try read("reading the lake migrations") { db in
            try db.value("SELECT 1 FROM lake_migration WHERE name = ?", [name]) ?? false
        }
    }

    public func markLakeMigrationDone(_ name: String) throws(ManifestError) {
        try write("recording a lake migration") { db in
            try db.execute("INSERT INTO lake_migration (name, done_at) VALUES (?, ?) ON CONFLICT DO NOTHING", [name, Timestamp.now()])
        }
    }

    /// The rejects files recorded inside a dataset's folder (where rejects were written beside
    /// their output before the `_rejects` folder), each once.
    public func rejectsInsideDatasets() throws(ManifestError) -> [String] {
        try read("listing the rejects files to move") { db in
            try db.column("""
                SELECT DISTINCT rejects_path FROM transform
                WHERE rejects_path IS NOT NULL AND rejects_path NOT LIKE 'processed/%/\\_rejects/%' ESCAPE '\\'
                """)
        }
    }

    /// Points every transform row that names the rejects file `old` at `new`.
    public func moveRejects(from old: String, to new: String) throws(ManifestError) {
        try write("moving a rejects file") { db in
            try db.execute("UPDATE transform SET rejects_path = ? WHERE rejects_path = ?", [new, old])
        }
    }
}
