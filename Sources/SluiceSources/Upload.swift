import Crypto
import Foundation
import Logging
import NIOCore
import SluiceSupport
import SluiceLake
import SluiceManifest
import SluiceIngest
import SluiceConfig
#if canImport(Glibc)
import Glibc
#endif

/// A piece of a request body, as the HTTP server hands it over (a NIO `ByteBuffer`).
public protocol UploadChunk: Sendable {
    var byteCount: Int { get }
    /// Feeds the chunk's bytes to `hasher`.
    func hash(into hasher: inout SHA256)
    /// Copies `destination.count` bytes starting at `offset` into `destination`.
    func copyBytes(from offset: Int, into destination: UnsafeMutableRawBufferPointer)
}

extension ByteBuffer: UploadChunk {
    public var byteCount: Int { readableBytes }
    public func hash(into hasher: inout SHA256) {
        withUnsafeReadableBytes { hasher.update(bufferPointer: $0) }
    }
    public func copyBytes(from offset: Int, into destination: UnsafeMutableRawBufferPointer) {
        withUnsafeReadableBytes { source in
            destination.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[offset..<(offset + destination.count)]))
        }
    }
}

/// A request body on its way from the HTTP server (async, on the event loops) to the ingest
/// pipeline (blocking, on a thread of its own): a bounded queue of chunks, so a body of any
/// size passes through a few MiB of memory, and a slow disk slows the sender (TCP
/// backpressure) instead of filling memory.
///
/// The sender's side hashes each chunk as it queues it (SHA-256, in arrival order), so that
/// hashing and writing run on two threads; the writer only writes.
public final class UploadBody: SelfHashingStream, @unchecked Sendable {  // state guarded by its condition: the writer waits for chunks
    public enum Failure: Sendable, Equatable {
        /// More than `max_upload_size`.
        case tooLarge
        /// The connection ended or failed before the body was complete.
        case disconnected(String)
        /// The upload was given up (the daemon's shutdown_timeout).
        case abandoned
        /// A download feeding the queue failed (an S3 GET), with why.
        case failed(String)

        /// The answer's status (499: the sender is gone, as nginx records it).
        public var httpStatus: Int {
            switch self {
            case .tooLarge: 413
            case .disconnected: 499
            case .abandoned: 503
            case .failed: 502
            }
        }

        /// What the `upload` row says.
        public var recordStatus: String { self == .tooLarge ? "rejected" : "aborted" }

        public var message: String {
            switch self {
            case .tooLarge: "the upload is larger than api.max_upload_size"
            case .disconnected(let why): "the sender disconnected before the body was complete (\(why))"
            case .abandoned: "the upload was abandoned at shutdown_timeout"
            case .failed(let why): why
            }
        }
    }

    private let condition = NSCondition()
    private var chunks: [any UploadChunk] = []
    private var head = 0
    private var headOffset = 0
    private var buffered = 0
    private var ended = false
    private var failure: Failure?
    private var consumerClosed = false
    /// Resumes the parked sender.
    private var senderWaiting: (@Sendable () -> Void)?
    /// What the sender said the length is (Content-Length), if it did.
    public let declaredLength: Int64?
    /// Bytes handed over so far.
    public private(set) var received: Int64 = 0
    /// Every byte queued, in order (only the sender's side touches it).
    private var hasher = SHA256()

    /// Bytes held before the sender waits.
    package let capacity: Int
    /// The reader wakes once this much is buffered (or the body has ended).
    package let readMinimum: Int

    public init(declaredLength: Int64?, capacity: Int = 8 << 20, readMinimum: Int = 512 << 10) {
        self.declaredLength = declaredLength
        self.capacity = capacity
        self.readMinimum = readMinimum
    }

    // MARK: The sender's side (async)

