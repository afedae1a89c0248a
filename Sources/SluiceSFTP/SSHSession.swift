import CLibSSH2
import Crypto
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A failure talking to an SSH/SFTP server. `message` is meant for the operator.
public struct SSHError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable, Equatable {
        case connect, timeout, handshake, authentication, keyFile, sftp(status: UInt), disconnected, other
    }
    public var kind: Kind
    public var message: String
    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }
    public var description: String { message }

    /// The connection broke or stopped answering: the session cannot be used again.
    public var isConnectionLoss: Bool { kind == .disconnected || kind == .timeout }

    /// The server answered with "no such file".
    public var isNoSuchFile: Bool {
        if case .sftp(let s) = kind { return s == UInt(LIBSSH2_FX_NO_SUCH_FILE) || s == UInt(LIBSSH2_FX_NO_SUCH_PATH) }
        return false
    }
}

/// A server's host key, as the handshake presented it.
public struct HostKey: Sendable, Equatable {
    /// The algorithm name inside the key blob, such as `ssh-ed25519`.
    public let type: String
    /// The public key blob (SSH wire format).
    public let blob: [UInt8]

    public init(blob: [UInt8]) {
        self.blob = blob
        self.type = Self.typeName(of: blob) ?? "unknown"
    }

    /// OpenSSH's fingerprint: `SHA256:` and the unpadded base64 of the blob's SHA-256.
    public var fingerprint: String {
        let digest = Data(SHA256.hash(data: blob)).base64EncodedString()
        return "SHA256:" + digest.replacingOccurrences(of: "=", with: "")
    }

    public var base64: String { Data(blob).base64EncodedString() }

    /// The first string of an SSH key blob: uint32 length, then the name.
    static func typeName(of blob: [UInt8]) -> String? {
        guard blob.count >= 4 else { return nil }
        let n = Int(blob[0]) << 24 | Int(blob[1]) << 16 | Int(blob[2]) << 8 | Int(blob[3])
        guard n > 0, n <= 64, blob.count >= 4 + n else { return nil }
        return String(decoding: blob[4..<(4 + n)], as: UTF8.self)
    }
}

/// What to log in as. The secrets are read from files by the caller and never logged.
public struct SSHCredentials: Sendable {
    public var user: String
    public var identityFile: String?
    public var passphrase: String?
    public var password: String?
    public init(user: String, identityFile: String? = nil, passphrase: String? = nil, password: String? = nil) {
        self.user = user
        self.identityFile = identityFile
        self.passphrase = passphrase
        self.password = password
    }
}

/// Attributes of a remote file as SFTP v3 reports them (mtime in whole seconds).
public struct SFTPAttributes: Sendable {
    public var size: Int64
    public var mtime: Int64
    public var permissions: UInt

    init(_ a: LIBSSH2_SFTP_ATTRIBUTES) {
        size = a.flags & UInt(LIBSSH2_SFTP_ATTR_SIZE) != 0 ? Int64(bitPattern: UInt64(a.filesize)) : -1
        mtime = a.flags & UInt(LIBSSH2_SFTP_ATTR_ACMODTIME) != 0 ? Int64(a.mtime) : 0
        permissions = a.flags & UInt(LIBSSH2_SFTP_ATTR_PERMISSIONS) != 0 ? UInt(a.permissions) : 0
    }

    public enum FileType: Sendable { case regular, directory, symlink, other }
    public var type: FileType {
        switch permissions & UInt(LIBSSH2_SFTP_S_IFMT) {
        case UInt(LIBSSH2_SFTP_S_IFREG): .regular
        case UInt(LIBSSH2_SFTP_S_IFDIR): .directory
        case UInt(LIBSSH2_SFTP_S_IFLNK): .symlink
        default: .other
        }
    }
}

/// The permission bits of a file, or nil (with errno set) when it cannot be stat'ed.
private func fileMode(_ path: String) -> mode_t? {
    var st = stat()
    return stat(path, &st) == 0 ? st.st_mode : nil
}

