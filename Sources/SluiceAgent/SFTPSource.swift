import Foundation
import Logging
import SluiceLake
import SluiceSFTP
import Synchronization
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
    let logger: Logger
    /// Where transfers of 64 MiB or more that a dropped connection cut off are kept for the
    /// next pass (nil: not kept).
    let partials: PartialStore?

    public init(client: String, name: String, config: SFTPSourceConfig, logger: Logger, stateDir: String? = nil) {
        self.client = client
        self.name = name
        self.config = config
        self.logger = logger
        partials = stateDir.map { PartialStore(stateDir: $0, client: client, source: name) }
    }

    /// Partials untouched this long are removed (their file was never fetched whole since).
    static let partialLifetime: Int64 = 7 * 86_400_000_000_000

    public var minAgeNanoseconds: Int64 { config.minAgeNanoseconds }
    public var afterIngest: AfterIngest { config.afterIngest }

    /// `client/source user@host:port:remote_dir`, the start of every message about this source.
    var location: String {
        let endpoint = config.host.contains(":") ? "[\(config.host)]:\(config.port)" : "\(config.host):\(config.port)"
        return "\(client)/\(name) \(config.user)@\(endpoint):\(config.remoteDir)"
    }

    /// Reads a secret file: the first line, without its line ending. Never logged.
    static func readSecret(_ path: String, key: String) throws(SourceError) -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SourceError("\(key) \(path) cannot be read: \(String(cString: strerror(errno))) — create it (mode 600) or fix the path")
        }
        let text = String(decoding: data, as: UTF8.self)
        return String(text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
            .trimmingCharacters(in: CharacterSet(charactersIn: "\r"))
    }

    func credentials() throws(SourceError) -> SSHCredentials {
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
    func connect() throws(SourceError) -> SSHSession {
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
                "client": "\(client)", "source": "\(name)", "key_exchange": "\(n[.keyExchange] ?? "")", "host_key": "\(n[.hostKey] ?? "")",
                "cipher": "\(n[.cipher] ?? "")", "mac": "\(n[.mac] ?? "")",
            ])
        }
        return session
    }

    func verifyHostKey(_ session: SSHSession) throws(SourceError) {
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
            throw SourceError("\(location): WARNING: the host key has CHANGED — possible man-in-the-middle attack. "
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
final class SessionPool: @unchecked Sendable {
    let source: SFTPSource
    let credentials: SSHCredentials
    private let condition = NSCondition()
    private let connecting = NSLock()
    private var idle: [SSHSession] = []
    private var total = 0
    private var loggedWarnings = false
    /// The first failure to connect or log in. From then on no new connection is tried in this
    /// pass: a blackholed host or a revoked key fails the remaining files at once instead of
    /// costing connect_timeout (or a failed login) each.
    private var connectFailure: SourceError?

    init(source: SFTPSource, credentials: SSHCredentials) {
        self.source = source
        self.credentials = credentials
    }

    var max: Int { source.config.maxConnections }

    /// A session for this thread alone: an idle one, a new one while under the limit, or the
    /// next one released.
    func acquire() throws(SourceError) -> SSHSession {
        try take(wait: true)!
    }

    /// An extra session without waiting, or nil when none is idle and the limit is reached
    /// (or connecting fails).
    func tryAcquire() -> SSHSession? {
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
                    source.logger.warning("\(w)", metadata: ["client": "\(source.client)", "source": "\(source.name)"])
                }
            }
        } catch {
            session.close()
            throw SourceError("\(source.location): \(error.message)")
        }
        return session
    }

    func release(_ s: SSHSession) {
        condition.lock()
        idle.append(s)
        condition.signal()
        condition.unlock()
    }

    /// Drops a session whose connection failed; the next acquire connects anew.
    func discard(_ s: SSHSession) {
        s.abort()
        condition.lock()
        total -= 1
        condition.broadcast()
        condition.unlock()
    }

    /// Gives a session back after `error`: reused only after a plain status answer from the
    /// server (no such file, permission denied, ...), dropped after anything that may have left
    /// the connection in an unknown state.
    func giveBack(_ s: SSHSession, after error: SSHError) {
        if case .sftp = error.kind { release(s) } else { discard(s) }
    }

    func closeAll() {
        condition.lock()
        let sessions = idle
        idle.removeAll()
        total -= sessions.count
        condition.unlock()
        for s in sessions { s.close() }
    }
}

