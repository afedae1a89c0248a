import CCompression

/// One column of the row group being written: pages are encoded and compressed as they fill,
/// and the chunk (dictionary page first, then the data pages) is handed over at the end of
/// the row group.
final class ColumnChunkWriter {
    let field: ParquetField
    let physical: PhysicalType
    let options: ParquetOptions

    // The page being filled.
    private var levels: [UInt8] = []
    private var pageValues = 0
    private var plain: [UInt8] = []
    private var bools: [UInt32] = []
    private var indices: [UInt32] = []

    // The chunk's dictionary; `dictionaryMode` ends for the rest of the chunk once it is too big.
    private var dictionaryMode: Bool
    private var dictionary: [[UInt8]: UInt32] = [:]
    private var dictionaryPlain: [UInt8] = []
    private var dictionaryCount = 0
    private var fallBack = false

    // The chunk so far.
    private var pages: [UInt8] = []
    private var pagesUncompressed: Int64 = 0
    private var numValues: Int64 = 0
    private var nullCount: Int64 = 0
    private var usedDictionary = false
    private var usedPlain = false
    private var min: Stat?
    private var max: Stat?
    private var statsTooLong = false

    enum Stat {
        case int(Int64), double(Double), bool(Bool), bytes([UInt8]), wide(Int128)

        static func < (a: Stat, b: Stat) -> Bool {
            switch (a, b) {
            case (.int(let x), .int(let y)): x < y
            case (.double(let x), .double(let y)): x < y
            case (.bool(let x), .bool(let y)): !x && y
            case (.bytes(let x), .bytes(let y)): x.lexicographicallyPrecedes(y)
            case (.wide(let x), .wide(let y)): x < y
            default: false
            }
        }
    }

    init(field: ParquetField, options: ParquetOptions) {
        self.field = field
        self.options = options
        physical = PhysicalType.of(field.type)
        dictionaryMode = physical != .boolean
    }

    /// Bytes held for the current row group (for the row-group size bound).
    var bufferedBytes: Int {
        Int(pagesUncompressed) + plain.count + indices.count * 4 + bools.count / 8 + levels.count + dictionaryPlain.count
    }

    private var pageBytes: Int { plain.count + indices.count * 4 + bools.count / 8 + levels.count / 8 }

    func append(_ value: ParquetValue) throws {
        if case .null = value {
            guard field.nullable else { throw ParquetError("column \(field.name) is required but got a null") }
            levels.append(0)
            nullCount += 1
        } else {
            if field.nullable { levels.append(1) }
            try appendPresent(value)
        }
        pageValues += 1
        numValues += 1
        if fallBack {
            fallBack = false
            try flushPage()
            dictionaryMode = false
        } else if pageValues % 128 == 0, pageBytes >= options.pageBytes {
            try flushPage()
        }
    }

    private func mismatch(_ value: ParquetValue) -> ParquetError {
        ParquetError("column \(field.name) (\(field.type)) cannot hold \(value)")
    }

