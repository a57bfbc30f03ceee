//! Files attached to records on the device: a record's attachments fields as pictures shown,
//! recordings playable and documents to open, each with its upload state; adding files from the
//! camera or the disk; opening one (fetched from the server the first time when this device does
//! not hold it).

use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{MethodRouter, post};
use fieldsync_client_core::attachments::fetch_attachment;
use fieldsync_client_core::{FormError, Record, Store, account};
use fieldsync_protocol::attachment::{
    AttachmentRef, content_disposition, is_sha256_hex, refs, served_media_type, size_text,
};
use fieldsync_protocol::template::{FieldType, KindDef};
use maud::{Markup, html};
use uuid::Uuid;

use super::PageResult;
use crate::page::{Lang, failure, not_found, page, refusal};
use crate::{AppError, AppState};

/// The largest request that adds files (several files of one field at once). Each file is also
/// held to its field's `max_bytes` by client-core.
pub const MAX_ADD_BYTES: usize = 512 << 20;

/// One attached file as the record page shows it.
#[derive(Debug, Clone)]
pub struct FileItem {
    /// Its reference in the record.
    pub reference: AttachmentRef,
    /// Whether this device holds its bytes.
    pub here: bool,
    /// Whether the server has confirmed it holds the whole file.
    pub uploaded: bool,
}

/// An attachments field of a record with its files.
#[derive(Debug, Clone)]
pub struct FileField {
    /// The field's name.
    pub name: String,
    /// Its label, Chinese and English.
    pub label: (String, String),
    /// The media types it takes (for the file picker).
    pub accept: Vec<String>,
    /// The largest file it takes.
    pub max_bytes: u64,
    /// Its files, in the order they were added.
    pub items: Vec<FileItem>,
}

/// The attachments fields of `record` (as its form defines them) with their files.
pub fn file_fields(
    store: &Store,
    def: &KindDef,
    record: &Record,
) -> Result<Vec<FileField>, AppError> {
    let mut out = Vec::new();
    for f in def
        .fields
        .iter()
        .filter(|f| f.field_type == FieldType::Attachments)
    {
        let mut items = Vec::new();
        let mut found = record.fields.get(&f.name).map(refs).unwrap_or_default();
        found.sort_by(|a, b| (a.at, &a.sha256).cmp(&(b.at, &b.sha256)));
        for reference in found {
            let stored = store.stored_attachment(&reference.sha256)?;
            items.push(FileItem {
                here: stored.is_some(),
                uploaded: stored.is_none_or(|s| s.uploaded),
                reference,
            });
        }
        out.push(FileField {
            name: f.name.clone(),
            label: (f.label.zh.clone(), f.label.en.clone()),
            accept: f.accept.clone(),
            max_bytes: f.max_attachment_bytes(),
            items,
        });
    }
    Ok(out)
}

