import ArgumentParser
import Foundation
import SluiceAgent
import SluiceServer
import SluiceLake
import SluiceManifest
import SluiceSupport
import SluiceIngest
import SluiceConfig
import SluiceSources
import SluiceTransform

struct Pull: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fetch new or changed files of one client now, once.",
        discussion: "Then transforms what it stored when the client has a mapping file (unless --no-transform). Exit codes: 0 all files ingested or unchanged and every transform ok; 1 a file, a source or a transform failed; 2 usage or config error (unknown client, bad mapping included).")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Client id from agent.conf.") var client: String
    @Option(help: "Only this source of the client.") var source: String?
    @Flag(help: "Print one JSON object instead of the summary.") var json = false
    @Flag(help: "Store new versions without transforming them.") var noTransform = false

    func run() throws {
        let agent = try global.loadAgent()
        let report = try SluiceAgentCLI.run { () throws(AgentError) in try agent.pull(client: client, source: source, transform: !noTransform) }
        if json {
            try printJSON(PullJSON(report))
        } else {
            for f in report.files {
                var what = f.status == .new ? "v\(f.version ?? 0) → \(f.lakePath ?? "")" : (f.error ?? "")
                if f.status == .new || f.status == .unchanged, let error = f.error {
                    // Stored (now or in an earlier pass), but the after-ingest step failed.
                    what += (what.isEmpty ? "" : "; ") + "after_ingest failed: \(error)"
                }
                say("\(f.status.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0)) \(f.source)/\(f.path)  \(what)")
            }
            for e in report.sourceErrors {
                say("error     source \(e.source): \(e.message)")
            }
            printTransforms(report.transforms)
            let c = report.counts
            let afterIngest = report.afterIngestFailures > 0 ? ", \(report.afterIngestFailures) after_ingest failed" : ""
            say("\(client): \(c.new) new, \(c.unchanged) unchanged, \(c.skipped) skipped, \(c.failed) failed\(afterIngest) (\(c.bytes) bytes stored, run \(report.runID))")
        }
        if !report.succeeded || report.transformsFailed { throw ExitCode(1) }
    }
}

struct PullJSON: Encodable {
    var client: String
    var new, unchanged, skipped, failed: Int
    /// Files stored whose after-ingest step (delete or move) failed.
    var after_ingest_failed: Int
    var files: [FileReport]
    var source_errors: [[String: String]]
    var run_id: Int64
    var transforms: [TransformReport]

    init(_ r: PullReport) {
        client = r.client
        new = r.counts.new
        unchanged = r.counts.unchanged
        skipped = r.counts.skipped
        failed = r.counts.failed
        after_ingest_failed = r.afterIngestFailures
        files = r.files
        source_errors = r.sourceErrors.map { ["source": $0.source, "error": $0.message] }
        run_id = r.runID
        transforms = r.transforms
    }
}

struct Cat: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a stored version of a client's file to stdout.",
        discussion: "The newest version unless --version N; unpacked when it is compressed (.gz, .bz2, .xz, .zst, by its content), the bytes as stored with --raw. With --member M, that member of an archive (.zip, .tar, .tgz, .tar.gz, .tar.bz2, .tar.xz, .7z; a member of an inner archive as inner.zip/name), unpacked unless --raw. Exit codes: 0 written; 1 the lake file is missing or unreadable, or does not unpack (damaged, encrypted with a zip password, or past max_unpacked_bytes, max_unpack_ratio, max_archive_members or max_archive_depth); 2 usage or config error (unknown client, path, source, version or member; --member on a file that is not an archive).")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Client id from agent.conf.") var client: String
    @Argument(help: "The file's source-relative path, as `sluice history` shows it.") var path: String
    @Option(help: "The source, when more than one holds this path.") var source: String?
    @Option(help: "The version number (default: the newest).") var version: Int?
    @Option(help: "One member of an archive, by its path inside (as `sluice history --members` lists it).") var member: String?
    @Flag(help: "Write the stored bytes as they are, without unpacking.") var raw = false

    func run() throws {
        let agent = try global.loadAgent()
        let out = FileHandle.standardOutput
        try SluiceAgentCLI.run { () throws(AgentError) in
            try agent.cat(client: client, path: path, source: source, version: version, member: member, raw: raw) { bytes in
                try out.write(contentsOf: Data(bytes))
            }
        }
    }
}

