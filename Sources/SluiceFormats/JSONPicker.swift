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
        var s = JSONScanner(document: document)
        do throws(JSONError) {
            try s.skipByteOrderMark()
            guard let b = try s.skipWhitespace(), b == JSONByte.openBrace else { return false }
            guard try object(&s, node: 0, depth: 0) else { return false }
            try s.expectEndOfDocument()
            return true
        } catch {
            return false
        }
    }

    /// The object at `s.pos`, its members matched against `node`'s children; false for a key
    /// with escapes.
    private func object(_ s: inout JSONScanner, node: Int, depth: Int) throws(JSONError) -> Bool {
        guard depth < JSONScanner.maxDepth else { throw s.syntax("nested too deep") }
        stamp += 1
        let mine = stamp
        s.pos += 1
        guard var c = try s.skipWhitespace() else { throw s.endOfInput("inside an object") }
        if c == JSONByte.closeBrace {
            s.pos += 1
            return true
        }
        while true {
            guard c == JSONByte.quote else { throw s.unexpected(c, "expected a string key") }
            s.pos += 1
            let start = s.pos
            _ = try s.scanString(build: false)
            let key = UnsafeRawBufferPointer(rebasing: s.bytes[start..<(s.pos - 1)])
            // Escapes, and non-ASCII keys (which `JSONValue.lookup` compares as Swift strings,
            // by canonical equivalence: "\u{212A}" is "K" there), go the whole way.
            if key.contains(where: { $0 == JSONByte.backslash || $0 >= 0x80 }) { return false }
            guard let colon = try s.skipWhitespace(), colon == JSONByte.colon else { throw s.syntax("expected ':' after an object key") }
            s.pos += 1
            guard let v = try s.skipWhitespace() else { throw s.endOfInput("inside an object") }
            var child = -1
            edges: for e in firstChild[node]..<firstChild[node + 1] where keyLength[e] == key.count {
                let start = keyStart[e]
                for k in 0..<key.count where keyBytes[start + k] != key[k] { continue edges }
                child = target[e]
                break
            }
            if child >= 0, seen[child] != mine {
                seen[child] = mine
                if firstChild[child] == firstChild[child + 1] {
                    try value(&s, v, node: child, depth: depth)
                } else if v == JSONByte.openBrace {
                    guard try object(&s, node: child, depth: depth + 1) else { return false }
                } else {
                    _ = try s.readValue(build: false, depth: depth + 1)
                }
            } else {
                _ = try s.readValue(build: false, depth: depth + 1)
            }
            guard let n = try s.skipWhitespace() else { throw s.endOfInput("inside an object") }
            if n == JSONByte.closeBrace {
                s.pos += 1
                return true
            }
            guard n == JSONByte.comma else { throw s.unexpected(n, "expected ',' or '}' after an object member") }
            s.pos += 1
            guard let d = try s.skipWhitespace() else { throw s.endOfInput("inside an object") }
            c = d
        }
    }

    /// The value starting with `b` at `s.pos`, into every slot whose path ends here.
    private func value(_ s: inout JSONScanner, _ b: UInt8, node: Int, depth: Int) throws(JSONError) {
        let got: Picked
        switch b {
        case JSONByte.quote:
            s.pos += 1
            let start = s.pos
            _ = try s.scanString(build: false)
            let raw = UnsafeRawBufferPointer(rebasing: s.bytes[start..<(s.pos - 1)])
            if raw.contains(JSONByte.backslash) {
                s.pos = start
                owned.append(Array(try s.scanString(build: true).utf8))
                got = .owned(owned.count - 1)
            } else {
                got = .string(raw)
            }
        case JSONByte.minus, JSONByte.zero...JSONByte.nine:
            let start = s.pos
            _ = try s.scanNumber(build: false)
            got = .number(UnsafeRawBufferPointer(rebasing: s.bytes[start..<s.pos]))
        case JSONByte.lowerT:
            try s.literal("true")
            got = .bool(true)
        case JSONByte.lowerF:
            try s.literal("false")
            got = .bool(false)
        case JSONByte.lowerN:
            try s.literal("null")
            got = .null
        default:
            let nested = try s.readValue(build: true, depth: depth + 1)
            owned.append(Array(nested.jsonText.utf8))
            got = .owned(owned.count - 1)
        }
        for k in firstSlot[node]..<firstSlot[node + 1] { slots[slotList[k]] = got }
    }
}
