import Crypto
import Foundation
import SluiceManifest
import SluiceSupport
import SluiceTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A receiver of alerts on loopback (Tests/support/alert_receiver.py): an HTTP server that
/// answers 500 to its first `fails` requests, or aiosmtpd with STARTTLS and AUTH. It records
/// every request it gets, one JSON object a line.
final class AlertReceiver: @unchecked Sendable {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("support/alert_receiver.py").path
    static var smtpAvailable: Bool { (try? Shell.run("/usr/bin/env", ["python3", "-c", "import aiosmtpd"]))?.status == 0 }

    let dir: TempDir
    let port: Int
    private var pid: pid_t = 0
    var log: String { dir.sub("received.jsonl") }

    init(port: Int? = nil, dir: TempDir = TempDir("receiver")) throws {
        self.dir = dir
        self.port = try port ?? SSHServer.freePort()
    }

    static var lineageAvailable: Bool { (try? Shell.run("/usr/bin/env", ["python3", "-c", "import openlineage.client"]))?.status == 0 }

    /// `lineage`: each body is also checked against openlineage-python's models of the spec.
    func startHTTP(fails: Int = 0, lineage: Bool = false) throws {
        pid = try spawnListener(["/usr/bin/env", "python3", Self.script, lineage ? "lineage" : "http", "\(port)", log, "\(fails)"],
                                log: dir.sub("receiver.out"), port: port, name: "alert receiver")
    }

    /// `implicitTLS`: SMTPS (TLS from the first byte) instead of STARTTLS.
    func startSMTP(user: String, password: String, implicitTLS: Bool = false) throws {
        try Shell.check("/usr/bin/openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                                             "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", dir.sub("key.pem"), "-out", dir.sub("cert.pem")])
        pid = try spawnListener(["/usr/bin/env", "python3", Self.script, implicitTLS ? "smtps" : "smtp", "\(port)", log, dir.sub("cert.pem"), dir.sub("key.pem"), user, password],
                                log: dir.sub("receiver.out"), port: port, name: "smtp receiver", seconds: 15)
    }

    func stop() {
        guard pid > 0 else { return }
        kill(pid, SIGKILL)
        var status: Int32 = 0
        _ = waitpid(pid, &status, 0)
        pid = 0
    }

    deinit { stop() }

    /// What it received so far.
    var received: [[String: Any]] {
        ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    /// An `[[alerts]]` webhook table that sends here.
    func webhook(name: String = "hook", events: [String]? = nil, path: String = "/", extra: String = "") -> String {
        "\n[[alerts]]\nname = \"\(name)\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:\(port)\(path)\"\n"
            + (events.map { "events = [\($0.map { "\"\($0)\"" }.joined(separator: ", "))]\n" } ?? "") + extra
    }

    /// An `[[alerts]]` email table named ops-mail that sends here as user sluice, trusting this
    /// receiver's certificate; `scheme` is "" (STARTTLS) or "smtps://".
    func email(scheme: String = "", to: [String], passwordFile: String, extra: String = "") -> String {
        """

        [[alerts]]
        name = "ops-mail"
        type = "email"
        smtp = "\(scheme)127.0.0.1:\(port)"
        from = "sluice@example.com"
        to = [\(to.map { "\"\($0)\"" }.joined(separator: ", "))]
        username = "sluice"
        password_file = "\(passwordFile)"
        ca_file = "\(dir.sub("cert.pem"))"
        \(extra)
        """
    }

    /// The alert events delivered (answered 200), decoded.
    var delivered: [[String: Any]] {
        received.filter { $0["status"] as? Int == 200 }.compactMap {
            try? JSONSerialization.jsonObject(with: Data(($0["body"] as? String ?? "").utf8)) as? [String: Any]
        }
    }
}

@Suite struct AlertTests {
    /// The outbox's rules on a real manifest: once per condition and target until resolved, a
    /// reminder after alert_repeat, a resolution only of what alerted.
    @Test func aConditionAlertsOnceUntilResolvedAndIsRemindedAfterAlertRepeat() throws {
        let dir = TempDir("alert-outbox")
        let m = try Manifest(path: dir.sub("manifest.sqlite"))
        m.alertRouting = AlertRouting(repeatNanoseconds: 3_600_000_000_000) { event, client in event == "source_failing" && client == "acme" ? ["a", "b"] : [] }
        let e = AlertEvent(event: "source_failing", severity: "critical", client: "acme", source: "drop", message: "down", id: "source_failing:acme/drop")
        try m.raiseAlerts([e])
        try m.raiseAlerts([e])
        func rows() throws -> [String] { try m.recentAlerts(limit: 100).reversed().map { "\($0.target) \($0.resolved) \(AlertEvent(json: $0.body)?.message ?? "")" } }
        #expect(try rows() == ["a false down", "b false down"])
        // Not routed anywhere: nothing queued.
        try m.raiseAlerts([AlertEvent(event: "source_failing", severity: "critical", client: "other", message: "down", id: "source_failing:other/x")])
        #expect(try rows().count == 2)
        #expect(try m.queueReminders(now: nowNanoseconds()) == 0)
        #expect(try m.queueReminders(now: nowNanoseconds() + 3_600_000_000_001) == 1)
        #expect(try rows().suffix(2) == ["a false Still open: down", "b false Still open: down"])
        try m.raiseAlerts([e.resolution("up")])
        try m.raiseAlerts([e.resolution("up")])
        try m.raiseAlerts([AlertEvent(event: "source_failing", severity: "critical", client: "acme", message: "", id: "source_failing:acme/never").resolution("up")])
        #expect(try rows().count == 6 && rows().suffix(2) == ["a true up", "b true up"])
        try m.raiseAlerts([e])
        #expect(try rows().count == 8, "raised again after its resolution, it alerts anew")
        let due = try m.dueAlerts()
        // The reminders were queued for the hour they were made for: not due yet.
        #expect(try due.count == 6 && m.nextAlertDue() != nil)
        try m.markAlertSent(due[0].id)
        try m.markAlertFailed(due[1].id, error: "boom", nextAttemptAt: nowNanoseconds() + 60_000_000_000)
        #expect(try m.dueAlerts().count == 4 && m.recentAlerts(pendingOnly: true).count == 7)
        // Pruning forgets only what was sent.
        #expect(try m.pruneSentAlerts(before: "2999-01-01T00:00:00Z") == 1 && m.recentAlerts(limit: 100).count == 7)
    }