    /// Queues a chunk, waiting while the queue is full. False once the reader has stopped or
    /// the body has failed: send nothing more.
    public func push(_ chunk: any UploadChunk) async -> Bool {
        switch enqueue(chunk) {
        case .refused: return false
        case .queued: return true
        case .full:
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in park { c.resume() } }
            return isOpen
        }
    }

    /// Queues a chunk at once (for an event loop's callbacks, which keep their order);
    /// `resume` runs once there is room for more, at once if there is. False once the reader
    /// has stopped or the body has failed: send nothing more (`resume` is not called).
    public func push(_ chunk: any UploadChunk, resume: @escaping @Sendable () -> Void) -> Bool {
        switch enqueue(chunk) {
        case .refused: return false
        case .queued: resume()
        case .full: park(resume)
        }
        return true
    }

    private enum Enqueued { case queued, full, refused }

    private func enqueue(_ chunk: any UploadChunk) -> Enqueued {
        let n = chunk.byteCount
        chunk.hash(into: &hasher)
        condition.lock()
        defer { condition.unlock() }
        if consumerClosed || failure != nil { return .refused }
        if n > 0 {
            chunks.append(chunk)
            buffered += n
            received += Int64(n)
            if buffered >= readMinimum { condition.signal() }
        }
        return buffered >= capacity ? .full : .queued
    }

    /// Parks the sender until the reader has drained half the queue (at once if it has).
    private func park(_ resume: @escaping @Sendable () -> Void) {
        condition.lock()
        if buffered >= capacity && !consumerClosed && failure == nil {
            senderWaiting = resume
            condition.unlock()
        } else {
            condition.unlock()
            resume()
        }
    }

    private var isOpen: Bool {
        condition.lock()
        defer { condition.unlock() }
        return !consumerClosed && failure == nil
    }

    /// The body is complete.
    public func finish() {
        condition.lock()
        ended = true
        condition.broadcast()
        condition.unlock()
    }

    /// The body will not be complete: the reader fails at its next read.
    public func fail(_ why: Failure) {
        condition.lock()
        if failure == nil { failure = why }
        condition.broadcast()
        let waiting = senderWaiting
        senderWaiting = nil
        condition.unlock()
        waiting?()
    }

    public var failureReason: Failure? { condition.withLock { failure } }

    /// Bytes queued so far (read from any thread).
    public var bytesQueued: Int64 { condition.withLock { received } }

    // MARK: The reader's side (ByteStream, blocking)

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(SourceError) -> Int {
        condition.lock()
        while buffered < min(readMinimum, buffer.count) && !ended && failure == nil && !consumerClosed {
            condition.wait()
        }
        if let failure {
            condition.unlock()
            throw SourceError(failure.message)
        }
        var n = 0
        while n < buffer.count && head < chunks.count {
            let chunk = chunks[head]
            let take = min(chunk.byteCount - headOffset, buffer.count - n)
            chunk.copyBytes(from: headOffset, into: UnsafeMutableRawBufferPointer(rebasing: buffer[n..<(n + take)]))
            n += take
            headOffset += take
            if headOffset == chunk.byteCount {
                head += 1
                headOffset = 0
            }
        }
        if head > 64 && head * 2 > chunks.count {
            chunks.removeFirst(head)
            head = 0
        }
        buffered -= n
        var wake: (@Sendable () -> Void)?
        if buffered < capacity / 2 {
            wake = senderWaiting
            senderWaiting = nil
        }
        condition.unlock()
        wake?()
        return n
    }

    /// After the reader's last read: the body ended (`finish`), so every byte queued was read.
    public var sha256OfBytesRead: String {
        condition.withLock { hexString(hasher.finalize()) }
    }

    public func changedWhileReading(bytesRead: Int64) -> String? {
        guard let declaredLength, declaredLength != bytesRead else { return nil }
        return "the body ended after \(bytesRead) bytes; Content-Length said \(declaredLength)"
    }

    /// The reader is done: whatever is still queued is dropped and the sender stops.
    public func close() {
        condition.lock()
        consumerClosed = true
        chunks = []
        head = 0
        buffered = 0
        let waiting = senderWaiting
        senderWaiting = nil
        condition.unlock()
        waiting?()
    }

}

