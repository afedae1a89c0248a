import Foundation
import SluiceSupport

// MARK: - Numbers

/// Excel keeps numbers as doubles and shows at most 15 significant digits; a cell written as
/// `970.9299999999999` is the 970.93 the client typed. Numbers with more digits than that are
/// read as Excel shows them, in positional notation; others are kept as written.
enum XLSXNumber {
    static func text(_ raw: String) -> String {
        var digits = 0
        for b in raw.utf8 {
            if b == UInt8(ascii: "e") || b == UInt8(ascii: "E") { break }
            if b >= 48 && b <= 57 { digits += 1 }
        }
        guard digits > 15, let v = Double(raw), v.isFinite, v != 0 else { return raw }
        // d.dddddddddddddde±x: the 15 significant digits and the exponent.
        let parts = String(format: "%.14e", v.magnitude).split(separator: "e")
        guard parts.count == 2, let exponent = Int(parts[1]) else { return raw }
        var mantissa = parts[0].filter { $0 != "." }
        while mantissa.count > 1 && mantissa.last == "0" { mantissa.removeLast() }
        let point = exponent + 1
        let body: String
        if point <= 0 {
            body = "0." + String(repeating: "0", count: -point) + mantissa
        } else if point >= mantissa.count {
            body = mantissa + String(repeating: "0", count: point - mantissa.count)
        } else {
            body = mantissa.prefix(point) + "." + mantissa.dropFirst(point)
        }
        return (v < 0 ? "-" : "") + body
    }
}

// MARK: - Dates

/// Which number formats show dates, and Excel serials as ISO 8601 text.
enum DateKind {
    static let none: UInt8 = 0
    static let date: UInt8 = 1
    static let dateTime: UInt8 = 2

    /// The built-in number formats (ECMA-376 §18.8.30): 14–17, 27–36 and 50–58 are dates,
    /// 18–21, 22, 45 and 47 times or date-times; 46 is "[h]:mm:ss", a duration, so not a date.
    static func builtin(_ id: Int) -> UInt8 {
        switch id {
        case 14...17, 27...36, 50...58: date
        case 18...22, 45, 47: dateTime
        default: none
        }
    }

    /// A custom format code shows a date when, outside quoted literals, escaped characters and
    /// [..] sections, it has y, m, d, h or s; a date-time when it has h or s. An elapsed-time
    /// section ([h], [mm], [ss]) makes it a duration, not a date.
    static func of(formatCode: String) -> UInt8 {
        let code = Array(formatCode.utf8)
        if code.count == 7, String(decoding: code, as: UTF8.self).lowercased() == "general" { return none }
        var hasDate = false
        var hasTime = false
        var i = 0
        while i < code.count {
            let c = code[i] | 0x20  // lower case for letters
            switch code[i] {
            case UInt8(ascii: "\""):
                i += 1
                while i < code.count && code[i] != UInt8(ascii: "\"") { i += 1 }
            case UInt8(ascii: "\\"), UInt8(ascii: "_"), UInt8(ascii: "*"):
                i += 1  // the next character is a literal, a padding width or a fill
            case UInt8(ascii: "["):
                var j = i + 1
                while j < code.count && code[j] != UInt8(ascii: "]") { j += 1 }
                let inside = code[min(i + 1, j)..<j].map { $0 | 0x20 }
                if let first = inside.first, first == UInt8(ascii: "h") || first == UInt8(ascii: "m") || first == UInt8(ascii: "s"),
                   inside.allSatisfy({ $0 == first }) {
                    return none
                }
                i = j
            default:
                switch c {
                case UInt8(ascii: "y"), UInt8(ascii: "m"), UInt8(ascii: "d"): hasDate = true
                case UInt8(ascii: "h"), UInt8(ascii: "s"): hasTime = true
                default: break
                }
            }
            i += 1
        }
        return hasTime ? dateTime : (hasDate ? date : none)
    }

    static let epoch1900 = Int64(Values.days(year: 1899, month: 12, day: 30))
    static let epochBeforeLeapBug = Int64(Values.days(year: 1899, month: 12, day: 31))
    static let epoch1904 = Int64(Values.days(year: 1904, month: 1, day: 1))
    static let microsPerDay: Double = 86_400_000_000

