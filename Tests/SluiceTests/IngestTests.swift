import Foundation
import SluiceAgent
import SluiceLake
import SluiceManifest
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

@Suite struct IngestTests {
    @Test func newChangedAndUnchangedFiles() throws {
        let dir = TempDir("ingest")
        dir.config()
        dir.write("drop/in/orders.csv", "id;amount\n1;42,17\n")
        dir.write("drop/empty.csv", "")
        let agent = try loadAgent(dir)

        let first = try agent.pull(client: "acme", source: nil)
        #expect(first.counts.new == 2)
        #expect(first.succeeded)
        let orders = try #require(first.files.first { $0.path == "in/orders.csv" })
        #expect(orders.version == 1)
        #expect(orders.lakePath == "raw/acme/drop/in/orders.v1.csv")
        let stored = dir.sub("lake/raw/acme/drop/in/orders.v1.csv")
        #expect(try Data(contentsOf: URL(fileURLWithPath: stored)) == Data("id;amount\n1;42,17\n".utf8))
        #expect(try sha256(ofFile: stored) == orders.sha256)
        let mode = (try FileManager.default.attributesOfItem(atPath: stored)[.posixPermissions] as? NSNumber)?.intValue
        #expect(mode.map { $0 & 0o777 } == 0o440)
        #expect(FileManager.default.fileExists(atPath: dir.sub("lake/raw/acme/drop/empty.v1.csv")))

        let second = try agent.pull(client: "acme", source: nil)
        #expect(second.counts.new == 0)
        #expect(second.counts.unchanged == 2)

        dir.write("drop/in/orders.csv", "id;amount\n1;42,17\n2;1.234,50\n")
        let third = try agent.pull(client: "acme", source: nil)
        #expect(third.counts.new == 1)
        #expect(third.files.first?.version == 2)
        #expect(FileManager.default.fileExists(atPath: dir.sub("lake/raw/acme/drop/in/orders.v2.csv")))
        #expect(FileManager.default.fileExists(atPath: stored))

        let history = try agent.history(client: "acme", path: "in/orders.csv")
        #expect(history.map(\.version) == [2, 1])
        #expect(try agent.history(client: "acme", path: "in").count == 2)
        #expect(try agent.audit(client: nil, quick: false).clean)
    }

    @Test(arguments: ["syncfs", "fsync"])
    func bothSyncMethodsStoreDurableVersions(method: String) throws {
        let dir = TempDir("sync-\(method)")
        dir.config(agent: "sync_method = \"\(method)\"", tables: """
            [clients.acme.sources.drop]
            type = "folder"
            path = "drop"
            min_age = "0s"
            """)
        for i in 0..<1200 { dir.write("drop/d\(i % 3)/f\(i).csv", "row \(i)\n") }
        let agent = try loadAgent(dir)
        #expect(agent.config.syncMethod.rawValue == method)
        let r = try agent.pull(client: "acme", source: nil)
        #expect(r.counts.new == 1200)
        #expect(r.succeeded)
        let audit = try agent.audit(client: "acme", quick: false)
        #expect(audit.clean)
        #expect(audit.ok == 1200)
    }

    @Test func sameContentAgainIsASightingNotANewVersion() throws {
        let dir = TempDir("sighting")
        dir.config()
        let f = dir.write("drop/a.csv", "same\n")
        let agent = try loadAgent(dir)
        _ = try agent.pull(client: "acme", source: nil)
        age(f, seconds: 100)  // new mtime, same bytes
        let r = try agent.pull(client: "acme", source: nil)
        #expect(r.counts.new == 0)
        #expect(r.counts.unchanged == 1)
        #expect(r.files.first?.status == .unchanged)
        #expect(try agent.history(client: "acme", path: nil).count == 1)
        let sightings = try TestManifest.query(dir, "SELECT count(*) FROM sighting")
        #expect(sightings.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "1")
        // And the sighting's mtime is now known: the next pull does not even open the file.
        let again = try agent.pull(client: "acme", source: nil)
        #expect(again.counts.unchanged == 1)
        #expect(again.files.isEmpty)
    }

