import Foundation
import Hummingbird
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import SluiceAgent
import UnixSignals
import SluiceSupport
import SluiceIngest
import SluiceConfig
import SluiceSources
import SluiceTransform
#if canImport(Glibc)
import Glibc
#endif

/// `sluice run`: the agent as a service. One `ServiceGroup` holds the agent (its source
/// runners and transform workers, on threads of their own), the HTTP endpoints, and the
/// SIGHUP reloader; SIGTERM and SIGINT shut it down gracefully.
public enum DaemonMain {
    /// Runs until SIGTERM or SIGINT. Returns the exit code.
    public static func run(configPath: String, logger: Logger) async -> Int32 {
        let agent: Agent
        do {
            agent = try Agent.load(configPath: configPath, logger: logger)
        } catch {
            logger.critical("Cannot start: \(error.message)")
            return error.exitCode
        }
        // A taken address fails the start before anything is announced or opened.
        let listeners = [("agent.http_listen", agent.config.httpListen, agent.config.httpListenAddress),
                         ("api.listen", agent.config.api.listen, agent.config.api.listenAddress)]
        for (key, listen, address) in listeners {
            guard let address, let problem = ListenError.probe(key: key, listen: listen, host: address.host, port: address.port) else { continue }
            logger.critical("Cannot start: \(problem.message)")
            return 1
        }
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        let daemon: AgentRuntime
        do {
            daemon = try AgentRuntime(agent: agent)
        } catch {
            logger.critical("Cannot start: \(error.message)")
            return error.exitCode
        }
        let notifier = SystemdNotifier()
        let agentService = AgentService(daemon: daemon, configPath: agent.config.file, notifier: notifier)
        var services: [any Service] = [agentService, ReloadService(daemon: daemon, configPath: agent.config.file, notifier: notifier)]
        do {
            // The listeners last, so that their graceful shutdown comes first: uploads stop
            // being taken while the agent still runs, and the running ones finish before it stops.
            if let endpoints = try HTTPEndpoints.listener(daemon: daemon, registry: registry, config: agent.config, logger: logger) {
                services.append(endpoints)
            }
            if let api = try ListenerService.uploadAPI(daemon: daemon, config: agent.config, logger: logger) {
                services.append(api)
            }
        } catch {
            logger.critical("Cannot start: \(error.message)")
            return error.exitCode
        }
        let group = ServiceGroup(configuration: .init(
            services: services.map { .init(service: $0, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        do {
            try await group.run()
        } catch let e as ListenError {
            logger.critical("The service stopped with an error: \(e.message)")
            return 1
        } catch {
            logger.critical("The service stopped with an error", metadata: ["error": "\(error)"])
            return 1
        }
        return agentService.exitCode
    }
}

extension DaemonMain {
    /// Reads the files the listeners need at start: the upload API's TLS certificate and key,
    /// and the console's admin token (`check-config` runs this too).
    public static func checkListenerFiles(_ config: AgentConfig) throws(AgentError) {
        if let cert = config.api.tlsCert, let key = config.api.tlsKey, config.api.listenAddress != nil {
            _ = try ListenerService.tlsConfiguration(cert: cert, key: key)
        }
        if let host = config.httpListenAddress?.host {
            _ = try ConsoleAccess(listenHost: host, adminTokenFile: config.adminTokenFile)
        }
    }
}

/// Runs the agent's loops until the graceful shutdown, and talks to systemd.
final class AgentService: Service, @unchecked Sendable {  // `exitCode` is set by run() and read after it has returned
    let daemon: AgentRuntime
    let configPath: String
    let notifier: SystemdNotifier
    private(set) var exitCode: Int32 = 0

    init(daemon: AgentRuntime, configPath: String, notifier: SystemdNotifier) {
        self.daemon = daemon
        self.configPath = configPath
        self.notifier = notifier
    }

    func run() async throws {
        daemon.start()
        notifier.send("READY=1\nSTATUS=\(daemon.summary)")
        daemon.logger.notice("Sluice is running", metadata: ["config": "\(configPath)", "sources": "\(daemon.statusSnapshot.count)"])
        // Watchdog pings at half the interval systemd asks for, only while the loops are alive;
        // the status line now and then.
        let watchdog = notifier.watchdogInterval.map { $0 / 2 }
        let tick: Duration = min(watchdog ?? .seconds(10), .seconds(10))
        await cancelWhenGracefulShutdown {
            var sinceStatus: Duration = .zero
            while !Task.isCancelled && !Task.isShuttingDownGracefully {
                if watchdog != nil, self.daemon.isAlive { self.notifier.send("WATCHDOG=1") }
                if sinceStatus >= .seconds(10) || sinceStatus == .zero {
                    self.notifier.send("STATUS=\(self.daemon.summary)")
                    sinceStatus = .zero
                }
                try? await Task.sleep(for: tick)
                sinceStatus += tick
            }
        }
        notifier.send("STOPPING=1\nSTATUS=shutting down")
        let timeout = Duration.nanoseconds(daemon.config.shutdownTimeoutNanoseconds)
        daemon.logger.notice("Shutting down: letting in-flight work finish", metadata: ["timeout.ms": "\(timeout.components.seconds * 1000)"])
        let clean = await withCheckedContinuation { (done: CheckedContinuation<Bool, Never>) in
            // Joining threads blocks: keep it off the cooperative pool.
            Thread.detachNewThread { [daemon] in done.resume(returning: daemon.stop(timeout: timeout)) }
        }
        if clean {
            daemon.logger.notice("Stopped")
        } else {
            daemon.logger.warning("Work still in flight at shutdown_timeout was abandoned; nothing partial was committed (leftover temp files go at the next start)")
        }
    }
}

/// SIGHUP: reload the config and the mappings; a broken config is logged and the old one kept.
struct ReloadService: Service {
    let daemon: AgentRuntime
    let configPath: String
    let notifier: SystemdNotifier

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        await cancelWhenGracefulShutdown {
            for await _ in signals {
                notifier.send("RELOADING=1\nMONOTONIC_USEC=\(SystemdNotifier.monotonicMicroseconds())")
                do {
                    let agent = try Agent.load(configPath: configPath, logger: daemon.logger)
                    try daemon.reload(agent)
                } catch let error as AgentError {
                    daemon.logger.error("Reload failed; still running on the previous config", metadata: ["error": "\(error.message)"])
                } catch {
                    daemon.logger.error("Reload failed; still running on the previous config", metadata: ["error": "\(error)"])
                }
                notifier.send("READY=1\nSTATUS=\(daemon.summary)")
            }
        }
    }
}

/// sd_notify without libsystemd: datagrams to `$NOTIFY_SOCKET` (a path, or `@name` in the
/// abstract namespace). Without the variable, nothing is sent.
final class SystemdNotifier: Sendable {
    let socketPath: String?
    /// `WATCHDOG_USEC`, when systemd wants pings (and `WATCHDOG_PID`, if set, is us).
    let watchdogInterval: Duration?

    init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        socketPath = environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
        if let usec = environment["WATCHDOG_USEC"].flatMap(Int64.init), usec > 0,
           environment["WATCHDOG_PID"].flatMap(Int32.init).map({ $0 == getpid() }) ?? true {
            watchdogInterval = .microseconds(usec)
        } else {
            watchdogInterval = nil
        }
    }

    static func monotonicMicroseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1_000
    }

    func send(_ message: String) {
        guard let socketPath else { return }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        var path = Array(socketPath.utf8)
        if path.first == UInt8(ascii: "@") { path[0] = 0 }  // abstract namespace
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        guard path.count < capacity else { return }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in path.enumerated() { raw[i] = b }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + path.count)
        let bytes = Array(message.utf8)
        _ = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), sa, length) }
            }
        }
    }
}

