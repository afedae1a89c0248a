import ArgumentParser
import Foundation
import Logging
import SluiceAgent

@main
struct Sluice: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sluice",
        abstract: "Collect client files, keep every version in a data lake, record them in a SQLite manifest.",
        discussion: """
            Exit codes: 0 success; 1 some work failed or the audit found problems; 2 usage or config error.
            The config is read from --config, else $SLUICE_CONFIG, else /etc/sluice/agent.conf.
            """,
        version: SluiceVersion.string,
        subcommands: [Pull.self, History.self, Audit.self, CheckConfig.self, Trust.self, Transform.self]
    )
}

enum SluiceVersion {
    static let string = "0.1.0"
}

/// Options every command takes.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Config file (default: $SLUICE_CONFIG, else /etc/sluice/agent.conf).", valueName: "path"))
    var config: String?

    @Option(name: .long, help: "Log level on stderr: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    func makeLogger() -> Logger {
        let level = logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        return Logger(label: "sluice")
    }

    func loadAgent() throws -> Agent {
        let logger = makeLogger()
        return try SluiceAgentCLI.run { () throws(AgentError) in try Agent.load(configPath: config, logger: logger) }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// Runs an agent call, turning `AgentError` into a message on stderr and its exit code.
func run<T>(_ body: () throws(AgentError) -> T) throws -> T {
    do {
        return try body()
    } catch {
        FileHandle.standardError.write(Data("sluice: error: \(error.message)\n".utf8))
        throw ExitCode(error.exitCode)
    }
}

func printJSON(_ value: some Encodable) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    var data = try encoder.encode(value)
    data.append(0x0A)
    FileHandle.standardOutput.write(data)
}
