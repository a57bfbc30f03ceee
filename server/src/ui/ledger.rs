//! The ledger of findings and rectifications (问题整改台账): every finding the user may see with
//! its measures, owners, deadline, progress and completion date, a finding without a measure
//! shown as such; filtered by village, work group, category, status and overdue, sorted by a
//! column, counted at the top, and the same rows as a workbook (`ledger.xlsx`, audited).

use std::collections::HashMap;
use std::sync::Arc;

use axum::{
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use fieldsync_protocol::attachment::content_disposition;

use super::page::{Nav, esc, nav_page, table, today};
use super::*;
use crate::report::Column;
use crate::storage::Period;

/// The ledger's filters and sort, from the address.
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct LedgerQuery {
    /// Only this village (place code).
    #[serde(default)]
    pub village: String,
    /// Only the villages of this work group (its record id).
    #[serde(default)]
    pub group: String,
    /// Only this finding category (its choice value).
    #[serde(default)]
    pub category: String,
    /// Only this status (`planned`, `in_progress`, `done`, or `none`: no measure yet).
    #[serde(default)]
    pub status: String,
    /// Only overdue measures (`1`).
    #[serde(default)]
    pub overdue: String,
    /// The column to sort by: `village` (default), `group`, `category`, `deadline`, `status`.
    #[serde(default)]
    pub sort: String,
}

impl LedgerQuery {
    /// The query as an address's parameters, with `sort` replaced when given.
    fn params(&self, sort: Option<&str>) -> String {
        let pairs = [
            ("village", self.village.as_str()),
            ("group", &self.group),
            ("category", &self.category),
            ("status", &self.status),
            ("overdue", &self.overdue),
            ("sort", sort.unwrap_or(&self.sort)),
        ];
        pairs
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}={}", percent(v)))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// `s` percent-encoded for an address's query.
fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A status that is no choice of the template: the finding has no measure yet.
const NO_MEASURE: &str = "none";

/// One line of the ledger: a finding with one of its measures, or without any.
struct Line<'a> {
    village: String,
    group: String,
    finding: Option<&'a RecordView>,
    rect: Option<&'a RecordView>,
    status: String,
    overdue: bool,
}

impl Line<'_> {
    fn category(&self) -> &str {
        self.finding.map(|f| field_str(f, "category")).unwrap_or("")
    }
    fn rect_field(&self, name: &str) -> &str {
        self.rect.map(|r| field_str(r, name)).unwrap_or("")
    }
}

/// The ledger's lines for the user, filtered and sorted as `q` asks.
fn lines<'a>(
    c: &Campaign,
    q: &LedgerQuery,
    findings: &'a [RecordView],
    rects: &'a [RecordView],
    groups: &[RecordView],
) -> Vec<Line<'a>> {
    // Which group works in which village: a group's `villages` are place records by id.
    let code_of: HashMap<String, &str> = c
        .places
        .iter()
        .map(|p| (p.id.to_string(), p.scope.as_str()))
        .collect();
    // A village may be in more than one group's care: every group counts.
    let mut group_of: HashMap<&str, Vec<(&str, String)>> = HashMap::new();
    for g in groups {
        for id in field_str(g, "villages").split(',').map(str::trim) {
            if let Some(code) = code_of.get(id) {
                group_of
                    .entry(code)
                    .or_default()
                    .push((field_str(g, "name"), g.id.to_string()));
            }
        }
    }
    let today = today();
    let mut by_finding: HashMap<String, Vec<&RecordView>> = HashMap::new();
    for r in rects {
        by_finding
            .entry(field_str(r, "finding").to_string())
            .or_default()
            .push(r);
    }
    let mut out = Vec::new();
    let mut line = |village: &str,
                    finding: Option<&'a RecordView>,
                    rect: Option<&'a RecordView>| {
        let status = rect
            .map(|r| field_str(r, "status").to_string())
            .unwrap_or_else(|| NO_MEASURE.to_string());
        let overdue = rect.is_some_and(|r| {
            crate::rectification::overdue(field_str(r, "status"), field_str(r, "deadline"), &today)
        });
        let mine = group_of.get(village).map(Vec::as_slice).unwrap_or_default();
        let group = mine.iter().map(|(n, _)| *n).collect::<Vec<_>>().join("、");
        let keep = (q.village.is_empty() || q.village == village)
            && (q.group.is_empty() || mine.iter().any(|(_, id)| *id == q.group))
            && (q.category.is_empty()
                || finding.is_some_and(|f| field_str(f, "category") == q.category))
            && (q.status.is_empty() || q.status == status)
            && (q.overdue.is_empty() || overdue);
        if keep {
            out.push(Line {
                village: village.to_string(),
                group,
                finding,
                rect,
                status,
                overdue,
            });
        }
    };
    for f in findings {
        match by_finding.remove(&f.id.to_string()) {
            Some(measures) => {
                for r in measures {
                    line(&f.scope, Some(f), Some(r));
                }
            }
            None => line(&f.scope, Some(f), None),
        }
    }
    // Measures whose finding the user cannot see or that was deleted (with a period chosen,
    // only the period's findings and their measures are listed).
    for measures in by_finding.into_values().filter(|_| c.period.is_all()) {
        for r in measures {
            line(&r.scope, None, Some(r));
        }
    }
    let status_rank = |s: &str| match s {
        NO_MEASURE => 0,
        "planned" => 1,
        "in_progress" => 2,
        "done" => 4,
        _ => 3,
    };
    match q.sort.as_str() {
        "deadline" => out.sort_by(|a, b| {
            let key = |l: &Line| {
                (
                    l.rect_field("deadline").is_empty(),
                    l.rect_field("deadline").to_string(),
                )
            };
            key(a).cmp(&key(b))
        }),
        "status" => out.sort_by_key(|l| (!l.overdue, status_rank(&l.status))),
        "category" => out.sort_by(|a, b| a.category().cmp(b.category())),
        "group" => out.sort_by(|a, b| (&a.group, &a.village).cmp(&(&b.group, &b.village))),
        _ => out.sort_by(|a, b| a.village.cmp(&b.village)),
    }
    out
}

