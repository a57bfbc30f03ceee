//! End-to-end sync of concurrent work: real server on a loopback port, real SQLite stores in temp dirs; what two devices wrote merges or shows as a conflict.

use anyhow::Result;
use fieldsync::TestServer;
use fieldsync_client_core::{FieldValue, RecordHeader, singleton_id};

mod common;
use common::{Device, VILLAGE, campaign, s, text};

#[test]
fn a_record_made_offline_reaches_a_second_device_and_the_server() -> Result<()> {
    let server = TestServer::start()?;
    let mut a = Device::new()?;
    let mut b = Device::new()?;
    let id = a.store.create(
        "interview",
        campaign(),
        VILLAGE,
        &[
            ("interviewee", s("王建国")),
            ("position", s("书记")),
            ("notes", text("班子团结，但集体经济收入偏低。")),
        ],
    )?;
    assert_eq!(
        a.store.pending_upload()?,
        2,
        "genesis and the first edit wait to upload"
    );

    let report = a.sync(&server.url())?;
    assert_eq!(report.pushed, 2);
    assert_eq!(a.store.pending_upload()?, 0);

    let report = b.sync(&server.url())?;
    assert_eq!(report.received, 2);
    let rec = b.store.get(id)?;
    assert_eq!(rec.header.kind, "interview");
    assert_eq!(rec.header.scope, VILLAGE);
    assert_eq!(rec.fields["interviewee"], s("王建国"));
    assert_eq!(rec.fields["notes"], text("班子团结，但集体经济收入偏低。"));
    assert_eq!(rec.heads, a.store.get(id)?.heads);

    server.wait_merged()?;
    let merged = server.get_json(&format!("/v1/records/{id}"))?;
    assert_eq!(merged["fields"]["position"], "书记");
    assert_eq!(merged["fields"]["notes"], "班子团结，但集体经济收入偏低。");
    assert_eq!(merged["up_to_date"], true);
    assert_eq!(merged["problem"], serde_json::Value::Null);
    Ok(())
}

#[test]
fn concurrent_edits_to_different_fields_both_survive() -> Result<()> {
    let server = TestServer::start()?;
    let mut a = Device::new()?;
    let mut b = Device::new()?;
    let id = a
        .store
        .create("finding", campaign(), VILLAGE, &[("category", s("党建"))])?;
    a.sync(&server.url())?;
    b.sync(&server.url())?;

    a.store.set(id, "status", s("整改中"))?;
    b.store.set(id, "owner", s("李明"))?;
    a.sync(&server.url())?;
    b.sync(&server.url())?;
    a.sync(&server.url())?;

    for d in [&a, &b] {
        let r = d.store.get(id)?;
        assert_eq!(r.fields["status"], s("整改中"));
        assert_eq!(r.fields["owner"], s("李明"));
        assert_eq!(r.fields["category"], s("党建"));
        assert_eq!(r.conflicts, 0);
    }
    assert_eq!(a.store.get(id)?.heads, b.store.get(id)?.heads);
    Ok(())
}

#[test]
fn concurrent_chinese_text_edits_merge_character_by_character() -> Result<()> {
    let server = TestServer::start()?;
    let mut a = Device::new()?;
    let mut b = Device::new()?;
    let id = a.store.create(
        "interview",
        campaign(),
        VILLAGE,
        &[("notes", text("村里道路硬化已完成。"))],
    )?;
    a.sync(&server.url())?;
    b.sync(&server.url())?;

    // A inserts at the front, B appends and edits in the middle, both offline.
    a.store
        .edit(id, |e| e.splice_text("notes", 0, 0, "【张书记】"))?;
    b.store.edit(id, |e| {
        e.append_text("notes", "集体经济收入偏低，需要发展产业。")?;
        e.splice_text("notes", 4, 2, "改造")
    })?;
    a.sync(&server.url())?;
    b.sync(&server.url())?;
    a.sync(&server.url())?;

    let want = "【张书记】村里道路改造已完成。集体经济收入偏低，需要发展产业。";
    assert_eq!(a.store.get(id)?.fields["notes"], text(want));
    assert_eq!(b.store.get(id)?.fields["notes"], text(want));
    server.wait_merged()?;
    assert_eq!(
        server.get_json(&format!("/v1/records/{id}"))?["fields"]["notes"],
        want
    );

    // A position past the end of the text is refused with a clear error.
    let err = a
        .store
        .edit(id, |e| e.splice_text("notes", 1000, 0, "x"))
        .unwrap_err();
    assert!(err.to_string().contains("past the end"), "{err}");
    Ok(())
}

