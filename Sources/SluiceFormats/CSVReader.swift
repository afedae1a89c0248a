#if canImport(Glibc)
import Glibc
#endif
import SluiceSupport

/// The text encodings a client file may use (the mapping's `encoding` values); everything is
/// read as UTF-8 after decoding.
public enum SourceEncoding: String, Sendable, CaseIterable {
    case utf8 = "utf-8", utf16 = "utf-16", latin1, windows1252 = "windows-1252"
}

/// One record of a delimited file: its fields as UTF-8 bytes, the 1-based line it starts on,
/// and why it is malformed, if it is (the transform rejects such a record).
public struct CSVRecord: Sendable {
    public var fields: [[UInt8]]
    public var line: Int
    public var malformed: String?
}

/// The fields of the current record: views into the reader's input window, valid until the
/// reader moves on.
public struct CSVFields {
    let base: UnsafePointer<UInt8>
    /// Start and end offsets of each field, interleaved.
    let bounds: UnsafeBufferPointer<Int>

    public var count: Int { bounds.count / 2 }

    @inline(__always)
    public subscript(i: Int) -> UnsafeBufferPointer<UInt8> {
        UnsafeBufferPointer(start: base + bounds[2 * i], count: bounds[2 * i + 1] - bounds[2 * i])
    }
}

/// A streaming reader of delimited text (RFC 4180 quoting, any one-byte delimiter and quote,
/// CRLF or LF). It holds one window of input, never the whole file: the window is refilled
/// block by block, and the unfinished record is moved to its front first (the window grows
/// only for a record bigger than it), so a field of any size and a file of any size are fine.
///
/// Fields are views into the window: an unquoted field is never copied, and a quoted one is
/// unescaped in place (`""` → `"`). `advance()` reads the next record and `withFields` shows
/// it; `next()` returns a copy, for callers that want one.
public final class CSVReader {
    private let source: (UnsafeMutableRawBufferPointer) throws -> Int
    private let delimiter: UInt8
    private let quote: UInt8
    private let decoder: Decoder?
    private let blockSize: Int
    /// Raw input for a decoder (non-UTF-8 files).
    private var raw: UnsafeMutableRawBufferPointer
    private var window: UnsafeMutablePointer<UInt8>
    private var capacity: Int
    /// The first byte not yet consumed, and the end of valid bytes.
    private var position = 0
    private var end = 0
    private var atEnd = false
    private var started = false
    private var skipLF = false
    private var line = 1
    /// Start and end offsets of the current record's fields, interleaved.
    private var bounds = RawBuffer<Int>(capacity: 128)
    /// The 1-based line the current record starts on.
    public private(set) var recordLine = 0
    /// Why the current record is malformed, if it is (the transform rejects such a record).
    public private(set) var malformed: String?

    /// The longest record read (its bytes as UTF-8): a file with no line ends, or with a
    /// quote that never closes, is refused there instead of being held whole.
    private let maxRecordBytes: Int

    /// `read` fills a buffer and returns the byte count, 0 at the end.
    public init(delimiter: UInt8 = UInt8(ascii: ","), quote: UInt8 = UInt8(ascii: "\""), encoding: SourceEncoding = .utf8,
                blockSize: Int = 1 << 20, maxRecordBytes: Int = TextTooLong.defaultLimit, read: @escaping (UnsafeMutableRawBufferPointer) throws -> Int) {
        self.maxRecordBytes = maxRecordBytes
        self.source = read
        self.delimiter = delimiter
        self.quote = quote
        self.blockSize = max(blockSize, 1)
        decoder = encoding == .utf8 ? nil : Decoder(encoding)
        raw = UnsafeMutableRawBufferPointer.allocate(byteCount: decoder == nil ? 1 : self.blockSize, alignment: 16)
        capacity = max(2 * self.blockSize, 64)
        window = .allocate(capacity: capacity)
    }

    deinit {
        raw.deallocate()
        window.deallocate()
        bounds.free()
    }

