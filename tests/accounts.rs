//! Devices, roles and scoping against a real server: what each role may read and write and what
//! it is refused (status and error code checked), revocation, one-time codes, guessed tokens,
//! forged actors, relays with tags, limits, the audit log, and a scope change that must not lose
//! what a device has not uploaded yet.

use anyhow::Result;
use fieldsync::TestServer;
use fieldsync_client_core::{
    FieldValue, Filter, HttpTransport, Store, SyncError, SyncOptions, Transport, TransportError,
    bundle::Export, sync::sync,
};
use fieldsync_protocol::auth::Role;
use reqwest::Method;
use serde_bytes::ByteBuf;
use uuid::Uuid;

const A1: &str = "350102001";
const A2: &str = "350102002";
const B1: &str = "350102101";

fn s(v: &str) -> FieldValue {
    FieldValue::Str(v.into())
}

/// A campaign with three villages, group A (A1, A2) and group B (B1), and one interview in each
/// village, written by the administrator's device and merged on the server.
struct Campaign {
    campaign: Uuid,
    group_a: Uuid,
    group_b: Uuid,
    place: std::collections::HashMap<&'static str, Uuid>,
    interview: std::collections::HashMap<&'static str, Uuid>,
    admin: Store,
}

fn setup(server: &TestServer) -> Result<Campaign> {
    let campaign = Uuid::now_v7();
    let mut admin = Store::open_in_memory()?;
    let mut place = std::collections::HashMap::new();
    let mut interview = std::collections::HashMap::new();
    for code in [A1, A2, B1] {
        let id = admin.create(
            "place",
            campaign,
            code,
            &[("code", s(code)), ("name", s(&format!("{code}村")))],
        )?;
        place.insert(code, id);
        let i = admin.create(
            "interview",
            campaign,
            code,
            &[(
                "notes",
                FieldValue::Text(format!("{code}村谈话记录：集体经济")),
            )],
        )?;
        interview.insert(code, i);
    }
    let group = |name: &str, villages: &[&str]| -> Vec<(&'static str, FieldValue)> {
        let ids: Vec<String> = villages.iter().map(|v| place[v].to_string()).collect();
        vec![
            ("name", FieldValue::Str(name.into())),
            ("villages", FieldValue::Str(ids.join(","))),
        ]
    };
    let group_a = admin.create(
        "work_group",
        campaign,
        "campaign",
        &group("第一组", &[A1, A2]),
    )?;
    let group_b = admin.create("work_group", campaign, "campaign", &group("第二组", &[B1]))?;
    let mut t = server.connect(&admin)?;
    sync(&mut admin, &mut t, &SyncOptions::default())?;
    server.wait_merged()?;
    Ok(Campaign {
        campaign,
        group_a,
        group_b,
        place,
        interview,
        admin,
    })
}

fn scopes(store: &Store) -> Result<Vec<String>> {
    let mut v: Vec<String> = store
        .list(&Filter::default())?
        .into_iter()
        .map(|r| r.header.scope)
        .collect();
    v.sort();
    v.dedup();
    Ok(v)
}

fn refused_t(e: &TransportError) -> (u16, String) {
    match e {
        TransportError::Refused { status, code, .. } => (*status, code.clone()),
        other => panic!("expected a refusal, got {other}"),
    }
}

