import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import SluiceAgent
import SluiceSupport
import SluiceLake
import SluiceManifest
import SluiceIngest
import SluiceConfig
import SluiceSources
import SluiceTransform

/// Who may use the console. On loopback nobody logs in; bound to any other address, the
/// console needs `[agent] admin_token_file`'s token, sent as a bearer token or kept in a
/// cookie after the login form. State changes also need the CSRF token (a double-submit
/// cookie, SameSite=Strict).
struct ConsoleAccess: Sendable {
    /// The console is on loopback: no login.
    let open: Bool
    /// The admin token (first line of admin_token_file), when one is configured.
    let adminToken: String?
    /// The session cookie's value: derived from the admin token, so it ends when the token changes.
    let sessionValue: String?

    static let sessionCookie = "sluice_admin"
    static let csrfCookie = "sluice_csrf"

    init(listenHost: String, adminTokenFile: String?) throws(AgentError) {
        open = APIConfig.isLoopback(listenHost)
        guard let adminTokenFile else {
            adminToken = nil
            sessionValue = nil
            return
        }
        guard let text = try? String(contentsOfFile: adminTokenFile, encoding: .utf8),
              let first = text.split(whereSeparator: \.isNewline).first.map({ $0.trimmingCharacters(in: .whitespaces) }), first.count >= 16 else {
            throw AgentError(.config, "agent.admin_token_file \(adminTokenFile): cannot read a token of at least 16 characters from its first line "
                + "(make one with: head -c 32 /dev/urandom | base64 > \(adminTokenFile); chmod 600 it)")
        }
        adminToken = first
        sessionValue = hexString(HMAC<SHA256>.authenticationCode(for: Data("sluice-console-session".utf8), using: SymmetricKey(data: Data(first.utf8))))
    }

    /// Whether the request comes from an operator (logged in, or the console is open).
    func allows(_ request: Request) -> Bool {
        if case .allowed = check(request) { return true }
        return false
    }

    enum Verdict {
        case allowed(viaBearer: Bool)
        case needsLogin
        case notConfigured
    }

    func check(_ request: Request) -> Verdict {
        if open { return .allowed(viaBearer: false) }
        guard let adminToken, let sessionValue else { return .notConfigured }
        if let header = request.headers[.authorization], header.lowercased().hasPrefix("bearer "),
           UploadToken.constantTimeEqual(String(header.dropFirst(7)).trimmingCharacters(in: .whitespaces), adminToken) {
            return .allowed(viaBearer: true)
        }
        if let cookie = request.cookies[Self.sessionCookie]?.value, UploadToken.constantTimeEqual(cookie, sessionValue) {
            return .allowed(viaBearer: false)
        }
        return .needsLogin
    }

    /// The CSRF token a request carries in its cookie (nil: none yet, or not one Sluice made:
    /// the token is written into the page's forms as it is, so it must be plain hex).
    static func csrfCookieValue(_ request: Request) -> String? {
        guard let value = request.cookies[csrfCookie]?.value, !value.isEmpty, value.utf8.count <= 128,
              value.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) || (0x41...0x46).contains($0) })
        else { return nil }
        return value
    }

    /// A state-changing request's CSRF check: the submitted token equals the cookie's.
    static func csrfMatches(_ request: Request, submitted: String?) -> Bool {
        guard let cookie = csrfCookieValue(request), let submitted, !submitted.isEmpty else { return false }
        return UploadToken.constantTimeEqual(cookie, submitted)
    }

    static func newCSRFToken() -> String {
        var rng = SystemRandomNumberGenerator()
        return hexString((0..<24).map { _ in UInt8.random(in: 0...255, using: &rng) })
    }
}

/// The web console on the internal listener: server-rendered pages, a little JavaScript for
/// the upload page's progress bars, the upload API for operators (any client).
struct Console: Sendable {
    let daemon: AgentRuntime
    let access: ConsoleAccess
    let uploads: UploadAPI

