//! Conflicts in the field app (issue 13): every value with who wrote it (this device, the
//! person the server named, or another device by its actor) and when; keeping one; writing a
//! new value instead, read and checked like the edit form; and the choice reaching a second
//! device through a real server.

mod common;

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use common::{A1, App};
use fieldsync::TestServer;
use fieldsync_app::routes::format_ms;
use fieldsync_client_core::bundle::Export;
use fieldsync_client_core::{FieldValue, Store, SyncOptions, sync::sync};
use fieldsync_protocol::auth::Role;
use uuid::Uuid;

fn s(v: &str) -> FieldValue {
    FieldValue::Str(v.into())
}

fn interview() -> BTreeMap<String, FieldValue> {
    BTreeMap::from([
        ("date".to_string(), s("2026-05-18")),
        ("interviewer".to_string(), s("王")),
        ("interviewee_type".to_string(), s("other")),
        ("notes".to_string(), FieldValue::Text("记录".into())),
    ])
}

/// The conflicts page's block for one field.
fn block<'a>(page: &'a str, id: Uuid, field: &str) -> Result<&'a str> {
    let start = page
        .find(&format!("id=\"c-{id}-{field}\""))
        .with_context(|| format!("no block for {field}: {page}"))?;
    let rest = &page[start..];
    let end = rest[1..].find("id=\"c-").map_or(rest.len(), |e| e + 1);
    Ok(&rest[..end])
}

#[test]
fn both_values_show_who_and_when_and_a_new_value_is_checked_then_resolves() -> Result<()> {
    let mut made = None;
    let app = App::start_with(|store, campaign| {
        let id = store.create_form(campaign, "interview", A1, &interview())?;
        let mut other = Store::open_in_memory()?;
        other.import_bundle(&store.export_bundle(&Export::All)?.0)?;
        store.set(id, "interviewer", s("王甲"))?;
        store.set(id, "interviewee_type", s("party_member"))?;
        other.set(id, "interviewer", s("王乙"))?;
        other.set(id, "interviewee_type", s("villager_rep"))?;
        store.import_bundle(&other.export_bundle(&Export::All)?.0)?;
        made = Some((id, other.actor().to_hex_string()));
        Ok(())
    })?;
    let (id, other_actor) = made.context("record")?;
    let values = app.store()?.conflicts(id)?;
    assert_eq!(values.len(), 2, "{values:?}");

    let page = app.page("/conflicts")?;
    let b = block(&page, id, "interviewer")?;
    assert!(b.contains("王甲") && b.contains("王乙"), "{b}");
    let other_short: String = other_actor.chars().take(4).collect();
    assert!(b.contains("本机"), "{b}");
    assert!(b.contains(&format!("另一台设备 ({other_short})")), "{b}");
    for v in &values
        .iter()
        .find(|c| c.field == "interviewer")
        .unwrap()
        .values
    {
        let when = format_ms(v.time.context("a time")?);
        assert!(b.contains(&when), "{when} in {b}");
    }
    assert!(
        !b.contains(&other_actor[..8]),
        "no raw actor id beyond its start: {b}"
    );
    assert!(
        b.contains("写一个新值") && b.contains("name=\"f.interviewer\""),
        "{b}"
    );
    let choice = block(&page, id, "interviewee_type")?;
    assert!(
        choice.contains("党员") && choice.contains("群众代表"),
        "labels: {choice}"
    );
    // The record's history says who by the same rule.
    let record = app.page(&format!("/r/{id}"))?;
    assert!(
        record.contains("本机") && record.contains(&format!("另一台设备 ({other_short})")),
        "{record}"
    );
    let en = app.page("/lang/en")?;
    assert!(en.contains("Villages"));
    let page_en = app.page("/conflicts")?;
    assert!(
        page_en.contains("this device")
            && page_en.contains(&format!("another device ({other_short})"))
            && page_en.contains("Write a new value"),
        "{page_en}"
    );
    app.page("/lang/zh")?;

    // A choice that does not exist: refused by the reading, nothing written.
    let r = app.post(
        &format!("/r/{id}/resolve"),
        &[
            ("field", "interviewee_type"),
            ("f.interviewee_type", "外星人"),
        ],
    )?;
    assert_eq!(r.status(), 422);
    let text = r.text()?;
    let b = block(&text, id, "interviewee_type")?;
    assert!(b.contains("role=\"alert\""), "{b}");
    // Empty, for a required field: refused by the template's check of the whole record.
    let r = app.post(
        &format!("/r/{id}/resolve"),
        &[("field", "interviewer"), ("f.interviewer", " ")],
    )?;
    assert_eq!(r.status(), 422);
    let text = r.text()?;
    let b = block(&text, id, "interviewer")?;
    assert!(b.contains("必填"), "{b}");
    assert_eq!(app.store()?.conflicts(id)?.len(), 2, "nothing written");

    // A new value: the conflict is gone and the record holds it.
    let r = app.post(
        &format!("/r/{id}/resolve"),
        &[("field", "interviewer"), ("f.interviewer", "王丙、刘丁")],
    )?;
    assert_eq!(r.status(), 200);
    let page = r.text()?;
    assert!(page.contains("冲突已解决：已写入新值"), "{page}");
    assert!(!page.contains(&format!("c-{id}-interviewer")), "{page}");
    let store = app.store()?;
    let left = store.conflicts(id)?;
    assert_eq!(
        left.iter().map(|c| c.field.as_str()).collect::<Vec<_>>(),
        vec!["interviewee_type"]
    );
    assert_eq!(store.get(id)?.fields["interviewer"], s("王丙、刘丁"));
    // A choice by its label resolves the other.
    let r = app.post(
        &format!("/r/{id}/resolve"),
        &[
            ("field", "interviewee_type"),
            ("f.interviewee_type", "党员"),
        ],
    )?;
    assert!(r.text()?.contains("没有待处理的冲突"));
    let r = app.store()?.get(id)?;
    assert_eq!(
        (r.conflicts, &r.fields["interviewee_type"]),
        (0, &s("party_member"))
    );
    Ok(())
}

