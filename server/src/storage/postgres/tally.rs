//! The campaign queries of the PostgreSQL storage: the same tallies as the SQLite storage's
//! `storage::tally`, computed in SQL over the records' short values (`facts`, `->>`,
//! `jsonb_each_text`, through covering indexes), each place counted again only when its version
//! moved (`places`), beside the rest on a second connection that shares the snapshot, and
//! substring search through a `pg_trgm` GIN index on each record's indexed text
//! (`records.search_text`, kept by merging).

use deadpool_postgres::GenericClient;
use fieldsync_protocol::{approval, auth::DEPARTMENT_KINDS};
use uuid::Uuid;

use super::{StorageError, Visibility, visible};
use crate::storage::{Counts, Search, SearchHit, Tallies, Targets};

mod digest;
mod places;
mod villages;
pub(super) use digest::digest;
pub use places::PlaceCache;
use places::Places;
use villages::SecondHalf;

/// The parameters every tally query takes: `$1` the campaign, `$2`…`$4` the visibility (see
/// [`visible::condition`]), `$5` whether only approved records count, `$6` and `$7` the period
/// ([`counted`]).
struct Scoped {
    campaign: String,
    v: visible::Params,
    approved_only: bool,
    from: Option<String>,
    to: Option<String>,
}

impl Scoped {
    fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 7] {
        [
            &self.campaign,
            &self.v.all,
            &self.v.campaign,
            &self.v.places,
            &self.approved_only,
            &self.from,
            &self.to,
        ]
    }
}

/// Whether the record aliased `alias` counts: it passes the approval rule ([`approved`]) and is
/// of the period (`$6`, `$7`; [`in_period`]).
fn counted(alias: &str) -> String {
    format!("{} AND {}", approved(alias), in_period(alias, 6))
}

/// Whether the record aliased `alias` passes the campaign's approval rule: all do, unless the
/// campaign counts approved records only (`$5`); then reference data and records whose review
/// is `approved` do.
fn approved(alias: &str) -> String {
    let exempt: Vec<String> = DEPARTMENT_KINDS.iter().map(|k| format!("'{k}'")).collect();
    format!(
        "(NOT $5::bool OR {alias}.kind IN ({}) OR {alias}.facts->>'{}' = '{}')",
        exempt.join(", "),
        approval::STATE_FIELD,
        approval::State::Approved.as_str(),
    )
}

/// Whether the record aliased `alias` is of the period whose first and last days are parameters
/// `${n}` and `${n+1}` (either `NULL`: open), by [`crate::storage::Period`]'s rule: its own `date`
/// field, else the Beijing day its first change arrived; reference data always is.
pub(super) fn in_period(alias: &str, n: usize) -> String {
    let exempt: Vec<String> = DEPARTMENT_KINDS.iter().map(|k| format!("'{k}'")).collect();
    let day = format!(
        "COALESCE(CASE WHEN jsonb_typeof({alias}.facts->'date') = 'string' \
         THEN {alias}.facts->>'date' END, \
         (SELECT to_char(to_timestamp(c.received_at / 1000.0) AT TIME ZONE 'Asia/Shanghai', \
          'YYYY-MM-DD') FROM changes c WHERE c.seq = {alias}.first_seq))"
    );
    format!(
        "(({from}::text IS NULL AND {to}::text IS NULL) OR {alias}.kind IN ({exempt}) OR \
         (({from}::text IS NULL OR {day} COLLATE \"C\" >= {from}::text) AND \
          ({to}::text IS NULL OR {day} COLLATE \"C\" <= {to}::text)))",
        from = format_args!("${n}"),
        to = format_args!("${}", n + 1),
        exempt = exempt.join(", "),
    )
}

async fn group<C: GenericClient>(c: &C, sql: &str, p: &Scoped) -> Result<Counts, StorageError> {
    let mut out = Counts::new();
    for r in c.query(sql, &p.params()).await? {
        if let Some(k) = r.get::<_, Option<String>>(0) {
            *out.entry(k).or_default() += r.get::<_, i64>(1) as u64;
        }
    }
    Ok(out)
}

