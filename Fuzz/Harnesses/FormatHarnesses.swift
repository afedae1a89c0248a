import Foundation
import SluiceConfig
import SluiceFormats
import SluiceParquet
import SluiceTransform

// The readers of client files, and the value parsers their fields go through.

extension FuzzHarnesses {
    static let formatHarnesses: [FuzzHarness] = [
        FuzzHarness(name: "csv", about: "the CSV reader: each encoding, delimiter and quote, refills of 1 byte to 1 MiB, the schema sniffer") { fuzzCSV($0) },
        FuzzHarness(name: "json", about: "the JSON parser, its text form read back, path lookups") { fuzzJSON($0) },
        FuzzHarness(name: "jsonl", about: "the JSON records reader (lines, arrays, a records path) and the JSON Lines picker checked against the parser") { fuzzJSONL($0) },
        FuzzHarness(name: "xml", about: "the XLSX reader's XML pull parser: events, text, attributes, skipped elements") { fuzzXML($0) },
        FuzzHarness(name: "xlsx", about: "the XLSX reader: workbook, relationships, styles, shared strings and a sheet") { fuzzXLSX($0) },
        FuzzHarness(name: "fixedwidth", about: "fixed-width lines in each encoding, cut into fields and typed", prepare: { _ = fixedDataset }) { fuzzFixedWidth($0) },
        FuzzHarness(name: "values", about: "numbers with separators, decimals, dates and timestamps with formats, booleans: the fast and the general conversion must agree",
                    prepare: { _ = valueFields }) { fuzzValues($0) },
    ]

    // Inputs are at most 64 KiB: a larger block reads them whole just the same.
    static let blockSizes = [1, 2, 7, 64, 4096, 1 << 16]

    static func fuzzCSV(_ data: UnsafeRawBufferPointer) {
        var input = FuzzInput(data)
        let encoding = input.pick(SourceEncoding.allCases)
        let delimiter = input.pick(Array(",;\t| ".utf8))
        let quote = input.pick(Array("\"'".utf8))
        let block = input.pick(blockSizes)
        let byRecord = input.flag()
        let source = ChunkedSource(input.bytes, chunk: input.pick([1, 3, 100, 1 << 16]))
        let reader = CSVReader(delimiter: delimiter, quote: quote, encoding: encoding, blockSize: block, read: source.read)
        var sniffer: SchemaSniffer?
        do {
            if byRecord {
                while let record = try reader.next() {
                    if sniffer == nil { sniffer = SchemaSniffer(columns: record.fields.count) }
                    if sniffer!.wantsMore { sniffer!.observe(cells: record.fields.map { String(validating: $0, as: UTF8.self) }) }
                }
            } else {
                while try reader.advance() {
                    reader.withFields { fields in
                        if sniffer == nil { sniffer = SchemaSniffer(columns: fields.count) }
                        if sniffer!.wantsMore { sniffer!.observe(fields.count) { fields[$0] } }
                    }
                    _ = reader.malformed
                }
            }
        } catch {}
    }

    static func fuzzJSON(_ data: UnsafeRawBufferPointer) {
        guard let value = try? JSONValue.parse(data) else { return }
        // What the transform writes for a nested value must read back as the same value.
        let text = value.jsonText
        guard let again = try? JSONValue.parse(Array(text.utf8)) else { disagreement("jsonText \(text.debugDescription) does not parse") }
        guard again == value else { disagreement("jsonText \(text.debugDescription) reads back as another value") }
        if case .object(let members) = value {
            // A member named "" is not found by a path (`""` is the value itself).
            for (key, _) in members.prefix(8) where !key.isEmpty {
                // With duplicate keys the first one wins.
                guard value.lookup(steps: [key]) == members.first(where: { $0.key == key })?.value else {
                    disagreement("lookup of member \(key.debugDescription) found another value")
                }
                _ = value.lookup("\(key).\(key)")
            }
        }
    }

    static let pickedPaths = ["id", "ts", "customer.id", "customer.name", "amount", "tags", "active", "meta"]

    static func fuzzJSONL(_ data: UnsafeRawBufferPointer) {
        var input = FuzzInput(data)
        let records = input.pick(["", "", "items", "data.rows"])
        let block = input.pick(blockSizes)
        let source = ChunkedSource(input.bytes, chunk: input.pick([1, 5, 1 << 16]))
        let reader = JSONRecordReader(records: records, blockSize: block, read: source.read)
        while let r = try? reader.next() { _ = r.value.lookup(steps: ["customer", "id"]) }
        // The picker (the fast road for JSON Lines) must take only what the parser takes, and
        // pick from it what the parser's lookups find.
        let picker = JSONPicker(paths: pickedPaths)!
        for line in input.rest.split(separator: 0x0A).prefix(64) {
            if let problem = JSONPickerOracle.disagreement(picker, paths: pickedPaths, document: Array(line)) { disagreement(problem) }
        }
    }

