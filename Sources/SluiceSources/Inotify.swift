import Foundation
import SluiceLake
import SluiceSupport
import SluiceManifest
import SluiceIngest
import SluiceConfig
#if canImport(Glibc)
import Glibc
#endif

/// The inotify events the daemon asks for, as an option set (Glibc imports the flags with
/// different integer types).
package struct InotifyMask: OptionSet, Sendable {
    package let rawValue: UInt32
    package static let closeWrite = InotifyMask(rawValue: UInt32(IN_CLOSE_WRITE))
    package static let movedTo = InotifyMask(rawValue: UInt32(IN_MOVED_TO))
    package static let movedFrom = InotifyMask(rawValue: UInt32(IN_MOVED_FROM))
    package static let create = InotifyMask(rawValue: UInt32(IN_CREATE))
    package static let deleteSelf = InotifyMask(rawValue: UInt32(IN_DELETE_SELF))
    package static let moveSelf = InotifyMask(rawValue: UInt32(IN_MOVE_SELF))
    package static let ignored = InotifyMask(rawValue: UInt32(IN_IGNORED))
    package static let overflow = InotifyMask(rawValue: UInt32(IN_Q_OVERFLOW))
    package static let isDirectory = InotifyMask(rawValue: UInt32(IN_ISDIR))
    package static let onlyDirectory = InotifyMask(rawValue: UInt32(IN_ONLYDIR))
    package static let dontFollow = InotifyMask(rawValue: UInt32(IN_DONT_FOLLOW))
    package static let excludeUnlinked = InotifyMask(rawValue: UInt32(IN_EXCL_UNLINK))

    package init(rawValue: UInt32) {
        self.rawValue = rawValue
    }
}

/// One inotify instance watching a folder tree. Recursion is the caller's: it adds a watch
/// for each folder (`watch`), and on a new subfolder adds the watch first and then scans it.
package final class Inotify {
    package struct Event {
        package var watch: Int32
        package var mask: InotifyMask
        /// The entry's name inside the watched folder (empty for events on the folder itself).
        package var name: [UInt8]

        package init(watch: Int32, mask: InotifyMask, name: [UInt8]) {
            self.watch = watch
            self.mask = mask
            self.name = name
        }
    }

    package let fd: Int32
    /// Watch descriptor → the folder's path relative to the root ([] for the root).
    package private(set) var folders: [Int32: [UInt8]] = [:]
    private var buffer = [UInt8](repeating: 0, count: 256 << 10)

    package init() throws(SourceError) {
        fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard fd >= 0 else {
            let err = errno
            throw SourceError("inotify_init1 failed: \(String(cString: strerror(err)))"
                + (err == EMFILE ? " — raise fs.inotify.max_user_instances" : ""))
        }
    }

    deinit { close(fd) }

    package static let folderEvents: InotifyMask = [.closeWrite, .movedTo, .create, .deleteSelf, .moveSelf, .onlyDirectory, .dontFollow, .excludeUnlinked]

    /// Watches `absolute` (raw bytes: a folder name need not be UTF-8), known as `relative`
    /// below the root. Returns an error message.
    package func watch(absolute: [UInt8], relative: [UInt8]) -> String? {
        let wd = withCString(absolute) { inotify_add_watch(fd, $0, Self.folderEvents.rawValue) }
        if wd < 0 {
            let err = errno
            if err == ENOENT || err == ENOTDIR { return nil }  // gone already
            return "cannot watch \(RelativePath(bytes: absolute).display): \(String(cString: strerror(err)))"
                + (err == ENOSPC ? " — raise fs.inotify.max_user_watches" : "")
        }
        folders[wd] = relative
        return nil
    }

    /// Drops every watch (before a full re-watch after an overflow).
    package func unwatchAll() {
        for wd in folders.keys { inotify_rm_watch(fd, wd) }
        folders.removeAll()
    }

    package func forget(_ wd: Int32) { folders[wd] = nil }

    /// Waits up to `timeoutMs` (-1: no limit) for events and reads what is there.
    package func read(timeoutMs: Int32) -> [Event] {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&p, 1, timeoutMs)
        guard ready > 0 else { return [] }
        var events: [Event] = []
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, $0.count) }
            if n <= 0 { break }
            buffer.withUnsafeBytes { raw in
                var offset = 0
                while offset + 16 <= n {
                    let wd = raw.loadUnaligned(fromByteOffset: offset, as: Int32.self)
                    let mask = raw.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)
                    let len = Int(raw.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self))
                    let nameBytes = raw[(offset + 16)..<(offset + 16 + len)]
                    events.append(Event(watch: wd, mask: InotifyMask(rawValue: mask), name: Array(nameBytes.prefix { $0 != 0 })))
                    offset += 16 + len
                }
            }
        }
        return events
    }
}
