//! Load benchmark (issue 17): many devices syncing at once against real servers on loopback.
//!
//! ```text
//! cargo run --release --example bench_load                       # 1,000 devices, SQLite
//! cargo run --release --example bench_load -- 300                # another count
//! cargo run --release --example bench_load -- 1000 --postgres    # then PostgreSQL, two servers
//! ```
//!
//! Each device is a client-core `Store` in memory, enrolled with its own one-time code, on its own
//! thread with its own connection. Two phases, all devices at once behind a barrier:
//! 1. **Up-to-date sync**: every device runs `sync` [`ROUNDS`] times with nothing to send and
//!    nothing new to fetch (what a phone's background sync does most of the day).
//! 2. **A 20-record push**: every device pushes the 20 interviews it recorded offline (one push
//!    request of its outbox), as a work group does when it comes back into coverage.
//!
//! Prints requests per second and the p50/p99/max latency of each phase. With `--postgres` the
//! same run is made on a fresh PostgreSQL database (a cluster the benchmark starts from Debian's
//! binaries) behind two fieldsync servers and a round-robin balancer (`fieldsync::balancer`).
//! The servers run in child processes; the load generator shares the machine's cores with them,
//! as any loopback benchmark does: compare figures taken in one run.

use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fieldsync::bench::ChildServer;
use fieldsync_client_core::{FieldValue, HttpTransport, Store, SyncOptions, Transport, sync::sync};
use uuid::Uuid;

/// Up-to-date syncs per device in phase 1.
const ROUNDS: usize = 5;
/// Records each device pushes in phase 2.
const RECORDS: usize = 20;
const VILLAGE: &str = "350102001";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve") {
        let database = args.get(3).map(String::as_str).filter(|d| !d.is_empty());
        return fieldsync::bench::serve_child(&args[1], database, args[2].parse()?);
    }
    let devices: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(1_000);
    let postgres = args.iter().any(|a| a == "--postgres");
    // Each device holds a connection, and so does the server for it.
    let open_files = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse::<usize>().ok())
        });
    if let Some(limit) = open_files
        && limit < devices + 200
    {
        bail!("{devices} devices need more open files than the {limit} allowed: raise `ulimit -n`");
    }
    println!(
        "{devices} devices, {ROUNDS} up-to-date syncs each, then a {RECORDS}-record push each"
    );
    run("SQLite, one server", devices, None, 1)?;
    if postgres {
        let database = fieldsync::postgres::database()?;
        run("PostgreSQL, two servers", devices, Some(&database), 2)?;
    }
    Ok(())
}

/// Latencies in seconds, sorted, as `p50 p99 max`.
fn percentiles(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1] * 1000.0;
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        at(0.50),
        at(0.99),
        at(1.0)
    )
}