    /// "YYYY-MM-DD", or "YYYY-MM-DDTHH:MM:SS[.ffffff]" to the microsecond; nil for a
    /// serial Excel cannot show as a date (negative, or after 9999-12-31). Serial 60 is
    /// Excel's 1900-02-29, which never was; it is given as that text (so it fails as a date).
    static func text(serial: Double, dateOnly: Bool, date1904: Bool, days: DayText = DayText()) -> String? {
        guard serial.isFinite, serial >= 0, serial < 2_958_466 else { return nil }
        var day = serial.rounded(.down)
        var micros = ((serial - day) * microsPerDay).rounded()
        // A serial's double carries about a microsecond at today's dates, and many writers
        // print only 15–16 significant digits (46267.04166666666 is 00:59:59.999999 taken
        // literally), while Excel itself keeps times to the millisecond: within 5 µs of a whole
        // millisecond is that millisecond.
        let millis = (micros / 1000).rounded() * 1000
        if abs(micros - millis) <= 5 { micros = millis }
        if micros >= microsPerDay {
            day += 1
            micros -= microsPerDay
        }
        let d = Int64(day)
        let dateText: String
        if date1904 {
            dateText = days(epoch1904 + d)
        } else if d == 60 {
            dateText = "1900-02-29"
        } else {
            dateText = days((d < 60 ? epochBeforeLeapBug : epoch1900) + d)
        }
        if dateOnly { return dateText }
        var out = Array(dateText.utf8)
        let us = Int(micros)
        let seconds = us / 1_000_000
        func two(_ n: Int) {
            out.append(UInt8(0x30 + n / 10))
            out.append(UInt8(0x30 + n % 10))
        }
        out.append(UInt8(ascii: "T"))
        two(seconds / 3600)
        out.append(UInt8(ascii: ":"))
        two(seconds / 60 % 60)
        out.append(UInt8(ascii: ":"))
        two(seconds % 60)
        var fraction = us % 1_000_000
        if fraction != 0 {
            out.append(UInt8(ascii: "."))
            var digits = [UInt8](repeating: 0x30, count: 6)
            for k in stride(from: 5, through: 0, by: -1) {
                digits[k] = UInt8(0x30 + fraction % 10)
                fraction /= 10
            }
            out += digits
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// `Values.civil` of the last day asked for (dates in a column mostly repeat or run in order).
final class DayText {
    private var day = Int64.min
    private var text = ""

    func callAsFunction(_ d: Int64) -> String {
        if d != day {
            day = d
            text = Values.civil(d)
        }
        return text
    }
}

/// Text of SpreadsheetML string values.
enum XLSXText {
    /// UTF-8 bytes as a String, with ECMA-376's `_xHHHH_` escapes (UTF-16 code units, used for
    /// control characters such as `_x000D_`; `_x005F_` is a literal underscore) decoded.
    static func unescaped(_ b: UnsafeBufferPointer<UInt8>) -> String {
        var out: [UInt8] = []
        var copied = 0
        var i = 0
        let n = b.count
        while i + 6 < n {
            guard b[i] == UInt8(ascii: "_"), b[i + 1] == UInt8(ascii: "x"), b[i + 6] == UInt8(ascii: "_"),
                  var unit = codeUnit(b, i + 2) else {
                i += 1
                continue
            }
            var length = 7
            if unit >= 0xD800 && unit < 0xE000 {
                // A surrogate pair is two escapes; a lone surrogate stays as written.
                guard unit < 0xDC00, i + 13 < n, b[i + 7] == UInt8(ascii: "_"), b[i + 8] == UInt8(ascii: "x"),
                      b[i + 13] == UInt8(ascii: "_"), let low = codeUnit(b, i + 9), low >= 0xDC00 && low < 0xE000 else {
                    i += 1
                    continue
                }
                unit = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                length = 14
            }
            if out.isEmpty { out.reserveCapacity(n) }
            out.append(contentsOf: b[copied..<i])
            appendUTF8(unit, to: &out)
            i += length
            copied = i
        }
        if copied == 0 { return String(decoding: b, as: UTF8.self) }
        out.append(contentsOf: b[copied..<n])
        return String(decoding: out, as: UTF8.self)
    }

    private static func codeUnit(_ b: UnsafeBufferPointer<UInt8>, _ at: Int) -> UInt32? {
        var v: UInt32 = 0
        for k in at..<at + 4 {
            guard let h = XLSXWorkbook.hexValue(b[k]) else { return nil }
            v = v << 4 | UInt32(h)
        }
        return v
    }
}
