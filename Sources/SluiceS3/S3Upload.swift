import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import SluiceSupport

// Writes to a bucket: single PUTs and multipart uploads of local files, every body checked by
// the service against the SHA-256 computed here, and conditional on no object having the key
// yet when asked (`If-None-Match: *`, a 412 when one has). Downloads to a local file, hashed
// as they arrive.

/// A byte range of an open local file, sent as a request body straight from the file.
public struct FileRegion: Sendable {
    public var fd: Int32
    public var offset: Int64
    public var length: Int64
    /// Named in errors.
    public var path: String

    public init(fd: Int32, offset: Int64, length: Int64, path: String) {
        self.fd = fd
        self.offset = offset
        self.length = length
        self.path = path
    }

    /// The region as a streamed body: read a MiB at a time on NIO's thread pool (never on an
    /// event loop), each piece written once the one before it has been.
    var body: HTTPClient.Body {
        let region = self
        return .stream(contentLength: length) { writer in
            let loop = S3Transport.group.any()
            @Sendable func send(from done: Int64) -> EventLoopFuture<Void> {
                if done == region.length { return loop.makeSucceededVoidFuture() }
                let count = Int(min(1 << 20, region.length - done))
                return NIOThreadPool.singleton.runIfActive(eventLoop: loop) { () throws -> ByteBuffer in
                    var buffer = ByteBufferAllocator().buffer(capacity: count)
                    var failure: Int32 = 0
                    buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { raw in
                        let n = pread(region.fd, raw.baseAddress!, count, off_t(region.offset + done))
                        if n < 0 { failure = errno }
                        return max(n, 0)
                    }
                    if failure != 0 { throw S3Error(message: "reading \(region.path) failed: \(String(cString: strerror(failure)))") }
                    if buffer.readableBytes == 0 { throw S3Error(message: "\(region.path) ended \(region.length - done) bytes early (was it truncated?)") }
                    return buffer
                }.flatMap { buffer in
                    writer.write(.byteBuffer(buffer)).flatMap { send(from: done + Int64(buffer.readableBytes)) }
                }
            }
            return send(from: 0)
        }
    }
}

/// One uploaded part of a multipart upload.
public struct S3Part: Sendable {
    public var number: Int
    public var etag: String
    /// Base64 SHA-256 of the part, as sent.
    public var checksum: String

    public init(number: Int, etag: String, checksum: String) {
        self.number = number
        self.etag = etag
        self.checksum = checksum
    }
}

/// A multipart upload that was started and neither completed nor aborted.
public struct S3PendingUpload: Sendable {
    public var key: String
    public var uploadID: String
    /// As sent: ISO 8601 in UTC.
    public var initiated: String
}

extension S3Client {
    /// Headers that make the service check a body against its SHA-256.
    private static func checksumHeaders(_ sha256: [UInt8]) -> [(String, String)] {
        [("x-amz-checksum-sha256", Data(sha256).base64EncodedString()), ("x-amz-sdk-checksum-algorithm", "SHA256")]
    }

    /// PUTs `region` as `key`. The SHA-256 goes as the signed payload hash and as
    /// `x-amz-checksum-sha256`, so a body that arrives different is refused. With `ifNoneMatch`,
    /// only when no object has the key: false when one had (412), and nothing was written.
    public func put(key: String, from region: FileRegion, sha256: [UInt8], ifNoneMatch: Bool) throws(S3Error) -> Bool {
        var headers = Self.checksumHeaders(sha256) + [("Content-Length", String(region.length))]
        if ifNoneMatch { headers.append(("If-None-Match", "*")) }
        return try sendBody(key: key, query: [], headers: headers, region: region, sha256: sha256, what: "uploading \(key)") != nil
    }

    /// Starts a multipart upload of `key` whose parts carry SHA-256 checksums; its upload id.
    public func createMultipartUpload(key: String) throws(S3Error) -> String {
        try withRetries { () throws(S3Error) -> String in
            let response = try send(try request(.POST, key: key, query: [("uploads", nil)], headers: [("x-amz-checksum-algorithm", "SHA256")]),
                                    what: "starting the upload of \(key)")
            guard let id = XMLFields.parse(response.body, record: nil, fields: ["UploadId"]).top["UploadId"], !id.isEmpty else {
                throw S3Error(message: "starting the upload of \(key): the answer has no UploadId")
            }
            return id
        }
    }

