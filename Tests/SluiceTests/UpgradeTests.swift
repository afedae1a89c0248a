import Foundation
@testable import SluiceManifest
import SluiceTestSupport
import Testing

/// Upgrades: a manifest made by each earlier schema version, with the rows Sluice wrote, is
/// opened by this build; a manifest from a newer Sluice is refused and left as it is.
@Suite struct UpgradeTests {
    static let clients = ["acme", "initech", "hooli"]
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The bundled example's clients, files and mappings in a folder of their own, with its
    /// manifest on SQLite whatever the test run uses (the files below are SQLite manifests).
    static func example(_ label: String) throws -> TempDir {
        let dir = TempDir(label)
        let text = "[agent]\nstate_dir = \"state\"\nlake_dir = \"lake\"\nmappings_dir = \"mappings\"\n\n" + exampleClientTables
        dir.write("agent.conf", Data(text.utf8))
        try Shell.check("/bin/cp", ["-R", repository.appendingPathComponent("examples/drop").path, dir.sub("drop")])
        try Shell.check("/bin/cp", ["-R", repository.appendingPathComponent("examples/mappings").path, dir.sub("mappings")])
        return dir
    }

    /// The example pulled twice (the second time with a changed file, so that it has two
    /// versions), by this build: the rows every step's manifest is filled with.
    static let current: TempDir = {
        let dir = try! example("upgrade-base")
        for client in clients {
            let r = try! SluiceBinary.run(["pull", client], config: dir.sub("agent.conf"))
            precondition(r.status == 0, "pull \(client): \(r.stderr)")
        }
        let orders = dir.sub("drop/acme/orders_2026-10-01.csv")
        let handle = FileHandle(forWritingAtPath: orders)!
        handle.seekToEndOfFile()
        handle.write(Data("9999,2026-10-01T23:59:00Z,ZZ-1,1,0.50\n".utf8))
        try! handle.close()
        let r = try! SluiceBinary.run(["pull", "acme"], config: dir.sub("agent.conf"))
        precondition(r.status == 0, "pull acme again: \(r.stderr)")
        return dir
    }()

