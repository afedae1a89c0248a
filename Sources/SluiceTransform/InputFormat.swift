import SluiceConfig
import SluiceFormats
import SluiceParquet

// The seam for input formats. A format is one conformance to `InputFormat` in a file of its
// own (its options struct, how its keys are read, and how a version in it becomes rows) and
// one line in `InputFormats.all`.

/// An input format: the `format = "…"` a dataset names, the dataset keys it takes, and how a
/// stored version in it becomes rows.
package protocol InputFormat: Sendable {
    /// The value of `format`.
    var name: String { get }
    /// The dataset keys this format takes besides the common ones (`match`, `sources`,
    /// `format`, `output`, `compression`, `max_reject_ratio`, `fields`). The value keys
    /// `decimal_separator`, `thousands_separator` and `null_values` are among them where the
    /// format holds numbers as text.
    var keys: Set<String> { get }
    /// Fields are found by position (`start` and `width`) rather than by `source`.
    var positionalFields: Bool { get }
    /// Reads this format's own keys of a dataset's table (only keys in `keys` are there).
    func options(_ t: TOMLTable, path: String, reader: TableReader) throws(ConfigError) -> any FormatOptions
    /// Transforms one stored version: reads it, types each record into the sink, finishes.
    func transform(_ input: TransformInput, _ d: DatasetMapping, with transformer: Transformer, parquet: ParquetOptions,
                   result: inout TransformResult) throws
}

extension InputFormat {
    package var positionalFields: Bool { false }
}

/// A format's own options, as its dataset's table sets them.
package protocol FormatOptions: Sendable {
    /// The text encoding the file is read in.
    var encoding: SourceEncoding { get }
}

extension FormatOptions {
    package var encoding: SourceEncoding { .utf8 }
}

/// The input formats of this build, in the order messages list them.
package enum InputFormats {
    package static let all: [any InputFormat] = [
        CSVFormat(),
        JSONFormat(),
        JSONLinesFormat(),
        XLSXFormat(),
        FixedWidthFormat(),
    ]

    package static func named(_ name: String) -> (any InputFormat)? { all.first { $0.name == name } }
}

extension DatasetMapping {
    /// The dataset's options as its format's own type (the format made them).
    package func options<O: FormatOptions>(_ type: O.Type) -> O {
        guard let o = options as? O else { preconditionFailure("dataset \(name): the \(format.name) format got options of another format") }
        return o
    }
}

extension TableReader {
    /// `skip_rows`: a whole number ≥ 0, default 0.
    package func skipRows(_ t: TOMLTable, _ path: String) throws(ConfigError) -> Int {
        guard let v = t["skip_rows"] else { return 0 }
        guard let i = v.int, i >= 0 else { throw fail("\(path).skip_rows", "expected a whole number ≥ 0") }
        return i
    }

    /// `encoding`, default UTF-8.
    package func encoding(_ t: TOMLTable, _ path: String) throws(ConfigError) -> SourceEncoding {
        let text = try string(t, "encoding", path, required: false) ?? "utf-8"
        guard let encoding = SourceEncoding(rawValue: text.lowercased()) else {
            throw fail("\(path).encoding", "expected one of \(SourceEncoding.allCases.map(\.rawValue).joined(separator: ", ")), found \"\(text)\"")
        }
        return encoding
    }
}
