//! The form pages: a new record of a kind in a village (save, save and new, keep as a draft)
//! and the edit of a record. Validation is client-core's; every problem is shown at its field,
//! nothing is saved while any remains, and what was typed stays in the form.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use fieldsync_client_core::{FieldValue, Filter, FormError, Store};
use fieldsync_protocol::template::{CAMPAIGN_SCOPE, FieldType, KindDef, Template};
use maud::html;
use serde::Deserialize;
use uuid::Uuid;

use super::{PageResult, context, csrf_field, record_name, text_of};
use crate::fields::{self, Options, Problems, Typed};
use crate::page::{Lang, failure, not_found, page};
use crate::{AppError, AppState};

/// Fields that "save and new" keeps for the next form when the kind has them: what stays the
/// same through a pile of paper forms from one meeting (the respondents' category, the day,
/// the work group, the team rated).
pub const KEEP_ON_SAVE_AND_NEW: &[&str] = &[
    "respondent_category",
    "date",
    "work_group",
    "interviewer",
    "team",
];

/// The store setting that keeps the draft of a new record of `kind` in village `code`. A
/// draft is a device setting, never a record: it does not sync.
pub fn draft_key(campaign: Uuid, code: &str, kind: &str) -> String {
    format!("draft:{campaign}:{code}:{kind}")
}

/// The store setting that keeps the draft of an edit of record `id` (never synced either).
pub fn edit_draft_key(id: Uuid) -> String {
    format!("draft:edit:{id}")
}

/// The setting that remembers the last form saved under draft `key`: an autosave of that form
/// arriving after its save (a request still on its way) must not bring the saved values back
/// as a draft, or the next form would offer them again.
fn done_key(key: &str) -> String {
    format!("{key}:saved-form")
}

/// The draft kept for a new record, if any.
pub fn load_draft(store: &Store, key: &str) -> Result<Option<Typed>, AppError> {
    Ok(store
        .setting(key)?
        .filter(|s| !s.is_empty())
        .and_then(|s| serde_json::from_str(&s).ok()))
}

fn save_draft(store: &mut Store, key: &str, typed: &Typed) -> Result<(), AppError> {
    let json = serde_json::to_string(typed).expect("strings serialize");
    store.set_setting(key, &json)?;
    Ok(())
}

fn clear_draft(store: &mut Store, key: &str, form_id: &str) -> Result<(), AppError> {
    store.set_setting(key, "")?;
    if !form_id.is_empty() {
        store.set_setting(&done_key(key), form_id)?;
    }
    Ok(())
}

/// Keeps what was typed as the draft, unless this form (`form_id`) has been saved already.
fn autosave(store: &mut Store, key: &str, form_id: &str, typed: &Typed) -> Result<(), AppError> {
    if !form_id.is_empty() && store.setting(&done_key(key))?.as_deref() == Some(form_id) {
        return Ok(());
    }
    save_draft(store, key, typed)
}

/// A fresh id for a form as it is shown (the autosave's guard against a late request).
fn new_form_id() -> String {
    Uuid::new_v4().simple().to_string()
}

/// The records each reference field may pick from and each ratings field rates, in village
/// `code`: records of the `to`/`of` kind there (work groups, which belong to the whole campaign,
/// from the campaign), by name.
pub fn options_for(
    store: &Store,
    lang: Lang,
    template: &Template,
    campaign: Uuid,
    code: &str,
    kind: &KindDef,
) -> Result<Options, AppError> {
    let mut out = Options::new();
    for f in &kind.fields {
        let target = match f.field_type {
            FieldType::Ref | FieldType::Refs => f.to.clone().unwrap_or_else(|| "any".into()),
            FieldType::Ratings => f.of.clone().unwrap_or_else(|| "member".into()),
            _ => continue,
        };
        let scope = if target == "work_group" || target == "campaign" {
            CAMPAIGN_SCOPE.to_string()
        } else {
            code.to_string()
        };
        let records = store.list(&Filter {
            kind: (target != "any").then(|| target.clone()),
            scope: Some(scope),
            campaign: Some(campaign),
            ..Default::default()
        })?;
        let mut picks: Vec<(String, String)> = records
            .iter()
            .filter(|r| target != "work_group" || in_group(r, store, code))
            .map(|r| {
                (
                    r.header.id.to_string(),
                    record_name(lang, Some(template), r),
                )
            })
            .collect();
        picks.sort_by(|a, b| a.1.cmp(&b.1));
        out.insert(f.name.clone(), picks);
    }
    Ok(out)
}

