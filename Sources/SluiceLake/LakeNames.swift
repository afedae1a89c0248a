/// The deterministic mapping from a source's relative path and version to a lake path.
///
/// `raw/<client>/<source>/<dirs…>/<stem>.v<N><ext>`, where `<ext>` is the last extension of
/// the original name (`orders.csv` → `orders.v3.csv`, `README` → `README.v1`,
/// `a.tar.gz` → `a.tar.v1.gz`). In every component, bytes that are not valid UTF-8, control
/// characters (0x00–0x1F, 0x7F) and `%` itself are written as `%HH`, so the mapping is
/// injective and the lake never holds a name a shell or a browser stumbles on.
public enum LakeNames {
    /// Folder for raw versions, relative to the lake root.
    public static let rawFolder = "raw"
    /// Folder for the lake's own bookkeeping (staging, quarantine); never holds versions.
    public static let internalFolder = ".sluice"

    /// The lake path of `version` of `path`, relative to the lake root.
    public static func rawPath(client: String, source: String, path: RelativePath, version: Int) -> String {
        let name = encode(path.components.last ?? [])
        let (stem, ext) = splitExtension(name)
        return "\(folder(client: client, source: source, path: path))/\(stem).v\(version)\(ext)"
    }

    /// The folder (relative to the lake root) that holds every version of `path`.
    public static func folder(client: String, source: String, path: RelativePath) -> String {
        var parts = [rawFolder, client, source]
        for dir in path.components.dropLast() {
            parts.append(encode(dir))
        }
        return parts.joined(separator: "/")
    }

    /// Splits `name` into stem and last extension (`.csv`); a leading dot does not start an
    /// extension and an extension is never empty.
    static func splitExtension(_ name: String) -> (String, String) {
        let utf8 = Array(name.utf8)
        guard let dot = utf8.lastIndex(of: UInt8(ascii: ".")), dot > 0, dot < utf8.count - 1 else {
            return (name, "")
        }
        let stem = String(decoding: utf8[..<dot], as: UTF8.self)
        let ext = String(decoding: utf8[dot...], as: UTF8.self)
        return (stem, ext)
    }

    /// Percent-encodes one path component for the lake.
    public static func encode(_ component: ArraySlice<UInt8>) -> String {
        escapeInvalidUTF8(component, escapePercentAndControls: true, hexPrefix: "%")
    }

    static func escapeInvalidUTF8(_ bytes: ArraySlice<UInt8>, escapePercentAndControls: Bool, hexPrefix: String) -> String {
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
