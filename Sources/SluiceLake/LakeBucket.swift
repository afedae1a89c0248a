import Crypto
import Foundation
import SluiceS3
import SluiceSupport
#if canImport(Glibc)
import Glibc
#endif

/// Where an S3 lake is (`[lake]`): the same layout as on disk, below `prefix` in `bucket`.
public struct LakeBucketSettings: Sendable, Equatable {
    public var bucket: String
    /// Empty, or ending in `/`.
    public var prefix: String
    public var endpoint: URL
    public var region: String
    public var pathStyle: Bool
    public var credentialsFile: String?
    public var profile: String

    public init(bucket: String, prefix: String, endpoint: URL, region: String, pathStyle: Bool, credentialsFile: String?, profile: String) {
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint = endpoint
        self.region = region
        self.pathStyle = pathStyle
        self.credentialsFile = credentialsFile
        self.profile = profile
    }

    /// `s3://bucket/prefix/`.
    public var url: String { "s3://\(bucket)/\(prefix)" }
}

/// The lake's objects in an S3-compatible bucket. Every object is written whole or not at
/// all (a PUT, or a multipart upload that appears at its completion), checked by the service
/// against the SHA-256 computed here, and, for versions, only where no object stands yet
/// (`If-None-Match: *`). Calls block their thread.
public final class LakeBucket: Sendable {
    public let settings: LakeBucketSettings
    let s3: S3Client
    /// Files larger than this go up in parts.
    public static let multipartThreshold: Int64 = 64 << 20
    public static let partSize: Int64 = 16 << 20
    /// Parts of one file in flight at once.
    public static let partThreads = 4

    public init(settings: LakeBucketSettings, credentials: S3Credentials) {
        self.settings = settings
        s3 = S3Client(bucket: S3Bucket(endpoint: settings.endpoint, region: settings.region, bucket: settings.bucket, pathStyle: settings.pathStyle),
                      credentials: credentials)
    }

    /// The object key of a lake path.
    public func key(_ lakePath: String) -> String { settings.prefix + lakePath }

    /// Uploads the local file at `path` as `lakePath`. `sha256` (hex) is the file's when the
    /// caller computed it while writing; else it is computed here. With `noClobber`, only when
    /// no object has the name: false when one had, and nothing was written.
    /// `started` gets the id of a multipart upload as soon as it exists.
    public func upload(path: String, to lakePath: String, sha256: String?, noClobber: Bool, started: (String) -> Void = { _ in }) throws -> Bool {
        let fd = try systemCall("open", path) { open(path, O_RDONLY | O_CLOEXEC) }
        defer { closeQuietly(fd) }
        var st = stat()
        try systemCall("fstat", path) { fstat(fd, &st) }
        let size = Int64(st.st_size)
        let key = key(lakePath)
        guard size > Self.multipartThreshold else {
            let digest = try sha256.flatMap(Self.bytes(hex:)) ?? Self.digest(fd: fd, path: path, offset: 0, length: size)
            return try s3.put(key: key, from: FileRegion(fd: fd, offset: 0, length: size, path: path), sha256: digest, ifNoneMatch: noClobber)
        }
        let uploadID = try s3.createMultipartUpload(key: key)
        started(uploadID)
        do {
            let count = Int((size + Self.partSize - 1) / Self.partSize)
            let parts = SlotArray<Result<S3Part, any Error>>(count: count)
            let s3 = self.s3
            parallelFor(count: count, threads: Self.partThreads, setup: {}) { i, _ in
                parts.set(i, Result {
                    let offset = Int64(i) * Self.partSize
                    let length = min(Self.partSize, size - offset)
                    let digest = try Self.digest(fd: fd, path: path, offset: offset, length: length)
                    return try s3.uploadPart(key: key, uploadID: uploadID, number: i + 1,
                                             from: FileRegion(fd: fd, offset: offset, length: length, path: path), sha256: digest)
                })
            }
            let done = try parts.values.map { try $0!.get() }
            if try s3.completeMultipartUpload(key: key, uploadID: uploadID, parts: done, ifNoneMatch: noClobber) { return true }
            try s3.abortMultipartUpload(key: key, uploadID: uploadID)
            return false
        } catch {
            try? s3.abortMultipartUpload(key: key, uploadID: uploadID)
            throw error
        }
    }

