import Foundation
import SluiceTestSupport
import Testing

/// A client's keys and ours, made by the real gpg in a throwaway GNUPGHOME, and the files a
/// client would send: encrypted to our key, signed with theirs, armoured or binary.
struct PGPKeys {
    let dir: TempDir
    let home: String

    /// Our key (with a passphrase), the client's signing key, a stranger's key, an expired
    /// key and a revoked one; their exports under `keys/`.
    init(_ dir: TempDir) throws {
        self.dir = dir
        home = dir.sub("gnupg-client")
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try gpg(["--passphrase", "correct horse", "--quick-gen-key", "Sluice <sluice@example.com>", "future-default", "default", "never"])
        for uid in ["sign@acme.example", "stranger@evil.example", "revoked@acme.example"] {
            try gpg(["--passphrase", "", "--quick-gen-key", "Key <\(uid)>", "future-default", "default", "never"])
        }
        try gpg(["--faked-system-time", "20200101T000000", "--passphrase", "", "--quick-gen-key", "Old <old@acme.example>", "future-default", "default", "1d"])
        try FileManager.default.createDirectory(atPath: dir.sub("keys"), withIntermediateDirectories: true)
        try gpg(["--pinentry-mode", "loopback", "--passphrase", "correct horse", "--armor", "-o", dir.sub("keys/sluice-secret.asc"), "--export-secret-keys", "sluice@example.com"])
        try gpg(["-o", dir.sub("keys/sluice-public.gpg"), "--export", "sluice@example.com"])
        try gpg(["-o", dir.sub("keys/acme-signing.gpg"), "--export", "sign@acme.example"])
        try gpg(["--armor", "-o", dir.sub("keys/old.asc"), "--export", "old@acme.example"])
        // Revoke with the certificate gpg made at key generation, then export the revoked key.
        let fpr = try fingerprint("revoked@acme.example")
        try Shell.check("/bin/sh", ["-c", "sed 's/^:-----/-----/' '\(home)/openpgp-revocs.d/\(fpr).rev' > '\(home)/rev.asc'"])
        try gpg(["--import", "\(home)/rev.asc"])
        try gpg(["--armor", "-o", dir.sub("keys/revoked.asc"), "--export", "revoked@acme.example"])
        dir.write("keys/passphrase", "correct horse\n")
        dir.write("keys/wrong-passphrase", "battery staple\n")
    }

    func gpg(_ args: [String]) throws {
        try Shell.check("/usr/bin/env", ["gpg", "--homedir", home, "--batch", "--yes", "--no-tty", "--trust-model", "always"] + args)
    }

    func fingerprint(_ uid: String) throws -> String {
        let r = try Shell.run("/usr/bin/env", ["gpg", "--homedir", home, "--batch", "--with-colons", "--fingerprint", uid])
        return r.stdout.split(separator: "\n").first { $0.hasPrefix("fpr:") }.map { String($0.split(separator: ":", omittingEmptySubsequences: false)[9]) } ?? ""
    }

    /// `input` encrypted to our key (unless `to` names another), signed by `signer` when given.
    func encrypt(_ input: String, to output: String, signer: String? = "sign@acme.example", armor: Bool = false, recipient: String = "sluice@example.com") throws {
        var args = ["-r", recipient, "--encrypt"]
        if let signer { args += ["-u", signer, "--sign"] }
        if armor { args.append("--armor") }
        try gpg(args + ["-o", output, input])
    }

    /// Stops the gpg-agents of the client's home and of every keyring Sluice made under `state`.
    func stopAgents() {
        _ = try? Shell.run("/usr/bin/env", ["gpgconf", "--homedir", home, "--kill", "gpg-agent"])
        Self.stopAgents(in: dir)
    }

    /// Stops the gpg-agents of the keyrings Sluice made under `dir`'s `state`.
    static func stopAgents(in dir: TempDir) {
        for ring in (try? FileManager.default.contentsOfDirectory(atPath: dir.sub("state/gnupg"))) ?? [] {
            _ = try? Shell.run("/usr/bin/env", ["gpgconf", "--homedir", dir.sub("state/gnupg/\(ring)"), "--kill", "gpg-agent"])
        }
    }
}

