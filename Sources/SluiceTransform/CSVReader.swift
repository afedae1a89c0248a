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

/// A streaming reader of delimited text (RFC 4180 quoting, any one-byte delimiter and quote,
/// CRLF or LF). It holds one input block and the current record, never the whole file, so a
/// field of any size and a file of any size are fine.
public final class CSVReader {
    private let source: (UnsafeMutableRawBufferPointer) throws -> Int
    private let delimiter: UInt8
    private let quote: UInt8
    private let decoder: Decoder
    private var block: [UInt8] = []
    private var position = 0
    private var atEnd = false
    private var line = 1
    private var raw: UnsafeMutableRawBufferPointer

    /// `read` fills a buffer and returns the byte count, 0 at the end.
    public init(delimiter: UInt8 = UInt8(ascii: ","), quote: UInt8 = UInt8(ascii: "\""), encoding: SourceEncoding = .utf8,
                blockSize: Int = 1 << 20, read: @escaping (UnsafeMutableRawBufferPointer) throws -> Int) {
        self.source = read
        self.delimiter = delimiter
        self.quote = quote
        decoder = Decoder(encoding)
        raw = UnsafeMutableRawBufferPointer.allocate(byteCount: blockSize, alignment: 16)
    }

    deinit { raw.deallocate() }

    /// Refills `block` with decoded UTF-8; false at the end of input.
    private func refill() throws -> Bool {
        while !atEnd {
            let n = try source(raw)
            if n == 0 {
                atEnd = true
                block = decoder.finish()
                position = 0
                return !block.isEmpty
            }
            block = decoder.decode(UnsafeRawBufferPointer(rebasing: raw[0..<n]))
            position = 0
            if !block.isEmpty { return true }
        }
        return false
    }

    @inline(__always)
    private func nextByte() throws -> UInt8? {
        if position >= block.count {
            guard try refill() else { return nil }
        }
        let b = block[position]
        position += 1
        return b
    }

    @inline(__always)
    private func peekByte() throws -> UInt8? {
        if position >= block.count {
            guard try refill() else { return nil }
        }
        return block[position]
    }

    /// The next record, or nil at the end of the input.
    public func next() throws -> CSVRecord? {
        guard var b = try nextByte() else { return nil }
        let startLine = line
        var fields: [[UInt8]] = []
        var field: [UInt8] = []
        var malformed: String?
        while true {
            if b == quote && field.isEmpty {
                // A quoted field: up to the closing quote; "" is one quote.
                let quoteLine = line
                var closed = false
                while let c = try nextByte() {
                    if c == quote {
                        if try peekByte() == quote {
                            position += 1
                            field.append(quote)
                            continue
                        }
                        closed = true
                        break
                    }
                    if c == 0x0A { line += 1 }
                    field.append(c)
                }
                if !closed {
                    malformed = "unbalanced quote: the quoted field that starts on line \(quoteLine) never ends"
                    fields.append(field)
                    return CSVRecord(fields: fields, line: startLine, malformed: malformed)
                }
                // After the closing quote only a delimiter or a line end may follow.
                guard let after = try nextByte() else {
                    fields.append(field)
                    return CSVRecord(fields: fields, line: startLine, malformed: malformed)
                }
                if after != delimiter && after != 0x0A && after != 0x0D {
                    malformed = malformed ?? "text after a closing quote on line \(line)"
                    field.append(after)
                    // Keep reading the rest of this field as plain text.
                    while let c = try peekByte(), c != delimiter, c != 0x0A, c != 0x0D {
                        field.append(c)
                        position += 1
                    }
                    guard let end = try nextByte() else {
                        fields.append(field)
                        return CSVRecord(fields: fields, line: startLine, malformed: malformed)
                    }
                    b = end
                } else {
                    b = after
                }
            }
            if b == delimiter {
                fields.append(field)
                field = []
            } else if b == 0x0A || b == 0x0D {
                if b == 0x0D, try peekByte() == 0x0A { position += 1 }
                line += 1
                fields.append(field)
                return CSVRecord(fields: fields, line: startLine, malformed: malformed)
            } else {
                field.append(b)
            }
            guard let n = try nextByte() else {
                fields.append(field)
                return CSVRecord(fields: fields, line: startLine, malformed: malformed)
            }
            b = n
        }
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

    static func appendUTF8(_ scalar: UInt32, to out: inout [UInt8]) {
        switch scalar {
        case 0..<0x80: out.append(UInt8(scalar))
        case 0x80..<0x800:
            out.append(UInt8(0xC0 | (scalar >> 6)))
            out.append(UInt8(0x80 | (scalar & 0x3F)))
        case 0x800..<0x10000:
            out.append(UInt8(0xE0 | (scalar >> 12)))
            out.append(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
            out.append(UInt8(0x80 | (scalar & 0x3F)))
        default:
            out.append(UInt8(0xF0 | (scalar >> 18)))
            out.append(UInt8(0x80 | ((scalar >> 12) & 0x3F)))
            out.append(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
            out.append(UInt8(0x80 | (scalar & 0x3F)))
        }
    }

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
                Self.appendUTF8(scalar, to: &out)
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
                        Self.appendUTF8(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00), to: &out)
                        i += 4
                        continue
                    }
                    Self.appendUTF8(0xFFFD, to: &out)
                } else if unit >= 0xDC00 && unit < 0xE000 {
                    Self.appendUTF8(0xFFFD, to: &out)
                } else {
                    Self.appendUTF8(unit, to: &out)
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
            Self.appendUTF8(0xFFFD, to: &out)  // a dangling half code unit
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

    public init(encoding: SourceEncoding, blockSize: Int = 1 << 20, read: @escaping (UnsafeMutableRawBufferPointer) throws -> Int) {
        source = read
        decoder = Decoder(encoding)
        raw = UnsafeMutableRawBufferPointer.allocate(byteCount: blockSize, alignment: 16)
    }

    deinit { raw.deallocate() }

    public func next() throws -> [UInt8]? {
        while true {
            if let nl = pending[start...].firstIndex(of: 0x0A) {
                var line = Array(pending[start..<nl])
                start = nl + 1
                if line.last == 0x0D { line.removeLast() }
                return line
            }
            if atEnd {
                guard start < pending.count else { return nil }
                var line = Array(pending[start...])
                start = pending.count
                if line.last == 0x0D { line.removeLast() }
                return line
            }
            pending.removeFirst(start)
            start = 0
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
