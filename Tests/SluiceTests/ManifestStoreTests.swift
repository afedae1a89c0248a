import Foundation
import SluiceConfig
@testable import SluiceManifest
import SluiceSupport
import SluiceTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The server a manifest test runs against: every test here runs on both.
enum ManifestBackend: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case sqlite
    case postgres

    var testDescription: String { rawValue }
}

/// A fresh, empty manifest on `backend`: a SQLite file in a temporary folder, or a new database
/// on the tests' own PostgreSQL server (password login over TCP, as an agent makes it).
struct ManifestFixture {
    let manifest: Manifest
    let dir: TempDir
    let location: ManifestLocation
    /// The PostgreSQL database's name (postgres only).
    let database: String?

    init(_ backend: ManifestBackend, label: String = "m") throws {
        dir = TempDir("manifest-\(backend.rawValue)")
        switch backend {
        case .sqlite:
            location = .sqlite(path: dir.sub("manifest.sqlite"))
            database = nil
        case .postgres:
            let server = try PostgresServer.shared()
            let db = try server.createDatabase(label)
            database = db
            location = .postgres(PostgresLocation(host: "127.0.0.1", port: server.port, user: server.user, database: db,
                                                  passwordFile: server.passwordFile, tls: .disable))
        }
        manifest = try Manifest(location)
    }

    func reopen() throws -> Manifest { try Manifest(location) }
}

private func newVersion(_ path: String, _ version: Int, sha: String, size: Int64 = 10, mtime: Int64 = 1_700_000_000_000_000_000, fileID: Int64? = nil,
                        bytes: [UInt8]? = nil, source: String = "drop") -> ManifestEntry {
    .version(NewVersion(client: "acme", source: source, path: path, pathBytes: bytes ?? Array(path.utf8), version: version, sha256: sha, size: size,
                        mtimeNs: mtime, lakePath: "raw/acme/\(source)/\(path).v\(version)", fileID: fileID))
}