    /// Uploads part `number` (from 1) of an upload; its part record for the completion.
    public func uploadPart(key: String, uploadID: String, number: Int, from region: FileRegion, sha256: [UInt8]) throws(S3Error) -> S3Part {
        let headers = Self.checksumHeaders(sha256) + [("Content-Length", String(region.length))]
        let etag = try sendBody(key: key, query: [("partNumber", String(number)), ("uploadId", uploadID)], headers: headers,
                                region: region, sha256: sha256, what: "uploading part \(number) of \(key)")
        guard let etag, !etag.isEmpty else { throw S3Error(message: "uploading part \(number) of \(key): the answer has no ETag") }
        return S3Part(number: number, etag: etag, checksum: Data(sha256).base64EncodedString())
    }

    /// Completes an upload: the object appears whole, at once. With `ifNoneMatch`, only when
    /// no object has the key: false when one had (412); the caller then aborts the upload.
    public func completeMultipartUpload(key: String, uploadID: String, parts: [S3Part], ifNoneMatch: Bool) throws(S3Error) -> Bool {
        var xml = "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
        for p in parts.sorted(by: { $0.number < $1.number }) {
            xml += "<Part><PartNumber>\(p.number)</PartNumber><ETag>\(Self.xmlEscaped(p.etag))</ETag><ChecksumSHA256>\(p.checksum)</ChecksumSHA256></Part>"
        }
        xml += "</CompleteMultipartUpload>"
        let body = Array(xml.utf8)
        let digest = SHA256.hash(data: body)
        var headers: [(String, String)] = [("Content-Length", String(body.count))]
        if ifNoneMatch { headers.append(("If-None-Match", "*")) }
        return try withRetries { () throws(S3Error) -> Bool in
            var r = try request(.POST, key: key, query: [("uploadId", uploadID)], headers: headers, payloadSHA256: hexString(digest))
            r.body = .bytes(body)
            do throws(S3Error) {
                let response = try send(r, what: "completing the upload of \(key)")
                // Like a copy, a completion can fail after its 200 has been sent.
                if let e = XMLFields.error(response.body) {
                    throw S3Error(status: 200, code: e.code, message: "completing the upload of \(key) failed: \(e.code): \(e.message)",
                                  retryable: e.code == "InternalError" || e.code == "SlowDown")
                }
                return true
            } catch where error.isPreconditionFailed {
                return false
            }
        }
    }

    /// Aborts an upload; its parts are freed. An upload already gone is not an error.
    public func abortMultipartUpload(key: String, uploadID: String) throws(S3Error) {
        try withRetries { () throws(S3Error) in
            do throws(S3Error) {
                _ = try send(try request(.DELETE, key: key, query: [("uploadId", uploadID)]), what: "aborting the upload of \(key)")
            } catch where error.status == 404 {
            }
        }
    }

    /// Every multipart upload under `prefix` that is neither completed nor aborted.
    public func listMultipartUploads(prefix: String) throws(S3Error) -> [S3PendingUpload] {
        var uploads: [S3PendingUpload] = []
        var markers: (key: String, id: String)?
        while true {
            var query: [(name: String, value: String?)] = [("uploads", nil), ("prefix", prefix)]
            if let markers { query += [("key-marker", markers.key), ("upload-id-marker", markers.id)] }
            let page = try withRetries { () throws(S3Error) -> (top: [String: String], records: [[String: String]]) in
                let response = try send(try request(.GET, key: nil, query: query), what: "listing the unfinished uploads under \(bucket.bucket)/\(prefix)")
                return XMLFields.parse(response.body, record: "Upload", fields: ["Key", "UploadId", "Initiated", "IsTruncated", "NextKeyMarker", "NextUploadIdMarker"])
            }
            uploads += page.records.compactMap { r in
                guard let key = r["Key"], let id = r["UploadId"] else { return nil }
                return S3PendingUpload(key: key, uploadID: id, initiated: r["Initiated"] ?? "")
            }
            guard page.top["IsTruncated"] == "true", let key = page.top["NextKeyMarker"], let id = page.top["NextUploadIdMarker"],
                  (key, id) != (markers?.key ?? "", markers?.id ?? "") else { break }
            markers = (key, id)
        }
        return uploads
    }

