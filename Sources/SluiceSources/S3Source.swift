import AsyncHTTPClient
import Foundation
import Synchronization
import Logging
import NIOCore
import SluiceLake
import SluiceManifest
import SluiceS3
import SluiceSupport
import SluiceIngest
import SluiceConfig
#if canImport(Glibc)
import Glibc
#endif

/// An S3-compatible bucket (AWS S3, MinIO, Ceph RGW, …), listed with ListObjectsV2 under
/// `prefix` and read with GETs; every request signed with SigV4.
///
/// An object is unchanged while its key, size and ETag are; its LastModified is its mtime
/// (for `min_age`). Each GET carries `If-Match: <ETag>`, so an object replaced mid-download
/// fails cleanly and is fetched again on the next poll.
public struct S3Source: Source {
    public let client: String
    public let name: String
    public let config: S3SourceConfig
    package let logger: Logger

    /// `s3://bucket`, the object's key.
    public func lineageDataset(_ path: RelativePath) -> (namespace: String, name: String) {
        ("s3://\(config.bucket)", config.prefix + path.display)
    }

    public init(client: String, name: String, config: S3SourceConfig, logger: Logger) {
        self.client = client
        self.name = name
        self.config = config
        self.logger = logger.about(client: client, source: name)
    }

    public var minAgeNanoseconds: Int64 { config.minAgeNanoseconds }
    public var afterIngest: AfterIngest { config.afterIngest }

    /// `client/source s3://bucket/prefix`, the start of every message about this source.
    package var location: String { "\(client)/\(name) s3://\(config.bucket)/\(config.prefix)" }

    public func beginPass(moveTargets: [String]) throws(SourceError) -> any SourcePass {
        let credentials = try S3CredentialsFile.load(config: config, key: "clients.\(client).sources.\(name)")
        let s3 = S3Client(bucket: S3Bucket(endpoint: config.endpoint, region: config.region, bucket: config.bucket, pathStyle: config.pathStyle),
                          credentials: credentials)
        // A relative target is below the prefix; an absolute one (a prefix from the bucket's
        // root) is when it starts with the prefix.
        let moved = moveTargets.compactMap { target -> RelativePath? in
            guard target.hasPrefix("/") else { return RelativePath(target) }
            let key = String(target.dropFirst())
            guard key.hasPrefix(config.prefix), key.count > config.prefix.count else { return nil }
            return RelativePath(String(key.dropFirst(config.prefix.count)))
        }
        return S3Pass(source: self, s3: s3, filter: config.filter.excluding(folders: moved))
    }

    /// The key prefix a move target puts objects under (ending in `/`).
    package func movePrefix(_ target: String) -> String {
        target.hasPrefix("/") ? String(target.dropFirst()) + "/" : config.prefix + target + "/"
    }
}

/// Reads S3 credentials: from `credentials_file` (INI, like ~/.aws/credentials) and
/// `profile`, or else from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
/// `AWS_SESSION_TOKEN`. Never logged.
public enum S3CredentialsFile {
    public static func load(config: S3SourceConfig, key: String,
                            environment: [String: String] = ProcessInfo.processInfo.environment) throws(SourceError) -> S3Credentials {
        try load(file: config.credentialsFile, profile: config.profile, key: key, environment: environment)
    }