/// Whether a work group is assigned the village `code` (its `villages` name place records).
fn in_group(group: &fieldsync_client_core::Record, store: &Store, code: &str) -> bool {
    let Some(FieldValue::Str(ids)) = group.fields.get("villages") else {
        return true;
    };
    ids.split(',').any(|id| {
        Uuid::parse_str(id.trim())
            .ok()
            .and_then(|id| store.get(id).ok())
            .is_some_and(|p| p.header.scope == code)
    })
}

/// Everything a form page shows.
pub struct FormView {
    /// The village's code.
    pub code: String,
    /// The village's name.
    pub village: String,
    /// The kind and its fields.
    pub kind: KindDef,
    /// What reference and ratings fields pick from.
    pub options: Options,
    /// What the inputs hold.
    pub typed: Typed,
    /// Problems per field.
    pub problems: Problems,
    /// Records saved so far with "save and new".
    pub saved: usize,
    /// A note at the top (draft restored or kept).
    pub note: Option<(String, String)>,
    /// The record being edited (none for a new one).
    pub editing: Option<Uuid>,
    /// This showing of the form (kept through a re-display with problems).
    pub form_id: String,
}

fn render(state: &AppState, lang: Lang, v: &FormView) -> axum::response::Response {
    let label = lang.t(&v.kind.label.zh, &v.kind.label.en);
    let action = match v.editing {
        Some(id) => format!("/r/{id}/edit"),
        None => format!("/v/{}/k/{}/new", v.code, v.kind.name),
    };
    let count: usize = v.problems.values().map(Vec::len).sum();
    let body = html! {
        p { a href=(format!("/v/{}", v.code)) { "← " (v.village) } " · "
            a href=(format!("/v/{}/k/{}", v.code, v.kind.name)) { (label) } }
        h1 { @if v.editing.is_some() { (lang.t("修改", "Edit")) " " } @else { (lang.t("新建", "New")) " " } (label) }
        @if v.saved > 0 {
            p.flash #saved role="status" {
                (lang.t("已保存，本次共录入 ", "Saved: ")) b { (v.saved) } (lang.t(" 份", " records entered in this batch"))
            }
        }
        @if let Some((zh, en)) = &v.note { p.flash role="status" { (lang.t(zh, en)) } }
        @if count > 0 {
            div.error #problems role="alert" {
                p { b { (lang.t(&format!("有 {count} 处需要修改，未保存"), &format!("{count} problems to fix; nothing was saved"))) } }
                @if let Some(list) = v.problems.get("") {
                    @for (zh, en) in list { p.problem { (lang.t(zh, en)) } }
                }
                @for f in v.kind.fields.iter().filter(|f| v.problems.contains_key(&f.name)) {
                    a href=(format!("#at-{}", f.name)) { (lang.t(&f.label.zh, &f.label.en)) } " "
                }
            }
        }
        // A new record's files are chosen on its form: then the form is multipart, and the
        // guard reads the CSRF token from the address (it does not read multipart bodies).
        @let with_files = v.editing.is_none()
            && v.kind.fields.iter().any(|f| f.field_type == FieldType::Attachments);
        @let post_to = if with_files {
            format!("{action}?{}={}", crate::guard::CSRF_FIELD, state.secret().csrf_token())
        } else {
            action.clone()
        };
        form method="post" action=(post_to) data-autosave=(action)
            enctype=[with_files.then_some("multipart/form-data")] {
            (csrf_field(state))
            input type="hidden" name="saved" value=(v.saved);
            input type="hidden" name="form_id" value=(v.form_id);
            @for f in &v.kind.fields {
                @if with_files && f.field_type == FieldType::Attachments {
                    (fields::render_new_files(lang, f))
                } @else {
                    (fields::render_field(lang, f, &v.typed, &v.options, &v.problems))
                }
            }
            div.actions {
                button type="submit" name="action" value="save" { (lang.t("保存", "Save")) }
                @if v.editing.is_none() {
                    button.secondary type="submit" name="action" value="save_new" { (lang.t("保存并新建", "Save and new")) }
                }
                button.secondary type="submit" name="action" value="draft" formnovalidate { (lang.t("暂存草稿", "Keep as draft")) }
            }
            p.muted #autosave role="status" {}
        }
    };
    page(lang, label, body).into_response()
}

/// `?saved=N` after "save and new".
#[derive(Debug, Deserialize, Default)]
pub struct NewQuery {
    /// Records saved so far in this batch.
    #[serde(default)]
    pub saved: usize,
    /// Set when a draft was just kept.
    #[serde(default)]
    pub drafted: bool,
}

