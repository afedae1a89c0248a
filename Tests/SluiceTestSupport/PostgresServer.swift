import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A real PostgreSQL server on loopback, started by the tests: Debian's `postgresql` package,
/// `initdb` in a temporary folder and `pg_ctl` on a free port, with password (SCRAM) logins
/// over TCP as an agent makes them. One server serves a test process; each test makes its
/// own database. Stopped when the test process exits.
package final class PostgresServer: @unchecked Sendable {
    /// Where `initdb` and `pg_ctl` are: the newest `/usr/lib/postgresql/N/bin`.
    package static var binDir: String? {
        let base = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: base)) ?? []).compactMap { Int($0) }.sorted()
        guard let newest = versions.last else { return nil }
        let bin = "\(base)/\(newest)/bin"
        return access(bin + "/pg_ctl", X_OK) == 0 ? bin : nil
    }

    package static var available: Bool { binDir != nil }

    /// The process's server (started on first use).
    package static func shared() throws -> PostgresServer {
        try lock.withLock {
            if let s = instance { return s }
            if let e = startError { throw TestFailure(e) }
            do {
                let s = try PostgresServer()
                instance = s
                try s.stopWhenTheTestsEnd()
                return s
            } catch {
                startError = "\(error)"
                throw error
            }
        }
    }

    nonisolated(unsafe) private static var instance: PostgresServer?
    nonisolated(unsafe) private static var startError: String?
    private static let lock = NSLock()

    package let dir: TempDir
    package let port: Int
    package let user = "sluice"
    /// The file with the `sluice` role's password (as `[manifest] password_file` names it).
    package let passwordFile: String
    private let bin: String
    private let data: String
    private let asPostgres: Bool

    private init() throws {
        guard let bin = Self.binDir else { throw TestFailure("PostgreSQL is not installed (apt-get install postgresql)") }
        self.bin = bin
        dir = TempDir("pg")
        // initdb refuses to run as root: as root, the server runs as the `postgres` user, and
        // the folders above its data must let that user through.
        asPostgres = geteuid() == 0
        chmod(dir.path, 0o755)
        data = dir.sub("data")
        let password = UUID().uuidString
        passwordFile = dir.write("pg.pass", password + "\n")
        chmod(passwordFile, 0o644)
        let pwfile = dir.write("initdb.pw", password + "\n")
        chmod(pwfile, 0o644)
        if asPostgres { _ = try Shell.run("/bin/chown", ["postgres", dir.path]) }
        let initdb = try Self.run("\(bin)/initdb", ["-D", data, "-U", user, "--pwfile", pwfile, "--auth-local=trust", "--auth-host=scram-sha-256",
                                              "-E", "UTF8", "--locale=C", "--no-sync"], asPostgres: asPostgres)
        guard initdb.status == 0 else { throw TestFailure("initdb failed: \(initdb.stdout) \(initdb.stderr)") }
        var lastError = ""
        for _ in 0..<5 {
            let p = try SSHServer.freePort()
            let started = try Self.run("\(bin)/pg_ctl", ["-D", data, "-l", dir.sub("server.log"), "-w", "-t", "30", "-o",
                                                    "-p \(p) -k \(dir.path) -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=200",
                                                    "start"], asPostgres: asPostgres)
            if started.status == 0 {
                port = p
                return
            }
            lastError = started.stdout + started.stderr + ((try? String(contentsOfFile: dir.sub("server.log"), encoding: .utf8)) ?? "")
        }
        throw TestFailure("pg_ctl start failed: \(lastError)")
    }

    private func run(_ tool: String, _ args: [String]) throws -> Shell.Result {
        try Self.run(tool, args, asPostgres: asPostgres)
    }

    /// Runs a PostgreSQL tool to its end (posix_spawn and waitpid: Foundation's Process can
    /// stall on the server that pg_ctl leaves running).
    private static func run(_ tool: String, _ args: [String], asPostgres: Bool) throws -> Shell.Result {
        let words = asPostgres ? ["/usr/sbin/runuser", "-u", "postgres", "--", tool] + args : [tool] + args
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-pg-\(UUID().uuidString).log").path
        defer { unlink(log) }
        let pid = try spawnProcess(words, stdout: .truncate(log), stderr: .stdout)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        let exited = (status & 0x7f) == 0
        return Shell.Result(status: exited ? (status >> 8) & 0xff : 128 + (status & 0x7f), stdout: output, stderr: "")
    }

    /// A watchdog stops the server and removes its folder once this test process is gone,
    /// however it ends (a crashed test run too).
    private func stopWhenTheTestsEnd() throws {
        let stop = (asPostgres ? "/usr/sbin/runuser -u postgres -- " : "") + "'\(bin)/pg_ctl' -D '\(data)' -m immediate -w stop"
        let script = "while kill -0 \(getpid()) 2>/dev/null; do sleep 0.5; done; \(stop) >/dev/null 2>&1; rm -rf '\(dir.path)'"
        _ = try spawnProcess(["/bin/sh", "-c", script], stdout: .devNull, stderr: .devNull)
    }

    /// Stops the server and removes its folder.
    package func stop() {
        _ = try? run("\(bin)/pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"])
        _ = try? Shell.run("/bin/rm", ["-rf", dir.path])
    }

    /// Runs SQL with psql as the `sluice` role (a superuser) in `database`; returns its output
    /// (unaligned, tuples only).
    @discardableResult
    package func psql(_ database: String, _ sql: String, separator: String = "|") throws -> String {
        let password = (try String(contentsOfFile: passwordFile, encoding: .utf8)).trimmingCharacters(in: .newlines)
        let r = try Shell.run("/usr/bin/psql", ["-h", "127.0.0.1", "-p", "\(port)", "-U", user, "-d", database, "-v", "ON_ERROR_STOP=1", "-At", "-F", separator, "-c", sql],
                              environment: ProcessInfo.processInfo.environment.merging(["PGPASSWORD": password]) { $1 })
        guard r.status == 0 else { throw TestFailure("psql failed: \(r.stderr)") }
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A new, empty database; returns its name.
    package func createDatabase(_ label: String = "t") throws -> String {
        let name = "\(label)_\(UUID().uuidString.prefix(8).lowercased())"
        try psql("postgres", "CREATE DATABASE \(name)")
        return name
    }

    package func url(_ database: String) -> String { "postgresql://\(user)@127.0.0.1:\(port)/\(database)" }

    /// The `[manifest]` table for `database` (TLS off: the test server has no certificate).
    package func manifestTable(_ database: String, tls: String = "disable") -> String {
        """
        [manifest]
        url = "\(url(database))"
        password_file = "\(passwordFile)"
        tls = "\(tls)"
        """
    }
}
