import Foundation
import SluiceAgent
import SluiceLake
import Synchronization
import SluiceTestSupport
import Testing
import SluiceSupport
import SluiceIngest
import SluiceConfig
import SluiceSources
import SluiceTransform
import SluiceFormats
#if canImport(Glibc)
import Glibc
#endif

/// The SFTP source against a real OpenSSH server on loopback.
@Suite(.enabled(if: SSHServer.available, "needs OpenSSH's sshd (apt-get install openssh-server)"))
struct SFTPTests {
    /// A client folder with one sftp source for `server` (plus `extra` config lines).
    static func setUp(_ server: SSHServer, auth: String? = nil, minAge: String = "0s", extra: String = "") -> TempDir {
        let dir = TempDir("sftp")
        dir.config(tables: server.sourceTable(auth: auth, minAge: minAge, extra: extra))
        return dir
    }

    static func trust(_ dir: TempDir, extra: [String] = []) throws -> Shell.Result {
        try SluiceBinary.run(["trust", "acme", "--yes"] + extra, config: dir.sub("agent.conf"))
    }

    static func pull(_ dir: TempDir) throws -> (Shell.Result, [String: Any]) {
        let (r, obj) = try SluiceBinary.json(["pull", "acme"], config: dir.sub("agent.conf"))
        return (r, obj as? [String: Any] ?? [:])
    }

    static func files(_ report: [String: Any]) -> [String: [String: Any]] {
        var out: [String: [String: Any]] = [:]
        for f in report["files"] as? [[String: Any]] ?? [] { out[f["path"] as! String] = f }
        return out
    }

    static func sourceErrors(_ report: [String: Any]) -> String {
        (report["source_errors"] as? [[String: String]] ?? []).map { $0["error"] ?? "" }.joined(separator: "\n")
    }

    /// The fingerprint OpenSSH's own ssh-keygen prints for a public key file.
    static func fingerprint(_ pub: String) throws -> String {
        let r = try Shell.run("/usr/bin/ssh-keygen", ["-l", "-E", "sha256", "-f", pub])
        return String(r.stdout.split(separator: " ")[1])
    }

    @Test func unknownHostIsRefusedThenTrustedAndOpenSSHAcceptsTheFile() throws {
        let server = try SSHServer()
        server.serve("orders.csv", "id\n1\n")
        let dir = Self.setUp(server)

        let (refused, report) = try Self.pull(dir)
        #expect(refused.status == 1)
        let message = Self.sourceErrors(report)
        #expect(message.contains("not trusted"))
        #expect(message.contains(try Self.fingerprint(server.hostKey + ".pub")))
        #expect(message.contains("ssh-ed25519"))
        #expect(message.contains("sluice trust acme"))
        #expect(message.contains("127.0.0.1:\(server.port)"))
        #expect(!FileManager.default.fileExists(atPath: dir.sub("lake/raw/acme")), "nothing may be downloaded from an untrusted host")

        // Without --yes and without an answer on stdin, nothing is written.
        let declined = try SluiceBinary.run(["trust", "acme"], config: dir.sub("agent.conf"))
        #expect(declined.status == 1)
        #expect(declined.stdout.contains(try Self.fingerprint(server.hostKey + ".pub")))
        #expect(!FileManager.default.fileExists(atPath: dir.sub("state/known_hosts")))

        let trusted = try Self.trust(dir)
        #expect(trusted.status == 0, "\(trusted.stdout)\(trusted.stderr)")
        let knownHosts = try String(contentsOfFile: dir.sub("state/known_hosts"), encoding: .utf8)
        #expect(knownHosts.hasPrefix("[127.0.0.1]:\(server.port) ssh-ed25519 AAAA"))

        // OpenSSH's own client accepts the file sluice wrote, with strict checking.
        let batch = dir.write("batch", "ls\n")
        let sftp = try Shell.run("/usr/bin/sftp", [
            "-b", batch, "-P", "\(server.port)", "-i", server.clientKey,
            "-o", "UserKnownHostsFile=\(dir.sub("state/known_hosts"))", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", "-o", "GlobalKnownHostsFile=/dev/null",
            "\(SSHServer.user)@127.0.0.1:\(server.served)",
        ])
        #expect(sftp.status == 0, "OpenSSH refused the known_hosts sluice wrote: \(sftp.stderr)")
        #expect(sftp.stdout.contains("orders.csv"))

        let (ok, pulled) = try Self.pull(dir)
        #expect(ok.status == 0, "\(ok.stderr)")
        #expect(pulled["new"] as? Int == 1)
        let lakeFile = dir.sub("lake/raw/acme/outbox/orders.v1.csv")
        #expect(try String(contentsOfFile: lakeFile, encoding: .utf8) == "id\n1\n")

        // Trusting again is a no-op.
        let again = try Self.trust(dir)
        #expect(again.status == 0)
        #expect(again.stdout.contains("already trusted"))
    }

