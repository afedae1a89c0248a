import CLibSSH2
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The SSH algorithms Sluice offers, in its order of preference, and what the linked libssh2
/// supports.
///
/// Ciphers: AES-GCM first (with the patched decrypt path, the fastest here: AES-NI and
/// OpenSSL's GCM code), then chacha20-poly1305, then AES-CTR with encrypt-then-MAC MACs; CBC
/// last, for old servers. Host keys: ed25519, ECDSA, then RSA with SHA-2 signatures
/// (`rsa-sha2-512`, `rsa-sha2-256`, which OpenSSH 8.8+ requires) before SHA-1 `ssh-rsa`.
public enum SSHAlgorithms {
    public enum Kind: String, CaseIterable, Sendable {
        case keyExchange = "key exchange"
        case hostKey = "host key"
        case cipher
        case mac = "MAC"

        /// libssh2's method type (the client-to-server one for ciphers and MACs; Sluice sets
        /// both directions alike).
        var method: Int32 {
            switch self {
            case .keyExchange: LIBSSH2_METHOD_KEX
            case .hostKey: LIBSSH2_METHOD_HOSTKEY
            case .cipher: LIBSSH2_METHOD_CRYPT_CS
            case .mac: LIBSSH2_METHOD_MAC_CS
            }
        }
    }

    static let preferredCiphers = [
        "aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com",
        "aes128-ctr", "aes192-ctr", "aes256-ctr", "aes256-cbc", "aes192-cbc", "aes128-cbc",
    ]
    static let preferredMACs = [
        "hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com", "hmac-sha1-etm@openssh.com",
        "hmac-sha2-256", "hmac-sha2-512", "hmac-sha1",
    ]
    static let preferredHostKeys = [
        "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
        "rsa-sha2-512", "rsa-sha2-256", "ssh-rsa",
    ]
    /// Ciphers that authenticate the packets themselves (no MAC is negotiated for them).
    static let authenticatedCiphers: Set<String> = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com"]
    /// Markers in the key exchange list that are no algorithms (RFC 8308, strict KEX): libssh2
    /// adds them itself.
    static let pseudoKeyExchanges: Set<String> = ["ext-info-c", "kex-strict-c-v00@openssh.com"]

    /// Every algorithm of `kind` the linked libssh2 implements, in its own order.
    public static func supported(_ kind: Kind) -> [String] { supportedLists[kind] ?? [] }

    /// What Sluice offers by default: its preferences that libssh2 implements, in order (for key
    /// exchange, libssh2's own list, strongest first).
    public static func offered(_ kind: Kind) -> [String] {
        let all = supported(kind)
        switch kind {
        case .keyExchange: return all.filter { !pseudoKeyExchanges.contains($0) }
        case .hostKey: return preferredHostKeys.filter(all.contains)
        case .cipher: return preferredCiphers.filter(all.contains)
        case .mac: return preferredMACs.filter(all.contains)
        }
    }

    private static let supportedLists: [Kind: [String]] = {
        guard libssh2Ready, let session = sluice_ssh2_session_init() else { return [:] }
        defer { libssh2_session_free(session) }
        var out: [Kind: [String]] = [:]
        for kind in Kind.allCases {
            var algs: UnsafeMutablePointer<UnsafePointer<CChar>?>?
            let n = libssh2_session_supported_algs(session, kind.method, &algs)
            guard n > 0, let algs else { continue }
            out[kind] = (0..<Int(n)).compactMap { algs[$0].map { String(cString: $0) } }
            libssh2_free(session, algs)
        }
        return out
    }()

    /// The linked libssh2's version, such as `1.11.1`.
    public static var libraryVersion: String { String(cString: libssh2_version(0)) }

    /// `1.11.1 (patched: decrypt path; Debian trixie source package 1.11.1-1+deb13u2)`.
    public static var libraryDescription: String {
        "\(libraryVersion) (patched: \(SLUICE_LIBSSH2_PATCH); \(SLUICE_LIBSSH2_SOURCE))"
    }
}

let libssh2Ready: Bool = libssh2_init(0) == 0

/// The algorithms one connection may use: a source's `ciphers` and `host_key_algorithms` when
/// set, else Sluice's defaults.
public struct SSHAlgorithmChoice: Sendable, Equatable {
    public var ciphers: [String]?
    public var hostKeys: [String]?

    public init(ciphers: [String]? = nil, hostKeys: [String]? = nil) {
        self.ciphers = ciphers
        self.hostKeys = hostKeys
    }

