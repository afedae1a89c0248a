import Foundation
import SluiceAgent
import SluiceLake
import SluiceManifest
import SluiceTransform
import SluiceTestSupport
import Testing
import SluiceSupport
import SluiceIngest
import SluiceConfig
import SluiceSources
import SluiceFormats
#if canImport(Glibc)
import Glibc
#endif

/// Defects found onboarding clients as a new user would (issue 17): each test failed before
/// its fix.
@Suite struct OnboardingTests {
    static let ordersMapping = """
        [datasets.orders]
        match = ["**/*.csv"]
        format = "csv"
        max_reject_ratio = 0.9
        fields = [ { name = "id", source = "id", type = "int64", required = true },
                   { name = "amount", source = "amount", type = "decimal(10,2)" } ]
        """

    /// A drop folder client `acme` with the orders mapping.
    static func dropClient(_ label: String, sourceExtra: String = "min_age = \"0s\"", mapping: String? = ordersMapping) -> TempDir {
        let dir = TempDir(label)
        dir.config(sourceExtra: sourceExtra)
        try? FileManager.default.createDirectory(atPath: dir.sub("drop"), withIntermediateDirectories: true)
        if let mapping { dir.write("mappings/acme.toml", mapping) }
        return dir
    }

    static func pull(_ dir: TempDir) throws -> (Shell.Result, [String: [String: Any]], [String: Any]) {
        let (r, report) = try SFTPTests.pull(dir)
        return (r, SFTPTests.files(report), report)
    }

    // MARK: 2. Client-controlled text

