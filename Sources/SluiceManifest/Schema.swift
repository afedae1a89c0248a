import SluiceSupport

/// The manifest's migrations. Named, and only ever appended: never edit a shipped one.
enum Schema {
    static let migrations: [Migration] = [
        Migration(identifier: "v1-core", sql: """
            CREATE TABLE run (
                id INTEGER PRIMARY KEY,
                client TEXT NOT NULL,
                source TEXT,
                trigger TEXT NOT NULL,
                pid INTEGER NOT NULL,
                started_at TEXT NOT NULL,
                finished_at TEXT,
                status TEXT NOT NULL,
                new INTEGER NOT NULL DEFAULT 0,
                unchanged INTEGER NOT NULL DEFAULT 0,
                skipped INTEGER NOT NULL DEFAULT 0,
                failed INTEGER NOT NULL DEFAULT 0,
                bytes INTEGER NOT NULL DEFAULT 0,
                error TEXT
            );
            CREATE INDEX run_client ON run(client, started_at);

            CREATE TABLE file (
                id INTEGER PRIMARY KEY,
                client TEXT NOT NULL,
                source TEXT NOT NULL,
                path TEXT NOT NULL,
                path_bytes BLOB NOT NULL,
                first_seen_at TEXT NOT NULL,
                UNIQUE (client, source, path_bytes)
            );
            CREATE INDEX file_path ON file(client, path);

            CREATE TABLE version (
                id INTEGER PRIMARY KEY,
                file_id INTEGER NOT NULL REFERENCES file(id),
                version INTEGER NOT NULL,
                sha256 TEXT NOT NULL,
                size INTEGER NOT NULL,
                source_mtime TEXT NOT NULL,
                source_mtime_ns INTEGER NOT NULL,
                lake_path TEXT NOT NULL UNIQUE,
                ingested_at TEXT NOT NULL,
                run_id INTEGER REFERENCES run(id),
                UNIQUE (file_id, version)
            );

            CREATE TABLE sighting (
                id INTEGER PRIMARY KEY,
                version_id INTEGER NOT NULL REFERENCES version(id),
                run_id INTEGER REFERENCES run(id),
                seen_at TEXT NOT NULL,
                size INTEGER NOT NULL,
                source_mtime TEXT NOT NULL,
                source_mtime_ns INTEGER NOT NULL
            );
            CREATE INDEX sighting_version ON sighting(version_id, id);

            CREATE VIEW versions AS
                SELECT f.client, f.source, f.path, v.version, v.sha256, v.size,
                       v.source_mtime, v.lake_path, v.ingested_at, v.run_id, v.id AS version_id
                FROM version v JOIN file f ON f.id = v.file_id;
            """),
        Migration(identifier: "v2-transform", sql: """
            CREATE TABLE transform (
                id INTEGER PRIMARY KEY,
                version_id INTEGER NOT NULL REFERENCES version(id),
                dataset TEXT,
                mapping_sha256 TEXT,
                status TEXT NOT NULL,
                rows_written INTEGER NOT NULL DEFAULT 0,
                rows_rejected INTEGER NOT NULL DEFAULT 0,
                output_path TEXT,
                rejects_path TEXT,
                error TEXT,
                transformed_at TEXT NOT NULL
            );
            CREATE INDEX transform_version ON transform(version_id, id);
            """),
        // Upload API tokens: only each token's SHA-256 is kept.
        Migration(identifier: "v3-token", sql: """
            CREATE TABLE token (
                id INTEGER PRIMARY KEY,
                client TEXT NOT NULL,
                source TEXT,
                sha256 TEXT NOT NULL UNIQUE,
                created_at TEXT NOT NULL,
                expires_at TEXT,
                revoked_at TEXT,
                last_used_at TEXT,
                note TEXT
            );
            CREATE INDEX token_client ON token(client, id);
            """),
        // Every upload through the API once its sender is known: who, from where, what
        // arrived and what became of it.
        Migration(identifier: "v4-upload", sql: """
            CREATE TABLE upload (
                id INTEGER PRIMARY KEY,
                token_id INTEGER REFERENCES token(id),
                client TEXT NOT NULL,
                source TEXT NOT NULL,
                path TEXT NOT NULL,
                remote_addr TEXT,
                size INTEGER NOT NULL DEFAULT 0,
                sha256 TEXT,
                status TEXT NOT NULL,
                http_status INTEGER NOT NULL,
                version INTEGER,
                lake_path TEXT,
                error TEXT,
                started_at TEXT NOT NULL,
                finished_at TEXT NOT NULL
            );
            CREATE INDEX upload_client ON upload(client, id);
            """),
        // The ETag an object store gave each version and sighting (s3 sources): with the
        // size, it is what tells an unchanged object from a changed one.
        Migration(identifier: "v5-etag", sql: """
            ALTER TABLE version ADD COLUMN source_etag TEXT;
            ALTER TABLE sighting ADD COLUMN source_etag TEXT;
            """),
        // Every pass first looks for runs of its client still marked running (left by a
        // process that died). Through run_client that read walked every run the client
        // ever had: one per upload or poll, so each pass got slower as the manifest grew
        // (1 ms a pass at 7,000 runs). Only a handful of runs are running at a time.
        Migration(identifier: "v6-run-running", sql: "CREATE INDEX run_running ON run(client) WHERE status = 'running'"),
        // Every folder a source's `after_ingest = "move:…"` has pointed at: what Sluice
        // moved there must never come back as a new delivery, even after the target changed.
        Migration(identifier: "v7-move-target", sql: """
            CREATE TABLE move_target (
                client TEXT NOT NULL,
                source TEXT NOT NULL,
                target TEXT NOT NULL,
                first_used_at TEXT NOT NULL,
                PRIMARY KEY (client, source, target)
            );
            """),
        // The fingerprint of the output schema each transform wrote (the dataset's field
        // names, types and nullability), so a changed mapping can be told from an old one.
        Migration(identifier: "v8-transform-schema", sql: "ALTER TABLE transform ADD COLUMN schema_sha256 TEXT"),
        // Changes to the lake's layout that move files (run by the agent, not by SQL), each
        // recorded once it is complete.
        Migration(identifier: "v9-lake-migration", sql: "CREATE TABLE lake_migration (name TEXT PRIMARY KEY, done_at TEXT NOT NULL)"),
        // An archive's members are transformed one by one: a row per member (member set,
        // parent_id naming the archive's own row, written first in the same transaction),
        // and the archive's row (member NULL, parent_id NULL) with how many members were
        // ok, failed and unmapped. A version's state is its latest row without a parent.
        Migration(identifier: "v10-transform-member", sql: """
            ALTER TABLE transform ADD COLUMN member TEXT;
            ALTER TABLE transform ADD COLUMN parent_id INTEGER REFERENCES transform(id);
            ALTER TABLE transform ADD COLUMN members_ok INTEGER;
            ALTER TABLE transform ADD COLUMN members_failed INTEGER;
            ALTER TABLE transform ADD COLUMN members_unmapped INTEGER;
            CREATE INDEX transform_parent ON transform(parent_id) WHERE parent_id IS NOT NULL;
            """),
        // The schema each transformed unit was seen to have (its columns in file order, the
        // type its values look like, how it was read, which column filled each field), one
        // row per distinct schema (by the SHA-256 of its canonical JSON), pointed at by
        // the unit's transform row.
        Migration(identifier: "v11-source-schema", sql: """
            CREATE TABLE source_schema (
                id INTEGER PRIMARY KEY,
                sha256 TEXT NOT NULL UNIQUE,
                schema TEXT NOT NULL,
                first_seen_at TEXT NOT NULL
            );
            ALTER TABLE transform ADD COLUMN source_schema_id INTEGER REFERENCES source_schema(id);
            """),
        // The schema-change policies read a dataset's latest ok unit with a schema before
        // each transform: newest first along this index, not through every transform.
        Migration(identifier: "v12-transform-dataset", sql: "CREATE INDEX transform_dataset ON transform(dataset, id) WHERE status = 'ok' AND source_schema_id IS NOT NULL"),
        // What changed in a unit's schema against the delivery before it (JSON: added,
        // removed, renamed, moved, type_changes with example values); NULL when nothing did.
        // The held units are found along their own index (the console and the
        // sluice_transforms_held gauge count them), not through every transform.
        Migration(identifier: "v13-schema-drift", sql: """
            ALTER TABLE transform ADD COLUMN schema_drift TEXT;
            CREATE INDEX transform_held ON transform(version_id) WHERE status = 'held';
            """),
        Migration(identifier: "v14-alerts", sql: alertTables),
        Migration(identifier: "v15-source-lease", sql: leaseTable),
        // Audits read the versions in byte order of their lake paths (the order of the lake's
        // folders and of object listings), and `history` the files below a folder as a range
        // of paths: SQLite's BINARY collation is byte order; on PostgreSQL, whose collation
        // may differ, indexes in collation "C" are.
        Migration(identifier: "v16-history", sql: historyIndexes, postgresOnly: """
            CREATE INDEX version_lake_path_c ON version (lake_path COLLATE "C");
            CREATE INDEX file_path_c ON file (client, path COLLATE "C")
            """),
        // PostgreSQL only; nothing on SQLite.
        // - Autovacuum refreshes a table's planner statistics once a tenth of it has changed: a
        //   million rows at ten million versions, while a new client's hundred thousand files,
        //   unknown to the statistics, make the known-files lookup walk all of them for each
        //   batch. Now after 10,000 changed rows, whichever agents wrote them (one that commits
        //   a burst also refreshes them itself: `Manifest.noteNewVersions`).
        // - The audit's pages of lake paths and sizes are read from the index alone (an
        //   index-only scan), not from the table's rows, which lie in the order they were
        //   ingested: one table page for each version (141 ms a page of 8,192 at ten million
        //   versions, 2.8 ms from the index).
        Migration(identifier: "v17-postgres-scale", sql: "", postgresOnly: """
            ALTER TABLE file SET (autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 10000);
            ALTER TABLE version SET (autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 10000);
            CREATE INDEX version_lake_path_size_c ON version (lake_path COLLATE "C") INCLUDE (size);
            DROP INDEX version_lake_path_c;
            ALTER INDEX version_lake_path_size_c RENAME TO version_lake_path_c
            """),
    ]

