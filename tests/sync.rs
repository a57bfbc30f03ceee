//! End-to-end sync: real server on a loopback port, real SQLite stores in temp dirs.

use std::path::PathBuf;

use anyhow::Result;
use fieldsync::{
    TestServer,
    proxy::{Cut, Proxy},
};
use fieldsync_client_core::{
    FieldValue, HttpTransport, RecordHeader, Store, SyncError, SyncOptions, TransportError,
    singleton_id, sync::sync,
};
use uuid::Uuid;

struct Device {
    _dir: tempfile::TempDir,
    path: PathBuf,
    store: Store,
}

impl Device {
    fn new() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("device.sqlite3");
        let store = Store::open(&path)?;
        Ok(Device {
            _dir: dir,
            path,
            store,
        })
    }

    fn sync(&mut self, url: &str) -> Result<fieldsync_client_core::SyncReport> {
        let mut t = fieldsync::connect(url, &self.store)?;
        Ok(sync(&mut self.store, &mut t, &SyncOptions::default())?)
    }

    /// Syncs with `server` through another address (a proxy in front of it).
    fn sync_via(
        &mut self,
        server: &TestServer,
        url: &str,
    ) -> Result<fieldsync_client_core::SyncReport> {
        let mut t = HttpTransport::new(url)?.with_token(server.token_for(&self.store)?);
        Ok(sync(&mut self.store, &mut t, &SyncOptions::default())?)
    }
}

const VILLAGE: &str = "350102001";

fn campaign() -> Uuid {
    Uuid::from_u128(0x2026_1122)
}

fn s(v: &str) -> FieldValue {
    FieldValue::Str(v.into())
}

fn text(v: &str) -> FieldValue {
    FieldValue::Text(v.into())
}

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

#[test]
fn a_push_cut_mid_body_resumes_without_resending_what_was_acknowledged() -> Result<()> {
    let server = TestServer::start()?;
    let proxy = Proxy::start(server.addr)?;
    let mut a = Device::new()?;
    for i in 0..40 {
        a.store.create(
            "questionnaire",
            campaign(),
            VILLAGE,
            &[(
                "answers",
                text(&format!("第{i}份问卷：对村两委班子总体满意。").repeat(20)),
            )],
        )?;
    }
    // No retries within the sync: the cut ends it (tests/bad_line.rs has a sync that goes on
    // after cuts).
    let options = SyncOptions {
        push_batch_bytes: 8 << 10,
        push_retries: 0,
        ..Default::default()
    };
    // Let the first connections through, then cut one in the middle of a request body.
    let token = server.token_for(&a.store)?;
    let mut t = HttpTransport::new(&proxy.url())?.with_token(&token);
    let first = a.store.outbox_batch(0, options.push_batch_bytes)?.unwrap();
    use fieldsync_client_core::Transport;
    t.push(&first.request)?;
    a.store.mark_pushed(&first.hashes)?;
    let acknowledged = first.hashes.len() as u64;
    let before = a.store.pending_upload()?;

    proxy.cut_next(
        Cut {
            upstream_after: Some(600),
            downstream_after: None,
        },
        1,
    );
    let mut t = HttpTransport::new(&proxy.url())?.with_token(&token);
    let err = sync(&mut a.store, &mut t, &options).unwrap_err();
    match &err {
        SyncError::Transport(e, waiting) => {
            assert!(e.is_retryable(), "{e}");
            assert_eq!(*waiting, before, "a cut request acknowledges nothing");
        }
        other => panic!("expected a transport error, got {other}"),
    }
    assert!(err.to_string().contains("nothing was lost"), "{err}");
    assert_eq!(server.get_json("/v1/status")?["changes"], acknowledged);

    let report = sync(
        &mut a.store,
        &mut HttpTransport::new(&proxy.url())?.with_token(&token),
        &options,
    )?;
    assert_eq!(
        report.pushed, before,
        "only what was not acknowledged is sent again"
    );
    assert_eq!(report.duplicates, 0);
    assert_eq!(a.store.pending_upload()?, 0);
    assert_eq!(server.get_json("/v1/status")?["changes"], 80);
    Ok(())
}

