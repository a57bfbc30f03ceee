//! One story suite on both storages: every story here runs once on SQLite and once on a real
//! PostgreSQL (a fresh database on the cluster this test binary starts from Debian's binaries,
//! `fieldsync::postgres`): push and pull, duplicates, out-of-order dependencies, scoping,
//! accounts and revocation, tallies, search (Chinese words of two characters and more), exports,
//! and convergence of several devices.

use anyhow::Result;
use fieldsync::{Backend, TestServer};
use fieldsync_client_core::{
    FieldValue, Store, SyncOptions, Transport, TransportError, sync::sync,
};
use fieldsync_protocol::auth::Role;
use reqwest::Method;
use serde_json::Value;
use uuid::Uuid;

fieldsync::story!(
    a_record_reaches_a_second_device_and_the_server,
    concurrent_edits_merge,
    a_change_delivered_twice_is_stored_once,
    changes_before_their_dependencies_wait,
    a_leader_sees_and_writes_only_the_groups_villages,
    a_revoked_device_is_told_to_wipe,
    tallies_count_what_the_asker_may_see,
    tallies_can_count_approved_records_only,
    tallies_and_listings_count_a_period,
    overdue_rectifications_follow_one_rule,
    search_finds_chinese_words_of_two_characters_and_more,
    exports_hold_every_visible_record,
    devices_converge,
);

const VILLAGE: &str = "350102001";

fn s(v: &str) -> FieldValue {
    FieldValue::Str(v.into())
}

fn text(v: &str) -> FieldValue {
    FieldValue::Text(v.into())
}

fn sync_with(server: &TestServer, store: &mut Store) -> Result<fieldsync_client_core::SyncReport> {
    let mut t = server.connect(store)?;
    Ok(sync(store, &mut t, &SyncOptions::default())?)
}

fn array(v: &Value) -> &Vec<Value> {
    v.as_array().expect("a JSON array")
}

fn a_record_reaches_a_second_device_and_the_server(backend: Backend) -> Result<()> {
    let server = TestServer::start_on(backend)?;
    let campaign = Uuid::now_v7();
    let mut a = Store::open_in_memory()?;
    let mut b = Store::open_in_memory()?;
    let id = a.create(
        "interview",
        campaign,
        VILLAGE,
        &[
            ("interviewee", s("王建国")),
            ("notes", text("班子团结，但集体经济收入偏低。")),
        ],
    )?;
    assert_eq!(sync_with(&server, &mut a)?.pushed, 2);
    assert_eq!(sync_with(&server, &mut b)?.received, 2);
    assert_eq!(
        b.get(id)?.fields["notes"],
        text("班子团结，但集体经济收入偏低。")
    );
    assert_eq!(b.get(id)?.heads, a.get(id)?.heads);
    server.wait_merged()?;
    let merged = server.get_json(&format!("/v1/records/{id}"))?;
    assert_eq!(merged["fields"]["interviewee"], "王建国");
    assert_eq!(merged["up_to_date"], true);
    assert_eq!(merged["problem"], Value::Null);
    // An up-to-date device pulls nothing more.
    let again = sync_with(&server, &mut b)?;
    assert_eq!((again.pushed, again.received), (0, 0));
    Ok(())
}

fn concurrent_edits_merge(backend: Backend) -> Result<()> {
    let server = TestServer::start_on(backend)?;
    let campaign = Uuid::now_v7();
    let mut a = Store::open_in_memory()?;
    let mut b = Store::open_in_memory()?;
    let id = a.create(
        "finding",
        campaign,
        VILLAGE,
        &[("text", text("三会一课记录不全"))],
    )?;
    sync_with(&server, &mut a)?;
    sync_with(&server, &mut b)?;
    a.set(id, "status", s("整改中"))?;
    b.set(id, "owner", s("李明"))?;
    b.edit(id, |e| e.append_text("text", "，已补"))?;
    sync_with(&server, &mut a)?;
    sync_with(&server, &mut b)?;
    sync_with(&server, &mut a)?;
    assert_eq!(a.get(id)?.heads, b.get(id)?.heads);
    server.wait_merged()?;
    let merged = server.get_json(&format!("/v1/records/{id}"))?;
    assert_eq!(merged["fields"]["status"], "整改中");
    assert_eq!(merged["fields"]["owner"], "李明");
    assert_eq!(merged["fields"]["text"], "三会一课记录不全，已补");
    assert_eq!(
        merged["heads"].as_array().map(Vec::len),
        Some(a.get(id)?.heads.len())
    );
    Ok(())
}

