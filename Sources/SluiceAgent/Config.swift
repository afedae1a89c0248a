import Foundation
import SluiceLake
import SluiceSFTP
import TOMLKit

/// A config that cannot be used: names the file, the key path, the line when known, and what
/// was expected. Every command exits 2 on it.
public struct ConfigError: Error, CustomStringConvertible, Sendable {
    public let file: String
    public let keyPath: String?
    public let line: Int?
    public let message: String

    public var description: String {
        var s = file
        if let line { s += ":\(line)" }
        s += ": "
        if let keyPath, !keyPath.isEmpty { s += "\(keyPath): " }
        return s + message
    }
}

/// What to do with a client's file once its version is committed.
public enum AfterIngest: Sendable, Equatable, CustomStringConvertible {
    case keep
    case delete
    /// Move into this folder, at the same relative place: relative to the source root
    /// (`done/2026`), or absolute (`/srv/archive/acme`: on the same server or file system; for
    /// an s3 source, a key prefix from the bucket's root). Never with a trailing `/`.
    case move(String)

    public var description: String {
        switch self {
        case .keep: "keep"
        case .delete: "delete"
        case .move(let f): "move:\(f)"
        }
    }
}

/// How a batch of staged lake files is made durable before it is published.
public enum SyncMethod: String, Sendable {
    /// One `syncfs` of the lake's file system per batch. Fastest; also flushes other writers'
    /// dirty data on that file system, so best when the lake has its own volume.
    case syncfs
    /// One `fsync` per file (writeback started as each file is written).
    case fsync
}

public struct FolderSourceConfig: Sendable {
    public var path: String
    public var filter: PathFilter
    public var recursive: Bool
    public var minAgeNanoseconds: Int64
    public var afterIngest: AfterIngest
    /// `sluice run` rescans the whole folder this often, as a safety net behind inotify.
    public var rescanIntervalNanoseconds: Int64 = 300_000_000_000
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
}

/// A source that clients push to through the upload API (`type = "http"`): only which paths
/// it takes. An upload outside `include`/`exclude` is refused with 422.
public struct HTTPSourceConfig: Sendable {
    public var filter: PathFilter
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
}

public struct ClientConfig: Sendable {
    public var id: String
    public var displayName: String?
    /// Sources in the order of their names.
    public var sources: [SourceConfig]
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
}

/// Walks the TOML tree key by key, so every message can name the key path and the line.
struct TableReader {
    let file: String
    let lines: [Substring]
    let baseDir: String

    init(file: String, text: String) {
        self.file = file
        self.lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        self.baseDir = (file as NSString).deletingLastPathComponent
    }

