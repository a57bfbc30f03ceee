//! Work that is not finished yet, over a real app on 127.0.0.1:0: the script's autosave keeps
//! a new form's and an edit's draft (never a record, never synced) and a request arriving after
//! the save does not bring the saved values back; a sync that waits on a silent server runs in
//! the background while the pages answer and records are saved.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use common::{A1, App};
use fieldsync_client_core::FieldValue;

fn interview(notes: &str) -> Vec<(&'static str, String)> {
    vec![
        ("f.date", "2026-05-18".into()),
        ("f.interviewer", "王组长".into()),
        ("f.interviewee_type", "other".into()),
        ("f.notes", notes.into()),
    ]
}

fn with(
    mut fields: Vec<(&'static str, String)>,
    extra: &[(&'static str, &str)],
) -> Vec<(&'static str, String)> {
    fields.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    fields
}

fn post(
    app: &App,
    path: &str,
    fields: &[(&'static str, String)],
) -> Result<reqwest::blocking::Response> {
    let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    app.post(path, &pairs)
}

fn form_id(page: &str) -> Result<String> {
    let at = page
        .find(r#"name="form_id" value=""#)
        .context("no form id")?
        + 22;
    Ok(page[at..].split('"').next().context("form id")?.to_string())
}

#[test]
fn autosave_keeps_drafts_and_a_late_one_does_not_return_after_the_save() -> Result<()> {
    let app = App::start()?;
    let before = app.store()?.pending_upload()?;
    let path = format!("/v/{A1}/k/interview/new");
    let page = app.page(&path)?;
    assert!(
        page.contains(r#"data-autosave="/v/"#),
        "the form asks for autosave"
    );
    assert!(page.contains(r#"src="/app.js""#));
    let id = form_id(&page)?;

    // The script's request while typing: 204, a draft, no record.
    let typing = with(
        interview("谈到一半"),
        &[("action", "draft"), ("autosave", "1"), ("form_id", &id)],
    );
    let r = post(&app, &path, &typing)?;
    assert_eq!(r.status(), 204);
    assert!(app.records("interview")?.is_empty());
    assert_eq!(
        app.store()?.pending_upload()?,
        before,
        "a draft does not sync"
    );
    let reopened = app.page(&path)?;
    assert!(reopened.contains("谈到一半") && reopened.contains("已恢复上次未完成的草稿"));

    // Saved, then the autosave that was still on its way arrives: ignored.
    let r = post(
        &app,
        &path,
        &with(interview("谈完了"), &[("action", "save"), ("form_id", &id)]),
    )?;
    assert_eq!(r.status(), 200);
    assert_eq!(app.records("interview")?.len(), 1);
    assert_eq!(post(&app, &path, &typing)?.status(), 204);
    let next = app.page(&path)?;
    assert!(
        !next.contains("谈到一半") && !next.contains("已恢复"),
        "the saved form's late autosave came back as a draft"
    );
    // Another showing of the form autosaves again.
    let other = with(
        interview("第二份"),
        &[
            ("action", "draft"),
            ("autosave", "1"),
            ("form_id", &form_id(&next)?),
        ],
    );
    assert_eq!(post(&app, &path, &other)?.status(), 204);
    assert!(app.page(&path)?.contains("第二份"));

    // An edit keeps its own draft; the record is unchanged until the save.
    let record = app.records("interview")?[0].header.id;
    let edit = format!("/r/{record}/edit");
    let eid = form_id(&app.page(&edit)?)?;
    let half = with(
        interview("谈完了，补充一半"),
        &[("action", "draft"), ("autosave", "1"), ("form_id", &eid)],
    );
    assert_eq!(post(&app, &edit, &half)?.status(), 204);
    assert_eq!(
        app.store()?.get(record)?.fields["notes"],
        FieldValue::Text("谈完了".into())
    );
    let restored = app.page(&edit)?;
    assert!(restored.contains("谈完了，补充一半") && restored.contains("已恢复上次未保存的修改"));
    // Without the script: the button keeps the draft too.
    let kept = post(
        &app,
        &edit,
        &with(
            interview("谈完了，补充"),
            &[("action", "draft"), ("form_id", &eid)],
        ),
    )?;
    assert!(kept.text()?.contains("草稿已暂存在本机"));
    let r = post(
        &app,
        &edit,
        &with(
            interview("谈完了，补充完毕"),
            &[("action", "save"), ("form_id", &eid)],
        ),
    )?;
    assert_eq!(r.status(), 200);
    assert_eq!(
        app.store()?.get(record)?.fields["notes"],
        FieldValue::Text("谈完了，补充完毕".into())
    );
    assert_eq!(post(&app, &edit, &half)?.status(), 204);
    assert!(
        !app.page(&edit)?.contains("补充一半"),
        "the late autosave of an edit came back"
    );
    Ok(())
}

#[test]
fn pages_answer_and_records_are_saved_while_a_sync_waits_on_a_silent_server() -> Result<()> {
    // A server that accepts connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0")?;
    let address = format!("http://{}", silent.local_addr()?);
    let app = App::start_with(|store, _| {
        store.set_credentials(&address, "token-of-a-test-device")?;
        Ok(())
    })?;
    let r = app.post("/sync", &[])?;
    assert_eq!(r.status(), 200);
    let home = r.text()?;
    assert!(home.contains(r#"id="sync-progress""#), "{home}");
    assert!(home.contains("正在连接服务器") && home.contains("可以继续录入"));
    assert!(
        home.contains(r#"http-equiv="refresh""#),
        "reloads itself without the script"
    );
    // A second press while it runs starts nothing new.
    assert!(app.post("/sync", &[])?.text()?.contains("sync-progress"));

    // The silent server holds the sync until it is gone: a save that waited for the sync
    // would find it ended.
    let r = post(
        &app,
        &format!("/v/{A1}/k/interview/new"),
        &with(interview("同步时记录"), &[("action", "save")]),
    )?;
    assert_eq!(r.status(), 200);
    assert_eq!(app.records("interview")?.len(), 1);
    let progress: serde_json::Value = app.client.get(app.url("/sync/progress")).send()?.json()?;
    assert_eq!(
        progress["running"], true,
        "a page waited for the sync: {progress}"
    );

    // The server goes away: the sync ends, offline, nothing lost.
    drop(silent);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let p: serde_json::Value = app.client.get(app.url("/sync/progress")).send()?.json()?;
        if p["running"] == false {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the sync never ended");
        std::thread::sleep(Duration::from_millis(100));
    }
    let home = app.page("/")?;
    assert!(home.contains("数据未丢失"), "{home}");
    assert!(!home.contains(r#"http-equiv="refresh""#));
    assert!(app.store()?.pending_upload()? > 0);
    Ok(())
}
