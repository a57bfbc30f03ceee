//! The field app in a real headless Chromium (Debian's, as the dashboard's browser test uses,
//! driven by the top-level tests' pinned playwright-core from `app/tests/browser/`), with
//! screenshots of every page at laptop and phone width in `target/tmp/app-browser/`; what was
//! saved is then checked in the stores and on the server, independently of the pages.
//!
//! `a_field_worker_records_in_chromium` (`app.mjs`, a seeded store, no server): open the launch
//! address, record an interview with a 500-character Chinese note, a questionnaire with a missing
//! answer shown at its field and then corrected, switch to English, a document review with a
//! photo added and shown on its page.
//!
//! `a_field_day_from_enrollment_to_the_department_in_chromium` (`field_day.mjs`, a real server):
//! enroll an empty app through its page with a one-time code; an interview, a questionnaire with
//! a wrong answer shown at its field then corrected, an evaluation grid, save and new three times;
//! sync; a conflict with a second device resolved in the page; a bundle downloaded and uploaded
//! into a second app; the records on the department's dashboard.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};
use common::{A1, App};
use fieldsync::TestServer;
use fieldsync_client_core::{FieldValue, Filter, Store, SyncOptions, sync::sync};
use fieldsync_protocol::auth::Role;
use fieldsync_protocol::template::Template;
use serde_json::{Value, json};
use uuid::Uuid;

/// Chromium and playwright-core's `index.mjs` (installed with `npm ci` when missing).
fn tools() -> Result<(String, PathBuf)> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    ensure!(
        Path::new(&chromium).exists(),
        "Chromium is needed (tests/browser.rs at the top level installs it)"
    );
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser");
    if !top.join("node_modules/playwright-core").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&top)
            .status()
            .context("npm is needed for the browser test")?;
        ensure!(status.success(), "npm ci in {} failed", top.display());
    }
    let playwright = top
        .join("node_modules/playwright-core/index.mjs")
        .canonicalize()?;
    Ok((chromium, playwright))
}

/// Every screenshot the summary names exists and is no blank page.
fn check_shots(out: &Path, summary: &Value) -> Result<()> {
    for shot in summary["shots"].as_array().context("shots")? {
        let name = shot.as_str().context("name")?;
        let len = std::fs::metadata(out.join(name))?.len();
        assert!(len > 10_000, "{name} is {len} bytes");
    }
    Ok(())
}

#[test]
fn a_field_worker_records_in_chromium() -> Result<()> {
    let (chromium, playwright) = tools()?;
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("app-browser/seeded");
    let _ = std::fs::remove_dir_all(&out);

    let app = App::start()?;
    let output = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/app.mjs"))
        .args([app.launch_url().as_str(), A1])
        .arg(&out)
        .env("CHROMIUM", &chromium)
        .env("PLAYWRIGHT", &playwright)
        .output()
        .context("node is needed for the browser test")?;
    if !output.status.success() {
        bail!(
            "the browser script failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let summary: Value = serde_json::from_slice(
        output
            .stdout
            .split(|b| *b == b'\n')
            .rfind(|l| l.starts_with(b"{"))
            .context("no summary printed")?,
    )?;
    assert_eq!(summary["cspViolations"], serde_json::json!([]), "{summary}");
    assert_eq!(summary["headerBackground"], "rgb(155, 28, 28)", "{summary}");
    assert_eq!(
        summary["homeUrl"],
        format!("{}/", app.base),
        "the secret left the address"
    );
    assert_eq!(summary["villages"], 2);
    assert_eq!(summary["recordShowsNote"], true, "{summary}");
    assert!(
        summary["problemAtField"]
            .as_str()
            .is_some_and(|p| p.contains("为必填项")),
        "{summary}"
    );
    assert!(
        summary["photoFlash"]
            .as_str()
            .is_some_and(|f| f.contains("已添加 1 个文件：三会一课记录.png")),
        "{summary}"
    );
    assert_eq!(summary["photoWidth"], 4, "the photo shows: {summary}");
    assert!(
        summary["photoState"]
            .as_str()
            .is_some_and(|s| s.contains("等待上传")),
        "{summary}"
    );
    assert_eq!(summary["english"], "Villages");

    let interviews = app.records("interview")?;
    assert_eq!(interviews.len(), 1);
    let FieldValue::Text(note) = &interviews[0].fields["notes"] else {
        panic!("{:?}", interviews[0].fields)
    };
    assert_eq!(note.chars().count(), 500);
    assert_eq!(
        summary["recordUrl"],
        format!("/r/{}", interviews[0].header.id)
    );
    assert_eq!(app.records("questionnaire")?.len(), 1);
    check_shots(&out, &summary)?;
    let reviews = app.records("document_review")?;
    assert_eq!(reviews.len(), 1);
    let files = app.store()?.attachments_of(reviews[0].header.id)?;
    assert_eq!(files.len(), 1);
    assert_eq!(
        (files[0].name.as_str(), files[0].media_type.as_str()),
        ("三会一课记录.png", "image/png")
    );
    assert_eq!(summary["shots"].as_array().map(Vec::len), Some(16));
    Ok(())
}

/// The built-in 届中分析 template with one more question, as a department may add: at most two
/// of four answers (a rule the browser cannot check, so a wrong answer reaches the app).
fn midterm_with_priorities() -> Result<Template> {
    let source = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../protocol/templates/midterm.toml"),
    )?;
    let question = r#"[[kinds.questionnaire.fields]]
name = "q_priorities"
type = "multi_choice"
max_selected = 2
label.zh = "您认为班子最需要加强哪些方面？（最多选两项）"
label.en = "What should the team improve most? (two at most)"
choices = [
  { value = "economy",  zh = "发展集体经济", en = "The collective economy" },
  { value = "service",  zh = "服务群众", en = "Serving villagers" },
  { value = "openness", zh = "村务公开", en = "Open village affairs" },
  { value = "unity",    zh = "团结协作", en = "Working together" },
]

[kinds.evaluation]
"#;
    ensure!(
        source.contains("\n[kinds.evaluation]\n"),
        "the template moved"
    );
    Ok(Template::parse(&source.replacen(
        "\n[kinds.evaluation]\n",
        &format!("\n{question}"),
        1,
    ))?)
}