/// Live visible records of a kind in the campaign, as a SQL fragment (parameters as
/// [`Scoped`]'s).
fn live(kind: &str) -> String {
    format!(
        "FROM records WHERE campaign = $1 AND kind = '{kind}' AND NOT deleted AND {} AND {}",
        visible::condition("records", 2),
        counted("records")
    )
}

/// The visibility condition on the records aliased `alias` (parameters as [`Scoped`]'s).
fn seen(alias: &str) -> String {
    format!("{} AND {}", visible::condition(alias, 2), counted(alias))
}

/// A short field of the projection as text (`NULL` when missing): a choice, an id, a number, a
/// date, a map of choices, read from the record's `facts` ([`crate::storage::facts`]), which
/// stay in the row. A text over 64 characters is not there: read those with [`long_field`].
fn field(name: &str) -> String {
    format!("(facts->>'{name}')")
}

/// A field that may be long text (a name, a summary, a finding), from `fields`, which for a
/// record with notes is stored compressed out of the row: name it only where it is needed.
fn long_field(name: &str) -> String {
    format!("(fields->>'{name}')")
}

/// A yes/no field is yes (stored as JSON `true`, or 1 as SQLite's `json_extract` reads both).
fn yes(name: &str) -> String {
    format!("(facts->>'{name}') IN ('true', '1')")
}

/// The interviews and meetings whose notes a village's paragraph may quote, word for word the
/// condition of the index `records_noted` (`schema`), so that the planner proves the index
/// covers the query and reads a few rows per village, not every note of the campaign.
const NOTED: &str = "kind IN ('meeting', 'interview') AND NOT deleted
      AND jsonb_typeof(fields->'notes') = 'string' AND length(fields->>'notes') > 0";

/// Every number of the seed reports for one campaign, counted over the visible records only.
///
/// In one read-only repeatable-read snapshot. What was counted of each place is kept in `cache`
/// with the place's version, and only the places whose version moved are read again
/// ([`places`]). The rest (the smaller kinds, each village's own rows, the levels) is read each
/// time, on a second connection of `pool` at the same time when one is free at once and joins
/// the first's snapshot (else after the places on the first). Each connection's statements run
/// without parallel workers or JIT (on a small machine the two connections are the parallelism,
/// and compiling a tally's plan took longer than running it), and with index pages costed as
/// the cached pages they are, so that a pass over a campaign reads the covering indexes, not
/// the table three times their size. (Whole tallies are kept in front of this, per data
/// version, by `AppState::tallies`.)
pub(super) async fn tallies(
    pool: &deadpool_postgres::Pool,
    cache: &PlaceCache,
    campaign: Uuid,
    visibility: &Visibility,
    period: &crate::storage::Period,
) -> Result<Tallies, StorageError> {
    let mut first = pool.get().await.map_err(super::other)?;
    let tx = begin(&mut first, None).await?;
    let listed = places::list(&tx, &campaign.to_string(), &visible::Params::of(visibility)).await?;
    let mut now = pool.timeouts();
    now.wait = Some(std::time::Duration::ZERO);
    let mut second = pool.timeout_get(&now).await.ok();
    let mut tx2 = None;
    if let Some(second) = second.as_mut() {
        match join(&tx, second).await {
            Ok(t) => tx2 = Some(t),
            Err(e) => tracing::warn!("tallies on one connection: the second could not join: {e}"),
        }
    }
    let ask = Ask {
        cache,
        campaign,
        visibility,
        period,
    };
    count(&tx, tx2.as_ref(), &ask, listed).await
}

/// What [`tallies`] was asked, and where it keeps the places it counted.
struct Ask<'a> {
    cache: &'a PlaceCache,
    campaign: Uuid,
    visibility: &'a Visibility,
    period: &'a crate::storage::Period,
}

/// What the tallies' transactions set: no parallel workers and no JIT, and index pages costed
/// as cached (see [`tallies`]).
const SETTINGS: &str = "SET LOCAL max_parallel_workers_per_gather = 0; SET LOCAL jit = off;
    SET LOCAL random_page_cost = 1.1";