    private func appendPresent(_ value: ParquetValue) throws {
        let stat: Stat
        var key: [UInt8] = []
        switch (physical, value) {
        case (.boolean, .bool(let b)):
            bools.append(b ? 1 : 0)
            note(.bool(b))
            return
        case (.int32, .date(let d)):
            Encodings.appendLE(d, to: &key)
            stat = .int(Int64(d))
        case (.int32, .decimal(let d)):
            guard let v = Int32(exactly: d) else { throw mismatch(value) }
            Encodings.appendLE(v, to: &key)
            stat = .int(Int64(v))
        case (.int64, .int64(let v)), (.int64, .timestamp(let v)):
            Encodings.appendLE(v, to: &key)
            stat = .int(v)
        case (.int64, .decimal(let d)):
            guard let v = Int64(exactly: d) else { throw mismatch(value) }
            Encodings.appendLE(v, to: &key)
            stat = .int(v)
        case (.double, .float64(let d)):
            Encodings.appendLE(d.bitPattern, to: &key)
            stat = .double(d)
        case (.byteArray, .string(let bytes)):
            key = bytes
            stat = .bytes(bytes)
        case (.fixed(let n), .decimal(let d)):
            // Big-endian two's complement, n bytes.
            for i in stride(from: n - 1, through: 0, by: -1) {
                key.append(UInt8(truncatingIfNeeded: d >> (8 * i)))
            }
            stat = .wide(d)
        default:
            throw mismatch(value)
        }
        if case .double(let d) = stat, d.isNaN {} else { note(stat) }
        if dictionaryMode {
            if let index = dictionary[key] {
                indices.append(index)
            } else {
                let index = UInt32(dictionaryCount)
                dictionary[key] = index
                dictionaryCount += 1
                appendPlain(key, to: &dictionaryPlain)
                indices.append(index)
                // Too many distinct values: this page ends with the dictionary (once the value
                // is counted, in append), then the chunk goes on in PLAIN.
                if dictionaryPlain.count > options.dictionaryLimitBytes { fallBack = true }
            }
        } else {
            appendPlain(key, to: &plain)
        }
    }

    private func appendPlain(_ key: [UInt8], to out: inout [UInt8]) {
        if physical == .byteArray { Encodings.appendLE(UInt32(key.count), to: &out) }
        out += key
    }

    private func note(_ s: Stat) {
        if case .bytes(let b) = s, b.count > 1024 {
            statsTooLong = true
            return
        }
        if min == nil || s < min! { min = s }
        if max == nil || max! < s { max = s }
    }

    private func flushPage() throws {
        guard pageValues > 0 else { return }
        var body: [UInt8] = []
        if field.nullable { Encodings.definitionLevels(levels, to: &body) }
        let encoding: Int32
        if physical == .boolean {
            Encodings.packBits(bools, width: 1, count: bools.count, to: &body)
            encoding = 0
            usedPlain = true
        } else if !indices.isEmpty {
            Encodings.dictionaryIndices(indices, bitWidth: Encodings.bitWidth(UInt32(Swift.max(dictionaryCount, 1) - 1)), to: &body)
            encoding = 8  // RLE_DICTIONARY
            usedDictionary = true
        } else {
            body += plain
            encoding = 0  // PLAIN
            usedPlain = true
        }
        let valueCount = Int32(pageValues)
        let page = try Self.page(type: 0, body: body, options: options) { w in  // DATA_PAGE
            w.structure(5) { w in
                w.i32(1, valueCount)
                w.i32(2, encoding)
                w.i32(3, 3)  // RLE
                w.i32(4, 3)  // RLE
            }
        }
        pages += page.bytes
        pagesUncompressed += page.uncompressed
        levels.removeAll(keepingCapacity: true)
        plain.removeAll(keepingCapacity: true)
        bools.removeAll(keepingCapacity: true)
        indices.removeAll(keepingCapacity: true)
        pageValues = 0
    }

    struct Chunk {
        var bytes: [UInt8]
        var meta: ColumnMeta
    }

