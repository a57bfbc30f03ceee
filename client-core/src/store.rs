//! The offline record store: one SQLite file holding every record as an Automerge document, a
//! queryable projection of its fields, and every change with its sync state.
//!
//! Every write (a local edit, a pulled page, an acknowledgement) is one SQLite transaction that
//! updates the document, its projection and the change log together, so a store killed at any
//! moment is either before or after the write, never half-way.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use automerge::{ActorId, Automerge, Change, ChangeHash, ROOT, transaction::CommitOptions};
use fieldsync_protocol::{
    ChangeError, FieldValue, RecordError, RecordHeader,
    auth::WireScope,
    inspect_change,
    migrate::{MigrateError, Migration, migrate},
    new_record_id,
    record::{self, Conflict, Projection},
    wire::{MAX_PUSH_RECORDS, PROTOCOL_VERSION, PullResponse, PushRequest, WireRecord},
};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_bytes::ByteBuf;
use uuid::Uuid;

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
];

/// A record as the store's projection holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Id, kind, campaign and scope.
    pub header: RecordHeader,
    /// Whether it is deleted (a tombstone that syncs like any edit).
    pub deleted: bool,
    /// Current field values.
    pub fields: BTreeMap<String, FieldValue>,
    /// How many fields hold conflicting values (see [`Store::conflicts`]).
    pub conflicts: usize,
    /// The document's heads (hex change hashes).
    pub heads: Vec<String>,
    /// When this device last changed it (ms since the Unix epoch).
    pub updated_at: i64,
}

/// Which records [`Store::list`] returns.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this kind.
    pub kind: Option<String>,
    /// Only this scope (place).
    pub scope: Option<String>,
    /// Only this campaign.
    pub campaign: Option<Uuid>,
    /// Only records whose field values contain this text.
    pub text: Option<String>,
    /// Include deleted records.
    pub include_deleted: bool,
    /// Only records with conflicts.
    pub conflicted: bool,
}

/// What applying received changes did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Changes this store did not have before.
    pub new_changes: u64,
    /// Changes it already had.
    pub known_changes: u64,
    /// Changes kept aside because a change they depend on has not arrived yet.
    pub waiting: u64,
    /// Records whose merged state changed.
    pub records_changed: u64,
}

/// Where a pull page ends in the server's log: the store's cursor after applying it.
#[derive(Debug, Clone)]
pub(crate) struct PageEnd {
    /// The server position after the page.
    pub(crate) next: u64,
    /// The hash of the change at that position.
    pub(crate) next_hash: Option<Vec<u8>>,
    /// The server's newest position when it sent the page.
    pub(crate) head: u64,
    /// The server log's epoch, kept with the cursor.
    pub(crate) epoch: Option<String>,
}

impl PageEnd {
    pub(crate) fn of(page: &PullResponse) -> Self {
        PageEnd {
            next: page.next,
            next_hash: page.next_hash.as_ref().map(|h| h.to_vec()),
            head: page.head,
            epoch: page.epoch.clone(),
        }
    }
}

/// One batch of unacknowledged changes, ready to push.
#[derive(Debug, Clone)]
pub struct OutboxBatch {
    /// The push message.
    pub request: PushRequest,
    /// The hashes of the changes in it, to mark once the server acknowledges them.
    pub hashes: Vec<ChangeHash>,
    /// The record id of each change in `hashes` (same order): a record the server refuses
    /// keeps its changes unacknowledged.
    pub owners: Vec<String>,
    /// The local log position of the last change in it (the next batch starts after it).
    pub last_seq: i64,
    /// The number of change bytes in it.
    pub bytes: usize,
}

/// One stored change with its record's header.
pub(crate) struct ChangeRow {
    pub(crate) seq: i64,
    pub(crate) hash: Vec<u8>,
    pub(crate) bytes: Vec<u8>,
    pub(crate) header: RecordHeader,
    pub(crate) actor: Vec<u8>,
    pub(crate) tag: Option<Vec<u8>>,
}

/// What applying a new scope did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScopeChange {
    /// Records removed because this device may no longer see them.
    pub removed: u64,
    /// Records outside the scope kept because they hold changes not uploaded yet.
    pub kept_unsynced: u64,
    /// The scope now covers something it did not: pull from the start to fetch it.
    pub grew: bool,
}

/// Where this device is in the server's log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    /// The server sequence number of the last change seen.
    pub seq: u64,
    /// The hash of that change (absent at 0).
    pub hash: Option<Vec<u8>>,
}

