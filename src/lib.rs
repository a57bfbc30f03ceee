//! Shared fixtures for fieldsync's integration tests, examples and benchmarks: a real server on
//! a loopback port with its data in a temp dir ([`TestServer`]), a TCP proxy that counts and cuts
//! traffic ([`proxy::Proxy`]), a realistic campaign generator ([`generator`]), and small helpers
//! to read the server's JSON API, an S3-compatible object store ([`s3`]), and what the benchmarks
//! share ([`bench`]: a server in a child process, peak memory and CPU from /proc).

/// `story!(name, …)` makes the tests `name::sqlite` and `name::postgres` of each story `name`, a
/// function of the test file taking the [`Backend`] to run on: one story, both storages.
#[macro_export]
macro_rules! story {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() -> anyhow::Result<()> {
                super::$name($crate::Backend::Sqlite)
            }
            #[test]
            fn postgres() -> anyhow::Result<()> {
                super::$name($crate::Backend::Postgres)
            }
        }
    )*};
}

pub mod balancer;
pub mod bench;
pub mod fixtures;
pub mod generator;
pub mod postgres;
pub mod proxy;
pub mod s3;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, bail};
use fieldsync_client_core::{HttpTransport, Store};
use fieldsync_protocol::auth::Role;
use serde_json::{Value, json};

/// Device tokens the fixtures enrolled, by device id: a device keeps its token across server
/// restarts on the same data, as a real device does.
fn tokens() -> &'static Mutex<HashMap<uuid::Uuid, String>> {
    static TOKENS: OnceLock<Mutex<HashMap<uuid::Uuid, String>>> = OnceLock::new();
    TOKENS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The admin token of each [`TestServer`] started in this process, by URL.
fn admin_tokens() -> &'static Mutex<HashMap<String, String>> {
    static ADMINS: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    ADMINS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Sends a request with `token` to the server at `url`; returns the status and the JSON body
