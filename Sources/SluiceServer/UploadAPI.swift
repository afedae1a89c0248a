import Crypto
import Foundation
import Synchronization
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOHTTPTypes
import NIOPosix
import NIOSSL
import ServiceLifecycle
import SluiceAgent
import SluiceSupport
import SluiceLake
import SluiceManifest
import SluiceIngest
import SluiceConfig
import SluiceSources
import SluiceTransform

/// The request context of the upload API: the channel, for the peer's address and for the
/// interim `100 Continue`.
struct APIContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let channel: any Channel

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}

/// Who is asking: a client's token, or an operator of the console.
enum Principal: Sendable {
    case token(TokenRecord)
    case `operator`

    var tokenID: Int64? {
        if case .token(let t) = self { return t.id }
        return nil
    }
}

/// Uploads in flight: the `max_concurrent_uploads` cap, and the shutdown (no new upload once
/// it has begun; the running ones are given up at `shutdown_timeout`).
final class UploadGate: Sendable {
    private struct State {
        /// Each running upload's connection, and its body once it is reading one.
        var active: [Int: (channel: any Channel, body: UploadBody?)] = [:]
        var nextID = 0
        var draining = false
        var abandoned = false
    }
    private let state = Mutex(State())
    let limit: Int

    init(limit: Int) { self.limit = limit }

    enum Entry {
        case admitted(Int)
        case busy
        case shuttingDown
    }

    func enter(channel: any Channel) -> Entry {
        state.withLock { s in
            if s.draining { return .shuttingDown }
            if s.active.count >= limit { return .busy }
            s.nextID += 1
            s.active[s.nextID] = (channel, nil)
            return .admitted(s.nextID)
        }
    }

    /// The body an admitted upload is reading, so that the shutdown can give it up.
    func attach(_ id: Int, body: UploadBody) { state.withLock { $0.active[id]?.body = body } }

    func leave(_ id: Int) { _ = state.withLock { $0.active.removeValue(forKey: id) } }

    var isAbandoned: Bool { state.withLock { $0.abandoned } }

    /// Refuses new uploads from now on, and gives up the running ones after `timeout`.
    func beginDraining(timeout: Duration, logger: Logger) {
        let running: Int = state.withLock {
            $0.draining = true
            return $0.active.count
        }
        guard running > 0 else { return }
        logger.notice("Letting running uploads finish", metadata: ["uploads": "\(running)", "timeout.ms": "\(timeout.components.seconds * 1000)"])
        let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
        DispatchQueue.global().asyncAfter(deadline: .now() + seconds) { [self] in
            let running = state.withLock {
                $0.abandoned = true
                return Array($0.active.values)
            }
            guard !running.isEmpty else { return }
            for upload in running { upload.body?.fail(.abandoned) }
            let channels = running.map(\.channel)
            logger.warning("Uploads still running at shutdown_timeout were abandoned; nothing partial was kept", metadata: ["uploads": "\(running.count)"])
            // A sender that has stalled is woken by its connection closing.
            DispatchQueue.global().asyncAfter(deadline: .now() + 2) {
                for c in channels { c.close(promise: nil) }
            }
        }
    }
}

/// The upload API (`/api/v1/files`), shared by the public `[api]` listener (clients, with
/// their tokens) and the console (operators).
struct UploadAPI: Sendable {
    let daemon: AgentRuntime
    let gate: UploadGate
    let maxUploadSize: Int64

    static let prefix = "/api/v1/files"

    /// Adds the routes; `authenticate` says who sent a request (nil: 401).
    func addRoutes<Context: RequestContext>(to router: Router<Context>, channel: @escaping @Sendable (Context) -> any Channel,
                                            authenticate: @escaping @Sendable (Request, Context) async -> Principal?) {
        router.put(RouterPath("\(Self.prefix)/**")) { request, context -> Response in
            guard let who = await authenticate(request, context) else { return Self.unauthorized() }
            return await noteUse(of: who, await put(request, channel: channel(context), principal: who))
        }
        router.get(RouterPath(Self.prefix)) { request, context -> Response in
            guard let who = await authenticate(request, context) else { return Self.unauthorized() }
            return await noteUse(of: who, await list(request, principal: who))
        }
        router.get(RouterPath("\(Self.prefix)/**")) { request, context -> Response in
            guard let who = await authenticate(request, context) else { return Self.unauthorized() }
            return await noteUse(of: who, await download(request, principal: who, context: context))
        }
    }

