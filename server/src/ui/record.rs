//! One record: its fields (references by name), its conflicts with who wrote each value and a
//! form to keep one, and its history from the Automerge changes.

use std::sync::Arc;

use axum::{
    Form,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use fieldsync_protocol::{FieldValue, RecordHeader, auth::Role, template::Template};
use serde_json::Value;
use uuid::Uuid;

use super::page::{Lang, esc, page, table, time};
use super::*;
use crate::{AppState, error::ApiError};

/// `?done=field` after a resolution.
#[derive(Debug, serde::Deserialize)]
pub struct RecordQuery {
    /// The field just resolved.
    pub resolved: Option<String>,
}

/// A field value as people read it: choices by label, yes/no, numbers, texts.
pub(super) fn value_text(
    template: Option<&Template>,
    kind: &str,
    field: &str,
    v: &FieldValue,
    lang: Lang,
) -> String {
    match v {
        FieldValue::Str(s) => choice_label(template, kind, field, s, lang),
        FieldValue::Text(s) => s.clone(),
        FieldValue::Bool(b) => yes_no(*b, lang).into(),
        FieldValue::Int(i) => i.to_string(),
        FieldValue::Float(f) => f.to_string(),
        FieldValue::Null => String::new(),
        other => other.to_json().to_string(),
    }
}

fn yes_no(b: bool, lang: Lang) -> &'static str {
    if b {
        lang.t("是", "Yes")
    } else {
        lang.t("否", "No")
    }
}

/// A value in a history row: long texts cut to their first 60 characters.
fn short_value(
    template: Option<&Template>,
    (kind, field): (&str, &str),
    v: Option<&FieldValue>,
    names: &crate::report::Names,
    lang: Lang,
) -> String {
    let Some(v) = v else {
        return lang.t("（空）", "(empty)").into();
    };
    // A reference reads as the name of what it points to.
    let text = match v {
        FieldValue::Str(s) if names.contains_key(s) => names[s].clone(),
        _ => value_text(template, kind, field, v, lang),
    };
    if text.is_empty() {
        return lang.t("（空）", "(empty)").into();
    }
    let mut chars = text.chars();
    let cut: String = chars.by_ref().take(60).collect();
    if chars.next().is_some() {
        format!("{cut}…")
    } else {
        cut
    }
}

pub(super) async fn record(
    State(state): State<Arc<AppState>>,
    user: User,
    Path(id): Path<String>,
    Query(q): Query<RecordQuery>,
) -> Response {
    let lang = user.lang;
    match record_body(&state, &user, &id, q).await {
        Ok((title, campaign, body)) => page(lang, &title, Some(&campaign), &body).into_response(),
        Err(e) => ui_error(lang, e),
    }
}

