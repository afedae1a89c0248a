import Foundation
import SluiceFormats
import Synchronization

/// The layers a delivered file may wrap its data in, outermost first: OpenPGP encryption
/// (`.pgp`, `.gpg`, `.asc`), then a compression (`.gz`, `.bz2`, `.xz`, `.zst`), then an
/// archive or the data itself. Each is recognised by its content; a suffix that promises a
/// layer the content does not have is an error.
package enum StoredBytes {
    /// The name with its OpenPGP and compression suffixes taken off (`orders.csv.gz.pgp` →
    /// `orders.csv`); nil when it has neither.
    package static func bareName(_ name: [UInt8]) -> [UInt8]? {
        let plain = OpenPGP.strippingSuffix(name)
        let bare = Compression.strippingSuffix(plain ?? name)
        return bare ?? plain
    }

    /// A keyring for a client's OpenPGP deliveries, or why there is none.
    package enum Keys: Sendable {
        case none
        case ready(OpenPGPKeyring)
        case broken(String)
    }

    /// A client's keyring, built on first use: most transforms never meet an OpenPGP file, and
    /// building one starts gpg.
    package final class KeySource: Sendable {
        private let make: @Sendable () -> Keys
        private let made = Mutex<Keys?>(nil)

        package init(_ make: @escaping @Sendable () -> Keys) { self.make = make }

        package static let none = KeySource { .none }

        package var keys: Keys {
            made.withLock { made in
                if let k = made { return k }
                let k = make()
                made = k
                return k
            }
        }
    }

    /// `read` decrypted when the content is an OpenPGP message (and `decrypt` is true), else
    /// `read` itself; whether it was decrypted. `head` is the stored file's first
    /// `OpenPGP.magicLength` bytes; `name` its name, `shown` what messages call it.
    package static func decrypted(name: [UInt8], shown: String, head: [UInt8], read: @escaping ByteSource, keys: KeySource, client: String,
                                  decrypt: Bool = true) throws -> (read: ByteSource, decrypted: Bool) {
        let isMessage = OpenPGP.sniff(head)
        if OpenPGP.named(by: name) && !isMessage {
            let hex = head.prefix(4).map { String(format: "%02x", $0) }.joined(separator: " ")
            throw OpenPGPError("\(shown) ends in an OpenPGP suffix but is not an OpenPGP message (it starts with \(hex)); the raw version is kept — "
                + "ask the client to resend it, or rename it in a new delivery")
        }
        guard isMessage, decrypt else { return (read, false) }
        switch keys.keys {
        case .none where !OpenPGP.isEncrypted(head):
            throw OpenPGPError("\(shown) is an OpenPGP-signed message, but client '\(client)' has no [clients.\(client).pgp] table in agent.conf to check it: "
                + "add verify_keys; the raw version is kept — then run `sluice transform \(client) --failed`")
        case .none:
            throw OpenPGPError("\(shown) is OpenPGP-encrypted, but client '\(client)' has no [clients.\(client).pgp] table in agent.conf: "
                + "add secret_key (and passphrase_file); the raw version is kept — then run `sluice transform \(client) --failed`")
        case .broken(let why):
            throw OpenPGPError("\(shown): the keyring cannot be used: \(why)")
        case .ready(let keyring):
            let reader = try DecryptingReader(keyring: keyring, name: shown, encrypted: OpenPGP.isEncrypted(head), source: read)
            return ({ (buffer: UnsafeMutableRawBufferPointer) throws -> Int in try reader.read(buffer) }, true)
        }
    }

    /// Whether a `.asc` file is a detached signature or a key block rather than a message:
    /// such a file carries no data to transform.
    package static func isArmouredNonMessage(_ head: [UInt8]) -> Bool {
        head.starts(with: Array("-----BEGIN PGP ".utf8)) && !head.starts(with: Array("-----BEGIN PGP MESSAGE".utf8))
    }
}
