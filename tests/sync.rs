//! End-to-end sync of concurrent work: real server on a loopback port, real SQLite stores in temp dirs; what two devices wrote merges or shows as a conflict.

use anyhow::Result;
use fieldsync::TestServer;
use fieldsync_client_core::{
    FieldValue, RecordHeader, SyncOptions, Transport, TransportError, singleton_id, sync::sync,
};
use fieldsync_protocol::wire::{self, PullQuery, PullResponse, PushRequest, PushResponse};

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

/// A transport that keeps what went over it: the pushes as sent, the pages as received.
struct Recording<T> {
    inner: T,
    pushes: Vec<PushRequest>,
    pages: Vec<PullResponse>,
    /// Plays a server that speaks only protocol version 1: it refuses a version-2 push as such
    /// a server does (400 `invalid_body`, "protocol version 2 is not supported"), and does not
    /// know the pull's `created` parameter.
    only_version_1: bool,
    refused: usize,
    /// Alters one byte of every compact creation it passes on (what a device whose genesis
    /// differs from the server's would rebuild).
    garble_created: bool,
}

impl<T: Transport> Recording<T> {
    fn new(inner: T, only_version_1: bool) -> Self {
        Recording {
            inner,
            pushes: Vec::new(),
            pages: Vec::new(),
            only_version_1,
            refused: 0,
            garble_created: false,
        }
    }
}

impl<T: Transport> Transport for Recording<T> {
    fn push(&mut self, request: &PushRequest) -> Result<PushResponse, TransportError> {
        self.pushes.push(request.clone());
        if self.only_version_1 && request.v != wire::PROTOCOL_VERSION {
            self.refused += 1;
            return Err(TransportError::Refused {
                status: 400,
                code: "invalid_body".into(),
                message: format!(
                    "protocol version {} is not supported (this side speaks 1)",
                    request.v
                ),
                hint: None,
                retry_after: None,
            });
        }
        self.inner.push(request)
    }

    fn pull(&mut self, query: &PullQuery) -> Result<PullResponse, TransportError> {
        let mut query = query.clone();
        query.created &= !self.only_version_1;
        let mut page = self.inner.pull(&query)?;
        self.pages.push(page.clone());
        if self.garble_created {
            for created in page.records.iter_mut().filter_map(|r| r.created.as_mut()) {
                created[0] ^= 1;
            }
        }
        Ok(page)
    }
}

/// Five interviews and a meeting made offline, one interview edited after it was made.
fn a_days_work(store: &mut fieldsync_client_core::Store) -> Result<Vec<uuid::Uuid>> {
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(store.create(
            "interview",
            campaign(),
            VILLAGE,
            &[
                ("interviewee", s(&format!("村民{i}"))),
                ("notes", text("群众反映村务公开不及时。")),
            ],
        )?);
    }
    ids.push(store.create("meeting", campaign(), VILLAGE, &[("topic", s("民主评议"))])?);
    store.set(ids[0], "position", s("村委委员"))?;
    Ok(ids)
}

