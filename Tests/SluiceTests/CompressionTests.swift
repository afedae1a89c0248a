import Foundation
import SluiceFormats
import SluiceTestSupport
import Testing

/// Compressed deliveries: the lake keeps the compressed bytes as the version; the transform
/// unpacks them as it reads, streamed, with the real tools making the fixtures.
@Suite(.enabled(if: ParquetTests.readersAvailable, "needs pyarrow and duckdb (python3 -m pip install pyarrow duckdb)"))
struct CompressionTests {
    /// The tool that makes each compression, as a client would run it.
    static let tools: [Compression: [String]] = [
        .gzip: ["/usr/bin/env", "gzip", "-c"],
        .bzip2: ["/usr/bin/env", "bzip2", "-c"],
        .xz: ["/usr/bin/env", "xz", "-c"],
        .zstd: ["/usr/bin/env", "zstd", "-q", "-c"],
    ]

    /// `data` compressed by the real tool.
    static func compress(_ data: Data, _ c: Compression, in dir: TempDir) throws -> Data {
        let plain = dir.write("plain-\(UUID().uuidString)", data)
        let out = plain + c.suffix
        let tool = tools[c]!
        let r = try Shell.run("/bin/sh", ["-c", "\"$@\" < '\(plain)' > '\(out)'", "sh"] + tool)
        #expect(r.status == 0, "\(tool.joined(separator: " ")): \(r.stderr)")
        return try Data(contentsOf: URL(fileURLWithPath: out))
    }

    static let orders = TransformTests.mapping

