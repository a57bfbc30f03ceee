//! Campaign templates: a campaign's forms as data (TOML, see `docs/TEMPLATES.md`), and the
//! validation of a record's fields against them, with messages in Chinese and English.
//!
//! Both ends use this module: a device validates a record before it saves it, the server
//! validates every merged record again and flags (never drops) what fails.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use toml::Spanned;
use uuid::Uuid;

use crate::record::FieldValue;

/// The reference kinds every template shares (place, team, member, work_group, campaign).
pub const REFERENCE_SOURCE: &str = include_str!("../templates/reference.toml");
/// The built-in template for 届中分析 (mid-term analysis, seed 002).
pub const MIDTERM_SOURCE: &str = include_str!("../templates/midterm.toml");
/// The built-in template for 换届"回头看" (post-election review, seed 000).
pub const LOOKBACK_SOURCE: &str = include_str!("../templates/lookback.toml");

/// The record kind that carries a published template version.
pub const TEMPLATE_KIND: &str = "template";
/// The scope of records that belong to the whole campaign (templates, work groups).
pub const CAMPAIGN_SCOPE: &str = "campaign";
/// The reserved field in which a form record notes the template version it was written with.
pub const FORM_VERSION_FIELD: &str = "_form";
/// Kinds a template may not define: the reference kinds come from `reference.toml`, and
/// `template` records carry templates themselves.
pub const RESERVED_KINDS: &[&str] = &[
    "place",
    "team",
    "member",
    "work_group",
    "campaign",
    "template",
];

/// A text in Chinese and English.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Label {
    /// Chinese (shown first).
    pub zh: String,
    /// English.
    pub en: String,
}

/// The type of a field (see the table in `docs/TEMPLATES.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// A short string.
    Text,
    /// An Automerge text that merges character by character.
    LongText,
    /// An integer or a decimal.
    Number,
    /// `YYYY-MM-DD`.
    Date,
    /// Yes or no.
    Bool,
    /// One of `choices`.
    Choice,
    /// Several of `choices`, stored as their values joined by `,`.
    MultiChoice,
    /// A map from record ids (of kind `of`) to a choice value.
    Ratings,
    /// The id of another record (of kind `to`).
    Ref,
    /// Ids of other records joined by `,`.
    Refs,
}

impl FieldType {
    fn name(self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::LongText => "long_text",
            FieldType::Number => "number",
            FieldType::Date => "date",
            FieldType::Bool => "bool",
            FieldType::Choice => "choice",
            FieldType::MultiChoice => "multi_choice",
            FieldType::Ratings => "ratings",
            FieldType::Ref => "ref",
            FieldType::Refs => "refs",
        }
    }

    fn has_choices(self) -> bool {
        matches!(
            self,
            FieldType::Choice | FieldType::MultiChoice | FieldType::Ratings
        )
    }
}

/// One choice of a choice field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Choice {
    /// What is stored and exported.
    pub value: String,
    /// The Chinese label.
    pub zh: String,
    /// The English label.
    pub en: String,
}

/// A field of a kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldDef {
    /// The field's name in the record.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub field_type: FieldType,
    /// Whether a record must have a value.
    #[serde(default)]
    pub required: bool,
    /// What people see.
    pub label: Label,
    /// A hint shown under the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<Label>,
    /// The most characters (`text`, `long_text`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
    /// The smallest number allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// The largest number allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Whether a number must be whole.
    #[serde(default)]
    pub integer: bool,
    /// The choices (`choice`, `multi_choice`, `ratings`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<Choice>,
    /// The fewest choices of a `multi_choice`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_selected: Option<usize>,
    /// The most choices of a `multi_choice`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_selected: Option<usize>,
    /// The kind a `ref`/`refs` points to (`any` for any kind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The kind rated by a `ratings` field (default `member`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub of: Option<String>,
}

impl FieldDef {
    /// The label of `value` among the choices, if it is one.
    pub fn choice(&self, value: &str) -> Option<&Choice> {
        self.choices.iter().find(|c| c.value == value)
    }