/// Runs a browser script with its settings; every line it prints with a `step` is answered
/// (one JSON line on its stdin) by `answer`; returns the last other JSON line, its summary.
fn drive(
    script: &str,
    settings: &Value,
    mut answer: impl FnMut(&Value) -> Result<Value>,
) -> Result<Value> {
    let (chromium, playwright) = tools()?;
    let mut child = Command::new("node")
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/browser")
                .join(script),
        )
        .arg(settings.to_string())
        .env("CHROMIUM", &chromium)
        .env("PLAYWRIGHT", &playwright)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("node is needed for the browser test")?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let stdout = BufReader::new(child.stdout.take().context("stdout")?);
    let mut stderr = child.stderr.take().context("stderr")?;
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let (mut printed, mut summary) = (String::new(), None);
    for line in stdout.lines() {
        let line = line?;
        printed.push_str(&line);
        printed.push('\n');
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if v.get("step").is_some() {
            match answer(&v) {
                Ok(reply) => writeln!(stdin, "{reply}")?,
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(e.context(format!("answering {v}")));
                }
            }
        } else {
            summary = Some(v);
        }
    }
    drop(stdin);
    let status = child.wait()?;
    let errors = errors.join().unwrap_or_default();
    if !status.success() {
        bail!("the browser script failed:\n{printed}\n{errors}");
    }
    summary.with_context(|| format!("no summary printed:\n{printed}\n{errors}"))
}

