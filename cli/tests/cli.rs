//! The real `fieldsync` binary, driven as a field worker would: set up, record through flags and
//! through answered prompts, list, sync with a running server and with none, interrupted syncs,
//! bundles between two devices in both directions, conflicts shown and resolved.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use assert_cmd::Command;
use fieldsync::TestServer;
use fieldsync_protocol::auth::Role;
use serde_json::Value;

const VILLAGE: &str = "510100001001";
const PLACES: &str =
    "代码,名称,层级,上级代码\n510100001,示范镇,乡镇,\n510100001001,青龙社区,社区,510100001\n";
const MEMBERS: &str = "村代码,姓名,职务,性别,年龄\n510100001001,王建国,书记,男,48\n510100001001,李秀英,副书记,女,39\n";

/// One device: a store file in its own temp dir.
struct Device {
    dir: tempfile::TempDir,
}

impl Device {
    fn new() -> Result<Self> {
        Ok(Device {
            dir: tempfile::tempdir()?,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("fieldsync").expect("the fieldsync binary");
        c.env("FIELDSYNC_STORE", self.path("store.sqlite3"))
            .env_remove("FIELDSYNC_LANG");
        c
    }

    /// Runs and returns (exit code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.cmd().args(args).output().expect("runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "fieldsync {args:?} failed: {err}{out}");
        out
    }

    /// Enrolls this device with `server` as `fieldsync enroll` does, with a one-time code the
    /// administrator issued for a new person of `role`.
    fn enroll(&self, server: &TestServer, name: &str, role: Role) -> Value {
        let person = server.add_person(name, role, None).expect("person");
        let code = server.code_for(person).expect("code");
        self.json(&[
            "enroll",
            "--server",
            &server.url(),
            "--code",
            &code,
            "--name",
            name,
        ])
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).expect("JSON output")
    }

    /// A department device: campaign from the built-in template, places and members imported.
    fn department() -> Result<(Device, String)> {
        let d = Device::new()?;
        let created = d.json(&[
            "campaign-create",
            "--template",
            "midterm",
            "--name",
            "示范镇届中分析",
            "--year",
            "2026",
        ]);
        let campaign = created["campaign"].as_str().unwrap().to_string();
        std::fs::write(d.path("places.csv"), PLACES)?;
        std::fs::write(d.path("members.csv"), MEMBERS)?;
        d.ok(&["import", "places", d.path("places.csv").to_str().unwrap()]);
        d.ok(&["import", "members", d.path("members.csv").to_str().unwrap()]);
        Ok((d, campaign))
    }

