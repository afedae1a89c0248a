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
        // "YYYY-MM-DDTHH:MM:SS.ffffffZ", written digit by digit (this runs once per version).
        return String(unsafeUninitializedCapacity: 27) { out in
            var i = 0
            func put(_ value: Int, _ width: Int) {
                var v = value
                for k in stride(from: width - 1, through: 0, by: -1) {
                    out[i + k] = UInt8(ascii: "0") + UInt8(v % 10)
                    v /= 10
                }
                i += width
            }
            func sep(_ c: Unicode.Scalar) {
                out[i] = UInt8(ascii: c)
                i += 1
            }
            put(Int(tm.tm_year) + 1900, 4); sep("-"); put(Int(tm.tm_mon) + 1, 2); sep("-"); put(Int(tm.tm_mday), 2)
            sep("T"); put(Int(tm.tm_hour), 2); sep(":"); put(Int(tm.tm_min), 2); sep(":"); put(Int(tm.tm_sec), 2)
            sep("."); put(micros, 6); sep("Z")
            return i
        }
    }

    /// Now, formatted.
    public static func now() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return iso8601(nanoseconds: Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec))
    }
}