/// The internal listener (`http_listen`): `/healthz`, `/readyz`, `/metrics`, `/status`, and
/// the web console.
enum HTTPEndpoints {
    static func listener(daemon: AgentRuntime, registry: PrometheusCollectorRegistry, config: AgentConfig, logger: Logger) throws(AgentError) -> ListenerService? {
        guard let (host, port) = config.httpListenAddress else { return nil }
        let router = Router(context: APIContext.self)
        router.get("/healthz") { _, _ -> Response in
            daemon.isAlive ? text(.ok, "ok\n") : text(.serviceUnavailable, "a service loop has stopped\n")
        }
        router.get("/readyz") { _, _ -> Response in
            daemon.isReady ? text(.ok, "ready\n") : text(.serviceUnavailable, "not ready: the first scan or poll has not started, or the manifest is not writable\n")
        }
        router.get("/metrics") { _, _ -> Response in
            var buffer: [UInt8] = []
            registry.emit(into: &buffer)
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: .init(byteBuffer: ByteBuffer(bytes: buffer)))
        }
        router.get("/status") { _, _ -> Response in
            let body = StatusJSON(started_at: ISO8601DateFormatter().string(from: daemon.started), alive: daemon.isAlive, ready: daemon.isReady,
                                  transform_queue: daemon.transformQueueDepth, sources: daemon.statusSnapshot,
                                  expectations: (try? daemon.agentSnapshot().expectationStatus(client: nil, manifest: daemon.manifest)) ?? [])
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
            let data = (try? encoder.encode(body)) ?? Data("{}".utf8)
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
        }
        let gate = UploadGate(limit: config.api.maxConcurrentUploads)
        let console = Console(daemon: daemon, access: try ConsoleAccess(listenHost: host, adminTokenFile: config.adminTokenFile),
                              uploads: UploadAPI(daemon: daemon, gate: gate, maxUploadSize: config.api.maxUploadSize))
        console.addRoutes(to: router)
        let app = Application(router: router, configuration: .init(address: .hostname(host, port: port), serverName: "sluice"),
                              logger: ListenerService.quiet(logger))
        return ListenerService(application: app, key: "agent.http_listen", listen: config.httpListen, gate: gate,
                               timeout: .nanoseconds(config.shutdownTimeoutNanoseconds), logger: logger)
    }

    static func text(_ status: HTTPResponse.Status, _ s: String) -> Response {
        Response(status: status, headers: [.contentType: "text/plain; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: s)))
    }

    struct StatusJSON: Encodable {
        var started_at: String
        var alive: Bool
        var ready: Bool
        var transform_queue: Int
        var sources: [SourceStatus]
        /// Each `[[clients.<id>.expect]]`: last fulfilment, next deadline, missing deadlines.
        var expectations: [ExpectationStatus]
    }
}
