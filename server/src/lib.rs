//! fieldsync server: reconciles the changes of every field device and keeps the merged records.
//!
//! - [`app`] builds the axum [`Router`] (testable without a socket);
//! - [`run`] serves it on a given listener until a shutdown future completes;
//! - [`storage`] is where the change log and merged records live ([`storage::Storage`], with
//!   [`storage::sqlite::SqliteStorage`] as the embedded default);
//! - [`sync`] holds the push and pull endpoints, [`api`] the JSON read endpoints, [`error`] the
//!   one error type that every failure becomes;
//! - [`auth`] says who is asking (device tokens), what their role lets them do, and limits
//!   requests; [`admin`] enrolls devices and serves the admin endpoints;
//! - [`net`] is the accept loop (connection limit, read timeouts, graceful shutdown), [`tls`]
//!   the certificate for serving HTTPS itself, [`edge`] the client address and scheme behind
//!   trusted proxies and the cross-site check, [`headers`] the security headers and the JSON
//!   body of the framework's own errors;
//! - [`ui`] is the department's web dashboard (server-rendered HTML and SVG, behind a login);
//! - [`report`] turns a campaign's records into what the department reads: tallies, search
//!   hits, CSV exports and the draft report; [`AppState::tallies`] caches the tallies per data
//!   version, counted once however many ask at once ([`flights`]);
//! - [`attachments`] and [`blobs`] receive and keep the files attached to records,
//!   [`blob_gc`] removes those no record refers to after a grace period, [`thumbnails`] makes
//!   the dashboard's previews of photos.

pub mod admin;
pub mod api;
pub mod attachments;
pub mod auth;
pub mod blob_gc;
pub mod blobs;
pub mod edge;
pub mod error;
pub mod flights;
pub mod headers;
pub mod ingest;
pub mod merge;
pub mod net;
pub mod operations;
pub mod pdf;
pub mod rectification;
pub mod refusals;
pub mod report;
pub mod review;
pub mod routes;
pub mod scope;
pub mod storage;
pub mod sync;
pub mod templates;
pub mod thumbnails;
pub mod tls;
pub mod ui;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;
use tower_http::{compression::CompressionLayer, trace::TraceLayer};

use crate::storage::{Storage, sqlite::SqliteStorage};

/// What the handlers share.
pub struct AppState {
    /// Where everything is stored.
    pub storage: Arc<dyn Storage>,
    /// Request limits.
    pub limits: auth::Limits,
    /// Request counts per device and failed sign-ins per address.
    pub rate: auth::RateLimiter,
    /// This minute's refusals, for folding repeats into one audit line.
    pub refusals: refusals::RefusalLog,
    /// The trusted proxies in front of the server.
    pub edge: edge::Edge,
    /// Tallies per campaign and visibility with the storage's data version they were computed
    /// at.
    pub tallies: std::sync::Mutex<TalliesCache>,
    /// One computation of the tallies at a time per key of [`AppState::tallies`].
    pub tally_flights: flights::Flights<(uuid::Uuid, storage::Visibility, storage::Period)>,
    /// Where attachment bytes are kept (`None`: the server takes no attachments).
    pub blobs: Option<Arc<blobs::BlobStore>>,
    /// The last attachment sweep's report (what each campaign's files take).
    pub blob_sweep: blob_gc::LastSweep,
    /// The most bytes of files one campaign may keep (`None`: no limit).
    pub attachment_quota: Option<u64>,
    /// Makes the draft report's PDF.
    pub pdf: pdf::Converter,
}

/// Tallies per (campaign, what the asker may see), with the data version they were computed at.
pub type TalliesCache = std::collections::HashMap<
    (uuid::Uuid, storage::Visibility, storage::Period),
    (u64, Arc<report::Tallies>),
>;

impl AppState {
    /// A campaign's tallies over what `visibility` lets the asker see, computed once per change
    /// of the merged data (a group leader's are their group's villages' only) for the days of
    /// `period`, with the
    /// template's default targets where the campaign record sets none.
    pub async fn tallies(
        &self,
        campaign: uuid::Uuid,
        visibility: &storage::Visibility,
        period: &storage::Period,
    ) -> Result<Arc<report::Tallies>, error::ApiError> {
        let key = (campaign, visibility.clone(), period.clone());
        let cached = |version: u64| {
            self.tallies
                .lock()
                .expect("tallies cache")
                .get(&key)
                .filter(|(v, _)| *v == version)
                .map(|(_, t)| t.clone())
        };
        if let Some(t) = cached(self.storage.data_version()) {
            return Ok(t);
        }
        // Asked at once by several pages after a merge: counted once, the others wait for it.
        let _turn = self.tally_flights.turn(&key).await;
        let version = self.storage.data_version();
        if let Some(t) = cached(version) {
            return Ok(t);
        }
        let mut t = self
            .storage
            .tallies(campaign, visibility.clone(), period.clone())
            .await?;
        if let Some(template) = self.storage.template(campaign).await? {
            t.targets = std::mem::take(&mut t.targets).or_defaults(&template.targets);
        }
        let t = Arc::new(t);
        let mut cache = self.tallies.lock().expect("tallies cache");
        if cache.len() > 64 {
            cache.clear();
        }
        cache.insert(key, (version, t.clone()));
        Ok(t)
    }
}

