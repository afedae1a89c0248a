import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A real `sluice run` process, spawned with posix_spawn (and reaped here), its stderr in
/// `<dir>/run.log`, its HTTP endpoints on a free loopback port.
package final class DaemonProcess: @unchecked Sendable {
    package let dir: TempDir
    package let port: Int
    package private(set) var pid: pid_t = 0
    package private(set) var exitStatus: Int32?

    /// Starts `sluice run` for `<dir>/agent.conf`, which must have `http_listen = "127.0.0.1:<port>"`
    /// from `DaemonProcess.agentTable(port:)`.
    package init(dir: TempDir, port: Int, environment extra: [String: String] = [:]) throws {
        self.dir = dir
        self.port = port
        var env = ProcessInfo.processInfo.environment
        env["JOURNAL_STREAM"] = nil
        env["NOTIFY_SOCKET"] = nil
        for (k, v) in extra { env[k] = v }
        pid = try spawnProcess([SluiceBinary.path, "run", "--config", dir.sub("agent.conf")],
                               stdout: .truncate(dir.sub("run.out")), stderr: .append(dir.sub("run.log")), environment: env)
    }

    deinit {
        if pid > 0 && exitStatus == nil {
            kill(pid, SIGKILL)
            _ = waitForExit(seconds: 10)
        }
    }

    package static func agentTable(port: Int, extra: String = "") -> String {
        """
        [agent]
        state_dir = "state"
        lake_dir = "lake"
        http_listen = "127.0.0.1:\(port)"
        shutdown_timeout = "20s"
        \(extra)

        """
    }

    package var log: String { (try? String(contentsOfFile: dir.sub("run.log"), encoding: .utf8)) ?? "" }

    package func signal(_ sig: Int32) { kill(pid, sig) }

    /// The exit code (or 128 + signal), nil if still running after `seconds`.
    package func waitForExit(seconds: Double) -> Int32? {
        if let exitStatus { return exitStatus }
        let deadline = Date(timeIntervalSinceNow: seconds)
        while Date() < deadline {
            var status: Int32 = 0
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid {
                let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
                exitStatus = code
                return code
            }
            usleep(20_000)
        }
        return nil
    }

    /// GET a path on the daemon's HTTP port: status code and body (nil if no answer).
    package func get(_ path: String) -> (status: Int, body: String)? {
        guard let fd = connectLoopback(port: port, receiveTimeout: 5) else { return nil }
        defer { close(fd) }
        let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
        guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else { return nil }
        var response: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            response += buffer[0..<n]
        }
        let text = String(decoding: response, as: UTF8.self)
        guard let line = text.split(separator: "\r\n").first, line.split(separator: " ").count >= 2,
              let code = Int(line.split(separator: " ")[1]) else { return nil }
        var body = text.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n")
        if text.lowercased().contains("transfer-encoding: chunked") { body = Self.dechunk(body) }
        return (code, body)
    }

    private static func dechunk(_ s: String) -> String {
        var out = ""
        var rest = Substring(s)
        while let nl = rest.range(of: "\r\n") {
            guard let size = Int(rest[..<nl.lowerBound], radix: 16), size > 0 else { break }
            let start = nl.upperBound
            let bytes = Array(rest[start...].utf8)
            guard bytes.count >= size else { break }
            out += String(decoding: bytes[0..<size], as: UTF8.self)
            rest = Substring(String(decoding: bytes[size...], as: UTF8.self)).dropFirst(2)
        }
        return out
    }

    /// Waits for `/readyz` to answer 200.
    package func waitReady(seconds: Double = 30) throws {
        let deadline = Date(timeIntervalSinceNow: seconds)
        while Date() < deadline {
            if get("/readyz")?.status == 200 { return }
            if let code = waitForExit(seconds: 0.05) { throw TestFailure("sluice run exited with \(code): \(log)") }
        }
        throw TestFailure("sluice run was not ready within \(seconds) s: \(log)")
    }

    /// The daemon's `/status` as JSON.
    package func status() -> [String: Any] {
        guard let r = get("/status"), r.status == 200 else { return [:] }
        return (try? JSONSerialization.jsonObject(with: Data(r.body.utf8))) as? [String: Any] ?? [:]
    }
}

/// A TCP connection to 127.0.0.1:`port` whose reads give up after `receiveTimeout` seconds.
package func connectLoopback(port: Int, receiveTimeout: Int) -> Int32? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    var tv = timeval(tv_sec: receiveTimeout, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = UInt16(port).bigEndian
    let connected = withUnsafePointer(to: &addr) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
    guard connected else {
        close(fd)
        return nil
    }
    return fd
}

/// Polls `condition` every 20 ms until it holds or `seconds` pass.
package func eventually(_ seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date(timeIntervalSinceNow: seconds)
    while Date() < deadline {
        if try condition() { return true }
        usleep(20_000)
    }
    return try condition()
}

/// How many versions the manifest holds (0 before it exists).
package func versionCount(_ dir: TempDir, client: String? = nil) -> Int {
    let sql = "SELECT count(*) FROM versions" + (client.map { " WHERE client = '\($0)'" } ?? "")
    guard TestManifest.onPostgres || FileManager.default.fileExists(atPath: dir.sub("state/manifest.sqlite")),
          let r = try? TestManifest.query(dir, sql) else { return 0 }
    return Int(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
}

/// A datagram socket standing in for systemd's `$NOTIFY_SOCKET`.
package final class NotifySocket: @unchecked Sendable {
    package let path: String
    private let fd: Int32

    package init(dir: TempDir) throws {
        path = dir.sub("notify.sock")
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { throw TestFailure("socket path too long: \(path)") }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in bytes.enumerated() { raw[i] = b } }
        let ok = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0 }
        }
        guard ok else { throw TestFailure("cannot bind \(path): \(String(cString: strerror(errno)))") }
        var tv = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    /// Every datagram received so far (waits up to 100 ms for more).
    package func drain() -> [String] {
        var out: [String] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            out.append(String(decoding: buffer[0..<n], as: UTF8.self))
        }
        return out
    }
}
