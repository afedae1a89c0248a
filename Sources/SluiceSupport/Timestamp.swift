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

    /// Parses the form `iso8601(nanoseconds:)` writes (fraction optional) back into
    /// nanoseconds since the epoch; nil for anything else.
    public static func nanoseconds(_ text: String) -> Int64? {
        let b = Array(text.utf8)
        guard b.count >= 20, b.last == UInt8(ascii: "Z") else { return nil }
        func num(_ from: Int, _ count: Int) -> Int? {
            var v = 0
            for i in from..<(from + count) {
                guard b[i] >= 48 && b[i] <= 57 else { return nil }
                v = v * 10 + Int(b[i] - 48)
            }
            return v
        }
        guard let y = num(0, 4), let mo = num(5, 2), let d = num(8, 2), let h = num(11, 2), let mi = num(14, 2), let s = num(17, 2) else { return nil }
        var t = tm()
        t.tm_year = Int32(y - 1900)
        t.tm_mon = Int32(mo - 1)
        t.tm_mday = Int32(d)
        t.tm_hour = Int32(h)
        t.tm_min = Int32(mi)
        t.tm_sec = Int32(s)
        let (whole, overflow) = Int64(timegm(&t)).multipliedReportingOverflow(by: 1_000_000_000)
        guard !overflow else { return nil }  // beyond 2262
        var ns = whole
        if b.count > 21, b.count <= 30, b[19] == UInt8(ascii: "."), let frac = num(20, b.count - 21) {
            ns += Int64(frac) * Int64(pow10(9 - (b.count - 21)))
        }
        return ns
    }

    private static func pow10(_ n: Int) -> Int { n <= 0 ? 1 : (0..<n).reduce(1) { r, _ in r * 10 } }

    /// Now, formatted.
    public static func now() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return iso8601(nanoseconds: Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec))
    }
}