    @Test func aChangedHostKeyIsRefusedLoudlyAndTouchesNothing() throws {
        let server = try SSHServer()
        let dir = Self.setUp(server, extra: "after_ingest = \"delete\"")
        #expect(try Self.trust(dir).status == 0)
        let port = server.port
        server.stop()
        // Same port, same folder, another host key: what a man in the middle looks like.
        let impostor = try SSHServer(port: port)
        let file = impostor.serve("orders.csv", "id\n1\n")
        dir.config(tables: impostor.sourceTable(extra: "after_ingest = \"delete\""))

        let (refused, report) = try Self.pull(dir)
        #expect(refused.status == 1)
        let message = Self.sourceErrors(report)
        #expect(message.contains("CHANGED"))
        #expect(message.contains("man-in-the-middle"))
        #expect(message.contains(try Self.fingerprint(impostor.hostKey + ".pub")))
        #expect(FileManager.default.fileExists(atPath: file), "nothing on the server may be touched")
        #expect(!FileManager.default.fileExists(atPath: dir.sub("lake/raw/acme")))

        let noReplace = try Self.trust(dir)
        #expect(noReplace.status == 1)
        #expect(noReplace.stdout.contains("--replace"))

        let replaced = try Self.trust(dir, extra: ["--replace"])
        #expect(replaced.status == 0, "\(replaced.stdout)")
        let lines = try String(contentsOfFile: dir.sub("state/known_hosts"), encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 1, "the old key is replaced, not kept beside the new one")
        let (ok, _) = try Self.pull(dir)
        #expect(ok.status == 0, "\(ok.stderr)")
        #expect(!FileManager.default.fileExists(atPath: file), "after_ingest delete runs once the version is committed")
    }

    @Test func knownHostsFileKeepsForeignLinesAndUnderstandsHashedNames() throws {
        let server = try SSHServer()
        let dir = Self.setUp(server)
        // A hashed entry for this host, as `ssh-keygen -H` writes it, plus a marker line and a comment.
        let plain = "[127.0.0.1]:\(server.port) \(try String(contentsOfFile: server.hostKey + ".pub", encoding: .utf8).split(separator: " ")[0...1].joined(separator: " "))"
        dir.write("kh", "# kept\n@cert-authority *.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB1f4BvXvCTTtpb8mLZJzZrQpDsHSNrbMRaHbkUb+a6E\n\(plain)\n")
        let hashed = try Shell.run("/usr/bin/ssh-keygen", ["-H", "-f", dir.sub("kh")])
        #expect(hashed.status == 0, "\(hashed.stderr)")
        dir.config(tables: server.sourceTable(extra: "known_hosts = \"kh\""))
        server.serve("a.csv", "a")
        let (ok, _) = try Self.pull(dir)
        #expect(ok.status == 0, "a hashed known_hosts entry must be understood: \(ok.stderr)")
        let text = try String(contentsOfFile: dir.sub("kh"), encoding: .utf8)
        #expect(text.contains("|1|"))
        #expect(text.contains("@cert-authority"))
    }

