//! Attachments reach the server whole over a line that drops every ~100 KB: resumed from the
//! server's offset, stored once under their hash, refused when tampered with, and fetched only
//! by devices that may see their record.

use anyhow::Result;
use fieldsync::{
    TestServer,
    fixtures::{ATTACHMENT_TEMPLATE, noise},
    proxy::{Cut, Line, Proxy},
};
use fieldsync_client_core::{
    FieldValue, HttpTransport, Store, SyncOptions, TransportError,
    attachments::{AttachmentSyncError, download_attachment, upload_attachments},
    sync::sync,
};
use fieldsync_protocol::attachment::{
    OFFSET_CONTENT_TYPE, UPLOAD_CHECKSUM, UPLOAD_OFFSET, attachment_path, checksum_header,
};
use fieldsync_protocol::auth::Role;
use fieldsync_protocol::template::Template;
use std::collections::BTreeMap;
use uuid::Uuid;

const VILLAGE_A: &str = "350102001";
const VILLAGE_B: &str = "350102002";

struct Setup {
    server: TestServer,
    admin: Store,
    campaign: Uuid,
    group_b: Uuid,
    record: Uuid,
}

fn setup() -> Result<Setup> {
    setup_on(TestServer::start()?)
}

fn setup_on(server: TestServer) -> Result<Setup> {
    let campaign = Uuid::now_v7();
    let mut admin = Store::open_in_memory()?;
    admin.publish_template(campaign, &Template::parse(ATTACHMENT_TEMPLATE)?)?;
    let mut place_b = None;
    for code in [VILLAGE_A, VILLAGE_B] {
        let id = admin.create(
            "place",
            campaign,
            code,
            &[
                ("code", FieldValue::Str(code.into())),
                ("name", FieldValue::Str(format!("{code}村"))),
                ("level", FieldValue::Str("village".into())),
            ],
        )?;
        if code == VILLAGE_B {
            place_b = Some(id);
        }
    }
    let group_b = admin.create(
        "work_group",
        campaign,
        "campaign",
        &[
            ("name", FieldValue::Str("第二组".into())),
            ("villages", FieldValue::Str(place_b.unwrap().to_string())),
        ],
    )?;
    let fields = BTreeMap::from([("what".to_string(), FieldValue::Str("三会一课记录本".into()))]);
    let record = admin.create_form(campaign, "visit", VILLAGE_A, &fields)?;
    Ok(Setup {
        server,
        admin,
        campaign,
        group_b,
        record,
    })
}

fn push(server: &TestServer, store: &mut Store) -> Result<()> {
    let mut t = server.connect(store)?;
    sync(store, &mut t, &SyncOptions::default())?;
    server.wait_merged()?;
    Ok(())
}

fn stored(server: &TestServer, sha: &str) -> Option<Vec<u8>> {
    let path = server
        .data_dir()
        .join("attachments/blobs")
        .join(&sha[..2])
        .join(sha);
    std::fs::read(path).ok()
}

#[test]
fn a_photo_and_a_recording_arrive_whole_through_a_line_cut_every_100_kb() -> Result<()> {
    let mut s = setup()?;
    let photo = noise(3_000_000, 7);
    let recording = noise(20_000_000, 11);
    let p = s
        .admin
        .attach(s.record, "photos", "签到表.jpg", None, &photo)?;
    let r = s.admin.attach(
        s.record,
        "photos",
        "谈话录音.m4a",
        Some("audio/mp4"),
        &recording,
    )?;
    push(&s.server, &mut s.admin)?;

    let proxy = Proxy::start(s.server.addr)?;
    proxy.cut_next(
        Cut {
            upstream_after: Some(100_000),
            downstream_after: None,
        },
        100_000,
    );
    let mut t = HttpTransport::new(&proxy.url())?.with_token(s.server.token_for(&s.admin)?);
    let report = upload_attachments(&mut s.admin, &mut t, 2_000)?;
    assert_eq!(report.uploaded, 2, "{report:?}");
    assert!(report.retries > 100, "the line was cut: {report:?}");
    assert_eq!(stored(&s.server, &p.sha256).as_deref(), Some(&photo[..]));
    assert_eq!(
        stored(&s.server, &r.sha256).as_deref(),
        Some(&recording[..])
    );
    let total = (photo.len() + recording.len()) as f64;
    let up = proxy.bytes_up() as f64;
    eprintln!(
        "sent {up} bytes for {total} ({:.3}×) over {} connections, {} retries",
        up / total,
        proxy.connections(),
        report.retries
    );
    assert!(up < 1.2 * total, "sent {up} bytes for {total}");
    // Nothing half-written is left, and nothing is sent again.
    let uploads = s.server.data_dir().join("attachments/uploads");
    let partial = std::fs::read_dir(&uploads)
        .map(|d| d.count())
        .unwrap_or_default();
    assert_eq!(partial, 0);
    assert!(s.admin.attachments_to_upload()?.is_empty());
    proxy.reset_counts();
    let again = upload_attachments(&mut s.admin, &mut t, 0)?;
    assert_eq!(again.bytes_sent, 0);
    assert_eq!(proxy.bytes_up(), 0);
    Ok(())
}

