//! The department's web dashboard, served by the server itself (HTML and SVG, no script, no
//! asset from the internet), Chinese first with English a click away, behind a login.
//!
//! Modules: [`login`] (sign in and out, language), [`campaign`] (campaigns, overview,
//! conflicts, search), [`ledger`] (findings and rectifications, filtered, sorted, as XLSX), [`dossier`] (a village), [`record`] (a record, its conflicts and history),
//! [`files`] (a record's photos, recordings and scans; a village's files as one ZIP),
//! [`devices`] (the campaign's devices and their last sync), [`review`] (the review box and
//! the review queue), [`targets`] (the campaign's targets,
//! who is behind, the form to set them),
//! [`page`] (HTML shell), [`svg`] (charts), [`write`] (resolutions and history from documents).
//!
//! Signing in exchanges a one-time code (the same codes devices enroll with) for a browser
//! session: the browser becomes a device of its person, with its token in an HttpOnly,
//! SameSite=Strict cookie (Secure over HTTPS), so roles, scopes, revocation and the audit log
//! apply unchanged. Every POST here is checked to come from the server's own pages
//! ([`crate::edge::cross_site`]).
//! Department viewers and admins see every village; group leaders see their group's and may
//! resolve conflicts there, which writes a real change that syncs back to the devices.

mod campaign;
mod devices;
mod dossier;
mod files;
mod ledger;
mod login;
pub mod page;
mod record;
mod review;
pub mod svg;
mod targets;
pub mod write;

use std::sync::Arc;

use axum::{
    extract::FromRequestParts,
    http::{StatusCode, request::Parts},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use fieldsync_protocol::{auth::Role, template::Template};
use serde_json::Value;
use uuid::Uuid;

use crate::{
    AppState,
    auth::{Auth, cookie},
    error::ApiError,
    report::Tallies,
    storage::RecordView,
};
use page::{Lang, esc, public_page};

/// The dashboard's routes, for [`crate::routes`].
pub(crate) fn route_table() -> Vec<(
    crate::routes::Route,
    axum::routing::MethodRouter<Arc<AppState>>,
)> {
    use crate::routes::{Access::*, Route};
    let r = |method, path, access| Route {
        method,
        path,
        access,
    };
    vec![
        (r("GET", "/", Public), get(|| async { Redirect::to("/ui") })),
        (r("GET", "/login", Public), get(login::login_page)),
        (r("POST", "/login", Public), post(login::login)),
        (r("POST", "/logout", Dashboard), post(login::logout)),
        (r("GET", "/ui", Dashboard), get(campaign::campaigns)),
        (r("GET", "/ui/lang/{lang}", Public), get(login::set_lang)),
        (
            r("GET", "/ui/c/{campaign}", Dashboard),
            get(campaign::overview),
        ),
        (
            r("GET", "/ui/c/{campaign}/v/{code}", Dashboard),
            get(dossier::dossier),
        ),
        (
            r("GET", "/ui/c/{campaign}/devices", Dashboard),
            get(devices::devices),
        ),
        (
            r("POST", "/ui/c/{campaign}/targets", Dashboard),
            post(targets::set),
        ),
        (
            r("GET", "/ui/c/{campaign}/v/{code}/dossier.docx", Dashboard),
            get(dossier::dossier_docx),
        ),
        (
            r("GET", "/ui/c/{campaign}/ledger", Dashboard),
            get(ledger::ledger),
        ),
        (
            r("GET", "/ui/c/{campaign}/ledger.xlsx", Dashboard),
            get(ledger::ledger_xlsx),
        ),
        (
            r("GET", "/ui/c/{campaign}/conflicts", Dashboard),
            get(campaign::conflicts),
        ),
        (
            r("GET", "/ui/c/{campaign}/search", Dashboard),
            get(campaign::search),
        ),
        (r("GET", "/ui/r/{id}", Dashboard), get(record::record)),
        (
            r("GET", "/ui/r/{id}/a/{sha256}", Dashboard),
            get(files::open),
        ),
        (
            r("GET", "/ui/c/{campaign}/v/{code}/files.zip", Dashboard),
            get(files::village_zip),
        ),
        (
            r("POST", "/ui/r/{id}/resolve", Dashboard),
            post(record::resolve),
        ),
        (
            r("POST", "/ui/r/{id}/review", Dashboard),
            post(review::review_one),
        ),
        (
            r("GET", "/ui/c/{campaign}/review", Dashboard),
            get(review::queue),
        ),
        (
            r("POST", "/ui/c/{campaign}/review", Dashboard),
            post(review::queue_decide),
        ),
    ]
}

const LANG_COOKIE: &str = "fieldsync_lang";

/// The page language from the `fieldsync_lang` cookie (Chinese without one).
impl<S: Send + Sync> FromRequestParts<S> for Lang {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Lang {
            en: cookie(parts, LANG_COOKIE).as_deref() == Some("en"),
        })
    }
}

