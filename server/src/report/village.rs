//! One village at a glance, from its records: the team's rating and stars, the satisfaction of
//! the evaluation forms (split and rate), the rectifications' progress, and every questionnaire
//! question's answers as percentages; and the village's own report (村情分析) as Markdown in
//! the draft report's form, for [`super::gongwen`] to lay out as a 公文.

use fieldsync_protocol::template::{FieldType, Template};

use super::draft::numeral;
use super::excerpt;
use crate::storage::{Counts, DigestAsk, Period, RecordView, VillageDigest, VillageTally};

/// A choice's answers: label, count, share of the answers in percent.
#[derive(Debug, Clone, PartialEq)]
pub struct Answers {
    /// The question or field's label.
    pub label: String,
    /// Each choice with its count and percentage, in the template's order.
    pub answers: Vec<(String, u64, f64)>,
    /// How many answered.
    pub total: u64,
}

/// The numbers at the top of a village's dossier.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// The team's rating (好/正常/较差), when assessed without conflict.
    pub rating: Option<String>,
    /// The team's assessments disagree and no reviewer has decided yet (then no rating).
    pub rating_pending: bool,
    /// The newest star rating (五星 …) with its year.
    pub stars: Option<String>,
    /// The evaluation forms' answers about the team.
    pub satisfaction: Option<Answers>,
    /// Satisfied and basically satisfied, in percent of the evaluation forms.
    pub satisfaction_rate: Option<f64>,
    /// Rectifications: done, in progress, not started, overdue.
    pub done: u64,
    /// Rectifications in progress.
    pub in_progress: u64,
    /// Rectifications not started.
    pub planned: u64,
    /// Rectifications past their deadline and not done.
    pub overdue: u64,
    /// Every choice question of the questionnaires with its answers.
    pub questions: Vec<Answers>,
}

fn text<'a>(r: &'a RecordView, field: &str) -> &'a str {
    r.fields
        .get(field)
        .and_then(serde_json::Value::as_str)
        .unwrap_or("")
}

/// A choice's label, in English when `en` (the stored value when the template has no such
/// choice).
fn label(template: Option<&Template>, kind: &str, field: &str, value: &str, en: bool) -> String {
    template
        .and_then(|t| t.kind(kind))
        .and_then(|k| k.field(field))
        .and_then(|f| f.choice(value))
        .map(|c| if en { c.en.clone() } else { c.zh.clone() })
        .unwrap_or_else(|| value.to_string())
}

/// The kinds whose records [`summarize`] reads one by one, and the Word file's findings (few per
/// village).
const SUMMARY_KINDS: [&str; 4] = ["assessment", "star_rating", "rectification", "finding"];

/// The choice questions of the campaign's questionnaire (`q_…`), in the template's order.
fn questions(template: Option<&Template>) -> Vec<&str> {
    template
        .and_then(|t| t.kind("questionnaire"))
        .map(|def| {
            def.fields
                .iter()
                .filter(|f| f.field_type == FieldType::Choice && f.name.starts_with("q_"))
                .map(|f| f.name.as_str())
                .collect()
        })
        .unwrap_or_default()
}

/// What [`summarize`] needs of village `scope`: its assessments, star ratings, rectifications and
/// findings, the evaluation forms' rating of the team, and every questionnaire question.
pub fn digest_ask(
    template: Option<&Template>,
    campaign: uuid::Uuid,
    scope: &str,
    period: Period,
) -> DigestAsk {
    let mut values = vec![("evaluation".to_string(), "team_rating".to_string())];
    values.extend(
        questions(template)
            .into_iter()
            .map(|q| ("questionnaire".to_string(), q.to_string())),
    );
    DigestAsk {
        campaign,
        scope: scope.to_string(),
        period,
        brief_kinds: SUMMARY_KINDS.iter().map(|k| k.to_string()).collect(),
        values,
    }
}

/// The answers to the choice field `field` of `kind`, whose values were counted as `values`
/// ([`VillageDigest::values`]), in the template's choice order; `None` when nobody chose one.
fn answers(
    template: Option<&Template>,
    kind: &str,
    field: &str,
    values: &Counts,
    en: bool,
) -> Option<Answers> {
    let def = template?.kind(kind)?.field(field)?;
    let mut counts: Vec<(String, u64, f64)> = def
        .choices
        .iter()
        .map(|c| {
            let n = values.get(c.value.as_str()).copied().unwrap_or(0);
            (if en { c.en.clone() } else { c.zh.clone() }, n, 0.0)
        })
        .collect();
    let total: u64 = counts.iter().map(|c| c.1).sum();
    if total == 0 {
        return None;
    }
    for c in &mut counts {
        c.2 = c.1 as f64 * 100.0 / total as f64;
    }
    Some(Answers {
        label: if en {
            def.label.en.clone()
        } else {
            def.label.zh.clone()
        },
        answers: counts,
        total,
    })
}