/// One SSH connection with one SFTP channel. libssh2 sessions are not thread-safe: a session
/// is used by one thread at a time (the caller's pool hands it out exclusively); every call
/// blocks, so call it from a dedicated thread, never from Swift's cooperative pool.
public final class SSHSession: @unchecked Sendable {  // a libssh2 session is used by one thread at a time, handed out by its pool
    public let host: String
    public let port: Int
    private let fd: Int32
    private let session: OpaquePointer
    private var sftp: OpaquePointer?
    private var closed = false
    private let ioTimeoutMs: Int

    /// `host:port`, bracketed for IPv6 literals.
    public var endpoint: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// Opens the TCP connection and runs the SSH handshake (no authentication yet), offering
    /// `algorithms` (Sluice's defaults, or a source's `ciphers` and `host_key_algorithms`).
    public init(host: String, port: Int, connectTimeoutMs: Int, ioTimeoutMs: Int,
                algorithms: SSHAlgorithmChoice = SSHAlgorithmChoice()) throws(SSHError) {
        guard libssh2Ready else { throw SSHError(.other, "libssh2 could not be initialised") }
        self.host = host
        self.port = port
        self.ioTimeoutMs = ioTimeoutMs
        fd = try Self.connectTCP(host: host, port: port, timeoutMs: connectTimeoutMs)
        guard let s = sluice_ssh2_session_init() else {
            Glibc.close(fd)
            throw SSHError(.other, "libssh2 could not create a session")
        }
        session = s
        libssh2_session_set_blocking(session, 1)
        libssh2_session_set_timeout(session, connectTimeoutMs)
        // Both directions alike (SSHAlgorithms says why this order).
        let ciphers = algorithms.offered(.cipher).joined(separator: ",")
        let macs = algorithms.offered(.mac).joined(separator: ",")
        _ = libssh2_session_method_pref(session, LIBSSH2_METHOD_CRYPT_CS, ciphers)
        _ = libssh2_session_method_pref(session, LIBSSH2_METHOD_CRYPT_SC, ciphers)
        _ = libssh2_session_method_pref(session, LIBSSH2_METHOD_MAC_CS, macs)
        _ = libssh2_session_method_pref(session, LIBSSH2_METHOD_MAC_SC, macs)
        _ = libssh2_session_method_pref(session, LIBSSH2_METHOD_HOSTKEY, algorithms.offered(.hostKey).joined(separator: ","))
        let rc = libssh2_session_handshake(session, fd)
        if rc != 0 {
            var why = lastError()
            // deinit still runs for a class whose init throws once every property is set.
            closed = true
            libssh2_session_free(session)
            Glibc.close(fd)
            if rc == LIBSSH2_ERROR_KEX_FAILURE || rc == LIBSSH2_ERROR_METHOD_NONE,
               let offer = ServerOffer.probe(host: host, port: port, timeoutMs: connectTimeoutMs),
               let mismatch = ServerOffer.mismatch(server: offer, ours: algorithms) {
                why = "no algorithm in common — \(mismatch). Set the source's ciphers or host_key_algorithms to one both sides know, "
                    + "or ask the client to enable one of Sluice's on the server"
            }
            throw SSHError(rc == LIBSSH2_ERROR_TIMEOUT ? .timeout : .handshake,
                           "SSH handshake with \(host):\(port) failed: \(why)")
        }
    }

    /// The algorithms this session agreed on with the server (for the debug log).
    public var negotiated: [SSHAlgorithms.Kind: String] {
        var out: [SSHAlgorithms.Kind: String] = [:]
        for kind in SSHAlgorithms.Kind.allCases {
            if let p = libssh2_session_methods(session, kind.method == LIBSSH2_METHOD_CRYPT_CS ? LIBSSH2_METHOD_CRYPT_SC
                                               : kind.method == LIBSSH2_METHOD_MAC_CS ? LIBSSH2_METHOD_MAC_SC : kind.method) {
                out[kind] = String(cString: p)
            }
        }
        return out
    }

    deinit { close() }

    /// Ends the session (politely if the connection still works) and closes the socket.
    public func close() {
        guard !closed else { return }
        closed = true
        libssh2_session_set_timeout(session, 2_000)
        if let sftp { libssh2_sftp_shutdown(sftp) }
        sftp = nil
        _ = sluice_ssh2_session_disconnect(session, "sluice done")
        libssh2_session_free(session)
        Glibc.close(fd)
    }