final class SFTPPass: SourcePass, @unchecked Sendable {
    let source: SFTPSource
    let pool: SessionPool
    /// remote_dir as configured, and as the server resolves it (for the symlink check).
    let root: [UInt8]
    let realRoot: [UInt8]
    /// `include`/`exclude`, also excluding every move target below remote_dir.
    let filter: PathFilter
    var partials: PartialStore? { source.partials }
    /// Symlinked candidates, read through the target the listing checked.
    private let lock = NSLock()
    private var linkTargets: [[UInt8]: [UInt8]] = [:]

    init(source: SFTPSource, pool: SessionPool, root: [UInt8], realRoot: [UInt8], filter: PathFilter) {
        self.source = source
        self.filter = filter
        self.pool = pool
        self.root = root
        self.realRoot = realRoot
    }

    func end() { pool.closeAll() }

    func remotePath(_ rel: RelativePath) -> [UInt8] {
        if rel.bytes.isEmpty { return root }
        return root == [UInt8(ascii: "/")] ? root + rel.bytes : root + [UInt8(ascii: "/")] + rel.bytes
    }

    func fail(_ e: SSHError) -> SourceError {
        SourceError("\(source.location): \(e.message)")
    }

    /// Runs `body` with a session of its own, dropping the session if its connection broke.
    func withSession<R>(_ body: (SSHSession) throws(SSHError) -> R) throws(SourceError) -> R {
        let s = try pool.acquire()
        do {
            let r = try body(s)
            pool.release(s)
            return r
        } catch {
            pool.giveBack(s, after: error)
            throw fail(error)
        }
    }

    func list(issue: (ListingIssue) -> Void, candidate: (Candidate) -> Void) throws(SourceError) {
        let config = source.config
        try withSession { (s) throws(SSHError) in
            var pending: [RelativePath] = [RelativePath(bytes: [])]
            while let dir = pending.popLast() {
                let handle: SFTPDirectory
                do throws(SSHError) {
                    if !dir.bytes.isEmpty {
                        // The listing's type comes from the server; OpenSSH's is lstat's, but a
                        // server that follows links would make a symlinked folder look like a
                        // folder. Check it before descending, and bound the depth.
                        guard try s.stat(remotePath(dir), followLinks: false).type == .directory, dir.components.count <= 128 else {
                            issue(ListingIssue(path: dir, kind: .skipped, message: "symlinked folder (or deeper than 128 levels); not followed"))
                            continue
                        }
                    }
                    handle = try s.openDirectory(remotePath(dir))
                } catch {
                    if error.isConnectionLoss || dir.bytes.isEmpty { throw error }
                    issue(ListingIssue(path: dir, kind: .failed, message: "cannot read folder: \(error.message)"))
                    continue
                }
                var subdirs: [RelativePath] = []
                while true {
                    let next: (name: [UInt8], attributes: SFTPAttributes)?
                    do throws(SSHError) {
                        next = try handle.next()
                    } catch {
                        if error.isConnectionLoss {
                            handle.forget()
                            throw error
                        }
                        handle.close()
                        if dir.bytes.isEmpty { throw error }
                        issue(ListingIssue(path: dir, kind: .failed, message: "reading the folder failed: \(error.message)"))
                        break
                    }
                    guard let entry = next else { break }
                    let name = entry.name
                    if name == [0x2E] || name == [0x2E, 0x2E] { continue }
                    if name.isEmpty || name.contains(0x2F) || name.contains(0) {
                        issue(ListingIssue(path: dir.appending(Array("<invalid name>".utf8)), kind: .failed,
                                           message: "the server sent an invalid file name \(RemoteName.display(name)) in \(RemoteName.display(remotePath(dir))); ignored"))
                        continue
                    }
                    let rel = dir.appending(name)
                    let a = entry.attributes
                    switch a.type {
                    case .directory:
                        if config.recursive && filter.descends(into: rel.bytes) { subdirs.append(rel) }
                    case .regular:
                        if filter.accepts(file: rel.bytes) {
                            candidate(Candidate(path: rel, size: a.size, mtimeNs: a.mtime * 1_000_000_000))
                        }
                    case .symlink:
                        guard filter.accepts(file: rel.bytes) else { continue }
                        do throws(SSHError) {
                            if let c = try followLink(s, rel, issue: issue) { candidate(c) }
                        } catch {
                            handle.forget()
                            throw error
                        }
                    case .other:
                        continue
                    }
                }
                handle.close()
                pending.append(contentsOf: subdirs.reversed())
            }
        }
    }

