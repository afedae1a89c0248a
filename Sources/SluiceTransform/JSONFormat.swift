import Foundation
import SluiceConfig
import SluiceFormats
import SluiceIngest
import SluiceLake
import SluiceParquet
import SluiceSupport

/// `format = "json"`: one document whose records are the elements of the array at `records`.
package struct JSONOptions: FormatOptions, Equatable {
    /// The dotted path to the array of records; "" (the default) is the top-level array.
    package var records: String
}

package struct JSONFormat: InputFormat {
    package let name = "json"
    package let keys: Set<String> = ["records", "decimal_separator", "null_values"]

    package func options(_ t: TOMLTable, path: String, reader: TableReader) throws(ConfigError) -> any FormatOptions {
        JSONOptions(records: try reader.string(t, "records", path, required: false) ?? "")
    }

    package func transform(_ input: TransformInput, _ d: DatasetMapping, with transformer: Transformer, parquet: ParquetOptions,
                           result: inout TransformResult) throws {
        try transformer.transformJSON(input, d, d.options(JSONOptions.self), options: parquet, result: &result)
    }
}

/// `format = "jsonl"`: JSON Lines, one object per line; it has no options of its own.
package struct JSONLinesOptions: FormatOptions, Equatable {}

package struct JSONLinesFormat: InputFormat {
    package let name = "jsonl"
    package let keys: Set<String> = ["decimal_separator", "null_values"]

    package func options(_ t: TOMLTable, path: String, reader: TableReader) throws(ConfigError) -> any FormatOptions { JSONLinesOptions() }

    package func transform(_ input: TransformInput, _ d: DatasetMapping, with transformer: Transformer, parquet: ParquetOptions,
                           result: inout TransformResult) throws {
        try transformer.transformJSONL(input, d, options: parquet, result: &result)
    }
}

extension Transformer {
    /// JSON Lines: one object per line, fields found by dotted paths. A line that is not a
    /// JSON object (a truncated last line, say) is one reject.
    func transformJSONL(_ input: TransformInput, _ d: DatasetMapping, options: ParquetOptions, result: inout TransformResult) throws {
        let bytes = try inputBytes(input, d).read
        let lines = TextLineReader(encoding: .utf8, read: bytes)
        var sniffer = RecordSniffer()
        defer { result.observedSchema = ObservedSchema.records(format: d.format.name, sniffer: sniffer, fields: d.fields) }
        let observed = { [d] (sniffer: RecordSniffer) in ObservedSchema.records(format: d.format.name, sniffer: sniffer, fields: d.fields) }
        let sink = try OutputSink(lake: lake, input: input, dataset: d, options: options)
        defer { sink.abandonIfOpen() }
        let fields = JSONFields(d)
        /// A line the whole way: parsed into a `JSONValue` (the schema sample sees it), then
        /// its fields looked up; or a reject.
        func whole(_ line: UnsafeRawBufferPointer, _ number: Int) throws {
            let value: JSONValue
            do throws(JSONError) {
                value = try JSONValue.parse(line)
            } catch {
                try sink.reject(line: number, valuesJSON: JSONValue.string(String(decoding: line, as: UTF8.self)).jsonText,
                                reasons: ["_row": "not a JSON object (\(error.description))"])
                return
            }
            if sniffer.wantsMore { sniffer.observe(value) }
            try jsonRecord(value, number: number, fields, sink)
        }
        guard let picker = fields.picker() else {
            // Paths the picker does not take: every line the whole way, read in place.
            var number = 0
            while try lines.nextLine({ (line: UnsafeBufferPointer<UInt8>) throws -> Void in
                number += 1
                if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { return }
                try whole(UnsafeRawBufferPointer(line), number)
            }) {}
            result.observedSchema = observed(sniffer)
            return try sink.finish(into: &result)
        }
        // Lines are read and picked on another thread; past the schema sample, a picked line's
        // values go straight into the row, and anything else the whole way.
        let slots = fields.slotCount
        let picked = PickedLines(lines: lines, picker: picker, slots: slots)
        defer { picked.stop() }
        while let batch = try picked.next() {
            // Each array is reached once a batch, not once a value (no reference counting per value).
            try batch.text.withUnsafeBytes { text in
                try batch.owned.withUnsafeBytes { owned in
                    try batch.values.withUnsafeBufferPointer { values in
                        var first = 0
                        for line in batch.lines {
                            let bytes = UnsafeRawBufferPointer(rebasing: text[line.start..<(line.start + line.length)])
                            if line.picked {
                                let base = first
                                first += slots
                                if !sniffer.wantsMore, fields.convert({ k in
                                    let v = values[base + k]
                                    switch v.kind {
                                    case 0: return .absent
                                    case 1: return .null
                                    case 2: return .bool(true)
                                    case 3: return .bool(false)
                                    case 4: return .string(UnsafeRawBufferPointer(rebasing: text[v.offset..<(v.offset + v.length)]))
                                    case 5: return .number(UnsafeRawBufferPointer(rebasing: text[v.offset..<(v.offset + v.length)]))
                                    default: return .string(UnsafeRawBufferPointer(rebasing: owned[v.offset..<(v.offset + v.length)]))
                                    }
                                }, into: sink.row) {
                                    try sink.acceptRow(line: line.number)
                                    continue
                                }
                            }
                            try whole(bytes, line.number)
                        }
                    }
                }
            }
            let end = batch.end
            picked.recycle(batch)
            if end { break }
        }
        result.observedSchema = observed(sniffer)
        try sink.finish(into: &result)
    }

