import Foundation
import Logging
import SluiceLake
import SluiceManifest
import SluiceSFTP
import SluiceTransform
import SluiceSupport
import SluiceIngest
import SluiceConfig
import SluiceSources
import SluiceFormats

/// An error that ends a command: usage and config problems exit 2, the rest 1.
public struct AgentError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable { case usage, config, runtime }
    public var kind: Kind
    public var message: String
    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }
    public var description: String { message }
    public var exitCode: Int32 { kind == .runtime ? 1 : 2 }
}

/// The agent library's entry points. Each CLI command calls one of these.
public struct Agent: Sendable {
    public let config: AgentConfig
    public let logger: Logger

    public init(config: AgentConfig, logger: Logger) {
        self.config = config
        self.logger = logger
    }

    /// Loads the config from `--config`, `$SLUICE_CONFIG` or `/etc/sluice/agent.conf`.
    public static func load(configPath: String?, logger: Logger) throws(AgentError) -> Agent {
        let path = AgentConfig.resolvePath(explicit: configPath)
        do {
            return Agent(config: try AgentConfig.load(path: path), logger: logger)
        } catch {
            throw AgentError(.config, error.description)
        }
    }

    /// Every client's mapping file, validated (exit 2 on the first problem).
    public func mappings() throws(AgentError) -> [String: ClientMapping] {
        do {
            return try config.loadMappings()
        } catch {
            throw AgentError(.config, error.description)
        }
    }

    package func requireClient(_ id: String) throws(AgentError) -> ClientConfig {
        guard let c = config.client(id) else {
            let known = config.clients.map(\.id).joined(separator: ", ")
            throw AgentError(.usage, "unknown client '\(id)' in \(config.file) (configured: \(known.isEmpty ? "none" : known))")
        }
        return c
    }

    /// Creates the state folder and opens the manifest.
    public func openManifest() throws(AgentError) -> Manifest {
        do {
            try makeDirectories(config.stateDir)
            try checkWritable(config.stateDir, key: "agent.state_dir")
            var location = config.manifest
            if case .postgres(var pg) = location {
                pg.idleTransactionTimeoutMillis = config.leaseTTLNanoseconds / 1_000_000
                location = .postgres(pg)
            }
            let manifest = try Manifest(location)
            manifest.alertRouting = config.alerts.routing(lake: config)
            return manifest
        } catch let e as AgentError {
            throw e
        } catch let e as ManifestError {
            throw AgentError(.runtime, e.message)
        } catch {
            throw AgentError(.runtime, "state_dir \(config.stateDir): \(error)")
        }
    }

    package func checkWritable(_ dir: String, key: String) throws(AgentError) {
        if access(dir, W_OK | X_OK) != 0 {
            throw AgentError(.runtime, "\(key) \(dir) is not writable: \(String(cString: strerror(errno))) — give the user sluice runs as write access, or change \(key) in \(config.file)")
        }
    }

    /// Opens the lake (creating it), cleaning staging files left by dead processes.
    ///
    /// With `[lake] url`, `lake_dir` holds this host's staging only, and the multipart uploads
    /// that crashed processes left in the bucket are aborted.
    public func openLake() throws(AgentError) -> Lake {
        let lake: Lake
        do {
            try makeDirectories(config.lakeDir)
            try checkWritable(config.lakeDir, key: "agent.lake_dir")
            lake = try Lake(root: config.lakeDir, bucket: try openBucket())
        } catch let e as AgentError {
            throw e
        } catch {
            throw AgentError(.runtime, "lake_dir \(config.lakeDir): \(error)")
        }
        let (aborted, failure) = lake.abortUnfinishedUploads()
        if !aborted.isEmpty {
            logger.notice("Aborted unfinished uploads to the lake", metadata: ["lake": "\(config.lakeDisplay)", "uploads": "\(aborted.count)", "keys": "\(aborted.prefix(5).joined(separator: ", "))"])
        }
        if let failure {
            logger.warning("Could not abort unfinished uploads to the lake; the next start tries again", metadata: ["lake": "\(config.lakeDisplay)", "error": "\(failure)"])
        }
        return lake
    }

    /// The `[lake]` bucket, with its credentials; nil for a lake on local disk.
    package func openBucket() throws(AgentError) -> LakeBucket? {
        guard let settings = config.lakeBucket else { return nil }
        do {
            let credentials = try S3CredentialsFile.load(file: settings.credentialsFile, profile: settings.profile, key: "lake")
            return LakeBucket(settings: settings, credentials: credentials)
        } catch {
            throw AgentError(.runtime, "\(config.file): \(error.message)")
        }
    }

