import Foundation
import SluiceFormats

/// One field of a drafted mapping: what `sluice mapping draft` makes of a column's sample
/// values. Every type it picks reads every non-null value of the sample (checked with the
/// transform's own parsers), so the sample itself loads without a reject.
struct DraftField {
    var name: String
    var source: String
    var type: FieldType
    var format: String?
    /// A timestamp: `timezone = "UTC"`, always with a comment (the draft never guesses a zone).
    var timezone: String?
    var required = false
    var trim = false
    var trueValues: [String]?
    var falseValues: [String]?
    /// Said in a TOML comment on the field's line: why the type is the safe one, what to check.
    var notes: [String] = []
    /// The sampled rows (0-based) whose value the type does not read: they would be rejects.
    var rejectRows: Set<Int> = []
}

/// The decimal and thousands separators a sample's numbers use (a dataset has one pair).
struct NumberStyle: Equatable {
    var decimal: Character = "."
    var thousands: Character?

    /// The style most numbers of the sample vote for: `1.234,56` and `12,5` vote for a decimal
    /// comma, `1,234.56` and `12.5` for a point; grouped thousands (`1.234.567`) name the
    /// thousands separator. A comma that is the file's delimiter is never a decimal comma.
    static func vote(_ values: [String], delimiter: Character?) -> NumberStyle {
        var comma = 0, point = 0, groupedPoint = 0, groupedComma = 0, groupedSpace = 0
        for v in values {
            let t = v.trimmingCharacters(in: .whitespaces)
            guard let first = t.first, first.isNumber || first == "-" || first == "+", t.count <= 40 else { continue }
            let body = t.drop { $0 == "-" || $0 == "+" }
            guard !body.isEmpty, body.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == "." || $0 == "," || $0 == " ") }) else { continue }
            let points = body.filter { $0 == "." }.count, commas = body.filter { $0 == "," }.count
            if points >= 1 && commas >= 1 {
                // Whichever comes last is the decimal separator.
                if body.lastIndex(of: ",")! > body.lastIndex(of: ".")! { comma += 1; groupedPoint += 1 } else { point += 1; groupedComma += 1 }
            } else if commas == 1, points == 0 {
                let fraction = body.split(separator: ",", omittingEmptySubsequences: false).last!.count
                if fraction != 3 { comma += 1 } else { groupedComma += 1 }
            } else if points == 1, commas == 0 {
                let fraction = body.split(separator: ".", omittingEmptySubsequences: false).last!.count
                if fraction != 3 { point += 1 } else { groupedPoint += 1 }
            } else if commas > 1 {
                groupedComma += 1
            } else if points > 1 {
                groupedPoint += 1
            }
            if body.contains(" "), body.split(separator: " ").dropFirst().allSatisfy({ $0.count == 3 || $0.hasPrefix("000") }) { groupedSpace += 1 }
        }
        var style = NumberStyle()
        if comma > point && delimiter != "," { style.decimal = "," }
        if style.decimal == "," && groupedPoint > 0 {
            style.thousands = "."
        } else if style.decimal == "." && groupedComma > 0 && delimiter != "," && point + groupedComma > 0 && (point > 0 || groupedComma > 1) {
            style.thousands = ","
        } else if style.decimal == "." && groupedComma > 0 && delimiter == "," {
            // Quoted "1,234.56" in a comma-separated file.
            style.thousands = ","
        } else if groupedSpace > 0 {
            style.thousands = " "
        }
        return style
    }
}

/// Picks a field's type from its sample values.
enum DraftTyper {
    /// Tokens that stand for "no value" in many exports; one becomes a null value of the
    /// dataset when it is what keeps a number, date or bool column from its type, and no text
    /// column has it as a value.
    static let nullTokens: [String] = ["NULL", "null", "Null", "N/A", "n/a", "NA", "#N/A", "-", "--", "None", "none", "nil", "NaN", "nan", "(null)"]

    static let dateFormats: [String?] = [nil, "%d.%m.%Y", "%d/%m/%Y", "%m/%d/%Y", "%Y/%m/%d", "%d-%m-%Y", "%m-%d-%Y", "%Y.%m.%d"]
    static let timeFormats = ["%H:%M", "%H:%M:%S", "%H:%M:%S.%f", "%H:%M:%S,%f"]

