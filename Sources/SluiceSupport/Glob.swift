
/// A glob on source-relative paths, with `.gitignore`-like rules:
/// a pattern without `/` matches the file name at any depth; a pattern with `/` matches the
/// whole relative path (a leading `/` is allowed and ignored). `*` and `?` never cross `/`;
/// `**` does, and `**/` also matches zero folders. `[abc]`, `[a-z]` and `[!a]` are classes.
public struct Glob: Sendable, Equatable, CustomStringConvertible {
    public let pattern: String
    private let segments: [Segment]
    private let nameOnly: Bool

    package enum Segment: Sendable {
        case globstar
        case pattern([Token])
    }

    package enum Token: Sendable {
        case byte(UInt8)
        case any
        case star
        case set([ClosedRange<UInt8>], negated: Bool)
    }

    /// Two globs are equal when their patterns are (the compiled form follows from it).
    public static func == (a: Glob, b: Glob) -> Bool { a.pattern == b.pattern }

    public struct SyntaxError: Error, CustomStringConvertible {
        public let description: String

        package init(description: String) {
            self.description = description
        }
    }

    public init(_ pattern: String) throws(SyntaxError) {
        self.pattern = pattern
        var text = Array(pattern.utf8)
        guard !text.isEmpty else { throw SyntaxError(description: "an empty pattern matches nothing") }
        if text.first == UInt8(ascii: "/") { text.removeFirst() }
        if text.last == UInt8(ascii: "/") { throw SyntaxError(description: "a pattern cannot end with '/' (globs match files)") }
        nameOnly = !text.contains(UInt8(ascii: "/"))
        var segs: [Segment] = []
        for raw in text.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false) {
            if raw.isEmpty { throw SyntaxError(description: "empty path segment ('//')") }
            if raw.elementsEqual("**".utf8) {
                segs.append(.globstar)
                continue
            }
            segs.append(.pattern(try Self.tokenize(raw)))
        }
        segments = segs
    }

    private static func tokenize(_ raw: ArraySlice<UInt8>) throws(SyntaxError) -> [Token] {
        var tokens: [Token] = []
        var i = raw.startIndex
        while i < raw.endIndex {
            let c = raw[i]
            switch c {
            case UInt8(ascii: "*"):
                if i + 1 < raw.endIndex && raw[i + 1] == UInt8(ascii: "*") {
                    throw SyntaxError(description: "'**' must be a whole path segment, as in '**/x' or 'a/**'")
                }
                tokens.append(.star)
                i += 1
            case UInt8(ascii: "?"):
                tokens.append(.any)
                i += 1
            case UInt8(ascii: "["):
                var j = i + 1
                var negated = false
                if j < raw.endIndex && (raw[j] == UInt8(ascii: "!") || raw[j] == UInt8(ascii: "^")) {
                    negated = true
                    j += 1
                }
                var ranges: [ClosedRange<UInt8>] = []
                var first = true
                while j < raw.endIndex && (raw[j] != UInt8(ascii: "]") || first) {
                    first = false
                    let lo = raw[j]
                    if j + 2 < raw.endIndex && raw[j + 1] == UInt8(ascii: "-") && raw[j + 2] != UInt8(ascii: "]") {
                        let hi = raw[j + 2]
                        guard lo <= hi else { throw SyntaxError(description: "bad range in '[…]'") }
                        ranges.append(lo...hi)
                        j += 3
                    } else {
                        ranges.append(lo...lo)
                        j += 1
                    }
                }
                guard j < raw.endIndex else { throw SyntaxError(description: "unclosed '['") }
                tokens.append(.set(ranges, negated: negated))
                i = j + 1
            case UInt8(ascii: "\\"):
                guard i + 1 < raw.endIndex else { throw SyntaxError(description: "trailing '\\'") }
                tokens.append(.byte(raw[i + 1]))
                i += 2
            default:
                tokens.append(.byte(c))
                i += 1
            }
        }
        return tokens
    }

    public var description: String { pattern }

    /// Whether the pattern matches a relative path (bytes, `/`-separated).
    public func matches(_ path: [UInt8]) -> Bool {
        let comps = path.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true)
        if nameOnly {
            guard let last = comps.last, case .pattern(let tokens) = segments[0] else {
                return segments.count == 1 && !comps.isEmpty  // "**" alone
            }
            return Self.match(tokens[...], last)
        }
        return Self.matchSegments(segments[...], comps[...])
    }

    private static func matchSegments(_ segs: ArraySlice<Segment>, _ comps: ArraySlice<ArraySlice<UInt8>>) -> Bool {
        guard let seg = segs.first else { return comps.isEmpty }
        switch seg {
        case .globstar:
            if segs.count == 1 { return !comps.isEmpty }  // "a/**" matches everything below a
            var rest = comps
            while true {
                if matchSegments(segs.dropFirst(), rest) { return true }
                if rest.isEmpty { return false }
                rest = rest.dropFirst()
            }
        case .pattern(let tokens):
            guard let c = comps.first, match(tokens[...], c) else { return false }
            return matchSegments(segs.dropFirst(), comps.dropFirst())
        }
    }

    private static func match(_ tokens: ArraySlice<Token>, _ name: ArraySlice<UInt8>) -> Bool {
        var t = tokens.startIndex
        var n = name.startIndex
        var starT = -1
        var starN = -1
        while n < name.endIndex {
            if t < tokens.endIndex {
                switch tokens[t] {
                case .star:
                    starT = t
                    starN = n
                    t += 1
                    continue
                case .any:
                    t += 1
                    n += 1
                    continue
                case .byte(let b) where b == name[n]:
                    t += 1
                    n += 1
                    continue
                case .set(let ranges, let negated) where ranges.contains(where: { $0.contains(name[n]) }) != negated:
                    t += 1
                    n += 1
                    continue
                default:
                    break
                }
            }
            if starT >= 0 {
                t = starT + 1
                starN += 1
                n = starN
                continue
            }
            return false
        }
        while t < tokens.endIndex, case .star = tokens[t] { t += 1 }
        return t == tokens.endIndex
    }
}

