import Foundation
import Logging
import SluiceAgent
import SluiceLake
import SluiceSupport
import SluiceIngest
import SluiceConfig
import SluiceSources
import SluiceTransform
import SluiceFormats
#if canImport(Glibc)
import Glibc
#endif

/// A temp folder that removes itself.
package final class TempDir: @unchecked Sendable {
    package let path: String

    package init(_ label: String = "t") {
        let base = ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp"
        var template = Array("\(base)/sluice-test-\(label)-XXXXXX".utf8CString)
        let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        path = String(cString: p!)
    }

    deinit {
        // Lake files are 0440 and may sit in read-only folders: make everything writable first.
        _ = try? Shell.run("/bin/chmod", ["-R", "u+rwX", path])
        try? FileManager.default.removeItem(atPath: path)
    }

    package func sub(_ name: String) -> String { "\(path)/\(name)" }

    /// Writes a text file. An agent's config (`[agent]` in a `.conf`) gets a `[manifest]` table
    /// naming a database of its own when the tests run on PostgreSQL (`SLUICE_TEST_MANIFEST`).
    @discardableResult
    package func write(_ relative: String, _ content: String) -> String {
        var text = content
        if TestManifest.onPostgres, relative.hasSuffix(".conf"), text.contains("[agent]"), !text.contains("[manifest]") {
            text += "\n" + TestManifest.table(for: self)
        }
        return write(relative, Data(text.utf8))
    }

    /// The PostgreSQL database of this folder's agents (PostgreSQL runs only).
    package var manifestDatabase: String? {
        get { lock.withLock { database } }
        set { lock.withLock { database = newValue } }
    }
    private let lock = NSLock()
    private var database: String?

    @discardableResult
    package func write(_ relative: String, _ data: Data) -> String {
        let full = sub(relative)
        try! FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        precondition(FileManager.default.createFile(atPath: full, contents: data), "cannot write \(full)")
        return full
    }

    /// Writes `agent.conf`: an [agent] table with `state` and `lake` beside it (plus `agent`
    /// lines), followed by `tables` as given.
    @discardableResult
    package func config(agent: String = "", tables: String) -> String {
        write("agent.conf", "[agent]\nstate_dir = \"state\"\nlake_dir = \"lake\"\n\(agent)\n\(tables)\n")
    }

    /// Writes `agent.conf` with one folder source `drop` at `drop/` (min_age 0s unless given).
    @discardableResult
    package func config(client: String = "acme", extra: String = "", sourceExtra: String = "min_age = \"0s\"") -> String {
        write("agent.conf", """
            [agent]
            state_dir = "state"
            lake_dir = "lake"

            [clients.\(client).sources.drop]
            type = "folder"
            path = "drop"
            \(sourceExtra)
            \(extra)
            """)
    }
}

/// The bundled example's three drop-folder clients (examples/agent.conf), their folders at
/// `drop/<client>` beside the config.
package let exampleClientTables = """
    [clients.acme.sources.drop]
    type = "folder"
    path = "drop/acme"
    min_age = "0s"

    [clients.initech.sources.drop]
    type = "folder"
    path = "drop/initech"
    include = ["**/*.json", "**/*.jsonl"]
    min_age = "0s"

    [clients.hooli.sources.drop]
    type = "folder"
    path = "drop/hooli"
    min_age = "0s"
    """

/// Which manifest the tests' agents use: the SQLite file in their state folder, or, with
/// `SLUICE_TEST_MANIFEST=postgres`, a database of their own on the tests' PostgreSQL server.
package enum TestManifest {
    package static var onPostgres: Bool { ProcessInfo.processInfo.environment["SLUICE_TEST_MANIFEST"] == "postgres" }

    /// The `[manifest]` table for the agents of `dir` (its database made on first use).
    package static func table(for dir: TempDir) -> String {
        do {
            let server = try PostgresServer.shared()
            if dir.manifestDatabase == nil { dir.manifestDatabase = try server.createDatabase("agent") }
            return server.manifestTable(dir.manifestDatabase!)
        } catch {
            fatalError("SLUICE_TEST_MANIFEST=postgres, but the PostgreSQL server did not start: \(error)")
        }
    }

    /// Runs SQL against the manifest of the agents of `dir` (`state/manifest.sqlite` there, or
    /// their PostgreSQL database), printed as sqlite3 prints it: a row a line, columns joined by
    /// `separator`, NULL as nothing.
    package static func query(_ dir: TempDir, _ sql: String, separator: String = "|") throws -> Shell.Result {
        if onPostgres, let db = dir.manifestDatabase {
            let out = try PostgresServer.shared().psql(db, sql, separator: separator)
            return Shell.Result(status: 0, stdout: out.isEmpty ? "" : out + "\n", stderr: "")
        }
        return try Shell.run("/usr/bin/sqlite3", ["-cmd", ".timeout 5000", "-separator", separator, dir.sub("state/manifest.sqlite"), sql])
    }
}

