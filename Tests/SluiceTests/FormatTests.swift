import Foundation
import SluiceTestSupport
import Testing

/// JSON, Excel and the bad inputs of every format, through the real `sluice` process; every
/// Parquet file is read back with pyarrow and DuckDB.
@Suite(.enabled(if: ParquetTests.readersAvailable, "needs pyarrow and duckdb (python3 -m pip install pyarrow duckdb)"))
struct FormatTests {
    /// A lake with one client (`acme`, drop folder `drop/`) and its mapping file.
    static func lake(_ mapping: String, files: [String: Data]) -> TempDir {
        let dir = TempDir("format")
        dir.config()
        dir.write("mappings/acme.toml", mapping)
        for (name, data) in files { dir.write("drop/\(name)", data) }
        return dir
    }

    static func fixture(_ path: String) throws -> Data {
        try Data(contentsOf: CSVReaderTests.fixtures.appendingPathComponent(path))
    }

    /// `sluice pull acme --json`: the exit status and the transforms, by source path (an
    /// archive's members by `path#member`).
    static func pull(_ dir: TempDir) throws -> (status: Int32, transforms: [String: [String: Any]]) {
        let (r, obj) = try SluiceBinary.json(["pull", "acme"], config: dir.sub("agent.conf"))
        var out: [String: [String: Any]] = [:]
        for t in (obj as! [String: Any])["transforms"] as! [[String: Any]] {
            out[(t["path"] as! String) + ((t["member"] as? String).map { "#" + $0 } ?? "")] = t
        }
        return (r.status, out)
    }

    /// Runs Python with pyarrow and DuckDB on `parquet`; the script prints one line of JSON.
    static func check(_ parquet: String, _ script: String) throws -> [String: Any] {
        let r = try Shell.run("/usr/bin/env", ["python3", "-c", """
            import pyarrow.parquet as pq, duckdb, json, sys
            path = sys.argv[1]
            t = pq.read_table(path)
            con = duckdb.connect()
            def duck(q): return con.execute(q.replace('$P', "read_parquet('" + path + "')")).fetchone()
            \(script)
            """, parquet])
        #expect(r.status == 0, "\(r.stderr)")
        return (try JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any] ?? [:]
    }

    // MARK: JSON

    static let ticketsMapping = """
        [datasets.tickets]
        match = ["tickets*.json"]
        format = "json"
        records = "data.items"
        max_reject_ratio = 0.1
        fields = [
          { name = "ticket_id", source = "id", type = "string", required = true },
          { name = "created_at", source = "createdAt", type = "timestamp" },
          { name = "customer_id", source = "customer.id", type = "int64" },
          { name = "tier", source = "customer.tier", type = "string" },
          { name = "amount", source = "amount", type = "decimal(10,2)" },
          { name = "tags", source = "tags", type = "string" },
        ]
        """