/// Include and exclude globs of one source.
public struct PathFilter: Sendable, Equatable {
    public var include: [Glob]
    public var exclude: [Glob]
    /// Folders taken literally (no glob syntax), with everything below them: where Sluice moves
    /// ingested files (`after_ingest = "move:…"`, every target a source ever had).
    public var excludedFolders: [RelativePath] = []

    public init(include: [Glob], exclude: [Glob]) {
        self.include = include
        self.exclude = exclude
    }

    /// A file is taken when it matches an include pattern and no exclude pattern, and is not
    /// below an excluded folder.
    public func accepts(file path: [UInt8]) -> Bool {
        include.contains { $0.matches(path) } && !exclude.contains { $0.matches(path) } && !isInExcludedFolder(path)
    }

    /// A folder is descended unless an exclude pattern matches it or it is (below) an
    /// excluded folder.
    public func descends(into folder: [UInt8]) -> Bool {
        !exclude.contains { $0.matches(folder) } && !isInExcludedFolder(folder)
    }

    /// This filter, also excluding `folders` and everything below them.
    public func excluding(folders: [RelativePath]) -> PathFilter {
        var copy = self
        for f in folders where !f.bytes.isEmpty && !copy.excludedFolders.contains(f) { copy.excludedFolders.append(f) }
        return copy
    }

    /// Whether `path` is an excluded folder or below one.
    private func isInExcludedFolder(_ path: [UInt8]) -> Bool {
        excludedFolders.contains { f in
            path.starts(with: f.bytes) && (path.count == f.bytes.count || path[f.bytes.count] == UInt8(ascii: "/"))
        }
    }
}
