import Foundation
import SluiceSupport

/// One `[[alerts]]` entry: where alerts go and which of them.
public struct AlertTarget: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable {
        case webhook, slack, email
    }

    /// The events an alert may be sent for (`events`), in the order the README lists them.
    public static let eventNames = [
        "source_failing", "transform_failed", "transform_held", "reject_ratio_exceeded", "delivery_late",
        "host_key_changed", "audit_failed", "disk_low",
    ]

    public var name: String
    public var kind: Kind
    /// webhook and slack: where the JSON is POSTed (http or https).
    public var url: String?
    /// webhook: a file whose first line is the HMAC-SHA256 key that signs each body.
    public var secretFile: String?
    /// Event names, or nil for every event (`["*"]`).
    public var events: Set<String>?
    /// Client ids, or nil for every client (`["*"]`). An event of no client (disk_low) goes to
    /// every target whose events take it.
    public var clients: Set<String>?
    /// email: "host:port" (STARTTLS when offered) or "smtps://host:port" (implicit TLS).
    public var smtp: String?
    public var from: String?
    public var to: [String] = []
    public var username: String?
    public var passwordFile: String?
    /// email: the PEM file of the CA the SMTP server's certificate chains to (default: the
    /// system's trust store).
    public var caFile: String?

    public init(name: String, kind: Kind) {
        self.name = name
        self.kind = kind
    }

    /// The URL without its path and query, which may hold a secret (a Slack webhook's does):
    /// what messages and logs show.
    public var shownURL: String {
        guard let url, let u = URLComponents(string: url), let scheme = u.scheme, let host = u.host else { return "(no url)" }
        return "\(scheme)://\(host)\(u.port.map { ":\($0)" } ?? "")/…"
    }

    /// Whether `event` about `client` goes to this target.
    public func wants(event: String, client: String?) -> Bool {
        guard events.map({ $0.contains(event) }) ?? true else { return false }
        guard let client, let clients else { return true }
        return clients.contains(client)
    }
}

/// `[lineage]`: an OpenLineage HTTP endpoint (Marquez's `/api/v1/lineage`, or any other).
public struct LineageConfig: Sendable, Equatable {
    public var url: String
    /// The jobs' namespace; default the host name.
    public var namespace: String
    /// A file whose first line is sent as `Authorization: Bearer <key>`.
    public var apiKeyFile: String?

    /// The URL without its path and query, as messages show it.
    public var shownURL: String {
        guard let u = URLComponents(string: url), let scheme = u.scheme, let host = u.host else { return "(no url)" }
        return "\(scheme)://\(host)\(u.port.map { ":\($0)" } ?? "")/…"
    }
}

/// The agent keys of alerting, with their defaults.
public struct AlertSettings: Sendable, Equatable {
    public var targets: [AlertTarget] = []
    /// `alert_after_failures`: failed polls in a row before `source_failing`.
    public var afterFailures = 3
    /// `alert_repeat`: how often an open condition is alerted again.
    public var repeatNanoseconds: Int64 = 24 * 3_600_000_000_000
    /// `alert_retry`: the first wait before a failed delivery is tried again (doubling up to an hour).
    public var retryNanoseconds: Int64 = 30_000_000_000
    /// `min_free_space`: `disk_low` below this many bytes, or this percentage of the filesystem.
    public var minFreeSpace: FreeSpace = .percent(5)
    /// `[lineage]`: where OpenLineage events go (nil: nowhere).
    public var lineage: LineageConfig?

    public enum FreeSpace: Sendable, Equatable {
        case bytes(Int64)
        case percent(Double)
    }

    public init() {}
}

