//! The attachment endpoints: which files a device still has to send, and the tus 1.0 core
//! upload (HEAD for the offset, PATCH to append, with the checksum extension) and download of
//! one file at a URL named by its record and hash.
//!
//! A file may be sent or read only for a record the device may see whose merged fields
//! reference the file's hash; its length and type are the reference's. The bytes are checked
//! per request (`Upload-Checksum`) and as a whole when the last byte arrives; a file that does
//! not hash to its name is discarded.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fieldsync_protocol::attachment::{
    AttachmentRef, MAX_MISSING_ITEMS, Missing, MissingRequest, MissingResponse,
    OFFSET_CONTENT_TYPE, TUS_RESUMABLE, TUS_VERSION, UPLOAD_CHECKSUM, UPLOAD_LENGTH, UPLOAD_OFFSET,
    content_disposition, is_sha256_hex, parse_checksum, refs_in_json, served_media_type,
};
use http_body_util::BodyExt;
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::AppState;
use crate::auth::Auth;
use crate::blobs::{BlobState, BlobStore};
use crate::error::ApiError;

/// The server's blob store, or the error saying it keeps no attachments.
pub(crate) fn blobs(state: &AppState) -> Result<&BlobStore, ApiError> {
    state.blobs.as_deref().ok_or_else(|| {
        ApiError::client(
            StatusCode::SERVICE_UNAVAILABLE,
            "attachments_unavailable",
            "this server keeps no attachments (no data directory for them)",
        )
    })
}

/// A failure of the attachment storage, as the (internal) error it is.
pub(crate) fn io(e: std::io::Error) -> ApiError {
    ApiError::Internal(format!("attachment storage: {e}"))
}

fn parse_hash(sha256: &str) -> Result<(), ApiError> {
    if is_sha256_hex(sha256) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{sha256:?} is not a SHA-256 (64 lowercase hex digits)"
        )))
    }
}

/// The reference to `sha256` in record `id` as the caller may see it (404 for a record they may
/// not see, 409 `not_referenced` for a hash it does not name).
pub(crate) async fn reference(
    state: &AppState,
    auth: &Auth,
    id: &str,
    sha256: &str,
) -> Result<(Uuid, AttachmentRef, Uuid), ApiError> {
    let id = Uuid::parse_str(id)
        .map_err(|e| ApiError::bad_request(format!("{id:?} is not a record id: {e}")))?;
    parse_hash(sha256)?;
    let record = state
        .storage
        .record(id, auth.visibility())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no record {id} on this server")))?;
    let found = refs_in_json(&record.fields)
        .into_iter()
        .find(|r| r.sha256 == sha256);
    match found {
        Some(r) => Ok((id, r, record.campaign)),
        None => Err(ApiError::client(
            StatusCode::CONFLICT,
            "not_referenced",
            format!("record {id} does not reference attachment {sha256} (yet)"),
        )
        .with_hint("push the record first; if you just did, retry in a second")
        .with_retry_after(1)),
    }
}

fn tus_headers(offset: u64, length: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(TUS_RESUMABLE, HeaderValue::from_static(TUS_VERSION));
    h.insert(UPLOAD_OFFSET, HeaderValue::from(offset));
    h.insert(UPLOAD_LENGTH, HeaderValue::from(length));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h
}

