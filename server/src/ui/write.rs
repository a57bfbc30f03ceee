//! What the dashboard writes and reads from a record's Automerge document: a resolution of a
//! conflicted field or a review (a real change, pushed into the log like a device's, so it syncs back to
//! every device) and the record's history (who changed which fields when).

use automerge::{ActorId, transaction::CommitOptions};
use fieldsync_protocol::{FieldValue, RecordHeader, record};

use crate::{
    error::ApiError,
    storage::{CheckedPush, CheckedRecord},
};

/// Writes `fields` into stored record `r` as the signed-in `auth`'s device: one change on the
/// merged document, built on a blocking thread and pushed through the one push pipeline as any
/// device's push. The caller has checked that `auth` may write it.
pub async fn write_fields(
    state: &crate::AppState,
    auth: &crate::auth::Auth,
    r: &crate::storage::RecordView,
    fields: Vec<(String, FieldValue)>,
) -> Result<crate::storage::PushOutcome, ApiError> {
    let doc = state
        .storage
        .document(r.id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("record {} is not merged yet", r.id)))?;
    let header = RecordHeader {
        id: r.id,
        kind: r.kind.clone(),
        campaign: r.campaign,
        scope: r.scope.clone(),
    };
    let device = auth.0.device;
    let push = tokio::task::spawn_blocking(move || change(&header, &doc, device, &fields))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(state
        .storage
        .push(crate::ingest::Pusher::of(&auth.0), push)
        .await?)
}

/// Waits (at most 5 s) until record `id` is merged, so the next page shows what was written:
/// merging follows a push within moments.
pub async fn wait_merged(
    state: &crate::AppState,
    auth: &crate::auth::Auth,
    id: uuid::Uuid,
) -> Result<(), ApiError> {
    for _ in 0..100 {
        match state.storage.record(id, auth.visibility()).await? {
            Some(r) if r.up_to_date => break,
            _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
    Ok(())
}

/// Writes `value` into `field` of the merged document `doc` as device `device` with a fresh
/// actor, and returns the checked push carrying that one change.
pub fn resolution(
    header: &RecordHeader,
    doc: &[u8],
    device: uuid::Uuid,
    field: &str,
    value: &FieldValue,
) -> Result<CheckedPush, ApiError> {
    change(header, doc, device, &[(field.to_string(), value.clone())])
}

/// Writes every `(field, value)` of `fields` into the merged document `doc` in one change, as
/// device `device` with a fresh actor, and returns the checked push carrying that change.
pub fn change(
    header: &RecordHeader,
    doc: &[u8],
    device: uuid::Uuid,
    fields: &[(String, FieldValue)],
) -> Result<CheckedPush, ApiError> {
    let internal = |e: record::RecordError| ApiError::Internal(e.to_string());
    let mut doc = record::load_doc(doc).map_err(internal)?;
    let actor = ActorId::random();
    doc.set_actor(actor.clone());
    let obj = record::fields_obj(&doc).map_err(internal)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let mut tx = doc.transaction();
    for (field, value) in fields {
        record::put_field(&mut tx, &obj, field, value)
            .map_err(|e| ApiError::bad_request(format!("cannot write {field:?}: {e}")))?;
    }
    tx.commit_with(CommitOptions::default().with_time(now));
    let change = doc
        .get_last_local_change()
        .ok_or_else(|| ApiError::Internal("the write made no change".into()))?;
    let bytes = change.raw_bytes().to_vec();
    let changes = crate::ingest::decode::changes(header, vec![serde_bytes::ByteBuf::from(bytes)])?;
    Ok(CheckedPush {
        device,
        actors: vec![actor.to_bytes().to_vec()],
        records: vec![CheckedRecord {
            header: header.clone(),
            changes,
        }],
    })
}

pub use fieldsync_protocol::history::{FieldChange, HistoryEntry};

/// Every change of a merged document, oldest first, with what each one changed (see
/// [`fieldsync_protocol::history::of`]).
pub fn history(header: &RecordHeader, doc: &[u8]) -> Result<Vec<HistoryEntry>, ApiError> {
    let doc = record::load_doc(doc).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(fieldsync_protocol::history::of(header, &doc))
}
