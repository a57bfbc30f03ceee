//! The SQLite storage: one writer thread owns every write (pushes and merging), reads run on a
//! small pool of read connections inside `spawn_blocking`.
//!
//! The change log (`changes`) is the truth: a push is acknowledged once its checked changes are
//! committed there. Merging them into each record's document and projection (`records`) happens
//! afterwards on the same writer thread, between pushes, so acknowledging never waits for
//! Automerge. Because one connection does every write, log sequence numbers become visible in
//! commit order: a reader never sees sequence 9 after it has already seen 10.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use automerge::{Change, ChangeHash};
use fieldsync_protocol::{
    FieldValue, Projection, RecordHeader,
    migrate::{Migration, migrate},
    record::{self, Conflict},
    template::{FORM_VERSION_FIELD, Problem, ProblemCode, RefPolicy, TEMPLATE_KIND, Template},
    wire::WireRecord,
};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_bytes::ByteBuf;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::{
    AuditEntry, AuditFilter, CheckedPush, DeviceView, NewEnrollment, Person, PersonUpdate,
    PullPage, PullRequest, PushOutcome, RecordFilter, RecordView, Storage, StorageError,
    StoreStatus, TokenCheck, Visibility, accounts, visible,
};

const MIGRATIONS: &[Migration] = &[
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

/// How many records one merge transaction handles before the writer looks for pushes again.
const MERGE_CHUNK: usize = 64;
/// How long merging waits after the last push or pull before it starts.
const MERGE_QUIET: Duration = Duration::from_millis(250);
/// The longest merging is postponed by continuing sync traffic.
const MERGE_MAX_DELAY: Duration = Duration::from_secs(5);
/// While a long merge runs, how often [`Storage::data_version`] moves (it also moves whenever
/// merging has caught up).
const VERSION_INTERVAL: Duration = Duration::from_secs(2);
/// How long after an administrator declares the server restored untagged relays are accepted
/// (7 days).
const RECOVERY_WINDOW_MS: i64 = 7 * 24 * 3_600_000;
/// Most rows scanned for one pull page.
const PAGE_ROWS: usize = 20_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn other<E: std::fmt::Display>(e: E) -> StorageError {
    StorageError::Other(e.to_string())
}

enum Command {
    Push(
        CheckedPush,
        oneshot::Sender<Result<PushOutcome, StorageError>>,
    ),
    PulledBy(Uuid),
    /// Any other write, run on the writer's connection.
    Run(Box<dyn FnOnce(&mut Connection) + Send>),
    Flush(oneshot::Sender<()>),
}

/// A tiny pool of read-only connections.
struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReadPool {
    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let conn = self.idle.lock().expect("pool lock").pop();
        let mut conn = match conn {
            Some(c) => c,
            None => open_connection(&self.path, true)?,
        };
        let out = f(&mut conn);
        let mut idle = self.idle.lock().expect("pool lock");
        if idle.len() < 8 {
            idle.push(conn);
        }
        out
    }
}

fn open_connection(path: &Path, read_only: bool) -> Result<Connection, StorageError> {
    let flags = if read_only {
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        rusqlite::OpenFlags::default()
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    if !read_only {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // NORMAL in WAL mode: a committed transaction survives the process being killed; only an
        // OS crash or power loss can roll back the last commits.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
    }
    Ok(conn)
}

/// The SQLite storage. Cheap to clone the `Arc` it lives in; drop after [`Storage::close`].
pub struct SqliteStorage {
    commands: mpsc::Sender<Command>,
    /// Bumped by the writer after every merge that changed records.
    version: Arc<std::sync::atomic::AtomicU64>,
    writer: Mutex<Option<JoinHandle<()>>>,
    readers: Arc<ReadPool>,
}

impl SqliteStorage {
    /// Opens (creating if needed) the database `fieldsync.sqlite3` in `dir`, brings its schema up
    /// to date and starts the writer thread.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        Self::open_with(dir, true)
    }

    /// Opens the storage for administration beside a running server: it never merges records
    /// (the server does), so the two do not compete for the write lock.
    pub fn open_for_admin(dir: &Path) -> Result<Self, StorageError> {
        Self::open_with(dir, false)
    }

    fn open_with(dir: &Path, merge: bool) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StorageError::Other(format!(
                "cannot create data directory {}: {e}",
                dir.display()
            ))
        })?;
        let path = dir.join("fieldsync.sqlite3");
        let mut conn = open_connection(&path, false)?;
        migrate(&mut conn, MIGRATIONS).map_err(other)?;
        conn.execute(
            "INSERT OR IGNORE INTO server_meta (key, value) VALUES ('log_id', ?1)",
            [Uuid::new_v4().to_string()],
        )?;
        let (tx, rx) = mpsc::channel();
        let version = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let writer_version = version.clone();
        let writer = std::thread::Builder::new()
            .name("fieldsync-writer".into())
            .spawn(move || {
                Writer {
                    conn,
                    merge,
                    version: writer_version,
                    unannounced: false,
                    announced_at: Instant::now(),
                    templates: TemplateCache::default(),
                }
                .run(rx)
            })
            .map_err(other)?;
        Ok(SqliteStorage {
            commands: tx,
            version,
            writer: Mutex::new(Some(writer)),
            readers: Arc::new(ReadPool {
                path,
                idle: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Runs `f` on the writer thread's connection and waits for its result.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Run(Box::new(move |conn| {
                let _ = tx.send(f(conn));
            })))
            .map_err(|_| StorageError::Other("the writer thread has stopped".into()))?;
        rx.await
            .map_err(|_| StorageError::Other("the writer thread dropped a request".into()))?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || pool.with(f))
            .await
            .map_err(other)?
    }
}

