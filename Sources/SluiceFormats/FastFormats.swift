import Foundation

/// A dataset's number separators as bytes: its `decimal_separator` and `thousands_separator`
/// when both are single ASCII characters (anything else takes the `String` route).
public struct NumberBytes: Sendable, Equatable {
    public let point: UInt8
    /// The thousands separator; equal to `point` when there is none (never matched then).
    let thousands: UInt8
    let grouped: Bool

    public init?(decimal: Character, thousands: Character?) {
        guard let p = decimal.asciiValue else { return nil }
        point = p
        if let thousands {
            guard let t = thousands.asciiValue else { return nil }
            self.thousands = t
            grouped = true
        } else {
            self.thousands = p
            grouped = false
        }
    }

    public static let plain = NumberBytes(decimal: ".", thousands: nil)!
}

extension FastValues {
    /// Whether `b` starts with a minus, and where its digits start (after a `-` or `+`).
    @inline(__always)
    static func sign(_ b: UnsafeBufferPointer<UInt8>) -> (negative: Bool, start: Int) {
        guard let first = b.first, first == UInt8(ascii: "-") || first == UInt8(ascii: "+") else { return (false, 0) }
        return (first == UInt8(ascii: "-"), 1)
    }

    /// The whole part of a number from `i`: digits, with `style`'s thousands separator only
    /// between groups of three (the first group 1 to 3 digits), as `Values` allows it. Calls
    /// `digit` for each digit; returns the index after the whole part, or nil when a separator
    /// is misplaced.
    @inline(__always)
    static func wholePart(_ b: UnsafeBufferPointer<UInt8>, from start: Int, style: NumberBytes, _ each: (Int64) -> Bool) -> Int? {
        var i = start
        var group = 0
        var separated = false
        while i < b.count {
            let c = b[i]
            if let d = digit(c) {
                guard each(d) else { return nil }
                group += 1
            } else if style.grouped && c == style.thousands {
                guard group >= 1, separated ? group == 3 : group <= 3 else { return nil }
                separated = true
                group = 0
            } else {
                break
            }
            i += 1
        }
        if separated && group != 3 { return nil }
        return i
    }

    /// `[+-]?[0-9]{1,18}` with thousands separators where `style` has them.
    public static func int64(_ b: UnsafeBufferPointer<UInt8>, style: NumberBytes) -> Int64? {
        guard style.grouped else { return int64(b) }
        let (negative, start) = sign(b)
        var v: Int64 = 0
        var digits = 0
        guard let end = wholePart(b, from: start, style: style, { d in
            digits += 1
            v = v &* 10 &+ d
            return digits <= 18
        }), end == b.count, digits >= 1 else { return nil }
        return negative ? -v : v
    }

    /// A decimal(precision, scale)'s unscaled value, written with `style`'s separators.
    public static func decimal(_ b: UnsafeBufferPointer<UInt8>, precision: Int, scale: Int, style: NumberBytes) -> Int128? {
        if precision <= 18 {
            return decimalDigits(b, precision: precision, scale: scale, style: style, as: Int64.self).map { Int128($0) }
        }
        return decimalDigits(b, precision: precision, scale: scale, style: style, as: Int128.self)
    }

    @inline(__always)
    static func decimalDigits<T: FixedWidthInteger & SignedInteger>(_ b: UnsafeBufferPointer<UInt8>, precision: Int, scale: Int,
                                                                   style: NumberBytes, as: T.Type) -> T? {
        let (negative, start) = sign(b)
        var i = start
        var v: T = 0
        var wholeDigits = 0
        var sawDigit = false
        // The digit limits bound the value by 10^precision, so the arithmetic cannot overflow.
        guard let end = wholePart(b, from: i, style: style, { d in
            sawDigit = true
            if wholeDigits > 0 || d != 0 { wholeDigits += 1 }
            guard wholeDigits <= precision - scale else { return false }
            v = v &* 10 &+ T(truncatingIfNeeded: d)
            return true
        }) else { return nil }
        i = end
        var fractionDigits = 0
        if i < b.count {
            guard b[i] == style.point else { return nil }
            i += 1
            // Trailing zeros beyond the scale are fine; a nonzero digit beyond it is not.
            var pendingZeros = 0
            while i < b.count {
                guard let d = digit(b[i]) else { return nil }
                sawDigit = true
                if d == 0 {
                    pendingZeros += 1
                } else {
                    guard fractionDigits + pendingZeros + 1 <= scale else { return nil }
                    for _ in 0..<pendingZeros { v = v &* 10 }
                    v = v &* 10 &+ T(truncatingIfNeeded: d)
                    fractionDigits += pendingZeros + 1
                    pendingZeros = 0
                }
                i += 1
            }
        }
        guard sawDigit else { return nil }
        for _ in fractionDigits..<scale { v = v &* 10 }
        return negative ? 0 &- v : v
    }

