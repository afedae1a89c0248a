import Foundation
@testable import SluiceAgent
import SluiceLake
@testable import SluiceSFTP
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

/// libssh2 1.11 (patched decrypt path) against a real OpenSSH server: every cipher and MAC
/// Sluice offers gives byte-identical downloads, every host key type and identity type works,
/// and a source can narrow the algorithms for a particular server.
@Suite(.enabled(if: SSHServer.available, "needs OpenSSH's sshd (apt-get install openssh-server)"))
struct SSHAlgorithmTests {
    /// A file whose bytes differ everywhere, so a block deciphered wrongly shows in its hash.
    static func randomFile(_ server: SSHServer, _ name: String, megabytes: Int) throws -> String {
        var bytes = [UInt8](repeating: 0, count: megabytes << 20)
        var g = SystemRandomNumberGenerator()
        bytes.withUnsafeMutableBytes { raw in
            let words = raw.bindMemory(to: UInt64.self)
            for i in words.indices { words[i] = g.next() }
        }
        return server.serve(name, Data(bytes))
    }

    /// The cipher and MAC pairs: the server allows only that pair, the source only that cipher.
    static let pairs: [(cipher: String, mac: String)] = [
        ("aes128-gcm@openssh.com", "hmac-sha2-256"), ("aes256-gcm@openssh.com", "hmac-sha2-256"),
        ("chacha20-poly1305@openssh.com", "hmac-sha2-256"), ("aes128-ctr", "hmac-sha2-256"),
        ("aes128-ctr", "hmac-sha2-256-etm@openssh.com"), ("aes256-ctr", "hmac-sha1"), ("aes192-ctr", "hmac-sha2-512-etm@openssh.com"),
        ("aes128-cbc", "hmac-sha1-etm@openssh.com"), ("aes256-cbc", "hmac-sha2-512"),
    ]

