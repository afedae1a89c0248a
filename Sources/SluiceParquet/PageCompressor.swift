import CCompression
import SluiceSupport

/// Compresses pages, each with its page header: data pages on a thread of its own while the
/// writer encodes the next ones (compression is most of a writer's work), the dictionary pages
/// at once. Results come back in the order the column asks for them, so the file's bytes are
/// the same as if every page had been compressed in place.
///
/// At most `maxQueued` page bodies wait for the thread (the writer waits beyond that), so the
/// memory it adds is bounded by a few pages. With no compression, or `backgroundCompression`
/// off, every page is compressed on the caller's thread.
final class PageCompressor: @unchecked Sendable {  // state guarded by `condition`: the writer waits on it
    enum Kind {
        case data(values: Int32, encoding: Int32)
        case dictionary(values: Int32)
    }

    /// A page as it goes into the file: header and (compressed) body.
    struct Page {
        var bytes: [UInt8]
        /// The page's size before compression, header included (for the chunk's metadata).
        var uncompressed: Int64
    }

    /// A page handed to the thread; its page (or error) is set by the thread, and read once
    /// `result(of:)` has waited for it.
    final class Ticket: @unchecked Sendable {  // set by the compressing thread, read after result(of:) has waited for it
        fileprivate var page: Page?
        fileprivate var error: ParquetError?
        fileprivate let kind: Kind
        fileprivate var body: [UInt8]
        fileprivate var number = 0
        fileprivate init(kind: Kind, body: [UInt8]) {
            self.kind = kind
            self.body = body
        }
    }

    static let maxQueued = 4

    private let inline: PageCodec
    private let worker: SerialWorker<Ticket>?

    init(options: ParquetOptions) {
        inline = PageCodec(options: options)
        if options.backgroundCompression && options.compression != .none {
            let codec = PageCodec(options: options)
            worker = SerialWorker(name: "parquet-compress", capacity: Self.maxQueued) { ticket in
                do {
                    ticket.page = try codec.page(ticket.kind, body: ticket.body)
                } catch {
                    ticket.error = error as? ParquetError ?? ParquetError("\(error)")
                }
                ticket.body = []
            }
        } else {
            worker = nil
        }
    }

    /// A writer dropped without `finish` (a failed transform) drops this, which ends the thread.
    deinit { close() }

    /// Queues a page for the thread (or compresses it now, without one).
    func submit(_ kind: Kind, body: [UInt8]) throws -> Ticket {
        let ticket = Ticket(kind: kind, body: body)
        guard let worker else {
            ticket.page = try inline.page(kind, body: body)
            ticket.body = []
            return ticket
        }
        ticket.number = worker.submit(ticket)
        return ticket
    }

    /// Compresses a page on the caller's thread.
    func compressNow(_ kind: Kind, body: [UInt8]) throws -> Page {
        try inline.page(kind, body: body)
    }

    /// Waits for a queued page.
    func result(of ticket: Ticket) throws -> Page {
        if ticket.number > 0 { worker?.wait(for: ticket.number) }
        if let error = ticket.error { throw error }
        return ticket.page!
    }

    /// Ends the thread once the queue is empty (the writer is done, or dropped).
    func close() { worker?.stop() }
}

/// One thread's compressor: a reusable zstd context and output buffer (a new context per page
/// would cost an allocation and a clear of its tables every time).
final class PageCodec {
    let options: ParquetOptions
    private let zstd: OpaquePointer?
    private var scratch = RawBuffer<UInt8>(capacity: 1 << 16)

    init(options: ParquetOptions) {
        self.options = options
        zstd = options.compression == .zstd ? ZSTD_createCCtx() : nil
    }

    deinit {
        if let zstd { ZSTD_freeCCtx(zstd) }
        scratch.free()
    }

    /// The page: its header (type, sizes, and the kind's own header), then its compressed body.
    func page(_ kind: PageCompressor.Kind, body: [UInt8]) throws -> PageCompressor.Page {
        try body.withUnsafeBytes { body in
            let compressed = try compress(body)
            var h = CompactWriter()
            h.beginStruct()
            switch kind {
            case .data: h.i32(1, 0)  // DATA_PAGE
            case .dictionary: h.i32(1, 2)  // DICTIONARY_PAGE
            }
            h.i32(2, Int32(body.count))
            h.i32(3, Int32(compressed.count))
            switch kind {
            case .data(let values, let encoding):
                h.structure(5) { w in
                    w.i32(1, values)
                    w.i32(2, encoding)
                    w.i32(3, 3)  // RLE definition levels
                    w.i32(4, 3)  // RLE repetition levels
                }
            case .dictionary(let values):
                h.structure(7) { w in
                    w.i32(1, values)
                    w.i32(2, 2)  // PLAIN_DICTIONARY
                }
            }
            h.endStruct()
            var bytes = h.bytes
            bytes.append(contentsOf: compressed)
            return PageCompressor.Page(bytes: bytes, uncompressed: Int64(h.bytes.count + body.count))
        }
    }

    /// The compressed bytes, valid until the next call.
    private func compress(_ body: UnsafeRawBufferPointer) throws -> UnsafeRawBufferPointer {
        switch options.compression {
        case .none:
            return body
        case .zstd:
            let bound = ZSTD_compressBound(body.count)
            scratch.reserve(bound)
            let n = ZSTD_compressCCtx(zstd, scratch.base, bound, body.baseAddress, body.count, options.zstdLevel)
            if ZSTD_isError(n) != 0 { throw ParquetError("zstd: \(String(cString: ZSTD_getErrorName(n)))") }
            return UnsafeRawBufferPointer(start: scratch.base, count: n)
        case .snappy:
            var length = snappy_max_compressed_length(body.count)
            scratch.reserve(length)
            let status = snappy_compress(body.baseAddress?.assumingMemoryBound(to: CChar.self), body.count,
                                         UnsafeMutableRawPointer(scratch.base).assumingMemoryBound(to: CChar.self), &length)
            if status != SNAPPY_OK { throw ParquetError("snappy failed with status \(status)") }
            return UnsafeRawBufferPointer(start: scratch.base, count: length)
        }
    }
}
