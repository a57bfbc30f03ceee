//! Pull pages from SQLite: the log after a cursor, within what the device may see
//! ([`super::visible`] in the query), grouped by record, up to a byte budget.

use fieldsync_protocol::wire::WireRecord;
use rusqlite::{Connection, OptionalExtension, params};
use serde_bytes::ByteBuf;

use super::visible;
use crate::storage::{PullPage, PullRequest, StorageError, Visibility};

/// Most rows scanned for one pull page.
const PAGE_ROWS: usize = 20_000;

/// The log's newest sequence number.
pub(super) fn head(conn: &Connection) -> Result<u64, StorageError> {
    Ok(
        conn.query_row("SELECT coalesce(max(seq), 0) FROM changes", [], |r| {
            r.get::<_, i64>(0)
        })? as u64,
    )
}

/// One page of the log after the request's cursor, within the device's scope.
pub(super) fn pull_page(
    conn: &mut Connection,
    req: &PullRequest,
) -> Result<PullPage, StorageError> {
    let tx = conn.transaction()?;
    let head = head(&tx)?;
    let pushed_by_you: u64 = tx
        .query_row(
            "SELECT pushed FROM devices WHERE id = ?1",
            [req.device.to_string()],
            |r| r.get::<_, i64>(0),
        )
        .optional()?
        .unwrap_or(0) as u64;
    let hash_at = |seq: u64| -> Result<Option<[u8; 32]>, StorageError> {
        let h: Option<Vec<u8>> = tx
            .query_row(
                "SELECT hash FROM changes WHERE seq = ?1",
                [seq as i64],
                |r| r.get(0),
            )
            .optional()?;
        Ok(h.and_then(|h| <[u8; 32]>::try_from(h.as_slice()).ok()))
    };
    let epoch: String = tx
        .query_row(
            "SELECT value FROM server_meta WHERE key = 'log_id'",
            [],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or_default();
    let empty = |reset: bool| PullPage {
        reset,
        epoch: epoch.clone(),
        head,
        next: 0,
        next_hash: None,
        more: false,
        pushed_by_you,
        records: Vec::new(),
    };
    if req.after > 0 {
        let have = hash_at(req.after)?;
        if have.is_none() || (req.after_hash.is_some() && have != req.after_hash) {
            return Ok(empty(true));
        }
    }
    let mut records: Vec<WireRecord> = Vec::new();
    let mut index = std::collections::HashMap::<String, usize>::new();
    let mut bytes = 0usize;
    let mut last = req.after;
    let mut more = false;
    {
        let mut stmt = tx.prepare_cached(&format!(
            "SELECT c.seq, c.record_id, r.kind, r.campaign, r.scope, c.bytes
             FROM changes c JOIN records r ON r.id = c.record_id
             WHERE c.seq > ?1 AND (?2 OR c.pushed_by != ?3) AND {}
             ORDER BY c.seq LIMIT ?4",
            visible::condition("r", 5)
        ))?;
        let (campaign, places) = visible::params(&Visibility::of(&req.scope));
        let mut rows = stmt.query(params![
            req.after as i64,
            req.include_own,
            req.device.to_string(),
            PAGE_ROWS as i64 + 1,
            campaign,
            places
        ])?;
        let mut n = 0;
        while let Some(row) = rows.next()? {
            n += 1;
            let change: Vec<u8> = row.get(5)?;
            if n > PAGE_ROWS || (bytes > 0 && bytes + change.len() > req.max_bytes) {
                more = true;
                break;
            }
            last = row.get::<_, i64>(0)? as u64;
            bytes += change.len();
            let record_id: String = row.get(1)?;
            let i = match index.get(&record_id) {
                Some(i) => *i,
                None => {
                    records.push(WireRecord {
                        id: record_id.clone(),
                        kind: row.get(2)?,
                        campaign: row.get(3)?,
                        scope: row.get(4)?,
                        changes: Vec::new(),
                        tags: Vec::new(),
                    });
                    index.insert(record_id, records.len() - 1);
                    records.len() - 1
                }
            };
            records[i].changes.push(ByteBuf::from(change));
        }
    }
    let next = if more { last } else { head.max(req.after) };
    Ok(PullPage {
        reset: false,
        epoch,
        head,
        next,
        next_hash: if next == 0 { None } else { hash_at(next)? },
        more,
        pushed_by_you,
        records,
    })
}