/// OpenPGP deliveries: the lake keeps the encrypted file as sent; the transform decrypts it
/// through gpgme with a keyring Sluice owns, checks the signature, and fails with a message
/// that says what is wrong.
@Suite(.enabled(if: ParquetTests.readersAvailable, "needs pyarrow and duckdb (python3 -m pip install pyarrow duckdb)"))
struct OpenPGPTests {
    static func pgpTable(secret: String = "keys/sluice-secret.asc", passphrase: String? = "keys/passphrase", verify: [String] = ["keys/acme-signing.gpg"],
                         require: Bool = true) -> String {
        var t = "[clients.acme.pgp]\nsecret_key = \"\(secret)\"\n"
        if let passphrase { t += "passphrase_file = \"\(passphrase)\"\n" }
        t += "verify_keys = [\(verify.map { "\"\($0)\"" }.joined(separator: ", "))]\nrequire_signature = \(require)\n"
        return t
    }

    static func lake(_ pgp: String) -> TempDir {
        let dir = TempDir("pgp")
        dir.config(tables: "[clients.acme.sources.drop]\ntype = \"folder\"\npath = \"drop\"\nmin_age = \"0s\"\n\n" + pgp)
        dir.write("mappings/acme.toml", ArchiveTests.orders)
        try? FileManager.default.createDirectory(atPath: dir.sub("drop"), withIntermediateDirectories: true)
        return dir
    }

    @Test func encryptedSignedFilesAreStoredAsSentAndTransformedDecrypted() throws {
        let dir = Self.lake(Self.pgpTable())
        let keys = try PGPKeys(dir)
        defer { keys.stopAgents() }
        let plain = try FormatTests.fixture("acme/orders_2026-10-01.csv")
        dir.write("src/orders_01.csv", plain)
        dir.write("src/2026-10/orders_02.csv", plain)
        try Shell.check("/bin/sh", ["-c", "cd '\(dir.sub("src"))' && gzip -c orders_01.csv > orders_03.csv.gz && zip -q -r ../batch.zip orders_01.csv 2026-10"])
        try keys.encrypt(dir.sub("src/orders_01.csv"), to: dir.sub("drop/orders_a.csv.pgp"))
        try keys.encrypt(dir.sub("src/orders_03.csv.gz"), to: dir.sub("drop/orders_b.csv.gz.asc"), armor: true)
        try keys.encrypt(dir.sub("batch.zip"), to: dir.sub("drop/batch.zip.gpg"))
        // Signed but not encrypted: verified and unwrapped.
        try keys.gpg(["-u", "sign@acme.example", "--sign", "-o", dir.sub("drop/orders_c.csv.gpg"), dir.sub("src/orders_01.csv")])
        let (status, transforms) = try FormatTests.pull(dir)
        #expect(status == 0, "\(transforms)")
        for name in ["orders_a.csv.pgp", "orders_b.csv.gz.asc", "orders_c.csv.gpg"] {
            let t = try #require(transforms[name], "\(transforms.keys.sorted())")
            #expect(t["status"] as? String == "ok" && t["rows_written"] as? Int == 38 && t["rows_rejected"] as? Int == 2, "\(name): \(t)")
        }
        #expect(transforms["batch.zip.gpg"]?["members"] as? [String: Int] == ["ok": 2, "failed": 0, "unmapped": 0], "\(transforms["batch.zip.gpg"] ?? [:])")
        #expect(transforms["batch.zip.gpg#2026-10/orders_02.csv"]?["rows_written"] as? Int == 38)
        // The lake holds what was sent, byte for byte; the keyring is Sluice's own, mode 700.
        let stored = try FileManager.default.subpathsOfDirectory(atPath: dir.sub("lake/raw/acme/drop")).sorted()
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir.sub("lake/raw/acme/drop/") + stored.first { $0.hasPrefix("orders_a") }!))
            == Data(contentsOf: URL(fileURLWithPath: dir.sub("drop/orders_a.csv.pgp"))))
        let rings = try FileManager.default.contentsOfDirectory(atPath: dir.sub("state/gnupg"))
        #expect(rings.count == 1 && rings[0].hasPrefix("acme-"), "\(rings)")
        let mode = try FileManager.default.attributesOfItem(atPath: dir.sub("state/gnupg/\(rings[0])"))[.posixPermissions] as? Int
        #expect(mode == 0o700)
        // cat decrypts; --raw gives the stored bytes; a member of the encrypted zip comes out too.
        let conf = dir.sub("agent.conf")
        let cat = try SluiceBinary.run(["cat", "acme", "orders_b.csv.gz.asc"], config: conf)
        #expect(cat.status == 0 && Data(cat.stdout.utf8) == plain, "\(cat.stderr)")
        let raw = try SluiceBinary.run(["cat", "acme", "orders_b.csv.gz.asc", "--raw"], config: conf)
        #expect(raw.stdout.hasPrefix("-----BEGIN PGP MESSAGE-----"))
        let member = try SluiceBinary.run(["cat", "acme", "batch.zip.gpg", "--member", "2026-10/orders_02.csv"], config: conf)
        #expect(member.status == 0 && Data(member.stdout.utf8) == plain, "\(member.stderr)")
        let (_, listed) = try SluiceBinary.json(["history", "acme", "batch.zip.gpg", "--members"], config: conf)
        let paths = (((listed as? [[String: Any]])?.first?["members"] as? [[String: Any]]) ?? []).compactMap { $0["path"] as? String }
        #expect(Set(paths) == ["orders_01.csv", "2026-10/orders_02.csv"], "\(paths)")
        // Nothing decrypted was left on disk.
        #expect((try? FileManager.default.contentsOfDirectory(atPath: dir.sub("state/spool"))) ?? [] == [])
        expectDatasetFoldersRead(dir)
    }

    @Test func eachOpenPGPFailureSaysWhatIsWrong() throws {
        let dir = Self.lake(Self.pgpTable())
        let keys = try PGPKeys(dir)
        defer { keys.stopAgents() }
        let plain = try FormatTests.fixture("acme/orders_2026-10-01.csv")
        let src = dir.write("src/orders.csv", plain)
        try keys.encrypt(src, to: dir.sub("drop/orders_unsigned.csv.pgp"), signer: nil)
        try keys.encrypt(src, to: dir.sub("drop/orders_stranger.csv.pgp"), signer: "stranger@evil.example")
        try keys.encrypt(src, to: dir.sub("drop/orders_elsewhere.csv.pgp"), recipient: "stranger@evil.example")
        try keys.gpg(["-u", "sign@acme.example", "--sign", "--compress-algo", "none", "-o", dir.sub("signed.gpg"), src])
        var signed = try Data(contentsOf: URL(fileURLWithPath: dir.sub("signed.gpg")))
        signed[signed.count / 2] ^= 0x01
        dir.write("drop/orders_tampered.csv.gpg", signed)
        dir.write("drop/orders_lies.csv.pgp", plain)
        let (status, transforms) = try FormatTests.pull(dir)
        #expect(status == 1)
        func error(_ name: String) -> String { ArchiveTests.error(transforms[name]) }
        #expect(error("orders_unsigned.csv.pgp").contains("is not signed, and require_signature is true"), "\(error("orders_unsigned.csv.pgp"))")
        #expect(error("orders_stranger.csv.pgp").contains("which is not in verify_keys"), "\(error("orders_stranger.csv.pgp"))")
        let elsewhere = error("orders_elsewhere.csv.pgp")
        #expect(elsewhere.contains("is encrypted to key id") && elsewhere.contains("secret_key holds key ids"), "\(elsewhere)")
        #expect(error("orders_tampered.csv.gpg").contains("bad signature"), "\(error("orders_tampered.csv.gpg"))")
        #expect(error("orders_lies.csv.pgp").contains("is not an OpenPGP message"), "\(error("orders_lies.csv.pgp"))")
        // Nothing of a failed file is published, and every delivery is kept as it came.
        for name in ["orders_unsigned.csv.pgp", "orders_stranger.csv.pgp", "orders_tampered.csv.gpg"] {
            #expect(transforms[name]?["output_path"] is NSNull, "\(name)")
        }
        #expect(try FileManager.default.subpathsOfDirectory(atPath: dir.sub("lake/raw/acme/drop")).count == 5)
        // The fix for the unsigned one: stop requiring signatures, re-run the failed.
        dir.config(tables: "[clients.acme.sources.drop]\ntype = \"folder\"\npath = \"drop\"\nmin_age = \"0s\"\n\n" + Self.pgpTable(require: false))
        let (r, again) = try SluiceBinary.json(["transform", "acme", "--failed"], config: dir.sub("agent.conf"))
        let byPath = Dictionary(((again as? [[String: Any]]) ?? []).map { ($0["path"] as? String ?? "", $0) }, uniquingKeysWith: { a, _ in a })
        #expect(byPath["orders_unsigned.csv.pgp"]?["status"] as? String == "ok", "\(r.stderr)")
        #expect(byPath["orders_stranger.csv.pgp"]?["status"] as? String == "ok", "an unknown signer is accepted when signatures are not required")
        #expect(byPath["orders_tampered.csv.gpg"]?["status"] as? String == "failed", "a bad signature always fails")
    }

    @Test(arguments: [("keys/wrong-passphrase", "the passphrase in passphrase_file is wrong"), (nil, "it has a passphrase; set passphrase_file")])
    func aSecretKeyThatCannotBeUnlockedFailsAndThePassphraseIsNeverLogged(_ passphrase: String?, _ message: String) throws {
        let dir = Self.lake(Self.pgpTable(passphrase: passphrase))
        let keys = try PGPKeys(dir)
        defer { keys.stopAgents() }
        try keys.encrypt(dir.write("src/orders.csv", try FormatTests.fixture("acme/orders_2026-10-01.csv")), to: dir.sub("drop/orders_x.csv.pgp"))
        let r = try SluiceBinary.run(["pull", "acme", "--json"], config: dir.sub("agent.conf"))
        #expect(r.status == 1)
        #expect(r.stdout.contains(message), "\(r.stdout)")
        for secret in ["battery staple", "correct horse"] {
            #expect(!r.stdout.contains(secret) && !r.stderr.contains(secret))
        }
    }

    @Test func checkConfigReadsEveryKeyFile() throws {
        let dir = Self.lake(Self.pgpTable())
        let keys = try PGPKeys(dir)
        defer { keys.stopAgents() }
        let conf = dir.sub("agent.conf")
        let ok = try SluiceBinary.run(["check-config"], config: conf)
        #expect(ok.status == 0 && ok.stdout.contains("client acme pgp: secret key ids"), "\(ok.stdout)\(ok.stderr)")
        dir.write("keys/not-a-key.asc", "hello\n")
        let cases: [(String, String)] = [
            (Self.pgpTable(secret: "keys/missing.asc"), "cannot read"),
            (Self.pgpTable(secret: "keys/not-a-key.asc"), "keys/not-a-key.asc"),
            (Self.pgpTable(secret: "keys/sluice-public.gpg"), "holds no secret key"),
            (Self.pgpTable(verify: ["keys/old.asc"]), "has expired"),
            (Self.pgpTable(verify: ["keys/revoked.asc"]), "is revoked"),
            ("[clients.acme.pgp]\nrequire_signature = true\nsecret_key = \"keys/sluice-secret.asc\"\n", "clients.acme.pgp.verify_keys"),
            ("[clients.acme.pgp]\nrequire_signature = false\n", "set secret_key"),
            ("[clients.acme.pgp]\nverify_keys = [\"keys/acme-signing.gpg\"]\npassphrase_file = \"keys/passphrase\"\n", "clients.acme.pgp.passphrase_file"),
            ("[clients.acme.pgp]\nsecret_key = \"keys/sluice-secret.asc\"\ncolour = 1\n", "clients.acme.pgp.colour"),
        ]
        for (table, message) in cases {
            dir.config(tables: "[clients.acme.sources.drop]\ntype = \"folder\"\npath = \"drop\"\nmin_age = \"0s\"\n\n" + table)
            let r = try SluiceBinary.run(["check-config"], config: conf)
            #expect(r.status == 2 && r.stderr.contains(message), "\(table): \(r.stderr)")
        }
    }

    /// A real `sluice pull` of an encrypted zip is SIGKILLed while a member's output is being
    /// written: no decrypted or unpacked copy is left anywhere, and the next pull gives the same
    /// output as a run that was never killed.
    @Test func aSigkillDuringAnUnpackLeavesNoPlaintextAndARerunGivesTheSameOutput() throws {
        let dir = Self.lake(Self.pgpTable())
        let keys = try PGPKeys(dir)
        defer { keys.stopAgents() }
        let rows = 300_000
        var csv = "Order No;Date;Customer;Total;Status;Note\n"
        csv.reserveCapacity(rows * 50)
        for i in 1...rows { csv += "\(i);01.10.2026 10:00;plaintext-marker customer \(i);\(i % 999),\(i % 90 + 10);A;\n" }
        dir.write("src/orders_big.csv", csv)
        dir.write("src/orders_small.csv", try FormatTests.fixture("acme/orders_2026-10-01.csv"))
        try Shell.check("/bin/sh", ["-c", "cd '\(dir.sub("src"))' && zip -q ../batch.zip orders_small.csv orders_big.csv"])
        try keys.encrypt(dir.sub("batch.zip"), to: dir.sub("drop/batch.zip.gpg"))
        // The reference: the same delivery in a lake whose run is never killed.
        let reference = Self.lake(Self.pgpTable())
        for f in ["keys/sluice-secret.asc", "keys/passphrase", "keys/acme-signing.gpg", "drop/batch.zip.gpg"] {
            reference.write(f, try Data(contentsOf: URL(fileURLWithPath: dir.sub(f))))
        }
        defer { PGPKeys.stopAgents(in: reference) }
        let (refStatus, _) = try FormatTests.pull(reference)
        #expect(refStatus == 0)

        let caught = try CrashTests.pullKilledWhileWriting(dir.sub("agent.conf"), lake: dir.sub("lake"))
        try #require(caught, "the pull ended before a member's output could be caught being written")
        func temps() -> [String] { CrashTests.outputTemps(dir.sub("lake")) }
        // No decrypted or unpacked copy anywhere in the state folder (the spool's files have
        // no name), and the lake holds only the encrypted delivery and output temp files.
        #expect((try? FileManager.default.contentsOfDirectory(atPath: dir.sub("state/spool"))) ?? [] == [])
        let marker = Data("plaintext-marker".utf8)
        for root in ["state", "lake/raw"] {
            for case let f as String in FileManager.default.enumerator(atPath: dir.sub(root)) ?? NSEnumerator() {
                let path = dir.sub("\(root)/\(f)")
                guard let data = FileManager.default.contents(atPath: path) else { continue }
                #expect(data.range(of: marker) == nil, "plaintext left in \(path)")
            }
        }
        let (again, transforms) = try FormatTests.pull(dir)
        #expect(again == 0)
        #expect(temps().isEmpty, "the next start removes the dead run's temp files")
        #expect(transforms["batch.zip.gpg#orders_big.csv"]?["rows_written"] as? Int == rows, "\(transforms)")
        // The same rows as the run that was never killed (all but the ingest time).
        func digest(_ d: TempDir) throws -> String {
            let r = try Shell.run("/usr/bin/env", ["python3", "-c", """
                import duckdb, sys
                print(duckdb.connect().execute("SELECT count(*), sum(hash(t)) FROM (SELECT * EXCLUDE (_ingested_at) FROM read_parquet(?)) t", [sys.argv[1] + '/**/*.parquet']).fetchone())
                """, d.sub("lake/processed/acme/orders")])
            #expect(r.status == 0, "\(r.stderr)")
            return r.stdout
        }
        #expect(try digest(dir) == digest(reference))
    }
}
