import Foundation
import SluiceConfig
import SluiceIngest
import SluiceSources
import SluiceSupport
import SluiceTestSupport
import Testing

/// What users hit in other tools, fed to the real `sluice`: each gives a clear error or reject,
/// no crash, bounded memory, and nothing stored is lost.
@Suite struct HostileInputTests {
    /// A drop folder client whose mapping takes CSV, JSON and XLSX.
    static func setUp(_ label: String) -> TempDir {
        let dir = TempDir(label)
        dir.config()
        dir.write("mappings/acme.toml", """
            [datasets.rows]
            match = ["*.csv"]
            format = "csv"
            fields = [
              { name = "first", source = "c0", type = "string" },
              { name = "last", source = "c99999", type = "int64" },
            ]
            [datasets.docs]
            match = ["*.json"]
            format = "json"
            fields = [{ name = "id", source = "id", type = "int64" }]
            [datasets.book]
            match = ["*.xlsx"]
            format = "xlsx"
            fields = [{ name = "a", source = "a", type = "string" }]
            """)
        return dir
    }

    static func pull(_ dir: TempDir) throws -> (Shell.Result, [String: [String: Any]]) {
        let r = try SluiceBinary.run(["pull", "acme", "--json"], config: dir.sub("agent.conf"))
        let report = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any] ?? [:]
        return (r, SFTPTests.files(report))
    }

    /// The transform error of the version of `path`, from `sluice status --json`'s failures,
    /// or the manifest.
    static func transformError(_ dir: TempDir, _ path: String) throws -> String {
        try TestManifest.query(dir, """
            SELECT t.error FROM transform t JOIN versions v ON v.version_id = t.version_id
            WHERE v.path = '\(path)' AND t.parent_id IS NULL ORDER BY t.id DESC LIMIT 1
            """).stdout
    }

    /// A 2 GiB file of one line with no line end (sparse: zeros): stored whole, byte for byte;
    /// its transform stops at 64 MiB with a message, in bounded memory.
    @Test func aTwoGigabyteLineWithNoNewline() throws {
        let dir = Self.setUp("longline")
        let huge = dir.sub("drop/huge.csv")
        try FileManager.default.createDirectory(atPath: dir.sub("drop"), withIntermediateDirectories: true)
        try Shell.check("/usr/bin/truncate", ["-s", "2G", huge])
        let (r, files) = try Self.pull(dir)
        #expect(r.status == 1, "the transform fails: \(r.stderr)")
        #expect(files["huge.csv"]?["status"] as? String == "new")
        #expect(files["huge.csv"]?["size"] as? Int == 2 << 30)
        let error = try Self.transformError(dir, "huge.csv")
        #expect(error.contains("the record that starts on line 1 is longer than 64 MiB without ending"), "\(error)")
        #expect(r.maxRSSKiB < 600 << 10, "peak memory \(r.maxRSSKiB >> 10) MiB for a 2 GiB line")
        let audit = try SluiceBinary.run(["audit"], config: dir.sub("agent.conf"))
        #expect(audit.status == 0, "\(audit.stdout)")
    }

    @Test func aFileOfOnlyAByteOrderMark() throws {
        let dir = Self.setUp("bom")
        dir.write("drop/bom.csv", Data([0xEF, 0xBB, 0xBF]))
        let (r, files) = try Self.pull(dir)
        #expect(r.status == 1)
        #expect(files["bom.csv"]?["status"] as? String == "new", "the delivery is kept")
        #expect(try Self.transformError(dir, "bom.csv").contains("the file is empty: no header row"))
    }

    @Test func aCSVWithAHundredThousandColumns() throws {
        let dir = Self.setUp("wide")
        let header = (0..<100_000).map { "c\($0)" }.joined(separator: ",")
        let row = (0..<100_000).map { String($0 % 10) }.joined(separator: ",")
        dir.write("drop/wide.csv", header + "\n" + row + "\n" + row + "\n")
        let (r, files) = try Self.pull(dir)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(files["wide.csv"]?["status"] as? String == "new")
        #expect(try TestManifest.query(dir, "SELECT rows_written FROM transform WHERE status = 'ok'").stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "2")
        #expect(r.maxRSSKiB < 600 << 10, "peak memory \(r.maxRSSKiB >> 10) MiB")
    }

    @Test func aJSONDocumentNestedAHundredThousandDeep() throws {
        let dir = Self.setUp("deep")
        dir.write("drop/deep.json", String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000))
        let (r, files) = try Self.pull(dir)
        #expect(r.status == 1)
        #expect(files["deep.json"]?["status"] as? String == "new")
        #expect(try Self.transformError(dir, "deep.json").contains("nested more than 512 deep"))
    }

    /// An .xlsx whose shared-strings part unzips to 1 GiB: refused before it is read into memory.
    @Test func aWorkbookWithAGigabyteOfSharedStrings() throws {
        let dir = Self.setUp("sst")
        try FileManager.default.createDirectory(atPath: dir.sub("drop"), withIntermediateDirectories: true)
        let script = """
            import sys, zipfile
            ns = 'http://schemas.openxmlformats.org/spreadsheetml/2006/main'
            rel = 'http://schemas.openxmlformats.org/officeDocument/2006/relationships'
            with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:
                z.writestr('xl/workbook.xml', f'<workbook xmlns="{ns}" xmlns:r="{rel}"><sheets><sheet name="S" sheetId="1" r:id="rId1"/></sheets></workbook>')
                z.writestr('xl/_rels/workbook.xml.rels', f'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="{rel}/worksheet" Target="worksheets/sheet1.xml"/><Relationship Id="rId2" Type="{rel}/sharedStrings" Target="sharedStrings.xml"/></Relationships>')
                z.writestr('xl/worksheets/sheet1.xml', f'<worksheet xmlns="{ns}"><sheetData><row r="1"><c r="A1" t="s"><v>0</v></c></row></sheetData></worksheet>')
                with z.open('xl/sharedStrings.xml', 'w', force_zip64=True) as f:
                    f.write(f'<sst xmlns="{ns}">'.encode())
                    block = b'<si><t>aaaaaaaaaaaaaaaaaaaaaaaa</t></si>' * 30000
                    for _ in range((1 << 30) // len(block)):
                        f.write(block)
                    f.write(b'</sst>')
            """
        try Shell.check("/usr/bin/env", ["python3", "-c", script, dir.sub("drop/book.xlsx")])
        let (r, files) = try Self.pull(dir)
        #expect(r.status == 1)
        #expect(files["book.xlsx"]?["status"] as? String == "new")
        let error = try Self.transformError(dir, "book.xlsx")
        #expect(error.contains("xl/sharedStrings.xml unzips to more than"), "\(error)")
        #expect(r.maxRSSKiB < 600 << 10, "peak memory \(r.maxRSSKiB >> 10) MiB")
    }

    /// Two names that differ only in Unicode normalization (é precomposed, and e with a
    /// combining accent) are two files: two versions, two lake files, two outputs.
    @Test func namesThatDifferOnlyInUnicodeNormalization() throws {
        let dir = Self.setUp("nfc")
        let nfc = "caf\u{E9}.csv", nfd = "cafe\u{301}.csv"
        #expect(Array(nfc.utf8) != Array(nfd.utf8))
        dir.write("drop/\(nfc)", "c0,c99999\nprecomposed,1\n")
        dir.write("drop/\(nfd)", "c0,c99999\ncombining,2\n")
        let r = try SluiceBinary.run(["pull", "acme"], config: dir.sub("agent.conf"))
        #expect(r.status == 0, "\(r.stderr)")
        let lake = try TestManifest.query(dir, "SELECT lake_path FROM version").stdout.split(separator: "\n")
        #expect(lake.count == 2, "\(lake)")
        // Compared as bytes: Swift's String equality would call the two names equal.
        #expect(Set(lake.map { Array($0.utf8) }).count == 2, "two lake files")
        for path in lake { #expect(FileManager.default.fileExists(atPath: dir.sub("lake/\(path)"))) }
        let outputs = try TestManifest.query(dir, "SELECT output_path FROM transform WHERE status = 'ok'").stdout.split(separator: "\n")
        #expect(Set(outputs.map { Array($0.utf8) }).count == 2, "\(outputs)")
        #expect(try SluiceBinary.run(["audit"], config: dir.sub("agent.conf")).status == 0)
    }

    /// A file that shrinks while it is copied is not stored (the next pass takes it whole).
    @Test func aFileThatShrinksWhileCopied() throws {
        let dir = Self.setUp("shrink")
        let big = dir.write("drop/shrinking.csv", Data(repeating: 0x41, count: 12 << 20))
        let agent = try loadAgent(dir)
        let hooks = IngestHooks(afterFirstChunk: { c in
            guard c.path.display == "shrinking.csv" else { return }
            _ = truncate(big, 1 << 20)
        })
        let r = try agent.pull(client: "acme", source: nil, hooks: hooks, transform: false)
        let file = try #require(r.files.first { $0.path == "shrinking.csv" })
        #expect(file.status == .skipped)
        #expect(file.error?.contains("changed while copying") == true, "\(file.error ?? "")")
        #expect(try agent.history(client: "acme", path: "shrinking.csv").isEmpty)
        #expect(lakeLeftovers(dir).isEmpty)
        let next = try agent.pull(client: "acme", source: nil, transform: false)
        #expect(next.counts.new == 1)
        #expect(try agent.history(client: "acme", path: "shrinking.csv").first?.size == 1 << 20)
    }

    /// A file replaced by a symlink to /etc/shadow between the listing and the opening is
    /// refused: the open does not leave the drop folder.
    @Test func aFileSwappedForASymlinkOutOfTheFolderAfterListing() throws {
        let dir = Self.setUp("swap")
        let path = dir.write("drop/report.csv", "c0,c99999\nx,1\n")
        let config = try AgentConfig.load(path: dir.sub("agent.conf"))
        let s = try #require(config.clients.first?.sources.first)
        let source = try #require(s.settings.makeSource(SourceContext(client: "acme", name: s.name, logger: testLogger, stateDir: config.stateDir)))
        let pass = try source.beginPass(moveTargets: [])
        defer { pass.end() }
        var candidates: [Candidate] = []
        try pass.list(issue: { _ in }, candidate: { candidates.append($0) })
        let candidate = try #require(candidates.first { $0.path.display == "report.csv" })
        #expect(unlink(path) == 0 && symlink("/etc/shadow", path) == 0)
        do {
            let stream = try pass.open(candidate)
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = try buffer.withUnsafeMutableBytes { try stream.read(into: $0) }
            Issue.record("opened the symlink and read \(n) bytes")
        } catch {
            #expect("\(error)".contains("outside the source root"), "\(error)")
        }
        // Through the agent: skipped with that error, nothing stored.
        let r = try loadAgent(dir).pull(client: "acme", source: nil, transform: false)
        #expect(r.counts.new == 0)
        let skipped = try #require(r.files.first { $0.path == "report.csv" })
        #expect(skipped.status == .skipped && skipped.error?.contains("outside the source root") == true, "\(skipped)")
    }
}

