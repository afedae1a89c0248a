import Foundation
import SluiceTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Three `sluice run` agents on one PostgreSQL manifest and one lake in a moto bucket share a
/// client with an S3 source of 2,000 objects and an SFTP source; one agent is SIGKILLed and
/// another SIGSTOPped past its lease in the middle of a pass, then resumed.
///
/// Its agents use PostgreSQL whatever the pass, so the suite's second pass (on PostgreSQL)
/// does not run it again.
@Suite(.enabled(if: PostgresServer.available && MotoServer.available && SSHServer.available, "needs PostgreSQL, moto and OpenSSH's sshd"),
       .disabled(if: TestManifest.onPostgres, "runs on PostgreSQL in the suite's first pass already"))
struct ManyAgentsTests {
    static let objects = 2000
    static let sftpFiles = 60

    @Test func threeAgentsLoseNothingWhenOneDiesAndOneStalls() throws {
        let server = try PostgresServer.shared()
        let database = try server.createDatabase("three")
        let moto = try MotoServer()
        try moto.bucket("exports")
        try moto.bucket("lake")
        try moto.ops([["op": "put_many", "bucket": "exports", "prefix": "in/", "count": Self.objects]])
        let sftp = try SSHServer()
        for i in 0..<Self.sftpFiles { sftp.serve("f\(i).csv", "id\n\(10_000 + i)\n") }

        func agent(_ name: String) throws -> (TempDir, DaemonProcess) {
            let dir = TempDir("three-\(name)")
            let port = try SSHServer.freePort()
            dir.write("secrets/s3", "[default]\naws_access_key_id = test\naws_secret_access_key = test\n")
            dir.write("agent.conf", """
                [agent]
                name = "\(name)"
                state_dir = "state"
                lake_dir = "lake"
                http_listen = "127.0.0.1:\(port)"
                shutdown_timeout = "20s"
                lease_ttl = "3s"
                transform_workers = 4

                \(server.manifestTable(database))

                \(S3LakeTests.lakeTable(moto, bucket: "lake", dir: dir).replacingOccurrences(of: "secrets/lake.s3", with: "secrets/s3"))
                \(moto.sourceTable(bucket: "exports", prefix: "in/", credentials: dir.sub("secrets/s3"), extra: "min_age = \"0s\"\npoll_interval = \"1s\""))

                \(sftp.sourceTable(extra: "poll_interval = \"1s\""))
                """)
            dir.write("mappings/acme.toml", """
                [datasets.ids]
                match = ["**/*.csv"]
                format = "csv"
                fields = [ { name = "id", source = "id", type = "int64", required = true } ]
                """)
            let trust = try SluiceBinary.run(["trust", "acme", "--yes"], config: dir.sub("agent.conf"))
            #expect(trust.status == 0, "\(trust.stderr)")
            let d = try DaemonProcess(dir: dir, port: port)
            try d.waitReady()
            return (dir, d)
        }
        func count(_ sql: String) -> Int { Int((try? server.psql(database, sql)) ?? "") ?? -1 }
        func versions() -> Int { count("SELECT count(*) FROM version") }
        func owner(_ d: DaemonProcess, _ source: String) -> String? {
            (d.status()["sources"] as? [[String: Any]])?.first { $0["source"] as? String == source }?["owner"] as? String
        }

        var agents: [String: (dir: TempDir, daemon: DaemonProcess)] = [:]
        for name in ["a", "b", "c"] { agents[name] = try agent(name) }
        let total = Self.objects + Self.sftpFiles

        // The bucket's pass is under way: its owner stalls past its lease, another agent dies.
        #expect(eventually(300) { versions() >= 300 }, "\(agents["a"]!.daemon.log)")
        // The bucket's owner now, as the manifest has it. (An agent's /status reads the holders
        // once per lease_ttl / 3; on a loaded machine a lease can also lapse for a moment before
        // another agent takes it, so wait for a live one.)
        var stalled = ""
        let liveOwner = "SELECT owner FROM source_lease WHERE source = 'bucket' AND expires_at > CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
        #expect(eventually(120) {
            stalled = (try? server.psql(database, liveOwner)) ?? ""
            return agents[stalled] != nil
        }, "\((try? server.psql(database, "SELECT * FROM source_lease")) ?? "")")
        try #require(agents[stalled] != nil)
        agents[stalled]!.daemon.signal(SIGSTOP)
        let killed = ["a", "b", "c"].first { $0 != stalled }!
        let survivor = ["a", "b", "c"].first { $0 != stalled && $0 != killed }!
        agents[killed]!.daemon.signal(SIGKILL)
        _ = agents[killed]!.daemon.waitForExit(seconds: 10)

        let alive = agents[survivor]!.daemon
        #expect(eventually(600) { versions() == total }, "\(alive.log)")
        #expect(eventually(600) { count("SELECT count(DISTINCT version_id) FROM transform") == total }, "\(alive.log)")
        #expect(eventually(60) { owner(alive, "bucket") == survivor && owner(alive, "outbox") == survivor }, "\(alive.status())")

        // Resumed, the stalled agent finds its lease gone: its late commit is refused and logged.
        let late = agents[stalled]!.daemon
        late.signal(SIGCONT)
        // Refused at the batch's commit, or at another of the pass's writes (the pass then fails
        // with the refusal's text). (Stopped inside a transaction, its session was ended by the
        // server after lease_ttl instead, so that it held no lock the others waited on: that
        // commit fails too.)
        #expect(eventually(120) {
            let log = late.log
            return log.contains("Commit refused: the lease was lost") || log.contains("\(stalled) no longer holds the lease of acme/bucket")
                || log.contains("the server closed the connection")
        }, "\(late.log)")

        for name in [stalled, survivor] {
            agents[name]!.daemon.signal(SIGTERM)
            #expect(agents[name]!.daemon.waitForExit(seconds: 30) == 0, "\(name): \(agents[name]!.daemon.log)")
        }
        // Every object once in the manifest and in the lake; no unit transformed twice.
        #expect(try server.psql(database, "SELECT count(*), count(DISTINCT (f.source, f.path)) FROM version v JOIN file f ON f.id = v.file_id") == "\(total)|\(total)")
        #expect(try server.psql(database, "SELECT count(*), count(DISTINCT version_id), count(*) FILTER (WHERE status = 'ok') FROM transform")
                == "\(total)|\(total)|\(total)")
        let keys = try moto.keys("lake")
        #expect(keys.filter { $0.hasPrefix("prod/raw/acme/bucket/") }.count == Self.objects)
        #expect(keys.filter { $0.hasPrefix("prod/raw/acme/outbox/") }.count == Self.sftpFiles)
        #expect(keys.filter { $0.hasPrefix("prod/processed/acme/ids/") }.count == total)
        let audit = try SluiceBinary.run(["audit"], config: agents[survivor]!.dir.sub("agent.conf"))
        #expect(audit.status == 0, "\(audit.stdout) \(audit.stderr)")
    }
}