    /// JSON: the records are the elements of the array at the dataset's `records` path ("" =
    /// the top-level array), streamed one at a time; `_row_number` is the record's 1-based
    /// index. A document of the wrong shape (no such path, not an array) or broken JSON fails
    /// the file, naming what was found; the raw version is kept for a re-run.
    func transformJSON(_ input: TransformInput, _ d: DatasetMapping, _ o: JSONOptions, options: ParquetOptions, result: inout TransformResult) throws {
        let bytes = try inputBytes(input, d).read
        let reader = JSONRecordReader(records: o.records, read: bytes)
        var sniffer = RecordSniffer()
        defer { result.observedSchema = ObservedSchema.records(format: d.format.name, sniffer: sniffer, fields: d.fields) }
        let observed = { [d] (sniffer: RecordSniffer) in ObservedSchema.records(format: d.format.name, sniffer: sniffer, fields: d.fields) }
        let sink = try OutputSink(lake: lake, input: input, dataset: d, options: options)
        defer { sink.abandonIfOpen() }
        let fields = JSONFields(d)
        while true {
            let record: (index: Int, line: Int, value: JSONValue)?
            do {
                record = try reader.next()
            } catch {
                throw TransformError("\(error.description); the raw version is kept — fix the mapping's records path or the file, then run `sluice transform \(input.client) --failed`")
            }
            guard let record else { break }
            if sniffer.wantsMore { sniffer.observe(record.value) }
            try jsonRecord(record.value, number: record.index, fields, sink)
        }
        result.observedSchema = observed(sniffer)
        try sink.finish(into: &result)
    }

    /// One JSON record into a row (or a reject): each field's dotted path is looked up; a
    /// string, number or bool is read as text, a nested object or array as its JSON text.
    func jsonRecord(_ value: JSONValue, number: Int, _ fields: JSONFields, _ sink: OutputSink) throws {
        guard case .object = value else {
            try sink.reject(line: number, valuesJSON: value.jsonText, reasons: ["_row": "record \(number) is \(Self.kind(value)), not a JSON object"])
            return
        }
        var reasons: [String: String] = [:]
        let row = sink.row
        row.clear()
        for (i, field) in fields.fields.enumerated() {
            // The source path, else the first alias the record has.
            var found: JSONValue?
            for path in field.paths {
                found = value.lookup(steps: path)
                if found != nil { break }
            }
            do throws(ValueError) {
                try field.convert(found, into: row)
            } catch {
                reasons[fields.dataset.fields[i].name] = error.description
            }
        }
        if reasons.isEmpty {
            try sink.acceptRow(line: number)
        } else {
            try sink.reject(line: number, valuesJSON: value.jsonText, reasons: reasons)
        }
    }

