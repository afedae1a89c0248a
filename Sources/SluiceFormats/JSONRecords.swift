import SluiceSupport

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
