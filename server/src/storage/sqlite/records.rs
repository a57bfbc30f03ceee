//! The merged records and the department's queries in SQLite: one record, listings, exports,
//! conflicts; tallies are in [`super::tally`], search in [`super::search`]. Every query takes the asker's
//! [`Visibility`] into its `WHERE` ([`super::visible`]).

use async_trait::async_trait;
use fieldsync_protocol::{
    record::{self, Conflict},
    template::Template,
};
use rusqlite::{OptionalExtension, params};
use uuid::Uuid;

use super::{SqliteStorage, other, visible};
use crate::storage::{
    DigestAsk, Period, RecordFilter, RecordView, Records, Search, SearchHit, StorageError, Tallies,
    VillageDigest, Visibility,
};

pub(super) fn row_to_view(r: &rusqlite::Row<'_>) -> rusqlite::Result<RecordView> {
    let id: String = r.get(0)?;
    let campaign: String = r.get(2)?;
    let fields: Option<String> = r.get(5)?;
    let heads: Option<String> = r.get(7)?;
    Ok(RecordView {
        id: Uuid::parse_str(&id).unwrap_or_default(),
        kind: r.get(1)?,
        campaign: Uuid::parse_str(&campaign).unwrap_or_default(),
        scope: r.get(3)?,
        deleted: r.get(4)?,
        fields: fields
            .and_then(|f| serde_json::from_str(&f).ok())
            .unwrap_or(serde_json::Value::Null),
        conflicts: r.get::<_, i64>(6)? as u64,
        heads: heads
            .and_then(|h| serde_json::from_str(&h).ok())
            .unwrap_or_default(),
        up_to_date: !r.get::<_, bool>(8)?,
        position: r.get(12)?,
        waiting_changes: r.get::<_, i64>(10)? as u64,
        problem: r.get(9)?,
        review: r
            .get::<_, Option<String>>(11)?
            .and_then(|j| serde_json::from_str(&j).ok()),
    })
}

const VIEW_COLUMNS: &str = "r.id, r.kind, r.campaign, r.scope, r.deleted, r.fields, r.conflicts,
    r.heads, r.dirty, r.problem,
    (SELECT count(*) FROM changes c WHERE c.record_id = r.id AND c.applied = 0), r.review,
    r.first_seq";

#[async_trait]
impl Records for SqliteStorage {
    async fn record(
        &self,
        id: Uuid,
        visibility: Visibility,
    ) -> Result<Option<RecordView>, StorageError> {
        self.read(move |conn| {
            let (c, places) = visible::params(&visibility);
            Ok(conn
                .query_row(
                    &format!(
                        "SELECT {VIEW_COLUMNS} FROM records r WHERE r.id = ?1 AND {}",
                        visible::condition("r", 2)
                    ),
                    params![id.to_string(), c, places],
                    row_to_view,
                )
                .optional()?)
        })
        .await
    }

    async fn conflicts(&self, id: Uuid) -> Result<Option<Vec<Conflict>>, StorageError> {
        self.read(move |conn| {
            let doc: Option<Option<Vec<u8>>> = conn
                .query_row(
                    "SELECT doc FROM records WHERE id = ?1",
                    [id.to_string()],
                    |r| r.get(0),
                )
                .optional()?;
            match doc.flatten() {
                None => Ok(None),
                Some(bytes) => {
                    let doc = record::load_doc(&bytes).map_err(other)?;
                    Ok(record::conflicts(&doc).ok())
                }
            }
        })
        .await
    }

