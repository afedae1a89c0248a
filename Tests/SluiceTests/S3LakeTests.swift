import Foundation
import SluiceConfig
import SluiceTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The lake in a bucket (`[lake] url`) on a real S3 API server on loopback (moto), against
/// the lake on disk: the same objects, checksums, audit, and Parquet that pyarrow reads from
/// the bucket.
@Suite(.enabled(if: MotoServer.available && ParquetTests.readersAvailable, "needs moto's S3 server, boto3, pyarrow and duckdb"))
struct S3LakeTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// `agent.conf` for the bundled example's three clients, their drop folders copied into
    /// `dir`, with the lake in `bucket` on `moto` (under `prod/`) or, without, on disk.
    static func exampleAgent(_ dir: TempDir, moto: MotoServer?, bucket: String = "lake") throws -> String {
        _ = try Shell.run("/bin/cp", ["-r", "\(repository)/examples/drop", "\(repository)/examples/mappings", dir.path])
        dir.write("secrets/lake.s3", "[default]\naws_access_key_id = test\naws_secret_access_key = test\n")
        let lake = moto.map { lakeTable($0, bucket: bucket, dir: dir) } ?? ""
        return dir.config(tables: lake + "\n" + exampleClientTables)
    }

    static func lakeTable(_ moto: MotoServer, bucket: String, dir: TempDir) -> String {
        """
        [lake]
        url = "s3://\(bucket)/prod"
        endpoint = "\(moto.endpoint)"
        region = "us-east-1"
        path_style = true
        credentials_file = "\(dir.sub("secrets/lake.s3"))"

        """
    }

    /// `agent.conf` for client acme with one drop folder `drop/`, the lake in bucket `lake`.
    static func dropAgent(_ dir: TempDir, moto: MotoServer) -> String {
        dir.write("secrets/lake.s3", "[default]\naws_access_key_id = test\naws_secret_access_key = test\n")
        return dir.config(tables: lakeTable(moto, bucket: "lake", dir: dir) + """
            [clients.acme.sources.drop]
            type = "folder"
            path = "drop"
            min_age = "0s"
            """)
    }

    static func pull(_ config: String, _ client: String) throws -> [String: Any] {
        let (r, obj) = try SluiceBinary.json(["pull", client], config: config)
        #expect(r.status == 0, "\(client): \(r.stderr)")
        return obj as? [String: Any] ?? [:]
    }

    static func python(_ script: String, _ args: [String]) throws -> Shell.Result {
        try Shell.run("/usr/bin/env", ["python3", "-c", script] + args)
    }

    @Test func theExampleGoesToTheBucketAsItGoesToDisk() throws {
        let moto = try MotoServer()
        try moto.bucket("lake")
        let remote = TempDir("s3lake"), local = TempDir("disklake")
        let remoteConfig = try Self.exampleAgent(remote, moto: moto)
        let localConfig = try Self.exampleAgent(local, moto: nil)
        for client in ["acme", "initech", "hooli"] {
            _ = try Self.pull(remoteConfig, client)
            _ = try Self.pull(localConfig, client)
        }
        // Nothing but staging on the agent's disk; every raw version and output in the bucket.
        #expect(!FileManager.default.fileExists(atPath: remote.sub("lake/raw")))
        let keys = try moto.keys("lake")
        let localFiles = try Shell.run("/bin/sh", ["-c", "cd '\(local.sub("lake"))' && find raw processed -type f | sort"]).stdout
            .split(separator: "\n").map { "prod/\($0)" }
        #expect(keys == localFiles.sorted(), "\(keys) vs \(localFiles)")
        #expect(keys.contains { $0.hasSuffix(".parquet") } && keys.contains { $0.hasPrefix("prod/raw/") })

        // pyarrow reads every dataset from the bucket and finds what the disk lake has (but the
        // ingest times); DuckDB reads each output too. Each raw object carries the manifest's
        // SHA-256 as its checksum and has the same bytes as the disk lake's file.
        let check = try Self.python("""
            import sys, json, glob, os, base64, hashlib, sqlite3, subprocess
            import boto3, duckdb, pyarrow.parquet as pq, pyarrow.fs as fs
            from botocore.config import Config
            endpoint, local = sys.argv[1], sys.argv[2]
            s3fs = fs.S3FileSystem(endpoint_override=endpoint, scheme="http", access_key="test", secret_key="test", region="us-east-1")
            s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1",
                              config=Config(s3={"addressing_style": "path"}))
            datasets = sorted({os.path.dirname(os.path.dirname(p)) for p in glob.glob(local + "/lake/processed/*/*/*/*.parquet")})
            assert datasets, "no datasets"
            for d in datasets:
                rel = os.path.relpath(d, local + "/lake")
                a = pq.read_table(d)
                b = pq.read_table("lake/prod/" + rel, filesystem=s3fs)
                keep = [c for c in a.column_names if "ingest" not in c]
                assert a.num_rows > 0 and a.select(keep).equals(b.select(keep)), (rel, a.select(keep).slice(0, 3), b.select(keep).slice(0, 3))
            for key in [o["Key"] for o in s3.list_objects_v2(Bucket="lake", Prefix="prod/processed/")["Contents"] if o["Key"].endswith(".parquet")]:
                path = os.path.join(sys.argv[3], os.path.basename(key))
                s3.download_file("lake", key, path)
                assert duckdb.execute(f"select count(*) from read_parquet('{path}')").fetchone()[0] > 0, key
            raws = [o["Key"] for o in s3.list_objects_v2(Bucket="lake", Prefix="prod/raw/")["Contents"]]
            for key in raws:
                head = s3.head_object(Bucket="lake", Key=key, ChecksumMode="ENABLED")
                body = s3.get_object(Bucket="lake", Key=key)["Body"].read()
                assert body == open(local + "/lake/" + key[len("prod/"):], "rb").read(), key
                assert head.get("ChecksumSHA256") == base64.b64encode(hashlib.sha256(body).digest()).decode(), (key, head)
            print(len(datasets), len(raws))
            """, [moto.endpoint, local.path, remote.path])
        #expect(check.status == 0, "\(check.stderr)")
        #expect(check.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "4 6", "\(check.stdout)")

        // The audit lists and streams the bucket: clean, then a changed object and a stray one.
        let audit = try SluiceBinary.json(["audit"], config: remoteConfig)
        #expect(audit.0.status == 0, "\(audit.0.stdout) \(audit.0.stderr)")
        #expect((audit.1 as? [String: Any])?["checked"] as? Int == 6)
        try moto.ops([["op": "put", "bucket": "lake", "key": "prod/raw/acme/drop/orders_2026-10-01.v1.csv", "text": "changed"],
                      ["op": "put", "bucket": "lake", "key": "prod/raw/acme/drop/stray.csv", "text": "no row"]])
        let (bad, report) = try SluiceBinary.json(["audit"], config: remoteConfig)
        let r = report as? [String: Any] ?? [:]
        #expect(bad.status == 1)
        #expect((r["corrupt"] as? [[String: Any]])?.first?["lake_path"] as? String == "raw/acme/drop/orders_2026-10-01.v1.csv", "\(r)")
        #expect(r["orphans"] as? [String] == ["raw/acme/drop/stray.csv"], "\(r)")

        // `cat` reads a version from the bucket.
        let cat = try SluiceBinary.run(["cat", "initech", "events.jsonl"], config: remoteConfig)
        let events = try String(contentsOfFile: remote.sub("drop/initech/events.jsonl"), encoding: .utf8)
        #expect(cat.status == 0 && cat.stdout == events, "\(cat.stderr)")
    }

    /// A name already taken in the bucket (a run that died between its upload and its commit)
    /// is adopted when the object has the same bytes and moved aside when it has not: the
    /// upload is conditional (`If-None-Match: *`) and a 412 never overwrites.
    @Test func aTakenNameIsAdoptedOrMovedAside() throws {
        let moto = try MotoServer()
        try moto.bucket("lake")
        let dir = TempDir("s3lake-taken")
        dir.write("drop/same.csv", "id\n1\n")
        dir.write("drop/other.csv", "id\n2\n")
        let config = Self.dropAgent(dir, moto: moto)
        try moto.put("lake", ["prod/raw/acme/drop/same.v1.csv": "id\n1\n", "prod/raw/acme/drop/other.v1.csv": "something else\n"])
        let report = try Self.pull(config, "acme")
        let files = SFTPTests.files(report)
        #expect(files["same.csv"]?["status"] as? String == "new" && files["other.csv"]?["status"] as? String == "new", "\(report)")
        let keys = try moto.keys("lake")
        let quarantined = keys.filter { $0.hasPrefix("prod/.sluice/quarantine/") }
        #expect(quarantined.count == 1 && quarantined.first!.hasSuffix("other.v1.csv"), "\(keys)")
        let moved = quarantined.first
        let contents = try moto.ops([["op": "get", "bucket": "lake", "key": "prod/raw/acme/drop/other.v1.csv"],
                                     ["op": "get", "bucket": "lake", "key": moved ?? "none"]]) as? [String]
        #expect(contents == ["id\n2\n", "something else\n"], "\(contents ?? [])")
        #expect(moto.log.split(separator: "\n").contains { $0.contains("PUT /lake/prod/raw/acme/drop/same.v1.csv") && $0.contains("\" 412") }, "\(moto.log)")
        let audit = try SluiceBinary.run(["audit"], config: config)
        #expect(audit.status == 0, "\(audit.stdout)")
    }

    /// A file over 64 MiB goes up in parts, each with its checksum. A `pull` killed while its
    /// parts are in flight leaves an unfinished upload, which the next start aborts; that pull
    /// stores the file once.
    @Test func bigFilesGoUpInPartsAndACrashedUploadIsAbortedAtTheNextStart() throws {
        let moto = try MotoServer()
        try moto.bucket("lake")
        let dir = TempDir("s3lake-big")
        let config = Self.dropAgent(dir, moto: moto)
        _ = try Shell.run("/bin/mkdir", ["-p", dir.sub("drop")])
        _ = try Shell.run("/usr/bin/env", ["python3", "-c", "import random,sys; r=random.Random(7); f=open(sys.argv[1],'wb'); [f.write(r.randbytes(1<<20)) for _ in range(400)]", dir.sub("drop/big.bin")])
        let pid = try spawnProcess([SluiceBinary.path, "pull", "acme", "--config", config], stdout: .devNull, stderr: .truncate(dir.sub("pull.log")))
        // Killed once a part has arrived: the upload is open, the object not there.
        let deadline = Date().addingTimeInterval(120)
        while !moto.log.contains("partNumber=") && Date() < deadline { usleep(20_000) }
        kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        let open = try moto.ops([["op": "uploads", "bucket": "lake"]]).first as? [String] ?? []
        #expect(open == ["prod/raw/acme/drop/big.v1.bin"], "\(open)")
        let before = try moto.keys("lake")
        #expect(!before.contains("prod/raw/acme/drop/big.v1.bin"))

        let report = try Self.pull(config, "acme")
        #expect(SFTPTests.files(report)["big.bin"]?["status"] as? String == "new", "\(report)")
        let after = try moto.ops([["op": "uploads", "bucket": "lake"]]).first as? [String] ?? ["?"]
        #expect(after.isEmpty, "\(after)")
        let sha = try Shell.run("/usr/bin/sha256sum", [dir.sub("drop/big.bin")]).stdout.prefix(64)
        #expect(SFTPTests.files(report)["big.bin"]?["sha256"] as? String == String(sha))
        let head = try moto.ops([["op": "etag", "bucket": "lake", "key": "prod/raw/acme/drop/big.v1.bin"],
                                 ["op": "checksum", "bucket": "lake", "key": "prod/raw/acme/drop/big.v1.bin"]]) as? [String] ?? []
        #expect(head.count == 2 && head[0].hasSuffix("-25\"") && !head[1].isEmpty, "25 parts of 16 MiB, with their checksums: \(head)")
        let audit = try SluiceBinary.run(["audit"], config: config)
        #expect(audit.status == 0, "\(audit.stdout)")
    }
}

