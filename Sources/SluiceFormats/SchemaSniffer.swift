import Foundation

/// The type a column's values look like, as the schema sniffer sees them: the narrowest of
/// these that every non-empty value read fits.
public enum SniffedType: String, Sendable, Codable, CaseIterable {
    /// No value but empty ones.
    case empty
    case bool
    case integer
    /// A number with a fractional part (`.` or `,`).
    case decimal
    case date
    case timestamp
    case text

    /// The type of one non-empty value.
    public static func of(_ v: UnsafeBufferPointer<UInt8>) -> SniffedType {
        var s = v[...]
        while let f = s.first, f == 0x20 || f == 0x09 { s = s.dropFirst() }
        while let l = s.last, l == 0x20 || l == 0x09 { s = s.dropLast() }
        if s.isEmpty { return .empty }
        if isBool(s) { return .bool }
        // Dates first: 01.10.2026 is digits and dots too.
        if let t = dateOrTimestamp(s) { return t }
        if let n = number(s) { return n }
        return .text
    }

    /// The type of a column holding values of both types.
    public func merged(with other: SniffedType) -> SniffedType {
        if self == other || other == .empty { return self }
        if self == .empty { return other }
        switch (self, other) {
        case (.integer, .decimal), (.decimal, .integer): return .decimal
        case (.date, .timestamp), (.timestamp, .date): return .timestamp
        default: return .text
        }
    }

    private static let boolWords: [[UInt8]] = ["true", "false", "yes", "no"].map { Array($0.utf8) }

    private static func isBool(_ s: Slice<UnsafeBufferPointer<UInt8>>) -> Bool {
        guard s.count <= 5 else { return false }
        let lower = s.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }
        return boolWords.contains(lower)
    }

    private static func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }

    /// Integer (`-12`, `1.234` is not one) or decimal (`-12.5`, `12,5`, `1.234,56`, `1,234.56`).
    private static func number(_ s: Slice<UnsafeBufferPointer<UInt8>>) -> SniffedType? {
        var i = s.startIndex
        if s[i] == UInt8(ascii: "-") || s[i] == UInt8(ascii: "+") { i += 1 }
        guard i < s.endIndex else { return nil }
        var digits = 0, separators = 0
        for j in i..<s.endIndex {
            let b = s[j]
            if isDigit(b) { digits += 1 } else if b == UInt8(ascii: ".") || b == UInt8(ascii: ",") { separators += 1 } else { return nil }
        }
        guard digits > 0, isDigit(s[i]), isDigit(s[s.endIndex - 1]) else { return nil }
        return separators == 0 ? .integer : .decimal
    }

    /// `2026-10-01`, `01.10.2026`, `10/01/2026` (a date), with a time after a space or `T`
    /// (a timestamp).
    private static func dateOrTimestamp(_ s: Slice<UnsafeBufferPointer<UInt8>>) -> SniffedType? {
        let b = Array(s)
        func digits(_ from: Int, _ n: Int) -> Bool { from + n <= b.count && b[from..<(from + n)].allSatisfy(isDigit) }
        var end = 0
        if digits(0, 4), b.count >= 10, b[4] == b[7], b[4] == UInt8(ascii: "-") || b[4] == UInt8(ascii: "/"), digits(5, 2), digits(8, 2) {
            end = 10
        } else if digits(0, 2), b.count >= 10, b[2] == b[5], [UInt8(ascii: "."), UInt8(ascii: "/"), UInt8(ascii: "-")].contains(b[2]), digits(3, 2), digits(6, 4) {
            end = 10
        } else {
            return nil
        }
        if end == b.count { return .date }
        guard b[end] == UInt8(ascii: " ") || b[end] == UInt8(ascii: "T"), digits(end + 1, 2), end + 3 < b.count, b[end + 3] == UInt8(ascii: ":"),
              digits(end + 4, 2) else { return nil }
        return .timestamp
    }
}

/// Up to `SampleValues.limit` distinct example values of each type: what a type change
/// shows (`"N/A"` where a column of integers became text).
public struct SampleValues: Sendable, Equatable {
    public static let limit = 3
    public private(set) var byType: [SniffedType: [String]] = [:]

    public init() {}

    public func count(_ type: SniffedType) -> Int { byType[type]?.count ?? 0 }