/// The store's device id (created on first use) and a fresh actor for this session, recorded.
fn identity(tx: &Transaction<'_>) -> Result<(Uuid, ActorId)> {
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

fn now_ms() -> i64 {
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
    /// Opens (creating if needed) the store at `path`.
    ///
    /// Every open writes with a fresh Automerge actor id, recorded in the store: a store copied
    /// back from a backup can therefore never write a second, different change under an actor
    /// and sequence number it already used before the backup was taken.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let conn = Connection::open(path)?;
        check_readable(&conn)?;
        Self::setup(conn)
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
        Self::setup(conn)
    }

    /// Opens a store that lives only in memory (for tests and tools).
    pub fn open_in_memory() -> Result<Self> {
        Self::setup(Connection::open_in_memory()?)
    }

    fn setup(mut conn: Connection) -> Result<Self> {
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut conn, MIGRATIONS)?;
        let tx = conn.transaction()?;
        let (device, actor) = identity(&tx)?;
        tx.commit()?;
        Ok(Store {
            conn,
            device,
            actor,
        })
    }

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

    // ----- local writes -------------------------------------------------------------------

    /// Creates a new record (fresh UUID v7 id) with the given field values, offline.
    pub fn create(
        &mut self,
        kind: &str,
        campaign: Uuid,
        scope: &str,
        fields: &[(&str, FieldValue)],
    ) -> Result<Uuid> {
        let header = RecordHeader {
            id: new_record_id(),
            kind: kind.into(),
            campaign,
            scope: scope.into(),
        };
        self.create_with_header(&header, fields)?;
        Ok(header.id)
    }

    /// Creates the record with exactly this header (a singleton with a derived id, say) and the
    /// given values. If the store already has it, fails with [`StoreError::Exists`]; use
    /// [`Store::ensure`] for create-or-edit.
    pub fn create_with_header(
        &mut self,
        header: &RecordHeader,
        fields: &[(&str, FieldValue)],
    ) -> Result<()> {
        if self.exists(header.id)? {
            return Err(StoreError::Exists(header.id));
        }
        self.ensure(header, fields)
    }

    /// Creates the record if this store does not have it yet, then writes the given values into
    /// it. Two devices that `ensure` the same singleton offline end with one merged record.
    pub fn ensure(&mut self, header: &RecordHeader, fields: &[(&str, FieldValue)]) -> Result<()> {
        let tx = self.conn.transaction()?;
        ensure_in(&tx, &self.actor, header, fields)?;
        tx.commit()?;
        Ok(())
    }

    /// [`Store::ensure`] for many records in one transaction: all are written, or (on any
    /// error) none is.
    pub fn ensure_all(
        &mut self,
        records: &[(RecordHeader, Vec<(String, FieldValue)>)],
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        for (header, fields) in records {
            let fields: Vec<(&str, FieldValue)> = fields
                .iter()
                .map(|(k, v)| (k.as_str(), v.clone()))
                .collect();
            ensure_in(&tx, &self.actor, header, &fields)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Edits a record: `f` gets an editor whose writes become one change, saved with the
    /// record's projection in one transaction. If `f` fails, nothing is written.
    pub fn edit<T>(
        &mut self,
        id: Uuid,
        f: impl FnOnce(&mut Editor<'_, '_>) -> Result<T>,
    ) -> Result<T> {
        let tx = self.conn.transaction()?;
        let (_, mut doc) = load_record(&tx, id)?.ok_or(StoreError::NotFound(id))?;
        doc.set_actor(self.actor.clone());
        let fields = record::fields_obj(&doc)?;
        let mut t = doc.transaction();
        let out = {
            let mut editor = Editor {
                tx: &mut t,
                fields: &fields,
            };
            f(&mut editor)
        };
        let out = match out {
            Ok(v) => v,
            Err(e) => {
                t.rollback();
                return Err(e);
            }
        };
        let (hash, _) = t.commit_with(CommitOptions::default().with_time(now_ms()));
        if hash.is_some() {
            let change = doc
                .get_last_local_change()
                .expect("a committed change is the last local change");
            insert_change(&tx, id, &change, LOCAL)?;
            save_record(&tx, &doc)?;
            tx.commit()?;
        }
        Ok(out)
    }

    /// Sets one field.
    pub fn set(&mut self, id: Uuid, field: &str, value: FieldValue) -> Result<()> {
        self.edit(id, |e| e.set(field, &value))
    }

    /// Deletes a record: a tombstone that syncs like any edit. The record's history is kept.
    pub fn delete(&mut self, id: Uuid) -> Result<()> {
        self.edit(id, |e| e.mark_deleted(true))
    }

    /// Resolves a conflict on `field` by writing `value` over every concurrent value.
    pub fn resolve(&mut self, id: Uuid, field: &str, value: FieldValue) -> Result<()> {
        self.set(id, field, value)
    }

    // ----- reads ----------------------------------------------------------------------------

    /// Whether the store has a record with this id.
    pub fn exists(&self, id: Uuid) -> Result<bool> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM records WHERE id = ?1 AND ready = 1",
                [id.to_string()],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// One record's current state.
    pub fn get(&self, id: Uuid) -> Result<Record> {
        self.conn
            .query_row(
                "SELECT id, kind, campaign, scope, deleted, fields, conflicts, heads, updated_at
                 FROM records WHERE id = ?1 AND ready = 1",
                [id.to_string()],
                row_to_record,
            )
            .optional()?
            .ok_or(StoreError::NotFound(id))?
    }

    /// Records matching `filter`, newest first.
    pub fn list(&self, filter: &Filter) -> Result<Vec<Record>> {
        let mut sql = String::from(
            "SELECT id, kind, campaign, scope, deleted, fields, conflicts, heads, updated_at
             FROM records WHERE ready = 1",
        );
        let mut args: Vec<String> = Vec::new();
        if let Some(k) = &filter.kind {
            args.push(k.clone());
            sql.push_str(&format!(" AND kind = ?{}", args.len()));
        }
        if let Some(s) = &filter.scope {
            args.push(s.clone());
            sql.push_str(&format!(" AND scope = ?{}", args.len()));
        }
        if let Some(c) = &filter.campaign {
            args.push(c.to_string());
            sql.push_str(&format!(" AND campaign = ?{}", args.len()));
        }
        if let Some(t) = &filter.text {
            args.push(format!(
                "%{}%",
                t.replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            ));
            sql.push_str(&format!(" AND fields LIKE ?{} ESCAPE '\\'", args.len()));
        }
        if !filter.include_deleted {
            sql.push_str(" AND deleted = 0");
        }
        if filter.conflicted {
            sql.push_str(" AND conflicts > 0");
        }
        sql.push_str(" ORDER BY updated_at DESC, id");
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), row_to_record)?;
        rows.map(|r| r?).collect()
    }

    /// The fields of a record that hold conflicting values, with who wrote each and when.
    pub fn conflicts(&self, id: Uuid) -> Result<Vec<Conflict>> {
        let (_, doc) = load_record(&self.conn, id)?.ok_or(StoreError::NotFound(id))?;
        Ok(record::conflicts(&doc)?)
    }

    /// The record's whole Automerge document (for history and inspection).
    pub fn document(&self, id: Uuid) -> Result<Automerge> {
        Ok(load_record(&self.conn, id)?
            .ok_or(StoreError::NotFound(id))?
            .1)
    }

    /// How many changes wait to be uploaded.
    pub fn pending_upload(&self) -> Result<u64> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM changes WHERE acked = 0", [], |r| {
                r.get::<_, i64>(0)
            })? as u64)
    }

    /// How many changes are kept aside waiting for a change they depend on.
    pub fn waiting_for_dependencies(&self) -> Result<u64> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM changes WHERE applied = 0", [], |r| {
                r.get::<_, i64>(0)
            })? as u64)
    }

    /// The number of records (not deleted).
    pub fn count(&self) -> Result<u64> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM records WHERE ready = 1 AND deleted = 0",
            [],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }

    // ----- sync plumbing ----------------------------------------------------------------------

    /// The next batch of changes the server has not acknowledged, after local position
    /// `after_seq`, holding at most `max_bytes` of change bytes (at least one change).
    pub fn outbox_batch(&self, after_seq: i64, max_bytes: usize) -> Result<Option<OutboxBatch>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT c.seq, c.hash, c.record_id, c.bytes, r.kind, r.campaign, r.scope, c.actor,
                    c.tag
             FROM changes c JOIN records r ON r.id = c.record_id
             WHERE c.acked = 0 AND c.seq > ?1 ORDER BY c.seq LIMIT 500",
        )?;
        let scope = self.scope()?;
        let mut records: Vec<WireRecord> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut hashes = Vec::new();
        let mut owners = Vec::new();
        let mut bytes = 0usize;
        let mut last_seq = after_seq;
        let mut actors = std::collections::BTreeSet::new();
        let own: std::collections::HashSet<Vec<u8>> = self
            .actors()?
            .into_iter()
            .map(|a| a.to_bytes().to_vec())
            .collect();
        'outer: loop {
            let mut rows = stmt.query([last_seq])?;
            let mut any = false;
            while let Some(row) = rows.next()? {
                any = true;
                let change_bytes: Vec<u8> = row.get(3)?;
                let record_id: String = row.get(2)?;
                if !hashes.is_empty()
                    && (bytes + change_bytes.len() > max_bytes
                        || (records.len() >= MAX_PUSH_RECORDS && !index.contains_key(&record_id)))
                {
                    break 'outer;
                }
                last_seq = row.get(0)?;
                if let Some(scope) = &scope {
                    let campaign: String = row.get(5)?;
                    let place: String = row.get(6)?;
                    let kind: String = row.get(4)?;
                    if !scope.writes(&campaign, &place, &kind) {
                        // Held: outside what this device may upload now. Kept, never acked.
                        continue;
                    }
                }
                let hash: Vec<u8> = row.get(1)?;
                owners.push(record_id.clone());
                hashes.push(ChangeHash::try_from(hash.as_slice()).map_err(|e| {
                    StoreError::Damaged {
                        id: Uuid::nil(),
                        reason: format!("bad hash in change log: {e}"),
                    }
                })?);
                let actor: Vec<u8> = row.get(7)?;
                let tag: Option<Vec<u8>> = row.get(8)?;
                let is_own = own.contains(&actor);
                if is_own {
                    actors.insert(actor);
                }
                let i = *index.entry(record_id.clone()).or_insert_with(|| {
                    records.push(WireRecord {
                        id: record_id,
                        kind: row.get(4).unwrap_or_default(),
                        campaign: row.get(5).unwrap_or_default(),
                        scope: row.get(6).unwrap_or_default(),
                        changes: Vec::new(),
                        tags: Vec::new(),
                    });
                    records.len() - 1
                });
                bytes += change_bytes.len();
                let r = &mut records[i];
                r.changes.push(ByteBuf::from(change_bytes));
                match tag.filter(|_| !is_own) {
                    Some(t) => {
                        r.tags.resize(r.changes.len() - 1, ByteBuf::new());
                        r.tags.push(ByteBuf::from(t));
                    }
                    None if !r.tags.is_empty() => r.tags.push(ByteBuf::new()),
                    None => {}
                }
            }
            if !any {
                break;
            }
        }
        if hashes.is_empty() {
            return Ok(None);
        }
        Ok(Some(OutboxBatch {
            request: PushRequest {
                v: PROTOCOL_VERSION,
                device: self.device.to_string(),
                actors: actors.into_iter().map(ByteBuf::from).collect(),
                records,
            },
            hashes,
            owners,
            last_seq,
            bytes,
        }))
    }

    /// Marks changes as acknowledged by the server after this device pushed them.
    pub fn mark_pushed(&mut self, hashes: &[ChangeHash]) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt =
                tx.prepare_cached("UPDATE changes SET acked = 1, pushed = 1 WHERE hash = ?1")?;
            for h in hashes {
                stmt.execute([h.0.as_slice()])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// How many changes this device pushed and had acknowledged.
    /// Changes dropped with records this device may no longer see count as remembered: the
    /// server still holds them, and this device did not lose them by accident.
    pub fn pushed_count(&self) -> Result<u64> {
        let kept =
            self.conn
                .query_row("SELECT count(*) FROM changes WHERE pushed = 1", [], |r| {
                    r.get::<_, i64>(0)
                })? as u64;
        let dropped: u64 = self
            .meta("pushed_dropped")?
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok(kept + dropped)
    }

    // ----- accounts ---------------------------------------------------------------------------

    /// The server address and device token this store was enrolled with.
    pub fn credentials(&self) -> Result<Option<(String, String)>> {
        Ok(
            match (self.meta("server_url")?, self.meta("device_token")?) {
                (Some(url), Some(token)) => Some((url, token)),
                _ => None,
            },
        )
    }

    /// Remembers the server and the device token (after enrollment).
    pub fn set_credentials(&mut self, server: &str, token: &str) -> Result<()> {
        let tx = self.conn.transaction()?;
        set_meta(&tx, "server_url", server)?;
        set_meta(&tx, "device_token", token)?;
        tx.commit()?;
        Ok(())
    }

    /// What the server last said this device may see and write (`None` before the first sync
    /// with an account).
    pub fn scope(&self) -> Result<Option<WireScope>> {
        Ok(self
            .meta("scope")?
            .and_then(|s| serde_json::from_str(&s).ok()))
    }

    /// Changes waiting to upload that this device may not upload now (their village is no
    /// longer assigned to it). They are kept; export them as a bundle for someone who may.
    pub fn held_changes(&self) -> Result<u64> {
        let Some(scope) = self.scope()? else {
            return Ok(0);
        };
        let mut stmt = self.conn.prepare(
            "SELECT r.campaign, r.scope, r.kind, count(*)
             FROM changes c JOIN records r ON r.id = c.record_id
             WHERE c.acked = 0 GROUP BY r.campaign, r.scope, r.kind",
        )?;
        let mut held = 0u64;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        for row in rows {
            let (campaign, place, kind, n) = row?;
            if !scope.writes(&campaign, &place, &kind) {
                held += n as u64;
            }
        }
        Ok(held)
    }

    /// Applies the scope the server sent: records this device may no longer see are removed,
    /// except those holding changes not yet uploaded (nothing unsynced is ever dropped).
    pub fn apply_scope(&mut self, scope: &WireScope) -> Result<ScopeChange> {
        let old = self.scope()?;
        if old.as_ref() == Some(scope) {
            return Ok(ScopeChange::default());
        }
        let grew = match &old {
            None => false,
            Some(old) => {
                if old.all {
                    false
                } else if scope.all {
                    true
                } else {
                    scope.campaign != old.campaign
                        || scope.places.iter().any(|p| !old.places.contains(p))
                }
            }
        };
        let tx = self.conn.transaction()?;
        let mut change = ScopeChange {
            grew,
            ..Default::default()
        };
        if !scope.all {
            let candidates: Vec<(String, String, String, i64)> = {
                let mut stmt = tx.prepare(
                    "SELECT r.id, r.campaign, r.scope,
                            (SELECT count(*) FROM changes c WHERE c.record_id = r.id AND c.acked = 0)
                     FROM records r",
                )?;
                let rows =
                    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let mut dropped_pushed = 0i64;
            for (id, campaign, place, unsynced) in candidates {
                if scope.sees(&campaign, &place) {
                    continue;
                }
                if unsynced > 0 {
                    change.kept_unsynced += 1;
                    continue;
                }
                dropped_pushed += tx.query_row(
                    "SELECT count(*) FROM changes WHERE record_id = ?1 AND pushed = 1",
                    [&id],
                    |r| r.get::<_, i64>(0),
                )?;
                tx.execute("DELETE FROM changes WHERE record_id = ?1", [&id])?;
                tx.execute("DELETE FROM records WHERE id = ?1", [&id])?;
                change.removed += 1;
            }
            if dropped_pushed > 0 {
                let before: i64 = tx
                    .query_row(
                        "SELECT value FROM meta WHERE key = 'pushed_dropped'",
                        [],
                        |r| r.get::<_, String>(0),
                    )
                    .optional()?
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                set_meta(
                    &tx,
                    "pushed_dropped",
                    &(before + dropped_pushed).to_string(),
                )?;
            }
        }
        set_meta(
            &tx,
            "scope",
            &serde_json::to_string(scope).expect("a scope serializes"),
        )?;
        tx.commit()?;
        if change.removed > 0 || change.kept_unsynced > 0 {
            tracing::info!(
                removed = change.removed,
                kept = change.kept_unsynced,
                "scope changed: records outside it removed"
            );
        }
        Ok(change)
    }

    /// Erases everything: records, changes, credentials, settings. The store becomes a new
    /// device (new device id, new actor). Used when the server says this device was revoked.
    pub fn wipe(&mut self) -> Result<()> {
        let tx = self.conn.transaction()?;
        for table in ["changes", "records", "actors", "meta"] {
            tx.execute(&format!("DELETE FROM {table}"), [])?;
        }
        let (device, actor) = identity(&tx)?;
        tx.commit()?;
        // Free the pages, so the erased data does not linger in the file.
        let _ = self.conn.execute_batch("VACUUM");
        self.device = device;
        self.actor = actor;
        Ok(())
    }

    /// The tag of one of this device's own changes, if the store is enrolled.
    pub(crate) fn own_tag(&self, actor: &[u8], hash: &[u8]) -> Result<Option<Vec<u8>>> {
        let Some((_, token)) = self.credentials()? else {
            return Ok(None);
        };
        let Ok(hash) = <[u8; 32]>::try_from(hash) else {
            return Ok(None);
        };
        let key = fieldsync_protocol::auth::mac_key(&token);
        Ok(Some(
            fieldsync_protocol::auth::change_tag(self.device, &key, actor, &hash).to_vec(),
        ))
    }

    /// Where this device is in the server's log.
    pub fn cursor(&self) -> Result<Cursor> {
        let seq = self
            .meta("cursor_seq")?
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let hash = self.meta("cursor_hash")?.and_then(|s| hex::decode(s).ok());
        Ok(Cursor { seq, hash })
    }

    /// Applies one pulled page and moves the cursor past it, in one transaction.
    pub fn apply_pull(&mut self, page: &PullResponse) -> Result<ApplyStats> {
        let mut work = Incoming::new(true);
        let records: Vec<&WireRecord> = page.records.iter().collect();
        self.prepare_incoming(&records, &mut work)?;
        work.merge()?;
        self.write_page(work, PageEnd::of(page))
    }

    /// Reads what the store has for `records` into `work` (see [`Incoming`]).
    pub(crate) fn prepare_incoming(
        &self,
        records: &[&WireRecord],
        work: &mut Incoming,
    ) -> Result<()> {
        prepare_incoming(&self.conn, records, work)
    }

    /// Writes a merged pull page and moves the cursor past it, in one transaction.
    pub(crate) fn write_page(&mut self, work: Incoming, end: PageEnd) -> Result<ApplyStats> {
        let tx = self.conn.transaction()?;
        let stats = write_incoming(&tx, work)?;
        set_meta(&tx, "cursor_seq", &end.next.to_string())?;
        match &end.next_hash {
            Some(h) => set_meta(&tx, "cursor_hash", &hex::encode(h))?,
            None => {
                tx.execute("DELETE FROM meta WHERE key = 'cursor_hash'", [])?;
            }
        }
        if let Some(epoch) = &end.epoch {
            set_meta(&tx, "server_epoch", epoch)?;
        }
        set_meta(&tx, "last_pull_at", &now_ms().to_string())?;
        tx.commit()?;
        Ok(stats)
    }

    /// Applies changes received from anywhere (a pull page, a bundle from another device).
    /// `acked` says whether the server is known to have them.
    pub fn apply_records(&mut self, records: &[WireRecord], acked: bool) -> Result<ApplyStats> {
        let tx = self.conn.transaction()?;
        let stats = apply_records(&tx, records, acked)?;
        tx.commit()?;
        Ok(stats)
    }

    /// Forgets what the server acknowledged: every change becomes unacknowledged and the cursor
    /// goes back to 0. Used when the server turns out to have lost its log (restored from a
    /// backup), so that this device re-pushes everything it has.
    pub fn forget_server_state(&mut self) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute("UPDATE changes SET acked = 0, pushed = 0", [])?;
        tx.execute(
            "DELETE FROM meta WHERE key IN ('cursor_seq', 'cursor_hash', 'server_epoch')",
            [],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The epoch of the server log this store's cursor points into, once it has pulled.
    pub fn server_epoch(&self) -> Result<Option<String>> {
        self.meta("server_epoch")
    }

    /// Moves the cursor back to 0 without touching acknowledgements (to pull everything again).
    pub fn rewind_cursor(&mut self) -> Result<()> {
        self.conn.execute(
            "DELETE FROM meta WHERE key IN ('cursor_seq', 'cursor_hash')",
            [],
        )?;
        Ok(())
    }

    /// When this device last completed a pull (ms since the Unix epoch).
    pub fn last_sync_at(&self) -> Result<Option<i64>> {
        Ok(self.meta("last_pull_at")?.and_then(|s| s.parse().ok()))
    }

    /// Every stored change after local log position `since`, oldest first, with its record's
    /// header (for bundles).
    pub(crate) fn change_rows(&self, since: i64) -> Result<Vec<ChangeRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT c.seq, c.hash, c.bytes, r.id, r.kind, r.campaign, r.scope, c.actor, c.tag
             FROM changes c JOIN records r ON r.id = c.record_id
             WHERE c.seq > ?1 ORDER BY c.seq",
        )?;
        let rows = stmt.query_map([since], |r| {
            Ok((
                (
                    r.get::<_, i64>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ),
                (
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                ),
                (r.get::<_, Vec<u8>>(7)?, r.get::<_, Option<Vec<u8>>>(8)?),
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let ((seq, hash, bytes), (id, kind, campaign, scope), (actor, tag)) = row?;
            out.push(ChangeRow {
                seq,
                hash,
                bytes,
                header: RecordHeader::parse(&id, &kind, &campaign, &scope)?,
                actor,
                tag,
            });
        }
        Ok(out)
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

/// Writes into one record inside [`Store::edit`]; all writes become one change.
pub struct Editor<'t, 'd> {
    tx: &'t mut automerge::transaction::Transaction<'d>,
    fields: &'t automerge::ObjId,
}

impl Editor<'_, '_> {
    /// Sets a field (a text value merges with concurrent edits of the same text).
    pub fn set(&mut self, field: &str, value: &FieldValue) -> Result<()> {
        record::put_field(self.tx, self.fields, field, value)?;
        Ok(())
    }

    /// Removes a field.
    pub fn remove(&mut self, field: &str) -> Result<()> {
        use automerge::transaction::Transactable;
        record::validate_field_name(field)?;
        self.tx.delete(self.fields, field)?;
        Ok(())
    }

    fn text_obj(&mut self, field: &str) -> Result<(automerge::ObjId, usize)> {
        use automerge::{ObjType, ReadDoc, Value};
        record::validate_field_name(field)?;
        match self.tx.get(self.fields, field)? {
            Some((Value::Object(ObjType::Text), id)) => {
                let len = self.tx.length(&id);
                Ok((id, len))
            }
            _ => Err(StoreError::NotText(field.into())),
        }
    }

    /// Replaces `delete` characters at character position `pos` of a text field with `insert`.
    /// Positions count Unicode characters (code points), so `你好` has length 2.
    pub fn splice_text(
        &mut self,
        field: &str,
        pos: usize,
        delete: usize,
        insert: &str,
    ) -> Result<()> {
        use automerge::transaction::Transactable;
        let (id, len) = self.text_obj(field)?;
        if pos > len || pos + delete > len {
            return Err(StoreError::TextRange {
                field: field.into(),
                pos: pos + delete,
                len,
            });
        }
        self.tx.splice_text(&id, pos, delete as isize, insert)?;
        Ok(())
    }

    /// Appends to a text field, creating it if the record does not have it yet.
    pub fn append_text(&mut self, field: &str, text: &str) -> Result<()> {
        use automerge::transaction::Transactable;
        match self.text_obj(field) {
            Ok((id, len)) => {
                self.tx.splice_text(&id, len, 0, text)?;
                Ok(())
            }
            Err(StoreError::NotText(_)) => self.set(field, &FieldValue::Text(text.into())),
            Err(e) => Err(e),
        }
    }

    /// Sets or clears the tombstone.
    pub fn mark_deleted(&mut self, deleted: bool) -> Result<()> {
        use automerge::transaction::Transactable;
        self.tx.put(ROOT, record::DELETED_KEY, deleted)?;
        Ok(())
    }
}

fn row_to_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Record>> {
    let id: String = r.get(0)?;
    let kind: String = r.get(1)?;
    let campaign: String = r.get(2)?;
    let scope: String = r.get(3)?;
    let deleted: bool = r.get(4)?;
    let fields: String = r.get(5)?;
    let conflicts: i64 = r.get(6)?;
    let heads: String = r.get(7)?;
    let updated_at: i64 = r.get(8)?;
    Ok((|| {
        let header = RecordHeader::parse(&id, &kind, &campaign, &scope)?;
        let damaged = |reason: String| StoreError::Damaged {
            id: header.id,
            reason,
        };
        let json: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&fields).map_err(|e| damaged(e.to_string()))?;
        let fields = json
            .iter()
            .map(|(k, v)| Ok((k.clone(), FieldValue::from_json(k, v)?)))
            .collect::<Result<BTreeMap<_, _>>>()?;
        let heads = serde_json::from_str(&heads).map_err(|e| damaged(e.to_string()))?;
        Ok(Record {
            header,
            deleted,
            fields,
            conflicts: conflicts as usize,
            heads,
            updated_at,
        })
    })())
}

/// Loads a record's header and document. `None` when the store has no ready record of that id.
fn load_record(conn: &Connection, id: Uuid) -> Result<Option<(RecordHeader, Automerge)>> {
    let row = conn
        .query_row(
            "SELECT kind, campaign, scope, doc FROM records WHERE id = ?1 AND ready = 1",
            [id.to_string()],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                ))
            },
        )
        .optional()?;
    let Some((kind, campaign, scope, bytes)) = row else {
        return Ok(None);
    };
    let header = RecordHeader::parse(&id.to_string(), &kind, &campaign, &scope)?;
    let doc = record::load_doc(&bytes).map_err(|e| StoreError::Damaged {
        id,
        reason: e.to_string(),
    })?;
    Ok(Some((header, doc)))
}

/// The typed JSON the projection column stores: texts as `{"text": ...}` so they read back as
/// texts.
fn typed_fields_json(p: &Projection) -> String {
    let map: serde_json::Map<String, serde_json::Value> = p
        .fields
        .iter()
        .map(|(k, v)| {
            let j = match v {
                FieldValue::Text(s) => serde_json::json!({ "text": s }),
                other => other.to_json(),
            };
            (k.clone(), j)
        })
        .collect();
    serde_json::Value::Object(map).to_string()
}

/// Saves a record's document and projection (the document must hold its genesis).
fn save_record(tx: &Transaction<'_>, doc: &Automerge) -> Result<()> {
    let p = record::project(doc)?;
    write_projection(tx, &p, &doc.save(), now_ms())
}

fn write_projection(tx: &Transaction<'_>, p: &Projection, doc: &[u8], now: i64) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO records (id, kind, campaign, scope, doc, ready, fields, deleted, conflicts,
                              heads, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (id) DO UPDATE SET doc = ?5, ready = 1, fields = ?6, deleted = ?7,
             conflicts = ?8, heads = ?9, updated_at = ?10",
    )?
    .execute(params![
        p.header.id.to_string(),
        p.header.kind,
        p.header.campaign.to_string(),
        p.header.scope,
        doc,
        typed_fields_json(p),
        p.deleted,
        p.conflicts as i64,
        serde_json::to_string(&p.heads).unwrap_or_else(|_| "[]".into()),
        now,
    ])?;
    Ok(())
}

