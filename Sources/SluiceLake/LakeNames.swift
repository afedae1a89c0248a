import SluiceSupport
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

    /// A lake file or folder name may have this many bytes (NAME_MAX of Linux file systems).
    public static let maxNameBytes = 255

    /// Why the lake cannot hold versions of `path` (a folder or file name that, as the lake
    /// writes it with its version number, is longer than a file system allows), or nil.
    public static func overlongName(_ path: RelativePath) -> String? {
        let parts = path.components
        for (i, part) in parts.enumerated() {
            // The file's name gains ".v<version>": room is kept for a version of 9 digits.
            let length = encode(part).utf8.count + (i == parts.count - 1 ? 11 : 0)
            guard length > maxNameBytes else { continue }
            return "the \(i == parts.count - 1 ? "file" : "folder") name \(encode(part).prefix(40))… is \(part.count) bytes long, and the lake's "
                + "file system takes names of at most \(maxNameBytes) bytes (with the version number Sluice adds): nothing was copied; "
                + "ask the client to use a shorter name"
        }
        return nil
    }

    /// Percent-encodes one path component for the lake.
    public static func encode(_ component: ArraySlice<UInt8>) -> String {
        InvalidUTF8.escape(component, escapePercentAndControls: true, hexPrefix: "%")
    }
}
