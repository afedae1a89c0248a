import SluiceSupport
// A streaming JSON reader (RFC 8259) on the Swift standard library alone: no Foundation.
//
// `JSONRecordReader` walks a document of any size block by block and hands out the elements
// of its records array one at a time; `JSONValue.parse` reads one complete document (a JSON
// Lines line). Both share `JSONScanner`, which works on a byte buffer with plain indices.

/// A parsed JSON value. Numbers keep their source text so that no precision is lost
/// (decimal(38,s) amounts, big integers): `.number("-12.50e3")` is exactly what the file said.
///
/// Objects keep their members in source order, duplicates included (`lookup` takes the
/// first). Equality is exact and structural: member order matters, strings compare as
/// Swift strings, and numbers compare by their text ("1.0" is not "1").
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    /// The number's exact source text, e.g. "-12.50e3".
    case number(String)
    case string(String)
    case array([JSONValue])
    /// The members in source order.
    case object([(key: String, value: JSONValue)])

    /// The value at a path split into its steps (`["customer", "id"]`; `[]` or `[""]` is the
    /// value itself); nil when any step is absent or not an object. Keys compare as Swift
    /// strings; with duplicate keys the first one wins. A transform splits its paths once and
    /// looks them up in every record this way.
    public func lookup(steps path: [String]) -> JSONValue? {
        if path.isEmpty || (path.count == 1 && path[0].isEmpty) { return self }
        var current = self
        for step in path {
            guard case .object(let members) = current else { return nil }
            var next: JSONValue?
            for m in members where m.key == step {
                next = m.value
                break
            }
            guard let found = next else { return nil }
            current = found
        }
        return current
    }

    /// The value at a dotted path such as "customer.id" ("" = self); see `lookup(steps:)`.
    public func lookup(_ path: String) -> JSONValue? {
        lookup(steps: path.split(separator: ".", omittingEmptySubsequences: false).map(String.init))
    }

    /// Parses one complete JSON document (a JSON Lines line, say). Throws `JSONError` on
    /// invalid JSON, on input that ends early, and on anything but whitespace after the value.
    /// A leading UTF-8 byte-order mark is skipped.
    public static func parse(_ bytes: some Collection<UInt8>) throws(JSONError) -> JSONValue {
        if let result = bytes.withContiguousStorageIfAvailable({ parseDocument(UnsafeRawBufferPointer($0)) }) {
            return try result.get()
        }
        return try Array(bytes).withUnsafeBytes { parseDocument($0) }.get()
    }

    /// Parses one complete JSON document held in raw memory; see `parse(_: some Collection<UInt8>)`.
    public static func parse(_ bytes: UnsafeRawBufferPointer) throws(JSONError) -> JSONValue {
        try parseDocument(bytes).get()
    }

    private static func parseDocument(_ bytes: UnsafeRawBufferPointer) -> Result<JSONValue, JSONError> {
        var scanner = JSONScanner(document: bytes)
        do throws(JSONError) {
            try scanner.skipByteOrderMark()
            guard try scanner.skipWhitespace() != nil else { return .failure(JSONError("the input is empty (no JSON value)")) }
            let value = try scanner.readValue(build: true, depth: 0)
            try scanner.expectEndOfDocument()
            return .success(value)
        } catch {
            return .failure(error)
        }
    }

    /// Compact JSON text of this value: no spaces, object keys in source order, numbers as
    /// their source text, strings escaped per RFC 8259 (`"`, `\` and control characters; all
    /// other characters, non-ASCII included, are written as UTF-8).
    public var jsonText: String {
        var out: [UInt8] = []
        writeJSON(self, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case let (.bool(a), .bool(b)): return a == b
        case let (.number(a), .number(b)): return a == b
        case let (.string(a), .string(b)): return a == b
        case let (.array(a), .array(b)): return a == b
        case let (.object(a), .object(b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        default: return false
        }
    }
}

/// Why a JSON document could not be read: where and what, e.g. "invalid JSON at line 12,
/// column 5: expected ',' or '}' after an object member (found '\"')" or "unexpected end of
/// input at line 40, inside the records array (truncated file?)". Lines count from 1 (LF
/// ends a line); columns count bytes from 1.
public struct JSONError: Error, Sendable, CustomStringConvertible {
    public let description: String
    /// What the byte source threw, when reading the input failed (rather than the JSON).
    public let underlying: (any Error)?

    public init(_ description: String, underlying: (any Error)? = nil) {
        self.description = description
        self.underlying = underlying
    }
}

/// Streams the records of a JSON document: the elements of the array found at a dotted
/// `records` path ("data.items"), or of the top-level array when `records` is "". Only the
/// input block and the current record are held, so a file of any size streams in bounded
/// memory (plus one record).
///
/// Members off the path (`"meta"` in `{"meta":{…},"data":{"items":[…]}}`) are skipped by
/// scanning: checked for syntax but never built. After the array's closing `]` the rest of
/// the document is checked the same way, so a document that is truncated or damaged
/// anywhere throws rather than ends quietly. Every error is sticky: once `next()` has
/// thrown, it throws the same error again.
///
/// Strings must be valid UTF-8 (an invalid byte is an error naming its line and column, not
/// a replacement character), and `\u` escapes must pair surrogates properly. Nesting deeper
/// than 512 arrays and objects is an error. A key that contains "." cannot be on the path.
public final class JSONRecordReader {
    private var scanner: JSONScanner
    private let storage: UnsafeMutableRawBufferPointer
    private let path: [String]
    private var state = State.start
    private var count = 0

    private enum State {
        case start, first, more, done
        case failed(JSONError)
    }

    private let maxRecordBytes: Int

    /// `read` fills a buffer and returns the byte count, 0 at the end. A record longer than
    /// `maxRecordBytes` is an error.
    public init(records: String, blockSize: Int = 1 << 20, maxRecordBytes: Int = TextTooLong.defaultLimit,
                read: @escaping (UnsafeMutableRawBufferPointer) throws -> Int) {
        self.maxRecordBytes = maxRecordBytes
        path = records.isEmpty ? [] : records.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, blockSize), alignment: 16)
        scanner = JSONScanner(storage: storage, source: read)
    }

    deinit { storage.deallocate() }

    /// The next record (each element of the array, whatever its JSON type), or nil after the
    /// array's closing `]` once the rest of the document has been checked. `index` is the
    /// 1-based record number, `line` the 1-based line where the record starts. A record is
    /// returned only once the input goes on after it, so a truncated file never yields a
    /// record that was cut short.
    public func next() throws(JSONError) -> (index: Int, line: Int, value: JSONValue)? {
        do throws(JSONError) {
            switch state {
            case .done: return nil
            case .failed(let error): throw error
            case .start:
                try scanner.skipByteOrderMark()
                try scanner.enterRecordsArray(path: path)
                state = .first
            case .first, .more: break
            }
            guard let c = try scanner.skipWhitespace() else { throw scanner.endOfInput("inside the records array") }
            let closing = c == JSONByte.closeBracket
            if case .more = state, !closing {
                // Between records: a comma, then the next record.
                guard c == JSONByte.comma else { throw scanner.unexpected(c, "expected ',' or ']' after a record") }
                scanner.pos += 1
                guard let d = try scanner.skipWhitespace() else { throw scanner.endOfInput("inside the records array") }
                if d == JSONByte.closeBracket { throw scanner.syntax("trailing comma before ']'") }
            }
            if closing {
                scanner.pos += 1
                try scanner.finishDocument(levels: path.count)
                state = .done
                return nil
            }
            let line = scanner.line
            scanner.record = (scanner.offset, line, maxRecordBytes)
            defer { scanner.record = nil }
            let value = try scanner.readValue(build: true, depth: path.count + 1)
            // Hand a record out only once something follows it: a number cut short by the
            // end of the input ("12" of "1234") would otherwise pass for a whole one.
            guard try scanner.skipWhitespace() != nil else { throw scanner.endOfInput("inside the records array") }
            count += 1
            state = .more
            return (count, line, value)
        } catch {
            state = .failed(error)
            throw error
        }
    }
}