@Suite(.serialized) struct ManifestStoreTests {
    @Test(arguments: ManifestBackend.allCases) func versionsSightingsAndRunsReadBackTheSame(_ backend: ManifestBackend) throws {
        let f = try ManifestFixture(backend)
        let m = f.manifest
        let run = try m.startRun(client: "acme", source: "drop", trigger: "pull")
        let latin1: [UInt8] = [0x6C, 0x61, 0x74, 0x69, 0x6E, 0xE9, 0x2E, 0x63, 0x73, 0x76]
        var counts = RunCounts()
        counts.new = 3
        counts.bytes = 30
        let ids = try m.commit([
            newVersion("orders.csv", 1, sha: "a1"),
            newVersion("ünïcödé €.csv", 1, sha: "b1"),
            newVersion("latin.csv", 1, sha: "c1", bytes: latin1),
        ], runID: run, counts: counts)
        #expect(ids.count == 3 && Set(ids).count == 3)
        var known = try m.knownFiles(client: "acme", source: "drop")
        #expect(known.count == 3)
        #expect(known[latin1]?.sha256 == "c1", "non-UTF-8 path bytes are a key, byte for byte")
        let orders = try #require(known[Array("orders.csv".utf8)])
        #expect(orders.version == 1 && orders.lastSize == 10 && orders.lakePath == "raw/acme/drop/orders.csv.v1")

        // A second version of orders.csv, and a sighting of the unicode file with a new mtime.
        let unicode = try #require(known[Array("ünïcödé €.csv".utf8)])
        var c2 = RunCounts()
        c2.new = 1
        c2.unchanged = 1
        let ids2 = try m.commit([
            newVersion("orders.csv", 2, sha: "a2", size: 12, fileID: orders.fileID),
            .sighting(versionID: unicode.versionID, size: 10, mtimeNs: 1_800_000_000_000_000_000, etag: "\"etag-1\""),
        ], runID: run, counts: c2)
        #expect(ids2[1] == unicode.versionID)
        try m.finishRun(id: run, status: .ok, error: nil)
        known = try m.knownFiles(client: "acme", source: "drop")
        #expect(known[Array("orders.csv".utf8)]?.version == 2)
        #expect(known[Array("orders.csv".utf8)]?.lastSize == 12)
        #expect(known[Array("ünïcödé €.csv".utf8)]?.lastMtimeNs == 1_800_000_000_000_000_000)
        #expect(known[Array("ünïcödé €.csv".utf8)]?.lastETag == "\"etag-1\"")
        let one = try m.knownFiles(client: "acme", source: "drop", paths: [Array("orders.csv".utf8)])
        #expect(one.count == 1)

        let history = try m.history(client: "acme", path: nil)
        #expect(history.count == 4)
        #expect(try m.history(client: "acme", path: "orders.csv").map(\.version) == [2, 1])
        #expect(try m.version(atLakePath: "raw/acme/drop/orders.csv.v2")?.sha256 == "a2")
        #expect(try m.version(client: "acme", source: "drop", path: "orders.csv", version: nil)?.version == 2)
        #expect(try m.version(client: "acme", source: "drop", path: "orders.csv", version: 1)?.sha256 == "a1")
        #expect(try m.versions(client: "acme", sources: ["drop"], prefix: "ü").count == 1)
        func lakePaths(_ prefix: String, pageSize: Int = 8192) throws -> [String] {
            var out: [String] = []
            try m.eachLakeEntryPage(under: prefix, pageSize: pageSize) { out += $0.map(\.lakePath) }
            return out
        }
        #expect(try lakePaths("raw/acme/").count == 4)
        #expect(try lakePaths("raw/acme/drop/").count == 4)
        #expect(try lakePaths("raw/acm/").isEmpty)
        // In byte order ("ü" after every ASCII letter), whatever the page size.
        let all = try lakePaths("raw/")
        #expect(all.count == 4 && all == all.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }, "\(all)")
        #expect(try lakePaths("raw/", pageSize: 1) == all)
        #expect(try lakePaths("raw/", pageSize: 3) == all)
        // A stretch of byte order: from one path (included) up to another (left out), as the
        // audit's pieces read it, on every page size.
        for pageSize in [1, 2, 8192] {
            var stretch: [String] = []
            try m.eachLakeEntryPage(from: all[1], to: all[3], pageSize: pageSize) { stretch += $0.map(\.lakePath) }
            #expect(stretch == [all[1], all[2]], "page size \(pageSize)")
        }
        #expect(try m.newestVersionID() == ids2[0])

        let summary = try m.sourceSummary(client: "acme", source: "drop")
        #expect(summary.files == 3 && summary.versions == 4 && summary.bytes == 42)
        #expect(summary.lastRunStatus == "ok" && summary.lastSuccess != nil && summary.lastError == nil)
        #expect(try m.versionCount(client: "acme") == 4)
        #expect(try m.recentVersions(client: "acme", limit: 2).map(\.version) == [2, 1])
        #expect(try m.versionRow(id: ids[0])?.client == "acme")
        let daily = try m.dailyIngest(since: "2000-01-01")
        #expect(daily.count == 1 && daily[0].files == 4 && daily[0].bytes == 42)
        #expect(try m.ingestedSince("2000-01-01", client: "acme")["drop"]?.files == 4)
        #expect(try m.arrivals(client: "acme", since: "2000-01-01").count == 4)

        // A run left running by a process that is gone is marked interrupted.
        let left = try m.startRun(client: "acme", source: "drop", trigger: "pull")
        _ = left
        try m.checkWritable()
        // The same rows through a second connection (another agent's view).
        let other = try f.reopen()
        #expect(try other.history(client: "acme", path: nil) == history)
    }

