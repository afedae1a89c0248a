import Foundation
import SluiceFormats
import ZIPFoundation
#if canImport(Glibc)
import Glibc
#endif

/// The sample `sluice mapping draft` reads: the first records of a file (unpacked when it is
/// compressed), as columns of text values with the names and sources a mapping would use,
/// and the dataset keys the format needs. Files of any size: only the first bytes or
/// records are read.
struct DraftSample {
    struct Column {
        /// The header name, dotted JSON path, 1-based column number or fixed-width range.
        var source: String
        /// What the field name is made from.
        var label: String
        var values: [String?] = []
        /// JSON: an array or object stood where a value was.
        var arrays = false
        /// JSON: every present value was a number (epoch seconds are then a timestamp).
        var jsonNumbers = false
        /// JSON: every present value was a string (digits in strings are codes, not counts).
        var jsonStrings = false
        /// Fixed-width: start (1-based) and width.
        var start: Int?
        var width: Int?
    }

    var format: String
    var columns: [Column] = []
    var rows = 0
    /// Sampled rows the transform rejects whatever the types (a ragged CSV row, a JSON line
    /// that is not an object).
    var raggedRows = 0
    /// Whether the file goes on past the sample.
    var truncated = false
    var dialect: TextDialect?
    /// json: the dotted path to the records array.
    var records: String?
    /// xlsx: the sheet the data is on, and how many sheets there are.
    var sheet: String?
    var sheets = 1
    /// xlsx and fixed: rows or lines before the header (or the data).
    var skipRows = 0
    var header = true
    /// fixed: prefixes of lines to skip (a header and trailer record).
    var skipPrefixes: [String] = []
    var encoding: SourceEncoding?
    /// Notes on the dataset as a whole (said as comments above it).
    var notes: [String] = []

    static let sampleBytes = 4 << 20
    static let sampleRecords = 5000

    // MARK: reading

    /// Reads up to `limit` bytes of `source`; whether more followed.
    static func head(_ source: ByteSource, limit: Int) throws -> (bytes: [UInt8], truncated: Bool) {
        var out = [UInt8](repeating: 0, count: limit + 1)
        var filled = 0
        while filled < out.count {
            let n = try out.withUnsafeMutableBytes { try source(UnsafeMutableRawBufferPointer(rebasing: $0[filled...])) }
            if n == 0 { break }
            filled += n
        }
        return (Array(out[0..<min(filled, limit)]), filled > limit)
    }

    static func csv(_ source: ByteSource, delimiter: UInt8?) throws -> DraftSample {
        let (bytes, truncated) = try head(source, limit: sampleBytes)
        let dialect = DialectSniffer.sniff(bytes, truncated: truncated, delimiter: delimiter)
        var sample = DraftSample(format: "csv", truncated: truncated, dialect: dialect)
        sample.encoding = dialect.encoding
        let body = dialect.records.dropFirst(dialect.skipRows).filter { !$0.isEmpty }
        guard let first = body.first else { return sample }
        // With a header, the header says how many columns there are.
        let width = dialect.header ? first.count : body.map(\.count).max() ?? first.count
        let names = dialect.header ? first : []
        for i in 0..<width {
            let name = i < names.count ? names[i].trimmingCharacters(in: .whitespaces) : ""
            // A column without a header name is mapped by its number.
            sample.columns.append(Column(source: name.isEmpty ? "\(i + 1)" : name, label: name.isEmpty ? "column_\(i + 1)" : name))
        }
        let data = dialect.header ? Array(body.dropFirst()) : body
        // Only rows as wide as the table count: a ragged row is a reject in the transform.
        let table = data.filter { $0.count == first.count || !dialect.header }
        sample.raggedRows = data.count - table.count
        if sample.raggedRows > 0 {
            sample.notes.append("\(sample.raggedRows) of \(data.count) sampled rows \(sample.raggedRows == 1 ? "has" : "have") another number of fields than the header: the transform rejects \(sample.raggedRows == 1 ? "it" : "them")")
        }
        for row in table {
            for i in 0..<width { sample.columns[i].values.append(i < row.count ? row[i] : nil) }
        }
        sample.rows = table.count
        return sample
    }

