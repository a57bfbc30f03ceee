//! The PostgreSQL tallies' passes over many records: one over the whole campaign counting per
//! place and kind ([`Cells`]), and the second half of the tallies ([`SecondHalf`]): the
//! interviews, the evaluation forms, the levels of the members interviewed, and each village's
//! numbers (its team's rating and summary, findings, and the notes the draft report quotes).

use std::collections::{BTreeMap, BTreeSet};

use deadpool_postgres::GenericClient;

use super::{NOTED, Scoped, by_team_level, field, live, long_field, seen, sum_of, yes};
use crate::storage::{Counts, NOTES_PER_VILLAGE, StorageError, Tallies, VillageTally};

/// What one place holds of one kind, among the visible records that count.
#[derive(Debug, Default)]
pub(super) struct Cell {
    /// Records.
    pub(super) n: u64,
    /// Prescreenings finding an integrity issue.
    pub(super) integrity_issues: u64,
    /// Prescreenings finding a violation.
    pub(super) violations: u64,
    /// Assessments with conflicting values.
    pub(super) conflicted: u64,
    /// Places that are townships.
    pub(super) townships: u64,
    /// Places that are villages or communities.
    pub(super) villages: u64,
}

/// The campaign's visible records that count, read once (through `records_tally`) for every
/// number that is a count or a sum per kind: (place, kind) → [`Cell`], and the two sums over
/// the campaign (each summed as `numeric` and rounded once, as a count of people is).
pub(super) struct Cells {
    pub(super) cells: BTreeMap<(String, String), Cell>,
    /// Meetings: the participants, summed.
    participants: i64,
    /// Interviews, meetings and site visits: the suggestions collected, summed.
    suggestions: i64,
}

impl Cells {
    pub(super) async fn read<C: GenericClient>(c: &C, s: &Scoped) -> Result<Self, StorageError> {
        let sql = format!(
            "SELECT GROUPING(scope, kind) = 3, scope, kind, count(*),
                    {participants},
                    {suggestions},
                    count(*) FILTER (WHERE kind = 'prescreening' AND {integrity}),
                    count(*) FILTER (WHERE kind = 'prescreening' AND {violation}),
                    count(*) FILTER (WHERE kind = 'assessment' AND conflicts > 0),
                    count(*) FILTER (WHERE kind = 'place' AND {level} = 'township'),
                    count(*) FILTER (WHERE kind = 'place' AND {level} IN ('village', 'community'))
             FROM records WHERE campaign = $1 AND NOT deleted AND {seen}
             GROUP BY GROUPING SETS ((scope, kind), ())",
            participants = sum_of("participants", "kind = 'meeting'"),
            suggestions = sum_of(
                "suggestions_collected",
                "kind IN ('interview', 'meeting', 'site_visit')"
            ),
            integrity = yes("integrity_issue"),
            violation = yes("violation"),
            level = field("level"),
            seen = seen("records"),
        );
        let mut out = Cells {
            cells: BTreeMap::new(),
            participants: 0,
            suggestions: 0,
        };
        for r in c.query(&sql, &s.params()).await? {
            let number = |i: usize| r.get::<_, Option<i64>>(i).unwrap_or(0);
            if r.get::<_, bool>(0) {
                // The campaign's row: its sums only.
                (out.participants, out.suggestions) = (number(4), number(5));
                continue;
            }
            out.cells.insert(
                (r.get(1), r.get(2)),
                Cell {
                    n: number(3) as u64,
                    integrity_issues: number(6) as u64,
                    violations: number(7) as u64,
                    conflicted: number(8) as u64,
                    townships: number(9) as u64,
                    villages: number(10) as u64,
                },
            );
        }
        Ok(out)
    }

    /// One number summed over every cell of `kind`.
    pub(super) fn sum(&self, kind: &str, f: impl Fn(&Cell) -> u64) -> u64 {
        self.cells
            .iter()
            .filter(|((_, k), _)| k == kind)
            .map(|(_, cell)| f(cell))
            .sum()
    }

    /// Records of `kind`.
    pub(super) fn count(&self, kind: &str) -> u64 {
        self.sum(kind, |c| c.n)
    }