    @Test(arguments: ManifestBackend.allCases) func transformsSchemasAndHeldUnits(_ backend: ManifestBackend) throws {
        let f = try ManifestFixture(backend)
        let m = f.manifest
        let run = try m.startRun(client: "acme", source: "drop", trigger: "pull")
        let ids = try m.commit([newVersion("a.csv", 1, sha: "a"), newVersion("b.zip", 1, sha: "b"), newVersion("c.csv", 1, sha: "c")],
                               runID: run, counts: RunCounts())
        #expect(try m.transformCandidates(client: "acme", selection: .pending).count == 3)
        #expect(try m.transformCandidates(client: "acme", selection: .pendingAfter(ids[0])).map(\.versionID) == [ids[1], ids[2]])
        let schema = (json: #"{"columns":["id"]}"#, sha256: "s1")
        try m.recordTransform(versionID: ids[0], .init(dataset: "orders", mappingSHA256: "m", schemaSHA256: "o1", status: "ok", rowsWritten: 5, rowsRejected: 1,
                                                        outputPath: "processed/acme/orders/a.parquet", rejectsPath: "processed/acme/orders/a.rejects.csv",
                                                        error: nil, sourceSchema: schema))
        try m.recordTransform(versionID: ids[1], .init(dataset: nil, mappingSHA256: "m", schemaSHA256: nil, status: "failed", rowsWritten: 0, rowsRejected: 0,
                                                        outputPath: nil, rejectsPath: nil, error: "one member failed", members: (ok: 1, failed: 1, unmapped: 0)),
                              members: [
                                  .init(dataset: "orders", mappingSHA256: "m", schemaSHA256: "o1", status: "ok", rowsWritten: 2, rowsRejected: 0,
                                        outputPath: "processed/acme/orders/b1.parquet", rejectsPath: nil, error: nil, member: "x.csv", sourceSchema: schema),
                                  .init(dataset: "orders", mappingSHA256: "m", schemaSHA256: nil, status: "failed", rowsWritten: 0, rowsRejected: 0,
                                        outputPath: nil, rejectsPath: nil, error: "bad", member: "y.csv"),
                              ])
        try m.recordTransform(versionID: ids[2], .init(dataset: "orders", mappingSHA256: "m", schemaSHA256: nil, status: "held", rowsWritten: 0, rowsRejected: 0,
                                                        outputPath: nil, rejectsPath: nil, error: "a column was removed",
                                                        sourceSchema: (json: #"{"columns":[]}"#, sha256: "s2"), schemaDrift: #"{"removed":["id"]}"#))
        #expect(try m.transformCandidates(client: "acme", selection: .pending).isEmpty)
        #expect(try m.transformCandidates(client: "acme", selection: .failed).map(\.versionID) == [ids[1]])
        #expect(try m.transformCandidates(client: "acme", selection: .held).map(\.versionID) == [ids[2]])
        #expect(try m.transformCandidates(client: "acme", selection: .rerunVersion(ids[2])).count == 1)
        #expect(try m.transformCandidates(client: "acme", selection: .rerunVersion(ids[0])).isEmpty)
        #expect(try m.transformCandidates(client: "acme", selection: .all).count == 3)
        #expect(try m.latestSchema(client: "acme", dataset: "orders") == schema.json)
        let occurrences = try m.schemaOccurrences(client: "acme", dataset: "orders")
        #expect(occurrences.map(\.sha256) == ["s1", "s1", "s2"])
        #expect(occurrences[1].member == "x.csv" && occurrences[2].drift?.contains("removed") == true)
        #expect(try m.schemaOccurrences(client: "acme", dataset: nil).count == 3)
        let outputs = try m.outputSchemas(client: "acme")
        #expect(outputs.map(\.dataset) == ["orders"] && outputs.map(\.schemaSHA256) == ["o1"] && outputs.map(\.outputs) == [2], "a.csv and the archive's ok member")
        #expect(try m.heldCounts() == ["acme": 1])
        let held = try m.heldTransforms(client: "acme", limit: 10)
        #expect(held.count == 1 && held[0].isLatest && held[0].schemaDrift != nil)
        let recent = try m.recentTransforms(client: "acme", limit: 10)
        #expect(recent.count == 5)
        #expect(try m.latestTransform(versionID: ids[1])?.status == "failed")
        #expect(try m.transformRow(id: recent[0].id)?.versionID == ids[2])
        let summary = try m.sourceSummary(client: "acme", source: "drop")
        #expect(summary.failedTransforms == 1)

        // Rejects written beside their output move into `_rejects`.
        #expect(try m.rejectsInsideDatasets() == ["processed/acme/orders/a.rejects.csv"])
        try m.moveRejects(from: "processed/acme/orders/a.rejects.csv", to: "processed/acme/orders/_rejects/a.rejects.csv")
        #expect(try m.rejectsInsideDatasets().isEmpty)
        #expect(try m.lakeMigrationDone("rejects") == false)
        try m.markLakeMigrationDone("rejects")
        try m.markLakeMigrationDone("rejects")
        #expect(try m.lakeMigrationDone("rejects"))
        try m.recordMoveTarget(client: "acme", source: "drop", target: "/done")
        try m.recordMoveTarget(client: "acme", source: "drop", target: "/done")
        try m.recordMoveTarget(client: "acme", source: "drop", target: "/archive")
        #expect(try m.moveTargets(client: "acme", source: "drop") == ["/archive", "/done"])
    }

    @Test(arguments: ManifestBackend.allCases) func tokensAndUploads(_ backend: ManifestBackend) throws {
        let f = try ManifestFixture(backend)
        let m = f.manifest
        let token = UploadToken.generate()
        let id = try m.createToken(client: "acme", source: nil, sha256: UploadToken.sha256(token), expiresAt: nil, note: "portal")
        #expect(try m.tokens(client: "acme").map(\.id) == [id])
        #expect(try m.tokens(client: nil).count == 1)
        let found = try #require(try m.authenticate(token: token))
        #expect(found.id == id && found.note == "portal" && found.source == nil)
        #expect(try m.authenticate(token: token + "x") == nil)
        try m.recordUse(of: found)
        #expect(try m.tokens(client: "acme")[0].last_used_at != nil)
        let uploadID = try m.recordUpload(UploadRecord(tokenID: id, client: "acme", source: "portal", path: "a.csv", remoteAddress: "127.0.0.1", size: 5,
                                                       sha256: "x", status: "stored", httpStatus: 201, version: 1, lakePath: "raw/acme/portal/a.csv",
                                                       error: nil, startedAt: Timestamp.now(), finishedAt: Timestamp.now()))
        #expect(uploadID > 0)
        #expect(try m.revokeToken(id: id)?.revoked_at != nil)
        #expect(try m.authenticate(token: token) == nil)
        #expect(try m.revokeToken(id: id + 100) == nil)
    }

    @Test(arguments: ManifestBackend.allCases) func alertsAreQueuedOnceRemindedSentAndPruned(_ backend: ManifestBackend) throws {
        let f = try ManifestFixture(backend)
        let m = f.manifest
        m.alertRouting = AlertRouting(repeatNanoseconds: 3_600_000_000_000) { _, _ in ["ops"] }
        let e = AlertEvent(event: "source_failed", severity: "error", client: "acme", source: "drop", message: "down", id: "acme/drop/failed")
        try m.raiseAlerts([e])
        try m.raiseAlerts([e])  // still open: no second alert within the repeat interval
        #expect(try m.dueAlerts().count == 1)
        try m.raiseAlerts([e.resolution("up again")])
        try m.raiseAlerts([e.resolution("up again")])  // not open any more: nothing
        let due = try m.dueAlerts()
        #expect(due.map(\.resolved) == [false, true])
        try m.markAlertFailed(due[0].id, error: "refused", nextAttemptAt: nowNanoseconds() + 3_600_000_000_000)
        try m.markAlertSent(due[1].id)
        #expect(try m.dueAlerts().isEmpty)
        #expect(try m.nextAlertDue() != nil)
        #expect(try m.recentAlerts(pendingOnly: true).map(\.attempts) == [1])
        #expect(try m.recentAlerts().count == 2)
        // Raised again and never resolved: reminded after the repeat interval.
        try m.raiseAlerts([e])
        #expect(try m.queueReminders(now: nowNanoseconds() + 2 * 3_600_000_000_000) == 1)
        #expect(try m.pruneSentAlerts(before: Timestamp.iso8601(nanoseconds: nowNanoseconds() + 1_000_000_000)) == 1)
        // Expectations: the first evaluation is recorded once.
        #expect(try m.expectationFirstSeen(client: "acme", key: "daily", record: nil) == nil)
        #expect(try m.expectationFirstSeen(client: "acme", key: "daily", record: 42) == 42)
        #expect(try m.expectationFirstSeen(client: "acme", key: "daily", record: 99) == 42)
    }

    /// Agents starting together against a new manifest migrate it once: the migration runs
    /// under a lock (a sidecar flock on SQLite, an advisory lock on PostgreSQL).
    @Test(arguments: ManifestBackend.allCases) func manyOpenersMigrateOnce(_ backend: ManifestBackend) throws {
        let f = try ManifestFixture(backend)
        let failures = SlotBox()
        DispatchQueue.concurrentPerform(iterations: 6) { _ in
            do {
                _ = try f.reopen()
            } catch {
                failures.append(Shell.Result(status: 1, stdout: "", stderr: "\(error)"))
            }
        }
        #expect(failures.all.isEmpty, "\(failures.all.compactMap { $0?.stderr })")
        let sql = backend == .sqlite ? "SELECT group_concat(identifier) FROM grdb_migrations"
            : "SELECT string_agg(identifier, ',' ORDER BY identifier) FROM grdb_migrations"
        let applied: String
        if let db = f.database {
            applied = try PostgresServer.shared().psql(db, sql)
        } else {
            applied = try Shell.run("/usr/bin/sqlite3", [f.dir.sub("manifest.sqlite"), sql]).stdout
        }
        #expect(applied.split(separator: ",").count == Schema.migrations.count, "each migration applied once: \(applied)")
    }

    /// A wrong password, a server that is not there, and a password in the URL each get a
    /// message that says what to do.
    @Test func postgresConnectionProblemsAreExplained() throws {
        let server = try PostgresServer.shared()
        let dir = TempDir("pg-errors")
        let db = try server.createDatabase("err")
        let wrong = dir.write("wrong.pass", "not-the-password\n")
        func open(_ l: PostgresLocation) -> String {
            do {
                _ = try Manifest(.postgres(l))
                return ""
            } catch {
                return error.message
            }
        }
        let base = PostgresLocation(host: "127.0.0.1", port: server.port, user: server.user, database: db, passwordFile: wrong, tls: .disable)
        let badPassword = open(base)
        #expect(badPassword.contains("cannot connect to postgresql://sluice@127.0.0.1:\(server.port)/\(db)"), "\(badPassword)")
        #expect(badPassword.contains("password authentication failed"), "\(badPassword)")
        #expect(!badPassword.contains("not-the-password"))
        var missing = base
        missing.passwordFile = dir.sub("none.pass")
        #expect(open(missing).contains("cannot read the password_file"))
        var closed = base
        closed.port = try SSHServer.freePort()
        closed.passwordFile = server.passwordFile
        #expect(open(closed).contains("check that the server is up"), "\(open(closed))")
        var tls = base
        tls.passwordFile = server.passwordFile
        tls.tls = .require
        let tlsMessage = open(tls)
        #expect(tlsMessage.contains("cannot connect"), "\(tlsMessage)")
        if case .failure(let e) = PostgresLocation.parse(url: "postgresql://sluice:secret@db/x") {
            #expect(e.message.contains("password_file") && !e.message.contains("secret"))
        } else {
            Issue.record("a password in the URL was taken")
        }
    }
}

@Suite struct ManifestConfigTests {
    static let base = "[agent]\nstate_dir = \"/var/lib/sluice\"\nlake_dir = \"/srv/lake\"\n"

    func parse(_ manifest: String) throws -> AgentConfig {
        try AgentConfig.parse(text: Self.base + manifest, file: "/etc/sluice/agent.conf")
    }

    func problem(_ manifest: String) -> String {
        do {
            _ = try parse(manifest)
            return ""
        } catch {
            return "\(error)"
        }
    }

    @Test func manifestTableKeysAndDefaults() throws {
        #expect(try parse("").manifest == .sqlite(path: "/var/lib/sluice/manifest.sqlite"))
        let c = try parse("""
            [manifest]
            url = "postgresql://sluice@db.internal/ingest"
            password_file = "secrets/pg.pass"
            """)
        #expect(c.manifest == .postgres(PostgresLocation(host: "db.internal", port: 5432, user: "sluice", database: "ingest",
                                                         passwordFile: "/etc/sluice/secrets/pg.pass", tls: .prefer)))
        let full = try parse("""
            [manifest]
            url = "postgres://ops%40acme@10.0.0.5:6432/lake"
            tls = "verify-full"
            ca_file = "/etc/ssl/db-ca.pem"
            """)
        #expect(full.manifest == .postgres(PostgresLocation(host: "10.0.0.5", port: 6432, user: "ops@acme", database: "lake", passwordFile: nil,
                                                            tls: .verifyFull, caFile: "/etc/ssl/db-ca.pem")))
    }

    /// `[agent] name` and `lease_ttl`: what agents sharing a manifest go by.
    @Test func agentNameAndLeaseTTL() throws {
        let defaults = try parse("")
        #expect(defaults.name == AgentConfig.defaultName && !defaults.name.isEmpty)
        #expect(defaults.leaseTTLNanoseconds == 30_000_000_000)
        let c = try AgentConfig.parse(text: "[agent]\nstate_dir = \"s\"\nlake_dir = \"l\"\nname = \"ingest-2.eu\"\nlease_ttl = \"1m\"\n", file: "/etc/sluice/agent.conf")
        #expect(c.name == "ingest-2.eu" && c.leaseTTLNanoseconds == 60_000_000_000)
        for (line, key, hint) in [("name = \"two words\"", "agent.name", "letters, digits"), ("name = \"\"", "agent.name", "1 to 64"),
                                  ("lease_ttl = \"1s\"", "agent.lease_ttl", "at least \"3s\""), ("lease_ttl = \"soon\"", "agent.lease_ttl", "bad duration")] {
            var message = ""
            do {
                _ = try AgentConfig.parse(text: "[agent]\nstate_dir = \"s\"\nlake_dir = \"l\"\n\(line)\n", file: "/etc/sluice/agent.conf")
            } catch {
                message = "\(error)"
            }
            #expect(message.contains(key) && message.contains(hint), "\(line): \(message)")
        }
    }

    @Test(arguments: [
        ("url = \"postgresql://sluice:hunter2@db/x\"", "manifest.url", "password_file"),
        ("url = \"mysql://sluice@db/x\"", "manifest.url", "postgresql://USER@HOST:PORT/DATABASE"),
        ("url = \"postgresql://db/x\"", "manifest.url", "no user"),
        ("url = \"postgresql://sluice@db\"", "manifest.url", "no database"),
        ("url = \"postgresql://sluice@db/x?sslmode=require\"", "manifest.url", "tls"),
        ("url = \"postgresql://sluice@db/x\"\ntls = \"always\"", "manifest.tls", "verify-full"),
        ("url = \"postgresql://sluice@db/x\"\nca_file = \"ca.pem\"", "manifest.ca_file", "verify-full"),
        ("url = \"postgresql://sluice@db/x\"\nuser = \"x\"", "user", "manifest"),
        ("password_file = \"x\"", "manifest", "missing required key 'url'"),
    ])
    func aBadManifestTableIsNamed(_ lines: String, _ key: String, _ hint: String) {
        let message = problem("[manifest]\n" + lines + "\n")
        #expect(message.contains(key) && message.contains(hint), "\(message)")
        #expect(!message.contains("hunter2"), "the password is never echoed")
    }
}

