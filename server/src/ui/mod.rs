//! The department's web dashboard, served by the server itself (HTML and SVG, no script, no
//! asset from the internet), Chinese first with English a click away, behind a login.
//!
//! Signing in exchanges a one-time code (the same codes devices enroll with) for a browser
//! session: the browser becomes a device of its person, with its token in an HttpOnly,
//! SameSite=Strict cookie, so roles, scopes, revocation and the audit log apply unchanged.
//! Department viewers and admins see every village; group leaders see their group's and may
//! resolve conflicts there, which writes a real change that syncs back to the devices.

pub mod page;
pub mod svg;
pub mod write;

use std::collections::HashMap;
use std::sync::Arc;

use axum::{
    Form, Router,
    extract::{FromRequestParts, Path, Query, State},
    http::{HeaderMap, StatusCode, header, request::Parts},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
};
use fieldsync_protocol::{FieldValue, RecordHeader, auth::Role, template::Template};
use serde_json::Value;
use uuid::Uuid;

use crate::{
    AppState,
    auth::{Auth, ClientIp, SESSION_COOKIE, cookie},
    error::ApiError,
    report::Tallies,
    storage::{RecordFilter, RecordView},
};
use page::{Lang, cards, esc, page, table, time, today};

/// The dashboard's routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui") }))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/ui", get(campaigns))
        .route("/ui/lang/{lang}", get(set_lang))
        .route("/ui/c/{campaign}", get(overview))
        .route("/ui/c/{campaign}/v/{code}", get(dossier))
        .route("/ui/c/{campaign}/ledger", get(ledger))
        .route("/ui/c/{campaign}/conflicts", get(conflicts))
        .route("/ui/c/{campaign}/search", get(search))
        .route("/ui/r/{id}", get(record))
        .route("/ui/r/{id}/resolve", post(resolve))
}

const LANG_COOKIE: &str = "fieldsync_lang";

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
        let lang = Lang {
            en: cookie(parts, LANG_COOKIE).as_deref() == Some("en"),
        };
        match Auth::from_request_parts(parts, state).await {
            Ok(auth) if auth.0.person.role == Role::Worker => Err(error_page(
                lang,
                StatusCode::FORBIDDEN,
                lang.t(
                    "工作组成员请使用外业记录工具；概况页面供部门人员和组长使用。",
                    "Field workers use the field app; the dashboard is for the department and group leaders.",
                ),
            )),
            Ok(auth) => Ok(User { auth, lang }),
            Err(ApiError::Client { status, .. }) if status == StatusCode::UNAUTHORIZED => {
                Err(Redirect::to("/login").into_response())
            }
            Err(ApiError::Client {
                status, message, ..
            }) => Err(error_page(lang, status, &message)),
            Err(e) => Err(e.into_response()),
        }
    }
}

fn error_page(lang: Lang, status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<p class=\"error\">{}</p><p><a href=\"/login\">{}</a></p>",
        esc(message),
        lang.t("重新登录", "Sign in again")
    );
    (
        status,
        page(lang, lang.t("无法显示", "Cannot show this"), None, &body),
    )
        .into_response()
}

fn parse_uuid(s: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s).map_err(|e| ApiError::bad_request(format!("{s:?} is not an id: {e}")))
}

fn ui_error(lang: Lang, e: ApiError) -> Response {
    match e {
        ApiError::Client {
            status, message, ..
        } => error_page(lang, status, &message),
        other => other.into_response(),
    }
}

// ----- login ------------------------------------------------------------------------------

async fn login_page(parts: HeaderMap) -> Html<String> {
    let en = parts
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("fieldsync_lang=en"));
    login_html(Lang { en }, None)
}

fn login_html(lang: Lang, error: Option<&str>) -> Html<String> {
    let body = format!(
        "{}<form method=\"post\" action=\"/login\"><p>{}</p>\
         <p><input type=\"text\" name=\"code\" autocomplete=\"one-time-code\" \
         placeholder=\"K7QX-2M4P-9RTA\" aria-label=\"{}\" autofocus required> \
         <button type=\"submit\">{}</button></p></form><p class=\"muted\">{}</p>",
        error
            .map(|e| format!("<p class=\"error\">{}</p>", esc(e)))
            .unwrap_or_default(),
        lang.t(
            "请输入管理员发给您的一次性登录码：",
            "Enter the one-time code the administrator gave you:"
        ),
        lang.t("登录码", "Code"),
        lang.t("登录", "Sign in"),
        lang.t(
            "登录码只能使用一次；本浏览器会作为您的一台设备登记，管理员可随时停用。",
            "A code works once; this browser is enrolled as one of your devices, which the administrator can revoke."
        ),
    );
    page(lang, lang.t("登录", "Sign in"), None, &body)
}

/// The login form.
#[derive(Debug, serde::Deserialize)]
pub struct LoginForm {
    /// The one-time code.
    pub code: String,
}

