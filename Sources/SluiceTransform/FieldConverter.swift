import Foundation
import SluiceParquet
import SluiceSupport
import SluiceLake
import SluiceManifest
import SluiceIngest
import SluiceConfig
import SluiceFormats

/// One mapped field, prepared once per file so that each value goes from its raw bytes
/// straight into the output row. The common shapes (plain integers and decimals, ISO
/// timestamps, ASCII booleans, UTF-8 strings) never become a `String`; anything else goes
/// through `Transformer.value`, which has the last word on what is valid.
package final class FieldConverter {
    package let field: FieldMapping
    package let dataset: DatasetMapping
    package let column: Int
    private let nullValues: [[UInt8]]
    private let trueValues: [[UInt8]]
    private let falseValues: [[UInt8]]
    /// The dataset's separators as bytes (nil: not single ASCII characters, the `String` way).
    private let numbers: NumberBytes?
    /// The field's `format`, compiled once.
    private let plan: DateTimePlan?
    private let zone: ZoneConverter?

    /// The direct route for a field with no `trim` and no `map`: the type's byte-level parser
    /// alone, whose accepted forms are all ASCII (so no separate UTF-8 check), or a string's
    /// bytes once they are checked to be UTF-8. A value it does not take goes the general way.
    private enum Direct {
        case string, int64, decimal(precision: Int, scale: Int), float64, isoTimestamp, isoDate, bool, none
        /// With a `format` (its plan is `plan`).
        case formattedTimestamp, formattedDate
    }
    private let direct: Direct
    /// The null markers are just "" (the default).
    private let onlyEmptyIsNull: Bool

    package init(field: FieldMapping, dataset: DatasetMapping, column: Int) {
        self.field = field
        self.dataset = dataset
        self.column = column
        nullValues = dataset.nullValues.map { Array($0.utf8) }
        trueValues = field.trueValues.map { Array($0.lowercased().utf8) }
        falseValues = field.falseValues.map { Array($0.lowercased().utf8) }
        numbers = NumberBytes(decimal: dataset.decimalSeparator, thousands: dataset.thousandsSeparator)
        plan = field.format.flatMap(DateTimePlan.init)
        zone = field.type == .timestamp ? ZoneConverter(zone: field.timezone) : nil
        onlyEmptyIsNull = dataset.nullValues == [""]
        if field.trim || !field.map.isEmpty {
            direct = .none
        } else {
            switch field.type {
            case .string: direct = .string
            case .int64: direct = numbers == nil ? .none : .int64
            case .decimal(let p, let s): direct = numbers == nil ? .none : .decimal(precision: p, scale: s)
            case .timestamp: direct = field.format == nil ? .isoTimestamp : plan == nil ? .none : .formattedTimestamp
            case .date: direct = field.format == nil ? .isoDate : plan == nil ? .none : .formattedDate
            case .bool: direct = .bool
            case .float64: direct = numbers == nil ? .none : .float64
            }
        }
    }

    @inline(__always)
    private func isNull(_ b: UnsafeBufferPointer<UInt8>) -> Bool {
        onlyEmptyIsNull ? b.isEmpty : nullValues.contains(where: { Self.equal(b, $0) })
    }

    package static func invalidUTF8(_ d: DatasetMapping) -> ValueError {
        ValueError("invalid UTF-8 (is the file's encoding \(d.encoding.rawValue)?)")
    }

    /// Sets the field's column of `row` from `raw` (nil = the column is absent).
    @inline(__always)
    package func convert(_ raw: UnsafeBufferPointer<UInt8>?, into row: ParquetRow) throws(ValueError) {
        if let b = raw, convertDirectly(b, into: row) { return }
        try convertGenerally(raw, into: row)
    }

    /// The direct route: true when it set the column. Small, so that it inlines into the
    /// reader's loop; whatever it does not take goes the general way.
    @inline(__always)
    private func convertDirectly(_ b: UnsafeBufferPointer<UInt8>, into row: ParquetRow) -> Bool {
        switch direct {
        case .none:
            return false
        case .string:
            guard !isNull(b), FastValues.isValidUTF8(b) else { return false }
            row.set(column, bytes: b)
        case .int64:
            guard !isNull(b), let numbers, let v = FastValues.int64(b, style: numbers) else { return false }
            row.set(column, int64: v)
        case .decimal(let p, let s):
            guard !isNull(b), let numbers, let v = FastValues.decimal(b, precision: p, scale: s, style: numbers) else { return false }
            row.set(column, decimal: v)
        case .float64:
            guard !isNull(b), let numbers, let v = FastValues.float64(b, style: numbers) else { return false }
            row.set(column, float64: v)
        case .formattedTimestamp:
            guard !isNull(b), let zone, let p = plan?.parse(b) else { return false }
            let local = p.days * 86_400 + p.secondOfDay
            let utc = p.offsetSeconds.map { local - $0 } ?? zone.utc(local: local)
            row.set(column, timestamp: utc * 1_000_000 + p.micros)
        case .formattedDate:
            guard !isNull(b), let p = plan?.parse(b) else { return false }
            row.set(column, date: Int32(truncatingIfNeeded: p.days))
        case .isoTimestamp:
            guard !isNull(b), let zone, let p = FastValues.iso(b) else { return false }
            let local = p.days * 86_400 + p.secondOfDay
            let utc = p.offsetSeconds.map { local - $0 } ?? zone.utc(local: local)
            row.set(column, timestamp: utc * 1_000_000 + p.micros)
        case .isoDate:
            guard !isNull(b), let p = FastValues.iso(b) else { return false }
            row.set(column, date: Int32(truncatingIfNeeded: p.days))
        case .bool:
            guard !isNull(b), FastValues.isASCII(b) else { return false }
            if trueValues.contains(where: { Self.equalIgnoringCase(b, $0) }) {
                row.set(column, bool: true)
            } else if falseValues.contains(where: { Self.equalIgnoringCase(b, $0) }) {
                row.set(column, bool: false)
            } else {
                return false
            }
        }
        return true
    }

    /// Every other value: nulls, non-ASCII text, `trim` and `map`, booleans, formats, and
    /// whatever the direct route did not take (`Transformer.value` has the last word).
    @inline(never)
    private func convertGenerally(_ raw: UnsafeBufferPointer<UInt8>?, into row: ParquetRow) throws(ValueError) {
        guard var b = raw else { return try slow(nil, into: row) }
        let ascii = FastValues.isASCII(b)
        if !ascii && !FastValues.isValidUTF8(b) { throw Self.invalidUTF8(dataset) }
        if field.trim {
            // Unicode spaces at the edges are the `String` path's to trim.
            guard ascii else { return try slow(b, into: row) }
            b = Self.trimmed(b)
        }
        if !field.map.isEmpty { return try slow(b, into: row) }
        if isNull(b) { return try slow(nil, into: row) }
        switch field.type {
        case .string:
            row.set(column, bytes: b)
            return
        case .int64:
            if ascii, let numbers, let v = FastValues.int64(b, style: numbers) {
                row.set(column, int64: v)
                return
            }
        case .decimal(let p, let s):
            if ascii, let numbers, let v = FastValues.decimal(b, precision: p, scale: s, style: numbers) {
                row.set(column, decimal: v)
                return
            }
        case .bool:
            if ascii {
                if trueValues.contains(where: { Self.equalIgnoringCase(b, $0) }) {
                    row.set(column, bool: true)
                    return
                }
                if falseValues.contains(where: { Self.equalIgnoringCase(b, $0) }) {
                    row.set(column, bool: false)
                    return
                }
            }
        case .timestamp:
            guard let zone else { break }
            if field.format == nil, ascii, let p = FastValues.iso(b) {
                let local = p.days * 86_400 + p.secondOfDay
                let utc = p.offsetSeconds.map { local - $0 } ?? zone.utc(local: local)
                row.set(column, timestamp: utc * 1_000_000 + p.micros)
                return
            }
            if ascii, let plan, let p = plan.parse(b) {
                let local = p.days * 86_400 + p.secondOfDay
                let utc = p.offsetSeconds.map { local - $0 } ?? zone.utc(local: local)
                row.set(column, timestamp: utc * 1_000_000 + p.micros)
                return
            }
            if field.format != nil {
                // A `format`: parsed as `Values` does, with this field's cached zone offsets.
                row.set(column, timestamp: try Values.timestamp(String(decoding: b, as: UTF8.self), format: field.format, zone: zone))
                return
            }
        case .date:
            if field.format == nil, ascii, let p = FastValues.iso(b) {
                row.set(column, date: Int32(truncatingIfNeeded: p.days))
                return
            }
            if ascii, let plan, let p = plan.parse(b) {
                row.set(column, date: Int32(truncatingIfNeeded: p.days))
                return
            }
        case .float64:
            if ascii, let numbers, let v = FastValues.float64(b, style: numbers) {
                row.set(column, float64: v)
                return
            }
        }
        try slow(b, into: row)
    }

    private func slow(_ b: UnsafeBufferPointer<UInt8>?, into row: ParquetRow) throws(ValueError) {
        let text = b.map { String(decoding: $0, as: UTF8.self) }
        row.set(column, try Transformer.value(text, field, dataset))
    }

    package static func trimmed(_ b: UnsafeBufferPointer<UInt8>) -> UnsafeBufferPointer<UInt8> {
        var lo = 0
        var hi = b.count
        while lo < hi && (b[lo] == 0x20 || b[lo] == 0x09) { lo += 1 }
        while hi > lo && (b[hi - 1] == 0x20 || b[hi - 1] == 0x09) { hi -= 1 }
        return UnsafeBufferPointer(rebasing: b[lo..<hi])
    }

    package static func equal(_ a: UnsafeBufferPointer<UInt8>, _ b: [UInt8]) -> Bool {
        a.count == b.count && a.elementsEqual(b)
    }

    /// ASCII `a` equal to the lowercased `lower`, ignoring case.
    package static func equalIgnoringCase(_ a: UnsafeBufferPointer<UInt8>, _ lower: [UInt8]) -> Bool {
        guard a.count == lower.count else { return false }
        for i in 0..<a.count {
            let c = a[i]
            if (c >= 65 && c <= 90 ? c + 32 : c) != lower[i] { return false }
        }
        return true
    }
}
