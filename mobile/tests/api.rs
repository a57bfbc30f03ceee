//! fieldsync-mobile's API from Rust, against a real server: what the Kotlin tests check from
//! the JVM, plus what is easier to see from here (the field app's page, bundles, cancellation
//! at a known point).

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{Result, bail};
use common::{A1, Campaign, block_on};
use fieldsync_mobile::{FieldStore, FieldsyncError, RecordFilter, SyncProgress, SyncUpdate};

fn interview(note: &str) -> HashMap<String, String> {
    HashMap::from([
        ("date".into(), "2026-11-20".into()),
        ("interviewer".into(), "王组长".into()),
        ("interviewee_type".into(), "党员".into()),
        ("notes".into(), note.into()),
    ])
}

fn enrolled(c: &Campaign, dir: &std::path::Path, name: &str) -> Result<Arc<FieldStore>> {
    let store = FieldStore::open(dir.join(format!("{name}.sqlite3")).display().to_string())?;
    block_on(store.clone().enroll(
        c.server.url(),
        c.worker_code(name)?,
        format!("{name}的手机"),
        None,
    ))?;
    block_on(store.clone().sync(None))?;
    Ok(store)
}

#[test]
fn two_phones_record_sync_and_resolve_a_conflict() -> Result<()> {
    let c = Campaign::start()?;
    let dir = tempfile::tempdir()?;
    let a = enrolled(&c, dir.path(), "赵")?;
    let b = enrolled(&c, dir.path(), "钱")?;

    let status = a.status()?;
    assert!(status.enrolled);
    assert_eq!(status.campaign, Some(c.id.to_string()));
    let forms = a.forms()?;
    let form = forms
        .iter()
        .find(|f| f.kind == "interview")
        .expect("interview form");
    assert_eq!(form.label_zh, "谈心谈话");
    let kind = form
        .fields
        .iter()
        .find(|f| f.name == "interviewee_type")
        .unwrap();
    assert!(kind.required);
    assert!(kind.choices.iter().any(|ch| ch.zh == "党员"));
    assert!(
        forms.iter().all(|f| f.kind != "member"),
        "reference kinds are not forms"
    );

    // A form with problems saves nothing and names each one.
    let mut bad = interview("群众反映村务公开不及时。");
    bad.remove("interviewer");
    bad.insert("interviewee_type".into(), "外星人".into());
    match a.create_record("interview".into(), A1.into(), bad) {
        Err(FieldsyncError::InvalidInput { problems, .. }) => {
            let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
            assert!(fields.contains(&"interviewee_type"), "{problems:?}");
        }
        other => bail!("expected InvalidInput, got {other:?}"),
    }
    match a.create_record("interview".into(), A1.into(), {
        let mut m = interview("笔记");
        m.remove("interviewer");
        m
    }) {
        Err(FieldsyncError::InvalidInput { problems, .. }) => {
            assert!(
                problems
                    .iter()
                    .any(|p| p.field == "interviewer" && p.code == "required")
            );
        }
        other => bail!("expected InvalidInput, got {other:?}"),
    }
    assert_eq!(a.status()?.waiting_changes, 0, "nothing was saved");

    let id = a.create_record(
        "interview".into(),
        A1.into(),
        interview("群众反映村务公开不及时，希望每月公布一次收支。"),
    )?;
    assert!(a.status()?.waiting_changes > 0);
    let summary = block_on(a.clone().sync(None))?;
    assert!(summary.uploaded > 0, "{summary:?}");
    block_on(b.clone().sync(None))?;
    let seen = b.get_record(id.clone())?;
    let notes = seen.fields.iter().find(|f| f.name == "notes").unwrap();
    assert_eq!(
        notes.text_zh,
        "群众反映村务公开不及时，希望每月公布一次收支。"
    );
    let who = seen
        .fields
        .iter()
        .find(|f| f.name == "interviewee_type")
        .unwrap();
    assert_eq!(
        (who.text_zh.as_str(), who.text_en.as_str()),
        ("党员", "Party member")
    );
    assert_eq!(seen.review_state, "pending");
    let listed = b.list_records(RecordFilter {
        kind: Some("interview".into()),
        ..Default::default()
    })?;
    assert_eq!(listed.iter().map(|r| &r.id).collect::<Vec<_>>(), vec![&id]);

    // Both change who was talked to at once: both values are kept and shown.
    a.edit_record(
        id.clone(),
        HashMap::from([("interviewee_type".into(), "群众代表".into())]),
    )?;
    b.edit_record(
        id.clone(),
        HashMap::from([("interviewee_type".into(), "后备干部".into())]),
    )?;
    block_on(a.clone().sync(None))?;
    block_on(b.clone().sync(None))?;
    block_on(a.clone().sync(None))?;
    let conflicts = a.record_conflicts(id.clone())?;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    let mut values: Vec<&str> = conflicts[0]
        .values
        .iter()
        .map(|v| v.text_zh.as_str())
        .collect();
    values.sort();
    assert_eq!(values, vec!["后备干部", "群众代表"]);
    assert_eq!(
        conflicts[0]
            .values
            .iter()
            .filter(|v| v.by_this_device)
            .count(),
        1
    );
    assert_eq!(a.status()?.conflicted_records, 1);
    let pick = conflicts[0]
        .values
        .iter()
        .position(|v| v.text_zh == "群众代表")
        .unwrap();
    a.resolve_conflict(id.clone(), "interviewee_type".into(), pick as u32)?;
    block_on(a.clone().sync(None))?;
    block_on(b.clone().sync(None))?;
    for s in [&a, &b] {
        let r = s.get_record(id.clone())?;
        assert_eq!(r.conflicts, 0);
        let v = r
            .fields
            .iter()
            .find(|f| f.name == "interviewee_type")
            .unwrap();
        assert_eq!(v.text_zh, "群众代表");
    }
    let history = b.record_history(id.clone())?;
    assert!(history[0].created);
    assert!(
        history
            .iter()
            .any(|h| h.changes.iter().any(|c| c.field == "interviewee_type"
                && c.before_zh == "党员"
                && (c.after_zh == "群众代表" || c.after_zh == "后备干部")))
    );
    Ok(())
}