/// Flags of a change being added to the log.
#[derive(Clone, Copy)]
struct ChangeFlags {
    local: bool,
    acked: bool,
    applied: bool,
}

fn insert_change(
    tx: &Transaction<'_>,
    record: Uuid,
    change: &Change,
    ChangeFlags {
        local,
        acked,
        applied,
    }: ChangeFlags,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO changes (hash, record_id, actor, bytes, local, acked, applied, seen_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        change.hash().0.as_slice(),
        record.to_string(),
        change.actor_id().to_bytes(),
        change.raw_bytes(),
        local,
        acked,
        applied,
        now_ms()
    ])?;
    Ok(())
}

const LOCAL: ChangeFlags = ChangeFlags {
    local: true,
    acked: false,
    applied: true,
};

/// Creates the record if missing and writes `fields` into it, inside `tx`.
fn ensure_in(
    tx: &Transaction<'_>,
    actor: &ActorId,
    header: &RecordHeader,
    fields: &[(&str, FieldValue)],
) -> Result<()> {
    header.validate()?;
    for (name, _) in fields {
        record::validate_field_name(name)?;
    }
    let existing = load_record(tx, header.id)?;
    let (mut doc, mut new_changes) = match existing {
        Some((have, doc)) => {
            if have != *header {
                return Err(StoreError::HeaderMismatch {
                    id: header.id,
                    have: Box::new(have),
                    got: Box::new(header.clone()),
                });
            }
            (doc, Vec::new())
        }
        None => {
            let (doc, genesis) = record::genesis_change(header)?;
            let genesis = Change::try_from(genesis.as_slice())
                .map_err(|e| StoreError::Record(RecordError::Automerge(e.to_string())))?;
            (doc, vec![genesis])
        }
    };
    doc.set_actor(actor.clone());
    if !fields.is_empty() {
        let fields_obj = record::fields_obj(&doc)?;
        let mut t = doc.transaction();
        for (name, value) in fields {
            record::put_field(&mut t, &fields_obj, name, value)?;
        }
        // Writing values the record already holds commits nothing: then there is no new
        // change (and the last local change is an old one that is already stored).
        let (hash, _) = t.commit_with(CommitOptions::default().with_time(now_ms()));
        if hash.is_some() {
            new_changes.push(
                doc.get_last_local_change()
                    .expect("a committed change is the last local change"),
            );
        }
    }
    if new_changes.is_empty() {
        return Ok(());
    }
    for change in &new_changes {
        insert_change(tx, header.id, change, LOCAL)?;
    }
    save_record(tx, &doc)?;
    Ok(())
}

