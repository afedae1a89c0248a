import Foundation
import SluiceTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Issue 17's defects that show in `sluice run` (logs, the watcher, /status, the console,
/// token use) and over SFTP: each test failed before its fix.
@Suite(.serialized) struct OnboardingServiceTests {
    /// A daemon with one drop folder `drop` (and `extra` source lines), under journald's
    /// line format when `journald`.
    static func daemon(_ label: String, agent: String = "", sourceExtra: String = "min_age = \"0s\"", tables: String = "",
                       mapping: String? = nil, journald: Bool = false) throws -> DaemonProcess {
        let dir = TempDir(label)
        let port = try SSHServer.freePort()
        dir.write("agent.conf", DaemonProcess.agentTable(port: port, extra: agent) + """

            [clients.acme.sources.drop]
            type = "folder"
            path = "drop"
            \(sourceExtra)
            \(tables)
            """)
        try FileManager.default.createDirectory(atPath: dir.sub("drop"), withIntermediateDirectories: true)
        if let mapping { dir.write("mappings/acme.toml", mapping) }
        let d = try DaemonProcess(dir: dir, port: port, environment: journald ? ["JOURNAL_STREAM": "8:12345"] : [:])
        try d.waitReady()
        return d
    }

    // MARK: 2. Forged log lines

    /// A drop-folder file named to look like a log line of its own, with a journald priority,
    /// stays inside one line of the log.
    @Test func aFileNameCannotForgeALogLineOrAJournalPriority() throws {
        let d = try Self.daemon("forge-journal", agent: "log_level = \"trace\"", mapping: OnboardingTests.ordersMapping, journald: true)
        let name = "x\n<2>CRITICAL forged line.csv"
        d.dir.write("drop/tmp.part", "id,amount\nnot-a-number,1\n")
        #expect(rename(d.dir.sub("drop/tmp.part"), d.dir.sub("drop/\(name)")) == 0)
        #expect(eventually(20) { d.log.contains("Transform failed") }, "\(d.log)")
        // The console shows the name on one line too.
        let page = d.get("/clients/acme")?.body ?? ""
        #expect(page.contains("x%0A&lt;2&gt;CRITICAL forged line.csv") && !page.contains("x\n&lt;2&gt;"), "\(page.prefix(3000))")
        d.signal(SIGTERM)
        #expect(d.waitForExit(seconds: 30) == 0)
        let lines = d.log.split(separator: "\n")
        #expect(lines.allSatisfy { $0.hasPrefix("<") && !$0.hasPrefix("<2>") }, "every line is Sluice's own: \(lines.filter { !$0.hasPrefix("<3>") && !$0.hasPrefix("<4>") && !$0.hasPrefix("<5>") && !$0.hasPrefix("<6>") && !$0.hasPrefix("<7>") })")
        #expect(d.log.contains("path=\"x%0A<2>CRITICAL forged line.csv\""), "logfmt-quoted and escaped: \(d.log)")
    }

    /// Through the upload API: a path with an encoded newline is stored, and its log line
    /// stays one line.
    @Test func anUploadPathCannotForgeALogLine() throws {
        let (s, tokens) = try UploadAPITests.start(agent: "log_level = \"debug\"", tokens: [("acme", ["--source", "portal"])])
        let file = s.dir.write("files/f.csv", "id\n1\n")
        let forged = "x%0A2026-12-06T01:40:00Z%20error%20sluice:%20Audit%20found%20corrupt%20file.csv"
        let r = try s.client(tokens[0]).put("/api/v1/files/\(forged)", file: file)
        #expect(r.status == 201 || r.status == 422, "\(r.body)")
        #expect(eventually(10) { s.daemon.log.contains("Upload") })
        s.daemon.signal(SIGTERM)
        #expect(s.daemon.waitForExit(seconds: 30) == 0)
        let lines = s.daemon.log.split(separator: "\n")
        #expect(!lines.contains { $0.hasPrefix("2026-12-06T01:40:00Z error") }, "\(s.daemon.log)")
        #expect(lines.allSatisfy { $0.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (trace|debug|info|notice|warning|error|critical) "#, options: .regularExpression) != nil },
                "\(lines)")
        if r.status == 201 { #expect(s.daemon.log.contains("x%0A2026-12-06T01:40:00Z error sluice: Audit found corrupt file.csv")) }
    }

    // MARK: 11. Names that are not UTF-8