    /// A symlink's candidate when it resolves to a regular file below remote_dir.
    private func followLink(_ s: SSHSession, _ rel: RelativePath, issue: (ListingIssue) -> Void) throws(SSHError) -> Candidate? {
        let target: [UInt8]
        do {
            target = try s.realpath(remotePath(rel))
        } catch {
            if error.isConnectionLoss { throw error }
            issue(ListingIssue(path: rel, kind: .skipped, message: "dangling symlink: \(error.message)"))
            return nil
        }
        let prefix = realRoot == [UInt8(ascii: "/")] ? realRoot : realRoot + [UInt8(ascii: "/")]
        guard target.count > prefix.count, target.starts(with: prefix) else {
            issue(ListingIssue(path: rel, kind: .skipped, message: "symlink points outside remote_dir (to \(RemoteName.display(target))); not followed"))
            return nil
        }
        let a: SFTPAttributes
        do {
            a = try s.stat(target)
        } catch {
            if error.isConnectionLoss { throw error }
            issue(ListingIssue(path: rel, kind: .skipped, message: "dangling symlink: \(error.message)"))
            return nil
        }
        guard a.type == .regular else {
            issue(ListingIssue(path: rel, kind: .skipped, message: "symlink to a folder or special file; not followed"))
            return nil
        }
        lock.lock()
        linkTargets[rel.bytes] = target
        lock.unlock()
        return Candidate(path: rel, size: a.size, mtimeNs: a.mtime * 1_000_000_000)
    }

    func open(_ candidate: Candidate) throws(SourceError) -> any ByteStream {
        lock.lock()
        let path = linkTargets[candidate.path.bytes] ?? remotePath(candidate.path)
        lock.unlock()
        // An idle session may have been dropped meanwhile (NAT, the server's ClientAlive):
        // one more try on a fresh connection before the file counts as failed.
        for attempt in 0..<2 {
            let s = try pool.acquire()
            do throws(SSHError) {
                let file = try s.openFile(path)
                return SFTPStream(pass: self, session: s, file: file, path: path, candidate: candidate)
            } catch {
                pool.giveBack(s, after: error)
                if error.isNoSuchFile { throw SourceError("file vanished before it could be read (\(source.location))") }
                if error.isConnectionLoss && attempt == 0 { continue }
                throw fail(error)
            }
        }
        throw SourceError("\(source.location): cannot open \(RemoteName.display(path))")
    }

    func applyAfterIngest(_ action: AfterIngest, to candidate: Candidate) throws(SourceError) {
        guard action != .keep else { return }
        let path = remotePath(candidate.path)
        try withSession { (s) throws(SSHError) in
            let now = try s.stat(path, followLinks: false)
            if now.type == .regular && (now.size != candidate.size || now.mtime * 1_000_000_000 != candidate.mtimeNs) {
                throw SSHError(.other, "after_ingest: \(RemoteName.display(path)) changed after it was ingested; left in place for the next pull")
            }
            switch action {
            case .keep:
                return
            case .delete:
                try s.unlink(path)
            case .move(let folder):
                // The same relative place below the move folder (below remote_dir, or an
                // absolute folder on the server), each missing level created.
                let base = folder.hasPrefix("/") ? Array(folder.utf8) : remotePath(RelativePath(folder))
                let dir = base + candidate.path.components.dropLast().flatMap { [UInt8(ascii: "/")] + $0 }
                try makeFolders(s, dir)
                let name = Array(candidate.path.components.last ?? [])
                var attempt = 0
                while true {
                    let target = dir + [UInt8(ascii: "/")] + name + (attempt == 0 ? [] : Array(".\(attempt)".utf8))
                    // Never overwrite: SFTP v3 has no no-replace flag, and a server whose rename
                    // is rename(2) would replace an earlier file of that name.
                    if attempt < 100, (try? s.stat(target, followLinks: false)) != nil {
                        attempt += 1
                        continue
                    }
                    do throws(SSHError) {
                        try s.rename(path, to: target)
                        return
                    } catch {
                        // OpenSSH's server reports an existing target as a plain failure.
                        if attempt < 100, (try? s.stat(target, followLinks: false)) != nil {
                            attempt += 1
                            continue
                        }
                        throw error
                    }
                }
            }
        }
    }
}

