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
#if canImport(Glibc)
import Glibc
#endif

@Suite struct CrashTests {
    /// Starts a real `sluice pull acme` in the background, its output discarded.
    static func startPull(_ conf: String) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: SluiceBinary.path)
        p.arguments = ["pull", "acme", "--config", conf, "--log-level", "error"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        return p
    }

    /// The temp files of outputs being written under `<lake>/processed`.
    static func outputTemps(_ lake: String) -> [String] {
        (FileManager.default.enumerator(atPath: "\(lake)/processed")?.allObjects as? [String] ?? [])
            .filter { ($0 as NSString).lastPathComponent.hasPrefix(".%tmp-") }
    }

    /// Starts a real `sluice pull` and SIGKILLs it as soon as an output's temp file appears;
    /// whether it was caught so (false: the pull ended first).
    static func pullKilledWhileWriting(_ conf: String, lake: String) throws -> Bool {
        let p = try startPull(conf)
        var caught = false
        for _ in 0..<60_000 where p.isRunning {
            if !outputTemps(lake).isEmpty {
                kill(p.processIdentifier, SIGKILL)
                caught = true
                break
            }
            usleep(1000)
        }
        p.waitUntilExit()
        return caught
    }

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
            let p = try Self.startPull(conf)
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

        let rows = try TestManifest.query(dir, "SELECT path, version, sha256, size, lake_path FROM versions", separator: "\t")
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
        let interrupted = try TestManifest.query(dir, "SELECT count(*) FROM run WHERE status = 'running'")
        #expect(interrupted.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "0")
    }

    /// SIGKILLs a real `sluice pull` while it writes a transform's Parquet: the half-written
    /// output's temp file is removed by the next start, which transforms the version once
    /// (it is not ingested again), and pyarrow and DuckDB read every row.
    @Test(.enabled(if: ParquetTests.readersAvailable, "needs pyarrow and duckdb"))
    func sigkillMidTransformLeavesNoTempFileAndTransformsOnce() throws {
        let dir = TempDir("crash-transform")
        dir.config()
        dir.write("mappings/acme.toml", """
            [datasets.big]
            match = ["*.csv"]
            format = "csv"
            fields = [
              { name = "id", source = "id", type = "int64", required = true },
              { name = "amount", source = "amount", type = "decimal(12,2)" },
              { name = "text", source = "text", type = "string" },
            ]
            """)
        let rows = 600_000
        var csv = "id,amount,text\n"
        csv.reserveCapacity(rows * 40)
        for i in 1...rows { csv += "\(i),\(i % 9_999).\(i % 90 + 10),\"row \(i), of \(rows)\"\n" }
        dir.write("drop/big.csv", csv)
        let conf = dir.sub("agent.conf")
        let caught = try Self.pullKilledWhileWriting(conf, lake: dir.sub("lake"))
        try #require(caught, "the pull ended before its transform output could be caught being written")
        func temps() -> [String] { Self.outputTemps(dir.sub("lake")) }
        #expect(!temps().isEmpty, "the killed transform left its temp file")

        let (again, obj) = try SluiceBinary.json(["pull", "acme"], config: conf)
        #expect(again.status == 0, "\(again.stderr)")
        #expect(temps().isEmpty, "the next start removes the dead run's temp files: \(temps())")
        let o = try #require(obj as? [String: Any])
        // Killed before or after its version's commit (the transform overlaps it): either way
        // the file ends up stored once.
        #expect((o["new"] as? Int ?? 0) + (o["unchanged"] as? Int ?? 0) == 1, "\(o)")
        let t = try #require((o["transforms"] as? [[String: Any]])?.first, "\(o)")
        #expect(t["status"] as? String == "ok" && t["rows_written"] as? Int == rows, "\(t)")
        let output = try #require(t["output_path"] as? String)
        let read = try FormatTests.check(dir.sub("lake/") + output, """
            d = duck("SELECT count(*), count(DISTINCT id) FROM $P")
            print(json.dumps({"rows": t.num_rows, "duck": [int(x) for x in d]}))
            """)
        #expect(read["rows"] as? Int == rows && read["duck"] as? [Int] == [rows, rows], "\(read)")
        let versions = try TestManifest.query(dir, "SELECT count(*) FROM versions")
        #expect(versions.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "1")
        let (audit, _) = try SluiceBinary.json(["audit"], config: conf)
        #expect(audit.status == 0, "\(audit.stdout)")
    }
}
