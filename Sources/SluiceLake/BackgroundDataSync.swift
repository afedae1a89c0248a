import SluiceSupport
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Makes a big file being written durable a piece at a time, on a thread of its own: once
/// `step` more bytes are written, an `fdatasync` starts there, one at a time (a step reached
/// while one still runs waits for the next write). The disk then works while the bytes still
/// arrive, and the fsync before publishing is left with the last piece only.
///
/// It only moves work earlier: the file is fsync'd before it is published either way. On a
/// virtual disk whose host caches writes, `sync_file_range` alone hands the pages to the
/// device, yet the host writes them out only at the fsync; this makes it write them now.
///
/// A failed background sync must fail the file: Linux reports a writeback error once per open
/// file, so the final fsync on the same descriptor would not see an error this one consumed.
/// After `stop()`, check `failure`.
///
/// Call `stop()` before the descriptor is closed. Dropping it stops it too.
public final class BackgroundDataSync: @unchecked Sendable {  // called by the one thread that writes the file; errors go through FirstError
    public let step: Int64
    private let fd: Int32
    private let worker: SerialWorker<Int32>
    private let firstError: FirstError
    private var ticket = 0
    private var syncedTo: Int64 = 0

    private final class FirstError: Sendable {
        let errno = Atomic<Int32>(0)
    }

    public init(fd: Int32, step: Int64 = 64 << 20) {
        self.fd = fd
        self.step = step
        let firstError = FirstError()
        self.firstError = firstError
        worker = SerialWorker(name: "fdatasync", capacity: 1) { fd in
            if fdatasync(fd) != 0 {
                _ = firstError.errno.compareExchange(expected: 0, desired: Glibc.errno, ordering: .relaxed)
            }
        }
    }

    deinit { worker.stop() }

    /// The file now holds `written` bytes: starts an `fdatasync` if a step's worth is new and
    /// none is running. Never waits. An error here is left for the final fsync to report.
    public func wrote(upTo written: Int64) {
        guard written - syncedTo >= step, worker.hasRun(ticket) else { return }
        ticket = worker.submit(fd)
        syncedTo = written
    }

    /// How many background syncs were started (for tests and the debug log).
    public var started: Int { ticket }

    /// Waits for a running sync and ends the thread.
    public func stop() { worker.stop() }

    /// The first error of a background sync (after `stop()`), for the file's path: the file
    /// is not durable and must not be published.
    public func failure(path: String) -> SystemCallError? {
        let e = firstError.errno.load(ordering: .relaxed)
        return e == 0 ? nil : SystemCallError(call: "fdatasync", errno: e, path: path)
    }
}
