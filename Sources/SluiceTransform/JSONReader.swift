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

    /// The value at a dotted path such as "customer.id", split into its steps (`[]` or `[""]`
    /// is the value itself); nil when any step is absent or not an object. Keys compare as
    /// Swift strings; with duplicate keys the first one wins.
    public func lookup(_ path: [Substring]) -> JSONValue? {
        if path.isEmpty || (path.count == 1 && path[0].isEmpty) { return self }
        var current = self
        for step in path {
            let key = String(step)
            guard case .object(let members) = current, let member = members.first(where: { $0.key == key }) else { return nil }
            current = member.value
        }
        return current
    }

    /// The value at a dotted path such as "customer.id" ("" = self); see `lookup(_: [Substring])`.
    public func lookup(_ path: String) -> JSONValue? {
        lookup(path.split(separator: ".", omittingEmptySubsequences: false))
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

    /// `read` fills a buffer and returns the byte count, 0 at the end.
    public init(records: String, blockSize: Int = 1 << 20, read: @escaping (UnsafeMutableRawBufferPointer) throws -> Int) {
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

// MARK: - Scanning

/// The bytes of JSON's syntax.
enum JSONByte {
    static let tab: UInt8 = 0x09
    static let newline: UInt8 = 0x0A
    static let carriageReturn: UInt8 = 0x0D
    static let space: UInt8 = 0x20
    static let quote: UInt8 = 0x22          // "
    static let plus: UInt8 = 0x2B           // +
    static let comma: UInt8 = 0x2C          // ,
    static let minus: UInt8 = 0x2D          // -
    static let dot: UInt8 = 0x2E            // .
    static let slash: UInt8 = 0x2F          // /
    static let zero: UInt8 = 0x30           // 0
    static let one: UInt8 = 0x31            // 1
    static let nine: UInt8 = 0x39           // 9
    static let colon: UInt8 = 0x3A          // :
    static let upperE: UInt8 = 0x45         // E
    static let openBracket: UInt8 = 0x5B    // [
    static let backslash: UInt8 = 0x5C      // \
    static let closeBracket: UInt8 = 0x5D   // ]
    static let lowerE: UInt8 = 0x65         // e
    static let lowerF: UInt8 = 0x66         // f
    static let lowerN: UInt8 = 0x6E         // n
    static let lowerT: UInt8 = 0x74         // t
    static let lowerU: UInt8 = 0x75         // u
    static let openBrace: UInt8 = 0x7B      // {
    static let closeBrace: UInt8 = 0x7D     // }
}

/// The tokenizer and value builder shared by `JSONRecordReader` and `JSONValue.parse`. It
/// reads `bytes[pos..<end]`; when that runs out it asks the byte source for the next block
/// (which replaces the old one, so a token split across blocks is gathered in `scratch`).
/// Containers are parsed with explicit stacks, not recursion, so no input can overflow the
/// call stack.
struct JSONScanner {
    static let maxDepth = 512

    private(set) var bytes: UnsafeRawBufferPointer
    var pos = 0
    private var end: Int
    /// The input offset of `bytes[0]`.
    private var base = 0
    private(set) var line = 1
    /// The input offset of the current line's first byte.
    private var lineStart = 0
    private var atEOF: Bool
    private let source: ((UnsafeMutableRawBufferPointer) throws -> Int)?
    private let storage: UnsafeMutableRawBufferPointer?
    private let truncationHint: String
    /// A string or number split across blocks, or one with escapes, as UTF-8.
    private var scratch: [UInt8] = []
    /// The open containers of the value being read, innermost last: whether each is an object
    /// and, when building, what it holds so far (see `Frame`).
    private var open: [Bool] = []
    private var frames: [Frame] = []
    /// How many elements the outermost container of the last `readValue` had.
    private(set) var outerElements = 0

    /// A container being built. Each owns its array, appended to in place through `frames`
    /// and moved out whole when the container closes, so no element is ever copied.
    private struct Frame {
        var elements: [JSONValue] = []
        var members: [(key: String, value: JSONValue)] = []
        /// The key of the member whose value is being read.
        var key = ""
    }

    /// Over a whole document in memory.
    init(document: UnsafeRawBufferPointer) {
        bytes = document
        end = document.count
        atEOF = true
        source = nil
        storage = nil
        truncationHint = "truncated input?"
    }

    /// Over blocks that `source` reads into `storage`.
    init(storage: UnsafeMutableRawBufferPointer, source: @escaping (UnsafeMutableRawBufferPointer) throws -> Int) {
        bytes = UnsafeRawBufferPointer(storage)
        end = 0
        atEOF = false
        self.source = source
        self.storage = storage
        truncationHint = "truncated file?"
    }

    // MARK: Input

    /// Reads the next block once `pos` has reached `end`; false at the end of the input.
    private mutating func refill() throws(JSONError) -> Bool {
        guard !atEOF, let source, let storage else {
            atEOF = true
            return false
        }
        base += end
        pos = 0
        end = 0
        let n: Int
        do {
            n = try source(storage)
        } catch let error as JSONError {
            throw error
        } catch {
            throw JSONError("reading the input failed at line \(line): \(error)", underlying: error)
        }
        guard n > 0 else {
            atEOF = true
            return false
        }
        guard n <= storage.count else {
            throw JSONError("the byte source returned \(n) bytes for a \(storage.count)-byte buffer")
        }
        end = n
        return true
    }

    /// The next byte without consuming it; nil at the end of the input.
    @inline(__always)
    private mutating func peek() throws(JSONError) -> UInt8? {
        if pos < end { return bytes[pos] }
        return try peekAfterRefill()
    }

    @inline(never)
    private mutating func peekAfterRefill() throws(JSONError) -> UInt8? {
        guard try refill() else { return nil }
        return bytes[pos]
    }

    /// Skips spaces, tabs, CRs and LFs (counting lines) and returns the next byte without
    /// consuming it; nil at the end of the input.
    mutating func skipWhitespace() throws(JSONError) -> UInt8? {
        while true {
            var p = pos
            let e = end
            while p < e {
                let b = bytes[p]
                if b > JSONByte.space { pos = p; return b }
                if b == JSONByte.newline {
                    line += 1
                    lineStart = base + p + 1
                } else if b != JSONByte.space && b != JSONByte.tab && b != JSONByte.carriageReturn {
                    pos = p
                    return b
                }
                p += 1
            }
            pos = p
            guard try refill() else { return nil }
        }
    }

    /// Skips a UTF-8 byte-order mark at the very start.
    mutating func skipByteOrderMark() throws(JSONError) {
        guard try peek() == 0xEF else { return }
        pos += 1
        for expected: UInt8 in [0xBB, 0xBF] {
            guard let b = try peek() else { throw endOfInput("inside a byte-order mark") }
            guard b == expected else { throw unexpected(b, "invalid UTF-8 byte-order mark at the start of the document") }
            pos += 1
        }
        lineStart = base + pos
    }

    /// After the value: only whitespace may follow.
    mutating func expectEndOfDocument() throws(JSONError) {
        if let b = try skipWhitespace() {
            throw unexpected(b, "unexpected text after the end of the JSON document")
        }
    }

    // MARK: Errors

    /// The 1-based byte column of `pos`.
    private var column: Int { base + pos - lineStart + 1 }

    func syntax(_ what: String) -> JSONError {
        JSONError("invalid JSON at line \(line), column \(column): \(what)")
    }

    func unexpected(_ b: UInt8, _ what: String) -> JSONError {
        syntax("\(what) (found \(Self.describe(b)))")
    }

    func endOfInput(_ context: String) -> JSONError {
        JSONError("unexpected end of input at line \(line), \(context) (\(truncationHint))")
    }

    static func describe(_ b: UInt8) -> String {
        if b > JSONByte.space && b < 0x7F { return "'\(Character(Unicode.Scalar(b)))'" }
        return "byte " + hex(b)
    }

    static func hex(_ b: UInt8) -> String {
        let digits = String(b, radix: 16, uppercase: true)
        return "0x" + (digits.count < 2 ? "0" : "") + digits
    }

    /// What kind of value starts with `b`, for messages ("an object", "null").
    static func kind(_ b: UInt8) -> String {
        switch b {
        case JSONByte.openBrace: return "an object"
        case JSONByte.openBracket: return "an array"
        case JSONByte.quote: return "a string"
        case JSONByte.lowerT, JSONByte.lowerF: return "a boolean"
        case JSONByte.lowerN: return "null"
        default: return "a number"
        }
    }

    /// Throws unless `b` can start a value.
    func checkValueStart(_ b: UInt8) throws(JSONError) {
        switch b {
        case JSONByte.openBrace, JSONByte.openBracket, JSONByte.quote, JSONByte.lowerT, JSONByte.lowerF,
             JSONByte.lowerN, JSONByte.minus, JSONByte.zero...JSONByte.nine:
            return
        default:
            throw unexpected(b, "expected a value")
        }
    }

    // MARK: Values

    /// Reads the value that starts at the next non-whitespace byte. With `build` false the
    /// value is only checked (and `.null` returned), which allocates nothing. `depth` is the
    /// number of containers already open around it.
    mutating func readValue(build: Bool, depth: Int) throws(JSONError) -> JSONValue {
        // Left over only when the last call threw.
        if !open.isEmpty { open.removeAll(keepingCapacity: true) }
        if !frames.isEmpty { frames.removeAll(keepingCapacity: true) }
        outerElements = 0
        guard var b = try skipWhitespace() else { throw endOfInput("where a value was expected") }
        nextValue: while true {
            // `b`, at `pos`, starts a value.
            var value: JSONValue
            switch b {
            case JSONByte.openBrace, JSONByte.openBracket:
                let isObject = b == JSONByte.openBrace
                guard depth + open.count < Self.maxDepth else {
                    throw syntax("arrays and objects nested more than \(Self.maxDepth) deep")
                }
                pos += 1
                guard let c = try skipWhitespace() else { throw endOfInput(isObject ? "inside an object" : "inside an array") }
                if c == (isObject ? JSONByte.closeBrace : JSONByte.closeBracket) {
                    pos += 1
                    value = isObject ? .object([]) : .array([])
                } else {
                    open.append(isObject)
                    if build {
                        var frame = Frame()
                        if isObject { frame.members.reserveCapacity(8) } else { frame.elements.reserveCapacity(8) }
                        frames.append(frame)
                    }
                    b = isObject ? try memberKey(c, build: build) : c
                    continue nextValue
                }
            case JSONByte.quote:
                pos += 1
                let s = try scanString(build: build)
                value = build ? .string(s) : .null
            case JSONByte.minus, JSONByte.zero...JSONByte.nine:
                let s = try scanNumber(build: build)
                value = build ? .number(s) : .null
            case JSONByte.lowerT:
                try literal("true")
                value = .bool(true)
            case JSONByte.lowerF:
                try literal("false")
                value = .bool(false)
            case JSONByte.lowerN:
                try literal("null")
                value = .null
            case 0x27:
                throw unexpected(b, "expected a value (strings take double quotes)")
            default:
                throw unexpected(b, "expected a value")
            }
            // The value is complete: add it to its container, and close every container it ends.
            while let isObject = open.last {
                if build {
                    let top = frames.count - 1
                    if isObject {
                        frames[top].members.append((frames[top].key, value))
                    } else {
                        frames[top].elements.append(value)
                    }
                }
                if open.count == 1 { outerElements += 1 }
                guard let c = try skipWhitespace() else { throw endOfInput(isObject ? "inside an object" : "inside an array") }
                if c == JSONByte.comma {
                    pos += 1
                    guard let d = try skipWhitespace() else { throw endOfInput(isObject ? "inside an object" : "inside an array") }
                    if isObject {
                        b = try memberKey(d, build: build)
                    } else {
                        if d == JSONByte.closeBracket { throw syntax("trailing comma before ']'") }
                        b = d
                    }
                    continue nextValue
                }
                guard c == (isObject ? JSONByte.closeBrace : JSONByte.closeBracket) else {
                    throw unexpected(c, isObject ? "expected ',' or '}' after an object member" : "expected ',' or ']' after an array element")
                }
                pos += 1
                open.removeLast()
                if build {
                    let done = frames.removeLast()
                    value = isObject ? .object(done.members) : .array(done.elements)
                }
            }
            return value
        }
    }

    /// At `c`, the first byte of an object member: reads `"key":` and returns the first byte
    /// of the member's value (not consumed).
    private mutating func memberKey(_ c: UInt8, build: Bool) throws(JSONError) -> UInt8 {
        guard c == JSONByte.quote else {
            if c == JSONByte.closeBrace { throw syntax("trailing comma before '}'") }
            throw unexpected(c, "expected a string key")
        }
        pos += 1
        let key = try scanString(build: build)
        if build { frames[frames.count - 1].key = key }
        guard let colon = try skipWhitespace() else { throw endOfInput("inside an object") }
        guard colon == JSONByte.colon else { throw unexpected(colon, "expected ':' after an object key") }
        pos += 1
        guard let v = try skipWhitespace() else { throw endOfInput("inside an object") }
        return v
    }

    /// `true`, `false` or `null`, at `pos`.
    private mutating func literal(_ word: StaticString) throws(JSONError) {
        let letters = word.utf8Start
        for i in 0..<word.utf8CodeUnitCount {
            guard let b = try peek() else { throw endOfInput("inside '\(word)'") }
            guard b == letters[i] else { throw unexpected(b, i == 0 ? "expected a value" : "invalid literal (expected '\(word)')") }
            pos += 1
        }
        if let b = try peek(), Self.isWordByte(b) { throw unexpected(b, "invalid literal (expected '\(word)')") }
    }

    @inline(__always)
    private static func isDigit(_ b: UInt8) -> Bool { b &- JSONByte.zero < 10 }

    /// A letter, digit, or number punctuation: what may not directly follow a number or literal.
    private static func isWordByte(_ b: UInt8) -> Bool {
        isDigit(b) || (b | 0x20) &- 0x61 < 26 || b == JSONByte.dot || b == JSONByte.plus || b == JSONByte.minus || b == 0x5F
    }

    // MARK: Numbers

    /// A number at `pos`, checked against RFC 8259's grammar
    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`; its text when `build`.
    private mutating func scanNumber(build: Bool) throws(JSONError) -> String {
        if !scratch.isEmpty { scratch.removeAll(keepingCapacity: true) }
        guard var c = try peek() else { throw endOfInput("inside a number") }
        if c == JSONByte.minus {
            take(c, build)
            guard let d = try peek() else { throw endOfInput("inside a number") }
            c = d
        }
        if c == JSONByte.zero {
            take(c, build)
            if let d = try peek(), Self.isDigit(d) { throw unexpected(d, "invalid number: leading zeros are not allowed") }
        } else if c >= JSONByte.one && c <= JSONByte.nine {
            try digits(build)
        } else {
            throw unexpected(c, "invalid number: expected a digit after '-'")
        }
        if let d = try peek(), d == JSONByte.dot {
            take(d, build)
            guard let f = try peek() else { throw endOfInput("inside a number") }
            guard Self.isDigit(f) else { throw unexpected(f, "invalid number: expected a digit after the decimal point") }
            try digits(build)
        }
        if let d = try peek(), d == JSONByte.lowerE || d == JSONByte.upperE {
            take(d, build)
            guard var x = try peek() else { throw endOfInput("inside a number") }
            if x == JSONByte.plus || x == JSONByte.minus {
                take(x, build)
                guard let y = try peek() else { throw endOfInput("inside a number") }
                x = y
            }
            guard Self.isDigit(x) else { throw unexpected(x, "invalid number: expected a digit in the exponent") }
            try digits(build)
        }
        if let d = try peek(), Self.isWordByte(d) { throw unexpected(d, "invalid number") }
        return build ? String(decoding: scratch, as: UTF8.self) : ""
    }

    @inline(__always)
    private mutating func take(_ b: UInt8, _ build: Bool) {
        if build { scratch.append(b) }
        pos += 1
    }

    /// A run of digits (possibly empty), across blocks.
    private mutating func digits(_ build: Bool) throws(JSONError) {
        while true {
            let start = pos
            var p = pos
            let e = end
            while p < e && Self.isDigit(bytes[p]) { p += 1 }
            if build && p > start { scratch.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[start..<p])) }
            pos = p
            if p < e { return }
            guard try refill() else { return }
        }
    }

    // MARK: Strings

    /// The rest of a string whose opening quote has been consumed, through the closing quote:
    /// escapes decoded, UTF-8 checked. Returns "" unless `build`.
    private mutating func scanString(build: Bool) throws(JSONError) -> String {
        if build && !scratch.isEmpty { scratch.removeAll(keepingCapacity: true) }
        while true {
            // The fast part: a run of plain ASCII within the block.
            let start = pos
            var p = pos
            let e = end
            while p < e {
                let b = bytes[p]
                if b == JSONByte.quote || b == JSONByte.backslash || b &- 0x20 >= 0x60 { break }
                p += 1
            }
            pos = p
            if p < e && bytes[p] == JSONByte.quote {
                pos = p + 1
                guard build else { return "" }
                let run = UnsafeRawBufferPointer(rebasing: bytes[start..<p])
                // Nothing gathered yet (no escape, no block boundary): straight from the block.
                if scratch.isEmpty { return String(decoding: run, as: UTF8.self) }
                scratch.append(contentsOf: run)
                return String(decoding: scratch, as: UTF8.self)
            }
            if build && p > start { scratch.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[start..<p])) }
            if p == e {
                guard try refill() else { throw endOfInput("inside a string") }
                continue
            }
            let b = bytes[p]
            if b == JSONByte.backslash {
                pos += 1
                try scanEscape(build: build)
            } else if b < 0x20 {
                if b == JSONByte.newline || b == JSONByte.carriageReturn {
                    throw syntax("line break inside a string (an unterminated string, or a line break that should be \\n)")
                }
                throw syntax("unescaped control character \(Self.hex(b)) inside a string")
            } else {
                try scanMultibyte(build: build)
            }
        }
    }

    /// A UTF-8 sequence of two to four bytes at `pos` (its lead byte is ≥ 0x80); refuses
    /// overlong forms, surrogates and code points above U+10FFFF.
    private mutating func scanMultibyte(build: Bool) throws(JSONError) {
        let lead = bytes[pos]
        var low: UInt8 = 0x80
        var high: UInt8 = 0xBF
        let count: Int
        switch lead {
        case 0xC2...0xDF: count = 1
        case 0xE0: count = 2; low = 0xA0
        case 0xE1...0xEC, 0xEE, 0xEF: count = 2
        case 0xED: count = 2; high = 0x9F
        case 0xF0: count = 3; low = 0x90
        case 0xF1...0xF3: count = 3
        case 0xF4: count = 3; high = 0x8F
        default: throw syntax("invalid UTF-8 in a string (byte \(Self.hex(lead)))")
        }
        pos += 1
        if build { scratch.append(lead) }
        for _ in 0..<count {
            guard let b = try peek() else { throw endOfInput("inside a string") }
            guard b >= low && b <= high else {
                throw syntax("invalid UTF-8 in a string (byte \(Self.hex(b)) after \(Self.hex(lead)))")
            }
            low = 0x80
            high = 0xBF
            pos += 1
            if build { scratch.append(b) }
        }
    }

    /// An escape whose backslash has been consumed.
    private mutating func scanEscape(build: Bool) throws(JSONError) {
        guard let e = try peek() else { throw endOfInput("inside a string") }
        let decoded: UInt8
        switch e {
        case JSONByte.quote, JSONByte.backslash, JSONByte.slash: decoded = e
        case 0x62: decoded = 0x08  // b
        case 0x66: decoded = 0x0C  // f
        case 0x6E: decoded = 0x0A  // n
        case 0x72: decoded = 0x0D  // r
        case 0x74: decoded = 0x09  // t
        case JSONByte.lowerU:
            pos += 1
            var scalar = try hex4()
            if scalar >= 0xD800 && scalar < 0xDC00 {
                // A high surrogate: only a \u escape of a low surrogate may follow.
                let lone = "lone surrogate \\u\(String(scalar, radix: 16, uppercase: true)) (a high surrogate must be followed by a \\uDC00-\\uDFFF escape)"
                guard let b1 = try peek() else { throw endOfInput("inside a string") }
                guard b1 == JSONByte.backslash else { throw syntax(lone) }
                pos += 1
                guard let b2 = try peek() else { throw endOfInput("inside a string") }
                guard b2 == JSONByte.lowerU else { throw syntax(lone) }
                pos += 1
                let second = try hex4()
                guard second >= 0xDC00 && second < 0xE000 else { throw syntax(lone) }
                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (second - 0xDC00)
            } else if scalar >= 0xDC00 && scalar < 0xE000 {
                throw syntax("lone surrogate \\u\(String(scalar, radix: 16, uppercase: true)) (a low surrogate without a high one before it)")
            }
            if build { appendUTF8(scalar, to: &scratch) }
            return
        default:
            throw unexpected(e, "invalid escape sequence in a string")
        }
        pos += 1
        if build { scratch.append(decoded) }
    }

    /// Four hex digits of a \u escape.
    private mutating func hex4() throws(JSONError) -> UInt32 {
        var v: UInt32 = 0
        for _ in 0..<4 {
            guard let c = try peek() else { throw endOfInput("inside a string") }
            let d: UInt8
            switch c {
            case 0x30...0x39: d = c - 0x30
            case 0x41...0x46: d = c - 0x41 + 10
            case 0x61...0x66: d = c - 0x61 + 10
            default: throw unexpected(c, "expected four hex digits after \\u")
            }
            v = v << 4 | UInt32(d)
            pos += 1
        }
        return v
    }
}

// MARK: - Finding the records

extension JSONScanner {
    /// Walks from the top of the document to the array at `path` (object keys; empty for the
    /// top-level array), skipping every member off the path, and consumes its `[`. Throws a
    /// message that says what is there instead, with key names to choose from.
    mutating func enterRecordsArray(path: [String]) throws(JSONError) {
        let label = path.joined(separator: ".")
        guard var c = try skipWhitespace() else { throw JSONError("the document is empty (no JSON value)") }
        try checkValueStart(c)
        if path.isEmpty {
            if c == JSONByte.openBracket {
                pos += 1
                return
            }
            guard c == JSONByte.openBrace else {
                throw JSONError("the top-level value is \(Self.kind(c)), not an array of records")
            }
            pos += 1
            var found: [(path: String, elements: Int)] = []
            var topKeys: [String] = []
            var keyCount = 0
            try findArrays(prefix: "", depth: 1, found: &found, topKeys: &topKeys, keyCount: &keyCount)
            // Suggest the biggest array near the top (the first of equals).
            var best: (path: String, elements: Int)?
            for candidate in found where best == nil || candidate.elements > best!.elements { best = candidate }
            var message = "the top-level value is an object, not an array; set records = \"\(best?.path ?? "<path>")\" to the array of records"
            if found.isEmpty {
                message += " (no array in its first levels; " + Self.keyList("top-level keys", topKeys, total: keyCount) + ")"
            } else {
                message += " (arrays found: " + found.map { "\($0.path) [\($0.elements) element\($0.elements == 1 ? "" : "s")]" }.joined(separator: ", ") + ")"
            }
            throw JSONError(message)
        }
        for (level, key) in path.enumerated() {
            let here = path[..<level].joined(separator: ".")
            guard c == JSONByte.openBrace else {
                if level == 0 {
                    if c == JSONByte.openBracket {
                        throw JSONError("no \"\(label)\" in the document: the top-level value is an array, not an object; set records = \"\" to read its elements")
                    }
                    throw JSONError("no \"\(label)\" in the document (the top-level value is \(Self.kind(c)))")
                }
                throw JSONError("no \"\(label)\" in the document (\"\(here)\" is \(Self.kind(c)), not an object)")
            }
            pos += 1
            c = try findMember(key, depth: level + 1, label: label, here: here)
            try checkValueStart(c)
        }
        guard c == JSONByte.openBracket else {
            throw JSONError("\"\(label)\" is \(Self.kind(c)), not an array of records")
        }
        pos += 1
    }

    /// Inside an object (after its `{`), finds the member `want` and returns the first byte of
    /// its value; members before it are skipped. Throws, listing the keys seen, if it is absent.
    private mutating func findMember(_ want: String, depth: Int, label: String, here: String) throws(JSONError) -> UInt8 {
        var seen: [String] = []
        var total = 0
        guard var c = try skipWhitespace() else { throw endOfInput("inside an object") }
        if c != JSONByte.closeBrace {
            while true {
                guard c == JSONByte.quote else { throw unexpected(c, "expected a string key") }
                pos += 1
                let key = try scanString(build: true)
                guard let colon = try skipWhitespace() else { throw endOfInput("inside an object") }
                guard colon == JSONByte.colon else { throw unexpected(colon, "expected ':' after an object key") }
                pos += 1
                guard let v = try skipWhitespace() else { throw endOfInput("inside an object") }
                if key == want { return v }
                total += 1
                if seen.count < 20 { seen.append(key) }
                _ = try readValue(build: false, depth: depth)
                guard let s = try skipWhitespace() else { throw endOfInput("inside an object") }
                if s == JSONByte.closeBrace { break }
                guard s == JSONByte.comma else { throw unexpected(s, "expected ',' or '}' after an object member") }
                pos += 1
                guard let n = try skipWhitespace() else { throw endOfInput("inside an object") }
                if n == JSONByte.closeBrace { throw syntax("trailing comma before '}'") }
                c = n
            }
        }
        pos += 1
        let whose = here.isEmpty ? "top-level keys" : "keys of \"\(here)\""
        var detail = total == 0 ? (here.isEmpty ? "the top-level object is empty" : "\"\(here)\" is an empty object") : Self.keyList(whose, seen, total: total)
        if let near = seen.first(where: { $0.lowercased() == want.lowercased() }) {
            detail += "; keys are case-sensitive: did you mean \"\(near)\"?"
        }
        throw JSONError("no \"\(label)\" in the document (\(detail))")
    }

    /// "top-level keys: a, b, … (57 in all)".
    private static func keyList(_ title: String, _ keys: [String], total: Int) -> String {
        if total == 0 { return "\(title): none" }
        return "\(title): " + keys.joined(separator: ", ") + (total > keys.count ? ", … (\(total) in all)" : "")
    }

    /// Inside an object (after its `{`) through its `}`: notes the dotted paths of arrays
    /// within its first three levels, with their element counts, for the "not an array" message.
    private mutating func findArrays(prefix: String, depth: Int, found: inout [(path: String, elements: Int)],
                                     topKeys: inout [String], keyCount: inout Int) throws(JSONError) {
        guard var c = try skipWhitespace() else { throw endOfInput("inside an object") }
        if c == JSONByte.closeBrace {
            pos += 1
            return
        }
        while true {
            guard c == JSONByte.quote else { throw unexpected(c, "expected a string key") }
            pos += 1
            let key = try scanString(build: true)
            if depth == 1 {
                keyCount += 1
                if topKeys.count < 20 { topKeys.append(key) }
            }
            guard let colon = try skipWhitespace() else { throw endOfInput("inside an object") }
            guard colon == JSONByte.colon else { throw unexpected(colon, "expected ':' after an object key") }
            pos += 1
            guard let v = try skipWhitespace() else { throw endOfInput("inside an object") }
            if v == JSONByte.openBrace && depth < 3 {
                pos += 1
                try findArrays(prefix: prefix + key + ".", depth: depth + 1, found: &found, topKeys: &topKeys, keyCount: &keyCount)
            } else {
                _ = try readValue(build: false, depth: depth)
                if v == JSONByte.openBracket && found.count < 10 { found.append((prefix + key, outerElements)) }
            }
            guard let s = try skipWhitespace() else { throw endOfInput("inside an object") }
            if s == JSONByte.closeBrace {
                pos += 1
                return
            }
            guard s == JSONByte.comma else { throw unexpected(s, "expected ',' or '}' after an object member") }
            pos += 1
            guard let n = try skipWhitespace() else { throw endOfInput("inside an object") }
            if n == JSONByte.closeBrace { throw syntax("trailing comma before '}'") }
            c = n
        }
    }

    /// After the records array's `]`: checks the rest of the `levels` objects around it and
    /// that nothing but whitespace follows the document.
    mutating func finishDocument(levels: Int) throws(JSONError) {
        var level = levels
        while level > 0 {
            guard let c = try skipWhitespace() else { throw endOfInput("after the records array") }
            if c == JSONByte.closeBrace {
                pos += 1
                level -= 1
                continue
            }
            guard c == JSONByte.comma else { throw unexpected(c, "expected ',' or '}' after an object member") }
            pos += 1
            guard let d = try skipWhitespace() else { throw endOfInput("after the records array") }
            _ = try memberKey(d, build: false)
            _ = try readValue(build: false, depth: level)
        }
        try expectEndOfDocument()
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
