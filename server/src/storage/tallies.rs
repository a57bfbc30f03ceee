//! The numbers the department reads, as the storage returns them: a campaign's tallies (every
//! `*` of the seed reports) and full-text search hits. Plain values; computing them is each
//! storage's job (SQL), presenting them is `report`'s.

use std::collections::BTreeMap;

use serde::Serialize;

pub use fieldsync_protocol::template::Targets;
use uuid::Uuid;

/// Counts per value (a rating, a category, a status).
pub type Counts = BTreeMap<String, u64>;

/// The numbers of one village or community.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VillageTally {
    /// Place code.
    pub code: String,
    /// Place name.
    pub name: String,
    /// Team members.
    pub members: u64,
    /// Interviews (person-times).
    pub interviews: u64,
    /// Meetings.
    pub meetings: u64,
    /// Questionnaires.
    pub questionnaires: u64,
    /// Evaluation forms.
    pub evaluations: u64,
    /// Findings.
    pub findings: u64,
    /// The team's rating (好/正常/较差 as `good`/`normal`/`poor`), when assessed without conflict.
    pub team_rating: Option<String>,
    /// The team assessment's summary (运行情况), when written.
    pub summary: Option<String>,
    /// The findings' texts.
    pub problems: Vec<String>,
    /// Team members interviewed at least once.
    pub members_interviewed: u64,
    /// Interviews of anyone but a team member (villagers, party members, …).
    pub villager_interviews: u64,
    /// Document reviews.
    pub document_reviews: u64,
    /// Up to [`NOTES_PER_VILLAGE`] meeting minutes and interview notes (minutes first, then
    /// oldest first), from which the draft report writes a village's paragraph when its team
    /// assessment has no summary. Never serialized: the notes are confidential and only the
    /// report reads them.
    #[serde(skip)]
    pub notes: Vec<String>,
}

/// The days whose records count (统计时段): `from..=to`, either end open, as `YYYY-MM-DD`.
///
/// A record's day is its own `date` field where its form has one (谈话日期, 会议日期…), else the
/// day (Beijing time) it first reached the server. The department's reference data (places,
/// teams, members, work groups, the campaign) counts whatever the period. Each storage writes
/// this rule once in its SQL, for the tallies and for record listings alike.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
pub struct Period {
    /// The first day that counts.
    #[serde(default, deserialize_with = "blank_is_none")]
    pub from: Option<String>,
    /// The last day that counts.
    #[serde(default, deserialize_with = "blank_is_none")]
    pub to: Option<String>,
}

pub(crate) fn blank_is_none<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    let s: Option<String> = serde::Deserialize::deserialize(d)?;
    Ok(s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()))
}

impl Period {
    /// Every day.
    pub fn all() -> Self {
        Period::default()
    }

    /// Whether every day counts.
    pub fn is_all(&self) -> bool {
        self.from.is_none() && self.to.is_none()
    }

    /// The period checked: each end a real date, the first not after the last. The error says
    /// what was wrong, in Chinese and English.
    pub fn checked(self) -> Result<Self, String> {
        for (end, zh, en) in [
            (&self.from, "起始日期", "start"),
            (&self.to, "截止日期", "end"),
        ] {
            if let Some(d) = end
                && fieldsync_protocol::dates::days_from_civil(d).is_none()
            {
                return Err(format!(
                    "统计时段的{zh}“{d}”不是日期，请写成 2026-11-01 这样 / the period's {en} \
                     {d:?} is not a date: write it as 2026-11-01"
                ));
            }
        }
        if let (Some(f), Some(t)) = (&self.from, &self.to)
            && f > t
        {
            return Err(format!(
                "统计时段的起始日期 {f} 晚于截止日期 {t} / the period starts ({f}) after it ends ({t})"
            ));
        }
        Ok(self)
    }

