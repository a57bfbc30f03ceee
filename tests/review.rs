//! Review of records, round trip: a leader returns a worker's record with a comment on the
//! dashboard, the worker's device shows the comment, the worker's edit sends it back to 待审核,
//! the leader approves it from the record page, and the device shows 已通过. A worker cannot
//! approve its own record (the push pipeline refuses it), a viewer reviews only where the
//! campaign's template says so, a return needs a reason, and every review is in the audit log.

use anyhow::Result;
use fieldsync::TestServer;
use fieldsync_client_core::{FieldValue, Store, SyncOptions, sync::sync};
use fieldsync_protocol::{approval, auth::Role};
use uuid::Uuid;

const VILLAGE: &str = "510100001";

fn s(v: &str) -> FieldValue {
    FieldValue::Str(v.into())
}

fn get(server: &TestServer, token: &str, path: &str) -> Result<(u16, String)> {
    let r = reqwest::blocking::Client::new()
        .get(format!("{}{path}", server.url()))
        .header("cookie", format!("fieldsync_session={token}"))
        .send()?;
    Ok((r.status().as_u16(), r.text()?))
}

/// Posts a dashboard form as the browser would (same origin), without following the redirect.
fn post(server: &TestServer, token: &str, path: &str, body: &str) -> Result<(u16, String)> {
    let r = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?
        .post(format!("{}{path}", server.url()))
        .header("cookie", format!("fieldsync_session={token}"))
        .header("origin", server.url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()?;
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap_or("").to_string());
    Ok((status, location.unwrap_or(r.text()?)))
}

/// The department sets up a campaign with one village and the work group that covers it.
fn village_and_group(server: &TestServer) -> Result<(Uuid, Uuid)> {
    let campaign = Uuid::now_v7();
    let mut admin = Store::open_in_memory()?;
    let mut ta = server.enroll(&mut admin, "管理员", Role::Admin, None)?;
    let place = admin.create(
        "place",
        campaign,
        VILLAGE,
        &[("code", s(VILLAGE)), ("name", s("甲村"))],
    )?;
    let group = admin.create(
        "work_group",
        campaign,
        "campaign",
        &[("name", s("第一组")), ("villages", s(&place.to_string()))],
    )?;
    sync(&mut admin, &mut ta, &SyncOptions::default())?;
    server.wait_merged()?;
    Ok((campaign, group))
}

