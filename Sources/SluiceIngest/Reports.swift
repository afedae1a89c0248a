import Foundation
import SluiceManifest
import SluiceSupport

/// The outcome of one file in a pass, as `pull --json` prints it.
public struct FileReport: Sendable, Encodable {
    public enum Status: String, Sendable, Encodable {
        case new, unchanged, skipped, failed
    }
    public var source: String
    public var path: String
    public var version: Int?
    public var sha256: String?
    public var size: Int64?
    public var lakePath: String?
    public var status: Status
    public var error: String?
    /// The path's raw bytes, where `path` (its display form) may have escaped some (not in
    /// JSON). Lookups use these, never `path`.
    public var rawPath: RelativePath? = nil
    /// What code acts on when the file was skipped or failed (not in JSON; `error` says it).
    public var problem: FileProblem? = nil

    package enum CodingKeys: String, CodingKey {
        case source, path, version, sha256, size, lakePath = "lake_path", status, error
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(source, forKey: .source)
        try c.encode(path, forKey: .path)
        try c.encode(version, forKey: .version)
        try c.encode(sha256, forKey: .sha256)
        try c.encode(size, forKey: .size)
        try c.encode(lakePath, forKey: .lakePath)
        try c.encode(status, forKey: .status)
        try c.encode(error, forKey: .error)
    }

    package init(source: String, path: String, version: Int? = nil, sha256: String? = nil, size: Int64? = nil, lakePath: String? = nil, status: Status, error: String? = nil, rawPath: RelativePath? = nil, problem: FileProblem? = nil) {
        self.problem = problem
        self.source = source
        self.path = path
        self.version = version
        self.sha256 = sha256
        self.size = size
        self.lakePath = lakePath
        self.status = status
        self.error = error
        self.rawPath = rawPath
    }
}

/// Why a file was skipped or failed, for the code that acts on it; `FileReport.error` has the
/// text people read.
public enum FileProblem: Sendable, Equatable {
    /// Modified less than `min_age` ago: skipped, looked at again later.
    case notStableYet
    /// Gone between the listing and the copy: skipped.
    case vanished
    /// Its content's SHA-256 is not the one its sender declared: failed, nothing kept.
    case checksumMismatch
}

/// The result of one pull of one client.
public struct PullReport: Sendable {
    public var client: String
    public var runID: Int64
    public var counts = RunCounts()
    /// Every file that was not simply unchanged, in source order.
    public var files: [FileReport] = []
    /// Sources that could not be read at all, by name.
    public var sourceErrors: [(source: String, message: String)] = []
    /// Files whose version is committed but whose `after_ingest` step failed.
    public var afterIngestFailures = 0
    /// Transforms run after the pull (empty without a mapping file or with --no-transform).
    public var transforms: [TransformReport] = []
    /// A transform failed, or a schema-change policy held one: someone has to look.
    public var transformsFailed: Bool { transforms.contains { $0.status == .failed || $0.status == .held } }

    public var succeeded: Bool { counts.failed == 0 && sourceErrors.isEmpty && afterIngestFailures == 0 }

    package init(client: String, runID: Int64, files: [FileReport] = [], sourceErrors: [(source: String, message: String)] = [], transforms: [TransformReport] = []) {
        self.client = client
        self.runID = runID
        self.files = files
        self.sourceErrors = sourceErrors
        self.transforms = transforms
    }
}

/// Fault injection for tests: hooks the pipeline calls at fixed points.
public struct IngestHooks: Sendable {
    /// Called by a worker after the first chunk of a file has been copied.
    public var afterFirstChunk: (@Sendable (Candidate) -> Void)?
    public init(afterFirstChunk: (@Sendable (Candidate) -> Void)? = nil) {
        self.afterFirstChunk = afterFirstChunk
    }
}

/// A new version whose copy is staged (written and hashed, not yet durable or committed), as
/// the ingest pipeline offers it to an `EarlyConsumer`.
public struct StagedVersion: Sendable {
    public var client: String
    public var source: String
    public var path: RelativePath
    public var version: Int
    public var sha256: String
    /// Where it will be published, relative to the lake root.
    public var lakePath: String
    /// The `ingested_at` its manifest row will have.
    public var ingestedAt: String
    /// The staged temp file. It is there only until the batch is published: open it at once.
    public var stagedPath: String

