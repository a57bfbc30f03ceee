//! One form field for each template field type (docs/TEMPLATES.md): rendering it as HTML that
//! works without JavaScript, reading back what was typed into it (through client-core's
//! `parse_input`, as the CLI does), and showing a stored value by its label.
//!
//! What was typed travels as [`Typed`]: the input name without its `f.` prefix → the values sent
//! (several for check boxes). A ratings field sends one input per rated record:
//! `<field>.<record id>`.

use std::collections::BTreeMap;

use fieldsync_client_core::FieldValue;
use fieldsync_client_core::forms::parse_input;
use fieldsync_protocol::template::{FieldDef, FieldType, KindDef};
use maud::{Markup, html};

use crate::page::Lang;

/// The prefix of every form input that holds a field (`f.notes`), keeping the form's own
/// inputs (`csrf`, `action`) apart from any field name.
pub const PREFIX: &str = "f.";

/// What was typed into a form: input name (without [`PREFIX`]) → the values sent.
pub type Typed = BTreeMap<String, Vec<String>>;

/// Problems per field name (empty name: the record as a whole), each in Chinese and English.
pub type Problems = BTreeMap<String, Vec<(String, String)>>;

/// The records a field may pick from (`ref`, `refs`) or rates (`ratings`), by field name:
/// (id, name shown), in the order shown.
pub type Options = BTreeMap<String, Vec<(String, String)>>;

/// The field inputs of a submitted form (pairs as the body sends them), without the others.
pub fn typed_from_pairs(pairs: Vec<(String, String)>) -> Typed {
    let mut out = Typed::new();
    for (k, v) in pairs {
        if let Some(name) = k.strip_prefix(PREFIX) {
            out.entry(name.to_string()).or_default().push(v);
        }
    }
    out
}

fn first(typed: &Typed, name: &str) -> String {
    typed
        .get(name)
        .and_then(|v| v.first())
        .cloned()
        .unwrap_or_default()
}

