//! The PostgreSQL storage (`fieldsync-server --database postgres://…`): the same storage as the
//! SQLite default, for a deployment with several identical servers on one database.
//!
//! Connections come from a `deadpool-postgres` pool over `tokio-postgres`. What several servers
//! need from it (see ARCHITECTURE.md, Invariants): pushes hold one advisory lock until they
//! commit, so sequence numbers become visible in order and no pull cursor skips a change another
//! server commits late (`log`); each server merges with `FOR UPDATE SKIP LOCKED`, so every change
//! is merged once whichever server received it (`merge`); the data version that keys cached
//! tallies lives in the database (`merge`); parsed templates are re-read when another server
//! merged a new one (`templates`); what the tallies counted of a place is kept with the place's
//! version, which every push and merge moves in the database (`versions`), and read again when
//! it moved. Nothing else is kept in a server's memory between requests.
//!
//! - `schema`: ordered, append-only migrations recorded in `schema_migrations`;
//! - `accounts`: people, codes, devices, scopes, the audit log;
//! - `log`: pull pages and the epoch; `push`: a checked push appended;
//! - `merge`: the merging task; `queries`: records as the department reads them;
//! - `tally`: tallies over `jsonb`, search through `pg_trgm`; `visible`: the scope condition;
//! - `versions`: each place's version, moved by the transactions that write its records.

mod accounts;
mod log;
mod merge;
pub use merge::TEMPLATE_LOCK_SPACE;
mod push;
mod queries;
mod schema;
mod tally;
mod templates;
mod versions;
mod visible;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use fieldsync_protocol::{auth::Role, record::Conflict, template::Template};
use uuid::Uuid;

use super::{
    Accounts, AuditEntry, AuditFilter, ChangeLog, CheckedPush, CredentialProblem, DeviceView,
    DigestAsk, Identity, NewEnrollment, Person, PersonUpdate, PullPage, PullRequest, PushOutcome,
    Pusher, RecordFilter, RecordView, Records, Search, SearchHit, Storage, StorageError,
    StoreStatus, Tallies, TokenCheck, VillageDigest, Visibility,
};

/// Connections a server keeps at most.
const POOL_SIZE: usize = 16;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn other<E: std::fmt::Display>(e: E) -> StorageError {
    StorageError::Other(e.to_string())
}

impl From<tokio_postgres::Error> for StorageError {
    fn from(e: tokio_postgres::Error) -> Self {
        // The database's own message (constraint, syntax) when there is one.
        match e.as_db_error() {
            Some(db) => StorageError::Other(format!("postgres: {}", db.message())),
            None => StorageError::Other(format!("postgres: {e}")),
        }
    }
}