async fn login(
    State(state): State<Arc<AppState>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let lang = Lang {
        en: headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("fieldsync_lang=en")),
    };
    let device = Uuid::new_v4();
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .take(60)
        .collect::<String>();
    let name = format!("浏览器 {agent}");
    match crate::admin::enroll_device(&state, ip, &form.code, device, &name, true).await {
        Ok((_, token)) => (
            [(
                header::SET_COOKIE,
                format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"),
            )],
            Redirect::to("/ui"),
        )
            .into_response(),
        Err(ApiError::Client {
            status, message, ..
        }) if status != StatusCode::TOO_MANY_REQUESTS => {
            (StatusCode::UNAUTHORIZED, login_html(lang, Some(&message))).into_response()
        }
        Err(e) => ui_error(lang, e),
    }
}

async fn logout(State(state): State<Arc<AppState>>, user: User) -> Response {
    // Signing out ends this browser's device for good.
    let _ = state.storage.revoke(user.auth.0.device).await;
    state
        .storage
        .audit(user.auth.audit("logout", serde_json::json!({})))
        .await;
    (
        [(
            header::SET_COOKIE,
            format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        )],
        Redirect::to("/login"),
    )
        .into_response()
}

async fn set_lang(Path(lang): Path<String>, headers: HeaderMap) -> Response {
    let value = if lang == "en" { "en" } else { "zh" };
    let back = headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.find("/ui").map(|i| r[i..].to_string()))
        .unwrap_or_else(|| "/ui".into());
    (
        [(
            header::SET_COOKIE,
            format!("{LANG_COOKIE}={value}; Path=/; SameSite=Strict; Max-Age=31536000"),
        )],
        Redirect::to(&back),
    )
        .into_response()
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
}

impl Campaign {
    fn place_name(&self, code: &str) -> String {
        self.places
            .iter()
            .find(|p| p.scope == code)
            .map(|p| field_str(p, "name").to_string())
            .unwrap_or_else(|| code.to_string())
    }
}

async fn load_campaign(state: &AppState, user: &User, id: &str) -> Result<Campaign, ApiError> {
    let id = parse_uuid(id)?;
    if !user.auth.0.scope.all && user.auth.0.scope.campaign.as_deref() != Some(&id.to_string()) {
        return Err(ApiError::not_found(format!("no campaign {id} for you")));
    }
    let tallies = state.tallies(id).await?;
    let template = state.storage.template(id).await?;
    let places = state.storage.campaign_records(id, "place".into()).await?;
    Ok(Campaign {
        id,
        name: tallies.name.clone().unwrap_or_else(|| id.to_string()),
        template,
        tallies,
        places,
    })
}

/// What a record is called: its name, code or text, else its kind and short id.
fn display_name(r: &RecordView) -> String {
    ["name", "code", "text", "measure", "topic"]
        .iter()
        .map(|f| field_str(r, f))
        .find(|s| !s.is_empty())
        .map(|s| s.chars().take(40).collect())
        .unwrap_or_else(|| format!("{} {}", r.kind, &r.id.to_string()[..8]))
}

fn record_link(id: &Uuid, text: &str) -> String {
    format!("<a href=\"/ui/r/{id}\">{}</a>", esc(text))
}

// ----- pages ------------------------------------------------------------------------------

async fn campaigns(State(state): State<Arc<AppState>>, user: User) -> Response {
    let lang = user.lang;
    let list = match state
        .storage
        .records(RecordFilter {
            kind: Some("campaign".into()),
            ..Default::default()
        })
        .await
    {
        Ok(l) => l,
        Err(e) => return ui_error(lang, e.into()),
    };
    let rows: Vec<Vec<String>> = list
        .iter()
        .filter(|r| !r.deleted && user.auth.sees(&r.campaign, &r.scope))
        .map(|r| {
            vec![
                format!(
                    "<a href=\"/ui/c/{}\">{}</a>",
                    r.campaign,
                    esc(field_str(r, "name"))
                ),
                field_i64(r, "year")
                    .map(|y| y.to_string())
                    .unwrap_or_default(),
                esc(field_str(r, "template")),
            ]
        })
        .collect();
    let who = format!(
        "<p class=\"muted\">{} {}（{}）</p>",
        lang.t("当前用户：", "Signed in as"),
        esc(&user.auth.0.person.name),
        if lang.en {
            user.auth.0.person.role.as_str()
        } else {
            user.auth.0.person.role.zh()
        }
    );
    let body = if rows.is_empty() {
        format!(
            "{who}<p>{}</p>",
            lang.t("还没有工作任务。", "No campaigns yet.")
        )
    } else {
        format!(
            "{who}{}",
            table(
                &[
                    lang.t("工作任务", "Campaign").into(),
                    lang.t("年度", "Year").into(),
                    lang.t("模板", "Template").into()
                ],
                &rows
            )
        )
    };
    page(lang, lang.t("工作任务", "Campaigns"), None, &body).into_response()
}