/// A read-only repeatable-read transaction with the tallies' [`SETTINGS`], in the snapshot
/// another transaction exported when one is named.
async fn begin<'a>(
    c: &'a mut deadpool_postgres::Client,
    snapshot: Option<&str>,
) -> Result<deadpool_postgres::Transaction<'a>, StorageError> {
    let tx = c
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    // The snapshot first in the transaction, as PostgreSQL requires; its name is PostgreSQL's
    // own (hex digits and dashes).
    let import = snapshot.map_or(String::new(), |s| {
        format!("SET TRANSACTION SNAPSHOT '{s}'; ")
    });
    tx.batch_execute(&format!("{import}{SETTINGS}")).await?;
    Ok(tx)
}

/// Another such transaction on `second`, in the snapshot of `tx` (which exports it).
async fn join<'b>(
    tx: &deadpool_postgres::Transaction<'_>,
    second: &'b mut deadpool_postgres::Client,
) -> Result<deadpool_postgres::Transaction<'b>, StorageError> {
    let snapshot: String = tx
        .query_one("SELECT pg_export_snapshot()", &[])
        .await?
        .get(0);
    begin(second, Some(&snapshot)).await
}

/// The tallies in `first`'s snapshot: the places there, everything else on `second` at the
/// same time (or after them on `first`).
async fn count<C: GenericClient>(
    first: &C,
    second: Option<&C>,
    ask: &Ask<'_>,
    listed: Vec<(String, Option<i64>)>,
) -> Result<Tallies, StorageError> {
    let (approved_only, targets) = header(first, ask.campaign).await?;
    let s = &Scoped {
        campaign: ask.campaign.to_string(),
        v: visible::Params::of(ask.visibility),
        approved_only,
        from: ask.period.from.clone(),
        to: ask.period.to.clone(),
    };
    let rest = |c| async move {
        let t = groups(c, s).await?;
        Ok::<_, StorageError>((t, SecondHalf::read(c, s).await?))
    };
    let (places, (mut t, half)) = match second {
        Some(second) => tokio::try_join!(
            Places::read(first, second, s, ask.cache, listed),
            rest(second)
        )?,
        None => (
            Places::read(first, first, s, ask.cache, listed).await?,
            rest(first).await?,
        ),
    };
    let (cells, interviews) = (places.cells(), places.interviews());
    let interviewed_by_level = villages::interviewed_by_level(first, &interviews.everyone).await?;
    t.targets = targets;
    t.campaign = ask.campaign;
    t.approved_only = approved_only;
    t.period = ask.period.clone();
    cells.complete(&mut t);
    (t.team_satisfaction, t.member_satisfaction) = places.satisfaction();
    half.complete(&mut t, &cells, &interviews, interviewed_by_level);
    Ok(t)
}

/// Whether the campaign counts approved records only (its `count_approved_only`).
async fn approved_only<C: GenericClient>(c: &C, campaign: Uuid) -> Result<bool, StorageError> {
    Ok(c.query_opt(
        "SELECT (fields->>'count_approved_only') = 'true' FROM records
             WHERE campaign = $1 AND kind = 'campaign' AND NOT deleted LIMIT 1",
        &[&campaign.to_string()],
    )
    .await?
    .and_then(|r| r.get::<_, Option<bool>>(0))
    .unwrap_or(false))
}

/// Whether the campaign counts approved records only, and its targets.
async fn header<C: GenericClient>(c: &C, campaign: Uuid) -> Result<(bool, Targets), StorageError> {
    let approved_only = approved_only(c, campaign).await?;
    let targets = c
        .query_opt(
            "SELECT fields FROM records
             WHERE campaign = $1 AND kind = 'campaign' AND NOT deleted AND fields IS NOT NULL
             LIMIT 1",
            &[&campaign.to_string()],
        )
        .await?
        .and_then(|r| r.get::<_, Option<serde_json::Value>>(0))
        .map(|f| Targets::from_fields(&f))
        .unwrap_or_default();
    Ok((approved_only, targets))
}

/// Distinct members (`m`) per level of their team, over the rows `from` names where `filter`
/// holds.
async fn by_team_level<C: GenericClient>(
    c: &C,
    s: &Scoped,
    from: &str,
    filter: String,
) -> Result<Counts, StorageError> {
    group(
        c,
        &format!(
            "SELECT t.facts->>'level', count(DISTINCT m.id) {from}
             JOIN records t ON t.id = (m.facts->>'team')
             WHERE {filter} GROUP BY 1"
        ),
        s,
    )
    .await
}

