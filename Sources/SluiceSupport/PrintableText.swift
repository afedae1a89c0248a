/// Client-controlled text (file names, paths, keys, headers) made safe to print on one line:
/// logs, text output, the console.
///
/// Control characters (U+0000–U+001F, U+007F, U+0080–U+009F) and the Unicode line and
/// paragraph separators (U+2028, U+2029) are written as the `%HH` of their UTF-8 bytes, as the
/// lake path writes them, so a name can neither start a forged log line nor carry a journald
/// priority prefix (`\n<2>…`) nor move the cursor of a terminal.
public enum PrintableText {
    /// `text` with every control character and line separator as `%HH`; `text` itself when it
    /// has none (the usual case costs one scan).
    public static func escape(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: needsEscape) else { return text }
        var out = ""
        out.reserveCapacity(text.utf8.count + 8)
        for scalar in text.unicodeScalars {
            if needsEscape(scalar) {
                for b in String(scalar).utf8 { out += "%" + hexByte(b) }
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// Whether `scalar` must not be printed as it is.
    @inline(__always)
    public static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        let v = scalar.value
        return v < 0x20 || (0x7F...0x9F).contains(v) || v == 0x2028 || v == 0x2029
    }

    static func hexByte(_ b: UInt8) -> String {
        let hex: [Character] = Array("0123456789ABCDEF")
        return String([hex[Int(b >> 4)], hex[Int(b & 0xF)]])
    }
}
