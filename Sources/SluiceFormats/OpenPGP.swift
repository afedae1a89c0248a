import CGPGME
import Foundation
import SluiceSupport

/// Why an OpenPGP step failed, in words that name the key or file.
public struct OpenPGPError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// OpenPGP messages as deliveries carry them: `.pgp`, `.gpg`, `.asc` (binary or ASCII-armoured),
/// recognised by suffix and by their first packet.
public enum OpenPGP {
    public static let suffixes = [".pgp", ".gpg", ".asc"]

    /// Whether a name ends in an OpenPGP suffix (any case).
    public static func named(by name: some Collection<UInt8>) -> Bool { strippingSuffix(Array(name)) != nil }

    /// The name without its OpenPGP suffix, or nil when it has none.
    public static func strippingSuffix(_ name: [UInt8]) -> [UInt8]? {
        let lower = name.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }
        for s in suffixes where lower.count > s.utf8.count && lower.suffix(s.utf8.count).elementsEqual(s.utf8) {
            return Array(name.dropLast(s.utf8.count))
        }
        return nil
    }

    /// How many first bytes `sniff` and `isEncrypted` need (an armour's header lines too).
    public static let magicLength = 512

    /// Whether `head` starts an OpenPGP message: an armoured `BEGIN PGP MESSAGE`, or a binary
    /// packet that opens one (a public- or symmetric-key encrypted session key, a one-pass
    /// signature, compressed data).
    public static func sniff(_ head: [UInt8]) -> Bool {
        if head.starts(with: Array("-----BEGIN PGP MESSAGE-----".utf8).prefix(head.count)) && head.count >= 15 { return true }
        guard let first = head.first, first & 0x80 != 0 else { return false }
        let tag = first & 0x40 != 0 ? first & 0x3F : (first >> 2) & 0x0F
        return [1, 3, 4, 8].contains(tag)
    }

    /// The tag of the first packet: of the bytes, or of the armour's first base64 line.
    static func firstPacketTag(_ head: [UInt8]) -> UInt8? {
        var bytes = head
        if head.starts(with: Array("-----BEGIN PGP".utf8)) {
            // Header lines end at the first empty line; the base64 body follows.
            let text = String(decoding: head, as: UTF8.self).replacingOccurrences(of: "\r\n", with: "\n")
            guard let blank = text.range(of: "\n\n") else { return nil }
            let body = text[blank.upperBound...].prefix(4)
            guard body.count == 4, let decoded = Data(base64Encoded: String(body)) else { return nil }
            bytes = Array(decoded)
        }
        guard let first = bytes.first, first & 0x80 != 0 else { return nil }
        return first & 0x40 != 0 ? first & 0x3F : (first >> 2) & 0x0F
    }

    /// Whether the message is encrypted (its first packet is a session key); a message that is
    /// only signed is verified instead.
    public static func isEncrypted(_ head: [UInt8]) -> Bool {
        guard let tag = firstPacketTag(head) else { return true }
        return tag == 1 || tag == 3
    }

    /// Starts gpgme once. gpgme talks to gpg through pipes: a gpg that exits early must not
    /// kill the agent with SIGPIPE, so it is ignored (writes then fail with EPIPE).
    static let ready: Bool = {
        signal(SIGPIPE, SIG_IGN)
        _ = gpgme_check_version(nil)
        return true
    }()

    static func message(_ err: gpgme_error_t) -> String {
        gpgme_strerror(err).map { String(cString: $0) } ?? "error \(err)"
    }

    static func code(_ err: gpgme_error_t) -> UInt32 { sluice_gpgme_code(err) }

    /// A context on the keyring in `home`, with passphrases from `passphrase` (loopback: gpg
    /// never asks a terminal or a desktop).
    static func context(home: String, passphrase: PassphraseBox?) throws(OpenPGPError) -> gpgme_ctx_t {
        _ = ready
        var ctx: gpgme_ctx_t?
        var err = gpgme_new(&ctx)
        guard err == 0, let ctx else { throw OpenPGPError("gpgme could not start: \(message(err))") }
        err = gpgme_set_protocol(ctx, GPGME_PROTOCOL_OpenPGP)
        if err == 0 { err = gpgme_ctx_set_engine_info(ctx, GPGME_PROTOCOL_OpenPGP, nil, home) }
        if err == 0 { err = gpgme_set_pinentry_mode(ctx, GPGME_PINENTRY_MODE_LOOPBACK) }
        guard err == 0 else {
            gpgme_release(ctx)
            throw OpenPGPError("gpg could not use the keyring \(home): \(message(err)) (is gnupg installed?)")
        }
        // Always a callback: without one, gpg in loopback mode gives up with "no data".
        gpgme_set_passphrase_cb(ctx, { hook, _, _, prevWasBad, fd in
            guard let hook else { return gpgme_error_t(GPG_ERR_NO_PASSPHRASE.rawValue) }
            // A wrong passphrase is not tried again: gpg would ask forever.
            guard prevWasBad == 0 else { return gpgme_error_t(GPG_ERR_BAD_PASSPHRASE.rawValue) }
            let box = Unmanaged<PassphraseBox>.fromOpaque(hook).takeUnretainedValue()
            let line = box.bytes + [0x0A]
            _ = line.withUnsafeBytes { gpgme_io_writen(fd, $0.baseAddress, $0.count) }
            return 0
        }, passphrase.map { Unmanaged.passUnretained($0).toOpaque() })
        return ctx
    }
}

