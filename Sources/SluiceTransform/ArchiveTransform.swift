import Foundation
import SluiceFormats
import SluiceLake
import SluiceParquet
import SluiceSupport

/// What walking an archive meets: a regular member to read, or a member that cannot be
/// opened (an archive nested too deep, a damaged inner archive), with why.
package enum ArchiveEntry {
    case member(path: [UInt8], size: Int64?, encrypted: Bool, read: ByteSource)
    case failed(path: [UInt8], message: String)
}

/// Walks the members of a stored archive, and of the archives inside it down to
/// `max_archive_depth`, in the order they are stored. An inner zip or 7z (which libarchive
/// must seek in) is spooled to an unnamed file first; an inner tar is read as a stream.
package struct ArchiveWalker {
    package let limits: UnpackLimits
    /// An unnamed file for an inner archive that must be sought in.
    package let spool: () throws -> SpooledEntry

    package init(limits: UnpackLimits, spool: @escaping () throws -> SpooledEntry) {
        self.limits = limits
        self.spool = spool
    }

    /// The archive kind a stored name is, looking past a compression suffix (`.tar.gz`).
    package static func kind(ofName name: [UInt8]) -> ArchiveKind? {
        ArchiveKind.named(by: StoredBytes.bareName(name) ?? name)
    }

    /// Walks the archive of `kind` that `read` gives (`seek` when it can be sought in).
    package func walk(kind: ArchiveKind, read: @escaping ByteSource, seek: ((Int64, Int32) -> Int64)?, visit: (ArchiveEntry) throws -> Void) throws {
        do {
            try walk(kind: kind, read: read, seek: seek, prefix: [], depth: 0) { entry in
                do {
                    try visit(entry)
                } catch {
                    throw VisitFailure(error: error)
                }
            }
        } catch let v as VisitFailure {
            throw v.error
        }
    }

    /// An error of the visitor's, carried out of the walk untouched (an `UnpackError` of its
    /// own is not an inner archive's).
    private struct VisitFailure: Error { let error: any Error }

    private func walk(kind: ArchiveKind, read: @escaping ByteSource, seek: ((Int64, Int32) -> Int64)?, prefix: [UInt8], depth: Int,
                      visit: (ArchiveEntry) throws -> Void) throws {
        var spooled: SpooledEntry?
        var read = read, seek = seek
        if seek == nil && kind.needsSeeking {
            let s = try spool()
            try s.fill(from: read)
            read = s.read
            seek = s.seek
            spooled = s
        }
        defer { withExtendedLifetime(spooled) {} }
        let reader = try ArchiveReader(kind: kind, limits: limits, read: read, seek: seek)
        while let m = try reader.next() {
            let path = prefix + m.path
            guard let inner = Self.kind(ofName: m.path), !m.encrypted else {
                try visit(.member(path: path, size: m.size, encrypted: m.encrypted, read: reader.memberSource))
                continue
            }
            guard depth < limits.maxDepth else {
                try visit(.failed(path: path, message: "it is an archive inside an archive \(depth + 1) level\(depth == 0 ? "" : "s") down, deeper than "
                    + "max_archive_depth (\(limits.maxDepth)); ask the client to flatten it, or raise max_archive_depth in agent.conf"))
                continue
            }
            do {
                try walk(kind: inner, read: reader.memberSource, seek: nil, prefix: path + Array("/".utf8), depth: depth + 1, visit: visit)
            } catch let e as UnpackError {
                try visit(.failed(path: path, message: e.description))
            }
        }
    }
}

extension Transformer {
    /// The archive kind of a version that is transformed member by member: its name (past a
    /// compression suffix) is an archive's, and no dataset with `unpack = "none"` takes the
    /// version whole.
    package func archiveKind(of input: TransformInput) -> ArchiveKind? {
        guard let kind = ArchiveWalker.kind(ofName: input.path.bytes) else { return nil }
        let whole = mapping.datasets.contains { d in
            d.unpack == .none && (d.sources == nil || d.sources!.contains(input.source)) && d.match.contains { $0.matches(input.path.bytes) }
        }
        return whole ? nil : kind
    }