/// The summary of a village from its digest (asked with [`digest_ask`]), `today` as
/// `YYYY-MM-DD`, its labels in English when `en` (the page in English; filed documents are
/// Chinese).
pub fn summarize(
    template: Option<&Template>,
    tally: Option<&VillageTally>,
    digest: &VillageDigest,
    today: &str,
    en: bool,
) -> Summary {
    let of = |kind: &str| -> Vec<&RecordView> {
        digest
            .records
            .iter()
            .filter(|r| r.kind == kind && !r.deleted)
            .collect()
    };
    let empty = Counts::new();
    let values = |kind: &str, field: &str| -> &Counts {
        digest
            .values
            .get(kind)
            .and_then(|f| f.get(field))
            .unwrap_or(&empty)
    };
    let mut s = Summary {
        rating: tally
            .and_then(|v| v.team_rating.as_deref())
            .map(|r| label(template, "assessment", "rating", r, en)),
        ..Default::default()
    };
    // A team assessment in conflict has no rating until a reviewer decides: say so.
    s.rating_pending = s.rating.is_none()
        && of("assessment")
            .iter()
            .any(|r| text(r, "target_type") == "team" && r.conflicts > 0);
    let mut stars = of("star_rating");
    stars.sort_by_key(|r| r.fields.get("year").and_then(serde_json::Value::as_i64));
    if let Some(newest) = stars.last() {
        let year = newest
            .fields
            .get("year")
            .and_then(serde_json::Value::as_i64)
            .map(|y| {
                if en {
                    format!(" ({y})")
                } else {
                    format!("（{y}年）")
                }
            })
            .unwrap_or_default();
        s.stars = Some(format!(
            "{}{year}",
            label(template, "star_rating", "stars", text(newest, "stars"), en)
        ));
    }
    let team = values("evaluation", "team_rating");
    s.satisfaction = answers(template, "evaluation", "team_rating", team, en);
    if let Some(a) = &s.satisfaction {
        let of = |answer| team.get(answer).copied().unwrap_or(0);
        let yes = of("satisfied") + of("basically_satisfied");
        s.satisfaction_rate = Some(yes as f64 * 100.0 / a.total as f64);
    }
    for r in of("rectification") {
        let status = text(r, "status");
        match status {
            "done" => s.done += 1,
            "in_progress" => s.in_progress += 1,
            _ => s.planned += 1,
        }
        if crate::rectification::overdue(status, text(r, "deadline"), today) {
            s.overdue += 1;
        }
    }
    for q in questions(template) {
        if let Some(a) = answers(template, "questionnaire", q, values("questionnaire", q), en) {
            s.questions.push(a);
        }
    }
    s
}

/// `n` percent as the dossier writes it: 96.5%.
pub fn percent(n: f64) -> String {
    let rounded = (n * 10.0).round() / 10.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.0}%")
    } else {
        format!("{rounded:.1}%")
    }
}

