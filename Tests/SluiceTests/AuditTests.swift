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

@Suite struct AuditTests {
    @Test func auditFindsMissingCorruptOrphanAndTempFiles() throws {
        let dir = TempDir("audit")
        dir.config()
        dir.write("drop/keep.csv", "keep me")
        dir.write("drop/flip.csv", "flip me")
        dir.write("drop/grow.csv", "grow me")
        dir.write("drop/gone.csv", "gone")
        let conf = dir.sub("agent.conf")
        #expect(try SluiceBinary.run(["pull", "acme"], config: conf).status == 0)
        let clean = try SluiceBinary.run(["audit"], config: conf)
        #expect(clean.status == 0, "\(clean.stdout)")

        let lake = dir.sub("lake/raw/acme/drop")
        chmod("\(lake)/flip.v1.csv", 0o640)
        try Data("flip mE".utf8).write(to: URL(fileURLWithPath: "\(lake)/flip.v1.csv"))   // same size, other bytes
        chmod("\(lake)/grow.v1.csv", 0o640)
        try Data("grow me more".utf8).write(to: URL(fileURLWithPath: "\(lake)/grow.v1.csv"))
        unlink("\(lake)/gone.v1.csv")
        dir.write("lake/raw/acme/drop/stray.v1.csv", "who wrote me?")
        // What a process killed mid-copy leaves: its journal and a temp file beside the versions.
        dir.write("lake/.sluice/tmp/4000000-dead/folders", "raw/acme/drop\n")
        dir.write("lake/.sluice/tmp/4000000-dead.lock", "")
        dir.write("lake/raw/acme/drop/.%tmp-4000000-dead-7", "half a file")

        let (r, obj) = try SluiceBinary.json(["audit"], config: conf)
        #expect(r.status == 1)
        let o = try #require(obj as? [String: Any])
        #expect(o["checked"] as? Int == 4)
        #expect(o["ok"] as? Int == 1)
        #expect(o["missing"] as? [String] == ["raw/acme/drop/gone.v1.csv"])
        #expect(o["orphans"] as? [String] == ["raw/acme/drop/stray.v1.csv"])
        #expect(o["temp_files"] as? [String] == ["raw/acme/drop/.%tmp-4000000-dead-7"])
        let corrupt = try #require(o["corrupt"] as? [[String: Any]])
        #expect(corrupt.map { $0["lake_path"] as? String } == ["raw/acme/drop/flip.v1.csv", "raw/acme/drop/grow.v1.csv"])
        let flip = corrupt[0]
        #expect(flip["expected"] as? String == (try sha256Hex("flip me")))
        #expect(flip["actual"] as? String == (try sha256Hex("flip mE")))

        // --quick only sees the size change.
        let (q, qobj) = try SluiceBinary.json(["audit", "--quick"], config: conf)
        #expect(q.status == 1)
        let qo = try #require(qobj as? [String: Any])
        #expect((qo["corrupt"] as? [[String: Any]])?.map { $0["lake_path"] as? String } == ["raw/acme/drop/grow.v1.csv"])

        // A client filter only looks at that client's part of the lake.
        let unknown = try SluiceBinary.run(["audit", "nobody"], config: conf)
        #expect(unknown.status == 2)

        // The next start removes the leftover temp files.
        _ = try SluiceBinary.run(["pull", "acme"], config: conf)
        #expect(!FileManager.default.fileExists(atPath: dir.sub("lake/.sluice/tmp/4000000-dead")))
        #expect(!FileManager.default.fileExists(atPath: dir.sub("lake/.sluice/tmp/4000000-dead.lock")))
        #expect(Lake.listDirectory(dir.sub("lake/.sluice/tmp")).isEmpty)
        #expect(!FileManager.default.fileExists(atPath: dir.sub("lake/raw/acme/drop/.%tmp-4000000-dead-7")))
    }