/// A passphrase read from its file, handed to gpg through gpgme's callback; never printed.
public final class PassphraseBox: @unchecked Sendable, CustomStringConvertible {  // reason: immutable after init
    let bytes: [UInt8]
    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    public var description: String { "(passphrase)" }
}

/// A key file as agent.conf names it, and its bytes.
public struct OpenPGPKeyFile: Sendable, Equatable {
    public var path: String
    public var bytes: [UInt8]
    public init(path: String, bytes: [UInt8]) {
        self.path = path
        self.bytes = bytes
    }
}

/// A keyring Sluice owns: a GnuPG home directory (never the user's `~/.gnupg`) holding one
/// client's secret key and the client keys whose signatures are accepted.
public struct OpenPGPKeyring: Sendable {
    public let home: String
    /// Key ids (long, upper-case hex) of the secret key and its subkeys.
    public let secretKeyIDs: [String]
    /// Fingerprints of the keys (and subkeys) of `verify_keys`.
    public let verifyFingerprints: Set<String>
    /// Which `verify_keys` file each fingerprint came from.
    public let verifyFiles: [String: String]
    public let passphrase: PassphraseBox?
    public let requireSignature: Bool

    /// Imports the key files into `home` (made mode 700; it must be new or empty) and checks
    /// them: the secret key file must hold a secret key, each verify file a public key, and no
    /// key may be expired or revoked. Every error names the file and the key.
    public static func build(home: String, secretKey: OpenPGPKeyFile?, passphrase: PassphraseBox?, verifyKeys: [OpenPGPKeyFile],
                             requireSignature: Bool) throws(OpenPGPError) -> OpenPGPKeyring {
        if mkdir(home, 0o700) != 0 && errno != EEXIST {
            throw OpenPGPError("cannot make the keyring folder \(home): \(String(cString: strerror(errno)))")
        }
        chmod(home, 0o700)
        let ctx = try OpenPGP.context(home: home, passphrase: passphrase)
        defer { gpgme_release(ctx) }
        var secretIDs: [String] = []
        if let secretKey {
            let fprs = try importKeys(ctx, secretKey, what: "secret_key")
            let keys = try listKeys(ctx, fprs, secret: true, file: secretKey.path)
            guard !keys.isEmpty else {
                throw OpenPGPError("secret_key \(secretKey.path) holds no secret key (only a public one?): export it with `gpg --export-secret-keys --armor KEYID`")
            }
            for k in keys { secretIDs += k.keyIDs }
            try checkUsable(keys, file: secretKey.path, key: "secret_key")
        }
        var verify: Set<String> = []
        var files: [String: String] = [:]
        for file in verifyKeys {
            let fprs = try importKeys(ctx, file, what: "verify_keys")
            let keys = try listKeys(ctx, fprs, secret: false, file: file.path)
            try checkUsable(keys, file: file.path, key: "verify_keys")
            for k in keys {
                for f in k.fingerprints {
                    verify.insert(f)
                    files[f] = file.path
                }
            }
        }
        return OpenPGPKeyring(home: home, secretKeyIDs: secretIDs, verifyFingerprints: verify, verifyFiles: files, passphrase: passphrase,
                              requireSignature: requireSignature)
    }

