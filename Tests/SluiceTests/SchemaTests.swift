import Foundation
import SluiceFormats
import SluiceTestSupport
import Testing

/// Observed schemas: what the values of a column look like, and the manifest's record of
/// each distinct schema a client's units were seen to have.
struct SchemaSnifferTests {
    static func type(_ text: String) -> SniffedType {
        Array(text.utf8).withUnsafeBufferPointer { SniffedType.of($0) }
    }

    @Test(arguments: [
        ("", SniffedType.empty), ("  ", .empty), ("true", .bool), ("No", .bool), ("42", .integer), ("-7", .integer), ("+3", .integer),
        ("12.50", .decimal), ("12,5", .decimal), ("1.234,56", .decimal), ("-0.5", .decimal), ("2026-10-01", .date), ("01.10.2026", .date),
        ("10/01/2026", .date), ("2026-10-01T10:00:00Z", .timestamp), ("01.10.2026 22:36", .timestamp), ("ACME", .text), ("1e5", .text),
        ("12.", .text), ("2026-13", .text), ("O'Brien & Sons", .text),
    ])
    func aValueHasTheNarrowestTypeItFits(_ text: String, _ expected: SniffedType) {
        #expect(Self.type(text) == expected, "\(text)")
    }

    @Test func aColumnTakesTheTypeEveryValueFits() {
        #expect(SniffedType.integer.merged(with: .decimal) == .decimal)
        #expect(SniffedType.date.merged(with: .timestamp) == .timestamp)
        #expect(SniffedType.empty.merged(with: .bool) == .bool)
        #expect(SniffedType.integer.merged(with: .empty) == .integer)
        #expect(SniffedType.bool.merged(with: .integer) == .text)
        #expect(SniffedType.date.merged(with: .integer) == .text)
    }
}

@Suite(.enabled(if: ParquetTests.readersAvailable, "needs pyarrow and duckdb (python3 -m pip install pyarrow duckdb)"))
struct ObservedSchemaTests {
    static let mapping = """
        [datasets.orders]
        match = ["orders_*.csv"]
        format = "csv"
        delimiter = ";"
        fields = [
          { name = "id", source = "Id", aliases = ["Order Number"], type = "int64", required = true },
          { name = "amount", source = "Amount", type = "string" },
          { name = "note", source = "Note", type = "string" },
        ]
        """

    @Test func everyTransformRecordsTheSchemaItSawAndIdenticalSchemasShareARow() throws {
        let a = "Id;Amount;Day;Flag;Note\n1;12,50;01.10.2026;yes;\n2;3;02.10.2026;no;\n"
        let dir = FormatTests.lake(Self.mapping, files: [
            "orders_1.csv": Data(a.utf8),
            "orders_2.csv": Data(a.replacingOccurrences(of: "1;12,50", with: "7;8,25").utf8),     // the same schema
            "orders_3.csv": Data("Order Number;Amount;Day;Flag;Note;Extra\n1;x;2026-10-01 10:00;yes;n;\n".utf8),  // renamed, a new column
        ])
        let (status, transforms) = try FormatTests.pull(dir)
        #expect(status == 0, "\(transforms)")
        let rows = try TestManifest.query(dir, """
            SELECT f.path, s.id, s.schema FROM transform t JOIN version v ON v.id = t.version_id JOIN file f ON f.id = v.file_id
            JOIN source_schema s ON s.id = t.source_schema_id ORDER BY f.path
            """).stdout.split(separator: "\n").map { $0.split(separator: "|", maxSplits: 2).map(String.init) }
        #expect(rows.count == 3, "\(rows)")
        guard rows.count == 3 else { return }
        #expect(rows[0][1] == rows[1][1] && rows[2][1] != rows[0][1], "identical schemas share one row: \(rows)")
        let first = try #require(try JSONSerialization.jsonObject(with: Data(rows[0][2].utf8)) as? [String: Any])
        let columns = (first["columns"] as? [[String: String]] ?? []).map { "\($0["name"] ?? ""):\($0["type"] ?? "")" }
        #expect(columns == ["Id:integer", "Amount:decimal", "Day:date", "Flag:bool", "Note:empty"], "\(columns)")
        #expect(first["format"] as? String == "csv" && first["delimiter"] as? String == ";" && first["encoding"] as? String == "utf-8", "\(first)")
        #expect(first["fields"] as? [String: String] == ["id": "Id", "amount": "Amount", "note": "Note"])
        let third = try #require(try JSONSerialization.jsonObject(with: Data(rows[2][2].utf8)) as? [String: Any])
        // The alias that filled the field is part of the schema, and so is the new column.
        #expect((third["fields"] as? [String: String])?["id"] == "Order Number", "\(third)")
        let third_columns = (third["columns"] as? [[String: String]] ?? []).map { "\($0["name"] ?? ""):\($0["type"] ?? "")" }
        #expect(third_columns == ["Order Number:integer", "Amount:text", "Day:timestamp", "Flag:bool", "Note:text", "Extra:empty"], "\(third_columns)")
    }

