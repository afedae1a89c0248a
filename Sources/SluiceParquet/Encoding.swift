import SluiceSupport
/// Parquet's value and level encodings (Apache Parquet `Encodings.md`).
enum Encodings {
    /// Appends `v` as a ULEB128 varint.
    static func varint(_ v: UInt64, to out: inout [UInt8]) {
        var v = v
        while v >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }

    /// Bits needed for values up to `max` (at least 1).
    static func bitWidth(_ max: UInt32) -> Int {
        max == 0 ? 1 : 32 - max.leadingZeroBitCount
    }

    /// Definition levels (0 = null, 1 = present) as RLE runs of the RLE/bit-packed hybrid,
    /// bit width 1, preceded by their byte length (data page v1).
    static func definitionLevels(_ levels: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) {
        var body: [UInt8] = []
        var i = 0
        while i < levels.count {
            let value = levels[i]
            var j = i + 1
            while j < levels.count && levels[j] == value { j += 1 }
            varint(UInt64(j - i) << 1, to: &body)
            body.append(value)
            i = j
        }
        appendLE(UInt32(body.count), to: &out)
        out += body
    }

    /// Dictionary indices: one byte of bit width, then one run of the hybrid encoding: an RLE
    /// run when every index is the same, else a bit-packed run (values LSB first, padded to a
    /// multiple of 8 values).
    static func dictionaryIndices(_ indices: UnsafeBufferPointer<UInt32>, bitWidth: Int, to out: inout [UInt8]) {
        out.append(UInt8(bitWidth))
        if let first = indices.first, !indices.contains(where: { $0 != first }) {
            // One value throughout (a constant column): a single RLE run, the count and
            // then the value in ⌈width / 8⌉ bytes.
            varint(UInt64(indices.count) << 1, to: &out)
            for k in 0..<(bitWidth + 7) / 8 { out.append(UInt8(truncatingIfNeeded: first >> UInt32(8 * k))) }
            return
        }
        let groups = (indices.count + 7) / 8
        varint(UInt64(groups) << 1 | 1, to: &out)
        packBits(indices, width: bitWidth, count: groups * 8, to: &out)
    }

    /// Packs `count` values (missing ones as 0) of `width` (≤ 32) bits, least significant bit first.
    static func packBits(_ values: UnsafeBufferPointer<UInt32>, width: Int, count: Int, to out: inout [UInt8]) {
        let bytes = (count * width + 7) / 8
        out.reserveCapacity(out.count + bytes)
        let start = out.count
        var acc: UInt64 = 0
        var bits = 0
        for v in values {
            acc |= UInt64(v) << UInt64(bits)
            bits += width
            while bits >= 8 {
                out.append(UInt8(truncatingIfNeeded: acc))
                acc >>= 8
                bits -= 8
            }
        }
        if bits > 0 { out.append(UInt8(truncatingIfNeeded: acc)) }
        while out.count < start + bytes { out.append(0) }
    }

    static func appendLE<T: FixedWidthInteger>(_ v: T, to out: inout [UInt8]) {
        withUnsafeBytes(of: v.littleEndian) { out += $0 }
    }
}