/// The PostgreSQL storage. Cheap to share in an `Arc`; call [`Storage::close`] before dropping.
pub struct PostgresStorage {
    pool: Pool,
    templates: Arc<templates::TemplateCache>,
    /// What the tallies counted of each place, with the place's version.
    places: tally::PlaceCache,
    /// The database's data version, as the merging task last read it.
    version: Arc<AtomicU64>,
    stop: Arc<tokio::sync::Notify>,
    merger: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl PostgresStorage {
    /// Connects to the database at `url` (`postgres://user@host:port/name`), brings its schema
    /// up to date and starts merging.
    pub async fn open(url: &str) -> Result<Self, StorageError> {
        Self::open_with(url, true, POOL_SIZE).await
    }

    /// Connects for administration beside running servers: it never merges records.
    pub async fn open_for_admin(url: &str) -> Result<Self, StorageError> {
        Self::open_with(url, false, POOL_SIZE).await
    }

    /// As [`PostgresStorage::open_for_admin`], with at most `connections` connections (at
    /// least one): a tool that must not take more of the database's connections. With one,
    /// whatever would run on two connections at once (the tallies' halves) runs on one.
    pub async fn open_for_admin_with_connections(
        url: &str,
        connections: usize,
    ) -> Result<Self, StorageError> {
        Self::open_with(url, false, connections.max(1)).await
    }

    /// How many places the tallies have read from their records since this storage opened;
    /// the others were kept from an earlier ask, their versions unmoved. For a test or a
    /// benchmark to see that a merge makes the tallies read again only the places it wrote.
    pub fn places_read(&self) -> u64 {
        self.places.places_read()
    }

    /// How PostgreSQL reads one pull page for a device with `scope` (`EXPLAIN`, one line per
    /// step): for an operator, or a benchmark, to check that a work group's pull reads only its
    /// own part of the log.
    pub async fn explain_pull(
        &self,
        scope: &fieldsync_protocol::auth::WireScope,
    ) -> Result<Vec<String>, StorageError> {
        let c = self.pool.get().await.map_err(other)?;
        log::plan(&c, scope).await
    }

    async fn open_with(url: &str, merge: bool, connections: usize) -> Result<Self, StorageError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StorageError::Other(format!("not a PostgreSQL URL: {e}")))?;
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(connections)
            .build()
            .map_err(other)?;
        {
            let mut client = pool
                .get()
                .await
                .map_err(|e| StorageError::Other(format!("cannot connect to PostgreSQL: {e}")))?;
            schema::migrate(&mut client).await?;
            log::ensure_epoch(&client).await?;
        }
        let templates = Arc::new(templates::TemplateCache::default());
        let version = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(tokio::sync::Notify::new());
        let merger = tokio::spawn(merge::run(
            pool.clone(),
            templates.clone(),
            version.clone(),
            merge,
            stop.clone(),
        ));
        Ok(PostgresStorage {
            pool,
            templates,
            places: tally::PlaceCache::default(),
            version,
            stop,
            merger: std::sync::Mutex::new(Some(merger)),
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StorageError> {
        self.pool.get().await.map_err(other)
    }
}

#[async_trait]
impl ChangeLog for PostgresStorage {
    async fn push(&self, pusher: Pusher, push: CheckedPush) -> Result<PushOutcome, StorageError> {
        let mut c = self.client().await?;
        push::push(&mut c, &self.templates, &pusher, push).await
    }

    async fn pull(&self, request: PullRequest) -> Result<PullPage, StorageError> {
        let mut c = self.client().await?;
        let page = log::pull(&mut c, &request).await?;
        log::pulled_by(&c, request.device).await?;
        Ok(page)
    }

    async fn status(&self) -> Result<StoreStatus, StorageError> {
        queries::status(&self.client().await?).await
    }

    async fn ping(&self) -> Result<(), StorageError> {
        self.client().await?.query_one("SELECT 1", &[]).await?;
        Ok(())
    }

    fn data_version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    async fn document(&self, id: Uuid) -> Result<Option<Vec<u8>>, StorageError> {
        queries::document(&self.client().await?, id).await
    }

    async fn declare_restored(&self) -> Result<(String, i64), StorageError> {
        log::declare_restored(&mut self.client().await?).await
    }
}

#[async_trait]
impl Records for PostgresStorage {
    async fn record(
        &self,
        id: Uuid,
        visibility: Visibility,
    ) -> Result<Option<RecordView>, StorageError> {
        queries::record(&self.client().await?, id, &visibility).await
    }

    async fn conflicts(&self, id: Uuid) -> Result<Option<Vec<Conflict>>, StorageError> {
        queries::conflicts(&self.client().await?, id).await
    }

    async fn records(
        &self,
        filter: RecordFilter,
        visibility: Visibility,
    ) -> Result<Vec<RecordView>, StorageError> {
        queries::records(&self.client().await?, &filter, &visibility).await
    }

    async fn campaign_records(
        &self,
        campaign: Uuid,
        kind: String,
        visibility: Visibility,
        period: crate::storage::Period,
    ) -> Result<Vec<RecordView>, StorageError> {
        queries::campaign_records(&self.client().await?, campaign, &kind, &visibility, &period)
            .await
    }

    async fn tallies(
        &self,
        campaign: Uuid,
        visibility: Visibility,
        period: crate::storage::Period,
    ) -> Result<Tallies, StorageError> {
        tally::tallies(&self.pool, &self.places, campaign, &visibility, &period).await
    }

    async fn village_digest(
        &self,
        ask: DigestAsk,
        visibility: Visibility,
    ) -> Result<VillageDigest, StorageError> {
        tally::digest(&self.client().await?, &ask, &visibility).await
    }

    async fn search(
        &self,
        search: Search,
        visibility: Visibility,
    ) -> Result<Vec<SearchHit>, StorageError> {
        tally::search(&self.client().await?, &search, &visibility).await
    }

    async fn template(&self, campaign: Uuid) -> Result<Option<Template>, StorageError> {
        queries::template(&self.client().await?, campaign).await
    }
}

#[async_trait]
impl Accounts for PostgresStorage {
    async fn authenticate(&self, token_hash: [u8; 32]) -> Result<TokenCheck, StorageError> {
        accounts::authenticate(&self.client().await?, &token_hash).await
    }

    async fn create_person(
        &self,
        name: String,
        role: Role,
        group: Option<Uuid>,
    ) -> Result<Person, StorageError> {
        accounts::create_person(&self.client().await?, &name, role, group, now_ms()).await
    }

    async fn update_person(&self, id: Uuid, update: PersonUpdate) -> Result<Person, StorageError> {
        accounts::update_person(&self.client().await?, id, &update).await
    }

    async fn people(&self) -> Result<Vec<Person>, StorageError> {
        accounts::people(&self.client().await?).await
    }

    async fn issue_code(
        &self,
        person: Uuid,
        code_hash: [u8; 32],
        expires_at: i64,
    ) -> Result<(), StorageError> {
        accounts::issue_code(
            &self.client().await?,
            person,
            &code_hash,
            expires_at,
            now_ms(),
        )
        .await
    }

    async fn enroll(&self, enrollment: NewEnrollment) -> Result<Person, StorageError> {
        accounts::enroll(&mut self.client().await?, &enrollment, now_ms()).await
    }

    async fn devices(&self) -> Result<Vec<DeviceView>, StorageError> {
        accounts::devices(&self.client().await?).await
    }

    async fn revoke(&self, device: Uuid) -> Result<bool, StorageError> {
        accounts::revoke(&self.client().await?, device, now_ms()).await
    }

    async fn audit_line(&self, entry: AuditEntry) -> Result<i64, StorageError> {
        accounts::audit(&self.client().await?, &entry, now_ms()).await
    }

    async fn audit_repeated(&self, id: i64, times: u64) -> Result<(), StorageError> {
        accounts::audit_repeated(&self.client().await?, id, times).await
    }

    async fn audit_log(&self, filter: AuditFilter) -> Result<Vec<(i64, AuditEntry)>, StorageError> {
        accounts::audit_log(&self.client().await?, &filter).await
    }

    async fn actor_owners(
        &self,
        actors: Vec<String>,
    ) -> Result<std::collections::HashMap<String, (Uuid, Option<String>)>, StorageError> {
        accounts::actor_owners(&self.client().await?, &actors).await
    }
}

#[async_trait]
impl Storage for PostgresStorage {
    async fn close(&self) {
        self.stop.notify_one();
        let merger = self.merger.lock().expect("merger").take();
        if let Some(m) = merger {
            let _ = m.await;
        }
        self.pool.close();
    }
}
