//! The field app in a real headless Chromium (Debian's, as the dashboard's browser test uses,
//! driven by the top-level tests' pinned playwright-core from `app/tests/browser/app.mjs`):
//! open the launch address, record an interview with a 500-character Chinese note, a
//! questionnaire with a missing answer shown at its field and then corrected, switch to
//! English, a document review with a photo added and shown on its page; screenshots of every page at laptop and phone width in `target/tmp/app-browser/`.
//! What was saved is then checked in the store, independently of the page.

mod common;

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use common::{A1, App};
use fieldsync_client_core::FieldValue;
use serde_json::Value;

#[test]
fn a_field_worker_records_in_chromium() -> Result<()> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    ensure!(
        Path::new(&chromium).exists(),
        "Chromium is needed (tests/browser.rs at the top level installs it)"
    );
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser");
    if !top.join("node_modules/playwright-core").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&top)
            .status()
            .context("npm is needed for the browser test")?;
        ensure!(status.success(), "npm ci in {} failed", top.display());
    }
    let playwright = top
        .join("node_modules/playwright-core/index.mjs")
        .canonicalize()?;
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("app-browser");
    let _ = std::fs::remove_dir_all(&out);

    let app = App::start()?;
    let output = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/app.mjs"))
        .args([app.launch_url().as_str(), A1])
        .arg(&out)
        .env("CHROMIUM", &chromium)
        .env("PLAYWRIGHT", &playwright)
        .output()
        .context("node is needed for the browser test")?;
    if !output.status.success() {
        bail!(
            "the browser script failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let summary: Value = serde_json::from_slice(
        output
            .stdout
            .split(|b| *b == b'\n')
            .rfind(|l| l.starts_with(b"{"))
            .context("no summary printed")?,
    )?;
    assert_eq!(summary["cspViolations"], serde_json::json!([]), "{summary}");
    assert_eq!(summary["headerBackground"], "rgb(155, 28, 28)", "{summary}");
    assert_eq!(
        summary["homeUrl"],
        format!("{}/", app.base),
        "the secret left the address"
    );
    assert_eq!(summary["villages"], 2);
    assert_eq!(summary["recordShowsNote"], true, "{summary}");
    assert!(
        summary["problemAtField"]
            .as_str()
            .is_some_and(|p| p.contains("为必填项")),
        "{summary}"
    );
    assert!(
        summary["photoFlash"]
            .as_str()
            .is_some_and(|f| f.contains("已添加 1 个文件：三会一课记录.png")),
        "{summary}"
    );
    assert_eq!(summary["photoWidth"], 4, "the photo shows: {summary}");
    assert!(
        summary["photoState"]
            .as_str()
            .is_some_and(|s| s.contains("等待上传")),
        "{summary}"
    );
    assert_eq!(summary["english"], "Villages");

    let interviews = app.records("interview")?;
    assert_eq!(interviews.len(), 1);
    let FieldValue::Text(note) = &interviews[0].fields["notes"] else {
        panic!("{:?}", interviews[0].fields)
    };
    assert_eq!(note.chars().count(), 500);
    assert_eq!(
        summary["recordUrl"],
        format!("/r/{}", interviews[0].header.id)
    );
    assert_eq!(app.records("questionnaire")?.len(), 1);
    for shot in summary["shots"].as_array().context("shots")? {
        let name = shot.as_str().context("name")?;
        let len = std::fs::metadata(out.join(name))?.len();
        assert!(len > 10_000, "{name} is {len} bytes");
    }
    let reviews = app.records("document_review")?;
    assert_eq!(reviews.len(), 1);
    let files = app.store()?.attachments_of(reviews[0].header.id)?;
    assert_eq!(files.len(), 1);
    assert_eq!(
        (files[0].name.as_str(), files[0].media_type.as_str()),
        ("三会一课记录.png", "image/png")
    );
    assert_eq!(summary["shots"].as_array().map(Vec::len), Some(16));
    Ok(())
}
