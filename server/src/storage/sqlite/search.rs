//! Full-text search of the merged records through the FTS5 trigram table `records_fts` (kept by
//! merging), and a campaign's newest template.

use std::sync::Arc;

use fieldsync_protocol::template::{TEMPLATE_KIND, Template};
use rusqlite::{Connection, params};
use uuid::Uuid;

use super::visible;
use crate::storage::{Search, SearchHit, StorageError, Visibility};

/// Records whose text contains every word of `search` (any language; FTS5's trigram index
/// answers each word of three characters or more).
pub(crate) fn search(
    conn: &Connection,
    search: &Search,
    visibility: &Visibility,
) -> Result<Vec<SearchHit>, StorageError> {
    // LIKE's wildcards in a word match anything in the pattern (the trigram index does not take
    // ESCAPE); every hit is then checked to contain such a word as typed, `%` and `_` included.
    // Control characters never get here (`search_words` drops them; a NUL would end the
    // pattern early in SQLite and match every record).
    let patterns: Vec<String> = search
        .words
        .iter()
        .map(|w| format!("%{}%", w.replace(['%', '_'], "%")))
        .collect();
    if patterns.is_empty() {
        return Ok(Vec::new());
    }
    let exact: Vec<&String> = search
        .words
        .iter()
        .filter(|w| w.contains(['%', '_']))
        .collect();
    // ?1 campaign, ?2 kind, ?3 village, ?4 limit, ?5 and ?6 the visibility, ?7… the words.
    let likes: Vec<String> = (0..patterns.len())
        .map(|i| format!("f.text LIKE ?{}", i + 7))
        .collect();
    let sql = format!(
        "SELECT f.id, f.kind, f.campaign, r.scope, f.text
         FROM records_fts f JOIN records r ON r.id = f.id
         WHERE {}
           AND (?1 IS NULL OR f.campaign = ?1) AND (?2 IS NULL OR f.kind = ?2)
           AND (?3 IS NULL OR r.scope = ?3) AND {}
         ORDER BY r.first_seq LIMIT ?4",
        likes.join(" AND "),
        visible::condition("r", 5)
    );
    let (visible_campaign, places) = visible::params(visibility);
    let mut values: Vec<rusqlite::types::Value> = vec![
        search.campaign.map(|c| c.to_string()).into(),
        search.kind.clone().into(),
        search.scope.clone().into(),
        (search.limit as i64).into(),
        visible_campaign.into(),
        places.into(),
    ];
    values.extend(patterns.into_iter().map(rusqlite::types::Value::from));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(values), |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, kind, campaign, scope, text) = row?;
        if !exact.iter().all(|w| text.contains(w.as_str())) {
            continue;
        }
        out.push(SearchHit {
            id: Uuid::parse_str(&id).unwrap_or_default(),
            kind,
            campaign: Uuid::parse_str(&campaign).unwrap_or_default(),
            scope,
            snippet: crate::storage::tallies::snippet(&text, &search.words),
        });
    }
    Ok(out)
}

/// The newest template of a campaign on the server (see [`crate::templates`]).
pub(crate) fn template(
    conn: &Connection,
    campaign: Uuid,
) -> Result<Option<Template>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT fields FROM records WHERE kind = ?1 AND campaign = ?2 AND deleted = 0
         AND fields IS NOT NULL",
    )?;
    let fields: Vec<String> = stmt
        .query_map(params![TEMPLATE_KIND, campaign.to_string()], |r| {
            r.get::<_, String>(0)
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(
        crate::templates::versions(fields.iter().map(String::as_str))
            .pop()
            .map(Arc::unwrap_or_clone),
    )
}