    /// Opens the manifest and the lake together, for the commands that write the lake, and
    /// brings an older lake's layout up to date (`LakeMigration`).
    public func openStore() throws(AgentError) -> (manifest: Manifest, lake: Lake) {
        let manifest = try openManifest()
        let lake = try openLake()
        do {
            try LakeMigration.run(lake: lake, manifest: manifest)
        } catch {
            throw AgentError(.runtime, "updating the lake's layout in \(config.lakeDisplay) failed: \(error) — fix the cause and run again; nothing was lost")
        }
        return (manifest, lake)
    }

    /// The observed schema of a dataset's previous delivery, read from the manifest (none when
    /// it cannot be read: the policies then see no previous delivery).
    package static func previousSchema(_ manifest: Manifest, client: String) -> @Sendable (String) -> ObservedSchema? {
        { dataset in
            guard let json = try? manifest.latestSchema(client: client, dataset: dataset) else { return nil }
            return try? JSONDecoder().decode(ObservedSchema.self, from: Data(json.utf8))
        }
    }

    /// Where plaintext a reader must seek in is spooled, in unnamed files (`state_dir/spool`,
    /// mode 700, made here when missing).
    package func spoolDirectory() -> String {
        let dir = "\(config.stateDir)/spool"
        if mkdir(dir, 0o700) != 0 && errno == ENOENT {
            _ = try? makeDirectories(config.stateDir)
            mkdir(dir, 0o700)
        }
        return dir
    }

    /// How far a compressed delivery may unpack on its way into the transform.
    public var unpackLimits: UnpackLimits { UnpackLimits(maxBytes: config.maxUnpackedBytes, maxRatio: config.maxUnpackRatio,
                                                         maxMembers: config.maxArchiveMembers, maxDepth: config.maxArchiveDepth) }

    /// Makes the configured sources of a client.
    public func sources(of client: ClientConfig, only: String?) throws(AgentError) -> [any Source] {
        let chosen = client.sources.filter { only == nil || $0.name == only }
        if let only, chosen.isEmpty {
            throw AgentError(.usage, "client '\(client.id)' has no source '\(only)' (configured: \(client.sources.map(\.name).joined(separator: ", ")))")
        }
        if let only, let s = chosen.first, case .push = s.settings.drive {
            throw AgentError(.usage, "source '\(only)' of client '\(client.id)' is an upload source (type \(s.type)): its files arrive through the upload API of `sluice run`, there is nothing to pull")
        }
        return chosen.compactMap { s -> (any Source)? in
            s.settings.makeSource(SourceContext(client: client.id, name: s.name, logger: logger, stateDir: config.stateDir))
        }
    }

    /// Reads every source's secrets (without contacting the server or store) and says what
    /// is wrong with them: an s3 source's missing credentials file, profile or key; an sftp
    /// source's identity, passphrase or password file that cannot be read (for `check-config`).
    public func sourceSecretProblems() -> [String] {
        config.clients.flatMap { client in
            client.sources.flatMap { $0.settings.secretProblems(key: "clients.\(client.id).sources.\($0.name)") }
        }
    }

    /// Drop folders whose absolute move target is on another file system than the folder (a
    /// move is a rename, which cannot cross file systems), for `check-config`. A target not
    /// made yet is judged by the nearest folder above it that exists.
    public func moveTargetProblems() -> [String] {
        config.clients.flatMap { client in
            client.sources.flatMap { $0.settings.setupProblems(key: "clients.\(client.id).sources.\($0.name)") }
        }
    }

