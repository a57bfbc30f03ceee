//! Sync benchmark: 10,000 interview records (15 fields, one ~500-character Chinese note) created
//! offline on device A, pushed to a server, then pulled by a fresh device B.
//!
//! ```text
//! cargo run --release --example bench_sync            # 10,000 records
//! cargo run --release --example bench_sync -- 2000    # another count
//! cargo run --release --example bench_sync --features system-alloc   # glibc's allocator
//! cargo run --release --example bench_sync -- 10000 --postgres   # SQLite, then PostgreSQL
//! cargo run --release --example bench_sync -- 10000 --merge-after-push  # time the merge alone
//! ```
//!
//! With `--postgres` the same run is made a second time with the server on a fresh database of
//! a PostgreSQL cluster the benchmark starts from Debian's binaries (`fieldsync::postgres`), and
//! both are printed; the server's peak memory is the fieldsync process's, not PostgreSQL's.
//!
//! The server and each device run in their own process so that each one's peak memory (VmHWM)
//! is its own. Prints push and pull seconds, bytes on the wire (compressed request and response
//! bodies), the gzip size of the same records as JSON lines, and peak memory of each process.

/// The allocator of the shipped binaries (server/src/main.rs, cli/src/main.rs). To compare with
/// the system allocator (an app that embeds client-core with its platform's allocator):
/// `cargo run --release --example bench_sync --features system-alloc`.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use fieldsync::bench::{cpu_seconds, interview_fields, peak_rss_kib};
use fieldsync::generator::Rng;
use fieldsync_client_core::{HttpTransport, Store, SyncOptions, sync::sync};
use serde_json::json;
use uuid::Uuid;

fn self_cpu() -> f64 {
    cpu_seconds(std::process::id())
}

fn self_peak() -> u64 {
    peak_rss_kib(std::process::id()).unwrap_or(0)
}

fn campaign() -> Uuid {
    Uuid::from_u128(0x2026)
}

/// A transport for `store`, enrolled with a one-time `code` (the enrollment's bytes are not
/// counted).
fn enrolled(url: &str, store: &Store, code: &str) -> Result<HttpTransport> {
    let mut t = HttpTransport::new(url)?;
    t.enroll(store.device_id(), code, "bench")?;
    t.stats = Default::default();
    Ok(t)
}

fn device_a(url: &str, code: &str, dir: &str, n: usize) -> Result<serde_json::Value> {
    let mut store = Store::open(format!("{dir}/device-a.sqlite3"))?;
    let mut rng = Rng(42);
    let started = Instant::now();
    for i in 0..n {
        let f = interview_fields(i, &mut rng);
        store.create(
            "interview",
            campaign(),
            &format!("3501020{:02}", i % 9 + 1),
            &f,
        )?;
    }
    let create_s = started.elapsed().as_secs_f64();
    let mut t = enrolled(url, &store, code)?;
    let started = Instant::now();
    let cpu = self_cpu();
    let report = sync(&mut store, &mut t, &SyncOptions::default())?;
    let push_s = started.elapsed().as_secs_f64();
    let push_cpu = self_cpu() - cpu;
    if store.pending_upload()? != 0 {
        bail!("device A still has changes to upload");
    }
    Ok(json!({
        "create_s": create_s, "push_s": push_s, "cpu_s": push_cpu, "pushed": report.pushed,
        "requests": t.stats.requests, "up": t.stats.body_bytes_up, "down": t.stats.body_bytes_down,
        "peak_kib": self_peak(),
    }))
}

fn device_b(url: &str, code: &str, dir: &str) -> Result<serde_json::Value> {
    let mut store = Store::open(format!("{dir}/device-b.sqlite3"))?;
    let mut t = enrolled(url, &store, code)?;
    let started = Instant::now();
    let cpu = self_cpu();
    let report = sync(&mut store, &mut t, &SyncOptions::default())?;
    let pull_s = started.elapsed().as_secs_f64();
    let pull_cpu = self_cpu() - cpu;
    // Peak memory of the sync itself, read before the yardstick below loads every record.
    let peak_kib = self_peak();
    // The same records as JSON lines, gzip-compressed: the yardstick for bytes on the wire.
    let mut lines = Vec::new();
    for r in store.list(&Default::default())? {
        let fields: serde_json::Map<_, _> = r
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect();
        serde_json::to_writer(
            &mut lines,
            &json!({"id": r.header.id, "kind": r.header.kind, "campaign": r.header.campaign,
                    "scope": r.header.scope, "fields": fields}),
        )?;
        lines.push(b'\n');
    }
    let gz = fieldsync_protocol::wire::gzip(&lines);
    Ok(json!({
        "pull_s": pull_s, "cpu_s": pull_cpu, "received": report.received, "records": store.count()?,
        "requests": t.stats.requests, "up": t.stats.body_bytes_up, "down": t.stats.body_bytes_down,
        "jsonl_bytes": lines.len(), "jsonl_gzip_bytes": gz.len(), "peak_kib": peak_kib,
    }))
}