/// One upload as a source: a pass that offers exactly one file, the request body.
package struct UploadSource: Source {
    package let name: String
    package let candidate: Candidate
    package let body: UploadBody

    package var minAgeNanoseconds: Int64 { 0 }
    package var afterIngest: AfterIngest { .keep }
    package var exclusivePasses: Bool { false }

    package func beginPass(moveTargets: [String]) throws(SourceError) -> any SourcePass { Pass(candidate: candidate, body: body) }

    package struct Pass: SourcePass {
        package let candidate: Candidate
        package let body: UploadBody
        package func list(issue: (ListingIssue) -> Void, candidate: (Candidate) -> Void) throws(SourceError) { candidate(self.candidate) }
        package func open(_ candidate: Candidate) throws(SourceError) -> any ByteStream { body }
        package func applyAfterIngest(_ action: AfterIngest, to candidate: Candidate) throws(SourceError) {}
        package func end() {}

        package init(candidate: Candidate, body: UploadBody) {
            self.candidate = candidate
            self.body = body
        }
    }

    package init(name: String, candidate: Candidate, body: UploadBody) {
        self.name = name
        self.candidate = candidate
        self.body = body
    }
}

/// What an upload asks for, once its sender is known and allowed.
public struct UploadRequest: Sendable {
    public var client: String
    public var source: String
    public var path: RelativePath
    public var expectedSHA256: String?
    public var tokenID: Int64?
    public var remoteAddress: String?
    public var body: UploadBody

    public init(client: String, source: String, path: RelativePath, expectedSHA256: String?, tokenID: Int64?, remoteAddress: String?, body: UploadBody) {
        self.client = client
        self.source = source
        self.path = path
        self.expectedSHA256 = expectedSHA256
        self.tokenID = tokenID
        self.remoteAddress = remoteAddress
        self.body = body
    }
}

/// What became of an upload.
public enum UploadOutcome: Sendable {
    /// A new version was committed.
    case stored(FileReport)
    /// The content is the latest version's: nothing new was stored.
    case unchanged(FileReport)
    /// The declared checksum did not match; nothing was kept.
    case checksumMismatch(String)
    /// The body failed on the way in (too large, disconnected, abandoned); nothing was kept.
    case bodyFailed(UploadBody.Failure)
    /// Shutting down: nothing was kept.
    case unavailable(String)
    /// The lake or the manifest failed (a full disk, say); nothing was kept.
    case failed(String)
}

/// A source that clients push to through the upload API (`type = "http"`): only which paths
/// it takes. An upload outside `include`/`exclude` is refused with 422.
public struct HTTPSourceConfig: Sendable, Equatable {
    public var filter: PathFilter

    package init(filter: PathFilter) {
        self.filter = filter
    }
}

extension HTTPSourceConfig: SourceSettings {
    package static let typeName = "http"
    package var afterIngest: AfterIngest { .keep }
    package var drive: SourceDrive { .push }

    package var summary: String {
        "http uploads, include \(filter.include.map(\.pattern)), exclude \(filter.exclude.map(\.pattern))"
    }

    /// Uploads arrive through the upload API of `sluice run`: there is nothing to pull.
    package func makeSource(_ context: SourceContext) -> (any Source)? { nil }
}

/// Reads `type = "http"` tables.
package struct HTTPSourceType: SourceType {
    package let name = HTTPSourceConfig.typeName
    package init() {}

    package func parse(_ t: TOMLTable, path: String, reader: TableReader, stateDir: String) throws(ConfigError) -> any SourceSettings {
        try reader.checkKeys(t, path: path, allowed: ["type", "include", "exclude"])
        let include = try reader.globs(try reader.stringArray(t, "include", path) ?? ["**/*"], key: "\(path).include")
        let exclude = try reader.globs(try reader.stringArray(t, "exclude", path) ?? TableReader.defaultExclude, key: "\(path).exclude")
        return HTTPSourceConfig(filter: PathFilter(include: include, exclude: exclude))
    }
}