    package static func kind(_ v: JSONValue) -> String {
        switch v {
        case .null: "null"
        case .bool: "a boolean"
        case .number: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }

    /// A JSON value as the text the typed conversion reads (nil for null or absent).
    package static func text(_ v: JSONValue?) -> String? {
        switch v {
        case nil, .null?: nil
        case .string(let s)?: s
        case .number(let n)?: n
        case .bool(let b)?: b ? "true" : "false"
        case let other?: other.jsonText
        }
    }
}

/// A dataset's fields prepared for JSON records once per file: each field's paths (its source,
/// then its aliases) split into steps, and its converter, so that a value goes from the
/// record's text to the row by the same fast paths as a CSV field's.
struct JSONFields {
    struct Field {
        let paths: [[String]]
        let converter: FieldConverter
        let epochSeconds: Bool

        func convert(_ value: JSONValue?, into row: ParquetRow) throws(ValueError) {
            if epochSeconds, case .number(let n)? = value {
                // A JSON number in a timestamp field: seconds since the epoch.
                // Up to 9999-12-31T23:59:59Z, so that the microseconds always fit.
                guard let seconds = Double(n), seconds.isFinite, abs(seconds) <= 253_402_300_799 else {
                    throw ValueError("\(n) is not a time in seconds since the epoch (up to the year 9999)")
                }
                row.set(converter.column, timestamp: Int64((seconds * 1_000_000).rounded()))
                return
            }
            guard var text = Transformer.text(value) else { return try converter.convert(nil, into: row) }
            let failure: ValueError? = text.withUTF8 { bytes in
                do throws(ValueError) {
                    try converter.convert(bytes, into: row)
                    return nil
                } catch {
                    return error
                }
            }
            if let failure { throw failure }
        }
    }

    let dataset: DatasetMapping
    let fields: [Field]
    /// Per field: how many names it has (its slots in the picker), and its converter unretained.
    private let nameCounts: [Int]
    private let unretained: [Unmanaged<FieldConverter>]

    /// A picker of every field's paths (source, then aliases), in field order.
    func picker() -> JSONPicker? {
        JSONPicker(paths: dataset.fields.flatMap(\.names))
    }

    private static let trueText = Array("true".utf8), falseText = Array("false".utf8)

    /// A picked slot's value, as the converters read it.
    enum Slot {
        case absent, null
        case bool(Bool)
        /// A string's UTF-8 (or a nested value's JSON text).
        case string(UnsafeRawBufferPointer)
        /// A number's source text.
        case number(UnsafeRawBufferPointer)
    }

    /// How many paths the picker looks for (every field's source and aliases).
    var slotCount: Int { nameCounts.reduce(0, +) }

    /// Sets the row from a picked record, `slot(k)` being path k's value; false (the row
    /// cleared) when a field's value does not convert, for the whole way to reject with
    /// every reason.
    func convert(_ slot: (Int) -> Slot, into row: ParquetRow) -> Bool {
        var next = 0
        do throws(ValueError) {
            for i in 0..<unretained.count {
                let names = nameCounts[i]
                var found: Slot = .absent
                for k in next..<(next + names) {
                    let p = slot(k)
                    if case .absent = p { continue }
                    found = p
                    break
                }
                next += names
                // `fields` keeps the converters alive; no reference counting per value.
                var failure: ValueError?
                unretained[i]._withUnsafeGuaranteedRef { c in
                    do throws(ValueError) {
                        switch found {
                        case .absent, .null: try c.convert(nil, into: row)
                        case .bool(let b): try (b ? Self.trueText : Self.falseText).withUnsafeBufferPointer { bytes throws(ValueError) in try c.convert(bytes, into: row) }
                        case .string(let raw): try c.convert(raw.assumingMemoryBound(to: UInt8.self), into: row)
                        case .number(let raw):
                            if fields[i].epochSeconds {
                                try fields[i].convert(.number(String(decoding: raw, as: UTF8.self)), into: row)
                            } else {
                                try c.convert(raw.assumingMemoryBound(to: UInt8.self), into: row)
                            }
                        }
                    } catch {
                        failure = error
                    }
                }
                if let failure { throw failure }
            }
            return true
        } catch {
            row.clear()
            return false
        }
    }

    init(_ d: DatasetMapping) {
        dataset = d
        fields = d.fields.enumerated().map { i, f in
            Field(paths: f.names.map { $0.split(separator: ".", omittingEmptySubsequences: false).map(String.init) },
                  converter: FieldConverter(field: f, dataset: d, column: i), epochSeconds: f.type == .timestamp)
        }
        nameCounts = fields.map(\.paths.count)
        unretained = fields.map { Unmanaged.passUnretained($0.converter) }
    }
}