    /// Pairs of words a bool column is written with, beyond the defaults (true/false, yes/no,
    /// y/n, 1/0).
    static let boolWords: [(String, String)] = [("t", "f"), ("ja", "nein"), ("j", "n"), ("oui", "non"), ("si", "no"), ("wahr", "falsch")]
    static let defaultTrue: Set<String> = ["true", "1", "yes", "y"], defaultFalse: Set<String> = ["false", "0", "no", "n"]

    /// What a column of `values` (nil: absent; a null value of the dataset counts as absent)
    /// is. `json` says which values were JSON numbers (their text is exact) and whether an
    /// array or object stood where a value was expected.
    static func guess(name: String, source: String, values: [String?], style: NumberStyle, nulls: Set<String>,
                      arrays: Bool = false, epochHint: Bool = false) -> DraftField {
        var field = DraftField(name: name, source: source, type: .string)
        let present = values.compactMap { v -> String? in
            guard let v, !nulls.contains(v), !nulls.contains(v.trimmingCharacters(in: .whitespaces)) else { return nil }
            return v
        }
        field.required = !values.isEmpty && present.count == values.count
        if arrays {
            field.notes.append("arrays or objects in the sample: kept as their JSON text")
            return field
        }
        guard !present.isEmpty else {
            field.required = false
            field.notes.append("empty in the sample: string is the safe type until values show")
            return field
        }
        let trimmed = present.map { $0.trimmingCharacters(in: .whitespaces) }
        let padded = zip(present, trimmed).contains { $0 != $1 }
        if let typed = typed(trimmed, style: style, epochHint: epochHint) {
            if !typed.outliers.isEmpty {
                let bad = Set(typed.outliers)
                for (i, v) in values.enumerated() where v.map({ bad.contains($0.trimmingCharacters(in: .whitespaces)) }) ?? false { field.rejectRows.insert(i) }
                let examples = typed.outliers.prefix(3).map { "\"\($0)\"" }.joined(separator: ", ")
                let n = field.rejectRows.count
                field.notes.append("\(n) of \(present.count) sampled values \(n == 1 ? "does" : "do") not read as \(typed.type) (\(examples)): \(n == 1 ? "that row would be a reject" : "those rows would be rejects")")
            }
            field.type = typed.type
            field.format = typed.format
            field.trueValues = typed.trueValues
            field.falseValues = typed.falseValues
            field.notes += typed.notes
            field.trim = padded
            if typed.type == .timestamp {
                field.timezone = "UTC"
                let offsets = trimmed.allSatisfy { hasOffset($0) }
                field.notes.append(offsets ? "the values carry their UTC offset; timezone is for values without one"
                                            : "no time zone in the values: UTC assumed; set the client's zone (an IANA name such as Europe/Berlin)")
            }
        } else if let why = leadingZeros(trimmed) {
            field.notes.append(why)
        } else if let why = ambiguousDates(trimmed) {
            field.notes.append(why)
        }
        return field
    }

    struct Typed {
        var type: FieldType
        var format: String?
        var trueValues: [String]?
        var falseValues: [String]?
        var notes: [String] = []
        /// Distinct sampled values the type does not read (a few at most).
        var outliers: [String] = []
    }

    /// The narrowest type every value reads as; failing that, the narrowest that all but a
    /// few values read as (at most 1 in 33, from 10 values on: a stray "A-17" among order
    /// numbers is a reject, not a reason for text); nil for string.
    static func typed(_ values: [String], style: NumberStyle, epochHint: Bool) -> Typed? {
        if let b = bool(values) { return b }
        if leadingZeros(values) != nil { return nil }
        if let t = typed(values, style: style, epochHint: epochHint, allowed: 0) { return t }
        let allowed = values.count >= 10 ? max(1, values.count / 33) : 0
        return allowed > 0 ? typed(values, style: style, epochHint: epochHint, allowed: allowed) : nil
    }

    /// The values `reads` refuses, when there are at most `allowed` of them.
    static func failing(_ values: [String], allowed: Int, _ reads: (String) -> Bool) -> [String]? {
        var bad: [String] = []
        for v in values where !reads(v) {
            bad.append(v)
            if bad.count > allowed { return nil }
        }
        return bad
    }