fn set_meta(tx: &Transaction<'_>, key: &str, value: &str) -> Result<()> {
    tx.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = ?2",
        params![key, value],
    )?;
    Ok(())
}

/// A received record after its changes have been checked, with what the store already has.
struct Prepared {
    header: RecordHeader,
    /// Changes this store does not have yet: their position in the record's list and bytes,
    /// decoded and verified during the merge.
    fresh: Vec<(usize, Vec<u8>)>,
    /// Earlier changes of the record still waiting for their dependencies.
    waiting: Vec<Change>,
    /// The stored document, if the store has one.
    doc: Option<Vec<u8>>,
}

/// A prepared record after merging (the CPU-heavy part, done in parallel).
struct Merged {
    header: RecordHeader,
    /// Each fresh change and whether it could be applied.
    fresh: Vec<(Change, bool)>,
    /// Hashes of waiting changes that could now be applied.
    now_applied: Vec<ChangeHash>,
    /// What to store, when anything changed.
    result: Option<MergeResult>,
}

struct MergeResult {
    doc: Vec<u8>,
    projection: Option<Projection>,
}

fn merge_prepared(p: Prepared) -> Result<Merged> {
    let Prepared {
        header,
        fresh,
        waiting,
        doc: stored,
    } = p;
    let fresh = fresh
        .into_iter()
        .map(|(index, bytes)| {
            inspect_change(&bytes)
                .map(|info| info.change)
                .map_err(|source| StoreError::BadChange {
                    record: header.id.to_string(),
                    index,
                    source,
                })
        })
        .collect::<Result<Vec<Change>>>()?;
    let was_empty = stored.is_none();
    let mut doc = match &stored {
        Some(bytes) => record::load_doc(bytes).map_err(|e| StoreError::Damaged {
            id: header.id,
            reason: e.to_string(),
        })?,
        None => record::new_doc(),
    };
    let before = doc.get_heads();
    doc.apply_changes(
        fresh
            .iter()
            .chain(waiting.iter())
            .cloned()
            .collect::<Vec<_>>(),
    )?;
    let fresh: Vec<(Change, bool)> = fresh
        .into_iter()
        .map(|c| {
            let applied = doc.get_change_meta_by_hash(&c.hash()).is_some();
            (c, applied)
        })
        .collect();
    let now_applied: Vec<ChangeHash> = waiting
        .iter()
        .map(Change::hash)
        .filter(|h| doc.get_change_meta_by_hash(h).is_some())
        .collect();
    let result = if doc.get_heads() == before && !was_empty {
        None
    } else {
        let doc_bytes = if was_empty {
            // A record new to this store: its applied change chunks, in an order where every
            // change follows its dependencies, load as its document. Skips re-encoding it.
            let mut bytes = Vec::new();
            let applied: Vec<&Change> = fresh
                .iter()
                .filter(|(_, a)| *a)
                .map(|(c, _)| c)
                .chain(waiting.iter().filter(|c| now_applied.contains(&c.hash())))
                .collect();
            for c in topological(&applied) {
                bytes.extend_from_slice(c.raw_bytes());
            }
            bytes
        } else {
            doc.save()
        };
        Some(MergeResult {
            doc: doc_bytes,
            projection: record::project(&doc).ok(),
        })
    };
    Ok(Merged {
        header,
        fresh,
        now_applied,
        result,
    })
}