struct History: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the stored versions of a client's files, newest first.",
        discussion: "PATH narrows to one file, or to every file below a folder. --members lists each archive's members with their sizes (reading the archives). Exit codes: 0 success; 1 an archive's lake file cannot be read; 2 usage or config error.")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Client id from agent.conf.") var client: String
    @Argument(help: "A source-relative path (file or folder).") var path: String?
    @Flag(help: "Print a JSON array.") var json = false
    @Flag(help: "List each archive's members (path, size) under it.") var members = false

    func run() throws {
        let agent = try global.loadAgent()
        // Page by page as the manifest hands them over (JSON: one array, written as it grows).
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var printed = 0
        var opened = false  // the JSON array's "[", written with the first page (none on a bad client)
        try SluiceAgentCLI.run { () throws(AgentError) in
            try agent.eachHistoryPage(client: client, path: path) { (rows) throws(AgentError) in
                var out = Data(json && !opened ? "[".utf8 : "".utf8)
                opened = true
                for r in rows {
                    let listing = members ? try agent.archiveMembers(client: client, of: r) : nil
                    if json {
                        if printed > 0 { out.append(UInt8(ascii: ",")) }
                        out += try! encoder.encode(HistoryEntry(record: r, listing: listing))  // strings and numbers only
                    } else {
                        for line in Self.lines(r, listing) { out += Data((PrintableText.escape(line) + "\n").utf8) }
                    }
                    printed += 1
                }
                FileHandle.standardOutput.write(out)
            }
        }
        if json {
            FileHandle.standardOutput.write(Data(((opened ? "" : "[") + "]\n").utf8))
        } else if printed == 0 {
            say("no versions recorded for \(client)\(path.map { " under \($0)" } ?? "")")
        }
    }

    /// A version as the text lists it, with an archive's members (and a listing's error) below.
    static func lines(_ r: VersionRecord, _ listing: (members: [MemberListing], error: String?)?) -> [String] {
        var lines = ["\(r.ingested_at)  \(r.source)/\(r.path)  v\(r.version)  \(r.size) B  sha256:\(r.sha256.prefix(16))…  \(r.lake_path)"]
        for m in listing?.members ?? [] {
            let size = m.size.map { "\($0) B" } ?? "size not declared"
            lines.append("    \(m.path)  " + (m.error.map { "cannot be opened: \($0)" } ?? size + (m.encrypted ? "  (encrypted with a zip password)" : "")))
        }
        if let e = listing?.error { lines.append("    (listing stopped: \(e))") }
        return lines
    }
}

/// A version as `history --json` prints it; with `--members`, an archive's members too.
struct HistoryEntry: Encodable {
    var record: VersionRecord
    var listing: (members: [MemberListing], error: String?)?

    enum Keys: String, CodingKey { case members, membersError = "members_error" }

    func encode(to encoder: any Encoder) throws {
        try record.encode(to: encoder)
        guard let listing else { return }
        var c = encoder.container(keyedBy: Keys.self)
        try c.encode(listing.members, forKey: .members)
        try c.encodeIfPresent(listing.error, forKey: .membersError)
    }
}

