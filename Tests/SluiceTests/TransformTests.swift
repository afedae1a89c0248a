import Foundation
import SluiceAgent
import SluiceLake
import SluiceManifest
import SluiceTestSupport
import Testing
import SluiceSupport
import SluiceIngest
import SluiceConfig
import SluiceSources
import SluiceTransform
import SluiceFormats

/// CSV → Parquet through a mapping file, read back with pyarrow and DuckDB.
@Suite(.enabled(if: ParquetTests.readersAvailable, "needs pyarrow and duckdb (python3 -m pip install pyarrow duckdb)"))
struct TransformTests {
    static let mapping = """
        [datasets.orders]
        match = ["orders_*.csv"]
        format = "csv"
        delimiter = ";"
        decimal_separator = ","
        thousands_separator = "."
        max_reject_ratio = 0.2
        fields = [
          { name = "order_id", source = "Order No", type = "int64", required = true },
          { name = "ordered_at", source = "Date", type = "timestamp", format = "%d.%m.%Y %H:%M", timezone = "Europe/Berlin" },
          { name = "customer", source = "Customer", type = "string" },
          { name = "amount", source = "Total", type = "decimal(12,2)" },
          { name = "status", source = "Status", type = "string", map = { A = "active", P = "pending", C = "cancelled" } },
          { name = "note", source = "Note", type = "string" },
        ]
        """

    @Test func theAcmeFixtureBecomesTypedParquetWithLineageAndRejects() throws {
        let dir = TempDir("transform")
        dir.config()
        let fixture = CSVReaderTests.fixtures.appendingPathComponent("acme/orders_2026-10-01.csv")
        dir.write("drop/orders_2026-10-01.csv", try Data(contentsOf: fixture))
        dir.write("mappings/acme.toml", Self.mapping)
        let agent = try loadAgent(dir)
        let pulled = try agent.pull(client: "acme", source: nil)
        #expect(pulled.counts.new == 1)
        let v = try #require(try agent.history(client: "acme", path: nil).first)
        let mapping = try #require(try agent.mappings()["acme"])
        let input = TransformInput(client: "acme", source: v.source, path: RelativePath(v.path), version: v.version, sha256: v.sha256,
                                   lakePath: v.lake_path, ingestedAtMicros: 1_790_000_000_000_000)
        let result = Transformer(lake: try agent.openLake(), mapping: mapping).run(input)
        #expect(result.status == .ok, "\(result.error ?? "")")
        #expect(result.rowsWritten == 38 && result.rowsRejected == 2)
        let out = try #require(result.outputPath)
        #expect(out.hasPrefix("processed/acme/orders/ingest_date=2026-09-21/drop__orders_2026-10-01.csv.v1.parquet"))
        let parquet = "\(agent.config.lakeDir)/\(out)"
        let rejects = try String(contentsOfFile: "\(agent.config.lakeDir)/\(try #require(result.rejectsPath))", encoding: .utf8)
        #expect(rejects.split(separator: "\n").count == 2)
        #expect(rejects.contains("10x2") && rejects.contains("not a whole number"))
        #expect(rejects.contains("31.02.2026") && rejects.contains("not a real date"))

        let r = try Shell.run("/usr/bin/env", ["python3", "-c", """
            import pyarrow.parquet as pq, duckdb, json
            t = pq.read_table('\(parquet)')
            rows = {r['order_id']: r for r in t.to_pylist()}
            con = duckdb.connect()
            d = con.execute("SELECT count(*), count(amount), sum(amount), min(_row_number), max(_source_version) FROM read_parquet('\(parquet)')").fetchone()
            print(json.dumps({
              "types": {f.name: str(f.type) for f in t.schema},
              "amount1009": str(rows[1009]['amount']), "amount1030": str(rows[1030]['amount']),
              "note1007": rows[1007]['note'], "status1004": rows[1004]['status'], "customer1001": rows[1001]['customer'],
              "ts1001": str(rows[1001]['ordered_at']), "lineage": [rows[1001]['_client'], rows[1001]['_source_path'], rows[1001]['_row_number']],
              "duck": [str(x) for x in d]}))
            """])
        #expect(r.status == 0, "\(r.stderr)")
        let o = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        let types = o["types"] as! [String: String]
        #expect(types["order_id"] == "int64" && types["amount"] == "decimal128(12, 2)" && types["ordered_at"] == "timestamp[us, tz=UTC]")
        #expect(types["_ingested_at"] == "timestamp[us, tz=UTC]" && types["_row_number"] == "int64")
        #expect(o["amount1009"] as? String == "1234.50")
        #expect(o["amount1030"] as? String == "None", "an empty optional amount is null")
        #expect(o["note1007"] as? String == "Rush; call \"Bob\"\nbefore delivery")
        #expect(o["status1004"] as? String == "pending")
        #expect(o["customer1001"] as? String == "Café Zoë")
        #expect(o["ts1001"] as? String == "2026-10-01 13:13:00+00:00", "15:13 in Berlin (CEST) is 13:13 UTC")
        #expect(o["lineage"] as? [AnyHashable] == ["acme", "orders_2026-10-01.csv", 2])
        // Expected from Python's csv and Decimal over the same fixture: 38 rows, 37 amounts, sum 21967.41.
        #expect(o["duck"] as? [String] == ["38", "37", "21967.41", "2", "1"])

        // A re-run replaces the output atomically and gives the same result.
        let again = Transformer(lake: try agent.openLake(), mapping: mapping).run(input)
        #expect(again == result)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: (parquet as NSString).deletingLastPathComponent).filter { $0.hasPrefix(".%tmp") }
        #expect(leftovers.isEmpty)
        expectDatasetFoldersRead(dir)
    }

