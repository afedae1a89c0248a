import CSluiceLinux
import Foundation
import SluiceLake
import SluiceParquet
import ZIPFoundation
import SluiceSupport
import SluiceManifest
import SluiceIngest
import SluiceConfig
import SluiceFormats
#if canImport(Glibc)
import Glibc
#endif

/// `format = "xlsx"`: an Excel workbook.
package struct XLSXOptions: FormatOptions, Equatable {
    /// The sheet's name; nil for the first sheet.
    package var sheet: String?
    package var header: Bool
    /// Rows before the header row.
    package var skipRows: Int
}

package struct XLSXFormat: InputFormat {
    package let name = "xlsx"
    package let keys: Set<String> = ["sheet", "header", "skip_rows", "null_values"]

    package func options(_ t: TOMLTable, path: String, reader: TableReader) throws(ConfigError) -> any FormatOptions {
        XLSXOptions(sheet: try reader.string(t, "sheet", path, required: false), header: try reader.bool(t, "header", path) ?? true,
                    skipRows: try reader.skipRows(t, path))
    }

    package func transform(_ input: TransformInput, _ d: DatasetMapping, with transformer: Transformer, parquet: ParquetOptions,
                           result: inout TransformResult) throws {
        try transformer.transformXLSX(input, d, d.options(XLSXOptions.self), options: parquet, result: &result)
    }
}

extension Transformer {
    /// Excel (.xlsx): the mapping's `sheet` (default: the first sheet), `skip_rows` rows before
    /// the header row, then one row per spreadsheet row. Real Excel dates arrive as ISO 8601
    /// text (a field's `format` is then for dates typed in as text). The sheet is unzipped
    /// into an unlinked temp file and streamed from there, so a big sheet is never held
    /// whole; the workbook's shared strings are kept in memory. A corrupt or non-zip file
    /// fails with the reason.
    package func transformXLSX(_ input: TransformInput, _ d: DatasetMapping, _ o: XLSXOptions, options: ParquetOptions, result: inout TransformResult) throws {
        var path = input.readPath ?? "\(lakeRoot)/\(input.lakePath)"
        // A compressed workbook (sales.xlsx.gz) or one inside an archive is unpacked into an
        // unlinked file only this process can reach (mode 600, no name), read through /proc,
        // and gone when it closes.
        var unpacked: SpooledEntry?
        let stored = try inputBytes(input, d)
        if stored.unpacked {
            let spool = try makeSpool()
            try spool.fill(from: stored.read)
            unpacked = spool
            path = spool.procPath
        }
        defer { withExtendedLifetime(unpacked) {} }
        let archive: Archive
        do {
            archive = try Archive(url: URL(fileURLWithPath: path), accessMode: .read)
        } catch {
            throw TransformError("\(input.path.display) is not a readable .xlsx file (not a zip archive, or a damaged one: \(error)); the raw version is kept")
        }
        let sheetFile: SpooledEntry
        let workbook: XLSXWorkbook
        let sheet: XLSXWorkbook.Sheet
        do {
            workbook = try Self.workbook(archive)
            sheet = try workbook.sheet(named: o.sheet)
            sheetFile = try makeSpool()
            try Self.unzipSheet(sheet, of: archive, into: sheetFile)
        } catch let e as TransformError {
            throw TransformError("\(input.path.display): \(e.message)")
        } catch {
            throw TransformError("\(input.path.display): \(error)")
        }
        let reader = XLSXSheetReader(workbook: workbook, sheet: sheet, read: sheetFile.read)
        func nextRow() throws -> (number: Int, cells: [String?])? {
            do {
                return try reader.next()
            } catch {
                throw TransformError("\(input.path.display): \(error)")
            }
        }

        // skip_rows rows before the header.
        var skipped = 0
        while skipped < o.skipRows, try nextRow() != nil { skipped += 1 }
        var columnOf: [Int] = []
        var names: [String] = []
        if o.header {
            guard let header = try nextRow() else { throw TransformError("sheet \"\(sheet.name)\" is empty: no header row") }
            names = header.cells.map { ($0 ?? "").trimmingCharacters(in: .whitespaces) }
        }
        // The header row and the first rows' cells make the observed schema.
        var sniffer = SchemaSniffer(columns: names.count)
        func observed() -> ObservedSchema {
            let header = o.header ? names : (0..<sniffer.types.count).map { "column\($0 + 1)" }
            return ObservedSchema.headed(format: d.format.name, encoding: nil, delimiter: nil, header: header, sniffer: sniffer,
                                         fields: d.fields, columnOf: columnOf)
        }
        defer { result.observedSchema = observed() }
        columnOf = try Self.columns(for: d, header: o.header ? names : nil)

        let sink = try OutputSink(lake: lake, input: input, dataset: d, options: options)
        defer { sink.abandonIfOpen() }
        while let (number, cells) = try nextRow() {
            if sniffer.wantsMore { sniffer.observe(cells: cells) }
            var reasons: [String: String] = [:]
            let row = sink.row
            row.clear()
            for (i, f) in d.fields.enumerated() {
                let c = columnOf[i]
                let text = c >= 0 && c < cells.count ? cells[c] : nil
                var field = f
                // A real Excel date is ISO text here, whatever `format` says for text dates.
                if field.format != nil, let t = text, Self.isISO(t) { field.format = nil }
                do throws(ValueError) {
                    row.set(i, try Self.value(text, field, d))
                } catch {
                    reasons[f.name] = error.description
                }
            }
            if reasons.isEmpty {
                try sink.acceptRow(line: number)
            } else {
                try sink.reject(line: number, values: cells.map { $0 as Any? ?? NSNull() }, reasons: reasons)
            }
        }
        result.observedSchema = observed()
        try sink.finish(into: &result)
    }

