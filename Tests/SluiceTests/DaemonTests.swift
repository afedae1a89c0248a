import Foundation
import SluiceTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The real `sluice run` process: readiness, drop folders over inotify, reload, shutdown,
/// systemd notifications, metrics and the SFTP schedule.
@Suite(.serialized) struct DaemonTests {
    static func folderConfig(_ dir: TempDir, port: Int, clients: [String] = ["acme"], minAge: String = "1s", agentExtra: String = "") {
        var text = DaemonProcess.agentTable(port: port, extra: agentExtra)
        for c in clients {
            text += """
                [clients.\(c).sources.drop]
                type = "folder"
                path = "drop-\(c)"
                min_age = "\(minAge)"

                """
            try? FileManager.default.createDirectory(atPath: dir.sub("drop-\(c)"), withIntermediateDirectories: true)
        }
        dir.write("agent.conf", text)
    }

    /// Writes `text` outside the drop folders, then renames it to `relative`: a complete file
    /// arriving at once, as a well-behaved client delivers.
    static func renameIn(_ dir: TempDir, _ relative: String, _ text: String) {
        let staged = dir.write("staging/\((relative as NSString).lastPathComponent)", text)
        #expect(rename(staged, dir.sub(relative)) == 0, "rename into \(relative)")
    }