#[test]
fn a_photo_crosses_a_64_kbit_line_with_600_ms_round_trips_that_drops_every_100_kb() -> Result<()> {
    // A village's 2G line: 8 KB/s each way, 300 ms each way, cut after every 100 KB sent. The
    // photo is small (250 KB, half a minute at this speed) so that the suite stays quick; the
    // mechanism does not depend on the size (the 23 MB test above runs it on a fast line).
    let mut s = setup()?;
    let photo = noise(250_000, 13);
    let p = s
        .admin
        .attach(s.record, "photos", "村务公开栏.jpg", None, &photo)?;
    push(&s.server, &mut s.admin)?;
    let proxy = Proxy::start(s.server.addr)?;
    proxy.shape(Line::kbit(64, std::time::Duration::from_millis(600)));
    proxy.cut_next(
        Cut {
            upstream_after: Some(100_000),
            downstream_after: None,
        },
        1_000,
    );
    let mut t = HttpTransport::new(&proxy.url())?.with_token(s.server.token_for(&s.admin)?);
    let started = std::time::Instant::now();
    let report = upload_attachments(&mut s.admin, &mut t, 100)?;
    let took = started.elapsed();
    assert_eq!(report.uploaded, 1, "{report:?}");
    assert!(report.retries >= 2, "the line was cut: {report:?}");
    assert_eq!(stored(&s.server, &p.sha256).as_deref(), Some(&photo[..]));
    let up = proxy.bytes_up() as f64;
    let size = photo.len() as f64;
    eprintln!(
        "64 kbit/s, 600 ms RTT, cut every 100 KB: sent {up} bytes for {size} ({:.3}×) over {} \
         connections, {} retries, {:.1} s",
        up / size,
        proxy.connections(),
        report.retries,
        took.as_secs_f64()
    );
    assert!(up < 1.2 * size, "sent {up} bytes for {size}");
    // The line really was that slow: 250 KB at 8 KB/s cannot take less than 31 s.
    assert!(
        took.as_secs_f64() > 25.0,
        "{took:?}: the line was not shaped"
    );
    assert!(s.admin.attachments_to_upload()?.is_empty());
    Ok(())
}

