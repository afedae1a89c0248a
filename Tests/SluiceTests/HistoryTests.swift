import Foundation
@testable import SluiceManifest
import SluiceLake
import SluiceSupport
import SluiceTestSupport
import Synchronization
import Testing

/// The reads that must cost the same at ten million versions as at a hundred: the rollups
/// kept by each commit, keyset paging, the history of one path, and (on SQLite) a plan check
/// that none of them walks a whole table. bench/history.sh measures the same at scale.
@Suite(.serialized, .disabled(if: TestManifest.onPostgres, "runs on both servers in the first pass already"))
struct HistoryTests {
    /// How many rows of `ingest_day` and `source_total` differ from the versions counted anew
    /// (0 when they agree): SQL for SQLite and PostgreSQL alike.
    static let rollupMismatches = """
        SELECT (SELECT count(*) FROM (
                    SELECT client, source, day, versions, new_files, bytes FROM ingest_day
                    EXCEPT \(recount)) a)
             + (SELECT count(*) FROM (\(recount)
                    EXCEPT SELECT client, source, day, versions, new_files, bytes FROM ingest_day) b)
             + (SELECT count(*) FROM (
                    SELECT client, source, versions, new_files, bytes FROM source_total
                    EXCEPT SELECT client, source, sum(versions), sum(new_files), sum(bytes) FROM (\(recount)) d GROUP BY client, source) c)
             + (SELECT count(*) FROM (
                    SELECT client, source, sum(versions), sum(new_files), sum(bytes) FROM (\(recount)) d GROUP BY client, source
                    EXCEPT SELECT client, source, versions, new_files, bytes FROM source_total) e)
        """
    /// How many sources' counts of failed and held latest transforms differ from a recount.
    static let transformCountMismatches = """
        SELECT count(*) FROM source_total s WHERE s.failed_transforms <> (\(latestCount("failed"))) OR s.held_transforms <> (\(latestCount("held")))
        """
    static func latestCount(_ status: String) -> String {
        """
        SELECT count(*) FROM transform t JOIN version v ON v.id = t.version_id JOIN file f ON f.id = v.file_id
        WHERE f.client = s.client AND f.source = s.source AND t.status = '\(status)' AND t.parent_id IS NULL
          AND t.id = (SELECT max(id) FROM transform WHERE version_id = t.version_id AND parent_id IS NULL)
        """
    }
    static let recount = """
        SELECT f.client AS client, f.source AS source, substr(v.ingested_at, 1, 10) AS day, count(*) AS versions,
               sum(CASE WHEN v.version = 1 THEN 1 ELSE 0 END) AS new_files, sum(v.size) AS bytes
        FROM version v JOIN file f ON f.id = v.file_id GROUP BY f.client, f.source, substr(v.ingested_at, 1, 10)
        """

    static func version(_ path: String, _ version: Int, client: String = "acme", source: String = "drop", size: Int64 = 10,
                        fileID: Int64? = nil) -> ManifestEntry {
        .version(NewVersion(client: client, source: source, path: path, pathBytes: Array(path.utf8), version: version, sha256: "s\(path)\(version)",
                            size: size, mtimeNs: 1_700_000_000_000_000_000, lakePath: "raw/\(client)/\(source)/\(path).v\(version)", fileID: fileID))
    }

    static func value(_ m: Manifest, _ sql: String) throws -> Int {
        try m.read("test") { db in try db.value(sql) ?? -1 }
    }