    /// Stops the gpg-agent gpg started for the keyring in `home` (before the folder goes).
    public static func stopAgent(home: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["gpgconf", "--homedir", home, "--kill", "gpg-agent"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return }
        p.waitUntilExit()
    }

    private struct KeyInfo {
        var fingerprint: String
        var fingerprints: [String]
        var keyIDs: [String]
        var expired: Bool
        var revoked: Bool
        var disabled: Bool
    }

    /// The fingerprints of the keys a file brought into the keyring.
    private static func importKeys(_ ctx: gpgme_ctx_t, _ file: OpenPGPKeyFile, what: String) throws(OpenPGPError) -> [String] {
        var data: gpgme_data_t?
        var err = file.bytes.withUnsafeBufferPointer { b in
            b.baseAddress!.withMemoryRebound(to: CChar.self, capacity: b.count) { gpgme_data_new_from_mem(&data, $0, b.count, 1) }
        }
        guard err == 0, let data else { throw OpenPGPError("\(what) \(file.path): \(OpenPGP.message(err))") }
        defer { gpgme_data_release(data) }
        err = gpgme_op_import(ctx, data)
        guard err == 0, let result = gpgme_op_import_result(ctx) else {
            throw OpenPGPError("\(what) \(file.path) is not an OpenPGP key file: \(OpenPGP.message(err))")
        }
        var fprs: [String] = []
        var status = result.pointee.imports
        while let s = status {
            if s.pointee.result == 0, let f = s.pointee.fpr { fprs.append(String(cString: f)) }
            status = s.pointee.next
        }
        guard !fprs.isEmpty else {
            throw OpenPGPError("\(what) \(file.path) holds no OpenPGP key (\(result.pointee.considered) considered, \(result.pointee.not_imported) not imported): "
                + "give an exported key, armoured (gpg --export --armor) or binary")
        }
        return Array(Set(fprs)).sorted()
    }

    private static func listKeys(_ ctx: gpgme_ctx_t, _ fprs: [String], secret: Bool, file: String) throws(OpenPGPError) -> [KeyInfo] {
        var out: [KeyInfo] = []
        for fpr in fprs {
            var key: gpgme_key_t?
            let err = gpgme_get_key(ctx, fpr, &key, secret ? 1 : 0)
            if OpenPGP.code(err) == GPG_ERR_EOF.rawValue || key == nil { continue }
            guard err == 0, let key else { throw OpenPGPError("\(file): key \(fpr): \(OpenPGP.message(err))") }
            defer { gpgme_key_unref(key) }
            var fingerprints: [String] = [], ids: [String] = []
            var sub = key.pointee.subkeys
            while let s = sub {
                if let f = s.pointee.fpr { fingerprints.append(String(cString: f)) }
                if let k = s.pointee.keyid { ids.append(String(cString: k)) }
                sub = s.pointee.next
            }
            out.append(KeyInfo(fingerprint: fpr, fingerprints: fingerprints, keyIDs: ids, expired: key.pointee.expired != 0,
                               revoked: key.pointee.revoked != 0, disabled: key.pointee.disabled != 0))
        }
        return out
    }

    private static func checkUsable(_ keys: [KeyInfo], file: String, key: String) throws(OpenPGPError) {
        for k in keys {
            if k.revoked { throw OpenPGPError("\(key) \(file): key \(k.fingerprint) is revoked; ask for a current key") }
            if k.expired { throw OpenPGPError("\(key) \(file): key \(k.fingerprint) has expired; ask for a current key, or extend it (gpg --quick-set-expire)") }
        }
    }
}