#[test]
fn the_same_file_from_two_devices_is_stored_once_and_fetched_only_in_scope() -> Result<()> {
    let mut s = setup()?;
    let scan = noise(600_000, 3);
    let first = s
        .admin
        .attach(s.record, "photos", "测评表.png", None, &scan)?;
    push(&s.server, &mut s.admin)?;
    let mut t = s.server.connect(&s.admin)?;
    assert_eq!(upload_attachments(&mut s.admin, &mut t, 3)?.uploaded, 1);

    // A second device photographs the same sheet for its own record.
    let mut other = Store::open_in_memory()?;
    let mut t2 = s.server.connect(&other)?;
    sync(&mut other, &mut t2, &SyncOptions::default())?;
    let fields = BTreeMap::from([("what".to_string(), FieldValue::Str("测评表".into()))]);
    let mine = other.create_form(s.campaign, "visit", VILLAGE_A, &fields)?;
    let second = other.attach(mine, "photos", "同一张.png", None, &scan)?;
    assert_eq!(second.sha256, first.sha256);
    push(&s.server, &mut other)?;
    let report = upload_attachments(&mut other, &mut t2, 3)?;
    assert_eq!(
        (report.uploaded, report.already_there, report.bytes_sent),
        (0, 1, 0)
    );
    let blobs = s.server.data_dir().join("attachments/blobs");
    let files: usize = std::fs::read_dir(&blobs)?
        .map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count())
        .sum();
    assert_eq!(files, 1);

    // A third device in the same scope fetches it on demand, checked against its hash.
    let mut reader = Store::open_in_memory()?;
    let mut t3 = s.server.connect(&reader)?;
    sync(&mut reader, &mut t3, &SyncOptions::default())?;
    let got = download_attachment(&mut reader, &mut t3, s.record, &first.sha256)?;
    assert_eq!(got, scan);
    assert_eq!(reader.attachment_bytes(&first.sha256)?, Some(scan.clone()));

    // Asked about under a record that does not refer to it, the server does not tell that it
    // holds the file (that would show which photos other records carry).
    let fields = BTreeMap::from([("what".to_string(), FieldValue::Str("空白记录".into()))]);
    let plain = reader.create_form(s.campaign, "visit", VILLAGE_A, &fields)?;
    push(&s.server, &mut reader)?;
    let ask = |record: Uuid| fieldsync_protocol::attachment::MissingRequest {
        items: vec![fieldsync_protocol::attachment::MissingItem {
            record: record.to_string(),
            sha256: first.sha256.clone(),
            size: scan.len() as u64,
        }],
    };
    use fieldsync_client_core::attachments::BlobTransport;
    let told = t3.missing(&ask(plain))?;
    assert_eq!(told.missing.len(), 1, "{told:?}");
    assert_eq!(told.missing[0].offset, 0);
    assert!(t3.missing(&ask(s.record))?.missing.is_empty());

    // A worker of another group knows the record and the hash, and still gets nothing.
    let mut outsider = Store::open_in_memory()?;
    let mut t4 = s
        .server
        .enroll(&mut outsider, "第二组组员", Role::Worker, Some(s.group_b))?;
    match download_attachment(&mut outsider, &mut t4, s.record, &first.sha256) {
        Err(AttachmentSyncError::Transport(TransportError::Refused { status, .. })) => {
            assert_eq!(status, 404)
        }
        other => panic!("an outsider got {other:?}"),
    }
    Ok(())
}

#[test]
fn a_download_cut_every_100_kb_goes_on_from_where_it_broke() -> Result<()> {
    let mut s = setup()?;
    let recording = noise(3_000_000, 31);
    let r = s.admin.attach(
        s.record,
        "photos",
        "座谈会录音.m4a",
        Some("audio/mp4"),
        &recording,
    )?;
    push(&s.server, &mut s.admin)?;
    let mut t = s.server.connect(&s.admin)?;
    assert_eq!(upload_attachments(&mut s.admin, &mut t, 3)?.uploaded, 1);

    // A colleague opens it over a line that drops every 100 KB coming down.
    let mut reader = Store::open_in_memory()?;
    let mut t2 = s.server.connect(&reader)?;
    sync(&mut reader, &mut t2, &SyncOptions::default())?;
    let token = s.server.token_for(&reader)?;
    let proxy = Proxy::start(s.server.addr)?;
    proxy.cut_next(
        Cut {
            upstream_after: None,
            downstream_after: Some(100_000),
        },
        1_000,
    );
    let mut cut = HttpTransport::new(&proxy.url())?.with_token(token.clone());
    let got = download_attachment(&mut reader, &mut cut, s.record, &r.sha256)?;
    assert_eq!(got, recording);
    let down = proxy.bytes_down() as f64;
    let size = recording.len() as f64;
    eprintln!(
        "download cut every 100 KB: {down} bytes down for {size} ({:.3}×) over {} connections",
        down / size,
        proxy.connections()
    );
    assert!(proxy.connections() > 20, "the line was cut");
    assert!(down < 1.2 * size, "received {down} bytes for {size}");

    // The range itself, as a player seeking in the recording asks for it.
    let url = format!(
        "{}{}",
        s.server.url(),
        attachment_path(&s.record, &r.sha256)
    );
    let client = reqwest::blocking::Client::new();
    let part = client
        .get(&url)
        .bearer_auth(&token)
        .header("range", "bytes=1000-1999")
        .send()?;
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()["content-range"], "bytes 1000-1999/3000000");
    assert_eq!(part.bytes()?.as_ref(), &recording[1000..2000]);
    let beyond = client
        .get(&url)
        .bearer_auth(&token)
        .header("range", "bytes=3000000-")
        .send()?;
    assert_eq!(beyond.status(), 416);
    Ok(())
}

