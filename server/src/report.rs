//! What the department reads: the campaign's tallies (every number the seed reports leave as
//! `*`), full-text search hits, CSV exports of a record kind, and the draft report in the
//! structure of seed 002, as Markdown. Storage-agnostic: the numbers come from
//! [`crate::storage::Storage::tallies`].

mod cells;
use cells::xlsx_columns;
pub use cells::{XLSX_CELL_UNITS, XLSX_CUT_MARK, XLSX_MAX_PIECES, csv_cell};

use fieldsync_protocol::template::{FieldType, Template};

use crate::storage::RecordView;
pub use crate::storage::{Counts, SearchHit, Tallies, VillageTally};

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
        Some((title, rest)) => format!("{title}\n\n（{}）\n\n{rest}", counting_basis(t).0),
        None => text,
    }
}

/// What the numbers count, in Chinese and English: approved records only (the campaign's
/// `count_approved_only`), or every record collected.
pub fn counting_basis(t: &Tallies) -> (&'static str, &'static str) {
    if t.approved_only {
        (
            "统计口径：仅统计审核通过的记录",
            "Counting approved records only",
        )
    } else {
        (
            "统计口径：全部已收集记录，含待审核",
            "Counting every record collected, reviewed or not",
        )
    }
}

/// Seed 000's structure: 换届"回头看" of township teams and village 两委.
fn draft_lookback(t: &Tallies) -> String {
    let level = |c: &Counts, l: &str| n(c, l);
    let mut out = String::new();
    let title = t.name.clone().unwrap_or_else(|| "换届“回头看”".into());
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
            out.push_str(&format!("{}：{}\n\n", v.name, v.problems.join("")));
        }
    }
    out.push_str("## 四、下一步工作计划\n\n（由考察组根据以上情况填写。）\n");
    out
}

/// Seed 002's structure: 届中分析 of village teams.
fn draft_midterm(t: &Tallies) -> String {
    let mut out = String::new();
    // A campaign named “…届中分析” or “…分析研判” is not titled “…分析分析研判报告”.
    let title = t
        .name
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
    out.push_str(&format!(
        "（二）坚持实地调研。各工作组召开党员群众代表会议{}场次（参会{}人次），谈心谈话{}人次（覆盖班子成员{}名，共{}名），发放并收回问卷调查表{}份，满意度测评表{}份，收集问题建议{}条；查阅资料{}次。\n\n",
        t.meetings,
        t.meeting_participants,
        t.interviews,
        t.members_interviewed,
        t.members,
        t.questionnaires,
        t.evaluations,
        t.suggestions,
        t.document_reviews
    ));
    out.push_str(&format!(
        "（三）强化结果运用。按照“好”“正常”“较差”三个档次作出定性评价，评价出“好”的村{}个，“正常”村{}个，“较差”村{}个；“好”的班子成员{}名，“正常”的班子成员{}名，“较差”的班子成员{}名。{}梳理问题{}个，制定整改措施{}条，已完成{}条，逾期未完成{}条。\n\n",
        n(&t.team_ratings, "good"),
        n(&t.team_ratings, "normal"),
        n(&t.team_ratings, "poor"),
        n(&t.member_ratings, "good"),
        n(&t.member_ratings, "normal"),
        n(&t.member_ratings, "poor"),
        if t.conflicted_assessments > 0 {
            format!("（另有{}份评价意见不一致，待审核。）", t.conflicted_assessments)
        } else {
            String::new()
        },
        t.findings,
        t.rectifications.values().sum::<u64>(),
        n(&t.rectifications, "done"),
        t.overdue_rectifications
    ));
    out.push_str("## 二、分析研判情况\n\n");
    let numerals = ["一", "二", "三", "四", "五", "六", "七", "八", "九", "十"];
    let numeral = |i: usize| {
        numerals
            .get(i)
            .map(|s| s.to_string())
            .unwrap_or_else(|| (i + 1).to_string())
    };
    for (i, v) in t.villages_detail.iter().enumerate() {
        let rating = match v.team_rating.as_deref() {
            Some("good") => "定性评价为“好”。",
            Some("normal") => "定性评价为“正常”。",
            Some("poor") => "定性评价为“较差”。",
            _ => "定性评价待定。",
        };
        out.push_str(&format!(
            "（{}）{}“两委”班子运行情况。{}工作组谈心谈话{}人次，召开会议{}场次，收回问卷{}份、测评表{}份。{}\n\n",
            numeral(i),
            v.name,
            v.summary.clone().unwrap_or_default(),
            v.interviews,
            v.meetings,
            v.questionnaires,
            v.evaluations,
            rating
        ));
    }
    out.push_str("## 三、存在的问题\n\n");
    for (i, v) in t.villages_detail.iter().enumerate() {
        let problems = if v.problems.is_empty() {
            "暂未发现突出问题。".to_string()
        } else {
            v.problems.join("")
        };
        out.push_str(&format!(
            "（{}）{}存在的问题。{}\n\n",
            numeral(i),
            v.name,
            problems
        ));
    }
    out.push_str("## 四、下一步工作打算\n\n（由工作组根据以上情况填写。）\n");
    out
}

