// SluiceIngest: The one road every file walks: the Source protocols, candidates, the Ingestor
// (copy, hash, sync, publish, commit), typed reports, source locks and resumable-transfer state.
