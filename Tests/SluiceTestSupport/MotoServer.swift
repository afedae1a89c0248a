import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A real S3 API server on loopback: moto's server mode (`pip install 'moto[server]'`),
/// started by the test on a free port and used only over HTTP. Objects are put and checked
/// with boto3 through `Tests/support/s3.py`, as a client company would.
package final class MotoServer: @unchecked Sendable {
    package static var available: Bool {
        (try? Shell.run("/usr/bin/env", ["python3", "-c", "import moto.server, boto3, flask"]))?.status == 0
    }

    package static let helper = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("support/s3.py").path

    package let dir: TempDir
    package private(set) var port: Int
    package var endpoint: String { "http://127.0.0.1:\(port)" }
    /// Every request the server handled, one line each (werkzeug's log).
    package var log: String { (try? String(contentsOfFile: dir.sub("moto.log"), encoding: .utf8)) ?? "" }
    private var pid: pid_t = 0

    package init() throws {
        dir = TempDir("moto")
        port = 0
        // A free port can be taken by another test between the probe and moto's bind: try again.
        for attempt in 1... {
            port = try SSHServer.freePort()
            do {
                try start()
                return
            } catch let error as TestFailure where attempt < 5 && "\(error)".contains("Address already in use") {
                continue
            }
        }
    }

    deinit { kill() }

    private func start() throws {
        pid = try spawnListener(["/usr/bin/env", "python3", "-m", "moto.server", "-H", "127.0.0.1", "-p", "\(port)"],
                                log: dir.sub("moto.log"), port: port, name: "moto", seconds: 10)
    }

    /// Kills the server at once (SIGKILL), as a crash or a pulled plug would. Its objects,
    /// held in memory, are gone with it.
    package func kill() {
        guard pid > 0 else { return }
        Glibc.kill(pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        pid = 0
    }

    /// Starts a fresh, empty server on the same port.
    package func restart() throws {
        kill()
        try start()
    }

    /// Runs operations through boto3 (see `Tests/support/s3.py`); one result per operation.
    @discardableResult
    package func ops(_ operations: [[String: Any]]) throws -> [Any] {
        let input = dir.write("ops-\(UUID().uuidString).json", try JSONSerialization.data(withJSONObject: operations))
        let r = try Shell.run("/bin/sh", ["-c", "python3 '\(Self.helper)' '\(endpoint)' < '\(input)'"])
        guard r.status == 0 else { throw TestFailure("s3.py failed (\(r.status)): \(r.stderr)") }
        return try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [Any] ?? []
    }

    package func bucket(_ name: String) throws { try ops([["op": "bucket", "name": name]]) }

    /// Puts small text objects; returns nothing.
    package func put(_ bucket: String, _ objects: [String: String]) throws {
        try ops(objects.sorted { $0.key < $1.key }.map { ["op": "put", "bucket": bucket, "key": $0.key, "text": $0.value] })
    }

    package func keys(_ bucket: String) throws -> [String] {
        try ops([["op": "keys", "bucket": bucket]]).first as? [String] ?? []
    }

    /// How many GETs of `key` in `bucket` the server has answered.
    package func gets(_ bucket: String, _ key: String) -> Int {
        log.split(separator: "\n").filter { $0.contains("\"GET /\(bucket)/\(key) ") }.count
    }

    /// The `[clients.acme.sources.bucket]` table for this server (path style), with `extra`.
    package func sourceTable(bucket: String, prefix: String = "", credentials: String, extra: String = "") -> String {
        """
        [clients.acme.sources.bucket]
        type = "s3"
        endpoint = "\(endpoint)"
        region = "us-east-1"
        bucket = "\(bucket)"
        prefix = "\(prefix)"
        path_style = true
        credentials_file = "\(credentials)"
        \(extra)
        """
    }
}