/// Cancels the sync on its first upload progress.
struct CancelOnFirstUpload {
    store: Arc<FieldStore>,
    seen: Mutex<Vec<SyncUpdate>>,
}

impl SyncProgress for CancelOnFirstUpload {
    fn on_progress(&self, update: SyncUpdate) {
        if update.phase == "uploading" && update.done > 0 {
            self.store.cancel_sync();
        }
        self.seen.lock().unwrap().push(update);
    }
}

#[test]
fn a_cancelled_sync_loses_nothing_and_the_next_one_finishes() -> Result<()> {
    let c = Campaign::start()?;
    let dir = tempfile::tempdir()?;
    let a = enrolled(&c, dir.path(), "孙")?;
    let b = enrolled(&c, dir.path(), "李")?;
    let n = 1500;
    let note =
        "村党组织书记带头走访困难群众，班子分工明确，但村务监督委员会作用发挥不够。".repeat(8);
    for i in 0..n {
        a.create_record(
            "interview".into(),
            A1.into(),
            interview(&format!("{i}：{note}")),
        )?;
    }
    let waiting = a.status()?.waiting_changes;
    let progress = Arc::new(CancelOnFirstUpload {
        store: a.clone(),
        seen: Mutex::new(Vec::new()),
    });
    match block_on(a.clone().sync(Some(progress.clone()))) {
        Err(FieldsyncError::Cancelled { zh, .. }) => assert!(zh.contains("取消"), "{zh}"),
        other => bail!("expected Cancelled, got {other:?}"),
    }
    let after = a.status()?.waiting_changes;
    assert!(
        after > 0 && after < waiting,
        "some sent, some waiting: {after} of {waiting}"
    );
    assert!(!a.is_syncing());
    let phases: Vec<String> = progress
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|u| u.phase.clone())
        .collect();
    assert_eq!(phases.first().map(String::as_str), Some("connecting"));

    let done = block_on(a.clone().sync(None))?;
    assert_eq!(done.uploaded, after, "the rest, not again what was sent");
    assert_eq!(a.status()?.waiting_changes, 0);
    block_on(b.clone().sync(None))?;
    let got = b.list_records(RecordFilter {
        kind: Some("interview".into()),
        ..Default::default()
    })?;
    assert_eq!(got.len(), n);
    Ok(())
}

