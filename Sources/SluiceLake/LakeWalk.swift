import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Every entry below a folder of the lake that is not a folder, as paths relative to the
/// lake's root, in byte order of those paths: the order in which the manifest lists its lake
/// paths, so that `sluice audit` compares the two side by side without holding either.
///
/// Each folder is read when the walk reaches it; its entries are sorted with a folder's name
/// taken as the name and "/" (so that `a/x` comes after `a-b` and before `a0`, as the full
/// paths sort). Only the folders on the way down are held.
public struct LakeWalk: IteratorProtocol, Sequence {
    /// A file the walk found: its path relative to the lake's root, and with `sizes` its
    /// size (nil: not a regular file, or gone before it was looked at).
    public struct File: Equatable, Sendable {
        public var path: String
        public var size: Int64?
    }

    private let root: String
    private let sizes: Bool
    /// The folders being read: each one's relative path, its entries and the next to visit.
    private var stack: [(folder: String, entries: Listing, next: Int)] = []
    private var peeked: File??

    /// The walk of everything below `relative`. With `sizes`, each file's size is looked up
    /// (`fstatat` beside the folder's `readdir`, as `find -printf %s` does).
    public init(root: String, relative: String, sizes: Bool = false) {
        self.root = root
        self.sizes = sizes
        stack = [(relative, Listing(root: root, relative: relative, sizes: sizes), 0)]
    }

    /// The walk of some of the entries of the folder `relative` (a piece of a `Listing` of
    /// it), and of everything below the folders among them.
    public init(root: String, relative: String, entries: Listing, sizes: Bool = false) {
        self.root = root
        self.sizes = sizes
        stack = [(relative, entries, 0)]
    }

    /// The next file without taking it.
    public mutating func peek() -> File? {
        if let peeked { return peeked }
        let n = advance()
        peeked = .some(n)
        return n
    }

    public mutating func next() -> File? {
        if let p = peeked {
            peeked = nil
            return p
        }
        return advance()
    }

    private mutating func advance() -> File? {
        while let top = stack.last {
            let i = top.next
            guard i < top.entries.count else {
                stack.removeLast()
                continue
            }
            stack[stack.count - 1].next = i + 1
            let path = "\(top.folder)/\(top.entries.name(i))"
            if top.entries.isFolder(i) {
                stack.append((path, Listing(root: root, relative: path, sizes: sizes), 0))
            } else {
                return File(path: path, size: top.entries.size(i))
            }
        }
        return nil
    }

    /// The entries of one folder, in byte order with a folder's name taken as the name and
    /// "/": every name in one buffer (a folder's with its "/"), sorted by `memcmp`, with no
    /// string made until a name is asked for.
    public struct Listing: Sendable {
        private struct Entry {
            var start: Int
            /// Bytes of the name, and the "/" after a folder's.
            var count: Int
            var isFolder: Bool
            /// -1: not a regular file, or not looked at.
            var size: Int64
        }
        private var bytes: [UInt8] = []
        private var entries: [Entry] = []

        /// Nothing, for a folder that cannot be read (it is not there: whatever the manifest
        /// has below it is missing).
        public init(root: String, relative: String, sizes: Bool) {
            guard let d = opendir("\(root)/\(relative)") else { return }
            defer { closedir(d) }
            let fd = dirfd(d)
            var scratch = stat()
            while let e = readdir(d) {
                let type = Int32(e.pointee.d_type)
                // The name is read and looked up in place, in the entry readdir returned.
                let (length, found, st): (Int, Bool, stat) = withUnsafeBytes(of: e.pointee.d_name) { raw in
                    let name = raw.baseAddress!.assumingMemoryBound(to: CChar.self)
                    let n = strlen(name)
                    if n <= 2 && name[0] == 0x2E && (n == 1 || name[1] == 0x2E) { return (0, false, scratch) }
                    bytes.append(contentsOf: UnsafeRawBufferPointer(start: name, count: n))
                    let found = (sizes || type == DT_UNKNOWN) && fstatat(fd, name, &scratch, AT_SYMLINK_NOFOLLOW) == 0
                    return (n, found, scratch)
                }
                if length == 0 { continue }
                let start = bytes.count - length
                var isFolder = type == DT_DIR
                var size: Int64 = -1
                if found {
                    isFolder = (st.st_mode & S_IFMT) == S_IFDIR
                    if (st.st_mode & S_IFMT) == S_IFREG { size = Int64(st.st_size) }
                }
                if isFolder { bytes.append(0x2F) }
                entries.append(Entry(start: start, count: bytes.count - start, isFolder: isFolder, size: size))
            }
            bytes.withUnsafeBufferPointer { b in
                let base = b.baseAddress!
                entries.sort { x, y in
                    let n = Swift.min(x.count, y.count)
                    let c = n == 0 ? 0 : memcmp(base + x.start, base + y.start, n)
                    return c != 0 ? c < 0 : x.count < y.count
                }
            }
        }

        private init(bytes: [UInt8], entries: [Entry]) {
            self.bytes = bytes
            self.entries = entries
        }

        public var count: Int { entries.count }

        /// The name of entry `i` (without a folder's "/").
        public func name(_ i: Int) -> String {
            let e = entries[i]
            return bytes.withUnsafeBufferPointer { b in
                String(decoding: UnsafeBufferPointer(rebasing: b[e.start..<(e.start + e.count - (e.isFolder ? 1 : 0))]), as: UTF8.self)
            }
        }

        public func isFolder(_ i: Int) -> Bool { entries[i].isFolder }

        /// The size of file `i`, if the listing looked it up and it is a regular file.
        public func size(_ i: Int) -> Int64? { entries[i].size < 0 ? nil : entries[i].size }

        /// Entries `range` alone, as a listing of their own.
        public func slice(_ range: Range<Int>) -> Listing {
            Listing(bytes: bytes, entries: Array(entries[range]))
        }
    }
}

extension String {
    /// Whether this string comes before `other` in byte order of their UTF-8 (the manifest's
    /// and the lake's order; Swift's `<` compares Unicode scalars' canonical forms instead).
    public func bytePrecedes(_ other: String) -> Bool {
        byteCompare(other) < 0
    }

    /// Whether the two strings have the same bytes (Swift's `==` takes canonically equivalent
    /// strings, such as a name in NFC and in NFD, for equal; the lake and the manifest do not).
    public func bytesEqual(_ other: String) -> Bool {
        utf8.count == other.utf8.count && byteCompare(other) == 0
    }

    /// <0, 0 or >0 as this string comes before, is or comes after `other` in byte order.
    public func byteCompare(_ other: String) -> Int {
        var x = self, y = other
        return x.withUTF8 { p in
            y.withUTF8 { q in
                let n = Swift.min(p.count, q.count)
                if n > 0 {
                    let c = memcmp(p.baseAddress!, q.baseAddress!, n)
                    if c != 0 { return Int(c) }
                }
                return p.count - q.count
            }
        }
    }
}
