import Foundation
import SluiceConfig
import SluiceFormats
import SluiceIngest
import SluiceLake
import SluiceParquet
import SluiceSupport

/// `format = "fixed"`: fixed-width text, each field at its `start` and `width`.
package struct FixedWidthOptions: FormatOptions, Equatable {
    package var skipRows: Int
    /// Lines starting with one of these (a header or trailer record) are skipped.
    package var skipPrefixes: [String]
    package var encoding: SourceEncoding
}

package struct FixedWidthFormat: InputFormat {
    package let name = "fixed"
    package let keys: Set<String> = ["skip_rows", "skip_prefixes", "encoding", "decimal_separator", "thousands_separator", "null_values"]
    package var positionalFields: Bool { true }

    package func options(_ t: TOMLTable, path: String, reader: TableReader) throws(ConfigError) -> any FormatOptions {
        FixedWidthOptions(skipRows: try reader.skipRows(t, path), skipPrefixes: try reader.stringArray(t, "skip_prefixes", path) ?? [],
                          encoding: try reader.encoding(t, path))
    }

    package func transform(_ input: TransformInput, _ d: DatasetMapping, with transformer: Transformer, parquet: ParquetOptions,
                           result: inout TransformResult) throws {
        try transformer.transformFixed(input, d, d.options(FixedWidthOptions.self), options: parquet, result: &result)
    }
}

extension Transformer {
    /// Fixed-width text: after `skip_rows` lines and any line starting with one of
    /// `skip_prefixes`, each field is the characters [start, start + width) of the line, with
    /// the padding spaces trimmed. A line too short for a field leaves that field absent.
    func transformFixed(_ input: TransformInput, _ d: DatasetMapping, _ o: FixedWidthOptions, options: ParquetOptions, result: inout TransformResult) throws {
        let bytes = try inputBytes(input, d).read
        let lines = TextLineReader(encoding: o.encoding, read: bytes)
        // The observed schema: the defined fields (by position) with the type their text looks
        // like in the first records, and the lengths of the data lines.
        var sniffer = SchemaSniffer(columns: d.fields.count)
        var lengths: ClosedRange<Int>?
        func observed() -> ObservedSchema {
            let names = d.fields.map { "\($0.start ?? 1)-\(($0.start ?? 1) + ($0.width ?? 0) - 1)" }
            var schema = ObservedSchema.headed(format: d.format.name, encoding: o.encoding.rawValue, delimiter: nil, header: names, sniffer: sniffer,
                                               fields: d.fields, columnOf: Array(d.fields.indices))
            schema.lineLength = lengths.map { [$0.lowerBound, $0.upperBound] }
            return schema
        }
        defer { result.observedSchema = observed() }
        let sink = try OutputSink(lake: lake, input: input, dataset: d, options: options)
        defer { sink.abandonIfOpen() }
        var number = 0
        while let bytes = try lines.next() {
            number += 1
            if number <= o.skipRows || bytes.isEmpty { continue }
            guard let line = String(validating: bytes, as: UTF8.self) else {
                try sink.reject(line: number, values: String(decoding: bytes, as: UTF8.self), reasons: ["_row": "invalid UTF-8 (is the file's encoding \(o.encoding.rawValue)?)"])
                continue
            }
            if o.skipPrefixes.contains(where: { line.hasPrefix($0) }) { continue }
            let chars = Array(line.unicodeScalars)
            if sniffer.wantsMore { lengths = lengths.map { Swift.min($0.lowerBound, chars.count)...Swift.max($0.upperBound, chars.count) } ?? chars.count...chars.count }
            var cells: [String?] = []
            var values: [ParquetValue] = []
            var reasons: [String: String] = [:]
            for f in d.fields {
                let raw = Self.cell(chars, f)
                cells.append(raw)
                do throws(ValueError) {
                    values.append(try Self.value(raw, f, d))
                } catch {
                    reasons[f.name] = error.description
                }
            }
            if sniffer.wantsMore { sniffer.observe(cells: cells) }
            if reasons.isEmpty {
                try sink.accept(values, line: number)
            } else {
                try sink.reject(line: number, values: line, reasons: reasons)
            }
        }
        result.observedSchema = observed()
        try sink.finish(into: &result)
    }

    /// Field `f`'s text in a line's characters: `width` of them from `start`, trimmed; nil
    /// when the line ends before `start`.
    package static func cell(_ chars: [Unicode.Scalar], _ f: FieldMapping) -> String? {
        let from = (f.start ?? 1) - 1
        guard from >= 0, from < chars.count else { return nil }
        var s = String.UnicodeScalarView()
        s.append(contentsOf: chars[from..<Swift.min(chars.count, from + Swift.max(f.width ?? 0, 0))])
        return String(s).trimmingCharacters(in: .whitespaces)
    }
}