/// `[lake]`: where the bucket is, its prefix made to end in `/`, and an error naming the key
/// for every bad value.
@Suite struct LakeConfigTests {
    static let base = "[agent]\nstate_dir = \"/var/lib/sluice\"\nlake_dir = \"/srv/lake\"\n"
    static let endpoint = "endpoint = \"https://s3.eu-central-1.amazonaws.com\"\nregion = \"eu-central-1\"\n"

    func parse(_ lake: String) throws -> AgentConfig {
        try AgentConfig.parse(text: Self.base + lake, file: "/etc/sluice/agent.conf")
    }

    func problem(_ lake: String) -> String {
        do {
            _ = try parse(lake)
            return ""
        } catch {
            return "\(error)"
        }
    }

    @Test func lakeTableKeysAndDefaults() throws {
        #expect(try parse("").lakeBucket == nil)
        let c = try parse("[lake]\nurl = \"s3://ingest-lake/prod\"\n\(Self.endpoint)credentials_file = \"secrets/lake.s3\"\n")
        let lake = try #require(c.lakeBucket)
        #expect(lake.bucket == "ingest-lake" && lake.prefix == "prod/" && lake.region == "eu-central-1" && !lake.pathStyle)
        #expect(lake.credentialsFile == "/etc/sluice/secrets/lake.s3" && lake.profile == "default")
        #expect(lake.url == "s3://ingest-lake/prod/" && c.lakeDisplay == "s3://ingest-lake/prod/")
        let bare = try #require(try parse("[lake]\nurl = \"s3://lake\"\n\(Self.endpoint)path_style = true\nprofile = \"ops\"\n").lakeBucket)
        #expect(bare.prefix == "" && bare.pathStyle && bare.profile == "ops" && bare.credentialsFile == nil)
        #expect(try parse("[lake]\nurl = \"s3://lake/a/b/\"\n\(Self.endpoint)").lakeBucket?.prefix == "a/b/")
    }