    /// `sluice pull`: one pass over a client's sources, then the transform of what it stored
    /// (and of any version not transformed yet) when the client has a mapping file.
    public func pull(client id: String, source: String?, hooks: IngestHooks = IngestHooks(), transform: Bool = true) throws(AgentError) -> PullReport {
        let client = try requireClient(id)
        let sources = try sources(of: client, only: source)
        let mappings = transform ? try mappings() : [:]
        let (manifest, lake) = try openStore()
        // New versions are transformed as their batch is committed, the rest (and any the
        // early transform declined or could not finish) after the pass.
        let early = mappings[id].map { mapping in
            var transformer = Transformer(lake: lake, mapping: mapping, limits: unpackLimits, spoolDirectory: spoolDirectory(), keys: keys(client: id))
            transformer.previousSchema = Self.previousSchema(manifest, client: id)
            return EarlyTransforms(transformer: transformer, manifest: manifest, logger: logger)
        }
        let ingestor = Ingestor(lake: lake, manifest: manifest, stateDir: config.stateDir, logger: logger,
                                syncMethod: config.syncMethod, hooks: hooks, early: early)
        var report: PullReport
        do {
            report = try ingestor.pull(client: id, sources: sources, trigger: "pull", onlySource: source)
        } catch {
            _ = try? early?.finish()
            throw AgentError(.runtime, "\(error)")
        }
        if let mapping = mappings[id], let early {
            do {
                report.transforms = try early.finish()
            } catch {
                throw AgentError(.runtime, error.description)
            }
            // One postponed for a full disk: the rest would meet it too, and stay pending.
            if !report.transforms.contains(where: \.postponed) {
                report.transforms += try runTransforms(mapping, manifest: manifest, lake: lake, dataset: nil, selection: .pending)
            }
        }
        try? manifest.raiseAlerts(Self.hostKeyAlerts(client: id, report: report, sources: sources.map(\.name)) + diskAlerts())
        deliverAlerts(manifest)
        return report
    }

    /// `sluice transform`: re-runs transforms of one client (pending ones by default).
    public func transform(client id: String, dataset: String?, selection: Manifest.TransformSelection) throws(AgentError) -> [TransformReport] {
        _ = try requireClient(id)
        guard let mapping = try mappings()[id] else {
            throw AgentError(.usage, "client '\(id)' has no mapping file: create \(config.mappingsDir)/\(id).toml")
        }
        if let dataset, !mapping.datasets.contains(where: { $0.name == dataset }) {
            throw AgentError(.usage, "\(mapping.file) has no dataset '\(dataset)' (datasets: \(mapping.datasets.map(\.name).joined(separator: ", ")))")
        }
        let (manifest, lake) = try openStore()
        defer { deliverAlerts(manifest) }
        return try runTransforms(mapping, manifest: manifest, lake: lake, dataset: dataset, selection: selection)
    }

    /// A dataset whose outputs were written with other field types than its mapping has now.
    public struct SchemaChange: Sendable {
        public var client: String
        public var dataset: String
        /// Outputs written with another schema.
        public var outputs: Int
        /// Some of them were written before schemas were recorded, with another mapping file:
        /// their types may or may not differ.
        public var unrecorded: Bool

        public var advice: String {
            "dataset \(dataset) of \(client): \(outputs) earlier output\(outputs == 1 ? "" : "s") \(unrecorded ? "may have" : "have") other field types "
                + "than the mapping has now (a reader of the dataset's folder takes one file's schema for all); "
                + "`sluice transform \(client) --all --dataset \(dataset)` re-writes them"
        }

        package init(client: String, dataset: String, outputs: Int, unrecorded: Bool) {
            self.client = client
            self.dataset = dataset
            self.outputs = outputs
            self.unrecorded = unrecorded
        }
    }

    /// The datasets of a client whose mapping changed since some of their outputs were
    /// written (none when nothing was transformed or there is no manifest yet).
    public func schemaChanges(client id: String) throws(AgentError) -> [SchemaChange] {
        _ = try requireClient(id)
        guard let mapping = try mappings()[id], config.manifestMayExist else { return [] }
        let outputs: [Manifest.OutputSchema]
        do {
            outputs = try openManifest().outputSchemas(client: id)
        } catch let e as AgentError {
            throw e
        } catch {
            throw AgentError(.runtime, "\(error)")
        }
        return mapping.datasets.compactMap { d in
            let current = d.schemaSHA256
            let other = outputs.filter { $0.dataset == d.name && $0.schemaSHA256 != current && ($0.schemaSHA256 != nil || $0.mappingSHA256 != mapping.sha256) }
            guard !other.isEmpty else { return nil }
            return SchemaChange(client: id, dataset: d.name, outputs: other.reduce(0) { $0 + $1.outputs }, unrecorded: other.contains { $0.schemaSHA256 == nil })
        }
    }