    @Test func aKeyTheServerDoesNotKnowIsRefusedNamingTheMethods() throws {
        let server = try SSHServer()
        let stranger = TempDir("sftp")
        try SSHServer.keygen(stranger.sub("other_key"))
        stranger.config(tables: server.sourceTable(auth: "identity_file = \"other_key\""))
        #expect(try Self.trust(stranger).status == 0)
        let (r, report) = try Self.pull(stranger)
        #expect(r.status == 1)
        let message = Self.sourceErrors(report)
        #expect(message.contains("authentication refused"))
        #expect(message.contains("the server offers publickey"))
        #expect(message.contains("tried publickey"))
        #expect(message.contains(server.served), "errors name the remote path")
        #expect(message.hasPrefix("acme/outbox \(SSHServer.user)@127.0.0.1:\(server.port):"), "errors name the client, source and host: \(message)")
    }

    @Test func keyFileProblemsAreNamed() throws {
        let server = try SSHServer()
        let dir = Self.setUp(server, auth: "identity_file = \"missing_key\"")
        #expect(try Self.trust(dir).status == 0)
        let (missing, report) = try Self.pull(dir)
        #expect(missing.status == 1)
        #expect(Self.sourceErrors(report).contains("identity_file \(dir.sub("missing_key")) cannot be read"))

        // An encrypted key with the wrong passphrase.
        try SSHServer.keygen(dir.sub("locked"), passphrase: "right horse")
        try Data(contentsOf: URL(fileURLWithPath: dir.sub("locked.pub"))).write(to: URL(fileURLWithPath: server.dir.sub("authorized_keys")))
        dir.write("pass", "wrong horse\n")
        dir.config(tables: server.sourceTable(auth: "identity_file = \"locked\"\npassphrase_file = \"pass\""))
        let (wrong, wrongReport) = try Self.pull(dir)
        #expect(wrong.status == 1)
        #expect(Self.sourceErrors(wrongReport).contains("wrong passphrase"))

        dir.write("pass", "right horse\n")
        server.serve("a.csv", "a")
        chmod(dir.sub("locked"), 0o644)
        let (right, _) = try Self.pull(dir)
        #expect(right.status == 0, "\(right.stderr)")
        #expect(right.stderr.contains("readable by group or others"), "a key others can read is warned about")
    }

    @Test(.enabled(if: isRoot, "password logins go through PAM, which needs root"))
    func passwordLogin() throws {
        let server = try SSHServer(login: .password)
        let dir = TempDir("sftp")
        dir.write("secrets/pw", SSHServer.password + "\n")
        dir.config(tables: server.sourceTable(auth: "password_file = \"secrets/pw\""))
        server.serve("a.csv", "a")
        #expect(try Self.trust(dir).status == 0)
        let (ok, _) = try Self.pull(dir)
        #expect(ok.status == 0, "\(ok.stderr)")
        #expect(!ok.stderr.contains(SSHServer.password), "secrets are never logged")

        dir.write("secrets/pw", "not it\n")
        server.serve("b.csv", "b")
        let (refused, report) = try Self.pull(dir)
        #expect(refused.status == 1)
        #expect(Self.sourceErrors(report).contains("tried password"))
    }

    @Test(.enabled(if: isRoot, "keyboard-interactive logins go through PAM, which needs root"))
    func keyboardInteractiveLogin() throws {
        let server = try SSHServer(login: .keyboardInteractive)
        let dir = TempDir("sftp")
        dir.write("pw", SSHServer.password)
        dir.config(tables: server.sourceTable(auth: "password_file = \"pw\""))
        server.serve("deep/a.csv", "a")
        #expect(try Self.trust(dir).status == 0)
        let (ok, report) = try Self.pull(dir)
        #expect(ok.status == 0, "\(ok.stderr)")
        #expect(report["new"] as? Int == 1)
    }

