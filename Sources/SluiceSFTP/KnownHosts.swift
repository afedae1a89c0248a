import Crypto
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An OpenSSH `known_hosts` file: checking a server's key, trusting a new one and replacing
/// a changed one.
///
/// Read here rather than through libssh2's knownhost API because libssh2 1.10 rejects lines
/// with `@cert-authority`/`@revoked` markers and rewrites the whole file when saving; this
/// keeps every line it does not own byte for byte. It understands plain and hashed
/// (`|1|salt|hash`) host names, `[host]:port`, `*`/`?` wildcards and `!` negation.
public struct KnownHosts: Sendable {
    public let path: String

    public init(path: String) { self.path = path }

    /// How the file judges a server's key.
    public enum Verdict: Sendable, Equatable {
        case trusted
        /// The host is not in the file (or only with other key types, listed here).
        case unknown(otherTypes: [String])
        /// The host is known with another key of the same type: possibly an attack.
        case changed(knownFingerprints: [String], lines: [Int])
        /// The key is marked `@revoked`.
        case revoked(line: Int)
    }

    /// The name OpenSSH looks up: `host`, or `[host]:port` when the port is not 22.
    public static func lookupName(host: String, port: Int) -> String {
        port == 22 ? host : "[\(host)]:\(port)"
    }

    struct Entry {
        var line: Int
        var marker: String?
        var hosts: String
        var keyType: String
        var keyBase64: String
    }

    func readLines() throws(SSHError) -> [String] {
        guard let data = FileManager.default.contents(atPath: path) else {
            if access(path, F_OK) != 0 { return [] }
            throw SSHError(.other, "known_hosts \(path) cannot be read: \(String(cString: strerror(errno)))")
        }
        return Self.lines(of: data)
    }

    /// A known_hosts file's lines. Swift reads "\r\n" as one Character: split on the bytes so
    /// CRLF files work too.
    package static func lines(of data: Data) -> [String] {
        data.split(separator: 0x0A, omittingEmptySubsequences: false).map { line in
            String(decoding: line.last == 0x0D ? line.dropLast() : line, as: UTF8.self)
        }
    }

    static func parse(_ line: String, number: Int) -> Entry? {
        let t = line.trimmingCharacters(in: .whitespaces)
        if t.isEmpty || t.hasPrefix("#") { return nil }
        var fields = t.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        var marker: String?
        if fields.first?.hasPrefix("@") == true { marker = fields.removeFirst() }
        guard fields.count >= 3 else { return nil }
        return Entry(line: number, marker: marker, hosts: fields[0], keyType: fields[1], keyBase64: fields[2])
    }

    /// Whether a host field (`a,b,!c`, `|1|salt|hash`) names `name`.
    static func hostField(_ field: String, matches name: String) -> Bool {
        if field.hasPrefix("|1|") {
            let parts = field.split(separator: "|", omittingEmptySubsequences: false)
            guard parts.count == 4, let salt = Data(base64Encoded: String(parts[2])), let want = Data(base64Encoded: String(parts[3])) else { return false }
            // OpenSSH hashes the lower-cased name.
            let mac = HMAC<Insecure.SHA1>.authenticationCode(for: Data(name.lowercased().utf8), using: SymmetricKey(data: salt))
            return Data(mac) == want
        }
        var matched = false
        for pattern in field.split(separator: ",") {
            if pattern.hasPrefix("!") {
                if wildcard(String(pattern.dropFirst()).lowercased(), name.lowercased()) { return false }
            } else if wildcard(pattern.lowercased(), name.lowercased()) {
                matched = true
            }
        }
        return matched
    }

    /// `*` and `?` wildcards, as in OpenSSH host patterns.
    static func wildcard(_ pattern: String, _ text: String) -> Bool {
        let p = Array(pattern.utf8), s = Array(text.utf8)
        var pi = 0, si = 0, star = -1, mark = 0
        while si < s.count {
            if pi < p.count && (p[pi] == UInt8(ascii: "?") || p[pi] == s[si]) {
                pi += 1; si += 1
            } else if pi < p.count && p[pi] == UInt8(ascii: "*") {
                star = pi; mark = si; pi += 1
            } else if star >= 0 {
                pi = star + 1; mark += 1; si = mark
            } else {
                return false
            }
        }
        while pi < p.count && p[pi] == UInt8(ascii: "*") { pi += 1 }
        return pi == p.count
    }