    @Test(arguments: Compression.allCases)
    func aCompressedCSVIsStoredAsSentAndTransformedUnpacked(_ c: Compression) throws {
        let dir = FormatTests.lake(Self.orders, files: [:])
        let plain = try FormatTests.fixture("acme/orders_2026-10-01.csv")
        let packed = try Self.compress(plain, c, in: dir)
        dir.write("drop/orders_2026-10-01.csv\(c.suffix)", packed)
        let (status, transforms) = try FormatTests.pull(dir)
        #expect(status == 0)
        let t = try #require(transforms["orders_2026-10-01.csv\(c.suffix)"], "\(transforms.keys)")
        #expect(t["status"] as? String == "ok" && t["rows_written"] as? Int == 38 && t["rows_rejected"] as? Int == 2, "\(t)")
        #expect(parquetRowCount(dir.sub("lake/") + (t["output_path"] as? String ?? "")) == 38)
        // The version is the compressed file, byte for byte.
        let stored = try FileManager.default.subpathsOfDirectory(atPath: dir.sub("lake/raw")).filter { $0.hasSuffix(c.suffix) }
        #expect(stored.count == 1)
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir.sub("lake/raw/\(stored[0])"))) == packed)
        expectDatasetFoldersRead(dir)
    }

    @Test func theContentDecidesASuffixThatLiesFailsAndADamagedFileFails() throws {
        let dir = FormatTests.lake(Self.orders, files: [:])
        let plain = try FormatTests.fixture("acme/orders_2026-10-01.csv")
        let gz = try Self.compress(plain, .gzip, in: dir)
        dir.write("drop/orders_magic.csv", gz)                      // gzip without the suffix
        dir.write("drop/orders_lies.csv.gz", plain)                 // the suffix without gzip
        dir.write("drop/orders_bz.csv.xz", try Self.compress(plain, .bzip2, in: dir))  // another compression
        dir.write("drop/orders_cut.csv.gz", gz.prefix(gz.count / 2)) // cut off half-way
        let (status, transforms) = try FormatTests.pull(dir)
        #expect(status == 1, "a failed transform makes pull exit 1")
        #expect(transforms["orders_magic.csv"]?["status"] as? String == "ok" && transforms["orders_magic.csv"]?["rows_written"] as? Int == 38)
        let lies = transforms["orders_lies.csv.gz"]?["error"] as? String ?? ""
        #expect(transforms["orders_lies.csv.gz"]?["status"] as? String == "failed" && lies.contains("ends in .gz but is not gzip data"), "\(lies)")
        let other = transforms["orders_bz.csv.xz"]?["error"] as? String ?? ""
        #expect(other.contains("ends in .xz but is not xz data") && other.contains("which is bzip2"), "\(other)")
        let cut = transforms["orders_cut.csv.gz"]?["error"] as? String ?? ""
        #expect(transforms["orders_cut.csv.gz"]?["status"] as? String == "failed" && cut.contains("damaged or cut short"), "\(cut)")
        #expect(transforms["orders_cut.csv.gz"]?["output_path"] is NSNull, "nothing of a damaged file is published")
        // Every delivery is kept as it came, failed or not.
        #expect(try FileManager.default.subpathsOfDirectory(atPath: dir.sub("lake/raw/acme")).filter { $0.contains(".v1") }.count == 4)
        expectDatasetFoldersRead(dir)
    }

    @Test func aDecompressionBombStopsAtEitherLimitWithoutWritingAnything() throws {
        // 8 MiB of one repeated row, which gzip shrinks about 500 times.
        let row = "1;01.10.2026 10:00;ACME;1,00;A;x\n"
        let header = "Order No;Date;Customer;Total;Status;Note\n"
        let big = Data((header + String(repeating: row, count: (8 << 20) / row.utf8.count)).utf8)
        for (agent, limit) in [("max_unpacked_bytes = \"2MiB\"", "max_unpacked_bytes"), ("max_unpack_ratio = 50", "max_unpack_ratio")] {
            let dir = TempDir("bomb")
            dir.config(agent: agent, tables: """
                [clients.acme.sources.drop]
                type = "folder"
                path = "drop"
                min_age = "0s"
                """)
            dir.write("mappings/acme.toml", Self.orders)
            dir.write("drop/orders_bomb.csv.gz", try Self.compress(big, .gzip, in: dir))
            let (status, transforms) = try FormatTests.pull(dir)
            #expect(status == 1)
            let t = try #require(transforms["orders_bomb.csv.gz"])
            #expect(t["status"] as? String == "failed" && (t["error"] as? String ?? "").contains(limit), "\(t)")
            let processed = (try? FileManager.default.subpathsOfDirectory(atPath: dir.sub("lake/processed"))) ?? []
            #expect(!processed.contains { $0.hasSuffix(".parquet") }, "\(processed)")
        }
    }

    @Test func unpackNoneTakesTheFileAsItIs() throws {
        let mapping = Self.orders.replacingOccurrences(of: "max_reject_ratio = 0.2", with: "max_reject_ratio = 0.2\nunpack = \"none\"")
        let dir = FormatTests.lake(mapping, files: [:])
        dir.write("drop/orders_2026-10-01.csv.gz", try Self.compress(try FormatTests.fixture("acme/orders_2026-10-01.csv"), .gzip, in: dir))
        let (_, transforms) = try FormatTests.pull(dir)
        #expect(transforms["orders_2026-10-01.csv.gz"]?["status"] as? String == "unmapped", "the glob sees the whole name")
        let bad = FormatTests.lake(mapping.replacingOccurrences(of: "unpack = \"none\"", with: "unpack = \"zip\""), files: [:])
        let r = try SluiceBinary.run(["check-config"], config: bad.sub("agent.conf"))
        #expect(r.status == 2 && r.stderr.contains("datasets.orders.unpack"), "\(r.stderr)")
    }

    @Test func aGzippedWorkbookIsUnpackedThroughAnUnnamedFile() throws {
        let dir = FormatTests.lake(FormatTests.salesMapping, files: [:])
        let xlsx = try FormatTests.fixture("hooli/sales_2026-09.xlsx")
        dir.write("drop/sales_2026-09.xlsx.gz", try Self.compress(xlsx, .gzip, in: dir))
        let (status, transforms) = try FormatTests.pull(dir)
        #expect(status == 0)
        let t = try #require(transforms["sales_2026-09.xlsx.gz"])
        #expect(t["status"] as? String == "ok" && t["rows_written"] as? Int == 29 && t["rows_rejected"] as? Int == 1, "\(t)")
        expectDatasetFoldersRead(dir)
    }

    @Test func catWritesAVersionUnpackedOrAsStored() throws {
        let dir = FormatTests.lake(Self.orders, files: [:])
        let plain = try FormatTests.fixture("acme/orders_2026-10-01.csv")
        let packed = try Self.compress(plain, .zstd, in: dir)
        dir.write("drop/orders_2026-10-01.csv.zst", packed)
        _ = try FormatTests.pull(dir)
        let out = dir.sub("out.bin")
        let cat = { (args: String) throws -> Shell.Result in
            try Shell.run("/bin/sh", ["-c", "'\(SluiceBinary.path)' cat acme \(args) --config '\(dir.sub("agent.conf"))' > '\(out)'"])
        }
        #expect(try cat("orders_2026-10-01.csv.zst").status == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: out)) == plain, "unpacked by default")
        #expect(try cat("orders_2026-10-01.csv.zst --raw --version 1").status == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: out)) == packed, "--raw: the stored bytes")
        for (args, words) in [("orders_2026-10-01.csv.zst --version 2", "no version 2"), ("nope.csv", "no stored file nope.csv"),
                              ("orders_2026-10-01.csv.zst --source other", "from source 'other'")] {
            let r = try cat(args)
            #expect(r.status == 2 && r.stderr.contains(words), "\(args): \(r.stderr)")
        }
    }

    @Test func theAgentLimitsAreValidated() throws {
        for (line, key) in [("max_unpacked_bytes = \"lots\"", "agent.max_unpacked_bytes"), ("max_unpack_ratio = 0", "agent.max_unpack_ratio")] {
            let dir = TempDir("limits")
            dir.config(agent: line, tables: """
                [clients.acme.sources.drop]
                type = "folder"
                path = "drop"
                """)
            let r = try SluiceBinary.run(["check-config"], config: dir.sub("agent.conf"))
            #expect(r.status == 2 && r.stderr.contains(key), "\(line): \(r.stderr)")
        }
    }
}

/// How a compression is recognised, without any tool.
@Suite struct CompressionNameTests {
    @Test func magicBytesAndSuffixes() {
        #expect(Compression.sniff([0x1F, 0x8B, 0x08]) == .gzip)
        #expect(Compression.sniff(Array("BZh91AY".utf8)) == .bzip2)
        #expect(Compression.sniff([0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00]) == .xz)
        #expect(Compression.sniff([0x28, 0xB5, 0x2F, 0xFD, 0x24]) == .zstd)
        #expect(Compression.sniff(Array("id;amount".utf8)) == nil && Compression.sniff([0x1F]) == nil)
        #expect(Compression.named(by: Array("a/orders.CSV.GZ".utf8)) == .gzip)
        #expect(Compression.named(by: Array("x.tar.zst".utf8)) == .zstd)
        #expect(Compression.named(by: Array(".gz".utf8)) == nil, "a bare suffix is a name, not a compression")
        #expect(Compression.strippingSuffix(Array("2026/orders_01.csv.bz2".utf8)).map { String(decoding: $0, as: UTF8.self) } == "2026/orders_01.csv")
        #expect(Compression.strippingSuffix(Array("orders.csv".utf8)) == nil)
    }
}