    static func fuzzXML(_ data: UnsafeRawBufferPointer) {
        var input = FuzzInput(data)
        let source = ChunkedSource(input.bytes, chunk: input.pick([1, 2, 9, 1 << 16]))
        let parser = XMLPullParser(entry: "fuzz.xml", blockSize: input.pick([1, 16, 1 << 16]), read: source.read)
        parser.collectText = input.flag()
        var events = 0
        do {
            loop: while events < 100_000 {
                events += 1
                switch try parser.next() {
                case .eof: break loop
                case .end: continue
                case .start:
                    _ = parser.attributeString("r")
                    _ = parser.attributeInt("s")
                    switch parser.localName {
                    case "t": try parser.readText(); _ = parser.textString
                    case "is", "si": try parser.readRichText(); _ = parser.textString
                    case "skip", "rPh": try parser.skipElement()
                    default: break
                    }
                }
            }
        } catch {}
    }

    /// The parts of a workbook, in the fuzzer's input one after another, split at "\n--\n".
    static let xlsxParts = ["xl/workbook.xml", "xl/_rels/workbook.xml.rels", "xl/styles.xml", "xl/sharedStrings.xml"]

    static func fuzzXLSX(_ data: UnsafeRawBufferPointer) {
        var input = FuzzInput(data)
        let chunk = input.pick([1, 7, 1 << 16])
        var parts: [[UInt8]] = []
        var rest = ArraySlice(input.bytes)
        let marker = Array("\n--\n".utf8)
        while parts.count < xlsxParts.count, let at = rest.firstRange(of: marker) {
            parts.append(Array(rest[..<at.lowerBound]))
            rest = rest[at.upperBound...]
        }
        parts.append(Array(rest))
        let open = { (path: String) -> ByteSource? in
            let i = xlsxParts.firstIndex(of: path) ?? xlsxParts.count
            guard i < parts.count else { return nil }
            let source = ChunkedSource(parts[i], chunk: chunk)
            return source.read
        }
        guard let workbook = try? XLSXWorkbook(open: open) else { return }
        for sheet in workbook.sheets.prefix(3) {
            guard let read = open(sheet.entryPath) else { continue }
            let reader = XLSXSheetReader(workbook: workbook, sheet: sheet, read: read)
            var rows = 0
            while rows < 100_000, let row = try? reader.next() { rows += 1; _ = row.cells.count }
        }
    }

    /// Mappings whose fields take every type and value option; built once.
    static let valueDatasets: [DatasetMapping] = {
        let text = """
            [datasets.plain]
            match = ["*.csv"]
            format = "csv"
            fields = [
              { name = "i", source = "i", type = "int64" },
              { name = "f", source = "f", type = "float64" },
              { name = "d", source = "d", type = "decimal(12,2)" },
              { name = "big", source = "big", type = "decimal(38,10)" },
              { name = "ts", source = "ts", type = "timestamp" },
              { name = "day", source = "day", type = "date" },
              { name = "ok", source = "ok", type = "bool" },
              { name = "s", source = "s", type = "string" },
            ]
            [datasets.european]
            match = ["*.txt"]
            format = "csv"
            decimal_separator = ","
            thousands_separator = "."
            null_values = ["", "n/a", "-"]
            fields = [
              { name = "i", source = "i", type = "int64", required = true },
              { name = "f", source = "f", type = "float64" },
              { name = "d", source = "d", type = "decimal(9,3)" },
              { name = "at", source = "at", type = "timestamp", format = "%d.%m.%Y %H:%M:%S", timezone = "Europe/Berlin" },
              { name = "us", source = "us", type = "timestamp", format = "%m/%d/%Y %H:%M", timezone = "America/New_York" },
              { name = "day", source = "day", type = "date", format = "%d.%m.%Y" },
              { name = "micros", source = "micros", type = "timestamp", format = "%Y%m%d%H%M%S%f" },
              { name = "yes", source = "yes", type = "bool", true_values = ["ja", "J"], false_values = ["nein", "N"] },
              { name = "s", source = "s", type = "string", trim = true, map = { A = "active", "" = "none" } },
              { name = "dflt", source = "dflt", type = "int64", default = "7" },
            ]
            [datasets.spaced]
            match = ["*.dat"]
            format = "csv"
            thousands_separator = " "
            fields = [
              { name = "i", source = "i", type = "int64" },
              { name = "d", source = "d", type = "decimal(18,4)" },
              { name = "f", source = "f", type = "float64" },
              { name = "ts", source = "ts", type = "timestamp", format = "%Y-%m-%dT%H:%M:%S%z" },
            ]
            """
        let table = try! TOMLText.parse(text, file: "fuzz.toml")
        return try! TableReader(file: "fuzz.toml", text: text).mapping(table, client: "fuzz", sha256: String(repeating: "0", count: 64)).datasets
    }()

