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

use automerge::{Change, ChangeHash};
use deadpool_postgres::{GenericClient, Pool, Transaction};
use fieldsync_protocol::{
    FieldValue, Projection, RecordHeader,
    record::{self},
    template::{FORM_VERSION_FIELD, Problem, ProblemCode, RefPolicy, TEMPLATE_KIND},
};
use uuid::Uuid;

use super::{StorageError, now_ms, other, templates::TemplateCache};

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
    for id in &ids {
        merge_record(&tx, id, templates).await?;
    }
    tx.commit().await?;
    Ok(ids.len())
}

/// What Automerge made of a record's stored document and unapplied changes.
struct Merged {
    doc: Vec<u8>,
    applied: Vec<[u8; 32]>,
    waiting: usize,
    projection: Result<Projection, String>,
}

fn apply(doc: Option<Vec<u8>>, changes: Vec<Vec<u8>>) -> Result<Merged, String> {
    let mut doc = match doc {
        Some(b) => {
            record::load_doc(&b).map_err(|e| format!("stored document does not load: {e}"))?
        }
        None => record::new_doc(),
    };
    let mut pending: Vec<(ChangeHash, Change)> = Vec::new();
    for bytes in changes {
        match Change::try_from(bytes.as_slice()) {
            Ok(c) => pending.push((c.hash(), c)),
            Err(e) => return Err(format!("a stored change does not decode: {e}")),
        }
    }
    doc.apply_changes(pending.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>())
        .map_err(|e| format!("changes do not apply: {e}"))?;
    let (applied, waiting): (Vec<_>, Vec<_>) = pending
        .iter()
        .partition(|(h, _)| doc.get_change_meta_by_hash(h).is_some());
    let waiting = waiting.len();
    let projection = record::project(&doc).map_err(|e| {
        if waiting > 0 {
            format!("waiting for {waiting} changes' dependencies ({e})")
        } else {
            e.to_string()
        }
    });
    Ok(Merged {
        doc: doc.save(),
        applied: applied.iter().map(|(h, _)| h.0).collect(),
        waiting,
        projection,
    })
}

