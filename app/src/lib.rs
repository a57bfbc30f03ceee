//! fieldsync-app: the field app, a web app that runs on the device next to its client-core
//! [`Store`], on 127.0.0.1 only, so that the same app can later run inside the phone apps'
//! WebView shells.
//!
//! - [`guard`]: the local web app's security: the launch secret (cookie), the `Host` check
//!   (DNS rebinding) and the CSRF token every POST carries.
//! - [`page`]: the page shell, the language switch and the style sheet.
//! - [`fields`]: one form field per template field type: rendering and parsing what was typed.
//! - [`progress`]: a village's progress as the device holds it (the home page's cards).
//! - [`routes`]: the pages (home, village, forms, lists, records, conflicts, sync).
//! - [`syncing`]: the background sync (one at a time, on a second handle of the store) and its
//!   progress.
//! - [`script`]: the one bundled script (autosave of forms, live sync progress); every page
//!   works without it.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! let store = fieldsync_client_core::Store::open("device.sqlite3").unwrap();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let options = fieldsync_app::AppOptions::default();
//! println!("{}", options.launch_url(listener.local_addr()?));
//! fieldsync_app::serve(listener, store, options, std::future::pending()).await
//! # }
//! ```

pub mod fields;
pub mod guard;
pub mod page;
pub mod progress;
pub mod routes;
pub mod script;
pub mod syncing;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use axum::Router;
use fieldsync_client_core::{HttpOptions, Store};

pub use guard::Secret;

/// How the app is started.
#[derive(Debug, Clone, Default)]
pub struct AppOptions {
    /// The per-launch secret (a fresh random one by default).
    pub secret: Secret,
    /// How sync reaches the enrolled server.
    pub http: HttpOptions,
}

impl AppOptions {
    /// The address to open in the browser: it hands the secret over once, the app then keeps
    /// it in a cookie and drops it from the address.
    pub fn launch_url(&self, addr: SocketAddr) -> String {
        format!("http://{addr}/?secret={}", self.secret.expose())
    }
}

/// Why a page could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] fieldsync_client_core::StoreError),
    /// A form could not be saved or read.
    #[error(transparent)]
    Form(#[from] fieldsync_client_core::FormError),
    /// A blocking task panicked or was cancelled.
    #[error("后台任务失败 / a background task failed: {0}")]
    Task(String),
    /// The store is encrypted and its key has not been given yet (see [`serve_locked`]).
    #[error("本机数据已加密，尚未解锁 / this device's data is encrypted and not unlocked yet")]
    Locked,
}

/// What every page handler shares: the store (behind a mutex: `Send`, not `Sync`), the secret
/// and the port the app listens on (for the `Host` check).
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    /// Set once: at the start, or when the key of an encrypted store is given.
    store: OnceLock<Arc<Mutex<Store>>>,
    /// The encrypted store's file while it waits for its key.
    locked: Option<PathBuf>,
    secret: Secret,
    port: u16,
    http: HttpOptions,
    /// A message shown once on the next page (the result of a sync, a deletion).
    flash: Mutex<Option<(String, String)>>,
    /// The background sync.
    syncer: syncing::Syncer,
    /// A village's files being fetched: (village, done, all).
    fetching: Mutex<Option<(String, usize, usize)>>,
}

impl AppState {
    /// State for an app listening on `port`.
    pub fn new(store: Store, options: AppOptions, port: u16) -> Self {
        let state = Self::with(None, options, port);
        state.unlock(store);
        state
    }

    /// State for an app whose store, the encrypted file at `path`, waits for its key: every
    /// page but the key page (and the language switch) leads to the key page.
    pub fn locked(path: PathBuf, options: AppOptions, port: u16) -> Self {
        Self::with(Some(path), options, port)
    }

    fn with(locked: Option<PathBuf>, options: AppOptions, port: u16) -> Self {
        AppState {
            inner: Arc::new(Inner {
                store: OnceLock::new(),
                locked,
                secret: options.secret,
                port,
                http: options.http,
                flash: Mutex::new(None),
                syncer: syncing::Syncer::default(),
                fetching: Mutex::new(None),
            }),
        }
    }