    /// The credentials in `file`'s `[profile]`, or without a file those of the environment;
    /// `key` (the config table) names them in errors.
    public static func load(file: String?, profile: String, key: String,
                            environment: [String: String] = ProcessInfo.processInfo.environment) throws(SourceError) -> S3Credentials {
        guard let path = file else {
            guard let id = environment["AWS_ACCESS_KEY_ID"], !id.isEmpty, let secret = environment["AWS_SECRET_ACCESS_KEY"], !secret.isEmpty else {
                throw SourceError("\(key): no credentials_file is set and AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are not in the environment "
                    + "— set credentials_file (an INI file like ~/.aws/credentials, mode 600) or export them to the service")
            }
            let token = environment["AWS_SESSION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
            return S3Credentials(accessKeyID: id, secretAccessKey: secret, sessionToken: token)
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SourceError("\(key).credentials_file \(path) cannot be read: \(String(cString: strerror(errno))) — create it (mode 600) or fix the path")
        }
        let values = parse(String(decoding: data, as: UTF8.self), profile: profile)
        guard let values else {
            throw SourceError("\(key).credentials_file \(path) has no [\(profile)] section — add it or set profile")
        }
        guard let id = values["aws_access_key_id"], !id.isEmpty else {
            throw SourceError("\(key).credentials_file \(path): [\(profile)] has no aws_access_key_id")
        }
        guard let secret = values["aws_secret_access_key"], !secret.isEmpty else {
            throw SourceError("\(key).credentials_file \(path): [\(profile)] has no aws_secret_access_key")
        }
        return S3Credentials(accessKeyID: id, secretAccessKey: secret, sessionToken: values["aws_session_token"].flatMap { $0.isEmpty ? nil : $0 })
    }

    /// The `key = value` lines of `[profile]` (or `[profile NAME]`, as in ~/.aws/config);
    /// nil when there is no such section.
    package static func parse(_ text: String, profile: String) -> [String: String]? {
        var current: String?
        var found: [String: String]?
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") && line.hasSuffix("]") {
                var section = line.dropFirst().dropLast().trimmingCharacters(in: .whitespaces)
                if section.hasPrefix("profile ") { section = section.dropFirst(8).trimmingCharacters(in: .whitespaces) }
                current = section
                if section == profile && found == nil { found = [:] }
                continue
            }
            guard current == profile, let eq = line.firstIndex(of: "=") else { continue }
            let name = line[..<eq].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            found?[name] = value
        }
        return found
    }
}

/// One pass over a bucket: one HTTP client (its connection pool) for the pass.
package final class S3Pass: SourcePass, @unchecked Sendable {  // read-only after init; its parts are thread-safe
    package let source: S3Source
    package let s3: S3Client
    /// `include`/`exclude`, also excluding every move target below the prefix.
    package let filter: PathFilter

    package init(source: S3Source, s3: S3Client, filter: PathFilter) {
        self.source = source
        self.s3 = s3
        self.filter = filter
    }

    package func fail(_ e: S3Error) -> SourceError { SourceError("\(source.location): \(e.message)") }

    /// The object's key for a path below `prefix`.
    package func key(_ path: RelativePath) -> String { source.config.prefix + path.display }

    package func list(issue: (ListingIssue) -> Void, candidate: (Candidate) -> Void) throws(SourceError) {
        let prefix = source.config.prefix
        var token: String?
        repeat {
            let page: S3ListPage
            do {
                page = try s3.listPage(prefix: prefix, continuationToken: token)
            } catch {
                throw fail(error)
            }
            for object in page.objects {
                guard object.key.hasPrefix(prefix) else { continue }
                let relative = String(object.key.dropFirst(prefix.count))
                // Folder markers, and the prefix itself.
                if relative.isEmpty || relative.hasSuffix("/") { continue }
                let path = RelativePath(relative)
                guard filter.accepts(file: path.bytes) else { continue }
                if let why = Self.unsafeKey(relative) {
                    issue(ListingIssue(path: path, kind: .skipped, message: "key \(object.key) in bucket \(source.config.bucket) \(why); not ingested — rename it in the bucket"))
                    continue
                }
                guard let modified = Timestamp.nanoseconds(object.lastModified) else {
                    issue(ListingIssue(path: path, kind: .failed, message: "key \(object.key) in bucket \(source.config.bucket) has an unreadable LastModified \"\(object.lastModified)\""))
                    continue
                }
                candidate(Candidate(path: path, size: object.size, mtimeNs: modified, etag: object.etag))
            }
            token = page.nextContinuationToken
        } while token != nil
    }

    /// Why a key cannot be a lake path (empty, `.` or `..` components, a NUL), or nil.
    package static func unsafeKey(_ relative: String) -> String? {
        if relative.utf8.contains(0) { return "contains a NUL byte" }
        if relative.hasPrefix("/") { return "starts with '/' below the prefix" }
        for component in relative.split(separator: "/", omittingEmptySubsequences: false) {
            if component.isEmpty { return "has an empty path component ('//')" }
            if component == "." || component == ".." { return "has a '\(component)' path component" }
        }
        return nil
    }

    package func open(_ candidate: Candidate) throws(SourceError) -> any ByteStream {
        if candidate.size >= S3RangedStream.parallelThreshold {
            return S3RangedStream(pass: self, key: key(candidate.path), candidate: candidate)
        }
        return try S3ObjectStream(pass: self, key: key(candidate.path), candidate: candidate)
    }

    package func applyAfterIngest(_ action: AfterIngest, to candidate: Candidate) throws(SourceError) {
        let key = key(candidate.path)
        guard let etag = candidate.etag else { return }
        do {
            switch action {
            case .keep:
                return
            case .delete:
                try deleteIfUnchanged(key: key, etag: etag)
            case .move(let folder):
                let target = source.movePrefix(folder) + candidate.path.display
                try s3.copy(from: key, to: target, ifMatch: etag)
                try deleteIfUnchanged(key: key, etag: etag)
            }
        } catch {
            if error.isPreconditionFailed {
                throw SourceError("\(source.location): key \(key) changed after it was ingested; left in place (the new content is fetched on the next poll)")
            }
            throw fail(error)
        }
    }

    /// Deletes `key` only while it is still the object that was ingested: checked with HEAD,
    /// and the DELETE carries `If-Match` for stores that honour it.
    private func deleteIfUnchanged(key: String, etag: String) throws(S3Error) {
        let now = try s3.head(key: key)
        guard now.etag == etag else { throw S3Error(status: 412, code: "PreconditionFailed", message: "key \(key) changed") }
        try s3.delete(key: key, ifMatch: etag)
    }

    package func end() {}
}

