import Foundation
import Logging
import SluiceLake
import SluiceManifest
import SluiceSupport
#if canImport(Glibc)
import Glibc
#endif

/// The one ingest pipeline every source goes through:
/// list → stable? → new content? → temp file beside its lake path, SHA-256 while copying →
/// sync the batch → no-clobber rename → fsync folders → one manifest transaction per batch →
/// after-ingest action.
public final class Ingestor: Sendable {
    public let lake: Lake
    public let manifest: Manifest
    public let stateDir: String
    package let logger: Logger
    /// Threads that copy, hash and fsync in parallel (I/O bound, so more than the cores).
    public let workers: Int
    /// Files published per manifest transaction.
    public let batchSize: Int
    public let hooks: IngestHooks
    public let syncMethod: SyncMethod
    /// Gets each new version while its batch is being committed (the early transform).
    public let early: (any EarlyConsumer)?
    /// A graceful shutdown: polled between batches and before each file, true stops the pass
    /// early (files already being copied finish, committed batches stay).
    public let stopRequested: (@Sendable () -> Bool)?
    /// The shutdown's time is up: polled between the chunks of a file, true drops the copy.
    public let abortRequested: (@Sendable () -> Bool)?
    /// The lease this pass holds on its source (`sluice run`'s polled sources): every commit
    /// carries it and is refused once another agent has taken the source over.
    public let fence: LeaseFence?
    /// Threads that rename staged files into place (same-folder renames contend on the folder).
    package let publishThreads = 2
    /// Uploads in flight at once when the lake is a bucket (each waits on the network).
    package let uploadThreads = 16
    package static let copyBufferSize = 2 << 20
    /// Listed files looked up in the manifest together (one query).
    static let lookupBatch = 512

    public init(lake: Lake, manifest: Manifest, stateDir: String, logger: Logger,
                workers: Int? = nil, batchSize: Int = 512, syncMethod: SyncMethod = .syncfs, hooks: IngestHooks = IngestHooks(),
                early: (any EarlyConsumer)? = nil, stopRequested: (@Sendable () -> Bool)? = nil, abortRequested: (@Sendable () -> Bool)? = nil,
                fence: LeaseFence? = nil) {
        self.fence = fence
        self.syncMethod = syncMethod
        self.early = early
        self.stopRequested = stopRequested
        self.abortRequested = abortRequested
        self.lake = lake
        self.manifest = manifest
        self.stateDir = stateDir
        self.logger = logger
        self.workers = workers ?? max(4, 2 * usableCores)
        self.batchSize = batchSize
        self.hooks = hooks
    }

    /// One pass over the given sources of a client.
    public func pull(client: String, sources: [any Source], trigger: String, onlySource: String? = nil) throws(ManifestError) -> PullReport {
        try manifest.markInterruptedRuns(client: client)
        let runID = try manifest.startRun(client: client, source: onlySource, trigger: trigger)
        var report = PullReport(client: client, runID: runID)
        var fatal: ManifestError?
        let lineage = manifest.alertRouting?.lineage
        var lineageEvents: [String] = []
        for source in sources {
            let started = Timestamp.now()
            defer {
                if let lineage { lineageEvents += Self.lineage(of: source, client: client, report: report, startedAt: started, routing: lineage) }
            }
            do {
                try ingest(client: client, source: source, runID: runID, report: &report)
            } catch let e as SourceError {
                logger.about(client: client, source: source.name).error("Source failed", metadata: ["error": "\(e.message)"])
                report.sourceErrors.append((source.name, e.message))
            } catch let e as ManifestError {
                report.sourceErrors.append((source.name, e.message))
                fatal = e
                break
            } catch {
                report.sourceErrors.append((source.name, "\(error)"))
            }
        }
        let status: Manifest.RunStatus = report.succeeded ? .ok : (report.counts.new + report.counts.unchanged > 0 ? .partial : .failed)
        let errorText = report.sourceErrors.map { "\($0.source): \($0.message)" }
            + (report.counts.failed > 0 ? ["\(report.counts.failed) file(s) failed"] : [])
            + (report.afterIngestFailures > 0 ? ["after_ingest failed for \(report.afterIngestFailures) file(s)"] : [])
        try? manifest.finishRun(id: runID, status: status, error: errorText.isEmpty ? nil : errorText.joined(separator: "; "), lineage: lineageEvents)
        if let fatal { throw fatal }
        return report
    }

