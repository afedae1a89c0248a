import Crypto
import Foundation
import SluiceSupport
import SluiceLake
import SluiceParquet
import SluiceManifest
import SluiceIngest
import SluiceConfig
import SluiceFormats

/// A field's target type in a mapping file.
public enum FieldType: Sendable, Equatable, CustomStringConvertible {
    case string, int64, float64, bool, date, timestamp
    case decimal(precision: Int, scale: Int)

    /// Parses `string`, `int64`, `float64`, `bool`, `date`, `timestamp`, `decimal(p,s)`.
    public init?(_ text: String) {
        switch text {
        case "string": self = .string
        case "int64": self = .int64
        case "float64": self = .float64
        case "bool": self = .bool
        case "date": self = .date
        case "timestamp": self = .timestamp
        default:
            let t = text.replacingOccurrences(of: " ", with: "")
            guard t.hasPrefix("decimal("), t.hasSuffix(")") else { return nil }
            let parts = t.dropFirst(8).dropLast().split(separator: ",", omittingEmptySubsequences: false)
            guard parts.count == 2, let p = Int(parts[0]), let s = Int(parts[1]), (1...38).contains(p), (0...p).contains(s) else { return nil }
            self = .decimal(precision: p, scale: s)
        }
    }

    public var description: String {
        switch self {
        case .string: "string"
        case .int64: "int64"
        case .float64: "float64"
        case .bool: "bool"
        case .date: "date"
        case .timestamp: "timestamp"
        case .decimal(let p, let s): "decimal(\(p),\(s))"
        }
    }
}

public enum OutputFormat: String, Sendable {
    case parquet, jsonl
}

/// One output column of a dataset.
public struct FieldMapping: Sendable {
    public var name: String
    /// A header name, a 1-based column number, or a dotted JSON path (nil for fixed-width).
    public var source: String?
    /// Other names the same column goes by (`aliases = ["Order Number", "OrderNo"]`): when the
    /// header (or record) has no `source`, the first alias it has fills the field.
    public var aliases: [String] = []

    /// `source`, then the aliases: the names a column may have, in the order they are tried.
    public var names: [String] { (source.map { [$0] } ?? []) + aliases }
    public var type: FieldType
    public var required: Bool
    /// strftime-style (`%Y %m %d %H %M %S %f %z`); nil = ISO 8601.
    public var format: String?
    /// IANA zone for naive timestamps.
    public var timezone: TimeZone
    public var trueValues: [String]
    public var falseValues: [String]
    public var trim: Bool
    public var map: [String: String]
    public var defaultValue: String?
    /// Fixed-width: 1-based start and width.
    public var start: Int?
    public var width: Int?

    package init(name: String, source: String? = nil, type: FieldType, required: Bool, format: String? = nil, timezone: TimeZone, trueValues: [String], falseValues: [String], trim: Bool, map: [String: String], defaultValue: String? = nil, start: Int? = nil, width: Int? = nil) {
        self.name = name
        self.source = source
        self.type = type
        self.required = required
        self.format = format
        self.timezone = timezone
        self.trueValues = trueValues
        self.falseValues = falseValues
        self.trim = trim
        self.map = map
        self.defaultValue = defaultValue
        self.start = start
        self.width = width
    }
}

public struct DatasetMapping: Sendable {
    public var name: String
    public var match: [Glob]
    public var sources: [String]?
    package var format: any InputFormat
    /// The value of `format`.
    public var formatName: String { format.name }
    public var output: OutputFormat
    /// Parquet page compression: zstd (the default), snappy or none.
    public var compression: ParquetCompression
    public var maxRejectRatio: Double
    /// The format's own options (`CSVOptions`, `JSONOptions`, …).
    package var options: any FormatOptions
    /// The text encoding the file is read in.
    public var encoding: SourceEncoding { options.encoding }
    public var decimalSeparator: Character
    public var thousandsSeparator: Character?
    public var nullValues: [String]
    public var fields: [FieldMapping]
    /// Whether a compressed delivery is unpacked on its way in (`unpack = "auto"`, the
    /// default), or taken as the bytes it is (`"none"`).
    public var unpack: Unpack = .auto