    static func isValidID(_ s: String) -> Bool {
        let b = Array(s.utf8)
        func ok(_ c: UInt8, first: Bool) -> Bool {
            (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || (!first && (c == 0x5F || c == 0x2D))
        }
        return !b.isEmpty && b.count <= 64 && ok(b[0], first: true) && b.dropFirst().allSatisfy { ok($0, first: false) }
    }

    func fail(_ keyPath: String, _ message: String) -> ConfigError {
        ConfigError(file: file, keyPath: keyPath, line: line(of: keyPath), message: message)
    }

    /// Best-effort line of a key path: the table header, then the `key =` line inside it.
    func line(of keyPath: String) -> Int? {
        var parts = keyPath.split(separator: ".").map(String.init)
        func header(_ l: Substring) -> String? {
            let t = l.trimmingCharacters(in: .whitespaces)
            guard t.hasPrefix("["), let close = t.firstIndex(of: "]") else { return nil }
            let inner = t[t.index(after: t.startIndex)..<close].replacingOccurrences(of: "[", with: "")
            return inner.split(separator: ".").map { $0.trimmingCharacters(in: CharacterSet(charactersIn: " \"'")) }.joined(separator: ".")
        }
        func keyName(_ l: Substring) -> String? {
            guard let eq = l.firstIndex(of: "=") else { return nil }
            return l[..<eq].trimmingCharacters(in: CharacterSet(charactersIn: " \t\"'"))
        }
        // The key itself as a header ([clients.acme]).
        let whole = parts.joined(separator: ".")
        if let i = lines.firstIndex(where: { header($0) == whole }) { return i + 1 }
        guard !parts.isEmpty else { return nil }
        let key = parts.removeLast()
        let table = parts.joined(separator: ".")
        var inTable = table.isEmpty
        for (i, l) in lines.enumerated() {
            if let h = header(l) {
                inTable = (h == table)
                continue
            }
            if inTable, keyName(l) == key { return i + 1 }
        }
        return nil
    }

    func checkKeys(_ table: TOMLTable, path: String, allowed: Set<String>) throws(ConfigError) {
        for key in table.keys.sorted() where !allowed.contains(key) {
            let full = path.isEmpty ? key : "\(path).\(key)"
            throw fail(full, "unknown key '\(key)' (allowed here: \(allowed.sorted().joined(separator: ", ")))")
        }
    }

    func typeName(_ v: any TOMLValueConvertible) -> String {
        switch v.type {
        case .table: "a table"
        case .array: "an array"
        case .string: "a string"
        case .int: "an integer"
        case .double: "a float"
        case .bool: "a boolean"
        case .date, .time, .dateTime: "a date/time"
        }
    }

    func string(_ t: TOMLTable, _ key: String, _ path: String, required: Bool) throws(ConfigError) -> String? {
        guard let v = t[key] else {
            if required { throw fail(path, "missing required key '\(key)' (a string)") }
            return nil
        }
        guard let s = v.string else { throw fail("\(path).\(key)", "expected a string, found \(typeName(v))") }
        return s
    }

    func bool(_ t: TOMLTable, _ key: String, _ path: String) throws(ConfigError) -> Bool? {
        guard let v = t[key] else { return nil }
        guard let b = v.bool else { throw fail("\(path).\(key)", "expected true or false, found \(typeName(v))") }
        return b
    }

    func table(_ t: TOMLTable, _ key: String, _ path: String) throws(ConfigError) -> TOMLTable? {
        guard let v = t[key] else { return nil }
        guard let tab = v.table else {
            throw fail(path.isEmpty ? key : "\(path).\(key)", "expected a table, found \(typeName(v))")
        }
        return tab
    }

    func stringArray(_ t: TOMLTable, _ key: String, _ path: String) throws(ConfigError) -> [String]? {
        guard let v = t[key] else { return nil }
        guard let arr = v.array else { throw fail("\(path).\(key)", "expected an array of strings, found \(typeName(v))") }
        var out: [String] = []
        for (i, e) in arr.enumerated() {
            guard let s = e.string else { throw fail("\(path).\(key)[\(i)]", "expected a string, found \(typeName(e))") }
            out.append(s)
        }
        return out
    }

    func duration(_ t: TOMLTable, _ key: String, _ path: String) throws(ConfigError) -> Int64? {
        guard let raw = try string(t, key, path, required: false) else {
            if let v = t[key], v.int != nil {
                throw fail("\(path).\(key)", "expected a duration string such as \"30s\", found an integer")
            }
            return nil
        }
        guard let ns = DurationText.parseNanoseconds(raw) else {
            throw fail("\(path).\(key)", "bad duration \"\(raw)\": expected a whole number with a unit ms, s, m, h or d, such as \"500ms\", \"30s\", \"5m\"")
        }
        return ns
    }

    func resolve(_ p: String) -> String {
        let joined = p.hasPrefix("/") ? p : "\(baseDir)/\(p)"
        return URL(fileURLWithPath: joined).standardizedFileURL.path
    }

    func agentConfig(_ root: TOMLTable) throws(ConfigError) -> AgentConfig {
        try checkKeys(root, path: "", allowed: ["agent", "api", "clients"])
        guard let agent = try table(root, "agent", "") else {
            throw fail("agent", "missing required table [agent] with state_dir and lake_dir")
        }
        try checkKeys(agent, path: "agent", allowed: [
            "state_dir", "lake_dir", "mappings_dir", "sync_method", "max_transfers", "transform_workers", "shutdown_timeout",
            "http_listen", "log_level", "admin_token_file",
        ])
        let stateDir = resolve(try string(agent, "state_dir", "agent", required: true)!)
        let lakeDir = resolve(try string(agent, "lake_dir", "agent", required: true)!)
        let mappingsDir = resolve(try string(agent, "mappings_dir", "agent", required: false) ?? "mappings")
        let syncRaw = try string(agent, "sync_method", "agent", required: false) ?? "syncfs"
        guard let syncMethod = SyncMethod(rawValue: syncRaw) else {
            throw fail("agent.sync_method", "expected \"syncfs\" or \"fsync\", found \"\(syncRaw)\"")
        }

        var clients: [ClientConfig] = []
        if let ct = try table(root, "clients", "") {
            for id in ct.keys.sorted() {
                let path = "clients.\(id)"
                guard Self.isValidID(id) else {
                    throw fail(path, "client id '\(id)' must match [a-z0-9][a-z0-9_-]{0,63}")
                }
                guard let c = try table(ct, id, "clients") else { continue }
                clients.append(try client(c, id: id, path: path, stateDir: stateDir))
            }
        }
        var config = AgentConfig(file: file, stateDir: stateDir, lakeDir: lakeDir, mappingsDir: mappingsDir, syncMethod: syncMethod, clients: clients)
        config.maxTransfers = try integer(agent, "max_transfers", "agent", range: 1...256) ?? config.maxTransfers
        config.transformWorkers = try integer(agent, "transform_workers", "agent", range: 1...256) ?? config.transformWorkers
        if let timeout = try duration(agent, "shutdown_timeout", "agent") {
            guard timeout > 0 else { throw fail("agent.shutdown_timeout", "must be longer than 0") }
            config.shutdownTimeoutNanoseconds = timeout
        }
        if let listen = try string(agent, "http_listen", "agent", required: false) {
            guard listen.isEmpty || Self.hostPort(listen) != nil else {
                throw fail("agent.http_listen", "expected \"host:port\" such as \"127.0.0.1:9464\" (or \"\" for no HTTP), found \"\(listen)\"")
            }
            config.httpListen = listen
        }
        if let level = try string(agent, "log_level", "agent", required: false) {
            guard Self.logLevels.contains(level) else {
                throw fail("agent.log_level", "expected one of \(Self.logLevels.joined(separator: ", ")), found \"\(level)\"")
            }
            config.logLevel = level
        }
        config.adminTokenFile = try string(agent, "admin_token_file", "agent", required: false).map(resolve)
        if let api = try table(root, "api", "") {
            config.api = try apiConfig(api)
        }
        return config
    }

    func apiConfig(_ t: TOMLTable) throws(ConfigError) -> APIConfig {
        try checkKeys(t, path: "api", allowed: ["listen", "tls_cert", "tls_key", "max_upload_size", "max_concurrent_uploads"])
        var api = APIConfig()
        api.listen = try string(t, "listen", "api", required: false) ?? ""
        guard api.listen.isEmpty || api.listenAddress != nil else {
            throw fail("api.listen", "expected \"host:port\" such as \"0.0.0.0:8443\" (or \"\" for no upload API), found \"\(api.listen)\"")
        }
        api.tlsCert = try string(t, "tls_cert", "api", required: false).map(resolve)
        api.tlsKey = try string(t, "tls_key", "api", required: false).map(resolve)
        if (api.tlsCert == nil) != (api.tlsKey == nil) {
            throw fail(api.tlsCert == nil ? "api.tls_cert" : "api.tls_key", "tls_cert and tls_key go together: give both PEM files, or neither")
        }
        if let (host, _) = api.listenAddress, api.tlsCert == nil, !APIConfig.isLoopback(host) {
            throw fail("api.tls_cert", "the upload API listens on \(host), beyond loopback: give tls_cert and tls_key, "
                + "or listen on 127.0.0.1 behind a TLS reverse proxy such as nginx (see README)")
        }
        if let size = try byteSize(t, "max_upload_size", "api") {
            guard size > 0 else { throw fail("api.max_upload_size", "must be larger than 0") }
            api.maxUploadSize = size
        }
        api.maxConcurrentUploads = try integer(t, "max_concurrent_uploads", "api", range: 1...1024) ?? api.maxConcurrentUploads
        return api
    }

    /// A size: an integer number of bytes, or a string such as "512MiB", "20GiB" or "10GB".
    func byteSize(_ t: TOMLTable, _ key: String, _ path: String) throws(ConfigError) -> Int64? {
        guard let v = t[key] else { return nil }
        if let i = v.int { return Int64(i) }
        guard let s = v.string else { throw fail("\(path).\(key)", "expected a size such as \"20GiB\", found \(typeName(v))") }
        guard let n = ByteSizeText.parse(s) else {
            throw fail("\(path).\(key)", "expected a size such as \"512MiB\" or \"20GiB\" (units B, KiB, MiB, GiB, TiB, KB, MB, GB, TB), found \"\(s)\"")
        }
        return n
    }

    static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    /// "host:port" or "[v6]:port" split, with a port in 1...65535.
    static func hostPort(_ s: String) -> (host: String, port: Int)? {
        guard let colon = s.lastIndex(of: ":"), let port = Int(s[s.index(after: colon)...]), (1...65535).contains(port) else { return nil }
        var host = String(s[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty, !host.contains(where: { $0.isWhitespace }) else { return nil }
        return (host, port)
    }

    func client(_ t: TOMLTable, id: String, path: String, stateDir: String) throws(ConfigError) -> ClientConfig {
        try checkKeys(t, path: path, allowed: ["display_name", "sources"])
        let display = try string(t, "display_name", path, required: false)
        guard let st = try table(t, "sources", path), !st.isEmpty else {
            throw fail(path, "client '\(id)' has no sources: add a [\(path).sources.NAME] table")
        }
        var sources: [SourceConfig] = []
        for name in st.keys.sorted() {
            let spath = "\(path).sources.\(name)"
            guard Self.isValidID(name) else {
                throw fail(spath, "source name '\(name)' must match [a-z0-9][a-z0-9_-]{0,63}")
            }
            guard let s = try table(st, name, "\(path).sources") else { continue }
            sources.append(try source(s, name: name, path: spath, stateDir: stateDir))
        }
        return ClientConfig(id: id, displayName: display, sources: sources)
    }

    static let defaultExclude = [".*", "**/.*", "*.part", "*.tmp", "*.partial"]

    func globs(_ patterns: [String], key: String) throws(ConfigError) -> [Glob] {
        var out: [Glob] = []
        for (i, p) in patterns.enumerated() {
            do {
                out.append(try Glob(p))
            } catch {
                throw fail("\(key)[\(i)]", "bad glob \"\(p)\": \(error.description)")
            }
        }
        return out
    }

    func source(_ t: TOMLTable, name: String, path: String, stateDir: String) throws(ConfigError) -> SourceConfig {
        guard let type = try string(t, "type", path, required: true) else { fatalError() }
        switch type {
        case "folder":
            try checkKeys(t, path: path, allowed: ["type", "path", "include", "exclude", "recursive", "min_age", "after_ingest", "rescan_interval"])
            let root = resolve(try string(t, "path", path, required: true)!)
            let common = try commonKeys(t, path)
            if case .move(let target) = common.afterIngest, target.hasPrefix("/"),
               target == root || target == (root as NSString).standardizingPath {
                throw fail("\(path).after_ingest", "the move target \(target) is the drop folder itself: move into a folder below it or elsewhere")
            }
            var folder = FolderSourceConfig(
                path: root, filter: common.filter,
                recursive: common.recursive, minAgeNanoseconds: common.minAge, afterIngest: common.afterIngest)
            if let rescan = try duration(t, "rescan_interval", path) {
                guard rescan > 0 else { throw fail("\(path).rescan_interval", "must be longer than 0") }
                folder.rescanIntervalNanoseconds = rescan
            }
            return SourceConfig(name: name, kind: .folder(folder))
        case "sftp":
            try checkKeys(t, path: path, allowed: [
                "type", "host", "port", "user", "identity_file", "passphrase_file", "password_file", "known_hosts",
                "remote_dir", "include", "exclude", "recursive", "min_age", "after_ingest", "max_connections",
                "connect_timeout", "io_timeout", "poll_interval", "ciphers", "host_key_algorithms",
            ])
            let host = try string(t, "host", path, required: true)!
            guard !host.isEmpty, !host.contains(where: { $0.isWhitespace || $0 == "/" || $0 == "@" }) else {
                throw fail("\(path).host", "expected a host name or IP address, found \"\(host)\"")
            }
            let port = try integer(t, "port", path, range: 1...65535) ?? 22
            let user = try string(t, "user", path, required: true)!
            guard !user.isEmpty else { throw fail("\(path).user", "must not be empty") }
            let identity = try string(t, "identity_file", path, required: false).map(resolve)
            let passphrase = try string(t, "passphrase_file", path, required: false).map(resolve)
            let password = try string(t, "password_file", path, required: false).map(resolve)
            if identity == nil && password == nil {
                throw fail(path, "an sftp source needs identity_file, password_file or both (secrets are read from files, never from agent.conf)")
            }
            if passphrase != nil && identity == nil {
                throw fail("\(path).passphrase_file", "passphrase_file needs identity_file")
            }
            let knownHosts = try string(t, "known_hosts", path, required: false).map(resolve) ?? "\(stateDir)/known_hosts"
            var remoteDir = try string(t, "remote_dir", path, required: true)!
            guard !remoteDir.isEmpty, !remoteDir.utf8.contains(0) else {
                throw fail("\(path).remote_dir", "expected a folder on the server, such as \"/outbox\"")
            }
            while remoteDir.count > 1 && remoteDir.hasSuffix("/") { remoteDir.removeLast() }
            let common = try commonKeys(t, path)
            let maxConnections = try integer(t, "max_connections", path, range: 1...10) ?? 2
            let connectTimeout = try duration(t, "connect_timeout", path) ?? 15_000_000_000
            let ioTimeout = try duration(t, "io_timeout", path) ?? 60_000_000_000
            let poll = try duration(t, "poll_interval", path) ?? 300_000_000_000
            for (key, v) in [("connect_timeout", connectTimeout), ("io_timeout", ioTimeout), ("poll_interval", poll)] where v <= 0 {
                throw fail("\(path).\(key)", "must be longer than 0")
            }
            var algorithms = SSHAlgorithmChoice()
            for (key, kind) in [("ciphers", SSHAlgorithms.Kind.cipher), ("host_key_algorithms", .hostKey)] {
                guard let names = try stringArray(t, key, path) else { continue }
                guard !names.isEmpty else { throw fail("\(path).\(key)", "an empty list allows nothing: leave \(key) out for Sluice's defaults") }
                let unknown = SSHAlgorithmChoice.unsupported(names, kind)
                guard unknown.isEmpty else {
                    throw fail("\(path).\(key)", "\(unknown.map { "\"\($0)\"" }.joined(separator: ", ")) \(unknown.count == 1 ? "is" : "are") not supported: "
                        + "expected some of \(SSHAlgorithms.supported(kind).filter { !$0.hasPrefix("none") }.joined(separator: ", "))")
                }
                if kind == .cipher { algorithms.ciphers = names } else { algorithms.hostKeys = names }
            }
            var sftp = SFTPSourceConfig(
                host: host, port: port, user: user, identityFile: identity, passphraseFile: passphrase, passwordFile: password,
                knownHosts: knownHosts, remoteDir: remoteDir, filter: common.filter, recursive: common.recursive,
                minAgeNanoseconds: common.minAge, afterIngest: common.afterIngest, maxConnections: maxConnections,
                connectTimeoutNanoseconds: connectTimeout, ioTimeoutNanoseconds: ioTimeout, pollIntervalNanoseconds: poll)
            sftp.algorithms = algorithms
            return SourceConfig(name: name, kind: .sftp(sftp))
        case "http":
            try checkKeys(t, path: path, allowed: ["type", "include", "exclude"])
            let include = try globs(try stringArray(t, "include", path) ?? ["**/*"], key: "\(path).include")
            let exclude = try globs(try stringArray(t, "exclude", path) ?? Self.defaultExclude, key: "\(path).exclude")
            return SourceConfig(name: name, kind: .http(HTTPSourceConfig(filter: PathFilter(include: include, exclude: exclude))))
        case "s3":
            return SourceConfig(name: name, kind: .s3(try s3Source(t, path: path)))
        default:
            throw fail("\(path).type", "unknown source type \"\(type)\" (this version supports: folder, sftp, http, s3)")
        }
    }

    func s3Source(_ t: TOMLTable, path: String) throws(ConfigError) -> S3SourceConfig {
        try checkKeys(t, path: path, allowed: [
            "type", "endpoint", "region", "bucket", "prefix", "path_style", "credentials_file", "profile",
            "include", "exclude", "min_age", "after_ingest", "max_connections", "poll_interval",
        ])
        let endpointText = try string(t, "endpoint", path, required: true)!
        guard let endpoint = URL(string: endpointText), let scheme = endpoint.scheme, ["http", "https"].contains(scheme),
              let host = endpoint.host, !host.isEmpty, endpoint.query == nil, endpoint.user == nil else {
            throw fail("\(path).endpoint", "expected an http(s) URL such as \"https://s3.eu-central-1.amazonaws.com\", found \"\(endpointText)\"")
        }
        let region = try string(t, "region", path, required: true)!
        guard !region.isEmpty, region.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }) else {
            throw fail("\(path).region", "expected a region such as \"eu-central-1\", found \"\(region)\"")
        }
        let bucket = try string(t, "bucket", path, required: true)!
        guard (1...255).contains(bucket.count), bucket.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-._".contains($0)) }) else {
            throw fail("\(path).bucket", "expected a bucket name (letters, digits, '-', '.', '_'), found \"\(bucket)\"")
        }
        let prefix = try string(t, "prefix", path, required: false) ?? ""
        guard !prefix.hasPrefix("/"), !prefix.utf8.contains(0) else {
            throw fail("\(path).prefix", "a key prefix has no leading '/': write \"\(prefix.drop { $0 == "/" })\"")
        }
        let pathStyle = try bool(t, "path_style", path) ?? false
        if !pathStyle && bucket.contains(".") && scheme == "https" {
            throw fail("\(path).path_style", "bucket \"\(bucket)\" has dots, which break TLS with virtual-hosted addressing: set path_style = true")
        }
        let credentials = try string(t, "credentials_file", path, required: false).map(resolve)
        let profile = try string(t, "profile", path, required: false) ?? "default"
        guard !profile.isEmpty, !profile.contains(where: { $0 == "]" || $0 == "[" || $0.isNewline }) else {
            throw fail("\(path).profile", "expected a profile name such as \"default\"")
        }
        // Keys are listed recursively: `recursive` is not among the allowed keys.
        let common = try commonKeys(t, path)
        let maxConnections = try integer(t, "max_connections", path, range: 1...64) ?? 4
        let poll = try duration(t, "poll_interval", path) ?? 300_000_000_000
        guard poll > 0 else { throw fail("\(path).poll_interval", "must be longer than 0") }
        return S3SourceConfig(endpoint: endpoint, region: region, bucket: bucket, prefix: prefix, pathStyle: pathStyle,
                              credentialsFile: credentials, profile: profile, filter: common.filter,
                              minAgeNanoseconds: common.minAge, afterIngest: common.afterIngest, maxConnections: maxConnections, pollIntervalNanoseconds: poll)
    }

    /// The keys every source type shares: include, exclude, recursive, min_age, after_ingest.
    func commonKeys(_ t: TOMLTable, _ path: String) throws(ConfigError) -> (filter: PathFilter, recursive: Bool, minAge: Int64, afterIngest: AfterIngest) {
        let include = try globs(try stringArray(t, "include", path) ?? ["**/*"], key: "\(path).include")
        let exclude = try globs(try stringArray(t, "exclude", path) ?? Self.defaultExclude, key: "\(path).exclude")
        let recursive = try bool(t, "recursive", path) ?? true
        let minAge = try duration(t, "min_age", path) ?? 30_000_000_000
        let action = try afterIngest(t, path)
        var filter = PathFilter(include: include, exclude: exclude)
        if case .move(let folder) = action, !folder.hasPrefix("/") {
            // Never pick up what we moved aside ourselves (every earlier target is excluded
            // too, from the manifest, when a pass begins).
            filter = filter.excluding(folders: [RelativePath(folder)])
        }
        return (filter, recursive, minAge, action)
    }

    func integer(_ t: TOMLTable, _ key: String, _ path: String, range: ClosedRange<Int>) throws(ConfigError) -> Int? {
        guard let v = t[key] else { return nil }
        guard let i = v.int else { throw fail("\(path).\(key)", "expected an integer, found \(typeName(v))") }
        guard range.contains(i) else {
            throw fail("\(path).\(key)", "\(i) is out of range: expected \(range.lowerBound) to \(range.upperBound)")
        }
        return i
    }

    func afterIngest(_ t: TOMLTable, _ path: String) throws(ConfigError) -> AfterIngest {
        guard let raw = try string(t, "after_ingest", path, required: false) else { return .keep }
        switch raw {
        case "keep": return .keep
        case "delete": return .delete
        default:
            if raw.hasPrefix("move:") {
                let target = raw.dropFirst(5)
                let absolute = target.hasPrefix("/")
                var folder = String(target.drop { $0 == "/" })
                while folder.hasSuffix("/") { folder.removeLast() }
                let comps = folder.split(separator: "/", omittingEmptySubsequences: false)
                if !folder.isEmpty, !folder.utf8.contains(0),
                   !comps.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) {
                    return .move(absolute ? "/" + folder : folder)
                }
                throw fail("\(path).after_ingest", "bad move target \"\(raw)\": expected move:<folder relative to the source root> or move:</absolute/folder>, "
                    + "without empty, '.' or '..' components")
            }
            throw fail("\(path).after_ingest", "expected keep, delete or move:<folder>, found \"\(raw)\"")
        }
    }
}

