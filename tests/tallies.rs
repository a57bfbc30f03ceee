//! The two storages count alike: seed 002's generated campaign, pushed by the same devices in
//! the same order to a SQLite server and to a PostgreSQL server, gives the same tallies to the
//! last village note, and the same village digests (what a dossier counts), for the department,
//! for one work group's villages, for a period, and once the campaign counts approved records
//! only.
//! Each storage writes the tally rules in its own SQL; this is where they are held to one answer.

use anyhow::Result;
use fieldsync::{Backend, TestServer, generator};
use fieldsync_client_core::{FieldValue, Filter, HttpTransport, SyncOptions, sync::sync};
use fieldsync_protocol::auth::Role;
use fieldsync_server::storage::{Period, Tallies, Visibility};
use uuid::Uuid;

/// The tallies a storage computes directly (notes included, which no response carries), for
/// each of `asks`.
fn tallies_of(
    server: &TestServer,
    database: Option<&str>,
    campaign: Uuid,
    asks: &[(Visibility, Period)],
) -> Result<Vec<Tallies>> {
    tokio::runtime::Runtime::new()?.block_on(async {
        let storage = fieldsync_server::open_storage_at(server.data_dir(), database).await?;
        let mut out = Vec::new();
        for (visibility, period) in asks {
            out.push(
                storage
                    .tallies(campaign, visibility.clone(), period.clone())
                    .await?,
            );
        }
        storage.close().await;
        Ok(out)
    })
}

/// The evaluation forms a digest counted (every generated form rates the team).
fn forms_in(digest: &serde_json::Value) -> u64 {
    digest["values"]["evaluation"]["team_rating"]
        .as_object()
        .map_or(0, |v| {
            v.values().filter_map(serde_json::Value::as_u64).sum()
        })
}

/// The evaluation forms the tallies counted in `village`.
fn forms_tallied(t: &Tallies, village: &str) -> u64 {
    t.villages_detail
        .iter()
        .find(|v| v.code == village)
        .map_or(0, |v| v.evaluations)
}

/// A village digest as a storage gathers it for the dossier (asked as the dossier asks, with the
/// campaign's template), for each `(village, visibility, period)`: its counts, and the ids and
/// short values of its records, as JSON to compare.
fn digests_of(
    server: &TestServer,
    database: Option<&str>,
    campaign: Uuid,
    asks: &[(String, Visibility, Period)],
) -> Result<Vec<serde_json::Value>> {
    tokio::runtime::Runtime::new()?.block_on(async {
        let storage = fieldsync_server::open_storage_at(server.data_dir(), database).await?;
        let template = storage.template(campaign).await?;
        let mut out = Vec::new();
        for (village, visibility, period) in asks {
            let ask = fieldsync_server::report::village::digest_ask(
                template.as_ref(),
                campaign,
                village,
                period.clone(),
            );
            let d = storage.village_digest(ask, visibility.clone()).await?;
            let brief = |records: &[fieldsync_server::storage::RecordView]| {
                records
                    .iter()
                    .map(|r| serde_json::json!([r.id, r.kind, r.fields, r.conflicts, r.scope]))
                    .collect::<Vec<_>>()
            };
            out.push(serde_json::json!({
                "kinds": d.kinds,
                "values": d.values,
                "records": brief(&d.records),
                "files": brief(&d.files),
            }));
        }
        storage.close().await;
        Ok(out)
    })
}

