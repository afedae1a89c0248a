/// A growable buffer of plain values in manually managed memory, for the transform's inner
/// loops: appending to it costs no reference counting and no uniqueness check, unlike an
/// `Array` kept in a class. The owner calls `free()` exactly once (in its `deinit`); a copy
/// of the struct shares the memory, so only the owner may mutate or free it.
public struct RawBuffer<Element: BitwiseCopyable> {
    @usableFromInline var _base: UnsafeMutablePointer<Element>
    @inlinable public var base: UnsafeMutablePointer<Element> { _base }
    @usableFromInline var _count = 0
    @inlinable public var count: Int { _count }
    @usableFromInline var _capacity: Int
    @inlinable public var capacity: Int { _capacity }

    @inlinable
    public init(capacity: Int = 64) {
        self._capacity = Swift.max(capacity, 1)
        _base = .allocate(capacity: self._capacity)
    }

    @inlinable
    public func free() { _base.deallocate() }

    @inlinable
    public var isEmpty: Bool { _count == 0 }

    @inlinable
    public var buffer: UnsafeBufferPointer<Element> { UnsafeBufferPointer(start: _base, count: _count) }

    @inlinable @inline(__always)
    public subscript(i: Int) -> Element {
        get { _base[i] }
        nonmutating set { _base[i] = newValue }
    }

    @inlinable
    public mutating func reserve(_ n: Int) {
        guard n > _capacity else { return }
        var c = _capacity
        while c < n { c *= 2 }
        let new = UnsafeMutablePointer<Element>.allocate(capacity: c)
        new.update(from: _base, count: _count)
        _base.deallocate()
        _base = new
        _capacity = c
    }

    @inlinable @inline(__always)
    public mutating func append(_ v: Element) {
        if _count == _capacity { reserve(_count + 1) }
        _base[_count] = v
        _count += 1
    }

    @inlinable @inline(__always)
    public mutating func append(contentsOf v: UnsafeBufferPointer<Element>) {
        guard let from = v.baseAddress, !v.isEmpty else { return }
        if _count + v.count > _capacity { reserve(_count + v.count) }
        (_base + _count).update(from: from, count: v.count)
        _count += v.count
    }

    /// Appends `n` copies of `v`.
    @inlinable
    public mutating func append(repeating v: Element, count n: Int) {
        guard n > 0 else { return }
        if _count + n > _capacity { reserve(_count + n) }
        (_base + _count).initialize(repeating: v, count: n)
        _count += n
    }

    @inlinable
    public mutating func removeAll() { _count = 0 }

    @inlinable
    public mutating func removeLast(_ n: Int) { _count -= n }

    /// The contents as an `Array` (a copy).
    @inlinable
    public var array: [Element] { Array(buffer) }
}

extension RawBuffer where Element == UInt8 {
    /// Appends the low `width` bytes of `bits`, little-endian.
    @inlinable @inline(__always)
    public mutating func appendLittleEndian(_ bits: UInt64, width: Int) {
        if _count + 8 > _capacity { reserve(_count + 8) }
        UnsafeMutableRawPointer(_base + _count).storeBytes(of: bits.littleEndian, as: UInt64.self)
        _count += width
    }

    @inlinable
    public mutating func append(contentsOf bytes: UnsafeRawBufferPointer) {
        append(contentsOf: bytes.assumingMemoryBound(to: UInt8.self))
    }
}
