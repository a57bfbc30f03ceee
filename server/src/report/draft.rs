//! The draft report's text in the structure of the seed reports (seed 000 for 换届“回头看”,
//! seed 002 for 届中分析), as Markdown with every number filled from the tallies and each
//! village's paragraph drafted from its records. [`super::gongwen`] lays the same text out as a
//! 公文.

use super::excerpt;
use crate::storage::{Counts, Tallies, VillageTally};

fn n(counts: &Counts, key: &str) -> u64 {
    counts.get(key).copied().unwrap_or(0)
}

/// The draft report in the structure of the campaign's kind: seed 000's for 换届"回头看"
/// (`lookback`), seed 002's otherwise; every number filled from data.
pub fn draft_markdown(t: &Tallies) -> String {
    let text = match t.template.as_deref() {
        Some("lookback") => draft_lookback(t),
        _ => draft_midterm(t),
    };
    // The counting basis right under the title, so whoever files the report knows it.
    match text.split_once("\n\n") {
        Some((title, rest)) => format!("{title}\n\n（{}）\n\n{rest}", document_basis(t)),
        None => text,
    }
}

/// What the numbers count, in Chinese and English: approved records only (the campaign's
/// `count_approved_only`), or every record collected; and the period, when one was chosen.
pub fn counting_basis(t: &Tallies) -> (String, String) {
    let (zh, en) = if t.approved_only {
        (
            "统计口径：仅统计审核通过的记录",
            "Counting approved records only",
        )
    } else {
        (
            "统计口径：全部已收集记录，含待审核",
            "Counting every record collected, reviewed or not",
        )
    };
    match (t.period.text(false), t.period.text(true)) {
        (Some(pz), Some(pe)) => (
            format!("{zh}；统计时段：{pz}"),
            format!("{en}; period: {pe}"),
        ),
        _ => (zh.to_string(), en.to_string()),
    }
}

/// [`counting_basis`] as a filed document states it (the draft report, a village's analysis):
/// with a period, also by which day a record counts, which a reader of the numbers would not
/// guess (the pages say it beside their period form).
pub fn document_basis(t: &Tallies) -> String {
    let basis = counting_basis(t).0;
    if t.period.is_all() {
        basis
    } else {
        format!("{basis}，谈话、会议等按其日期计入，没有日期的表单按上传到服务器的日期计入")
    }
}

