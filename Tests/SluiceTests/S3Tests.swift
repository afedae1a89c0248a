import Foundation
import SluiceAgent
import SluiceLake
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

/// The s3 source against a real S3 API server on loopback (moto, over HTTP only).
@Suite(.enabled(if: MotoServer.available, "needs moto's S3 server: pip install 'moto[server]' boto3"))
struct S3Tests {
    /// A client with one s3 source `bucket` on `moto` (credentials test/test in a file).
    static func setUp(_ moto: MotoServer, bucket: String, prefix: String = "", extra: String = "min_age = \"0s\"") -> TempDir {
        let dir = TempDir("s3")
        dir.write("secrets/acme.s3", "[default]\naws_access_key_id = test\naws_secret_access_key = test\n")
        dir.config(tables: moto.sourceTable(bucket: bucket, prefix: prefix, credentials: dir.sub("secrets/acme.s3"), extra: extra))
        return dir
    }

    static func pull(_ dir: TempDir) throws -> (Shell.Result, [String: Any], [String: [String: Any]]) {
        let (r, report) = try SFTPTests.pull(dir)
        return (r, report, SFTPTests.files(report))
    }

    static func lakeFile(_ dir: TempDir, _ file: [String: Any]?) -> String? {
        guard let p = file?["lake_path"] as? String else { return nil }
        return try? String(contentsOfFile: dir.sub("lake/\(p)"), encoding: .utf8)
    }

    @Test func listingFollowsEveryPageAndAppliesPrefixIncludeAndExclude() throws {
        let moto = try MotoServer()
        try moto.bucket("exports")
        try moto.ops([["op": "put_many", "bucket": "exports", "prefix": "daily/bulk/", "count": 1100]])
        try moto.put("exports", [
            "daily/a.csv": "a\n1\n",
            "daily/sub/b.csv": "b\n2\n",
            "daily/sub/deep/c.txt": "not a csv\n",
            "daily/skip/x.csv": "excluded\n",
            "daily/folder/": "",
            "other/o.csv": "outside the prefix\n",
            "daily/odd//name.csv": "empty component\n",
        ])
        let dir = Self.setUp(moto, bucket: "exports", prefix: "daily/",
                             extra: "min_age = \"0s\"\ninclude = [\"**/*.csv\"]\nexclude = [\"skip/**\"]")
        let (r, report, files) = try Self.pull(dir)
        #expect(r.status == 0, "\(r.stderr)")
        let new = files.filter { $0.value["status"] as? String == "new" }.map(\.key)
        #expect(new.count == 1102, "\(report["counts"] ?? "")")
        #expect(new.contains("a.csv") && new.contains("sub/b.csv") && new.contains("bulk/01099.csv"))
        #expect(!new.contains { $0.hasPrefix("skip/") || $0.hasSuffix(".txt") || $0.hasSuffix("/") || $0.contains("o.csv") })
        #expect(Self.lakeFile(dir, files["sub/b.csv"]) == "b\n2\n")
        #expect(Self.lakeFile(dir, files["bulk/00042.csv"]) == "id\n42\n")
        // A key that cannot be a lake path is reported, not ingested.
        #expect(files["odd//name.csv"]?["status"] as? String == "skipped")
        #expect((files["odd//name.csv"]?["error"] as? String ?? "").contains("empty path component"))
        // More than 1,000 keys: a second page, asked for with the continuation token.
        #expect(moto.log.contains("continuation-token="), "the listing followed NextContinuationToken")
    }

