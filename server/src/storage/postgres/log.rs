//! The change log in PostgreSQL: pushes appended in one transaction, pull pages read from one
//! snapshot, and the epoch an administrator's `declare_restored` renews.
//!
//! **Sequence numbers across servers.** A sequence number is assigned before its transaction
//! commits, so with several servers a reader could see change 10 committed while change 9, taken
//! earlier by another server, is still in flight — and a cursor moved to 10 would skip 9 for good.
//! Every push therefore holds one transaction-level advisory lock ([`LOG_LOCK`]) from before it
//! reads anything until it commits: numbers are taken, and become visible, in commit order, on
//! any number of servers, exactly as the SQLite storage's single writer does. A rolled-back push
//! leaves a gap that no later number can fill, so a reader may pass it. Pushes are serialized
//! across servers by this lock (reads, pulls and merging are not); the checks of a push run under
//! it too, so two servers never both accept a record's conflicting first changes.

use std::collections::HashMap;

use deadpool_postgres::GenericClient;
use fieldsync_protocol::wire::WireRecord;
use serde_bytes::ByteBuf;
use uuid::Uuid;

use super::{PullPage, PullRequest, StorageError, Visibility, now_ms, visible};

/// The advisory lock every push holds until it commits (see the module's documentation).
pub(super) const LOG_LOCK: i64 = 0x6669_656c_6400_0001;
/// How long after an administrator declares the server restored untagged relays are accepted
/// (7 days).
pub(super) const RECOVERY_WINDOW_MS: i64 = 7 * 24 * 3_600_000;
/// Most rows scanned for one pull page.
const PAGE_ROWS: i64 = 20_000;
/// Rows read from a pull page's portal at a time.
const PORTAL_ROWS: i32 = 256;

async fn head<C: GenericClient>(c: &C) -> Result<u64, StorageError> {
    Ok(
        c.query_one("SELECT coalesce(max(seq), 0) FROM changes", &[])
            .await?
            .get::<_, i64>(0) as u64,
    )
}

async fn meta<C: GenericClient>(c: &C, key: &str) -> Result<Option<String>, StorageError> {
    Ok(
        c.query_opt("SELECT value FROM server_meta WHERE key = $1", &[&key])
            .await?
            .map(|r| r.get(0)),
    )
}

/// Makes sure the log has an epoch (the first server to open the database sets it).
pub(super) async fn ensure_epoch<C: GenericClient>(c: &C) -> Result<(), StorageError> {
    c.execute(
        "INSERT INTO server_meta (key, value) VALUES ('log_id', $1) ON CONFLICT DO NOTHING",
        &[&Uuid::new_v4().to_string()],
    )
    .await?;
    Ok(())
}

/// The query of one page: `$1` the cursor, `$2` whether the device's own changes come back, `$3`
/// the device, `$4` the most rows, and for a `scoped` device the two parameters of
/// [`visible::log_condition`].
///
/// Everything visible (an administrator, a department viewer): the log in order from the cursor.
/// A scoped device: the sequence numbers of its own part of the log are read from the
/// `changes_by_place` index, sorted and cut to the page, and only those rows are fetched, so a
/// work group's pull costs what its villages hold, not what the province holds.
fn page_sql(scoped: bool) -> String {
    if !scoped {
        return "SELECT c.seq, c.record_id, r.kind, r.campaign, r.scope, c.bytes
                FROM changes c JOIN records r ON r.id = c.record_id
                WHERE c.seq > $1 AND ($2 OR c.pushed_by <> $3)
                ORDER BY c.seq LIMIT $4"
            .into();
    }
    format!(
        "SELECT c.seq, c.record_id, r.kind, r.campaign, r.scope, c.bytes
         FROM (SELECT p.seq FROM changes p
               WHERE {} AND p.seq > $1 AND ($2 OR p.pushed_by <> $3)
               ORDER BY p.seq LIMIT $4) s
         JOIN changes c ON c.seq = s.seq JOIN records r ON r.id = c.record_id
         ORDER BY c.seq",
        visible::log_condition("p", 5)
    )
}

/// How PostgreSQL reads one pull page of a device with `scope` from the first page on
/// (`EXPLAIN`, one line per step).
pub(super) async fn plan<C: GenericClient>(
    c: &C,
    scope: &fieldsync_protocol::auth::WireScope,
) -> Result<Vec<String>, StorageError> {
    let (after, own, device, limit) = (0i64, true, String::new(), PAGE_ROWS + 1);
    let rows = match visible::log_params(&Visibility::of(scope)) {
        None => {
            c.query(
                &format!("EXPLAIN {}", page_sql(false)),
                &[&after, &own, &device, &limit],
            )
            .await?
        }
        Some((campaign, places)) => {
            c.query(
                &format!("EXPLAIN {}", page_sql(true)),
                &[&after, &own, &device, &limit, &campaign, &places],
            )
            .await?
        }
    };
    Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
}

