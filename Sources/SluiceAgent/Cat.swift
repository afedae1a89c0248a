import Foundation
import SluiceFormats
import SluiceManifest
import SluiceSupport
#if canImport(Glibc)
import Glibc
#endif

extension Agent {
    /// `sluice cat`: one stored version of a client's file (the newest, or `version`), written
    /// through `write` a block at a time: unpacked when its content is compressed, unless `raw`.
    /// `source` picks among sources that hold the same path.
    public func cat(client id: String, path: String, source: String?, version: Int?, raw: Bool,
                    write: (UnsafeRawBufferPointer) throws -> Void) throws(AgentError) {
        let rows = try history(client: id, path: path).filter { $0.path == path && (source == nil || $0.source == source) }
        guard !rows.isEmpty else {
            throw AgentError(.usage, "client '\(id)' has no stored file \(path)\(source.map { " from source '\($0)'" } ?? "") "
                + "(see `sluice history \(id)` for the paths)")
        }
        let sources = Set(rows.map(\.source))
        guard sources.count == 1 else {
            throw AgentError(.usage, "\(path) is stored from sources \(sources.sorted().joined(separator: ", ")): choose one with --source")
        }
        let chosen: VersionRecord
        if let version {
            guard let row = rows.first(where: { $0.version == version }) else {
                throw AgentError(.usage, "\(path) has no version \(version) (stored: \(rows.map { "v\($0.version)" }.sorted().joined(separator: ", ")))")
            }
            chosen = row
        } else {
            chosen = rows.max { $0.version < $1.version }!
        }
        let file = "\(config.lakeDir)/\(chosen.lake_path)"
        let fd = open(file, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw AgentError(.runtime, "cannot open \(chosen.lake_path): \(String(cString: strerror(errno))) — run `sluice audit \(id)`")
        }
        defer { close(fd) }
        let source: ByteSource = { buffer in
            let n = read(fd, buffer.baseAddress!, buffer.count)
            if n < 0 { throw AgentError(.runtime, "reading \(chosen.lake_path) failed: \(String(cString: strerror(errno)))") }
            return n
        }
        var head = [UInt8](repeating: 0, count: Compression.magicLength)
        let got = head.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, $0.count, 0) }
        let compression = raw ? nil : Compression.sniff(Array(head.prefix(max(0, got))))
        let block = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { block.deallocate() }
        do {
            let next = try Compression.unpacking(compression, limits: unpackLimits, source: source)
            while true {
                let n = try next(block)
                if n == 0 { break }
                try write(UnsafeRawBufferPointer(rebasing: block[0..<n]))
            }
        } catch let e as AgentError {
            throw e
        } catch let e as UnpackError {
            throw AgentError(.runtime, "\(chosen.source)/\(chosen.path) v\(chosen.version): \(e.description) (`--raw` writes the stored bytes)")
        } catch {
            throw AgentError(.runtime, "writing \(chosen.source)/\(chosen.path) v\(chosen.version) failed: \(error)")
        }
    }
}
