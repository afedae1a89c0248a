import Foundation
@testable import SluiceFormats
import SluiceConfig
import SluiceParquet
import SluiceSources
import SluiceTestSupport
import SluiceTransform
import Testing
import SluiceFuzzHarnesses

/// Feeds bytes to a reader at most `chunk` bytes a call, so that every token boundary falls
/// inside a block somewhere (the fuzz harnesses' source).
typealias ByteFeed = ChunkedSource

/// The JSON record reader on its own, without Python or a transform around it.
@Suite struct JSONReaderTests {
    static func records(_ text: String, path: String, chunk: Int = .max, blockSize: Int = 1 << 20) throws(JSONError) -> [JSONValue] {
        let feed = ByteFeed(text, chunk: chunk)
        let reader = JSONRecordReader(records: path, blockSize: blockSize) { feed.read($0) }
        var out: [JSONValue] = []
        while let r = try reader.next() { out.append(r.value) }
        return out
    }

    static let document = """
        {"meta": {"count": 2}, "data": {"items": [
          {"id": 1, "amount": "12.50", "customer": {"id": "C-1", "name": "Zoë \\u00e9\\ud83d\\ude00"}, "tags": ["a", "b"], "note": null},
          {"id": -2.5e3, "amount": 7, "ok": true, "customer": {"id": "C-2"}, "tags": []}
        ]}, "after": [1, 2, 3]}
        """

    @Test func recordsUnderADottedPathKeepNumbersAsWritten() throws {
        let rs = try Self.records(Self.document, path: "data.items")
        #expect(rs.count == 2)
        #expect(rs[0].lookup("customer.id") == .string("C-1"))
        #expect(rs[0].lookup("customer.name") == .string("Zoë é😀"))
        #expect(rs[0].lookup("note") == .null)
        #expect(rs[0].lookup("tags") == .array([.string("a"), .string("b")]))
        #expect(rs[1].lookup("id") == .number("-2.5e3"), "a number keeps its source text")
        #expect(rs[1].lookup("ok") == .bool(true))
        #expect(rs[1].lookup("customer.name") == nil)
    }

    @Test func blockBoundariesChangeNothing() throws {
        let whole = try Self.records(Self.document, path: "data.items")
        for chunk in [1, 2, 3, 7, 64] {
            #expect(try Self.records(Self.document, path: "data.items", chunk: chunk, blockSize: 16) == whole, "chunk \(chunk)")
        }
    }

    @Test func aTopLevelArrayIsTheRecordsWithAnEmptyPath() throws {
        #expect(try Self.records("\u{FEFF}[{\"a\": 1}, {\"a\": 2}]", path: "") == [.object([(key: "a", value: .number("1"))]), .object([(key: "a", value: .number("2"))])])
    }

    @Test(arguments: [
        ("[{\"a\": 1}, {\"a\": 2", "end"),                // truncated inside a record
        ("[{\"a\": 1},]", "trailing comma"),
        ("[{\"a\": 1} {\"a\": 2}]", "','"),
        ("[\"\\ud83d\"]", "surrogate"),
        ("{\"data\": 5}", "data"),
    ])
    func badDocumentsAreErrors(text: String, fragment: String) {
        let path = text.hasPrefix("{") ? "data" : ""
        #expect { try Self.records(text, path: path) } throws: { error in
            "\(error)".lowercased().contains(fragment.lowercased())
        }
    }

    @Test func aTruncatedRecordIsNeverHandedOut() throws {
        let feed = ByteFeed("[{\"a\": 1}, {\"a\": 12")
        let reader = JSONRecordReader(records: "") { feed.read($0) }
        #expect(try reader.next()?.value == .object([(key: "a", value: .number("1"))]))
        #expect(throws: JSONError.self) { try reader.next() }
        #expect(throws: JSONError.self) { try reader.next() }
    }

    @Test func invalidUTF8NamesItsLine() {
        var bytes = Array("[\"ok\",\n\"bad ".utf8)
        bytes += [0xFF, 0x22, 0x5D]
        let feed = ByteFeed(bytes)
        let reader = JSONRecordReader(records: "") { feed.read($0) }
        #expect { while try reader.next() != nil {} } throws: { "\($0)".contains("line 2") }
    }

    @Test func nestingDeeperThan512IsRefused() {
        let deep = "[" + String(repeating: "[", count: 600) + String(repeating: "]", count: 600) + "]"
        #expect(throws: JSONError.self) { try Self.records(deep, path: "") }
    }

    /// A record longer than the limit is refused there, naming its line; the records before it
    /// are read.
    @Test func aRecordPastTheLimitIsRefusedNotBuilt() throws {
        let text = "[{\"id\": 1},\n{\"note\": \"" + String(repeating: "x", count: 5000) + "\"}]"
        let feed = ByteFeed(text, chunk: 7)
        let reader = JSONRecordReader(records: "", blockSize: 64, maxRecordBytes: 1000) { feed.read($0) }
        #expect(try reader.next()?.value == .object([("id", .number("1"))]))
        #expect { try reader.next() } throws: { "\($0)".contains("the record that starts on line 2 is longer than 1000 bytes") }
        let roomy = ByteFeed(text, chunk: 7)
        let all = JSONRecordReader(records: "", blockSize: 64, maxRecordBytes: 6000) { roomy.read($0) }
        #expect(try all.next() != nil && all.next() != nil && all.next() == nil)
    }
}

