import Foundation

/// Every TOML file Sluice reads (agent.conf, mapping files) is parsed here.
///
/// toml++ (under TOMLKit) asserts, and so aborts the process, on some malformed documents that
/// the `config` and `mapping` fuzz harnesses (and a review of toml++'s asserts) found: a table
/// header whose name starts with a byte that cannot start a key (`[!`, `[ \x0f`), an array
/// element that starts with `}` or a Unicode line separator (`f = [}`, `f = [1,\n}]`), and
/// malformed dates and times (`d = 2026-10-01 9`, `d = 1979-05-27T:00`). Those are refused here
/// first, with the line and column (every date and time: no setting takes one), so that a typo
/// in a config is an error message and never a crash.
package enum TOMLText {
    /// Parses `text` into Sluice's own `TOMLTable` (see `TOMLTree.swift`).
    package static func parse(_ text: String, file: String) throws(ConfigError) -> TOMLTable {
        if let bad = crashingConstruct(Array(text.utf8)) {
            let b = bad.byte
            let shown = b >= 0x20 && b < 0x7F ? "'\(Character(UnicodeScalar(b)))'" : String(format: "byte 0x%02X", b)
            throw ConfigError(file: file, keyPath: nil, line: bad.line, message: "TOML syntax error: \(bad.what), found \(shown) (column \(bad.column))")
        }
        switch TOMLTable.parseScreened(text) {
        case .success(let table): return table
        case .failure(let e):
            throw ConfigError(file: file, keyPath: nil, line: e.line, message: "TOML syntax error: \(e.message) (column \(e.column))")
        }
    }

    /// The first construct toml++ would abort on: a table header (`[` or `[[` first on a line,
    /// outside any value and string) whose name starts with a byte that cannot start a key; an
    /// array element that starts with `}`, U+0085, U+2028 or U+2029; or a bare date or time
    /// (see `dateOrTime`). Its 1-based line and column, the byte, and what was expected there.
    package static func crashingConstruct(_ b: [UInt8]) -> (line: Int, column: Int, byte: UInt8, what: String)? {
        // toml++ skips a UTF-8 byte-order mark: the first line starts after it.
        let bom = b.starts(with: [0xEF, 0xBB, 0xBF]) ? 3 : 0
        var i = bom, line = 1, lineStart = bom
        var open: [UInt8] = []  // the open arrays and inline tables of a value
        var valueStart = false  // the next significant byte starts a value: after `=`, or an array's `[` or `,`
        var atLineStart = true
        func skipString(quote: UInt8, escapes: Bool) {
            // At the opening quote. Multi-line strings (three quotes) may span lines.
            let triple = i + 2 < b.count && b[i + 1] == quote && b[i + 2] == quote
            i += triple ? 3 : 1
            while i < b.count {
                let c = b[i]
                if escapes && c == UInt8(ascii: "\\") {
                    i += 2
                    continue
                }
                if c == 0x0A {
                    if !triple { return }  // unterminated: toml++ says so
                    line += 1
                    lineStart = i + 1
                }
                if c == quote {
                    if !triple {
                        i += 1
                        return
                    }
                    if i + 2 < b.count && b[i + 1] == quote && b[i + 2] == quote {
                        i += 3
                        while i < b.count && b[i] == quote { i += 1 }  // up to two quotes may end the content
                        return
                    }
                }
                i += 1
            }
        }
        while i < b.count {
            let c = b[i]
            switch c {
            case 0x0A:
                line += 1
                lineStart = i + 1
                atLineStart = true
                // A value does not go on past the line's end, but an array's elements do.
                if open.isEmpty { valueStart = false }
                i += 1
                continue
            case 0x20, 0x09, 0x0D:
                i += 1
                continue
            case UInt8(ascii: "#"):
                while i < b.count && b[i] != 0x0A { i += 1 }
                continue
            default:
                break
            }
            if valueStart {
                valueStart = false
                if open.last == UInt8(ascii: "[") && (c == UInt8(ascii: "}") || isLineSeparator(b, at: i)) {
                    return (line, i - lineStart + 1, c, "expected a value or ']' in an array")
                }
                if dateOrTime(b, at: i) {
                    return (line, i - lineStart + 1, c, "a date or time is no value any setting takes; if it is text, write it in quotes (\"2026-10-01\")")
                }
            }
            switch c {
            case UInt8(ascii: "\""), UInt8(ascii: "'"):
                skipString(quote: c, escapes: c == UInt8(ascii: "\""))
                atLineStart = false
                continue
            case UInt8(ascii: "["):
                if atLineStart && open.isEmpty {
                    var j = i + 1
                    if j < b.count && b[j] == UInt8(ascii: "[") { j += 1 }
                    while j < b.count && (b[j] == 0x20 || b[j] == 0x09) { j += 1 }
                    if j < b.count && !isKeyStart(b[j]) {
                        return (line, j - lineStart + 1, b[j], "a table name must start with a letter, digit, '_', '-' or a quote")
                    }
                    // The header's own brackets are not a value's.
                    while i < b.count && b[i] != 0x0A && b[i] != UInt8(ascii: "]") {
                        if b[i] == UInt8(ascii: "\"") || b[i] == UInt8(ascii: "'") { skipString(quote: b[i], escapes: b[i] == UInt8(ascii: "\"")) } else { i += 1 }
                    }
                    while i < b.count && b[i] == UInt8(ascii: "]") { i += 1 }
                    atLineStart = false
                    continue
                }
                open.append(c)
                valueStart = true
            case UInt8(ascii: "{"):
                open.append(c)
            case UInt8(ascii: "]"), UInt8(ascii: "}"):
                if !open.isEmpty { open.removeLast() }
            case UInt8(ascii: ","):
                valueStart = open.last == UInt8(ascii: "[")
            case UInt8(ascii: "="):
                valueStart = true
            default:
                break
            }
            atLineStart = false
            i += 1
        }
        return nil
    }

    /// U+0085, U+2028 or U+2029 at `i`: toml++ ends a value there but does not skip them
    /// between an array's elements, and aborts.
    static func isLineSeparator(_ b: [UInt8], at i: Int) -> Bool {
        (i + 1 < b.count && b[i] == 0xC2 && b[i + 1] == 0x85)
            || (i + 2 < b.count && b[i] == 0xE2 && b[i + 1] == 0x80 && (b[i + 2] == 0xA8 || b[i + 2] == 0xA9))
    }

    /// A bare value at `i` that toml++ would read as a date or a time: a digit (after an
    /// optional sign), and, underscores aside, a `:`, or a `-` that is not an exponent's sign
    /// (`2026-10-01`, `07:30`, `1979-05-27T07:32:00Z`). toml++'s date and time parser aborts on
    /// several malformed ones (`2026-10-01 9`, `1979-05-27T:00`, a date padded with 120
    /// underscores, found by the `config` fuzz harness and a review of its asserts), and no
    /// Sluice setting takes a date or a time, so none reaches it.
    static func dateOrTime(_ b: [UInt8], at start: Int) -> Bool {
        var j = start
        if j < b.count && (b[j] == UInt8(ascii: "+") || b[j] == UInt8(ascii: "-")) { j += 1 }
        guard j < b.count, b[j] >= UInt8(ascii: "0"), b[j] <= UInt8(ascii: "9") else { return false }
        var previous: UInt8 = 0
        while j < b.count && !isValueTerminator(b, at: j) {
            let c = b[j]
            if c == UInt8(ascii: ":") { return true }
            if c == UInt8(ascii: "-") && previous != UInt8(ascii: "e") && previous != UInt8(ascii: "E") { return true }
            if c != UInt8(ascii: "_") { previous = c }
            j += 1
        }
        return false
    }

    /// Where toml++ ends a bare value: ASCII and Unicode white space (tab, space, line feed to
    /// carriage return, U+0085, U+00A0, U+1680, U+180E, U+2000 to U+200B, U+2028, U+2029, U+202F,
    /// U+205F, U+2060, U+3000, U+FEFF), `,`, `]`, `}` and `#`. Other control bytes, DEL and other
    /// letters do not end it: toml++ reads on through them (`1a5\u{7F}-r\u{7F}-e\u{12} 5` is
    /// read as far as the space, and took its date path; found by the `config` fuzz harness).
    static func isValueTerminator(_ b: [UInt8], at j: Int) -> Bool {
        let c = b[j]
        if c < 0x80 {
            return c == 0x09 || c == 0x20 || (c >= 0x0A && c <= 0x0D) || c == UInt8(ascii: ",") || c == UInt8(ascii: "]")
                || c == UInt8(ascii: "}") || c == UInt8(ascii: "#")
        }
        var scalar: UInt32
        var count: Int
        switch c {
        case 0xC2...0xDF: (scalar, count) = (UInt32(c & 0x1F), 2)
        case 0xE0...0xEF: (scalar, count) = (UInt32(c & 0x0F), 3)
        default: return false  // a continuation byte, or a scalar past U+FFFF: none is white space
        }
        guard j + count <= b.count else { return false }
        for k in 1..<count { scalar = scalar << 6 | UInt32(b[j + k] & 0x3F) }
        switch scalar {
        case 0x85, 0xA0, 0x1680, 0x180E, 0x2000...0x200B, 0x2028, 0x2029, 0x202F, 0x205F, 0x2060, 0x3000, 0xFEFF: return true
        default: return false
        }
    }

    /// A bare key's characters, and the quotes of a quoted key.
    static func isKeyStart(_ c: UInt8) -> Bool {
        (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == 0x5F || c == 0x2D
            || c == UInt8(ascii: "\"") || c == UInt8(ascii: "'")
    }
}
