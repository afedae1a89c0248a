import Foundation

/// Picks the values at a fixed set of dotted paths out of one JSON object held in memory (a
/// JSON Lines line), without building the rest of it: a string's bytes, a number's source
/// text, a bool, a nested value's compact JSON text, or null. The whole document is checked
/// as `JSONValue.parse` checks it, and a key is matched as `JSONValue.lookup` matches it (the
/// first member with the key wins). Whatever it does not take (invalid JSON, a record that is
/// not an object, a key with escapes or non-ASCII characters) makes `pick` return false, and
/// the caller goes the `JSONValue` way, which words the error.
public final class JSONPicker {
    public enum Picked {
        case absent
        case null
        case bool(Bool)
        /// A string's UTF-8 (escapes decoded) or a number's text; valid until the next `pick`
        /// and only while the document's memory is.
        case string(UnsafeRawBufferPointer)
        case number(UnsafeRawBufferPointer)
        /// A string with escapes, decoded, or a nested array or object's compact JSON text:
        /// `owned[index]`, until the next `pick`.
        case owned(Int)
    }

    private struct Node {
        var children: [(key: [UInt8], node: Int)] = []
        var slots: [Int] = []
    }

    /// The trie, flattened once so that matching a key touches no reference counts: node n's
    /// children are edges `firstChild[n] ..< firstChild[n + 1]`; edge e's key is
    /// `keyBytes[keyStart[e] ..< keyStart[e] + keyLength[e]]` and it leads to `target[e]`; node
    /// n's slots are `slotList[firstSlot[n] ..< firstSlot[n + 1]]`.
    private let firstChild: UnsafeMutableBufferPointer<Int>
    private let keyStart: UnsafeMutableBufferPointer<Int>
    private let keyLength: UnsafeMutableBufferPointer<Int>
    private let target: UnsafeMutableBufferPointer<Int>
    private let keyBytes: UnsafeMutableBufferPointer<UInt8>
    private let firstSlot: UnsafeMutableBufferPointer<Int>
    private let slotList: UnsafeMutableBufferPointer<Int>
    /// The object a node's key was last met in (by stamp), so that a repeated key is passed over.
    private let seen: UnsafeMutableBufferPointer<Int>
    private var stamp = 0
    /// What each slot holds after `pick` (`picked(slot)`).
    private let slots: UnsafeMutableBufferPointer<Picked>
    /// The values `picked` holds by index (decoded strings, nested values' JSON text).
    public private(set) var owned: [[UInt8]] = []

    /// One slot per path, in order; nil when a path is empty or is both a value and the
    /// parent of another path (the `JSONValue` way handles those).
    public init?(paths: [String]) {
        var nodes = [Node()]
        for (slot, path) in paths.enumerated() {
            // Non-ASCII paths are compared as Swift strings: the whole way.
            guard !path.isEmpty, path.utf8.allSatisfy({ $0 < 0x80 }) else { return nil }
            var node = 0
            for step in path.split(separator: ".", omittingEmptySubsequences: false) {
                let key = Array(step.utf8)
                if let child = nodes[node].children.first(where: { $0.key == key }) {
                    node = child.node
                } else {
                    nodes.append(Node())
                    nodes[node].children.append((key, nodes.count - 1))
                    node = nodes.count - 1
                }
            }
            nodes[node].slots.append(slot)
        }
        guard nodes.allSatisfy({ $0.slots.isEmpty || $0.children.isEmpty }) else { return nil }
        func table<T>(_ values: [T]) -> UnsafeMutableBufferPointer<T> {
            let t = UnsafeMutableBufferPointer<T>.allocate(capacity: max(values.count, 1))
            _ = t.initialize(from: values)
            return t
        }
        let edges = nodes.flatMap(\.children)
        firstChild = table(nodes.reduce(into: [0]) { $0.append($0.last! + $1.children.count) })
        keyLength = table(edges.map(\.key.count))
        var starts: [Int] = []
        var offset = 0
        for e in edges {
            starts.append(offset)
            offset += e.key.count
        }
        keyStart = table(starts)
        target = table(edges.map(\.node))
        keyBytes = table(edges.flatMap(\.key))
        firstSlot = table(nodes.reduce(into: [0]) { $0.append($0.last! + $1.slots.count) })
        slotList = table(nodes.flatMap(\.slots))
        seen = table(Array(repeating: -1, count: nodes.count))
        slots = table(Array(repeating: Picked.absent, count: paths.count))
    }

