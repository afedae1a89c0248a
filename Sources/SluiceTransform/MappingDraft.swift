import Crypto
import Foundation
import SluiceConfig
import SluiceFormats
import SluiceSupport
#if canImport(Glibc)
import Glibc
#endif

/// `sluice mapping draft FILE`: reads a sample file (any format the transform reads,
/// compressed or not) and writes a complete mapping file for it, which `check-config` accepts:
/// the format's reading keys, and per column a field with a snake_case name, its `source`, the
/// narrowest type that reads every sampled value, a date or timestamp `format`, and `required`
/// where no sampled value is empty. Where the sample cannot decide (an empty column, dates that
/// read both day-first and month-first) the safer type is taken and a comment says so. A
/// timestamp always gets `timezone = "UTC"` with a comment: the draft never guesses a zone.
public enum MappingDraft {
    public struct Request: Sendable {
        public var path: String
        public var client: String?
        public var dataset: String?
        /// csv, json, jsonl, xlsx or fixed; nil: from the name, then the content.
        public var format: String?

        public init(path: String, client: String? = nil, dataset: String? = nil, format: String? = nil) {
            self.path = path
            self.client = client
            self.dataset = dataset
            self.format = format
        }
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        /// A bad request (exit 2) rather than a file that cannot be read (exit 1).
        public let usage: Bool
    }

    public static let formats = ["csv", "json", "jsonl", "xlsx", "fixed"]