/// The grouped counts of the smaller kinds (findings, assessments, stars, rectifications), the
/// campaign's name and template, and the levels of the violators and of the teams assessed.
async fn groups<C: GenericClient>(c: &C, s: &Scoped) -> Result<Tallies, StorageError> {
    let text = |sql: String| async move {
        Ok::<_, StorageError>(
            c.query_opt(&sql, &s.params())
                .await?
                .and_then(|r| r.get::<_, Option<String>>(0)),
        )
    };
    let today = fieldsync_protocol::dates::today();
    let mut t = Tallies {
        name: text(format!(
            "SELECT {} {} LIMIT 1",
            long_field("name"),
            live("campaign")
        ))
        .await?,
        findings_by_level: group(
            c,
            &format!(
                "SELECT {}, count(*) {} GROUP BY 1",
                field("level"),
                live("finding")
            ),
            s,
        )
        .await?,
        findings_by_category: group(
            c,
            &format!(
                "SELECT {}, count(*) {} GROUP BY 1",
                field("category"),
                live("finding")
            ),
            s,
        )
        .await?,
        violations_by_level: group(
            c,
            &format!(
                "SELECT {}, count(*) {} AND {} GROUP BY 1",
                field("level"),
                live("finding"),
                yes("violation")
            ),
            s,
        )
        .await?,
        team_ratings: group(
            c,
            &format!(
                "SELECT {}, count(*) {} AND {} = 'team' AND conflicts = 0 GROUP BY 1",
                field("rating"),
                live("assessment"),
                field("target_type")
            ),
            s,
        )
        .await?,
        member_ratings: group(
            c,
            &format!(
                "SELECT {}, count(*) {} AND {} = 'member' AND conflicts = 0 GROUP BY 1",
                field("rating"),
                live("assessment"),
                field("target_type")
            ),
            s,
        )
        .await?,
        star_ratings: group(
            c,
            &format!(
                "SELECT {}, count(*) {} GROUP BY 1",
                field("stars"),
                live("star_rating")
            ),
            s,
        )
        .await?,
        rectifications: group(
            c,
            &format!(
                "SELECT {}, count(*) {} GROUP BY 1",
                field("status"),
                live("rectification")
            ),
            s,
        )
        .await?,
        // The one overdue rule (`crate::rectification::overdue`), as the SQLite storage and the
        // ledger apply it: over each rectification's status and deadline.
        overdue_rectifications: {
            let rows = c
                .query(
                    &format!(
                        "SELECT {}, {} {} AND {} IS NOT NULL",
                        field("status"),
                        field("deadline"),
                        live("rectification"),
                        field("deadline")
                    ),
                    &s.params(),
                )
                .await?;
            rows.iter()
                .filter(|r| {
                    crate::rectification::overdue(
                        r.get::<_, Option<String>>(0).as_deref().unwrap_or(""),
                        r.get::<_, Option<String>>(1).as_deref().unwrap_or(""),
                        &today,
                    )
                })
                .count() as u64
        },
        ..Default::default()
    };
    t.template = text(format!(
        "SELECT {} {} LIMIT 1",
        long_field("template"),
        live("campaign")
    ))
    .await?;
    // Joint-review violations per level of the member's team.
    t.violators_by_level = by_team_level(
        c,
        s,
        "FROM records p JOIN records m ON m.id = (p.facts->>'member')",
        format!(
            "p.campaign = $1 AND p.kind = 'prescreening' AND NOT p.deleted
             AND (p.facts->>'violation') IN ('true', '1') AND {}",
            seen("p")
        ),
    )
    .await?;
    // Team assessments per level of the team assessed, and the five checks of township teams.
    let team_assessments = format!(
        "FROM records a JOIN records t ON t.id = (a.facts->>'target')
         WHERE a.campaign = $1 AND a.kind = 'assessment' AND NOT a.deleted AND a.conflicts = 0
         AND (a.facts->>'target_type') = 'team' AND {}",
        seen("a")
    );
    for r in c
        .query(
            &format!(
                "SELECT t.facts->>'level', a.facts->>'rating', count(*)
                 {team_assessments} GROUP BY 1, 2"
            ),
            &s.params(),
        )
        .await?
    {
        if let (Some(level), Some(rating)) =
            (r.get::<_, Option<String>>(0), r.get::<_, Option<String>>(1))
        {
            *t.team_ratings_by_level
                .entry(level)
                .or_default()
                .entry(rating)
                .or_default() += r.get::<_, i64>(2) as u64;
        }
    }
    for check in [
        "check_org_operation",
        "check_political",
        "check_duty",
        "check_results",
        "check_style",
    ] {
        let counts = group(
            c,
            &format!(
                "SELECT a.facts->>'{check}', count(*) {team_assessments}
                 AND (t.facts->>'level') = 'township_team' GROUP BY 1"
            ),
            s,
        )
        .await?;
        if !counts.is_empty() {
            t.township_checks.insert(check.to_string(), counts);
        }
    }
    Ok(t)
}

