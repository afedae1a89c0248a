import Foundation
import SluiceTestSupport
import Testing

/// `sluice mapping draft`: drafts of the corpus of messy files (Tests/fixtures/drafts/ and the
/// client fixtures) against hand-written expected mappings and DuckDB's sniffer, what a draft
/// says where the sample cannot decide, and the exit codes.
@Suite(.enabled(if: ParquetTests.readersAvailable, "needs pyarrow and duckdb (python3 -m pip install pyarrow duckdb)"))
struct MappingDraftTests {
    static let corpus = CSVReaderTests.fixtures.deletingLastPathComponent().appendingPathComponent("drafts")

    static func draft(_ args: [String]) throws -> Shell.Result {
        try Shell.run(SluiceBinary.path, ["mapping", "draft"] + args)
    }

    /// compare.py drafts every corpus file, runs check-config on the draft, pulls the file
    /// through the expected mapping and the draft (pyarrow and DuckDB read every output), and
    /// compares types and values; on CSV files it asks DuckDB's sniffer the same.
    @Test func everyCorpusDraftPassesCheckConfigLoadsTheExpectedValuesAndTypesMoreColumnsRightThanDuckDB() throws {
        let r = try Shell.run("/usr/bin/env", ["python3", Self.corpus.appendingPathComponent("compare.py").path, SluiceBinary.path, "--json"])
        #expect(r.status == 0, "\(r.stderr.suffix(3000))")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.stdout.prefix(2000))")
        let files = report["files"] as? [[String: Any]] ?? []
        #expect(files.count >= 25, "the corpus has \(files.count) files")
        var sluiceCSV = 0, duckCSV = 0
        for f in files {
            let name = f["file"] as? String ?? "?"
            #expect(f["check_config"] as? Int == 0, "\(name): check-config refuses the draft")
            #expect(f["draft_status"] as? String == "ok", "\(name): the draft does not transform its own sample: \(f)")
            #expect((f["values_mismatched"] as? [String])?.isEmpty == true, "\(name): the draft reads other values than the expected mapping: \(f)")
            #expect((f["sluice_rows"] as? Int ?? 0) > 0, "\(name): \(f)")
            guard f["format"] as? String == "csv" else { continue }
            let sluice = f["sluice_right"] as? Int ?? 0, duck = f["duckdb_right"] as? Int ?? 0
            #expect(sluice >= duck, "\(name): Sluice types \(sluice) columns right, DuckDB \(duck): \(f)")
            sluiceCSV += sluice
            duckCSV += duck
        }
        #expect(sluiceCSV > duckCSV, "on the whole corpus: Sluice \(sluiceCSV), DuckDB \(duckCSV)")
    }

