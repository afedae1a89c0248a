import SluiceAgent
import SluiceLake
import SluiceManifest
import SluiceTestSupport
import Testing
import SluiceSupport
import SluiceIngest
import SluiceConfig
import SluiceSources
import SluiceTransform
import SluiceFormats

@Suite struct GlobTests {
    func m(_ pattern: String, _ path: String) throws -> Bool {
        try Glob(pattern).matches(Array(path.utf8))
    }

    @Test func nameOnlyPatternsMatchAtAnyDepth() throws {
        #expect(try m("*.csv", "orders.csv"))
        #expect(try m("*.csv", "a/b/orders.csv"))
        #expect(try !m("*.csv", "orders.csv.part"))
        #expect(try m(".*", "a/.hidden"))
        #expect(try m("?.txt", "x/a.txt"))
        #expect(try !m("?.txt", "x/ab.txt"))
    }

    @Test func slashPatternsMatchTheWholePath() throws {
        #expect(try m("in/*.csv", "in/a.csv"))
        #expect(try !m("in/*.csv", "in/sub/a.csv"))
        #expect(try !m("in/*.csv", "x/in/a.csv"))
        #expect(try m("/in/*.csv", "in/a.csv"))
    }

    @Test func globstarCrossesFoldersAndMatchesZero() throws {
        #expect(try m("**/*.csv", "a.csv"))
        #expect(try m("**/*.csv", "a/b/c.csv"))
        #expect(try m("in/**/x.csv", "in/x.csv"))
        #expect(try m("in/**/x.csv", "in/a/b/x.csv"))
        #expect(try m("in/**", "in/a/b"))
        #expect(try !m("in/**", "out/a"))
        #expect(try m("**/.*", "a/.b"))
        #expect(try !m("*", "a/b") == false)  // name-only: matches the name "b"
    }

    @Test func classes() throws {
        #expect(try m("[ab].csv", "a.csv"))
        #expect(try !m("[!ab].csv", "a.csv"))
        #expect(try m("f[0-9].csv", "f7.csv"))
    }

    @Test func badPatternsAreRejected() {
        #expect(throws: Glob.SyntaxError.self) { try Glob("[abc") }
        #expect(throws: Glob.SyntaxError.self) { try Glob("a**b") }
        #expect(throws: Glob.SyntaxError.self) { try Glob("") }
        #expect(throws: Glob.SyntaxError.self) { try Glob("a//b") }
    }

    @Test func defaultExcludesDropPartialAndHiddenFiles() throws {
        let f = PathFilter(include: [try Glob("**/*")], exclude: try [".*", "**/.*", "*.part", "*.tmp", "*.partial"].map { try Glob($0) })
        #expect(f.accepts(file: Array("a/orders.csv".utf8)))
        #expect(!f.accepts(file: Array("a/orders.csv.part".utf8)))
        #expect(!f.accepts(file: Array(".env".utf8)))
        #expect(!f.descends(into: Array("a/.git".utf8)))
    }
}

@Suite struct LakeNameTests {
    @Test func versionMarkerKeepsTheExtension() {
        #expect(LakeNames.rawPath(client: "c", source: "s", path: RelativePath("in/orders.csv"), version: 2) == "raw/c/s/in/orders.v2.csv")
        #expect(LakeNames.rawPath(client: "c", source: "s", path: RelativePath("README"), version: 1) == "raw/c/s/README.v1")
        #expect(LakeNames.rawPath(client: "c", source: "s", path: RelativePath("a.tar.gz"), version: 1) == "raw/c/s/a.tar.v1.gz")
        #expect(LakeNames.rawPath(client: "c", source: "s", path: RelativePath(".env"), version: 1) == "raw/c/s/.env.v1")
    }

    @Test func oddBytesAreEscapedInjectively() {
        let names: [[UInt8]] = [
            Array("a%0A.txt".utf8), Array("a\n.txt".utf8), [0x61, 0xFF, 0x2E, 0x74], Array("a%FF.t".utf8),
            Array("é ü.csv".utf8), Array("orders.v1.csv".utf8), Array("orders.csv".utf8), Array("x.v1".utf8), Array("x".utf8),
        ]
        var seen = Set<String>()
        for n in names {
            for v in 1...2 {
                let p = LakeNames.rawPath(client: "c", source: "s", path: RelativePath(bytes: n), version: v)
                #expect(!p.contains("\n"))
                #expect(seen.insert(p).inserted, "collision on \(p)")
            }
        }
        #expect(LakeNames.rawPath(client: "c", source: "s", path: RelativePath("é ü.csv"), version: 1) == "raw/c/s/é ü.v1.csv")
    }

    @Test func displayEscapesOnlyInvalidUTF8() {
        #expect(RelativePath(bytes: [0x61, 0xFF]).display == "a\\xFF")
        #expect(RelativePath("new\nline").display == "new\nline")
    }

    @Test func pathsBelowAFolder() {
        func below(_ path: String, _ root: String) -> String? { RelativePath(path: Array(path.utf8), below: Array(root.utf8))?.display }
        #expect(below("/srv/drop/a/b", "/srv/drop") == "a/b")
        #expect(below("/srv/drop/a", "/srv/drop/") == "a")
        #expect(below("/a", "/") == "a")
        #expect(below("/srv/drop", "/srv/drop") == nil)
        #expect(below("/srv/dropbox/a", "/srv/drop") == nil)
        #expect(below("/srv/drop/a", "srv/drop") == nil, "a relative root is no root")
    }

    @Test func printableTextEscapesControlsAndLineSeparators() {
        #expect(PrintableText.escape("plain ü.csv") == "plain ü.csv")
        #expect(PrintableText.escape("a\nb\r\t\u{1B}[2J\u{7F}") == "a%0Ab%0D%09%1B[2J%7F")
        #expect(PrintableText.escape("x\u{85}y\u{2028}z") == "x%C2%85y%E2%80%A8z")
    }
}

@Suite struct PathFilterTests {
    @Test func excludedFoldersAreTakenLiterallyWithEverythingBelow() throws {
        let filter = PathFilter(include: [try Glob("**/*")], exclude: []).excluding(folders: [RelativePath("done/[2026]"), RelativePath("")])
        #expect(!filter.accepts(file: Array("done/[2026]/a.csv".utf8)))
        #expect(!filter.descends(into: Array("done/[2026]".utf8)))
        #expect(!filter.descends(into: Array("done/[2026]/sub".utf8)))
        #expect(filter.accepts(file: Array("done/2/a.csv".utf8)), "no glob syntax: [2026] is the folder's name")
        #expect(filter.descends(into: Array("done".utf8)))
        #expect(filter.accepts(file: Array("done/[2026]x/a.csv".utf8)))
        #expect(filter.excludedFolders.count == 1, "the root is never excluded")
    }
}

@Suite struct TimestampTests {
    @Test func formatsUTCWithMicroseconds() {
        #expect(Timestamp.iso8601(nanoseconds: 0) == "1970-01-01T00:00:00.000000Z")
        #expect(Timestamp.iso8601(nanoseconds: 1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123456Z")
        #expect(Timestamp.iso8601(nanoseconds: -1_000) == "1969-12-31T23:59:59.999999Z")
    }
}
