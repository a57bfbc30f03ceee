//! The campaign queries of the PostgreSQL storage: the same tallies as the SQLite storage's
//! `storage::tally`, computed in SQL over the projection's `jsonb` (`->>`, `jsonb_each_text`,
//! index on `(campaign, kind)`), and substring search through a `pg_trgm` GIN index on each
//! record's indexed text (`records.search_text`, kept by merging).

use std::collections::BTreeMap;

use deadpool_postgres::GenericClient;
use fieldsync_protocol::{approval, auth::DEPARTMENT_KINDS};
use uuid::Uuid;

use super::{StorageError, Visibility, visible};
use crate::storage::{
    Counts, NOTES_PER_VILLAGE, Search, SearchHit, Tallies, Targets, VillageTally,
};

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

/// Whether the record aliased `alias` counts: all do, unless the campaign counts approved
/// records only (`$5`); then reference data and records whose review is `approved` do. And only
/// records of the period (`$6`, `$7`; [`in_period`]).
fn counted(alias: &str) -> String {
    let exempt: Vec<String> = DEPARTMENT_KINDS.iter().map(|k| format!("'{k}'")).collect();
    format!(
        "(NOT $5::bool OR {alias}.kind IN ({}) OR {alias}.facts->>'{}' = '{}') AND {}",
        exempt.join(", "),
        approval::STATE_FIELD,
        approval::State::Approved.as_str(),
        in_period(alias, 6)
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

async fn count<C: GenericClient>(c: &C, sql: &str, p: &Scoped) -> Result<u64, StorageError> {
    Ok(c.query_one(sql, &p.params())
        .await?
        .get::<_, Option<i64>>(0)
        .unwrap_or(0) as u64)
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

/// The sum of a numeric field over the rows (non-numbers count as nothing).
fn sum_of(name: &str) -> String {
    format!(
        "sum(CASE WHEN jsonb_typeof(facts->'{name}') = 'number' \
         THEN (facts->>'{name}')::numeric END)::bigint"
    )
}

/// Every number of the seed reports for one campaign, counted over the visible records only.
pub(super) async fn tallies<C: GenericClient>(
    c: &C,
    campaign: Uuid,
    visibility: &Visibility,
    period: &crate::storage::Period,
) -> Result<Tallies, StorageError> {
    let approved_only = c
        .query_opt(
            "SELECT (fields->>'count_approved_only') = 'true' FROM records
             WHERE campaign = $1 AND kind = 'campaign' AND NOT deleted LIMIT 1",
            &[&campaign.to_string()],
        )
        .await?
        .and_then(|r| r.get::<_, Option<bool>>(0))
        .unwrap_or(false);
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
    let s = Scoped {
        campaign: campaign.to_string(),
        v: visible::Params::of(visibility),
        approved_only,
        from: period.from.clone(),
        to: period.to.clone(),
    };
    let s = &s;
    let kind_count = |kind: &'static str| {
        let sql = format!("SELECT count(*) {}", live(kind));
        async move { count(c, &sql, s).await }
    };
    let text = |sql: String| async move {
        Ok::<_, StorageError>(
            c.query_opt(&sql, &s.params())
                .await?
                .and_then(|r| r.get::<_, Option<String>>(0)),
        )
    };
    let today = fieldsync_protocol::dates::today();
    let mut t = Tallies {
        targets,
        campaign,
        approved_only,
        period: period.clone(),
        name: text(format!(
            "SELECT {} {} LIMIT 1",
            long_field("name"),
            live("campaign")
        ))
        .await?,
        townships: count(
            c,
            &format!(
                "SELECT count(*) {} AND {} = 'township'",
                live("place"),
                field("level")
            ),
            s,
        )
        .await?,
        villages: count(
            c,
            &format!(
                "SELECT count(*) {} AND {} IN ('village', 'community')",
                live("place"),
                field("level")
            ),
            s,
        )
        .await?,
        work_groups: kind_count("work_group").await?,
        members: kind_count("member").await?,
        members_interviewed: count(
            c,
            &format!(
                "SELECT count(DISTINCT {}) {} AND {} = 'member'",
                field("interviewee"),
                live("interview"),
                field("interviewee_type")
            ),
            s,
        )
        .await?,
        interviews: kind_count("interview").await?,
        meetings: kind_count("meeting").await?,
        meeting_participants: c
            .query_one(
                &format!("SELECT {} {}", sum_of("participants"), live("meeting")),
                &s.params(),
            )
            .await?
            .get::<_, Option<i64>>(0)
            .unwrap_or(0),
        suggestions: c
            .query_one(
                &format!(
                    "SELECT {} FROM records WHERE campaign = $1 AND NOT deleted
                     AND kind IN ('interview', 'meeting', 'site_visit') AND {}",
                    sum_of("suggestions_collected"),
                    seen("records")
                ),
                &s.params(),
            )
            .await?
            .get::<_, Option<i64>>(0)
            .unwrap_or(0),
        questionnaires: kind_count("questionnaire").await?,
        evaluations: kind_count("evaluation").await?,
        document_reviews: kind_count("document_review").await?,
        prescreenings: kind_count("prescreening").await?,
        prescreening_integrity_issues: count(
            c,
            &format!(
                "SELECT count(*) {} AND {}",
                live("prescreening"),
                yes("integrity_issue")
            ),
            s,
        )
        .await?,
        prescreening_violations: count(
            c,
            &format!(
                "SELECT count(*) {} AND {}",
                live("prescreening"),
                yes("violation")
            ),
            s,
        )
        .await?,
        findings: kind_count("finding").await?,
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
        conflicted_assessments: count(
            c,
            &format!("SELECT count(*) {} AND conflicts > 0", live("assessment")),
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
        team_satisfaction: group(
            c,
            &format!(
                "SELECT {}, count(*) {} GROUP BY 1",
                field("team_rating"),
                live("evaluation")
            ),
            s,
        )
        .await?,
        ..Default::default()
    };
    for r in c
        .query(
            &format!(
                "SELECT je.key, je.value, count(*)
                 FROM records, jsonb_each_text(CASE
                     WHEN jsonb_typeof(records.facts->'member_ratings') = 'object'
                     THEN records.facts->'member_ratings' ELSE '{{}}'::jsonb END) AS je
                 WHERE records.campaign = $1 AND records.kind = 'evaluation'
                   AND NOT records.deleted AND {}
                 GROUP BY 1, 2",
                seen("records")
            ),
            &s.params(),
        )
        .await?
    {
        let (member, answer): (String, Option<String>) = (r.get(0), r.get(1));
        if let Some(answer) = answer {
            *t.member_satisfaction
                .entry(member)
                .or_default()
                .entry(answer)
                .or_default() += r.get::<_, i64>(2) as u64;
        }
    }
    t.villages_detail = villages(c, s).await?;
    t.template = text(format!(
        "SELECT {} {} LIMIT 1",
        long_field("template"),
        live("campaign")
    ))
    .await?;
    // Members, interviews and joint-review violations per level of the member's team.
    let by_team_level = |from: &'static str, filter: String| async move {
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
    };
    t.members_by_level = by_team_level(
        "FROM records m",
        format!(
            "m.campaign = $1 AND m.kind = 'member' AND NOT m.deleted AND {}",
            seen("m")
        ),
    )
    .await?;
    t.interviewed_by_level = by_team_level(
        "FROM records i JOIN records m ON m.id = (i.facts->>'interviewee')",
        format!(
            "i.campaign = $1 AND i.kind = 'interview' AND NOT i.deleted AND {}",
            seen("i")
        ),
    )
    .await?;
    t.violators_by_level = by_team_level(
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

async fn villages<C: GenericClient>(c: &C, s: &Scoped) -> Result<Vec<VillageTally>, StorageError> {
    let mut out: BTreeMap<String, VillageTally> = BTreeMap::new();
    for r in c
        .query(
            &format!(
                "SELECT {}, {} {} AND {} IN ('village', 'community')",
                long_field("code"),
                long_field("name"),
                live("place"),
                field("level")
            ),
            &s.params(),
        )
        .await?
    {
        if let (Some(code), Some(name)) =
            (r.get::<_, Option<String>>(0), r.get::<_, Option<String>>(1))
        {
            out.insert(
                code.clone(),
                VillageTally {
                    code,
                    name,
                    ..Default::default()
                },
            );
        }
    }
    for r in c
        .query(
            &format!(
                "SELECT scope, kind, count(*) FROM records
                 WHERE campaign = $1 AND NOT deleted AND {} GROUP BY scope, kind",
                seen("records")
            ),
            &s.params(),
        )
        .await?
    {
        let (scope, kind): (String, String) = (r.get(0), r.get(1));
        if let Some(v) = out.get_mut(&scope) {
            let n = r.get::<_, i64>(2) as u64;
            match kind.as_str() {
                "member" => v.members = n,
                "interview" => v.interviews = n,
                "meeting" => v.meetings = n,
                "questionnaire" => v.questionnaires = n,
                "evaluation" => v.evaluations = n,
                "finding" => v.findings = n,
                "document_review" => v.document_reviews = n,
                _ => {}
            }
        }
    }
    // Members interviewed at least once, and interviews of anyone else, per village.
    for r in c
        .query(
            &format!(
                "SELECT scope,
                        count(DISTINCT CASE WHEN {kind} = 'member' THEN {who} END),
                        count(CASE WHEN {kind} IS DISTINCT FROM 'member' THEN 1 END)
                 {} GROUP BY scope",
                live("interview"),
                kind = field("interviewee_type"),
                who = field("interviewee"),
            ),
            &s.params(),
        )
        .await?
    {
        if let Some(v) = out.get_mut(&r.get::<_, String>(0)) {
            v.members_interviewed = r.get::<_, i64>(1) as u64;
            v.villager_interviews = r.get::<_, i64>(2) as u64;
        }
    }
    for r in c
        .query(
            &format!(
                "SELECT scope, {}, {} {} AND {} = 'team' AND conflicts = 0 ORDER BY first_seq",
                field("rating"),
                long_field("summary"),
                live("assessment"),
                field("target_type")
            ),
            &s.params(),
        )
        .await?
    {
        if let Some(v) = out.get_mut(&r.get::<_, String>(0)) {
            v.team_rating = r.get(1);
            v.summary = r.get(2);
        }
    }
    for r in c
        .query(
            &format!(
                "SELECT scope, {} {} ORDER BY first_seq",
                long_field("text"),
                live("finding")
            ),
            &s.params(),
        )
        .await?
    {
        if let (Some(v), Some(text)) = (
            out.get_mut(&r.get::<_, String>(0)),
            r.get::<_, Option<String>>(1),
        ) {
            v.problems.push(text);
        }
    }
    for r in c
        .query(
            &format!(
                "SELECT scope, notes FROM (
                   SELECT scope, fields->>'notes' AS notes,
                          row_number() OVER (PARTITION BY scope
                                             ORDER BY kind = 'meeting' DESC, first_seq) AS n
                   FROM records
                   WHERE campaign = $1 AND kind IN ('meeting', 'interview') AND NOT deleted
                     AND {} AND jsonb_typeof(fields->'notes') = 'string'
                     AND length(fields->>'notes') > 0) AS notes
                 WHERE n <= {NOTES_PER_VILLAGE} ORDER BY scope, n",
                seen("records")
            ),
            &s.params(),
        )
        .await?
    {
        if let Some(v) = out.get_mut(&r.get::<_, String>(0)) {
            v.notes.push(r.get(1));
        }
    }
    Ok(out.into_values().collect())
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
    fn patterns_match_wildcards_literally() {
        assert_eq!(super::contains_pattern("集体"), "%集体%");
        assert_eq!(super::contains_pattern("5%_a\\"), "%5\\%\\_a\\\\%");
    }
}