#[test]
fn a_wrong_key_is_refused_before_anything_is_read() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("secret.sqlite3").display().to_string();
    let store = FieldStore::open_encrypted(path.clone(), vec![7; 32])?;
    let device = store.device_id()?;
    store.close_store();
    assert!(matches!(
        store.status(),
        Err(FieldsyncError::Storage { .. })
    ));
    match FieldStore::open_encrypted(path.clone(), vec![8; 32]) {
        Err(FieldsyncError::WrongKey { .. }) => {}
        other => bail!("expected WrongKey, got {:?}", other.map(|_| ())),
    }
    assert!(matches!(
        FieldStore::open_encrypted(path.clone(), vec![7; 31]),
        Err(FieldsyncError::InvalidInput { .. })
    ));
    assert_eq!(
        FieldStore::open_encrypted(path, vec![7; 32])?.device_id()?,
        device
    );
    Ok(())
}

#[test]
fn bundles_carry_records_between_phones_and_the_app_serves_the_store() -> Result<()> {
    let c = Campaign::start()?;
    let dir = tempfile::tempdir()?;
    let a = enrolled(&c, dir.path(), "周")?;
    let b = enrolled(&c, dir.path(), "吴")?;
    let id = a.create_record(
        "interview".into(),
        A1.into(),
        interview("离线交换的谈话记录。"),
    )?;

    let state = dir.path().join("b.state").display().to_string();
    let bundle = dir.path().join("a-to-b.fieldsync").display().to_string();
    b.write_bundle_state(state.clone())?;
    let written = a.export_bundle(bundle.clone(), Some(state))?;
    assert_eq!(written.records, 1, "only what b lacks");
    let imported = b.import_bundle(bundle.clone())?;
    assert!(imported.new_changes > 0);
    assert_eq!(
        b.import_bundle(bundle.clone())?.new_changes,
        0,
        "twice is harmless"
    );
    assert_eq!(b.get_record(id.clone())?.kind, "interview");
    std::fs::write(&bundle, b"not a bundle")?;
    assert!(matches!(
        b.import_bundle(bundle),
        Err(FieldsyncError::InvalidInput { .. })
    ));

    let url = a.start_app(0)?;
    assert!(
        url.starts_with("http://127.0.0.1:") && url.contains("/?secret="),
        "{url}"
    );
    assert_eq!(a.start_app(0)?, url, "started once");
    let client = reqwest::blocking::Client::builder()
        .cookie_store(true)
        .build()?;
    let page = client.get(&url).send()?;
    assert_eq!(page.status(), 200);
    let text = page.text()?;
    assert!(
        text.contains("青龙社区"),
        "the home page lists the village: {text}"
    );
    let base = url.split("/?").next().unwrap().to_string();
    let stranger = reqwest::blocking::get(format!("{base}/"))?;
    assert_eq!(stranger.status(), 403, "no secret, no page");
    a.stop_app();
    assert!(a.app_url().is_none());
    assert!(reqwest::blocking::get(&url).is_err(), "stopped");
    Ok(())
}

#[test]
fn a_revoked_phone_is_told_and_starts_over_wiped() -> Result<()> {
    let c = Campaign::start()?;
    let dir = tempfile::tempdir()?;
    let a = enrolled(&c, dir.path(), "冯")?;
    let device = a.device_id()?;
    a.create_record("interview".into(), A1.into(), interview("吊销前写的记录。"))?;
    let (status, _) = c.server.request(
        reqwest::Method::POST,
        &format!("/v1/admin/devices/{device}/revoke"),
        None,
        None,
    )?;
    assert_eq!(status, 200);
    match block_on(a.clone().sync(None)) {
        Err(FieldsyncError::Revoked { zh, .. }) => assert!(zh.contains("已清除"), "{zh}"),
        other => bail!("expected Revoked, got {other:?}"),
    }
    // The object keeps working on the wiped file: a new device, not enrolled, nothing held.
    let status = a.status()?;
    assert!(!status.enrolled);
    assert_eq!(status.records, 0);
    assert_ne!(status.device, device);
    assert!(matches!(
        block_on(a.clone().sync(None)),
        Err(FieldsyncError::NotEnrolled { .. })
    ));
    Ok(())
}