    package static func isISO(_ s: String) -> Bool {
        var t = s
        return t.withUTF8 { FastValues.iso($0) != nil }
    }

    /// How far an entry may unzip: XML compresses 5–20 times, rarely 100; a zip bomb, a
    /// thousand times and more. Past this the file fails instead of filling the disk or memory.
    package static func unzipLimit(_ entry: Entry) -> UInt64 {
        max(64 << 20, entry.compressedSize.multipliedReportingOverflow(by: 200).partialValue)
    }

    package static func bomb(_ name: String, _ entry: Entry) -> TransformError {
        TransformError("\(name) unzips to more than \(unzipLimit(entry) >> 20) MiB (200 times its compressed size): refused as a zip bomb")
    }

    /// A whole (small) zip entry: the workbook, its relationships, styles and shared strings.
    /// The workbook of an opened .xlsx archive: its workbook, relationships, styles and shared
    /// strings read into memory (each within the bomb limit), the sheets left in the archive.
    package static func workbook(_ archive: Archive) throws -> XLSXWorkbook {
        try XLSXWorkbook { entryPath in
            guard let entry = archive[entryPath] else { return nil }
            return MemorySource(try unzip(archive, entry, name: entryPath)).read
        }
    }

    /// Unzips a sheet's XML into `file` (an unnamed spool file), stopping a zip bomb, and
    /// rewinds it for reading.
    package static func unzipSheet(_ sheet: XLSXWorkbook.Sheet, of archive: Archive, into file: SpooledEntry) throws {
        guard let entry = archive[sheet.entryPath] else {
            throw TransformError("the workbook lists sheet \"\(sheet.name)\" at \(sheet.entryPath), but the archive has no such part")
        }
        let limit = unzipLimit(entry)
        var unzipped: UInt64 = 0
        do {
            _ = try archive.extract(entry, bufferSize: 1 << 20, skipCRC32: false) { chunk in
                unzipped += UInt64(chunk.count)
                guard unzipped <= limit else { throw bomb(sheet.entryPath, entry) }
                try chunk.withUnsafeBytes { try file.write($0) }
            }
        } catch let e as TransformError {
            throw e
        } catch {
            throw TransformError("\(sheet.entryPath) cannot be unzipped (\(error)): the .xlsx file is damaged")
        }
        try file.rewind()
    }

    /// The most of a part held in memory (the shared strings of a big workbook are tens of MiB).
    package static let wholePartLimit: UInt64 = 256 << 20

