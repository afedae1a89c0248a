import Foundation
import SluiceBuffers

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

// MARK: - Numbers

/// Excel keeps numbers as doubles and shows at most 15 significant digits; a cell written as
/// `970.9299999999999` is the 970.93 the client typed. Numbers with more digits than that are
/// read as Excel shows them, in positional notation; others are kept as written.
enum XLSXNumber {
    static func text(_ raw: String) -> String {
        var digits = 0
        for b in raw.utf8 {
            if b == UInt8(ascii: "e") || b == UInt8(ascii: "E") { break }
            if b >= 48 && b <= 57 { digits += 1 }
        }
        guard digits > 15, let v = Double(raw), v.isFinite, v != 0 else { return raw }
        // d.dddddddddddddde±x: the 15 significant digits and the exponent.
        let parts = String(format: "%.14e", v.magnitude).split(separator: "e")
        guard parts.count == 2, let exponent = Int(parts[1]) else { return raw }
        var mantissa = parts[0].filter { $0 != "." }
        while mantissa.count > 1 && mantissa.last == "0" { mantissa.removeLast() }
        let point = exponent + 1
        let body: String
        if point <= 0 {
            body = "0." + String(repeating: "0", count: -point) + mantissa
        } else if point >= mantissa.count {
            body = mantissa + String(repeating: "0", count: point - mantissa.count)
        } else {
            body = mantissa.prefix(point) + "." + mantissa.dropFirst(point)
        }
        return (v < 0 ? "-" : "") + body
    }
}

// MARK: - Dates

/// Which number formats show dates, and Excel serials as ISO 8601 text.
enum DateKind {
    static let none: UInt8 = 0
    static let date: UInt8 = 1
    static let dateTime: UInt8 = 2

    /// The built-in number formats (ECMA-376 §18.8.30): 14–17, 27–36 and 50–58 are dates,
    /// 18–21, 22, 45 and 47 times or date-times; 46 is "[h]:mm:ss", a duration, so not a date.
    static func builtin(_ id: Int) -> UInt8 {
        switch id {
        case 14...17, 27...36, 50...58: date
        case 18...22, 45, 47: dateTime
        default: none
        }
    }

    /// A custom format code shows a date when, outside quoted literals, escaped characters and
    /// [..] sections, it has y, m, d, h or s; a date-time when it has h or s. An elapsed-time
    /// section ([h], [mm], [ss]) makes it a duration, not a date.
    static func of(formatCode: String) -> UInt8 {
        let code = Array(formatCode.utf8)
        if code.count == 7, String(decoding: code, as: UTF8.self).lowercased() == "general" { return none }
        var hasDate = false
        var hasTime = false
        var i = 0
        while i < code.count {
            let c = code[i] | 0x20  // lower case for letters
            switch code[i] {
            case UInt8(ascii: "\""):
                i += 1
                while i < code.count && code[i] != UInt8(ascii: "\"") { i += 1 }
            case UInt8(ascii: "\\"), UInt8(ascii: "_"), UInt8(ascii: "*"):
                i += 1  // the next character is a literal, a padding width or a fill
            case UInt8(ascii: "["):
                var j = i + 1
                while j < code.count && code[j] != UInt8(ascii: "]") { j += 1 }
                let inside = code[min(i + 1, j)..<j].map { $0 | 0x20 }
                if let first = inside.first, first == UInt8(ascii: "h") || first == UInt8(ascii: "m") || first == UInt8(ascii: "s"),
                   inside.allSatisfy({ $0 == first }) {
                    return none
                }
                i = j
            default:
                switch c {
                case UInt8(ascii: "y"), UInt8(ascii: "m"), UInt8(ascii: "d"): hasDate = true
                case UInt8(ascii: "h"), UInt8(ascii: "s"): hasTime = true
                default: break
                }
            }
            i += 1
        }
        return hasTime ? dateTime : (hasDate ? date : none)
    }

    static let epoch1900 = Int64(Values.days(year: 1899, month: 12, day: 30))
    static let epochBeforeLeapBug = Int64(Values.days(year: 1899, month: 12, day: 31))
    static let epoch1904 = Int64(Values.days(year: 1904, month: 1, day: 1))
    static let microsPerDay: Double = 86_400_000_000

