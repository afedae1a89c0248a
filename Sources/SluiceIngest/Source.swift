import Foundation
import SluiceLake
import SluiceSupport
import SluiceManifest

/// A file a source offers: where it is, how big, and when it last changed.
public struct Candidate: Sendable {
    public var path: RelativePath
    public var size: Int64
    /// Modification time in nanoseconds since the Unix epoch.
    public var mtimeNs: Int64
    /// The SHA-256 (lowercase hex) the sender says the content has: a copy whose digest
    /// differs is refused and nothing is kept.
    public var expectedSHA256: String?
    /// An object store's ETag (s3 sources): with the size, it decides whether the object
    /// changed (the mtime does not).
    public var etag: String?

    public init(path: RelativePath, size: Int64, mtimeNs: Int64, expectedSHA256: String? = nil, etag: String? = nil) {
        self.etag = etag
        self.path = path
        self.size = size
        self.mtimeNs = mtimeNs
        self.expectedSHA256 = expectedSHA256
    }
}

/// What listing a source found besides candidates: entries that are reported, not ingested.
public struct ListingIssue: Sendable {
    public enum Kind: Sendable { case skipped, failed }
    public var path: RelativePath
    public var kind: Kind
    public var message: String

    package init(path: RelativePath, kind: Kind, message: String) {
        self.path = path
        self.kind = kind
        self.message = message
    }
}

/// A source-level failure (the folder is missing, the server refuses us). The other sources
/// still run.
public struct SourceError: Error, CustomStringConvertible, Sendable {
    public var message: String
    /// The file was gone when it was to be read (it is skipped, not failed).
    public var vanished = false
    public init(_ message: String) { self.message = message }

    /// What the message of a source whose server's host key changed says (the
    /// `host_key_changed` alert looks for it).
    public static let hostKeyChanged = "the host key has CHANGED"

    /// A file that was listed but is gone when it is opened.
    package static func vanished(_ message: String) -> SourceError {
        var e = SourceError(message)
        e.vanished = true
        return e
    }
    public var description: String { message }
}

/// A stream of one candidate's bytes.
public protocol ByteStream: AnyObject {
    /// Reads up to `buffer.count` bytes; 0 at the end.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws(SourceError) -> Int
    /// After the last read: nil when the file is still exactly what was read, or why not
    /// (it grew, shrank or was rewritten while being copied).
    func changedWhileReading(bytesRead: Int64) -> String?
    func close()
}

/// A stream that hashes its bytes itself as they arrive, on another thread than the reader's
/// (an upload's body, on the network thread), so the copy only writes.
public protocol SelfHashingStream: ByteStream {
    /// The SHA-256 (lowercase hex) of every byte `read(into:)` returned, after the last read.
    var sha256OfBytesRead: String { get }
}

/// A stream that can fetch a large file as several ranges at once (several connections).
public protocol RangeFetching: ByteStream {
    /// Starts fetching the whole file into `fd` with positioned writes from threads of its
    /// own, or returns nil when this file is better read with `read(into:)`. The caller
    /// hashes the file's contiguous prefix as it grows (`ParallelFetch.waitForPrefix`), so
    /// the hash stays one pass, off the transfer threads.
    func startParallelFetch(into fd: Int32, stagingPath: String) -> (any ParallelFetch)?
}

/// A fetch running on other threads.
public protocol ParallelFetch: AnyObject, Sendable {
    /// Blocks until the written prefix [0, n) of the file is longer than `known`, or the
    /// fetch has ended; `done` is true when every byte is written. Throws once the fetch has
    /// failed (after all its threads have stopped).
    func waitForPrefix(beyond known: Int64) throws(SourceError) -> (prefix: Int64, done: Bool)
    /// Stops the fetch early and waits for its threads.
    func cancel()
}

/// Where files come from. A source only lists candidates and opens them as byte streams;
/// the ingest pipeline does everything else.
public protocol Source: Sendable {
    var name: String { get }
    /// A file is taken only when its mtime is at least this old.
    var minAgeNanoseconds: Int64 { get }
    var afterIngest: AfterIngest { get }
    /// Starts one pass: connects or opens the root. `moveTargets` are every target this
    /// source's `after_ingest = "move:…"` ever had (from the manifest): what lies in them was
    /// moved there by Sluice, so the pass skips each one that is below its root.
    func beginPass(moveTargets: [String]) throws(SourceError) -> any SourcePass
    /// Whether passes over this source must not overlap (a lock per source, across
    /// processes). An upload pass offers one path and is ordered per path by its caller.
    var exclusivePasses: Bool { get }
    /// The file at `path` as an OpenLineage dataset (namespace: the source's URI).
    func lineageDataset(_ path: RelativePath) -> (namespace: String, name: String)
}

extension Source {
    public var exclusivePasses: Bool { true }
    /// A delivered file as an OpenLineage dataset: the source's URI as namespace and the
    /// file's name there (each source type says; this is for those that have no URI).
    public func lineageDataset(_ path: RelativePath) -> (namespace: String, name: String) {
        ("sluice://\(ProcessInfo.processInfo.hostName)/\(name)", path.display)
    }
}

/// One pass over a source. `open` may be called from several threads at once.
public protocol SourcePass: Sendable {
    /// Lists candidate files (include/exclude already applied), handing each to `candidate`
    /// as it is found, so that a large folder never has to be held in memory twice.
    func list(issue: (ListingIssue) -> Void, candidate: (Candidate) -> Void) throws(SourceError)
    /// Opens a candidate for reading. Fails with a message when it is gone or unreadable.
    func open(_ candidate: Candidate) throws(SourceError) -> any ByteStream
    /// Deletes or moves a committed file, if it is still the one that was ingested.
    func applyAfterIngest(_ action: AfterIngest, to candidate: Candidate) throws(SourceError)
    func end()
}
