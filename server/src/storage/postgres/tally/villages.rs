//! How the PostgreSQL tallies put together what they counted per place ([`Cells`],
//! [`Interviews`], from `places`) and the rest of the tallies ([`SecondHalf`]): the levels of the
//! members and of those interviewed, and each village's own numbers (its team's rating and
//! summary, findings, and the notes the draft report quotes).

use std::collections::{BTreeMap, BTreeSet};

use deadpool_postgres::GenericClient;

use super::{NOTED, Scoped, by_team_level, field, live, long_field, seen};
use crate::storage::{Counts, NOTES_PER_VILLAGE, StorageError, Tallies, VillageTally};

/// What one place holds of one kind, among the visible records that count.
#[derive(Debug, Default, Clone)]
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

/// The campaign's visible records that count per place and kind → [`Cell`], and the two sums
/// over the campaign (each rounded once, as a count of people is).
pub(super) struct Cells {
    pub(super) cells: BTreeMap<(String, String), Cell>,
    /// Meetings: the participants, summed.
    pub(super) participants: i64,
    /// Interviews, meetings and site visits: the suggestions collected, summed.
    pub(super) suggestions: i64,
}

impl Cells {
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

/// The campaign's interviews: the members interviewed, per place and anywhere, and the
/// interviews of anyone else per place.
#[derive(Default)]
pub(super) struct Interviews {
    /// Place → distinct members interviewed there (the `interviewee` ids, as `count(DISTINCT)`
    /// tells them apart).
    pub(super) members: BTreeMap<String, BTreeSet<String>>,
    /// Place → interviews of anyone but a team member.
    pub(super) others: BTreeMap<String, u64>,
    /// Everyone interviewed, by the `interviewee` id, whatever their type.
    pub(super) everyone: BTreeSet<String>,
}

impl Interviews {
    /// Members interviewed at least once, anywhere.
    pub(super) fn members_interviewed(&self) -> u64 {
        let all: BTreeSet<&String> = self.members.values().flatten().collect();
        all.len() as u64
    }
}

/// The rest of the tallies, read beside the places: each village's own rows and the levels of
/// the members; [`SecondHalf::complete`] puts them together with the places' counts.
pub(super) struct SecondHalf {
    villages: BTreeMap<String, VillageTally>,
    members_by_level: Counts,
}

impl SecondHalf {
    pub(super) async fn read<C: GenericClient>(c: &C, s: &Scoped) -> Result<Self, StorageError> {
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
        Ok(SecondHalf {
            villages: villages(c, s).await?,
            members_by_level,
        })
    }

    /// Adds this half to the tallies: the places' `cells` and `interviews`, and the levels of
    /// those interviewed.
    pub(super) fn complete(
        self,
        t: &mut Tallies,
        cells: &Cells,
        interviews: &Interviews,
        interviewed_by_level: Counts,
    ) {
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
        for (code, v) in villages.iter_mut() {
            v.members_interviewed = interviews.members.get(code).map_or(0, |m| m.len() as u64);
            v.villager_interviews = interviews.others.get(code).copied().unwrap_or(0);
        }
        t.members_interviewed = interviews.members_interviewed();
        t.villages_detail = villages.into_values().collect();
        t.members_by_level = self.members_by_level;
        t.interviewed_by_level = interviewed_by_level;
    }
}

/// Every record an interview names (`everyone`), per level of its team: the interviewees are
/// known, so this is a small join whatever the number of interviews.
pub(super) async fn interviewed_by_level<C: GenericClient>(
    c: &C,
    everyone: &BTreeSet<String>,
) -> Result<Counts, StorageError> {
    let everyone: Vec<&String> = everyone.iter().collect();
    let mut out = Counts::new();
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
            out.insert(level, r.get::<_, i64>(1) as u64);
        }
    }
    Ok(out)
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