    public func wants(_ type: SniffedType) -> Bool { type != .empty && count(type) < Self.limit }

    public mutating func add(_ value: String, as type: SniffedType) {
        guard wants(type), byType[type]?.contains(value) != true else { return }
        byType[type, default: []].append(value)
    }

    /// The examples of the types that do not fit `type` (the values that made a column of
    /// `type` something else), at most `limit`.
    public func notFitting(_ type: SniffedType) -> [String] {
        let order = SniffedType.allCases.filter { $0 != .empty && type.merged(with: $0) != type }
        return Array(order.flatMap { byType[$0] ?? [] }.prefix(Self.limit))
    }
}

/// Watches the values of a file's columns (the first `sampleRows` records) and tells what type
/// each looks like, with a few example values of each type.
public struct SchemaSniffer: Sendable {
    public static let sampleRows = 1000
    public private(set) var types: [SniffedType]
    public private(set) var samples: [SampleValues]
    public private(set) var rows = 0

    public init(columns: Int) {
        types = Array(repeating: .empty, count: columns)
        samples = Array(repeating: SampleValues(), count: columns)
    }

    /// Whether it still wants records.
    public var wantsMore: Bool { rows < Self.sampleRows }

    /// One record's values (a record wider than the header widens the sniffer).
    public mutating func observe(_ count: Int, _ value: (Int) -> UnsafeBufferPointer<UInt8>) {
        observeTypes(count, { SniffedType.of(value($0)) }, { String(decoding: value($0), as: UTF8.self) })
    }

    /// Observes one record of string cells (a spreadsheet row; nil = an empty cell).
    public mutating func observe(cells: [String?]) {
        observeTypes(cells.count, { i in
            guard var cell = cells[i] else { return .empty }
            return cell.withUTF8 { SniffedType.of($0) }
        }, { cells[$0] ?? "" })
    }

    /// `type(i)` is asked only for columns whose type can still change (or that still want an
    /// example of text); `text(i)` only for a value kept as an example.
    private mutating func observeTypes(_ count: Int, _ type: (Int) -> SniffedType, _ text: (Int) -> String) {
        rows += 1
        if count > types.count {
            types += Array(repeating: .empty, count: count - types.count)
            samples += Array(repeating: SampleValues(), count: count - samples.count)
        }
        for i in 0..<count where types[i] != .text || samples[i].wants(.text) {
            let t = type(i)
            types[i] = types[i].merged(with: t)
            if samples[i].wants(t) { samples[i].add(text(i).trimmingCharacters(in: .whitespaces), as: t) }
        }
    }
}

/// Watches JSON records (the first `SchemaSniffer.sampleRows`) and tells which dotted paths
/// occur, in the order first seen, and what type each path's values look like: a number is
/// an integer or a decimal, a string is sniffed as text is, a nested object adds its members'
/// paths, an array is text.
public struct RecordSniffer: Sendable {
    public private(set) var paths: [String] = []
    public private(set) var types: [String: SniffedType] = [:]
    public private(set) var samples: [String: SampleValues] = [:]
    public private(set) var rows = 0

    public init() {}

    public var wantsMore: Bool { rows < SchemaSniffer.sampleRows }

    public mutating func observe(_ record: JSONValue) {
        rows += 1
        walk(record, prefix: "")
    }

    private mutating func walk(_ value: JSONValue, prefix: String) {
        if case .object(let members) = value {
            for m in members { walk(m.value, prefix: prefix.isEmpty ? m.key : "\(prefix).\(m.key)") }
            return
        }
        let type: SniffedType = switch value {
        case .null: .empty
        case .bool: .bool
        case .number(let n): n.contains { $0 == "." || $0 == "e" || $0 == "E" } ? .decimal : .integer
        case .string(let s): Array(s.utf8).withUnsafeBufferPointer { SniffedType.of($0) }
        case .array: .text
        case .object: .text
        }
        if let seen = types[prefix] {
            types[prefix] = seen.merged(with: type)
        } else {
            paths.append(prefix)
            types[prefix] = type
        }
        if samples[prefix, default: SampleValues()].wants(type) {
            let text: String = switch value {
            case .bool(let b): b ? "true" : "false"
            case .number(let n): n
            case .string(let s): s
            default: "[…]"
            }
            samples[prefix, default: SampleValues()].add(text, as: type)
        }
    }
}