/// Orders changes so that each comes after those of its dependencies that are in the list.
fn topological<'a>(changes: &[&'a Change]) -> Vec<&'a Change> {
    let mut out: Vec<&Change> = Vec::with_capacity(changes.len());
    let mut placed = std::collections::HashSet::new();
    let mut rest: Vec<&Change> = changes.to_vec();
    let in_list: std::collections::HashSet<ChangeHash> = changes.iter().map(|c| c.hash()).collect();
    while !rest.is_empty() {
        let before = rest.len();
        rest.retain(|c| {
            let ready = c
                .deps()
                .iter()
                .all(|d| !in_list.contains(d) || placed.contains(d));
            if ready {
                placed.insert(c.hash());
                out.push(*c);
            }
            !ready
        });
        if rest.len() == before {
            out.append(&mut rest); // a cycle cannot happen with hashes; keep everything anyway
        }
    }
    out
}

/// Received records on their way into the store, in three steps so that a sync can merge one
/// pull page while it writes the previous one: [`prepare_incoming`] reads what the store has,
/// [`merge_incoming`] does Automerge's work without touching the store, and
/// [`write_incoming`] writes everything in one transaction.
pub(crate) struct Incoming {
    /// Whether the server is known to have these changes (a pull page, not a bundle).
    acked: bool,
    stats: ApplyStats,
    /// Hashes of the new changes seen so far (one change sent twice is stored once).
    seen: std::collections::HashSet<ChangeHash>,
    /// Relay tags received with new changes.
    tags: HashMap<ChangeHash, Vec<u8>>,
    /// Changes the store already has, to mark acknowledged.
    known: Vec<ChangeHash>,
    /// Records read and waiting to be merged.
    prepared: Vec<Prepared>,
    /// Records merged and waiting to be written.
    merged: Vec<Merged>,
}