struct Writer {
    conn: Connection,
    /// Whether this writer merges records (not when opened for administration).
    merge: bool,
    /// See [`Storage::data_version`].
    version: Arc<std::sync::atomic::AtomicU64>,
    /// Records merged since `version` last moved.
    unannounced: bool,
    /// When `version` last moved.
    announced_at: Instant,
    /// Parsed template versions per campaign, dropped whenever a template record is merged.
    templates: TemplateCache,
}

/// Parsed template versions per campaign (oldest first), loaded on first use.
#[derive(Default)]
struct TemplateCache {
    by_campaign: std::collections::HashMap<String, Arc<Vec<Template>>>,
}

impl TemplateCache {
    fn for_campaign(
        &mut self,
        conn: &Connection,
        campaign: &str,
    ) -> Result<Arc<Vec<Template>>, StorageError> {
        if let Some(t) = self.by_campaign.get(campaign) {
            return Ok(t.clone());
        }
        let mut stmt = conn.prepare_cached(
            "SELECT fields FROM records
             WHERE kind = ?1 AND campaign = ?2 AND deleted = 0 AND fields IS NOT NULL",
        )?;
        let mut out: Vec<Template> = stmt
            .query_map(params![TEMPLATE_KIND, campaign], |r| r.get::<_, String>(0))?
            .filter_map(|f| {
                let fields: serde_json::Value = serde_json::from_str(&f.ok()?).ok()?;
                Template::parse(fields.get("source")?.as_str()?).ok()
            })
            .collect();
        out.sort_by_key(|t| t.version);
        let out = Arc::new(out);
        self.by_campaign.insert(campaign.to_string(), out.clone());
        Ok(out)
    }
}

