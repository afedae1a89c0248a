import SluiceSupport

/// A batch of rows, filled one row at a time, column by column, and reused from batch to batch,
/// so that appending rows allocates nothing: numbers sit in fixed slots and strings in one
/// byte arena. Set every column of the current row (a value or `setNull`; or `clear()` it
/// first, which nulls them all: a new row's slots still hold what an earlier batch left), then
/// `commit()` it, or `clear()` it to drop it. `ParquetWriter.append(_:)` writes the committed
/// rows, and `reset()` empties the batch. Columns the writer holds constant need not be set.
///
/// The setter must suit the column's type (`int64` for int64 columns, `decimal` for decimal
/// columns, and so on); the writer checks what it cannot trust.
public final class ParquetRow: @unchecked Sendable {  // a batch is filled by one thread, then handed whole to the encoding thread
    /// One column of one row, as the writer reads it.
    struct Slot {
        var present: Bool
        /// int64, timestamp, date (sign-extended), bool (0/1), a double's bit pattern, a
        /// decimal's low 64 bits, or a string's start in `arena`.
        var bits: UInt64
        /// A decimal's high 64 bits, or a string's length.
        var high: Int64

        /// A decimal's unscaled value.
        var wide: Int128 { Int128(high) << 64 | Int128(bits) }
        var start: Int { Int(truncatingIfNeeded: bits) }
        var count: Int { Int(high) }
    }

    public let columnCount: Int
    /// How many rows the batch holds.
    public let capacity: Int
    // Slots are stored as three arrays (a structure of arrays), column by column
    // (`column * capacity + row`), so that the writer, which encodes a batch a column at a
    // time, reads them in order, and a number column costs 9 bytes a row, not a whole slot.
    @usableFromInline let present: UnsafeMutablePointer<Bool>
    @usableFromInline let bits: UnsafeMutablePointer<UInt64>
    @usableFromInline let high: UnsafeMutablePointer<Int64>
    @usableFromInline var arena = RawBuffer<UInt8>(capacity: 4096)
    /// Committed rows.
    public private(set) var count = 0
    /// The current row's index.
    @usableFromInline var base = 0

    public init(columns: Int, capacity: Int = 1) {
        columnCount = columns
        self.capacity = Swift.max(capacity, 1)
        let n = columns * self.capacity
        present = .allocate(capacity: n)
        present.initialize(repeating: false, count: n)
        bits = .allocate(capacity: n)
        bits.initialize(repeating: 0, count: n)
        high = .allocate(capacity: n)
        high.initialize(repeating: 0, count: n)
    }

    deinit {
        present.deallocate()
        bits.deallocate()
        high.deallocate()
        arena.free()
    }

    public var isFull: Bool { count == capacity }

    /// Where the committed rows' strings end in the arena.
    @usableFromInline var committedBytes = 0

    /// The current row's columns back to null, and its strings dropped.
    @inlinable
    public func clear() {
        for c in 0..<columnCount { present[c &* capacity &+ base] = false }
        arena.removeLast(arena.count - committedBytes)
    }

    /// Keeps the current row and starts the next one (not cleared: see the type's note).
    public func commit() {
        precondition(count < capacity, "ParquetRow batch is full")
        count += 1
        base = count
        committedBytes = arena.count
    }

    /// Empties the batch.
    public func reset() {
        count = 0
        base = 0
        committedBytes = 0
        arena.removeAll()
        clear()
    }

    /// Slot of committed row `row`, column `column`.
    @inline(__always)
    func slot(_ row: Int, _ column: Int) -> Slot {
        let i = column &* capacity &+ row
        return Slot(present: present[i], bits: bits[i], high: high[i])
    }

    /// Whether committed row `row` has a value in `column`.
    @inline(__always)
    func isPresent(_ row: Int, _ column: Int) -> Bool { present[column &* capacity &+ row] }

    /// The number bits of committed row `row`, `column` (see `Slot.bits`).
    @inline(__always)
    func bits(_ row: Int, _ column: Int) -> UInt64 { bits[column &* capacity &+ row] }

    /// The high half of committed row `row`, `column` (see `Slot.high`).
    @inline(__always)
    func high(_ row: Int, _ column: Int) -> Int64 { high[column &* capacity &+ row] }

    @inlinable
    public func setNull(_ column: Int) { present[column &* capacity &+ base] = false }

    @inlinable @inline(__always)
    func setBits(_ column: Int, _ value: UInt64) {
        let i = column &* capacity &+ base
        present[i] = true
        bits[i] = value
    }

    @inlinable public func set(_ column: Int, int64 v: Int64) { setBits(column, UInt64(bitPattern: v)) }
    @inlinable public func set(_ column: Int, timestamp v: Int64) { setBits(column, UInt64(bitPattern: v)) }
    @inlinable public func set(_ column: Int, date v: Int32) { setBits(column, UInt64(bitPattern: Int64(v))) }
    @inlinable public func set(_ column: Int, float64 v: Double) { setBits(column, v.bitPattern) }
    @inlinable public func set(_ column: Int, bool v: Bool) { setBits(column, v ? 1 : 0) }

    @inlinable
    public func set(_ column: Int, decimal v: Int128) {
        let i = column &* capacity &+ base
        present[i] = true
        bits[i] = UInt64(truncatingIfNeeded: v)
        high[i] = Int64(truncatingIfNeeded: v >> 64)
    }

    @inlinable
    public func set(_ column: Int, bytes: UnsafeBufferPointer<UInt8>) {
        let i = column &* capacity &+ base
        present[i] = true
        bits[i] = UInt64(arena.count)
        high[i] = Int64(bytes.count)
        arena.append(contentsOf: bytes)
    }

    public func set(_ column: Int, string: String) {
        var s = string
        s.withUTF8 { set(column, bytes: $0) }
    }

    /// A string column's bytes (valid until the row changes).
    func bytes(_ slot: Slot) -> UnsafeBufferPointer<UInt8> {
        UnsafeBufferPointer(start: arena.base + slot.start, count: slot.count)
    }

    /// Sets a column from a `ParquetValue`.
    public func set(_ column: Int, _ value: ParquetValue) {
        switch value {
        case .null: setNull(column)
        case .string(let b): b.withUnsafeBufferPointer { set(column, bytes: $0) }
        case .int64(let v): set(column, int64: v)
        case .float64(let v): set(column, float64: v)
        case .bool(let v): set(column, bool: v)
        case .date(let v): set(column, date: v)
        case .timestamp(let v): set(column, timestamp: v)
        case .decimal(let v): set(column, decimal: v)
        }
    }

    /// A column's value of the current row back as a `ParquetValue` (for JSON Lines output).
    public func value(_ column: Int, type: ParquetColumnType) -> ParquetValue {
        let slot = slot(base, column)
        guard slot.present else { return .null }
        switch type {
        case .string: return .string(Array(bytes(slot)))
        case .int64: return .int64(Int64(bitPattern: slot.bits))
        case .float64: return .float64(Double(bitPattern: slot.bits))
        case .bool: return .bool(slot.bits != 0)
        case .date: return .date(Int32(truncatingIfNeeded: Int64(bitPattern: slot.bits)))
        case .timestampMicros: return .timestamp(Int64(bitPattern: slot.bits))
        case .decimal: return .decimal(slot.wide)
        }
    }
}