    @Test func oddNamesAreIngestedAndKeptApart() throws {
        let dir = TempDir("names")
        dir.config()
        let drop = dir.sub("drop")
        try FileManager.default.createDirectory(atPath: drop, withIntermediateDirectories: true)
        let names: [[UInt8]] = [
            Array("with space.csv".utf8), Array("ünïcödé €.csv".utf8), Array("new\nline.csv".utf8),
            [0x6C, 0x61, 0x74, 0x69, 0x6E, 0xE9, 0x2E, 0x63, 0x73, 0x76],  // "latiné.csv" in Latin-1
            Array("100%.csv".utf8), Array("-rf.csv".utf8),
        ]
        for (i, n) in names.enumerated() {
            var path = Array(drop.utf8) + [0x2F] + n
            path.append(0)
            let fd = path.withUnsafeBufferPointer { $0.withMemoryRebound(to: CChar.self) { open($0.baseAddress!, O_WRONLY | O_CREAT, 0o644) } }
            #expect(fd >= 0)
            _ = "content \(i)".withCString { write(fd, $0, strlen($0)) }
            close(fd)
        }
        let agent = try loadAgent(dir)
        let r = try agent.pull(client: "acme", source: nil)
        #expect(r.counts.new == names.count)
        #expect(r.succeeded)
        let latin = try #require(r.files.first { $0.path == "latin\\xE9.csv" })
        #expect(latin.lakePath == "raw/acme/drop/latin%E9.v1.csv")
        #expect(r.files.contains { $0.lakePath == "raw/acme/drop/new%0Aline.v1.csv" })
        #expect(r.files.contains { $0.lakePath == "raw/acme/drop/100%25.v1.csv" })
        #expect(try agent.audit(client: nil, quick: false).clean)
        #expect(try agent.pull(client: "acme", source: nil).counts.unchanged == names.count)
    }

    @Test func symlinksAreNotFollowedOutOfTheRoot() throws {
        let dir = TempDir("links")
        dir.config()
        let secret = dir.write("outside/secret.txt", "do not take me")
        dir.write("drop/real.csv", "inside")
        try FileManager.default.createSymbolicLink(atPath: dir.sub("drop/evil.txt"), withDestinationPath: secret)
        try FileManager.default.createSymbolicLink(atPath: dir.sub("drop/rel-evil.txt"), withDestinationPath: "../outside/secret.txt")
        try FileManager.default.createSymbolicLink(atPath: dir.sub("drop/good.csv"), withDestinationPath: "real.csv")
        try FileManager.default.createSymbolicLink(atPath: dir.sub("drop/outdir"), withDestinationPath: dir.sub("outside"))
        let agent = try loadAgent(dir)
        let r = try agent.pull(client: "acme", source: nil)
        #expect(r.counts.new == 2)
        #expect(Set(r.files.filter { $0.status == .new }.map(\.path)) == ["real.csv", "good.csv"])
        #expect(r.files.filter { $0.status == .skipped }.map(\.path).sorted() == ["evil.txt", "outdir", "rel-evil.txt"])
        #expect(r.succeeded)
        let grep = try Shell.run("/bin/grep", ["-r", "do not take me", dir.sub("lake")])
        #expect(grep.status == 1)
    }