struct Audit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-hash every lake file and compare it with the manifest; find orphans and leftover temp files.",
        discussion: "Exit codes: 0 clean; 1 problems found; 2 usage or config error.")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Only this client.") var client: String?
    @Flag(help: "Print one JSON object.") var json = false
    @Flag(help: "Check sizes only, without re-hashing.") var quick = false

    func run() throws {
        let agent = try global.loadAgent()
        let start = Date()
        let report = try SluiceAgentCLI.run { () throws(AgentError) in try agent.audit(client: client, quick: quick) }
        let seconds = Date().timeIntervalSince(start)
        if json {
            try printJSON(report)
        } else {
            for m in report.missing { say("missing  \(m)") }
            for c in report.corrupt {
                say("corrupt  \(c.lakePath)  expected sha256 \(c.expected) (\(c.expectedSize) B), found \(c.actual ?? "unreadable") (\(c.actualSize) B)")
            }
            for o in report.orphans { say("orphan   \(o)  (no manifest row points to it)") }
            for t in report.tempFiles { say("temp     \(t)  (left by a process that died; removed at the next start)") }
            let rate = seconds > 0 ? Double(report.bytesHashed) / seconds / 1e9 : 0
            say("checked \(report.checked), ok \(report.ok), missing \(report.missing.count), corrupt \(report.corrupt.count), orphans \(report.orphans.count), temp \(report.tempFiles.count)"
                + (quick ? " (sizes only)" : String(format: "; %.2f GB hashed in %.2f s (%.2f GB/s)", Double(report.bytesHashed) / 1e9, seconds, rate)))
        }
        if !report.clean { throw ExitCode(1) }
    }
}

struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate the config file.",
        discussion: "Validates agent.conf, every mapping file in mappings_dir, the upload API's TLS certificate and key, the console's admin_token_file, every client's OpenPGP key files (imported into a throwaway keyring: a file that holds no key, a secret_key without a secret key, an expired or revoked key), the [[alerts]] entries (type, url, events and clients by name, smtp, addresses), and that a drop folder's absolute move target is on the drop folder's file system; warns when an s3 source's credentials (credentials_file and profile, or the AWS_* environment variables) or an sftp source's identity, passphrase or password file, or an alert's secret_file, password_file or ca_file, cannot be read; and shows which datasets' mappings changed since their outputs were written. Exit codes: 0 valid; 2 the config, a mapping or one of those files cannot be used (the message names the file, key and line).")

    @OptionGroup var global: GlobalOptions

    func run() throws {
        let agent = try global.loadAgent()
        let c = agent.config
        let mappings = try SluiceAgentCLI.run { () throws(AgentError) in try agent.mappings() }
        try SluiceAgentCLI.run { () throws(AgentError) in try DaemonMain.checkListenerFiles(c) }
        if let problem = agent.moveTargetProblems().first {
            try SluiceAgentCLI.run { () throws(AgentError) in throw AgentError(.config, "\(c.file): \(problem)") }
        }
        // Secrets are read where the service runs (its environment may differ from this shell's),
        // so a problem with them is a warning here, not an invalid config.
        let keyrings = try SluiceAgentCLI.run { () throws(AgentError) in try agent.checkKeyrings() }
        for problem in agent.sourceSecretProblems() {
            FileHandle.standardError.write(Data("warning: \(PrintableText.escape(problem)) (the source fails until this is fixed)\n".utf8))
        }
        for problem in agent.manifestSecretProblems() {
            FileHandle.standardError.write(Data("warning: \(PrintableText.escape(problem)) (the agent cannot open the manifest or the lake until this is fixed)\n".utf8))
        }
        for problem in agent.alertSecretProblems() {
            FileHandle.standardError.write(Data("warning: \(PrintableText.escape(problem)) (its alerts are not delivered until this is fixed)\n".utf8))
        }
        say("\(c.file): OK")
        say("  state_dir    \(c.stateDir)")
        if let lake = c.lakeBucket {
            say("  lake         \(lake.url) at \(lake.endpoint.absoluteString) (\(lake.region)\(lake.credentialsFile.map { ", credentials from \($0)" } ?? ", credentials from the environment"))")
            say("  lake_dir     \(c.lakeDir) (this host's staging only)")
        } else {
            say("  lake_dir     \(c.lakeDir)")
        }
        switch c.manifest {
        case .sqlite(let path):
            say("  manifest     \(path) (SQLite, this host only)")
        case .postgres(let pg):
            say("  manifest     \(pg.display) (PostgreSQL, tls \(pg.tls.rawValue)\(pg.passwordFile.map { ", password from \($0)" } ?? ""); shared by every agent that names it)")
        }
        say("  mappings_dir \(c.mappingsDir)\(FileManager.default.fileExists(atPath: c.mappingsDir) ? "" : " (absent: no client has a mapping yet)")")
        if c.api.listen.isEmpty {
            say("  api          off (no [api] listen)")
        } else {
            say("  api          \(c.api.listen) \(c.api.tlsCert.map { "TLS \($0)" } ?? "plain HTTP (loopback)"), max_upload_size \(ByteSizeText.format(c.api.maxUploadSize)), "
                + "max_concurrent_uploads \(c.api.maxConcurrentUploads)")
        }
        for t in c.alerts.targets {
            let events = t.events.map { $0.sorted().joined(separator: ", ") } ?? "every event"
            let clients = t.clients.map { $0.sorted().joined(separator: ", ") } ?? "every client"
            say("  alert \(t.name)  \(t.kind.rawValue) \(t.kind == .email ? "\(t.smtp ?? "") to \(t.to.joined(separator: ", "))" : t.shownURL): \(events); \(clients)")
        }
        for (client, m) in mappings.sorted(by: { $0.key < $1.key }) {
            say("  mapping \(client): \(m.file), datasets \(m.datasets.map { "\($0.name) (\($0.formatName), \($0.fields.count) fields)" }.joined(separator: ", "))")
            // Which datasets' field types changed since their outputs were written (read from
            // the manifest when there is one; a manifest that cannot be read is only noted).
            do {
                for change in try agent.schemaChanges(client: client) { say("    changed since its last transform: \(change.advice)") }
            } catch {
                say("    (cannot compare with the outputs in the manifest: \(error.message))")
            }
        }
        for line in keyrings { say("  \(line)") }
        for client in c.clients {
            say("  client \(client.id)\(client.displayName.map { " (\($0))" } ?? "")")
            for s in client.sources {
                // With a shared manifest, a watched folder is still a folder of this host.
                let local = if case .postgres = c.manifest, case .watch = s.settings.drive { " (local to this host: only its agent ingests it)" } else { "" }
                say("    source \(s.name): \(s.settings.summary)\(local)")
            }
            for x in client.expectations {
                say("    expects \(x.match)\(x.source.map { " from \($0)" } ?? ""): \(x.schedule) \(x.timezone), grace \(DurationText.format(nanoseconds: x.graceNanoseconds))")
            }
        }
        if let l = c.alerts.lineage { say("  lineage      \(l.shownURL) namespace \(l.namespace)\(l.apiKeyFile.map { ", api key from \($0)" } ?? "")") }
    }
}

/// Namespace so the free `run` helper does not clash with `ParsableCommand.run()`.
enum SluiceAgentCLI {
    static func run<T>(_ body: () throws(AgentError) -> T) throws -> T {
        try sluice.run(body)
    }
}

