//! Merging in PostgreSQL: each server runs one merging task that takes dirty records with
//! `FOR UPDATE SKIP LOCKED`, so however many servers share the database a record's changes are
//! merged by one of them at a time and each change is applied once (its `applied` flag is set in
//! the transaction that writes the document). A push that marks a record dirty while it is being
//! merged waits for that row, so the mark is never lost. Automerge's work runs in
//! `spawn_blocking`. After merging, the shared data version in `server_meta` moves (when merging
//! has caught up, and at most every [`VERSION_INTERVAL`] during a long merge), and every server
//! reads it, so tallies cached on any server are recomputed after any server merged.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deadpool_postgres::{Pool, Transaction};
use fieldsync_protocol::{FieldValue, RecordHeader, template::TEMPLATE_KIND};
use uuid::Uuid;

use super::{StorageError, now_ms, other, templates::TemplateCache};
use crate::merge::{Input, Merge, index, review};

/// How many records one merge transaction takes.
const MERGE_CHUNK: i64 = 32;
/// How often an idle merger looks for dirty records and reads the shared data version.
const POLL: Duration = Duration::from_millis(100);
/// While a long merge runs, how often the data version moves.
const VERSION_INTERVAL: Duration = Duration::from_secs(2);

/// Merges until `stop` is notified; keeps `version` equal to the database's data version.
pub(super) async fn run(
    pool: Pool,
    templates: Arc<TemplateCache>,
    version: Arc<AtomicU64>,
    merge: bool,
    stop: Arc<tokio::sync::Notify>,
) {
    let mut unannounced = false;
    let mut announced_at = Instant::now();
    loop {
        let mut merged = 0;
        if merge {
            match merge_chunk(&pool, &templates).await {
                Ok(n) => merged = n,
                Err(e) => tracing::error!(error = %e, "merging records failed; will retry"),
            }
        }
        unannounced |= merged > 0;
        let caught_up = merged < MERGE_CHUNK as usize;
        if unannounced && (caught_up || announced_at.elapsed() >= VERSION_INTERVAL) {
            match bump_version(&pool).await {
                Ok(()) => {
                    unannounced = false;
                    announced_at = Instant::now();
                }
                Err(e) => tracing::error!(error = %e, "moving the data version failed"),
            }
        }
        if let Ok(v) = read_version(&pool).await {
            version.store(v, Ordering::Release);
        }
        if caught_up {
            tokio::select! {
                _ = stop.notified() => return,
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }
}

async fn read_version(pool: &Pool) -> Result<u64, StorageError> {
    let c = pool.get().await.map_err(other)?;
    let v: String = c
        .query_one(
            "SELECT value FROM server_meta WHERE key = 'data_version'",
            &[],
        )
        .await?
        .get(0);
    Ok(v.parse().unwrap_or(0))
}

async fn bump_version(pool: &Pool) -> Result<(), StorageError> {
    let c = pool.get().await.map_err(other)?;
    c.execute(
        "UPDATE server_meta SET value = (value::bigint + 1)::text WHERE key = 'data_version'",
        &[],
    )
    .await?;
    Ok(())
}

/// Merges up to [`MERGE_CHUNK`] dirty records no other server is merging; returns how many.
pub(super) async fn merge_chunk(
    pool: &Pool,
    templates: &TemplateCache,
) -> Result<usize, StorageError> {
    let mut client = pool.get().await.map_err(other)?;
    let tx = client.transaction().await?;
    // Templates first, so the records of a chunk are checked against them.
    let mut ids: Vec<String> = tx
        .query(
            "SELECT id FROM records WHERE dirty AND kind = $1 FOR UPDATE SKIP LOCKED",
            &[&TEMPLATE_KIND],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let rest = (MERGE_CHUNK - ids.len() as i64).max(1);
    for r in tx
        .query(
            "SELECT id FROM records WHERE dirty ORDER BY first_seq LIMIT $1
             FOR UPDATE SKIP LOCKED",
            &[&rest],
        )
        .await?
    {
        let id: String = r.get(0);
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let inputs = read_inputs(&tx, &ids).await?;
    // Automerge's work is CPU work: off the async threads, on every core.
    let (inputs, outcomes) = tokio::task::spawn_blocking(move || {
        let outcomes = crate::merge::merge_many(&inputs);
        (inputs, outcomes)
    })
    .await
    .map_err(other)?;
    for ((id, input), outcome) in ids.iter().zip(&inputs).zip(outcomes) {
        write_outcome(&tx, id, input, outcome, templates).await?;
    }
    tx.commit().await?;
    Ok(ids.len())
}

/// Reads what merging the records `ids` needs (their headers, documents and unapplied changes)
/// with two queries, in the order of `ids`.
async fn read_inputs(tx: &Transaction<'_>, ids: &[String]) -> Result<Vec<Input>, StorageError> {
    let mut stored: HashMap<String, (RecordHeader, Option<Vec<u8>>)> = HashMap::new();
    for row in tx
        .query(
            "SELECT id, kind, campaign, scope, doc FROM records WHERE id = ANY($1)",
            &[&ids],
        )
        .await?
    {
        let id: String = row.get(0);
        let header = RecordHeader::parse(&id, row.get(1), row.get(2), row.get(3)).map_err(other)?;
        stored.insert(id, (header, row.get(4)));
    }
    let mut pending: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    for row in tx
        .query(
            "SELECT record_id, bytes FROM changes WHERE record_id = ANY($1) AND NOT applied
             ORDER BY seq",
            &[&ids],
        )
        .await?
    {
        pending.entry(row.get(0)).or_default().push(row.get(1));
    }
    ids.iter()
        .map(|id| {
            let (header, doc) = stored
                .remove(id)
                .ok_or_else(|| other(format!("record {id} vanished while locked")))?;
            Ok(Input {
                header,
                doc,
                pending: pending.remove(id).unwrap_or_default(),
            })
        })
        .collect()
}

/// Writes what merging record `id`'s `input` gave (`merged`, decided by [`crate::merge`]):
/// document, projection, review and search text, and the applied flags.
async fn write_outcome(
    tx: &Transaction<'_>,
    id: &str,
    input: &Input,
    merged: Merge,
    templates: &TemplateCache,
) -> Result<(), StorageError> {
    let kind = &input.header.kind;
    let campaign = &input.header.campaign.to_string();
    let mark_applied = async |applied: &[[u8; 32]]| -> Result<(), StorageError> {
        let hashes: Vec<&[u8]> = applied.iter().map(|h| h.as_slice()).collect();
        tx.execute(
            "UPDATE changes SET applied = true WHERE hash = ANY($1)",
            &[&hashes],
        )
        .await?;
        Ok(())
    };
    let (doc, applied, projection, problem) = match merged {
        Merge::Failed {
            problem,
            doc,
            applied,
        } => {
            tracing::warn!(record = id, %problem, "record cannot be merged");
            mark_applied(&applied).await?;
            tx.execute(
                "UPDATE records SET doc = coalesce($3, doc), dirty = false, problem = $2
                 WHERE id = $1",
                &[&id, &problem, &doc],
            )
            .await?;
            return Ok(());
        }
        Merge::Merged {
            doc,
            applied,
            projection,
            problem,
        } => (doc, applied, projection, problem),
    };
    mark_applied(&applied).await?;
    tx.execute(
        "UPDATE records SET doc = $2, fields = $3, deleted = $4, conflicts = $5, heads = $6,
                problem = $7, dirty = false, merged_at = $8, search_text = $9
         WHERE id = $1",
        &[
            &id,
            &doc,
            &projection.fields_json(),
            &projection.deleted,
            &(projection.conflicts as i32),
            &serde_json::to_value(&projection.heads).map_err(other)?,
            &problem,
            &now_ms(),
            &index::search_text(kind, &projection),
        ],
    )
    .await?;
    if kind == TEMPLATE_KIND {
        // A template version arrived or changed: check the campaign's records again. (The
        // template cache notices by itself: its fingerprint holds the merge time just written.)
        tx.execute(
            "UPDATE records SET dirty = true
             WHERE campaign = $1 AND kind != $2 AND fields IS NOT NULL AND NOT dirty",
            &[campaign, &TEMPLATE_KIND],
        )
        .await?;
    }
    let versions = if kind == TEMPLATE_KIND {
        Default::default()
    } else {
        templates.for_campaign(tx, campaign).await?
    };
    // The live records the fields may refer to (ids in string values), read at once.
    let ids: Vec<String> = projection
        .fields
        .values()
        .filter_map(|v| match v {
            FieldValue::Str(s) => Some(s),
            _ => None,
        })
        .flat_map(|s| s.split(','))
        .filter_map(|part| Uuid::parse_str(part.trim()).ok())
        .map(|u| u.to_string())
        .collect();
    let kinds: HashMap<String, String> = if ids.is_empty() {
        HashMap::new()
    } else {
        tx.query(
            "SELECT id, kind FROM records WHERE id = ANY($1) AND NOT deleted",
            &[&ids],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    };
    let kind_of = |target: Uuid| kinds.get(&target.to_string()).cloned();
    let review = review::review(&projection, &versions, kind_of)
        .map(|problems| serde_json::to_value(&problems))
        .transpose()
        .map_err(other)?;
    tx.execute(
        "UPDATE records SET review = $2 WHERE id = $1",
        &[&id, &review],
    )
    .await?;
    Ok(())
}