    /// Records a token's use once its request was served (2xx): a refused request, such as
    /// one for a source the token cannot reach, leaves `last_used_at` as it was.
    func noteUse(of principal: Principal, _ response: Response) async -> Response {
        guard case .token(let token) = principal, (200..<300).contains(response.status.code), Manifest.useIsDue(token) else { return response }
        let manifest = daemon.manifest
        _ = try? await NIOThreadPool.singleton.runIfActive { try manifest.recordUse(of: token) }
        return response
    }

    // MARK: Who may do what

    /// The bearer token's principal, or nil. Tokens are checked against the manifest on every
    /// request, so a revoked one is refused at once.
    func bearer(_ request: Request) async -> Principal? {
        guard let presented = UploadRequestText.bearerToken(request.headers[.authorization]) else { return nil }
        let manifest = daemon.manifest
        let record = try? await NIOThreadPool.singleton.runIfActive { try manifest.authenticate(token: presented) }
        return (record ?? nil).map { .token($0) }
    }

    enum Refusal: Error {
        case status(HTTPResponse.Status, String)

        var response: Response {
            switch self {
            case .status(let status, let message): UploadAPI.error(status, message)
            }
        }
    }

    /// Which client and source a request is for: its `client` and `source` query parameters,
    /// else the token's, else the client's only upload source.
    func target(_ request: Request, principal: Principal) throws(Refusal) -> (client: String, sources: [String: HTTPSourceConfig]) {
        let query = request.uri.queryParameters
        let askedClient = query["client"].map(String.init)
        let askedSource = query["source"].map(String.init)
        let client: String
        switch principal {
        case .token(let t):
            if let askedClient, askedClient != t.client { throw .status(.forbidden, "this token is not for client '\(askedClient)'") }
            if let askedSource, let own = t.source, askedSource != own { throw .status(.forbidden, "this token is not for source '\(askedSource)'") }
            client = t.client
        case .operator:
            guard let askedClient else { throw .status(.unprocessableContent, "name the client: ?client=NAME") }
            client = askedClient
        }
        let all = daemon.uploadSources(client: client)
        let wanted: String?
        if case .token(let t) = principal, let own = t.source { wanted = own } else { wanted = askedSource }
        if let wanted {
            guard let config = all[wanted] else {
                throw .status(.notFound, "client '\(client)' has no upload source '\(wanted)' (a source with type = \"http\" in agent.conf)")
            }
            return (client, [wanted: config])
        }
        guard !all.isEmpty else {
            throw .status(.notFound, "client '\(client)' has no upload source: add one with type = \"http\" to agent.conf")
        }
        return (client, all)
    }

    // MARK: PUT