#[test]
fn a_tampered_chunk_is_refused_and_not_counted() -> Result<()> {
    let mut s = setup()?;
    let photo = noise(300_000, 5);
    let p = s
        .admin
        .attach(s.record, "photos", "会议记录.jpg", None, &photo)?;
    push(&s.server, &mut s.admin)?;
    let token = s.server.token_for(&s.admin)?;
    let url = format!(
        "{}{}",
        s.server.url(),
        attachment_path(&s.record, &p.sha256)
    );
    let client = reqwest::blocking::Client::new();
    let patch = |offset: usize, body: &[u8], checksum_of: &[u8]| {
        client
            .patch(&url)
            .bearer_auth(&token)
            .header("content-type", OFFSET_CONTENT_TYPE)
            .header(UPLOAD_OFFSET, offset)
            .header(UPLOAD_CHECKSUM, checksum_header(checksum_of))
            .body(body.to_vec())
            .send()
    };
    let offset = |resp: &reqwest::blocking::Response| -> Option<u64> {
        resp.headers()
            .get(UPLOAD_OFFSET)?
            .to_str()
            .ok()?
            .parse()
            .ok()
    };
    let good = patch(0, &photo[..100_000], &photo[..100_000])?;
    assert_eq!(good.status(), 204);
    assert_eq!(offset(&good), Some(100_000));
    // The bytes were changed on the way: refused by the chunk's checksum, offset unchanged.
    let mut bad = photo[100_000..200_000].to_vec();
    bad[10] ^= 1;
    let refused = patch(100_000, &bad, &photo[100_000..200_000])?;
    assert_eq!(refused.status().as_u16(), 460);
    let head = client.head(&url).bearer_auth(&token).send()?;
    assert_eq!(offset(&head), Some(100_000));
    // A chunk sent twice is harmless: what the server has is skipped, nothing is added.
    let twice = patch(0, &photo[..100_000], &photo[..100_000])?;
    assert_eq!(twice.status(), 204);
    assert_eq!(offset(&twice), Some(100_000));
    // One that overlaps what the server has adds only its new part.
    let overlap = patch(50_000, &photo[50_000..150_000], &photo[50_000..150_000])?;
    assert_eq!(overlap.status(), 204);
    assert_eq!(offset(&overlap), Some(150_000));
    // One from beyond the server's offset would leave a gap: refused, with where to go on.
    let gap = patch(200_000, &photo[200_000..], &photo[200_000..])?;
    assert_eq!(gap.status(), 409);
    assert_eq!(
        gap.json::<serde_json::Value>()?["error"]["code"],
        "offset_mismatch"
    );
    // Wrong bytes with their own checksum pass the chunk but not the whole file.
    let mut bad = photo[150_000..200_000].to_vec();
    bad[10] ^= 1;
    let forged = patch(150_000, &bad, &bad)?;
    assert_eq!(forged.status(), 204);
    let last = patch(200_000, &photo[200_000..], &photo[200_000..])?;
    assert_eq!(last.status(), 422);
    assert_eq!(
        last.json::<serde_json::Value>()?["error"]["code"],
        "hash_mismatch"
    );
    assert_eq!(stored(&s.server, &p.sha256), None);
    let head = client.head(&url).bearer_auth(&token).send()?;
    assert_eq!(offset(&head), Some(0));
    // The device's own upload then sends the right file.
    let mut t = s.server.connect(&s.admin)?;
    assert_eq!(upload_attachments(&mut s.admin, &mut t, 3)?.uploaded, 1);
    assert_eq!(stored(&s.server, &p.sha256).as_deref(), Some(&photo[..]));
    Ok(())
}

fn dashboard(server: &TestServer, token: &str, path: &str) -> Result<reqwest::blocking::Response> {
    Ok(reqwest::blocking::Client::new()
        .get(format!("{}{path}", server.url()))
        .header("cookie", format!("fieldsync_session={token}"))
        .send()?)
}

fn audited(server: &TestServer, action: &str) -> Result<Vec<serde_json::Value>> {
    let (status, lines) = server.request(
        reqwest::Method::GET,
        &format!("/v1/admin/audit?action={action}&limit=100"),
        None,
        None,
    )?;
    assert_eq!(status, 200, "{lines}");
    Ok(lines.as_array().cloned().unwrap_or_default())
}

