/// Text for byte strings that may not be valid UTF-8: valid sequences as they are, every other
/// byte as a hex escape.
package enum InvalidUTF8 {
    package static func escape(_ bytes: ArraySlice<UInt8>, escapePercentAndControls: Bool, hexPrefix: String) -> String {
        let hex: [Character] = Array("0123456789ABCDEF")
        var out = ""
        out.reserveCapacity(bytes.count)
        func escape(_ b: UInt8) {
            out += hexPrefix
            out.append(hex[Int(b >> 4)])
            out.append(hex[Int(b & 0xF)])
        }
        var i = bytes.startIndex
        while i < bytes.endIndex {
            let b = bytes[i]
            if b < 0x80 {
                if escapePercentAndControls && (b < 0x20 || b == 0x7F || b == UInt8(ascii: "%")) {
                    escape(b)
                } else {
                    out.unicodeScalars.append(Unicode.Scalar(b))
                }
                i += 1
                continue
            }
            let len = utf8SequenceLength(bytes, at: i)
            if len == 0 {
                escape(b)
                i += 1
            } else {
                out += String(decoding: bytes[i..<(i + len)], as: UTF8.self)
                i += len
            }
        }
        return out
    }

    /// Length of a valid UTF-8 multi-byte sequence starting at `i`, or 0 when it is invalid.
    private static func utf8SequenceLength(_ bytes: ArraySlice<UInt8>, at i: Int) -> Int {
        let b0 = bytes[i]
        let len: Int
        var minScalar: UInt32
        var scalar: UInt32
        switch b0 {
        case 0xC2...0xDF: len = 2; scalar = UInt32(b0 & 0x1F); minScalar = 0x80
        case 0xE0...0xEF: len = 3; scalar = UInt32(b0 & 0x0F); minScalar = 0x800
        case 0xF0...0xF4: len = 4; scalar = UInt32(b0 & 0x07); minScalar = 0x10000
        default: return 0
        }
        guard i + len <= bytes.endIndex else { return 0 }
        for k in 1..<len {
            let b = bytes[i + k]
            guard b & 0xC0 == 0x80 else { return 0 }
            scalar = (scalar << 6) | UInt32(b & 0x3F)
        }
        if scalar < minScalar || scalar > 0x10FFFF || (0xD800...0xDFFF).contains(scalar) { return 0 }
        return len
    }
}
