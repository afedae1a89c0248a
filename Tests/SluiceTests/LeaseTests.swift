import Foundation
import SluiceIngest
import SluiceLake
import SluiceManifest
import SluiceSupport
import SluiceTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Agents sharing a manifest share its polled sources: one lease per source, its fencing token
/// carried by every commit of a pass.
@Suite(.serialized) struct LeaseTests {
    @Test(arguments: ManifestBackend.allCases) func aLeaseGoesToOneAgentAndFencesItsCommits(_ backend: ManifestBackend) throws {
        let f = try ManifestFixture(backend, label: "lease")
        let a = f.manifest
        let b = try f.reopen()
        #expect(try a.claimLease(client: "acme", source: "bucket", owner: "a", ttlMillis: 60_000) == 1)
        #expect(try b.claimLease(client: "acme", source: "bucket", owner: "b", ttlMillis: 60_000) == nil, "a holds it")
        #expect(try a.claimLease(client: "acme", source: "bucket", owner: "a", ttlMillis: 60_000) == 1, "renewed: the same token")
        #expect(try b.leaseHolders().first { $0.client == "acme" && $0.source == "bucket" }?.holder.owner == "a")
        let fenceA = LeaseFence(client: "acme", source: "bucket", owner: "a", token: 1)
        let run = try a.startRun(client: "acme", source: "bucket", trigger: "schedule")
        _ = try a.commit([.version(NewVersion(client: "acme", source: "bucket", path: "x.csv", pathBytes: Array("x.csv".utf8), version: 1, sha256: "x",
                                              size: 1, mtimeNs: 0, lakePath: "raw/acme/bucket/x.v1.csv"))],
                         runID: run, counts: RunCounts(), fence: fenceA)

        // a stops renewing (paused, or cut off): its lease runs out and b takes the source.
        _ = try a.claimLease(client: "acme", source: "bucket", owner: "a", ttlMillis: 1)
        usleep(50_000)
        #expect(try b.claimLease(client: "acme", source: "bucket", owner: "b", ttlMillis: 60_000) == 2)
        do {
            _ = try a.commit([.version(NewVersion(client: "acme", source: "bucket", path: "y.csv", pathBytes: Array("y.csv".utf8), version: 1, sha256: "y",
                                                  size: 1, mtimeNs: 0, lakePath: "raw/acme/bucket/y.v1.csv"))],
                             runID: run, counts: RunCounts(), fence: fenceA)
            Issue.record("a's late commit was taken")
        } catch {
            #expect(error.leaseLost?.holder?.owner == "b", "\(error)")
            #expect(error.message.contains("commit refused") && error.message.contains("b holds it now"), "\(error)")
        }
        #expect(try b.history(client: "acme", path: nil).map(\.path) == ["x.csv"], "nothing of the refused commit is recorded")
        // b hands it back when it stops: a takes it at once, with a new token.
        try b.releaseLease(LeaseFence(client: "acme", source: "bucket", owner: "b", token: 2))
        #expect(try a.claimLease(client: "acme", source: "bucket", owner: "a", ttlMillis: 60_000) == 3)
    }