#[test]
fn a_returned_record_comes_back_to_the_device_and_is_approved_after_the_fix() -> Result<()> {
    let server = TestServer::start()?;
    let (campaign, group) = village_and_group(&server)?;
    // A worker records a meeting offline and syncs.
    let mut worker = Store::open_in_memory()?;
    let mut tw = server.enroll(&mut worker, "李组员", Role::Worker, Some(group))?;
    sync(&mut worker, &mut tw, &SyncOptions::default())?;
    let id = worker.create(
        "meeting",
        campaign,
        VILLAGE,
        &[("topic", s("党员代表座谈会"))],
    )?;
    assert_eq!(worker.review(id)?.state, approval::State::Pending);
    sync(&mut worker, &mut tw, &SyncOptions::default())?;
    server.wait_merged()?;

    // The leader finds it in the queue, pending.
    let mut leader_store = Store::open_in_memory()?;
    server.enroll(&mut leader_store, "张组长", Role::Leader, Some(group))?;
    let leader = server.token_for(&leader_store)?;
    let queue = format!("/ui/c/{campaign}/review");
    let (status, html) = get(&server, &leader, &queue)?;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("党员代表座谈会"), "{html}");
    assert!(html.contains("待审核 1"), "{html}");
    assert!(
        html.contains(&format!("value=\"{id}\"")),
        "a box to tick: {html}"
    );

    // A return needs a reason.
    let (status, html) = post(
        &server,
        &leader,
        &queue,
        &format!("id={id}&decision=returned"),
    )?;
    assert_eq!(status, 400, "{html}");
    assert!(html.contains("请写明原因"), "{html}");
    // Returned with a comment, back to the queue.
    let (status, to) = post(
        &server,
        &leader,
        &queue,
        &format!(
            "id={id}&decision=returned&comment=%E7%BC%BA%E5%B0%91%E5%8F%82%E4%BC%9A%E4%BA%BA%E6%95%B0&back={queue}%3Fstate%3Dpending"
        ),
    )?;
    assert_eq!(status, 303, "{to}");
    assert_eq!(to, format!("{queue}?state=pending&done=1"));
    let (_, html) = get(&server, &leader, &format!("{queue}?state=returned"))?;
    assert!(
        html.contains("退回修改 1") && html.contains("缺少参会人数"),
        "{html}"
    );

    // The worker's device shows the return and the comment.
    sync(&mut worker, &mut tw, &SyncOptions::default())?;
    let review = worker.review(id)?;
    assert_eq!(review.state, approval::State::Returned);
    assert_eq!(review.comment, "缺少参会人数");
    assert_eq!(review.by, "张组长");
    // The fix sends it back for review, with the comment still there to read.
    worker.set(id, "attendance", FieldValue::Int(23))?;
    let review = worker.review(id)?;
    assert_eq!(review.state, approval::State::Pending);
    assert_eq!(review.comment, "缺少参会人数");
    sync(&mut worker, &mut tw, &SyncOptions::default())?;
    server.wait_merged()?;
    let (_, html) = get(&server, &leader, &format!("/ui/r/{id}"))?;
    assert!(html.contains("review-pending"), "{html}");

    // A viewer reads the state but may not decide.
    let mut viewer_store = Store::open_in_memory()?;
    server.enroll(&mut viewer_store, "部门同志", Role::Viewer, None)?;
    let viewer = server.token_for(&viewer_store)?;
    let (_, html) = get(&server, &viewer, &format!("/ui/r/{id}"))?;
    assert!(
        html.contains("待审核") && !html.contains(&format!("action=\"/ui/r/{id}/review\"")),
        "{html}"
    );
    let (status, _) = post(
        &server,
        &viewer,
        &format!("/ui/r/{id}/review"),
        "decision=approved",
    )?;
    assert_eq!(status, 403);

    // The leader approves it from the record page; the device shows it.
    let (status, to) = post(
        &server,
        &leader,
        &format!("/ui/r/{id}/review"),
        "decision=approved",
    )?;
    assert_eq!((status, to), (303, format!("/ui/r/{id}")));
    sync(&mut worker, &mut tw, &SyncOptions::default())?;
    assert_eq!(worker.review(id)?.state, approval::State::Approved);

    // Every review is in the audit log.
    let audit = server.get_json("/v1/admin/audit?action=review")?;
    let decisions: Vec<&str> = audit["entries"]
        .as_array()
        .or_else(|| audit.as_array())
        .expect("audit entries")
        .iter()
        .filter_map(|e| e["detail"]["decision"].as_str())
        .collect();
    assert_eq!(decisions.len(), 2, "{audit}");
    assert!(decisions.contains(&"returned") && decisions.contains(&"approved"));
    Ok(())
}

#[test]
fn a_worker_cannot_approve_its_own_record() -> Result<()> {
    let server = TestServer::start()?;
    let (campaign, group) = village_and_group(&server)?;
    let mut worker = Store::open_in_memory()?;
    let mut tw = server.enroll(&mut worker, "李组员", Role::Worker, Some(group))?;
    sync(&mut worker, &mut tw, &SyncOptions::default())?;
    let forged = worker.create("meeting", campaign, VILLAGE, &[("topic", s("座谈会"))])?;
    sync(&mut worker, &mut tw, &SyncOptions::default())?;
    // Offline: an approval written on the worker's own device, and an honest new record.
    for (field, value) in approval::decision(approval::State::Approved, "", "李组员", 1) {
        worker.set(forged, &field, value)?;
    }
    let good = worker.create("meeting", campaign, VILLAGE, &[("topic", s("组织生活会"))])?;
    let report = sync(&mut worker, &mut tw, &SyncOptions::default())?;
    let refused: Vec<_> = report
        .rejected
        .iter()
        .map(|r| (r.id.clone(), r.code.clone()))
        .collect();
    assert_eq!(
        refused,
        vec![(forged.to_string(), "review_not_allowed".to_string())]
    );
    server.wait_merged()?;
    // The other record is stored; the forged approval is not.
    assert_eq!(
        server.get_json(&format!("/v1/records/{good}"))?["fields"]["topic"],
        "组织生活会"
    );
    let forged_on_server = server.get_json(&format!("/v1/records/{forged}"))?;
    assert_ne!(
        forged_on_server["fields"]["_review"], "approved",
        "{forged_on_server}"
    );
    Ok(())
}