fn a_change_delivered_twice_is_stored_once(backend: Backend) -> Result<()> {
    let server = TestServer::start_on(backend)?;
    let mut a = Store::open_in_memory()?;
    a.create(
        "interview",
        Uuid::now_v7(),
        VILLAGE,
        &[("notes", text("第一次"))],
    )?;
    let batch = a.outbox_batch(0, 1 << 20)?.expect("something to push");
    let mut t = server.connect(&a)?;
    let first = t.push(&batch.request)?;
    let second = t.push(&batch.request)?;
    assert_eq!((first.stored, first.duplicates), (2, 0));
    assert_eq!((second.stored, second.duplicates), (0, 2));
    assert_eq!(first.head, second.head);
    assert_eq!(server.get_json("/v1/status")?["changes"], 2);
    Ok(())
}

fn changes_before_their_dependencies_wait(backend: Backend) -> Result<()> {
    let server = TestServer::start_on(backend)?;
    let mut a = Store::open_in_memory()?;
    let id = a.create(
        "finding",
        Uuid::now_v7(),
        VILLAGE,
        &[("text", text("三会一课记录不全"))],
    )?;
    a.set(id, "category", s("组织生活"))?;
    a.edit(id, |e| e.append_text("text", "，缺少记录"))?;
    let batch = a.outbox_batch(0, 1 << 20)?.expect("something to push");
    let record = &batch.request.records[0];
    assert_eq!(record.changes.len(), 4);
    let mut t = server.connect(&a)?;
    for (i, change) in record.changes.iter().rev().enumerate() {
        let mut one = batch.request.clone();
        one.records[0].changes = vec![change.clone()];
        t.push(&one)?;
        if i == 1 {
            server.wait_merged()?;
            let r = server.get_json(&format!("/v1/records/{id}"))?;
            assert_eq!(r["waiting_changes"], 2, "{r}");
            assert!(
                r["problem"].as_str().unwrap_or("").contains("waiting"),
                "{r}"
            );
        }
    }
    server.wait_merged()?;
    let r = server.get_json(&format!("/v1/records/{id}"))?;
    assert_eq!(r["waiting_changes"], 0, "{r}");
    assert_eq!(r["fields"]["text"], "三会一课记录不全，缺少记录");
    assert_eq!(r["fields"]["category"], "组织生活");
    let mut b = Store::open_in_memory()?;
    sync_with(&server, &mut b)?;
    assert_eq!(b.get(id)?.heads, a.get(id)?.heads);
    Ok(())
}

/// A campaign with two work groups: group A holds `A1`, group B holds `B1`; each village has a
/// place, an interview mentioning 集体经济 and a team assessment. Returns (campaign, group A).
fn two_groups(server: &TestServer) -> Result<(Uuid, Uuid)> {
    let campaign = Uuid::now_v7();
    let mut admin = Store::open_in_memory()?;
    let mut place_ids = Vec::new();
    for (code, rating) in [(A1, "good"), (B1, "fair")] {
        place_ids.push(admin.create(
            "place",
            campaign,
            code,
            &[
                ("code", s(code)),
                ("name", s(&format!("{code}村"))),
                ("level", s("village")),
            ],
        )?);
        admin.create(
            "interview",
            campaign,
            code,
            &[(
                "notes",
                text(&format!("{code}村谈话：壮大集体经济，班子团结")),
            )],
        )?;
        admin.create(
            "assessment",
            campaign,
            code,
            &[("target_type", s("team")), ("rating", s(rating))],
        )?;
    }
    admin.create(
        "campaign",
        campaign,
        "campaign",
        &[
            ("name", s("2026年换届回头看")),
            ("target_meetings", FieldValue::Int(2)),
            ("target_all_members", FieldValue::Bool(true)),
            ("deadline", s("2026-12-31")),
        ],
    )?;
    admin.create(
        "document_review",
        campaign,
        A1,
        &[("date", s("2026-11-02"))],
    )?;
    let group_a = admin.create(
        "work_group",
        campaign,
        "campaign",
        &[
            ("name", s("第一组")),
            ("villages", s(&place_ids[0].to_string())),
        ],
    )?;
    admin.create(
        "work_group",
        campaign,
        "campaign",
        &[
            ("name", s("第二组")),
            ("villages", s(&place_ids[1].to_string())),
        ],
    )?;
    sync_with(server, &mut admin)?;
    server.wait_merged()?;
    Ok((campaign, group_a))
}

