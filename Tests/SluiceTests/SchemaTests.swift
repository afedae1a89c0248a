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
        let rows = try Shell.run("/usr/bin/env", ["sqlite3", "-separator", "|", dir.sub("state/manifest.sqlite"), """
            SELECT f.path, s.id, s.schema FROM transform t JOIN version v ON v.id = t.version_id JOIN file f ON f.id = v.file_id
            JOIN source_schema s ON s.id = t.source_schema_id ORDER BY f.path
            """]).stdout.split(separator: "\n").map { $0.split(separator: "|", maxSplits: 2).map(String.init) }
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
        let schema = try Shell.run("/usr/bin/env", ["sqlite3", dir.sub("state/manifest.sqlite"),
                                                    "SELECT s.schema FROM transform t JOIN source_schema s ON s.id = t.source_schema_id"]).stdout
        #expect(schema.contains("\"name\":\"Ref\"") && schema.contains("\"fields\":{}"), "\(schema)")
    }

    /// The schemas of a unit's rows recorded for `path` (its canonical JSON), read back.
    static func schema(_ dir: TempDir, path: String) throws -> [String: Any] {
        let text = try Shell.run("/usr/bin/env", ["sqlite3", dir.sub("state/manifest.sqlite"), """
            SELECT s.schema FROM transform t JOIN version v ON v.id = t.version_id JOIN file f ON f.id = v.file_id
            JOIN source_schema s ON s.id = t.source_schema_id WHERE f.path = '\(path)'
            """]).stdout
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
        #expect((d3["type_changes"] as? [[String: String]]) == [["column": "Amount", "from": "decimal", "to": "text"]], "\(d3)")
        // The text form says the same, and an unknown dataset is a usage error.
        let text = try SluiceBinary.run(["schema", "acme"], config: conf)
        #expect(text.stdout.contains("renamed: Id → Order Number (field id)") && text.stdout.contains("type changed: Amount decimal → text"), "\(text.stdout)")
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
        #expect(four["status"] as? String == "held" && ArchiveTests.error(four).contains("column \"Amount\" was decimal, is now text"), "\(four)")
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
