import Crypto
import Foundation
import SluiceConfig
import SluiceFormats
import SluiceSupport
import SluiceTransform
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The OpenPGP keyrings of the clients with a `[clients.<id>.pgp]` table: one GnuPG home per
/// client under `state_dir/gnupg/`, named by the client and a hash of its key files, so that a
/// changed key or a removed verify key gets a fresh keyring. Built once per process.
enum Keyrings {
    private static let built = Mutex<[String: OpenPGPKeyring]>([:])

    /// Reads a client's key files and passphrase (errors name the key and file).
    static func read(_ pgp: PGPSettings, client: String) throws(AgentError) -> (secret: OpenPGPKeyFile?, passphrase: PassphraseBox?, verify: [OpenPGPKeyFile]) {
        func file(_ path: String, _ key: String) throws(AgentError) -> [UInt8] {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw AgentError(.config, "clients.\(client).pgp.\(key): cannot read \(path) (\(String(cString: strerror(errno))))")
            }
            return Array(data)
        }
        let secret = try pgp.secretKey.map { path throws(AgentError) in OpenPGPKeyFile(path: path, bytes: try file(path, "secret_key")) }
        var passphrase: PassphraseBox?
        if let path = pgp.passphraseFile {
            var bytes = try file(path, "passphrase_file")
            while let last = bytes.last, last == 0x0A || last == 0x0D { bytes.removeLast() }
            passphrase = PassphraseBox(bytes)
        }
        var verify: [OpenPGPKeyFile] = []
        for path in pgp.verifyKeys { verify.append(OpenPGPKeyFile(path: path, bytes: try file(path, "verify_keys"))) }
        return (secret, passphrase, verify)
    }

    /// The keyring of a client, built on first use in this process.
    static func keyring(_ pgp: PGPSettings, client: String, stateDir: String) throws(AgentError) -> OpenPGPKeyring {
        let keys = try read(pgp, client: client)
        var h = SHA256()
        for f in [keys.secret].compactMap({ $0 }) + keys.verify { h.update(data: f.bytes + Array(f.path.utf8)) }
        h.update(data: [pgp.requireSignature ? 1 : 0])
        let tag = h.finalize().prefix(8).map { String(format: "%02x", $0) }.joined()
        let parent = "\(stateDir)/gnupg"
        let home = "\(parent)/\(client)-\(tag)"
        if let k = built.withLock({ $0[home] }) { return k }
        do {
            _ = try makeDirectories(parent, mode: 0o700)
        } catch {
            throw AgentError(.runtime, "cannot make \(parent): \(error)")
        }
        // Keyrings of this client's earlier key files go: they may hold a key no longer trusted.
        for old in (try? FileManager.default.contentsOfDirectory(atPath: parent)) ?? [] where old.hasPrefix("\(client)-") && old != "\(client)-\(tag)" {
            try? FileManager.default.removeItem(atPath: "\(parent)/\(old)")
        }
        do {
            let k = try OpenPGPKeyring.build(home: home, secretKey: keys.secret, passphrase: keys.passphrase, verifyKeys: keys.verify,
                                             requireSignature: pgp.requireSignature)
            built.withLock { $0[home] = k }
            return k
        } catch {
            throw AgentError(.config, "clients.\(client).pgp: \(error.description)")
        }
    }
}

extension Agent {
    /// The keyring for a client's OpenPGP deliveries; nil when it has no `[clients.<id>.pgp]`.
    package func keyring(client id: String) throws(AgentError) -> OpenPGPKeyring? {
        guard let pgp = config.client(id)?.pgp else { return nil }
        return try Keyrings.keyring(pgp, client: id, stateDir: config.stateDir)
    }

    /// A client's keyring for the transform, built when the first OpenPGP file needs it: a
    /// keyring that cannot be built fails the client's OpenPGP files (with why), not its other
    /// files.
    package func keys(client id: String) -> StoredBytes.KeySource {
        StoredBytes.KeySource { [self] in
            do throws(AgentError) {
                return try keyring(client: id).map { .ready($0) } ?? .none
            } catch {
                return .broken(error.message)
            }
        }
    }

    /// `check-config`: every client's key files imported into a throwaway keyring, to report a
    /// missing, unreadable, expired or revoked key (naming the file and key) before a delivery
    /// needs it. Returns each client's summary.
    public func checkKeyrings() throws(AgentError) -> [String] {
        var out: [String] = []
        for c in config.clients {
            guard let pgp = c.pgp else { continue }
            let keys = try Keyrings.read(pgp, client: c.id)
            var template = Array("/tmp/sluice-check-XXXXXX".utf8CString)
            guard let dir = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }).map({ String(cString: $0) }) else {
                throw AgentError(.runtime, "mkdtemp: \(String(cString: strerror(errno)))")
            }
            defer {
                OpenPGPKeyring.stopAgent(home: dir)
                try? FileManager.default.removeItem(atPath: dir)
            }
            do {
                let k = try OpenPGPKeyring.build(home: dir, secretKey: keys.secret, passphrase: keys.passphrase, verifyKeys: keys.verify,
                                                 requireSignature: pgp.requireSignature)
                out.append("client \(c.id) pgp: secret key ids \(k.secretKeyIDs.isEmpty ? "none" : k.secretKeyIDs.joined(separator: ", ")); "
                    + "\(Set(k.verifyFiles.values).count) verify key file(s); require_signature \(pgp.requireSignature)")
            } catch {
                throw AgentError(.config, "clients.\(c.id).pgp: \(error.description)")
            }
        }
        return out
    }
}
