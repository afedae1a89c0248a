import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import SluiceFormats
import SluiceSupport

/// Where a bucket is: the endpoint, its region, and how the bucket is addressed.
public struct S3Bucket: Sendable, CustomStringConvertible {
    public var endpoint: URL
    public var region: String
    public var bucket: String
    /// `https://host/bucket/key` (MinIO, Ceph, moto) instead of `https://bucket.host/key`.
    public var pathStyle: Bool

    public init(endpoint: URL, region: String, bucket: String, pathStyle: Bool) {
        self.endpoint = endpoint
        self.region = region
        self.bucket = bucket
        self.pathStyle = pathStyle
    }

    public var description: String { "bucket \(bucket) at \(endpoint.absoluteString)" }

    /// `host[:port]` as sent in `Host` (and signed).
    var hostHeader: String {
        var host = endpoint.host ?? ""
        if host.contains(":") { host = "[\(host)]" }
        if !pathStyle { host = "\(bucket).\(host)" }
        if let port = endpoint.port, !(endpoint.scheme == "https" && port == 443) && !(endpoint.scheme == "http" && port == 80) {
            host += ":\(port)"
        }
        return host
    }

    /// The raw path of an object (or of the bucket, for `key == nil`).
    func path(key: String?) -> String {
        let base = endpoint.path.hasSuffix("/") ? String(endpoint.path.dropLast()) : endpoint.path
        let bucketPart = pathStyle ? "/\(bucket)" : ""
        guard let key else { return base + bucketPart + (pathStyle ? "" : "/") }
        return base + bucketPart + "/" + key
    }
}

/// An S3 failure, with the service's error code when it sent one.
public struct S3Error: Error, CustomStringConvertible, Sendable {
    public var status: Int?
    /// `AccessDenied`, `NoSuchBucket`, `SlowDown`, …
    public var code: String?
    public var message: String
    /// Worth another try soon: throttling, a 5xx, a reset connection.
    public var retryable: Bool
    /// The bucket's region, when the service said (a wrong `region`).
    public var region: String?

    public init(status: Int? = nil, code: String? = nil, message: String, retryable: Bool = false, region: String? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.retryable = retryable
        self.region = region
    }

    public var description: String { message }
    public var isPreconditionFailed: Bool { status == 412 || code == "PreconditionFailed" }
}

/// One object in a listing.
public struct S3Object: Sendable {
    /// The full key (decoded).
    public var key: String
    public var size: Int64
    /// As the service sent it, quotes included (`"9b2cf535f27731c974343645a3985328"`).
    public var etag: String
    /// As sent: ISO 8601 in UTC (`2026-11-25T11:30:04.000Z`).
    public var lastModified: String
}

/// A ListObjectsV2 page: up to 1,000 objects and the token for the next page.
public struct S3ListPage: Sendable {
    public var objects: [S3Object]
    public var nextContinuationToken: String?
}

/// The one HTTP client and event-loop group every S3 source of the process shares, made on
/// first use and kept until the process exits, so that connections are reused from one poll
/// to the next and no pass starts threads of its own.
enum S3Transport {
    /// S3's own event loops: body callbacks hash and write to the lake on them, which must
    /// never stall the loops the daemon's HTTP servers share (NIO's singleton group).
    static let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, min(4, System.coreCount)))

    static let http: HTTPClient = {
        var config = HTTPClient.Configuration(
            tlsConfiguration: .makeClientConfiguration(),
            redirectConfiguration: .disallow,
            timeout: .init(connect: .seconds(15), read: .seconds(60)),
            // Each source bounds its own requests (max_connections threads); the pool only
            // caps what all sources of one endpoint keep open together.
            connectionPool: .init(idleTimeout: .seconds(30), concurrentHTTP1ConnectionsPerHostSoftLimit: 64),
            decompression: .disabled)
        config.httpVersion = .http1Only
        // A refused or failed connect fails the request at once: `withRetries` backs off and
        // tries again a bounded number of times, instead of the pool retrying until the
        // connect timeout for every attempt (a dead server would hold a poll for minutes).
        config.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroupProvider: .shared(group), configuration: config)
    }()
}

