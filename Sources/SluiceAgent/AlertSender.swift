import AsyncHTTPClient
import CCurl
import Crypto
import Foundation
import Logging
import NIOCore
import SluiceConfig
import SluiceManifest
import SluiceSupport

extension AlertSettings {
    /// The manifest's routing of events to targets (and of lineage events); nil when neither
    /// alerts nor lineage are configured. `lakeDir` names the lake's files in lineage events.
    package func routing(lake config: AgentConfig) -> AlertRouting? {
        guard !targets.isEmpty || lineage != nil else { return nil }
        let targets = self.targets
        let lineage = self.lineage.map { l in
            config.lakeBucket.map { LineageRouting(namespace: l.namespace, lakeNamespace: "s3://\($0.bucket)", lakeRoot: String($0.prefix.dropLast())) }
                ?? LineageRouting(namespace: l.namespace, lakeNamespace: "file://\(ProcessInfo.processInfo.hostName)", lakeRoot: config.lakeDir)
        }
        return AlertRouting(repeatNanoseconds: repeatNanoseconds, lineage: lineage) { event, client in
            targets.filter { $0.wants(event: event, client: client) }.map(\.name)
        }
    }

    /// Whether the outbox has anything to send for this config.
    package var sends: Bool { !targets.isEmpty || lineage != nil }
}

/// Why one delivery failed (the secret's file may be named, never its content).
package struct AlertDeliveryError: Error, CustomStringConvertible {
    package var description: String
    package init(_ d: String) { description = d }
}