/// Names for the ids that references hold (places, teams, members, work groups), so that tables
/// show 青龙社区 rather than a UUID.
pub type Names = std::collections::HashMap<String, String>;

/// A record kind as a table: a header row of field labels (Chinese, or English with `en`) and one
/// row per record, choices by their labels, references by name, ratings as `name：label`.
pub fn table(
    template: Option<&Template>,
    kind: &str,
    records: &[RecordView],
    names: &Names,
    en: bool,
) -> (Vec<String>, Vec<Vec<String>>) {
    let def = template.and_then(|t| t.kind(kind));
    let mut fields: Vec<String> = match def {
        Some(d) => d.fields.iter().map(|f| f.name.clone()).collect(),
        None => Vec::new(),
    };
    for r in records {
        if let Some(obj) = r.fields.as_object() {
            for k in obj.keys() {
                if !k.starts_with('_') && !fields.contains(k) {
                    fields.push(k.clone());
                }
            }
        }
    }
    let pick = |zh: &str, english: &str| {
        if en {
            english.to_string()
        } else {
            zh.to_string()
        }
    };
    let mut header = vec![pick("编号", "Id"), pick("村（社区）", "Village")];
    header.extend(fields.iter().map(|n| {
        def.and_then(|d| d.field(n))
            .map(|f| {
                if en {
                    f.label.en.clone()
                } else {
                    f.label.zh.clone()
                }
            })
            .unwrap_or_else(|| n.clone())
    }));
    let label = |f: Option<&fieldsync_protocol::template::FieldDef>, v: &str| -> String {
        f.and_then(|f| f.choice(v))
            .map(|c| if en { c.en.clone() } else { c.zh.clone() })
            .unwrap_or_else(|| v.to_string())
    };
    let name = |id: &str| {
        names
            .get(id.trim())
            .cloned()
            .unwrap_or_else(|| id.trim().to_string())
    };
    let rows = records
        .iter()
        .map(|r| {
            let mut row = vec![
                r.id.to_string(),
                names
                    .get(&r.scope)
                    .cloned()
                    .unwrap_or_else(|| r.scope.clone()),
            ];
            for n in &fields {
                let v = &r.fields[n.as_str()];
                let field = def.and_then(|d| d.field(n));
                let kind = field.map(|f| &f.field_type);
                row.push(match (v, kind) {
                    (serde_json::Value::Null, _) => String::new(),
                    (
                        serde_json::Value::String(s),
                        Some(FieldType::Choice | FieldType::MultiChoice),
                    ) => s
                        .split(',')
                        .map(|c| label(field, c))
                        .collect::<Vec<_>>()
                        .join("、"),
                    (serde_json::Value::String(s), Some(FieldType::Ref | FieldType::Refs)) => {
                        s.split(',').map(name).collect::<Vec<_>>().join("、")
                    }
                    // Files by their names (the bytes are on the record page and in the
                    // village's ZIP).
                    (serde_json::Value::Object(_), Some(FieldType::Attachments)) => {
                        let mut files = fieldsync_protocol::attachment::refs_in_json(
                            &serde_json::json!({ "f": v }),
                        );
                        files.sort_by(|a, b| (a.at, &a.sha256).cmp(&(b.at, &b.sha256)));
                        files
                            .iter()
                            .map(|f| f.name.as_str())
                            .collect::<Vec<_>>()
                            .join("、")
                    }
                    (serde_json::Value::Object(map), _) => map
                        .iter()
                        .map(|(k, v)| {
                            format!("{}：{}", name(k), label(field, v.as_str().unwrap_or("")))
                        })
                        .collect::<Vec<_>>()
                        .join("；"),
                    (serde_json::Value::Bool(b), _) => {
                        pick(if *b { "是" } else { "否" }, if *b { "yes" } else { "no" })
                    }
                    (serde_json::Value::String(s), _) => s.clone(),
                    (other, _) => other.to_string(),
                });
            }
            row
        })
        .collect();
    (header, rows)
}

