import Crypto
import Foundation
import SluiceSupport

/// `sluice manifest copy`: every row of one manifest into another, empty one (a SQLite host
/// moving to PostgreSQL), verified by counts and a checksum of the rows on both sides.
extension Manifest {
    /// The manifest's tables in an order that keeps every reference to an earlier row, each
    /// with the key its rows are read in.
    static let copiedTables: [(name: String, key: String)] = [
        ("run", "id"), ("file", "id"), ("version", "id"), ("sighting", "id"), ("source_schema", "id"), ("transform", "id"),
        ("token", "id"), ("upload", "id"), ("move_target", "client, source, target"), ("lake_migration", "name"),
        ("alert_condition", "id"), ("alert_outbox", "id"), ("expectation_seen", "client, key"), ("source_lease", "client, source"),
        ("ingest_day", "client, source, day"), ("source_total", "client, source"),
    ]

    /// One table as copied or checked: its rows and the SHA-256 of their values in key order.
    public struct TableDigest: Sendable, Equatable, Encodable {
        public var table: String
        public var rows: Int
        public var sha256: String
    }

    /// The rows and checksum of every table (one snapshot).
    public func tableDigests() throws(ManifestError) -> [TableDigest] {
        try read("checksumming the tables") { db in
            try Self.copiedTables.map { t in
                var hash = SHA256()
                var rows = 0
                try db.each(Self.orderedSelect(t.name, key: t.key, dialect: db.dialect)) { row in
                    rows += 1
                    Self.digest(row.values, into: &hash)
                }
                return TableDigest(table: t.name, rows: rows, sha256: hexString(hash.finalize()))
            }
        }
    }

    /// Copies every row into `destination`, which must hold none, in one transaction there,
    /// from one snapshot of this manifest; then checks counts and checksums on both sides.
    /// `progress` hears each table as it is done.
    public func copy(to destination: Manifest, progress: (TableDigest) -> Void = { _ in }) throws(ManifestError) -> [TableDigest] {
        if let busy = try destination.notEmpty() { throw ManifestError(busy) }
        let copied: [TableDigest] = try read("reading the manifest to copy") { source in
            try destination.store.write { target in try Self.copyRows(from: source, into: target, tables: Self.copiedTables, progress: progress) }
        }
        let check = try destination.tableDigests()
        for (a, b) in zip(copied, check) where a != b {
            throw ManifestError("the copy of \(a.table) does not match: \(a.rows) rows (sha256 \(a.sha256.prefix(12))) read, "
                + "\(b.rows) rows (sha256 \(b.sha256.prefix(12))) in \(destination.path) — do not switch to it; drop the database and copy again")
        }
        // A bulk load leaves PostgreSQL's planner without statistics until autovacuum comes by.
        try? destination.store.refreshStatistics(Self.copiedTables.map(\.name))
        return copied
    }

    /// Copies every row of `tables` from `source` into `target` (in its transaction), going on
    /// with each identity after the copied ids; the rows and checksum of each table.
    static func copyRows(from source: SQLDatabase, into target: SQLDatabase, tables: [(name: String, key: String)],
                         progress: (TableDigest) -> Void = { _ in }) throws -> [TableDigest] {
        var out: [TableDigest] = []
        for t in tables {
            var hash = SHA256()
            var rows = 0
            var columns: [String] = []
            var batch: [[SQLValue]] = []
            func flush() throws {
                guard !batch.isEmpty else { return }
                let marks = "(" + Array(repeating: "?", count: columns.count).joined(separator: ", ") + ")"
                let sql = "INSERT INTO \(t.name) (\(columns.joined(separator: ", "))) VALUES "
                    + Array(repeating: marks, count: batch.count).joined(separator: ", ")
                try target.execute(sql, SQLArguments(batch.flatMap { $0 }))
                batch.removeAll(keepingCapacity: true)
            }
            try source.each(Self.orderedSelect(t.name, key: t.key, dialect: source.dialect)) { row in
                if columns.isEmpty { columns = row.columns }
                rows += 1
                Self.digest(row.values, into: &hash)
                batch.append(row.values)
                // PostgreSQL takes at most 65,535 parameters in a statement.
                if batch.count * columns.count >= 30_000 { try flush() }
            }
            try flush()
            if rows > 0, t.key == "id", target.dialect == .postgres {
                // The identity continues after the copied ids.
                try target.execute("SELECT setval(pg_get_serial_sequence('\(t.name)', 'id'), (SELECT max(id) FROM \(t.name)))")
            }
            let d = TableDigest(table: t.name, rows: rows, sha256: hexString(hash.finalize()))
            progress(d)
            out.append(d)
        }
        return out
    }

    /// Why this manifest cannot take a copy (a table has rows), or nil when it is empty.
    public func notEmpty() throws(ManifestError) -> String? {
        let counts = try read("looking at the destination") { db in
            try Self.copiedTables.map { t -> (String, Int) in (t.name, try db.value("SELECT count(*) FROM \(t.name)") ?? 0) }
        }
        guard let busy = counts.first(where: { $0.1 > 0 }) else { return nil }
        return "the destination \(path) is not empty (\(busy.0) has \(busy.1) rows): copy only into a new, empty database"
    }

    /// Rows in key order, the same order on both servers (PostgreSQL's collation may sort text
    /// otherwise: "C" is byte order, as SQLite's).
    static func orderedSelect(_ table: String, key: String, dialect: SQLDialect) -> String {
        let order = key.split(separator: ",").map { k -> String in
            let column = k.trimmingCharacters(in: .whitespaces)
            return dialect == .postgres && column != "id" ? "\(column) COLLATE \"C\"" : column
        }
        return "SELECT * FROM \(table) ORDER BY \(order.joined(separator: ", "))"
    }

    /// Adds one row's values to `hash`, each tagged by its type so that no two rows hash alike.
    static func digest(_ values: [SQLValue], into hash: inout SHA256) {
        var bytes: [UInt8] = []
        for v in values {
            switch v {
            case .null: bytes.append(0)
            case .int(let i): bytes.append(1); bytes += Array(String(i).utf8); bytes.append(0xFF)
            case .double(let d): bytes.append(2); bytes += Array(String(d).utf8); bytes.append(0xFF)
            case .text(let s):
                bytes.append(3)
                bytes += withUnsafeBytes(of: UInt64(s.utf8.count).littleEndian, Array.init)
                bytes += Array(s.utf8)
            case .blob(let b):
                bytes.append(4)
                bytes += withUnsafeBytes(of: UInt64(b.count).littleEndian, Array.init)
                bytes += b
            }
        }
        bytes.append(0x0A)
        hash.update(data: bytes)
    }
}