/// One object read with a single GET: the body flows through a bounded queue (8 MiB) from
/// the event loop, hashed there as it arrives, to the copier's thread. A GET that fails in a
/// way worth retrying (a reset connection, a 5xx, throttling) is resumed after a backoff with
/// a ranged GET from the first byte not yet received, still under `If-Match`, so the queue and
/// its hash go on as if nothing had happened.
package final class S3ObjectStream: SelfHashingStream, Sendable {
    package let body: UploadBody
    package let candidate: Candidate
    package let key: String
    package let pass: S3Pass
    /// The GET in flight, and whether the copy has closed the stream.
    private let state = Mutex<(task: HTTPClient.Task<Void>?, closed: Bool)>((nil, false))

    package init(pass: S3Pass, key: String, candidate: Candidate) throws(SourceError) {
        self.key = key
        self.candidate = candidate
        self.pass = pass
        body = UploadBody(declaredLength: candidate.size, capacity: 8 << 20, readMinimum: 256 << 10)
        do {
            try start(from: 0, attempt: 0)
        } catch {
            throw pass.fail(error)
        }
    }

    /// Starts the GET of the bytes from `offset` on (the whole object at 0).
    private func start(from offset: Int64, attempt: Int) throws(S3Error) {
        let body = self.body
        let range: Range<Int64>? = offset > 0 ? offset..<candidate.size : nil
        let task = try pass.s3.get(key: key, ifMatch: candidate.etag ?? "*", range: range) { buffer, loop in
            S3ObjectStream.feed(body, buffer, on: loop)
        }
        task.futureResult.whenComplete { [self] result in
            switch result {
            case .success:
                body.finish()
            case .failure(let error):
                failed(S3Client.transportError(error, what: "downloading \(key)", bucket: pass.s3.bucket), attempt: attempt)
            }
        }
        state.withLock { $0.task = task }
    }

    private func failed(_ e: S3Error, attempt: Int) {
        let received = body.bytesQueued
        let stopped = state.withLock { $0.closed }
        if e.retryable, !stopped, attempt + 1 < pass.s3.attempts, received < candidate.size {
            let delay = pass.s3.retryDelayMs(attempt: attempt + 1)
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(delay)) { [self] in
                guard !state.withLock({ $0.closed }) else { return }
                do throws(S3Error) {
                    try start(from: received, attempt: attempt + 1)
                } catch {
                    failed(error, attempt: attempt + 1)
                }
            }
            return
        }
        body.fail(.failed(pass.fail(e.isPreconditionFailed
            ? S3Error(message: "key \(key) changed since it was listed (ETag no longer \(candidate.etag ?? "?")); retried on the next poll")
            : e).message))
    }

    /// Hands a chunk to the queue; the answer completes when there is room for more.
    package static func feed(_ body: UploadBody, _ buffer: ByteBuffer, on loop: any EventLoop) -> EventLoopFuture<Void> {
        let room = loop.makePromise(of: Void.self)
        if !body.push(buffer, resume: { room.succeed(()) }) {
            room.fail(S3Error(message: "the copy stopped reading"))
        }
        return room.futureResult
    }

    package func read(into buffer: UnsafeMutableRawBufferPointer) throws(SourceError) -> Int { try body.read(into: buffer) }
    package var sha256OfBytesRead: String { body.sha256OfBytesRead }

    package func changedWhileReading(bytesRead: Int64) -> String? {
        bytesRead == candidate.size ? nil
            : "key \(key) changed size while copying (listed \(candidate.size) bytes, read \(bytesRead)); retried on the next poll"
    }

    package func close() {
        body.close()
        let task = state.withLock {
            $0.closed = true
            return $0.task
        }
        task?.cancel()
    }
}