    /// Keys that URL encoding changes come back decoded, are fetched under their real names
    /// and are moved aside under them too.
    @Test func keysWithSpacesPlusPercentAndNonASCIIAreIngested() throws {
        let moto = try MotoServer()
        try moto.bucket("odd-keys")
        let keys = ["in/b b.csv", "in/ü.csv", "in/p+q.csv", "in/100%.csv", "in/a&b.csv", "in/x<y.csv", "in/trailing .csv", "in/sub dir/c d.csv"]
        try moto.put("odd-keys", Dictionary(uniqueKeysWithValues: keys.map { ($0, "content of \($0)\n") }))
        let dir = Self.setUp(moto, bucket: "odd-keys", prefix: "in/", extra: "min_age = \"0s\"\nafter_ingest = \"move:done\"")
        let (r, report, files) = try Self.pull(dir)
        #expect(r.status == 0, "\(r.stderr) \(report)")
        for key in keys {
            let rel = String(key.dropFirst(3))
            #expect(files[rel]?["status"] as? String == "new", "\(rel): \(files[rel] ?? [:])")
            #expect(Self.lakeFile(dir, files[rel]) == "content of \(key)\n")
        }
        #expect(try moto.keys("odd-keys").sorted() == keys.map { "in/done/" + $0.dropFirst(3) }.sorted())
    }

    @Test func anUnchangedObjectIsNeverFetchedAgainAndANewETagIsANewVersion() throws {
        let moto = try MotoServer()
        try moto.bucket("bucket-one")
        try moto.put("bucket-one", ["in/r.csv": "v1\n"])
        let dir = Self.setUp(moto, bucket: "bucket-one", prefix: "in/")
        var (r, _, files) = try Self.pull(dir)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(files["r.csv"]?["version"] as? Int == 1)
        #expect(moto.gets("bucket-one", "in/r.csv") == 1)

        (r, _, files) = try Self.pull(dir)
        #expect(r.status == 0)
        #expect(files["r.csv"] == nil || files["r.csv"]?["status"] as? String == "unchanged")
        #expect(moto.gets("bucket-one", "in/r.csv") == 1, "key, size and ETag unchanged: not downloaded again")

        // New content of the same size: only the ETag tells.
        try moto.put("bucket-one", ["in/r.csv": "v2\n"])
        (r, _, files) = try Self.pull(dir)
        #expect(r.status == 0)
        #expect(files["r.csv"]?["status"] as? String == "new")
        #expect(files["r.csv"]?["version"] as? Int == 2)
        #expect(Self.lakeFile(dir, files["r.csv"]) == "v2\n")
        let history = try SluiceBinary.run(["history", "acme"], config: dir.sub("agent.conf"))
        #expect(history.stdout.contains("r.csv"))
    }

    @Test func minAgeGoesByLastModified() throws {
        let moto = try MotoServer()
        try moto.bucket("bucket-two")
        try moto.put("bucket-two", ["fresh.csv": "x\n"])
        let dir = Self.setUp(moto, bucket: "bucket-two", extra: "min_age = \"1h\"")
        var (r, _, files) = try Self.pull(dir)
        #expect(r.status == 0)
        #expect(files["fresh.csv"]?["status"] as? String == "skipped")
        #expect((files["fresh.csv"]?["error"] as? String ?? "").contains("not stable yet"))
        #expect(moto.gets("bucket-two", "fresh.csv") == 0)

        dir.config(tables: moto.sourceTable(bucket: "bucket-two", credentials: dir.sub("secrets/acme.s3"), extra: "min_age = \"1s\""))
        sleep(2)
        (r, _, files) = try Self.pull(dir)
        #expect(files["fresh.csv"]?["status"] as? String == "new")
    }