    /// The list offered for `kind` on this connection.
    public func offered(_ kind: SSHAlgorithms.Kind) -> [String] {
        switch kind {
        case .cipher: ciphers ?? SSHAlgorithms.offered(.cipher)
        case .hostKey: hostKeys ?? SSHAlgorithms.offered(.hostKey)
        case .keyExchange, .mac: SSHAlgorithms.offered(kind)
        }
    }

    /// Names in `names` that libssh2 does not implement for `kind` (for config validation).
    public static func unsupported(_ names: [String], _ kind: SSHAlgorithms.Kind) -> [String] {
        let all = Set(SSHAlgorithms.supported(kind))
        return names.filter { !all.contains($0) }
    }
}

/// What an SSH server offers in its first key exchange message (`SSH_MSG_KEXINIT`), read on a
/// connection of its own when a handshake fails, so that the error can name both sides' lists.
enum ServerOffer {
    /// Connects, exchanges identification lines and reads the server's KEXINIT (sent in the
    /// clear, before any key exists). Nil when it cannot be read.
    static func probe(host: String, port: Int, timeoutMs: Int) -> [SSHAlgorithms.Kind: [String]]? {
        guard let fd = try? SSHSession.connectTCP(host: host, port: port, timeoutMs: timeoutMs) else { return nil }
        defer { close(fd) }
        var tv = timeval(tv_sec: timeoutMs / 1000, tv_usec: Int((timeoutMs % 1000) * 1000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let hello = Array("SSH-2.0-Sluice_probe\r\n".utf8)
        guard send(fd, hello, hello.count, Int32(MSG_NOSIGNAL)) == hello.count else { return nil }
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        // The identification line (lines before it that do not start with "SSH-" are allowed),
        // then one binary packet.
        while data.count < 256 << 10 {
            let n = recv(fd, &chunk, chunk.count, 0)
            if n <= 0 { return nil }
            data += chunk[0..<n]
            if let offer = parse(data) { return offer }
        }
        return nil
    }

    /// The name-lists of the KEXINIT that follows the identification line in `data`, once all of
    /// it has arrived.
    static func parse(_ data: [UInt8]) -> [SSHAlgorithms.Kind: [String]]? {
        // Skip lines up to and including the one that starts with "SSH-".
        var i = 0
        while true {
            guard let nl = data[i...].firstIndex(of: 0x0A) else { return nil }
            let line = data[i..<nl]
            i = nl + 1
            if line.starts(with: Array("SSH-".utf8)) { break }
        }
        func u32(_ at: Int) -> Int? {
            guard at + 4 <= data.count else { return nil }
            return Int(data[at]) << 24 | Int(data[at + 1]) << 16 | Int(data[at + 2]) << 8 | Int(data[at + 3])
        }
        guard let length = u32(i), length <= 256 << 10, data.count >= i + 4 + length, length > 1 else { return nil }
        let padding = Int(data[i + 4])
        var at = i + 5
        let end = i + 4 + length - padding
        guard end > at, data[at] == 20 else { return nil }  // SSH_MSG_KEXINIT
        at += 1 + 16  // the cookie
        var lists: [[String]] = []
        for _ in 0..<6 {
            guard let n = u32(at), at + 4 + n <= end else { return nil }
            let text = String(decoding: data[(at + 4)..<(at + 4 + n)], as: UTF8.self)
            lists.append(text.split(separator: ",").map(String.init))
            at += 4 + n
        }
        return [.keyExchange: lists[0].filter { !$0.hasPrefix("ext-info-") && !$0.hasPrefix("kex-strict-") },
                .hostKey: lists[1], .cipher: lists[3], .mac: lists[5]]
    }

    /// Why a handshake could not agree: each kind of algorithm for which the server offers
    /// nothing that this connection does, with both lists. Nil when every kind overlaps (the
    /// failure was something else).
    static func mismatch(server: [SSHAlgorithms.Kind: [String]], ours: SSHAlgorithmChoice) -> String? {
        var parts: [String] = []
        for kind in SSHAlgorithms.Kind.allCases {
            let theirs = server[kind] ?? []
            let mine = ours.offered(kind)
            // chacha20-poly1305 and AES-GCM carry their own MAC: with one of them agreed on, the
            // MAC lists need not overlap.
            if kind == .mac, let agreed = ours.offered(.cipher).first(where: (server[.cipher] ?? []).contains),
               SSHAlgorithms.authenticatedCiphers.contains(agreed) { continue }
            if !theirs.contains(where: mine.contains) {
                parts.append("\(kind.rawValue): the server offers \(theirs.joined(separator: ", ")); Sluice offers \(mine.joined(separator: ", "))")
            }
        }
        return parts.isEmpty ? nil : parts.joined(separator: "; ")
    }
}
