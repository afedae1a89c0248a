import Foundation
import Logging
import SluiceLake
import SluiceManifest
import SluiceSupport
import SluiceIngest
import SluiceConfig
import SluiceFormats
#if canImport(Glibc)
import Glibc
#endif

extension Transformer {
    /// Records a transform's outcome in the manifest (and logs a failure); returns its reports:
    /// the version's, then (for an archive) each member's. One to try again later
    /// (`retryLater`) is not recorded: its one report is `postponed`.
    /// `startedAt`: when the transform began (its lineage START event's time).
    package func record(_ r: TransformResult, of input: TransformInput, versionID: Int64, in manifest: Manifest,
                        logger: Logger, startedAt: String = Timestamp.now(), fence: LeaseFence? = nil) throws(ManifestError) -> [TransformReport] {
        func schema(_ r: TransformResult) -> String? { r.dataset.flatMap { name in mapping.datasets.first { $0.name == name }?.schemaSHA256 } }
        let counts = r.memberCounts
        let archive = input.member == nil && archiveKind(of: input) != nil
        func row(_ r: TransformResult) -> Manifest.TransformRecord {
            Manifest.TransformRecord(dataset: r.dataset, mappingSHA256: mapping.sha256, schemaSHA256: schema(r), status: r.status.rawValue,
                                     rowsWritten: r.rowsWritten, rowsRejected: r.rowsRejected, outputPath: r.outputPath, rejectsPath: r.rejectsPath,
                                     error: r.error, member: r.member, members: nil, sourceSchema: r.observedSchema.map { ($0.json, $0.fingerprint) },
                                     schemaDrift: r.drift?.json)
        }
        if r.retryLater {
            // Not the file's doing: no record, so the version stays pending and is tried again.
            logger.warning("Transform postponed", metadata: ["client": "\(mapping.client)", "source": "\(input.source)", "path": "\(input.path.display)",
                                                           "version": "\(input.version)", "error": "\(r.error ?? "")"])
            var report = TransformReport(source: input.source, path: input.path.display, version: input.version, dataset: r.dataset, status: .failed,
                                         rowsWritten: 0, rowsRejected: 0, error: "\(r.error ?? ""); not recorded: the version stays pending and is transformed again")
            report.postponed = true
            return [report]
        }
        var file = row(r)
        if archive { file.members = counts }
        let routing = manifest.alertRouting
        try manifest.recordTransform(versionID: versionID, file, members: r.members.map(row), alerts: routing == nil ? [] : alerts(for: r, of: input),
                                     lineage: routing?.lineage.map { lineage(for: r, of: input, routing: $0, startedAt: startedAt) } ?? [], fence: fence)
        if r.status == .failed || r.status == .held {
            logger.warning(r.status == .held ? "Transform held" : "Transform failed", metadata: ["client": "\(mapping.client)", "source": "\(input.source)", "path": "\(input.path.display)",
                                                         "version": "\(input.version)", "dataset": "\(r.dataset ?? "")", "error": "\(r.error ?? "")"])
        }
        func report(_ r: TransformResult) -> TransformReport {
            TransformReport(source: input.source, path: input.path.display, version: input.version, dataset: r.dataset, status: r.status,
                            rowsWritten: r.rowsWritten, rowsRejected: r.rowsRejected, outputPath: r.outputPath,
                            rejectsPath: r.rejectsPath, error: r.error, member: r.member, schemaChanges: r.drift?.counts)
        }
        var first = report(r)
        if archive {
            first.members = TransformReport.MemberCounts(ok: counts.ok, failed: counts.failed, unmapped: counts.unmapped)
            // The archive's report carries its members' changes (the metrics count them).
            let changes = r.members.compactMap(\.drift).reduce(into: [String: Int]()) { all, d in all.merge(d.counts, uniquingKeysWith: +) }
            first.schemaChanges = changes.isEmpty ? nil : changes
        }
        return [first] + r.members.map(report)
    }
}

