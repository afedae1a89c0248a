import ArgumentParser
import Foundation
import SluiceAgent
import SluiceTransform

struct Schema: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the schemas a client's files were seen to have, per dataset, and what changed between them.",
        discussion: "For each dataset, each distinct observed schema (columns in file order with the type their values look like, the encoding and delimiter, and the column that filled each field) in the order it first came, with the first and last unit (file or archive member) that had it and its drift from the schema before: columns added, removed, renamed (a field filled through an alias), moved, and type changes. Exit codes: 0 success; 2 usage or config error (unknown client or dataset).")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Client id from agent.conf.") var client: String
    @Option(help: "Only this dataset.") var dataset: String?
    @Flag(help: "Print a JSON array.") var json = false

    func run() throws {
        let agent = try global.loadAgent()
        let history = try SluiceAgentCLI.run { () throws(AgentError) in try agent.schemaHistory(client: client, dataset: dataset) }
        if json {
            try printJSON(history)
            return
        }
        if history.isEmpty {
            say("no observed schemas for \(client)\(dataset.map { ", dataset \($0)" } ?? "") yet: they are recorded as files are transformed")
            return
        }
        for d in history {
            say("dataset \(d.dataset): \(d.schemas.count) schema\(d.schemas.count == 1 ? "" : "s")")
            for (i, s) in d.schemas.enumerated() {
                let unit = { (u: DatasetSchemaHistory.Unit) in "\(u.source)/\(u.path) v\(u.version)\(u.member.map { " member \($0)" } ?? "")" }
                say("  #\(i + 1) sha256:\(s.sha256.prefix(12))…  \(s.units) unit\(s.units == 1 ? "" : "s"), first \(unit(s.first)), last \(unit(s.last))")
                say("     columns: " + s.schema.columns.map { "\($0.name) (\($0.type.rawValue))" }.joined(separator: ", "))
                guard let drift = s.drift else { continue }
                if drift.isEmpty { say("     no column changes (the encoding, delimiter or mapping differ)") }
                if !drift.added.isEmpty { say("     added: \(drift.added.joined(separator: ", "))") }
                if !drift.removed.isEmpty { say("     removed: \(drift.removed.joined(separator: ", "))") }
                for r in drift.renamed { say("     renamed: \(r.from) → \(r.to) (field \(r.field))") }
                for m in drift.moved { say("     moved: \(m.column) from column \(m.from) to \(m.to)") }
                for t in drift.typeChanges {
                    let examples = t.examples.isEmpty ? "" : " (e.g. \(t.examples.map { "\"\($0)\"" }.joined(separator: ", ")))"
                    say("     type changed: \(t.column) \(t.from.rawValue) → \(t.to.rawValue)\(examples)")
                }
            }
        }
    }
}