    public enum Unpack: String, Sendable {
        case auto, none
    }

    /// What a schema change does to a unit (the dataset's `on_new_column`,
    /// `on_missing_column` and `on_type_change`): `hold` keeps the raw version and writes
    /// nothing until `sluice transform CLIENT --held`; `fail` fails the unit.
    public enum ChangePolicy: String, Sendable, CaseIterable {
        /// `on_new_column` only: the column is dropped, as unmapped columns always are.
        case ignore
        /// `on_missing_column` only: the optional field is null.
        case null
        /// `on_type_change` only: values that do not parse are rejected rows.
        case reject
        case hold
        case fail
    }

    /// A column the previous delivery did not have.
    public var onNewColumn: ChangePolicy = .ignore
    /// An optional field none of whose names the unit has.
    public var onMissingColumn: ChangePolicy = .null
    /// A mapped column whose values look like another type than in the previous delivery.
    public var onTypeChange: ChangePolicy = .reject

    /// A fingerprint of the schema this dataset writes: output format and each field's name,
    /// type and nullability, in order (the lineage columns never change). Recorded with every
    /// transform, so that outputs written with other types can be found.
    public var schemaSHA256: String {
        let text = ([output.rawValue] + fields.map { "\($0.name):\($0.type):\($0.required ? "required" : "optional")" }).joined(separator: "\n")
        return hexString(SHA256.hash(data: Data(text.utf8)))
    }

    package init(name: String, match: [Glob], sources: [String]? = nil, format: any InputFormat, options: any FormatOptions, output: OutputFormat,
                 compression: ParquetCompression, maxRejectRatio: Double, decimalSeparator: Character, thousandsSeparator: Character? = nil,
                 nullValues: [String], fields: [FieldMapping]) {
        self.name = name
        self.match = match
        self.sources = sources
        self.format = format
        self.options = options
        self.output = output
        self.compression = compression
        self.maxRejectRatio = maxRejectRatio
        self.decimalSeparator = decimalSeparator
        self.thousandsSeparator = thousandsSeparator
        self.nullValues = nullValues
        self.fields = fields
    }
}

/// One client's mapping file, `<mappings_dir>/<client>.toml`.
public struct ClientMapping: Sendable {
    public var client: String
    public var file: String
    /// SHA-256 of the file's bytes, recorded with every transform.
    public var sha256: String
    /// Datasets in the order of their names.
    public var datasets: [DatasetMapping]

    package init(client: String, file: String, sha256: String, datasets: [DatasetMapping]) {
        self.client = client
        self.file = file
        self.sha256 = sha256
        self.datasets = datasets
    }
}

extension TableReader {
    package static let commonDatasetKeys: Set<String> = ["match", "sources", "format", "output", "compression", "max_reject_ratio", "unpack", "fields",
                                                         "on_new_column", "on_missing_column", "on_type_change"]
    package static let fieldKeys: Set<String> = ["name", "source", "aliases", "type", "required", "format", "timezone", "true_values", "false_values", "trim", "map", "default",
                                                 "start", "width"]

