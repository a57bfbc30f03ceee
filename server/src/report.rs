//! What the department reads: the campaign's tallies (every number the seed reports leave as
//! `*`), full-text search hits, CSV and XLSX exports of the records, and the draft report
//! (`draft`: its text, `gongwen`: its Word layout). Storage-agnostic: the numbers come from
//! [`crate::storage::Storage::tallies`].

mod cells;
mod draft;
mod excerpt;
mod gongwen;
use cells::xlsx_columns;
pub use cells::{XLSX_CELL_UNITS, XLSX_CUT_MARK, XLSX_MAX_PIECES, csv_cell};
pub use draft::{counting_basis, draft_markdown};
pub use gongwen::draft_docx;

use fieldsync_protocol::template::{FieldType, Template};

use crate::storage::RecordView;
pub use crate::storage::{Counts, SearchHit, Tallies, VillageTally};

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