    /// The OpenLineage run of one source's pass: job `ingest.<client>.<source>`, its inputs the
    /// new versions' files at the source, its outputs their lake files; FAIL when the source or
    /// a file failed.
    static func lineage(of source: any Source, client: String, report: PullReport, startedAt: String, routing: LineageRouting) -> [String] {
        let stored = report.files.filter { $0.source == source.name && $0.status == .new && $0.lakePath != nil }
        let inputs = stored.map { f -> [String: Any] in
            let d = f.rawPath.map(source.lineageDataset) ?? (namespace: "sluice://\(client)/\(source.name)", name: f.path)
            return OpenLineage.dataset(namespace: d.namespace, name: d.name)
        }
        let outputs = stored.map { routing.lakeDataset($0.lakePath!) }
        let failedFiles = report.files.filter { $0.source == source.name && $0.status == .failed }
        let error = report.sourceErrors.first { $0.source == source.name }?.message
            ?? (failedFiles.isEmpty ? nil : "\(failedFiles.count) file(s) failed: \(failedFiles.first?.path ?? ""): \(failedFiles.first?.error ?? "")")
        return OpenLineage.run(job: "ingest.\(client).\(source.name)", namespace: routing.namespace, startedAt: startedAt, endedAt: Timestamp.now(),
                               inputs: inputs, outputs: outputs, error: error)
    }

    package enum Staged {
        case staged(SealedFile)
        case sameAsLatest(size: Int64)
        case skipped(String, FileProblem? = nil)
        case failed(String, FileProblem? = nil)
    }

