import Foundation
import Logging
import SluiceLake
import SluiceSFTP
import Synchronization
import SluiceSupport
import SluiceManifest
import SluiceIngest
import SluiceConfig
#if canImport(Glibc)
import Glibc
#endif

/// A client's SFTP server, read through libssh2.
///
/// Symlink policy: a symlink on the server is listed (under the link's own path, with its
/// target's size and mtime) only when the server resolves it to a regular file below
/// `remote_dir`; the file is then read through that resolved path. Links that lead outside,
/// links to folders and dangling links are reported as skipped.
public struct SFTPSource: Source {
    public let client: String
    public let name: String
    public let config: SFTPSourceConfig
    package let logger: Logger
    /// Where transfers of 64 MiB or more that a dropped connection cut off are kept for the
    /// next pass (nil: not kept).
    package let partials: PartialStore?

    /// `sftp://host:port`, the file's path on the server.
    public func lineageDataset(_ path: RelativePath) -> (namespace: String, name: String) {
        ("sftp://\(config.host):\(config.port)", (config.remoteDir.hasSuffix("/") ? config.remoteDir : config.remoteDir + "/") + path.display)
    }

    public init(client: String, name: String, config: SFTPSourceConfig, logger: Logger, stateDir: String? = nil) {
        self.client = client
        self.name = name
        self.config = config
        self.logger = logger.about(client: client, source: name)
        partials = stateDir.map { PartialStore(stateDir: $0, client: client, source: name) }
    }

    /// Partials untouched this long are removed (their file was never fetched whole since).
    package static let partialLifetime: Int64 = 7 * 86_400_000_000_000

    public var minAgeNanoseconds: Int64 { config.minAgeNanoseconds }
    public var afterIngest: AfterIngest { config.afterIngest }

    /// `client/source user@host:port:remote_dir`, the start of every message about this source.
    package var location: String {
        let endpoint = config.host.contains(":") ? "[\(config.host)]:\(config.port)" : "\(config.host):\(config.port)"
        return "\(client)/\(name) \(config.user)@\(endpoint):\(config.remoteDir)"
    }

    /// Reads a secret file: the first line, without its line ending. Never logged.
    package static func readSecret(_ path: String, key: String) throws(SourceError) -> String {
        guard let line = secretFirstLine(path) else {
            throw SourceError("\(key) \(path) cannot be read: \(String(cString: strerror(errno))) — create it (mode 600) or fix the path")
        }
        return line
    }

    package func credentials() throws(SourceError) -> SSHCredentials {
        SSHCredentials(
            user: config.user,
            identityFile: config.identityFile,
            passphrase: try config.passphraseFile.map { path throws(SourceError) in try Self.readSecret(path, key: "passphrase_file") },
            password: try config.passwordFile.map { path throws(SourceError) in try Self.readSecret(path, key: "password_file") })
    }

    public func beginPass(moveTargets: [String]) throws(SourceError) -> any SourcePass {
        let pool = SessionPool(source: self, credentials: try credentials())
        let session = try pool.acquire()
        let root: [UInt8]
        let realRoot: [UInt8]
        do {
            root = Array(config.remoteDir.utf8)
            let attrs = try session.stat(root)
            guard attrs.type == .directory else {
                throw SourceError("\(location): remote_dir is not a folder — fix clients.\(client).sources.\(name).remote_dir")
            }
            realRoot = try session.realpath(root)
            pool.release(session)
        } catch let e as SSHError {
            pool.discard(session)
            pool.closeAll()
            if e.isNoSuchFile {
                throw SourceError("\(location): remote_dir does not exist on the server — fix clients.\(client).sources.\(name).remote_dir")
            }
            throw SourceError("\(location): \(e.message)")
        } catch let e as SourceError {
            pool.closeAll()
            throw e
        } catch {
            pool.closeAll()
            throw SourceError("\(location): \(error)")
        }
        // Relative targets are below remote_dir; an absolute one is when it lies below the
        // path the server resolves remote_dir to, or below remote_dir as written.
        let moved = moveTargets.compactMap { target -> RelativePath? in
            guard target.hasPrefix("/") else { return RelativePath(target) }
            return RelativePath(path: Array(target.utf8), below: realRoot) ?? RelativePath(path: Array(target.utf8), below: root)
        }
        partials?.prune(olderThan: Self.partialLifetime)
        return SFTPPass(source: self, pool: pool, root: root, realRoot: realRoot, filter: config.filter.excluding(folders: moved))
    }

