//! What the PostgreSQL tallies count of each place, kept between asks: its records per kind, its
//! interviews and its evaluation forms ([`PlaceTally`]). A place is read again only when its
//! version (`versions`) moved since it was kept in the [`PlaceCache`], so the first tallies after
//! a merge read the villages the merge wrote, not the whole campaign.
//!
//! Everything kept here is a function of one place's own rows (and of the ask's campaign,
//! approved-only switch and period, which are in the key): which places an asker sees is chosen
//! in the query that lists the places ([`list`]), so one kept place serves every asker
//! who sees it. The versions and the counts are read in the tallies' one snapshot, so a kept
//! count is always the count of the version it is kept with.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use deadpool_postgres::GenericClient;

use super::villages::{Cell, Cells, Interviews};
use super::{Scoped, field, live, seen, visible, yes};
use crate::storage::{Counts, StorageError};

/// What the tallies count of one place, among the visible records that count.
#[derive(Debug, Default)]
pub(super) struct PlaceTally {
    /// Kind → what the place holds of it.
    kinds: BTreeMap<String, Cell>,
    /// Meetings: the participants, summed.
    participants: f64,
    /// Interviews, meetings and site visits: the suggestions collected, summed.
    suggestions: f64,
    /// The distinct members interviewed here (the `interviewee` ids).
    members_interviewed: BTreeSet<String>,
    /// Interviews of anyone but a team member.
    other_interviews: u64,
    /// Everyone interviewed here, by the `interviewee` id, whatever their type.
    interviewees: BTreeSet<String>,
    /// The evaluation forms' team answers: answer → forms.
    team_satisfaction: Counts,
    /// The evaluation forms' member answers: member → answer → forms.
    member_satisfaction: BTreeMap<String, Counts>,
}

/// What one kept place is kept under: the ask's parts that change what a place counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    campaign: String,
    scope: String,
    approved_only: bool,
    from: Option<String>,
    to: Option<String>,
}

impl Key {
    fn of(s: &Scoped, scope: &str) -> Self {
        Key {
            campaign: s.campaign.clone(),
            scope: scope.to_string(),
            approved_only: s.approved_only,
            from: s.from.clone(),
            to: s.to.clone(),
        }
    }
}

/// How many places a server keeps at most (per campaign, switch and period asked); past it,
/// the cache starts again empty.
const KEPT: usize = 4096;

/// The places counted so far, each with the version it was counted at. One per storage: each
/// server keeps its own, and the versions in the database tell every server what moved.
#[derive(Debug, Default)]
pub struct PlaceCache {
    kept: Mutex<HashMap<Key, (i64, Arc<PlaceTally>)>>,
    /// Places read from their records so far.
    read: AtomicU64,
}

impl PlaceCache {
    /// How many places the tallies have read from their records since this cache was made (the
    /// others were kept from an earlier ask).
    pub fn places_read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    fn get(&self, key: &Key, version: i64) -> Option<Arc<PlaceTally>> {
        let kept = self.kept.lock().expect("place cache");
        kept.get(key)
            .filter(|(v, _)| *v == version)
            .map(|(_, t)| t.clone())
    }

    fn put(&self, key: Key, version: i64, tally: Arc<PlaceTally>) {
        let mut kept = self.kept.lock().expect("place cache");
        if kept.len() >= KEPT && !kept.contains_key(&key) {
            kept.clear();
        }
        kept.insert(key, (version, tally));
    }
}

/// The ask's visible places that hold records, each with what the tallies count of it.
pub(super) struct Places {
    places: BTreeMap<String, Arc<PlaceTally>>,
}

/// The campaign's places an ask sees that hold records (each place a record names, found in
/// the index `records_by_village` one place at a time), each with its version (`None`: written
/// by a server that does not move versions).
pub(super) async fn list<C: GenericClient>(
    c: &C,
    campaign: &str,
    v: &visible::Params,
) -> Result<Vec<(String, Option<i64>)>, StorageError> {
    Ok(c.query(
        &format!(
            "WITH RECURSIVE p (scope) AS (
                     (SELECT scope FROM records WHERE campaign = $1 ORDER BY scope LIMIT 1)
                     UNION ALL
                     SELECT (SELECT r.scope FROM records r
                             WHERE r.campaign = $1 AND r.scope > p.scope
                             ORDER BY r.scope LIMIT 1)
                     FROM p WHERE p.scope IS NOT NULL)
                 SELECT pv.scope, v.version
                 FROM (SELECT $1::text AS campaign, scope FROM p WHERE scope IS NOT NULL) pv
                 LEFT JOIN place_versions v ON v.campaign = pv.campaign AND v.scope = pv.scope
                 WHERE {}",
            visible::condition("pv", 2)
        ),
        &[&campaign, &v.all, &v.campaign, &v.places],
    )
    .await?
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect())
}

