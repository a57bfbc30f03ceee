//! The real `fieldsync-server` binary killed with SIGKILL right after acknowledging pushes loses
//! nothing it acknowledged, nor the audit line of any request it answered, and merges what it had
//! not merged yet when it starts again.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};
use fieldsync_client_core::{FieldValue, HttpTransport, Store, SyncOptions, sync::sync};
use uuid::Uuid;

/// The output of `fieldsync-server admin ARGS` on `data`.
fn admin(data: &std::path::Path, args: &[&str]) -> Result<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_fieldsync-server"))
        .args(["--data-dir"])
        .arg(data)
        .args(["admin"])
        .args(args)
        .env("FIELDSYNC_LOG", "warn")
        .output()?;
    anyhow::ensure!(out.status.success(), "admin {args:?} failed: {out:?}");
    Ok(String::from_utf8(out.stdout)?)
}

/// A one-time code from `fieldsync-server admin`, for a new administrator.
fn admin_code(data: &std::path::Path, name: &str) -> Result<String> {
    let run = |args: &[&str]| admin(data, args);
    let person = run(&["add-person", "--name", name, "--role", "admin"])?;
    let person = person.split('\t').next().context("person id")?.to_string();
    Ok(run(&["code", "--person", &person])?.trim().to_string())
}

/// A transport for `device`, enrolled with a code issued from the command line.
fn enrolled(url: &str, data: &std::path::Path, device: &Store) -> Result<HttpTransport> {
    let code = admin_code(data, "崩溃测试")?;
    let mut t = HttpTransport::new(url)?;
    t.enroll(device.device_id(), &code, "crash test")?;
    Ok(t)
}

fn start(data: &std::path::Path) -> Result<(Child, String)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fieldsync-server"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("FIELDSYNC_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    // "fieldsync server on http://127.0.0.1:PORT (data in ...)", after the first-start notice.
    let mut out = BufReader::new(child.stdout.take().context("stdout")?);
    let mut line = String::new();
    while !line.starts_with("fieldsync server on") {
        line.clear();
        anyhow::ensure!(
            out.read_line(&mut line)? > 0,
            "the server printed no address"
        );
    }
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .context("no address printed")?
        .to_string();
    Ok((child, url))
}

#[test]
fn a_server_killed_after_acknowledging_keeps_every_acknowledged_change() -> Result<()> {
    let data = tempfile::tempdir()?;
    let (mut server, url) = start(data.path())?;
    let mut device = Store::open_in_memory()?;
    let campaign = Uuid::from_u128(77);
    for i in 0..200 {
        device.create(
            "evaluation_form",
            campaign,
            "350102003",
            &[
                ("respondent", FieldValue::Str(format!("党员代表{i}"))),
                (
                    "comment",
                    FieldValue::Text("对班子总体满意，希望加强村务公开。".into()),
                ),
            ],
        )?;
    }
    let options = SyncOptions {
        push_batch_bytes: 16 << 10,
        ..Default::default()
    };
    let mut t = enrolled(&url, data.path(), &device)?;
    let report = sync(&mut device, &mut t, &options)?;
    assert_eq!(report.pushed, 400);
    assert!(report.push_requests > 5);
    assert_eq!(device.pending_upload()?, 0);
    // A refused request, answered just before the kill.
    let refused = reqwest::blocking::Client::new()
        .get(format!("{url}/v1/records/{}", Uuid::now_v7()))
        .bearer_auth("fst_not-a-token")
        .send()?;
    assert_eq!(refused.status(), 401);
    // No graceful shutdown: SIGKILL, with merging most likely still under way.
    server.kill()?;
    server.wait()?;
    // Every answered push and the refusal are in the audit log.
    let audit = admin(data.path(), &["audit", "--limit", "1000"])?;
    let pushes = audit.lines().filter(|l| l.contains("\tpush\tok\t")).count();
    assert_eq!(pushes as u64, report.push_requests, "{audit}");
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\trefused\trefused\t") && l.contains("\"unauthorized\"")),
        "{audit}"
    );

    let (mut server, url) = start(data.path())?;
    let mut fresh = Store::open_in_memory()?;
    let mut t = enrolled(&url, data.path(), &fresh)?;
    let report = sync(&mut fresh, &mut t, &SyncOptions::default())?;
    assert_eq!(report.received, 400, "every acknowledged change survived");
    assert_eq!(fresh.count()?, 200);
    let token = {
        let mut admin = HttpTransport::new(&url)?;
        let code = admin_code(data.path(), "管理员")?;
        admin.enroll(Uuid::new_v4(), &code, "admin")?.token
    };
    // The restarted server finishes merging what it had not merged.
    let mut merged = false;
    for _ in 0..300 {
        let status: serde_json::Value = reqwest::blocking::Client::new()
            .get(format!("{url}/v1/status"))
            .bearer_auth(&token)
            .send()?
            .json()?;
        assert_eq!(status["changes"], 400);
        if status["unmerged_records"] == 0 {
            assert_eq!(status["records"], 200);
            merged = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(merged, "the restarted server did not merge everything");
    server.kill()?;
    server.wait()?;
    Ok(())
}