    /// Moves the bytes from `keep` on to the window's front, then appends at least one more
    /// byte of input. Returns how far the kept bytes moved (subtract it from every offset
    /// into the window, even at the end), and false at the end of the input.
    private func more(keeping keep: Int) throws -> (shift: Int, more: Bool) {
        if atEnd { return (0, false) }
        let shift = keep
        if shift > 0 {
            (window).update(from: window + shift, count: end - shift)
            end -= shift
            position -= shift
        }
        while true {
            if capacity - end < blockSize {
                let bigger = max(capacity * 2, end + blockSize)
                let new = UnsafeMutablePointer<UInt8>.allocate(capacity: bigger)
                new.update(from: window, count: end)
                window.deallocate()
                window = new
                capacity = bigger
            }
            var n: Int
            if let decoder {
                let got = try source(raw)
                let decoded = got == 0 ? decoder.finish() : decoder.decode(UnsafeRawBufferPointer(rebasing: raw[0..<got]))
                if got == 0 { atEnd = true }
                if end + decoded.count > capacity {
                    let bigger = end + decoded.count + blockSize
                    let new = UnsafeMutablePointer<UInt8>.allocate(capacity: bigger)
                    new.update(from: window, count: end)
                    window.deallocate()
                    window = new
                    capacity = bigger
                }
                if !decoded.isEmpty {
                    decoded.withUnsafeBufferPointer { (window + end).update(from: $0.baseAddress!, count: $0.count) }
                }
                n = decoded.count
            } else {
                n = try source(UnsafeMutableRawBufferPointer(start: window + end, count: min(blockSize, capacity - end)))
                if n == 0 { atEnd = true }
                if !started && n > 0 {
                    // Gather 3 bytes to see (and drop) a UTF-8 byte-order mark.
                    while end + n < 3 {
                        let extra = try source(UnsafeMutableRawBufferPointer(start: window + end + n, count: capacity - end - n))
                        if extra == 0 { break }
                        n += extra
                    }
                }
            }
            if !started && (n > 0 || atEnd) {
                started = true
                if decoder == nil, end == 0, n >= 3, window[0] == 0xEF, window[1] == 0xBB, window[2] == 0xBF {
                    window.update(from: window + 3, count: n - 3)
                    n -= 3
                }
            }
            end += n
            if n > 0 { return (shift, true) }
            if atEnd { return (shift, false) }
        }
    }

