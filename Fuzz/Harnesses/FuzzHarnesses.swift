// SluiceFuzzHarnesses: the parsers that take untrusted bytes, each behind one entry point that
// libFuzzer (`bash scripts/fuzz.sh`) and the corpus tests feed.
import Foundation

/// One parser fed untrusted bytes. Whatever the bytes, it must not crash, hang or grow memory
/// without bound; an error is the parser's expected answer to junk. Where two parts of Sluice
/// must agree about the same bytes (the JSON picker and parser, a field's fast and general
/// conversion), the harness checks that too and traps when they do not.
public struct FuzzHarness: Sendable {
    public let name: String
    /// What it feeds, for `sluice-fuzz --list` and README.
    public let about: String
    public let run: @Sendable (UnsafeRawBufferPointer) -> Void
    /// Set-up done once before the first input (a test keyring, mappings), so that it is not
    /// timed as part of an input.
    public let prepare: @Sendable () -> Void

    init(name: String, about: String, prepare: @escaping @Sendable () -> Void = {}, run: @escaping @Sendable (UnsafeRawBufferPointer) -> Void) {
        self.name = name
        self.about = about
        self.prepare = prepare
        self.run = run
    }
}

public enum FuzzHarnesses {
    public static let all: [FuzzHarness] = formatHarnesses + configHarnesses + networkHarnesses + unpackHarnesses

    public static func named(_ name: String) -> FuzzHarness? { all.first { $0.name == name } }
}

/// The fuzzer's bytes read as a few choices, then the payload.
struct FuzzInput {
    private(set) var rest: UnsafeRawBufferPointer

    init(_ bytes: UnsafeRawBufferPointer) { rest = bytes }

    /// The next byte (0 when there are none left).
    mutating func byte() -> UInt8 {
        guard let b = rest.first else { return 0 }
        rest = UnsafeRawBufferPointer(rebasing: rest.dropFirst())
        return b
    }

    mutating func pick<T>(_ options: [T]) -> T { options[Int(byte()) % options.count] }

    mutating func flag() -> Bool { byte() & 1 == 1 }

    /// What is left, as bytes.
    var bytes: [UInt8] { Array(rest) }

    /// What is left, as text (invalid UTF-8 repaired, as Sluice's readers of text do).
    var text: String { String(decoding: rest, as: UTF8.self) }

    /// What is left, split at `separator` into at most `count` parts.
    func parts(_ count: Int, separator: UInt8 = 0x0A) -> [[UInt8]] {
        rest.split(separator: separator, maxSplits: count - 1, omittingEmptySubsequences: false).map(Array.init)
    }
}

/// Bytes in memory as a byte source that hands out at most `chunk` bytes a read, so that the
/// readers' refills land anywhere in a token; it can seek, as a zip or a 7z needs. The readers'
/// unit tests feed them through it too.
public final class ChunkedSource: @unchecked Sendable {  // used by one reader on one thread
    private let bytes: [UInt8]
    private let chunk: Int
    private var offset = 0

    public init(_ bytes: [UInt8], chunk: Int = .max) {
        self.bytes = bytes
        self.chunk = max(chunk, 1)
    }

    public convenience init(_ text: String, chunk: Int = .max) { self.init(Array(text.utf8), chunk: chunk) }

    public func read(_ buffer: UnsafeMutableRawBufferPointer) -> Int {
        let n = min(buffer.count, chunk, bytes.count - offset)
        guard n > 0 else { return 0 }
        bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + offset, byteCount: n) }
        offset += n
        return n
    }

    public func seek(_ to: Int64, _ whence: Int32) -> Int64 {
        let base: Int64 = switch whence {
        case SEEK_SET: 0
        case SEEK_CUR: Int64(offset)
        default: Int64(bytes.count)
        }
        let target = base + to
        guard target >= 0, target <= Int64(bytes.count) else { return -1 }
        offset = Int(target)
        return target
    }
}

/// Reads a source to its end, through a buffer of `size` bytes; stops at the first error.
func drain(_ read: (UnsafeMutableRawBufferPointer) throws -> Int, size: Int = 4096) {
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 16)
    defer { buffer.deallocate() }
    while let n = try? read(buffer), n > 0 {}
}

/// Stops the fuzzer with a finding: two parts of Sluice disagree about the same input.
func disagreement(_ what: String) -> Never {
    fatalError("fuzz finding: \(what)")
}
