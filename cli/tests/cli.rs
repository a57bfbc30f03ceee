//! The real `fieldsync` binary, driven as a field worker would: set up, record through flags and
//! through answered prompts, list, sync with a running server, bundles between two devices in
//! both directions, conflicts shown and resolved (a bad network: `tests/sync.rs`).

mod common;

use anyhow::Result;
use common::{Device, VILLAGE, p};
use fieldsync::TestServer;
use fieldsync_protocol::auth::Role;
use serde_json::Value;

#[test]
fn record_through_flags_list_show_edit_append_and_delete() -> Result<()> {
    let (d, _) = Device::department()?;
    let forms = d.ok(&["forms", "interview"]);
    assert!(
        forms.contains("谈话日期") && forms.contains("*必填"),
        "{forms}"
    );
    // A kind that does not exist is a usage error naming the kinds that do.
    let (code, _, err) = d.run(&["list", "--kind", "interviews"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("interview,") || err.contains("interview"),
        "{err}"
    );
    let member = d.member();
    let created = d.new_interview("班子团结，集体经济收入偏低。");
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(
        created["fields"]["interviewee_type"], "member",
        "a label is read as its choice"
    );
    // A bad value: exit 3, the field named, nothing saved.
    let before = d.json(&["list"]).as_array().unwrap().len();
    let (code, _, err) = d.run(&[
        "new",
        "interview",
        "--village",
        VILLAGE,
        "--set",
        "date=5月18日",
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("“谈话日期”（date）应为“年-月-日”格式的日期"),
        "{err}"
    );
    assert!(err.contains("“谈话记录”（notes）为必填项"), "{err}");
    let (code, _, err) = d.run(&[
        "--lang",
        "en",
        "new",
        "meeting",
        "--village",
        VILLAGE,
        "--set",
        "participants=三十",
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("Number of participants (participants): \"三十\" is not a number"),
        "{err}"
    );
    assert_eq!(d.json(&["list"]).as_array().unwrap().len(), before);
    // From a JSON file.
    std::fs::write(
        d.path("meeting.json"),
        r#"{"date": "2026-05-19", "meeting_type": "party_member_rep", "participants": 32, "notes": {"text": "党员群众代表会议"}}"#,
    )?;
    let meeting = d.json(&[
        "new",
        "meeting",
        "--village",
        VILLAGE,
        "--file",
        p(&d.path("meeting.json")),
    ]);
    assert_eq!(meeting["fields"]["participants"], 32);
    // List and filter, as a table and as JSON.
    let short = &id[id.len() - 8..];
    let table = d.ok(&["list", "--kind", "interview"]);
    assert!(
        table.contains(short) && table.contains("班子团结"),
        "{table}"
    );
    let found = d.json(&["list", "--text", "集体经济"]);
    assert_eq!(found.as_array().unwrap().len(), 1);
    let by_member = d.json(&["list", "--member", &member]);
    assert_eq!(by_member[0]["id"], id.as_str());
    // Show by a short id; edit; append; delete.
    let shown = d.ok(&["show", short]);
    assert!(shown.contains("谈话人（interviewer）：刘明"), "{shown}");
    assert!(shown.contains("审核状态：待审核"), "{shown}");
    let shown_en = d.ok(&["--lang", "en", "show", short]);
    assert!(shown_en.contains("(interviewer): 刘明"), "{shown_en}");
    assert!(shown_en.contains("Review: Awaiting review"), "{shown_en}");
    assert!(
        !shown_en.contains('（'),
        "full-width brackets in English: {shown_en}"
    );
    d.ok(&["edit", short, "--set", "interviewer=刘明、陈华"]);
    d.ok(&["append", &id, "notes", "（补充）建议发展茶叶产业。"]);
    let r = d.json(&["show", &id]);
    assert_eq!(r["fields"]["interviewer"], "刘明、陈华");
    assert_eq!(
        r["fields"]["notes"],
        "班子团结，集体经济收入偏低。（补充）建议发展茶叶产业。"
    );
    d.ok(&["delete", &id]);
    assert!(
        d.json(&["list", "--kind", "interview"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    let (code, _, err) = d.run(&["show", "ffffffff"]);
    assert_eq!(code, 6, "{err}");
    let status = d.json(&["status"]);
    assert!(status["pending_upload"].as_u64().unwrap() > 0);
    Ok(())
}

#[test]
fn record_by_answering_prompts_with_chinese_and_a_wrong_answer_first() -> Result<()> {
    let (d, _) = Device::department()?;
    // date: wrong then right; interviewer; mode skipped; category by number; the rest skipped
    // except notes (required: an empty answer is asked again).
    let answers = "昨天\n2026-05-18\n刘明\n\n\n1\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n";
    let fields = d
        .cmd()
        .args([
            "new",
            "interview",
            "--village",
            VILLAGE,
            "--prompt",
            "--set",
            "notes=现场补记",
        ])
        .write_stdin(answers)
        .output()?;
    let err = String::from_utf8_lossy(&fields.stderr);
    // `--set` values come after the prompts; notes is required, so the prompt insists first.
    assert!(err.contains("谈话日期（date，必填）"), "{err}");
    assert!(
        err.contains("“昨天”不是"),
        "the wrong date is refused at once: {err}"
    );
    assert!(err.contains("1) 班子成员 member"), "{err}");
    // Ran out of answers at the notes prompt: nothing saved, exit 3.
    assert_eq!(fields.status.code(), Some(3), "{err}");
    assert!(err.contains("输入已结束，未保存"), "{err}");
    // Answer everything.
    let answers =
        "2026-05-18\n刘明\n\n\n1\n\n\n\n谈话中，该同志反映集体经济收入渠道单一。\n\n\n\n\n\n";
    let out = d
        .cmd()
        .args([
            "--json",
            "new",
            "interview",
            "--village",
            VILLAGE,
            "--prompt",
        ])
        .write_stdin(answers)
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let r: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(r["fields"]["date"], "2026-05-18");
    assert_eq!(r["fields"]["interviewee_type"], "member");
    assert_eq!(
        r["fields"]["notes"],
        "谈话中，该同志反映集体经济收入渠道单一。"
    );
    Ok(())
}

#[test]
fn sync_shows_a_conflict_that_is_resolved_from_the_command_line() -> Result<()> {
    let server = TestServer::start()?;
    let (a, campaign) = Device::department()?;
    a.enroll(&server, "组长", Role::Admin);
    let synced = a.ok(&["sync"]);
    assert!(synced.contains("同步完成：上传"), "{synced}");
    let b = Device::new()?;
    b.enroll(&server, "组员", Role::Admin);
    b.ok(&["init", "--campaign", &campaign]);
    b.ok(&["sync"]);
    let team = a.json(&["list", "--kind", "team"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for (d, rating) in [(&a, "好"), (&b, "正常")] {
        d.ok(&[
            "new",
            "assessment",
            "--village",
            VILLAGE,
            "--set",
            "target_type=team",
            "--set",
            &format!("target={team}"),
            "--set",
            &format!("rating={rating}"),
        ]);
    }
    a.ok(&["sync"]);
    let summary = b.json(&["sync"]);
    assert_eq!(summary["conflicted_records"], 1, "{summary}");
    a.ok(&["sync"]);
    let conflicted = a.json(&["list", "--conflicted"]);
    let id = conflicted[0]["id"].as_str().unwrap().to_string();
    let shown = a.ok(&["conflicts", &id]);
    assert!(
        shown.contains("rating:") && shown.contains("good") && shown.contains("normal"),
        "{shown}"
    );
    a.ok(&["resolve", &id, "rating", "正常"]);
    a.ok(&["sync"]);
    b.ok(&["sync"]);
    let r = b.json(&["show", &id]);
    assert_eq!(r["fields"]["rating"], "normal");
    assert_eq!(r["conflicts"], 0);
    assert!(b.json(&["conflicts", &id]).as_array().unwrap().is_empty());
    Ok(())
}

#[test]
fn a_json_form_file_takes_choices_by_their_labels_as_set_does() -> Result<()> {
    let (d, _) = Device::department()?;
    let team = d.json(&["list", "--kind", "team"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for (name, rating) in [
        ("zh.json", "好"),
        ("en.json", "Normal"),
        ("value.json", "poor"),
    ] {
        std::fs::write(
            d.path(name),
            serde_json::json!({
                "target_type": "team",
                "target": team,
                "rating": rating,
            })
            .to_string(),
        )?;
        let r = d.json(&[
            "new",
            "assessment",
            "--village",
            VILLAGE,
            "--file",
            p(&d.path(name)),
        ]);
        let expected = match rating {
            "好" => "good",
            "Normal" => "normal",
            _ => "poor",
        };
        assert_eq!(r["fields"]["rating"], expected, "{r}");
        assert_eq!(r["fields"]["target_type"], "team", "{r}");
    }
    // A label that is not a choice is still refused, naming the valid labels.
    std::fs::write(
        d.path("bad.json"),
        serde_json::json!({"target_type": "team", "target": team, "rating": "很好"}).to_string(),
    )?;
    let (code, _, err) = d.run(&[
        "new",
        "assessment",
        "--village",
        VILLAGE,
        "--file",
        p(&d.path("bad.json")),
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("“很好”不是可选项") && err.contains("好"),
        "{err}"
    );
    Ok(())
}

#[test]
fn a_reader_that_closes_stdout_early_ends_the_program_quietly() -> Result<()> {
    use std::io::BufRead;
    let (d, _) = Device::department()?;
    let mut members = String::from("村代码,姓名,职务,性别,年龄\n");
    for i in 0..1_500 {
        members.push_str(&format!("{VILLAGE},成员{i},委员,男,40\n"));
    }
    std::fs::write(d.path("many.csv"), members)?;
    d.ok(&["import", "members", d.path("many.csv").to_str().unwrap()]);
    for args in [
        &["list", "--kind", "member"][..],
        &["--json", "list", "--kind", "member"][..],
    ] {
        // As `fieldsync list | head -1`: read one line, then close the pipe.
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("fieldsync"))
            .env("FIELDSYNC_STORE", d.path("store.sqlite3"))
            .env_remove("FIELDSYNC_LANG")
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut first)?;
        assert!(!first.is_empty(), "{args:?} printed nothing");
        let out = child.wait_with_output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
    Ok(())
}

#[test]
fn bundles_carry_changes_both_ways_without_the_server_and_it_keeps_each_once() -> Result<()> {
    let (a, campaign) = Device::department()?;
    let interview = a.new_interview("第一次谈话。")["id"]
        .as_str()
        .unwrap()
        .to_string();
    // B tells A what it has (nothing); A exports what B lacks; B imports.
    let b = Device::new()?;
    b.ok(&["bundle", "state", p(&b.path("b.state"))]);
    let exported = a.json(&[
        "bundle",
        "export",
        p(&a.path("to-b.fsb")),
        "--for",
        p(&b.path("b.state")),
    ]);
    assert!(exported["changes"].as_u64().unwrap() > 0);
    std::fs::copy(a.path("to-b.fsb"), b.path("from-a.fsb"))?;
    let imported = b.json(&["bundle", "import", p(&b.path("from-a.fsb"))]);
    assert_eq!(imported["new_changes"], exported["changes"]);
    // Importing it again changes nothing.
    let again = b.json(&["bundle", "import", p(&b.path("from-a.fsb"))]);
    assert_eq!(
        (
            again["new_changes"].as_u64(),
            again["known_changes"].as_u64()
        ),
        (Some(0), exported["changes"].as_u64())
    );
    // B works offline on the same campaign: a new record, and notes appended to A's interview,
    // while A appends to them too.
    b.ok(&["init", "--campaign", &campaign]);
    b.ok(&[
        "new",
        "meeting",
        "--village",
        VILLAGE,
        "--set",
        "date=2026-05-19",
        "--set",
        "meeting_type=villager_forum",
        "--set",
        "participants=25",
    ]);
    b.ok(&["append", &interview, "notes", "组员补充。"]);
    a.ok(&["append", &interview, "notes", "组长意见。"]);
    // Back the other way, exporting only what A lacks.
    a.ok(&["bundle", "state", p(&a.path("a.state"))]);
    std::fs::copy(a.path("a.state"), b.path("a.state"))?;
    let back = b.json(&[
        "bundle",
        "export",
        p(&b.path("to-a.fsb")),
        "--for",
        p(&b.path("a.state")),
    ]);
    assert_eq!(
        back["changes"], 3,
        "the meeting's genesis and edit, and the append: {back}"
    );
    std::fs::copy(b.path("to-a.fsb"), a.path("from-b.fsb"))?;
    a.ok(&["bundle", "import", p(&a.path("from-b.fsb"))]);
    b.ok(&["bundle", "state", p(&b.path("b2.state"))]);
    std::fs::copy(b.path("b2.state"), a.path("b2.state"))?;
    let rest = a.json(&[
        "bundle",
        "export",
        p(&a.path("to-b2.fsb")),
        "--for",
        p(&a.path("b2.state")),
    ]);
    std::fs::copy(a.path("to-b2.fsb"), b.path("from-a2.fsb"))?;
    b.ok(&["bundle", "import", p(&b.path("from-a2.fsb"))]);
    assert_eq!(rest["changes"], 1, "{rest}");
    // Both hold the same records, with both appended notes merged.
    let by_id = |v: Value| {
        let mut list = v.as_array().unwrap().clone();
        list.sort_by_key(|r| r["id"].as_str().unwrap().to_string());
        list
    };
    let (ra, rb) = (by_id(a.json(&["list"])), by_id(b.json(&["list"])));
    assert_eq!(ra.len(), rb.len());
    assert!(ra == rb, "the two devices differ after exchanging bundles");
    let notes = a.json(&["show", &interview])["fields"]["notes"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        notes.contains("组员补充。") && notes.contains("组长意见。"),
        "{notes}"
    );
    // A file that is not a bundle: exit 3.
    let (code, _, err) = a.run(&["bundle", "import", p(&a.path("a.state"))]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("不是 fieldsync 同步包"), "{err}");
    // Later both reach the server: every change is stored once.
    let server = TestServer::start()?;
    for d in [&a, &b] {
        d.enroll(&server, "组员", Role::Admin);
        d.ok(&["sync"]);
    }
    a.ok(&["sync"]);
    let status = server.wait_merged()?;
    let (ca, cb) = (a.json(&["status"]), b.json(&["status"]));
    assert_eq!(ca["pending_upload"], 0);
    assert_eq!(cb["pending_upload"], 0);
    assert_eq!(status["records"], ca["records"]);
    let list = server.get_json(&format!("/v1/records?campaign={campaign}&limit=10000"))?;
    assert_eq!(
        list.as_array().unwrap().len() as u64,
        ca["records"].as_u64().unwrap()
    );
    // The server's change count equals the changes either device holds (no duplicates).
    a.ok(&["bundle", "state", p(&a.path("final.state"))]);
    let held = a.json(&["bundle", "export", p(&a.path("all.fsb"))])["changes"].clone();
    assert_eq!(status["changes"], held, "{status}");
    Ok(())
}

#[test]
fn enroll_with_a_one_time_code_then_whoami_and_a_used_code_exits_5() -> Result<()> {
    let server = TestServer::start()?;
    let d = Device::new()?;
    let (code, _, err) = d.run(&["sync"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("本机尚未登记"), "{err}");
    let person = server.add_person("张三", Role::Viewer, None)?;
    let c = server.code_for(person)?;
    let out = d.ok(&[
        "enroll",
        "--server",
        &server.url(),
        "--code",
        &c,
        "--name",
        "张三的笔记本",
    ]);
    assert!(out.contains("张三（部门查看人员）"), "{out}");
    let me = d.json(&["whoami"]);
    assert_eq!(me["person"]["role"], "viewer");
    assert_eq!(me["scope"]["all"], true);
    assert_eq!(me["scope"]["write"], false);
    let st = d.json(&["status"]);
    assert_eq!(
        (st["person"].as_str(), st["enrolled"].as_bool()),
        (Some("张三"), Some(true))
    );
    let other = Device::new()?;
    let (code, _, err) = other.run(&["enroll", "--server", &server.url(), "--code", &c]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("登记码已使用过"), "{err}");
    Ok(())
}

#[test]
fn enroll_downloads_the_campaign_so_that_the_device_records_offline_at_once() -> Result<()> {
    let server = TestServer::start()?;
    let (d, _) = Device::department()?;
    let admin = server.add_person("组织部", Role::Admin, None)?;
    d.ok(&[
        "enroll",
        "--server",
        &server.url(),
        "--code",
        &server.code_for(admin)?,
    ]);
    let held = d.json(&["status"])["records"].as_u64().unwrap();
    assert!(held > 0);
    // A second device: enrolling is all it takes to have the template and the villages.
    let other = Device::new()?;
    let person = server.add_person("李组员", Role::Admin, None)?;
    let out = other.ok(&[
        "enroll",
        "--server",
        &server.url(),
        "--code",
        &server.code_for(person)?,
    ]);
    assert!(out.contains("可以离线记录了"), "{out}");
    assert_eq!(other.json(&["status"])["records"].as_u64(), Some(held));
    let forms = other.ok(&["forms"]);
    assert!(forms.contains("interview"), "{forms}");
    // The only campaign it holds is the one it works in: a record is made offline at once.
    let st = other.json(&["status"]);
    assert!(st["campaign"].is_string(), "the campaign is set: {st}");
    Ok(())
}

#[test]
fn a_store_encrypted_with_a_key_file_needs_that_key() -> Result<()> {
    let d = Device::new()?;
    let key = d.path("store.key");
    std::fs::write(&key, "11".repeat(32))?;
    let k = key.to_str().unwrap();
    let created = d.json(&[
        "--key-file",
        k,
        "campaign-create",
        "--template",
        "midterm",
        "--name",
        "加密测试",
        "--year",
        "2026",
    ]);
    assert!(created["campaign"].is_string());
    assert!(
        d.json(&["--key-file", k, "status"])["records"]
            .as_u64()
            .unwrap()
            > 0
    );
    // Without the key, or with another: exit 1 and a clear message, nothing shown.
    let (code, _, err) = d.run(&["status"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("无法用这个密钥打开"), "{err}");
    std::fs::write(&key, "22".repeat(32))?;
    let (code, _, err) = d.run(&["--key-file", k, "status"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("无法用这个密钥打开"), "{err}");
    Ok(())
}