/// `POST /v1/attachments/missing`: of the files listed, those this server does not hold whole,
/// each with the offset to send from.
pub async fn missing(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    Json(req): Json<MissingRequest>,
) -> Result<Json<MissingResponse>, ApiError> {
    let blobs = blobs(&state)?;
    if req.items.len() > MAX_MISSING_ITEMS {
        return Err(ApiError::client(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_items",
            format!(
                "{} files asked about at once; ask about at most {MAX_MISSING_ITEMS}",
                req.items.len()
            ),
        ));
    }
    // Each record is read once, however many of its files are asked about.
    let mut referenced: std::collections::HashMap<Uuid, std::collections::HashSet<String>> =
        std::collections::HashMap::new();
    let mut missing = Vec::new();
    for item in &req.items {
        parse_hash(&item.sha256)?;
        let record = Uuid::parse_str(&item.record).map_err(|e| {
            ApiError::bad_request(format!("{:?} is not a record id: {e}", item.record))
        })?;
        if let std::collections::hash_map::Entry::Vacant(slot) = referenced.entry(record) {
            let Some(view) = state.storage.record(record, auth.visibility()).await? else {
                return Err(ApiError::not_found(format!(
                    "no record {} on this server",
                    item.record
                )));
            };
            slot.insert(
                refs_in_json(&view.fields)
                    .into_iter()
                    .map(|r| r.sha256)
                    .collect(),
            );
        }
        // What the server holds of a file is told only for a record that refers to it (else a
        // device could learn which photos other groups took); otherwise it is "missing from 0"
        // and its PATCH waits for the record to be merged.
        let state_of = if referenced[&record].contains(&item.sha256) {
            blobs.state(&item.sha256).await.map_err(io)?
        } else {
            BlobState::Partial(0)
        };
        match state_of {
            BlobState::Complete => {}
            BlobState::Partial(offset) => missing.push(Missing {
                sha256: item.sha256.clone(),
                offset,
            }),
        }
    }
    Ok(Json(MissingResponse { missing }))
}