async fn overview(
    State(state): State<Arc<AppState>>,
    user: User,
    Path(campaign): Path<String>,
) -> Response {
    let lang = user.lang;
    let c = match load_campaign(&state, &user, &campaign).await {
        Ok(c) => c,
        Err(e) => return ui_error(lang, e),
    };
    match overview_body(&state, &user, &c).await {
        Ok(body) => page(lang, &c.name, Some(&c.id.to_string()), &body).into_response(),
        Err(e) => ui_error(lang, e),
    }
}

async fn overview_body(state: &AppState, user: &User, c: &Campaign) -> Result<String, ApiError> {
    let lang = user.lang;
    let t = &c.tallies;
    let mut body = String::new();
    if matches!(user.auth.0.person.role, Role::Admin | Role::Viewer) {
        body.push_str(&format!(
            "<p>{}: <a href=\"/v1/campaigns/{id}/export.xlsx\" download>XLSX</a> · \
             <a href=\"/v1/campaigns/{id}/report.docx\" download>{}（DOCX）</a> · \
             <a href=\"/v1/campaigns/{id}/report.md\">Markdown</a></p>",
            lang.t("导出", "Export"),
            lang.t("报告初稿", "Draft report"),
            id = c.id
        ));
        body.push_str(&cards(&[
            (lang.t("村（社区）", "Villages"), t.villages.to_string()),
            (lang.t("班子成员", "Team members"), t.members.to_string()),
            (
                lang.t("已谈话成员", "Members interviewed"),
                t.members_interviewed.to_string(),
            ),
            (lang.t("谈话人次", "Interviews"), t.interviews.to_string()),
            (lang.t("座谈会", "Meetings"), t.meetings.to_string()),
            (
                lang.t("问卷", "Questionnaires"),
                t.questionnaires.to_string(),
            ),
            (
                lang.t("测评表", "Evaluation forms"),
                t.evaluations.to_string(),
            ),
            (
                lang.t("查阅资料", "Document reviews"),
                t.document_reviews.to_string(),
            ),
            (lang.t("发现问题", "Findings"), t.findings.to_string()),
            (
                lang.t("逾期整改", "Overdue rectifications"),
                t.overdue_rectifications.to_string(),
            ),
        ]));
    }
    // Progress per work group and village.
    let groups = state
        .storage
        .campaign_records(c.id, "work_group".into())
        .await?;
    let reviews = state
        .storage
        .campaign_records(c.id, "document_review".into())
        .await?;
    let place_code: HashMap<String, String> = c
        .places
        .iter()
        .map(|p| (p.id.to_string(), p.scope.clone()))
        .collect();
    body.push_str(&format!("<h2>{}</h2>", lang.t("工作进度", "Progress")));
    let header: Vec<String> = [
        lang.t("工作组", "Work group"),
        lang.t("村（社区）", "Village"),
        lang.t("成员", "Members"),
        lang.t("谈话人次", "Interviews"),
        lang.t("谈话覆盖", "Interview coverage"),
        lang.t("座谈会", "Meetings"),
        lang.t("问卷", "Questionnaires"),
        lang.t("测评表", "Evaluations"),
        lang.t("查阅资料", "Document reviews"),
        lang.t("问题", "Findings"),
        lang.t("班子评价", "Team rating"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut rows = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut group_of: Vec<(String, Vec<String>)> = groups
        .iter()
        .map(|g| {
            let codes = field_str(g, "villages")
                .split(',')
                .filter_map(|id| place_code.get(id.trim()).cloned())
                .collect();
            (field_str(g, "name").to_string(), codes)
        })
        .collect();
    let ungrouped: Vec<String> = t
        .villages_detail
        .iter()
        .map(|v| v.code.clone())
        .filter(|code| !group_of.iter().any(|(_, codes)| codes.contains(code)))
        .collect();
    if !ungrouped.is_empty() {
        group_of.push((lang.t("未分组", "No group").to_string(), ungrouped));
    }
    for (group, codes) in &group_of {
        for code in codes {
            if !user.auth.sees(&c.id, code) || !seen.insert(code.clone()) {
                continue;
            }
            let Some(v) = t.villages_detail.iter().find(|v| &v.code == code) else {
                continue;
            };
            let docs = reviews.iter().filter(|r| &r.scope == code).count();
            rows.push(vec![
                esc(group),
                format!(
                    "<a href=\"/ui/c/{}/v/{}\">{}</a>",
                    c.id,
                    esc(code),
                    esc(&v.name)
                ),
                v.members.to_string(),
                v.interviews.to_string(),
                format!(
                    "{} {}/{}",
                    svg::progress(v.interviews.min(v.members), v.members),
                    v.interviews.min(v.members),
                    v.members
                ),
                v.meetings.to_string(),
                v.questionnaires.to_string(),
                v.evaluations.to_string(),
                docs.to_string(),
                v.findings.to_string(),
                v.team_rating
                    .as_deref()
                    .map(|r| choice_label(c.template.as_ref(), "assessment", "rating", r, lang))
                    .unwrap_or_else(|| "—".into()),
            ]);
        }
    }
    body.push_str(&table(&header, &rows));
    // Charts.
    let ratings: Vec<(String, u64)> = ["good", "normal", "poor"]
        .iter()
        .map(|r| {
            (
                choice_label(c.template.as_ref(), "assessment", "rating", r, lang),
                t.team_ratings.get(*r).copied().unwrap_or(0),
            )
        })
        .collect();
    body.push_str(&format!("<h2>{}</h2>", lang.t("图表", "Charts")));
    body.push_str(&svg::bars(
        lang.t("班子定性评价分布", "Team ratings"),
        &ratings,
    ));
    if !t.findings_by_category.is_empty() {
        let cats: Vec<(String, u64)> = t
            .findings_by_category
            .iter()
            .map(|(k, v)| {
                (
                    choice_label(c.template.as_ref(), "finding", "category", k, lang),
                    *v,
                )
            })
            .collect();
        body.push_str(&svg::bars(
            lang.t("问题类别", "Findings by category"),
            &cats,
        ));
    }
    if !t.member_ratings.is_empty() {
        let members: Vec<(String, u64)> = ["good", "normal", "poor"]
            .iter()
            .map(|r| {
                (
                    choice_label(c.template.as_ref(), "assessment", "rating", r, lang),
                    t.member_ratings.get(*r).copied().unwrap_or(0),
                )
            })
            .collect();
        body.push_str(&svg::bars(
            lang.t("班子成员定性评价", "Member ratings"),
            &members,
        ));
    }
    if !t.star_ratings.is_empty() {
        let stars: Vec<(String, u64)> = t
            .star_ratings
            .iter()
            .map(|(k, v)| {
                (
                    choice_label(c.template.as_ref(), "star_rating", "stars", k, lang),
                    *v,
                )
            })
            .collect();
        body.push_str(&svg::bars(lang.t("星级评定", "Star ratings"), &stars));
    }
    if t.conflicted_assessments > 0 {
        body.push_str(&format!(
            "<p class=\"conflict\">{} {} — <a href=\"/ui/c/{}/conflicts\">{}</a></p>",
            t.conflicted_assessments,
            lang.t(
                "项评价存在冲突，未计入统计",
                "assessments are in conflict and not counted"
            ),
            c.id,
            lang.t("去处理", "review them")
        ));
    }
    // Devices and their last sync.
    if matches!(user.auth.0.person.role, Role::Admin | Role::Viewer) {
        let devices = state.storage.devices().await?;
        let people = state.storage.people().await?;
        let group_name: HashMap<Uuid, String> = groups
            .iter()
            .map(|g| (g.id, field_str(g, "name").to_string()))
            .collect();
        let rows: Vec<Vec<String>> = devices
            .iter()
            .filter(|d| d.enrolled_at.is_some())
            .map(|d| {
                let group = d
                    .person
                    .and_then(|p| people.iter().find(|x| x.id == p))
                    .and_then(|p| p.group)
                    .and_then(|g| group_name.get(&g).cloned())
                    .unwrap_or_default();
                let last = d.last_push.max(d.last_pull);
                vec![
                    esc(d.person_name.as_deref().unwrap_or("")),
                    esc(&group),
                    esc(d.name.as_deref().unwrap_or("")),
                    last.map(time)
                        .unwrap_or_else(|| lang.t("从未同步", "never").into()),
                    if d.revoked_at.is_some() {
                        lang.t("已停用", "revoked").into()
                    } else {
                        String::new()
                    },
                ]
            })
            .collect();
        body.push_str(&format!("<h2>{}</h2>", lang.t("设备同步情况", "Devices")));
        body.push_str(&table(
            &[
                lang.t("使用人", "Person").into(),
                lang.t("工作组", "Group").into(),
                lang.t("设备", "Device").into(),
                lang.t("最近同步", "Last sync").into(),
                String::new(),
            ],
            &rows,
        ));
    }
    Ok(body)
}

async fn dossier(
    State(state): State<Arc<AppState>>,
    user: User,
    Path((campaign, code)): Path<(String, String)>,
) -> Response {
    let lang = user.lang;
    let c = match load_campaign(&state, &user, &campaign).await {
        Ok(c) => c,
        Err(e) => return ui_error(lang, e),
    };
    if !user.auth.sees(&c.id, &code) {
        return error_page(
            lang,
            StatusCode::NOT_FOUND,
            lang.t(
                "没有这个村（社区）的记录",
                "No records of this village for you",
            ),
        );
    }
    match dossier_body(&state, &c, &code, lang).await {
        Ok(body) => page(
            lang,
            &format!(
                "{} · {}",
                c.place_name(&code),
                lang.t("村情档案", "dossier")
            ),
            Some(&c.id.to_string()),
            &body,
        )
        .into_response(),
        Err(e) => ui_error(lang, e),
    }
}

/// The live records of one kind in one village (through the `(campaign, scope, kind)` index).
async fn in_village(
    state: &AppState,
    campaign: Uuid,
    kind: &str,
    code: &str,
) -> Result<Vec<RecordView>, ApiError> {
    Ok(state
        .storage
        .records(RecordFilter {
            kind: Some(kind.into()),
            scope: Some(code.into()),
            campaign: Some(campaign),
            limit: Some(10_000),
            ..Default::default()
        })
        .await?
        .into_iter()
        .filter(|r| !r.deleted)
        .collect())
}

const DOSSIER_KINDS: [&str; 9] = [
    "interview",
    "meeting",
    "site_visit",
    "document_review",
    "prescreening",
    "questionnaire",
    "evaluation",
    "assessment",
    "star_rating",
];

async fn dossier_body(
    state: &AppState,
    c: &Campaign,
    code: &str,
    lang: Lang,
) -> Result<String, ApiError> {
    let template = c.template.as_ref();
    let mut body = String::new();
    let v = c.tallies.villages_detail.iter().find(|v| v.code == code);
    if let Some(v) = v {
        body.push_str(&cards(&[
            (lang.t("班子成员", "Members"), v.members.to_string()),
            (lang.t("谈话人次", "Interviews"), v.interviews.to_string()),
            (lang.t("座谈会", "Meetings"), v.meetings.to_string()),
            (
                lang.t("问卷", "Questionnaires"),
                v.questionnaires.to_string(),
            ),
            (lang.t("测评表", "Evaluations"), v.evaluations.to_string()),
            (lang.t("问题", "Findings"), v.findings.to_string()),
        ]));
        if let Some(s) = &v.summary {
            body.push_str(&format!(
                "<h2>{}</h2><p>{}</p>",
                lang.t("班子运行情况", "How the team works"),
                esc(s)
            ));
        }
    }
    // Members and their satisfaction.
    let members = in_village(state, c.id, "member", code).await?;
    body.push_str(&format!("<h2>{}</h2>", lang.t("班子成员", "Team members")));
    let rows: Vec<Vec<String>> = members
        .iter()
        .map(|m| {
            vec![
                record_link(&m.id, field_str(m, "name")),
                choice_label(
                    template,
                    "member",
                    "position",
                    field_str(m, "position"),
                    lang,
                ),
                choice_label(template, "member", "sex", field_str(m, "sex"), lang),
                field_i64(m, "age")
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
                choice_label(
                    template,
                    "member",
                    "education",
                    field_str(m, "education"),
                    lang,
                ),
            ]
        })
        .collect();
    body.push_str(&table(
        &[
            field_label(template, "member", "name", lang),
            field_label(template, "member", "position", lang),
            field_label(template, "member", "sex", lang),
            field_label(template, "member", "age", lang),
            field_label(template, "member", "education", lang),
        ],
        &rows,
    ));
    let answers = ["satisfied", "basically_satisfied", "unsatisfied"];
    let legend: Vec<String> = answers
        .iter()
        .map(|a| choice_label(template, "evaluation", "member_ratings", a, lang))
        .collect();
    let sat: Vec<(String, Vec<u64>)> = members
        .iter()
        .filter_map(|m| {
            let counts = c.tallies.member_satisfaction.get(&m.id.to_string())?;
            Some((
                field_str(m, "name").to_string(),
                answers
                    .iter()
                    .map(|a| counts.get(*a).copied().unwrap_or(0))
                    .collect(),
            ))
        })
        .collect();
    if !sat.is_empty() {
        body.push_str(&svg::stacked(
            lang.t("成员满意度测评", "Satisfaction per member"),
            &legend,
            &sat,
        ));
    }
    // Findings and their rectifications.
    let findings = in_village(state, c.id, "finding", code).await?;
    let rects = in_village(state, c.id, "rectification", code).await?;
    body.push_str(&format!(
        "<h2>{}</h2>",
        lang.t("问题与整改", "Findings and rectifications")
    ));
    let rows: Vec<Vec<String>> = findings
        .iter()
        .map(|f| {
            let fixes: Vec<String> = rects
                .iter()
                .filter(|r| field_str(r, "finding") == f.id.to_string())
                .map(|r| {
                    format!(
                        "{}（{}，{}）",
                        esc(field_str(r, "measure")),
                        esc(field_str(r, "owner")),
                        choice_label(
                            template,
                            "rectification",
                            "status",
                            field_str(r, "status"),
                            lang
                        )
                    )
                })
                .collect();
            vec![
                record_link(&f.id, field_str(f, "text")),
                choice_label(
                    template,
                    "finding",
                    "category",
                    field_str(f, "category"),
                    lang,
                ),
                fixes.join("<br>"),
            ]
        })
        .collect();
    body.push_str(&table(
        &[
            lang.t("问题", "Finding").into(),
            lang.t("类别", "Category").into(),
            lang.t("整改措施", "Rectification").into(),
        ],
        &rows,
    ));
    // Every other record, by kind; references shown by name.
    let mut names: HashMap<String, String> = HashMap::new();
    for r in c.places.iter().chain(&members) {
        names.insert(r.id.to_string(), display_name(r));
    }
    for kind in ["team", "work_group"] {
        for r in state.storage.campaign_records(c.id, kind.into()).await? {
            names.insert(r.id.to_string(), display_name(&r));
        }
    }
    for kind in DOSSIER_KINDS {
        let records = in_village(state, c.id, kind, code).await?;
        if records.is_empty() {
            continue;
        }
        let (mut header, rows) = crate::report::table(template, kind, &records);
        header.truncate(8);
        let rows: Vec<Vec<String>> = rows
            .into_iter()
            .zip(&records)
            .map(|(row, r)| {
                let mut cells: Vec<String> = row
                    .into_iter()
                    .take(8)
                    .map(|cell| {
                        let named = names.get(cell.as_str()).cloned().unwrap_or(cell);
                        let short: String = named.chars().take(60).collect();
                        esc(&short)
                    })
                    .collect();
                cells[0] = record_link(&r.id, &r.id.to_string()[..8]);
                if r.conflicts > 0 {
                    cells[0].push_str(" ⚠");
                }
                cells
            })
            .collect();
        body.push_str(&format!(
            "<h2>{}（{}）</h2>",
            esc(&kind_label(template, kind, lang)),
            records.len()
        ));
        body.push_str(&table(
            &header.iter().map(|h| esc(h)).collect::<Vec<_>>(),
            &rows,
        ));
    }
    Ok(body)
}

async fn ledger(
    State(state): State<Arc<AppState>>,
    user: User,
    Path(campaign): Path<String>,
) -> Response {
    let lang = user.lang;
    let c = match load_campaign(&state, &user, &campaign).await {
        Ok(c) => c,
        Err(e) => return ui_error(lang, e),
    };
    let template = c.template.as_ref();
    let (findings, rects) = match (
        state.storage.campaign_records(c.id, "finding".into()).await,
        state
            .storage
            .campaign_records(c.id, "rectification".into())
            .await,
    ) {
        (Ok(f), Ok(r)) => (f, r),
        (Err(e), _) | (_, Err(e)) => return ui_error(lang, e.into()),
    };
    let finding: HashMap<String, &RecordView> =
        findings.iter().map(|f| (f.id.to_string(), f)).collect();
    let today = today();
    let mut overdue_count = 0;
    let rows: Vec<Vec<String>> = rects
        .iter()
        .filter(|r| user.auth.sees(&r.campaign, &r.scope))
        .map(|r| {
            let status = field_str(r, "status");
            let deadline = field_str(r, "deadline");
            let overdue = status != "done" && !deadline.is_empty() && deadline < today.as_str();
            overdue_count += usize::from(overdue);
            let f = finding.get(field_str(r, "finding"));
            vec![
                esc(&c.place_name(&r.scope)),
                f.map(|f| record_link(&f.id, field_str(f, "text")))
                    .unwrap_or_default(),
                record_link(&r.id, field_str(r, "measure")),
                esc(field_str(r, "owner")),
                if overdue {
                    format!(
                        "<span class=\"overdue\">{} {}</span>",
                        esc(deadline),
                        lang.t("已逾期", "overdue")
                    )
                } else {
                    esc(deadline)
                },
                choice_label(template, "rectification", "status", status, lang),
            ]
        })
        .collect();
    let body = format!(
        "<p>{} {}，{} <span class=\"overdue\">{}</span></p>{}",
        lang.t("整改措施", "Rectifications:"),
        rows.len(),
        lang.t("逾期未完成", "overdue and not done:"),
        overdue_count,
        table(
            &[
                lang.t("村（社区）", "Village").into(),
                lang.t("问题", "Finding").into(),
                lang.t("整改措施", "Measure").into(),
                lang.t("责任人", "Owner").into(),
                lang.t("完成时限", "Deadline").into(),
                lang.t("状态", "Status").into(),
            ],
            &rows
        )
    );
    page(
        lang,
        lang.t("问题整改台账", "Findings and rectification ledger"),
        Some(&c.id.to_string()),
        &body,
    )
    .into_response()
}

async fn conflicts(
    State(state): State<Arc<AppState>>,
    user: User,
    Path(campaign): Path<String>,
) -> Response {
    let lang = user.lang;
    let c = match load_campaign(&state, &user, &campaign).await {
        Ok(c) => c,
        Err(e) => return ui_error(lang, e),
    };
    let list = match state
        .storage
        .records(RecordFilter {
            campaign: Some(c.id),
            conflicted: true,
            limit: Some(5000),
            ..Default::default()
        })
        .await
    {
        Ok(l) => l,
        Err(e) => return ui_error(lang, e.into()),
    };
    let rows: Vec<Vec<String>> = list
        .iter()
        .filter(|r| user.auth.sees(&r.campaign, &r.scope))
        .map(|r| {
            vec![
                esc(&c.place_name(&r.scope)),
                esc(&kind_label(c.template.as_ref(), &r.kind, lang)),
                record_link(&r.id, &r.id.to_string()),
                r.conflicts.to_string(),
            ]
        })
        .collect();
    let body = if rows.is_empty() {
        format!(
            "<p>{}</p>",
            lang.t("没有待处理的冲突。", "No conflicts to review.")
        )
    } else {
        table(
            &[
                lang.t("村（社区）", "Village").into(),
                lang.t("类型", "Kind").into(),
                lang.t("记录", "Record").into(),
                lang.t("冲突字段数", "Conflicted fields").into(),
            ],
            &rows,
        )
    };
    page(
        lang,
        lang.t("待处理冲突", "Conflicts to review"),
        Some(&c.id.to_string()),
        &body,
    )
    .into_response()
}

/// The search box's query.
#[derive(Debug, serde::Deserialize)]
pub struct SearchForm {
    /// What to find.
    #[serde(default)]
    pub q: String,
}

async fn search(
    State(state): State<Arc<AppState>>,
    user: User,
    Path(campaign): Path<String>,
    Query(form): Query<SearchForm>,
) -> Response {
    let lang = user.lang;
    let c = match load_campaign(&state, &user, &campaign).await {
        Ok(c) => c,
        Err(e) => return ui_error(lang, e),
    };
    let q = form.q.trim().to_string();
    let mut body = format!(
        "<form action=\"/ui/c/{}/search\"><input type=\"search\" name=\"q\" value=\"{}\" \
         aria-label=\"{}\"> <button>{}</button></form>",
        c.id,
        esc(&q),
        lang.t("搜索", "Search"),
        lang.t("搜索", "Search")
    );
    if !q.is_empty() {
        state
            .storage
            .audit(
                user.auth
                    .audit("search", serde_json::json!({ "q": q, "campaign": c.id })),
            )
            .await;
        let hits = match state.storage.search(q.clone(), Some(c.id), None, 200).await {
            Ok(h) => h,
            Err(e) => return ui_error(lang, e.into()),
        };
        let rows: Vec<Vec<String>> = hits
            .iter()
            .filter(|h| user.auth.sees(&h.campaign, &h.scope))
            .map(|h| {
                vec![
                    esc(&c.place_name(&h.scope)),
                    esc(&kind_label(c.template.as_ref(), &h.kind, lang)),
                    format!("<a href=\"/ui/r/{}\">{}</a>", h.id, esc(&h.snippet)),
                ]
            })
            .collect();
        body.push_str(&format!(
            "<p>{} {}</p>",
            lang.t("找到记录：", "Records found:"),
            rows.len()
        ));
        body.push_str(&table(
            &[
                lang.t("村（社区）", "Village").into(),
                lang.t("类型", "Kind").into(),
                lang.t("内容", "Text").into(),
            ],
            &rows,
        ));
    }
    page(
        lang,
        lang.t("搜索", "Search"),
        Some(&c.id.to_string()),
        &body,
    )
    .into_response()
}

/// `?done=field` after a resolution.
#[derive(Debug, serde::Deserialize)]
pub struct RecordQuery {
    /// The field just resolved.
    pub resolved: Option<String>,
}

fn value_text(
    template: Option<&Template>,
    kind: &str,
    field: &str,
    v: &FieldValue,
    lang: Lang,
) -> String {
    match v {
        FieldValue::Str(s) => choice_label(template, kind, field, s, lang),
        FieldValue::Text(s) => s.clone(),
        other => other.to_json().to_string(),
    }
}

async fn record(
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
        .record(id)
        .await?
        .filter(|r| user.auth.sees(&r.campaign, &r.scope))
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
    body.push_str(&format!(
        "<p class=\"muted\">{} · <a href=\"/ui/c/{}/v/{}\">{}</a> · {}</p>",
        esc(&kind_label(template, &r.kind, lang)),
        r.campaign,
        esc(&r.scope),
        esc(&r.scope),
        id
    ));
    // Fields; references shown as the name of the record they point to, with a link.
    let mut rows: Vec<Vec<String>> = Vec::new();
    for (k, v) in r.fields.as_object().into_iter().flatten() {
        if k.starts_with('_') {
            continue;
        }
        let mut cell = match v {
            Value::String(s) => esc(&choice_label(template, &r.kind, k, s, lang)),
            Value::Null => String::new(),
            other => esc(&other.to_string()),
        };
        if let Some(s) = v.as_str() {
            let mut links = Vec::new();
            for part in s.split(',') {
                if let Ok(target) = Uuid::parse_str(part.trim())
                    && let Some(t) = state.storage.record(target).await?
                    && user.auth.sees(&t.campaign, &t.scope)
                {
                    links.push(record_link(&t.id, &display_name(&t)));
                }
            }
            if !links.is_empty() {
                cell = links.join("、");
            }
        }
        rows.push(vec![esc(&field_label(template, &r.kind, k, lang)), cell]);
    }
    body.push_str(&table(
        &[
            lang.t("字段", "Field").into(),
            lang.t("内容", "Value").into(),
        ],
        &rows,
    ));
    // Conflicts with both values and who wrote each.
    let conflicts = state.storage.conflicts(id).await?.unwrap_or_default();
    if !conflicts.is_empty() {
        let actors: Vec<String> = conflicts
            .iter()
            .flat_map(|c| c.values.iter().map(|v| v.actor.clone()))
            .collect();
        let owners = state.storage.actor_owners(actors).await?;
        let may_resolve = user.auth.0.scope.writes(&r.campaign.to_string(), &r.scope)
            && matches!(user.auth.0.person.role, Role::Admin | Role::Leader);
        body.push_str(&format!("<h2>{}</h2>", lang.t("待处理冲突", "Conflicts")));
        for c in &conflicts {
            let mut form = format!(
                "<form class=\"conflict\" method=\"post\" action=\"/ui/r/{id}/resolve\">\
                 <p><b>{}</b> {}</p><input type=\"hidden\" name=\"field\" value=\"{}\">",
                esc(&field_label(template, &r.kind, &c.field, lang)),
                lang.t(
                    "有两个同时写入的值：",
                    "has values written at the same time:"
                ),
                esc(&c.field)
            );
            for (i, v) in c.values.iter().enumerate() {
                let who = owners
                    .get(&v.actor)
                    .and_then(|o| o.1.clone())
                    .unwrap_or_else(|| format!("{} {}", lang.t("设备", "device"), &v.actor[..8]));
                form.push_str(&format!(
                    "<label><input type=\"radio\" name=\"choice\" value=\"{i}\"{}> {} — {} {}</label><br>",
                    if i == 0 { " checked" } else { "" },
                    esc(&value_text(template, &r.kind, &c.field, &v.value, lang)),
                    esc(&who),
                    v.time.map(time).unwrap_or_default()
                ));
            }
            if may_resolve {
                form.push_str(&format!(
                    "<button type=\"submit\">{}</button>",
                    lang.t("采用所选值", "Keep the chosen value")
                ));
            } else {
                form.push_str(&format!(
                    "<p class=\"muted\">{}</p>",
                    lang.t(
                        "由组长或管理员处理。",
                        "A group leader or administrator resolves it."
                    )
                ));
            }
            form.push_str("</form>");
            body.push_str(&form);
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
                    if e.genesis || e.time == 0 {
                        String::new()
                    } else {
                        time(e.time)
                    },
                    esc(&who),
                    if e.genesis {
                        String::new()
                    } else {
                        esc(&e
                            .fields
                            .iter()
                            .map(|f| field_label(template, &r.kind, f, lang))
                            .collect::<Vec<_>>()
                            .join("、"))
                    },
                ]
            })
            .collect();
        body.push_str(&format!("<h2>{}</h2>", lang.t("修改记录", "History")));
        body.push_str(&table(
            &[
                lang.t("时间", "When").into(),
                lang.t("修改人", "Who").into(),
                lang.t("修改的字段", "Fields written").into(),
            ],
            &rows,
        ));
    }
    let title = format!(
        "{} {}",
        kind_label(template, &r.kind, lang),
        &id.to_string()[..8]
    );
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

async fn resolve(
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
        .record(id)
        .await?
        .filter(|r| user.auth.sees(&r.campaign, &r.scope))
        .ok_or_else(|| ApiError::not_found(format!("no record {id}")))?;
    if !(user.auth.0.scope.writes(&r.campaign.to_string(), &r.scope)
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
    let doc = state
        .storage
        .document(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("record {id} is not merged yet")))?;
    let header = RecordHeader {
        id,
        kind: r.kind.clone(),
        campaign: r.campaign,
        scope: r.scope.clone(),
    };
    let device = user.auth.0.device;
    let field = form.field.clone();
    let push = tokio::task::spawn_blocking(move || {
        write::resolution(&header, &doc, device, &field, &value)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    let outcome = state.storage.push(push).await?;
    state
        .storage
        .audit(user.auth.audit(
            "resolve",
            serde_json::json!({ "record": id, "field": form.field, "stored": outcome.stored }),
        ))
        .await;
    // Show the merged result on the next page: merging follows the push within moments.
    for _ in 0..100 {
        match state.storage.record(id).await? {
            Some(r) if r.up_to_date => break,
            _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
    Ok(id)
}
