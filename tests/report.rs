//! The draft report beyond seed 002's campaign (which `department.rs` drafts): a 换届“回头看”
//! campaign drafted in the structure of seed 000, the PDF refused with what to do instead where
//! the server has no LibreOffice, and the notes a draft quotes, on both storages.

use anyhow::Result;
use fieldsync::TestServer;
use fieldsync_client_core::{FieldValue, Filter};
use serde_json::Value;
use std::collections::BTreeMap;

#[test]
fn a_lookback_campaign_is_drafted_in_the_structure_of_seed_000() -> Result<()> {
    use fieldsync_client_core::import::ImportKind;
    use fieldsync_client_core::{Store, SyncOptions, sync::sync};
    use fieldsync_protocol::template::Template;

    let server = TestServer::start()?;
    let dir = tempfile::tempdir()?;
    let mut d = Store::open(dir.path().join("department.sqlite3"))?;
    let c = uuid::Uuid::from_u128(0x0000_2021_1122);
    d.create_campaign(
        c,
        "示范区换届“回头看”",
        &Template::builtin("lookback").unwrap(),
        2021,
    )?;
    d.import_csv(
        c,
        ImportKind::Places,
        "代码,名称,层级,上级代码\n510100,示范区,区,\n510100001,示范镇,乡镇,510100\n510100001001,青龙社区,社区,510100001\n510100001002,花溪山村,村,510100001\n".as_bytes(),
    )?;
    d.import_csv(
        c,
        ImportKind::Members,
        "村代码,姓名,职务,性别\n510100001,赵书记,书记,男\n510100001,钱镇长,乡镇长,男\n510100001,孙委员,委员,女\n510100001001,李一,书记,男\n510100001001,周二,委员,女\n510100001002,吴三,书记,男\n510100001002,郑四,委员,男\n".as_bytes(),
    )?;
    let find = |store: &Store, kind: &str, text: &str| -> Result<String> {
        Ok(store
            .list(&Filter {
                kind: Some(kind.into()),
                text: Some(text.into()),
                ..Default::default()
            })?
            .remove(0)
            .header
            .id
            .to_string())
    };
    let f = |pairs: &[(&str, FieldValue)]| -> BTreeMap<String, FieldValue> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    };
    let s = |v: &str| FieldValue::Str(v.into());
    // Interviews: two of the three township members, three of the four village cadres.
    for (name, place) in [
        ("赵书记", "510100001"),
        ("钱镇长", "510100001"),
        ("李一", "510100001001"),
        ("周二", "510100001001"),
        ("吴三", "510100001002"),
    ] {
        let member = find(&d, "member", name)?;
        d.create_form(
            c,
            "interview",
            place,
            &f(&[
                ("date", s("2021-12-06")),
                ("interviewer", s("考察组")),
                ("interviewee_type", s("member")),
                ("interviewee", s(&member)),
                ("notes", s("谈话记录")),
            ]),
        )?;
    }
    // The joint review: one violation in each level, one clean record.
    for (name, place, violation) in [
        ("孙委员", "510100001", true),
        ("郑四", "510100001002", true),
        ("李一", "510100001001", false),
    ] {
        let member = find(&d, "member", name)?;
        d.create_form(
            c,
            "prescreening",
            place,
            &f(&[
                ("source", s("discipline")),
                ("member", s(&member)),
                ("integrity_issue", FieldValue::Bool(false)),
                ("violation", FieldValue::Bool(violation)),
            ]),
        )?;
    }
    for (level, place, n) in [
        ("township_team", "510100001", 2),
        ("village_team", "510100001001", 3),
    ] {
        for _ in 0..n {
            d.create_form(
                c,
                "finding",
                place,
                &f(&[
                    ("level", s(level)),
                    ("category", s("style")),
                    ("text", s("作风不实。")),
                ]),
            )?;
        }
    }
    let township_team = find(&d, "team", "示范镇领导班子")?;
    d.create_form(
        c,
        "assessment",
        "510100001",
        &f(&[
            ("target_type", s("team")),
            ("target", s(&township_team)),
            ("rating", s("good")),
            ("check_org_operation", s("good")),
            ("check_political", s("good")),
            ("check_duty", s("normal")),
            ("check_results", s("good")),
            ("check_style", s("normal")),
        ]),
    )?;
    let village_team = find(&d, "team", "青龙社区“两委”班子")?;
    d.create_form(
        c,
        "assessment",
        "510100001001",
        &f(&[
            ("target_type", s("team")),
            ("target", s(&village_team)),
            ("rating", s("normal")),
        ]),
    )?;
    let mut t = server.connect(&d)?;
    sync(&mut d, &mut t, &SyncOptions::default())?;
    let status = server.wait_merged()?;
    assert_eq!(status["records_needing_review"], 0, "{status}");
    let tallies = server.get_json(&format!("/v1/campaigns/{c}/tallies"))?;
    assert_eq!(tallies["template"], "lookback");
    assert_eq!(tallies["members_by_level"]["township_team"], 3);
    assert_eq!(tallies["interviewed_by_level"]["village_team"], 3);
    let report = server
        .get(&format!("/v1/campaigns/{c}/report.md"))?
        .text()?;
    for expected in [
        "# 示范区换届“回头看”情况报告",
        "对全区1个乡镇和2个村（社区）全覆盖开展了换届“回头看”",
        "并对2名乡镇班子成员逐个谈心谈话，对3名村（社区）“两委”干部进行一一调研座谈",
        "联审发现乡镇班子中出现违法违纪问题1人，村（社区）“两委”干部中出现违法违纪问题1人",
        "乡镇班子中，共计发现问题2个，村（社区）“两委”干部中，共发现问题3个",
        "## 二、乡镇班子分析研判情况",
        "全区3名乡镇班子成员中，2名接受了谈心谈话。乡镇领导班子定性评价：“好”1个、“正常”0个",
        "履职尽责：“好”0个、“正常”1个、“较差”0个",
        "作风表现：“好”0个、“正常”1个、“较差”0个",
        "村（社区）“两委”班子定性评价：“好”0个、“正常”1个、“较差”0个",
        "## 四、下一步工作计划",
    ] {
        assert!(
            report.contains(expected),
            "the report lacks {expected:?}:\n{report}"
        );
    }
    Ok(())
}

