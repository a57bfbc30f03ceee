//! Records: the list of a kind in a village (newest first, with search), a record's page
//! (fields by label, references by name, its history), its deletion (confirmed), and conflicts
//! (every value with who wrote it and when; keep one, or write a new value).

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use fieldsync_client_core::store::Writer;
use fieldsync_client_core::{Conflict, FieldValue, Filter, Record, Store};
use fieldsync_protocol::template::{FieldDef, FieldType, KindDef, Template};
use maud::html;
use serde::Deserialize;
use uuid::Uuid;

use super::forms::{form_pairs_value, options_for, problems_of};
use super::{PageResult, campaign_of, context, csrf_field, format_ms, record_name, text_of};
use crate::fields::{
    self, Options, Problems, Typed, display_value, render_field, typed_from_record,
};
use crate::page::{Lang, failure, not_found, page};
use crate::{AppError, AppState};

/// `?q=` on a list: only records whose values contain this text.
#[derive(Debug, Deserialize, Default)]
pub struct ListQuery {
    /// The text searched for (Chinese substrings work).
    #[serde(default)]
    pub q: String,
}

/// `GET /v/{code}/k/{kind}`: the records of a kind in a village, newest first.
pub async fn list(
    State(state): State<AppState>,
    lang: Lang,
    Path((code, kind)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> PageResult {
    let (c, k, text) = (code.clone(), kind.clone(), q.q.clone());
    let found = state
        .with_store(move |s| {
            let Some((campaign, template, village)) = context(s, &c)? else {
                return Ok(None);
            };
            let Some(def) = template.kind(&k).cloned() else {
                return Ok(None);
            };
            let records = s.list(&Filter {
                kind: Some(k.clone()),
                scope: Some(c.clone()),
                campaign: Some(campaign),
                text: (!text.trim().is_empty()).then(|| text.trim().to_string()),
                ..Default::default()
            })?;
            let rows: Vec<(Uuid, String, i64, usize)> = records
                .iter()
                .map(|r| {
                    (
                        r.header.id,
                        record_name(lang, Some(&template), r),
                        r.updated_at,
                        r.conflicts,
                    )
                })
                .collect();
            let name = text_of(&village, "name").unwrap_or_else(|| c.clone());
            Ok(Some((def, name, rows)))
        })
        .await
        .map_err(|e| failure(lang, &e))?;
    let Some((def, village, rows)) = found else {
        return Err(not_found(lang));
    };
    let label = lang.t(&def.label.zh, &def.label.en);
    let body = html! {
        @if let Some((zh, en)) = state.take_flash() { p.flash role="status" { (lang.t(&zh, &en)) } }
        p { a href=(format!("/v/{code}")) { "← " (village) } }
        h1 { (label) " " span.muted { (rows.len()) } }
        div.actions {
            a.button href=(format!("/v/{code}/k/{kind}/new")) { (lang.t("新建", "New")) }
            form method="get" action=(format!("/v/{code}/k/{kind}")) {
                input type="search" name="q" value=(q.q) placeholder=(lang.t("搜索记录内容", "Search the records"))
                    aria-label=(lang.t("搜索", "Search"));
            }
        }
        ul.records {
            @for (id, name, at, conflicts) in &rows {
                li {
                    a href=(format!("/r/{id}")) { (name) } " "
                    span.muted { (format_ms(*at)) }
                    @if *conflicts > 0 { " " a.problem href="/conflicts" { (lang.t("有冲突", "conflict")) } }
                }
            }
        }
        @if rows.is_empty() { p.muted { (lang.t("还没有记录", "No records yet")) } }
    };
    Ok(page(lang, label, body).into_response())
}

/// The name of record `id` as pickers show it.
fn name_of(store: &Store, lang: Lang, template: &Template, id: &str) -> Option<String> {
    let id = Uuid::parse_str(id).ok()?;
    let r = store.get(id).ok()?;
    Some(record_name(lang, Some(template), &r))
}

struct Shown {
    record: Record,
    review: fieldsync_protocol::approval::Review,
    def: KindDef,
    village: String,
    rows: Vec<(String, String)>,
    files: Vec<super::files::FileField>,
    /// The record's changes, newest first: when, by whom, what changed from what to what.
    history: Vec<(String, String, Vec<String>)>,
}

/// The record's history (`fieldsync_protocol::history`) as the page says it: the time, whether
/// this device or another wrote it, and each field's label with its value before and after.
fn history_rows(
    store: &Store,
    lang: Lang,
    template: &fieldsync_protocol::template::Template,
    def: &KindDef,
    record: &Record,
) -> Result<Vec<(String, String, Vec<String>)>, AppError> {
    let doc = store.document(record.header.id)?;
    let writers = store.writers()?;
    let shown = |f: Option<&fieldsync_protocol::template::FieldDef>, v: &Option<FieldValue>| {
        let text = match (f, v) {
            (_, None) => lang.t("（空）", "(empty)").to_string(),
            (Some(f), Some(v)) => {
                display_value(lang, f, v, &|id| name_of(store, lang, template, id))
            }
            (None, Some(v)) => format!("{v:?}"),
        };
        let short: String = text.chars().take(60).collect();
        if short.chars().count() < text.chars().count() {
            format!("{short}…")
        } else {
            short
        }
    };
    let mut rows: Vec<(String, String, Vec<String>)> =
        fieldsync_protocol::history::of(&record.header, &doc)
            .into_iter()
            .map(|e| {
                let who = if e.genesis {
                    lang.t("（记录建立）", "(record created)").to_string()
                } else {
                    writer_text(lang, &writers.of(&e.actor))
                };
                let changes = e
                    .fields
                    .iter()
                    .filter(|c| {
                        def.field(&c.field).is_none_or(|f| {
                            f.field_type != fieldsync_protocol::template::FieldType::Attachments
                        })
                    })
                    .map(|c| {
                        let f = def.field(&c.field);
                        let label = f
                            .map(|f| lang.t(&f.label.zh, &f.label.en).to_string())
                            .unwrap_or_else(|| c.field.clone());
                        format!("{label}：{} → {}", shown(f, &c.before), shown(f, &c.after))
                    })
                    .collect();
                (format_ms(e.time), who, changes)
            })
            .collect();
    rows.reverse();
    Ok(rows)
}

fn shown(store: &Store, lang: Lang, id: Uuid) -> Result<Option<Shown>, AppError> {
    let Ok(record) = store.get(id) else {
        return Ok(None);
    };
    let Some((_, template, village)) = context(store, &record.header.scope)? else {
        return Ok(None);
    };
    let Some(def) = template.kind(&record.header.kind).cloned() else {
        return Ok(None);
    };
    let rows = def
        .fields
        .iter()
        .filter(|f| f.field_type != fieldsync_protocol::template::FieldType::Attachments)
        .filter_map(|f| {
            let v = record.fields.get(&f.name)?;
            let text = display_value(lang, f, v, &|id| name_of(store, lang, &template, id));
            Some((lang.t(&f.label.zh, &f.label.en).to_string(), text))
        })
        .collect();
    let files = super::files::file_fields(store, &def, &record)?;
    let history = history_rows(store, lang, &template, &def, &record)?;
    Ok(Some(Shown {
        history,
        files,
        village: text_of(&village, "name").unwrap_or_else(|| record.header.scope.clone()),
        review: store.review(id)?,
        record,
        def,
        rows,
    }))
}

/// `GET /r/{id}`: a record's fields by label, references by name.
pub async fn show(State(state): State<AppState>, lang: Lang, Path(id): Path<Uuid>) -> PageResult {
    let found = state
        .with_store(move |s| shown(s, lang, id))
        .await
        .map_err(|e| failure(lang, &e))?;
    let Some(v) = found else {
        return Err(not_found(lang));
    };
    let code = &v.record.header.scope;
    let label = lang.t(&v.def.label.zh, &v.def.label.en);
    let body = html! {
        @if let Some((zh, en)) = state.take_flash() { p.flash role="status" { (lang.t(&zh, &en)) } }
        p { a href=(format!("/v/{code}")) { "← " (v.village) } " · "
            a href=(format!("/v/{code}/k/{}", v.def.name)) { (label) } }
        h1 { (label) }
        @if v.record.deleted { p.error { (lang.t("此记录已删除", "This record was deleted")) } }
        @if v.record.conflicts > 0 {
            p.error { a href="/conflicts" { (lang.t("此记录有冲突待处理", "This record has conflicts to resolve")) } }
        }
        p class=(format!("review-{}", v.review.state.as_str())) {
            (lang.t("审核状态：", "Review: ")) strong { (lang.t(v.review.state.zh(), v.review.state.en())) }
            @if v.review.at.is_some() { " · " (v.review.by) }
            @if !v.review.comment.is_empty() { br; (lang.t("意见：", "Comment: ")) (v.review.comment) }
            @if v.review.state == fieldsync_protocol::approval::State::Returned {
                br; span.muted { (lang.t("修改后会重新提交审核。", "Editing it sends it back for review.")) }
            }
        }
        dl {
            @for (label, text) in &v.rows { dt { (label) } dd { (text) } }
        }
        (super::files::section(&state, lang, id, &v.files, v.record.deleted))
        p.muted { (lang.t("最后修改：", "Last changed: ")) (format_ms(v.record.updated_at)) }
        @if !v.history.is_empty() {
            details.history {
                summary { (lang.t(&format!("修改记录（{} 次）", v.history.len()), &format!("History ({} changes)", v.history.len()))) }
                ol {
                    @for (when, who, changes) in &v.history {
                        li {
                            strong { (when) } " · " (who)
                            @if !changes.is_empty() {
                                ul { @for c in changes { li { (c) } } }
                            }
                        }
                    }
                }
            }
        }
        @if !v.record.deleted {
            div.actions {
                a.button href=(format!("/r/{id}/edit")) { (lang.t("修改", "Edit")) }
                a.button.secondary href=(format!("/r/{id}/delete")) { (lang.t("删除", "Delete")) }
            }
        }
    };
    Ok(page(lang, label, body).into_response())
}

/// `GET /r/{id}/delete`: asks before deleting.
pub async fn confirm_delete(
    State(state): State<AppState>,
    lang: Lang,
    Path(id): Path<Uuid>,
) -> PageResult {
    let found = state
        .with_store(move |s| shown(s, lang, id))
        .await
        .map_err(|e| failure(lang, &e))?;
    let Some(v) = found.filter(|v| !v.record.deleted) else {
        return Err(not_found(lang));
    };
    let label = lang.t(&v.def.label.zh, &v.def.label.en);
    let body = html! {
        h1 { (lang.t("删除这条记录？", "Delete this record?")) }
        p { (label) " · " (v.village) }
        p.muted { (lang.t("删除会同步到服务器。", "The deletion syncs to the server.")) }
        form method="post" action=(format!("/r/{id}/delete")) {
            (csrf_field(&state))
            div.actions {
                button type="submit" { (lang.t("确认删除", "Delete")) }
                a.button.secondary href=(format!("/r/{id}")) { (lang.t("取消", "Cancel")) }
            }
        }
    };
    Ok(page(lang, lang.t("删除", "Delete"), body).into_response())
}

/// `POST /r/{id}/delete`: deletes (a tombstone that syncs), back to the list.
pub async fn delete(State(state): State<AppState>, lang: Lang, Path(id): Path<Uuid>) -> PageResult {
    let back = state
        .with_store(move |s| {
            let Ok(r) = s.get(id) else {
                return Ok(None);
            };
            s.delete(id)?;
            Ok(Some(format!("/v/{}/k/{}", r.header.scope, r.header.kind)))
        })
        .await
        .map_err(|e| failure(lang, &e))?;
    let Some(back) = back else {
        return Err(not_found(lang));
    };
    state.set_flash("已删除".into(), "deleted".into());
    Ok(Redirect::to(&back).into_response())
}

/// Who wrote a change or a value, as the pages say it: one rule for a record's history and its
/// conflicts (client-core's [`fieldsync_client_core::store::Writers`]: this device, a person the
/// server named after a sync, or another device known only by the start of its actor id).
pub fn writer_text(lang: Lang, writer: &Writer) -> String {
    match writer {
        Writer::ThisDevice => lang.t("本机", "this device").to_string(),
        Writer::Named(name) => name.clone(),
        Writer::Unknown(short) => format!("{} ({short})", lang.t("另一台设备", "another device")),
    }
}

/// One of a conflict's values as the page shows it.
struct ConflictValueRow {
    text: String,
    who: String,
    when: String,
}

/// A field in conflict: every value with who wrote it and when, and the form for a new value.
struct ConflictField {
    field: String,
    label: String,
    values: Vec<ConflictValueRow>,
    /// The field's definition, when the template has it (a new value can then be written).
    def: Option<FieldDef>,
    /// What the new value's input shows: the value the record shows now, or what was typed.
    typed: Typed,
    /// Problems with a new value just refused (the field's, and the record's as a whole).
    problems: Problems,
}

struct ConflictRow {
    id: Uuid,
    title: String,
    kind: String,
    options: Options,
    fields: Vec<ConflictField>,
}

/// A new value refused: where, what was typed, and why.
struct Refused {
    id: Uuid,
    field: String,
    typed: Typed,
    problems: Problems,
}

fn conflict_rows(
    store: &Store,
    lang: Lang,
    refused: Option<&Refused>,
) -> Result<Vec<ConflictRow>, AppError> {
    let Some(campaign) = campaign_of(store)? else {
        return Ok(Vec::new());
    };
    let template = store.template(campaign)?;
    let writers = store.writers()?;
    let mut out = Vec::new();
    for r in store.list(&Filter {
        campaign: Some(campaign),
        conflicted: true,
        ..Default::default()
    })? {
        let def = template.as_ref().and_then(|t| t.kind(&r.header.kind));
        let options = match (def, &template) {
            (Some(d), Some(t)) => options_for(store, lang, t, campaign, &r.header.scope, d)?,
            _ => Options::new(),
        };
        let shown_now = def
            .map(|d| typed_from_record(d, &r.fields))
            .unwrap_or_default();
        let mut fields = Vec::new();
        for Conflict { field, values } in store.conflicts(r.header.id)? {
            let fdef = def.and_then(|d| d.field(&field));
            let label = fdef
                .map(|f| lang.t(&f.label.zh, &f.label.en).to_string())
                .unwrap_or_else(|| field.clone());
            let values = values
                .iter()
                .map(|v| ConflictValueRow {
                    text: match (fdef, &template) {
                        (Some(f), Some(t)) => {
                            display_value(lang, f, &v.value, &|id| name_of(store, lang, t, id))
                        }
                        _ => v.value.to_json().to_string(),
                    },
                    who: writer_text(lang, &writers.of(&v.actor)),
                    when: v
                        .time
                        .filter(|t| *t > 0)
                        .map(format_ms)
                        .unwrap_or_else(|| lang.t("时间不详", "time unknown").to_string()),
                })
                .collect();
            let (typed, problems) = match refused {
                Some(x) if x.id == r.header.id && x.field == field => {
                    (x.typed.clone(), x.problems.clone())
                }
                _ => (
                    shown_now
                        .iter()
                        .filter(|(k, _)| *k == &field || k.starts_with(&format!("{field}.")))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    Problems::new(),
                ),
            };
            fields.push(ConflictField {
                field,
                label,
                values,
                // Files are added on the record's page, not typed.
                def: fdef
                    .filter(|f| f.field_type != FieldType::Attachments)
                    .cloned(),
                typed,
                problems,
            });
        }
        out.push(ConflictRow {
            id: r.header.id,
            title: record_name(lang, template.as_ref(), &r),
            kind: def
                .map(|d| lang.t(&d.label.zh, &d.label.en).to_string())
                .unwrap_or_else(|| r.header.kind.clone()),
            options,
            fields,
        });
    }
    Ok(out)
}

fn conflicts_page(state: &AppState, lang: Lang, rows: &[ConflictRow]) -> maud::Markup {
    let body = html! {
        @if let Some((zh, en)) = state.take_flash() { p.flash role="status" { (lang.t(&zh, &en)) } }
        h1 { (lang.t("待处理冲突", "Conflicts")) }
        @if rows.is_empty() { p.muted #none { (lang.t("没有待处理的冲突", "No conflicts waiting")) } }
        @else {
            p.muted { (lang.t(
                "两台设备同时改了同一项。保留其中一个值，或写一个新值；你的选择会同步到其他设备。",
                "Two devices changed the same item at once. Keep one of the values, or write a new one; your choice syncs to the other devices.")) }
        }
        @for r in rows {
            // A record without a name of its own is called by its kind already.
            h2 { a href=(format!("/r/{}", r.id)) {
                @if !r.title.starts_with(&r.kind) { (r.kind) " · " }
                (r.title)
            } }
            @for f in &r.fields {
                div.field.conflict id=(format!("c-{}-{}", r.id, f.field)) {
                    label.name { (f.label) }
                    @for (i, v) in f.values.iter().enumerate() {
                        form method="post" action=(format!("/r/{}/resolve", r.id)) {
                            (csrf_field(state))
                            input type="hidden" name="field" value=(f.field);
                            input type="hidden" name="index" value=(i);
                            p.value {
                                strong { (v.text) } br;
                                span.muted.writer { (v.who) " · " (v.when) } " "
                                button.secondary type="submit" { (lang.t("保留此值", "Keep this value")) }
                            }
                        }
                    }
                    @if let Some(def) = &f.def {
                        details.new-value open[!f.problems.is_empty()] {
                            summary { (lang.t("写一个新值", "Write a new value")) }
                            form method="post" action=(format!("/r/{}/resolve", r.id)) {
                                (csrf_field(state))
                                input type="hidden" name="field" value=(f.field);
                                @for (key, list) in &f.problems {
                                    @if *key != f.field {
                                        @for (zh, en) in list { p.problem role="alert" { (lang.t(zh, en)) } }
                                    }
                                }
                                (render_field(lang, def, &f.typed, &r.options, &f.problems))
                                button type="submit" { (lang.t("保存新值", "Save the new value")) }
                            }
                        }
                    }
                }
            }
        }
    };
    page(lang, lang.t("冲突", "Conflicts"), body)
}

/// `GET /conflicts`: every field two people set differently, each value with who wrote it and
/// when, a button to keep it, and a form to write a new value instead.
pub async fn conflicts(State(state): State<AppState>, lang: Lang) -> PageResult {
    let rows = state
        .with_store(move |s| conflict_rows(s, lang, None))
        .await
        .map_err(|e| failure(lang, &e))?;
    Ok(conflicts_page(&state, lang, &rows).into_response())
}

/// What a resolution did.
enum Resolution {
    /// One of the values was kept.
    Kept,
    /// A new value was written.
    Written,
    /// The conflict is no longer there.
    Gone,
    /// The new value was refused; the page again with the problems.
    Refused(Vec<ConflictRow>),
}

/// `POST /r/{id}/resolve`: `field` and `index` keep one of a field's conflicting values; `field`
/// and the field's input (`f.<field>`, as on the edit form) write a new value instead, read by
/// client-core's `parse_input` and checked against the template with the whole record
/// (`Store::edit_form`, whose write of a conflicted field resolves it). Either is written as a
/// change, so the choice syncs.
pub async fn resolve(
    State(state): State<AppState>,
    lang: Lang,
    Path(id): Path<Uuid>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> PageResult {
    let field = form_pairs_value(&pairs, "field").unwrap_or_default();
    let index = form_pairs_value(&pairs, "index");
    let typed = fields::typed_from_pairs(pairs);
    let outcome = state
        .with_store(move |s| {
            let Ok(conflicts) = s.conflicts(id) else {
                return Ok(Resolution::Gone);
            };
            let Some(conflict) = conflicts.into_iter().find(|c| c.field == field) else {
                return Ok(Resolution::Gone);
            };
            if let Some(index) = index {
                let Some(v) = index
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| conflict.values.into_iter().nth(i))
                else {
                    return Ok(Resolution::Gone);
                };
                s.resolve(id, &field, v.value)?;
                return Ok(Resolution::Kept);
            }
            let record = s.get(id)?;
            let Some(template) = s.template(record.header.campaign)? else {
                return Ok(Resolution::Gone);
            };
            let Some(kind) = template.kind(&record.header.kind) else {
                return Ok(Resolution::Gone);
            };
            // Only a field of the form takes a typed value (files are added on the record's
            // page; reserved fields are not typed): anything else keeps its conflict.
            if kind
                .field(&field)
                .is_none_or(|f| f.field_type == FieldType::Attachments)
            {
                return Ok(Resolution::Gone);
            }
            // Only this field's input counts.
            let typed: Typed = typed
                .into_iter()
                .filter(|(k, _)| *k == field || k.starts_with(&format!("{field}.")))
                .collect();
            let (values, mut problems) = fields::parse(kind, &typed);
            if problems.is_empty() {
                let value = values.get(&field).cloned().unwrap_or(FieldValue::Null);
                match s.edit_form(id, &BTreeMap::from([(field.clone(), value)])) {
                    Ok(()) => return Ok(Resolution::Written),
                    Err(e) => problems = problems_of(kind, e)?,
                }
            }
            let refused = Refused {
                id,
                field,
                typed,
                problems,
            };
            Ok(Resolution::Refused(conflict_rows(s, lang, Some(&refused))?))
        })
        .await
        .map_err(|e| failure(lang, &e))?;
    match outcome {
        Resolution::Kept => state.set_flash("冲突已解决".into(), "conflict resolved".into()),
        Resolution::Written => state.set_flash(
            "冲突已解决：已写入新值".into(),
            "conflict resolved with the new value".into(),
        ),
        Resolution::Gone => state.set_flash(
            "这个冲突已不存在（可能已被处理）".into(),
            "this conflict no longer exists (perhaps already resolved)".into(),
        ),
        Resolution::Refused(rows) => {
            let mut r = conflicts_page(&state, lang, &rows).into_response();
            *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            return Ok(r);
        }
    }
    Ok(Redirect::to("/conflicts").into_response())
}
