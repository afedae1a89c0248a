/// Days since 1970-01-01 and the proleptic Gregorian calendar's dates (Howard Hinnant's
/// `civil_from_days`), without Foundation's calendars: what cron schedules and date values need.
public enum CivilDays {
    /// Year, month (1-12) and day (1-31) of a day count since 1970-01-01.
    public static func date(_ days: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let z = days + 719_468
        let era = floorDiv(z, 146_097)
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }

    /// `a / b` rounded down (towards minus infinity), for a positive `b`.
    public static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 { a >= 0 ? a / b : (a - b + 1) / b }
}