/// `q` as a `LIKE` pattern that matches it literally anywhere (`\` escapes `%`, `_` and itself).
fn contains_pattern(q: &str) -> String {
    let mut p = String::with_capacity(q.len() + 2);
    p.push('%');
    for ch in q.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(ch);
    }
    p.push('%');
    p
}

/// Visible records whose indexed text contains `q`, case-insensitively as SQLite's trigram
/// index does. With three characters or more `pg_trgm`'s GIN index finds the candidates; a
/// shorter word (集体: two characters, one trigram short) has no trigram to look up, so the same
/// `ILIKE` runs over the campaign's rows instead — slower, never wrong.
pub(super) async fn search<C: GenericClient>(
    c: &C,
    search: &Search,
    visibility: &Visibility,
) -> Result<Vec<SearchHit>, StorageError> {
    // Control characters are no words (`search_words` drops them; a NUL cannot be sent in a
    // text parameter either).
    if search.words.is_empty() {
        return Ok(Vec::new());
    }
    let v = visible::Params::of(visibility);
    // $1 campaign, $2 kind, $3 village, $4 limit, $5–$7 the visibility, $8… the words.
    let likes: Vec<String> = (0..search.words.len())
        .map(|i| format!("r.search_text ILIKE ${}", i + 8))
        .collect();
    let sql = format!(
        "SELECT r.id, r.kind, r.campaign, r.scope, r.search_text FROM records r
         WHERE {}
           AND ($1::text IS NULL OR r.campaign = $1) AND ($2::text IS NULL OR r.kind = $2)
           AND ($3::text IS NULL OR r.scope = $3) AND {}
         ORDER BY r.first_seq LIMIT $4",
        likes.join(" AND "),
        visible::condition("r", 5)
    );
    let campaign = search.campaign.map(|c| c.to_string());
    let limit = search.limit as i64;
    let patterns: Vec<String> = search.words.iter().map(|w| contains_pattern(w)).collect();
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![
        &campaign,
        &search.kind,
        &search.scope,
        &limit,
        &v.all,
        &v.campaign,
        &v.places,
    ];
    params.extend(
        patterns
            .iter()
            .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync)),
    );
    let rows = c.query(&sql, &params).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let text: String = r.get(4);
            SearchHit {
                id: Uuid::parse_str(&r.get::<_, String>(0)).unwrap_or_default(),
                kind: r.get(1),
                campaign: Uuid::parse_str(&r.get::<_, String>(2)).unwrap_or_default(),
                scope: r.get(3),
                snippet: crate::storage::tallies::snippet(&text, &search.words),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_notes_query_names_the_condition_of_the_notes_index_word_for_word() {
        let index = super::super::schema::MIGRATIONS
            .iter()
            .find(|m| m.sql.contains("CREATE INDEX records_noted"))
            .expect("a migration creates records_noted");
        assert!(index.sql.contains(&format!("WHERE {};", super::NOTED)));
    }

    #[test]
    fn patterns_match_wildcards_literally() {
        assert_eq!(super::contains_pattern("集体"), "%集体%");
        assert_eq!(super::contains_pattern("5%_a\\"), "%5\\%\\_a\\\\%");
    }
}
