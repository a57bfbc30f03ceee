//! Attached files on the dashboard: a record's photos, recordings and scans (pictures shown,
//! sound playable, PDFs opened, each view audited), and all of a village's files in one ZIP.

use std::io::Write;
use std::sync::Arc;

use axum::{
    body::Body,
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use fieldsync_protocol::attachment::{
    AttachmentRef, content_disposition, family, refs_in_json, served_media_type, size_text,
};
use fieldsync_protocol::template::{FieldType, Template};
use serde_json::json;

use super::page::{Lang, esc};
use super::*;
use crate::blobs::BlobState;
use crate::{AppState, attachments, error::ApiError, storage::RecordFilter};

/// Whether `field` of `kind` is an attachments field of the campaign's template.
pub(super) fn is_files_field(template: Option<&Template>, kind: &str, field: &str) -> bool {
    template
        .and_then(|t| t.kind(kind))
        .and_then(|k| k.field(field))
        .is_some_and(|f| f.field_type == FieldType::Attachments)
}

/// The files of each attachments field of a record, as sections of its page: pictures as
/// thumbnails that open the picture, recordings and videos playable, other files as links;
/// a file still on its way says so.
pub(super) async fn gallery(
    state: &AppState,
    template: Option<&Template>,
    r: &RecordView,
    lang: Lang,
) -> Result<String, ApiError> {
    let Some(fields) = r.fields.as_object() else {
        return Ok(String::new());
    };
    let mut out = String::new();
    let def = template.and_then(|t| t.kind(&r.kind));
    let mut names: Vec<&String> = fields
        .keys()
        .filter(|k| is_files_field(template, &r.kind, k))
        .collect();
    let position = |k: &str| {
        def.and_then(|d| d.fields.iter().position(|f| f.name == k))
            .unwrap_or(usize::MAX)
    };
    names.sort_by_key(|k| position(k));
    for name in names {
        let mut files = refs_in_json(&json!({ "f": fields[name] }));
        files.sort_by(|a, b| (a.at, &a.sha256).cmp(&(b.at, &b.sha256)));
        out.push_str(&format!(
            "<h2 id=\"files-{}\">{} <span class=\"muted\">{}</span></h2>",
            esc(name),
            esc(&field_label(template, &r.kind, name, lang)),
            files.len()
        ));
        if files.is_empty() {
            out.push_str(&format!(
                "<p class=\"muted\">{}</p>",
                lang.t("没有文件", "No files")
            ));
            continue;
        }
        out.push_str("<ul class=\"files\">");
        for f in &files {
            let here = match state.blobs.as_deref() {
                Some(b) => {
                    b.state(&f.sha256).await.map_err(attachments::io)? == BlobState::Complete
                }
                None => false,
            };
            let href = format!("/ui/r/{}/a/{}", r.id, f.sha256);
            let preview = match (here, family(served_media_type(&f.media_type))) {
                (true, "image") if crate::thumbnails::can_preview(&f.media_type) => format!(
                    "<a href=\"{href}\"><img src=\"{href}?thumb=1\" alt=\"{}\" loading=\"lazy\"></a>",
                    esc(&f.name)
                ),
                (true, "audio") => {
                    format!("<audio controls preload=\"none\" src=\"{href}\"></audio>")
                }
                (true, "video") => {
                    format!("<video controls preload=\"none\" src=\"{href}\"></video>")
                }
                _ => String::new(),
            };
            let name = if here {
                format!(
                    "<a href=\"{href}\">{}</a> · <a href=\"{href}?download=1\">{}</a>",
                    esc(&f.name),
                    lang.t("下载", "download")
                )
            } else {
                esc(&f.name)
            };
            let state_line = if here {
                String::new()
            } else {
                format!(
                    "<br><span class=\"muted\">{}</span>",
                    lang.t(
                        "尚未上传到服务器（添加它的设备下次同步时上传）",
                        "not on the server yet (the device that added it uploads it at its next sync)"
                    )
                )
            };
            out.push_str(&format!(
                "<li>{preview}<div>{name} <span class=\"muted\">{}</span>{state_line}</div></li>",
                size_text(f.size)
            ));
        }
        out.push_str("</ul>");
    }
    Ok(out)
}

/// The most pictures the dossier shows; the rest are on their records' pages.
const STRIP: usize = 24;

/// The village's pictures for its dossier, from the village's `records` the dossier has read:
/// previews of up to [`STRIP`] stored photos, newest first, each opening its record.
pub(super) async fn photo_strip(
    state: &AppState,
    records: &[RecordView],
    lang: Lang,
) -> Result<String, ApiError> {
    let Some(blobs) = state.blobs.as_deref() else {
        return Ok(String::new());
    };
    let mut pictures: Vec<(&RecordView, AttachmentRef)> = records
        .iter()
        .filter(|r| !r.deleted)
        .flat_map(|r| refs_in_json(&r.fields).into_iter().map(move |f| (r, f)))
        .filter(|(_, f)| crate::thumbnails::can_preview(&f.media_type))
        .collect();
    pictures.sort_by(|a, b| (b.1.at, &b.1.sha256).cmp(&(a.1.at, &a.1.sha256)));
    pictures.dedup_by(|a, b| a.1.sha256 == b.1.sha256);
    let total = pictures.len();
    let mut items = String::new();
    let mut shown = 0;
    for (r, f) in pictures {
        if shown == STRIP {
            break;
        }
        if blobs.state(&f.sha256).await.map_err(attachments::io)? != BlobState::Complete {
            continue;
        }
        shown += 1;
        let href = format!("/ui/r/{}/a/{}", r.id, f.sha256);
        items.push_str(&format!(
            "<li><a href=\"/ui/r/{}\"><img src=\"{href}?thumb=1\" alt=\"{}\" loading=\"lazy\"></a>\
             <div>{} <span class=\"muted\">{}</span></div></li>",
            r.id,
            esc(&f.name),
            esc(&f.name),
            size_text(f.size)
        ));
    }
    if items.is_empty() {
        return Ok(String::new());
    }
    Ok(format!(
        "<h2 id=\"photos\">{} {}</h2><ul class=\"files\">{items}</ul>",
        lang.t("照片", "Photos"),
        lang.t(&format!("（{total}）"), &format!("({total})"))
    ))
}

/// `?download=1`: save the file instead of showing it; `?thumb=1`: its small preview.
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct OpenQuery {
    download: Option<String>,
    thumb: Option<String>,
}

/// `GET /ui/r/{id}/a/{sha256}`: a file of a record the user may see, shown (pictures, sound,
/// video, PDF) or saved (`?download=1`, and anything else); audited as a view or a download.
pub(super) async fn open(
    State(state): State<Arc<AppState>>,
    user: User,
    Path((id, sha256)): Path<(String, String)>,
    Query(q): Query<OpenQuery>,
    headers: HeaderMap,
) -> Response {
    let lang = user.lang;
    let download = q.download.is_some_and(|d| d != "0");
    let thumb = q.thumb.is_some_and(|d| d != "0");
    let result = async {
        let blobs = attachments::blobs(&state)?;
        let (record, r, _) = attachments::reference(&state, &user.auth, &id, &sha256).await?;
        // A preview on a page the user opened (that page's view is audited, not each preview).
        if thumb {
            return match preview(&state, &r).await? {
                Some(response) => Ok(response),
                None => Err(ApiError::not_found("this file has no preview")),
            };
        }
        let action = if download {
            "attachment_download"
        } else {
            "attachment_view"
        };
        attachments::serve(
            &state,
            blobs,
            &r,
            (Some(!download), headers.get(header::RANGE)),
            user.auth.audit(
                action,
                json!({ "record": record, "sha256": sha256, "name": r.name, "ui": true }),
            ),
        )
        .await
    }
    .await;
    match result {
        Ok(r) => r,
        Err(ApiError::Client { status, .. }) if status == StatusCode::CONFLICT => error_page(
            lang,
            StatusCode::NOT_FOUND,
            "not_found",
            lang.t("这条记录没有这个文件", "This record has no such file"),
        ),
        Err(e) => ui_error(lang, e),
    }
}

/// The preview of a stored picture as an answer, if there is (or can be made) one.
async fn preview(state: &AppState, r: &AttachmentRef) -> Result<Option<Response>, ApiError> {
    /// Previews made at once (each decode may take a few hundred megabytes).
    static MAKING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
    let Some(blobs) = state.blobs.clone() else {
        return Ok(None);
    };
    if !crate::thumbnails::can_preview(&r.media_type) {
        return Ok(None);
    }
    let _turn = MAKING
        .acquire()
        .await
        .map_err(|e| ApiError::Internal(format!("preview queue: {e}")))?;
    let sha = r.sha256.clone();
    // Made once from the file (fetched first when it is in an object store), then kept.
    let thumb = blobs.thumbnail_path(&sha);
    let source = if tokio::fs::try_exists(&thumb).await.unwrap_or(false) {
        None
    } else {
        match blobs.local(&sha).await.map_err(attachments::io)? {
            Some(local) => Some(local),
            None => return Ok(None),
        }
    };
    let bytes = tokio::task::spawn_blocking(move || {
        crate::thumbnails::preview(&blobs, &sha, source.as_ref().map(|l| l.path()))
            .and_then(|p| std::fs::read(p).ok())
    })
    .await
    .map_err(|e| ApiError::Internal(format!("preview task: {e}")))?;
    Ok(bytes.map(|b| {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
        // Named by the photo's hash: it never changes.
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, max-age=31536000, immutable"),
        );
        (StatusCode::OK, h, b).into_response()
    }))
}