    /// A renamed column still fills its field through `aliases`, in CSV and in JSON records;
    /// a required field missing under every name fails, naming them all.
    @Test func aliasesFillAFieldWhoseColumnWasRenamed() throws {
        let mapping = TransformTests.mapping
            .replacingOccurrences(of: "source = \"Order No\",", with: "source = \"Order No\", aliases = [\"Order Number\", \"OrderNo\"],")
            .replacingOccurrences(of: "source = \"Customer\",", with: "source = \"Customer\", aliases = [\"Customer Name\"],")
            + """

            [datasets.events]
            match = ["events_*.jsonl"]
            format = "jsonl"
            fields = [
              { name = "id", source = "id", aliases = ["event.id"], type = "int64", required = true },
              { name = "kind", source = "type", aliases = ["event.kind"], type = "string" },
            ]
            """
        let fixture = String(decoding: try Self.fixture("acme/orders_2026-10-01.csv"), as: UTF8.self)
        let firstLine = fixture.prefix { $0 != "\n" && $0 != "\r" }
        let renamed = fixture.replacingOccurrences(of: String(firstLine), with: String(firstLine)
            .replacingOccurrences(of: "Order No", with: "Order Number").replacingOccurrences(of: "Customer", with: "Customer Name"))
        let unnamed = fixture.replacingOccurrences(of: String(firstLine), with: String(firstLine).replacingOccurrences(of: "Order No", with: "Ref"))
        let dir = Self.lake(mapping, files: [
            "orders_a.csv": Data(fixture.utf8), "orders_b.csv": Data(renamed.utf8), "orders_c.csv": Data(unnamed.utf8),
            "events_1.jsonl": Data("{\"id\": 1, \"type\": \"open\"}\n{\"event\": {\"id\": 2, \"kind\": \"close\"}}\n".utf8),
        ])
        let (status, transforms) = try Self.pull(dir)
        #expect(status == 1, "the file without any of the names fails")
        for name in ["orders_a.csv", "orders_b.csv"] {
            #expect(transforms[name]?["status"] as? String == "ok" && transforms[name]?["rows_written"] as? Int == 38, "\(name): \(transforms[name] ?? [:])")
        }
        let same = try Self.check(dir.sub("lake/") + (transforms["orders_b.csv"]?["output_path"] as? String ?? ""), """
            print(json.dumps({"ids": t.column('order_id').null_count, "customers": t.column('customer').null_count,
                              "duck": duck("SELECT count(order_id), count(customer) FROM $P")[0]}))
            """)
        #expect(same["ids"] as? Int == 0 && same["customers"] as? Int == 0 && same["duck"] as? Int == 38, "\(same)")
        let missing = ArchiveTests.error(transforms["orders_c.csv"])
        #expect(missing.contains("missing required column \"Order No\" or \"Order Number\" or \"OrderNo\""), "\(missing)")
        let events = try #require(transforms["events_1.jsonl"])
        #expect(events["status"] as? String == "ok" && events["rows_written"] as? Int == 2, "\(events)")
        let kinds = try Self.check(dir.sub("lake/") + (events["output_path"] as? String ?? ""), """
            print(json.dumps({"kinds": t.column('kind').to_pylist(), "duck": duck("SELECT sum(id) FROM $P")[0]}))
            """)
        #expect(kinds["kinds"] as? [String] == ["open", "close"] && kinds["duck"] as? Int == 3, "\(kinds)")
    }

    @Test func jsonRecordsUnderADottedPathWithNestedObjectsNullsAndMixedNumbers() throws {
        let dir = Self.lake(Self.ticketsMapping, files: ["tickets.json": try Self.fixture("initech/tickets.json")])
        let (status, transforms) = try Self.pull(dir)
        #expect(status == 0)
        let t = try #require(transforms["tickets.json"])
        // Python's json and Decimal on the fixture: 15 items, one "N/A" amount (item 5).
        #expect(t["status"] as? String == "ok" && t["rows_written"] as? Int == 14 && t["rows_rejected"] as? Int == 1, "\(t)")
        let o = try Self.check(dir.sub("lake/") + (t["output_path"] as! String), """
            rows = {r['ticket_id']: r for r in t.to_pylist()}
            d = duck("SELECT count(*), sum(amount)::VARCHAR, sum(customer_id), count(*) - count(tier), min(_row_number), max(_row_number) FROM $P")
            print(json.dumps({"types": {f.name: str(f.type) for f in t.schema}, "tags2": rows['T-0002']['tags'],
              "amount3": str(rows['T-0003']['amount']), "created1": str(rows['T-0001']['created_at']), "duck": [str(x) for x in d]}))
            """)
        #expect((o["types"] as? [String: String])?["amount"] == "decimal128(10, 2)")
        #expect(o["tags2"] as? String == #"["a","b"]"#, "an array mapped to a string column is its JSON text")
        #expect(o["amount3"] as? String == "218.00", "a JSON number and a JSON string both read as decimals")
        #expect(o["created1"] as? String == "2026-10-02 01:15:00+00:00")
        #expect(o["duck"] as? [String] == ["14", "7016.50", "7115", "3", "1", "15"])
        let rejects = try String(contentsOfFile: dir.sub("lake/") + (t["rejects_path"] as! String), encoding: .utf8)
        #expect(rejects.contains(#""row":5"#) && rejects.contains("N/A") && rejects.contains(#""customer":{"id":505"#))
        expectDatasetFoldersRead(dir)
    }