    private func ingest(client: String, source: any Source, runID: Int64, report: inout PullReport) throws {
        var lock: SourceLock?
        if source.exclusivePasses {
            do {
                lock = try SourceLock(stateDir: stateDir, client: client, source: source.name)
            } catch {
                throw SourceError("cannot take the source lock: \(error)")
            }
        }
        defer { withExtendedLifetime(lock) {} }
        // Every folder this source ever moved files to is skipped: what Sluice moved aside is
        // never a new delivery. The current target is recorded before anything is moved there.
        var moveTargets = try manifest.moveTargets(client: client, source: source.name)
        if case .move(let target) = source.afterIngest, !moveTargets.contains(target) {
            try manifest.recordMoveTarget(client: client, source: source.name, target: target)
            moveTargets.append(target)
        }
        let pass = try source.beginPass(moveTargets: moveTargets)
        defer { pass.end() }
        // The listing runs on its own thread and feeds the copier batch by batch, so that
        // copying starts with the first batch instead of after the whole listing. It looks up
        // what the manifest has of the listed files a batch at a time, so that a pass holds
        // the files it copies, not everything the source ever delivered.
        let known = KnownIndex()
        let queue = CandidateQueue()
        let listing = ListingResult()
        let minAge = source.minAgeNanoseconds
        let sourceName = source.name
        let keepsUnchanged = source.afterIngest != .keep
        let manifest = self.manifest
        let lister = BackgroundJob.pooled { [logger] in
            defer { queue.close() }
            let start = nowNanoseconds()
            var seen = 0
            var found = 0
            var batch: [Candidate] = []
            func classify() {
                guard !batch.isEmpty, listing.lookupError == nil else { return batch.removeAll() }
                let latest: [[UInt8]: KnownFile]
                do {
                    latest = try manifest.knownFiles(client: client, source: sourceName, paths: batch.map(\.path.bytes))
                } catch {
                    listing.lookupError = error
                    return batch.removeAll()
                }
                found += latest.count
                for c in batch {
                    let k = latest[c.path.bytes]
                    if let k, k.lastSize == c.size, c.etag.map({ $0 == k.lastETag }) ?? (k.lastMtimeNs == c.mtimeNs) {
                        listing.unchangedCount += 1
                        if keepsUnchanged { listing.unchanged.append((c, k)) }
                        continue
                    }
                    let age = nowNanoseconds() - c.mtimeNs
                    if age < minAge {
                        listing.counts.skipped += 1
                        listing.files.append(FileReport(source: sourceName, path: c.path.display, status: .skipped,
                                                        error: "\(Self.notStableYet): modified \(age / 1_000_000) ms ago, min_age is \(minAge / 1_000_000) ms",
                                                        rawPath: c.path, problem: .notStableYet))
                        continue
                    }
                    if let k { known.add(c.path.bytes, k) }
                    queue.push(c)
                }
                batch.removeAll(keepingCapacity: true)
            }
            do {
                try pass.list(issue: { issue in
                    listing.add(issue: issue, source: sourceName)
                }, candidate: { c in
                    seen += 1
                    batch.append(c)
                    if batch.count >= Self.lookupBatch { classify() }
                })
            } catch {
                // What was listed before the listing broke off is still ingested.
                classify()
                throw error
            }
            classify()
            if let e = listing.lookupError { throw e }
            logger.debug("Source listed", metadata: [
                "source": "\(sourceName)", "files": "\(seen)", "known": "\(found)",
                "list.ms": "\((nowNanoseconds() - start) / 1_000_000)",
            ])
        }

        // A pipeline: copy batch k+1 while batch k is fsync'd, published and committed on
        // other threads. Each path appears once per pass, so every batch works from the
        // manifest as it was at the start of the pass, and batches never touch each other's
        // paths: only their SQLite transactions are ordered (by the manifest's one writer).
        let results = ResultList()
        var jobs: [BackgroundJob] = []
        var failure: (any Error)?
        while failure == nil, stopRequested?() != true, let chunk = queue.take(batchSize) {
            let written = copy(chunk, client: client, source: source.name, pass: pass, known: known)
            let slot = results.reserve()
            let at = Timestamp.now()
            // Version numbers follow the manifest as it was at the start of the pass.
            let targets: [(version: Int, lakePath: String)?] = written.enumerated().map { i, result in
                guard case .staged = result else { return nil }
                let version = (known[chunk[i].path.bytes]?.version ?? 0) + 1
                return (version, LakeNames.rawPath(client: client, source: source.name, path: chunk[i].path, version: version))
            }
            var settle: [Int: @Sendable (Int64?) -> Void] = [:]
            if let early {
                for (i, result) in written.enumerated() {
                    guard case .staged(let sealed) = result, let target = targets[i] else { continue }
                    settle[i] = early.staged(StagedVersion(client: client, source: source.name, path: chunk[i].path, version: target.version,
                                                           sha256: sealed.sha256, lakePath: target.lakePath, ingestedAt: at, stagedPath: sealed.path))
                }
            }
            jobs.append(BackgroundJob.pooled { [self, settle] in
                var committed: [Int: Int64] = [:]
                defer { for (i, done) in settle { done(committed[i]) } }
                let staged = syncAll(written)
                let batch = try commitBatch(client: client, source: source, pass: pass, chunk: chunk, staged: staged, targets: targets,
                                            at: at, runID: runID, known: known)
                committed = batch.versionIDs
                results.set(slot, batch)
            })
            // Bound the work in flight behind the copier.
            if jobs.count >= 3 {
                do { try jobs.removeFirst().wait() } catch { failure = error }
            }
        }
        queue.close()
        for job in jobs {
            do { try job.wait() } catch { failure = failure ?? error }
        }
        do { try lister.wait() } catch { failure = failure ?? error }

        listing.counts.unchanged = listing.unchangedCount
        report.files += listing.files
        for result in results.all {
            report.counts += result.counts
            report.files += result.files
            report.afterIngestFailures += result.afterIngestFailures
        }
        report.counts += listing.counts
        if listing.counts != RunCounts() { _ = try manifest.commit([], runID: runID, counts: listing.counts, fence: fence) }
        if let failure { throw failure }
        if source.afterIngest != .keep {
            // Already committed in an earlier pass whose after-ingest step did not run.
            for (c, k) in listing.unchanged {
                guard let why = afterIngest(source: source, pass: pass, candidate: c, client: client) else { continue }
                report.afterIngestFailures += 1
                report.files.append(FileReport(source: source.name, path: c.path.display, version: k.version, sha256: k.sha256,
                                               size: c.size, lakePath: k.lakePath, status: .unchanged, error: why, rawPath: c.path))
            }
        }
    }