#[test]
fn the_dashboard_shows_a_records_files_and_zips_a_village_only_for_those_in_scope() -> Result<()> {
    let mut s = setup()?;
    let photo = noise(200_000, 3);
    let audio = noise(50_000, 5);
    let p = s
        .admin
        .attach(s.record, "photos", "签到表.jpg", None, &photo)?;
    let a = s.admin.attach(
        s.record,
        "photos",
        "谈话录音.m4a",
        Some("audio/mp4"),
        &audio,
    )?;
    push(&s.server, &mut s.admin)?;
    let token = s.server.admin_token.clone();
    let record_page = format!("/ui/r/{}", s.record);

    // The record has reached the server, its files not yet: the page says so, shows no preview.
    let html = dashboard(&s.server, &token, &record_page)?.text()?;
    assert!(html.contains("照片和录音"), "{html}");
    assert!(html.contains("尚未上传到服务器"), "{html}");
    assert!(!html.contains("<img src="), "{html}");
    assert!(!html.contains("&quot;type&quot;"), "no raw JSON: {html}");
    let early = dashboard(&s.server, &token, &format!("{record_page}/a/{}", p.sha256))?;
    assert_eq!(early.status(), 404);

    let mut t = s.server.connect(&s.admin)?;
    assert_eq!(upload_attachments(&mut s.admin, &mut t, 3)?.uploaded, 2);
    let html = dashboard(&s.server, &token, &record_page)?.text()?;
    assert!(
        html.contains(&format!(
            "<img src=\"{record_page}/a/{}?thumb=1\"",
            p.sha256
        )),
        "{html}"
    );
    assert!(
        html.contains(&format!(
            "<audio controls preload=\"none\" src=\"{record_page}/a/{}\">",
            a.sha256
        )),
        "{html}"
    );
    assert!(!html.contains("尚未上传到服务器"), "{html}");

    // Opened in the page, or saved under its Chinese name; both audited.
    let shown = dashboard(&s.server, &token, &format!("{record_page}/a/{}", p.sha256))?;
    assert_eq!(shown.status(), 200);
    assert_eq!(shown.headers()["content-type"], "image/jpeg");
    assert!(
        shown.headers()["content-disposition"]
            .to_str()?
            .starts_with("inline;")
    );
    assert!(
        !shown.headers()["content-security-policy"]
            .to_str()?
            .contains("script-src")
    );
    assert_eq!(shown.bytes()?.as_ref(), &photo[..]);
    // These bytes are no real picture: no preview (never the full file in its place).
    let preview = dashboard(
        &s.server,
        &token,
        &format!("{record_page}/a/{}?thumb=1", p.sha256),
    )?;
    assert_eq!(preview.status(), 404);
    let saved = dashboard(
        &s.server,
        &token,
        &format!("{record_page}/a/{}?download=1", a.sha256),
    )?;
    let disposition = saved.headers()["content-disposition"].to_str()?.to_string();
    assert!(
        disposition.starts_with("attachment;") && disposition.contains("UTF-8''"),
        "{disposition}"
    );
    assert_eq!(saved.bytes()?.as_ref(), &audio[..]);
    let views = audited(&s.server, "attachment_view")?;
    assert!(
        views.iter().any(|v| v.to_string().contains(&p.sha256)),
        "{views:?}"
    );
    let downloads = audited(&s.server, "attachment_download")?;
    assert!(
        downloads.iter().any(|v| v.to_string().contains(&a.sha256)),
        "{downloads:?}"
    );

    // The export names the files (their bytes are on the record page and in the ZIP).
    let csv = s
        .server
        .get(&format!("/v1/campaigns/{}/export/visit.csv", s.campaign))?
        .text()?;
    assert!(
        csv.contains("签到表.jpg") && csv.contains("谈话录音.m4a"),
        "{csv}"
    );
    assert!(!csv.contains(&p.sha256), "no hashes in the export: {csv}");

    // The village's dossier: the photo among its pictures, and the ZIP offered.
    let dossier = dashboard(
        &s.server,
        &token,
        &format!("/ui/c/{}/v/{VILLAGE_A}", s.campaign),
    )?
    .text()?;
    assert!(
        dossier.contains(&format!(
            "<img src=\"{record_page}/a/{}?thumb=1\"",
            p.sha256
        )),
        "{dossier}"
    );
    assert!(
        !dossier.contains(&a.sha256),
        "a recording is no picture: {dossier}"
    );
    assert!(
        dossier.contains(&format!("/ui/c/{}/v/{VILLAGE_A}/files.zip", s.campaign)),
        "{dossier}"
    );

    // The village's ZIP: both files under the form's name, and a note.
    let zip = dashboard(
        &s.server,
        &token,
        &format!("/ui/c/{}/v/{VILLAGE_A}/files.zip", s.campaign),
    )?;
    assert_eq!(zip.status(), 200);
    assert_eq!(zip.headers()["content-type"], "application/zip");
    let bytes = zip.bytes()?;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec()))?;
    let mut names: Vec<String> = archive.file_names().map(String::from).collect();
    names.sort();
    assert_eq!(
        names,
        ["查阅资料/签到表.jpg", "查阅资料/谈话录音.m4a", "说明.txt"]
    );
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut archive.by_name("查阅资料/签到表.jpg")?, &mut got)?;
    assert_eq!(got, photo);
    let mut note = String::new();
    std::io::Read::read_to_string(&mut archive.by_name("说明.txt")?, &mut note)?;
    assert!(note.contains("共 2 个文件"), "{note}");
    let zips = audited(&s.server, "attachment_download")?;
    assert!(
        zips.iter().any(|v| v.to_string().contains(VILLAGE_A)),
        "{zips:?}"
    );
    // Nothing was left behind on the server's disk.
    let scratch = s.server.data_dir().join("attachments/tmp");
    assert_eq!(std::fs::read_dir(&scratch)?.count(), 0);

    // The other group's leader: not the record, not its files, not the village's ZIP.
    let mut leader = Store::open_in_memory()?;
    s.server
        .enroll(&mut leader, "乙组组长", Role::Leader, Some(s.group_b))?;
    let other = s.server.token_for(&leader)?;
    let r = dashboard(&s.server, &other, &format!("{record_page}/a/{}", p.sha256))?;
    assert_eq!(r.status(), 404);
    let r = dashboard(
        &s.server,
        &other,
        &format!("/ui/c/{}/v/{VILLAGE_A}/files.zip", s.campaign),
    )?;
    assert_eq!(r.status(), 404);
    Ok(())
}