/// `sluice manifest copy`: a host's manifest moves into an empty PostgreSQL database, verified,
/// and the agent goes on there as if nothing happened.
@Suite struct ManifestCopyTests {
    /// JSON with sorted keys: two parses of the same output compare equal.
    func canonical(_ object: Any) throws -> String {
        String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
    }

    @Test func aManifestMovesToPostgresAndTheAgentGoesOnThere() throws {
        let server = try PostgresServer.shared()
        let dir = TempDir("copy")
        dir.config()
        dir.write("mappings/acme.toml", TransformTests.mapping)
        dir.write("drop/orders_2026-10-01.csv", "Order No;Date;Customer;Total;Status;Note\n1;01.10.2026 10:00;X;1,00;A;\n")
        dir.write("drop/ünï €.csv", "a,b\n")
        dir.write("drop/sub/b.csv", "Order No;Date;Customer;Total;Status;Note\nbad;01.10.2026 10:00;X;1,00;A;\n")
        let conf = dir.sub("agent.conf")
        #expect(try SluiceBinary.run(["pull", "acme"], config: conf).status != 2)
        dir.write("drop/ünï €.csv", "a,b\n1,2\n")
        #expect(try SluiceBinary.run(["pull", "acme"], config: conf).status != 2)
        let (_, history) = try SluiceBinary.json(["history", "acme"], config: conf)
        let (_, statusBefore) = try SluiceBinary.json(["status", "acme"], config: conf)
        let database = try server.createDatabase("copy")

        let (copy, out) = try SluiceBinary.json(["manifest", "copy", "--to", server.url(database), "--password-file", server.passwordFile, "--tls", "disable"],
                                                config: conf)
        #expect(copy.status == 0, "\(copy.stderr)")
        let tables = (out as? [String: Any])?["tables"] as? [[String: Any]] ?? []
        #expect((out as? [String: Any])?["verified"] as? Bool == true)
        #expect(tables.first { $0["table"] as? String == "version" }?["rows"] as? Int == 4, "\(tables)")
        #expect(tables.first { $0["table"] as? String == "transform" }.map { ($0["rows"] as? Int ?? 0) >= 3 } == true, "\(tables)")
        #expect(try server.psql(database, "SELECT count(*) FROM version") == "4")

        // A second copy into the same database is refused: it is not empty.
        let again = try SluiceBinary.run(["manifest", "copy", "--to", server.url(database), "--password-file", server.passwordFile, "--tls", "disable"],
                                         config: conf)
        #expect(again.status == 2 && again.stderr.contains("not empty"), "\(again.stderr)")
        let badURL = try SluiceBinary.run(["manifest", "copy", "--to", "postgresql://u:pw@h/x"], config: conf)
        #expect(badURL.status == 2 && badURL.stderr.contains("password_file"), "\(badURL.stderr)")

        // The agent on the copy: the same history and status, and new versions go on from there.
        let text = try String(contentsOfFile: conf, encoding: .utf8)
        let moved = text.components(separatedBy: "\n[manifest]")[0] + "\n" + server.manifestTable(database)
        dir.write("agent.conf", moved)
        let (_, historyAfter) = try SluiceBinary.json(["history", "acme"], config: conf)
        #expect(try canonical(historyAfter) == canonical(history))
        let (_, statusAfter) = try SluiceBinary.json(["status", "acme"], config: conf)
        #expect(try canonical(statusAfter) == canonical(statusBefore))
        dir.write("drop/new.csv", "x\n")
        #expect(try SluiceBinary.run(["pull", "acme", "--no-transform"], config: conf).status == 0)
        #expect(try server.psql(database, "SELECT count(*), count(DISTINCT id) FROM version") == "5|5")
        let audit = try SluiceBinary.run(["audit", "acme"], config: conf)
        #expect(audit.status == 0, "\(audit.stdout) \(audit.stderr)")
    }
}

