//! An encrypted store served without its key: every page leads to the key page, which takes
//! the key file (a file that is no key, another store's key, a missing CSRF token each refused
//! with the store still closed), then opens the store and the app goes on as usual; the file
//! stays encrypted.

mod common;

use anyhow::Result;
use common::{A1, App};
use fieldsync_client_core::{FieldValue, Filter, Store, StoreError};

const KEY: [u8; 32] = [0x5a; 32];

fn send_key(app: &App, bytes: Vec<u8>, with_token: bool) -> Result<reqwest::blocking::Response> {
    Ok(sent_key(app, bytes, with_token)??)
}

/// The key's upload as the client saw it: its answer, or why it could not send the whole body.
fn sent_key(
    app: &App,
    bytes: Vec<u8>,
    with_token: bool,
) -> Result<reqwest::Result<reqwest::blocking::Response>> {
    common::post_file(app, "/unlock", "key", "device.key", bytes, with_token)
}

#[test]
fn the_key_page_opens_an_encrypted_store_and_nothing_else_is_served_before() -> Result<()> {
    let app = App::start_locked(&KEY)?;
    let home = app.client.get(app.url("/")).send()?;
    assert_eq!(home.url().path(), "/unlock", "home leads to the key page");
    let page = home.text()?;
    assert!(
        page.contains("本机数据已加密") && page.contains("type=\"file\""),
        "{page}"
    );
    assert!(!page.contains("甲村"), "nothing of the store shows: {page}");
    for path in [
        format!("/v/{A1}"),
        "/conflicts".into(),
        "/bundle/export".into(),
    ] {
        let r = app.client.get(app.url(&path)).send()?;
        assert_eq!(r.url().path(), "/unlock", "{path}");
    }
    // A form sent while locked leads to the key page too, and does nothing.
    let r = app.post("/sync", &[])?;
    assert_eq!(r.url().path(), "/unlock");
    // English.
    app.page("/lang/en")?;
    assert!(
        app.page("/unlock")?
            .contains("This device's data is encrypted")
    );
    app.page("/lang/zh")?;

    common::refused_unread(sent_key(&app, KEY.to_vec(), false)?, "no CSRF token");
    let r = send_key(&app, b"not a key".to_vec(), true)?;
    assert_eq!(r.status(), 422);
    assert!(r.text()?.contains("这不是密钥文件"));
    let r = send_key(&app, "11".repeat(32).into_bytes(), true)?;
    assert_eq!(r.status(), 422);
    assert!(r.text()?.contains("这个密钥打不开本机数据"));
    assert_eq!(app.client.get(app.url("/")).send()?.url().path(), "/unlock");

    // The right key, as 64 hex digits with a line end (as --key-file takes it).
    let r = send_key(&app, format!("{}\n", hex(&KEY)).into_bytes(), true)?;
    assert_eq!(r.status(), 200);
    assert_eq!(r.url().path(), "/");
    let home = r.text()?;
    assert!(
        home.contains("本机数据已打开") && home.contains("甲村"),
        "{home}"
    );
    let r = app.client.get(app.url("/unlock")).send()?;
    assert_eq!(r.url().path(), "/", "the key page is done");

    // Recording works and lands in the encrypted file.
    let r = app.post(
        &format!("/v/{A1}/k/interview/new"),
        &[
            ("f.date", "2026-05-18"),
            ("f.interviewer", "王组长"),
            ("f.interviewee_type", "other"),
            ("f.notes", "加密数据里的谈话"),
            ("action", "save"),
        ],
    )?;
    assert_eq!(r.status(), 200);
    assert!(r.url().path().starts_with("/r/"));
    let store = Store::open_encrypted(&app.path, &KEY)?;
    let saved = store.list(&Filter {
        kind: Some("interview".into()),
        ..Default::default()
    })?;
    assert_eq!(
        saved[0].fields["notes"],
        FieldValue::Text("加密数据里的谈话".into())
    );
    assert!(matches!(Store::open(&app.path), Err(StoreError::WrongKey)));
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
