import Foundation
import SluiceAgent
import SluiceTestSupport
import Testing
import SluiceSupport
import SluiceIngest
import SluiceConfig
import SluiceSources
import SluiceTransform
import SluiceFormats

@Suite struct ConfigTests {
    func parse(_ text: String) throws -> AgentConfig {
        try AgentConfig.parse(text: text, file: "/etc/sluice/agent.conf")
    }

    func error(_ text: String) -> ConfigError? {
        do {
            _ = try parse(text)
            return nil
        } catch let e as ConfigError {
            return e
        } catch {
            return nil
        }
    }

    let valid = """
        [agent]
        state_dir = "/var/lib/sluice"
        lake_dir = "lake"

        [clients.acme]
        display_name = "ACME Corp"

        [clients.acme.sources.drop]
        type = "folder"
        path = "/srv/dropbox/acme"
        include = ["**/*.csv"]
        recursive = false
        min_age = "5m"
        after_ingest = "move:done"
        """

    @Test func validConfigAndDefaults() throws {
        let c = try parse(valid)
        #expect(c.stateDir == "/var/lib/sluice")
        #expect(c.lakeDir == "/etc/sluice/lake")
        #expect(c.mappingsDir == "/etc/sluice/mappings")
        let acme = try #require(c.client("acme"))
        #expect(acme.displayName == "ACME Corp")
        guard let f = acme.sources[0].settings as? FolderSourceConfig else { Issue.record("not a folder"); return }
        #expect(f.minAgeNanoseconds == 300_000_000_000)
        #expect(!f.recursive)
        #expect(f.afterIngest == .move("done"))
        #expect(f.filter.accepts(file: Array("a.csv".utf8)))
        #expect(!f.filter.accepts(file: Array("a.txt".utf8)))
        #expect(!f.filter.accepts(file: Array("done/a.csv".utf8)))  // the move target is never re-ingested
    }

    @Test func durations() {
        #expect(DurationText.parseNanoseconds("500ms") == 500_000_000)
        #expect(DurationText.parseNanoseconds("1d") == 86_400_000_000_000)
        #expect(DurationText.parseNanoseconds("30") == nil)
        #expect(DurationText.parseNanoseconds("1.5s") == nil)
        #expect(DurationText.parseNanoseconds("30 s") == nil)
    }

    @Test func unknownKeyNamesKeyPathAndLine() throws {
        let e = try #require(error(valid.replacingOccurrences(of: "recursive = false", with: "recursive = false\ncolour = \"red\"")))
        #expect(e.keyPath == "clients.acme.sources.drop.colour")
        #expect(e.line == 13)
        #expect(e.description.hasPrefix("/etc/sluice/agent.conf:13: clients.acme.sources.drop.colour: unknown key"))
    }

    @Test func wrongTypeIsReported() throws {
        let e = try #require(error(valid.replacingOccurrences(of: "lake_dir = \"lake\"", with: "lake_dir = 5")))
        #expect(e.keyPath == "agent.lake_dir")
        #expect(e.line == 3)
        #expect(e.message.contains("expected a string, found an integer"))
        let e2 = try #require(error(valid.replacingOccurrences(of: "recursive = false", with: "recursive = \"no\"")))
        #expect(e2.keyPath == "clients.acme.sources.drop.recursive")
    }

    @Test func badDurationGlobIdAndAction() throws {
        let d = try #require(error(valid.replacingOccurrences(of: "\"5m\"", with: "\"5 minutes\"")))
        #expect(d.keyPath == "clients.acme.sources.drop.min_age")
        #expect(d.line == 13)
        let g = try #require(error(valid.replacingOccurrences(of: "\"**/*.csv\"", with: "\"[abc\"")))
        #expect(g.keyPath == "clients.acme.sources.drop.include[0]")
        let i = try #require(error(valid.replacingOccurrences(of: "clients.acme", with: "clients.Acme")))
        #expect(i.keyPath == "clients.Acme")
        let a = try #require(error(valid.replacingOccurrences(of: "move:done", with: "move:../out")))
        #expect(a.keyPath == "clients.acme.sources.drop.after_ingest")
        let t = try #require(error(valid.replacingOccurrences(of: "type = \"folder\"", with: "type = \"ftp\"")))
        #expect(t.keyPath == "clients.acme.sources.drop.type")
    }

