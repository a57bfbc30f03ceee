//! Every refused request is in the audit log with its code and device, and a refusal repeated
//! by one device within a minute is one line with a count, not one line a request.

use anyhow::Result;
use fieldsync::TestServer;
use fieldsync_client_core::{FieldValue, Store, SyncOptions, Transport, sync::sync};
use fieldsync_protocol::auth::Role;
use reqwest::Method;
use serde_json::Value;
use uuid::Uuid;

const A1: &str = "510100001";
const B1: &str = "510100002";

fn s(v: &str) -> FieldValue {
    FieldValue::Str(v.into())
}

fn refusals(server: &TestServer) -> Result<Vec<Value>> {
    let (status, lines) = server.request(
        Method::GET,
        "/v1/admin/audit?action=refused&limit=5000",
        None,
        None,
    )?;
    assert_eq!(status, 200, "{lines}");
    Ok(lines.as_array().cloned().unwrap_or_default())
}

#[test]
fn every_refusal_is_audited_once_per_device_code_and_minute() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let limits = fieldsync_server::auth::Limits {
        requests_per_minute: 40,
        ..Default::default()
    };
    let server = TestServer::start_with(dir.path(), limits)?;
    let campaign = Uuid::now_v7();
    let mut admin = Store::open_in_memory()?;
    let a1 = admin.create("place", campaign, A1, &[("code", s(A1))])?;
    admin.create("place", campaign, B1, &[("code", s(B1))])?;
    let group = admin.create(
        "work_group",
        campaign,
        "campaign",
        &[("name", s("第一组")), ("villages", s(&a1.to_string()))],
    )?;
    let mut t = server.connect(&admin)?;
    sync(&mut admin, &mut t, &SyncOptions::default())?;

    let mut worker = Store::open_in_memory()?;
    let mut wt = server.enroll(&mut worker, "组员", Role::Worker, Some(group))?;
    let token = server.token_for(&worker)?;
    // Out of scope, admin only, department only.
    worker.create("interview", campaign, B1, &[("notes", s("越界"))])?;
    let batch = worker.outbox_batch(0, 1 << 20)?.expect("changes");
    assert!(wt.push(&batch.request).is_err());
    let (status, _) = server.request(Method::GET, "/v1/admin/people", Some(&token), None)?;
    assert_eq!(status, 403);
    let (status, _) = server.request(
        Method::GET,
        &format!("/v1/campaigns/{campaign}/tallies"),
        Some(&token),
        None,
    )?;
    assert_eq!(status, 403);
    // A viewer's push: read only.
    let mut viewer = Store::open_in_memory()?;
    let mut vt = server.enroll(&mut viewer, "部门", Role::Viewer, None)?;
    viewer.create("interview", campaign, A1, &[("notes", s("部门写"))])?;
    let batch = viewer.outbox_batch(0, 1 << 20)?.expect("changes");
    assert!(vt.push(&batch.request).is_err());

    // A dashboard page refused to a worker is audited under its own code too.
    let page = reqwest::blocking::Client::new()
        .get(format!("{}/ui", server.url()))
        .header("cookie", format!("fieldsync_session={token}"))
        .send()?;
    assert_eq!(page.status(), 403);

    let lines = refusals(&server)?;
    let has = |device: Uuid, code: &str| {
        lines
            .iter()
            .any(|l| l["device"] == device.to_string() && l["detail"]["code"] == code)
    };
    for code in [
        "out_of_scope",
        "admin_only",
        "department_only",
        "dashboard_not_for_workers",
    ] {
        assert!(
            has(worker.device_id(), code),
            "{code} not audited: {lines:?}"
        );
    }
    assert!(has(viewer.device_id(), "read_only"), "{lines:?}");

    // A flood over the per-device limit: one line, counted.
    let mut flooder = Store::open_in_memory()?;
    server.enroll(&mut flooder, "刷新", Role::Worker, Some(group))?;
    let token = server.token_for(&flooder)?;
    let mut limited = 0;
    for _ in 0..60 {
        let (status, _) = server.request(Method::GET, "/v1/me", Some(&token), None)?;
        limited += usize::from(status == 429);
    }
    assert!(limited >= 20, "only {limited} of 60 were limited");
    // The count is written every few seconds while the refusals go on.
    std::thread::sleep(std::time::Duration::from_millis(5200));
    let (status, _) = server.request(Method::GET, "/v1/me", Some(&token), None)?;
    assert_eq!(status, 429);
    let lines = refusals(&server)?;
    let floods: Vec<&Value> = lines
        .iter()
        .filter(|l| {
            l["device"] == flooder.device_id().to_string() && l["detail"]["code"] == "rate_limited"
        })
        .collect();
    assert_eq!(floods.len(), 1, "{floods:?}");
    assert_eq!(
        floods[0]["detail"]["times"],
        limited as u64 + 1,
        "{floods:?}"
    );
    Ok(())
}