/// Delivers the alert outbox: each due alert to its target, marked sent only on a 2xx answer
/// (webhook, slack) or an accepted message (email); otherwise tried again after `alert_retry`,
/// doubling up to an hour, for as long as it takes. At least once: a crash between a send and
/// its mark sends it again.
package struct AlertSender: Sendable {
    /// The outbox (nil: only `deliver` is used, as `sluice alerts test` does).
    package let manifest: Manifest?
    package let logger: Logger
    package let settings: AlertSettings

    package init(manifest: Manifest?, logger: Logger, settings: AlertSettings) {
        self.manifest = manifest
        self.logger = logger
        self.settings = settings
    }

    /// One shared client for every webhook: no redirects (a signed body is for its URL only).
    static let http: HTTPClient = {
        var config = HTTPClient.Configuration(redirectConfiguration: .disallow, timeout: .init(connect: .seconds(10), read: .seconds(30)))
        config.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
    }()

    /// Sends every alert that is due, once each; how many were sent and how many failed.
    @discardableResult
    package func deliverDue(now: Int64 = nowNanoseconds()) -> (sent: Int, failed: Int) {
        guard let manifest, let due = try? manifest.dueAlerts(now: now) else { return (0, 0) }
        var sent = 0, failed = 0
        // A target that failed in this round is not tried again in it: a host that does not
        // answer would otherwise cost a connect timeout per waiting entry.
        var down: [String: AlertDeliveryError] = [:]
        for entry in due {
            if let error = down[entry.target] {
                retry(entry, error, now: now, what: entry.target, quiet: true)
                failed += 1
                continue
            }
            // Where it goes: the [lineage] endpoint, or the [[alerts]] entry of its name.
            let send: (String) throws(AlertDeliveryError) -> Void
            let what: String
            if entry.target == OpenLineage.target, let lineage = settings.lineage {
                (send, what) = ({ body throws(AlertDeliveryError) in try postLineage(body, to: lineage) }, "lineage")
            } else if let target = settings.targets.first(where: { $0.name == entry.target }) {
                (send, what) = ({ body throws(AlertDeliveryError) in try deliver(body, to: target) }, target.name)
            } else {
                // Its entry is gone from the config: kept, and tried again should it come back.
                let missing = entry.target == OpenLineage.target ? "no [lineage] in the config any more" : "no [[alerts]] entry is named '\(entry.target)' any more"
                try? manifest.markAlertFailed(entry.id, error: missing, nextAttemptAt: now + 3_600_000_000_000)
                failed += 1
                continue
            }
            do throws(AlertDeliveryError) {
                try send(entry.body)
                try? manifest.markAlertSent(entry.id)
                sent += 1
            } catch {
                retry(entry, error, now: now, what: what)
                down[entry.target] = error
                failed += 1
            }
        }
        return (sent, failed)
    }

    /// Records a failed attempt (logged unless `quiet`: another entry's failure in the same
    /// round was): tried again after `alert_retry`, doubling up to an hour.
    private func retry(_ entry: OutboxEntry, _ error: AlertDeliveryError, now: Int64, what: String, quiet: Bool = false) {
        let wait = min(settings.retryNanoseconds << min(entry.attempts, 20), 3_600_000_000_000)
        try? manifest?.markAlertFailed(entry.id, error: error.description, nextAttemptAt: now + wait)
        if quiet { return }
        logger.warning("Alert delivery failed; it will be tried again", metadata: [
            "alert": "\(what)", "event": "\(entry.event)", "attempt": "\(entry.attempts + 1)", "retry_in.s": "\(wait / 1_000_000_000)",
            "error": "\(error.description)",
        ])
    }

    /// One OpenLineage event to the `[lineage]` endpoint.
    private func postLineage(_ body: String, to lineage: LineageConfig) throws(AlertDeliveryError) {
        var headers = [("Content-Type", "application/json"), ("User-Agent", "sluice")]
        if let file = lineage.apiKeyFile {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8),
                  let key = text.split(whereSeparator: \.isNewline).first.map({ $0.trimmingCharacters(in: .whitespaces) }), !key.isEmpty else {
                throw AlertDeliveryError("lineage: cannot read api_key_file \(file) (or its first line is empty): give the user sluice runs as read access")
            }
            headers.append(("Authorization", "Bearer \(key)"))
        }
        try send(body, url: lineage.url, shown: lineage.shownURL, kind: "lineage", headers: headers)
    }

    /// Sends one event's JSON to `target`.
    package func deliver(_ body: String, to target: AlertTarget) throws(AlertDeliveryError) {
        let event = AlertEvent(json: body)
        switch target.kind {
        case .webhook:
            var headers = [("Content-Type", "application/json"), ("User-Agent", "sluice"), ("X-Sluice-Event", event?.event ?? "")]
            if let file = target.secretFile {
                let key = try secret(file, of: target, key: "secret_file")
                let mac = HMAC<SHA256>.authenticationCode(for: Data(body.utf8), using: SymmetricKey(data: Data(key.utf8)))
                headers.append(("X-Sluice-Signature", "sha256=" + Data(mac).map { String(format: "%02x", $0) }.joined()))
            }
            try post(body, to: target, headers: headers)
        case .slack:
            try post(Self.slackMessage(body, event: event), to: target, headers: [("Content-Type", "application/json"), ("User-Agent", "sluice")])
        case .email:
            try mail(body, event: event, to: target)
        }
    }

    /// The first line of a secret's file.
    private func secret(_ file: String, of target: AlertTarget, key: String) throws(AlertDeliveryError) -> String {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8),
              let line = text.split(whereSeparator: \.isNewline).first.map({ $0.trimmingCharacters(in: .whitespaces) }), !line.isEmpty else {
            throw AlertDeliveryError("alert '\(target.name)': cannot read \(key) \(file) (or its first line is empty): give the user sluice runs as read access")
        }
        return line
    }

    private func post(_ body: String, to target: AlertTarget, headers: [(String, String)]) throws(AlertDeliveryError) {
        try send(body, url: target.url ?? "", shown: target.shownURL, kind: target.kind.rawValue, headers: headers)
    }

    private func send(_ body: String, url: String, shown: String, kind: String, headers: [(String, String)]) throws(AlertDeliveryError) {
        do {
            var request = try HTTPClient.Request(url: url, method: .POST, headers: .init(headers))
            request.body = .string(body)
            let response = try Self.http.execute(request: request).wait()
            guard (200..<300).contains(response.status.code) else {
                var text = response.body.map { String(buffer: $0) } ?? ""
                if text.count > 200 { text = String(text.prefix(200)) + "…" }
                throw AlertDeliveryError("\(kind) \(shown) answered \(response.status.code)\(text.isEmpty ? "" : ": \(text)")")
            }
        } catch let e as AlertDeliveryError {
            throw e
        } catch {
            throw AlertDeliveryError("\(kind) \(shown): \(error)")
        }
    }

    /// Slack's incoming-webhook message: a `text` for notifications, and blocks.
    static func slackMessage(_ body: String, event: AlertEvent?) -> String {
        guard let e = event else { return #"{"text":"sluice alert"}"# }
        let scope = [e.client, e.source, e.dataset].compactMap { $0 }.joined(separator: "/")
        let head = e.resolved ? "Resolved: \(e.event)" : "[\(e.severity.uppercased())] \(e.event)"
        let text = "\(head)\(scope.isEmpty ? "" : " — \(scope)"): \(e.message)"
        let object: [String: Any] = [
            "text": text,
            "blocks": [
                ["type": "section", "text": ["type": "mrkdwn", "text": "*\(head)*\(scope.isEmpty ? "" : " `\(scope)`")\n\(e.message)"]],
                ["type": "context", "elements": [["type": "mrkdwn", "text": "id `\(e.id)` · \(e.at)\(e.path.map { " · \($0)" } ?? "")"]]],
            ],
        ]
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }

    /// Email through libcurl: plain text, with the event's JSON attached. STARTTLS when the
    /// server offers it (required when a password is sent), or TLS from the start for
    /// `smtps://`.
    private func mail(_ body: String, event: AlertEvent?, to target: AlertTarget) throws(AlertDeliveryError) {
        guard let smtp = target.smtp, let from = target.from, let curl = curl_easy_init() else {
            throw AlertDeliveryError("alert '\(target.name)': cannot start an SMTP session")
        }
        defer { curl_easy_cleanup(curl) }
        let implicit = smtp.hasPrefix("smtps://")
        let url = implicit ? smtp : "smtp://\(smtp)"
        var password: String?
        if let file = target.passwordFile { password = try secret(file, of: target, key: "password_file") }
        let errors = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
        errors.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        defer { errors.deallocate() }
        var recipients: UnsafeMutablePointer<curl_slist>?
        for to in target.to { recipients = curl_slist_append(recipients, "<\(to)>") }
        defer { curl_slist_free_all(recipients) }
        let subject = event.map { e in
            (e.resolved ? "[sluice] Resolved: " : "[sluice] \(e.severity.uppercased()): ") + e.event + (e.client.map { " — \($0)" } ?? "")
        } ?? "[sluice] alert"
        var headers: UnsafeMutablePointer<curl_slist>?
        for h in ["Subject: \(subject)", "From: <\(from)>", "To: \(target.to.map { "<\($0)>" }.joined(separator: ", "))",
                  "Date: \(Self.mailDate())", "Message-ID: <\(UUID().uuidString.lowercased())@sluice>"] {
            headers = curl_slist_append(headers, h)
        }
        defer { curl_slist_free_all(headers) }
        guard let mime = curl_mime_init(curl) else { throw AlertDeliveryError("alert '\(target.name)': cannot build the message") }
        defer { curl_mime_free(mime) }
        let text = Self.mailText(event, body: body)
        let textPart = curl_mime_addpart(mime)
        curl_mime_data(textPart, text, text.utf8.count)
        curl_mime_type(textPart, "text/plain; charset=utf-8")
        let jsonPart = curl_mime_addpart(mime)
        curl_mime_data(jsonPart, body, body.utf8.count)
        curl_mime_type(jsonPart, "application/json")
        curl_mime_filename(jsonPart, "alert.json")
        curl_mime_encoder(jsonPart, "base64")
        var code = sluice_curl_set_string(curl, CURLOPT_URL, url)
        func set(_ c: CURLcode) { if code == CURLE_OK { code = c } }
        set(sluice_curl_set_string(curl, CURLOPT_MAIL_FROM, "<\(from)>"))
        set(sluice_curl_set_list(curl, CURLOPT_MAIL_RCPT, recipients))
        set(sluice_curl_set_list(curl, CURLOPT_HTTPHEADER, headers))
        set(sluice_curl_set_mime(curl, mime))
        // A password never goes out in the clear: with one, TLS is required.
        set(sluice_curl_set_long(curl, CURLOPT_USE_SSL, Int(password == nil ? CURLUSESSL_TRY.rawValue : CURLUSESSL_ALL.rawValue)))
        set(sluice_curl_set_long(curl, CURLOPT_CONNECTTIMEOUT, 15))
        set(sluice_curl_set_long(curl, CURLOPT_TIMEOUT, 60))
        set(sluice_curl_set_long(curl, CURLOPT_NOSIGNAL, 1))
        set(sluice_curl_set_buffer(curl, CURLOPT_ERRORBUFFER, errors))
        if let ca = target.caFile { set(sluice_curl_set_string(curl, CURLOPT_CAINFO, ca)) }
        if let username = target.username, let password {
            set(sluice_curl_set_string(curl, CURLOPT_USERNAME, username))
            set(sluice_curl_set_string(curl, CURLOPT_PASSWORD, password))
        }
        guard code == CURLE_OK else { throw AlertDeliveryError("alert '\(target.name)': libcurl refused an option: \(String(cString: curl_easy_strerror(code)))") }
        let result = curl_easy_perform(curl)
        guard result == CURLE_OK else {
            let detail = String(cString: errors)
            let reply = sluice_curl_response_code(curl)
            throw AlertDeliveryError("email via \(smtp): \(detail.isEmpty ? String(cString: curl_easy_strerror(result)) : detail)\(reply > 0 ? " (server reply \(reply))" : "")")
        }
    }

    /// The message's text: what happened, then every field.
    static func mailText(_ e: AlertEvent?, body: String) -> String {
        guard let e else { return body + "\r\n" }
        var lines = [e.resolved ? "Resolved: \(e.message)" : e.message, ""]
        for (k, v) in [("event", e.event), ("severity", e.severity), ("client", e.client), ("source", e.source), ("dataset", e.dataset),
                       ("path", e.path), ("version", e.version.map(String.init)), ("id", e.id), ("at", e.at)] {
            if let v { lines.append("\(k): \(v)") }
        }
        lines += ["", "The event as JSON is attached (alert.json).", ""]
        return lines.joined(separator: "\r\n")
    }

    /// RFC 5322's date, in UTC.
    static func mailDate() -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss '+0000'"
        return f.string(from: Date())
    }
}