    /// What path `slot` held in the last document picked.
    @inline(__always)
    public func picked(_ slot: Int) -> Picked { slots[slot] }

    deinit {
        for t in [firstChild, keyStart, keyLength, target, firstSlot, slotList, seen] { t.deallocate() }
        keyBytes.deallocate()
        slots.deallocate()
    }

    /// Picks the paths out of `document`; false when the `JSONValue` way must read it.
    public func pick(_ document: UnsafeRawBufferPointer) -> Bool {
        for i in slots.indices { slots[i] = .absent }
        if !owned.isEmpty { owned.removeAll(keepingCapacity: true) }
        guard let base = document.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return false }
        var c = Cursor(base: base, p: 0, end: document.count)
        do throws(Refused) {
            // A UTF-8 byte-order mark may open the document.
            if c.end >= 3 && base[0] == 0xEF && base[1] == 0xBB && base[2] == 0xBF { c.p = 3 }
            guard c.whitespace() == JSONByte.openBrace else { return false }
            try object(&c, node: 0, depth: 0, document)
            _ = c.whitespace()
            return c.p == c.end
        } catch {
            return false
        }
    }

    /// The object at `c.p`, its members matched against `node`'s children.
    private func object(_ c: inout Cursor, node: Int, depth: Int, _ document: UnsafeRawBufferPointer) throws(Refused) {
        guard depth < Cursor.maxDepth else { throw Refused() }
        stamp += 1
        let mine = stamp
        c.p += 1
        var b = c.whitespace()
        if b == JSONByte.closeBrace {
            c.p += 1
            return
        }
        while true {
            guard b == JSONByte.quote else { throw Refused() }
            c.p += 1
            let start = c.p
            // Escapes, and non-ASCII keys (which `JSONValue.lookup` compares as Swift strings,
            // by canonical equivalence: "\u{212A}" is "K" there), go the whole way.
            guard try !c.string(), c.plainASCII(start, c.p - 1) else { throw Refused() }
            let length = c.p - 1 - start
            guard c.whitespace() == JSONByte.colon else { throw Refused() }
            c.p += 1
            let v = c.whitespace()
            var child = -1
            edges: for e in firstChild[node]..<firstChild[node + 1] where keyLength[e] == length {
                let k0 = keyStart[e]
                for k in 0..<length where keyBytes[k0 + k] != c.base[start + k] { continue edges }
                child = target[e]
                break
            }
            if child >= 0, seen[child] != mine {
                seen[child] = mine
                if firstChild[child] == firstChild[child + 1] {
                    try value(&c, v, node: child, depth: depth, document)
                } else if v == JSONByte.openBrace {
                    try object(&c, node: child, depth: depth + 1, document)
                } else {
                    try c.skipValue(v, depth: depth + 1)
                }
            } else {
                try c.skipValue(v, depth: depth + 1)
            }
            let n = c.whitespace()
            if n == JSONByte.closeBrace {
                c.p += 1
                return
            }
            guard n == JSONByte.comma else { throw Refused() }
            c.p += 1
            b = c.whitespace()
        }
    }

    /// The value starting with `b` at `c.p`, into every slot whose path ends here.
    private func value(_ c: inout Cursor, _ b: UInt8, node: Int, depth: Int, _ document: UnsafeRawBufferPointer) throws(Refused) {
        let got: Picked
        switch b {
        case JSONByte.quote:
            c.p += 1
            let start = c.p
            if try c.string() {
                // A string with escapes, decoded by the scanner.
                var s = JSONScanner(document: document)
                s.pos = start
                guard let text = try? s.scanString(build: true) else { throw Refused() }
                owned.append(Array(text.utf8))
                got = .owned(owned.count - 1)
            } else {
                got = .string(UnsafeRawBufferPointer(start: c.base + start, count: c.p - 1 - start))
            }
        case JSONByte.minus, JSONByte.zero...JSONByte.nine:
            let start = c.p
            try c.number()
            got = .number(UnsafeRawBufferPointer(start: c.base + start, count: c.p - start))
        case JSONByte.lowerT:
            try c.literal("true")
            got = .bool(true)
        case JSONByte.lowerF:
            try c.literal("false")
            got = .bool(false)
        case JSONByte.lowerN:
            try c.literal("null")
            got = .null
        case JSONByte.openBrace, JSONByte.openBracket:
            // A nested value, as its compact JSON text: built by the scanner.
            var s = JSONScanner(document: document)
            s.pos = c.p
            guard let nested = try? s.readValue(build: true, depth: depth + 1) else { throw Refused() }
            owned.append(Array(nested.jsonText.utf8))
            got = .owned(owned.count - 1)
            c.p = s.pos
        default:
            throw Refused()
        }
        for k in firstSlot[node]..<firstSlot[node + 1] { slots[slotList[k]] = got }
    }
}

