import CCompression
import SluiceSupport

/// A column's logical type, as the transform stage knows it.
public enum ParquetColumnType: Sendable, Equatable {
    case string
    case int64
    case float64
    case bool
    /// Days since 1970-01-01.
    case date
    /// Microseconds since 1970-01-01T00:00:00Z (stored with isAdjustedToUTC = true).
    case timestampMicros
    /// Unscaled integer; INT32 up to precision 9, INT64 up to 18, FIXED_LEN_BYTE_ARRAY above.
    case decimal(precision: Int, scale: Int)
}

public struct ParquetField: Sendable {
    public var name: String
    public var type: ParquetColumnType
    public var nullable: Bool
    public init(name: String, type: ParquetColumnType, nullable: Bool = true) {
        self.name = name
        self.type = type
        self.nullable = nullable
    }
}

/// One value of a row. The case must fit the column's type.
public enum ParquetValue: Sendable, Equatable {
    case null
    case string([UInt8])
    case int64(Int64)
    case float64(Double)
    case bool(Bool)
    case date(Int32)
    case timestamp(Int64)
    case decimal(Int128)
}

public enum ParquetCompression: String, Sendable, CaseIterable {
    case zstd, snappy, none
}

public struct ParquetOptions: Sendable {
    public var compression: ParquetCompression = .zstd
    public var zstdLevel: Int32 = 3
    /// A row group is closed once its columns hold about this many bytes (uncompressed), or
    /// this many rows (pyarrow's default): whichever comes first. Closed row groups are
    /// written out, so the file is written (and its writeback started) as it goes.
    public var rowGroupBytes = 128 << 20
    public var rowGroupRows: Int64 = 1 << 20
    /// A data page is closed at about this many bytes (uncompressed).
    public var pageBytes = 1 << 20
    /// A column's dictionary may grow to this many bytes; beyond it the column chunk falls
    /// back to PLAIN for the rest of its pages.
    public var dictionaryLimitBytes = 1 << 20
    /// Compresses data pages on a thread of its own, while the next ones are encoded (the
    /// file's bytes are the same either way).
    public var backgroundCompression = true
    public var createdBy = "sluice"
    public var metadata: [(String, String)] = []
    public init() {}
}

public struct ParquetError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ d: String) { description = d }
}

/// Writes one Parquet file, row by row, to a sink (the caller makes it atomic: temp file,
/// fsync, rename). Memory is bounded by one row group's encoded, compressed pages.
public final class ParquetWriter {
    public let fields: [ParquetField]
    let options: ParquetOptions
    private let sink: (UnsafeRawBufferPointer) throws -> Void
    private var columns: [ColumnChunkWriter]
    private let compressor: PageCompressor
    /// The same writers, for the per-value path: `columns` keeps them alive, so calls through
    /// these need no retain and release per value.
    private var unretained: [Unmanaged<ColumnChunkWriter>] = []
    private var offset: Int64 = 0
    private var rowGroups: [RowGroupMeta] = []
    private var rowsInGroup: Int64 = 0
    public private(set) var rowCount: Int64 = 0
    private var finished = false

    public init(fields: [ParquetField], options: ParquetOptions = ParquetOptions(), sink: @escaping (UnsafeRawBufferPointer) throws -> Void) throws {
        guard !fields.isEmpty else { throw ParquetError("a Parquet file needs at least one column") }
        self.fields = fields
        self.options = options
        self.sink = sink
        let compressor = PageCompressor(options: options)
        self.compressor = compressor
        columns = fields.map { ColumnChunkWriter(field: $0, options: options, compressor: compressor) }
        isConstant = Array(repeating: false, count: fields.count)
        unretained = columns.map { Unmanaged.passUnretained($0) }
        try emit(Array("PAR1".utf8))
    }

