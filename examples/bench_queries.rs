//! How fast the department's queries answer on a large campaign: the seed-002 campaign from the
//! generator plus N more records (questionnaires, evaluation forms and interviews with Chinese
//! notes) from one bulk device, then tallies, full-text search and a CSV export timed over HTTP.
//!
//! ```text
//! cargo run --release --example bench_queries            # 100,000 extra records
//! cargo run --release --example bench_queries -- 20000   # another count
//! cargo run --release --example bench_queries -- 100000 --keep DIR   # keep the server's files
//! cargo run --release --example bench_queries -- 100000 --postgres   # the server on PostgreSQL
//! cargo run --release --example bench_queries -- 100000 --postgres --hold  # then keep it up
//! ```
//!
//! Besides the first and the cached tallies, it times what a reviewer meets most: the tallies and
//! a village's dossier right after one more record has been merged (median of 5), with the CPU
//! time they cost the server's process (this one: the server runs in it) and PostgreSQL's
//! processes, to compare two builds on a noisy machine.

use std::time::Instant;

use anyhow::Result;
use fieldsync::{TestServer, bench::children_cpu_seconds, bench::cpu_seconds, generator};
use fieldsync_client_core::{FieldValue, Store, SyncOptions, sync::sync};

fn median_ms(mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[2])
}

/// CPU seconds used so far by this process (the server and its client) and by the PostgreSQL
/// backends serving clients (0 on SQLite; autovacuum and the other background workers, busy
/// after a bulk load, are left out).
fn cpu_now(postgres: bool) -> (f64, f64) {
    let database = postgres
        .then(|| fieldsync::postgres::cluster().ok()?.postmaster_pid())
        .flatten()
        .map_or(0.0, |pid| {
            children_cpu_seconds(pid, |c| c.contains("127.0.0.1("))
        });
    (cpu_seconds(std::process::id()), database)
}

