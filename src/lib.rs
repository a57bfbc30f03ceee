//! Shared fixtures for fieldsync's integration tests, examples and benchmarks: a real server on
//! a loopback port with its data in a temp dir ([`TestServer`]), a TCP proxy that counts and cuts
//! traffic ([`proxy::Proxy`]), a realistic campaign generator ([`generator`]), and small helpers
//! to read the server's JSON API.

pub mod generator;
pub mod proxy;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, bail};

/// A fieldsync server running on `127.0.0.1:<free port>` in its own thread and runtime, with its
/// data in a directory this value owns (unless given one). Dropping it stops the server.
pub struct TestServer {
    /// The address it listens on.
    pub addr: SocketAddr,
    data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
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

    /// Starts a server on `data_dir` (kept after the server stops).
    pub fn start_in(data_dir: &Path) -> anyhow::Result<Self> {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let dir = data_dir.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("test-server".into())
            .spawn(move || -> anyhow::Result<()> {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()?;
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                    addr_tx.send(listener.local_addr()?)?;
                    fieldsync_server::run(
                        listener,
                        fieldsync_server::Config { data_dir: dir },
                        async {
                            let _ = shutdown_rx.await;
                        },
                    )
                    .await?;
                    Ok(())
                })
            })?;
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(30))
            .context("the test server did not start")?;
        Ok(TestServer {
            addr,
            data_dir: data_dir.to_path_buf(),
            _temp: None,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
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

    /// GETs a JSON endpoint.
    pub fn get_json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let resp = reqwest::blocking::get(format!("{}{}", self.url(), path))?;
        let status = resp.status();
        let body: serde_json::Value = resp.json()?;
        if !status.is_success() {
            bail!("GET {path}: {status} {body}");
        }
        Ok(body)
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