    @Test func deleteAndMoveAfterIngest() throws {
        let moto = try MotoServer()
        try moto.bucket("bucket-three")
        try moto.put("bucket-three", ["del/one.csv": "1\n", "mv/two.csv": "2\n", "mv/sub/three.csv": "3\n"])
        let dir = TempDir("s3")
        dir.write("secrets/acme.s3", "[default]\naws_access_key_id = test\naws_secret_access_key = test\n")
        let creds = dir.sub("secrets/acme.s3")
        dir.config(tables: moto.sourceTable(bucket: "bucket-three", prefix: "del/", credentials: creds, extra: "min_age = \"0s\"\nafter_ingest = \"delete\"")
            + "\n" + moto.sourceTable(bucket: "bucket-three", prefix: "mv/", credentials: creds, extra: "min_age = \"0s\"\nafter_ingest = \"move:done\"")
                .replacingOccurrences(of: "sources.bucket]", with: "sources.moved]"))
        var (r, _, files) = try Self.pull(dir)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(files.values.filter { $0["status"] as? String == "new" }.count == 3)
        #expect(try moto.keys("bucket-three") == ["mv/done/sub/three.csv", "mv/done/two.csv"])
        #expect(Self.lakeFile(dir, files["two.csv"]) == "2\n")

        // What was moved aside is not picked up again.
        (r, _, files) = try Self.pull(dir)
        #expect(r.status == 0)
        #expect(!files.values.contains { $0["status"] as? String == "new" })
    }

    @Test func wrongCredentialsMissingBucketAndEnvironmentCredentials() throws {
        let moto = try MotoServer()
        try moto.bucket("secure")
        try moto.put("secure", ["s.csv": "secret data\n"])
        let key = try moto.ops([["op": "iam_user"]]).first as? [String] ?? []
        try #require(key.count == 2)
        let dir = Self.setUp(moto, bucket: "secure")

        dir.write("secrets/acme.s3", "[default]\naws_access_key_id = \(key[0])\naws_secret_access_key = not-the-secret\n")
        var (r, report, _) = try Self.pull(dir)
        #expect(r.status == 1)
        var message = SFTPTests.sourceErrors(report)
        #expect(message.contains("secret access key is wrong"), "\(message)")
        #expect(message.contains("acme/bucket") && message.contains("secure"))
        #expect(!(r.stdout + r.stderr).contains("not-the-secret"), "a secret is never printed")

        dir.write("secrets/acme.s3", "[default]\naws_access_key_id = AKIAUNKNOWN000000000\naws_secret_access_key = x\n")
        (r, report, _) = try Self.pull(dir)
        #expect(r.status == 1)
        #expect(SFTPTests.sourceErrors(report).contains("access key is not known"))

        // The right key from a named profile works.
        dir.write("secrets/acme.s3", "[default]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n\n[profile ingest]\naws_access_key_id = \(key[0])\naws_secret_access_key = \(key[1])\n")
        dir.config(tables: moto.sourceTable(bucket: "secure", credentials: dir.sub("secrets/acme.s3"), extra: "min_age = \"0s\"\nprofile = \"ingest\""))
        var files: [String: [String: Any]]
        (r, _, files) = try Self.pull(dir)
        #expect(r.status == 0, "\(r.stdout)")
        #expect(Self.lakeFile(dir, files["s.csv"]) == "secret data\n")

        // Without credentials_file: the AWS_* environment variables.
        let envDir = TempDir("s3env")
        envDir.config(tables: moto.sourceTable(bucket: "secure", credentials: "", extra: "min_age = \"0s\"")
            .replacingOccurrences(of: "credentials_file = \"\"\n", with: ""))
        var environment = ProcessInfo.processInfo.environment
        environment["AWS_ACCESS_KEY_ID"] = key[0]
        environment["AWS_SECRET_ACCESS_KEY"] = key[1]
        let fromEnv = try Shell.run(SluiceBinary.path, ["pull", "acme", "--json", "--config", envDir.sub("agent.conf")], environment: environment)
        #expect(fromEnv.status == 0, "\(fromEnv.stdout) \(fromEnv.stderr)")
        environment["AWS_ACCESS_KEY_ID"] = nil
        let noCredentials = try Shell.run(SluiceBinary.path, ["pull", "acme", "--config", envDir.sub("agent.conf")], environment: environment)
        #expect(noCredentials.status == 1)
        #expect((noCredentials.stdout + noCredentials.stderr).contains("AWS_ACCESS_KEY_ID"))

        // A bucket that does not exist.
        let open = try MotoServer()
        let missing = Self.setUp(open, bucket: "nope")
        (r, report, _) = try Self.pull(missing)
        #expect(r.status == 1)
        message = SFTPTests.sourceErrors(report)
        #expect(message.contains("bucket nope does not exist"), "\(message)")

        // TLS to a server that speaks plain HTTP: a TLS error that names the host.
        missing.config(tables: open.sourceTable(bucket: "nope", credentials: missing.sub("secrets/acme.s3"), extra: "min_age = \"0s\"")
            .replacingOccurrences(of: "http://", with: "https://"))
        (r, report, _) = try Self.pull(missing)
        #expect(r.status == 1)
        message = SFTPTests.sourceErrors(report)
        #expect(message.contains("TLS with 127.0.0.1 failed"), "\(message)")
    }