    /// Claims on versions to transform: agents claiming at once get different versions, a
    /// record removes its claim, a claim that ran out goes to another agent with a new token
    /// and the first one's late record is refused; claims renew without ever being taken anew.
    @Test(arguments: ManifestBackend.allCases) func versionsAreClaimedOnceAndALateRecordIsRefused(_ backend: ManifestBackend) throws {
        let f = try ManifestFixture(backend, label: "claims")
        let a = f.manifest
        let b = try f.reopen()
        let run = try a.startRun(client: "acme", source: "drop", trigger: "pull")
        _ = try a.commit((0..<10).map { i in
            .version(NewVersion(client: "acme", source: "drop", path: "f\(i).csv", pathBytes: Array("f\(i).csv".utf8), version: 1, sha256: "s\(i)",
                                size: 1, mtimeNs: 0, lakePath: "raw/acme/drop/f\(i).v1.csv"))
        }, runID: run, counts: RunCounts())
        let first = try a.claimPendingTransforms(client: "acme", owner: "a", ttlMillis: 60_000, limit: 4)
        let second = try b.claimPendingTransforms(client: "acme", owner: "b", ttlMillis: 60_000, limit: 4)
        #expect(first.map(\.candidate.version) == [1, 1, 1, 1] && first.count == 4 && second.count == 4)
        #expect(Set(first.map(\.candidate.versionID)).isDisjoint(with: second.map(\.candidate.versionID)), "no version claimed twice")
        #expect(first.map(\.candidate.versionID) == first.map(\.candidate.versionID).sorted(), "oldest first")
        #expect(try b.claimPendingTransforms(client: "acme", owner: "b", ttlMillis: 60_000, limit: 10).count == 2, "what is left")
        #expect(try a.claimPendingTransforms(client: "acme", owner: "a", ttlMillis: 60_000, limit: 10).isEmpty)

        let record = Manifest.TransformRecord(dataset: "d", mappingSHA256: "m", schemaSHA256: nil, status: "ok", rowsWritten: 1, rowsRejected: 0,
                                              outputPath: nil, rejectsPath: nil, error: nil)
        try a.recordTransform(versionID: first[0].candidate.versionID, record, fence: first[0].fence)
        #expect(try !a.leaseHolders().contains { $0.source == first[0].fence.source }, "the record removed its claim")
        #expect(try a.renewLease(first[1].fence, ttlMillis: 60_000))
        #expect(try !a.renewLease(first[0].fence, ttlMillis: 60_000), "a removed claim is not renewed back")

        // a's claim on one version runs out (a stalled): b claims it anew and records it; a's
        // late record is refused and nothing of it is kept.
        #expect(try a.renewLease(first[1].fence, ttlMillis: 1))
        usleep(50_000)
        let taken = try b.claimPendingTransforms(client: "acme", owner: "b", ttlMillis: 60_000, limit: 10)
        #expect(taken.map(\.candidate.versionID) == [first[1].candidate.versionID] && taken.first?.fence.token == 2, "\(taken)")
        try b.recordTransform(versionID: taken[0].candidate.versionID, record, fence: taken[0].fence)
        do {
            try a.recordTransform(versionID: first[1].candidate.versionID, record, fence: first[1].fence)
            Issue.record("a's late record was taken")
        } catch {
            #expect(error.leaseLost != nil, "\(error)")
        }
        #expect(try b.transformCandidates(client: "acme", selection: .all).count == 10)
        #expect(try b.transformCandidates(client: "acme", selection: .pending).count == 8)
        #expect(try a.renewLease(first[1].fence, ttlMillis: 60_000) == false)
    }

    /// A pass whose lease was taken over while it ran (the agent was paused past its lease):
    /// its commit is refused, what it published stays in the lake (the new owner may have
    /// adopted it already), and the new owner's pass records every file exactly once.
    @Test(arguments: ManifestBackend.allCases) func aLatePassIsRefusedAndTheNewOwnerAdoptsItsFiles(_ backend: ManifestBackend) throws {
        let f = try ManifestFixture(backend, label: "late")
        let lake = try Lake(root: f.dir.sub("lake"))
        let source = FakeSource()
        source.files = (0..<5).map { FakeSource.File(path: "f\($0).csv", bytes: FakeSourceTests.bytes(3_000, seed: UInt8($0))) }
        _ = try f.manifest.claimLease(client: "acme", source: "fake", owner: "a", ttlMillis: 1)
        usleep(50_000)
        let other = try f.reopen()
        let token = try #require(try other.claimLease(client: "acme", source: "fake", owner: "b", ttlMillis: 60_000))
        let stale = Ingestor(lake: lake, manifest: f.manifest, stateDir: f.dir.sub("state-a"), logger: testLogger, workers: 2, batchSize: 2,
                             fence: LeaseFence(client: "acme", source: "fake", owner: "a", token: 1))
        do {
            let report = try stale.pull(client: "acme", sources: [source], trigger: "schedule")
            #expect(!report.sourceErrors.isEmpty || report.counts.new == 0, "the stale pass records nothing: \(report.counts)")
        } catch {
            #expect(error.message.contains("commit refused"), "\(error)")
        }
        #expect(try other.history(client: "acme", path: nil).isEmpty)
        let left = (try? FileManager.default.subpathsOfDirectory(atPath: f.dir.sub("lake/raw/acme/fake")))?.filter { $0.hasSuffix(".csv") } ?? []
        #expect(!left.isEmpty, "the refused pass leaves what it published")

        let owner = Ingestor(lake: lake, manifest: other, stateDir: f.dir.sub("state-b"), logger: testLogger, workers: 2, batchSize: 2,
                             fence: LeaseFence(client: "acme", source: "fake", owner: "b", token: token))
        let report = try owner.pull(client: "acme", sources: [source], trigger: "schedule")
        #expect(report.counts.new == 5 && report.counts.failed == 0, "\(report.files.map { "\($0.path) \($0.status) \($0.error ?? "")" })")
        let history = try other.history(client: "acme", path: nil)
        #expect(Set(history.map(\.path)).count == 5 && history.count == 5)
        let buffer = IOBuffer(size: 1 << 16)  // alive while the hash reads into it
        for v in history {
            let digest = try FileDigest.sha256(path: f.dir.sub("lake/\(v.lake_path)"), buffer: buffer.raw)
            #expect(digest.sha256 == v.sha256, "\(v.lake_path)")
        }
        withExtendedLifetime(buffer) {}
        let files = (try FileManager.default.subpathsOfDirectory(atPath: f.dir.sub("lake/raw/acme/fake"))).filter { $0.hasSuffix(".csv") }
        #expect(files.count == 5, "each file once in the lake: \(files)")
    }
}

