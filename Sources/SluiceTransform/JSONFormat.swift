import Foundation
import SluiceConfig
import SluiceFormats
import SluiceIngest
import SluiceLake
import SluiceParquet
import SluiceSupport
import TOMLKit

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
        let picker = fields.picker()
        var number = 0
        // Each line is read in place in the reader's buffer.
        while try lines.nextLine({ (line: UnsafeBufferPointer<UInt8>) throws -> Void in
            number += 1
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { return }
            // Past the schema sample, the mapped paths are picked out of the line without
            // building it; a line the picker or a field does not take goes the whole way.
            if let picker, !sniffer.wantsMore, picker.pick(UnsafeRawBufferPointer(line)), fields.convert(picker, into: sink.row) {
                try sink.acceptRow(line: number)
                return
            }
            let value: JSONValue
            do throws(JSONError) {
                value = try JSONValue.parse(UnsafeRawBufferPointer(line))
            } catch {
                try sink.reject(line: number, valuesJSON: JSONValue.string(String(decoding: line, as: UTF8.self)).jsonText,
                                reasons: ["_row": "not a JSON object (\(error.description))"])
                return
            }
            if sniffer.wantsMore { sniffer.observe(value) }
            try jsonRecord(value, number: number, fields, sink)
        }) != nil {}
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

    /// Sets the row from a picked record; false (the row cleared) when a field's value does
    /// not convert, for the `JSONValue` way to reject with every reason.
    func convert(_ picker: JSONPicker, into row: ParquetRow) -> Bool {
        var slot = 0
        do throws(ValueError) {
            for i in 0..<unretained.count {
                let names = nameCounts[i]
                var found: JSONPicker.Picked = .absent
                for k in slot..<(slot + names) {
                    let p = picker.picked(k)
                    if case .absent = p { continue }
                    found = p
                    break
                }
                slot += names
                // `fields` keeps the converters alive; no reference counting per value.
                var failure: ValueError?
                unretained[i]._withUnsafeGuaranteedRef { c in
                    do throws(ValueError) {
                        switch found {
                        case .absent, .null: try c.convert(nil, into: row)
                        case .bool(let b): try (b ? Self.trueText : Self.falseText).withUnsafeBufferPointer { bytes throws(ValueError) in try c.convert(bytes, into: row) }
                        case .string(let raw): try c.convert(raw.assumingMemoryBound(to: UInt8.self), into: row)
                        case .owned(let k): try picker.owned[k].withUnsafeBufferPointer { b throws(ValueError) in try c.convert(b, into: row) }
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