/// A small blocking S3 client on AsyncHTTPClient: every call signs with SigV4, retries
/// throttling, 5xx answers and dropped connections with jittered exponential backoff, and
/// turns the service's error XML into a message. Calls block their thread; never call them
/// from an event loop or Swift's cooperative pool.
public final class S3Client: Sendable {
    public let bucket: S3Bucket
    let signer: SigV4Signer
    /// The process's one HTTP client for S3 (`S3Transport`).
    var http: HTTPClient { S3Transport.http }
    /// Attempts per request, for retryable failures.
    public let attempts: Int
    let baseDelayMs: Int

    /// A client for one bucket. Its requests run on `S3Transport`'s long-lived HTTP client;
    /// at most `maxConnections` of them run at once because the caller runs at most that many
    /// threads on it (each request blocks its thread).
    public init(bucket: S3Bucket, credentials: S3Credentials, attempts: Int = 5, baseDelayMs: Int = 200) {
        self.bucket = bucket
        self.attempts = attempts
        self.baseDelayMs = baseDelayMs
        signer = SigV4Signer(credentials: credentials, region: bucket.region)
    }

    // MARK: Requests

    /// A signed request for the bucket (`key == nil`) or an object.
    /// `payloadSHA256` is the body's SHA-256 in hex (the service checks it), the empty body's by default.
    func request(_ method: HTTPMethod, key: String?, query: [(name: String, value: String?)] = [],
                 headers extra: [(String, String)] = [], payloadSHA256: String = SigV4Signer.emptyPayloadSHA256) throws(S3Error) -> HTTPClient.Request {
        var r = SigV4Signer.Request(method: method.rawValue, path: bucket.path(key: key), query: query,
                                    headers: [("Host", bucket.hostHeader), ("x-amz-content-sha256", payloadSHA256)] + extra,
                                    payloadSHA256: payloadSHA256)
        let authorization = signer.sign(&r)
        var headers = HTTPHeaders(r.headers.map { ($0.name, $0.value) })
        headers.add(name: "Authorization", value: authorization)
        let scheme = bucket.endpoint.scheme ?? "https"
        let host = bucket.hostHeader
        guard let url = URL(string: "\(scheme)://\(host)\(r.target)") else {
            throw S3Error(message: "cannot form a URL for \(key.map { "key \($0)" } ?? "the bucket") at \(bucket.endpoint.absoluteString)")
        }
        do {
            return try HTTPClient.Request(url: url, method: method, headers: headers)
        } catch {
            throw S3Error(message: "bad request URL \(url.absoluteString): \(error)")
        }
    }

    /// Runs `body` until it succeeds, fails for good, or runs out of attempts; waits a jittered,
    /// doubling delay (from `baseDelayMs`, at most 10 s) between attempts.
    public func withRetries<T>(_ body: () throws(S3Error) -> T) throws(S3Error) -> T {
        var attempt = 0
        while true {
            do {
                return try body()
            } catch {
                attempt += 1
                guard error.retryable, attempt < attempts else { throw error }
                usleep(useconds_t(retryDelayMs(attempt: attempt) * 1000))
            }
        }
    }

    /// The wait before retry number `attempt` (1, 2, …): `baseDelayMs` doubling, at most 10 s,
    /// with "equal jitter" (a random point in its upper half) so that clients drift apart.
    public func retryDelayMs(attempt: Int) -> Int {
        let cap = min(10_000, baseDelayMs << min(max(attempt, 1) - 1, 10))
        return Int.random(in: cap / 2...max(cap / 2, cap))
    }

    /// Sends a request whose answer is small (listing, head, copy, delete) and returns it.
    func send(_ request: HTTPClient.Request, what: String) throws(S3Error) -> HTTPClient.Response {
        let response: HTTPClient.Response
        do {
            response = try http.execute(request: request).wait()
        } catch {
            throw Self.transportError(error, what: what, bucket: bucket)
        }
        guard (200..<300).contains(Int(response.status.code)) else {
            throw Self.serviceError(status: Int(response.status.code), headers: response.headers, body: response.body, what: what, bucket: bucket)
        }
        return response
    }

