import Foundation
import SluiceFormats
import SluiceTestSupport
import Testing

/// Archives: the lake keeps the archive as delivered; each regular member is transformed as a
/// unit of its own, recorded per (version, dataset, member). Fixtures are made by the real
/// tools (zip, tar, 7z) from the client fixtures.
@Suite(.enabled(if: ParquetTests.readersAvailable, "needs pyarrow and duckdb (python3 -m pip install pyarrow duckdb)"))
struct ArchiveTests {
    /// The orders mapping with a glob that also takes members in folders.
    static let orders = TransformTests.mapping.replacingOccurrences(of: "match = [\"orders_*.csv\"]", with: "match = [\"orders_*.csv\", \"**/orders_*.csv\"]")

    /// A transform's error text ("" when it has none).
    static func error(_ t: [String: Any]?) -> String { t?["error"] as? String ?? "" }

    /// A folder `src` in `dir` with two orders files (one in a subfolder, one gzipped), a
    /// file no dataset takes, an empty folder and a symlink.
    static func sources(in dir: TempDir) throws -> String {
        let plain = try FormatTests.fixture("acme/orders_2026-10-01.csv")
        dir.write("src/orders_01.csv", plain)
        dir.write("src/2026-10/orders_02.csv", plain)
        dir.write("src/readme.txt", "not data\n")
        dir.write("src/plain.csv", plain)
        try Shell.check("/bin/sh", ["-c", "cd '\(dir.sub("src"))' && gzip -c orders_01.csv > orders_03.csv.gz && mv plain.csv 2026-10/ && mkdir empty && ln -s orders_01.csv link.csv"])
        return dir.sub("src")
    }

    /// Packs `src` into `drop/<name>` with the real tool for its kind.
    static func pack(_ src: String, _ name: String, in dir: TempDir) throws {
        let out = dir.sub("drop/\(name)")
        try FileManager.default.createDirectory(atPath: dir.sub("drop"), withIntermediateDirectories: true)
        let command: String = switch name {
        case let n where n.hasSuffix(".zip"): "zip -q -r --symlinks '\(out)' ."
        case let n where n.hasSuffix(".7z"): "7z a -bd -bso0 -snl '\(out)' ."
        case let n where n.hasSuffix(".tgz") || n.hasSuffix(".tar.gz"): "tar czf '\(out)' ."
        case let n where n.hasSuffix(".tar.bz2"): "tar cjf '\(out)' ."
        case let n where n.hasSuffix(".tar.xz"): "tar cJf '\(out)' ."
        default: "tar cf '\(out)' ."
        }
        try Shell.check("/bin/sh", ["-c", "cd '\(src)' && \(command)"])
    }

