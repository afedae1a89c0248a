import Foundation
@testable import SluiceAgent
import SluiceTestSupport
import Testing
import SluiceSupport
import SluiceIngest
import SluiceConfig
import SluiceSources
import SluiceTransform
import SluiceFormats

/// The `sluice run` keys and the poll schedule's arithmetic.
@Suite struct ServiceConfigTests {
    static func parse(_ agent: String, source: String = "") throws -> AgentConfig {
        try AgentConfig.parse(text: """
            [agent]
            state_dir = "s"
            lake_dir = "l"
            \(agent)
            [clients.acme.sources.drop]
            type = "folder"
            path = "d"
            \(source)
            """, file: "/etc/sluice/agent.conf")
    }

    @Test func defaultsAndValues() throws {
        let d = try Self.parse("")
        #expect(d.maxTransfers == 4 && d.httpListen == "127.0.0.1:9464" && d.logLevel == "info")
        #expect(d.shutdownTimeoutNanoseconds == 30_000_000_000 && d.transformWorkers == usableCores)
        // The cores this process may run on: what `nproc` (which reads the CPU affinity, as
        // `taskset` or a cgroup's cpuset sets it) counts.
        let nproc = Process()
        nproc.executableURL = URL(fileURLWithPath: "/usr/bin/nproc")
        let out = Pipe()
        nproc.standardOutput = out
        try nproc.run()
        nproc.waitUntilExit()
        #expect(Int(String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) == usableCores)
        guard let f = d.clients[0].sources[0].settings as? FolderSourceConfig else { Issue.record("not a folder"); return }
        #expect(f.rescanIntervalNanoseconds == 300_000_000_000)

        let c = try Self.parse("""
            max_transfers = 9
            transform_workers = 3
            shutdown_timeout = "5s"
            http_listen = ""
            log_level = "debug"
            """, source: "rescan_interval = \"1m\"")
        #expect(c.maxTransfers == 9 && c.transformWorkers == 3 && c.shutdownTimeoutNanoseconds == 5_000_000_000)
        #expect(c.httpListen == "" && c.logLevel == "debug")
        guard let g = c.clients[0].sources[0].settings as? FolderSourceConfig else { return }
        #expect(g.rescanIntervalNanoseconds == 60_000_000_000)
    }

    @Test(arguments: [
        ("http_listen = \"9464\"", "", "agent.http_listen"),
        ("http_listen = \"localhost:0\"", "", "agent.http_listen"),
        ("log_level = \"loud\"", "", "agent.log_level"),
        ("max_transfers = 0", "", "agent.max_transfers"),
        ("shutdown_timeout = \"0s\"", "", "agent.shutdown_timeout"),
        ("", "rescan_interval = \"soon\"", "clients.acme.sources.drop.rescan_interval"),
    ])
    func badValuesNameTheKey(agent: String, source: String, key: String) {
        #expect(throws: ConfigError.self) { try Self.parse(agent, source: source) }
        do {
            _ = try Self.parse(agent, source: source)
        } catch {
            #expect("\(error)".contains(key), "\(error)")
        }
    }

    /// After a success the next poll is one interval away; each failure doubles it, up to 8 ×;
    /// all within ±10 % jitter.
    @Test func pollDelaysBackOffUpToEightTimesTheInterval() {
        let interval: Int64 = 60_000_000_000
        for (failures, factor) in [(0, 1), (1, 2), (2, 4), (3, 8), (4, 8), (30, 8)] as [(Int, Int64)] {
            for _ in 0..<50 {
                let d = SourcePoller.delay(interval: interval, failures: failures)
                let base = interval * factor
                #expect(d >= base - base / 10 && d <= base + base / 10, "failures \(failures): \(d)")
            }
        }
    }
}
