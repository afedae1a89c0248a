import Foundation
import Logging
import SluiceLake
import SluiceSFTP
import Synchronization
import SluiceSupport
import SluiceManifest
import SluiceIngest
import SluiceConfig
#if canImport(Glibc)
import Glibc
#endif

package final class SFTPStream: RangeFetching {
    package let pass: SFTPPass
    package var session: SSHSession?
    package let file: SFTPFile
    /// The remote path read (a symlink's checked target).
    package let path: [UInt8]
    package let candidate: Candidate
    private var offset: Int64 = 0
    /// libssh2 keeps 4 × the read length requested ahead (capped at 8 MiB); 2 MiB reads reach
    /// that cap.
    package static let readLength = 2 << 20

    package init(pass: SFTPPass, session: SSHSession, file: SFTPFile, path: [UInt8], candidate: Candidate) {
        self.pass = pass
        self.session = session
        self.file = file
        self.path = path
        self.candidate = candidate
    }

    /// Files from this size on are fetched as ranges over several sessions.
    package static let parallelThreshold: Int64 = 64 << 20

    package func startParallelFetch(into fd: Int32, stagingPath: String) -> (any ParallelFetch)? {
        guard candidate.size >= Self.parallelThreshold, let primary = session else { return nil }
        var readers = [RangedFetch.Reader(session: primary, file: file, primary: true)]
        // Extra sessions only when idle ones exist or the limit allows new ones: a big file
        // never waits for other files' transfers.
        while readers.count < pass.source.config.maxConnections, let extra = pass.pool.tryAcquire() {
            do throws(SSHError) {
                let handle = try extra.openFile(path)
                // Opened later than the primary handle: it must be the same file (not one the
                // client renamed over it meanwhile), or chunks of two files would be mixed.
                guard Self.matches(try handle.attributes(), candidate) else {
                    handle.close()
                    pass.pool.release(extra)
                    break
                }
                readers.append(RangedFetch.Reader(session: extra, file: handle, primary: false))
            } catch {
                pass.pool.giveBack(extra, after: error)
                break
            }
        }
        // Chunks kept from a transfer cut off in an earlier pass (same size and mtime) are
        // copied in and not fetched again.
        let resumed = pass.partials?.resume(candidate, chunkSize: RangedFetch.chunkSize, into: fd) ?? []
        if !resumed.isEmpty {
            pass.source.logger.notice("Resuming a cut-off transfer", metadata: [
                "path": "\(candidate.path.display)",
                "kept.bytes": "\(resumed.reduce(Int64(0)) { $0 + min(candidate.size, Int64($1 + 1) * RangedFetch.chunkSize) - Int64($1) * RangedFetch.chunkSize })",
            ])
        }
        return RangedFetch(stream: self, readers: readers, fd: fd, size: candidate.size, stagingPath: stagingPath, resumed: resumed)
    }

    /// The primary session broke during a parallel fetch.
    package func primaryBroke() { broken() }

    /// Set by a parallel fetch whose extra handle saw the file change; read after it ended.
    package var changeNote: String?

    package static func matches(_ a: SFTPAttributes, _ c: Candidate) -> Bool {
        a.size == c.size && a.mtime * 1_000_000_000 == c.mtimeNs
    }

    package func read(into buffer: UnsafeMutableRawBufferPointer) throws(SourceError) -> Int {
        // Read exactly the listed size: growth or truncation shows in the fstat afterwards.
        // Each libssh2 call asks for at most a quarter of what is left, so that its read-ahead
        // (4 × the length asked for) never requests past the end of the file; the calls after
        // the first are mostly served from data already received, so the buffer is filled by
        // looping, and the lake gets one write per buffer, not one per call.
        var filled = 0
        while filled < buffer.count {
            let remaining = candidate.size - offset
            if remaining <= 0 { break }
            let quarter = Swift.max(1, Swift.min(remaining / 4, Int64(Self.readLength)))
            let ask = Swift.min(buffer.count - filled, remaining < 4 ? Int(remaining) : Int(quarter))
            do throws(SSHError) {
                let n = try file.read(into: buffer.baseAddress! + filled, count: ask)
                if n == 0 { return filled }  // shorter than listed: changedWhileReading says so
                offset += Int64(n)
                filled += n
            } catch {
                broken()
                throw pass.fail(error)
            }
        }
        return filled
    }

    package func changedWhileReading(bytesRead: Int64) -> String? {
        guard session != nil else { return "connection lost" }
        if let changeNote { return changeNote }
        do {
            let now = try file.attributes()
            if now.size != bytesRead || bytesRead != candidate.size {
                return "size changed while copying (listed \(candidate.size), now \(now.size), read \(bytesRead) bytes); retried on the next pass"
            }
            if now.mtime * 1_000_000_000 != candidate.mtimeNs {
                return "file was modified while copying; retried on the next pass"
            }
            return nil
        } catch {
            broken()
            return "cannot check the file after reading: \(error.message)"
        }
    }

    private func broken() {
        if let s = session {
            session = nil
            file.forget()
            pass.pool.discard(s)
        }
    }

    package func close() {
        guard let s = session else { return }
        file.close()
        session = nil
        pass.pool.release(s)
    }
}