    static let mapping = """
        [datasets.orders]
        match = ["orders_*.csv"]
        format = "csv"
        max_reject_ratio = 0
        fields = [
          { name = "id", source = "id", type = "int64", required = true },
          { name = "amount", source = "amount", type = "decimal(10,2)" },
        ]

        [datasets.events]
        match = ["events_*.json"]
        format = "json"
        records = "items"
        fields = [
          { name = "id", source = "id", type = "int64" },
        ]
        """

    @Test func badAlertConfigIsRefusedNamingTheKey() throws {
        let dir = TempDir("alert-config")
        let cases: [(String, String)] = [
            ("[[alerts]]\nname = \"a\"\ntype = \"pager\"\nurl = \"https://x.example/\"", "alerts[0].type"),
            ("[[alerts]]\nname = \"a\"\ntype = \"webhook\"", "missing required key 'url'"),
            ("[[alerts]]\nname = \"a\"\ntype = \"webhook\"\nurl = \"ftp://x.example/\"", "alerts[0].url"),
            ("[[alerts]]\nname = \"a\"\ntype = \"webhook\"\nurl = \"https://x.example/\"\nevents = [\"transform_failed\", \"file_lost\"]", "alerts[0].events[1]"),
            ("[[alerts]]\nname = \"a\"\ntype = \"slack\"\nurl = \"https://x.example/\"\nclients = [\"nobody\"]", "alerts[0].clients[0]"),
            ("[[alerts]]\nname = \"a\"\ntype = \"slack\"\nurl = \"https://x.example/\"\nsecret_file = \"k\"", "alerts[0].secret_file"),
            ("[[alerts]]\nname = \"a\"\ntype = \"email\"\nsmtp = \"mail:587\"\nfrom = \"s@example.com\"\nto = []", "alerts[0].to"),
            ("[[alerts]]\nname = \"a\"\ntype = \"email\"\nsmtp = \"mail\"\nfrom = \"s@example.com\"\nto = [\"o@example.com\"]", "alerts[0].smtp"),
            ("[[alerts]]\nname = \"a\"\ntype = \"email\"\nsmtp = \"mail:25\"\nfrom = \"s@example.com\"\nto = [\"o@example.com\"]\nusername = \"u\"", "alerts[0].password_file"),
            ("[[alerts]]\nname = \"a\"\ntype = \"webhook\"\nurl = \"https://x.example/\"\n[[alerts]]\nname = \"a\"\ntype = \"webhook\"\nurl = \"https://y.example/\"", "alerts[1].name"),
            ("[agent2]\n", "unknown key 'agent2'"),
        ]
        for (tables, key) in cases {
            dir.config(extra: "\n" + tables)
            let r = try SluiceBinary.run(["check-config"], config: dir.sub("agent.conf"))
            #expect(r.status == 2 && r.stderr.contains(key), "\(tables): \(r.status) \(r.stderr)")
        }
        dir.config(extra: "\n[[alerts]]\nname = \"ok\"\ntype = \"webhook\"\nurl = \"https://hooks.example/secret-path\"\nevents = [\"*\"]\nclients = [\"acme\"]")
        let ok = try SluiceBinary.run(["check-config"], config: dir.sub("agent.conf"))
        #expect(ok.status == 0 && ok.stdout.contains("alert ok  webhook https://hooks.example/…") && !ok.stdout.contains("secret-path"), "\(ok.stdout) \(ok.stderr)")
    }

