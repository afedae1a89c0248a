import Foundation
import SluiceSupport

/// Why a present value does not parse as its field's type (the row is rejected with it).
public struct ValueError: Error, Equatable, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}

/// Text → typed values, as the mapping's fields describe them. Nothing here rounds or
/// guesses: a value that does not fit is an error, so its row is rejected.
public enum Values {
    /// Removes the thousands separator and turns the decimal separator into "."; refuses a
    /// separator in a wrong place (only between digit groups of three before the point).
    static func normalizeNumber(_ s: String, decimal: Character, thousands: Character?) throws(ValueError) -> String {
        var text = s
        if let thousands {
            let parts = text.split(separator: decimal, maxSplits: 1, omittingEmptySubsequences: false)
            let whole = parts[0]
            if whole.contains(thousands) {
                let groups = whole.split(separator: thousands, omittingEmptySubsequences: false)
                let first = groups[0].drop { $0 == "-" || $0 == "+" }
                guard !first.isEmpty, first.count <= 3, groups.dropFirst().allSatisfy({ $0.count == 3 }) else {
                    throw ValueError("\"\(s)\" has a misplaced thousands separator")
                }
                text = groups.joined() + (parts.count > 1 ? "\(decimal)\(parts[1])" : "")
            }
        }
        if decimal != "." {
            if text.contains(".") { throw ValueError("\"\(s)\" uses \".\" but the decimal separator is \"\(decimal)\"") }
            text = text.replacingOccurrences(of: String(decimal), with: ".")
        }
        return text
    }

    public static func int64(_ s: String, decimal: Character = ".", thousands: Character? = nil) throws(ValueError) -> Int64 {
        let t = try normalizeNumber(s, decimal: decimal, thousands: thousands)
        guard let v = Int64(t) else { throw ValueError("\"\(s)\" is not a whole number in the int64 range") }
        return v
    }

    public static func float64(_ s: String, decimal: Character = ".", thousands: Character? = nil) throws(ValueError) -> Double {
        let t = try normalizeNumber(s, decimal: decimal, thousands: thousands)
        guard let v = Double(t), t.allSatisfy({ $0.isASCII }), !t.lowercased().contains("x") else {
            throw ValueError("\"\(s)\" is not a number")
        }
        return v
    }

    /// The unscaled value of a decimal(precision, scale). More fractional digits than the
    /// scale, or more digits than the precision, is an error, never a rounding.
    public static func decimal(_ s: String, precision: Int, scale: Int, decimal: Character = ".", thousands: Character? = nil) throws(ValueError) -> Int128 {
        let t = try normalizeNumber(s, decimal: decimal, thousands: thousands)
        var chars = Substring(t)
        var negative = false
        if chars.first == "-" || chars.first == "+" {
            negative = chars.first == "-"
            chars = chars.dropFirst()
        }
        let parts = chars.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        let whole = parts[0]
        let fraction = parts.count > 1 ? parts[1] : ""
        guard !(whole.isEmpty && fraction.isEmpty), whole.allSatisfy({ $0.isASCII && $0.isNumber }), fraction.allSatisfy({ $0.isASCII && $0.isNumber }) else {
            throw ValueError("\"\(s)\" is not a decimal number")
        }
        let trimmedFraction = fraction.reversed().drop { $0 == "0" }.reversed()
        guard trimmedFraction.count <= scale else {
            throw ValueError("\"\(s)\" has more than \(scale) decimal places (decimal(\(precision),\(scale)) does not round)")
        }
        let wholeDigits = whole.drop { $0 == "0" }
        guard wholeDigits.count <= precision - scale else {
            throw ValueError("\"\(s)\" has more than \(precision - scale) digits before the point (decimal(\(precision),\(scale)))")
        }
        var v: Int128 = 0
        for c in wholeDigits { v = v * 10 + Int128(c.wholeNumberValue!) }
        let padded = Array(trimmedFraction) + Array(repeating: Character("0"), count: scale - trimmedFraction.count)
        for c in padded { v = v * 10 + Int128(c.wholeNumberValue!) }
        return negative ? -v : v
    }

    public static func bool(_ s: String, trueValues: [String], falseValues: [String]) throws(ValueError) -> Bool {
        let l = s.lowercased()
        if trueValues.contains(where: { $0.lowercased() == l }) { return true }
        if falseValues.contains(where: { $0.lowercased() == l }) { return false }
        throw ValueError("\"\(s)\" is not one of \((trueValues + falseValues).joined(separator: ", "))")
    }

