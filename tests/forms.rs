//! Forms end to end: templates published and synced, records validated on the device and again
//! on the server, singletons merging, conflicting ratings surfaced and resolved, templates
//! upgraded mid-campaign, CSV imports (UTF-8 and GBK), and the seed-002 generator. Real server
//! on a loopback port, real SQLite stores in temp dirs. The stories that the server's merging
//! and review decide run on both storages (SQLite and a real PostgreSQL, `fieldsync::postgres`).

use std::collections::BTreeMap;

use anyhow::Result;
use fieldsync::{Backend, TestServer, generator};
use fieldsync_client_core::import::{ImportError, ImportKind};
use fieldsync_client_core::{FieldValue, Filter, FormError, Store, SyncOptions, sync::sync};
use fieldsync_protocol::template::{FORM_VERSION_FIELD, ProblemCode, Template};
use serde_json::Value;
use uuid::Uuid;

fieldsync::story!(
    two_devices_create_the_same_assessment_offline_and_the_conflicting_rating_is_resolved,
    a_template_upgraded_mid_campaign_keeps_old_records_and_tells_devices,
    a_record_that_fails_on_the_server_is_kept_and_flagged_not_dropped,
    the_generated_campaign_has_the_shape_of_seed_002_on_the_server,
    records_already_on_the_server_are_reviewed_when_their_template_arrives,
);

const VILLAGE: &str = "510100001001";

struct Device {
    _dir: tempfile::TempDir,
    store: Store,
}

impl Device {
    fn new() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path().join("device.sqlite3"))?;
        Ok(Device { _dir: dir, store })
    }

    fn sync(&mut self, url: &str) -> Result<fieldsync_client_core::SyncReport> {
        let mut t = fieldsync::connect(url, &self.store)?;
        Ok(sync(&mut self.store, &mut t, &SyncOptions::default())?)
    }
}

fn campaign() -> Uuid {
    Uuid::from_u128(0x0003_2026_1122)
}

fn s(v: &str) -> FieldValue {
    FieldValue::Str(v.into())
}

fn fields(pairs: &[(&str, FieldValue)]) -> BTreeMap<String, FieldValue> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

const PLACES: &str = "代码,名称,层级,上级代码\n510100001,示范镇,乡镇,\n510100001001,青龙社区,社区,510100001\n510100001002,花溪山村,村,510100001\n";
const MEMBERS: &str = "村代码,姓名,职务,性别,年龄,学历,党员\n510100001001,王建国,书记、主任（一肩挑）,男,48,大专,是\n510100001001,李秀英,副书记,女,39,本科,是\n510100001002,张志强,书记,男,52,高中,是\n";

/// A department device with the midterm template and a little reference data, synced.
fn department(url: &str) -> Result<Device> {
    let mut admin = Device::new()?;
    admin.store.create_campaign(
        campaign(),
        "示范镇届中分析",
        &Template::builtin("midterm").unwrap(),
        2026,
    )?;
    admin
        .store
        .import_csv(campaign(), ImportKind::Places, PLACES.as_bytes())?;
    admin
        .store
        .import_csv(campaign(), ImportKind::Members, MEMBERS.as_bytes())?;
    admin.sync(url)?;
    Ok(admin)
}

fn one(store: &Store, kind: &str, scope: &str) -> Result<fieldsync_client_core::Record> {
    let mut list = store.list(&Filter {
        kind: Some(kind.into()),
        scope: Some(scope.into()),
        campaign: Some(campaign()),
        ..Default::default()
    })?;
    list.sort_by_key(|r| r.header.id);
    Ok(list.remove(0))
}

fn interview(member: Uuid) -> BTreeMap<String, FieldValue> {
    fields(&[
        ("date", s("2026-05-18")),
        ("interviewer", s("组织部 刘明")),
        ("interviewee_type", s("member")),
        ("interviewee", s(&member.to_string())),
        ("notes", s("该同志认为班子团结，集体经济收入偏低。")),
    ])
}