struct Trust: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the host keys of a client's SFTP servers and add them to known_hosts.",
        discussion: """
            Connects to each sftp source of CLIENT (without logging in), prints the server's key type and SHA256 \
            fingerprint and asks before writing it to the source's known_hosts file (OpenSSH format; [host]:port when \
            the port is not 22). A changed key is only replaced with --replace.
            Exit codes: 0 every server is trusted; 1 a server could not be reached, a key was declined or a changed key \
            was refused; 2 usage or config error.
            """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Client id from agent.conf.") var client: String
    @Option(help: "Only this source of the client.") var source: String?
    @Flag(help: "Trust without asking.") var yes = false
    @Flag(help: "Replace a changed key (after checking the new fingerprint with the client).") var replace = false

    func run() throws {
        let agent = try global.loadAgent()
        let ok = try SluiceAgentCLI.run { () throws(AgentError) in
            try agent.trust(client: client, source: source, replace: replace, say: { say($0) }, confirm: { _ in
                if yes { return true }
                print("  Trust this key? [y/N] ", terminator: "")
                fflush(nil)
                guard let answer = readLine() else {
                    print("\n  no answer on stdin; pass --yes to trust without asking")
                    return false
                }
                return ["y", "yes"].contains(answer.trimmingCharacters(in: .whitespaces).lowercased())
            })
        }
        if !ok { throw ExitCode(1) }
    }
}

func printTransforms(_ reports: [TransformReport]) {
    for t in reports {
        let what = switch t.status {
        case .ok: "\(t.dataset ?? ""): \(t.rowsWritten) rows → \(t.outputPath ?? "")" + (t.rowsRejected > 0 ? ", \(t.rowsRejected) rejected → \(t.rejectsPath ?? "")" : "")
        case .unmapped: "no dataset matches; kept raw"
        case .failed, .held: (t.dataset.map { "\($0): " } ?? "") + (t.error ?? "")
        }
        let status = t.status.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0)
        if let member = t.member {
            say("  member \(status) \(member)  \(what)")
        } else if let m = t.members {
            let n = m.ok + m.failed + m.unmapped
            let summary = n == 0 ? "no members" : "\(n) member\(n == 1 ? "" : "s"): \(m.ok) ok, \(m.failed) failed, \(m.unmapped) unmapped"
            let detail = t.status == .failed || t.status == .held ? ": \(t.error ?? "")" : (t.rowsWritten > 0 ? ", \(t.rowsWritten) rows" : "")
            say("transform \(status) \(t.source)/\(t.path) v\(t.version)  \(summary)\(detail)")
        } else {
            say("transform \(status) \(t.source)/\(t.path) v\(t.version)  \(what)")
        }
    }
}