const A1: &str = "510100001";
const B1: &str = "510100101";

fn a_leader_sees_and_writes_only_the_groups_villages(backend: Backend) -> Result<()> {
    let server = TestServer::start_on(backend)?;
    let (campaign, group_a) = two_groups(&server)?;
    let mut leader = Store::open_in_memory()?;
    let mut t = server.enroll(&mut leader, "第一组组长", Role::Leader, Some(group_a))?;
    sync(&mut leader, &mut t, &SyncOptions::default())?;
    let held: Vec<String> = leader
        .list(&Default::default())?
        .into_iter()
        .map(|r| r.header.scope)
        .collect();
    assert!(held.iter().all(|s| s == A1 || s == "campaign"), "{held:?}");
    assert!(held.iter().any(|s| s == A1), "{held:?}");
    let token = server.token_for(&leader)?;
    let (status, list) = server.request(
        Method::GET,
        "/v1/records?kind=interview",
        Some(&token),
        None,
    )?;
    assert_eq!(status, 200, "{list}");
    assert_eq!(array(&list).len(), 1, "{list}");
    assert_eq!(array(&list)[0]["scope"], A1);
    // A push into another group's village is refused whole (a store that synced holds such
    // changes back; one that never pulled its scope shows the server's check).
    let mut rogue = Store::open_in_memory()?;
    let mut rt = server.enroll(&mut rogue, "第一组组员", Role::Worker, Some(group_a))?;
    rogue.create("interview", campaign, B1, &[("notes", text("越界"))])?;
    let batch = rogue.outbox_batch(0, 1 << 20)?.expect("something to push");
    let before = server.get_json("/v1/status")?["changes"].clone();
    let err = rt.push(&batch.request).unwrap_err();
    assert!(
        matches!(&err, TransportError::Refused { status: 403, code, .. } if code == "out_of_scope"),
        "{err:?}"
    );
    assert_eq!(server.get_json("/v1/status")?["changes"], before);
    Ok(())
}

fn a_revoked_device_is_told_to_wipe(backend: Backend) -> Result<()> {
    let server = TestServer::start_on(backend)?;
    let mut worker = Store::open_in_memory()?;
    let mut t = server.enroll(&mut worker, "张三", Role::Viewer, None)?;
    sync(&mut worker, &mut t, &SyncOptions::default())?;
    let devices = server.get_json("/v1/admin/devices")?;
    let me = array(&devices)
        .iter()
        .find(|d| d["id"] == worker.device_id().to_string())
        .expect("the device is listed")
        .clone();
    assert_eq!(me["person_name"], "张三");
    let (status, _) = server.request(
        Method::POST,
        &format!("/v1/admin/devices/{}/revoke", worker.device_id()),
        None,
        None,
    )?;
    assert_eq!(status, 200);
    let err = sync(&mut worker, &mut t, &SyncOptions::default()).unwrap_err();
    assert!(
        format!("{err:?}").to_lowercase().contains("revoked"),
        "{err:?}"
    );
    let audit = server.get_json("/v1/admin/audit?action=revoke")?;
    assert_eq!(array(&audit).len(), 1, "{audit}");
    Ok(())
}