#[test]
fn each_role_reads_and_writes_what_it_may_and_is_refused_the_rest() -> Result<()> {
    let server = TestServer::start()?;
    let c = setup(&server)?;
    let changes_before = server.get_json("/v1/status")?["changes"].clone();

    // A worker of group A pulls its two villages and the campaign-wide records, nothing of B.
    let mut worker = Store::open_in_memory()?;
    let mut wt = server.enroll(&mut worker, "王五", Role::Worker, Some(c.group_a))?;
    sync(&mut worker, &mut wt, &SyncOptions::default())?;
    assert_eq!(scopes(&worker)?, vec![A1, A2, "campaign"]);
    let me = wt.me()?;
    assert_eq!(me.scope.places, vec![A1.to_string(), A2.to_string()]);
    assert!(me.scope.write && !me.scope.all);

    // It writes in its village.
    worker.create(
        "interview",
        c.campaign,
        A1,
        &[("notes", FieldValue::Text("组员补充".into()))],
    )?;
    let report = sync(&mut worker, &mut wt, &SyncOptions::default())?;
    assert_eq!((report.pushed, report.held), (2, 0));

    // A push into group B's village is refused whole with 403, and nothing of it is stored.
    let mut rogue = Store::open_in_memory()?;
    let mut rt = server.enroll(&mut rogue, "赵六", Role::Worker, Some(c.group_a))?;
    rogue.create(
        "interview",
        c.campaign,
        A1,
        &[("notes", FieldValue::Text("本组".into()))],
    )?;
    rogue.create(
        "interview",
        c.campaign,
        B1,
        &[("notes", FieldValue::Text("越界".into()))],
    )?;
    let batch = rogue.outbox_batch(0, 1 << 20)?.expect("changes");
    let before = server.get_json("/v1/status")?["changes"].as_u64().unwrap();
    let (status, code) = refused_t(&rt.push(&batch.request).unwrap_err());
    assert_eq!((status, code.as_str()), (403, "out_of_scope"));
    assert_eq!(server.get_json("/v1/status")?["changes"], before);
    // Campaign-wide records (templates, groups) are for administrators only.
    let mut meddler = Store::open_in_memory()?;
    let mut mt = server.enroll(&mut meddler, "钱七", Role::Leader, Some(c.group_a))?;
    meddler.create(
        "work_group",
        c.campaign,
        "campaign",
        &[("name", s("自建组"))],
    )?;
    let batch = meddler.outbox_batch(0, 1 << 20)?.expect("changes");
    let (status, code) = refused_t(&mt.push(&batch.request).unwrap_err());
    assert_eq!((status, code.as_str()), (403, "out_of_scope"));

    // The sync driver itself keeps the out-of-scope record on the device and uploads the rest.
    let report = sync(&mut rogue, &mut rt, &SyncOptions::default())?;
    assert_eq!(
        report.held, 2,
        "the B1 record's two changes are held, not lost"
    );
    assert_eq!(rogue.held_changes()?, 2);
    assert!(
        rogue
            .list(&Filter {
                scope: Some(B1.into()),
                ..Default::default()
            })?
            .len()
            == 1
    );

    // Group B's worker never receives group A's interviews.
    let mut other = Store::open_in_memory()?;
    let mut ot = server.enroll(&mut other, "孙八", Role::Worker, Some(c.group_b))?;
    sync(&mut other, &mut ot, &SyncOptions::default())?;
    assert_eq!(scopes(&other)?, vec![B1, "campaign"]);

    // A department viewer pulls everything and writes nothing.
    let mut viewer = Store::open_in_memory()?;
    let mut vt = server.enroll(&mut viewer, "组织部李科长", Role::Viewer, None)?;
    sync(&mut viewer, &mut vt, &SyncOptions::default())?;
    assert!(viewer.count()? >= 8, "{}", viewer.count()?);
    // Its device holds what it writes (it knows its scope) and the server refuses a push.
    viewer.create(
        "interview",
        c.campaign,
        A1,
        &[("notes", FieldValue::Text("查看人员不应写".into()))],
    )?;
    let report = sync(&mut viewer, &mut vt, &SyncOptions::default())?;
    assert_eq!((report.pushed, report.held), (0, 2));
    let mut raw = Store::open_in_memory()?;
    raw.create("interview", c.campaign, A1, &[("n", FieldValue::Int(1))])?;
    let batch = raw.outbox_batch(0, 1 << 20)?.expect("changes");
    let mut request = batch.request;
    request.device = viewer.device_id().to_string();
    let (status, code) = refused_t(&vt.push(&request).unwrap_err());
    assert_eq!((status, code.as_str()), (403, "read_only"));

    // Reads over HTTP follow the same rules.
    let token = |store: &Store| store.credentials().unwrap().unwrap().1;
    let get =
        |store: &Store, path: &str| server.request(Method::GET, path, Some(&token(store)), None);
    let tallies = format!("/v1/campaigns/{}/tallies", c.campaign);
    assert_eq!(get(&viewer, &tallies)?.0, 200);
    let (status, body) = get(&worker, &tallies)?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("department_only"))
    );
    let (status, body) = get(&viewer, "/v1/admin/devices")?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("admin_only"))
    );
    let b1_interview = format!("/v1/records/{}", c.interview[B1]);
    assert_eq!(
        get(&worker, &b1_interview)?.0,
        404,
        "another group's record is invisible"
    );
    assert_eq!(get(&viewer, &b1_interview)?.0, 200);
    let (_, listed) = get(&worker, "/v1/records?kind=interview")?;
    assert!(
        listed.as_array().unwrap().iter().all(|r| r["scope"] != B1),
        "{listed}"
    );
    let (_, hits) = get(&worker, "/v1/search?q=集体经济")?;
    let hit_scopes: Vec<&str> = hits
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["scope"].as_str().unwrap())
        .collect();
    assert!(
        !hit_scopes.is_empty() && !hit_scopes.contains(&B1),
        "{hits}"
    );
    // No token, a guessed token.
    let (status, body) = server.request(Method::GET, "/v1/status", Some(""), None)?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let guess = format!("fst_{}", "ab".repeat(32));
    let (status, body) = server.request(Method::GET, "/v1/status", Some(&guess), None)?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    assert_ne!(server.get_json("/v1/status")?["changes"], changes_before);
    Ok(())
}