    package init(client: String, source: String, path: RelativePath, version: Int, sha256: String, lakePath: String, ingestedAt: String, stagedPath: String) {
        self.client = client
        self.source = source
        self.path = path
        self.version = version
        self.sha256 = sha256
        self.lakePath = lakePath
        self.ingestedAt = ingestedAt
        self.stagedPath = stagedPath
    }
}

/// Work that starts on a new version as soon as its copy is staged, while its batch is made
/// durable and committed (the transform), so the two overlap.
public protocol EarlyConsumer: Sendable {
    /// Called on the copying thread, before the batch is synced. Returns nil to decline, or
    /// what the pipeline calls once the batch has settled: with the version's id when it
    /// was committed, nil when it was not (the consumer must then publish nothing for it).
    func staged(_ version: StagedVersion) -> (@Sendable (Int64?) -> Void)?
}

/// How a version's transform ended, as the manifest's `transform.status` and `--json` say it.
public enum TransformStatus: String, Sendable, Encodable, CaseIterable {
    case ok, failed
    /// No dataset of the client's mapping matches the file.
    case unmapped
    /// Kept raw, nothing written: a schema change its dataset's policy holds for a person to
    /// look at (`sluice transform CLIENT --held` re-runs it).
    case held
}

/// One transform, as `pull` and `transform` print it.
public struct TransformReport: Sendable, Encodable {
    public var source: String
    public var path: String
    public var version: Int
    public var dataset: String?
    public var status: TransformStatus
    public var rowsWritten: Int64
    public var rowsRejected: Int64
    public var outputPath: String?
    public var rejectsPath: String?
    public var error: String?
    /// The archive member this transform is of (its path inside, escaped); nil for a whole file.
    public var member: String?
    /// For an archive: how many of its members were ok, failed and unmapped.
    public var members: MemberCounts?
    /// How many schema changes of each kind (added, removed, renamed, moved, type_changed) the
    /// unit showed against the previous delivery (an archive: all its members'); nil: none.
    public var schemaChanges: [String: Int]?
    /// Not recorded: it failed for a reason that passes (a full file system), and the version
    /// stays pending (`TransformResult.retryLater`). Not in the JSON: its error says so.
    package var postponed = false

    public struct MemberCounts: Sendable, Encodable, Equatable {
        public var ok = 0
        public var failed = 0
        public var unmapped = 0
        package init(ok: Int = 0, failed: Int = 0, unmapped: Int = 0) {
            self.ok = ok
            self.failed = failed
            self.unmapped = unmapped
        }
    }

    package init(source: String, path: String, version: Int, dataset: String? = nil, status: TransformStatus, rowsWritten: Int64, rowsRejected: Int64,
                 outputPath: String? = nil, rejectsPath: String? = nil, error: String? = nil, member: String? = nil, members: MemberCounts? = nil,
                 schemaChanges: [String: Int]? = nil) {
        self.schemaChanges = schemaChanges
        self.source = source
        self.path = path
        self.version = version
        self.dataset = dataset
        self.status = status
        self.rowsWritten = rowsWritten
        self.rowsRejected = rowsRejected
        self.outputPath = outputPath
        self.rejectsPath = rejectsPath
        self.error = error
        self.member = member
        self.members = members
    }

    package enum CodingKeys: String, CodingKey {
        case source, path, version, member, dataset, status, rowsWritten = "rows_written", rowsRejected = "rows_rejected"
        case outputPath = "output_path", rejectsPath = "rejects_path", error, members, schemaChanges = "schema_changes"
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(source, forKey: .source)
        try c.encode(path, forKey: .path)
        try c.encode(version, forKey: .version)
        try c.encode(member, forKey: .member)
        try c.encode(dataset, forKey: .dataset)
        try c.encode(status, forKey: .status)
        try c.encode(rowsWritten, forKey: .rowsWritten)
        try c.encode(rowsRejected, forKey: .rowsRejected)
        try c.encode(outputPath, forKey: .outputPath)
        try c.encode(rejectsPath, forKey: .rejectsPath)
        try c.encode(error, forKey: .error)
        try c.encodeIfPresent(members, forKey: .members)
        try c.encodeIfPresent(schemaChanges, forKey: .schemaChanges)
    }
}
