//! Sync over broken connections: pushes and pulls cut mid-way resume without losing or resending what was acknowledged; changes may arrive before their dependencies.

use anyhow::Result;
use fieldsync::{
    TestServer,
    proxy::{Cut, Proxy},
};
use fieldsync_client_core::{
    FieldValue, HttpTransport, SyncError, SyncOptions, TransportError, sync::sync,
};

mod common;
use common::{Device, VILLAGE, campaign, s, text};

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
    // No retries within the sync: the cut ends it (tests/bad_line.rs has a pull that goes on
    // after cuts).
    let options = SyncOptions {
        page_bytes: 16 << 10,
        pull_retries: 0,
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
            created: false,
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
        pull_retries: 0,
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
            created: false,
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
