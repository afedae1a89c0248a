import CCompression
import SluiceSupport
#if canImport(Glibc)
import Glibc
#endif

/// One column of the row group being written: pages are encoded and compressed as they fill,
/// and the chunk (dictionary page first, then the data pages) is handed over at the end of
/// the row group.
final class ColumnChunkWriter {
    let field: ParquetField
    let physical: PhysicalType
    let options: ParquetOptions
    /// Shared by the file's columns, which the writer encodes one at a time.
    private let compressor: PageCompressor

    /// How values are kept, by physical type.
    enum Kind { case boolean, int32, int64, double, bytes, fixedBytes(Int) }
    let kind: Kind
    // Copies of what the per-value path reads, kept as plain stored values.
    private let nullable: Bool
    private let pageLimit: Int
    private let dictionaryLimit: Int
    /// Logical decimal (the unscaled value comes from the row's wide slot).
    let isDecimal: Bool

    // The page being filled.
    private var levels = RawBuffer<UInt8>(capacity: 4096)
    private var pageValues = 0
    private var plain = RawBuffer<UInt8>(capacity: 4096)
    private var bools = RawBuffer<UInt32>(capacity: 64)
    private var indices = RawBuffer<UInt32>(capacity: 4096)

    // The chunk's dictionary; `dictionaryMode` ends for the rest of the chunk once it is too big.
    private var dictionaryMode: Bool
    private var fixedDictionary = FixedDictionary()
    private var bytesDictionary = BytesDictionary()
    private var dictionaryPlain = RawBuffer<UInt8>(capacity: 4096)
    private var dictionaryCount = 0
    private var fallBack = false
    /// The dictionary index of the value appended last, while in dictionary mode.
    private var lastIndex: UInt32?

    // The chunk so far: its data pages (being compressed, or done), and their bodies' size
    // before compression.
    private var pages: [PageCompressor.Ticket] = []
    private var pagesBodyBytes = 0
    private var numValues: Int64 = 0
    private var nullCount: Int64 = 0
    private var usedDictionary = false
    private var usedPlain = false
    // Statistics: integers (and bools, and FLBA decimals) compare as signed, doubles as
    // doubles (NaN skipped), byte arrays as unsigned bytes.
    private var hasStats = false
    private var minInt: Int128 = 0
    private var maxInt: Int128 = 0
    private var minDouble = 0.0
    private var maxDouble = 0.0
    private var minBytes = RawBuffer<UInt8>(capacity: 64)
    private var maxBytes = RawBuffer<UInt8>(capacity: 64)
    private var statsTooLong = false

    init(field: ParquetField, options: ParquetOptions, compressor: PageCompressor) {
        self.field = field
        self.options = options
        self.compressor = compressor
        physical = PhysicalType.of(field.type)
        switch physical {
        case .boolean: kind = .boolean
        case .int32: kind = .int32
        case .int64: kind = .int64
        case .double: kind = .double
        case .byteArray: kind = .bytes
        case .fixed(let n): kind = .fixedBytes(n)
        }
        if case .decimal = field.type { isDecimal = true } else { isDecimal = false }
        nullable = field.nullable
        pageLimit = options.pageBytes
        dictionaryLimit = options.dictionaryLimitBytes
        dictionaryMode = physical != .boolean
    }

    deinit {
        levels.free()
        plain.free()
        bools.free()
        indices.free()
        dictionaryPlain.free()
        minBytes.free()
        maxBytes.free()
        fixedDictionary.free()
    }

    /// Bytes held for the current row group (for the row-group size bound).
    var bufferedBytes: Int {
        pagesBodyBytes + plain.count + indices.count * 4 + bools.count / 8 + levels.count + dictionaryPlain.count
    }

    private var pageBytes: Int { plain.count + indices.count * 4 + bools.count / 8 + levels.count / 8 }

    /// Appends this column's value of `row`.
    @inline(__always)
    func append(_ slot: ParquetRow.Slot, row: ParquetRow) throws {
        if !slot.present {
            guard nullable else { throw ParquetError("column \(field.name) is required but got a null") }
            levels.append(0)
            nullCount += 1
        } else {
            if nullable { levels.append(1) }
            try appendPresent(slot, row: row)
        }
        try counted()
    }