    @Test func badLakeTablesNameTheKey() {
        for (lake, key, words) in [
            ("[lake]\n\(Self.endpoint)", "lake", "missing required key 'url'"),
            ("[lake]\nurl = \"https://lake/prod\"\n\(Self.endpoint)", "lake.url", "s3://BUCKET/PREFIX"),
            ("[lake]\nurl = \"s3://bad bucket/x\"\n\(Self.endpoint)", "lake.url", "bucket name"),
            ("[lake]\nurl = \"s3://lake/a//b\"\n\(Self.endpoint)", "lake.url", "empty"),
            ("[lake]\nurl = \"s3://lake/a/../b\"\n\(Self.endpoint)", "lake.url", "'..'"),
            ("[lake]\nurl = \"s3://lake\"\nregion = \"x\"\n", "lake", "missing required key 'endpoint'"),
            ("[lake]\nurl = \"s3://lake\"\nendpoint = \"ftp://x\"\nregion = \"x\"\n", "lake.endpoint", "http(s) URL"),
            ("[lake]\nurl = \"s3://my.lake\"\n\(Self.endpoint)", "lake.path_style", "dots"),
            ("[lake]\nurl = \"s3://lake\"\n\(Self.endpoint)bucket = \"x\"\n", "lake.bucket", "unknown"),
        ] {
            let p = problem(lake)
            #expect(p.contains(key) && p.contains(words), "\(lake) → \(p)")
        }
    }
}