/// The parts of an upload API request that come from the sender as text: the path, the
/// declared checksum and the bearer token. Checked here, below the HTTP server, so that they
/// can be fuzzed on their own (Fuzz/).
package enum UploadRequestText {
    /// The path of an upload from the URL: percent-decoded bytes, relative, without `.`/`..`
    /// components, empty components or NUL bytes.
    package static func uploadPath(_ raw: String) -> Result<RelativePath, UploadPathError> {
        var bytes: [UInt8] = []
        var it = Array(raw.utf8).makeIterator()
        while let b = it.next() {
            if b == UInt8(ascii: "%") {
                guard let h = it.next(), let l = it.next(), let hi = hexValue(h), let lo = hexValue(l) else {
                    return .failure(.init("the path has a bad percent escape"))
                }
                bytes.append(hi << 4 | lo)
            } else {
                bytes.append(b)
            }
        }
        if bytes.isEmpty { return .failure(.init("the path is empty: PUT /api/v1/files/<path>")) }
        if bytes.contains(0) { return .failure(.init("the path contains a NUL byte")) }
        if bytes.first == UInt8(ascii: "/") { return .failure(.init("the path must be relative: it starts with '/'")) }
        if bytes.count > 4096 { return .failure(.init("the path is longer than 4096 bytes")) }
        for component in bytes.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false) {
            if component.isEmpty { return .failure(.init("the path has an empty component ('//' or a trailing '/')")) }
            if component.elementsEqual(".".utf8) || component.elementsEqual("..".utf8) {
                return .failure(.init("the path has a '.' or '..' component"))
            }
            if component.count > 255 { return .failure(.init("a path component is longer than 255 bytes")) }
        }
        return .success(RelativePath(bytes: bytes))
    }

    package struct UploadPathError: Error, CustomStringConvertible {
        package var description: String
        package init(_ d: String) { description = d }
    }

    package static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    package static func bytes(hex: String) -> [UInt8] {
        var out: [UInt8] = []
        var it = Array(hex.utf8).makeIterator()
        while let h = it.next(), let l = it.next(), let hi = hexValue(h), let lo = hexValue(l) { out.append(hi << 4 | lo) }
        return out
    }

    /// The SHA-256 the sender declared, from `X-Content-SHA256: <hex>` or RFC 9530's
    /// `Content-Digest: sha-256=:<base64>:`; nil when it declared none.
    package static func declaredSHA256(hex: String?, contentDigest: String?) -> Result<String?, UploadPathError> {
        var declared: [String] = []
        if let hex {
            let h = hex.trimmingCharacters(in: .whitespaces).lowercased()
            guard h.utf8.count == 64, h.utf8.allSatisfy({ hexValue($0) != nil }) else {
                return .failure(.init("X-Content-SHA256 must be 64 hex digits"))
            }
            declared.append(h)
        }
        if let digest = contentDigest {
            for member in digest.split(separator: ",") {
                let parts = member.split(separator: "=", maxSplits: 1)
                guard parts.count == 2, parts[0].trimmingCharacters(in: .whitespaces).lowercased() == "sha-256" else { continue }
                let value = parts[1].trimmingCharacters(in: .whitespaces)
                guard value.count >= 2, value.hasPrefix(":"), value.hasSuffix(":"),
                      let data = Data(base64Encoded: String(value.dropFirst().dropLast())), data.count == 32 else {
                    return .failure(.init("Content-Digest's sha-256 must be :<base64 of 32 bytes>: (RFC 9530)"))
                }
                declared.append(hexString(data))
            }
        }
        if declared.count > 1, Set(declared).count > 1 {
            return .failure(.init("X-Content-SHA256 and Content-Digest disagree"))
        }
        return .success(declared.first)
    }

    /// The token of an `Authorization: Bearer <token>` header, when it is one of Sluice's.
    package static func bearerToken(_ header: String?) -> String? {
        guard let header, header.count > 7, header.prefix(7).lowercased() == "bearer " else { return nil }
        let presented = String(header.dropFirst(7)).trimmingCharacters(in: .whitespaces)
        return presented.hasPrefix(UploadToken.prefix) ? presented : nil
    }
}