    /// Big enough for ranged GETs (more than 64 MiB); `SLUICE_BIG_S3_MB` changes it.
    static var bigSize: Int {
        (Int(ProcessInfo.processInfo.environment["SLUICE_BIG_S3_MB"] ?? "") ?? 200) * 1_000_000
    }

    @Test func aBigObjectComesThroughRangedGetsWithItsHashChecked() throws {
        let moto = try MotoServer()
        try moto.bucket("big")
        let sha = try moto.ops([["op": "put", "bucket": "big", "key": "dump.bin", "size": Self.bigSize, "seed": 7]]).first as? String
        let dir = Self.setUp(moto, bucket: "big")
        let (r, _, files) = try Self.pull(dir)
        #expect(r.status == 0, "\(r.stderr)")
        let file = try #require(files["dump.bin"])
        #expect(file["sha256"] as? String == sha)
        #expect(file["size"] as? Int == Self.bigSize)
        #expect(try sha256(ofFile: dir.sub("lake/\(file["lake_path"] as! String)")) == sha)
        let ranged = moto.log.split(separator: "\n").filter { $0.contains("GET /big/dump.bin") && $0.contains("\" 206 ") }.count
        // Two ranges for each of the (default) 4 connections.
        #expect(ranged == 8, "fetched as ranges over parallel connections (\(ranged) ranged GETs)")
    }

    @Test func aServerKilledMidDownloadLeavesNoVersionAndTheNextPullIsGood() throws {
        let moto = try MotoServer()
        try moto.bucket("crash")
        let put: [[String: Any]] = [["op": "put", "bucket": "crash", "key": "big.bin", "size": 100_000_000, "seed": 3],
                                    ["op": "put", "bucket": "crash", "key": "small.csv", "text": "id\n1\n"]]
        let sha = try moto.ops(put).first as? String
        let dir = Self.setUp(moto, bucket: "crash")
        let agent = try loadAgent(dir)
        let killed = KillOnce(moto)
        let report = try agent.pull(client: "acme", source: nil, hooks: IngestHooks(afterFirstChunk: { c in
            if c.path.display == "big.bin" { killed.fire() }
        }))
        #expect(killed.fired)
        let big = try #require(report.files.first { $0.path == "big.bin" })
        #expect(big.status == .failed, "\(big.error ?? "")")
        #expect(big.version == nil)
        #expect(lakeLeftovers(dir).isEmpty, "\(lakeLeftovers(dir))")
        let history = try SluiceBinary.run(["history", "acme"], config: dir.sub("agent.conf"))
        #expect(!history.stdout.contains("big.bin"), "no version of a partial download")

        // The server is back (empty, as moto keeps objects in memory): the client puts the
        // same files again, and the next pull takes them whole.
        try moto.restart()
        try moto.bucket("crash")
        try moto.ops(put)
        let again = try agent.pull(client: "acme", source: nil)
        let fetched = try #require(again.files.first { $0.path == "big.bin" })
        #expect(fetched.status == .new, "\(fetched.error ?? "")")
        #expect(fetched.sha256 == sha)
        #expect(fetched.version == 1)
        #expect(try sha256(ofFile: dir.sub("lake/\(fetched.lakePath!)")) == sha)
    }
}