    /// Transforms every regular member of an archive version as a unit of its own: each is
    /// matched against the datasets by its path inside, and one member's failure is that
    /// member's, not its siblings'. The result is the archive's, with each member's.
    package func runArchive(_ input: TransformInput, _ kind: ArchiveKind, options: ParquetOptions) -> TransformResult {
        var result = TransformResult(status: .ok)
        // Every member is compared with the deliveries before the archive: read each dataset's once.
        let members = previousSchema.map { lookup in
            var t = self
            let cached = PreviousSchemas(lookup)
            t.previousSchema = { cached($0) }
            return t
        } ?? self
        var fileError: String?
        let batch = PublishBatch(lake: lake)
        let pool = MemberPool(workers: max(2, min(8, usableCores + 1)))
        do {
            let file = try LakeFile(lakeRoot: lakeRoot, input: input)
            let head = try file.head(OpenPGP.magicLength)
            let opened = try StoredBytes.decrypted(name: input.path.bytes, shown: input.path.display, head: head, read: file.read, keys: keys, client: input.client)
            var read = opened.read, seek: ((Int64, Int32) -> Int64)? = file.seek
            var spool: SpooledEntry?
            if opened.decrypted {
                // The members are trusted only once the whole archive's signature is checked,
                // at the end of the message: the plaintext goes to an unnamed file first.
                let s = try makeSpool()
                try s.fill(from: read)
                (read, seek, spool) = (s.read, s.seek, s)
            } else {
                // A name that promises a compression must have it (a .tar.gz that is not gzip).
                _ = try Self.compression(head: Array(head.prefix(Compression.magicLength)), name: input.path.bytes, shown: input.path.display)
            }
            defer { withExtendedLifetime(spool) {} }
            try ArchiveWalker(limits: limits, spool: makeSpool).walk(kind: kind, read: read, seek: seek) { entry in
                switch entry {
                case .failed(let path, let message):
                    var r = TransformResult(status: .failed, error: "\(input.path.display), member \(ArchiveMember.display(path)): \(message)")
                    r.member = ArchiveMember.display(path)
                    result.members.append(r)
                case .member(let path, let size, let encrypted, let read):
                    var unit = input
                    unit.member = TransformMember(path: path, size: size, read: read)
                    unit.publishBatch = batch
                    let display = unit.member!.display
                    var r: TransformResult
                    if encrypted, let d = dataset(for: unit) {
                        r = TransformResult(status: .failed, dataset: d.name, error: "\(unit.unitName): it is encrypted with a zip password, which Sluice does not take; "
                            + "ask the client to send it without a password (OpenPGP encryption of the whole file is supported)")
                    } else if let size, size <= MemberPool.inMemory, dataset(for: unit) != nil {
                        // A small member is read into memory here and transformed on another
                        // core while the archive is read on.
                        do {
                            let bytes = try Self.readAll(read, limit: MemberPool.inMemory)
                            unit.member = TransformMember(path: path, size: size, read: MemorySource(bytes).read)
                            let index = result.members.count
                            var placeholder = TransformResult(status: .failed)
                            placeholder.member = display
                            result.members.append(placeholder)
                            let job = unit
                            pool.submit(index) { [self] in run(job, options: options) }
                            return
                        } catch let e as UnpackError {
                            r = TransformResult(status: .failed, dataset: dataset(for: unit)?.name,
                                                error: "\(unit.unitName): \(e.description); the raw version is kept — after a fix, run `sluice transform \(input.client) --failed`")
                        } catch let e as MemberPool.TooBig {
                            // The archive declared less than it holds: the rest streams.
                            unit.member = TransformMember(path: path, size: nil, read: PeekableSource(prefix: e.bytes, read).read)
                            r = members.run(unit, options: options)
                        }
                    } else {
                        r = members.run(unit, options: options)
                    }
                    r.member = display
                    result.members.append(r)
                }
            }
        } catch let e as UnpackError {
            fileError = "\(input.path.display): \(e.description); the raw version is kept — after a fix, run `sluice transform \(input.client) --failed`"
        } catch let e as TransformError {
            fileError = e.message
        } catch let e as OpenPGPError {
            fileError = "\(e.description); the raw version is kept — after a fix, run `sluice transform \(input.client) --failed`"
        } catch {
            fileError = "\(input.path.display): \(error)"
            result.retryLater = Self.passes(error)
        }
        for (index, r) in pool.finish() {
            var r = r
            r.member = result.members[index].member
            result.members[index] = r
        }
        // Out of room (or the bucket away) for one member: the whole archive is tried again
        // later, and none of its outputs is published meanwhile.
        if let first = result.members.first(where: \.retryLater) ?? (result.retryLater ? result : nil) {
            batch.abandon()
            var later = TransformResult(status: .failed, error: first.member.map { "\(input.path.display), member \($0): \(first.error ?? "")" } ?? fileError)
            later.retryLater = true
            return later
        }
        // The members' outputs become durable and visible together (their siblings' failures
        // do not hold them back).
        do {
            try batch.publish()
        } catch {
            batch.abandon()
            for i in result.members.indices where result.members[i].status == .ok {
                result.members[i].status = .failed
                result.members[i].error = "\(input.unitName), member \(result.members[i].member ?? ""): its output could not be published: \(error)"
                result.members[i].outputPath = nil
                result.members[i].rejectsPath = nil
            }
        }
        let counts = result.memberCounts
        result.rowsWritten = result.members.reduce(0) { $0 + $1.rowsWritten }
        result.rowsRejected = result.members.reduce(0) { $0 + $1.rowsRejected }
        if let fileError {
            result.status = .failed
            result.error = counts.ok + counts.failed + counts.unmapped == 0 ? fileError
                : "\(fileError) (after \(result.members.count) member\(result.members.count == 1 ? "" : "s"): \(counts.ok) ok, \(counts.failed) failed, \(counts.unmapped) unmapped)"
        } else if counts.failed > 0 && !result.members.contains(where: { $0.status == .failed }) {
            result.status = .held
            let first = result.members.first { $0.status == .held }!
            result.error = "\(counts.failed) of \(result.members.count) members held; the first: \(first.member ?? ""): \(first.error ?? "")"
        } else if counts.failed > 0 {
            result.status = .failed
            let first = result.members.first { $0.status == .failed }!
            let why = first.error ?? ""
            let named = why.contains("member \(first.member ?? "")") ? why : "\(first.member ?? ""): \(why)"
            result.error = "\(counts.failed) of \(result.members.count) members failed; the first: \(named)"
        } else {
            result.status = counts.ok > 0 ? .ok : .unmapped
        }
        return result
    }
}

