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

    public init(maxBytes: Int64 = 64 << 30, maxRatio: Int64 = 1000) {
        self.maxBytes = maxBytes
        self.maxRatio = maxRatio
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
    private let context: Unmanaged<Context>
    private let compression: Compression
    private let limits: UnpackLimits
    private var produced: Int64 = 0
    private var finished = false

    /// What libarchive's read callback needs: the source, its block and what it has taken.
    private final class Context {
        let source: (UnsafeMutableRawBufferPointer) throws -> Int
        let block: UnsafeMutableRawBufferPointer
        var consumed: Int64 = 0
        var failure: (any Error)?

        init(source: @escaping (UnsafeMutableRawBufferPointer) throws -> Int, blockSize: Int) {
            self.source = source
            block = .allocate(byteCount: blockSize, alignment: 16)
        }

        deinit { block.deallocate() }
    }

    /// `source` gives the compressed bytes; `compression` is what the caller found in them.
    public init(compression: Compression, limits: UnpackLimits, blockSize: Int = 1 << 20,
                source: @escaping (UnsafeMutableRawBufferPointer) throws -> Int) throws(UnpackError) {
        guard let a = archive_read_new() else { throw UnpackError("libarchive could not start a reader") }
        archive = a
        self.compression = compression
        self.limits = limits
        context = Unmanaged.passRetained(Context(source: source, blockSize: blockSize))
        let filter: Int32 = switch compression {
        case .gzip: archive_read_support_filter_gzip(a)
        case .bzip2: archive_read_support_filter_bzip2(a)
        case .xz: archive_read_support_filter_xz(a)
        case .zstd: archive_read_support_filter_zstd(a)
        }
        guard filter == ARCHIVE_OK, archive_read_support_format_raw(a) == ARCHIVE_OK else {
            // Every property is set: the deinit frees the reader and the context.
            throw UnpackError("this build's libarchive cannot read \(compression.rawValue) (\(Self.message(a)))")
        }
        var entry: OpaquePointer?
        guard archive_read_open(a, context.toOpaque(), nil, { _, data, buffer -> la_ssize_t in
            let ctx = Unmanaged<Context>.fromOpaque(data!).takeUnretainedValue()
            do {
                let n = try ctx.source(ctx.block)
                ctx.consumed += Int64(n)
                buffer?.pointee = UnsafeRawPointer(ctx.block.baseAddress!)
                return n
            } catch {
                ctx.failure = error
                return -1
            }
        }, nil) == ARCHIVE_OK,
              archive_read_next_header(a, &entry) == ARCHIVE_OK else {
            if let failure = context.takeUnretainedValue().failure { throw UnpackError("reading the compressed file failed: \(failure)") }
            throw UnpackError("the \(compression.rawValue) data is damaged or cut short: \(Self.message(a))")
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
            throw UnpackError("the \(compression.rawValue) data is damaged or cut short after \(ctx.consumed) bytes: \(Self.message(archive))")
        }
        if n == 0 {
            finished = true
            return 0
        }
        produced += Int64(n)
        if produced > limits.maxBytes {
            throw UnpackError("it unpacks to more than max_unpacked_bytes (\(limits.maxBytes) bytes); stopped there, nothing was written")
        }
        let consumed = max(1, context.takeUnretainedValue().consumed)
        if produced > UnpackLimits.ratioFloor, produced / consumed > limits.maxRatio {
            throw UnpackError("it unpacks to more than max_unpack_ratio (\(limits.maxRatio)) times its size (\(produced) bytes from \(consumed)); "
                + "stopped there, nothing was written")
        }
        return n
    }

    private static func message(_ a: OpaquePointer) -> String {
        archive_error_string(a).map { String(cString: $0) } ?? "error \(archive_errno(a))"
    }
}
