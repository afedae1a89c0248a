// SluiceManifest: The manifest in SQLite (GRDB): versions, sightings, runs, transforms, tokens
// and uploads, with its schema migrations.
