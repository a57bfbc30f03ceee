//! Attachment benchmark: 100 photos of 2 MB (incompressible bytes, as a JPEG's) attached on
//! device A, uploaded to a server on loopback, then fetched by a fresh device B; then one 100 MB
//! recording, to show that the server's memory does not grow with a file's size.
//!
//! ```text
//! cargo run --release --example bench_attachments            # 100 photos of 2 MB
//! cargo run --release --example bench_attachments -- 20      # another count
//! ```
//!
//! The server runs in its own process; its peak memory (VmHWM) is read after the photos, and
//! again (reset first) around the 100 MB upload. Prints seconds and MB/s of each step.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use fieldsync::bench::{ChildServer, peak_rss_kib, reset_peak};
use fieldsync_client_core::attachments::{download_attachment, upload_attachments};
use fieldsync_client_core::{FieldValue, HttpTransport, Store, SyncOptions, sync::sync};
use fieldsync_protocol::template::Template;
use uuid::Uuid;

const TEMPLATE: &str = r#"
id = "bench-files"
version = 1
name.zh = "附件基准"
name.en = "Attachment benchmark"
[kinds.visit]
label = { zh = "查阅资料", en = "Document review" }
[[kinds.visit.fields]]
name = "what"
type = "text"
label = { zh = "资料", en = "Document" }
[[kinds.visit.fields]]
name = "files"
type = "attachments"
max_bytes = 104857600
label = { zh = "照片和录音", en = "Photos and recordings" }
"#;

const VILLAGE: &str = "350102001";
const MB: f64 = 1_000_000.0;

/// Bytes that do not compress (a photo's would not either).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2).wrapping_add(1);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn enrolled(url: &str, store: &Store, code: &str) -> Result<(HttpTransport, String)> {
    let mut t = HttpTransport::new(url)?;
    let token = t.enroll(store.device_id(), code, "bench")?.token;
    Ok((t, token))
}

/// Waits until the server has merged every record pushed (uploads are refused until then).
fn merged(url: &str, token: &str) -> Result<()> {
    loop {
        let status: serde_json::Value = reqwest::blocking::Client::new()
            .get(format!("{url}/v1/status"))
            .bearer_auth(token)
            .send()?
            .json()?;
        if status["unmerged_records"] == 0 {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("serve") {
        return fieldsync::bench::serve_child(&args[2], None, 2);
    }
    let n: usize = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(100);
    let photo_bytes = 2_000_000;
    let dir = tempfile::tempdir()?;
    let d = dir.path().to_str().context("temp path")?;
    let server = ChildServer::spawn(&["serve".to_string(), format!("{d}/server")])?;
    let [code_a, code_b] = &server.codes[..] else {
        bail!("the server printed codes {:?}", server.codes);
    };
    let campaign = Uuid::now_v7();

    // Device A: n records, each with its photo.
    let mut a = Store::open(format!("{d}/device-a.sqlite3"))?;
    a.publish_template(campaign, &Template::parse(TEMPLATE)?)?;
    let started = Instant::now();
    let mut records = Vec::new();
    for i in 0..n {
        let fields = BTreeMap::from([(
            "what".to_string(),
            FieldValue::Str(format!("三会一课记录第{i}页")),
        )]);
        let id = a.create_form(campaign, "visit", VILLAGE, &fields)?;
        let photo = noise(photo_bytes, i as u64 + 1);
        a.attach(id, "files", &format!("记录{i}.jpg"), None, &photo)?;
        records.push(id);
    }
    let attach_s = started.elapsed().as_secs_f64();
    let (mut ta, token) = enrolled(&server.url, &a, code_a)?;
    let started = Instant::now();
    sync(&mut a, &mut ta, &SyncOptions::default())?;
    merged(&server.url, &token)?;
    let records_s = started.elapsed().as_secs_f64();
    let base_peak = peak_rss_kib(server.pid())?;
    let started = Instant::now();
    let up = upload_attachments(&mut a, &mut ta, 10)?;
    let upload_s = started.elapsed().as_secs_f64();
    if up.uploaded != n as u64 {
        bail!("uploaded {} of {n}: {up:?}", up.uploaded);
    }
    let photos_peak = peak_rss_kib(server.pid())?;

    // Device B: the records, then every photo fetched.
    let mut b = Store::open(format!("{d}/device-b.sqlite3"))?;
    let (mut tb, _) = enrolled(&server.url, &b, code_b)?;
    sync(&mut b, &mut tb, &SyncOptions::default())?;
    let started = Instant::now();
    let mut fetched = 0u64;
    for id in &records {
        for f in b.attachments_of(*id)? {
            fetched += download_attachment(&mut b, &mut tb, *id, &f.sha256)?.len() as u64;
        }
    }
    let download_s = started.elapsed().as_secs_f64();

    // One 100 MB recording: the server's peak memory around it.
    let big = noise(100 * 1024 * 1024, 99);
    let fields = BTreeMap::from([("what".to_string(), FieldValue::Str("座谈会录音".into()))]);
    let id = a.create_form(campaign, "visit", VILLAGE, &fields)?;
    a.attach(id, "files", "座谈会录音.m4a", Some("audio/mp4"), &big)?;
    sync(&mut a, &mut ta, &SyncOptions::default())?;
    merged(&server.url, &token)?;
    reset_peak(server.pid())?;
    let before_big = peak_rss_kib(server.pid())?;
    let started = Instant::now();
    let big_report = upload_attachments(&mut a, &mut ta, 10)?;
    let big_s = started.elapsed().as_secs_f64();
    if big_report.uploaded != 1 {
        bail!("the recording was not uploaded: {big_report:?}");
    }
    let big_peak = peak_rss_kib(server.pid())?;
    server.stop()?;

    let total = (n * photo_bytes) as f64;
    println!(
        "photos                        {n} × {:.1} MB",
        photo_bytes as f64 / MB
    );
    println!(
        "attach on device A            {attach_s:.2} s ({:.1} MB/s into the store)",
        total / MB / attach_s
    );
    println!("records pushed and merged     {records_s:.2} s");
    println!(
        "upload                        {upload_s:.2} s ({:.1} MB/s, {} bytes sent)",
        total / MB / upload_s,
        up.bytes_sent
    );
    println!(
        "download (device B)           {download_s:.2} s ({:.1} MB/s, {fetched} bytes)",
        fetched as f64 / MB / download_s
    );
    println!(
        "server peak memory            {} MiB before the photos, {} MiB after",
        base_peak / 1024,
        photos_peak / 1024
    );
    println!(
        "100 MiB recording             {big_s:.2} s ({:.1} MB/s, {} retries); server memory {} MiB before, peak {} MiB while receiving it",
        100.0 * 1.048_576 / big_s,
        big_report.retries,
        before_big / 1024,
        big_peak / 1024
    );
    Ok(())
}