#[test]
fn a_pull_cut_mid_response_resumes_from_the_last_applied_page() -> Result<()> {
    let server = TestServer::start()?;
    let proxy = Proxy::start(server.addr)?;
    let mut a = Device::new()?;
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(a.store.create(
            "interview",
            campaign(),
            VILLAGE,
            &[(
                "notes",
                text(&format!("第{i}次谈话记录，群众反映村务公开不及时。").repeat(30)),
            )],
        )?);
    }
    a.sync(&server.url())?;

    let mut b = Device::new()?;
    let options = SyncOptions {
        page_bytes: 16 << 10,
        ..Default::default()
    };
    // First page arrives whole, the second response is cut after a few hundred bytes.
    let token = server.token_for(&b.store)?;
    let mut t = HttpTransport::new(&proxy.url())?.with_token(&token);
    let err = {
        // One good page by hand, then a cut connection for the rest of the sync.
        let q = fieldsync_protocol::wire::PullQuery {
            device: b.store.device_id().to_string(),
            after: 0,
            after_hash: None,
            max_bytes: Some(options.page_bytes),
            include_own: false,
        };
        use fieldsync_client_core::Transport;
        let page = t.pull(&q)?;
        assert!(page.more);
        b.store.apply_pull(&page)?;
        proxy.cut_next(
            Cut {
                upstream_after: None,
                downstream_after: Some(900),
            },
            1,
        );
        sync(
            &mut b.store,
            &mut HttpTransport::new(&proxy.url())?.with_token(&token),
            &options,
        )
        .unwrap_err()
    };
    assert!(
        matches!(err, SyncError::Transport(TransportError::Interrupted(_), _)),
        "{err}"
    );
    let cursor_after_cut = b.store.cursor()?;
    assert!(
        cursor_after_cut.seq > 0,
        "the page applied before the cut stays applied"
    );

    let report = sync(
        &mut b.store,
        &mut HttpTransport::new(&proxy.url())?.with_token(&token),
        &options,
    )?;
    assert_eq!(b.store.count()?, 30);
    assert_eq!(
        report.received + cursor_after_cut.seq,
        60,
        "no change received twice"
    );
    for id in ids {
        assert_eq!(b.store.get(id)?.heads, a.store.get(id)?.heads);
    }
    Ok(())
}

/// A transport that breaks the connection on its `fail_at`-th pull (counting from 1).
struct BreaksOnPull {
    inner: HttpTransport,
    pulls: usize,
    fail_at: usize,
}

impl fieldsync_client_core::Transport for BreaksOnPull {
    fn push(
        &mut self,
        request: &fieldsync_protocol::wire::PushRequest,
    ) -> Result<fieldsync_protocol::wire::PushResponse, TransportError> {
        self.inner.push(request)
    }

    fn pull(
        &mut self,
        query: &fieldsync_protocol::wire::PullQuery,
    ) -> Result<fieldsync_protocol::wire::PullResponse, TransportError> {
        self.pulls += 1;
        if self.pulls == self.fail_at {
            return Err(TransportError::Interrupted(
                "connection reset (test)".into(),
            ));
        }
        self.inner.pull(query)
    }
}