public enum ByteSizeText {
    /// Parses `1048576`, `512MiB`, `20GiB`, `10GB` (binary and decimal units) into bytes.
    public static func parse(_ s: String) -> Int64? {
        let trimmed = s.trimmingCharacters(in: .whitespaces)
        let digits = trimmed.prefix { $0.isASCII && $0.isNumber }
        let unit = trimmed.dropFirst(digits.count).trimmingCharacters(in: .whitespaces)
        guard !digits.isEmpty, digits.count <= 15, let n = Int64(digits) else { return nil }
        let scale: Int64
        switch unit.lowercased() {
        case "", "b": scale = 1
        case "kib", "k": scale = 1 << 10
        case "mib", "m": scale = 1 << 20
        case "gib", "g": scale = 1 << 30
        case "tib", "t": scale = 1 << 40
        case "kb": scale = 1_000
        case "mb": scale = 1_000_000
        case "gb": scale = 1_000_000_000
        case "tb": scale = 1_000_000_000_000
        default: return nil
        }
        let (product, overflow) = n.multipliedReportingOverflow(by: scale)
        return overflow ? nil : product
    }

    /// `20 GiB`, `512 MiB`, `900 B`: the largest binary unit that divides evenly.
    public static func format(_ n: Int64) -> String {
        for (shift, name) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] where n >= (1 << shift) && n % (1 << shift) == 0 {
            return "\(n >> shift) \(name)"
        }
        return "\(n) B"
    }
}

public enum DurationText {
    /// Parses `500ms`, `30s`, `5m`, `1h`, `1d` into nanoseconds.
    public static func parseNanoseconds(_ s: String) -> Int64? {
        let digits = s.prefix { $0.isASCII && $0.isNumber }
        let suffix = s.dropFirst(digits.count)
        guard !digits.isEmpty, digits.count <= 9, let n = Int64(digits) else { return nil }
        let unit: Int64
        switch suffix {
        case "ms": unit = 1_000_000
        case "s": unit = 1_000_000_000
        case "m": unit = 60_000_000_000
        case "h": unit = 3_600_000_000_000
        case "d": unit = 86_400_000_000_000
        default: return nil
        }
        return n * unit
    }
}