    /// The audit cuts the lake into pieces along its folders (more, the more cores) and
    /// compares each piece's versions and files on its own: however it is cut, it finds the
    /// same, with versions whose whole folder is gone, files between two folders, files in a
    /// folder no version has, and names that differ only in Unicode normalisation.
    @Test func theAuditFindsTheSameHoweverTheLakeIsCut() throws {
        let dir = TempDir("audit-pieces")
        dir.config()
        let nfc = "\u{E9}.csv", nfd = "e\u{301}.csv"
        let names = ["a/x.csv", "a-b.csv", "a0.csv", "a/b/c.csv", "a/b-.csv", "ab.csv", nfc, nfd, "z/\u{E9}/1.csv", "Z.csv", "a.b/y.csv",
                     "gone/1.csv", "gone/2.csv", "k/l/m/n.csv"]
        for n in names { dir.write("drop/\(n)", n) }
        let conf = dir.sub("agent.conf")
        #expect(try SluiceBinary.run(["pull", "acme"], config: conf).status == 0)
        let lake = dir.sub("lake/raw/acme/drop")
        try FileManager.default.removeItem(atPath: "\(lake)/gone")
        unlink("\(lake)/e\u{301}.v1.csv")
        chmod("\(lake)/a0.v1.csv", 0o640)
        try Data("a0.csv and more".utf8).write(to: URL(fileURLWithPath: "\(lake)/a0.v1.csv"))
        let strays = ["raw/acme/drop/a/b/zz.v1.csv", "raw/acme/drop0.v1.csv", "raw/acme/new/folder/x.v1.csv", "raw/acme/drop/a.0.v1.csv",
                      "raw/top.v1.csv"]
        for f in strays { dir.write("lake/\(f)", "stray") }

        let manifest = try loadAgent(dir).openManifest()
        let missing = ["raw/acme/drop/e\u{301}.v1.csv", "raw/acme/drop/gone/1.v1.csv", "raw/acme/drop/gone/2.v1.csv"]
        for threads in [1, 3, 64] {
            for quick in [true, false] {
                for client in [nil, "acme"] {
                    let r = try Auditor.run(lakeDir: dir.sub("lake"), manifest: manifest, client: client, quick: quick, threads: threads)
                    let what = "\(threads) threads, quick \(quick), client \(client ?? "all")"
                    #expect(r.checked == names.count, "\(what)")
                    #expect(r.missing.count == missing.count && missing.allSatisfy { m in r.missing.contains { $0.bytesEqual(m) } },
                            "\(what): \(r.missing)")
                    #expect(r.corrupt.map(\.lakePath) == ["raw/acme/drop/a0.v1.csv"], "\(what)")
                    #expect(r.ok == names.count - 4, "\(what)")
                    #expect(Set(r.orphans) == Set(strays.filter { client == nil || $0.hasPrefix("raw/acme/") }), "\(what): \(r.orphans)")
                    #expect(r.tempFiles.isEmpty, "\(what)")
                }
            }
        }
    }

    @Test func auditOfAnEmptyLakeIsClean() throws {
        let dir = TempDir("audit-empty")
        dir.config()
        let r = try SluiceBinary.run(["audit"], config: dir.sub("agent.conf"))
        #expect(r.status == 0)
    }

    func sha256Hex(_ s: String) throws -> String {
        let dir = TempDir("h")
        return try sha256(ofFile: dir.write("x", s))
    }
}

@Suite(.serialized) struct DiskFullTests {
    @Test(.enabled(if: isRoot, "needs root to mount a small tmpfs"))
    func diskFullLeavesNoPartialVersionAndTheNextPullSucceeds() throws {
        let dir = TempDir("enospc")
        dir.config()
        let lake = dir.sub("lake")
        try FileManager.default.createDirectory(atPath: lake, withIntermediateDirectories: true)
        let mount = try Shell.run("/bin/mount", ["-t", "tmpfs", "-o", "size=256k", "tmpfs", lake])
        try #require(mount.status == 0, "mount failed: \(mount.stderr)")
        defer { _ = try? Shell.run("/bin/umount", ["-l", lake]) }
        dir.write("drop/big.bin", Data((0..<(1 << 20)).map { UInt8($0 & 0xFF) }))
        dir.write("drop/small.csv", "tiny")
        let conf = dir.sub("agent.conf")

        let (r, obj) = try SluiceBinary.json(["pull", "acme"], config: conf)
        #expect(r.status == 1)
        let o = try #require(obj as? [String: Any])
        let files = try #require(o["files"] as? [[String: Any]])
        let big = try #require(files.first { $0["path"] as? String == "big.bin" })
        #expect(big["status"] as? String == "failed")
        let message = big["error"] as? String ?? ""
        #expect(message.contains("No space left on device"), "\(message)")
        #expect(message.contains("free space and run again"))
        #expect(!FileManager.default.fileExists(atPath: "\(lake)/raw/acme/drop/big.v1.bin"))
        let audit = try SluiceBinary.run(["audit"], config: conf)
        #expect(audit.status == 0, "\(audit.stdout)")

        let grow = try Shell.run("/bin/mount", ["-o", "remount,size=8m", lake])
        try #require(grow.status == 0, "\(grow.stderr)")
        let again = try SluiceBinary.run(["pull", "acme"], config: conf)
        #expect(again.status == 0, "\(again.stdout)\(again.stderr)")
        #expect(try sha256(ofFile: "\(lake)/raw/acme/drop/big.v1.bin") == (try sha256(ofFile: dir.sub("drop/big.bin"))))
        #expect(try SluiceBinary.run(["audit"], config: conf).status == 0)
    }
}
