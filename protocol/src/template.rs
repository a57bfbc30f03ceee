//! Campaign templates: a campaign's forms as data (TOML, see `docs/TEMPLATES.md`), and the
//! validation of a record's fields against them, with messages in Chinese and English.
//!
//! Both ends use this module: a device validates a record before it saves it, the server
//! validates every merged record again and flags (never drops) what fails.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::record::FieldValue;

mod validate;
pub use validate::{Invalid, Lookup, NoRecords, Problem, ProblemCode, RefPolicy};

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
    /// Photos, recordings and scans: a map from each attachment's SHA-256 to its description
    /// ([`crate::attachment::AttachmentRef`]); the bytes travel apart.
    Attachments,
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
            FieldType::Attachments => "attachments",
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
    /// The media types an `attachments` field takes (`image/*`, `application/pdf`); empty for
    /// any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accept: Vec<String>,
    /// The largest file an `attachments` field takes, in bytes (default
    /// [`DEFAULT_MAX_ATTACHMENT_BYTES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
}

/// The largest attachment a field takes unless its template says otherwise (100 MiB: an hour
/// of recorded interview).
pub const DEFAULT_MAX_ATTACHMENT_BYTES: u64 = 100 * 1024 * 1024;

impl FieldDef {
    /// The label of `value` among the choices, if it is one.
    pub fn choice(&self, value: &str) -> Option<&Choice> {
        self.choices.iter().find(|c| c.value == value)
    }

    /// The largest attachment this field takes.
    pub fn max_attachment_bytes(&self) -> u64 {
        self.max_bytes.unwrap_or(DEFAULT_MAX_ATTACHMENT_BYTES)
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
    /// Who reviews the campaign's records besides administrators and group leaders.
    pub review: ReviewSettings,
    /// What each village should reach, where the campaign record sets no target of its own.
    pub targets: Targets,
    /// The TOML it was parsed from (what is published and synced).
    pub source: String,
}

/// What each village should reach: a template's `[targets]` table (the defaults of every
/// campaign that uses it), and a campaign record's `target_*` and `deadline` fields, which take
/// precedence one by one ([`Targets::or_defaults`]). Every target is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    /// Every member of each village's team is to be interviewed.
    #[serde(default)]
    pub all_members: bool,
    /// Villagers (anyone but a team member) to interview per village.
    pub villagers: Option<u64>,
    /// Meetings per village.
    pub meetings: Option<u64>,
    /// Questionnaires per village.
    pub questionnaires: Option<u64>,
    /// Evaluation forms per village.
    pub evaluations: Option<u64>,
    /// Document reviews per village.
    pub document_reviews: Option<u64>,
    /// When the field work should be done (`YYYY-MM-DD`).
    pub deadline: Option<String>,
}

impl Targets {
    /// The targets in a campaign record's fields (`target_meetings`, …, `deadline`); 0 or a
    /// missing field is no target.
    pub fn from_fields(fields: &serde_json::Value) -> Self {
        let n = |name: &str| {
            fields
                .get(name)
                .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f.max(0.0) as u64)))
                .filter(|n| *n > 0)
        };
        Targets {
            all_members: matches!(
                fields.get("target_all_members"),
                Some(serde_json::Value::Bool(true))
            ) || fields.get("target_all_members").and_then(|v| v.as_i64()) == Some(1),
            villagers: n("target_villagers"),
            meetings: n("target_meetings"),
            questionnaires: n("target_questionnaires"),
            evaluations: n("target_evaluations"),
            document_reviews: n("target_document_reviews"),
            deadline: fields
                .get("deadline")
                .and_then(serde_json::Value::as_str)
                .filter(|d| !d.is_empty())
                .map(String::from),
        }
    }

    /// These targets (a campaign's), with `defaults` (its template's) where they set none.
    pub fn or_defaults(self, defaults: &Targets) -> Self {
        let positive = |n: Option<u64>| n.filter(|n| *n > 0);
        Targets {
            all_members: self.all_members || defaults.all_members,
            villagers: self.villagers.or(positive(defaults.villagers)),
            meetings: self.meetings.or(positive(defaults.meetings)),
            questionnaires: self.questionnaires.or(positive(defaults.questionnaires)),
            evaluations: self.evaluations.or(positive(defaults.evaluations)),
            document_reviews: self
                .document_reviews
                .or(positive(defaults.document_reviews)),
            deadline: self.deadline.or_else(|| defaults.deadline.clone()),
        }
    }

    /// Whether any target is set.
    pub fn any(&self) -> bool {
        self.all_members
            || self.villagers.is_some()
            || self.meetings.is_some()
            || self.questionnaires.is_some()
            || self.evaluations.is_some()
            || self.document_reviews.is_some()
    }
}

/// A template's `[review]` table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewSettings {
    /// Whether the department's viewers (组织部 staff who read everything) may approve and
    /// return records too (`viewers = true`); they still write nothing else.
    #[serde(default)]
    pub viewers: bool,
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
    #[serde(default)]
    review: ReviewSettings,
    #[serde(default)]
    targets: Option<Spanned<Targets>>,
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
            if def.field_type != FieldType::Attachments
                && (!def.accept.is_empty() || def.max_bytes.is_some())
            {
                return fail(
                    format!("{t} 类型的字段不能有 accept 或 max_bytes"),
                    format!("a {t} field takes no accept or max_bytes"),
                );
            }
            let media_type = |a: &str| match a.strip_suffix("/*") {
                Some(family) => crate::attachment::is_media_type(&format!("{family}/x")),
                None => crate::attachment::is_media_type(a),
            };
            if let Some(bad) = def.accept.iter().find(|a| !media_type(a)) {
                return fail(
                    format!("accept 中的“{bad}”不是文件类型（如 image/*、application/pdf）"),
                    format!(
                        "{bad:?} in accept is not a media type (such as image/* or application/pdf)"
                    ),
                );
            }
            if def.max_bytes == Some(0) {
                return fail(
                    "max_bytes 应大于 0".into(),
                    "max_bytes must be more than 0".into(),
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
    let targets = match raw.targets {
        None => Targets::default(),
        Some(t) => {
            let start = t.span().start;
            let t = t.into_inner();
            if let Some(d) = &t.deadline
                && !validate::is_date(d)
            {
                return Err(err(
                    start,
                    "targets.deadline".into(),
                    format!("时限“{d}”不是日期，请写成 2026-12-31 这样"),
                    format!("deadline {d:?} is not a date: write it as 2026-12-31"),
                ));
            }
            t
        }
    };
    Ok(Template {
        id: raw.id.into_inner(),
        version,
        name: raw.name,
        description: raw.description,
        kinds,
        review: raw.review,
        targets,
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
        use super::validate::is_date;
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