    func put(_ request: Request, channel: any Channel, principal: Principal) async -> Response {
        let started = Timestamp.now()
        let remote = Self.remoteAddress(request, channel: channel)
        let rawPath = String(request.uri.path.dropFirst(Self.prefix.count + 1))
        var client = "", sourceName = "", shownPath = rawPath

        func refuse(_ status: HTTPResponse.Status, _ message: String, record: Bool = true) -> Response {
            if record, !client.isEmpty {
                self.daemon.recordUpload(UploadRecord(tokenID: principal.tokenID, client: client, source: sourceName, path: shownPath,
                                                 remoteAddress: remote, size: 0, sha256: nil, status: "rejected", httpStatus: Int(status.code),
                                                 version: nil, lakePath: nil, error: message, startedAt: started, finishedAt: Timestamp.now()))
            }
            return Self.error(status, message)
        }

        let sources: [String: HTTPSourceConfig]
        do {
            (client, sources) = try target(request, principal: principal)
        } catch {
            return error.response
        }
        guard sources.count == 1, let (name, config) = sources.first else {
            return Self.error(.unprocessableContent, "client '\(client)' has several upload sources (\(sources.keys.sorted().joined(separator: ", "))): name one with ?source=NAME")
        }
        sourceName = name
        let path: RelativePath
        switch UploadRequestText.uploadPath(rawPath) {
        case .failure(let why):
            return refuse(.unprocessableContent, why.description)
        case .success(let p):
            path = p
            shownPath = p.display
        }
        guard config.filter.accepts(file: path.bytes) else {
            return refuse(.unprocessableContent, "\(path.display) is outside the include/exclude patterns of source '\(name)' of client '\(client)'")
        }
        let expected: String?
        switch UploadRequestText.declaredSHA256(hex: request.headers[HTTPField.Name("X-Content-SHA256")!], contentDigest: request.headers[HTTPField.Name("Content-Digest")!]) {
        case .failure(let why): return refuse(.badRequest, why.description)
        case .success(let sha): expected = sha
        }
        let declaredLength = request.headers[.contentLength].flatMap { Int64($0) }
        if let declaredLength, declaredLength > maxUploadSize {
            return refuse(.contentTooLarge, "the body is \(declaredLength) bytes; api.max_upload_size is \(ByteSizeText.format(maxUploadSize))")
        }
        let slot: Int
        switch gate.enter(channel: channel) {
        case .shuttingDown:
            return refuse(.serviceUnavailable, "the agent is shutting down; retry in a moment", record: false).with(retryAfter: 5)
        case .busy:
            return refuse(.tooManyRequests, "more than api.max_concurrent_uploads (\(gate.limit)) uploads are running; retry in a moment").with(retryAfter: 2)
        case .admitted(let id):
            slot = id
        }
        defer { gate.leave(slot) }

        if request.headers[.expect]?.lowercased() == "100-continue" {
            channel.writeAndFlush(HTTPResponsePart.head(HTTPResponse(status: .continue)), promise: nil)
        }
        let body = UploadBody(declaredLength: declaredLength)
        gate.attach(slot, body: body)
        let upload = UploadRequest(client: client, source: name, path: path, expectedSHA256: expected, tokenID: principal.tokenID,
                                   remoteAddress: remote, body: body)
        let (agent, gate) = (self.daemon, self.gate)
        async let outcome = Self.onThread("upload \(client)/\(name)") { agent.receiveUpload(upload, abandon: { gate.isAbandoned }) }
        do {
            for try await chunk in request.body {
                if body.received + Int64(chunk.readableBytes) > maxUploadSize {
                    body.fail(.tooLarge)
                    break
                }
                guard await body.push(chunk) else { break }
            }
            body.finish()
        } catch {
            body.fail(.disconnected("\(error)"))
        }
        let result = await outcome
        switch result {
        case .stored(let f):
            return Self.json(.created, StoredJSON(client: client, source: name, file: f))
        case .unchanged(let f):
            return Self.json(.ok, StoredJSON(client: client, source: name, file: f))
        case .checksumMismatch(let why):
            return Self.error(.badRequest, why)
        case .bodyFailed(let f):
            // The rest of the body is not read: close the connection after the answer.
            return Self.error(HTTPResponse.Status(code: f.httpStatus), f == .tooLarge ? "\(f.message) (\(ByteSizeText.format(maxUploadSize)))" : f.message).closingConnection(channel)
        case .unavailable(let why):
            return Self.error(.serviceUnavailable, why).with(retryAfter: 5)
        case .failed(let why):
            return Self.error(.internalServerError, "the upload could not be stored: \(why)")
        }
    }

    struct StoredJSON: Encodable {
        var client: String
        var source: String
        var path: String
        var version: Int?
        var sha256: String?
        var size: Int64?
        var lake_path: String?

        init(client: String, source: String, file: FileReport) {
            self.client = client
            self.source = source
            path = file.path
            version = file.version
            sha256 = file.sha256
            size = file.size
            lake_path = file.lakePath
        }
    }

    // MARK: GET

    func list(_ request: Request, principal: Principal) async -> Response {
        let (client, sources): (String, [String: HTTPSourceConfig])
        do {
            (client, sources) = try target(request, principal: principal)
        } catch {
            return error.response
        }
        let prefix = request.uri.queryParameters["prefix"].map(String.init) ?? ""
        let manifest = daemon.manifest
        do {
            let rows = try await NIOThreadPool.singleton.runIfActive {
                try manifest.versions(client: client, sources: sources.keys.sorted(), prefix: prefix)
            }
            var files: [ListedFile] = []
            for r in rows {
                if files.last?.source != r.source || files.last?.path != r.path {
                    files.append(ListedFile(source: r.source, path: r.path, versions: []))
                }
                files[files.count - 1].versions.append(.init(version: r.version, sha256: r.sha256, size: r.size, ingested_at: r.ingested_at))
            }
            return Self.json(.ok, Listing(client: client, prefix: prefix, files: files))
        } catch {
            return Self.error(.internalServerError, "\(error)")
        }
    }

    struct Listing: Encodable {
        var client: String
        var prefix: String
        var files: [ListedFile]
    }

    struct ListedFile: Encodable {
        struct Version: Encodable {
            var version: Int
            var sha256: String
            var size: Int64
            var ingested_at: String
        }
        var source: String
        var path: String
        var versions: [Version]
    }

