import ArgumentParser
import Foundation
import SluiceAgent
import SluiceManifest

struct ManifestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "manifest",
        abstract: "Move the manifest to another database.",
        subcommands: [Copy.self])

    struct Copy: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy this agent's manifest (the SQLite file, or its [manifest] database) into an empty PostgreSQL database, and verify the copy.",
            discussion: """
                Stop `sluice run` first: the copy is of one snapshot, and what the agent writes after it is not copied. The \
                destination's tables are made as any agent makes them; every row is copied in one transaction there (ids kept), \
                then each table's row count and a SHA-256 of its rows are compared on both sides. Point [manifest] url at the \
                destination only after a clean copy. Exit codes: 0 copied and verified; 1 the copy failed or does not match (the \
                destination is rolled back or must be dropped; the source is never changed); 2 usage or config error (a bad URL, \
                an unreadable password file, a destination that is not empty).
                """)

        @OptionGroup var global: GlobalOptions
        @Option(help: ArgumentHelp("The destination: postgresql://USER@HOST[:PORT]/DATABASE.", valueName: "url")) var to: String
        @Option(help: ArgumentHelp("File whose first line is the destination role's password.", valueName: "file")) var passwordFile: String?
        @Option(help: ArgumentHelp("disable, prefer, require or verify-full.", valueName: "mode")) var tls = "prefer"
        @Option(help: ArgumentHelp("verify-full: PEM file of the CAs to trust.", valueName: "file")) var caFile: String?
        @Flag(help: "Print a JSON object.") var json = false

        func run() throws {
            let parts: (host: String, port: Int, user: String, database: String)
            switch PostgresLocation.parse(url: to) {
            case .success(let p): parts = p
            case .failure(let e): throw ValidationError("--to: \(e.message)")
            }
            guard let mode = PostgresTLS(rawValue: tls) else {
                throw ValidationError("--tls: expected one of \(PostgresTLS.allCases.map(\.rawValue).joined(separator: ", ")), found \"\(tls)\"")
            }
            if let passwordFile, access(passwordFile, R_OK) != 0 {
                throw ValidationError("--password-file \(passwordFile) cannot be read: \(String(cString: strerror(errno)))")
            }
            let agent = try global.loadAgent()
            let source = try SluiceAgentCLI.run { () throws(AgentError) in try agent.openManifest() }
            let target = PostgresLocation(host: parts.host, port: parts.port, user: parts.user, database: parts.database,
                                          passwordFile: passwordFile, tls: mode, caFile: caFile)
            let tables = try SluiceAgentCLI.run { () throws(AgentError) in try Self.copy(from: source, to: target, quiet: json) }
            let destination = target.display
            if json {
                struct Out: Encodable {
                    let from: String
                    let to: String
                    let verified: Bool
                    let tables: [Manifest.TableDigest]
                }
                try printJSON(Out(from: source.path, to: destination, verified: true, tables: tables))
            } else {
                say("copied \(tables.reduce(0) { $0 + $1.rows }) rows from \(source.path) to \(destination); counts and checksums match")
                say("next: set [manifest] url = \"\(to)\" in \(agent.config.file), then start the agents")
            }
        }
    }
}

extension ManifestCommand.Copy {
    /// Opens (and migrates) the destination, refuses one that holds rows, copies and verifies.
    static func copy(from source: Manifest, to target: PostgresLocation, quiet: Bool) throws(AgentError) -> [Manifest.TableDigest] {
        do {
            let destination = try Manifest(.postgres(target))
            if let busy = try destination.notEmpty() { throw AgentError(.usage, busy) }
            return try source.copy(to: destination) { t in
                if !quiet { say("  \(t.table.padding(toLength: 17, withPad: " ", startingAt: 0)) \(String(t.rows).leftPad(10)) rows  sha256 \(t.sha256.prefix(16))") }
            }
        } catch let e as AgentError {
            throw e
        } catch let e as ManifestError {
            throw AgentError(.runtime, "copy from \(source.path) to \(target.display) failed: \(e.message)")
        } catch {
            throw AgentError(.runtime, "copy from \(source.path) to \(target.display) failed: \(error)")
        }
    }
}

extension String {
    fileprivate func leftPad(_ width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}
