import CSluiceLinux
import Foundation
import SluiceLake
import SluiceSupport
#if canImport(Glibc)
import Glibc
#endif

// The files a transform reads and writes in the lake: the stored version it reads, and its
// outputs, written to journaled temp files and published atomically (alone or in a batch).

/// Outputs written (to journaled temp files) and waiting to be published together: the
/// members of an archive, each small, would otherwise cost an fsync of the file and one of its
/// folder apiece. `publish` keeps the order that makes a crash safe: every temp file's bytes
/// durable (one `syncfs` of the lake), then the renames, then each folder fsync'd once; the
/// transform is recorded after that. A crash before leaves only temp files, which the next
/// start removes, and no transform row, so the archive is transformed again.
package final class PublishBatch: @unchecked Sendable {  // reason: `files` is guarded by `lock` (members finish on several threads)
    private let lake: Lake
    private let lock = NSLock()
    private var files: [AtomicFile] = []

    package init(lake: Lake) { self.lake = lake }

    fileprivate func add(_ file: AtomicFile) { lock.withLock { files.append(file) } }

    package var isEmpty: Bool { files.isEmpty }

    package func publish() throws {
        guard !files.isEmpty else { return }
        if let bucket = lake.bucket {
            for f in files { try lake.uploadReplacing(bucket, temp: f.temp, to: f.relative) }
            files = []
            return
        }
        try lake.syncFileSystem()
        for f in files { try f.renameIntoPlace() }
        try lake.syncDirectories(Set(files.map(\.folderName)))
        files = []
    }

    /// Removes the temp files of a batch that will not be published.
    package func abandon() {
        for f in files { f.abandon() }
        files = []
    }
}

/// A stored version opened for a transform's reader.
package final class LakeFile {
    package let path: String
    private let fd: Int32

    package convenience init(lakeRoot: String, input: TransformInput) throws {
        try self.init(lakeRoot: lakeRoot, lakePath: input.lakePath, readPath: input.readPath)
    }

    /// The version at `lakePath` below `lakeRoot` (read from `readPath` instead when given).
    package init(lakeRoot: String, lakePath: String, readPath: String? = nil) throws {
        path = lakePath
        fd = open(readPath ?? "\(lakeRoot)/\(path)", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw Transformer.TransformError("cannot open \(path): \(String(cString: strerror(errno))) — run `sluice audit`")
        }
    }

    deinit { close(fd) }

    /// Fills `buffer`; 0 at the end.
    package func read(_ buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let n = Glibc.read(fd, buffer.baseAddress!, buffer.count)
        if n < 0 { throw Transformer.TransformError("reading \(path) failed: \(String(cString: strerror(errno)))") }
        return n
    }

    /// Moves the read position (`lseek`); the new offset, or -1.
    package func seek(_ offset: Int64, _ whence: Int32) -> Int64 {
        Int64(lseek(fd, off_t(offset), whence))
    }

    /// The first `count` bytes (fewer for a shorter file), without moving the read position.
    package func head(_ count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        let n = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, count, 0) }
        if n < 0 { throw Transformer.TransformError("reading \(path) failed: \(String(cString: strerror(errno)))") }
        return Array(out.prefix(n))
    }
}

/// A file under `processed/` written to a temp file in its folder, fsync'd, then renamed over
/// any earlier output (re-runs replace outputs atomically), and the folder fsync'd. The temp
/// file is one of the lake's journaled staging files, so a crash mid-transform leaves nothing
/// that the next start does not remove.
package final class AtomicFile {
    package let final: String
    /// The output's lake path.
    package let relative: String
    package let temp: String
    private let lake: Lake
    private let folder: String
    private var fd: Int32
    private var written: Int64 = 0
    private var flushed: Int64 = 0

    package init(lake: Lake, relative: String) throws {
        self.lake = lake
        self.relative = relative
        final = "\(lake.root)/\(relative)"
        folder = (relative as NSString).deletingLastPathComponent
        temp = try lake.tempPath(inFolder: folder)
        fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o440)
        guard fd >= 0 else { throw SystemCallError(call: "open", errno: errno, path: temp) }
    }

    package func write(_ bytes: UnsafeRawBufferPointer) throws {
        try writeAll(fd, bytes, path: temp)
        written += Int64(bytes.count)
        if written - flushed >= 8 << 20 {
            // Writeback starts as the file grows, so the fsync at the end has little left.
            _ = CSluiceLinux_startWritebackRange(fd, off_t(flushed), off_t(written - flushed))
            flushed = written
        }
    }

    package func publish() throws {
        if let bucket = lake.bucket {
            close(fd)
            fd = -1
            return try lake.uploadReplacing(bucket, temp: temp, to: relative)
        }
        try systemCall("fsync", temp) { fsync(fd) }
        close(fd)
        fd = -1
        try systemCall("rename", final) { rename(temp, final) }
        try lake.syncDirectories([folder])
    }

    /// Closes the finished temp file and leaves its publishing to `batch`, which makes many
    /// outputs durable with one `syncfs` and fsyncs each folder once.
    package func publish(in batch: PublishBatch) {
        close(fd)
        fd = -1
        batch.add(self)
    }

    /// The renaming half of a batch's publish (the batch made the bytes durable).
    fileprivate func renameIntoPlace() throws {
        try systemCall("rename", final) { rename(temp, final) }
    }

    fileprivate var folderName: String { folder }

    package func abandon() {
        if fd >= 0 {
            close(fd)
            fd = -1
        }
        unlink(temp)
    }
}