    package func mapping(_ root: TOMLTable, client: String, sha256: String) throws(ConfigError) -> ClientMapping {
        try checkKeys(root, path: "", allowed: ["datasets"])
        guard let sets = try table(root, "datasets", ""), !sets.isEmpty else {
            throw fail("datasets", "a mapping file needs at least one [datasets.NAME] table")
        }
        var datasets: [DatasetMapping] = []
        for name in sets.keys.sorted() {
            let path = "datasets.\(name)"
            guard !name.isEmpty, name.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F }) else {
                throw fail(path, "dataset name '\(name)' must match [a-z0-9_]+")
            }
            guard let t = try table(sets, name, "datasets") else { continue }
            datasets.append(try dataset(t, name: name, path: path))
        }
        return ClientMapping(client: client, file: file, sha256: sha256, datasets: datasets)
    }

    package func singleByte(_ t: TOMLTable, _ key: String, _ path: String, default value: UInt8) throws(ConfigError) -> UInt8 {
        guard let s = try string(t, key, path, required: false) else { return value }
        guard s.utf8.count == 1, let b = s.utf8.first else {
            throw fail("\(path).\(key)", "expected one ASCII character, found \"\(s)\"")
        }
        return b
    }

    package func character(_ t: TOMLTable, _ key: String, _ path: String) throws(ConfigError) -> Character? {
        guard let s = try string(t, key, path, required: false) else { return nil }
        guard s.count == 1, let c = s.first else { throw fail("\(path).\(key)", "expected one character, found \"\(s)\"") }
        return c
    }

    package func dataset(_ t: TOMLTable, name: String, path: String) throws(ConfigError) -> DatasetMapping {
        guard let formatText = try string(t, "format", path, required: true), let format = InputFormats.named(formatText) else {
            throw fail("\(path).format", "expected one of \(InputFormats.all.map(\.name).joined(separator: ", "))")
        }
        let allowed = Self.commonDatasetKeys.union(format.keys)
        for key in t.keys.sorted() where !allowed.contains(key) {
            let elsewhere = InputFormats.all.filter { $0.keys.contains(key) }.map(\.name).sorted()
            let hint = elsewhere.isEmpty ? "allowed here: \(allowed.sorted().joined(separator: ", "))" : "'\(key)' is for \(elsewhere.joined(separator: "/")) datasets, not \(format.name)"
            throw fail("\(path).\(key)", "unknown key '\(key)' (\(hint))")
        }
        let matchTexts = try stringArray(t, "match", path) ?? []
        guard !matchTexts.isEmpty else { throw fail(path, "missing required key 'match' (globs on the source-relative path)") }
        let match = try globs(matchTexts, key: "\(path).match")
        let sources = try stringArray(t, "sources", path)
        let outputText = try string(t, "output", path, required: false) ?? "parquet"
        guard let output = OutputFormat(rawValue: outputText) else { throw fail("\(path).output", "expected parquet or jsonl, found \"\(outputText)\"") }
        let compressionText = try string(t, "compression", path, required: false)
        if compressionText != nil && output != .parquet { throw fail("\(path).compression", "compression is for parquet output only") }
        guard let compression = ParquetCompression(rawValue: compressionText?.lowercased() ?? "zstd") else {
            throw fail("\(path).compression", "expected zstd, snappy or none, found \"\(compressionText ?? "")\"")
        }
        var ratio = 0.0
        if let v = t["max_reject_ratio"] {
            guard let d = v.double ?? v.int.map(Double.init), d >= 0, d <= 1 else {
                throw fail("\(path).max_reject_ratio", "expected a number from 0 to 1")
            }
            ratio = d
        }
        let options = try format.options(t, path: path, reader: self)
        let unpackText = try string(t, "unpack", path, required: false) ?? "auto"
        guard let unpack = DatasetMapping.Unpack(rawValue: unpackText) else {
            throw fail("\(path).unpack", "expected \"auto\" (unpack compressed files, the default) or \"none\", found \"\(unpackText)\"")
        }
        let decimalSeparator = try character(t, "decimal_separator", path) ?? "."
        let thousands = try character(t, "thousands_separator", path)
        if thousands == decimalSeparator { throw fail("\(path).thousands_separator", "must differ from decimal_separator") }
        guard let fieldArray = t["fields"]?.array, !fieldArray.isEmpty else {
            throw fail(path, "missing required key 'fields' (an array of { name, source, type } tables)")
        }
        var fields: [FieldMapping] = []
        var seen = Set<String>()
        for (i, element) in fieldArray.enumerated() {
            guard let ft = element.table else { throw fail("\(path).fields[\(i)]", "expected an inline table { name = …, type = … }") }
            let field = try self.field(ft, index: i, path: "\(path).fields", format: format)
            guard seen.insert(field.name).inserted else { throw fail("\(path).fields[\(i)].name", "duplicate field name '\(field.name)'") }
            fields.append(field)
        }
        var dataset = DatasetMapping(
            name: name, match: match, sources: sources, format: format, options: options, output: output, compression: compression,
            maxRejectRatio: ratio, decimalSeparator: decimalSeparator, thousandsSeparator: thousands,
            nullValues: try stringArray(t, "null_values", path) ?? [""], fields: fields)
        dataset.unpack = unpack
        func policy(_ key: String, _ allowed: [DatasetMapping.ChangePolicy], _ fallback: DatasetMapping.ChangePolicy) throws(ConfigError) -> DatasetMapping.ChangePolicy {
            guard let text = try string(t, key, path, required: false) else { return fallback }
            guard let p = DatasetMapping.ChangePolicy(rawValue: text), allowed.contains(p) else {
                throw fail("\(path).\(key)", "expected \(allowed.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")), found \"\(text)\"")
            }
            return p
        }
        dataset.onNewColumn = try policy("on_new_column", [.ignore, .hold, .fail], .ignore)
        dataset.onMissingColumn = try policy("on_missing_column", [.null, .hold, .fail], .null)
        dataset.onTypeChange = try policy("on_type_change", [.reject, .hold, .fail], .reject)
        return dataset
    }

    package func field(_ t: TOMLTable, index: Int, path: String, format: any InputFormat) throws(ConfigError) -> FieldMapping {
        var fpath = "\(path)[\(index)]"
        guard let name = try string(t, "name", fpath, required: true) else { fatalError() }
        fpath = "\(path)[\(index)] (\(name))"
        // Inline tables have no header line: point at the line that names the field.
        let line = lines.firstIndex { $0.contains("name = \"\(name)\"") || $0.contains("name=\"\(name)\"") }.map { $0 + 1 }
        func fail(_ keyPath: String, _ message: String) -> ConfigError {
            ConfigError(file: file, keyPath: keyPath, line: line, message: message)
        }
        guard !name.isEmpty, !name.hasPrefix("_") else {
            throw fail("\(fpath).name", "field names must not be empty or start with '_' (reserved for lineage columns)")
        }
        try checkKeys(t, path: fpath, allowed: Self.fieldKeys)
        guard let typeText = try string(t, "type", fpath, required: true), let type = FieldType(typeText) else {
            throw fail("\(fpath).type", "expected string, int64, float64, bool, date, timestamp or decimal(p,s) with 1 ≤ p ≤ 38 and 0 ≤ s ≤ p")
        }
        let source = try string(t, "source", fpath, required: false)
        var start: Int?, width: Int?
        if format.positionalFields {
            guard let s = t["start"]?.int, s >= 1, let w = t["width"]?.int, w >= 1 else {
                throw fail(fpath, "a fixed-width field needs start (1-based) and width, both ≥ 1")
            }
            (start, width) = (s, w)
        } else {
            if t["start"] != nil || t["width"] != nil { throw fail("\(fpath).start", "start and width are for fixed-width datasets only") }
            guard source != nil else { throw fail(fpath, "missing required key 'source' (a header name, a 1-based column number or a dotted JSON path)") }
        }
        let aliases = try stringArray(t, "aliases", fpath) ?? []
        if !aliases.isEmpty {
            if format.positionalFields { throw fail("\(fpath).aliases", "aliases are for fields found by name; a fixed-width field is found by start and width") }
            if let empty = aliases.firstIndex(where: \.isEmpty) { throw fail("\(fpath).aliases[\(empty)]", "an alias must not be empty") }
            if let again = aliases.first(where: { $0 == source }) { throw fail("\(fpath).aliases", "\"\(again)\" is the field's source already") }
            if Set(aliases).count != aliases.count { throw fail("\(fpath).aliases", "an alias is listed twice") }
        }
        let formatText = try string(t, "format", fpath, required: false)
        if let formatText {
            guard type == .date || type == .timestamp else { throw fail("\(fpath).format", "format is for date and timestamp fields only") }
            if let bad = Self.badDirective(formatText, allowed: type == .date ? "Ymd%" : "YmdHMSfz%") {
                throw fail("\(fpath).format", "unsupported directive %\(bad) in \"\(formatText)\" (supported: %Y %m %d\(type == .timestamp ? " %H %M %S %f %z" : ""), %%)")
            }
        }
        var zone = TimeZone(identifier: "UTC")!
        if let tz = try string(t, "timezone", fpath, required: false) {
            guard type == .timestamp else { throw fail("\(fpath).timezone", "timezone is for timestamp fields only") }
            guard let z = TimeZone(identifier: tz) else { throw fail("\(fpath).timezone", "unknown time zone \"\(tz)\" (expected an IANA name such as Europe/Berlin)") }
            zone = z
        }
        let trueValues = try stringArray(t, "true_values", fpath)
        let falseValues = try stringArray(t, "false_values", fpath)
        if (trueValues != nil || falseValues != nil) && type != .bool {
            throw fail("\(fpath).true_values", "true_values and false_values are for bool fields only")
        }
        var map: [String: String] = [:]
        if let mt = try table(t, "map", fpath) {
            for key in mt.keys {
                guard let v = mt[key]?.string else { throw fail("\(fpath).map.\(key)", "expected a string") }
                map[key] = v
            }
        }
        var field = FieldMapping(
            name: name, source: source, type: type, required: try bool(t, "required", fpath) ?? false, format: formatText, timezone: zone,
            trueValues: trueValues ?? ["true", "1", "yes", "y"], falseValues: falseValues ?? ["false", "0", "no", "n"],
            trim: try bool(t, "trim", fpath) ?? false, map: map, defaultValue: try string(t, "default", fpath, required: false),
            start: start, width: width)
        field.aliases = aliases
        return field
    }

    /// The first `%x` directive of `format` not in `allowed`, if any.
    package static func badDirective(_ format: String, allowed: String) -> Character? {
        var chars = format.makeIterator()
        while let c = chars.next() {
            guard c == "%" else { continue }
            guard let d = chars.next() else { return "%" }
            if !allowed.contains(d) { return d }
        }
        return nil
    }
}

extension AgentConfig {
    /// Reads and validates every `<mappings_dir>/<client>.toml`. A missing folder means no
    /// mappings; a file for a client that is not configured is an error.
    public func loadMappings() throws(ConfigError) -> [String: ClientMapping] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: mappingsDir)) ?? []
        var out: [String: ClientMapping] = [:]
        for name in names.sorted() where name.hasSuffix(".toml") {
            let file = "\(mappingsDir)/\(name)"
            let clientID = String(name.dropLast(5))
            guard client(clientID) != nil else {
                throw ConfigError(file: file, keyPath: nil, line: nil,
                                  message: "a mapping for client '\(clientID)', which \(self.file) does not configure (clients: \(clients.map(\.id).joined(separator: ", ")))")
            }
            guard let data = FileManager.default.contents(atPath: file), let text = String(data: data, encoding: .utf8) else {
                throw ConfigError(file: file, keyPath: nil, line: nil, message: "cannot read the mapping file (not UTF-8 text, or not readable)")
            }
            let table = try TOMLText.parse(text, file: file)
            let sha = hexString(SHA256.hash(data: data))
            out[clientID] = try TableReader(file: file, text: text).mapping(table, client: clientID, sha256: sha)
        }
        return out
    }
}