/// Seed 000's structure: 换届"回头看" of township teams and village 两委.
fn draft_lookback(t: &Tallies) -> String {
    let level = |c: &Counts, l: &str| n(c, l);
    let mut out = String::new();
    let title = t
        .name
        .as_deref()
        .map(flat)
        .unwrap_or_else(|| "换届“回头看”".into());
    out.push_str(&format!("# {title}情况报告\n\n"));
    out.push_str(&format!(
        "对全区{}个乡镇和{}个村（社区）全覆盖开展了换届“回头看”。现将有关情况汇报如下：\n\n",
        t.townships, t.villages
    ));
    out.push_str("## 一、主要做法及工作成效\n\n");
    out.push_str(&format!(
        "（一）抓顶层设计，确保组织领导到位。组建{}个考察组，分片下沉到乡镇、村（社区），对全区{}个行政村（社区）全覆盖回访调研，并对{}名乡镇班子成员逐个谈心谈话，对{}名村（社区）“两委”干部进行一一调研座谈；召开座谈会{}场次，收回问卷调查表{}份、测评表{}份。\n\n",
        t.work_groups,
        t.villages,
        level(&t.interviewed_by_level, "township_team"),
        level(&t.interviewed_by_level, "village_team"),
        t.meetings,
        t.questionnaires,
        t.evaluations
    ));
    out.push_str(&format!(
        "（二）抓重点关键，确保查找问题到位。围绕“五查五看”逐一对乡镇领导班子组织运转、政治担当、履职尽责、工作实效、作风表现开展分析研判。联审发现乡镇班子中出现违法违纪问题{}人，村（社区）“两委”干部中出现违法违纪问题{}人。“回头看”期间，乡镇班子中，共计发现问题{}个，村（社区）“两委”干部中，共发现问题{}个。\n\n",
        level(&t.violators_by_level, "township_team"),
        level(&t.violators_by_level, "village_team"),
        level(&t.findings_by_level, "township_team"),
        level(&t.findings_by_level, "village_team")
    ));
    out.push_str(&format!(
        "（三）抓靶向发力，确保整改提升到位。制定整改措施{}条，已完成{}条，逾期未完成{}条。\n\n",
        t.rectifications.values().sum::<u64>(),
        n(&t.rectifications, "done"),
        t.overdue_rectifications
    ));
    let ratings = |c: Option<&Counts>| {
        let c = c.cloned().unwrap_or_default();
        format!(
            "“好”{}个、“正常”{}个、“较差”{}个",
            n(&c, "good"),
            n(&c, "normal"),
            n(&c, "poor")
        )
    };
    out.push_str("## 二、乡镇班子分析研判情况\n\n");
    out.push_str(&format!(
        "全区{}名乡镇班子成员中，{}名接受了谈心谈话。乡镇领导班子定性评价：{}。\n\n",
        level(&t.members_by_level, "township_team"),
        level(&t.interviewed_by_level, "township_team"),
        ratings(t.team_ratings_by_level.get("township_team"))
    ));
    for (field, name) in [
        ("check_org_operation", "组织运转"),
        ("check_political", "政治担当"),
        ("check_duty", "履职尽责"),
        ("check_results", "工作实效"),
        ("check_style", "作风表现"),
    ] {
        out.push_str(&format!(
            "{name}：{}。\n\n",
            ratings(t.township_checks.get(field))
        ));
    }
    out.push_str("## 三、村（社区）“两委”干部分析研判情况\n\n");
    out.push_str(&format!(
        "{}名村（社区）“两委”干部中，{}名接受了调研座谈。村（社区）“两委”班子定性评价：{}；班子成员评价为“好”的{}名、“正常”的{}名、“较差”的{}名。\n\n",
        level(&t.members_by_level, "village_team"),
        level(&t.interviewed_by_level, "village_team"),
        ratings(t.team_ratings_by_level.get("village_team")),
        n(&t.member_ratings, "good"),
        n(&t.member_ratings, "normal"),
        n(&t.member_ratings, "poor")
    ));
    for v in &t.villages_detail {
        if !v.problems.is_empty() {
            out.push_str(&format!(
                "{}：{}\n\n",
                flat(&v.name),
                sentences_of(&v.problems)
            ));
        }
    }
    out.push_str("## 四、下一步工作计划\n\n（由考察组根据以上情况填写。）\n");
    out
}