    /// `pull` and `history` print one line per file, whatever the file is called.
    @Test func namesWithControlCharactersStayOnOneLineOfTextOutput() throws {
        let dir = Self.dropClient("names", mapping: nil)
        dir.write("drop/x\n2026-12-06T01:40:00Z error forged\u{1B}[2J.csv", "id\n1\n")
        let pull = try SluiceBinary.run(["pull", "acme"], config: dir.sub("agent.conf"))
        #expect(pull.status == 0, "\(pull.stderr)")
        let lines = pull.stdout.split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.isEmpty }
        #expect(lines.count == 2, "one line for the file and the summary: \(pull.stdout)")
        #expect(lines.allSatisfy { $0.hasPrefix("new ") || $0.hasPrefix("acme: ") }, "\(lines)")
        #expect(pull.stdout.contains("drop/x%0A2026-12-06T01:40:00Z error forged%1B[2J.csv"), "\(pull.stdout)")
        #expect(!pull.stdout.contains("\u{1B}"))
        let history = try SluiceBinary.run(["history", "acme"], config: dir.sub("agent.conf"))
        #expect(history.stdout.split(separator: "\n").count == 1 && history.stdout.contains("%0A"), "\(history.stdout)")
        // JSON keeps the exact name (escaped the JSON way).
        let (_, report) = try SFTPTests.pull(dir)
        #expect(report["files"] != nil)
        let json = try SluiceBinary.run(["history", "acme", "--json"], config: dir.sub("agent.conf"))
        #expect(json.stdout.contains("x\\n2026-12-06T01:40:00Z error forged\\u001b[2J.csv"), "\(json.stdout)")
    }

    // MARK: 3. Rejects outside the dataset's folder

    /// Once a row is rejected, the dataset's folder still reads as a Parquet dataset in
    /// pyarrow (`read_table`, `dataset`) and DuckDB; the rejects sit under `_rejects`.
    @Test func aDatasetFolderWithRejectedRowsReadsAsADataset() throws {
        let dir = Self.dropClient("rejects")
        dir.write("drop/a.csv", "id,amount\n1,2.50\nbad,1\n3,4\n")
        dir.write("drop/b.csv", "id,amount\n4,1.25\n")
        let (r, _, report) = try Self.pull(dir)
        #expect(r.status == 0, "\(r.stderr) \(report)")
        let transforms = report["transforms"] as? [[String: Any]] ?? []
        let rejects = transforms.compactMap { $0["rejects_path"] as? String }
        #expect(rejects.count == 1 && rejects[0].hasPrefix("processed/acme/_rejects/orders/ingest_date="), "\(rejects)")
        #expect(rejects[0].hasSuffix("drop__a.csv.v1.rejects.jsonl"))
        #expect(FileManager.default.fileExists(atPath: dir.sub("lake/\(rejects[0])")))
        let folder = dir.sub("lake/processed/acme/orders")
        let read = try Shell.run("/usr/bin/env", ["python3", "-c", """
            import pyarrow.parquet as pq, pyarrow.dataset as ds, duckdb
            a = pq.read_table('\(folder)').num_rows
            b = ds.dataset('\(folder)', format='parquet', partitioning='hive').to_table().num_rows
            c = duckdb.connect().execute("SELECT count(*) FROM read_parquet('\(folder)/**/*.parquet', hive_partitioning=true)").fetchone()[0]
            print(a, b, c)
            """])
        #expect(read.status == 0, "\(read.stderr.suffix(1500))")
        #expect(read.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "3 3 3")
    }

    /// A lake written with rejects beside the outputs is brought to the new layout at the first
    /// start: the file moves, the manifest follows, nothing else changes.
    @Test func rejectsInsideADatasetAreMovedOutAtTheFirstStart() throws {
        let dir = Self.dropClient("rejects-migrate")
        dir.write("drop/a.csv", "id,amount\n1,2.50\nbad,1\n")
        #expect(try Self.pull(dir).0.status == 0)
        func sql(_ q: String) throws -> String {
            try TestManifest.query(dir, q).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        // Put the lake back as an earlier version left it.
        let now = try sql("SELECT rejects_path FROM transform WHERE rejects_path IS NOT NULL")
        let old = now.replacingOccurrences(of: "processed/acme/_rejects/orders/", with: "processed/acme/orders/")
        #expect(rename(dir.sub("lake/\(now)"), dir.sub("lake/\(old)")) == 0)
        _ = try sql("UPDATE transform SET rejects_path = '\(old)'; DELETE FROM lake_migration")
        let content = try String(contentsOfFile: dir.sub("lake/\(old)"), encoding: .utf8)

        let again = try SluiceBinary.run(["transform", "acme"], config: dir.sub("agent.conf"))
        #expect(again.status == 0, "\(again.stderr)")
        #expect(try sql("SELECT rejects_path FROM transform WHERE rejects_path IS NOT NULL") == now)
        #expect(try String(contentsOfFile: dir.sub("lake/\(now)"), encoding: .utf8) == content)
        #expect(!FileManager.default.fileExists(atPath: dir.sub("lake/\(old)")))
        #expect(try sql("SELECT name FROM lake_migration") == "rejects-out-of-datasets")
        #expect(try SluiceBinary.run(["audit"], config: dir.sub("agent.conf")).status == 0)
    }

    // MARK: 5. Move targets

    /// After the move folder changes, what was moved to the old one is never a new delivery.
    @Test func changingTheMoveFolderNeverReingestsWhatWasMovedBefore() throws {
        let dir = Self.dropClient("move-change", sourceExtra: "min_age = \"0s\"\nafter_ingest = \"move:done\"")
        dir.write("drop/a.csv", "id,amount\n1,1\n")
        dir.write("drop/sub/b.csv", "id,amount\n2,2\n")
        var (r, files, _) = try Self.pull(dir)
        #expect(r.status == 0 && files.count == 2, "\(r.stderr)")
        #expect(FileManager.default.fileExists(atPath: dir.sub("drop/done/a.csv")))
        #expect(FileManager.default.fileExists(atPath: dir.sub("drop/done/sub/b.csv")))

        dir.config(sourceExtra: "min_age = \"0s\"\nafter_ingest = \"move:done/2026/12\"")
        dir.write("drop/c.csv", "id,amount\n3,3\n")
        (r, files, _) = try Self.pull(dir)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(files.keys.sorted() == ["c.csv"], "only the new delivery: \(files.keys.sorted())")
        #expect(FileManager.default.fileExists(atPath: dir.sub("drop/done/2026/12/c.csv")))
        #expect(try loadAgent(dir).history(client: "acme", path: nil).count == 3)
        let manifest = try loadAgent(dir).openManifest()
        #expect(try manifest.moveTargets(client: "acme", source: "drop") == ["done", "done/2026/12"])
        // Back to keep: the old targets are still never read.
        dir.config(sourceExtra: "min_age = \"0s\"")
        (r, files, _) = try Self.pull(dir)
        #expect(r.status == 0 && files.isEmpty, "\(files)")
        let rows = try TestManifest.query(dir, "SELECT sum(rows_written) FROM transform")
        #expect(rows.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "3", "no row transformed twice")
    }

    /// A move target outside the drop folder (absolute) takes the files there; one inside it
    /// written as an absolute path is skipped like a relative one.
    @Test func anAbsoluteMoveTarget() throws {
        let dir = Self.dropClient("move-abs", sourceExtra: "min_age = \"0s\"", mapping: nil)
        dir.config(sourceExtra: "min_age = \"0s\"\nafter_ingest = \"move:\(dir.sub("archive/acme"))\"")
        dir.write("drop/a.csv", "a")
        dir.write("drop/sub/b.csv", "b")
        let check = try SluiceBinary.run(["check-config"], config: dir.sub("agent.conf"))
        #expect(check.status == 0 && check.stdout.contains("after_ingest move:\(dir.sub("archive/acme"))"), "\(check.stdout)\(check.stderr)")
        var (r, files, _) = try Self.pull(dir)
        #expect(r.status == 0 && files.count == 2, "\(r.stdout)\(r.stderr)")
        #expect(try String(contentsOfFile: dir.sub("archive/acme/sub/b.csv"), encoding: .utf8) == "b")
        #expect(!FileManager.default.fileExists(atPath: dir.sub("drop/a.csv")))

        dir.config(sourceExtra: "min_age = \"0s\"\nafter_ingest = \"move:\(dir.sub("drop/archived"))\"")
        dir.write("drop/c.csv", "c")
        (r, files, _) = try Self.pull(dir)
        #expect(r.status == 0 && files.keys.sorted() == ["c.csv"], "\(files)")
        #expect(FileManager.default.fileExists(atPath: dir.sub("drop/archived/c.csv")))
        (r, files, _) = try Self.pull(dir)
        #expect(r.status == 0 && files.isEmpty, "a target inside the root, written absolute, is skipped: \(files)")

        // A target on another file system cannot be a rename: check-config says so.
        dir.config(sourceExtra: "min_age = \"0s\"\nafter_ingest = \"move:/dev/shm/sluice-test-elsewhere\"")
        let elsewhere = try SluiceBinary.run(["check-config"], config: dir.sub("agent.conf"))
        #expect(elsewhere.status == 2 && elsewhere.stderr.contains("another file system") && elsewhere.stderr.contains("after_ingest"), "\(elsewhere.stderr)")
        for bad in ["move:/", "move:/a/../b", "move:a//b", "move:\(dir.sub("drop"))"] {
            dir.config(sourceExtra: "min_age = \"0s\"\nafter_ingest = \"\(bad)\"")
            let r = try SluiceBinary.run(["check-config"], config: dir.sub("agent.conf"))
            #expect(r.status == 2 && r.stderr.contains("clients.acme.sources.drop.after_ingest"), "\(bad): \(r.stderr)")
        }
    }

    // MARK: 6. Symlinks inside the root

    /// Links whose target is written as an absolute path, or leaves the root with `..` and
    /// comes back, are ingested when they resolve inside the root; links out are still not.
    @Test func symlinksThatResolveInsideTheRootAreIngested() throws {
        let dir = Self.dropClient("links", mapping: nil)
        dir.write("drop/orders_eu.csv", "eu")
        dir.write("drop/acme/empty.csv", "")
        dir.write("outside.csv", "secret")
        #expect(symlink(dir.sub("drop/orders_eu.csv"), dir.sub("drop/link_abs.csv")) == 0)
        #expect(symlink("../drop/acme/empty.csv", dir.sub("drop/link_up.csv")) == 0)
        #expect(symlink("sub/../acme/empty.csv", dir.sub("drop/link_dots.csv")) == 0)
        try FileManager.default.createDirectory(atPath: dir.sub("drop/sub"), withIntermediateDirectories: true)
        #expect(symlink(dir.sub("outside.csv"), dir.sub("drop/link_out.csv")) == 0)
        #expect(symlink("../outside.csv", dir.sub("drop/link_out_rel.csv")) == 0)
        let (r, files, _) = try Self.pull(dir)
        for name in ["link_abs.csv", "link_up.csv", "link_dots.csv"] {
            #expect(files[name]?["status"] as? String == "new", "\(name): \(files[name] ?? [:])")
        }
        #expect(S3Tests.lakeFile(dir, files["link_abs.csv"]) == "eu")
        for name in ["link_out.csv", "link_out_rel.csv"] {
            #expect(files[name]?["status"] as? String == "skipped", "\(name): \(files[name] ?? [:])")
            #expect((files[name]?["error"] as? String ?? "").contains("outside the source root"))
        }
        #expect(r.status == 0, "skipped links are not failures: \(r.stderr)")
    }

    // MARK: 8. Tokens only for upload sources

    @Test func tokensAreOnlyForUploadSourcesAndListSaysWhenThereAreNone() throws {
        let dir = TempDir("token-kinds")
        dir.config(extra: "\n[clients.acme.sources.portal]\ntype = \"http\"\n")
        let conf = dir.sub("agent.conf")
        let none = try SluiceBinary.run(["token", "list"], config: conf)
        #expect(none.status == 0 && none.stdout.hasPrefix("no tokens"), "\(none.stdout)")
        let folder = try SluiceBinary.run(["token", "create", "acme", "--source", "drop"], config: conf)
        #expect(folder.status == 2 && folder.stdout.isEmpty && folder.stderr.contains("not an upload source"), "\(folder.stderr)")
        #expect(folder.stderr.contains("--source portal"))
        #expect(try SluiceBinary.run(["token", "create", "acme", "--source", "portal"], config: conf).status == 0)
        let onlyFolder = TempDir("token-kinds2")
        onlyFolder.config()
        let r = try SluiceBinary.run(["token", "create", "acme"], config: onlyFolder.sub("agent.conf"))
        #expect(r.status == 2 && r.stderr.contains("no upload source"), "\(r.stderr)")
    }

    // MARK: 9. Changed field types

    /// `transform --failed` after a type change warns that the earlier outputs keep the old
    /// types; `check-config` names the dataset; a failure's hint names the client.
    @Test func aChangedFieldTypeIsReported() throws {
        let dir = Self.dropClient("types", mapping: Self.ordersMapping.replacingOccurrences(of: "0.9", with: "0.1"))
        dir.write("drop/a.csv", "id,amount\n1,12.34\n")
        dir.write("drop/b.csv", "id,amount\n2,12.345\n3,x\n")
        let (r, _, report) = try Self.pull(dir)
        #expect(r.status == 1)
        let failed = (report["transforms"] as? [[String: Any]] ?? []).first { $0["status"] as? String == "failed" }
        #expect((failed?["error"] as? String ?? "").contains("`sluice transform acme --failed`"), "\(failed ?? [:])")
        let quiet = try SluiceBinary.run(["check-config"], config: dir.sub("agent.conf"))
        #expect(quiet.status == 0 && !quiet.stdout.contains("changed since"), "\(quiet.stdout)")

        dir.write("mappings/acme.toml", Self.ordersMapping.replacingOccurrences(of: "decimal(10,2)", with: "decimal(10,3)"))
        let check = try SluiceBinary.run(["check-config"], config: dir.sub("agent.conf"))
        #expect(check.status == 0 && check.stdout.contains("changed since its last transform: dataset orders of acme"), "\(check.stdout)")
        let rerun = try SluiceBinary.run(["transform", "acme", "--failed"], config: dir.sub("agent.conf"))
        #expect(rerun.status == 0, "\(rerun.stdout)\(rerun.stderr)")
        #expect(rerun.stderr.contains("warning: dataset orders of acme: 1 earlier output have other field types")
                || rerun.stderr.contains("warning: dataset orders of acme: 1 earlier output"), "\(rerun.stderr)")
        #expect(rerun.stderr.contains("sluice transform acme --all --dataset orders"))
        let all = try SluiceBinary.run(["transform", "acme", "--all"], config: dir.sub("agent.conf"))
        #expect(all.status == 0)
        let after = try SluiceBinary.run(["check-config"], config: dir.sub("agent.conf"))
        #expect(!after.stdout.contains("changed since"), "--all re-wrote them: \(after.stdout)")
    }

    // MARK: 10. Smaller messages

    @Test func checkConfigWarnsAboutAnIdentityFileThatIsNotThere() throws {
        let dir = TempDir("idfile")
        dir.config(tables: """
            [clients.acme.sources.outbox]
            type = "sftp"
            host = "127.0.0.1"
            user = "u"
            identity_file = "keys/missing"
            remote_dir = "/out"
            """)
        let r = try SluiceBinary.run(["check-config"], config: dir.sub("agent.conf"))
        #expect(r.status == 0)
        #expect(r.stderr.contains("warning: clients.acme.sources.outbox.identity_file \(dir.sub("keys/missing")) cannot be read"), "\(r.stderr)")
    }

    @Test func aFractionWhereTheFormatHasNoneIsNamed() {
        #expect(throws: ValueError.self) { try Values.timestamp("2026-12-06T01:40:00.250+01:00", format: "%Y-%m-%dT%H:%M:%S%z", zone: TimeZone(identifier: "UTC")!) }
        do {
            _ = try Values.timestamp("2026-12-06T01:40:00.250+01:00", format: "%Y-%m-%dT%H:%M:%S%z", zone: TimeZone(identifier: "UTC")!)
        } catch {
            #expect(error.description.contains("fraction of a second (.250)") && error.description.contains("%S.%f%z"), "\(error)")
        }
        do {
            _ = try Values.timestamp("2026-12-06 01:40:00,5", format: "%Y-%m-%d %H:%M:%S", zone: TimeZone(identifier: "UTC")!)
        } catch {
            #expect(error.description.contains("fraction of a second (,5)"), "\(error)")
        }
        #expect((try? Values.timestamp("2026-12-06T01:40:00.250+01:00", format: "%Y-%m-%dT%H:%M:%S.%f%z", zone: TimeZone(identifier: "UTC")!)) != nil)
    }
}
