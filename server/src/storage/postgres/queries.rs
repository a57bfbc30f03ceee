//! The merged records in PostgreSQL as the department reads them: one record, listings with a
//! cursor, a campaign's records of one kind, a record's document and conflicts, the newest
//! template, and the store's counts. Every query that returns records takes the asker's
//! visibility into its `WHERE` (`visible`).

use deadpool_postgres::GenericClient;
use fieldsync_protocol::{
    record::{self, Conflict},
    template::{TEMPLATE_KIND, Template},
};
use futures_util::TryStreamExt;
use tokio_postgres::{Row, types::ToSql};
use uuid::Uuid;

use super::{RecordFilter, RecordView, StorageError, StoreStatus, Visibility, other, visible};

/// The columns [`row_to_view`] reads, over `records r`.
const VIEW_COLUMNS: &str = "r.id, r.kind, r.campaign, r.scope, r.deleted, r.fields, r.conflicts,
    r.heads, r.dirty, r.problem,
    (SELECT count(*) FROM changes c WHERE c.record_id = r.id AND NOT c.applied), r.review,
    r.first_seq";

fn row_to_view(r: &Row) -> RecordView {
    RecordView {
        id: Uuid::parse_str(r.get(0)).unwrap_or_default(),
        kind: r.get(1),
        campaign: Uuid::parse_str(r.get(2)).unwrap_or_default(),
        scope: r.get(3),
        deleted: r.get(4),
        fields: r
            .get::<_, Option<serde_json::Value>>(5)
            .unwrap_or(serde_json::Value::Null),
        conflicts: r.get::<_, i32>(6) as u64,
        heads: r
            .get::<_, Option<serde_json::Value>>(7)
            .and_then(|h| serde_json::from_value(h).ok())
            .unwrap_or_default(),
        up_to_date: !r.get::<_, bool>(8),
        position: r.get(12),
        waiting_changes: r.get::<_, i64>(10) as u64,
        problem: r.get(9),
        review: r
            .get::<_, Option<serde_json::Value>>(11)
            .and_then(|j| serde_json::from_value(j).ok()),
    }
}

/// One record, if it exists and is visible.
pub(super) async fn record<C: GenericClient>(
    c: &C,
    id: Uuid,
    visibility: &Visibility,
) -> Result<Option<RecordView>, StorageError> {
    let v = visible::Params::of(visibility);
    Ok(c.query_opt(
        &format!(
            "SELECT {VIEW_COLUMNS} FROM records r WHERE r.id = $1 AND {}",
            visible::condition("r", 2)
        ),
        &[&id.to_string(), &v.all, &v.campaign, &v.places],
    )
    .await?
    .as_ref()
    .map(row_to_view))
}

/// Visible records matching a filter, in the order the server first received them.
pub(super) async fn records<C: GenericClient>(
    c: &C,
    filter: &RecordFilter,
    visibility: &Visibility,
) -> Result<Vec<RecordView>, StorageError> {
    let v = visible::Params::of(visibility);
    let mut sql = format!(
        "SELECT {VIEW_COLUMNS} FROM records r WHERE {}",
        visible::condition("r", 1)
    );
    let mut args: Vec<Box<dyn ToSql + Sync + Send>> =
        vec![Box::new(v.all), Box::new(v.campaign), Box::new(v.places)];
    let mut arg = |sql: &mut String, condition: &str, value: Box<dyn ToSql + Sync + Send>| {
        args.push(value);
        sql.push_str(&condition.replace('?', &format!("${}", args.len())));
    };
    if let Some(k) = &filter.kind {
        arg(&mut sql, " AND r.kind = ?", Box::new(k.clone()));
    }
    if let Some(s) = &filter.scope {
        arg(&mut sql, " AND r.scope = ?", Box::new(s.clone()));
    }
    if let Some(campaign) = &filter.campaign {
        arg(
            &mut sql,
            " AND r.campaign = ?",
            Box::new(campaign.to_string()),
        );
    }
    if let Some(after) = filter.after {
        arg(&mut sql, " AND r.first_seq > ?", Box::new(after));
    }
    if filter.conflicted {
        sql.push_str(" AND r.conflicts > 0");
    }
    if filter.needs_review {
        sql.push_str(" AND r.review IS NOT NULL");
    }
    if !filter.period().is_all() {
        args.push(Box::new(filter.from.clone()));
        args.push(Box::new(filter.to.clone()));
        sql.push_str(&format!(
            " AND {}",
            super::tally::in_period("r", args.len() - 1)
        ));
    }
    sql.push_str(&format!(
        " ORDER BY r.first_seq LIMIT {}",
        filter.max_rows()
    ));
    let params: Vec<&(dyn ToSql + Sync)> = args
        .iter()
        .map(|a| a.as_ref() as &(dyn ToSql + Sync))
        .collect();
    // Each row converted as it arrives, while PostgreSQL sends the next (a listing is up to
    // 10,000 rows).
    let rows = c.query_raw(&sql, params).await?;
    futures_util::pin_mut!(rows);
    let mut out = Vec::new();
    while let Some(row) = rows.try_next().await? {
        out.push(row_to_view(&row));
    }
    Ok(out)
}