impl Incoming {
    pub(crate) fn new(acked: bool) -> Self {
        Incoming {
            acked,
            stats: ApplyStats::default(),
            seen: Default::default(),
            tags: HashMap::new(),
            known: Vec::new(),
            prepared: Vec::new(),
            merged: Vec::new(),
        }
    }

    /// The records merged and not yet written.
    pub(crate) fn merged_ids(&self) -> std::collections::HashSet<String> {
        self.merged
            .iter()
            .map(|m| m.header.id.to_string())
            .collect()
    }

    /// Merges what was prepared (the CPU-heavy step; reads nothing from the store).
    pub(crate) fn merge(&mut self) -> Result<()> {
        let prepared = std::mem::take(&mut self.prepared);
        self.merged.extend(merge_incoming(prepared)?);
        Ok(())
    }
}

/// Step 1: checks every change of `records` by hash against the store and reads, for each record
/// with new changes, its stored document and the changes still waiting for dependencies.
/// Reads only. The records must not be waiting in another unwritten [`Incoming`].
fn prepare_incoming(conn: &Connection, records: &[&WireRecord], work: &mut Incoming) -> Result<()> {
    for wire in records {
        let header = wire.header()?;
        let id_str = header.id.to_string();
        let mut fresh = Vec::new();
        for (index, bytes) in wire.changes.iter().enumerate() {
            // Deduplicate by hash without decoding; the merge decodes and verifies what is new.
            let hash = match fieldsync_protocol::quick_hash(bytes) {
                Some(h) => h,
                None => {
                    inspect_change(bytes)
                        .map_err(|source| StoreError::BadChange {
                            record: wire.id.clone(),
                            index,
                            source,
                        })?
                        .hash
                }
            };
            let known = conn
                .prepare_cached("SELECT 1 FROM changes WHERE hash = ?1")?
                .query_row([hash.0.as_slice()], |_| Ok(()))
                .optional()?
                .is_some();
            if known {
                work.stats.known_changes += 1;
                if work.acked {
                    work.known.push(hash);
                }
            } else if work.seen.insert(hash) {
                if let Some(tag) = wire.tags.get(index).filter(|t| !t.is_empty()) {
                    work.tags.insert(hash, tag.to_vec());
                }
                fresh.push((index, bytes.to_vec()));
            }
        }
        if fresh.is_empty() {
            continue;
        }
        work.stats.new_changes += fresh.len() as u64;
        let row: Option<(String, String, String, Vec<u8>)> = conn
            .prepare_cached("SELECT kind, campaign, scope, doc FROM records WHERE id = ?1")?
            .query_row([&id_str], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?;
        let doc = match row {
            Some((kind, campaign, scope, doc)) => {
                let have = RecordHeader::parse(&id_str, &kind, &campaign, &scope)?;
                if have != header {
                    return Err(StoreError::HeaderMismatch {
                        id: header.id,
                        have: Box::new(have),
                        got: Box::new(header),
                    });
                }
                Some(doc)
            }
            None => None,
        };
        let mut waiting = Vec::new();
        {
            let mut stmt = conn
                .prepare_cached("SELECT bytes FROM changes WHERE record_id = ?1 AND applied = 0")?;
            for bytes in stmt.query_map([&id_str], |r| r.get::<_, Vec<u8>>(0))? {
                if let Ok(info) = inspect_change(&bytes?) {
                    waiting.push(info.change);
                }
            }
        }
        work.prepared.push(Prepared {
            header,
            fresh,
            waiting,
            doc,
        });
    }
    Ok(())
}

/// Step 2: merges prepared records on as many threads as there are cores (records are
/// independent).
fn merge_incoming(prepared: Vec<Prepared>) -> Result<Vec<Merged>> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(prepared.len().div_ceil(16).max(1));
    let merged: Vec<Result<Merged>> = if threads <= 1 {
        prepared.into_iter().map(merge_prepared).collect()
    } else {
        let chunk = prepared.len().div_ceil(threads);
        let mut chunks: Vec<Vec<Prepared>> = Vec::new();
        let mut it = prepared.into_iter().peekable();
        while it.peek().is_some() {
            chunks.push(it.by_ref().take(chunk).collect());
        }
        std::thread::scope(|scope| {
            let handles: Vec<_> = chunks
                .into_iter()
                .map(|c| scope.spawn(move || c.into_iter().map(merge_prepared).collect::<Vec<_>>()))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("merge thread panicked"))
                .collect()
        })
    };
    merged.into_iter().collect()
}