    fn max_chars(&self) -> usize {
        self.max_length.unwrap_or(match self.field_type {
            FieldType::LongText => 100_000,
            _ => 200,
        })
    }
}

/// A record kind and its form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindDef {
    /// The kind's name (`interview`).
    pub name: String,
    /// What people see.
    pub label: Label,
    /// Fields whose values make a record unique in its campaign (a singleton); empty for
    /// ordinary records.
    pub key: Vec<String>,
    /// The fields, in form order.
    pub fields: Vec<FieldDef>,
}

impl KindDef {
    /// The field called `name`.
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// A parsed, checked template version.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// The template's id (the same for every version).
    pub id: String,
    /// Its version (≥ 1).
    pub version: u32,
    /// Its name.
    pub name: Label,
    /// What it is for.
    pub description: Option<Label>,
    /// Every kind, the reference kinds included.
    pub kinds: BTreeMap<String, KindDef>,
    /// The TOML it was parsed from (what is published and synced).
    pub source: String,
}

/// Why a template could not be used. Names the line and the field where it can.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct TemplateError {
    /// The line (1-based) in the TOML source.
    pub line: Option<usize>,
    /// Where in the template (`kinds.interview.fields.date`), when known.
    pub path: String,
    /// The problem, in Chinese.
    pub zh: String,
    /// The problem, in English.
    pub en: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at_zh = match (self.line, self.path.is_empty()) {
            (Some(l), false) => format!("模板第 {l} 行（{}）", self.path),
            (Some(l), true) => format!("模板第 {l} 行"),
            (None, false) => format!("模板（{}）", self.path),
            (None, true) => "模板".to_string(),
        };
        let at_en = match (self.line, self.path.is_empty()) {
            (Some(l), false) => format!("template line {l} ({})", self.path),
            (Some(l), true) => format!("template line {l}"),
            (None, false) => format!("template ({})", self.path),
            (None, true) => "template".to_string(),
        };
        write!(f, "{at_zh}：{} / {at_en}: {}", self.zh, self.en)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTemplate {
    id: Spanned<String>,
    version: Spanned<i64>,
    name: Label,
    #[serde(default)]
    description: Option<Label>,
    #[serde(default)]
    kinds: BTreeMap<String, Spanned<RawKind>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKind {
    label: Label,
    #[serde(default)]
    key: Vec<String>,
    #[serde(default)]
    fields: Vec<Spanned<FieldDef>>,
}

fn line_of(source: &str, offset: usize) -> usize {
    source[..offset.min(source.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

fn simple_name(s: &str, allow_dash: bool) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || (allow_dash && b == b'-')
        })
}

impl Template {
    /// Parses and checks a campaign template; the reference kinds are added to it.
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        let reference = parse_raw(REFERENCE_SOURCE, None).expect("the built-in reference kinds");
        parse_raw(source, Some(&reference))
    }

    /// A built-in template by id (`midterm`, `lookback`).
    pub fn builtin(id: &str) -> Option<Template> {
        let source = match id {
            "midterm" => MIDTERM_SOURCE,
            "lookback" => LOOKBACK_SOURCE,
            _ => return None,
        };
        Some(Template::parse(source).expect("built-in templates parse (tested)"))
    }

    /// The ids of the built-in templates.
    pub fn builtin_ids() -> &'static [&'static str] {
        &["midterm", "lookback"]
    }

    /// The kind called `name`.
    pub fn kind(&self, name: &str) -> Option<&KindDef> {
        self.kinds.get(name)
    }

    /// The singleton key of a record of `kind` with these fields (the values of the kind's
    /// key fields joined by `/`), or `None` when the kind has no key.
    pub fn singleton_key(
        &self,
        kind: &str,
        fields: &BTreeMap<String, FieldValue>,
    ) -> Option<String> {
        let def = self.kinds.get(kind)?;
        if def.key.is_empty() {
            return None;
        }
        let parts: Vec<String> = def
            .key
            .iter()
            .map(|k| match fields.get(k) {
                Some(FieldValue::Str(s) | FieldValue::Text(s)) => s.clone(),
                Some(FieldValue::Int(i)) => i.to_string(),
                Some(FieldValue::Float(f)) => f.to_string(),
                Some(FieldValue::Bool(b)) => b.to_string(),
                _ => String::new(),
            })
            .collect();
        Some(parts.join("/"))
    }

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