/// Decrypts (and checks the signature of) an OpenPGP message as it is read: gpg runs on the
/// keyring through gpgme on a thread of its own, and the plaintext comes through a pipe, so
/// it is never written to disk and never held whole. The end of the data is reported only
/// once gpg has finished and the signature is checked, so a reader that publishes at the end
/// publishes nothing of a message whose signature is bad.
public final class DecryptingReader {
    private let keyring: OpenPGPKeyring
    private let name: String
    private var readEnd: Int32
    private let job: BackgroundJob
    private let outcome: Outcome
    private var finished = false
    private var endError: (any Error)?

    /// What the gpg thread leaves behind.
    private final class Outcome: @unchecked Sendable {  // reason: written by the gpg thread before the job ends, read after `wait()`
        var error: gpgme_error_t = 0
        var recipients: [String] = []
        var signatures: [(fpr: String, status: UInt32, summary: UInt32)] = []
        var sourceFailure: (any Error)?
    }

    /// What the gpg thread reads the message from.
    private final class Input: @unchecked Sendable {  // reason: read only by the gpg thread once it starts
        let source: ByteSource
        let outcome: Outcome
        init(_ source: @escaping ByteSource, _ outcome: Outcome) {
            self.source = source
            self.outcome = outcome
        }
    }

    /// `name` is what messages call the file; `encrypted` false for a message that is only
    /// signed (it is verified and unwrapped).
    public init(keyring: OpenPGPKeyring, name: String, encrypted: Bool = true, source: @escaping ByteSource) throws(OpenPGPError) {
        self.keyring = keyring
        self.name = name
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw OpenPGPError("pipe: \(String(cString: strerror(errno)))") }
        // gpgme closes every other descriptor in the gpg it starts; close-on-exec covers
        // anything else this process may start.
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        readEnd = fds[0]
        let writeEnd = fds[1]
        let outcome = Outcome()
        self.outcome = outcome
        let input = Input(source, outcome)
        let home = keyring.home, passphrase = keyring.passphrase
        job = BackgroundJob.pooled {
            defer { close(writeEnd) }
            let ctx: gpgme_ctx_t
            do {
                ctx = try OpenPGP.context(home: home, passphrase: passphrase)
            } catch {
                outcome.sourceFailure = error
                return
            }
            defer { gpgme_release(ctx) }
            var callbacks = gpgme_data_cbs(read: { handle, buffer, size -> Int in
                let input = Unmanaged<Input>.fromOpaque(handle!).takeUnretainedValue()
                do {
                    return try input.source(UnsafeMutableRawBufferPointer(start: buffer, count: size))
                } catch {
                    input.outcome.sourceFailure = error
                    errno = EIO
                    return -1
                }
            }, write: nil, seek: nil, release: nil)
            var cipher: gpgme_data_t?, plain: gpgme_data_t?
            let unmanaged = Unmanaged.passRetained(input)
            defer { unmanaged.release() }
            guard gpgme_data_new_from_cbs(&cipher, &callbacks, unmanaged.toOpaque()) == 0,
                  gpgme_data_new_from_fd(&plain, writeEnd) == 0 else {
                outcome.error = gpgme_error_t(GPG_ERR_ENOMEM.rawValue)
                return
            }
            defer {
                gpgme_data_release(cipher)
                gpgme_data_release(plain)
            }
            outcome.error = encrypted ? gpgme_op_decrypt_verify(ctx, cipher, plain) : gpgme_op_verify(ctx, cipher, nil, plain)
            if let d = gpgme_op_decrypt_result(ctx) {
                var r = d.pointee.recipients
                while let x = r {
                    if let k = x.pointee.keyid { outcome.recipients.append(String(cString: k)) }
                    r = x.pointee.next
                }
            }
            if let v = gpgme_op_verify_result(ctx) {
                var s = v.pointee.signatures
                while let x = s {
                    outcome.signatures.append((x.pointee.fpr.map { String(cString: $0) } ?? "", OpenPGP.code(x.pointee.status), x.pointee.summary.rawValue))
                    s = x.pointee.next
                }
            }
        }
    }

    deinit {
        // A reader that stops early closes the pipe: gpg's writes fail and the thread ends.
        if readEnd >= 0 { close(readEnd) }
        try? job.wait()
    }

    /// Fills `buffer` with plaintext; 0 at the end, once the message is known to be whole and
    /// its signature acceptable.
    public func read(_ buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        // A reader that read past a failed end (a decompressor that ignores its source's last
        // error) hears of it again.
        if let endError { throw endError }
        guard !finished, buffer.count > 0 else { return 0 }
        while true {
            let n = Glibc.read(readEnd, buffer.baseAddress!, buffer.count)
            if n > 0 { return n }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw OpenPGPError("\(name): reading the decrypted data failed: \(String(cString: strerror(errno)))") }
            break
        }
        try? job.wait()
        close(readEnd)
        readEnd = -1
        finished = true
        do {
            try check()
        } catch {
            endError = error
            throw error
        }
        return 0
    }

    private func check() throws {
        if let failure = outcome.sourceFailure { throw failure }
        let err = outcome.error
        let code = OpenPGP.code(err)
        let ids = outcome.recipients.joined(separator: ", ")
        if err != 0 {
            switch code {
            case GPG_ERR_NO_SECKEY.rawValue:
                throw OpenPGPError("\(name) is encrypted to key id\(outcome.recipients.count == 1 ? "" : "s") \(ids), but secret_key holds "
                    + (keyring.secretKeyIDs.isEmpty ? "no key (set [clients.<id>.pgp] secret_key)" : "key ids \(keyring.secretKeyIDs.joined(separator: ", "))")
                    + ": ask the client to encrypt to our key, or configure the matching secret key")
            case GPG_ERR_BAD_PASSPHRASE.rawValue, GPG_ERR_NO_PASSPHRASE.rawValue, GPG_ERR_CANCELED.rawValue:
                throw OpenPGPError("\(name): the secret key could not be unlocked: "
                    + (keyring.passphrase == nil ? "it has a passphrase; set passphrase_file" : "the passphrase in passphrase_file is wrong"))
            case GPG_ERR_NO_DATA.rawValue:
                throw OpenPGPError("\(name) is not an OpenPGP message (no encrypted or signed data in it)")
            default:
                throw OpenPGPError("\(name) cannot be decrypted: \(OpenPGP.message(err)) (damaged or cut short?)")
            }
        }
        try checkSignatures()
    }

    private func checkSignatures() throws {
        let sigs = outcome.signatures
        for s in sigs where s.status == GPG_ERR_BAD_SIGNATURE.rawValue {
            throw OpenPGPError("\(name) has a bad signature (by \(s.fpr)): the data was changed after it was signed; ask the client to resend it")
        }
        guard keyring.requireSignature else { return }
        guard !sigs.isEmpty else {
            throw OpenPGPError("\(name) is not signed, and require_signature is true: ask the client to sign it with a key in verify_keys")
        }
        var problems: [String] = []
        for s in sigs {
            let known = keyring.verifyFingerprints.contains(s.fpr) || keyring.verifyFingerprints.contains { $0.hasSuffix(s.fpr) && s.fpr.count >= 16 }
            if s.summary & GPGME_SIGSUM_KEY_REVOKED.rawValue != 0 {
                problems.append("signed by \(s.fpr), a revoked key")
            } else if s.summary & (GPGME_SIGSUM_KEY_EXPIRED.rawValue | GPGME_SIGSUM_SIG_EXPIRED.rawValue) != 0 {
                problems.append("signed by \(s.fpr), whose key or signature has expired")
            } else if s.status == GPG_ERR_NO_PUBKEY.rawValue || !known {
                problems.append("signed by key \(s.fpr), which is not in verify_keys")
            } else if s.status == 0 {
                return
            } else {
                problems.append("signature by \(s.fpr): \(OpenPGP.message(gpgme_error_t(s.status)))")
            }
        }
        throw OpenPGPError("\(name) has no valid signature from verify_keys (\(problems.joined(separator: "; "))), and require_signature is true")
    }
}