    /// Past the first 1,000 lines (the schema sample), JSON Lines values are picked out of each
    /// line without building it. The same 600 lines twice: each line of the second copy (from
    /// line 1,001 on, picked) must give what the same line gave in the first (built): values,
    /// nulls, aliases, the first of two equal keys, escapes, nested values as JSON text, epoch
    /// seconds, and rejects with the same reasons.
    @Test func pickedJSONLinesGiveWhatBuiltOnesGive() throws {
        let mapping = """
            [datasets.events]
            match = ["events_*.jsonl"]
            format = "jsonl"
            max_reject_ratio = 0.5
            fields = [
              { name = "id", source = "id", type = "int64", required = true },
              { name = "ts", source = "ts", type = "timestamp" },
              { name = "customer_id", source = "customer.id", aliases = ["cust_id"], type = "int64" },
              { name = "name", source = "customer.name", type = "string" },
              { name = "amount", source = "amount", type = "decimal(10,2)" },
              { name = "tags", source = "tags", type = "string" },
              { name = "meta", source = "meta", type = "string" },
              { name = "active", source = "active", type = "bool" },
            ]
            """
        let shapes = [
            #"{"id": ID, "ts": "2026-10-01T10:00:00Z", "customer": {"id": 5, "name": "Zoë "q""}, "amount": 12.5, "tags": [1, 2], "active": true}"#,
            #"{"id": ID, "ts": 1791000060, "customer": null, "amount": "7.25", "meta": {"a": 1, "b": [true, null]}, "active": false}"#,
            #"{"id": ID, "cust_id": 77, "customer": {"name": "Müller"}, "amount": null}"#,
            #"{"id": ID, "customer": "not an object", "amount": 1}"#,
            #"{"id": ID, "id": 999, "amount": 3.10, "amount": 4}"#,
            #"{"id": ID, "amount": 2}"#,
            #"{"id": ID, "amount": "abc", "active": "maybe"}"#,
            #"{"id": ID, "ts": "31.02.2026"}"#,
            #"{"id": ID,"#,
            #"[ID, 2]"#,
            #"  {  "id" : ID , "customer" : { "id" : 8 , "id" : 9 } , "tags" : "[x]" }  "#,
            #"{"id": ID, "customer": {"id": 1, "extra": {"deep": [1, {"x": "y"}]}}, "active": "YES"}"#,
            // Non-ASCII keys beside the mapped ones (U+212A KELVIN SIGN is "K" to a Swift
            // string): the picker leaves such a line to the whole way.
            "{\"id\": ID, \"Größe\": 3, \"amount\u{212A}\": 9, \"amount\": 5}",
        ]
        var lines: [String] = []
        for k in 0..<600 { lines.append(shapes[k % shapes.count].replacingOccurrences(of: "ID", with: "\(k % 50)")) }
        let text = (lines + lines).joined(separator: "\n") + "\n"
        let dir = Self.lake(mapping, files: ["events_1.jsonl": Data(text.utf8)])
        let (_, transforms) = try Self.pull(dir)
        let t = try #require(transforms["events_1.jsonl"])
        #expect(t["status"] as? String == "ok" && (t["rows_rejected"] as? Int ?? 0) > 0, "\(t)")
        let r = try Shell.run("/usr/bin/env", ["python3", "-c", """
            import json, re, sys, pyarrow.parquet as pq, duckdb
            rows = pq.read_table(sys.argv[1]).to_pylist()
            assert duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{sys.argv[1]}')").fetchone()[0] == len(rows)
            by = {r['_row_number']: {k: v for k, v in r.items() if not k.startswith('_')} for r in rows}
            rejects = {}
            for line in open(sys.argv[2]):
                j = json.loads(line)
                # A reason may name its record's number, which differs between the copies.
                rejects[j['row']] = {k: re.sub(r'record \\d+', 'record N', v) for k, v in j['reasons'].items()}
            bad = []
            for n in range(1, 601):
                if by.get(n) != by.get(n + 600) or rejects.get(n) != rejects.get(n + 600):
                    bad.append((n, by.get(n), by.get(n + 600), rejects.get(n), rejects.get(n + 600)))
            print(json.dumps({"rows": len(rows), "rejects": len(rejects), "bad": bad[:5]}, default=str))
            """, dir.sub("lake/") + (t["output_path"] as! String), dir.sub("lake/") + (t["rejects_path"] as! String)])
        #expect(r.status == 0, "\(r.stderr)")
        let out = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any] ?? [:]
        #expect((out["bad"] as? [Any])?.isEmpty == true && (out["rows"] as? Int ?? 0) > 500 && (out["rejects"] as? Int ?? 0) > 100, "\(r.stdout)")
    }

    @Test func jsonOfTheWrongShapeFailsTheFileKeepsTheRawVersionAndReRunsAfterTheFix() throws {
        let wrong = Self.ticketsMapping.replacingOccurrences(of: #"records = "data.items""#, with: #"records = "data.rows""#)
        let dir = Self.lake(wrong, files: ["tickets.json": try Self.fixture("initech/tickets.json")])
        let (status, transforms) = try Self.pull(dir)
        #expect(status == 1, "a failed transform makes pull exit 1")
        let t = try #require(transforms["tickets.json"])
        #expect(t["status"] as? String == "failed")
        let error = t["error"] as? String ?? ""
        #expect(error.contains("rows") && error.contains("items"), "the error names the missing key and what is there: \(error)")
        let history = try SluiceBinary.run(["history", "acme"], config: dir.sub("agent.conf"))
        #expect(history.stdout.contains("tickets.json"), "the raw version is kept")

        dir.write("mappings/acme.toml", Self.ticketsMapping)
        let rerun = try SluiceBinary.run(["transform", "acme", "--failed"], config: dir.sub("agent.conf"))
        #expect(rerun.status == 0 && rerun.stdout.contains("1 ok"), "\(rerun.stdout)\(rerun.stderr)")
        expectDatasetFoldersRead(dir)
    }

    @Test func aTopLevelArrayATruncatedDocumentAndNonObjectRecords() throws {
        let mapping = """
            [datasets.items]
            match = ["*.json"]
            format = "json"
            max_reject_ratio = 0.5
            fields = [
              { name = "id", source = "id", type = "int64", required = true },
              { name = "ts", source = "ts", type = "timestamp" },
            ]
            """
        let dir = Self.lake(mapping, files: [
            "array.json": Data(#"[{"id": 1}, {"id": 2}, 7, {"id": 3}]"#.utf8),
            "epoch.json": Data(#"[{"id": 1, "ts": 1700000000.5}, {"id": 2, "ts": 9300000000000}, {"id": 3, "ts": -1e308}]"#.utf8),
            "cut.json": Data(#"[{"id": 1}, {"id": 2}, {"id"#.utf8),
            "object.json": Data(#"{"items": [{"id": 1}]}"#.utf8),
        ])
        let (status, transforms) = try Self.pull(dir)
        #expect(status == 1)
        let array = try #require(transforms["array.json"])
        #expect(array["status"] as? String == "ok" && array["rows_written"] as? Int == 3 && array["rows_rejected"] as? Int == 1)
        let cut = try #require(transforms["cut.json"])
        #expect(cut["status"] as? String == "failed" && (cut["error"] as? String ?? "").contains("end of input"), "\(cut)")
        let epoch = try #require(transforms["epoch.json"])
        #expect(epoch["status"] as? String == "failed" && epoch["rows_written"] as? Int == 1 && epoch["rows_rejected"] as? Int == 2,
                "epoch seconds beyond the year 9999 are rejects, not a crash: \(epoch)")
        let object = try #require(transforms["object.json"])
        #expect((object["error"] as? String ?? "").contains(#"records = "items""#), "the error suggests the records path: \(object)")
        expectDatasetFoldersRead(dir)
    }

    // MARK: Excel

    static let salesMapping = """
        [datasets.sales]
        match = ["sales_*.xlsx"]
        format = "xlsx"
        sheet = "Sales"
        max_reject_ratio = 0.1
        fields = [
          { name = "region", source = "Region", type = "string", required = true },
          { name = "rep", source = "Rep", type = "string" },
          { name = "sold_at", source = "Sale Date", type = "timestamp" },
          { name = "units", source = "Units", type = "int64" },
          { name = "unit_price", source = "Unit Price", type = "decimal(10,2)" },
          { name = "paid", source = "Paid", type = "bool" },
        ]
        """

    @Test func xlsxSecondSheetWithExcelDatesBooleansAndATextValueInANumberColumn() throws {
        let dir = Self.lake(Self.salesMapping, files: ["sales_2026-09.xlsx": try Self.fixture("hooli/sales_2026-09.xlsx")])
        let (status, transforms) = try Self.pull(dir)
        #expect(status == 0)
        let t = try #require(transforms["sales_2026-09.xlsx"])
        // openpyxl on the fixture: 30 data rows on "Sales"; row 8 has "many" units.
        #expect(t["status"] as? String == "ok" && t["rows_written"] as? Int == 29 && t["rows_rejected"] as? Int == 1, "\(t)")
        let o = try Self.check(dir.sub("lake/") + (t["output_path"] as! String), """
            rows = {r['_row_number']: r for r in t.to_pylist()}
            d = duck("SELECT count(*), count(sold_at), sum(CASE WHEN paid THEN 1 ELSE 0 END), min(sold_at)::VARCHAR FROM $P")
            print(json.dumps({"sold3": str(rows[3]['sold_at']), "price2": str(rows[2]['unit_price']), "types": {f.name: str(f.type) for f in t.schema},
              "duck": [str(x) for x in d]}))
            """)
        #expect(o["sold3"] as? String == "2026-09-02 01:00:00+00:00", "Excel serial 46267.0416… is 2026-09-02 01:00")
        #expect(o["price2"] as? String == "507.84")
        #expect((o["types"] as? [String: String])?["sold_at"] == "timestamp[us, tz=UTC]")
        let duck = o["duck"] as? [String] ?? []
        #expect(duck.first == "29" && duck.last?.hasPrefix("2026-09-01 00:00:00") == true, "\(duck)")
        let rejects = try String(contentsOfFile: dir.sub("lake/") + (t["rejects_path"] as! String), encoding: .utf8)
        #expect(rejects.contains(#""row":8"#) && rejects.contains("many"))
        expectDatasetFoldersRead(dir)
    }

    @Test func aCorruptOrTruncatedXlsxOrAMissingSheetFailsWithAClearReason() throws {
        let good = try Self.fixture("hooli/sales_2026-09.xlsx")
        var flipped = good
        // Damage the compressed bytes of the middle of the archive (the sheet data).
        for i in stride(from: good.count / 3, to: good.count / 3 + 200, by: 1) { flipped[i] ^= 0x5A }
        let noSheet = Self.salesMapping.replacingOccurrences(of: #"sheet = "Sales""#, with: #"sheet = "Umsatz""#)
            .replacingOccurrences(of: #"match = ["sales_*.xlsx"]"#, with: #"match = ["sales_*.xlsx", "other_*.xlsx"]"#)
        let dir = Self.lake(noSheet, files: [
            "sales_random.xlsx": Data((0..<4096).map { _ in UInt8.random(in: 0...255) }),
            "sales_cut.xlsx": good.prefix(good.count / 2),
            "sales_flipped.xlsx": flipped,
            "sales_2026-09.xlsx": good,
        ])
        let (status, transforms) = try Self.pull(dir)
        #expect(status == 1)
        for name in ["sales_random.xlsx", "sales_cut.xlsx", "sales_flipped.xlsx"] {
            let t = try #require(transforms[name])
            let error = t["error"] as? String ?? ""
            #expect(t["status"] as? String == "failed" && (error.contains("xlsx") || error.contains("corrupt") || error.contains("damaged")), "\(name): \(error)")
        }
        let missing = try #require(transforms["sales_2026-09.xlsx"])
        #expect((missing["error"] as? String ?? "").contains("Umsatz") && (missing["error"] as? String ?? "").contains("Sales"), "\(missing)")
        let history = try SluiceBinary.run(["history", "acme"], config: dir.sub("agent.conf"))
        #expect(history.stdout.split(separator: "\n").filter { $0.contains("sales_") }.count == 4, "every raw version is kept:\n\(history.stdout)")
        expectDatasetFoldersRead(dir)
    }

    /// A sheet that unzips to a thousand times its compressed size is refused before it fills
    /// the disk; Python's zipfile writes it.
    @Test func anXlsxZipBombIsRefused() throws {
        let dir = Self.lake(Self.salesMapping, files: [:])
        try FileManager.default.createDirectory(atPath: dir.sub("drop"), withIntermediateDirectories: true)
        let made = try Shell.run("/usr/bin/env", ["python3", "-c", """
            import zipfile, sys
            src = zipfile.ZipFile(sys.argv[1])
            with zipfile.ZipFile(sys.argv[2], 'w', zipfile.ZIP_DEFLATED) as z:
                for name in src.namelist():
                    data = src.read(name)
                    if name == 'xl/worksheets/sheet2.xml':
                        data = data.replace(b'<sheetData>', b'<sheetData>' + b' ' * (100 << 20))
                    z.writestr(name, data)
            """, CSVReaderTests.fixtures.appendingPathComponent("hooli/sales_2026-09.xlsx").path, dir.sub("drop/sales_bomb.xlsx")])
        #expect(made.status == 0, "\(made.stderr)")
        let (status, transforms) = try Self.pull(dir)
        #expect(status == 1)
        let t = try #require(transforms["sales_bomb.xlsx"])
        #expect(t["status"] as? String == "failed" && (t["error"] as? String ?? "").contains("zip bomb"), "\(t)")
        let leftovers = ((try? FileManager.default.contentsOfDirectory(atPath: dir.sub("lake/processed"))) ?? []).filter { $0.hasPrefix(".%tmp") }
            + ((try? FileManager.default.contentsOfDirectory(atPath: dir.sub("state/spool"))) ?? [])
        #expect(leftovers.isEmpty)
    }

    // MARK: CSV traps

    @Test func windows1252WithAPreambleAndARaggedRow() throws {
        let mapping = """
            [datasets.customers]
            match = ["customers*.csv"]
            format = "csv"
            encoding = "windows-1252"
            skip_rows = 2
            max_reject_ratio = 0.1
            fields = [
              { name = "id", source = "id", type = "int64", required = true },
              { name = "name", source = "name", type = "string" },
              { name = "city", source = "city", type = "string" },
              { name = "active", source = "active", type = "bool", true_values = ["Y"], false_values = ["N"] },
              { name = "credit_limit", source = "credit_limit", type = "decimal(12,2)" },
              { name = "signup", source = "signup", type = "date" },
            ]
            """
        let dir = Self.lake(mapping, files: ["customers.csv": try Self.fixture("globex/customers.csv")])
        let (_, transforms) = try Self.pull(dir)
        let t = try #require(transforms["customers.csv"])
        // Python's csv module (cp1252) on the fixture: 26 rows, one with 3 fields.
        #expect(t["status"] as? String == "ok" && t["rows_written"] as? Int == 25 && t["rows_rejected"] as? Int == 1, "\(t)")
        let o = try Self.check(dir.sub("lake/") + (t["output_path"] as! String), """
            rows = {r['id']: r for r in t.to_pylist()}
            d = duck("SELECT sum(credit_limit)::VARCHAR, sum(CASE WHEN active THEN 1 ELSE 0 END), min(signup)::VARCHAR FROM $P")
            print(json.dumps({"name1": rows[1]['name'], "city1": rows[1]['city'], "signup": str(t.schema.field('signup').type), "duck": [str(x) for x in d]}))
            """)
        #expect(o["name1"] as? String == "Ángel Pérez" && o["city1"] as? String == "Málaga")
        #expect(o["signup"] as? String == "date32[day]")
        #expect((o["duck"] as? [String])?.prefix(2) == ["644986.01", "16"])

        // The same file read as UTF-8: the accented rows are rejected as invalid UTF-8, and
        // the reason names the encoding to check.
        dir.write("mappings/acme.toml", mapping.replacingOccurrences(of: #"encoding = "windows-1252""#, with: #"encoding = "utf-8""#)
            .replacingOccurrences(of: "max_reject_ratio = 0.1", with: "max_reject_ratio = 1"))
        let rerun = try SluiceBinary.json(["transform", "acme", "--all"], config: dir.sub("agent.conf"))
        let r = try #require((rerun.1 as? [[String: Any]])?.first, "transform --json prints a list")
        #expect((r["rows_rejected"] as? Int ?? 0) > 1)
        let rejects = try String(contentsOfFile: dir.sub("lake/") + (r["rejects_path"] as! String), encoding: .utf8)
        #expect(rejects.contains("invalid UTF-8 (is the file's encoding utf-8?)"))
        expectDatasetFoldersRead(dir)
    }

    @Test func raggedRowsInvalidUTF8AnUnbalancedQuoteATenMegabyteFieldAndDuplicateHeaders() throws {
        let mapping = """
            [datasets.traps]
            match = ["traps*.csv"]
            format = "csv"
            max_reject_ratio = 1
            fields = [
              { name = "id", source = "id", type = "int64", required = true },
              { name = "text", source = "text", type = "string" },
            ]

            [datasets.dups]
            match = ["dups.csv"]
            format = "csv"
            fields = [{ name = "v", source = "v", type = "string" }]

            [datasets.dups_by_number]
            match = ["dups2.csv"]
            format = "csv"
            fields = [{ name = "v", source = "3", type = "string" }]
            """
        var traps = Data("id,text\n1,ok\n2,short,extra\n3\n4,\"".utf8) + Data([0xC3, 0x28]) + Data("\"\n".utf8)
        traps += Data("5,\"".utf8) + Data(repeating: UInt8(ascii: "a"), count: 10 << 20) + Data("\"\n6,\"never closed\n7,x\n".utf8)
        let dir = Self.lake(mapping, files: [
            "traps.csv": traps,
            "dups.csv": Data("id,v,v\n1,a,b\n".utf8),
            "dups2.csv": Data("id,v,v\n1,a,b\n".utf8),
        ])
        let (_, transforms) = try Self.pull(dir)
        let t = try #require(transforms["traps.csv"])
        // Rows 1 and 5 (the 10 MB field) are good; 2 and 3 are ragged, 4 is invalid UTF-8, and
        // the quote opened on line 6 swallows the rest of the file into one malformed record.
        #expect(t["status"] as? String == "ok" && t["rows_written"] as? Int == 2 && t["rows_rejected"] as? Int == 4, "\(t)")
        let o = try Self.check(dir.sub("lake/") + (t["output_path"] as! String), """
            d = duck("SELECT count(*), max(length(text)) FROM $P")
            print(json.dumps({"duck": [str(x) for x in d], "arrow": max(len(x or '') for x in t.column('text').to_pylist())}))
            """)
        #expect(o["duck"] as? [String] == ["2", "\(10 << 20)"] && o["arrow"] as? Int == 10 << 20)
        let rejects = try String(contentsOfFile: dir.sub("lake/") + (t["rejects_path"] as! String), encoding: .utf8)
        #expect(rejects.contains("row has 3 fields") && rejects.contains("row has 1 fields") && rejects.contains("invalid UTF-8"))
        #expect(rejects.contains("unbalanced quote"))

        let dups = try #require(transforms["dups.csv"])
        #expect(dups["status"] as? String == "failed" && (dups["error"] as? String ?? "").contains("twice"), "\(dups)")
        let byNumber = try #require(transforms["dups2.csv"])
        #expect(byNumber["status"] as? String == "ok" && byNumber["rows_written"] as? Int == 1)
        expectDatasetFoldersRead(dir)
    }

    // MARK: Size

    /// A generated CSV of `SLUICE_BIG_CSV_MB` (default 1024) MB goes through ingest and
    /// transform with the peak RSS well under 256 MiB, into several row groups; DuckDB and
    /// pyarrow count every row.
    @Test func aOneGigabyteCSVIsStreamedInBoundedMemory() throws {
        let megabytes = Int(ProcessInfo.processInfo.environment["SLUICE_BIG_CSV_MB"] ?? "") ?? 1024
        let dir = TempDir("bigcsv")
        dir.config()
        dir.write("mappings/acme.toml", """
            [datasets.big]
            match = ["big.csv"]
            format = "csv"
            fields = [
              { name = "id", source = "id", type = "int64", required = true },
              { name = "amount", source = "amount", type = "decimal(12,2)" },
              { name = "text", source = "text", type = "string" },
            ]
            """)
        try FileManager.default.createDirectory(atPath: dir.sub("drop"), withIntermediateDirectories: true)
        let fd = open(dir.sub("drop/big.csv"), O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        #expect(fd >= 0)
        var rows = 0
        var written = 0
        var chunk = Array("id,amount,text\n".utf8)
        let words = ["alpha", "beta", "gamma, delta", "epsilon", "zeta \"eta\""]
        while written < megabytes << 20 {
            for _ in 0..<1000 {
                rows += 1
                let w = words[rows % words.count] + " \(rows) " + String(repeating: "x", count: 900 + rows % 97)
                let text = w.contains(",") || w.contains("\"") ? "\"\(w.replacingOccurrences(of: "\"", with: "\"\""))\"" : w
                chunk += Array("\(rows),\(rows % 100_000).\(rows % 100 < 10 ? "0" : "")\(rows % 100),\(text)\n".utf8)
            }
            chunk.withUnsafeBytes { written += Glibc.write(fd, $0.baseAddress!, $0.count) }
            chunk.removeAll(keepingCapacity: true)
        }
        close(fd)

        let r = try Shell.run("/usr/bin/env", ["python3", "-c", """
            import resource, subprocess, sys, json
            p = subprocess.run(sys.argv[1:], capture_output=True, text=True)
            print(json.dumps({"status": p.returncode, "rss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "out": p.stdout, "err": p.stderr}))
            """, SluiceBinary.path, "pull", "acme", "--json", "--config", dir.sub("agent.conf")])
        let run = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.stderr)")
        #expect(run["status"] as? Int == 0, "\(run["err"] ?? "")")
        let rss = run["rss_kib"] as? Int ?? .max
        #expect(rss < 256 * 1024, "peak RSS \(rss) KiB for \(megabytes) MB")
        let pulled = try #require(try JSONSerialization.jsonObject(with: Data((run["out"] as? String ?? "").utf8)) as? [String: Any])
        let t = try #require((pulled["transforms"] as? [[String: Any]])?.first)
        #expect(t["status"] as? String == "ok" && t["rows_written"] as? Int == rows, "\(t)")
        let output = try #require(t["output_path"] as? String)
        let o = try Self.check(dir.sub("lake/") + output, """
            md = pq.ParquetFile(path).metadata
            d = duck("SELECT count(*), max(id), count(DISTINCT amount) FROM $P")
            encodings = set()
            for g in range(md.num_row_groups): encodings |= set(md.row_group(g).column(0).encodings)
            print(json.dumps({"groups": md.num_row_groups, "rows": md.num_rows, "duck": [int(x) for x in d], "id_encodings": sorted(encodings)}))
            """)
        #expect(o["rows"] as? Int == rows && (o["duck"] as? [Int])?.prefix(2) == [rows, rows])
        if megabytes >= 512 {
            #expect((o["groups"] as? Int ?? 0) > 1, "row groups are bounded by size: \(o)")
        }
        if rows > 100_000 {
            #expect((o["id_encodings"] as? [String] ?? []).contains("PLAIN"), "a column of distinct ids leaves the dictionary: \(o)")
        }
    }
}
