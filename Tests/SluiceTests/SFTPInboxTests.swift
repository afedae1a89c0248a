import Foundation
import SluiceTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The recipe in README's "An SFTP inbox for clients": OpenSSH's `internal-sftp` chrooted to
/// one folder per client, a system user per client, and a Sluice drop folder on the client's
/// upload folder. Clients upload with OpenSSH's own `sftp`.
@Suite(.serialized, .enabled(if: geteuid() == 0, "needs root: a system user, a root-owned chroot and sshd running as root"))
struct SFTPInboxTests {
    /// A system user for one client, removed afterwards: no home, no shell, not locked.
    final class InboxUser {
        let name: String
        init() throws {
            name = "sluice-in-\(UInt32.random(in: 0..<UInt32.max) % 100_000)"
            let add = try Shell.run("/usr/sbin/useradd", ["--system", "--no-create-home", "--home-dir", "/", "--shell", "/usr/sbin/nologin", name])
            guard add.status == 0 else { throw TestFailure("useradd failed: \(add.stderr)") }
            // A locked account ('!' in shadow) cannot log in even with a key; '*' has no
            // password but is not locked.
            _ = try Shell.run("/usr/sbin/usermod", ["-p", "*", name])
        }
        deinit { _ = try? Shell.run("/usr/sbin/userdel", [name]) }
    }

    /// Runs OpenSSH's `sftp` as `user` with `commands` (a batch file), from `cwd`.
    /// Uploads run at 80 Mbit/s (`-l`), so that they take seconds and can be watched and cut.
    static func sftpArguments(_ server: SSHServer, user: String, batch: String) -> [String] {
        ["/usr/bin/sftp", "-b", batch, "-l", "80000", "-P", "\(server.port)", "-i", server.clientKey,
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
         "\(user)@127.0.0.1"]
    }

    static func sftp(_ server: SSHServer, user: String, _ commands: String, in dir: TempDir) throws -> Shell.Result {
        let batch = dir.write("batch-\(UUID().uuidString)", commands)
        let words = sftpArguments(server, user: user, batch: batch)
        return try Shell.run(words[0], Array(words.dropFirst()))
    }

    /// The versions `sluice history --json` lists, by path: (version, sha256).
    static func versions(_ dir: TempDir) throws -> [String: [(Int, String)]] {
        let (_, json) = try SluiceBinary.json(["history", "acme"], config: dir.sub("agent.conf"))
        var out: [String: [(Int, String)]] = [:]
        for r in json as? [[String: Any]] ?? [] {
            out[r["path"] as! String, default: []].append((r["version"] as! Int, r["sha256"] as! String))
        }
        return out
    }

    @Test func completeUploadsAreIngestedOnceAndACutOffUploadNever() throws {
        let user = try InboxUser()
        // The chroot and every folder above it must be root's and writable by no one else.
        let root = "/srv/sluice-inbox-\(getpid())-\(UInt32.random(in: 0..<1_000_000))"
        let chroot = "\(root)/acme", upload = "\(chroot)/upload"
        try FileManager.default.createDirectory(atPath: upload, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        defer { try? FileManager.default.removeItem(atPath: root) }
        _ = try Shell.run("/usr/bin/chown", ["\(user.name):\(user.name)", upload])

        // The client's public key where sshd, reading it as that user, can: a root-owned file
        // in a root-owned folder (the recipe's /etc/ssh/authorized_keys/%u).
        let keys = "\(root)/keys"
        try FileManager.default.createDirectory(atPath: keys, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        let server = try SSHServer(extraConfig: """
            Match User \(user.name)
                AuthorizedKeysFile \(keys)/%u
                ChrootDirectory \(chroot)
                ForceCommand internal-sftp -u 0027
                AllowTcpForwarding no
                X11Forwarding no
            """)
        try FileManager.default.copyItem(atPath: server.clientKey + ".pub", toPath: "\(keys)/\(user.name)")
        chmod("\(keys)/\(user.name)", 0o644)
        let dir = TempDir("inbox")
        let port = try SSHServer.freePort()
        dir.write("agent.conf", DaemonProcess.agentTable(port: port) + """
            [clients.acme.sources.inbox]
            type = "folder"
            path = "\(upload)"
            min_age = "2s"

            """)
        let daemon = try DaemonProcess(dir: dir, port: port)
        try daemon.waitReady()
        defer {
            daemon.signal(SIGTERM)
            _ = daemon.waitForExit(seconds: 30)
        }

        // A large file written in place (about 5 s at the upload's pace: longer than min_age,
        // so a watcher that took files before they close would take a part of it), and a file
        // put under .part and renamed into place.
        let big = dir.sub("big.csv")
        _ = try Shell.run("/bin/sh", ["-c", "head -c \(48 << 20) /dev/urandom > '\(big)'"])
        let small = dir.write("orders.csv", "id;amount\n1;42,17\n")
        let put = try Self.sftp(server, user: user.name, """
            put \(big) upload/big.csv
            put \(small) upload/orders.csv.part
            rename upload/orders.csv.part upload/orders.csv
            """, in: dir)
        let sshdLog = (try? String(contentsOfFile: server.dir.sub("sshd.log"), encoding: .utf8)) ?? ""
        #expect(put.status == 0, "the recipe's login or upload failed: \(put.stderr) \(sshdLog)")

        // A large upload under .part, cut off half-way (the client is killed).
        let huge = dir.write("huge.csv", Data(count: 256 << 20))
        let batch = dir.write("cut-batch", "put \(huge) upload/huge.csv.part\n")
        let pid = try spawnProcess(Self.sftpArguments(server, user: user.name, batch: batch), stdout: .devNull, stderr: .devNull)
        let part = "\(upload)/huge.csv.part"
        #expect(eventually(30) { ((try? FileManager.default.attributesOfItem(atPath: part)[.size] as? Int) ?? 0) > 32 << 20 })
        kill(pid, SIGKILL)
        var status: Int32 = 0
        _ = waitpid(pid, &status, 0)
        let cutSize = (try FileManager.default.attributesOfItem(atPath: part)[.size] as? Int) ?? 0
        #expect(cutSize < 256 << 20, "the upload was cut off (\(cutSize) bytes)")

        // Each complete file once, whole; nothing of the cut-off one.
        #expect(eventually(30) { (try? Self.versions(dir))?.count == 2 }, "\(daemon.log)")
        usleep(3_000_000)  // past min_age and a scan: still nothing more
        let versions = try Self.versions(dir)
        #expect(versions.keys.sorted() == ["big.csv", "orders.csv"], "\(versions.keys)")
        #expect(versions["big.csv"]?.map(\.1) == [try sha256(ofFile: big)])
        #expect(versions["orders.csv"]?.map(\.1) == [try sha256(ofFile: small)])
        // The files are the client's: the agent only reads them (after_ingest = keep).
        #expect(FileManager.default.fileExists(atPath: "\(upload)/big.csv") && FileManager.default.fileExists(atPath: part))
    }
}
