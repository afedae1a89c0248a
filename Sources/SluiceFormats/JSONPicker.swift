/// Picks the values at a fixed set of dotted paths out of one JSON object held in memory (a
/// JSON Lines line), without building the rest of it: a string's bytes, a number's source
/// text, a bool, a nested value's compact JSON text, or null. The whole document is checked
/// as `JSONValue.parse` checks it, and a key is matched as `JSONValue.lookup` matches it (the
/// first member with the key wins). Whatever it does not take (invalid JSON, a record that is
/// not an object, a key with escapes) makes `pick` return false, and the caller goes the
/// `JSONValue` way, which words the error.
public final class JSONPicker {
    public enum Picked {
        case absent
        case null
        case bool(Bool)
        /// A string's UTF-8 (escapes decoded) or a number's text; valid until the next `pick`
        /// and only while the document's memory is.
        case string(UnsafeRawBufferPointer)
        case number(UnsafeRawBufferPointer)
        /// A string with escapes, decoded; or a nested array or object's compact JSON text.
        case owned([UInt8], isString: Bool)
    }

    private struct Node {
        var children: [(key: [UInt8], node: Int)] = []
        var slots: [Int] = []
    }

    private var nodes = [Node()]
    /// The node a key was last met in (by object), so that a repeated key is passed over.
    private var seen: [Int]
    private var stamp = 0
    public private(set) var picked: [Picked]

    /// One slot per path, in order; nil when a path is empty or is both a value and the
    /// parent of another path (the `JSONValue` way handles those).
    public init?(paths: [String]) {
        for (slot, path) in paths.enumerated() {
            guard !path.isEmpty else { return nil }
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
        picked = Array(repeating: .absent, count: paths.count)
        seen = Array(repeating: -1, count: nodes.count)
    }

    /// Picks the paths out of `document`; false when the `JSONValue` way must read it.
    public func pick(_ document: UnsafeRawBufferPointer) -> Bool {
        for i in picked.indices { picked[i] = .absent }
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
            if key.contains(JSONByte.backslash) { return false }
            guard let colon = try s.skipWhitespace(), colon == JSONByte.colon else { throw s.syntax("expected ':' after an object key") }
            s.pos += 1
            guard let v = try s.skipWhitespace() else { throw s.endOfInput("inside an object") }
            var child: Int?
            for entry in nodes[node].children where entry.key.elementsEqual(key) {
                child = entry.node
                break
            }
            if let target = child, seen[target] != mine {
                seen[target] = mine
                if nodes[target].children.isEmpty {
                    try value(&s, v, slots: nodes[target].slots, depth: depth)
                } else if v == JSONByte.openBrace {
                    guard try object(&s, node: target, depth: depth + 1) else { return false }
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
    private func value(_ s: inout JSONScanner, _ b: UInt8, slots: [Int], depth: Int) throws(JSONError) {
        let got: Picked
        switch b {
        case JSONByte.quote:
            s.pos += 1
            let start = s.pos
            _ = try s.scanString(build: false)
            let raw = UnsafeRawBufferPointer(rebasing: s.bytes[start..<(s.pos - 1)])
            if raw.contains(JSONByte.backslash) {
                s.pos = start
                got = .owned(Array(try s.scanString(build: true).utf8), isString: true)
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
            got = .owned(Array(nested.jsonText.utf8), isString: false)
        }
        for slot in slots { picked[slot] = got }
    }
}
