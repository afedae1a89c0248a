import CSluiceLinux
import Crypto
import Foundation
import SluiceSupport
import SluiceLake
import SluiceManifest
#if canImport(Glibc)
import Glibc
#endif

/// Large transfers cut off mid-file, kept so that the next pass continues from the chunks
/// already received instead of starting again: `<state_dir>/partial/<client>/<source>/`, per
/// file a `.data` file (the received chunks at their offsets) and a `.map` (which chunks, and
/// the remote file's size and mtime they came from). Folders 0700, files 0600: they hold the
/// client's data.
///
/// A partial is used only while the remote file still has the size and mtime it was fetched
/// with; otherwise it is thrown away and the file starts over. Its chunks are copied into the
/// new staging file and hashed again with the rest, so a version is still committed only
/// when every byte came from one unchanged remote file and its SHA-256 covers all of them.
package final class PartialStore: Sendable {
    package let folder: String

    package init(stateDir: String, client: String, source: String) {
        folder = "\(stateDir)/partial/\(client)/\(source)"
    }

    package struct Map: Codable, Equatable {
        /// The source-relative path, as text (for a person looking at the folder).
        package var path: String
        package var size: Int64
        package var mtimeNs: Int64
        package var chunkSize: Int64
        /// The chunks complete in the data file.
        package var chunks: [Int]

        package init(path: String, size: Int64, mtimeNs: Int64, chunkSize: Int64, chunks: [Int]) {
            self.path = path
            self.size = size
            self.mtimeNs = mtimeNs
            self.chunkSize = chunkSize
            self.chunks = chunks
        }
    }

    /// The file name stem of a path's partial: the SHA-256 of its bytes.
    package func stem(_ path: RelativePath) -> String {
        "\(folder)/\(hexString(SHA256.hash(data: Data(path.bytes))))"
    }

    /// The chunks kept for `candidate`, copied into `fd` (the new staging file) at their
    /// offsets; empty when there is no usable partial (a stale one is removed).
    package func resume(_ candidate: Candidate, chunkSize: Int64, into fd: Int32) -> Set<Int> {
        let stem = stem(candidate.path)
        guard let data = FileManager.default.contents(atPath: stem + ".map"),
              let map = try? JSONDecoder().decode(Map.self, from: data) else { return [] }
        guard map.size == candidate.size, map.mtimeNs == candidate.mtimeNs, map.chunkSize == chunkSize else {
            remove(candidate.path)  // the file changed: start over
            return []
        }
        let source = open(stem + ".data", O_RDONLY | O_CLOEXEC)
        guard source >= 0 else {
            remove(candidate.path)
            return []
        }
        defer { close(source) }
        var copied = Set<Int>()
        for chunk in map.chunks {
            let start = Int64(chunk) * chunkSize
            let length = min(candidate.size, start + chunkSize) - start
            guard length > 0, Self.copy(from: source, to: fd, offset: start, length: length) else { break }
            copied.insert(chunk)
        }
        return copied
    }

    /// Keeps the complete `chunks` of a cut-off transfer from the staging file `fd` (at
    /// `stagingPath`): linked when the state folder is on the lake's file system, else copied;
    /// made durable before the map that names them.
    package func save(_ candidate: Candidate, chunkSize: Int64, chunks: [Int], fd: Int32, stagingPath: String) -> Bool {
        guard !chunks.isEmpty else { return false }
        do {
            _ = try makeDirectories(folder, mode: 0o700)
        } catch {
            return false
        }
        let stem = stem(candidate.path)
        let tmp = stem + ".data.tmp"
        unlink(tmp)
        guard fdatasync(fd) == 0 else { return false }
        if link(stagingPath, tmp) != 0 {
            // Another file system: copy the chunks.
            let out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            guard out >= 0 else { return false }
            var ok = true
            for chunk in chunks where ok {
                let start = Int64(chunk) * chunkSize
                ok = Self.copy(from: fd, to: out, offset: start, length: min(candidate.size, start + chunkSize) - start)
            }
            ok = ok && fsync(out) == 0
            close(out)
            guard ok else {
                unlink(tmp)
                return false
            }
        } else {
            // The link shares the temp file's inode, which the failed copy discards right after.
            chmod(tmp, 0o600)
        }
        let map = Map(path: candidate.path.display, size: candidate.size, mtimeNs: candidate.mtimeNs, chunkSize: chunkSize, chunks: chunks.sorted())
        guard rename(tmp, stem + ".data") == 0, let json = try? JSONEncoder().encode(map) else {
            unlink(tmp)
            return false
        }
        let mapTmp = stem + ".map.tmp"
        let mfd = open(mapTmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard mfd >= 0 else { return false }
        let written = json.withUnsafeBytes { write(mfd, $0.baseAddress, $0.count) } == json.count && fsync(mfd) == 0
        close(mfd)
        guard written, rename(mapTmp, stem + ".map") == 0 else {
            unlink(mapTmp)
            return false
        }
        let dfd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 {
            fsync(dfd)
            close(dfd)
        }
        return true
    }

    /// Forgets a path's partial (its transfer completed, or the file changed).
    package func remove(_ path: RelativePath) {
        let stem = stem(path)
        unlink(stem + ".map")
        unlink(stem + ".data")
    }

    /// Removes partials not touched for `age` nanoseconds (files that were never fetched
    /// whole, deleted from the server meanwhile).
    package func prune(olderThan age: Int64) {
        let now = Int64(Date().timeIntervalSince1970 * 1e9)
        for name in Lake.listDirectory(folder) {
            var st = stat()
            let path = "\(folder)/\(name)"
            guard stat(path, &st) == 0 else { continue }
            let mtime = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
            if now - mtime > age { unlink(path) }
        }
    }

    /// Copies `length` bytes at `offset` from one file to the same offset of another, in the
    /// kernel (`copy_file_range`); false when it could not copy all of them.
    package static func copy(from source: Int32, to target: Int32, offset: Int64, length: Int64) -> Bool {
        var inOffset = offset, outOffset = offset
        var left = length
        while left > 0 {
            let n = CSluiceLinux_copyFileRange(source, &inOffset, target, &outOffset, UInt(min(left, 1 << 30)))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return false }
            left -= Int64(n)
        }
        return true
    }
}
