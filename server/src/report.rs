//! What the department reads: the campaign's tallies (every number the seed reports leave as
//! `*`), full-text search hits, CSV and XLSX exports of the records, and the draft report
//! (`draft`: its text, `gongwen`: its Word layout). Storage-agnostic: the numbers come from
//! [`crate::storage::Storage::tallies`].

mod cells;
mod draft;
mod excerpt;
mod gongwen;
pub mod progress;
pub mod village;
use cells::xlsx_columns;
pub use cells::{XLSX_CELL_UNITS, XLSX_CUT_MARK, XLSX_MAX_PIECES, csv_cell};
pub use draft::{counting_basis, document_basis, draft_markdown};
pub use gongwen::{docx_from_markdown, draft_docx};

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
    let fields = table_fields(def, records);
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
            let place = match names.get(&r.scope) {
                Some(name) => name.clone(),
                // Work groups and other campaign-wide records belong to no one village.
                None if r.scope == fieldsync_protocol::template::CAMPAIGN_SCOPE => {
                    pick("（全局）", "(campaign-wide)")
                }
                None => r.scope.clone(),
            };
            let mut row = vec![r.id.to_string(), place];
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

/// The fields a kind's table shows, in order: the template's, then any other field a record
/// holds (reserved `_` fields left out).
fn table_fields(
    def: Option<&fieldsync_protocol::template::KindDef>,
    records: &[RecordView],
) -> Vec<String> {
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
    fields
}

/// What a workbook cell of a column holds, so that numbers and dates are typed cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// Text (also choices, references, booleans as 是/否, and files).
    Text,
    /// A number field.
    Number,
    /// A date field (`YYYY-MM-DD`).
    Date,
    /// Long text (notes): a wide column.
    LongText,
}

