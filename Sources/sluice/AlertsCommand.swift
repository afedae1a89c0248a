import ArgumentParser
import Foundation
import SluiceAgent

struct Alerts: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List recent alerts and their delivery, or send a test alert.",
        subcommands: [List.self, Test.self],
        defaultSubcommand: List.self)

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "list",
            abstract: "The newest alerts, one per target they go to, and how their delivery went (sent, or pending with its attempts and last error).",
            discussion: "Exit codes: 0 listed; 1 the manifest cannot be read; 2 usage or config error.")

        @OptionGroup var global: GlobalOptions
        @Flag(help: "Print a JSON array.") var json = false
        @Flag(help: "Only alerts not delivered yet.") var pending = false
        @Option(help: "At most this many (newest first).") var limit = 50

        func run() throws {
            guard limit > 0 else { throw ValidationError("--limit must be at least 1") }
            let agent = try global.loadAgent()
            let rows = try SluiceAgentCLI.run { () throws(AgentError) in try agent.alerts(limit: limit, pendingOnly: pending) }
            if json {
                try printJSON(rows)
                return
            }
            if rows.isEmpty {
                say(pending ? "no alerts waiting to be sent" : "no alerts yet")
                return
            }
            for r in rows {
                let state = r.state == "sent" ? "sent \(r.sent_at ?? "")" : "pending, \(r.attempts) attempts, next \(r.next_attempt_at ?? "")"
                say("\(r.created_at)  \(r.alert)  \(r.resolved ? "resolved " : "")\(r.event)  \(r.condition)  \(state)")
                if let e = r.last_error, r.state != "sent" { say("  last error: \(e)") }
            }
        }
    }

    struct Test: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send a test event to one [[alerts]] entry now.",
            discussion: "The event has event \"test\" and severity \"info\"; it is sent at once, not through the outbox. Exit codes: 0 delivered (a 2xx answer, or the SMTP server took the message); 1 the delivery failed (the error says why); 2 usage or config error (no such alert name).")

        @OptionGroup var global: GlobalOptions
        @Argument(help: "The alert's name in agent.conf.") var name: String

        func run() throws {
            let agent = try global.loadAgent()
            let event = try SluiceAgentCLI.run { () throws(AgentError) in try agent.testAlert(name: name) }
            say("test alert sent to \(name) (id \(event.id), at \(event.at))")
        }
    }
}