/// A signed-in dashboard user; anyone else is sent to the login page.
pub struct User {
    auth: Auth,
    lang: Lang,
}

impl FromRequestParts<Arc<AppState>> for User {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let Ok(lang) = Lang::from_request_parts(parts, state).await;
        match Auth::from_request_parts(parts, state).await {
            Ok(auth) if auth.0.person.role == Role::Worker => Err(error_page(
                lang,
                StatusCode::FORBIDDEN,
                "dashboard_not_for_workers",
                lang.t(
                    "工作组成员请使用外业记录工具；概况页面供部门人员和组长使用。",
                    "Field workers use the field app; the dashboard is for the department and group leaders.",
                ),
            )),
            Ok(auth) => Ok(User { auth, lang }),
            Err(ApiError::Client { status, .. }) if status == StatusCode::UNAUTHORIZED => {
                Err(Redirect::to("/login").into_response())
            }
            Err(e) => Err(ui_error(lang, e)),
        }
    }
}

/// What the server answers for a path no route matches: a dashboard page for `/ui/…` (someone
/// followed or typed a link), the JSON error everywhere else.
pub async fn fallback(uri: axum::http::Uri, lang: Lang) -> Response {
    if uri.path() == "/ui" || uri.path().starts_with("/ui/") {
        error_page(
            lang,
            StatusCode::NOT_FOUND,
            "not_found",
            lang.t(
                "没有这个页面，请从首页进入",
                "There is no such page; start from the first page",
            ),
        )
    } else {
        ApiError::not_found("no such endpoint; see docs/PROTOCOL.md").into_response()
    }
}

/// A dashboard page showing an error message with `status`; `code` is the stable code the
/// refusal is audited under.
pub(crate) fn error_page(
    lang: Lang,
    status: StatusCode,
    code: &'static str,
    message: &str,
) -> Response {
    let body = format!(
        "<p class=\"error\">{}</p><p><a href=\"/ui\">{}</a> · <a href=\"/login\">{}</a></p>",
        esc(message),
        lang.t("返回首页", "Back to the start"),
        lang.t("重新登录", "Sign in again")
    );
    let mut page = (
        status,
        public_page(lang, lang.t("无法显示", "Cannot show this"), &body),
    )
        .into_response();
    page.extensions_mut()
        .insert(crate::refusals::ErrorCode(code));
    page
}

/// A 400 page for a period that is not one (a date that is not a date, or a start after the
/// end), in the page's language, with a way back to `page` (its path, without the period).
fn period_error(lang: Lang, page: &str, e: ApiError) -> Response {
    let ApiError::Client { message, .. } = &e else {
        return ui_error(lang, e);
    };
    // The message is `中文 / English`.
    let said = match message.split_once(" / ") {
        Some((zh, en)) => lang.t(zh, en),
        None => message,
    };
    let body = format!(
        "<p class=\"error\">{}</p><p><a href=\"{}\">{}</a> · <a href=\"/ui\">{}</a></p>",
        esc(said),
        esc(page),
        lang.t("重新选择统计时段", "Choose the period again"),
        lang.t("返回首页", "Back to the start"),
    );
    let mut page = (
        StatusCode::BAD_REQUEST,
        public_page(lang, lang.t("统计时段有误", "The period is wrong"), &body),
    )
        .into_response();
    page.extensions_mut()
        .insert(crate::refusals::ErrorCode("bad_request"));
    page
}

fn parse_uuid(s: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s).map_err(|e| ApiError::bad_request(format!("{s:?} is not an id: {e}")))
}

fn ui_error(lang: Lang, e: ApiError) -> Response {
    match e {
        ApiError::Client {
            status,
            message,
            code,
            retry_after,
            ..
        } => {
            let mut page = error_page(lang, status, code, &message);
            if let Some(wait) = retry_after {
                page.headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, wait.into());
            }
            page
        }
        other => other.into_response(),
    }
}

