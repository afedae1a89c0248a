import Foundation
@testable import SluiceFormats
import SluiceConfig
import SluiceParquet
import SluiceSources
import SluiceTestSupport
import SluiceTransform
import Testing

/// Feeds bytes to a reader at most `chunk` bytes a call, so that every token boundary falls
/// inside a block somewhere.
final class ByteFeed: @unchecked Sendable {  // used by one reader on one thread
    private let bytes: [UInt8]
    private let chunk: Int
    private var offset = 0

    init(_ bytes: [UInt8], chunk: Int = .max) {
        self.bytes = bytes
        self.chunk = max(1, chunk)
    }

    convenience init(_ text: String, chunk: Int = .max) { self.init(Array(text.utf8), chunk: chunk) }

    func read(_ buffer: UnsafeMutableRawBufferPointer) -> Int {
        let n = min(buffer.count, chunk, bytes.count - offset)
        guard n > 0 else { return 0 }
        bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + offset, byteCount: n) }
        offset += n
        return n
    }
}

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
