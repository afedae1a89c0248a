import Foundation
import SluiceLake
import SluiceSFTP
import TOMLKit
import SluiceSupport
import SluiceIngest

/// A config that cannot be used: names the file, the key path, the line when known, and what
/// was expected. Every command exits 2 on it.
public struct ConfigError: Error, CustomStringConvertible, Sendable {
    public let file: String
    public let keyPath: String?
    public let line: Int?
    public let message: String

    package init(file: String, keyPath: String?, line: Int?, message: String) {
        self.file = file
        self.keyPath = keyPath
        self.line = line
        self.message = message
    }

    public var description: String {
        var s = file
        if let line { s += ":\(line)" }
        s += ": "
        if let keyPath, !keyPath.isEmpty { s += "\(keyPath): " }
        return s + message
    }
}


public struct FolderSourceConfig: Sendable {
    public var path: String
    public var filter: PathFilter
    public var recursive: Bool
    public var minAgeNanoseconds: Int64
    public var afterIngest: AfterIngest
    /// `sluice run` rescans the whole folder this often, as a safety net behind inotify.
    public var rescanIntervalNanoseconds: Int64 = 300_000_000_000

    package init(path: String, filter: PathFilter, recursive: Bool, minAgeNanoseconds: Int64, afterIngest: AfterIngest, rescanIntervalNanoseconds: Int64 = 300_000_000_000) {
        self.path = path
        self.filter = filter
        self.recursive = recursive
        self.minAgeNanoseconds = minAgeNanoseconds
        self.afterIngest = afterIngest
        self.rescanIntervalNanoseconds = rescanIntervalNanoseconds
    }
}

public struct SFTPSourceConfig: Sendable {
    public var host: String
    public var port: Int
    public var user: String
    /// Absolute paths; the secrets themselves are read only when connecting.
    public var identityFile: String?
    public var passphraseFile: String?
    public var passwordFile: String?
    public var knownHosts: String
    /// The folder on the server, as configured (absolute, or relative to the login folder).
    public var remoteDir: String
    public var filter: PathFilter
    public var recursive: Bool
    public var minAgeNanoseconds: Int64
    public var afterIngest: AfterIngest
    public var maxConnections: Int
    public var connectTimeoutNanoseconds: Int64
    public var ioTimeoutNanoseconds: Int64
    public var pollIntervalNanoseconds: Int64
    /// `ciphers` and `host_key_algorithms`, when the server needs something particular.
    public var algorithms = SSHAlgorithmChoice()

    package init(host: String, port: Int, user: String, identityFile: String? = nil, passphraseFile: String? = nil, passwordFile: String? = nil, knownHosts: String, remoteDir: String, filter: PathFilter, recursive: Bool, minAgeNanoseconds: Int64, afterIngest: AfterIngest, maxConnections: Int, connectTimeoutNanoseconds: Int64, ioTimeoutNanoseconds: Int64, pollIntervalNanoseconds: Int64) {
        self.host = host
        self.port = port
        self.user = user
        self.identityFile = identityFile
        self.passphraseFile = passphraseFile
        self.passwordFile = passwordFile
        self.knownHosts = knownHosts
        self.remoteDir = remoteDir
        self.filter = filter
        self.recursive = recursive
        self.minAgeNanoseconds = minAgeNanoseconds
        self.afterIngest = afterIngest
        self.maxConnections = maxConnections
        self.connectTimeoutNanoseconds = connectTimeoutNanoseconds
        self.ioTimeoutNanoseconds = ioTimeoutNanoseconds
        self.pollIntervalNanoseconds = pollIntervalNanoseconds
    }
}

/// A source that clients push to through the upload API (`type = "http"`): only which paths
/// it takes. An upload outside `include`/`exclude` is refused with 422.
public struct HTTPSourceConfig: Sendable {
    public var filter: PathFilter

    package init(filter: PathFilter) {
        self.filter = filter
    }
}

/// An S3-compatible bucket (`type = "s3"`), listed under `prefix` recursively.
public struct S3SourceConfig: Sendable {
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

/// `[api]`: the public upload listener, separate from the internal `http_listen`.
public struct APIConfig: Sendable {
    /// "host:port", or "" (the default) for no upload API.
    public var listen = ""
    /// PEM certificate chain and private key; required unless `listen` is on loopback.
    public var tlsCert: String?
    public var tlsKey: String?
    public var maxUploadSize: Int64 = 20 << 30
    public var maxConcurrentUploads = 16
    /// `listen` split into host and port; nil when the API is off.
    public var listenAddress: (host: String, port: Int)? { TableReader.hostPort(listen) }

