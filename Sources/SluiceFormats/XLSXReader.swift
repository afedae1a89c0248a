import Foundation
import SluiceSupport

/// A byte source: fills the buffer it is given and returns the byte count, 0 at the end (a
/// source may return fewer bytes than the buffer holds; only 0 means the end).
public typealias ByteSource = (UnsafeMutableRawBufferPointer) throws -> Int

/// Why an .xlsx workbook or sheet cannot be read.
public struct XLSXError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

// MARK: - Workbook

/// The workbook-level facts needed to read a sheet: the worksheets and where they are in the
/// archive, the date system, the shared strings and which cell styles are dates.
public struct XLSXWorkbook: Sendable {
    public struct Sheet: Sendable {
        public let name: String
        /// The zip entry of the sheet's XML, like "xl/worksheets/sheet2.xml".
        public let entryPath: String
    }

    /// The worksheets, in workbook order (chart and dialog sheets are left out).
    public let sheets: [Sheet]
    /// True when serial dates count from 1904-01-01 (the old Mac date system).
    public let date1904: Bool
    /// The shared-string table (cells with t="s" hold an index into it).
    let sharedStrings: [String]
    /// By cellXfs index (a cell's s attribute): `DateKind.none`, `.date` or `.dateTime`.
    let dateStyles: [UInt8]
    /// Sheets listed in the workbook that cannot be read as worksheets, and why.
    private let unreadable: [Unreadable]

    private struct Unreadable: Sendable {
        let name: String
        let why: String
    }

    /// `open(entryPath)` returns a byte source for a zip entry, or nil when the archive has no
    /// such entry. Reads xl/workbook.xml (or the main part `_rels/.rels` names), its
    /// relationships, and the styles and shared strings they name (both optional).
    public init(open: (String) throws -> ByteSource?) throws {
        var workbookPath = "xl/workbook.xml"
        var workbookSource = try open(workbookPath)
        if workbookSource == nil, let packageRels = try open("_rels/.rels") {
            let rels = try Self.relationships(packageRels, entry: "_rels/.rels", base: "")
            if let main = rels.first(where: { $0.type.hasSuffix("/officeDocument") }) {
                if main.target.lowercased().hasSuffix(".bin") {
                    throw XLSXError("this is a binary .xlsb workbook (\(main.target)); only .xlsx (XML) workbooks can be read")
                }
                workbookPath = main.target
                workbookSource = try open(workbookPath)
            }
        }
        guard let workbookSource else {
            throw XLSXError("not an .xlsx workbook: the archive has no xl/workbook.xml")
        }

        // xl/workbook.xml: the date system and the sheets with their relationship ids.
        var date1904 = false
        var listed: [(name: String, id: String)] = []
        let p = XMLPullParser(entry: workbookPath, read: workbookSource)
        parse: while true {
            switch try p.next() {
            case .eof: break parse
            case .end: continue
            case .start:
                if p.depth == 2 && p.localIs("workbookPr") {
                    if let v = p.attributeString("date1904")?.lowercased() { date1904 = v == "1" || v == "true" }
                } else if p.depth == 3 && p.localIs("sheet") {
                    listed.append((p.attributeString("name") ?? "", p.attributeString("id") ?? ""))
                }
            }
        }

        // Its relationships: sheet ids → entries; the styles and shared-strings parts.
        let slash = workbookPath.lastIndex(of: "/")
        let dir = slash.map { String(workbookPath[...$0]) } ?? ""
        let file = slash.map { String(workbookPath[workbookPath.index(after: $0)...]) } ?? workbookPath
        let relsPath = dir + "_rels/" + file + ".rels"
        guard let relsSource = try open(relsPath) else {
            throw XLSXError("the archive has no \(relsPath), so its sheets cannot be found — the .xlsx file looks corrupt")
        }
        let rels = try Self.relationships(relsSource, entry: relsPath, base: dir)

        var sheets: [Sheet] = []
        var unreadable: [Unreadable] = []
        for (name, id) in listed {
            guard let rel = rels.first(where: { $0.id == id }) else {
                unreadable.append(Unreadable(name: name, why: "has no relationship \"\(id)\" in \(relsPath) — the .xlsx file looks corrupt"))
                continue
            }
            if rel.type.hasSuffix("/worksheet") {
                sheets.append(Sheet(name: name, entryPath: rel.target))
            } else {
                let kind = rel.type.split(separator: "/").last.map(String.init) ?? rel.type
                unreadable.append(Unreadable(name: name, why: "is a \(kind), not a worksheet"))
            }
        }

        let stylesPath = rels.first(where: { $0.type.hasSuffix("/styles") })?.target ?? dir + "styles.xml"
        let dateStyles = try open(stylesPath).map { try Self.readStyles($0, entry: stylesPath) } ?? []
        let stringsPath = rels.first(where: { $0.type.hasSuffix("/sharedStrings") })?.target ?? dir + "sharedStrings.xml"
        let strings = try open(stringsPath).map { try Self.readSharedStrings($0, entry: stringsPath) } ?? []

        self.sheets = sheets
        self.date1904 = date1904
        self.sharedStrings = strings
        self.dateStyles = dateStyles
        self.unreadable = unreadable
    }