    @Test func aFileThatChangesWhileCopiedIsRetriedNextPass() throws {
        let dir = TempDir("grow")
        dir.config()
        // Over 8 MiB, so it is hashed on a second thread while copied; random, so that a block
        // hashed out of order would show in the digest.
        let big = dir.write("drop/growing.csv", FileHandle(forReadingAtPath: "/dev/urandom")!.readData(ofLength: 12 << 20))
        dir.write("drop/steady.csv", "ok")
        let agent = try loadAgent(dir)
        let hooks = IngestHooks(afterFirstChunk: { c in
            guard c.path.display == "growing.csv", let h = FileHandle(forWritingAtPath: big) else { return }
            h.seekToEndOfFile()
            h.write(Data("more rows\n".utf8))
            try? h.close()
        })
        let r = try agent.pull(client: "acme", source: nil, hooks: hooks)
        #expect(r.counts.new == 1)
        #expect(r.counts.skipped == 1)
        let skipped = try #require(r.files.first { $0.path == "growing.csv" })
        #expect(skipped.status == .skipped)
        #expect(skipped.error?.contains("changed while copying") == true)
        #expect(try agent.history(client: "acme", path: "growing.csv").isEmpty)
        let leftovers = FileManager.default.enumerator(atPath: dir.sub("lake"))?.compactMap { $0 as? String }.filter { $0.contains(Lake.tempPrefix) }
        #expect(leftovers == [])

        let next = try agent.pull(client: "acme", source: nil)
        #expect(next.counts.new == 1)
        let v = try #require(try agent.history(client: "acme", path: "growing.csv").first)
        #expect(v.size == Int64(12 << 20) + 10)
        #expect(try sha256(ofFile: dir.sub("lake/\(v.lake_path)")) == (try sha256(ofFile: big)))
    }

    @Test func freshFilesWaitForMinAge() throws {
        let dir = TempDir("minage")
        dir.config(sourceExtra: "min_age = \"1h\"")
        let old = dir.write("drop/old.csv", "old")
        age(old, seconds: 7200)
        dir.write("drop/fresh.csv", "fresh")
        let agent = try loadAgent(dir)
        let r = try agent.pull(client: "acme", source: nil)
        #expect(r.counts.new == 1)
        #expect(r.counts.skipped == 1)
        #expect(r.files.first { $0.path == "fresh.csv" }?.error?.contains("not stable yet") == true)
        #expect(r.succeeded)
    }

    @Test func missingDropFolderFailsThatSourceOnly() throws {
        let dir = TempDir("missing")
        dir.config(tables: """
            [clients.acme.sources.gone]
            type = "folder"
            path = "nowhere"
            [clients.acme.sources.ok]
            type = "folder"
            path = "drop"
            min_age = "0s"
            """)
        dir.write("drop/a.csv", "a")
        let r = try SluiceBinary.json(["pull", "acme"], config: dir.sub("agent.conf"))
        #expect(r.0.status == 1)
        let obj = try #require(r.1 as? [String: Any])
        #expect(obj["new"] as? Int == 1)
        let errs = try #require(obj["source_errors"] as? [[String: String]])
        #expect(errs.first?["source"] == "gone")
        #expect(errs.first?["error"]?.contains("does not exist") == true)
        #expect(errs.first?["error"]?.contains("clients.acme.sources.gone.path") == true)
    }

    @Test func stateAndLakeFoldersAreCreated() throws {
        let dir = TempDir("create")
        dir.write("agent.conf", """
            [agent]
            state_dir = "deep/state/dir"
            lake_dir = "deep/lake/dir"
            [clients.acme.sources.drop]
            type = "folder"
            path = "drop"
            min_age = "0s"
            """)
        dir.write("drop/a.csv", "a")
        let r = try SluiceBinary.run(["pull", "acme"], config: dir.sub("agent.conf"))
        #expect(r.status == 0, "\(r.stderr)")
        #expect(TestManifest.onPostgres || FileManager.default.fileExists(atPath: dir.sub("deep/state/dir/manifest.sqlite")))
        #expect(FileManager.default.fileExists(atPath: dir.sub("deep/lake/dir/raw/acme/drop/a.v1.csv")))
    }

    /// Root ignores file modes, so as root the command runs without CAP_DAC_OVERRIDE and
    /// CAP_DAC_READ_SEARCH, on files owned by nobody.
    static let dropDAC = ["/usr/bin/setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps", "-all"]