fn tallies_count_what_the_asker_may_see(backend: Backend) -> Result<()> {
    let server = TestServer::start_on(backend)?;
    let (campaign, group_a) = two_groups(&server)?;
    let all = server.get_json(&format!("/v1/campaigns/{campaign}/tallies"))?;
    assert_eq!(all["villages"], 2, "{all}");
    assert_eq!(all["interviews"], 2, "{all}");
    assert_eq!(all["work_groups"], 2, "{all}");
    assert_eq!(all["team_ratings"]["good"], 1, "{all}");
    assert_eq!(all["team_ratings"]["fair"], 1, "{all}");
    assert_eq!(all["name"], "2026年换届回头看", "{all}");
    // The campaign's targets, and each village's counts they are measured against.
    assert_eq!(all["targets"]["meetings"], 2, "{all}");
    assert_eq!(all["targets"]["all_members"], true, "{all}");
    assert_eq!(all["targets"]["deadline"], "2026-12-31", "{all}");
    assert_eq!(all["targets"]["questionnaires"], Value::Null, "{all}");
    let village = |code: &str| {
        all["villages_detail"]
            .as_array()
            .and_then(|v| v.iter().find(|v| v["code"] == code))
            .cloned()
            .unwrap_or_else(|| panic!("no {code} in {all}"))
    };
    assert_eq!(village(A1)["document_reviews"], 1);
    assert_eq!(village(B1)["document_reviews"], 0);
    // The interviews name no interviewee type: they are not of team members.
    assert_eq!(village(A1)["villager_interviews"], 1);
    assert_eq!(village(A1)["members_interviewed"], 0);
    // Field roles get no campaign-wide tallies.
    let mut leader = Store::open_in_memory()?;
    server.enroll(&mut leader, "第一组组长", Role::Leader, Some(group_a))?;
    let token = server.token_for(&leader)?;
    let (status, _) = server.request(
        Method::GET,
        &format!("/v1/campaigns/{campaign}/tallies"),
        Some(&token),
        None,
    )?;
    assert_eq!(status, 403);
    Ok(())
}

/// Approves records as a reviewer does on the dashboard (a same-origin form post).
fn tallies_can_count_approved_records_only(backend: Backend) -> Result<()> {
    let server = TestServer::start_on(backend)?;
    let (campaign, _) = two_groups(&server)?;
    let tallies = || server.get_json(&format!("/v1/campaigns/{campaign}/tallies"));
    let all = tallies()?;
    assert_eq!(all["approved_only"], false, "{all}");
    assert_eq!(all["interviews"], 2, "{all}");
    // Approve A1's interview and assessment only.
    let ids = |kind: &str| -> Result<Vec<(String, String)>> {
        let list = server.get_json(&format!("/v1/records?campaign={campaign}&kind={kind}"))?;
        Ok(array(&list)
            .iter()
            .map(|r| {
                (
                    r["id"].as_str().unwrap().to_string(),
                    r["scope"].as_str().unwrap().to_string(),
                )
            })
            .collect())
    };
    let in_a1: Vec<String> = ["interview", "assessment"]
        .iter()
        .map(|k| ids(k))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .filter(|(_, scope)| scope == A1)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(in_a1.len(), 2);
    server.approve(campaign, &in_a1)?;
    server.wait_merged()?;
    // Still every record counts until the campaign says otherwise.
    assert_eq!(tallies()?["interviews"], 2);
    let mut admin = Store::open_in_memory()?;
    server.enroll(&mut admin, "管理员", Role::Admin, None)?;
    sync_with(&server, &mut admin)?;
    let (campaign_record, _) = ids("campaign")?.remove(0);
    admin.set(
        Uuid::parse_str(&campaign_record)?,
        "count_approved_only",
        FieldValue::Bool(true),
    )?;
    sync_with(&server, &mut admin)?;
    server.wait_merged()?;
    let approved = tallies()?;
    assert_eq!(approved["approved_only"], true, "{approved}");
    assert_eq!(approved["interviews"], 1, "{approved}");
    assert_eq!(approved["team_ratings"]["good"], 1, "{approved}");
    assert_eq!(approved["team_ratings"].get("fair"), None, "{approved}");
    // Reference data always counts.
    assert_eq!(approved["villages"], 2, "{approved}");
    assert_eq!(approved["work_groups"], 2, "{approved}");
    let (status, report) = server.request(
        Method::GET,
        &format!("/v1/campaigns/{campaign}/report.md"),
        Some(&server.admin_token),
        None,
    )?;
    assert_eq!(status, 200);
    assert!(
        report.to_string().contains("仅统计审核通过的记录"),
        "{report}"
    );
    Ok(())
}