    package func runTransforms(_ mapping: ClientMapping, manifest: Manifest, lake: Lake, dataset: String?, selection: Manifest.TransformSelection,
                       shouldStop: () -> Bool = { false }, fence: LeaseFence? = nil,
                       each: (TransformReport, Duration) -> Void = { _, _ in }) throws(AgentError) -> [TransformReport] {
        let candidates: [Manifest.TransformCandidate]
        do {
            candidates = try manifest.transformCandidates(client: mapping.client, selection: selection)
        } catch {
            throw AgentError(.runtime, error.description)
        }
        return try runTransforms(mapping, manifest: manifest, lake: lake, dataset: dataset, units: candidates.map { ($0, fence) },
                                 shouldStop: shouldStop, each: each)
    }

    /// Transforms versions this agent has claimed (`Manifest.claimPendingTransforms`), each
    /// recorded under its claim's fence. `recording` is called with a claim just before its
    /// record (which removes the claim); a claim lost meanwhile is logged and its version left
    /// to the agent that has it now.
    package func runTransforms(_ mapping: ClientMapping, manifest: Manifest, lake: Lake, claimed: [(candidate: Manifest.TransformCandidate, fence: LeaseFence)],
                               shouldStop: () -> Bool, recording: (LeaseFence) -> Void,
                               each: (TransformReport, Duration) -> Void) throws(AgentError) -> [TransformReport] {
        try runTransforms(mapping, manifest: manifest, lake: lake, dataset: nil, units: claimed.map { ($0.candidate, $0.fence) },
                          shouldStop: shouldStop, recording: recording, each: each)
    }

    private func runTransforms(_ mapping: ClientMapping, manifest: Manifest, lake: Lake, dataset: String?, units: [(Manifest.TransformCandidate, LeaseFence?)],
                               shouldStop: () -> Bool, recording: (LeaseFence) -> Void = { _ in },
                               each: (TransformReport, Duration) -> Void) throws(AgentError) -> [TransformReport] {
        var transformer = Transformer(lake: lake, mapping: mapping, limits: unpackLimits, spoolDirectory: spoolDirectory(), keys: keys(client: mapping.client))
        transformer.previousSchema = Self.previousSchema(manifest, client: mapping.client)
        var reports: [TransformReport] = []
        for (c, fence) in units {
            let input = TransformInput(client: mapping.client, candidate: c)
            if let dataset, transformer.dataset(for: input)?.name != dataset { continue }
            if shouldStop() { break }
            let t0 = ContinuousClock.now
            let startedAt = Timestamp.now()
            let result = transformer.run(input)
            if let fence, !result.retryLater { recording(fence) }
            do {
                let recorded = try transformer.record(result, of: input, versionID: c.versionID, in: manifest, logger: logger, startedAt: startedAt, fence: fence)
                each(recorded[0], ContinuousClock.now - t0)
                reports += recorded
                // The next versions would meet the same full disk: the round stops here.
                if result.retryLater { break }
            } catch let e where e.leaseLost != nil && fence?.source.hasPrefix(Manifest.versionClaimPrefix) == true {
                logger.about(client: mapping.client, source: c.source).error("Transform refused: the claim on the version was lost", metadata: [
                    "path": "\(input.path.display)", "version": "\(c.version)", "error": "\(e.message)",
                ])
            } catch {
                throw AgentError(.runtime, error.description)
            }
        }
        return reports
    }

    /// `sluice history`: versions, newest first.
    public func history(client id: String, path: String?) throws(AgentError) -> [VersionRecord] {
        var all: [VersionRecord] = []
        try eachHistoryPage(client: id, path: path) { all += $0 }
        return all
    }

    /// `sluice history`, a page at a time (see `Manifest.historyPage`): the command prints each
    /// page as it comes, so that a client's whole history is never held at once.
    public func eachHistoryPage(client id: String, path: String?, _ body: (_ page: [VersionRecord]) throws(AgentError) -> Void) throws(AgentError) {
        _ = try requireClient(id)
        guard config.manifestMayExist else { return }
        let manifest = try openManifest()
        var next: Manifest.VersionCursor?
        repeat {
            let page: (versions: [VersionRecord], next: Manifest.VersionCursor?)
            do {
                page = try manifest.historyPage(client: id, path: path, after: next)
            } catch {
                throw AgentError(.runtime, error.description)
            }
            try body(page.versions)
            next = page.next
        } while next != nil
    }

