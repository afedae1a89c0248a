import Foundation

/// The manifest's SQL, one dialect-neutral layer over SQLite (GRDB) and PostgreSQL
/// (postgres-nio): every query of the manifest is written once, with `?` placeholders, in the
/// SQL both servers take, and runs inside a `read` or `write` block of a `ManifestStore`.

/// One value bound to a placeholder or read from a column.
public enum SQLValue: Sendable, Equatable {
    case null
    case int(Int64)
    case double(Double)
    case text(String)
    case blob([UInt8])
}

/// What can be bound to a placeholder.
public protocol SQLBindable {
    var sqlValue: SQLValue { get }
}

extension Int: SQLBindable { public var sqlValue: SQLValue { .int(Int64(self)) } }
extension Int64: SQLBindable { public var sqlValue: SQLValue { .int(self) } }
extension Int32: SQLBindable { public var sqlValue: SQLValue { .int(Int64(self)) } }
extension Double: SQLBindable { public var sqlValue: SQLValue { .double(self) } }
extension String: SQLBindable { public var sqlValue: SQLValue { .text(self) } }
/// Booleans are stored as 0 and 1 (INTEGER columns on both servers).
extension Bool: SQLBindable { public var sqlValue: SQLValue { .int(self ? 1 : 0) } }
extension Data: SQLBindable { public var sqlValue: SQLValue { .blob([UInt8](self)) } }
extension Array: SQLBindable where Element == UInt8 { public var sqlValue: SQLValue { .blob(self) } }
extension SQLValue: SQLBindable { public var sqlValue: SQLValue { self } }

/// The values bound to a statement's placeholders, in order: `[client, 5, nil]`.
public struct SQLArguments: ExpressibleByArrayLiteral, Sendable {
    public var values: [SQLValue]

    public init(arrayLiteral elements: (any SQLBindable)?...) {
        values = elements.map { $0?.sqlValue ?? .null }
    }

    public init(_ elements: [(any SQLBindable)?]) {
        values = elements.map { $0?.sqlValue ?? .null }
    }

    public static func + (lhs: SQLArguments, rhs: SQLArguments) -> SQLArguments {
        var out = lhs
        out.values += rhs.values
        return out
    }
}

/// What a column can be read as. Integers, reals and text convert into one another as SQLite
/// does; NULL reads as the type's zero unless the type is optional.
public protocol SQLColumn {
    static func from(_ value: SQLValue) -> Self
}

extension Int64: SQLColumn {
    public static func from(_ value: SQLValue) -> Int64 {
        switch value {
        case .int(let v): v
        case .double(let d): Int64(exactly: d.rounded(.towardZero)) ?? 0
        case .text(let s): Int64(s) ?? 0
        case .null, .blob: 0
        }
    }
}

extension Int: SQLColumn { public static func from(_ value: SQLValue) -> Int { Int(truncatingIfNeeded: Int64.from(value)) } }
extension Int32: SQLColumn { public static func from(_ value: SQLValue) -> Int32 { Int32(truncatingIfNeeded: Int64.from(value)) } }
extension Bool: SQLColumn { public static func from(_ value: SQLValue) -> Bool { Int64.from(value) != 0 } }

extension Double: SQLColumn {
    public static func from(_ value: SQLValue) -> Double {
        switch value {
        case .int(let v): Double(v)
        case .double(let d): d
        case .text(let s): Double(s) ?? 0
        case .null, .blob: 0
        }
    }
}

extension String: SQLColumn {
    public static func from(_ value: SQLValue) -> String {
        switch value {
        case .int(let v): String(v)
        case .double(let d): String(d)
        case .text(let s): s
        case .blob(let b): String(decoding: b, as: UTF8.self)
        case .null: ""
        }
    }
}

extension Array: SQLColumn where Element == UInt8 {
    public static func from(_ value: SQLValue) -> [UInt8] {
        switch value {
        case .blob(let b): b
        case .text(let s): Array(s.utf8)
        default: []
        }
    }
}

extension Data: SQLColumn { public static func from(_ value: SQLValue) -> Data { Data([UInt8].from(value)) } }

extension Optional: SQLColumn where Wrapped: SQLColumn {
    public static func from(_ value: SQLValue) -> Wrapped? {
        if case .null = value { return nil }
        return Wrapped.from(value)
    }
}

/// One result row: its values by position or by column name.
public struct SQLRow: Sendable {
    public let columns: [String]
    public let values: [SQLValue]

    public init(columns: [String], values: [SQLValue]) {
        self.columns = columns
        self.values = values
    }

    public subscript<T: SQLColumn>(_ index: Int) -> T {
        T.from(index < values.count ? values[index] : .null)
    }

    public subscript<T: SQLColumn>(_ name: String) -> T {
        guard let i = columns.firstIndex(of: name) else { return T.from(.null) }
        return T.from(values[i])
    }
}

/// The server a manifest lives on, for the few statements that differ.
public enum SQLDialect: Sendable {
    case sqlite
    case postgres
}

/// One connection inside a `read` or `write` block of a store.
protocol SQLConnection {
    var dialect: SQLDialect { get }
    /// Runs a statement; returns how many rows it changed.
    func execute(_ sql: String, _ arguments: [SQLValue]) throws -> Int
    /// Runs a query, handing each row to `body` in order.
    func query(_ sql: String, _ arguments: [SQLValue], _ body: (SQLRow) throws -> Void) throws
}