    /// Writes the campaign's counts and sums per kind into `t`.
    pub(super) fn complete(&self, t: &mut Tallies) {
        t.townships = self.sum("place", |c| c.townships);
        t.villages = self.sum("place", |c| c.villages);
        t.work_groups = self.count("work_group");
        t.members = self.count("member");
        t.interviews = self.count("interview");
        t.meetings = self.count("meeting");
        t.meeting_participants = self.participants;
        t.suggestions = self.suggestions;
        t.questionnaires = self.count("questionnaire");
        t.evaluations = self.count("evaluation");
        t.document_reviews = self.count("document_review");
        t.prescreenings = self.count("prescreening");
        t.prescreening_integrity_issues = self.sum("prescreening", |c| c.integrity_issues);
        t.prescreening_violations = self.sum("prescreening", |c| c.violations);
        t.findings = self.count("finding");
        t.conflicted_assessments = self.sum("assessment", |c| c.conflicted);
    }
}

/// The campaign's interviews read once for the members interviewed, per place and anywhere, and
/// the interviews of anyone else per place.
#[derive(Default)]
pub(super) struct Interviews {
    /// Place → distinct members interviewed there (the `interviewee` ids, as `count(DISTINCT)`
    /// tells them apart).
    members: BTreeMap<String, BTreeSet<String>>,
    /// Place → interviews of anyone but a team member.
    others: BTreeMap<String, u64>,
    /// Everyone interviewed, by the `interviewee` id, whatever their type.
    everyone: BTreeSet<String>,
}

impl Interviews {
    pub(super) async fn read<C: GenericClient>(c: &C, s: &Scoped) -> Result<Self, StorageError> {
        let (kind, who) = (field("interviewee_type"), field("interviewee"));
        let sql = format!(
            "SELECT scope,
                    array_agg(DISTINCT {who}) FILTER (WHERE {kind} = 'member' AND {who} IS NOT NULL),
                    count(*) FILTER (WHERE {kind} IS DISTINCT FROM 'member'),
                    array_agg(DISTINCT {who}) FILTER (WHERE {who} IS NOT NULL)
             {} GROUP BY scope",
            live("interview"),
        );
        let mut out = Interviews::default();
        for r in c.query(&sql, &s.params()).await? {
            let scope: String = r.get(0);
            if let Some(members) = r.get::<_, Option<Vec<String>>>(1) {
                out.members
                    .entry(scope.clone())
                    .or_default()
                    .extend(members);
            }
            out.others.insert(scope, r.get::<_, i64>(2) as u64);
            out.everyone
                .extend(r.get::<_, Option<Vec<String>>>(3).unwrap_or_default());
        }
        Ok(out)
    }

    /// Members interviewed at least once, anywhere.
    pub(super) fn members_interviewed(&self) -> u64 {
        let all: BTreeSet<&String> = self.members.values().flatten().collect();
        all.len() as u64
    }
}

/// The second half of the tallies: what is read from the interviews and the evaluation forms,
/// and each village's own rows; [`SecondHalf::complete`] adds it to the first.
pub(super) struct SecondHalf {
    interviews: Interviews,
    team_satisfaction: Counts,
    member_satisfaction: BTreeMap<String, Counts>,
    villages: BTreeMap<String, VillageTally>,
    members_by_level: Counts,
    interviewed_by_level: Counts,
}

impl SecondHalf {
    pub(super) async fn read<C: GenericClient>(c: &C, s: &Scoped) -> Result<Self, StorageError> {
        let interviews = Interviews::read(c, s).await?;
        let (team_satisfaction, member_satisfaction) = evaluations(c, s).await?;
        let members_by_level = by_team_level(
            c,
            s,
            "FROM records m",
            format!(
                "m.campaign = $1 AND m.kind = 'member' AND NOT m.deleted AND {}",
                seen("m")
            ),
        )
        .await?;
        // Every record an interview names, per level of its team: the interviewees are known.
        let everyone: Vec<&String> = interviews.everyone.iter().collect();
        let mut interviewed_by_level = Counts::new();
        for r in c
            .query(
                "SELECT t.facts->>'level', count(DISTINCT m.id) FROM records m
                 JOIN records t ON t.id = (m.facts->>'team')
                 WHERE m.id = ANY($1) GROUP BY 1",
                &[&everyone],
            )
            .await?
        {
            if let Some(level) = r.get::<_, Option<String>>(0) {
                interviewed_by_level.insert(level, r.get::<_, i64>(1) as u64);
            }
        }
        Ok(SecondHalf {
            villages: villages(c, s).await?,
            interviews,
            team_satisfaction,
            member_satisfaction,
            members_by_level,
            interviewed_by_level,
        })
    }