impl Places {
    /// The `listed` places ([`list`]): the kept ones whose version has not moved from `cache`,
    /// the others read from their records (and kept): their counts per kind on `c`, their
    /// interviews and evaluation forms on `other` at the same time (`c` again when there is no
    /// other connection).
    pub(super) async fn read<C: GenericClient>(
        c: &C,
        other: &C,
        s: &Scoped,
        cache: &PlaceCache,
        listed: Vec<(String, Option<i64>)>,
    ) -> Result<Self, StorageError> {
        let mut places = BTreeMap::new();
        let mut stale: Vec<(String, Option<i64>)> = Vec::new();
        for (scope, version) in listed {
            // A place that never had a version (its rows written before migration 5 by a server
            // that did not move versions, and not since) is read every time.
            match version.and_then(|v| cache.get(&Key::of(s, &scope), v)) {
                Some(t) => {
                    places.insert(scope, t);
                }
                None => stale.push((scope, version)),
            }
        }
        cache.read.fetch_add(stale.len() as u64, Ordering::Relaxed);
        if !stale.is_empty() {
            let scopes: Vec<&str> = stale.iter().map(|(scope, _)| scope.as_str()).collect();
            let mut fresh = read_places(c, other, s, &scopes).await?;
            for (scope, version) in stale {
                let t = Arc::new(fresh.remove(&scope).unwrap_or_default());
                if let Some(v) = version {
                    cache.put(Key::of(s, &scope), v, t.clone());
                }
                places.insert(scope, t);
            }
        }
        Ok(Places { places })
    }

    /// The counts per place and kind, and the two sums over the places (each rounded once, as a
    /// count of people is).
    pub(super) fn cells(&self) -> Cells {
        let mut cells = BTreeMap::new();
        let (mut participants, mut suggestions) = (0.0, 0.0);
        for (scope, t) in &self.places {
            for (kind, cell) in &t.kinds {
                cells.insert((scope.clone(), kind.clone()), cell.clone());
            }
            participants += t.participants;
            suggestions += t.suggestions;
        }
        Cells {
            cells,
            participants: participants.round() as i64,
            suggestions: suggestions.round() as i64,
        }
    }

    /// The interviews per place and everyone interviewed.
    pub(super) fn interviews(&self) -> Interviews {
        let mut out = Interviews::default();
        for (scope, t) in &self.places {
            if !t.members_interviewed.is_empty() {
                out.members
                    .insert(scope.clone(), t.members_interviewed.clone());
            }
            if t.other_interviews > 0 {
                out.others.insert(scope.clone(), t.other_interviews);
            }
            out.everyone.extend(t.interviewees.iter().cloned());
        }
        out
    }

    /// The evaluation forms' answers over the places: the team's, and each member's.
    pub(super) fn satisfaction(&self) -> (Counts, BTreeMap<String, Counts>) {
        let (mut team, mut members) = (Counts::new(), BTreeMap::<String, Counts>::new());
        for t in self.places.values() {
            for (answer, n) in &t.team_satisfaction {
                *team.entry(answer.clone()).or_default() += n;
            }
            for (member, answers) in &t.member_satisfaction {
                let to = members.entry(member.clone()).or_default();
                for (answer, n) in answers {
                    *to.entry(answer.clone()).or_default() += n;
                }
            }
        }
        (team, members)
    }
}

