import Foundation
import Logging
import Synchronization
import SluiceLake
import SluiceManifest
import SluiceSupport
import SluiceIngest
import SluiceConfig
#if canImport(Glibc)
import Glibc
#endif

/// Watches a drop folder with inotify and ingests what arrives.
///
/// - A file renamed in (`IN_MOVED_TO`) is complete: it is ingested at once.
/// - A file written in place (`IN_CLOSE_WRITE`, or `IN_CREATE` for a `link()`ed upload) is
///   ingested once it has been quiet for `min_age`.
/// - A new subfolder is watched first and then scanned, so files put in it before the watch
///   existed are not missed. An `IN_Q_OVERFLOW` re-watches and rescans everything.
/// - The whole folder is scanned at start and every `rescan_interval`, as a safety net.
///
/// Two threads: one drains inotify (so the kernel queue rarely overflows, even while a pass
/// runs), one runs the passes, each through the same ingest pipeline as `sluice pull`.
package final class FolderWatcher: SourceRunner, Sendable {
    package unowned let host: any SourceHost
    package let key: SourceKey
    package let config: FolderSourceConfig
    private let waker = Waker()
    /// The inotify reader and the pass runner, once started.
    private let jobs = Mutex<(reader: BackgroundJob?, processor: BackgroundJob?)>((nil, nil))

    private struct Queues {
        /// Complete files to ingest now, in arrival order.
        var ready: [RelativePath] = []
        var readySet = Set<RelativePath>()
        /// Files written in place, and when to look at them again (ns since the epoch).
        var pending: [RelativePath: Int64] = [:]
        var scanRequested = true
    }
    private let queues = Mutex(Queues())

    private let logger: Logger

    package init(host: any SourceHost, key: SourceKey, config: FolderSourceConfig) {
        self.host = host
        logger = host.logger.about(client: key.client, source: key.source)
        self.key = key
        self.config = config
    }

    package func sameConfig(as source: SourceConfig) -> Bool {
        (source.settings as? FolderSourceConfig) == config
    }

    package func start() {
        let processor = BackgroundJob(name: "ingest \(key)") { [self] in process() }
        let reader = BackgroundJob(name: "inotify \(key)") { [self] in watch() }
        jobs.withLock { $0 = (reader, processor) }
    }

    package func stop() { waker.stop() }

    package func join(until deadline: Date) -> Bool {
        let (reader, processor) = jobs.withLock { $0 }
        let a = reader?.wait(until: deadline) ?? true
        let b = processor?.wait(until: deadline) ?? true
        return a && b
    }

    package var hasEnded: Bool {
        let (reader, processor) = jobs.withLock { $0 }
        return (reader?.isFinished ?? false) || (processor?.isFinished ?? false)
    }

    private var queueDepth: Int { queues.withLock { $0.ready.count + $0.pending.count } }

    // MARK: inotify

    private func watch() {
        let inotify: Inotify
        do {
            inotify = try Inotify()
        } catch {
            logger.error("Cannot watch the drop folder; it is only rescanned every rescan_interval", metadata: ["error": "\(error)"])
            host.update(key) { $0.lastError = "\(error)" }
            return
        }
        watchTree(inotify)
        while !waker.isStopped {
            if inotify.folders.isEmpty {
                // The folder is missing (or was removed): watch it again once it is back.
                watchTree(inotify)
                if !inotify.folders.isEmpty {
                    queues.withLock { $0.scanRequested = true }
                    waker.wake()
                }
            }
            let events = inotify.read(timeoutMs: 250)
            guard !events.isEmpty else { continue }
            var changed = false
            let now = nowNanoseconds()
            for e in events {
                if e.mask.contains(.overflow) {
                    logger.warning("inotify queue overflowed; rescanning the folder")
                    inotify.unwatchAll()
                    watchTree(inotify)
                    queues.withLock { $0.scanRequested = true }
                    changed = true
                    continue
                }
                if e.mask.contains(.ignored) {
                    inotify.forget(e.watch)
                    continue
                }
                guard let folder = inotify.folders[e.watch], !e.name.isEmpty else {
                    if e.mask.contains(.deleteSelf) || e.mask.contains(.moveSelf), inotify.folders[e.watch] == [] {
                        host.update(key) { $0.lastError = "the drop folder \(config.path) was removed or moved" }
                    }
                    continue
                }
                let path = RelativePath(bytes: folder.isEmpty ? e.name : folder + [UInt8(ascii: "/")] + e.name)
                if e.mask.contains(.isDirectory) {
                    guard config.recursive, e.mask.contains(.create) || e.mask.contains(.movedTo),
                          config.filter.descends(into: path.bytes) else { continue }
                    // Watch first, then scan: nothing put in it can be missed.
                    watchTree(inotify, from: path)
                    queues.withLock { $0.scanRequested = true }
                    changed = true
                    continue
                }
                guard config.filter.accepts(file: path.bytes) else { continue }
                let quiet = config.minAgeNanoseconds
                queues.withLock { q in
                    if e.mask.contains(.movedTo) {
                        q.pending[path] = nil
                        if q.readySet.insert(path).inserted { q.ready.append(path) }
                    } else if !q.readySet.contains(path) {
                        q.pending[path] = now + quiet
                    }
                }
                changed = true
            }
            if changed { waker.wake() }
        }
    }

    /// The absolute path of `rel` as raw bytes: names that are not UTF-8 stay as they are.
    private func absolute(_ rel: RelativePath) -> [UInt8] {
        rel.bytes.isEmpty ? Array(config.path.utf8) : Array(config.path.utf8) + [UInt8(ascii: "/")] + rel.bytes
    }

    /// `lstat` of `rel` below the root; nil when it is gone.
    private func lstatBelowRoot(_ rel: RelativePath) -> stat? {
        var st = stat()
        return withCString(absolute(rel)) { lstat($0, &st) } == 0 ? st : nil
    }

    /// Adds a watch for `from` (relative; [] = the root) and every folder below it.
    private func watchTree(_ inotify: Inotify, from: RelativePath = RelativePath(bytes: [])) {
        var stack = [from]
        while let rel = stack.popLast() {
            guard withCString(absolute(rel), { access($0, F_OK) }) == 0 else { continue }
            if let problem = inotify.watch(absolute: absolute(rel), relative: rel.bytes) {
                logger.error("Cannot watch a folder", metadata: ["error": "\(problem)"])
                continue
            }
            guard config.recursive else { continue }
            for name in Self.names(in: absolute(rel)) {
                let child = rel.appending(name)
                guard let st = lstatBelowRoot(child), (st.st_mode & S_IFMT) == S_IFDIR,
                      config.filter.descends(into: child.bytes) else { continue }
                stack.append(child)
            }
        }
    }

    /// The names in a folder as raw bytes, without `.` and `..`; empty when it cannot be read.
    package static func names(in folder: [UInt8]) -> [[UInt8]] {
        guard let d = withCString(folder, { opendir($0) }) else { return [] }
        defer { closedir(d) }
        var names: [[UInt8]] = []
        while let e = readdir(d) {
            let name: [UInt8] = withUnsafeBytes(of: e.pointee.d_name) { raw in Array(raw.prefix { $0 != 0 }) }
            if name != [0x2E] && name != [0x2E, 0x2E] { names.append(name) }
        }
        return names
    }

    // MARK: Passes

    private func process() {
        var nextRescan = nowNanoseconds()
        while !waker.isStopped {
            let now = nowNanoseconds()
            let scan = queues.withLock { q in
                let s = q.scanRequested || now >= nextRescan
                q.scanRequested = false
                return s
            }
            if scan {
                nextRescan = now + config.rescanIntervalNanoseconds
                host.update(key) { $0.state = .scanning }
                host.cycleStarted()
                rescan()
            }
            let batch = takeReady(now: nowNanoseconds())
            if !batch.isEmpty {
                host.update(key) {
                    $0.state = .ingesting
                    $0.queueDepth = self.queueDepth + batch.count
                }
                let source = FolderSource(client: key.client, name: key.source, config: config, only: batch)
                _ = host.runPass(key, source: source, trigger: "watch")
            }
            let depth = queueDepth
            host.update(key) {
                $0.state = .idle
                $0.queueDepth = depth
            }
            // Sleep until the next file is due, the next rescan, or an event.
            let wake = queues.withLock { q -> Int64 in
                if !q.ready.isEmpty || q.scanRequested { return 0 }
                return min(q.pending.values.min() ?? .max, nextRescan)
            }
            if wake > nowNanoseconds() { waker.sleep(nanoseconds: min(wake - nowNanoseconds(), 1_000_000_000)) }
        }
        host.update(key) { $0.state = .stopped }
    }

    /// The files to ingest now: the complete ones, and those written in place that have been
    /// quiet for `min_age` (one still changing is looked at again when it could be ready).
    private func takeReady(now: Int64) -> [RelativePath] {
        let (complete, due) = queues.withLock { q -> ([RelativePath], [RelativePath]) in
            let c = q.ready
            q.ready.removeAll()
            q.readySet.removeAll()
            let d = q.pending.filter { $0.value <= now }.map(\.key)
            for p in d { q.pending[p] = nil }
            return (c, d)
        }
        var out = complete
        for path in due {
            guard let st = lstatBelowRoot(path) else { continue }  // gone
            let quietSince = FolderPass.mtime(st)
            if now - quietSince >= config.minAgeNanoseconds {
                out.append(path)
            } else {
                let due = quietSince + config.minAgeNanoseconds
                queues.withLock { $0.pending[path] = due }
            }
        }
        return out
    }

    /// A full pass over the folder (at start, after an overflow or a new subfolder, and every
    /// `rescan_interval`); files too fresh to take are looked at again when they could be.
    private func rescan() {
        let source = FolderSource(client: key.client, name: key.source, config: config)
        guard let report = host.runPass(key, source: source, trigger: "scan") else { return }
        let now = nowNanoseconds()
        let due = now + config.minAgeNanoseconds
        queues.withLock { q in
            for f in report.files where f.status == .skipped && f.problem == .notStableYet {
                guard let path = f.rawPath else { continue }
                if !q.readySet.contains(path) { q.pending[path] = due }
            }
        }
    }

}
