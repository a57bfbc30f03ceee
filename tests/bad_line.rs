//! A push over a line that breaks every ~100 KB: one `sync` call finishes it, nothing is lost
//! or stored twice, and the bytes sent stay within 1.3× those of the same push over a clean
//! line (smaller batches after each cut, growing back while the line holds). And a pull over a
//! line that breaks every ~100 KB coming down: one `sync` call finishes it (smaller pages after
//! each cut), where before every attempt was cut at the same byte of the same page.

use anyhow::Result;
use fieldsync::{
    TestServer,
    proxy::{Cut, Proxy},
};
use fieldsync_client_core::{FieldValue, HttpTransport, Store, SyncOptions, sync::sync};
use uuid::Uuid;

/// Where the line breaks: every connection is cut after this many bytes towards the server.
const CUT_EVERY: u64 = 100_000;

/// 1,000 characters of Chinese text drawn from 2,000 code points: compresses about as badly as
/// real notes of different people, so that each record weighs on the wire.
fn note(seed: &mut u64) -> String {
    (0..1000)
        .map(|_| {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            char::from_u32(0x4E00 + ((*seed >> 33) % 2000) as u32).expect("a CJK code point")
        })
        .collect()
}

/// Pushes everything `store` holds to a fresh server through a proxy cutting every connection
/// after `cut` bytes upstream; returns the sync's report, the bytes through the proxy (both
/// ways) and the server's change count.
fn push_through(
    store: &mut Store,
    cut: Option<u64>,
) -> Result<(fieldsync_client_core::SyncReport, u64, u64)> {
    let server = TestServer::start()?;
    let proxy = Proxy::start(server.addr)?;
    // Enrolled here rather than through the fixture's token cache, which keeps one token per
    // device across servers.
    let person = server.add_person("组长", fieldsync_protocol::auth::Role::Admin, None)?;
    let code = server.code_for(person)?;
    let token = HttpTransport::new(&server.url())?
        .enroll(store.device_id(), &code, "测试设备")?
        .token;
    if let Some(after) = cut {
        proxy.cut_next(
            Cut {
                upstream_after: Some(after),
                downstream_after: None,
            },
            usize::MAX,
        );
    }
    let mut t = HttpTransport::new(&proxy.url())?.with_token(token);
    let report = sync(store, &mut t, &SyncOptions::default())?;
    let bytes = proxy.bytes_up() + proxy.bytes_down();
    let changes = server.get_json("/v1/status")?["changes"]
        .as_u64()
        .unwrap_or(0);
    Ok((report, bytes, changes))
}

#[test]
fn a_push_over_a_line_cut_every_100_kb_finishes_in_one_sync_within_1_3x_the_bytes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut store = Store::open(dir.path().join("device.sqlite3"))?;
    let campaign = Uuid::from_u128(0x2026_1202);
    let mut seed = 7;
    for i in 0..400 {
        store.create(
            "interview",
            campaign,
            &format!("35010200{}", i % 9 + 1),
            &[
                ("interviewee", FieldValue::Str(format!("受访人{i}"))),
                ("notes", FieldValue::Text(note(&mut seed))),
            ],
        )?;
    }
    let changes = store.pending_upload()?;

    let (clean, clean_bytes, stored) = push_through(&mut store, None)?;
    assert_eq!(clean.pushed, changes);
    assert_eq!(stored, changes);
    assert!(
        clean_bytes > 4 * CUT_EVERY,
        "the push ({clean_bytes} bytes) must span several cuts to prove anything"
    );

    // The same changes again, to a fresh server, over the bad line.
    store.forget_server_state()?;
    assert_eq!(store.pending_upload()?, changes);
    let (cut, cut_bytes, stored) = push_through(&mut store, Some(CUT_EVERY))?;
    assert_eq!(
        store.pending_upload()?,
        0,
        "one sync call finished the push"
    );
    assert_eq!(stored, changes, "the server holds every change, once");
    assert_eq!(cut.pushed, changes);
    assert!(
        cut.push_requests > clean.push_requests,
        "the line was cut: {} requests over it, {} clean",
        cut.push_requests,
        clean.push_requests
    );
    let ratio = cut_bytes as f64 / clean_bytes as f64;
    eprintln!(
        "clean: {clean_bytes} bytes in {} pushes; cut every {CUT_EVERY} bytes: {cut_bytes} bytes \
         in {} pushes ({ratio:.2}×)",
        clean.push_requests, cut.push_requests
    );
    assert!(ratio < 1.3, "{ratio:.2}× the bytes of a clean push");
    Ok(())
}

#[test]
fn a_pull_over_a_line_cut_every_100_kb_coming_down_finishes_in_one_sync() -> Result<()> {
    let server = TestServer::start()?;
    // 200 records of poorly compressible notes: one 1 MiB page is ~300 KB on the wire, so a
    // connection cut after 100 KB down never delivers it whole.
    let dir = tempfile::tempdir()?;
    let mut a = Store::open(dir.path().join("a.sqlite3"))?;
    let campaign = Uuid::from_u128(0x2026_1207);
    let mut seed = 11;
    for i in 0..200 {
        a.create(
            "interview",
            campaign,
            "350102001",
            &[
                ("interviewee", FieldValue::Str(format!("受访人{i}"))),
                ("notes", FieldValue::Text(note(&mut seed))),
            ],
        )?;
    }
    let mut clean = server.connect(&a)?;
    sync(&mut a, &mut clean, &SyncOptions::default())?;

    let mut b = Store::open(dir.path().join("b.sqlite3"))?;
    let token = server.token_for(&b)?;
    let proxy = Proxy::start(server.addr)?;
    proxy.cut_next(
        Cut {
            upstream_after: None,
            downstream_after: Some(CUT_EVERY),
        },
        usize::MAX,
    );
    let mut t = HttpTransport::new(&proxy.url())?.with_token(token);
    let report = sync(&mut b, &mut t, &SyncOptions::default())?;
    eprintln!(
        "pull cut every {CUT_EVERY} bytes down: {} bytes in {} pages over {} connections, {} cut",
        proxy.bytes_down(),
        report.pull_requests,
        proxy.connections(),
        proxy.cuts()
    );
    assert!(proxy.cuts() > 0, "the line was cut");
    assert_eq!(b.count()?, 200, "every record pulled in one sync");
    assert_eq!(report.received, 400, "each change received once");
    Ok(())
}