/// Reads one page of the log from one snapshot.
pub(super) async fn pull(
    client: &mut deadpool_postgres::Client,
    req: &PullRequest,
) -> Result<PullPage, StorageError> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let head = head(&tx).await?;
    let pushed_by_you = tx
        .query_opt(
            "SELECT pushed FROM devices WHERE id = $1",
            &[&req.device.to_string()],
        )
        .await?
        .map(|r| r.get::<_, i64>(0))
        .unwrap_or(0) as u64;
    let epoch = meta(&tx, "log_id").await?.unwrap_or_default();
    let hash_at = async |seq: u64| -> Result<Option<[u8; 32]>, StorageError> {
        Ok(tx
            .query_opt("SELECT hash FROM changes WHERE seq = $1", &[&(seq as i64)])
            .await?
            .and_then(|r| <[u8; 32]>::try_from(r.get::<_, Vec<u8>>(0).as_slice()).ok()))
    };
    if req.after > 0 {
        let have = hash_at(req.after).await?;
        if have.is_none() || (req.after_hash.is_some() && have != req.after_hash) {
            return Ok(PullPage {
                reset: true,
                epoch,
                head,
                next: 0,
                next_hash: None,
                more: false,
                pushed_by_you,
                records: Vec::new(),
            });
        }
    }
    // The rows come through a portal, a batch at a time, and the page stops reading at its byte
    // budget: PostgreSQL computes only what the page takes, not every row up to the row limit.
    let (after, limit, device) = (req.after as i64, PAGE_ROWS + 1, req.device.to_string());
    let portal = match visible::log_params(&Visibility::of(&req.scope)) {
        None => {
            tx.bind(
                &page_sql(false),
                &[&after, &req.include_own, &device, &limit],
            )
            .await?
        }
        Some((campaign, places)) => {
            tx.bind(
                &page_sql(true),
                &[
                    &after,
                    &req.include_own,
                    &device,
                    &limit,
                    &campaign,
                    &places,
                ],
            )
            .await?
        }
    };
    let mut records: Vec<WireRecord> = Vec::new();
    let mut index = HashMap::<String, usize>::new();
    let mut bytes = 0usize;
    let mut last = req.after;
    let mut more = false;
    let mut n: i64 = 0;
    'page: loop {
        let rows = tx.query_portal(&portal, PORTAL_ROWS).await?;
        for row in &rows {
            let change: Vec<u8> = row.get(5);
            if n >= PAGE_ROWS || (bytes > 0 && bytes + change.len() > req.max_bytes) {
                more = true;
                break 'page;
            }
            n += 1;
            last = row.get::<_, i64>(0) as u64;
            bytes += change.len();
            let record_id: String = row.get(1);
            let i = match index.get(&record_id) {
                Some(i) => *i,
                None => {
                    records.push(WireRecord {
                        id: record_id.clone(),
                        kind: row.get(2),
                        campaign: row.get(3),
                        scope: row.get(4),
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
        if rows.len() < PORTAL_ROWS as usize {
            break;
        }
    }
    let next = if more { last } else { head.max(req.after) };
    let next_hash = if next == 0 {
        None
    } else {
        hash_at(next).await?
    };
    tx.commit().await?;
    Ok(PullPage {
        reset: false,
        epoch,
        head,
        next,
        next_hash,
        more,
        pushed_by_you,
        records,
    })
}

/// Notes when a device last pulled.
pub(super) async fn pulled_by<C: GenericClient>(c: &C, device: Uuid) -> Result<(), StorageError> {
    c.execute(
        "INSERT INTO devices (id, first_seen, last_pull) VALUES ($1, $2, $2)
         ON CONFLICT (id) DO UPDATE SET last_pull = $2",
        &[&device.to_string(), &now_ms()],
    )
    .await?;
    Ok(())
}

/// Gives the log a new epoch and opens the recovery window; returns both.
pub(super) async fn declare_restored(
    client: &mut deadpool_postgres::Client,
) -> Result<(String, i64), StorageError> {
    let epoch = Uuid::new_v4().to_string();
    let until = now_ms() + RECOVERY_WINDOW_MS;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOG_LOCK])
        .await?;
    for (key, value) in [
        ("log_id", epoch.clone()),
        ("recovery_until", until.to_string()),
    ] {
        tx.execute(
            "INSERT INTO server_meta (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = $2",
            &[&key, &value],
        )
        .await?;
    }
    tx.commit().await?;
    tracing::warn!(%epoch, "declared restored from a backup: recovery window open");
    Ok((epoch, until))
}