    /// Copies and hashes a chunk of candidates into temp files in parallel, starting each
    /// file's writeback as soon as it is written.
    private func copy(_ chunk: [Candidate], client: String, source: String, pass: any SourcePass, known: KnownIndex) -> [Staged] {
        let t0 = nowNanoseconds()
        let results = SlotArray<Staged>(count: chunk.count)
        let lake = self.lake
        let hooks = self.hooks
        let latestSHA = chunk.map { known[$0.path.bytes]?.sha256 }
        let writeback = syncMethod == .fsync
        let folders = chunk.map { LakeNames.folder(client: client, source: source, path: $0.path) }
        var unprepared: String?
        do {
            try lake.prepare(folders: Set(folders))
        } catch {
            unprepared = "cannot prepare the lake folder: \(error)"
        }
        if let unprepared { return chunk.map { _ in .failed(unprepared) } }
        let stopRequested = self.stopRequested
        let abortRequested = self.abortRequested
        let overlong = chunk.map { LakeNames.overlongName($0.path) }
        parallelFor(count: chunk.count, threads: workers, setup: { IOBuffer(size: Self.copyBufferSize) }) { i, buffer in
            // Refused before a byte is copied: the lake could not hold its name.
            if let why = overlong[i] { return results.set(i, .failed(why)) }
            results.set(i, Self.stageOne(chunk[i], into: folders[i], latestSHA: latestSHA[i], pass: pass, lake: lake, buffer: buffer, hooks: hooks,
                                         writeback: writeback, stopRequested: stopRequested, abortRequested: abortRequested))
        }
        logger.debug("Batch copied", metadata: ["batch.files": "\(chunk.count)", "copy.ms": "\((nowNanoseconds() - t0) / 1_000_000)"])
        return results.values.map { $0! }
    }

    /// Makes every temp file of a batch durable once all of them are written: one `syncfs`
    /// of the lake, or one `fsync` per file, so that one journal commit covers many files.
    private func syncAll(_ written: [Staged]) -> [Staged] {
        let t0 = nowNanoseconds()
        let synced = SlotArray<Staged>(count: written.count)
        var failure: String?
        if syncMethod == .syncfs {
            do {
                try lake.syncFileSystem()
            } catch {
                failure = "syncing the lake failed: \(error)"
            }
        }
        let batchError = failure
        let useFsync = syncMethod == .fsync
        parallelFor(count: written.count, threads: useFsync ? workers : 1, setup: {}) { i, _ in
            guard case .staged(let file) = written[i] else {
                synced.set(i, written[i])
                return
            }
            if let batchError {
                file.discard()
                synced.set(i, .failed(batchError))
                return
            }
            do {
                if useFsync { try file.syncAndClose() } else { try file.close() }
                synced.set(i, written[i])
            } catch {
                synced.set(i, .failed("syncing the staged copy failed: \(error)"))
            }
        }
        logger.debug("Batch synced", metadata: ["batch.files": "\(written.count)", "sync.ms": "\((nowNanoseconds() - t0) / 1_000_000)", "sync.method": "\(syncMethod.rawValue)"])
        return synced.values.map { $0! }
    }

