//! Opening a store: the schema's ordered migrations, the device's identity and a fresh actor
//! per open, and the check that an encrypted file was opened with its key.

use std::path::Path;

use automerge::ActorId;
use fieldsync_protocol::migrate::{Migration, migrate};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use uuid::Uuid;

use super::{Result, Store, StoreError, now_ms};

const MIGRATIONS: &[Migration] = &[
    Migration {
        name: "initial schema",
        sql: "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
CREATE TABLE actors (actor BLOB PRIMARY KEY, opened_at INTEGER NOT NULL) STRICT;
CREATE TABLE records (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    campaign TEXT NOT NULL,
    scope TEXT NOT NULL,
    doc BLOB NOT NULL,
    ready INTEGER NOT NULL,
    fields TEXT NOT NULL,
    deleted INTEGER NOT NULL,
    conflicts INTEGER NOT NULL,
    heads TEXT NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
CREATE INDEX records_by_kind ON records (kind, scope);
CREATE INDEX records_by_scope ON records (scope);
CREATE TABLE changes (
    seq INTEGER PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE,
    record_id TEXT NOT NULL,
    actor BLOB NOT NULL,
    bytes BLOB NOT NULL,
    local INTEGER NOT NULL,
    acked INTEGER NOT NULL,
    pushed INTEGER NOT NULL DEFAULT 0,
    applied INTEGER NOT NULL,
    seen_at INTEGER NOT NULL
) STRICT;
CREATE INDEX changes_outbox ON changes (seq) WHERE acked = 0;
CREATE INDEX changes_pending ON changes (record_id) WHERE applied = 0;
CREATE INDEX changes_by_record ON changes (record_id);
",
    },
    Migration {
        name: "relay tags of changes",
        sql: "ALTER TABLE changes ADD COLUMN tag BLOB;",
    },
    Migration {
        name: "attachment bytes",
        sql: "
CREATE TABLE attachments (
    sha256 TEXT PRIMARY KEY,
    record_id TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    bytes BLOB NOT NULL,
    uploaded INTEGER NOT NULL,
    added_at INTEGER NOT NULL
) STRICT;
CREATE INDEX attachments_to_upload ON attachments (added_at) WHERE uploaded = 0;
",
    },
];
/// The store's device id (created on first use) and a fresh actor for this session, recorded.
pub(super) fn identity(tx: &Transaction<'_>) -> Result<(Uuid, ActorId)> {
    let device = match tx
        .query_row("SELECT value FROM meta WHERE key = 'device_id'", [], |r| {
            r.get::<_, String>(0)
        })
        .optional()?
    {
        Some(s) => Uuid::parse_str(&s).map_err(|e| StoreError::Damaged {
            id: Uuid::nil(),
            reason: format!("device id {s:?}: {e}"),
        })?,
        None => {
            let id = Uuid::new_v4();
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('device_id', ?1)",
                [id.to_string()],
            )?;
            id
        }
    };
    let actor = ActorId::random();
    tx.execute(
        "INSERT INTO actors (actor, opened_at) VALUES (?1, ?2)",
        params![actor.to_bytes(), now_ms()],
    )?;
    Ok((device, actor))
}

/// The 256-bit key a key file holds: 64 hex digits (whitespace ignored) or exactly 32 bytes;
/// `None` for anything else. The command line's `--key-file` and the field app's key page
/// read key files by this one rule.
pub fn key_from_file(bytes: &[u8]) -> Option<[u8; 32]> {
    let text: String = String::from_utf8_lossy(bytes)
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    if let Ok(hex) = hex::decode(&text)
        && let Ok(key) = <[u8; 32]>::try_from(hex.as_slice())
    {
        return Some(key);
    }
    <[u8; 32]>::try_from(bytes).ok()
}

/// Reads the schema once: an encrypted file opened with the wrong key (or none) fails here.
fn check_readable(conn: &Connection) -> Result<()> {
    match conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    }) {
        Ok(_) => Ok(()),
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) => {
            Err(StoreError::WrongKey)
        }
        Err(e) => Err(e.into()),
    }
}

impl Store {
    /// Opens (creating if needed) the store at `path`.
    ///
    /// Every open writes with a fresh Automerge actor id, recorded in the store: a store copied
    /// back from a backup can therefore never write a second, different change under an actor
    /// and sequence number it already used before the backup was taken.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let conn = Connection::open(path)?;
        check_readable(&conn)?;
        Self::setup(conn, None)
    }

    /// Opens (creating if needed) a store encrypted with `key` (SQLCipher, AES-256), such as a
    /// key the app keeps in the phone's keystore. Everything in the file and its journal is
    /// encrypted; a wrong key gives [`StoreError::WrongKey`], never garbage.
    pub fn open_encrypted(path: impl AsRef<Path>, key: &[u8; 32]) -> Result<Self> {
        let conn = Connection::open(path)?;
        let cipher: Option<String> = conn
            .query_row("PRAGMA cipher_version", [], |r| r.get(0))
            .optional()?;
        if cipher.is_none() {
            return Err(StoreError::EncryptionUnavailable);
        }
        // A raw 256-bit key (x'…', 64 hex digits): no passphrase derivation.
        conn.pragma_update(None, "key", format!("x'{}'", hex::encode(key)))?;
        check_readable(&conn)?;
        Self::setup(conn, Some(*key))
    }

    /// Opens a store that lives only in memory (for tests and tools).
    pub fn open_in_memory() -> Result<Self> {
        Self::setup(Connection::open_in_memory()?, None)
    }

    /// Opens a second handle on the same store file (with the same key if it is encrypted), as
    /// another program would: its own SQLite connection and its own Automerge actor. The field
    /// app syncs through one while its pages use the other; SQLite's WAL keeps them apart. A
    /// store in memory has no file to open again: [`StoreError::NotAFile`].
    pub fn reopen(&self) -> Result<Self> {
        let path = self
            .conn
            .path()
            .filter(|p| !p.is_empty())
            .ok_or(StoreError::NotAFile)?
            .to_string();
        match &self.key {
            Some(key) => Self::open_encrypted(path, key),
            None => Self::open(path),
        }
    }

    fn setup(mut conn: Connection, key: Option<[u8; 32]>) -> Result<Self> {
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // Checkpoint the log into the file every 8,000 pages (32 MiB) rather than SQLite's
        // 1,000: a page that many small writes touch in turn (an index's) is copied to the file
        // once per checkpoint, and each checkpoint waits for the disk. With the default, saving
        // records one at a time spent more time checkpointing than creating them
        // (BENCHMARKS.md). The log is cut back to 64 MiB after a checkpoint.
        conn.pragma_update(None, "wal_autocheckpoint", 8000)?;
        conn.pragma_update(None, "journal_size_limit", 64i64 << 20)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut conn, MIGRATIONS)?;
        let tx = conn.transaction()?;
        let (device, actor) = identity(&tx)?;
        tx.commit()?;
        Ok(Store {
            conn,
            device,
            actor,
            key,
            parsed_templates: Default::default(),
        })
    }
}

#[cfg(test)]
mod key_tests {
    use super::key_from_file;

    #[test]
    fn a_key_file_is_64_hex_digits_or_32_bytes() {
        assert_eq!(
            key_from_file(format!("{}\n", "1f".repeat(32)).as_bytes()),
            Some([0x1f; 32])
        );
        assert_eq!(key_from_file(&[7u8; 32]), Some([7; 32]));
        assert_eq!(key_from_file(b"not a key"), None);
        assert_eq!(key_from_file("ab".repeat(31).as_bytes()), None);
        assert_eq!(key_from_file(&[7u8; 33]), None);
    }
}
