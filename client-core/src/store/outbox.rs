//! The outbox: batches of changes the server has not acknowledged (changes outside the scope
//! held back), marking them acknowledged, and the change log read for bundles.

use std::collections::HashMap;

use automerge::ChangeHash;
use fieldsync_protocol::{
    RecordHeader,
    wire::{MAX_PUSH_RECORDS, PROTOCOL_VERSION, PushRequest, WireRecord},
};
use serde_bytes::ByteBuf;
use uuid::Uuid;

use super::{Result, Store, StoreError};

/// One batch of unacknowledged changes, ready to push.
#[derive(Debug, Clone)]
pub struct OutboxBatch {
    /// The push message.
    pub request: PushRequest,
    /// The hashes of the changes in it, to mark once the server acknowledges them.
    pub hashes: Vec<ChangeHash>,
    /// The record id of each change in `hashes` (same order): a record the server refuses
    /// keeps its changes unacknowledged.
    pub owners: Vec<String>,
    /// The local log position of the last change in it (the next batch starts after it).
    pub last_seq: i64,
    /// The number of change bytes in it.
    pub bytes: usize,
}

/// One stored change with its record's header.
pub(crate) struct ChangeRow {
    pub(crate) seq: i64,
    pub(crate) hash: Vec<u8>,
    pub(crate) bytes: Vec<u8>,
    pub(crate) header: RecordHeader,
    pub(crate) actor: Vec<u8>,
    pub(crate) tag: Option<Vec<u8>>,
}

impl Store {
    // ----- sync plumbing ----------------------------------------------------------------------

    /// The next batch of changes the server has not acknowledged, after local position
    /// `after_seq`, holding at most `max_bytes` of change bytes (at least one change).
    pub fn outbox_batch(&self, after_seq: i64, max_bytes: usize) -> Result<Option<OutboxBatch>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT c.seq, c.hash, c.record_id, c.bytes, r.kind, r.campaign, r.scope, c.actor,
                    c.tag
             FROM changes c JOIN records r ON r.id = c.record_id
             WHERE c.acked = 0 AND c.seq > ?1 ORDER BY c.seq LIMIT 500",
        )?;
        let scope = self.scope()?;
        let mut records: Vec<WireRecord> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut hashes = Vec::new();
        let mut owners = Vec::new();
        let mut bytes = 0usize;
        let mut last_seq = after_seq;
        let mut actors = std::collections::BTreeSet::new();
        let own: std::collections::HashSet<Vec<u8>> = self
            .actors()?
            .into_iter()
            .map(|a| a.to_bytes().to_vec())
            .collect();
        'outer: loop {
            let mut rows = stmt.query([last_seq])?;
            let mut any = false;
            while let Some(row) = rows.next()? {
                any = true;
                let change_bytes: Vec<u8> = row.get(3)?;
                let record_id: String = row.get(2)?;
                if !hashes.is_empty()
                    && (bytes + change_bytes.len() > max_bytes
                        || (records.len() >= MAX_PUSH_RECORDS && !index.contains_key(&record_id)))
                {
                    break 'outer;
                }
                last_seq = row.get(0)?;
                if let Some(scope) = &scope {
                    let campaign: String = row.get(5)?;
                    let place: String = row.get(6)?;
                    let kind: String = row.get(4)?;
                    if !scope.writes(&campaign, &place, &kind) {
                        // Held: outside what this device may upload now. Kept, never acked.
                        continue;
                    }
                }
                let hash: Vec<u8> = row.get(1)?;
                owners.push(record_id.clone());
                hashes.push(ChangeHash::try_from(hash.as_slice()).map_err(|e| {
                    StoreError::Damaged {
                        id: Uuid::nil(),
                        reason: format!("bad hash in change log: {e}"),
                    }
                })?);
                let actor: Vec<u8> = row.get(7)?;
                let tag: Option<Vec<u8>> = row.get(8)?;
                let is_own = own.contains(&actor);
                if is_own {
                    actors.insert(actor);
                }
                let i = *index.entry(record_id.clone()).or_insert_with(|| {
                    records.push(WireRecord {
                        id: record_id,
                        kind: row.get(4).unwrap_or_default(),
                        campaign: row.get(5).unwrap_or_default(),
                        scope: row.get(6).unwrap_or_default(),
                        changes: Vec::new(),
                        created: None,
                        tags: Vec::new(),
                    });
                    records.len() - 1
                });
                bytes += change_bytes.len();
                let r = &mut records[i];
                r.changes.push(ByteBuf::from(change_bytes));
                match tag.filter(|_| !is_own) {
                    Some(t) => {
                        r.tags.resize(r.changes.len() - 1, ByteBuf::new());
                        r.tags.push(ByteBuf::from(t));
                    }
                    None if !r.tags.is_empty() => r.tags.push(ByteBuf::new()),
                    None => {}
                }
            }
            if !any {
                break;
            }
        }
        if hashes.is_empty() {
            return Ok(None);
        }
        Ok(Some(OutboxBatch {
            request: PushRequest {
                v: PROTOCOL_VERSION,
                device: self.device.to_string(),
                actors: actors.into_iter().map(ByteBuf::from).collect(),
                records,
            },
            hashes,
            owners,
            last_seq,
            bytes,
        }))
    }

    /// Marks changes as acknowledged by the server after this device pushed them.
    pub fn mark_pushed(&mut self, hashes: &[ChangeHash]) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt =
                tx.prepare_cached("UPDATE changes SET acked = 1, pushed = 1 WHERE hash = ?1")?;
            for h in hashes {
                stmt.execute([h.0.as_slice()])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// How many changes this device pushed and had acknowledged.
    /// Changes dropped with records this device may no longer see count as remembered: the
    /// server still holds them, and this device did not lose them by accident.
    pub fn pushed_count(&self) -> Result<u64> {
        let kept =
            self.conn
                .query_row("SELECT count(*) FROM changes WHERE pushed = 1", [], |r| {
                    r.get::<_, i64>(0)
                })? as u64;
        let dropped: u64 = self
            .meta("pushed_dropped")?
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok(kept + dropped)
    }

    /// Every stored change after local log position `since`, oldest first, with its record's
    /// header (for bundles).
    pub(crate) fn change_rows(&self, since: i64) -> Result<Vec<ChangeRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT c.seq, c.hash, c.bytes, r.id, r.kind, r.campaign, r.scope, c.actor, c.tag
             FROM changes c JOIN records r ON r.id = c.record_id
             WHERE c.seq > ?1 ORDER BY c.seq",
        )?;
        let rows = stmt.query_map([since], |r| {
            Ok((
                (
                    r.get::<_, i64>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ),
                (
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                ),
                (r.get::<_, Vec<u8>>(7)?, r.get::<_, Option<Vec<u8>>>(8)?),
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let ((seq, hash, bytes), (id, kind, campaign, scope), (actor, tag)) = row?;
            out.push(ChangeRow {
                seq,
                hash,
                bytes,
                header: RecordHeader::parse(&id, &kind, &campaign, &scope)?,
                actor,
                tag,
            });
        }
        Ok(out)
    }
}