    /// `sluice status`: every source of one client (or of all), from the manifest.
    public func status(client id: String?) throws(AgentError) -> [Manifest.SourceSummary] {
        var clients = config.clients
        if let id { clients = [try requireClient(id)] }
        guard config.manifestMayExist else {
            return clients.flatMap { c in c.sources.map { Manifest.SourceSummary(client: c.id, source: $0.name) } }
        }
        let manifest = try openManifest()
        var out: [Manifest.SourceSummary] = []
        var holders: [String: LeaseHolder] = [:]
        do {
            for lease in try manifest.leaseHolders() { holders["\(lease.client)/\(lease.source)"] = lease.holder }
        } catch {
            throw AgentError(.runtime, error.description)
        }
        do {
            out = try manifest.sourceSummaries(clients.flatMap { c in c.sources.map { (c.id, $0.name) } })
        } catch {
            throw AgentError(.runtime, error.description)
        }
        for i in out.indices {
            if let h = holders["\(out[i].client)/\(out[i].source)"] {
                out[i].owner = h.expired ? nil : h.owner
                out[i].leaseExpiresAt = h.expiresAt
            }
        }
        return out
    }

    /// `sluice token create`: a new upload token for a client (and one of its sources). The
    /// token is returned once; the manifest keeps only its SHA-256.
    public func createToken(client id: String, source: String?, expires: String?, note: String?) throws(AgentError) -> (token: String, record: TokenRecord) {
        let client = try requireClient(id)
        let uploadSources = client.sources.filter(\.takesUploads).map(\.name)
        if let source {
            guard let s = client.sources.first(where: { $0.name == source }) else {
                throw AgentError(.usage, "client '\(id)' has no source '\(source)' (sources: \(client.sources.map(\.name).joined(separator: ", ")))")
            }
            guard s.takesUploads else {
                throw AgentError(.usage, "source '\(source)' of client '\(id)' is not an upload source (type = \"http\"), so a token for it could never upload: "
                    + (uploadSources.isEmpty ? "add a source with type = \"http\" to agent.conf" : "use --source \(uploadSources.joined(separator: " or --source "))"))
            }
        } else if uploadSources.isEmpty {
            throw AgentError(.usage, "client '\(id)' has no upload source (type = \"http\") in \(config.file): add one, or a token could never upload")
        }
        var expiresAt: String?
        if let expires {
            guard let ns = DurationText.parseNanoseconds(expires), ns > 0 else {
                throw AgentError(.usage, "--expires \"\(expires)\": expected a duration such as \"90d\", \"12h\" or \"30m\"")
            }
            expiresAt = Timestamp.iso8601(nanoseconds: Int64(Date().timeIntervalSince1970 * 1e9) + ns)
        }
        let token = UploadToken.generate()
        let manifest = try openManifest()
        do throws(ManifestError) {
            let tokenID = try manifest.createToken(client: id, source: source, sha256: UploadToken.sha256(token), expiresAt: expiresAt, note: note)
            guard let record = try manifest.tokens(client: id).first(where: { $0.id == tokenID }) else {
                throw ManifestError("token \(tokenID) vanished after it was created")
            }
            logger.notice("Upload token created", metadata: ["client": "\(id)", "source": "\(source ?? "*")", "token_id": "\(tokenID)"])
            return (token, record)
        } catch {
            throw AgentError(.runtime, error.description)
        }
    }

    /// `sluice token list`.
    public func tokens(client id: String?) throws(AgentError) -> [TokenRecord] {
        if let id { _ = try requireClient(id) }
        guard config.manifestMayExist else { return [] }
        let manifest = try openManifest()
        do {
            return try manifest.tokens(client: id)
        } catch {
            throw AgentError(.runtime, error.description)
        }
    }

    /// `sluice token revoke`.
    public func revokeToken(id: Int64) throws(AgentError) -> TokenRecord {
        let record: TokenRecord?
        let manifest = try openManifest()
        do {
            record = try manifest.revokeToken(id: id)
        } catch {
            throw AgentError(.runtime, error.description)
        }
        guard let record else { throw AgentError(.usage, "there is no token \(id) (see `sluice token list`)") }
        logger.notice("Upload token revoked", metadata: ["client": "\(record.client)", "token_id": "\(id)"])
        return record
    }

    /// `sluice audit`.
    public func audit(client id: String?, quick: Bool) throws(AgentError) -> AuditReport {
        if let id { _ = try requireClient(id) }
        // An audit never creates a manifest: without one, every lake file is an orphan.
        let manifest = config.manifestMayExist ? try openManifest() : nil
        let report: AuditReport
        let bucket = try openBucket()
        do {
            report = try Auditor.run(lakeDir: config.lakeDir, bucket: bucket, manifest: manifest, client: id, quick: quick)
        } catch {
            throw AgentError(.runtime, error.description)
        }
        if let manifest {
            try? manifest.raiseAlerts([Self.auditAlert(report, client: id)])
            deliverAlerts(manifest)
        }
        return report
    }
}

