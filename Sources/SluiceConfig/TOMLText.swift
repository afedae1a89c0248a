import TOMLKit

/// Every TOML file Sluice reads (agent.conf, mapping files) is parsed here.
///
/// toml++ (under TOMLKit) asserts, and so aborts the process, on some malformed documents that
/// the `config` and `mapping` fuzz harnesses found: a table header whose name starts with a byte
/// that cannot start a key (`[!`, `[ \x0f`), and an array element that starts with `}`
/// (`f = [}`, `f = [1,\n}]`), and a date followed by a one-digit time (`d = 2026-10-01 9`). Those
/// are refused here first, with the line and column, so that a
/// typo in a config is an error message and never a crash.
package enum TOMLText {
    package static func parse(_ text: String, file: String) throws(ConfigError) -> TOMLTable {
        if let bad = crashingConstruct(Array(text.utf8)) {
            let b = bad.byte
            let shown = b >= 0x20 && b < 0x7F ? "'\(Character(UnicodeScalar(b)))'" : String(format: "byte 0x%02X", b)
            throw ConfigError(file: file, keyPath: nil, line: bad.line, message: "TOML syntax error: \(bad.what), found \(shown) (column \(bad.column))")
        }
        do {
            return try TOMLTable(string: text)
        } catch let e as TOMLParseError {
            throw ConfigError(file: file, keyPath: nil, line: e.source.begin.line,
                              message: "TOML syntax error: \(e.description) (column \(e.source.begin.column))")
        } catch {
            throw ConfigError(file: file, keyPath: nil, line: nil, message: "TOML syntax error: \(error)")
        }
    }

    /// The first construct toml++ would abort on: a table header (`[` or `[[` first on a line,
    /// outside any value and string) whose name starts with a byte that cannot start a key, or an
    /// array element that starts with `}`. Its 1-based line and column, the byte, and what was
    /// expected there.
    package static func crashingConstruct(_ b: [UInt8]) -> (line: Int, column: Int, byte: UInt8, what: String)? {
        // toml++ skips a UTF-8 byte-order mark: the first line starts after it.
        let bom = b.starts(with: [0xEF, 0xBB, 0xBF]) ? 3 : 0
        var i = bom, line = 1, lineStart = bom
        var open: [UInt8] = []  // the open arrays and inline tables of a value
        var expectElement = false  // just after an array's `[` or a `,` in it
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
            if expectElement && c == UInt8(ascii: "}") && open.last == UInt8(ascii: "[") {
                return (line, i - lineStart + 1, c, "expected a value or ']' in an array")
            }
            expectElement = false
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
                expectElement = true
            case UInt8(ascii: "{"):
                open.append(c)
            case UInt8(ascii: "]"), UInt8(ascii: "}"):
                if !open.isEmpty { open.removeLast() }
            case UInt8(ascii: ","):
                expectElement = open.last == UInt8(ascii: "[")
            case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "+"), UInt8(ascii: "-"):
                if i == 0 || isValueStartBoundary(b[i - 1]), let bad = dateThenOneDigit(b, at: i) {
                    return (line, bad - lineStart + 1, b[bad], "a date and a time must be written as 2026-10-01T09:00:00 or 2026-10-01 09:00:00")
                }
            default:
                break
            }
            atLineStart = false
            i += 1
        }
        return nil
    }

    /// Bytes after which a value's first byte stands.
    static func isValueStartBoundary(_ c: UInt8) -> Bool {
        c == 0x20 || c == 0x09 || c == UInt8(ascii: "=") || c == UInt8(ascii: "[") || c == UInt8(ascii: ",") || c == UInt8(ascii: "{")
    }

    /// Bytes that end a bare value.
    static func isValueTerminator(_ c: UInt8) -> Bool {
        c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D || c == UInt8(ascii: ",") || c == UInt8(ascii: "]") || c == UInt8(ascii: "}")
            || c == UInt8(ascii: "#")
    }

    /// toml++ aborts on a bare value of ten characters (underscores not counted) shaped like a
    /// date (`-` fifth and eighth), a space, one digit and the value's end (`2026-10-01 9`,
    /// found by the `config` fuzz harness): where that digit is, or nil.
    static func dateThenOneDigit(_ b: [UInt8], at start: Int) -> Int? {
        var chars: [UInt8] = []
        var j = start
        while j < b.count, !isValueTerminator(b[j]) {
            if b[j] != UInt8(ascii: "_") { chars.append(b[j]) }
            j += 1
        }
        guard chars.count == 10, chars[4] == UInt8(ascii: "-"), chars[7] == UInt8(ascii: "-"),
              j + 2 < b.count, b[j] == 0x20, b[j + 1] >= UInt8(ascii: "0"), b[j + 1] <= UInt8(ascii: "9"), isValueTerminator(b[j + 2])
        else { return nil }
        return j + 1
    }

    /// A bare key's characters, and the quotes of a quoted key.
    static func isKeyStart(_ c: UInt8) -> Bool {
        (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == 0x5F || c == 0x2D
            || c == UInt8(ascii: "\"") || c == UInt8(ascii: "'")
    }
}