/// Everything a ledger page or workbook needs, read within the user's scope.
struct Ledger {
    c: Campaign,
    findings: Vec<RecordView>,
    rects: Vec<RecordView>,
    groups: Vec<RecordView>,
}

async fn load(
    state: &AppState,
    user: &User,
    campaign: &str,
    period: crate::api::PeriodQuery,
) -> Result<Ledger, ApiError> {
    let c = load_campaign(state, user, campaign, period.get()?).await?;
    let read = |kind: &str, period: Period| {
        state
            .storage
            .campaign_records(c.id, kind.into(), user.auth.visibility(), period)
    };
    // The period picks the findings; each keeps all of its measures, whenever they were made.
    let findings = read("finding", c.period.clone()).await?;
    let rects = read("rectification", Period::all()).await?;
    let groups = read("work_group", Period::all()).await?;
    Ok(Ledger {
        c,
        findings,
        rects,
        groups,
    })
}

/// `GET /ui/c/{campaign}/ledger`: the ledger page.
pub(super) async fn ledger(
    State(state): State<Arc<AppState>>,
    user: User,
    Path(campaign): Path<String>,
    Query(q): Query<LedgerQuery>,
    period: crate::api::PeriodQuery,
) -> Response {
    let lang = user.lang;
    let l = match load(&state, &user, &campaign, period).await {
        Ok(l) => l,
        Err(e) => return ui_error(lang, e),
    };
    let c = &l.c;
    let template = c.template.as_ref();
    let lines = lines(c, &q, &l.findings, &l.rects, &l.groups);
    let base = format!("/ui/c/{}/ledger", c.id);
    let mut body = c.period_form(&base, lang);
    body.push_str(&filters(c, &q, &l.groups, lang));
    body.push_str(&summary(&lines, lang));
    let keep = c.keep_period('&');
    let sortable = |key: &str, zh: &str, en: &str| {
        let text = lang.t(zh, en);
        if q.sort == key || (key == "village" && q.sort.is_empty()) {
            format!("{} ▲", esc(text))
        } else {
            format!(
                "<a href=\"{base}?{}{keep}\">{}</a>",
                esc(&q.params(Some(key))),
                esc(text)
            )
        }
    };
    let header = vec![
        sortable("village", "村（社区）", "Village"),
        sortable("group", "工作组", "Work group"),
        sortable("category", "问题类别", "Category"),
        esc(lang.t("问题", "Finding")),
        esc(lang.t("整改措施", "Measure")),
        esc(lang.t("责任人", "Owners")),
        sortable("deadline", "整改时限", "Deadline"),
        sortable("status", "状态", "Status"),
        esc(lang.t("整改进展", "Progress")),
        esc(lang.t("完成日期", "Done on")),
    ];
    let rows: Vec<Vec<String>> = lines
        .iter()
        .map(|line| {
            let owners = [line.rect_field("owner"), line.rect_field("supervisor")];
            let owners = match owners {
                ["", ""] => String::new(),
                [o, ""] => esc(o),
                ["", s] => format!("{}{}", lang.t("督导：", "supervisor: "), esc(s)),
                [o, s] => format!(
                    "{}<br>{}{}",
                    esc(o),
                    lang.t("督导：", "supervisor: "),
                    esc(s)
                ),
            };
            let deadline = line.rect_field("deadline");
            vec![
                esc(&c.place_name(&line.village)),
                esc(&line.group),
                esc(&choice_label(
                    template,
                    "finding",
                    "category",
                    line.category(),
                    lang,
                )),
                line.finding
                    .map(|f| record_link(&f.id, field_str(f, "text")))
                    .unwrap_or_default(),
                match line.rect {
                    Some(r) => record_link(&r.id, field_str(r, "measure")),
                    None => format!(
                        "<span class=\"overdue\">{}</span>",
                        lang.t("尚未制定整改措施", "no measure yet")
                    ),
                },
                owners,
                if line.overdue {
                    format!(
                        "<span class=\"overdue\">{} {}</span>",
                        esc(deadline),
                        lang.t("已逾期", "overdue")
                    )
                } else {
                    esc(deadline)
                },
                esc(&status_label(template, &line.status, lang)),
                esc(line.rect_field("progress")),
                esc(line.rect_field("done_date")),
            ]
        })
        .collect();
    if rows.is_empty() {
        body.push_str(&format!(
            "<p class=\"muted\">{}</p>",
            lang.t(
                "没有符合条件的问题或整改措施。",
                "No finding or measure matches."
            )
        ));
    } else {
        body.push_str(&table(&header, &rows));
    }
    nav_page(
        lang,
        lang.t("问题整改台账", "Findings and rectification ledger"),
        &c.id.to_string(),
        Nav::Ledger,
        &body,
    )
    .into_response()
}

