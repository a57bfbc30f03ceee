//! A village's digest in PostgreSQL: its live visible records of the period read once in
//! `first_seq` order from the index `records_by_village` (which holds their short values), with
//! whether each passes the campaign's approval rule, gathered by `storage::digest` as the rows
//! arrive.

use deadpool_postgres::GenericClient;
use futures_util::TryStreamExt;
use tokio_postgres::types::ToSql;

use super::{Scoped, approved, approved_only, in_period};
use crate::storage::{
    DigestAsk, DigestRow, Gather, StorageError, VillageDigest, Visibility, postgres::visible,
};

/// The digest of `ask`'s village as `visibility` sees it.
pub(in crate::storage::postgres) async fn digest<C: GenericClient>(
    c: &C,
    ask: &DigestAsk,
    visibility: &Visibility,
) -> Result<VillageDigest, StorageError> {
    let s = Scoped {
        campaign: ask.campaign.to_string(),
        v: visible::Params::of(visibility),
        approved_only: approved_only(c, ask.campaign).await?,
        from: ask.period.from.clone(),
        to: ask.period.to.clone(),
    };
    let sql = format!(
        "SELECT r.id, r.kind, r.campaign, r.scope, r.facts::text, r.conflicts, r.dirty, r.problem,
                r.first_seq, {}
         FROM records r
         WHERE r.campaign = $1 AND r.scope = $8 AND NOT r.deleted AND {} AND {}
         ORDER BY r.first_seq",
        approved("r"),
        visible::condition("r", 2),
        in_period("r", 6),
    );
    let mut params: Vec<&(dyn ToSql + Sync)> = s.params().to_vec();
    params.push(&ask.scope);
    let rows = c.query_raw(&sql, params).await?;
    futures_util::pin_mut!(rows);
    let mut gather = Gather::new(ask);
    while let Some(r) = rows.try_next().await? {
        gather.add(DigestRow {
            id: r.get(0),
            kind: r.get(1),
            campaign: r.get(2),
            scope: r.get(3),
            facts: r.get(4),
            conflicts: r.get::<_, i32>(5) as u64,
            dirty: r.get(6),
            problem: r.get(7),
            first_seq: r.get(8),
            counted: r.get::<_, Option<bool>>(9).unwrap_or(false),
        })?;
    }
    Ok(gather.finish())
}
