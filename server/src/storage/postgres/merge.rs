//! Merging in PostgreSQL: each server runs one merging task that takes dirty records with
//! `FOR UPDATE SKIP LOCKED`, so however many servers share the database a record's changes are
//! merged by one of them at a time and each change is applied once (its `applied` flag is set in
//! the transaction that writes the document). A push that marks a record dirty while it is being
//! merged waits for that row, so the mark is never lost. Automerge's work runs in
//! `spawn_blocking`; a chunk's outcomes are written with a handful of array statements, not a few
//! per record. After merging, the shared data version in `server_meta` moves (when merging
//! has caught up, and at most every [`VERSION_INTERVAL`] during a long merge), and every server
//! reads it, so tallies cached on any server are recomputed after any server merged.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deadpool_postgres::{Pool, Transaction};
use fieldsync_protocol::{
    FieldValue, Projection, RecordHeader,
    template::{TEMPLATE_KIND, Template},
};
use uuid::Uuid;

use super::{
    StorageError, now_ms, other,
    templates::{TemplateCache, Versions},
};
use crate::merge::{Input, Merge, index, review};

/// The first key of the transaction locks that order a campaign's template merges against its
/// records' merges (the second is a hash of the campaign id): see `lock_campaigns`.
pub const TEMPLATE_LOCK_SPACE: i32 = 0x6673_7470;

/// How many records one merge transaction takes. With a chunk's writes batched, 128 merged
/// 10,000 records about as fast as SQLite on the project's 2-core VM; 32 and 64 were slower,
/// 256 and 512 no faster (BENCHMARKS.md, 2026-12-07). A chunk holds its rows' locks (a push
/// editing one of them waits) until it commits: about 80 ms for 128 records at that rate.
const MERGE_CHUNK: i64 = 128;
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
    if ids.is_empty() {
        // Nothing dirty (an idle poll): nothing to lock, read or write.
        return Ok(0);
    }
    lock_campaigns(&tx, &ids).await?;
    let inputs = read_inputs(&tx, &ids).await?;
    // Automerge's work is CPU work: off the async threads, on every core.
    let (inputs, outcomes) = tokio::task::spawn_blocking(move || {
        let outcomes = crate::merge::merge_many(&inputs);
        (inputs, outcomes)
    })
    .await
    .map_err(other)?;
    write_outcomes(&tx, &ids, &inputs, outcomes, templates).await?;
    // Last: the chunk's places, whose records' values were written (their tallies move).
    let campaigns: Vec<String> = inputs
        .iter()
        .map(|i| i.header.campaign.to_string())
        .collect();
    super::versions::touch(
        &tx,
        inputs
            .iter()
            .zip(&campaigns)
            .map(|(i, c)| (c.as_str(), i.header.scope.as_str())),
    )
    .await?;
    tx.commit().await?;
    Ok(ids.len())
}

/// Orders a chunk against template merges on any server: for each campaign of the chunk, in the
/// campaigns' order, an exclusive transaction lock when the chunk merges one of its templates,
/// a shared one otherwise ([`TEMPLATE_LOCK_SPACE`]).
///
/// Without it, a record merged on one server while another server merges a new template of its
/// campaign could be reviewed against the old template (read before the new one committed) and
/// missed by the template's "review the campaign again" (which skips records being merged): a
/// record that no longer fits would go unflagged. With it, either the template commits first and
/// the chunk reads it, or the chunk commits first and the template sends its record back to
/// review. Taken in one order, and never while waiting for a row, so no cycle of waits can form.
async fn lock_campaigns(tx: &Transaction<'_>, ids: &[String]) -> Result<(), StorageError> {
    let campaigns = tx
        .query(
            "SELECT campaign, bool_or(kind = $2) FROM records WHERE id = ANY($1)
             GROUP BY campaign ORDER BY campaign",
            &[&ids, &TEMPLATE_KIND],
        )
        .await?;
    for row in campaigns {
        let (campaign, template): (String, bool) = (row.get(0), row.get(1));
        let lock = if template {
            "SELECT pg_advisory_xact_lock($1, hashtext($2))"
        } else {
            "SELECT pg_advisory_xact_lock_shared($1, hashtext($2))"
        };
        tx.execute(lock, &[&TEMPLATE_LOCK_SPACE, &campaign]).await?;
    }
    Ok(())
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

/// A merged record waiting to be written.
struct Merged<'a> {
    id: &'a str,
    input: &'a Input,
    doc: Vec<u8>,
    projection: Box<Projection>,
    problem: Option<String>,
}

