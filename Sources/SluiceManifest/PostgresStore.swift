import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import PostgresNIO
import SluiceSupport

/// How the connection to PostgreSQL is protected (`[manifest] tls`).
public enum PostgresTLS: String, Sendable, CaseIterable {
    /// Plain TCP.
    case disable
    /// TLS when the server offers it, else plain (the server's certificate is not checked).
    case prefer
    /// TLS or no connection (the server's certificate is not checked).
    case require
    /// TLS, with the server's certificate checked against the trusted CAs and the host name.
    case verifyFull = "verify-full"
}

/// Where a PostgreSQL manifest is: `[manifest] url`, `password_file`, `tls`, `ca_file`.
public struct PostgresLocation: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var user: String
    public var database: String
    public var passwordFile: String?
    public var tls: PostgresTLS
    /// PEM file of the CAs trusted for `verify-full` (default: the system's).
    public var caFile: String?
    /// The server ends a session that sits this long inside a transaction
    /// (`idle_in_transaction_session_timeout`): an agent that stalls mid-transaction (SIGSTOP,
    /// a network split) then holds no lock that other agents wait on or skip. Agents set it
    /// to their `lease_ttl`: its transactions never wait on anything but the database.
    public var idleTransactionTimeoutMillis: Int64?

    public init(host: String, port: Int, user: String, database: String, passwordFile: String?, tls: PostgresTLS, caFile: String? = nil) {
        self.host = host
        self.port = port
        self.user = user
        self.database = database
        self.passwordFile = passwordFile
        self.tls = tls
        self.caFile = caFile
    }

    /// Parses `postgresql://user@host:port/database` (or `postgres://`). A password in the URL
    /// is refused: secrets come from `password_file`. Returns the reason when it cannot.
    public static func parse(url: String) -> Result<(host: String, port: Int, user: String, database: String), ManifestError> {
        func fail(_ why: String) -> Result<(host: String, port: Int, user: String, database: String), ManifestError> {
            .failure(ManifestError(why + " — write it as postgresql://USER@HOST:PORT/DATABASE"))
        }
        guard let c = URLComponents(string: url), let scheme = c.scheme, ["postgresql", "postgres"].contains(scheme.lowercased()) else {
            return fail("'\(url)' is not a postgresql:// URL")
        }
        if c.password != nil {
            return .failure(ManifestError("the URL has a password in it: put the password in the file named by password_file (readable by the agent only) and leave it out of the URL"))
        }
        if c.query != nil { return fail("options after '?' in the URL are not read (use the keys tls, password_file, ca_file)") }
        guard let host = c.host, !host.isEmpty else { return fail("the URL names no host") }
        guard let user = c.user, !user.isEmpty else { return fail("the URL names no user") }
        let database = String(c.path.drop(while: { $0 == "/" }))
        guard !database.isEmpty, !database.contains("/") else { return fail("the URL names no database") }
        let port = c.port ?? 5432
        guard (1...65535).contains(port) else { return fail("the port \(port) is out of range") }
        return .success((host.removingPercentEncoding ?? host, port, user.removingPercentEncoding ?? user, database.removingPercentEncoding ?? database))
    }

    /// The URL without secrets, as messages name the manifest.
    public var display: String { "postgresql://\(user)@\(host):\(port)/\(database)" }
}

/// The manifest in a PostgreSQL database, through postgres-nio: for more than one agent.
///
/// The manifest's API is synchronous (as GRDB's is); each block waits on postgres-nio's event
/// loop futures from the caller's thread, never from an event loop. Connections are pooled.
/// Within one process writes take turns, as on SQLite; between agents, PostgreSQL's row locks
/// and unique keys decide, and a transaction that loses a serialization race or a deadlock is
/// run again.
final class PostgresStore: ManifestStore {
    let location: PostgresLocation
    private let configuration: PostgresConnection.Configuration
    private let group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    private let idle = NIOLockedValueBox<[PostgresConnection]>([])
    private let writer = NIOLock()
    private let nextID = NIOLockedValueBox(0)
    /// postgres-nio's own log: off (its debug lines name queries; secrets are never in them, but
    /// the agent's log is the place for what the agent did).
    private let logger = Logger(label: "sluice.postgres", factory: { _ in SwiftLogNoOpLogHandler() })
    var dialect: SQLDialect { .postgres }

    /// The advisory lock key every agent takes while it migrates ("sluice-m" in ASCII).
    static let migrationLockKey: Int64 = 0x736c_7569_6365_2d6d