    /// `[+-]?digits[point digits][(e|E)[+-]?digits]` (a digit before or after the point), read
    /// with `strtod` from its normalised ASCII form, as `Values.float64` reads it.
    public static func float64(_ b: UnsafeBufferPointer<UInt8>, style: NumberBytes) -> Double? {
        guard b.count <= 60 else { return nil }
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: 64) { out -> Double? in
            var n = 0
            var i = 0
            if let first = b.first, first == UInt8(ascii: "-") || first == UInt8(ascii: "+") {
                out[n] = CChar(bitPattern: first)
                n += 1
                i = 1
            }
            var mantissa = 0
            guard let end = wholePart(b, from: i, style: style, { d in
                out[n] = CChar(48 + d)
                n += 1
                mantissa += 1
                return true
            }) else { return nil }
            // `Values` counts an exponent right after grouped digits (`1.234e5`) as part of
            // the last group, and refuses it: so does this.
            let grouped = style.grouped && b[i..<end].contains(style.thousands)
            i = end
            if grouped && i < b.count && b[i] != style.point { return nil }
            if i < b.count && b[i] == style.point {
                out[n] = CChar(UInt8(ascii: "."))
                n += 1
                i += 1
                while i < b.count, let d = digit(b[i]) {
                    out[n] = CChar(48 + d)
                    n += 1
                    mantissa += 1
                    i += 1
                }
            }
            guard mantissa > 0 else { return nil }
            if i < b.count && (b[i] == UInt8(ascii: "e") || b[i] == UInt8(ascii: "E")) {
                out[n] = CChar(UInt8(ascii: "e"))
                n += 1
                i += 1
                if i < b.count && (b[i] == UInt8(ascii: "-") || b[i] == UInt8(ascii: "+")) {
                    out[n] = CChar(bitPattern: b[i])
                    n += 1
                    i += 1
                }
                var exponent = 0
                while i < b.count, let d = digit(b[i]) {
                    out[n] = CChar(48 + d)
                    n += 1
                    exponent += 1
                    i += 1
                }
                guard exponent > 0 else { return nil }
            }
            guard i == b.count else { return nil }
            out[n] = 0
            let v = strtod(out.baseAddress!, nil)
            return v.isFinite ? v : nil
        }
    }
}

/// A date or timestamp `format` (`%d.%m.%Y %H:%M`) compiled once, reading bytes as
/// `Values.parse` reads the text: the same greedy digit counts, literals, `%f` and `%z`, and
/// the same checks (a real date, a real time of day). Whatever it does not take (an error, a
/// fraction the format does not expect) goes to `Values`, which words the error.
public struct DateTimePlan: Sendable {
    enum Step: Sendable, Equatable { case year, month, day, hour, minute, second, fraction, offset, literal(UInt8) }
    let steps: [Step]

    public init?(_ format: String) {
        var steps: [Step] = []
        var f = Array(format.utf8)[...]
        while let c = f.popFirst() {
            guard c < 0x80 else { return nil }
            if c == UInt8(ascii: "%"), let d = f.first {
                f = f.dropFirst()
                switch d {
                case UInt8(ascii: "Y"): steps.append(.year)
                case UInt8(ascii: "m"): steps.append(.month)
                case UInt8(ascii: "d"): steps.append(.day)
                case UInt8(ascii: "H"): steps.append(.hour)
                case UInt8(ascii: "M"): steps.append(.minute)
                case UInt8(ascii: "S"): steps.append(.second)
                case UInt8(ascii: "f"): steps.append(.fraction)
                case UInt8(ascii: "z"): steps.append(.offset)
                default:
                    guard d < 0x80 else { return nil }
                    steps.append(.literal(d))
                }
            } else {
                steps.append(.literal(c))
            }
        }
        self.steps = steps
    }

    public struct Parsed {
        public var days: Int64
        public var secondOfDay: Int64
        public var micros: Int64
        public var offsetSeconds: Int64?
    }

    public func parse(_ b: UnsafeBufferPointer<UInt8>) -> Parsed? {
        var i = 0
        var year = 1970, month = 1, day = 1, hour = 0, minute = 0, second = 0, micros = 0
        var offset: Int64?
        @inline(__always) func number(_ maxDigits: Int) -> (value: Int, count: Int)? {
            var n = 0, count = 0
            while i < b.count, count < maxDigits, b[i] &- 48 < 10 {
                n = n * 10 + Int(b[i] &- 48)
                i += 1
                count += 1
            }
            return count == 0 ? nil : (n, count)
        }
        /// A fraction of a second where the format has none (`Values` words that error).
        @inline(__always) func strayFraction() -> Bool {
            i + 1 < b.count && (b[i] == UInt8(ascii: ".") || b[i] == UInt8(ascii: ",")) && b[i + 1] &- 48 < 10
        }
        for step in steps {
            switch step {
            case .year: guard let n = number(4) else { return nil }; year = n.value
            case .month: guard let n = number(2) else { return nil }; month = n.value
            case .day: guard let n = number(2) else { return nil }; day = n.value
            case .hour: guard let n = number(2) else { return nil }; hour = n.value
            case .minute: guard let n = number(2) else { return nil }; minute = n.value
            case .second: guard let n = number(2) else { return nil }; second = n.value
            case .fraction:
                guard let (n, count) = number(9) else { return nil }
                var m = n
                if count > 6 { for _ in 6..<count { m /= 10 } } else { for _ in count..<6 { m *= 10 } }
                micros = m
            case .offset:
                guard !strayFraction(), i < b.count else { return nil }
                if b[i] == UInt8(ascii: "Z") {
                    i += 1
                    offset = 0
                } else {
                    guard b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") else { return nil }
                    let sign: Int64 = b[i] == UInt8(ascii: "-") ? -1 : 1
                    i += 1
                    guard let hh = number(2) else { return nil }
                    if i < b.count, b[i] == UInt8(ascii: ":") { i += 1 }
                    let mm = number(2)?.value ?? 0
                    offset = sign * Int64(hh.value * 3600 + mm * 60)
                }
            case .literal(let c):
                guard i < b.count, b[i] == c else { return nil }
                i += 1
            }
        }
        guard !strayFraction(), i == b.count else { return nil }
        guard (1...12).contains(month), day >= 1, day <= Values.daysInMonth(year, month),
              (0...23).contains(hour), (0...59).contains(minute), (0...60).contains(second) else { return nil }
        return Parsed(days: Int64(Values.days(year: year, month: month, day: day)), secondOfDay: Int64(hour * 3600 + minute * 60 + second),
                      micros: Int64(micros), offsetSeconds: offset)
    }
}