fn search_finds_chinese_words_of_two_characters_and_more(backend: Backend) -> Result<()> {
    let server = TestServer::start_on(backend)?;
    let (campaign, group_a) = two_groups(&server)?;
    let hits = |q: &str, token: Option<&str>| -> Result<Vec<Value>> {
        let (status, body) = server.request(
            Method::GET,
            &format!("/v1/search?q={}", urlencode(q)),
            token,
            None,
        )?;
        assert_eq!(status, 200, "{body}");
        Ok(array(&body).clone())
    };
    // Four characters (the trigram index), two characters (no whole trigram), one character.
    for q in ["集体经济", "集体", "团"] {
        assert_eq!(hits(q, None)?.len(), 2, "{q}");
    }
    assert!(
        hits("集体经济", None)?[0]["snippet"]
            .as_str()
            .unwrap()
            .contains("集体经济")
    );
    assert_eq!(hits("财务公开", None)?.len(), 0);
    // A wildcard is a character like any other.
    assert_eq!(hits("集%济", None)?.len(), 0);
    let mut writer = Store::open_in_memory()?;
    server.enroll(&mut writer, "记录员", Role::Admin, None)?;
    writer.create(
        "interview",
        campaign,
        A1,
        &[("notes", text("群众满意率达到95%以上，基础_设施有改善"))],
    )?;
    sync_with(&server, &mut writer)?;
    server.wait_merged()?;
    assert_eq!(hits("95%以上", None)?.len(), 1);
    assert_eq!(hits("基础_设施", None)?.len(), 1);
    assert_eq!(hits("95%以下", None)?.len(), 0);
    // Words separated by spaces (full-width too) must each be found, anywhere in the text.
    assert_eq!(hits("团结 集体", None)?.len(), 2);
    assert_eq!(hits("经济\u{3000}班子  谈话", None)?.len(), 2);
    assert_eq!(hits("集体 财务", None)?.len(), 0);
    assert_eq!(hits(&format!("{A1}村 集体"), None)?.len(), 1);
    // Filters by village and by kind, in the query.
    let (status, body) = server.request(
        Method::GET,
        &format!("/v1/search?q={}&scope={B1}", urlencode("集体")),
        None,
        None,
    )?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(array(&body).len(), 1);
    assert_eq!(array(&body)[0]["scope"], B1);
    let (_, body) = server.request(
        Method::GET,
        &format!("/v1/search?q={}&kind=assessment", urlencode("集体")),
        None,
        None,
    )?;
    assert_eq!(array(&body).len(), 0, "{body}");
    let mut leader = Store::open_in_memory()?;
    server.enroll(&mut leader, "第一组组长", Role::Leader, Some(group_a))?;
    let token = server.token_for(&leader)?;
    let mine = hits("集体", Some(&token))?;
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(mine[0]["scope"], A1);
    Ok(())
}

fn urlencode(q: &str) -> String {
    q.bytes().map(|b| format!("%{b:02X}")).collect()
}

fn exports_hold_every_visible_record(backend: Backend) -> Result<()> {
    let server = TestServer::start_on(backend)?;
    let (campaign, _) = two_groups(&server)?;
    let csv = server
        .get(&format!("/v1/campaigns/{campaign}/export/interview.csv"))?
        .error_for_status()?
        .text()?;
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(
        csv.contains(&format!("{A1}村谈话")) && csv.contains(&format!("{B1}村谈话")),
        "{csv}"
    );
    Ok(())
}

/// Four devices edit the same records offline in rounds and sync in a shifting order; at the
/// end every device and the server hold the same heads.
fn devices_converge(backend: Backend) -> Result<()> {
    let server = TestServer::start_on(backend)?;
    let campaign = Uuid::now_v7();
    let mut devices: Vec<Store> = (0..4)
        .map(|_| Store::open_in_memory())
        .collect::<Result<_, _>>()?;
    let shared = devices[0].create("finding", campaign, VILLAGE, &[("text", text("共同记录"))])?;
    sync_with(&server, &mut devices[0])?;
    let mut ids = vec![shared];
    for round in 0..5usize {
        for (i, d) in devices.iter_mut().enumerate() {
            if (round + i) % 3 == 0 {
                continue;
            }
            sync_with(&server, d)?;
            if d.get(shared).is_ok() {
                d.set(shared, &format!("f{i}"), s(&format!("第{round}轮")))?;
                d.edit(shared, |e| e.append_text("text", &format!("{i}")))?;
            }
            ids.push(d.create(
                "interview",
                campaign,
                VILLAGE,
                &[("notes", text(&format!("设备{i}第{round}轮")))],
            )?);
        }
    }
    for _ in 0..2 {
        for d in devices.iter_mut() {
            sync_with(&server, d)?;
        }
    }
    server.wait_merged()?;
    for id in &ids {
        let heads = devices[0].get(*id)?.heads;
        for d in &devices[1..] {
            assert_eq!(d.get(*id)?.heads, heads, "record {id}");
        }
        let merged = server.get_json(&format!("/v1/records/{id}"))?;
        let mut server_heads: Vec<String> = merged["heads"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap().to_string())
            .collect();
        let mut device_heads: Vec<String> = heads.iter().map(|h| h.to_string()).collect();
        server_heads.sort();
        device_heads.sort();
        assert_eq!(server_heads, device_heads, "record {id}");
    }
    Ok(())
}