    /// Failed, rejected and held transforms alert once each through a real `sluice run`, signed,
    /// retried through the receiver's 500s, and resolve when the file transforms ok.
    @Test func transformAlertsAreSignedRetriedDeduplicatedAndResolved() throws {
        let receiver = try AlertReceiver()
        try receiver.startHTTP(fails: 2)
        let dir = TempDir("alert-daemon")
        let port = try SSHServer.freePort()
        DaemonTests.folderConfig(dir, port: port, agentExtra: "alert_retry = \"1s\"")
        let secret = "s3cret-hmac-key-\(UUID().uuidString)"
        dir.write("secrets/webhook.key", secret + "\n")
        let conf = try String(contentsOfFile: dir.sub("agent.conf"), encoding: .utf8)
        dir.write("agent.conf", conf + receiver.webhook(name: "team-webhook", events: ["*"], path: "/sluice",
                                                        extra: "secret_file = \"secrets/webhook.key\"\nclients = [\"*\"]\n"))
        dir.write("mappings/acme.toml", Self.mapping)
        DaemonTests.renameIn(dir, "drop-acme/orders_1.csv", "id,amount\n1,2.50\nx,3.00\n")
        DaemonTests.renameIn(dir, "drop-acme/events_1.json", "{\"items\": [{\"id\": 1},")
        age(dir.sub("drop-acme/orders_1.csv"), seconds: 60)
        age(dir.sub("drop-acme/events_1.json"), seconds: 60)
        let d = try DaemonProcess(dir: dir, port: port)
        try d.waitReady()
        func events() -> [String] { receiver.delivered.map { "\($0["event"] ?? "")\($0["resolved"] as? Bool == true ? "/resolved" : "")" }.sorted() }
        #expect(eventually(30) { events() == ["reject_ratio_exceeded", "transform_failed"] }, "\(receiver.received) \(d.log)")
        // The first two attempts met a 500 and were tried again.
        #expect(receiver.received.filter { $0["status"] as? Int == 500 }.count == 2)
        for request in receiver.received {
            let headers = request["headers"] as? [String: String] ?? [:]
            let body = request["body"] as? String ?? ""
            let mac = HMAC<SHA256>.authenticationCode(for: Data(body.utf8), using: SymmetricKey(data: Data(secret.utf8)))
            #expect(headers["x-sluice-signature"] == "sha256=" + Data(mac).map { String(format: "%02x", $0) }.joined(), "\(headers)")
            #expect(headers["content-type"] == "application/json")
        }
        let failed = try #require(receiver.delivered.first { $0["event"] as? String == "transform_failed" })
        #expect(Set(failed.keys) == ["event", "severity", "client", "source", "dataset", "path", "version", "message", "at", "id", "resolved"])
        #expect(failed["client"] as? String == "acme" && failed["path"] as? String == "events_1.json" && failed["version"] as? Int == 1
                && failed["id"] as? String == "transform_failed:acme/drop/events_1.json" && (failed["at"] as? String)?.hasSuffix("Z") == true, "\(failed)")
        // The same condition again (another failing version of the file) alerts no more.
        DaemonTests.renameIn(dir, "drop-acme/events_1.json", "{\"items\": [{\"id\": 2}, {\"id\": 3},")
        #expect(eventually(30) { versionCount(dir) == 3 }, "\(d.log)")
        // A good version resolves it, with the same id.
        DaemonTests.renameIn(dir, "drop-acme/orders_1.csv", "id,amount\n1,2.50\n2,3.00\n3,4.00\n")
        #expect(eventually(30) { versionCount(dir) == 4 }, "\(d.log)")
        #expect(eventually(30) { events() == ["reject_ratio_exceeded", "reject_ratio_exceeded/resolved", "transform_failed"] },
                "\(events()) \((try? SluiceBinary.run(["alerts"], config: dir.sub("agent.conf")).stdout) ?? "") \(d.log)")
        let resolved = try #require(receiver.delivered.first { $0["resolved"] as? Bool == true })
        #expect(resolved["id"] as? String == "reject_ratio_exceeded:acme/drop/orders_1.csv")
        // `sluice alerts` shows them sent, with their attempts; the secret is never logged.
        let (r, list) = try SluiceBinary.json(["alerts"], config: dir.sub("agent.conf"))
        let rows = list as? [[String: Any]] ?? []
        #expect(r.status == 0 && rows.count == 3 && rows.allSatisfy { $0["state"] as? String == "sent" && $0["alert"] as? String == "team-webhook" }, "\(r.stdout)")
        #expect(rows.contains { ($0["attempts"] as? Int ?? 0) >= 2 }, "\(rows)")
        #expect(!d.log.contains(secret) && d.log.contains("Alert delivery failed"), "\(d.log)")
        d.signal(SIGTERM)
        #expect(d.waitForExit(seconds: 30) == 0)
    }

    /// An alert queued while its receiver is down outlives a SIGKILL of the daemon: it is
    /// delivered once the daemon is back and the receiver answers.
    @Test func anAlertQueuedBeforeASIGKILLIsStillDelivered() throws {
        let receiver = try AlertReceiver()
        let dir = TempDir("alert-kill")
        let port = try SSHServer.freePort()
        DaemonTests.folderConfig(dir, port: port, agentExtra: "alert_retry = \"1s\"")
        let conf = try String(contentsOfFile: dir.sub("agent.conf"), encoding: .utf8)
        dir.write("agent.conf", conf + receiver.webhook(events: ["transform_failed"]))
        dir.write("mappings/acme.toml", Self.mapping)
        DaemonTests.renameIn(dir, "drop-acme/events_1.json", "not json")
        age(dir.sub("drop-acme/events_1.json"), seconds: 60)
        var d = try DaemonProcess(dir: dir, port: port)
        try d.waitReady()
        func pending() -> [[String: Any]] {
            ((try? SluiceBinary.json(["alerts", "--pending"], config: dir.sub("agent.conf")).1) as? [[String: Any]]) ?? []
        }
        // Nothing listens: the alert waits in the outbox, its error recorded.
        #expect(eventually(30) { pending().contains { ($0["attempts"] as? Int ?? 0) >= 1 } }, "\(pending()) \(d.log)")
        #expect((pending().first?["last_error"] as? String ?? "").contains("127.0.0.1"), "\(pending())")
        d.signal(SIGKILL)
        _ = d.waitForExit(seconds: 10)
        try receiver.startHTTP()
        d = try DaemonProcess(dir: dir, port: port)
        try d.waitReady()
        #expect(eventually(30) { receiver.delivered.count >= 1 }, "\(d.log)")
        #expect(receiver.delivered.allSatisfy { $0["event"] as? String == "transform_failed" && $0["id"] as? String == "transform_failed:acme/drop/events_1.json" })
        #expect(eventually(10) { pending().isEmpty })
        d.signal(SIGTERM)
        #expect(d.waitForExit(seconds: 30) == 0)
    }

    /// A source that fails `alert_after_failures` polls in a row alerts once, and is resolved
    /// by the next poll that works.
    @Test(.enabled(if: MotoServer.available, "needs moto's S3 server"))
    func aFailingSourceAlertsOnceAndResolves() throws {
        let moto = try MotoServer()
        try moto.bucket("feeds")
        let receiver = try AlertReceiver()
        try receiver.startHTTP()
        let dir = TempDir("alert-source")
        let port = try SSHServer.freePort()
        dir.write("secrets/acme.s3", "[default]\naws_access_key_id = test\naws_secret_access_key = test\n")
        dir.write("agent.conf", DaemonProcess.agentTable(port: port, extra: "alert_after_failures = 2\nalert_retry = \"1s\"")
            + moto.sourceTable(bucket: "feeds", credentials: dir.sub("secrets/acme.s3"), extra: "poll_interval = \"1s\"\nmin_age = \"0s\"")
            + "\n[[alerts]]\nname = \"hook\"\ntype = \"slack\"\nurl = \"http://127.0.0.1:\(receiver.port)/services/T0/B0/secret\"\nevents = [\"source_failing\"]\n")
        let d = try DaemonProcess(dir: dir, port: port)
        try d.waitReady()
        #expect(eventually(15) { (d.status()["sources"] as? [[String: Any]])?.first?["last_success"] as? String != nil }, "\(d.log)")
        moto.kill()
        func texts() -> [String] { receiver.delivered.map { $0["text"] as? String ?? "" } }
        #expect(eventually(40) { texts().count == 1 }, "\(receiver.received) \(d.log)")
        #expect(texts().first?.hasPrefix("[CRITICAL] source_failing — acme/bucket") == true, "\(texts())")
        let blocks = receiver.delivered.first?["blocks"] as? [[String: Any]] ?? []
        #expect(blocks.first?["type"] as? String == "section" && blocks.count == 2, "\(blocks)")
        // More failed polls, no second alert.
        Thread.sleep(forTimeInterval: 4)
        #expect(texts().count == 1, "\(texts())")
        try moto.restart()
        try moto.bucket("feeds")
        #expect(eventually(40) { texts().count == 2 }, "\(receiver.received) \(d.log)")
        #expect(texts().last?.hasPrefix("Resolved: source_failing") == true, "\(texts())")
        #expect(!d.log.contains("/services/T0/B0/secret"))
        d.signal(SIGTERM)
        #expect(d.waitForExit(seconds: 30) == 0)
    }

    /// Email through aiosmtpd, which requires STARTTLS and AUTH: the test event arrives as
    /// text with the JSON attached; a wrong password fails with exit 1 and is never printed.
    @Test(.enabled(if: AlertReceiver.smtpAvailable, "needs aiosmtpd: pip install aiosmtpd"))
    func emailGoesOutOverSTARTTLSWithAuth() throws {
        let password = "pw-\(UUID().uuidString)"
        let receiver = try AlertReceiver()
        try receiver.startSMTP(user: "sluice", password: password)
        let dir = TempDir("alert-mail")
        dir.write("secrets/smtp.pass", password + "\n")
        dir.write("secrets/wrong.pass", "not-the-password\n")
        func config(_ passwordFile: String) {
            dir.config(extra: receiver.email(to: ["data-ops@example.com", "oncall@example.com"], passwordFile: passwordFile,
                                             extra: "events = [\"source_failing\", \"delivery_late\", \"audit_failed\"]"))
        }
        config("secrets/smtp.pass")
        let r = try SluiceBinary.run(["alerts", "test", "ops-mail"], config: dir.sub("agent.conf"))
        #expect(r.status == 0, "\(r.stdout) \(r.stderr)")
        let mail = try #require(receiver.received.first)
        #expect(mail["tls"] as? Bool == true && mail["login"] as? String == "sluice" && mail["from"] as? String == "sluice@example.com", "\(mail)")
        #expect(mail["to"] as? [String] == ["data-ops@example.com", "oncall@example.com"])
        let data = mail["data"] as? String ?? ""
        #expect(data.contains("Subject: [sluice] INFO: test") && data.contains("application/json") && data.contains("alert.json"), "\(data)")
        // The attachment is the event's JSON, base64.
        let base64 = data.components(separatedBy: "Content-Transfer-Encoding: base64").last?
            .components(separatedBy: "--").first?.replacingOccurrences(of: "\r\n", with: "").replacingOccurrences(of: "\n", with: "") ?? ""
        let event = Data(base64Encoded: base64).flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
        #expect(event?["event"] as? String == "test" && event?["id"] as? String == "test:ops-mail", "\(base64)")
        config("secrets/wrong.pass")
        let bad = try SluiceBinary.run(["alerts", "test", "ops-mail"], config: dir.sub("agent.conf"))
        #expect(bad.status == 1 && bad.stderr.contains("127.0.0.1:\(receiver.port)") && !bad.stderr.contains("not-the-password"), "\(bad.stderr)")
        #expect(!(r.stdout + r.stderr).contains(password))
        let unknown = try SluiceBinary.run(["alerts", "test", "pager"], config: dir.sub("agent.conf"))
        #expect(unknown.status == 2 && unknown.stderr.contains("ops-mail"), "\(unknown.stderr)")
    }

    /// `smtps://host:port`: TLS from the first byte, then AUTH.
    @Test(.enabled(if: AlertReceiver.smtpAvailable, "needs aiosmtpd: pip install aiosmtpd"))
    func emailGoesOutOverImplicitTLS() throws {
        let receiver = try AlertReceiver()
        try receiver.startSMTP(user: "sluice", password: "smtps-pass", implicitTLS: true)
        let dir = TempDir("alert-smtps")
        dir.write("secrets/smtp.pass", "smtps-pass\n")
        dir.config(extra: receiver.email(scheme: "smtps://", to: ["data-ops@example.com"], passwordFile: "secrets/smtp.pass"))
        let r = try SluiceBinary.run(["alerts", "test", "ops-mail"], config: dir.sub("agent.conf"))
        #expect(r.status == 0, "\(r.stdout) \(r.stderr) \((try? String(contentsOfFile: receiver.dir.sub("receiver.out"), encoding: .utf8)) ?? "")")
        let mail = receiver.received.first
        #expect(mail?["tls"] as? Bool == true && mail?["login"] as? String == "sluice" && (mail?["data"] as? String ?? "").contains("alert.json"), "\(String(describing: mail))")
    }
}