    static func jsonl(_ source: @escaping ByteSource) throws -> DraftSample {
        var sample = DraftSample(format: "jsonl")
        var collector = RecordColumns()
        let lines = TextLineReader(encoding: .utf8, read: source)
        var bad = 0
        while collector.rows < sampleRecords, let line = try lines.next() {
            let blank = line.allSatisfy { (b: UInt8) -> Bool in b == 0x20 || b == 0x09 || b == 0x0D }
            if blank { continue }
            let parsed: JSONValue? = try? JSONValue.parse(line)
            guard let value = parsed, case .object = value else {
                bad += 1
                continue
            }
            collector.add(value)
        }
        sample.truncated = try lines.next() != nil
        sample.raggedRows = bad
        if bad > 0 { sample.notes.append("\(bad) sampled line\(bad == 1 ? " is" : "s are") not a JSON object: the transform rejects such lines") }
        sample.columns = collector.columns
        sample.rows = collector.rows
        return sample
    }

    static func json(_ source: @escaping ByteSource) throws -> DraftSample {
        let peek = PeekableSource(source)
        let head = try peek.head(1 << 20)
        guard let path = JSONRecordsPath.find(head) else {
            throw DraftError("no array of records in the first MiB of the JSON document: map it by hand (records = \"path.to.array\")")
        }
        var sample = DraftSample(format: "json", records: path)
        let reader = JSONRecordReader(records: path, read: peek.read)
        var collector = RecordColumns()
        while collector.rows < sampleRecords {
            guard let record = try? reader.next() else { break }
            collector.add(record.value)
        }
        sample.truncated = (try? reader.next()) != nil
        sample.columns = collector.columns
        sample.rows = collector.rows
        return sample
    }

    /// A workbook: the first sheet that holds a table (a cover sheet of notes is passed over).
    static func xlsx(_ source: ByteSource, path: String, compressed: Bool) throws -> DraftSample {
        var spool: SpooledEntry?
        var file = path
        if compressed {
            let s = try SpooledEntry(directory: NSTemporaryDirectory())
            try s.fill(from: source)
            spool = s
            file = s.procPath
        }
        defer { withExtendedLifetime(spool) {} }
        let archive: Archive
        do {
            archive = try Archive(url: URL(fileURLWithPath: file), accessMode: .read)
        } catch {
            throw DraftError("not a readable .xlsx file (not a zip archive, or a damaged one: \(error))")
        }
        let workbook = try Transformer.workbook(archive)
        var best: DraftSample?
        for sheet in workbook.sheets {
            let sheetFile = try SpooledEntry(directory: NSTemporaryDirectory())
            do {
                try Transformer.unzipSheet(sheet, of: archive, into: sheetFile)
            } catch let e as Transformer.TransformError {
                throw DraftError(e.message)
            }
            let reader = XLSXSheetReader(workbook: workbook, sheet: sheet, read: sheetFile.read)
            var rows: [[String]] = []
            while rows.count < sampleRecords, let row = try reader.next() { rows.append(row.cells.map { $0 ?? "" }) }
            let more = (try? reader.next()) != nil
            // A table: the width most rows share is at least 2.
            var counts: [Int: Int] = [:]
            for r in rows { counts[r.count, default: 0] += 1 }
            guard let width = counts.max(by: { $0.value < $1.value || ($0.value == $1.value && $0.key < $1.key) })?.key, width >= 2 else { continue }
            var sample = DraftSample(format: "xlsx", truncated: more, sheet: sheet.name, sheets: workbook.sheets.count)
            sample.skipRows = rows.firstIndex { $0.count >= width } ?? 0
            let body = rows.dropFirst(sample.skipRows)
            sample.header = DialectSniffer.looksLikeHeader(body)
            let names = sample.header ? body.first ?? [] : []
            let all = body.map(\.count).max() ?? width
            for i in 0..<all {
                let name = i < names.count ? names[i].trimmingCharacters(in: .whitespaces) : ""
                sample.columns.append(Column(source: name.isEmpty ? "\(i + 1)" : name, label: name.isEmpty ? "column_\(i + 1)" : name))
            }
            for row in sample.header ? body.dropFirst() : body {
                for i in 0..<all { sample.columns[i].values.append(i < row.count && !row[i].isEmpty ? row[i] : nil) }
                sample.rows += 1
            }
            best = sample
            break
        }
        guard let best else { throw DraftError("no sheet of the workbook holds a table (a header row and rows of at least two cells)") }
        return best
    }