    /// Connects, checks the host key against `known_hosts` and logs in.
    package func connect() throws(SourceError) -> SSHSession {
        let session: SSHSession
        do {
            session = try SSHSession(host: config.host, port: config.port,
                                     connectTimeoutMs: Int(config.connectTimeoutNanoseconds / 1_000_000),
                                     ioTimeoutMs: Int(config.ioTimeoutNanoseconds / 1_000_000), algorithms: config.algorithms)
        } catch {
            throw SourceError("\(location): \(error.message)")
        }
        do {
            try verifyHostKey(session)
        } catch {
            session.close()
            throw error
        }
        if logger.logLevel <= .debug {
            let n = session.negotiated
            logger.debug("SSH session", metadata: [
                "key_exchange": "\(n[.keyExchange] ?? "")", "host_key": "\(n[.hostKey] ?? "")",
                "cipher": "\(n[.cipher] ?? "")", "mac": "\(n[.mac] ?? "")",
            ])
        }
        return session
    }

    package func verifyHostKey(_ session: SSHSession) throws(SourceError) {
        let key = session.hostKey
        let file = KnownHosts(path: config.knownHosts)
        let verdict: KnownHosts.Verdict
        do {
            verdict = try file.verdict(host: config.host, port: config.port, key: key)
        } catch {
            throw SourceError("\(location): \(error.message)")
        }
        switch verdict {
        case .trusted:
            return
        case .unknown(let others):
            let also = others.isEmpty ? "" : " (known_hosts has only other key types for it: \(others.joined(separator: ", ")))"
            throw SourceError("\(location): host key is not trusted yet\(also): \(key.type) \(key.fingerprint). Nothing was downloaded. "
                + "Check the fingerprint with the client, then run `sluice trust \(client) --source \(name)` (known_hosts: \(config.knownHosts))")
        case .changed(let known, let lines):
            throw SourceError("\(location): WARNING: \(SourceError.hostKeyChanged) — possible man-in-the-middle attack. "
                + "The server presents \(key.type) \(key.fingerprint), but \(config.knownHosts) line \(lines.map(String.init).joined(separator: ", ")) "
                + "has \(known.joined(separator: ", ")). Nothing was ingested and nothing on the server was touched. "
                + "If the client confirms the new key, run `sluice trust \(client) --source \(name) --replace`")
        case .revoked(let line):
            throw SourceError("\(location): the host key \(key.type) \(key.fingerprint) is marked @revoked in \(config.knownHosts) line \(line); refusing to connect")
        }
    }
}

/// Up to `max_connections` logged-in sessions, each used by one thread at a time. New
/// connections are made one at a time, so the server never sees more than one unauthenticated
/// connection from this source (OpenSSH's MaxStartups); each connection opens one channel
/// (well under MaxSessions).
package final class SessionPool: @unchecked Sendable {  // state guarded by `condition`: takers wait on it
    package let source: SFTPSource
    package let credentials: SSHCredentials
    private let condition = NSCondition()
    private let connecting = NSLock()
    private var idle: [SSHSession] = []
    private var total = 0
    private var loggedWarnings = false
    /// The first failure to connect or log in. From then on no new connection is tried in this
    /// pass: a blackholed host or a revoked key fails the remaining files at once instead of
    /// costing connect_timeout (or a failed login) each.
    private var connectFailure: SourceError?

    package init(source: SFTPSource, credentials: SSHCredentials) {
        self.source = source
        self.credentials = credentials
    }

    package var max: Int { source.config.maxConnections }

    /// A session for this thread alone: an idle one, a new one while under the limit, or the
    /// next one released.
    package func acquire() throws(SourceError) -> SSHSession {
        try take(wait: true)!
    }

    /// An extra session without waiting, or nil when none is idle and the limit is reached
    /// (or connecting fails).
    package func tryAcquire() -> SSHSession? {
        try? take(wait: false)
    }

    private func take(wait: Bool) throws(SourceError) -> SSHSession? {
        condition.lock()
        while wait && idle.isEmpty && (total >= max || (connectFailure != nil && total > 0)) { condition.wait() }
        if let s = idle.popLast() {
            condition.unlock()
            return s
        }
        if let connectFailure {
            condition.unlock()
            if wait { throw connectFailure }
            return nil
        }
        guard total < max else {
            condition.unlock()
            return nil
        }
        total += 1
        condition.unlock()
        do {
            return try open()
        } catch {
            condition.lock()
            total -= 1
            if connectFailure == nil { connectFailure = error }
            condition.broadcast()
            condition.unlock()
            throw error
        }
    }

    private func open() throws(SourceError) -> SSHSession {
        connecting.lock()
        defer { connecting.unlock() }
        let session = try source.connect()
        do {
            let warnings = try session.authenticate(credentials)
            try session.startSFTP()
            if !loggedWarnings {
                loggedWarnings = true
                for w in warnings {
                    source.logger.warning("\(w)")
                }
            }
        } catch {
            session.close()
            throw SourceError("\(source.location): \(error.message)")
        }
        return session
    }

    package func release(_ s: SSHSession) {
        condition.lock()
        idle.append(s)
        condition.signal()
        condition.unlock()
    }

    /// Drops a session whose connection failed; the next acquire connects anew.
    package func discard(_ s: SSHSession) {
        s.abort()
        condition.lock()
        total -= 1
        condition.broadcast()
        condition.unlock()
    }

    /// Gives a session back after `error`: reused only after a plain status answer from the
    /// server (no such file, permission denied, ...), dropped after anything that may have left
    /// the connection in an unknown state.
    package func giveBack(_ s: SSHSession, after error: SSHError) {
        if case .sftp = error.kind { release(s) } else { discard(s) }
    }

    package func closeAll() {
        condition.lock()
        let sessions = idle
        idle.removeAll()
        total -= sessions.count
        condition.unlock()
        for s in sessions { s.close() }
    }
}

