import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A real OpenSSH `sshd` on loopback, started by the test itself: a free port, generated host
/// and client keys in a temp folder, `UsePAM no`, `StrictModes no`, `Subsystem sftp
/// internal-sftp`. Works as root (CI) and as an ordinary user (who logs in as themself).
///
/// Password and keyboard-interactive logins need PAM (OpenSSH checks passwords only through
/// PAM or /etc/shadow). For those, and only as root, the server runs under a per-test PAM
/// service name (sshd names its PAM service after the program, so it runs through a symlink)
/// whose stack checks `SSHServer.password` with pam_exec; nothing else on the machine changes.
package final class SSHServer: @unchecked Sendable {
    package enum Login: Sendable { case publicKey, password, keyboardInteractive }

    package static let password = "s3cret pass \u{e9}"
    package static let sshd = "/usr/sbin/sshd"
    package static var available: Bool { FileManager.default.isExecutableFile(atPath: sshd) }
    package static var user: String { String(cString: getpwuid(geteuid())!.pointee.pw_name) }

    package let dir: TempDir
    package private(set) var port: Int
    package let login: Login
    /// The folder the tests serve files from.
    package let served: String
    package let clientKey: String
    package let hostKey: String
    /// The listener's pid. Spawned with posix_spawn and reaped here: Foundation's Process
    /// reaper can block in wait4() on a long-lived child and stall every other Process.
    private var pid: pid_t = 0
    private var pamService: String?
    private var extraConfig = ""

    /// Starts a server; `hostKey` reuses another server's key folder entry (same identity).
    /// `hostKeyType` and `clientKeyType` are ssh-keygen's `-t` (ed25519, ecdsa, rsa); the client
    /// key is encrypted with `clientPassphrase` when one is given.
    package init(login: Login = .publicKey, port: Int? = nil, hostKeyFrom other: SSHServer? = nil, extraConfig: String = "",
         hostKeyType: String = "ed25519", clientKeyType: String = "ed25519", clientPassphrase: String = "") throws {
        dir = TempDir("sshd")
        self.login = login
        self.port = try port ?? Self.freePort()
        served = dir.sub("served")
        try FileManager.default.createDirectory(atPath: served, withIntermediateDirectories: true)
        clientKey = dir.sub("client_\(clientKeyType)")
        hostKey = dir.sub("host_\(other.map { URL(fileURLWithPath: $0.hostKey).lastPathComponent.dropFirst(5) }.map(String.init) ?? hostKeyType)")
        if let other {
            try FileManager.default.copyItem(atPath: other.hostKey, toPath: hostKey)
            try FileManager.default.copyItem(atPath: other.hostKey + ".pub", toPath: hostKey + ".pub")
        } else {
            try Self.keygen(hostKey, type: hostKeyType)
        }
        try Self.keygen(clientKey, type: clientKeyType, passphrase: clientPassphrase)
        try FileManager.default.copyItem(atPath: clientKey + ".pub", toPath: dir.sub("authorized_keys"))
        self.extraConfig = extraConfig
        // A free port can be taken by another test between the probe and sshd's bind: try
        // another one (only when the caller did not ask for this port).
        for attempt in 1... {
            do {
                try start(extraConfig: extraConfig)
                return
            } catch let error as TestFailure where port == nil && attempt < 5 && "\(error)".contains("Address already in use") {
                self.port = try Self.freePort()
            }
        }
    }

    /// Starts the same server again (same port, keys and files) after `stop()`.
    package func restart() throws {
        stop()
        try start(extraConfig: extraConfig)
    }

    deinit { stop() }

    package static func keygen(_ path: String, type: String = "ed25519", passphrase: String = "") throws {
        let r = try Shell.run("/usr/bin/ssh-keygen", ["-q", "-t", type, "-N", passphrase, "-C", "sluice-test", "-f", path])
        guard r.status == 0 else { throw TestFailure("ssh-keygen failed: \(r.stderr)") }
    }

    package static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bind(fd, sa, len) == 0 && getsockname(fd, sa, &len) == 0
            }
        }
        guard ok else { throw TestFailure("no free port: \(String(cString: strerror(errno)))") }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    private func start(extraConfig: String) throws {
        var program = Self.sshd
        let usePAM = login != .publicKey
        if usePAM {
            guard geteuid() == 0 else { throw TestFailure("password logins need root (PAM)") }
            let service = "sluice-test-\(getpid())-\(port)"
            let checker = dir.write("check-password", "#!/bin/sh\nIFS= read -r pw\n[ \"$pw\" = \"$(cat '\(dir.sub("password"))')\" ]\n")
            chmod(checker, 0o755)
            dir.write("password", Self.password)
            try """
                auth required pam_exec.so expose_authtok quiet \(checker)
                auth optional pam_permit.so
                account required pam_permit.so
                session required pam_permit.so
                password required pam_deny.so

                """.write(toFile: "/etc/pam.d/\(service)", atomically: true, encoding: .utf8)
            pamService = service
            program = dir.sub(service)
            try FileManager.default.createSymbolicLink(atPath: program, withDestinationPath: Self.sshd)
        }
        if geteuid() == 0 {
            try? FileManager.default.createDirectory(atPath: "/run/sshd", withIntermediateDirectories: true)
        }
        let config = dir.write("sshd_config", """
            Port \(port)
            ListenAddress 127.0.0.1
            HostKey \(hostKey)
            PidFile \(dir.sub("sshd.pid"))
            AuthorizedKeysFile \(dir.sub("authorized_keys"))
            UsePAM \(usePAM ? "yes" : "no")
            StrictModes no
            PubkeyAuthentication yes
            PasswordAuthentication \(login == .password ? "yes" : "no")
            KbdInteractiveAuthentication \(login == .keyboardInteractive ? "yes" : "no")
            PermitRootLogin yes
            Subsystem sftp internal-sftp
            LogLevel ERROR
            \(extraConfig)

            """)
        pid = try spawnListener([program, "-D", "-e", "-f", config], log: dir.sub("sshd.log"), port: port, name: "sshd")
    }

    package static func canConnect(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = UInt16(port).bigEndian
        return withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

    package func stop() {
        if pid > 0 {
            killSessions()
            kill(pid, SIGTERM)
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            pid = 0
        }
        if let pamService {
            try? FileManager.default.removeItem(atPath: "/etc/pam.d/\(pamService)")
            self.pamService = nil
        }
    }

    /// Kills every per-connection process of the server (the listener stays), as if the
    /// network or the server dropped the sessions.
    package func killSessions() {
        let root = pid
        guard root > 0 else { return }
        var parent: [Int32: Int32] = [:]
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry), let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 1, let ppid = Int32(fields[1]) { parent[pid] = ppid }
        }
        func isDescendant(_ pid: Int32) -> Bool {
            var p = parent[pid]
            while let q = p, q > 1 {
                if q == root { return true }
                p = parent[q]
            }
            return false
        }
        for pid in parent.keys where isDescendant(pid) { kill(pid, SIGKILL) }
    }

    /// Writes a file below the served folder with an mtime `age` seconds in the past.
    @discardableResult
    package func serve(_ relative: String, _ data: Data, age seconds: Int = 3600) -> String {
        let full = "\(served)/\(relative)"
        try! FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        precondition(FileManager.default.createFile(atPath: full, contents: data))
        age(full, seconds: seconds)
        return full
    }

    @discardableResult
    package func serve(_ relative: String, _ text: String, age seconds: Int = 3600) -> String {
        serve(relative, Data(text.utf8), age: seconds)
    }

    /// An `[clients.CLIENT.sources.SOURCE]` table for this server.
    package func sourceTable(client: String = "acme", source: String = "outbox", auth: String? = nil, minAge: String = "0s", extra: String = "") -> String {
        """
        [clients.\(client).sources.\(source)]
        type = "sftp"
        host = "127.0.0.1"
        port = \(port)
        user = "\(Self.user)"
        \(auth ?? "identity_file = \"\(clientKey)\"")
        remote_dir = "\(served)"
        min_age = "\(minAge)"
        \(extra)

        """
    }
}

package struct TestFailure: Error, CustomStringConvertible {
    package let description: String
    package init(_ d: String) { description = d }
}
