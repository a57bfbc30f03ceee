//! Attachments reach the server whole over a line that drops every ~100 KB: resumed from the
//! server's offset, stored once under their hash, refused when tampered with, and fetched only
//! by devices that may see their record.

use anyhow::Result;
use fieldsync::{
    TestServer,
    proxy::{Cut, Proxy},
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

const TEMPLATE: &str = r#"
id = "photos"
version = 1
name.zh = "附件测试"
name.en = "Attachment test"
[kinds.visit]
label = { zh = "查阅资料", en = "Document review" }
[[kinds.visit.fields]]
name = "what"
type = "text"
label = { zh = "资料", en = "Document" }
[[kinds.visit.fields]]
name = "photos"
type = "attachments"
accept = ["image/*", "audio/*"]
max_bytes = 30000000
label = { zh = "照片和录音", en = "Photos and recordings" }
"#;

const VILLAGE_A: &str = "350102001";
const VILLAGE_B: &str = "350102002";

/// Bytes that do not compress (a photo's would not either).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

struct Setup {
    server: TestServer,
    admin: Store,
    campaign: Uuid,
    group_b: Uuid,
    record: Uuid,
}

fn setup() -> Result<Setup> {
    let server = TestServer::start()?;
    let campaign = Uuid::now_v7();
    let mut admin = Store::open_in_memory()?;
    admin.publish_template(campaign, &Template::parse(TEMPLATE)?)?;
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
    // A chunk sent twice is harmless: the server says where it is.
    let twice = patch(0, &photo[..100_000], &photo[..100_000])?;
    assert_eq!(twice.status(), 409);
    assert_eq!(
        twice.json::<serde_json::Value>()?["error"]["code"],
        "offset_mismatch"
    );
    // Wrong bytes with their own checksum pass the chunk but not the whole file.
    let forged = patch(100_000, &bad, &bad)?;
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