/// Names a local file system cannot hold come from object stores.
@Suite(.enabled(if: MotoServer.available, "needs moto's S3 server: pip install 'moto[server]' boto3"))
struct HostileNameTests {
    /// An object key whose last part is 300 bytes (a lake file name may have 255): that object
    /// fails with a message naming it; the others are stored, and the next pass tries it again.
    @Test func aThreeHundredByteNameFailsAloneAndClearly() throws {
        let moto = try MotoServer()
        try moto.bucket("long-names")
        let long = String(repeating: "n", count: 300) + ".csv"
        try moto.put("long-names", ["in/\(long)": "too long\n", "in/ok.csv": "fine\n"])
        let dir = S3Tests.setUp(moto, bucket: "long-names", prefix: "in/")
        let (r, report, files) = try S3Tests.pull(dir)
        #expect(r.status == 1, "one file failed: \(r.stderr)")
        #expect(files["ok.csv"]?["status"] as? String == "new")
        let failed = try #require(files[long], "\(report)")
        #expect(failed["status"] as? String == "failed" || failed["status"] as? String == "skipped", "\(failed)")
        let error = failed["error"] as? String ?? ""
        #expect(error.contains("is 304 bytes long") && error.contains("at most 255 bytes") && error.contains("nothing was copied"), "\(error)")
        #expect(moto.gets("long-names", "in/\(long)") == 0, "refused before it was downloaded")
        #expect(lakeLeftovers(dir).isEmpty)
        #expect(try SluiceBinary.run(["audit"], config: dir.sub("agent.conf")).status == 0)
        let (again, _, files2) = try S3Tests.pull(dir)
        #expect(again.status == 1 && files2[long]?["error"] as? String == error, "the same clear error next pass")
    }
}