    /// open, write, close: no temp file and no rename, as a client writing into the folder does.
    static func writeInPlace(_ path: String, _ text: String) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        _ = text.withCString { write(fd, $0, strlen($0)) }
        close(fd)
    }

    /// Renamed in, written in place, in a subfolder made and filled at once: all reach the
    /// manifest; /metrics, /status, `sluice status` and the systemd datagrams tell about it;
    /// SIGTERM stops it with exit 0.
    @Test func dropFolderFilesReachTheManifestAndTheServiceReportsThem() throws {
        let dir = TempDir("daemon")
        let port = try SSHServer.freePort()
        Self.folderConfig(dir, port: port)
        dir.write("mappings/acme.toml", """
            [datasets.orders]
            match = ["**/*.csv"]
            format = "csv"
            fields = [ { name = "id", source = "id", type = "int64", required = true } ]
            """)
        dir.write("drop-acme/before.csv", "id\n1\n")  // arrived while the agent was down
        age(dir.sub("drop-acme/before.csv"), seconds: 60)
        let notify = try NotifySocket(dir: dir)
        let d = try DaemonProcess(dir: dir, port: port, environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "2000000"])
        try d.waitReady()
        #expect(eventually(10) { versionCount(dir) == 1 }, "the start-up scan takes what arrived while the agent was down")

        // Renamed in: complete, so no min_age wait.
        Self.renameIn(dir, "drop-acme/renamed.csv", "id\n2\n")
        // Written in place: taken once quiet for min_age (1 s).
        Self.writeInPlace(dir.sub("drop-acme/inplace.csv"), "id\n3\n")
        // A new subfolder, filled at once (written in place too).
        try FileManager.default.createDirectory(atPath: dir.sub("drop-acme/new/sub"), withIntermediateDirectories: true)
        for i in 0..<5 { Self.writeInPlace(dir.sub("drop-acme/new/sub/f\(i).csv"), "id\n\(10 + i)\n") }
        #expect(eventually(15) { versionCount(dir) == 8 }, "\(versionCount(dir)) versions; log: \(d.log)")
        #expect(eventually(15) {
            (try? TestManifest.query(dir, "SELECT count(*) FROM transform WHERE status = 'ok'").stdout.hasPrefix("8")) ?? false
        }, "every version is transformed by the workers")

        // A transform's metrics are recorded just after its row: wait for them too.
        #expect(eventually(10) { d.get("/metrics")?.body.contains("sluice_transform_duration_seconds_count{client=\"acme\",dataset=\"orders\"} 8") ?? false })
        let metrics = try #require(d.get("/metrics"))
        #expect(metrics.status == 200)
        #expect(metrics.body.contains("sluice_files_ingested_total{client=\"acme\",source=\"drop\"} 8"), "\(metrics.body)")
        #expect(metrics.body.contains("sluice_bytes_ingested_total{client=\"acme\",source=\"drop\"}"))
        #expect(metrics.body.contains("sluice_transfer_duration_seconds_bucket{client=\"acme\",source=\"drop\""))
        #expect(metrics.body.contains("sluice_transform_duration_seconds_count{client=\"acme\",dataset=\"orders\"} 8"))
        #expect(metrics.body.contains("sluice_rows_written_total{client=\"acme\",dataset=\"orders\"} 8"))
        #expect(metrics.body.contains("sluice_source_last_success_timestamp_seconds{client=\"acme\",source=\"drop\"}"))
        #expect(metrics.body.contains("sluice_transform_queue_depth"))
        #expect(d.get("/healthz")?.status == 200)
        let status = d.status()
        let source = try #require((status["sources"] as? [[String: Any]])?.first)
        #expect(source["client"] as? String == "acme" && source["files_new"] as? Int == 8 && source["last_success"] is String, "\(status)")

        d.signal(SIGTERM)
        #expect(d.waitForExit(seconds: 30) == 0, "\(d.log)")
        let messages = notify.drain()
        #expect(messages.contains { $0.hasPrefix("READY=1") }, "\(messages)")
        #expect(messages.contains { $0.contains("STATUS=") })
        #expect(messages.contains { $0 == "WATCHDOG=1" }, "WATCHDOG=1 at half of WATCHDOG_USEC: \(messages)")
        #expect(messages.contains { $0.hasPrefix("STOPPING=1") })

        let (cli, obj) = try SluiceBinary.json(["status", "acme"], config: dir.sub("agent.conf"))
        #expect(cli.status == 0, "\(cli.stderr)")
        let row = try #require((obj as? [[String: Any]])?.first)
        #expect(row["versions"] as? Int == 8 && row["failed_transforms"] as? Int == 0 && row["last_success"] is String, "\(row)")
        let audit = try SluiceBinary.run(["audit"], config: dir.sub("agent.conf"))
        #expect(audit.status == 0, "\(audit.stdout)")
    }

    /// 20,000 files renamed in at once, with inotify's queue made small so it overflows:
    /// the rescan still ingests every one, once.
    @Test func aBurstThatOverflowsInotifyIsStillIngested() throws {
        let dir = TempDir("daemon-burst")
        let port = try SSHServer.freePort()
        Self.folderConfig(dir, port: port)
        let limit = "/proc/sys/fs/inotify/max_queued_events"
        let old = try? String(contentsOfFile: limit, encoding: .utf8)
        // A small queue (the limit applies to instances created after it is set).
        let lowered = (try? "512\n".write(toFile: limit, atomically: false, encoding: .utf8)) != nil
        let d = try DaemonProcess(dir: dir, port: port)
        defer { if lowered, let old { try? old.write(toFile: limit, atomically: false, encoding: .utf8) } }
        try d.waitReady()
        if lowered, let old { try? old.write(toFile: limit, atomically: false, encoding: .utf8) }
        let count = 20_000
        try FileManager.default.createDirectory(atPath: dir.sub("staging"), withIntermediateDirectories: true)
        for i in 0..<count {
            let name = "f\(i).txt"
            let fd = open(dir.sub("staging/\(name)"), O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            _ = "file \(i)\n".withCString { write(fd, $0, strlen($0)) }
            close(fd)
        }
        // The agent is stopped while the files come in, so the queue (512, or the default 16,384)
        // overflows whatever the speed of its reader thread.
        d.signal(SIGSTOP)
        for i in 0..<count { rename(dir.sub("staging/f\(i).txt"), dir.sub("drop-acme/f\(i).txt")) }
        d.signal(SIGCONT)
        #expect(eventually(240) { versionCount(dir) >= count }, "\(versionCount(dir)) of \(count); log: \(d.log.suffix(2000))")
        #expect(versionCount(dir) == count, "nothing is ingested twice")
        #expect(d.log.contains("overflowed"), "the burst overflowed the queue and was rescanned")
        d.signal(SIGTERM)
        #expect(d.waitForExit(seconds: 60) == 0)
    }

    /// SIGHUP with a new client starts it; SIGHUP with a broken config is logged and the agent
    /// keeps running on the old one.
    @Test func sighupAddsAClientAndABrokenConfigKeepsTheOldOne() throws {
        let dir = TempDir("daemon-reload")
        let port = try SSHServer.freePort()
        Self.folderConfig(dir, port: port)
        // As under systemd: journald levels, no timestamps, and a notify socket.
        let notify = try NotifySocket(dir: dir)
        let d = try DaemonProcess(dir: dir, port: port, environment: ["JOURNAL_STREAM": "8:12345", "NOTIFY_SOCKET": notify.path])
        try d.waitReady()
        #expect(d.log.hasPrefix("<5>notice Sluice is running"), "\(d.log)")
        Self.folderConfig(dir, port: port, clients: ["acme", "globex"])
        d.signal(SIGHUP)
        #expect(eventually(10) { (d.status()["sources"] as? [Any])?.count == 2 }, "\(d.status())")
        Self.renameIn(dir, "drop-globex/g.csv", "x\n")
        #expect(eventually(10) { versionCount(dir, client: "globex") == 1 }, "\(d.log)")
        let reloadMessages = notify.drain()
        let reloading = reloadMessages.firstIndex { $0.hasPrefix("RELOADING=1") }
        #expect(reloading != nil && reloadMessages[(reloading ?? 0)...].contains { $0.hasPrefix("READY=1") },
                "RELOADING=1, then READY=1: \(reloadMessages)")

        dir.write("agent.conf", DaemonProcess.agentTable(port: port) + "[clients.acme.sources.drop]\ntype = \"ftp\"\n")
        d.signal(SIGHUP)
        #expect(eventually(10) { d.log.contains("<3>error Reload failed") }, "\(d.log)")
        #expect(d.log.contains("agent.conf") && d.log.contains("clients.acme.sources.drop.type"), "the error names the file and key: \(d.log)")
        #expect(d.waitForExit(seconds: 0.5) == nil, "still running")
        Self.renameIn(dir, "drop-globex/a.csv", "y\n")
        #expect(eventually(10) { versionCount(dir, client: "globex") == 2 }, "the old config is still in use")
        d.signal(SIGTERM)
        #expect(d.waitForExit(seconds: 30) == 0)
    }

    /// A drop folder that is missing at start is reported in /status, and watched as soon as it
    /// appears (not only at the next rescan).
    @Test func aDropFolderCreatedAfterStartIsWatched() throws {
        let dir = TempDir("daemon-late")
        let port = try SSHServer.freePort()
        Self.folderConfig(dir, port: port)
        try FileManager.default.removeItem(atPath: dir.sub("drop-acme"))
        let d = try DaemonProcess(dir: dir, port: port)
        try d.waitReady()
        #expect(eventually(10) {
            ((d.status()["sources"] as? [[String: Any]])?.first?["last_error"] as? String ?? "").contains("does not exist")
        }, "\(d.status())")
        try FileManager.default.createDirectory(atPath: dir.sub("drop-acme"), withIntermediateDirectories: true)
        usleep(600_000)  // the watch is retried every 250 ms
        Self.renameIn(dir, "drop-acme/late.csv", "1\n")
        #expect(eventually(10) { versionCount(dir) == 1 }, "\(d.log)")
        d.signal(SIGTERM)
        #expect(d.waitForExit(seconds: 30) == 0)
    }

    /// SIGTERM in the middle of a large ingest: exit 0, nothing partial in the manifest or the
    /// lake (audit is clean), and a later pull stores the rest exactly once.
    @Test func sigtermDuringALargeIngestExitsZeroAndLeavesNoPartialVersion() throws {
        let dir = TempDir("daemon-term")
        let port = try SSHServer.freePort()
        Self.folderConfig(dir, port: port, minAge: "0s", agentExtra: "")
        let count = 3000
        for i in 0..<count { dir.write("drop-acme/p\(i % 10)/f\(i).txt", String(repeating: "row \(i)\n", count: 50)) }
        let big = open(dir.sub("drop-acme/big.bin"), O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        let chunk = [UInt8](repeating: 0x61, count: 1 << 20)
        for _ in 0..<300 { _ = chunk.withUnsafeBytes { write(big, $0.baseAddress, $0.count) } }
        close(big)
        for i in 0..<count { age(dir.sub("drop-acme/p\(i % 10)/f\(i).txt"), seconds: 60) }
        age(dir.sub("drop-acme/big.bin"), seconds: 60)
        let d = try DaemonProcess(dir: dir, port: port)
        try d.waitReady()
        _ = eventually(10) { versionCount(dir) > 0 }
        d.signal(SIGTERM)
        #expect(d.waitForExit(seconds: 60) == 0, "\(d.log)")
        let stored = versionCount(dir)
        #expect(stored < count + 1, "the shutdown came while files were still being ingested (\(stored) stored)")
        let audit = try SluiceBinary.run(["audit"], config: dir.sub("agent.conf"))
        #expect(audit.status == 0, "no partial version, no orphan: \(audit.stdout)")
        let pull = try SluiceBinary.run(["pull", "acme"], config: dir.sub("agent.conf"))
        #expect(pull.status == 0, "\(pull.stderr)")
        #expect(versionCount(dir) == count + 1, "each file stored exactly once")
    }

    /// The SFTP schedule against the test sshd: files are fetched every poll_interval; with
    /// the server stopped the source backs off; once it is back, polling resumes.
    @Test(.enabled(if: SSHServer.available, "needs /usr/sbin/sshd"))
    func sftpSourcesArePolledAndBackOffWhileTheServerIsDown() throws {
        let dir = TempDir("daemon-sftp")
        let port = try SSHServer.freePort()
        let server = try SSHServer()
        dir.write("agent.conf", DaemonProcess.agentTable(port: port) + server.sourceTable(extra: "poll_interval = \"1s\"\nconnect_timeout = \"2s\""))
        let trusted = try SFTPTests.trust(dir)
        #expect(trusted.status == 0, "\(trusted.stderr)")
        server.serve("a.csv", "1\n")
        let d = try DaemonProcess(dir: dir, port: port)
        try d.waitReady()
        #expect(eventually(15) { versionCount(dir) == 1 }, "\(d.log)")
        server.serve("b.csv", "2\n")
        #expect(eventually(15) { versionCount(dir) == 2 }, "the next poll fetches a new file: \(d.log)")

        server.stop()
        #expect(eventually(20) {
            let s = (d.status()["sources"] as? [[String: Any]])?.first
            return (s?["consecutive_failures"] as? Int ?? 0) >= 2 && s?["state"] as? String == "backoff"
        }, "\(d.status())")
        let failing = (d.status()["sources"] as? [[String: Any]])?.first
        #expect(failing?["last_error"] is String && failing?["next_poll"] is String)
        #expect(d.log.contains("backing off"), "\(d.log)")

        try server.restart()
        server.serve("c.csv", "3\n")
        #expect(eventually(40) { versionCount(dir) == 3 }, "polling resumes after the backoff: \(d.log)")
        d.signal(SIGTERM)
        #expect(d.waitForExit(seconds: 30) == 0)
        withExtendedLifetime(server) {}
    }
}