/// `type = "sftp"`: a folder on a client's SFTP server, polled.
public struct SFTPSourceConfig: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var user: String
    /// Absolute paths; the secrets themselves are read only when connecting.
    public var identityFile: String?
    public var passphraseFile: String?
    public var passwordFile: String?
    public var knownHosts: String
    /// The folder on the server, as configured (absolute, or relative to the login folder).
    public var remoteDir: String
    public var filter: PathFilter
    public var recursive: Bool
    public var minAgeNanoseconds: Int64
    public var afterIngest: AfterIngest
    public var maxConnections: Int
    public var connectTimeoutNanoseconds: Int64
    public var ioTimeoutNanoseconds: Int64
    public var pollIntervalNanoseconds: Int64
    /// `ciphers` and `host_key_algorithms`, when the server needs something particular.
    public var algorithms = SSHAlgorithmChoice()

    package init(host: String, port: Int, user: String, identityFile: String? = nil, passphraseFile: String? = nil, passwordFile: String? = nil, knownHosts: String, remoteDir: String, filter: PathFilter, recursive: Bool, minAgeNanoseconds: Int64, afterIngest: AfterIngest, maxConnections: Int, connectTimeoutNanoseconds: Int64, ioTimeoutNanoseconds: Int64, pollIntervalNanoseconds: Int64) {
        self.host = host
        self.port = port
        self.user = user
        self.identityFile = identityFile
        self.passphraseFile = passphraseFile
        self.passwordFile = passwordFile
        self.knownHosts = knownHosts
        self.remoteDir = remoteDir
        self.filter = filter
        self.recursive = recursive
        self.minAgeNanoseconds = minAgeNanoseconds
        self.afterIngest = afterIngest
        self.maxConnections = maxConnections
        self.connectTimeoutNanoseconds = connectTimeoutNanoseconds
        self.ioTimeoutNanoseconds = ioTimeoutNanoseconds
        self.pollIntervalNanoseconds = pollIntervalNanoseconds
    }
}

extension SFTPSourceConfig: SourceSettings {
    package static let typeName = "sftp"

    package var drive: SourceDrive {
        .poll(server: "sftp \(host.lowercased()):\(port)", intervalNanoseconds: pollIntervalNanoseconds)
    }

    package var summary: String {
        let auth = [identityFile.map { "key \($0)" }, passwordFile.map { "password from \($0)" }].compactMap { $0 }.joined(separator: " + ")
        return "sftp \(user)@\(host):\(port) \(remoteDir), \(auth), known_hosts \(knownHosts), "
            + "max_connections \(maxConnections), min_age \(minAgeNanoseconds / 1_000_000) ms, after_ingest \(afterIngest)"
    }

    /// An identity, passphrase or password file that cannot be read.
    package func secretProblems(key: String) -> [String] {
        var problems: [String] = []
        for (name, file) in [("identity_file", identityFile), ("passphrase_file", passphraseFile), ("password_file", passwordFile)] {
            guard let file, access(file, R_OK) != 0 else { continue }
            problems.append("\(key).\(name) \(file) cannot be read: \(String(cString: strerror(errno))) — create it (mode 600) or fix the path")
        }
        return problems
    }

    package func makeSource(_ context: SourceContext) -> (any Source)? {
        SFTPSource(client: context.client, name: context.name, config: self, logger: context.logger, stateDir: context.stateDir)
    }
}