/// A status's label: the template's, or “no measure yet”.
fn status_label(template: Option<&Template>, status: &str, lang: Lang) -> String {
    if status == NO_MEASURE {
        lang.t("未制定措施", "No measure").to_string()
    } else {
        choice_label(template, "rectification", "status", status, lang)
    }
}

/// The filter form (GET, so that a filtered ledger is an address to share) and the workbook link.
fn filters(c: &Campaign, q: &LedgerQuery, groups: &[RecordView], lang: Lang) -> String {
    let template = c.template.as_ref();
    let mut group_options = option("", lang.t("全部工作组", "Every group"), q.group.is_empty());
    for g in groups {
        let id = g.id.to_string();
        group_options.push_str(&option(&id, field_str(g, "name"), q.group == id));
    }
    let mut category_options = option(
        "",
        lang.t("全部类别", "Every category"),
        q.category.is_empty(),
    );
    if let Some(f) = template
        .and_then(|t| t.kind("finding"))
        .and_then(|k| k.field("category"))
    {
        for choice in &f.choices {
            category_options.push_str(&option(
                &choice.value,
                if lang.en { &choice.en } else { &choice.zh },
                q.category == choice.value,
            ));
        }
    }
    let mut status_options = option("", lang.t("全部状态", "Every status"), q.status.is_empty());
    for s in ["planned", "in_progress", "done", NO_MEASURE] {
        status_options.push_str(&option(s, &status_label(template, s, lang), q.status == s));
    }
    format!(
        "<form method=\"get\" action=\"/ui/c/{id}/ledger\" class=\"filters\">\
         <label>{} <select name=\"village\">{}</select></label> \
         <label>{} <select name=\"group\">{group_options}</select></label> \
         <label>{} <select name=\"category\">{category_options}</select></label> \
         <label>{} <select name=\"status\">{status_options}</select></label> \
         <label><input type=\"checkbox\" name=\"overdue\" value=\"1\"{}> {}</label> \
         <input type=\"hidden\" name=\"sort\" value=\"{}\">{period}\
         <button>{}</button></form>\
         <p><a href=\"/ui/c/{id}/ledger.xlsx?{}{keep}\" download>{}</a></p>",
        lang.t("村（社区）", "Village"),
        village_options(c, lang, Some(q.village.as_str()).filter(|v| !v.is_empty())),
        lang.t("工作组", "Work group"),
        lang.t("问题类别", "Category"),
        lang.t("状态", "Status"),
        if q.overdue.is_empty() { "" } else { " checked" },
        lang.t("只看逾期", "Overdue only"),
        esc(&q.sort),
        lang.t("筛选", "Filter"),
        esc(&q.params(None)),
        lang.t("导出本台账（XLSX）", "Download this ledger (XLSX)"),
        id = c.id,
        period = c.period_inputs(),
        keep = c.keep_period('&'),
    )
}

