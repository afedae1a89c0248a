import Foundation
import SluiceTestSupport
import Testing

/// The shipped units pass `systemd-analyze verify`. The binary's install path exists only on
/// a real host, so the checked copies point at the binary under test.
@Suite(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze"), "needs systemd-analyze"))
struct SystemdTests {
    static let unitsDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("systemd").path

    @Test(arguments: [("sluice.service", "sluice.service"), ("sluice-pull@.service", "sluice-pull@acme.service"),
                      ("sluice-pull@.timer", "sluice-pull@acme.timer")])
    func unitPassesSystemdAnalyzeVerify(file: String, unit: String) throws {
        let dir = TempDir("units")
        for name in ["sluice.service", "sluice-pull@.service", "sluice-pull@.timer"] {
            let text = try String(contentsOfFile: "\(Self.unitsDir)/\(name)", encoding: .utf8)
            dir.write(name, text.replacingOccurrences(of: "/usr/local/bin/sluice", with: SluiceBinary.path))
        }
        if unit != file { try FileManager.default.createSymbolicLink(atPath: dir.sub(unit), withDestinationPath: dir.sub(file)) }
        let r = try Shell.run("/usr/bin/env", ["sh", "-c", "cd '\(dir.path)' && systemd-analyze verify '\(unit)'"])
        #expect(r.status == 0 && r.stderr.isEmpty && r.stdout.isEmpty, "\(unit): \(r.stdout)\(r.stderr)")
    }

    @Test func serviceUnitHasTheRequiredSettings() throws {
        let text = try String(contentsOfFile: "\(Self.unitsDir)/sluice.service", encoding: .utf8)
        for line in ["Type=notify", "User=sluice", "ExecReload=/bin/kill -HUP $MAINPID", "ProtectSystem=strict", "NoNewPrivileges=yes",
                     "PrivateTmp=yes", "ProtectHome=yes", "ProtectKernelTunables=yes", "ProtectKernelModules=yes", "ProtectKernelLogs=yes",
                     "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "SystemCallFilter=@system-service", "Restart=on-failure"] {
            #expect(text.contains(line + "\n"), "sluice.service lacks \(line)")
        }
        #expect(text.contains("WatchdogSec=") && text.contains("ReadWritePaths="))
        for name in ["sluice.sysusers", "sluice.tmpfiles"] {
            #expect(FileManager.default.fileExists(atPath: "\(Self.unitsDir)/\(name)"))
        }
    }
}
