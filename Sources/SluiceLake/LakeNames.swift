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

    /// Percent-encodes one path component for the lake.
    public static func encode(_ component: ArraySlice<UInt8>) -> String {
        InvalidUTF8.escape(component, escapePercentAndControls: true, hexPrefix: "%")
    }
}