    /// A file written in place under a name that is not UTF-8 is taken once it has been quiet
    /// for min_age, not at the next rescan.
    @Test func aNonUTF8NameWrittenInPlaceIsIngestedWithoutARescan() throws {
        let d = try Self.daemon("raw-name", sourceExtra: "min_age = \"1s\"\nrescan_interval = \"1h\"")
        var path = Array(d.dir.sub("drop/").utf8) + [0x6F, 0xFF, 0xFE, 0x2E, 0x63, 0x73, 0x76]  // "o\xFF\xFE.csv"
        path.append(0)
        let fd = path.withUnsafeBufferPointer { $0.withMemoryRebound(to: CChar.self) { open($0.baseAddress!, O_WRONLY | O_CREAT | O_EXCL, 0o644) } }
        #expect(fd >= 0)
        _ = "id\n1\n".withCString { write(fd, $0, 5) }
        close(fd)
        #expect(eventually(15) { versionCount(d.dir, client: "acme") == 1 }, "\(d.log)")
        d.signal(SIGTERM)
        #expect(d.waitForExit(seconds: 30) == 0)
    }

    // MARK: 10. /status and a taken port

    @Test func statusGivesUnknownFieldsAsNull() throws {
        let d = try Self.daemon("status-null")
        let body = try #require(d.get("/status")?.body)
        #expect(body.contains("\"last_error\" : null") && body.contains("\"next_poll\" : null"), "\(body)")
        d.signal(SIGTERM)
        #expect(d.waitForExit(seconds: 30) == 0)
    }