#[test]
fn a_file_no_record_refers_to_is_removed_only_after_the_grace_period() -> Result<()> {
    use fieldsync_server::blob_gc::{DEFAULT_GRACE, sweep};
    use std::time::{Duration, SystemTime};
    let mut s = setup()?;
    let removed = noise(50_000, 21);
    let kept = noise(40_000, 22);
    let back = noise(30_000, 23);
    let r = s
        .admin
        .attach(s.record, "photos", "拍错了.jpg", None, &removed)?;
    let k = s
        .admin
        .attach(s.record, "photos", "签到表.jpg", None, &kept)?;
    let b = s
        .admin
        .attach(s.record, "photos", "会议记录.jpg", None, &back)?;
    push(&s.server, &mut s.admin)?;
    let mut t = s.server.connect(&s.admin)?;
    assert_eq!(upload_attachments(&mut s.admin, &mut t, 3)?.uploaded, 3);
    // Two photos taken off the record (one of them comes back later).
    let only_kept = |extra: Option<&fieldsync_protocol::attachment::AttachmentRef>| {
        let mut m = BTreeMap::from([(k.sha256.clone(), k.description())]);
        if let Some(e) = extra {
            m.insert(e.sha256.clone(), e.description());
        }
        BTreeMap::from([("photos".to_string(), FieldValue::Map(m))])
    };
    s.admin.edit_form(s.record, &only_kept(None))?;
    push(&s.server, &mut s.admin)?;

    let rt = tokio::runtime::Runtime::new()?;
    let storage = rt.block_on(fieldsync_server::open_admin_storage(s.server.data_dir()))?;
    let blobs = std::sync::Arc::new(fieldsync_server::blobs::BlobStore::new(
        s.server.data_dir().join("attachments"),
    ));
    let now = SystemTime::now();
    let day = Duration::from_secs(24 * 3600);
    let first = rt.block_on(sweep(storage.as_ref(), &blobs, now, DEFAULT_GRACE))?;
    assert_eq!((first.unreferenced, first.removed), (2, 0), "{first:?}");
    let usage = first.campaigns[&s.campaign];
    assert_eq!((usage.files, usage.bytes, usage.waiting), (1, 40_000, 0));
    assert!(
        stored(&s.server, &r.sha256).is_some(),
        "kept during the grace period"
    );

    // Within the grace period one photo is put back on the record.
    s.admin.edit_form(s.record, &only_kept(Some(&b)))?;
    push(&s.server, &mut s.admin)?;
    let later = rt.block_on(sweep(
        storage.as_ref(),
        &blobs,
        now + 29 * day,
        DEFAULT_GRACE,
    ))?;
    assert_eq!((later.unreferenced, later.removed), (1, 0), "{later:?}");

    // After it: the one still unreferenced goes; the one referred to again and the kept stay.
    let after = rt.block_on(sweep(
        storage.as_ref(),
        &blobs,
        now + 31 * day,
        DEFAULT_GRACE,
    ))?;
    assert_eq!(
        (after.removed, after.removed_bytes),
        (1, 50_000),
        "{after:?}"
    );
    assert_eq!(stored(&s.server, &r.sha256), None);
    assert_eq!(stored(&s.server, &k.sha256).as_deref(), Some(&kept[..]));
    assert_eq!(stored(&s.server, &b.sha256).as_deref(), Some(&back[..]));
    assert_eq!(after.campaigns[&s.campaign].files, 2);
    Ok(())
}