/// The [`Column`] of each column of [`table`]'s rows (the id and the village first).
pub fn table_columns(
    template: Option<&Template>,
    kind: &str,
    records: &[RecordView],
) -> Vec<Column> {
    let def = template.and_then(|t| t.kind(kind));
    let mut columns = vec![Column::Text, Column::Text];
    columns.extend(table_fields(def, records).iter().map(|n| {
        match def.and_then(|d| d.field(n)).map(|f| &f.field_type) {
            Some(FieldType::Number) => Column::Number,
            Some(FieldType::Date) => Column::Date,
            Some(FieldType::LongText) => Column::LongText,
            _ => Column::Text,
        }
    }));
    columns
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
/// label, with Chinese headers, numbers and dates as typed cells, a 序号 instead of record ids,
/// columns sized to their contents, the header row frozen and filterable.
pub fn xlsx(
    template: Option<&Template>,
    tallies: &Tallies,
    kinds: &[(String, Vec<RecordView>)],
    names: &Names,
) -> Result<Vec<u8>, rust_xlsxwriter::XlsxError> {
    use rust_xlsxwriter::{Format, Workbook};
    let mut book = Workbook::new();
    let bold = Format::new().set_bold();
    let sheet = book.add_worksheet();
    sheet.set_name("统计")?;
    let numbers = tally_rows(tallies, template);
    sheet.write_string_with_format(0, 0, "项目", &bold)?;
    sheet.write_string_with_format(0, 1, "数量", &bold)?;
    for (i, (label, n)) in numbers.iter().enumerate() {
        sheet.write_string(i as u32 + 1, 0, label)?;
        sheet.write_number(i as u32 + 1, 1, n.parse::<f64>().unwrap_or(0.0))?;
    }
    let widest = numbers.iter().map(|(l, _)| display_width(l)).max();
    sheet.set_column_width(0, widest.unwrap_or(10).clamp(10, 40) as f64)?;
    sheet.set_freeze_panes(1, 0)?;
    for (kind, records) in kinds {
        let (mut header, mut rows) = table(template, kind, records, names, false);
        let mut columns = table_columns(template, kind, records);
        // A 序号 in place of the record's id: nobody filing the workbook reads a UUID.
        header[0] = "序号".into();
        for (i, row) in rows.iter_mut().enumerate() {
            row[0] = (i + 1).to_string();
        }
        columns[0] = Column::Number;
        let (header, rows) = xlsx_columns(header, rows);
        let columns = spread_columns(&header, &columns);
        let name = template
            .and_then(|t| t.kind(kind))
            .map(|k| k.label.zh.clone())
            .unwrap_or_else(|| kind.clone());
        write_table(book.add_worksheet(), &name, &header, &rows, &columns)?;
    }
    book.save_to_buffer()
}

/// A workbook of one sheet named `name`: `header`, then `rows` typed by `columns` (as in
/// [`xlsx`]'s sheets: numbers and dates typed, widths, frozen filterable header).
pub fn table_xlsx(
    name: &str,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    columns: &[Column],
) -> Result<Vec<u8>, rust_xlsxwriter::XlsxError> {
    let mut book = rust_xlsxwriter::Workbook::new();
    let (header, rows) = xlsx_columns(header, rows);
    let columns = spread_columns(&header, columns);
    write_table(book.add_worksheet(), name, &header, &rows, &columns)?;
    book.save_to_buffer()
}

/// One sheet: a bold header row, frozen and filterable, then the rows, cells typed by
/// `columns`, widths from the contents.
fn write_table(
    sheet: &mut rust_xlsxwriter::Worksheet,
    name: &str,
    header: &[String],
    rows: &[Vec<String>],
    columns: &[Column],
) -> Result<(), rust_xlsxwriter::XlsxError> {
    use rust_xlsxwriter::{ExcelDateTime, Format};
    let bold = Format::new().set_bold();
    let date = Format::new().set_num_format("yyyy-mm-dd");
    let name: String = name
        .chars()
        .filter(|c| !"[]:*?/\\".contains(*c))
        .take(31)
        .collect();
    sheet.set_name(&name)?;
    let column = |c: usize| columns.get(c).copied().unwrap_or(Column::Text);
    for (c, h) in header.iter().enumerate() {
        sheet.write_string_with_format(0, c as u16, h, &bold)?;
    }
    for (r, row) in rows.iter().enumerate() {
        let r = r as u32 + 1;
        for (c, cell) in row.iter().enumerate() {
            let col = c as u16;
            match column(c) {
                Column::Number if cell.trim().parse::<f64>().is_ok_and(f64::is_finite) => {
                    sheet.write_number(r, col, cell.trim().parse::<f64>().unwrap_or(0.0))?;
                }
                Column::Date if is_iso_date(cell) => {
                    match ExcelDateTime::parse_from_str(cell.trim()) {
                        Ok(d) => sheet.write_datetime_with_format(r, col, d, &date)?,
                        Err(_) => sheet.write_string(r, col, cell)?,
                    };
                }
                // Always as a string: a value starting with `=` is text, never a formula.
                _ => {
                    sheet.write_string(r, col, cell)?;
                }
            }
        }
    }
    for (c, h) in header.iter().enumerate() {
        let width = match column(c) {
            Column::LongText => 50,
            Column::Date => 12,
            _ => rows
                .iter()
                .take(500)
                .filter_map(|row| row.get(c))
                .map(|v| display_width(v))
                .chain([display_width(h)])
                .max()
                .unwrap_or(8)
                .clamp(6, 40),
        };
        sheet.set_column_width(c as u16, width as f64 + 1.0)?;
    }
    sheet.set_freeze_panes(1, 0)?;
    if !header.is_empty() {
        sheet.autofilter(0, 0, rows.len() as u32, header.len() as u16 - 1)?;
    }
    Ok(())
}

/// The columns of a table after [`xlsx_columns`] spread long values: a continuation column
/// (`备注（续）`) holds text.
fn spread_columns(header: &[String], columns: &[Column]) -> Vec<Column> {
    let mut original = columns.iter();
    header
        .iter()
        .map(|h| {
            // `备注（续）`, `备注（续2）`: the marks `xlsx_columns` gives continuations.
            let continued = h
                .strip_suffix('）')
                .and_then(|h| h.rsplit_once("（续"))
                .is_some_and(|(_, n)| n.chars().all(|c| c.is_ascii_digit()));
            if continued {
                Column::Text
            } else {
                original.next().copied().unwrap_or(Column::Text)
            }
        })
        .collect()
}

/// Whether `s` is a date as the templates store it (`2026-03-09`).
fn is_iso_date(s: &str) -> bool {
    let b = s.trim().as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// How wide `s` shows in a spreadsheet, in Latin characters (a Chinese character takes two).
fn display_width(s: &str) -> usize {
    s.chars()
        .map(|c| if (c as u32) < 0x1100 { 1 } else { 2 })
        .sum()
}

pub use fieldsync_protocol::dates::{civil_date, time, today};

#[cfg(test)]
mod date_tests {
    use super::*;

    #[test]
    fn civil_dates_and_beijing_time() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(19_723), "2024-01-01");
        // And back: every day of a few years round-trips.
        for day in 19_000..21_000 {
            assert_eq!(
                fieldsync_protocol::dates::days_from_civil(&civil_date(day)),
                Some(day)
            );
        }
        for not_a_date in ["2026-13-01", "2026-02-31", "2026-1-5", "2026-01-05x"] {
            assert_eq!(fieldsync_protocol::dates::days_from_civil(not_a_date), None);
        }
        assert_eq!(civil_date(20_513), "2026-03-01");
        // 2026-11-22 00:00 UTC is 08:00 in Beijing.
        assert_eq!(time(1_795_305_600_000), "2026-11-22 08:00");
        assert_eq!(time(0), "1970-01-01 08:00");
    }
}