    package static func unzip(_ archive: Archive, _ entry: Entry, name: String) throws -> [UInt8] {
        var out: [UInt8] = []
        let limit = min(unzipLimit(entry), wholePartLimit)
        do {
            _ = try archive.extract(entry, bufferSize: 1 << 16, skipCRC32: false) { chunk in
                guard UInt64(out.count + chunk.count) <= limit else {
                    guard limit < unzipLimit(entry) else { throw bomb(name, entry) }
                    throw TransformError("\(name) unzips to more than \(wholePartLimit >> 20) MiB, and Sluice reads this part of a workbook into "
                        + "memory: ask the client for the sheet as CSV, or for a workbook with fewer distinct texts")
                }
                out.append(contentsOf: chunk)
            }
        } catch let e as TransformError {
            throw e
        } catch {
            throw TransformError("\(name) cannot be unzipped (\(error)): the .xlsx file is damaged")
        }
        return out
    }
}

/// Bytes in memory as a byte source.
package final class MemorySource {
    private let bytes: [UInt8]
    private var offset = 0

    package init(_ bytes: [UInt8]) { self.bytes = bytes }

    package func read(_ buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let n = min(buffer.count, bytes.count - offset)
        if n > 0 {
            bytes.withUnsafeBytes { src in
                buffer.baseAddress!.copyMemory(from: src.baseAddress! + offset, byteCount: n)
            }
        }
        offset += n
        return n
    }
}

/// A temp file with no name (`O_TMPFILE`, so nothing is ever left behind, even by a crash):
/// written once, then read back from the start. On a file system without `O_TMPFILE` it is
/// a journaled lake temp file, unlinked as soon as it is created.
package final class SpooledEntry {
    private let fd: Int32

    package init(lake: Lake, folder: String) throws {
        let directory = lake.bucket == nil ? "\(lake.root)/\(folder)" : lake.stagingDirectory
        // Through the lake, so that a folder made here (`processed/`, on a new lake) is synced
        // in its parent with the first output published under it.
        try lake.prepare(folders: [folder])
        var fd = open(directory, CSluiceLinux_O_TMPFILE | O_RDWR | O_CLOEXEC, 0o600)
        if fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL) {
            let path = try lake.tempPath(inFolder: folder)
            fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            if fd >= 0 { unlink(path) }
        }
        guard fd >= 0 else { throw SystemCallError(call: "open", errno: errno, path: directory) }
        self.fd = fd
    }

    /// An unnamed file in `directory` (the agent's `state_dir/spool`, mode 700).
    package init(directory: String) throws {
        var fd = open(directory, CSluiceLinux_O_TMPFILE | O_RDWR | O_CLOEXEC, 0o600)
        if fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL) {
            let path = "\(directory)/.spool-\(getpid())-\(UUID().uuidString)"
            fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            if fd >= 0 { unlink(path) }
        }
        guard fd >= 0 else { throw SystemCallError(call: "open", errno: errno, path: directory) }
        self.fd = fd
    }

    deinit { close(fd) }

    /// A path that opens this unnamed file again, for this process only.
    package var procPath: String { "/proc/self/fd/\(fd)" }

    package func write(_ bytes: UnsafeRawBufferPointer) throws {
        try writeAll(fd, bytes, path: "(unzipped sheet)")
    }

    /// Moves the read position (`lseek`); the new offset, or -1.
    package func seek(_ offset: Int64, _ whence: Int32) -> Int64 {
        Int64(lseek(fd, off_t(offset), whence))
    }

    /// Writes all of `source` here, then goes back to the start.
    package func fill(from source: ByteSource) throws {
        try pump(source, into: write)
        try rewind()
    }

    package func rewind() throws {
        guard lseek(fd, 0, SEEK_SET) == 0 else { throw SystemCallError(call: "lseek", errno: errno, path: "(unzipped sheet)") }
    }

    package func read(_ buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let n = Glibc.read(fd, buffer.baseAddress!, buffer.count)
        if n < 0 { throw SystemCallError(call: "read", errno: errno, path: "(unzipped sheet)") }
        return n
    }
}
