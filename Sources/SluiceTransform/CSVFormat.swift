import Foundation
import SluiceConfig
import SluiceFormats
import SluiceIngest
import SluiceLake
import SluiceParquet
import SluiceSupport

/// `format = "csv"`: delimited text, with or without a header row.
package struct CSVOptions: FormatOptions, Equatable {
    package var delimiter: UInt8
    package var quote: UInt8
    package var header: Bool
    /// Lines before the header (or the first record).
    package var skipRows: Int
    package var encoding: SourceEncoding
}

package struct CSVFormat: InputFormat {
    package let name = "csv"
    package let keys: Set<String> = ["delimiter", "quote", "header", "skip_rows", "encoding", "decimal_separator", "thousands_separator", "null_values"]

    package func options(_ t: TOMLTable, path: String, reader: TableReader) throws(ConfigError) -> any FormatOptions {
        CSVOptions(delimiter: try reader.singleByte(t, "delimiter", path, default: UInt8(ascii: ",")),
                   quote: try reader.singleByte(t, "quote", path, default: UInt8(ascii: "\"")),
                   header: try reader.bool(t, "header", path) ?? true, skipRows: try reader.skipRows(t, path), encoding: try reader.encoding(t, path))
    }

    package func transform(_ input: TransformInput, _ d: DatasetMapping, with transformer: Transformer, parquet: ParquetOptions,
                           result: inout TransformResult) throws {
        try transformer.transformCSV(input, d, d.options(CSVOptions.self), options: parquet, result: &result)
    }
}

extension Transformer {
    func transformCSV(_ input: TransformInput, _ d: DatasetMapping, _ o: CSVOptions, options: ParquetOptions, result: inout TransformResult) throws {
        let bytes = try inputBytes(input, d).read
        let reader = CSVReader(delimiter: o.delimiter, quote: o.quote, encoding: o.encoding, read: bytes)
        // skip_rows lines before the header.
        for _ in 0..<o.skipRows { _ = try reader.next() }
        var columnOf: [Int] = []
        var headerNames: [String] = []
        if o.header {
            guard let header = try reader.next() else { throw TransformError("the file is empty: no header row") }
            headerNames = header.fields.map { String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespaces) }
        }
        // The header and the first records' values make the observed schema, recorded whether
        // the transform succeeds or not (a missing column is a schema change too).
        var sniffer = SchemaSniffer(columns: headerNames.count)
        func observed() -> ObservedSchema {
            let names = o.header ? headerNames : (0..<sniffer.types.count).map { "column\($0 + 1)" }
            return ObservedSchema.headed(format: d.format.name, encoding: o.encoding.rawValue, delimiter: String(UnicodeScalar(o.delimiter)),
                                         header: names, sniffer: sniffer, fields: d.fields, columnOf: columnOf)
        }
        defer { result.observedSchema = observed() }
        columnOf = try Self.columns(for: d, header: o.header ? headerNames : nil)
        let width = o.header ? headerNames.count : nil

        let sink = try OutputSink(lake: lake, input: input, dataset: d, options: options)
        defer { sink.abandonIfOpen() }
        let converters = d.fields.enumerated().map { FieldConverter(field: $1, dataset: d, column: $0) }
        // `converters` keeps them alive (to the end of this scope, by the defer); calling
        // through these costs no retain per value.
        let unretained = converters.map { Unmanaged.passUnretained($0) }
        defer { withExtendedLifetime(converters) {} }
        while try reader.advance() {
            let line = reader.recordLine
            var reasons: [String: String] = [:]
            let blank = reader.withFields { fields in
                if fields.count == 1 && fields[0].isEmpty { return true }
                if sniffer.wantsMore { sniffer.observe(fields.count) { fields[$0] } }
                if let m = reader.malformed { reasons["_row"] = m }
                if let width, fields.count != width { reasons["_row"] = "row has \(fields.count) fields, the header has \(width)" }
                guard reasons.isEmpty else { return false }
                // Every converter sets its column (a value or a null), so the row needs no
                // clearing first; a rejected row's strings are dropped below.
                let row = sink.row
                for i in unretained.indices {
                    let c = columnOf[i]
                    do {
                        try unretained[i]._withUnsafeGuaranteedRef { converter in
                            try converter.convert(c >= 0 && c < fields.count ? fields[c] : nil, into: row)
                        }
                    } catch {
                        reasons[d.fields[i].name] = (error as? ValueError)?.description ?? "\(error)"
                    }
                }
                return false
            }
            if blank { continue }
            if reasons.isEmpty {
                try sink.acceptRow(line: line)
            } else {
                sink.row.clear()
                let values = reader.withFields { f in (0..<f.count).map { String(decoding: f[$0], as: UTF8.self) } }
                try sink.reject(line: line, values: values, reasons: reasons)
            }
        }
        result.observedSchema = observed()
        try sink.finish(into: &result)
    }
}