/// `HEAD /v1/records/{id}/attachments/{sha256}`: how much of the file the server has
/// (`Upload-Offset`) of its length (`Upload-Length`).
pub async fn head(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    Path((id, sha256)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let blobs = blobs(&state)?;
    let (_, r, _) = reference(&state, &auth, &id, &sha256).await?;
    // After a write under way (a cut request still being read) has stopped: asking for the
    // offset supersedes it.
    let _guard = blobs.lock(&sha256).await;
    let offset = match blobs.state(&sha256).await.map_err(io)? {
        BlobState::Complete => r.size,
        BlobState::Partial(n) => n,
    };
    Ok((StatusCode::OK, tus_headers(offset, r.size)).into_response())
}

/// How long a request that a newer one superseded still takes what arrives of its body.
const SUPERSEDED_DRAIN: std::time::Duration = std::time::Duration::from_millis(300);

/// `PATCH /v1/records/{id}/attachments/{sha256}`: appends the body at `Upload-Offset`.
pub async fn patch(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    Path((id, sha256)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let blobs = blobs(&state)?;
    let (record, r, campaign) = reference(&state, &auth, &id, &sha256).await?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type != OFFSET_CONTENT_TYPE {
        return Err(ApiError::client(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("a PATCH of an attachment is {OFFSET_CONTENT_TYPE}, not {content_type:?}"),
        ));
    }
    let offset: u64 = headers
        .get(UPLOAD_OFFSET)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| ApiError::bad_request("Upload-Offset is missing or not a number"))?;
    let checksum = match headers.get(UPLOAD_CHECKSUM) {
        None => None,
        Some(v) => Some(v.to_str().ok().and_then(parse_checksum).ok_or_else(|| {
            ApiError::bad_request("Upload-Checksum is not \"sha256 <base64 digest>\"")
        })?),
    };
    let guard = blobs.lock(&sha256).await;
    let held = blobs.state(&sha256).await.map_err(io)?;
    if held == BlobState::Complete {
        return Ok((StatusCode::NO_CONTENT, tus_headers(r.size, r.size)).into_response());
    }
    // A new file must fit in its campaign's quota (checked before its first bytes are kept).
    if held == BlobState::Partial(0)
        && let Some(quota) = state.attachment_quota
    {
        // Counted from now on (reserved), so that uploads running at once cannot pass the
        // quota together; the guard goes before anything is awaited.
        let refused = {
            let mut ledger = state.blob_sweep.lock().expect("sweep ledger");
            let used = ledger.usage(campaign);
            if !ledger.reserved.contains(&r.sha256) && used + r.size > quota {
                Some(used)
            } else {
                ledger.reserve(campaign, &r.sha256, r.size);
                None
            }
        };
        if let Some(used) = refused {
            use fieldsync_protocol::attachment::size_text;
            return Err(ApiError::client(
                StatusCode::INSUFFICIENT_STORAGE,
                "quota_exceeded",
                format!(
                    "本工作任务的附件已占用 {}，上限 {}，{} 放不下；请联系管理员 / this campaign's files take {} of the {} allowed; {} does not fit: ask the administrator",
                    size_text(used),
                    size_text(quota),
                    r.name,
                    size_text(used),
                    size_text(quota),
                    r.name
                ),
            )
            .with_hint("the records are kept; the file waits on the device until there is room"));
        }
    }
    let mut part = blobs.append(&sha256).await.map_err(io)?;
    let start = part.len();
    // A body from before the server's offset repeats bytes the server has (the client asked
    // for the offset while a request it had given up on was still arriving): those are skipped,
    // the rest appended. A body from beyond it would leave a gap.
    if offset > start {
        return Err(ApiError::client(
            StatusCode::CONFLICT,
            "offset_mismatch",
            format!("the server has {start} bytes of {sha256}, not {offset}"),
        )
        .with_hint(format!("send from byte {start} (HEAD tells the offset)")));
    }
    let mut skip = start - offset;
    let mut hasher = Sha256::new();
    let mut body = body;
    let mut cut = false;
    // Once a newer request wants the hash, what has already arrived of this body is still
    // taken (for a moment: a connection that is cut delivers its last bytes at once), then this
    // request stops.
    let mut superseded: Option<tokio::time::Instant> = None;
    let mut ended = false;
    loop {
        let frame = match superseded {
            Some(until) => match tokio::time::timeout_at(until, body.frame()).await {
                Ok(f) => f,
                Err(_) => break,
            },
            None => tokio::select! {
                f = body.frame() => f,
                () = guard.superseded() => {
                    superseded = Some(tokio::time::Instant::now() + SUPERSEDED_DRAIN);
                    continue;
                }
            },
        };
        match frame {
            None => {
                ended = true;
                break;
            }
            Some(Err(_)) => {
                cut = true;
                break;
            }
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                hasher.update(&data);
                let already = (skip.min(data.len() as u64)) as usize;
                skip -= already as u64;
                let data = data.slice(already..);
                if part.len() + data.len() as u64 > r.size {
                    part.truncate(start).await.map_err(io)?;
                    return Err(ApiError::client(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "too_large",
                        format!(
                            "attachment {sha256} is {} bytes long; more was sent",
                            r.size
                        ),
                    ));
                }
                part.write(&data).await.map_err(io)?;
            }
        }
    }
    if let Some(expected) = checksum {
        let got: [u8; 32] = hasher.finalize().into();
        if !ended || got != expected {
            part.truncate(start).await.map_err(io)?;
            if cut {
                return Err(ApiError::client(
                    StatusCode::BAD_REQUEST,
                    "body_cut",
                    "the chunk stopped arriving before its end; it was dropped",
                )
                .with_hint(format!("send again from byte {start}")));
            }
            if !ended {
                return Err(ApiError::client(
                    StatusCode::CONFLICT,
                    "superseded",
                    format!("a newer request for {sha256} arrived; this chunk was dropped"),
                )
                .with_hint(format!("send again from byte {start}")));
            }
            let status = StatusCode::from_u16(460).expect("460 is a status code");
            return Err(ApiError::client(
                status,
                "checksum_mismatch",
                "the chunk does not match its Upload-Checksum; it was dropped",
            )
            .with_hint(format!("send again from byte {start}")));
        }
    }
    let received = part.finish().await.map_err(io)?;
    if !ended && !cut {
        return Err(ApiError::client(
            StatusCode::CONFLICT,
            "superseded",
            format!("a newer request for {sha256} arrived; this one stopped at byte {received}"),
        )
        .with_hint(format!("send from byte {received} (HEAD tells the offset)")));
    }
    if received == r.size {
        if !blobs.complete(&sha256).await.map_err(io)? {
            return Err(ApiError::client(
                StatusCode::UNPROCESSABLE_ENTITY,
                "hash_mismatch",
                format!("the bytes received do not hash to {sha256}; they were discarded"),
            )
            .with_hint("send the file again from byte 0"));
        }
        state
            .blob_sweep
            .lock()
            .expect("sweep ledger")
            .add(campaign, &r.sha256, r.size);
        state
            .storage
            .audit(auth.audit(
                "attachment_upload",
                json!({ "record": record, "sha256": sha256, "size": r.size }),
            ))
            .await;
    }
    Ok((StatusCode::NO_CONTENT, tus_headers(received, r.size)).into_response())
}