    @Test func aTakenPortIsRefusedBeforeAnythingIsAnnounced() throws {
        let dir = TempDir("port-taken")
        let port = try SSHServer.freePort()
        let holder = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(holder) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(holder, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        #expect(bound == 0 && listen(holder, 1) == 0)
        dir.write("agent.conf", DaemonProcess.agentTable(port: port) + "\n[clients.acme.sources.drop]\ntype = \"folder\"\npath = \"drop\"\n")
        let d = try DaemonProcess(dir: dir, port: port)
        #expect(d.waitForExit(seconds: 30) == 1)
        #expect(!d.log.contains("Sluice is running") && !d.log.contains("Stopped"), "\(d.log)")
        #expect(d.log.contains("agent.http_listen 127.0.0.1:\(port) cannot be listened on: Address already in use — choose a free address"), "\(d.log)")
        #expect(!d.log.contains("in use)"), "\(d.log)")
    }

    // MARK: 8. Token use

    /// A refused request leaves `last_used_at` alone; a served one records it.
    @Test func onlyServedRequestsCountAsATokensUse() throws {
        let (s, tokens) = try UploadAPITests.start(tokens: [("acme", ["--source", "portal"])])
        let client = s.client(tokens[0])
        let file = s.dir.write("files/f.csv", "id\n1\n")
        #expect(try client.put("/api/v1/files/f.csv?source=drop", file: file).status == 403)
        #expect(try client.put("/api/v1/files/notes.exe", file: file).status == 422)
        #expect(try client.get("/api/v1/files?client=beta").status == 403)
        #expect(try s.sql("SELECT count(last_used_at) FROM token") == "0", "refused requests are no use")
        #expect(try client.put("/api/v1/files/f.csv", file: file).status == 201)
        #expect(eventually(5) { (try? s.sql("SELECT count(last_used_at) FROM token")) == "1" })
        s.daemon.signal(SIGTERM)
        #expect(s.daemon.waitForExit(seconds: 30) == 0)
    }

    // MARK: 7. The console

    /// At 1280 and 1600 px nothing needs a horizontal scroll; an old error is not red after a
    /// later success; error texts are whole; the client page counts and pages its versions;
    /// the transforms table shows each failure's reason.
    @Test func theConsoleFitsAndSaysWhatHappened() throws {
        let longError = "drop folder is unreadable at /srv/sluice/very/long/path/without/any/spaces/in/it/\(String(repeating: "segment-", count: 20))end — check its owner and mode, then wait for the next pass"
        let d = try Self.daemon("console-layout", sourceExtra: "min_age = \"0s\"", mapping: OnboardingTests.ordersMapping.replacingOccurrences(of: "0.9", with: "0.1"))
        for i in 0..<205 { d.dir.write("drop/f\(i).csv", "id,amount\n\(i),1\n") }
        d.dir.write("drop/bad.csv", "id,amount\nx,1\ny,2\n")
        #expect(eventually(60) { versionCount(d.dir, client: "acme") == 206 && ((try? TestManifest.query(d.dir, "SELECT count(*) FROM transform").stdout) ?? "").hasPrefix("206") }, "\(d.log)")
        // An old failed run with a long error, then the successes the daemon recorded.
        _ = try TestManifest.query(d.dir, """
            INSERT INTO run (client, source, trigger, pid, started_at, finished_at, status, error)
            VALUES ('acme', 'drop', 'scan', 1, '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:01.000000Z', 'failed', '\(longError)')
            """)
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("browser/layout.py").path
        let failedID = try TestManifest.query(d.dir, "SELECT id FROM transform WHERE status = 'failed'").stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let run = try Shell.run("/usr/bin/env", ["python3", script, "http://127.0.0.1:\(d.port)", "\(TestArtifacts.dir)/console-layout", failedID])
        #expect(run.status == 0, "\(run.stderr.suffix(3000))")
        let seen = try #require((try? JSONSerialization.jsonObject(with: Data(run.stdout.utf8))) as? [String: Any], "\(run.stdout)")
        for width in ["1280", "1600"] {
            #expect((seen["overflow_\(width)"] as? [String])?.isEmpty == true, "\(width) px: \(seen)")
        }
        #expect(seen["current_errors"] as? Int == 0 && seen["past_errors"] as? Int == 1, "\(seen)")
        #expect((seen["past_error_text"] as? String ?? "").hasSuffix("wait for the next pass"), "the whole text: \(seen)")
        #expect(seen["version_count"] as? String == "showing 1–200 of 206 versions, newest first", "\(seen)")
        #expect(seen["page2_count"] as? String == "showing 201–206 of 206 versions, newest first", "\(seen)")
        #expect((seen["reasons"] as? [String] ?? []).contains { $0.contains("rows rejected") }, "\(seen)")
        d.signal(SIGTERM)
        #expect(d.waitForExit(seconds: 30) == 0)
    }
}

/// Issue 17 over a real sshd: nested move folders, a changed move folder, and the text output
/// of an after-ingest failure.
@Suite(.enabled(if: SSHServer.available, "needs OpenSSH's sshd (apt-get install openssh-server)"))
struct OnboardingSFTPTests {
    @Test func aNestedMoveFolderIsCreatedLevelByLevelAndAChangedOneIsNeverReingested() throws {
        let server = try SSHServer()
        server.serve("a.csv", "a")
        server.serve("sub/b.csv", "b")
        let dir = SFTPTests.setUp(server, extra: "after_ingest = \"move:done/2026\"")
        #expect(try SFTPTests.trust(dir).status == 0)
        var (r, report) = try SFTPTests.pull(dir)
        #expect(r.status == 0, "\(r.stderr) \(report)")
        #expect(FileManager.default.fileExists(atPath: server.served + "/done/2026/a.csv"))
        #expect(FileManager.default.fileExists(atPath: server.served + "/done/2026/sub/b.csv"))

        dir.config(tables: server.sourceTable(extra: "after_ingest = \"move:archive/2026/12\""))
        server.serve("c.csv", "c")
        (r, report) = try SFTPTests.pull(dir)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(SFTPTests.files(report).keys.sorted() == ["c.csv"], "\(report)")
        #expect(FileManager.default.fileExists(atPath: server.served + "/archive/2026/12/c.csv"))
        #expect(try loadAgent(dir).history(client: "acme", path: nil).count == 3)

        // An absolute folder on the server, outside remote_dir.
        let outside = server.served + "-archive"
        dir.config(tables: server.sourceTable(extra: "after_ingest = \"move:\(outside)/x\""))
        server.serve("d.csv", "d")
        (r, report) = try SFTPTests.pull(dir)
        #expect(r.status == 0 && SFTPTests.files(report).keys.sorted() == ["d.csv"], "\(r.stderr) \(report)")
        #expect(FileManager.default.fileExists(atPath: outside + "/x/d.csv"))
    }

    @Test func anAfterIngestFailureShowsInTheTextOutput() throws {
        let server = try SSHServer()
        server.serve("a.csv", "a")
        server.serve("done", "a file where the move folder should be")
        let dir = SFTPTests.setUp(server, extra: "after_ingest = \"move:done\"\ninclude = [\"*.csv\"]")
        #expect(try SFTPTests.trust(dir).status == 0)
        let r = try SluiceBinary.run(["pull", "acme"], config: dir.sub("agent.conf"))
        #expect(r.status == 1)
        #expect(r.stdout.contains("new       outbox/a.csv  v1 → raw/acme/outbox/a.v1.csv; after_ingest failed: "), "\(r.stdout)")
        #expect(r.stdout.contains("acme: 1 new, 0 unchanged, 0 skipped, 0 failed, 1 after_ingest failed"), "\(r.stdout)")
    }
}
