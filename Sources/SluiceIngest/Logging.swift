import Logging

extension Logger {
    /// This logger with `client` (and `source`) in the metadata of every message, so that a
    /// source's code names them once, not in each call.
    package func about(client: String, source: String? = nil) -> Logger {
        var child = self
        child[metadataKey: "client"] = .string(client)
        if let source { child[metadataKey: "source"] = .string(source) }
        return child
    }
}
