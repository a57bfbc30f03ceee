//! The tallies of the SQLite storage: every number of a campaign's report, computed in SQL over
//! the projection's JSON (`json_extract`, `json_each`) within the asker's visibility.

use fieldsync_protocol::{approval, auth::DEPARTMENT_KINDS};
use rusqlite::{Connection, OptionalExtension};
use uuid::Uuid;

use super::visible;

mod digest;
mod villages;
use crate::storage::{Counts, StorageError, Tallies, Targets, Visibility};
pub(super) use digest::digest;
use villages::{Interviews, villages};

/// The parameters every tally query takes: `?1` the campaign, `?2` and `?3` the visibility (see
/// [`visible::condition`]), `?4` whether only approved records count, `?5` and `?6` the period
/// ([`counted`]).
struct Scoped<'a> {
    campaign: &'a str,
    visible_campaign: Option<String>,
    places: String,
    approved_only: bool,
    from: Option<String>,
    to: Option<String>,
}

impl Scoped<'_> {
    fn params(&self) -> [&dyn rusqlite::ToSql; 6] {
        [
            &self.campaign,
            &self.visible_campaign,
            &self.places,
            &self.approved_only,
            &self.from,
            &self.to,
        ]
    }
}

/// Whether the record aliased `alias` counts: it passes the approval rule ([`approved`]) and is
/// of the period (`?5`, `?6`; [`in_period`]).
///
/// Each part names only its parameters when it keeps every record (no approval rule; every
/// day), and the approval rule reads `facts`: then a count needs no more than an index
/// (`records_tally`), not the rows, unless a period is asked for.
fn counted(alias: &str, c: &Scoped<'_>) -> String {
    let period = if c.from.is_none() && c.to.is_none() {
        "(?5 IS NULL AND ?6 IS NULL)".to_string()
    } else {
        in_period(alias, 5)
    };
    format!("{} AND {period}", approved(alias, c))
}

/// Whether the record aliased `alias` passes the campaign's approval rule: all do, unless the
/// campaign counts approved records only (`?4`); then reference data and records whose review
/// is `approved` do. Without the rule, the condition names the parameter only.
fn approved(alias: &str, c: &Scoped<'_>) -> String {
    if !c.approved_only {
        return "(?4 = 0)".into();
    }
    let exempt: Vec<String> = DEPARTMENT_KINDS.iter().map(|k| format!("'{k}'")).collect();
    format!(
        "(?4 = 0 OR {alias}.kind IN ({}) OR json_extract({alias}.facts, '$.{}') = '{}')",
        exempt.join(", "),
        approval::STATE_FIELD,
        approval::State::Approved.as_str(),
    )
}

/// Whether the record aliased `alias` is of the period whose first and last days are parameters
/// `?{n}` and `?{n+1}` (either `NULL`: open), by [`crate::storage::Period`]'s rule: its own `date`
/// field, else the Beijing day its first change arrived; reference data always is.
pub(super) fn in_period(alias: &str, n: usize) -> String {
    let exempt: Vec<String> = DEPARTMENT_KINDS.iter().map(|k| format!("'{k}'")).collect();
    let day = format!(
        "COALESCE(CASE json_type({alias}.fields, '$.date') WHEN 'text' \
         THEN json_extract({alias}.fields, '$.date') END, \
         (SELECT date(c.received_at / 1000, 'unixepoch', '+8 hours') FROM changes c \
          WHERE c.seq = {alias}.first_seq))"
    );
    format!(
        "(({from} IS NULL AND {to} IS NULL) OR {alias}.kind IN ({exempt}) OR \
         (({from} IS NULL OR {day} >= {from}) AND ({to} IS NULL OR {day} <= {to})))",
        from = format_args!("?{n}"),
        to = format_args!("?{}", n + 1),
        exempt = exempt.join(", "),
    )
}

fn count(conn: &Connection, sql: &str, p: &Scoped<'_>) -> Result<u64, StorageError> {
    Ok(conn
        .query_row(sql, p.params(), |r| r.get::<_, Option<i64>>(0))?
        .unwrap_or(0) as u64)
}