#[test]
fn both_storages_count_the_generated_campaign_alike() -> Result<()> {
    // Generated once (record ids are random), against a scratch server.
    let scratch = TestServer::start()?;
    let dir = tempfile::tempdir()?;
    let mut g = generator::generate(dir.path(), &scratch.url(), &generator::Config::default())?;
    let village = |i: usize| g.villages[i].clone();
    let asks = [
        (Visibility::All, Period::default()),
        (
            Visibility::Places {
                campaign: g.campaign.to_string(),
                places: vec![village(0), village(1)],
            },
            Period::default(),
        ),
        (
            Visibility::All,
            Period {
                from: Some("2023-05-12".into()),
                to: Some("2023-05-20".into()),
            },
        ),
    ];
    // A village as the department sees it, as its work group sees it, for a period, and a
    // village the group does not see.
    let village_asks: Vec<(String, Visibility, Period)> = vec![
        (village(0), asks[0].0.clone(), Period::default()),
        (village(0), asks[1].0.clone(), Period::default()),
        (village(0), Visibility::All, asks[2].1.clone()),
        (village(2), asks[1].0.clone(), Period::default()),
    ];
    let mut answers = Vec::new();
    let mut digests = Vec::new();
    let mut servers = Vec::new();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let database = backend.fresh_database()?;
        let server = TestServer::start_with_config({
            let database = database.clone();
            move |c| c.database = database
        })?;
        // The same stores, in the same order: the same arrival order, so the same first notes.
        for store in std::iter::once(&mut g.admin).chain(g.devices.iter_mut()) {
            store.forget_server_state()?;
            // Enrolled afresh at this server (the fixture keeps one token per device).
            fieldsync::enroll_at(&server.url(), store, "组织部", Role::Admin, None)?;
            let mut t = server.connect(store)?;
            sync(store, &mut t, &SyncOptions::default())?;
        }
        server.wait_merged()?;
        answers.push(tallies_of(&server, database.as_deref(), g.campaign, &asks)?);
        digests.push(digests_of(
            &server,
            database.as_deref(),
            g.campaign,
            &village_asks,
        )?);
        // The department's token at this server (the fixture keeps one per device: the last).
        let token = server.token_for(&g.admin)?;
        servers.push((server, database, token));
    }
    // On one connection (none free for the second half), PostgreSQL counts the same.
    let (_, database, _) = &servers[1];
    let one = tokio::runtime::Runtime::new()?.block_on(async {
        let url = database.as_deref().expect("a PostgreSQL database");
        let storage: std::sync::Arc<dyn fieldsync_server::storage::Storage> = std::sync::Arc::new(
            fieldsync_server::storage::postgres::PostgresStorage::open_for_admin_with_connections(
                url, 1,
            )
            .await?,
        );
        let (visibility, period) = asks[0].clone();
        let t = storage.tallies(g.campaign, visibility, period).await;
        storage.close().await;
        anyhow::Ok(t?)
    })?;
    assert_eq!(
        one, answers[1][0],
        "PostgreSQL on one connection, then on two"
    );
    let (sqlite, postgres) = (&answers[0], &answers[1]);
    for (i, (a, b)) in sqlite.iter().zip(postgres).enumerate() {
        // Something to compare: the campaign's villages, with numbers and notes.
        assert!(a.villages_detail.len() >= 2, "ask {i}: {a:?}");
        assert!(
            a.interviews > 0 && a.members_interviewed > 0,
            "ask {i}: {a:?}"
        );
        // Forms without a date of their own are of the day they arrived: not in May 2023.
        assert!(
            i == 2 || (!a.member_satisfaction.is_empty() && !a.team_satisfaction.is_empty()),
            "ask {i}: no evaluation forms to compare"
        );
        assert!(
            !a.interviewed_by_level.is_empty() && !a.members_by_level.is_empty(),
            "ask {i}: no levels to compare"
        );
        assert!(
            a.villages_detail.iter().any(|v| !v.notes.is_empty()),
            "ask {i}: no notes to compare"
        );
        assert_eq!(a, b, "ask {i}: SQLite's tallies, then PostgreSQL's");
    }
    // The village digests: something to compare, the same in both, and a village out of sight
    // has nothing.
    let d = &digests[0];
    assert!(
        d[0]["kinds"]["interview"].as_u64() > Some(0)
            && d[0]["values"]["questionnaire"]
                .as_object()
                .is_some_and(|q| q
                    .values()
                    .any(|v| v.as_object().is_some_and(|v| !v.is_empty())))
            && d[0]["values"]["evaluation"]["team_rating"]
                .as_object()
                .is_some_and(|v| !v.is_empty())
            && d[0]["records"].as_array().is_some_and(|r| r.len() >= 3),
        "nothing to compare: {}",
        d[0]
    );
    assert_eq!(d[0], d[1], "the group sees its own village whole");
    // The digest counts the forms the tallies count (another query), every day and a period's.
    assert!(forms_in(&d[0]) > 0);
    assert_eq!(forms_in(&d[0]), forms_tallied(&answers[0][0], &village(0)));
    assert_eq!(forms_in(&d[2]), forms_tallied(&answers[0][2], &village(0)));
    assert_ne!(d[0]["kinds"], d[2]["kinds"], "a period counts fewer");
    assert_eq!(d[3]["kinds"], serde_json::json!({}), "out of sight");
    for (i, (a, b)) in digests[0].iter().zip(&digests[1]).enumerate() {
        assert_eq!(a, b, "village ask {i}: SQLite's digest, then PostgreSQL's");
    }
    // The asks differ: a group sees fewer interviews, a period fewer still than every day.
    assert!(sqlite[1].interviews < sqlite[0].interviews);
    assert!(sqlite[2].interviews < sqlite[0].interviews);

    // A server keeps what it counted of each place and reads again only the places whose records
    // were written since: the department deletes an interview of village 0 and adds two, and a
    // meeting, in village 1. PostgreSQL's kept counts then equal SQLite's counted afresh, and only
    // those two places were read again, once after the push and once after the merge.
    let rt = tokio::runtime::Runtime::new()?;
    let url = servers[1].1.clone().expect("a PostgreSQL database");
    let kept =
        rt.block_on(fieldsync_server::storage::postgres::PostgresStorage::open_for_admin(&url))?;
    let everything = || (Visibility::All, Period::default());
    let ask = |storage: &fieldsync_server::storage::postgres::PostgresStorage,
               (visibility, period): (Visibility, Period)| {
        rt.block_on(fieldsync_server::storage::Records::tallies(
            storage, g.campaign, visibility, period,
        ))
    };
    assert_eq!(ask(&kept, everything())?, postgres[0], "counted afresh");
    assert_eq!(ask(&kept, asks[1].clone())?, postgres[1], "counted afresh");
    let counted = kept.places_read();
    assert_eq!(ask(&kept, everything())?, postgres[0], "nothing written");
    assert_eq!(kept.places_read(), counted, "nothing written, nothing read");
    for (server, _, token) in &servers {
        let mut t = HttpTransport::new(&server.url())?.with_token(token.clone());
        sync(&mut g.admin, &mut t, &SyncOptions::default())?;
    }
    let gone = g
        .admin
        .list(&Filter {
            kind: Some("interview".into()),
            campaign: Some(g.campaign),
            scope: Some(village(0)),
            ..Default::default()
        })?
        .remove(0)
        .header
        .id;
    g.admin.delete(gone)?;
    for who in ["villager_rep", "party_member"] {
        g.admin.create(
            "interview",
            g.campaign,
            &village(1),
            &[
                ("interviewee_type", FieldValue::Str(who.into())),
                ("suggestions_collected", FieldValue::Int(3)),
            ],
        )?;
    }
    g.admin.create(
        "meeting",
        g.campaign,
        &village(1),
        &[("participants", FieldValue::Int(7))],
    )?;
    // And a document review with a photo: the dossier's photo strip finds it in the digest.
    let review = g.admin.create(
        "document_review",
        g.campaign,
        &village(1),
        &[
            ("date", FieldValue::Str("2023-05-16".into())),
            ("documents", FieldValue::Str("finance".into())),
            ("compliant", FieldValue::Bool(true)),
        ],
    )?;
    g.admin.attach(
        review,
        "photos",
        "会议记录.jpg",
        Some("image/jpeg"),
        b"\xff\xd8\xff\xe0 the minutes",
    )?;
    // PostgreSQL's merging held back meanwhile: a session holds the campaign's template lock,
    // which every merge of its records shares. Pushed records count before they are merged (by
    // kind and place; their values and the deletion once merged), so the push moves the places'
    // versions, and the merge moves them again.
    let (holder, connection) = rt.block_on(tokio_postgres::connect(&url, tokio_postgres::NoTls))?;
    rt.spawn(connection);
    let lock = [
        &fieldsync_server::storage::postgres::TEMPLATE_LOCK_SPACE
            as &(dyn tokio_postgres::types::ToSql + Sync),
        &g.campaign.to_string(),
    ];
    rt.block_on(holder.execute("SELECT pg_advisory_lock($1, hashtext($2))", &lock))?;
    for (server, _, token) in &servers {
        let mut t = HttpTransport::new(&server.url())?.with_token(token.clone());
        sync(&mut g.admin, &mut t, &SyncOptions::default())?;
    }
    let pushed = ask(&kept, everything())?;
    assert_eq!(pushed.interviews, sqlite[0].interviews + 2, "pushed");
    assert_eq!(pushed.meetings, sqlite[0].meetings + 1);
    assert_eq!(pushed.meeting_participants, sqlite[0].meeting_participants);
    assert_eq!(kept.places_read(), counted + 2, "the places pushed to");
    rt.block_on(holder.execute("SELECT pg_advisory_unlock($1, hashtext($2))", &lock))?;
    for (server, _, _) in &servers {
        server.wait_merged()?;
    }
    let fresh = tallies_of(&servers[0].0, None, g.campaign, &asks[..2])?;
    let edited = ask(&kept, everything())?;
    assert_eq!(edited.interviews, sqlite[0].interviews + 1, "merged");
    assert_eq!(edited.meetings, sqlite[0].meetings + 1);
    assert_eq!(
        edited.meeting_participants,
        sqlite[0].meeting_participants + 7
    );
    assert_eq!(edited.suggestions, sqlite[0].suggestions + 6);
    assert_eq!(
        edited, fresh[0],
        "SQLite afresh, then PostgreSQL's kept counts"
    );
    assert_eq!(
        kept.places_read(),
        counted + 4,
        "only the two villages written are read again"
    );
    assert_eq!(ask(&kept, asks[1].clone())?, fresh[1], "a group's villages");
    let photo = [(village(1), Visibility::All, Period::default())];
    let with_photo = digests_of(&servers[0].0, None, g.campaign, &photo)?;
    let files = with_photo[0]["files"].as_array().expect("files");
    assert_eq!(files.len(), 1, "{}", with_photo[0]);
    assert_eq!(files[0][0], serde_json::json!(review));
    assert_eq!(
        with_photo,
        digests_of(&servers[1].0, servers[1].1.as_deref(), g.campaign, &photo)?,
        "a village with a photo: SQLite's digest, then PostgreSQL's"
    );
    assert_eq!(kept.places_read(), counted + 4, "kept for the group too");
    rt.block_on(fieldsync_server::storage::Storage::close(&kept));

    // The campaign counts approved records only, and a reviewer approved a village's interviews
    // and evaluation forms on each server: the same again.
    let campaign_record = g
        .admin
        .list(&Filter {
            kind: Some("campaign".into()),
            campaign: Some(g.campaign),
            ..Default::default()
        })?
        .remove(0)
        .header
        .id;
    g.admin.set(
        campaign_record,
        "count_approved_only",
        FieldValue::Bool(true),
    )?;
    let mut approved = Vec::new();
    let mut approved_digests = Vec::new();
    for (server, database, token) in &servers {
        let mut t = HttpTransport::new(&server.url())?.with_token(token.clone());
        sync(&mut g.admin, &mut t, &SyncOptions::default())?;
        let mut ids = Vec::new();
        for kind in ["interview", "evaluation"] {
            let list = server.get_json(&format!(
                "/v1/records?campaign={}&kind={kind}&scope={}&limit=10000",
                g.campaign,
                village(0)
            ))?;
            ids.extend(
                list.as_array()
                    .expect("a list")
                    .iter()
                    .map(|r| r["id"].as_str().unwrap_or_default().to_string()),
            );
        }
        server.approve(g.campaign, &ids)?;
        server.wait_merged()?;
        let all = [(Visibility::All, Period::default())];
        approved.push(tallies_of(server, database.as_deref(), g.campaign, &all)?.remove(0));
        approved_digests.push(digests_of(
            server,
            database.as_deref(),
            g.campaign,
            &village_asks[..1],
        )?);
    }
    let (a, b) = (&approved_digests[0][0], &approved_digests[1][0]);
    assert_eq!(
        a["kinds"]["interview"].as_u64(),
        digests[0][0]["kinds"]["interview"].as_u64().map(|n| n - 1),
        "every record is listed, approved or not (one interview was deleted since)"
    );
    assert_eq!(
        a["values"]["evaluation"], digests[0][0]["values"]["evaluation"],
        "the evaluation forms were approved: all count"
    );
    let questions = a["values"]["questionnaire"].as_object().expect("questions");
    assert!(
        !questions.is_empty() && questions.values().all(|v| v == &serde_json::json!({})),
        "the questionnaires were not approved: none counts: {}",
        a["values"]
    );
    assert_eq!(forms_in(a), forms_tallied(&approved[0], &village(0)));
    assert_eq!(a, b, "approved only: SQLite's digest, then PostgreSQL's");
    let (a, b) = (&approved[0], &approved[1]);
    assert!(a.approved_only && a.interviews > 0, "{a:?}");
    assert!(
        a.interviews < sqlite[0].interviews,
        "only the approved: {a:?}"
    );
    assert_eq!(
        a.members, sqlite[0].members,
        "reference data counts whatever its review"
    );
    assert_eq!(a, b, "approved only: SQLite's tallies, then PostgreSQL's");
    Ok(())
}
