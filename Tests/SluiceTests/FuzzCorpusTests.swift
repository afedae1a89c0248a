import Foundation
import NIOCore
import SluiceConfig
import SluiceFuzzHarnesses
import SluiceS3
import SluiceTestSupport
import Testing

/// The fuzz harnesses in a plain build: every committed seed (Fuzz/corpus/) and every input a
/// fuzzer once found a bug with (Fuzz/regressions/) goes through its harness again. A harness
/// traps on a finding, so a bug that comes back stops the run here, naming no input: replay the
/// folder with `swift run sluice-fuzz HARNESS Fuzz/regressions/HARNESS` to see which.
@Suite struct FuzzCorpusTests {
    static let fuzz = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fuzz").path

    static func inputs(_ folder: String, _ harness: String) -> [String] {
        let dir = "\(fuzz)/\(folder)/\(harness)"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return names.filter { !$0.hasPrefix(".") }.sorted().map { "\(dir)/\($0)" }
    }

    @Test(arguments: FuzzHarnesses.all.map(\.name))
    func seedsAndFoundInputsRunClean(harness: String) throws {
        let h = try #require(FuzzHarnesses.named(harness))
        let seeds = Self.inputs("corpus", harness)
        #expect(!seeds.isEmpty, "Fuzz/corpus/\(harness)/ has no seeds: run python3 Fuzz/make_corpus.py")
        for file in seeds + Self.inputs("regressions", harness) {
            let data = try #require(FileManager.default.contents(atPath: file), "\(file)")
            data.withUnsafeBytes { h.run($0) }
        }
    }

    /// Reading the same input again and again must not grow the process.
    /// - TOMLKit freed nothing it allocated: each load kept its whole toml++ tree and a C copy
    ///   of every key and string read (about 24 KB for agent.conf.example, 11 KB for a mapping
    ///   file), and the `config` fuzz harness outgrew its 2 GB limit within the hour. Sluice now
    ///   copies the tree out and frees it (TOMLTree.swift). 2,000 more loads of the example
    ///   config, or of a mapping file, in the replaying `sluice-fuzz` grew it by 48 MB and 22 MB
    ///   before; now by under 1 MB.
    /// - Foundation's XMLParser leaked on every error it reported (the `s3_xml` harness outgrew
    ///   2 GB after 307,617 answers): about 270 bytes for an HTML error page where a listing was
    ///   expected, at each poll of such an endpoint. S3's answers are now read with Sluice's own
    ///   XML parser. 20,000 more replays of that page (five parses each) grew `sluice-fuzz` by
    ///   29 MB before; now by 2.0 MB (1.2 MB through another harness: the replay's own list of
    ///   20,200 file names).
    @Test(arguments: [("config", "agent.conf.example", 2000), ("mapping", "examples/mappings/acme.toml", 2000),
                      ("s3_xml", "Fuzz/regressions/s3_xml/html-error-page", 20000)])
    func readingTheSameInputAgainAndAgainKeepsNoMemory(harness: String, file: String, more: Int) throws {
        let replay = URL(fileURLWithPath: SluiceBinary.path).deletingLastPathComponent().appendingPathComponent("sluice-fuzz").path
        let path = URL(fileURLWithPath: Self.fuzz).deletingLastPathComponent().appendingPathComponent(file).path
        func peakKiB(loads: Int) throws -> Int {
            // A folder of links to the input: the replay reads each, and the command line stays short.
            let dir = TempDir("replay")
            for i in 0..<loads { #expect(symlink(path, dir.sub(String(i))) == 0, "symlink to \(path): errno \(errno)") }
            let r = try Shell.run(replay, [harness, dir.path])
            #expect(r.status == 0, "\(replay) \(harness) \(file) ×\(loads): \(r.stderr)")
            return r.maxRSSKiB
        }
        let few = try peakKiB(loads: 200), many = try peakKiB(loads: 200 + more)
        #expect(many - few < 8192, "\(more) more loads of \(file) grew the process by \(many - few) KiB")
    }

    @Test func everyCorpusFolderIsAHarness() throws {
        let names = Set(FuzzHarnesses.all.map(\.name))
        for folder in ["corpus", "regressions"] {
            for dir in (try? FileManager.default.contentsOfDirectory(atPath: "\(Self.fuzz)/\(folder)")) ?? [] where !dir.hasPrefix(".") {
                #expect(names.contains(dir), "Fuzz/\(folder)/\(dir) is for no harness (harnesses: \(names.sorted()))")
            }
        }
    }
}

/// The bugs the fuzzers found, each as the user meets it (the inputs themselves are in
/// Fuzz/regressions/ and replayed above).
@Suite struct FuzzFindingTests {
    static let date = "a date or time is no value any setting takes"