struct Transform: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Transform a client's stored versions into typed Parquet (or JSONL) with its mapping file.",
        discussion: """
            By default it transforms the versions not transformed yet. --failed re-runs the failed ones (after a mapping \
            fix); --all re-runs every version (after a mapping change). Outputs are replaced atomically, so running it \
            twice gives the same result. With --failed, a warning on stderr names each dataset whose earlier outputs were \
            written with other field types than the mapping has now (--all re-writes them). --held re-runs the units a \
            dataset's schema-change policy held (after a mapping change, or to accept the change); nothing else ever \
            re-runs them. Exit codes: 0 every transform ok or unmapped; 1 a transform failed or was held; 2 usage or \
            config error (no mapping file, unknown dataset, bad mapping).
            """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Client id from agent.conf.") var client: String
    @Option(help: "Only versions of this dataset.") var dataset: String?
    @Flag(help: "Re-run the failed transforms.") var failed = false
    @Flag(help: "Re-run every version.") var all = false
    @Flag(help: "Re-run the units held by a schema-change policy.") var held = false
    @Flag(help: "Print a JSON array.") var json = false

    func validate() throws {
        if [failed, all, held].filter({ $0 }).count > 1 { throw ValidationError("--failed, --all and --held exclude each other") }
    }

    func run() throws {
        let agent = try global.loadAgent()
        let selection: Manifest.TransformSelection = all ? .all : failed ? .failed : held ? .held : .pending
        let reports = try SluiceAgentCLI.run { () throws(AgentError) in try agent.transform(client: client, dataset: dataset, selection: selection) }
        if json {
            try printJSON(reports)
        } else {
            printTransforms(reports)
            let ok = reports.filter { $0.status == .ok }.count
            let count = { (s: TransformStatus) in reports.filter { $0.status == s }.count }
            say("\(client): \(reports.count) transformed: \(ok) ok, \(count(.failed)) failed, \(count(.held)) held, \(count(.unmapped)) unmapped")
        }
        if failed {
            // Re-running the failed ones with a changed mapping leaves the earlier outputs with
            // the old types: one dataset, two schemas.
            let changes = try SluiceAgentCLI.run { () throws(AgentError) in try agent.schemaChanges(client: client) }
            for change in changes where dataset == nil || change.dataset == dataset {
                FileHandle.standardError.write(Data("warning: \(PrintableText.escape(change.advice))\n".utf8))
            }
        }
        if reports.contains(where: { $0.status == .failed || $0.status == .held }) { throw ExitCode(1) }
    }
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the agent as a service: scheduled SFTP and S3 polls, watched drop folders, the upload API, transforms, the web console, health and metrics.",
        discussion: """
            Runs until SIGTERM or SIGINT, then lets in-flight files and uploads finish within [agent] shutdown_timeout. SIGHUP \
            reloads agent.conf and the mapping files (a broken config is logged and the old one kept). Under systemd it speaks \
            the sd_notify protocol (Type=notify, WatchdogSec). The upload API listens on [api] listen; the console, /healthz, \
            /readyz, /metrics and /status on [agent] http_listen. Exit codes: 0 stopped by a signal; 1 a runtime failure (the \
            lake or the manifest cannot be opened, http_listen or [api] listen is taken); 2 usage or config error (including \
            unreadable TLS files or admin_token_file).
            """)

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let agent = try global.loadAgent()
        let code = await DaemonMain.run(configPath: agent.config.file, logger: agent.logger)
        if code != 0 { throw ExitCode(code) }
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show each source's last run, last success, last error, what it holds and its failed transforms, and each delivery expectation.",
        discussion: "Read from the manifest, whether `sluice run` is running or not. An expectation shows its last fulfilment, its next deadline and the deadlines still missing; with --json each source row has `expectations`, the client's expectations that apply to it, each with its last 30 days of deadlines. Exit codes: 0 shown; 1 the manifest cannot be read; 2 usage or config error.")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var listing: ListingOptions

    func run() throws {
        let agent = try global.loadAgent()
        let rows = try SluiceAgentCLI.run { () throws(AgentError) in try agent.status(client: listing.client) }
        let expected = try SluiceAgentCLI.run { () throws(AgentError) in try agent.expectationStatus(client: listing.client) }
        if listing.json {
            try printJSON(rows.map { r in
                StatusRowJSON(row: r, expectations: expected.filter { $0.client == r.client && ($0.source == nil || $0.source == r.source) })
            })
            return
        }
        defer {
            for x in expected {
                say("\(x.client) expects \(x.match)\(x.source.map { " from \($0)" } ?? "") (\(x.schedule) \(x.timezone), grace \(x.grace)): "
                    + "last fulfilled \(x.last_fulfilled_at ?? "never")\(x.last_fulfilled_deadline.map { " for \($0)" } ?? ""), next deadline \(x.next_deadline ?? "none")"
                    + (x.missing.isEmpty ? "" : "; MISSING \(x.missing.joined(separator: ", "))"))
            }
        }
        try listing.show(rows) { r in
            ["\(r.client)/\(r.source): last run \(r.lastRunAt ?? "never") (\(r.lastRunStatus ?? "-"), \(r.lastRunTrigger ?? "-")), "
                + "last success \(r.lastSuccess ?? "never"); \(r.files) files, \(r.versions) versions, \(r.bytes) bytes; "
                + "\(r.failedTransforms) failed transforms"]
                + (r.lastError.map { ["  last error (\(r.lastErrorAt ?? "")): \($0)"] } ?? [])
        }
    }
}