/// Server settings.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The directory holding `fieldsync.sqlite3` (unless [`Config::database`] is set).
    pub data_dir: PathBuf,
    /// A PostgreSQL database (`postgres://user@host:port/name`) instead of SQLite in
    /// `data_dir`: any number of servers may share one.
    pub database: Option<String>,
    /// Request limits.
    pub limits: auth::Limits,
    /// Serve HTTPS with this configuration (see [`tls::config_from_pem_files`]); plain HTTP when
    /// `None` (on loopback, or behind a reverse proxy that terminates TLS).
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// Reverse proxies whose forwarded client address and scheme are believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Connection limit and read timeouts.
    pub conn: net::ConnLimits,
    /// This server's directory for attachment bytes on their way (uploads under way, previews,
    /// scratch files) and, unless [`Config::blob_store`] is set, the complete files too;
    /// `data_dir/attachments` when `None`.
    pub blob_dir: Option<PathBuf>,
    /// An S3-compatible object store (`s3://bucket/prefix`) for the complete attachment files,
    /// configured by the `AWS_*` environment variables; servers sharing one PostgreSQL database
    /// share their files through it. `None`: they are kept in [`Config::blob_dir`] (servers
    /// sharing a database must then share that directory over a network file system).
    pub blob_store: Option<String>,
    /// Options of the object store over the `AWS_*` variables (`object_store`'s keys, such as
    /// `aws_endpoint`, `aws_access_key_id`, `aws_secret_access_key`, `aws_allow_http`).
    pub blob_store_options: Vec<(String, String)>,
    /// How long a file no record refers to is kept ([`blob_gc::DEFAULT_GRACE`] when `None`).
    pub attachment_grace: Option<std::time::Duration>,
    /// The most bytes of files one campaign may keep on this server (`None`: no limit). Servers
    /// sharing a database each count the files they received since the last sweep.
    pub attachment_quota: Option<u64>,
    /// LibreOffice's program for the draft report's PDF; `soffice` on `PATH` when `None`.
    pub soffice: Option<PathBuf>,
}

impl Config {
    /// Settings with the default limits and data in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            data_dir: data_dir.into(),
            ..Default::default()
        }
    }
}

/// What the HTTP application needs besides its storage.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Request limits.
    pub limits: auth::Limits,
    /// The trusted proxies in front of the server.
    pub edge: edge::Edge,
    /// Where attachment bytes are kept (`None`: attachments are refused with 503).
    pub blobs: Option<Arc<blobs::BlobStore>>,
    /// Where the attachment sweep leaves its report.
    pub blob_sweep: blob_gc::LastSweep,
    /// The most bytes of files one campaign may keep (`None`: no limit).
    pub attachment_quota: Option<u64>,
    /// LibreOffice's program for PDFs; `soffice` on `PATH` when `None`.
    pub soffice: Option<PathBuf>,
}

/// The HTTP application over a storage, with default [`Settings`] but for `limits`.
pub fn app(storage: Arc<dyn Storage>, limits: auth::Limits) -> Router {
    app_with(
        storage,
        Settings {
            limits,
            ..Default::default()
        },
    )
}

/// The HTTP application over a storage.
pub fn app_with(storage: Arc<dyn Storage>, settings: Settings) -> Router {
    let state = Arc::new(AppState {
        storage,
        limits: settings.limits,
        rate: auth::RateLimiter::default(),
        refusals: Default::default(),
        edge: settings.edge,
        tallies: Default::default(),
        tally_flights: Default::default(),
        blobs: settings.blobs,
        blob_sweep: settings.blob_sweep,
        attachment_quota: settings.attachment_quota,
        pdf: pdf::Converter::new(settings.soffice),
    });
    routes::router()
        .fallback(ui::fallback)
        // Inside compression, so that it sees the framework's error bodies uncompressed.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            edge::resolve,
        ))
        // Outside the edge, so that its refusals (cross-site writes) are audited too.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            refusals::audit,
        ))
        .layer(CompressionLayer::new())
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Makes sure an administrator can enroll a first device: when no admin device is enrolled yet,
/// creates the admin person "管理员" if there is none and returns a fresh one-time code for them,
/// valid for `hours`. Returns `None` when an admin device exists.
pub async fn bootstrap_admin(
    storage: &Arc<dyn Storage>,
    hours: u32,
) -> Result<Option<(storage::Person, String)>, error::ApiError> {
    let devices = storage.devices().await?;
    let enrolled_admin = devices.iter().any(|d| {
        d.role == Some(fieldsync_protocol::auth::Role::Admin)
            && d.enrolled_at.is_some()
            && d.revoked_at.is_none()
    });
    if enrolled_admin {
        return Ok(None);
    }
    let people = storage.people().await?;
    let admin = match people
        .into_iter()
        .find(|p| p.role == fieldsync_protocol::auth::Role::Admin && !p.disabled)
    {
        Some(p) => p,
        None => {
            storage
                .create_person("管理员".into(), fieldsync_protocol::auth::Role::Admin, None)
                .await?
        }
    };
    let (code, _) = operations::issue_code(
        storage.as_ref(),
        operations::By::FirstStart,
        admin.id,
        hours,
    )
    .await?;
    Ok(Some((admin, code)))
}

