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

package final class SFTPPass: SourcePass, Sendable {
    package let source: SFTPSource
    package let pool: SessionPool
    /// remote_dir as configured, and as the server resolves it (for the symlink check).
    package let root: [UInt8]
    package let realRoot: [UInt8]
    /// `include`/`exclude`, also excluding every move target below remote_dir.
    package let filter: PathFilter
    package var partials: PartialStore? { source.partials }
    /// Symlinked candidates, read through the target the listing checked.
    private let linkTargets = Mutex<[[UInt8]: [UInt8]]>([:])

    package init(source: SFTPSource, pool: SessionPool, root: [UInt8], realRoot: [UInt8], filter: PathFilter) {
        self.source = source
        self.filter = filter
        self.pool = pool
        self.root = root
        self.realRoot = realRoot
    }

    package func end() { pool.closeAll() }

    package func remotePath(_ rel: RelativePath) -> [UInt8] {
        if rel.bytes.isEmpty { return root }
        return root == [UInt8(ascii: "/")] ? root + rel.bytes : root + [UInt8(ascii: "/")] + rel.bytes
    }

    package func fail(_ e: SSHError) -> SourceError {
        SourceError("\(source.location): \(e.message)")
    }

    /// Runs `body` with a session of its own, dropping the session if its connection broke.
    package func withSession<R>(_ body: (SSHSession) throws(SSHError) -> R) throws(SourceError) -> R {
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

    package func list(issue: (ListingIssue) -> Void, candidate: (Candidate) -> Void) throws(SourceError) {
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
        linkTargets.withLock { $0[rel.bytes] = target }
        return Candidate(path: rel, size: a.size, mtimeNs: a.mtime * 1_000_000_000)
    }

    package func open(_ candidate: Candidate) throws(SourceError) -> any ByteStream {
        let path = linkTargets.withLock { $0[candidate.path.bytes] } ?? remotePath(candidate.path)
        // An idle session may have been dropped meanwhile (NAT, the server's ClientAlive):
        // one more try on a fresh connection before the file counts as failed.
        for attempt in 0..<2 {
            let s = try pool.acquire()
            do throws(SSHError) {
                let file = try s.openFile(path)
                return SFTPStream(pass: self, session: s, file: file, path: path, candidate: candidate)
            } catch {
                pool.giveBack(s, after: error)
                if error.isNoSuchFile { throw SourceError.vanished("file vanished before it could be read (\(source.location))") }
                if error.isConnectionLoss && attempt == 0 { continue }
                throw fail(error)
            }
        }
        throw SourceError("\(source.location): cannot open \(RemoteName.display(path))")
    }

    package func applyAfterIngest(_ action: AfterIngest, to candidate: Candidate) throws(SourceError) {
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
    package func makeFolders(_ s: SSHSession, _ dir: [UInt8]) throws(SSHError) {
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
