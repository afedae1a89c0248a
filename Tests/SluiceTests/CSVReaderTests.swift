import Foundation
import SluiceTransform
import SluiceTestSupport
import Testing
import SluiceSupport
import SluiceIngest
import SluiceConfig
import SluiceSources
import SluiceFormats

@Suite struct CSVReaderTests {
    /// Reads `data` through a reader with a small block size, so records span blocks.
    static func records(_ data: [UInt8], delimiter: Character = ",", encoding: SourceEncoding = .utf8, block: Int = 7) throws -> [CSVRecord] {
        let box = DataBox(data)
        let reader = CSVReader(delimiter: UInt8(ascii: delimiter.unicodeScalars.first!), encoding: encoding, blockSize: block) { buffer in
            box.read(into: buffer)
        }
        var out: [CSVRecord] = []
        while let r = try reader.next() { out.append(r) }
        return out
    }

    final class DataBox {
        let data: [UInt8]
        var offset = 0
        init(_ data: [UInt8]) { self.data = data }
        func read(into buffer: UnsafeMutableRawBufferPointer) -> Int {
            let n = Swift.min(buffer.count, data.count - offset)
            for i in 0..<n { buffer[i] = data[offset + i] }
            offset += n
            return n
        }
    }

    static func text(_ r: CSVRecord) -> [String] { r.fields.map { String(decoding: $0, as: UTF8.self) } }

    @Test func quotesDelimitersNewlinesAndCRLF() throws {
        let rs = try Self.records(Array("\u{FEFF}a;b;c\r\n1;\"x;y\";\"he said \"\"hi\"\"\"\r\n2;\"two\nlines\";\r\n".utf8), delimiter: ";")
        #expect(rs.map(Self.text) == [["a", "b", "c"], ["1", "x;y", "he said \"hi\""], ["2", "two\nlines", ""]])
        #expect(rs.map(\.line) == [1, 2, 3])
        #expect(rs.allSatisfy { $0.malformed == nil })
    }

    @Test func raggedRowsEmptyFilesAndAMissingLastNewline() throws {
        #expect(try Self.records([]).isEmpty)
        let rs = try Self.records(Array("a,b,c\n1,2\n3,4,5".utf8))
        #expect(rs.map(Self.text) == [["a", "b", "c"], ["1", "2"], ["3", "4", "5"]])
        // An empty last field at the very end of the input, after a plain or a quoted field.
        for block in [1, 2, 64] {
            #expect(try Self.records(Array("x,y,".utf8), block: block).map(Self.text) == [["x", "y", ""]])
            #expect(try Self.records(Array("\"a\",".utf8), block: block).map(Self.text) == [["a", ""]])
            #expect(try Self.records(Array("a,\n,".utf8), block: block).map(Self.text) == [["a", ""], ["", ""]])
        }
    }

    @Test func anUnbalancedQuoteIsMalformedNotACrash() throws {
        let rs = try Self.records(Array("a,b\n1,\"never closed\n2,3\n".utf8))
        #expect(rs.count == 2)
        #expect(rs[1].malformed?.contains("unbalanced quote") == true)
        #expect(rs[1].line == 2)
    }

    @Test func legacyEncodingsBecomeUTF8() throws {
        // Windows-1252: é ü ß and the euro sign (0x80).
        let cp1252: [UInt8] = [0x63, 0x61, 0x66, 0xE9, 0x2C, 0xFC, 0xDF, 0x2C, 0x80, 0x0A]
        #expect(try Self.records(cp1252, encoding: .windows1252).map(Self.text) == [["café", "üß", "€"]])
        #expect(try Self.records(cp1252, encoding: .latin1).map(Self.text)[0][0] == "café")
        // UTF-16 little-endian with a BOM, including a surrogate pair.
        let units: [UInt8] = Array("x,😀\ny,z\n".utf16).flatMap { (u: UInt16) -> [UInt8] in [UInt8(u & 0xFF), UInt8(u >> 8)] }
        let utf16: [UInt8] = [0xFF, 0xFE] + units
        #expect(try Self.records(utf16, encoding: .utf16, block: 3).map(Self.text) == [["x", "😀"], ["y", "z"]])
    }

    @Test func aTenMegabyteFieldIsRead() throws {
        let big = String(repeating: "x", count: 10 << 20)
        let rs = try Self.records(Array("id,blob\n1,\"\(big)\"\n".utf8), block: 1 << 16)
        #expect(rs.count == 2 && rs[1].fields[1].count == 10 << 20)
    }

    /// The client fixtures kept in the repository (`Tests/fixtures/clients`, see its README).
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("fixtures/clients")

    @Test func theClientFixturesReadWithoutCrashing() throws {
        let root = Self.fixtures
        let acme = try Data(contentsOf: root.appendingPathComponent("acme/orders_2026-10-01.csv"))
        let globex = try Data(contentsOf: root.appendingPathComponent("globex/customers.csv"))
        let orders = try Self.records(Array(acme), delimiter: ";", block: 64)
        #expect(orders.first.map(Self.text)?.first?.hasPrefix("\u{FEFF}") == false, "the BOM is dropped")
        #expect(orders.allSatisfy { $0.malformed == nil })
        #expect(Set(orders.dropFirst().map(\.fields.count)).count == 1, "a quoted newline keeps the record whole")
        let customers = try Self.records(Array(globex), encoding: .windows1252, block: 64)
        let widths = customers.dropFirst(2).map(\.fields.count)
        #expect(widths.contains { $0 < widths[0] }, "the ragged row is seen as short")
        #expect(customers.contains { Self.text($0).joined().contains("é") })
    }

    /// Records must not depend on where blocks end: random text full of quotes, escaped
    /// quotes, delimiters, CR, LF and a BOM reads the same through 1-, 2-, 3- and 5-byte blocks
    /// as in one block, lines and malformed reasons included.
    @Test func recordsDoNotDependOnBlockBoundaries() throws {
        var rng = SystemRandomNumberGenerator()
        let alphabet: [UInt8] = Array("ab,\"\"\r\n\n;é".utf8)
        for round in 0..<200 {
            var data: [UInt8] = round % 5 == 0 ? [0xEF, 0xBB, 0xBF] : []
            for _ in 0..<Int.random(in: 0...120, using: &rng) { data.append(alphabet.randomElement(using: &rng)!) }
            func key(_ rs: [CSVRecord]) -> [String] { rs.map { "\($0.line)|\($0.malformed ?? "-")|\(Self.text($0))" } }
            for encoding in [SourceEncoding.utf8, .latin1] {
                let whole = key(try Self.records(data, encoding: encoding, block: 1 << 16))
                for block in [1, 2, 3, 5] {
                    #expect(key(try Self.records(data, encoding: encoding, block: block)) == whole, "\(encoding), block \(block), input \(data)")
                }
            }
        }
    }
}
