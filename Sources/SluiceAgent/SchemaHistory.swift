import Foundation
import SluiceManifest
import SluiceTransform

/// `sluice schema`: each dataset's distinct observed schemas, in the order they first came,
/// with the first and last unit that had each and the drift from the one before.
public struct DatasetSchemaHistory: Sendable, Encodable {
    public struct Unit: Sendable, Encodable {
        public var source: String
        public var path: String
        public var version: Int
        public var member: String?
        public var transformedAt: String

        enum CodingKeys: String, CodingKey { case source, path, version, member, transformedAt = "transformed_at" }
    }

    public struct Entry: Sendable, Encodable {
        public var sha256: String
        public var schema: ObservedSchema
        public var first: Unit
        public var last: Unit
        /// How many transformed units had it.
        public var units: Int
        /// From the schema before (nil for the first).
        public var drift: SchemaDrift?

        enum CodingKeys: String, CodingKey { case sha256, schema, first, last, units, drift }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(sha256, forKey: .sha256)
            try c.encode(schema, forKey: .schema)
            try c.encode(first, forKey: .first)
            try c.encode(last, forKey: .last)
            try c.encode(units, forKey: .units)
            try c.encode(drift, forKey: .drift)  // null for the first
        }
    }

    public var dataset: String
    public var schemas: [Entry]
}

extension Agent {
    public func schemaHistory(client id: String, dataset: String?) throws(AgentError) -> [DatasetSchemaHistory] {
        _ = try requireClient(id)
        if let dataset, let mapping = try mappings()[id], !mapping.datasets.contains(where: { $0.name == dataset }) {
            throw AgentError(.usage, "client '\(id)' has no dataset '\(dataset)' (datasets: \(mapping.datasets.map(\.name).joined(separator: ", ")))")
        }
        guard config.manifestMayExist else { return [] }
        let occurrences: [Manifest.SchemaOccurrence]
        do {
            occurrences = try openManifest().schemaOccurrences(client: id, dataset: dataset)
        } catch let e as AgentError {
            throw e
        } catch {
            throw AgentError(.runtime, "\(error)")
        }
        var order: [String] = []
        var byDataset: [String: [DatasetSchemaHistory.Entry]] = [:]
        for o in occurrences {
            guard let schema = try? JSONDecoder().decode(ObservedSchema.self, from: Data(o.schema.utf8)) else { continue }
            let unit = DatasetSchemaHistory.Unit(source: o.source, path: o.path, version: o.version, member: o.member, transformedAt: o.transformedAt)
            if byDataset[o.dataset] == nil { order.append(o.dataset) }
            var entries = byDataset[o.dataset] ?? []
            if let i = entries.firstIndex(where: { $0.sha256 == o.sha256 }) {
                entries[i].last = unit
                entries[i].units += 1
            } else {
                var drift = entries.last.map { SchemaDrift(from: $0.schema, to: schema) }
                // The examples of a type change are the ones its first unit recorded against the
                // delivery before it (schemas keep no values).
                if let recorded = o.drift.flatMap({ try? SchemaDrift(json: $0) }), drift != nil {
                    for i in drift!.typeChanges.indices {
                        let c = drift!.typeChanges[i]
                        if let r = recorded.typeChanges.first(where: { $0.column == c.column && $0.to == c.to }) { drift!.typeChanges[i].examples = r.examples }
                    }
                }
                entries.append(.init(sha256: o.sha256, schema: schema, first: unit, last: unit, units: 1, drift: drift))
            }
            byDataset[o.dataset] = entries
        }
        return order.map { DatasetSchemaHistory(dataset: $0, schemas: byDataset[$0] ?? []) }
    }
}