fn sum(conn: &Connection, sql: &str, p: &Scoped<'_>) -> Result<i64, StorageError> {
    Ok(conn
        .query_row(sql, p.params(), |r| r.get::<_, Option<i64>>(0))?
        .unwrap_or(0))
}

fn group(conn: &Connection, sql: &str, p: &Scoped<'_>) -> Result<Counts, StorageError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(p.params(), |r| {
        Ok((r.get::<_, Option<String>>(0)?, r.get::<_, i64>(1)?))
    })?;
    let mut out = Counts::new();
    for row in rows {
        let (k, n) = row?;
        if let Some(k) = k {
            *out.entry(k).or_default() += n as u64;
        }
    }
    Ok(out)
}

/// Live visible records of a kind in the campaign, as a SQL fragment (parameters as
/// [`Scoped`]'s).
fn live(kind: &str, c: &Scoped<'_>) -> String {
    format!(
        "FROM records WHERE campaign = ?1 AND kind = '{kind}' AND deleted = 0 AND {} AND {}",
        visible::condition("records", 2),
        counted("records", c)
    )
}

/// The visibility condition on the records aliased `alias` (parameters as [`Scoped`]'s).
fn seen(alias: &str, c: &Scoped<'_>) -> String {
    format!("{} AND {}", visible::condition(alias, 2), counted(alias, c))
}

/// The rectifications that [`crate::rectification::overdue`] says are overdue.
fn overdue(conn: &Connection, c: &Scoped<'_>, today: &str) -> Result<u64, StorageError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {}, {} {}",
        text_field("status"),
        text_field("deadline"),
        live("rectification", c)
    ))?;
    let rows = stmt.query_map(c.params(), |r| {
        Ok((
            r.get::<_, Option<String>>(0)?.unwrap_or_default(),
            r.get::<_, Option<String>>(1)?.unwrap_or_default(),
        ))
    })?;
    let mut n = 0;
    for row in rows {
        let (status, deadline) = row?;
        n += u64::from(crate::rectification::overdue(&status, &deadline, today));
    }
    Ok(n)
}

/// A field's value when it is text, else NULL.
/// A short field's value when it is text, else NULL (from `facts`: see [`field`]).
fn text_field(name: &str) -> String {
    format!(
        "(CASE json_type(facts, '$.{name}') WHEN 'text' THEN json_extract(facts, '$.{name}') END)"
    )
}

/// A short field's value (a choice, an id, a number, a date, a map of choices): read from the
/// record's `facts` (`sqlite::facts`), which the index `records_tally` holds, so that a query naming
/// only these and the index's columns never reads the records' rows. A text over 64 characters
/// is not there: read those with [`long_field`].
fn field(name: &str) -> String {
    format!("json_extract(facts, '$.{name}')")
}

/// A field that may be long text (a name, a summary, a finding, notes), from `fields`.
fn long_field(name: &str) -> String {
    format!("json_extract(fields, '$.{name}')")
}

/// [`long_field`] when it is text, else NULL.
fn long_text_field(name: &str) -> String {
    format!(
        "(CASE json_type(fields, '$.{name}') WHEN 'text' THEN json_extract(fields, '$.{name}') END)"
    )
}

/// Every number of the seed reports for one campaign, counted over the visible records only:
/// [`campaign_part`] and [`village_part`] on one connection, one after the other (for the
/// tests; the storage runs the two parts on two connections at once).
#[cfg(test)]
fn tallies(
    conn: &Connection,
    campaign: Uuid,
    visibility: &Visibility,
    period: &crate::storage::Period,
) -> Result<Tallies, StorageError> {
    Ok(combine(
        campaign_part(conn, campaign, visibility, period)?,
        village_part(conn, campaign, visibility, period)?,
    ))
}

/// The per-village numbers and the campaign's interviews: what [`combine`] adds to the
/// campaign's numbers.
pub(super) struct VillagePart {
    interviews: Interviews,
    villages: Vec<crate::storage::VillageTally>,
}

