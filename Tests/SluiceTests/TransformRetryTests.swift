import Foundation
import SluiceTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A transform that meets a full disk failed for nothing in the file: it is not recorded, the
/// version stays pending, and it is transformed once there is room (by the next `transform`,
/// or by the daemon's workers on their own, after a delay).
@Suite(.serialized) struct TransformRetryTests {
    /// Fills the file system of `path` but for a few KiB, with a file `ballast` in it.
    static func fill(_ path: String) throws -> String {
        let ballast = "\(path)/ballast"
        var st = statvfs()
        try #require(statvfs(path, &st) == 0)
        let free = Int(st.f_bavail) * Int(st.f_frsize)
        let r = try Shell.run("/usr/bin/fallocate", ["-l", "\(max(free - 8192, 4096))", ballast])
        try #require(r.status == 0, "\(r.stderr)")
        return ballast
    }

    static func rows(_ n: Int) -> String { "id,name\n" + (0..<n).map { "\($0),customer number \($0 * 7919 % 100_003)\n" }.joined() }

    static func transformRows(_ dir: TempDir) -> String {
        ((try? TestManifest.query(dir, "SELECT status, count(*) FROM transform GROUP BY status ORDER BY status").stdout) ?? "")
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func processedFiles(_ dir: TempDir) -> [String] {
        (FileManager.default.enumerator(atPath: dir.sub("lake/processed"))?.allObjects as? [String] ?? []).filter { $0.hasSuffix(".parquet") || $0.contains(".%tmp-") }
    }

    @Test(.enabled(if: isRoot, "needs root to mount a small tmpfs"))
    func aFullDiskPostponesTheTransformUntilThereIsRoom() throws {
        let dir = TempDir("transform-full")
        let port = try SSHServer.freePort()
        DaemonTests.folderConfig(dir, port: port, minAge: "0s")
        dir.write("mappings/acme.toml", """
            [datasets.orders]
            match = ["**/*.csv"]
            format = "csv"
            fields = [ { name = "id", source = "id", type = "int64", required = true }, { name = "name", source = "name", type = "string" } ]
            """)
        let conf = dir.sub("agent.conf")
        let lake = dir.sub("lake")
        try FileManager.default.createDirectory(atPath: lake, withIntermediateDirectories: true)
        let mount = try Shell.run("/bin/mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", lake])
        try #require(mount.status == 0, "mount failed: \(mount.stderr)")
        defer { _ = try? Shell.run("/bin/umount", ["-l", lake]) }

        // An archive first: none of its members' outputs may be published while it waits.
        let staging = dir.sub("staging")
        dir.write("staging/jan.csv", Self.rows(20_000))
        dir.write("staging/feb.csv", Self.rows(20_000))
        let zip = try Shell.run("/usr/bin/zip", ["-q", "-j", dir.sub("drop-acme/months.zip"), "\(staging)/jan.csv", "\(staging)/feb.csv"])
        try #require(zip.status == 0, "\(zip.stderr)")
        #expect(try SluiceBinary.run(["pull", "acme", "--no-transform"], config: conf).status == 0)
        var ballast = try Self.fill(lake)
        let (full, obj) = try SluiceBinary.json(["transform", "acme"], config: conf)
        #expect(full.status == 1, "\(full.stdout)\(full.stderr)")
        let report = try #require((obj as? [[String: Any]])?.first ?? ((obj as? [String: Any])?["transforms"] as? [[String: Any]])?.first, "\(full.stdout)")
        let error = report["error"] as? String ?? ""
        #expect(report["status"] as? String == "failed")
        #expect(error.contains("No space left on device") && error.contains("not recorded"), "\(error)")
        #expect(error.contains("member"), "it names the member that met the full disk: \(error)")
        #expect(Self.transformRows(dir).isEmpty, "nothing is recorded: \(Self.transformRows(dir))")
        #expect(Self.processedFiles(dir).isEmpty, "no member's output is published, no temp file left: \(Self.processedFiles(dir))")
        try FileManager.default.removeItem(atPath: ballast)
        let roomy = try SluiceBinary.run(["transform", "acme"], config: conf)
        #expect(roomy.status == 0, "\(roomy.stdout)\(roomy.stderr)")
        #expect(Self.transformRows(dir) == "ok|3", "the archive and its two members, once: \(Self.transformRows(dir))")

        // The daemon: a version committed while there was room, then the disk fills.
        dir.write("drop-acme/orders.csv", Self.rows(30_000))
        #expect(try SluiceBinary.run(["pull", "acme", "--no-transform"], config: conf).status == 0)
        ballast = try Self.fill(lake)
        let d = try DaemonProcess(dir: dir, port: port)
        try d.waitReady()
        #expect(eventually(30) { d.log.contains("Transform postponed") && d.log.contains("tried again later") }, "\(d.log.suffix(3000))")
        #expect(Self.transformRows(dir) == "ok|3", "the postponed transform is not recorded: \(Self.transformRows(dir))")
        try FileManager.default.removeItem(atPath: ballast)
        // The workers try again on their own (after 5 s, then 10 s, …): no new delivery needed.
        #expect(eventually(60) { Self.transformRows(dir) == "ok|4" }, "\(Self.transformRows(dir)); log: \(d.log.suffix(3000))")
        d.signal(SIGTERM)
        #expect(d.waitForExit(seconds: 30) == 0, "\(d.log.suffix(2000))")
        #expect(!Self.processedFiles(dir).contains { $0.contains(".%tmp-") })
        let audit = try SluiceBinary.run(["audit"], config: conf)
        #expect(audit.status == 0, "\(audit.stdout)\(audit.stderr)")
    }
}