    static func sqlite(_ db: String, _ sql: String) throws -> String {
        let r = try Shell.run("/usr/bin/sqlite3", ["-cmd", ".timeout 5000", db, sql])
        guard r.status == 0 else { throw Shell.Failure(description: "sqlite3 \(db) \(sql): \(r.stderr)") }
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A manifest as Sluice left it after the first `steps` migrations: the tables and columns
    /// of that schema, filled with the current manifest's rows (the columns that schema has).
    static func manifest(at steps: Int, from current: String, into path: String) throws {
        _ = try SQLiteStore(path: path, migrations: Array(Schema.migrations.prefix(steps)))
        let tables = try sqlite(path, "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name != 'grdb_migrations' ORDER BY name")
            .split(separator: "\n").map(String.init)
        var script = "PRAGMA foreign_keys = OFF; ATTACH '\(current)' AS cur; BEGIN;"
        for table in tables {
            let columns = try sqlite(path, "SELECT name FROM pragma_table_info('\(table)')").split(separator: "\n").map { "\"\($0)\"" }.joined(separator: ", ")
            script += " INSERT INTO main.\"\(table)\" (\(columns)) SELECT \(columns) FROM cur.\"\(table)\";"
        }
        _ = try sqlite(path, script + " COMMIT;")
    }

    static func sha256(_ path: String) throws -> String { try SluiceTestSupport.sha256(ofFile: path) }

    /// How many rows of the rollups differ from the versions counted anew (0 when they agree).
    static let rollupMismatches = HistoryTests.rollupMismatches

    @Test(.disabled(if: TestManifest.onPostgres, "SQLite manifests of each step (the SQLite pass runs it)"),
          arguments: 1..<Schema.migrations.count)
    func aManifestOfEachEarlierSchemaIsMigratedOnceAndWorks(steps: Int) throws {
        let base = Self.current
        let dir = TempDir("upgrade-\(steps)")
        for part in ["agent.conf", "mappings", "drop", "lake"] {
            try Shell.check("/bin/cp", ["-a", base.sub(part), dir.sub(part)])
        }
        try FileManager.default.createDirectory(atPath: dir.sub("state"), withIntermediateDirectories: true)
        let db = dir.sub("state/manifest.sqlite")
        try Self.manifest(at: steps, from: base.sub("state/manifest.sqlite"), into: db)
        let migrated = try Self.sqlite(db, "SELECT count(*) FROM grdb_migrations")
        #expect(migrated == "\(steps)")
        let versions = try Self.sqlite(db, "SELECT count(*) FROM version")
        #expect(Int(versions)! >= 7, "the step's manifest has the current one's versions: \(versions)")
        let config = dir.sub("agent.conf")

        // The first command migrates; the rest find nothing to do.
        let status = try SluiceBinary.run(["status"], config: config)
        #expect(status.status == 0, "\(status.stderr)")
        for client in Self.clients { #expect(status.stdout.contains(client), "\(status.stdout)") }
        let identifiers = try Self.sqlite(db, "SELECT identifier FROM grdb_migrations ORDER BY rowid").split(separator: "\n").map(String.init)
        #expect(identifiers.sorted() == Schema.migrations.map(\.identifier).sorted())
        let schema = "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'grdb_issue%' ORDER BY name; SELECT rowid, identifier FROM grdb_migrations ORDER BY rowid"
        let migratedSchema = try Self.sqlite(db, schema)
        // The history's columns and rollups, filled from the rows that were there.
        #expect(try Self.sqlite(db, "SELECT count(*) FROM version WHERE client IS NULL") == "0")
        #expect(try Self.sqlite(db, Self.rollupMismatches) == "0")
        #expect(try Self.sqlite(db, HistoryTests.transformCountMismatches) == "0")

        let audit = try SluiceBinary.run(["audit"], config: config)
        #expect(audit.status == 0, "audit after migrating from step \(steps): \(audit.stdout) \(audit.stderr)")
        let history = try SluiceBinary.run(["history", "acme", "orders_2026-10-01.csv"], config: config)
        #expect(history.status == 0, "\(history.stderr)")
        #expect(try Self.sqlite(db, "SELECT count(*) FROM versions WHERE client = 'acme' AND path = 'orders_2026-10-01.csv'") == "2")
        let lastBefore = Int(try Self.sqlite(db, steps >= 2 ? "SELECT coalesce(max(id), 0) FROM transform" : "SELECT 0"))!
        for client in Self.clients {
            let t = try SluiceBinary.run(["transform", client, "--all"], config: config)
            #expect(t.status == 0, "transform \(client) --all after migrating from step \(steps): \(t.stdout) \(t.stderr)")
        }
        let untransformed = try Self.sqlite(db, """
            SELECT count(*) FROM version v WHERE NOT EXISTS (SELECT 1 FROM transform t WHERE t.version_id = v.id AND t.parent_id IS NULL
                AND t.status IN ('ok', 'unmapped') AND t.id > \(lastBefore))
            """)
        #expect(untransformed == "0", "every version transformed again after migrating from step \(steps)")
        let again = try SluiceBinary.run(["audit"], config: config)
        #expect(again.status == 0, "audit after the transforms: \(again.stdout) \(again.stderr)")
        // A new delivery after the upgrade goes on the rollups the migration filled.
        dir.write("drop/acme/late.csv", "id\n1\n")
        let pulled = try SluiceBinary.run(["pull", "acme", "--no-transform"], config: config)
        #expect(pulled.status == 0, "\(pulled.stderr)")
        let status2 = try SluiceBinary.run(["status"], config: config)
        #expect(status2.status == 0)
        #expect(try Self.sqlite(db, Self.rollupMismatches) == "0", "the rollups kept by the pull after the upgrade")
        #expect(try Self.sqlite(db, HistoryTests.transformCountMismatches) == "0", "the transforms counted as they ran after the upgrade")
        #expect(try Self.sqlite(db, "SELECT count(*) FROM version WHERE client IS NULL") == "0")
        #expect(try Self.sqlite(db, schema) == migratedSchema, "no migration ran a second time")
        #expect(try Self.sqlite(db, "SELECT count(*) FROM grdb_migrations") == "\(Schema.migrations.count)")
    }

    /// PostgreSQL manifests came with the 14th migration's schema: one made then (with the
    /// example's rows) is migrated once by this build and works.
    @Test(.enabled(if: TestManifest.onPostgres, "a PostgreSQL manifest (the PostgreSQL pass runs it)"))
    func aPostgreSQLManifestOfTheEarlierSchemaIsMigratedOnceAndWorks() throws {
        let steps = Schema.migrations.firstIndex { $0.identifier == "v15-source-lease" }!
        let base = Self.current
        let dir = TempDir("upgrade-pg")
        for part in ["mappings", "drop", "lake"] {
            try Shell.check("/bin/cp", ["-a", base.sub(part), dir.sub(part)])
        }
        let server = try PostgresServer.shared()
        let database = try server.createDatabase("upgrade")
        dir.manifestDatabase = database
        let text = try String(contentsOfFile: base.sub("agent.conf"), encoding: .utf8)
        dir.write("agent.conf", text + "\n" + server.manifestTable(database))
        // The rows of the step's SQLite manifest, copied into a PostgreSQL manifest of that step.
        let step = dir.sub("step.sqlite")
        try Self.manifest(at: steps, from: base.sub("state/manifest.sqlite"), into: step)
        let earlier = Array(Schema.migrations.prefix(steps))
        do {
            let source = try SQLiteStore(path: step, migrations: earlier)
            let target = try PostgresStore(location: PostgresLocation(host: "127.0.0.1", port: server.port, user: server.user, database: database,
                                                                      passwordFile: server.passwordFile, tls: .disable), migrations: earlier)
            let later: Set = ["source_lease", "ingest_day", "source_total"]
            let tables = Manifest.copiedTables.filter { !later.contains($0.name) }
            let copied = try source.read { from in try target.write { to in try Manifest.copyRows(from: from, into: to, tables: tables) } }
            #expect(copied.first { $0.table == "version" }!.rows >= 7)
        }
        func query(_ sql: String) throws -> String { try server.psql(database, sql).trimmingCharacters(in: .whitespacesAndNewlines) }
        #expect(try query("SELECT count(*) FROM grdb_migrations") == "\(steps)")

        let config = dir.sub("agent.conf")
        let status = try SluiceBinary.run(["status"], config: config)
        #expect(status.status == 0, "\(status.stderr)")
        #expect(try query("SELECT count(*) FROM grdb_migrations") == "\(Schema.migrations.count)")
        #expect(try query("SELECT count(*) FROM information_schema.tables WHERE table_name = 'source_lease'") == "1")
        #expect(try query("SELECT count(*) FROM version WHERE client IS NULL") == "0")
        #expect(try query(Self.rollupMismatches) == "0")
        #expect(try query(HistoryTests.transformCountMismatches) == "0")
        let audit = try SluiceBinary.run(["audit"], config: config)
        #expect(audit.status == 0, "\(audit.stdout) \(audit.stderr)")
        #expect(try SluiceBinary.run(["history", "acme", "orders_2026-10-01.csv"], config: config).status == 0)
        let lastBefore = try query("SELECT coalesce(max(id), 0) FROM transform")
        for client in Self.clients {
            let t = try SluiceBinary.run(["transform", client, "--all"], config: config)
            #expect(t.status == 0, "transform \(client) --all: \(t.stdout) \(t.stderr)")
        }
        #expect(try query("""
            SELECT count(*) FROM version v WHERE NOT EXISTS (SELECT 1 FROM transform t WHERE t.version_id = v.id AND t.parent_id IS NULL
                AND t.status IN ('ok', 'unmapped') AND t.id > \(lastBefore))
            """) == "0", "every version transformed again, with new transform ids")
        // New rows go on after the copied ids; a second start runs no migration.
        dir.write("drop/acme/late.csv", "id\n1\n")
        let pulled = try SluiceBinary.run(["pull", "acme"], config: config)
        #expect(pulled.status == 0, "\(pulled.stderr)")
        #expect(try SluiceBinary.run(["status"], config: config).status == 0)
        #expect(try query(Self.rollupMismatches) == "0", "the rollups kept by the pull after the upgrade")
        #expect(try query("SELECT count(*) FROM grdb_migrations") == "\(Schema.migrations.count)")
    }

    @Test func aManifestFromANewerSluiceIsRefusedAndLeftAsItIs() throws {
        let dir = TempDir("newer")
        dir.config()
        dir.write("drop/a.csv", "x\n1\n")
        let config = dir.sub("agent.conf")
        #expect(try SluiceBinary.run(["pull", "acme"], config: config).status == 0)
        _ = try TestManifest.query(dir, "INSERT INTO grdb_migrations (identifier) VALUES ('v99-from-the-future')")
        let db = dir.sub("state/manifest.sqlite")
        let before = TestManifest.onPostgres ? nil : try Self.sha256(db)
        dir.write("drop/b.csv", "x\n2\n")
        for command in [["status"], ["pull", "acme"], ["audit"]] {
            let r = try SluiceBinary.run(command, config: config)
            #expect(r.status == 1, "\(command): \(r.stdout) \(r.stderr)")
            #expect(r.stderr.contains("newer Sluice") && r.stderr.contains("v99-from-the-future"), "\(command): \(r.stderr)")
        }
        if let before { #expect(try Self.sha256(db) == before, "the newer manifest is left as it was") }
        #expect(try TestManifest.query(dir, "SELECT count(*) FROM version").stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "1")
        #expect(FileManager.default.fileExists(atPath: dir.sub("drop/b.csv")))
    }
}