extension SFTPPass {
    /// Creates `dir` on the server and every missing folder above it (`mkdir -p`).
    func makeFolders(_ s: SSHSession, _ dir: [UInt8]) throws(SSHError) {
        if let attrs = try? s.stat(dir), attrs.type == .directory { return }
        // Find the deepest existing level, then create each one below it, in order.
        var missing: [[UInt8]] = []
        var path = dir
        while path.count > 1, (try? s.stat(path)) == nil {
            missing.append(path)
            guard let slash = path.lastIndex(of: UInt8(ascii: "/")) else { break }
            path = slash == 0 ? [UInt8(ascii: "/")] : Array(path[..<slash])
        }
        for level in missing.reversed() { try s.mkdir(level) }
        guard (try? s.stat(dir))?.type == .directory else {
            throw SSHError(.other, "cannot create folder \(RemoteName.display(dir)): a file of that name is in the way")
        }
    }
}

/// One remote file being read. Holds its session until closed.
final class SFTPStream: RangeFetching {
    let pass: SFTPPass
    var session: SSHSession?
    let file: SFTPFile
    /// The remote path read (a symlink's checked target).
    let path: [UInt8]
    let candidate: Candidate
    private var offset: Int64 = 0
    /// libssh2 keeps 4 × the read length requested ahead (capped at 8 MiB); 2 MiB reads reach
    /// that cap.
    static let readLength = 2 << 20

    init(pass: SFTPPass, session: SSHSession, file: SFTPFile, path: [UInt8], candidate: Candidate) {
        self.pass = pass
        self.session = session
        self.file = file
        self.path = path
        self.candidate = candidate
    }

    /// Files from this size on are fetched as ranges over several sessions.
    static let parallelThreshold: Int64 = 64 << 20

    func startParallelFetch(into fd: Int32, stagingPath: String) -> (any ParallelFetch)? {
        guard candidate.size >= Self.parallelThreshold, let primary = session else { return nil }
        var readers = [RangedFetch.Reader(session: primary, file: file, primary: true)]
        // Extra sessions only when idle ones exist or the limit allows new ones: a big file
        // never waits for other files' transfers.
        while readers.count < pass.source.config.maxConnections, let extra = pass.pool.tryAcquire() {
            do throws(SSHError) {
                let handle = try extra.openFile(path)
                // Opened later than the primary handle: it must be the same file (not one the
                // client renamed over it meanwhile), or chunks of two files would be mixed.
                guard Self.matches(try handle.attributes(), candidate) else {
                    handle.close()
                    pass.pool.release(extra)
                    break
                }
                readers.append(RangedFetch.Reader(session: extra, file: handle, primary: false))
            } catch {
                pass.pool.giveBack(extra, after: error)
                break
            }
        }
        // Chunks kept from a transfer cut off in an earlier pass (same size and mtime) are
        // copied in and not fetched again.
        let resumed = pass.partials?.resume(candidate, chunkSize: RangedFetch.chunkSize, into: fd) ?? []
        if !resumed.isEmpty {
            pass.source.logger.notice("Resuming a cut-off transfer", metadata: [
                "client": "\(pass.source.client)", "source": "\(pass.source.name)", "path": "\(candidate.path.display)",
                "kept.bytes": "\(resumed.reduce(Int64(0)) { $0 + min(candidate.size, Int64($1 + 1) * RangedFetch.chunkSize) - Int64($1) * RangedFetch.chunkSize })",
            ])
        }
        return RangedFetch(stream: self, readers: readers, fd: fd, size: candidate.size, stagingPath: stagingPath, resumed: resumed)
    }