    func addRoutes(to router: Router<APIContext>) {
        router.get("/") { request, _ in await page(request) { _ in try overview() } }
        router.get("/clients/:client") { request, context in
            let client = context.parameters.get("client") ?? ""
            let q = request.uri.queryParameters
            let at = VersionPage(after: q["after"].flatMap { Manifest.VersionCursor(text: String($0)) },
                                 before: q["before"].flatMap { Manifest.VersionCursor(text: String($0)) },
                                 offset: q["n"].flatMap { Int(String($0)) }.map { max(0, $0) } ?? 0)
            let message = q["held"].map(String.init)
            return await self.page(request) { csrf in try clientPage(client, at: at, csrf: csrf, message: message) }
        }
        router.post("/clients/:client/held/rerun") { request, context in
            let client = context.parameters.get("client") ?? ""
            return await post(request) { _ in try rerunHeld(client) }
        }
        router.get("/transforms/:id") { request, context in
            let id = context.parameters.get("id").flatMap { Int64($0) } ?? -1
            let message = request.uri.queryParameters["rerun"].map(String.init)
            return await page(request) { csrf in try transformPage(id, csrf: csrf, message: message) }
        }
        router.post("/transforms/:id/rerun") { request, context in
            let id = context.parameters.get("id").flatMap { Int64($0) } ?? -1
            return await post(request) { _ in try rerun(id) }
        }
        router.get("/audit") { request, _ in await page(request) { _ in try auditPage() } }
        router.get("/alerts") { request, _ in await page(request) { _ in try alertsPage() } }
        router.get("/upload") { request, _ in await page(request) { csrf in try uploadPage(csrf: csrf) } }
        router.get("/versions/:id/download") { request, context in
            guard access.allows(request) else { return refused(request) }
            let id = context.parameters.get("id").flatMap { Int64($0) } ?? -1
            return await download(id, context: context)
        }
        router.get("/login") { request, _ in
            let existing = ConsoleAccess.csrfCookieValue(request)
            let csrf = existing ?? ConsoleAccess.newCSRFToken()
            return withCSRFCookie(ConsolePages.html(.ok, ConsolePages.login(csrf: csrf, error: nil, open: access.open)), token: csrf, isNew: existing == nil)
        }
        router.post("/login") { request, _ in
            await post(request, requireOperator: false) { form in
                guard let token = access.adminToken, let session = access.sessionValue,
                      let given = form["token"], UploadToken.constantTimeEqual(given.trimmingCharacters(in: .whitespaces), token) else {
                    return ConsolePages.html(.unauthorized, ConsolePages.login(csrf: form["csrf"] ?? "", error: "That is not the admin token.", open: access.open))
                }
                var r = Self.redirect("/")
                r.setCookie(Cookie(name: ConsoleAccess.sessionCookie, value: session, path: "/", httpOnly: true, sameSite: .strict))
                return r
            }
        }
        router.post("/logout") { request, _ in
            await post(request, requireOperator: false) { _ in
                var r = Self.redirect("/login")
                r.setCookie(Cookie(name: ConsoleAccess.sessionCookie, value: "", maxAge: 0, path: "/", httpOnly: true, sameSite: .strict))
                return r
            }
        }
        // The upload API for operators: any client (?client=…&source=…), a CSRF header for PUT
        // unless the admin token is sent as a bearer token.
        uploads.addRoutes(to: router, channel: { $0.channel }) { request, _ in
            guard case .allowed(let viaBearer) = access.check(request) else { return nil }
            if request.method == .put && !viaBearer
                && !ConsoleAccess.csrfMatches(request, submitted: request.headers[HTTPField.Name("X-CSRF-Token")!]) {
                return nil
            }
            return .operator
        }
    }

    // MARK: Plumbing

    /// A page: checks access, renders off the event loop, sets the CSRF cookie when missing.
    func page(_ request: Request, _ render: @escaping @Sendable (_ csrf: String) throws -> String) async -> Response {
        guard access.allows(request) else { return refused(request) }
        let existing = ConsoleAccess.csrfCookieValue(request)
        let csrf = existing ?? ConsoleAccess.newCSRFToken()
        do {
            let html = try await NIOThreadPool.singleton.runIfActive { try render(csrf) }
            return withCSRFCookie(ConsolePages.html(.ok, html), token: csrf, isNew: existing == nil)
        } catch let e as ConsoleError {
            return ConsolePages.html(e.status, ConsolePages.message(title: e.title, text: e.text))
        } catch {
            return ConsolePages.html(.internalServerError, ConsolePages.message(title: "Something failed", text: "\(error)"))
        }
    }