    @Test func unreadableFileIsReportedAndOthersContinue() throws {
        let dir = TempDir("unreadable")
        dir.config()
        dir.write("drop/good.csv", "good")
        let bad = dir.write("drop/secret.csv", "secret")
        chmod(bad, 0)
        if isRoot { chown(bad, 65534, 65534) }
        try FileManager.default.createDirectory(atPath: dir.sub("state"), withIntermediateDirectories: true)
        let r = try SluiceBinary.run(["pull", "acme", "--json"], config: dir.sub("agent.conf"), prefix: isRoot ? Self.dropDAC : [])
        #expect(r.status == 1, "\(r.stderr)")
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(obj["new"] as? Int == 1)
        #expect(obj["failed"] as? Int == 1)
        let files = try #require(obj["files"] as? [[String: Any]])
        let failed = try #require(files.first { $0["path"] as? String == "secret.csv" })
        #expect((failed["error"] as? String)?.contains("permission denied") == true)
        #expect(failed["status"] as? String == "failed")
    }

    @Test func stateDirThatIsNotWritableIsAClearError() throws {
        let dir = TempDir("rostate")
        dir.config()
        dir.write("drop/a.csv", "a")
        try FileManager.default.createDirectory(atPath: dir.sub("state"), withIntermediateDirectories: true)
        chmod(dir.sub("state"), 0o555)
        if isRoot { chown(dir.sub("state"), 65534, 65534) }
        let r = try SluiceBinary.run(["pull", "acme"], config: dir.sub("agent.conf"), prefix: isRoot ? Self.dropDAC : [])
        #expect(r.status == 1)
        #expect(r.stderr.contains("agent.state_dir"), "\(r.stderr)")
        #expect(r.stderr.contains("not writable"))
        #expect(!FileManager.default.fileExists(atPath: dir.sub("lake/raw/acme/drop/a.v1.csv")))
    }

    @Test func afterIngestDeleteAndMoveRunOnlyAfterCommit() throws {
        let dir = TempDir("after")
        dir.config(tables: """
            [clients.acme.sources.del]
            type = "folder"
            path = "del"
            min_age = "0s"
            after_ingest = "delete"
            [clients.acme.sources.mv]
            type = "folder"
            path = "mv"
            min_age = "0s"
            after_ingest = "move:done"
            """)
        dir.write("del/sub/a.csv", "a")
        dir.write("mv/sub/b.csv", "b")
        let agent = try loadAgent(dir)
        let r = try agent.pull(client: "acme", source: nil)
        #expect(r.counts.new == 2)
        #expect(r.succeeded)
        #expect(!FileManager.default.fileExists(atPath: dir.sub("del/sub/a.csv")))
        #expect(!FileManager.default.fileExists(atPath: dir.sub("mv/sub/b.csv")))
        #expect(try String(contentsOfFile: dir.sub("mv/done/sub/b.csv"), encoding: .utf8) == "b")
        // The moved copy is not ingested again, and a new file with the same name is moved beside it.
        dir.write("mv/sub/b.csv", "b2")
        let r2 = try agent.pull(client: "acme", source: nil)
        #expect(r2.counts.new == 1)
        #expect(try String(contentsOfFile: dir.sub("mv/done/sub/b.csv.1"), encoding: .utf8) == "b2")
        #expect(try agent.history(client: "acme", path: "sub/b.csv").count == 2)
    }

    @Test func unknownClientOrSourceExitsTwo() throws {
        let dir = TempDir("unknown")
        dir.config()
        let r = try SluiceBinary.run(["pull", "nobody"], config: dir.sub("agent.conf"))
        #expect(r.status == 2)
        #expect(r.stderr.contains("unknown client 'nobody'"))
        let s = try SluiceBinary.run(["pull", "acme", "--source", "nope"], config: dir.sub("agent.conf"))
        #expect(s.status == 2)
        let h = try SluiceBinary.run(["history", "nobody"], config: dir.sub("agent.conf"))
        #expect(h.status == 2)
    }