#[test]
fn a_new_value_syncs_and_the_other_device_sees_one_value_and_the_writers_are_named() -> Result<()> {
    let server = TestServer::start()?;
    let app = App::start_with(|store, _| {
        server.enroll(store, "外业测试", Role::Admin, None)?;
        Ok(())
    })?;
    let id = app
        .store()?
        .create_form(app.campaign, "interview", A1, &interview())?;
    app.sync()?;
    let mut other = Store::open_in_memory()?;
    let mut t = server.enroll(&mut other, "李四", Role::Admin, None)?;
    sync(&mut other, &mut t, &SyncOptions::default())?;
    assert!(other.get(id).is_ok());

    app.store()?.set(id, "interviewer", s("王甲"))?;
    other.set(id, "interviewer", s("王乙"))?;
    sync(&mut other, &mut t, &SyncOptions::default())?;
    app.sync()?;
    assert_eq!(app.store()?.conflicts(id)?.len(), 1);
    // Once the server has merged both values, the next sync learns who wrote them.
    server.wait_merged()?;
    app.sync()?;
    let page = app.page("/conflicts")?;
    let b = block(&page, id, "interviewer")?;
    assert!(b.contains("李四") && b.contains("本机"), "{b}");
    assert!(!b.contains("另一台设备"), "{b}");
    let record = app.page(&format!("/r/{id}"))?;
    assert!(
        record.contains("李四"),
        "the history names the writer too: {record}"
    );

    let r = app.post(
        &format!("/r/{id}/resolve"),
        &[("field", "interviewer"), ("f.interviewer", "王丙")],
    )?;
    assert_eq!(r.status(), 200);
    assert!(app.store()?.conflicts(id)?.is_empty());
    let home = app.sync()?;
    assert!(home.contains("已上传 1 条修改"), "{home}");
    sync(&mut other, &mut t, &SyncOptions::default())?;
    assert!(
        other.conflicts(id)?.is_empty(),
        "one value on the other device"
    );
    assert_eq!(other.get(id)?.fields["interviewer"], s("王丙"));
    server.wait_merged()?;
    let on_server = server.get_json(&format!("/v1/records/{id}/conflicts"))?;
    assert_eq!(on_server["conflicts"], serde_json::json!([]), "{on_server}");
    Ok(())
}