#[test]
fn without_libreoffice_the_pdf_is_refused_with_what_to_do_instead() -> Result<()> {
    let server =
        TestServer::start_with_config(|c| c.soffice = Some("/nonexistent/bin/soffice".into()))?;
    let campaign = uuid::Uuid::new_v4();
    let answer = server.get(&format!("/v1/campaigns/{campaign}/report.pdf"))?;
    assert_eq!(answer.status(), 503);
    let body: Value = answer.json()?;
    assert_eq!(body["error"]["code"], "pdf_unavailable", "{body}");
    let hint = body["error"]["hint"].as_str().unwrap_or_default();
    assert!(hint.contains("DOCX") && hint.contains("WPS"), "{hint}");
    Ok(())
}

fieldsync::story!(a_villages_notes_are_its_first_minutes_then_its_first_interviews);

/// The report quotes each village's meeting minutes first, then its interview notes, each in the
/// order they arrived, at most eight (`NOTES_PER_VILLAGE`); records without notes, deleted
/// ones and other villages' are not quoted. The notes are confidential and never leave the
/// server as they are (the draft quotes key sentences of them), so they are read from a second
/// handle on the server's storage.
fn a_villages_notes_are_its_first_minutes_then_its_first_interviews(
    backend: fieldsync::Backend,
) -> Result<()> {
    use fieldsync_client_core::{Store, SyncOptions, sync::sync};
    use fieldsync_server::storage::Visibility;
    let database = backend.fresh_database()?;
    let server = TestServer::start_with_config({
        let database = database.clone();
        move |c| c.database = database
    })?;
    let campaign = uuid::Uuid::now_v7();
    let (a, b) = ("510100001", "510100101");
    let note = |t: &str| [("notes", FieldValue::Text(t.into()))];
    let mut admin = Store::open_in_memory()?;
    for code in [a, b] {
        admin.create(
            "place",
            campaign,
            code,
            &[
                ("code", FieldValue::Str(code.into())),
                ("name", FieldValue::Str(format!("{code}村"))),
                ("level", FieldValue::Str("village".into())),
            ],
        )?;
        admin.create("interview", campaign, code, &note(&format!("{code}村谈话")))?;
    }
    for i in 0..9 {
        admin.create("interview", campaign, a, &note(&format!("谈话{i}")))?;
    }
    admin.create("interview", campaign, a, &note(""))?;
    for i in 0..3 {
        let id = admin.create("meeting", campaign, a, &note(&format!("会议{i}")))?;
        if i == 1 {
            admin.delete(id)?;
        }
    }
    admin.create("meeting", campaign, b, &note("B村会议"))?;
    let mut t = server.connect(&admin)?;
    sync(&mut admin, &mut t, &SyncOptions::default())?;
    server.wait_merged()?;
    let tallies = tokio::runtime::Runtime::new()?.block_on(async {
        let storage =
            fieldsync_server::open_storage_at(server.data_dir(), database.as_deref()).await?;
        let tallies = storage
            .tallies(campaign, Visibility::All, Default::default())
            .await;
        storage.close().await;
        anyhow::Ok(tallies?)
    })?;
    let notes = |code: &str| -> Vec<String> {
        tallies
            .villages_detail
            .iter()
            .find(|v| v.code == code)
            .map(|v| v.notes.clone())
            .unwrap_or_else(|| panic!("no {code} in {tallies:?}"))
    };
    let mut expected = vec![
        "会议0".to_string(),
        "会议2".to_string(),
        format!("{a}村谈话"),
    ];
    expected.extend((0..5).map(|i| format!("谈话{i}")));
    assert_eq!(notes(a), expected);
    assert_eq!(notes(b), ["B村会议".to_string(), format!("{b}村谈话")]);
    Ok(())
}