    /// The named sheet (an exact match, else a case-insensitive one, as Excel's sheet names are),
    /// or the first worksheet when `named` is nil.
    public func sheet(named: String?) throws(XLSXError) -> Sheet {
        guard let named else {
            guard let first = sheets.first else {
                let others = unreadable.isEmpty ? "" : " (only \(unreadable.map { "\"\($0.name)\"" }.joined(separator: ", ")))"
                throw XLSXError("the workbook has no worksheets\(others)")
            }
            return first
        }
        if let s = sheets.first(where: { $0.name == named }) { return s }
        if let u = unreadable.first(where: { $0.name == named }) { throw XLSXError("sheet \"\(named)\" \(u.why)") }
        let lower = named.lowercased()
        if let s = sheets.first(where: { $0.name.lowercased() == lower }) { return s }
        let names = sheets.map { "\"\($0.name)\"" }.joined(separator: ", ")
        throw XLSXError("the workbook has no sheet named \"\(named)\"; its sheets are \(names.isEmpty ? "(none)" : names)")
    }

    // MARK: Parts

    struct Relationship {
        let id: String
        let type: String
        /// The archive entry, resolved against the source part's folder.
        let target: String
    }

    /// A relationships part's internal relationships, targets resolved against `base` (the
    /// folder of the part they belong to, like "xl/").
    static func relationships(_ source: @escaping ByteSource, entry: String, base: String) throws -> [Relationship] {
        var out: [Relationship] = []
        let p = XMLPullParser(entry: entry, read: source)
        while true {
            switch try p.next() {
            case .eof: return out
            case .end: continue
            case .start:
                guard p.depth == 2, p.localIs("Relationship") else { continue }
                if p.attributeString("TargetMode")?.lowercased() == "external" { continue }
                guard let id = p.attributeString("Id"), let target = p.attributeString("Target") else { continue }
                out.append(Relationship(id: id, type: p.attributeString("Type") ?? "", target: resolve(target, base: base)))
            }
        }
    }

    /// An OPC part name (percent-encoded, absolute or relative to `base`) as a zip entry path.
    static func resolve(_ target: String, base: String) -> String {
        var bytes: [UInt8] = []
        let t = Array(target.utf8)
        var i = 0
        while i < t.count {
            if t[i] == UInt8(ascii: "%"), i + 2 < t.count, let h = hexValue(t[i + 1]), let l = hexValue(t[i + 2]) {
                bytes.append(h << 4 | l)
                i += 3
            } else {
                bytes.append(t[i] == UInt8(ascii: "\\") ? UInt8(ascii: "/") : t[i])
                i += 1
            }
        }
        let decoded = String(decoding: bytes, as: UTF8.self)
        let full = decoded.hasPrefix("/") ? String(decoded.dropFirst()) : base + decoded
        var parts: [Substring] = []
        for segment in full.split(separator: "/") {
            if segment == "." { continue }
            if segment == ".." {
                if !parts.isEmpty { parts.removeLast() }
            } else {
                parts.append(segment)
            }
        }
        return parts.joined(separator: "/")
    }

    static func hexValue(_ b: UInt8) -> UInt8? {
        switch b {
        case 0x30...0x39: b - 0x30
        case 0x41...0x46: b - 0x41 + 10
        case 0x61...0x66: b - 0x61 + 10
        default: nil
        }
    }

    /// styles.xml: for each cellXfs entry, whether its number format shows a date.
    static func readStyles(_ source: @escaping ByteSource, entry: String) throws -> [UInt8] {
        var custom: [Int: UInt8] = [:]
        var xfFormats: [Int] = []
        var inNumFmts = false
        var inCellXfs = false
        let p = XMLPullParser(entry: entry, read: source)
        while true {
            switch try p.next() {
            case .eof:
                return xfFormats.map { custom[$0] ?? DateKind.builtin($0) }
            case .end:
                if p.depth == 1 { inNumFmts = false; inCellXfs = false }
            case .start:
                if p.depth == 2 {
                    inNumFmts = p.localIs("numFmts")
                    inCellXfs = p.localIs("cellXfs")
                } else if p.depth == 3 {
                    if inNumFmts && p.localIs("numFmt") {
                        if let id = p.attributeInt("numFmtId") {
                            custom[id] = DateKind.of(formatCode: p.attributeString("formatCode") ?? "")
                        }
                    } else if inCellXfs && p.localIs("xf") {
                        xfFormats.append(p.attributeInt("numFmtId") ?? 0)
                    }
                }
            }
        }
    }

    /// sharedStrings.xml: the text of each `si` (its `t` runs joined, phonetic runs left out).
    static func readSharedStrings(_ source: @escaping ByteSource, entry: String) throws -> [String] {
        var strings: [String] = []
        let p = XMLPullParser(entry: entry, read: source)
        while true {
            switch try p.next() {
            case .eof: return strings
            case .end: continue
            case .start:
                if p.depth == 1, p.localIs("sst"), let n = p.attributeInt("uniqueCount") {
                    strings.reserveCapacity(min(max(n, 0), 1 << 20))
                } else if p.depth == 2 && p.localIs("si") {
                    try p.readRichText()
                    strings.append(XLSXText.unescaped(p.text.buffer))
                }
            }
        }
    }
}