package enum Shell {
    package struct Result {
        package var status: Int32
        package var stdout: String
        package var stderr: String
        /// The child's peak resident memory (wait4's ru_maxrss), in KiB.
        package var maxRSSKiB: Int = 0

        package init(status: Int32, stdout: String, stderr: String) {
            self.status = status
            self.stdout = stdout
            self.stderr = stderr
        }
    }

    /// Runs a program that must succeed (a fixture-making tool); a failure throws with its stderr.
    package static func check(_ executable: String, _ args: [String]) throws {
        let r = try run(executable, args)
        guard r.status == 0 else { throw Failure(description: "\(executable) \(args.joined(separator: " ")) exited \(r.status): \(r.stderr)") }
    }

    package struct Failure: Error, CustomStringConvertible {
        package let description: String
        package init(description: String) { self.description = description }
    }

    /// Runs a program to completion. Output goes to temp files, not pipes, so a child that
    /// writes a lot to both streams can never block on a full pipe. Spawned with posix_spawn
    /// and reaped with waitpid: Foundation's `Process.waitUntilExit` can miss a child's exit
    /// and wait forever (seen in a TempDir's clean-up).
    package static func run(_ executable: String, _ args: [String], environment: [String: String]? = nil) throws -> Result {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-shell-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let outPath = dir.appendingPathComponent("out").path
        let errPath = dir.appendingPathComponent("err").path
        let pid = try spawnProcess([executable] + args, stdout: .truncate(outPath), stderr: .truncate(errPath),
                                   environment: environment ?? ProcessInfo.processInfo.environment)
        var status: Int32 = 0
        var usage = rusage()
        while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
        // Exited: its exit code; killed: the signal's number (as Process reports it).
        let code = status & 0x7f == 0 ? (status >> 8) & 0xff : status & 0x7f
        var result = Result(status: code,
                            stdout: String(decoding: (try? Data(contentsOf: URL(fileURLWithPath: outPath))) ?? Data(), as: UTF8.self),
                            stderr: String(decoding: (try? Data(contentsOf: URL(fileURLWithPath: errPath))) ?? Data(), as: UTF8.self))
        result.maxRSSKiB = usage.ru_maxrss
        return result
    }
}

/// The `sluice` executable built next to the test bundle.
package enum SluiceBinary {
    package static var path: String {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("sluice").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        let fallback = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent(".build/debug/sluice").path
        return fallback
    }

    /// Runs `sluice ARGS --config <dir>/agent.conf`.
    package static func run(_ args: [String], config: String, prefix: [String] = []) throws -> Shell.Result {
        if prefix.isEmpty {
            return try Shell.run(path, args + ["--config", config])
        }
        return try Shell.run(prefix[0], Array(prefix.dropFirst()) + [path] + args + ["--config", config])
    }

    package static func json(_ args: [String], config: String) throws -> (Shell.Result, Any) {
        let r = try run(args + ["--json"], config: config)
        let obj = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8))
        return (r, obj)
    }
}

package let testLogger: Logger = {
    var l = Logger(label: "sluice-test")
    l.logLevel = .critical
    return l
}()

package func loadAgent(_ dir: TempDir) throws -> Agent {
    Agent(config: try AgentConfig.load(path: dir.sub("agent.conf")), logger: testLogger)
}

/// SHA-256 of a file, with openssl-independent code (swift-crypto via the lake's hasher).
/// How many threads this process has now.
package func liveThreadCount() -> Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count) ?? 0 }

package func sha256(ofFile path: String) throws -> String {
    let b = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 16)
    defer { b.deallocate() }
    return try FileDigest.sha256(path: path, buffer: b).sha256
}

/// Sets a file's mtime `seconds` into the past.
package func age(_ path: String, seconds: Int) {
    var times = [timespec(tv_sec: time(nil) - seconds, tv_nsec: 0), timespec(tv_sec: time(nil) - seconds, tv_nsec: 0)]
    _ = utimensat(AT_FDCWD, path, &times, 0)
}

package var isRoot: Bool { geteuid() == 0 }

/// Files in `dir`'s lake that are neither published versions nor processed output: staging
/// files and temp files a failed copy would have left behind.
package func lakeLeftovers(_ dir: TempDir) -> [String] {
    let all = (FileManager.default.enumerator(atPath: dir.sub("lake"))?.allObjects as? [String]) ?? []
    return all.filter { p in
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: dir.sub("lake/\(p)"), isDirectory: &isDir) && !isDir.boolValue && !p.hasPrefix(".sluice/tmp/") && !p.hasPrefix("raw/") && !p.hasPrefix("processed/")
    } + all.filter { ($0 as NSString).lastPathComponent.hasPrefix(".%tmp-") }
}

/// Starts a server process (stdin /dev/null, stdout and stderr appended to `log`) and waits
/// until it accepts connections on loopback `port`. Spawned with posix_spawn and reaped by the
/// caller: Foundation's Process reaper can block in wait4() on a long-lived child.
package func spawnListener(_ words: [String], log: String, port: Int, name: String, seconds: Double = 5) throws -> pid_t {
    let pid = try spawnProcess(words, stdout: .append(log), stderr: .stdout)
    for _ in 0..<Int(seconds * 40) {
        if SSHServer.canConnect(port: port) { return pid }
        var status: Int32 = 0
        if waitpid(pid, &status, WNOHANG) == pid { break }
        usleep(25_000)
    }
    kill(pid, SIGKILL)
    var status: Int32 = 0
    _ = waitpid(pid, &status, 0)
    throw TestFailure("\(name) did not start: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
}

/// curl with a cookie jar kept between calls, as a browser keeps the console's session and
/// CSRF cookies: each call's HTTP status code and body.
package struct CookieCurl {
    package let jar: String

    package init(jar: String) { self.jar = jar }

    package func callAsFunction(_ args: [String]) throws -> (status: String, body: String) {
        let r = try Shell.run("/usr/bin/curl", ["-sS", "-b", jar, "-c", jar, "-w", "\n%{http_code}"] + args)
        let lines = r.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        return (String(lines.last ?? ""), lines.dropLast().joined(separator: "\n"))
    }
}