fn is_date(s: &str) -> bool {
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

fn toml_error(source: &str, e: toml::de::Error) -> TemplateError {
    let line = e.span().map(|s| line_of(source, s.start));
    let message = e.message().trim().to_string();
    TemplateError {
        line,
        path: String::new(),
        zh: format!("无法读取：{message}"),
        en: format!("cannot be read: {message}"),
    }
}

fn parse_raw(source: &str, reference: Option<&Template>) -> Result<Template, TemplateError> {
    let raw: RawTemplate = toml::from_str(source).map_err(|e| toml_error(source, e))?;
    let err = |offset: usize, path: String, zh: String, en: String| TemplateError {
        line: Some(line_of(source, offset)),
        path,
        zh,
        en,
    };
    if !simple_name(raw.id.get_ref(), true) {
        return Err(err(
            raw.id.span().start,
            "id".into(),
            "id 只能由小写字母、数字、- 和 _ 组成".into(),
            "id takes lowercase letters, digits, '-' and '_'".into(),
        ));
    }
    let version = *raw.version.get_ref();
    let version = u32::try_from(version)
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| {
            err(
                raw.version.span().start,
                "version".into(),
                format!("版本号应为不小于 1 的整数，不能是 {version}"),
                format!("version must be a whole number of at least 1, not {version}"),
            )
        })?;
    let mut kinds = BTreeMap::new();
    if let Some(reference) = reference {
        kinds.extend(reference.kinds.clone());
    }
    for (name, spanned) in &raw.kinds {
        let at = spanned.span().start;
        let path = format!("kinds.{name}");
        if !simple_name(name, false) {
            return Err(err(
                at,
                path,
                "表单名只能由小写字母、数字和 _ 组成".into(),
                "a kind's name takes lowercase letters, digits and '_'".into(),
            ));
        }
        if reference.is_some() && RESERVED_KINDS.contains(&name.as_str()) {
            return Err(err(
                at,
                path,
                format!("“{name}”是系统保留的基础数据类型，模板不能重新定义"),
                format!("{name:?} is a built-in reference kind; a template cannot redefine it"),
            ));
        }
        let kind = spanned.get_ref();
        let mut fields = Vec::new();
        let mut seen = BTreeSet::new();
        for f in &kind.fields {
            let at = f.span().start;
            let def = f.get_ref().clone();
            let path = format!("kinds.{name}.fields.{}", def.name);
            let fail = |zh: String, en: String| Err(err(at, path.clone(), zh, en));
            if !simple_name(&def.name, false) || def.name.starts_with('_') {
                return fail(
                    "字段名只能由小写字母、数字和 _ 组成，且不能以 _ 开头".into(),
                    "a field name takes lowercase letters, digits and '_', and cannot start with '_'"
                        .into(),
                );
            }
            if !seen.insert(def.name.clone()) {
                return fail("字段重复".into(), "the field is declared twice".into());
            }
            if def.label.zh.trim().is_empty() || def.label.en.trim().is_empty() {
                return fail(
                    "缺少中文或英文标签".into(),
                    "needs both a Chinese and an English label".into(),
                );
            }
            let t = def.field_type.name();
            if def.field_type.has_choices() {
                if def.choices.is_empty() {
                    return fail(
                        format!("{t} 类型的字段必须列出 choices"),
                        format!("a {t} field needs choices"),
                    );
                }
                let mut values = BTreeSet::new();
                for c in &def.choices {
                    let ok = !c.value.is_empty()
                        && c.value
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                    if !ok {
                        return fail(
                            format!("选项值“{}”只能由字母、数字、- 和 _ 组成", c.value),
                            format!(
                                "choice value {:?} takes letters, digits, '-' and '_'",
                                c.value
                            ),
                        );
                    }
                    if !values.insert(c.value.as_str()) {
                        return fail(
                            format!("选项值“{}”重复", c.value),
                            format!("choice value {:?} appears twice", c.value),
                        );
                    }
                }
            } else if !def.choices.is_empty() {
                return fail(
                    format!("{t} 类型的字段不能有 choices"),
                    format!("a {t} field takes no choices"),
                );
            }
            if let (Some(min), Some(max)) = (def.min, def.max)
                && min > max
            {
                return fail(
                    format!("min（{min}）大于 max（{max}）"),
                    format!("min ({min}) is larger than max ({max})"),
                );
            }
            if matches!(def.field_type, FieldType::Ref | FieldType::Refs) && def.to.is_none() {
                return fail(
                    "引用字段必须用 to 指明引用哪种记录（或 any）".into(),
                    "a ref field needs `to`: the kind it refers to (or any)".into(),
                );
            }
            fields.push(def);
        }
        for k in &kind.key {
            let ok = fields.iter().any(|f| {
                &f.name == k
                    && f.required
                    && matches!(
                        f.field_type,
                        FieldType::Text
                            | FieldType::Choice
                            | FieldType::Ref
                            | FieldType::Number
                            | FieldType::Date
                    )
            });
            if !ok {
                return Err(err(
                    at,
                    format!("kinds.{name}.key"),
                    format!("key 中的“{k}”必须是本表单的必填字段（文字、选项、引用、数字或日期）"),
                    format!(
                        "key field {k:?} must be a required text, choice, ref, number or date \
                         field of this kind"
                    ),
                ));
            }
        }
        kinds.insert(
            name.clone(),
            KindDef {
                name: name.clone(),
                label: kind.label.clone(),
                key: kind.key.clone(),
                fields,
            },
        );
    }
    // References must name a kind this template knows.
    for (name, spanned) in &raw.kinds {
        for f in &spanned.get_ref().fields {
            let def = f.get_ref();
            let target = match def.field_type {
                FieldType::Ref | FieldType::Refs => def.to.clone(),
                FieldType::Ratings => Some(def.of.clone().unwrap_or_else(|| "member".into())),
                _ => None,
            };
            if let Some(target) = target
                && target != "any"
                && !kinds.contains_key(&target)
            {
                return Err(err(
                    f.span().start,
                    format!("kinds.{name}.fields.{}", def.name),
                    format!("引用了不存在的表单“{target}”"),
                    format!("refers to a kind {target:?} that the template does not define"),
                ));
            }
        }
    }
    Ok(Template {
        id: raw.id.into_inner(),
        version,
        name: raw.name,
        description: raw.description,
        kinds,
        source: source.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_templates_parse_with_their_singleton_keys() {
        // Every kind's forms are checked in tests/templates.rs; here, that they load at all.
        for id in Template::builtin_ids() {
            let t = Template::builtin(id).unwrap();
            assert_eq!(t.id, *id);
            assert_eq!(t.kind("assessment").unwrap().key, vec!["target"]);
            assert_eq!(t.kind("star_rating").unwrap().key, vec!["village", "year"]);
            assert!(t.kind("member").is_some(), "reference kinds are merged in");
        }
    }

    #[test]
    fn dates() {
        for ok in ["2026-05-18", "2024-02-29", "2000-02-29"] {
            assert!(is_date(ok), "{ok}");
        }
        for bad in [
            "2026-5-18",
            "2023-02-29",
            "1900-02-29",
            "2026-13-01",
            "2026-04-31",
            "x",
        ] {
            assert!(!is_date(bad), "{bad}");
        }
    }
}