/// What a field's inputs hold, as the text `parse_input` reads (empty when nothing was typed).
fn raw_input(f: &FieldDef, typed: &Typed) -> String {
    match f.field_type {
        FieldType::Ratings => {
            let prefix = format!("{}.", f.name);
            typed
                .iter()
                .filter_map(|(k, v)| {
                    let id = k.strip_prefix(&prefix)?;
                    let rating = v.iter().find(|x| !x.trim().is_empty())?;
                    Some(format!("{id}={}", rating.trim()))
                })
                .collect::<Vec<_>>()
                .join(",")
        }
        FieldType::MultiChoice | FieldType::Refs => typed
            .get(&f.name)
            .map(|v| {
                v.iter()
                    .map(|x| x.trim())
                    .filter(|x| !x.is_empty())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default(),
        _ => first(typed, &f.name),
    }
}

/// Reads every field of `kind` from what was typed: the values to save, and the problems of
/// input that could not be read (a number that is not one, a choice that does not exist).
/// Fields left empty are absent; the template's validation decides whether that is allowed.
pub fn parse(kind: &KindDef, typed: &Typed) -> (BTreeMap<String, FieldValue>, Problems) {
    let mut values = BTreeMap::new();
    let mut problems = Problems::new();
    for f in &kind.fields {
        let raw = raw_input(f, typed);
        if raw.trim().is_empty() {
            continue;
        }
        match parse_input(f, &raw) {
            Ok(v) => {
                values.insert(f.name.clone(), v);
            }
            Err((zh, en)) => problems.entry(f.name.clone()).or_default().push((
                format!("“{}”：{zh}", f.label.zh),
                format!("{}: {en}", f.label.en),
            )),
        }
    }
    (values, problems)
}

/// What a form shows for a stored record (to edit it).
pub fn typed_from_record(kind: &KindDef, fields: &BTreeMap<String, FieldValue>) -> Typed {
    let mut out = Typed::new();
    for f in &kind.fields {
        let Some(v) = fields.get(&f.name) else {
            continue;
        };
        match (f.field_type, v) {
            (FieldType::Ratings, FieldValue::Map(m)) => {
                for (id, rating) in m {
                    out.insert(format!("{}.{id}", f.name), vec![rating.clone()]);
                }
            }
            (FieldType::MultiChoice | FieldType::Refs, FieldValue::Str(s)) => {
                out.insert(
                    f.name.clone(),
                    s.split(',')
                        .filter(|x| !x.is_empty())
                        .map(str::to_string)
                        .collect(),
                );
            }
            (_, FieldValue::Bool(b)) => {
                out.insert(f.name.clone(), vec![if *b { "yes" } else { "no" }.into()]);
            }
            (_, FieldValue::Str(s) | FieldValue::Text(s)) => {
                out.insert(f.name.clone(), vec![s.clone()]);
            }
            (_, FieldValue::Int(i)) => {
                out.insert(f.name.clone(), vec![i.to_string()]);
            }
            (_, FieldValue::Float(x)) => {
                out.insert(f.name.clone(), vec![x.to_string()]);
            }
            _ => {}
        }
    }
    out
}

fn number_attr(x: Option<f64>) -> Option<String> {
    x.map(|x| x.to_string())
}

/// The input names of the files chosen on a new record's form: `file.<field>`.
pub const FILE_PREFIX: &str = "file.";

/// An attachments field on a new record's form: a file input (camera, recorder or disk, several
/// at once) whose files are added when the record is saved.
pub fn render_new_files(lang: Lang, f: &FieldDef) -> Markup {
    let id = format!("field-{}", f.name);
    html! {
        div.field id=(format!("at-{}", f.name)) {
            label.name for=(id) { (lang.t(&f.label.zh, &f.label.en)) }
            @if let Some(help) = &f.help { p.help { (lang.t(&help.zh, &help.en)) } }
            input type="file" id=(id) name=(format!("{FILE_PREFIX}{}", f.name)) multiple
                accept=[(!f.accept.is_empty()).then(|| f.accept.join(","))];
            p.help {
                (lang.t("保存记录时一并添加；单个文件不超过 ", "added when the record is saved; each file at most "))
                (fieldsync_protocol::attachment::size_text(f.max_attachment_bytes()))
            }
        }
    }
}

/// One field of a form: its label (with the required mark), help text, input and the problems
/// found with it.
pub fn render_field(
    lang: Lang,
    f: &FieldDef,
    typed: &Typed,
    options: &Options,
    problems: &Problems,
) -> Markup {
    let input = format!("{PREFIX}{}", f.name);
    let id = format!("field-{}", f.name);
    let value = first(typed, &f.name);
    let chosen = typed.get(&f.name).cloned().unwrap_or_default();
    let mine = problems.get(&f.name);
    let picks = options.get(&f.name).map(Vec::as_slice).unwrap_or_default();
    html! {
        div.field.bad[mine.is_some()] id=(format!("at-{}", f.name)) {
            label.name for=(id) {
                (lang.t(&f.label.zh, &f.label.en))
                @if f.required { " " span.req title=(lang.t("必填", "required")) { "*" } }
            }
            @if let Some(help) = &f.help { p.help { (lang.t(&help.zh, &help.en)) } }
            @if let Some(list) = mine {
                @for (zh, en) in list { p.problem role="alert" { (lang.t(zh, en)) } }
            }
            @match f.field_type {
                FieldType::Text => {
                    input type="text" id=(id) name=(input) value=(value)
                        maxlength=[f.max_length] required[f.required];
                }
                FieldType::LongText => {
                    textarea.long id=(id) name=(input) maxlength=[f.max_length] required[f.required] { (value) }
                }
                FieldType::Number => {
                    input type="number" id=(id) name=(input) value=(value)
                        step=(if f.integer { "1" } else { "any" })
                        min=[number_attr(f.min)] max=[number_attr(f.max)] required[f.required];
                    @if f.min.is_some() || f.max.is_some() {
                        p.help {
                            @match (f.min, f.max) {
                                (Some(a), Some(b)) => { (lang.t("范围", "from")) " " (a) " – " (b) }
                                (Some(a), None) => { (lang.t("不小于", "at least")) " " (a) }
                                (None, Some(b)) => { (lang.t("不大于", "at most")) " " (b) }
                                (None, None) => {}
                            }
                        }
                    }
                }
                FieldType::Date => {
                    input type="date" id=(id) name=(input) value=(value) required[f.required];
                }
                FieldType::Bool => {
                    div.opts id=(id) {
                        label { input type="radio" name=(input) value="yes" checked[value == "yes"]; (lang.t("是", "Yes")) }
                        label { input type="radio" name=(input) value="no" checked[value == "no"]; (lang.t("否", "No")) }
                        @if !f.required {
                            label.muted { input type="radio" name=(input) value="" checked[value.is_empty()]; (lang.t("不填", "Not answered")) }
                        }
                    }
                }
                FieldType::Choice => {
                    div.opts id=(id) {
                        @for c in &f.choices {
                            label { input type="radio" name=(input) value=(c.value) checked[value == c.value]; (lang.t(&c.zh, &c.en)) }
                        }
                        @if !f.required {
                            label.muted { input type="radio" name=(input) value="" checked[value.is_empty()]; (lang.t("不填", "Not answered")) }
                        }
                    }
                }
                FieldType::MultiChoice => {
                    div.opts id=(id) {
                        @for c in &f.choices {
                            label { input type="checkbox" name=(input) value=(c.value) checked[chosen.contains(&c.value)]; (lang.t(&c.zh, &c.en)) }
                        }
                    }
                }
                FieldType::Attachments => {
                    p.muted id=(id) { (lang.t("保存记录后，在记录页拍照、录音或选择文件添加；已有的文件随记录保留", "save the record, then add photos, recordings or files on its page; files already attached are kept")) }
                }
                FieldType::Ratings => {
                    @if picks.is_empty() {
                        p.muted id=(id) { (lang.t("本村还没有可评价的班子成员（请先同步）", "no members to rate in this village yet (sync first)")) }
                    } @else {
                        table.grid id=(id) {
                            thead { tr {
                                th { (lang.t("姓名", "Name")) }
                                @for c in &f.choices { th { (lang.t(&c.zh, &c.en)) } }
                            } }
                            tbody {
                                @for (rid, name) in picks {
                                    @let cell = format!("{}.{rid}", f.name);
                                    @let current = first(typed, &cell);
                                    tr {
                                        td { (name) }
                                        @for c in &f.choices {
                                            td.c { input type="radio" name=(format!("{PREFIX}{cell}")) value=(c.value)
                                                checked[current == c.value] aria-label=(format!("{name} {}", lang.t(&c.zh, &c.en))); }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                FieldType::Ref => {
                    select id=(id) name=(input) required[f.required] {
                        option value="" { (lang.t("（请选择）", "(choose)")) }
                        @for (rid, name) in picks {
                            option value=(rid) selected[value == *rid] { (name) }
                        }
                    }
                }
                FieldType::Refs => {
                    div.opts id=(id) {
                        @for (rid, name) in picks {
                            label { input type="checkbox" name=(input) value=(rid) checked[chosen.contains(rid)]; (name) }
                        }
                        @if picks.is_empty() { span.muted { (lang.t("（无可选记录）", "(nothing to choose)")) } }
                    }
                }
            }
        }
    }
}

/// A stored value as people read it: choices by label, references and rated records by name.
pub fn display_value(
    lang: Lang,
    f: &FieldDef,
    value: &FieldValue,
    name_of: &dyn Fn(&str) -> Option<String>,
) -> String {
    let choice = |v: &str| {
        f.choice(v)
            .map(|c| lang.t(&c.zh, &c.en).to_string())
            .unwrap_or_else(|| v.to_string())
    };
    let name = |id: &str| name_of(id).unwrap_or_else(|| id.to_string());
    match (f.field_type, value) {
        (FieldType::Choice, FieldValue::Str(s)) => choice(s),
        (FieldType::MultiChoice, FieldValue::Str(s)) => s
            .split(',')
            .filter(|x| !x.is_empty())
            .map(choice)
            .collect::<Vec<_>>()
            .join("、"),
        (FieldType::Ref, FieldValue::Str(s)) => name(s),
        (FieldType::Refs, FieldValue::Str(s)) => s
            .split(',')
            .filter(|x| !x.is_empty())
            .map(name)
            .collect::<Vec<_>>()
            .join("、"),
        (FieldType::Ratings, FieldValue::Map(m)) => m
            .iter()
            .map(|(id, r)| format!("{}：{}", name(id), choice(r)))
            .collect::<Vec<_>>()
            .join("\n"),
        (_, FieldValue::Bool(b)) => lang
            .t(if *b { "是" } else { "否" }, if *b { "Yes" } else { "No" })
            .into(),
        (_, FieldValue::Str(s) | FieldValue::Text(s)) => s.clone(),
        (_, FieldValue::Int(i)) => i.to_string(),
        (_, FieldValue::Float(x)) => x.to_string(),
        (_, FieldValue::Null) => String::new(),
        (_, other) => other.to_json().to_string(),
    }
}

#[cfg(test)]
mod tests;
