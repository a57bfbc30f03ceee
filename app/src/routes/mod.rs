//! The pages of the field app and the store queries behind them: home (villages, what waits to
//! upload, the Sync button), a village's forms, the language switch. Forms live in [`forms`],
//! lists, records and conflicts in [`records`], attached files in [`files`], bundle files in
//! [`bundles`], the first start in [`enroll`], the key of an encrypted store in [`unlock`].

pub mod bundles;
pub mod enroll;
pub mod files;
pub mod forms;
pub mod records;
pub mod unlock;

use std::convert::Infallible;

use axum::Router;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use fieldsync_client_core::{FieldValue, Filter, Record, Store};
use fieldsync_protocol::template::{RESERVED_KINDS, Template};
use maud::{Markup, html};
use uuid::Uuid;

use crate::page::{LANG_COOKIE, Lang, failure, not_found, page};
use crate::{AppError, AppState};

/// Every page of the app (the guard is layered on by [`crate::router`]).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/sync", post(run_sync))
        .route("/sync/progress", get(sync_progress))
        .route("/app.js", get(crate::script::serve))
        .route("/lang/{lang}", get(switch_lang))
        .route("/template/seen", post(template_seen))
        .route("/v/{code}", get(village))
        .route("/v/{code}/files", post(files::fetch_village))
        .route("/v/{code}/k/{kind}", get(records::list))
        .route(
            "/v/{code}/k/{kind}/new",
            // A new record's form may carry its photos and recordings.
            get(forms::new_form)
                .post(forms::create)
                .layer(axum::extract::DefaultBodyLimit::max(files::MAX_ADD_BYTES)),
        )
        .route("/r/{id}", get(records::show))
        .route("/r/{id}/edit", get(forms::edit_form).post(forms::update))
        .route(
            "/r/{id}/delete",
            get(records::confirm_delete).post(records::delete),
        )
        .route("/r/{id}/resolve", post(records::resolve))
        .route("/r/{id}/files/{field}", files::add_route())
        .route("/r/{id}/a/{sha256}", get(files::open))
        .route("/conflicts", get(records::conflicts))
        .route("/enroll", get(enroll::enroll_page).post(enroll::enroll))
        .route("/unlock", unlock::route())
        .route("/bundle", get(bundles::bundle_page))
        .route("/bundle/export", get(bundles::export))
        .route("/bundle/import", bundles::import_route())
        .fallback(|lang: Lang| async move { not_found(lang) })
}

impl<S: Send + Sync> FromRequestParts<S> for Lang {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Lang::from_headers(&parts.headers))
    }
}

/// A page handler's answer: the page, or the error page.
pub type PageResult = Result<Response, Response>;

/// The hidden CSRF field every form carries.
pub fn csrf_field(state: &AppState) -> Markup {
    html! { input type="hidden" name=(crate::guard::CSRF_FIELD) value=(state.secret().csrf_token()); }
}

/// The campaign this device works in: its setting (as the CLI keeps it), else the one its
/// enrolled scope names, else the only campaign the store holds.
pub fn campaign_of(store: &Store) -> Result<Option<Uuid>, AppError> {
    let set = store.setting("campaign")?.filter(|c| !c.is_empty());
    let from_scope = || store.scope().ok().flatten().and_then(|s| s.campaign);
    if let Some(c) = set.or_else(from_scope) {
        return Ok(Uuid::parse_str(&c).ok());
    }
    let campaigns = store.list(&Filter {
        kind: Some("campaign".into()),
        ..Default::default()
    })?;
    Ok(match campaigns.as_slice() {
        [only] => Some(only.header.campaign),
        _ => None,
    })
}

/// The villages and communities of the campaign this device holds, by name.
pub fn villages(store: &Store, campaign: Uuid) -> Result<Vec<Record>, AppError> {
    let mut out: Vec<Record> = store
        .list(&Filter {
            kind: Some("place".into()),
            campaign: Some(campaign),
            ..Default::default()
        })?
        .into_iter()
        .filter(|r| {
            matches!(r.fields.get("level"), Some(FieldValue::Str(l)) if l == "village" || l == "community")
        })
        .collect();
    out.sort_by(|a, b| a.header.scope.cmp(&b.header.scope));
    Ok(out)
}

