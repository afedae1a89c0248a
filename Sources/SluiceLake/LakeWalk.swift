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
    private let root: String
    /// The folders being read: each one's relative path and its entries still to visit
    /// (reversed: the next is last).
    private var stack: [(folder: String, entries: [(name: String, isFolder: Bool)])] = []
    private var peeked: String??

    public init(root: String, relative: String) {
        self.root = root
        stack = [(relative, Self.sortedEntries(root: root, relative: relative))]
    }

    /// The next path without taking it.
    public mutating func peek() -> String? {
        if let peeked { return peeked }
        let n = advance()
        peeked = .some(n)
        return n
    }

    public mutating func next() -> String? {
        if let p = peeked {
            peeked = nil
            return p
        }
        return advance()
    }

    private mutating func advance() -> String? {
        while !stack.isEmpty {
            // Popped in place: holding a copy of the top while popping would copy its entries
            // at every step.
            guard let entry = stack[stack.count - 1].entries.popLast() else {
                stack.removeLast()
                continue
            }
            let path = "\(stack[stack.count - 1].folder)/\(entry.name)"
            if entry.isFolder {
                stack.append((path, Self.sortedEntries(root: root, relative: path)))
            } else {
                return path
            }
        }
        return nil
    }

    /// A folder's entries, the last in byte order first.
    static func sortedEntries(root: String, relative: String) -> [(name: String, isFolder: Bool)] {
        guard let d = opendir("\(root)/\(relative)") else { return [] }
        defer { closedir(d) }
        var entries: [(name: String, isFolder: Bool)] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name == "." || name == ".." { continue }
            var isFolder = Int32(e.pointee.d_type) == DT_DIR
            if Int32(e.pointee.d_type) == DT_UNKNOWN {
                var st = stat()
                isFolder = lstat("\(root)/\(relative)/\(name)", &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
            }
            entries.append((name, isFolder))
        }
        entries.sort { Self.sortsBefore($1, $0) }
        return entries
    }

    /// Whether entry `a` comes before `b`, a folder's name taken as the name and "/".
    static func sortsBefore(_ a: (name: String, isFolder: Bool), _ b: (name: String, isFolder: Bool)) -> Bool {
        a.name.bytePrecedes(b.name, then: a.isFolder ? 0x2F : -1, b.isFolder ? 0x2F : -1)
    }
}

extension String {
    /// Whether this string comes before `other` in byte order of their UTF-8 (the manifest's
    /// and the lake's order; Swift's `<` compares Unicode scalars' canonical forms instead).
    public func bytePrecedes(_ other: String) -> Bool {
        bytePrecedes(other, then: -1, -1)
    }

    /// The same, with the byte `thenSelf` (or `thenOther`) taken to follow this string (or
    /// `other`) when one is a prefix of the other (-1: none).
    func bytePrecedes(_ other: String, then thenSelf: Int, _ thenOther: Int) -> Bool {
        var x = self, y = other
        return x.withUTF8 { p in
            y.withUTF8 { q in
                let n = Swift.min(p.count, q.count)
                if n > 0 {
                    let c = memcmp(p.baseAddress!, q.baseAddress!, n)
                    if c != 0 { return c < 0 }
                }
                return (p.count > n ? Int(p[n]) : thenSelf) < (q.count > n ? Int(q[n]) : thenOther)
            }
        }
    }
}