    /// "YYYY-MM-DD", or "YYYY-MM-DDTHH:MM:SS[.ffffff]" to the microsecond; nil for a
    /// serial Excel cannot show as a date (negative, or after 9999-12-31). Serial 60 is
    /// Excel's 1900-02-29, which never was; it is given as that text (so it fails as a date).
    static func text(serial: Double, dateOnly: Bool, date1904: Bool, days: DayText = DayText()) -> String? {
        guard serial.isFinite, serial >= 0, serial < 2_958_466 else { return nil }
        var day = serial.rounded(.down)
        var micros = ((serial - day) * microsPerDay).rounded()
        // A serial's double carries about a microsecond at today's dates, and many writers
        // print only 15–16 significant digits (46267.04166666666 is 00:59:59.999999 taken
        // literally), while Excel itself keeps times to the millisecond: within 5 µs of a whole
        // millisecond is that millisecond.
        let millis = (micros / 1000).rounded() * 1000
        if abs(micros - millis) <= 5 { micros = millis }
        if micros >= microsPerDay {
            day += 1
            micros -= microsPerDay
        }
        let d = Int64(day)
        let dateText: String
        if date1904 {
            dateText = days(epoch1904 + d)
        } else if d == 60 {
            dateText = "1900-02-29"
        } else {
            dateText = days((d < 60 ? epochBeforeLeapBug : epoch1900) + d)
        }
        if dateOnly { return dateText }
        var out = Array(dateText.utf8)
        let us = Int(micros)
        let seconds = us / 1_000_000
        func two(_ n: Int) {
            out.append(UInt8(0x30 + n / 10))
            out.append(UInt8(0x30 + n % 10))
        }
        out.append(UInt8(ascii: "T"))
        two(seconds / 3600)
        out.append(UInt8(ascii: ":"))
        two(seconds / 60 % 60)
        out.append(UInt8(ascii: ":"))
        two(seconds % 60)
        var fraction = us % 1_000_000
        if fraction != 0 {
            out.append(UInt8(ascii: "."))
            var digits = [UInt8](repeating: 0x30, count: 6)
            for k in stride(from: 5, through: 0, by: -1) {
                digits[k] = UInt8(0x30 + fraction % 10)
                fraction /= 10
            }
            out += digits
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// `Values.civil` of the last day asked for (dates in a column mostly repeat or run in order).
final class DayText {
    private var day = Int64.min
    private var text = ""

    func callAsFunction(_ d: Int64) -> String {
        if d != day {
            day = d
            text = Values.civil(d)
        }
        return text
    }
}

/// Text of SpreadsheetML string values.
enum XLSXText {
    /// UTF-8 bytes as a String, with ECMA-376's `_xHHHH_` escapes (UTF-16 code units, used for
    /// control characters such as `_x000D_`; `_x005F_` is a literal underscore) decoded.
    static func unescaped(_ b: UnsafeBufferPointer<UInt8>) -> String {
        var out: [UInt8] = []
        var copied = 0
        var i = 0
        let n = b.count
        while i + 6 < n {
            guard b[i] == UInt8(ascii: "_"), b[i + 1] == UInt8(ascii: "x"), b[i + 6] == UInt8(ascii: "_"),
                  var unit = codeUnit(b, i + 2) else {
                i += 1
                continue
            }
            var length = 7
            if unit >= 0xD800 && unit < 0xE000 {
                // A surrogate pair is two escapes; a lone surrogate stays as written.
                guard unit < 0xDC00, i + 13 < n, b[i + 7] == UInt8(ascii: "_"), b[i + 8] == UInt8(ascii: "x"),
                      b[i + 13] == UInt8(ascii: "_"), let low = codeUnit(b, i + 9), low >= 0xDC00 && low < 0xE000 else {
                    i += 1
                    continue
                }
                unit = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                length = 14
            }
            if out.isEmpty { out.reserveCapacity(n) }
            out.append(contentsOf: b[copied..<i])
            appendUTF8(unit, to: &out)
            i += length
            copied = i
        }
        if copied == 0 { return String(decoding: b, as: UTF8.self) }
        out.append(contentsOf: b[copied..<n])
        return String(decoding: out, as: UTF8.self)
    }

    private static func codeUnit(_ b: UnsafeBufferPointer<UInt8>, _ at: Int) -> UInt32? {
        var v: UInt32 = 0
        for k in at..<at + 4 {
            guard let h = XLSXWorkbook.hexValue(b[k]) else { return nil }
            v = v << 4 | UInt32(h)
        }
        return v
    }
}

// MARK: - XML

/// A streaming XML pull tokenizer over a byte source, with one reusable input block. It
/// reports element starts and ends (names and attributes as bytes; compare local names, so
/// `x:c` is `c`), checks that tags nest, and collects character data (entities, character
/// references and CDATA decoded; line ends normalized) only while `collectText` is set.
/// Comments, processing instructions and a DOCTYPE without an internal subset are skipped;
/// a DTD internal subset (entity declarations) is refused, as are UTF-16 and other non-UTF-8
/// encodings. Anything not well-formed, truncation included, is an `XLSXError` naming the entry.
final class XMLPullParser {
    enum Event { case start, end, eof }

    /// The archive entry, for error messages.
    let entry: String
    private let source: ByteSource
    private let raw: UnsafeMutableRawBufferPointer
    private let bytes: UnsafeMutablePointer<UInt8>
    private var pos = 0
    private var end = 0
    /// The stream offset of `bytes[0]`.
    private var consumed = 0
    private var atEnd = false
    private var started = false

    /// The qualified name of the element of the last start or end event.
    let name = ByteStore()
    /// Where the local name starts in `name` (after the prefix's colon).
    private(set) var localStart = 0
    /// The number of open elements (an element's start event counts it, its end event does not).
    private(set) var depth = 0
    private var pendingEnd = false
    private let stack = ByteStore()
    private let stackEnds = PlainStore<Int>(capacity: 16)
    private var sawRoot = false

    private struct Attribute {
        var localStart: Int
        var valueStart: Int
        var valueEnd: Int
    }

    /// The start tag's attribute names and decoded values, back to back.
    private let attributeData = ByteStore()
    private let attributes = PlainStore<Attribute>(capacity: 16)

    /// While set, character data is appended to `text` (the caller clears it).
    var collectText = false
    let text = ByteStore()

    /// Caps on one tag's names and attributes, and on collected text, so junk input cannot grow memory without bound.
    static let maxTag = 1 << 20
    static let maxText = 1 << 26

    init(entry: String, blockSize: Int = 1 << 16, read: @escaping ByteSource) {
        self.entry = entry
        source = read
        raw = UnsafeMutableRawBufferPointer.allocate(byteCount: max(blockSize, 1), alignment: 16)
        bytes = raw.bindMemory(to: UInt8.self).baseAddress!
    }

    deinit { raw.deallocate() }

    // MARK: Input

    /// Reads the next block; false at the end of input. Call only when `pos == end`.
    @inline(never)
    private func refill() throws -> Bool {
        if atEnd { return false }
        consumed += end
        pos = 0
        end = 0
        let n = try source(raw)
        guard n > 0 else {
            atEnd = true
            return false
        }
        end = min(n, raw.count)
        return true
    }

    @inline(__always)
    private func peek() throws -> UInt8? {
        if pos == end {
            guard try refill() else { return nil }
        }
        return bytes[pos]
    }

    /// The next byte, not consumed; the end of input here is truncation.
    @inline(__always)
    private func need(_ inside: StaticString) throws -> UInt8 {
        if pos == end {
            guard try refill() else { throw malformed("the input ends inside \(inside)") }
        }
        return bytes[pos]
    }

    /// The next byte, consumed; the end of input here is truncation.
    @inline(__always)
    private func take(_ inside: StaticString) throws -> UInt8 {
        let b = try need(inside)
        pos += 1
        return b
    }

    func malformed(_ detail: String) -> XLSXError {
        XLSXError("\(entry) is not well-formed XML at byte \(consumed + pos): \(detail) — the .xlsx file looks corrupt or truncated")
    }

    private var utf16: XLSXError {
        XLSXError("\(entry) is UTF-16 encoded: UTF-16 XML parts are not supported (save the workbook again from Excel to get UTF-8)")
    }

    // MARK: Events

    /// The next element start or end, or `.eof` after the root element has ended.
    func next() throws -> Event {
        if pendingEnd {
            pendingEnd = false
            depth -= 1
            return .end
        }
        if !started { try begin() }
        while true {
            guard let b = try peek() else { return try endOfInput() }
            if b != UInt8(ascii: "<") {
                if collectText && depth > 0 { try readCharacterData() } else { skipCharacterData() }
                continue
            }
            pos += 1
            switch try need("a tag") {
            case UInt8(ascii: "/"):
                pos += 1
                try readEndTag()
                return .end
            case UInt8(ascii: "?"):
                pos += 1
                try skipProcessingInstruction()
            case UInt8(ascii: "!"):
                pos += 1
                try readMarkupDeclaration()
            default:
                try readStartTag()
                return .start
            }
        }
    }

    /// Collects the character data of the element just started, up to and including its end
    /// tag, into `text` (the text of any child elements included).
    func readText() throws {
        text.removeAll()
        if pendingEnd {
            _ = try next()
            return
        }
        let d = depth
        collectText = true
        defer { collectText = false }
        while true {
            let e = try next()
            if e == .eof || (e == .end && depth < d) { return }
        }
    }

    /// Collects the text of the rich-text element just started (`si` or `is`), up to and
    /// including its end tag, into `text`: its `t` runs joined, phonetic runs (`rPh`) left out.
    func readRichText() throws {
        text.removeAll()
        if pendingEnd {
            _ = try next()
            return
        }
        let d = depth
        var runDepth = -1
        defer { collectText = false }
        while true {
            switch try next() {
            case .start:
                if runDepth < 0 && localIs("t") {
                    runDepth = depth
                    collectText = true
                } else if localIs("rPh") {
                    try skipElement()
                }
            case .end:
                if depth < runDepth {
                    runDepth = -1
                    collectText = false
                }
                if depth < d { return }
            case .eof:
                return
            }
        }
    }

    /// Skips the element just started, up to and including its end tag.
    func skipElement() throws {
        let collecting = collectText
        collectText = false
        defer { collectText = collecting }
        if pendingEnd {
            _ = try next()
            return
        }
        let d = depth
        while true {
            let e = try next()
            if e == .eof || (e == .end && depth < d) { return }
        }
    }

    private func begin() throws {
        started = true
        guard let b = try peek() else { return }
        if b == 0xEF {
            pos += 1
            guard try take("the byte-order mark") == 0xBB, try take("the byte-order mark") == 0xBF else {
                throw malformed("a broken UTF-8 byte-order mark")
            }
        } else if b == 0xFE || b == 0xFF || b == 0x00 {
            throw utf16
        }
    }

    private func endOfInput() throws -> Event {
        if depth > 0 {
            let open = stack.string((stackEnds.count > 1 ? stackEnds[stackEnds.count - 2] : 0)..<stack.count)
            throw malformed("the input ends inside <\(open)> with \(depth) element\(depth == 1 ? "" : "s") still open")
        }
        if !sawRoot { throw malformed("there is no root element") }
        return .eof
    }

    // MARK: Names and attributes

    /// Whether the current element's local name is `s`.
    @inline(__always)
    func localIs(_ s: StaticString) -> Bool {
        let n = s.utf8CodeUnitCount
        guard name.count - localStart == n else { return false }
        let p = s.utf8Start
        let b = name.base + localStart
        for k in 0..<n where b[k] != p[k] { return false }
        return true
    }

    /// Where the value of the current start tag's attribute with local name `local` is, for
    /// `attributeBytes` (the first such attribute).
    func attribute(_ local: StaticString) -> Range<Int>? {
        let n = local.utf8CodeUnitCount
        let p = local.utf8Start
        search: for a in attributes.buffer where a.valueStart - a.localStart == n {
            for k in 0..<n where attributeData[a.localStart + k] != p[k] { continue search }
            return a.valueStart..<a.valueEnd
        }
        return nil
    }

    /// Shows an attribute value's bytes (indexed from 0) to `body`.
    func attributeBytes<R>(_ r: Range<Int>, _ body: (UnsafeBufferPointer<UInt8>) throws -> R) rethrows -> R {
        try body(attributeData.slice(r))
    }

    func attributeString(_ local: StaticString) -> String? {
        attribute(local).map { attributeData.string($0) }
    }

    func attributeInt(_ local: StaticString) -> Int? {
        attribute(local).flatMap { Int(attributeData.string($0)) }
    }

    /// Name bytes: anything but whitespace, quotes, / < = > (the XML name rules are not checked further).
    @inline(__always)
    private static func isNameByte(_ b: UInt8) -> Bool {
        b > 0x3E || (b > 0x20 && b != 0x22 && b != 0x27 && b != 0x2F && b < 0x3C)
    }

    /// Appends a name to `out`; returns where its local part starts.
    private func scanName(into out: ByteStore) throws -> Int {
        let start = out.count
        while true {
            if pos == end {
                guard try refill() else { throw malformed("the input ends inside a tag") }
            }
            let p = bytes
            let e = end
            var i = pos
            while i < e && Self.isNameByte(p[i]) { i += 1 }
            if i > pos {
                out.append(p + pos, count: i - pos)
                pos = i
            }
            if i < e { break }
        }
        if out.count == start {
            let b = bytes[pos]
            if b == 0x00 && consumed + pos <= 2 { throw utf16 }
            throw malformed("expected a name, found \(Self.describe(b))")
        }
        if out.count - start > Self.maxTag { throw malformed("a name longer than \(Self.maxTag) bytes") }
        var local = start
        for k in start..<out.count where out[k] == UInt8(ascii: ":") { local = k + 1 }
        return local
    }

    private static func describe(_ b: UInt8) -> String {
        b >= 0x21 && b < 0x7F ? "\"\(Character(Unicode.Scalar(b)))\"" : "byte 0x\(String(b, radix: 16, uppercase: true))"
    }

    @discardableResult
    private func skipSpace() throws -> Bool {
        var skipped = false
        while true {
            if pos == end {
                guard try refill() else { return skipped }
            }
            let b = bytes[pos]
            guard b == 0x20 || b == 0x0A || b == 0x09 || b == 0x0D else { return skipped }
            pos += 1
            skipped = true
        }
    }

    private func readStartTag() throws {
        if depth == 0 && sawRoot { throw malformed("a second root element") }
        sawRoot = true
        name.removeAll()
        localStart = try scanName(into: name)
        attributes.removeAll()
        attributeData.removeAll()
        while true {
            let spaced = try skipSpace()
            switch try need("a start tag") {
            case UInt8(ascii: ">"):
                pos += 1
                stack.append(name.base, count: name.count)
                stackEnds.append(stack.count)
                depth += 1
                return
            case UInt8(ascii: "/"):
                pos += 1
                guard try take("a start tag") == UInt8(ascii: ">") else { throw malformed("expected > after / in a start tag") }
                depth += 1
                pendingEnd = true
                return
            case let b:
                guard spaced else { throw malformed("expected whitespace, > or /> in a start tag, found \(Self.describe(b))") }
                try readAttribute()
            }
        }
    }

    private func readAttribute() throws {
        let local = try scanName(into: attributeData)
        try skipSpace()
        guard try take("an attribute") == UInt8(ascii: "=") else { throw malformed("expected = after an attribute name") }
        try skipSpace()
        let quote = try take("an attribute")
        guard quote == 0x22 || quote == 0x27 else { throw malformed("an attribute value without quotes") }
        let valueStart = attributeData.count
        while true {
            if pos == end {
                guard try refill() else { throw malformed("the input ends inside an attribute value") }
            }
            let p = bytes
            let e = end
            var i = pos
            while i < e {
                let b = p[i]
                if b == quote || b == 0x26 || b == 0x3C || b < 0x20 { break }
                i += 1
            }
            if i > pos {
                attributeData.append(p + pos, count: i - pos)
                pos = i
            }
            if i == e { continue }
            let b = p[i]
            pos += 1
            if b == quote { break }
            switch b {
            case 0x26:
                attributeData.appendScalar(try readReference())
            case 0x3C:
                throw malformed("< in an attribute value")
            case 0x0D:
                // Attribute-value normalization: a line end or tab is one space.
                attributeData.append(0x20)
                if try peek() == 0x0A { pos += 1 }
            case 0x0A, 0x09:
                attributeData.append(0x20)
            default:
                attributeData.append(b)
            }
        }
        if attributeData.count > Self.maxTag { throw malformed("a start tag longer than \(Self.maxTag) bytes") }
        attributes.append(Attribute(localStart: local, valueStart: valueStart, valueEnd: attributeData.count))
    }

    private func readEndTag() throws {
        name.removeAll()
        localStart = try scanName(into: name)
        try skipSpace()
        guard try take("an end tag") == UInt8(ascii: ">") else { throw malformed("expected > to end </\(name.string())") }
        guard let top = stackEnds.last else {
            throw malformed("</\(name.string())> closes no open element")
        }
        let from = stackEnds.count > 1 ? stackEnds[stackEnds.count - 2] : 0
        var same = top - from == name.count
        if same {
            for k in 0..<name.count where stack[from + k] != name[k] {
                same = false
                break
            }
        }
        guard same else {
            throw malformed("</\(name.string())> does not close <\(stack.string(from..<top))>")
        }
        stack.removeLast(top - from)
        stackEnds.removeLast()
        depth -= 1
    }

    // MARK: Character data and references

    private func skipCharacterData() {
        let p = bytes
        let e = end
        var i = pos
        while i < e && p[i] != 0x3C { i += 1 }
        pos = i
    }

    private func readCharacterData() throws {
        while true {
            if pos == end {
                guard try refill() else { return }
            }
            let p = bytes
            let e = end
            var i = pos
            while i < e {
                let b = p[i]
                if b == 0x3C || b == 0x26 || b == 0x0D { break }
                i += 1
            }
            if i > pos {
                text.append(p + pos, count: i - pos)
                pos = i
                if text.count > Self.maxText { throw malformed("a text value longer than \(Self.maxText) bytes") }
            }
            if i == e { continue }
            switch p[i] {
            case 0x3C:
                return
            case 0x26:
                pos += 1
                text.appendScalar(try readReference())
            default:  // CR: a line end is one LF
                pos += 1
                text.append(0x0A)
                if try peek() == 0x0A { pos += 1 }
            }
        }
    }

    /// After "&": the referenced character (the five predefined entities and &#N; &#xH;).
    private func readReference() throws -> UInt32 {
        var b = try take("a reference")
        if b == UInt8(ascii: "#") {
            b = try take("a character reference")
            let hex = b == UInt8(ascii: "x")
            if hex { b = try take("a character reference") }
            var value: UInt32 = 0
            var digits = 0
            while b != UInt8(ascii: ";") {
                let d: UInt8?
                if hex {
                    d = XLSXWorkbook.hexValue(b)
                } else {
                    d = b >= 0x30 && b <= 0x39 ? b - 0x30 : nil
                }
                guard let d, value <= 0x10FFFF else { throw malformed("a bad character reference") }
                value = value * (hex ? 16 : 10) + UInt32(d)
                digits += 1
                b = try take("a character reference")
            }
            guard digits > 0, value != 0, value <= 0x10FFFF, !(0xD800...0xDFFF).contains(value) else {
                throw malformed("a character reference to a code point that is not a character")
            }
            return value
        }
        var key: UInt64 = 0
        var count = 0
        while b != UInt8(ascii: ";") {
            guard count < 4, Self.isNameByte(b) else { throw malformed("an unknown or unterminated entity reference") }
            key = key << 8 | UInt64(b)
            count += 1
            b = try take("an entity reference")
        }
        switch key {
        case 0x616D70: return 0x26  // amp
        case 0x6C74: return 0x3C  // lt
        case 0x6774: return 0x3E  // gt
        case 0x71756F74: return 0x22  // quot
        case 0x61706F73: return 0x27  // apos
        default: throw malformed("an undeclared entity reference")
        }
    }

    // MARK: Comments, CDATA, DOCTYPE, processing instructions

    /// After "<!": a comment, a CDATA section or a DOCTYPE.
    private func readMarkupDeclaration() throws {
        switch try take("markup") {
        case UInt8(ascii: "-"):
            guard try take("a comment") == UInt8(ascii: "-") else { throw malformed("a broken comment") }
            var dashes = 0
            while true {
                let b = try take("a comment")
                if b == UInt8(ascii: ">") && dashes >= 2 { return }
                dashes = b == UInt8(ascii: "-") ? dashes + 1 : 0
            }
        case UInt8(ascii: "["):
            try expect("CDATA[")
            if depth == 0 { throw malformed("a CDATA section outside the root element") }
            let collecting = collectText
            var brackets = 0
            var afterCR = false
            while true {
                let b = try take("a CDATA section")
                if b == UInt8(ascii: ">") && brackets >= 2 {
                    if collecting { text.removeLast(2) }
                    return
                }
                brackets = b == UInt8(ascii: "]") ? brackets + 1 : 0
                guard collecting else { continue }
                if b == 0x0D {
                    text.append(0x0A)
                    afterCR = true
                    continue
                }
                if !(b == 0x0A && afterCR) { text.append(b) }
                afterCR = false
                if text.count > Self.maxText { throw malformed("a text value longer than \(Self.maxText) bytes") }
            }
        case UInt8(ascii: "D"):
            try expect("OCTYPE")
            if sawRoot { throw malformed("a DOCTYPE inside the document") }
            var quote: UInt8 = 0
            while true {
                let b = try take("the DOCTYPE")
                if quote != 0 {
                    if b == quote { quote = 0 }
                } else if b == 0x22 || b == 0x27 {
                    quote = b
                } else if b == UInt8(ascii: "[") {
                    throw XLSXError("\(entry) has a DTD with an internal subset (entity declarations); it is refused as unsafe — spreadsheets never need one, so the .xlsx file looks corrupt or crafted")
                } else if b == UInt8(ascii: ">") {
                    return
                }
            }
        default:
            throw malformed("unknown markup after <!")
        }
    }

    private func expect(_ s: StaticString) throws {
        let p = s.utf8Start
        for k in 0..<s.utf8CodeUnitCount where try take("markup") != p[k] {
            throw malformed("unknown markup after <!")
        }
    }

    /// After "<?": skips to "?>"; the XML declaration's encoding must be UTF-8 (or ASCII).
    private func skipProcessingInstruction() throws {
        let target = ByteStore(capacity: 8)
        _ = try scanName(into: target)
        let isDeclaration = target.string() == "xml"
        var content: [UInt8] = []
        var question = false
        while true {
            let b = try take("a processing instruction")
            if b == UInt8(ascii: ">") && question { break }
            question = b == UInt8(ascii: "?")
            if isDeclaration && content.count < 1024 { content.append(b) }
        }
        guard isDeclaration else { return }
        // encoding = "name" (or 'name'), if the declaration has one.
        let key = Array("encoding".utf8)
        guard var i = content.indices.first(where: { content[$0...].starts(with: key) }) else { return }
        i += key.count
        while i < content.count && (content[i] == 0x20 || content[i] == 0x3D || content[i] == 0x09 || content[i] == 0x0A || content[i] == 0x0D) { i += 1 }
        guard i < content.count, content[i] == 0x22 || content[i] == 0x27 else { return }
        let quote = content[i]
        let value = content[(i + 1)...].prefix { $0 != quote }
        let encoding = String(decoding: value, as: UTF8.self).lowercased()
        if encoding.hasPrefix("utf-16") || encoding.hasPrefix("utf16") || encoding.hasPrefix("ucs-2") || encoding == "unicode" {
            throw utf16
        }
        if !["utf-8", "utf8", "us-ascii", "ascii"].contains(encoding) {
            throw XLSXError("\(entry) declares the encoding \"\(encoding)\"; only UTF-8 XML parts are supported")
        }
    }
}

/// A growable array of plain values owned by the tokenizer (names, attribute values, text,
/// the open elements): a `RawBuffer` in a class held in `let`s, so the hot loops append
/// without the dynamic exclusivity checks that an array in a class's `var` costs.
final class PlainStore<Element: BitwiseCopyable> {
    private var storage: RawBuffer<Element>

    init(capacity: Int = 256) { storage = RawBuffer(capacity: max(capacity, 8)) }

    deinit { storage.free() }

    var count: Int { storage.count }

    var base: UnsafeMutablePointer<Element> { storage.base }

    var isEmpty: Bool { storage.isEmpty }

    /// The elements, valid until the next change.
    var buffer: UnsafeBufferPointer<Element> { storage.buffer }

    func slice(_ r: Range<Int>) -> UnsafeBufferPointer<Element> { UnsafeBufferPointer(start: storage.base + r.lowerBound, count: r.count) }

    subscript(i: Int) -> Element { storage[i] }

    var last: Element? { storage.count > 0 ? storage[storage.count - 1] : nil }

    func removeAll() { storage.removeAll() }

    func removeLast(_ n: Int = 1) { storage.removeLast(n) }

    @inline(__always)
    func append(_ e: Element) { storage.append(e) }

    @inline(__always)
    func append(_ p: UnsafePointer<Element>, count n: Int) { storage.append(contentsOf: UnsafeBufferPointer(start: p, count: n)) }
}

typealias ByteStore = PlainStore<UInt8>

extension PlainStore where Element == UInt8 {
    func string() -> String { String(decoding: buffer, as: UTF8.self) }

    func string(_ r: Range<Int>) -> String { String(decoding: slice(r), as: UTF8.self) }

    func appendScalar(_ scalar: UInt32) { forEachUTF8Byte(of: scalar) { append($0) } }
}
