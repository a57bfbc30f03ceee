//! The offline record store: one SQLite file holding every record as an Automerge document, a
//! queryable projection of its fields, and every change with its sync state.
//!
//! Every write (a local edit, a pulled page, an acknowledgement) is one SQLite transaction that
//! updates the document, its projection and the change log together, so a store killed at any
//! moment is either before or after the write, never half-way.
//!
//! - `schema`: opening a store: migrations, the device's identity, the key check.
//! - `records`: local edits ([`Editor`]) and reads of records and their projection.
//! - `outbox`: what waits to be pushed, acknowledgements, the change log for bundles.
//! - `scope`: credentials, the scope the server sent, held changes, the wipe.
//! - `incoming`: received changes (pull pages, bundles) checked, merged and written.
//! - `attachments`: the bytes of files attached to records, kept until the server has them.
//! - `writers`: who wrote a change (this device, a person the server named, another device).

mod attachments;
mod incoming;
mod outbox;
mod records;
mod schema;
mod scope;
mod writers;

use std::time::{SystemTime, UNIX_EPOCH};

use automerge::ActorId;
use fieldsync_protocol::{ChangeError, RecordError, RecordHeader, migrate::MigrateError};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use uuid::Uuid;

pub use attachments::StoredAttachment;
pub use incoming::{ApplyStats, Cursor};
pub(crate) use incoming::{Incoming, PageEnd};
pub use outbox::OutboxBatch;
pub use records::{Editor, Filter, Record};
pub use schema::key_from_file;
pub use scope::ScopeChange;
pub use writers::{Writer, Writers};

/// What went wrong in the store. Every variant says what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The SQLite file could not be opened or written.
    #[error("the local store failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The schema could not be brought up to date.
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    /// No record has this id.
    #[error("no record {0} in this store")]
    NotFound(Uuid),
    /// A record with this id already exists (for a singleton, edit it instead).
    #[error("record {0} already exists")]
    Exists(Uuid),
    /// A header, field name or value was refused.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// A change received from elsewhere is not a valid change.
    #[error("change {index} of record {record} was refused: {source}")]
    BadChange {
        /// The record.
        record: String,
        /// Its position in the record's change list.
        index: usize,
        /// Why.
        source: ChangeError,
    },
    /// A received record's header differs from the one this store has for the same id.
    #[error(
        "record {id} arrived with header {got:?} but this store has {have:?}; the sender is \
         inconsistent and nothing of it was applied"
    )]
    HeaderMismatch {
        /// The record.
        id: Uuid,
        /// What the store has.
        have: Box<RecordHeader>,
        /// What arrived.
        got: Box<RecordHeader>,
    },
    /// A text position past the end of the text.
    #[error("field {field:?}: position {pos} is past the end of the text ({len} characters)")]
    TextRange {
        /// The field.
        field: String,
        /// The position asked for.
        pos: usize,
        /// The text's length in characters.
        len: usize,
    },
    /// The field is not a text, so text operations do not apply.
    #[error("field {0:?} is not a text field")]
    NotText(String),
    /// The store is encrypted and the key is wrong (or it is not encrypted and a key was given,
    /// or it is encrypted and none was given).
    #[error(
        "本机数据文件无法用这个密钥打开 / the store cannot be opened with this key: it is \
         encrypted with another key, or not encrypted the way it was opened"
    )]
    WrongKey,
    /// This build has no encryption (client-core's `encryption` feature, SQLCipher).
    #[error("this build of fieldsync cannot encrypt stores (built without SQLCipher)")]
    EncryptionUnavailable,
    /// The store lives in memory: there is no file to open a second handle on.
    #[error("this store lives in memory and cannot be opened a second time")]
    NotAFile,
    /// A stored document could not be read (the file was damaged).
    #[error("record {id}: its stored document is damaged: {reason}")]
    Damaged {
        /// The record.
        id: Uuid,
        /// What failed.
        reason: String,
    },
}

impl From<automerge::AutomergeError> for StoreError {
    fn from(e: automerge::AutomergeError) -> Self {
        StoreError::Record(e.into())
    }
}

/// Results of the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The offline record store. Open one per SQLite file; it is not shared between threads (open a
/// second one on the same file if you need to; SQLite serializes their writes).
pub struct Store {
    conn: Connection,
    device: Uuid,
    actor: ActorId,
    /// The key of an encrypted store, for [`Store::reopen`].
    key: Option<[u8; 32]>,
    /// Templates already parsed, by their source text: every form save and list reads the
    /// campaign's template, and parsing it (TOML, then every check) cost more than the save.
    pub(crate) parsed_templates: std::cell::RefCell<
        std::collections::HashMap<String, fieldsync_protocol::template::Template>,
    >,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("device", &self.device)
            .field("actor", &self.actor.to_hex_string())
            .finish()
    }
}

impl Store {
    /// This device's id.
    pub fn device_id(&self) -> Uuid {
        self.device
    }

    /// The actor id this open store writes with.
    pub fn actor(&self) -> &ActorId {
        &self.actor
    }

    /// Every actor id this store has written with (one per open), oldest first.
    pub fn actors(&self) -> Result<Vec<ActorId>> {
        let mut stmt = self
            .conn
            .prepare("SELECT actor FROM actors ORDER BY opened_at, rowid")?;
        let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
        Ok(rows
            .collect::<rusqlite::Result<Vec<_>>>()?
            .into_iter()
            .map(ActorId::from)
            .collect())
    }

    pub(crate) fn meta_value(&self, key: &str) -> Result<Option<String>> {
        self.meta(key)
    }

    pub(crate) fn set_meta_value(&mut self, key: &str, value: &str) -> Result<()> {
        let tx = self.conn.transaction()?;
        set_meta(&tx, key, value)?;
        tx.commit()?;
        Ok(())
    }

    fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }
}

fn set_meta(tx: &Transaction<'_>, key: &str, value: &str) -> Result<()> {
    tx.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = ?2",
        params![key, value],
    )?;
    Ok(())
}