#[test]
fn an_invalid_form_is_refused_on_the_device_naming_the_field_and_nothing_is_saved() -> Result<()> {
    let server = TestServer::start()?;
    department(&server.url())?;
    server.wait_merged()?;
    let campaigns = server.get_json("/v1/records?kind=campaign")?;
    assert_eq!(
        campaigns[0]["fields"]["name"], "示范镇届中分析",
        "{campaigns}"
    );
    assert_eq!(campaigns[0]["fields"]["template"], "midterm");
    assert_eq!(campaigns[0]["review"], Value::Null);
    let mut a = Device::new()?;
    // Before the first sync the device has no template: a clear error, nothing saved.
    let err = a
        .store
        .create_form(campaign(), "interview", VILLAGE, &BTreeMap::new())
        .unwrap_err();
    assert!(matches!(err, FormError::NoTemplate(_)), "{err}");
    assert!(err.to_string().contains("请先同步"), "{err}");
    a.sync(&server.url())?;
    let member = one(&a.store, "member", VILLAGE)?.header.id;
    let before = a.store.count()?;
    let mut bad = interview(member);
    bad.insert("date".into(), s("5月18日"));
    bad.insert("interviewee_type".into(), s("boss"));
    bad.remove("notes");
    let err = a
        .store
        .create_form(campaign(), "interview", VILLAGE, &bad)
        .unwrap_err();
    let FormError::Invalid(invalid) = &err else {
        panic!("expected a validation error, got {err}")
    };
    let named: Vec<(&str, ProblemCode)> = invalid
        .problems
        .iter()
        .map(|p| (p.field.as_str(), p.code))
        .collect();
    assert_eq!(
        named,
        [
            ("date", ProblemCode::BadDate),
            ("interviewee_type", ProblemCode::NotAChoice),
            ("notes", ProblemCode::Required)
        ]
    );
    let shown = err.to_string();
    assert!(
        shown.contains("“谈话日期”（date）应为“年-月-日”格式的日期"),
        "{shown}"
    );
    assert!(shown.contains("(notes) is required"), "{shown}");
    assert_eq!(a.store.count()?, before);
    assert_eq!(a.store.pending_upload()?, 0);
    // A reference to a record of the wrong kind is named too.
    let team = one(&a.store, "team", VILLAGE)?.header.id;
    let err = a
        .store
        .create_form(campaign(), "interview", VILLAGE, &interview(team))
        .unwrap_err();
    assert!(
        err.to_string().contains("must refer to a member record"),
        "{err}"
    );
    // The valid form is saved, with long notes as a text that merges, and the version noted.
    let id = a
        .store
        .create_form(campaign(), "interview", VILLAGE, &interview(member))?;
    let saved = a.store.get(id)?;
    assert!(matches!(saved.fields["notes"], FieldValue::Text(_)));
    assert_eq!(saved.fields[FORM_VERSION_FIELD], FieldValue::Int(1));
    Ok(())
}

