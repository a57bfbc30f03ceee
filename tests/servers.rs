//! Stateless servers: three `fieldsync-server`s on one PostgreSQL behind a round-robin TCP
//! balancer (`fieldsync::balancer`). Six devices push and pull concurrently through it, each
//! request landing on whichever server the balancer picks; one server is killed while pushes are
//! under way and started again. At the end every device and the database hold the same records
//! and heads, every change a device made is acknowledged and stored once, and every record is
//! merged with nothing waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};
use fieldsync::{TestServer, balancer::Balancer};
use fieldsync_client_core::{FieldValue, HttpTransport, Store, SyncOptions, sync::sync};
use uuid::Uuid;

const DEVICES: usize = 6;
const ROUNDS: usize = 12;
const VILLAGE: &str = "350102001";

fn text(v: &str) -> FieldValue {
    FieldValue::Text(v.into())
}

/// Syncs that failed and were tried again (a connection cut by the killed server).
static RETRIES: AtomicUsize = AtomicUsize::new(0);

/// Syncs through the balancer, trying again (a bounded number of times) when the connection
/// breaks or lands on a server that is going away.
fn sync_retrying(store: &mut Store, url: &str, token: &str) -> Result<()> {
    let mut last = None;
    for _ in 0..50 {
        let mut t = HttpTransport::new(url)?.with_token(token.to_string());
        match sync(store, &mut t, &SyncOptions::default()) {
            Ok(_) => return Ok(()),
            Err(e) => {
                RETRIES.fetch_add(1, Ordering::SeqCst);
                last = Some(e);
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    bail!("sync kept failing: {last:?}")
}

#[test]
fn three_servers_on_one_database_serve_any_device_in_any_order() -> Result<()> {
    let database = fieldsync::postgres::database()?;
    let start = || -> Result<TestServer> {
        let url = database.clone();
        TestServer::start_with_config(move |c| c.database = Some(url))
    };
    let mut servers = [start()?, start()?, start()?];
    let balancer = Balancer::start(servers.iter().map(|s| s.addr).collect())?;
    let url = balancer.url();

    // The devices, enrolled once (through the first server: the database is shared), and one
    // record all of them edit.
    let mut stores = Vec::new();
    for _ in 0..DEVICES {
        let store = Store::open_in_memory()?;
        let token = servers[0].token_for(&store)?;
        stores.push((store, token));
    }
    let campaign = Uuid::now_v7();
    let shared = stores[0].0.create(
        "finding",
        campaign,
        VILLAGE,
        &[("text", text("共同记录："))],
    )?;
    {
        let (store, token) = &mut stores[0];
        sync_retrying(store, &url, token)?;
    }

    let pushes = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = stores
        .into_iter()
        .enumerate()
        .map(|(i, (mut store, token))| {
            let (url, pushes) = (url.clone(), pushes.clone());
            std::thread::spawn(move || -> Result<(Store, Vec<Uuid>)> {
                let mut mine = Vec::new();
                for round in 0..ROUNDS {
                    for k in 0..3 {
                        mine.push(store.create(
                            "interview",
                            campaign,
                            VILLAGE,
                            &[("notes", text(&format!("设备{i}第{round}轮第{k}条")))],
                        )?);
                    }
                    if store.exists(shared)? {
                        store.edit(shared, |e| e.append_text("text", &format!("{i}")))?;
                    }
                    sync_retrying(&mut store, &url, &token)?;
                    pushes.fetch_add(1, Ordering::SeqCst);
                }
                Ok((store, mine))
            })
        })
        .collect();

    // Kill the second server while the devices are pushing, then start it again on the same
    // database (a new port, as a restarted process behind a balancer gets).
    while pushes.load(Ordering::SeqCst) < DEVICES * ROUNDS / 3 || balancer.open()[1] == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    servers[1].kill();
    killed.store(true, Ordering::SeqCst);
    balancer.set(1, None);
    std::thread::sleep(Duration::from_millis(300));
    servers[1] = start()?;
    balancer.set(1, Some(servers[1].addr));

    let mut done = Vec::new();
    for h in handles {
        done.push(
            h.join()
                .map_err(|_| anyhow::anyhow!("a device thread panicked"))??,
        );
    }
    assert!(killed.load(Ordering::SeqCst));
    // Two more rounds each so that everyone has everyone's changes.
    let tokens: Vec<String> = done
        .iter()
        .map(|(s, _)| servers[0].token_for(s))
        .collect::<Result<_>>()?;
    for _ in 0..2 {
        for ((store, _), token) in done.iter_mut().zip(&tokens) {
            sync_retrying(store, &url, token)?;
        }
    }
    let served = balancer.served();
    assert!(
        served.iter().all(|n| *n > 0),
        "every server took connections: {served:?}"
    );
    eprintln!(
        "connections per server {served:?}, syncs tried again after the kill: {}",
        RETRIES.load(Ordering::SeqCst)
    );

    // Nothing acknowledged lost, nothing stored twice, everything merged the same everywhere.
    let status = servers[2].wait_merged()?;
    let all_ids: Vec<Uuid> = std::iter::once(shared)
        .chain(done.iter().flat_map(|(_, ids)| ids.iter().copied()))
        .collect();
    assert_eq!(all_ids.len(), 1 + DEVICES * ROUNDS * 3);
    for (store, _) in &done {
        assert_eq!(store.pending_upload()?, 0, "every change acknowledged");
        assert_eq!(store.waiting_for_dependencies()?, 0);
    }
    assert_eq!(status["records"], all_ids.len());
    assert_eq!(status["waiting_changes"], 0, "{status}");
    // Every interview is two changes (genesis and its fields); the shared record has its
    // genesis, its first fields and one change per edit.
    let edits = match &done[0].0.get(shared)?.fields["text"] {
        FieldValue::Text(t) => t.chars().filter(|c| c.is_ascii_digit()).count(),
        other => bail!("the shared record's text is {other:?}"),
    };
    assert!(edits > DEVICES, "the devices edited the shared record");
    assert_eq!(
        status["changes"],
        DEVICES * ROUNDS * 3 * 2 + 2 + edits,
        "{status}"
    );
    for id in &all_ids {
        let heads = done[0].0.get(*id)?.heads;
        for (store, _) in &done[1..] {
            assert_eq!(store.get(*id)?.heads, heads, "record {id} on every device");
        }
        let merged = servers[(id.as_u128() % 3) as usize].get_json(&format!("/v1/records/{id}"))?;
        let mut on_server: Vec<String> = serde_json::from_value(merged["heads"].clone())?;
        let mut on_device = heads.clone();
        on_server.sort();
        on_device.sort();
        assert_eq!(on_server, on_device, "record {id} on the server");
        assert_eq!(merged["up_to_date"], true, "{merged}");
    }
    Ok(())
}

/// The data version that keys each server's tallies cache lives in the database: tallies a
/// server has cached are computed again after another server took the push and merged it.
#[test]
fn a_servers_cached_tallies_follow_what_another_server_merged() -> Result<()> {
    let database = fieldsync::postgres::database()?;
    let start = || -> Result<TestServer> {
        let url = database.clone();
        TestServer::start_with_config(move |c| c.database = Some(url))
    };
    let (a, b) = (start()?, start()?);
    let campaign = Uuid::now_v7();
    let mut store = Store::open_in_memory()?;
    store.create(
        "campaign",
        campaign,
        "campaign",
        &[("name", FieldValue::Str("2026年回头看".into()))],
    )?;
    store.create("interview", campaign, VILLAGE, &[("notes", text("第一次"))])?;
    let mut ta = a.connect(&store)?;
    sync(&mut store, &mut ta, &SyncOptions::default())?;
    a.wait_merged()?;
    let path = format!("/v1/campaigns/{campaign}/tallies");
    let interviews = |s: &TestServer| -> Result<u64> {
        Ok(s.get_json(&path)?["interviews"].as_u64().unwrap_or(0))
    };
    // Server b computes and caches its tallies, and answers from the cache while nothing moves.
    for _ in 0..100 {
        if interviews(&b)? == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(interviews(&b)?, 1);
    store.create("interview", campaign, VILLAGE, &[("notes", text("第二次"))])?;
    sync(&mut store, &mut ta, &SyncOptions::default())?;
    a.wait_merged()?;
    let mut seen = 0;
    for _ in 0..100 {
        seen = interviews(&b)?;
        if seen == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(seen, 2, "server b's cached tallies were recomputed");
    Ok(())
}

/// Servers opening one database run its migrations once; a database whose recorded migration
/// differs from the code's refuses to open.
#[test]
fn migrations_are_recorded_once_and_an_edited_one_refuses_to_open() -> Result<()> {
    let (cluster, url, name, rt) = fresh_database()?;
    rt.block_on(async {
        // Two servers starting together.
        let (a, b) = tokio::join!(
            fieldsync_server::open_storage_at(std::path::Path::new("."), Some(&url)),
            fieldsync_server::open_storage_at(std::path::Path::new("."), Some(&url)),
        );
        let (a, b) = (a?, b?);
        a.close().await;
        b.close().await;
        anyhow::Ok(())
    })?;
    // (Both opened: without the migration lock one of them fails creating a table the other
    // just created.) The first migration is recorded.
    cluster.sql(
        &name,
        "DO $$ BEGIN
           IF NOT EXISTS (SELECT 1 FROM schema_migrations WHERE id = 1) THEN
             RAISE EXCEPTION 'the first migration is not recorded';
           END IF;
         END $$",
    )?;
    cluster.sql(
        &name,
        "UPDATE schema_migrations SET sql = sql || ' ' WHERE id = 1",
    )?;
    let opened = rt.block_on(fieldsync_server::open_storage_at(
        std::path::Path::new("."),
        Some(&url),
    ));
    let err = opened.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("was changed after it was applied"), "{err}");
    Ok(())
}

/// A database from before each change carried its record's campaign and place gets them from
/// the records when a new server opens it, so that scoped pulls read the right part of the log.
#[test]
fn an_older_database_learns_the_campaign_and_place_of_every_change() -> Result<()> {
    let (cluster, url, name, rt) = fresh_database()?;
    let open = || open_and_close(&rt, &url);
    open()?;
    // Back to the schema before that migration (and every one after it), with two records
    // changes in it.
    cluster.sql(
        &name,
        &format!(
            r"{}
          INSERT INTO records (id, kind, campaign, scope, first_seq, last_seq, dirty)
          VALUES ('a', 'interview', 'c1', '510100001', 1, 3, false),
                 ('b', 'work_group', 'c1', 'campaign', 2, 2, false);
          INSERT INTO changes (seq, hash, record_id, actor, actor_seq, pushed_by, received_at,
                               applied, bytes)
          VALUES (1, '\x01', 'a', '\xaa', 1, 'd', 0, true, ''),
                 (2, '\x02', 'b', '\xaa', 1, 'd', 0, true, ''),
                 (3, '\x03', 'a', '\xaa', 2, 'd', 0, true, '');",
            roll_back_to("each change carries its record's campaign and place")
        ),
    )?;
    open()?;
    cluster.sql(
        &name,
        "DO $$ DECLARE got text; BEGIN
           SELECT string_agg(seq || ':' || campaign || ':' || scope, ',' ORDER BY seq)
             INTO got FROM changes;
           IF got IS DISTINCT FROM '1:c1:510100001,2:c1:campaign,3:c1:510100001' THEN
             RAISE EXCEPTION 'changes not given their records'' places: %', got;
           END IF;
         END $$",
    )?;
    Ok(())
}

/// Records merged before their short values were kept apart get them from their fields when
/// the database is upgraded: every value but a text over 64 characters (counted in
/// characters, not bytes), by the same rule as the merge (`storage::facts`).
#[test]
fn an_older_database_learns_the_short_values_of_every_record() -> Result<()> {
    let (cluster, url, name, rt) = fresh_database()?;
    let open = || open_and_close(&rt, &url);
    open()?;
    let long = "二".repeat(65);
    let short = "一".repeat(64);
    cluster.sql(
        &name,
        &format!(
            r#"{}
              INSERT INTO records (id, kind, campaign, scope, first_seq, last_seq, dirty, fields)
              VALUES ('a', 'interview', 'c1', 'v1', 1, 1, false,
                      '{{"rating": "good", "stars": 4, "share": 0.5, "violation": true,
                        "member": null, "ratings": {{"m1": "satisfied"}}, "tags": ["x"],
                        "name": "{short}", "notes": "{long}"}}'),
                     ('b', 'interview', 'c1', 'v1', 2, 2, false, '{{"notes": "{long}"}}'),
                     ('c', 'interview', 'c1', 'v1', 3, 3, true, NULL);"#,
            roll_back_to("each record keeps its short values apart")
        ),
    )?;
    open()?;
    cluster.sql(
        &name,
        &format!(
            r#"DO $$ BEGIN
                IF (SELECT facts FROM records WHERE id = 'a') IS DISTINCT FROM
                   '{{"rating": "good", "stars": 4, "share": 0.5, "violation": true,
                     "member": null, "ratings": {{"m1": "satisfied"}}, "tags": ["x"],
                     "name": "{short}"}}'::jsonb THEN
                  RAISE EXCEPTION 'short values of a: %', (SELECT facts FROM records WHERE id = 'a');
                END IF;
                IF (SELECT facts FROM records WHERE id = 'b') IS DISTINCT FROM '{{}}'::jsonb THEN
                  RAISE EXCEPTION 'short values of b: %', (SELECT facts FROM records WHERE id = 'b');
                END IF;
                IF (SELECT facts FROM records WHERE id = 'c') IS NOT NULL THEN
                  RAISE EXCEPTION 'a record never merged has no short values';
                END IF;
              END $$"#
        ),
    )?;
    Ok(())
}

/// While one server merges a template of a campaign, no server merges that campaign's records
/// (they would be reviewed against the old template, and the new template's review of the
/// campaign would skip them): a record's merge waits for the campaign's template lock, and goes
/// on once it is released.
#[test]
fn a_record_is_not_merged_while_a_template_of_its_campaign_is_being_merged() -> Result<()> {
    let url = fieldsync::postgres::database()?;
    let server = TestServer::start_with_config({
        let url = url.clone();
        move |c| c.database = Some(url)
    })?;
    let campaign = Uuid::now_v7();
    // Another server's template merge, as a session holding the campaign's lock.
    let (held_tx, held_rx) = std::sync::mpsc::channel::<()>();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let holder = std::thread::spawn(move || -> Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            client.batch_execute("BEGIN").await?;
            client
                .execute(
                    "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                    &[
                        &fieldsync_server::storage::postgres::TEMPLATE_LOCK_SPACE,
                        &campaign.to_string(),
                    ],
                )
                .await?;
            held_tx.send(())?;
            let _ = release_rx.await;
            client.batch_execute("COMMIT").await?;
            anyhow::Ok(())
        })
    });
    held_rx.recv()?;
    let mut store = Store::open_in_memory()?;
    store.create(
        "interview",
        campaign,
        "510100001",
        &[("notes", FieldValue::Text("谈话记录".into()))],
    )?;
    let mut t = server.connect(&store)?;
    sync(&mut store, &mut t, &SyncOptions::default())?;
    // Stored and acknowledged, but not merged while the template is: the merger polls every
    // 0.1 s, so a second is ten chances to have merged it.
    std::thread::sleep(Duration::from_secs(1));
    let status = server.get_json("/v1/status")?;
    assert_eq!(status["unmerged_records"], 1, "{status}");
    let _ = release_tx.send(());
    holder
        .join()
        .map_err(|_| anyhow::anyhow!("the lock holder panicked"))??;
    server.wait_merged()?;
    Ok(())
}