fn run(label: &str, devices: usize, database: Option<&str>, servers: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    // Each server issues codes for its share of the devices (an administrator's: the scope of
    // the device does not change what an up-to-date sync or a push costs the server).
    let mut children = Vec::new();
    let mut codes = Vec::new();
    for i in 0..servers {
        let data = dir.path().join(format!("server{i}"));
        std::fs::create_dir_all(&data)?;
        let share = devices.div_ceil(servers);
        let child = ChildServer::spawn(&[
            "serve".into(),
            data.display().to_string(),
            share.to_string(),
            database.unwrap_or("").to_string(),
        ])?;
        codes.extend(child.codes.clone());
        children.push(child);
    }
    let addrs = children
        .iter()
        .map(|c| {
            c.url
                .trim_start_matches("http://")
                .parse()
                .context("server address")
        })
        .collect::<Result<Vec<std::net::SocketAddr>>>()?;
    let balancer = (servers > 1)
        .then(|| fieldsync::balancer::Balancer::start(addrs.clone()))
        .transpose()?;
    let url = match &balancer {
        Some(b) => b.url(),
        None => children[0].url.clone(),
    };

    // Enroll every device, record its 20 interviews offline, and sync once (nothing to fetch).
    let campaign = Uuid::now_v7();
    let started = Instant::now();
    let mut prepared = Vec::with_capacity(devices);
    for (i, code) in codes.iter().take(devices).enumerate() {
        let mut store = Store::open_in_memory()?;
        let mut t = HttpTransport::new(&url)?;
        let token = t
            .enroll(store.device_id(), code, &format!("设备{i}"))?
            .token;
        store.set_credentials(&url, &token)?;
        let mut t = t.with_token(token);
        sync(&mut store, &mut t, &SyncOptions::default())?;
        // Recorded aside, so that the up-to-date syncs have nothing to send; pushed in the
        // device's name (its actor is new to the server, so it becomes the device's).
        let mut offline = Store::open_in_memory()?;
        for n in 0..RECORDS {
            offline.create(
                "interview",
                campaign,
                VILLAGE,
                &[
                    ("date", FieldValue::Str("2026-11-20".into())),
                    ("interviewer", FieldValue::Str(format!("第{i}组"))),
                    (
                        "notes",
                        FieldValue::Text(format!("第{n}次谈话：班子团结，集体经济有待加强。")),
                    ),
                ],
            )?;
        }
        let mut request = offline
            .outbox_batch(0, 1 << 20)?
            .context("the device's 20 records")?
            .request;
        request.device = store.device_id().to_string();
        prepared.push((store, t, request));
    }
    println!(
        "\n{label}: {devices} devices enrolled and ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let barrier = Arc::new(Barrier::new(devices));
    let syncs = Arc::new(Mutex::new(Vec::with_capacity(devices * ROUNDS)));
    let pushes = Arc::new(Mutex::new(Vec::with_capacity(devices)));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let phase = Arc::new(Mutex::new([None::<Instant>; 4]));
    let mut threads = Vec::with_capacity(devices);
    for (i, (mut store, mut t, request)) in prepared.into_iter().enumerate() {
        let (barrier, syncs, pushes, failures, phase) = (
            barrier.clone(),
            syncs.clone(),
            pushes.clone(),
            failures.clone(),
            phase.clone(),
        );
        threads.push(
            std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn(move || {
                    let mark = |n: usize| {
                        if i == 0 {
                            phase.lock().expect("phase")[n] = Some(Instant::now());
                        }
                    };
                    barrier.wait();
                    mark(0);
                    for _ in 0..ROUNDS {
                        let at = Instant::now();
                        match sync(&mut store, &mut t, &SyncOptions::default()) {
                            Ok(r) if r.pushed == 0 => syncs
                                .lock()
                                .expect("syncs")
                                .push(at.elapsed().as_secs_f64()),
                            Ok(r) => failures
                                .lock()
                                .expect("failures")
                                .push(format!("sync pushed {}", r.pushed)),
                            Err(e) => failures.lock().expect("failures").push(e.to_string()),
                        }
                    }
                    barrier.wait();
                    mark(1);
                    barrier.wait();
                    mark(2);
                    let at = Instant::now();
                    match t.push(&request) {
                        Ok(r) if r.rejected.is_empty() => pushes
                            .lock()
                            .expect("pushes")
                            .push(at.elapsed().as_secs_f64()),
                        Ok(r) => failures
                            .lock()
                            .expect("failures")
                            .push(format!("{} records rejected", r.rejected.len())),
                        Err(e) => failures.lock().expect("failures").push(e.to_string()),
                    }
                    barrier.wait();
                    mark(3);
                })?,
        );
    }
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("a device thread panicked"))?;
    }
    let failures = failures.lock().expect("failures").clone();
    if !failures.is_empty() {
        bail!(
            "{} requests failed, the first: {}",
            failures.len(),
            failures[0]
        );
    }
    let phase = *phase.lock().expect("phase");
    let span = |a: usize, b: usize| -> Duration {
        match (phase[a], phase[b]) {
            (Some(a), Some(b)) => b.saturating_duration_since(a),
            _ => Duration::ZERO,
        }
    };
    let syncs = syncs.lock().expect("syncs").clone();
    let pushes = pushes.lock().expect("pushes").clone();
    let (sync_time, push_time) = (span(0, 1), span(2, 3));
    println!(
        "  up-to-date sync: {} syncs in {:.2} s, {:.0} syncs/s; {}",
        syncs.len(),
        sync_time.as_secs_f64(),
        syncs.len() as f64 / sync_time.as_secs_f64().max(1e-9),
        percentiles(syncs)
    );
    println!(
        "  {RECORDS}-record push: {} pushes in {:.2} s, {:.0} pushes/s; {}",
        pushes.len(),
        push_time.as_secs_f64(),
        pushes.len() as f64 / push_time.as_secs_f64().max(1e-9),
        percentiles(pushes)
    );
    drop(balancer);
    for c in children {
        c.stop()?;
    }
    Ok(())
}