    /// Whether `host` only reaches this machine (127.0.0.0/8, ::1 or localhost).
    public static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    package init(tlsCert: String? = nil, tlsKey: String? = nil, maxUploadSize: Int64 = 20 << 30) {
        self.tlsCert = tlsCert
        self.tlsKey = tlsKey
        self.maxUploadSize = maxUploadSize
    }
}

public struct SourceConfig: Sendable {
    public enum Kind: Sendable {
        case folder(FolderSourceConfig)
        case sftp(SFTPSourceConfig)
        case http(HTTPSourceConfig)
        case s3(S3SourceConfig)
    }
    public var name: String
    public var kind: Kind

    package init(name: String, kind: Kind) {
        self.name = name
        self.kind = kind
    }
}

public struct ClientConfig: Sendable {
    public var id: String
    public var displayName: String?
    /// Sources in the order of their names.
    public var sources: [SourceConfig]

    package init(id: String, displayName: String? = nil, sources: [SourceConfig]) {
        self.id = id
        self.displayName = displayName
        self.sources = sources
    }
}

/// The agent's configuration, validated.
public struct AgentConfig: Sendable {
    /// Absolute path of the file it was read from.
    public var file: String
    public var stateDir: String
    public var lakeDir: String
    public var mappingsDir: String
    public var syncMethod: SyncMethod
    /// Clients in the order of their ids.
    public var clients: [ClientConfig]
    /// `sluice run`: SFTP polls that may run at once, over all sources.
    public var maxTransfers = 4
    /// `sluice run`: transforms that may run at once.
    public var transformWorkers = max(1, ProcessInfo.processInfo.activeProcessorCount)
    /// `sluice run`: how long in-flight work may take to finish after SIGTERM.
    public var shutdownTimeoutNanoseconds: Int64 = 30_000_000_000
    /// `sluice run`: "host:port" of the health, metrics and status endpoints; "" for none.
    public var httpListen = "127.0.0.1:9464"
    /// `httpListen` split into host and port; nil when HTTP is off.
    public var httpListenAddress: (host: String, port: Int)? { TableReader.hostPort(httpListen) }
    /// The log level when no `--log-level` is given: trace, debug, info, notice, warning,
    /// error or critical.
    public var logLevel = "info"
    /// `[api]`: the upload API's listener and limits.
    public var api = APIConfig()
    /// A file whose first line is the console's admin token: required to use the console when
    /// `http_listen` is not on loopback.
    public var adminTokenFile: String?

    public var manifestPath: String { "\(stateDir)/manifest.sqlite" }

    public func client(_ id: String) -> ClientConfig? { clients.first { $0.id == id } }

    /// Where the config is read from: `--config`, else `$SLUICE_CONFIG`, else `/etc/sluice/agent.conf`.
    public static func resolvePath(explicit: String?, environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let explicit, !explicit.isEmpty { return explicit }
        if let env = environment["SLUICE_CONFIG"], !env.isEmpty { return env }
        return "/etc/sluice/agent.conf"
    }

    /// Reads and validates a config file.
    public static func load(path: String) throws(ConfigError) -> AgentConfig {
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        let file = URL(fileURLWithPath: absolute).standardizedFileURL.path
        let text: String
        do {
            let data = try Data(contentsOf: URL(fileURLWithPath: file))
            guard let s = String(data: data, encoding: .utf8) else {
                throw ConfigError(file: file, keyPath: nil, line: nil, message: "the file is not UTF-8 text")
            }
            text = s
        } catch let e as ConfigError {
            throw e
        } catch {
            throw ConfigError(file: file, keyPath: nil, line: nil,
                              message: "cannot read the config: \((error as NSError).localizedDescription) — pass --config PATH or set SLUICE_CONFIG")
        }
        return try parse(text: text, file: file)
    }

    /// Validates config text; `file` is used for messages and to resolve relative paths.
    public static func parse(text: String, file: String) throws(ConfigError) -> AgentConfig {
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let e as TOMLParseError {
            throw ConfigError(file: file, keyPath: nil, line: e.source.begin.line,
                              message: "TOML syntax error: \(e.description) (column \(e.source.begin.column))")
        } catch {
            throw ConfigError(file: file, keyPath: nil, line: nil, message: "TOML syntax error: \(error)")
        }
        let reader = TableReader(file: file, text: text)
        return try reader.agentConfig(table)
    }

    package init(file: String, stateDir: String, lakeDir: String, mappingsDir: String, syncMethod: SyncMethod, clients: [ClientConfig], shutdownTimeoutNanoseconds: Int64 = 30_000_000_000, adminTokenFile: String? = nil) {
        self.file = file
        self.stateDir = stateDir
        self.lakeDir = lakeDir
        self.mappingsDir = mappingsDir
        self.syncMethod = syncMethod
        self.clients = clients
        self.shutdownTimeoutNanoseconds = shutdownTimeoutNanoseconds
        self.adminTokenFile = adminTokenFile
    }
}

/// Walks the TOML tree key by key, so every message can name the key path and the line.
