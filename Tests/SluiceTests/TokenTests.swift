import Foundation
import SluiceAgent
import SluiceManifest
import SluiceTestSupport
import Testing
import SluiceSupport
import SluiceIngest
import SluiceConfig
import SluiceSources
import SluiceTransform
import SluiceFormats

/// `sluice token create | list | revoke`, and checking a token against the manifest.
@Suite struct TokenTests {
    @Test func tokensAreShownOnceStoredAsHashesListedAndRevoked() throws {
        let dir = TempDir("tokens")
        dir.config(extra: "\n[clients.acme.sources.portal]\ntype = \"http\"\n")
        let conf = dir.sub("agent.conf")
        let created = try SluiceBinary.run(["token", "create", "acme", "--source", "portal", "--expires", "90d", "--note", "ops laptop"], config: conf)
        #expect(created.status == 0, "\(created.stderr)")
        let token = created.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(token.hasPrefix("slc_") && token.count == 4 + 43, "256 bits in base64url: \(token)")
        #expect(token.dropFirst(4).allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" })
        #expect(created.stderr.contains("not shown again"))
        let other = try SluiceBinary.run(["token", "create", "acme"], config: conf).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(other != token)

        // Only the SHA-256 is kept: the token appears nowhere in the manifest.
        let dump = try TestManifest.query(dir, "SELECT * FROM token")
        #expect(!dump.stdout.contains(token) && dump.stdout.contains(UploadToken.sha256(token)))

        let (listed, obj) = try SluiceBinary.json(["token", "list", "acme"], config: conf)
        #expect(listed.status == 0 && !listed.stdout.contains(token))
        let rows = try #require(obj as? [[String: Any]])
        #expect(rows.count == 2)
        #expect(Set(rows[0].keys) == ["id", "client", "source", "created_at", "expires_at", "revoked_at", "last_used_at", "note"], "\(rows[0])")
        #expect(rows[0]["source"] as? String == "portal" && rows[0]["note"] as? String == "ops laptop" && rows[0]["expires_at"] is String)
        #expect(rows[1]["source"] is NSNull && rows[1]["expires_at"] is NSNull)

        let manifest = try loadAgent(dir).openManifest()
        let live = try #require(try manifest.authenticate(token: token))
        #expect(live.client == "acme" && live.source == "portal")
        #expect(try manifest.authenticate(token: token + "x") == nil)
        #expect(try manifest.authenticate(token: "slc_" + String(repeating: "A", count: 43)) == nil)
        #expect(try manifest.authenticate(token: other, now: "2999-01-01T00:00:00.000000Z") != nil, "no expiry")
        #expect(try manifest.authenticate(token: token, now: "2999-01-01T00:00:00.000000Z") == nil, "expired")
        #expect(try manifest.tokens(client: "acme").first?.last_used_at == nil, "checking a token is not using it")
        try manifest.recordUse(of: live)
        #expect(try manifest.tokens(client: "acme").first?.last_used_at != nil, "the last use is recorded")

        let id = try #require(rows[0]["id"] as? Int)
        let revoked = try SluiceBinary.run(["token", "revoke", "\(id)"], config: conf)
        #expect(revoked.status == 0 && revoked.stdout.contains("revoked"), "\(revoked.stderr)")
        #expect(try manifest.authenticate(token: token) == nil, "a revoked token is refused at once")
        #expect(try manifest.authenticate(token: other) != nil)
        #expect(try SluiceBinary.run(["token", "revoke", "999"], config: conf).status == 2)
    }

    @Test func unknownClientSourceOrDurationIsAUsageError() throws {
        let dir = TempDir("tokens-bad")
        dir.config()
        let conf = dir.sub("agent.conf")
        for args in [["token", "create", "nobody"], ["token", "create", "acme", "--source", "nope"], ["token", "create", "acme", "--expires", "soon"]] {
            let r = try SluiceBinary.run(args, config: conf)
            #expect(r.status == 2 && r.stdout.isEmpty, "\(args): \(r.stderr)")
        }
    }

    @Test func constantTimeComparison() {
        #expect(UploadToken.constantTimeEqual("abc", "abc"))
        #expect(!UploadToken.constantTimeEqual("abc", "abd"))
        #expect(!UploadToken.constantTimeEqual("abc", "abcd"))
    }
}