struct Token: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage the upload API's tokens.",
        discussion: "Only each token's SHA-256 is stored, in the manifest; a token is shown once, when it is created.",
        subcommands: [Create.self, List.self, Revoke.self])

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a token for a client (and one of its sources) and print it once.",
            discussion: "The token (slc_ and 43 characters, 256 random bits) goes to stdout; give it to the client over a safe channel. Tokens are only for upload sources (type = \"http\"). Exit codes: 0 created; 1 the manifest cannot be written; 2 usage or config error (unknown client or source, a source that is not an upload source or a client without one, bad --expires).")

        @OptionGroup var global: GlobalOptions
        @Argument(help: "Client id from agent.conf.") var client: String
        @Option(help: "Only this source of the client (default: any).") var source: String?
        @Option(help: ArgumentHelp("Expire after this long, such as 90d or 12h (default: never).", valueName: "duration")) var expires: String?
        @Option(help: "A note for the list, such as who has the token.") var note: String?

        func run() throws {
            let agent = try global.loadAgent()
            let (token, record) = try SluiceAgentCLI.run { () throws(AgentError) in
                try agent.createToken(client: client, source: source, expires: expires, note: note)
            }
            say(token)
            FileHandle.standardError.write(Data("token \(record.id) for \(record.client)\(record.source.map { "/\($0)" } ?? ""), expires \(record.expires_at ?? "never"); it is not shown again\n".utf8))
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List tokens: id, client, source, created, expires, revoked, last used, note (never the token).",
            discussion: "Exit codes: 0 listed; 1 the manifest cannot be read; 2 usage or config error.")

        @OptionGroup var global: GlobalOptions
        @OptionGroup var listing: ListingOptions

        func run() throws {
            let agent = try global.loadAgent()
            let rows = try SluiceAgentCLI.run { () throws(AgentError) in try agent.tokens(client: listing.client) }
            if rows.isEmpty && !listing.json {
                say("no tokens\(listing.client.map { " for \($0)" } ?? "") (create one with `sluice token create CLIENT --source SOURCE`)")
                return
            }
            try listing.show(rows) { t in
                let state = t.revoked_at.map { "revoked \($0)" } ?? "expires \(t.expires_at ?? "never")"
                return ["\(t.id)  \(t.client)/\(t.source ?? "*")  created \(t.created_at)  \(state)  last used \(t.last_used_at ?? "never")\(t.note.map { "  \($0)" } ?? "")"]
            }
        }
    }

    struct Revoke: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke a token; it is refused from then on.",
            discussion: "Exit codes: 0 revoked (or already revoked); 1 the manifest cannot be written; 2 no such token.")

        @OptionGroup var global: GlobalOptions
        @Argument(help: "The token's id from `sluice token list`.") var id: Int64

        func run() throws {
            let agent = try global.loadAgent()
            let t = try SluiceAgentCLI.run { () throws(AgentError) in try agent.revokeToken(id: id) }
            say("token \(t.id) (\(t.client)/\(t.source ?? "*")) revoked \(t.revoked_at ?? "")")
        }
    }
}

/// The client filter and `--json` of the commands that list rows (`status`, `token list`).
struct ListingOptions: ParsableArguments {
    @Argument(help: "Only this client.") var client: String?
    @Flag(help: "Print a JSON array.") var json = false

    /// Prints `rows` as one JSON array, or each as the lines `describe` gives.
    func show<T: Encodable>(_ rows: [T], _ describe: (T) -> [String]) throws {
        if json {
            try printJSON(rows)
            return
        }
        for r in rows { describe(r).forEach { say($0) } }
    }
}

/// A `sluice status --json` row: the source's summary, with the expectations that apply to it.
struct StatusRowJSON: Encodable {
    var row: Manifest.SourceSummary
    var expectations: [ExpectationStatus]

    enum CodingKeys: String, CodingKey { case expectations }

    func encode(to encoder: any Encoder) throws {
        try row.encode(to: encoder)
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(expectations, forKey: .expectations)
    }
}