    /// Closes the socket at once without a goodbye (after a transfer error).
    public func abort() {
        guard !closed else { return }
        shutdown(fd, Int32(SHUT_RDWR))
        close()
    }

    public var hostKey: HostKey {
        var len = 0
        var type: Int32 = 0
        guard let p = libssh2_session_hostkey(session, &len, &type), len > 0 else { return HostKey(blob: []) }
        return HostKey(blob: Array(UnsafeRawBufferPointer(start: p, count: len)))
    }

    func lastError() -> String {
        var msg: UnsafeMutablePointer<CChar>?
        let code = sluice_ssh2_last_error(session, &msg)
        let text = msg.map { String(cString: $0) } ?? "unknown error"
        return code == 0 ? text : "\(text) (libssh2 error \(code))"
    }

    // MARK: Authentication

    /// Logs in with the configured methods: public key first, then password, then
    /// keyboard-interactive with the password. Returns warnings worth logging.
    public func authenticate(_ c: SSHCredentials) throws(SSHError) -> [String] {
        var warnings: [String] = []
        if let key = c.identityFile {
            guard let mode = fileMode(key) else {
                throw SSHError(.keyFile, "identity_file \(key) cannot be read: \(String(cString: strerror(errno))) — create the key or fix the path")
            }
            if mode & 0o077 != 0 {
                warnings.append("identity_file \(key) is readable by group or others (mode \(String(mode & 0o777, radix: 8))) — run chmod 600 \(key)")
            }
        }
        let offered: [String]
        if let list = sluice_ssh2_userauth_list(session, c.user) {
            offered = String(cString: list).split(separator: ",").map(String.init)
        } else if libssh2_userauth_authenticated(session) != 0 {
            return warnings  // the server let us in with "none"
        } else {
            throw SSHError(.authentication, "\(endpoint): could not ask for authentication methods: \(lastError())")
        }
        var tried: [String] = []
        if let key = c.identityFile, offered.contains("publickey") {
            let rc = sluice_ssh2_userauth_publickey_fromfile(session, c.user, key, c.passphrase ?? "")
            if rc == 0 { return warnings }
            if rc == LIBSSH2_ERROR_FILE {
                let why = c.passphrase == nil
                    ? "it is encrypted (set passphrase_file) or not an OpenSSH/PEM private key"
                    : "wrong passphrase in passphrase_file, or not an OpenSSH/PEM private key"
                throw SSHError(.keyFile, "identity_file \(key) cannot be used: \(why)")
            }
            if rc == LIBSSH2_ERROR_TIMEOUT || rc == LIBSSH2_ERROR_SOCKET_RECV || rc == LIBSSH2_ERROR_SOCKET_SEND {
                throw SSHError(.disconnected, "\(endpoint): connection lost during authentication: \(lastError())")
            }
            tried.append("publickey with \(key) (\(IdentityKey.typeName(ofFile: key).map { "an \($0) key" } ?? "key type unknown"))")
        }
        if let password = c.password {
            if offered.contains("password") {
                if sluice_ssh2_userauth_password(session, c.user, password) == 0 { return warnings }
                tried.append("password")
            }
            if offered.contains("keyboard-interactive") {
                if sluice_ssh2_userauth_kbdint(session, c.user, password) == 0 { return warnings }
                tried.append("keyboard-interactive")
            }
        }
        let triedText = tried.isEmpty
            ? "none of them is configured (set identity_file and/or password_file)"
            : "tried \(tried.joined(separator: ", "))"
        throw SSHError(.authentication, "authentication refused for user '\(c.user)' on \(endpoint): the server offers \(offered.joined(separator: ", ")); \(triedText)")
    }

    /// Opens the SFTP channel; from here on every call uses the I/O timeout.
    public func startSFTP() throws(SSHError) {
        guard let s = libssh2_sftp_init(session) else {
            throw SSHError(.other, "\(endpoint): the SFTP subsystem could not be started: \(lastError())")
        }
        sftp = s
        libssh2_session_set_timeout(session, ioTimeoutMs)
    }

    // MARK: SFTP