    private func emit(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try sink($0) }
        offset += Int64(bytes.count)
    }

    private var scratch: ParquetRow?

    /// Appends one row; `values` follows `fields`, and each case must suit its column's type.
    public func append(_ values: [ParquetValue]) throws {
        guard values.count == columns.count else {
            throw ParquetError("row has \(values.count) values for \(columns.count) columns")
        }
        let row = scratch ?? ParquetRow(columns: columns.count)
        scratch = row
        row.reset()
        for (i, v) in values.enumerated() {
            guard Self.fits(v, fields[i].type) else { throw ParquetError("column \(fields[i].name) (\(fields[i].type)) cannot hold \(v)") }
            row.set(i, v)
        }
        row.commit()
        try append(row)
    }

    static func fits(_ v: ParquetValue, _ t: ParquetColumnType) -> Bool {
        switch (v, t) {
        case (.null, _), (.string, .string), (.int64, .int64), (.float64, .float64), (.bool, .bool), (.date, .date),
             (.timestamp, .timestampMicros), (.decimal, .decimal): true
        default: false
        }
    }

    /// Values that every row has (a transform's lineage columns): `append` writes them for
    /// each row itself, whatever the row holds in that column, so producers need not set them.
    private var constants: ParquetRow?
    /// `constants`, kept alive by it, for the per-value path; and which columns are constant.
    private var constantsRef: Unmanaged<ParquetRow>?
    private var isConstant: [Bool] = []

    /// Makes `column` hold `value` in every row appended from now on.
    public func setConstant(_ column: Int, _ value: ParquetValue) throws {
        guard column < fields.count, value == .null ? fields[column].nullable : Self.fits(value, fields[column].type) else {
            throw ParquetError("column \(column) cannot hold the constant \(value)")
        }
        let c = constants ?? ParquetRow(columns: fields.count)
        c.set(column, value)
        constants = c
        constantsRef = Unmanaged.passUnretained(c)
        if isConstant.isEmpty { isConstant = Array(repeating: false, count: fields.count) }
        isConstant[column] = true
    }

    /// Appends a batch's committed rows; the batch's setters must have suited the columns' types.
    public func append(_ rows: ParquetRow) throws {
        guard rows.columnCount == columns.count else {
            throw ParquetError("row has \(rows.columnCount) values for \(columns.count) columns")
        }
        let constantRow = constantsRef ?? Unmanaged.passUnretained(rows)
        let count = rows.count
        // Column by column: each column writer's state stays in cache for the whole batch.
        try unretained.withUnsafeBufferPointer { columns in
            try isConstant.withUnsafeBufferPointer { isConstant in
                for i in columns.indices {
                    try columns[i]._withUnsafeGuaranteedRef { c in
                        if isConstant[i] {
                            try constantRow._withUnsafeGuaranteedRef { k in
                                try c.appendRepeated(k.slot(0, i), row: k, times: count)
                            }
                        } else {
                            try c.appendColumn(of: rows, column: i)
                        }
                    }
                }
            }
        }
        rowsInGroup += Int64(count)
        rowCount += Int64(count)
        // The row group is closed between batches, once its columns hold the bound.
        if rowsInGroup >= options.rowGroupRows || columns.reduce(0, { $0 + $1.bufferedBytes }) >= options.rowGroupBytes {
            try flushRowGroup()
        }
    }

    private func flushRowGroup() throws {
        guard rowsInGroup > 0 else { return }
        let start = offset
        var metas: [ColumnMeta] = []
        var uncompressed: Int64 = 0
        for i in columns.indices {
            let chunk = try columns[i].finishChunk(at: offset)
            try emit(chunk.bytes)
            metas.append(chunk.meta)
            uncompressed += chunk.meta.totalUncompressed
        }
        rowGroups.append(RowGroupMeta(columns: metas, totalByteSize: uncompressed, numRows: rowsInGroup, fileOffset: start,
                                      totalCompressed: offset - start))
        rowsInGroup = 0
    }

    /// Writes the last row group and the footer. Returns the file's size.
    @discardableResult
    public func finish() throws -> Int64 {
        guard !finished else { return offset }
        finished = true
        defer { compressor.close() }
        try flushRowGroup()
        var w = CompactWriter()
        w.beginStruct()
        w.i32(1, 2)
        // Schema: a root group, then one leaf per column.
        w.structList(2, [nil] + fields.map { Optional($0) }) { w, field in
            guard let field else {
                w.string(4, "schema")
                w.i32(5, Int32(self.fields.count))
                return
            }
            Self.schemaElement(field, into: &w)
        }
        w.i64(3, rowCount)
        w.structList(4, rowGroups) { w, g in g.write(into: &w) }
        let kv = options.metadata
        if !kv.isEmpty {
            w.structList(5, kv) { w, pair in
                w.string(1, pair.0)
                w.string(2, pair.1)
            }
        }
        w.string(6, options.createdBy)
        // Column orders: every column uses its type's defined order, so readers trust min/max.
        w.structList(7, fields) { w, _ in w.structure(1) { _ in } }
        w.endStruct()
        let footer = w.bytes
        try emit(footer)
        var tail: [UInt8] = []
        Encodings.appendLE(UInt32(footer.count), to: &tail)
        tail += Array("PAR1".utf8)
        try emit(tail)
        return offset
    }

    static func schemaElement(_ f: ParquetField, into w: inout CompactWriter) {
        let p = PhysicalType.of(f.type)
        w.i32(1, p.type.rawValue)
        if case .fixed(let length) = p { w.i32(2, Int32(length)) }
        w.i32(3, f.nullable ? 1 : 0)
        w.string(4, f.name)
        switch f.type {
        case .string:
            w.i32(6, 0)  // UTF8
            w.structure(10) { w in w.structure(1) { _ in } }
        case .date:
            w.i32(6, 6)  // DATE
            w.structure(10) { w in w.structure(6) { _ in } }
        case .timestampMicros:
            w.i32(6, 10)  // TIMESTAMP_MICROS
            w.structure(10) { w in
                w.structure(8) { w in
                    w.bool(1, true)
                    w.structure(2) { w in w.structure(2) { _ in } }
                }
            }
        case .decimal(let precision, let scale):
            w.i32(6, 5)  // DECIMAL
            w.i32(7, Int32(scale))
            w.i32(8, Int32(precision))
            w.structure(10) { w in
                w.structure(5) { w in
                    w.i32(1, Int32(scale))
                    w.i32(2, Int32(precision))
                }
            }
        case .int64, .float64, .bool:
            break
        }
    }
}