    @Test func includeExcludeNestedFoldersAndMinAge() throws {
        let server = try SSHServer()
        server.serve("orders_1.csv", "1")
        server.serve("exports/2026/11/orders_2.csv", "2")
        server.serve("exports/2026/11/notes.txt", "not a csv")
        server.serve("exports/2026/11/orders_3.csv.part", "partial")
        server.serve(".hidden.csv", "hidden")
        server.serve("archive/orders_old.csv", "excluded folder")
        server.serve("fresh.csv", "just written", age: 0)
        let dir = Self.setUp(server, minAge: "30s", extra: "include = [\"**/*.csv\"]\nexclude = [\"*.part\", \".*\", \"/archive/**\"]")
        #expect(try Self.trust(dir).status == 0)
        let (r, report) = try Self.pull(dir)
        #expect(r.status == 0, "\(r.stderr)")
        let files = Self.files(report)
        #expect(Set(files.keys) == ["orders_1.csv", "exports/2026/11/orders_2.csv", "fresh.csv"])
        #expect(files["fresh.csv"]?["status"] as? String == "skipped")
        #expect((files["fresh.csv"]?["error"] as? String)?.contains("min_age") == true)
        #expect(report["new"] as? Int == 2)

        // Once it is old enough, the fresh file comes in; the others are not fetched again.
        age(server.served + "/fresh.csv", seconds: 120)
        let (r2, report2) = try Self.pull(dir)
        #expect(r2.status == 0)
        #expect(report2["new"] as? Int == 1)
        #expect(report2["unchanged"] as? Int == 2)
    }

    @Test func afterIngestDeleteAndMove() throws {
        let server = try SSHServer()
        server.serve("a.csv", "a")
        server.serve("sub/b.csv", "b")
        let dir = Self.setUp(server, extra: "after_ingest = \"delete\"")
        #expect(try Self.trust(dir).status == 0)
        let (r, report) = try Self.pull(dir)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(report["new"] as? Int == 2)
        #expect(!FileManager.default.fileExists(atPath: server.served + "/a.csv"))
        #expect(!FileManager.default.fileExists(atPath: server.served + "/sub/b.csv"))
        #expect(try loadAgent(dir).history(client: "acme", path: nil).count == 2)

        let moving = TempDir("sftp")
        moving.config(tables: server.sourceTable(extra: "after_ingest = \"move:done\""))
        moving.write("state/known_hosts", try String(contentsOfFile: dir.sub("state/known_hosts"), encoding: .utf8))
        server.serve("c.csv", "c")
        server.serve("sub/d.csv", "d")
        let (m, moved) = try Self.pull(moving)
        #expect(m.status == 0, "\(m.stderr)")
        #expect(moved["new"] as? Int == 2)
        #expect(FileManager.default.fileExists(atPath: server.served + "/done/c.csv"))
        #expect(FileManager.default.fileExists(atPath: server.served + "/done/sub/d.csv"))
        #expect(!FileManager.default.fileExists(atPath: server.served + "/c.csv"))
        // What was moved aside is never picked up again.
        let (again, againReport) = try Self.pull(moving)
        #expect(again.status == 0)
        #expect(againReport["new"] as? Int == 0)
    }

    @Test func aFailedAfterIngestKeepsTheVersionAndIsNotIngestedTwice() throws {
        let server = try SSHServer()
        server.serve("a.csv", "a")
        server.serve("done", "a file where the move folder should be")
        let dir = Self.setUp(server, extra: "after_ingest = \"move:done\"\ninclude = [\"*.csv\"]")
        #expect(try Self.trust(dir).status == 0)
        let (r, report) = try Self.pull(dir)
        #expect(r.status == 1, "an after_ingest failure is reported")
        let file = Self.files(report)["a.csv"]
        #expect(file?["status"] as? String == "new")
        #expect(file?["error"] as? String != nil)
        #expect(FileManager.default.fileExists(atPath: server.served + "/a.csv"))
        let (r2, report2) = try Self.pull(dir)
        #expect(r2.status == 1)
        #expect(report2["new"] as? Int == 0)
        #expect(try loadAgent(dir).history(client: "acme", path: "a.csv").count == 1)
    }