    /// The period in words: `2026-11-01 至 2026-11-30`, `2026-11-01 起`, `至 2026-11-30`, or
    /// `None` for every day.
    pub fn text(&self, en: bool) -> Option<String> {
        match (&self.from, &self.to, en) {
            (None, None, _) => None,
            (Some(f), Some(t), false) => Some(format!("{f} 至 {t}")),
            (Some(f), Some(t), true) => Some(format!("{f} to {t}")),
            (Some(f), None, false) => Some(format!("{f} 起")),
            (Some(f), None, true) => Some(format!("from {f}")),
            (None, Some(t), false) => Some(format!("至 {t}")),
            (None, Some(t), true) => Some(format!("until {t}")),
        }
    }

    /// `from=…&to=…` for links that keep the period (empty for every day).
    pub fn query(&self) -> String {
        let mut parts = Vec::new();
        if let Some(f) = &self.from {
            parts.push(format!("from={f}"));
        }
        if let Some(t) = &self.to {
            parts.push(format!("to={t}"));
        }
        parts.join("&")
    }
}

/// How many notes per village the tallies carry for the draft report.
pub const NOTES_PER_VILLAGE: usize = 8;

/// Every number of a campaign the department's report needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tallies {
    /// The campaign.
    pub campaign: Uuid,
    /// The campaign's name, if its record is known.
    pub name: Option<String>,
    /// The days whose records are counted (every day unless the asker chose a period).
    pub period: Period,
    /// What each village should reach: the campaign record's targets, and where it sets none
    /// the template's `[targets]` ([`Targets::or_defaults`], applied by `AppState::tallies`).
    pub targets: Targets,
    /// Whether the campaign counts approved records only (its `count_approved_only`); then
    /// every number here counts only records whose review is 已通过 (reference data always
    /// counts). The report says which.
    pub approved_only: bool,
    /// Townships.
    pub townships: u64,
    /// Villages and communities.
    pub villages: u64,
    /// Work groups.
    pub work_groups: u64,
    /// Team members.
    pub members: u64,
    /// Members interviewed at least once (谈话覆盖人数).
    pub members_interviewed: u64,
    /// Interviews (谈心谈话人次).
    pub interviews: u64,
    /// Meetings held (召开会议场次).
    pub meetings: u64,
    /// People at those meetings.
    pub meeting_participants: i64,
    /// Problems and suggestions collected (收集问题建议条数).
    pub suggestions: i64,
    /// Questionnaires collected.
    pub questionnaires: u64,
    /// Evaluation forms collected.
    pub evaluations: u64,
    /// Document reviews.
    pub document_reviews: u64,
    /// Pre-screening entries, and those with integrity issues or violations.
    pub prescreenings: u64,
    /// Pre-screening entries with an integrity issue.
    pub prescreening_integrity_issues: u64,
    /// Pre-screening entries with a violation.
    pub prescreening_violations: u64,
    /// Findings.
    pub findings: u64,
    /// Findings per level (township_team, village_team).
    pub findings_by_level: Counts,
    /// Findings per category.
    pub findings_by_category: Counts,
    /// Findings marked as violations, per level.
    pub violations_by_level: Counts,
    /// Team assessments per rating (conflicted ones excluded).
    pub team_ratings: Counts,
    /// Member assessments per rating (conflicted ones excluded).
    pub member_ratings: Counts,
    /// Assessments whose rating is in conflict (for a reviewer).
    pub conflicted_assessments: u64,
    /// Star ratings per number of stars.
    pub star_ratings: Counts,
    /// Rectifications per status.
    pub rectifications: Counts,
    /// Rectifications past their deadline and not done.
    pub overdue_rectifications: u64,
    /// Team satisfaction from the evaluation forms, per answer.
    pub team_satisfaction: Counts,
    /// Member satisfaction from the evaluation forms: member id → answer → count.
    pub member_satisfaction: BTreeMap<String, Counts>,
    /// Per village, in code order.
    pub villages_detail: Vec<VillageTally>,
    /// The campaign's template (`midterm`, `lookback`, …), which picks the report's structure.
    pub template: Option<String>,
    /// Members per level of their team (`township_team`, `village_team`).
    pub members_by_level: Counts,
    /// Members interviewed at least once, per level of their team.
    pub interviewed_by_level: Counts,
    /// Members with a violation found by the joint review (pre-screening), per level.
    pub violators_by_level: Counts,
    /// Team ratings per level of the team (conflicted ones excluded): level → rating → count.
    pub team_ratings_by_level: BTreeMap<String, Counts>,
    /// Township teams on the five checks of seed 000: check field → rating → count.
    pub township_checks: BTreeMap<String, Counts>,
}