    private static func stageOne(_ c: Candidate, into folder: String, latestSHA: String?, pass: any SourcePass, lake: Lake, buffer: IOBuffer, hooks: IngestHooks,
                                 writeback: Bool, stopRequested: (@Sendable () -> Bool)?, abortRequested: (@Sendable () -> Bool)?) -> Staged {
        if stopRequested?() == true { return .skipped("not copied: the agent is shutting down") }
        let stream: any ByteStream
        do {
            stream = try pass.open(c)
        } catch {
            return error.vanished ? .skipped(error.message, .vanished) : .failed(error.message)
        }
        defer { stream.close() }
        var file: StagedFile
        do {
            file = try lake.stage(inFolder: folder)
        } catch {
            return .failed("cannot create a staging file in the lake: \(error)")
        }
        var background: BackgroundSHA256?
        if let ranged = stream as? any RangeFetching, let fetch = ranged.startParallelFetch(into: file.descriptor, stagingPath: file.path) {
            if let failure = absorbParallel(fetch, into: &file, candidate: c, buffer: buffer, hooks: hooks) {
                file.discard()
                return .failed(failure)
            }
        } else {
            let hashedByStream = stream is any SelfHashingStream
            // A big file is hashed on a second thread, a block behind: block k is hashed there
            // while this thread writes it and reads block k + 1 into the other buffer.
            background = !hashedByStream && c.size >= Self.backgroundHashSize ? BackgroundSHA256() : nil
            let second = background.map { _ in IOBuffer(size: buffer.raw.count) }
            // A big file fsync'd on its own (an upload) is made durable a piece at a time
            // while it is copied (see BackgroundDataSync).
            var dataSync: BackgroundDataSync?
            // Before the file is closed: no block left being hashed, no sync left running.
            func quiesce() {
                background?.wait()
                dataSync?.stop()
            }
            var current = buffer
            var first = true
            var flushed: Int64 = 0
            while true {
                let n: Int
                do {
                    n = try stream.read(into: current.raw)
                } catch {
                    quiesce()
                    file.discard()
                    return .failed(error.message)
                }
                if n == 0 { break }
                if abortRequested?() == true {
                    quiesce()
                    file.discard()
                    return .skipped("copy abandoned: the agent is shutting down")
                }
                do {
                    let bytes = UnsafeRawBufferPointer(rebasing: current.raw[0..<n])
                    if let background, let second {
                        // The block before this one is hashed: its buffer may be read into next.
                        background.wait()
                        background.start(bytes)
                        try file.writeHashedByCaller(bytes)
                        current = current === buffer ? second : buffer
                    } else if hashedByStream {
                        try file.writeHashedByCaller(bytes)
                    } else {
                        try file.write(bytes)
                    }
                } catch {
                    quiesce()
                    file.discard()
                    return .failed("writing to the lake failed: \(error)")
                }
                if file.size - flushed >= Self.writebackStep {
                    // A big file's writeback starts while it is still being copied, so the
                    // batch's sync has little left to wait for.
                    file.startWriteback(offset: flushed, length: file.size - flushed)
                    flushed = file.size
                    if writeback && file.size >= Self.dataSyncStep {
                        if dataSync == nil { dataSync = BackgroundDataSync(fd: file.descriptor, step: Self.dataSyncStep) }
                        dataSync?.wrote(upTo: file.size)
                    }
                }
                if first, let hook = hooks.afterFirstChunk {
                    first = false
                    hook(c)
                }
            }
            quiesce()
            if let failure = dataSync?.failure(path: file.path) {
                file.discard()
                return .failed("writing to the lake failed: \(failure)")
            }
        }
        let size = file.size
        if let why = stream.changedWhileReading(bytesRead: size) {
            file.discard()
            return .skipped(why)
        }
        let selfHashed = (stream as? any SelfHashingStream)?.sha256OfBytesRead ?? background?.finish()
        let digest = selfHashed ?? file.currentDigest
        if let expected = c.expectedSHA256, digest != expected {
            file.discard()
            return .failed("\(checksumMismatch): the content's SHA-256 is \(digest), the sender said \(expected); nothing was kept", .checksumMismatch)
        }
        if let latestSHA, digest == latestSHA {
            file.discard()
            return .sameAsLatest(size: size)
        }
        if let selfHashed { return .staged(file.seal(startWriteback: writeback, sha256: selfHashed)) }
        return .staged(file.seal(startWriteback: writeback))
    }

    /// How a file too fresh for `min_age` is reported (the daemon looks for it).
    public static let notStableYet = "not stable yet"
    /// How a copy whose SHA-256 is not the one its sender declared is reported.
    public static let checksumMismatch = "checksum mismatch"

    /// Files at least this big (by their listed size) are hashed on a thread of their own
    /// while they are copied.
    package static let backgroundHashSize: Int64 = 8 << 20

    /// A file fsync'd on its own (an upload) gets an `fdatasync` in the background each time
    /// this much more of it is written (`BackgroundDataSync`).
    package static let dataSyncStep: Int64 = 64 << 20

    /// How many bytes of a file being copied are written before their writeback is started.
    package static let writebackStep: Int64 = 16 << 20

    /// Follows a parallel fetch: hashes the file's contiguous prefix as the ranges land (one
    /// pass, on this thread, off the transfer threads) and starts writeback every 16 MiB so
    /// that the batch's sync has little left to do. Returns why it failed, if it did.
    private static func absorbParallel(_ fetch: any ParallelFetch, into file: inout StagedFile, candidate c: Candidate,
                                       buffer: IOBuffer, hooks: IngestHooks) -> String? {
        var hashed: Int64 = 0
        var flushed: Int64 = 0
        var first = true
        while true {
            let step: (prefix: Int64, done: Bool)
            do {
                step = try fetch.waitForPrefix(beyond: hashed)
            } catch {
                return error.message
            }
            do {
                try file.absorbWritten(upTo: step.prefix, buffer: buffer.raw)
            } catch {
                fetch.cancel()
                return "reading back the staged copy failed: \(error)"
            }
            hashed = step.prefix
            if hashed - flushed >= writebackStep || (step.done && hashed > flushed) {
                file.startWriteback(offset: flushed, length: hashed - flushed)
                flushed = hashed
            }
            if first, hashed > 0, let hook = hooks.afterFirstChunk {
                first = false
                hook(c)
            }
            if step.done { return nil }
        }
    }