/// The village's own report (村情分析) as Markdown in the draft report's form: the work done,
/// how the team works (the assessment's summary or the notes' key sentences), the ratings and
/// satisfaction, the questionnaire, the findings with their measures.
pub fn markdown(
    name: &str,
    template: Option<&Template>,
    tally: Option<&VillageTally>,
    summary: &Summary,
    records: &[RecordView],
    today: &str,
) -> String {
    let name = &super::draft::flat(name);
    let mut out = format!("# {name}“两委”班子运行情况分析\n\n");
    out.push_str("## 一、基本情况\n\n");
    if let Some(v) = tally {
        out.push_str(&format!(
            "{name}“两委”班子现有成员{}名。工作组谈心谈话{}人次，召开座谈会{}场次，收回问卷调查表{}份、满意度测评表{}份，梳理问题{}个。\n\n",
            v.members, v.interviews, v.meetings, v.questionnaires, v.evaluations, v.findings
        ));
    }
    out.push_str("## 二、班子运行情况\n\n");
    let running = tally
        .and_then(|v| v.summary.as_deref())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(super::draft::ending)
        .or_else(|| {
            let sentences = excerpt::key_sentences(
                tally
                    .into_iter()
                    .flat_map(|v| v.notes.iter().map(String::as_str)),
                4,
            );
            (!sentences.is_empty()).then(|| format!("据谈心谈话和会议记录：{}", sentences.concat()))
        })
        .unwrap_or_else(|| "尚无班子运行情况分析和谈话、会议记录。".into());
    out.push_str(&format!("{running}\n\n"));
    out.push_str("## 三、评价情况\n\n");
    let mut rating = match &summary.rating {
        Some(r) => format!("班子定性评价为“{r}”"),
        None if summary.rating_pending => "班子定性评价意见不一致，待审核确定".to_string(),
        None => "班子定性评价待定".to_string(),
    };
    if let Some(stars) = &summary.stars {
        rating.push_str(&format!("，星级评定为{stars}"));
    }
    rating.push('。');
    if let (Some(a), Some(rate)) = (&summary.satisfaction, summary.satisfaction_rate) {
        let split: Vec<String> = a
            .answers
            .iter()
            .map(|(l, n, _)| format!("“{l}”{n}份"))
            .collect();
        rating.push_str(&format!(
            "收回满意度测评表{}份，其中{}，满意率{}。",
            a.total,
            split.join("、"),
            percent(rate)
        ));
    }
    out.push_str(&format!("{rating}\n\n"));
    if !summary.questions.is_empty() {
        out.push_str("## 四、问卷调查情况\n\n");
        for (i, q) in summary.questions.iter().enumerate() {
            let answers: Vec<String> = q
                .answers
                .iter()
                .filter(|(_, n, _)| *n > 0)
                .map(|(l, _, p)| format!("“{l}”占{}", percent(*p)))
                .collect();
            let question = q.label.trim_end_matches(['？', '?', '。']);
            let mark = if q.label.ends_with(['？', '?']) {
                '？'
            } else {
                '。'
            };
            out.push_str(&format!(
                "（{}）{question}{mark}{}人作答，{}。\n\n",
                numeral(i + 1),
                q.total,
                answers.join("，")
            ));
        }
    }
    let part = if summary.questions.is_empty() { 4 } else { 5 };
    out.push_str(&format!("## {}、存在的问题及整改情况\n\n", numeral(part)));
    let findings: Vec<&RecordView> = records
        .iter()
        .filter(|r| r.kind == "finding" && !r.deleted)
        .collect();
    if findings.is_empty() {
        out.push_str("暂未发现突出问题。\n\n");
    }
    let measures = summary.done + summary.in_progress + summary.planned;
    if measures > 0 {
        out.push_str(&format!(
            "梳理问题{}个，制定整改措施{measures}项，已完成{}项，整改中{}项，未开始{}项{}。\n\n",
            findings.len(),
            summary.done,
            summary.in_progress,
            summary.planned,
            if summary.overdue > 0 {
                format!("，其中逾期未完成{}项", summary.overdue)
            } else {
                String::new()
            }
        ));
    }
    for (i, f) in findings.iter().enumerate() {
        let measures: Vec<String> = records
            .iter()
            .filter(|r| r.kind == "rectification" && !r.deleted)
            .filter(|r| text(r, "finding") == f.id.to_string())
            .map(|r| {
                let mut m = format!(
                    "{}（{}",
                    super::draft::flat(text(r, "measure")).trim_end_matches('。'),
                    label(
                        template,
                        "rectification",
                        "status",
                        text(r, "status"),
                        false
                    )
                );
                if !text(r, "owner").is_empty() {
                    m.push_str(&format!("，责任人{}", super::draft::flat(text(r, "owner"))));
                }
                if !text(r, "deadline").is_empty() {
                    m.push_str(&format!("，时限{}", text(r, "deadline")));
                }
                if crate::rectification::overdue(text(r, "status"), text(r, "deadline"), today) {
                    m.push_str("，已逾期");
                }
                m.push('）');
                m
            })
            .collect();
        let category = label(template, "finding", "category", text(f, "category"), false);
        let fixes = if measures.is_empty() {
            "尚未制定整改措施。".to_string()
        } else {
            format!("整改措施：{}。", measures.join("；"))
        };
        out.push_str(&format!(
            "（{}）{category}方面。{}{fixes}\n\n",
            numeral(i + 1),
            super::draft::ending(text(f, "text").trim())
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_team_rating_in_dispute_is_said_to_await_review_not_given_as_a_rating() {
        let assessment = RecordView {
            id: uuid::Uuid::from_u128(1),
            kind: "assessment".into(),
            campaign: uuid::Uuid::from_u128(2),
            scope: "v1".into(),
            deleted: false,
            fields: serde_json::json!({"target_type": "team", "rating": "good"}),
            conflicts: 1,
            heads: Vec::new(),
            up_to_date: true,
            position: 1,
            waiting_changes: 0,
            problem: None,
            review: None,
        };
        let digest = VillageDigest {
            records: vec![assessment],
            ..Default::default()
        };
        let s = summarize(None, None, &digest, "2026-12-08", false);
        assert_eq!((s.rating.as_deref(), s.rating_pending), (None, true));
        let md = markdown("青龙社区", None, None, &s, &[], "2026-12-08");
        assert!(md.contains("班子定性评价意见不一致，待审核确定。"), "{md}");
        // Decided (the tallies carry the rating): a rating, nothing pending.
        let decided = VillageTally {
            team_rating: Some("good".into()),
            ..Default::default()
        };
        let s = summarize(None, Some(&decided), &digest, "2026-12-08", false);
        assert_eq!(
            (s.rating.as_deref(), s.rating_pending),
            (Some("good"), false)
        );
    }

    #[test]
    fn percentages_read_as_people_write_them() {
        assert_eq!(percent(100.0), "100%");
        assert_eq!(percent(96.54), "96.5%");
        assert_eq!(percent(2.0 / 3.0 * 100.0), "66.7%");
        assert_eq!(percent(0.0), "0%");
    }
}
