//! The server serves HTTPS itself when given a certificate and key: a device that trusts the
//! certificate enrolls and syncs over it; one that does not, or that speaks plain HTTP to it,
//! gets nowhere; over HTTPS the session cookie is Secure and HSTS is sent.

use std::time::Duration;

use anyhow::{Context, Result};
use fieldsync_client_core::{FieldValue, HttpOptions, HttpTransport, Store, SyncOptions, account};
use fieldsync_protocol::auth::Role;
use uuid::Uuid;

/// An HTTPS server on a fresh data directory with a self-signed certificate for 127.0.0.1.
struct TlsServer {
    addr: std::net::SocketAddr,
    /// A one-time code for the administrator.
    code: String,
    /// The certificate, PEM.
    cert: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
    _dir: tempfile::TempDir,
}

impl TlsServer {
    fn start() -> Result<Self> {
        let rcgen::CertifiedKey { cert, signing_key } = rcgen::generate_simple_self_signed(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ])?;
        let dir = tempfile::tempdir()?;
        let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert_path, cert.pem())?;
        std::fs::write(&key_path, signing_key.serialize_pem())?;
        let tls = fieldsync_server::tls::config_from_pem_files(&cert_path, &key_path)?;

        let data = dir.path().join("data");
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || -> Result<()> {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let storage = fieldsync_server::open_storage(&data).await?;
                let person = storage
                    .create_person("管理员".into(), Role::Admin, None)
                    .await?;
                let (code, _) = fieldsync_server::admin::issue(storage.as_ref(), person.id, 1)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                storage.close().await;
                drop(storage);
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                tx.send((listener.local_addr()?, code))?;
                let mut config = fieldsync_server::Config::new(&data);
                config.tls = Some(tls);
                fieldsync_server::run(listener, config, async {
                    let _ = stop_rx.await;
                })
                .await?;
                Ok(())
            })
        });
        let (addr, code) = rx
            .recv_timeout(Duration::from_secs(30))
            .context("server start")?;
        Ok(TlsServer {
            addr,
            code,
            cert: cert.pem(),
            stop: Some(stop_tx),
            thread: Some(thread),
            _dir: dir,
        })
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    /// Stops the server gracefully and waits for it.
    fn stop(&mut self) -> Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| anyhow::anyhow!("server thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

#[test]
fn devices_enroll_and_sync_over_https_with_a_self_signed_certificate() -> Result<()> {
    let mut server = TlsServer::start()?;
    let (addr, code) = (server.addr, server.code.clone());
    let url = server.url();
    let trusting = HttpOptions {
        root_certificates: vec![server.cert.clone().into_bytes()],
        ..Default::default()
    };

    // Without trusting the certificate: refused by the client, nothing enrolled.
    let mut store = Store::open_in_memory()?;
    let err =
        account::enroll(&mut store, &url, &code, "笔记本", &HttpOptions::default()).unwrap_err();
    assert!(matches!(err, account::AccountError::Transport(_)), "{err}");
    assert!(store.credentials()?.is_none());
    // Plain HTTP to the HTTPS port does not get an answer either.
    let plain = HttpTransport::new(&format!("http://127.0.0.1:{}", addr.port()))?;
    assert!(plain.clone().me().is_err());

    // Trusting it: enroll, write, sync, ask who we are, all over TLS.
    let e = account::enroll(&mut store, &url, &code, "笔记本", &trusting)?;
    assert_eq!(e.person.role, Role::Admin);
    store.create(
        "interview",
        Uuid::from_u128(5),
        "350102001",
        &[("notes", FieldValue::Text("加密传输的谈话记录".into()))],
    )?;
    let mut t = account::transport(&store, &trusting)?;
    let report = fieldsync_client_core::sync::sync(&mut store, &mut t, &SyncOptions::default())?;
    assert_eq!(report.pushed, 2);
    assert_eq!(account::whoami(&store, &trusting)?.person.name, "管理员");

    server.stop()
}

#[test]
fn over_https_the_session_cookie_is_secure_and_hsts_is_sent() -> Result<()> {
    let server = TlsServer::start()?;
    let client = reqwest::blocking::Client::builder()
        .tls_certs_only(vec![reqwest::Certificate::from_pem(
            server.cert.as_bytes(),
        )?])
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let resp = client
        .post(format!("{}/login", server.url()))
        .header("origin", server.url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("code={}", server.code))
        .send()?;
    assert_eq!(resp.status(), 303);
    let cookie = resp.headers()["set-cookie"].to_str()?;
    assert!(cookie.starts_with("fieldsync_session=fst_"), "{cookie}");
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(resp.headers().get("strict-transport-security").is_some());
    // A page of the dashboard over HTTPS carries the policy too.
    let page = client.get(format!("{}/login", server.url())).send()?;
    assert!(page.headers().get("content-security-policy").is_some());
    assert!(page.headers().get("strict-transport-security").is_some());
    Ok(())
}