/// A large remote file fetched in chunks dealt out to several sessions in turn, each chunk
/// read sequentially and written into the staging file with `pwrite`. The consumer hashes
/// the contiguous prefix as it grows.
package final class RangedFetch: ParallelFetch, @unchecked Sendable {  // shared state is in ChunkProgress; each Reader is used by one thread
    /// A session and its own handle on the file; used by one reader thread only.
    package struct Reader: @unchecked Sendable {  // its session and handle are used by one reader thread only
        package let session: SSHSession
        package let file: SFTPFile
        package let primary: Bool

        package init(session: SSHSession, file: SFTPFile, primary: Bool) {
            self.session = session
            self.file = file
            self.primary = primary
        }
    }

    /// Bytes per chunk. Each reader asks libssh2 for at most a quarter of what is left in its
    /// chunk, so read-ahead never crosses into a chunk another session reads.
    package static let chunkSize: Int64 = 16 << 20
    /// libssh2 keeps 4 × this requested ahead per session: 4 MiB in flight each.
    package static let readLength = 1 << 20

    package let stream: SFTPStream
    package let fd: Int32
    package let progress: ChunkProgress
    package let stagingPath: String
    /// Chunks copied in from a cut-off transfer (not fetched again).
    package let resumed: Set<Int>
    /// Bytes received from the server in this pass, and whether a connection was lost.
    private let fetched = Atomic<Int64>(0)
    private let connectionLost = Atomic<Bool>(false)

    package init(stream: SFTPStream, readers: [Reader], fd: Int32, size: Int64, stagingPath: String, resumed: Set<Int> = []) {
        self.stream = stream
        self.stagingPath = stagingPath
        self.fd = fd
        self.resumed = resumed
        progress = ChunkProgress(size: size, chunkSize: Self.chunkSize, workers: readers.count)
        progress.preload(resumed)
        let count = readers.count
        for (i, reader) in readers.enumerated() {
            let t = Thread { [self] in run(reader, index: i, of: count) }
            t.stackSize = 1 << 20
            t.start()
        }
    }

    private func run(_ reader: Reader, index: Int, of count: Int) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.readLength, alignment: 4096)
        defer { buffer.deallocate() }
        let size = progress.size
        var error: SSHError?
        var writeError: String?
        var changed: String?
        chunkLoop: for chunk in stride(from: index, to: progress.chunks, by: count) where !resumed.contains(chunk) {
            let start = Int64(chunk) * Self.chunkSize
            let end = Swift.min(size, start + Self.chunkSize)
            var offset = start
            reader.file.seek(to: start)
            while offset < end {
                if progress.shouldStop() { break chunkLoop }
                let left = end - offset
                let ask = left < 4 ? Int(left) : Int(Swift.min(Int64(Self.readLength), left / 4))
                let n: Int
                do {
                    n = try reader.file.read(into: buffer.baseAddress!, count: ask)
                } catch let e {
                    error = e
                    break chunkLoop
                }
                if n == 0 {
                    changed = "the file ended at \(offset) of \(size) bytes while copying; retried on the next pass"
                    break chunkLoop
                }
                if let why = ChunkProgress.write(fd: fd, UnsafeRawBufferPointer(rebasing: buffer[0..<n]), at: offset, stagingPath: stagingPath) {
                    writeError = why
                    break chunkLoop
                }
                offset += Int64(n)
                fetched.add(Int64(n), ordering: .relaxed)
                progress.landed(chunk: chunk, bytes: Int64(n))
            }
        }
        if error == nil && writeError == nil && changed == nil && !reader.primary {
            // The primary handle is checked by the stream; each extra handle here.
            do throws(SSHError) {
                if !SFTPStream.matches(try reader.file.attributes(), stream.candidate) {
                    changed = "file was modified while copying; retried on the next pass"
                }
            } catch let e {
                error = e
            }
        }
        // Hand the session back (the primary one stays with the stream until it is closed).
        if let error, error.isConnectionLoss {
            connectionLost.store(true, ordering: .relaxed)
            if reader.primary { reader.file.forget(); stream.primaryBroke() } else { reader.file.forget(); stream.pass.pool.discard(reader.session) }
        } else if !reader.primary {
            reader.file.close()
            stream.pass.pool.release(reader.session)
        }
        if let changed {
            // Not a failure: the consumer finishes, and the stream reports the file as changed.
            stream.changeNote = stream.changeNote ?? changed
        }
        progress.workerEnded(failure: error.map { stream.pass.fail($0) } ?? writeError.map { SourceError($0) }, changed: changed != nil)
    }

    package func waitForPrefix(beyond known: Int64) throws(SourceError) -> (prefix: Int64, done: Bool) {
        let candidate = stream.candidate
        let source = stream.pass.source
        let step: (prefix: Int64, done: Bool)
        do {
            step = try progress.waitForPrefix(beyond: known)
        } catch {
            // Every worker has stopped. A lost connection keeps the whole chunks received for
            // the next pass (a full disk or a changed file does not).
            guard connectionLost.load(ordering: .relaxed), let partials = stream.pass.partials else { throw error }
            let chunks = progress.completeChunks
            guard !chunks.isEmpty, partials.save(candidate, chunkSize: Self.chunkSize, chunks: chunks, fd: fd, stagingPath: stagingPath) else { throw error }
            let kept = chunks.reduce(Int64(0)) { $0 + progress.length(of: $1) }
            source.logger.notice("Transfer cut off; the chunks received are kept for the next pass", metadata: [
                "path": "\(candidate.path.display)",
                "kept.bytes": "\(kept)", "fetched.bytes": "\(fetched.load(ordering: .relaxed))",
            ])
            throw SourceError("\(error.message); \(kept >> 20) MiB of \(candidate.size >> 20) MiB are kept, and the next pass continues from there")
        }
        if step.done {
            stream.pass.partials?.remove(candidate.path)
            if !resumed.isEmpty {
                source.logger.notice("Resumed transfer complete", metadata: [
                    "path": "\(candidate.path.display)",
                    "fetched.bytes": "\(fetched.load(ordering: .relaxed))",
                ])
            }
        }
        return step
    }

    package func cancel() { progress.cancel() }
}