    @Test func missingRequiredKeysAndEmptyClients() throws {
        let m = try #require(error(valid.replacingOccurrences(of: "state_dir = \"/var/lib/sluice\"", with: "")))
        #expect(m.keyPath == "agent")
        #expect(m.message.contains("state_dir"))
        let c = try #require(error("""
            [agent]
            state_dir = "s"
            lake_dir = "l"
            [clients.empty]
            display_name = "x"
            """))
        #expect(c.keyPath == "clients.empty")
        #expect(c.line == 4)
        #expect(c.message.contains("no sources"))
        let p = try #require(error(valid.replacingOccurrences(of: "path = \"/srv/dropbox/acme\"", with: "")))
        #expect(p.keyPath == "clients.acme.sources.drop")
    }

    @Test func syncMethodDefaultsToSyncfsAndIsChecked() throws {
        #expect(try parse(valid).syncMethod == .syncfs)
        let fsync = try parse(valid.replacingOccurrences(of: "lake_dir = \"lake\"", with: "lake_dir = \"lake\"\nsync_method = \"fsync\""))
        #expect(fsync.syncMethod == .fsync)
        let e = try #require(error(valid.replacingOccurrences(of: "lake_dir = \"lake\"", with: "lake_dir = \"lake\"\nsync_method = \"never\"")))
        #expect(e.keyPath == "agent.sync_method")
        #expect(e.line == 4)
    }

    @Test func syntaxErrorHasLine() throws {
        let e = try #require(error("[agent\nstate_dir = 1\n"))
        #expect(e.line == 1)
        #expect(e.message.contains("TOML syntax error"))
    }

    @Test func everyCommandExitsTwoOnABadConfig() throws {
        let dir = TempDir("cfg")
        dir.write("agent.conf", "[agent]\nstate_dir = \"s\"\nlake_dir = \"l\"\nbogus = 1\n")
        for args in [["check-config"], ["pull", "acme"], ["history", "acme"], ["audit"]] {
            let r = try SluiceBinary.run(args, config: dir.sub("agent.conf"))
            #expect(r.status == 2, "\(args)")
            #expect(r.stderr.contains("agent.conf:4: agent.bogus: unknown key 'bogus'"), "\(r.stderr)")
            #expect(!r.stderr.contains("Fatal error"))
        }
        let missing = try SluiceBinary.run(["check-config"], config: dir.sub("nope.conf"))
        #expect(missing.status == 2)
        #expect(missing.stderr.contains("nope.conf"))
    }

    @Test func checkConfigAcceptsTheShippedExamples() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        for file in ["agent.conf.example", "examples/agent.conf"] {
            let r = try SluiceBinary.run(["check-config"], config: root.appendingPathComponent(file).path)
            #expect(r.status == 0, "\(file): \(r.stderr)")
        }
    }

    static let sftpBase = """
        [agent]
        state_dir = "/var/lib/sluice"
        lake_dir = "/srv/lake"

        [clients.acme.sources.outbox]
        type = "sftp"
        host = "sftp.acme.example"
        user = "sluice"
        identity_file = "keys/acme"
        remote_dir = "/outbox/"

        """

    @Test func sftpSourceKeysAndDefaults() throws {
        let c = try parse(Self.sftpBase)
        guard let s = try #require(c.client("acme")).sources[0].settings as? SFTPSourceConfig else { Issue.record("not sftp"); return }
        #expect(s.port == 22)
        #expect(s.identityFile == "/etc/sluice/keys/acme")
        #expect(s.knownHosts == "/var/lib/sluice/known_hosts")
        #expect(s.remoteDir == "/outbox")
        #expect(s.maxConnections == 2)
        #expect(s.connectTimeoutNanoseconds == 15_000_000_000)
        #expect(s.ioTimeoutNanoseconds == 60_000_000_000)
        #expect(s.pollIntervalNanoseconds == 300_000_000_000)
        #expect(s.minAgeNanoseconds == 30_000_000_000)
        #expect(s.afterIngest == .keep)
        #expect(!s.filter.accepts(file: Array("x.part".utf8)))

        let full = try parse(Self.sftpBase + """
            port = 2222
            passphrase_file = "keys/acme.pass"
            password_file = "/run/secrets/pw"
            known_hosts = "kh"
            include = ["**/*.csv"]
            after_ingest = "move:done"
            max_connections = 10
            connect_timeout = "2s"
            io_timeout = "1m"
            poll_interval = "1h"
            """)
        guard let f = full.clients[0].sources[0].settings as? SFTPSourceConfig else { return }
        #expect(f.port == 2222 && f.passwordFile == "/run/secrets/pw" && f.knownHosts == "/etc/sluice/kh")
        #expect(f.afterIngest == .move("done"))
        #expect(!f.filter.accepts(file: Array("done/a.csv".utf8)))
    }

    @Test(arguments: [
        ("port = 0", "clients.acme.sources.outbox.port", "out of range"),
        ("port = \"22\"", "clients.acme.sources.outbox.port", "expected an integer"),
        ("max_connections = 11", "clients.acme.sources.outbox.max_connections", "1 to 10"),
        ("io_timeout = \"forever\"", "clients.acme.sources.outbox.io_timeout", "bad duration"),
        ("password = \"hunter2\"", "clients.acme.sources.outbox.password", "unknown key"),
        ("path = \"/x\"", "clients.acme.sources.outbox.path", "unknown key"),
    ])
    func badSFTPKeysAreNamed(line: String, key: String, message: String) throws {
        let e = try #require(error(Self.sftpBase + line))
        #expect(e.keyPath == key)
        #expect(e.description.contains(message), "\(e)")
    }

    @Test func sftpNeedsHostUserRemoteDirAndACredential() throws {
        let noHost = Self.sftpBase.replacingOccurrences(of: "host = \"sftp.acme.example\"\n", with: "")
        #expect(error(noHost)?.description.contains("missing required key 'host'") == true)
        let noUser = Self.sftpBase.replacingOccurrences(of: "user = \"sluice\"\n", with: "")
        #expect(error(noUser)?.description.contains("missing required key 'user'") == true)
        let noDir = Self.sftpBase.replacingOccurrences(of: "remote_dir = \"/outbox/\"\n", with: "")
        #expect(error(noDir)?.description.contains("missing required key 'remote_dir'") == true)
        let noAuth = Self.sftpBase.replacingOccurrences(of: "identity_file = \"keys/acme\"\n", with: "")
        let e = try #require(error(noAuth))
        #expect(e.description.contains("identity_file, password_file or both"))
        #expect(e.line == 5)
    }

    @Test func configComesFromTheEnvironmentWhenNotGiven() {
        #expect(AgentConfig.resolvePath(explicit: nil, environment: ["SLUICE_CONFIG": "/x.conf"]) == "/x.conf")
        #expect(AgentConfig.resolvePath(explicit: "/y.conf", environment: ["SLUICE_CONFIG": "/x.conf"]) == "/y.conf")
        #expect(AgentConfig.resolvePath(explicit: nil, environment: [:]) == "/etc/sluice/agent.conf")
    }

    /// `[api]` and `type = "http"`: defaults, sizes, and TLS required beyond loopback.
    @Test func uploadAPIKeys() throws {
        let base = "[agent]\nstate_dir = \"s\"\nlake_dir = \"l\"\n[clients.acme.sources.portal]\ntype = \"http\"\n"
        let off = try parse(base)
        #expect(off.api.listen.isEmpty && off.api.listenAddress == nil && off.api.maxUploadSize == 20 << 30 && off.api.maxConcurrentUploads == 16)
        guard let h = off.clients[0].sources[0].settings as? HTTPSourceConfig else {
            Issue.record("an http source")
            return
        }
        #expect(h.filter.accepts(file: Array("in/a.csv".utf8)) && !h.filter.accepts(file: Array(".hidden".utf8)))
        let on = try parse(base + "[api]\nlisten = \"127.0.0.1:8443\"\nmax_upload_size = \"512MiB\"\nmax_concurrent_uploads = 4\n")
        #expect(on.api.listenAddress?.port == 8443 && on.api.maxUploadSize == 512 << 20 && on.api.maxConcurrentUploads == 4 && on.api.tlsCert == nil)
        let tls = try parse(base + "[api]\nlisten = \"0.0.0.0:8443\"\ntls_cert = \"tls/c.pem\"\ntls_key = \"/k.pem\"\nmax_upload_size = 1000\n")
        #expect(tls.api.tlsCert == "/etc/sluice/tls/c.pem" && tls.api.tlsKey == "/k.pem" && tls.api.maxUploadSize == 1000)
        #expect(ByteSizeText.parse("20GiB") == 20 << 30 && ByteSizeText.parse("10GB") == 10_000_000_000 && ByteSizeText.parse("1.5GiB") == nil)
        #expect(ByteSizeText.format(20 << 30) == "20 GiB" && ByteSizeText.format(1000) == "1000 B")

        for (text, key, words) in [
            ("[api]\nlisten = \"0.0.0.0:8443\"\n", "api.tls_cert", "beyond loopback"),
            ("[api]\nlisten = \"127.0.0.1:8443\"\ntls_cert = \"c.pem\"\n", "api.tls_key", "go together"),
            ("[api]\nlisten = \"8443\"\n", "api.listen", "host:port"),
            ("[api]\nmax_upload_size = \"lots\"\n", "api.max_upload_size", "20GiB"),
            ("[api]\nmax_concurrent_uploads = 0\n", "api.max_concurrent_uploads", "out of range"),
            ("[api]\nport = 1\n", "api.port", "unknown"),
            ("[clients.acme.sources.portal.x]\n", "clients.acme.sources.portal.x", "unknown key"),
        ] {
            let e = error(base + text)
            #expect(e?.keyPath == key && e?.message.contains(words) == true, "\(text): \(String(describing: e))")
        }
        let badKey = error(base.replacingOccurrences(of: "type = \"http\"\n", with: "type = \"http\"\nmin_age = \"1s\"\n"))
        #expect(badKey?.keyPath == "clients.acme.sources.portal.min_age", "http sources take include and exclude only")
    }

    /// Files the listeners read at start: an unreadable TLS certificate or key, or a short admin
    /// token, fail check-config (and `sluice run`) with exit 2 naming the key; `pull --source`
    /// of an upload source says there is nothing to pull.
    @Test func listenerFilesAndUploadSourcesAreChecked() throws {
        let dir = TempDir("apiconf")
        let base = "[agent]\nstate_dir = \"state\"\nlake_dir = \"lake\"\nhttp_listen = \"0.0.0.0:9464\"\nADMIN\n[api]\nlisten = \"0.0.0.0:8443\"\n"
            + "tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n[clients.acme.sources.portal]\ntype = \"http\"\n"
        let conf = dir.write("agent.conf", base.replacingOccurrences(of: "ADMIN", with: ""))
        let noCert = try SluiceBinary.run(["check-config"], config: conf)
        #expect(noCert.status == 2 && noCert.stderr.contains("api.tls_cert") && noCert.stderr.contains("cert.pem"), "\(noCert.stderr)")
        let run = try SluiceBinary.run(["run"], config: conf)
        #expect(run.status == 2 && run.stderr.contains("api.tls_cert"), "\(run.stderr)")

        let made = try Shell.run("/usr/bin/openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                                                      "-subj", "/CN=localhost", "-keyout", dir.sub("key.pem"), "-out", dir.sub("cert.pem")])
        #expect(made.status == 0)
        dir.write("key.pem", "not a key\n")
        let badKey = try SluiceBinary.run(["check-config"], config: conf)
        #expect(badKey.status == 2 && badKey.stderr.contains("api.tls_key"), "\(badKey.stderr)")

        _ = try Shell.run("/usr/bin/openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                                               "-subj", "/CN=localhost", "-keyout", dir.sub("key.pem"), "-out", dir.sub("cert.pem")])
        dir.write("admin.token", "short\n")
        dir.write("agent.conf", base.replacingOccurrences(of: "ADMIN", with: "admin_token_file = \"admin.token\""))
        let shortToken = try SluiceBinary.run(["check-config"], config: conf)
        #expect(shortToken.status == 2 && shortToken.stderr.contains("agent.admin_token_file") && !shortToken.stderr.contains("short\n"), "\(shortToken.stderr)")
        dir.write("admin.token", "a-long-enough-admin-token-0123456789\n")
        let ok = try SluiceBinary.run(["check-config"], config: conf)
        #expect(ok.status == 0 && ok.stdout.contains("source portal: http uploads") && ok.stdout.contains("TLS"), "\(ok.stderr)")
        #expect(!ok.stdout.contains("a-long-enough-admin-token"), "the admin token is never printed")

        let pull = try SluiceBinary.run(["pull", "acme", "--source", "portal"], config: conf)
        #expect(pull.status == 2 && pull.stderr.contains("upload source"), "\(pull.stderr)")
    }
}
