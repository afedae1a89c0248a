import Foundation
import SluiceAgent
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct CrashTests {
    /// SIGKILLs a real `sluice pull` of thousands of files at several moments, then checks that
    /// a normal pull leaves a clean audit and every file stored exactly once with its hash.
    @Test func sigkillAtAnyMomentLosesNothingAndDuplicatesNothing() throws {
        let dir = TempDir("crash")
        dir.config()
        let count = 4000
        var expected: [String: Int] = [:]
        for i in 0..<count {
            let body = String(repeating: "line \(i);", count: 1 + (i * 37) % 400)
            dir.write("drop/part\(i % 13)/file\(i).csv", body)
            expected["part\(i % 13)/file\(i).csv"] = body.utf8.count
        }
        let conf = dir.sub("agent.conf")
        var killedMidRun = 0
        for delayMs in [5, 40, 120, 250, 400, 700] {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: SluiceBinary.path)
            p.arguments = ["pull", "acme", "--config", conf, "--log-level", "error"]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            usleep(useconds_t(delayMs * 1000))
            if p.isRunning {
                kill(p.processIdentifier, SIGKILL)
                killedMidRun += 1
            }
            p.waitUntilExit()
        }
        #expect(killedMidRun >= 2, "the pulls finished before they could be killed; use more files")

        let final = try SluiceBinary.run(["pull", "acme"], config: conf)
        #expect(final.status == 0, "\(final.stderr)")
        let (audit, obj) = try SluiceBinary.json(["audit"], config: conf)
        #expect(audit.status == 0, "\(audit.stdout)")
        let o = try #require(obj as? [String: Any])
        #expect(o["checked"] as? Int == count)
        #expect(o["ok"] as? Int == count)

        let rows = try Shell.run("/usr/bin/sqlite3", ["-separator", "\t", dir.sub("state/manifest.sqlite"),
                                                      "SELECT path, version, sha256, size, lake_path FROM versions"])
        var seen: [String: Int] = [:]
        for line in rows.stdout.split(separator: "\n") {
            let cols = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            seen[cols[0], default: 0] += 1
            #expect(cols[1] == "1")
            #expect(Int(cols[3]) == expected[cols[0]])
            #expect(try sha256(ofFile: dir.sub("drop/\(cols[0])")) == cols[2])
        }
        #expect(seen.count == count)
        #expect(seen.values.allSatisfy { $0 == 1 })
        let interrupted = try Shell.run("/usr/bin/sqlite3", [dir.sub("state/manifest.sqlite"), "SELECT count(*) FROM run WHERE status = 'running'"])
        #expect(interrupted.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "0")
    }
}