    /// One ListObjectsV2 page under `prefix`, keys URL-encoded on the wire (so that any key
    /// survives XML) and decoded here.
    public func listPage(prefix: String, continuationToken: String?, maxKeys: Int? = nil) throws(S3Error) -> S3ListPage {
        var query: [(name: String, value: String?)] = [("list-type", "2"), ("encoding-type", "url")]
        if !prefix.isEmpty { query.append(("prefix", prefix)) }
        if let continuationToken { query.append(("continuation-token", continuationToken)) }
        if let maxKeys { query.append(("max-keys", String(maxKeys))) }
        return try withRetries { () throws(S3Error) -> S3ListPage in
            let response = try send(try request(.GET, key: nil, query: query), what: "listing \(bucket.bucket)/\(prefix)")
            let data = Data((response.body ?? ByteBuffer()).readableBytesView)
            // Decoded because encoding-type=url was asked, whatever the answer says where.
            guard let page = ListParser.parse(data, urlEncoded: true) else {
                throw S3Error(message: "the listing of \(bucket.bucket)/\(prefix) is not a ListBucketResult (is endpoint an S3 API?)")
            }
            return page
        }
    }

    /// HEAD of an object: its size and ETag now.
    public func head(key: String) throws(S3Error) -> (size: Int64, etag: String) {
        try withRetries { () throws(S3Error) -> (size: Int64, etag: String) in
            let response = try send(try request(.HEAD, key: key), what: "checking \(key)")
            let size = Int64(response.headers.first(name: "Content-Length") ?? "") ?? -1
            return (size, response.headers.first(name: "ETag") ?? "")
        }
    }

    /// Server-side copy, only if the source still has `ifMatch` as its ETag.
    public func copy(from key: String, to target: String, ifMatch etag: String) throws(S3Error) {
        let source = "/\(bucket.bucket)/" + SigV4Signer.encode(key, keepSlash: true)
        try withRetries { () throws(S3Error) in
            let response = try send(try request(.PUT, key: target, headers: [("x-amz-copy-source", source), ("x-amz-copy-source-if-match", etag)]),
                                    what: "copying \(key) to \(target)")
            // A copy can fail after its 200 has been sent: the error is then in the body.
            if let body = response.body, let e = ErrorParser.parse(Data(body.readableBytesView)), let code = e.code {
                throw S3Error(status: 200, code: code, message: "copying \(key) to \(target) failed: \(code): \(e.message ?? "")",
                              retryable: code == "InternalError" || code == "SlowDown")
            }
        }
    }

    /// Deletes an object, only if its ETag is still `ifMatch` (where the service supports
    /// conditional deletes; the caller checks with `head` first).
    public func delete(key: String, ifMatch etag: String?) throws(S3Error) {
        try withRetries { () throws(S3Error) in
            _ = try send(try request(.DELETE, key: key, headers: etag.map { [("If-Match", $0)] } ?? []), what: "deleting \(key)")
        }
    }

    /// Starts a GET of an object (or of `range`), only while its ETag is `ifMatch`. The
    /// delegate gets the body as it arrives; the returned task ends when the body has.
    public func get(key: String, ifMatch etag: String?, range: Range<Int64>? = nil,
                    body: @escaping @Sendable (ByteBuffer, any EventLoop) -> EventLoopFuture<Void>) throws(S3Error) -> HTTPClient.Task<Void> {
        var headers: [(String, String)] = etag.map { [("If-Match", $0)] } ?? []
        if let range { headers.append(("Range", "bytes=\(range.lowerBound)-\(range.upperBound - 1)")) }
        let r = try request(.GET, key: key, headers: headers)
        let delegate = BodyDelegate(bucket: bucket, what: "downloading \(key)", expectPartial: range != nil, body: body)
        return http.execute(request: r, delegate: delegate)
    }

    // MARK: Errors

    public static func transportError(_ error: any Error, what: String, bucket: S3Bucket) -> S3Error {
        if let e = error as? S3Error { return e }
        let host = bucket.endpoint.host ?? "?"
        if error is NIOSSLError || error is BoringSSLError || error is NIOSSLExtraError {
            return S3Error(message: "\(what): TLS with \(host) failed: \(error) (check endpoint, and that the server's certificate is trusted by this host)")
        }
        if let h = error as? HTTPClientError {
            let retryable = [HTTPClientError.remoteConnectionClosed, .readTimeout, .connectTimeout, .writeTimeout].contains(h)
            return S3Error(message: "\(what): \(h) talking to \(host)", retryable: retryable)
        }
        // Refused or reset connections, unreachable hosts: worth another try.
        return S3Error(message: "\(what): cannot reach \(host): \(error)", retryable: true)
    }

