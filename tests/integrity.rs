//! Records that must exist once per key cannot be claimed by another group, one bad record never
//! blocks a device's sync, and the window in which the server accepts other devices' changes
//! without their tags opens only when an administrator declares the server restored.

use std::collections::BTreeMap;

use anyhow::Result;
use fieldsync::TestServer;
use fieldsync_client_core::{
    FieldValue, Filter, Store, SyncOptions, Transport, import::ImportKind, sync::sync,
};
use fieldsync_protocol::{RecordHeader, auth::Role, singleton_id, template::Template, wire};
use uuid::Uuid;

const A1: &str = "510100001";
const B1: &str = "510100002";

fn s(v: &str) -> FieldValue {
    FieldValue::Str(v.into())
}

struct Campaign {
    campaign: Uuid,
    groups: BTreeMap<String, Uuid>,
    places: BTreeMap<String, Uuid>,
}

/// A 届中分析 campaign (template, two villages, their teams and members, a group for each),
/// created by the administrator's device and merged on the server.
fn setup(server: &TestServer) -> Result<Campaign> {
    let campaign = Uuid::now_v7();
    let mut admin = Store::open_in_memory()?;
    let template = Template::builtin("midterm").expect("built-in template");
    admin.create_campaign(campaign, "完整性测试届中分析", &template, 2024)?;
    admin.import_csv(
        campaign,
        ImportKind::Places,
        format!("代码,名称,层级,上级代码\n{A1},甲村,村,\n{B1},乙村,村,\n").as_bytes(),
    )?;
    admin.import_csv(
        campaign,
        ImportKind::Members,
        format!(
            "村代码,姓名,职务,性别,年龄,学历,党员\n{A1},张一,书记,男,45,本科,是\n\
             {B1},李二,书记,女,41,大专,是\n"
        )
        .as_bytes(),
    )?;
    admin.import_csv(
        campaign,
        ImportKind::WorkGroups,
        format!("名称,组长,成员,负责村\n第一组,王,赵,{A1}\n第二组,钱,孙,{B1}\n").as_bytes(),
    )?;
    let mut t = server.connect(&admin)?;
    sync(&mut admin, &mut t, &SyncOptions::default())?;
    server.wait_merged()?;
    let list = |kind: &str| -> Result<Vec<fieldsync_client_core::Record>> {
        Ok(admin.list(&Filter {
            kind: Some(kind.into()),
            ..Default::default()
        })?)
    };
    let groups = list("work_group")?
        .into_iter()
        .map(|g| match &g.fields["name"] {
            FieldValue::Str(n) => (n.clone(), g.header.id),
            other => panic!("a work group named {other:?}"),
        })
        .collect();
    let places = list("place")?
        .into_iter()
        .map(|p| (p.header.scope.clone(), p.header.id))
        .collect();
    Ok(Campaign {
        campaign,
        groups,
        places,
    })
}

fn star_rating(c: &Campaign, village: &str) -> BTreeMap<String, FieldValue> {
    BTreeMap::from([
        ("village".to_string(), s(&c.places[village].to_string())),
        ("year".to_string(), FieldValue::Int(2024)),
        ("stars".to_string(), s("five")),
    ])
}

#[test]
fn another_groups_singleton_cannot_be_squatted_and_a_bad_record_blocks_nothing() -> Result<()> {
    let server = TestServer::start()?;
    let c = setup(&server)?;
    // A worker of group A computes group B's star rating id and writes it under A's village.
    let mut rogue = Store::open_in_memory()?;
    let mut rt = server.enroll(
        &mut rogue,
        "甲组组员",
        Role::Worker,
        Some(c.groups["第一组"]),
    )?;
    sync(&mut rogue, &mut rt, &SyncOptions::default())?;
    let b_id = singleton_id(c.campaign, "star_rating", &format!("{}/2024", c.places[B1]));
    let squat = RecordHeader {
        id: b_id,
        kind: "star_rating".into(),
        campaign: c.campaign,
        scope: A1.into(),
    };
    let values = [
        ("village", s(&c.places[B1].to_string())),
        ("year", FieldValue::Int(2024)),
    ];
    rogue.ensure(&squat, &values)?;
    // The same with its own village's key but another id, and a genesis with no key at all.
    let wrong_id = RecordHeader {
        id: Uuid::now_v7(),
        ..squat.clone()
    };
    rogue.ensure(&wrong_id, &values)?;
    let bare = RecordHeader {
        id: singleton_id(c.campaign, "star_rating", &format!("{}/2023", c.places[B1])),
        ..squat.clone()
    };
    rogue.ensure(&bare, &[])?;
    // ...and an honest interview in the same push.
    let interview = rogue.create("interview", c.campaign, A1, &[("notes", s("走访记录"))])?;
    let batch = rogue.outbox_batch(0, 1 << 20)?.expect("changes");
    let answer = rt.push(&batch.request)?;
    let mut codes: Vec<(String, String)> = answer
        .rejected
        .iter()
        .map(|r| (r.id.clone(), r.code.clone()))
        .collect();
    codes.sort();
    let mut expected = vec![
        (b_id.to_string(), "singleton_scope_mismatch".to_string()),
        (wrong_id.id.to_string(), "singleton_id_mismatch".to_string()),
        (bare.id.to_string(), "singleton_without_key".to_string()),
    ];
    expected.sort();
    assert_eq!(codes, expected, "{answer:?}");
    assert!(answer.stored >= 2, "the interview is stored: {answer:?}");
    // The rogue's own sync goes on and reports the refusals instead of failing.
    let report = sync(&mut rogue, &mut rt, &SyncOptions::default())?;
    assert_eq!(report.rejected.len(), 3, "{report:?}");
    server.wait_merged()?;
    assert_eq!(
        server.get_json(&format!("/v1/records/{interview}"))?["scope"],
        A1
    );

    // Group B's leader creates the star rating: it syncs, under B's village.
    let mut leader = Store::open_in_memory()?;
    let mut lt = server.enroll(
        &mut leader,
        "乙组组长",
        Role::Leader,
        Some(c.groups["第二组"]),
    )?;
    sync(&mut leader, &mut lt, &SyncOptions::default())?;
    let id = leader.create_form(c.campaign, "star_rating", B1, &star_rating(&c, B1))?;
    assert_eq!(id, b_id);
    let report = sync(&mut leader, &mut lt, &SyncOptions::default())?;
    assert!(report.rejected.is_empty(), "{report:?}");
    server.wait_merged()?;
    let record = server.get_json(&format!("/v1/records/{b_id}"))?;
    assert_eq!(
        (record["scope"].as_str(), record["kind"].as_str()),
        (Some(B1), Some("star_rating"))
    );
    Ok(())
}

