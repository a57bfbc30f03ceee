//! Whether a work group's sync costs what its villages hold or what the province holds: a server
//! with 2,000 villages of 250 interviews each (500,000 records), and a leader's device whose
//! group has 10 of them; then the same with ten times fewer villages outside the group. The
//! device's first sync, its up-to-date sync and a sync after one new interview in every village
//! are timed and their bytes counted on both; they should match within noise.
//!
//! ```text
//! cargo run --release --example bench_province                        # SQLite
//! cargo run --release --example bench_province -- --postgres          # PostgreSQL
//! cargo run --release --example bench_province -- --villages 400 --per-village 50
//! ```
//!
//! The places and the work group go through sync as an administrator's would. The interviews
//! are generated directly into the server's tables, so that half a million records take a
//! minute rather than an hour: their changes are the real ones a device makes
//! (`protocol::creation`, the benchmarks' 15-field interview with a 500-character note), and
//! each record row holds the document and fields merging would give it; only the full-text
//! index and template review are left out, which no sync reads. Consecutive records belong to
//! different villages, as when every work group pushes through the same days, so the group's
//! changes are spread through the whole log. The server runs in this process on 127.0.0.1.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use automerge::ActorId;
use fieldsync::bench::interview_fields;
use fieldsync::generator::Rng;
use fieldsync::{TestServer, postgres};
use fieldsync_client_core::{FieldValue, Filter, Store, SyncOptions, sync::sync};
use fieldsync_protocol::auth::Role;
use fieldsync_protocol::{RecordHeader, creation};
use uuid::Uuid;

struct Options {
    villages: usize,
    per_village: usize,
    group: usize,
    postgres: bool,
}

fn main() -> Result<()> {
    let mut o = Options {
        villages: 2000,
        per_village: 250,
        group: 10,
        postgres: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut number = || -> Result<usize> {
            args.next()
                .with_context(|| format!("{a} needs a number"))?
                .parse()
                .with_context(|| format!("{a} needs a number"))
        };
        match a.as_str() {
            "--villages" => o.villages = number()?,
            "--per-village" => o.per_village = number()?,
            "--group" => o.group = number()?,
            "--postgres" => o.postgres = true,
            _ => bail!(
                "unknown option {a}; use --villages N, --per-village N, --group N, --postgres"
            ),
        }
    }
    if o.group == 0 || o.group > o.villages {
        bail!("--group must be between 1 and --villages");
    }
    let outside = o.villages - o.group;
    let shapes = [o.villages, o.group + outside / 10];
    let mut results = Vec::new();
    for villages in shapes {
        results.push(run(&o, villages)?);
    }
    println!();
    println!(
        "| villages | records | first sync (median of 3) | bytes down | up-to-date sync (median of 5) | bytes | after 1 new interview per village (median of 5) | bytes |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in &results {
        println!(
            "| {} | {} | {:.3} s | {} | {:.1} ms | {} | {:.1} ms | {} |",
            r.villages,
            r.records,
            r.first_s,
            r.first_bytes,
            r.current_ms,
            r.current_bytes,
            r.after_ms,
            r.after_bytes
        );
    }
    Ok(())
}

struct Figures {
    villages: usize,
    records: usize,
    first_s: f64,
    first_bytes: u64,
    current_ms: f64,
    current_bytes: u64,
    after_ms: f64,
    after_bytes: u64,
}

