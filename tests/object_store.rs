//! Attachment files kept in an S3-compatible object store (a real one: moto's server on
//! loopback, see `fieldsync::s3`): the shelf's story holds on disk and on S3 alike, and a server
//! started with `blob_store = s3://…` takes a photo and a recording through a line cut every
//! 100 KB into the bucket, serves them (ranges, previews, a village's ZIP) and sweeps them once
//! no record refers to them.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Result;
use fieldsync::{
    TestServer,
    fixtures::{ATTACHMENT_TEMPLATE, noise},
    proxy::{Cut, Proxy},
    s3::S3Server,
};
use fieldsync_client_core::{
    FieldValue, HttpTransport, Store, SyncOptions,
    attachments::{download_attachment, upload_attachments},
    sync::sync,
};
use fieldsync_protocol::attachment::sha256_hex;
use fieldsync_protocol::template::Template;
use fieldsync_server::blobs::{DiskShelf, ObjectShelf, Shelf};
use futures_util::StreamExt;
use uuid::Uuid;

const VILLAGE: &str = "350102001";

async fn read_all(shelf: &dyn Shelf, sha: &str, range: Option<(u64, u64)>) -> Option<Vec<u8>> {
    let mut stream = shelf.read(sha, range).await.expect("read")?;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.expect("chunk"));
    }
    Some(out)
}

/// What every shelf must do, whatever keeps the bytes.
async fn shelf_story(shelf: &dyn Shelf, scratch: &std::path::Path) -> Result<()> {
    let small = noise(300_000, 1);
    // Over the size sent in one request: goes up in parts.
    let large = noise(19_000_000, 2);
    let (s, l) = (sha256_hex(&small), sha256_hex(&large));
    assert!(!shelf.has(&s).await?);
    assert!(read_all(shelf, &s, None).await.is_none());

    for (sha, bytes) in [(&s, &small), (&l, &large)] {
        let file = scratch.join(format!("{sha}.part"));
        std::fs::write(&file, bytes)?;
        shelf.put(sha, &file).await?;
        assert!(!file.exists(), "the local file is taken onto the shelf");
        assert!(shelf.has(sha).await?);
    }
    assert_eq!(read_all(shelf, &s, None).await.as_deref(), Some(&small[..]));
    assert_eq!(read_all(shelf, &l, None).await.as_deref(), Some(&large[..]));
    // A range, as a resumed download or a player asks.
    assert_eq!(
        read_all(shelf, &l, Some((8_388_000, 8_389_000)))
            .await
            .as_deref(),
        Some(&large[8_388_000..=8_389_000])
    );
    assert_eq!(
        read_all(shelf, &s, Some((299_999, 299_999)))
            .await
            .as_deref(),
        Some(&small[299_999..])
    );

    // The same file put again (two servers finishing the same upload) changes nothing.
    let again = scratch.join("again.part");
    std::fs::write(&again, &small)?;
    shelf.put(&s, &again).await?;
    let mut listed: Vec<(String, u64)> = shelf
        .list()
        .await?
        .into_iter()
        .map(|f| (f.sha256, f.len))
        .collect();
    listed.sort();
    let mut expected = vec![
        (s.clone(), small.len() as u64),
        (l.clone(), large.len() as u64),
    ];
    expected.sort();
    assert_eq!(listed, expected);

    shelf.remove(&s).await?;
    shelf.remove(&s).await?;
    assert!(!shelf.has(&s).await?);
    assert!(read_all(shelf, &s, None).await.is_none());
    assert_eq!(shelf.list().await?.len(), 1);
    assert!(shelf.has(&l).await?);
    Ok(())
}

