import SluiceSupport
#if canImport(Glibc)
import Glibc
#endif

/// A column chunk's dictionary for fixed-width values (int32, int64, double as bit patterns):
/// an open-addressing hash table from value to dictionary index, each slot holding the value
/// beside its index so that a probe costs one cache miss. A run of equal values (a constant
/// lineage column, say) is answered from the last lookup without hashing.
struct FixedDictionary {
    struct Entry {
        var key: UInt64 = 0
        /// Dictionary index + 1; 0 = empty.
        var index: UInt32 = 0
    }

    /// `capacity` entries, a power of two; the owner calls `free()`. It starts small: a file
    /// has a dictionary per column, and many files (an archive's members) are small.
    private var table: UnsafeMutablePointer<Entry>
    private var capacity = 64
    private(set) var count = 0
    private var lastKey: UInt64 = 0
    private var lastIndex = UInt32.max
    private let seed = hashSeed

    init() {
        table = .allocate(capacity: capacity)
        table.initialize(repeating: Entry(), count: capacity)
    }

    func free() { table.deallocate() }

    @inline(__always)
    private func slot(_ key: UInt64, mask: Int) -> Int {
        Int(truncatingIfNeeded: mix(key ^ seed)) & mask
    }

    /// The value's index, and whether it was added.
    @inline(__always)
    mutating func index(of key: UInt64) -> (UInt32, inserted: Bool) {
        if lastIndex != .max && key == lastKey { return (lastIndex, false) }
        let mask = capacity - 1
        var slot = slot(key, mask: mask)
        lastKey = key
        while true {
            let e = table[slot]
            if e.index == 0 { break }
            if e.key == key {
                lastIndex = e.index - 1
                return (lastIndex, false)
            }
            slot = (slot + 1) & mask
        }
        let index = UInt32(count)
        table[slot] = Entry(key: key, index: index + 1)
        count += 1
        if count * 2 > capacity { grow() }
        lastIndex = index
        return (index, true)
    }

    private mutating func grow() {
        let old = table
        let oldCapacity = capacity
        capacity *= 2
        table = .allocate(capacity: capacity)
        table.initialize(repeating: Entry(), count: capacity)
        let mask = capacity - 1
        for i in 0..<oldCapacity where old[i].index != 0 {
            var slot = slot(old[i].key, mask: mask)
            while table[slot].index != 0 { slot = (slot + 1) & mask }
            table[slot] = old[i]
        }
        old.deallocate()
    }
}

/// A column chunk's dictionary for byte arrays (strings, wide decimals). The values themselves
/// live in the dictionary page's PLAIN bytes, which this table appends to as values are added.
struct BytesDictionary {
    private var starts: [Int] = []
    private var lengths: [Int] = []
    private var hashes: [UInt64] = []
    /// Dictionary index + 1; 0 = empty. Starts small, as `FixedDictionary` does.
    private var table = [UInt32](repeating: 0, count: 64)
    private var last = UInt32.max
    private let seed = hashSeed

    /// The value's index; a new value gets index `count` and is appended to `plain` (with a
    /// 4-byte length first when `lengthPrefix`, as PLAIN byte arrays are stored).
    mutating func index(of value: UnsafeBufferPointer<UInt8>, in plain: inout RawBuffer<UInt8>, lengthPrefix: Bool) -> UInt32 {
        if last != .max && equal(Int(last), value, plain) { return last }
        let h = Self.hash(value, seed: seed)
        let mask = table.count - 1
        var slot = Int(truncatingIfNeeded: h) & mask
        while true {
            let entry = table[slot]
            if entry == 0 { break }
            let i = Int(entry - 1)
            if hashes[i] == h && equal(i, value, plain) {
                last = entry - 1
                return last
            }
            slot = (slot + 1) & mask
        }
        let index = UInt32(starts.count)
        if lengthPrefix {
            plain.appendLittleEndian(UInt64(value.count), width: 4)
        }
        starts.append(plain.count)
        lengths.append(value.count)
        hashes.append(h)
        plain.append(contentsOf: value)
        table[slot] = index + 1
        if starts.count * 2 > table.count { grow() }
        last = index
        return index
    }

    /// The last value's index when `value` equals it.
    @inline(__always)
    func repeatOfLast(_ value: UnsafeBufferPointer<UInt8>, in plain: RawBuffer<UInt8>) -> UInt32? {
        last != .max && equal(Int(last), value, plain) ? last : nil
    }

    @inline(__always)
    private func equal(_ i: Int, _ value: UnsafeBufferPointer<UInt8>, _ plain: RawBuffer<UInt8>) -> Bool {
        guard lengths[i] == value.count else { return false }
        if value.isEmpty { return true }
        return memcmp(plain.base + starts[i], value.baseAddress!, value.count) == 0
    }

    private mutating func grow() {
        table = [UInt32](repeating: 0, count: table.count * 2)
        let mask = table.count - 1
        for (i, h) in hashes.enumerated() {
            var slot = Int(truncatingIfNeeded: h) & mask
            while table[slot] != 0 { slot = (slot + 1) & mask }
            table[slot] = UInt32(i + 1)
        }
    }

    /// A fast 64-bit hash, 8 bytes at a time, seeded per process.
    @inline(__always)
    static func hash(_ value: UnsafeBufferPointer<UInt8>, seed: UInt64) -> UInt64 {
        var h = seed ^ (UInt64(value.count) &* 0x9E37_79B9_7F4A_7C15)
        guard let base = value.baseAddress else { return h }
        let raw = UnsafeRawPointer(base)
        var i = 0
        while i + 8 <= value.count {
            h = (h ^ raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* 0xFF51_AFD7_ED55_8CCD
            h ^= h >> 32
            i += 8
        }
        var tail: UInt64 = 0
        var shift: UInt64 = 0
        while i < value.count {
            tail |= UInt64(base[i]) << shift
            shift += 8
            i += 1
        }
        return mix(h ^ tail)
    }
}

/// MurmurHash3's 64-bit finalizer: every output bit depends on every input bit, so the low
/// bits that pick a slot are as good as the high ones (whole-number doubles, which differ only
/// in their high bits, spread out).
@inline(__always)
func mix(_ x: UInt64) -> UInt64 {
    var h = x
    h ^= h >> 33
    h = h &* 0xFF51_AFD7_ED55_8CCD
    h ^= h >> 33
    h = h &* 0xC4CE_B9FE_1A85_EC53
    return h ^ (h >> 33)
}

/// Seeds the dictionary hashes per process, so that a crafted client file cannot line its
/// values up into one long probe chain.
let hashSeed = UInt64.random(in: 0...UInt64.max)