    /// Appends `column` of every committed row of `rows`. Plain 64-bit numbers (integers,
    /// timestamps, decimals up to precision 18) take a loop of their own, without the
    /// per-value dispatch on the column's kind.
    func appendColumn(of rows: ParquetRow, column: Int) throws {
        let count = rows.count
        guard case .int64 = kind else {
            for r in 0..<count { try append(rows.slot(r, column), row: rows) }
            return
        }
        for r in 0..<count {
            if rows.isPresent(r, column) {
                if nullable { levels.append(1) }
                let v = Int64(bitPattern: rows.bits(r, column))
                // A decimal's high half must be the low half's sign: it fits in 64 bits.
                if isDecimal && rows.high(r, column) != v >> 63 {
                    throw ParquetError("column \(field.name): \(rows.slot(r, column).wide) does not fit its decimal precision")
                }
                noteInt(Int128(v))
                appendFixed(UInt64(bitPattern: v), width: 8)
            } else {
                guard nullable else { throw ParquetError("column \(field.name) is required but got a null") }
                levels.append(0)
                nullCount += 1
            }
            try counted()
        }
    }

    /// Counts the value just appended, and ends the page (or the dictionary) when it is time.
    @inline(__always)
    private func counted() throws {
        pageValues += 1
        numValues += 1
        if fallBack {
            fallBack = false
            try flushPage()
            dictionaryMode = false
        } else if pageValues & 127 == 0 {
            if dictionaryMode && numValues == Self.cardinalityProbe && dictionaryCount * 2 > numValues - nullCount {
                // Mostly distinct values (ids, amounts, times): a dictionary would only cost
                // hashing, so the chunk goes on in PLAIN, as it does when the dictionary is full.
                try flushPage()
                dictionaryMode = false
            } else if pageBytes >= pageLimit {
                try flushPage()
            }
        }
    }

    /// Appends the same present value `times` times (a constant column): after the first, each
    /// costs a dictionary index and a level, with no hashing and no statistics.
    func appendRepeated(_ slot: ParquetRow.Slot, row: ParquetRow, times: Int) throws {
        guard times > 0 else { return }
        // The first goes the full way, which leaves this value's index in `lastIndex`.
        try append(slot, row: row)
        var left = times - 1
        while left > 0 {
            guard dictionaryMode, !fallBack, let index = lastIndex, slot.present else {
                try append(slot, row: row)
                left -= 1
                continue
            }
            // As many as fit the page in one go.
            let n = Swift.min(left, Swift.max(128, (pageLimit - pageBytes) / 4))
            if nullable { levels.append(repeating: 1, count: n) }
            indices.append(repeating: index, count: n)
            pageValues += n
            numValues += Int64(n)
            left -= n
            if pageBytes >= pageLimit { try flushPage() }
        }
    }

    /// After this many values of a chunk, a column whose values are more than half distinct
    /// leaves dictionary encoding.
    static let cardinalityProbe: Int64 = 16_384

    @inline(__always)
    private func appendPresent(_ slot: ParquetRow.Slot, row: ParquetRow) throws {
        switch kind {
        case .boolean:
            bools.append(UInt32(slot.bits & 1))
            noteInt(Int128(slot.bits & 1))
        case .int32:
            let v: Int32
            if isDecimal {
                guard let d = Int32(exactly: slot.wide) else { throw ParquetError("column \(field.name): \(slot.wide) does not fit its decimal precision") }
                v = d
            } else {
                v = Int32(truncatingIfNeeded: Int64(bitPattern: slot.bits))
            }
            noteInt(Int128(v))
            appendFixed(UInt64(UInt32(bitPattern: v)), width: 4)
        case .int64:
            let v: Int64
            if isDecimal {
                guard let d = Int64(exactly: slot.wide) else { throw ParquetError("column \(field.name): \(slot.wide) does not fit its decimal precision") }
                v = d
            } else {
                v = Int64(bitPattern: slot.bits)
            }
            noteInt(Int128(v))
            appendFixed(UInt64(bitPattern: v), width: 8)
        case .double:
            let d = Double(bitPattern: slot.bits)
            if !d.isNaN { noteDouble(d) }
            appendFixed(slot.bits, width: 8)
        case .bytes:
            let value = row.bytes(slot)
            if dictionaryMode, let index = bytesDictionary.repeatOfLast(value, in: dictionaryPlain) {
                // The same value as the last one (a lineage column, say): the dictionary and
                // the statistics already have it.
                indices.append(index)
                lastIndex = index
            } else {
                appendBytes(value, lengthPrefix: true, statistics: true)
            }
        case .fixedBytes(let n):
            // Big-endian two's complement, n (≤ 16) bytes.
            var be = slot.wide.bigEndian
            noteInt(slot.wide)
            try withUnsafeBytes(of: &be) { raw in
                guard n <= 16 else { throw ParquetError("column \(field.name): decimal wider than 16 bytes") }
                let tail = UnsafeBufferPointer(rebasing: raw.bindMemory(to: UInt8.self)[(16 - n)...])
                appendBytes(tail, lengthPrefix: false, statistics: false)
            }
        }
    }

