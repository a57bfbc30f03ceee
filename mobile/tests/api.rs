//! fieldsync-mobile's API from Rust, against a real server: what the Kotlin tests check from
//! the JVM, plus what is easier to see from here (the field app's page, bundles, cancellation
//! at a known point, a server that goes away and comes back, refused enrollment, whoami and the
//! status fields, deletion and the list filters, the wipe).

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{Result, bail};
use common::{A1, Campaign, block_on};
use fieldsync::fixtures::B1;
use fieldsync_client_core::{Store, SyncOptions, sync::sync};
use fieldsync_mobile::{FieldStore, FieldsyncError, RecordFilter, SyncProgress, SyncUpdate};
use fieldsync_protocol::template::Template;

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
    // Once the server has merged both values, a sync learns who wrote the other one: the
    // conflict and the history name 钱, as the field app does.
    c.server.wait_merged()?;
    block_on(a.clone().sync(None))?;
    let conflicts = a.record_conflicts(id.clone())?;
    for v in &conflicts[0].values {
        let who = (v.written_by_zh.as_str(), v.written_by_en.as_str());
        if v.by_this_device {
            assert_eq!(who, ("本机", "this device"));
        } else {
            assert_eq!(who, ("钱", "钱"));
        }
    }
    let history = a.record_history(id.clone())?;
    assert_eq!(
        (history[0].written_by_zh.as_str(), history[0].by_this_device),
        ("（记录建立）", false)
    );
    assert!(
        history
            .iter()
            .any(|h| h.by_this_device && h.written_by_zh == "本机")
    );
    assert!(
        history.iter().any(|h| h.written_by_zh == "钱"),
        "{history:?}"
    );
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

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64
}

fn field_text(r: &fieldsync_mobile::RecordView, name: &str) -> String {
    r.fields
        .iter()
        .find(|f| f.name == name)
        .map(|f| f.text_zh.clone())
        .unwrap_or_default()
}

#[test]
fn a_sync_while_the_server_is_away_loses_nothing_and_the_record_arrives_when_it_is_back()
-> Result<()> {
    let mut c = Campaign::start()?;
    let dir = tempfile::tempdir()?;
    let a = enrolled(&c, dir.path(), "郑")?;
    let b = enrolled(&c, dir.path(), "王")?;
    let note = "服务器停机时在村里写下的谈话记录。";
    let id = a.create_record("interview".into(), A1.into(), interview(note))?;
    let waiting = a.status()?.waiting_changes;
    assert!(waiting > 0);
    let last_sync = a.status()?.last_sync_ms;
    assert!(last_sync.is_some());

    c.server.stop()?;
    match block_on(a.clone().sync(None)) {
        Err(FieldsyncError::Network { zh, en }) => {
            assert!(
                zh.contains("没有丢失任何数据")
                    && zh.contains(&format!("还有 {waiting} 项修改待上传")),
                "{zh}"
            );
            assert!(
                en.contains("nothing was lost") && en.contains(&format!("{waiting} changes wait")),
                "{en}"
            );
        }
        other => bail!("expected Network, got {other:?}"),
    }
    let status = a.status()?;
    assert_eq!(status.waiting_changes, waiting, "everything still waits");
    assert_eq!(
        status.last_sync_ms, last_sync,
        "a failed sync is not a sync"
    );
    assert!(status.enrolled, "a server away is no reason to forget it");
    assert!(!a.is_syncing());
    assert_eq!(field_text(&a.get_record(id.clone())?, "notes"), note);

    c.server.restart()?;
    let done = block_on(a.clone().sync(None))?;
    assert_eq!(done.uploaded, waiting, "{done:?}");
    assert_eq!(a.status()?.waiting_changes, 0);
    assert!(a.status()?.last_sync_ms > last_sync);
    block_on(b.clone().sync(None))?;
    assert_eq!(field_text(&b.get_record(id)?, "notes"), note);
    Ok(())
}

#[test]
fn enrolling_with_a_used_or_a_wrong_code_is_refused_with_the_servers_reason() -> Result<()> {
    let c = Campaign::start()?;
    let dir = tempfile::tempdir()?;
    let code = c.worker_code("陈")?;
    let first = FieldStore::open(dir.path().join("first.sqlite3").display().to_string())?;
    block_on(
        first
            .clone()
            .enroll(c.server.url(), code.clone(), "陈的手机".into(), None),
    )?;
    let second = FieldStore::open(dir.path().join("second.sqlite3").display().to_string())?;
    match block_on(
        second
            .clone()
            .enroll(c.server.url(), code, "陈的另一部手机".into(), None),
    ) {
        Err(FieldsyncError::Refused {
            status,
            code,
            reason,
            zh,
            en,
        }) => {
            assert_eq!((status, code.as_str()), (409, "code_used"));
            assert!(reason.contains("登记码已使用过"), "{reason}");
            assert!(
                zh.contains("服务器拒绝了请求") && zh.contains(&reason),
                "{zh}"
            );
            assert!(en.contains("the server refused the request"), "{en}");
        }
        other => bail!("expected Refused, got {other:?}"),
    }
    match block_on(second.clone().enroll(
        c.server.url(),
        "0000-0000-0000".into(),
        "陈的另一部手机".into(),
        None,
    )) {
        Err(FieldsyncError::Refused {
            status,
            code,
            reason,
            ..
        }) => {
            assert_eq!((status, code.as_str()), (401, "invalid_code"));
            assert!(reason.contains("登记码不正确"), "{reason}");
        }
        other => bail!("expected Refused, got {other:?}"),
    }
    let status = second.status()?;
    assert!(!status.enrolled && status.server.is_none(), "{status:?}");
    assert!(matches!(
        block_on(second.clone().whoami()),
        Err(FieldsyncError::NotEnrolled { .. })
    ));
    assert!(first.status()?.enrolled);
    Ok(())
}