    /// What keeps every page and command flat as the history grows (millions of versions):
    /// each version names its client, so a client's versions are read newest first along
    /// `version_client` (the console's pages, `sluice history`, the expectations' arrivals),
    /// not found among everyone's; the totals per source and per day are kept beside the
    /// versions, in the commit's transaction, instead of being counted from them (and the
    /// versions whose latest transform failed or was held, in the transform's); the last
    /// run, success and error of a source are found along their own indexes. Existing rows
    /// are filled in here, once (about a minute per ten million versions).
    static let historyIndexes = """
        ALTER TABLE version ADD COLUMN client TEXT;
        UPDATE version SET client = (SELECT f.client FROM file f WHERE f.id = version.file_id);
        CREATE INDEX version_client ON version(client, ingested_at, id);

        DROP VIEW versions;
        CREATE VIEW versions AS
            SELECT v.client, f.source, f.path, v.version, v.sha256, v.size,
                   v.source_mtime, v.lake_path, v.ingested_at, v.run_id, v.id AS version_id
            FROM version v JOIN file f ON f.id = v.file_id;

        CREATE TABLE ingest_day (
            client TEXT NOT NULL,
            source TEXT NOT NULL,
            day TEXT NOT NULL,
            versions INTEGER NOT NULL,
            new_files INTEGER NOT NULL,
            bytes INTEGER NOT NULL,
            PRIMARY KEY (client, source, day)
        );
        CREATE INDEX ingest_day_day ON ingest_day(day);
        INSERT INTO ingest_day (client, source, day, versions, new_files, bytes)
            SELECT f.client, f.source, substr(v.ingested_at, 1, 10), count(*), sum(CASE WHEN v.version = 1 THEN 1 ELSE 0 END), sum(v.size)
            FROM version v JOIN file f ON f.id = v.file_id
            GROUP BY f.client, f.source, substr(v.ingested_at, 1, 10);

        CREATE TABLE source_total (
            client TEXT NOT NULL,
            source TEXT NOT NULL,
            versions INTEGER NOT NULL,
            new_files INTEGER NOT NULL,
            bytes INTEGER NOT NULL,
            failed_transforms INTEGER NOT NULL DEFAULT 0,
            held_transforms INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (client, source)
        );
        INSERT INTO source_total (client, source, versions, new_files, bytes)
            SELECT client, source, sum(versions), sum(new_files), sum(bytes) FROM ingest_day GROUP BY client, source;
        UPDATE source_total SET failed_transforms = x.failed, held_transforms = x.held
            FROM (SELECT f.client AS client, f.source AS source,
                         sum(CASE WHEN t.status = 'failed' THEN 1 ELSE 0 END) AS failed, sum(CASE WHEN t.status = 'held' THEN 1 ELSE 0 END) AS held
                  FROM transform t JOIN version v ON v.id = t.version_id JOIN file f ON f.id = v.file_id
                  WHERE t.parent_id IS NULL AND t.status IN ('failed', 'held')
                    AND t.id = (SELECT max(id) FROM transform WHERE version_id = t.version_id AND parent_id IS NULL)
                  GROUP BY f.client, f.source) AS x
            WHERE x.client = source_total.client AND x.source = source_total.source;

        CREATE INDEX run_source ON run(client, source, id);
        CREATE INDEX run_source_ok ON run(client, source, id) WHERE status = 'ok';
        CREATE INDEX run_source_error ON run(client, source, id) WHERE error IS NOT NULL;
        CREATE INDEX transform_failed ON transform(version_id) WHERE status = 'failed' AND parent_id IS NULL;
        """
}
