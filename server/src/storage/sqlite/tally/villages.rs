//! Each village's numbers in a campaign's tallies (counts per kind, members interviewed, the
//! team's rating and summary, findings, the notes the draft report quotes), and the campaign's
//! interviews read once for the numbers of both levels.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::Connection;

use super::{Scoped, field, live, long_field, long_text_field, seen};
use crate::storage::{NOTES_PER_VILLAGE, StorageError, VillageTally};

/// The interviews of a campaign read once for every number drawn from them: per place, the
/// members interviewed (by id) and the interviews of anyone else; and the suggestions collected.
#[derive(Default)]
pub(super) struct Interviews {
    /// Place → distinct members interviewed there (as SQL values, keyed like `count(DISTINCT)`).
    pub(super) members: BTreeMap<String, BTreeSet<String>>,
    /// Place → interviews of anyone but a team member.
    pub(super) others: BTreeMap<String, u64>,
    /// The interviews' `suggestions_collected`, summed.
    pub(super) suggestions: i64,
}

impl Interviews {
    pub(super) fn read(conn: &Connection, c: &Scoped<'_>) -> Result<Self, StorageError> {
        let member = format!("{} IS 'member'", field("interviewee_type"));
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT scope, {member}, CASE WHEN {member} THEN {} END, count(*), sum({})
             {} GROUP BY 1, 2, 3",
            field("interviewee"),
            field("suggestions_collected"),
            live("interview", c)
        ))?;
        let mut out = Interviews::default();
        let mut rows = stmt.query(c.params())?;
        while let Some(r) = rows.next()? {
            let scope: String = r.get(0)?;
            let (is_member, n): (bool, i64) = (r.get(1)?, r.get(3)?);
            out.suggestions += r.get::<_, Option<i64>>(4)?.unwrap_or(0);
            if !is_member {
                *out.others.entry(scope).or_default() += n as u64;
                continue;
            }
            // count(DISTINCT) tells 1 from '1', not 1 from 1.0, and skips NULL: so does the key.
            use rusqlite::types::ValueRef;
            let who = match r.get_ref(2)? {
                ValueRef::Null => continue,
                ValueRef::Integer(i) => format!("i{i}"),
                ValueRef::Real(f) if f.fract() == 0.0 && f.abs() < 9e15 => format!("i{}", f as i64),
                ValueRef::Real(f) => format!("r{f}"),
                ValueRef::Text(t) => format!("t{}", String::from_utf8_lossy(t)),
                ValueRef::Blob(b) => format!("b{}", hex::encode(b)),
            };
            out.members.entry(scope).or_default().insert(who);
        }
        Ok(out)
    }

    /// Members interviewed at least once, anywhere.
    pub(super) fn members_interviewed(&self) -> u64 {
        let all: BTreeSet<&String> = self.members.values().flatten().collect();
        all.len() as u64
    }
}

pub(super) fn villages(
    conn: &Connection,
    c: &Scoped<'_>,
    interviews: &Interviews,
) -> Result<Vec<VillageTally>, StorageError> {
    let mut out: BTreeMap<String, VillageTally> = BTreeMap::new();
    {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {}, {} {} AND {} IN ('village', 'community')",
            long_field("code"),
            long_field("name"),
            live("place", c),
            field("level")
        ))?;
        for row in stmt.query_map(c.params(), |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })? {
            let (code, name) = row?;
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
    // Only the kinds counted per village: with every record counting, from `records_tally`
    // alone.
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT scope, kind, count(*) FROM records WHERE campaign = ?1
         AND kind IN ('member', 'interview', 'meeting', 'questionnaire', 'evaluation', 'finding',
                      'document_review')
         AND deleted = 0 AND {}
         GROUP BY kind, scope",
        seen("records", c)
    ))?;
    for row in stmt.query_map(c.params(), |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })? {
        let (scope, kind, n) = row?;
        if let Some(v) = out.get_mut(&scope) {
            let n = n as u64;
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
    for (scope, v) in out.iter_mut() {
        v.members_interviewed = interviews.members.get(scope).map_or(0, |m| m.len() as u64);
        v.villager_interviews = interviews.others.get(scope).copied().unwrap_or(0);
    }
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT scope, {}, {} {} AND {} = 'team' AND conflicts = 0",
        field("rating"),
        long_field("summary"),
        live("assessment", c),
        field("target_type")
    ))?;
    for row in stmt.query_map(c.params(), |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<String>>(1)?,
            r.get::<_, Option<String>>(2)?,
        ))
    })? {
        let (scope, rating, summary) = row?;
        if let Some(v) = out.get_mut(&scope) {
            v.team_rating = rating;
            v.summary = summary;
        }
    }
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT scope, {} {} ORDER BY first_seq",
        long_field("text"),
        live("finding", c)
    ))?;
    for row in stmt.query_map(c.params(), |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
    })? {
        let (scope, text) = row?;
        if let (Some(v), Some(text)) = (out.get_mut(&scope), text) {
            v.problems.push(text);
        }
    }
    // Each village's first meeting minutes, then interview notes, up to NOTES_PER_VILLAGE:
    // read in `records_by_place` order (place, kind, first change), stopping at the last one
    // needed instead of reading every note of the campaign.
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {notes} FROM records
         WHERE campaign = ?1 AND scope = ?7 AND kind = ?8 AND deleted = 0 AND {}
           AND length({notes}) > 0
         ORDER BY first_seq LIMIT ?9",
        seen("records", c),
        notes = long_text_field("notes"),
    ))?;
    for (code, v) in out.iter_mut() {
        for kind in ["meeting", "interview"] {
            let wanted = NOTES_PER_VILLAGE.saturating_sub(v.notes.len());
            if wanted == 0 {
                break;
            }
            let [p1, p2, p3, p4, p5, p6] = c.params();
            let rows = stmt.query_map(
                [p1, p2, p3, p4, p5, p6, &code, &kind, &(wanted as i64)],
                |r| r.get::<_, String>(0),
            )?;
            for text in rows {
                v.notes.push(text?);
            }
        }
    }
    Ok(out.into_values().collect())
}