fn view(
    store: &Store,
    lang: Lang,
    code: &str,
    kind: &str,
) -> Result<Option<(Uuid, FormView)>, AppError> {
    let Some((campaign, template, village)) = context(store, code)? else {
        return Ok(None);
    };
    let Some(def) = super::form_kinds(&template)
        .into_iter()
        .find(|k| k.name == kind)
        .cloned()
    else {
        return Ok(None);
    };
    let options = options_for(store, lang, &template, campaign, code, &def)?;
    Ok(Some((
        campaign,
        FormView {
            code: code.to_string(),
            village: text_of(&village, "name").unwrap_or_else(|| code.to_string()),
            kind: def,
            options,
            typed: Typed::new(),
            problems: Problems::new(),
            saved: 0,
            note: None,
            editing: None,
            form_id: new_form_id(),
        },
    )))
}

/// `GET /v/{code}/k/{kind}/new`: an empty form, or the draft kept for it.
pub async fn new_form(
    State(state): State<AppState>,
    lang: Lang,
    Path((code, kind)): Path<(String, String)>,
    Query(q): Query<NewQuery>,
) -> PageResult {
    let found = state
        .with_store(move |s| {
            let Some((campaign, mut v)) = view(s, lang, &code, &kind)? else {
                return Ok(None);
            };
            if let Some(draft) = load_draft(s, &draft_key(campaign, &code, &kind))? {
                v.typed = draft;
                if q.saved == 0 {
                    v.note = Some((
                        "已恢复上次未完成的草稿".into(),
                        "the unfinished draft was restored".into(),
                    ));
                }
            }
            if q.drafted {
                v.note = Some((
                    "草稿已暂存在本机（不会同步），下次打开此表单时恢复".into(),
                    "draft kept on this device (not synced); it comes back when this form is opened again".into(),
                ));
            }
            v.saved = q.saved;
            Ok(Some(v))
        })
        .await
        .map_err(|e| failure(lang, &e))?;
    match found {
        Some(v) => Ok(render(&state, lang, &v)),
        None => Err(not_found(lang)),
    }
}

/// Each problem at its field, in words without the field's name (shown beside it).
pub(crate) fn problems_of(kind: &KindDef, error: FormError) -> Result<Problems, AppError> {
    let mut out = Problems::new();
    match error {
        FormError::Invalid(invalid) => {
            for p in invalid.problems {
                let words = match kind.field(&p.field) {
                    Some(f) => p.at_field(f),
                    None => (p.zh.clone(), p.en.clone()),
                };
                out.entry(p.field).or_default().push(words);
            }
        }
        FormError::KeyChanged { ref field } => {
            let field = field.clone();
            let msg = error.to_string();
            out.entry(field).or_default().push((msg.clone(), msg));
        }
        FormError::NoTemplate(_)
        | FormError::Template(_)
        | FormError::NotAttachments { .. }
        | FormError::UnknownMediaType { .. } => {
            let msg = error.to_string();
            out.entry(String::new())
                .or_default()
                .push((msg.clone(), msg));
        }
        FormError::Store(e) => return Err(e.into()),
    }
    Ok(out)
}

enum Outcome {
    /// Saved, with the files refused (name, why in Chinese and English).
    Saved(Uuid, Vec<(String, String, String)>),
    /// Saved for “save and new”, with the files refused.
    SavedAndNew(usize, Vec<(String, String, String)>),
    Drafted,
    Autosaved,
    Invalid(Box<FormView>),
    NotFound,
}

pub(crate) fn form_pairs_value(pairs: &[(String, String)], name: &str) -> Option<String> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

/// A posted form's fields, and from a multipart form (a new record with files) its files:
/// `(field, file name, media type given, bytes)`.
pub struct Posted {
    pairs: Vec<(String, String)>,
    files: Vec<super::files::Chosen>,
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for Posted {
    type Rejection = axum::response::Response;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let multipart = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("multipart/form-data"));
        if !multipart {
            let Form(pairs) = Form::<Vec<(String, String)>>::from_request(req, state)
                .await
                .map_err(IntoResponse::into_response)?;
            return Ok(Posted {
                pairs,
                files: Vec::new(),
            });
        }
        let mut form = axum::extract::Multipart::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let mut posted = Posted {
            pairs: Vec::new(),
            files: Vec::new(),
        };
        let cut = |e: axum::extract::multipart::MultipartError| {
            (
                StatusCode::BAD_REQUEST,
                format!("表单没有传完整（{e}），未保存，请重新提交 / the form did not arrive whole ({e}); nothing was saved"),
            )
                .into_response()
        };
        while let Some(part) = form.next_field().await.map_err(cut)? {
            let name = part.name().unwrap_or("").to_string();
            match name.strip_prefix(fields::FILE_PREFIX) {
                Some(field) => {
                    let field = field.to_string();
                    let file = part.file_name().unwrap_or("").trim().to_string();
                    let given = part
                        .content_type()
                        .map(|t| t.to_ascii_lowercase())
                        .filter(|t| t != "application/octet-stream" && !t.is_empty());
                    let bytes = part.bytes().await.map_err(cut)?;
                    // A file input left empty sends an empty part without a name.
                    if !(file.is_empty() && bytes.is_empty()) {
                        posted.files.push((field, file, given, bytes));
                    }
                }
                None => {
                    let text = part.text().await.map_err(cut)?;
                    posted.pairs.push((name, text));
                }
            }
        }
        Ok(posted)
    }
}

