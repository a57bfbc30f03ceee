//! Photos and recordings in the field app, over real apps on 127.0.0.1:0 and a real server: a
//! photo added to a document review shows on the record page waiting to upload, uploads at the
//! next sync, and opens on a colleague's device (fetched once, then offline); a file of the
//! wrong type is refused at its name; a picture that could run scripts is only ever saved.

mod common;

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use common::{A1, App};
use fieldsync::TestServer;
use fieldsync_client_core::FieldValue;
use fieldsync_protocol::attachment::sha256_hex;
use fieldsync_protocol::auth::Role;
use reqwest::blocking::multipart::{Form, Part};
use uuid::Uuid;

/// Bytes that look like nothing in particular (a photo stands in).
fn photo(n: usize) -> Vec<u8> {
    let mut x: u32 = 2_463_534_242;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn add(app: &App, record: Uuid, field: &str, files: Vec<(&str, &str, Vec<u8>)>) -> Result<String> {
    let mut form = Form::new();
    for (name, media, bytes) in files {
        form = form.part(
            "file",
            Part::bytes(bytes)
                .file_name(name.to_string())
                .mime_str(media)?,
        );
    }
    let r = app
        .client
        .post(app.url(&format!("/r/{record}/files/{field}?csrf={}", app.csrf()?)))
        .multipart(form)
        .send()?;
    anyhow::ensure!(r.status() == 200, "adding files answered {}", r.status());
    Ok(r.text()?)
}

fn document_review(store: &mut fieldsync_client_core::Store, campaign: Uuid) -> Result<Uuid> {
    let fields = BTreeMap::from([
        ("date".to_string(), FieldValue::Str("2026-05-18".into())),
        ("reviewer".to_string(), FieldValue::Str("王组长".into())),
        ("documents".to_string(), FieldValue::Str("finance".into())),
        ("compliant".to_string(), FieldValue::Bool(false)),
    ]);
    Ok(store.create_form(campaign, "document_review", A1, &fields)?)
}

#[test]
fn a_photo_added_in_the_app_uploads_at_sync_and_opens_on_a_colleagues_device() -> Result<()> {
    let server = TestServer::start()?;
    let mut id = None;
    let app = App::start_with(|store, campaign| {
        server.enroll(store, "外业测试", Role::Admin, None)?;
        id = Some(document_review(store, campaign)?);
        Ok(())
    })?;
    let id = id.context("record")?;

    let page = app.page(&format!("/r/{id}"))?;
    assert!(
        page.contains("资料照片") && page.contains("还没有文件"),
        "{page}"
    );
    assert!(
        page.contains(&format!("/r/{id}/files/photos?csrf=")),
        "the add form is on the page: {page}"
    );
    assert!(
        page.contains(r#"accept="image/*,application/pdf""#),
        "{page}"
    );

    // One photo and one file the field does not take, in one go.
    let jpeg = photo(300_000);
    let sha = sha256_hex(&jpeg);
    let page = add(
        &app,
        id,
        "photos",
        vec![
            ("会议记录.jpg", "image/jpeg", jpeg.clone()),
            ("签到表.txt", "text/plain", b"not a photo".to_vec()),
        ],
    )?;
    assert!(page.contains("已添加 1 个文件：会议记录.jpg"), "{page}");
    assert!(page.contains("未添加“签到表.txt”"), "{page}");
    assert!(
        page.contains(&format!(r#"<img src="/r/{id}/a/{sha}""#)),
        "{page}"
    );
    assert!(page.contains("等待上传"), "{page}");
    assert_eq!(app.store()?.attachments_of(id)?.len(), 1);
    let home = app.page("/")?;
    assert!(
        home.contains(r#"待上传附件：<b id="files-waiting">1</b>"#),
        "{home}"
    );

    // It opens as the picture it is, under its Chinese name, and can run nothing.
    let r = app
        .client
        .get(app.url(&format!("/r/{id}/a/{sha}")))
        .send()?;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    let disposition = r.headers()["content-disposition"].to_str()?.to_string();
    assert!(
        disposition.starts_with("inline;")
            && disposition.contains("UTF-8''%E4%BC%9A%E8%AE%AE%E8%AE%B0%E5%BD%95%2Ejpg"),
        "{disposition}"
    );
    let csp = r.headers()["content-security-policy"].to_str()?.to_string();
    assert!(!csp.contains("script-src"), "{csp}");
    assert_eq!(r.bytes()?.as_ref(), jpeg.as_slice());

    // Sync: records first, then the photo.
    let home = app.sync()?;
    assert!(home.contains("已上传附件 1 个"), "{home}");
    assert!(app.store()?.attachments_to_upload()?.is_empty());
    assert!(
        app.page("/")?
            .contains(r#"待上传附件：<b id="files-waiting">0</b>"#)
    );
    let page = app.page(&format!("/r/{id}"))?;
    assert!(
        page.contains(r#"<span class="state">已上传</span>"#),
        "{page}"
    );
    server.wait_merged()?;

    // A colleague's device gets the record with the reference, and the photo when opened.
    let colleague = App::start_with(|store, _| {
        server.enroll(store, "同组同事", Role::Admin, None)?;
        Ok(())
    })?;
    colleague.sync()?;
    let page = colleague.page(&format!("/r/{id}"))?;
    assert!(page.contains("会议记录.jpg"), "{page}");
    assert!(page.contains("在服务器上，打开时下载"), "{page}");
    assert!(colleague.store()?.stored_attachment(&sha)?.is_none());
    let got = colleague
        .client
        .get(colleague.url(&format!("/r/{id}/a/{sha}")))
        .send()?;
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes()?.as_ref(), jpeg.as_slice());
    let kept = colleague
        .store()?
        .stored_attachment(&sha)?
        .context("kept")?;
    assert!(kept.uploaded, "a fetched file is never sent back");

    // A third colleague takes all of the village's files before going where there is no line.
    let campaign = app.campaign;
    let third = App::start_with(|store, _| {
        server.enroll(store, "第三位同事", Role::Admin, None)?;
        // The same campaign as the first device (the fixture seeds one of its own).
        store.set_setting("campaign", &campaign.to_string())?;
        Ok(())
    })?;
    third.sync()?;
    let village = third.page(&format!("/v/{A1}"))?;
    assert!(
        village.contains("本村记录共有附件 <b>1</b> 个，本机已有 <b>0</b> 个"),
        "{village}"
    );
    let r = third.post(&format!("/v/{A1}/files"), &[])?;
    assert_eq!(r.status(), 200);
    let mut seen = r.text()?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while seen.contains("正在下载附件") || !seen.contains("本村附件已全部在本机") {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the fetch did not end: {seen}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
        seen = third.page(&format!("/v/{A1}"))?;
    }
    assert!(seen.contains("新下载 1 个"), "{seen}");
    assert!(third.store()?.stored_attachment(&sha)?.is_some());
    let village = third.page(&format!("/v/{A1}"))?;
    assert!(village.contains("本机已有 <b>1</b> 个"), "{village}");

    // The server gone: the file opens offline now, and one never fetched says why it cannot.
    drop(server);
    let again = colleague
        .client
        .get(colleague.url(&format!("/r/{id}/a/{sha}")))
        .send()?;
    assert_eq!(again.status(), 200);
    assert_eq!(again.bytes()?.len(), jpeg.len());
    Ok(())
}

#[test]
fn a_picture_that_could_run_scripts_is_saved_not_shown_and_strangers_get_nothing() -> Result<()> {
    let mut id = None;
    let app = App::start_with(|store, campaign| {
        id = Some(document_review(store, campaign)?);
        Ok(())
    })?;
    let id = id.context("record")?;
    let svg =
        br#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#.to_vec();
    let sha = sha256_hex(&svg);
    let page = add(&app, id, "photos", vec![("图.svg", "image/svg+xml", svg)])?;
    assert!(page.contains("已添加 1 个文件"), "{page}");
    assert!(
        !page.contains(&format!(r#"<img src="/r/{id}/a/{sha}""#)),
        "no preview of what is only saved: {page}"
    );
    let r = app
        .client
        .get(app.url(&format!("/r/{id}/a/{sha}")))
        .send()?;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert!(
        r.headers()["content-disposition"]
            .to_str()?
            .starts_with("attachment;")
    );

    // A hash the record does not refer to, a bad hash, and a request without the secret.
    let other = "ab".repeat(32);
    let r = app
        .client
        .get(app.url(&format!("/r/{id}/a/{other}")))
        .send()?;
    assert_eq!(r.status(), 404);
    let r = app.client.get(app.url(&format!("/r/{id}/a/x"))).send()?;
    assert_eq!(r.status(), 404);
    let stranger = common::bare_client()?;
    let r = stranger.get(app.url(&format!("/r/{id}/a/{sha}"))).send()?;
    assert_eq!(r.status(), 403);

    // Adding without the CSRF token is refused and adds nothing.
    let r = app
        .client
        .post(app.url(&format!("/r/{id}/files/photos")))
        .multipart(
            Form::new().part(
                "file",
                Part::bytes(photo(10))
                    .file_name("a.jpg")
                    .mime_str("image/jpeg")?,
            ),
        )
        .send();
    common::refused_unread(r, "a photo without the token");
    assert_eq!(app.store()?.attachments_of(id)?.len(), 1);
    Ok(())
}

#[test]
fn photos_chosen_on_a_new_records_form_are_added_when_it_is_saved() -> Result<()> {
    let app = App::start()?;
    let path = format!("/v/{A1}/k/document_review/new");
    // The form takes files: multipart, with the CSRF token in the address.
    let form = app.page(&path)?;
    assert!(form.contains("enctype=\"multipart/form-data\""), "{form}");
    assert!(form.contains("name=\"file.photos\""), "{form}");
    assert!(form.contains(&format!("{path}?csrf=")), "{form}");
    assert!(form.contains("保存记录时一并添加"), "{form}");
    // A meeting's form has no file field on this template: a plain form.
    let plain = app.page(&format!("/v/{A1}/k/meeting/new"))?;
    assert!(!plain.contains("multipart/form-data"), "{plain}");

    let post = |files: Vec<(&str, &str, Vec<u8>)>| -> Result<reqwest::blocking::Response> {
        let mut form = Form::new();
        for (k, v) in [
            ("f.date", "2026-05-18"),
            ("f.reviewer", "王组长"),
            ("f.documents", "finance"),
            ("f.compliant", "no"),
            ("action", "save"),
        ] {
            form = form.text(k, v);
        }
        for (name, media, bytes) in files {
            form = form.part(
                "file.photos",
                Part::bytes(bytes)
                    .file_name(name.to_string())
                    .mime_str(media)?,
            );
        }
        Ok(app
            .client
            .post(app.url(&format!("{path}?csrf={}", app.csrf()?)))
            .multipart(form)
            .send()?)
    };
    // Two photos with the record: saved together.
    let r = post(vec![
        ("台账一.jpg", "image/jpeg", photo(30_000)),
        ("台账二.jpg", "image/jpeg", photo(40_000)),
    ])?;
    assert_eq!(r.status(), 200, "followed to the record page");
    let page = r.text()?;
    assert!(
        page.contains("台账一.jpg") && page.contains("台账二.jpg"),
        "{page}"
    );
    let saved = app.records("document_review")?;
    assert_eq!(saved.len(), 1);
    let files = app.store()?.attachments_of(saved[0].header.id)?;
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(files.iter().map(|f| f.size).sum::<u64>(), 70_000);

    // A file the field does not take: the record is saved, the file refused at its name.
    let r = post(vec![("说明.txt", "text/plain", b"not a photo".to_vec())])?;
    let page = r.text()?;
    assert!(page.contains("记录已保存；未添加“说明.txt”"), "{page}");
    assert_eq!(app.records("document_review")?.len(), 2);

    // Without the token in the address nothing is saved.
    let r = app
        .client
        .post(app.url(&path))
        .multipart(
            Form::new()
                .text("f.date", "2026-05-19")
                .text("action", "save"),
        )
        .send();
    common::refused_unread(r, "a form without the token");
    assert_eq!(app.records("document_review")?.len(), 2);
    Ok(())
}