/// Every visible live record of one kind in a campaign of the period's days, oldest first.
pub(super) async fn campaign_records<C: GenericClient>(
    c: &C,
    campaign: Uuid,
    kind: &str,
    visibility: &Visibility,
    period: &crate::storage::Period,
) -> Result<Vec<RecordView>, StorageError> {
    let v = visible::Params::of(visibility);
    Ok(c.query(
        &format!(
            "SELECT {VIEW_COLUMNS} FROM records r
                 WHERE r.campaign = $1 AND r.kind = $2 AND NOT r.deleted AND {} AND {}
                 ORDER BY r.first_seq",
            visible::condition("r", 3),
            super::tally::in_period("r", 6)
        ),
        &[
            &campaign.to_string(),
            &kind,
            &v.all,
            &v.campaign,
            &v.places,
            &period.from,
            &period.to,
        ],
    )
    .await?
    .iter()
    .map(row_to_view)
    .collect())
}

/// A record's merged document (Automerge's saved bytes), if merged.
pub(super) async fn document<C: GenericClient>(
    c: &C,
    id: Uuid,
) -> Result<Option<Vec<u8>>, StorageError> {
    Ok(
        c.query_opt("SELECT doc FROM records WHERE id = $1", &[&id.to_string()])
            .await?
            .and_then(|r| r.get::<_, Option<Vec<u8>>>(0)),
    )
}

/// A record's conflicts (`None` when it does not exist or is not merged yet).
pub(super) async fn conflicts<C: GenericClient>(
    c: &C,
    id: Uuid,
) -> Result<Option<Vec<Conflict>>, StorageError> {
    let Some(bytes) = document(c, id).await? else {
        return Ok(None);
    };
    // Loading a document is CPU work: off the async threads.
    tokio::task::spawn_blocking(move || {
        let doc = record::load_doc(&bytes).map_err(other)?;
        Ok(record::conflicts(&doc).ok())
    })
    .await
    .map_err(other)?
}

/// The newest template version of a campaign on the server.
pub(super) async fn template<C: GenericClient>(
    c: &C,
    campaign: Uuid,
) -> Result<Option<Template>, StorageError> {
    let rows = c
        .query(
            "SELECT fields::text FROM records
             WHERE kind = $1 AND campaign = $2 AND NOT deleted AND fields IS NOT NULL",
            &[&TEMPLATE_KIND, &campaign.to_string()],
        )
        .await?;
    Ok(
        crate::templates::versions(rows.iter().map(|r| r.get::<_, &str>(0)))
            .pop()
            .map(std::sync::Arc::unwrap_or_clone),
    )
}

/// The store's counts.
pub(super) async fn status<C: GenericClient>(c: &C) -> Result<StoreStatus, StorageError> {
    let r = c
        .query_one(
            "SELECT
                (SELECT coalesce(max(seq), 0) FROM changes),
                (SELECT count(*) FROM changes),
                (SELECT count(*) FROM records),
                (SELECT count(*) FROM records WHERE dirty),
                (SELECT count(*) FROM changes WHERE NOT applied),
                (SELECT count(*) FROM devices),
                (SELECT count(*) FROM records WHERE review IS NOT NULL)",
            &[],
        )
        .await?;
    let n = |i: usize| r.get::<_, i64>(i) as u64;
    Ok(StoreStatus {
        head: n(0),
        changes: n(1),
        records: n(2),
        unmerged_records: n(3),
        waiting_changes: n(4),
        devices: n(5),
        records_needing_review: n(6),
    })
}