    @Test(arguments: pairs.indices)
    func everyCipherAndMACGivesTheSameBytes(pair: Int) throws {
        let (cipher, mac) = Self.pairs[pair]
        let server = try SSHServer(extraConfig: "Ciphers \(cipher)\nMACs \(mac)")
        let big = try Self.randomFile(server, "big.bin", megabytes: 24)
        let odd = server.serve("odd.bin", Data((0..<100_003).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }))
        let dir = SFTPTests.setUp(server, extra: "ciphers = [\"\(cipher)\"]")
        #expect(try SFTPTests.trust(dir).status == 0)
        let (r, report) = try SFTPTests.pull(dir)
        #expect(r.status == 0, "\(cipher) + \(mac): \(r.stderr) \(report)")
        let files = SFTPTests.files(report)
        #expect(files["big.bin"]?["sha256"] as? String == (try sha256(ofFile: big)), "\(cipher) + \(mac)")
        #expect(files["odd.bin"]?["sha256"] as? String == (try sha256(ofFile: odd)), "\(cipher) + \(mac)")
    }

    /// A server whose only host key is RSA (OpenSSH 8.8+ signs with rsa-sha2-512/256 only),
    /// ECDSA or ed25519: trusted with `trust`, accepted by OpenSSH's own client from the
    /// known_hosts Sluice wrote, and pulled from.
    @Test(arguments: ["rsa", "ecdsa", "ed25519"])
    func everyHostKeyType(type: String) throws {
        let server = try SSHServer(hostKeyType: type)
        server.serve("a.csv", "a")
        let dir = SFTPTests.setUp(server)
        let trust = try SFTPTests.trust(dir)
        #expect(trust.status == 0, "\(type): \(trust.stdout)\(trust.stderr)")
        let expected = ["rsa": "ssh-rsa", "ecdsa": "ecdsa-sha2-nistp256", "ed25519": "ssh-ed25519"][type]!
        #expect(trust.stdout.contains("presents \(expected) \(try SFTPTests.fingerprint(server.hostKey + ".pub"))"), "\(trust.stdout)")
        let (r, report) = try SFTPTests.pull(dir)
        #expect(r.status == 0 && report["new"] as? Int == 1, "\(type): \(r.stderr) \(report)")
        let batch = dir.write("batch", "ls\n")
        let sftp = try Shell.run("/usr/bin/sftp", [
            "-b", batch, "-P", "\(server.port)", "-i", server.clientKey, "-o", "UserKnownHostsFile=\(dir.sub("state/known_hosts"))",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "GlobalKnownHostsFile=/dev/null",
            "\(SSHServer.user)@127.0.0.1:\(server.served)",
        ])
        #expect(sftp.status == 0, "OpenSSH refused the \(type) key Sluice wrote: \(sftp.stderr)")
    }

    /// A login with an RSA, ECDSA or ed25519 identity file, with and without a passphrase, on
    /// a server that refuses SHA-1 signatures (OpenSSH's default since 8.8).
    @Test(arguments: ["rsa", "ecdsa", "ed25519"], [false, true])
    func everyIdentityType(type: String, encrypted: Bool) throws {
        let passphrase = encrypted ? "correct horse \(type)" : ""
        let server = try SSHServer(extraConfig: "PubkeyAcceptedAlgorithms -ssh-rsa", clientKeyType: type, clientPassphrase: passphrase)
        server.serve("a.csv", "a")
        var extra = ""
        if encrypted {
            let dir0 = server.dir
            dir0.write("passphrase", passphrase + "\n")
            extra = "passphrase_file = \"\(dir0.sub("passphrase"))\""
        }
        let dir = SFTPTests.setUp(server, extra: extra)
        #expect(try SFTPTests.trust(dir).status == 0)
        let (r, report) = try SFTPTests.pull(dir)
        #expect(r.status == 0 && report["new"] as? Int == 1, "\(type) \(encrypted ? "with" : "without") passphrase: \(r.stderr) \(report)")
    }

    /// A refused login says which methods and which key type were tried.
    @Test func aRefusedLoginNamesTheKeyTypeTried() throws {
        let server = try SSHServer(clientKeyType: "rsa")
        let other = server.dir.sub("other_rsa")
        try SSHServer.keygen(other, type: "rsa")
        try FileManager.default.removeItem(atPath: other + ".pub")  // the type comes from the private key itself
        let dir = TempDir("sftp")
        dir.config(tables: server.sourceTable(auth: "identity_file = \"\(other)\""))
        #expect(try SFTPTests.trust(dir).status == 0)
        let (r, report) = try SFTPTests.pull(dir)
        #expect(r.status == 1)
        #expect(SFTPTests.sourceErrors(report).contains("tried publickey with \(other) (an ssh-rsa key)"), "\(SFTPTests.sourceErrors(report))")
    }

    /// A source restricted to one cipher uses it; one that names an algorithm libssh2 lacks is a
    /// config error naming the key.
    @Test func aSourceCanNarrowTheCiphersAndHostKeys() throws {
        let server = try SSHServer(extraConfig: "Ciphers aes256-gcm@openssh.com", hostKeyType: "rsa")
        server.serve("a.csv", "a")
        let dir = SFTPTests.setUp(server, extra: "ciphers = [\"aes256-gcm@openssh.com\"]\nhost_key_algorithms = [\"rsa-sha2-256\"]")
        #expect(try SFTPTests.trust(dir).status == 0)
        let (r, _) = try SluiceBinary.json(["pull", "acme", "--log-level", "debug"], config: dir.sub("agent.conf"))
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("cipher=aes256-gcm@openssh.com") && r.stderr.contains("host_key=rsa-sha2-256"), "\(r.stderr)")

        for (line, key) in [("ciphers = [\"rot13\"]", "ciphers"), ("host_key_algorithms = [\"ssh-dss\"]", "host_key_algorithms"), ("ciphers = []", "ciphers")] {
            let bad = SFTPTests.setUp(server, extra: line)
            let check = try SluiceBinary.run(["check-config"], config: bad.sub("agent.conf"))
            #expect(check.status == 2 && check.stderr.contains("clients.acme.sources.outbox.\(key)"), "\(line): \(check.stderr)")
        }
    }

    @Test func versionNamesLibssh2AndItsPatch() throws {
        let r = try Shell.run(SluiceBinary.path, ["version"])
        #expect(r.status == 0)
        #expect(r.stdout.contains("libssh2 1.11.") && r.stdout.contains("(patched: decrypt path;"), "\(r.stdout)")
        #expect(r.stdout.contains("cipher: aes128-gcm@openssh.com, aes256-gcm@openssh.com, chacha20-poly1305@openssh.com, aes128-ctr"))
        #expect(r.stdout.contains("host key: ssh-ed25519, ecdsa-sha2-nistp256, ecdsa-sha2-nistp384, ecdsa-sha2-nistp521, rsa-sha2-512, rsa-sha2-256"))
        #expect(r.stdout.contains("MAC: hmac-sha2-256-etm@openssh.com"))
        #expect(try Shell.run(SluiceBinary.path, ["--version"]).stdout == r.stdout)
    }

    @Test func aServersKeyExchangeListsAreReadFromItsFirstPacket() throws {
        // Identification line, then a KEXINIT packet: length, padding length, type 20, cookie, lists.
        func list(_ s: String) -> [UInt8] { let b = Array(s.utf8); return [0, 0, UInt8(b.count >> 8), UInt8(b.count & 0xFF)] + b }
        var payload: [UInt8] = [20] + [UInt8](repeating: 7, count: 16)
        for l in ["curve25519-sha256,kex-strict-s-v00@openssh.com", "rsa-sha2-512", "aes128-ctr", "3des-cbc", "hmac-sha1", "umac-64@openssh.com", "none", "none", "", ""] {
            payload += list(l)
        }
        payload += [0, 0, 0, 0, 0]
        let padding = 4
        let length = payload.count + 1 + padding
        let packet = [UInt8(length >> 24), UInt8((length >> 16) & 0xFF), UInt8((length >> 8) & 0xFF), UInt8(length & 0xFF), UInt8(padding)] + payload + [UInt8](repeating: 0, count: padding)
        let data = Array("a banner line\r\nSSH-2.0-OpenSSH_9.2p1\r\n".utf8) + packet
        let offer = try #require(ServerOffer.parse(data))
        #expect(offer[.keyExchange] == ["curve25519-sha256"])
        #expect(offer[.hostKey] == ["rsa-sha2-512"] && offer[.cipher] == ["3des-cbc"] && offer[.mac] == ["umac-64@openssh.com"])
        #expect(ServerOffer.parse(Array(data.dropLast(3))) == nil, "not all of it yet")
        let why = try #require(ServerOffer.mismatch(server: offer, ours: SSHAlgorithmChoice()))
        #expect(why.contains("cipher: the server offers 3des-cbc; Sluice offers aes128-gcm@openssh.com") && !why.contains("host key"), "\(why)")
    }

    @Test func keyTypesOfIdentityFiles() throws {
        let dir = TempDir("keys")
        for (type, name) in [("rsa", "ssh-rsa"), ("ecdsa", "ecdsa-sha2-nistp256"), ("ed25519", "ssh-ed25519")] {
            let path = dir.sub("id_\(type)")
            try SSHServer.keygen(path, type: type, passphrase: "secret")
            try FileManager.default.removeItem(atPath: path + ".pub")
            #expect(IdentityKey.typeName(ofFile: path) == name, "\(type), encrypted, without its .pub")
        }
        #expect(IdentityKey.typeName(ofFile: dir.sub("missing")) == nil)
    }
}