    @Test(arguments: ManifestBackend.allCases) func everyCommitKeepsTheRollupsAndNamesTheClient(_ backend: ManifestBackend) throws {
        let f = try ManifestFixture(backend)
        defer { withExtendedLifetime(f) {} }
        let m = f.manifest
        let run = try m.startRun(client: "acme", source: nil, trigger: "pull")
        _ = try m.commit([Self.version("a.csv", 1, size: 5), Self.version("b.csv", 1, size: 7), Self.version("c.csv", 1, source: "sftp", size: 11),
                          Self.version("x.csv", 1, client: "initech", size: 100)],
                         runID: run, counts: RunCounts(), at: "2026-03-01T23:59:59.000000Z")
        let known = try m.knownFiles(client: "acme", source: "drop")
        _ = try m.commit([Self.version("a.csv", 2, size: 6, fileID: known[Array("a.csv".utf8)]!.fileID), Self.version("d.csv", 1, size: 1)],
                         runID: run, counts: RunCounts(), at: "2026-03-02T00:00:00.000000Z")
        _ = try m.commit([], runID: run, counts: RunCounts(), at: "2026-03-02T01:00:00.000000Z")
        #expect(try Self.value(m, Self.rollupMismatches) == 0)
        #expect(try Self.value(m, "SELECT count(*) FROM version WHERE client IS NULL") == 0)
        #expect(try Self.value(m, "SELECT count(*) FROM version WHERE client = 'initech'") == 1)

        #expect(try m.dailyIngest(since: "2026-03-01") == [
            .init(client: "acme", day: "2026-03-01", files: 3, bytes: 23), .init(client: "acme", day: "2026-03-02", files: 2, bytes: 7),
            .init(client: "initech", day: "2026-03-01", files: 1, bytes: 100),
        ])
        #expect(try m.dailyIngest(since: "2026-03-02T00:00:00Z").map(\.files) == [2])
        let today = try m.ingestedSince("2026-03-02", client: "acme")
        #expect(today.count == 1 && today["drop"]?.files == 2 && today["drop"]?.bytes == 7)
        #expect(try m.versionCount(client: "acme") == 5)
        let summaries = try m.sourceSummaries([("acme", "drop"), ("acme", "sftp"), ("initech", "drop"), ("hooli", "drop")])
        #expect(summaries.map(\.files) == [3, 1, 1, 0])
        #expect(summaries.map(\.versions) == [4, 1, 1, 0])
        #expect(summaries.map(\.bytes) == [19, 11, 100, 0])
        // The client's pull (source NULL) is each source's last run; hooli has had none.
        #expect(summaries.map(\.lastRunTrigger) == ["pull", "pull", nil, nil])
    }

    @Test(arguments: ManifestBackend.allCases) func sourceSummariesFindTheLastRunSuccessErrorAndFailures(_ backend: ManifestBackend) throws {
        let f = try ManifestFixture(backend)
        defer { withExtendedLifetime(f) {} }
        let m = f.manifest
        let ok = try m.startRun(client: "acme", source: "drop", trigger: "poll")
        try m.finishRun(id: ok, status: .ok, error: nil)
        let failed = try m.startRun(client: "acme", source: "drop", trigger: "poll")
        try m.finishRun(id: failed, status: .failed, error: "the folder is gone")
        let other = try m.startRun(client: "acme", source: "sftp", trigger: "poll")
        try m.finishRun(id: other, status: .ok, error: nil)
        let ids = try m.commit([Self.version("a.csv", 1), Self.version("b.csv", 1), Self.version("c.csv", 1)], runID: ok, counts: RunCounts())
        func record(_ id: Int64, _ status: String) throws {
            try m.recordTransform(versionID: id, .init(dataset: "d", mappingSHA256: "m", schemaSHA256: nil, status: status, rowsWritten: 0, rowsRejected: 0,
                                                       outputPath: nil, rejectsPath: nil, error: status == "ok" ? nil : "x"))
        }
        try record(ids[0], "failed")
        try record(ids[1], "failed")
        try record(ids[1], "ok")  // re-run ok: no longer failed
        try record(ids[2], "held")
        var s = try m.sourceSummary(client: "acme", source: "drop")
        #expect(s.lastRunStatus == "failed" && s.lastError == "the folder is gone" && s.lastSuccess != nil && s.errorIsCurrent)
        #expect(s.failedTransforms == 1)
        #expect(try Self.value(m, Self.transformCountMismatches) == 0)
        try record(ids[0], "held")  // failed, then held: counted once, as held
        try record(ids[2], "failed")  // held, then failed
        #expect(try Self.value(m, Self.transformCountMismatches) == 0)
        #expect(try m.sourceSummary(client: "acme", source: "drop").failedTransforms == 1)
        #expect(try m.heldCounts() == ["acme": 1])
        #expect(try m.transformCandidates(client: "acme", selection: .held).map(\.versionID) == [ids[0]])
        #expect(try m.transformCandidates(client: "acme", selection: .failed).map(\.versionID) == [ids[2]])
        #expect(try m.transformCandidates(client: "initech", selection: .failed).isEmpty)
        try record(ids[0], "ok")
        try record(ids[2], "ok")
        #expect(try Self.value(m, Self.transformCountMismatches) == 0)
        #expect(try m.heldCounts().isEmpty)
        let later = try m.startRun(client: "acme", source: nil, trigger: "pull")
        try m.finishRun(id: later, status: .ok, error: nil)
        s = try m.sourceSummary(client: "acme", source: "drop")
        #expect(s.lastRunTrigger == "pull" && s.lastRunStatus == "ok" && !s.errorIsCurrent)
        #expect(try m.sourceSummary(client: "acme", source: "sftp").lastRunTrigger == "pull")
    }

    @Test(arguments: ManifestBackend.allCases) func keysetPagesShowEveryVersionOnceInOrder(_ backend: ManifestBackend) throws {
        let f = try ManifestFixture(backend)
        defer { withExtendedLifetime(f) {} }
        let m = f.manifest
        let run = try m.startRun(client: "acme", source: "drop", trigger: "pull")
        // Three commits: the versions of each share one ingested_at (ties broken by id).
        for (batch, at) in ["2026-01-01T00:00:00.000000Z", "2026-01-02T00:00:00.000000Z", "2026-01-02T00:00:00.000001Z"].enumerated() {
            _ = try m.commit((0..<9).map { Self.version("f\(batch)-\($0).csv", 1) } + [Self.version("x\(batch).csv", 1, client: "initech")],
                             runID: run, counts: RunCounts(), at: at)
        }
        let all = try m.recentVersions(client: "acme", limit: 100)
        #expect(all.count == 27)
        #expect(all.map(\.ingestedAt) == all.map(\.ingestedAt).sorted(by: >))
        #expect(zip(all, all.dropFirst()).allSatisfy { $0.ingestedAt > $1.ingestedAt || $0.id > $1.id })
        var pages: [[Manifest.VersionRow]] = []
        var cursor: Manifest.VersionCursor?
        repeat {
            let page = try m.recentVersions(client: "acme", limit: 4, after: cursor)
            if page.isEmpty { break }
            pages.append(page)
            cursor = Manifest.VersionCursor(ingestedAt: page.last!.ingestedAt, versionID: page.last!.id)
        } while true
        #expect(pages.flatMap { $0 }.map(\.id) == all.map(\.id))
        #expect(pages.count == 7)
        // Back from the last page, each page before it again.
        for i in stride(from: pages.count - 1, to: 0, by: -1) {
            let first = pages[i][0]
            let newer = try m.recentVersions(client: "acme", limit: 4, before: Manifest.VersionCursor(ingestedAt: first.ingestedAt, versionID: first.id))
            #expect(newer.map(\.id) == pages[i - 1].map(\.id))
        }
        // The cursor as the console's links carry it.
        let c = Manifest.VersionCursor(ingestedAt: "2026-01-02T00:00:00.000001Z", versionID: 42)
        #expect(Manifest.VersionCursor(text: c.text) == c)
        for bad in ["", "_", "x_1", "2026-01-02T00:00:00Z_", "2026-01-02T00:00:00Z_-1", "2026-01-02T00:00:00Z_0", "2026-01-02\n00:00:00_5"] {
            #expect(Manifest.VersionCursor(text: bad) == nil, "\(bad)")
        }
        // The transforms of the newest versions, newest first.
        for row in all.prefix(3) {
            try m.recordTransform(versionID: row.id, .init(dataset: "d", mappingSHA256: "m", schemaSHA256: nil, status: "ok", rowsWritten: 1, rowsRejected: 0,
                                                           outputPath: nil, rejectsPath: nil, error: nil))
        }
        #expect(try m.recentTransforms(client: "acme", limit: 2).map(\.versionID) == [all[1].id, all[0].id])
        #expect(try m.recentTransforms(client: "initech", limit: 10).isEmpty)
    }

    @Test(arguments: ManifestBackend.allCases) func theHistoryOfAPathIsThatFileOrEverythingBelowThatFolder(_ backend: ManifestBackend) throws {
        let f = try ManifestFixture(backend)
        defer { withExtendedLifetime(f) {} }
        let m = f.manifest
        let run = try m.startRun(client: "acme", source: "drop", trigger: "pull")
        let paths = ["a/b.csv", "a/b.csv-x", "a/b/c.csv", "a/b/d/e.csv", "a/bz.csv", "a/b0.csv", "ab.csv", "é/x.csv", "éé.csv", "a/b"]
        _ = try m.commit(paths.map { Self.version($0, 1) } + [Self.version("a/b/c.csv", 1, source: "sftp"), Self.version("a/b/c.csv", 1, client: "initech")],
                         runID: run, counts: RunCounts())
        func history(_ path: String?) throws -> [String] { try m.history(client: "acme", path: path).map { "\($0.source):\($0.path)" }.sorted() }
        #expect(try history("a/b.csv") == ["drop:a/b.csv"])
        #expect(try history("a/b") == ["drop:a/b", "drop:a/b/c.csv", "drop:a/b/d/e.csv", "sftp:a/b/c.csv"])
        #expect(try history("a/b/") == ["drop:a/b/c.csv", "drop:a/b/d/e.csv", "sftp:a/b/c.csv"])
        #expect(try history("a/b/c.csv") == ["drop:a/b/c.csv", "sftp:a/b/c.csv"])
        #expect(try history("é") == ["drop:é/x.csv"])
        #expect(try history("a").count == 8)
        #expect(try history(nil).count == 11)
        #expect(try history("nothing").isEmpty)
        let newestFirst = try m.history(client: "acme", path: "a/b")
        #expect(zip(newestFirst, newestFirst.dropFirst()).allSatisfy { $0.ingested_at >= $1.ingested_at })
        // A client's whole history, page by page (as `sluice history CLIENT` prints it): the
        // same versions in the same order, whatever the page size, and no cursor after the last.
        let whole = try m.history(client: "acme", path: nil)
        for pageSize in [1, 4, 11, 100] {
            var paged: [VersionRecord] = []
            var next: Manifest.VersionCursor?
            var pages = 0
            repeat {
                let page = try m.historyPage(client: "acme", path: nil, after: next, pageSize: pageSize)
                #expect(page.versions.count <= pageSize)
                paged += page.versions
                next = page.next
                pages += 1
            } while next != nil && pages < 100
            #expect(paged == whole, "page size \(pageSize)")
            #expect(pages == 11 / pageSize + 1, "page size \(pageSize)")
        }
    }

    /// The audit merges the lake's walk with the manifest's lake paths: both must come in byte
    /// order, folders included ("a/x" after "a-b" and before "a0"), whatever the names.
    @Test func theLakeIsWalkedInByteOrderOfItsPaths() throws {
        let dir = TempDir("walk")
        let files = ["raw/a/x", "raw/a-b", "raw/a0", "raw/a/b/c", "raw/a/b-", "raw/ab", "raw/é", "raw/z/é/1", "raw/Z", "raw/a/b/.%tmp-1-2", "raw/a.b/y"]
        for f in files { dir.write(f, "1") }
        let walked = LakeWalk(root: dir.path, relative: "raw").map(\.path)
        #expect(walked == files.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }, "\(walked)")
        #expect(Array(LakeWalk(root: dir.path, relative: "missing")).isEmpty)
        var peeking = LakeWalk(root: dir.path, relative: "raw/a")
        #expect(peeking.peek() == peeking.peek() && peeking.next()?.path == "raw/a/b-" && peeking.next()?.path == "raw/a/b/.%tmp-1-2")
        #expect("a".bytePrecedes("a/") && "a-".bytePrecedes("a/") && !"b".bytePrecedes("a") && !"a".bytePrecedes("a") && "Z".bytePrecedes("a"))
        // Sizes, when asked for: a regular file's, and none for anything else.
        dir.write("raw/z/big", String(repeating: "x", count: 5000))
        symlink("/etc/hostname", dir.sub("raw/z/link"))
        let sized = Dictionary(uniqueKeysWithValues: LakeWalk(root: dir.path, relative: "raw/z", sizes: true).map { ($0.path, $0.size) })
        let expected: [String: Int64?] = ["raw/z/big": 5000, "raw/z/link": nil, "raw/z/é/1": 1]
        #expect(sized == expected)
        #expect(LakeWalk(root: dir.path, relative: "raw/z").allSatisfy { $0.size == nil })
        // Byte equality, not Swift's canonical equivalence: a name in NFC is not one in NFD.
        #expect("\u{E9}" == "e\u{301}" && !"\u{E9}".bytesEqual("e\u{301}") && "\u{E9}".bytesEqual("\u{E9}") && "e\u{301}".bytePrecedes("\u{E9}"))
    }

    /// Each read of the history, on SQLite, with its plan: none walks the whole version, file,
    /// transform, run or sighting table (a "SCAN" of one, other than along the partial indexes
    /// that hold only the few failed, held or running rows). Any query added later is held to
    /// the same rule by adding it here.
    @Test func noReadOfTheHistoryWalksAWholeTable() throws {
        let f = try ManifestFixture(.sqlite)
        defer { withExtendedLifetime(f) {} }
        let m = f.manifest
        let run = try m.startRun(client: "acme", source: "drop", trigger: "pull")
        let ids = try m.commit((0..<20).map { Self.version("d/f\($0).csv", 1) }, runID: run, counts: RunCounts())
        try m.recordTransform(versionID: ids[0], .init(dataset: "d", mappingSHA256: "m", schemaSHA256: nil, status: "failed", rowsWritten: 0, rowsRejected: 0,
                                                       outputPath: nil, rejectsPath: nil, error: "x"))
        try m.recordTransform(versionID: ids[1], .init(dataset: "d", mappingSHA256: "m", schemaSHA256: nil, status: "held", rowsWritten: 0, rowsRejected: 0,
                                                       outputPath: nil, rejectsPath: nil, error: "x"))
        let plans = Mutex<[(sql: String, plan: [String])]>([])
        let path = f.dir.sub("manifest.sqlite")
        SQLiteStore.planRecorder.withLock { $0 = { file, sql, plan in if file == path { plans.withLock { $0.append((sql, plan)) } } } }
        defer { SQLiteStore.planRecorder.withLock { $0 = nil } }
        let row = try m.recentVersions(client: "acme", limit: 5)[4]
        let cursor = Manifest.VersionCursor(ingestedAt: row.ingestedAt, versionID: row.id)
        _ = try m.dailyIngest(since: "2026-01-01")
        _ = try m.ingestedSince("2026-01-01", client: "acme")
        _ = try m.versionCount(client: "acme")
        _ = try m.recentVersions(client: "acme", limit: 5, after: cursor)
        _ = try m.recentVersions(client: "acme", limit: 5, before: cursor)
        _ = try m.recentTransforms(client: "acme", limit: 200)
        _ = try m.heldTransforms(client: "acme", limit: 100)
        _ = try m.heldCounts()
        _ = try m.sourceSummaries([("acme", "drop"), ("acme", "sftp"), ("initech", "drop")])
        _ = try m.history(client: "acme", path: "d/f1.csv")
        _ = try m.history(client: "acme", path: "d")
        _ = try m.arrivals(client: "acme", since: "2026-01-01")
        _ = try m.knownFiles(client: "acme", source: "drop", paths: [Array("d/f1.csv".utf8), Array("d/f2.csv".utf8)])
        try m.eachLakeEntryPage(under: "raw/acme/", pageSize: 7) { _ in }
        try m.eachLakeEntryPage(under: "raw/", pageSize: 7) { _ in }
        try m.eachLakeEntryPage(under: "raw/", pageSize: 7, hashes: false) { _ in }
        _ = try m.version(atLakePath: "raw/acme/drop/d/f1.csv.v1")
        _ = try m.transformCandidates(client: "acme", selection: .pendingAfter(ids[10]))
        _ = try m.transformCandidates(client: "acme", selection: .failed)
        _ = try m.transformCandidates(client: "acme", selection: .held)
        _ = try m.transformCandidates(client: "acme", selection: .rerunVersion(ids[1]))
        _ = try m.commit([Self.version("d/f1.csv", 2), Self.version("new.csv", 1)], runID: run, counts: RunCounts())
        _ = try m.versionRow(id: ids[3])
        let bigTables: Set = ["version", "file", "transform", "run", "sighting", "v", "f", "t", "s"]
        let partial: Set = ["transform_failed", "transform_held", "run_running"]
        var walks: [String] = []
        for (sql, plan) in plans.withLock({ $0 }) {
            for line in plan where line.hasPrefix("SCAN ") {
                let words = line.split(separator: " ").map(String.init)
                guard bigTables.contains(words[1]) else { continue }
                if let i = words.firstIndex(of: "INDEX"), i + 1 < words.count, partial.contains(words[i + 1]) { continue }
                walks.append("\(line)  ←  \(sql.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " "))")
            }
        }
        #expect(walks.isEmpty, "\(walks.joined(separator: "\n"))")
        #expect(plans.withLock { $0.count } > 20)
    }

    /// PostgreSQL: a new client's first files, many of them in one burst, are too few for
    /// autovacuum (a tenth of the table) to refresh the planner's statistics. Without them the
    /// planner expects one row of the client and walks all its files along `file_path_c` for
    /// each batch of paths a pass looks up. The process that commits them refreshes the
    /// statistics itself, so the lookup goes along the file key. Migration v17's other two
    /// parts are checked here too: autovacuum's threshold on `file` and `version`, and the
    /// audit's pages read from `version_lake_path_c` alone.
    @Test func aBurstOfNewFilesRefreshesThePlannersStatistics() throws {
        let f = try ManifestFixture(.postgres)
        defer { withExtendedLifetime(f) {} }
        let m = f.manifest
        // Autovacuum refreshes them after 10,000 changed rows, whichever agents wrote them.
        let options = try m.read("reading the tables' options") { db in
            try db.rows("SELECT relname, array_to_string(reloptions, ',') FROM pg_class WHERE relname IN ('file', 'version') ORDER BY relname")
                .map { "\($0[0] as String): \($0[1] as String)" }
        }
        #expect(options == ["file: autovacuum_analyze_scale_factor=0,autovacuum_analyze_threshold=10000",
                            "version: autovacuum_analyze_scale_factor=0,autovacuum_analyze_threshold=10000"])
        // Here autovacuum is kept out: it could refresh them midway, by its own clock.
        try m.write("seeding") { db in
            _ = try db.execute("ALTER TABLE file SET (autovacuum_enabled = off)")
            _ = try db.execute("ALTER TABLE version SET (autovacuum_enabled = off)")
            _ = try db.execute("""
                INSERT INTO file (client, source, path, path_bytes, first_seen_at)
                SELECT 'c' || (g % 10), 'drop', 'p' || g, convert_to('p' || g, 'UTF8'), '2026-01-01T00:00:00Z' FROM generate_series(1, 200000) g
                """)
        }
        try m.store.refreshStatistics(["file", "version"])
        func lookupPlan() throws -> String {
            let paths: [(any SQLBindable)?] = (0..<500).map { SQLValue.blob(Array("d/f\($0).csv".utf8)) }
            return try m.read("explaining") { db in
                try db.rows("EXPLAIN " + Manifest.knownFilesSQL(paths: 500), ["big", "drop"] + SQLArguments(paths)).map { $0[0] as String }
            }.joined(separator: "\n")
        }
        let run = try m.startRun(client: "big", source: "drop", trigger: "pull")
        let batch = 500
        for start in stride(from: 0, to: Manifest.firstStatisticsRefresh - batch, by: batch) {
            _ = try m.commit((start..<start + batch).map { Self.version("d/f\($0).csv", 1, client: "big") }, runID: run, counts: RunCounts())
        }
        // What the test guards against: the statistics know no "big" yet.
        let before = try lookupPlan()
        #expect(before.contains("file_path_c"), "\(before)")
        let start = Manifest.firstStatisticsRefresh - batch
        _ = try m.commit((start..<start + batch).map { Self.version("d/f\($0).csv", 1, client: "big") }, runID: run, counts: RunCounts())
        let plan = try lookupPlan()
        #expect(plan.contains("file_client_source_path_bytes_key") && !plan.contains("file_path_c"), "\(plan)")
        // An audit's page of lake paths and sizes can come from their index alone (an index-only
        // scan, which the planner chooses once vacuum has marked the table's pages all
        // visible; here it is made to choose between index scans).
        let audit = try m.read("explaining") { db in
            _ = try db.execute("SET LOCAL enable_bitmapscan = off")
            _ = try db.execute("SET LOCAL enable_seqscan = off")
            return try db.rows("EXPLAIN " + Manifest.lakeEntriesSQL(.postgres, first: false, hashes: false), ["raw/big/drop/d/f1.csv", "raw/big/drop/d/f2", 8192])
                .map { $0[0] as String }
        }.joined(separator: "\n")
        #expect(audit.contains("Index Only Scan using version_lake_path_c"), "\(audit)")
    }
}
