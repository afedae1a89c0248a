import Foundation
import SluiceManifest
import SluiceSupport

extension Transformer {
    /// The alerts a transform's outcome raises or resolves, one condition per unit (a file, or
    /// an archive's member): `transform_failed`, `reject_ratio_exceeded` (a failure because
    /// too many rows were rejected) and `transform_held`; an ok transform of the unit resolves
    /// whichever of them is open. They are queued in the transaction that records the outcome.
    package func alerts(for r: TransformResult, of input: TransformInput) -> [AlertEvent] {
        let units = r.members.isEmpty || r.status == .failed ? [r] + r.members : r.members
        return units.flatMap { unit -> [AlertEvent] in
            let path = input.path.display + (unit.member.map { "#" + $0 } ?? "")
            let key = "\(mapping.client)/\(input.source)/\(path)"
            func event(_ name: String, _ severity: String, _ message: String) -> AlertEvent {
                AlertEvent(event: name, severity: severity, client: mapping.client, source: input.source, dataset: unit.dataset, path: path,
                           version: input.version, message: message, id: "\(name):\(key)")
            }
            let what = "\(path) v\(input.version)"
            switch unit.status {
            case .failed:
                let total = unit.rowsWritten + unit.rowsRejected
                let limit = unit.dataset.flatMap { name in mapping.datasets.first { $0.name == name } }?.maxRejectRatio
                if let limit, total > 0, Double(unit.rowsRejected) / Double(total) > limit {
                    return [event("reject_ratio_exceeded", "error", "\(what): \(unit.error ?? "too many rows rejected")")]
                }
                return [event("transform_failed", "error", "\(what) did not transform: \(unit.error ?? "failed")")]
            case .held:
                return [event("transform_held", "warning", "\(what) is held: \(unit.error ?? "its schema changed")")]
            case .ok:
                return ["transform_failed", "reject_ratio_exceeded", "transform_held"].map {
                    event($0, "info", "").resolution("\(what) transformed ok (\(unit.rowsWritten) rows)")
                }
            case .unmapped:
                return []
            }
        }
    }
}

extension Transformer {
    /// OpenLineage events of a transform: for each unit that matched a dataset (the file, or
    /// each archive member), a run of job `transform.<client>.<dataset>` whose input is the raw
    /// version in the lake and whose outputs are the dataset's folder, `processed/<client>/<dataset>` (with the mapping's
    /// `schema` and `outputStatistics`: rows and bytes written) and, when rows were rejected,
    /// the rejects' folder.
    package func lineage(for r: TransformResult, of input: TransformInput, routing: LineageRouting, startedAt: String) -> [String] {
        let units = r.members.isEmpty ? [r] : r.members
        let ended = Timestamp.now()
        return units.flatMap { unit -> [String] in
            guard let name = unit.dataset, let d = mapping.datasets.first(where: { $0.name == name }) else { return [] }
            var raw = routing.lakeDataset(input.lakePath)
            if let member = unit.member { raw["name"] = "\(raw["name"] ?? "")#\(member)" }
            var outputs: [[String: Any]] = []
            if let out = unit.outputPath {
                let size = lake.size(ofPublished: out)
                outputs.append(routing.lakeDataset("processed/\(mapping.client)/\(name)",
                                                   facets: ["schema": OpenLineage.schema(d.fields.map { ($0.name, $0.type.description) })],
                                                   outputFacets: ["outputStatistics": OpenLineage.outputStatistics(rows: unit.rowsWritten, bytes: size)]))
            }
            if let rejects = unit.rejectsPath {
                let size = lake.size(ofPublished: rejects)
                outputs.append(routing.lakeDataset("processed/\(mapping.client)/\(Self.rejectsFolder)/\(name)",
                                                   outputFacets: ["outputStatistics": OpenLineage.outputStatistics(rows: unit.rowsRejected, bytes: size)]))
            }
            let failed = unit.status == .failed || unit.status == .held
            return OpenLineage.run(job: "transform.\(mapping.client).\(name)", namespace: routing.namespace, startedAt: startedAt, endedAt: ended,
                                   inputs: [raw], outputs: outputs, error: failed ? (unit.error ?? unit.status.rawValue) : nil)
        }
    }
}
