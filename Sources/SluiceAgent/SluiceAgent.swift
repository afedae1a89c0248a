// SluiceAgent: The command façade (Agent: pull, transform, audit, trust, tokens), the audit, the
// lake migration, and the runtime of `sluice run` (AgentRuntime, its pollers, transform pool and
// uploads).