/// Seed 002's structure: 届中分析 of village teams.
fn draft_midterm(t: &Tallies) -> String {
    let mut out = String::new();
    // A campaign named “…届中分析” or “…分析研判” is not titled “…分析分析研判报告”.
    let name = t.name.as_deref().map(flat);
    let title = name
        .as_deref()
        .map(|n| n.trim_end_matches("分析研判").trim_end_matches("分析"))
        .filter(|n| !n.is_empty())
        .unwrap_or("村（社区）“两委”班子运行情况");
    out.push_str(&format!("# {title}分析研判报告\n\n"));
    out.push_str(&format!(
        "成立{}个分析研判工作组，采取实地调研、谈心谈话、查阅资料、民主测评等方式，对辖区内{}个村（社区）“两委”班子运行情况进行分析研判。现将有关情况汇报如下。\n\n",
        t.work_groups, t.villages
    ));
    out.push_str("## 一、工作开展情况\n\n");
    out.push_str(&format!(
        "（一）提前摸底谋划。提前向纪委、派出所、信访等部门了解班子成员廉洁自律、信访举报、遵纪守法情况，共摸底{}人次，发现廉洁自律问题{}个、违法违纪问题{}个。\n\n",
        t.prescreenings, t.prescreening_integrity_issues, t.prescreening_violations
    ));
    let mut fieldwork = format!("各工作组召开党员群众代表会议{}场次", t.meetings);
    if t.meeting_participants > 0 {
        fieldwork.push_str(&format!("（参会{}人次）", t.meeting_participants));
    }
    fieldwork.push_str(&format!("，谈心谈话{}人次", t.interviews));
    fieldwork.push_str(&coverage(t.members_interviewed, t.members));
    fieldwork.push_str(&format!(
        "，发放并收回问卷调查表{}份，满意度测评表{}份，收集问题建议{}条",
        t.questionnaires, t.evaluations, t.suggestions
    ));
    if t.document_reviews > 0 {
        fieldwork.push_str(&format!("；查阅资料{}次", t.document_reviews));
    }
    out.push_str(&format!("（二）坚持实地调研。{fieldwork}。\n\n"));
    out.push_str(&format!(
        "（三）科学分析研判。在反复了解、深入沟通的基础上，各工作组汇总实地调研、谈心谈话、查阅资料、民主测评等情况，结合村（社区）村情概况、产业发展、项目建设、创先争优、监督处分等相关现实情况，采取定性与定量相结合的方式，科学、客观、系统地对{}个村（社区）“两委”班子及成员届中运行情况进行分析研判，分别形成分析研判报告。\n\n",
        t.villages
    ));
    let mut teams = format!(
        "评价出“好”的村{}个，“正常”村{}个",
        n(&t.team_ratings, "good"),
        n(&t.team_ratings, "normal")
    );
    if n(&t.team_ratings, "poor") > 0 {
        teams.push_str(&format!("，“较差”村{}个", n(&t.team_ratings, "poor")));
    }
    let mut members = format!(
        "“好”的班子成员{}名，“正常”的班子成员{}名",
        n(&t.member_ratings, "good"),
        n(&t.member_ratings, "normal")
    );
    if n(&t.member_ratings, "poor") > 0 {
        members.push_str(&format!(
            "，“较差”的班子成员{}名",
            n(&t.member_ratings, "poor")
        ));
    }
    let disagreements = if t.conflicted_assessments > 0 {
        format!(
            "（另有{}份评价意见不一致，待审核。）",
            t.conflicted_assessments
        )
    } else {
        String::new()
    };
    out.push_str(&format!(
        "（四）强化结果运用。按照“好”“正常”“较差”三个档次作出定性评价，{teams}；{members}。{disagreements}梳理问题{}个，制定整改措施{}条，已完成{}条{}。\n\n",
        t.findings,
        t.rectifications.values().sum::<u64>(),
        n(&t.rectifications, "done"),
        if t.overdue_rectifications > 0 {
            format!("，逾期未完成{}条", t.overdue_rectifications)
        } else {
            String::new()
        }
    ));
    out.push_str("## 二、分析研判情况\n\n");
    for (i, v) in t.villages_detail.iter().enumerate() {
        out.push_str(&format!(
            "（{}）{}“两委”班子运行情况。{}\n\n",
            numeral(i + 1),
            flat(&v.name),
            village_paragraph(v)
        ));
    }
    out.push_str("## 三、存在的问题\n\n");
    for (i, v) in t.villages_detail.iter().enumerate() {
        let problems = if v.problems.is_empty() {
            "暂未发现突出问题。".to_string()
        } else {
            sentences_of(&v.problems)
        };
        out.push_str(&format!(
            "（{}）{}存在的问题。{}\n\n",
            numeral(i + 1),
            flat(&v.name),
            problems
        ));
    }
    out.push_str("## 四、下一步工作打算\n\n（由工作组根据以上情况填写。）\n");
    out
}

/// How far the interviews reached the team members, as a clause that follows “谈心谈话N人次”:
/// “，覆盖全部50名班子成员”, or the number still to be talked to.
fn coverage(interviewed: u64, members: u64) -> String {
    match (interviewed, members) {
        (_, 0) => String::new(),
        (i, m) if i >= m => format!("，覆盖全部{m}名班子成员"),
        (0, m) => format!("，{m}名班子成员均尚未谈话"),
        (i, m) => format!("，覆盖班子成员{i}名，尚有{}名未谈话", m - i),
    }
}

