import Foundation

/// How a sample of delimited text is written: its encoding, delimiter and quote, the lines
/// before the header, and whether the first row after them is a header. What `sluice mapping
/// draft` reads a CSV sample with.
public struct TextDialect: Sendable, Equatable {
    public var encoding: SourceEncoding
    public var delimiter: UInt8
    public var quote: UInt8
    /// Records before the header (or the first data row): a title, an export date, blank
    /// lines (each a record to `skip_rows`).
    public var skipRows: Int
    public var header: Bool
    /// The records of the sample, decoded, the skipped ones first (a cut-off last record is
    /// left out; a blank line is an empty record).
    public var records: [[String]]
    /// Whether another delimiter read the sample almost as well (said in the draft).
    public var closeCall: UInt8?
}

public enum DialectSniffer {
    public static let delimiters: [UInt8] = [UInt8(ascii: ","), UInt8(ascii: ";"), UInt8(ascii: "\t"), UInt8(ascii: "|")]

    /// The encoding of a sample: a BOM says UTF-16 or UTF-8; bytes that are valid UTF-8 are
    /// UTF-8; otherwise Windows-1252 (a superset of Latin-1's printable characters, with €, „
    /// and … in 0x80–0x9F, where Latin-1 has control codes no text uses), unless a byte that
    /// Windows-1252 leaves unassigned says Latin-1.
    public static func encoding(of sample: [UInt8], truncated: Bool) -> SourceEncoding {
        if sample.starts(with: [0xFF, 0xFE]) || sample.starts(with: [0xFE, 0xFF]) { return .utf16 }
        if sample.starts(with: [0xEF, 0xBB, 0xBF]) { return .utf8 }
        var bytes = sample[...]
        // A sample cut in the middle of a character is still UTF-8.
        if truncated {
            var back = 0
            while back < 3, let last = bytes.last, last & 0xC0 == 0x80 || last >= 0xC0 {
                bytes = bytes.dropLast()
                back += 1
                if last >= 0xC0 { break }
            }
        }
        if String(validating: bytes, as: UTF8.self) != nil { return .utf8 }
        // 0x81, 0x8D, 0x8F, 0x90 and 0x9D are unassigned in Windows-1252.
        let unassigned: Set<UInt8> = [0x81, 0x8D, 0x8F, 0x90, 0x9D]
        return sample.contains { unassigned.contains($0) } ? .latin1 : .windows1252
    }

    /// The records of `sample` read with `delimiter` and `quote` in `encoding` (at most `limit`;
    /// when the sample is cut short, its last record is left out).
    public static func records(_ sample: [UInt8], encoding: SourceEncoding, delimiter: UInt8, quote: UInt8, truncated: Bool,
                               limit: Int = 5000) -> [[String]] {
        var offset = 0
        let reader = CSVReader(delimiter: delimiter, quote: quote, encoding: encoding, blockSize: 1 << 16) { buffer in
            let n = min(buffer.count, sample.count - offset)
            sample.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[offset..<(offset + n)])) }
            offset += n
            return n
        }
        var out: [[String]] = []
        while out.count < limit + 1, let r = try? reader.next() {
            // A blank line is a record of no fields (skip_rows counts it; the transform skips it).
            if r.fields.count == 1 && r.fields[0].isEmpty {
                out.append([])
                continue
            }
            out.append(r.fields.map { String(decoding: $0, as: UTF8.self) })
        }
        if (truncated || out.count > limit) && !out.isEmpty { out.removeLast() }
        return out
    }

    /// How well `records` read as a table: the field count most records share, and how many
    /// of them (after the first few, which may be a preamble) share it.
    static func consistency(_ records: [[String]]) -> (width: Int, score: Double) {
        let records = records.filter { !$0.isEmpty }
        guard !records.isEmpty else { return (1, 0) }
        var counts: [Int: Int] = [:]
        for r in records { counts[r.count, default: 0] += 1 }
        let width = counts.max { a, b in a.value < b.value || (a.value == b.value && a.key < b.key) }!.key
        guard width > 1 else { return (1, 0) }
        let body = records.drop { $0.count != width }
        let agree = body.filter { $0.count == width }.count
        return (width, Double(agree) / Double(max(body.count, 1)) * Double(agree))
    }

    /// Reads the dialect of a sample of delimited text (its first bytes; `truncated` when the
    /// file goes on). `delimiter` and `quote` may be given; the rest is found.
    public static func sniff(_ sample: [UInt8], truncated: Bool, delimiter given: UInt8? = nil) -> TextDialect {
        let encoding = encoding(of: sample, truncated: truncated)
        var best: (delimiter: UInt8, quote: UInt8, records: [[String]], width: Int, score: Double)?
        var runnerUp: (delimiter: UInt8, score: Double, width: Int)?
        for d in given.map({ [$0] }) ?? delimiters {
            for q in [UInt8(ascii: "\""), UInt8(ascii: "'")] {
                let records = records(sample, encoding: encoding, delimiter: d, quote: q, truncated: truncated, limit: 400)
                let (width, score) = consistency(records)
                // The single quote only where it reads the sample strictly better.
                if let b = best, score <= b.score {
                    if b.delimiter != d, score > (runnerUp?.score ?? 0) { runnerUp = (d, score, width) }
                    continue
                }
                if let b = best, b.delimiter != d { runnerUp = (b.delimiter, b.score, b.width) }
                best = (d, q, records, width, score)
            }
        }
        let chosen = best!
        let all = records(sample, encoding: encoding, delimiter: chosen.delimiter, quote: chosen.quote, truncated: truncated)
        let skip = chosen.width > 1 ? (all.firstIndex { $0.count == chosen.width } ?? 0) : 0
        let header = looksLikeHeader(all.dropFirst(skip).filter { !$0.isEmpty }[...])
        // Another delimiter that reads the sample about as consistently into as many columns.
        let close = runnerUp.flatMap { r in r.score > 0.9 * chosen.score && r.delimiter != chosen.delimiter && r.width >= chosen.width ? r.delimiter : nil }
        return TextDialect(encoding: encoding, delimiter: chosen.delimiter, quote: chosen.quote, skipRows: skip, header: header,
                           records: all, closeCall: close)
    }

    /// Whether the first of `rows` names the columns: its cells are filled and read as text
    /// where the values below them are numbers, dates or booleans. A table of text only is
    /// taken to have a header when its first row repeats none of its values.
    public static func looksLikeHeader(_ rows: ArraySlice<[String]>) -> Bool {
        guard let first = rows.first else { return false }
        let body = rows.dropFirst().prefix(1000)
        guard !body.isEmpty else { return first.allSatisfy { type($0) == .text } }
        var forHeader = 0, against = 0
        for (i, cell) in first.enumerated() {
            let cellType = type(cell)
            var column: SniffedType = .empty
            for r in body where i < r.count { column = column.merged(with: type(r[i])) }
            if column != .text && column != .empty {
                if cellType == .text { forHeader += 1 } else if cellType != .empty { against += 1 }
            }
        }
        if forHeader > 0 || against > 0 { return forHeader >= against }
        // Text only: a header names each column once and is not a value of it.
        let names = first.filter { !$0.isEmpty }
        guard Set(names).count == names.count, names.count * 2 >= first.count else { return false }
        return !first.enumerated().contains { i, cell in body.contains { i < $0.count && $0[i] == cell } }
    }

    static func type(_ s: String) -> SniffedType {
        var s = s
        return s.withUTF8 { SniffedType.of($0) }
    }
}