/// The line reader of fixed-width and line-based files.
@Suite struct TextLineReaderTests {
    static func lines(_ bytes: [UInt8], encoding: SourceEncoding = .utf8, chunk: Int = .max) throws -> [String] {
        let feed = ByteFeed(bytes, chunk: chunk)
        let reader = TextLineReader(encoding: encoding, blockSize: 8) { feed.read($0) }
        var out: [String] = []
        while let l = try reader.next() { out.append(String(decoding: l, as: UTF8.self)) }
        return out
    }

    @Test func lineEndsAndTheLastLineWithoutOne() throws {
        let text = Array("HDR 2026\r\nA  +000012345\nB  -000000001\r\nTRL".utf8)
        for chunk in [1, 3, 5, .max] {
            #expect(try Self.lines(text, chunk: chunk) == ["HDR 2026", "A  +000012345", "B  -000000001", "TRL"], "chunk \(chunk)")
        }
        #expect(try Self.lines(Array("x\n\ny\n".utf8)) == ["x", "", "y"])
        #expect(try Self.lines([]) == [])
    }

    @Test func legacyEncodingsBecomeUTF8() throws {
        #expect(try Self.lines([0x63, 0x61, 0x66, 0xE9, 0x0A, 0x80], encoding: .windows1252, chunk: 1) == ["café", "€"])
        #expect(try Self.lines([0xDF, 0x0A], encoding: .latin1) == ["ß"])
    }

    /// A line (or a CSV record) longer than the limit is refused there, naming its line,
    /// instead of being read into memory whole; lines up to the limit are read.
    @Test func aLineOrRecordPastTheLimitIsRefusedNotHeld() throws {
        let text = Array("short\n".utf8) + [UInt8](repeating: 0x61, count: 5000) + Array("\nafter\n".utf8)
        let feed = ByteFeed(text, chunk: 7)
        let lines = TextLineReader(encoding: .utf8, blockSize: 64, maxLineBytes: 1000) { feed.read($0) }
        #expect(try lines.next() == Array("short".utf8))
        #expect { try lines.next() } throws: { "\($0)".contains("the line that starts on line 2 is longer than 1000 bytes") }
        let fits = ByteFeed(text, chunk: 7)
        let roomy = TextLineReader(encoding: .utf8, blockSize: 64, maxLineBytes: 5001) { fits.read($0) }
        var count = 0
        while try roomy.next() != nil { count += 1 }
        #expect(count == 3)

        let csv = Array("a,b\n1,\"never closed\n".utf8) + [UInt8](repeating: 0x78, count: 5000)
        let cfeed = ByteFeed(csv, chunk: 5)
        let reader = CSVReader(blockSize: 16, maxRecordBytes: 1000) { cfeed.read($0) }
        #expect(try reader.next()?.fields.count == 2)
        #expect { try reader.next() } throws: { "\($0)".contains("the record that starts on line 2") && "\($0)".contains("the quoted field that starts on line 2 never ends") }
    }
}

/// The streaming XML tokenizer under the XLSX reader.
@Suite struct XMLPullParserTests {
    static func parser(_ text: String, chunk: Int = .max) -> XMLPullParser {
        let feed = ByteFeed(text, chunk: chunk)
        return XMLPullParser(entry: "test.xml", blockSize: 8) { feed.read($0) }
    }