    /// Judges `key` for `host:port`.
    public func verdict(host: String, port: Int, key: HostKey) throws(SSHError) -> Verdict {
        Self.verdict(lines: try readLines(), name: Self.lookupName(host: host, port: port), key: key)
    }

    /// Judges `key` for the lookup name `name` by a known_hosts file's lines.
    package static func verdict(lines: [String], name: String, key: HostKey) -> Verdict {
        let keyText = key.base64
        var sameType: [(fingerprint: String, line: Int)] = []
        var otherTypes: [String] = []
        var trusted = false
        for (i, line) in lines.enumerated() {
            guard let e = parse(line, number: i + 1), hostField(e.hosts, matches: name) else { continue }
            switch e.marker {
            case "@revoked":
                if e.keyBase64 == keyText { return .revoked(line: e.line) }
                continue
            case nil:
                break
            default:
                continue  // @cert-authority: Sluice does not do certificates
            }
            if e.keyBase64 == keyText {
                trusted = true
            } else if e.keyType == key.type {
                let fp = Data(base64Encoded: e.keyBase64).map { HostKey(blob: Array($0)).fingerprint } ?? "(unreadable key)"
                sameType.append((fp, e.line))
            } else {
                otherTypes.append(e.keyType)
            }
        }
        if trusted { return .trusted }
        if !sameType.isEmpty { return .changed(knownFingerprints: sameType.map(\.fingerprint), lines: sameType.map(\.line)) }
        return .unknown(otherTypes: otherTypes)
    }

    /// Appends `key` for `host:port`; with `replacing`, first removes this host's other keys
    /// of the same type. The file is rewritten through a temp file and a rename.
    public func trust(host: String, port: Int, key: HostKey, replacing: Bool) throws(SSHError) {
        let name = Self.lookupName(host: host, port: port)
        var lines = try readLines()
        if lines.last == "" { lines.removeLast() }
        if replacing {
            lines = lines.compactMap { line -> String? in
                guard let e = Self.parse(line, number: 0), e.marker == nil, e.keyType == key.type, e.keyBase64 != key.base64,
                      Self.hostField(e.hosts, matches: name) else { return line }
                if e.hosts.hasPrefix("|") { return nil }
                // Only this host's literal name goes; wildcard patterns (which may vouch for
                // other hosts) stay, and the new key, appended below, takes precedence.
                let patterns = e.hosts.split(separator: ",").map(String.init)
                let remaining = patterns.filter { $0.lowercased() != name.lowercased() }
                if remaining.count == patterns.count { return line }
                if remaining.isEmpty || remaining.allSatisfy({ $0.hasPrefix("!") }) { return nil }
                var fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
                fields[0] = remaining.joined(separator: ",")
                return fields.joined(separator: " ")
            }
        }
        lines.append("\(name) \(key.type) \(key.base64)")
        try write(lines.joined(separator: "\n") + "\n")
    }

    private func write(_ text: String) throws(SSHError) {
        // Write through a symlinked known_hosts to its target, and keep the file's mode.
        let path = (try? FileManager.default.destinationOfSymbolicLink(atPath: self.path)).map { target in
            target.hasPrefix("/") ? target : ((self.path as NSString).deletingLastPathComponent as NSString).appendingPathComponent(target)
        } ?? self.path
        let mode = ((try? FileManager.default.attributesOfItem(atPath: path))?[.posixPermissions] as? NSNumber).map { mode_t($0.uint16Value) } ?? 0o644
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty { try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        let tmp = "\(path).sluice-tmp-\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw SSHError(.other, "cannot write \(tmp): \(String(cString: strerror(errno))) — check that the folder is writable") }
        let bytes = Array(text.utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress!, $0.count) }
            if n <= 0 {
                let why = String(cString: strerror(errno))
                Glibc.close(fd)
                unlink(tmp)
                throw SSHError(.other, "cannot write \(tmp): \(why)")
            }
            off += n
        }
        fchmod(fd, mode)
        fsync(fd)
        Glibc.close(fd)
        guard rename(tmp, path) == 0 else {
            let why = String(cString: strerror(errno))
            unlink(tmp)
            throw SSHError(.other, "cannot replace \(path): \(why)")
        }
        let dfd = open(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { fsync(dfd); Glibc.close(dfd) }
    }
}