/// A large object fetched as ranged GETs over up to `max_connections` connections at once,
/// each range written into the staging file where it belongs; the copier hashes the file's
/// contiguous prefix as ranges land.
package final class S3RangedStream: RangeFetching, @unchecked Sendable {  // used by the copier thread; the fetch it starts has its own guards
    package static let parallelThreshold: Int64 = 64 << 20

    /// Two ranges per connection, at least 16 MiB each (whole MiB): few enough requests that
    /// per-request costs stay small (some stores read the whole object for every range), and
    /// enough that connections which finish early take over the rest.
    package static func chunkSize(size: Int64, connections: Int) -> Int64 {
        let perRange = (size + Int64(2 * max(1, connections)) - 1) / Int64(2 * max(1, connections))
        let mib: Int64 = 1 << 20
        return max(16 * mib, (perRange + mib - 1) / mib * mib)
    }

    package let pass: S3Pass
    package let key: String
    package let candidate: Candidate

    package init(pass: S3Pass, key: String, candidate: Candidate) {
        self.pass = pass
        self.key = key
        self.candidate = candidate
    }

    package func startParallelFetch(into fd: Int32, stagingPath: String) -> (any ParallelFetch)? {
        S3RangedFetch(stream: self, fd: fd, stagingPath: stagingPath)
    }

    package func read(into buffer: UnsafeMutableRawBufferPointer) throws(SourceError) -> Int {
        throw SourceError("key \(key): a ranged download is read through its parallel fetch")
    }

    package func changedWhileReading(bytesRead: Int64) -> String? {
        bytesRead == candidate.size ? nil
            : "key \(key) changed while copying (listed \(candidate.size) bytes, fetched \(bytesRead)); retried on the next poll"
    }

    package func close() {}
}