    @Test func aMissingColumnOrEmptyFileFailsAHeaderOnlyFileIsEmptyAndAnUnmatchedFileIsUnmapped() throws {
        let dir = TempDir("transform")
        dir.config()
        dir.write("drop/orders_1.csv", "Id;Total\n1;2\n")
        dir.write("drop/other.csv", "x\n1\n")
        dir.write("drop/orders_empty.csv", "")
        dir.write("drop/orders_header.csv", "Order No;Date;Customer;Total;Status;Note\r\n")
        dir.write("mappings/acme.toml", Self.mapping)
        let agent = try loadAgent(dir)
        _ = try agent.pull(client: "acme", source: nil)
        let mapping = try #require(try agent.mappings()["acme"])
        let t = Transformer(lake: try agent.openLake(), mapping: mapping)
        for v in try agent.history(client: "acme", path: nil) {
            let r = t.run(TransformInput(client: "acme", source: v.source, path: RelativePath(v.path), version: v.version, sha256: v.sha256,
                                         lakePath: v.lake_path, ingestedAtMicros: 0))
            if v.path == "other.csv" {
                #expect(r.status == .unmapped)
            } else if v.path == "orders_empty.csv" {
                #expect(r.status == .failed && r.error?.contains("the file is empty") == true, "\(r.error ?? "")")
            } else if v.path == "orders_header.csv" {
                #expect(r.status == .ok && r.rowsWritten == 0 && r.rowsRejected == 0 && r.rejectsPath == nil, "\(r)")
            } else {
                #expect(r.status == .failed)
                #expect(r.error?.contains("missing required column \"Order No\"") == true, "\(r.error ?? "")")
                #expect(r.outputPath == nil)
            }
        }
        let written = (try? FileManager.default.subpathsOfDirectory(atPath: dir.sub("lake/processed/acme/orders"))) ?? []
        #expect(written.allSatisfy { !$0.contains("orders_1.csv") && !$0.contains("orders_empty.csv") }, "a failed transform publishes nothing: \(written)")
        #expect(written.contains { $0.hasSuffix("drop__orders_header.csv.v1.parquet") }, "a header-only file gives an empty Parquet file")
        expectDatasetFoldersRead(dir)
    }
}