    @inline(__always)
    private func appendFixed(_ bits: UInt64, width: Int) {
        if dictionaryMode {
            let (index, inserted) = fixedDictionary.index(of: bits)
            lastIndex = index
            indices.append(index)
            if inserted {
                dictionaryCount += 1
                dictionaryPlain.appendLittleEndian(bits, width: width)
                // Too many distinct values: this page ends with the dictionary (once the value
                // is counted, in append), then the chunk goes on in PLAIN.
                if dictionaryPlain.count > dictionaryLimit { fallBack = true }
            }
        } else {
            plain.appendLittleEndian(bits, width: width)
        }
    }

    /// `statistics`: note the value in the byte-array min and max (a value already in the
    /// dictionary has been noted).
    private func appendBytes(_ value: UnsafeBufferPointer<UInt8>, lengthPrefix: Bool, statistics: Bool) {
        if dictionaryMode {
            let index = bytesDictionary.index(of: value, in: &dictionaryPlain, lengthPrefix: lengthPrefix)
            lastIndex = index
            indices.append(index)
            if Int(index) == dictionaryCount {
                if statistics { noteBytes(value) }
                dictionaryCount += 1
                if dictionaryPlain.count > dictionaryLimit { fallBack = true }
            }
        } else {
            if statistics { noteBytes(value) }
            if lengthPrefix { plain.appendLittleEndian(UInt64(value.count), width: 4) }
            plain.append(contentsOf: value)
        }
    }

    @inline(__always)
    private func noteInt(_ v: Int128) { note(v, &minInt, &maxInt) }

    @inline(__always)
    private func noteDouble(_ v: Double) { note(v, &minDouble, &maxDouble) }

    @inline(__always)
    private func note<T: Comparable>(_ v: T, _ low: inout T, _ high: inout T) {
        if !hasStats {
            hasStats = true
            low = v
            high = v
        } else if v < low {
            low = v
        } else if v > high {
            high = v
        }
    }

    private func noteBytes(_ v: UnsafeBufferPointer<UInt8>) {
        if statsTooLong { return }
        if v.count > 1024 {
            statsTooLong = true
            return
        }
        if !hasStats {
            hasStats = true
            minBytes.removeAll()
            minBytes.append(contentsOf: v)
            maxBytes.removeAll()
            maxBytes.append(contentsOf: v)
        } else if Self.compare(v, minBytes.buffer) < 0 {
            minBytes.removeAll()
            minBytes.append(contentsOf: v)
        } else if Self.compare(v, maxBytes.buffer) > 0 {
            maxBytes.removeAll()
            maxBytes.append(contentsOf: v)
        }
    }

    /// Unsigned lexicographic order, as Parquet orders UTF8 byte arrays.
    static func compare(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>) -> Int {
        let n = Swift.min(a.count, b.count)
        if n > 0 {
            let c = memcmp(a.baseAddress!, b.baseAddress!, n)
            if c != 0 { return Int(c) }
        }
        return a.count - b.count
    }