#[test]
fn a_field_day_from_enrollment_to_the_department_in_chromium() -> Result<()> {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("app-browser/field-day");
    let _ = std::fs::remove_dir_all(&out);
    let server = TestServer::start()?;
    // The department: the campaign, its villages and members, a work group for village A1.
    let mut department = Store::open_in_memory()?;
    let campaign = common::seed_with(&mut department, &midterm_with_priorities()?)?;
    let place = department
        .list(&Filter {
            kind: Some("place".into()),
            ..Default::default()
        })?
        .into_iter()
        .find(|r| r.fields.get("code") == Some(&FieldValue::Str(A1.into())))
        .context("village A1")?
        .header
        .id;
    let group = department.create(
        "work_group",
        campaign,
        "campaign",
        &[
            ("name", FieldValue::Str("第一工作组".into())),
            ("villages", FieldValue::Str(place.to_string())),
        ],
    )?;
    let mut t = server.connect(&department)?;
    sync(&mut department, &mut t, &SyncOptions::default())?;
    server.wait_merged()?;
    let worker = server.add_person("王组长", Role::Worker, Some(group))?;
    let code = server.code_for(worker)?;
    // A colleague of the same group on another device.
    let mut colleague = Store::open_in_memory()?;
    let mut ct = server.enroll(&mut colleague, "李干事", Role::Worker, Some(group))?;
    let head = server.add_person("组织部王科长", Role::Admin, None)?;
    let dashboard_code = server.code_for(head)?;

    let app = App::start_empty()?;
    let second = App::start_empty()?;
    let settings = json!({
        "launch": app.launch_url(),
        "secondLaunch": second.launch_url(),
        "server": server.url(),
        "code": code,
        "dashboardCode": dashboard_code,
        "campaign": campaign,
        "village": A1,
        "out": out,
    });
    let summary = drive("field_day.mjs", &settings, |step| {
        ensure!(step["step"] == "second-device-edits", "{step}");
        let id: Uuid = step["record"].as_str().context("record")?.parse()?;
        sync(&mut colleague, &mut ct, &SyncOptions::default())?;
        colleague.set(id, "interviewer", FieldValue::Str("赵干事".into()))?;
        let r = sync(&mut colleague, &mut ct, &SyncOptions::default())?;
        ensure!(r.pushed > 0, "the colleague's edit was not uploaded: {r:?}");
        Ok(json!({}))
    })?;
    std::fs::write(out.join("summary.json"), summary.to_string())?;
    let shown = |key: &str| summary[key].as_str().unwrap_or_default().to_string();

    assert_eq!(summary["cspViolations"], json!([]), "{summary}");
    assert_eq!(summary["firstStartUrl"], format!("{}/", app.base));
    assert_eq!(summary["firstStartOffersEnroll"], true, "{summary}");
    assert!(
        shown("firstStartWelcome").starts_with("本机尚未登记。请点“登记本机”"),
        "{summary}"
    );
    assert_eq!(summary["firstStartErrors"], 0, "no error on a first start");
    assert_eq!(
        summary["templateNotice"], 0,
        "the first forms are no news: {summary}"
    );
    assert!(
        shown("enrolled").starts_with("本机已登记。已上传 0 条修改，已下载"),
        "{summary}"
    );
    assert_eq!(summary["villages"], 1, "the group's one village: {summary}");
    assert_eq!(summary["campaignTitle"], "应用测试届中分析");
    assert_eq!(summary["interviewShowsNote"], true, "{summary}");
    // The wrong answer: said at its field and above the form, what was typed kept, the
    // address still the form's.
    assert_eq!(
        summary["wrongAtField"], "最多选 2 项（现选 3 项）",
        "{summary}"
    );
    assert!(
        shown("wrongSummary").contains("有 1 处需要修改，未保存"),
        "{summary}"
    );
    assert_eq!(summary["wrongUrl"], format!("/v/{A1}/k/questionnaire/new"));
    assert_eq!(summary["wrongKeptSuggestion"], "希望多开群众会");
    assert_eq!(summary["wrongKeptCategory"], true);
    assert_eq!(summary["gridRows"], 2, "A1's two members: {summary}");
    assert_eq!(summary["gridHeader"], "姓名 满意 基本满意 不满意");
    let evaluation = shown("evaluationPage");
    assert!(
        evaluation.contains("张一：满意") && evaluation.contains("王二：不满意"),
        "{evaluation}"
    );
    for (i, step) in summary["saveAndNew"]
        .as_array()
        .context("saveAndNew")?
        .iter()
        .enumerate()
    {
        assert_eq!(
            step["count"],
            format!("已保存，本次共录入 {} 份", i + 1),
            "{summary}"
        );
        assert_eq!(step["categoryKept"], true, "{summary}");
        assert_eq!(step["answersCleared"], true, "{summary}");
    }
    assert_eq!(summary["saveAndNew"].as_array().map(Vec::len), Some(3));
    assert!(shown("firstSync").starts_with("已上传 "), "{summary}");
    assert!(
        shown("conflictSync").contains("1 条记录有冲突待处理"),
        "{summary}"
    );
    assert_eq!(summary["conflictsOnHome"], "1");
    assert_eq!(
        summary["conflictHeading"],
        "谈心谈话 2026-05-18 村集体经济收入不高，群众希望发展产业项目。村集体",
        "named once, by its kind: {summary}"
    );
    let mut values: Vec<String> = serde_json::from_value(summary["conflictValues"].clone())?;
    values.sort();
    assert_eq!(values, ["王组长", "赵干事"], "{summary}");
    assert!(
        shown("resolved").contains("冲突已解决：已写入新值"),
        "{summary}"
    );
    assert_eq!(summary["conflictsLeft"], 1, "none waiting: {summary}");
    assert!(
        shown("resolvedSync").starts_with("已上传 1 条修改"),
        "{summary}"
    );
    assert_eq!(summary["conflictsAfterSync"], "0");
    assert_eq!(summary["bundleName"], "fieldsync.fsb");
    assert!(
        shown("imported").starts_with("已导入：新修改 "),
        "{summary}"
    );
    assert!(!shown("imported").contains("新修改 0 条"), "{summary}");
    assert_eq!(summary["secondVillages"], 1, "{summary}");
    assert_eq!(summary["secondShowsNote"], true, "{summary}");
    assert_eq!(
        summary["dashboardSearchLinks"].as_u64().map(|n| n > 0),
        Some(true),
        "{summary}"
    );
    assert_eq!(summary["dashboardShowsNote"], true, "{summary}");
    assert_eq!(summary["dashboardShowsInterviewer"], true, "{summary}");
    check_shots(&out, &summary)?;
    assert_eq!(summary["shots"].as_array().map(Vec::len), Some(42));
    for (page, wider) in summary["phoneOverflow"].as_object().context("overflow")? {
        assert_eq!(wider, false, "{page} is wider than a 390 px phone");
    }

    // What the device saved.
    let id: Uuid = shown("interview").parse()?;
    let note = "村集体经济收入不高，群众希望发展产业项目。"
        .repeat(25)
        .chars()
        .take(500)
        .collect::<String>();
    let interviews = app.records("interview")?;
    assert_eq!(interviews.len(), 1);
    assert_eq!(
        interviews[0].fields["notes"],
        FieldValue::Text(note.clone())
    );
    let questionnaires = app.records("questionnaire")?;
    assert_eq!(questionnaires.len(), 4, "the wrong answer saved nothing");
    let categories: Vec<_> = questionnaires
        .iter()
        .map(|q| q.fields["respondent_category"].clone())
        .collect();
    assert_eq!(
        categories
            .iter()
            .filter(|c| **c == FieldValue::Str("villager".into()))
            .count(),
        3
    );
    let corrected = questionnaires
        .iter()
        .find(|q| q.header.id.to_string() == shown("questionnaire"))
        .context("the corrected questionnaire")?;
    assert_eq!(
        corrected.fields["q_priorities"],
        FieldValue::Str("economy,service".into())
    );
    let evaluations = app.records("evaluation")?;
    let FieldValue::Map(grid) = &evaluations[0].fields["member_ratings"] else {
        panic!("{:?}", evaluations[0].fields)
    };
    assert_eq!(grid.len(), 2, "{grid:?}");
    assert_eq!(app.store()?.pending_upload()?, 0, "everything uploaded");

    // The server: one value, no conflict, every record there; the colleague's device agrees.
    server.wait_merged()?;
    let merged = server.get_json(&format!("/v1/records/{id}"))?;
    assert_eq!(merged["conflicts"], 0, "{merged}");
    assert_eq!(merged["fields"]["interviewer"], "王组长、赵干事、李干事");
    assert_eq!(merged["fields"]["notes"], note.as_str());
    let conflicts = server.get_json(&format!("/v1/records/{id}/conflicts"))?;
    assert_eq!(conflicts["conflicts"], json!([]), "{conflicts}");
    let on_server = server.get_json(&format!(
        "/v1/records?campaign={campaign}&kind=questionnaire"
    ))?;
    assert_eq!(on_server.as_array().map(Vec::len), Some(4), "{on_server}");
    let evaluations =
        server.get_json(&format!("/v1/records?campaign={campaign}&kind=evaluation"))?;
    assert_eq!(
        evaluations.as_array().map(Vec::len),
        Some(1),
        "{evaluations}"
    );
    sync(&mut colleague, &mut ct, &SyncOptions::default())?;
    assert!(colleague.conflicts(id)?.is_empty());
    assert_eq!(
        colleague.get(id)?.fields["interviewer"],
        FieldValue::Str("王组长、赵干事、李干事".into())
    );
    // The second app holds what the bundle carried.
    let there = second.store()?.get(id)?;
    assert_eq!(there.fields["notes"], FieldValue::Text(note));
    assert_eq!(second.records("questionnaire")?.len(), 4);
    Ok(())
}