    @Test func aFileMissingARequiredColumnStillRecordsWhatItHad() throws {
        let dir = FormatTests.lake(Self.mapping, files: ["orders_1.csv": Data("Ref;Amount\n1;2\n".utf8)])
        let (status, _) = try FormatTests.pull(dir)
        #expect(status == 1)
        let schema = try TestManifest.query(dir, "SELECT s.schema FROM transform t JOIN source_schema s ON s.id = t.source_schema_id").stdout
        #expect(schema.contains("\"name\":\"Ref\"") && schema.contains("\"fields\":{}"), "\(schema)")
    }

    /// The schemas of a unit's rows recorded for `path` (its canonical JSON), read back.
    static func schema(_ dir: TempDir, path: String) throws -> [String: Any] {
        let text = try TestManifest.query(dir, """
            SELECT s.schema FROM transform t JOIN version v ON v.id = t.version_id JOIN file f ON f.id = v.file_id
            JOIN source_schema s ON s.id = t.source_schema_id WHERE f.path = '\(path)'
            """).stdout
        return (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
    }

    static func columns(_ schema: [String: Any]) -> [String] {
        (schema["columns"] as? [[String: String]] ?? []).map { "\($0["name"] ?? ""):\($0["type"] ?? "")" }
    }

    @Test func jsonRecordsAndSpreadsheetsHaveObservedSchemasToo() throws {
        let mapping = FormatTests.salesMapping + """

            [datasets.events]
            match = ["events_*.jsonl"]
            format = "jsonl"
            fields = [
              { name = "id", source = "id", type = "int64", required = true },
              { name = "city", source = "customer.city", aliases = ["city"], type = "string" },
            ]
            """
        let jsonl = "{\"id\": 1, \"customer\": {\"city\": \"Berlin\", \"since\": \"2026-01-02\"}, \"total\": 12.5, \"tags\": [1]}\n"
            + "{\"id\": 2, \"customer\": {\"city\": null}, \"total\": 3, \"paid\": true}\n"
        let dir = FormatTests.lake(mapping, files: [
            "events_1.jsonl": Data(jsonl.utf8), "sales_2026-09.xlsx": try FormatTests.fixture("hooli/sales_2026-09.xlsx"),
        ])
        let (_, transforms) = try FormatTests.pull(dir)
        #expect(transforms["events_1.jsonl"]?["status"] as? String == "ok")
        let events = try Self.schema(dir, path: "events_1.jsonl")
        #expect(Self.columns(events) == ["id:integer", "customer.city:text", "customer.since:date", "total:decimal", "tags:text", "paid:bool"],
                "\(events)")
        #expect(events["fields"] as? [String: String] == ["id": "id", "city": "customer.city"] && events["format"] as? String == "jsonl", "\(events)")
        let sales = try Self.schema(dir, path: "sales_2026-09.xlsx")
        let names = Self.columns(sales)
        #expect(!names.isEmpty && sales["format"] as? String == "xlsx" && (sales["fields"] as? [String: String])?.isEmpty == false, "\(sales)")
    }