    /// What one batch added to the pass.
    package struct BatchResult {
        package var counts: RunCounts
        package var files: [FileReport]
        package var afterIngestFailures: Int
        /// The id of each new version committed, by its index in the batch.
        package var versionIDs: [Int: Int64]

        package init(counts: RunCounts, files: [FileReport], afterIngestFailures: Int, versionIDs: [Int: Int64]) {
            self.counts = counts
            self.files = files
            self.afterIngestFailures = afterIngestFailures
            self.versionIDs = versionIDs
        }
    }

    /// Publishes a synced batch, fsyncs the folders, commits one transaction, then runs the
    /// after-ingest actions. If the commit fails, the files it published are taken back.
    private func commitBatch(client: String, source: any Source, pass: any SourcePass, chunk: [Candidate], staged: [Staged],
                             targets: [(version: Int, lakePath: String)?], at: String, runID: Int64,
                             known: KnownIndex) throws -> BatchResult {
        var entries: [ManifestEntry] = []
        var entryIndex: [Int] = []           // chunk index of each entry
        var published: [String] = []          // lake paths we created in this batch
        var folders = Set<String>()
        var counts = RunCounts()
        var reports: [Int: FileReport] = [:]
        var versions: [Int: (version: Int, lakePath: String, sha: String, size: Int64)] = [:]
        let publishStart = nowNanoseconds()

        // The renames run on a few threads (each is independent; the folder locks order them).
        let publishing = SlotArray<Result<Bool, any Error>>(count: staged.count)
        parallelFor(count: staged.count, threads: lake.bucket == nil ? publishThreads : uploadThreads, setup: {}) { [self] i, _ in
            guard case .staged(let sealed) = staged[i], let target = targets[i] else { return }
            publishing.set(i, Result { try publish(tmp: sealed.path, sha256: sealed.sha256, lakePath: target.lakePath) })
        }
        let outcomes = publishing.values

        for (i, result) in staged.enumerated() {
            let c = chunk[i]
            let base = FileReport(source: source.name, path: c.path.display, status: .failed, rawPath: c.path)
            switch result {
            case .skipped(let why, let problem):
                counts.skipped += 1
                reports[i] = with(base) { $0.status = .skipped; $0.error = why; $0.problem = problem }
            case .failed(let why, let problem):
                counts.failed += 1
                reports[i] = with(base) { $0.error = why; $0.problem = problem }
                logger.about(client: client, source: source.name).warning("File failed", metadata: ["path": "\(c.path.display)", "error": "\(why)"])
            case .sameAsLatest(let size):
                let k = known[c.path.bytes]!
                entries.append(.sighting(versionID: k.versionID, size: size, mtimeNs: c.mtimeNs, etag: c.etag))
                entryIndex.append(i)
                counts.unchanged += 1
                reports[i] = with(base) {
                    $0.status = .unchanged; $0.version = k.version; $0.sha256 = k.sha256; $0.size = size; $0.lakePath = k.lakePath
                }
            case .staged(let sealed):
                let (tmp, sha, size) = (sealed.path, sealed.sha256, sealed.size)
                let (version, lakePath) = targets[i]!
                do {
                    let created = try outcomes[i]!.get()
                    if created { published.append(lakePath) }
                    folders.insert(String(lakePath[..<lakePath.lastIndex(of: "/")!]))
                } catch {
                    unlink(tmp)
                    counts.failed += 1
                    reports[i] = with(base) { $0.error = "publishing into the lake failed: \(error)" }
                    continue
                }
                entries.append(.version(NewVersion(
                    client: client, source: source.name, path: c.path.display, pathBytes: c.path.bytes,
                    version: version, sha256: sha, size: size, mtimeNs: c.mtimeNs, lakePath: lakePath,
                    fileID: known[c.path.bytes].map(\.fileID).flatMap { $0 > 0 ? $0 : nil }, etag: c.etag)))
                entryIndex.append(i)
                versions[i] = (version, lakePath, sha, size)
                counts.new += 1
                counts.bytes += size
                reports[i] = with(base) {
                    $0.status = .new; $0.version = version; $0.sha256 = sha; $0.size = size; $0.lakePath = lakePath
                }
            }
        }

        let ids: [Int64]
        do {
            let t0 = nowNanoseconds()
            try lake.syncDirectories(folders)
            let t1 = nowNanoseconds()
            ids = try manifest.commit(entries, runID: runID, counts: counts, at: at, fence: fence)
            logger.debug("Batch committed", metadata: [
                "batch.files": "\(entries.count)", "dirsync.ms": "\((t1 - t0) / 1_000_000)", "commit.ms": "\((nowNanoseconds() - t1) / 1_000_000)",
                "publish.ms": "\((t0 - publishStart) / 1_000_000)",
            ])
        } catch {
            if let lost = (error as? ManifestError)?.leaseLost {
                // Another agent has the source now and may already have adopted (or moved
                // aside) what this batch published: leave the lake as it is.
                logger.about(client: client, source: source.name).error("Commit refused: the lease was lost", metadata: [
                    "files": "\(entries.count)", "token": "\(lost.fence.token)", "holder": "\(lost.holder?.owner ?? "none")",
                ])
                throw error
            }
            // Nothing points at what this batch published: take it back so no orphan is left.
            // Not under a lease: if the manifest could not be reached, the lease may have run
            // out meanwhile and another agent adopted those files; the next pass (ours or its)
            // adopts them instead.
            guard fence == nil else { throw error }
            for p in published { try? lake.remove(published: p) }
            try? lake.syncDirectories(folders)
            throw error
        }

        if logger.logLevel <= .trace {
            let logger = logger.about(client: client, source: source.name)
            for (n, i) in entryIndex.enumerated() {
                guard let v = versions[i] else { continue }
                logger.trace("Version committed", metadata: [
                    "path": "\(chunk[i].path.display)",
                    "version": "\(v.version)", "sha256": "\(v.sha)", "version_id": "\(ids[n])",
                ])
            }
        }
        var afterIngestFailures = 0
        if source.afterIngest != .keep {
            for i in entryIndex {
                guard let why = afterIngest(source: source, pass: pass, candidate: chunk[i], client: client) else { continue }
                afterIngestFailures += 1
                reports[i]?.error = why
            }
        }
        let files = chunk.indices.compactMap { reports[$0] }
        var versionIDs: [Int: Int64] = [:]
        for (n, i) in entryIndex.enumerated() where versions[i] != nil { versionIDs[i] = ids[n] }
        return BatchResult(counts: counts, files: files, afterIngestFailures: afterIngestFailures, versionIDs: versionIDs)
    }