    @Test func elementsAttributesEntitiesAndCDATA() throws {
        let xml = """
            <?xml version="1.0" encoding="UTF-8"?>
            <!-- a comment -->
            <x:root xmlns:x="urn:x"><c r="A1" t="s">a &amp; b &lt;&#233;&#x1F600;</c><c r="B1"><![CDATA[<raw> & ]]></c><empty/></x:root>
            """
        for chunk in [1, 2, 5, .max] {
            let p = Self.parser(xml, chunk: chunk)
            #expect(try p.next() == .start && p.localIs("root"))
            #expect(try p.next() == .start && p.localIs("c"))
            #expect(p.attributeString("r") == "A1" && p.attributeString("t") == "s" && p.attributeString("missing") == nil)
            try p.readText()
            #expect(p.text.string() == "a & b <é😀", "chunk \(chunk)")
            #expect(try p.next() == .start && p.attributeString("r") == "B1")
            try p.readText()
            #expect(p.text.string() == "<raw> & ")
            #expect(try p.next() == .start && p.localIs("empty"))
            #expect(try p.next() == .end)
            #expect(try p.next() == .end && p.localIs("root"))
            #expect(try p.next() == .eof)
        }
    }

    @Test(arguments: [
        ("<a><b></a>", "test.xml"),
        ("<a><b>", "test.xml"),
        ("<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>", "test.xml"),
        ("<a>&nope;</a>", "test.xml"),
    ])
    func malformedXMLIsAnErrorNamingTheEntry(xml: String, entry: String) {
        let p = Self.parser(xml)
        #expect {
            while true {
                let event = try p.next()
                if event == .eof { break }
                if event == .start { try p.readText() }
            }
        } throws: { "\($0)".contains(entry) }
    }
}

/// The XLSX reader over an in-memory package: no zip, no Python.
@Suite struct XLSXReaderTests {
    static let entries: [String: String] = [
        "xl/workbook.xml": """
            <workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">
            <sheets><sheet name="Cover" sheetId="1" r:id="rId1"/><sheet name="Sales" sheetId="2" r:id="rId2"/></sheets></workbook>
            """,
        "xl/_rels/workbook.xml.rels": """
            <Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
            <Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>
            <Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet2.xml"/>
            <Relationship Id="rId3" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles" Target="styles.xml"/>
            <Relationship Id="rId4" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/>
            </Relationships>
            """,
        "xl/styles.xml": """
            <styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">
            <numFmts count="1"><numFmt numFmtId="164" formatCode="yyyy-mm-dd hh:mm"/></numFmts>
            <cellXfs count="3"><xf numFmtId="0"/><xf numFmtId="14"/><xf numFmtId="164"/></cellXfs></styleSheet>
            """,
        "xl/sharedStrings.xml": """
            <sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><si><t>sku</t></si><si><t>day</t></si><si><r><t>Zo</t></r><r><t>ë</t></r><rPh><t>x</t></rPh></si></sst>
            """,
        "xl/worksheets/sheet2.xml": """
            <worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>
            <row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c></row>
            <row r="3"><c r="A3" t="s"><v>2</v></c><c r="B3" s="1"><v>46296</v></c><c r="C3" s="2"><v>46296.5</v></c><c r="E3" t="b"><v>1</v></c></row>
            <row r="4"><c r="A4" t="inlineStr"><is><t>inline</t></is></c><c r="B4"><v>970.9299999999999</v></c></row>
            </sheetData></worksheet>
            """,
    ]

    static func open(_ path: String) -> ByteSource? {
        guard let text = entries[path] else { return nil }
        let feed = ByteFeed(text, chunk: 5)
        return { feed.read($0) }
    }

