import Foundation
import SluiceSupport

/// Byte-level fast paths for the common shapes of values, so that a big file is not turned
/// into a `String` per field. Each returns nil when the text is not in the one simple shape it
/// handles; the caller then uses the `String` functions in `Values`, which decide and word the
/// error. A fast path therefore never accepts what the `Values` functions refuse, and gives the
/// same value for what it accepts.
public enum FastValues {
    @inline(__always)
    static func digit(_ b: UInt8) -> Int64? {
        b &- 48 < 10 ? Int64(b &- 48) : nil
    }

    /// True when every byte is ASCII.
    @inline(__always)
    public static func isASCII(_ b: UnsafeBufferPointer<UInt8>) -> Bool {
        var acc: UInt8 = 0
        for x in b { acc |= x }
        return acc < 0x80
    }

    /// True when the bytes are well-formed UTF-8 (as `String(validating:as: UTF8.self)` judges:
    /// no overlong forms, surrogates, code points above U+10FFFF or cut sequences), read eight
    /// ASCII bytes at a time.
    public static func isValidUTF8(_ b: UnsafeBufferPointer<UInt8>) -> Bool {
        guard let base = b.baseAddress else { return true }
        var i = 0
        let n = b.count
        while i < n {
            if i + 8 <= n, UnsafeRawPointer(base + i).loadUnaligned(as: UInt64.self) & 0x8080_8080_8080_8080 == 0 {
                i += 8
                continue
            }
            if base[i] < 0x80 {
                i += 1
                continue
            }
            let length = utf8Sequence(base, i, n)
            guard length > 0 else { return false }
            i += length
        }
        return true
    }

    /// The length of the UTF-8 sequence of two to four bytes whose lead byte (≥ 0x80) is at
    /// `base[i]`, the input ending at `end`; 0 when it is not well-formed.
    @inline(__always)
    public static func utf8Sequence(_ base: UnsafePointer<UInt8>, _ i: Int, _ end: Int) -> Int {
        guard let (count, first) = utf8Lead(base[i]), i + count < end else { return 0 }
        for k in 1...count {
            let b = base[i + k]
            guard k == 1 ? first.contains(b) : b & 0xC0 == 0x80 else { return 0 }
        }
        return count + 1
    }

    /// For a UTF-8 lead byte (≥ 0x80): how many continuation bytes follow, and the range the
    /// first of them must be in (narrower than 0x80...0xBF after E0, ED, F0 and F4, which
    /// refuses overlong forms, surrogates and code points above U+10FFFF); nil for a byte that
    /// cannot lead.
    @inline(__always)
    public static func utf8Lead(_ lead: UInt8) -> (count: Int, first: ClosedRange<UInt8>)? {
        switch lead {
        case 0xC2...0xDF: (1, 0x80...0xBF)
        case 0xE0: (2, 0xA0...0xBF)
        case 0xE1...0xEC, 0xEE, 0xEF: (2, 0x80...0xBF)
        case 0xED: (2, 0x80...0x9F)
        case 0xF0: (3, 0x90...0xBF)
        case 0xF1...0xF3: (3, 0x80...0xBF)
        case 0xF4: (3, 0x80...0x8F)
        default: nil
        }
    }

    /// `[+-]?[0-9]{1,18}`.
    public static func int64(_ b: UnsafeBufferPointer<UInt8>) -> Int64? {
        let (negative, start) = sign(b)
        var i = start
        let digits = b.count - i
        guard digits >= 1 && digits <= 18 else { return nil }
        var v: Int64 = 0
        while i < b.count {
            guard let d = digit(b[i]) else { return nil }
            v = v &* 10 &+ d
            i += 1
        }
        return negative ? -v : v
    }

    /// `[+-]?[0-9]*(\.[0-9]*)?` with a digit somewhere, as the unscaled value of a
    /// decimal(precision, scale) with "." as the decimal separator and no thousands separator;
    /// nil also when the value does not fit (the `Values` function words that error).
    public static func decimal(_ b: UnsafeBufferPointer<UInt8>, precision: Int, scale: Int) -> Int128? {
        decimal(b, precision: precision, scale: scale, style: .plain)
    }

    /// The parts of a strict ISO 8601 date or date-time:
    /// `YYYY-MM-DD[(T| )HH:MM[:SS[.f{1,9}]][Z|±HH:MM]]`.
    public struct ISOParts {
        public var days: Int64
        public var secondOfDay: Int64
        public var micros: Int64
        public var offsetSeconds: Int64?
    }

