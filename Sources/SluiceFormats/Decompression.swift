import CArchive
import Foundation

/// A compression a delivered file may carry. It is recognised by the file's suffix and by its
/// first bytes; the content decides, and a suffix that names another compression is an error.
public enum Compression: String, Sendable, CaseIterable {
    case gzip, bzip2, xz, zstd

    /// The suffix a file compressed this way ends in.
    public var suffix: String {
        switch self {
        case .gzip: ".gz"
        case .bzip2: ".bz2"
        case .xz: ".xz"
        case .zstd: ".zst"
        }
    }

    /// How many first bytes `sniff` needs.
    public static let magicLength = 6

    /// The compression whose magic bytes `head` starts with.
    public static func sniff(_ head: [UInt8]) -> Compression? {
        func starts(_ magic: [UInt8]) -> Bool { head.count >= magic.count && Array(head.prefix(magic.count)) == magic }
        if starts([0x1F, 0x8B]) { return .gzip }
        if starts([0x42, 0x5A, 0x68]) { return .bzip2 }  // "BZh"
        if starts([0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00]) { return .xz }
        if starts([0x28, 0xB5, 0x2F, 0xFD]) { return .zstd }
        return nil
    }

    /// The compression a file name's last suffix names (ASCII letters in any case).
    public static func named(by name: some Collection<UInt8>) -> Compression? {
        let lower = name.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }
        return allCases.first { lower.count > $0.suffix.utf8.count && lower.suffix($0.suffix.utf8.count).elementsEqual($0.suffix.utf8) }
    }

    /// The name without its compression suffix, or nil when it has none.
    public static func strippingSuffix(_ name: [UInt8]) -> [UInt8]? {
        guard let c = named(by: name) else { return nil }
        return Array(name.dropLast(c.suffix.utf8.count))
    }
}

/// How far a decompression may go before it is taken for a bomb.
public struct UnpackLimits: Sendable, Equatable {
    /// The most bytes one file may unpack to.
    public var maxBytes: Int64
    /// The most times bigger than its compressed bytes a file may unpack to (checked once
    /// more than `ratioFloor` bytes are out, so that small files that shrink well pass).
    public var maxRatio: Int64
    public static let ratioFloor: Int64 = 1 << 20
    /// The most entries one archive may have (`max_archive_members`).
    public var maxMembers: Int
    /// How many archives deep inside a delivered archive are unpacked (`max_archive_depth`).
    public var maxDepth: Int

    public init(maxBytes: Int64 = 64 << 30, maxRatio: Int64 = 1000, maxMembers: Int = 100_000, maxDepth: Int = 1) {
        self.maxBytes = maxBytes
        self.maxRatio = maxRatio
        self.maxMembers = maxMembers
        self.maxDepth = maxDepth
    }

    /// Checks `produced` unpacked bytes from `consumed` packed ones against both limits.
    func check(produced: Int64, consumed: Int64) throws(UnpackError) {
        if produced > maxBytes {
            throw UnpackError("it unpacks to more than max_unpacked_bytes (\(maxBytes) bytes); stopped there, nothing was written")
        }
        let consumed = max(1, consumed)
        if produced > Self.ratioFloor, produced / consumed > maxRatio {
            throw UnpackError("it unpacks to more than max_unpack_ratio (\(maxRatio)) times its size (\(produced) bytes from \(consumed)); "
                + "stopped there, nothing was written")
        }
    }
}

/// Why a decompression stopped.
public struct UnpackError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension Compression {
    /// `source` unpacked as it is read when `compression` is set, else `source` itself.
    public static func unpacking(_ compression: Compression?, limits: UnpackLimits,
                                 source: @escaping ByteSource) throws(UnpackError) -> ByteSource {
        guard let compression else { return source }
        let reader = try DecompressingReader(compression: compression, limits: limits, source: source)
        return { (buffer: UnsafeMutableRawBufferPointer) throws -> Int in try reader.read(buffer) }
    }
}

/// Decompresses a byte source as it is read, through libarchive's filters, in bounded memory:
/// one input block and libarchive's own window. Nothing is written anywhere.
public final class DecompressingReader {
    private let archive: OpaquePointer
    private let context: Unmanaged<LibarchiveInput>
    private let compression: Compression
    private let limits: UnpackLimits
    private var produced: Int64 = 0
    private var finished = false

    /// `source` gives the compressed bytes; `compression` is what the caller found in them.
    public init(compression: Compression, limits: UnpackLimits, blockSize: Int = 1 << 20,
                source: @escaping (UnsafeMutableRawBufferPointer) throws -> Int) throws(UnpackError) {
        guard let a = archive_read_new() else { throw UnpackError("libarchive could not start a reader") }
        archive = a
        self.compression = compression
        self.limits = limits
        context = Unmanaged.passRetained(LibarchiveInput(source: source, blockSize: blockSize))
        let filter: Int32 = switch compression {
        case .gzip: archive_read_support_filter_gzip(a)
        case .bzip2: archive_read_support_filter_bzip2(a)
        case .xz: archive_read_support_filter_xz(a)
        case .zstd: archive_read_support_filter_zstd(a)
        }
        guard filter == ARCHIVE_OK, archive_read_support_format_raw(a) == ARCHIVE_OK else {
            // Every property is set: the deinit frees the reader and the context.
            throw UnpackError("this build's libarchive cannot read \(compression.rawValue) (\(libarchiveMessage(a)))")
        }
        var entry: OpaquePointer?
        guard context.takeUnretainedValue().open(a) == ARCHIVE_OK, archive_read_next_header(a, &entry) == ARCHIVE_OK else {
            if let failure = context.takeUnretainedValue().failure { throw UnpackError("reading the compressed file failed: \(failure)") }
            throw UnpackError("the \(compression.rawValue) data is damaged or cut short: \(libarchiveMessage(a))")
        }
    }