    /// A form POST: access (unless logging in), the CSRF token, then `handle` off the event loop.
    func post(_ request: Request, requireOperator: Bool = true, _ handle: @escaping @Sendable ([String: String]) throws -> Response) async -> Response {
        if requireOperator && !access.allows(request) { return refused(request) }
        var request = request
        guard let body = try? await request.collectBody(upTo: 64 << 10) else {
            return ConsolePages.html(.contentTooLarge, ConsolePages.message(title: "Form too large", text: "A console form is at most 64 KiB."))
        }
        let form = Self.parseForm(String(buffer: body))
        guard ConsoleAccess.csrfMatches(request, submitted: form["csrf"]) else {
            return ConsolePages.html(.forbidden, ConsolePages.message(
                title: "The form expired", text: "The CSRF token is missing or does not match: reload the page and try again."))
        }
        do {
            return try await NIOThreadPool.singleton.runIfActive { try handle(form) }
        } catch let e as ConsoleError {
            return ConsolePages.html(e.status, ConsolePages.message(title: e.title, text: e.text))
        } catch {
            return ConsolePages.html(.internalServerError, ConsolePages.message(title: "Something failed", text: "\(error)"))
        }
    }

    func refused(_ request: Request) -> Response {
        switch access.check(request) {
        case .notConfigured:
            return ConsolePages.html(.forbidden, ConsolePages.message(
                title: "The console needs an admin token",
                text: "http_listen is not on loopback, so the console requires [agent] admin_token_file in agent.conf. Set it and restart sluice."))
        default:
            if request.method == .get, !(request.headers[.accept] ?? "").contains("json") { return Self.redirect("/login") }
            return UploadAPI.unauthorized()
        }
    }

    /// A page rendered with the CSRF token `token`: the request's cookie's, or a new one
    /// (`isNew`), then set as the cookie.
    func withCSRFCookie(_ response: Response, token: String, isNew: Bool) -> Response {
        var r = response
        if isNew {
            r.setCookie(Cookie(name: ConsoleAccess.csrfCookie, value: token, path: "/", httpOnly: true, sameSite: .strict))
        }
        return r
    }

    static func redirect(_ location: String) -> Response {
        Response(status: .seeOther, headers: [.location: location, .contentLength: "0"])
    }