/// (a string when the body is not JSON).
pub fn request(
    url: &str,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<(u16, Value)> {
    let client = reqwest::blocking::Client::new();
    let mut req = client
        .request(method, format!("{url}{path}"))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send()?;
    let status = resp.status().as_u16();
    let text = resp.text()?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((status, body))
}

/// Adds a person through the admin API of the server at `url`; returns their id.
pub fn add_person(
    url: &str,
    admin_token: &str,
    name: &str,
    role: Role,
    group: Option<uuid::Uuid>,
) -> anyhow::Result<uuid::Uuid> {
    let (status, body) = request(
        url,
        admin_token,
        reqwest::Method::POST,
        "/v1/admin/people",
        Some(json!({ "name": name, "role": role, "group": group })),
    )?;
    if status != 201 {
        bail!("adding {name}: {status} {body}");
    }
    Ok(uuid::Uuid::parse_str(
        body["id"].as_str().unwrap_or_default(),
    )?)
}

/// Issues a one-time enrollment code for a person through the admin API.
pub fn code_for(url: &str, admin_token: &str, person: uuid::Uuid) -> anyhow::Result<String> {
    let (status, body) = request(
        url,
        admin_token,
        reqwest::Method::POST,
        &format!("/v1/admin/people/{person}/codes"),
        Some(json!({})),
    )?;
    if status != 201 {
        bail!("code for {person}: {status} {body}");
    }
    Ok(body["code"].as_str().unwrap_or_default().to_string())
}

/// The token of `device` on the server at `url`, enrolling it as an administrator the first
/// time; the fixture keeps tokens by device id across server restarts, as a device would.
pub fn token_for(url: &str, admin_token: &str, device: uuid::Uuid) -> anyhow::Result<String> {
    if let Some(t) = tokens().lock().expect("tokens").get(&device) {
        return Ok(t.clone());
    }
    let person = add_person(
        url,
        admin_token,
        &format!("设备 {device}"),
        Role::Admin,
        None,
    )?;
    let code = code_for(url, admin_token, person)?;
    let mut t = HttpTransport::new(url)?;
    let e = t.enroll(device, &code, "test device")?;
    tokens()
        .lock()
        .expect("tokens")
        .insert(device, e.token.clone());
    Ok(e.token)
}

fn admin_token_for(url: &str) -> anyhow::Result<String> {
    admin_tokens()
        .lock()
        .expect("admin tokens")
        .get(url.trim_end_matches('/'))
        .cloned()
        .with_context(|| format!("no TestServer at {url} in this process"))
}

/// Enrolls `store`'s device at the server at `url` for a new person with `role` (and `group`);
/// [`connect`] then uses that token.
pub fn enroll_at(
    url: &str,
    store: &Store,
    name: &str,
    role: Role,
    group: Option<uuid::Uuid>,
) -> anyhow::Result<()> {
    let admin = admin_token_for(url)?;
    let person = add_person(url, &admin, name, role, group)?;
    let code = code_for(url, &admin, person)?;
    let mut t = HttpTransport::new(url)?;
    let e = t.enroll(store.device_id(), &code, &format!("{name}的设备"))?;
    tokens()
        .lock()
        .expect("tokens")
        .insert(store.device_id(), e.token);
    Ok(())
}

/// Waits (at most ~60 s) until the server at `url` has merged every stored change.
pub fn wait_merged_at(url: &str) -> anyhow::Result<()> {
    let admin = admin_token_for(url)?;
    for _ in 0..1200 {
        let (_, status) = request(url, &admin, reqwest::Method::GET, "/v1/status", None)?;
        if status["unmerged_records"] == 0 {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("the server at {url} did not finish merging")
}

/// Makes [`connect`] work with a server not started by this process, given an administrator's
/// token for it.
pub fn register_server(url: &str, admin_token: &str) {
    admin_tokens().lock().expect("admin tokens").insert(
        url.trim_end_matches('/').to_string(),
        admin_token.to_string(),
    );
}

/// A transport for `store`'s device to the [`TestServer`] at `url` (started in this process),
/// enrolled as an administrator the first time.
pub fn connect(url: &str, store: &Store) -> anyhow::Result<HttpTransport> {
    let admin = admin_token_for(url)?;
    Ok(HttpTransport::new(url)?.with_token(token_for(url, &admin, store.device_id())?))
}

/// Where a [`TestServer`] keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite in the server's data directory (the default).
    Sqlite,
    /// A fresh database on this process's PostgreSQL cluster ([`postgres::cluster`]).
    Postgres,
}

impl Backend {
    /// Both, for stories that must hold on each.
    pub const ALL: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

    /// The `--database` setting of a new server on this backend: `None` for SQLite, a fresh
    /// database's URL for PostgreSQL.
    pub fn fresh_database(self) -> anyhow::Result<Option<String>> {
        match self {
            Backend::Sqlite => Ok(None),
            Backend::Postgres => Ok(Some(postgres::database()?)),
        }
    }
}

/// A fieldsync server running on `127.0.0.1:<free port>` in its own thread and runtime, with its
/// data in a directory this value owns (unless given one). Dropping it stops the server.
///
/// Every start enrolls an administrator device for the fixture itself ([`TestServer::get_json`]
/// and the admin helpers use its token); [`TestServer::connect`] enrolls a store's device as an
/// administrator so that tests about sync see everything.
pub struct TestServer {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The fixture's own administrator token.
    pub admin_token: String,
    /// The device id that token belongs to.
    pub admin_device: uuid::Uuid,
    data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    kill: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// Starts a server on a fresh temp directory.
    pub fn start() -> anyhow::Result<Self> {
        let temp = tempfile::tempdir()?;
        let mut s = Self::start_in(temp.path())?;
        s._temp = Some(temp);
        Ok(s)
    }

    /// Starts a server on a fresh temp directory with its data on `backend` (for PostgreSQL, a
    /// fresh database of this process's cluster, [`postgres::database`]).
    pub fn start_on(backend: Backend) -> anyhow::Result<Self> {
        let database = backend.fresh_database()?;
        Self::start_with_config(move |c| c.database = database)
    }

    /// Starts a server on `data_dir` (kept after the server stops).
    pub fn start_in(data_dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(data_dir, fieldsync_server::auth::Limits::default())
    }

    /// Starts a server on `data_dir` with the given request limits.
    pub fn start_with(
        data_dir: &Path,
        limits: fieldsync_server::auth::Limits,
    ) -> anyhow::Result<Self> {
        Self::start_configured(data_dir, move |c| c.limits = limits)
    }

    /// Starts a server on a fresh temp directory with settings changed by `configure` (trusted
    /// proxies, connection limits and timeouts, request limits; the data directory is set).
    pub fn start_with_config(
        configure: impl FnOnce(&mut fieldsync_server::Config) + Send + 'static,
    ) -> anyhow::Result<Self> {
        let temp = tempfile::tempdir()?;
        let mut s = Self::start_configured(temp.path(), configure)?;
        s._temp = Some(temp);
        Ok(s)
    }

    /// Starts a server on `data_dir` with settings changed by `configure`.
    pub fn start_configured(
        data_dir: &Path,
        configure: impl FnOnce(&mut fieldsync_server::Config) + Send + 'static,
    ) -> anyhow::Result<Self> {
        Self::start_at(data_dir, SocketAddr::from(([127, 0, 0, 1], 0)), configure)
    }

    /// Starts a server on `data_dir` listening on `bind` (port 0: a free one).
    fn start_at(
        data_dir: &Path,
        bind: SocketAddr,
        configure: impl FnOnce(&mut fieldsync_server::Config) + Send + 'static,
    ) -> anyhow::Result<Self> {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let (kill_tx, kill_rx) = tokio::sync::oneshot::channel::<()>();
        let dir = data_dir.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("test-server".into())
            .spawn(move || -> anyhow::Result<()> {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()?;
                let serve = async move {
                    let mut config = fieldsync_server::Config::new(&dir);
                    configure(&mut config);
                    config.data_dir = dir;
                    // An administrator code for the fixture, as `fieldsync-server admin` would
                    // issue one.
                    let storage = fieldsync_server::open_storage_at(
                        &config.data_dir,
                        config.database.as_deref(),
                    )
                    .await?;
                    let admin = storage
                        .create_person("测试管理员".into(), Role::Admin, None)
                        .await?;
                    let code = fieldsync_server::admin::issue(storage.as_ref(), admin.id, 1)
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    storage.close().await;
                    drop(storage);
                    let listener = tokio::net::TcpListener::bind(bind).await?;
                    addr_tx.send((listener.local_addr()?, code.0))?;
                    fieldsync_server::run(listener, config, async {
                        let _ = shutdown_rx.await;
                    })
                    .await?;
                    Ok(())
                };
                // A kill drops every task of the runtime where it stands (connections cut, open
                // transactions rolled back), as a crashed process would.
                let result = rt.block_on(async move {
                    tokio::select! {
                        r = serve => r,
                        Ok(()) = kill_rx => Ok(()),
                    }
                });
                rt.shutdown_background();
                result
            })?;
        let (addr, code) = addr_rx
            .recv_timeout(Duration::from_secs(30))
            .context("the test server did not start")?;
        let mut t = HttpTransport::new(&format!("http://{addr}"))?;
        let admin_device = uuid::Uuid::new_v4();
        let admin = t.enroll(admin_device, &code, "测试管理员的电脑")?;
        admin_tokens()
            .lock()
            .expect("admin tokens")
            .insert(format!("http://{addr}"), admin.token.clone());
        Ok(TestServer {
            addr,
            admin_token: admin.token,
            admin_device,
            data_dir: data_dir.to_path_buf(),
            _temp: None,
            shutdown: Some(shutdown_tx),
            kill: Some(kill_tx),
            thread: Some(thread),
        })
    }

    /// Sends a request with `token` (the fixture's admin token when `None`) and returns the
    /// status and the JSON body (a string when the body is not JSON).
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        request(
            &self.url(),
            token.unwrap_or(&self.admin_token),
            method,
            path,
            body,
        )
    }

    /// Adds a person through the admin API; returns their id.
    pub fn add_person(
        &self,
        name: &str,
        role: Role,
        group: Option<uuid::Uuid>,
    ) -> anyhow::Result<uuid::Uuid> {
        add_person(&self.url(), &self.admin_token, name, role, group)
    }

    /// Issues a one-time enrollment code for a person through the admin API.
    pub fn code_for(&self, person: uuid::Uuid) -> anyhow::Result<String> {
        code_for(&self.url(), &self.admin_token, person)
    }

    /// Enrolls `store`'s device for a new person with `role` (and `group`), keeping the token in
    /// the store as `fieldsync enroll` does; returns a transport carrying it.
    pub fn enroll(
        &self,
        store: &mut Store,
        name: &str,
        role: Role,
        group: Option<uuid::Uuid>,
    ) -> anyhow::Result<HttpTransport> {
        let person = self.add_person(name, role, group)?;
        let code = self.code_for(person)?;
        let e = fieldsync_client_core::account::enroll(
            store,
            &self.url(),
            &code,
            name,
            &Default::default(),
        )?;
        tokens()
            .lock()
            .expect("tokens")
            .insert(store.device_id(), e.token.clone());
        Ok(HttpTransport::new(&self.url())?.with_token(e.token))
    }

    /// The token of `store`'s device, enrolling it as an administrator the first time (the
    /// fixture keeps the token, by device id).
    pub fn token_for(&self, store: &Store) -> anyhow::Result<String> {
        token_for(&self.url(), &self.admin_token, store.device_id())
    }

    /// A transport to this server for `store`'s device (enrolled as an administrator).
    pub fn connect(&self, store: &Store) -> anyhow::Result<HttpTransport> {
        Ok(HttpTransport::new(&self.url())?.with_token(self.token_for(store)?))
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Kills the server: its runtime and every request under way are dropped at once, without
    /// finishing anything (its storage is not closed), as when the process dies.
    pub fn kill(&mut self) {
        if let Some(tx) = self.kill.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.shutdown = None;
    }

    /// Stops the server gracefully and starts it again on the same data directory and the same
    /// address (default settings), as after an outage: devices find it where they left it, and
    /// their tokens still hold. The fixture's administrator token is a new one.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop()?;
        let mut again = Self::start_at(&self.data_dir, self.addr, |_| {})?;
        self.admin_token = std::mem::take(&mut again.admin_token);
        self.admin_device = again.admin_device;
        self.shutdown = again.shutdown.take();
        self.kill = again.kill.take();
        self.thread = again.thread.take();
        Ok(())
    }

    /// Stops the server gracefully and waits for it.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            match t.join() {
                Ok(r) => r?,
                Err(_) => bail!("the server thread panicked"),
            }
        }
        Ok(())
    }

    /// GETs a JSON endpoint with the fixture's admin token.
    pub fn get_json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let (status, body) = self.request(reqwest::Method::GET, path, None, None)?;
        if !(200..300).contains(&status) {
            bail!("GET {path}: {status} {body}");
        }
        Ok(body)
    }

    /// GETs any endpoint with the fixture's admin token (for files: CSV, XLSX, DOCX).
    pub fn get(&self, path: &str) -> anyhow::Result<reqwest::blocking::Response> {
        Ok(reqwest::blocking::Client::new()
            .get(format!("{}{}", self.url(), path))
            .bearer_auth(&self.admin_token)
            .send()?)
    }

    /// Approves records of `campaign` as a reviewer does on the dashboard's review page (the
    /// fixture's administrator, with its session cookie).
    pub fn approve<S: AsRef<str>>(&self, campaign: uuid::Uuid, ids: &[S]) -> anyhow::Result<()> {
        let body: Vec<String> = ids.iter().map(|id| format!("id={}", id.as_ref())).collect();
        let r = reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?
            .post(format!("{}/ui/c/{campaign}/review", self.url()))
            .header("cookie", format!("fieldsync_session={}", self.admin_token))
            .header("origin", self.url())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("{}&decision=approved", body.join("&")))
            .send()?;
        anyhow::ensure!(r.status() == 303, "approve: {}", r.status());
        Ok(())
    }

    /// Waits (at most ~30 s, polling) until every stored change has been merged into its record.
    pub fn wait_merged(&self) -> anyhow::Result<serde_json::Value> {
        for _ in 0..600 {
            let status = self.get_json("/v1/status")?;
            if status["unmerged_records"] == 0 {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("the server did not finish merging")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
