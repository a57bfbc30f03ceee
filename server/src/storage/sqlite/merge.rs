//! Merging in SQLite: read a dirty record's document and unapplied changes ([`read_input`]),
//! let [`crate::merge`] merge them (the writer does a chunk of records at once on every core),
//! and write the outcome ([`write_outcome`]: document, projection reviewed against the template,
//! the search index row, applied flags).

use fieldsync_protocol::{Projection, RecordHeader, template::TEMPLATE_KIND};
use rusqlite::{Transaction, params};

use super::{now_ms, other, writer::TemplateCache};
use crate::merge::{Input, Merge, index, review};
use crate::storage::StorageError;

/// Reads what merging a record needs: its stored header, document and unapplied changes.
pub(super) fn read_input(tx: &Transaction<'_>, id: &str) -> Result<Input, StorageError> {
    let (kind, campaign, scope, doc): (String, String, String, Option<Vec<u8>>) = tx
        .prepare_cached("SELECT kind, campaign, scope, doc FROM records WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
    let pending: Vec<Vec<u8>> = tx
        .prepare_cached(
            "SELECT bytes FROM changes WHERE record_id = ?1 AND applied = 0 ORDER BY seq",
        )?
        .query_map([id], |r| r.get::<_, Vec<u8>>(0))?
        .collect::<rusqlite::Result<_>>()?;
    let header = RecordHeader::parse(id, &kind, &campaign, &scope).map_err(other)?;
    Ok(Input {
        header,
        doc,
        pending,
    })
}

/// Writes what merging record `id`'s `input` gave (`outcome`, from [`crate::merge::merge`]): the document,
/// the projection reviewed against the campaign's template, the search index row and the
/// applied flags; or the problem, when it did not merge.
pub(super) fn write_outcome(
    tx: &Transaction<'_>,
    id: &str,
    input: &Input,
    outcome: Merge,
    templates: &mut TemplateCache,
) -> Result<(), StorageError> {
    let kind = &input.header.kind;
    let campaign = &input.header.campaign.to_string();
    let mark_applied = |applied: &[[u8; 32]]| -> Result<(), StorageError> {
        let mut stmt = tx.prepare_cached("UPDATE changes SET applied = 1 WHERE hash = ?1")?;
        for hash in applied {
            stmt.execute([hash.as_slice()])?;
        }
        Ok(())
    };
    let (doc, applied, projection, problem) = match outcome {
        Merge::Failed {
            problem,
            doc,
            applied,
        } => {
            tracing::warn!(record = id, %problem, "record cannot be merged");
            mark_applied(&applied)?;
            if let Some(doc) = doc {
                tx.execute(
                    "UPDATE records SET doc = ?2 WHERE id = ?1",
                    params![id, doc],
                )?;
            }
            tx.execute(
                "UPDATE records SET dirty = 0, problem = ?2 WHERE id = ?1",
                params![id, problem],
            )?;
            return Ok(());
        }
        Merge::Merged {
            doc,
            applied,
            projection,
            problem,
        } => (doc, applied, projection, problem),
    };
    mark_applied(&applied)?;
    if kind == TEMPLATE_KIND {
        // A template version arrived or changed: check the campaign's records again.
        templates.forget(campaign);
        tx.execute(
            "UPDATE records SET dirty = 1 WHERE campaign = ?1 AND kind != ?2 AND fields IS NOT NULL",
            params![campaign, TEMPLATE_KIND],
        )?;
    }
    // A template is reviewed by parsing it alone; loading the versions now would cache them
    // before this one is written.
    let versions = if kind == TEMPLATE_KIND {
        Default::default()
    } else {
        templates.for_campaign(tx, campaign)?
    };
    let kind_of = |target: uuid::Uuid| -> Option<String> {
        tx.prepare_cached("SELECT kind FROM records WHERE id = ?1 AND deleted = 0")
            .and_then(|mut s| {
                rusqlite::OptionalExtension::optional(
                    s.query_row([target.to_string()], |r| r.get(0)),
                )
            })
            .ok()
            .flatten()
    };
    let review = review::review(&projection, &versions, kind_of)
        .map(|problems| serde_json::to_string(&problems))
        .transpose()
        .map_err(other)?;
    index_text(tx, id, campaign, kind, &projection)?;
    let fields = projection.fields_json();
    tx.prepare_cached(
        "UPDATE records SET doc = ?2, fields = ?3, deleted = ?4, conflicts = ?5, heads = ?6,
                problem = ?7, dirty = 0, merged_at = ?8, review = ?9, facts = ?10
         WHERE id = ?1",
    )?
    .execute(params![
        id,
        doc,
        fields.to_string(),
        projection.deleted,
        projection.conflicts as i64,
        serde_json::to_string(&projection.heads).map_err(other)?,
        problem,
        now_ms(),
        review,
        super::facts::facts(&fields)
    ])?;
    Ok(())
}

/// Keeps the full-text index row of a record as [`index::search_text`] says.
fn index_text(
    tx: &Transaction<'_>,
    id: &str,
    campaign: &str,
    kind: &str,
    p: &Projection,
) -> Result<(), StorageError> {
    // The index shares the record's rowid: FTS5 deletes by rowid without a scan (its `id`
    // column is not indexed).
    let rowid: i64 = tx
        .prepare_cached("SELECT rowid FROM records WHERE id = ?1")?
        .query_row([id], |r| r.get(0))?;
    tx.prepare_cached("DELETE FROM records_fts WHERE rowid = ?1")?
        .execute([rowid])?;
    let Some(text) = index::search_text(kind, p) else {
        return Ok(());
    };
    tx.prepare_cached(
        "INSERT INTO records_fts (rowid, id, campaign, kind, text) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![rowid, id, campaign, kind, text])?;
    Ok(())
}
