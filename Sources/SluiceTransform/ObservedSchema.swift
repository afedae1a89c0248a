import Crypto
import Foundation
import SluiceFormats
import Synchronization

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
    /// Fixed-width: the shortest and longest data line in the sample, in characters.
    public var lineLength: [Int]?
    /// A few example values of each type, by column: not part of the schema (nor of its
    /// fingerprint), kept only for the drift a unit shows against the delivery before it.
    public var samples: [String: SampleValues] = [:]

    enum CodingKeys: String, CodingKey { case format, encoding, delimiter, columns, fields, lineLength = "line_length" }

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
        var samples: [String: SampleValues] = [:]
        for (i, name) in names.enumerated() where i < sniffer.samples.count && samples[name] == nil { samples[name] = sniffer.samples[i] }
        return ObservedSchema(format: format, encoding: encoding, delimiter: delimiter, columns: columns, fields: matched, lineLength: nil, samples: samples)
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
        return ObservedSchema(format: format, encoding: "utf-8", delimiter: nil, columns: columns, fields: matched, lineLength: nil, samples: sniffer.samples)
    }
}

/// What changed from one observed schema to the next: columns added, removed, renamed (a
/// field filled through another name, by its aliases), moved, and columns whose values now
/// look like another type; and the mapped fields the newer one leaves unfilled.
public struct SchemaDrift: Sendable, Equatable, Codable {
    public struct Renamed: Sendable, Equatable, Codable { public var field, from, to: String }
    public struct Moved: Sendable, Equatable, Codable { public var column: String; public var from, to: Int }
    public struct TypeChange: Sendable, Equatable, Codable {
        public var column: String
        public var from, to: SniffedType
        /// Up to 3 of the new unit's values that do not fit the old type.
        public var examples: [String] = []

        /// `"amount" was integer, is now text (e.g. "N/A", "-")`.
        public var description: String {
            "column \"\(column)\" was \(from.rawValue), is now \(to.rawValue)"
                + (examples.isEmpty ? "" : " (e.g. \(examples.map { "\"\($0)\"" }.joined(separator: ", ")))")
        }
    }

    public var added: [String] = []
    public var removed: [String] = []
    public var renamed: [Renamed] = []
    /// 1-based positions.
    public var moved: [Moved] = []
    public var typeChanges: [TypeChange] = []

    enum CodingKeys: String, CodingKey { case added, removed, renamed, moved, typeChanges = "type_changes" }

    public var isEmpty: Bool { added.isEmpty && removed.isEmpty && renamed.isEmpty && moved.isEmpty && typeChanges.isEmpty }

    /// How many changes of each kind (the `kind` of `sluice_schema_changes_total`): added,
    /// removed, renamed, moved, type_changed; kinds without a change are absent.
    public var counts: [String: Int] {
        let all = ["added": added.count, "removed": removed.count, "renamed": renamed.count, "moved": moved.count, "type_changed": typeChanges.count]
        return all.filter { $0.value > 0 }
    }

    /// The drift as JSON (what a transform row keeps).
    public var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? encoder.encode(self)) ?? Data(), as: UTF8.self)
    }

    public init(json: String) throws { self = try JSONDecoder().decode(SchemaDrift.self, from: Data(json.utf8)) }

    /// The drift from the previous delivery's schema to a unit's; nil when there was none
    /// before, the unit was not read far enough, or nothing changed.
    static func between(_ previous: ObservedSchema?, _ schema: ObservedSchema?) -> SchemaDrift? {
        guard let previous, let schema else { return nil }
        let drift = SchemaDrift(from: previous, to: schema)
        return drift.isEmpty ? nil : drift
    }

    /// The drift from `old` to `new`. A column that was only empty in one of them has not
    /// changed type: the sample said nothing.
    public init(from old: ObservedSchema, to new: ObservedSchema) {
        for (field, to) in new.fields.sorted(by: { $0.key < $1.key }) {
            if let from = old.fields[field], from != to { renamed.append(Renamed(field: field, from: from, to: to)) }
        }
        let renamedFrom = Set(renamed.map(\.from)), renamedTo = Set(renamed.map(\.to))
        let oldNames = old.columns.map(\.name), newNames = new.columns.map(\.name)
        added = newNames.filter { !oldNames.contains($0) && !renamedTo.contains($0) }
        removed = oldNames.filter { !newNames.contains($0) && !renamedFrom.contains($0) }
        // Moved: the order of the columns both have changed.
        let common = newNames.filter { oldNames.contains($0) }
        let commonOld = oldNames.filter { newNames.contains($0) }
        if common != commonOld {
            for name in common {
                let from = oldNames.firstIndex(of: name)!, to = newNames.firstIndex(of: name)!
                if commonOld.firstIndex(of: name) != common.firstIndex(of: name) { moved.append(Moved(column: name, from: from + 1, to: to + 1)) }
            }
        }
        var oldType: [String: SniffedType] = [:]
        for c in old.columns { oldType[c.name] = c.type }
        // A renamed column is compared with the column it replaced.
        for r in renamed { if let t = old.columns.first(where: { $0.name == r.from })?.type { oldType[r.to] = t } }
        for c in new.columns {
            guard let from = oldType[c.name], from != c.type, from != .empty, c.type != .empty else { continue }
            typeChanges.append(TypeChange(column: c.name, from: from, to: c.type, examples: new.samples[c.name]?.notFitting(from) ?? []))
        }
    }
}

