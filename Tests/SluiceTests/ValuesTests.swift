import Foundation
import SluiceTransform
import SluiceTestSupport
import Testing
import SluiceSupport
import SluiceIngest
import SluiceConfig
import SluiceSources
import SluiceFormats

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

/// The byte-level fast paths must agree with the `Values` functions, which define validity:
/// same value for what both accept, and nil (so `Values` decides) for everything else.
@Suite struct FastValuesTests {
    static func bytes<R>(_ s: String, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        var t = s
        return t.withUTF8(body)
    }

    /// Random short strings over the characters that matter to numbers and times.
    static func samples(_ alphabet: String, count: Int, maxLength: Int) -> [String] {
        var rng = SystemRandomNumberGenerator()
        let chars = Array(alphabet)
        return (0..<count).map { _ in String((0..<Int.random(in: 0...maxLength, using: &rng)).map { _ in chars.randomElement(using: &rng)! }) }
    }

    @Test func integersAndDecimalsAgreeWithValues() {
        let inputs = Self.samples("0123456789-+. e", count: 20_000, maxLength: 22) + ["0", "-0", "+7", "007", "1.", ".5", "-.5", "+.", "", "9223372036854775807", "123456789012345678",
                                                                                           "999999999999999999", "-999999999999999999.00", "0.000000000000000001",
                                                                                           String(repeating: "9", count: 38), "-" + String(repeating: "9", count: 28) + ".9999999999"]
        for s in inputs {
            let fast = Self.bytes(s) { FastValues.int64($0) }
            if let fast { #expect((try? Values.int64(s)) == fast, "int64 \"\(s)\"") }
            for (p, sc) in [(12, 2), (5, 0), (38, 10), (18, 18), (18, 0), (18, 2), (19, 2), (38, 0)] {
                let fastD = Self.bytes(s) { FastValues.decimal($0, precision: p, scale: sc) }
                let slow = try? Values.decimal(s, precision: p, scale: sc)
                if let fastD { #expect(slow == fastD, "decimal(\(p),\(sc)) \"\(s)\"") }
                // The fast path may only pass on a value the slow one refuses, never take one.
                if slow == nil { #expect(fastD == nil, "decimal(\(p),\(sc)) \"\(s)\" refused by Values") }
            }
        }
    }

    @Test func isoTimesAgreeWithValues() throws {
        let utc = TimeZone(identifier: "UTC")!
        let inputs = Self.samples("0123456789-:T .Z+", count: 20_000, maxLength: 26) + [
            "2026-10-01", "2026-10-01T13:13", "2026-10-01 13:13:59", "2026-10-01T13:13:59.123456789", "2026-10-01T13:13:59Z",
            "2026-10-01T13:13:59.5+02:00", "2026-10-01T13:13-05:30", "2024-02-29T00:00", "2026-02-29", "2026-10-01T24:00", "2026-12-31T23:59:60",
        ] + (0..<20_000).map { i in
            // Templates of the accepted shapes with random digits: real and impossible dates and times.
            let templates = ["dddd-dd-dd", "dddd-dd-ddTdd:dd", "dddd-dd-dd dd:dd:dd", "dddd-dd-ddTdd:dd:dd.ddddddd", "dddd-dd-ddTdd:dd:ddZ", "dddd-dd-ddTdd:dd:dd+dd:dd", "dddd-dd-ddTdd:dd-dd:dd"]
            return String(templates[i % templates.count].map { $0 == "d" ? Character(String(Int.random(in: 0...9))) : $0 })
        }
        for s in inputs {
            guard let p = Self.bytes(s, { FastValues.iso($0) }) else { continue }
            let local = p.days * 86_400 + p.secondOfDay
            let fast = (p.offsetSeconds.map { local - $0 } ?? local) * 1_000_000 + p.micros
            #expect((try? Values.timestamp(s, format: nil, zone: utc)) == fast, "\"\(s)\"")
            #expect((try? Values.date(s, format: nil)) == Int32(p.days), "\"\(s)\"")
        }
    }

    /// Separators: decimal commas, thousands points, commas and blanks, in int64, decimal and
    /// float64, against `Values` (a fast path never takes what `Values` refuses).
    @Test func numbersWithSeparatorsAgreeWithValues() {
        let styles: [(Character, Character?)] = [(",", "."), (",", nil), (".", ","), (".", " "), (".", nil), (",", " ")]
        let inputs = Self.samples("0123456789-+.,e ", count: 30_000, maxLength: 16) + [
            "1.234,56", "-1.234.567,8", "12,5", "1,234.56", "1 234,5", "1.23,4", "12.34,5", "1,23", ",5", "5,", "1.234", "1,234", "1e5", "-2.5E-3", ".5e1",
            "+1.234.567", "1..234", "1,,234", "00.001,5", "999.999.999.999.999.999", "1 234 567",
        ]
        for s in inputs {
            for (point, thousands) in styles {
                guard let style = NumberBytes(decimal: point, thousands: thousands) else { continue }
                let fastInt = Self.bytes(s) { FastValues.int64($0, style: style) }
                let slowInt = try? Values.int64(s, decimal: point, thousands: thousands)
                if let fastInt { #expect(slowInt == fastInt, "int64 \"\(s)\" \(point) \(String(describing: thousands))") }
                for (p, sc) in [(12, 2), (18, 4), (38, 10), (5, 0)] {
                    let fast = Self.bytes(s) { FastValues.decimal($0, precision: p, scale: sc, style: style) }
                    let slow = try? Values.decimal(s, precision: p, scale: sc, decimal: point, thousands: thousands)
                    if let fast { #expect(slow == fast, "decimal(\(p),\(sc)) \"\(s)\" \(point) \(String(describing: thousands))") }
                    if slow == nil { #expect(fast == nil, "decimal(\(p),\(sc)) \"\(s)\" refused by Values") }
                }
                let fastF = Self.bytes(s) { FastValues.float64($0, style: style) }
                if let fastF { #expect((try? Values.float64(s, decimal: point, thousands: thousands)) == fastF, "float64 \"\(s)\" \(point)") }
            }
        }
        // The shapes the fast paths exist for are taken.
        let euro = NumberBytes(decimal: ",", thousands: ".")!
        #expect(Self.bytes("-1.234.567,89") { FastValues.decimal($0, precision: 18, scale: 4, style: euro) } == -12_345_678_900)
        #expect(Self.bytes("1.234") { FastValues.int64($0, style: euro) } == 1234)
        #expect(Self.bytes("2,5e3") { FastValues.float64($0, style: euro) } == 2500)
    }

    /// Formats compiled into plans read what `Values.parse` reads, to the microsecond.
    @Test func formattedDatesAndTimesAgreeWithValues() throws {
        let utc = TimeZone(identifier: "UTC")!
        let formats = ["%d.%m.%Y %H:%M", "%Y-%m-%dT%H:%M:%S", "%m/%d/%Y", "%Y%m%d", "%d/%m/%Y %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S%z", "%d.%m.%Y", "%H:%M %d-%m-%Y %%"]
        let inputs = Self.samples("0123456789./-: T+Z,%", count: 20_000, maxLength: 24) + (0..<20_000).map { i in
            let templates = ["dd.dd.dddd dd:dd", "dddd-dd-ddTdd:dd:dd", "dd/dd/dddd", "d/d/dddd", "dddddddd", "dd/dd/dddd dd:dd:dd.dddddddd", "dddd-dd-dd dd:dd:dd+dd:dd",
                             "dddd-dd-dd dd:dd:ddZ", "dd.dd.dddd", "dd:dd dd-dd-dddd %", "dd.dd.dddd dd:dd.5", "dddd-dd-dd dd:dd:dd+dddd"]
            return String(templates[i % templates.count].map { $0 == "d" ? Character(String(Int.random(in: 0...9))) : $0 })
        }
        for f in formats {
            let plan = try #require(DateTimePlan(f))
            var taken = 0
            for s in inputs {
                let slow = try? Values.timestamp(s, format: f, zone: utc)
                guard let p = Self.bytes(s, { plan.parse($0) }) else { continue }
                taken += 1
                let local = p.days * 86_400 + p.secondOfDay
                #expect(slow == (p.offsetSeconds.map { local - $0 } ?? local) * 1_000_000 + p.micros, "\(f): \"\(s)\"")
                #expect((try? Values.date(s, format: f)) == Int32(p.days), "\(f): \"\(s)\"")
            }
            #expect(taken > 0, "\(f) read none of the samples")
        }
    }

    /// The per-day offset cache gives what the zone database gives, every 15 minutes of
    /// local time through 2025–2026, in zones with DST gaps and overlaps, half-hour shifts
    /// (Lord Howe) and odd offsets (Kathmandu).
    @Test func zoneConverterAgreesWithTheZoneDatabase() throws {
        for id in ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu", "America/Santiago", "UTC"] {
            let zone = try #require(TimeZone(identifier: id))
            let converter = ZoneConverter(zone: zone)
            let start = Int64(Values.days(year: 2025, month: 1, day: 1)) * 86_400
            var local = start
            var mismatches = 0
            while local < start + 2 * 365 * 86_400 {
                let first = Int64(zone.secondsFromGMT(for: Date(timeIntervalSince1970: Double(local))))
                let expected = local - Int64(zone.secondsFromGMT(for: Date(timeIntervalSince1970: Double(local - first))))
                if converter.utc(local: local) != expected { mismatches += 1 }
                local += 900
            }
            #expect(mismatches == 0, "\(id): \(mismatches) local times converted differently")
        }
    }
}
