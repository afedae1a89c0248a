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