fn declare_restored(dir: &std::path::Path) -> Result<String> {
    tokio::runtime::Runtime::new()?.block_on(async {
        let storage = fieldsync_server::open_admin_storage(dir).await?;
        let (epoch, _) = storage.declare_restored().await?;
        storage.close().await;
        Ok(epoch)
    })
}

#[test]
fn no_device_can_open_the_recovery_window_an_administrator_can() -> Result<()> {
    let mut server = TestServer::start()?;
    let c = setup(&server)?;
    let group = c.groups["第一组"];
    let mut author = Store::open_in_memory()?;
    let mut at = server.enroll(&mut author, "作者", Role::Worker, Some(group))?;
    let mut other = Store::open_in_memory()?;
    let mut ot = server.enroll(&mut other, "同组", Role::Worker, Some(group))?;
    let record = author.create("interview", c.campaign, A1, &[("notes", s("作者原文"))])?;
    sync(&mut author, &mut at, &SyncOptions::default())?;
    sync(&mut other, &mut ot, &SyncOptions::default())?;
    // The author edits; the other device gets the change by bundle, and strips its tag.
    author.set(record, "rating", s("好"))?;
    let (bundle, _) = author.export_bundle(&fieldsync_client_core::bundle::Export::All)?;
    other.import_bundle(&bundle)?;
    let mut batch = other.outbox_batch(0, 1 << 20)?.expect("the relayed change");
    batch
        .request
        .records
        .iter_mut()
        .for_each(|r| r.tags.clear());

    // A cursor far ahead of the log: the server says reset, in the same epoch, and opens
    // nothing: the untagged relay is still refused.
    let epoch = other.server_epoch()?.expect("an epoch after a pull");
    let pull = ot.pull(&wire::PullQuery {
        device: other.device_id().to_string(),
        after: 999_999_999,
        after_hash: None,
        max_bytes: None,
        include_own: false,
        created: false,
    })?;
    assert!(pull.reset);
    assert_eq!(pull.epoch.as_deref(), Some(epoch.as_str()));
    let answer = ot.push(&batch.request)?;
    assert_eq!(answer.rejected.len(), 1, "{answer:?}");
    assert_eq!(answer.rejected[0].code, "unverified_relay");
    assert_eq!(answer.stored, 0);

    // The administrator declares the server restored: a new epoch; devices re-push what they
    // hold and the untagged relay is accepted (and counted as unverified).
    server.stop()?;
    let new_epoch = declare_restored(server.data_dir())?;
    assert_ne!(new_epoch, epoch);
    let server = TestServer::start_in(server.data_dir())?;
    let mut ot = server.connect(&other)?;
    let answer = ot.push(&batch.request)?;
    assert!(answer.rejected.is_empty(), "{answer:?}");
    assert_eq!(answer.stored, 1);
    let report = sync(&mut other, &mut ot, &SyncOptions::default())?;
    assert!(report.server_reset, "a new epoch is a reset: {report:?}");
    assert_eq!(other.server_epoch()?, Some(new_epoch));
    let (_, audit) = server.request(
        reqwest::Method::GET,
        "/v1/admin/audit?action=push",
        None,
        None,
    )?;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["detail"]["unverified_relays"] == 1),
        "{audit}"
    );
    Ok(())
}
