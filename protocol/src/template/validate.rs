//! Validation of a record's fields against its template: every field's type, choices, bounds,
//! required fields and references, each problem named in Chinese and English with a stable
//! [`ProblemCode`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::*;
use crate::record::FieldValue;

impl Template {
    /// Checks the fields of a record of `kind`. Reserved fields (starting with `_`) are not
    /// checked. References are checked through `lookup`; with [`RefPolicy::IfKnown`] a reference
    /// to a record the lookup does not know is accepted (the server, where the record it names
    /// may still be on its way).
    pub fn validate(
        &self,
        kind: &str,
        fields: &BTreeMap<String, FieldValue>,
        lookup: &dyn Lookup,
        policy: RefPolicy,
    ) -> Result<(), Invalid> {
        let Some(def) = self.kinds.get(kind) else {
            return Err(Invalid {
                kind: kind.to_string(),
                problems: vec![Problem {
                    field: String::new(),
                    code: ProblemCode::UnknownKind,
                    zh: format!(
                        "模板“{}”第 {} 版中没有“{kind}”这种表单",
                        self.name.zh, self.version
                    ),
                    en: format!(
                        "template {:?} version {} has no form {kind:?}",
                        self.id, self.version
                    ),
                }],
            });
        };
        let mut problems = Vec::new();
        for name in fields.keys() {
            if !name.starts_with('_') && def.field(name).is_none() {
                problems.push(Problem {
                    field: name.clone(),
                    code: ProblemCode::UnknownField,
                    zh: format!("“{}”表单中没有字段 {name}", def.label.zh),
                    en: format!("the {} form has no field {name:?}", def.label.en),
                });
            }
        }
        for f in &def.fields {
            let value = fields.get(&f.name);
            let empty = match value {
                None | Some(FieldValue::Null) => true,
                Some(FieldValue::Str(s) | FieldValue::Text(s)) => s.trim().is_empty(),
                Some(FieldValue::Map(m)) => m.is_empty(),
                _ => false,
            };
            if empty {
                if f.required {
                    problems.push(Problem::new(
                        f,
                        ProblemCode::Required,
                        "为必填项".into(),
                        "is required".into(),
                    ));
                }
                continue;
            }
            if let Err(p) = check_value(f, value.expect("not empty"), lookup, policy) {
                problems.push(p);
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Invalid {
                kind: kind.to_string(),
                problems,
            })
        }
    }
}

/// How references to records the lookup does not know are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefPolicy {
    /// The record must exist (a device, where people pick from what it holds).
    MustExist,
    /// Accept unknown records; check the kind of known ones (the server).
    IfKnown,
}

/// Finds the kind of a record by id, to check references.
pub trait Lookup {
    /// The kind of record `id`, if it is known (and not deleted).
    fn kind_of(&self, id: Uuid) -> Option<String>;
}

/// A lookup that knows no record.
pub struct NoRecords;

impl Lookup for NoRecords {
    fn kind_of(&self, _id: Uuid) -> Option<String> {
        None
    }
}

impl<F: Fn(Uuid) -> Option<String>> Lookup for F {
    fn kind_of(&self, id: Uuid) -> Option<String> {
        self(id)
    }
}

/// What is wrong with a field, as a stable code a program can test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemCode {
    /// The template has no such kind.
    UnknownKind,
    /// The form has no such field.
    UnknownField,
    /// A required field is empty.
    Required,
    /// The value has the wrong type.
    WrongType,
    /// Too many characters.
    TooLong,
    /// A number that must be whole is not.
    NotInteger,
    /// Below `min`.
    BelowMin,
    /// Above `max`.
    AboveMax,
    /// Not a `YYYY-MM-DD` date.
    BadDate,
    /// Not one of the choices.
    NotAChoice,
    /// Fewer choices than `min_selected`.
    TooFew,
    /// More choices than `max_selected`.
    TooMany,
    /// Not a record id.
    BadReference,
    /// No such record.
    MissingReference,
    /// A record of the wrong kind.
    WrongReferenceKind,
    /// Written with a template version the checker does not have.
    UnknownVersion,
    /// A template record whose source does not parse.
    BadTemplate,
    /// An attachment entry that does not describe an attachment.
    BadAttachment,
    /// An attachment of a media type the field does not take.
    AttachmentType,
    /// An attachment larger than the field takes.
    AttachmentTooLarge,
}

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The field's name (empty for the record as a whole).
    pub field: String,
    /// What is wrong.
    pub code: ProblemCode,
    /// The message in Chinese, naming the field by its label.
    pub zh: String,
    /// The message in English.
    pub en: String,
}

impl Problem {
    fn new(f: &FieldDef, code: ProblemCode, zh: String, en: String) -> Problem {
        Problem {
            field: f.name.clone(),
            code,
            zh: format!("“{}”（{}）{zh}", f.label.zh, f.name),
            en: format!("{} ({}) {en}", f.label.en, f.name),
        }
    }

