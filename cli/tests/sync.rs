//! `fieldsync sync` over a bad network: a busy server waited out, a server that is down, a line
//! that breaks, a sync killed part-way; it keeps trying (with backoff) until it succeeds or the
//! user's bound runs out, and nothing is ever lost.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{Device, VILLAGE, p};
use fieldsync::TestServer;
use fieldsync_protocol::auth::Role;

#[test]
fn sync_waits_for_a_busy_servers_retry_after_and_finishes() -> Result<()> {
    // Two requests per device per minute: the sync is refused with 429 part-way and must wait
    // for the next minute (the server's Retry-After) rather than give up.
    let data = tempfile::tempdir()?;
    let server = TestServer::start_with(
        data.path(),
        fieldsync_server::auth::Limits {
            requests_per_minute: 2,
            ..Default::default()
        },
    )?;
    let (d, _) = Device::department()?;
    d.enroll(&server, "组长", Role::Admin);
    let pending = d.json(&["status"])["pending_upload"].as_u64().unwrap();
    assert!(pending > 0);
    let (code, out, err) = d.run(&["--lang", "en", "sync", "--tries", "1"]);
    assert_eq!(code, 0, "{err}{out}");
    assert!(
        err.contains("the server is busy and asked to wait"),
        "{err}"
    );
    assert_eq!(d.json(&["status"])["pending_upload"], 0);
    assert_eq!(server.get_json("/v1/status")?["changes"], pending);
    Ok(())
}

