//! fieldsync server: reconciles the changes of every field device and keeps the merged records.
//!
//! - [`app`] builds the axum [`Router`] (testable without a socket);
//! - [`run`] serves it on a given listener until a shutdown future completes;
//! - [`storage`] is where the change log and merged records live ([`storage::Storage`], with
//!   [`storage::sqlite::SqliteStorage`] as the embedded default);
//! - [`sync`] holds the push and pull endpoints, [`api`] the JSON read endpoints, [`error`] the
//!   one error type that every failure becomes;
//! - [`report`] turns a campaign's records into what the department reads: tallies, search
//!   hits, CSV exports and the draft report.

pub mod api;
pub mod error;
pub mod report;
pub mod storage;
pub mod sync;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use axum::{
    Router,
    extract::DefaultBodyLimit,
    routing::{get, post},
};
use fieldsync_protocol::wire::{MAX_COMPRESSED_PUSH_BYTES, PULL_PATH, PUSH_PATH};
use tokio::net::TcpListener;
use tower_http::{compression::CompressionLayer, trace::TraceLayer};

use crate::storage::{Storage, sqlite::SqliteStorage};

/// What the handlers share.
pub struct AppState {
    /// Where everything is stored.
    pub storage: Arc<dyn Storage>,
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The directory holding `fieldsync.sqlite3`.
    pub data_dir: PathBuf,
}

/// The HTTP application over a storage.
pub fn app(storage: Arc<dyn Storage>) -> Router {
    let state = Arc::new(AppState { storage });
    Router::new()
        .route("/health", get(api::health))
        .route("/v1/status", get(api::status))
        .route("/v1/records", get(api::records))
        .route("/v1/records/{id}", get(api::record))
        .route("/v1/records/{id}/conflicts", get(api::conflicts))
        .route("/v1/search", get(api::search))
        .route("/v1/openapi.json", get(api::openapi))
        .route("/v1/campaigns/{id}/tallies", get(api::tallies))
        .route("/v1/campaigns/{id}/report.md", get(api::report_markdown))
        .route("/v1/campaigns/{id}/report.docx", get(api::report_docx))
        .route("/v1/campaigns/{id}/export.xlsx", get(api::export_xlsx))
        .route("/v1/campaigns/{id}/export/{kind}", get(api::export_csv))
        .route(PULL_PATH, get(sync::pull))
        .route(
            PUSH_PATH,
            post(sync::push).layer(DefaultBodyLimit::max(MAX_COMPRESSED_PUSH_BYTES)),
        )
        .fallback(|| async { error::ApiError::not_found("no such endpoint; see docs/PROTOCOL.md") })
        .layer(CompressionLayer::new())
        .layer(TraceLayer::new_for_http())
        .with_state(state)
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
}

/// Serves fieldsync on `listener` until `shutdown` completes, then finishes the requests under
/// way, flushes the storage and returns.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let dir = config.data_dir.clone();
    let storage = tokio::task::spawn_blocking(move || SqliteStorage::open(&dir))
        .await
        .map_err(|e| storage::StorageError::Other(e.to_string()))??;
    let storage: Arc<dyn Storage> = Arc::new(storage);
    tracing::info!(
        address = %listener.local_addr()?,
        data_dir = %config.data_dir.display(),
        "fieldsync server listening"
    );
    axum::serve(listener, app(storage.clone()))
        .with_graceful_shutdown(shutdown)
        .await?;
    storage.close().await;
    tracing::info!("fieldsync server stopped");
    Ok(())
}