    static func parseForm(_ text: String) -> [String: String] {
        var out: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1).map { String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? "" }
            if let k = kv.first { out[k] = kv.count > 1 ? kv[1] : "" }
        }
        return out
    }

    // MARK: Pages

    func overview() throws -> String {
        let config = daemon.config
        let manifest = daemon.manifest
        let day = String(Timestamp.now().prefix(10))
        let since = Self.day(daysAgo: 29)
        var rows: [ConsolePages.SourceRow] = []
        var live: [String: SourceStatus] = [:]
        for s in daemon.statusSnapshot { live["\(s.client)/\(s.source)"] = s }
        var summaries = try manifest.sourceSummaries(config.clients.flatMap { c in c.sources.map { (c.id, $0.name) } })[...]
        let today = try manifest.ingestedSince(day)
        for c in config.clients {
            let todays = today[c.id] ?? [:]
            for s in c.sources {
                let summary = summaries.removeFirst()
                let status = live["\(c.id)/\(s.name)"]
                // With agents sharing the manifest: who polls each polled source.
                let state = status.map { s in
                    s.state == .elsewhere ? "polled by \(s.owner ?? "another agent")" : s.state.rawValue + (s.owner.map { " · lease: \($0)" } ?? "")
                } ?? ""
                rows.append(.init(client: c.id, source: s.name, type: status?.type ?? "", state: state, summary: summary,
                                  filesToday: todays[s.name]?.files ?? 0, bytesToday: todays[s.name]?.bytes ?? 0))
            }
        }
        let daily = try manifest.dailyIngest(since: since)
        return ConsolePages.overview(rows: rows, clients: config.clients.map(\.id), daily: daily, since: since, held: try manifest.heldCounts(),
                                     alive: daemon.isAlive, ready: daemon.isReady, queue: daemon.transformQueueDepth, agent: config.name)
    }

    /// Versions shown per page of a client's page.
    static let versionsPerPage = 200

    /// Held units shown on a client's page.
    static let heldShown = 100

    /// Which page of a client's versions to show: the one after (older than) or before (newer
    /// than) a row, read along the index (keyset paging: as fast deep in the history as at its
    /// top); `offset` is how many newer versions there are, for the "showing" line only.
    struct VersionPage {
        var after: Manifest.VersionCursor?
        var before: Manifest.VersionCursor?
        var offset = 0
    }

    func clientPage(_ client: String, at: VersionPage = VersionPage(), csrf: String, message: String? = nil) throws -> String {
        guard let c = daemon.config.client(client) else {
            throw ConsoleError(.notFound, "No such client", "There is no client '\(client)' in agent.conf.")
        }
        let perPage = Self.versionsPerPage
        let total = try daemon.manifest.versionCount(client: client)
        var offset = at.offset
        var versions: [Manifest.VersionRow]
        if let before = at.before {
            versions = try daemon.manifest.recentVersions(client: client, limit: perPage, before: before)
            // Fewer than a page newer than it: the newest page.
            if versions.count < perPage {
                versions = try daemon.manifest.recentVersions(client: client, limit: perPage)
                offset = 0
            }
        } else {
            versions = try daemon.manifest.recentVersions(client: client, limit: perPage, after: at.after)
            if at.after == nil { offset = 0 }
        }
        let transforms = try daemon.manifest.recentTransforms(client: client, limit: 200)
        let held = try daemon.manifest.heldTransforms(client: client, limit: Self.heldShown)
        return ConsolePages.client(id: client, displayName: c.displayName, sources: c.sources.map(\.name), versions: versions,
                                   paging: .init(offset: offset, perPage: perPage, total: total), held: held, heldTotal: try daemon.manifest.heldCounts()[client] ?? 0,
                                   transforms: transforms, expectations: (try? daemon.agentSnapshot().expectationStatus(client: client, manifest: daemon.manifest)) ?? [],
                                   csrf: csrf, message: message)
    }

    func alertsPage() throws -> String {
        let agent = daemon.agentSnapshot()
        return ConsolePages.alerts(try daemon.manifest.recentAlerts(limit: 200).map(AlertRow.init), targets: agent.config.alerts.targets.map(\.name))
    }

    func transformPage(_ id: Int64, csrf: String, message: String?) throws -> String {
        guard let t = try daemon.manifest.transformRow(id: id) else {
            throw ConsoleError(.notFound, "No such transform", "There is no transform \(id) in the manifest.")
        }
        var rejects: [String] = []
        if let rel = t.rejectsPath {
            if let copy = try? daemon.lake.localCopy(of: rel) { rejects = Self.firstLines(of: copy.path, count: 20) }
        }
        return ConsolePages.transform(t, rejects: rejects, csrf: csrf, message: message)
    }

    func rerun(_ id: Int64) throws -> Response {
        guard let t = try daemon.manifest.transformRow(id: id) else {
            throw ConsoleError(.notFound, "No such transform", "There is no transform \(id) in the manifest.")
        }
        guard t.isLatest, t.status == "failed" || t.status == "held" else {
            throw ConsoleError(.conflict, "Nothing to re-run", "Transform \(id) is not the latest failed or held transform of \(t.path) v\(t.version).")
        }
        daemon.logger.notice("Console: re-running a \(t.status) transform", metadata: ["client": "\(t.client)", "path": "\(t.path)", "version": "\(t.version)"])
        do {
            _ = try daemon.rerunTransforms(client: t.client, selection: .rerunVersion(t.versionID))
        } catch {
            throw ConsoleError(.unprocessableContent, "The re-run could not start", error.message)
        }
        guard let latest = try daemon.manifest.latestTransform(versionID: t.versionID) else {
            throw ConsoleError(.internalServerError, "No transform recorded", "The re-run recorded nothing for \(t.path) v\(t.version).")
        }
        return Self.redirect("/transforms/\(latest.id)?rerun=\(latest.status)")
    }

    /// Re-runs every held unit of a client with its mapping as it is now (after a mapping
    /// change, or to accept the change), then shows the client's page.
    func rerunHeld(_ client: String) throws -> Response {
        guard daemon.config.client(client) != nil else {
            throw ConsoleError(.notFound, "No such client", "There is no client '\(client)' in agent.conf.")
        }
        daemon.logger.notice("Console: re-running held transforms", metadata: ["client": "\(client)"])
        let reports: [TransformReport]
        do {
            reports = try daemon.rerunTransforms(client: client, selection: .held)
        } catch {
            throw ConsoleError(.unprocessableContent, "The re-run could not start", error.message)
        }
        let units = reports.filter { $0.member == nil }
        let summary: String = TransformStatus.allCases.compactMap { s -> String? in
            let n = units.filter { $0.status == s }.count
            return n == 0 ? nil : "\(n) \(s.rawValue)"
        }.joined(separator: ", ")
        let outcome: String = summary.isEmpty ? "nothing was held" : summary
        return Self.redirect("/clients/\(ConsolePages.url(client))?held=\(ConsolePages.url(outcome))#held")
    }

    func auditPage() throws -> String {
        let report = try daemon.agentSnapshot().audit(client: nil, quick: true)
        return ConsolePages.audit(report)
    }

    func uploadPage(csrf: String) throws -> String {
        var targets: [(client: String, source: String)] = []
        for c in daemon.config.clients {
            for s in c.sources where s.takesUploads { targets.append((c.id, s.name)) }
        }
        return ConsolePages.upload(targets: targets, csrf: csrf)
    }

    func download<Context: RequestContext>(_ id: Int64, context: Context) async -> Response {
        let manifest = daemon.manifest
        guard let found = try? await NIOThreadPool.singleton.runIfActive({ try manifest.versionRow(id: id) }), let row = found.row as Manifest.VersionRow? else {
            return ConsolePages.html(.notFound, ConsolePages.message(title: "No such version", text: "There is no version \(id) in the manifest."))
        }
        let lake = daemon.lake
        let copy = try? await NIOThreadPool.singleton.runIfActive { try lake.localCopy(of: row.lakePath, sha256: row.sha256) }
        guard let copy, let body = try? await FileIO().loadFile(path: copy.path, context: context) else {
            return ConsolePages.html(.internalServerError, ConsolePages.message(title: "Cannot read the lake file", text: "\(row.lakePath): run `sluice audit`."))
        }
        let name = (row.path as NSString).lastPathComponent.replacingOccurrences(of: "\"", with: "")
        var headers: HTTPFields = [.contentType: "application/octet-stream", .contentLength: "\(row.size)", .eTag: "\"\(row.sha256)\""]
        headers[.contentDisposition] = "attachment; filename=\"\(name)\""
        headers[HTTPField.Name("X-Content-SHA256")!] = row.sha256
        withExtendedLifetime(copy) {}
        return Response(status: .ok, headers: headers, body: body)
    }

    // MARK: Helpers

    static func day(daysAgo: Int) -> String {
        String(Timestamp.iso8601(nanoseconds: Int64((Date().timeIntervalSince1970 - Double(daysAgo) * 86_400) * 1e9)).prefix(10))
    }

    /// Up to `count` lines from the start of a file, each cut at 2,000 characters.
    static func firstLines(of path: String, count: Int) -> [String] {
        guard let handle = FileHandle(forReadingAtPath: path) else { return [] }
        defer { try? handle.close() }
        let data = (try? handle.read(upToCount: 256 << 10)) ?? Data()
        return String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: true).prefix(count).map { String($0.prefix(2000)) }
    }
}

/// A page-level failure with the status and words to show.
struct ConsoleError: Error {
    var status: HTTPResponse.Status
    var title: String
    var text: String
    init(_ status: HTTPResponse.Status, _ title: String, _ text: String) {
        self.status = status
        self.title = title
        self.text = text
    }
}