/// The events the one-shot commands raise and send before they exit: a held transform, an
/// audit, a changed host key, low disk space, each resolved by the command that sees it over.
@Suite struct OneShotAlertTests {
    static func setUp(_ receiver: AlertReceiver, _ dir: TempDir, agent: String = "", tables: String? = nil) {
        let hook = receiver.webhook()
        if let tables {
            dir.config(agent: agent, tables: tables + hook)
        } else {
            dir.write("agent.conf", "[agent]\nstate_dir = \"state\"\nlake_dir = \"lake\"\n\(agent)\n\n[clients.acme.sources.drop]\ntype = \"folder\"\npath = \"drop\"\nmin_age = \"0s\"\n" + hook)
        }
    }

    static func events(_ receiver: AlertReceiver, _ event: String) -> [String] {
        receiver.delivered.filter { $0["event"] as? String == event }.map { "\($0["id"] ?? "") \($0["resolved"] as? Bool == true ? "resolved" : "raised")" }
    }

    @Test func aHeldTransformAlertsAndItsRerunResolves() throws {
        let receiver = try AlertReceiver()
        try receiver.startHTTP()
        let dir = TempDir("alert-held")
        Self.setUp(receiver, dir)
        let mapping = """
            [datasets.orders]
            match = ["orders_*.csv"]
            format = "csv"
            POLICY
            fields = [
              { name = "id", source = "id", type = "int64", required = true },
            ]
            """
        dir.write("mappings/acme.toml", mapping.replacingOccurrences(of: "POLICY", with: "on_new_column = \"hold\""))
        dir.write("drop/orders_1.csv", "id\n1\n")
        #expect(try SluiceBinary.run(["pull", "acme"], config: dir.sub("agent.conf")).status == 0)
        dir.write("drop/orders_2.csv", "id,Extra\n2,x\n")
        _ = try SluiceBinary.run(["pull", "acme"], config: dir.sub("agent.conf"))
        #expect(Self.events(receiver, "transform_held") == ["transform_held:acme/drop/orders_2.csv raised"], "\(receiver.received)")
        let held = try #require(receiver.delivered.first { $0["event"] as? String == "transform_held" })
        #expect((held["message"] as? String ?? "").contains("Extra") && held["dataset"] as? String == "orders" && held["severity"] as? String == "warning", "\(held)")
        // The mapping now takes the new column: the re-run is ok and resolves the condition.
        dir.write("mappings/acme.toml", mapping.replacingOccurrences(of: "POLICY", with: "on_new_column = \"ignore\""))
        let rerun = try SluiceBinary.run(["transform", "acme", "--held"], config: dir.sub("agent.conf"))
        #expect(rerun.status == 0, "\(rerun.stdout) \(rerun.stderr)")
        #expect(Self.events(receiver, "transform_held") == ["transform_held:acme/drop/orders_2.csv raised", "transform_held:acme/drop/orders_2.csv resolved"])
    }