#[test]
fn a_revoked_device_is_refused_and_wipes_its_store() -> Result<()> {
    let server = TestServer::start()?;
    let c = setup(&server)?;
    let mut worker = Store::open_in_memory()?;
    let mut wt = server.enroll(&mut worker, "王五", Role::Worker, Some(c.group_a))?;
    sync(&mut worker, &mut wt, &SyncOptions::default())?;
    assert!(worker.count()? > 0);
    let device = worker.device_id();
    let old_token = worker.credentials()?.unwrap().1;

    let (status, devices) = server.request(Method::GET, "/v1/admin/devices", None, None)?;
    assert_eq!(status, 200);
    let row = devices
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == device.to_string())
        .expect("the device is listed");
    assert_eq!(row["person_name"], "王五");
    assert!(row["last_pull"].is_i64(), "{row}");
    let (status, _) = server.request(
        Method::POST,
        &format!("/v1/admin/devices/{device}/revoke"),
        None,
        None,
    )?;
    assert_eq!(status, 200);

    let e = sync(&mut worker, &mut wt, &SyncOptions::default()).unwrap_err();
    assert!(matches!(e, SyncError::Revoked), "{e}");
    assert_eq!(worker.count()?, 0, "the store was wiped");
    assert!(worker.credentials()?.is_none());
    assert_ne!(worker.device_id(), device, "a wiped store is a new device");
    let (status, body) = server.request(Method::GET, "/v1/me", Some(&old_token), None)?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("device_revoked"))
    );

    // The audit log shows the enrollment, the syncs, the revocation and the refusal.
    let audit = server.get_json(&format!("/v1/admin/audit?device={device}"))?;
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    for a in ["enroll", "pull", "refused"] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    let revokes = server.get_json("/v1/admin/audit?action=revoke")?;
    assert_eq!(revokes[0]["detail"]["revoked"], device.to_string());
    Ok(())
}

#[test]
fn enrollment_codes_work_once_and_expire() -> Result<()> {
    let server = TestServer::start()?;
    let person = server.add_person("周九", Role::Worker, None)?;
    let code = server.code_for(person)?;
    let mut first = HttpTransport::new(&server.url())?;
    // Typed in lower case with spaces: the same code.
    let typed = code.to_lowercase().replace('-', " ");
    let e = first.enroll(Uuid::new_v4(), &typed, "周九的手机")?;
    assert_eq!(e.person.name, "周九");
    let mut second = HttpTransport::new(&server.url())?;
    let err = second.enroll(Uuid::new_v4(), &code, "另一台").unwrap_err();
    assert_eq!(refused_t(&err), (409, "code_used".into()));

    // An expired code (issued straight into the storage, already past its time).
    let expired = "ZZZZ-ZZZZ-ZZZZ";
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let storage = fieldsync_server::open_storage(server.data_dir()).await?;
        storage
            .issue_code(person, fieldsync_protocol::auth::code_hash(expired), 1)
            .await?;
        storage.close().await;
        anyhow::Ok(())
    })?;
    let err = second.enroll(Uuid::new_v4(), expired, "x").unwrap_err();
    assert_eq!(refused_t(&err), (410, "code_expired".into()));
    // A device id that is already enrolled cannot be taken over with another code.
    let code2 = server.code_for(person)?;
    let err = second
        .enroll(Uuid::parse_str(&e.device)?, &code2, "x")
        .unwrap_err();
    assert_eq!(refused_t(&err), (409, "device_taken".into()));
    Ok(())
}