fn tallies_and_listings_count_a_period(backend: Backend) -> Result<()> {
    let server = TestServer::start_on(backend)?;
    let (campaign, _) = two_groups(&server)?;
    // Work of March 2021 (dated by its own date field), beside two_groups' undated interviews
    // (which count by the day they reached the server: today) and its review of 2026-11-02.
    let mut admin = Store::open_in_memory()?;
    server.enroll(&mut admin, "管理员", Role::Admin, None)?;
    sync_with(&server, &mut admin)?;
    admin.create(
        "interview",
        campaign,
        A1,
        &[("date", s("2021-03-15")), ("notes", text("三月谈话"))],
    )?;
    admin.create(
        "meeting",
        campaign,
        B1,
        &[
            ("date", s("2021-03-20")),
            ("participants", FieldValue::Int(30)),
        ],
    )?;
    admin.create(
        "document_review",
        campaign,
        A1,
        &[("date", s("2021-04-02"))],
    )?;
    sync_with(&server, &mut admin)?;
    server.wait_merged()?;
    let tallies = |q: &str| server.get_json(&format!("/v1/campaigns/{campaign}/tallies{q}"));

    let all = tallies("")?;
    assert_eq!(all["interviews"], 3, "{all}");
    assert_eq!(all["meetings"], 1, "{all}");
    assert_eq!(all["document_reviews"], 2, "{all}");
    assert_eq!(all["period"]["from"], Value::Null, "{all}");

    let march = tallies("?from=2021-03-01&to=2021-03-31")?;
    assert_eq!(march["interviews"], 1, "{march}");
    assert_eq!(march["meetings"], 1, "{march}");
    assert_eq!(march["meeting_participants"], 30, "{march}");
    assert_eq!(march["document_reviews"], 0, "{march}");
    assert_eq!(march["period"]["from"], "2021-03-01", "{march}");
    // Reference data counts whatever the period.
    assert_eq!(march["villages"], 2, "{march}");
    assert_eq!(march["work_groups"], 2, "{march}");

    // From yesterday (a day early, so that a run across Beijing midnight still holds): the
    // undated interviews, which reached the server today, and nothing dated before.
    let today = fieldsync_protocol::dates::today();
    let yesterday = fieldsync_protocol::dates::civil_date(
        fieldsync_protocol::dates::days_from_civil(&today).expect("today is a date") - 1,
    );
    let recent = tallies(&format!("?from={yesterday}"))?;
    assert_eq!(recent["interviews"], 2, "{recent}");
    assert_eq!(recent["meetings"], 0, "{recent}");
    assert_eq!(recent["document_reviews"], 0, "{recent}");

    // Listings take the same period.
    let list = server.get_json(&format!(
        "/v1/records?campaign={campaign}&kind=interview&from=2021-03-01&to=2021-03-31"
    ))?;
    assert_eq!(array(&list).len(), 1, "{list}");
    let places = server.get_json(&format!(
        "/v1/records?campaign={campaign}&kind=place&from=2021-03-01&to=2021-03-31"
    ))?;
    assert_eq!(array(&places).len(), 2, "{places}");
    let csv = server.get(&format!(
        "/v1/campaigns/{campaign}/export/interview.csv?from=2021-03-01&to=2021-03-31"
    ))?;
    assert_eq!(
        csv.text()?.lines().count(),
        2,
        "header and the March interview"
    );

    // The report says which days it counts.
    let (status, report) = server.request(
        Method::GET,
        &format!("/v1/campaigns/{campaign}/report.md?from=2021-03-01&to=2021-03-31"),
        Some(&server.admin_token),
        None,
    )?;
    assert_eq!(status, 200);
    assert!(
        report
            .as_str()
            .unwrap_or_default()
            .contains("统计时段：2021-03-01 至 2021-03-31，谈话、会议等按其日期计入，没有日期的表单按上传到服务器的日期计入"),
        "the period and by which day a record counts: {report}"
    );

    // The dashboard's pages count the period they are asked for, and their links keep it.
    let page = |path: &str| -> Result<(u16, String)> {
        let r = reqwest::blocking::Client::new()
            .get(format!("{}{path}", server.url()))
            .header(
                "cookie",
                format!("fieldsync_session={}", server.admin_token),
            )
            .send()?;
        Ok((r.status().as_u16(), r.text()?))
    };
    let (status, html) = page(&format!("/ui/c/{campaign}?from=2021-03-01&to=2021-03-31"))?;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("当前统计：2021-03-01 至 2021-03-31"),
        "{html}"
    );
    assert!(
        html.contains("report.docx?from=2021-03-01&amp;to=2021-03-31"),
        "{html}"
    );
    assert!(
        html.contains(&format!(
            "/ui/c/{campaign}/v/{A1}?from=2021-03-01&amp;to=2021-03-31"
        )),
        "{html}"
    );
    let (_, dossier) = page(&format!(
        "/ui/c/{campaign}/v/{A1}?from=2021-03-01&to=2021-03-31"
    ))?;
    assert!(
        dossier.contains("三月谈话") || dossier.contains("2021-03-15"),
        "{dossier}"
    );
    let (_, ledger) = page(&format!("/ui/c/{campaign}/ledger?from=2021-03-01"))?;
    assert!(
        ledger.contains("name=\"from\" value=\"2021-03-01\""),
        "{ledger}"
    );
    let (status, html) = page(&format!("/ui/c/{campaign}?from=2021-13-01"))?;
    assert_eq!(status, 400, "{html}");
    assert!(html.contains("不是日期"), "{html}");

    // A wrong period is refused with what to write.
    for (q, words) in [
        ("?from=2021-02-30", "不是日期"),
        ("?from=2021-04-01&to=2021-03-01", "晚于截止日期"),
    ] {
        let (status, body) = server.request(
            Method::GET,
            &format!("/v1/campaigns/{campaign}/tallies{q}"),
            Some(&server.admin_token),
            None,
        )?;
        assert_eq!(status, 400, "{q}: {body}");
        assert!(body.to_string().contains(words), "{q}: {body}");
    }
    Ok(())
}