    /// Downloads `lakePath` into `fd` (nil: only hashes it): its SHA-256 (hex) and size.
    public func download(_ lakePath: String, to fd: Int32?, path: String) throws(S3Error) -> (sha256: String, size: Int64) {
        try s3.download(key: key(lakePath), to: fd, path: path)
    }

    /// The size of `lakePath`'s object; nil when there is none.
    public func size(of lakePath: String) throws(S3Error) -> Int64? {
        do {
            return try s3.head(key: key(lakePath)).size
        } catch where error.status == 404 {
            return nil
        }
    }

    public func remove(_ lakePath: String) throws(S3Error) {
        try s3.delete(key: key(lakePath), ifMatch: nil)
    }

    /// Copies `lakePath` to `target` (both lake paths), then deletes it.
    public func move(_ lakePath: String, to target: String) throws(S3Error) {
        let etag = try s3.head(key: key(lakePath)).etag
        try s3.copy(from: key(lakePath), to: key(target), ifMatch: etag)
        try s3.delete(key: key(lakePath), ifMatch: nil)
    }

    /// Every object below `folder` (a lake path), by lake path, with its size.
    public func list(under folder: String) throws(S3Error) -> [String: Int64] {
        var out: [String: Int64] = [:]
        var token: String?
        let prefix = key(folder) + "/"
        repeat {
            let page = try s3.listPage(prefix: prefix, continuationToken: token)
            for o in page.objects { out[String(o.key.dropFirst(settings.prefix.count))] = o.size }
            token = page.nextContinuationToken
        } while token != nil
        return out
    }

    /// Aborts the multipart uploads under the lake's prefix that were started before
    /// `cutoff` (ISO 8601 UTC, compared as text) and never finished: what a crash mid-upload
    /// left. Returns the keys of those it aborted.
    public func abortUnfinishedUploads(startedBefore cutoff: String) throws(S3Error) -> [String] {
        var aborted: [String] = []
        for u in try s3.listMultipartUploads(prefix: settings.prefix) where u.initiated < cutoff {
            try s3.abortMultipartUpload(key: u.key, uploadID: u.uploadID)
            aborted.append(u.key)
        }
        return aborted
    }

    static func bytes(hex: String) -> [UInt8]? {
        let utf8 = Array(hex.utf8)
        guard utf8.count == 64 else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case 48...57: return c - 48
            case 97...102: return c - 87
            case 65...70: return c - 55
            default: return nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(32)
        for i in stride(from: 0, to: 64, by: 2) {
            guard let h = nibble(utf8[i]), let l = nibble(utf8[i + 1]) else { return nil }
            out.append(h << 4 | l)
        }
        return out
    }

    /// SHA-256 of `length` bytes of `fd` from `offset`.
    static func digest(fd: Int32, path: String, offset: Int64, length: Int64) throws(SystemCallError) -> [UInt8] {
        var hasher = SHA256()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
        defer { buffer.deallocate() }
        var done: Int64 = 0
        while done < length {
            let n = try systemCall("pread", path) { pread(fd, buffer.baseAddress!, Int(min(Int64(buffer.count), length - done)), off_t(offset + done)) }
            if n == 0 { throw SystemCallError(call: "pread", errno: EIO, path: path) }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            done += Int64(n)
        }
        return Array(hasher.finalize())
    }
}

/// A stored version as a local file a reader can open and seek in: the lake file itself on
/// disk; on S3, a download into the lake's staging folder (readable by this process only,
/// its SHA-256 checked), removed when this is released.
public final class LocalCopy: Sendable {
    public let path: String
    private let temporary: Bool