/// Workers each take the next range in turn and GET it with `If-Match`; a failed range is
/// retried (throttling, a dropped connection) before the fetch gives up.
package final class S3RangedFetch: ParallelFetch, Sendable {
    package let stream: S3RangedStream
    package let fd: Int32
    package let stagingPath: String
    package let progress: ChunkProgress
    /// The next range to take.
    private let nextChunk = Atomic<Int>(0)

    package init(stream: S3RangedStream, fd: Int32, stagingPath: String) {
        self.stream = stream
        self.fd = fd
        self.stagingPath = stagingPath
        let size = stream.candidate.size
        let connections = stream.pass.source.config.maxConnections
        let chunkSize = S3RangedStream.chunkSize(size: size, connections: connections)
        let chunks = Int((size + chunkSize - 1) / chunkSize)
        let workers = max(1, min(connections, chunks))
        progress = ChunkProgress(size: size, chunkSize: chunkSize, workers: workers)
        for _ in 0..<workers {
            let t = Thread { [self] in run() }
            t.stackSize = 1 << 20
            t.start()
        }
    }

    private func take() -> Int? {
        let i = nextChunk.add(1, ordering: .relaxed).oldValue
        return i < progress.chunks ? i : nil
    }

    private func run() {
        var failure: SourceError?
        var changed = false
        let s3 = stream.pass.s3
        let etag = stream.candidate.etag ?? "*"
        while !progress.shouldStop(), let chunk = take() {
            let start = Int64(chunk) * progress.chunkSize
            let end = min(progress.size, start + progress.chunkSize)
            let written = WrittenCount()
            do {
                try s3.withRetries { () throws(S3Error) in
                    try fetch(chunk: chunk, range: start..<end, etag: etag, written: written)
                }
            } catch {
                if error.isPreconditionFailed {
                    changed = true
                } else {
                    failure = stream.pass.fail(error)
                }
                break
            }
        }
        progress.workerEnded(failure: failure, changed: changed)
    }

    /// One ranged GET, written as it arrives. A retry starts the range again from its start,
    /// so the bytes it already landed are counted only once.
    private func fetch(chunk: Int, range: Range<Int64>, etag: String, written: WrittenCount) throws(S3Error) {
        written.retry()
        let fd = self.fd, stagingPath = self.stagingPath, progress = self.progress
        let task = try stream.pass.s3.get(key: stream.key, ifMatch: etag, range: range) { buffer, loop in
            let offset = range.lowerBound + written.value
            guard offset + Int64(buffer.readableBytes) <= range.upperBound else {
                return loop.makeFailedFuture(S3Error(message: "the server sent more than the range asked for"))
            }
            let why = buffer.withUnsafeReadableBytes { ChunkProgress.write(fd: fd, $0, at: offset, stagingPath: stagingPath) }
            if let why { return loop.makeFailedFuture(S3Error(message: why)) }
            // Only bytes beyond what an earlier attempt landed count towards the prefix.
            let before = written.value
            written.value += Int64(buffer.readableBytes)
            let fresh = written.value - max(before, written.landed)
            if fresh > 0 {
                progress.landed(chunk: chunk, bytes: fresh)
                written.landed = written.value
            }
            return loop.makeSucceededVoidFuture()
        }
        do {
            try task.wait()
        } catch {
            throw S3Client.transportError(error, what: "downloading \(stream.key) bytes \(range.lowerBound)-\(range.upperBound - 1)", bucket: stream.pass.s3.bucket)
        }
        guard written.value == range.count else {
            throw S3Error(message: "key \(stream.key) changed while copying (range \(range.lowerBound)-\(range.upperBound - 1) was \(written.value) bytes)",
                          retryable: false)
        }
    }

    package func waitForPrefix(beyond known: Int64) throws(SourceError) -> (prefix: Int64, done: Bool) {
        try progress.waitForPrefix(beyond: known)
    }

    package func cancel() { progress.cancel() }
}

/// Bytes of one range written by the current attempt, and the most any attempt landed
/// (counted once in the prefix). Touched by one event loop at a time.
package final class WrittenCount: @unchecked Sendable {  // touched by one event loop at a time (one request after another)
    package var value: Int64 = 0
    package var landed: Int64 = 0
    package func retry() { value = 0 }
}

/// An S3-compatible bucket (`type = "s3"`), listed under `prefix` recursively.
public struct S3SourceConfig: Sendable, Equatable {
    /// `https://s3.eu-central-1.amazonaws.com`, `http://127.0.0.1:9000`, …
    public var endpoint: URL
    public var region: String
    public var bucket: String
    /// Paths are relative to it; "" lists the whole bucket.
    public var prefix: String
    public var pathStyle: Bool
    /// Absolute path of an INI file like ~/.aws/credentials; nil: AWS_* environment variables.
    public var credentialsFile: String?
    public var profile: String
    public var filter: PathFilter
    public var minAgeNanoseconds: Int64
    /// `move:<prefix>` copies to that prefix (below `prefix`), then deletes.
    public var afterIngest: AfterIngest
    public var maxConnections: Int
    public var pollIntervalNanoseconds: Int64