    /// The problem's words without the field's label and internal name in front, for a form
    /// that shows it next to its field (a cadre should not read "（q_overall）"); the message
    /// as it is when it does not start with them (a problem of the record as a whole).
    pub fn at_field(&self, f: &FieldDef) -> (String, String) {
        let zh = format!("“{}”（{}）", f.label.zh, f.name);
        let en = format!("{} ({}) ", f.label.en, f.name);
        (
            self.zh.strip_prefix(&zh).unwrap_or(&self.zh).to_string(),
            self.en.strip_prefix(&en).unwrap_or(&self.en).to_string(),
        )
    }
}

/// A record that does not fit its form: every problem found, each naming its field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub struct Invalid {
    /// The record kind.
    pub kind: String,
    /// The problems, in form order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let zh: Vec<&str> = self.problems.iter().map(|p| p.zh.as_str()).collect();
        let en: Vec<&str> = self.problems.iter().map(|p| p.en.as_str()).collect();
        write!(f, "{} / {}", zh.join("；"), en.join("; "))
    }
}

pub(super) fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<u32>().ok());
    let (Some(y), Some(m), Some(d)) = (num(0..4), num(5..7), num(8..10)) else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1900..=2200).contains(&y) && (1..=days).contains(&d)
}

fn check_ref(
    f: &FieldDef,
    s: &str,
    target: &str,
    lookup: &dyn Lookup,
    policy: RefPolicy,
) -> Result<(), Problem> {
    let Ok(id) = Uuid::parse_str(s.trim()) else {
        return Err(Problem::new(
            f,
            ProblemCode::BadReference,
            format!("应为记录编号，“{s}”不是"),
            format!("must be a record id; {s:?} is not one"),
        ));
    };
    match lookup.kind_of(id) {
        None if policy == RefPolicy::MustExist => Err(Problem::new(
            f,
            ProblemCode::MissingReference,
            format!("引用的记录 {id} 不存在（尚未同步或已删除）"),
            format!(
                "refers to record {id}, which does not exist here (not synced yet, or deleted)"
            ),
        )),
        Some(kind) if target != "any" && kind != target => Err(Problem::new(
            f,
            ProblemCode::WrongReferenceKind,
            format!("应引用“{target}”记录，{id} 是“{kind}”"),
            format!("must refer to a {target} record; {id} is a {kind}"),
        )),
        _ => Ok(()),
    }
}

fn choice_list(f: &FieldDef) -> (String, String) {
    let zh: Vec<String> = f
        .choices
        .iter()
        .map(|c| format!("{}（{}）", c.zh, c.value))
        .collect();
    let en: Vec<String> = f
        .choices
        .iter()
        .map(|c| format!("{} ({})", c.en, c.value))
        .collect();
    (zh.join("、"), en.join(", "))
}