    private func sftpError(_ what: String, _ path: [UInt8]) -> SSHError {
        let errno = libssh2_session_last_errno(session)
        let shown = RemoteName.display(path)
        if errno == LIBSSH2_ERROR_SFTP_PROTOCOL, let sftp {
            let status = libssh2_sftp_last_error(sftp)
            return SSHError(.sftp(status: status), "\(what) \(shown) on \(endpoint): \(Self.statusText(status))")
        }
        if errno == LIBSSH2_ERROR_TIMEOUT {
            return SSHError(.timeout, "\(what) \(shown) on \(endpoint): no answer within io_timeout")
        }
        if errno == LIBSSH2_ERROR_SOCKET_RECV || errno == LIBSSH2_ERROR_SOCKET_SEND || errno == LIBSSH2_ERROR_SOCKET_DISCONNECT
            || errno == LIBSSH2_ERROR_CHANNEL_CLOSED || errno == LIBSSH2_ERROR_CHANNEL_EOF_SENT {
            return SSHError(.disconnected, "\(what) \(shown) on \(endpoint): connection lost (\(lastError()))")
        }
        return SSHError(.other, "\(what) \(shown) on \(endpoint): \(lastError())")
    }

    static func statusText(_ s: UInt) -> String {
        switch Int32(s) {
        case Int32(LIBSSH2_FX_NO_SUCH_FILE), Int32(LIBSSH2_FX_NO_SUCH_PATH): "no such file or folder"
        case Int32(LIBSSH2_FX_PERMISSION_DENIED): "permission denied"
        case Int32(LIBSSH2_FX_FAILURE): "the server reported a failure"
        case Int32(LIBSSH2_FX_OP_UNSUPPORTED): "operation not supported by the server"
        case Int32(LIBSSH2_FX_FILE_ALREADY_EXISTS): "already exists"
        case Int32(LIBSSH2_FX_NO_SPACE_ON_FILESYSTEM): "no space left on the server"
        case Int32(LIBSSH2_FX_NOT_A_DIRECTORY): "not a folder"
        default: "SFTP status \(s)"
        }
    }

    private func requireSFTP() throws(SSHError) -> OpaquePointer {
        guard let sftp, !closed else { throw SSHError(.disconnected, "\(endpoint): the SFTP channel is not open") }
        return sftp
    }

    public func stat(_ path: [UInt8], followLinks: Bool = true) throws(SSHError) -> SFTPAttributes {
        let s = try requireSFTP()
        var a = LIBSSH2_SFTP_ATTRIBUTES()
        let rc = path.withCString { p in
            followLinks ? sluice_sftp_stat(s, p, UInt32(path.count), &a) : sluice_sftp_lstat(s, p, UInt32(path.count), &a)
        }
        if rc != 0 { throw sftpError("stat", path) }
        return SFTPAttributes(a)
    }

    /// The server's canonical form of `path` (symlinks resolved).
    public func realpath(_ path: [UInt8]) throws(SSHError) -> [UInt8] {
        let s = try requireSFTP()
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = path.withCString { p in sluice_sftp_realpath(s, p, UInt32(path.count), &buffer, UInt32(buffer.count)) }
        if n < 0 { throw sftpError("resolve", path) }
        return buffer[0..<Int(n)].map { UInt8(bitPattern: $0) }
    }

    public func openDirectory(_ path: [UInt8]) throws(SSHError) -> SFTPDirectory {
        let s = try requireSFTP()
        guard let h = path.withCString({ sluice_sftp_opendir(s, $0, UInt32(path.count)) }) else {
            throw sftpError("cannot open folder", path)
        }
        return SFTPDirectory(session: self, handle: h, path: path)
    }

    public func openFile(_ path: [UInt8]) throws(SSHError) -> SFTPFile {
        let s = try requireSFTP()
        guard let h = path.withCString({ sluice_sftp_open_read(s, $0, UInt32(path.count)) }) else {
            throw sftpError("cannot open", path)
        }
        return SFTPFile(session: self, handle: h, path: path)
    }

    public func unlink(_ path: [UInt8]) throws(SSHError) {
        let s = try requireSFTP()
        if path.withCString({ sluice_sftp_unlink(s, $0, UInt32(path.count)) }) != 0 { throw sftpError("cannot delete", path) }
    }

