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

/// The query of one page: `?1` the cursor, `?2` whether the device's own changes come back, `?3`
/// the device, `?4` the most rows, and for a `scoped` device the two parameters of
/// [`visible::log_condition`].
///
/// Everything visible (an administrator, a department viewer): the log in order from the cursor.
/// A scoped device: the sequence numbers of its own part of the log are read from the
/// `changes_by_place` index (one range per visible place, from the cursor on), sorted, and only
/// those rows are fetched, so a work group's pull costs what its villages hold, not what the
/// province holds. `INDEXED BY` makes SQLite refuse the statement rather than fall back to
/// reading the whole log.
fn page_sql(scoped: bool) -> String {
    if !scoped {
        return "SELECT c.seq, c.record_id, r.kind, r.campaign, r.scope, c.bytes
                FROM changes c JOIN records r ON r.id = c.record_id
                WHERE c.seq > ?1 AND (?2 OR c.pushed_by != ?3)
                ORDER BY c.seq LIMIT ?4"
            .into();
    }
    format!(
        "SELECT c.seq, c.record_id, r.kind, r.campaign, r.scope, c.bytes
         FROM changes c JOIN records r ON r.id = c.record_id
         WHERE c.seq IN (
             SELECT p.seq FROM changes p INDEXED BY changes_by_place
             WHERE {} AND p.seq > ?1 AND (?2 OR p.pushed_by != ?3)
             ORDER BY p.seq LIMIT ?4)
         ORDER BY c.seq",
        visible::log_condition("p", 5)
    )
}

/// How SQLite reads one pull page of a device with `scope` (`EXPLAIN QUERY PLAN`, one line per
/// step), for an operator or a benchmark to check that the index is used.
pub(super) fn plan(
    conn: &Connection,
    scope: &fieldsync_protocol::auth::WireScope,
) -> Result<Vec<String>, StorageError> {
    let scoped = visible::log_params(&Visibility::of(scope));
    let mut stmt = conn.prepare(&format!(
        "EXPLAIN QUERY PLAN {}",
        page_sql(scoped.is_some())
    ))?;
    let (campaign, places) = scoped.unwrap_or_default();
    let lines = if stmt.parameter_count() > 4 {
        stmt.query_map(params![0, true, "", 1, campaign, places], |r| {
            r.get::<_, String>(3)
        })?
        .collect::<Result<Vec<_>, _>>()?
    } else {
        stmt.query_map(params![0, true, "", 1], |r| r.get::<_, String>(3))?
            .collect::<Result<Vec<_>, _>>()?
    };
    Ok(lines)
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
        let visibility = Visibility::of(&req.scope);
        let scoped = visible::log_params(&visibility);
        let mut stmt = tx.prepare_cached(&page_sql(scoped.is_some()))?;
        let mut rows = match scoped {
            None => stmt.query(params![
                req.after as i64,
                req.include_own,
                req.device.to_string(),
                PAGE_ROWS as i64 + 1,
            ])?,
            Some((campaign, places)) => stmt.query(params![
                req.after as i64,
                req.include_own,
                req.device.to_string(),
                PAGE_ROWS as i64 + 1,
                campaign,
                places
            ])?,
        };
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
                        created: None,
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

#[cfg(test)]
mod tests {
    use fieldsync_protocol::auth::WireScope;

    use super::super::{SqliteStorage, explain_pull};
    use crate::storage::Storage;

    #[tokio::test]
    async fn a_work_groups_pull_reads_its_places_from_the_index_and_never_scans_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let storage = SqliteStorage::open(dir.path()).unwrap();
        storage.close().await;
        let group = WireScope {
            all: false,
            campaign: Some("c".into()),
            places: vec!["510100001".into(), "510100002".into()],
            write: true,
        };
        let plan = explain_pull(dir.path(), &group).unwrap();
        assert!(
            plan.iter()
                .any(|l| l.starts_with("SEARCH p USING INDEX changes_by_place")),
            "{plan:#?}"
        );
        assert!(
            plan.iter()
                .all(|l| !l.starts_with("SCAN") || l.contains("json_each")),
            "a scoped pull must not read a whole table: {plan:#?}"
        );
        // Everything visible: the log in order from the cursor, by its primary key.
        let all = explain_pull(dir.path(), &WireScope::everything(true)).unwrap();
        assert!(
            all.iter()
                .any(|l| l.starts_with("SEARCH c USING INTEGER PRIMARY KEY")),
            "{all:#?}"
        );
    }
}