    /// The drafted mapping file's text.
    public static func draft(_ request: Request) throws(Failure) -> String {
        let name = (request.path as NSString).lastPathComponent
        if let f = request.format, !formats.contains(f) {
            throw Failure(description: "--format \(f): expected one of \(formats.joined(separator: ", "))", usage: true)
        }
        if let c = request.client, !TableReader.isValidID(c) {
            throw Failure(description: "--client \(c): a client id must match [a-z0-9][a-z0-9_-]{0,63}", usage: true)
        }
        if let d = request.dataset, d.isEmpty || !d.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F }) {
            throw Failure(description: "--dataset \(d): a dataset name must match [a-z0-9_]+", usage: true)
        }
        let fd = open(request.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure(description: "cannot open \(request.path): \(String(cString: strerror(errno)))", usage: true) }
        defer { close(fd) }
        var info = stat()
        if fstat(fd, &info) == 0, (info.st_mode & S_IFMT) != S_IFREG {
            throw Failure(description: "\(request.path) is not a regular file", usage: true)
        }
        do {
            return try draft(fd: fd, name: name, request: request)
        } catch let e as Failure {
            throw e
        } catch {
            throw Failure(description: "\(request.path): \(error)", usage: false)
        }
    }

    private static func draft(fd: Int32, name: String, request: Request) throws -> String {
        /// The file from its start, unpacked when it is compressed.
        func source(_ compression: Compression?) throws -> PeekableSource {
            guard lseek(fd, 0, SEEK_SET) == 0 else { throw SystemCallError(call: "lseek", errno: errno, path: name) }
            let raw: ByteSource = { buffer in
                let n = read(fd, buffer.baseAddress, buffer.count)
                if n < 0 { throw SystemCallError(call: "read", errno: errno, path: name) }
                return n
            }
            return PeekableSource(try Compression.unpacking(compression, limits: UnpackLimits(), source: raw))
        }
        let head = try source(nil).head(OpenPGP.magicLength)
        if OpenPGP.named(by: Array(name.utf8)) || OpenPGP.sniff(head) {
            throw Failure(description: "\(name) is OpenPGP-encrypted or signed: draft from a decrypted sample (gpg --decrypt \(name) > sample); "
                          + "the mapping is the same", usage: true)
        }
        if head.isEmpty { throw Failure(description: "\(name) is empty: there is nothing to draft from", usage: true) }
        let compression = Compression.sniff(head)
        var bare = Array(name.utf8)
        if let stripped = Compression.strippingSuffix(bare) { bare = stripped }
        let bareName = String(decoding: bare, as: UTF8.self)
        let ext = (bareName as NSString).pathExtension.lowercased()
        if request.format == nil, ArchiveKind.named(by: bare) != nil, ext != "xlsx" {
            throw Failure(description: "\(name) is an archive: draft from one of its members (a dataset's match takes members by their path inside)", usage: true)
        }
        let format = try request.format ?? detectFormat(ext: ext, head: try source(compression).head(4096))
        var sample: DraftSample
        do {
            switch format {
            case "json": sample = try DraftSample.json(try source(compression).read)
            case "jsonl": sample = try DraftSample.jsonl(try source(compression).read)
            case "xlsx": sample = try DraftSample.xlsx(try source(compression).read, path: request.path, compressed: compression != nil)
            case "fixed": sample = try DraftSample.fixed(try source(compression).read, encoding: nil)
            default:
                sample = try DraftSample.csv(try source(compression).read, delimiter: ext == "tsv" ? 0x09 : nil)
                // Text whose lines split into no columns, under a name that does not say csv:
                // fixed-width records.
                if request.format == nil, ext != "csv", ext != "tsv", sample.columns.count <= 1 {
                    sample = try DraftSample.fixed(try source(compression).read, encoding: nil)
                }
            }
        } catch let e as DraftError {
            throw Failure(description: "\(name): \(e.description)", usage: false)
        } catch let e as JSONError {
            throw Failure(description: "\(name): \(e.description)", usage: false)
        }
        guard !sample.columns.isEmpty else {
            throw Failure(description: "\(name): no columns found in the sample (is it empty, or another format? try --format)", usage: false)
        }
        let dataset = request.dataset ?? datasetName(bareName)
        let text = render(sample, name: name, bareName: bareName, dataset: dataset, client: request.client)
        try validate(text, client: request.client ?? "client")
        return text
    }

    /// The format a name says (`orders.csv`, `events.ndjson`), else what the content looks like.
    static func detectFormat(ext: String, head: [UInt8]) throws -> String {
        switch ext {
        case "csv", "tsv", "psv": return "csv"
        case "json": return looksLikeJSONLines(head) ? "jsonl" : "json"
        case "jsonl", "ndjson": return "jsonl"
        case "xlsx", "xlsm": return "xlsx"
        default: break
        }
        if head.starts(with: [0x50, 0x4B, 0x03, 0x04]) { return "xlsx" }
        let text = head.drop { [0x20, 0x09, 0x0A, 0x0D, 0xEF, 0xBB, 0xBF].contains($0) }
        if text.first == UInt8(ascii: "{") { return looksLikeJSONLines(head) ? "jsonl" : "json" }
        if text.first == UInt8(ascii: "[") { return "json" }
        return "csv"
    }

    /// Whether the first lines are each a whole JSON object.
    static func looksLikeJSONLines(_ head: [UInt8]) -> Bool {
        let lines = head.split(separator: 0x0A).prefix(3)
        guard lines.count >= 2 else { return false }
        return lines.dropLast().allSatisfy { line in
            if case .object? = try? JSONValue.parse(Array(line)) { return true }
            return false
        }
    }

    /// `orders_2026-10-01.csv` → `orders`.
    static func datasetName(_ file: String) -> String {
        var stem = file
        while let dot = stem.lastIndex(of: "."), dot != stem.startIndex { stem = String(stem[..<dot]) }
        let words = DraftTyper.snakeCase(stem).split(separator: "_").map(String.init)
            .filter { w in !w.allSatisfy(\.isNumber) && !(w.count > 1 && w.first == "c" && w.dropFirst().allSatisfy(\.isNumber)) }
        let name: String = words.joined(separator: "_")
        return name.isEmpty ? "data" : name
    }

    /// The sample's name with each run of digits (and the separators between them) as `*`.
    static func glob(_ bareName: String) -> String {
        var out = ""
        var inDigits = false
        let chars = Array(bareName)
        for (i, c) in chars.enumerated() {
            let separatorInDate = (c == "-" || c == "_" || c == ".") && inDigits && i + 1 < chars.count && chars[i + 1].isNumber
            if c.isNumber || separatorInDate {
                if !inDigits { out.append("*") }
                inDigits = true
            } else {
                inDigits = false
                if "*?[]{}\\".contains(c) { out.append("\\") }
                out.append(c)
            }
        }
        return out
    }

    // MARK: fields

    /// The fields of the sample, and the dataset's null values.
    static func fields(_ sample: DraftSample) -> (fields: [DraftField], style: NumberStyle, nulls: [String]) {
        let delimiter = sample.dialect.map { Character(UnicodeScalar($0.delimiter)) }
        let style = sample.format == "xlsx" ? NumberStyle() : NumberStyle.vote(sample.columns.flatMap { $0.values.prefix(1000).compactMap { $0 } }, delimiter: delimiter)
        var names = Set<String>()
        let labels = sample.columns.map { c -> String in
            var name = DraftTyper.snakeCase(c.label)
            if names.contains(name) {
                var n = 2
                while names.contains("\(name)_\(n)") { n += 1 }
                name = "\(name)_\(n)"
            }
            names.insert(name)
            return name
        }
        func guessAll(_ nulls: Set<String>) -> [DraftField] {
            zip(sample.columns, labels).map { c, name in
                let hint = c.jsonNumbers && (name == "ts" || name.hasSuffix("_at") || name.hasSuffix("_ts") || name.contains("time") || name.contains("date"))
                var field = DraftTyper.guess(name: name, source: c.source, values: c.values, style: style, nulls: nulls, arrays: c.arrays, epochHint: hint)
                if sample.format == "fixed" { field.source = "" }
                // Whole numbers that the client writes as JSON strings are codes (a zip, an id).
                if c.jsonStrings && field.type == .int64 {
                    field.type = .string
                    field.rejectRows = []
                    field.notes.append("whole numbers written as JSON strings: kept as string (codes keep their form)")
                }
                return field
            }
        }
        // Null tokens: those that stand where a typed column has no value, and that no text
        // column has as a value.
        let candidates = Set(DraftTyper.nullTokens)
        let first = guessAll(candidates.union([""]))
        var used = Set<String>(), blocked = Set<String>()
        for (c, f) in zip(sample.columns, first) {
            let tokens = Set(c.values.compactMap { $0?.trimmingCharacters(in: .whitespaces) }).intersection(candidates)
            if f.type == .string { blocked.formUnion(tokens) } else { used.formUnion(tokens) }
        }
        let nulls = [""] + DraftTyper.nullTokens.filter { used.contains($0) && !blocked.contains($0) }
        var fields = guessAll(Set(nulls))
        // A header name used twice, or one that is a number, is mapped by column number.
        if sample.format == "csv" || sample.format == "xlsx" {
            var seen: [String: Int] = [:]
            for c in sample.columns { seen[c.source, default: 0] += 1 }
            for (i, c) in sample.columns.enumerated() where (seen[c.source] ?? 0) > 1 || (c.label != "column_\(i + 1)" && c.source.allSatisfy(\.isNumber)) {
                fields[i].source = "\(i + 1)"
                fields[i].notes.append((seen[c.source] ?? 0) > 1 ? "the header has \"\(c.source)\" twice: mapped by column number"
                                                                 : "the header name \"\(c.source)\" is a number, which source reads as a column number")
            }
        }
        return (fields, style, nulls)
    }

    // MARK: rendering

    static func quoted(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if u.value < 0x20 || u.value == 0x7F { out += String(format: "\\u%04X", u.value) } else { out.unicodeScalars.append(u) }
            }
        }
        return out + "\""
    }

    /// A comment's text on one line: a client's value or header name in it may hold a line
    /// break or another control character, shown escaped (`\n`, `\u{1B}`).
    static func comment(_ s: String) -> String {
        var out = ""
        for u in s.unicodeScalars {
            switch u {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 || u.value == 0x7F || (0x80..<0xA0).contains(u.value) || u.value == 0x2028 || u.value == 0x2029 {
                    out += "\\u{\(String(u.value, radix: 16, uppercase: true))}"
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out
    }

    static func list(_ items: [String]) -> String { "[" + items.map(quoted).joined(separator: ", ") + "]" }

    static func render(_ sample: DraftSample, name: String, bareName: String, dataset: String, client: String?) -> String {
        let (fields, style, nulls) = fields(sample)
        var out = "# Drafted by `sluice mapping draft` from \(name): \(sample.rows) row\(sample.rows == 1 ? "" : "s") sampled"
        out += sample.truncated ? " (the first of the file).\n" : " (the whole file).\n"
        out += "# Check every line with a comment, save it as <mappings_dir>/\(client ?? "CLIENT").toml, then run `sluice check-config`.\n"
        for note in sample.notes { out += "# \(comment(note))\n" }
        out += "\n[datasets.\(dataset)]\n"
        out += "match = [\(quoted(glob(bareName)))]  # from the sample's name, its numbers and dates as *: widen it to every name the client uses\n"
        out += "format = \(quoted(sample.format))\n"
        switch sample.format {
        case "csv":
            let d = sample.dialect!
            let delimiter = String(UnicodeScalar(d.delimiter))
            out += "delimiter = \(quoted(delimiter))"
            if let close = d.closeCall { out += "  # \(quoted(String(UnicodeScalar(close)))) reads the sample almost as well: check" }
            out += "\nquote = \(quoted(String(UnicodeScalar(d.quote))))\n"
            out += "encoding = \(quoted(d.encoding.rawValue))\n"
            out += "header = \(d.header)\(d.header ? "" : "  # no header row found: fields are mapped by column number")\n"
            out += "skip_rows = \(d.skipRows)"
            if d.skipRows > 0 {
                let first = d.records[0].joined(separator: delimiter)
                out += "  # \(d.skipRows) line\(d.skipRows == 1 ? "" : "s") before the header, the first: \(String(first.prefix(60)).debugDescription)"
            }
            out += "\n"
        case "json":
            out += "records = \(quoted(sample.records ?? ""))\n"
        case "xlsx":
            out += "sheet = \(quoted(sample.sheet ?? ""))\(sample.sheets > 1 ? "  # the first of the \(sample.sheets) sheets that holds a table" : "")\n"
            out += "header = \(sample.header)\n"
            out += "skip_rows = \(sample.skipRows)\n"
        case "fixed":
            out += "encoding = \(quoted(sample.encoding?.rawValue ?? "utf-8"))\n"
            if !sample.skipPrefixes.isEmpty { out += "skip_prefixes = \(list(sample.skipPrefixes))  # header and trailer records\n" }
        default: break
        }
        if sample.format != "xlsx" {
            out += "decimal_separator = \(quoted(String(style.decimal)))\n"
            if ["csv", "fixed"].contains(sample.format) {
                if let t = style.thousands { out += "thousands_separator = \(quoted(String(t)))\n" } else { out += "# thousands_separator: none seen in the sample\n" }
            }
        }
        out += "null_values = \(list(nulls))\n"
        let rejects = fields.reduce(into: Set<Int>()) { $0.formUnion($1.rejectRows) }.count + sample.raggedRows
        if rejects > 0 && sample.rows > 0 {
            // The next of 1, 2, 5 × 10^k above the sample's share of rejects.
            let share = Double(rejects) / Double(sample.rows + sample.raggedRows)
            let ratio = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1].first { $0 >= share * 1.5 } ?? 1
            out += "max_reject_ratio = \(ratio)  # \(rejects) of \(sample.rows + sample.raggedRows) sampled rows would be rejects (see the fields below)\n"
        } else {
            out += "max_reject_ratio = 0  # any rejected row fails the file; raise it to let a few bad rows through\n"
        }
        out += "fields = [\n"
        for (f, c) in zip(fields, sample.columns) {
            var parts = ["name = \(quoted(f.name))"]
            if let start = c.start, let width = c.width {
                parts.append("start = \(start)")
                parts.append("width = \(width)")
            } else {
                parts.append("source = \(quoted(f.source))")
            }
            parts.append("type = \(quoted(f.type.description))")
            if let format = f.format { parts.append("format = \(quoted(format))") }
            if let tz = f.timezone { parts.append("timezone = \(quoted(tz))") }
            if let t = f.trueValues { parts.append("true_values = \(list(t))") }
            if let v = f.falseValues { parts.append("false_values = \(list(v))") }
            if f.trim { parts.append("trim = true") }
            if f.required { parts.append("required = true") }
            out += "  { \(parts.joined(separator: ", ")) },"
            if !f.notes.isEmpty { out += "  # check: \(comment(f.notes.joined(separator: "; ")))" }
            out += "\n"
        }
        out += "]\n"
        return out
    }

    /// The draft is read as `check-config` reads a mapping file; a draft it refuses is a bug.
    static func validate(_ text: String, client: String) throws(Failure) {
        do {
            let table = try TOMLText.parse(text, file: "(draft)")
            _ = try TableReader(file: "(draft)", text: text).mapping(table, client: client, sha256: hexString(SHA256.hash(data: Data(text.utf8))))
        } catch {
            throw Failure(description: "the drafted mapping does not pass check-config (a bug in Sluice; please report it with the file): \(error)\n\(text)", usage: false)
        }
    }
}
