import Foundation
import SluiceManifest
import SluiceSupport
import Synchronization

/// Candidates handed from the listing thread to the copier, in order.
package final class CandidateQueue: @unchecked Sendable {  // state guarded by `condition`: the copier waits on it
    private let condition = NSCondition()
    private var items: [Candidate] = []
    private var closed = false

    package func push(_ c: Candidate) {
        condition.lock()
        items.append(c)
        if items.count >= 512 { condition.signal() }
        condition.unlock()
    }

    /// No more candidates will come (also called to stop early).
    package func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
    }

    /// Up to `max` candidates: blocks until that many are queued or the queue is closed; nil
    /// when it is closed and empty.
    package func take(_ max: Int) -> [Candidate]? {
        condition.lock()
        defer { condition.unlock() }
        while items.count < max && !closed { condition.wait() }
        if items.isEmpty { return nil }
        let n = min(max, items.count)
        let batch = Array(items[0..<n])
        items.removeFirst(n)
        return batch
    }
}

/// What the listing thread found besides work: issues, fresh files and unchanged files.
/// Written by the listing thread only, read after it has ended.
package final class ListingResult: @unchecked Sendable {  // written by the listing thread only, read after it has ended
    package var counts = RunCounts()
    package var files: [FileReport] = []
    /// Files unchanged since their latest version: how many, and (when the source moves or
    /// deletes what it ingested) which, with that version.
    package var unchangedCount = 0
    package var unchanged: [(candidate: Candidate, known: KnownFile)] = []
    /// Why looking up the listed files in the manifest failed (the pass then fails).
    package var lookupError: ManifestError?

    package func add(issue: ListingIssue, source: String) {
        switch issue.kind {
        case .skipped: counts.skipped += 1
        case .failed: counts.failed += 1
        }
        files.append(FileReport(source: source, path: issue.path.display, status: issue.kind == .skipped ? .skipped : .failed, error: issue.message,
                              rawPath: issue.path))
    }
}

/// The latest versions the manifest has of the files a pass copies, looked up a batch at a time
/// as the listing goes (never the whole history of the source at once), for the copy and
/// commit jobs.
package final class KnownIndex: Sendable {
    private let files = Mutex<[[UInt8]: KnownFile]>([:])

    package init() {}

    package subscript(_ path: [UInt8]) -> KnownFile? { files.withLock { $0[path] } }

    package func add(_ path: [UInt8], _ known: KnownFile) { files.withLock { $0[path] = known } }
}

/// Batch results in batch order, filled by the commit jobs.
package final class ResultList: Sendable {
    private let results = Mutex<[Ingestor.BatchResult?]>([])

    package func reserve() -> Int {
        results.withLock {
            $0.append(nil)
            return $0.count - 1
        }
    }

    package func set(_ i: Int, _ r: Ingestor.BatchResult) {
        results.withLock { $0[i] = r }
    }

    package var all: [Ingestor.BatchResult] {
        results.withLock { $0.compactMap { $0 } }
    }
}
