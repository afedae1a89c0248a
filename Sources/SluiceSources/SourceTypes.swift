import SluiceConfig

/// The source types this build knows, in the order messages list them. A new source type is
/// one file in this module and one line here.
public enum SourceTypes {
    package static let all: [any SourceType] = [
        FolderSourceType(),
        SFTPSourceType(),
        HTTPSourceType(),
        S3SourceType(),
    ]
}

extension AgentConfig {
    /// Reads and validates a config file, with every source type of this build.
    public static func load(path: String) throws(ConfigError) -> AgentConfig {
        try load(path: path, sourceTypes: SourceTypes.all)
    }

    /// Validates config text; `file` is used for messages and to resolve relative paths.
    public static func parse(text: String, file: String) throws(ConfigError) -> AgentConfig {
        try parse(text: text, file: file, sourceTypes: SourceTypes.all)
    }
}