    func download<Context: RequestContext>(_ request: Request, principal: Principal, context: Context) async -> Response {
        let (client, sources): (String, [String: HTTPSourceConfig])
        do {
            (client, sources) = try target(request, principal: principal)
        } catch {
            return error.response
        }
        guard case .success(let path) = UploadRequestText.uploadPath(String(request.uri.path.dropFirst(Self.prefix.count + 1))) else {
            return Self.error(.unprocessableContent, "not a valid file path")
        }
        let versionParam = request.uri.queryParameters["version"].map(String.init)
        let version = versionParam.flatMap { Int($0) }
        if versionParam != nil && (version == nil || version! < 1) {
            return Self.error(.badRequest, "version must be a whole number from 1")
        }
        let manifest = daemon.manifest
        let found: [VersionRecord]
        do {
            found = try await NIOThreadPool.singleton.runIfActive {
                try sources.keys.sorted().compactMap { try manifest.version(client: client, source: $0, path: path.display, version: version) }
            }
        } catch {
            return Self.error(.internalServerError, "\(error)")
        }
        guard let record = found.first else {
            return Self.error(.notFound, "no \(version.map { "version \($0) of " } ?? "")\(path.display) for client '\(client)'")
        }
        if found.count > 1 {
            return Self.error(.unprocessableContent, "\(path.display) is in several upload sources (\(found.map(\.source).joined(separator: ", "))): name one with ?source=NAME")
        }
        do {
            let lake = daemon.lake
            let copy = try await NIOThreadPool.singleton.runIfActive { try lake.localCopy(of: record.lake_path, sha256: record.sha256) }
            let body = try await FileIO().loadFile(path: copy.path, context: context)
            withExtendedLifetime(copy) {}
            let digest = Data(UploadRequestText.bytes(hex: record.sha256)).base64EncodedString()
            var headers: HTTPFields = [
                .contentType: "application/octet-stream",
                .contentLength: "\(record.size)",
                .eTag: "\"\(record.sha256)\"",
            ]
            headers[HTTPField.Name("X-Content-SHA256")!] = record.sha256
            headers[HTTPField.Name("Content-Digest")!] = "sha-256=:\(digest):"
            headers[HTTPField.Name("X-Sluice-Version")!] = "\(record.version)"
            return Response(status: .ok, headers: headers, body: body)
        } catch {
            return Self.error(.internalServerError, "the lake file of \(path.display) v\(record.version) cannot be read; run `sluice audit`")
        }
    }

    // MARK: Helpers

    /// The peer's address; behind a reverse proxy on loopback, the `X-Real-IP` it sets.
    static func remoteAddress(_ request: Request, channel: any Channel) -> String? {
        let peer = channel.remoteAddress?.ipAddress
        if let peer, APIConfig.isLoopback(peer) || peer == "::ffff:127.0.0.1",
           let real = request.headers[HTTPField.Name("X-Real-IP")!], !real.isEmpty {
            return real
        }
        return peer
    }

    static func unauthorized() -> Response {
        var r = error(.unauthorized, "unauthorized")
        r.headers[.wwwAuthenticate] = "Bearer"
        return r
    }

    static func error(_ status: HTTPResponse.Status, _ message: String) -> Response {
        json(status, ["error": message])
    }

    static func json(_ status: HTTPResponse.Status, _ value: some Encodable) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data + [0x0a])))
    }

    /// Runs blocking work on a thread of its own (an upload streams for as long as it takes;
    /// it must not hold one of the few cooperative threads).
    static func onThread<T: Sendable>(_ name: String, _ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { (done: CheckedContinuation<T, Never>) in
            let t = Thread { done.resume(returning: body()) }
            t.name = name
            t.stackSize = 4 << 20
            t.start()
        }
    }
}

extension Response {
    func with(retryAfter seconds: Int) -> Response {
        var r = self
        r.headers[.retryAfter] = "\(seconds)"
        return r
    }

    /// Closes the connection once this response is written (the rest of the body is not read).
    func closingConnection(_ channel: any Channel) -> Response {
        var r = self
        r.headers[.connection] = "close"
        let body = r.body
        r.body = ResponseBody(contentLength: body.contentLength) { writer in
            try await body.write(writer)
            channel.eventLoop.execute { channel.close(promise: nil) }
        }
        return r
    }
}