extension TransformTests {
    @Test func pullTransformsAndTransformReRunsFailedOrAll() throws {
        let dir = TempDir("transform")
        dir.config()
        dir.write("drop/orders_2026-10-01.csv", try Data(contentsOf: CSVReaderTests.fixtures.appendingPathComponent("acme/orders_2026-10-01.csv")))
        dir.write("drop/readme.txt", "not data")
        // A mapping with a wrong column name: the transform fails, the raw version stays.
        dir.write("mappings/acme.toml", Self.mapping.replacingOccurrences(of: "source = \"Order No\"", with: "source = \"Order Number\""))
        let conf = dir.sub("agent.conf")
        let (pulled, obj) = try SluiceBinary.json(["pull", "acme"], config: conf)
        #expect(pulled.status == 1, "a failed transform makes pull exit 1")
        let transforms = (obj as! [String: Any])["transforms"] as! [[String: Any]]
        #expect(Set(transforms.map { $0["status"] as! String }) == ["failed", "unmapped"])
        #expect((obj as! [String: Any])["new"] as? Int == 2, "the versions are stored whatever the transform does")
        #expect((transforms.first { $0["status"] as? String == "failed" }?["error"] as? String)?.contains("Order Number") == true)

        // Nothing pending any more; --failed re-runs after the mapping is fixed.
        dir.write("mappings/acme.toml", Self.mapping)
        let pending = try SluiceBinary.run(["transform", "acme"], config: conf)
        #expect(pending.status == 0 && pending.stdout.contains("0 transformed"), "\(pending.stdout)")
        let fixed = try SluiceBinary.run(["transform", "acme", "--failed"], config: conf)
        #expect(fixed.status == 0, "\(fixed.stdout)\(fixed.stderr)")
        #expect(fixed.stdout.contains("38 rows") && fixed.stdout.contains("2 rejected"))
        // --all twice: same outputs, replaced atomically.
        let (a1, j1) = try SluiceBinary.json(["transform", "acme", "--all"], config: conf)
        let output = dir.sub("lake/") + ((j1 as! [[String: Any]]).compactMap { $0["output_path"] as? String }.first ?? "")
        let first = try sha256(ofFile: output)
        let (a2, _) = try SluiceBinary.json(["transform", "acme", "--all"], config: conf)
        #expect(a1.status == 0 && a2.status == 0)
        #expect(a1.stdout == a2.stdout)
        #expect(try sha256(ofFile: output) == first, "a re-run writes the same bytes")
        let rows = try TestManifest.query(dir, "SELECT status, count(*) FROM transform GROUP BY status ORDER BY status")
        #expect(rows.stdout == "failed|1\nok|3\nunmapped|3\n", "every run is recorded: \(rows.stdout)")
        let noMapping = try SluiceBinary.run(["transform", "acme", "--dataset", "nope"], config: conf)
        #expect(noMapping.status == 2)
        // --no-transform stores without transforming.
        dir.write("drop/orders_2026-10-02.csv", "Order No;Date;Customer;Total;Status;Note\n1;01.10.2026 10:00;X;1,00;A;\n")
        let plain = try SluiceBinary.run(["pull", "acme", "--no-transform"], config: conf)
        #expect(plain.status == 0 && !plain.stdout.contains("transform "))
        let later = try SluiceBinary.run(["transform", "acme"], config: conf)
        #expect(later.stdout.contains("1 transformed: 1 ok"), "\(later.stdout)")
        expectDatasetFoldersRead(dir)
    }
}

extension TransformTests {
    @Test func jsonLinesWithEpochTimesNullsAndATruncatedLastLine() throws {
        let dir = TempDir("transform")
        dir.config()
        dir.write("drop/events.jsonl", try Data(contentsOf: CSVReaderTests.fixtures.appendingPathComponent("initech/events.jsonl")))
        dir.write("mappings/acme.toml", """
            [datasets.events]
            match = ["*.jsonl"]
            format = "jsonl"
            compression = "snappy"
            max_reject_ratio = 0.1
            fields = [
              { name = "occurred_at", source = "ts", type = "timestamp", required = true },
              { name = "user", source = "user", type = "string", required = true },
              { name = "event", source = "event", type = "string" },
              { name = "value", source = "value", type = "float64" },
            ]
            """)
        let (r, obj) = try SluiceBinary.json(["pull", "acme"], config: dir.sub("agent.conf"))
        #expect(r.status == 0, "\(r.stderr)")
        let t = try #require(((obj as! [String: Any])["transforms"] as! [[String: Any]]).first)
        #expect(t["status"] as? String == "ok")
        // Python's json module on the same fixture: 21 lines, 20 objects, 4 null values.
        #expect(t["rows_written"] as? Int == 20 && t["rows_rejected"] as? Int == 1)
        let parquet = dir.sub("lake/") + (t["output_path"] as! String)
        let check = try Shell.run("/usr/bin/env", ["python3", "-c", """
            import pyarrow.parquet as pq, duckdb
            t = pq.read_table('\(parquet)')
            assert str(t.schema.field('occurred_at').type) == 'timestamp[us, tz=UTC]', t.schema
            md = pq.ParquetFile('\(parquet)').metadata
            assert md.row_group(0).column(0).compression == 'SNAPPY', md.row_group(0).column(0).compression
            assert t.column('value').null_count == 4, t.column('value').null_count
            r = duckdb.connect().execute("SELECT min(occurred_at)::VARCHAR, count(*), max(_row_number) FROM read_parquet('\(parquet)')").fetchone()
            print(r)
            """])
        #expect(check.status == 0, "\(check.stderr)")
        #expect(check.stdout.contains("2026-10-03 04:01:00") && check.stdout.contains(", 20, 20)"), "\(check.stdout)")
        let rejects = try String(contentsOfFile: dir.sub("lake/") + (t["rejects_path"] as! String), encoding: .utf8)
        #expect(rejects.contains("\"row\":21") && rejects.contains("truncated"))
        expectDatasetFoldersRead(dir)
    }
}