/// A unit whose schema change its dataset's policy holds: nothing is published, and the
/// transform is recorded `held` with `reason`.
package struct SchemaHold: Error { package let reason: String }

extension DatasetMapping {
    /// Whether any policy can hold or fail a unit.
    package var hasSchemaPolicies: Bool { onNewColumn != .ignore || onMissingColumn != .null || onTypeChange != .reject }

    /// Applies the dataset's schema-change policies to a unit's observed schema and its drift
    /// from the previous delivery (nil: none before, or no change): throws `SchemaHold`, or a
    /// failure, naming every change and the key that decided.
    package func enforce(_ schema: ObservedSchema?, drift: SchemaDrift?, client: String) throws {
        guard let schema else { return }
        var hold: [String] = [], fail: [String] = []
        func decide(_ policy: ChangePolicy, _ key: String, _ what: String) {
            switch policy {
            case .hold: hold.append("\(what) (\(key) = \"hold\")")
            case .fail: fail.append("\(what) (\(key) = \"fail\")")
            default: break
            }
        }
        for column in drift?.added ?? [] { decide(onNewColumn, "on_new_column", "new column \"\(column)\"") }
        if !format.positionalFields {
            for f in fields where !f.required && schema.fields[f.name] == nil {
                decide(onMissingColumn, "on_missing_column", "no column for field \(f.name) (\(f.names.map { "\"\($0)\"" }.joined(separator: " or ")))")
            }
        }
        let mapped = Set(schema.fields.values)
        for t in drift?.typeChanges ?? [] where mapped.contains(t.column) {
            decide(onTypeChange, "on_type_change", t.description)
        }
        if !fail.isEmpty {
            throw Transformer.TransformError("schema change: \(fail.joined(separator: "; ")); the raw version is kept — update the mapping, then run `sluice transform \(client) --failed`")
        }
        if !hold.isEmpty {
            throw SchemaHold(reason: "schema change held: \(hold.joined(separator: "; ")); nothing was written — update the mapping or accept the change, then run `sluice transform \(client) --held`")
        }
    }
}

/// Each dataset's previous schema, read once: the members of one archive all follow the same
/// delivery, so a thousand members cost one manifest read per dataset, not a thousand.
package final class PreviousSchemas: Sendable {
    private let lookup: @Sendable (String) -> ObservedSchema?
    private let seen = Mutex<[String: ObservedSchema?]>([:])

    package init(_ lookup: @escaping @Sendable (String) -> ObservedSchema?) { self.lookup = lookup }

    package func callAsFunction(_ dataset: String) -> ObservedSchema? {
        if let hit = seen.withLock({ $0[dataset] }) { return hit }
        let schema = lookup(dataset)
        seen.withLock { $0[dataset] = .some(schema) }
        return schema
    }
}
