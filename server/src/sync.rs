//! The sync endpoints over HTTP: a push's content type, encoding and size, then its decoding
//! ([`crate::ingest::decode`]) on blocking threads and the storage's push (which checks it with
//! [`crate::ingest`]); pull pages.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use axum::{
    body::Bytes,
    extract::{Query, State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use fieldsync_protocol::wire::{
    self, CBOR_CONTENT_TYPE, MAX_PAGE_BYTES, MIN_PAGE_BYTES, PullQuery, PullResponse, PushResponse,
};
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::{
    AppState,
    auth::{Auth, forbidden},
    error::ApiError,
    storage::{CheckedPush, PullRequest},
};

/// Refuses a request whose body names another device than the token's.
fn check_device(auth: &Auth, device: Uuid) -> Result<(), ApiError> {
    if device != auth.0.device {
        return Err(forbidden(
            "device_mismatch",
            format!(
                "the request says it comes from device {device}, but its token belongs to \
                 device {}",
                auth.0.device
            ),
        ));
    }
    Ok(())
}

fn cbor_response<T: serde::Serialize>(message: &T) -> Response {
    (
        [(header::CONTENT_TYPE, CBOR_CONTENT_TYPE)],
        wire::encode(message),
    )
        .into_response()
}

/// `POST /v1/sync/push`.
pub async fn push(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let pusher = crate::ingest::Pusher::of(&auth.0);
    // Cheap, and before the body is read: a device that may only read is told so first.
    crate::ingest::may_write(&pusher)?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::client(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the push body is larger than the server accepts: {e}"),
            )
            .with_hint("push fewer changes per request (client-core batches automatically)")
        } else {
            ApiError::bad_request(format!("the push body could not be read: {e}"))
        }
    })?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.split(';').next().map(str::trim) != Some(CBOR_CONTENT_TYPE) {
        return Err(ApiError::client(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("a push must be {CBOR_CONTENT_TYPE}, not {content_type:?}"),
        )
        .with_hint("see docs/PROTOCOL.md for the push message"));
    }
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .to_ascii_lowercase();
    let gzipped = match encoding.as_str() {
        "gzip" => true,
        "identity" | "" => false,
        other => {
            return Err(ApiError::client(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_encoding",
                format!("content encoding {other:?} is not supported; use gzip or none"),
            ));
        }
    };
    // Decompressing, decoding and checking are CPU work: keep them off the async threads, and
    // only a few at once (each may hold up to its bounds in memory); the others wait here.
    let permit = DECODING
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let checked = tokio::task::spawn_blocking(move || {
        let checked = check_push(&body, gzipped);
        drop(permit);
        checked
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    if checked.records.len() > state.limits.max_push_records {
        return Err(ApiError::client(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_records",
            format!(
                "this push carries {} records; the server takes at most {} per push",
                checked.records.len(),
                state.limits.max_push_records
            ),
        )
        .with_hint("push in smaller batches (client-core does this automatically)"));
    }
    let changes: usize = checked.records.iter().map(|r| r.changes.len()).sum();
    let records = checked.records.len();
    let device = checked.device;
    // Everything else is checked by `ingest`, inside the storage's write transaction.
    let outcome = state.storage.push(pusher, checked).await?;
    tracing::info!(
        %device, changes, stored = outcome.stored, duplicates = outcome.duplicates,
        head = outcome.head, rejected = outcome.rejected.len(), "push"
    );
    let rejected: Vec<serde_json::Value> = outcome
        .rejected
        .iter()
        .take(20)
        .map(|r| serde_json::json!({ "record": r.id, "code": r.code }))
        .collect();
    state
        .storage
        .audit(auth.audit(
            "push",
            serde_json::json!({ "records": records, "changes": changes,
                                "stored": outcome.stored, "duplicates": outcome.duplicates,
                                "unverified_relays": outcome.unverified_relays,
                                "rejected": outcome.rejected.len(),
                                "rejected_records": rejected }),
        ))
        .await;
    Ok(cbor_response(&PushResponse::from(outcome)))
}

/// How many push bodies are decompressed, decoded and checked at once: two per core.
static DECODING: LazyLock<Arc<Semaphore>> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Arc::new(Semaphore::new(cores * 2))
});

/// Decodes a push body and checks every change in it ([`crate::ingest::decode::push`]), with
/// its refusal as the HTTP error it is answered with.
pub fn check_push(body: &[u8], gzipped: bool) -> Result<CheckedPush, ApiError> {
    crate::ingest::decode::push(body, gzipped).map_err(ApiError::from)
}

/// `GET /v1/sync/pull`.
pub async fn pull(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(raw) = query.map_err(|e| ApiError::bad_request(e.to_string()))?;
    let query = parse_pull_query(&raw)?;
    let device = crate::ingest::decode::device(&query.device)?;
    check_device(&auth, device)?;
    let after_hash = match &query.after_hash {
        None => None,
        Some(h) => Some(
            hex::decode(h)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
                .ok_or_else(|| {
                    ApiError::bad_request(format!("after_hash {h:?} is not 64 hex digits"))
                })?,
        ),
    };
    let max_bytes = query
        .max_bytes
        .unwrap_or(wire::DEFAULT_PAGE_BYTES)
        .clamp(MIN_PAGE_BYTES, MAX_PAGE_BYTES);
    let page = state
        .storage
        .pull(PullRequest {
            device,
            after: query.after,
            after_hash,
            max_bytes,
            include_own: query.include_own,
            scope: auth.0.scope.clone(),
        })
        .await?;
    if page.reset {
        tracing::warn!(%device, after = query.after, head = page.head, "device cursor not in log");
    }
    let changes: usize = page.records.iter().map(|r| r.changes.len()).sum();
    if changes > 0 || page.reset {
        state
            .storage
            .audit(auth.audit(
                "pull",
                serde_json::json!({ "after": query.after, "records": page.records.len(),
                                    "changes": changes, "reset": page.reset }),
            ))
            .await;
    }
    let mut response = PullResponse::from(page);
    response.scope = Some(auth.0.scope.clone());
    if !query.created {
        return Ok(cbor_response(&response));
    }
    // The device reads creations in their compact form: each record's genesis is rebuilt and
    // compared (a microsecond a record, thousands in a page), so off the async threads.
    let body = tokio::task::spawn_blocking(move || {
        for record in &mut response.records {
            if let Ok(header) = record.header() {
                record.compact_creation(&header);
            }
        }
        wire::encode(&response)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, CBOR_CONTENT_TYPE)], body).into_response())
}

/// Reads the query of `GET /v1/sync/pull` (`device`, `after`, `after_hash`, `max_bytes`,
/// `include_own`, `created`); a clear 400 for anything malformed.
pub fn parse_pull_query(raw: &HashMap<String, String>) -> Result<PullQuery, ApiError> {
    let number = |key: &str| -> Result<Option<u64>, ApiError> {
        raw.get(key)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!("{key}={v:?} is not a whole number"))
                })
            })
            .transpose()
    };
    let device = raw
        .get("device")
        .cloned()
        .ok_or_else(|| ApiError::bad_request("the pull query needs device=<uuid>"))?;
    let flag = |key: &str| match raw.get(key).map(String::as_str) {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "{key}={other:?} must be true or false"
        ))),
    };
    Ok(PullQuery {
        device,
        after: number("after")?.unwrap_or(0),
        after_hash: raw.get("after_hash").cloned(),
        max_bytes: number("max_bytes")?.map(|n| n as usize),
        include_own: flag("include_own")?,
        created: flag("created")?,
    })
}