    /// Creates a folder; an existing folder is fine.
    public func mkdir(_ path: [UInt8]) throws(SSHError) {
        let s = try requireSFTP()
        if path.withCString({ sluice_sftp_mkdir(s, $0, UInt32(path.count), 0o750) }) != 0 {
            let err = sftpError("cannot create folder", path)
            if (try? self.stat(path).type) == .directory { return }
            throw err
        }
    }

    /// Renames without replacing an existing target (OpenSSH's server links, then unlinks).
    public func rename(_ from: [UInt8], to: [UInt8]) throws(SSHError) {
        let s = try requireSFTP()
        let rc = from.withCString { f in to.withCString { t in sluice_sftp_rename_noreplace(s, f, UInt32(from.count), t, UInt32(to.count)) } }
        if rc != 0 { throw sftpError("cannot move", from) }
    }

    fileprivate func readdir(_ h: OpaquePointer, into buffer: inout [CChar], attrs: inout LIBSSH2_SFTP_ATTRIBUTES) -> Int32 {
        sluice_sftp_readdir(h, &buffer, buffer.count, &attrs)
    }

    fileprivate func error(_ what: String, _ path: [UInt8]) -> SSHError { sftpError(what, path) }

    // MARK: TCP

    static func connectTCP(host: String, port: Int, timeoutMs: Int) throws(SSHError) -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0, let first = list else {
            throw SSHError(.connect, "cannot resolve host \(host): \(String(cString: gai_strerror(rc))) — check the source's `host` in agent.conf")
        }
        defer { freeaddrinfo(list) }
        var lastError = "no address"
        var ai: UnsafeMutablePointer<addrinfo>? = first
        while let a = ai {
            ai = a.pointee.ai_next
            let fd = socket(a.pointee.ai_family, a.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), a.pointee.ai_protocol)
            if fd < 0 { lastError = String(cString: strerror(errno)); continue }
            let flags = fcntl(fd, F_GETFL)
            _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
            var r = Glibc.connect(fd, a.pointee.ai_addr, a.pointee.ai_addrlen)
            if r != 0 && errno == EINPROGRESS {
                var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                var n: Int32
                repeat { n = poll(&p, 1, Int32(timeoutMs)) } while n < 0 && errno == EINTR
                if n == 0 {
                    // Try the next address (a host with a broken IPv6 route may answer on IPv4).
                    Glibc.close(fd)
                    lastError = "no answer within connect_timeout (\(timeoutMs) ms)"
                    continue
                }
                var soError: Int32 = 0
                var len = socklen_t(MemoryLayout<Int32>.size)
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &len)
                r = soError == 0 ? 0 : -1
                if soError != 0 { errno = soError }
            }
            if r != 0 {
                lastError = String(cString: strerror(errno))
                Glibc.close(fd)
                continue
            }
            _ = fcntl(fd, F_SETFL, flags)
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            return fd
        }
        throw SSHError(.connect, "cannot connect to \(host):\(port): \(lastError)")
    }
}

/// An open SFTP handle (file or folder) of one session, closed once.
public class SFTPHandle {
    let session: SSHSession
    let handle: OpaquePointer
    let path: [UInt8]
    private var open = true

    init(session: SSHSession, handle: OpaquePointer, path: [UInt8]) {
        self.session = session
        self.handle = handle
        self.path = path
    }

    public func close() {
        guard open else { return }
        open = false
        _ = sluice_sftp_close(handle)
    }

    /// Lets go of the handle without telling the server (its connection is lost, or its
    /// session is being dropped).
    public func forget() { open = false }

    deinit { close() }
}

/// An open remote folder, read one entry at a time (libssh2 asks for one READDIR batch at a
/// time, so a huge folder never sits in memory).
public final class SFTPDirectory: SFTPHandle {
    private var buffer = [CChar](repeating: 0, count: 4096)