    /// 24 MiB is read sequentially on one session; 80 MiB is fetched in ranges over three.
    @Test(arguments: [24, 80])
    func aSessionKilledMidTransferLeavesNoPartialVersion(megabytes: Int) throws {
        let server = try SSHServer()
        var bytes = [UInt8](repeating: 0, count: megabytes << 20)
        for i in stride(from: 0, to: bytes.count, by: 4096) { bytes[i] = UInt8(truncatingIfNeeded: i >> 12) }
        server.serve("big.bin", Data(bytes))
        server.serve("small.csv", "small")
        let dir = Self.setUp(server, extra: "max_connections = 3")
        #expect(try Self.trust(dir).status == 0)
        let agent = try loadAgent(dir)
        let killed = Atomic<Bool>(false)
        let hooks = IngestHooks(afterFirstChunk: { c in
            if c.path.display == "big.bin", !killed.exchange(true, ordering: .relaxed) { server.killSessions() }
        })
        let report = try agent.pull(client: "acme", source: nil, hooks: hooks)
        let didKill = killed.load(ordering: .relaxed)
        #expect(didKill)
        let big = report.files.first { $0.path == "big.bin" }
        #expect(big?.status == .failed)
        #expect(big?.error?.contains("127.0.0.1:\(server.port)") == true, "\(big?.error ?? "")")
        #expect(big?.error?.contains("acme/outbox") == true)
        #expect(big?.error?.contains(server.served + "/big.bin") == true, "the remote path is named: \(big?.error ?? "")")
        #expect(!report.succeeded)
        #expect(try agent.history(client: "acme", path: "big.bin").isEmpty, "no partial version")
        #expect(try agent.audit(client: nil, quick: false).clean)
        #expect(Lake.listDirectory(dir.sub("lake/raw/acme/outbox")).allSatisfy { !$0.hasPrefix("big") })

        let (r, again) = try Self.pull(dir)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(Self.files(again)["big.bin"]?["status"] as? String == "new")
        #expect(try sha256(ofFile: dir.sub("lake/raw/acme/outbox/big.v1.bin")) == sha256(ofFile: server.served + "/big.bin"))
    }

    @Test func zeroByteManySmallAndOneLargeFile() throws {
        let server = try SSHServer()
        server.serve("empty.csv", Data())
        for i in 0..<2000 {
            server.serve("small/\(i % 20)/f\(i).csv", String(repeating: "row \(i)\n", count: 1 + i % 50))
        }
        let large = server.serve("large/100mb.bin", Data())
        #expect(try Shell.run("/bin/sh", ["-c", "head -c 100000000 /dev/urandom > '\(large)'"]).status == 0)
        age(large, seconds: 3600)
        let dir = Self.setUp(server, extra: "max_connections = 3")
        #expect(try Self.trust(dir).status == 0)
        let (r, report) = try Self.pull(dir)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(report["new"] as? Int == 2002)
        #expect(report["failed"] as? Int == 0)
        let lake = dir.sub("lake/raw/acme/outbox")
        #expect(try Data(contentsOf: URL(fileURLWithPath: "\(lake)/empty.v1.csv")).isEmpty)
        #expect(try sha256(ofFile: "\(lake)/large/100mb.v1.bin") == sha256(ofFile: server.served + "/large/100mb.bin"))
        #expect(try sha256(ofFile: "\(lake)/small/7/f1007.v1.csv") == sha256(ofFile: server.served + "/small/7/f1007.csv"))
        let audit = try SluiceBinary.run(["audit"], config: dir.sub("agent.conf"))
        #expect(audit.status == 0, "\(audit.stdout)")
        #expect(audit.stdout.contains("checked 2002, ok 2002"))

        // Same path, size and mtime: nothing is downloaded again.
        let (r2, again) = try Self.pull(dir)
        #expect(r2.status == 0)
        #expect(again["unchanged"] as? Int == 2002)
        #expect(again["new"] as? Int == 0)
    }

