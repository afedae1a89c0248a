import Crypto
import Foundation
import Logging
import NIOCore
import SluiceSupport
import SluiceLake
import SluiceManifest
import SluiceIngest
import SluiceConfig
import SluiceSources
import SluiceTransform
import SluiceFormats
#if canImport(Glibc)
import Glibc
#endif
/// Uploads to the same path wait for each other, so that their versions are numbered in turn.
package final class PathLocks: @unchecked Sendable {  // state guarded by `condition`: uploads to one path wait on it
    private let condition = NSCondition()
    private var held = Set<String>()

    package func withLock<T>(_ key: String, _ body: () throws -> T) rethrows -> T {
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
package final class UploadEndpoint: SourceRunner {
    package let config: SourceConfig
    package init(config: SourceConfig) { self.config = config }
    package func start() {}
    package func stop() {}
    package func join(until: Date) -> Bool { true }
    package var hasEnded: Bool { false }
    package func sameConfig(as source: SourceConfig) -> Bool { source == config }
}

extension AgentRuntime {
    /// The `http` sources of a client, by name (empty when it has none or is unknown).
    public func uploadSources(client: String) -> [String: HTTPSourceConfig] {
        guard let c = config.client(client) else { return [:] }
        var out: [String: HTTPSourceConfig] = [:]
        for s in c.sources { if let h = s.settings as? HTTPSourceConfig { out[s.name] = h } }
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

    package static func outcome(of report: PullReport?, path: RelativePath, body: UploadBody) -> UploadOutcome {
        if let failure = body.failureReason { return .bodyFailed(failure) }
        guard let report else { return .failed("the manifest could not be written; see the log") }
        if let (_, message) = report.sourceErrors.first { return .failed(message) }
        guard let file = report.files.first(where: { $0.rawPath == path }) else {
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
            return file.problem == .checksumMismatch ? .checksumMismatch(why) : .failed(why)
        }
    }
}