    /// Publishes a staged file. Returns true when this call created the lake file, false when
    /// an identical file was already there (left by a run that died before its commit) and
    /// was adopted.
    private func publish(tmp: String, sha256: String, lakePath: String) throws -> Bool {
        for _ in 0..<2 {
            switch try lake.publish(stagedPath: tmp, to: lakePath, sha256: sha256) {
            case .published:
                return true
            case .exists:
                if let owner = try manifest.version(atLakePath: lakePath) {
                    throw SourceError("lake path \(lakePath) is already recorded for \(owner.path) v\(owner.version); the manifest and the lake disagree — run `sluice audit`")
                }
                let existing = try lake.sha256(ofPublished: lakePath)
                if existing.sha256 == sha256 {
                    unlink(tmp)
                    logger.notice("Adopted an unrecorded lake file left by an interrupted run", metadata: ["lake_path": "\(lakePath)"])
                    return false
                }
                let moved = try lake.quarantine(lakePath: lakePath)
                logger.warning("Moved an unrecorded lake file with other content out of the way", metadata: ["lake_path": "\(lakePath)", "quarantine_path": "\(moved)"])
            }
        }
        throw SourceError("lake path \(lakePath) stays taken")
    }

    /// Runs the source's after-ingest action on a committed file; returns why it failed, if it did.
    private func afterIngest(source: any Source, pass: any SourcePass, candidate: Candidate, client: String) -> String? {
        do {
            try pass.applyAfterIngest(source.afterIngest, to: candidate)
            return nil
        } catch {
            logger.about(client: client, source: source.name).warning("After-ingest action failed", metadata: [
                "path": "\(candidate.path.display)", "error": "\(error.message)",
            ])
            return error.message
        }
    }
}