/// One server that `sluice trust` looked at.
public struct TrustTarget: Sendable {
    public var source: String
    public var host: String
    public var port: Int
    public var knownHosts: String
    public var key: HostKey
    public var verdict: KnownHosts.Verdict

    package init(source: String, host: String, port: Int, knownHosts: String, key: HostKey, verdict: KnownHosts.Verdict) {
        self.source = source
        self.host = host
        self.port = port
        self.knownHosts = knownHosts
        self.key = key
        self.verdict = verdict
    }
}

extension Agent {
    /// `sluice trust`: connects to each SFTP server of a client (no login), shows its host key
    /// and writes it to known_hosts once `confirm` agrees. A changed key is replaced only with
    /// `replace`. Returns whether every server ended up trusted.
    public func trust(client id: String, source: String?, replace: Bool,
                      say: (String) -> Void, confirm: (TrustTarget) -> Bool) throws(AgentError) -> Bool {
        let client = try requireClient(id)
        let chosen = client.sources.filter { source == nil || $0.name == source }
        if let source, chosen.isEmpty {
            throw AgentError(.usage, "client '\(id)' has no source '\(source)' (configured: \(client.sources.map(\.name).joined(separator: ", ")))")
        }
        let sftp: [(String, SFTPSourceConfig)] = chosen.compactMap { s in
            (s.settings as? SFTPSourceConfig).map { (s.name, $0) }
        }
        if sftp.isEmpty {
            throw AgentError(.usage, "client '\(id)' has no sftp source\(source.map { " named '\($0)'" } ?? ""): there is no host key to trust")
        }
        var allTrusted = true
        var done = Set<String>()
        for (name, c) in sftp {
            let endpoint = KnownHosts.lookupName(host: c.host, port: c.port)
            guard done.insert("\(endpoint) \(c.knownHosts)").inserted else { continue }
            let key: HostKey
            do {
                let session = try SSHSession(host: c.host, port: c.port, connectTimeoutMs: Int(c.connectTimeoutNanoseconds / 1_000_000),
                                             ioTimeoutMs: Int(c.ioTimeoutNanoseconds / 1_000_000), algorithms: c.algorithms)
                key = session.hostKey
                session.close()
            } catch {
                say("source \(name): \(endpoint): \(error.message)")
                allTrusted = false
                continue
            }
            let file = KnownHosts(path: c.knownHosts)
            let verdict: KnownHosts.Verdict
            do {
                verdict = try file.verdict(host: c.host, port: c.port, key: key)
            } catch {
                say("source \(name): \(error.message)")
                allTrusted = false
                continue
            }
            say("source \(name): \(endpoint) presents \(key.type) \(key.fingerprint)")
            let target = TrustTarget(source: name, host: c.host, port: c.port, knownHosts: c.knownHosts, key: key, verdict: verdict)
            var replacing = false
            switch verdict {
            case .trusted:
                say("  already trusted in \(c.knownHosts)")
                continue
            case .revoked(let line):
                say("  this key is marked @revoked in \(c.knownHosts) line \(line); refusing")
                allTrusted = false
                continue
            case .changed(let known, let lines):
                say("  WARNING: \(c.knownHosts) line \(lines.map(String.init).joined(separator: ", ")) has a different \(key.type) key for this host: \(known.joined(separator: ", "))")
                say("  The key has CHANGED. This can be a man-in-the-middle attack; confirm the new fingerprint with the client out of band.")
                guard replace else {
                    say("  refusing to replace it without --replace")
                    allTrusted = false
                    continue
                }
                replacing = true
            case .unknown(let others):
                if !others.isEmpty { say("  (known_hosts has other key types for this host: \(others.joined(separator: ", ")))") }
            }
            guard confirm(target) else {
                say("  not trusted")
                allTrusted = false
                continue
            }
            do {
                try file.trust(host: c.host, port: c.port, key: key, replacing: replacing)
                logger.notice("Host key trusted", metadata: ["client": "\(id)", "source": "\(name)", "host": "\(endpoint)", "fingerprint": "\(key.fingerprint)", "replaced": "\(replacing)"])
                say("  \(replacing ? "replaced in" : "added to") \(c.knownHosts)")
            } catch {
                say("  \(error.message)")
                allTrusted = false
            }
        }
        return allTrusted
    }
}