// ----- data helpers -----------------------------------------------------------------------

fn field_str<'a>(r: &'a RecordView, name: &str) -> &'a str {
    r.fields.get(name).and_then(Value::as_str).unwrap_or("")
}

fn field_i64(r: &RecordView, name: &str) -> Option<i64> {
    r.fields.get(name).and_then(Value::as_i64)
}

/// A choice's label in the page language.
fn choice_label(
    template: Option<&Template>,
    kind: &str,
    field: &str,
    value: &str,
    lang: Lang,
) -> String {
    template
        .and_then(|t| t.kind(kind))
        .and_then(|k| k.field(field))
        .and_then(|f| f.choice(value))
        .map(|c| if lang.en { c.en.clone() } else { c.zh.clone() })
        .unwrap_or_else(|| value.to_string())
}

fn field_label(template: Option<&Template>, kind: &str, field: &str, lang: Lang) -> String {
    template
        .and_then(|t| t.kind(kind))
        .and_then(|k| k.field(field))
        .map(|f| {
            if lang.en {
                f.label.en.clone()
            } else {
                f.label.zh.clone()
            }
        })
        .unwrap_or_else(|| field.to_string())
}

fn kind_label(template: Option<&Template>, kind: &str, lang: Lang) -> String {
    template
        .and_then(|t| t.kind(kind))
        .map(|k| {
            if lang.en {
                k.label.en.clone()
            } else {
                k.label.zh.clone()
            }
        })
        .unwrap_or_else(|| kind.to_string())
}

struct Campaign {
    id: Uuid,
    name: String,
    template: Option<Template>,
    tallies: Arc<Tallies>,
    places: Vec<RecordView>,
    /// What the user may see of it: every query of the pages takes it.
    visibility: crate::storage::Visibility,
    /// The days whose records the page counts (统计时段): every query of a counting page takes
    /// it, and its links keep it.
    period: crate::storage::Period,
}

impl Campaign {
    /// Whether `code` is a place of the campaign or a village the tallies counted records of (a
    /// mistyped code is not found, not an empty dossier).
    fn knows_village(&self, code: &str) -> bool {
        self.places.iter().any(|p| p.scope == code)
            || self.tallies.villages_detail.iter().any(|v| v.code == code)
    }

    fn place_name(&self, code: &str) -> String {
        self.places
            .iter()
            .find(|p| p.scope == code)
            .map(|p| field_str(p, "name").to_string())
            .unwrap_or_else(|| code.to_string())
    }
}

/// A campaign as `user` may see it, counted over the days of `period`.
async fn load_campaign(
    state: &AppState,
    user: &User,
    id: &str,
    period: crate::storage::Period,
) -> Result<Campaign, ApiError> {
    let id = parse_uuid(id)?;
    if !user.auth.0.scope.all && user.auth.0.scope.campaign.as_deref() != Some(&id.to_string()) {
        return Err(ApiError::not_found(format!("no campaign {id} for you")));
    }
    let tallies = state.tallies(id, &user.auth.visibility(), &period).await?;
    let template = state.storage.template(id).await?;
    let places = state
        .storage
        .campaign_records(
            id,
            "place".into(),
            user.auth.visibility(),
            crate::storage::Period::all(),
        )
        .await?;
    Ok(Campaign {
        id,
        name: tallies.name.clone().unwrap_or_else(|| id.to_string()),
        template,
        tallies,
        places,
        visibility: user.auth.visibility(),
        period,
    })
}

impl Campaign {
    /// `prefix` (`?` or `&`) and `from=…&to=…`, escaped for an attribute, for a link that keeps
    /// the page's period; empty for every day.
    fn keep_period(&self, prefix: char) -> String {
        match self.period.query() {
            q if q.is_empty() => String::new(),
            q => esc(&format!("{prefix}{q}")),
        }
    }

    /// The period as the inputs of a GET form, to keep it when the form's other filters change.
    fn period_inputs(&self) -> String {
        let mut out = String::new();
        for (name, value) in [("from", &self.period.from), ("to", &self.period.to)] {
            if let Some(v) = value {
                out.push_str(&format!(
                    "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
                    esc(v)
                ));
            }
        }
        out
    }