/// Opens the storage for administration beside running servers (no merging): the PostgreSQL
/// database at `database` when given, else the SQLite storage in `dir`.
pub async fn open_admin_storage_at(
    dir: &std::path::Path,
    database: Option<&str>,
) -> Result<Arc<dyn Storage>, StartError> {
    match database {
        Some(url) => Ok(Arc::new(
            storage::postgres::PostgresStorage::open_for_admin(url).await?,
        )),
        None => open_admin_storage(dir).await,
    }
}

/// Opens the storage: the PostgreSQL database at `database` when given, else the SQLite storage
/// in `dir`.
pub async fn open_storage_at(
    dir: &std::path::Path,
    database: Option<&str>,
) -> Result<Arc<dyn Storage>, StartError> {
    match database {
        Some(url) => Ok(Arc::new(
            storage::postgres::PostgresStorage::open(url).await?,
        )),
        None => open_storage(dir).await,
    }
}

/// Opens the SQLite storage in `dir` for administration beside a running server (no merging).
pub async fn open_admin_storage(dir: &std::path::Path) -> Result<Arc<dyn Storage>, StartError> {
    let dir = dir.to_path_buf();
    let storage = tokio::task::spawn_blocking(move || SqliteStorage::open_for_admin(&dir))
        .await
        .map_err(|e| storage::StorageError::Other(e.to_string()))??;
    Ok(Arc::new(storage))
}

/// Opens the SQLite storage in `dir` off the async threads.
pub async fn open_storage(dir: &std::path::Path) -> Result<Arc<dyn Storage>, StartError> {
    let dir = dir.to_path_buf();
    let storage = tokio::task::spawn_blocking(move || SqliteStorage::open(&dir))
        .await
        .map_err(|e| storage::StorageError::Other(e.to_string()))??;
    Ok(Arc::new(storage))
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The storage could not be opened.
    #[error("cannot open the data directory: {0}")]
    Storage(#[from] storage::StorageError),
    /// Serving failed.
    #[error("serving failed: {0}")]
    Io(#[from] std::io::Error),
    /// The object store for attachments could not be used as configured.
    #[error(transparent)]
    Blobs(#[from] blobs::ObjectShelfError),
}

/// Serves fieldsync on `listener` until `shutdown` completes, then finishes the requests under
/// way, flushes the storage and returns.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let storage = open_storage_at(&config.data_dir, config.database.as_deref()).await?;
    tracing::info!(
        address = %listener.local_addr()?,
        data_dir = %config.data_dir.display(),
        postgres = config.database.is_some(),
        "fieldsync server listening"
    );
    let blob_dir = config
        .blob_dir
        .unwrap_or_else(|| config.data_dir.join("attachments"));
    let blobs = Arc::new(match config.blob_store.as_deref() {
        None => blobs::BlobStore::new(&blob_dir),
        Some(address) => blobs::BlobStore::with_shelf(
            &blob_dir,
            Arc::new(blobs::ObjectShelf::s3(address, &config.blob_store_options)?),
        ),
    });
    tracing::info!(files = %blobs.shelf().describe(), "attachment files");
    let blob_sweep = blob_gc::LastSweep::default();
    let sweeper = tokio::spawn(blob_gc::run(
        storage.clone(),
        blobs.clone(),
        config.attachment_grace.unwrap_or(blob_gc::DEFAULT_GRACE),
        blob_sweep.clone(),
        // A quota needs the figures at once; otherwise the first sweep waits a minute.
        if config.attachment_quota.is_some() {
            std::time::Duration::ZERO
        } else {
            std::time::Duration::from_secs(60)
        },
    ));
    let router = app_with(
        storage.clone(),
        Settings {
            limits: config.limits,
            edge: edge::Edge {
                trusted_proxies: config.trusted_proxies,
            },
            blobs: Some(blobs),
            blob_sweep,
            attachment_quota: config.attachment_quota,
            soffice: config.soffice,
        },
    );
    let served = net::serve(listener, config.tls, router, config.conn, shutdown).await;
    sweeper.abort();
    served?;
    storage.close().await;
    tracing::info!("fieldsync server stopped");
    Ok(())
}