    @Test func aFailedAuditAlertsAndACleanOneResolves() throws {
        let receiver = try AlertReceiver()
        try receiver.startHTTP()
        let dir = TempDir("alert-audit")
        Self.setUp(receiver, dir)
        dir.write("drop/a.csv", "x\n1\n")
        #expect(try SluiceBinary.run(["pull", "acme"], config: dir.sub("agent.conf")).status == 0)
        let stray = dir.write("lake/raw/acme/drop/stray.v1.csv", "not in the manifest\n")
        let bad = try SluiceBinary.run(["audit"], config: dir.sub("agent.conf"))
        #expect(bad.status == 1)
        #expect(Self.events(receiver, "audit_failed") == ["audit_failed:* raised"], "\(receiver.received)")
        #expect((receiver.delivered.first?["message"] as? String ?? "").contains("1 orphan files"))
        // Running it again while it still fails sends nothing new.
        _ = try SluiceBinary.run(["audit"], config: dir.sub("agent.conf"))
        #expect(Self.events(receiver, "audit_failed").count == 1)
        try FileManager.default.removeItem(atPath: stray)
        #expect(try SluiceBinary.run(["audit"], config: dir.sub("agent.conf")).status == 0)
        #expect(Self.events(receiver, "audit_failed") == ["audit_failed:* raised", "audit_failed:* resolved"])
    }