    init(location: PostgresLocation, migrations: [Migration]) throws {
        self.location = location
        var password: String?
        if let file = location.passwordFile {
            guard let line = secretFirstLine(file) else {
                throw ManifestError("cannot read the password_file \(file) — create it (one line, the database password) readable by the user sluice runs as")
            }
            password = line
        }
        let tls: PostgresConnection.Configuration.TLS
        switch location.tls {
        case .disable:
            tls = .disable
        case .prefer, .require:
            var t = TLSConfiguration.makeClientConfiguration()
            t.certificateVerification = .none
            let context = try NIOSSLContext(configuration: t)
            tls = location.tls == .prefer ? .prefer(context) : .require(context)
        case .verifyFull:
            var t = TLSConfiguration.makeClientConfiguration()
            t.certificateVerification = .fullVerification
            if let ca = location.caFile { t.trustRoots = .file(ca) }
            tls = .require(try NIOSSLContext(configuration: t))
        }
        var c = PostgresConnection.Configuration(host: location.host, port: location.port, username: location.user, password: password,
                                                 database: location.database, tls: tls)
        c.options.connectTimeout = .seconds(15)
        c.options.additionalStartupParameters = [("application_name", "sluice")]
            + (location.idleTransactionTimeoutMillis.map { [("idle_in_transaction_session_timeout", "\($0)")] } ?? [])
        configuration = c
        try migrate(migrations)
    }

    deinit {
        for c in idle.withLockedValue({ $0 }) { c.closeQuietly() }
    }

    // MARK: connections

    /// A pooled connection (`pooled` true), else a new one.
    private func acquire(fresh: Bool = false) throws -> (connection: PostgresConnection, pooled: Bool) {
        while !fresh, let c = idle.withLockedValue({ $0.popLast() }) {
            if !c.isClosed { return (c, true) }
        }
        let id = nextID.withLockedValue { $0 += 1; return $0 }
        do {
            return (try PostgresConnection.connect(on: group.next(), configuration: configuration, id: id, logger: logger).wait(), false)
        } catch {
            throw ManifestError("cannot connect to \(location.display): \(Self.describe(error)) — check that the server is up, the URL, password_file and tls")
        }
    }

    private func release(_ c: PostgresConnection, reusable: Bool) {
        guard reusable, !c.isClosed else {
            c.closeQuietly()
            return
        }
        let kept = idle.withLockedValue { list -> Bool in
            guard list.count < 8 else { return false }
            list.append(c)
            return true
        }
        if !kept { c.closeQuietly() }
    }

    /// Runs `body` between `begin` and COMMIT on one pooled connection.
    private func transaction<T>(_ begin: String, _ body: (SQLDatabase) throws -> T) throws -> T {
        var (conn, pooled) = try acquire()
        var c = Connection(conn: conn, logger: logger)
        var reusable = false
        defer { release(conn, reusable: reusable) }
        do {
            _ = try c.execute(begin, [])
        } catch where pooled {
            // An idle connection the server closed meanwhile (a restart, a failover, an idle
            // timeout): once more on a new one.
            conn.closeQuietly()
            (conn, pooled) = try acquire(fresh: true)
            c = Connection(conn: conn, logger: logger)
            _ = try c.execute(begin, [])
        }
        do {
            let result = try body(SQLDatabase(connection: c))
            _ = try c.execute("COMMIT", [])
            reusable = true
            return result
        } catch {
            reusable = (try? c.execute("ROLLBACK", [])) != nil
            throw error
        }
    }

    func read<T>(_ body: (SQLDatabase) throws -> T) throws -> T {
        try transaction("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", body)
    }

    func write<T>(_ body: (SQLDatabase) throws -> T) throws -> T {
        try writer.withLock {
            var attempt = 0
            while true {
                do {
                    return try transaction("BEGIN", body)
                } catch let e as PostgresStatementError where Self.isRetryable(e.error) && attempt < 8 {
                    attempt += 1
                    usleep(UInt32(1000 << min(attempt, 6)))
                }
            }
        }
    }

    func checkWritable() throws {
        try transaction("BEGIN") { db in
            if let standby: Bool = try db.value("SELECT pg_is_in_recovery()"), standby {
                throw ManifestError("\(location.display) is a read-only standby: point [manifest] url at the primary")
            }
        }
    }

    /// ANALYZE, outside the writers' turn: it samples the tables (about 30,000 rows each,
    /// a second at ten million versions) and blocks neither readers nor writers. A user that
    /// does not own the tables gets a warning from the server, not an error: autovacuum then
    /// stays the only one to refresh them.
    func refreshStatistics(_ tables: [String]) throws {
        try transaction("BEGIN") { db in _ = try db.execute("ANALYZE " + tables.joined(separator: ", ")) }
    }

    /// A serialization failure or a deadlock: the transaction can simply be run again.
    static func isRetryable(_ e: PSQLError) -> Bool {
        guard let state = e.serverInfo?[.sqlState] else { return false }
        return state == "40001" || state == "40P01"
    }

    /// postgres-nio keeps an error's text out of its description; the server's message, detail
    /// and SQLSTATE are what tell a user what went wrong.
    static func describe(_ error: any Error) -> String {
        guard let e = error as? PSQLError else { return "\(error)" }
        if let info = e.serverInfo, let message = info[.message] {
            var s = message
            if let detail = info[.detail] { s += " (\(detail))" }
            if let state = info[.sqlState] { s += " [SQLSTATE \(state)]" }
            return s
        }
        if let underlying = e.underlying { return "\(e.code): \(underlying)" }
        return "\(e.code)"
    }

    // MARK: migrations