// MARK: - Sheet

/// Streams a worksheet's rows. Holds one row at a time (plus the workbook's shared strings).
public final class XLSXSheetReader {
    private let workbook: XLSXWorkbook
    private let parser: XMLPullParser
    private var started = false
    private var done = false
    private var failure: (any Error)?
    private var sheetDataDepth = 0
    private var rowNumber = 0
    private var column = -1
    private var width = 0
    private let days = DayText()

    /// `read` is the sheet entry's bytes; error messages call it "the worksheet".
    public convenience init(workbook: XLSXWorkbook, read: @escaping ByteSource) {
        self.init(workbook: workbook, entry: "the worksheet", read: read)
    }

    /// `read` is the bytes of `sheet.entryPath`; error messages name that entry.
    public convenience init(workbook: XLSXWorkbook, sheet: XLSXWorkbook.Sheet, read: @escaping ByteSource) {
        self.init(workbook: workbook, entry: sheet.entryPath, read: read)
    }

    init(workbook: XLSXWorkbook, entry: String, blockSize: Int = 1 << 16, read: @escaping ByteSource) {
        self.workbook = workbook
        parser = XMLPullParser(entry: entry, blockSize: blockSize, read: read)
    }

    /// The next row that has at least one non-empty cell, or nil at the end of sheetData.
    /// `number` is the spreadsheet row number (the r attribute, or counted when absent), 1-based.
    /// `cells[i]` is column i (A = 0) as text, nil for an absent/empty cell; trailing nils trimmed.
    /// After an error, every call throws it again.
    public func next() throws -> (number: Int, cells: [String?])? {
        if let failure { throw failure }
        if done { return nil }
        do {
            return try advance()
        } catch {
            failure = error
            throw error
        }
    }

    private func advance() throws -> (number: Int, cells: [String?])? {
        let p = parser
        if !started {
            started = true
            find: while true {
                switch try p.next() {
                case .eof:
                    done = true
                    return nil
                case .end: continue
                case .start:
                    if p.localIs("sheetData") {
                        sheetDataDepth = p.depth
                        break find
                    }
                }
            }
        }
        var cells: [String?] = []
        while true {
            switch try p.next() {
            case .start:
                if p.depth == sheetDataDepth + 1 && p.localIs("row") {
                    if let r = p.attribute("r") {
                        rowNumber = try parseRowNumber(r)
                    } else {
                        rowNumber += 1
                    }
                    column = -1
                    cells = []
                    cells.reserveCapacity(min(width, 1024))
                } else if p.depth == sheetDataDepth + 2 && p.localIs("c") {
                    try readCell(into: &cells)
                }
            case .end:
                if p.depth < sheetDataDepth {
                    // The rest of the document is read only to find truncation.
                    while try p.next() != .eof {}
                    done = true
                    return nil
                }
                if p.depth == sheetDataDepth && !cells.isEmpty {
                    width = max(width, cells.count)
                    return (rowNumber, cells)
                }
            case .eof:
                done = true
                return nil
            }
        }
    }

    private func corrupt(_ detail: String) -> XLSXError {
        XLSXError("\(parser.entry), row \(rowNumber): \(detail) — the .xlsx file looks corrupt")
    }