    fn member(&self) -> String {
        let members = self.json(&["list", "--kind", "member"]);
        members[0]["id"].as_str().unwrap().to_string()
    }
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

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
    let created = d.json(&[
        "new",
        "interview",
        "--village",
        VILLAGE,
        "--set",
        "date=2026-05-18",
        "--set",
        "interviewer=刘明",
        "--set",
        "interviewee_type=班子成员",
        "--set",
        &format!("interviewee={member}"),
        "--set",
        "notes=班子团结，集体经济收入偏低。",
    ]);
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
    let shown_en = d.ok(&["--lang", "en", "show", short]);
    assert!(shown_en.contains("(interviewer): 刘明"), "{shown_en}");
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
fn sync_waits_for_a_busy_servers_retry_after_and_finishes() -> Result<()> {
    // Two requests per device per minute: the sync is refused with 429 part-way and must wait
    // for the next minute (the server's Retry-After) rather than give up.
    let data = tempfile::tempdir()?;
    let server = TestServer::start_with(
        data.path(),
        fieldsync_server::auth::Limits {
            requests_per_minute: 2,
            ..Default::default()
        },
    )?;
    let (d, _) = Device::department()?;
    d.enroll(&server, "组长", Role::Admin);
    let pending = d.json(&["status"])["pending_upload"].as_u64().unwrap();
    assert!(pending > 0);
    let (code, out, err) = d.run(&["--lang", "en", "sync", "--retries", "0"]);
    assert_eq!(code, 0, "{err}{out}");
    assert!(
        err.contains("the server is busy and asked to wait"),
        "{err}"
    );
    assert_eq!(d.json(&["status"])["pending_upload"], 0);
    assert_eq!(server.get_json("/v1/status")?["changes"], pending);
    Ok(())
}

#[test]
fn sync_with_the_server_down_exits_4_and_says_nothing_was_lost() -> Result<()> {
    let (d, _) = Device::department()?;
    // Enrolled with a server that then goes away.
    let mut server = TestServer::start()?;
    d.enroll(&server, "组员", Role::Admin);
    server.stop()?;
    let pending = d.json(&["status"])["pending_upload"].as_u64().unwrap();
    let (code, _, err) = d.run(&["sync", "--retries", "0"]);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains(&format!("数据没有丢失：{pending} 条更改保存在本机")),
        "{err}"
    );
    let (code, _, err) = d.run(&["--lang", "en", "sync", "--retries", "1"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("retrying in 2 s (attempt 1)"), "{err}");
    assert!(err.contains("nothing was lost"), "{err}");
    assert_eq!(d.json(&["status"])["pending_upload"], pending);
    // Plain http to another machine is refused before anything is sent.
    let (code, _, err) = d.run(&["init", "--server", "http://192.0.2.1:8080"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("refusing plain http"), "{err}");
    Ok(())
}

#[test]
fn an_interrupted_sync_loses_nothing_and_the_next_one_finishes() -> Result<()> {
    let server = TestServer::start()?;
    let (a, campaign) = Device::department()?;
    let member = a.member();
    // Enough records that pulling them takes a while.
    std::fs::write(
        a.path("i.json"),
        format!(
            r#"{{"date": "2026-05-18", "interviewer": "刘明", "interviewee_type": "member", "interviewee": "{member}", "notes": {{"text": "{}"}}}}"#,
            "班子团结协作，集体经济收入渠道单一，群众反映较好。".repeat(12)
        ),
    )?;
    for _ in 0..150 {
        a.ok(&[
            "new",
            "interview",
            "--village",
            VILLAGE,
            "--file",
            p(&a.path("i.json")),
        ]);
    }
    a.enroll(&server, "组长", Role::Admin);
    a.ok(&["sync"]);
    let total = a.json(&["status"])["records"].as_u64().unwrap();
    let b = Device::new()?;
    b.enroll(&server, "组员", Role::Admin);
    b.ok(&["init", "--campaign", &campaign]);
    // Kill B's first sync at several moments (SIGKILL, as a phone's system kills an app; not
    // SIGINT, which a shell that starts this suite in the background makes children ignore);
    // each run keeps what it applied and the next one goes on from there.
    let mut interrupted = 0;
    for delay_ms in [5, 40, 120] {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("fieldsync"))
            .env("FIELDSYNC_STORE", b.path("store.sqlite3"))
            .args(["sync", "--retries", "0"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        std::thread::sleep(Duration::from_millis(delay_ms));
        std::process::Command::new("kill")
            .args(["-KILL", &child.id().to_string()])
            .status()?;
        if child.wait()?.code().is_none() {
            interrupted += 1;
        }
        let status = b.json(&["status"]);
        assert!(status["records"].as_u64().unwrap() <= total);
    }
    assert!(
        interrupted > 0,
        "no sync was interrupted; the test proves nothing"
    );
    let summary = b.json(&["sync"]);
    assert_eq!(summary["waiting"], 0, "{summary}");
    assert_eq!(b.json(&["status"])["records"], total);
    Ok(())
}

#[test]
fn bundles_carry_changes_both_ways_without_the_server_and_it_keeps_each_once() -> Result<()> {
    let (a, campaign) = Device::department()?;
    let member = a.member();
    let interview = a.json(&[
        "new",
        "interview",
        "--village",
        VILLAGE,
        "--set",
        "date=2026-05-18",
        "--set",
        "interviewer=刘明",
        "--set",
        "interviewee_type=member",
        "--set",
        &format!("interviewee={member}"),
        "--set",
        "notes=第一次谈话。",
    ])["id"]
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