/// Reads `type = "sftp"` tables.
package struct SFTPSourceType: SourceType {
    package let name = SFTPSourceConfig.typeName
    package init() {}

    package func parse(_ t: TOMLTable, path: String, reader: TableReader, stateDir: String) throws(ConfigError) -> any SourceSettings {
        try reader.checkKeys(t, path: path, allowed: [
            "type", "host", "port", "user", "identity_file", "passphrase_file", "password_file", "known_hosts",
            "remote_dir", "include", "exclude", "recursive", "min_age", "after_ingest", "max_connections",
            "connect_timeout", "io_timeout", "poll_interval", "ciphers", "host_key_algorithms",
        ])
        let host = try reader.string(t, "host", path, required: true)!
        guard !host.isEmpty, !host.contains(where: { $0.isWhitespace || $0 == "/" || $0 == "@" }) else {
            throw reader.fail("\(path).host", "expected a host name or IP address, found \"\(host)\"")
        }
        let port = try reader.integer(t, "port", path, range: 1...65535) ?? 22
        let user = try reader.string(t, "user", path, required: true)!
        guard !user.isEmpty else { throw reader.fail("\(path).user", "must not be empty") }
        let identity = try reader.string(t, "identity_file", path, required: false).map(reader.resolve)
        let passphrase = try reader.string(t, "passphrase_file", path, required: false).map(reader.resolve)
        let password = try reader.string(t, "password_file", path, required: false).map(reader.resolve)
        if identity == nil && password == nil {
            throw reader.fail(path, "an sftp source needs identity_file, password_file or both (secrets are read from files, never from agent.conf)")
        }
        if passphrase != nil && identity == nil {
            throw reader.fail("\(path).passphrase_file", "passphrase_file needs identity_file")
        }
        let knownHosts = try reader.string(t, "known_hosts", path, required: false).map(reader.resolve) ?? "\(stateDir)/known_hosts"
        var remoteDir = try reader.string(t, "remote_dir", path, required: true)!
        guard !remoteDir.isEmpty, !remoteDir.utf8.contains(0) else {
            throw reader.fail("\(path).remote_dir", "expected a folder on the server, such as \"/outbox\"")
        }
        while remoteDir.count > 1 && remoteDir.hasSuffix("/") { remoteDir.removeLast() }
        let common = try reader.commonKeys(t, path)
        let maxConnections = try reader.integer(t, "max_connections", path, range: 1...10) ?? 2
        let connectTimeout = try reader.duration(t, "connect_timeout", path) ?? 15_000_000_000
        let ioTimeout = try reader.duration(t, "io_timeout", path) ?? 60_000_000_000
        let poll = try reader.duration(t, "poll_interval", path) ?? 300_000_000_000
        for (key, v) in [("connect_timeout", connectTimeout), ("io_timeout", ioTimeout), ("poll_interval", poll)] where v <= 0 {
            throw reader.fail("\(path).\(key)", "must be longer than 0")
        }
        var algorithms = SSHAlgorithmChoice()
        for (key, kind) in [("ciphers", SSHAlgorithms.Kind.cipher), ("host_key_algorithms", .hostKey)] {
            guard let names = try reader.stringArray(t, key, path) else { continue }
            guard !names.isEmpty else { throw reader.fail("\(path).\(key)", "an empty list allows nothing: leave \(key) out for Sluice's defaults") }
            let unknown = SSHAlgorithmChoice.unsupported(names, kind)
            guard unknown.isEmpty else {
                throw reader.fail("\(path).\(key)", "\(unknown.map { "\"\($0)\"" }.joined(separator: ", ")) \(unknown.count == 1 ? "is" : "are") not supported: "
                    + "expected some of \(SSHAlgorithms.supported(kind).filter { !$0.hasPrefix("none") }.joined(separator: ", "))")
            }
            if kind == .cipher { algorithms.ciphers = names } else { algorithms.hostKeys = names }
        }
        var sftp = SFTPSourceConfig(
            host: host, port: port, user: user, identityFile: identity, passphraseFile: passphrase, passwordFile: password,
            knownHosts: knownHosts, remoteDir: remoteDir, filter: common.filter, recursive: common.recursive,
            minAgeNanoseconds: common.minAge, afterIngest: common.afterIngest, maxConnections: maxConnections,
            connectTimeoutNanoseconds: connectTimeout, ioTimeoutNanoseconds: ioTimeout, pollIntervalNanoseconds: poll)
        sftp.algorithms = algorithms
        return sftp
    }
}