fn two_devices_create_the_same_assessment_offline_and_the_conflicting_rating_is_resolved(
    backend: Backend,
) -> Result<()> {
    let server = TestServer::start_on(backend)?;
    department(&server.url())?;
    let (mut a, mut b) = (Device::new()?, Device::new()?);
    a.sync(&server.url())?;
    b.sync(&server.url())?;
    let team = one(&a.store, "team", VILLAGE)?.header.id;
    let assess = |rating: &str, reasons: &str| {
        fields(&[
            ("target_type", s("team")),
            ("target", s(&team.to_string())),
            ("rating", s(rating)),
            ("reasons", s(reasons)),
        ])
    };
    // Offline, each device rates the same team: 好 on one phone, 正常 on the other.
    let id_a = a.store.create_form(
        campaign(),
        "assessment",
        VILLAGE,
        &assess("good", "班子团结"),
    )?;
    let id_b = b.store.create_form(
        campaign(),
        "assessment",
        VILLAGE,
        &assess("normal", "集体经济偏弱"),
    )?;
    assert_eq!(id_a, id_b, "one assessment per team, whatever the device");
    for _ in 0..2 {
        a.sync(&server.url())?;
        b.sync(&server.url())?;
    }
    server.wait_merged()?;
    let list = server.get_json(&format!(
        "/v1/records?kind=assessment&campaign={}",
        campaign()
    ))?;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    // Two fields in conflict: the rating, and the reasons (each device created its own text).
    assert_eq!(list[0]["conflicts"], 2);
    // The server shows both values and who wrote them.
    let conflicts = server.get_json(&format!("/v1/records/{id_a}/conflicts"))?;
    let field = conflicts["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["field"] == "rating")
        .expect("rating is in conflict");
    let mut values: Vec<&str> = field["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["value"].as_str().unwrap())
        .collect();
    values.sort();
    assert_eq!(values, ["good", "normal"]);
    let actors: Vec<&str> = field["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["actor"].as_str().unwrap())
        .collect();
    assert!(actors.contains(&a.store.actor().to_hex_string().as_str()));
    assert!(actors.contains(&b.store.actor().to_hex_string().as_str()));
    // The concurrent reasons (texts) are a conflict of the whole field too, not lost.
    assert_eq!(a.store.get(id_a)?.conflicts, 2);
    // A group leader resolves the rating on a device; the field stays a valid choice.
    a.store.edit_form(id_a, &fields(&[("rating", s("good"))]))?;
    a.sync(&server.url())?;
    b.sync(&server.url())?;
    server.wait_merged()?;
    let conflicts = server.get_json(&format!("/v1/records/{id_a}/conflicts"))?;
    assert!(
        !conflicts["conflicts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["field"] == "rating"),
        "{conflicts}"
    );
    assert_eq!(b.store.get(id_a)?.fields["rating"], s("good"));
    // The target cannot be changed: it is what makes the record one per team.
    let other = one(&a.store, "team", "510100001002")?.header.id;
    let err = a
        .store
        .edit_form(id_a, &fields(&[("target", s(&other.to_string()))]))
        .unwrap_err();
    assert!(matches!(err, FormError::KeyChanged { .. }), "{err}");
    Ok(())
}

fn a_template_upgraded_mid_campaign_keeps_old_records_and_tells_devices(
    backend: Backend,
) -> Result<()> {
    let server = TestServer::start_on(backend)?;
    let mut admin = department(&server.url())?;
    let (mut a, mut b) = (Device::new()?, Device::new()?);
    a.sync(&server.url())?;
    b.sync(&server.url())?;
    assert_eq!(a.store.new_template_version(campaign())?, Some(1));
    a.store.acknowledge_template(campaign(), 1)?;
    assert_eq!(a.store.new_template_version(campaign())?, None);
    let member = one(&a.store, "member", VILLAGE)?.header.id;
    // Device A goes to the village and records under version 1.
    let old = a
        .store
        .create_form(campaign(), "interview", VILLAGE, &interview(member))?;
    // Meanwhile the department adds a required question: version 2.
    let v1 = Template::builtin("midterm").unwrap();
    let source = v1.source.replacen("version = 1", "version = 2", 1)
        + "\n[[kinds.interview.fields]]\nname = \"location\"\ntype = \"text\"\nrequired = true\nlabel.zh = \"谈话地点\"\nlabel.en = \"Location\"\n";
    let v2 = Template::parse(&source)?;
    admin.store.publish_template(campaign(), &v2)?;
    admin.sync(&server.url())?;
    // Device B syncs and is told; its new forms need the new question.
    b.sync(&server.url())?;
    assert_eq!(b.store.new_template_version(campaign())?, Some(2));
    let err = b
        .store
        .create_form(campaign(), "interview", VILLAGE, &interview(member))
        .unwrap_err();
    assert!(
        err.to_string().contains("“谈话地点”（location）为必填项"),
        "{err}"
    );
    let mut with_location = interview(member);
    with_location.insert("location".into(), s("村党群服务中心"));
    let new = b
        .store
        .create_form(campaign(), "interview", VILLAGE, &with_location)?;
    assert_eq!(
        b.store.get(new)?.fields[FORM_VERSION_FIELD],
        FieldValue::Int(2)
    );
    // Device A comes back: its version-1 record syncs, and is valid under version 1.
    a.sync(&server.url())?;
    b.sync(&server.url())?;
    server.wait_merged()?;
    for id in [old, new] {
        let r = server.get_json(&format!("/v1/records/{id}"))?;
        assert_eq!(r["review"], Value::Null, "{r}");
    }
    assert_eq!(
        b.store.get(old)?.fields[FORM_VERSION_FIELD],
        FieldValue::Int(1)
    );
    // Device A now has version 2 too, and editing the old record asks for the new question.
    assert_eq!(a.store.new_template_version(campaign())?, Some(2));
    let err = a
        .store
        .edit_form(old, &fields(&[("interviewer", s("刘明、陈华"))]))
        .unwrap_err();
    assert!(err.to_string().contains("location"), "{err}");
    a.store.edit_form(
        old,
        &fields(&[("interviewer", s("刘明、陈华")), ("location", s("村委会"))]),
    )?;
    assert_eq!(
        a.store.get(old)?.fields[FORM_VERSION_FIELD],
        FieldValue::Int(2)
    );
    Ok(())
}

fn a_record_that_fails_on_the_server_is_kept_and_flagged_not_dropped(
    backend: Backend,
) -> Result<()> {
    let server = TestServer::start_on(backend)?;
    department(&server.url())?;
    let (mut a, mut b) = (Device::new()?, Device::new()?);
    a.sync(&server.url())?;
    // An older app that skipped validation writes a bad choice, and another record claims a
    // template version the server never had.
    let bad = a.store.create(
        "interview",
        campaign(),
        VILLAGE,
        &[
            ("date", s("2026-05-18")),
            ("interviewer", s("刘明")),
            ("interviewee_type", s("boss")),
            ("notes", FieldValue::Text("笔记".into())),
            (FORM_VERSION_FIELD, FieldValue::Int(1)),
        ],
    )?;
    let future = a.store.create(
        "meeting",
        campaign(),
        VILLAGE,
        &[(FORM_VERSION_FIELD, FieldValue::Int(9))],
    )?;
    // And a member rating keyed to a village's record instead of a member's.
    let village = one(&a.store, "place", VILLAGE)?.header.id;
    let misrated = a.store.create(
        "evaluation",
        campaign(),
        VILLAGE,
        &[
            ("team_rating", s("satisfied")),
            (
                "member_ratings",
                FieldValue::Map([(village.to_string(), "satisfied".to_string())].into()),
            ),
            (FORM_VERSION_FIELD, FieldValue::Int(1)),
        ],
    )?;
    a.sync(&server.url())?;
    let status = server.wait_merged()?;
    assert_eq!(status["records_needing_review"], 3, "{status}");
    let r = server.get_json(&format!("/v1/records/{misrated}"))?;
    assert!(
        r["review"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["field"] == "member_ratings" && p["code"] == "wrong_reference_kind"),
        "{r}"
    );
    let r = server.get_json(&format!("/v1/records/{bad}"))?;
    assert_eq!(r["review"][0]["field"], "interviewee_type", "{r}");
    assert_eq!(r["review"][0]["code"], "not_a_choice", "{r}");
    assert!(
        r["review"][0]["zh"]
            .as_str()
            .unwrap()
            .contains("“boss”不是可选项")
    );
    let r = server.get_json(&format!("/v1/records/{future}"))?;
    assert_eq!(r["review"][0]["code"], "unknown_version", "{r}");
    let flagged = server.get_json("/v1/records?needs_review=true")?;
    assert_eq!(flagged.as_array().unwrap().len(), 3, "{flagged}");
    // Kept, and synced on to other devices like any record.
    b.sync(&server.url())?;
    assert_eq!(b.store.get(bad)?.fields["interviewee_type"], s("boss"));
    // Fixing it on a device clears the flag.
    a.store.set(bad, "interviewee_type", s("member"))?;
    a.sync(&server.url())?;
    server.wait_merged()?;
    let r = server.get_json(&format!("/v1/records/{bad}"))?;
    assert_eq!(r["review"], Value::Null, "{r}");
    Ok(())
}

#[test]
fn csv_import_reports_every_bad_row_writes_nothing_and_reads_gbk() -> Result<()> {
    let mut admin = Device::new()?;
    admin
        .store
        .publish_template(campaign(), &Template::builtin("midterm").unwrap())?;
    let before = admin.store.count()?;
    let bad = "代码,名称,层级,上级代码\n510100001,示范镇,乡镇,\n510100001001,青龙社区,小区,510100001\n,花溪山村,村,510100001\n510100001003,三兴村,村,999\n510100001001,青龙社区,社区,510100001\n";
    let err = admin
        .store
        .import_csv(campaign(), ImportKind::Places, bad.as_bytes())
        .unwrap_err();
    let ImportError::Rows(rows) = &err else {
        panic!("expected row errors, got {err}")
    };
    let got: Vec<(usize, Option<&str>)> =
        rows.iter().map(|r| (r.line, r.column.as_deref())).collect();
    assert_eq!(
        got,
        [(3, Some("层级")), (4, Some("代码")), (5, Some("上级代码")),],
        "{err}"
    );
    assert!(rows[0].zh.contains("“小区”不是可选项"), "{err}");
    assert!(rows[1].en.contains("(code) is required"), "{err}");
    assert!(
        rows[2].zh.contains("找不到代码为“999”的村（社区）"),
        "{err}"
    );
    assert!(err.to_string().contains("未导入任何数据"), "{err}");
    assert_eq!(admin.store.count()?, before, "nothing half-imported");
    // Missing columns are named.
    let err = admin
        .store
        .import_csv(
            campaign(),
            ImportKind::Members,
            "姓名,职务\n王明,书记\n".as_bytes(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("缺少列：村代码、性别"), "{err}");
    // The same places as Excel on Chinese Windows saves them (GBK), then members (GB18030).
    let (gbk, _, unmappable) = encoding_rs::GBK.encode(PLACES);
    assert!(!unmappable);
    assert!(
        std::str::from_utf8(&gbk).is_err(),
        "the test file really is GBK"
    );
    let report = admin
        .store
        .import_csv(campaign(), ImportKind::Places, &gbk)?;
    assert_eq!((report.rows, report.records), (3, 3));
    let (gb, _, _) = encoding_rs::GB18030.encode(MEMBERS);
    let report = admin
        .store
        .import_csv(campaign(), ImportKind::Members, &gb)?;
    assert_eq!(
        (report.rows, report.records),
        (3, 5),
        "3 members and 2 teams"
    );
    let village = one(&admin.store, "place", VILLAGE)?;
    assert_eq!(village.fields["name"], s("青龙社区"));
    assert_eq!(village.fields["level"], s("community"));
    let secretary = admin
        .store
        .list(&Filter {
            kind: Some("member".into()),
            text: Some("王建国".into()),
            ..Default::default()
        })?
        .remove(0);
    assert_eq!(secretary.fields["position"], s("secretary_director"));
    assert_eq!(secretary.fields["age"], FieldValue::Int(48));
    assert_eq!(secretary.fields["party_member"], FieldValue::Bool(true));
    // Importing the same file again writes nothing new.
    let pending = admin.store.pending_upload()?;
    admin
        .store
        .import_csv(campaign(), ImportKind::Places, &gbk)?;
    assert_eq!(admin.store.pending_upload()?, pending);
    // Bytes that are neither UTF-8 nor GB18030 get a clear error.
    let err = admin
        .store
        .import_csv(campaign(), ImportKind::Places, b"\x81\x20\xff\xfe")
        .unwrap_err();
    assert!(matches!(err, ImportError::Encoding), "{err}");
    Ok(())
}

fn the_generated_campaign_has_the_shape_of_seed_002_on_the_server(backend: Backend) -> Result<()> {
    let server = TestServer::start_on(backend)?;
    let dir = tempfile::tempdir()?;
    let config = generator::Config::default();
    let generated = generator::generate(dir.path(), &server.url(), &config)?;
    let status = server.wait_merged()?;
    let t = &generated.tally;
    assert!(t.by_kind["questionnaire"] >= 300);
    assert!(t.by_kind["evaluation"] >= 460);
    assert_eq!(t.interviews, t.village_members + 2 * config.villages);
    let total: usize = t.by_kind.values().sum();
    assert_eq!(status["records"], total as u64, "{status}");
    assert_eq!(status["records_needing_review"], 0, "{status}");
    assert_eq!(status["waiting_changes"], 0, "{status}");
    // Per kind, counted by the server.
    for (kind, n) in &t.by_kind {
        let list = server.get_json(&format!(
            "/v1/records?kind={kind}&campaign={}&limit=10000",
            generated.campaign
        ))?;
        assert_eq!(list.as_array().unwrap().len(), *n, "{kind}");
    }
    // Team ratings: the conflicted ones are flagged, the rest tally.
    let assessments = server.get_json(&format!(
        "/v1/records?kind=assessment&campaign={}&limit=10000",
        generated.campaign
    ))?;
    let mut team_ratings = BTreeMap::new();
    let mut member_ratings = BTreeMap::new();
    let mut conflicted = 0;
    for a in assessments.as_array().unwrap() {
        let rating = a["fields"]["rating"].as_str().unwrap().to_string();
        match (a["fields"]["target_type"].as_str(), a["conflicts"].as_u64()) {
            (Some("team"), Some(0)) => *team_ratings.entry(rating).or_insert(0) += 1,
            (Some("team"), _) => conflicted += 1,
            _ => *member_ratings.entry(rating).or_insert(0) += 1,
        }
    }
    assert_eq!(team_ratings, t.team_ratings);
    assert_eq!(member_ratings, t.member_ratings);
    assert_eq!(conflicted, t.conflicts);
    // Notes appended on two devices at once both survive, in every copy.
    let notes = server.get_json(&format!(
        "/v1/records?kind=interview&campaign={}&limit=10000",
        generated.campaign
    ))?;
    let merged = notes
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            let n = r["fields"]["notes"].as_str().unwrap_or("");
            n.contains("组长意见：情况属实。") && n.contains("组员补充：群众评价较好。")
        })
        .count();
    assert_eq!(merged, config.villages);
    // Every device ended with every record of its group's village and the campaign-wide ones,
    // and nothing of the other groups' villages.
    let all = server.get_json(&format!(
        "/v1/records?campaign={}&limit=10000",
        generated.campaign
    ))?;
    let all = all.as_array().unwrap();
    assert_eq!(all.iter().filter(|r| r["deleted"] == false).count(), total);
    let per = generated.devices.len() / generated.villages.len();
    for (i, d) in generated.devices.iter().enumerate() {
        let village = &generated.villages[i / per];
        let visible = all
            .iter()
            .filter(|r| r["deleted"] == false)
            .filter(|r| r["scope"] == village.as_str() || r["scope"] == "campaign")
            .count();
        assert_eq!(d.count()?, visible as u64, "device {i} of {village}");
        let others = d.list(&Filter::default())?;
        assert!(
            others
                .iter()
                .all(|r| r.header.scope == *village || r.header.scope == "campaign"),
            "device {i} holds another group's records"
        );
    }
    Ok(())
}

fn records_already_on_the_server_are_reviewed_when_their_template_arrives(
    backend: Backend,
) -> Result<()> {
    let server = TestServer::start_on(backend)?;
    let mut a = Device::new()?;
    // A record written before the campaign had a template: nothing to check it against yet.
    let early = a.store.create(
        "interview",
        campaign(),
        VILLAGE,
        &[("interviewee_type", s("boss"))],
    )?;
    a.sync(&server.url())?;
    server.wait_merged()?;
    let r = server.get_json(&format!("/v1/records/{early}"))?;
    assert_eq!(r["review"], Value::Null, "{r}");
    // The template arrives: the server checks the records it already holds, with no new push.
    let mut admin = Device::new()?;
    admin
        .store
        .publish_template(campaign(), &Template::builtin("midterm").unwrap())?;
    admin.sync(&server.url())?;
    let status = server.wait_merged()?;
    assert_eq!(status["records_needing_review"], 1, "{status}");
    let r = server.get_json(&format!("/v1/records/{early}"))?;
    let codes: Vec<&str> = r["review"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap())
        .collect();
    assert!(
        codes.contains(&"not_a_choice") && codes.contains(&"required"),
        "{r}"
    );
    Ok(())
}