#[test]
fn a_campaign_over_its_file_quota_is_told_so_and_keeps_its_records() -> Result<()> {
    let mut s = setup_on(TestServer::start_with_config(|c| {
        c.attachment_quota = Some(500_000)
    })?)?;
    let first = noise(300_000, 41);
    let second = noise(300_000, 43);
    let a = s.admin.attach(s.record, "photos", "一.jpg", None, &first)?;
    let b = s
        .admin
        .attach(s.record, "photos", "二.jpg", None, &second)?;
    push(&s.server, &mut s.admin)?;
    let mut t = s.server.connect(&s.admin)?;
    match upload_attachments(&mut s.admin, &mut t, 3) {
        Err(AttachmentSyncError::Transport(TransportError::Refused {
            status,
            code,
            message,
            ..
        })) => {
            assert_eq!((status, code.as_str()), (507, "quota_exceeded"));
            assert!(message.contains("上限 489 KB"), "{message}");
        }
        other => panic!("the second file fit: {other:?}"),
    }
    assert_eq!(stored(&s.server, &a.sha256).as_deref(), Some(&first[..]));
    assert_eq!(stored(&s.server, &b.sha256), None);
    // Nothing half-kept, the record whole, the file still waiting on the device.
    let part = s
        .server
        .data_dir()
        .join("attachments/uploads")
        .join(format!("{}.part", b.sha256));
    assert!(!part.exists());
    let waiting = s.admin.attachments_to_upload()?;
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].sha256, b.sha256);
    let record = s.server.get_json(&format!("/v1/records/{}", s.record))?;
    assert_eq!(record["fields"]["what"], "三会一课记录本");
    let usage = s.server.get_json("/v1/admin/attachments")?;
    assert_eq!(usage["quota_bytes"], 500_000, "{usage}");
    assert_eq!(
        usage["added_since_bytes"][s.campaign.to_string()],
        300_000,
        "{usage}"
    );
    Ok(())
}

#[test]
fn a_file_whose_bytes_all_arrived_but_was_not_stored_is_finished_not_assumed() -> Result<()> {
    // Every byte reached the server, then the server failed before hashing and storing it (a
    // crash): the partial file is full length. The device must not take that offset for "done".
    let mut s = setup()?;
    let photo = noise(120_000, 51);
    let p = s
        .admin
        .attach(s.record, "photos", "会议记录.jpg", None, &photo)?;
    push(&s.server, &mut s.admin)?;
    let uploads = s.server.data_dir().join("attachments/uploads");
    std::fs::create_dir_all(&uploads)?;
    std::fs::write(uploads.join(format!("{}.part", p.sha256)), &photo)?;
    let mut t = s.server.connect(&s.admin)?;
    let report = upload_attachments(&mut s.admin, &mut t, 3)?;
    assert_eq!((report.uploaded, report.bytes_sent), (1, 0), "{report:?}");
    assert_eq!(stored(&s.server, &p.sha256).as_deref(), Some(&photo[..]));
    assert!(!uploads.join(format!("{}.part", p.sha256)).exists());
    Ok(())
}
