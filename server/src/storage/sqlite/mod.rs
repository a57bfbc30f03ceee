//! The SQLite storage: one writer thread owns every write (pushes and merging), reads run on a
//! small pool of read connections inside `spawn_blocking`.
//!
//! The change log (`changes`) is the truth: a push is acknowledged once its checked changes are
//! committed there. Merging them into each record's document and projection (`records`) happens
//! afterwards on the same writer thread, between pushes, so acknowledging never waits for
//! Automerge. Because one connection does every write, log sequence numbers become visible in
//! commit order: a reader never sees sequence 9 after it has already seen 10. What a push may
//! store is decided by [`crate::ingest`], how a record merges by [`crate::merge`]; the modules
//! here read and write.

mod accounts;
mod facts;
mod merge;
mod pull;
mod push;
mod records;
mod schema;
mod search;
mod tally;
mod visible;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use fieldsync_protocol::migrate::migrate;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::storage::{
    Accounts, AuditEntry, AuditFilter, ChangeLog, CheckedPush, DeviceView, NewEnrollment, Person,
    PersonUpdate, PullPage, PullRequest, PushOutcome, Pusher, Storage, StorageError, StoreStatus,
    TokenCheck,
};
use writer::{Command, TemplateCache, Writer};

/// How long after an administrator declares the server restored untagged relays are accepted
/// (7 days).
const RECOVERY_WINDOW_MS: i64 = 7 * 24 * 3_600_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn other<E: std::fmt::Display>(e: E) -> StorageError {
    StorageError::Other(e.to_string())
}

impl From<rusqlite::Error> for StorageError {
    fn from(e: rusqlite::Error) -> Self {
        StorageError::Other(e.to_string())
    }
}

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

/// How much of the database file each connection maps into memory (`PRAGMA mmap_size`).
const MMAP_BYTES: i64 = 1 << 31;

fn open_connection(path: &Path, read_only: bool) -> Result<Connection, StorageError> {
    let flags = if read_only {
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        rusqlite::OpenFlags::default()
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    // Read the database through the operating system's page cache, shared by every connection,
    // instead of each connection's 2 MB cache and a system call per page: the department's
    // tallies scan a campaign's records several times, 3× faster at 100,000 records
    // (BENCHMARKS.md). Address space only; what is resident is the file's cached pages.
    conn.pragma_update(None, "mmap_size", MMAP_BYTES)?;
    facts::register(&conn)?;
    if !read_only {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // NORMAL in WAL mode: a committed transaction survives the process being killed; only an
        // OS crash or power loss can roll back the last commits.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // The writer's own cache: a merge chunk dirties more pages than SQLite's 2 MB hold
        // (the records, their changes and the search index's segments), and a full cache
        // spills them into the log in the middle of the transaction. The writer checkpoints
        // the log itself whenever it is idle (`writer::Writer::checkpoint`); SQLite does so on
        // its own only past 256 MiB of log, rather than every 4 MiB: each checkpoint copies the
        // pages written since the last one, and during a long merge the same index pages were
        // copied again and again (a profile of merging 10,000 records: a fifth of the writer's
        // time was spilling and checkpointing). The log is cut back to 64 MiB afterwards.
        conn.pragma_update(None, "cache_size", -(64i64 << 10))?;
        conn.pragma_update(None, "wal_autocheckpoint", 65536)?;
        conn.pragma_update(None, "journal_size_limit", 64i64 << 20)?;
    }
    Ok(conn)
}

/// How SQLite reads one pull page for a device with `scope` from the server database
/// `fieldsync.sqlite3` in `dir` (`EXPLAIN QUERY PLAN`, one line per step): for an operator, or a
/// benchmark, to check that a work group's pull reads only its own part of the log.
pub fn explain_pull(
    dir: &Path,
    scope: &fieldsync_protocol::auth::WireScope,
) -> Result<Vec<String>, StorageError> {
    let conn = open_connection(&dir.join("fieldsync.sqlite3"), true)?;
    pull::plan(&conn, scope)
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
        migrate(&mut conn, schema::MIGRATIONS).map_err(other)?;
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
                    logged: true,
                    conn,
                    merge,
                    version: writer_version,
                    unannounced: false,
                    announced_at: Instant::now(),
                    templates: TemplateCache::default(),
                    chunk: writer::MERGE_CHUNK,
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

#[async_trait]
impl ChangeLog for SqliteStorage {
    async fn push(&self, pusher: Pusher, push: CheckedPush) -> Result<PushOutcome, StorageError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Push(pusher, push, tx))
            .map_err(|_| StorageError::Other("the writer thread has stopped".into()))?;
        rx.await
            .map_err(|_| StorageError::Other("the writer thread dropped a push".into()))?
    }

    async fn pull(&self, request: PullRequest) -> Result<PullPage, StorageError> {
        let device = request.device;
        let page = self
            .read(move |conn| pull::pull_page(conn, &request))
            .await?;
        let _ = self.commands.send(Command::PulledBy(device));
        Ok(page)
    }

    async fn ping(&self) -> Result<(), StorageError> {
        self.read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
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

    fn data_version(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::Acquire)
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
}

#[async_trait]
impl Accounts for SqliteStorage {
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
}

#[async_trait]
impl Storage for SqliteStorage {
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