    init(path: String, temporary: Bool) {
        self.path = path
        self.temporary = temporary
    }

    deinit {
        if temporary { unlink(path) }
    }
}

extension Lake {
    /// The version at `lakePath` as a local file (see `LocalCopy`). With `sha256`, a
    /// download that does not match it is an error (the object is corrupt: run `sluice audit`).
    public func localCopy(of lakePath: String, sha256: String? = nil) throws -> LocalCopy {
        guard let bucket else { return LocalCopy(path: "\(root)/\(lakePath)", temporary: false) }
        let path = try tempPath(inFolder: "")
        let fd = try systemCall("open", path) { open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600) }
        let copy = LocalCopy(path: path, temporary: true)
        defer { closeQuietly(fd) }
        let got = try bucket.download(lakePath, to: fd, path: path)
        if let sha256, got.sha256 != sha256 {
            throw S3Error(message: "\(bucket.key(lakePath)) in \(bucket.settings.url) has SHA-256 \(got.sha256), the manifest says \(sha256) — run `sluice audit`")
        }
        return copy
    }

    /// SHA-256 (hex) and size of a published file, read from the lake.
    public func sha256(ofPublished lakePath: String) throws -> (sha256: String, size: Int64) {
        if let bucket { return try bucket.download(lakePath, to: nil, path: lakePath) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 << 10, alignment: 64)
        defer { buffer.deallocate() }
        return try FileDigest.sha256(path: "\(root)/\(lakePath)", buffer: buffer)
    }

    /// The size of a published file; nil when it is not there.
    public func size(ofPublished lakePath: String) -> Int64? {
        if let bucket { return try? bucket.size(of: lakePath) }
        var st = stat()
        return stat("\(root)/\(lakePath)", &st) == 0 ? Int64(st.st_size) : nil
    }

    /// Removes a published file that no manifest row points to (a batch whose commit failed,
    /// an earlier run's rejects).
    public func remove(published lakePath: String) throws {
        if let bucket { return try bucket.remove(lakePath) }
        if unlink("\(root)/\(lakePath)") != 0 && errno != ENOENT {
            throw SystemCallError(call: "unlink", errno: errno, path: "\(root)/\(lakePath)")
        }
    }

    /// Uploads a finished output (an S3 lake only): a new object where none stands, else it
    /// replaces the earlier run's, as a rename over it does on disk. The temp file is removed.
    public func uploadReplacing(_ bucket: LakeBucket, temp: String, to lakePath: String) throws {
        if try !bucket.upload(path: temp, to: lakePath, sha256: nil, noClobber: true, started: journal(lakePath)) {
            _ = try bucket.upload(path: temp, to: lakePath, sha256: nil, noClobber: false, started: journal(lakePath))
        }
        unlink(temp)
    }

    func journal(_ lakePath: String) -> (String) -> Void {
        { [self] id in journalUpload(key: bucket!.key(lakePath), uploadID: id) }
    }

    /// Aborts the multipart uploads this host's dead processes left (`uploadsLeftByCrashes`),
    /// and any under the lake's prefix started more than `olderThanSeconds` ago (left by a host
    /// that is gone). The keys aborted, and the first failure.
    public func abortUnfinishedUploads(olderThanSeconds: Int = 86_400) -> (aborted: [String], failure: String?) {
        guard let bucket else { return ([], nil) }
        var aborted: [String] = []
        do {
            for u in uploadsLeftByCrashes {
                try bucket.s3.abortMultipartUpload(key: u.key, uploadID: u.uploadID)
                aborted.append(u.key)
            }
            let f = ISO8601DateFormatter()
            f.formatOptions = [.withInternetDateTime]
            let cutoff = f.string(from: Date(timeIntervalSinceNow: -Double(olderThanSeconds)))
            aborted += try bucket.abortUnfinishedUploads(startedBefore: cutoff)
            return (aborted, nil)
        } catch {
            return (aborted, "\(error)")
        }
    }
}