    @Test func sheetsSharedStringsDatesAndNumbers() throws {
        let workbook = try XLSXWorkbook(open: Self.open)
        #expect(workbook.sheets.map(\.name) == ["Cover", "Sales"])
        let sheet = try workbook.sheet(named: "Sales")
        let reader = XLSXSheetReader(workbook: workbook, sheet: sheet, read: try #require(Self.open(sheet.entryPath)))
        var rows: [(Int, [String?])] = []
        while let r = try reader.next() { rows.append((r.number, r.cells)) }
        #expect(rows.map(\.0) == [1, 3, 4])
        #expect(rows[0].1 == ["sku", "day"])
        #expect(rows[1].1 == ["Zoë", "2026-10-01", "2026-10-01T12:00:00", nil, "true"], "phonetic runs left out; a gap stays nil")
        #expect(rows[2].1 == ["inline", "970.93"], "Excel's 15 significant digits")
    }

    @Test func aMissingSheetAndAMissingWorkbookAreNamed() throws {
        let workbook = try XLSXWorkbook(open: Self.open)
        #expect { try workbook.sheet(named: "Nope") } throws: { "\($0)".contains("Nope") }
        #expect { try XLSXWorkbook(open: { _ in nil }) } throws: { "\($0)".contains("xl/workbook.xml") }
    }
}

/// One field's raw bytes to its typed value, as a mapping describes it.
@Suite struct FieldConverterTests {
    static func dataset() throws -> DatasetMapping {
        let dir = TempDir("converter")
        dir.config(client: "acme")
        dir.write("mappings/acme.toml", """
            [datasets.orders]
            match = ["*.csv"]
            format = "csv"
            decimal_separator = ","
            thousands_separator = "."
            null_values = ["", "n/a"]
            fields = [
              { name = "id", source = "Id", type = "int64", required = true },
              { name = "amount", source = "Amount", type = "decimal(12,2)" },
              { name = "at", source = "At", type = "timestamp", format = "%d.%m.%Y %H:%M", timezone = "Europe/Berlin" },
              { name = "active", source = "Active", type = "bool", true_values = ["ja"], false_values = ["nein"] },
              { name = "status", source = "Status", type = "string", trim = true, map = { A = "active" } },
            ]
            """)
        let mapping = try #require(try AgentConfig.load(path: dir.sub("agent.conf")).loadMappings()["acme"])
        return mapping.datasets[0]
    }

    static func convert(_ text: String?, field: Int, in d: DatasetMapping) throws(ValueError) -> ParquetValue {
        let converter = FieldConverter(field: d.fields[field], dataset: d, column: 0)
        let row = ParquetRow(columns: 1)
        guard let text else {
            try converter.convert(nil, into: row)
            return row.value(0, type: Transformer.parquetType(d.fields[field].type))
        }
        let bytes = Array(text.utf8)
        try bytes.withUnsafeBufferPointer { (b) throws(ValueError) in try converter.convert(b, into: row) }
        return row.value(0, type: Transformer.parquetType(d.fields[field].type))
    }

    @Test func valuesOfEveryKind() throws {
        let d = try Self.dataset()
        #expect(try Self.convert("42", field: 0, in: d) == .int64(42))
        #expect(try Self.convert("1.234,50", field: 1, in: d) == .decimal(123_450))
        #expect(try Self.convert("-0,5", field: 1, in: d) == .decimal(-50))
        #expect(try Self.convert("n/a", field: 1, in: d) == .null)
        // 01.10.2026 12:00 in Berlin (CEST, +02:00) is 10:00 UTC.
        #expect(try Self.convert("01.10.2026 12:00", field: 2, in: d) == .timestamp(1_790_848_800_000_000))
        #expect(try Self.convert("JA", field: 3, in: d) == .bool(true))
        #expect(try Self.convert("nein", field: 3, in: d) == .bool(false))
        #expect(try Self.convert("  A ", field: 4, in: d) == .string(Array("active".utf8)))
        #expect(try Self.convert(" B", field: 4, in: d) == .string(Array("B".utf8)))
    }