    /// Where the sample cannot decide, the draft takes the safer type and says why on the line;
    /// a timestamp's zone is never guessed.
    @Test func theDraftSaysWhatTheSampleCannotDecide() throws {
        let ambiguous = try Self.draft([Self.corpus.appendingPathComponent("ambiguous_dates.csv").path, "--client", "acme", "--dataset", "ledger"])
        #expect(ambiguous.status == 0, "\(ambiguous.stderr)")
        let line = ambiguous.stdout.split(separator: "\n").first { $0.contains("source = \"Buchungsdatum\"") } ?? ""
        #expect(line.contains("type = \"string\"") && line.contains("day-first (\"%d/%m/%Y\")") && line.contains("month-first (\"%m/%d/%Y\")"), "\(line)")
        #expect(ambiguous.stdout.contains("[datasets.ledger]") && ambiguous.stdout.contains("<mappings_dir>/acme.toml"))
        #expect(ambiguous.stdout.contains("decimal_separator = \",\"") && ambiguous.stdout.contains("thousands_separator = \".\""))

        let empty = try Self.draft([Self.corpus.appendingPathComponent("empty_columns.csv").path])
        let fax = empty.stdout.split(separator: "\n").first { $0.contains("source = \"fax\"") } ?? ""
        #expect(fax.contains("type = \"string\"") && fax.contains("empty in the sample") && !fax.contains("required"), "\(fax)")

        let events = try Self.draft([Self.corpus.appendingPathComponent("tabbed_events.tsv").path])
        let at = events.stdout.split(separator: "\n").first { $0.contains("source = \"occurred_at\"") } ?? ""
        #expect(at.contains("type = \"timestamp\"") && at.contains("timezone = \"UTC\"") && at.contains("UTC assumed"), "\(at)")

        let preamble = try Self.draft([Self.corpus.appendingPathComponent("preamble_report.csv").path])
        #expect(preamble.stdout.contains("skip_rows = 3") && preamble.stdout.contains("Quarterly sales report"), "\(preamble.stdout)")
        let stray = try Self.draft([Self.corpus.appendingPathComponent("stray_text.csv").path])
        #expect(stray.stdout.contains("\"n.a.\"") && stray.stdout.contains("max_reject_ratio = 0.02"), "\(stray.stdout)")
        // A stray value with a line break and an escape character, quoted in the CSV, is named
        // in the comment escaped: the draft stays valid TOML.
        let dir = TempDir("draft-notes")
        let rows = (1...40).map { "\($0),\($0 * 3)" } + ["41,\"A\nB\u{1B}[31m\""]
        let stray2 = try Self.draft([dir.write("counts.csv", "id,count\n" + rows.joined(separator: "\n") + "\n")])
        #expect(stray2.status == 0 && stray2.stdout.contains(#""A\nB\u{1B}[31m""#) && !stray2.stdout.contains("\u{1B}"), "\(stray2.stdout) \(stray2.stderr)")
        let utf16 = try Self.draft([Self.corpus.appendingPathComponent("utf16_export.csv").path])
        #expect(utf16.stdout.contains("encoding = \"utf-16\"") && utf16.stdout.contains("delimiter = \"\\t\""), "\(utf16.stdout)")
    }

    @Test func aBadRequestOrAnUnreadableFileExitsWithItsCode() throws {
        let dir = TempDir("draft")
        #expect(try Self.draft([dir.sub("missing.csv")]).status == 2)
        #expect(try Self.draft([dir.write("empty.csv", "")]).status == 2)
        let csv = dir.write("orders.csv", "id,amount\n1,2.5\n")
        let format = try Self.draft([csv, "--format", "parquet"])
        #expect(format.status == 2 && format.stderr.contains("csv, json, jsonl, xlsx, fixed"), "\(format.stderr)")
        let client = try Self.draft([csv, "--client", "two\nlines"])
        #expect(client.status == 2 && client.stderr.contains("[a-z0-9][a-z0-9_-]{0,63}"), "\(client.stderr)")
        let dataset = try Self.draft([csv, "--dataset", "Bad-Name"])
        #expect(dataset.status == 2 && dataset.stderr.contains("[a-z0-9_]+"), "\(dataset.stderr)")
        let zip = try Shell.run("/usr/bin/env", ["zip", "-q", "-j", dir.sub("batch.zip"), csv])
        #expect(zip.status == 0, "\(zip.stderr)")
        let archive = try Self.draft([dir.sub("batch.zip")])
        #expect(archive.status == 2 && archive.stderr.contains("an archive"), "\(archive.stderr)")
        let pgp = try Self.draft([dir.write("orders.csv.pgp", "-----BEGIN PGP MESSAGE-----\n\nhQEMA\n-----END PGP MESSAGE-----\n")])
        #expect(pgp.status == 2 && pgp.stderr.contains("gpg --decrypt"), "\(pgp.stderr)")
        let broken = try Self.draft([dir.write("tickets.json", "{\"meta\": {\"count\": 3}}")])
        #expect(broken.status == 1 && broken.stderr.contains("no array of records"), "\(broken.stderr)")
        // A compressed sample is unpacked as it is read (gzip, the real tool).
        let jsonl = dir.write("events.jsonl", "{\"id\": 1, \"at\": \"2026-10-01T10:00:00Z\"}\n{\"id\": 2, \"at\": \"2026-10-01T11:00:00Z\"}\n")
        #expect(try Shell.run("/usr/bin/env", ["gzip", "-n", jsonl]).status == 0)
        let gz = try Self.draft([dir.sub("events.jsonl.gz")])
        #expect(gz.status == 0 && gz.stdout.contains("format = \"jsonl\"") && gz.stdout.contains("match = [\"events.jsonl\"]"), "\(gz.stdout) \(gz.stderr)")
    }
}