/// `POST /v/{code}/k/{kind}/new`: saves the record (then its page, or an empty form for the
/// next with "save and new"), or keeps the draft; with any problem, the form again with every
/// problem at its field and nothing saved (what was typed is also kept as the draft).
pub async fn create(
    State(state): State<AppState>,
    lang: Lang,
    Path((code, kind)): Path<(String, String)>,
    posted: Posted,
) -> PageResult {
    let Posted { pairs, files } = posted;
    let action = form_pairs_value(&pairs, "action").unwrap_or_else(|| "save".into());
    let saved: usize = form_pairs_value(&pairs, "saved")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let auto = form_pairs_value(&pairs, "autosave").is_some();
    let form_id = form_pairs_value(&pairs, "form_id").unwrap_or_default();
    let typed = fields::typed_from_pairs(pairs);
    let (c, k) = (code.clone(), kind.clone());
    let outcome = state
        .with_store(move |s| {
            let Some((campaign, mut v)) = view(s, lang, &c, &k)? else {
                return Ok(Outcome::NotFound);
            };
            let key = draft_key(campaign, &c, &k);
            if action == "draft" {
                if auto {
                    autosave(s, &key, &form_id, &typed)?;
                    return Ok(Outcome::Autosaved);
                }
                save_draft(s, &key, &typed)?;
                return Ok(Outcome::Drafted);
            }
            let (values, mut problems) = fields::parse(&v.kind, &typed);
            if problems.is_empty() {
                match s.create_form(campaign, &k, &c, &values) {
                    Ok(id) => {
                        clear_draft(s, &key, &form_id)?;
                        let (_, refused) = super::files::attach_each(s, id, files)?;
                        if action == "save_new" {
                            let keep: Typed = typed
                                .iter()
                                .filter(|(name, _)| {
                                    KEEP_ON_SAVE_AND_NEW.contains(&name.as_str())
                                        && v.kind.field(name).is_some()
                                })
                                .map(|(n, x)| (n.clone(), x.clone()))
                                .collect();
                            if !keep.is_empty() {
                                save_draft(s, &key, &keep)?;
                            }
                            return Ok(Outcome::SavedAndNew(saved + 1, refused));
                        }
                        return Ok(Outcome::Saved(id, refused));
                    }
                    Err(e) => problems = problems_of(&v.kind, e)?,
                }
            } else if let Err(e) = s.check_form(campaign, &k, &values) {
                // Show the template's problems with the other fields too, at once.
                for (field, list) in problems_of(&v.kind, e)? {
                    problems.entry(field).or_insert(list);
                }
            }
            save_draft(s, &key, &typed)?;
            v.typed = typed;
            v.problems = problems;
            v.saved = saved;
            if !form_id.is_empty() {
                v.form_id = form_id;
            }
            Ok(Outcome::Invalid(Box::new(v)))
        })
        .await
        .map_err(|e| failure(lang, &e))?;
    let refused_flash = |refused: &[(String, String, String)]| {
        if refused.is_empty() {
            return;
        }
        let zh: Vec<String> = refused
            .iter()
            .map(|(n, z, _)| format!("记录已保存；未添加“{n}”：{z}"))
            .collect();
        let en: Vec<String> = refused
            .iter()
            .map(|(n, _, e)| format!("the record is saved; {n:?} was not added: {e}"))
            .collect();
        state.set_flash(zh.join("；"), en.join("; "));
    };
    Ok(match outcome {
        Outcome::Saved(id, refused) => {
            refused_flash(&refused);
            Redirect::to(&format!("/r/{id}")).into_response()
        }
        Outcome::SavedAndNew(n, refused) => {
            refused_flash(&refused);
            Redirect::to(&format!("/v/{code}/k/{kind}/new?saved={n}")).into_response()
        }
        Outcome::Drafted => {
            Redirect::to(&format!("/v/{code}/k/{kind}/new?drafted=true")).into_response()
        }
        Outcome::Autosaved => StatusCode::NO_CONTENT.into_response(),
        Outcome::Invalid(v) => {
            let mut r = render(&state, lang, &v);
            *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            r
        }
        Outcome::NotFound => not_found(lang),
    })
}