#[test]
fn pages_received_before_a_broken_connection_are_kept() -> Result<()> {
    // Pull pages are merged while the page before is written: when the connection breaks, the
    // pages that arrived whole must still be written, with the cursor after the last of them.
    let server = TestServer::start()?;
    let mut a = Device::new()?;
    for i in 0..40 {
        a.store.create(
            "interview",
            campaign(),
            VILLAGE,
            &[(
                "notes",
                text(&format!("第{i}次谈话：村集体经济收入。").repeat(40)),
            )],
        )?;
    }
    a.sync(&server.url())?;
    let mut b = Device::new()?;
    let token = server.token_for(&b.store)?;
    let options = SyncOptions {
        page_bytes: 16 << 10,
        ..Default::default()
    };
    // Pages one to four by hand, to know where page four ends.
    let mut by_hand = HttpTransport::new(&server.url())?.with_token(token.clone());
    let mut after = (0, None);
    let mut ends = Vec::new();
    let mut records_in_first_four = std::collections::HashSet::new();
    for _ in 0..4 {
        use fieldsync_client_core::Transport;
        let page = by_hand.pull(&fieldsync_protocol::wire::PullQuery {
            device: b.store.device_id().to_string(),
            after: after.0,
            after_hash: after.1.take(),
            max_bytes: Some(options.page_bytes),
            include_own: false,
        })?;
        assert!(page.more, "the test needs more than four pages");
        records_in_first_four.extend(page.records.iter().map(|r| r.id.clone()));
        after = (page.next, page.next_hash.as_ref().map(hex::encode));
        ends.push(page.next);
    }
    let mut breaking = BreaksOnPull {
        inner: HttpTransport::new(&server.url())?.with_token(token.clone()),
        pulls: 0,
        fail_at: 5,
    };
    let err = sync(&mut b.store, &mut breaking, &options).unwrap_err();
    assert!(
        matches!(err, SyncError::Transport(TransportError::Interrupted(_), _)),
        "{err}"
    );
    assert_eq!(
        b.store.cursor()?.seq,
        ends[3],
        "all four pages that arrived are written, the cursor after the fourth"
    );
    // A record cut by a page boundary is written once its last change is in.
    let complete = records_in_first_four.len() as u64;
    assert!(b.store.count()? >= complete - 1 && b.store.count()? <= complete);

    let report = sync(
        &mut b.store,
        &mut HttpTransport::new(&server.url())?.with_token(token),
        &options,
    )?;
    assert_eq!(b.store.count()?, 40);
    assert_eq!(report.received + ends[3], 80, "no change received twice");
    assert_eq!(b.store.waiting_for_dependencies()?, 0);
    Ok(())
}

#[test]
fn a_record_spread_over_many_pull_pages_is_merged_whole() -> Result<()> {
    // One record edited many times: its changes span consecutive pages, so each page holds a
    // record the page before (merged, not yet written) also holds.
    let server = TestServer::start()?;
    let mut a = Device::new()?;
    let id = a.store.create(
        "interview",
        campaign(),
        VILLAGE,
        &[("notes", text("谈话开始。")), ("interviewee", s("王建国"))],
    )?;
    let mut others = Vec::new();
    for round in 0..60 {
        a.store.edit(id, |e| {
            e.append_text(
                "notes",
                &format!("第{round}段：群众反映村务公开不及时，要求整改。"),
            )?;
            e.set("rating", &FieldValue::Int(round))
        })?;
        if round % 10 == 0 {
            others.push(a.store.create(
                "interview",
                campaign(),
                VILLAGE,
                &[("notes", text(&"另一条记录。".repeat(400)))],
            )?);
        }
    }
    a.sync(&server.url())?;

    let mut b = Device::new()?;
    let options = SyncOptions {
        page_bytes: 16 << 10,
        ..Default::default()
    };
    let mut t = fieldsync::connect(&server.url(), &b.store)?;
    let report = sync(&mut b.store, &mut t, &options)?;
    // The edited record has changes in every page.
    assert!(report.pull_requests >= 3, "{report:?}");
    assert_eq!(report.waiting, 0);
    let (mine, theirs) = (b.store.get(id)?, a.store.get(id)?);
    assert_eq!(mine.heads, theirs.heads);
    assert_eq!(mine.fields, theirs.fields);
    assert_eq!(mine.fields["rating"], FieldValue::Int(59));
    for other in others {
        assert_eq!(b.store.get(other)?.heads, a.store.get(other)?.heads);
    }
    assert_eq!(b.store.count()?, 7);
    Ok(())
}

