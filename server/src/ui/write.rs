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

/// One field a change set: its value before the change and after it.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldChange {
    /// The field.
    pub field: String,
    /// Its value before (as the change's dependencies had it), `None` when it had none.
    pub before: Option<FieldValue>,
    /// Its value right after the change (`None` when the change removed it).
    pub after: Option<FieldValue>,
}

/// One entry of a record's history.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    /// When (ms since the epoch, as the writing device's clock said). The genesis has no time
    /// of its own (it is the same bytes on every device); it gets the time of the first change
    /// written on top of it.
    pub time: i64,
    /// The actor (hex).
    pub actor: String,
    /// The fields the change set, each from what to what (texts whole; an appended note shows
    /// as the note before and after).
    pub fields: Vec<FieldChange>,
    /// Whether it is the record's genesis.
    pub genesis: bool,
}

/// Every change of a merged document, oldest first, with what each one changed: the record as
/// the change's dependencies had it against the record right after it.
pub fn history(header: &RecordHeader, doc: &[u8]) -> Result<Vec<HistoryEntry>, ApiError> {
    let internal = |e: &dyn std::fmt::Display| ApiError::Internal(e.to_string());
    let doc = record::load_doc(doc).map_err(|e| internal(&e))?;
    let genesis = record::genesis_actor(header);
    let fields_at =
        |heads: &[automerge::ChangeHash]| -> std::collections::BTreeMap<String, FieldValue> {
            if heads.is_empty() {
                return Default::default();
            }
            doc.fork_at(heads)
                .ok()
                .and_then(|d| record::project(&d).ok())
                .map(|p| p.fields)
                .unwrap_or_default()
        };
    let mut out = Vec::new();
    for change in doc.get_changes(&[]) {
        let before = fields_at(change.deps());
        let after = fields_at(&[change.hash()]);
        let mut names: Vec<&String> = before.keys().chain(after.keys()).collect();
        names.sort();
        names.dedup();
        let fields = names
            .into_iter()
            .filter(|k| !k.starts_with('_'))
            .filter(|k| before.get(*k) != after.get(*k))
            .map(|k| FieldChange {
                field: k.clone(),
                before: before.get(k).cloned(),
                after: after.get(k).cloned(),
            })
            .collect();
        out.push(HistoryEntry {
            time: change.timestamp(),
            actor: change.actor_id().to_hex_string(),
            fields,
            genesis: *change.actor_id() == genesis,
        });
    }
    out.sort_by_key(|e| (!e.genesis, e.time));
    let first = out
        .iter()
        .filter(|e| !e.genesis)
        .map(|e| e.time)
        .find(|t| *t > 0);
    for e in out.iter_mut().filter(|e| e.genesis && e.time == 0) {
        e.time = first.unwrap_or(0);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fieldsync_protocol::record::{genesis_change, put_field};

    #[test]
    fn history_says_what_each_change_changed_from_what_to_what() {
        let header = RecordHeader {
            id: uuid::Uuid::now_v7(),
            kind: "interview".into(),
            campaign: uuid::Uuid::now_v7(),
            scope: "510100001".into(),
        };
        let (mut doc, _) = genesis_change(&header).unwrap();
        doc.set_actor(ActorId::random());
        let fields = record::fields_obj(&doc).unwrap();
        let write = |doc: &mut automerge::Automerge, k: &str, v: FieldValue, t: i64| {
            let mut tx = doc.transaction();
            put_field(&mut tx, &fields, k, &v).unwrap();
            tx.commit_with(CommitOptions::default().with_time(t));
        };
        write(&mut doc, "rating", FieldValue::Str("good".into()), 1_000);
        write(&mut doc, "notes", FieldValue::Text("第一段".into()), 2_000);
        write(&mut doc, "rating", FieldValue::Str("poor".into()), 3_000);
        write(
            &mut doc,
            "notes",
            FieldValue::Text("第一段，补充".into()),
            4_000,
        );
        let h = history(&header, &doc.save()).unwrap();
        assert_eq!(h.len(), 5);
        assert!(h[0].genesis);
        assert_eq!(
            h[0].time, 1_000,
            "the creation row has the first edit's time"
        );
        assert_eq!(
            h[3].fields,
            vec![FieldChange {
                field: "rating".into(),
                before: Some(FieldValue::Str("good".into())),
                after: Some(FieldValue::Str("poor".into())),
            }]
        );
        assert_eq!(h[4].fields.len(), 1, "{:?}", h[4]);
        assert_eq!(h[4].fields[0].field, "notes");
        assert_eq!(
            h[4].fields[0].after,
            Some(FieldValue::Text("第一段，补充".into()))
        );
    }
}