/// A Hummingbird listener as a service, named by its config key: a listener that cannot be
/// opened says which key to change; a graceful shutdown refuses new uploads (503) and lets the
/// running ones finish within `shutdown_timeout`.
struct ListenerService: Service {
    let application: any Service
    let key: String
    let listen: String
    let gate: UploadGate
    let timeout: Duration
    let logger: Logger

    func run() async throws {
        do {
            try await withGracefulShutdownHandler {
                try await application.run()
            } onGracefulShutdown: {
                gate.beginDraining(timeout: timeout, logger: logger)
            }
        } catch {
            // A bind failure (taken, not permitted, no such address), named by its errno.
            if let io = error as? IOError, [EADDRINUSE, EACCES, EADDRNOTAVAIL].contains(io.errnoCode) {
                throw ListenError(key: key, address: listen, reason: String(cString: strerror(io.errnoCode)))
            }
            let text = "\(error)"
            if text.contains("bind") || text.contains("Address already in use") { throw ListenError(key: key, address: listen, reason: text) }
            throw error
        }
    }

    /// The public upload listener (`[api] listen`), with TLS when configured; nil when off.
    static func uploadAPI(daemon: AgentRuntime, config: AgentConfig, logger: Logger) throws(AgentError) -> ListenerService? {
        guard let (host, port) = config.api.listenAddress else { return nil }
        let gate = UploadGate(limit: config.api.maxConcurrentUploads)
        let api = UploadAPI(daemon: daemon, gate: gate, maxUploadSize: config.api.maxUploadSize)
        let router = Router(context: APIContext.self)
        api.addRoutes(to: router, channel: { $0.channel }, authenticate: { request, _ in await api.bearer(request) })
        var server: HTTPServerBuilder = .http1(configuration: .init(idleTimeout: .seconds(120)))
        if let cert = config.api.tlsCert, let key = config.api.tlsKey {
            let tls = try tlsConfiguration(cert: cert, key: key)
            do {
                server = try .tls(.http1(configuration: .init(idleTimeout: .seconds(120))), tlsConfiguration: tls)
            } catch {
                throw AgentError(.config, "api.tls_cert/api.tls_key: the TLS setup failed: \(error)")
            }
        }
        let app = Application(router: router, server: server, configuration: .init(address: .hostname(host, port: port), serverName: "sluice"),
                              logger: quiet(logger))
        return ListenerService(application: app, key: "api.listen", listen: config.api.listen, gate: gate,
                               timeout: .nanoseconds(config.shutdownTimeoutNanoseconds), logger: logger)
    }

    static func tlsConfiguration(cert: String, key: String) throws(AgentError) -> TLSConfiguration {
        let chain: [NIOSSLCertificateSource]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(cert).map { .certificate($0) }
        } catch {
            throw AgentError(.config, "api.tls_cert \(cert): cannot read a PEM certificate chain (\(error)); check the file and that the sluice user may read it")
        }
        guard !chain.isEmpty else { throw AgentError(.config, "api.tls_cert \(cert): no certificate in the file") }
        let privateKey: NIOSSLPrivateKey
        do {
            privateKey = try NIOSSLPrivateKey(file: key, format: .pem)
        } catch {
            throw AgentError(.config, "api.tls_key \(key): cannot read a PEM private key (\(error)); check the file and that the sluice user may read it")
        }
        return TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(privateKey))
    }

    /// Hummingbird's own log lines at warning and above only.
    static func quiet(_ logger: Logger) -> Logger {
        var l = logger
        l.logLevel = max(logger.logLevel, .warning)
        return l
    }
}

/// A listener that could not be opened, named by its config key.
struct ListenError: Error {
    var key: String
    var address: String
    var reason: String

    var message: String {
        "\(key) \(address) cannot be listened on: \(reason) — choose a free address, or \"\" to turn it off"
    }

    /// Binds and closes a socket on `host:port` to learn, before anything starts, whether the
    /// listener could take it (nil) or why not. The listener itself binds again later; this
    /// only keeps a taken port from being announced as a running service first.
    static func probe(key: String, listen: String, host: String, port: Int) -> ListenError? {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0, let first = list else {
            return ListenError(key: key, address: listen, reason: rc == 0 ? "no address" : String(cString: gai_strerror(rc)))
        }
        defer { freeaddrinfo(list) }
        let fd = socket(first.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }  // the listener will say why
        defer { close(fd) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        guard bind(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0 else {
            return ListenError(key: key, address: listen, reason: String(cString: strerror(errno)))
        }
        return nil
    }
}