    static let valueFields: [(DatasetMapping, Int)] = valueDatasets.flatMap { d in d.fields.indices.map { (d, $0) } }

    static func fuzzValues(_ data: UnsafeRawBufferPointer) {
        var input = FuzzInput(data)
        let (d, index) = input.pick(valueFields)
        let field = d.fields[index]
        let raw = input.bytes
        // The fast road (bytes straight into the row) and the general one (through a String)
        // must agree: the same value, or both an error.
        let row = ParquetRow(columns: 1)
        let converter = FieldConverter(field: field, dataset: d, column: 0)
        let fast: Result<ParquetValue, ValueError> = raw.withUnsafeBufferPointer { b in
            do throws(ValueError) {
                try converter.convert(b, into: row)
                return .success(row.value(0, type: Transformer.parquetType(field.type)))
            } catch {
                return .failure(error)
            }
        }
        guard let text = String(validating: raw, as: UTF8.self) else { return }
        let general: Result<ParquetValue, ValueError> = Result { () throws(ValueError) in try Transformer.value(text, field, d) }
        switch (fast, general) {
        case (.success(let a), .success(let b)) where a == b: break
        case (.success(.float64(let a)), .success(.float64(let b))) where a.isNaN && b.isNaN: break
        case (.failure, .failure): break
        default: disagreement("field \(d.name).\(field.name) of \(text.debugDescription): fast \(fast), general \(general)")
        }
    }

    /// Positions of the fixed-width fields: overlapping, past the line's end, zero-wide.
    static let fixedDataset: DatasetMapping = {
        let text = """
            [datasets.fixed]
            match = ["*.txt"]
            format = "fixed"
            decimal_separator = ","
            fields = [
              { name = "id", start = 1, width = 6, type = "int64" },
              { name = "name", start = 7, width = 12, type = "string" },
              { name = "amount", start = 19, width = 10, type = "decimal(10,2)" },
              { name = "day", start = 29, width = 8, type = "date", format = "%Y%m%d" },
              { name = "flag", start = 37, width = 1, type = "bool", true_values = ["Y"], false_values = ["N"] },
              { name = "tail", start = 30, width = 40, type = "string" },
              { name = "far", start = 200, width = 5, type = "float64" },
            ]
            """
        let table = try! TOMLText.parse(text, file: "fuzz.toml")
        return try! TableReader(file: "fuzz.toml", text: text).mapping(table, client: "fuzz", sha256: String(repeating: "0", count: 64)).datasets[0]
    }()

    static func fuzzFixedWidth(_ data: UnsafeRawBufferPointer) {
        var input = FuzzInput(data)
        let encoding = input.pick(SourceEncoding.allCases)
        let source = ChunkedSource(input.bytes, chunk: input.pick([1, 13, 1 << 16]))
        let lines = TextLineReader(encoding: encoding, blockSize: input.pick(blockSizes), read: source.read)
        let d = fixedDataset
        while let bytes = try? lines.next() {
            guard let line = String(validating: bytes, as: UTF8.self) else { continue }
            let chars = Array(line.unicodeScalars)
            for f in d.fields { _ = try? Transformer.value(Transformer.cell(chars, f), f, d) }
        }
    }
}

/// Whether the JSON Lines picker and the JSON parser agree about a document: the picker may
/// refuse what the parser takes (the parser then reads it), never the other way round, and
/// what it picks is what the parser's lookups find.
public enum JSONPickerOracle {
    /// Why they disagree, or nil when they agree.
    public static func disagreement(_ picker: JSONPicker, paths: [String], document: [UInt8]) -> String? {
        let parsed = try? JSONValue.parse(document)
        return document.withUnsafeBytes { raw -> String? in
            guard picker.pick(raw) else { return nil }
            guard let parsed else { return "picked what the parser refuses: \(String(decoding: document, as: UTF8.self).debugDescription)" }
            for (slot, path) in paths.enumerated() {
                let want = parsed.lookup(path)
                let ok: Bool
                switch (picker.picked(slot), want) {
                case (.absent, nil), (.null, .null?): ok = true
                case (.bool(let a), .bool(let b)?): ok = a == b
                case (.string(let a), .string(let b)?): ok = Array(a) == Array(b.utf8)
                case (.number(let a), .number(let b)?): ok = Array(a) == Array(b.utf8)
                case (.owned(let i), .string(let b)?): ok = picker.owned[i] == Array(b.utf8)
                case (.owned(let i), let v?): ok = picker.owned[i] == Array(v.jsonText.utf8)
                default: ok = false
                }
                if !ok { return "\(path): picked \(picker.picked(slot)), parsed \(String(describing: want)) in \(String(decoding: document, as: UTF8.self).debugDescription)" }
            }
            return nil
        }
    }
}
