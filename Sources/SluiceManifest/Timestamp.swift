#if canImport(Glibc)
import Glibc
#endif

/// UTC timestamps as ISO-8601 text (`2026-11-25T09:30:00.123456Z`), the form the manifest stores.
public enum Timestamp {
    /// Formats nanoseconds since the Unix epoch, with microseconds.
    public static func iso8601(nanoseconds ns: Int64) -> String {
        var secs = time_t(ns >= 0 ? ns / 1_000_000_000 : (ns - 999_999_999) / 1_000_000_000)
        let micros = Int((ns - Int64(secs) * 1_000_000_000) / 1000)
        var tm = tm()
        gmtime_r(&secs, &tm)
        func pad(_ v: Int32, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        let micro = String(micros)
        return "\(pad(tm.tm_year + 1900, 4))-\(pad(tm.tm_mon + 1, 2))-\(pad(tm.tm_mday, 2))T"
            + "\(pad(tm.tm_hour, 2)):\(pad(tm.tm_min, 2)):\(pad(tm.tm_sec, 2))."
            + String(repeating: "0", count: 6 - micro.count) + micro + "Z"
    }

    /// Now, formatted.
    public static func now() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return iso8601(nanoseconds: Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec))
    }
}
