import Foundation
import SluiceTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A client of the upload API: curl, as clients use it, against the real `sluice run`.
struct UploadClient {
    let base: String
    var token: String?
    var caFile: String?

    struct Reply {
        var status: Int
        var body: String
        var headers: String
        var json: [String: Any] { ((try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any]) ?? [:] }
    }

    func request(_ method: String, _ path: String, file: String? = nil, headers: [String] = [], extra: [String] = []) throws -> Reply {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-curl-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var args = ["-sS", "--path-as-is", "-X", method, "-o", "\(dir)/body", "-D", "\(dir)/headers", "-w", "%{http_code}"]
        if let token { args += ["-H", "Authorization: Bearer \(token)"] }
        if let caFile { args += ["--cacert", caFile] }
        for h in headers { args += ["-H", h] }
        if let file { args += ["-T", file] }
        args += extra + ["\(base)\(path)"]
        let r = try Shell.run("/usr/bin/curl", args)
        let body = (try? String(contentsOfFile: "\(dir)/body", encoding: .utf8)) ?? ""
        let head = (try? String(contentsOfFile: "\(dir)/headers", encoding: .utf8)) ?? ""
        return Reply(status: Int(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0, body: body, headers: head)
    }

    func put(_ path: String, file: String, headers: [String] = []) throws -> Reply { try request("PUT", path, file: file, headers: headers) }
    func get(_ path: String) throws -> Reply { try request("GET", path) }
}

/// One raw HTTP/1.1 request on a socket: for bodies cut short and uploads held open.
final class RawUpload {
    let fd: Int32

    init(port: Int, path: String, token: String, contentLength: Int64) throws {
        guard let fd = connectLoopback(port: port, receiveTimeout: 30) else { throw TestFailure("cannot connect to 127.0.0.1:\(port)") }
        self.fd = fd
        send(Array("PUT /api/v1/files/\(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(token)\r\nContent-Length: \(contentLength)\r\n\r\n".utf8))
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            sent += n
        }
    }

    func sendZeros(_ count: Int) {
        let chunk = [UInt8](repeating: 0x41, count: 65536)
        var left = count
        while left > 0 {
            let n = min(left, chunk.count)
            send(Array(chunk[0..<n]))
            left -= n
        }
    }

    /// The response's status code (nil when the connection ended without one).
    func status() -> Int? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        var text = ""
        while !text.contains("\r\n\r\n") {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            text += String(decoding: buffer[0..<n], as: UTF8.self)
        }
        // Skip interim responses (100 Continue).
        let finals = text.components(separatedBy: "\r\n").filter { $0.hasPrefix("HTTP/1.1 ") && !$0.hasPrefix("HTTP/1.1 1") }
        return finals.first.flatMap { Int($0.split(separator: " ")[1]) }
    }
}

/// The upload API against the real `sluice run`: uploads through the one pipeline, checksums,
/// scoping, refusals, cut connections, big bodies in bounded memory, TLS and shutdown.
@Suite(.serialized) struct UploadAPITests {
    struct Setup {
        let dir: TempDir
        let daemon: DaemonProcess
        let apiPort: Int
        var scheme = "http"

        func client(_ token: String?) -> UploadClient {
            UploadClient(base: "\(scheme)://127.0.0.1:\(apiPort)", token: token, caFile: scheme == "https" ? dir.sub("tls/cert.pem") : nil)
        }

        func sql(_ query: String) throws -> String {
            try TestManifest.query(dir, query).stdout
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }

        /// Files under the lake other than published versions and the running process's
        /// journal: staging leftovers.
        func lakeLeftovers() -> [String] { SluiceTestSupport.lakeLeftovers(dir) }
    }

