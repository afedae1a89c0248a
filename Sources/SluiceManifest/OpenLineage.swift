import Foundation
import GRDB
import SluiceSupport

/// Where OpenLineage events go, as the manifest queues them: their job namespace and the
/// namespace of the lake's files.
public struct LineageRouting: Sendable {
    /// The jobs' namespace (`[lineage] namespace`, default the host name).
    public var namespace: String
    /// The lake's files as datasets: `file://<host>`, names absolute paths.
    public var lakeNamespace: String
    public var lakeRoot: String

    public init(namespace: String, lakeNamespace: String, lakeRoot: String) {
        self.namespace = namespace
        self.lakeNamespace = lakeNamespace
        self.lakeRoot = lakeRoot
    }

    /// A lake file (or folder) as a dataset: its absolute path in the lake's namespace.
    public func lakeDataset(_ relative: String, facets: [String: Any] = [:], outputFacets: [String: Any]? = nil) -> [String: Any] {
        OpenLineage.dataset(namespace: lakeNamespace, name: lakeRoot + "/" + relative, facets: facets, outputFacets: outputFacets)
    }
}

/// OpenLineage RunEvents (spec 2-0-2) as JSON, with the facets Sluice sets: `schema` and
/// `outputStatistics` on outputs, `errorMessage` on a failed run.
public enum OpenLineage {
    public static let producer = "urn:sluice:agent:0.1.0"
    /// The outbox's target name for lineage events (no `[[alerts]]` name has a colon).
    public static let target = ":lineage"
    static let spec = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"

    public static func facet(_ schemaURL: String, _ fields: [String: Any]) -> [String: Any] {
        fields.merging(["_producer": producer, "_schemaURL": schemaURL]) { a, _ in a }
    }

    /// `schema`: the fields and their types.
    public static func schema(_ fields: [(name: String, type: String)]) -> [String: Any] {
        facet("https://openlineage.io/spec/facets/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet",
              ["fields": fields.map { ["name": $0.name, "type": $0.type] }])
    }

    /// `outputStatistics`: rows and bytes written.
    public static func outputStatistics(rows: Int64, bytes: Int64?) -> [String: Any] {
        var f: [String: Any] = ["rowCount": rows]
        if let bytes { f["size"] = bytes }
        return facet("https://openlineage.io/spec/facets/1-0-2/OutputStatisticsOutputDatasetFacet.json#/$defs/OutputStatisticsOutputDatasetFacet", f)
    }

    public static func dataset(namespace: String, name: String, facets: [String: Any] = [:], outputFacets: [String: Any]? = nil) -> [String: Any] {
        var d: [String: Any] = ["namespace": namespace, "name": name, "facets": facets]
        if let outputFacets { d["outputFacets"] = outputFacets }
        return d
    }

    /// A START event and its COMPLETE (or FAIL, with `error`) for one run of `job`, as JSON.
    public static func run(job: String, namespace: String, startedAt: String, endedAt: String, inputs: [[String: Any]], outputs: [[String: Any]],
                           error: String?) -> [String] {
        let runID = UUID().uuidString.lowercased()
        func event(_ type: String, _ time: String, _ inputs: [[String: Any]], _ outputs: [[String: Any]], _ runFacets: [String: Any]) -> String {
            let object: [String: Any] = [
                "eventType": type, "eventTime": time, "producer": producer, "schemaURL": spec,
                "run": ["runId": runID, "facets": runFacets], "job": ["namespace": namespace, "name": job, "facets": [String: Any]()],
                "inputs": inputs, "outputs": outputs,
            ]
            let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
            return String(decoding: data, as: UTF8.self)
        }
        var endFacets: [String: Any] = [:]
        if let error {
            endFacets["errorMessage"] = facet("https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet",
                                              ["message": error, "programmingLanguage": "Swift"])
        }
        return [event("START", startedAt, inputs, [], [:]), event(error == nil ? "COMPLETE" : "FAIL", endedAt, inputs, outputs, endFacets)]
    }
}

extension Manifest {
    /// Queues lineage events (JSON) in the open write transaction `db`, in order.
    static func queueLineage(_ db: SQLDatabase, _ events: [String], now: Int64 = nowNanoseconds()) throws {
        guard !events.isEmpty else { return }
        let insert = """
            INSERT INTO alert_outbox (target, event, condition_id, resolved, body, created_at, next_attempt_at) VALUES (?, 'lineage', ?, 0, ?, ?, ?)
            """
        for body in events {
            let runID = (try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]).flatMap { ($0["run"] as? [String: Any])?["runId"] as? String }
            try db.execute(insert, [OpenLineage.target, runID ?? "", body, Timestamp.now(), now])
        }
    }
}
