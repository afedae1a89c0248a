import Foundation
import SluiceManifest

extension TableReader {
    /// `[manifest]`: the PostgreSQL database the manifest is in, shared by every agent that
    /// names it. Without the table, the manifest is the SQLite file in `state_dir`.
    package func manifestLocation(_ root: TOMLTable, stateDir: String) throws(ConfigError) -> ManifestLocation {
        guard let t = try table(root, "manifest", "") else { return .sqlite(path: "\(stateDir)/manifest.sqlite") }
        try checkKeys(t, path: "manifest", allowed: ["url", "password_file", "tls", "ca_file"])
        let url = try string(t, "url", "manifest", required: true)!
        let parts: (host: String, port: Int, user: String, database: String)
        switch PostgresLocation.parse(url: url) {
        case .success(let p): parts = p
        case .failure(let e): throw fail("manifest.url", e.message)
        }
        let tlsRaw = try string(t, "tls", "manifest", required: false) ?? PostgresTLS.prefer.rawValue
        guard let tls = PostgresTLS(rawValue: tlsRaw) else {
            throw fail("manifest.tls", "expected one of \(PostgresTLS.allCases.map(\.rawValue).joined(separator: ", ")), found \"\(tlsRaw)\"")
        }
        let caFile = try string(t, "ca_file", "manifest", required: false).map(resolve)
        if caFile != nil, tls != .verifyFull {
            throw fail("manifest.ca_file", "is only read with tls = \"verify-full\" (the CAs the server's certificate is checked against)")
        }
        return .postgres(PostgresLocation(host: parts.host, port: parts.port, user: parts.user, database: parts.database,
                                          passwordFile: try string(t, "password_file", "manifest", required: false).map(resolve), tls: tls, caFile: caFile))
    }
}