#[test]
fn whoami_the_last_sync_and_the_template_notice() -> Result<()> {
    let c = Campaign::start()?;
    let dir = tempfile::tempdir()?;
    let a = FieldStore::open(dir.path().join("卫.sqlite3").display().to_string())?;
    let fresh = a.status()?;
    assert!(!fresh.enrolled);
    assert_eq!((fresh.last_sync_ms, fresh.campaign), (None, None));

    let me = block_on(a.clone().enroll(
        c.server.url(),
        c.worker_code("卫")?,
        "卫的手机".into(),
        None,
    ))?;
    assert_eq!(me.device, a.device_id()?);
    assert_eq!(
        (me.person_name.as_str(), me.role.as_str()),
        ("卫", "worker")
    );
    assert_eq!(me.work_group, Some(c.group_a.to_string()));
    assert_eq!(me.campaign, Some(c.id.to_string()));
    assert!(me.places.iter().any(|p| p == A1), "{me:?}");
    assert!(!me.places.iter().any(|p| p == B1), "{me:?}");
    assert!(me.may_write && !me.sees_everything);
    assert_eq!(block_on(a.clone().whoami())?, me);

    let status = a.status()?;
    assert!(status.enrolled);
    assert_eq!(status.server, Some(c.server.url()));
    assert_eq!(status.campaign, Some(c.id.to_string()));
    assert_eq!(status.last_sync_ms, None, "enrolled, never synced");
    let before = now_ms();
    block_on(a.clone().sync(None))?;
    let synced = a.status()?.last_sync_ms.expect("a sync is noted");
    assert!((before..=now_ms()).contains(&synced), "{synced}");

    // The forms the device now holds are news once, until the user has seen them.
    assert_eq!(a.status()?.new_template_version, Some(1));
    a.acknowledge_template(1)?;
    assert_eq!(a.status()?.new_template_version, None);

    // The department adds a question: version 2 reaches the phone and is news again.
    let mut department = Store::open(dir.path().join("department.sqlite3"))?;
    let mut t = c.server.connect(&department)?;
    sync(&mut department, &mut t, &SyncOptions::default())?;
    let v1 = department.template(c.id)?.expect("the campaign's template");
    assert_eq!(v1.version, 1);
    let source = v1.source.replacen("version = 1", "version = 2", 1)
        + "\n[[kinds.interview.fields]]\nname = \"location\"\ntype = \"text\"\n\
           label.zh = \"谈话地点\"\nlabel.en = \"Location\"\n";
    department.publish_template(c.id, &Template::parse(&source)?)?;
    sync(&mut department, &mut t, &SyncOptions::default())?;
    block_on(a.clone().sync(None))?;
    assert_eq!(a.status()?.new_template_version, Some(2));
    let form = a.form("interview".into())?;
    assert!(form.fields.iter().any(|f| f.name == "location"));
    a.acknowledge_template(2)?;
    assert_eq!(a.status()?.new_template_version, None);
    Ok(())
}