#[test]
fn the_shelf_story_holds_on_disk_and_on_an_s3_compatible_store() -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let dir = tempfile::tempdir()?;

    let disk = DiskShelf::new(dir.path().join("blobs"));
    rt.block_on(shelf_story(&disk, dir.path()))?;
    assert!(disk.local_path(&"ab".repeat(32)).is_some());

    let s3 = S3Server::start("fieldsync-story")?;
    let object = ObjectShelf::s3("s3://fieldsync-story/zzb/2026", &s3.options())?;
    rt.block_on(shelf_story(&object, dir.path()))?;
    assert!(object.local_path(&"ab".repeat(32)).is_none());
    // Under the address's prefix, as `<prefix>/blobs/ab/<hex>`.
    let keys = s3.keys("")?;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].starts_with("zzb/2026/blobs/"), "{keys:?}");

    // A wrong address or option is said plainly, before anything is served.
    let e = ObjectShelf::s3("zzb-files", &[]).unwrap_err();
    assert!(e.to_string().contains("s3://bucket"), "{e}");
    let e = ObjectShelf::s3(
        "s3://zzb",
        &[("aws_endpoit".to_string(), "http://127.0.0.1:1".to_string())],
    )
    .unwrap_err();
    assert!(e.to_string().contains("aws_endpoit"), "{e}");
    Ok(())
}

struct Setup {
    server: TestServer,
    s3: S3Server,
    admin: Store,
    campaign: Uuid,
    record: Uuid,
}

fn setup() -> Result<Setup> {
    let s3 = S3Server::start("fieldsync")?;
    let options = s3.options();
    let server = TestServer::start_with_config(move |c| {
        c.blob_store = Some("s3://fieldsync/district".to_string());
        c.blob_store_options = options;
    })?;
    let campaign = Uuid::now_v7();
    let mut admin = Store::open_in_memory()?;
    admin.publish_template(campaign, &Template::parse(ATTACHMENT_TEMPLATE)?)?;
    admin.create(
        "place",
        campaign,
        VILLAGE,
        &[
            ("code", FieldValue::Str(VILLAGE.into())),
            ("name", FieldValue::Str("城关村".into())),
            ("level", FieldValue::Str("village".into())),
        ],
    )?;
    let fields = BTreeMap::from([("what".to_string(), FieldValue::Str("三会一课记录本".into()))]);
    let record = admin.create_form(campaign, "visit", VILLAGE, &fields)?;
    push(&server, &mut admin)?;
    Ok(Setup {
        server,
        s3,
        admin,
        campaign,
        record,
    })
}

fn push(server: &TestServer, store: &mut Store) -> Result<()> {
    let mut t = server.connect(store)?;
    sync(store, &mut t, &SyncOptions::default())?;
    server.wait_merged()?;
    Ok(())
}

/// A small JPEG, so that the dashboard has a picture to make a preview of.
fn jpeg() -> Result<Vec<u8>> {
    let photo = image::RgbImage::from_fn(900, 600, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    });
    let mut bytes = std::io::Cursor::new(Vec::new());
    photo.write_to(&mut bytes, image::ImageFormat::Jpeg)?;
    Ok(bytes.into_inner())
}