/// The tallies' second half: the interviews, read once for both levels, and every village's
/// numbers.
pub(super) fn village_part(
    conn: &Connection,
    campaign: Uuid,
    visibility: &Visibility,
    period: &crate::storage::Period,
) -> Result<VillagePart, StorageError> {
    let campaign_id = campaign.to_string();
    let scoped = scoped(conn, &campaign_id, visibility, period)?;
    let interviews = Interviews::read(conn, &scoped)?;
    let villages = villages(conn, &scoped, &interviews)?;
    Ok(VillagePart {
        interviews,
        villages,
    })
}

/// The campaign's numbers with the village part's: members interviewed and the interviews'
/// suggestions, and the villages.
pub(super) fn combine(mut t: Tallies, v: VillagePart) -> Tallies {
    t.members_interviewed = v.interviews.members_interviewed();
    t.suggestions += v.interviews.suggestions;
    t.villages_detail = v.villages;
    t
}

/// The parameters of every tally query for this asker and period, with the campaign's approval
/// rule read from its campaign record.
fn scoped<'a>(
    conn: &Connection,
    campaign_id: &'a str,
    visibility: &Visibility,
    period: &crate::storage::Period,
) -> Result<Scoped<'a>, StorageError> {
    let (visible_campaign, places) = visible::params(visibility);
    let approved_only = conn
        .query_row(
            "SELECT json_extract(fields, '$.count_approved_only') FROM records
             WHERE campaign = ?1 AND kind = 'campaign' AND deleted = 0 LIMIT 1",
            [campaign_id],
            |r| r.get::<_, Option<i64>>(0),
        )
        .optional()?
        .flatten()
        == Some(1);
    Ok(Scoped {
        campaign: campaign_id,
        visible_campaign,
        places,
        approved_only,
        from: period.from.clone(),
        to: period.to.clone(),
    })
}