fn edit_view(store: &Store, lang: Lang, id: Uuid) -> Result<Option<FormView>, AppError> {
    let Ok(record) = store.get(id) else {
        return Ok(None);
    };
    if record.deleted {
        return Ok(None);
    }
    let Some((_, mut v)) = view(store, lang, &record.header.scope, &record.header.kind)? else {
        return Ok(None);
    };
    v.typed = fields::typed_from_record(&v.kind, &record.fields);
    v.editing = Some(id);
    Ok(Some(v))
}

/// `?drafted=true` after "keep as draft" on an edit.
#[derive(Debug, Deserialize, Default)]
pub struct EditQuery {
    /// Set when a draft was just kept.
    #[serde(default)]
    pub drafted: bool,
}

/// `GET /r/{id}/edit`: the record's form, filled in.
pub async fn edit_form(
    State(state): State<AppState>,
    lang: Lang,
    Path(id): Path<Uuid>,
    Query(q): Query<EditQuery>,
) -> PageResult {
    let v = state
        .with_store(move |s| {
            let Some(mut v) = edit_view(s, lang, id)? else {
                return Ok(None);
            };
            if let Some(draft) = load_draft(s, &edit_draft_key(id))? {
                v.typed = draft;
                v.note = Some(if q.drafted {
                    (
                        "草稿已暂存在本机（不会同步），保存后才改动记录".into(),
                        "draft kept on this device (not synced); the record changes when you save"
                            .into(),
                    )
                } else {
                    (
                        "已恢复上次未保存的修改（草稿）".into(),
                        "the unsaved changes (draft) were restored".into(),
                    )
                });
            }
            Ok(Some(v))
        })
        .await
        .map_err(|e| failure(lang, &e))?;
    match v {
        Some(v) => Ok(render(&state, lang, &v)),
        None => Err(not_found(lang)),
    }
}

/// `POST /r/{id}/edit`: saves the changed fields (a field emptied is cleared), or the form
/// again with every problem and nothing saved.
pub async fn update(
    State(state): State<AppState>,
    lang: Lang,
    Path(id): Path<Uuid>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> PageResult {
    let action = form_pairs_value(&pairs, "action").unwrap_or_else(|| "save".into());
    let auto = form_pairs_value(&pairs, "autosave").is_some();
    let form_id = form_pairs_value(&pairs, "form_id").unwrap_or_default();
    let typed = fields::typed_from_pairs(pairs);
    let outcome = state
        .with_store(move |s| {
            let Some(mut v) = edit_view(s, lang, id)? else {
                return Ok(Outcome::NotFound);
            };
            let key = edit_draft_key(id);
            if action == "draft" {
                if auto {
                    autosave(s, &key, &form_id, &typed)?;
                    return Ok(Outcome::Autosaved);
                }
                save_draft(s, &key, &typed)?;
                return Ok(Outcome::Drafted);
            }
            let record = s.get(id)?;
            let (mut values, mut problems) = fields::parse(&v.kind, &typed);
            if problems.is_empty() {
                for f in &v.kind.fields {
                    // Attachments have no input on this form: keep them as they are.
                    if f.field_type == FieldType::Attachments {
                        continue;
                    }
                    if !values.contains_key(&f.name) && record.fields.contains_key(&f.name) {
                        values.insert(f.name.clone(), FieldValue::Null);
                    }
                }
                match s.edit_form(id, &values) {
                    Ok(()) => {
                        clear_draft(s, &key, &form_id)?;
                        return Ok(Outcome::Saved(id, Vec::new()));
                    }
                    Err(e) => problems = problems_of(&v.kind, e)?,
                }
            }
            save_draft(s, &key, &typed)?;
            v.typed = typed;
            v.problems = problems;
            if !form_id.is_empty() {
                v.form_id = form_id;
            }
            Ok(Outcome::Invalid(Box::new(v)))
        })
        .await
        .map_err(|e| failure(lang, &e))?;
    Ok(match outcome {
        Outcome::Saved(id, _) => Redirect::to(&format!("/r/{id}")).into_response(),
        Outcome::Invalid(v) => {
            let mut r = render(&state, lang, &v);
            *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            r
        }
        Outcome::Drafted => Redirect::to(&format!("/r/{id}/edit?drafted=true")).into_response(),
        Outcome::Autosaved => StatusCode::NO_CONTENT.into_response(),
        _ => not_found(lang),
    })
}