extension TransformTests {
    @Test func fixedWidthSkipsHeaderAndTrailerAndTrimsPadding() throws {
        let dir = TempDir("transform")
        dir.config()
        dir.write("drop/statement_202610.txt", try Data(contentsOf: CSVReaderTests.fixtures.appendingPathComponent("umbrella/statement_202610.txt")))
        dir.write("mappings/acme.toml", """
            [datasets.statement]
            match = ["statement_*.txt"]
            format = "fixed"
            skip_prefixes = ["HDR", "TRL"]
            encoding = "latin1"
            fields = [
              { name = "account", start = 1, width = 10, type = "string", required = true },
              { name = "booked_on", start = 11, width = 8, type = "date", format = "%Y%m%d", required = true },
              { name = "amount_cents", start = 19, width = 10, type = "int64", required = true },
              { name = "description", start = 29, width = 20, type = "string" },
            ]
            """)
        let (r, obj) = try SluiceBinary.json(["pull", "acme"], config: dir.sub("agent.conf"))
        #expect(r.status == 0, "\(r.stderr)")
        let t = try #require(((obj as! [String: Any])["transforms"] as! [[String: Any]]).first)
        #expect(t["status"] as? String == "ok" && t["rows_written"] as? Int == 20 && t["rows_rejected"] as? Int == 0, "\(t)")
        let parquet = dir.sub("lake/") + (t["output_path"] as! String)
        // Python over the same fixture: 20 records, amounts summing to -286423 cents, first booking 2026-10-02.
        let check = try Shell.run("/usr/bin/env", ["python3", "-c", """
            import pyarrow.parquet as pq, duckdb
            t = pq.read_table('\(parquet)')
            assert t.column('description').to_pylist()[3] == 'WIRE TRANSFER', t.column('description').to_pylist()[3]
            print(duckdb.connect().execute("SELECT sum(amount_cents), min(booked_on)::VARCHAR, min(_row_number) FROM read_parquet('\(parquet)')").fetchone())
            """])
        #expect(check.status == 0, "\(check.stderr)")
        #expect(check.stdout.contains("(-286423, '2026-10-02', 2)"), "\(check.stdout)")
        expectDatasetFoldersRead(dir)
        // Its observed schema: the defined fields by position, their types, the line lengths.
        let schema = try ObservedSchemaTests.schema(dir, path: "statement_202610.txt")
        #expect(ObservedSchemaTests.columns(schema) == ["1-10:integer", "11-18:integer", "19-28:integer", "29-48:text"], "\(schema)")
        #expect((schema["line_length"] as? [Int])?.count == 2 && schema["encoding"] as? String == "latin1", "\(schema)")
    }
}

extension TransformTests {
    /// The daemon's workers ask only for versions newer than the last round's newest version
    /// id, so a round reads the new versions, not the client's whole history. The versions
    /// they get are the ones `.pending` gets.
    @Test func pendingAfterTheNewestVersionSeesOnlyNewerUntransformedVersions() throws {
        let dir = TempDir("pending-after")
        dir.config()
        dir.write("mappings/acme.toml", Self.mapping)
        for day in 1...3 {
            dir.write("drop/orders_2026-10-0\(day).csv", "Order No;Date;Customer;Total;Status;Note\n\(day);01.10.2026 10:00;X;1,00;A;\n")
        }
        let conf = dir.sub("agent.conf")
        #expect(try SluiceBinary.run(["pull", "acme"], config: conf).status == 0)
        let manifest = try loadAgent(dir).openManifest()
        let newest = try manifest.newestVersionID()
        #expect(newest > 0)
        #expect(try manifest.transformCandidates(client: "acme", selection: .pending).isEmpty)
        #expect(try manifest.transformCandidates(client: "acme", selection: .pendingAfter(newest)).isEmpty)

        // Two new versions (a changed file and a new one), stored without transforming.
        dir.write("drop/orders_2026-10-01.csv", "Order No;Date;Customer;Total;Status;Note\n9;01.10.2026 10:00;Y;2,00;P;\n")
        dir.write("drop/orders_2026-10-04.csv", "Order No;Date;Customer;Total;Status;Note\n4;04.10.2026 10:00;Z;3,00;C;\n")
        #expect(try SluiceBinary.run(["pull", "acme", "--no-transform"], config: conf).status == 0)
        let all = try manifest.transformCandidates(client: "acme", selection: .pending)
        let after = try manifest.transformCandidates(client: "acme", selection: .pendingAfter(newest))
        #expect(all.count == 2)
        #expect(after.map(\.versionID) == all.map(\.versionID), "the same versions, in order")
        #expect(after.allSatisfy { $0.versionID > newest })
        #expect(try manifest.newestVersionID() == newest + 2)
        // Above the newest id, nothing is pending, whatever lies below it.
        #expect(try manifest.transformCandidates(client: "acme", selection: .pendingAfter(newest + 2)).isEmpty)
        expectDatasetFoldersRead(dir)
    }
}