    package init(endpoint: URL, region: String, bucket: String, prefix: String, pathStyle: Bool, credentialsFile: String? = nil, profile: String, filter: PathFilter, minAgeNanoseconds: Int64, afterIngest: AfterIngest, maxConnections: Int, pollIntervalNanoseconds: Int64) {
        self.endpoint = endpoint
        self.region = region
        self.bucket = bucket
        self.prefix = prefix
        self.pathStyle = pathStyle
        self.credentialsFile = credentialsFile
        self.profile = profile
        self.filter = filter
        self.minAgeNanoseconds = minAgeNanoseconds
        self.afterIngest = afterIngest
        self.maxConnections = maxConnections
        self.pollIntervalNanoseconds = pollIntervalNanoseconds
    }
}

extension S3SourceConfig: SourceSettings {
    package static let typeName = "s3"

    package var drive: SourceDrive {
        .poll(server: "s3 \(endpoint.absoluteString) \(bucket)", intervalNanoseconds: pollIntervalNanoseconds)
    }

    package var summary: String {
        let creds = credentialsFile.map { "credentials \($0) [\(profile)]" } ?? "credentials from AWS_* environment variables"
        return "s3 \(endpoint.absoluteString) bucket \(bucket) prefix \"\(prefix)\" (\(region)\(pathStyle ? ", path style" : "")), \(creds), "
            + "max_connections \(maxConnections), min_age \(minAgeNanoseconds / 1_000_000) ms, after_ingest \(afterIngest)"
    }

    /// A missing credentials file, profile or key.
    package func secretProblems(key: String) -> [String] {
        do {
            _ = try S3CredentialsFile.load(config: self, key: key)
            return []
        } catch {
            return [error.message]
        }
    }

    package func makeSource(_ context: SourceContext) -> (any Source)? {
        S3Source(client: context.client, name: context.name, config: self, logger: context.logger)
    }
}

/// Reads `type = "s3"` tables.
package struct S3SourceType: SourceType {
    package let name = S3SourceConfig.typeName
    package init() {}

    package func parse(_ t: TOMLTable, path: String, reader: TableReader, stateDir: String) throws(ConfigError) -> any SourceSettings {
        try reader.checkKeys(t, path: path, allowed: [
            "type", "endpoint", "region", "bucket", "prefix", "path_style", "credentials_file", "profile",
            "include", "exclude", "min_age", "after_ingest", "max_connections", "poll_interval",
        ])
        let bucket = try reader.string(t, "bucket", path, required: true)!
        guard TableReader.isBucketName(bucket) else {
            throw reader.fail("\(path).bucket", "expected a bucket name (letters, digits, '-', '.', '_'), found \"\(bucket)\"")
        }
        let prefix = try reader.string(t, "prefix", path, required: false) ?? ""
        guard !prefix.hasPrefix("/"), !prefix.utf8.contains(0) else {
            throw reader.fail("\(path).prefix", "a key prefix has no leading '/': write \"\(prefix.drop { $0 == "/" })\"")
        }
        let s3 = try reader.s3Endpoint(t, path: path, bucket: bucket)
        // Keys are listed recursively: `recursive` is not among the allowed keys.
        let common = try reader.commonKeys(t, path)
        let maxConnections = try reader.integer(t, "max_connections", path, range: 1...64) ?? 4
        let poll = try reader.duration(t, "poll_interval", path) ?? 300_000_000_000
        guard poll > 0 else { throw reader.fail("\(path).poll_interval", "must be longer than 0") }
        return S3SourceConfig(endpoint: s3.endpoint, region: s3.region, bucket: bucket, prefix: prefix, pathStyle: s3.pathStyle,
                              credentialsFile: s3.credentialsFile, profile: s3.profile, filter: common.filter,
                              minAgeNanoseconds: common.minAge, afterIngest: common.afterIngest, maxConnections: maxConnections, pollIntervalNanoseconds: poll)
    }
}
