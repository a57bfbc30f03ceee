//! The 2G field day as a benchmark: a worker's device, offline all day, records 60 interviews
//! and edits 20 of them, then syncs once over a 64 kbit/s line with 600 ms round trips that cuts
//! every connection after ~100 KB each way, pushing its day and pulling a colleague's 60.
//!
//! ```text
//! cargo run --example bench_field_day                 # 5 runs
//! cargo run --example bench_field_day -- --runs 3
//! cargo run --example bench_field_day -- --cut-every 10000   # a line that breaks more often
//! cargo run --example bench_field_day -- --pulled 300         # colleagues' 300 interviews
//! ```
//!
//! Each run starts a fresh server (in this process, `fieldsync::TestServer`) and fresh stores:
//! the department's campaign (`fieldsync::fixtures::two_villages`) is synced over a clean line,
//! device A (the worker) and device B (the colleague) are enrolled as workers of the same work
//! group and sync the campaign over a clean line in the morning; B records 60 interviews and
//! syncs them over the clean line; A records 60 interviews offline, edits 20 (a field and a few
//! characters of the note), then syncs once through `fieldsync::proxy` shaped as the 2G line.
//! Only that sync is timed. Prints per run the wall time, requests, bytes through the proxy
//! each way, connections and cut connections, and each request's kind, start, duration and
//! outcome; then the median and the maximum. The issue's target: under 30 s in every run.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fieldsync::TestServer;
use fieldsync::bench::interview_fields;
use fieldsync::fixtures::{self, A1};
use fieldsync::generator::Rng;
use fieldsync::proxy::{Cut, Line, Proxy};
use fieldsync_client_core::{
    FieldValue, Filter, HttpTransport, Store, SyncOptions, Transport, TransportError,
    sync::{Progress, sync, sync_with_progress},
};
use fieldsync_protocol::auth::Role;
use fieldsync_protocol::wire::{PullQuery, PullResponse, PushRequest, PushResponse};
use uuid::Uuid;

/// Interviews each device records in the day.
const INTERVIEWS: usize = 60;
/// Of device A's interviews, how many it edits again before syncing.
const EDITED: usize = 20;
/// Where the line breaks: every connection is cut after this many bytes, each way (the
/// issue's figure; `--cut-every` sets another).
const CUT_EVERY: u64 = 100_000;
/// The issue's target for the one sync.
const TARGET: Duration = Duration::from_secs(30);

/// One request as the timed sync made it.
#[derive(Debug, Clone)]
struct Request {
    kind: &'static str,
    started: Duration,
    took: Duration,
    up: u64,
    down: u64,
    outcome: String,
}

/// An [`HttpTransport`] that logs each request's kind, time, bytes and outcome.
struct Logged {
    inner: HttpTransport,
    zero: Instant,
    log: Arc<Mutex<Vec<Request>>>,
}

impl Logged {
    fn record<T>(
        &mut self,
        kind: &'static str,
        f: impl FnOnce(&mut HttpTransport) -> Result<T, TransportError>,
    ) -> Result<T, TransportError> {
        let before = self.inner.stats;
        let started = Instant::now();
        let result = f(&mut self.inner);
        let after = self.inner.stats;
        self.log.lock().expect("log").push(Request {
            kind,
            started: started - self.zero,
            took: started.elapsed(),
            up: after.body_bytes_up - before.body_bytes_up,
            down: after.body_bytes_down - before.body_bytes_down,
            outcome: match &result {
                Ok(_) => "ok".into(),
                Err(e) => e.to_string(),
            },
        });
        result
    }
}

impl Transport for Logged {
    fn push(&mut self, request: &PushRequest) -> Result<PushResponse, TransportError> {
        self.record("push", |t| t.push(request))
    }
    fn pull(&mut self, query: &PullQuery) -> Result<PullResponse, TransportError> {
        self.record("pull", |t| t.pull(query))
    }
    fn push_encoder(&self) -> fn(&PushRequest) -> Vec<u8> {
        self.inner.push_encoder()
    }
    fn push_encoded(&mut self, body: Vec<u8>) -> Result<PushResponse, TransportError> {
        self.record("push", |t| t.push_encoded(body))
    }
}

/// What one run measured.
struct Run {
    wall: Duration,
    push_phase: Duration,
    requests: u64,
    push_requests: u64,
    pull_requests: u64,
    up: u64,
    down: u64,
    connections: usize,
    cuts: usize,
    pushed: u64,
    received: u64,
    log: Vec<Request>,
}

fn interviews(store: &Store) -> Result<usize> {
    Ok(store
        .list(&Filter {
            kind: Some("interview".into()),
            ..Default::default()
        })?
        .len())
}