    @Test func theSchemaHistoryAfterFiveDeliveriesShowsEachChange() throws {
        let dir = FormatTests.lake(Self.mapping, files: [:])
        let conf = dir.sub("agent.conf")
        let deliveries = [
            "Id;Amount;Note\n1;12,50;a\n",
            "Id;Amount;Note\n2;3,10;b\n",                         // the same schema
            "Order Number;Amount;Note;Extra\n3;4,00;c;x\n",        // renamed through the alias, a column added
            "Amount;Order Number;Note;Extra\n5,00;4;d;y\n",        // moved
            "Order Number;Amount;Note;Extra\n5;n/a;e;z\n",         // moved back, Amount now text
        ]
        for (n, text) in deliveries.enumerated() {
            dir.write("drop/orders_\(n + 1).csv", text)
            _ = try FormatTests.pull(dir)
        }
        let (r, obj) = try SluiceBinary.json(["schema", "acme"], config: conf)
        #expect(r.status == 0, "\(r.stderr)")
        let datasets = obj as? [[String: Any]] ?? []
        let schemas = datasets.first?["schemas"] as? [[String: Any]] ?? []
        #expect(datasets.count == 1 && datasets.first?["dataset"] as? String == "orders" && schemas.count == 4, "\(obj)")
        guard schemas.count == 4 else { return }
        #expect(schemas[0]["units"] as? Int == 2 && schemas[0]["drift"] is NSNull)
        #expect((schemas[0]["first"] as? [String: Any])?["path"] as? String == "orders_1.csv" && (schemas[0]["last"] as? [String: Any])?["path"] as? String == "orders_2.csv")
        let d1 = schemas[1]["drift"] as? [String: Any] ?? [:]
        #expect(d1["added"] as? [String] == ["Extra"] && d1["removed"] as? [String] == [], "\(d1)")
        #expect((d1["renamed"] as? [[String: String]]) == [["field": "id", "from": "Id", "to": "Order Number"]], "\(d1)")
        let d2 = schemas[2]["drift"] as? [String: Any] ?? [:]
        #expect(((d2["moved"] as? [[String: Any]]) ?? []).contains { $0["column"] as? String == "Amount" && $0["from"] as? Int == 2 && $0["to"] as? Int == 1 }, "\(d2)")
        let d3 = schemas[3]["drift"] as? [String: Any] ?? [:]
        let change = (d3["type_changes"] as? [[String: Any]]) ?? []
        #expect(change.count == 1 && change.first?["column"] as? String == "Amount" && change.first?["from"] as? String == "decimal"
                && change.first?["to"] as? String == "text" && change.first?["examples"] as? [String] == ["n/a"], "\(d3)")
        // The text form says the same, and an unknown dataset is a usage error.
        let text = try SluiceBinary.run(["schema", "acme"], config: conf)
        #expect(text.stdout.contains("renamed: Id → Order Number (field id)") && text.stdout.contains("type changed: Amount decimal → text (e.g. \"n/a\")"),
                "\(text.stdout)")
        let bad = try SluiceBinary.run(["schema", "acme", "--dataset", "nope"], config: conf)
        #expect(bad.status == 2 && bad.stderr.contains("no dataset 'nope'"), "\(bad.stderr)")
    }

    /// Each policy against the delivery before: `hold` keeps the raw version, writes nothing and
    /// records `held` until `transform --held`; `fail` fails; the defaults change nothing.
    @Test func schemaChangePoliciesHoldFailOrLetThrough() throws {
        let policies = Self.mapping.replacingOccurrences(of: "delimiter = \";\"", with: """
            delimiter = ";"
            on_new_column = "hold"
            on_missing_column = "fail"
            on_type_change = "hold"
            """)
        let dir = FormatTests.lake(policies, files: ["orders_1.csv": Data("Id;Amount;Note\n1;12,50;a\n".utf8)])
        let conf = dir.sub("agent.conf")
        #expect(try FormatTests.pull(dir).status == 0)
        dir.write("drop/orders_2.csv", "Id;Amount;Note;Extra\n2;3,10;b;x\n")          // a new column: held
        dir.write("drop/orders_3.csv", "Id;Amount\n3;4,00\n")                          // note missing: fails
        dir.write("drop/orders_4.csv", "Id;Amount;Note\n4;n/a;d\n")                    // Amount turns text: held
        let (status, transforms) = try FormatTests.pull(dir)
        #expect(status == 1, "held and failed units make pull exit 1")
        let two = try #require(transforms["orders_2.csv"])
        #expect(two["status"] as? String == "held" && two["output_path"] is NSNull, "\(two)")
        #expect(ArchiveTests.error(two).contains("new column \"Extra\" (on_new_column = \"hold\")"), "\(two)")
        #expect(transforms["orders_3.csv"]?["status"] as? String == "failed" && ArchiveTests.error(transforms["orders_3.csv"]).contains("no column for field note"), "\(transforms)")
        let four = try #require(transforms["orders_4.csv"])
        #expect(four["status"] as? String == "held" && ArchiveTests.error(four).contains("column \"Amount\" was decimal, is now text (e.g. \"n/a\")"), "\(four)")
        let processed = (try? FileManager.default.subpathsOfDirectory(atPath: dir.sub("lake/processed"))) ?? []
        #expect(!processed.contains { $0.contains("orders_2") || $0.contains("orders_4") }, "nothing of a held unit is written: \(processed)")
        // --failed does not touch held units; a plain run and the next pull do not either.
        let (_, failedRun) = try SluiceBinary.json(["transform", "acme", "--failed"], config: conf)
        #expect(((failedRun as? [[String: Any]]) ?? []).map { $0["path"] as? String } == ["orders_3.csv"], "\(failedRun)")
        let (_, pending) = try SluiceBinary.json(["transform", "acme"], config: conf)
        #expect((pending as? [[String: Any]])?.isEmpty == true)
        // Accept the changes (the defaults), then re-run the held ones.
        dir.write("mappings/acme.toml", Self.mapping)
        let (r, held) = try SluiceBinary.json(["transform", "acme", "--held"], config: conf)
        #expect(r.status == 0, "\(r.stderr)")
        let again = (held as? [[String: Any]]) ?? []
        #expect(Set(again.compactMap { $0["path"] as? String }) == ["orders_2.csv", "orders_4.csv"] && again.allSatisfy { $0["status"] as? String == "ok" }, "\(again)")
        let bad = FormatTests.lake(Self.mapping.replacingOccurrences(of: "delimiter = \";\"", with: "delimiter = \";\"\non_new_column = \"null\""), files: [:])
        let check = try SluiceBinary.run(["check-config"], config: bad.sub("agent.conf"))
        #expect(check.status == 2 && check.stderr.contains("datasets.orders.on_new_column") && check.stderr.contains("\"ignore\", \"hold\", \"fail\""), "\(check.stderr)")
    }
}