    /// toml++ aborted the process on a table name starting with a byte no key starts with, on
    /// an array element starting with `}`, and on malformed dates and times.
    @Test(arguments: [
        ("[!", "a table name must start with"), ("[ \u{0F}", "a table name must start with"), ("[[#x]]", "a table name must start with"),
        ("[\u{7F}]", "a table name must start with"), ("a = 1\n\n  [ ?x]\n", "a table name must start with"),
        ("f = [}", "expected a value or ']' in an array"), ("f = [1,\n  # c\n}]", "expected a value or ']' in an array"),
        ("f = {a = [ }}", "expected a value or ']' in an array"), ("\u{FEFF}[=", "a table name must start with"),
        // Dates and times: the fuzzer's, then those a review of toml++'s asserts found (a `T`
        // without a time; a terminator the first check did not know; an element first on its
        // line; a date padded past toml++'s 127-character look-back).
        ("e = 2026-10-01 9\n", date), ("e = [2026-10-01 9]", date), ("e=2222----dd 9 ", date),
        ("d = 1979-05-27T:00\n", date), ("d = 2026-10-01T+01:00\n", date), ("d = {a = 1979-05-27T:00}\n", date),
        ("d = 2026-10-01 9\u{0B}", date), ("d = 2026-10-01 9\u{2028}\n", date), ("f = [\n2026-10-01 9\n]\n", date),
        ("d = 2" + String(repeating: "_", count: 115) + "026-10-01 9x\n", date), ("d = 07:32:00\n", date), ("d = -1979-05-27\n", date),
        // toml++ reads a bare value on through control bytes, DEL and letters, to white space
        // or `,`, `]`, `}`, `#` (the long `config` run): the check stopped at the first of them.
        ("10=1a5\u{7F}-r\u{7F}-e\u{12} 5\u{0C}", date), ("x = 1\u{01}\u{02}\u{03}-\u{05}\u{06}-\u{08}\u{0E} 5\n", date),
        ("x = [1é3é-5é-7é 5]", date), ("x = {y = 1a5\u{7F}-r\u{7F}-e\u{12} 5}", date),
        // An array element starting with a Unicode line separator.
        ("f = [\u{2028}]\n", "expected a value or ']' in an array"), ("f = [1,\n\u{85}]", "expected a value or ']' in an array"),
        ("t = {a = [\u{2029}]}\n", "expected a value or ']' in an array"),
    ])
    func toml_sAbortsAreConfigErrorsNotCrashes(text: String, message: String) throws {
        let dir = TempDir("toml")
        dir.write("agent.conf", Data(text.utf8))
        let r = try SluiceBinary.run(["check-config"], config: dir.sub("agent.conf"))
        #expect(r.status == 2, "\(r.stderr)")
        #expect(r.stderr.contains(message), "\(r.stderr)")
        dir.config()
        dir.write("mappings/acme.toml", Data(text.utf8))
        let m = try SluiceBinary.run(["check-config"], config: dir.sub("agent.conf"))
        #expect(m.status == 2 && m.stderr.contains("acme.toml") && m.stderr.contains(message), "\(m.stderr)")
    }

    /// The check knows a value's brackets and strings from a table header.
    @Test func validTOMLWithBracketsOpeningLinesIsNotRefused() throws {
        let text = """
            a = [
              [1, 2],
              [ {x = 1} ],
              { y = "[!" },
            ]
            b = \"\"\"
            [! not a header
            \"\"\"
            c = '''
            [? nor this'''
            d = "[# nor this" # [! a comment
            e = [ "}", '}', \"\"\"}\"\"\", # }
              {x = 1}, {y = [2, {z = "}"}]},
            ]
            [ "quoted table" ]
            [[ 'array'.of-tables ]]
            """
        #expect(TOMLText.crashingConstruct(Array(text.utf8)) == nil)
        #expect(throws: Never.self) { try TOMLText.parse(text, file: "t.toml") }
        #expect(TOMLText.crashingConstruct(Array("x = 1\n[\u{01}]".utf8))?.line == 2)
        #expect(TOMLText.crashingConstruct(Array("x = [\n\n  }]".utf8))?.column == 3)
        // Numbers, and keys and strings shaped like dates, are not refused; dates are, even
        // valid ones (no setting takes one), where the value starts.
        for ok in ["n = -1_000 # x\n", "x = 1e-5\n", "y = [-3, +4, 1_000E-3, 0xff, inf, -nan]\n", "s = \"2026-10-01\"\n", "2026-10-01 = 1\n",
                   "t = {2026-10-01 = 1, 07:30 = 2}\n", "[2026-10-01]\nk = 1\n", "a = 1 # 2026-10-01 9\n"] {
            #expect(TOMLText.crashingConstruct(Array(ok.utf8)) == nil, "\(ok)")
        }
        for bad in ["d = 2026-10-01 09:00:00\n", "d = 2026-10-01\n", "d = [1, 2026-10-01]"] {
            #expect(TOMLText.crashingConstruct(Array(bad.utf8))?.what.hasPrefix(Self.date) == true, "\(bad)")
        }
    }

