import CArchive
import SluiceSupport
import Foundation

/// An archive a delivered file may be: every regular member is a unit of its own.
public enum ArchiveKind: String, Sendable, CaseIterable {
    case zip, tar
    case sevenZip = "7z"

    /// The archive a file name names, by its suffix (any case): `.zip`, `.7z`, `.tar`, `.tgz`,
    /// `.tbz2`, `.txz`. A compression suffix is taken off first by the caller, so that
    /// `.tar.gz` is a tar.
    public static func named(by name: some Collection<UInt8>) -> ArchiveKind? {
        let lower = name.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }
        func ends(_ suffix: String) -> Bool { lower.count > suffix.utf8.count && lower.suffix(suffix.utf8.count).elementsEqual(suffix.utf8) }
        if ends(".zip") { return .zip }
        if ends(".7z") { return .sevenZip }
        if ends(".tar") || ends(".tgz") || ends(".tbz2") || ends(".tbz") || ends(".txz") { return .tar }
        return nil
    }

    /// Whether libarchive needs to seek in it (a zip's central directory, a 7z's header at
    /// the end): such an archive arriving as a stream (decrypted, or inside another archive)
    /// is first spooled to an unnamed file.
    public var needsSeeking: Bool { self != .tar }

    /// libarchive's format family for this kind (`archive_format() & ARCHIVE_FORMAT_BASE_MASK`).
    var formatFamily: Int32 {
        switch self {
        case .zip: ARCHIVE_FORMAT_ZIP
        case .tar: ARCHIVE_FORMAT_TAR
        case .sevenZip: ARCHIVE_FORMAT_7ZIP
        }
    }
}

/// One entry of an archive as `ArchiveReader.next()` gives it: a regular file.
public struct ArchiveMember: Sendable {
    /// The name as the archive holds it (never used to write anything).
    public var path: [UInt8]
    /// The size the archive declares, when it declares one.
    public var size: Int64?
    /// Encrypted with a zip password: its data cannot be read.
    public var encrypted: Bool

    /// The name made safe to show: `%` and bytes that are not printable UTF-8 as `%HH`, a
    /// leading `/` as `%2F` and every `..` part as `%2E%2E`, so that a report never shows a
    /// name that looks like it points outside the archive.
    public var display: String { Self.display(path) }

    public static func display(_ path: [UInt8]) -> String {
        var rest = path[...]
        var out = ""
        while rest.first == UInt8(ascii: "/") {
            out += "%2F"
            rest = rest.dropFirst()
        }
        for (i, part) in rest.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).enumerated() {
            if i > 0 { out += "/" }
            out += part.elementsEqual("..".utf8) ? "%2E%2E" : InvalidUTF8.escape(ArraySlice(part), escapePercentAndControls: true, hexPrefix: "%")
        }
        return out
    }
}

/// Reads an archive's members one after another through libarchive, in bounded memory. The
/// archive may be compressed as a whole (`.tar.gz`, `.tgz`, `.tar.zst`): libarchive's filters
/// take that off. Directories, links and other non-regular entries are skipped and counted.
/// Nothing is ever written by a member's name.
public final class ArchiveReader {
    private let archive: OpaquePointer
    private let input: LibarchiveInput
    private let kind: ArchiveKind
    private let limits: UnpackLimits
    private var produced: Int64 = 0
    /// Entries seen so far, regular or not.
    public private(set) var entries = 0
    /// Directories, links and other non-regular entries passed over.
    public private(set) var skipped = 0
    private var current: ArchiveMember?
    private var memberDone = true