fn run(seed: u64, cut_every: u64, pulled: usize) -> Result<Run> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start()?;

    // The department's campaign: villages, members, two work groups.
    let (mut department, campaign) = fixtures::two_villages(dir.path(), "2G 田野日")?;
    let mut t = server.connect(&department)?;
    sync(&mut department, &mut t, &SyncOptions::default())?;
    server.wait_merged()?;
    let group = fixtures::group(&department, "第一组")?;

    // Morning at the township office: both devices enrolled in 第一组, synced on a clean line.
    let mut a = Store::open(dir.path().join("device-a.sqlite3"))?;
    let mut b = Store::open(dir.path().join("device-b.sqlite3"))?;
    let mut clean_a = server.enroll(&mut a, "赵", Role::Worker, Some(group))?;
    let mut clean_b = server.enroll(&mut b, "孙", Role::Worker, Some(group))?;
    let token_a = server.token_for(&a)?;
    sync(&mut a, &mut clean_a, &SyncOptions::default())?;
    sync(&mut b, &mut clean_b, &SyncOptions::default())?;

    // The colleague's day, synced on a clean line before A comes back.
    let mut rng = Rng(seed);
    for i in 0..pulled {
        b.create("interview", campaign, A1, &interview_fields(i, &mut rng))?;
    }
    let report = sync(&mut b, &mut clean_b, &SyncOptions::default())?;
    if !report.rejected.is_empty() || b.pending_upload()? != 0 {
        bail!(
            "device B's push was not accepted whole: {:?}",
            report.rejected
        );
    }

    // A's day, offline: 60 interviews, 20 of them edited again (a field, a few characters).
    let mut ids = Vec::new();
    for i in 0..INTERVIEWS {
        ids.push(a.create(
            "interview",
            campaign,
            A1,
            &interview_fields(1000 + i, &mut rng),
        )?);
    }
    for (n, id) in ids.iter().take(EDITED).enumerate() {
        a.edit(*id, |e| {
            e.set("rating_team", &FieldValue::Str("基本满意".into()))?;
            e.splice_text("notes", 20 + n, 2, "（补记：村民代表）")
        })?;
    }
    let changes = a.pending_upload()?;

    // Evening in the village: one sync over 2G.
    let proxy = Proxy::start(server.addr)?;
    proxy.shape(Line::kbit(64, Duration::from_millis(600)));
    proxy.cut_next(
        Cut {
            upstream_after: Some(cut_every),
            downstream_after: Some(cut_every),
        },
        usize::MAX,
    );
    let log = Arc::new(Mutex::new(Vec::new()));
    let zero = Instant::now();
    let mut over_2g = Logged {
        inner: HttpTransport::new(&proxy.url())?.with_token(token_a),
        zero,
        log: log.clone(),
    };
    let mut last_push = None;
    let report = sync_with_progress(&mut a, &mut over_2g, &SyncOptions::default(), &mut |p| {
        if let Progress::Pushing { .. } = p {
            last_push = Some(zero.elapsed());
        }
    })?;
    let wall = zero.elapsed();

    // Everything pushed, B's interviews pulled, and the server holds A's changes.
    if a.pending_upload()? != 0 {
        bail!(
            "device A still has {} changes to upload",
            a.pending_upload()?
        );
    }
    let held = interviews(&a)?;
    if held != INTERVIEWS + pulled {
        bail!(
            "device A holds {held} interviews, not {}",
            INTERVIEWS + pulled
        );
    }
    if report.pushed != changes || !report.rejected.is_empty() {
        bail!(
            "pushed {} of {changes} changes; rejected {:?}",
            report.pushed,
            report.rejected
        );
    }
    server.wait_merged()?;
    for id in ids.iter().take(EDITED) {
        let record = server.get_json(&format!("/v1/records/{id}"))?;
        let text = record.to_string();
        if !text.contains("补记：村民代表") {
            bail!("the server's record {id} lacks A's edit: {text:.300}");
        }
    }
    let stats = over_2g.inner.stats;
    let log = log.lock().expect("log").clone();
    Ok(Run {
        wall,
        push_phase: last_push.unwrap_or_default(),
        requests: stats.requests,
        push_requests: report.push_requests,
        pull_requests: report.pull_requests,
        up: proxy.bytes_up(),
        down: proxy.bytes_down(),
        connections: proxy.connections(),
        cuts: proxy.cuts(),
        pushed: report.pushed,
        received: report.received,
        log,
    })
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let number = |flag: &str, default: u64| -> Result<u64> {
        match args.iter().position(|a| a == flag) {
            Some(i) => args
                .get(i + 1)
                .and_then(|n| n.parse().ok())
                .with_context(|| format!("{flag} needs a number")),
            None => Ok(default),
        }
    };
    let runs = number("--runs", 5)? as usize;
    let cut_every = number("--cut-every", CUT_EVERY)?;
    let pulled = number("--pulled", INTERVIEWS as u64)? as usize;
    println!(
        "field day: {INTERVIEWS} interviews recorded offline, {EDITED} edited, a colleague's \
         {pulled} pulled; 64 kbit/s, 600 ms RTT, cut every {cut_every} bytes each way"
    );
    let mut walls = Vec::new();
    for r in 1..=runs {
        let run = run(Uuid::now_v7().as_u128() as u64 | 1, cut_every, pulled)?;
        println!(
            "run {r}: {:.2} s (push phase {:.2} s, pull phase {:.2} s); {} requests ({} pushes \
             acknowledged, {} pull pages); {} bytes up, {} down through the proxy; \
             {} connections, {} cut; {} changes pushed, {} received",
            run.wall.as_secs_f64(),
            run.push_phase.as_secs_f64(),
            (run.wall - run.push_phase).as_secs_f64(),
            run.requests,
            run.push_requests,
            run.pull_requests,
            run.up,
            run.down,
            run.connections,
            run.cuts,
            run.pushed,
            run.received,
        );
        for q in &run.log {
            println!(
                "    {:4} at {:6.2} s took {:5.2} s, body {:6} up {:6} down: {}",
                q.kind,
                q.started.as_secs_f64(),
                q.took.as_secs_f64(),
                q.up,
                q.down,
                q.outcome
            );
        }
        walls.push(run.wall);
    }
    walls.sort();
    let median = walls[walls.len() / 2];
    let max = *walls.last().context("no run")?;
    println!(
        "{runs} runs: median {:.2} s, max {:.2} s; target under {} s in every run: {}",
        median.as_secs_f64(),
        max.as_secs_f64(),
        TARGET.as_secs(),
        if max < TARGET { "met" } else { "NOT met" }
    );
    Ok(())
}