/// What the tallies count of each of `scopes`, from their records: three passes over the
/// places' rows (parameter `$8`), each grouped by place, the first on `c` while the other two
/// run on `other`.
async fn read_places<C: GenericClient>(
    c: &C,
    other: &C,
    s: &Scoped,
    scopes: &[&str],
) -> Result<HashMap<String, PlaceTally>, StorageError> {
    let mut params = s.params().to_vec();
    params.push(&scopes);
    let mut out: HashMap<String, PlaceTally> = HashMap::new();
    // Every count per kind, and the sums.
    let sum_of = |name: &str, filter: &str| {
        format!(
            "(sum(CASE WHEN jsonb_typeof(facts->'{name}') = 'number' \
             THEN (facts->>'{name}')::numeric END) FILTER (WHERE {filter}))::float8"
        )
    };
    let cells = format!(
        "SELECT scope, kind, count(*),
                {participants},
                {suggestions},
                count(*) FILTER (WHERE kind = 'prescreening' AND {integrity}),
                count(*) FILTER (WHERE kind = 'prescreening' AND {violation}),
                count(*) FILTER (WHERE kind = 'assessment' AND conflicts > 0),
                count(*) FILTER (WHERE kind = 'place' AND {level} = 'township'),
                count(*) FILTER (WHERE kind = 'place' AND {level} IN ('village', 'community'))
         FROM records
         WHERE campaign = $1 AND scope = ANY($8::text[]) AND NOT deleted AND {seen}
         GROUP BY scope, kind",
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
    // The interviews: members interviewed (distinct), anyone else's interviews, everyone.
    let (kind, who) = (field("interviewee_type"), field("interviewee"));
    let interviews = format!(
        "SELECT scope,
                array_agg(DISTINCT {who}) FILTER (WHERE {kind} = 'member' AND {who} IS NOT NULL),
                count(*) FILTER (WHERE {kind} IS DISTINCT FROM 'member'),
                array_agg(DISTINCT {who}) FILTER (WHERE {who} IS NOT NULL)
         {} AND scope = ANY($8::text[]) GROUP BY scope",
        live("interview"),
    );
    // The evaluation forms: the team's answer and each member's, as two grouping sets of one
    // query. A form counts once for its team answer whatever its member answers (`n = 1` is its
    // first member answer).
    let evaluations = format!(
        "SELECT GROUPING(je.key) = 1, scope, {rating}, je.key, je.value,
                count(*) FILTER (WHERE je.n IS NULL OR je.n = 1), count(je.key)
         FROM records LEFT JOIN LATERAL jsonb_each_text(CASE
             WHEN jsonb_typeof(records.facts->'member_ratings') = 'object'
             THEN records.facts->'member_ratings' ELSE '{{}}'::jsonb END)
             WITH ORDINALITY AS je(key, value, n) ON true
         WHERE records.campaign = $1 AND records.kind = 'evaluation'
           AND records.scope = ANY($8::text[]) AND NOT records.deleted AND {seen}
         GROUP BY GROUPING SETS ((scope, {rating}), (scope, je.key, je.value))",
        rating = field("team_rating"),
        seen = seen("records"),
    );
    let (kinds, by_interview, by_evaluation) = tokio::try_join!(
        c.query(&cells, &params),
        other.query(&interviews, &params),
        other.query(&evaluations, &params)
    )?;
    for r in kinds {
        let number = |i: usize| r.get::<_, i64>(i) as u64;
        let t = out.entry(r.get(0)).or_default();
        t.participants += r.get::<_, Option<f64>>(3).unwrap_or(0.0);
        t.suggestions += r.get::<_, Option<f64>>(4).unwrap_or(0.0);
        t.kinds.insert(
            r.get(1),
            Cell {
                n: number(2),
                integrity_issues: number(5),
                violations: number(6),
                conflicted: number(7),
                townships: number(8),
                villages: number(9),
            },
        );
    }
    for r in by_interview {
        let t = out.entry(r.get(0)).or_default();
        t.members_interviewed
            .extend(r.get::<_, Option<Vec<String>>>(1).unwrap_or_default());
        t.other_interviews = r.get::<_, i64>(2) as u64;
        t.interviewees
            .extend(r.get::<_, Option<Vec<String>>>(3).unwrap_or_default());
    }
    for r in by_evaluation {
        let n = |i: usize| r.get::<_, i64>(i) as u64;
        let t = out.entry(r.get(1)).or_default();
        if r.get::<_, bool>(0) {
            if let Some(rating) = r.get::<_, Option<String>>(2) {
                *t.team_satisfaction.entry(rating).or_default() += n(5);
            }
        } else if let (Some(member), Some(answer)) =
            (r.get::<_, Option<String>>(3), r.get::<_, Option<String>>(4))
        {
            *t.member_satisfaction
                .entry(member)
                .or_default()
                .entry(answer)
                .or_default() += n(6);
        }
    }
    Ok(out)
}