fn overdue_rectifications_follow_one_rule(backend: Backend) -> Result<()> {
    let server = TestServer::start_on(backend)?;
    let (campaign, _) = two_groups(&server)?;
    let mut admin = Store::open_in_memory()?;
    server.enroll(&mut admin, "管理员", Role::Admin, None)?;
    sync_with(&server, &mut admin)?;
    // Past their deadline: one with no status yet (not done, so overdue), one in progress, one
    // done; one with no deadline at all, and one due far ahead.
    for (status, deadline) in [
        (None, Some("2021-01-31")),
        (Some("in_progress"), Some("2021-01-31")),
        (Some("done"), Some("2021-01-31")),
        (Some("planned"), None),
        (Some("planned"), Some("2099-12-31")),
    ] {
        let mut fields = vec![("measure", s("制定整改清单"))];
        if let Some(st) = status {
            fields.push(("status", s(st)));
        }
        if let Some(d) = deadline {
            fields.push(("deadline", s(d)));
        }
        admin.create("rectification", campaign, A1, &fields)?;
    }
    sync_with(&server, &mut admin)?;
    server.wait_merged()?;
    let t = server.get_json(&format!("/v1/campaigns/{campaign}/tallies"))?;
    assert_eq!(t["rectifications"]["done"], 1, "{t}");
    assert_eq!(t["rectifications"]["planned"], 2, "{t}");
    // The one without a status is not done: overdue on both storages (PostgreSQL's own SQL
    // rule missed it before the rule was written once).
    assert_eq!(t["overdue_rectifications"], 2, "{t}");
    Ok(())
}