#[test]
fn viewers_review_where_the_campaigns_template_says_so_and_write_nothing_else() -> Result<()> {
    use fieldsync_protocol::template::{MIDTERM_SOURCE, Template};
    let server = TestServer::start()?;
    // Two campaigns: one whose template lets the department's viewers review, one that does not.
    let (open, group) = village_and_group(&server)?;
    let (closed, closed_group) = village_and_group(&server)?;
    let mut admin = Store::open_in_memory()?;
    let mut ta = server.connect(&admin)?;
    let viewers_review = Template::parse(&format!("{MIDTERM_SOURCE}\n[review]\nviewers = true\n"))?;
    assert!(viewers_review.review.viewers);
    admin.publish_template(open, &viewers_review)?;
    let plain = Template::parse(MIDTERM_SOURCE)?;
    assert!(!plain.review.viewers);
    admin.publish_template(closed, &plain)?;
    sync(&mut admin, &mut ta, &SyncOptions::default())?;

    let mut worker = Store::open_in_memory()?;
    let mut tw = server.enroll(&mut worker, "李组员", Role::Worker, Some(group))?;
    let mut other = Store::open_in_memory()?;
    let mut to = server.enroll(&mut other, "王组员", Role::Worker, Some(closed_group))?;
    sync(&mut worker, &mut tw, &SyncOptions::default())?;
    sync(&mut other, &mut to, &SyncOptions::default())?;
    let meeting = [
        ("date", s("2026-11-20")),
        ("topic", s("党员代表座谈会")),
        ("attendance", FieldValue::Int(23)),
    ];
    let a = worker.create("meeting", open, VILLAGE, &meeting)?;
    let b = other.create("meeting", closed, VILLAGE, &meeting)?;
    sync(&mut worker, &mut tw, &SyncOptions::default())?;
    sync(&mut other, &mut to, &SyncOptions::default())?;
    server.wait_merged()?;

    let mut viewer_store = Store::open_in_memory()?;
    server.enroll(&mut viewer_store, "组织部干部科", Role::Viewer, None)?;
    let viewer = server.token_for(&viewer_store)?;

    // Where the template says so, the viewer gets the review form and approves.
    let (_, html) = get(&server, &viewer, &format!("/ui/r/{a}"))?;
    assert!(
        html.contains(&format!("action=\"/ui/r/{a}/review\"")),
        "{html}"
    );
    let (status, to_page) = post(
        &server,
        &viewer,
        &format!("/ui/r/{a}/review"),
        "decision=approved",
    )?;
    assert_eq!((status, to_page), (303, format!("/ui/r/{a}")));
    sync(&mut worker, &mut tw, &SyncOptions::default())?;
    let review = worker.review(a)?;
    assert_eq!(review.state, approval::State::Approved);
    assert_eq!(review.by, "组织部干部科");

    // Elsewhere they read the state but may not decide.
    let (_, html) = get(&server, &viewer, &format!("/ui/r/{b}"))?;
    assert!(
        !html.contains(&format!("action=\"/ui/r/{b}/review\"")),
        "{html}"
    );
    let (status, _) = post(
        &server,
        &viewer,
        &format!("/ui/r/{b}/review"),
        "decision=approved",
    )?;
    assert_eq!(status, 403);

    // A viewer's device still writes nothing but review decisions: it holds an edit of a field
    // (the push pipeline would refuse it, see `ingest::tests`), and the record stays as it was.
    let mut tv = server.connect(&viewer_store)?;
    sync(&mut viewer_store, &mut tv, &SyncOptions::default())?;
    viewer_store.set(a, "topic", s("改过的题目"))?;
    let report = sync(&mut viewer_store, &mut tv, &SyncOptions::default())?;
    assert_eq!(report.pushed, 0, "{report:?}");
    assert!(report.held >= 1, "{report:?}");
    sync(&mut worker, &mut tw, &SyncOptions::default())?;
    assert_eq!(
        worker.get(a)?.fields.get("topic").cloned(),
        Some(s("党员代表座谈会"))
    );
    Ok(())
}