/// The files of a record's attachments fields, each field with its "add" form unless the record
/// is deleted.
pub fn section(
    state: &AppState,
    lang: Lang,
    record: Uuid,
    fields: &[FileField],
    deleted: bool,
) -> Markup {
    let sending = state.syncer().file_in_progress();
    html! {
        @for f in fields {
            section.files id=(format!("files-{}", f.name)) {
                h2 { (lang.t(&f.label.0, &f.label.1)) " " span.muted { (f.items.len()) } }
                @if f.items.is_empty() { p.muted { (lang.t("还没有文件", "No files yet")) } }
                ul.files {
                    @for item in &f.items {
                        @let r = &item.reference;
                        @let href = format!("/r/{record}/a/{}", r.sha256);
                        li {
                            @match (item.here, fieldsync_protocol::attachment::family(served_media_type(&r.media_type))) {
                                (true, "image") => a href=(href) { img src=(href) alt=(r.name) loading="lazy"; },
                                (true, "audio") => audio controls preload="none" src=(href) {},
                                (true, "video") => video controls preload="none" src=(href) {},
                                _ => {}
                            }
                            div {
                                a href=(href) { (r.name) } " "
                                span.muted { (size_text(r.size)) }
                                br;
                                span.state {
                                    @if !item.here {
                                        (lang.t("在服务器上，打开时下载", "on the server: downloaded when opened"))
                                    } @else if item.uploaded {
                                        (lang.t("已上传", "uploaded"))
                                    } @else if let Some(p) = sending.as_ref().filter(|p| p.sha256 == r.sha256) {
                                        (lang.t("正在上传 ", "uploading ")) (p.percent()) "%"
                                    } @else {
                                        (lang.t("等待上传（同步时上传）", "waiting to upload (at the next sync)"))
                                    }
                                }
                            }
                        }
                    }
                }
                @if !deleted {
                    // Multipart bodies are not read by the guard: the CSRF token travels in the
                    // address, as on the bundle page.
                    form.add-files method="post" enctype="multipart/form-data"
                        action=(format!("/r/{record}/files/{}?{}={}", f.name, crate::guard::CSRF_FIELD, state.secret().csrf_token())) {
                        label {
                            (lang.t("添加文件（拍照、录音或选择文件）", "Add files (take a photo, record, or choose a file)"))
                            input type="file" name="file" multiple required
                                accept=[(!f.accept.is_empty()).then(|| f.accept.join(","))];
                        }
                        p.help { (lang.t("单个文件不超过 ", "each file at most ")) (size_text(f.max_bytes)) }
                        div.actions { button type="submit" { (lang.t("添加", "Add")) } }
                    }
                }
            }
        }
    }
}

/// Files the village's records refer to, and how many of them this device holds.
pub fn village_files(
    store: &Store,
    campaign: Uuid,
    code: &str,
) -> Result<(usize, usize), AppError> {
    let records = store.list(&fieldsync_client_core::Filter {
        scope: Some(code.to_string()),
        campaign: Some(campaign),
        ..Default::default()
    })?;
    let mut seen = std::collections::HashSet::new();
    let mut here = 0;
    for r in records.iter().filter(|r| !r.deleted) {
        for f in r.fields.values().flat_map(refs) {
            if seen.insert(f.sha256.clone()) && store.stored_attachment(&f.sha256)?.is_some() {
                here += 1;
            }
        }
    }
    Ok((seen.len(), here))
}

/// The village page's line about its files, with the button that fetches the missing ones.
pub fn village_section(
    state: &AppState,
    lang: Lang,
    code: &str,
    (all, here): (usize, usize),
) -> Markup {
    let fetching = state.fetching().filter(|(v, _, _)| v == code);
    html! {
        @if all > 0 {
            section.files #village-files {
                h2 { (lang.t("附件", "Files")) }
                p {
                    (lang.t("本村记录共有附件 ", "The village's records have ")) b { (all) }
                    (lang.t(" 个，本机已有 ", " files; this device holds ")) b { (here) }
                    (lang.t(" 个。", "."))
                }
                @if let Some((_, done, total)) = fetching {
                    p.muted role="status" { (lang.t("正在下载附件：", "Downloading files: ")) (done) " / " (total) }
                } @else if here < all {
                    form method="post" action=(format!("/v/{code}/files")) {
                        (super::csrf_field(state))
                        button.secondary type="submit" { (lang.t("下载本村全部附件（之后可离线查看）", "Download all of the village's files (to open them offline)")) }
                    }
                }
            }
        }
    }
}

/// `POST /v/{code}/files`: fetches the village's files this device lacks, in the background;
/// back to the village page, where the progress and then the result show.
pub async fn fetch_village(
    State(state): State<AppState>,
    lang: Lang,
    Path(code): Path<String>,
) -> PageResult {
    state
        .start_fetch(code.clone())
        .await
        .map_err(|e| failure(lang, &e))?;
    Ok(Redirect::to(&format!("/v/{code}")).into_response())
}

