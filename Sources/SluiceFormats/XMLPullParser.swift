import Foundation
import SluiceSupport

// MARK: - XML

/// A streaming XML pull tokenizer over a byte source, with one reusable input block. It
/// reports element starts and ends (names and attributes as bytes; compare local names, so
/// `x:c` is `c`), checks that tags nest, and collects character data (entities, character
/// references and CDATA decoded; line ends normalized) only while `collectText` is set.
/// Comments, processing instructions and a DOCTYPE without an internal subset are skipped;
/// a DTD internal subset (entity declarations) is refused, as are UTF-16 and other non-UTF-8
/// encodings. Anything not well-formed, truncation included, is an `XLSXError` naming the entry.
package final class XMLPullParser {
    package enum Event { case start, end, eof }

    /// The archive entry, for error messages.
    let entry: String
    private let source: ByteSource
    private let raw: UnsafeMutableRawBufferPointer
    private let bytes: UnsafeMutablePointer<UInt8>
    private var pos = 0
    private var end = 0
    /// The stream offset of `bytes[0]`.
    private var consumed = 0
    private var atEnd = false
    private var started = false

    /// The qualified name of the element of the last start or end event.
    let name = ByteStore()
    /// Where the local name starts in `name` (after the prefix's colon).
    private(set) var localStart = 0
    /// The number of open elements (an element's start event counts it, its end event does not).
    package private(set) var depth = 0
    private var pendingEnd = false
    private let stack = ByteStore()
    private let stackEnds = PlainStore<Int>(capacity: 16)
    private var sawRoot = false

    private struct Attribute {
        var localStart: Int
        var valueStart: Int
        var valueEnd: Int
    }

    /// The start tag's attribute names and decoded values, back to back.
    private let attributeData = ByteStore()
    private let attributes = PlainStore<Attribute>(capacity: 16)

    /// While set, character data is appended to `text` (the caller clears it).
    package var collectText = false
    let text = ByteStore()
    /// `text` as a string (invalid UTF-8 repaired).
    package var textString: String { text.string() }
    /// Empties `text`.
    package func clearText() { text.removeAll() }
    /// The current element's local name.
    package var localName: String { name.string(localStart..<name.count) }

    /// Caps on one tag's names and attributes, and on collected text, so junk input cannot grow memory without bound.
    static let maxTag = 1 << 20
    static let maxText = 1 << 26

    package init(entry: String, blockSize: Int = 1 << 16, read: @escaping ByteSource) {
        self.entry = entry
        source = read
        raw = UnsafeMutableRawBufferPointer.allocate(byteCount: max(blockSize, 1), alignment: 16)
        bytes = raw.bindMemory(to: UInt8.self).baseAddress!
    }

    deinit { raw.deallocate() }

    // MARK: Input

    /// Reads the next block; false at the end of input. Call only when `pos == end`.
    @inline(never)
    private func refill() throws -> Bool {
        if atEnd { return false }
        consumed += end
        pos = 0
        end = 0
        let n = try source(raw)
        guard n > 0 else {
            atEnd = true
            return false
        }
        end = min(n, raw.count)
        return true
    }

    @inline(__always)
    private func peek() throws -> UInt8? {
        if pos == end {
            guard try refill() else { return nil }
        }
        return bytes[pos]
    }

    /// The next byte, not consumed; the end of input here is truncation.
    @inline(__always)
    private func need(_ inside: StaticString) throws -> UInt8 {
        if pos == end {
            guard try refill() else { throw malformed("the input ends inside \(inside)") }
        }
        return bytes[pos]
    }

    /// The next byte, consumed; the end of input here is truncation.
    @inline(__always)
    private func take(_ inside: StaticString) throws -> UInt8 {
        let b = try need(inside)
        pos += 1
        return b
    }

    func malformed(_ detail: String) -> XLSXError {
        XLSXError("\(entry) is not well-formed XML at byte \(consumed + pos): \(detail) — the .xlsx file looks corrupt or truncated")
    }

    private var utf16: XLSXError {
        XLSXError("\(entry) is UTF-16 encoded: UTF-16 XML parts are not supported (save the workbook again from Excel to get UTF-8)")
    }

    // MARK: Events

    /// The next element start or end, or `.eof` after the root element has ended.
    package func next() throws -> Event {
        if pendingEnd {
            pendingEnd = false
            depth -= 1
            return .end
        }
        if !started { try begin() }
        while true {
            guard let b = try peek() else { return try endOfInput() }
            if b != UInt8(ascii: "<") {
                if collectText && depth > 0 { try readCharacterData() } else { skipCharacterData() }
                continue
            }
            pos += 1
            switch try need("a tag") {
            case UInt8(ascii: "/"):
                pos += 1
                try readEndTag()
                return .end
            case UInt8(ascii: "?"):
                pos += 1
                try skipProcessingInstruction()
            case UInt8(ascii: "!"):
                pos += 1
                try readMarkupDeclaration()
            default:
                try readStartTag()
                return .start
            }
        }
    }

    /// Collects the character data of the element just started, up to and including its end
    /// tag, into `text` (the text of any child elements included).
    package func readText() throws {
        text.removeAll()
        if pendingEnd {
            _ = try next()
            return
        }
        let d = depth
        collectText = true
        defer { collectText = false }
        while true {
            let e = try next()
            if e == .eof || (e == .end && depth < d) { return }
        }
    }

    /// Collects the text of the rich-text element just started (`si` or `is`), up to and
    /// including its end tag, into `text`: its `t` runs joined, phonetic runs (`rPh`) left out.
    package func readRichText() throws {
        text.removeAll()
        if pendingEnd {
            _ = try next()
            return
        }
        let d = depth
        var runDepth = -1
        defer { collectText = false }
        while true {
            switch try next() {
            case .start:
                if runDepth < 0 && localIs("t") {
                    runDepth = depth
                    collectText = true
                } else if localIs("rPh") {
                    try skipElement()
                }
            case .end:
                if depth < runDepth {
                    runDepth = -1
                    collectText = false
                }
                if depth < d { return }
            case .eof:
                return
            }
        }
    }

    /// Skips the element just started, up to and including its end tag.
    package func skipElement() throws {
        let collecting = collectText
        collectText = false
        defer { collectText = collecting }
        if pendingEnd {
            _ = try next()
            return
        }
        let d = depth
        while true {
            let e = try next()
            if e == .eof || (e == .end && depth < d) { return }
        }
    }

    private func begin() throws {
        started = true
        guard let b = try peek() else { return }
        if b == 0xEF {
            pos += 1
            guard try take("the byte-order mark") == 0xBB, try take("the byte-order mark") == 0xBF else {
                throw malformed("a broken UTF-8 byte-order mark")
            }
        } else if b == 0xFE || b == 0xFF || b == 0x00 {
            throw utf16
        }
    }

    private func endOfInput() throws -> Event {
        if depth > 0 {
            let open = stack.string((stackEnds.count > 1 ? stackEnds[stackEnds.count - 2] : 0)..<stack.count)
            throw malformed("the input ends inside <\(open)> with \(depth) element\(depth == 1 ? "" : "s") still open")
        }
        if !sawRoot { throw malformed("there is no root element") }
        return .eof
    }

    // MARK: Names and attributes

    /// Whether the current element's local name is `s`.
    @inline(__always)
    func localIs(_ s: StaticString) -> Bool {
        let n = s.utf8CodeUnitCount
        guard name.count - localStart == n else { return false }
        let p = s.utf8Start
        let b = name.base + localStart
        for k in 0..<n where b[k] != p[k] { return false }
        return true
    }

    /// Where the value of the current start tag's attribute with local name `local` is, for
    /// `attributeBytes` (the first such attribute).
    func attribute(_ local: StaticString) -> Range<Int>? {
        let n = local.utf8CodeUnitCount
        let p = local.utf8Start
        search: for a in attributes.buffer where a.valueStart - a.localStart == n {
            for k in 0..<n where attributeData[a.localStart + k] != p[k] { continue search }
            return a.valueStart..<a.valueEnd
        }
        return nil
    }

    /// Shows an attribute value's bytes (indexed from 0) to `body`.
    func attributeBytes<R>(_ r: Range<Int>, _ body: (UnsafeBufferPointer<UInt8>) throws -> R) rethrows -> R {
        try body(attributeData.slice(r))
    }

    package func attributeString(_ local: StaticString) -> String? {
        attribute(local).map { attributeData.string($0) }
    }

    package func attributeInt(_ local: StaticString) -> Int? {
        attribute(local).flatMap { Int(attributeData.string($0)) }
    }

    /// Name bytes: anything but whitespace, quotes, / < = > (the XML name rules are not checked further).
    @inline(__always)
    private static func isNameByte(_ b: UInt8) -> Bool {
        b > 0x3E || (b > 0x20 && b != 0x22 && b != 0x27 && b != 0x2F && b < 0x3C)
    }

    /// Appends a name to `out`; returns where its local part starts.
    private func scanName(into out: ByteStore) throws -> Int {
        let start = out.count
        while true {
            if pos == end {
                guard try refill() else { throw malformed("the input ends inside a tag") }
            }
            let p = bytes
            let e = end
            var i = pos
            while i < e && Self.isNameByte(p[i]) { i += 1 }
            if i > pos {
                out.append(p + pos, count: i - pos)
                pos = i
            }
            if i < e { break }
        }
        if out.count == start {
            let b = bytes[pos]
            if b == 0x00 && consumed + pos <= 2 { throw utf16 }
            throw malformed("expected a name, found \(Self.describe(b))")
        }
        if out.count - start > Self.maxTag { throw malformed("a name longer than \(Self.maxTag) bytes") }
        var local = start
        for k in start..<out.count where out[k] == UInt8(ascii: ":") { local = k + 1 }
        return local
    }

    private static func describe(_ b: UInt8) -> String {
        b >= 0x21 && b < 0x7F ? "\"\(Character(Unicode.Scalar(b)))\"" : "byte 0x\(String(b, radix: 16, uppercase: true))"
    }

    @discardableResult
    private func skipSpace() throws -> Bool {
        var skipped = false
        while true {
            if pos == end {
                guard try refill() else { return skipped }
            }
            let b = bytes[pos]
            guard b == 0x20 || b == 0x0A || b == 0x09 || b == 0x0D else { return skipped }
            pos += 1
            skipped = true
        }
    }

    private func readStartTag() throws {
        if depth == 0 && sawRoot { throw malformed("a second root element") }
        sawRoot = true
        name.removeAll()
        localStart = try scanName(into: name)
        attributes.removeAll()
        attributeData.removeAll()
        while true {
            let spaced = try skipSpace()
            switch try need("a start tag") {
            case UInt8(ascii: ">"):
                pos += 1
                stack.append(name.base, count: name.count)
                stackEnds.append(stack.count)
                depth += 1
                return
            case UInt8(ascii: "/"):
                pos += 1
                guard try take("a start tag") == UInt8(ascii: ">") else { throw malformed("expected > after / in a start tag") }
                depth += 1
                pendingEnd = true
                return
            case let b:
                guard spaced else { throw malformed("expected whitespace, > or /> in a start tag, found \(Self.describe(b))") }
                try readAttribute()
            }
        }
    }

    private func readAttribute() throws {
        let local = try scanName(into: attributeData)
        try skipSpace()
        guard try take("an attribute") == UInt8(ascii: "=") else { throw malformed("expected = after an attribute name") }
        try skipSpace()
        let quote = try take("an attribute")
        guard quote == 0x22 || quote == 0x27 else { throw malformed("an attribute value without quotes") }
        let valueStart = attributeData.count
        while true {
            if pos == end {
                guard try refill() else { throw malformed("the input ends inside an attribute value") }
            }
            let p = bytes
            let e = end
            var i = pos
            while i < e {
                let b = p[i]
                if b == quote || b == 0x26 || b == 0x3C || b < 0x20 { break }
                i += 1
            }
            if i > pos {
                attributeData.append(p + pos, count: i - pos)
                pos = i
            }
            if i == e { continue }
            let b = p[i]
            pos += 1
            if b == quote { break }
            switch b {
            case 0x26:
                attributeData.appendScalar(try readReference())
            case 0x3C:
                throw malformed("< in an attribute value")
            case 0x0D:
                // Attribute-value normalization: a line end or tab is one space.
                attributeData.append(0x20)
                if try peek() == 0x0A { pos += 1 }
            case 0x0A, 0x09:
                attributeData.append(0x20)
            default:
                attributeData.append(b)
            }
        }
        if attributeData.count > Self.maxTag { throw malformed("a start tag longer than \(Self.maxTag) bytes") }
        attributes.append(Attribute(localStart: local, valueStart: valueStart, valueEnd: attributeData.count))
    }

    private func readEndTag() throws {
        name.removeAll()
        localStart = try scanName(into: name)
        try skipSpace()
        guard try take("an end tag") == UInt8(ascii: ">") else { throw malformed("expected > to end </\(name.string())") }
        guard let top = stackEnds.last else {
            throw malformed("</\(name.string())> closes no open element")
        }
        let from = stackEnds.count > 1 ? stackEnds[stackEnds.count - 2] : 0
        var same = top - from == name.count
        if same {
            for k in 0..<name.count where stack[from + k] != name[k] {
                same = false
                break
            }
        }
        guard same else {
            throw malformed("</\(name.string())> does not close <\(stack.string(from..<top))>")
        }
        stack.removeLast(top - from)
        stackEnds.removeLast()
        depth -= 1
    }

    // MARK: Character data and references

    private func skipCharacterData() {
        let p = bytes
        let e = end
        var i = pos
        while i < e && p[i] != 0x3C { i += 1 }
        pos = i
    }

    private func readCharacterData() throws {
        while true {
            if pos == end {
                guard try refill() else { return }
            }
            let p = bytes
            let e = end
            var i = pos
            while i < e {
                let b = p[i]
                if b == 0x3C || b == 0x26 || b == 0x0D { break }
                i += 1
            }
            if i > pos {
                text.append(p + pos, count: i - pos)
                pos = i
                if text.count > Self.maxText { throw malformed("a text value longer than \(Self.maxText) bytes") }
            }
            if i == e { continue }
            switch p[i] {
            case 0x3C:
                return
            case 0x26:
                pos += 1
                text.appendScalar(try readReference())
            default:  // CR: a line end is one LF
                pos += 1
                text.append(0x0A)
                if try peek() == 0x0A { pos += 1 }
            }
        }
    }

    /// After "&": the referenced character (the five predefined entities and &#N; &#xH;).
    private func readReference() throws -> UInt32 {
        var b = try take("a reference")
        if b == UInt8(ascii: "#") {
            b = try take("a character reference")
            let hex = b == UInt8(ascii: "x")
            if hex { b = try take("a character reference") }
            var value: UInt32 = 0
            var digits = 0
            while b != UInt8(ascii: ";") {
                let d: UInt8?
                if hex {
                    d = XLSXWorkbook.hexValue(b)
                } else {
                    d = b >= 0x30 && b <= 0x39 ? b - 0x30 : nil
                }
                guard let d, value <= 0x10FFFF else { throw malformed("a bad character reference") }
                value = value * (hex ? 16 : 10) + UInt32(d)
                digits += 1
                b = try take("a character reference")
            }
            guard digits > 0, value != 0, value <= 0x10FFFF, !(0xD800...0xDFFF).contains(value) else {
                throw malformed("a character reference to a code point that is not a character")
            }
            return value
        }
        var key: UInt64 = 0
        var count = 0
        while b != UInt8(ascii: ";") {
            guard count < 4, Self.isNameByte(b) else { throw malformed("an unknown or unterminated entity reference") }
            key = key << 8 | UInt64(b)
            count += 1
            b = try take("an entity reference")
        }
        switch key {
        case 0x616D70: return 0x26  // amp
        case 0x6C74: return 0x3C  // lt
        case 0x6774: return 0x3E  // gt
        case 0x71756F74: return 0x22  // quot
        case 0x61706F73: return 0x27  // apos
        default: throw malformed("an undeclared entity reference")
        }
    }

    // MARK: Comments, CDATA, DOCTYPE, processing instructions

    /// After "<!": a comment, a CDATA section or a DOCTYPE.
    private func readMarkupDeclaration() throws {
        switch try take("markup") {
        case UInt8(ascii: "-"):
            guard try take("a comment") == UInt8(ascii: "-") else { throw malformed("a broken comment") }
            var dashes = 0
            while true {
                let b = try take("a comment")
                if b == UInt8(ascii: ">") && dashes >= 2 { return }
                dashes = b == UInt8(ascii: "-") ? dashes + 1 : 0
            }
        case UInt8(ascii: "["):
            try expect("CDATA[")
            if depth == 0 { throw malformed("a CDATA section outside the root element") }
            let collecting = collectText
            var brackets = 0
            var afterCR = false
            while true {
                let b = try take("a CDATA section")
                if b == UInt8(ascii: ">") && brackets >= 2 {
                    if collecting { text.removeLast(2) }
                    return
                }
                brackets = b == UInt8(ascii: "]") ? brackets + 1 : 0
                guard collecting else { continue }
                if b == 0x0D {
                    text.append(0x0A)
                    afterCR = true
                    continue
                }
                if !(b == 0x0A && afterCR) { text.append(b) }
                afterCR = false
                if text.count > Self.maxText { throw malformed("a text value longer than \(Self.maxText) bytes") }
            }
        case UInt8(ascii: "D"):
            try expect("OCTYPE")
            if sawRoot { throw malformed("a DOCTYPE inside the document") }
            var quote: UInt8 = 0
            while true {
                let b = try take("the DOCTYPE")
                if quote != 0 {
                    if b == quote { quote = 0 }
                } else if b == 0x22 || b == 0x27 {
                    quote = b
                } else if b == UInt8(ascii: "[") {
                    throw XLSXError("\(entry) has a DTD with an internal subset (entity declarations); it is refused as unsafe — spreadsheets never need one, so the .xlsx file looks corrupt or crafted")
                } else if b == UInt8(ascii: ">") {
                    return
                }
            }
        default:
            throw malformed("unknown markup after <!")
        }
    }

    private func expect(_ s: StaticString) throws {
        let p = s.utf8Start
        for k in 0..<s.utf8CodeUnitCount where try take("markup") != p[k] {
            throw malformed("unknown markup after <!")
        }
    }

    /// After "<?": skips to "?>"; the XML declaration's encoding must be UTF-8 (or ASCII).
    private func skipProcessingInstruction() throws {
        let target = ByteStore(capacity: 8)
        _ = try scanName(into: target)
        // `?` is a name byte to scanName, so a processing instruction without data (`<?x?>`)
        // has its closing `?` in the target.
        var question = target.last == UInt8(ascii: "?")
        if question { target.removeLast() }
        let isDeclaration = target.string() == "xml"
        var content: [UInt8] = []
        while true {
            let b = try take("a processing instruction")
            if b == UInt8(ascii: ">") && question { break }
            question = b == UInt8(ascii: "?")
            if isDeclaration && content.count < 1024 { content.append(b) }
        }
        guard isDeclaration else { return }
        // encoding = "name" (or 'name'), if the declaration has one.
        let key = Array("encoding".utf8)
        guard var i = content.indices.first(where: { content[$0...].starts(with: key) }) else { return }
        i += key.count
        while i < content.count && (content[i] == 0x20 || content[i] == 0x3D || content[i] == 0x09 || content[i] == 0x0A || content[i] == 0x0D) { i += 1 }
        guard i < content.count, content[i] == 0x22 || content[i] == 0x27 else { return }
        let quote = content[i]
        let value = content[(i + 1)...].prefix { $0 != quote }
        let encoding = String(decoding: value, as: UTF8.self).lowercased()
        if encoding.hasPrefix("utf-16") || encoding.hasPrefix("utf16") || encoding.hasPrefix("ucs-2") || encoding == "unicode" {
            throw utf16
        }
        if !["utf-8", "utf8", "us-ascii", "ascii"].contains(encoding) {
            throw XLSXError("\(entry) declares the encoding \"\(encoding)\"; only UTF-8 XML parts are supported")
        }
    }
}

