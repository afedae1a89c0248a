import Foundation
import SluiceTransform
import Testing

@Suite struct ValuesTests {
    let berlin = TimeZone(identifier: "Europe/Berlin")!
    let utc = TimeZone(identifier: "UTC")!

    /// Seconds since the epoch of a UTC wall time, for expectations.
    func epoch(_ y: Int, _ mo: Int, _ d: Int, _ h: Int = 0, _ mi: Int = 0, _ s: Int = 0) -> Int64 {
        Int64(Values.days(year: y, month: mo, day: d)) * 86_400 + Int64(h * 3600 + mi * 60 + s)
    }

    @Test func decimalsNeverRound() throws {
        #expect(try Values.decimal("1.234,50", precision: 12, scale: 2, decimal: ",", thousands: ".") == 123_450)
        #expect(try Values.decimal("42,17", precision: 12, scale: 2, decimal: ",") == 4217)
        #expect(try Values.decimal("-0.5", precision: 5, scale: 2) == -50)
        #expect(try Values.decimal("7.10", precision: 5, scale: 1) == 71, "trailing zeros are not extra places")
        #expect(throws: ValueError.self) { try Values.decimal("1.005", precision: 12, scale: 2) }
        #expect(throws: ValueError.self) { try Values.decimal("12345.6", precision: 5, scale: 2) }
        #expect(throws: ValueError.self) { try Values.decimal("12,34.5", precision: 9, scale: 2, thousands: ",") }
        #expect(throws: ValueError.self) { try Values.decimal("abc", precision: 9, scale: 2) }
        #expect(try Values.decimal("99999999999999999999999999999999999999", precision: 38, scale: 0) == Int128("99999999999999999999999999999999999999")!)
    }

    @Test func integersFloatsAndBools() throws {
        #expect(try Values.int64("1.234.567", decimal: ",", thousands: ".") == 1_234_567)
        #expect(throws: ValueError.self) { try Values.int64("1.5") }
        #expect(throws: ValueError.self) { try Values.int64("12a") }
        #expect(throws: ValueError.self) { try Values.int64("99999999999999999999") }
        #expect(try Values.float64("3,5", decimal: ",") == 3.5)
        #expect(throws: ValueError.self) { try Values.float64("0x10") }
        #expect(try Values.bool("JA", trueValues: ["ja"], falseValues: ["nein"]))
        #expect(throws: ValueError.self) { try Values.bool("vielleicht", trueValues: ["ja"], falseValues: ["nein"]) }
    }

    @Test func datesWithFormatsAndImpossibleDates() throws {
        #expect(try Values.date("2026-10-01", format: nil) == Int32(Values.days(year: 2026, month: 10, day: 1)))
        #expect(try Values.date("01.10.2026", format: "%d.%m.%Y") == Int32(Values.days(year: 2026, month: 10, day: 1)))
        #expect(Values.days(year: 1970, month: 1, day: 1) == 0 && Values.days(year: 2000, month: 3, day: 1) == 11_017)
        #expect(throws: ValueError.self) { try Values.date("31.02.2026", format: "%d.%m.%Y") }
        #expect(throws: ValueError.self) { try Values.date("2026-13-01", format: nil) }
        #expect(try Values.date("29.02.2024", format: "%d.%m.%Y") == Int32(Values.days(year: 2024, month: 2, day: 29)))
    }

    @Test func timestampsAcrossDaylightSavingChanges() throws {
        // Winter (UTC+1) and summer (UTC+2) in Berlin.
        #expect(try Values.timestamp("15.01.2026 10:00", format: "%d.%m.%Y %H:%M", zone: berlin) == epoch(2026, 1, 15, 9) * 1_000_000)
        #expect(try Values.timestamp("15.07.2026 10:00", format: "%d.%m.%Y %H:%M", zone: berlin) == epoch(2026, 7, 15, 8) * 1_000_000)
        // 2026-03-29 02:30 does not exist in Berlin: it moves forward to 03:30 CEST (01:30 UTC).
        #expect(try Values.timestamp("2026-03-29 02:30", format: nil, zone: berlin) == epoch(2026, 3, 29, 1, 30) * 1_000_000)
        // 2026-10-25 02:30 happens twice: the later one (CET, 01:30 UTC) is taken.
        #expect(try Values.timestamp("2026-10-25 02:30", format: nil, zone: berlin) == epoch(2026, 10, 25, 1, 30) * 1_000_000)
        #expect(try Values.timestamp("2026-10-25 01:59:59", format: nil, zone: berlin) == epoch(2026, 10, 24, 23, 59, 59) * 1_000_000)
        // An explicit offset wins over the zone; fractions are kept to the microsecond.
        #expect(try Values.timestamp("2026-07-15T10:00:00.123456+05:30", format: nil, zone: berlin) == epoch(2026, 7, 15, 4, 30) * 1_000_000 + 123_456)
        #expect(try Values.timestamp("2026-07-15T10:00:00Z", format: nil, zone: berlin) == epoch(2026, 7, 15, 10) * 1_000_000)
        #expect(try Values.timestamp("20261001 0930 +0200", format: "%Y%m%d %H%M %z", zone: utc) == epoch(2026, 10, 1, 7, 30) * 1_000_000)
        #expect(throws: ValueError.self) { try Values.timestamp("2026-10-01 25:00", format: nil, zone: utc) }
        #expect(throws: ValueError.self) { try Values.timestamp("yesterday", format: nil, zone: utc) }
    }
}
