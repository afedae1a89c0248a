// Small helpers shared by the modules.
import Foundation

/// Calls `body` with a NUL-terminated copy of `bytes`.
package func withCString<R, E: Error>(_ bytes: [UInt8], _ body: (UnsafePointer<CChar>) throws(E) -> R) throws(E) -> R {
    var z = bytes
    z.append(0)
    let result: Result<R, E> = z.withUnsafeBufferPointer { b in
        b.withMemoryRebound(to: CChar.self) { p in
            do throws(E) { return .success(try body(p.baseAddress!)) } catch { return .failure(error) }
        }
    }
    return try result.get()
}

@inline(__always)
package func with<T>(_ value: T, _ change: (inout T) -> Void) -> T {
    var v = value
    change(&v)
    return v
}

/// A secret's file (a password, a passphrase): its first line without the line ending, other
/// whitespace kept; nil when the file cannot be read (`errno` says why). Never logged.
package func secretFirstLine(_ path: String) -> String? {
    guard let data = FileManager.default.contents(atPath: path) else { return nil }
    let text = String(decoding: data, as: UTF8.self)
    return String(text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
        .trimmingCharacters(in: CharacterSet(charactersIn: "\r"))
}