    /// The primary session broke during a parallel fetch.
    func primaryBroke() { broken() }

    /// Set by a parallel fetch whose extra handle saw the file change; read after it ended.
    var changeNote: String?

    static func matches(_ a: SFTPAttributes, _ c: Candidate) -> Bool {
        a.size == c.size && a.mtime * 1_000_000_000 == c.mtimeNs
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws(SourceError) -> Int {
        // Read exactly the listed size: growth or truncation shows in the fstat afterwards.
        // Each libssh2 call asks for at most a quarter of what is left, so that its read-ahead
        // (4 × the length asked for) never requests past the end of the file; the calls after
        // the first are mostly served from data already received, so the buffer is filled by
        // looping, and the lake gets one write per buffer, not one per call.
        var filled = 0
        while filled < buffer.count {
            let remaining = candidate.size - offset
            if remaining <= 0 { break }
            let quarter = Swift.max(1, Swift.min(remaining / 4, Int64(Self.readLength)))
            let ask = Swift.min(buffer.count - filled, remaining < 4 ? Int(remaining) : Int(quarter))
            do throws(SSHError) {
                let n = try file.read(into: buffer.baseAddress! + filled, count: ask)
                if n == 0 { return filled }  // shorter than listed: changedWhileReading says so
                offset += Int64(n)
                filled += n
            } catch {
                broken()
                throw pass.fail(error)
            }
        }
        return filled
    }

    func changedWhileReading(bytesRead: Int64) -> String? {
        guard session != nil else { return "connection lost" }
        if let changeNote { return changeNote }
        do {
            let now = try file.attributes()
            if now.size != bytesRead || bytesRead != candidate.size {
                return "size changed while copying (listed \(candidate.size), now \(now.size), read \(bytesRead) bytes); retried on the next pass"
            }
            if now.mtime * 1_000_000_000 != candidate.mtimeNs {
                return "file was modified while copying; retried on the next pass"
            }
            return nil
        } catch {
            broken()
            return "cannot check the file after reading: \(error.message)"
        }
    }

    private func broken() {
        if let s = session {
            session = nil
            file.forget()
            pass.pool.discard(s)
        }
    }

    func close() {
        guard let s = session else { return }
        file.close()
        session = nil
        pass.pool.release(s)
    }
}

/// A large remote file fetched in chunks dealt out to several sessions in turn, each chunk
/// read sequentially and written into the staging file with `pwrite`. The consumer hashes
/// the contiguous prefix as it grows.
final class RangedFetch: ParallelFetch, @unchecked Sendable {
    /// A session and its own handle on the file; used by one reader thread only.
    struct Reader: @unchecked Sendable {
        let session: SSHSession
        let file: SFTPFile
        let primary: Bool
    }

    /// Bytes per chunk. Each reader asks libssh2 for at most a quarter of what is left in its
    /// chunk, so read-ahead never crosses into a chunk another session reads.
    static let chunkSize: Int64 = 16 << 20
    /// libssh2 keeps 4 × this requested ahead per session: 4 MiB in flight each.
    static let readLength = 1 << 20

    let stream: SFTPStream
    let fd: Int32
    let progress: ChunkProgress
    let stagingPath: String
    /// Chunks copied in from a cut-off transfer (not fetched again).
    let resumed: Set<Int>
    /// Bytes received from the server in this pass, and whether a connection was lost.
    private let fetched = Atomic<Int64>(0)
    private let connectionLost = Atomic<Bool>(false)

    init(stream: SFTPStream, readers: [Reader], fd: Int32, size: Int64, stagingPath: String, resumed: Set<Int> = []) {
        self.stream = stream
        self.stagingPath = stagingPath
        self.fd = fd
        self.resumed = resumed
        progress = ChunkProgress(size: size, chunkSize: Self.chunkSize, workers: readers.count)
        progress.preload(resumed)
        let count = readers.count
        for (i, reader) in readers.enumerated() {
            let t = Thread { [self] in run(reader, index: i, of: count) }
            t.stackSize = 1 << 20
            t.start()
        }
    }