/// The village's records the campaign's viewer may see (through the `(campaign, scope)` index),
/// of the page's period, whole (at most 10,000).
async fn village_records(
    state: &AppState,
    c: &Campaign,
    code: &str,
) -> Result<Vec<RecordView>, ApiError> {
    Ok(state
        .storage
        .records(
            RecordFilter {
                scope: Some(code.into()),
                campaign: Some(c.id),
                limit: Some(10_000),
                from: c.period.from.clone(),
                to: c.period.to.clone(),
                ..Default::default()
            },
            c.visibility.clone(),
        )
        .await?)
}

/// The name a file has inside a village's ZIP: `<kind>/<date> <name>`, made unique.
fn zip_name(
    template: Option<&Template>,
    kind: &str,
    record: &RecordView,
    f: &AttachmentRef,
    taken: &mut std::collections::HashSet<String>,
) -> String {
    // Every part is cleaned: a device writes the date and the name, and a ZIP entry with `/`
    // or `..` in it would be extracted outside its folder.
    let clean = fieldsync_protocol::attachment::safe_file_name;
    let folder = clean(&kind_label(template, kind, Lang { en: false }));
    let date = field_str(record, "date");
    let file = clean(&f.name);
    let base = if date.is_empty() {
        file
    } else {
        format!("{} {file}", clean(date))
    };
    let mut name = format!("{folder}/{base}");
    let mut n = 2;
    while !taken.insert(name.clone()) {
        let (stem, ext) = match base.rsplit_once('.') {
            Some((s, e)) => (s.to_string(), format!(".{e}")),
            None => (base.clone(), String::new()),
        };
        name = format!("{folder}/{stem} ({n}){ext}");
        n += 1;
    }
    name
}