extension S3Tests {
    /// `sluice run` polls an s3 source on its schedule; /status, /metrics and the console show it.
    @Test func theServicePollsABucket() throws {
        let moto = try MotoServer()
        try moto.bucket("polled")
        try moto.put("polled", ["in/a.csv": "1\n"])
        let dir = TempDir("s3-daemon")
        let port = try SSHServer.freePort()
        dir.write("secrets/acme.s3", "[default]\naws_access_key_id = test\naws_secret_access_key = test\n")
        dir.write("agent.conf", DaemonProcess.agentTable(port: port)
            + moto.sourceTable(bucket: "polled", prefix: "in/", credentials: dir.sub("secrets/acme.s3"), extra: "min_age = \"0s\"\npoll_interval = \"1s\""))
        let d = try DaemonProcess(dir: dir, port: port)
        try d.waitReady()
        #expect(eventually(20) { versionCount(dir) == 1 }, "\(d.log)")
        try moto.put("polled", ["in/b.csv": "2\n"])
        #expect(eventually(20) { versionCount(dir) == 2 }, "the next poll fetches a new object: \(d.log)")
        let source = (d.status()["sources"] as? [[String: Any]])?.first
        #expect(source?["type"] as? String == "s3", "\(d.status())")
        #expect(d.get("/metrics")?.body.contains("source=\"bucket\"") == true)
        #expect(d.get("/clients/acme")?.body.contains("b.csv") == true)
        #expect(!d.log.contains("aws_secret_access_key") && !d.log.contains("Authorization"))
        d.signal(SIGTERM)
        #expect(d.waitForExit(seconds: 30) == 0)
    }
}

extension S3Tests {
    /// A connection reset in the middle of an object's body: the GET is resumed from the first
    /// byte not yet received (a ranged GET under If-Match), and the version is whole.
    @Test func aResetConnectionIsResumedWhereItStopped() throws {
        let moto = try MotoServer()
        try moto.bucket("flaky")
        let sha = try moto.ops([["op": "put", "bucket": "flaky", "key": "five.bin", "size": 5_000_000, "seed": 11]]).first as? String
        let proxyPort = try SSHServer.freePort()
        // moto closes every connection after its answer: the one cut is the GET's.
        let proxy = try spawnListener(["/usr/bin/env", "python3", MotoServer.helper.replacingOccurrences(of: "s3.py", with: "countproxy.py"),
                                       "\(proxyPort)", "\(moto.port)", moto.dir.sub("proxy.count"), "2000000"],
                                      log: moto.dir.sub("proxy.log"), port: proxyPort, name: "countproxy")
        defer {
            kill(proxy, SIGKILL)
            var status: Int32 = 0
            _ = waitpid(proxy, &status, 0)
        }
        let dir = Self.setUp(moto, bucket: "flaky")
        dir.config(tables: moto.sourceTable(bucket: "flaky", credentials: dir.sub("secrets/acme.s3"), extra: "min_age = \"0s\"")
            .replacingOccurrences(of: "127.0.0.1:\(moto.port)", with: "127.0.0.1:\(proxyPort)"))
        let (r, _, files) = try Self.pull(dir)
        #expect(r.status == 0, "\(r.stdout) \(r.stderr)")
        #expect(files["five.bin"]?["sha256"] as? String == sha)
        let requests = moto.log.split(separator: "\n").filter { $0.contains("GET /flaky/five.bin") }
        #expect(requests.count == 2 && requests.last?.contains("\" 206 ") == true, "one GET, then a ranged GET for the rest: \(requests)")
    }
}