    /// Reads the next record; false at the end of the input.
    public func advance() throws -> Bool {
        bounds.removeAll()
        malformed = nil
        if position >= end {
            guard try more(keeping: position).more else { return false }
        }
        if skipLF {
            skipLF = false
            if window[position] == 0x0A {
                position += 1
                if position >= end {
                    guard try more(keeping: position).more else { return false }
                }
            }
        }
        recordLine = line
        var recordStart = position
        var i = position
        // The field being read: where it starts, and (for quoted fields) where its next
        // unescaped byte goes.
        var fieldStart = i
        var w = i
        var quoteLine = line
        enum State { case fieldStart, unquoted, quoted, quoteSeen, afterQuote }
        var state = State.fieldStart
        while true {
            if i >= end {
                if i - recordStart >= maxRecordBytes {
                    throw TextTooLong(what: "record", line: recordLine, limit: maxRecordBytes,
                                      why: state == .quoted ? "the quoted field that starts on line \(quoteLine) never ends" : nil)
                }
                position = i
                let (shift, gotMore) = try more(keeping: recordStart)
                recordStart -= shift
                i -= shift
                fieldStart -= shift
                w -= shift
                for k in 0..<bounds.count { bounds[k] -= shift }
                if gotMore { continue }
                // The end of the input ends the record.
                if state == .quoted {
                    malformed = malformed ?? "unbalanced quote: the quoted field that starts on line \(quoteLine) never ends"
                }
                if state == .fieldStart { fieldStart = i }  // "a," at the very end: an empty last field
                let fieldEnd = state == .unquoted || state == .fieldStart ? i : w
                bounds.append(fieldStart)
                bounds.append(fieldEnd)
                position = i
                return true
            }
            switch state {
            case .fieldStart:
                if window[i] == quote {
                    i += 1
                    fieldStart = i
                    w = i
                    quoteLine = line
                    state = .quoted
                } else {
                    fieldStart = i
                    state = .unquoted
                }
            case .unquoted:
                // Locals, so that the scan runs in registers.
                let p = window, e = end, d = delimiter
                // Eight bytes at a time while eight are there: the lowest byte that is the
                // delimiter, LF or CR ends the field.
                let ones: UInt64 = 0x0101_0101_0101_0101
                let dd = UInt64(d) &* ones, lf = 0x0A &* ones, cr = 0x0D &* ones
                while i + 8 <= e {
                    let word = UInt64(littleEndian: UnsafeRawPointer(p + i).loadUnaligned(as: UInt64.self))
                    let hits = Self.zeroBytes(word ^ dd) | Self.zeroBytes(word ^ lf) | Self.zeroBytes(word ^ cr)
                    if hits != 0 {
                        i += hits.trailingZeroBitCount >> 3
                        break
                    }
                    i += 8
                }
                while i < e {
                    let b = p[i]
                    if b == d || b == 0x0A || b == 0x0D { break }
                    i += 1
                }
                if i == end { continue }
                if let done = try close(fieldStart, i, at: &i) {
                    position = i
                    return done
                }
                state = .fieldStart
            case .quoted:
                let p = window, e = end, q = quote
                var lines = 0
                if w == i {
                    // No escape so far: nothing to move.
                    while i < e {
                        let b = p[i]
                        if b == q { break }
                        if b == 0x0A { lines += 1 }
                        i += 1
                    }
                    w = i
                } else {
                    while i < e {
                        let b = p[i]
                        if b == q { break }
                        if b == 0x0A { lines += 1 }
                        p[w] = b
                        w += 1
                        i += 1
                    }
                }
                line += lines
                if i < end {
                    i += 1
                    state = .quoteSeen
                }
            case .quoteSeen:
                let b = window[i]
                if b == quote {
                    // "" inside quotes is one quote.
                    window[w] = quote
                    w += 1
                    i += 1
                    state = .quoted
                } else if b == delimiter || b == 0x0A || b == 0x0D {
                    if let done = try close(fieldStart, w, at: &i) {
                        position = i
                        return done
                    }
                    state = .fieldStart
                } else {
                    // After the closing quote only a delimiter or a line end may follow; the
                    // rest of the field is kept as plain text.
                    malformed = malformed ?? "text after a closing quote on line \(line)"
                    state = .afterQuote
                }
            case .afterQuote:
                while i < end {
                    let b = window[i]
                    if b == delimiter || b == 0x0A || b == 0x0D { break }
                    window[w] = b
                    w += 1
                    i += 1
                }
                if i == end { continue }
                if let done = try close(fieldStart, w, at: &i) {
                    position = i
                    return done
                }
                state = .fieldStart
            }
        }
    }

    /// The high bit of each zero byte of `x` set; a byte above a zero byte may be flagged
    /// too, so only the lowest flag is exact.
    @inline(__always)
    private static func zeroBytes(_ x: UInt64) -> UInt64 {
        (x &- 0x0101_0101_0101_0101) & ~x & 0x8080_8080_8080_8080
    }

    /// Keeps the field [start, end) and steps over the delimiter or line end at `i` that closes
    /// it. True when that ended the record, nil when another field follows.
    @inline(__always)
    private func close(_ start: Int, _ end: Int, at i: inout Int) throws -> Bool? {
        bounds.append(start)
        bounds.append(end)
        return try endOfField(at: &i)
    }

    @inline(__always)
    private func endOfField(at i: inout Int) throws -> Bool? {
        let b = window[i]
        i += 1
        if b == delimiter { return nil }
        line += 1
        if b == 0x0D {
            if i < end {
                if window[i] == 0x0A { i += 1 }
            } else {
                skipLF = true
            }
        }
        return true
    }

    /// Shows the current record's fields (valid only inside `body`).
    public func withFields<R>(_ body: (CSVFields) throws -> R) rethrows -> R {
        try body(CSVFields(base: UnsafePointer(window), bounds: bounds.buffer))
    }