/// The tallies' first half: every campaign-wide number but those [`combine`] adds.
pub(super) fn campaign_part(
    conn: &Connection,
    campaign: Uuid,
    visibility: &Visibility,
    period: &crate::storage::Period,
) -> Result<Tallies, StorageError> {
    let campaign_id = campaign.to_string();
    let scoped = scoped(conn, &campaign_id, visibility, period)?;
    let approved_only = scoped.approved_only;
    let c = &scoped;
    let kind_count = |kind: &str| count(conn, &format!("SELECT count(*) {}", live(kind, c)), c);
    let today = fieldsync_protocol::dates::today();
    let targets = conn
        .query_row(
            "SELECT fields FROM records
             WHERE campaign = ?1 AND kind = 'campaign' AND deleted = 0 AND fields IS NOT NULL
             LIMIT 1",
            [&campaign_id],
            |r| r.get::<_, String>(0),
        )
        .optional()?
        .and_then(|f| serde_json::from_str::<serde_json::Value>(&f).ok())
        .map(|f| Targets::from_fields(&f))
        .unwrap_or_default();
    let mut t = Tallies {
        campaign,
        targets,
        approved_only,
        period: period.clone(),
        name: conn
            .query_row(
                &format!("SELECT {} {}", long_field("name"), live("campaign", c)),
                c.params(),
                |r| r.get::<_, Option<String>>(0),
            )
            .ok()
            .flatten(),
        townships: count(
            conn,
            &format!(
                "SELECT count(*) {} AND {} = 'township'",
                live("place", c),
                field("level")
            ),
            c,
        )?,
        villages: count(
            conn,
            &format!(
                "SELECT count(*) {} AND {} IN ('village', 'community')",
                live("place", c),
                field("level")
            ),
            c,
        )?,
        work_groups: kind_count("work_group")?,
        members: kind_count("member")?,
        interviews: kind_count("interview")?,
        meetings: kind_count("meeting")?,
        meeting_participants: sum(
            conn,
            &format!(
                "SELECT sum({}) {}",
                field("participants"),
                live("meeting", c)
            ),
            c,
        )?,
        // The interviews' suggestions are added by `combine`.
        suggestions: sum(
            conn,
            &format!(
                "SELECT sum({}) FROM records WHERE campaign = ?1 AND deleted = 0
                     AND kind IN ('meeting', 'site_visit') AND {}",
                field("suggestions_collected"),
                seen("records", c)
            ),
            c,
        )?,
        questionnaires: kind_count("questionnaire")?,
        evaluations: kind_count("evaluation")?,
        document_reviews: kind_count("document_review")?,
        prescreenings: kind_count("prescreening")?,
        prescreening_integrity_issues: count(
            conn,
            &format!(
                "SELECT count(*) {} AND {} = 1",
                live("prescreening", c),
                field("integrity_issue")
            ),
            c,
        )?,
        prescreening_violations: count(
            conn,
            &format!(
                "SELECT count(*) {} AND {} = 1",
                live("prescreening", c),
                field("violation")
            ),
            c,
        )?,
        findings: kind_count("finding")?,
        findings_by_level: group(
            conn,
            &format!(
                "SELECT {}, count(*) {} GROUP BY 1",
                field("level"),
                live("finding", c)
            ),
            c,
        )?,
        findings_by_category: group(
            conn,
            &format!(
                "SELECT {}, count(*) {} GROUP BY 1",
                field("category"),
                live("finding", c)
            ),
            c,
        )?,
        violations_by_level: group(
            conn,
            &format!(
                "SELECT {}, count(*) {} AND {} = 1 GROUP BY 1",
                field("level"),
                live("finding", c),
                field("violation")
            ),
            c,
        )?,
        team_ratings: group(
            conn,
            &format!(
                "SELECT {}, count(*) {} AND {} = 'team' AND conflicts = 0 GROUP BY 1",
                field("rating"),
                live("assessment", c),
                field("target_type")
            ),
            c,
        )?,
        member_ratings: group(
            conn,
            &format!(
                "SELECT {}, count(*) {} AND {} = 'member' AND conflicts = 0 GROUP BY 1",
                field("rating"),
                live("assessment", c),
                field("target_type")
            ),
            c,
        )?,
        conflicted_assessments: count(
            conn,
            &format!(
                "SELECT count(*) {} AND conflicts > 0",
                live("assessment", c)
            ),
            c,
        )?,
        star_ratings: group(
            conn,
            &format!(
                "SELECT {}, count(*) {} GROUP BY 1",
                field("stars"),
                live("star_rating", c)
            ),
            c,
        )?,
        rectifications: group(
            conn,
            &format!(
                "SELECT {}, count(*) {} GROUP BY 1",
                field("status"),
                live("rectification", c)
            ),
            c,
        )?,
        overdue_rectifications: overdue(conn, &scoped, &today)?,
        ..Default::default()
    };
    // The evaluation forms, read once for the team's and each member's satisfaction: grouped
    // by their answers (forms filled alike are one row), each group's member answers counted
    // from its JSON object.
    {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {}, json_extract(facts, '$.member_ratings'), count(*) {} GROUP BY 1, 2",
            text_field("team_rating"),
            live("evaluation", c)
        ))?;
        let mut rows = stmt.query(c.params())?;
        while let Some(r) = rows.next()? {
            let (team, members, n): (Option<String>, Option<String>, i64) =
                (r.get(0)?, r.get(1)?, r.get(2)?);
            if let Some(team) = team {
                *t.team_satisfaction.entry(team).or_default() += n as u64;
            }
            let members = members
                .and_then(|m| {
                    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&m).ok()
                })
                .unwrap_or_default();
            for (member, answer) in members {
                if let serde_json::Value::String(answer) = answer {
                    *t.member_satisfaction
                        .entry(member)
                        .or_default()
                        .entry(answer)
                        .or_default() += n as u64;
                }
            }
        }
    }
    t.template = conn
        .query_row(
            &format!("SELECT {} {}", long_field("template"), live("campaign", c)),
            c.params(),
            |r| r.get::<_, Option<String>>(0),
        )
        .ok()
        .flatten();
    // Members, interviews and joint-review violations per level of the member's team.
    let by_team_level = |from: &str, filter: &str| -> Result<Counts, StorageError> {
        group(
            conn,
            &format!(
                "SELECT json_extract(t.facts, '$.level'), count(DISTINCT m.id) {from}
                 JOIN records t ON t.id = json_extract(m.facts, '$.team')
                 WHERE {filter} GROUP BY 1"
            ),
            c,
        )
    };
    t.members_by_level = by_team_level(
        "FROM records m",
        &format!(
            "m.campaign = ?1 AND m.kind = 'member' AND m.deleted = 0 AND {}",
            seen("m", c)
        ),
    )?;
    t.interviewed_by_level = by_team_level(
        "FROM records i JOIN records m ON m.id = json_extract(i.facts, '$.interviewee')",
        &format!(
            "i.campaign = ?1 AND i.kind = 'interview' AND i.deleted = 0 AND {}",
            seen("i", c)
        ),
    )?;
    t.violators_by_level = by_team_level(
        "FROM records p JOIN records m ON m.id = json_extract(p.facts, '$.member')",
        &format!(
            "p.campaign = ?1 AND p.kind = 'prescreening' AND p.deleted = 0
             AND json_extract(p.facts, '$.violation') = 1 AND {}",
            seen("p", c)
        ),
    )?;
    // Team assessments per level of the team assessed, and the five checks of township teams.
    let team_assessments = format!(
        "FROM records a JOIN records t ON t.id = json_extract(a.facts, '$.target')
         WHERE a.campaign = ?1 AND a.kind = 'assessment' AND a.deleted = 0 AND a.conflicts = 0
         AND json_extract(a.facts, '$.target_type') = 'team' AND {}",
        seen("a", c)
    );
    {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT json_extract(t.facts, '$.level'), json_extract(a.facts, '$.rating'), count(*)
             {team_assessments} GROUP BY 1, 2"
        ))?;
        for row in stmt.query_map(c.params(), |r| {
            Ok((
                r.get::<_, Option<String>>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })? {
            if let (Some(level), Some(rating), n) = row? {
                *t.team_ratings_by_level
                    .entry(level)
                    .or_default()
                    .entry(rating)
                    .or_default() += n as u64;
            }
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
            conn,
            &format!(
                "SELECT json_extract(a.facts, '$.{check}'), count(*) {team_assessments}
                 AND json_extract(t.facts, '$.level') = 'township_team' GROUP BY 1"
            ),
            c,
        )?;
        if !counts.is_empty() {
            t.township_checks.insert(check.to_string(), counts);
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::NOTES_PER_VILLAGE;
    use rusqlite::params;

    fn plan(conn: &Connection, sql: &str, c: &Scoped<'_>) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt
            .query_map(c.params(), |r| r.get::<_, String>(3))
            .unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("\n")
    }

    #[tokio::test]
    async fn a_villages_notes_are_its_minutes_then_its_oldest_interview_notes() {
        let dir = tempfile::tempdir().unwrap();
        let storage = crate::storage::sqlite::SqliteStorage::open_for_admin(dir.path()).unwrap();
        crate::storage::Storage::close(&storage).await;
        let conn = Connection::open(dir.path().join("fieldsync.sqlite3")).unwrap();
        crate::storage::sqlite::facts::register(&conn).unwrap();
        let campaign = Uuid::from_u128(7);
        let mut seq = 0;
        let mut add = |kind: &str, scope: &str, fields: serde_json::Value, deleted: bool| {
            seq += 1;
            conn.execute(
                "INSERT INTO records (id, kind, campaign, scope, first_seq, last_seq, dirty,
                                      fields, facts, deleted)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, 0, ?6, fieldsync_facts(?6), ?7)",
                params![
                    Uuid::from_u128(100 + seq as u128).to_string(),
                    kind,
                    campaign.to_string(),
                    scope,
                    seq,
                    fields.to_string(),
                    deleted
                ],
            )
            .unwrap();
        };
        for (code, name) in [("v1", "一村"), ("v2", "二村")] {
            add(
                "place",
                code,
                serde_json::json!({"code": code, "name": name, "level": "village"}),
                false,
            );
        }
        // v1: interviews (one empty, one deleted), then a meeting written last, then more
        // interviews than the report takes.
        add(
            "interview",
            "v1",
            serde_json::json!({"notes": "谈话一"}),
            false,
        );
        add("interview", "v1", serde_json::json!({"notes": ""}), false);
        add(
            "interview",
            "v1",
            serde_json::json!({"notes": "已删除"}),
            true,
        );
        add(
            "interview",
            "v2",
            serde_json::json!({"notes": "二村谈话"}),
            false,
        );
        add(
            "meeting",
            "v1",
            serde_json::json!({"notes": "座谈会纪要"}),
            false,
        );
        for i in 2..=12 {
            add(
                "interview",
                "v1",
                serde_json::json!({"notes": format!("谈话{i}")}),
                false,
            );
        }
        let t = tallies(
            &conn,
            campaign,
            &Visibility::All,
            &crate::storage::Period::all(),
        )
        .unwrap();
        let notes = |code: &str| {
            t.villages_detail
                .iter()
                .find(|v| v.code == code)
                .unwrap()
                .notes
                .clone()
        };
        let mut v1 = vec!["座谈会纪要".to_string(), "谈话一".to_string()];
        v1.extend((2..=7).map(|i| format!("谈话{i}")));
        assert_eq!(notes("v1"), v1);
        assert_eq!(notes("v1").len(), NOTES_PER_VILLAGE);
        assert_eq!(notes("v2"), ["二村谈话"]);
        // A leader who sees only v2 gets v2's notes and no village v1.
        let v2_only = Visibility::Places {
            campaign: campaign.to_string(),
            places: vec!["v2".into()],
        };
        let t = tallies(&conn, campaign, &v2_only, &crate::storage::Period::all()).unwrap();
        assert_eq!(t.villages_detail.len(), 1);
        assert_eq!(t.villages_detail[0].notes, ["二村谈话"]);
        assert_eq!(t.villages_detail[0].interviews, 1);
    }

    #[tokio::test]
    async fn counting_a_kind_reads_an_index_unless_a_period_needs_the_rows() {
        let dir = tempfile::tempdir().unwrap();
        let storage = crate::storage::sqlite::SqliteStorage::open_for_admin(dir.path()).unwrap();
        crate::storage::Storage::close(&storage).await;
        let conn = Connection::open(dir.path().join("fieldsync.sqlite3")).unwrap();
        let mut c = Scoped {
            campaign: "c1",
            visible_campaign: Some("c1".into()),
            places: r#"["510100001"]"#.into(),
            approved_only: false,
            from: None,
            to: None,
        };
        let sql = |c: &Scoped<'_>| format!("SELECT count(*) {}", live("interview", c));
        let everything = plan(&conn, &sql(&c), &c);
        assert!(
            everything.contains("USING COVERING INDEX records_tally"),
            "{everything}"
        );
        // Grouping by short values reads the index too: they are in its `facts`.
        let grouped = format!(
            "SELECT {}, count(*) {} AND {} = 'team' GROUP BY 1",
            field("rating"),
            live("assessment", &c),
            field("target_type")
        );
        let grouped = plan(&conn, &grouped, &c);
        assert!(
            grouped.contains("USING COVERING INDEX records_tally"),
            "{grouped}"
        );
        // The approval rule reads the review's state from `facts`, in the index too.
        c.approved_only = true;
        let approved = plan(&conn, &sql(&c), &c);
        assert!(
            approved.contains("USING COVERING INDEX records_tally"),
            "{approved}"
        );
        c.approved_only = false;
        c.from = Some("2026-11-01".into());
        let period = plan(&conn, &sql(&c), &c);
        assert!(!period.contains("COVERING"), "{period}");
    }
}