extension LeaseTests {
    /// Two `sluice run` agents on one PostgreSQL manifest and one lake poll the same bucket:
    /// one holds the source's lease and polls it; when it is paused (SIGSTOP) past its lease,
    /// the other takes the source over; resumed, the first finds its lease gone. Every object
    /// is in the manifest and in the lake exactly once, and the audit is clean.
    @Test func twoAgentsShareABucketAndATakeoverLosesNothing() throws {
        let server = try PostgresServer.shared()
        let moto = try MotoServer()
        try moto.bucket("shared")
        try moto.put("shared", Dictionary(uniqueKeysWithValues: (0..<20).map { ("in/o\($0).csv", "id\n\($0)\n") }))
        let database = try server.createDatabase("agents")
        let shared = TempDir("agents-lake")
        func agent(_ name: String) throws -> (TempDir, DaemonProcess) {
            let dir = TempDir("agent-\(name)")
            let port = try SSHServer.freePort()
            dir.write("secrets/acme.s3", "[default]\naws_access_key_id = test\naws_secret_access_key = test\n")
            dir.write("agent.conf", """
                [agent]
                name = "\(name)"
                state_dir = "state"
                lake_dir = "\(shared.sub("lake"))"
                http_listen = "127.0.0.1:\(port)"
                shutdown_timeout = "20s"
                lease_ttl = "3s"

                \(server.manifestTable(database))

                \(moto.sourceTable(bucket: "shared", prefix: "in/", credentials: dir.sub("secrets/acme.s3"), extra: "min_age = \"0s\"\npoll_interval = \"1s\""))
                """)
            dir.write("mappings/acme.toml", """
                [datasets.orders]
                match = ["**/*.csv"]
                format = "csv"
                fields = [ { name = "id", source = "id", type = "int64", required = true } ]
                """)
            let d = try DaemonProcess(dir: dir, port: port)
            try d.waitReady()
            return (dir, d)
        }
        func versions() -> Int { Int((try? server.psql(database, "SELECT count(*) FROM version")) ?? "") ?? -1 }
        func owner(_ d: DaemonProcess) -> String? { (d.status()["sources"] as? [[String: Any]])?.first?["owner"] as? String }

        let (dirA, a) = try agent("a")
        #expect(eventually(20) { versions() == 20 }, "\(a.log)")
        let (dirB, b) = try agent("b")
        #expect(eventually(10) { owner(b) == "a" }, "b sees a holding the source: \(b.status())")
        #expect((b.status()["sources"] as? [[String: Any]])?.first?["state"] as? String == "elsewhere")

        // a is paused past its lease: b takes the source over and fetches what arrives.
        a.signal(SIGSTOP)
        try moto.put("shared", Dictionary(uniqueKeysWithValues: (20..<25).map { ("in/o\($0).csv", "id\n\($0)\n") }))
        #expect(eventually(30) { versions() == 25 }, "\(b.log)")
        func transformed() -> Int { Int((try? server.psql(database, "SELECT count(DISTINCT version_id) FROM transform")) ?? "") ?? -1 }
        #expect(eventually(30) { transformed() == 25 }, "b transforms what it ingested: \(b.log)")
        #expect(owner(b) == "b", "\(b.status())")
        #expect(b.log.contains("Took the source's lease"))
        a.signal(SIGCONT)
        #expect(eventually(15) { a.log.contains("Lost the source's lease") || a.log.contains("Commit refused") }, "\(a.log)")
        #expect(eventually(10) { owner(a) == "b" }, "\(a.status())")

        a.signal(SIGTERM)
        b.signal(SIGTERM)
        #expect(a.waitForExit(seconds: 30) == 0)
        #expect(b.waitForExit(seconds: 30) == 0)
        #expect(try server.psql(database, "SELECT count(*), count(DISTINCT f.path) FROM version v JOIN file f ON f.id = v.file_id") == "25|25")
        // Both agents' workers transform, one agent per client at a time: no version twice.
        #expect(try server.psql(database, "SELECT count(*), count(DISTINCT version_id), count(*) FILTER (WHERE status = 'ok') FROM transform") == "25|25|25")
        let outputs = (try FileManager.default.subpathsOfDirectory(atPath: shared.sub("lake/processed/acme/orders"))).filter { $0.hasSuffix(".parquet") }
        #expect(outputs.count == 25, "\(outputs.sorted())")
        let raw = (try FileManager.default.subpathsOfDirectory(atPath: shared.sub("lake/raw/acme/bucket"))).filter { $0.hasSuffix(".csv") }
        #expect(raw.count == 25, "each object once in the lake: \(raw.sorted())")
        let audit = try SluiceBinary.run(["audit"], config: dirB.sub("agent.conf"))
        #expect(audit.status == 0, "\(audit.stdout) \(audit.stderr)")
        _ = dirA
    }
}