#[test]
fn deleted_records_held_changes_and_the_village_and_conflict_filters() -> Result<()> {
    let c = Campaign::start()?;
    let dir = tempfile::tempdir()?;
    let a = enrolled(&c, dir.path(), "蒋")?;
    let b = enrolled(&c, dir.path(), "沈")?;
    let kept = a.create_record("interview".into(), A1.into(), interview("留下的记录。"))?;
    let gone = a.create_record("interview".into(), A1.into(), interview("要删掉的记录。"))?;
    block_on(a.clone().sync(None))?;
    block_on(b.clone().sync(None))?;
    let interviews = |filter: RecordFilter| -> Result<Vec<String>> {
        let mut ids: Vec<String> = a
            .list_records(RecordFilter {
                kind: Some("interview".into()),
                ..filter
            })?
            .into_iter()
            .map(|r| r.id)
            .collect();
        ids.sort();
        Ok(ids)
    };
    let mut both = vec![kept.clone(), gone.clone()];
    both.sort();
    assert_eq!(interviews(RecordFilter::default())?, both);

    // Deleted: out of the list, back with include_deleted, and the deletion syncs.
    a.delete_record(gone.clone())?;
    assert_eq!(interviews(RecordFilter::default())?, vec![kept.clone()]);
    assert_eq!(
        interviews(RecordFilter {
            include_deleted: true,
            ..Default::default()
        })?,
        both
    );
    assert!(a.get_record(gone.clone())?.deleted);
    assert!(a.status()?.waiting_changes > 0);
    block_on(a.clone().sync(None))?;
    block_on(b.clone().sync(None))?;
    assert!(b.get_record(gone.clone())?.deleted);
    let on_b = b.list_records(RecordFilter {
        kind: Some("interview".into()),
        ..Default::default()
    })?;
    assert_eq!(on_b.iter().map(|r| &r.id).collect::<Vec<_>>(), vec![&kept]);

    // A record in the other work group's village: kept here, held back from the upload.
    assert_eq!(a.status()?.held_changes, 0);
    let elsewhere = a.create_record(
        "interview".into(),
        B1.into(),
        interview("在别组的村写的记录。"),
    )?;
    let held = a.status()?.held_changes;
    assert!(held > 0);
    assert_eq!(a.status()?.waiting_changes, held);
    let summary = block_on(a.clone().sync(None))?;
    assert_eq!((summary.uploaded, summary.held), (0, held), "{summary:?}");
    assert!(
        summary.zh.contains("不在本机可上传的范围内"),
        "{}",
        summary.zh
    );
    assert_eq!(
        (a.status()?.waiting_changes, a.status()?.held_changes),
        (held, held)
    );
    assert_eq!(
        interviews(RecordFilter {
            village: Some(B1.into()),
            ..Default::default()
        })?,
        vec![elsewhere.clone()]
    );
    assert_eq!(
        interviews(RecordFilter {
            village: Some(A1.into()),
            ..Default::default()
        })?,
        vec![kept.clone()]
    );

    // Both phones change the kept record at once: only it is conflicted.
    assert!(
        interviews(RecordFilter {
            conflicted: true,
            ..Default::default()
        })?
        .is_empty()
    );
    a.edit_record(
        kept.clone(),
        HashMap::from([("interviewee_type".into(), "群众代表".into())]),
    )?;
    b.edit_record(
        kept.clone(),
        HashMap::from([("interviewee_type".into(), "后备干部".into())]),
    )?;
    block_on(a.clone().sync(None))?;
    block_on(b.clone().sync(None))?;
    block_on(a.clone().sync(None))?;
    assert_eq!(
        interviews(RecordFilter {
            conflicted: true,
            ..Default::default()
        })?,
        vec![kept.clone()]
    );
    assert!(
        interviews(RecordFilter {
            conflicted: true,
            village: Some(B1.into()),
            ..Default::default()
        })?
        .is_empty()
    );
    assert_eq!(a.status()?.conflicted_records, 1);
    Ok(())
}

#[test]
fn wipe_leaves_nothing_of_the_records_in_the_file_and_unenrolls() -> Result<()> {
    let c = Campaign::start()?;
    let dir = tempfile::tempdir()?;
    let a = enrolled(&c, dir.path(), "韩")?;
    let device = a.device_id()?;
    let secret = "只在本机的谈话：村干部反映某某问题，尚未同步。";
    let id = a.create_record("interview".into(), A1.into(), interview(secret))?;
    // A recording attached to it (the phones attach through the field app; the store is the
    // same file).
    let recording = "录音里的话：只在本机。".repeat(50);
    {
        let mut same_file = Store::open(a.path())?;
        same_file.attach(
            uuid::Uuid::parse_str(&id)?,
            "recording",
            "谈话.m4a",
            Some("audio/mp4"),
            recording.as_bytes(),
        )?;
    }
    let url = a.start_app(0)?;

    a.wipe()?;
    let status = a.status()?;
    assert!(!status.enrolled && status.server.is_none(), "{status:?}");
    assert_eq!(
        (status.records, status.waiting_changes, status.last_sync_ms),
        (0, 0, None)
    );
    assert_eq!(status.campaign, None, "the settings went with it");
    assert_ne!(status.device, device, "a new device");
    assert!(matches!(
        a.get_record(id.clone()),
        Err(FieldsyncError::InvalidInput { .. }) | Err(FieldsyncError::Storage { .. })
    ));
    assert!(matches!(
        block_on(a.clone().sync(None)),
        Err(FieldsyncError::NotEnrolled { .. })
    ));
    assert!(a.app_url().is_none(), "the field app stopped");
    assert!(reqwest::blocking::get(&url).is_err());

    // Nothing of the record or its recording is left in the file or its write-ahead log.
    for suffix in ["", "-wal"] {
        let file = format!("{}{suffix}", a.path());
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        for text in [secret, recording.as_str()] {
            let needle = text.as_bytes();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{file} still holds {text:?}"
            );
        }
    }
    let reopened = FieldStore::open(a.path())?;
    assert_eq!(reopened.device_id()?, status.device);
    assert!(!reopened.status()?.enrolled);
    Ok(())
}