    /// Ends the column chunk of this row group; `offset` is where its bytes will start.
    func finishChunk(at offset: Int64) throws -> Chunk {
        try flushPage()
        var bytes: [UInt8] = []
        var uncompressed = pagesUncompressed
        var dictionaryOffset: Int64?
        if usedDictionary {
            let count = Int32(dictionaryCount)
            let page = try Self.page(type: 2, body: dictionaryPlain, options: options) { w in  // DICTIONARY_PAGE
                w.structure(7) { w in
                    w.i32(1, count)
                    w.i32(2, 2)  // PLAIN_DICTIONARY
                }
            }
            bytes = page.bytes
            uncompressed += page.uncompressed
            dictionaryOffset = offset
        }
        let dataOffset = offset + Int64(bytes.count)
        bytes += pages
        var encodings: [Int32] = [3]
        if usedDictionary { encodings += [2, 8] }
        if usedPlain { encodings.append(0) }
        let meta = ColumnMeta(
            type: physical.type, encodings: encodings, path: field.name, codec: Self.codec(options.compression),
            numValues: numValues, totalUncompressed: uncompressed, totalCompressed: Int64(bytes.count),
            dataPageOffset: dataOffset, dictionaryPageOffset: dictionaryOffset, nullCount: nullCount,
            min: statsTooLong ? nil : min.map(plainBytes), max: statsTooLong ? nil : max.map(plainBytes))
        // A new chunk starts with a new dictionary.
        pages = []
        pagesUncompressed = 0
        numValues = 0
        nullCount = 0
        usedDictionary = false
        usedPlain = false
        min = nil
        max = nil
        statsTooLong = false
        dictionary = [:]
        dictionaryPlain = []
        dictionaryCount = 0
        dictionaryMode = physical != .boolean
        return Chunk(bytes: bytes, meta: meta)
    }

    /// A statistic as Parquet stores min_value/max_value: the PLAIN value without a length.
    private func plainBytes(_ s: Stat) -> [UInt8] {
        var out: [UInt8] = []
        switch (s, physical) {
        case (.int(let v), .int32): Encodings.appendLE(Int32(truncatingIfNeeded: v), to: &out)
        case (.int(let v), _): Encodings.appendLE(v, to: &out)
        case (.double(let d), _): Encodings.appendLE(d.bitPattern, to: &out)
        case (.bool(let b), _): out.append(b ? 1 : 0)
        case (.bytes(let b), _): out = b
        case (.wide(let d), .fixed(let n)):
            for i in stride(from: n - 1, through: 0, by: -1) { out.append(UInt8(truncatingIfNeeded: d >> (8 * i))) }
        case (.wide, _): break
        }
        return out
    }

    /// A page: its header (type, sizes, and what `header` adds) and its compressed body.
    static func page(type: Int32, body: [UInt8], options: ParquetOptions, header: (inout CompactWriter) -> Void) throws -> (bytes: [UInt8], uncompressed: Int64) {
        let compressed = try compress(body, options)
        var h = CompactWriter()
        h.beginStruct()
        h.i32(1, type)
        h.i32(2, Int32(body.count))
        h.i32(3, Int32(compressed.count))
        header(&h)
        h.endStruct()
        return (h.bytes + compressed, Int64(h.bytes.count + body.count))
    }

    static func codec(_ c: ParquetCompression) -> Int32 {
        switch c {
        case .none: 0
        case .snappy: 1
        case .zstd: 6
        }
    }

    static func compress(_ body: [UInt8], _ options: ParquetOptions) throws -> [UInt8] {
        switch options.compression {
        case .none:
            return body
        case .zstd:
            let bound = ZSTD_compressBound(body.count)
            var out = [UInt8](repeating: 0, count: bound)
            let n = out.withUnsafeMutableBytes { dst in
                body.withUnsafeBytes { src in ZSTD_compress(dst.baseAddress, bound, src.baseAddress, body.count, options.zstdLevel) }
            }
            if ZSTD_isError(n) != 0 { throw ParquetError("zstd: \(String(cString: ZSTD_getErrorName(n)))") }
            out.removeSubrange(n...)
            return out
        case .snappy:
            var length = snappy_max_compressed_length(body.count)
            var out = [UInt8](repeating: 0, count: length)
            let status = out.withUnsafeMutableBytes { dst in
                body.withUnsafeBytes { src in
                    snappy_compress(src.baseAddress?.assumingMemoryBound(to: CChar.self), body.count,
                                    dst.baseAddress!.assumingMemoryBound(to: CChar.self), &length)
                }
            }
            if status != SNAPPY_OK { throw ParquetError("snappy failed with status \(status)") }
            out.removeSubrange(length...)
            return out
        }
    }
}