/// A record found by full-text search.
#[derive(Debug, Clone, Serialize)]
pub struct SearchHit {
    /// The record.
    pub id: Uuid,
    /// Its kind.
    pub kind: String,
    /// Its campaign.
    pub campaign: Uuid,
    /// Where it belongs.
    pub scope: String,
    /// The words around the match.
    pub snippet: String,
}

/// The most words one search matches at once.
pub const MAX_SEARCH_WORDS: usize = 8;

/// What to search for: records whose text contains every one of `words`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Search {
    /// The words, each to be found (see [`search_words`]).
    pub words: Vec<String>,
    /// Only this campaign.
    pub campaign: Option<Uuid>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only this village (place code).
    pub scope: Option<String>,
    /// At most this many hits.
    pub limit: usize,
}

impl Search {
    /// A search for the words of `q` (see [`search_words`]), at most `limit` hits.
    pub fn new(q: &str, limit: usize) -> Self {
        Search {
            words: search_words(q),
            limit,
            ..Default::default()
        }
    }
}

/// The words of a typed query: separated by spaces (full-width spaces too), control characters
/// dropped, each once, at most [`MAX_SEARCH_WORDS`]. “集体 经济” is two words, each to be found.
pub fn search_words(q: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for word in q.split(char::is_whitespace) {
        let word: String = word.chars().filter(|c| !c.is_control()).collect();
        if !word.is_empty() && !words.contains(&word) && words.len() < MAX_SEARCH_WORDS {
            words.push(word);
        }
    }
    words
}

/// Where `needle` first occurs in `chars`, ASCII letters compared without case (as the search
/// matches them).
fn find_chars(chars: &[char], needle: &[char]) -> Option<usize> {
    if needle.is_empty() || needle.len() > chars.len() {
        return None;
    }
    (0..=chars.len() - needle.len()).find(|&i| {
        chars[i..i + needle.len()]
            .iter()
            .zip(needle)
            .all(|(a, b)| a.eq_ignore_ascii_case(b))
    })
}

/// Up to 20 characters either side of the first match of the first word found.
pub(crate) fn snippet(text: &str, words: &[String]) -> String {
    let chars: Vec<char> = text.chars().collect();
    let (at, needle_len) = words
        .iter()
        .find_map(|w| {
            let needle: Vec<char> = w.chars().collect();
            find_chars(&chars, &needle).map(|at| (at, needle.len()))
        })
        .unwrap_or((0, 0));
    let start = at.saturating_sub(20);
    let end = (at + needle_len + 20).min(chars.len());
    let mut s: String = chars[start..end].iter().collect();
    if start > 0 {
        s.insert(0, '…');
    }
    if end < chars.len() {
        s.push('…');
    }
    s.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_are_cut_by_characters() {
        let text = "甲".repeat(30) + "集体经济" + &"乙".repeat(30);
        let s = snippet(&text, &["集体经济".to_string()]);
        assert_eq!(
            s,
            format!("…{}集体经济{}…", "甲".repeat(20), "乙".repeat(20))
        );
        // With several words, around the first one found; ASCII letters without case.
        let text = "甲".repeat(30) + "WiFi 覆盖" + &"乙".repeat(30);
        let words = search_words("没有 wifi");
        assert_eq!(
            snippet(&text, &words),
            format!("…{}WiFi 覆盖{}…", "甲".repeat(20), "乙".repeat(17))
        );
    }

    #[test]
    fn words_are_split_by_any_space_once_each() {
        assert_eq!(search_words(" 集体　经济  集体 "), vec!["集体", "经济"]);
        assert_eq!(search_words("a\u{0}b"), vec!["ab"]);
        assert_eq!(search_words(&"字 ".repeat(20)).len(), 1);
        let many: String = (0..20).map(|i| format!("w{i} ")).collect();
        assert_eq!(search_words(&many).len(), MAX_SEARCH_WORDS);
    }
}