    /// The file of an encrypted store still waiting for its key (`None` once it is open).
    pub fn locked_path(&self) -> Option<&Path> {
        match self.inner.store.get() {
            Some(_) => None,
            None => self.inner.locked.as_deref(),
        }
    }

    /// Gives the app its store (the key page's work); `false` when it had one already.
    pub fn unlock(&self, store: Store) -> bool {
        self.inner.store.set(Arc::new(Mutex::new(store))).is_ok()
    }

    fn store(&self) -> Result<Arc<Mutex<Store>>, AppError> {
        self.inner.store.get().cloned().ok_or(AppError::Locked)
    }

    /// The secret this launch accepts.
    pub fn secret(&self) -> &Secret {
        &self.inner.secret
    }

    /// The port the app listens on.
    pub fn port(&self) -> u16 {
        self.inner.port
    }

    /// How sync reaches the server.
    pub fn http(&self) -> &HttpOptions {
        &self.inner.http
    }

    /// Runs `f` on the store on a blocking thread (SQLite never runs on the async threads).
    pub async fn with_store<T, F>(&self, f: F) -> Result<T, AppError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> Result<T, AppError> + Send + 'static,
    {
        let store = self.store()?;
        tokio::task::spawn_blocking(move || {
            let mut guard = store.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| AppError::Task(e.to_string()))?
    }

    /// The background sync's state.
    pub fn syncer(&self) -> &syncing::Syncer {
        &self.inner.syncer
    }

    /// Starts a sync in the background unless one is running (then `false`). It runs on a
    /// second handle of the store (its own SQLite connection: pages keep answering, and SQLite's
    /// WAL keeps the two writers apart); a store that cannot be opened twice (in memory) is
    /// synced through the pages' handle instead. The result is the next page's message.
    pub async fn start_sync(&self) -> Result<bool, AppError> {
        if !self.inner.syncer.begin() {
            return Ok(false);
        }
        let second = self.with_store(|s| Ok(s.reopen().ok())).await;
        let second = match second {
            Ok(h) => h,
            Err(e) => {
                self.inner.syncer.end();
                return Err(e);
            }
        };
        let shared = match self.store() {
            Ok(s) => s,
            Err(e) => {
                self.inner.syncer.end();
                return Err(e);
            }
        };
        let state = self.clone();
        let thread = std::thread::Builder::new()
            .name("fieldsync-app-sync".into())
            .spawn(move || {
                let http = state.inner.http.clone();
                let result = match second {
                    Some(mut store) => {
                        let result = state.inner.syncer.run(&mut store, &http);
                        state.follow_wipe(&shared, &store);
                        result
                    }
                    None => {
                        let mut store = shared.lock().unwrap_or_else(|p| p.into_inner());
                        state.inner.syncer.run(&mut store, &http)
                    }
                };
                let (zh, en) = syncing::sync_message(&result);
                state.set_flash(zh, en);
                state.inner.syncer.end();
            });
        if let Err(e) = thread {
            self.inner.syncer.end();
            return Err(AppError::Task(e.to_string()));
        }
        Ok(true)
    }

    /// After a sync on a second handle wiped the store (an administrator revoked the device),
    /// the pages' handle starts over on the wiped file too: it would otherwise keep the old
    /// device id and actor in memory, and a new enrollment in the same launch would be refused.
    fn follow_wipe(&self, shared: &Mutex<Store>, synced: &Store) {
        let mut main = shared.lock().unwrap_or_else(|p| p.into_inner());
        if main.device_id() != synced.device_id()
            && let Ok(fresh) = main.reopen()
        {
            *main = fresh;
        }
    }

    /// The village whose files are being fetched, with how many of how many are done.
    pub fn fetching(&self) -> Option<(String, usize, usize)> {
        self.inner
            .fetching
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Starts fetching every file of village `code` this device lacks, in the background on a
    /// second handle of the store (unless a fetch runs: then `false`). The result is the next
    /// page's message.
    pub async fn start_fetch(&self, code: String) -> Result<bool, AppError> {
        {
            let mut f = self
                .inner
                .fetching
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if f.is_some() {
                return Ok(false);
            }
            *f = Some((code.clone(), 0, 0));
        }
        let second = self.with_store(|s| Ok(s.reopen().ok())).await;
        let Ok(Some(mut store)) = second else {
            *self
                .inner
                .fetching
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = None;
            return Err(AppError::Task(
                "本机数据不能在后台打开 / the store cannot be opened in the background".into(),
            ));
        };
        let state = self.clone();
        std::thread::Builder::new()
            .name("fieldsync-app-fetch".into())
            .spawn(move || {
                let http = state.inner.http.clone();
                let campaign = routes::campaign_of(&store)
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                let result = fieldsync_client_core::account::transport(&store, &http)
                    .map_err(|e| e.to_string())
                    .and_then(|mut t| {
                        fieldsync_client_core::attachments::fetch_village(
                            &mut store,
                            &mut t,
                            (campaign, &code),
                            &mut |done, all| {
                                *state.inner.fetching.lock().unwrap_or_else(|p| p.into_inner()) =
                                    Some((code.clone(), done, all));
                            },
                        )
                        .map_err(|e| e.to_string())
                    });
                let (zh, en) = match result {
                    Ok(r) if r.failed.is_empty() => (
                        format!("本村附件已全部在本机：新下载 {} 个，原有 {} 个，可离线查看", r.fetched, r.here),
                        format!("all of the village's files are on this device: {} downloaded, {} already here; they open offline", r.fetched, r.here),
                    ),
                    Ok(r) => (
                        format!(
                            "新下载 {} 个附件；{} 个暂时下载不了：{}",
                            r.fetched,
                            r.failed.len(),
                            r.failed.iter().map(|(n, e)| format!("{n}（{e}）")).collect::<Vec<_>>().join("；")
                        ),
                        format!(
                            "{} files downloaded; {} could not be had now: {}",
                            r.fetched,
                            r.failed.len(),
                            r.failed.iter().map(|(n, e)| format!("{n} ({e})")).collect::<Vec<_>>().join("; ")
                        ),
                    ),
                    Err(e) => (
                        format!("附件下载中断，已下载的保留在本机，稍后再试：{e}"),
                        format!("the download stopped; what arrived is kept here: try again later ({e})"),
                    ),
                };
                state.set_flash(zh, en);
                *state.inner.fetching.lock().unwrap_or_else(|p| p.into_inner()) = None;
            })
            .map_err(|e| AppError::Task(e.to_string()))?;
        Ok(true)
    }

    /// Keeps a message (Chinese, English) for the next page.
    pub fn set_flash(&self, zh: String, en: String) {
        *self.inner.flash.lock().unwrap_or_else(|p| p.into_inner()) = Some((zh, en));
    }

    /// Takes the message kept for this page, if any.
    pub fn take_flash(&self) -> Option<(String, String)> {
        self.inner
            .flash
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

/// The app's routes behind its guard (secret cookie, `Host`, CSRF); while the store waits for
/// its key, the key page instead of every other.
pub fn router(state: AppState) -> Router {
    routes::routes()
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            routes::unlock::while_locked,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        .with_state(state)
}

/// Serves the app on `listener` (which must be bound to a loopback address) over `store` until
/// `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Store,
    options: AppOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let port = loopback_port(&listener)?;
    serve_state(listener, AppState::new(store, options, port), shutdown).await
}

/// Serves the app over the encrypted store at `path`, whose key was not given: the first page
/// asks for the key file, and the app opens the store with it (`Store::open_encrypted`) and
/// goes on as [`serve`] does.
pub async fn serve_locked(
    listener: tokio::net::TcpListener,
    path: PathBuf,
    options: AppOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let port = loopback_port(&listener)?;
    serve_state(listener, AppState::locked(path, options, port), shutdown).await
}

async fn serve_state(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The listener's port, refusing one that is not on a loopback address.
fn loopback_port(listener: &tokio::net::TcpListener) -> std::io::Result<u16> {
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "外业应用只在本机地址上运行 / the field app listens on loopback only, not {addr}"
            ),
        ));
    }
    Ok(addr.port())
}