    static func typed(_ values: [String], style: NumberStyle, epochHint: Bool, allowed: Int) -> Typed? {
        let unique = { (bad: [String]) in Array(NSOrderedSet(array: bad).array as! [String]) }
        if let bad = failing(values, allowed: allowed, { (try? Values.int64($0, decimal: style.decimal, thousands: style.thousands)) != nil }),
           bad.count < values.count {
            if epochHint, allowed == 0, values.allSatisfy({ Int64($0).map { (946_684_800...4_102_444_800).contains($0) } ?? false }) {
                return Typed(type: .timestamp, notes: ["whole numbers in the range of seconds since 1970: read as epoch seconds"])
            }
            return Typed(type: .int64, outliers: unique(bad))
        }
        if var d = decimal(values, style: style, allowed: allowed) {
            d.outliers = unique(d.outliers)
            return d
        }
        let numeric = { (v: String) in
            (try? Values.float64(v, decimal: style.decimal, thousands: style.thousands)) != nil && v.contains { $0.isNumber }
                && !v.lowercased().contains("inf") && !v.lowercased().contains("nan")
        }
        if let bad = failing(values, allowed: allowed, numeric), bad.count < values.count { return Typed(type: .float64, outliers: unique(bad)) }
        guard var t = dateOrTimestamp(values, allowed: allowed) else { return nil }
        t.outliers = unique(t.outliers)
        return t
    }

    static func bool(_ values: [String]) -> Typed? {
        let words = Set(values.map { $0.lowercased() })
        // 0 and 1 alone are numbers.
        guard words.count <= 2, !words.isSubset(of: ["0", "1"]) else { return nil }
        if words.isSubset(of: defaultTrue.union(defaultFalse)) {
            let t = words.intersection(defaultTrue), f = words.intersection(defaultFalse)
            // "y" and "no" would be a strange pair; any mix of the defaults reads.
            if t.count <= 1 && f.count <= 1 { return Typed(type: .bool) }
        }
        for (t, f) in boolWords where words.isSubset(of: [t, f]) {
            return Typed(type: .bool, trueValues: [t], falseValues: [f])
        }
        return nil
    }

    /// Integers written with leading zeros (`00123`) are codes, not numbers.
    static func leadingZeros(_ values: [String]) -> String? {
        guard let example = values.first(where: { $0.count > 1 && $0.first == "0" && $0.allSatisfy(\.isNumber) }),
              values.allSatisfy({ $0.allSatisfy(\.isNumber) }) else { return nil }
        return "leading zeros (\"\(example)\"): kept as string, a number would drop them"
    }

    /// decimal(p, s): the scale the longest fraction needs, the precision the longest number
    /// needs (at least 18).
    static func decimal(_ values: [String], style: NumberStyle, allowed: Int) -> Typed? {
        var scale = 0, whole = 0
        let numbers = values.filter { v in v.first.map { $0.isNumber || $0 == "-" || $0 == "+" } ?? false }
        guard numbers.count + allowed >= values.count, !numbers.isEmpty else { return nil }
        for v in numbers {
            guard !v.contains(where: { $0 == "e" || $0 == "E" }) else { return nil }
            let unsigned = v.drop { $0 == "-" || $0 == "+" }
            let parts = unsigned.split(separator: style.decimal, maxSplits: 1, omittingEmptySubsequences: false)
            scale = max(scale, parts.count > 1 ? parts[1].count : 0)
            whole = max(whole, parts[0].filter(\.isNumber).count)
        }
        guard scale > 0, scale <= 18 else { return nil }
        let precision = max(18, whole + scale)
        guard precision <= 38 else { return nil }
        guard let bad = failing(values, allowed: allowed, { (try? Values.decimal($0, precision: precision, scale: scale, decimal: style.decimal, thousands: style.thousands)) != nil }) else {
            return nil
        }
        return Typed(type: .decimal(precision: precision, scale: scale), outliers: bad)
    }

    static func hasOffset(_ v: String) -> Bool {
        if v.hasSuffix("Z") { return true }
        guard v.count > 16 else { return false }
        let tail = v.suffix(6)
        return (tail.first == "+" || tail.first == "-") || v.suffix(5).first == "+" || v.suffix(5).first == "-"
    }