/// A file chosen in a form: the field it goes to, its name, the media type the browser gave,
/// its bytes.
pub type Chosen = (String, String, Option<String>, axum::body::Bytes);

/// A file refused: its name, and why in Chinese and in English.
pub type Refused = (String, String, String);

/// Adds each chosen file to record `id`; returns the names added and the files refused with
/// why (in Chinese and English). Only a store failure is an error: a refused file is not.
pub fn attach_each(
    s: &mut fieldsync_client_core::Store,
    id: Uuid,
    files: Vec<Chosen>,
) -> Result<(Vec<String>, Vec<Refused>), AppError> {
    let mut added = Vec::new();
    let mut refused = Vec::new();
    for (field, name, given, bytes) in files {
        let name = if name.is_empty() {
            "file".to_string()
        } else {
            name
        };
        match s.attach(id, &field, &name, given.as_deref(), &bytes) {
            Ok(r) => added.push(r.name),
            Err(FormError::Store(e)) => return Err(e.into()),
            Err(FormError::Invalid(invalid)) => {
                for p in invalid.problems {
                    refused.push((name.clone(), p.zh, p.en));
                }
            }
            Err(e) => {
                let m = e.to_string();
                refused.push((name.clone(), m.clone(), m));
            }
        }
    }
    Ok((added, refused))
}