    /// The 统计时段 form of a counting page (`action`: the page's own address): two dates and
    /// what is counted now.
    fn period_form(&self, action: &str, lang: Lang) -> String {
        let now = match self.period.text(lang.en) {
            Some(t) => format!(
                "{}{} <a href=\"{}\">{}</a>",
                lang.t("当前统计：", "Counting: "),
                esc(&t),
                esc(action),
                lang.t("全部时间", "All days")
            ),
            None => lang
                .t("当前统计全部时间的记录", "Counting the records of all days")
                .to_string(),
        };
        format!(
            "<form method=\"get\" action=\"{}\" class=\"filters period\">\
             <label>{} <input type=\"date\" name=\"from\" value=\"{}\"></label>\
             <label>{} <input type=\"date\" name=\"to\" value=\"{}\"></label>\
             <button>{}</button> <span class=\"muted\">{now}</span>\
             <p class=\"muted\">{}</p></form>",
            esc(action),
            lang.t("统计时段 从", "Period from"),
            esc(self.period.from.as_deref().unwrap_or("")),
            lang.t("至", "to"),
            esc(self.period.to.as_deref().unwrap_or("")),
            lang.t("按时段统计", "Count this period"),
            lang.t(
                "记录按其谈话、会议等日期计入；没有日期的表单按上传到服务器的日期计入。班子成员等基础信息不受时段限制。",
                "Records count by their own date (interview, meeting…); forms without one by the day they reached the server. Team members and other reference data always count."
            ),
        )
    }
}

/// One `<option>` of a `<select>`.
fn option(value: &str, text: &str, selected: bool) -> String {
    format!(
        "<option value=\"{}\"{}>{}</option>",
        esc(value),
        if selected { " selected" } else { "" },
        esc(text)
    )
}

/// The `<option>`s of a filter by record kind: every kind the field collects (not the
/// department's reference kinds), “every kind” first.
fn kind_options(c: &Campaign, lang: Lang, selected: Option<&str>) -> String {
    let mut out = option("", lang.t("全部类型", "Every kind"), selected.is_none());
    if let Some(t) = c.template.as_ref() {
        for name in t
            .kinds
            .keys()
            .filter(|name| !fieldsync_protocol::auth::DEPARTMENT_KINDS.contains(&name.as_str()))
        {
            out.push_str(&option(
                name,
                &kind_label(Some(t), name, lang),
                selected == Some(name.as_str()),
            ));
        }
    }
    out
}

/// The `<option>`s of a filter by village: every place the user sees, “every village” first.
fn village_options(c: &Campaign, lang: Lang, selected: Option<&str>) -> String {
    let mut out = option(
        "",
        lang.t("全部村（社区）", "Every village"),
        selected.is_none(),
    );
    for p in &c.places {
        out.push_str(&option(
            &p.scope,
            &c.place_name(&p.scope),
            selected == Some(p.scope.as_str()),
        ));
    }
    out
}

/// What a record is called in the queue: its topic, name, text or who was interviewed
/// (references by name), with its date when it has one.
fn record_title(r: &RecordView, names: &crate::report::Names) -> String {
    let said = [
        "topic",
        "name",
        "interviewee",
        "interviewee_name",
        "text",
        "measure",
        "target",
        "team",
        "member",
    ]
    .iter()
    .map(|f| field_str(r, f))
    .find(|v| !v.is_empty())
    .map(|v| {
        names
            .get(v)
            .cloned()
            .unwrap_or_else(|| v.chars().take(30).collect())
    });
    let date = field_str(r, "date");
    match (said, date.is_empty()) {
        (Some(s), false) => format!("{s}（{date}）"),
        (Some(s), true) => s,
        (None, false) => date.to_string(),
        (None, true) => display_name(r),
    }
}

/// What a record is called: its name, code or text, else its kind and short id.
fn display_name(r: &RecordView) -> String {
    ["name", "code", "text", "measure", "topic"]
        .iter()
        .map(|f| field_str(r, f))
        .find(|s| !s.is_empty())
        .map(|s| s.chars().take(40).collect())
        .unwrap_or_else(|| format!("{} {}", r.kind, short_id(&r.id)))
}

/// The last 8 hex digits of an id (the first ones are a timestamp, shared by records written
/// together).
fn short_id(id: &Uuid) -> String {
    let s = id.simple().to_string();
    s[s.len() - 8..].to_string()
}

fn record_link(id: &Uuid, text: &str) -> String {
    format!("<a href=\"/ui/r/{id}\">{}</a>", esc(text))
}