    static func serviceError(status: Int, headers: HTTPHeaders, body: ByteBuffer?, what: String, bucket: S3Bucket) -> S3Error {
        let parsed = ErrorParser.parse(Data((body ?? ByteBuffer()).readableBytesView))
        let code = parsed?.code ?? (status == 404 ? "NotFound" : status == 403 ? "AccessDenied" : status == 412 ? "PreconditionFailed" : nil)
        let detail = parsed?.message.map { ": \($0)" } ?? ""
        let region = headers.first(name: "x-amz-bucket-region") ?? parsed?.region
        let retryable = status >= 500 || code == "SlowDown" || code == "RequestTimeout" || code == "InternalError"
        var message = "\(what): HTTP \(status)\(code.map { " \($0)" } ?? "")\(detail)"
        switch code {
        case "NoSuchBucket":
            message = "\(what): bucket \(bucket.bucket) does not exist at \(bucket.endpoint.absoluteString) (check bucket and endpoint)"
        case "AccessDenied":
            message = "\(what): access denied to bucket \(bucket.bucket)\(detail) (check the credentials' permissions: s3:ListBucket, s3:GetObject)"
        case "InvalidAccessKeyId":
            message = "\(what): the access key is not known to \(bucket.endpoint.host ?? "the endpoint") (check credentials_file and profile)"
        case "SignatureDoesNotMatch":
            message = "\(what): the signature does not match: the secret access key is wrong (check credentials_file and profile)"
        case "ExpiredToken", "TokenRefreshRequired", "InvalidToken":
            message = "\(what): the credentials have expired (\(code!)): renew aws_session_token in the credentials file"
        case "RequestTimeTooSkewed":
            message = "\(what): this host's clock is too far from the service's (\(code!)): fix the clock (NTP)"
        case "AuthorizationHeaderMalformed", "PermanentRedirect", "IllegalLocationConstraintException":
            if let region, region != bucket.region {
                message = "\(what): bucket \(bucket.bucket) is in region \(region), not \(bucket.region): set region = \"\(region)\""
            }
        default:
            if status == 301, let region, region != bucket.region {
                message = "\(what): bucket \(bucket.bucket) is in region \(region), not \(bucket.region): set region = \"\(region)\""
            }
        }
        return S3Error(status: status, code: code, message: message, retryable: retryable, region: region)
    }
}

/// Streams a GET's body to a callback; an error answer's (small) body is kept for its message.
final class BodyDelegate: HTTPClientResponseDelegate, @unchecked Sendable {  // its state is touched on the request's event loop only
    typealias Response = Void
    let bucket: S3Bucket
    let what: String
    let expectPartial: Bool
    let body: @Sendable (ByteBuffer, any EventLoop) -> EventLoopFuture<Void>
    // Touched on the request's event loop only.
    private var status = 0
    private var headers = HTTPHeaders()
    private var errorBody = ByteBuffer()

    init(bucket: S3Bucket, what: String, expectPartial: Bool, body: @escaping @Sendable (ByteBuffer, any EventLoop) -> EventLoopFuture<Void>) {
        self.bucket = bucket
        self.what = what
        self.expectPartial = expectPartial
        self.body = body
    }

    var ok: Bool { expectPartial ? status == 206 : status == 200 }

    func didReceiveHead(task: HTTPClient.Task<Void>, _ head: HTTPResponseHead) -> EventLoopFuture<Void> {
        status = Int(head.status.code)
        headers = head.headers
        return task.eventLoop.makeSucceededVoidFuture()
    }

    func didReceiveBodyPart(task: HTTPClient.Task<Void>, _ buffer: ByteBuffer) -> EventLoopFuture<Void> {
        if ok { return body(buffer, task.eventLoop) }
        var b = buffer
        if errorBody.readableBytes < 64 << 10 { errorBody.writeBuffer(&b) }
        return task.eventLoop.makeSucceededVoidFuture()
    }

    func didFinishRequest(task: HTTPClient.Task<Void>) throws {
        guard ok else {
            if (200..<300).contains(status) {
                throw S3Error(status: status, message: "\(what): expected HTTP \(expectPartial ? 206 : 200), got \(status) (does the endpoint support ranged GETs?)")
            }
            throw S3Client.serviceError(status: status, headers: headers, body: errorBody, what: what, bucket: bucket)
        }
    }
}