fn check_value(
    f: &FieldDef,
    value: &FieldValue,
    lookup: &dyn Lookup,
    policy: RefPolicy,
) -> Result<(), Problem> {
    let wrong_type = |zh: &str, en: &str| {
        Problem::new(
            f,
            ProblemCode::WrongType,
            format!("应为{zh}"),
            format!("must be {en}"),
        )
    };
    let not_choice = |s: &str| {
        let (zh, en) = choice_list(f);
        Problem::new(
            f,
            ProblemCode::NotAChoice,
            format!("“{s}”不是可选项，可选：{zh}"),
            format!("{s:?} is not one of the choices: {en}"),
        )
    };
    match f.field_type {
        FieldType::Text | FieldType::LongText => {
            let (FieldValue::Str(s) | FieldValue::Text(s)) = value else {
                return Err(wrong_type("文字", "text"));
            };
            let n = s.chars().count();
            if n > f.max_chars() {
                return Err(Problem::new(
                    f,
                    ProblemCode::TooLong,
                    format!("最多 {} 个字，现有 {n} 个", f.max_chars()),
                    format!("takes at most {} characters, not {n}", f.max_chars()),
                ));
            }
        }
        FieldType::Number => {
            let x = match value {
                FieldValue::Int(i) => *i as f64,
                FieldValue::Float(x) => *x,
                _ => return Err(wrong_type("数字", "a number")),
            };
            if f.integer && x.fract() != 0.0 {
                return Err(Problem::new(
                    f,
                    ProblemCode::NotInteger,
                    format!("应为整数，{x} 不是"),
                    format!("must be a whole number, not {x}"),
                ));
            }
            if let Some(min) = f.min.filter(|m| x < *m) {
                return Err(Problem::new(
                    f,
                    ProblemCode::BelowMin,
                    format!("不能小于 {min}（现为 {x}）"),
                    format!("must be at least {min} (is {x})"),
                ));
            }
            if let Some(max) = f.max.filter(|m| x > *m) {
                return Err(Problem::new(
                    f,
                    ProblemCode::AboveMax,
                    format!("不能大于 {max}（现为 {x}）"),
                    format!("must be at most {max} (is {x})"),
                ));
            }
        }
        FieldType::Date => {
            let FieldValue::Str(s) = value else {
                return Err(wrong_type(
                    "日期（如 2026-05-18）",
                    "a date like 2026-05-18",
                ));
            };
            if !is_date(s) {
                return Err(Problem::new(
                    f,
                    ProblemCode::BadDate,
                    format!("应为“年-月-日”格式的日期，如 2026-05-18，“{s}”不是"),
                    format!("must be a date written YYYY-MM-DD, such as 2026-05-18; {s:?} is not"),
                ));
            }
        }
        FieldType::Bool => {
            if !matches!(value, FieldValue::Bool(_)) {
                return Err(wrong_type("是或否", "yes or no (true/false)"));
            }
        }
        FieldType::Choice => {
            let FieldValue::Str(s) = value else {
                return Err(wrong_type("一个选项", "one of the choices"));
            };
            if f.choice(s).is_none() {
                return Err(not_choice(s));
            }
        }
        FieldType::MultiChoice => {
            let FieldValue::Str(s) = value else {
                return Err(wrong_type(
                    "以逗号分隔的选项",
                    "choices separated by commas",
                ));
            };
            let picked: Vec<&str> = s
                .split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .collect();
            if let Some(bad) = picked.iter().find(|x| f.choice(x).is_none()) {
                return Err(not_choice(bad));
            }
            let distinct: BTreeSet<&&str> = picked.iter().collect();
            let n = distinct.len();
            if let Some(min) = f.min_selected.filter(|m| n < *m) {
                return Err(Problem::new(
                    f,
                    ProblemCode::TooFew,
                    format!("至少选 {min} 项（现选 {n} 项）"),
                    format!("needs at least {min} choices ({n} chosen)"),
                ));
            }
            if let Some(max) = f.max_selected.filter(|m| n > *m) {
                return Err(Problem::new(
                    f,
                    ProblemCode::TooMany,
                    format!("最多选 {max} 项（现选 {n} 项）"),
                    format!("takes at most {max} choices ({n} chosen)"),
                ));
            }
        }
        FieldType::Ratings => {
            let FieldValue::Map(m) = value else {
                return Err(wrong_type(
                    "对每名成员的评价",
                    "a rating for each member ({member id: choice})",
                ));
            };
            let of = f.of.as_deref().unwrap_or("member");
            for (id, rating) in m {
                check_ref(f, id, of, lookup, policy)?;
                if f.choice(rating).is_none() {
                    return Err(not_choice(rating));
                }
            }
        }
        FieldType::Ref => {
            let FieldValue::Str(s) = value else {
                return Err(wrong_type("记录编号", "a record id"));
            };
            check_ref(f, s, f.to.as_deref().unwrap_or("any"), lookup, policy)?;
        }
        FieldType::Attachments => {
            let FieldValue::Map(m) = value else {
                return Err(wrong_type("附件", "attachments ({sha256: description})"));
            };
            for (sha, description) in m {
                let r = crate::attachment::AttachmentRef::parse(sha, description).map_err(|e| {
                    Problem::new(
                        f,
                        ProblemCode::BadAttachment,
                        format!("附件记录无法读取（{e}）"),
                        format!("an attachment entry does not read: {e}"),
                    )
                })?;
                if !crate::attachment::accepts(&f.accept, &r.media_type) {
                    return Err(Problem::new(
                        f,
                        ProblemCode::AttachmentType,
                        format!(
                            "“{}”的类型 {} 不在允许范围内（{}）",
                            r.name,
                            r.media_type,
                            f.accept.join("、")
                        ),
                        format!(
                            "{:?} is {}, which this field does not take ({})",
                            r.name,
                            r.media_type,
                            f.accept.join(", ")
                        ),
                    ));
                }
                let max = f.max_attachment_bytes();
                if r.size > max {
                    return Err(Problem::new(
                        f,
                        ProblemCode::AttachmentTooLarge,
                        format!("“{}”有 {}，超过上限 {}", r.name, mib(r.size), mib(max)),
                        format!(
                            "{:?} is {}, over the limit of {}",
                            r.name,
                            mib(r.size),
                            mib(max)
                        ),
                    ));
                }
            }
        }
        FieldType::Refs => {
            let FieldValue::Str(s) = value else {
                return Err(wrong_type(
                    "以逗号分隔的记录编号",
                    "record ids separated by commas",
                ));
            };
            for part in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
                check_ref(f, part, f.to.as_deref().unwrap_or("any"), lookup, policy)?;
            }
        }
    }
    Ok(())
}

/// A size in MiB with one decimal (`2.5 MB`).
fn mib(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / (1024.0 * 1024.0))
}