#[test]
fn sync_with_the_server_down_exits_4_and_says_nothing_was_lost() -> Result<()> {
    let (d, _) = Device::department()?;
    // Enrolled with a server that then goes away.
    let mut server = TestServer::start()?;
    d.enroll(&server, "组员", Role::Admin);
    server.stop()?;
    let pending = d.json(&["status"])["pending_upload"].as_u64().unwrap();
    let (code, _, err) = d.run(&["sync", "--tries", "1"]);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains(&format!("数据没有丢失：{pending} 条更改保存在本机")),
        "{err}"
    );
    assert!(err.contains("已尝试 1 次"), "{err}");
    let (code, _, err) = d.run(&["--lang", "en", "sync", "--tries", "2"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("trying again in"), "{err}");
    assert!(err.contains("(try 2 of 2)"), "{err}");
    assert!(!err.contains("(try 3"), "{err}");
    assert!(err.contains("gave up after 2 tries"), "{err}");
    assert!(err.contains("nothing was lost"), "{err}");
    // A bound in time: it tries again until the time is up, then stops.
    let (code, _, err) = d.run(&["--lang", "en", "sync", "--give-up-after", "2s"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("(try 2, until 2s)"), "{err}");
    assert!(err.contains("gave up after"), "{err}");
    // The old spelling: retries after the first try.
    let (code, _, err) = d.run(&["--lang", "en", "sync", "--retries", "0"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("gave up after 1 try"), "{err}");
    assert_eq!(d.json(&["status"])["pending_upload"], pending);
    // Plain http to another machine is refused before anything is sent.
    let (code, _, err) = d.run(&["init", "--server", "http://192.0.2.1:8080"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("refusing plain http"), "{err}");
    Ok(())
}

#[test]
fn an_interrupted_sync_loses_nothing_and_the_next_one_finishes() -> Result<()> {
    let server = TestServer::start()?;
    let (a, campaign) = Device::department()?;
    let member = a.member();
    // Enough records that pulling them takes a while.
    std::fs::write(
        a.path("i.json"),
        format!(
            r#"{{"date": "2026-05-18", "interviewer": "刘明", "interviewee_type": "member", "interviewee": "{member}", "notes": {{"text": "{}"}}}}"#,
            "班子团结协作，集体经济收入渠道单一，群众反映较好。".repeat(12)
        ),
    )?;
    for _ in 0..150 {
        a.ok(&[
            "new",
            "interview",
            "--village",
            VILLAGE,
            "--file",
            p(&a.path("i.json")),
        ]);
    }
    a.enroll(&server, "组长", Role::Admin);
    a.ok(&["sync"]);
    let total = a.json(&["status"])["records"].as_u64().unwrap();
    let b = Device::new()?;
    b.enroll(&server, "组员", Role::Admin);
    b.ok(&["init", "--campaign", &campaign]);
    // Kill B's first sync at several moments (SIGKILL, as a phone's system kills an app; not
    // SIGINT, which a shell that starts this suite in the background makes children ignore);
    // each run keeps what it applied and the next one goes on from there.
    let mut interrupted = 0;
    for delay_ms in [5, 40, 120] {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("fieldsync"))
            .env("FIELDSYNC_STORE", b.path("store.sqlite3"))
            .args(["sync", "--tries", "1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        std::thread::sleep(Duration::from_millis(delay_ms));
        std::process::Command::new("kill")
            .args(["-KILL", &child.id().to_string()])
            .status()?;
        if child.wait()?.code().is_none() {
            interrupted += 1;
        }
        let status = b.json(&["status"]);
        assert!(status["records"].as_u64().unwrap() <= total);
    }
    assert!(
        interrupted > 0,
        "no sync was interrupted; the test proves nothing"
    );
    let summary = b.json(&["sync"]);
    assert_eq!(summary["waiting"], 0, "{summary}");
    assert_eq!(b.json(&["status"])["records"], total);
    Ok(())
}

#[test]
fn sync_keeps_trying_through_a_broken_line_until_it_gets_through() -> Result<()> {
    let server = TestServer::start()?;
    let proxy = fieldsync::proxy::Proxy::start(server.addr)?;
    let (d, _) = Device::department()?;
    let person = server.add_person("组长", Role::Admin, None)?;
    let code = server.code_for(person)?;
    d.ok(&["enroll", "--server", &proxy.url(), "--code", &code]);
    d.ok(&["sync"]);
    assert_eq!(d.json(&["status"])["pending_upload"], 0);
    // The next connections break before an answer comes back: the pull is cut more times in a
    // row than one sync asks again by itself (`SyncOptions::pull_retries`, 10), so the sync
    // fails, and the command tries again (no bound given) until a connection holds.
    proxy.cut_next(
        fieldsync::proxy::Cut {
            upstream_after: Some(0),
            downstream_after: None,
        },
        12,
    );
    let (code, out, err) = d.run(&["sync"]);
    assert_eq!(code, 0, "{err}{out}");
    assert!(err.contains("秒后第 2 次尝试"), "{err}");
    assert!(err.contains("按 Ctrl-C 可停止"), "{err}");
    assert!(out.contains("同步完成"), "{out}");
    Ok(())
}

/// A campaign whose one form takes photos, created on `d`; the id of a record of it.
fn photo_record(d: &Device) -> String {
    let template = d.path("photos.toml");
    std::fs::write(
        &template,
        "id = \"photos\"\nversion = 1\nname.zh = \"附件\"\nname.en = \"Photos\"\n\
         [kinds.visit]\nlabel = { zh = \"查阅资料\", en = \"Document review\" }\n\
         [[kinds.visit.fields]]\nname = \"what\"\ntype = \"text\"\nlabel = { zh = \"资料\", en = \"Document\" }\n\
         [[kinds.visit.fields]]\nname = \"photos\"\ntype = \"attachments\"\naccept = [\"image/*\"]\n\
         label = { zh = \"照片\", en = \"Photos\" }\n",
    )
    .expect("write the template");
    d.json(&[
        "campaign-create",
        "--template",
        p(&template),
        "--name",
        "附件测试",
        "--year",
        "2026",
    ]);
    d.json(&["new", "visit", "--village", VILLAGE, "--set", "what=签到表"])["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn an_attached_photo_is_uploaded_after_the_records_and_listed_as_uploaded() -> Result<()> {
    let server = TestServer::start()?;
    let d = Device::new()?;
    let id = photo_record(&d);
    let photo = d.path("签到表.jpg");
    std::fs::write(&photo, vec![7u8; 300_000])?;
    let added = d.json(&["attach", &id, p(&photo)]);
    assert_eq!(added["type"], "image/jpeg");
    assert_eq!(added["field"], "photos");
    let listed = d.json(&["attachments", &id]);
    assert_eq!(listed[0]["state"], "waiting");
    // A file the form does not take: refused, nothing kept.
    let sound = d.path("录音.mp3");
    std::fs::write(&sound, b"mp3")?;
    let (code, _, err) = d.run(&["attach", &id, p(&sound)]);
    assert_ne!(code, 0);
    assert!(err.contains("照片"), "{err}");
    assert_eq!(d.json(&["attachments", &id]).as_array().unwrap().len(), 1);

    d.enroll(&server, "组长", Role::Admin);
    let (code, out, err) = d.run(&["sync", "--tries", "3"]);
    assert_eq!(code, 0, "{err}{out}");
    assert!(out.contains("附件：上传 1 个，0 个等待下次同步"), "{out}");
    assert_eq!(d.json(&["attachments", &id])[0]["state"], "uploaded");
    let sha = added["sha256"].as_str().unwrap();
    let on_server = server
        .data_dir()
        .join("attachments/blobs")
        .join(&sha[..2])
        .join(sha);
    assert_eq!(std::fs::read(on_server)?, vec![7u8; 300_000]);

    // A colleague takes the village's files for offline viewing, then saves one to a folder.
    let campaign = d.json(&["status"])["campaign"]
        .as_str()
        .expect("the device's campaign")
        .to_string();
    let c = Device::new()?;
    c.enroll(&server, "同事", Role::Admin);
    c.ok(&["init", "--campaign", &campaign]);
    c.ok(&["sync", "--tries", "3"]);
    assert_eq!(c.json(&["attachments", &id])[0]["state"], "on_server");
    let fetched = c.json(&["fetch-files", "--village", VILLAGE]);
    assert_eq!(fetched["fetched"], 1, "{fetched}");
    assert_eq!(c.json(&["attachments", &id])[0]["state"], "uploaded");
    let folder = c.path("saved");
    c.ok(&["attachments", &id, "--save", p(&folder)]);
    assert_eq!(
        std::fs::read(folder.join("签到表.jpg"))?,
        vec![7u8; 300_000]
    );
    Ok(())
}

#[test]
fn a_sync_killed_mid_upload_resumes_the_file_from_the_servers_offset() -> Result<()> {
    use fieldsync::proxy::{Line, Proxy};
    let server = TestServer::start()?;
    let proxy = Proxy::start(server.addr)?;
    let d = Device::new()?;
    let id = photo_record(&d);
    // Bytes that do not compress, as a photo's.
    let mut x: u32 = 0x9e37_79b9;
    let bytes: Vec<u8> = (0..400_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let photo = d.path("签到表.jpg");
    std::fs::write(&photo, &bytes)?;
    let sha = d.json(&["attach", &id, p(&photo)])["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    // Enrolled through the proxy, which plays a 64 kbit/s line: 400 KB take 50 s to send.
    let person = server.add_person("组长", Role::Admin, None)?;
    let code = server.code_for(person)?;
    d.json(&[
        "enroll",
        "--server",
        &proxy.url(),
        "--code",
        &code,
        "--name",
        "组长",
    ]);
    proxy.shape(Line::kbit(64, Duration::from_millis(600)));
    let part = server
        .data_dir()
        .join("attachments/uploads")
        .join(format!("{sha}.part"));
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("fieldsync"))
        .env("FIELDSYNC_STORE", d.path("store.sqlite3"))
        .args(["sync", "--tries", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    // Killed (SIGKILL, as a phone's system kills an app) once the server holds 100 KB of it.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let held = loop {
        let len = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        if len >= 100_000 {
            break len;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the upload never got 100 KB through"
        );
        assert!(
            child.try_wait()?.is_none(),
            "the sync ended before the kill"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    std::process::Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()?;
    assert!(child.wait()?.code().is_none(), "the sync was killed");
    assert_eq!(d.json(&["attachments", &id])[0]["state"], "waiting");
    let kept = std::fs::metadata(&part)?.len();
    assert!(kept >= held && kept < bytes.len() as u64, "{kept}");

    // The next sync (the line fast again) sends only what the server lacks.
    proxy.shape(Line::default());
    proxy.reset_counts();
    let (code, out, err) = d.run(&["sync", "--tries", "3"]);
    assert_eq!(code, 0, "{err}{out}");
    assert_eq!(d.json(&["attachments", &id])[0]["state"], "uploaded");
    let blob = server
        .data_dir()
        .join("attachments/blobs")
        .join(&sha[..2])
        .join(&sha);
    assert_eq!(std::fs::read(blob)?, bytes);
    let up = proxy.bytes_up();
    let rest = bytes.len() as u64 - kept;
    eprintln!(
        "after the kill the server held {kept} bytes; the next sync sent {up} for the {rest} left"
    );
    assert!(
        up < rest + 20_000,
        "sent {up} bytes where {rest} were missing: the upload started over"
    );
    Ok(())
}