/// A village's paragraph in section 二: the team assessment's 运行情况 when written, else the key
/// sentences of its meeting minutes and interview notes; then what the work group did there and
/// the rating.
fn village_paragraph(v: &VillageTally) -> String {
    let mut out = match v.summary.as_deref().map(str::trim) {
        Some(summary) if !summary.is_empty() => ending(summary),
        _ => {
            let sentences = excerpt::key_sentences(v.notes.iter().map(String::as_str), 3);
            if sentences.is_empty() {
                "尚无班子运行情况分析和谈话、会议记录。".to_string()
            } else {
                format!("据谈心谈话和会议记录：{}", sentences.concat())
            }
        }
    };
    let work: Vec<String> = [
        ("谈心谈话", v.interviews, "人次"),
        ("召开会议", v.meetings, "场次"),
        ("收回问卷", v.questionnaires, "份"),
        ("收回测评表", v.evaluations, "份"),
    ]
    .into_iter()
    .filter(|(_, count, _)| *count > 0)
    .map(|(what, count, unit)| format!("{what}{count}{unit}"))
    .collect();
    if !work.is_empty() {
        out.push_str(&format!("工作组{}。", work.join("，")));
    }
    out.push_str(match v.team_rating.as_deref() {
        Some("good") => "班子定性评价为“好”。",
        Some("normal") => "班子定性评价为“正常”。",
        Some("poor") => "班子定性评价为“较差”。",
        _ => "班子定性评价待定。",
    });
    out
}

/// `text` on one line, ending with a full stop (a summary typed without one still reads as a
/// sentence).
pub(crate) fn ending(text: &str) -> String {
    let text = flat(text);
    if text.ends_with(['。', '！', '？', '”', '.']) {
        text
    } else {
        format!("{text}。")
    }
}

/// `text` on one line: what a record holds goes into the report's Markdown, where a line break
/// would start a heading or paragraph of its own. Lines join directly after Chinese and with a
/// space after Latin text.
pub(crate) fn flat(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if out
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        {
            out.push(' ');
        }
        out.push_str(line);
    }
    out
}

/// Findings' texts as one run of sentences.
fn sentences_of(problems: &[String]) -> String {
    problems.iter().map(|p| ending(p)).collect()
}

/// A Chinese numeral for the 1-based position `i` (一 … 九十九), as 公文 number their parts.
pub(crate) fn numeral(i: usize) -> String {
    const DIGITS: [&str; 10] = ["", "一", "二", "三", "四", "五", "六", "七", "八", "九"];
    match i {
        1..=9 => DIGITS[i].to_string(),
        10..=99 => {
            let tens = if i / 10 == 1 { "" } else { DIGITS[i / 10] };
            format!("{tens}十{}", DIGITS[i % 10])
        }
        _ => i.to_string(),
    }
}

#[cfg(test)]
mod title_tests {
    use super::*;

    fn title(name: Option<&str>) -> String {
        let t = Tallies {
            name: name.map(String::from),
            ..Default::default()
        };
        draft_markdown(&t)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    }

    #[test]
    fn record_text_cannot_start_a_heading_of_its_own() {
        let t = Tallies {
            villages_detail: vec![crate::storage::VillageTally {
                code: "1".into(),
                name: "青龙\n# 社区".into(),
                summary: Some("班子团结\n## 二、伪造的标题\nWork\nhard".into()),
                problems: vec!["问题一\n（一）伪造".into(), "问题二".into()],
                ..Default::default()
            }],
            ..Default::default()
        };
        let md = draft_markdown(&t);
        let headings: Vec<&str> = md.lines().filter(|l| l.starts_with('#')).collect();
        assert_eq!(
            headings.len(),
            5,
            "only the draft's own headings: {headings:?}"
        );
        assert!(md.contains("班子团结## 二、伪造的标题Work hard。"), "{md}");
        assert!(md.contains("问题一（一）伪造。问题二。"), "{md}");
    }

    #[test]
    fn a_campaign_named_analysis_is_not_titled_analysis_twice() {
        assert_eq!(
            title(Some("2026年城关镇届中分析")),
            "# 2026年城关镇届中分析研判报告"
        );
        assert_eq!(
            title(Some("城关镇班子分析研判")),
            "# 城关镇班子分析研判报告"
        );
        assert_eq!(title(Some("城关镇")), "# 城关镇分析研判报告");
        assert_eq!(title(None), "# 村（社区）“两委”班子运行情况分析研判报告");
    }
}