    @Test func jsonOutputsHaveTheDocumentedFields() throws {
        let dir = TempDir("json")
        dir.config()
        dir.write("drop/a.csv", "a")
        let (r, obj) = try SluiceBinary.json(["pull", "acme"], config: dir.sub("agent.conf"))
        #expect(r.status == 0)
        let o = try #require(obj as? [String: Any])
        for k in ["client", "new", "unchanged", "skipped", "failed", "files"] { #expect(o[k] != nil, "\(k)") }
        let f = try #require((o["files"] as? [[String: Any]])?.first)
        for k in ["source", "path", "version", "sha256", "size", "lake_path", "status", "error"] { #expect(f.keys.contains(k), "\(k)") }
        #expect(f["sha256"] as? String == "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb")

        let (h, hist) = try SluiceBinary.json(["history", "acme"], config: dir.sub("agent.conf"))
        #expect(h.status == 0)
        let row = try #require((hist as? [[String: Any]])?.first)
        for k in ["client", "source", "path", "version", "sha256", "size", "lake_path", "ingested_at"] { #expect(row[k] != nil, "\(k)") }

        let (a, audit) = try SluiceBinary.json(["audit"], config: dir.sub("agent.conf"))
        #expect(a.status == 0)
        let ao = try #require(audit as? [String: Any])
        #expect(ao["checked"] as? Int == 1)
        #expect(ao["ok"] as? Int == 1)
        for k in ["missing", "corrupt", "orphans"] { #expect((ao[k] as? [Any])?.isEmpty == true, "\(k)") }
    }

    @Test func twoPullsAtOnceNeverCreateDoubleVersions() throws {
        let dir = TempDir("concurrent")
        dir.config()
        for i in 0..<1500 { dir.write("drop/d\(i % 7)/f\(i).csv", "row \(i)\n") }
        let conf = dir.sub("agent.conf")
        let results = SlotBox()
        let group = DispatchGroup()
        for _ in 0..<3 {
            DispatchQueue.global().async(group: group) {
                let r = try? SluiceBinary.run(["pull", "acme", "--json"], config: conf)
                results.append(r)
            }
        }
        group.wait()
        #expect(results.all.count == 3)
        var totalNew = 0
        for r in results.all {
            let res = try #require(r)
            #expect(res.status == 0, "\(res.stderr)")
            let o = try #require(try JSONSerialization.jsonObject(with: Data(res.stdout.utf8)) as? [String: Any])
            totalNew += o["new"] as? Int ?? 0
        }
        #expect(totalNew == 1500)
        let count = try TestManifest.query(dir, "SELECT count(*), count(DISTINCT file_id), max(version) FROM version")
        #expect(count.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "1500|1500|1")
    }
}

extension IngestTests {
    /// Many processes starting at the same moment each take their own staging lock; none may
    /// take another's staging folder for a dead one.
    @Test func manyProcessesStartingAtOnceNeverTakeEachOthersStaging() throws {
        let dir = TempDir("startup")
        dir.config()
        for i in 0..<20 { dir.write("drop/f\(i).csv", "x\(i)") }
        let conf = dir.sub("agent.conf")
        for round in 0..<5 {
            let results = SlotBox()
            let group = DispatchGroup()
            for _ in 0..<8 {
                DispatchQueue.global().async(group: group) {
                    results.append(try? SluiceBinary.run(["pull", "acme"], config: conf))
                }
            }
            group.wait()
            for r in results.all {
                let res = try #require(r)
                #expect(res.status == 0, "round \(round): \(res.stderr)")
            }
        }
        #expect(try SluiceBinary.run(["audit"], config: conf).status == 0)
        #expect(Lake.listDirectory(dir.sub("lake/.sluice/tmp")).isEmpty)
    }

    /// A new folder's entry is synced in its parent when a file is published in it (before
    /// the commit), not when the folder is made: a temp file needs no durable folder, and the
    /// early sync would wait for all the data in flight.
    @Test func newFoldersAreMadeDurableWithTheFirstPublishInThem() throws {
        let dir = TempDir("dirsync")
        let lake = try Lake(root: dir.sub("lake"))
        try lake.prepare(folders: ["processed/a/b"])
        #expect(lake.foldersAwaitingSync == ["", "processed", "processed/a"])
        try lake.syncDirectories(["raw"])
        #expect(lake.foldersAwaitingSync == ["processed", "processed/a"], "raw's sync syncs the root above it, not the others")
        try lake.syncDirectories(["processed/a/b"])
        #expect(lake.foldersAwaitingSync == [])
        try lake.prepare(folders: ["processed/a/c", "processed/a/b"])
        #expect(lake.foldersAwaitingSync == ["processed/a"])
        try lake.syncDirectories(["processed/a/c"])
        #expect(lake.foldersAwaitingSync == [])
    }

    /// The copy's background hash: the digest of the blocks in order, and a hasher dropped
    /// without `finish` (a copy that failed) ends its thread.
    @Test func backgroundHashMatchesAndEndsItsThread() throws {
        let blocks = (0..<5).map { i in [UInt8]((0..<70_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ i) }) }
        let hasher = BackgroundSHA256()
        for b in blocks {
            hasher.wait()
            b.withUnsafeBytes { hasher.start($0) }
            hasher.wait()  // `b`'s storage is only borrowed inside the closure
        }
        let dir = TempDir("bghash")
        let path = dir.write("all.bin", Data(blocks.joined()))
        #expect(hasher.finish() == (try sha256(ofFile: path)))

        BlockingPool.start()  // its threads are the process's for good, not leaks of this test
        let before = liveThreadCount()
        let block = [UInt8](repeating: 7, count: 1 << 20)
        for _ in 0..<20 {
            let dropped = BackgroundSHA256()
            block.withUnsafeBytes { dropped.start($0); dropped.wait() }
        }
        #expect(liveThreadCount() < before + 10, "twenty leaked threads would show; other suites' threads come and go")
    }

    /// The background fdatasync of a big staged file: one per whole step written, nothing
    /// before the first; the file is intact; an error is kept; a dropped one ends its thread.
    @Test func backgroundDataSyncRunsAStepAtATimeAndEndsItsThread() throws {
        let dir = TempDir("datasync")
        let lake = try Lake(root: dir.sub("lake"))
        try lake.prepare(folders: ["raw/c/s"])
        var staged = try lake.stage(inFolder: "raw/c/s")
        let step: Int64 = 1 << 20
        let sync = BackgroundDataSync(fd: staged.descriptor, step: step)
        let block = [UInt8]((0..<(256 << 10)).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        for i in 1...16 {
            try block.withUnsafeBytes { try staged.write($0) }
            sync.wrote(upTo: staged.size)
            #expect(sync.started == i / 4, "one sync per whole step written (\(staged.size) bytes)")
            // Let the running sync end, so the next step starts one.
            if i % 4 == 0 { sync.stop() }
        }
        sync.stop()
        let sealed = staged.seal(startWriteback: false)
        try sealed.syncAndClose()
        let expected = dir.write("expected.bin", Data(Array(repeating: block, count: 16).joined()))
        #expect(try sha256(ofFile: sealed.path) == sha256(ofFile: expected))

        #expect(sync.failure(path: sealed.path) == nil)

        // A failed sync is kept for the copy to fail the file (the final fsync on the same
        // descriptor would not see an error this one consumed).
        let broken = BackgroundDataSync(fd: -1, step: 1)
        broken.wrote(upTo: 2)
        broken.stop()
        #expect(broken.failure(path: "x")?.errno == EBADF)

        BlockingPool.start()  // its threads are the process's for good, not leaks of this test
        let before = liveThreadCount()
        for _ in 0..<20 {
            let dropped = BackgroundDataSync(fd: -1, step: 1)
            dropped.wrote(upTo: 2)
        }
        #expect(liveThreadCount() < before + 10, "twenty leaked threads would show; other suites' threads come and go")
    }

    @Test func startUpCleansOnlyStagingOfDeadProcesses() throws {
        let dir = TempDir("cleanup")
        let root = dir.sub("lake")
        let live = try Lake(root: root)
        try live.prepare(folders: ["raw/c/s"])
        var staged = try live.stage(inFolder: "raw/c/s")
        try "in flight".utf8.withContiguousStorageIfAvailable { try staged.write(UnsafeRawBufferPointer($0)) }
        let inFlight = staged.seal(startWriteback: false)
        // A dead owner with a lock file, one without (a clean-up cut short), and their temps.
        dir.write("lake/.sluice/tmp/1-dead/folders", "raw/c/s\n")
        dir.write("lake/.sluice/tmp/1-dead.lock", "")
        dir.write("lake/raw/c/s/.%tmp-1-dead-3", "partial")
        dir.write("lake/.sluice/tmp/2-gone/folders", "raw/c/s\n")
        dir.write("lake/raw/c/s/.%tmp-2-gone-9", "partial")

        #expect(Lake.staleOwners(root: root).map { $0.tempFiles.count }.sorted() == [1, 1])
        let second = try Lake(root: root)
        #expect(FileManager.default.fileExists(atPath: inFlight.path))
        #expect(FileManager.default.fileExists(atPath: live.stagingDirectory))
        #expect(!FileManager.default.fileExists(atPath: "\(root)/raw/c/s/.%tmp-1-dead-3"))
        #expect(!FileManager.default.fileExists(atPath: "\(root)/raw/c/s/.%tmp-2-gone-9"))
        #expect(Set(Lake.listDirectory("\(root)/.sluice/tmp")) == [live.owner, "\(live.owner).lock", second.owner, "\(second.owner).lock"])
        #expect(Lake.isLiveTemp(root: root, name: (inFlight.path as NSString).lastPathComponent))
        inFlight.discard()
    }
}

final class SlotBox: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [Shell.Result?] = []
    func append(_ r: Shell.Result?) { lock.lock(); items.append(r); lock.unlock() }
    var all: [Shell.Result?] { lock.lock(); defer { lock.unlock() }; return items }
}

extension IngestTests {
    /// Processes that open a new manifest at the same moment must not both run its migration.
    @Test func manyOpenersOfANewManifestMigrateItOnce() throws {
        let dir = TempDir("migrate")
        let path = dir.sub("manifest.sqlite")
        let failures = SlotBox()
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            do {
                _ = try Manifest(path: path)
            } catch {
                failures.append(Shell.Result(status: 1, stdout: "", stderr: "\(error)"))
            }
        }
        #expect(failures.all.isEmpty, "\(failures.all.compactMap { $0?.stderr })")
        let tables = try Shell.run("/usr/bin/sqlite3", [path, "SELECT group_concat(identifier) FROM grdb_migrations"])
        #expect(tables.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "v1-core,v2-transform,v3-token,v4-upload,v5-etag,v6-run-running,v7-move-target,v8-transform-schema,v9-lake-migration,v10-transform-member,v11-source-schema,v12-transform-dataset,v13-schema-drift,v14-alerts,v15-source-lease,v16-history,v17-postgres-scale", "each migration applied once")
    }

    /// Every pass (each upload, poll and drop-folder event is one) first looks for runs left
    /// running by a dead process. That look must read the few running runs through their own
    /// index, not walk every run the client ever had, or each pass slows as the history grows.
    @Test func theLeftRunningCheckReadsOnlyRunningRuns() throws {
        let dir = TempDir("running-index")
        let path = dir.sub("manifest.sqlite")
        let manifest = try Manifest(path: path)
        for _ in 0..<300 {
            let id = try manifest.startRun(client: "acme", source: "portal", trigger: "upload")
            try manifest.finishRun(id: id, status: .ok, error: nil)
        }
        let left = try manifest.startRun(client: "acme", source: "portal", trigger: "upload")
        _ = try Shell.run("/usr/bin/sqlite3", [path, "ANALYZE"])
        let plan = try Shell.run("/usr/bin/sqlite3", [path, "EXPLAIN QUERY PLAN \(Manifest.othersRunningRunsSQL)"])
        #expect(plan.stdout.contains("USING INDEX run_running"), "query plan: \(plan.stdout)")
        // The same query still finds a run another process left running.
        let found = try Shell.run("/usr/bin/sqlite3", [path, "UPDATE run SET pid = 1 WHERE id = \(left)", ".parameter set ?1 'acme'", ".parameter set ?2 2",
                                                       Manifest.othersRunningRunsSQL])
        #expect(found.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "1")
    }
}
