//! A bundle passed from one app to another through the pages: downloaded from the first,
//! uploaded to the second, the result says what arrived; a file that is no bundle imports
//! nothing.

mod common;

use anyhow::Result;
use common::{A1, App};
use fieldsync_client_core::FieldValue;

fn upload(app: &App, bytes: Vec<u8>, with_token: bool) -> Result<reqwest::blocking::Response> {
    Ok(send(app, bytes, with_token)??)
}

/// The upload as the client saw it: its answer, or why it could not send the whole body.
fn send(
    app: &App,
    bytes: Vec<u8>,
    with_token: bool,
) -> Result<reqwest::Result<reqwest::blocking::Response>> {
    common::post_file(
        app,
        "/bundle/import",
        "file",
        "colleague.fsb",
        bytes,
        with_token,
    )
}

#[test]
fn a_bundle_goes_from_one_app_to_another() -> Result<()> {
    let first = App::start()?;
    first.post(
        &format!("/v/{A1}/k/interview/new"),
        &[
            ("f.date", "2026-05-18"),
            ("f.interviewer", "王组长"),
            ("f.interviewee_type", "other"),
            ("f.notes", "离线交换的谈话"),
            ("action", "save"),
        ],
    )?;
    let id = first.records("interview")?[0].header.id;
    let page = first.page("/bundle")?;
    assert!(
        page.contains("/bundle/import?csrf="),
        "the upload form carries its token"
    );
    let r = first.client.get(first.url("/bundle/export")).send()?;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-disposition"]
            .to_str()?
            .contains("attachment")
    );
    let bytes = r.bytes()?.to_vec();

    let second = App::start()?;
    common::refused_unread(send(&second, bytes.clone(), false)?, "no CSRF token");
    assert!(second.store()?.get(id).is_err());
    let r = upload(&second, bytes.clone(), true)?;
    assert_eq!(r.status(), 200);
    let page = r.text()?;
    assert!(page.contains("已导入：新修改"), "{page}");
    assert_eq!(
        second.store()?.get(id)?.fields["notes"],
        FieldValue::Text("离线交换的谈话".into())
    );
    let again = upload(&second, bytes, true)?.text()?;
    assert!(again.contains("已导入：新修改 0 条"), "{again}");
    let bad = upload(&second, b"not a bundle".to_vec(), true)?.text()?;
    assert!(bad.contains("未导入任何数据"), "{bad}");
    Ok(())
}