/// How a logical type is stored.
enum PhysicalType: Equatable {
    case boolean, int32, int64, double, byteArray
    case fixed(Int)

    enum Code: Int32 { case boolean = 0, int32 = 1, int64 = 2, double = 5, byteArray = 6, fixed = 7 }

    var type: Code {
        switch self {
        case .boolean: .boolean
        case .int32: .int32
        case .int64: .int64
        case .double: .double
        case .byteArray: .byteArray
        case .fixed: .fixed
        }
    }

    static func of(_ t: ParquetColumnType) -> PhysicalType {
        switch t {
        case .string: .byteArray
        case .int64, .timestampMicros: .int64
        case .float64: .double
        case .bool: .boolean
        case .date: .int32
        case .decimal(let p, _): p <= 9 ? .int32 : p <= 18 ? .int64 : .fixed(decimalBytes(p))
        }
    }

    /// The fewest bytes whose signed range holds every unscaled value of `precision` digits.
    static func decimalBytes(_ precision: Int) -> Int {
        var n = 1
        while true {
            // Largest magnitude that fits in n signed bytes: 2^(8n-1) - 1 >= 10^p - 1.
            let bits = Double(8 * n - 1)
            if bits * 0.30102999566398120 >= Double(precision) { return n }
            n += 1
        }
    }
}

struct ColumnMeta {
    var type: PhysicalType.Code
    var encodings: [Int32]
    var path: String
    var codec: Int32
    var numValues: Int64
    var totalUncompressed: Int64
    var totalCompressed: Int64
    var dataPageOffset: Int64
    var dictionaryPageOffset: Int64?
    var nullCount: Int64
    var min: [UInt8]?
    var max: [UInt8]?
}

struct RowGroupMeta {
    var columns: [ColumnMeta]
    var totalByteSize: Int64
    var numRows: Int64
    var fileOffset: Int64
    var totalCompressed: Int64

    func write(into w: inout CompactWriter) {
        w.structList(1, columns) { w, c in
            w.i64(2, c.dictionaryPageOffset ?? c.dataPageOffset)
            w.structure(3) { w in
                w.i32(1, c.type.rawValue)
                w.i32List(2, c.encodings)
                w.stringList(3, [c.path])
                w.i32(4, c.codec)
                w.i64(5, c.numValues)
                w.i64(6, c.totalUncompressed)
                w.i64(7, c.totalCompressed)
                w.i64(9, c.dataPageOffset)
                if let d = c.dictionaryPageOffset { w.i64(11, d) }
                w.structure(12) { w in
                    w.i64(3, c.nullCount)
                    if let max = c.max, let min = c.min {
                        w.binary(5, max)
                        w.binary(6, min)
                    }
                }
            }
        }
        w.i64(2, totalByteSize)
        w.i64(3, numRows)
        w.i64(5, fileOffset)
        w.i64(6, totalCompressed)
    }
}