/// Keeps the full-text index of a record's words (every text field; not templates).
fn index_text(
    tx: &Transaction<'_>,
    id: &str,
    campaign: &str,
    kind: &str,
    p: &Projection,
) -> Result<(), StorageError> {
    // The index shares the record's rowid: FTS5 deletes by rowid without a scan (its `id`
    // column is not indexed).
    let rowid: i64 = tx
        .prepare_cached("SELECT rowid FROM records WHERE id = ?1")?
        .query_row([id], |r| r.get(0))?;
    tx.prepare_cached("DELETE FROM records_fts WHERE rowid = ?1")?
        .execute([rowid])?;
    if p.deleted || kind == TEMPLATE_KIND {
        return Ok(());
    }
    let text: Vec<&str> = p
        .fields
        .iter()
        .filter(|(k, _)| !k.starts_with('_'))
        .filter_map(|(_, v)| match v {
            FieldValue::Text(s) => Some(s.as_str()),
            FieldValue::Str(s) if searchable(s) => Some(s.as_str()),
            _ => None,
        })
        .collect();
    tx.prepare_cached(
        "INSERT INTO records_fts (rowid, id, campaign, kind, text) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![rowid, id, campaign, kind, text.join("\n")])?;
    Ok(())
}

/// Whether a short value is words people would search for, rather than a reference (record ids)
/// or a choice's stored value (`villager_rep`, `party_member,villager_rep`), which only clutter
/// snippets.
fn searchable(s: &str) -> bool {
    let machine = s.split(',').all(|part| {
        let part = part.trim();
        Uuid::parse_str(part).is_ok()
            || (!part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
    });
    !machine
}

/// Checks a merged record against its campaign's template: `None` when it passes (or the
/// campaign has no template), else the problems as JSON. Never stops the record being stored.
fn review(
    tx: &Transaction<'_>,
    cache: &mut TemplateCache,
    p: &Projection,
) -> Result<Option<String>, StorageError> {
    let problems = |list: Vec<Problem>| serde_json::to_string(&list).map(Some).map_err(other);
    if p.deleted {
        return Ok(None);
    }
    if p.header.kind == TEMPLATE_KIND {
        let source = match p.fields.get("source") {
            Some(FieldValue::Str(s)) => s.clone(),
            _ => String::new(),
        };
        return match Template::parse(&source) {
            Ok(_) => Ok(None),
            Err(e) => problems(vec![Problem {
                field: "source".into(),
                code: ProblemCode::BadTemplate,
                zh: e.to_string(),
                en: e.to_string(),
            }]),
        };
    }
    let templates = cache.for_campaign(tx, &p.header.campaign.to_string())?;
    let Some(latest) = templates.last() else {
        return Ok(None);
    };
    let template = match p.fields.get(FORM_VERSION_FIELD) {
        Some(FieldValue::Int(v)) => match templates.iter().find(|t| i64::from(t.version) == *v) {
            Some(t) => t,
            None => {
                return problems(vec![Problem {
                    field: FORM_VERSION_FIELD.into(),
                    code: ProblemCode::UnknownVersion,
                    zh: format!("记录按模板第 {v} 版填写，服务器没有这一版"),
                    en: format!(
                        "written with template version {v}, which this server does not have"
                    ),
                }]);
            }
        },
        _ => latest,
    };
    let lookup = |id: Uuid| -> Option<String> {
        tx.prepare_cached("SELECT kind FROM records WHERE id = ?1 AND deleted = 0")
            .and_then(|mut s| s.query_row([id.to_string()], |r| r.get(0)).optional())
            .ok()
            .flatten()
    };
    match template.validate(&p.header.kind, &p.fields, &lookup, RefPolicy::IfKnown) {
        Ok(()) => Ok(None),
        Err(invalid) => problems(invalid.problems),
    }
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Command>) {
        let mut dirty = self.merge; // merge whatever a previous run left unmerged
        // Merging yields to sync traffic: it waits until no push or pull has come for
        // MERGE_QUIET, but never postpones for longer than MERGE_MAX_DELAY.
        let mut last_traffic = Instant::now() - MERGE_QUIET;
        let mut merge_due = Instant::now();
        loop {
            let command = if dirty {
                let now = Instant::now();
                let quiet_at = last_traffic + MERGE_QUIET;
                let wait = if now >= merge_due || now >= quiet_at {
                    Duration::ZERO
                } else {
                    quiet_at.min(merge_due) - now
                };
                match rx.recv_timeout(wait) {
                    Ok(c) => Some(c),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
            } else {
                match rx.recv() {
                    Ok(c) => Some(c),
                    Err(_) => return,
                }
            };
            match command {
                Some(Command::Push(push, reply)) => {
                    let result = self.push(push);
                    if self.merge && matches!(&result, Ok(o) if o.stored > 0) {
                        if !dirty {
                            merge_due = Instant::now() + MERGE_MAX_DELAY;
                        }
                        dirty = true;
                    }
                    last_traffic = Instant::now();
                    let _ = reply.send(result);
                }
                Some(Command::PulledBy(device)) => {
                    last_traffic = Instant::now();
                    let _ = self.conn.execute(
                        "INSERT INTO devices (id, first_seen, last_pull) VALUES (?1, ?2, ?2)
                         ON CONFLICT (id) DO UPDATE SET last_pull = ?2",
                        params![device.to_string(), now_ms()],
                    );
                }
                Some(Command::Run(f)) => f(&mut self.conn),
                Some(Command::Flush(reply)) => {
                    let _ = reply.send(());
                    return;
                }
                None => match self.merge_chunk() {
                    Ok(more) => dirty = more,
                    Err(e) => {
                        tracing::error!(error = %e, "merging records failed; will retry");
                        std::thread::sleep(Duration::from_millis(200));
                    }
                },
            }
        }
    }

    fn push(&mut self, push: CheckedPush) -> Result<PushOutcome, StorageError> {
        let tx = self.conn.transaction()?;
        let device = push.device.to_string();
        let now = now_ms();
        tx.execute(
            "INSERT INTO devices (id, first_seen, last_push) VALUES (?1, ?2, ?2)
             ON CONFLICT (id) DO UPDATE SET last_push = ?2",
            params![device, now],
        )?;
        for actor in &push.actors {
            let owner: Option<String> = tx
                .query_row("SELECT device FROM actors WHERE actor = ?1", [actor], |r| {
                    r.get(0)
                })
                .optional()?;
            match owner {
                Some(o) if o != device => {
                    return Err(StorageError::Forbidden {
                        code: "forged_actor",
                        message: format!(
                            "actor {} belongs to another device; a device may only claim the \
                             actor ids it writes with",
                            hex::encode(actor)
                        ),
                    });
                }
                Some(_) => {}
                None => {
                    tx.execute(
                        "INSERT INTO actors (actor, device, first_seen) VALUES (?1, ?2, ?3)",
                        params![actor, device, now],
                    )?;
                }
            }
        }
        let own: std::collections::HashSet<&[u8]> =
            push.actors.iter().map(|a| a.as_slice()).collect();
        let recovering = tx
            .query_row(
                "SELECT value FROM server_meta WHERE key = 'recovery_until'",
                [],
                |r| r.get::<_, String>(0),
            )
            .optional()?
            .and_then(|v| v.parse::<i64>().ok())
            .is_some_and(|until| until > now);
        let mut unverified_relays = 0u64;
        let mut stored = 0u64;
        let mut duplicates = 0u64;
        let mut rejected = Vec::new();
        for rec in &push.records {
            let id = rec.header.id.to_string();
            let existing: Option<(String, String, String)> = tx
                .query_row(
                    "SELECT kind, campaign, scope FROM records WHERE id = ?1",
                    [&id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            // A record that contradicts what the server holds is refused alone: the rest of the
            // push is stored, so one bad record never blocks a device's sync.
            let refusal = match &existing {
                Some((kind, campaign, scope)) => {
                    let same = *kind == rec.header.kind
                        && *campaign == rec.header.campaign.to_string()
                        && *scope == rec.header.scope;
                    (!same).then(|| crate::singleton::Refusal {
                        code: "header_mismatch",
                        message: format!(
                            "服务器上的同一记录属于其他类型或村（社区） / record {id} is stored \
                             as {kind} of campaign {campaign} in {scope}; the push says {} of \
                             campaign {} in {}",
                            rec.header.kind, rec.header.campaign, rec.header.scope
                        ),
                    })
                }
                None => {
                    let templates = self
                        .templates
                        .for_campaign(&tx, &rec.header.campaign.to_string())?;
                    match templates.last() {
                        None => None,
                        Some(template) => {
                            let bytes: Vec<&[u8]> =
                                rec.changes.iter().map(|c| c.bytes.as_slice()).collect();
                            let place_of = |target: &str| -> Option<String> {
                                tx.prepare_cached(
                                    "SELECT scope FROM records WHERE id = ?1 AND campaign = ?2",
                                )
                                .ok()?
                                .query_row(params![target, rec.header.campaign.to_string()], |r| {
                                    r.get(0)
                                })
                                .ok()
                            };
                            crate::singleton::check_new(template, &rec.header, &bytes, place_of)
                                .err()
                        }
                    }
                }
            };
            let refusal = match refusal {
                Some(r) => Some(r),
                None => reused_sequence_number(&tx, &id, &rec.changes)?,
            };
            // Changes of other devices new to the server: relays, checked by their tags.
            let mut unverified_here = 0;
            let mut refusal = refusal;
            if refusal.is_none() {
                for change in &rec.changes {
                    if change.genesis || own.contains(change.actor.as_slice()) {
                        continue;
                    }
                    let known: bool = tx
                        .prepare_cached("SELECT EXISTS (SELECT 1 FROM changes WHERE hash = ?1)")?
                        .query_row([change.hash.as_slice()], |r| r.get(0))?;
                    if known {
                        continue;
                    }
                    match check_relay(&tx, &device, &id, change, now, recovering)? {
                        Relay::Verified => {}
                        Relay::Unverified => unverified_here += 1,
                        Relay::Untagged(r) => {
                            refusal = Some(r);
                            break;
                        }
                    }
                }
            }
            if let Some(refusal) = refusal {
                tracing::warn!(record = %id, code = refusal.code, "record refused");
                rejected.push(refusal.for_record(&rec.header.id));
                continue;
            }
            unverified_relays += unverified_here;
            let mut new_in_record = 0;
            for change in &rec.changes {
                let n = tx
                    .prepare_cached(
                        "INSERT OR IGNORE INTO changes
                           (hash, record_id, actor, actor_seq, pushed_by, received_at, bytes)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )?
                    .execute(params![
                        change.hash.as_slice(),
                        id,
                        change.actor,
                        change.seq as i64,
                        device,
                        now,
                        change.bytes
                    ])?;
                if n == 1 {
                    stored += 1;
                    new_in_record += 1;
                } else {
                    duplicates += 1;
                }
            }
            if new_in_record > 0 {
                let seq = tx.last_insert_rowid();
                tx.execute(
                    "INSERT INTO records (id, kind, campaign, scope, first_seq, last_seq, dirty)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5, 1)
                     ON CONFLICT (id) DO UPDATE SET last_seq = ?5, dirty = 1",
                    params![
                        id,
                        rec.header.kind,
                        rec.header.campaign.to_string(),
                        rec.header.scope,
                        seq
                    ],
                )?;
            }
        }
        tx.execute(
            "UPDATE devices SET pushed = pushed + ?2 WHERE id = ?1",
            params![device, stored as i64],
        )?;
        let head = head(&tx)?;
        tx.commit()?;
        Ok(PushOutcome {
            stored,
            duplicates,
            head,
            unverified_relays,
            rejected,
        })
    }

    /// Merges up to [`MERGE_CHUNK`] dirty records; returns whether more remain.
    fn merge_chunk(&mut self) -> Result<bool, StorageError> {
        let started = Instant::now();
        let tx = self.conn.transaction()?;
        let ids: Vec<String> = {
            // Templates first, so the records of a chunk are checked against them. Two indexed
            // queries: ordering all dirty records instead would cost a sort per chunk.
            let mut ids: Vec<String> = tx
                .prepare_cached("SELECT id FROM records WHERE kind = ?1 AND dirty = 1")?
                .query_map([TEMPLATE_KIND], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let rest = MERGE_CHUNK.saturating_sub(ids.len()).max(1);
            let mut stmt = tx.prepare_cached("SELECT id FROM records WHERE dirty = 1 LIMIT ?1")?;
            for id in stmt.query_map([rest as i64], |r| r.get::<_, String>(0))? {
                let id = id?;
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            ids
        };
        for id in &ids {
            merge_record(&tx, id, &mut self.templates)?;
        }
        tx.commit()?;
        self.unannounced |= !ids.is_empty();
        if !ids.is_empty() {
            tracing::debug!(
                records = ids.len(),
                ms = started.elapsed().as_millis() as u64,
                "merged"
            );
        }
        // Merging a template marks its campaign's records dirty again: ask, do not guess.
        let more: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM records WHERE dirty = 1)",
            [],
            |r| r.get(0),
        )?;
        // What is computed from projections (tallies) is recomputed when the version moves: move
        // it when merging has caught up, and while a long merge runs at most every
        // VERSION_INTERVAL, not after every chunk.
        if self.unannounced && (!more || self.announced_at.elapsed() >= VERSION_INTERVAL) {
            self.version
                .fetch_add(1, std::sync::atomic::Ordering::Release);
            self.unannounced = false;
            self.announced_at = Instant::now();
        }
        Ok(more)
    }
}

/// A change of the record whose actor already wrote a different change with the same sequence
/// number (an actor id reused, as by a device restored from a backup that kept its actor).
fn reused_sequence_number(
    tx: &Transaction<'_>,
    id: &str,
    changes: &[super::CheckedChange],
) -> Result<Option<crate::singleton::Refusal>, StorageError> {
    for change in changes {
        let have: Option<Vec<u8>> = tx
            .prepare_cached(
                "SELECT hash FROM changes WHERE record_id = ?1 AND actor = ?2 AND actor_seq = ?3",
            )?
            .query_row(params![id, change.actor, change.seq as i64], |r| r.get(0))
            .optional()?;
        if have.is_some_and(|h| h != change.hash) {
            return Ok(Some(crate::singleton::Refusal {
                code: "duplicate_sequence_number",
                message: format!(
                    "同一作者的修改序号重复 / record {id} already has a different change by actor \
                     {} with sequence number {}; an actor id was reused (a device restored from \
                     a backup must write with a new actor id)",
                    hex::encode(&change.actor),
                    change.seq
                ),
            }));
        }
    }
    Ok(None)
}

/// What [`check_relay`] found.
enum Relay {
    /// The change's author is the pushing device, unknown yet, or proven by its valid tag.
    Verified,
    /// Untagged under another device's actor, accepted because an administrator declared the
    /// server restored (the recovery window).
    Unverified,
    /// Untagged under another device's actor: the record is refused (the author uploads its own
    /// changes itself, or a device relays them with the author's tag).
    Untagged(crate::singleton::Refusal),
}

/// Checks a change another device wrote that the pushing device relays (received in a bundle).
/// A change under an actor the server knows belongs to another device must carry that device's
/// valid tag; a valid tag under an actor the server does not know yet registers the actor to the
/// tag's device. An untagged change under an unknown actor is accepted and attributed to the
/// pushing device (it cannot claim anyone else's name). An untagged change under another
/// device's actor refuses its record, unless an administrator declared the server restored from a
/// backup (`recovering`, see [`Storage::declare_restored`]). A tag that does not verify, or that
/// names another device than the actor's, refuses the whole push: no honest device sends one.
fn check_relay(
    tx: &Transaction<'_>,
    pusher: &str,
    record: &str,
    change: &super::CheckedChange,
    now: i64,
    recovering: bool,
) -> Result<Relay, StorageError> {
    let owner: Option<String> = tx
        .prepare_cached("SELECT device FROM actors WHERE actor = ?1")?
        .query_row([&change.actor], |r| r.get(0))
        .optional()?;
    let forged = |why: &str| StorageError::Forbidden {
        code: "forged_actor",
        message: format!(
            "a change to record {record} is written under actor {} {why}; a device may relay \
             another device's changes only with that device's tag (bundles carry them)",
            hex::encode(&change.actor)
        ),
    };
    let tag_device = change
        .tag
        .as_ref()
        .and_then(|t| fieldsync_protocol::auth::tag_device(t));
    match (&owner, tag_device) {
        (Some(o), _) if o == pusher => return Ok(Relay::Verified),
        (None, None) => return Ok(Relay::Verified),
        (Some(_), None) if recovering => return Ok(Relay::Unverified),
        (Some(_), None) => {
            return Ok(Relay::Untagged(crate::singleton::Refusal {
                code: "unverified_relay",
                message: format!(
                    "记录含有其他设备的修改但没有其签名 / a change to record {record} is written \
                     under actor {}, which belongs to another device, without that device's \
                     tag: the other device uploads it itself",
                    hex::encode(&change.actor)
                ),
            }));
        }
        (Some(o), Some(t)) if *o != t.to_string() => {
            return Err(forged("that belongs to another device than its tag names"));
        }
        _ => {}
    }
    let signer = tag_device.expect("checked above");
    let key: Option<Option<Vec<u8>>> = tx
        .prepare_cached("SELECT mac_key FROM devices WHERE id = ?1")?
        .query_row([signer.to_string()], |r| r.get(0))
        .optional()?;
    let key = key
        .flatten()
        .and_then(|k| <[u8; 32]>::try_from(k.as_slice()).ok())
        .ok_or_else(|| forged("with a tag of a device this server has not enrolled"))?;
    let tag = change.tag.as_ref().expect("checked above");
    if !fieldsync_protocol::auth::verify_tag(&key, &change.actor, &change.hash, tag) {
        return Err(forged("with a tag that does not verify"));
    }
    if owner.is_none() {
        tx.execute(
            "INSERT INTO actors (actor, device, first_seen) VALUES (?1, ?2, ?3)",
            params![change.actor, signer.to_string(), now],
        )?;
    }
    Ok(Relay::Verified)
}

fn head(conn: &Connection) -> Result<u64, StorageError> {
    Ok(
        conn.query_row("SELECT coalesce(max(seq), 0) FROM changes", [], |r| {
            r.get::<_, i64>(0)
        })? as u64,
    )
}

/// Applies a record's unapplied changes to its document and refreshes its projection.
fn merge_record(
    tx: &Transaction<'_>,
    id: &str,
    templates: &mut TemplateCache,
) -> Result<(), StorageError> {
    let (kind, campaign, scope, doc_bytes): (String, String, String, Option<Vec<u8>>) = tx
        .query_row(
            "SELECT kind, campaign, scope, doc FROM records WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
    let fail = |problem: String| -> Result<(), StorageError> {
        tracing::warn!(record = id, %problem, "record cannot be merged");
        tx.execute(
            "UPDATE records SET dirty = 0, problem = ?2 WHERE id = ?1",
            params![id, problem],
        )?;
        Ok(())
    };
    let mut doc = match doc_bytes {
        Some(b) => match record::load_doc(&b) {
            Ok(d) => d,
            Err(e) => return fail(format!("stored document does not load: {e}")),
        },
        None => record::new_doc(),
    };
    let mut pending: Vec<(ChangeHash, Change)> = Vec::new();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT bytes FROM changes WHERE record_id = ?1 AND applied = 0 ORDER BY seq",
        )?;
        let rows = stmt.query_map([id], |r| r.get::<_, Vec<u8>>(0))?;
        for bytes in rows {
            let bytes = bytes?;
            // Every stored change was checked on the way in; a failure here is corruption.
            match Change::try_from(bytes.as_slice()) {
                Ok(c) => pending.push((c.hash(), c)),
                Err(e) => return fail(format!("a stored change does not decode: {e}")),
            }
        }
    }
    if let Err(e) = doc.apply_changes(pending.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>()) {
        return fail(format!("changes do not apply: {e}"));
    }
    let mut waiting = 0;
    for (hash, _) in &pending {
        if doc.get_change_meta_by_hash(hash).is_some() {
            tx.prepare_cached("UPDATE changes SET applied = 1 WHERE hash = ?1")?
                .execute([hash.0.as_slice()])?;
        } else {
            waiting += 1;
        }
    }
    let projection = match record::project(&doc) {
        Ok(p) => p,
        Err(e) => {
            let problem = if waiting > 0 {
                format!("waiting for {waiting} changes' dependencies ({e})")
            } else {
                e.to_string()
            };
            // Keep what merged so far.
            tx.execute(
                "UPDATE records SET doc = ?2 WHERE id = ?1",
                params![id, doc.save()],
            )?;
            return fail(problem);
        }
    };
    let stored_header = RecordHeader::parse(id, &kind, &campaign, &scope).map_err(other)?;
    let problem = if projection.header != stored_header {
        Some(format!(
            "the document's header {:?} differs from the one its changes were pushed with",
            projection.header
        ))
    } else if waiting > 0 {
        Some(format!("{waiting} changes wait for changes they depend on"))
    } else {
        None
    };
    if kind == TEMPLATE_KIND {
        // A template version arrived or changed: check the campaign's records again.
        templates.by_campaign.remove(&campaign);
        tx.execute(
            "UPDATE records SET dirty = 1 WHERE campaign = ?1 AND kind != ?2 AND fields IS NOT NULL",
            params![campaign, TEMPLATE_KIND],
        )?;
    }
    let review = review(tx, templates, &projection)?;
    index_text(tx, id, &campaign, &kind, &projection)?;
    tx.execute(
        "UPDATE records SET doc = ?2, fields = ?3, deleted = ?4, conflicts = ?5, heads = ?6,
                problem = ?7, dirty = 0, merged_at = ?8, review = ?9
         WHERE id = ?1",
        params![
            id,
            doc.save(),
            projection.fields_json().to_string(),
            projection.deleted,
            projection.conflicts as i64,
            serde_json::to_string(&projection.heads).map_err(other)?,
            problem,
            now_ms(),
            review
        ],
    )?;
    Ok(())
}

fn pull_page(conn: &mut Connection, req: &PullRequest) -> Result<PullPage, StorageError> {
    let tx = conn.transaction()?;
    let head = head(&tx)?;
    let pushed_by_you: u64 = tx
        .query_row(
            "SELECT pushed FROM devices WHERE id = ?1",
            [req.device.to_string()],
            |r| r.get::<_, i64>(0),
        )
        .optional()?
        .unwrap_or(0) as u64;
    let hash_at = |seq: u64| -> Result<Option<[u8; 32]>, StorageError> {
        let h: Option<Vec<u8>> = tx
            .query_row(
                "SELECT hash FROM changes WHERE seq = ?1",
                [seq as i64],
                |r| r.get(0),
            )
            .optional()?;
        Ok(h.and_then(|h| <[u8; 32]>::try_from(h.as_slice()).ok()))
    };
    let epoch: String = tx
        .query_row(
            "SELECT value FROM server_meta WHERE key = 'log_id'",
            [],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or_default();
    let empty = |reset: bool| PullPage {
        reset,
        epoch: epoch.clone(),
        head,
        next: 0,
        next_hash: None,
        more: false,
        pushed_by_you,
        records: Vec::new(),
    };
    if req.after > 0 {
        let have = hash_at(req.after)?;
        if have.is_none() || (req.after_hash.is_some() && have != req.after_hash) {
            return Ok(empty(true));
        }
    }
    let mut records: Vec<WireRecord> = Vec::new();
    let mut index = std::collections::HashMap::<String, usize>::new();
    let mut bytes = 0usize;
    let mut last = req.after;
    let mut more = false;
    {
        let mut stmt = tx.prepare_cached(&format!(
            "SELECT c.seq, c.record_id, r.kind, r.campaign, r.scope, c.bytes
             FROM changes c JOIN records r ON r.id = c.record_id
             WHERE c.seq > ?1 AND (?2 OR c.pushed_by != ?3) AND {}
             ORDER BY c.seq LIMIT ?4",
            visible::condition("r", 5)
        ))?;
        let (campaign, places) = visible::params(&Visibility::of(&req.scope));
        let mut rows = stmt.query(params![
            req.after as i64,
            req.include_own,
            req.device.to_string(),
            PAGE_ROWS as i64 + 1,
            campaign,
            places
        ])?;
        let mut n = 0;
        while let Some(row) = rows.next()? {
            n += 1;
            let change: Vec<u8> = row.get(5)?;
            if n > PAGE_ROWS || (bytes > 0 && bytes + change.len() > req.max_bytes) {
                more = true;
                break;
            }
            last = row.get::<_, i64>(0)? as u64;
            bytes += change.len();
            let record_id: String = row.get(1)?;
            let i = match index.get(&record_id) {
                Some(i) => *i,
                None => {
                    records.push(WireRecord {
                        id: record_id.clone(),
                        kind: row.get(2)?,
                        campaign: row.get(3)?,
                        scope: row.get(4)?,
                        changes: Vec::new(),
                        tags: Vec::new(),
                    });
                    index.insert(record_id, records.len() - 1);
                    records.len() - 1
                }
            };
            records[i].changes.push(ByteBuf::from(change));
        }
    }
    let next = if more { last } else { head.max(req.after) };
    Ok(PullPage {
        reset: false,
        epoch,
        head,
        next,
        next_hash: if next == 0 { None } else { hash_at(next)? },
        more,
        pushed_by_you,
        records,
    })
}

fn row_to_view(r: &rusqlite::Row<'_>) -> rusqlite::Result<RecordView> {
    let id: String = r.get(0)?;
    let campaign: String = r.get(2)?;
    let fields: Option<String> = r.get(5)?;
    let heads: Option<String> = r.get(7)?;
    Ok(RecordView {
        id: Uuid::parse_str(&id).unwrap_or_default(),
        kind: r.get(1)?,
        campaign: Uuid::parse_str(&campaign).unwrap_or_default(),
        scope: r.get(3)?,
        deleted: r.get(4)?,
        fields: fields
            .and_then(|f| serde_json::from_str(&f).ok())
            .unwrap_or(serde_json::Value::Null),
        conflicts: r.get::<_, i64>(6)? as u64,
        heads: heads
            .and_then(|h| serde_json::from_str(&h).ok())
            .unwrap_or_default(),
        up_to_date: !r.get::<_, bool>(8)?,
        position: r.get(12)?,
        waiting_changes: r.get::<_, i64>(10)? as u64,
        problem: r.get(9)?,
        review: r
            .get::<_, Option<String>>(11)?
            .and_then(|j| serde_json::from_str(&j).ok()),
    })
}

const VIEW_COLUMNS: &str = "r.id, r.kind, r.campaign, r.scope, r.deleted, r.fields, r.conflicts,
    r.heads, r.dirty, r.problem,
    (SELECT count(*) FROM changes c WHERE c.record_id = r.id AND c.applied = 0), r.review,
    r.first_seq";

#[async_trait]
impl Storage for SqliteStorage {
    async fn push(&self, push: CheckedPush) -> Result<PushOutcome, StorageError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Push(push, tx))
            .map_err(|_| StorageError::Other("the writer thread has stopped".into()))?;
        rx.await
            .map_err(|_| StorageError::Other("the writer thread dropped a push".into()))?
    }

    async fn pull(&self, request: PullRequest) -> Result<PullPage, StorageError> {
        let device = request.device;
        let page = self.read(move |conn| pull_page(conn, &request)).await?;
        let _ = self.commands.send(Command::PulledBy(device));
        Ok(page)
    }

    async fn status(&self) -> Result<StoreStatus, StorageError> {
        self.read(|conn| {
            let count = |sql: &str| -> Result<u64, StorageError> {
                Ok(conn.query_row(sql, [], |r| r.get::<_, i64>(0))? as u64)
            };
            Ok(StoreStatus {
                head: count("SELECT coalesce(max(seq), 0) FROM changes")?,
                changes: count("SELECT count(*) FROM changes")?,
                records: count("SELECT count(*) FROM records")?,
                unmerged_records: count("SELECT count(*) FROM records WHERE dirty = 1")?,
                waiting_changes: count("SELECT count(*) FROM changes WHERE applied = 0")?,
                devices: count("SELECT count(*) FROM devices")?,
                records_needing_review: count(
                    "SELECT count(*) FROM records WHERE review IS NOT NULL",
                )?,
            })
        })
        .await
    }

    async fn record(
        &self,
        id: Uuid,
        visibility: Visibility,
    ) -> Result<Option<RecordView>, StorageError> {
        self.read(move |conn| {
            let (c, places) = visible::params(&visibility);
            Ok(conn
                .query_row(
                    &format!(
                        "SELECT {VIEW_COLUMNS} FROM records r WHERE r.id = ?1 AND {}",
                        visible::condition("r", 2)
                    ),
                    params![id.to_string(), c, places],
                    row_to_view,
                )
                .optional()?)
        })
        .await
    }

    async fn conflicts(&self, id: Uuid) -> Result<Option<Vec<Conflict>>, StorageError> {
        self.read(move |conn| {
            let doc: Option<Option<Vec<u8>>> = conn
                .query_row(
                    "SELECT doc FROM records WHERE id = ?1",
                    [id.to_string()],
                    |r| r.get(0),
                )
                .optional()?;
            match doc.flatten() {
                None => Ok(None),
                Some(bytes) => {
                    let doc = record::load_doc(&bytes).map_err(other)?;
                    Ok(record::conflicts(&doc).ok())
                }
            }
        })
        .await
    }

    async fn records(
        &self,
        filter: RecordFilter,
        visibility: Visibility,
    ) -> Result<Vec<RecordView>, StorageError> {
        self.read(move |conn| {
            let (c, places) = visible::params(&visibility);
            let mut sql = format!(
                "SELECT {VIEW_COLUMNS} FROM records r WHERE {}",
                visible::condition("r", 1)
            );
            let mut args: Vec<rusqlite::types::Value> = vec![c.into(), places.into()];
            let mut arg = |sql: &mut String, condition: &str, value: rusqlite::types::Value| {
                args.push(value);
                sql.push_str(&condition.replace("?", &format!("?{}", args.len())));
            };
            if let Some(k) = &filter.kind {
                arg(&mut sql, " AND r.kind = ?", k.clone().into());
            }
            if let Some(s) = &filter.scope {
                arg(&mut sql, " AND r.scope = ?", s.clone().into());
            }
            if let Some(c) = &filter.campaign {
                arg(&mut sql, " AND r.campaign = ?", c.to_string().into());
            }
            if let Some(after) = filter.after {
                arg(&mut sql, " AND r.first_seq > ?", after.into());
            }
            if filter.conflicted {
                sql.push_str(" AND r.conflicts > 0");
            }
            if filter.needs_review {
                sql.push_str(" AND r.review IS NOT NULL");
            }
            sql.push_str(&format!(
                " ORDER BY r.first_seq LIMIT {}",
                filter.limit.unwrap_or(1000).clamp(1, 10_000)
            ));
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), row_to_view)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn campaign_records(
        &self,
        campaign: Uuid,
        kind: String,
        visibility: Visibility,
    ) -> Result<Vec<RecordView>, StorageError> {
        self.read(move |conn| {
            let (c, places) = visible::params(&visibility);
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {VIEW_COLUMNS} FROM records r
                 WHERE r.campaign = ?1 AND r.kind = ?2 AND r.deleted = 0 AND {}
                 ORDER BY r.first_seq",
                visible::condition("r", 3)
            ))?;
            let rows =
                stmt.query_map(params![campaign.to_string(), kind, c, places], row_to_view)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn tallies(
        &self,
        campaign: Uuid,
        visibility: Visibility,
    ) -> Result<crate::report::Tallies, StorageError> {
        self.read(move |conn| super::tally::tallies(conn, campaign, &visibility))
            .await
    }

    async fn search(
        &self,
        q: String,
        campaign: Option<Uuid>,
        kind: Option<String>,
        limit: usize,
        visibility: Visibility,
    ) -> Result<Vec<crate::report::SearchHit>, StorageError> {
        self.read(move |conn| {
            super::tally::search(conn, &q, campaign, kind.as_deref(), limit, &visibility)
        })
        .await
    }

    async fn template(&self, campaign: Uuid) -> Result<Option<Template>, StorageError> {
        self.read(move |conn| super::tally::template(conn, campaign))
            .await
    }

    async fn authenticate(&self, token_hash: [u8; 32]) -> Result<TokenCheck, StorageError> {
        self.read(move |conn| accounts::authenticate(conn, &token_hash))
            .await
    }

    async fn create_person(
        &self,
        name: String,
        role: fieldsync_protocol::auth::Role,
        group: Option<Uuid>,
    ) -> Result<Person, StorageError> {
        self.write(move |conn| accounts::create_person(conn, &name, role, group, now_ms()))
            .await
    }

    async fn update_person(&self, id: Uuid, update: PersonUpdate) -> Result<Person, StorageError> {
        self.write(move |conn| accounts::update_person(conn, id, &update))
            .await
    }

    async fn people(&self) -> Result<Vec<Person>, StorageError> {
        self.read(|conn| accounts::people(conn)).await
    }

    async fn issue_code(
        &self,
        person: Uuid,
        code_hash: [u8; 32],
        expires_at: i64,
    ) -> Result<(), StorageError> {
        self.write(move |conn| accounts::issue_code(conn, person, &code_hash, expires_at, now_ms()))
            .await
    }

    async fn enroll(&self, enrollment: NewEnrollment) -> Result<Person, StorageError> {
        self.write(move |conn| accounts::enroll(conn, &enrollment, now_ms()))
            .await
    }

    async fn devices(&self) -> Result<Vec<DeviceView>, StorageError> {
        self.read(|conn| accounts::devices(conn)).await
    }

    async fn revoke(&self, device: Uuid) -> Result<bool, StorageError> {
        self.write(move |conn| accounts::revoke(conn, device, now_ms()))
            .await
    }

    async fn audit_line(&self, entry: AuditEntry) -> Result<i64, StorageError> {
        self.write(move |conn| accounts::audit(conn, &entry, now_ms()))
            .await
    }

    async fn audit_repeated(&self, id: i64, times: u64) -> Result<(), StorageError> {
        self.write(move |conn| accounts::audit_repeated(conn, id, times))
            .await
    }

    async fn audit_log(&self, filter: AuditFilter) -> Result<Vec<(i64, AuditEntry)>, StorageError> {
        self.read(move |conn| accounts::audit_log(conn, &filter))
            .await
    }

    async fn actor_owners(
        &self,
        actors: Vec<String>,
    ) -> Result<std::collections::HashMap<String, (Uuid, Option<String>)>, StorageError> {
        self.read(move |conn| accounts::actor_owners(conn, &actors))
            .await
    }

    fn data_version(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::Acquire)
    }

    async fn document(&self, id: Uuid) -> Result<Option<Vec<u8>>, StorageError> {
        self.read(move |conn| {
            let doc: Option<Option<Vec<u8>>> = conn
                .query_row(
                    "SELECT doc FROM records WHERE id = ?1",
                    [id.to_string()],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(doc.flatten())
        })
        .await
    }

    async fn declare_restored(&self) -> Result<(String, i64), StorageError> {
        self.write(|conn| {
            let epoch = Uuid::new_v4().to_string();
            let until = now_ms() + RECOVERY_WINDOW_MS;
            let tx = conn.transaction()?;
            for (key, value) in [
                ("log_id", epoch.clone()),
                ("recovery_until", until.to_string()),
            ] {
                tx.execute(
                    "INSERT INTO server_meta (key, value) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET value = ?2",
                    params![key, value],
                )?;
            }
            tx.commit()?;
            tracing::warn!(%epoch, "declared restored from a backup: recovery window open");
            Ok((epoch, until))
        })
        .await
    }

    async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
        let handle = self.writer.lock().expect("writer lock").take();
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_and_choice_values_are_not_indexed_for_search() {
        for machine in [
            "villager_rep",
            "party_member,villager_rep",
            "0190f5c2-0000-7000-8000-000000000001",
            "0190f5c2-0000-7000-8000-000000000001,0190f5c2-0000-7000-8000-000000000002",
            "good",
        ] {
            assert!(!super::searchable(machine), "{machine}");
        }
        for words in [
            "集体经济",
            "王建国",
            "2023-05-10",
            "Zhang San",
            "村集体 income",
        ] {
            assert!(super::searchable(words), "{words}");
        }
    }
}
