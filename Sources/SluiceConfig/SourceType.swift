import Foundation
import Logging
import SluiceIngest
import SluiceSupport

// The seam for source types. A source type is one conformance to `SourceType` (its `type`
// name and how its table in agent.conf is read) whose settings conform to `SourceSettings`
// (what check-config says of it, how the runtime drives it, and how it makes a `Source`),
// registered once in `SourceTypes.all` (SluiceSources).

/// A source type: the `type = "…"` it answers to, and how its table is read and validated.
package protocol SourceType: Sendable {
    /// The value of `type` in the source's table.
    var name: String { get }
    /// Reads and validates the source's table (`path` is its key path, for messages);
    /// relative paths resolve against the config file's folder, defaults against `stateDir`.
    func parse(_ table: TOMLTable, path: String, reader: TableReader, stateDir: String) throws(ConfigError) -> any SourceSettings
}

/// What the runtime gives a source type to make its sources with.
package struct SourceContext: Sendable {
    package var client: String
    package var name: String
    package var logger: Logger
    /// `[agent] state_dir` (resumable transfers keep their chunks below it).
    package var stateDir: String

    package init(client: String, name: String, logger: Logger, stateDir: String) {
        self.client = client
        self.name = name
        self.logger = logger.about(client: client, source: name)
        self.stateDir = stateDir
    }
}

/// How `sluice run` drives a source.
package enum SourceDrive: Sendable {
    /// Polled every `intervalNanoseconds`; the polls of one `server` take turns.
    case poll(server: String, intervalNanoseconds: Int64)
    /// A loop of the source type's own (a watched drop folder), made by the closure.
    case watch(@Sendable (any SourceHost, SourceKey) -> any SourceRunner)
    /// Its files are pushed to the agent (the upload API): no loop of its own.
    case push
}

/// A source's validated settings, of one registered type.
package protocol SourceSettings: Sendable {
    /// The type's `type` name.
    static var typeName: String { get }
    /// What happens to the client's copy once its version is committed.
    var afterIngest: AfterIngest { get }
    var drive: SourceDrive { get }
    /// One line for `check-config`, after "source NAME: ".
    var summary: String { get }
    /// Secrets that cannot be read (warnings for `check-config`; read without contacting the
    /// server). `key` is the source's key path.
    func secretProblems(key: String) -> [String]
    /// Settings that cannot work on this machine (errors for `check-config`).
    func setupProblems(key: String) -> [String]
    /// The source for one pull or poll; nil when its files are pushed.
    func makeSource(_ context: SourceContext) -> (any Source)?
    func isEqual(to other: any SourceSettings) -> Bool
}

extension SourceSettings {
    package func secretProblems(key: String) -> [String] { [] }
    package func setupProblems(key: String) -> [String] { [] }
}

extension SourceSettings where Self: Equatable {
    package func isEqual(to other: any SourceSettings) -> Bool { (other as? Self) == self }
}

/// A client's source, as the daemon names it.
public struct SourceKey: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var client: String
    public var source: String
    public var description: String { "\(client)/\(source)" }
    public static func < (a: SourceKey, b: SourceKey) -> Bool { (a.client, a.source) < (b.client, b.source) }

    package init(client: String, source: String) {
        self.client = client
        self.source = source
    }
}

/// What a source's loop is doing, as `/status` and the console show it.
public enum SourceState: String, Sendable, Encodable {
    case idle
    /// Waiting for a transfer slot or its server's turn.
    case waiting
    case polling
    /// The last poll failed; the next one waits longer.
    case backoff
    case scanning
    case ingesting
    case stopped
    /// Another agent sharing the manifest holds the source's lease and polls it.
    case elsewhere
}

/// What `/status` shows for one source.
public struct SourceStatus: Sendable, Encodable {
    public var client: String
    public var source: String
    public var type: String
    /// idle, polling, scanning, ingesting, backoff or stopped.
    public var state = SourceState.idle
    public var lastPoll: String?
    public var lastSuccess: String?
    public var lastError: String?
    public var nextPoll: String?
    public var consecutiveFailures = 0
    public var filesNew = 0
    public var filesUnchanged = 0
    public var filesFailed = 0
    public var bytesNew: Int64 = 0
    /// Files seen by inotify and not yet ingested (drop folders), or 0.
    public var queueDepth = 0
    /// Polled sources: the agent holding the source's lease, and when it runs out unless renewed.
    public var owner: String?
    public var leaseExpiresAt: String?

    package enum CodingKeys: String, CodingKey {
        case client, source, type, state, lastPoll = "last_poll", lastSuccess = "last_success", lastError = "last_error"
        case nextPoll = "next_poll", consecutiveFailures = "consecutive_failures", filesNew = "files_new"
        case filesUnchanged = "files_unchanged", filesFailed = "files_failed", bytesNew = "bytes_new", queueDepth = "queue_depth"
        case owner, leaseExpiresAt = "lease_expires_at"
    }

    /// Every field, the ones not known yet as `null` (not left out).
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(client, forKey: .client)
        try c.encode(source, forKey: .source)
        try c.encode(type, forKey: .type)
        try c.encode(state, forKey: .state)
        try c.encode(lastPoll, forKey: .lastPoll)
        try c.encode(lastSuccess, forKey: .lastSuccess)
        try c.encode(lastError, forKey: .lastError)
        try c.encode(nextPoll, forKey: .nextPoll)
        try c.encode(consecutiveFailures, forKey: .consecutiveFailures)
        try c.encode(filesNew, forKey: .filesNew)
        try c.encode(filesUnchanged, forKey: .filesUnchanged)
        try c.encode(filesFailed, forKey: .filesFailed)
        try c.encode(bytesNew, forKey: .bytesNew)
        try c.encode(queueDepth, forKey: .queueDepth)
        try c.encode(owner, forKey: .owner)
        try c.encode(leaseExpiresAt, forKey: .leaseExpiresAt)
    }

    package init(client: String, source: String, type: String, lastPoll: String? = nil, lastSuccess: String? = nil, lastError: String? = nil, nextPoll: String? = nil, bytesNew: Int64 = 0) {
        self.client = client
        self.source = source
        self.type = type
        self.lastPoll = lastPoll
        self.lastSuccess = lastSuccess
        self.lastError = lastError
        self.nextPoll = nextPoll
        self.bytesNew = bytesNew
    }
}


/// One source's loop in `sluice run`.
package protocol SourceRunner: AnyObject, Sendable {
    func start()
    /// Stops scheduling; a pass in flight finishes.
    func stop()
    func join(until: Date) -> Bool
    /// The loop ended (after `stop`, or because it crashed out).
    var hasEnded: Bool { get }
    /// Whether `source` is the config this runner runs with (a reload keeps it then).
    func sameConfig(as source: SourceConfig) -> Bool
}

/// What the runtime offers a source type's own loop (`SourceDrive.watch`).
package protocol SourceHost: AnyObject, Sendable {
    var logger: Logger { get }
    /// Changes what `/status` shows for the source.
    func update(_ key: SourceKey, _ body: (inout SourceStatus) -> Void)
    /// The loop has begun its first scan (readiness waits for every source's first cycle).
    func cycleStarted()
    /// Runs one pass of the source through the ingest road and records it; nil when the
    /// pass failed as a whole (the status says why).
    func runPass(_ key: SourceKey, source: any Source, trigger: String) -> PullReport?
}
