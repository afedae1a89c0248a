import Foundation
import GRDB
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The manifest in one SQLite file (the default, for one host), through GRDB.
///
/// WAL mode, `synchronous=FULL`, a busy timeout, so that `pull`, `audit` and the daemon can use
/// it at once. Every statement is a `cachedStatement`: compiling one (SQLite's parser plus
/// GRDB's authorizer) costs more than running the statements every pass runs.
final class SQLiteStore: ManifestStore {
    let path: String
    let pool: DatabasePool
    var dialect: SQLDialect { .sqlite }

    init(path: String, migrations: [Migration]) throws {
        self.path = path
        var config = Configuration()
        config.busyMode = .timeout(30)
        config.foreignKeysEnabled = true
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        // Two processes opening a new manifest at once would both see no migration applied and
        // both try to create the tables: the migration runs under an flock on a sidecar file.
        // (Not on the database file: closing another descriptor of it would drop SQLite's own
        // POSIX locks.)
        let lock = open(path + "-migrate.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        if lock >= 0 { while flock(lock, LOCK_EX) != 0 && errno == EINTR {} }
        defer { if lock >= 0 { close(lock) } }
        var migrator = DatabaseMigrator()
        for m in migrations {
            migrator.registerMigration(m.identifier) { db in try db.execute(sql: m.sql) }
        }
        // A manifest a newer Sluice migrated further is left as it is: this build would write
        // rows without the columns and tables the newer one relies on. Looked at through a
        // read-only connection, before the pool (whose set-up writes to the file) opens it.
        if access(path, F_OK) == 0 {
            var readOnly = Configuration()
            readOnly.readonly = true
            readOnly.busyMode = .timeout(30)
            let unknown = try DatabaseQueue(path: path, configuration: readOnly).read { db in
                try migrator.hasBeenSuperseded(db) ? try migrator.appliedIdentifiers(db) : []
            }.subtracting(migrations.map(\.identifier))
            if !unknown.isEmpty { throw ManifestError.newerSchema(path, unknown: unknown) }
        }
        pool = try DatabasePool(path: path, configuration: config)
        try migrator.migrate(pool)
    }

    func read<T>(_ body: (SQLDatabase) throws -> T) throws -> T {
        try pool.read { db in try body(SQLDatabase(connection: Connection(db: db, path: path))) }
    }

    func write<T>(_ body: (SQLDatabase) throws -> T) throws -> T {
        try pool.write { db in try body(SQLDatabase(connection: Connection(db: db, path: path))) }
    }

    /// Takes the write lock (`BEGIN IMMEDIATE`) and rolls back, changing nothing.
    func checkWritable() throws {
        try pool.writeWithoutTransaction { db in try db.execute(sql: "BEGIN IMMEDIATE; ROLLBACK") }
    }

    func refreshStatistics(_ tables: [String]) throws {}

    /// Hears the query plan (`EXPLAIN QUERY PLAN`, one detail a line) of every statement run
    /// while set: the tests check with it that no read of the history walks a whole table.
    package static let planRecorder = Mutex<(@Sendable (_ path: String, _ sql: String, _ plan: [String]) -> Void)?>(nil)

    struct Connection: SQLConnection {
        let db: GRDB.Database
        /// The manifest's file.
        let path: String
        var dialect: SQLDialect { .sqlite }

        private func recordPlan(_ sql: String, _ arguments: [SQLValue]) throws {
            guard let record = SQLiteStore.planRecorder.withLock({ $0 }) else { return }
            let rows = try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN " + sql, arguments: StatementArguments(arguments.map(Self.databaseValue)))
            record(path, sql, rows.map { $0["detail"] as String? ?? "" })
        }

        func execute(_ sql: String, _ arguments: [SQLValue]) throws -> Int {
            try recordPlan(sql, arguments)
            let statement = try db.cachedStatement(sql: sql)
            statement.setUncheckedArguments(StatementArguments(arguments.map(Self.databaseValue)))
            try statement.execute()
            return db.changesCount
        }

        func query(_ sql: String, _ arguments: [SQLValue], _ body: (SQLRow) throws -> Void) throws {
            try recordPlan(sql, arguments)
            let statement = try db.cachedStatement(sql: sql)
            statement.setUncheckedArguments(StatementArguments(arguments.map(Self.databaseValue)))
            let columns = statement.columnNames
            let rows = try Row.fetchCursor(statement)
            while let row = try rows.next() {
                var values: [SQLValue] = []
                values.reserveCapacity(columns.count)
                for i in 0..<columns.count { values.append(Self.value(row[i] as DatabaseValue)) }
                try body(SQLRow(columns: columns, values: values))
            }
        }

        static func databaseValue(_ v: SQLValue) -> DatabaseValue {
            switch v {
            case .null: .null
            case .int(let i): i.databaseValue
            case .double(let d): d.databaseValue
            case .text(let s): s.databaseValue
            case .blob(let b): Data(b).databaseValue
            }
        }

        static func value(_ v: DatabaseValue) -> SQLValue {
            switch v.storage {
            case .null: .null
            case .int64(let i): .int(i)
            case .double(let d): .double(d)
            case .string(let s): .text(s)
            case .blob(let d): .blob([UInt8](d))
            }
        }
    }
}
