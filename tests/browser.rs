//! The dashboard in a real headless Chromium (Debian's, installed here when missing, driven by
//! playwright-core from `tests/browser/`): sign in with a one-time code, open the campaign and a
//! village dossier, resolve a conflict, search a phrase, return two records for changes from the
//! review queue (and read it at phone width), download the XLSX and the DOCX, switch
//! to English, with nothing blocked by the Content-Security-Policy. Every step leaves a screenshot in `target/tmp/browser/`; the server's state and
//! the downloaded files are then checked here, independently of the page.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use fieldsync::{TestServer, generator};
use fieldsync_protocol::auth::Role;
use serde_json::Value;

/// Debian's Chromium (and a CJK font, so the screenshots are readable), installed when missing.
fn chromium() -> Result<PathBuf> {
    let path =
        PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    if path.exists() {
        return Ok(path);
    }
    let apt = |args: &[&str]| -> Result<()> {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("apt-get is not available to install chromium")?;
        ensure!(status.success(), "apt-get {args:?} failed");
        Ok(())
    };
    if apt(&["install", "-y", "-qq", "chromium", "fonts-wqy-zenhei"]).is_err() {
        apt(&["update", "-qq"])?;
        apt(&["install", "-y", "-qq", "chromium", "fonts-wqy-zenhei"])?;
    }
    ensure!(
        path.exists(),
        "chromium was installed but {} is missing",
        path.display()
    );
    Ok(path)
}

