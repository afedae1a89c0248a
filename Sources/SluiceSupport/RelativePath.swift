/// A path relative to a source root, kept as raw bytes so that names which are not UTF-8 survive.
///
/// Components are separated by `/`; there are no empty, `.` or `..` components.
public struct RelativePath: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init(bytes: [UInt8]) { self.bytes = bytes }
    public init(_ string: String) { self.bytes = Array(string.utf8) }

    /// The part of the absolute `path` below the absolute folder `root`; nil unless `path`
    /// lies strictly below it (`/srv/drop/a/b` below `/srv/drop` is `a/b`).
    public init?(path: [UInt8], below root: [UInt8]) {
        let prefix = root.last == UInt8(ascii: "/") ? root : root + [UInt8(ascii: "/")]
        guard root.first == UInt8(ascii: "/"), path.count > prefix.count, path.starts(with: prefix) else { return nil }
        self.bytes = Array(path.dropFirst(prefix.count))
    }

    /// The path's components, as raw bytes.
    public var components: [ArraySlice<UInt8>] {
        bytes.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true)
    }

    /// The last component (the file name).
    public var name: ArraySlice<UInt8> { components.last ?? [] }

    /// Appends one component.
    public func appending(_ component: some Collection<UInt8>) -> RelativePath {
        if bytes.isEmpty { return RelativePath(bytes: Array(component)) }
        return RelativePath(bytes: bytes + [UInt8(ascii: "/")] + component)
    }

    /// The path as text: the exact string when it is valid UTF-8, otherwise each byte that is
    /// not part of valid UTF-8 is shown as `\xHH`.
    public var display: String {
        if let s = String(validating: bytes, as: UTF8.self) { return s }
        return InvalidUTF8.escape(bytes[...], escapePercentAndControls: false, hexPrefix: "\\x")
    }

    public var description: String { display }

    public static func < (lhs: RelativePath, rhs: RelativePath) -> Bool {
        lhs.bytes.lexicographicallyPrecedes(rhs.bytes)
    }
}