/// Waits until the server reports no record left to merge (polled every 50 ms).
fn wait_merged(url: &str, admin_token: &str) -> Result<()> {
    let client = reqwest::blocking::Client::new();
    loop {
        let status: serde_json::Value = client
            .get(format!("{url}/v1/status"))
            .bearer_auth(admin_token)
            .send()?
            .json()?;
        if status["unmerged_records"] == 0 {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn child(args: &[&str]) -> Result<serde_json::Value> {
    let out = Command::new(std::env::current_exe()?)
        .args(args)
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        bail!("{args:?} failed");
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("serve") => {
            return fieldsync::bench::serve_child(&args[2], args.get(3).map(String::as_str), 3);
        }
        Some("device-a") => {
            let v = device_a(&args[2], &args[3], &args[4], args[5].parse()?)?;
            println!("{v}");
            return Ok(());
        }
        Some("device-b") => {
            println!("{}", device_b(&args[2], &args[3], &args[4])?);
            return Ok(());
        }
        _ => {}
    }
    let n: usize = args
        .iter()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10_000);
    let merge_first = args.iter().any(|a| a == "--merge-after-push");
    println!("== SQLite");
    run(n, None, merge_first)?;
    if args.iter().any(|a| a == "--postgres") {
        println!("== PostgreSQL");
        run(n, Some(fieldsync::postgres::database()?), merge_first)?;
    }
    Ok(())
}

/// One benchmark run: a server (on SQLite, or on the PostgreSQL database given), device A's
/// push, device B's pull.
fn run(n: usize, database: Option<String>, merge_first: bool) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path().to_str().context("temp path")?;
    let mut serve_args = vec!["serve".to_string(), format!("{d}/server")];
    serve_args.extend(database);
    let server = fieldsync::bench::ChildServer::spawn(&serve_args)?;
    let [code_a, code_b, code_admin] = &server.codes[..] else {
        bail!("the server printed codes {:?}", server.codes);
    };
    let url = &server.url.clone();
    let mut admin = HttpTransport::new(url)?;
    let admin_token = admin
        .enroll(Uuid::new_v4(), code_admin, "bench admin")?
        .token;

    eprintln!("device A: creating {n} records offline and pushing them to {url} ...");
    let server_cpu_0 = cpu_seconds(server.pid());
    let a = child(&["device-a", url, code_a, d, &n.to_string()])?;
    let server_cpu_push = cpu_seconds(server.pid()) - server_cpu_0;
    // With --merge-after-push: how long after the last push the server has merged everything
    // (device B then pulls from a server that is not merging).
    let merged_after_push = if merge_first {
        let started = Instant::now();
        wait_merged(url, &admin_token)?;
        Some(started.elapsed().as_secs_f64())
    } else {
        None
    };
    let server_cpu_before_pull = cpu_seconds(server.pid());
    eprintln!("device B: pulling ...");
    let b = child(&["device-b", url, code_b, d])?;
    let server_cpu_pull = cpu_seconds(server.pid()) - server_cpu_before_pull;
    // Let the server finish merging, then read its peak memory.
    let merge_started = Instant::now();
    wait_merged(url, &admin_token)?;
    let merged_after = merge_started.elapsed().as_secs_f64();
    let server_peak = peak_rss_kib(server.pid())?;
    server.stop()?;

    let wire = a["up"].as_u64().unwrap_or(0)
        + a["down"].as_u64().unwrap_or(0)
        + b["up"].as_u64().unwrap_or(0)
        + b["down"].as_u64().unwrap_or(0);
    let gz = b["jsonl_gzip_bytes"].as_f64().unwrap_or(1.0);
    let push_s = a["push_s"].as_f64().unwrap_or(0.0);
    let pull_s = b["pull_s"].as_f64().unwrap_or(0.0);
    println!("records                      {n}");
    println!(
        "create offline (device A)    {:.2} s",
        a["create_s"].as_f64().unwrap_or(0.0)
    );
    println!(
        "push (device A sync)         {push_s:.2} s  ({} requests)",
        a["requests"]
    );
    println!(
        "pull (device B sync)         {pull_s:.2} s  ({} requests)",
        b["requests"]
    );
    println!("push + pull                  {:.2} s", push_s + pull_s);
    println!(
        "CPU during push              device A {:.2} s, server {server_cpu_push:.2} s (server: also while A created)",
        a["cpu_s"].as_f64().unwrap_or(0.0)
    );
    println!(
        "CPU during pull              device B {:.2} s, server {server_cpu_pull:.2} s (server: also while B measured)",
        b["cpu_s"].as_f64().unwrap_or(0.0)
    );
    if let Some(s) = merged_after_push {
        println!("server merged all after push {s:.2} s (before device B pulled)");
    }
    println!("server merged all after pull {merged_after:.2} s more");
    println!("bytes up (A)                 {}", a["up"]);
    println!("bytes down (B)               {}", b["down"]);
    println!("bytes on the wire, total     {wire}");
    println!(
        "same records as JSON lines   {} (gzip {})",
        b["jsonl_bytes"], b["jsonl_gzip_bytes"]
    );
    // Issue 14's yardstick is per direction: what one device sends (or receives) against the
    // same records as gzipped JSON lines.
    println!(
        "up (A) / gzip(JSON lines)    {:.3}",
        a["up"].as_f64().unwrap_or(0.0) / gz
    );
    println!(
        "down (B) / gzip(JSON lines)  {:.3}",
        b["down"].as_f64().unwrap_or(0.0) / gz
    );
    println!("both ways / gzip(JSON lines) {:.2}", wire as f64 / gz);
    println!(
        "server peak memory           {:.1} MB",
        server_peak as f64 / 1024.0
    );
    println!(
        "device A peak memory         {:.1} MB",
        a["peak_kib"].as_f64().unwrap_or(0.0) / 1024.0
    );
    println!(
        "device B peak memory         {:.1} MB",
        b["peak_kib"].as_f64().unwrap_or(0.0) / 1024.0
    );
    if b["records"].as_u64() != Some(n as u64) {
        bail!("device B has {} records, expected {n}", b["records"]);
    }
    Ok(())
}