/// Kills the server the first time it fires.
final class KillOnce: @unchecked Sendable {
    let moto: MotoServer
    private let lock = NSLock()
    private(set) var fired = false
    init(_ moto: MotoServer) { self.moto = moto }
    func fire() {
        lock.lock()
        defer { lock.unlock() }
        guard !fired else { return }
        fired = true
        moto.kill()
    }
}

/// `check-config` on s3 keys: every mistake names its key.
struct S3ConfigTests {
    static func check(_ table: String, files: [String: String] = [:]) throws -> Shell.Result {
        let dir = TempDir("s3cfg")
        for (p, text) in files { dir.write(p, text) }
        dir.config(tables: table)
        return try SluiceBinary.run(["check-config"], config: dir.sub("agent.conf"))
    }

    static func source(_ lines: String) -> String {
        "[clients.acme.sources.bucket]\ntype = \"s3\"\n\(lines)\n"
    }

    static let good = """
        endpoint = "https://s3.eu-central-1.amazonaws.com"
        region = "eu-central-1"
        bucket = "acme-exports"
        prefix = "daily/"
        credentials_file = "acme.s3"
        """

    @Test func validKeysAreAcceptedAndShown() throws {
        let r = try Self.check(Self.source(Self.good + "\nmax_connections = 8\nafter_ingest = \"move:done\""),
                               files: ["acme.s3": "[default]\naws_access_key_id = AKID\naws_secret_access_key = SECRET\n"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("s3 https://s3.eu-central-1.amazonaws.com bucket acme-exports"))
        #expect(!r.stdout.contains("SECRET"))
    }

    @Test(arguments: [
        ("endpoint = \"ftp://x\"", "endpoint"),
        ("region = \"eu central\"", "region"),
        ("bucket = \"a/b\"", "bucket"),
        ("prefix = \"/daily\"", "prefix"),
        ("max_connections = 0", "max_connections"),
        ("after_ingest = \"move:../x\"", "after_ingest"),
        ("recursive = false", "recursive"),
        ("poll_interval = \"0s\"", "poll_interval"),
    ])
    func aBadKeyIsNamed(_ line: String, _ key: String) throws {
        let name = String(line.prefix { $0 != " " })
        let lines = Self.good.split(separator: "\n").filter { !$0.hasPrefix(name + " ") }.joined(separator: "\n") + "\n" + line
        let r = try Self.check(Self.source(lines), files: ["acme.s3": "[default]\naws_access_key_id = A\naws_secret_access_key = B\n"])
        #expect(r.status == 2, "\(line): \(r.stdout)")
        #expect(r.stderr.contains("clients.acme.sources.bucket.\(key)") || r.stderr.contains(key), "\(line): \(r.stderr)")
    }

    /// Secrets are read where the service runs, so check-config warns (exit 0) about them.
    @Test func credentialsAreCheckedWithoutContactingTheStore() throws {
        var r = try Self.check(Self.source(Self.good))
        #expect(r.status == 0)
        #expect(r.stderr.contains("warning:") && r.stderr.contains("credentials_file") && r.stderr.contains("acme.s3"), "\(r.stderr)")
        r = try Self.check(Self.source(Self.good + "\nprofile = \"other\""), files: ["acme.s3": "[default]\naws_access_key_id = A\naws_secret_access_key = B\n"])
        #expect(r.stderr.contains("warning:") && r.stderr.contains("[other]"), "\(r.stderr)")
        r = try Self.check(Self.source(Self.good), files: ["acme.s3": "[default]\naws_access_key_id = A\n"])
        #expect(r.stderr.contains("warning:") && r.stderr.contains("aws_secret_access_key"), "\(r.stderr)")
        r = try Self.check(Self.source(Self.good), files: ["acme.s3": "[default]\naws_access_key_id = A\naws_secret_access_key = SECRETVALUE\n"])
        #expect(!r.stderr.contains("warning:") && !(r.stdout + r.stderr).contains("SECRETVALUE"))
    }
}
