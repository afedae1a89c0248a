import Foundation
import SluiceParquet
import SluiceTestSupport
import Testing
import SluiceSupport
import SluiceIngest
import SluiceConfig
import SluiceSources
import SluiceTransform
import SluiceFormats
#if canImport(Glibc)
import Glibc
#endif

/// The Parquet writer, checked by reading every file it writes with both pyarrow and DuckDB.
@Suite struct ParquetTests {
    static var readersAvailable: Bool {
        (try? Shell.run("/usr/bin/env", ["python3", "-c", "import pyarrow, duckdb"]).status) == 0
    }

    static let fields = [
        ParquetField(name: "id", type: .int64, nullable: false),
        ParquetField(name: "name", type: .string),
        ParquetField(name: "amount", type: .decimal(precision: 12, scale: 2)),
        ParquetField(name: "small", type: .decimal(precision: 5, scale: 2)),
        ParquetField(name: "big", type: .decimal(precision: 38, scale: 4)),
        ParquetField(name: "ratio", type: .float64),
        ParquetField(name: "active", type: .bool),
        ParquetField(name: "day", type: .date),
        ParquetField(name: "ts", type: .timestampMicros),
    ]

    /// Row `i` of the sample table: every type, with nulls in the nullable columns.
    static func row(_ i: Int) -> [ParquetValue] {
        let null = i % 7 == 3
        let bigUnscaled = (Int128(i) * 1_000_000_007 * 1_000_000_007 * 1_000_000_007) * (i % 2 == 0 ? 1 : -1)
        return [
            .int64(Int64(i)),
            null ? .null : .string(Array("name-\(i % 50), ä".utf8)),
            .decimal(Int128(i) * 101),
            null ? .null : .decimal(Int128(i % 1000) - 500),
            .decimal(bigUnscaled),
            null ? .null : .float64(Double(i) / 4),
            null ? .null : .bool(i % 3 == 0),
            .date(Int32(19_000 + i % 400)),
            .timestamp(1_700_000_000_000_000 + Int64(i) * 1_000_001),
        ]
    }

    /// An unscaled decimal as Python's `str(Decimal)` prints it.
    static func decimalText(_ unscaled: Int128, scale: Int) -> String {
        let digits = String(unscaled.magnitude)
        let padded = String(repeating: "0", count: Swift.max(0, scale + 1 - digits.count)) + digits
        let cut = padded.index(padded.endIndex, offsetBy: -scale)
        return (unscaled < 0 ? "-" : "") + padded[..<cut] + "." + padded[cut...]
    }

