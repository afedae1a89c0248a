import Crypto
import Foundation
import SluiceSupport

/// An upload API token as the manifest keeps it: never the token itself, only its SHA-256.
public struct TokenRecord: Codable, Sendable, Equatable {
    public var id: Int64
    public var client: String
    /// nil: any source of the client.
    public var source: String?
    public var created_at: String
    public var expires_at: String?
    public var revoked_at: String?
    public var last_used_at: String?
    public var note: String?

    init(row r: SQLRow) {
        id = r["id"]
        client = r["client"]
        source = r["source"]
        created_at = r["created_at"]
        expires_at = r["expires_at"]
        revoked_at = r["revoked_at"]
        last_used_at = r["last_used_at"]
        note = r["note"]
    }

    public func encode(to encoder: any Encoder) throws {
        enum K: String, CodingKey { case id, client, source, created_at, expires_at, revoked_at, last_used_at, note }
        var c = encoder.container(keyedBy: K.self)
        try c.encode(id, forKey: .id)
        try c.encode(client, forKey: .client)
        try c.encode(source, forKey: .source)
        try c.encode(created_at, forKey: .created_at)
        try c.encode(expires_at, forKey: .expires_at)
        try c.encode(revoked_at, forKey: .revoked_at)
        try c.encode(last_used_at, forKey: .last_used_at)
        try c.encode(note, forKey: .note)
    }
}

/// Making and checking upload tokens: `slc_` and 43 characters of base64url, 256 random bits.
public enum UploadToken {
    public static let prefix = "slc_"

    /// A new random token (from the system's CSPRNG).
    public static func generate() -> String {
        var rng = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let b64 = Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        return prefix + b64
    }

    public static func sha256(_ token: String) -> String {
        hexString(SHA256.hash(data: Data(token.utf8)))
    }

    /// Equal strings, in time that depends only on their lengths.
    public static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var diff: UInt8 = 0
        for i in 0..<x.count { diff |= x[i] ^ y[i] }
        return diff == 0
    }
}

extension Manifest {
    /// Records a new token by its SHA-256; returns its id.
    public func createToken(client: String, source: String?, sha256: String, expiresAt: String?, note: String?) throws(ManifestError) -> Int64 {
        try write("creating a token") { db in
            try db.insert("INSERT INTO token (client, source, sha256, created_at, expires_at, note) VALUES (?, ?, ?, ?, ?, ?)",
                          [client, source, sha256, Timestamp.now(), expiresAt, note])
        }
    }

    public func tokens(client: String?) throws(ManifestError) -> [TokenRecord] {
        try read("listing tokens") { db in
            let columns = "id, client, source, created_at, expires_at, revoked_at, last_used_at, note"
            if let client {
                return try db.rows("SELECT \(columns) FROM token WHERE client = ? ORDER BY id", [client]).map(TokenRecord.init(row:))
            }
            return try db.rows("SELECT \(columns) FROM token ORDER BY id").map(TokenRecord.init(row:))
        }
    }

    /// Revokes token `id` (at once: every check reads the manifest). Returns the token, or
    /// nil when there is no such token; revoking twice keeps the first time.
    public func revokeToken(id: Int64) throws(ManifestError) -> TokenRecord? {
        try write("revoking token \(id)") { db in
            try db.execute("UPDATE token SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?", [Timestamp.now(), id])
            return try db.row("SELECT id, client, source, created_at, expires_at, revoked_at, last_used_at, note FROM token WHERE id = ?", [id])
                .map(TokenRecord.init(row:))
        }
    }

    /// The live token that `presented` is (not revoked, not expired); nil otherwise. Looked up
    /// by SHA-256, then compared in constant time. Its use is recorded separately, once the
    /// request it came with has been served (`recordUse`): a refused request is no use.
    public func authenticate(token presented: String, now: String = Timestamp.now()) throws(ManifestError) -> TokenRecord? {
        let digest = UploadToken.sha256(presented)
        let found = try read("checking a token") { db -> TokenRecord? in
            guard let row = try db.row("""
                SELECT id, client, source, created_at, expires_at, revoked_at, last_used_at, note, sha256 FROM token WHERE sha256 = ?
                """, [digest]) else { return nil }
            let stored: String = row["sha256"]
            guard UploadToken.constantTimeEqual(stored, digest) else { return nil }
            return TokenRecord(row: row)
        }
        guard let token = found, token.revoked_at == nil else { return nil }
        if let expires = token.expires_at, expires <= now { return nil }
        return token
    }

    /// Whether a served request with `token` should be written as its last use: at most once
    /// a minute per token, so that a burst of uploads does not queue a write per request behind
    /// the manifest's one writer.
    public static func useIsDue(_ token: TokenRecord, now: String = Timestamp.now()) -> Bool {
        guard let last = token.last_used_at,
              let staleBefore = Timestamp.nanoseconds(now).map({ Timestamp.iso8601(nanoseconds: $0 - 60_000_000_000) }) else { return true }
        return last < staleBefore
    }

    /// Records that `token` was used for a request that was served, when `useIsDue`.
    public func recordUse(of token: TokenRecord, now: String = Timestamp.now()) throws(ManifestError) {
        guard Self.useIsDue(token, now: now) else { return }
        try write("recording a token's use") { db in
            try db.execute("UPDATE token SET last_used_at = ? WHERE id = ?", [now, token.id])
        }
    }
}