/// The records of one kind as CSV for Excel: UTF-8 with a byte-order mark, CRLF lines.
pub fn csv(
    template: Option<&Template>,
    kind: &str,
    records: &[RecordView],
    names: &Names,
) -> String {
    let (header, rows) = table(template, kind, records, names, false);
    let mut out = String::from("\u{feff}");
    for row in std::iter::once(&header).chain(rows.iter()) {
        out.push_str(
            &row.iter()
                .map(|c| csv_cell(c))
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push_str("\r\n");
    }
    out
}

/// Every tally as (item, number) rows with Chinese names: the main counts, then each breakdown
/// (ratings, categories, levels, statuses) as `名称：值`.
pub fn tally_rows(t: &Tallies, template: Option<&Template>) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = [
        ("村（社区）", t.villages.to_string()),
        ("工作组", t.work_groups.to_string()),
        ("班子成员", t.members.to_string()),
        ("谈话覆盖班子成员", t.members_interviewed.to_string()),
        ("谈心谈话人次", t.interviews.to_string()),
        ("会议场次", t.meetings.to_string()),
        ("参会人次", t.meeting_participants.to_string()),
        ("收集问题建议条数", t.suggestions.to_string()),
        ("问卷调查表", t.questionnaires.to_string()),
        ("满意度测评表", t.evaluations.to_string()),
        ("查阅资料", t.document_reviews.to_string()),
        ("提前摸底（联审）人数", t.prescreenings.to_string()),
        ("问题", t.findings.to_string()),
        ("逾期未完成整改", t.overdue_rectifications.to_string()),
        ("存在冲突的评价", t.conflicted_assessments.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let label = |v: &str| -> String {
        match v {
            "good" => "好",
            "normal" => "正常",
            "poor" => "较差",
            "planned" => "未开始",
            "in_progress" => "整改中",
            "done" => "已完成",
            "township_team" => "乡镇领导班子",
            "village_team" => "村（社区）“两委”班子",
            "satisfied" => "满意",
            "basically_satisfied" => "基本满意",
            "unsatisfied" => "不满意",
            other => other,
        }
        .to_string()
    };
    let choice = |kind: &str, field: &str, value: &str| -> String {
        template
            .and_then(|t| t.kind(kind))
            .and_then(|k| k.field(field))
            .and_then(|f| f.choice(value))
            .map(|c| c.zh.clone())
            .unwrap_or_else(|| label(value))
    };
    for (name, counts, kind, field) in [
        ("班子定性评价", &t.team_ratings, "assessment", "rating"),
        (
            "班子成员定性评价",
            &t.member_ratings,
            "assessment",
            "rating",
        ),
        ("问题（按层级）", &t.findings_by_level, "finding", "level"),
        (
            "问题（按类别）",
            &t.findings_by_category,
            "finding",
            "category",
        ),
        (
            "违纪违法（按层级）",
            &t.violations_by_level,
            "finding",
            "level",
        ),
        ("星级评定", &t.star_ratings, "star_rating", "stars"),
        ("整改措施", &t.rectifications, "rectification", "status"),
        (
            "班子满意度",
            &t.team_satisfaction,
            "evaluation",
            "team_rating",
        ),
    ] {
        for (value, n) in counts {
            rows.push((
                format!("{name}：{}", choice(kind, field, value)),
                n.to_string(),
            ));
        }
    }
    rows
}

/// The tallies as CSV for Excel (UTF-8 with a byte-order mark, CRLF lines): 项目,数量.
pub fn tallies_csv(t: &Tallies, template: Option<&Template>) -> String {
    let mut out = String::from("\u{feff}项目,数量\r\n");
    for (k, v) in tally_rows(t, template) {
        out.push_str(&format!("{},{v}\r\n", csv_cell(&k)));
    }
    out
}

/// A workbook: a sheet of tallies (统计), then one sheet per record kind named by its Chinese
/// label, with Chinese headers.
pub fn xlsx(
    template: Option<&Template>,
    tallies: &Tallies,
    kinds: &[(String, Vec<RecordView>)],
    names: &Names,
) -> Result<Vec<u8>, rust_xlsxwriter::XlsxError> {
    let mut book = rust_xlsxwriter::Workbook::new();
    let bold = rust_xlsxwriter::Format::new().set_bold();
    let sheet = book.add_worksheet();
    sheet.set_name("统计")?;
    let numbers = tally_rows(tallies, template);
    sheet.write_string_with_format(0, 0, "项目", &bold)?;
    sheet.write_string_with_format(0, 1, "数量", &bold)?;
    for (i, (label, n)) in numbers.iter().enumerate() {
        sheet.write_string(i as u32 + 1, 0, label)?;
        sheet.write_number(i as u32 + 1, 1, n.parse::<f64>().unwrap_or(0.0))?;
    }
    sheet.set_column_width(0, 20)?;
    for (kind, records) in kinds {
        let (header, rows) = table(template, kind, records, names, false);
        let (header, rows) = xlsx_columns(header, rows);
        let name: String = template
            .and_then(|t| t.kind(kind))
            .map(|k| k.label.zh.clone())
            .unwrap_or_else(|| kind.clone())
            .chars()
            .filter(|c| !"[]:*?/\\".contains(*c))
            .take(31)
            .collect();
        let sheet = book.add_worksheet();
        sheet.set_name(&name)?;
        for (c, h) in header.iter().enumerate() {
            sheet.write_string_with_format(0, c as u16, h, &bold)?;
        }
        for (r, row) in rows.iter().enumerate() {
            for (c, cell) in row.iter().enumerate() {
                // Always as a string: a value starting with `=` is text, never a formula.
                sheet.write_string(r as u32 + 1, c as u16, cell)?;
            }
        }
    }
    book.save_to_buffer()
}

/// The draft report as a Word document, from the same text as [`draft_markdown`].
pub fn draft_docx(t: &Tallies) -> Result<Vec<u8>, String> {
    use docx_rs::{Docx, Paragraph, Run};
    let mut doc = Docx::new();
    for line in draft_markdown(t).lines().filter(|l| !l.trim().is_empty()) {
        let (text, size, bold) = match line {
            l if l.starts_with("# ") => (&l[2..], 36, true),
            l if l.starts_with("## ") => (&l[3..], 30, true),
            l => (l, 24, false),
        };
        let mut run = Run::new().add_text(text).size(size);
        if bold {
            run = run.bold();
        }
        doc = doc.add_paragraph(Paragraph::new().add_run(run));
    }
    let mut out = std::io::Cursor::new(Vec::new());
    doc.build().pack(&mut out).map_err(|e| e.to_string())?;
    Ok(out.into_inner())
}

pub use fieldsync_protocol::dates::{civil_date, time, today};

#[cfg(test)]
mod date_tests {
    use super::*;

    #[test]
    fn civil_dates_and_beijing_time() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(19_723), "2024-01-01");
        assert_eq!(civil_date(20_513), "2026-03-01");
        // 2026-11-22 00:00 UTC is 08:00 in Beijing.
        assert_eq!(time(1_795_305_600_000), "2026-11-22 08:00");
        assert_eq!(time(0), "1970-01-01 08:00");
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