// MARK: - Writing

/// Compact JSON text of `value`, appended to `out`.
private func writeJSON(_ value: JSONValue, to out: inout [UInt8]) {
    switch value {
    case .null:
        out.append(contentsOf: "null".utf8)
    case .bool(let b):
        out.append(contentsOf: (b ? "true" : "false").utf8)
    case .number(let text):
        out.append(contentsOf: text.utf8)
    case .string(let s):
        writeJSONString(s, to: &out)
    case .array(let elements):
        out.append(JSONByte.openBracket)
        for (i, element) in elements.enumerated() {
            if i > 0 { out.append(JSONByte.comma) }
            writeJSON(element, to: &out)
        }
        out.append(JSONByte.closeBracket)
    case .object(let members):
        out.append(JSONByte.openBrace)
        for (i, member) in members.enumerated() {
            if i > 0 { out.append(JSONByte.comma) }
            writeJSONString(member.key, to: &out)
            out.append(JSONByte.colon)
            writeJSON(member.value, to: &out)
        }
        out.append(JSONByte.closeBrace)
    }
}

/// `s` as a JSON string literal: `"` and `\` escaped, control characters as \b \f \n \r \t
/// or \u00XX, everything else as UTF-8.
private func writeJSONString(_ s: String, to out: inout [UInt8]) {
    let hexDigits: StaticString = "0123456789abcdef"
    out.append(JSONByte.quote)
    for b in s.utf8 {
        switch b {
        case JSONByte.quote, JSONByte.backslash:
            out.append(JSONByte.backslash)
            out.append(b)
        case 0x08: out.append(JSONByte.backslash); out.append(0x62)
        case 0x0C: out.append(JSONByte.backslash); out.append(0x66)
        case 0x0A: out.append(JSONByte.backslash); out.append(0x6E)
        case 0x0D: out.append(JSONByte.backslash); out.append(0x72)
        case 0x09: out.append(JSONByte.backslash); out.append(0x74)
        case 0..<0x20:
            out.append(contentsOf: [JSONByte.backslash, JSONByte.lowerU, JSONByte.zero, JSONByte.zero])
            out.append(hexDigits.utf8Start[Int(b >> 4)])
            out.append(hexDigits.utf8Start[Int(b & 0xF)])
        default:
            out.append(b)
        }
    }
    out.append(JSONByte.quote)
}
