import Foundation
import SluiceLake
import SluiceParquet
import SluiceTransform
#if canImport(Glibc)
import Glibc
#endif

/// A stored version to transform.
public struct TransformInput: Sendable {
    public var client: String
    public var source: String
    public var path: RelativePath
    public var version: Int
    public var sha256: String
    /// Relative to the lake root.
    public var lakePath: String
    /// Microseconds since the epoch (UTC) of the ingest.
    public var ingestedAtMicros: Int64

    public init(client: String, source: String, path: RelativePath, version: Int, sha256: String, lakePath: String, ingestedAtMicros: Int64) {
        self.client = client
        self.source = source
        self.path = path
        self.version = version
        self.sha256 = sha256
        self.lakePath = lakePath
        self.ingestedAtMicros = ingestedAtMicros
    }
}

public struct TransformResult: Sendable, Equatable {
    public enum Status: String, Sendable { case ok, failed, unmapped }
    public var status: Status
    public var dataset: String?
    public var rowsWritten: Int64 = 0
    public var rowsRejected: Int64 = 0
    /// Relative to the lake root.
    public var outputPath: String?
    public var rejectsPath: String?
    public var error: String?
}

/// Turns one stored version into typed Parquet (or JSONL) under `processed/`, with lineage
/// columns, and its rejected rows into a sibling `.rejects.jsonl`.
public struct Transformer: Sendable {
    public let lakeRoot: String
    public let mapping: ClientMapping

    public init(lakeRoot: String, mapping: ClientMapping) {
        self.lakeRoot = lakeRoot
        self.mapping = mapping
    }

    /// The dataset whose `match` (and `sources`) take this version, if any.
    public func dataset(for input: TransformInput) -> DatasetMapping? {
        mapping.datasets.first { d in
            (d.sources == nil || d.sources!.contains(input.source)) && d.match.contains { $0.matches(input.path.bytes) }
        }
    }