/// Applies a record's unapplied changes to its document and refreshes its projection, review
/// and search text.
async fn merge_record(
    tx: &Transaction<'_>,
    id: &str,
    templates: &TemplateCache,
) -> Result<(), StorageError> {
    let row = tx
        .query_one(
            "SELECT kind, campaign, scope, doc FROM records WHERE id = $1",
            &[&id],
        )
        .await?;
    let (kind, campaign, scope, doc): (String, String, String, Option<Vec<u8>>) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let changes: Vec<Vec<u8>> = tx
        .query(
            "SELECT bytes FROM changes WHERE record_id = $1 AND NOT applied ORDER BY seq",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let fail = async |problem: String| -> Result<(), StorageError> {
        tracing::warn!(record = id, %problem, "record cannot be merged");
        tx.execute(
            "UPDATE records SET dirty = false, problem = $2 WHERE id = $1",
            &[&id, &problem],
        )
        .await?;
        Ok(())
    };
    let merged = match tokio::task::spawn_blocking(move || apply(doc, changes))
        .await
        .map_err(other)?
    {
        Ok(m) => m,
        Err(problem) => return fail(problem).await,
    };
    tx.execute(
        "UPDATE changes SET applied = true WHERE hash = ANY($1)",
        &[&merged
            .applied
            .iter()
            .map(|h| h.to_vec())
            .collect::<Vec<_>>()],
    )
    .await?;
    let projection = match merged.projection {
        Ok(p) => p,
        Err(problem) => {
            // Keep what merged so far.
            tx.execute(
                "UPDATE records SET doc = $2 WHERE id = $1",
                &[&id, &merged.doc],
            )
            .await?;
            return fail(problem).await;
        }
    };
    let stored_header = RecordHeader::parse(id, &kind, &campaign, &scope).map_err(other)?;
    let waiting = merged.waiting;
    let problem = if projection.header != stored_header {
        Some(format!(
            "the document's header {:?} differs from the one its changes were pushed with",
            projection.header
        ))
    } else if waiting > 0 {
        Some(format!("{waiting} changes wait for changes they depend on"))
    } else {
        None
    };
    let now = now_ms();
    tx.execute(
        "UPDATE records SET doc = $2, fields = $3, deleted = $4, conflicts = $5, heads = $6,
                problem = $7, dirty = false, merged_at = $8, search_text = $9
         WHERE id = $1",
        &[
            &id,
            &merged.doc,
            &projection.fields_json(),
            &projection.deleted,
            &(projection.conflicts as i32),
            &serde_json::to_value(&projection.heads).map_err(other)?,
            &problem,
            &now,
            &search_text(&kind, &projection),
        ],
    )
    .await?;
    if kind == TEMPLATE_KIND {
        // A template version arrived or changed: check the campaign's records again.
        tx.execute(
            "UPDATE records SET dirty = true
             WHERE campaign = $1 AND kind != $2 AND fields IS NOT NULL AND NOT dirty",
            &[&campaign, &TEMPLATE_KIND],
        )
        .await?;
    }
    let review = review(tx, templates, &projection).await?;
    tx.execute(
        "UPDATE records SET review = $2 WHERE id = $1",
        &[&id, &review],
    )
    .await?;
    Ok(())
}

/// The text a record is found by: every text field and every short value that is words (not
/// record ids or choice values); nothing for templates and deleted records.
fn search_text(kind: &str, p: &Projection) -> Option<String> {
    if p.deleted || kind == TEMPLATE_KIND {
        return None;
    }
    let text: Vec<&str> = p
        .fields
        .iter()
        .filter(|(k, _)| !k.starts_with('_'))
        .filter_map(|(_, v)| match v {
            FieldValue::Text(s) => Some(s.as_str()),
            FieldValue::Str(s) if searchable(s) => Some(s.as_str()),
            _ => None,
        })
        .collect();
    Some(text.join("\n"))
}

/// Whether a short value is words people would search for, rather than a reference (record ids)
/// or a choice's stored value.
fn searchable(s: &str) -> bool {
    let machine = s.split(',').all(|part| {
        let part = part.trim();
        Uuid::parse_str(part).is_ok()
            || (!part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
    });
    !machine
}

/// Checks a merged record against its campaign's template: `None` when it passes (or the
/// campaign has no template), else the problems. Never stops the record being stored.
async fn review<C: GenericClient>(
    c: &C,
    templates: &TemplateCache,
    p: &Projection,
) -> Result<Option<serde_json::Value>, StorageError> {
    let problems = |list: Vec<Problem>| serde_json::to_value(&list).map(Some).map_err(other);
    if p.deleted {
        return Ok(None);
    }
    if p.header.kind == TEMPLATE_KIND {
        let source = match p.fields.get("source") {
            Some(FieldValue::Str(s)) => s.clone(),
            _ => String::new(),
        };
        return match fieldsync_protocol::template::Template::parse(&source) {
            Ok(_) => Ok(None),
            Err(e) => problems(vec![Problem {
                field: "source".into(),
                code: ProblemCode::BadTemplate,
                zh: e.to_string(),
                en: e.to_string(),
            }]),
        };
    }
    let versions = templates
        .for_campaign(c, &p.header.campaign.to_string())
        .await?;
    let Some(latest) = versions.last() else {
        return Ok(None);
    };
    let template = match p.fields.get(FORM_VERSION_FIELD) {
        Some(FieldValue::Int(v)) => match versions.iter().find(|t| i64::from(t.version) == *v) {
            Some(t) => t,
            None => {
                return problems(vec![Problem {
                    field: FORM_VERSION_FIELD.into(),
                    code: ProblemCode::UnknownVersion,
                    zh: format!("记录按模板第 {v} 版填写，服务器没有这一版"),
                    en: format!(
                        "written with template version {v}, which this server does not have"
                    ),
                }]);
            }
        },
        _ => latest,
    };
    // The records the fields may refer to (ids in string values), read at once.
    let ids: Vec<String> = p
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
        c.query(
            "SELECT id, kind FROM records WHERE id = ANY($1) AND NOT deleted",
            &[&ids],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    };
    let lookup = |id: Uuid| -> Option<String> { kinds.get(&id.to_string()).cloned() };
    match template.validate(&p.header.kind, &p.fields, &lookup, RefPolicy::IfKnown) {
        Ok(()) => Ok(None),
        Err(invalid) => problems(invalid.problems),
    }
}
