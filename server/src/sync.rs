//! The sync endpoints: decode and check a push before anything is stored, serve pull pages.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use axum::{
    body::Bytes,
    extract::{Query, State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use fieldsync_protocol::{
    RecordHeader,
    auth::TAG_BYTES,
    inspect_change,
    record::genesis_actor,
    wire::{
        self, Bound, CBOR_CONTENT_TYPE, DecodeLimits, MAX_PAGE_BYTES, MAX_PUSH_BYTES,
        MIN_PAGE_BYTES, PullQuery, PullResponse, PushRequest, PushResponse,
    },
};
use serde_bytes::ByteBuf;
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::{
    AppState,
    auth::{Auth, forbidden},
    error::ApiError,
    storage::{CheckedChange, CheckedPush, CheckedRecord, PullRequest},
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

fn parse_device(s: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s)
        .map_err(|e| ApiError::bad_request(format!("device {s:?} is not a UUID: {e}")))
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

/// Decodes a push body and checks every change in it. Nothing is stored unless all of it passes.
/// The body is decoded within [`DecodeLimits::PUSH`] (a gzip body as it is decompressed), so a
/// body that passes a bound is refused before it costs more memory.
pub fn check_push(body: &[u8], gzipped: bool) -> Result<CheckedPush, ApiError> {
    let decoded = if gzipped {
        wire::decode_gzip::<PushRequest>(body, "push", MAX_PUSH_BYTES, DecodeLimits::PUSH)
    } else if body.len() > MAX_PUSH_BYTES {
        Err(wire::WireError::TooLarge {
            limit: MAX_PUSH_BYTES,
        })
    } else {
        wire::decode_with::<PushRequest>(body, "push", DecodeLimits::PUSH)
    };
    let request = decoded.map_err(|e| match e {
        wire::WireError::TooLarge { .. } => {
            ApiError::client(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string())
                .with_hint("push fewer changes per request")
        }
        wire::WireError::Limit {
            bound: Bound::Records,
            ..
        } => ApiError::client(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_records",
            e.to_string(),
        )
        .with_hint("push in smaller batches (client-core does this automatically)"),
        wire::WireError::Limit { .. } => ApiError::client(
            StatusCode::PAYLOAD_TOO_LARGE,
            "limit_exceeded",
            e.to_string(),
        )
        .with_hint("see the limits of a push in docs/PROTOCOL.md"),
        other => ApiError::bad_request(other.to_string())
            .with_hint("see docs/PROTOCOL.md for the push message"),
    })?;
    wire::check_version(request.v).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let device = parse_device(&request.device)?;
    let actors = request
        .actors
        .iter()
        .map(|a| {
            if a.len() == 16 {
                Ok(a.to_vec())
            } else {
                Err(ApiError::bad_request(format!(
                    "actor ids are 16 bytes; got one of {} bytes",
                    a.len()
                )))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Records are independent: check them on every core.
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(request.records.len().div_ceil(64).max(1));
    let chunk = request.records.len().div_ceil(threads).max(1);
    let mut chunks: Vec<Vec<_>> = Vec::new();
    let mut it = request.records.into_iter().peekable();
    while it.peek().is_some() {
        chunks.push(it.by_ref().take(chunk).collect());
    }
    let checked: Vec<Result<Vec<CheckedRecord>, ApiError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|c| scope.spawn(move || c.into_iter().map(check_record).collect()))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(ApiError::Internal("check panicked".into())))
            })
            .collect()
    });
    let mut records = Vec::new();
    for c in checked {
        records.extend(c?);
    }
    Ok(CheckedPush {
        device,
        actors,
        records,
    })
}

fn check_record(
    wire_record: fieldsync_protocol::wire::WireRecord,
) -> Result<CheckedRecord, ApiError> {
    let header = wire_record.header().map_err(|e| {
        ApiError::client(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_record",
            format!("record {:?}: {e}", wire_record.id),
        )
    })?;
    let tags = wire_record.tags;
    if !tags.is_empty() && tags.len() != wire_record.changes.len() {
        return Err(ApiError::client(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_record",
            format!(
                "record {}: {} tags for {} changes; tags must be absent or one per change",
                header.id,
                tags.len(),
                wire_record.changes.len()
            ),
        ));
    }
    let mut changes = check_changes(&header, wire_record.changes)?;
    for (change, tag) in changes.iter_mut().zip(tags) {
        if tag.is_empty() {
            continue;
        }
        change.tag = Some(<[u8; TAG_BYTES]>::try_from(tag.as_slice()).map_err(|_| {
            ApiError::client(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_record",
                format!(
                    "record {}: a tag of {} bytes; tags are {TAG_BYTES} bytes",
                    header.id,
                    tag.len()
                ),
            )
        })?);
    }
    Ok(CheckedRecord { header, changes })
}

/// Decodes and checks the changes of one record (checksums, genesis, dependencies).
pub(crate) fn check_changes(
    header: &RecordHeader,
    changes: Vec<ByteBuf>,
) -> Result<Vec<CheckedChange>, ApiError> {
    let genesis_actor = genesis_actor(header);
    let mut out = Vec::with_capacity(changes.len());
    for (index, bytes) in changes.into_iter().enumerate() {
        let bytes = bytes.into_vec();
        let invalid = |message: String| {
            ApiError::client(StatusCode::UNPROCESSABLE_ENTITY, "invalid_change", message)
        };
        let info = inspect_change(&bytes)
            .map_err(|e| invalid(format!("change {index} of record {}: {e}", header.id)))?;
        let genesis = info.actor == genesis_actor;
        if genesis {
            let is_genesis = fieldsync_protocol::genesis::is_genesis(header, &bytes, &info.hash)
                .map_err(|e| invalid(e.to_string()))?;
            if !is_genesis {
                return Err(invalid(format!(
                    "change {index} of record {} claims the record's genesis actor but is not \
                     the genesis of {} / {} / {}",
                    header.id, header.kind, header.campaign, header.scope
                )));
            }
        } else if info.deps.is_empty() {
            return Err(invalid(format!(
                "change {index} of record {} has no dependencies but is not the record's \
                 genesis: every edit must build on the genesis change",
                header.id
            )));
        }
        out.push(CheckedChange {
            hash: info.hash.0,
            actor: info.actor.to_bytes().to_vec(),
            seq: info.seq,
            bytes,
            genesis,
            tag: None,
        });
    }
    Ok(out)
}

/// `GET /v1/sync/pull`.
pub async fn pull(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(raw) = query.map_err(|e| ApiError::bad_request(e.to_string()))?;
    let query = parse_pull_query(&raw)?;
    let device = parse_device(&query.device)?;
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
    Ok(cbor_response(&response))
}

/// Reads the query of `GET /v1/sync/pull` (`device`, `after`, `after_hash`, `max_bytes`,
/// `include_own`); a clear 400 for anything malformed.
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
    Ok(PullQuery {
        device,
        after: number("after")?.unwrap_or(0),
        after_hash: raw.get("after_hash").cloned(),
        max_bytes: number("max_bytes")?.map(|n| n as usize),
        include_own: match raw.get("include_own").map(String::as_str) {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "include_own={other:?} must be true or false"
                )));
            }
        },
    })
}