/// The few rewrites between the two servers' SQL.
@Suite struct SQLTextTests {
    @Test func placeholdersAreNumberedOutsideQuotesOnly() {
        #expect(SQLText.numberedPlaceholders("SELECT * FROM t WHERE a = ? AND b = '?' AND \"c?\" = ? LIMIT ?")
            == "SELECT * FROM t WHERE a = $1 AND b = '?' AND \"c?\" = $2 LIMIT $3")
        #expect(SQLText.numberedPlaceholders("SELECT 1") == "SELECT 1")
        #expect(SQLText.numberedPlaceholders("VALUES ('it''s ?', ?)") == "VALUES ('it''s ?', $1)")
    }

    @Test func scriptsSplitAtSemicolonsOutsideQuotes() {
        #expect(SQLText.statements("CREATE TABLE a (x TEXT DEFAULT ';');\n  CREATE INDEX i ON a(x);\n") == ["CREATE TABLE a (x TEXT DEFAULT ';')", "CREATE INDEX i ON a(x)"])
        #expect(SQLText.statements(" ; ").isEmpty)
    }

    @Test func migrationsUsePostgresTypes() {
        let ddl = SQLText.postgresDDL("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER NOT NULL, b BLOB, r REAL, k INTEGER PRIMARY KEY, INTEGERS TEXT)")
        #expect(ddl == "CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, n BIGINT NOT NULL, b BYTEA, r DOUBLE PRECISION, "
            + "k BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, INTEGERS TEXT)")
    }
}