    private func flushPage() throws {
        guard pageValues > 0 else { return }
        var body: [UInt8] = []
        body.reserveCapacity(pageBytes + 64)
        if field.nullable { Encodings.definitionLevels(levels.buffer, to: &body) }
        let encoding: Int32
        if physical == .boolean {
            Encodings.packBits(bools.buffer, width: 1, count: bools.count, to: &body)
            encoding = 0
            usedPlain = true
        } else if !indices.isEmpty {
            Encodings.dictionaryIndices(indices.buffer, bitWidth: Encodings.bitWidth(UInt32(Swift.max(dictionaryCount, 1) - 1)), to: &body)
            encoding = 8  // RLE_DICTIONARY
            usedDictionary = true
        } else {
            body.append(contentsOf: plain.buffer)
            encoding = 0  // PLAIN
            usedPlain = true
        }
        pagesBodyBytes += body.count
        pages.append(try compressor.submit(.data(values: Int32(pageValues), encoding: encoding), body: body))
        levels.removeAll()
        plain.removeAll()
        bools.removeAll()
        indices.removeAll()
        pageValues = 0
    }

    struct Chunk {
        var bytes: [UInt8]
        var meta: ColumnMeta
    }

    /// Ends the column chunk of this row group; `offset` is where its bytes will start.
    func finishChunk(at offset: Int64) throws -> Chunk {
        lastIndex = nil
        try flushPage()
        var bytes: [UInt8] = []
        var uncompressed: Int64 = 0
        var dictionaryOffset: Int64?
        if usedDictionary {
            let page = try compressor.compressNow(.dictionary(values: Int32(dictionaryCount)), body: dictionaryPlain.array)
            bytes += page.bytes
            uncompressed += page.uncompressed
            dictionaryOffset = offset
        }
        let dataOffset = offset + Int64(bytes.count)
        for ticket in pages {
            let page = try compressor.result(of: ticket)
            bytes += page.bytes
            uncompressed += page.uncompressed
        }
        var encodings: [Int32] = [3]
        if usedDictionary { encodings += [2, 8] }
        if usedPlain { encodings.append(0) }
        let meta = ColumnMeta(
            type: physical.type, encodings: encodings, path: field.name, codec: Self.codec(options.compression),
            numValues: numValues, totalUncompressed: uncompressed, totalCompressed: Int64(bytes.count),
            dataPageOffset: dataOffset, dictionaryPageOffset: dictionaryOffset, nullCount: nullCount,
            min: statsTooLong || !hasStats ? nil : statBytes(max: false), max: statsTooLong || !hasStats ? nil : statBytes(max: true))
        // A new chunk starts with a new dictionary.
        pages = []
        pagesBodyBytes = 0
        numValues = 0
        nullCount = 0
        usedDictionary = false
        usedPlain = false
        hasStats = false
        statsTooLong = false
        fixedDictionary.free()
        fixedDictionary = FixedDictionary()
        bytesDictionary = BytesDictionary()
        dictionaryPlain.removeAll()
        dictionaryCount = 0
        dictionaryMode = physical != .boolean
        return Chunk(bytes: bytes, meta: meta)
    }

    /// A statistic as Parquet stores min_value/max_value: the PLAIN value without a length.
    private func statBytes(max: Bool) -> [UInt8] {
        var out: [UInt8] = []
        switch kind {
        case .boolean: out.append(max ? UInt8(maxInt) : UInt8(minInt))
        case .int32: Encodings.appendLE(Int32(truncatingIfNeeded: max ? maxInt : minInt), to: &out)
        case .int64: Encodings.appendLE(Int64(truncatingIfNeeded: max ? maxInt : minInt), to: &out)
        case .double:
            // The format asks for -0.0 as a zero minimum and +0.0 as a zero maximum.
            var d = max ? maxDouble : minDouble
            if d == 0 { d = max ? 0.0 : -0.0 }
            Encodings.appendLE(d.bitPattern, to: &out)
        case .bytes: out = max ? maxBytes.array : minBytes.array
        case .fixedBytes(let n):
            let d = max ? maxInt : minInt
            for i in stride(from: n - 1, through: 0, by: -1) { out.append(UInt8(truncatingIfNeeded: d >> (8 * i))) }
        }
        return out
    }

    static func codec(_ c: ParquetCompression) -> Int32 {
        switch c {
        case .none: 0
        case .snappy: 1
        case .zstd: 6
        }
    }
}