#[test]
fn a_server_on_s3_keeps_files_in_the_bucket_serves_them_and_sweeps_them() -> Result<()> {
    use fieldsync_server::blob_gc::{DEFAULT_GRACE, sweep};
    use std::time::{Duration, SystemTime};
    let mut s = setup()?;
    let photo = jpeg()?;
    let recording = noise(12_000_000, 11);
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

    // Up through a line cut every 100 KB: whole, once, into the bucket.
    let proxy = Proxy::start(s.server.addr)?;
    proxy.cut_next(
        Cut {
            upstream_after: Some(100_000),
            downstream_after: None,
        },
        100_000,
    );
    let mut t = HttpTransport::new(&proxy.url())?.with_token(s.server.token_for(&s.admin)?);
    let report = upload_attachments(&mut s.admin, &mut t, 1_000)?;
    assert_eq!(report.uploaded, 2, "{report:?}");
    assert!(report.retries > 50, "the line was cut: {report:?}");
    let total = (photo.len() + recording.len()) as f64;
    assert!((proxy.bytes_up() as f64) < 1.2 * total);
    let key = |sha: &str| format!("district/blobs/{}/{sha}", &sha[..2]);
    let mut keys = s.s3.keys("district/")?;
    keys.sort();
    let mut expected = vec![key(&p.sha256), key(&r.sha256)];
    expected.sort();
    assert_eq!(keys, expected);
    assert_eq!(s.s3.object(&key(&r.sha256))?, recording);
    assert_eq!(s.s3.object(&key(&p.sha256))?, photo);
    // Nothing of them stays on the server's disk but what is on its way (nothing now).
    let local = s.server.data_dir().join("attachments");
    assert!(!local.join("blobs").exists());
    let parts = std::fs::read_dir(local.join("uploads"))
        .map(|d| d.count())
        .unwrap_or_default();
    assert_eq!(parts, 0);

    // Down on a second device of the department, through a line cut every 1 MB downstream:
    // resumed with ranges read from the bucket.
    let mut reader = Store::open_in_memory()?;
    let mut t = s.server.connect(&reader)?;
    sync(&mut reader, &mut t, &SyncOptions::default())?;
    let down = Proxy::start(s.server.addr)?;
    down.cut_next(
        Cut {
            upstream_after: None,
            downstream_after: Some(1_000_000),
        },
        100,
    );
    let mut t = HttpTransport::new(&down.url())?.with_token(s.server.token_for(&reader)?);
    let got = download_attachment(&mut reader, &mut t, s.record, &r.sha256)?;
    assert_eq!(sha256_hex(&got), r.sha256);
    assert!(down.connections() > 5, "the download was cut and resumed");

    // The dashboard: the photo's preview is made from the bucket's copy; the village's ZIP
    // holds both files.
    let token = s.server.admin_token.clone();
    let page = format!("/ui/r/{}/a/{}", s.record, p.sha256);
    let client = reqwest::blocking::Client::new();
    let preview = client
        .get(format!("{}{page}?thumb=1", s.server.url()))
        .header("cookie", format!("fieldsync_session={token}"))
        .send()?;
    assert_eq!(preview.status(), 200, "{:?}", preview.text());
    let small = image::load_from_memory(&preview.bytes()?)?;
    assert_eq!(small.width(), 400);
    assert!((266..=267).contains(&small.height()), "{}", small.height());
    let zip = client
        .get(format!(
            "{}/ui/c/{}/v/{VILLAGE}/files.zip",
            s.server.url(),
            s.campaign
        ))
        .header("cookie", format!("fieldsync_session={token}"))
        .send()?;
    assert_eq!(zip.status(), 200);
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(zip.bytes()?.to_vec()))?;
    let mut hashes = Vec::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i)?;
        if f.name() == "说明.txt" {
            continue;
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut bytes)?;
        hashes.push(sha256_hex(&bytes));
    }
    hashes.sort();
    let mut both = vec![p.sha256.clone(), r.sha256.clone()];
    both.sort();
    assert_eq!(hashes, both);
    // The copies fetched for the ZIP and the preview are gone from the scratch directory.
    let scratch = std::fs::read_dir(local.join("tmp"))
        .map(|d| d.count())
        .unwrap_or_default();
    assert_eq!(scratch, 0);

    // The recording taken off the record: swept from the bucket after the grace period.
    let only_photo = BTreeMap::from([(
        "photos".to_string(),
        FieldValue::Map(BTreeMap::from([(p.sha256.clone(), p.description())])),
    )]);
    s.admin.edit_form(s.record, &only_photo)?;
    push(&s.server, &mut s.admin)?;
    let rt = tokio::runtime::Runtime::new()?;
    let storage = rt.block_on(fieldsync_server::open_admin_storage(s.server.data_dir()))?;
    let blobs = Arc::new(fieldsync_server::blobs::BlobStore::with_shelf(
        &local,
        Arc::new(ObjectShelf::s3("s3://fieldsync/district", &s.s3.options())?),
    ));
    let now = SystemTime::now();
    let first = rt.block_on(sweep(storage.as_ref(), &blobs, now, DEFAULT_GRACE))?;
    assert_eq!((first.unreferenced, first.removed), (1, 0), "{first:?}");
    assert_eq!(first.campaigns[&s.campaign].files, 1);
    let after = rt.block_on(sweep(
        storage.as_ref(),
        &blobs,
        now + DEFAULT_GRACE + Duration::from_secs(24 * 3600),
        DEFAULT_GRACE,
    ))?;
    assert_eq!(
        (after.removed, after.removed_bytes),
        (1, recording.len() as u64)
    );
    assert_eq!(s.s3.keys("district/")?, vec![key(&p.sha256)]);
    Ok(())
}
