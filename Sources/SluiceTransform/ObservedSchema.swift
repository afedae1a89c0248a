import Crypto
import Foundation
import SluiceFormats

/// The schema a transformed unit (a file, or an archive member) was seen to have: its columns
/// in file order with the type a sniffer sees in their values, how it was read, and which
/// column filled each field. Identical schemas share one manifest row, by fingerprint.
public struct ObservedSchema: Sendable, Equatable, Codable {
    public struct Column: Sendable, Equatable, Codable {
        public var name: String
        public var type: SniffedType
    }

    /// The dataset's format (`csv`, …).
    public var format: String
    /// The text encoding the file was read in, when it is text.
    public var encoding: String?
    /// The delimiter, for delimited text.
    public var delimiter: String?
    public var columns: [Column]
    /// Each mapped field's column name (its `source` or the alias the file had); a field no
    /// column filled is absent.
    public var fields: [String: String]

    /// The schema as canonical JSON (sorted keys): what the manifest stores and fingerprints.
    public var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? encoder.encode(self)) ?? Data(), as: UTF8.self)
    }

    /// SHA-256 of `json`, lowercase hex.
    public var fingerprint: String {
        SHA256.hash(data: Data(json.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// The schema of a file with a header: each field's column is the one `columns(for:header:)`
    /// chose (-1: none).
    package static func headed(format: String, encoding: String?, delimiter: String?, header: [String], sniffer: SchemaSniffer,
                               fields: [FieldMapping], columnOf: [Int]) -> ObservedSchema {
        var names = header
        // A record wider than the header: its extra columns have no name.
        while names.count < sniffer.types.count { names.append("column\(names.count + 1)") }
        let columns = names.enumerated().map { Column(name: $1, type: $0 < sniffer.types.count ? sniffer.types[$0] : .empty) }
        var matched: [String: String] = [:]
        for (f, c) in zip(fields, columnOf) where c >= 0 && c < names.count { matched[f.name] = names[c] }
        return ObservedSchema(format: format, encoding: encoding, delimiter: delimiter, columns: columns, fields: matched)
    }

    /// The schema of JSON records: the paths that occurred in the sampled records, and for each
    /// field the path (its `source` or an alias) that the records had.
    package static func records(format: String, sniffer: RecordSniffer, fields: [FieldMapping]) -> ObservedSchema {
        let columns = sniffer.paths.map { Column(name: $0, type: sniffer.types[$0] ?? .empty) }
        var matched: [String: String] = [:]
        for f in fields {
            if let path = f.names.first(where: { name in sniffer.types[name] != nil || sniffer.paths.contains { $0.hasPrefix(name + ".") } }) {
                matched[f.name] = path
            }
        }
        return ObservedSchema(format: format, encoding: "utf-8", delimiter: nil, columns: columns, fields: matched)
    }
}