    /// The next record as a copy, or nil at the end of the input.
    public func next() throws -> CSVRecord? {
        guard try advance() else { return nil }
        let fields = withFields { f in (0..<f.count).map { Array(f[$0]) } }
        return CSVRecord(fields: fields, line: recordLine, malformed: malformed)
    }
}

/// Turns input bytes into UTF-8, block by block (a character split across blocks is carried
/// over). A UTF-8 or UTF-16 byte-order mark is dropped.
final class Decoder {
    let encoding: SourceEncoding
    private var carry: [UInt8] = []
    private var started = false
    private var bigEndian = false

    init(_ encoding: SourceEncoding) { self.encoding = encoding }

    /// Windows-1252's 0x80–0x9F; the rest of the byte range is Latin-1.
    static let cp1252: [UInt32] = [
        0x20AC, 0x81, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x8D, 0x017D, 0x8F,
        0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D, 0x017E, 0x0178,
    ]

    func decode(_ input: UnsafeRawBufferPointer) -> [UInt8] {
        var bytes = carry
        bytes += input
        carry = []
        if !started {
            let needed = encoding == .utf16 ? 2 : (encoding == .utf8 ? 3 : 0)
            if bytes.count < needed && needed > 0 {
                carry = bytes
                return []
            }
            started = true
            if encoding == .utf8, bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }
            if encoding == .utf16 {
                if bytes.starts(with: [0xFE, 0xFF]) { bigEndian = true; bytes.removeFirst(2) }
                else if bytes.starts(with: [0xFF, 0xFE]) { bytes.removeFirst(2) }
            }
        }
        switch encoding {
        case .utf8:
            // Passed through; invalid sequences are found per field, where the row can be rejected.
            return bytes
        case .latin1, .windows1252:
            var out: [UInt8] = []
            out.reserveCapacity(bytes.count + bytes.count / 8)
            for b in bytes {
                if b < 0x80 { out.append(b); continue }
                let scalar = encoding == .windows1252 && b < 0xA0 ? Self.cp1252[Int(b - 0x80)] : UInt32(b)
                appendUTF8(scalar, to: &out)
            }
            return out
        case .utf16:
            var out: [UInt8] = []
            out.reserveCapacity(bytes.count)
            var i = 0
            while i + 1 < bytes.count {
                let unit = bigEndian ? UInt32(bytes[i]) << 8 | UInt32(bytes[i + 1]) : UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i])
                if unit >= 0xD800 && unit < 0xDC00 {
                    guard i + 3 < bytes.count else { break }
                    let low = bigEndian ? UInt32(bytes[i + 2]) << 8 | UInt32(bytes[i + 3]) : UInt32(bytes[i + 3]) << 8 | UInt32(bytes[i + 2])
                    if low >= 0xDC00 && low < 0xE000 {
                        appendUTF8(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00), to: &out)
                        i += 4
                        continue
                    }
                    appendUTF8(0xFFFD, to: &out)
                } else if unit >= 0xDC00 && unit < 0xE000 {
                    appendUTF8(0xFFFD, to: &out)
                } else {
                    appendUTF8(unit, to: &out)
                }
                i += 2
            }
            carry = Array(bytes[i...])
            return out
        }
    }

    func finish() -> [UInt8] {
        let rest = carry
        carry = []
        if rest.isEmpty { return [] }
        if encoding == .utf16 {
            var out: [UInt8] = []
            appendUTF8(0xFFFD, to: &out)  // a dangling half code unit
            return out
        }
        return rest
    }
}

/// Lines of a text file in any `SourceEncoding`, as UTF-8 (without the line end; a trailing
/// CR is dropped), decoded block by block so that the file is never held whole.
public final class TextLineReader {
    private let source: (UnsafeMutableRawBufferPointer) throws -> Int
    private let decoder: Decoder
    private var pending: [UInt8] = []
    private var start = 0
    private var atEnd = false
    private var raw: UnsafeMutableRawBufferPointer
    /// Where the search for the current line's end goes on (the bytes before it have none).
    private var scanned = 0
    private var line = 0
    private let maxLineBytes: Int