/// Step 3: stores the new changes (applied or waiting), the merged documents and their
/// projections inside `tx`.
fn write_incoming(tx: &Transaction<'_>, work: Incoming) -> Result<ApplyStats> {
    let Incoming {
        acked,
        mut stats,
        tags,
        known,
        prepared,
        merged,
        ..
    } = work;
    debug_assert!(prepared.is_empty(), "prepared records were not merged");
    for hash in &known {
        tx.prepare_cached("UPDATE changes SET acked = 1 WHERE hash = ?1")?
            .execute([hash.0.as_slice()])?;
    }
    let now = now_ms();
    for m in merged {
        let id = m.header.id;
        for (change, applied) in &m.fresh {
            if !applied {
                stats.waiting += 1;
            }
            let flags = ChangeFlags {
                local: false,
                acked,
                applied: *applied,
            };
            insert_change(tx, id, change, flags)?;
            if let Some(tag) = tags.get(&change.hash()) {
                tx.prepare_cached("UPDATE changes SET tag = ?2 WHERE hash = ?1")?
                    .execute(params![change.hash().0.as_slice(), tag])?;
            }
        }
        for hash in &m.now_applied {
            tx.prepare_cached("UPDATE changes SET applied = 1 WHERE hash = ?1")?
                .execute([hash.0.as_slice()])?;
        }
        let Some(result) = m.result else { continue };
        stats.records_changed += 1;
        match &result.projection {
            Some(p) => write_projection(tx, p, &result.doc, now)?,
            None => {
                // No genesis yet (its changes are waiting): keep the header so the record's
                // changes can be pushed on, but do not show it.
                tx.prepare_cached(
                    "INSERT INTO records (id, kind, campaign, scope, doc, ready, fields, deleted,
                                          conflicts, heads, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, 0, '{}', 0, 0, '[]', ?6)
                     ON CONFLICT (id) DO UPDATE SET doc = ?5",
                )?
                .execute(params![
                    id.to_string(),
                    m.header.kind,
                    m.header.campaign.to_string(),
                    m.header.scope,
                    result.doc,
                    now
                ])?;
            }
        }
    }
    Ok(stats)
}

/// Applies received records inside `tx`: new changes are checked, stored, and merged into the
/// record's document together with any earlier changes that were waiting for them; changes whose
/// dependencies are still missing are stored and wait.
fn apply_records(tx: &Transaction<'_>, records: &[WireRecord], acked: bool) -> Result<ApplyStats> {
    let mut work = Incoming::new(acked);
    let records: Vec<&WireRecord> = records.iter().collect();
    prepare_incoming(tx, &records, &mut work)?;
    work.merge()?;
    write_incoming(tx, work)
}