/// The health check asks the database (a ping now, no longer the counts of `/v1/status`): once
/// the database is gone, the server says so with a 5xx, and keeps answering.
#[test]
fn the_health_check_fails_once_the_database_is_gone() -> Result<()> {
    let (cluster, url, name, _rt) = fresh_database()?;
    let server = TestServer::start_with_config(move |c| c.database = Some(url))?;
    assert_eq!(server.get_json("/health")?["status"], "ok");
    cluster.sql("postgres", &format!("DROP DATABASE {name} WITH (FORCE)"))?;
    for _ in 0..2 {
        let answer = reqwest::blocking::get(format!("{}/health", server.url()))?;
        assert!(answer.status().is_server_error(), "{}", answer.status());
    }
    Ok(())
}

/// Every PostgreSQL migration after the first, by the start of its name, and the SQL that undoes
/// it, oldest first. A test of an upgrade rolls a fresh database back to before one of them.
const UNDO: &[(&str, &str)] = &[
    (
        "each change carries its record's campaign and place",
        "ALTER TABLE changes DROP COLUMN campaign, DROP COLUMN scope;",
    ),
    (
        "each record keeps its short values apart",
        "ALTER TABLE records DROP COLUMN facts;",
    ),
    (
        "a village's records and quoted notes are read through indexes",
        "DROP INDEX records_by_place_seq, records_by_village, records_noted;
         CREATE INDEX records_by_place ON records (campaign, scope, kind);
         ALTER TABLE records RESET (autovacuum_vacuum_scale_factor,
                                    autovacuum_vacuum_insert_scale_factor);",
    ),
    (
        "each place's records carry a version",
        "DROP TABLE place_versions; DROP SEQUENCE place_version_seq;",
    ),
];