// MARK: XML

/// S3's answers are small UTF-8 XML documents, read with Sluice's own pull parser (the one the
/// xlsx reader uses), which refuses a DTD's entity declarations and caps names and text.
/// Foundation's XMLParser was used before: it crashed the process on a tag name with bytes that
/// are not UTF-8 and on a processing instruction without data, and it leaked memory on every
/// error it reported, so that an endpoint answering with an HTML page grew the agent at each
/// poll (all found by the `s3_xml` fuzz harness).
enum S3XML {
    /// Calls `element` at each element's start (`text` empty) and end (`text`: the character
    /// data since the previous start or end tag, entities decoded), by local name. False when
    /// the answer is not well-formed UTF-8 XML.
    static func read(_ data: Data, element: (_ start: Bool, _ name: String, _ text: String) -> Void) -> Bool {
        guard data.withUnsafeBytes({ String(validating: $0, as: UTF8.self) }) != nil else { return false }
        var offset = data.startIndex
        let parser = XMLPullParser(entry: "the answer", blockSize: 1 << 14) { buffer in
            let n = min(buffer.count, data.endIndex - offset)
            data.copyBytes(to: buffer.bindMemory(to: UInt8.self), from: offset..<offset + n)
            offset += n
            return n
        }
        parser.collectText = true
        do {
            while true {
                switch try parser.next() {
                case .eof: return true
                case .start: element(true, parser.localName, "")
                case .end: element(false, parser.localName, parser.textString)
                }
                parser.clearText()
            }
        } catch {
            return false
        }
    }
}

/// Parses a ListObjectsV2 answer (`<ListBucketResult>`).
///
/// With `urlEncoded` (the request asked for `encoding-type=url`), keys are URL-decoded. That
/// is decided by the request, not by the answer's `<EncodingType>`, which a server may send
/// after the `<Contents>` it applies to (moto does) or not at all. Continuation tokens are
/// opaque and go back to the server exactly as they came (S3 never encodes them).
package enum ListParser {
    package static func parse(_ data: Data, urlEncoded: Bool) -> S3ListPage? {
        var objects: [S3Object] = []
        var next: String?
        var truncated = false, sawRoot = false, inContents = false
        var key = "", size: Int64 = 0, etag = "", modified = ""
        let read = S3XML.read(data) { start, name, text in
            if start {
                if name == "ListBucketResult" { sawRoot = true }
                if name == "Contents" {
                    inContents = true
                    key = ""; size = 0; etag = ""; modified = ""
                }
            } else if inContents {
                switch name {
                case "Key": key = text
                case "Size": size = Int64(text.trimmingCharacters(in: .whitespaces)) ?? -1
                case "ETag": etag = text
                case "LastModified": modified = text.trimmingCharacters(in: .whitespacesAndNewlines)
                case "Contents":
                    inContents = false
                    objects.append(S3Object(key: urlEncoded ? (formDecode(key) ?? key) : key, size: size, etag: etag, lastModified: modified))
                default: break
                }
            } else {
                switch name {
                case "IsTruncated": truncated = text.trimmingCharacters(in: .whitespaces) == "true"
                case "NextContinuationToken": next = text
                default: break
                }
            }
        }
        guard read, sawRoot else { return nil }
        return S3ListPage(objects: objects, nextContinuationToken: truncated ? next : nil)
    }

    /// `encoding-type=url` keys: percent-encoded, with `+` for a space (AWS) or `%20`
    /// (moto, MinIO); a literal `+` always comes as `%2B`.
    static func formDecode(_ s: String) -> String? {
        s.replacingOccurrences(of: "+", with: " ").removingPercentEncoding
    }
}

/// Parses an `<Error>` answer.
package enum ErrorParser {
    package struct Parsed { var code: String?, message: String?, region: String? }

    package static func parse(_ data: Data) -> Parsed? {
        guard !data.isEmpty else { return nil }
        var parsed = Parsed()
        var sawError = false
        let read = S3XML.read(data) { start, name, text in
            if start {
                if name == "Error" { sawError = true }
                return
            }
            switch name {
            case "Code": parsed.code = text
            case "Message": parsed.message = text
            case "Region": parsed.region = text
            default: break
            }
        }
        guard read, sawError else { return nil }
        return parsed
    }
}