    public static func iso(_ b: UnsafeBufferPointer<UInt8>) -> ISOParts? {
        @inline(__always) func two(_ i: Int) -> Int64? {
            guard i + 1 < b.count, let h = digit(b[i]), let l = digit(b[i + 1]) else { return nil }
            return h * 10 + l
        }
        guard b.count >= 10, b[4] == UInt8(ascii: "-"), b[7] == UInt8(ascii: "-"),
              let y1 = two(0), let y2 = two(2), let month = two(5), let day = two(8) else { return nil }
        let year = y1 * 100 + y2
        guard month >= 1 && month <= 12, day >= 1, day <= Int64(Values.daysInMonth(Int(year), Int(month))) else { return nil }
        var p = ISOParts(days: Int64(Values.days(year: Int(year), month: Int(month), day: Int(day))), secondOfDay: 0, micros: 0)
        if b.count == 10 { return p }
        guard b[10] == UInt8(ascii: "T") || b[10] == UInt8(ascii: " "), b.count >= 16, b[13] == UInt8(ascii: ":"),
              let hour = two(11), let minute = two(14), hour <= 23, minute <= 59 else { return nil }
        var second: Int64 = 0
        var i = 16
        if i < b.count && b[i] == UInt8(ascii: ":") {
            guard let s = two(i + 1), s <= 60 else { return nil }
            second = s
            i += 3
            if i < b.count && b[i] == UInt8(ascii: ".") {
                i += 1
                var micros: Int64 = 0
                var count = 0
                while i < b.count, let d = digit(b[i]), count < 9 {
                    if count < 6 { micros = micros * 10 + d }
                    count += 1
                    i += 1
                }
                guard count > 0 else { return nil }
                if count < 6 { for _ in count..<6 { micros *= 10 } }
                p.micros = micros
            }
        }
        p.secondOfDay = hour * 3600 + minute * 60 + second
        if i == b.count { return p }
        if b[i] == UInt8(ascii: "Z") && i + 1 == b.count {
            p.offsetSeconds = 0
            return p
        }
        guard b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-"), i + 6 == b.count, b[i + 3] == UInt8(ascii: ":"),
              let oh = two(i + 1), let om = two(i + 4) else { return nil }
        p.offsetSeconds = (b[i] == UInt8(ascii: "-") ? -1 : 1) * (oh * 3600 + om * 60)
        return p
    }
}

/// Local wall-clock time → UTC in one IANA zone, as `Values.timestamp` defines it (a time in a
/// skipped hour moves forward; a repeated hour is read as the later, standard-time one). Zone
/// offsets are cached per UTC day, so a file of a million timestamps asks the zone database a
/// few hundred times, not two million.
public final class ZoneConverter {
    public let zone: TimeZone
    private let isUTC: Bool
    private struct Day {
        var offset: Int64
        /// Where, within the day, the offset changes, and to what.
        var change: (at: Int64, offset: Int64)?
    }
    private var days: [Int64: Day] = [:]

    public init(zone: TimeZone) {
        self.zone = zone
        isUTC = zone.secondsFromGMT(for: Date(timeIntervalSince1970: 0)) == 0
            && (zone.identifier == "UTC" || zone.identifier == "GMT" || zone.identifier == "Etc/UTC")
    }

    /// The zone's UTC offset, in seconds, at the instant `t` (seconds since the epoch).
    public func offset(at t: Int64) -> Int64 {
        if isUTC { return 0 }
        let key = t >= 0 ? t / 86_400 : (t - 86_399) / 86_400
        if let day = days[key] ?? cache(key) {
            if let change = day.change, t >= change.at { return change.offset }
            return day.offset
        }
        return Int64(zone.secondsFromGMT(for: Date(timeIntervalSince1970: Double(t))))
    }

    /// Learns day `key`'s offsets; nil (and uncached) for a day the cache cannot describe
    /// with one change, which then goes to the zone database every time.
    private func cache(_ key: Int64) -> Day? {
        if days.count > 100_000 { days.removeAll() }
        let start = key * 86_400
        let endOfDay = start + 86_399
        let first = Int64(zone.secondsFromGMT(for: Date(timeIntervalSince1970: Double(start))))
        let last = Int64(zone.secondsFromGMT(for: Date(timeIntervalSince1970: Double(endOfDay))))
        var day = Day(offset: first)
        if first != last {
            guard let next = zone.nextDaylightSavingTimeTransition(after: Date(timeIntervalSince1970: Double(start))) else { return nil }
            let at = Int64(next.timeIntervalSince1970.rounded(.up))
            guard at > start, at <= endOfDay,
                  Int64(zone.secondsFromGMT(for: Date(timeIntervalSince1970: Double(at - 1)))) == first,
                  Int64(zone.secondsFromGMT(for: Date(timeIntervalSince1970: Double(at)))) == last else { return nil }
            day.change = (at, last)
        }
        days[key] = day
        return day
    }

    /// UTC seconds of a naive local time (seconds since the epoch as if the zone were UTC).
    public func utc(local: Int64) -> Int64 {
        if isUTC { return local }
        let first = offset(at: local)
        return local - offset(at: local - first)
    }
}
