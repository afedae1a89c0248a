import SluiceSupport

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
    /// While a record is read: where it starts (input offset, line) and how long it may be,
    /// so that a record with no end is refused there instead of being built whole.
    var record: (offset: Int, line: Int, limit: Int)?

    /// The input offset of the next byte.
    var offset: Int { base + pos }

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
        if let record, base + end - record.offset > record.limit {
            throw JSONError(TextTooLong(what: "record", line: record.line, limit: record.limit,
                                        why: "is the file JSON, with the records at the path the mapping says?").description)
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
    mutating func memberKey(_ c: UInt8, build: Bool) throws(JSONError) -> UInt8 {
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
    mutating func literal(_ word: StaticString) throws(JSONError) {
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
    mutating func scanNumber(build: Bool) throws(JSONError) -> String {
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
    mutating func scanString(build: Bool) throws(JSONError) -> String {
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
        guard let (count, first) = FastValues.utf8Lead(lead) else { throw syntax("invalid UTF-8 in a string (byte \(Self.hex(lead)))") }
        pos += 1
        if build { scratch.append(lead) }
        for k in 0..<count {
            guard let b = try peek() else { throw endOfInput("inside a string") }
            guard k == 0 ? first.contains(b) : b & 0xC0 == 0x80 else {
                throw syntax("invalid UTF-8 in a string (byte \(Self.hex(b)) after \(Self.hex(lead)))")
            }
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