/// `POST /r/{id}/files/{field}`: adds the files sent (multipart `file`, one or several) to the
/// field, back to the record page with what was added and what was refused.
pub async fn add(
    State(state): State<AppState>,
    lang: Lang,
    Path((id, field)): Path<(Uuid, String)>,
    mut form: Multipart,
) -> PageResult {
    let mut files = Vec::new();
    loop {
        match form.next_field().await {
            Ok(Some(part)) if part.name() == Some("file") => {
                let name = part.file_name().unwrap_or("").trim().to_string();
                let given = part
                    .content_type()
                    .map(|t| t.to_ascii_lowercase())
                    .filter(|t| t != "application/octet-stream" && !t.is_empty());
                match part.bytes().await {
                    Ok(b) => files.push((name, given, b)),
                    Err(e) => {
                        return Err(refusal(
                            lang,
                            &format!("文件没有传完整（{e}），未添加，请重新选择"),
                            &format!(
                                "the file did not arrive whole ({e}); nothing was added: choose it again"
                            ),
                        ));
                    }
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => {
                return Err(refusal(
                    lang,
                    &format!("文件没有传完整（{e}），未添加，请重新选择"),
                    &format!(
                        "the files did not arrive whole ({e}); nothing was added: choose them again"
                    ),
                ));
            }
        }
    }
    files.retain(|(name, _, b)| !(name.is_empty() && b.is_empty()));
    if files.is_empty() {
        state.set_flash(
            "没有收到文件，请先选择文件再添加".into(),
            "no file arrived: choose a file, then add".into(),
        );
        return Ok(Redirect::to(&format!("/r/{id}")).into_response());
    }
    let files: Vec<Chosen> = files
        .into_iter()
        .map(|(name, given, bytes)| (field.clone(), name, given, bytes))
        .collect();
    let outcome = state.with_store(move |s| attach_each(s, id, files)).await;
    let (added, refused) = match outcome {
        Ok(x) => x,
        Err(AppError::Store(fieldsync_client_core::StoreError::NotFound(_))) => {
            return Err(not_found(lang));
        }
        Err(e) => return Err(failure(lang, &e)),
    };
    let mut zh = Vec::new();
    let mut en = Vec::new();
    if !added.is_empty() {
        zh.push(format!(
            "已添加 {} 个文件：{}，同步时上传",
            added.len(),
            added.join("、")
        ));
        en.push(format!(
            "{} files added: {}; they upload at the next sync",
            added.len(),
            added.join(", ")
        ));
    }
    for (name, z, e) in &refused {
        zh.push(format!("未添加“{name}”：{z}"));
        en.push(format!("{name:?} was not added: {e}"));
    }
    state.set_flash(zh.join("；"), en.join("; "));
    Ok(Redirect::to(&format!("/r/{id}#files-{field}")).into_response())
}

/// The route that adds files, with its upload limit.
pub fn add_route() -> MethodRouter<AppState> {
    post(add).layer(DefaultBodyLimit::max(MAX_ADD_BYTES))
}

/// `GET /r/{id}/a/{sha256}`: a file of the record, shown in the page when it is a picture,
/// recording, video or PDF, else saved under its name. A file this device does not hold is
/// fetched from the server first (its hash checked) and kept, so it opens offline after.
pub async fn open(
    State(state): State<AppState>,
    lang: Lang,
    Path((id, sha)): Path<(Uuid, String)>,
) -> PageResult {
    if !is_sha256_hex(&sha) {
        return Err(not_found(lang));
    }
    let s2 = sha.clone();
    let http = state.http().clone();
    let found = state
        .with_store(move |s| {
            let Ok(record) = s.get(id) else {
                return Ok(None);
            };
            let Some(reference) = record
                .fields
                .values()
                .flat_map(refs)
                .find(|r| r.sha256 == s2)
            else {
                return Ok(None);
            };
            if let Some(bytes) = s.attachment_bytes(&s2)? {
                return Ok(Some((reference, Ok(bytes))));
            }
            // Not here: the transport is made now, the download runs without the store.
            Ok(Some((reference, Err(account::transport(s, &http)))))
        })
        .await
        .map_err(|e| failure(lang, &e))?;
    let Some((reference, got)) = found else {
        return Err(not_found(lang));
    };
    let bytes = match got {
        Ok(bytes) => bytes,
        Err(transport) => {
            let fetched = match transport {
                Ok(mut t) => {
                    let s2 = sha.clone();
                    tokio::task::spawn_blocking(move || fetch_attachment(&mut t, id, &s2))
                        .await
                        .map_err(|e| failure(lang, &AppError::Task(e.to_string())))?
                        .map_err(|e| e.to_string())
                }
                Err(e) => Err(e.to_string()),
            };
            match fetched {
                Ok(bytes) => {
                    let keep = bytes.clone();
                    state
                        .with_store(move |s| Ok(s.keep_fetched_attachment(id, &keep)?))
                        .await
                        .map_err(|e| failure(lang, &e))?;
                    bytes
                }
                Err(message) => return Err(not_fetched(lang, id, &reference, &message)),
            }
        }
    };
    Ok(file_response(&reference, bytes))
}

/// The page shown when a file is on the server only and could not be fetched.
fn not_fetched(lang: Lang, record: Uuid, r: &AttachmentRef, message: &str) -> Response {
    let body = html! {
        h1 { (lang.t("文件暂时打不开", "The file cannot be opened now")) }
        p.error {
            "“" (r.name) "”" (lang.t("不在本机上，从服务器下载没有成功：", " is not on this device and could not be downloaded from the server: ")) (message)
        }
        p { (lang.t("联网后再打开即可；记录和其他文件不受影响。", "Open it again when there is a network; the record and its other files are not affected.")) }
        p { a href=(format!("/r/{record}")) { "← " (lang.t("返回记录", "Back to the record")) } }
    };
    let mut r = page(lang, lang.t("文件暂时打不开", "File not available"), body).into_response();
    *r.status_mut() = axum::http::StatusCode::BAD_GATEWAY;
    r
}

/// The file as the browser gets it: shown in the page when it is safe to, else saved; never
/// sniffed into something else, never able to run scripts.
fn file_response(r: &AttachmentRef, bytes: Vec<u8>) -> Response {
    let served = served_media_type(&r.media_type);
    let inline = served != "application/octet-stream";
    let mut resp = bytes.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(served)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    if let Ok(v) = HeaderValue::from_str(&content_disposition(&r.name, inline)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=31536000, immutable"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; img-src 'self'; media-src 'self'; object-src 'self'; style-src 'unsafe-inline'",
        ),
    );
    resp
}