    /// The date formats (and, for timestamps, the date-time formats) that read every value.
    static func readingFormats(_ values: [String], allowed: Int = 0) -> (dates: [String?], timestamps: [String?]) {
        // Only values shaped like dates are tried.
        guard failing(values, allowed: allowed, { $0.count >= 8 && $0.count <= 40 && $0.first?.isNumber == true }) != nil else { return ([], []) }
        let sample = values.count > 200 ? Array(values.prefix(100)) + Array(values.suffix(100)) : values
        func all(_ read: (String) -> Bool) -> Bool {
            failing(sample, allowed: allowed, read) != nil && (sample.count == values.count || failing(values, allowed: allowed, read) != nil)
        }
        let dates = dateFormats.filter { f in all { (try? Values.date($0, format: f)) != nil && (f != nil || $0.count == 10) } }
        if !dates.isEmpty { return (dates, []) }
        let utc = TimeZone(identifier: "UTC")!
        var timestamps: [String?] = []
        if all({ (try? Values.timestamp($0, format: nil, zone: utc)) != nil }) { return ([], [nil]) }
        for d in dateFormats.compactMap({ $0 }) + ["%Y-%m-%d"] {
            for sep in [" ", "T"] {
                for t in timeFormats {
                    for z in ["", "%z", " %z"] {
                        let f = d + sep + t + z
                        if all({ (try? Values.timestamp($0, format: f, zone: utc)) != nil }) { timestamps.append(f) }
                    }
                }
            }
        }
        return ([], timestamps)
    }

    /// Whether a format reads the day before the month.
    static func dayFirst(_ f: String) -> Bool? {
        guard let d = f.range(of: "%d"), let m = f.range(of: "%m") else { return nil }
        return d.lowerBound < m.lowerBound
    }

    static func dateOrTimestamp(_ values: [String], allowed: Int) -> Typed? {
        let (dates, timestamps) = readingFormats(values, allowed: allowed)
        let utc = TimeZone(identifier: "UTC")!
        for (type, formats) in [(FieldType.date, dates), (.timestamp, timestamps)] where !formats.isEmpty {
            let orders = Set(formats.compactMap { $0.flatMap(dayFirst) })
            // Both orders read every value: no way to tell 01/02 from the sample.
            if orders.count > 1 { return nil }
            let f = formats[0]
            let bad = failing(values, allowed: allowed) { v in
                type == .date ? (try? Values.date(v, format: f)) != nil && (f != nil || v.count == 10) : (try? Values.timestamp(v, format: f, zone: utc)) != nil
            } ?? []
            return Typed(type: type, format: f, outliers: bad)
        }
        return nil
    }

    /// Why a column of dates is kept as string: they read both day-first and month-first.
    static func ambiguousDates(_ values: [String]) -> String? {
        let (dates, timestamps) = readingFormats(values)
        let formats = (dates + timestamps).compactMap { $0 }
        let day = formats.first { dayFirst($0) == true }, month = formats.first { dayFirst($0) == false }
        guard let day, let month else { return nil }
        return "dates that read both day-first (\"\(day)\") and month-first (\"\(month)\"): string is the safe type; "
            + "set type = \"\(dates.isEmpty ? "timestamp" : "date")\" and the format the client uses"
    }

    /// A field name in snake_case: accents folded, camelCase split, anything else an underscore.
    static func snakeCase(_ text: String) -> String {
        let folded = text.replacingOccurrences(of: "ß", with: "ss").folding(options: .diacriticInsensitive, locale: Locale(identifier: "en_US_POSIX"))
        var out = ""
        var previous: Character = "_"
        for c in folded {
            if c.isASCII && (c.isLetter || c.isNumber) {
                if c.isUppercase && (previous.isLowercase || previous.isNumber) && out.last != "_" { out.append("_") }
                out.append(Character(c.lowercased()))
            } else if out.last != "_" && !out.isEmpty {
                out.append("_")
            }
            previous = c
        }
        while out.last == "_" { out.removeLast() }
        if out.isEmpty { return "column" }
        if out.first!.isNumber { out = "c" + out }
        return out
    }
}
