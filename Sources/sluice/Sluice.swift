// sluice: The command line: argument parsing and printing only; what `--json` prints is shaped
// in the libraries.

import ArgumentParser
import Foundation
import Logging
import SluiceAgent
import SluiceServer
import SluiceLake
import SluiceSFTP
import SluiceSupport
import SluiceIngest
import SluiceConfig
import SluiceSources
import SluiceTransform

@main
struct Sluice: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sluice",
        abstract: "Collect client files, keep every version in a data lake, record them in a manifest (SQLite, or PostgreSQL for many hosts).",
        discussion: """
            Exit codes: 0 success; 1 some work failed or the audit found problems; 2 usage or config error.
            The config is read from --config, else $SLUICE_CONFIG, else /etc/sluice/agent.conf.
            """,
        version: SluiceVersion.full,
        subcommands: [Run.self, Pull.self, Status.self, History.self, Cat.self, Audit.self, CheckConfig.self, Trust.self, Transform.self, Schema.self, Mapping.self, Token.self, Alerts.self, ManifestCommand.self,
                      VersionCommand.self]
    )

    /// As `AsyncParsableCommand.main`, except that a usage error (a bad or missing argument)
    /// exits 2 like every other usage or config error, not argument-parser's 64.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            if exitCode(for: error) == .validationFailure {
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Foundation.exit(2)
            }
            exit(withError: error)
        }
    }
}

enum SluiceVersion {
    static let string = "0.1.0"

    /// Sluice's version, libssh2's (and its patch), and the SSH algorithms Sluice offers, in
    /// order of preference: what `sluice version` and `sluice --version` print.
    static var full: String {
        var lines = ["sluice \(string)", "libssh2 \(SSHAlgorithms.libraryDescription)", "ssh algorithms offered, in order of preference:"]
        for kind in SSHAlgorithms.Kind.allCases {
            lines.append("  \(kind.rawValue): \(SSHAlgorithms.offered(kind).joined(separator: ", "))")
        }
        return lines.joined(separator: "\n")
    }
}

struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "version",
        abstract: "Show Sluice's version, libssh2's and the SSH algorithms Sluice offers.",
        discussion: "The same as `sluice --version`. A source's ciphers and host_key_algorithms narrow the lists for its server. Exit codes: 0 shown.")

    func run() throws {
        print(SluiceVersion.full)
    }
}

/// Options every command takes.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Config file (default: $SLUICE_CONFIG, else /etc/sluice/agent.conf).", valueName: "path"))
    var config: String?

    @Option(name: .long, help: "Log level on stderr: trace, debug, info, notice, warning, error, critical (default: [agent] log_level, else info).")
    var logLevel: Logger.Level?

    func makeLogger(configured: String? = nil) -> Logger {
        let level = logLevel ?? configured.flatMap(Logger.Level.init(rawValue:)) ?? .info
        LoggingSystem.bootstrap { label in SluiceLogHandler(label: label, level: level) }
        return Logger(label: "sluice")
    }

    /// Reads the config, then sets up logging at its `log_level` unless `--log-level` is given.
    func loadAgent() throws -> Agent {
        let path = AgentConfig.resolvePath(explicit: config)
        let loaded: AgentConfig
        do {
            loaded = try AgentConfig.load(path: path)
        } catch {
            _ = makeLogger()
            FileHandle.standardError.write(Data("sluice: error: \(error.description)\n".utf8))
            throw ExitCode(2)
        }
        return Agent(config: loaded, logger: makeLogger(configured: loaded.logLevel))
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// Runs an agent call, turning `AgentError` into a message on stderr and its exit code.
func run<T>(_ body: () throws(AgentError) -> T) throws -> T {
    do {
        return try body()
    } catch {
        FileHandle.standardError.write(Data("sluice: error: \(PrintableText.escape(error.message))\n".utf8))
        throw ExitCode(error.exitCode)
    }
}

/// Prints one line of text output. Paths, errors and notes in it may come from a client (a
/// file name with a newline in it): control characters are shown as `%HH` (`PrintableText`),
/// so every result stays one line and nothing reaches the terminal as a control sequence.
func say(_ line: String) {
    print(PrintableText.escape(line))
}

func printJSON(_ value: some Encodable) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    var data = try encoder.encode(value)
    data.append(0x0A)
    FileHandle.standardOutput.write(data)
}