#[test]
fn guessing_codes_and_tokens_is_braked() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start_with(
        dir.path(),
        fieldsync_server::auth::Limits {
            failed_auth_per_minute: 4,
            ..Default::default()
        },
    )?;
    let mut t = HttpTransport::new(&server.url())?;
    let mut statuses = Vec::new();
    for i in 0..6 {
        let err = t
            .enroll(Uuid::new_v4(), &format!("AAAA-AAAA-AAA{i}"), "guess")
            .unwrap_err();
        statuses.push(refused_t(&err));
    }
    assert_eq!(statuses[0], (401, "invalid_code".into()));
    assert_eq!(statuses[5], (429, "rate_limited".into()), "{statuses:?}");
    // Guessed tokens from the same address are braked too.
    let (status, _) = server.request(Method::GET, "/v1/me", Some("fst_guess"), None)?;
    assert_eq!(status, 429);
    Ok(())
}

#[test]
fn limits_answer_413_and_429_and_the_server_keeps_serving() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start_with(
        dir.path(),
        fieldsync_server::auth::Limits {
            requests_per_minute: 5,
            max_push_records: 3,
            ..Default::default()
        },
    )?;
    let mut device = Store::open_in_memory()?;
    let mut t = server.connect(&device)?;
    for i in 0..4 {
        device.create(
            "interview",
            Uuid::from_u128(1),
            A1,
            &[("n", FieldValue::Int(i))],
        )?;
    }
    let batch = device.outbox_batch(0, 1 << 20)?.unwrap();
    let (status, code) = refused_t(&t.push(&batch.request).unwrap_err());
    assert_eq!((status, code.as_str()), (413, "too_many_records"));
    let mut last = None;
    for _ in 0..6 {
        if let Err(e) = t.me() {
            last = Some(refused_t(&e));
        }
    }
    assert_eq!(last, Some((429, "rate_limited".into())));
    let resp = reqwest::blocking::Client::new()
        .get(format!("{}/v1/me", server.url()))
        .bearer_auth(server.token_for(&device)?)
        .send()?;
    assert!(resp.headers().get("retry-after").is_some());
    // Another device is not affected.
    assert_eq!(server.get_json("/health")?["status"], "ok");
    Ok(())
}