    /// Foundation's XMLParser crashed the process on a tag name that is not UTF-8; such an S3
    /// answer is now one that cannot be read.
    @Test func anS3AnswerThatIsNotUTF8IsUnreadableNotACrash() {
        let bytes = Data("<ListBucketResult><Key".utf8) + Data([0xFF, 0xFE, 0xFF]) + Data("></Key></ListBucketResult>".utf8)
        #expect(ListParser.parse(bytes, urlEncoded: false) == nil)
        #expect(ErrorParser.parse(bytes) == nil)
        #expect(ListParser.parse(Data("<ListBucketResult><Contents><Key>é</Key><Size>1</Size></Contents></ListBucketResult>".utf8), urlEncoded: false)?.objects.count == 1)
    }

    /// It crashed too on a processing instruction without data. S3's answers are now read with
    /// Sluice's own XML parser: a processing instruction, a comment or CDATA is read past, and
    /// a DOCTYPE that declares entities makes the answer unreadable.
    @Test(arguments: ["<?x?>", "<!-- c -->", "<![CDATA[k]]>", "<?xmlF?>"])
    func anS3AnswerWithOtherMarkupIsReadNotACrash(inside: String) {
        let answer = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult>\(inside)<Contents><Key>k</Key><Size>1</Size></Contents></ListBucketResult>"
        #expect(ListParser.parse(Data(answer.utf8), urlEncoded: false)?.objects.map(\.key) == ["k"])
        if !inside.hasPrefix("<![") {
            #expect(ListParser.parse(Data("\(inside)\n<ListBucketResult></ListBucketResult>".utf8), urlEncoded: false)?.objects.count == 0)
        }
        let entities = "<!DOCTYPE x [<!ENTITY e \"y\">]><ListBucketResult><Contents><Key>&e;</Key><Size>1</Size></Contents></ListBucketResult>"
        #expect(ListParser.parse(Data(entities.utf8), urlEncoded: false) == nil)
        for plain in ["<?xml version=\"1.0\"?>\n<ListBucketResult><Contents><Key>k</Key><Size>1</Size></Contents></ListBucketResult>",
                      "\u{FEFF}<?xml version=\"1.0\"?><ListBucketResult><Contents><Key>k</Key><Size>1</Size></Contents></ListBucketResult>",
                      "<ListBucketResult><Contents><Key>k</Key><Size>1</Size></Contents></ListBucketResult>"] {
            #expect(ListParser.parse(Data(plain.utf8), urlEncoded: false)?.objects.count == 1, "\(plain)")
        }
    }

    /// What an endpoint that is not S3 answers (a proxy's HTML error page, a truncated
    /// listing) is an answer that cannot be read, with nothing kept from it.
    @Test func anAnswerThatIsNotXMLIsUnreadable() throws {
        let page = try #require(FileManager.default.contents(atPath: "\(FuzzCorpusTests.fuzz)/regressions/s3_xml/html-error-page"))
        #expect(ListParser.parse(page, urlEncoded: true) == nil)
        #expect(ErrorParser.parse(page) == nil)
        let cut = Data("<ListBucketResult><Contents><Key>k</Key><Size>1</Size></Contents><Contents><Key>j".utf8)
        #expect(ListParser.parse(cut, urlEncoded: false) == nil)
        #expect(ListParser.parse(Data("<ListBucketResult><Key>a</Key></ListBucketResult><x/>".utf8), urlEncoded: false) == nil)
        #expect(XMLFields.parse(ByteBuffer(bytes: page), record: "Upload", fields: ["Key", "UploadId"]).top.isEmpty)
    }
}