    /// Fixed-width text: the line length most lines have, lines of other lengths at the top
    /// and bottom as header and trailer records (skipped by their prefix), and fields where the
    /// kind of character changes the same way on every line (digits, a sign, letters, padding).
    static func fixed(_ source: ByteSource, encoding given: SourceEncoding?) throws -> DraftSample {
        let (bytes, truncated) = try head(source, limit: sampleBytes)
        let encoding = given ?? DialectSniffer.encoding(of: bytes, truncated: truncated)
        var offset = 0
        let reader = TextLineReader(encoding: encoding) { buffer in
            let n = min(buffer.count, bytes.count - offset)
            bytes.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[offset..<(offset + n)])) }
            offset += n
            return n
        }
        var lines: [[Character]] = []
        while lines.count < sampleRecords, let line = try reader.next() { if !line.isEmpty { lines.append(Array(String(decoding: line, as: UTF8.self))) } }
        if truncated, !lines.isEmpty { lines.removeLast() }
        var sample = DraftSample(format: "fixed", truncated: truncated)
        sample.encoding = encoding
        var counts: [Int: Int] = [:]
        for l in lines { counts[l.count, default: 0] += 1 }
        guard let length = counts.max(by: { $0.value < $1.value || ($0.value == $1.value && $0.key < $1.key) })?.key else { return sample }
        // Header and trailer records: another length, at the ends, with a word first.
        for l in lines where l.count != length {
            let prefix = String(l.prefix { $0.isLetter })
            if !prefix.isEmpty, !sample.skipPrefixes.contains(prefix) { sample.skipPrefixes.append(prefix) }
        }
        let body = lines.filter { l in l.count == length || !sample.skipPrefixes.contains { String(l).hasPrefix($0) } }
        // What each position holds on every line: only blanks, only digits, one constant
        // character (the dashes of a date), a sign (+ on some lines, - on others), a padded
        // number's digits, signs and blanks, or text.
        enum Kind { case blank, digits, constant, sign, numeric, text }
        let numberChars = Set("0123456789 +-.,")
        var chars = Array(repeating: Set<Character>(), count: length)
        for l in body { for (i, c) in l.enumerated() where i < length { chars[i].insert(c) } }
        let kinds: [Kind] = chars.map { set in
            if set.isSubset(of: [" "]) { return .blank }
            if set.allSatisfy(\.isNumber) { return .digits }
            if set.count == 1 { return .constant }
            if set.isSubset(of: ["+", "-"]) { return .sign }
            if set.isSubset(of: numberChars) { return .numeric }
            return .text
        }
        // A field starts where a blank column ends, and, inside a run of characters, where
        // digits turn to text or text to digits, or at a sign.
        var starts = [0]
        for i in 1..<max(length, 1) {
            let a = kinds[i - 1], b = kinds[i]
            let paddingEnds = a == .blank && b != .blank
            let digitsToText = (a == .digits || a == .numeric) && b == .text
            let textToDigits = a == .text && (b == .digits || b == .numeric)
            let signStarts = b == .sign && a != .blank && a != .sign
            if paddingEnds || digitsToText || textToDigits || signStarts { starts.append(i) }
        }
        for (n, s) in starts.enumerated() {
            let end = n + 1 < starts.count ? starts[n + 1] : length
            var column = Column(source: "\(s + 1)-\(end)", label: "field_\(n + 1)", start: s + 1, width: end - s)
            column.values = body.map { l in String(l[min(s, l.count)..<min(end, l.count)]).trimmingCharacters(in: .whitespaces) }
            sample.columns.append(column)
        }
        sample.rows = body.count
        sample.notes.append("fixed-width fields are found where the kind of character changes on every line: check each start and width "
                            + "(two fields with nothing between them, such as an account number and a date, read as one)")
        return sample
    }
}