    /// Adds this half to the tallies of the first, whose counts per place and kind are `cells`.
    pub(super) fn complete(self, t: &mut Tallies, cells: &Cells) {
        let mut villages = self.villages;
        for ((scope, kind), cell) in &cells.cells {
            if let Some(v) = villages.get_mut(scope) {
                match kind.as_str() {
                    "member" => v.members = cell.n,
                    "interview" => v.interviews = cell.n,
                    "meeting" => v.meetings = cell.n,
                    "questionnaire" => v.questionnaires = cell.n,
                    "evaluation" => v.evaluations = cell.n,
                    "finding" => v.findings = cell.n,
                    "document_review" => v.document_reviews = cell.n,
                    _ => {}
                }
            }
        }
        let interviews = &self.interviews;
        for (code, v) in villages.iter_mut() {
            v.members_interviewed = interviews.members.get(code).map_or(0, |m| m.len() as u64);
            v.villager_interviews = interviews.others.get(code).copied().unwrap_or(0);
        }
        t.members_interviewed = interviews.members_interviewed();
        t.villages_detail = villages.into_values().collect();
        t.team_satisfaction = self.team_satisfaction;
        t.member_satisfaction = self.member_satisfaction;
        t.members_by_level = self.members_by_level;
        t.interviewed_by_level = self.interviewed_by_level;
    }
}

/// The evaluation forms read once: the team's satisfaction (records per answer) and each
/// member's (member → answer → records), as two grouping sets of one query. A form counts once
/// for its team answer whatever its member answers (`n = 1` is its first member answer).
async fn evaluations<C: GenericClient>(
    c: &C,
    s: &Scoped,
) -> Result<(Counts, BTreeMap<String, Counts>), StorageError> {
    let (mut team, mut members) = (Counts::new(), BTreeMap::<String, Counts>::new());
    for r in c
        .query(
            &format!(
                "SELECT GROUPING(je.key) = 1, {rating}, je.key, je.value,
                        count(*) FILTER (WHERE je.n IS NULL OR je.n = 1), count(je.key)
                 FROM records LEFT JOIN LATERAL jsonb_each_text(CASE
                     WHEN jsonb_typeof(records.facts->'member_ratings') = 'object'
                     THEN records.facts->'member_ratings' ELSE '{{}}'::jsonb END)
                     WITH ORDINALITY AS je(key, value, n) ON true
                 WHERE records.campaign = $1 AND records.kind = 'evaluation'
                   AND NOT records.deleted AND {seen}
                 GROUP BY GROUPING SETS (({rating}), (je.key, je.value))",
                rating = field("team_rating"),
                seen = seen("records"),
            ),
            &s.params(),
        )
        .await?
    {
        let (for_team, n) = (r.get::<_, bool>(0), |i: usize| r.get::<_, i64>(i) as u64);
        if for_team {
            if let Some(rating) = r.get::<_, Option<String>>(1) {
                *team.entry(rating).or_default() += n(4);
            }
        } else if let (Some(member), Some(answer)) =
            (r.get::<_, Option<String>>(2), r.get::<_, Option<String>>(3))
        {
            *members
                .entry(member)
                .or_default()
                .entry(answer)
                .or_default() += n(5);
        }
    }
    Ok((team, members))
}

/// Each village's own rows: its name, its team's rating and summary, its findings' texts and
/// the notes the draft quotes (the counts come from [`Cells`] and [`Interviews`]).
async fn villages<C: GenericClient>(
    c: &C,
    s: &Scoped,
) -> Result<BTreeMap<String, VillageTally>, StorageError> {
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
    // Each village's first meeting minutes, then interview notes: the first few rows of
    // `records_noted` under the village, whose order is the quoting order and whose condition
    // is NOTED word for word (so the planner proves the index covers the query).
    let codes: Vec<String> = out.keys().cloned().collect();
    let mut params = s.params().to_vec();
    params.push(&codes);
    for r in c
        .query(
            &format!(
                "SELECT v.code, n.notes
                 FROM unnest($8::text[]) AS v(code),
                 LATERAL (SELECT fields->>'notes' AS notes, kind = 'meeting' AS minutes, first_seq
                          FROM records
                          WHERE campaign = $1 AND scope = v.code AND {NOTED} AND {}
                          ORDER BY (kind = 'meeting') DESC, first_seq
                          LIMIT {NOTES_PER_VILLAGE}) AS n
                 ORDER BY v.code, n.minutes DESC, n.first_seq",
                seen("records")
            ),
            &params,
        )
        .await?
    {
        if let Some(v) = out.get_mut(&r.get::<_, String>(0)) {
            v.notes.push(r.get(1));
        }
    }
    Ok(out)
}
