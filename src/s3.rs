//! A real S3-compatible object store for tests: moto's server (the S3 API in one Python
//! process, keeping objects in memory), started on a free 127.0.0.1 port with one bucket and
//! stopped when dropped.
//!
//! The program is `FIELDSYNC_MOTO` when set, else `moto_server` on `PATH`, else the one in
//! `target/s3-venv/`, installed there with pip (moto\[server\] at [`MOTO_VERSION`], from PyPI)
//! when it is missing, as the browser test installs Chromium: `cargo test` needs no service.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

/// The moto release the tests install.
pub const MOTO_VERSION: &str = "5.2.6";

/// A running S3-compatible server with one empty bucket.
#[derive(Debug)]
pub struct S3Server {
    child: Child,
    /// Its address, `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The bucket made for the test.
    pub bucket: String,
}

fn venv() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/s3-venv")
}

/// The `moto_server` program, installed into `target/s3-venv` when it is nowhere else.
fn program() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("FIELDSYNC_MOTO") {
        return Ok(PathBuf::from(p));
    }
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v moto_server"])
        .output()
        && out.status.success()
    {
        return Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    }
    let bin = venv().join("bin/moto_server");
    if bin.exists() {
        return Ok(bin);
    }
    // One installer at a time among the tests of this process.
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    if !bin.exists() {
        eprintln!(
            "installing moto[server]=={MOTO_VERSION} into {}",
            venv().display()
        );
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(venv())
            .status()
            .context("python3 is needed to run the S3-compatible test server (moto)")?;
        ensure!(
            made.success(),
            "python3 -m venv {} failed",
            venv().display()
        );
        let installed = Command::new(venv().join("bin/pip"))
            .args(["install", "-q", &format!("moto[server]=={MOTO_VERSION}")])
            .status()
            .context("pip in the test venv")?;
        ensure!(
            installed.success(),
            "pip install moto[server]=={MOTO_VERSION} failed (PyPI unreachable?); set \
             FIELDSYNC_MOTO to a moto_server program to use another"
        );
    }
    Ok(bin)
}

impl S3Server {
    /// Starts a server on a free loopback port and makes bucket `bucket` on it.
    pub fn start(bucket: &str) -> anyhow::Result<Self> {
        let program = program()?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let server = S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            bucket: bucket.to_string(),
        };
        let client = reqwest::blocking::Client::new();
        let started = Instant::now();
        loop {
            // Moto answers without checking signatures: a plain PUT makes the bucket.
            match client
                .put(format!("{}/{bucket}", server.endpoint))
                .timeout(Duration::from_secs(5))
                .send()
            {
                Ok(r) if r.status().is_success() => break,
                Ok(r) => bail!("making bucket {bucket} on moto: {}", r.status()),
                Err(_) if started.elapsed() < Duration::from_secs(60) => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => bail!("moto did not answer on port {port} within 60 s: {e}"),
            }
        }
        Ok(server)
    }

    /// The options that point fieldsync's object store client at this server
    /// (`Config::blob_store_options`).
    pub fn options(&self) -> Vec<(String, String)> {
        [
            ("aws_endpoint", self.endpoint.as_str()),
            ("aws_allow_http", "true"),
            ("aws_access_key_id", "fieldsync-test"),
            ("aws_secret_access_key", "fieldsync-test-secret"),
            ("aws_region", "us-east-1"),
            ("aws_virtual_hosted_style_request", "false"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// The names (keys) of the objects in the bucket under `prefix`, read straight from the
    /// server's S3 API (ListObjectsV2), not through fieldsync's client.
    pub fn keys(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let body = reqwest::blocking::get(format!(
            "{}/{}?list-type=2&prefix={prefix}",
            self.endpoint, self.bucket
        ))?
        .error_for_status()?
        .text()?;
        Ok(body
            .split("<Key>")
            .skip(1)
            .filter_map(|s| s.split_once("</Key>").map(|(k, _)| k.to_string()))
            .collect())
    }

    /// An object's bytes, read straight from the server. Moto answers an anonymous reader of
    /// a private object 403 and does not check signatures: the header only names the account.
    pub fn object(&self, key: &str) -> anyhow::Result<Vec<u8>> {
        Ok(reqwest::blocking::Client::new()
            .get(format!("{}/{}/{key}", self.endpoint, self.bucket))
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=fieldsync-test/20260101/us-east-1/s3/aws4_request, \
                 SignedHeaders=host, Signature=00",
            )
            .send()?
            .error_for_status()?
            .bytes()?
            .to_vec())
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