/// A text field of a record, if it has one.
pub fn text_of(r: &Record, field: &str) -> Option<String> {
    match r.fields.get(field) {
        Some(FieldValue::Str(s) | FieldValue::Text(s)) if !s.trim().is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// How a record is named in lists and reference pickers: its name, else its date and the start
/// of its first text.
pub fn record_name(lang: Lang, template: Option<&Template>, r: &Record) -> String {
    if let Some(n) = text_of(r, "name").or_else(|| text_of(r, "interviewee_name")) {
        return n;
    }
    let kind = template
        .and_then(|t| t.kind(&r.header.kind))
        .map(|k| lang.t(&k.label.zh, &k.label.en).to_string())
        .unwrap_or_else(|| r.header.kind.clone());
    let date = text_of(r, "date").unwrap_or_else(|| format_ms(r.updated_at));
    let snippet: Option<String> = [
        "notes",
        "text",
        "topic",
        "measure",
        "comments",
        "suggestions",
    ]
    .iter()
    .find_map(|f| text_of(r, f))
    .map(|s| s.chars().take(24).collect());
    match snippet {
        Some(s) => format!("{kind} {date} {s}"),
        None => format!("{kind} {date}"),
    }
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DD HH:MM` in Beijing time, as the
/// department's dashboard shows them.
pub fn format_ms(ms: i64) -> String {
    fieldsync_protocol::dates::time(ms)
}

/// The form kinds of a template (not the reference kinds), in template order of their names.
pub fn form_kinds(template: &Template) -> Vec<&fieldsync_protocol::template::KindDef> {
    template
        .kinds
        .values()
        .filter(|k| !RESERVED_KINDS.contains(&k.name.as_str()))
        .collect()
}

fn flash(state: &AppState, lang: Lang) -> Markup {
    html! {
        @if let Some((zh, en)) = state.take_flash() {
            p.flash role="status" { (lang.t(&zh, &en)) }
        }
    }
}

struct Village {
    code: String,
    name: String,
    progress: crate::progress::Progress,
}

struct Home {
    campaign: Option<(Uuid, Option<String>)>,
    new_version: Option<u32>,
    villages: Vec<Village>,
    pending: u64,
    files_waiting: usize,
    last_sync: Option<i64>,
    conflicts: usize,
    enrolled: bool,
}

fn load_home(store: &mut Store, lang: Lang) -> Result<Home, AppError> {
    let pending = store.pending_upload()?;
    let files_waiting = store.attachments_to_upload()?.len();
    let last_sync = store.last_sync_at()?;
    let enrolled = store.credentials()?.is_some();
    let Some(campaign) = campaign_of(store)? else {
        return Ok(Home {
            campaign: None,
            new_version: None,
            villages: Vec::new(),
            pending,
            files_waiting,
            last_sync,
            conflicts: 0,
            enrolled,
        });
    };
    let template = store.template(campaign)?;
    let name = store
        .list(&Filter {
            kind: Some("campaign".into()),
            campaign: Some(campaign),
            ..Default::default()
        })?
        .first()
        .and_then(|r| text_of(r, "name"));
    let mut list = Vec::new();
    for v in villages(store, campaign)? {
        let progress =
            crate::progress::of_village(store, lang, template.as_ref(), campaign, &v.header.scope)?;
        list.push(Village {
            name: text_of(&v, "name").unwrap_or_else(|| v.header.scope.clone()),
            code: v.header.scope.clone(),
            progress,
        });
    }
    let conflicts = store
        .list(&Filter {
            campaign: Some(campaign),
            conflicted: true,
            ..Default::default()
        })?
        .len();
    Ok(Home {
        campaign: Some((campaign, name)),
        new_version: store.new_template_version(campaign)?,
        villages: list,
        pending,
        files_waiting,
        last_sync,
        conflicts,
        enrolled,
    })
}

/// `GET /`: the villages this device sees with their counts, what waits to upload, the last
/// sync, conflicts waiting, and the Sync button.
async fn home(State(state): State<AppState>, lang: Lang) -> PageResult {
    let h = state
        .with_store(move |s| load_home(s, lang))
        .await
        .map_err(|e| failure(lang, &e))?;
    let sync = state.syncer().status();
    let body = html! {
        (flash(&state, lang))
        @match &h.campaign {
            Some((id, name)) => h1 { (name.clone().unwrap_or_else(|| id.to_string())) },
            None => {
                h1 { (lang.t("外业记录", "Field records")) }
                @if h.enrolled {
                    p.error { (lang.t("本机还没有工作任务：请点“同步”；同步后仍没有，请向管理员确认您所在的工作组",
                        "this device has no campaign yet: press Sync; if there is still none, ask the administrator which work group you are in")) }
                } @else {
                    p #welcome { (lang.t("本机尚未登记。请点“登记本机”，填写管理员给您的服务器地址和一次性登记码；登记后本机会下载工作任务和村（社区）名单，之后没有网络也能记录。",
                        "This device is not enrolled yet. Press “Enroll this device” and enter the server address and the one-time code from your administrator; the device then downloads the campaign and its villages, and records without a network from then on.")) }
                }
            }
        }
        @if let Some(v) = h.new_version {
            form.flash #template-notice method="post" action="/template/seen" {
                (csrf_field(&state))
                input type="hidden" name="version" value=(v);
                (lang.t("表单模板为第 ", "The forms are now version ")) b { (v) } (lang.t(" 版，新建和修改记录按此版填写。", "; new records and edits follow it. "))
                " " button.secondary type="submit" { (lang.t("知道了", "OK")) }
            }
        }
        div.cards {
            div.card {
                h3 { (lang.t("同步", "Sync")) }
                p {
                    (lang.t("待上传修改：", "Changes waiting to upload: ")) b #pending { (h.pending) }
                    br;
                    (lang.t("待上传附件：", "Files waiting to upload: ")) b #files-waiting { (h.files_waiting) }
                    br;
                    (lang.t("上次同步：", "Last sync: "))
                    @match h.last_sync { Some(ms) => (format_ms(ms)), None => (lang.t("从未", "never")) }
                    br;
                    a href="/conflicts" { (lang.t("待处理冲突：", "Conflicts waiting: ")) b #conflicts { (h.conflicts) } }
                }
                @if h.enrolled && sync.running {
                    @let (zh, en) = sync.line();
                    p #sync-progress role="status" data-finished=(sync.finished) { (lang.t(&zh, &en)) }
                    p.muted { (lang.t("同步在后台进行，可以继续录入。", "The sync runs in the background; you can keep working.")) }
                } @else if h.enrolled {
                    form method="post" action="/sync" {
                        (csrf_field(&state))
                        button type="submit" { (lang.t("同步", "Sync now")) }
                    }
                } @else {
                    p.muted { (lang.t("本机尚未登记，不能同步。", "this device is not enrolled and cannot sync.")) }
                    a.button href="/enroll" { (lang.t("登记本机", "Enroll this device")) }
                }
            }
        }
        @if h.campaign.is_some() || !h.villages.is_empty() {
            h2 { (lang.t("村（社区）", "Villages")) }
        }
        @if h.villages.is_empty() && h.campaign.is_some() {
            p.muted { (lang.t("本机还没有村（社区）的基础数据：请先同步", "no villages on this device yet: sync first")) }
        }
        div.cards {
            @for v in &h.villages {
                div.card.village {
                    h3 { a href=(format!("/v/{}", v.code)) { (v.name) } " " span.muted { (v.code) } }
                    @let p = &v.progress;
                    p.interviewed {
                        (lang.t("已谈话班子成员 ", "Members interviewed ")) b { (p.interviewed) " / " (p.members) }
                    }
                    div.counts {
                        @for (label, n) in &p.counts { span { (label) " " b { (n) } } }
                        span { (lang.t("整改 未完成 ", "Rectifications open ")) b { (p.open) } (lang.t(" 已完成 ", ", done ")) b { (p.done) } }
                    }
                    p.muted {
                        @if p.teams == 0 {
                            (lang.t("班子分析研判：尚无班子", "Team assessment: no team on this device"))
                        } @else if p.assessed == p.teams {
                            (lang.t("班子分析研判：已写", "Team assessment: written"))
                        } @else {
                            (lang.t("班子分析研判：未写", "Team assessment: not written yet"))
                            @if p.teams > 1 { " (" (p.assessed) " / " (p.teams) ")" }
                        }
                    }
                }
            }
        }
    };
    let title = lang.t("首页", "Home");
    Ok(if sync.running {
        crate::page::page_refreshing(lang, title, body, 2)
    } else {
        page(lang, title, body)
    }
    .into_response())
}

/// `POST /sync`: starts a sync in the background (unless one runs) and goes home, where its
/// progress shows until it ends and its result after.
async fn run_sync(State(state): State<AppState>, lang: Lang) -> PageResult {
    state.start_sync().await.map_err(|e| failure(lang, &e))?;
    Ok(Redirect::to("/").into_response())
}

/// `GET /sync/progress`: the background sync's progress, for the bundled script.
async fn sync_progress(State(state): State<AppState>) -> Response {
    axum::Json(state.syncer().status().json()).into_response()
}

/// The "OK" under the template notice.
#[derive(Debug, serde::Deserialize)]
pub struct SeenForm {
    /// The template version the user was told about.
    pub version: u32,
}

/// `POST /template/seen`: the user has seen the notice of this template version.
async fn template_seen(
    State(state): State<AppState>,
    lang: Lang,
    axum::Form(form): axum::Form<SeenForm>,
) -> PageResult {
    state
        .with_store(move |s| {
            if let Some(c) = campaign_of(s)? {
                s.acknowledge_template(c, form.version)?;
            }
            Ok(())
        })
        .await
        .map_err(|e| failure(lang, &e))?;
    Ok(Redirect::to("/").into_response())
}

/// `GET /lang/{zh|en}`: remembers the language in a cookie.
async fn switch_lang(Path(to): Path<String>) -> Response {
    let value = if to == "en" { "en" } else { "zh" };
    let mut r = Redirect::to("/").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&format!(
            "{LANG_COOKIE}={value}; SameSite=Strict; Path=/; Max-Age=31536000"
        ))
        .expect("ascii"),
    );
    r
}

/// What a village page shows: its name, and each form kind with its count.
pub struct VillageInfo {
    /// The village's name.
    pub name: String,
    /// Files its records refer to, and how many of them this device holds.
    pub files: (usize, usize),
    /// (kind, label zh, label en, records).
    pub kinds: Vec<(String, String, String, usize)>,
}

/// The village with this code in the campaign, if the device holds it.
pub fn find_village(store: &Store, campaign: Uuid, code: &str) -> Result<Option<Record>, AppError> {
    Ok(villages(store, campaign)?
        .into_iter()
        .find(|v| v.header.scope == code))
}

/// The campaign, its newest template and the village with this code, or the page to show.
pub fn context(store: &Store, code: &str) -> Result<Option<(Uuid, Template, Record)>, AppError> {
    let Some(campaign) = campaign_of(store)? else {
        return Ok(None);
    };
    let Some(template) = store.template(campaign)? else {
        return Ok(None);
    };
    let Some(v) = find_village(store, campaign, code)? else {
        return Ok(None);
    };
    Ok(Some((campaign, template, v)))
}

/// `GET /v/{code}`: a village's forms, each with its count and a "new" button.
async fn village(
    State(state): State<AppState>,
    lang: Lang,
    Path(code): Path<String>,
) -> PageResult {
    let c = code.clone();
    let info = state
        .with_store(move |s| {
            let Some((campaign, template, v)) = context(s, &c)? else {
                return Ok(None);
            };
            let mut kinds = Vec::new();
            for k in form_kinds(&template) {
                let n = s
                    .list(&Filter {
                        kind: Some(k.name.clone()),
                        scope: Some(c.clone()),
                        campaign: Some(campaign),
                        ..Default::default()
                    })?
                    .len();
                kinds.push((k.name.clone(), k.label.zh.clone(), k.label.en.clone(), n));
            }
            Ok(Some(VillageInfo {
                name: text_of(&v, "name").unwrap_or_else(|| c.clone()),
                files: files::village_files(s, campaign, &c)?,
                kinds,
            }))
        })
        .await
        .map_err(|e| failure(lang, &e))?;
    let Some(info) = info else {
        return Err(not_found(lang));
    };
    let body = html! {
        (flash(&state, lang))
        p { a href="/" { "← " (lang.t("首页", "Home")) } }
        h1 { (info.name) " " span.muted { (code) } }
        ul.records {
            @for (kind, zh, en, n) in &info.kinds {
                li {
                    a href=(format!("/v/{code}/k/{kind}")) { (lang.t(zh, en)) } " " b { (n) } " "
                    a.button.secondary href=(format!("/v/{code}/k/{kind}/new")) { (lang.t("新建", "New")) }
                }
            }
        }
        (files::village_section(&state, lang, &code, info.files))
    };
    Ok(page(lang, &info.name, body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc_dates() {
        assert_eq!(format_ms(0), "1970-01-01 08:00");
        assert_eq!(format_ms(1_795_706_760_000), "2026-11-26 23:26");
        assert_eq!(format_ms(951_782_400_000), "2000-02-29 08:00");
    }
}