/// What the manifest's queries are written against: the connection of the block they run in.
struct SQLDatabase {
    let connection: any SQLConnection

    var dialect: SQLDialect { connection.dialect }

    /// Runs a statement; returns how many rows it changed.
    @discardableResult
    func execute(_ sql: String, _ arguments: SQLArguments = []) throws -> Int {
        try connection.execute(sql, arguments.values)
    }

    /// Runs an INSERT and returns the new row's `id`.
    func insert(_ sql: String, _ arguments: SQLArguments = []) throws -> Int64 {
        guard let id: Int64 = try value(sql + " RETURNING id", arguments) else { throw ManifestError("an INSERT returned no id") }
        return id
    }

    func rows(_ sql: String, _ arguments: SQLArguments = []) throws -> [SQLRow] {
        var out: [SQLRow] = []
        try connection.query(sql, arguments.values) { out.append($0) }
        return out
    }

    /// Hands each row to `body` as it is read (a cursor on SQLite).
    func each(_ sql: String, _ arguments: SQLArguments = [], _ body: (SQLRow) throws -> Void) throws {
        try connection.query(sql, arguments.values, body)
    }

    func row(_ sql: String, _ arguments: SQLArguments = []) throws -> SQLRow? {
        var first: SQLRow?
        try connection.query(sql, arguments.values) { if first == nil { first = $0 } }
        return first
    }

    /// The first column of the first row (nil when there is none, or it is NULL).
    func value<T: SQLColumn>(_ sql: String, _ arguments: SQLArguments = []) throws -> T? {
        guard let r = try row(sql, arguments), let v = r.values.first, v != .null else { return nil }
        return T.from(v)
    }

    /// The first column of every row.
    func column<T: SQLColumn>(_ sql: String, _ arguments: SQLArguments = []) throws -> [T] {
        var out: [T] = []
        try connection.query(sql, arguments.values) { out.append($0[0]) }
        return out
    }
}

/// Where the manifest's tables live: a SQLite file or a PostgreSQL database.
protocol ManifestStore: Sendable {
    var dialect: SQLDialect { get }
    /// A consistent snapshot for the block's queries.
    func read<T>(_ body: (SQLDatabase) throws -> T) throws -> T
    /// One transaction: committed when the block returns, rolled back when it throws.
    func write<T>(_ body: (SQLDatabase) throws -> T) throws -> T
    /// Throws unless the database takes writes now.
    func checkWritable() throws
    /// Brings the planner's statistics of `tables` up to date (PostgreSQL's ANALYZE). SQLite's
    /// planner keeps none (the manifest never runs ANALYZE there): nothing to do.
    func refreshStatistics(_ tables: [String]) throws
}

/// The manifest's migrations, applied in order, each once: the SQLite text of each (the
/// PostgreSQL store translates its column types).
struct Migration: Sendable {
    let identifier: String
    let sql: String
    /// Statements run after `sql` on PostgreSQL only (what SQLite has no words for).
    var postgresOnly: String? = nil
}

package enum SQLText {
    /// Rewrites `sql` character by character: `special` (a character outside quotes) returns
    /// its replacement, or nil to keep it. Quoted text ('…' and "…") is copied as it is.
    package static func rewriteOutsideQuotes(_ sql: String, _ special: (Character) -> String?) -> String {
        var out = ""
        out.reserveCapacity(sql.utf8.count + 16)
        var quote: Character?
        for c in sql {
            if let q = quote {
                if c == q { quote = nil }
            } else if c == "'" || c == "\"" {
                quote = c
            } else if let replacement = special(c) {
                out += replacement
                continue
            }
            out.append(c)
        }
        return out
    }

    /// Splits a script into its statements at the semicolons outside quotes.
    package static func statements(_ script: String) -> [String] {
        let separator = "\u{0}"
        return rewriteOutsideQuotes(script) { $0 == ";" ? separator : nil }
            .components(separatedBy: separator)
            .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            .filter { !$0.isEmpty }
    }

    /// `?` placeholders as PostgreSQL's `$1`, `$2`, … (outside quotes).
    package static func numberedPlaceholders(_ sql: String) -> String {
        guard sql.utf8.contains(UInt8(ascii: "?")) else { return sql }
        var n = 0
        return rewriteOutsideQuotes(sql) { c in
            guard c == "?" else { return nil }
            n += 1
            return "$\(n)"
        }
    }

    /// A migration's SQLite DDL in PostgreSQL's types: 64-bit integers, identity keys, bytea.
    package static func postgresDDL(_ sql: String) -> String {
        var s = sql
        for (pattern, replacement) in [
            (#"\bINTEGER PRIMARY KEY AUTOINCREMENT\b"#, "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
            (#"\bINTEGER PRIMARY KEY\b"#, "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
            (#"\bINTEGER\b"#, "BIGINT"),
            (#"\bBLOB\b"#, "BYTEA"),
            (#"\bREAL\b"#, "DOUBLE PRECISION"),
        ] {
            s = s.replacingOccurrences(of: pattern, with: replacement, options: .regularExpression)
        }
        return s
    }
}

/// Where the manifest is: `[manifest] url` (PostgreSQL), else the SQLite file in `state_dir`.
public enum ManifestLocation: Sendable, Equatable {
    case sqlite(path: String)
    case postgres(PostgresLocation)
}