    private func run(_ reader: Reader, index: Int, of count: Int) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.readLength, alignment: 4096)
        defer { buffer.deallocate() }
        let size = progress.size
        var error: SSHError?
        var writeError: String?
        var changed: String?
        chunkLoop: for chunk in stride(from: index, to: progress.chunks, by: count) where !resumed.contains(chunk) {
            let start = Int64(chunk) * Self.chunkSize
            let end = Swift.min(size, start + Self.chunkSize)
            var offset = start
            reader.file.seek(to: start)
            while offset < end {
                if progress.shouldStop() { break chunkLoop }
                let left = end - offset
                let ask = left < 4 ? Int(left) : Int(Swift.min(Int64(Self.readLength), left / 4))
                let n: Int
                do {
                    n = try reader.file.read(into: buffer.baseAddress!, count: ask)
                } catch let e {
                    error = e
                    break chunkLoop
                }
                if n == 0 {
                    changed = "the file ended at \(offset) of \(size) bytes while copying; retried on the next pass"
                    break chunkLoop
                }
                if let why = ChunkProgress.write(fd: fd, UnsafeRawBufferPointer(rebasing: buffer[0..<n]), at: offset, stagingPath: stagingPath) {
                    writeError = why
                    break chunkLoop
                }
                offset += Int64(n)
                fetched.add(Int64(n), ordering: .relaxed)
                progress.landed(chunk: chunk, bytes: Int64(n))
            }
        }
        if error == nil && writeError == nil && changed == nil && !reader.primary {
            // The primary handle is checked by the stream; each extra handle here.
            do throws(SSHError) {
                if !SFTPStream.matches(try reader.file.attributes(), stream.candidate) {
                    changed = "file was modified while copying; retried on the next pass"
                }
            } catch let e {
                error = e
            }
        }
        // Hand the session back (the primary one stays with the stream until it is closed).
        if let error, error.isConnectionLoss {
            connectionLost.store(true, ordering: .relaxed)
            if reader.primary { reader.file.forget(); stream.primaryBroke() } else { reader.file.forget(); stream.pass.pool.discard(reader.session) }
        } else if !reader.primary {
            reader.file.close()
            stream.pass.pool.release(reader.session)
        }
        if let changed {
            // Not a failure: the consumer finishes, and the stream reports the file as changed.
            stream.changeNote = stream.changeNote ?? changed
        }
        progress.workerEnded(failure: error.map { stream.pass.fail($0) } ?? writeError.map { SourceError($0) }, changed: changed != nil)
    }

    func waitForPrefix(beyond known: Int64) throws(SourceError) -> (prefix: Int64, done: Bool) {
        let candidate = stream.candidate
        let source = stream.pass.source
        let step: (prefix: Int64, done: Bool)
        do {
            step = try progress.waitForPrefix(beyond: known)
        } catch {
            // Every worker has stopped. A lost connection keeps the whole chunks received for
            // the next pass (a full disk or a changed file does not).
            guard connectionLost.load(ordering: .relaxed), let partials = stream.pass.partials else { throw error }
            let chunks = progress.completeChunks
            guard !chunks.isEmpty, partials.save(candidate, chunkSize: Self.chunkSize, chunks: chunks, fd: fd, stagingPath: stagingPath) else { throw error }
            let kept = chunks.reduce(Int64(0)) { $0 + progress.length(of: $1) }
            source.logger.notice("Transfer cut off; the chunks received are kept for the next pass", metadata: [
                "client": "\(source.client)", "source": "\(source.name)", "path": "\(candidate.path.display)",
                "kept.bytes": "\(kept)", "fetched.bytes": "\(fetched.load(ordering: .relaxed))",
            ])
            throw SourceError("\(error.message); \(kept >> 20) MiB of \(candidate.size >> 20) MiB are kept, and the next pass continues from there")
        }
        if step.done {
            stream.pass.partials?.remove(candidate.path)
            if !resumed.isEmpty {
                source.logger.notice("Resumed transfer complete", metadata: [
                    "client": "\(source.client)", "source": "\(source.name)", "path": "\(candidate.path.display)",
                    "fetched.bytes": "\(fetched.load(ordering: .relaxed))",
                ])
            }
        }
        return step
    }

    func cancel() { progress.cancel() }
}