extension TableReader {
    /// `[[alerts]]` and the agent's alert keys.
    package func alertSettings(_ root: TOMLTable, agent: TOMLTable, clients: [ClientConfig]) throws(ConfigError) -> AlertSettings {
        var settings = AlertSettings()
        settings.afterFailures = try integer(agent, "alert_after_failures", "agent", range: 1...10_000) ?? settings.afterFailures
        if let repeatNs = try duration(agent, "alert_repeat", "agent") {
            guard repeatNs >= 60_000_000_000 else { throw fail("agent.alert_repeat", "must be at least \"1m\" (an open condition is alerted again this often)") }
            settings.repeatNanoseconds = repeatNs
        }
        if let retry = try duration(agent, "alert_retry", "agent") {
            guard retry > 0 else { throw fail("agent.alert_retry", "must be longer than 0") }
            settings.retryNanoseconds = retry
        }
        if let v = agent["min_free_space"] {
            let path = "agent.min_free_space"
            if let s = v.string, s.hasSuffix("%") {
                guard let p = Double(s.dropLast().trimmingCharacters(in: .whitespaces)), p >= 0, p < 100 else {
                    throw fail(path, "expected a percentage from 0% to 99% such as \"5%\", found \"\(s)\"")
                }
                settings.minFreeSpace = .percent(p)
            } else if let bytes = try byteSize(agent, "min_free_space", "agent") {
                guard bytes >= 0 else { throw fail(path, "must not be negative") }
                settings.minFreeSpace = .bytes(bytes)
            }
        }
        if let t = try table(root, "lineage", "") {
            try checkKeys(t, path: "lineage", allowed: ["url", "namespace", "api_key_file"])
            let url = try string(t, "url", "lineage", required: true)!
            guard let u = URL(string: url), ["http", "https"].contains(u.scheme?.lowercased() ?? ""), u.host?.isEmpty == false else {
                throw fail("lineage.url", "expected an http:// or https:// URL such as \"http://marquez:5000/api/v1/lineage\", found \"\(url)\"")
            }
            let namespace = try string(t, "namespace", "lineage", required: false) ?? ProcessInfo.processInfo.hostName
            guard !namespace.isEmpty, !namespace.contains(where: { $0.isWhitespace || $0.isNewline }) else {
                throw fail("lineage.namespace", "expected a namespace without spaces such as \"sluice-prod\"")
            }
            settings.lineage = LineageConfig(url: url, namespace: namespace, apiKeyFile: try string(t, "api_key_file", "lineage", required: false).map(resolve))
        }
        guard let value = root["alerts"] else { return settings }
        guard let entries = value.array else {
            throw fail("alerts", "expected [[alerts]] tables (an array of tables), found \(typeName(value))")
        }
        let known = Set(clients.map(\.id))
        for (i, entry) in entries.enumerated() {
            let path = "alerts[\(i)]"
            guard let t = entry.table else { throw fail(path, "expected an [[alerts]] table, found \(typeName(entry))") }
            try checkKeys(t, path: path, allowed: ["name", "type", "url", "secret_file", "events", "clients", "smtp", "from", "to", "username", "password_file", "ca_file"])
            let name = try string(t, "name", path, required: true)!
            guard Self.isValidID(name) else { throw fail("\(path).name", "alert name '\(name)' must match [a-z0-9][a-z0-9_-]{0,63}") }
            guard !settings.targets.contains(where: { $0.name == name }) else {
                throw fail("\(path).name", "two [[alerts]] are named '\(name)': give each its own name")
            }
            let kindText = try string(t, "type", path, required: true)!
            guard let kind = AlertTarget.Kind(rawValue: kindText) else {
                throw fail("\(path).type", "expected \"webhook\", \"slack\" or \"email\", found \"\(kindText)\"")
            }
            var target = AlertTarget(name: name, kind: kind)
            target.events = try names(t, "events", path, allowed: Set(AlertTarget.eventNames), what: "event")
            target.clients = try names(t, "clients", path, allowed: known, what: "client")
            let only: Set<String> = kind == .email ? ["smtp", "from", "to", "username", "password_file", "ca_file"] : kind == .webhook ? ["url", "secret_file"] : ["url"]
            for key in ["url", "secret_file", "smtp", "from", "to", "username", "password_file", "ca_file"] where t[key] != nil && !only.contains(key) {
                throw fail("\(path).\(key)", "'\(key)' is not a key of a \(kind.rawValue) alert (its keys: \(only.sorted().joined(separator: ", ")))")
            }
            switch kind {
            case .webhook, .slack:
                let url = try string(t, "url", path, required: true)!
                guard let u = URL(string: url), ["http", "https"].contains(u.scheme?.lowercased() ?? ""), u.host?.isEmpty == false else {
                    throw fail("\(path).url", "expected an http:// or https:// URL, found \"\(url)\"")
                }
                target.url = url
                target.secretFile = try string(t, "secret_file", path, required: false).map(resolve)
            case .email:
                let smtp = try string(t, "smtp", path, required: true)!
                let hostPort = smtp.hasPrefix("smtps://") ? String(smtp.dropFirst(8)) : smtp
                guard Self.hostPort(hostPort) != nil else {
                    throw fail("\(path).smtp", "expected \"host:port\" (STARTTLS when the server offers it) or \"smtps://host:port\" (TLS from the start), found \"\(smtp)\"")
                }
                target.smtp = smtp
                target.from = try string(t, "from", path, required: true)!
                target.to = try stringArray(t, "to", path) ?? []
                guard !target.to.isEmpty else { throw fail("\(path).to", "give at least one address: to = [\"data-ops@example.com\"]") }
                for (k, address) in ([target.from!] + target.to).enumerated() where !Self.isMailAddress(address) {
                    throw fail(k == 0 ? "\(path).from" : "\(path).to[\(k - 1)]", "\"\(address)\" is not an email address (name@host)")
                }
                target.username = try string(t, "username", path, required: false)
                target.passwordFile = try string(t, "password_file", path, required: false).map(resolve)
                target.caFile = try string(t, "ca_file", path, required: false).map(resolve)
                if (target.username == nil) != (target.passwordFile == nil) {
                    throw fail(target.username == nil ? "\(path).username" : "\(path).password_file", "username and password_file go together: give both, or neither")
                }
            }
            settings.targets.append(target)
        }
        return settings
    }

    /// A list of names or `["*"]` (nil: every one).
    private func names(_ t: TOMLTable, _ key: String, _ path: String, allowed: Set<String>, what: String) throws(ConfigError) -> Set<String>? {
        guard let list = try stringArray(t, key, path) else { return nil }
        if list == ["*"] { return nil }
        guard !list.isEmpty else { throw fail("\(path).\(key)", "empty: give [\"*\"] for every \(what), or the \(what)s to alert on") }
        for (i, name) in list.enumerated() where !allowed.contains(name) {
            let hint = name == "*" ? "\"*\" stands alone" : "expected one of \(allowed.sorted().joined(separator: ", "))"
            throw fail("\(path).\(key)[\(i)]", "unknown \(what) \"\(name)\": \(hint)")
        }
        return Set(list)
    }

    /// `local@domain`, with no spaces or angle brackets (they would break the SMTP envelope).
    package static func isMailAddress(_ s: String) -> Bool {
        let parts = s.split(separator: "@", omittingEmptySubsequences: false)
        return parts.count == 2 && !parts[0].isEmpty && !parts[1].isEmpty
            && !s.contains(where: { $0.isWhitespace || $0 == "<" || $0 == ">" || $0 == "," || $0.asciiValue.map { $0 < 0x20 } ?? false })
    }
}