    // MARK: Dates and times

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    public static func days(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    /// `YYYY-MM-DD` of a day count since 1970-01-01 (the inverse of `days`).
    public static func civil(_ days: Int64) -> String {
        let (y, m, d) = CivilDays.date(days)
        return String(format: "%04lld-%02lld-%02lld", y, m, d)
    }

    static func daysInMonth(_ year: Int, _ month: Int) -> Int {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    struct Parts {
        var year = 1970, month = 1, day = 1, hour = 0, minute = 0, second = 0, micros = 0
        var offsetSeconds: Int?
    }

    /// Reads `s` with a strftime-style format (`%Y %m %d %H %M %S %f %z %%`).
    static func parse(_ s: String, format: String) throws(ValueError) -> Parts {
        var p = Parts()
        let text = Array(s.utf8)
        var i = 0
        func number(_ maxDigits: Int) throws(ValueError) -> (Int, Int) {
            var n = 0, count = 0
            while i < text.count, count < maxDigits, text[i] >= 48, text[i] <= 57 {
                n = n * 10 + Int(text[i] - 48)
                i += 1
                count += 1
            }
            if count == 0 { throw ValueError("\"\(s)\" does not match the format \"\(format)\"") }
            return (n, count)
        }
        /// A fraction of a second where the format has none: says so, and how to accept it.
        func unexpectedFraction() -> ValueError? {
            guard i + 1 < text.count, text[i] == UInt8(ascii: ".") || text[i] == UInt8(ascii: ","), text[i + 1] >= 48, text[i + 1] <= 57 else { return nil }
            var end = i + 1
            while end < text.count, text[end] >= 48, text[end] <= 57 { end += 1 }
            let fraction = String(decoding: text[i..<end], as: UTF8.self)
            return ValueError("\"\(s)\" has a fraction of a second (\(fraction)) that the format \"\(format)\" does not expect: "
                + "put %f after %S in the format (\"\(format.replacingOccurrences(of: "%S", with: "%S\(fraction.first!)%f"))\")")
        }
        var f = Array(format.utf8)[...]
        while let c = f.first {
            f = f.dropFirst()
            if c == UInt8(ascii: "%"), let d = f.first {
                f = f.dropFirst()
                switch d {
                case UInt8(ascii: "Y"): p.year = try number(4).0
                case UInt8(ascii: "m"): p.month = try number(2).0
                case UInt8(ascii: "d"): p.day = try number(2).0
                case UInt8(ascii: "H"): p.hour = try number(2).0
                case UInt8(ascii: "M"): p.minute = try number(2).0
                case UInt8(ascii: "S"): p.second = try number(2).0
                case UInt8(ascii: "f"):
                    let (n, count) = try number(9)
                    var micros = n
                    if count > 6 { for _ in 6..<count { micros /= 10 } } else { for _ in count..<6 { micros *= 10 } }
                    p.micros = micros
                case UInt8(ascii: "z"):
                    if let e = unexpectedFraction() { throw e }
                    guard i < text.count else { throw ValueError("\"\(s)\" has no UTC offset for %z") }
                    if text[i] == UInt8(ascii: "Z") {
                        i += 1
                        p.offsetSeconds = 0
                    } else {
                        guard text[i] == UInt8(ascii: "+") || text[i] == UInt8(ascii: "-") else { throw ValueError("\"\(s)\" has no UTC offset for %z") }
                        let sign = text[i] == UInt8(ascii: "-") ? -1 : 1
                        i += 1
                        let hh = try number(2).0
                        if i < text.count, text[i] == UInt8(ascii: ":") { i += 1 }
                        let mm = (try? number(2).0) ?? 0
                        p.offsetSeconds = sign * (hh * 3600 + mm * 60)
                    }
                default:
                    guard i < text.count, text[i] == d else { throw ValueError("\"\(s)\" does not match the format \"\(format)\"") }
                    i += 1
                }
            } else {
                guard i < text.count, text[i] == c else {
                    if let e = unexpectedFraction() { throw e }
                    throw ValueError("\"\(s)\" does not match the format \"\(format)\"")
                }
                i += 1
            }
        }
        if let e = unexpectedFraction() { throw e }
        guard i == text.count else { throw ValueError("\"\(s)\" has extra text after the format \"\(format)\"") }
        try check(p, s)
        return p
    }

    static func check(_ p: Parts, _ s: String) throws(ValueError) {
        guard (1...12).contains(p.month), p.day >= 1, p.day <= daysInMonth(p.year, p.month) else {
            throw ValueError("\"\(s)\" is not a real date")
        }
        guard (0...23).contains(p.hour), (0...59).contains(p.minute), (0...60).contains(p.second) else {
            throw ValueError("\"\(s)\" is not a real time of day")
        }
    }

    /// ISO 8601: `YYYY-MM-DD`, then optionally `T` or a space, `HH:MM[:SS[.ffffff]]`, and `Z` or `±HH:MM`.
    static func parseISO(_ s: String) throws(ValueError) -> Parts {
        let t = s.trimmingCharacters(in: .whitespaces)
        let formats = ["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M%z", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z"]
        let normalized = t.count > 10 && t.utf8[t.utf8.index(t.utf8.startIndex, offsetBy: 10)] == UInt8(ascii: " ")
            ? String(t.prefix(10)) + "T" + String(t.dropFirst(11)) : t
        for f in formats {
            if let p = try? parse(normalized, format: f) { return p }
        }
        if let p = try? parse(normalized, format: "%Y-%m-%d"), p.day > 0 { return p }
        throw ValueError("\"\(s)\" is not an ISO 8601 date or time")
    }

    static func parts(_ s: String, format: String?) throws(ValueError) -> Parts {
        if let format { return try parse(s, format: format) }
        return try parseISO(s)
    }

    public static func date(_ s: String, format: String?) throws(ValueError) -> Int32 {
        let p = try parts(s, format: format)
        return Int32(days(year: p.year, month: p.month, day: p.day))
    }

    /// Microseconds since the epoch, UTC. A time without an offset is read in `zone`: in the
    /// hour a daylight-saving change skips it moves forward, and in the hour that repeats it is
    /// taken as the later one (standard time).
    public static func timestamp(_ s: String, format: String?, zone: TimeZone) throws(ValueError) -> Int64 {
        try timestamp(s, format: format, zone: ZoneConverter(zone: zone))
    }

    /// The same, with a converter that caches the zone's offsets across calls.
    public static func timestamp(_ s: String, format: String?, zone: ZoneConverter) throws(ValueError) -> Int64 {
        let p = try parts(s, format: format)
        let local = Int64(days(year: p.year, month: p.month, day: p.day)) * 86_400 + Int64(p.hour * 3600 + p.minute * 60 + p.second)
        let utc = p.offsetSeconds.map { local - Int64($0) } ?? zone.utc(local: local)
        return utc * 1_000_000 + Int64(p.micros)
    }
}