    deinit {
        archive_read_free(archive)
        context.release()
    }

    /// Fills `buffer` with decompressed bytes; 0 at the end of the data.
    public func read(_ buffer: UnsafeMutableRawBufferPointer) throws(UnpackError) -> Int {
        guard !finished, buffer.count > 0 else { return 0 }
        let n = archive_read_data(archive, buffer.baseAddress, buffer.count)
        if n < 0 {
            let ctx = context.takeUnretainedValue()
            if let failure = ctx.failure { throw UnpackError("reading the compressed file failed: \(failure)") }
            throw UnpackError("the \(compression.rawValue) data is damaged or cut short after \(ctx.consumed) bytes: \(libarchiveMessage(archive))")
        }
        if n == 0 {
            finished = true
            return 0
        }
        produced += Int64(n)
        try limits.check(produced: produced, consumed: context.takeUnretainedValue().consumed)
        return n
    }
}

/// libarchive's message for the last error of `a`.
func libarchiveMessage(_ a: OpaquePointer) -> String {
    archive_error_string(a).map { String(cString: $0) } ?? "error \(archive_errno(a))"
}

/// What libarchive's callbacks read from: a byte source, one block of it at a time, and, for a
/// source that can seek (a stored file), how to seek and skip in it.
final class LibarchiveInput {
    let source: ByteSource
    let seek: ((Int64, Int32) -> Int64)?
    let block: UnsafeMutableRawBufferPointer
    /// Packed bytes read (or skipped) so far: the denominator of the unpack ratio.
    var consumed: Int64 = 0
    var failure: (any Error)?

    init(source: @escaping ByteSource, seek: ((Int64, Int32) -> Int64)? = nil, blockSize: Int) {
        self.source = source
        self.seek = seek
        block = .allocate(byteCount: blockSize, alignment: 16)
    }

    deinit { block.deallocate() }

    /// Opens `a` on this input; the caller keeps this object alive as long as `a`.
    func open(_ a: OpaquePointer) -> Int32 {
        let me = Unmanaged.passUnretained(self).toOpaque()
        archive_read_set_callback_data(a, me)
        archive_read_set_read_callback(a) { _, data, buffer -> la_ssize_t in
            let input = Unmanaged<LibarchiveInput>.fromOpaque(data!).takeUnretainedValue()
            do {
                let n = try input.source(input.block)
                input.consumed += Int64(n)
                buffer?.pointee = UnsafeRawPointer(input.block.baseAddress!)
                return n
            } catch {
                input.failure = error
                return -1
            }
        }
        if seek != nil {
            archive_read_set_seek_callback(a) { _, data, offset, whence -> la_int64_t in
                let input = Unmanaged<LibarchiveInput>.fromOpaque(data!).takeUnretainedValue()
                return input.seek!(offset, whence)
            }
            archive_read_set_skip_callback(a) { _, data, request -> la_int64_t in
                let input = Unmanaged<LibarchiveInput>.fromOpaque(data!).takeUnretainedValue()
                guard input.seek!(request, SEEK_CUR) >= 0 else { return 0 }
                input.consumed += request
                return request
            }
        }
        return archive_read_open1(a)
    }
}

/// A byte source whose first bytes can be looked at before it is read: they are kept and
/// given again by the first reads.
public final class PeekableSource {
    private let source: ByteSource
    private var kept: [UInt8] = []
    private var offset = 0

    public init(_ source: @escaping ByteSource) { self.source = source }

    /// A source that gives `prefix` (bytes already read from `source`) first.
    public init(prefix: [UInt8], _ source: @escaping ByteSource) {
        self.source = source
        kept = prefix
    }

    /// The first `count` bytes (fewer when the source is shorter).
    public func head(_ count: Int) throws -> [UInt8] {
        var chunk = [UInt8](repeating: 0, count: count)
        while kept.count < count {
            let n = try chunk.withUnsafeMutableBytes { try source(UnsafeMutableRawBufferPointer(rebasing: $0[0..<(count - kept.count)])) }
            if n == 0 { break }
            kept += chunk[0..<n]
        }
        return Array(kept.prefix(count))
    }

    public var read: ByteSource {
        { [self] (buffer: UnsafeMutableRawBufferPointer) throws -> Int in
            guard offset < kept.count else { return try source(buffer) }
            let n = min(buffer.count, kept.count - offset)
            kept.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[offset..<(offset + n)])) }
            offset += n
            return n
        }
    }
}

/// Reads all of `source`, handing each block to `sink` (a 1 MiB block at a time).
public func pump(_ source: ByteSource, into sink: (UnsafeRawBufferPointer) throws -> Void) throws {
    let block = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
    defer { block.deallocate() }
    while true {
        let n = try source(block)
        if n == 0 { return }
        try sink(UnsafeRawBufferPointer(rebasing: block[0..<n]))
    }
}