    /// Downloads `key` into the open file `fd` (from its start; nil: nowhere), hashed as it
    /// arrives: its SHA-256 (hex) and size.
    public func download(key: String, to fd: Int32?, path: String) throws(S3Error) -> (sha256: String, size: Int64) {
        final class Sink: @unchecked Sendable {  // touched by the request's body callbacks, which run one after another
            var hasher = SHA256()
            var size: Int64 = 0
            var failure: Int32 = 0
        }
        return try withRetries { () throws(S3Error) -> (sha256: String, size: Int64) in
            if let fd, ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0 {
                throw S3Error(message: "\(path): \(String(cString: strerror(errno)))")
            }
            let sink = Sink()
            let task = try get(key: key, ifMatch: nil) { buffer, loop in
                buffer.withUnsafeReadableBytes { raw in
                    sink.hasher.update(bufferPointer: raw)
                    sink.size += Int64(raw.count)
                    guard let fd else { return }
                    var done = 0
                    while done < raw.count && sink.failure == 0 {
                        let n = write(fd, raw.baseAddress! + done, raw.count - done)
                        if n < 0 && errno != EINTR { sink.failure = errno } else if n > 0 { done += n }
                    }
                }
                return loop.makeSucceededVoidFuture()
            }
            do {
                try task.futureResult.wait()
            } catch let e as S3Error {
                throw e
            } catch {
                throw Self.transportError(error, what: "downloading \(key)", bucket: bucket)
            }
            if sink.failure != 0 { throw S3Error(message: "writing \(path) failed: \(String(cString: strerror(sink.failure)))") }
            return (hexString(sink.hasher.finalize()), sink.size)
        }
    }

    /// Sends a PUT whose body is `region`; the answer's ETag, or nil for a 412.
    private func sendBody(key: String, query: [(name: String, value: String?)], headers: [(String, String)], region: FileRegion,
                          sha256: [UInt8], what: String) throws(S3Error) -> String? {
        try withRetries { () throws(S3Error) -> String? in
            var r = try request(.PUT, key: key, query: query, headers: headers, payloadSHA256: hexString(sha256))
            r.body = region.body
            do throws(S3Error) {
                return try send(r, what: what).headers.first(name: "ETag") ?? ""
            } catch where error.isPreconditionFailed {
                return nil
            }
        }
    }

    static func xmlEscaped(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
            .replacingOccurrences(of: "\"", with: "&quot;")
    }
}

/// Picks named text fields out of a small XML answer: those outside any `record` element
/// (`top`), and each `record` element's.
package enum XMLFields {
    package static func parse(_ body: ByteBuffer?, record: String?, fields: Set<String>) -> (top: [String: String], records: [[String: String]]) {
        var top: [String: String] = [:]
        var records: [[String: String]] = []
        var current: [String: String]?
        _ = S3XML.read(Data((body ?? ByteBuffer()).readableBytesView)) { start, name, text in
            if start {
                if name == record { current = [:] }
            } else if name == record, let c = current {
                records.append(c)
                current = nil
            } else if fields.contains(name) {
                let value = text.trimmingCharacters(in: .whitespacesAndNewlines)
                if current != nil { current![name] = value } else { top[name] = value }
            }
        }
        return (top, records)
    }

    /// The code and message of an `<Error>` answer.
    package static func error(_ body: ByteBuffer?) -> (code: String, message: String)? {
        guard let body, body.readableBytes > 0 else { return nil }
        guard let e = ErrorParser.parse(Data(body.readableBytesView)), let code = e.code else { return nil }
        return (code, e.message ?? "")
    }
}