/// Large SFTP transfers cut off by dropped connections continue where they stopped.
@Suite(.enabled(if: SSHServer.available, "needs OpenSSH's sshd (apt-get install openssh-server)"))
struct ResumableTransferTests {
    /// A 1 GiB file (SLUICE_BIG_SFTP_MB) whose connections are all cut twice, at about 35 % and
    /// 75 % of it: the first two passes fail and keep what they received, the third completes.
    /// What the server sent over all three stays under 1.5 × the file, and the version's
    /// SHA-256 is the file's.
    @Test func aTransferCutTwiceContinuesFromTheChunksReceived() throws {
        let megabytes = Int(ProcessInfo.processInfo.environment["SLUICE_BIG_SFTP_MB"] ?? "") ?? 1024
        let size = Int64(megabytes) << 20
        let server = try SSHServer()
        let big = server.serve("big.bin", Data())
        #expect(try Shell.run("/bin/sh", ["-c", "head -c \(size) /dev/urandom > '\(big)'"]).status == 0)
        age(big, seconds: 3600)
        server.serve("small.csv", "small")
        let proxyPort = try SSHServer.freePort()
        let counted = server.dir.sub("proxy.count")
        let cuts = [size * 35 / 100, size * 75 / 100]
        let helper = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("support/countproxy.py").path
        let proxy = try spawnListener(["/usr/bin/env", "python3", helper, "\(proxyPort)", "\(server.port)", counted, cuts.map(String.init).joined(separator: ",")],
                                      log: server.dir.sub("proxy.log"), port: proxyPort, name: "countproxy")
        defer {
            kill(proxy, SIGKILL)
            var status: Int32 = 0
            _ = waitpid(proxy, &status, 0)
        }
        let dir = TempDir("resume")
        dir.config(tables: server.sourceTable(extra: "max_connections = 3").replacingOccurrences(of: "port = \(server.port)", with: "port = \(proxyPort)"))
        #expect(try SFTPTests.trust(dir).status == 0)
        func sent() -> Int64 { Int64((try? String(contentsOfFile: counted, encoding: .utf8)) ?? "") ?? -1 }
        let partial = dir.sub("state/partial/acme/outbox")

        for pass in 1...2 {
            let (r, report) = try SFTPTests.pull(dir)
            let file = SFTPTests.files(report)["big.bin"]
            #expect(r.status == 1 && file?["status"] as? String == "failed", "pass \(pass): \(report)")
            #expect((file?["error"] as? String ?? "").contains("the next pass continues from there"), "pass \(pass): \(file ?? [:])")
            #expect(Lake.listDirectory(partial).contains { $0.hasSuffix(".map") }, "pass \(pass) kept its chunks")
            #expect(try loadAgent(dir).history(client: "acme", path: "big.bin").isEmpty, "no partial version")
        }
        let (r, report) = try SluiceBinary.json(["pull", "acme", "--log-level", "notice"], config: dir.sub("agent.conf"))
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("Resumed transfer complete"), "\(r.stderr)")
        let files = SFTPTests.files(report as? [String: Any] ?? [:])
        #expect(files["big.bin"]?["status"] as? String == "new")
        #expect(files["big.bin"]?["sha256"] as? String == (try sha256(ofFile: big)))
        #expect(try sha256(ofFile: dir.sub("lake/raw/acme/outbox/big.v1.bin")) == sha256(ofFile: big))
        #expect(Lake.listDirectory(partial).isEmpty, "the partial is gone once the file is whole")
        #expect(eventually(5) { sent() > size })
        #expect(sent() < size * 3 / 2, "the server sent \(sent()) bytes for a \(size)-byte file over three passes")
        #expect(try SluiceBinary.run(["audit"], config: dir.sub("agent.conf")).status == 0)
    }

    /// A partial whose remote file changed (another size or mtime) is thrown away.
    @Test func aPartialOfAFileThatChangedIsNotUsed() throws {
        let dir = TempDir("partial")
        let store = PartialStore(stateDir: dir.sub("state"), client: "acme", source: "outbox")
        let staging = dir.write("staging", Data(repeating: 7, count: 3 << 20))
        let fd = open(staging, O_RDWR)
        defer { close(fd) }
        let c = Candidate(path: RelativePath("a/big.bin"), size: 3 << 20, mtimeNs: 1_000_000_000)
        #expect(store.save(c, chunkSize: 1 << 20, chunks: [0, 2], fd: fd, stagingPath: staging))
        let out = dir.write("new", Data())
        let ofd = open(out, O_RDWR)
        defer { close(ofd) }
        #expect(store.resume(c, chunkSize: 1 << 20, into: ofd) == [0, 2])
        var st = stat()
        stat(out, &st)
        #expect(st.st_size == 3 << 20)
        let changed = Candidate(path: c.path, size: c.size, mtimeNs: 2_000_000_000)
        #expect(store.resume(changed, chunkSize: 1 << 20, into: ofd).isEmpty)
        #expect(store.resume(c, chunkSize: 1 << 20, into: ofd).isEmpty, "the stale partial was removed")
    }
}