    /// `read` gives the archive's bytes; `seek` (with `SEEK_SET`, `SEEK_CUR`, `SEEK_END`, giving
    /// the new offset or -1) when they can be sought in, which a zip or 7z needs.
    public init(kind: ArchiveKind, limits: UnpackLimits, read: @escaping ByteSource, seek: ((Int64, Int32) -> Int64)?,
                blockSize: Int = 1 << 20) throws(UnpackError) {
        guard let a = archive_read_new() else { throw UnpackError("libarchive could not start a reader") }
        archive = a
        self.kind = kind
        self.limits = limits
        input = LibarchiveInput(source: read, seek: seek, blockSize: blockSize)
        let supported = [
            archive_read_support_filter_gzip(a), archive_read_support_filter_bzip2(a), archive_read_support_filter_xz(a),
            archive_read_support_filter_zstd(a),
            kind == .zip ? archive_read_support_format_zip(a) : kind == .tar ? archive_read_support_format_tar(a) : archive_read_support_format_7zip(a),
        ]
        guard supported.allSatisfy({ $0 == ARCHIVE_OK || $0 == ARCHIVE_WARN }) else {
            throw UnpackError("this build's libarchive cannot read \(kind.rawValue) archives (\(libarchiveMessage(a)))")
        }
        guard input.open(a) == ARCHIVE_OK else { throw failure("it is not a readable \(kind.rawValue) archive, or it is damaged or cut short") }
    }

    deinit { archive_read_free(archive) }

    /// The next regular member, or nil after the last one. Past `max_archive_members`
    /// entries, a damaged or cut-off archive, or an archive of another kind than its name
    /// says, it throws.
    public func next() throws(UnpackError) -> ArchiveMember? {
        while true {
            var entry: OpaquePointer?
            let status = archive_read_next_header(archive, &entry)
            if status == ARCHIVE_EOF {
                current = nil
                return nil
            }
            guard status == ARCHIVE_OK || status == ARCHIVE_WARN, let entry else {
                throw failure(entries == 0 ? "it is not a readable \(kind.rawValue) archive, or it is damaged or cut short"
                    : "it is damaged or cut short after \(entries) member\(entries == 1 ? "" : "s")")
            }
            if entries == 0, archive_format(archive) & ARCHIVE_FORMAT_BASE_MASK != kind.formatFamily {
                throw UnpackError("it is not a \(kind.rawValue) archive (libarchive reads it as \(archive_format_name(archive).map { String(cString: $0) } ?? "another format"))")
            }
            entries += 1
            if entries > limits.maxMembers {
                throw UnpackError("it has more than max_archive_members (\(limits.maxMembers)) members; stopped there")
            }
            // Regular files only (AE_IFREG); a hard link's data is its target's.
            guard archive_entry_filetype(entry) == 0o100000, archive_entry_hardlink(entry) == nil else {
                skipped += 1
                continue
            }
            var name = archive_entry_pathname(entry).map { p in Array(UnsafeBufferPointer(start: UnsafeRawPointer(p).assumingMemoryBound(to: UInt8.self), count: strlen(p))) } ?? []
            // `tar -C dir .` names every member ./…: the same member as without it.
            while name.count > 2, name[0] == UInt8(ascii: "."), name[1] == UInt8(ascii: "/") { name.removeFirst(2) }
            let member = ArchiveMember(path: name, size: archive_entry_size_is_set(entry) != 0 ? archive_entry_size(entry) : nil,
                                       encrypted: archive_entry_is_data_encrypted(entry) != 0)
            current = member
            memberDone = false
            return member
        }
    }

    /// Fills `buffer` with the current member's bytes; 0 at its end.
    public func read(_ buffer: UnsafeMutableRawBufferPointer) throws(UnpackError) -> Int {
        guard let current, !memberDone, buffer.count > 0 else { return 0 }
        if current.encrypted {
            throw UnpackError("member \(current.display) is encrypted with a zip password, which Sluice does not take; "
                + "ask the client to send it without a password (OpenPGP encryption of the whole file is supported)")
        }
        let n = archive_read_data(archive, buffer.baseAddress, buffer.count)
        if n < 0 {
            throw failure("it is damaged or cut short")
        }
        if n == 0 {
            memberDone = true
            return 0
        }
        produced += Int64(n)
        try limits.check(produced: produced, consumed: input.consumed)
        return n
    }

    /// A source of the current member's bytes.
    public var memberSource: ByteSource {
        { [self] (buffer: UnsafeMutableRawBufferPointer) throws -> Int in try read(buffer) }
    }

    private func failure(_ what: String) -> UnpackError {
        if let f = input.failure { return UnpackError("reading the archive failed: \(f)") }
        guard let message = archive_error_string(archive) else { return UnpackError(what) }
        return UnpackError("\(what) (\(String(cString: message)))")
    }
}
