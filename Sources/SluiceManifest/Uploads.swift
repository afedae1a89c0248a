import Foundation
import SluiceSupport

/// One upload through the API, as the manifest records it.
public struct UploadRecord: Codable, Sendable, Equatable {
    public var id: Int64?
    /// nil for an operator's upload from the console.
    public var token_id: Int64?
    public var client: String
    public var source: String
    public var path: String
    public var remote_addr: String?
    /// Bytes received.
    public var size: Int64
    public var sha256: String?
    /// stored, unchanged, rejected, failed or aborted.
    public var status: String
    public var http_status: Int
    public var version: Int?
    public var lake_path: String?
    public var error: String?
    public var started_at: String
    public var finished_at: String

    public init(id: Int64? = nil, tokenID: Int64?, client: String, source: String, path: String, remoteAddress: String?, size: Int64,
                sha256: String?, status: String, httpStatus: Int, version: Int?, lakePath: String?, error: String?,
                startedAt: String, finishedAt: String) {
        self.id = id
        token_id = tokenID
        self.client = client
        self.source = source
        self.path = path
        remote_addr = remoteAddress
        self.size = size
        self.sha256 = sha256
        self.status = status
        http_status = httpStatus
        self.version = version
        lake_path = lakePath
        self.error = error
        started_at = startedAt
        finished_at = finishedAt
    }
}

extension Manifest {
    /// Records one upload; returns its id.
    @discardableResult
    public func recordUpload(_ u: UploadRecord) throws(ManifestError) -> Int64 {
        try write("recording an upload") { db in
            try db.insert("""
                INSERT INTO upload (token_id, client, source, path, remote_addr, size, sha256, status, http_status, version,
                                    lake_path, error, started_at, finished_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, [u.token_id, u.client, u.source, u.path, u.remote_addr, u.size, u.sha256, u.status, u.http_status,
                                 u.version, u.lake_path, u.error, u.started_at, u.finished_at])
        }
    }

    /// Every version of a client's files in `sources` whose path starts with `prefix`, by
    /// source, path and version.
    public func versions(client: String, sources: [String], prefix: String) throws(ManifestError) -> [VersionRecord] {
        guard !sources.isEmpty else { return [] }
        return try read("listing versions") { db in
            let marks = Array(repeating: "?", count: sources.count).joined(separator: ", ")
            let arguments: SQLArguments = [client] + SQLArguments(sources) + [prefix.unicodeScalars.count, prefix]  // substr counts characters
            return try db.rows("""
                SELECT * FROM versions WHERE client = ? AND source IN (\(marks)) AND substr(path, 1, CAST(? AS INTEGER)) = ?
                ORDER BY source, path, version
                """, arguments).map(VersionRecord.init(row:))
        }
    }

    /// One version of a file (the latest when `version` is nil), or nil when there is none.
    public func version(client: String, source: String, path: String, version: Int?) throws(ManifestError) -> VersionRecord? {
        try read("looking up a version") { db in
            if let version {
                return try db.row("SELECT * FROM versions WHERE client = ? AND source = ? AND path = ? AND version = ?",
                                  [client, source, path, version]).map(VersionRecord.init(row:))
            }
            return try db.row("SELECT * FROM versions WHERE client = ? AND source = ? AND path = ? ORDER BY version DESC LIMIT 1",
                              [client, source, path]).map(VersionRecord.init(row:))
        }
    }
}
