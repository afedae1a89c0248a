import Foundation
import SluiceFormats
import SluiceManifest
import SluiceSupport
import SluiceTransform
#if canImport(Glibc)
import Glibc
#endif

/// One member of a stored archive, as `sluice history --members` lists it.
public struct MemberListing: Sendable, Encodable, Equatable {
    /// The member's path inside the archive (nested archives joined by `/`), escaped.
    public var path: String
    /// The size the archive declares for it, when it declares one.
    public var size: Int64?
    /// Encrypted with a zip password.
    public var encrypted: Bool
    /// Why it cannot be opened (an archive nested deeper than max_archive_depth, a damaged
    /// inner archive); nil when it can.
    public var error: String?
}

extension Agent {
    /// The stored version of a client's file that `cat` and `history --members` read: the
    /// newest, or `version`; `source` picks among sources that hold the same path.
    package func storedVersion(client id: String, path: String, source: String?, version: Int?) throws(AgentError) -> VersionRecord {
        let rows = try history(client: id, path: path).filter { $0.path == path && (source == nil || $0.source == source) }
        guard !rows.isEmpty else {
            throw AgentError(.usage, "client '\(id)' has no stored file \(path)\(source.map { " from source '\($0)'" } ?? "") "
                + "(see `sluice history \(id)` for the paths)")
        }
        let sources = Set(rows.map(\.source))
        guard sources.count == 1 else {
            throw AgentError(.usage, "\(path) is stored from sources \(sources.sorted().joined(separator: ", ")): choose one with --source")
        }
        guard let version else { return rows.max { $0.version < $1.version }! }
        guard let row = rows.first(where: { $0.version == version }) else {
            throw AgentError(.usage, "\(path) has no version \(version) (stored: \(rows.map { "v\($0.version)" }.sorted().joined(separator: ", ")))")
        }
        return row
    }

    /// `sluice cat`: one stored version of a client's file (the newest, or `version`), written
    /// through `write` a block at a time: unpacked when its content is compressed, unless `raw`;
    /// with `member`, that member of the archive (unpacked when it is compressed, unless `raw`).
    public func cat(client id: String, path: String, source: String?, version: Int?, member: String? = nil, raw: Bool,
                    write: (UnsafeRawBufferPointer) throws -> Void) throws(AgentError) {
        let chosen = try storedVersion(client: id, path: path, source: source, version: version)
        let what = "\(chosen.source)/\(chosen.path) v\(chosen.version)"
        let file = try lakeFile(chosen)
        let stored: (read: ByteSource, decrypted: Bool)
        do {
            stored = raw ? (file.read, false)
                : try StoredBytes.decrypted(name: Array(chosen.path.utf8), shown: what, head: file.head(OpenPGP.magicLength), read: file.read, keys: keys(client: id), client: id)
        } catch {
            throw AgentError(.runtime, "\(error) (`--raw` writes the stored bytes)")
        }
        func copy(_ source: @escaping ByteSource) throws {
            let peek = PeekableSource(source)
            let compression = raw ? nil : Compression.sniff(try peek.head(Compression.magicLength))
            try pump(try Compression.unpacking(compression, limits: unpackLimits, source: peek.read), into: write)
        }
        do {
            guard let member else { return try copy(stored.read) }
            guard let kind = ArchiveWalker.kind(ofName: Array(chosen.path.utf8)) else {
                throw AgentError(.usage, "\(chosen.path) is not an archive (.zip, .tar, .tgz, .tar.gz, .tar.bz2, .tar.xz, .7z): leave out --member")
            }
            var names: [String] = []
            var found = false
            do {
                try walker().walk(kind: kind, read: stored.read, seek: stored.decrypted ? nil : file.seek) { entry in
                    switch entry {
                    case .member(let p, _, let encrypted, let read):
                        let shown = ArchiveMember.display(p)
                        guard shown == member || String(decoding: p, as: UTF8.self) == member else { return names.append(shown) }
                        found = true
                        if encrypted {
                            throw AgentError(.runtime, "\(what), member \(shown) is encrypted with a zip password, which Sluice does not take (`--raw` without --member writes the archive)")
                        }
                        try copy(read)
                        throw WalkStop()
                    case .failed(let p, let message):
                        let shown = ArchiveMember.display(p)
                        guard shown == member else { return names.append(shown) }
                        throw AgentError(.runtime, "\(what), member \(shown): \(message)")
                    }
                }
            } catch is WalkStop {}
            guard found else {
                let listed = names.prefix(20).joined(separator: ", ") + (names.count > 20 ? ", … (\(names.count) in all)" : "")
                throw AgentError(.usage, "\(what) has no member \(PrintableText.escape(member)) (members: \(names.isEmpty ? "none" : listed); `sluice history \(id) \(path) --members` lists them)")
            }
        } catch let e as AgentError {
            throw e
        } catch let e as UnpackError {
            throw AgentError(.runtime, "\(what)\(member.map { ", member \(PrintableText.escape($0))" } ?? ""): \(e.description) (`--raw` writes the stored bytes)")
        } catch let e as OpenPGPError {
            throw AgentError(.runtime, "\(e.description) (`--raw` writes the stored bytes)")
        } catch {
            throw AgentError(.runtime, "writing \(what) failed: \(error)")
        }
    }

    /// `sluice history --members`: the members of a stored archive with their sizes (nil when
    /// the version is not an archive), and why the listing stopped early, if it did.
    public func archiveMembers(client id: String, of v: VersionRecord) throws(AgentError) -> (members: [MemberListing], error: String?)? {
        guard let kind = ArchiveWalker.kind(ofName: Array(v.path.utf8)) else { return nil }
        let file = try lakeFile(v)
        var members: [MemberListing] = []
        do {
            let stored = try StoredBytes.decrypted(name: Array(v.path.utf8), shown: "\(v.source)/\(v.path) v\(v.version)", head: file.head(OpenPGP.magicLength),
                                                   read: file.read, keys: keys(client: id), client: id)
            try walker().walk(kind: kind, read: stored.read, seek: stored.decrypted ? nil : file.seek) { entry in
                switch entry {
                case .member(let p, let size, let encrypted, _):
                    members.append(MemberListing(path: ArchiveMember.display(p), size: size, encrypted: encrypted, error: nil))
                case .failed(let p, let message):
                    members.append(MemberListing(path: ArchiveMember.display(p), size: nil, encrypted: false, error: message))
                }
            }
        } catch {
            return (members, "\(error)")
        }
        return (members, nil)
    }

    private func lakeFile(_ v: VersionRecord) throws(AgentError) -> LakeFile {
        do {
            guard config.lakeBucket != nil else { return try LakeFile(lakeRoot: config.lakeDir, lakePath: v.lake_path) }
            // The download is removed when the copy goes; the open descriptor keeps it readable.
            let lake = try openLake()
            let copy = try lake.localCopy(of: v.lake_path, sha256: v.sha256)
            let file = try LakeFile(lakeRoot: config.lakeDir, lakePath: v.lake_path, readPath: copy.path)
            withExtendedLifetime((lake, copy)) {}
            return file
        } catch {
            throw AgentError(.runtime, "\(error)")
        }
    }

    private func walker() -> ArchiveWalker {
        let dir = spoolDirectory()
        return ArchiveWalker(limits: unpackLimits) { try SpooledEntry(directory: dir) }
    }
}

/// Stops a walk once the member looked for is written.
private struct WalkStop: Error {}