#[test]
fn a_relay_needs_the_authors_tag_and_a_forged_actor_is_refused() -> Result<()> {
    let server = TestServer::start()?;
    let c = setup(&server)?;
    let mut leader = Store::open_in_memory()?;
    let mut lt = server.enroll(&mut leader, "组长甲", Role::Leader, Some(c.group_a))?;
    let mut worker = Store::open_in_memory()?;
    let mut wt = server.enroll(&mut worker, "组员乙", Role::Worker, Some(c.group_a))?;
    let record = leader.create(
        "interview",
        c.campaign,
        A1,
        &[("notes", FieldValue::Text("组长记录".into()))],
    )?;
    sync(&mut leader, &mut lt, &SyncOptions::default())?;
    sync(&mut worker, &mut wt, &SyncOptions::default())?;

    // Offline in the evening: the leader edits, and hands the change to the worker by file.
    leader.set(record, "rating", s("好"))?;
    let (bundle, _) = leader.export_bundle(&Export::All)?;
    worker.import_bundle(&bundle)?;
    // Without the leader's tag the same change is refused: its record alone, nothing stored...
    let mut batch = worker
        .outbox_batch(0, 1 << 20)?
        .expect("the relayed change");
    let tags = std::mem::take(&mut batch.request.records[0].tags);
    assert_eq!(
        tags.iter().filter(|t| !t.is_empty()).count(),
        1,
        "the bundle carried a tag"
    );
    let answer = wt.push(&batch.request)?;
    assert_eq!(answer.stored, 0);
    assert_eq!(answer.rejected.len(), 1, "{answer:?}");
    assert_eq!(answer.rejected[0].code, "unverified_relay");
    assert_eq!(answer.rejected[0].id, record.to_string());
    // ...with a tag that does not verify too...
    let mut tampered = tags.clone();
    for t in tampered.iter_mut().filter(|t| !t.is_empty()) {
        let last = t.len() - 1;
        t.as_mut_slice()[last] ^= 1;
    }
    batch.request.records[0].tags = tampered;
    let (status, code) = refused_t(&wt.push(&batch.request).unwrap_err());
    assert_eq!((status, code.as_str()), (403, "forged_actor"));
    // ...and claiming the leader's actor as one's own is refused.
    let mut claim = batch.request.clone();
    claim.records[0].tags = Vec::new();
    claim.actors = vec![ByteBuf::from(leader.actor().to_bytes().to_vec())];
    let (status, code) = refused_t(&wt.push(&claim).unwrap_err());
    assert_eq!((status, code.as_str()), (403, "forged_actor"));
    // With its tag, the worker delivers the leader's change before the leader syncs.
    let report = sync(&mut worker, &mut wt, &SyncOptions::default())?;
    assert_eq!(report.pushed, 1);
    server.wait_merged()?;
    let merged = server.get_json(&format!("/v1/records/{record}"))?;
    assert_eq!(merged["fields"]["rating"], "好");
    // The leader syncing later duplicates nothing.
    let report = sync(&mut leader, &mut lt, &SyncOptions::default())?;
    assert_eq!(report.duplicates, report.pushed);
    Ok(())
}

