import Crypto
import Foundation
import Logging
import NIOCore
import SluiceBuffers
import SluiceLake
import SluiceManifest
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
public final class UploadBody: SelfHashingStream, @unchecked Sendable {
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
    let capacity: Int
    /// The reader wakes once this much is buffered (or the body has ended).
    let readMinimum: Int

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
struct UploadSource: Source {
    let name: String
    let candidate: Candidate
    let body: UploadBody

    var minAgeNanoseconds: Int64 { 0 }
    var afterIngest: AfterIngest { .keep }
    var knownScope: [RelativePath]? { [candidate.path] }
    var exclusivePasses: Bool { false }

    func beginPass(moveTargets: [String]) throws(SourceError) -> any SourcePass { Pass(candidate: candidate, body: body) }

    struct Pass: SourcePass {
        let candidate: Candidate
        let body: UploadBody
        func list(issue: (ListingIssue) -> Void, candidate: (Candidate) -> Void) throws(SourceError) { candidate(self.candidate) }
        func open(_ candidate: Candidate) throws(SourceError) -> any ByteStream { body }
        func applyAfterIngest(_ action: AfterIngest, to candidate: Candidate) throws(SourceError) {}
        func end() {}
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

/// Uploads to the same path wait for each other, so that their versions are numbered in turn.
final class PathLocks: @unchecked Sendable {
    private let condition = NSCondition()
    private var held = Set<String>()

    func withLock<T>(_ key: String, _ body: () throws -> T) rethrows -> T {
        condition.lock()
        while held.contains(key) { condition.wait() }
        held.insert(key)
        condition.unlock()
        defer {
            condition.lock()
            held.remove(key)
            condition.broadcast()
            condition.unlock()
        }
        return try body()
    }
}

/// An `http` source in the daemon: no loop of its own (uploads arrive through the API), only
/// its place in the status and the reload.
final class UploadEndpoint: SourceRunner, @unchecked Sendable {
    let config: HTTPSourceConfig
    init(config: HTTPSourceConfig) { self.config = config }
    func start() {}
    func stop() {}
    func join(until: Date) -> Bool { true }
    var hasEnded: Bool { false }
    func sameConfig(as source: SourceConfig) -> Bool {
        guard case .http(let h) = source.kind else { return false }
        return "\(h)" == "\(config)"
    }
}

extension Daemon {
    /// The `http` sources of a client, by name (empty when it has none or is unknown).
    public func uploadSources(client: String) -> [String: HTTPSourceConfig] {
        guard let c = config.client(client) else { return [:] }
        var out: [String: HTTPSourceConfig] = [:]
        for s in c.sources { if case .http(let h) = s.kind { out[s.name] = h } }
        return out
    }

    /// Ingests one upload through the one ingest pipeline, on the calling thread (it blocks
    /// while the body streams in), records it in the manifest and logs it. `abandon`, polled
    /// between chunks, gives the copy up (shutdown_timeout).
    public func receiveUpload(_ request: UploadRequest, abandon: @escaping @Sendable () -> Bool) -> UploadOutcome {
        let started = Timestamp.now()
        let key = SourceKey(client: request.client, source: request.source)
        let candidate = Candidate(path: request.path, size: request.body.declaredLength ?? 0,
                                  mtimeNs: Int64(Date().timeIntervalSince1970 * 1e9), expectedSHA256: request.expectedSHA256)
        let source = UploadSource(name: request.source, candidate: candidate, body: request.body)
        let report = uploadLocks.withLock("\(key)/\(request.path.display)") {
            ingest(key, source: source, trigger: "upload", stoppable: false, abandon: abandon, syncMethod: .fsync)
        }
        let outcome = Self.outcome(of: report, path: request.path, body: request.body)
        var record = UploadRecord(tokenID: request.tokenID, client: request.client, source: request.source, path: request.path.display,
                                  remoteAddress: request.remoteAddress, size: request.body.received, sha256: nil, status: "failed",
                                  httpStatus: 500, version: nil, lakePath: nil, error: nil, startedAt: started, finishedAt: Timestamp.now())
        switch outcome {
        case .stored(let f), .unchanged(let f):
            record.status = f.status == .new ? "stored" : "unchanged"
            record.http_status = f.status == .new ? 201 : 200
            record.sha256 = f.sha256
            record.version = f.version
            record.lake_path = f.lakePath
            record.size = f.size ?? record.size
        case .checksumMismatch(let why):
            (record.status, record.http_status, record.error) = ("rejected", 400, why)
        case .bodyFailed(let f):
            (record.status, record.http_status, record.error) = (f.recordStatus, f.httpStatus, f.message)
        case .unavailable(let why):
            (record.status, record.http_status, record.error) = ("aborted", 503, why)
        case .failed(let why):
            record.error = why
        }
        recordUpload(record)
        return outcome
    }

    /// Records an upload in the manifest and the log (a failure to record is logged, not fatal:
    /// the version itself is committed either way).
    public func recordUpload(_ record: UploadRecord) {
        var meta: Logger.Metadata = [
            "client": "\(record.client)", "source": "\(record.source)", "path": "\(record.path)", "status": "\(record.status)",
            "http_status": "\(record.http_status)", "size": "\(record.size)",
        ]
        if let t = record.token_id { meta["token_id"] = "\(t)" }
        if let a = record.remote_addr { meta["remote_addr"] = "\(a)" }
        if let v = record.version { meta["version"] = "\(v)" }
        if let s = record.sha256 { meta["sha256"] = "\(s)" }
        if let e = record.error { meta["error"] = "\(e)" }
        let level: Logger.Level = record.http_status >= 500 && record.http_status != 503 ? .error : (record.http_status >= 400 ? .warning : .info)
        logger.log(level: level, "Upload", metadata: meta)
        do {
            try manifest.recordUpload(record)
        } catch {
            logger.error("Could not record an upload in the manifest", metadata: ["error": "\(error)"])
        }
    }

    static func outcome(of report: PullReport?, path: RelativePath, body: UploadBody) -> UploadOutcome {
        if let failure = body.failureReason { return .bodyFailed(failure) }
        guard let report else { return .failed("the manifest could not be written; see the log") }
        if let (_, message) = report.sourceErrors.first { return .failed(message) }
        guard let file = report.files.first(where: { $0.path == path.display }) else {
            return .failed("the upload was not ingested")
        }
        switch file.status {
        case .new: return .stored(file)
        case .unchanged: return .unchanged(file)
        case .skipped:
            if let short = body.changedWhileReading(bytesRead: body.received) { return .bodyFailed(.disconnected(short)) }
            return .unavailable(file.error ?? "the agent is shutting down")
        case .failed:
            let why = file.error ?? "failed"
            return why.hasPrefix(Ingestor.checksumMismatch) ? .checksumMismatch(why) : .failed(why)
        }
    }
}
