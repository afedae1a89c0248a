import Foundation
import SluiceFormats

// The unpacking layer: compressed files, archives and OpenPGP messages.

extension FuzzHarnesses {
    static let unpackHarnesses: [FuzzHarness] = [
        FuzzHarness(name: "archive", about: "zip, tar and 7z archives and gzip, bzip2, xz and zstd streams through libarchive, with the unpack limits") { fuzzArchive($0) },
        FuzzHarness(name: "openpgp", about: "OpenPGP messages: the packet sniffing, then decryption and signature checks through gpgme with a test key",
                    prepare: { _ = keyring }) { fuzzOpenPGP($0) },
    ]

    /// Small limits, so that a bomb is stopped soon.
    static let limits = UnpackLimits(maxBytes: 8 << 20, maxRatio: 1000, maxMembers: 64, maxDepth: 1)

    static func fuzzArchive(_ data: UnsafeRawBufferPointer) {
        var input = FuzzInput(data)
        let mode = Int(input.byte()) % (ArchiveKind.allCases.count + Compression.allCases.count)
        let source = ChunkedSource(input.bytes, chunk: input.pick([1, 4096, 1 << 16]))
        if mode < ArchiveKind.allCases.count {
            let kind = ArchiveKind.allCases[mode]
            let seek: ((Int64, Int32) -> Int64)? = kind.needsSeeking ? { source.seek($0, $1) } : nil
            guard let reader = try? ArchiveReader(kind: kind, limits: limits, read: { source.read($0) }, seek: seek) else { return }
            while let member = try? reader.next() {
                _ = member.display
                drain(reader.memberSource)
            }
        } else {
            let compression = Compression.allCases[mode - ArchiveKind.allCases.count]
            guard let reader = try? DecompressingReader(compression: compression, limits: limits, source: source.read) else { return }
            drain { try reader.read($0) }
        }
    }

    /// The committed test key (Fuzz/keys/, no passphrase): imported once into a keyring in a
    /// temp folder that the process removes when it exits.
    static let keyring: OpenPGPKeyring? = {
        let keys = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("keys")
        guard let secret = FileManager.default.contents(atPath: keys.appendingPathComponent("fuzz-secret.asc").path) else { return nil }
        let home = NSTemporaryDirectory() + "/sluice-fuzz-gpg-\(getpid())"
        // The key signs the seeds too: it is also the one signatures are checked against.
        let file = OpenPGPKeyFile(path: "fuzz-secret.asc", bytes: Array(secret))
        let keyring = try? OpenPGPKeyring.build(home: home, secretKey: file, passphrase: nil, verifyKeys: [file], requireSignature: false)
        keyringHome = home
        atexit {
            guard let home = FuzzHarnesses.keyringHome else { return }
            OpenPGPKeyring.stopAgent(home: home)
            try? FileManager.default.removeItem(atPath: home)
        }
        return keyring
    }()
    nonisolated(unsafe) static var keyringHome: String?

    static func fuzzOpenPGP(_ data: UnsafeRawBufferPointer) {
        let bytes = Array(data)
        let head = Array(bytes.prefix(OpenPGP.magicLength))
        guard OpenPGP.sniff(head) else { return }
        let encrypted = OpenPGP.isEncrypted(head)
        guard let keyring else { fatalError("the fuzz test key (Fuzz/keys/) cannot be imported: is gnupg installed?") }
        let source = ChunkedSource(bytes, chunk: 4096)
        guard let reader = try? DecryptingReader(keyring: keyring, name: "fuzz.pgp", encrypted: encrypted, source: source.read) else { return }
        // The plaintext of a 64 KiB message can be large (compressed packets): read a bounded
        // amount, then close the reader as the transform does after a failure.
        var total = 0
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 16)
        defer { buffer.deallocate() }
        while total < 64 << 20, let n = try? reader.read(buffer), n > 0 { total += n }
    }
}
