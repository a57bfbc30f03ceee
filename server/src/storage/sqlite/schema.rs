//! The SQLite storage's schema: ordered, append-only migrations, recorded in
//! `schema_migrations` by `fieldsync_protocol::migrate`.

use fieldsync_protocol::migrate::Migration;

/// Every migration, oldest first. Append only: a database whose recorded migration text differs
/// refuses to open.
pub(super) const MIGRATIONS: &[Migration] = &[
    Migration {
        name: "initial schema",
        sql: "
CREATE TABLE server_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    first_seen INTEGER NOT NULL,
    last_push INTEGER,
    last_pull INTEGER,
    pushed INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE TABLE actors (
    actor BLOB PRIMARY KEY,
    device TEXT NOT NULL,
    first_seen INTEGER NOT NULL
) STRICT;
CREATE TABLE records (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    campaign TEXT NOT NULL,
    scope TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    dirty INTEGER NOT NULL DEFAULT 1,
    doc BLOB,
    fields TEXT,
    deleted INTEGER NOT NULL DEFAULT 0,
    conflicts INTEGER NOT NULL DEFAULT 0,
    heads TEXT,
    problem TEXT,
    merged_at INTEGER
) STRICT;
CREATE INDEX records_dirty ON records (id) WHERE dirty = 1;
CREATE INDEX records_by_place ON records (campaign, scope, kind);
CREATE INDEX records_by_kind ON records (kind);
CREATE TABLE changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    hash BLOB NOT NULL UNIQUE,
    record_id TEXT NOT NULL,
    actor BLOB NOT NULL,
    actor_seq INTEGER NOT NULL,
    pushed_by TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    applied INTEGER NOT NULL DEFAULT 0,
    bytes BLOB NOT NULL
) STRICT;
CREATE UNIQUE INDEX changes_by_actor_seq ON changes (record_id, actor, actor_seq);
CREATE INDEX changes_unapplied ON changes (record_id) WHERE applied = 0;
",
    },
    Migration {
        name: "review of records against their templates",
        sql: "
ALTER TABLE records ADD COLUMN review TEXT;
CREATE INDEX records_review ON records (campaign) WHERE review IS NOT NULL;
",
    },
    Migration {
        name: "full-text search and campaign queries",
        sql: "
CREATE VIRTUAL TABLE records_fts USING fts5(
    id UNINDEXED, campaign UNINDEXED, kind UNINDEXED, text, tokenize = 'trigram'
);
CREATE INDEX records_by_campaign_kind ON records (campaign, kind);
UPDATE records SET dirty = 1 WHERE fields IS NOT NULL;
",
    },
    Migration {
        name: "people, enrollment codes, device tokens and the audit log",
        sql: super::accounts::MIGRATION_SQL,
    },
    Migration {
        name: "search index without record ids and choice values",
        sql: "UPDATE records SET dirty = 1 WHERE fields IS NOT NULL;",
    },
];