    @Test(arguments: ["batch.zip", "batch.tar", "batch.tgz", "batch.tar.gz", "batch.tar.bz2", "batch.tar.xz", "batch.7z"])
    func everyRegularMemberIsAUnitOfItsOwn(_ name: String) throws {
        let dir = FormatTests.lake(Self.orders, files: [:])
        try Self.pack(try Self.sources(in: dir), name, in: dir)
        let (status, transforms) = try FormatTests.pull(dir)
        #expect(status == 0)
        let file = try #require(transforms[name], "\(transforms.keys.sorted())")
        #expect(file["status"] as? String == "ok" && file["member"] is NSNull && file["rows_written"] as? Int == 3 * 38, "\(file)")
        let members = file["members"] as? [String: Int]
        // orders_01, 2026-10/orders_02, orders_03.csv.gz ok; readme.txt and 2026-10/plain.csv unmapped;
        // the folders and the symlink are not members.
        #expect(members == ["ok": 3, "failed": 0, "unmapped": 2], "\(file)")
        for member in ["orders_01.csv", "2026-10/orders_02.csv", "orders_03.csv.gz"] {
            let t = try #require(transforms["\(name)#\(member)"], "\(transforms.keys.sorted())")
            #expect(t["status"] as? String == "ok" && t["rows_written"] as? Int == 38 && t["rows_rejected"] as? Int == 2, "\(t)")
            let out = dir.sub("lake/") + (t["output_path"] as? String ?? "")
            let lineage = try FormatTests.check(out, """
                print(json.dumps({"arrow": t.column('_source_member').unique().to_pylist(), "path": t.column('_source_path').unique().to_pylist(),
                                  "duck": duck("SELECT min(_source_member), count(*) FROM $P")[0]}))
                """)
            #expect(lineage["arrow"] as? [String] == [member] && lineage["duck"] as? String == member && lineage["path"] as? [String] == [name], "\(lineage)")
            // The rejected rows name the member too.
            let rejects = try String(contentsOfFile: dir.sub("lake/") + (t["rejects_path"] as? String ?? ""), encoding: .utf8)
            #expect(rejects.split(separator: "\n").allSatisfy { $0.contains("\"member\":\"\(member)\"") }, "\(rejects)")
        }
        #expect(transforms["\(name)#readme.txt"]?["status"] as? String == "unmapped")
        #expect(transforms["\(name)#link.csv"] == nil && transforms["\(name)#empty"] == nil)
        // The lake holds the archive as it came.
        let stored = try FileManager.default.subpathsOfDirectory(atPath: dir.sub("lake/raw/acme/drop"))
        #expect(stored.count == 1)
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir.sub("lake/raw/acme/drop/\(stored[0])"))) == Data(contentsOf: URL(fileURLWithPath: dir.sub("drop/\(name)"))))
        expectDatasetFoldersRead(dir)
    }

    @Test func aFileThatIsNoArchiveHasANullMemberAndTheManifestHasARowPerMember() throws {
        let dir = FormatTests.lake(Self.orders, files: [:])
        let src = try Self.sources(in: dir)
        try Self.pack(src, "batch.zip", in: dir)
        dir.write("drop/orders_plain.csv", try FormatTests.fixture("acme/orders_2026-10-01.csv"))
        let (status, transforms) = try FormatTests.pull(dir)
        #expect(status == 0)
        let plain = try #require(transforms["orders_plain.csv"])
        #expect(plain["member"] is NSNull && plain["members"] == nil, "\(plain)")
        let nulls = try FormatTests.check(dir.sub("lake/") + (plain["output_path"] as? String ?? ""), """
            print(json.dumps({"arrow": t.column('_source_member').null_count, "duck": duck("SELECT count(*) FROM $P WHERE _source_member IS NULL")[0],
                              "type": str(t.schema.field('_source_member').type)}))
            """)
        #expect(nulls["arrow"] as? Int == 38 && nulls["duck"] as? Int == 38 && nulls["type"] as? String == "string", "\(nulls)")
        // One row for the archive (with its counts), one per member pointing at it.
        let rows = try TestManifest.query(dir, """
            SELECT coalesce(t.member, '-'), t.status, coalesce(p.member, '-'), coalesce(t.members_ok, -1), coalesce(t.members_unmapped, -1)
            FROM transform t JOIN version v ON v.id = t.version_id JOIN file f ON f.id = v.file_id LEFT JOIN transform p ON p.id = t.parent_id
            WHERE f.path = 'batch.zip' ORDER BY t.id
            """).stdout.split(separator: "\n").map(String.init)
        #expect(rows.first == "-|ok|-|3|2" && rows.count == 6, "\(rows)")
        #expect(rows.dropFirst().allSatisfy { $0.contains("|-|-1|-1") }, "\(rows)")
    }

    @Test func oneBadMemberFailsAloneAndTransformFailedRerunsItAfterAFix() throws {
        let dir = FormatTests.lake(Self.orders, files: [:])
        let good = try FormatTests.fixture("acme/orders_2026-10-01.csv")
        dir.write("src/orders_good.csv", good)
        // Every row of this one is rejected: past max_reject_ratio.
        dir.write("src/orders_bad.csv", "Order No;Date;Customer;Total;Status;Note\nx;y;z;w;A;\nq;r;s;t;A;\n")
        try Self.pack(dir.sub("src"), "batch.zip", in: dir)
        let (status, transforms) = try FormatTests.pull(dir)
        #expect(status == 1, "a failed member fails the file's transform")
        let file = try #require(transforms["batch.zip"])
        #expect(file["status"] as? String == "failed" && file["members"] as? [String: Int] == ["ok": 1, "failed": 1, "unmapped": 0], "\(file)")
        #expect(Self.error(file).contains("1 of 2 members failed"), "\(file)")
        #expect(transforms["batch.zip#orders_good.csv"]?["status"] as? String == "ok")
        let bad = try #require(transforms["batch.zip#orders_bad.csv"])
        #expect(bad["status"] as? String == "failed" && Self.error(bad).contains("max_reject_ratio"), "\(bad)")
        // The fix: let every row be rejected, then re-run the failed.
        dir.write("mappings/acme.toml", Self.orders.replacingOccurrences(of: "max_reject_ratio = 0.2", with: "max_reject_ratio = 1.0"))
        let (r, obj) = try SluiceBinary.json(["transform", "acme", "--failed"], config: dir.sub("agent.conf"))
        #expect(r.status == 0, "\(r.stderr)")
        let again = obj as? [[String: Any]] ?? []
        #expect(again.count == 3 && again[0]["member"] is NSNull && again[0]["status"] as? String == "ok", "\(again)")
        #expect(Set(again.dropFirst().compactMap { $0["member"] as? String }) == ["orders_good.csv", "orders_bad.csv"])
        let status2 = try SluiceBinary.json(["status", "acme"], config: dir.sub("agent.conf"))
        #expect(status2.0.stdout.contains("\"failed_transforms\":0"), "\(status2.0.stdout)")
    }

    @Test func damagedCutShortLyingAndPasswordProtectedArchivesFailClearly() throws {
        let dir = FormatTests.lake(Self.orders, files: [:])
        let plain = try FormatTests.fixture("acme/orders_2026-10-01.csv")
        for i in 1...40 { dir.write("src/orders_\(i).csv", plain) }
        try Self.pack(dir.sub("src"), "whole.zip", in: dir)
        try Self.pack(dir.sub("src"), "whole.tar.gz", in: dir)
        let zip = try Data(contentsOf: URL(fileURLWithPath: dir.sub("drop/whole.zip")))
        let tgz = try Data(contentsOf: URL(fileURLWithPath: dir.sub("drop/whole.tar.gz")))
        try FileManager.default.removeItem(atPath: dir.sub("drop/whole.zip"))
        try FileManager.default.removeItem(atPath: dir.sub("drop/whole.tar.gz"))
        dir.write("drop/cut.zip", zip.prefix(zip.count / 2))
        dir.write("drop/cut.tar.gz", tgz.prefix(tgz.count / 2))
        dir.write("drop/lies.zip", plain)
        dir.write("drop/lies.tar.gz", plain)
        dir.write("pw/orders_secret.csv", plain)
        dir.write("pw/orders_open.csv", plain)
        try Shell.check("/bin/sh", ["-c", "cd '\(dir.sub("pw"))' && zip -q -P secret '\(dir.sub("drop/locked.zip"))' orders_secret.csv && zip -q '\(dir.sub("drop/locked.zip"))' orders_open.csv"])
        let (status, transforms) = try FormatTests.pull(dir)
        #expect(status == 1)
        for name in ["cut.zip", "cut.tar.gz", "lies.zip", "lies.tar.gz", "locked.zip"] {
            #expect(transforms[name]?["status"] as? String == "failed", "\(name): \(transforms[name] ?? [:])")
        }
        #expect(Self.error(transforms["cut.zip"]).contains("damaged or cut short"), "\(transforms["cut.zip"] ?? [:])")
        #expect(Self.error(transforms["cut.tar.gz"]).contains("cut short"), "\(transforms["cut.tar.gz"] ?? [:])")
        #expect(Self.error(transforms["lies.zip"]).contains("not a readable zip archive"), "\(transforms["lies.zip"] ?? [:])")
        #expect(Self.error(transforms["lies.tar.gz"]).contains("ends in .gz but is not gzip data"), "\(transforms["lies.tar.gz"] ?? [:])")
        let secret = transforms["locked.zip#orders_secret.csv"]?["error"] as? String ?? ""
        #expect(secret.contains("encrypted with a zip password") && secret.contains("orders_secret.csv"), "\(secret)")
        #expect(transforms["locked.zip#orders_open.csv"]?["status"] as? String == "ok", "the sibling of a locked member is transformed")
        // Every delivery is kept as it came, failed or not.
        #expect(try FileManager.default.subpathsOfDirectory(atPath: dir.sub("lake/raw/acme/drop")).count == 5)
        // The spool folder is left empty: nothing plaintext stays behind.
        #expect((try? FileManager.default.contentsOfDirectory(atPath: dir.sub("state/spool"))) ?? [] == [])
        expectDatasetFoldersRead(dir)
    }

    @Test func anArchiveInsideAnArchiveIsUnpackedOneLevelByDefault() throws {
        let dir = FormatTests.lake(Self.orders, files: [:])
        let plain = try FormatTests.fixture("acme/orders_2026-10-01.csv")
        dir.write("n/orders_in.csv", plain)
        try FileManager.default.createDirectory(atPath: dir.sub("drop"), withIntermediateDirectories: true)
        let n = dir.sub("n")
        try Shell.check("/bin/sh", ["-c", """
            cd '\(n)' && zip -q inner.zip orders_in.csv && tar cf inner.tar orders_in.csv && zip -q outer.zip inner.zip inner.tar \
            && zip -q deep.zip outer.zip && cp outer.zip '\(dir.sub("drop/nested.zip"))' && cp deep.zip '\(dir.sub("drop/deep.zip"))'
            """])
        let (status, transforms) = try FormatTests.pull(dir)
        #expect(status == 1, "the too-deep one fails")
        #expect(transforms["nested.zip"]?["members"] as? [String: Int] == ["ok": 2, "failed": 0, "unmapped": 0], "\(transforms["nested.zip"] ?? [:])")
        #expect(transforms["nested.zip#inner.zip/orders_in.csv"]?["rows_written"] as? Int == 38)
        #expect(transforms["nested.zip#inner.tar/orders_in.csv"]?["rows_written"] as? Int == 38)
        let deep = try #require(transforms["deep.zip#outer.zip/inner.zip"], "\(transforms.keys.sorted())")
        #expect(deep["status"] as? String == "failed" && Self.error(deep).contains("max_archive_depth (1)"), "\(deep)")
        // max_archive_depth = 0: an archive inside an archive is an error.
        let flat = TempDir("flat")
        flat.config(agent: "max_archive_depth = 0", tables: "[clients.acme.sources.drop]\ntype = \"folder\"\npath = \"drop\"\nmin_age = \"0s\"")
        flat.write("mappings/acme.toml", Self.orders)
        flat.write("drop/nested.zip", try Data(contentsOf: URL(fileURLWithPath: dir.sub("drop/nested.zip"))))
        let (_, flatTransforms) = try FormatTests.pull(flat)
        #expect(Self.error(flatTransforms["nested.zip#inner.zip"]).contains("max_archive_depth (0)"), "\(flatTransforms)")
        expectDatasetFoldersRead(dir)
    }

    @Test func memberAndBombLimitsStopAnArchive() throws {
        let dir = TempDir("limits")
        dir.config(agent: "max_archive_members = 5\nmax_unpacked_bytes = \"4MiB\"\nmax_unpack_ratio = 1000000", tables: "[clients.acme.sources.drop]\ntype = \"folder\"\npath = \"drop\"\nmin_age = \"0s\"")
        dir.write("mappings/acme.toml", Self.orders)
        let plain = try FormatTests.fixture("acme/orders_2026-10-01.csv")
        for i in 1...8 { dir.write("many/orders_\(i).csv", plain) }
        try Self.pack(dir.sub("many"), "many.zip", in: dir)
        // 16 MiB of one repeated row: zip shrinks it to a few KiB.
        let row = "1;01.10.2026 10:00;ACME;1,00;A;x\n"
        dir.write("bomb/orders_bomb.csv", "Order No;Date;Customer;Total;Status;Note\n" + String(repeating: row, count: (16 << 20) / row.utf8.count))
        try Self.pack(dir.sub("bomb"), "bomb.zip", in: dir)
        try Self.pack(dir.sub("bomb"), "bomb.tar.xz", in: dir)
        let (status, transforms) = try FormatTests.pull(dir)
        #expect(status == 1)
        let many = try #require(transforms["many.zip"])
        #expect(many["status"] as? String == "failed" && Self.error(many).contains("max_archive_members (5)"), "\(many)")
        for name in ["bomb.zip", "bomb.tar.xz"] {
            let bomb = try #require(transforms["\(name)#orders_bomb.csv"], "\(transforms.keys.sorted())")
            #expect(bomb["status"] as? String == "failed" && Self.error(bomb).contains("max_unpacked_bytes"), "\(bomb)")
        }
        let processed = (try? FileManager.default.subpathsOfDirectory(atPath: dir.sub("lake/processed"))) ?? []
        #expect(!processed.contains { $0.contains("bomb") && $0.hasSuffix(".parquet") }, "\(processed)")
    }

    @Test func hostileMemberNamesEscapeNothingAndAreShownEscaped() throws {
        let dir = FormatTests.lake(Self.orders.replacingOccurrences(of: "\"**/orders_*.csv\"]", with: "\"**/orders_*.csv\", \"/**/orders_*.csv\"]"), files: [:])
        let plain = try FormatTests.fixture("acme/orders_2026-10-01.csv")
        // zip(1) will not store such names; Python's zipfile writes them as a hostile sender would.
        dir.write("plain.csv", plain)
        try FileManager.default.createDirectory(atPath: dir.sub("drop"), withIntermediateDirectories: true)
        try Shell.check("/usr/bin/env", ["python3", "-c", """
            import zipfile, sys
            with zipfile.ZipFile(sys.argv[1], 'w') as z:
                data = open(sys.argv[2], 'rb').read()
                for name in ['../../orders_escape.csv', '/etc/orders_abs.csv', 'a/../../orders_dots.csv', 'orders_\\x1b[31m.csv']:
                    z.writestr(zipfile.ZipInfo(name), data)
            """, dir.sub("drop/evil.zip"), dir.sub("plain.csv")])
        let (_, transforms) = try FormatTests.pull(dir)
        let members = Set(transforms.keys.filter { $0.hasPrefix("evil.zip#") }.map { String($0.dropFirst("evil.zip#".count)) })
        #expect(members == ["%2E%2E/%2E%2E/orders_escape.csv", "%2Fetc/orders_abs.csv", "a/%2E%2E/%2E%2E/orders_dots.csv", "orders_%1B[31m.csv"], "\(members)")
        // Every output stays inside the dataset's folder, and nothing was written by a member's name.
        let outputs = transforms.values.compactMap { $0["output_path"] as? String }
        #expect(outputs.count == 4 && outputs.allSatisfy { $0.hasPrefix("processed/acme/orders/ingest_date=") && !$0.dropFirst(30).contains("/..") }, "\(outputs)")
        #expect(!FileManager.default.fileExists(atPath: dir.sub("orders_escape.csv")) && !FileManager.default.fileExists(atPath: dir.sub("lake/orders_escape.csv")))
        expectDatasetFoldersRead(dir)
    }

    @Test func aWorkbookInsideAZipIsReadThroughAnUnnamedFile() throws {
        let dir = FormatTests.lake(FormatTests.salesMapping, files: [:])
        dir.write("src/sales_2026-09.xlsx", try FormatTests.fixture("hooli/sales_2026-09.xlsx"))
        try Self.pack(dir.sub("src"), "monthly.zip", in: dir)
        let (status, transforms) = try FormatTests.pull(dir)
        #expect(status == 0)
        let t = try #require(transforms["monthly.zip#sales_2026-09.xlsx"], "\(transforms.keys.sorted())")
        #expect(t["status"] as? String == "ok" && t["rows_written"] as? Int == 29 && t["rows_rejected"] as? Int == 1, "\(t)")
        #expect((try? FileManager.default.contentsOfDirectory(atPath: dir.sub("state/spool"))) ?? [] == [])
        expectDatasetFoldersRead(dir)
    }

    @Test func catAndHistoryLookInsideAnArchive() throws {
        let dir = FormatTests.lake(Self.orders, files: [:])
        let plain = try FormatTests.fixture("acme/orders_2026-10-01.csv")
        try Self.pack(try Self.sources(in: dir), "batch.tgz", in: dir)
        _ = try FormatTests.pull(dir)
        let conf = dir.sub("agent.conf")
        let (h, obj) = try SluiceBinary.json(["history", "acme", "batch.tgz", "--members"], config: conf)
        #expect(h.status == 0, "\(h.stderr)")
        let members = ((obj as? [[String: Any]])?.first?["members"] as? [[String: Any]]) ?? []
        let sizes = Dictionary(uniqueKeysWithValues: members.map { ($0["path"] as? String ?? "", $0["size"] as? Int ?? -1) })
        #expect(sizes["orders_01.csv"] == plain.count && sizes["2026-10/orders_02.csv"] == plain.count && sizes["readme.txt"] == 9, "\(members)")
        // Without --members, history lists versions only.
        let (_, bare) = try SluiceBinary.json(["history", "acme", "batch.tgz"], config: conf)
        #expect((bare as? [[String: Any]])?.first?["members"] == nil)
        let out = try SluiceBinary.run(["cat", "acme", "batch.tgz", "--member", "2026-10/orders_02.csv"], config: conf)
        #expect(out.status == 0 && Data(out.stdout.utf8) == plain, "\(out.stderr)")
        // A compressed member comes out unpacked, or as stored with --raw.
        let gz = try SluiceBinary.run(["cat", "acme", "batch.tgz", "--member", "orders_03.csv.gz"], config: conf)
        #expect(gz.status == 0 && Data(gz.stdout.utf8) == plain)
        let raw = try Shell.run("/bin/sh", ["-c", "'\(SluiceBinary.path)' cat acme batch.tgz --member orders_03.csv.gz --raw --config '\(conf)' | gzip -dc | cmp - '\(dir.sub("src/orders_01.csv"))'"])
        #expect(raw.status == 0, "\(raw.stderr)")
        let missing = try SluiceBinary.run(["cat", "acme", "batch.tgz", "--member", "nope.csv"], config: conf)
        #expect(missing.status == 2 && missing.stderr.contains("has no member nope.csv") && missing.stderr.contains("orders_01.csv"), "\(missing.stderr)")
        dir.write("drop/orders_x.csv", plain)
        _ = try FormatTests.pull(dir)
        let notArchive = try SluiceBinary.run(["cat", "acme", "orders_x.csv", "--member", "a"], config: conf)
        #expect(notArchive.status == 2 && notArchive.stderr.contains("is not an archive"), "\(notArchive.stderr)")
    }
}
