/// Lowercase hex of bytes (a digest, a token): two characters a byte, without the per-byte
/// `String(format:)` that costs more than the hash of a small upload.
public func hexString(_ bytes: some Sequence<UInt8>) -> String {
    let digits: StaticString = "0123456789abcdef"
    var out = [UInt8]()
    out.reserveCapacity(bytes.underestimatedCount * 2)
    digits.withUTF8Buffer { hex in
        for b in bytes {
            out.append(hex[Int(b >> 4)])
            out.append(hex[Int(b & 0xF)])
        }
    }
    return String(decoding: out, as: UTF8.self)
}
