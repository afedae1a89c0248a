import Foundation
import SluiceSupport

/// What the web console reads: everything from the manifest, read-only.
extension Manifest {
    /// A version as the console lists it.
    public struct VersionRow: Sendable {
        public var id: Int64
        public var source: String
        public var path: String
        public var version: Int
        public var size: Int64
        public var sha256: String
        public var lakePath: String
        public var ingestedAt: String
    }

    public func versionRow(id: Int64) throws(ManifestError) -> (client: String, row: VersionRow)? {
        try read("looking up a version") { db in
            try db.row("""
                SELECT client, version_id, source, path, version, size, sha256, lake_path, ingested_at FROM versions WHERE version_id = ?
                """, [id]).map { ($0["client"], Self.versionRow($0)) }
        }
    }

    static func versionRow(_ r: SQLRow) -> VersionRow {
        VersionRow(id: r["version_id"], source: r["source"], path: r["path"], version: r["version"], size: r["size"],
                   sha256: r["sha256"], lakePath: r["lake_path"], ingestedAt: r["ingested_at"])
    }

    /// A transform row with the version it is of.
    public struct TransformRow: Sendable {
        public var id: Int64
        public var versionID: Int64
        public var client: String
        public var source: String
        public var path: String
        public var version: Int
        public var dataset: String?
        public var status: String
        public var rowsWritten: Int64
        public var rowsRejected: Int64
        public var outputPath: String?
        public var rejectsPath: String?
        public var error: String?
        public var transformedAt: String
        /// Whether this is the version's latest transform (a failed one can be re-run).
        public var isLatest: Bool
        /// The archive member this row is of; nil for a whole version.
        public var member: String?
        /// What changed in the unit's schema against the delivery before it (JSON), if anything.
        public var schemaDrift: String?
    }

    static let transformColumns = """
        SELECT t.id, t.version_id, f.client, f.source, f.path, v.version, t.dataset, t.status, t.rows_written, t.rows_rejected,
               t.output_path, t.rejects_path, t.error, t.transformed_at,
               t.member, t.schema_drift,
               coalesce(t.parent_id, t.id) = (SELECT max(id) FROM transform WHERE version_id = t.version_id AND parent_id IS NULL) AS is_latest
        """
    static let transformSelect = transformColumns + "\nFROM transform t JOIN version v ON v.id = t.version_id JOIN file f ON f.id = v.file_id"

    static func transformRow(_ r: SQLRow) -> TransformRow {
        TransformRow(id: r["id"], versionID: r["version_id"], client: r["client"], source: r["source"], path: r["path"], version: r["version"],
                     dataset: r["dataset"], status: r["status"], rowsWritten: r["rows_written"], rowsRejected: r["rows_rejected"],
                     outputPath: r["output_path"], rejectsPath: r["rejects_path"], error: r["error"], transformedAt: r["transformed_at"],
                     isLatest: r["is_latest"], member: r["member"], schemaDrift: r["schema_drift"])
    }

    /// A client's held units (versions, and members of archives, whose latest transform a
    /// schema-change policy held), oldest first.
    public func heldTransforms(client: String, limit: Int) throws(ManifestError) -> [TransformRow] {
        try read("reading held transforms") { db in
            // From the held rows, along their partial index, to their versions: not from every
            // file of the client (SQLite, without statistics, would start there, or walk every
            // transform in id order).
            let cross = Self.crossJoin(db)
            let held = db.dialect == .sqlite ? " INDEXED BY transform_held" : ""
            return try db.rows(Self.transformColumns + """
                 FROM transform t\(held) \(cross) version v ON v.id = t.version_id \(cross) file f ON f.id = v.file_id
                 WHERE t.status = 'held' AND v.client = ?
                   AND coalesce(t.parent_id, t.id) = (SELECT max(id) FROM transform WHERE version_id = t.version_id AND parent_id IS NULL)
                 ORDER BY t.id LIMIT ?
                """, [client, limit]).map(Self.transformRow)
        }
    }

    /// How many versions of each client have a held latest transform (an archive with held
    /// members counts once).
    public func heldCounts() throws(ManifestError) -> [String: Int] {
        try read("counting held transforms") { db in
            var out: [String: Int] = [:]
            for r in try db.rows("SELECT client, sum(held_transforms) FROM source_total GROUP BY client HAVING sum(held_transforms) > 0") {
                out[r[0]] = r[1]
            }
            return out
        }
    }

    /// The transforms of a client's newest `limit` versions (each version's rows, archive
    /// members included), newest first: read along `version_client` and `transform_version`,
    /// never through everyone's transforms. (A re-run of an older version shows on its
    /// version's and its transform's pages, and among the held units while it is held.)
    public func recentTransforms(client: String, limit: Int) throws(ManifestError) -> [TransformRow] {
        try read("reading recent transforms") { db in
            try db.rows(Self.transformSelect + """
                 WHERE t.version_id IN (SELECT id FROM version WHERE client = ? ORDER BY ingested_at DESC, id DESC LIMIT ?)
                 ORDER BY t.id DESC LIMIT ?
                """, [client, limit, limit]).map(Self.transformRow)
        }
    }

    public func transformRow(id: Int64) throws(ManifestError) -> TransformRow? {
        try read("looking up a transform") { db in
            try db.row(Self.transformSelect + " WHERE t.id = ?", [id]).map(Self.transformRow)
        }
    }

    /// The latest transform of a version.
    public func latestTransform(versionID: Int64) throws(ManifestError) -> TransformRow? {
        try read("looking up a transform") { db in
            try db.row(Self.transformSelect + " WHERE t.version_id = ? AND t.parent_id IS NULL ORDER BY t.id DESC LIMIT 1", [versionID]).map(Self.transformRow)
        }
    }
}
