import Foundation
import SluiceSupport
import SluiceIngest
import SluiceLake
import SluiceManifest

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


/// `[api]`: the public upload listener, separate from the internal `http_listen`.
public struct APIConfig: Sendable, Equatable {
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

/// One source of a client: its name and its type's settings.
public struct SourceConfig: Sendable, Equatable {
    public var name: String
    package var settings: any SourceSettings
    /// The source's `type`.
    public var type: String { Swift.type(of: settings).typeName }
    /// Its files are pushed to the upload API (an `http` source), not pulled.
    public var takesUploads: Bool {
        if case .push = settings.drive { return true }
        return false
    }

    package init(name: String, settings: any SourceSettings) {
        self.name = name
        self.settings = settings
    }

    public static func == (a: SourceConfig, b: SourceConfig) -> Bool {
        a.name == b.name && a.settings.isEqual(to: b.settings)
    }
}

public struct ClientConfig: Sendable, Equatable {
    public var id: String
    public var displayName: String?
    /// Sources in the order of their names.
    public var sources: [SourceConfig]
    /// `[clients.<id>.pgp]`: how this client's OpenPGP deliveries are decrypted and checked.
    public var pgp: PGPSettings?
    /// `[[clients.<id>.expect]]`: the deliveries the team expects.
    public var expectations: [Expectation] = []

    package init(id: String, displayName: String? = nil, sources: [SourceConfig], pgp: PGPSettings? = nil, expectations: [Expectation] = []) {
        self.id = id
        self.displayName = displayName
        self.sources = sources
        self.pgp = pgp
        self.expectations = expectations
    }
}

/// `[clients.<id>.pgp]`: key files (absolute paths), read when a keyring is built.
public struct PGPSettings: Sendable, Equatable {
    /// Our private key, for files encrypted to us (armoured or binary).
    public var secretKey: String?
    /// The file holding the secret key's passphrase.
    public var passphraseFile: String?
    /// Client keys whose signatures are accepted.
    public var verifyKeys: [String]
    /// A file without a valid signature from `verifyKeys` fails.
    public var requireSignature: Bool

    package init(secretKey: String?, passphraseFile: String?, verifyKeys: [String], requireSignature: Bool) {
        self.secretKey = secretKey
        self.passphraseFile = passphraseFile
        self.verifyKeys = verifyKeys
        self.requireSignature = requireSignature
    }
}

/// The agent's configuration, validated.
public struct AgentConfig: Sendable, Equatable {
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
    /// The most bytes one delivered file may unpack to on its way into the transform.
    public var maxUnpackedBytes: Int64 = 64 << 30
    /// The most times bigger than its compressed size a delivered file may unpack to.
    public var maxUnpackRatio: Int64 = 1000
    /// The most members one archive may have (directories and links count too).
    public var maxArchiveMembers = 100_000
    /// How many archives deep inside a delivered archive are unpacked (1: an archive in the
    /// archive is unpacked, one inside that is an error).
    public var maxArchiveDepth = 1
    /// `sluice run`: transforms that may run at once.
    public var transformWorkers = usableCores
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
    /// `[[alerts]]` and the agent's alert keys.
    public var alerts = AlertSettings()

    /// `[agent] name`: this agent among those sharing a manifest (default: the host name).
    public var name = AgentConfig.defaultName
    /// `[agent] lease_ttl`: how long a polled source's lease lasts without renewal; renewed
    /// every third of it, taken over by another agent once it has run out.
    public var leaseTTLNanoseconds: Int64 = 30_000_000_000

    /// The host name, as an agent name (its first label, when it is fully qualified).
    public static var defaultName: String {
        let host = ProcessInfo.processInfo.hostName
        let first = host.split(separator: ".").first.map(String.init) ?? host
        let cleaned = String(first.map { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) ? $0 : "-" }.prefix(64))
        return cleaned.isEmpty ? "sluice" : cleaned
    }

    /// `[lake]`: the bucket the lake is in; nil: `lake_dir` on local disk (which, with a
    /// bucket, holds only this host's staging files).
    public var lakeBucket: LakeBucketSettings?
    /// Where the lake is, as messages name it.
    public var lakeDisplay: String { lakeBucket?.url ?? lakeDir }
    /// `[manifest]`: the PostgreSQL database, else the SQLite file in `state_dir`.
    public var manifest: ManifestLocation = .sqlite(path: "")

    /// The SQLite manifest's file (also where it would be with `[manifest]`).
    public var manifestPath: String { "\(stateDir)/manifest.sqlite" }

    /// Whether a manifest may already hold something: the SQLite file exists, or the manifest is
    /// a PostgreSQL database (whose tables the first open creates).
    public var manifestMayExist: Bool {
        if case .postgres = manifest { return true }
        return FileManager.default.fileExists(atPath: manifestPath)
    }

    public func client(_ id: String) -> ClientConfig? { clients.first { $0.id == id } }

    /// Where the config is read from: `--config`, else `$SLUICE_CONFIG`, else `/etc/sluice/agent.conf`.
    public static func resolvePath(explicit: String?, environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let explicit, !explicit.isEmpty { return explicit }
        if let env = environment["SLUICE_CONFIG"], !env.isEmpty { return env }
        return "/etc/sluice/agent.conf"
    }

    /// Reads and validates a config file; `sourceTypes` are the source types it may use.
    package static func load(path: String, sourceTypes: [any SourceType]) throws(ConfigError) -> AgentConfig {
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
        return try parse(text: text, file: file, sourceTypes: sourceTypes)
    }

    /// Validates config text; `file` is used for messages and to resolve relative paths.
    package static func parse(text: String, file: String, sourceTypes: [any SourceType]) throws(ConfigError) -> AgentConfig {
        let table = try TOMLText.parse(text, file: file)
        var reader = TableReader(file: file, text: text)
        reader.sourceTypes = sourceTypes
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
        manifest = .sqlite(path: "\(stateDir)/manifest.sqlite")
    }
}

/// Walks the TOML tree key by key, so every message can name the key path and the line.