    public init(encoding: SourceEncoding, blockSize: Int = 1 << 20, maxLineBytes: Int = TextTooLong.defaultLimit,
                read: @escaping (UnsafeMutableRawBufferPointer) throws -> Int) {
        self.maxLineBytes = maxLineBytes
        source = read
        decoder = Decoder(encoding)
        raw = UnsafeMutableRawBufferPointer.allocate(byteCount: blockSize, alignment: 16)
    }

    deinit { raw.deallocate() }

    public func next() throws -> [UInt8]? {
        var line: [UInt8]?
        guard try nextLine({ line = Array($0) }) else { return nil }
        return line
    }

    /// Hands the next line to `body` as a view into the reader's buffer (valid only inside
    /// `body`): no copy, for readers that take a line apart and keep nothing of it. False at
    /// the end. (Not generic: a caller in another module pays no type lookup per line.)
    public func nextLine(_ body: (UnsafeBufferPointer<UInt8>) throws -> Void) throws -> Bool {
        while true {
            let from = start
            let searchFrom = max(from, scanned)
            let newline: Int? = pending.withUnsafeBufferPointer { buf in
                guard searchFrom < buf.count, let base = buf.baseAddress, let hit = memchr(base + searchFrom, 0x0A, buf.count - searchFrom) else { return nil }
                return UnsafePointer<UInt8>(hit.assumingMemoryBound(to: UInt8.self)) - base
            }
            if newline != nil || (atEnd && from < pending.count) {
                let end = newline ?? pending.count
                start = newline.map { $0 + 1 } ?? pending.count
                scanned = start
                line += 1
                try pending.withUnsafeBufferPointer { buf in
                    var e = end
                    if e > from && buf[e - 1] == 0x0D { e -= 1 }
                    try body(UnsafeBufferPointer(rebasing: buf[from..<e]))
                }
                return true
            }
            if atEnd { return false }
            if pending.count - start >= maxLineBytes {
                throw TextTooLong(what: "line", line: line + 1, limit: maxLineBytes, why: nil)
            }
            pending.removeFirst(start)
            start = 0
            scanned = pending.count
            let n = try source(raw)
            if n == 0 {
                atEnd = true
                pending += decoder.finish()
            } else {
                pending += decoder.decode(UnsafeRawBufferPointer(rebasing: raw[0..<n]))
            }
        }
    }
}

/// Appends `scalar` as UTF-8 (the decoders of every reader use it).
func appendUTF8(_ scalar: UInt32, to out: inout [UInt8]) {
    forEachUTF8Byte(of: scalar) { out.append($0) }
}

/// The UTF-8 bytes of `scalar`, one at a time.
@inline(__always)
func forEachUTF8Byte(of scalar: UInt32, _ emit: (UInt8) -> Void) {
    switch scalar {
    case 0..<0x80:
        emit(UInt8(scalar))
    case 0x80..<0x800:
        emit(UInt8(0xC0 | (scalar >> 6)))
        emit(UInt8(0x80 | (scalar & 0x3F)))
    case 0x800..<0x10000:
        emit(UInt8(0xE0 | (scalar >> 12)))
        emit(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
        emit(UInt8(0x80 | (scalar & 0x3F)))
    default:
        emit(UInt8(0xF0 | (scalar >> 18)))
        emit(UInt8(0x80 | ((scalar >> 12) & 0x3F)))
        emit(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
        emit(UInt8(0x80 | (scalar & 0x3F)))
    }
}

/// A record or line longer than the readers hold: a file with no line ends (or a quote that
/// never closes) is refused at this length instead of being read into memory whole.
public struct TextTooLong: Error, Sendable, CustomStringConvertible {
    /// 64 MiB: far beyond any real record, small enough to hold.
    public static let defaultLimit = 64 << 20
    public let what: String
    public let line: Int
    public let limit: Int
    public let why: String?

    public var description: String {
        "the \(what) that starts on line \(line) is longer than \(limit >> 20 > 0 ? "\(limit >> 20) MiB" : "\(limit) bytes") without ending: "
            + (why ?? "is the file text with line ends, in the format and encoding the mapping says?")
    }
}