/// The picker's refusal: the document is one the `JSONValue` way must read (and, if it is not
/// JSON, word the error for).
private struct Refused: Error {}

/// A position in a whole document held in memory, read by pointer. At each step it accepts
/// exactly what `JSONValue.parse` accepts, or refuses; it also refuses nesting deeper than
/// `maxDepth`, far below the parser's own bound, and leaves such a document to the parser.
private struct Cursor {
    static let maxDepth = 64
    let base: UnsafePointer<UInt8>
    var p: Int
    let end: Int

    /// Skips spaces, tabs, CRs and LFs; the next byte, or 0 at the end (a NUL byte is no more
    /// valid where a token must come than the end is).
    @inline(__always)
    mutating func whitespace() -> UInt8 {
        while p < end {
            let b = base[p]
            if b > JSONByte.space || (b != JSONByte.space && b != JSONByte.newline && b != JSONByte.tab && b != JSONByte.carriageReturn) { return b }
            p += 1
        }
        return 0
    }

    /// True when `base[from..<to]` is all ASCII.
    @inline(__always)
    func plainASCII(_ from: Int, _ to: Int) -> Bool {
        var acc: UInt8 = 0
        for i in from..<to { acc |= base[i] }
        return acc < 0x80
    }

    /// The rest of a string whose opening quote has been passed, through the closing quote,
    /// checked (escapes, control characters, UTF-8). True when it had escapes.
    @inline(__always)
    mutating func string() throws(Refused) -> Bool {
        var escaped = false
        while true {
            // Eight bytes at a time up to the first quote, backslash, control byte or non-ASCII
            // byte. Each test flags its lowest byte exactly (a borrow only starts at a flagged
            // byte), so the lowest flag of all of them is the first such byte.
            while p + 8 <= end {
                let w = UnsafeRawPointer(base + p).loadUnaligned(as: UInt64.self)
                let ones: UInt64 = 0x0101_0101_0101_0101
                let quote = w ^ (ones &* 0x22), backslash = w ^ (ones &* 0x5C)
                let special = ((quote &- ones) & ~quote | (backslash &- ones) & ~backslash | (w &- ones &* 0x20) & ~w | w) & (ones &* 0x80)
                if special != 0 {
                    p += special.trailingZeroBitCount >> 3
                    break
                }
                p += 8
            }
            guard p < end else { throw Refused() }
            let b = base[p]
            if b == JSONByte.quote {
                p += 1
                return escaped
            } else if b == JSONByte.backslash {
                escaped = true
                try escape()
            } else if b < 0x20 {
                throw Refused()
            } else if b >= 0x80 {
                let n = FastValues.utf8Sequence(base, p, end)
                guard n > 0 else { throw Refused() }
                p += n
            } else {
                p += 1
            }
        }
    }

