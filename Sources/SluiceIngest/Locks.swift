import SluiceLake
import SluiceSupport
import SluiceManifest
#if canImport(Glibc)
import Glibc
#endif

/// An exclusive `flock` on a file in the state folder, held until `release()`.
/// Used so that two pulls (or a pull and the daemon) never work on the same source at once.
package final class SourceLock {
    private let fd: Int32

    /// Blocks until the lock for `client`/`source` is ours.
    package init(stateDir: String, client: String, source: String) throws(SystemCallError) {
        let dir = "\(stateDir)/locks/\(client)"
        try makeDirectories(dir)
        let path = "\(dir)/\(source).lock"
        let fd = try systemCall("open", path) { open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o640) }
        do {
            try systemCall("flock", path) { flock(fd, LOCK_EX) }
        } catch {
            closeQuietly(fd)
            throw error
        }
        self.fd = fd
    }

    deinit { closeQuietly(fd) }
}