/// The columns of JSON records: each dotted path to a value, in the order first seen, with the
/// value's text (a number's exact text; true or false) per record (nil: absent or null).
struct RecordColumns {
    var columns: [DraftSample.Column] = []
    var index: [String: Int] = [:]
    var rows = 0

    enum Kind { case null, bool, number, string, nested }

    mutating func add(_ record: JSONValue) {
        var seen: [Int: (text: String?, kind: Kind)] = [:]
        walk(record, prefix: "") { path, text, kind in
            let i: Int
            if let known = index[path] {
                i = known
            } else {
                i = columns.count
                index[path] = i
                var column = DraftSample.Column(source: path, label: path.replacingOccurrences(of: ".", with: "_"))
                column.values = Array(repeating: nil, count: rows)
                column.jsonNumbers = true
                column.jsonStrings = true
                columns.append(column)
            }
            seen[i] = (text, kind)
        }
        for i in columns.indices {
            let v = seen[i]
            columns[i].values.append(v?.text)
            guard let kind = v?.kind, kind != .null else { continue }
            if kind == .nested { columns[i].arrays = true }
            if kind != .number { columns[i].jsonNumbers = false }
            if kind != .string { columns[i].jsonStrings = false }
        }
        rows += 1
    }

    private func walk(_ value: JSONValue, prefix: String, _ emit: (String, String?, Kind) -> Void) {
        switch value {
        case .object(let members) where !members.isEmpty || prefix.isEmpty:
            for m in members { walk(m.value, prefix: prefix.isEmpty ? m.key : "\(prefix).\(m.key)", emit) }
        case .object, .array: emit(prefix, value.jsonText, .nested)
        case .null: emit(prefix, nil, .null)
        case .bool(let b): emit(prefix, b ? "true" : "false", .bool)
        case .number(let n): emit(prefix, n, .number)
        case .string(let s): emit(prefix, s, .string)
        }
    }
}

/// Finds the records of a JSON document from its first bytes: a top-level array is `""`;
/// otherwise the first array of objects met, by its dotted path (`data.items`).
enum JSONRecordsPath {
    static func find(_ bytes: [UInt8]) -> String? {
        var i = 0
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { i = 3 }
        var stack: [(isObject: Bool, key: String?)] = []
        var pendingKey: String?
        func skipSpace() { while i < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[i]) { i += 1 } }
        func string() -> String? {
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { return nil }
            var out: [UInt8] = []
            i += 1
            while i < bytes.count {
                let b = bytes[i]
                if b == UInt8(ascii: "\\") { i += 1; if i < bytes.count { out.append(bytes[i]) } } else if b == UInt8(ascii: "\"") { i += 1; return String(decoding: out, as: UTF8.self) } else { out.append(b) }
                i += 1
            }
            return nil
        }
        while i < bytes.count {
            skipSpace()
            guard i < bytes.count else { break }
            let b = bytes[i]
            switch b {
            case UInt8(ascii: "{"):
                stack.append((true, pendingKey))
                pendingKey = nil
                i += 1
                skipSpace()
                if let key = string() { pendingKey = key }
            case UInt8(ascii: "["):
                let path = (stack.compactMap(\.key) + (pendingKey.map { [$0] } ?? [])).joined(separator: ".")
                i += 1
                skipSpace()
                // The records: an array whose first element is an object (or a top-level array).
                if stack.isEmpty || (i < bytes.count && bytes[i] == UInt8(ascii: "{")) { return path }
                stack.append((false, pendingKey))
                pendingKey = nil
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                _ = stack.popLast()
                i += 1
            case UInt8(ascii: ","):
                i += 1
                skipSpace()
                if stack.last?.isObject == true { pendingKey = string() }
            case UInt8(ascii: ":"):
                i += 1
            case UInt8(ascii: "\""):
                _ = string()
                pendingKey = stack.last?.isObject == true ? nil : pendingKey
            default:
                i += 1
                if stack.last?.isObject == true { pendingKey = nil }
            }
        }
        return nil
    }
}

struct DraftError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