/// A growable array of plain values owned by the tokenizer (names, attribute values, text,
/// the open elements): a `RawBuffer` in a class held in `let`s, so the hot loops append
/// without the dynamic exclusivity checks that an array in a class's `var` costs.
final class PlainStore<Element: BitwiseCopyable> {
    private var storage: RawBuffer<Element>

    init(capacity: Int = 256) { storage = RawBuffer(capacity: max(capacity, 8)) }

    deinit { storage.free() }

    var count: Int { storage.count }

    var base: UnsafeMutablePointer<Element> { storage.base }

    var isEmpty: Bool { storage.isEmpty }

    /// The elements, valid until the next change.
    var buffer: UnsafeBufferPointer<Element> { storage.buffer }

    func slice(_ r: Range<Int>) -> UnsafeBufferPointer<Element> { UnsafeBufferPointer(start: storage.base + r.lowerBound, count: r.count) }

    subscript(i: Int) -> Element { storage[i] }

    var last: Element? { storage.count > 0 ? storage[storage.count - 1] : nil }

    func removeAll() { storage.removeAll() }

    func removeLast(_ n: Int = 1) { storage.removeLast(n) }

    @inline(__always)
    func append(_ e: Element) { storage.append(e) }

    @inline(__always)
    func append(_ p: UnsafePointer<Element>, count n: Int) { storage.append(contentsOf: UnsafeBufferPointer(start: p, count: n)) }
}

typealias ByteStore = PlainStore<UInt8>

extension PlainStore where Element == UInt8 {
    func string() -> String { String(decoding: buffer, as: UTF8.self) }

    func string(_ r: Range<Int>) -> String { String(decoding: slice(r), as: UTF8.self) }

    func appendScalar(_ scalar: UInt32) { forEachUTF8Byte(of: scalar) { append($0) } }
}