/// `GET /v1/records/{id}/attachments/{sha256}`: the file, with its media type.
pub async fn get(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    Path((id, sha256)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let blobs = blobs(&state)?;
    let (record, r, _) = reference(&state, &auth, &id, &sha256).await?;
    serve(
        &state,
        blobs,
        &r,
        (None, headers.get(header::RANGE)),
        auth.audit(
            "attachment_view",
            json!({ "record": record, "sha256": sha256 }),
        ),
    )
    .await
}

/// Answers the bytes of a stored file (audited with `entry`), or 404 while they are on their
/// way. `browser` is for a page's user: `Some(true)` shows it in the page when it is a picture,
/// recording, video or PDF (else it is saved), `Some(false)` saves it under its name; either way
/// it is served as [`served_media_type`] says, under a policy that runs no script.
pub async fn serve(
    state: &AppState,
    blobs: &BlobStore,
    r: &AttachmentRef,
    (browser, range): (Option<bool>, Option<&HeaderValue>),
    entry: crate::storage::AuditEntry,
) -> Result<Response, ApiError> {
    let not_here = || {
        ApiError::not_found(format!(
            "attachment {} has not reached the server yet",
            r.sha256
        ))
        .with_hint("the device that added it uploads it when it next syncs")
    };
    // One range `bytes=N-` or `bytes=N-M` (a resumed download, a player seeking); anything
    // else is answered whole.
    let wanted = match range.and_then(|v| v.to_str().ok()).and_then(parse_range) {
        Some((from, _)) if from >= r.size && r.size > 0 => {
            if !blobs.shelf().has(&r.sha256).await.map_err(io)? {
                return Err(not_here());
            }
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", r.size)) {
                h.insert(header::CONTENT_RANGE, v);
            }
            return Ok((StatusCode::RANGE_NOT_SATISFIABLE, h).into_response());
        }
        Some((from, to)) if r.size > 0 => Some((from, to.unwrap_or(r.size - 1).min(r.size - 1))),
        _ => None,
    };
    let Some(bytes) = blobs.read(&r.sha256, wanted).await.map_err(io)? else {
        return Err(not_here());
    };
    // Every answer with bytes is audited, a resumed part too (a range from byte 1 is nearly
    // the whole file).
    state.storage.audit(entry).await;
    let mut h = HeaderMap::new();
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let (status, length) = match wanted {
        Some((from, to)) => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {from}-{to}/{}", r.size)) {
                h.insert(header::CONTENT_RANGE, v);
            }
            (StatusCode::PARTIAL_CONTENT, to - from + 1)
        }
        None => (StatusCode::OK, r.size),
    };
    let stream = Body::from_stream(bytes);
    // As a browser may get it whichever route it took (the dashboard's cookie works on the API
    // too): never as a page.
    let media_type = served_media_type(&r.media_type);
    if let Ok(v) = HeaderValue::from_str(media_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Some(inline) = browser {
        let inline = inline && media_type != "application/octet-stream";
        if let Ok(v) = HeaderValue::from_str(&content_disposition(&r.name, inline)) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; img-src 'self'; media-src 'self'; object-src 'self'; \
                 style-src 'unsafe-inline'; frame-ancestors 'self'",
            ),
        );
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    // Photos and recordings are compressed already: sent as they are, with a known length.
    h.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    Ok((status, h, stream).into_response())
}

/// `bytes=N-` or `bytes=N-M` as (N, M); `None` for anything else (several ranges, suffixes).
fn parse_range(v: &str) -> Option<(u64, Option<u64>)> {
    let spec = v.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (from, to) = spec.split_once('-')?;
    let from: u64 = from.trim().parse().ok()?;
    let to = match to.trim() {
        "" => None,
        t => Some(t.parse::<u64>().ok().filter(|t| *t >= from)?),
    };
    Some((from, to))
}