#[test]
fn a_conflict_is_shown_with_both_values_and_authors_until_resolved() -> Result<()> {
    let server = TestServer::start()?;
    let mut leader = Device::new()?;
    let mut member = Device::new()?;
    // The village assessment is a singleton: both create it offline, neither has synced.
    let header = RecordHeader {
        id: singleton_id(campaign(), "assessment", VILLAGE),
        kind: "assessment".into(),
        campaign: campaign(),
        scope: VILLAGE.into(),
    };
    leader.store.ensure(&header, &[("rating", s("好"))])?;
    member.store.ensure(
        &header,
        &[("rating", s("正常")), ("reasons", text("产业发展较慢"))],
    )?;
    leader.sync(&server.url())?;
    member.sync(&server.url())?;
    leader.sync(&server.url())?;

    let id = header.id;
    assert_eq!(
        leader.store.list(&Default::default())?.len(),
        1,
        "one record, not two"
    );
    for d in [&leader, &member] {
        let rec = d.store.get(id)?;
        assert_eq!(rec.conflicts, 1);
        assert_eq!(rec.fields["reasons"], text("产业发展较慢"));
        let conflicts = d.store.conflicts(id)?;
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].field, "rating");
        let mut values: Vec<(FieldValue, String)> = conflicts[0]
            .values
            .iter()
            .map(|v| (v.value.clone(), v.actor.clone()))
            .collect();
        values.sort_by_key(|x| x.0.to_json().to_string());
        let mut want = vec![
            (s("好"), leader.store.actor().to_hex_string()),
            (s("正常"), member.store.actor().to_hex_string()),
        ];
        want.sort_by_key(|x| x.0.to_json().to_string());
        assert_eq!(values, want);
        assert!(
            conflicts[0]
                .values
                .iter()
                .all(|v| v.time.unwrap_or(0) > 1_700_000_000_000)
        );
    }
    server.wait_merged()?;
    let on_server = server.get_json(&format!("/v1/records/{id}/conflicts"))?;
    assert_eq!(on_server["conflicts"][0]["field"], "rating");
    assert_eq!(
        on_server["conflicts"][0]["values"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    leader.store.resolve(id, "rating", s("正常"))?;
    leader.sync(&server.url())?;
    member.sync(&server.url())?;
    for d in [&leader, &member] {
        assert!(d.store.conflicts(id)?.is_empty());
        assert_eq!(d.store.get(id)?.fields["rating"], s("正常"));
        assert_eq!(d.store.get(id)?.conflicts, 0);
    }
    server.wait_merged()?;
    let merged = server.get_json(&format!("/v1/records/{id}"))?;
    assert_eq!(merged["conflicts"], 0);
    assert_eq!(merged["fields"]["rating"], "正常");
    Ok(())
}

#[test]
fn deleting_is_a_tombstone_that_syncs() -> Result<()> {
    let server = TestServer::start()?;
    let mut a = Device::new()?;
    let mut b = Device::new()?;
    let id = a.store.create(
        "meeting",
        campaign(),
        VILLAGE,
        &[("participants", FieldValue::Int(23))],
    )?;
    a.sync(&server.url())?;
    b.sync(&server.url())?;
    b.store.delete(id)?;
    b.sync(&server.url())?;
    a.sync(&server.url())?;
    assert!(a.store.get(id)?.deleted);
    assert!(a.store.list(&Default::default())?.is_empty());
    let all = a.store.list(&fieldsync_client_core::Filter {
        include_deleted: true,
        ..Default::default()
    })?;
    assert_eq!(all.len(), 1);
    server.wait_merged()?;
    assert_eq!(
        server.get_json(&format!("/v1/records/{id}"))?["deleted"],
        true
    );
    Ok(())
}

#[test]
fn a_change_delivered_twice_is_stored_and_applied_once() -> Result<()> {
    let server = TestServer::start()?;
    let mut a = Device::new()?;
    let mut b = Device::new()?;
    let id = a.store.create(
        "interview",
        campaign(),
        VILLAGE,
        &[("notes", text("第一次"))],
    )?;
    let batch = a
        .store
        .outbox_batch(0, 1 << 20)?
        .expect("something to push");
    let mut t = server.connect(&a.store)?;
    use fieldsync_client_core::Transport;
    let first = t.push(&batch.request)?;
    let second = t.push(&batch.request)?;
    assert_eq!((first.stored, first.duplicates), (2, 0));
    assert_eq!((second.stored, second.duplicates), (0, 2));
    assert_eq!(first.head, second.head);

    // The same page applied twice to a store changes it once.
    b.sync(&server.url())?;
    let heads = b.store.get(id)?.heads;
    let again = b.store.apply_records(&batch.request.records, true)?;
    assert_eq!(again.new_changes, 0);
    assert_eq!(again.known_changes, 2);
    assert_eq!(b.store.get(id)?.heads, heads);
    assert_eq!(server.get_json("/v1/status")?["changes"], 2);
    Ok(())
}