/// What the listed lines add up to.
fn summary(lines: &[Line<'_>], lang: Lang) -> String {
    let findings = lines
        .iter()
        .filter_map(|l| l.finding.map(|f| f.id))
        .collect::<std::collections::HashSet<_>>()
        .len();
    let measures = lines.iter().filter(|l| l.rect.is_some()).count();
    let count = |s: &str| lines.iter().filter(|l| l.status == s).count();
    let overdue = lines.iter().filter(|l| l.overdue).count();
    if lang.en {
        format!(
            "<p>{findings} findings, {measures} measures: {} done, {} in progress, {} not started, \
             <span class=\"overdue\">{overdue} of them overdue</span>; {} findings without a measure.</p>",
            count("done"),
            count("in_progress"),
            count("planned"),
            count(NO_MEASURE)
        )
    } else {
        format!(
            "<p>问题 {findings} 个，整改措施 {measures} 条：已完成 {}，整改中 {}，未开始 {}，\
             <span class=\"overdue\">其中逾期未完成 {overdue}</span>；尚未制定措施的问题 {} 个。</p>",
            count("done"),
            count("in_progress"),
            count("planned"),
            count(NO_MEASURE)
        )
    }
}

/// `GET /ui/c/{campaign}/ledger.xlsx`: the ledger's lines as filtered on the page, as a
/// workbook with typed dates (audited as an export).
pub(super) async fn ledger_xlsx(
    State(state): State<Arc<AppState>>,
    user: User,
    Path(campaign): Path<String>,
    Query(q): Query<LedgerQuery>,
    period: crate::api::PeriodQuery,
) -> Response {
    let lang = user.lang;
    let l = match load(&state, &user, &campaign, period).await {
        Ok(l) => l,
        Err(e) => return ui_error(lang, e),
    };
    let c = &l.c;
    let template = c.template.as_ref();
    let lines = lines(c, &q, &l.findings, &l.rects, &l.groups);
    let zh = Lang { en: false };
    let header: Vec<String> = [
        "村（社区）",
        "工作组",
        "问题类别",
        "问题描述",
        "整改措施",
        "整改责任人",
        "督导责任人",
        "整改时限",
        "整改状态",
        "是否逾期",
        "整改进展",
        "完成日期",
    ]
    .map(String::from)
    .to_vec();
    let columns = [
        Column::Text,
        Column::Text,
        Column::Text,
        Column::LongText,
        Column::LongText,
        Column::Text,
        Column::Text,
        Column::Date,
        Column::Text,
        Column::Text,
        Column::LongText,
        Column::Date,
    ];
    let rows: Vec<Vec<String>> = lines
        .iter()
        .map(|line| {
            vec![
                c.place_name(&line.village),
                line.group.clone(),
                choice_label(template, "finding", "category", line.category(), zh),
                line.finding
                    .map(|f| field_str(f, "text").to_string())
                    .unwrap_or_default(),
                line.rect_field("measure").to_string(),
                line.rect_field("owner").to_string(),
                line.rect_field("supervisor").to_string(),
                line.rect_field("deadline").to_string(),
                status_label(template, &line.status, zh),
                if line.overdue { "是" } else { "否" }.to_string(),
                line.rect_field("progress").to_string(),
                line.rect_field("done_date").to_string(),
            ]
        })
        .collect();
    let bytes = match tokio::task::spawn_blocking(move || {
        crate::report::table_xlsx("问题整改台账", header, rows, &columns)
    })
    .await
    {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return ui_error(lang, ApiError::Internal(e.to_string())),
        Err(e) => return ui_error(lang, ApiError::Internal(e.to_string())),
    };
    state
        .storage
        .audit(user.auth.audit(
            "export",
            serde_json::json!({ "campaign": c.id, "file": "ledger.xlsx", "ui": true }),
        ))
        .await;
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ),
    );
    if let Ok(v) = HeaderValue::from_str(&content_disposition(
        &format!("{}-问题整改台账.xlsx", c.name),
        false,
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    (StatusCode::OK, h, bytes).into_response()
}
