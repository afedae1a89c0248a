import Foundation
import SluiceTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Where tests leave files for people to look at (screenshots of the console).
enum TestArtifacts {
    static var dir: String {
        if let d = ProcessInfo.processInfo.environment["SLUICE_TEST_ARTIFACTS"], !d.isEmpty { return d }
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent(".build/test-artifacts").path
    }
}

/// Rows of a Parquet file as pyarrow and DuckDB each read them (nil when either fails or they differ).
func parquetRowCount(_ path: String) -> Int? {
    let r = try? Shell.run("/usr/bin/env", ["python3", "-c", """
        import pyarrow.parquet as pq, duckdb
        a = pq.read_table('\(path)').num_rows
        b = duckdb.connect().execute("SELECT count(*) FROM read_parquet('\(path)')").fetchone()[0]
        assert a == b, (a, b)
        print(a)
        """])
    guard let r, r.status == 0 else { return nil }
    return Int(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
}

/// Reads every dataset folder under `<dir>/lake/processed/<client>/` as a whole, as users do:
/// pyarrow's `read_table(folder)` and `pyarrow.dataset` (Hive partitions), and DuckDB's
/// `read_parquet('<folder>/**/*.parquet')`; records an issue when any of them fails or they
/// disagree. A stray non-Parquet file in a folder (a rejects file, say) fails the pyarrow reads.
/// Folders of JSONL output are skipped.
func expectDatasetFoldersRead(_ dir: TempDir, sourceLocation: SourceLocation = #_sourceLocation) {
    let root = dir.sub("lake/processed")
    let r = try? Shell.run("/usr/bin/env", ["python3", "-c", """
        import os, pyarrow.parquet as pq, pyarrow.dataset as ds, duckdb
        root = '\(root)'
        for client in (sorted(os.listdir(root)) if os.path.isdir(root) else []):
            for name in sorted(os.listdir(os.path.join(root, client))):
                folder = os.path.join(root, client, name)
                files = [f for _, _, fs in os.walk(folder) for f in fs]
                if name.startswith('_') or not any(f.endswith('.parquet') for f in files):
                    continue
                a = pq.read_table(folder).num_rows
                b = ds.dataset(folder, format='parquet', partitioning='hive').to_table().num_rows
                c = duckdb.connect().execute("SELECT count(*) FROM read_parquet('%s/**/*.parquet', hive_partitioning=true)" % folder).fetchone()[0]
                assert a == b == c, (folder, a, b, c)
                print(client, name, a)
        """])
    #expect(r?.status == 0, "a dataset folder does not read as a dataset: \(r?.stderr.suffix(1500) ?? "python3 did not run")", sourceLocation: sourceLocation)
}

/// The web console on the internal listener, in a real browser (chromium through selenium),
/// and its access rules beyond loopback.
@Suite(.serialized) struct ConsoleTests {
    static let mapping = """
        [datasets.orders]
        match = ["**/*.csv"]
        format = "csv"
        fields = [ { name = "id", source = "id", type = "TYPE", required = true }, { name = "note", source = "note", type = "string" } ]
        """

    /// Overview, an upload through the upload page whose version appears, and a failed
    /// transform re-run from its page after the mapping was fixed. Screenshots are saved.
    @Test func theConsoleInABrowser() throws {
        let (s, tokens) = try UploadAPITests.start(tokens: [("acme", [])], mapping: Self.mapping.replacingOccurrences(of: "TYPE", with: "int64"))
        let bad = s.dir.write("files/orders.csv", "id,note\nA-1,first\nA-2,second\n")
        #expect(try s.client(tokens[0]).put("/api/v1/files/orders.csv", file: bad).status == 201)
        #expect(eventually(20) { (try? s.sql("SELECT status FROM transform")) == "failed" }, "\(s.daemon.log)")
        let failedID = try s.sql("SELECT id FROM transform")
        #expect(try s.sql("SELECT count(rejects_path) FROM transform") == "1", "a failed transform keeps its rejected rows")

        // The mapping is fixed (ids are strings) and reloaded, as an operator does.
        s.dir.write("mappings/acme.toml", Self.mapping.replacingOccurrences(of: "TYPE", with: "string"))
        s.daemon.signal(SIGHUP)
        #expect(eventually(10) { s.daemon.log.contains("Config reloaded") })
        let upload = s.dir.write("files/from-browser.csv", "id,note\nB-1,uploaded\n")
        let artifacts = "\(TestArtifacts.dir)/console"
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("browser/console.py").path
        let run = try Shell.run("/usr/bin/env", ["python3", script, "http://127.0.0.1:\(s.daemon.port)", artifacts, upload, failedID])
        #expect(run.status == 0, "\(run.stderr.suffix(3000))")
        let seen = try #require((try? JSONSerialization.jsonObject(with: Data(run.stdout.utf8))) as? [String: Any], "\(run.stdout)")

        #expect(seen["overview_title"] as? String == "Overview")
        let rows = (seen["overview_rows"] as? [[String]]) ?? []
        #expect(rows.contains(["acme", "portal"]) && rows.contains(["acme", "drop"]) && rows.contains(["beta", "web"]), "\(rows)")
        #expect(seen["charts"] as? Int == 2, "a chart per client")
        #expect((seen["local_times"] as? Int ?? 0) > 0, "times are shown local as well as UTC")
        #expect(seen["upload_status"] as? String == "201" && (seen["upload_result"] as? String)?.contains("version 1") == true, "\(seen)")
        #expect(seen["upload_progress"] as? String == "100")
        #expect((seen["client_paths"] as? [String])?.contains("browser/from-browser.csv") == true, "\(seen)")
        #expect((seen["failed_reason"] as? String)?.contains("max_reject_ratio") == true)
        #expect(seen["rejected_rows"] as? Int == 2)
        #expect(seen["rerun_status"] as? String == "ok", "\(seen)")
        #expect((seen["audit"] as? String)?.contains("matches the manifest") == true, "\(seen)")

        // The browser's upload is a version, recorded as an operator's; the re-run's Parquet
        // reads back in pyarrow and DuckDB.
        #expect(try s.sql("SELECT version FROM versions WHERE path = 'browser/from-browser.csv'") == "1")
        #expect(try s.sql("SELECT count(token_id), status FROM upload WHERE path = 'browser/from-browser.csv' GROUP BY status") == "0|stored")
        let latest = try s.sql("SELECT status, output_path FROM transform WHERE version_id = (SELECT version_id FROM versions WHERE path = 'orders.csv') ORDER BY id DESC LIMIT 1")
        #expect(latest.hasPrefix("ok|"), "\(latest)")
        #expect(parquetRowCount(s.dir.sub("lake/" + latest.dropFirst(3))) == 2)
        #expect(eventually(20) { (try? s.sql("SELECT count(*) FROM transform WHERE status = 'ok'")) == "2" })
        let uploaded = try s.sql("SELECT output_path FROM transform t JOIN versions v ON v.version_id = t.version_id WHERE v.path = 'browser/from-browser.csv'")
        #expect(parquetRowCount(s.dir.sub("lake/\(uploaded)")) == 1)
        for shot in ["overview", "overview-phone", "upload", "client", "failed-transform", "rerun", "audit"] {
            #expect(FileManager.default.fileExists(atPath: "\(artifacts)/\(shot).png"), "screenshot \(shot)")
        }
        s.daemon.signal(SIGTERM)
        #expect(s.daemon.waitForExit(seconds: 30) == 0)
    }

    /// Bound beyond loopback, the console needs the admin token (bearer, or the login cookie);
    /// state changes need the CSRF token; health and metrics stay open.
    @Test func beyondLoopbackTheConsoleNeedsTheAdminToken() throws {
        let dir = TempDir("console")
        let port = try SSHServer.freePort()
        let admin = "console-admin-token-\(UUID().uuidString)"
        dir.write("admin.token", admin + "\n")
        dir.write("agent.conf", DaemonProcess.agentTable(port: port, extra: "admin_token_file = \"admin.token\"")
            .replacingOccurrences(of: "127.0.0.1:\(port)", with: "0.0.0.0:\(port)") + """

            [clients.acme.sources.portal]
            type = "http"
            """)
        let d = try DaemonProcess(dir: dir, port: port)
        try d.waitReady()
        let base = "http://127.0.0.1:\(port)"
        let curl = CookieCurl(jar: dir.sub("cookies"))
        #expect(try curl(["\(base)/healthz"]).status == "200", "health stays open for probes")
        #expect(try curl(["\(base)/metrics"]).status == "200")
        #expect(try curl(["\(base)/"]).status == "303", "pages send a stranger to the login form")
        #expect(try curl(["-H", "Authorization: Bearer wrong-token-1234567", "\(base)/"]).status == "303")
        #expect(try curl(["-H", "Authorization: Bearer \(admin)", "\(base)/"]).status == "200")

        let login = try curl(["\(base)/login"])
        #expect(login.status == "200")
        let csrf = try #require(login.body.range(of: "name=\"csrf\" value=\"").map { String(login.body[$0.upperBound...].prefix { $0 != "\"" }) })
        #expect(try curl(["-d", "token=\(admin)", "\(base)/login"]).status == "403", "no CSRF token, no login")
        #expect(try curl(["-d", "csrf=\(csrf)&token=nope", "\(base)/login"]).status == "401")
        #expect(try curl(["-d", "csrf=\(csrf)&token=\(admin)", "\(base)/login"]).status == "303")
        #expect(try curl(["\(base)/"]).status == "200", "the session cookie lets the operator in")
        #expect(try curl(["-X", "POST", "\(base)/transforms/1/rerun"]).status == "403", "state changes need the CSRF token")
        let small = dir.write("files/a.csv", "id\n1\n")
        #expect(try curl(["-T", small, "\(base)/api/v1/files/a.csv?client=acme"]).status == "401", "an upload without the CSRF header is refused")
        #expect(try curl(["-T", small, "-H", "X-CSRF-Token: \(csrf)", "\(base)/api/v1/files/a.csv?client=acme"]).status == "201")
        #expect(try curl(["-d", "csrf=\(csrf)", "\(base)/logout"]).status == "303")
        #expect(try curl(["\(base)/"]).status == "303", "logged out")

        // Without admin_token_file, the console says what to set.
        d.signal(SIGTERM)
        #expect(d.waitForExit(seconds: 30) == 0)
        dir.write("agent.conf", (try String(contentsOfFile: dir.sub("agent.conf"), encoding: .utf8)).replacingOccurrences(of: "admin_token_file = \"admin.token\"", with: ""))
        let open = try DaemonProcess(dir: dir, port: port)
        try open.waitReady()
        let refused = try curl(["\(base)/"])
        #expect(refused.status == "403" && refused.body.contains("admin_token_file"))
        open.signal(SIGTERM)
        #expect(open.waitForExit(seconds: 30) == 0)
    }
}