    async fn records(
        &self,
        filter: RecordFilter,
        visibility: Visibility,
    ) -> Result<Vec<RecordView>, StorageError> {
        self.read(move |conn| {
            let (c, places) = visible::params(&visibility);
            let mut sql = format!(
                "SELECT {VIEW_COLUMNS} FROM records r WHERE {}",
                visible::condition("r", 1)
            );
            let mut args: Vec<rusqlite::types::Value> = vec![c.into(), places.into()];
            let mut arg = |sql: &mut String, condition: &str, value: rusqlite::types::Value| {
                args.push(value);
                sql.push_str(&condition.replace("?", &format!("?{}", args.len())));
            };
            if let Some(k) = &filter.kind {
                arg(&mut sql, " AND r.kind = ?", k.clone().into());
            }
            if let Some(s) = &filter.scope {
                arg(&mut sql, " AND r.scope = ?", s.clone().into());
            }
            if let Some(c) = &filter.campaign {
                arg(&mut sql, " AND r.campaign = ?", c.to_string().into());
            }
            if let Some(after) = filter.after {
                arg(&mut sql, " AND r.first_seq > ?", after.into());
            }
            if filter.conflicted {
                sql.push_str(" AND r.conflicts > 0");
            }
            if filter.needs_review {
                sql.push_str(" AND r.review IS NOT NULL");
            }
            if !filter.period().is_all() {
                args.push(filter.from.clone().into());
                args.push(filter.to.clone().into());
                sql.push_str(&format!(
                    " AND {}",
                    super::tally::in_period("r", args.len() - 1)
                ));
            }
            sql.push_str(&format!(
                " ORDER BY r.first_seq LIMIT {}",
                filter.max_rows()
            ));
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), row_to_view)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn campaign_records(
        &self,
        campaign: Uuid,
        kind: String,
        visibility: Visibility,
        period: Period,
    ) -> Result<Vec<RecordView>, StorageError> {
        self.read(move |conn| {
            let (c, places) = visible::params(&visibility);
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {VIEW_COLUMNS} FROM records r
                 WHERE r.campaign = ?1 AND r.kind = ?2 AND r.deleted = 0 AND {} AND {}
                 ORDER BY r.first_seq",
                visible::condition("r", 3),
                super::tally::in_period("r", 5)
            ))?;
            let rows = stmt.query_map(
                params![
                    campaign.to_string(),
                    kind,
                    c,
                    places,
                    period.from,
                    period.to
                ],
                row_to_view,
            )?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn tallies(
        &self,
        campaign: Uuid,
        visibility: Visibility,
        period: Period,
    ) -> Result<Tallies, StorageError> {
        // Two halves on two connections at once: the campaign's numbers, and the interviews
        // with the villages' numbers.
        let (v, p) = (visibility.clone(), period.clone());
        let (t, villages) = tokio::try_join!(
            self.read(move |conn| {
                super::tally::campaign_part(conn, campaign, &visibility, &period)
            }),
            self.read(move |conn| super::tally::village_part(conn, campaign, &v, &p)),
        )?;
        Ok(super::tally::combine(t, villages))
    }

    async fn village_digest(
        &self,
        ask: DigestAsk,
        visibility: Visibility,
    ) -> Result<VillageDigest, StorageError> {
        self.read(move |conn| super::tally::digest(conn, &ask, &visibility))
            .await
    }

    async fn search(
        &self,
        search: Search,
        visibility: Visibility,
    ) -> Result<Vec<SearchHit>, StorageError> {
        self.read(move |conn| super::search::search(conn, &search, &visibility))
            .await
    }

    async fn template(&self, campaign: Uuid) -> Result<Option<Template>, StorageError> {
        self.read(move |conn| super::search::template(conn, campaign))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_villages_digest_reads_the_short_values_only() {
        let dir = tempfile::tempdir().unwrap();
        let storage = SqliteStorage::open_for_admin(dir.path()).unwrap();
        let conn = rusqlite::Connection::open(dir.path().join("fieldsync.sqlite3")).unwrap();
        super::super::facts::register(&conn).unwrap();
        let campaign = Uuid::from_u128(9);
        let long = "谈".repeat(65);
        let rows = [
            (
                1,
                "evaluation",
                "v1",
                serde_json::json!({"team_rating": "satisfied", "notes": long}),
            ),
            (
                2,
                "evaluation",
                "v1",
                serde_json::json!({"team_rating": "satisfied"}),
            ),
            (
                3,
                "rectification",
                "v1",
                serde_json::json!({"status": "done", "measure": long}),
            ),
            (
                4,
                "evaluation",
                "v2",
                serde_json::json!({"team_rating": "unsatisfied"}),
            ),
        ];
        for (id, kind, scope, fields) in rows {
            conn.execute(
                "INSERT INTO records (id, kind, campaign, scope, first_seq, last_seq, dirty,
                                      fields, facts, heads)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, 0, ?6, fieldsync_facts(?6), '[\"ab\"]')",
                params![
                    Uuid::from_u128(id).to_string(),
                    kind,
                    campaign.to_string(),
                    scope,
                    id as i64,
                    fields.to_string()
                ],
            )
            .unwrap();
        }
        let digest = storage
            .village_digest(
                DigestAsk {
                    campaign,
                    scope: "v1".into(),
                    brief_kinds: vec!["rectification".into()],
                    values: vec![("evaluation".into(), "team_rating".into())],
                    ..Default::default()
                },
                Visibility::All,
            )
            .await
            .unwrap();
        assert_eq!(digest.kinds["evaluation"], 2, "{:?}", digest.kinds);
        assert_eq!(digest.kinds["rectification"], 1);
        assert_eq!(
            digest.values["evaluation"]["team_rating"],
            [("satisfied".to_string(), 2)].into()
        );
        assert_eq!(digest.records.len(), 1);
        assert_eq!(digest.records[0].id, Uuid::from_u128(3));
        assert_eq!(
            digest.records[0].fields,
            serde_json::json!({"status": "done"})
        );
        assert!(digest.records[0].heads.is_empty());
        crate::storage::Storage::close(&storage).await;
    }
}
