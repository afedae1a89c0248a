// SluiceConfig: agent.conf: AgentConfig and its TOML walker, and the seam for source types
// (SourceType, SourceSettings, SourceDrive, SourceRunner, SourceHost).
