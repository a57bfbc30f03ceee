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
    Migration {
        name: "each change carries its record's campaign and place, so a device's pull reads its own part of the log",
        sql: "
ALTER TABLE changes ADD COLUMN campaign TEXT NOT NULL DEFAULT '';
ALTER TABLE changes ADD COLUMN scope TEXT NOT NULL DEFAULT '';
UPDATE changes SET
    campaign = coalesce((SELECT r.campaign FROM records r WHERE r.id = changes.record_id), ''),
    scope = coalesce((SELECT r.scope FROM records r WHERE r.id = changes.record_id), '');
CREATE INDEX changes_by_place ON changes (campaign, scope, seq);
",
    },
    Migration {
        name: "the tallies count a campaign's records from an index, not its rows",
        sql: "
CREATE INDEX records_tally ON records (campaign, kind, deleted, scope, conflicts);
DROP INDEX records_by_campaign_kind;
DROP INDEX records_by_place;
CREATE INDEX records_by_place ON records (campaign, scope, kind, first_seq);
",
    },
    Migration {
        name: "the tallies group a campaign's records by their short values from an index",
        // `fieldsync_facts` is `facts::facts`, registered on every connection.
        sql: "
ALTER TABLE records ADD COLUMN facts TEXT;
UPDATE records SET facts = fieldsync_facts(fields) WHERE fields IS NOT NULL;
DROP INDEX records_tally;
CREATE INDEX records_tally ON records (campaign, kind, deleted, scope, conflicts, facts);
",
    },
    Migration {
        name: "the search index keeps which records hold each trigram, not where",
        // Search asks with LIKE only, which FTS5 checks against the text itself; positions
        // (`detail=full`) served only phrase queries nobody makes, and writing them was about
        // a third of indexing a note. The rows are copied, not indexed again by a merge.
        sql: "
CREATE VIRTUAL TABLE records_fts_lean USING fts5(
    id UNINDEXED, campaign UNINDEXED, kind UNINDEXED, text, tokenize = 'trigram', detail = none
);
INSERT INTO records_fts_lean (rowid, id, campaign, kind, text)
    SELECT rowid, id, campaign, kind, text FROM records_fts;
DROP TABLE records_fts;
ALTER TABLE records_fts_lean RENAME TO records_fts;
",
    },
];

#[cfg(test)]
mod tests {
    use fieldsync_protocol::migrate::migrate;
    use rusqlite::Connection;

    use super::MIGRATIONS;
    use crate::storage::Storage;
    use crate::storage::sqlite::SqliteStorage;

    #[tokio::test]
    async fn an_older_database_gets_the_short_values_of_its_records_for_the_tallies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fieldsync.sqlite3");
        let before = MIGRATIONS
            .iter()
            .position(|m| m.name.starts_with("the tallies group"))
            .unwrap();
        let note = "谈话".repeat(40);
        {
            let mut conn = Connection::open(&path).unwrap();
            migrate(&mut conn, &MIGRATIONS[..before]).unwrap();
            conn.execute(
                "INSERT INTO records (id, kind, campaign, scope, first_seq, last_seq, dirty,
                                      fields)
                 VALUES ('a', 'interview', 'c1', '510100001', 1, 1, 0, ?1),
                        ('b', 'interview', 'c1', '510100001', 2, 2, 1, NULL)",
                [serde_json::json!({"interviewee_type": "member", "notes": note}).to_string()],
            )
            .unwrap();
        }
        let storage = SqliteStorage::open_for_admin(dir.path()).unwrap();
        storage.close().await;
        let conn = Connection::open(&path).unwrap();
        let facts: Vec<Option<String>> = conn
            .prepare("SELECT facts FROM records ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            facts,
            [Some(r#"{"interviewee_type":"member"}"#.to_string()), None]
        );
    }

    #[test]
    fn an_older_search_index_is_carried_over_and_still_finds_words_only_where_they_are() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::facts::register(&conn).unwrap();
        let before = MIGRATIONS
            .iter()
            .position(|m| m.name.starts_with("the search index keeps"))
            .unwrap();
        migrate(&mut conn, &MIGRATIONS[..before]).unwrap();
        // "村两委班子" holds the trigrams of "两委班" in order; "两委X委班" holds "委班" but not
        // "两委班": an index without positions must not find the second for "两委班".
        conn.execute_batch(
            "INSERT INTO records_fts (rowid, id, campaign, kind, text)
             VALUES (7, 'a', 'c1', 'interview', '村两委班子团结'),
                    (9, 'b', 'c1', 'interview', '两委X委班两委');",
        )
        .unwrap();
        migrate(&mut conn, MIGRATIONS).unwrap();
        let detail: String = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'records_fts'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(detail.contains("detail = none"), "{detail}");
        let found = |word: &str| -> Vec<(i64, String)> {
            conn.prepare("SELECT rowid, id FROM records_fts WHERE text LIKE ?1 ORDER BY rowid")
                .unwrap()
                .query_map([format!("%{word}%")], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        assert_eq!(found("两委班"), [(7, "a".to_string())]);
        assert_eq!(found("两委"), [(7, "a".into()), (9, "b".into())]);
        assert_eq!(found("团结"), [(7, "a".to_string())]);
        // Rows are still deleted by rowid, as the merge does.
        conn.execute("DELETE FROM records_fts WHERE rowid = 7", [])
            .unwrap();
        assert!(found("两委班").is_empty());
    }

    #[tokio::test]
    async fn an_older_database_learns_the_campaign_and_place_of_every_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fieldsync.sqlite3");
        let before = MIGRATIONS
            .iter()
            .position(|m| {
                m.name
                    .starts_with("each change carries its record's campaign")
            })
            .unwrap();
        {
            let mut conn = Connection::open(&path).unwrap();
            migrate(&mut conn, &MIGRATIONS[..before]).unwrap();
            conn.execute_batch(
                "INSERT INTO records (id, kind, campaign, scope, first_seq, last_seq, dirty)
                 VALUES ('a', 'interview', 'c1', '510100001', 1, 3, 0),
                        ('b', 'work_group', 'c1', 'campaign', 2, 2, 0);
                 INSERT INTO changes (hash, record_id, actor, actor_seq, pushed_by, received_at,
                                      applied, bytes)
                 VALUES (x'01', 'a', x'aa', 1, 'd', 0, 1, x''),
                        (x'02', 'b', x'aa', 1, 'd', 0, 1, x''),
                        (x'03', 'a', x'aa', 2, 'd', 0, 1, x'');",
            )
            .unwrap();
        }
        let storage = SqliteStorage::open_for_admin(dir.path()).unwrap();
        storage.close().await;
        let conn = Connection::open(&path).unwrap();
        let rows: Vec<(i64, String, String)> = conn
            .prepare("SELECT seq, campaign, scope FROM changes ORDER BY seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            rows,
            [
                (1, "c1".into(), "510100001".into()),
                (2, "c1".into(), "campaign".into()),
                (3, "c1".into(), "510100001".into()),
            ]
        );
    }
}