    @Test func lowDiskSpaceAlertsAndResolves() throws {
        let receiver = try AlertReceiver()
        try receiver.startHTTP()
        let dir = TempDir("alert-disk")
        // No filesystem here is 99 % free: a pull raises disk_low for the lake's and the state's.
        Self.setUp(receiver, dir, agent: "min_free_space = \"99%\"")
        dir.write("drop/a.csv", "x\n1\n")
        _ = try SluiceBinary.run(["pull", "acme"], config: dir.sub("agent.conf"))
        let raised = Self.events(receiver, "disk_low")
        #expect(raised.count == 1 && raised[0].hasPrefix("disk_low:\(dir.sub("lake")) raised"), "\(raised)")
        #expect((receiver.delivered.first?["message"] as? String ?? "").contains("under min_free_space (99% of"), "\(receiver.delivered)")
        Self.setUp(receiver, dir, agent: "min_free_space = \"1B\"")
        _ = try SluiceBinary.run(["pull", "acme"], config: dir.sub("agent.conf"))
        #expect(Self.events(receiver, "disk_low").count == 2 && Self.events(receiver, "disk_low").last?.hasSuffix("resolved") == true, "\(receiver.delivered)")
    }

    @Test func aChangedHostKeyAlertsAndTheReplacedKeyResolves() throws {
        let receiver = try AlertReceiver()
        try receiver.startHTTP()
        let server = try SSHServer()
        let dir = TempDir("alert-hostkey")
        Self.setUp(receiver, dir, tables: server.sourceTable())
        #expect(try SFTPTests.trust(dir).status == 0)
        let port = server.port
        server.stop()
        let impostor = try SSHServer(port: port)
        _ = impostor.serve("orders.csv", "id\n1\n")
        Self.setUp(receiver, dir, tables: impostor.sourceTable())
        #expect(try SFTPTests.pull(dir).0.status == 1)
        #expect(Self.events(receiver, "host_key_changed") == ["host_key_changed:acme/outbox raised"], "\(receiver.received)")
        let e = try #require(receiver.delivered.first { $0["event"] as? String == "host_key_changed" })
        #expect(e["severity"] as? String == "critical" && (e["message"] as? String ?? "").contains("man-in-the-middle"), "\(e)")
        #expect(try SFTPTests.trust(dir, extra: ["--replace"]).status == 0)
        #expect(try SFTPTests.pull(dir).0.status == 0)
        #expect(Self.events(receiver, "host_key_changed") == ["host_key_changed:acme/outbox raised", "host_key_changed:acme/outbox resolved"])
    }
}