    static func write(_ path: String, rows: Int, options: ParquetOptions) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        #expect(fd >= 0)
        defer { close(fd) }
        let writer = try ParquetWriter(fields: fields, options: options) { bytes in
            var done = 0
            while done < bytes.count {
                let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
                guard n > 0 else { throw TestFailure("write failed: \(errno)") }
                done += n
            }
        }
        for i in 0..<rows { try writer.append(row(i)) }
        try writer.finish()
    }

    /// Reads the file with pyarrow and DuckDB and prints what both saw, as JSON.
    static let checker = #"""
    import json, sys, decimal
    import pyarrow.parquet as pq
    import duckdb
    path = sys.argv[1]
    f = pq.ParquetFile(path)
    t = f.read()
    md = f.metadata
    out = {
        "schema": {field.name: str(field.type) for field in t.schema},
        "rows": t.num_rows,
        "row_groups": md.num_row_groups,
        "compression": md.row_group(0).column(0).compression,
        "name_encodings": sorted(set(e for g in range(md.num_row_groups) for e in md.row_group(g).column(1).encodings)),
        "stats": [
            {"id": [md.row_group(g).column(0).statistics.min, md.row_group(g).column(0).statistics.max],
             "name_nulls": md.row_group(g).column(1).statistics.null_count,
             "amount": [str(md.row_group(g).column(2).statistics.min), str(md.row_group(g).column(2).statistics.max)],
             "rows": md.row_group(g).num_rows}
            for g in range(md.num_row_groups)],
        "sample": {c: [str(v) for v in t.column(c).to_pylist()[:8]] for c in t.column_names},
        "nulls": {c: t.column(c).null_count for c in t.column_names},
    }
    con = duckdb.connect()
    r = con.execute(f"SELECT count(*), sum(id), count(name), sum(amount), min(big), max(big), count(active), min(day), max(ts), sum(small) FROM read_parquet('{path}')").fetchone()
    out["duckdb"] = [str(v) for v in r]
    out["duckdb_types"] = [str(row[1]) for row in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{path}')").fetchall()]
    out["duckdb_row5"] = [str(v) for v in con.execute(f"SELECT * FROM read_parquet('{path}') WHERE id = 5").fetchone()]
    print(json.dumps(out))
    """#

    static func check(_ path: String) throws -> [String: Any] {
        let dir = TempDir("pqcheck")
        let script = dir.write("check.py", checker)
        let r = try Shell.run("/usr/bin/env", ["python3", script, path])
        guard r.status == 0 else { throw TestFailure("pyarrow/duckdb could not read \(path): \(r.stderr)") }
        return try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
    }

    @Test(.enabled(if: readersAvailable, "needs pyarrow and duckdb (pip install pyarrow duckdb)"), arguments: ParquetCompression.allCases)
    func everyTypeNullsAndStatisticsReadBackInPyarrowAndDuckDB(compression: ParquetCompression) throws {
        let dir = TempDir("parquet")
        var options = ParquetOptions()
        options.compression = compression
        let n = 1000
        try Self.write(dir.sub("t.parquet"), rows: n, options: options)
        let out = try Self.check(dir.sub("t.parquet"))
        let schema = out["schema"] as! [String: String]
        #expect(schema == [
            "id": "int64", "name": "string", "amount": "decimal128(12, 2)", "small": "decimal128(5, 2)",
            "big": "decimal128(38, 4)", "ratio": "double", "active": "bool", "day": "date32[day]", "ts": "timestamp[us, tz=UTC]",
        ])
        #expect(out["rows"] as? Int == n)
        #expect(out["compression"] as? String == ["zstd": "ZSTD", "snappy": "SNAPPY", "none": "UNCOMPRESSED"][compression.rawValue])
        let nullRows = (0..<n).filter { $0 % 7 == 3 }.count
        let nulls = out["nulls"] as! [String: Int]
        #expect(nulls["name"] == nullRows && nulls["ratio"] == nullRows && nulls["active"] == nullRows && nulls["id"] == 0)
        let sample = out["sample"] as! [String: [String]]
        #expect(sample["name"]?[0] == "name-0, ä")
        #expect(sample["name"]?[3] == "None")
        #expect(sample["amount"]?[2] == "2.02")
        #expect(sample["small"]?[1] == "-4.99")
        #expect(sample["big"]?[1] == Self.decimalText(-(Int128(1_000_000_007) * 1_000_000_007 * 1_000_000_007), scale: 4))
        #expect(sample["day"]?[0] == "2022-01-08")
        #expect(sample["ts"]?[0] == "2023-11-14 22:13:20+00:00")
        let stats = (out["stats"] as! [[String: Any]])[0]
        #expect(stats["id"] as? [Int] == [0, n - 1])
        #expect(stats["name_nulls"] as? Int == nullRows)
        #expect(stats["amount"] as? [String] == ["0.00", Self.decimalText(Int128((n - 1) * 101), scale: 2)])
        // DuckDB reads the same values.
        let duck = out["duckdb"] as! [String]
        #expect(duck[0] == "\(n)")
        #expect(duck[1] == "\(n * (n - 1) / 2)")
        #expect(duck[2] == "\(n - nullRows)")
        #expect(duck[3] == "\(String(format: "%.2f", Double(n * (n - 1) / 2 * 101) / 100))")
        #expect(duck[7] == "2022-01-08")
        let types = out["duckdb_types"] as! [String]
        #expect(types == ["BIGINT", "VARCHAR", "DECIMAL(12,2)", "DECIMAL(5,2)", "DECIMAL(38,4)", "DOUBLE", "BOOLEAN", "DATE", "TIMESTAMP WITH TIME ZONE"])
        let row5 = out["duckdb_row5"] as! [String]
        #expect(row5[0] == "5" && row5[1] == "name-5, ä" && row5[2] == "5.05" && row5[6] == "False")
    }

    @Test(.enabled(if: readersAvailable, "needs pyarrow and duckdb (pip install pyarrow duckdb)"))
    func rowGroupsAreBoundedAndTheDictionaryFallsBackToPlain() throws {
        let dir = TempDir("parquet")
        var options = ParquetOptions()
        options.rowGroupBytes = 256 << 10
        options.pageBytes = 32 << 10
        options.dictionaryLimitBytes = 8 << 10
        let n = 50_000
        try Self.write(dir.sub("t.parquet"), rows: n, options: options)
        let out = try Self.check(dir.sub("t.parquet"))
        #expect(out["rows"] as? Int == n)
        let groups = out["row_groups"] as! Int
        #expect(groups > 2, "row groups are bounded by size")
        let stats = out["stats"] as! [[String: Any]]
        #expect(stats.map { $0["rows"] as! Int }.reduce(0, +) == n)
        // Per row group, id's min and max are that group's first and last row.
        var first = 0
        for g in stats {
            let rows = g["rows"] as! Int
            #expect(g["id"] as? [Int] == [first, first + rows - 1])
            first += rows
        }
        // "name" has only 50 distinct values: dictionary. A high-cardinality column with a tiny
        // limit falls back; checked with a string column of unique values below.
        #expect((out["name_encodings"] as! [String]).contains("RLE_DICTIONARY"))

        let unique = dir.sub("u.parquet")
        let fd = open(unique, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        let writer = try ParquetWriter(fields: [ParquetField(name: "id", type: .int64, nullable: false), ParquetField(name: "name", type: .string)],
                                       options: options) { bytes in _ = Glibc.write(fd, bytes.baseAddress!, bytes.count) }
        for i in 0..<20_000 { try writer.append([.int64(Int64(i)), .string(Array("unique value number \(i)".utf8))]) }
        try writer.finish()
        close(fd)
        let r = try Shell.run("/usr/bin/env", ["python3", "-c", """
            import pyarrow.parquet as pq, duckdb
            f = pq.ParquetFile('\(unique)')
            enc = set(e for g in range(f.metadata.num_row_groups) for e in f.metadata.row_group(g).column(1).encodings)
            t = f.read()
            assert t.column('name').to_pylist()[19999] == 'unique value number 19999'
            assert duckdb.connect().execute("SELECT count(DISTINCT name) FROM read_parquet('\(unique)')").fetchone()[0] == 20000
            print(sorted(enc))
            """])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("'PLAIN'") && r.stdout.contains("'RLE_DICTIONARY'"), "dictionary first, then PLAIN: \(r.stdout)")
    }

    /// Pages compressed on the writer's own thread or on the background one: the same file,
    /// byte for byte (pages come back in order), for every codec, over many pages and row groups.
    @Test(arguments: ParquetCompression.allCases)
    func backgroundCompressionWritesTheSameBytes(compression: ParquetCompression) throws {
        let dir = TempDir("parquet")
        var files: [Data] = []
        for background in [false, true] {
            var options = ParquetOptions()
            options.compression = compression
            options.backgroundCompression = background
            options.rowGroupBytes = 512 << 10
            options.pageBytes = 16 << 10
            let path = dir.sub("t-\(background).parquet")
            try Self.write(path, rows: 40_000, options: options)
            files.append(try Data(contentsOf: URL(fileURLWithPath: path)))
        }
        #expect(files[0].count > 100_000)
        #expect(files[0] == files[1])
    }

    /// A writer dropped before `finish` (a failed transform) stops its compression thread.
    @Test func anAbandonedWriterStopsItsCompressionThread() throws {
        BlockingPool.start()  // its threads are the process's for good, not leaks of this test
        let before = liveThreadCount()
        for _ in 0..<20 {
            var options = ParquetOptions()
            options.pageBytes = 4 << 10
            let writer = try ParquetWriter(fields: Self.fields, options: options) { _ in }
            for i in 0..<2_000 { try writer.append(Self.row(i)) }
        }
        // Twenty leaked threads would show; other suites' threads come and go, hence the slack.
        #expect(liveThreadCount() < before + 10)
    }

    @Test func valuesThatDoNotFitTheColumnAreRefused() throws {
        let writer = try ParquetWriter(fields: [ParquetField(name: "d", type: .decimal(precision: 5, scale: 2), nullable: false)]) { _ in }
        #expect(throws: ParquetError.self) { try writer.append([.null]) }
        #expect(throws: ParquetError.self) { try writer.append([.string([0x41])]) }
        #expect(throws: ParquetError.self) { try writer.append([.decimal(Int128(Int64.max))]) }
        #expect(throws: ParquetError.self) { try writer.append([.decimal(1), .decimal(2)]) }
        // A decimal stored as INT64 (precision 10 to 18) whose unscaled value needs more bits.
        let wide = try ParquetWriter(fields: [ParquetField(name: "d", type: .decimal(precision: 12, scale: 2))]) { _ in }
        try wide.append([.decimal(Int128(Int64.min))])
        #expect(throws: ParquetError.self) { try wide.append([.decimal(Int128(Int64.max) + 1)]) }
        #expect(throws: ParquetError.self) { try wide.append([.decimal(Int128(Int64.min) - 1)]) }
    }
}