extension Transformer {
    /// All of `read`, up to `limit` bytes; past it, throws `MemberPool.TooBig` with what it read.
    fileprivate static func readAll(_ read: ByteSource, limit: Int64) throws -> [UInt8] {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = try chunk.withUnsafeMutableBytes { try read($0) }
            if n == 0 { return bytes }
            bytes += chunk[0..<n]
            if bytes.count > limit { throw MemberPool.TooBig(bytes: bytes) }
        }
    }
}

/// Transforms the small members of an archive on threads of the shared pool, at most
/// `workers` at a time, while the archive is read on; results by member index.
final class MemberPool: @unchecked Sendable {  // reason: `results` is guarded by `lock`
    /// A member this small (declared size) is read into memory and handed to a worker.
    static let inMemory: Int64 = 4 << 20

    struct TooBig: Error { let bytes: [UInt8] }

    private let slots: DispatchSemaphore
    private let group = DispatchGroup()
    private let lock = NSLock()
    private var results: [Int: TransformResult] = [:]

    init(workers: Int) { slots = DispatchSemaphore(value: workers) }

    func submit(_ index: Int, _ body: @escaping @Sendable () -> TransformResult) {
        slots.wait()
        group.enter()
        BlockingPool.run { [self] in
            let r = body()
            lock.withLock { results[index] = r }
            slots.signal()
            group.leave()
        }
    }

    /// Waits for every submitted member.
    func finish() -> [Int: TransformResult] {
        group.wait()
        return lock.withLock { results }
    }
}

extension TransformResult {
    /// How many members were ok, failed and unmapped.
    package var memberCounts: (ok: Int, failed: Int, unmapped: Int) {
        members.reduce(into: (0, 0, 0)) { c, m in
            switch m.status {
            case .ok: c.0 += 1
            // A held member is not ok: it counts with the failed (its row says held).
            case .failed, .held: c.1 += 1
            case .unmapped: c.2 += 1
            }
        }
    }
}