    @Test(arguments: [("x1", 0), ("12,345", 1), ("31.02.2026 10:00", 2), ("vielleicht", 3)])
    func badValuesAreErrors(text: String, field: Int) throws {
        let d = try Self.dataset()
        #expect(throws: ValueError.self) { try Self.convert(text, field: field, in: d) }
    }
}

/// The JSON Lines picker against the parser: whatever it takes, it reads as `JSONValue.parse`
/// and `lookup` do, and it takes nothing the parser refuses.
@Suite struct JSONPickerTests {
    static let paths = ["id", "ts", "customer.id", "customer.name", "amount", "tags", "active", "meta"]
    static let seeds = [
        #"{"id": 1, "ts": "2026-09-06T07:53:23Z", "customer": {"id": 14593, "name": "alpha", "city": "Lyon"}, "amount": 46142.26, "active": true, "tags": []}"#,
        #"{"id":-0.5e+3,"customer":{"name":"Zoë \"q\" \u00e9\ud83d\ude00 tab\tend","id":null},"tags":["a",{"b":[1,2.0,false]}],"meta":{},"active":false}"#,
        "\u{FEFF}{ \"id\" : 0 , \"amount\" : -12E-2 ,\r\n \"customer\" : \"flat\" , \"meta\" : [ ] }\t",
        #"{"id": 7, "id": 8, "customer": {"id": 1, "id": 2, "deep": {"a": [[[]]]}}, "active": null, "amount": "3.10"}"#,
        #"{"customer": {"name": "Łódź – naïve 𝄞 ok", "x": "\\/\b\f\n\r\t"}, "ts": "a\u0000b", "amount": 1e5}"#,
        #"{"Größe": 1, "id": 2}"#,
        #"{}"#,
    ]
    static let noise: [UInt8] = [0x00, 0x09, 0x0A, 0x1F, 0x20, 0x22, 0x5C, 0x7B, 0x7D, 0x5B, 0x5D, 0x2C, 0x3A, 0x30, 0x31, 0x2D, 0x2B, 0x2E,
                                 0x65, 0x45, 0x75, 0x6E, 0x74, 0x66, 0x78, 0x5F, 0x80, 0xBF, 0xC0, 0xC3, 0xE0, 0xED, 0xF0, 0xF4, 0xF5, 0xFF]

    /// A small seeded generator, so that a failure repeats.
    struct SplitMix: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    /// Whether the picker took `document`; records a failure when it disagrees with the parser
    /// (the fuzz harness `jsonl` checks the same).
    @discardableResult
    static func agree(_ picker: JSONPicker, _ document: [UInt8]) -> Bool {
        if let problem = JSONPickerOracle.disagreement(picker, paths: paths, document: document) { Issue.record("\(problem)") }
        return document.withUnsafeBytes { picker.pick($0) }
    }

    @Test func picksWhatTheParserReadsAndNothingItRefuses() throws {
        let picker = try #require(JSONPicker(paths: Self.paths))
        // Every seed but the one with a non-ASCII key (the parser's way) is taken whole.
        for seed in Self.seeds {
            #expect(Self.agree(picker, Array(seed.utf8)) == !seed.contains("Größe"), "\(seed)")
        }
        var rng = SplitMix(state: 22)
        var taken = 0, refused = 0
        for k in 0..<40_000 {
            var doc = Array(Self.seeds[k % Self.seeds.count].utf8)
            for _ in 0...Int.random(in: 0...2, using: &rng) {
                let at = Int.random(in: 0..<max(doc.count, 1), using: &rng)
                switch Int.random(in: 0..<4, using: &rng) {
                case 0 where !doc.isEmpty: doc[at] = Self.noise.randomElement(using: &rng)!
                case 1 where !doc.isEmpty: doc.remove(at: at)
                case 2: doc.insert(Self.noise.randomElement(using: &rng)!, at: min(at, doc.count))
                default: doc.removeLast(Int.random(in: 0...min(3, doc.count), using: &rng))
                }
            }
            if Self.agree(picker, doc) { taken += 1 } else { refused += 1 }
        }
        // Both sides of the line are exercised: many mutants stay valid, many do not.
        #expect(taken > 1_000 && refused > 1_000, "taken \(taken), refused \(refused)")
    }

    @Test func utf8CheckJudgesAsTheStandardLibrary() {
        var rng = SplitMix(state: 8)
        let bytes: [UInt8] = [0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF,
                              0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF]
        var valid = 0
        for _ in 0..<100_000 {
            let s = (0..<Int.random(in: 0...12, using: &rng)).map { _ in bytes.randomElement(using: &rng)! }
            let want = String(validating: s, as: UTF8.self) != nil
            let got = s.withUnsafeBufferPointer { FastValues.isValidUTF8($0) }
            #expect(got == want, "\(s.map { String($0, radix: 16) })")
            if want { valid += 1 }
        }
        #expect(valid > 1_000)
        for text in ["plain ascii words, longer than eight", "Zoë Łódź 𝄞 € naïve", ""] {
            #expect(Array(text.utf8).withUnsafeBufferPointer { FastValues.isValidUTF8($0) })
        }
    }
}