    private func parseRowNumber(_ r: Range<Int>) throws -> Int {
        var n = 0
        try parser.attributeBytes(r) { b in
            guard !b.isEmpty, b.count <= 9 else { throw corrupt("\"\(String(decoding: b, as: UTF8.self))\" is not a row number") }
            for d in b {
                guard d >= 0x30 && d <= 0x39 else { throw corrupt("\"\(String(decoding: b, as: UTF8.self))\" is not a row number") }
                n = n * 10 + Int(d - 0x30)
            }
        }
        return n
    }

    private enum CellType { case number, shared, inline, formulaString, boolean, error, isoDate }

    /// Reads the `c` element just started (its attributes and children) into `cells`.
    private func readCell(into cells: inout [String?]) throws {
        let p = parser
        let depth = p.depth
        if let r = p.attribute("r") {
            var col = 0
            try p.attributeBytes(r) { b in
                var letters = 0
                for d in b {
                    let u = d & 0xDF  // upper case
                    guard u >= 0x41 && u <= 0x5A else { break }
                    col = col * 26 + Int(u - 0x40)
                    letters += 1
                    if letters > 3 { break }
                }
                guard letters > 0, letters <= 3, col <= 16_384 else {
                    throw corrupt("\"\(String(decoding: b, as: UTF8.self))\" is not a cell reference")
                }
            }
            column = col - 1
        } else {
            column += 1
        }
        var type = CellType.number
        if let t = p.attribute("t") {
            p.attributeBytes(t) { b in
                if b.count == 1 {
                    switch b[0] {
                    case UInt8(ascii: "s"): type = .shared
                    case UInt8(ascii: "b"): type = .boolean
                    case UInt8(ascii: "e"): type = .error
                    case UInt8(ascii: "d"): type = .isoDate
                    default: break
                    }
                } else if b.count == 3 && b[0] == UInt8(ascii: "s") {
                    type = .formulaString
                } else if b.count == 9 && b[0] == UInt8(ascii: "i") {
                    type = .inline
                }
            }
        }
        var style = 0
        if type == .number, let s = p.attribute("s") {
            p.attributeBytes(s) { b in
                for d in b.prefix(9) where d >= 0x30 && d <= 0x39 { style = style * 10 + Int(d - 0x30) }
            }
        }
        var value: String?
        loop: while true {
            switch try p.next() {
            case .eof: break loop
            case .end:
                if p.depth < depth { break loop }
            case .start:
                guard p.depth == depth + 1 else { continue }
                if p.localIs("v") {
                    try p.readText()
                    value = try text(of: type, style: style)
                } else if p.localIs("is") {
                    try p.readRichText()
                    value = p.text.isEmpty ? nil : XLSXText.unescaped(p.text.buffer)
                }
            }
        }
        guard let value else { return }
        let col = column
        if col < cells.count {
            cells[col] = value
        } else {
            if col > cells.count { cells.append(contentsOf: repeatElement(nil, count: col - cells.count)) }
            cells.append(value)
        }
    }

    /// The text of a `v` just read (in `parser.text`), by the cell's type and style.
    private func text(of type: CellType, style: Int) throws -> String? {
        let v = parser.text.buffer
        if v.isEmpty { return nil }
        switch type {
        case .shared:
            var index = 0
            var digits = 0
            for d in v where d != 0x20 {
                guard d >= 0x30 && d <= 0x39, digits < 12 else {
                    throw corrupt("\"\(String(decoding: v, as: UTF8.self))\" is not a shared-string index")
                }
                index = index * 10 + Int(d - 0x30)
                digits += 1
            }
            let strings = workbook.sharedStrings
            guard digits > 0, index < strings.count else {
                throw corrupt("shared string \(String(decoding: v, as: UTF8.self)) does not exist (the workbook has \(strings.count))")
            }
            let s = strings[index]
            return s.isEmpty ? nil : s
        case .boolean:
            if v.count == 1 && v[0] == 0x31 { return "true" }
            if v.count == 1 && v[0] == 0x30 { return "false" }
            return String(decoding: v, as: UTF8.self)
        case .formulaString, .inline:
            return XLSXText.unescaped(v)
        case .error, .isoDate:
            return String(decoding: v, as: UTF8.self)
        case .number:
            let raw = String(decoding: v, as: UTF8.self)
            let styles = workbook.dateStyles
            guard style < styles.count, styles[style] != DateKind.none, let serial = Double(raw) else { return XLSXNumber.text(raw) }
            return DateKind.text(serial: serial, dateOnly: styles[style] == DateKind.date, date1904: workbook.date1904, days: days) ?? raw
        }
    }
}
