import Foundation

/// A five-field cron schedule (`minute hour day-of-month month day-of-week`), as crontab(5)
/// reads it: `*`, numbers, ranges `a-b`, lists `a,b`, steps `*/n` and `a-b/n`, month and day
/// names (`jan`, `mon-fri`), Sunday as 0 or 7. When both day fields are restricted, a day
/// matching either one matches (as cron does).
public struct CronSchedule: Sendable, Equatable, CustomStringConvertible {
    public let description: String
    let minutes: Set<Int>
    let hours: Set<Int>
    let days: Set<Int>
    let months: Set<Int>
    let weekdays: Set<Int>
    let anyDay: Bool
    let anyWeekday: Bool

    public struct SyntaxError: Error, CustomStringConvertible {
        public let description: String
    }

    public init(_ text: String) throws(SyntaxError) {
        let fields = text.split(whereSeparator: { $0 == " " || $0 == "\t" }).map { String($0).lowercased() }
        guard fields.count == 5 else {
            throw SyntaxError(description: "expected 5 fields (minute hour day-of-month month day-of-week), such as \"0 9 * * 1-5\"; found \(fields.count)")
        }
        description = fields.joined(separator: " ")
        let monthNames = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
        let dayNames = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
        minutes = try Self.field(fields[0], "minute", 0...59, names: [])
        hours = try Self.field(fields[1], "hour", 0...23, names: [])
        days = try Self.field(fields[2], "day of month", 1...31, names: [])
        months = try Self.field(fields[3], "month", 1...12, names: monthNames, firstName: 1)
        var w = try Self.field(fields[4], "day of week", 0...7, names: dayNames, firstName: 0)
        if w.remove(7) != nil { w.insert(0) }
        weekdays = w
        anyDay = fields[2] == "*" || fields[2].hasPrefix("*/")
        anyWeekday = fields[4] == "*" || fields[4].hasPrefix("*/")
    }

    private static func field(_ text: String, _ what: String, _ range: ClosedRange<Int>, names: [String], firstName: Int = 0) throws(SyntaxError) -> Set<Int> {
        func value(_ s: Substring) throws(SyntaxError) -> Int {
            if let n = Int(s), range.contains(n) { return n }
            if let i = names.firstIndex(of: String(s)) { return i + firstName }
            throw SyntaxError(description: "\(what) \"\(s)\" is not a value from \(range.lowerBound) to \(range.upperBound)\(names.isEmpty ? "" : " or a name such as \(names[1])")")
        }
        var out = Set<Int>()
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let pieces = part.split(separator: "/", omittingEmptySubsequences: false)
            guard pieces.count <= 2, !pieces[0].isEmpty else { throw SyntaxError(description: "\(what) \"\(part)\" is not a cron field") }
            var step = 1
            if pieces.count == 2 {
                guard let s = Int(pieces[1]), s > 0 else { throw SyntaxError(description: "\(what) step \"\(pieces[1])\" must be a whole number above 0") }
                step = s
            }
            let lo: Int, hi: Int
            if pieces[0] == "*" {
                (lo, hi) = (range.lowerBound, range.upperBound)
            } else if let dash = pieces[0].firstIndex(of: "-") {
                lo = try value(pieces[0][..<dash])
                hi = try value(pieces[0][pieces[0].index(after: dash)...])
                guard lo <= hi else { throw SyntaxError(description: "\(what) range \"\(pieces[0])\" runs backwards") }
            } else {
                lo = try value(pieces[0])
                hi = pieces.count == 2 ? range.upperBound : lo
            }
            out.formUnion(stride(from: lo, through: hi, by: step))
        }
        return out
    }

    /// Whether the schedule fires on a local date (`weekday` 0 = Sunday).
    func matches(day: Int, month: Int, weekday: Int) -> Bool {
        guard months.contains(month) else { return false }
        switch (anyDay, anyWeekday) {
        case (true, true): return true
        case (true, false): return weekdays.contains(weekday)
        case (false, true): return days.contains(day)
        case (false, false): return days.contains(day) || weekdays.contains(weekday)
        }
    }

    /// The instants (seconds since the epoch) the schedule fires at in `zone` after `after`
    /// and up to `through`, in order. Local times are converted with `utc`: a time that a
    /// daylight-saving change skips fires at the same distance past the change (02:30 becomes
    /// 03:30 when 02:00 jumps to 03:00); a time that occurs twice fires at its later occurrence.
    public func instants(after: Int64, through: Int64, utc: (Int64) -> Int64, offset: (Int64) -> Int64) -> [Int64] {
        guard through > after else { return [] }
        var out: [Int64] = []
        // Local days from the day before `after` (a local time there can fall after it in UTC)
        // to the day after `through`.
        var dayNumber = CivilDays.floorDiv(after + offset(after), 86_400) - 1
        let lastDay = CivilDays.floorDiv(through + offset(through), 86_400) + 1
        let sortedHours = hours.sorted(), sortedMinutes = minutes.sorted()
        while dayNumber <= lastDay {
            let (_, m, d) = CivilDays.date(dayNumber)
            let weekday = Int((dayNumber + 4) % 7 + 7) % 7  // 1970-01-01 was a Thursday
            if matches(day: Int(d), month: Int(m), weekday: weekday) {
                for h in sortedHours {
                    for mi in sortedMinutes {
                        let t = utc(dayNumber * 86_400 + Int64(h * 3600 + mi * 60))
                        if t > after && t <= through && out.last.map({ t > $0 }) ?? true { out.append(t) }
                    }
                }
            }
            dayNumber += 1
        }
        return out
    }

    /// The first instant after `after` (looking up to 5 years ahead).
    public func next(after: Int64, utc: (Int64) -> Int64, offset: (Int64) -> Int64) -> Int64? {
        var from = after
        for _ in 0..<60 {
            let to = from + 31 * 86_400
            if let t = instants(after: from, through: to, utc: utc, offset: offset).first { return t }
            from = to
        }
        return nil
    }

    /// The last instant at or before `at` (looking up to 5 years back).
    public func previous(atOrBefore at: Int64, utc: (Int64) -> Int64, offset: (Int64) -> Int64) -> Int64? {
        var to = at
        for _ in 0..<60 {
            let from = to - 31 * 86_400
            if let t = instants(after: from, through: to, utc: utc, offset: offset).last { return t }
            to = from
        }
        return nil
    }
}
