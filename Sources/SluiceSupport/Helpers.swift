// Small helpers shared by the modules.

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