#[test]
fn changes_arriving_before_their_dependencies_wait_and_are_applied_later() -> Result<()> {
    let server = TestServer::start()?;
    let mut a = Device::new()?;
    let id = a.store.create(
        "finding",
        campaign(),
        VILLAGE,
        &[("text", text("三会一课记录不全"))],
    )?;
    a.store.set(id, "category", s("组织生活"))?;
    a.store
        .edit(id, |e| e.append_text("text", "，缺少2025年第三季度记录"))?;
    let batch = a.store.outbox_batch(0, 1 << 20)?.unwrap();
    let record = &batch.request.records[0];
    assert_eq!(record.changes.len(), 4);

    // Deliver the changes to the server newest first, one push each.
    use fieldsync_client_core::Transport;
    let mut t = server.connect(&a.store)?;
    let mut b = Device::new()?;
    for (i, change) in record.changes.iter().rev().enumerate() {
        let mut one = batch.request.clone();
        one.records[0].changes = vec![change.clone()];
        t.push(&one)?;
        if i == 1 {
            // A second device pulls while the server has only the two newest changes.
            let report = b.sync(&server.url())?;
            assert_eq!(report.received, 2);
            assert_eq!(report.waiting, 2);
            assert_eq!(b.store.waiting_for_dependencies()?, 2);
            assert!(
                b.store.get(id).is_err(),
                "not shown before its genesis arrives"
            );
            server.wait_merged()?;
            let r = server.get_json(&format!("/v1/records/{id}"))?;
            assert_eq!(r["waiting_changes"], 2);
            assert!(r["problem"].as_str().unwrap().contains("waiting"), "{r}");
        }
    }
    server.wait_merged()?;
    let r = server.get_json(&format!("/v1/records/{id}"))?;
    assert_eq!(r["waiting_changes"], 0);
    assert_eq!(
        r["fields"]["text"],
        "三会一课记录不全，缺少2025年第三季度记录"
    );
    assert_eq!(r["fields"]["category"], "组织生活");

    b.sync(&server.url())?;
    assert_eq!(b.store.waiting_for_dependencies()?, 0);
    assert_eq!(b.store.get(id)?.fields["category"], s("组织生活"));
    assert_eq!(b.store.get(id)?.heads, a.store.get(id)?.heads);
    Ok(())
}

#[test]
fn an_up_to_date_device_syncs_in_one_round_trip_under_one_kib() -> Result<()> {
    let server = TestServer::start()?;
    let proxy = Proxy::start(server.addr)?;
    let mut a = Device::new()?;
    for i in 0..20 {
        a.store.create(
            "interview",
            campaign(),
            VILLAGE,
            &[("n", FieldValue::Int(i))],
        )?;
    }
    a.sync_via(&server, &proxy.url())?;
    let mut b = Device::new()?;
    b.sync_via(&server, &proxy.url())?;

    proxy.reset_counts();
    let connections = proxy.connections();
    let report = b.sync_via(&server, &proxy.url())?;
    assert_eq!(report.push_requests, 0);
    assert_eq!(report.pull_requests, 1);
    assert_eq!(proxy.connections() - connections, 1);
    let total = proxy.bytes_up() + proxy.bytes_down();
    assert!(total < 1024, "an idle sync moved {total} bytes");
    assert!(total > 100, "the proxy counted nothing ({total} bytes)");
    Ok(())
}