/// Writes what merging the chunk's records (`ids`, `inputs`) gave (`outcomes`, decided by
/// [`crate::merge`], in the same order): documents, projections, review and search text, and
/// the applied flags. A handful of statements for the whole chunk, each over arrays, written in
/// the order a record-by-record write would take: the chunk's templates (and the campaigns they
/// send back to review) before the records reviewed against them; each record's references
/// seen as the records before it in the chunk left them.
async fn write_outcomes(
    tx: &Transaction<'_>,
    ids: &[String],
    inputs: &[Input],
    outcomes: Vec<Merge>,
    templates: &TemplateCache,
) -> Result<(), StorageError> {
    let now = now_ms();
    let mut applied: Vec<[u8; 32]> = Vec::new();
    let (mut failed_ids, mut failed_docs, mut failed_problems) =
        (Vec::new(), Vec::new(), Vec::new());
    let mut merged_templates: Vec<Merged> = Vec::new();
    let mut merged: Vec<Merged> = Vec::new();
    for ((id, input), outcome) in ids.iter().zip(inputs).zip(outcomes) {
        match outcome {
            Merge::Failed {
                problem,
                doc,
                applied: a,
            } => {
                tracing::warn!(record = id, %problem, "record cannot be merged");
                applied.extend(a);
                failed_ids.push(id.as_str());
                failed_docs.push(doc);
                failed_problems.push(problem);
            }
            Merge::Merged {
                doc,
                applied: a,
                projection,
                problem,
            } => {
                applied.extend(a);
                let m = Merged {
                    id,
                    input,
                    doc,
                    projection,
                    problem,
                };
                if input.header.kind == TEMPLATE_KIND {
                    merged_templates.push(m);
                } else {
                    merged.push(m);
                }
            }
        }
    }
    if !applied.is_empty() {
        let hashes: Vec<&[u8]> = applied.iter().map(|h| h.as_slice()).collect();
        tx.execute(
            "UPDATE changes SET applied = true WHERE hash = ANY($1)",
            &[&hashes],
        )
        .await?;
    }
    if !merged_templates.is_empty() {
        // A template is reviewed by parsing it alone.
        let reviews = merged_templates
            .iter()
            .map(|m| review_json(&m.projection, &[], |_| None))
            .collect::<Result<Vec<_>, _>>()?;
        write_merged(tx, &merged_templates, reviews, now).await?;
        // A template version arrived or changed: check its campaign's records again. (The
        // template cache notices by itself: its fingerprint holds the merge time just written.)
        // The chunk's own records are still dirty, so they are not touched here; they are
        // reviewed against the templates just written below.
        let mut campaigns: Vec<String> = merged_templates
            .iter()
            .map(|m| m.input.header.campaign.to_string())
            .collect();
        campaigns.sort();
        campaigns.dedup();
        //
        // A row locked by a push under way is skipped, not waited for: that push marks it dirty
        // itself when it commits, and it is then reviewed against the template this chunk
        // writes. Waiting could deadlock: a push that locked one of these rows may be waiting
        // for a record of this chunk, and PostgreSQL would cancel one of the two after a second.
        tx.execute(
            "UPDATE records SET dirty = true
             WHERE id IN (SELECT id FROM records
                          WHERE campaign = ANY($1) AND kind != $2 AND fields IS NOT NULL
                                AND NOT dirty
                          FOR UPDATE SKIP LOCKED)",
            &[&campaigns, &TEMPLATE_KIND],
        )
        .await?;
    }
    if !failed_ids.is_empty() {
        // What merged so far is kept (its changes are marked applied above); the projection,
        // review and search text stay as they were. After the templates' campaigns were sent
        // back to review, which leaves the chunk's records alone while they are dirty.
        tx.execute(
            "UPDATE records AS r SET doc = coalesce(u.doc, r.doc), dirty = false,
                    problem = u.problem
             FROM unnest($1::text[], $2::bytea[], $3::text[]) AS u (id, doc, problem)
             WHERE r.id = u.id",
            &[&failed_ids, &failed_docs, &failed_problems],
        )
        .await?;
    }
    if merged.is_empty() {
        return Ok(());
    }
    // Each campaign's template versions, read once for the chunk (after its templates above).
    let mut versions: HashMap<String, Versions> = HashMap::new();
    for m in &merged {
        if let Entry::Vacant(e) = versions.entry(m.input.header.campaign.to_string()) {
            let v = templates.for_campaign(tx, e.key()).await?;
            e.insert(v);
        }
    }
    // The records each record's fields may refer to (ids in string values), read at once for
    // the whole chunk with whether they are deleted.
    let refs: Vec<HashSet<String>> = merged.iter().map(|m| references(&m.projection)).collect();
    let wanted: Vec<&String> = refs
        .iter()
        .flatten()
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut known: HashMap<String, (String, bool)> = if wanted.is_empty() {
        HashMap::new()
    } else {
        tx.query(
            "SELECT id, kind, deleted FROM records WHERE id = ANY($1)",
            &[&wanted],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect()
    };
    let mut reviews = Vec::with_capacity(merged.len());
    for (m, refs) in merged.iter().zip(&refs) {
        // This record is written before its review reads references (itself included), and
        // after the records before it in the chunk.
        if let Some(k) = known.get_mut(m.id) {
            k.1 = m.projection.deleted;
        }
        let kind_of = |target: Uuid| {
            let target = target.to_string();
            if !refs.contains(&target) {
                return None;
            }
            match known.get(&target) {
                Some((kind, false)) => Some(kind.clone()),
                _ => None,
            }
        };
        let versions = &versions[&m.input.header.campaign.to_string()];
        reviews.push(review_json(&m.projection, versions, kind_of)?);
    }
    write_merged(tx, &merged, reviews, now).await
}

/// The ids of records a projection's fields may refer to: every part of a string value, split
/// at commas, and every key and value of a map (a rating per member is keyed by the member's
/// record), that reads as a UUID.
fn references(projection: &Projection) -> HashSet<String> {
    projection
        .fields
        .values()
        .flat_map(|v| -> Vec<&str> {
            match v {
                FieldValue::Str(s) => vec![s.as_str()],
                FieldValue::Map(m) => m
                    .iter()
                    .flat_map(|(k, v)| [k.as_str(), v.as_str()])
                    .collect(),
                _ => Vec::new(),
            }
        })
        .flat_map(|s| s.split(','))
        .filter_map(|part| Uuid::parse_str(part.trim()).ok())
        .map(|u| u.to_string())
        .collect()
}

/// [`review::review`]'s problems as the `records.review` column holds them.
fn review_json(
    projection: &Projection,
    versions: &[Arc<Template>],
    kind_of: impl Fn(Uuid) -> Option<String>,
) -> Result<Option<serde_json::Value>, StorageError> {
    review::review(projection, versions, kind_of)
        .map(|problems| serde_json::to_value(&problems))
        .transpose()
        .map_err(other)
}

/// Writes merged records (document, projection, review, search text; no longer dirty) with one
/// statement.
async fn write_merged(
    tx: &Transaction<'_>,
    merged: &[Merged<'_>],
    reviews: Vec<Option<serde_json::Value>>,
    now: i64,
) -> Result<(), StorageError> {
    let n = merged.len();
    let (mut ids, mut docs, mut fields, mut deleted, mut conflicts, mut heads, mut problems) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let mut search = Vec::with_capacity(n);
    let mut facts = Vec::with_capacity(n);
    for m in merged {
        let p = &m.projection;
        ids.push(m.id);
        docs.push(m.doc.as_slice());
        let f = p.fields_json();
        facts.push(crate::storage::facts::facts(&f));
        fields.push(f);
        deleted.push(p.deleted);
        conflicts.push(p.conflicts as i32);
        heads.push(serde_json::to_value(&p.heads).map_err(other)?);
        problems.push(m.problem.as_deref());
        search.push(index::search_text(&m.input.header.kind, p));
    }
    tx.execute(
        "UPDATE records AS r
         SET doc = u.doc, fields = u.fields, deleted = u.deleted, conflicts = u.conflicts,
             heads = u.heads, problem = u.problem, dirty = false, merged_at = $1,
             search_text = u.search_text, review = u.review, facts = u.facts
         FROM unnest($2::text[], $3::bytea[], $4::jsonb[], $5::bool[], $6::int4[], $7::jsonb[],
                     $8::text[], $9::text[], $10::jsonb[], $11::jsonb[])
              AS u (id, doc, fields, deleted, conflicts, heads, problem, search_text, review,
                    facts)
         WHERE r.id = u.id",
        &[
            &now, &ids, &docs, &fields, &deleted, &conflicts, &heads, &problems, &search, &reviews,
            &facts,
        ],
    )
    .await?;
    Ok(())
}
