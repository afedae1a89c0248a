import Foundation
import SluiceSFTP
import SluiceTestSupport
import Testing
import SluiceSupport
import SluiceIngest
import SluiceConfig
import SluiceSources
import SluiceTransform
import SluiceFormats

/// The known_hosts reader and writer against files OpenSSH's own tools write.
@Suite struct KnownHostsTests {
    static func key(_ dir: TempDir, _ name: String) throws -> HostKey {
        try SSHServer.keygen(dir.sub(name))
        let pub = try String(contentsOfFile: dir.sub(name + ".pub"), encoding: .utf8).split(separator: " ")
        return HostKey(blob: Array(try #require(Data(base64Encoded: String(pub[1])))))
    }

    @Test func hashedCRLFAndCaseInsensitiveNamesAreUnderstood() throws {
        let dir = TempDir("kh")
        let key = try Self.key(dir, "k")
        dir.write("kh", "# comment\r\nsftp.example.com \(key.type) \(key.base64)\r\n")
        let hashed = try Shell.run("/usr/bin/ssh-keygen", ["-H", "-f", dir.sub("kh")])
        #expect(hashed.status == 0, "\(hashed.stderr)")
        let file = KnownHosts(path: dir.sub("kh"))
        #expect(try file.verdict(host: "SFTP.Example.COM", port: 22, key: key) == .trusted)
        #expect(try file.verdict(host: "sftp.example.com", port: 2222, key: key) == .unknown(otherTypes: []))
    }

    @Test func replacingKeepsWildcardsOtherHostsAndForeignLines() throws {
        let dir = TempDir("kh")
        let old = try Self.key(dir, "old")
        let new = try Self.key(dir, "new")
        let text = """
            # kept comment
            *.corp \(old.type) \(old.base64) wildcard line
            a.corp,b.corp \(old.type) \(old.base64) shared line
            @revoked bad.corp \(old.type) \(old.base64)

            """
        dir.write("kh", text)
        let file = KnownHosts(path: dir.sub("kh"))
        guard case .changed = try file.verdict(host: "a.corp", port: 22, key: new) else {
            Issue.record("a different key of the same type must count as changed")
            return
        }
        try file.trust(host: "a.corp", port: 22, key: new, replacing: true)
        let lines = try String(contentsOfFile: dir.sub("kh"), encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(lines.contains("# kept comment"))
        #expect(lines.contains("*.corp \(old.type) \(old.base64) wildcard line"))
        #expect(lines.contains("b.corp \(old.type) \(old.base64) shared line"))
        #expect(lines.contains("@revoked bad.corp \(old.type) \(old.base64)"))
        #expect(lines.last == "a.corp \(new.type) \(new.base64)")
        #expect(try file.verdict(host: "a.corp", port: 22, key: new) == .trusted)
        #expect(try file.verdict(host: "b.corp", port: 22, key: old) == .trusted)
        #expect(try file.verdict(host: "bad.corp", port: 22, key: old) == .revoked(line: 4))
        // OpenSSH's ssh-keygen finds the new entry.
        let found = try Shell.run("/usr/bin/ssh-keygen", ["-F", "a.corp", "-f", dir.sub("kh")])
        #expect(found.stdout.contains(new.base64))
    }

    @Test func fingerprintsMatchSSHKeygen() throws {
        let dir = TempDir("kh")
        let key = try Self.key(dir, "k")
        let r = try Shell.run("/usr/bin/ssh-keygen", ["-l", "-E", "sha256", "-f", dir.sub("k.pub")])
        #expect(r.stdout.split(separator: " ")[1] == key.fingerprint)
        #expect(key.type == "ssh-ed25519")
    }
}
