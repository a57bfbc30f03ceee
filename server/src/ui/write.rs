//! What the dashboard writes and reads from a record's Automerge document: a resolution of a
//! conflicted field (a real change, pushed into the log like a device's, so it syncs back to
//! every device) and the record's history (who changed which fields when).

use automerge::{ActorId, transaction::CommitOptions};
use fieldsync_protocol::{FieldValue, RecordHeader, record};

use crate::{
    error::ApiError,
    storage::{CheckedPush, CheckedRecord},
};

/// Writes `value` into `field` of the merged document `doc` as device `device` with a fresh
/// actor, and returns the checked push carrying that one change.
pub fn resolution(
    header: &RecordHeader,
    doc: &[u8],
    device: uuid::Uuid,
    field: &str,
    value: &FieldValue,
) -> Result<CheckedPush, ApiError> {
    let internal = |e: record::RecordError| ApiError::Internal(e.to_string());
    let mut doc = record::load_doc(doc).map_err(internal)?;
    let actor = ActorId::random();
    doc.set_actor(actor.clone());
    let fields = record::fields_obj(&doc).map_err(internal)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let mut tx = doc.transaction();
    record::put_field(&mut tx, &fields, field, value)
        .map_err(|e| ApiError::bad_request(format!("cannot write {field:?}: {e}")))?;
    tx.commit_with(CommitOptions::default().with_time(now));
    let change = doc
        .get_last_local_change()
        .ok_or_else(|| ApiError::Internal("the resolution made no change".into()))?;
    let bytes = change.raw_bytes().to_vec();
    let changes = crate::sync::check_changes(header, vec![serde_bytes::ByteBuf::from(bytes)])?;
    Ok(CheckedPush {
        device,
        actors: vec![actor.to_bytes().to_vec()],
        records: vec![CheckedRecord {
            header: header.clone(),
            changes,
        }],
    })
}

/// One entry of a record's history.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    /// When (ms since the epoch, as the writing device's clock said).
    pub time: i64,
    /// The actor (hex).
    pub actor: String,
    /// The fields the change wrote.
    pub fields: Vec<String>,
    /// Whether it is the record's genesis.
    pub genesis: bool,
}

/// Every change of a merged document, oldest first, with the fields each one wrote.
pub fn history(header: &RecordHeader, doc: &[u8]) -> Result<Vec<HistoryEntry>, ApiError> {
    let doc = record::load_doc(doc).map_err(|e| ApiError::Internal(e.to_string()))?;
    let genesis = record::genesis_actor(header);
    let mut out = Vec::new();
    for change in doc.get_changes(&[]) {
        let mut fields: Vec<String> = Vec::new();
        for op in change.decode().operations {
            if let automerge::legacy::Key::Map(key) = &op.key {
                let key = key.to_string();
                if !key.starts_with('_')
                    && key != "fields"
                    && key != "deleted"
                    && !fields.contains(&key)
                {
                    fields.push(key);
                }
            }
        }
        out.push(HistoryEntry {
            time: change.timestamp(),
            actor: change.actor_id().to_hex_string(),
            fields,
            genesis: *change.actor_id() == genesis,
        });
    }
    out.sort_by_key(|e| (!e.genesis, e.time));
    Ok(out)
}
