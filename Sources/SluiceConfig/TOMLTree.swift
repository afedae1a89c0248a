import CTOML
#if canImport(Glibc)
import Glibc
#endif

/// A TOML table as Sluice reads it: its own Swift values, copied out of toml++'s tree once.
///
/// TOMLKit 0.6.0 (over toml++) frees nothing it allocates: a parsed document's tree is never
/// deleted, and every key list, string, integer and boolean its Swift layer hands out is a C
/// copy left on the heap. Every config or mapping load (each start, reload and console re-run)
/// kept about 24 KB for agent.conf.example and 11 KB for a mapping file, and the `config` and
/// `mapping` fuzz harnesses grew by about 260 bytes an execution, past their 2 GB limit within
/// the hour. So the document is parsed through TOMLKit's C layer (CTOML), each C copy is freed
/// as soon as it is read, and the tree is deleted (`tableClear`) once copied: what stays behind
/// is toml++'s empty root table, 96 bytes a load.
package struct TOMLTable: Sendable {
    /// The keys in toml++'s order (sorted by byte).
    package let keys: [String]
    private let values: [String: TOMLValue]

    package init(_ entries: [(String, TOMLValue)]) {
        keys = entries.map(\.0)
        values = Dictionary(entries, uniquingKeysWith: { _, last in last })
    }

    package subscript(key: String) -> TOMLValue? { values[key] }
    package var count: Int { keys.count }
    package var isEmpty: Bool { keys.isEmpty }
}

/// toml++'s message for a document it cannot parse, and where.
struct TOMLSyntaxError: Error {
    let message: String
    let line: Int
    let column: Int
}

/// One TOML value. Dates and times are refused before parsing (`TOMLText`), but are kept as
/// their kind if one ever gets through, so a setting says what it found.
package enum TOMLValue: Sendable {
    case string(String)
    case int(Int)
    case double(Double)
    case bool(Bool)
    case table(TOMLTable)
    case array([TOMLValue])
    case dateOrTime

    package var string: String? { if case .string(let s) = self { s } else { nil } }
    package var int: Int? { if case .int(let i) = self { i } else { nil } }
    package var double: Double? { if case .double(let d) = self { d } else { nil } }
    package var bool: Bool? { if case .bool(let b) = self { b } else { nil } }
    package var table: TOMLTable? { if case .table(let t) = self { t } else { nil } }
    package var array: [TOMLValue]? { if case .array(let a) = self { a } else { nil } }

    /// "a string", "an integer", … for messages.
    package var kindName: String {
        switch self {
        case .table: "a table"
        case .array: "an array"
        case .string: "a string"
        case .int: "an integer"
        case .double: "a float"
        case .bool: "a boolean"
        case .dateOrTime: "a date/time"
        }
    }
}

extension TOMLTable {
    /// Parses a document with toml++ and copies it out; toml++'s message and position on a
    /// syntax error. Call only on text `TOMLText` has screened (toml++ aborts on some shapes).
    static func parseScreened(_ text: String) -> Result<TOMLTable, TOMLSyntaxError> {
        let error = UnsafeMutablePointer<CTOMLParseError>.allocate(capacity: 1)
        defer { error.deallocate() }
        guard let root = text.withCString({ tableCreateFromString($0, error) }) else {
            let e = error.pointee
            let message = String(cString: e.description)
            free(UnsafeMutableRawPointer(mutating: e.description))
            return .failure(TOMLSyntaxError(message: message, line: Int(e.source.begin.line), column: Int(e.source.begin.column)))
        }
        defer { tableClear(root) }
        return .success(copy(root))
    }

    private static func copy(_ t: OpaquePointer) -> TOMLTable {
        let n = tableSize(t)
        guard n > 0 else { return TOMLTable([]) }
        let keys = tableGetKeys(t), nodes = tableGetValues(t)
        defer {
            for i in 0..<n { free(UnsafeMutableRawPointer(mutating: keys[i])) }
            free(UnsafeMutableRawPointer(mutating: keys))
            free(UnsafeMutableRawPointer(mutating: nodes))
        }
        return TOMLTable((0..<n).map { (String(cString: keys[$0]), copy(node: nodes[$0])) })
    }

    private static func copy(node: OpaquePointer) -> TOMLValue {
        func take<T>(_ p: UnsafePointer<T>?) -> T? {
            guard let p else { return nil }
            defer { free(UnsafeMutableRawPointer(mutating: p)) }
            return p.pointee
        }
        switch nodeType(node) {
        case .string:
            guard let p = nodeAsString(node) else { return .string("") }
            defer { free(UnsafeMutableRawPointer(mutating: p)) }
            return .string(String(cString: p))
        case .integer: return .int(Int(take(nodeAsInt(node)) ?? 0))
        case .floatingPoint: return .double(take(nodeAsDouble(node)) ?? 0)
        case .boolean: return .bool(take(nodeAsBool(node)) ?? false)
        case .table: return nodeAsTable(node).map { .table(copy($0)) } ?? .table(TOMLTable([]))
        case .array:
            guard let a = nodeAsArray(node) else { return .array([]) }
            return .array((0..<arraySize(a)).map { copy(node: arrayGetNode(a, Int64($0))) })
        case .date, .timeType, .dateTime: return .dateOrTime
        }
    }
}