/// Transforms new versions while their batch is synced and committed, one at a time on a
/// thread of its own, so that a pull's transform overlaps its ingest instead of following it.
///
/// The data-safety order holds: the staged copy is read through a descriptor opened before
/// the batch is published (the bytes are the ones hashed), the outputs are written to
/// journaled temp files, and they are published (and the transform recorded) only once the
/// version's commit is known. A version whose batch did not commit gets nothing published
/// and no transform row. At most `maxQueued` versions wait; the rest are transformed after
/// the pass, as `pull` does for any version without a transform.
package final class EarlyTransforms: EarlyConsumer, @unchecked Sendable {  // state guarded by `condition`: the worker waits on it
    package let transformer: Transformer
    package let manifest: Manifest
    package let logger: Logger
    package static let maxQueued = 16

    private struct Job {
        package var input: TransformInput
        package var fd: Int32
        package var outcome: Outcome
    }

    /// How a version's batch ended: its id once committed, nil if it was not.
    package final class Outcome: @unchecked Sendable {  // state guarded by `condition`: the transform waits for the commit
        private let condition = NSCondition()
        private var settled = false
        private var versionID: Int64?

        package func settle(_ id: Int64?) {
            condition.lock()
            versionID = id
            settled = true
            condition.broadcast()
            condition.unlock()
        }

        package func wait() -> Int64? {
            condition.lock()
            defer { condition.unlock() }
            while !settled { condition.wait() }
            return versionID
        }
    }

    private let condition = NSCondition()
    private var queue: [Job] = []
    private var closed = false
    private var reports: [TransformReport] = []
    private var failure: ManifestError?
    private var worker: BackgroundJob?

    package init(transformer: Transformer, manifest: Manifest, logger: Logger) {
        self.transformer = transformer
        self.manifest = manifest
        self.logger = logger
    }

    package func staged(_ v: StagedVersion) -> (@Sendable (Int64?) -> Void)? {
        var input = TransformInput(client: v.client, source: v.source, path: v.path, version: v.version, sha256: v.sha256,
                                   lakePath: v.lakePath, ingestedAtMicros: TransformInput.micros(v.ingestedAt))
        guard transformer.dataset(for: input) != nil else { return nil }
        condition.lock()
        defer { condition.unlock() }
        guard !closed, queue.count < Self.maxQueued else { return nil }
        let fd = open(v.stagedPath, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        let readPath = "/proc/self/fd/\(fd)"
        guard access(readPath, R_OK) == 0 else {
            close(fd)  // no /proc: transformed after the pass instead
            return nil
        }
        let outcome = Outcome()
        input.readPath = readPath
        input.beforePublish = {
            guard outcome.wait() != nil else { throw Transformer.TransformError("the version was not committed") }
        }
        queue.append(Job(input: input, fd: fd, outcome: outcome))
        condition.broadcast()
        if worker == nil { worker = BackgroundJob { [self] in work() } }
        return { outcome.settle($0) }
    }

    private func work() {
        while true {
            condition.lock()
            while queue.isEmpty && !closed { condition.wait() }
            if queue.isEmpty {
                condition.unlock()
                return
            }
            let job = queue.removeFirst()
            condition.unlock()
            let startedAt = Timestamp.now()
            let result = transformer.run(job.input)
            close(job.fd)
            // Nothing was published for a version that was not committed; it gets no row.
            guard let versionID = job.outcome.wait() else { continue }
            do {
                let recorded = try transformer.record(result, of: job.input, versionID: versionID, in: manifest, logger: logger, startedAt: startedAt)
                condition.lock()
                reports += recorded
                condition.unlock()
            } catch {
                condition.lock()
                failure = failure ?? error
                condition.unlock()
            }
        }
    }

    /// Waits for the queued transforms (call once the ingest pass is over, when every batch
    /// has settled) and returns their reports.
    package func finish() throws(ManifestError) -> [TransformReport] {
        condition.lock()
        closed = true
        condition.broadcast()
        let worker = self.worker
        condition.unlock()
        try? worker?.wait()
        condition.lock()
        defer { condition.unlock() }
        if let failure { throw failure }
        return reports
    }
}