    static func token(_ dir: TempDir, _ args: [String]) throws -> String {
        let r = try SluiceBinary.run(["token", "create"] + args, config: dir.sub("agent.conf"))
        guard r.status == 0 else { throw TestFailure("token create failed: \(r.stderr)") }
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Two clients with an upload source each (acme also has a second one), tokens made
    /// before the start, `sluice run` ready.
    static func start(api: String = "", agent: String = "", tls: Bool = false, tokens: [(String, [String])] = [],
                      mapping: String? = nil) throws -> (Setup, [String]) {
        let dir = TempDir("upload")
        let port = try SSHServer.freePort()
        let apiPort = try SSHServer.freePort()
        var apiTable = "[api]\nlisten = \"127.0.0.1:\(apiPort)\"\n\(api)\n"
        if tls {
            try FileManager.default.createDirectory(atPath: dir.sub("tls"), withIntermediateDirectories: true)
            let made = try Shell.run("/usr/bin/openssl", [
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                "-keyout", dir.sub("tls/key.pem"), "-out", dir.sub("tls/cert.pem"),
            ])
            guard made.status == 0 else { throw TestFailure("openssl req failed: \(made.stderr)") }
            apiTable += "tls_cert = \"tls/cert.pem\"\ntls_key = \"tls/key.pem\"\n"
        }
        dir.write("agent.conf", DaemonProcess.agentTable(port: port, extra: agent) + apiTable + """

            [clients.acme.sources.portal]
            type = "http"
            include = ["**/*.csv", "**/*.bin", "**/*.txt"]

            [clients.acme.sources.drop]
            type = "folder"
            path = "drop-acme"

            [clients.beta.sources.web]
            type = "http"

            """)
        try FileManager.default.createDirectory(atPath: dir.sub("drop-acme"), withIntermediateDirectories: true)
        if let mapping { dir.write("mappings/acme.toml", mapping) }
        let made = try tokens.map { try token(dir, [$0.0] + $0.1) }
        let d = try DaemonProcess(dir: dir, port: port)
        try d.waitReady()
        var setup = Setup(dir: dir, daemon: d, apiPort: apiPort)
        if tls { setup.scheme = "https" }
        return (setup, made)
    }

    static func sha256(_ path: String) -> String {
        String(((try? Shell.run("/usr/bin/sha256sum", [path]))?.stdout ?? "").prefix(64))
    }

    /// A stored upload answers 201 with the exact fields; the same content again 200 and no
    /// new version; new content a new version. Checksum headers are verified. Listing and
    /// download show a client its own files only, and the transform runs on uploads.
    @Test func uploadsBecomeVersionsAndClientsSeeOnlyTheirOwn() throws {
        let (s, tokens) = try Self.start(tokens: [("acme", []), ("beta", []), ("acme", ["--source", "portal"])], mapping: """
            [datasets.orders]
            match = ["**/*.csv"]
            format = "csv"
            fields = [ { name = "id", source = "id", type = "int64", required = true } ]
            """)
        let (acme, beta, scoped) = (s.client(tokens[0]), s.client(tokens[1]), s.client(tokens[2]))
        let v1 = s.dir.write("files/orders.csv", "id\n1\n2\n")

        let first = try acme.put("/api/v1/files/in/orders.csv", file: v1)
        #expect(first.status == 201, "\(first.body)")
        let j = first.json
        #expect(Set(j.keys) == ["client", "source", "path", "version", "sha256", "size", "lake_path"], "\(j)")
        #expect(j["client"] as? String == "acme" && j["source"] as? String == "portal" && j["path"] as? String == "in/orders.csv")
        #expect(j["version"] as? Int == 1 && j["size"] as? Int == 7 && j["sha256"] as? String == Self.sha256(v1))
        let lakePath = try #require(j["lake_path"] as? String)
        #expect(FileManager.default.contents(atPath: s.dir.sub("lake/\(lakePath)")) == FileManager.default.contents(atPath: v1))

        let again = try acme.put("/api/v1/files/in/orders.csv", file: v1)
        #expect(again.status == 200 && again.json["version"] as? Int == 1, "same content: no new version")
        let v2 = s.dir.write("files/orders2.csv", "id\n1\n2\n3\n")
        let second = try scoped.put("/api/v1/files/in/orders.csv", file: v2)
        #expect(second.status == 201 && second.json["version"] as? Int == 2)
        #expect(versionCount(s.dir, client: "acme") == 2)

        // Declared checksums: matching passes, mismatching is refused and nothing is kept.
        let other = s.dir.write("files/other.txt", "hello\n")
        let sha = Self.sha256(other)
        let digest = Data(stride(from: 0, to: 64, by: 2).map { UInt8(sha.dropFirst($0).prefix(2), radix: 16)! }).base64EncodedString()
        #expect(try acme.put("/api/v1/files/a.txt", file: other, headers: ["X-Content-SHA256: \(sha.uppercased())"]).status == 201)
        #expect(try acme.put("/api/v1/files/b.txt", file: other, headers: ["Content-Digest: sha-256=:\(digest):"]).status == 201)
        let zeros = String(repeating: "0", count: 64)
        let bad = try acme.put("/api/v1/files/c.txt", file: other, headers: ["X-Content-SHA256: \(zeros)"])
        #expect(bad.status == 400 && bad.body.contains("checksum mismatch"), "\(bad.body)")
        let badDigest = try acme.put("/api/v1/files/d.txt", file: other, headers: ["Content-Digest: sha-256=:\(Data(count: 32).base64EncodedString()):"])
        #expect(badDigest.status == 400)
        #expect(try s.sql("SELECT count(*) FROM versions WHERE path IN ('c.txt', 'd.txt')") == "0")
        #expect(s.lakeLeftovers().isEmpty, "\(s.lakeLeftovers())")

        // Each client sees its own files only.
        let theirs = s.dir.write("files/beta.txt", "beta\n")
        #expect(try beta.put("/api/v1/files/in/secret.txt", file: theirs).status == 201)
        let listed = try acme.get("/api/v1/files?prefix=in/")
        #expect(listed.status == 200)
        let files = try #require(listed.json["files"] as? [[String: Any]])
        #expect(files.map { $0["path"] as? String } == ["in/orders.csv"], "\(listed.body)")
        #expect((files[0]["versions"] as? [[String: Any]])?.count == 2)
        let betaList = try beta.get("/api/v1/files").body
        #expect(betaList.contains("secret.txt") && !betaList.contains("orders"))
        #expect(try beta.get("/api/v1/files/in/orders.csv").status == 404)
        #expect(try beta.get("/api/v1/files?client=acme").status == 403)
        #expect(try beta.put("/api/v1/files/x.txt?client=acme", file: theirs).status == 403)
        #expect(try scoped.put("/api/v1/files/x.txt?source=drop", file: theirs).status == 403, "a token of another source")

        // Download by version, with its checksum headers.
        let down = try acme.get("/api/v1/files/in/orders.csv?version=1")
        #expect(down.status == 200 && down.body == "id\n1\n2\n")
        #expect(down.headers.lowercased().contains("x-content-sha256: \(Self.sha256(v1))"))
        #expect(try acme.get("/api/v1/files/in/orders.csv").body == "id\n1\n2\n3\n", "latest by default")
        #expect(try acme.get("/api/v1/files/in/orders.csv?version=9").status == 404)

        // Every upload is recorded: token, address, size, sha256, status.
        let rows = try s.sql("SELECT token_id, remote_addr, size, status, http_status FROM upload WHERE path = 'in/orders.csv' ORDER BY id")
        #expect(rows == "1|127.0.0.1|7|stored|201\n1|127.0.0.1|7|unchanged|200\n3|127.0.0.1|9|stored|201", "\(rows)")
        #expect(try s.sql("SELECT status, http_status FROM upload WHERE path = 'c.txt'") == "rejected|400")

        // The transform stage runs on uploaded versions.
        #expect(eventually(20) { (try? s.sql("SELECT count(*) FROM transform WHERE status = 'ok'")) == "2" }, "\(s.daemon.log)")
        let outputs = try s.sql("SELECT output_path FROM transform WHERE status = 'ok' ORDER BY id").split(separator: "\n")
        #expect(outputs.map { parquetRowCount(s.dir.sub("lake/\($0)")) } == [2, 3], "pyarrow and DuckDB read the uploads' Parquet")
        s.daemon.signal(SIGTERM)
        #expect(s.daemon.waitForExit(seconds: 30) == 0)
    }

    /// 401 without a valid token (and at once after a revoke), 422 for bad paths, 413 over
    /// the size limit (declared or streamed), 429 over the concurrency limit.
    @Test func refusalsHaveTheirStatusCodes() throws {
        let (s, tokens) = try Self.start(api: "max_upload_size = \"1MiB\"\nmax_concurrent_uploads = 1", tokens: [("acme", [])])
        let acme = s.client(tokens[0])
        let small = s.dir.write("files/s.csv", "id\n1\n")
        #expect(try s.client(nil).put("/api/v1/files/s.csv", file: small).status == 401)
        #expect(try s.client("slc_" + String(repeating: "A", count: 43)).put("/api/v1/files/s.csv", file: small).status == 401)
        #expect(try s.client("Basic abc").get("/api/v1/files").status == 401)
        let unauthorized = try s.client(nil).get("/api/v1/files")
        #expect(unauthorized.status == 401 && unauthorized.body == "{\"error\":\"unauthorized\"}\n", "no detail given")

        for bad in ["/api/v1/files/../etc/passwd", "/api/v1/files//abs.csv", "/api/v1/files/a/%00.csv", "/api/v1/files/a/./b.csv",
                    "/api/v1/files/notes.exe", "/api/v1/files/.hidden.csv"] {
            let r = try acme.put(bad, file: small)
            #expect(r.status == 422, "\(bad): \(r.status) \(r.body)")
        }

        let big = s.dir.write("files/big.bin", Data(count: 2 << 20))
        let declared = try acme.put("/api/v1/files/big.bin", file: big)
        #expect(declared.status == 413, "\(declared.body)")
        let streamed = try Shell.run("/bin/sh", ["-c", "head -c 3000000 /dev/zero | curl -sS -o /dev/null -w '%{http_code}' -T - -H 'Authorization: Bearer \(tokens[0])' http://127.0.0.1:\(s.apiPort)/api/v1/files/streamed.bin"])
        #expect(streamed.stdout == "413", "chunked, no Content-Length: \(streamed.stdout) \(streamed.stderr)")
        #expect(try s.sql("SELECT count(*) FROM versions WHERE path LIKE '%.bin'") == "0")

        #expect(try acme.get("/api/v1/files/s.csv?version=abc").status == 400)
        #expect(try acme.get("/api/v1/files/s.csv?version=0").status == 400)
        #expect(try acme.get("/api/v1/files/a/../s.csv").status == 422)
        #expect(try acme.put("/api/v1/files/s.csv", file: small, headers: ["X-Content-SHA256: xyz"]).status == 400, "a malformed checksum header")
        #expect(try acme.put("/api/v1/files/s.csv", file: small, headers: ["Content-Digest: sha-256=:bm90MzJieXRlcw==:"]).status == 400)

        // One upload held open takes the only slot.
        let held = try RawUpload(port: s.apiPort, path: "held.bin", token: tokens[0], contentLength: 1000)
        held.send(Array(repeating: 1, count: 10))
        #expect(eventually(5) { (try? acme.put("/api/v1/files/s.csv", file: small).status) == 429 })
        let busy = try acme.put("/api/v1/files/s.csv", file: small)
        #expect(busy.status == 429 && busy.headers.lowercased().contains("retry-after:"), "\(busy.headers)")
        held.send(Array(repeating: 1, count: 990))
        #expect(held.status() == 201)
        #expect([200, 201].contains(try acme.put("/api/v1/files/s.csv", file: small).status))

        // A revoked token is refused at once.
        let id = try s.sql("SELECT id FROM token")
        let revoked = try SluiceBinary.run(["token", "revoke", id], config: s.dir.sub("agent.conf"))
        #expect(revoked.status == 0)
        #expect(try acme.put("/api/v1/files/s2.csv", file: small).status == 401)
        #expect(try acme.get("/api/v1/files").status == 401)
        s.daemon.signal(SIGTERM)
        #expect(s.daemon.waitForExit(seconds: 30) == 0)
    }

    /// A sender that disconnects mid-body leaves no version, no staged file, and a record
    /// that says so; the next upload of the path is version 1.
    @Test func aDisconnectMidBodyLeavesNoTrace() throws {
        let (s, tokens) = try Self.start(tokens: [("acme", [])])
        do {
            let cut = try RawUpload(port: s.apiPort, path: "cut.bin", token: tokens[0], contentLength: 50 << 20)
            cut.sendZeros(5 << 20)
            #expect(eventually(10) { (try? s.sql("SELECT count(*) FROM run WHERE trigger = 'upload'")) == "1" })
        }  // closed here, 45 MiB short
        #expect(eventually(10) { (try? s.sql("SELECT status FROM upload WHERE path = 'cut.bin'")) == "aborted" }, "\(s.daemon.log)")
        #expect(versionCount(s.dir) == 0)
        #expect(s.lakeLeftovers().isEmpty, "\(s.lakeLeftovers())")
        let whole = s.dir.write("files/cut.bin", Data(repeating: 7, count: 1 << 20))
        let r = try s.client(tokens[0]).put("/api/v1/files/cut.bin", file: whole)
        #expect(r.status == 201 && r.json["version"] as? Int == 1)
        s.daemon.signal(SIGTERM)
        #expect(s.daemon.waitForExit(seconds: 30) == 0)
    }

    /// A multi-GB body streams through: the stored file has the sender's SHA-256 and the
    /// daemon's peak memory stays far below the body's size.
    @Test func aMultiGigabyteBodyStreamsInBoundedMemory() throws {
        let (s, tokens) = try Self.start(tokens: [("acme", [])])
        let megabytes = Int(ProcessInfo.processInfo.environment["SLUICE_BIG_UPLOAD_MB"] ?? "") ?? 2304
        // A pseudo-random stream (AES-CTR of zeros), generated twice: once for its digest,
        // once for the upload, never stored on this side.
        let generate = "openssl enc -aes-128-ctr -nosalt -pass pass:sluice -in /dev/zero 2>/dev/null | head -c \(megabytes)M"
        let expected = try Shell.run("/bin/sh", ["-c", "\(generate) | sha256sum"]).stdout.prefix(64)
        let upload = try Shell.run("/bin/sh", ["-c", "\(generate) | curl -sS -T - -H 'Authorization: Bearer \(tokens[0])' -H 'X-Content-SHA256: \(expected)' "
            + "http://127.0.0.1:\(s.apiPort)/api/v1/files/huge.bin"])
        let reply = (try? JSONSerialization.jsonObject(with: Data(upload.stdout.utf8))) as? [String: Any] ?? [:]
        #expect(reply["sha256"] as? String == String(expected), "\(upload.stdout) \(upload.stderr)")
        #expect(reply["size"] as? Int == megabytes << 20)
        let status = try String(contentsOfFile: "/proc/\(s.daemon.pid)/status", encoding: .utf8)
        let peakKB = status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") }.flatMap { Int($0.split(separator: " ")[1]) } ?? .max
        #expect(peakKB < 256 << 10, "peak RSS \(peakKB) kB for a \(megabytes) MiB body")
        if let lake = reply["lake_path"] as? String {
            #expect(Self.sha256(s.dir.sub("lake/\(lake)")) == String(expected))
        }
        s.daemon.signal(SIGTERM)
        #expect(s.daemon.waitForExit(seconds: 30) == 0)
    }

    /// HTTPS with a certificate made here; plain HTTP to the TLS port gets no upload in.
    @Test func tlsWithATestCertificate() throws {
        let (s, tokens) = try Self.start(tls: true, tokens: [("acme", [])])
        let file = s.dir.write("files/t.csv", "id\n1\n")
        let r = try s.client(tokens[0]).put("/api/v1/files/t.csv", file: file)
        #expect(r.status == 201, "\(r.body) \(s.daemon.log)")
        let plain = UploadClient(base: "http://127.0.0.1:\(s.apiPort)", token: tokens[0])
        #expect(try plain.put("/api/v1/files/u.csv", file: file).status != 201)
        let unverified = try Shell.run("/usr/bin/curl", ["-sS", "-o", "/dev/null", "-w", "%{http_code}", "https://127.0.0.1:\(s.apiPort)/api/v1/files"])
        #expect(unverified.status != 0, "curl refuses the self-signed certificate without --cacert")
        #expect(versionCount(s.dir) == 1)
        s.daemon.signal(SIGTERM)
        #expect(s.daemon.waitForExit(seconds: 30) == 0)
    }

    /// SIGTERM lets a running upload finish and commit; one still stalled at
    /// shutdown_timeout is given up and nothing of it is kept; the exit is 0 either way.
    @Test func shutdownLetsRunningUploadsFinishWithinTheTimeout() throws {
        let (s, tokens) = try Self.start(agent: "", tokens: [("acme", [])])
        let running = try RawUpload(port: s.apiPort, path: "running.bin", token: tokens[0], contentLength: 2 << 20)
        running.sendZeros(1 << 20)
        #expect(eventually(10) { (try? s.sql("SELECT count(*) FROM run WHERE trigger = 'upload'")) == "1" })
        s.daemon.signal(SIGTERM)
        usleep(500_000)
        running.sendZeros(1 << 20)
        #expect(running.status() == 201)
        #expect(s.daemon.waitForExit(seconds: 30) == 0)
        #expect(versionCount(s.dir) == 1)

        // Again, with a sender that stalls past a short shutdown_timeout.
        s.dir.write("agent.conf", (try String(contentsOfFile: s.dir.sub("agent.conf"), encoding: .utf8))
            .replacingOccurrences(of: "shutdown_timeout = \"20s\"", with: "shutdown_timeout = \"2s\""))
        let d = try DaemonProcess(dir: s.dir, port: s.daemon.port)
        try d.waitReady()
        let stalled = try RawUpload(port: s.apiPort, path: "stalled.bin", token: tokens[0], contentLength: 2 << 20)
        stalled.sendZeros(1 << 20)
        #expect(eventually(10) { (try? s.sql("SELECT count(*) FROM run WHERE trigger = 'upload'")) == "2" })
        d.signal(SIGTERM)
        #expect(d.waitForExit(seconds: 30) == 0, "\(d.log)")
        #expect(versionCount(s.dir) == 1, "nothing of the stalled upload is kept")
        #expect(try s.sql("SELECT status, http_status FROM upload WHERE path = 'stalled.bin'") == "aborted|503", "\(d.log)")
        #expect(s.lakeLeftovers().isEmpty)
        withExtendedLifetime(stalled) {}
    }
}