/// Drift in each direction (a column added, one removed, a type changed and changed back) for
/// the record and spreadsheet formats: in the pull report, in the manifest with the example
/// values, and in `sluice schema`.
@Suite(.enabled(if: ParquetTests.readersAvailable, "needs pyarrow and duckdb (python3 -m pip install pyarrow duckdb)"))
struct SchemaDriftTests {
    static let recordsMapping = """
        [datasets.orders]
        match = ["orders_*.FORMAT"]
        format = "FORMAT"
        RECORDS
        max_reject_ratio = 0.5
        fields = [
          { name = "id", source = "id", type = "int64", required = true },
          { name = "amount", source = "amount", type = "string" },
          { name = "note", source = "note", type = "string" },
        ]
        """

    /// Three deliveries of `format`: the first, one with a column added and a type change
    /// (with its examples), one with a column removed and the type back.
    static func deliveries(_ format: String) throws -> (mapping: String, files: [(String, Data)], expected: [(added: [String], removed: [String], type: (String, String, String, [String])?)]) {
        switch format {
        case "xlsx":
            let original = try FormatTests.fixture("hooli/sales_2026-09.xlsx")
            let changed = try Self.editSheet(original, [
                ("<t>Rep</t>", "<t>Sales Rep</t>"),
                ("<c r=\"E2\" t=\"n\"><v>507.84</v></c>", "<c r=\"E2\" t=\"inlineStr\"><is><t>TBD</t></is></c>"),
            ])
            return (FormatTests.salesMapping, [("sales_1.xlsx", original), ("sales_2.xlsx", changed), ("sales_3.xlsx", original)],
                    [([], [], nil), (["Sales Rep"], ["Rep"], ("Unit Price", "decimal", "text", ["TBD"])), (["Rep"], ["Sales Rep"], ("Unit Price", "text", "decimal", []))])
        default:
            let v1 = [#"{"id": 1, "amount": 12.5, "note": "a"}"#, #"{"id": 2, "amount": 3, "note": "b"}"#]
            let v2 = [#"{"id": 3, "amount": "n/a", "note": "c", "extra": true}"#, #"{"id": 4, "amount": "-", "note": "d", "extra": false}"#,
                      #"{"id": 5, "amount": "n/a", "note": "e", "extra": true}"#]
            let v3 = [#"{"id": 6, "amount": 1.5}"#]
            func file(_ records: [String]) -> Data {
                Data((format == "jsonl" ? records.joined(separator: "\n") + "\n" : #"{"data": {"items": ["# + records.joined(separator: ",\n") + "]}}").utf8)
            }
            let mapping = Self.recordsMapping.replacingOccurrences(of: "FORMAT", with: format)
                .replacingOccurrences(of: "RECORDS", with: format == "json" ? #"records = "data.items""# : "")
            return (mapping, [("orders_1.\(format)", file(v1)), ("orders_2.\(format)", file(v2)), ("orders_3.\(format)", file(v3))],
                    [([], [], nil), (["extra"], [], ("amount", "decimal", "text", ["n/a", "-"])), ([], ["note", "extra"], ("amount", "text", "decimal", []))])
        }
    }

    /// The fixture workbook with its sheet's XML edited (Python's zipfile rewrites it).
    static func editSheet(_ xlsx: Data, _ edits: [(String, String)]) throws -> Data {
        let dir = TempDir("xlsx-edit")
        let src = dir.write("in.xlsx", xlsx), dst = dir.sub("out.xlsx")
        let r = try Shell.run("/usr/bin/env", ["python3", "-c", """
            import json, sys, zipfile
            edits = json.loads(sys.argv[3])
            src = zipfile.ZipFile(sys.argv[1])
            with zipfile.ZipFile(sys.argv[2], 'w', zipfile.ZIP_DEFLATED) as z:
                for name in src.namelist():
                    data = src.read(name)
                    if name == 'xl/worksheets/sheet2.xml':
                        for old, new in edits:
                            assert old.encode() in data, old
                            data = data.replace(old.encode(), new.encode(), 1)
                    z.writestr(name, data)
            """, src, dst, String(decoding: try JSONSerialization.data(withJSONObject: edits.map { [$0.0, $0.1] }), as: UTF8.self)])
        guard r.status == 0 else { throw TestFailure("editing the workbook: \(r.stderr)") }
        return try Data(contentsOf: URL(fileURLWithPath: dst))
    }

    @Test(arguments: ["jsonl", "json", "xlsx"])
    func driftInEachDirection(_ format: String) throws {
        let (mapping, files, expected) = try Self.deliveries(format)
        let dir = FormatTests.lake(mapping, files: [:])
        for (i, (name, data)) in files.enumerated() {
            dir.write("drop/\(name)", data)
            let (_, transforms) = try FormatTests.pull(dir)
            let t = try #require(transforms[name], "\(format): \(transforms)")
            #expect(t["status"] as? String == "ok", "\(format) \(name): \(t)")
            let want = expected[i]
            let changes = t["schema_changes"] as? [String: Int] ?? [:]
            var wantCounts: [String: Int] = [:]
            if !want.added.isEmpty { wantCounts["added"] = want.added.count }
            if !want.removed.isEmpty { wantCounts["removed"] = want.removed.count }
            if want.type != nil { wantCounts["type_changed"] = 1 }
            #expect(changes == wantCounts, "\(format) \(name): the report counts the changes: \(t)")
            // The manifest keeps the drift with the unit, examples and all.
            let text = try TestManifest.query(dir, """
                SELECT coalesce(t.schema_drift, '') FROM transform t JOIN version v ON v.id = t.version_id JOIN file f ON f.id = v.file_id
                WHERE f.path = '\(name)'
                """).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            guard i > 0 else {
                #expect(text.isEmpty, "the first delivery has nothing to drift from: \(text)")
                continue
            }
            let drift = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
            #expect(drift["added"] as? [String] == want.added && drift["removed"] as? [String] == want.removed, "\(format) \(name): \(text)")
            let types = (drift["type_changes"] as? [[String: Any]]) ?? []
            if let (column, from, to, examples) = want.type {
                #expect(types.count == 1 && types.first?["column"] as? String == column && types.first?["from"] as? String == from
                        && types.first?["to"] as? String == to && types.first?["examples"] as? [String] == examples, "\(format) \(name): \(text)")
            }
        }
        // sluice schema tells the same story: the distinct schemas (the workbook's third delivery
        // is its first again), each after the first with its drift.
        let (r, obj) = try SluiceBinary.json(["schema", "acme"], config: dir.sub("agent.conf"))
        let schemas = ((obj as? [[String: Any]])?.first?["schemas"] as? [[String: Any]]) ?? []
        #expect(r.status == 0 && schemas.count == (format == "xlsx" ? 2 : 3), "\(format): \(obj)")
        let example = ((schemas.dropFirst().first?["drift"] as? [String: Any])?["type_changes"] as? [[String: Any]])?.first?["examples"] as? [String]
        #expect(example == expected[1].type?.3, "the history shows the examples the unit recorded: \(obj)")
    }
}

/// A held unit in the daemon: never re-run by a SIGHUP, a later delivery or a restart; counted
/// by the metrics and the console, which shows its drift and re-runs it with the button.
@Suite(.serialized, .enabled(if: ParquetTests.readersAvailable, "needs pyarrow and duckdb (python3 -m pip install pyarrow duckdb)"))
struct HeldUnitDaemonTests {
    static let mapping = """
        [datasets.orders]
        match = ["orders_*.csv"]
        format = "csv"
        delimiter = ";"
        POLICY
        fields = [
          { name = "id", source = "id", type = "int64", required = true },
          { name = "note", source = "note", type = "string" },
        ]
        """

    @Test func aHeldUnitSurvivesASIGHUPAndARestartAndIsReRunFromTheConsole() throws {
        let dir = TempDir("held-daemon")
        let port = try SSHServer.freePort()
        DaemonTests.folderConfig(dir, port: port)
        dir.write("mappings/acme.toml", Self.mapping.replacingOccurrences(of: "POLICY", with: "on_new_column = \"hold\""))
        dir.write("drop-acme/orders_1.csv", "id;note\n1;a\n")
        age(dir.sub("drop-acme/orders_1.csv"), seconds: 60)
        var d = try DaemonProcess(dir: dir, port: port)
        try d.waitReady()
        func statuses() -> [String] {
            ((try? TestManifest.query(dir, """
                SELECT f.path || ':' || t.status FROM transform t JOIN version v ON v.id = t.version_id JOIN file f ON f.id = v.file_id ORDER BY t.id
                """).stdout) ?? "").split(separator: "\n").map(String.init)
        }
        #expect(eventually(20) { statuses() == ["orders_1.csv:ok"] }, "\(statuses()) \(d.log)")
        DaemonTests.renameIn(dir, "drop-acme/orders_2.csv", "id;note;Extra\n2;b;x\n")
        #expect(eventually(20) { statuses() == ["orders_1.csv:ok", "orders_2.csv:held"] }, "\(statuses()) \(d.log)")
        #expect(eventually(10) { d.get("/metrics")?.body.contains("sluice_transforms_held{client=\"acme\"} 1") ?? false }, "\(d.get("/metrics")?.body ?? "")")
        #expect(d.get("/metrics")?.body.contains("sluice_schema_changes_total{client=\"acme\",dataset=\"orders\",kind=\"added\"} 1") == true)

        // A reload and a later delivery transform what is new, never the held unit.
        d.signal(SIGHUP)
        #expect(eventually(10) { d.log.contains("Config reloaded") })
        DaemonTests.renameIn(dir, "drop-acme/orders_3.csv", "id;note\n3;c\n")
        #expect(eventually(20) { statuses().last == "orders_3.csv:ok" }, "\(statuses())")
        #expect(statuses().filter { $0.hasPrefix("orders_2.csv") } == ["orders_2.csv:held"])

        // Nor does a restart (the start-up round transforms every pending version).
        d.signal(SIGTERM)
        #expect(d.waitForExit(seconds: 30) == 0)
        d = try DaemonProcess(dir: dir, port: port)
        try d.waitReady()
        #expect(eventually(10) { d.get("/metrics")?.body.contains("sluice_transforms_held{client=\"acme\"} 1") ?? false }, "the gauge is read at start")
        #expect(statuses() == ["orders_1.csv:ok", "orders_2.csv:held", "orders_3.csv:ok"], "\(statuses())")

        // The console lists it with its drift; the overview counts it.
        let base = "http://127.0.0.1:\(port)"
        let curl = CookieCurl(jar: dir.sub("cookies"))
        let overview = try curl(["\(base)/"])
        #expect(overview.status == "200" && overview.body.contains("<a class=\"warn held-count\" href=\"/clients/acme#held\">1</a>"), "\(overview.body)")
        let page = try curl(["\(base)/clients/acme"])
        #expect(page.body.contains("class=\"held-unit\"") && page.body.contains("added: <code>Extra</code>"), "\(page.body)")
        let csrf = try #require(page.body.range(of: "name=\"csrf\" value=\"").map { String(page.body[$0.upperBound...].prefix { $0 != "\"" }) })
        // Accept the new column (the mapping's default policy), then press the button.
        dir.write("mappings/acme.toml", Self.mapping.replacingOccurrences(of: "POLICY", with: ""))
        let rerun = try curl(["-d", "csrf=\(csrf)", "\(base)/clients/acme/held/rerun"])
        #expect(rerun.status == "303", "\(rerun)")
        #expect(statuses().last == "orders_2.csv:ok", "\(statuses())")
        // The page the button leads back to says how the re-run went, and lists nothing held.
        let after = try curl(["-L", "-d", "csrf=\(csrf)", "\(base)/clients/acme/held/rerun"])
        #expect(after.status == "200" && after.body.contains("Re-run of the held units finished: nothing was held"), "\(after.body)")
        #expect(!after.body.contains("class=\"held-unit\""), "nothing is held any more")
        #expect(eventually(10) { d.get("/metrics")?.body.contains("sluice_transforms_held{client=\"acme\"} 0") ?? false })
        d.signal(SIGTERM)
        #expect(d.waitForExit(seconds: 30) == 0)
    }
}