async fn record_body(
    state: &AppState,
    user: &User,
    id: &str,
    q: RecordQuery,
) -> Result<(String, String, String), ApiError> {
    let lang = user.lang;
    let id = parse_uuid(id)?;
    let r = state
        .storage
        .record(id, user.auth.visibility())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no record {id}")))?;
    state
        .storage
        .audit(user.auth.audit(
            "record_view",
            serde_json::json!({ "record": id, "kind": r.kind, "scope": r.scope, "ui": true }),
        ))
        .await;
    let template = state.storage.template(r.campaign).await?;
    let template = template.as_ref();
    let mut body = String::new();
    if let Some(f) = q.resolved {
        body.push_str(&format!(
            "<p class=\"flash\">{} {}</p>",
            esc(&field_label(template, &r.kind, &f, lang)),
            lang.t(
                "的冲突已解决，新值会同步到各设备。",
                "is resolved; the value syncs to every device."
            )
        ));
    }
    // The names of the places, teams, members and work groups this user may see, for
    // references shown by name (here and in the history).
    let names = crate::api::reference_names(state, r.campaign, &user.auth.visibility()).await?;
    let place = if r.scope == "campaign" {
        lang.t("全局", "campaign-wide").to_string()
    } else {
        names
            .get(&r.scope)
            .cloned()
            .unwrap_or_else(|| r.scope.clone())
    };
    body.push_str(&format!(
        "<p class=\"muted\">{} · <a href=\"/ui/c/{}/v/{}\">{}</a> · {}</p>",
        esc(&kind_label(template, &r.kind, lang)),
        r.campaign,
        esc(&r.scope),
        esc(&place),
        id
    ));
    let conflicts = state.storage.conflicts(id).await?.unwrap_or_default();
    // Fields in the template's order (then any the template does not name); references shown
    // as the name of the record they point to, with a link; conflicted fields marked.
    let def = template.and_then(|t| t.kind(&r.kind));
    let mut entries: Vec<(&String, &Value)> = r
        .fields
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !k.starts_with('_'))
        // Files are shown below the table, as pictures and players.
        .filter(|(k, _)| !super::files::is_files_field(template, &r.kind, k))
        .collect();
    let position = |k: &str| {
        def.and_then(|d| d.fields.iter().position(|f| f.name == k))
            .unwrap_or(usize::MAX)
    };
    entries.sort_by(|a, b| (position(a.0), a.0).cmp(&(position(b.0), b.0)));
    let mut rows: Vec<Vec<String>> = Vec::new();
    for (k, v) in entries {
        let mut cell = match v {
            Value::String(s) => esc(&choice_label(template, &r.kind, k, s, lang)),
            Value::Bool(b) => esc(yes_no(*b, lang)),
            Value::Null => String::new(),
            other => esc(&other.to_string()),
        };
        if let Some(s) = v.as_str() {
            let mut links = Vec::new();
            for part in s.split(',') {
                if let Ok(target) = Uuid::parse_str(part.trim())
                    && let Some(t) = state.storage.record(target, user.auth.visibility()).await?
                {
                    links.push(record_link(&t.id, &display_name(&t)));
                }
            }
            if !links.is_empty() {
                cell = links.join("、");
            }
        }
        if conflicts.iter().any(|c| &c.field == k) {
            cell.push_str(&format!(
                " <span class=\"warn\">{}</span>",
                lang.t("（有冲突，见下方）", "(in conflict, see below)")
            ));
        }
        rows.push(vec![esc(&field_label(template, &r.kind, k, lang)), cell]);
    }
    // Two columns read best as they are, on a phone too.
    body.push_str(
        &table(
            &[
                lang.t("字段", "Field").into(),
                lang.t("内容", "Value").into(),
            ],
            &rows,
        )
        .replacen("<table>", "<table class=\"kv\">", 1),
    );
    body.push_str(&super::files::gallery(state, template, &r, lang).await?);
    body.push_str(&super::review::review_box(state, user, &r).await?);
    // Conflicts with both values and who wrote each.
    if !conflicts.is_empty() {
        let actors: Vec<String> = conflicts
            .iter()
            .flat_map(|c| c.values.iter().map(|v| v.actor.clone()))
            .collect();
        let owners = state.storage.actor_owners(actors).await?;
        let may_resolve = user
            .auth
            .0
            .scope
            .writes(&r.campaign.to_string(), &r.scope, &r.kind)
            && matches!(user.auth.0.person.role, Role::Admin | Role::Leader);
        body.push_str(&format!("<h2>{}</h2>", lang.t("待处理冲突", "Conflicts")));
        for c in &conflicts {
            let heading = format!(
                "<p><b>{}</b> {}</p>",
                esc(&field_label(template, &r.kind, &c.field, lang)),
                lang.t(
                    "有两个同时写入的值：",
                    "has values written at the same time:"
                ),
            );
            // The value shown above until someone decides is the last one (Automerge's pick):
            // it is the one preselected.
            let shown = c.values.len().saturating_sub(1);
            let describe = |v: &fieldsync_protocol::record::ConflictValue| {
                let who = owners
                    .get(&v.actor)
                    .and_then(|o| o.1.clone())
                    .unwrap_or_else(|| format!("{} {}", lang.t("设备", "device"), &v.actor[..8]));
                format!(
                    "{} — {} {}",
                    esc(&value_text(template, &r.kind, &c.field, &v.value, lang)),
                    esc(&who),
                    v.time.map(time).unwrap_or_default()
                )
            };
            if may_resolve {
                let mut form = format!(
                    "<form class=\"conflict\" method=\"post\" action=\"/ui/r/{id}/resolve\">\
                     {heading}<input type=\"hidden\" name=\"field\" value=\"{}\">",
                    esc(&c.field)
                );
                for (i, v) in c.values.iter().enumerate() {
                    form.push_str(&format!(
                        "<label><input type=\"radio\" name=\"choice\" value=\"{i}\"{}> {}</label><br>",
                        if i == shown { " checked" } else { "" },
                        describe(v)
                    ));
                }
                form.push_str(&format!(
                    "<button type=\"submit\">{}</button></form>",
                    lang.t("采用所选值", "Keep the chosen value")
                ));
                body.push_str(&form);
            } else {
                let items: String = c
                    .values
                    .iter()
                    .map(|v| format!("<li>{}</li>", describe(v)))
                    .collect();
                body.push_str(&format!(
                    "<div class=\"conflict\">{heading}<ul>{items}</ul><p class=\"muted\">{}</p></div>",
                    lang.t(
                        "由组长或管理员处理。",
                        "A group leader or administrator resolves it."
                    )
                ));
            }
        }
    }
    // History.
    if let Some(doc) = state.storage.document(id).await? {
        let header = RecordHeader {
            id,
            kind: r.kind.clone(),
            campaign: r.campaign,
            scope: r.scope.clone(),
        };
        let entries = tokio::task::spawn_blocking(move || write::history(&header, &doc))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??;
        let owners = state
            .storage
            .actor_owners(entries.iter().map(|e| e.actor.clone()).collect())
            .await?;
        let rows: Vec<Vec<String>> = entries
            .iter()
            .map(|e| {
                let who = if e.genesis {
                    lang.t("（记录建立）", "(record created)").to_string()
                } else {
                    owners
                        .get(&e.actor)
                        .map(|o| o.1.clone().unwrap_or_else(|| o.0.to_string()))
                        .unwrap_or_else(|| {
                            format!("{} {}", lang.t("设备", "device"), &e.actor[..8])
                        })
                };
                vec![
                    if e.time == 0 {
                        String::new()
                    } else {
                        time(e.time)
                    },
                    esc(&who),
                    e.fields
                        .iter()
                        .map(|f| {
                            format!(
                                "{}：{} → {}",
                                esc(&field_label(template, &r.kind, &f.field, lang)),
                                esc(&short_value(
                                    template,
                                    (&r.kind, &f.field),
                                    f.before.as_ref(),
                                    &names,
                                    lang
                                )),
                                esc(&short_value(
                                    template,
                                    (&r.kind, &f.field),
                                    f.after.as_ref(),
                                    &names,
                                    lang
                                ))
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("<br>"),
                ]
            })
            .collect();
        body.push_str(&format!("<h2>{}</h2>", lang.t("修改记录", "History")));
        body.push_str(&table(
            &[
                lang.t("时间", "When").into(),
                lang.t("修改人", "Who").into(),
                lang.t("修改内容", "What changed").into(),
            ],
            &rows,
        ));
    }
    // Named by what it is about and its date (references by name); a hash only as a last resort.
    let named = record_title(&r, &names);
    let named = if named.starts_with(r.kind.as_str()) {
        short_id(&r.id)
    } else {
        named
    };
    let title = format!("{} · {}", kind_label(template, &r.kind, lang), named);
    Ok((title, r.campaign.to_string(), body))
}

/// A resolution from the record page.
#[derive(Debug, serde::Deserialize)]
pub struct ResolveForm {
    /// The conflicted field.
    pub field: String,
    /// The index of the chosen value.
    pub choice: usize,
}

pub(super) async fn resolve(
    State(state): State<Arc<AppState>>,
    user: User,
    Path(id): Path<String>,
    Form(form): Form<ResolveForm>,
) -> Response {
    let lang = user.lang;
    match resolve_inner(&state, &user, &id, &form).await {
        Ok(id) => Redirect::to(&format!("/ui/r/{id}?resolved={}", form.field)).into_response(),
        Err(e) => ui_error(lang, e),
    }
}

async fn resolve_inner(
    state: &AppState,
    user: &User,
    id: &str,
    form: &ResolveForm,
) -> Result<Uuid, ApiError> {
    let id = parse_uuid(id)?;
    let r = state
        .storage
        .record(id, user.auth.visibility())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no record {id}")))?;
    if !(user
        .auth
        .0
        .scope
        .writes(&r.campaign.to_string(), &r.scope, &r.kind)
        && matches!(user.auth.0.person.role, Role::Admin | Role::Leader))
    {
        return Err(crate::auth::forbidden(
            "resolve_not_allowed",
            "只有本组组长或管理员可以处理冲突 / only the group's leader or an administrator resolves conflicts",
        ));
    }
    let conflicts = state.storage.conflicts(id).await?.unwrap_or_default();
    let conflict = conflicts
        .iter()
        .find(|c| c.field == form.field)
        .ok_or_else(|| {
            ApiError::client(
                StatusCode::CONFLICT,
                "not_conflicted",
                format!(
                    "field {:?} of record {id} is not in conflict (any more)",
                    form.field
                ),
            )
        })?;
    let value = conflict
        .values
        .get(form.choice)
        .ok_or_else(|| ApiError::bad_request(format!("no value number {}", form.choice)))?
        .value
        .clone();
    let outcome =
        write::write_fields(state, &user.auth, &r, vec![(form.field.clone(), value)]).await?;
    state
        .storage
        .audit(user.auth.audit(
            "resolve",
            serde_json::json!({ "record": id, "field": form.field, "stored": outcome.stored }),
        ))
        .await;
    write::wait_merged(state, &user.auth, id).await?;
    Ok(id)
}
