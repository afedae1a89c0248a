import Foundation
import SluiceConfig
import SluiceSFTP
import SluiceSources
import SluiceTransform

// The files an operator writes: agent.conf, mapping files, known_hosts.

extension FuzzHarnesses {
    static let configHarnesses: [FuzzHarness] = [
        FuzzHarness(name: "config", about: "agent.conf through check-config's parser: TOML, every section, source type, glob and schedule") { fuzzConfig($0) },
        FuzzHarness(name: "mapping", about: "a client's mapping file: datasets, formats, fields, types, value options") { fuzzMapping($0) },
        FuzzHarness(name: "known_hosts", about: "OpenSSH known_hosts lines: markers, hashed and wildcard host patterns, keys") { fuzzKnownHosts($0) },
    ]

    static func fuzzConfig(_ data: UnsafeRawBufferPointer) {
        guard let text = String(validating: data, as: UTF8.self) else { return }
        do {
            let config = try AgentConfig.parse(text: text, file: "/fuzz/agent.conf", sourceTypes: SourceTypes.all)
            for client in config.clients { _ = client.sources.map(\.settings.summary) }
        } catch {
            _ = error.description
        }
    }

    static func fuzzMapping(_ data: UnsafeRawBufferPointer) {
        guard let text = String(validating: data, as: UTF8.self) else { return }
        do {
            let table = try TOMLText.parse(text, file: "/fuzz/mappings/acme.toml")
            let mapping = try TableReader(file: "/fuzz/mappings/acme.toml", text: text).mapping(table, client: "acme", sha256: String(repeating: "0", count: 64))
            for d in mapping.datasets {
                for (i, f) in d.fields.enumerated() { _ = FieldConverter(field: f, dataset: d, column: i) }
            }
        } catch {
            _ = error.description
        }
    }

    /// An ed25519 key blob, and the host names looked up.
    static let hostKey = HostKey(blob: Array(Data(base64Encoded: "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl")!))
    static let lookupNames = ["example.com", "[10.0.0.7]:2222", "sftp.client-a.example", "192.0.2.1", "[::1]:22"]

    static func fuzzKnownHosts(_ data: UnsafeRawBufferPointer) {
        var input = FuzzInput(data)
        let name = input.pick(lookupNames)
        let lines = KnownHosts.lines(of: Data(input.rest))
        _ = KnownHosts.verdict(lines: lines, name: name, key: hostKey)
    }
}
