//! The PostgreSQL schema: ordered, append-only migrations recorded in `schema_migrations`, as the
//! SQLite storage records its own (`fieldsync_protocol::migrate`); a recorded migration whose text
//! differs from the code's, or more recorded migrations than the code knows, refuse to open.
//!
//! Several servers may start at once on one database: the whole run holds a transaction-level
//! advisory lock, so one server migrates and the others then find everything recorded.

use super::StorageError;

/// One schema step.
pub(super) struct Migration {
    name: &'static str,
    pub(super) sql: &'static str,
}

/// The advisory lock key of migrations (any constant; `fieldsync` in ASCII).
const MIGRATION_LOCK: i64 = 0x6669_656c_6473_796e;

pub(super) const MIGRATIONS: &[Migration] = &[
    Migration {
        name: "change log, records, accounts and the audit log",
        sql: "
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE TABLE server_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE devices (
    id text PRIMARY KEY,
    first_seen bigint NOT NULL,
    last_push bigint,
    last_pull bigint,
    pushed bigint NOT NULL DEFAULT 0,
    person text,
    name text,
    token_hash bytea UNIQUE,
    mac_key bytea,
    enrolled_at bigint,
    revoked_at bigint
);
CREATE TABLE actors (
    actor bytea PRIMARY KEY,
    device text NOT NULL,
    first_seen bigint NOT NULL
);
CREATE TABLE records (
    id text PRIMARY KEY,
    kind text NOT NULL,
    campaign text NOT NULL,
    scope text NOT NULL,
    first_seq bigint NOT NULL,
    last_seq bigint NOT NULL,
    dirty boolean NOT NULL DEFAULT true,
    doc bytea,
    fields jsonb,
    deleted boolean NOT NULL DEFAULT false,
    conflicts integer NOT NULL DEFAULT 0,
    heads jsonb,
    problem text,
    merged_at bigint,
    review jsonb,
    search_text text
);
CREATE INDEX records_dirty ON records (first_seq) WHERE dirty;
CREATE INDEX records_by_place ON records (campaign, scope, kind);
CREATE INDEX records_by_campaign_kind ON records (campaign, kind);
CREATE INDEX records_by_kind ON records (kind);
CREATE INDEX records_first_seq ON records (first_seq);
CREATE INDEX records_review ON records (campaign) WHERE review IS NOT NULL;
CREATE INDEX records_search ON records USING gin (search_text gin_trgm_ops);
CREATE TABLE changes (
    seq bigint PRIMARY KEY,
    hash bytea NOT NULL UNIQUE,
    record_id text NOT NULL,
    actor bytea NOT NULL,
    actor_seq bigint NOT NULL,
    pushed_by text NOT NULL,
    received_at bigint NOT NULL,
    applied boolean NOT NULL DEFAULT false,
    bytes bytea NOT NULL
);
CREATE SEQUENCE changes_seq AS bigint OWNED BY changes.seq;
CREATE UNIQUE INDEX changes_by_actor_seq ON changes (record_id, actor, actor_seq);
CREATE INDEX changes_unapplied ON changes (record_id) WHERE NOT applied;
CREATE INDEX changes_by_record ON changes (record_id, seq);
CREATE TABLE people (
    id text PRIMARY KEY,
    name text NOT NULL,
    role text NOT NULL,
    work_group text,
    disabled boolean NOT NULL DEFAULT false,
    created_at bigint NOT NULL
);
CREATE TABLE enrollment_codes (
    hash bytea PRIMARY KEY,
    person text NOT NULL REFERENCES people (id),
    created_at bigint NOT NULL,
    expires_at bigint NOT NULL,
    used_at bigint,
    used_by text
);
CREATE TABLE audit (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at bigint NOT NULL,
    device text,
    person text,
    action text NOT NULL,
    outcome text NOT NULL,
    detail jsonb NOT NULL
);
CREATE INDEX audit_by_action ON audit (action, id);
CREATE INDEX audit_by_device ON audit (device, id);
INSERT INTO server_meta (key, value) VALUES ('data_version', '0');
",
    },
    Migration {
        name: "each change carries its record's campaign and place, so a device's pull reads its own part of the log",
        sql: "
ALTER TABLE changes ADD COLUMN campaign text NOT NULL DEFAULT '',
                    ADD COLUMN scope text NOT NULL DEFAULT '';
UPDATE changes c SET campaign = r.campaign, scope = r.scope FROM records r WHERE r.id = c.record_id;
CREATE INDEX changes_by_place ON changes (campaign, scope, seq);
",
    },
    Migration {
        name: "each record keeps its short values apart, so tallies do not read its notes",
        // `storage::facts`: every field but a string over 64 characters. `fields` with a note is
        // stored compressed out of line (TOAST), and every `fields->>'x'` of a tally fetched and
        // decompressed it again; `facts` stays small and in the row. The index holds what the
        // tallies filter, group and count by, so that they scan it instead of the table (about a
        // fifth of its size), as SQLite's `records_tally` does.
        sql: "
ALTER TABLE records ADD COLUMN facts jsonb;
UPDATE records SET facts = COALESCE(
    (SELECT jsonb_object_agg(e.key, e.value) FROM jsonb_each(fields) AS e
     WHERE NOT (jsonb_typeof(e.value) = 'string' AND char_length(e.value #>> '{}') > 64)),
    '{}'::jsonb)
WHERE jsonb_typeof(fields) = 'object';
CREATE INDEX records_tally ON records (campaign, kind, deleted, scope)
    INCLUDE (conflicts, first_seq, facts);
",
    },
    Migration {
        name: "a village's records and quoted notes are read through indexes, and the tallies find the table vacuumed",
        // A dossier lists a village's records of one kind in arrival order (the first 50 of
        // 10,000 read 100,000 rows through `records_first_seq` before), and all of them briefly
        // in that order (sorted on disk before; the index holds every column of the brief
        // listing, so 11,000 rows are read in 6 ms instead of 46; today the village digest,
        // `tally::digest`, reads the same columns from it). `records_noted` holds the interviews and
        // meetings with a note, meetings first, as the tallies quote them (`tally::NOTED` is
        // its condition, word for word): eight per village are read, not every note of the
        // campaign. `records_by_place` is the first three columns of the first. And the table is
        // vacuumed after 1% of it changed (20% by default), so that the tallies' pass over a
        // campaign reads `records_tally` alone and seldom the table to see whether a row of a
        // recently changed page is visible.
        sql: "
CREATE INDEX records_by_place_seq ON records (campaign, scope, kind, first_seq);
DROP INDEX records_by_place;
CREATE INDEX records_by_village ON records (campaign, scope, first_seq)
    INCLUDE (id, kind, deleted, conflicts, dirty, problem, facts);
CREATE INDEX records_noted ON records (campaign, scope, (kind = 'meeting') DESC, first_seq)
    WHERE kind IN ('meeting', 'interview') AND NOT deleted
      AND jsonb_typeof(fields->'notes') = 'string' AND length(fields->>'notes') > 0;
ALTER TABLE records SET (autovacuum_vacuum_scale_factor = 0.01,
                         autovacuum_vacuum_insert_scale_factor = 0.01);
",
    },
    Migration {
        name: "each place's records carry a version that moves with every write, so the tallies count again only the places that changed",
        // `versions`: a push or a merge moves the versions of the places it wrote, in its own
        // transaction, to numbers never given out before; the tallies keep what they counted of
        // each place with its version and count a place again only when its version moved.
        sql: "
CREATE SEQUENCE place_version_seq;
CREATE TABLE place_versions (
    campaign text NOT NULL,
    scope text NOT NULL,
    version bigint NOT NULL DEFAULT nextval('place_version_seq'),
    PRIMARY KEY (campaign, scope)
);
INSERT INTO place_versions (campaign, scope)
    SELECT DISTINCT campaign, scope FROM records ORDER BY campaign, scope;
",
    },
];

/// Applies the migrations the database has not seen yet, in order, in one transaction.
pub(super) async fn migrate(client: &mut deadpool_postgres::Client) -> Result<usize, StorageError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            id bigint PRIMARY KEY,
            name text NOT NULL,
            sql text NOT NULL,
            applied_at bigint NOT NULL
        )",
    )
    .await?;
    let recorded = tx
        .query("SELECT id, sql FROM schema_migrations ORDER BY id", &[])
        .await?;
    if recorded.len() > MIGRATIONS.len() {
        return Err(StorageError::Other(format!(
            "the database has {} migrations but this program knows only {}: it was written by a \
             newer fieldsync; upgrade this program",
            recorded.len(),
            MIGRATIONS.len()
        )));
    }
    let mut applied = 0;
    for (i, m) in MIGRATIONS.iter().enumerate() {
        let index = i as i64 + 1;
        match recorded.iter().find(|r| r.get::<_, i64>(0) == index) {
            Some(r) if r.get::<_, String>(1) == m.sql => {}
            Some(_) => {
                return Err(StorageError::Other(format!(
                    "migration {index} ({}) was changed after it was applied; migrations are \
                     append-only: restore its original text and add a new migration instead",
                    m.name
                )));
            }
            None => {
                tx.batch_execute(m.sql).await?;
                tx.execute(
                    "INSERT INTO schema_migrations (id, name, sql, applied_at)
                     VALUES ($1, $2, $3, extract(epoch FROM now())::bigint)",
                    &[&index, &m.name, &m.sql],
                )
                .await?;
                applied += 1;
            }
        }
    }
    tx.commit().await?;
    Ok(applied)
}