    /// Applies the migrations not yet applied, under an advisory lock, so that agents starting
    /// together migrate once. The applied ones are listed in `grdb_migrations`, as on SQLite.
    private func migrate(_ migrations: [Migration]) throws {
        let conn = try acquire().connection
        let c = Connection(conn: conn, logger: logger)
        var reusable = false
        defer { release(conn, reusable: reusable) }
        _ = try c.execute("SELECT pg_advisory_lock(\(Self.migrationLockKey))", [])
        defer { _ = try? c.execute("SELECT pg_advisory_unlock(\(Self.migrationLockKey))", []) }
        _ = try c.execute("CREATE TABLE IF NOT EXISTS grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY)", [])
        var applied = Set<String>()
        try c.query("SELECT identifier FROM grdb_migrations", []) { applied.insert($0[0]) }
        let unknown = applied.subtracting(migrations.map(\.identifier))
        if !unknown.isEmpty { throw ManifestError.newerSchema(location.display, unknown: unknown) }
        for m in migrations where !applied.contains(m.identifier) {
            _ = try c.execute("BEGIN", [])
            do {
                for statement in SQLText.statements(SQLText.postgresDDL(m.sql) + ";" + (m.postgresOnly ?? "")) { _ = try c.execute(statement, []) }
                _ = try c.execute("INSERT INTO grdb_migrations (identifier) VALUES ($1)", [.text(m.identifier)])
                _ = try c.execute("COMMIT", [])
            } catch {
                _ = try? c.execute("ROLLBACK", [])
                throw ManifestError("migration \(m.identifier) of \(location.display) failed: \(Self.describe(error))")
            }
        }
        reusable = true
    }

    // MARK: statements

    struct Connection: SQLConnection {
        let conn: PostgresConnection
        let logger: Logger
        var dialect: SQLDialect { .postgres }

        private func run(_ sql: String, _ arguments: [SQLValue]) throws -> PostgresQueryResult {
            var binds = PostgresBindings(capacity: arguments.count)
            for a in arguments {
                switch a {
                case .null: binds.appendNull()
                case .int(let i): binds.append(i)
                case .double(let d): binds.append(d)
                case .text(let s): binds.append(s)
                case .blob(let b): binds.append(ByteBuffer(bytes: b))
                }
            }
            let query = PostgresQuery(unsafeSQL: SQLText.numberedPlaceholders(sql), binds: binds)
            // A query sent on a connection that is already closed (the server ended the
            // session: a restart, or an idle-in-transaction timeout) never completes.
            if conn.isClosed {
                throw ManifestError("the server closed the connection (a restart, or this agent sat in a transaction longer than lease_ttl)")
            }
            do {
                return try conn.query(query, logger: logger).wait()
            } catch let e as PSQLError {
                throw PostgresStatementError(error: e, message: PostgresStore.describe(e))
            }
        }

        func execute(_ sql: String, _ arguments: [SQLValue]) throws -> Int {
            try run(sql, arguments).metadata.rows ?? 0
        }

        func query(_ sql: String, _ arguments: [SQLValue], _ body: (SQLRow) throws -> Void) throws {
            let result = try run(sql, arguments)
            var columns: [String]?
            for row in result.rows {
                var values: [SQLValue] = []
                var names: [String] = []
                for cell in row {
                    values.append(try Self.value(cell))
                    if columns == nil { names.append(cell.columnName) }
                }
                if columns == nil { columns = names }
                try body(SQLRow(columns: columns ?? [], values: values))
            }
        }

        static func value(_ cell: PostgresCell) throws -> SQLValue {
            guard var bytes = cell.bytes else { return .null }
            switch cell.dataType {
            case .int2, .int4, .int8:
                return .int(try cell.decode(Int64.self))
            case .float4, .float8:
                return .double(try cell.decode(Double.self))
            case .numeric:
                let d = try cell.decode(Decimal.self)
                if d == d.rounded(), let i = Int64(exactly: NSDecimalNumber(decimal: d).doubleValue) { return .int(i) }
                return .double(NSDecimalNumber(decimal: d).doubleValue)
            case .bool:
                return .int(try cell.decode(Bool.self) ? 1 : 0)
            case .bytea:
                return .blob(bytes.readBytes(length: bytes.readableBytes) ?? [])
            default:
                return .text(try cell.decode(String.self))
            }
        }
    }
}

/// A failed statement: the server's message (postgres-nio hides it from `description`).
struct PostgresStatementError: Error, CustomStringConvertible {
    let error: PSQLError
    let message: String
    var description: String { message }
}

extension Decimal {
    fileprivate func rounded() -> Decimal {
        var value = self
        var out = Decimal()
        NSDecimalRound(&out, &value, 0, .plain)
        return out
    }
}

extension PostgresConnection {
    /// Closes without waiting (a connection that is done with, or broken); the connection
    /// stays alive until it is closed, as postgres-nio requires.
    fileprivate func closeQuietly() {
        let closed: EventLoopFuture<Void> = close()
        closed.whenComplete { _ in withExtendedLifetime(self) {} }
    }
}