    /// The next entry, nil at the end. Names are raw bytes, exactly as the server sent them.
    public func next() throws(SSHError) -> (name: [UInt8], attributes: SFTPAttributes)? {
        var attrs = LIBSSH2_SFTP_ATTRIBUTES()
        let n = session.readdir(handle, into: &buffer, attrs: &attrs)
        if n == 0 { return nil }
        if n < 0 { throw session.error("cannot read folder", path) }
        let name = buffer[0..<Int(n)].map { UInt8(bitPattern: $0) }
        return (name, SFTPAttributes(attrs))
    }
}

/// An open remote file.
public final class SFTPFile: SFTPHandle {
    /// Reads up to `count` bytes. libssh2 keeps about 4 × `count` (at most ~8 MiB) requested
    /// ahead, so the size of `count` decides the transfer's pipelining.
    public func read(into p: UnsafeMutableRawPointer, count: Int) throws(SSHError) -> Int {
        let n = libssh2_sftp_read(handle, p.assumingMemoryBound(to: CChar.self), count)
        if n < 0 { throw session.error("reading", path) }
        return n
    }

    public func seek(to offset: Int64) {
        libssh2_sftp_seek64(handle, UInt64(offset))
    }

    public func attributes() throws(SSHError) -> SFTPAttributes {
        var a = LIBSSH2_SFTP_ATTRIBUTES()
        if sluice_sftp_fstat(handle, &a) != 0 { throw session.error("stat", path) }
        return SFTPAttributes(a)
    }
}

/// Remote names are bytes; shown with `\xHH` for what is not printable UTF-8.
public enum RemoteName {
    public static func display(_ bytes: [UInt8]) -> String {
        if let s = String(validating: bytes, as: UTF8.self), !s.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            return s
        }
        var out = ""
        for b in bytes {
            if b >= 0x20 && b < 0x7F && b != UInt8(ascii: "\\") { out.unicodeScalars.append(Unicode.Scalar(b)) } else { out += String(format: "\\x%02X", b) }
        }
        return out
    }
}

extension Array where Element == UInt8 {
    /// Calls `body` with a NUL-terminated copy.
    func withCString<R>(_ body: (UnsafePointer<CChar>) -> R) -> R {
        var z = self
        z.append(0)
        return z.withUnsafeBufferPointer { b in b.withMemoryRebound(to: CChar.self) { body($0.baseAddress!) } }
    }
}

/// The key type of an identity file, for messages: from its `.pub` file beside it, else from
/// the private key itself (the OpenSSH format keeps the public key in the clear even when the
/// private part is encrypted; PEM names RSA and EC keys in its header).
enum IdentityKey {
    static func typeName(ofFile path: String) -> String? {
        if let pub = try? String(contentsOfFile: path + ".pub", encoding: .utf8),
           let first = pub.split(separator: " ").first, first.hasPrefix("ssh-") || first.hasPrefix("ecdsa-") {
            return String(first)
        }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        if text.contains("BEGIN RSA PRIVATE KEY") { return "ssh-rsa" }
        if text.contains("BEGIN EC PRIVATE KEY") { return "ecdsa" }
        guard text.contains("BEGIN OPENSSH PRIVATE KEY") else { return nil }
        let body = text.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
        guard let data = Data(base64Encoded: body) else { return nil }
        return typeName(ofOpenSSHKey: Array(data))
    }

    /// `openssh-key-v1\0`, then cipher name, KDF name, KDF options, the number of keys and the
    /// first public key, whose first string is its type.
    static func typeName(ofOpenSSHKey b: [UInt8]) -> String? {
        let magic = Array("openssh-key-v1".utf8) + [0]
        guard b.starts(with: magic) else { return nil }
        var at = magic.count
        func string() -> ArraySlice<UInt8>? {
            guard at + 4 <= b.count else { return nil }
            let n = Int(b[at]) << 24 | Int(b[at + 1]) << 16 | Int(b[at + 2]) << 8 | Int(b[at + 3])
            guard n >= 0, at + 4 + n <= b.count else { return nil }
            defer { at += 4 + n }
            return b[(at + 4)..<(at + 4 + n)]
        }
        for _ in 0..<3 { guard string() != nil else { return nil } }
        at += 4  // the number of keys
        guard let publicKey = string() else { return nil }
        return HostKey.typeName(of: Array(publicKey))
    }
}