    @Test func oddRemoteNamesAndSymlinksStayInsideTheLake() throws {
        let server = try SSHServer()
        server.serve("-rf.csv", "dash")
        server.serve("..%2e.csv", "dots")
        let weird = server.served + "/we\u{1}ird\nname.csv"
        _ = FileManager.default.createFile(atPath: weird, contents: Data("weird".utf8))
        age(weird, seconds: 3600)
        let outside = TempDir("outside")
        outside.write("secret.csv", "outside")
        try FileManager.default.createSymbolicLink(atPath: server.served + "/escape.csv", withDestinationPath: outside.sub("secret.csv"))
        server.serve("real/target.csv", "inside")
        try FileManager.default.createSymbolicLink(atPath: server.served + "/link.csv", withDestinationPath: "real/target.csv")
        try FileManager.default.createSymbolicLink(atPath: server.served + "/loop", withDestinationPath: ".")
        let dir = Self.setUp(server, extra: "exclude = []")
        #expect(try Self.trust(dir).status == 0)
        let (r, report) = try Self.pull(dir)
        let files = Self.files(report)
        #expect(files["-rf.csv"]?["status"] as? String == "new")
        #expect(files["..%2e.csv"]?["status"] as? String == "new")
        #expect(files["link.csv"]?["status"] as? String == "new")
        #expect(files["escape.csv"]?["status"] as? String == "skipped")
        #expect((files["escape.csv"]?["error"] as? String)?.contains("outside remote_dir") == true)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(report["new"] as? Int == 5)
        for f in (report["files"] as? [[String: Any]] ?? []) {
            if let lakePath = f["lake_path"] as? String {
                #expect(lakePath.hasPrefix("raw/acme/outbox/"))
                #expect(!lakePath.split(separator: "/").contains(".."))
            }
        }
        #expect(try String(contentsOfFile: dir.sub("lake/raw/acme/outbox/link.v1.csv"), encoding: .utf8) == "inside")
        #expect(try SluiceBinary.run(["audit"], config: dir.sub("agent.conf")).status == 0)
    }

    @Test func pullRunsSFTPAndFolderSourcesTogether() throws {
        let server = try SSHServer()
        server.serve("remote.csv", "r")
        let dir = TempDir("sftp")
        dir.write("drop/local.csv", "l")
        age(dir.sub("drop/local.csv"), seconds: 60)
        dir.config(tables: server.sourceTable() + """
            [clients.acme.sources.drop]
            type = "folder"
            path = "drop"
            min_age = "0s"
            """)
        #expect(try Self.trust(dir).status == 0)
        let (r, report) = try Self.pull(dir)
        #expect(r.status == 0, "\(r.stderr)")
        let files = report["files"] as? [[String: Any]] ?? []
        #expect(Set(files.map { "\($0["source"]!)/\($0["path"]!)" }) == ["outbox/remote.csv", "drop/local.csv"])
        let history = try SluiceBinary.run(["history", "acme"], config: dir.sub("agent.conf"))
        #expect(history.stdout.contains("outbox/remote.csv"))
    }

    /// A server that offers no cipher Sluice does: the error names both lists.
    @Test func aFailedHandshakeIsReportedCleanly() throws {
        let server = try SSHServer(extraConfig: "Ciphers 3des-cbc")
        server.serve("a.csv", "a")
        let dir = Self.setUp(server)
        let trust = try Self.trust(dir)
        #expect(trust.status == 1)
        #expect(trust.stdout.contains("SSH handshake with 127.0.0.1:\(server.port) failed: no algorithm in common — cipher: the server offers 3des-cbc; "
                                      + "Sluice offers aes128-gcm@openssh.com, aes256-gcm@openssh.com, chacha20-poly1305@openssh.com"), "\(trust.stdout)\(trust.stderr)")
        #expect(!trust.stdout.contains("key exchange:") && !trust.stdout.contains("host key:"), "only what does not match is named")
        let (r, report) = try Self.pull(dir)
        #expect(r.status == 1)
        #expect(Self.sourceErrors(report).contains("handshake"))
    }

    @Test func anUnreachableServerOrMissingFolderIsASourceErrorNamingHostAndPath() throws {
        let server = try SSHServer()
        let dir = Self.setUp(server)
        #expect(try Self.trust(dir).status == 0)
        dir.config(tables: server.sourceTable(extra: "").replacingOccurrences(of: "remote_dir = \"\(server.served)\"", with: "remote_dir = \"/no/such/folder\""))
        let (missing, report) = try Self.pull(dir)
        #expect(missing.status == 1)
        #expect(Self.sourceErrors(report).contains("/no/such/folder"))
        #expect(Self.sourceErrors(report).contains("remote_dir does not exist"))

        let port = try SSHServer.freePort()
        dir.config(tables: server.sourceTable().replacingOccurrences(of: "port = \(server.port)", with: "port = \(port)"))
        let (down, downReport) = try Self.pull(dir)
        #expect(down.status == 1)
        #expect(Self.sourceErrors(downReport).contains("127.0.0.1:\(port)"))
        #expect(Self.sourceErrors(downReport).contains("cannot connect"))
    }
}
