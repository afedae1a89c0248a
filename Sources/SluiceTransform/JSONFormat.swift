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
        var number = 0
        while let line = try lines.next() {
            number += 1
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
            let value: JSONValue
            do {
                value = try JSONValue.parse(line)
            } catch {
                try sink.reject(line: number, valuesJSON: JSONValue.string(String(decoding: line, as: UTF8.self)).jsonText,
                                reasons: ["_row": "not a JSON object (\(error.description))"])
                continue
            }
            if sniffer.wantsMore { sniffer.observe(value) }
            try jsonRecord(value, number: number, d, sink)
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
        while true {
            let record: (index: Int, line: Int, value: JSONValue)?
            do {
                record = try reader.next()
            } catch {
                throw TransformError("\(error.description); the raw version is kept — fix the mapping's records path or the file, then run `sluice transform \(input.client) --failed`")
            }
            guard let record else { break }
            if sniffer.wantsMore { sniffer.observe(record.value) }
            try jsonRecord(record.value, number: record.index, d, sink)
        }
        result.observedSchema = observed(sniffer)
        try sink.finish(into: &result)
    }

    /// One JSON record into a row (or a reject): each field's dotted path is looked up; a
    /// string, number or bool is read as text, a nested object or array as its JSON text.
    func jsonRecord(_ value: JSONValue, number: Int, _ d: DatasetMapping, _ sink: OutputSink) throws {
        guard case .object = value else {
            try sink.reject(line: number, valuesJSON: value.jsonText, reasons: ["_row": "record \(number) is \(Self.kind(value)), not a JSON object"])
            return
        }
        var reasons: [String: String] = [:]
        let row = sink.row
        row.clear()
        for (i, f) in d.fields.enumerated() {
            // The source path, else the first alias the record has.
            var found = value.lookup(f.source ?? "")
            if found == nil { found = f.aliases.lazy.compactMap { value.lookup($0) }.first }
            do throws(ValueError) {
                if f.type == .timestamp, case .number(let n)? = found {
                    // A JSON number in a timestamp field: seconds since the epoch.
                    // Up to 9999-12-31T23:59:59Z, so that the microseconds always fit.
                    guard let seconds = Double(n), seconds.isFinite, abs(seconds) <= 253_402_300_799 else {
                        throw ValueError("\(n) is not a time in seconds since the epoch (up to the year 9999)")
                    }
                    row.set(i, timestamp: Int64((seconds * 1_000_000).rounded()))
                } else {
                    row.set(i, try Self.value(Self.text(found), f, d))
                }
            } catch {
                reasons[f.name] = error.description
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