#[test]
fn a_server_restored_from_backup_is_noticed_and_refilled_by_its_devices() -> Result<()> {
    let mut server = TestServer::start()?;
    let data = server.data_dir().to_path_buf();
    let backup = tempfile::tempdir()?;
    let mut a = Device::new()?;
    let mut b = Device::new()?;
    let early = a.store.create(
        "meeting",
        campaign(),
        VILLAGE,
        &[("topic", s("届中分析动员会"))],
    )?;
    a.sync(&server.url())?;
    b.sync(&server.url())?;
    // Back up the server (stopped, so the copy is consistent).
    server.stop()?;
    for f in std::fs::read_dir(&data)? {
        let f = f?;
        std::fs::copy(f.path(), backup.path().join(f.file_name()))?;
    }
    let mut server = TestServer::start_in(&data)?;
    let late = a.store.create(
        "finding",
        campaign(),
        VILLAGE,
        &[("text", text("后备干部储备不足"))],
    )?;
    a.sync(&server.url())?;
    b.sync(&server.url())?;
    assert!(b.store.get(late).is_ok());
    server.stop()?;

    // The disk dies; the backup comes back; a third device pushes first, so the restored log
    // grows past the devices' cursors again.
    for f in std::fs::read_dir(&data)? {
        std::fs::remove_file(f?.path())?;
    }
    for f in std::fs::read_dir(backup.path())? {
        let f = f?;
        std::fs::copy(f.path(), data.join(f.file_name()))?;
    }
    // The administrator declares the restore (`fieldsync-server admin restored`): a new log
    // epoch, and a week in which devices may hand back other devices' changes without tags.
    tokio::runtime::Runtime::new()?.block_on(async {
        let storage = fieldsync_server::open_admin_storage(&data).await?;
        storage.declare_restored().await?;
        storage.close().await;
        anyhow::Ok(())
    })?;
    let server = TestServer::start_in(&data)?;
    let mut c = Device::new()?;
    c.store.create(
        "interview",
        campaign(),
        VILLAGE,
        &[("n", FieldValue::Int(1))],
    )?;
    c.store.create(
        "interview",
        campaign(),
        VILLAGE,
        &[("n", FieldValue::Int(2))],
    )?;
    c.sync(&server.url())?;

    let report = b.sync(&server.url())?;
    assert!(
        report.server_reset,
        "b must notice that the server lost its log"
    );
    assert!(
        report.pushed >= 2,
        "b re-pushes what it had, including a's lost finding"
    );
    c.sync(&server.url())?;
    assert_eq!(c.store.get(late)?.fields["text"], text("后备干部储备不足"));
    assert!(c.store.get(early).is_ok());
    let report = a.sync(&server.url())?;
    assert!(report.server_reset);
    server.wait_merged()?;
    assert_eq!(
        server.get_json(&format!("/v1/records/{late}"))?["fields"]["text"],
        "后备干部储备不足"
    );
    assert_eq!(a.store.count()?, 4);
    Ok(())
}

#[test]
fn a_device_restored_from_backup_writes_with_a_new_actor_and_gets_its_lost_changes_back()
-> Result<()> {
    let server = TestServer::start()?;
    let mut a = Device::new()?;
    let first = a.store.create(
        "interview",
        campaign(),
        VILLAGE,
        &[("notes", text("备份前"))],
    )?;
    a.sync(&server.url())?;
    let backup = a.path.with_extension("backup");
    copy_db(&a.path, &backup)?;
    let old_actor = a.store.actor().clone();
    a.store
        .edit(first, |e| e.append_text("notes", "，备份后补充"))?;
    let lost = a.store.create(
        "finding",
        campaign(),
        VILLAGE,
        &[("text", text("备份后新增问题"))],
    )?;
    a.sync(&server.url())?;

    // Restore the backup over the store and open it again.
    a.store = Store::open_in_memory()?; // closes the file
    copy_db(&backup, &a.path)?;
    a.store = Store::open(&a.path)?;
    assert_ne!(
        *a.store.actor(),
        old_actor,
        "a restored store must not reuse its actor"
    );
    assert!(a.store.get(lost).is_err());

    // It keeps working: a new edit on the old record, then a sync.
    a.store
        .edit(first, |e| e.append_text("notes", "；恢复后再记"))?;
    let report = a.sync(&server.url())?;
    assert!(
        report.recovered_own,
        "the device notices it lost changes it had pushed"
    );
    assert_eq!(a.store.get(lost)?.fields["text"], text("备份后新增问题"));
    // Both appends were made at the same place concurrently (the restored store never saw the
    // first); Automerge orders such inserts by actor id, so either order is a correct merge.
    let notes = a.store.get(first)?.fields["notes"].clone();
    assert!(
        notes == text("备份前，备份后补充；恢复后再记")
            || notes == text("备份前；恢复后再记，备份后补充"),
        "{notes:?}"
    );

    let mut b = Device::new()?;
    b.sync(&server.url())?;
    assert_eq!(b.store.get(first)?.heads, a.store.get(first)?.heads);
    Ok(())
}

/// Copies a SQLite store with its write-ahead log, as a backup of a quiescent app does.
fn copy_db(from: &std::path::Path, to: &std::path::Path) -> Result<()> {
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", to.display()));
    }
    std::fs::copy(from, to)?;
    let wal = PathBuf::from(format!("{}-wal", from.display()));
    if wal.exists() {
        std::fs::copy(&wal, format!("{}-wal", to.display()))?;
    }
    Ok(())
}