/// What `f` cost in CPU per call, in ms, over `calls` calls: (this process, PostgreSQL).
fn cpu_ms(postgres: bool, calls: usize, f: impl FnOnce() -> Result<()>) -> Result<(f64, f64)> {
    let (a, b) = cpu_now(postgres);
    f()?;
    let (c, d) = cpu_now(postgres);
    let per = |x: f64| x * 1000.0 / calls as f64;
    Ok((per(c - a), per(d - b)))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args
        .first()
        .filter(|a| !a.starts_with("--"))
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(100_000);
    let keep = args
        .iter()
        .position(|a| a == "--keep")
        .and_then(|i| args.get(i + 1))
        .map(std::path::PathBuf::from);
    let postgres = args.iter().any(|a| a == "--postgres");
    let server = match &keep {
        Some(_) if postgres => anyhow::bail!("--keep keeps SQLite files; leave out --postgres"),
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            TestServer::start_in(dir)?
        }
        // A fresh database on a PostgreSQL cluster this process starts from Debian's binaries.
        None if postgres => {
            let url = fieldsync::postgres::database()?;
            eprintln!("PostgreSQL database: {url}");
            TestServer::start_with_config(move |c| c.database = Some(url))?
        }
        None => TestServer::start()?,
    };
    let dir = tempfile::tempdir()?;
    let g = generator::generate(dir.path(), &server.url(), &generator::Config::default())?;
    let c = g.campaign;
    let started = Instant::now();
    let mut bulk = Store::open(dir.path().join("bulk.sqlite3"))?;
    let s = |v: &str| FieldValue::Str(v.into());
    let notes = [
        "班子团结，集体经济收入渠道单一。",
        "群众反映村务公开及时。",
        "后备干部储备不足。",
    ];
    for i in 0..n {
        let village = &g.villages[i % g.villages.len()];
        let f = [("_form", FieldValue::Int(1))];
        match i % 3 {
            0 => bulk.create(
                "questionnaire",
                c,
                village,
                &[
                    ("respondent_category", s("party_member")),
                    ("q_team_unity", s("united")),
                    ("q_overall", s(["satisfied", "basically_satisfied"][i % 2])),
                    f[0].clone(),
                ],
            )?,
            1 => bulk.create(
                "evaluation",
                c,
                village,
                &[
                    ("respondent_category", s("villager_rep")),
                    ("team_rating", s("satisfied")),
                    f[0].clone(),
                ],
            )?,
            _ => bulk.create(
                "interview",
                c,
                village,
                &[
                    ("date", s("2023-05-18")),
                    ("interviewer", s("刘明")),
                    ("interviewee_type", s("villager_rep")),
                    ("notes", FieldValue::Text(notes[i % 3].repeat(4))),
                    f[0].clone(),
                ],
            )?,
        };
    }
    let created = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut t = server.connect(&bulk)?;
    sync(&mut bulk, &mut t, &SyncOptions::default())?;
    let pushed = started.elapsed().as_secs_f64();
    // Merging 100,000 records takes minutes: wait as long as it takes.
    let status = loop {
        let status = server.get_json("/v1/status")?;
        if status["unmerged_records"] == 0 {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    let loaded = started.elapsed().as_secs_f64();
    let records = status["records"].as_u64().unwrap_or(0);
    println!(
        "records on the server        {records} (bulk device: created {created:.1} s, synced {pushed:.1} s, merged by the server {:.1} s later)",
        loaded - pushed
    );
    let get = |path: String| -> Result<usize> {
        let body = server.get(&path)?.error_for_status()?.bytes()?;
        Ok(body.len())
    };
    let started = Instant::now();
    get(format!("/v1/campaigns/{c}/tallies"))?;
    println!(
        "tallies, computed            {:.0} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    let tallies = median_ms(|| get(format!("/v1/campaigns/{c}/tallies")).map(|_| ()))?;
    println!("tallies, cached (median of 5) {tallies:.0} ms (recomputed after any merge)");
    let search3 = median_ms(|| {
        get(format!(
            "/v1/search?q=%E9%9B%86%E4%BD%93%E7%BB%8F%E6%B5%8E&campaign={c}&limit=100"
        ))
        .map(|_| ())
    })?;
    println!("search 集体经济 (100 hits)    {search3:.0} ms");
    let search_rare = median_ms(|| {
        get(format!(
            "/v1/search?q=%E6%B2%A1%E6%9C%89%E8%BF%99%E5%8F%A5%E8%AF%9D&campaign={c}"
        ))
        .map(|_| ())
    })?;
    println!("search a phrase nowhere      {search_rare:.0} ms");
    let search2 = median_ms(|| {
        get(format!(
            "/v1/search?q=%E5%90%8E%E5%A4%87&campaign={c}&limit=100"
        ))
        .map(|_| ())
    })?;
    println!("search 后备 (2 characters)    {search2:.0} ms");
    let report = median_ms(|| get(format!("/v1/campaigns/{c}/report.md")).map(|_| ()))?;
    println!("draft report                 {report:.0} ms");
    let overview = median_ms(|| get(format!("/ui/c/{c}")).map(|_| ()))?;
    println!("dashboard overview page      {overview:.0} ms");
    let village = &g.villages[0];
    let mut dossier = 0.0;
    let (server_cpu, database_cpu) = cpu_ms(postgres, 5, || {
        dossier = median_ms(|| get(format!("/ui/c/{c}/v/{village}")).map(|_| ()))?;
        Ok(())
    })?;
    println!(
        "dashboard village dossier    {dossier:.0} ms (CPU per ask: server process {server_cpu:.0} ms, PostgreSQL {database_cpu:.0} ms)"
    );
    let ledger = median_ms(|| get(format!("/ui/c/{c}/ledger")).map(|_| ()))?;
    println!("dashboard ledger             {ledger:.0} ms");
    let started = Instant::now();
    let bytes = get(format!("/v1/campaigns/{c}/export/questionnaire.csv"))?;
    println!(
        "export questionnaire.csv     {:.0} ms ({bytes} bytes)",
        started.elapsed().as_secs_f64() * 1000.0
    );
    // What a reviewer meets most: the numbers right after a worker's one new interview merged.
    let (mut after_tallies, mut after_dossier) = (Vec::new(), Vec::new());
    let (mut tallies_cpu, mut dossier_cpu) = ((0.0, 0.0), (0.0, 0.0));
    let add = |sum: &mut (f64, f64), (a, b): (f64, f64)| {
        sum.0 += a / 5.0;
        sum.1 += b / 5.0;
    };
    for i in 0..5 {
        bulk.create(
            "interview",
            c,
            village,
            &[
                ("date", s("2023-05-19")),
                ("interviewer", s("刘明")),
                ("interviewee_type", s("villager_rep")),
                (
                    "notes",
                    FieldValue::Text(format!("第{i}次补充谈话：班子团结。")),
                ),
                ("_form", FieldValue::Int(1)),
            ],
        )?;
        sync(&mut bulk, &mut t, &SyncOptions::default())?;
        while server.get_json("/v1/status")?["unmerged_records"] != 0 {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let started = Instant::now();
        let cpu = cpu_ms(postgres, 1, || {
            get(format!("/v1/campaigns/{c}/tallies")).map(|_| ())
        })?;
        after_tallies.push(started.elapsed().as_secs_f64() * 1000.0);
        add(&mut tallies_cpu, cpu);
        let started = Instant::now();
        let cpu = cpu_ms(postgres, 1, || {
            get(format!("/ui/c/{c}/v/{village}")).map(|_| ())
        })?;
        after_dossier.push(started.elapsed().as_secs_f64() * 1000.0);
        add(&mut dossier_cpu, cpu);
    }
    after_tallies.sort_by(f64::total_cmp);
    after_dossier.sort_by(f64::total_cmp);
    println!(
        "after one more record merged: tallies {:.0} ms, dossier {:.0} ms (median of 5; all: {:.0?} / {:.0?})",
        after_tallies[2], after_dossier[2], after_tallies, after_dossier
    );
    println!(
        "  CPU per ask after a merge (mean of 5): tallies {:.0} ms in the server process + {:.0} ms in PostgreSQL, dossier {:.0} + {:.0} ms",
        tallies_cpu.0, tallies_cpu.1, dossier_cpu.0, dossier_cpu.1
    );
    if let Some(dir) = keep {
        println!("server files kept in {}", dir.display());
    }
    if args.iter().any(|a| a == "--hold") {
        // The server (and its PostgreSQL) stay up to be looked at (EXPLAIN, psql) until Enter.
        eprintln!(
            "holding the server at {}; press Enter to stop",
            server.url()
        );
        let _ = std::io::stdin().read_line(&mut String::new());
    }
    Ok(())
}