/// `GET /ui/c/{campaign}/v/{code}/files.zip`: every file of the village's records the user may
/// see, one ZIP (stored, not recompressed: photos and recordings are compressed already),
/// folders by form, with a 说明.txt naming the files not on the server yet. Audited.
pub(super) async fn village_zip(
    State(state): State<Arc<AppState>>,
    user: User,
    Path((campaign, code)): Path<(String, String)>,
) -> Response {
    let lang = user.lang;
    match village_zip_inner(&state, &user, &campaign, &code).await {
        Ok(r) => r,
        Err(e) => ui_error(lang, e),
    }
}

async fn village_zip_inner(
    state: &AppState,
    user: &User,
    campaign: &str,
    code: &str,
) -> Result<Response, ApiError> {
    let blobs = attachments::blobs(state)?;
    let c = load_campaign(state, user, campaign, crate::storage::Period::all()).await?;
    if !user.auth.sees(&c.id, code) {
        return Err(ApiError::not_found(format!("no village {code} for you")));
    }
    let records = village_records(state, &c, code).await?;
    let template = c.template.as_ref();
    let mut taken = std::collections::HashSet::new();
    let mut seen = std::collections::HashSet::new();
    let mut entries = Vec::new();
    let mut missing = Vec::new();
    for r in records.iter().filter(|r| !r.deleted) {
        for f in refs_in_json(&r.fields) {
            if !seen.insert(f.sha256.clone()) {
                continue;
            }
            let name = zip_name(template, &r.kind, r, &f, &mut taken);
            // A file in an object store is fetched into the scratch directory first (removed
            // with the answer's making).
            match blobs.local(&f.sha256).await.map_err(attachments::io)? {
                Some(local) => entries.push((name, local)),
                None => missing.push(name),
            }
        }
    }
    let village = c.place_name(code);
    let readme = {
        let mut t = format!(
            "{village}（{code}）附件，共 {} 个文件，按表单分文件夹。\r\n",
            entries.len()
        );
        if !missing.is_empty() {
            t.push_str(&format!(
                "\r\n以下 {} 个文件尚未上传到服务器（添加它们的设备下次同步时上传），不在包内：\r\n",
                missing.len()
            ));
            for m in &missing {
                t.push_str(&format!("  {m}\r\n"));
            }
        }
        t
    };
    let dir = blobs.scratch_dir();
    let count = entries.len();
    let file = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}.zip", uuid::Uuid::now_v7()));
        let out = std::fs::File::create(&path)?;
        // The name goes at once: the open handles keep the bytes until the answer is sent.
        let reader = std::fs::File::open(&path)?;
        std::fs::remove_file(&path)?;
        let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(out));
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(true);
        zip.start_file("说明.txt", stored)?;
        zip.write_all(readme.as_bytes())?;
        for (name, local) in entries {
            zip.start_file(name, stored)?;
            std::io::copy(&mut std::fs::File::open(local.path())?, &mut zip)?;
        }
        zip.finish()?.flush()?;
        Ok(reader)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("zip task: {e}")))?
    .map_err(attachments::io)?;
    state
        .storage
        .audit(user.auth.audit(
            "attachment_download",
            json!({ "campaign": c.id, "village": code, "files": count, "ui": true }),
        ))
        .await;
    let len = file.metadata().map_err(attachments::io)?.len();
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(
        tokio::fs::File::from_std(file),
    ));
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&content_disposition(&format!("{village}附件.zip"), false))
    {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    Ok((StatusCode::OK, h, body).into_response())
}