#[test]
fn new_records_travel_in_their_compact_form_both_ways_and_arrive_whole() -> Result<()> {
    let server = TestServer::start()?;
    let mut a = Device::new()?;
    let mut b = Device::new()?;
    let ids = a_days_work(&mut a.store)?;
    let mut up = Recording::new(server.connect(&a.store)?, false);
    let report = sync(&mut a.store, &mut up, &SyncOptions::default())?;
    assert_eq!((report.pushed, report.rejected.len()), (13, 0));
    assert_eq!(a.store.pending_upload()?, 0);
    // One push, version 2: every record's genesis and first change went as `created`; only
    // the later edit is a change.
    assert_eq!(up.pushes.len(), 1);
    let push = &up.pushes[0];
    assert_eq!(push.v, wire::COMPACT_VERSION);
    assert_eq!(push.records.len(), 6);
    assert!(push.records.iter().all(|r| r.created.is_some()));
    let changes: usize = push.records.iter().map(|r| r.changes.len()).sum();
    assert_eq!(changes, 1, "the edit of the first interview");
    // Smaller than the same push with every change whole.
    let mut whole = push.clone();
    for r in &mut whole.records {
        r.expand_creation(&r.header()?)?;
    }
    whole.v = wire::PROTOCOL_VERSION;
    let (compact, full) = (wire::encode(push).len(), wire::encode(&whole).len());
    assert!(compact * 10 < full * 7, "{compact} bytes against {full}");

    let mut down = Recording::new(server.connect(&b.store)?, false);
    let report = sync(&mut b.store, &mut down, &SyncOptions::default())?;
    assert_eq!(report.received, 13);
    let created: usize = down
        .pages
        .iter()
        .flat_map(|p| &p.records)
        .filter(|r| r.created.is_some())
        .count();
    assert_eq!(created, 6, "the server sends creations compact to who asks");
    for id in &ids {
        assert_eq!(b.store.get(*id)?.heads, a.store.get(*id)?.heads);
        assert_eq!(b.store.get(*id)?.fields, a.store.get(*id)?.fields);
    }
    // The server stored the changes themselves: a device that does not ask for the compact
    // form receives them whole, and the records merged.
    let mut c = Device::new()?;
    let mut plain = server.connect(&c.store)?;
    let page = plain.pull(&PullQuery {
        device: c.store.device_id().to_string(),
        after: 0,
        after_hash: None,
        max_bytes: None,
        include_own: false,
        created: false,
    })?;
    assert!(page.records.iter().all(|r| r.created.is_none()));
    let whole_changes: usize = page.records.iter().map(|r| r.changes.len()).sum();
    assert_eq!(whole_changes, 13);
    c.sync(&server.url())?;
    assert_eq!(c.store.get(ids[0])?.fields["position"], s("村委委员"));
    server.wait_merged()?;
    let merged = server.get_json(&format!("/v1/records/{}", ids[0]))?;
    assert_eq!(merged["fields"]["position"], "村委委员");
    assert_eq!(merged["fields"]["notes"], "群众反映村务公开不及时。");
    Ok(())
}

#[test]
fn a_server_that_speaks_only_version_1_gets_the_same_push_again_in_version_1() -> Result<()> {
    let server = TestServer::start()?;
    let mut a = Device::new()?;
    let ids = a_days_work(&mut a.store)?;
    let mut old = Recording::new(server.connect(&a.store)?, true);
    let report = sync(&mut a.store, &mut old, &SyncOptions::default())?;
    // Refused once, then sent whole: nothing acknowledged that the server did not store.
    assert_eq!(old.refused, 1);
    assert_eq!(old.pushes.len(), 2);
    assert_eq!(old.pushes[1].v, wire::PROTOCOL_VERSION);
    assert!(old.pushes[1].records.iter().all(|r| r.created.is_none()));
    assert_eq!((report.pushed, report.push_requests), (13, 1));
    assert!(report.only_version_1);
    assert_eq!(a.store.pending_upload()?, 0);
    // Pages of such a server carry whole changes, and are read as before.
    let mut b = Device::new()?;
    let mut old_down = Recording::new(server.connect(&b.store)?, true);
    let report = sync(&mut b.store, &mut old_down, &SyncOptions::default())?;
    assert_eq!(report.received, 13);
    assert!(
        old_down
            .pages
            .iter()
            .flat_map(|p| &p.records)
            .all(|r| r.created.is_none())
    );
    for id in &ids {
        assert_eq!(b.store.get(*id)?.heads, a.store.get(*id)?.heads);
    }
    Ok(())
}

#[test]
fn a_page_whose_compact_creations_do_not_rebuild_is_asked_for_again_whole() -> Result<()> {
    let server = TestServer::start()?;
    let mut a = Device::new()?;
    let ids = a_days_work(&mut a.store)?;
    a.sync(&server.url())?;
    let mut b = Device::new()?;
    let mut garbling = Recording::new(server.connect(&b.store)?, false);
    garbling.garble_created = true;
    let report = sync(&mut b.store, &mut garbling, &SyncOptions::default())?;
    assert_eq!(report.received, 13);
    // The compact page, then the same page whole; nothing compact after that.
    assert_eq!(garbling.pages.len(), 2);
    assert!(
        garbling.pages[0]
            .records
            .iter()
            .any(|r| r.created.is_some())
    );
    assert!(
        garbling.pages[1]
            .records
            .iter()
            .all(|r| r.created.is_none())
    );
    for id in &ids {
        assert_eq!(b.store.get(*id)?.heads, a.store.get(*id)?.heads);
    }
    Ok(())
}