    /// `processed/<client>/<dataset>/ingest_date=YYYY-MM-DD/<source>__<path>.v<N>.parquet`.
    public static func outputPath(_ input: TransformInput, dataset: String, extension ext: String) -> String {
        let day = input.ingestedAtMicros / 86_400_000_000
        let date = Self.civil(day)
        var name = ""
        for b in Array(input.source.utf8) + [UInt8(ascii: "/")] + input.path.bytes {
            switch b {
            case UInt8(ascii: "/"): name += "__"
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "."), UInt8(ascii: "-"), UInt8(ascii: "_"):
                name.unicodeScalars.append(Unicode.Scalar(b))
            default: name += String(format: "%%%02X", b)
            }
        }
        return "processed/\(input.client)/\(dataset)/ingest_date=\(date)/\(name).v\(input.version).\(ext)"
    }

    static func civil(_ days: Int64) -> String {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        let y = yoe + era * 400 + (m <= 2 ? 1 : 0)
        return String(format: "%04lld-%02lld-%02lld", y, m, d)
    }

    public func run(_ input: TransformInput, options: ParquetOptions = ParquetOptions()) -> TransformResult {
        guard let dataset = dataset(for: input) else { return TransformResult(status: .unmapped) }
        var result = TransformResult(status: .failed, dataset: dataset.name)
        do {
            switch dataset.format {
            case .csv:
                try transformCSV(input, dataset, options: options, result: &result)
            default:
                throw TransformError("the \(dataset.format.rawValue) reader is not available in this build yet; the raw version is kept and can be re-run")
            }
        } catch let e as TransformError {
            result.error = e.message
        } catch {
            result.error = "\(error)"
        }
        return result
    }

    struct TransformError: Error { let message: String; init(_ m: String) { message = m } }

    static let lineage: [ParquetField] = [
        ParquetField(name: "_client", type: .string, nullable: false),
        ParquetField(name: "_source", type: .string, nullable: false),
        ParquetField(name: "_source_path", type: .string, nullable: false),
        ParquetField(name: "_source_version", type: .int64, nullable: false),
        ParquetField(name: "_source_sha256", type: .string, nullable: false),
        ParquetField(name: "_row_number", type: .int64, nullable: false),
        ParquetField(name: "_ingested_at", type: .timestampMicros, nullable: false),
    ]

    static func parquetType(_ t: FieldType) -> ParquetColumnType {
        switch t {
        case .string: .string
        case .int64: .int64
        case .float64: .float64
        case .bool: .bool
        case .date: .date
        case .timestamp: .timestampMicros
        case .decimal(let p, let s): .decimal(precision: p, scale: s)
        }
    }

    /// One field's typed value from its raw text (nil = absent).
    static func value(_ raw: String?, _ f: FieldMapping, _ d: DatasetMapping) throws(ValueError) -> ParquetValue {
        var text = raw
        if f.trim { text = text?.trimmingCharacters(in: .whitespaces) }
        if let t = text, d.nullValues.contains(t) { text = nil }
        if let t = text, let mapped = f.map[t] { text = mapped }
        guard let present = text ?? f.defaultValue else {
            if f.required { throw ValueError("required field \(f.name) is empty") }
            return .null
        }
        switch f.type {
        case .string: return .string(Array(present.utf8))
        case .int64: return .int64(try Values.int64(present, decimal: d.decimalSeparator, thousands: d.thousandsSeparator))
        case .float64: return .float64(try Values.float64(present, decimal: d.decimalSeparator, thousands: d.thousandsSeparator))
        case .bool: return .bool(try Values.bool(present, trueValues: f.trueValues, falseValues: f.falseValues))
        case .date: return .date(try Values.date(present, format: f.format))
        case .timestamp: return .timestamp(try Values.timestamp(present, format: f.format, zone: f.timezone))
        case .decimal(let p, let s):
            return .decimal(try Values.decimal(present, precision: p, scale: s, decimal: d.decimalSeparator, thousands: d.thousandsSeparator))
        }
    }

    private func transformCSV(_ input: TransformInput, _ d: DatasetMapping, options: ParquetOptions, result: inout TransformResult) throws {
        let fd = open("\(lakeRoot)/\(input.lakePath)", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw TransformError("cannot open \(input.lakePath): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let encoding: SourceEncoding = switch d.encoding {
        case .utf8: .utf8
        case .utf16: .utf16
        case .latin1: .latin1
        case .windows1252: .windows1252
        }
        let reader = CSVReader(delimiter: d.delimiter, quote: d.quote, encoding: encoding) { buffer in
            let n = Glibc.read(fd, buffer.baseAddress!, buffer.count)
            if n < 0 { throw TransformError("reading \(input.lakePath) failed: \(String(cString: strerror(errno)))") }
            return n
        }
        // skip_rows lines before the header.
        for _ in 0..<d.skipRows { _ = try reader.next() }
        var columnOf: [Int] = []
        var headerNames: [String] = []
        if d.header {
            guard let header = try reader.next() else { throw TransformError("the file is empty: no header row") }
            headerNames = header.fields.map { String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespaces) }
            var missing: [String] = []
            for f in d.fields {
                let source = f.source ?? ""
                if let i = headerNames.firstIndex(of: source) {
                    columnOf.append(i)
                } else if let n = Int(source), n >= 1 {
                    columnOf.append(n - 1)
                } else {
                    if f.required { missing.append(source) }
                    columnOf.append(-1)
                }
            }
            if !missing.isEmpty {
                throw TransformError("missing required column\(missing.count > 1 ? "s" : "") \(missing.map { "\"\($0)\"" }.joined(separator: ", ")) (the header has \(headerNames.joined(separator: ", ")))")
            }
        } else {
            for f in d.fields {
                guard let n = Int(f.source ?? ""), n >= 1 else { throw TransformError("field \(f.name): without a header, source must be a 1-based column number") }
                columnOf.append(n - 1)
            }
        }
        let width = d.header ? headerNames.count : nil

        let outRel = Self.outputPath(input, dataset: d.name, extension: d.output == .parquet ? "parquet" : "jsonl")
        let rejectsRel = String(outRel.dropLast(d.output == .parquet ? 8 : 6)) + ".rejects.jsonl"
        let out = try AtomicFile(lakeRoot: lakeRoot, relative: outRel)
        let rejects = try AtomicFile(lakeRoot: lakeRoot, relative: rejectsRel)
        var committed = false
        defer { if !committed { out.abandon(); rejects.abandon() } }
        let fields = d.fields.map { ParquetField(name: $0.name, type: Self.parquetType($0.type), nullable: !$0.required) } + Self.lineage
        let writer: ParquetWriter? = d.output == .parquet ? try ParquetWriter(fields: fields, options: options) { try out.write($0) } : nil
        let lineagePrefix: [ParquetValue] = [
            .string(Array(input.client.utf8)), .string(Array(input.source.utf8)), .string(Array(input.path.display.utf8)),
            .int64(Int64(input.version)), .string(Array(input.sha256.utf8)),
        ]
        var rows: Int64 = 0
        var rejected: Int64 = 0
        while let record = try reader.next() {
            if record.fields.count == 1 && record.fields[0].isEmpty { continue }  // blank line
            var reasons: [String: String] = [:]
            if let m = record.malformed { reasons["_row"] = m }
            if let width, record.fields.count != width { reasons["_row"] = "row has \(record.fields.count) fields, the header has \(width)" }
            var values: [ParquetValue] = []
            values.reserveCapacity(fields.count)
            if reasons.isEmpty {
                for (i, f) in d.fields.enumerated() {
                    let c = columnOf[i]
                    var raw: String?
                    if c >= 0 && c < record.fields.count {
                        guard let s = String(validating: record.fields[c], as: UTF8.self) else {
                            reasons[f.name] = "invalid UTF-8 (is the file's encoding \(d.encoding.rawValue)?)"
                            continue
                        }
                        raw = s
                    }
                    do {
                        values.append(try Self.value(raw, f, d))
                    } catch {
                        reasons[f.name] = error.description
                    }
                }
            }
            if !reasons.isEmpty {
                rejected += 1
                let rawValues = record.fields.map { String(decoding: $0, as: UTF8.self) }
                let line: [String: Any] = ["row": record.line, "values": rawValues, "reasons": reasons]
                var data = try JSONSerialization.data(withJSONObject: line, options: [.sortedKeys, .withoutEscapingSlashes])
                data.append(0x0A)
                try data.withUnsafeBytes { try rejects.write($0) }
                continue
            }
            values += lineagePrefix
            values.append(.int64(Int64(record.line)))
            values.append(.timestamp(input.ingestedAtMicros))
            if let writer {
                try writer.append(values)
            } else {
                try Self.jsonLine(values, fields: fields, into: out)
            }
            rows += 1
        }
        try writer?.finish()
        result.rowsWritten = rows
        result.rowsRejected = rejected
        let total = rows + rejected
        if total > 0, Double(rejected) / Double(total) > d.maxRejectRatio {
            throw TransformError("\(rejected) of \(total) rows rejected, more than max_reject_ratio \(d.maxRejectRatio); see the reasons by re-running after a fix")
        }
        try out.publish()
        result.outputPath = outRel
        if rejected > 0 {
            try rejects.publish()
            result.rejectsPath = rejectsRel
        } else {
            rejects.abandon()
            unlink("\(lakeRoot)/\(rejectsRel)")
        }
        committed = true
        result.status = .ok
    }

    static func jsonLine(_ values: [ParquetValue], fields: [ParquetField], into out: AtomicFile) throws {
        var object: [String: Any] = [:]
        for (f, v) in zip(fields, values) {
            switch v {
            case .null: object[f.name] = NSNull()
            case .string(let b): object[f.name] = String(decoding: b, as: UTF8.self)
            case .int64(let i): object[f.name] = i
            case .float64(let d): object[f.name] = d
            case .bool(let b): object[f.name] = b
            case .date(let d): object[f.name] = civil(Int64(d))
            case .timestamp(let t): object[f.name] = t
            case .decimal(let d):
                if case .decimal(_, let scale) = f.type {
                    let digits = String(d.magnitude)
                    let padded = String(repeating: "0", count: Swift.max(0, scale + 1 - digits.count)) + digits
                    let cut = padded.index(padded.endIndex, offsetBy: -scale)
                    object[f.name] = (d < 0 ? "-" : "") + padded[..<cut] + (scale > 0 ? "." + padded[cut...] : "")
                }
            }
        }
        var data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        data.append(0x0A)
        try data.withUnsafeBytes { try out.write($0) }
    }
}