#[test]
fn a_scope_change_removes_records_but_never_what_was_not_uploaded() -> Result<()> {
    let server = TestServer::start()?;
    let mut c = setup(&server)?;
    let mut worker = Store::open_in_memory()?;
    let mut wt = server.enroll(&mut worker, "王五", Role::Worker, Some(c.group_a))?;
    sync(&mut worker, &mut wt, &SyncOptions::default())?;
    assert_eq!(scopes(&worker)?, vec![A1, A2, "campaign"]);
    // Offline, the worker records an interview in A2...
    let unsynced = worker.create(
        "interview",
        c.campaign,
        A2,
        &[("notes", FieldValue::Text("A2村未上传的谈话".into()))],
    )?;
    // ...while the department moves A2 from group A to group B.
    let ids = |codes: &[&str]| {
        codes
            .iter()
            .map(|v| c.place[v].to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let (a, b) = (ids(&[A1]), ids(&[B1, A2]));
    c.admin.set(c.group_a, "villages", FieldValue::Str(a))?;
    c.admin.set(c.group_b, "villages", FieldValue::Str(b))?;
    let mut at = server.connect(&c.admin)?;
    sync(&mut c.admin, &mut at, &SyncOptions::default())?;
    server.wait_merged()?;

    let report = sync(&mut worker, &mut wt, &SyncOptions::default())?;
    assert_eq!(
        report.held, 2,
        "the A2 interview's changes are kept, not uploaded"
    );
    assert!(report.removed_records >= 2, "{report:?}");
    let left = scopes(&worker)?;
    assert_eq!(
        left,
        vec![A1, A2, "campaign"],
        "only the unsynced A2 record is left there"
    );
    assert_eq!(
        worker
            .list(&Filter {
                scope: Some(A2.into()),
                ..Default::default()
            })?
            .len(),
        1
    );
    assert!(worker.get(unsynced).is_ok());
    // The worker hands it to group B's worker by bundle, who uploads it with the worker's tag.
    let mut b = Store::open_in_memory()?;
    let mut bt = server.enroll(&mut b, "孙八", Role::Worker, Some(c.group_b))?;
    sync(&mut b, &mut bt, &SyncOptions::default())?;
    assert!(
        scopes(&b)?.contains(&A2.to_string()),
        "the scope grew: A2 was pulled"
    );
    b.import_bundle(&worker.export_bundle(&Export::All)?.0)?;
    sync(&mut b, &mut bt, &SyncOptions::default())?;
    server.wait_merged()?;
    let merged = server.get_json(&format!("/v1/records/{unsynced}"))?;
    assert_eq!(merged["fields"]["notes"], "A2村未上传的谈话");
    // Moving A2 back grows the worker's scope: it pulls A2's records again.
    let ids2 = |codes: &[&str]| {
        codes
            .iter()
            .map(|v| c.place[v].to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    c.admin
        .set(c.group_a, "villages", FieldValue::Str(ids2(&[A1, A2])))?;
    sync(&mut c.admin, &mut at, &SyncOptions::default())?;
    server.wait_merged()?;
    let report = sync(&mut worker, &mut wt, &SyncOptions::default())?;
    assert!(report.rescoped, "{report:?}");
    assert!(
        worker.get(c.interview[A2]).is_ok(),
        "A2's interview is back"
    );
    Ok(())
}

#[test]
fn the_dashboard_login_refuses_bad_codes_workers_and_signed_out_browsers() -> Result<()> {
    let server = TestServer::start()?;
    let c = setup(&server)?;
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let url = server.url();
    let login = |code: &str| {
        client
            .post(format!("{url}/login"))
            .header("origin", &url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("code={code}"))
            .send()
    };
    let session = |resp: &reqwest::blocking::Response| -> String {
        let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
            "{cookie}"
        );
        cookie.split(';').next().unwrap().to_string()
    };
    let get = |path: &str, cookie: &str| {
        client
            .get(format!("{url}{path}"))
            .header("cookie", cookie)
            .send()
    };
    // Not signed in: to the login page.
    let r = client.get(format!("{url}/ui")).send()?;
    assert_eq!(
        (r.status().as_u16(), r.headers()["location"].to_str()?),
        (303, "/login")
    );
    // A wrong code: the form again, with the reason.
    let r = login("AAAA-BBBB-CCCC")?;
    assert_eq!(r.status(), 401);
    assert!(r.text()?.contains("登记码不正确"));
    // A worker signs in but is sent to the field app.
    let worker = server.add_person("组员", Role::Worker, Some(c.group_a))?;
    let r = login(&server.code_for(worker)?)?;
    assert_eq!(r.status(), 303);
    let w = session(&r);
    let r = get("/ui", &w)?;
    assert_eq!(r.status(), 403);
    assert!(r.text()?.contains("工作组成员请使用外业记录工具"));
    // A viewer reads the ledger and a record but may not resolve a conflict.
    let viewer = server.add_person("组织部", Role::Viewer, None)?;
    let r = login(&server.code_for(viewer)?)?;
    let v = session(&r);
    assert_eq!(
        get(&format!("/ui/c/{}/ledger", c.campaign), &v)?.status(),
        200
    );
    let record = format!("/ui/r/{}", c.interview[B1]);
    let page = get(&record, &v)?.text()?;
    assert!(
        page.contains("B1") || page.contains(B1),
        "the record page names its village"
    );
    let r = client
        .post(format!("{url}{record}/resolve"))
        .header("cookie", &v)
        .header("origin", &url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("field=notes&choice=0")
        .send()?;
    assert_eq!(r.status(), 403);
    // A leader of group A does not see group B's record.
    let leader = server.add_person("组长", Role::Leader, Some(c.group_a))?;
    let l = session(&login(&server.code_for(leader)?)?);
    assert_eq!(get(&record, &l)?.status(), 404);
    assert_eq!(
        get(&format!("/ui/r/{}", c.interview[A1]), &l)?.status(),
        200
    );
    // Signing out revokes the browser's device: the old cookie no longer works.
    let r = client
        .post(format!("{url}/logout"))
        .header("cookie", &v)
        .header("origin", &url)
        .send()?;
    assert_eq!(r.status(), 303);
    assert_eq!(get("/ui", &v)?.status(), 403);
    Ok(())
}
