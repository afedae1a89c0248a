import Foundation
import SluiceSupport
import SluiceIngest

package struct TableReader {
    package let file: String
    package let lines: [Substring]
    package let baseDir: String
    /// The source types a `type` may name, in the order error messages list them.
    package var sourceTypes: [any SourceType] = []

    package init(file: String, text: String) {
        self.file = file
        self.lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        self.baseDir = (file as NSString).deletingLastPathComponent
    }

    package static func isValidID(_ s: String) -> Bool {
        let b = Array(s.utf8)
        func ok(_ c: UInt8, first: Bool) -> Bool {
            (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || (!first && (c == 0x5F || c == 0x2D))
        }
        return !b.isEmpty && b.count <= 64 && ok(b[0], first: true) && b.dropFirst().allSatisfy { ok($0, first: false) }
    }

    package func fail(_ keyPath: String, _ message: String) -> ConfigError {
        ConfigError(file: file, keyPath: keyPath, line: line(of: keyPath), message: message)
    }

    /// Best-effort line of a key path: the table header, then the `key =` line inside it.
    package func line(of keyPath: String) -> Int? {
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

    package func checkKeys(_ table: TOMLTable, path: String, allowed: Set<String>) throws(ConfigError) {
        for key in table.keys.sorted() where !allowed.contains(key) {
            let full = path.isEmpty ? key : "\(path).\(key)"
            throw fail(full, "unknown key '\(key)' (allowed here: \(allowed.sorted().joined(separator: ", ")))")
        }
    }

    package func typeName(_ v: TOMLValue) -> String { v.kindName }

    package func string(_ t: TOMLTable, _ key: String, _ path: String, required: Bool) throws(ConfigError) -> String? {
        guard let v = t[key] else {
            if required { throw fail(path, "missing required key '\(key)' (a string)") }
            return nil
        }
        guard let s = v.string else { throw fail("\(path).\(key)", "expected a string, found \(typeName(v))") }
        return s
    }

    package func bool(_ t: TOMLTable, _ key: String, _ path: String) throws(ConfigError) -> Bool? {
        guard let v = t[key] else { return nil }
        guard let b = v.bool else { throw fail("\(path).\(key)", "expected true or false, found \(typeName(v))") }
        return b
    }

    package func table(_ t: TOMLTable, _ key: String, _ path: String) throws(ConfigError) -> TOMLTable? {
        guard let v = t[key] else { return nil }
        guard let tab = v.table else {
            throw fail(path.isEmpty ? key : "\(path).\(key)", "expected a table, found \(typeName(v))")
        }
        return tab
    }

    package func stringArray(_ t: TOMLTable, _ key: String, _ path: String) throws(ConfigError) -> [String]? {
        guard let v = t[key] else { return nil }
        guard let arr = v.array else { throw fail("\(path).\(key)", "expected an array of strings, found \(typeName(v))") }
        var out: [String] = []
        for (i, e) in arr.enumerated() {
            guard let s = e.string else { throw fail("\(path).\(key)[\(i)]", "expected a string, found \(typeName(e))") }
            out.append(s)
        }
        return out
    }

    package func duration(_ t: TOMLTable, _ key: String, _ path: String) throws(ConfigError) -> Int64? {
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

    package func resolve(_ p: String) -> String {
        let joined = p.hasPrefix("/") ? p : "\(baseDir)/\(p)"
        return URL(fileURLWithPath: joined).standardizedFileURL.path
    }

    package func agentConfig(_ root: TOMLTable) throws(ConfigError) -> AgentConfig {
        try checkKeys(root, path: "", allowed: ["agent", "api", "clients", "alerts", "lineage", "manifest", "lake"])
        guard let agent = try table(root, "agent", "") else {
            throw fail("agent", "missing required table [agent] with state_dir and lake_dir")
        }
        try checkKeys(agent, path: "agent", allowed: [
            "state_dir", "lake_dir", "mappings_dir", "sync_method", "max_transfers", "transform_workers", "shutdown_timeout",
            "http_listen", "log_level", "admin_token_file", "max_unpacked_bytes", "max_unpack_ratio",
            "max_archive_members", "max_archive_depth", "alert_after_failures", "alert_repeat", "alert_retry", "min_free_space",
            "name", "lease_ttl",
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
        if let bytes = try byteSize(agent, "max_unpacked_bytes", "agent") {
            guard bytes > 0 else { throw fail("agent.max_unpacked_bytes", "must be larger than 0") }
            config.maxUnpackedBytes = bytes
        }
        if let ratio = try integer(agent, "max_unpack_ratio", "agent", range: 1...1_000_000) {
            config.maxUnpackRatio = Int64(ratio)
        }
        config.maxArchiveMembers = try integer(agent, "max_archive_members", "agent", range: 1...100_000_000) ?? config.maxArchiveMembers
        config.maxArchiveDepth = try integer(agent, "max_archive_depth", "agent", range: 0...16) ?? config.maxArchiveDepth
        if let api = try table(root, "api", "") {
            config.api = try apiConfig(api)
        }
        config.alerts = try alertSettings(root, agent: agent, clients: clients)
        config.manifest = try manifestLocation(root, stateDir: stateDir)
        config.lakeBucket = try lakeBucket(root)
        if let name = try string(agent, "name", "agent", required: false) {
            guard (1...64).contains(name.count), name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }) else {
                throw fail("agent.name", "expected 1 to 64 letters, digits, '.', '_' or '-' (unique among the agents sharing a manifest), found \"\(name)\"")
            }
            config.name = name
        }
        if let ttl = try duration(agent, "lease_ttl", "agent") {
            guard ttl >= 3_000_000_000 else { throw fail("agent.lease_ttl", "must be at least \"3s\" (the lease is renewed every lease_ttl / 3)") }
            config.leaseTTLNanoseconds = ttl
        }
        return config
    }

    package func apiConfig(_ t: TOMLTable) throws(ConfigError) -> APIConfig {
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
    package func byteSize(_ t: TOMLTable, _ key: String, _ path: String) throws(ConfigError) -> Int64? {
        guard let v = t[key] else { return nil }
        if let i = v.int { return Int64(i) }
        guard let s = v.string else { throw fail("\(path).\(key)", "expected a size such as \"20GiB\", found \(typeName(v))") }
        guard let n = ByteSizeText.parse(s) else {
            throw fail("\(path).\(key)", "expected a size such as \"512MiB\" or \"20GiB\" (units B, KiB, MiB, GiB, TiB, KB, MB, GB, TB), found \"\(s)\"")
        }
        return n
    }

    package static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    /// "host:port" or "[v6]:port" split, with a port in 1...65535.
    package static func hostPort(_ s: String) -> (host: String, port: Int)? {
        guard let colon = s.lastIndex(of: ":"), let port = Int(s[s.index(after: colon)...]), (1...65535).contains(port) else { return nil }
        var host = String(s[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty, !host.contains(where: { $0.isWhitespace }) else { return nil }
        return (host, port)
    }

    package func client(_ t: TOMLTable, id: String, path: String, stateDir: String) throws(ConfigError) -> ClientConfig {
        try checkKeys(t, path: path, allowed: ["display_name", "sources", "pgp", "expect"])
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
        var settings: PGPSettings?
        if let p = try table(t, "pgp", path) { settings = try pgp(p, path: "\(path).pgp") }
        let expected = try expectations(t, path: path, sources: sources.map(\.name))
        return ClientConfig(id: id, displayName: display, sources: sources, pgp: settings, expectations: expected)
    }

    /// `[clients.<id>.pgp]`.
    package func pgp(_ t: TOMLTable, path: String) throws(ConfigError) -> PGPSettings {
        try checkKeys(t, path: path, allowed: ["secret_key", "passphrase_file", "verify_keys", "require_signature"])
        let verify = try stringArray(t, "verify_keys", path) ?? []
        let settings = PGPSettings(secretKey: try string(t, "secret_key", path, required: false).map(resolve),
                                   passphraseFile: try string(t, "passphrase_file", path, required: false).map(resolve),
                                   verifyKeys: verify.map(resolve), requireSignature: try bool(t, "require_signature", path) ?? false)
        if settings.requireSignature && settings.verifyKeys.isEmpty {
            throw fail("\(path).verify_keys", "require_signature = true needs the client's signing keys: verify_keys = [\"keys/client-signing.asc\"]")
        }
        if settings.secretKey == nil && settings.verifyKeys.isEmpty {
            throw fail(path, "set secret_key (to decrypt files encrypted to us) or verify_keys (to check signatures), or remove the table")
        }
        if settings.passphraseFile != nil && settings.secretKey == nil {
            throw fail("\(path).passphrase_file", "a passphrase is for secret_key, which is not set")
        }
        return settings
    }

    package static let defaultExclude = [".*", "**/.*", "*.part", "*.tmp", "*.partial"]

    package func globs(_ patterns: [String], key: String) throws(ConfigError) -> [Glob] {
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

    package func source(_ t: TOMLTable, name: String, path: String, stateDir: String) throws(ConfigError) -> SourceConfig {
        guard let type = try string(t, "type", path, required: true) else { fatalError() }
        guard let kind = sourceTypes.first(where: { $0.name == type }) else {
            throw fail("\(path).type", "unknown source type \"\(type)\" (this version supports: \(sourceTypes.map(\.name).joined(separator: ", ")))")
        }
        return SourceConfig(name: name, settings: try kind.parse(t, path: path, reader: self, stateDir: stateDir))
    }

    /// The keys every source type shares: include, exclude, recursive, min_age, after_ingest.
    package func commonKeys(_ t: TOMLTable, _ path: String) throws(ConfigError) -> (filter: PathFilter, recursive: Bool, minAge: Int64, afterIngest: AfterIngest) {
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

    package func integer(_ t: TOMLTable, _ key: String, _ path: String, range: ClosedRange<Int>) throws(ConfigError) -> Int? {
        guard let v = t[key] else { return nil }
        guard let i = v.int else { throw fail("\(path).\(key)", "expected an integer, found \(typeName(v))") }
        guard range.contains(i) else {
            throw fail("\(path).\(key)", "\(i) is out of range: expected \(range.lowerBound) to \(range.upperBound)")
        }
        return i
    }

    package func afterIngest(_ t: TOMLTable, _ path: String) throws(ConfigError) -> AfterIngest {
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