/// playwright-core from the npm registry, pinned by `tests/browser/package-lock.json`.
fn playwright(dir: &Path) -> Result<()> {
    if dir.join("node_modules/playwright-core").exists() {
        return Ok(());
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .context("npm is needed for the browser test")?;
    ensure!(status.success(), "npm ci in {} failed", dir.display());
    Ok(())
}

/// A 320 × 240 PNG (blue and grey halves), standing in for a photo of the minutes.
const MINUTES_PNG: &[u8] = &[
    137, 80, 78, 71, 13, 10, 26, 10, 0, 0, 0, 13, 73, 72, 68, 82, 0, 0, 1, 64, 0, 0, 0, 240, 8, 2,
    0, 0, 0, 254, 79, 42, 60, 0, 0, 3, 49, 73, 68, 65, 84, 120, 218, 237, 211, 65, 13, 0, 0, 8, 3,
    49, 148, 32, 12, 117, 8, 67, 12, 30, 120, 146, 94, 38, 97, 141, 172, 182, 199, 27, 189, 46, 92,
    28, 96, 1, 108, 0, 11, 96, 3, 88, 0, 27, 192, 0, 27, 192, 2, 216, 0, 22, 192, 6, 176, 0, 6, 88,
    0, 27, 192, 2, 216, 0, 22, 192, 6, 48, 192, 6, 176, 0, 54, 128, 5, 176, 1, 44, 128, 13, 96,
    128, 13, 96, 1, 108, 0, 11, 96, 3, 88, 0, 3, 44, 128, 13, 96, 1, 108, 0, 11, 96, 3, 24, 96, 3,
    88, 0, 27, 192, 2, 216, 0, 22, 192, 0, 11, 96, 3, 88, 0, 27, 192, 2, 216, 0, 22, 192, 0, 11,
    96, 3, 88, 0, 27, 192, 2, 216, 0, 6, 216, 0, 22, 192, 6, 176, 0, 54, 128, 5, 48, 192, 2, 216,
    0, 22, 192, 6, 176, 0, 54, 128, 1, 246, 114, 128, 5, 176, 1, 44, 128, 13, 96, 1, 108, 0, 3,
    108, 0, 11, 96, 3, 88, 0, 27, 192, 2, 24, 96, 1, 108, 0, 11, 96, 3, 88, 0, 27, 192, 0, 27, 192,
    2, 216, 0, 22, 192, 6, 176, 0, 54, 23, 7, 216, 0, 22, 192, 6, 176, 0, 54, 128, 5, 48, 192, 2,
    216, 0, 22, 192, 6, 176, 0, 54, 128, 1, 54, 128, 5, 176, 1, 44, 128, 13, 96, 1, 12, 176, 0, 54,
    128, 5, 176, 1, 44, 128, 13, 96, 1, 12, 176, 0, 54, 128, 5, 176, 1, 44, 128, 13, 96, 128, 13,
    96, 1, 108, 0, 11, 96, 3, 88, 0, 3, 44, 128, 13, 96, 1, 108, 0, 11, 96, 3, 24, 96, 3, 88, 0,
    27, 192, 2, 216, 0, 22, 192, 6, 48, 192, 6, 176, 0, 54, 128, 5, 176, 1, 44, 128, 1, 22, 192, 6,
    176, 0, 54, 128, 5, 176, 1, 12, 176, 1, 44, 128, 13, 96, 1, 108, 0, 11, 96, 128, 5, 176, 1, 44,
    128, 13, 96, 1, 108, 0, 11, 96, 128, 5, 176, 1, 44, 128, 13, 96, 1, 108, 0, 3, 108, 0, 11, 96,
    3, 88, 0, 27, 192, 2, 24, 96, 1, 108, 0, 11, 96, 3, 88, 0, 27, 192, 2, 24, 96, 1, 108, 0, 11,
    96, 3, 88, 0, 27, 192, 0, 27, 192, 2, 216, 0, 22, 192, 6, 176, 0, 6, 88, 0, 27, 192, 2, 216, 0,
    22, 192, 6, 48, 192, 6, 176, 0, 54, 128, 5, 176, 1, 44, 128, 13, 96, 128, 13, 96, 1, 108, 0,
    11, 96, 3, 88, 0, 3, 44, 128, 13, 96, 1, 108, 0, 11, 96, 3, 24, 96, 3, 88, 0, 27, 192, 2, 216,
    0, 22, 192, 0, 11, 96, 3, 88, 0, 27, 192, 2, 216, 0, 22, 192, 0, 11, 96, 3, 88, 0, 27, 192, 2,
    216, 0, 6, 216, 0, 22, 192, 6, 176, 0, 54, 128, 5, 48, 192, 2, 216, 0, 22, 192, 6, 176, 0, 54,
    128, 1, 246, 114, 128, 5, 176, 1, 44, 128, 13, 96, 1, 108, 0, 3, 108, 0, 11, 96, 3, 88, 0, 27,
    192, 2, 24, 96, 1, 108, 0, 11, 96, 3, 88, 0, 27, 192, 0, 27, 192, 2, 216, 0, 22, 192, 6, 176,
    0, 54, 128, 1, 54, 128, 5, 176, 1, 44, 128, 13, 96, 1, 12, 176, 0, 54, 128, 5, 176, 1, 44, 128,
    13, 96, 128, 13, 96, 1, 108, 0, 11, 96, 3, 88, 0, 3, 44, 128, 13, 96, 1, 108, 0, 11, 96, 3, 88,
    0, 3, 44, 128, 13, 96, 1, 108, 0, 11, 96, 3, 24, 96, 3, 88, 0, 27, 192, 2, 216, 0, 22, 192, 0,
    11, 96, 3, 88, 0, 27, 192, 2, 216, 0, 6, 216, 0, 22, 192, 6, 176, 0, 54, 128, 5, 176, 1, 12,
    176, 1, 44, 128, 13, 96, 1, 108, 0, 11, 96, 128, 5, 176, 1, 44, 128, 13, 96, 1, 108, 0, 3, 108,
    0, 11, 96, 3, 88, 0, 27, 192, 2, 24, 96, 1, 108, 0, 11, 96, 3, 88, 0, 27, 192, 2, 24, 96, 1,
    108, 0, 11, 96, 3, 88, 0, 27, 192, 0, 27, 192, 2, 216, 0, 22, 192, 6, 176, 0, 6, 88, 0, 27,
    192, 2, 216, 0, 22, 192, 6, 176, 0, 6, 88, 0, 27, 192, 2, 216, 0, 22, 192, 6, 48, 192, 6, 176,
    0, 54, 128, 5, 176, 1, 44, 128, 1, 22, 192, 6, 176, 0, 54, 128, 5, 176, 1, 12, 176, 1, 44, 128,
    13, 96, 1, 108, 0, 11, 96, 3, 24, 96, 3, 88, 0, 27, 192, 2, 216, 0, 22, 192, 0, 11, 96, 3, 88,
    0, 27, 192, 186, 183, 90, 248, 232, 59, 250, 104, 129, 7, 0, 0, 0, 0, 73, 69, 78, 68, 174, 66,
    96, 130,
];

#[test]
fn the_department_signs_in_reads_resolves_searches_and_downloads_in_chromium() -> Result<()> {
    let chromium = chromium()?;
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    playwright(&scripts)?;
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    let _ = std::fs::remove_dir_all(&out);

    let server = TestServer::start()?;
    let work = tempfile::tempdir()?;
    let g = generator::generate(work.path(), &server.url(), &generator::Config::default())?;
    server.wait_merged()?;
    let c = g.campaign;
    // A photo of the minutes on a document review of the first village (the one the script
    // opens), uploaded as a device does.
    let tallies = server.get_json(&format!("/v1/campaigns/{c}/tallies"))?;
    let village = tallies["villages_detail"][0]["code"]
        .as_str()
        .context("a village")?
        .to_string();
    let mut photographer = fieldsync_client_core::Store::open_in_memory()?;
    let mut pt = server.enroll(&mut photographer, "拍照的组员", Role::Admin, None)?;
    fieldsync_client_core::sync::sync(&mut photographer, &mut pt, &Default::default())?;
    let fields = std::collections::BTreeMap::from([
        (
            "date".to_string(),
            fieldsync_client_core::FieldValue::Str("2026-05-19".into()),
        ),
        (
            "reviewer".to_string(),
            fieldsync_client_core::FieldValue::Str("王组长".into()),
        ),
        (
            "documents".to_string(),
            fieldsync_client_core::FieldValue::Str("finance".into()),
        ),
        (
            "compliant".to_string(),
            fieldsync_client_core::FieldValue::Bool(true),
        ),
    ]);
    let review = photographer.create_form(c, "document_review", &village, &fields)?;
    photographer.attach(review, "photos", "财务台账.png", None, MINUTES_PNG)?;
    fieldsync_client_core::sync::sync(&mut photographer, &mut pt, &Default::default())?;
    server.wait_merged()?;
    let sent =
        fieldsync_client_core::attachments::upload_attachments(&mut photographer, &mut pt, 20)?;
    ensure!(sent.uploaded == 1, "the photo was not uploaded: {sent:?}");
    let person = server.add_person("组织部王科长", Role::Admin, None)?;
    let code = server.code_for(person)?;

    let output = Command::new("node")
        .arg(scripts.join("dashboard.mjs"))
        .args([&server.url(), &code, &c.to_string(), "集体经济"])
        .arg(&out)
        .arg(review.to_string())
        .env("CHROMIUM", &chromium)
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

    // The Content-Security-Policy blocked nothing the pages use: the inline style sheet applies.
    assert_eq!(summary["cspViolations"], serde_json::json!([]), "{summary}");
    assert_eq!(summary["headerBackground"], "rgb(155, 28, 28)", "{summary}");

    // The dossier showed the photo's preview (made by the server: 400 px wide).
    assert_eq!(summary["dossierPhotoWidth"], 400, "{summary}");
    // The dossier listed the village's members.
    let first = &tallies["villages_detail"][0];
    assert_eq!(summary["village"], first["name"]);
    assert_eq!(summary["dossierMembers"], first["members"]);
    // Sorting by the first column in the page: the same names, in collation order, then reversed.
    let names = |key: &str| -> Vec<String> {
        summary[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key}: {summary}"))
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect()
    };
    let (before, up, down) = (names("sortBefore"), names("sortUp"), names("sortDown"));
    assert!(before.len() >= 2, "{summary}");
    let mut same = before.clone();
    same.sort();
    let mut sorted_up = up.clone();
    sorted_up.sort();
    assert_eq!(sorted_up, same, "sorting keeps every row: {summary}");
    assert_ne!(up, down, "{summary}");
    assert_eq!(
        down,
        up.iter().rev().cloned().collect::<Vec<_>>(),
        "{summary}"
    );
    assert_eq!(summary["sortUpAria"], "ascending", "{summary}");
    assert_eq!(summary["sortDownAria"], "descending", "{summary}");
    assert!(summary["overviewSvgs"].as_u64().unwrap() >= 3, "{summary}");

    // The conflict resolved in the browser is resolved on the server, with the chosen value,
    // and a field device receives the resolution.
    server.wait_merged()?;
    let record = summary["record"].as_str().unwrap();
    let field = summary["field"].as_str().unwrap();
    let merged = server.get_json(&format!("/v1/records/{record}"))?;
    assert_eq!(merged["conflicts"], 0, "{merged}");
    let label = match merged["fields"][field].as_str() {
        Some("good") => "好",
        Some("normal") => "正常",
        Some("poor") => "较差",
        other => panic!("unexpected {field}: {other:?}"),
    };
    assert_eq!(summary["chosen"], label);
    let mut device = fieldsync_client_core::Store::open_in_memory()?;
    let mut t = server.connect(&device)?;
    fieldsync_client_core::sync::sync(&mut device, &mut t, &Default::default())?;
    let on_device = device.get(uuid::Uuid::parse_str(record)?)?;
    assert_eq!(on_device.conflicts, 0);
    let audit = server.get_json("/v1/admin/audit?action=resolve")?;
    assert_eq!(audit[0]["detail"]["record"], record);

    // The two records returned in the browser are returned on the server, with the reason,
    // and the queue lists them on a phone without scrolling sideways.
    assert!(summary["reviewRows"].as_u64().unwrap() >= 2, "{summary}");
    assert_eq!(summary["returnedRows"], 2, "{summary}");
    assert_eq!(summary["phoneOverflow"], false, "{summary}");
    // Every other page fits a 390 px phone too.
    for page in ["overview", "dossier", "ledger", "search", "record"] {
        assert_eq!(
            summary["phonePages"][page], false,
            "{page} is wider than a phone: {summary}"
        );
    }
    // The ledger lists the campaign's findings, marks itself in the navigation, and filters.
    let rects = server.get_json(&format!("/v1/campaigns/{c}/tallies"))?;
    assert!(
        summary["ledgerRows"].as_u64().unwrap() >= rects["findings"].as_u64().unwrap(),
        "{summary}"
    );
    assert_eq!(summary["ledgerCurrent"], "问题整改台账", "{summary}");
    assert_eq!(
        summary["ledgerOverdueRows"].as_u64(),
        rects["overdue_rectifications"].as_u64(),
        "{summary}"
    );
    // The record page shows the photo's 400 px preview.
    assert_eq!(summary["recordPhotoWidth"], 400, "{summary}");
    assert!(
        summary["reviewFlash"]
            .as_str()
            .unwrap()
            .contains("已审核 2"),
        "{summary}"
    );
    for id in summary["returned"].as_array().unwrap() {
        let r = server.get_json(&format!("/v1/records/{}", id.as_str().unwrap()))?;
        assert_eq!(r["fields"]["_review"], "returned", "{r}");
        assert_eq!(r["fields"]["_review_comment"], "请补充参会人数", "{r}");
        assert_eq!(r["fields"]["_review_by"], "组织部王科长", "{r}");
    }

    // The search page found what the API finds.
    let hits = server.get_json(&format!(
        "/v1/search?q=%E9%9B%86%E4%BD%93%E7%BB%8F%E6%B5%8E&campaign={c}&limit=200"
    ))?;
    assert_eq!(summary["searchHits"], hits.as_array().unwrap().len());
    assert!(summary["searchHits"].as_u64().unwrap() > 10);

    // The browser names the downloads after the campaign (filename* in UTF-8).
    let name = tallies["name"].as_str().expect("the campaign has a name");
    assert_eq!(
        summary["downloads"],
        serde_json::json!([
            format!("{name}-数据汇总.xlsx"),
            format!("{name}-报告初稿.docx")
        ])
    );

    // The downloaded workbook and report hold the campaign's numbers.
    {
        use calamine::{Reader, Xlsx, open_workbook};
        let mut book: Xlsx<_> = open_workbook(out.join("campaign.xlsx"))?;
        let stats = book.worksheet_range("统计")?;
        let row = stats
            .rows()
            .find(|r| r[0] == "谈心谈话人次")
            .expect("interviews in the tallies sheet");
        assert_eq!(row[1].to_string(), tallies["interviews"].to_string());
    }
    let docx = std::fs::read(out.join("report.docx"))?;
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(docx))?;
    let mut xml = String::new();
    std::io::Read::read_to_string(&mut zip.by_name("word/document.xml")?, &mut xml)?;
    assert!(xml.contains(&format!("谈心谈话{}人次", tallies["interviews"])));

    assert_eq!(summary["english"], "Progress");
    for shot in [
        "01-login.png",
        "03-overview.png",
        "04-dossier.png",
        "05-conflict.png",
        "06-resolved.png",
        "07-search.png",
        "07b-review.png",
        "07c-review-phone.png",
        "08-english.png",
        "09-overview-phone.png",
        "09-dossier-phone.png",
        "09-ledger-phone.png",
        "09-search-phone.png",
        "09-record-phone.png",
        "10-ledger.png",
        "11-record-photo.png",
    ] {
        let len = std::fs::metadata(out.join(shot))?.len();
        assert!(len > 10_000, "{shot} is {len} bytes");
    }
    Ok(())
}