/// SQL that takes a database back to before the migration whose name starts with `first`:
/// that one and every later one are undone and forgotten, newest first. It fails the test where
/// a migration was appended that [`UNDO`] does not know.
fn roll_back_to(first: &str) -> String {
    let from = UNDO
        .iter()
        .position(|(name, _)| *name == first)
        .expect("a migration UNDO knows");
    let names: Vec<String> = UNDO
        .iter()
        .map(|(name, _)| format!("'{}%'", name.replace('\'', "''")))
        .collect();
    let mut sql = format!(
        "DO $$ BEGIN
           IF (SELECT count(*) FROM schema_migrations) <> {} OR EXISTS (
                SELECT 1 FROM schema_migrations m
                WHERE m.id > 1 AND NOT m.name LIKE (ARRAY[{}])[m.id - 1]) THEN
             RAISE EXCEPTION 'a newer migration was appended: add it to UNDO';
           END IF;
         END $$;",
        UNDO.len() + 1,
        names.join(", ")
    );
    for (i, (_, undo)) in UNDO.iter().enumerate().skip(from).rev() {
        sql.push_str(&format!(
            "\nDELETE FROM schema_migrations WHERE id = {};\n{undo}",
            i + 2
        ));
    }
    sql
}

/// A fresh database on the tests' cluster (the cluster, the database's URL and name) and a
/// runtime to open storages on it from a test.
/// Opens the storage at `url` (migrating it) and closes it again.
fn open_and_close(rt: &tokio::runtime::Runtime, url: &str) -> Result<()> {
    rt.block_on(async {
        let storage =
            fieldsync_server::open_storage_at(std::path::Path::new("."), Some(url)).await?;
        storage.close().await;
        anyhow::Ok(())
    })
}

fn fresh_database() -> Result<(
    &'static fieldsync::postgres::Cluster,
    String,
    String,
    tokio::runtime::Runtime,
)> {
    let cluster = fieldsync::postgres::cluster()?;
    let url = cluster.database()?;
    let name = url.rsplit('/').next().unwrap_or_default().to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok((cluster, url, name, rt))
}
