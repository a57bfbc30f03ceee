//! The server serves HTTPS itself when given a certificate and key: a device that trusts the
//! certificate enrolls and syncs over it; one that does not, or that speaks plain HTTP to it,
//! gets nowhere.

use std::time::Duration;

use anyhow::{Context, Result};
use fieldsync_client_core::{FieldValue, HttpOptions, HttpTransport, Store, SyncOptions, account};
use fieldsync_protocol::auth::Role;
use uuid::Uuid;

#[test]
fn devices_enroll_and_sync_over_https_with_a_self_signed_certificate() -> Result<()> {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    let dir = tempfile::tempdir()?;
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem())?;
    std::fs::write(&key_path, signing_key.serialize_pem())?;
    let tls = fieldsync_server::tls::config_from_pem_files(&cert_path, &key_path)?;

    let data = dir.path().join("data");
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || -> Result<()> {
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
    let url = format!("https://127.0.0.1:{}", addr.port());
    let trusting = HttpOptions {
        root_certificates: vec![cert.pem().into_bytes()],
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

    let _ = stop_tx.send(());
    server
        .join()
        .map_err(|_| anyhow::anyhow!("server thread panicked"))??;
    Ok(())
}