/// A file under `processed/` written to a temp file in its folder, fsync'd, then renamed over
/// any earlier output (re-runs replace outputs atomically), and the folder fsync'd.
final class AtomicFile {
    let final: String
    let temp: String
    private var fd: Int32

    init(lakeRoot: String, relative: String) throws {
        final = "\(lakeRoot)/\(relative)"
        let dir = (final as NSString).deletingLastPathComponent
        try makeDirectories(dir)
        temp = "\(dir)/.%tmp-transform-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o440)
        guard fd >= 0 else { throw SystemCallError(call: "open", errno: errno, path: temp) }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        try writeAll(fd, bytes, path: temp)
    }

    func publish() throws {
        try systemCall("fsync", temp) { fsync(fd) }
        close(fd)
        fd = -1
        try systemCall("rename", final) { rename(temp, final) }
        try syncDirectory((final as NSString).deletingLastPathComponent)
    }

    func abandon() {
        if fd >= 0 {
            close(fd)
            fd = -1
        }
        unlink(temp)
    }
}

/// One transform, as `pull` and `transform` print it.
public struct TransformReport: Sendable, Encodable {
    public var source: String
    public var path: String
    public var version: Int
    public var dataset: String?
    public var status: String
    public var rowsWritten: Int64
    public var rowsRejected: Int64
    public var outputPath: String?
    public var rejectsPath: String?
    public var error: String?

    enum CodingKeys: String, CodingKey {
        case source, path, version, dataset, status, rowsWritten = "rows_written", rowsRejected = "rows_rejected"
        case outputPath = "output_path", rejectsPath = "rejects_path", error
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(source, forKey: .source)
        try c.encode(path, forKey: .path)
        try c.encode(version, forKey: .version)
        try c.encode(dataset, forKey: .dataset)
        try c.encode(status, forKey: .status)
        try c.encode(rowsWritten, forKey: .rowsWritten)
        try c.encode(rowsRejected, forKey: .rowsRejected)
        try c.encode(outputPath, forKey: .outputPath)
        try c.encode(rejectsPath, forKey: .rejectsPath)
        try c.encode(error, forKey: .error)
    }
}