    /// An escape at `p` (its backslash), as the scanner reads it: a \u high surrogate must be
    /// followed by a \u low one, and a low one may not stand alone.
    private mutating func escape() throws(Refused) {
        guard p + 1 < end else { throw Refused() }
        switch base[p + 1] {
        case JSONByte.quote, JSONByte.backslash, JSONByte.slash, 0x62, 0x66, 0x6E, 0x72, 0x74:  // " \ / b f n r t
            p += 2
        case JSONByte.lowerU:
            p += 2
            let scalar = try hex4()
            if scalar >= 0xD800 && scalar < 0xDC00 {
                guard p + 1 < end, base[p] == JSONByte.backslash, base[p + 1] == JSONByte.lowerU else { throw Refused() }
                p += 2
                let second = try hex4()
                guard second >= 0xDC00 && second < 0xE000 else { throw Refused() }
            } else if scalar >= 0xDC00 && scalar < 0xE000 {
                throw Refused()
            }
        default:
            throw Refused()
        }
    }

    private mutating func hex4() throws(Refused) -> UInt32 {
        guard p + 4 <= end else { throw Refused() }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = base[p]
            let d: UInt8
            switch c {
            case 0x30...0x39: d = c - 0x30
            case 0x41...0x46: d = c - 0x41 + 10
            case 0x61...0x66: d = c - 0x61 + 10
            default: throw Refused()
            }
            v = v << 4 | UInt32(d)
            p += 1
        }
        return v
    }

    @inline(__always)
    private func isDigit(_ i: Int) -> Bool { i < end && base[i] &- JSONByte.zero < 10 }

    /// A number, checked against RFC 8259's grammar
    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    mutating func number() throws(Refused) {
        if base[p] == JSONByte.minus { p += 1 }
        guard p < end else { throw Refused() }
        if base[p] == JSONByte.zero {
            p += 1
        } else if base[p] >= JSONByte.one && base[p] <= JSONByte.nine {
            p += 1
            while isDigit(p) { p += 1 }
        } else {
            throw Refused()
        }
        if p < end && base[p] == JSONByte.dot {
            p += 1
            guard isDigit(p) else { throw Refused() }
            while isDigit(p) { p += 1 }
        }
        if p < end && (base[p] == JSONByte.lowerE || base[p] == JSONByte.upperE) {
            p += 1
            if p < end && (base[p] == JSONByte.plus || base[p] == JSONByte.minus) { p += 1 }
            guard isDigit(p) else { throw Refused() }
            while isDigit(p) { p += 1 }
        }
        try wordEnds()
    }

    /// `word` (ASCII) at `p`.
    mutating func literal(_ word: StaticString) throws(Refused) {
        let n = word.utf8CodeUnitCount
        guard p + n <= end, memcmp(base + p, word.utf8Start, n) == 0 else { throw Refused() }
        p += n
        try wordEnds()
    }

    /// What may not directly follow a number or literal: a letter, digit, '.', '+', '-' or '_'.
    @inline(__always)
    private func wordEnds() throws(Refused) {
        guard p < end else { return }
        let b = base[p]
        if b &- JSONByte.zero < 10 || (b | 0x20) &- 0x61 < 26 || b == JSONByte.dot || b == JSONByte.plus || b == JSONByte.minus || b == 0x5F {
            throw Refused()
        }
    }

    /// Checks and passes the value starting with `b` at `p`.
    mutating func skipValue(_ b: UInt8, depth: Int) throws(Refused) {
        switch b {
        case JSONByte.quote:
            p += 1
            _ = try string()
        case JSONByte.minus, JSONByte.zero...JSONByte.nine:
            try number()
        case JSONByte.lowerT: try literal("true")
        case JSONByte.lowerF: try literal("false")
        case JSONByte.lowerN: try literal("null")
        case JSONByte.openBracket, JSONByte.openBrace:
            guard depth < Self.maxDepth else { throw Refused() }
            let object = b == JSONByte.openBrace
            let close = object ? JSONByte.closeBrace : JSONByte.closeBracket
            p += 1
            var c = whitespace()
            if c == close {
                p += 1
                return
            }
            while true {
                if object {
                    // A member: its key (any string) and colon, then its value.
                    guard c == JSONByte.quote else { throw Refused() }
                    p += 1
                    _ = try string()
                    guard whitespace() == JSONByte.colon else { throw Refused() }
                    p += 1
                    c = whitespace()
                }
                try skipValue(c, depth: depth + 1)
                let n = whitespace()
                p += 1
                if n == close { return }
                guard n == JSONByte.comma else { throw Refused() }
                c = whitespace()
            }
        default:
            throw Refused()
        }
    }
}
