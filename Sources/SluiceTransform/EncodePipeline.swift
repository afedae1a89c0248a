import Foundation
import SluiceParquet
import SluiceSupport
import Synchronization
import SluiceLake
import SluiceManifest
import SluiceIngest
import SluiceConfig
import SluiceFormats

/// Encodes batches of rows into a Parquet file on a second thread while the caller parses the
/// next batch, so that a transform's two halves (reading and typing values; encoding and
/// compressing them) each get a core. Eight batches circulate (one being filled, some queued,
/// one being encoded), so that neither side waits on the other's short stalls; memory stays
/// bounded by them and the writer's row group.
package final class EncodePipeline: @unchecked Sendable {  // state guarded by `condition`: both sides wait on it
    private let writer: ParquetWriter
    private let condition = NSCondition()
    private var queued: [ParquetRow] = []
    private var spare: [ParquetRow]
    private var closed = false
    private var failure: (any Error)?
    private var job: BackgroundJob?

    package init(writer: ParquetWriter, columns: Int, batchRows: Int) {
        self.writer = writer
        spare = (0..<8).map { _ in ParquetRow(columns: columns, capacity: batchRows) }
        job = BackgroundJob { [self] in try encode() }
    }

    /// An empty batch to fill; waits while all are in use.
    package func take() -> ParquetRow {
        condition.lock()
        defer { condition.unlock() }
        while spare.isEmpty { condition.wait() }
        return spare.removeLast()
    }

    /// Queues a filled batch; throws the encoder's error once it has failed.
    package func submit(_ rows: ParquetRow) throws {
        condition.lock()
        defer { condition.unlock() }
        if let failure {
            rows.reset()
            spare.append(rows)
            throw failure
        }
        queued.append(rows)
        condition.broadcast()
    }

    /// Waits for every queued batch to be encoded (or for the encoder to fail).
    package func finish() throws {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
        try job?.wait()
        condition.lock()
        defer { condition.unlock() }
        if let failure { throw failure }
    }

    private func encode() throws {
        while true {
            condition.lock()
            while queued.isEmpty && !closed { condition.wait() }
            guard !queued.isEmpty else {
                condition.unlock()
                return
            }
            let rows = queued.removeFirst()
            let failed = failure != nil
            condition.unlock()
            var error: (any Error)?
            if !failed {
                do { try writer.append(rows) } catch let e { error = e }
            }
            rows.reset()
            condition.lock()
            if let error, failure == nil { failure = error }
            spare.append(rows)
            condition.broadcast()
            condition.unlock()
        }
    }
}