fn code(v: usize) -> String {
    format!("51{v:07}")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn run(o: &Options, villages: usize) -> Result<Figures> {
    let database = if o.postgres {
        Some(postgres::database()?)
    } else {
        None
    };
    let db = database.clone();
    let server = TestServer::start_with_config(move |c| c.database = db)?;
    let dir = tempfile::tempdir()?;
    println!(
        "\n{villages} villages, {} interviews each, {} on {}",
        o.per_village,
        o.group,
        if o.postgres { "PostgreSQL" } else { "SQLite" }
    );

    // The places and the work group, as the department's administrator records them. The
    // group's villages are spread over the codes, and are the same in both shapes.
    let started = Instant::now();
    let campaign = Uuid::now_v7();
    let mut admin = Store::open(dir.path().join("admin.sqlite3"))?;
    let stride = o.villages / o.group;
    let group_villages: Vec<usize> = (0..o.group).map(|i| i * stride).collect();
    let mut village_codes: Vec<usize> = group_villages.clone();
    village_codes.extend(
        (0..o.villages)
            .filter(|v| !group_villages.contains(v))
            .take(villages - o.group),
    );
    let mut group_place_ids = Vec::new();
    for &v in &village_codes {
        let s = |x: String| FieldValue::Str(x);
        let id = admin.create(
            "place",
            campaign,
            &code(v),
            &[
                ("code", s(code(v))),
                ("name", s(format!("第{v}村"))),
                ("level", s("village".into())),
            ],
        )?;
        if group_villages.contains(&v) {
            group_place_ids.push(id.to_string());
        }
    }
    let group = admin.create(
        "work_group",
        campaign,
        "campaign",
        &[
            ("name", FieldValue::Str("第一组".into())),
            ("villages", FieldValue::Str(group_place_ids.join(","))),
        ],
    )?;
    let mut t = server.connect(&admin)?;
    sync(&mut admin, &mut t, &SyncOptions::default())?;
    server.wait_merged()?;
    println!(
        "  {} places and the work group synced and merged in {:.1} s",
        village_codes.len(),
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let mut table = Tables::open(&server, database.as_deref())?;
    let codes: Vec<String> = village_codes.iter().map(|&v| code(v)).collect();
    for round in 0..o.per_village {
        let batch = generate(campaign, &codes, round)?;
        table.insert(&campaign.to_string(), &batch)?;
        if round % 50 == 49 {
            println!(
                "  {} interviews written ({:.0} s)",
                (round + 1) * codes.len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    table.finish()?;
    let records = o.per_village * codes.len();
    println!(
        "  {records} interviews generated into the server's tables in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The leader's devices, each a store on disk as on a phone.
    let scope = fieldsync_protocol::auth::WireScope {
        all: false,
        campaign: Some(campaign.to_string()),
        places: {
            let mut p: Vec<String> = group_villages.iter().map(|&v| code(v)).collect();
            p.sort();
            p
        },
        write: true,
    };
    for line in explain(&server, database.as_deref(), &scope)? {
        println!("  plan: {line}");
    }
    let mut first = Vec::new();
    let mut first_bytes = 0;
    let mut device = None;
    for i in 0..3 {
        let mut store = Store::open(dir.path().join(format!("leader{i}.sqlite3")))?;
        let mut t = server.enroll(&mut store, &format!("组长{i}"), Role::Leader, Some(group))?;
        t.stats = Default::default();
        let started = Instant::now();
        let report = sync(&mut store, &mut t, &SyncOptions::default())?;
        first.push(started.elapsed().as_secs_f64());
        first_bytes = t.stats.body_bytes_down;
        println!(
            "  first sync: {:.3} s, {} changes, {} bytes down in {} requests",
            started.elapsed().as_secs_f64(),
            report.received,
            t.stats.body_bytes_down,
            report.pull_requests
        );
        let expected = o.group * o.per_village;
        let have = store
            .list(&Filter {
                kind: Some("interview".into()),
                ..Default::default()
            })?
            .len();
        if have != expected {
            bail!("the leader's device holds {have} interviews, not its group's {expected}");
        }
        device = Some((store, t));
    }
    let (mut store, mut t) = device.context("a device")?;
    let mut current = Vec::new();
    let mut current_bytes = 0;
    for _ in 0..5 {
        t.stats = Default::default();
        let started = Instant::now();
        sync(&mut store, &mut t, &SyncOptions::default())?;
        current.push(started.elapsed().as_secs_f64() * 1000.0);
        current_bytes = t.stats.body_bytes_down + t.stats.body_bytes_up;
    }
    let mut after = Vec::new();
    let mut after_bytes = 0;
    for round in 0..5 {
        let batch = generate(campaign, &codes, o.per_village + round)?;
        table.insert(&campaign.to_string(), &batch)?;
        table.finish()?;
        t.stats = Default::default();
        let started = Instant::now();
        let report = sync(&mut store, &mut t, &SyncOptions::default())?;
        after.push(started.elapsed().as_secs_f64() * 1000.0);
        after_bytes = t.stats.body_bytes_down;
        println!(
            "  sync after one new interview in each village: {:.1} ms, {} bytes down",
            started.elapsed().as_secs_f64() * 1000.0,
            after_bytes
        );
        if report.received != 2 * o.group as u64 {
            bail!(
                "the device received {} changes, not its group's {}",
                report.received,
                2 * o.group
            );
        }
    }
    Ok(Figures {
        villages,
        records,
        first_s: median(first),
        first_bytes,
        current_ms: median(current),
        current_bytes,
        after_ms: median(after),
        after_bytes,
    })
}

/// One change of a generated interview: hash, actor, bytes, the actor's sequence number.
type ChangeRow = (Vec<u8>, Vec<u8>, Vec<u8>, i64);

/// One generated interview: its two changes and the row merging would write.
struct Row {
    id: String,
    scope: String,
    changes: Vec<ChangeRow>,
    doc: Vec<u8>,
    fields: String,
    heads: String,
    actor: Vec<u8>,
    device: String,
}

/// Interview `round` of every village in `codes`, built on every core.
fn generate(campaign: Uuid, codes: &[String], round: usize) -> Result<Vec<Row>> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per = codes.len().div_ceil(cores);
    std::thread::scope(|s| {
        let parts: Vec<_> = codes
            .chunks(per)
            .enumerate()
            .map(|(part, chunk)| {
                s.spawn(move || -> Result<Vec<Row>> {
                    let mut rng = Rng((round * 7919 + part) as u64 + 1);
                    chunk
                        .iter()
                        .map(|place| one(campaign, place, round, &mut rng))
                        .collect()
                })
            })
            .collect();
        let mut rows = Vec::new();
        for p in parts {
            rows.extend(
                p.join()
                    .map_err(|_| anyhow::anyhow!("a generator panicked"))??,
            );
        }
        Ok(rows)
    })
}

fn one(campaign: Uuid, place: &str, round: usize, rng: &mut Rng) -> Result<Row> {
    // One device (and actor) per village's work group.
    let n: u64 = place.parse()?;
    let device = Uuid::from_u128(0xd0_0000_0000 + n as u128);
    let actor = ActorId::from(device.as_bytes().as_slice());
    let header = RecordHeader {
        id: Uuid::now_v7(),
        kind: "interview".into(),
        campaign,
        scope: place.into(),
    };
    let fields = interview_fields(round, rng);
    let created = creation::create(&header, &actor, 1_795_000_000_000, &fields)?;
    let mut doc = Vec::new();
    let mut changes = Vec::new();
    for c in created.changes() {
        doc.extend_from_slice(c.raw_bytes());
        changes.push((
            c.hash().0.to_vec(),
            c.actor_id().to_bytes().to_vec(),
            c.raw_bytes().to_vec(),
            c.seq() as i64,
        ));
    }
    Ok(Row {
        id: header.id.to_string(),
        scope: place.into(),
        changes,
        doc,
        fields: created.projection.fields_json().to_string(),
        heads: serde_json::to_string(&created.projection.heads)?,
        actor: actor.to_bytes().to_vec(),
        device: device.to_string(),
    })
}

/// The server's tables, written directly.
enum Tables {
    Sqlite(rusqlite::Connection),
    Postgres {
        rt: tokio::runtime::Runtime,
        client: tokio_postgres::Client,
    },
}

impl Tables {
    fn open(server: &TestServer, database: Option<&str>) -> Result<Tables> {
        match database {
            None => {
                let conn = rusqlite::Connection::open(server.data_dir().join("fieldsync.sqlite3"))?;
                conn.busy_timeout(std::time::Duration::from_secs(60))?;
                Ok(Tables::Sqlite(conn))
            }
            Some(url) => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let client = rt.block_on(async {
                    let (client, connection) =
                        tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
                    tokio::spawn(connection);
                    anyhow::Ok(client)
                })?;
                Ok(Tables::Postgres { rt, client })
            }
        }
    }

    fn insert(&mut self, campaign: &str, rows: &[Row]) -> Result<()> {
        match self {
            Tables::Sqlite(conn) => {
                let tx = conn.transaction()?;
                {
                    let mut change = tx.prepare(
                        "INSERT INTO changes (hash, record_id, actor, actor_seq, pushed_by,
                           received_at, applied, bytes, campaign, scope)
                         VALUES (?1, ?2, ?3, ?4, ?5, 1795000000000, 1, ?6, ?7, ?8)",
                    )?;
                    let mut record = tx.prepare(
                        "INSERT INTO records (id, kind, campaign, scope, first_seq, last_seq,
                           dirty, doc, fields, heads, merged_at)
                         VALUES (?1, 'interview', ?2, ?3, ?4, ?5, 0, ?6, ?7, ?8, 1795000000000)",
                    )?;
                    let mut actor = tx.prepare(
                        "INSERT OR IGNORE INTO actors (actor, device, first_seen)
                         VALUES (?1, ?2, 1795000000000)",
                    )?;
                    for r in rows {
                        actor.execute(rusqlite::params![r.actor, r.device])?;
                        let mut seqs = Vec::new();
                        for (hash, actor, bytes, seq) in &r.changes {
                            change.execute(rusqlite::params![
                                hash, r.id, actor, seq, r.device, bytes, campaign, r.scope
                            ])?;
                            seqs.push(tx.last_insert_rowid());
                        }
                        record.execute(rusqlite::params![
                            r.id,
                            campaign,
                            r.scope,
                            seqs[0],
                            seqs[seqs.len() - 1],
                            r.doc,
                            r.fields,
                            r.heads
                        ])?;
                    }
                }
                tx.commit()?;
            }
            Tables::Postgres { rt, client } => {
                rt.block_on(insert_postgres(client, rows, campaign))?
            }
        }
        Ok(())
    }

    /// Settles what was just written, as the hours between two syncs would: PostgreSQL's planner
    /// statistics brought up to date (autovacuum's `ANALYZE`), SQLite's write-ahead log copied
    /// into the database (a checkpoint), so that the device's sync is not charged for the other
    /// groups' writes.
    fn finish(&mut self) -> Result<()> {
        match self {
            Tables::Postgres { rt, client, .. } => {
                rt.block_on(client.batch_execute("ANALYZE changes; ANALYZE records;"))?
            }
            Tables::Sqlite(conn) => {
                conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?
            }
        }
        Ok(())
    }
}

async fn insert_postgres(
    client: &tokio_postgres::Client,
    rows: &[Row],
    campaign: &str,
) -> Result<()> {
    let changes: Vec<(&Row, &ChangeRow)> = rows
        .iter()
        .flat_map(|r| r.changes.iter().map(move |c| (r, c)))
        .collect();
    let record_ids: Vec<&str> = changes.iter().map(|(r, _)| r.id.as_str()).collect();
    let hashes: Vec<&[u8]> = changes.iter().map(|(_, c)| c.0.as_slice()).collect();
    let actors: Vec<&[u8]> = changes.iter().map(|(_, c)| c.1.as_slice()).collect();
    let bytes: Vec<&[u8]> = changes.iter().map(|(_, c)| c.2.as_slice()).collect();
    let seqs: Vec<i64> = changes.iter().map(|(_, c)| c.3).collect();
    let devices: Vec<&str> = changes.iter().map(|(r, _)| r.device.as_str()).collect();
    let scopes: Vec<&str> = changes.iter().map(|(r, _)| r.scope.as_str()).collect();
    let inserted = client
        .query(
            "INSERT INTO changes (seq, hash, record_id, actor, actor_seq, pushed_by,
                                      received_at, applied, bytes, campaign, scope)
                 SELECT nextval('changes_seq'), w.hash, w.record_id, w.actor, w.actor_seq,
                        w.device, 1795000000000, true, w.bytes, $8, w.scope
                 FROM unnest($1::text[], $2::bytea[], $3::bytea[], $4::bigint[], $5::bytea[],
                             $6::text[], $7::text[])
                      WITH ORDINALITY AS w (record_id, hash, actor, actor_seq, bytes, device,
                                            scope, n)
                 ORDER BY w.n
                 RETURNING record_id, seq",
            &[
                &record_ids,
                &hashes,
                &actors,
                &seqs,
                &bytes,
                &devices,
                &scopes,
                &campaign,
            ],
        )
        .await?;

    // Each record's first and last sequence numbers.
    let mut first = std::collections::HashMap::<String, (i64, i64)>::new();
    for r in &inserted {
        let seq: i64 = r.get(1);
        let e = first.entry(r.get(0)).or_insert((seq, seq));
        e.0 = e.0.min(seq);
        e.1 = e.1.max(seq);
    }
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let places: Vec<&str> = rows.iter().map(|r| r.scope.as_str()).collect();
    let firsts: Vec<i64> = rows.iter().map(|r| first[&r.id].0).collect();
    let lasts: Vec<i64> = rows.iter().map(|r| first[&r.id].1).collect();
    let docs: Vec<&[u8]> = rows.iter().map(|r| r.doc.as_slice()).collect();
    let fields: Vec<&str> = rows.iter().map(|r| r.fields.as_str()).collect();
    let heads: Vec<&str> = rows.iter().map(|r| r.heads.as_str()).collect();
    client
        .execute(
            "INSERT INTO records (id, kind, campaign, scope, first_seq, last_seq, dirty, doc,
                                  fields, heads, merged_at)
             SELECT w.id, 'interview', $1, w.scope, w.f, w.l, false, w.doc, w.fields::jsonb,
                    w.heads::jsonb, 1795000000000
             FROM unnest($2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bytea[],
                         $7::text[], $8::text[]) AS w (id, scope, f, l, doc, fields, heads)",
            &[
                &campaign, &ids, &places, &firsts, &lasts, &docs, &fields, &heads,
            ],
        )
        .await?;
    let mut owners: Vec<(&[u8], &str)> = rows
        .iter()
        .map(|r| (r.actor.as_slice(), r.device.as_str()))
        .collect();
    owners.sort();
    owners.dedup();
    let (a, d): (Vec<&[u8]>, Vec<&str>) = owners.into_iter().unzip();
    client
        .execute(
            "INSERT INTO actors (actor, device, first_seen)
             SELECT a, d, 1795000000000 FROM unnest($1::bytea[], $2::text[]) AS w (a, d)
             ON CONFLICT DO NOTHING",
            &[&a, &d],
        )
        .await?;
    Ok(())
}

/// How the server's database reads a pull page of the group.
fn explain(
    server: &TestServer,
    database: Option<&str>,
    scope: &fieldsync_protocol::auth::WireScope,
) -> Result<Vec<String>> {
    match database {
        None => Ok(fieldsync_server::storage::sqlite::explain_pull(
            server.data_dir(),
            scope,
        )?),
        Some(url) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let storage =
                    fieldsync_server::storage::postgres::PostgresStorage::open_for_admin(url)
                        .await?;
                let plan = storage.explain_pull(scope).await;
                fieldsync_server::storage::Storage::close(&storage).await;
                Ok(plan?)
            })
        }
    }
}
