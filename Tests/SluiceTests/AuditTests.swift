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
