//! A village's digest in SQLite: its live visible records of the period (found through the
//! `(campaign, scope)` prefix of the index `records_by_place`, then sorted by `first_seq`), with
//! their short values and whether each passes the campaign's approval rule, gathered by
//! `storage::digest`.

use rusqlite::Connection;

use super::{Scoped, approved, in_period, scoped};
use crate::storage::{DigestAsk, DigestRow, Gather, StorageError, VillageDigest, Visibility};

/// The digest of `ask`'s village as `visibility` sees it.
pub(in crate::storage::sqlite) fn digest(
    conn: &Connection,
    ask: &DigestAsk,
    visibility: &Visibility,
) -> Result<VillageDigest, StorageError> {
    let campaign = ask.campaign.to_string();
    let s: Scoped<'_> = scoped(conn, &campaign, visibility, &ask.period)?;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT r.id, r.kind, r.campaign, r.scope, r.facts, r.conflicts, r.dirty, r.problem,
                r.first_seq, {}
         FROM records r
         WHERE r.campaign = ?1 AND r.scope = ?7 AND r.deleted = 0 AND {} AND {}
         ORDER BY r.first_seq",
        approved("r", &s),
        super::visible::condition("r", 2),
        in_period("r", 5),
    ))?;
    let p = s.params();
    let mut rows = stmt.query([p[0], p[1], p[2], p[3], p[4], p[5], &ask.scope])?;
    let mut gather = Gather::new(ask);
    while let Some(r) = rows.next()? {
        let text = |i: usize| text(r, i).map(Option::unwrap_or_default);
        gather.add(DigestRow {
            id: text(0)?,
            kind: text(1)?,
            campaign: text(2)?,
            scope: text(3)?,
            facts: self::text(r, 4)?,
            conflicts: r.get::<_, i64>(5)? as u64,
            dirty: r.get(6)?,
            problem: r.get(7)?,
            first_seq: r.get(8)?,
            counted: r.get::<_, Option<bool>>(9)?.unwrap_or(false),
        })?;
    }
    Ok(gather.finish())
}

/// Column `i` of `r` as text borrowed from SQLite (`None` for NULL).
fn text<'r>(r: &'r rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<&'r str>> {
    let v = r.get_ref(i)?;
    v.as_str_or_null()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, v.data_type(), Box::new(e)))
}
