//! The campaign pages: the list of campaigns, the overview (every number of the draft report
//! linked to its records, progress, charts), the conflicts to review and search.

use std::collections::HashMap;
use std::sync::Arc;

use axum::{
    extract::{Path, Query, State},
    response::{IntoResponse, Response},
};
use fieldsync_protocol::auth::Role;

use super::page::{Nav, esc, highlight, linked_cards, nav_page, page, table};
use super::*;
use crate::{AppState, error::ApiError, storage::RecordFilter};

pub(super) async fn campaigns(State(state): State<Arc<AppState>>, user: User) -> Response {
    let lang = user.lang;
    let list = match state
        .storage
        .records(
            RecordFilter {
                kind: Some("campaign".into()),
                ..Default::default()
            },
            user.auth.visibility(),
        )
        .await
    {
        Ok(l) => l,
        Err(e) => return ui_error(lang, e.into()),
    };
    let rows: Vec<Vec<String>> = list
        .iter()
        .filter(|r| !r.deleted)
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
                esc(&match field_str(r, "template") {
                    "midterm" => lang.t("届中分析", "Mid-term analysis").to_string(),
                    "lookback" => lang.t("换届“回头看”", "Post-election review").to_string(),
                    other => other.to_string(),
                }),
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

/// A bar chart of counts: Chinese and English titles, the counts, the template kind and field
/// whose choices label them, and a fixed order of values (or the counts' own).
type Chart<'a> = (
    &'a str,
    &'a str,
    &'a crate::report::Counts,
    &'a str,
    &'a str,
    Option<&'a [&'a str]>,
);

pub(super) async fn overview(
    State(state): State<Arc<AppState>>,
    user: User,
    Path(campaign): Path<String>,
    period: crate::api::PeriodQuery,
) -> Response {
    let lang = user.lang;
    let period = match period.get() {
        Ok(p) => p,
        Err(e) => return period_error(lang, &format!("/ui/c/{campaign}"), e),
    };
    let c = match load_campaign(&state, &user, &campaign, period).await {
        Ok(c) => c,
        Err(e) => return ui_error(lang, e),
    };
    match overview_body(&state, &user, &c).await {
        Ok(body) => {
            nav_page(lang, &c.name, &c.id.to_string(), Nav::Overview, &body).into_response()
        }
        Err(e) => ui_error(lang, e),
    }
}

async fn overview_body(state: &AppState, user: &User, c: &Campaign) -> Result<String, ApiError> {
    let lang = user.lang;
    let t = &c.tallies;
    let mut body = c.period_form(&format!("/ui/c/{}", c.id), lang);
    // Downloads and the pages behind the numbers count the same period.
    let keep = c.keep_period('?');
    if matches!(user.auth.0.person.role, Role::Admin | Role::Viewer) {
        body.push_str(&format!(
            "<p>{}: <a href=\"/v1/campaigns/{id}/export.xlsx{keep}\" download>XLSX</a> · \
             <a href=\"/v1/campaigns/{id}/report.docx{keep}\" download>{} (DOCX)</a>{pdf} · \
             <a href=\"/v1/campaigns/{id}/report.md{keep}\">Markdown</a></p>",
            lang.t("导出", "Export"),
            lang.t("报告初稿", "Draft report"),
            id = c.id,
            pdf = if state.pdf.available() {
                format!(
                    " · <a href=\"/v1/campaigns/{}/report.pdf{keep}\" download>PDF</a>",
                    c.id
                )
            } else {
                String::new()
            },
        ));
        let (zh, en) = crate::report::counting_basis(t);
        body.push_str(&format!("<p class=\"muted\">{}</p>", esc(lang.t(&zh, &en))));
        // What the campaign's photos and recordings take on the server (from the last sweep).
        let usage = {
            let ledger = state.blob_sweep.lock().expect("sweep report");
            ledger.report.as_ref().map(|r| {
                let mut u = r.campaigns.get(&c.id).copied().unwrap_or_default();
                u.bytes = ledger.usage(c.id);
                (r.at_ms, u)
            })
        };
        if let Some((at, u)) = usage {
            use fieldsync_protocol::attachment::size_text;
            let (files, bytes, waiting, at) = (
                u.files,
                size_text(u.bytes),
                u.waiting,
                super::page::time(at),
            );
            let quota = state.attachment_quota.map(size_text);
            let line = if lang.en {
                let of = quota
                    .map(|q| format!(" of {q} allowed"))
                    .unwrap_or_default();
                format!(
                    "Attachments: {files} files, {bytes} on the server{of}; {waiting} not uploaded yet (as of {at})"
                )
            } else {
                let of = quota.map(|q| format!("，上限 {q}")).unwrap_or_default();
                format!(
                    "附件：服务器上 {files} 个文件，共 {bytes}{of}；{waiting} 个尚未上传（统计于 {at}）"
                )
            };
            body.push_str(&format!("<p class=\"muted\">{}</p>", esc(&line)));
        }
        // Every number the draft report quotes, each a link to the records behind it.
        let records = |kind: &str| {
            format!(
                "/ui/c/{}/review?state=all&kind={kind}{}",
                c.id,
                c.keep_period('&')
            )
        };
        let ledger = format!("/ui/c/{}/ledger", c.id);
        let satisfied = t.team_satisfaction.get("satisfied").copied().unwrap_or(0)
            + t.team_satisfaction
                .get("basically_satisfied")
                .copied()
                .unwrap_or(0);
        let answered: u64 = t.team_satisfaction.values().sum();
        body.push_str(&linked_cards(&[
            (
                lang.t("村（社区）", "Villages"),
                t.villages.to_string(),
                None,
            ),
            (
                lang.t("班子成员", "Team members"),
                t.members.to_string(),
                None,
            ),
            (
                lang.t("已谈话成员", "Members interviewed"),
                t.members_interviewed.to_string(),
                Some(records("interview")),
            ),
            (
                lang.t("谈话人次", "Interviews"),
                t.interviews.to_string(),
                Some(records("interview")),
            ),
            (
                lang.t("座谈会", "Meetings"),
                t.meetings.to_string(),
                Some(records("meeting")),
            ),
            (
                lang.t("参会人次", "Meeting attendance"),
                t.meeting_participants.to_string(),
                Some(records("meeting")),
            ),
            (
                lang.t("收集问题建议", "Suggestions collected"),
                t.suggestions.to_string(),
                Some(records("interview")),
            ),
            (
                lang.t("问卷", "Questionnaires"),
                t.questionnaires.to_string(),
                Some(records("questionnaire")),
            ),
            (
                lang.t("测评表", "Evaluation forms"),
                t.evaluations.to_string(),
                Some(records("evaluation")),
            ),
            (
                lang.t("群众满意率", "Satisfaction rate"),
                if answered == 0 {
                    "—".into()
                } else {
                    crate::report::village::percent(satisfied as f64 * 100.0 / answered as f64)
                },
                Some(records("evaluation")),
            ),
            (
                lang.t("查阅资料", "Document reviews"),
                t.document_reviews.to_string(),
                Some(records("document_review")),
            ),
            (
                lang.t("提前摸底（人次）", "Pre-screenings"),
                t.prescreenings.to_string(),
                Some(records("prescreening")),
            ),
            (
                lang.t("摸底发现问题", "Pre-screening issues"),
                (t.prescreening_integrity_issues + t.prescreening_violations).to_string(),
                Some(records("prescreening")),
            ),
            (
                lang.t("发现问题", "Findings"),
                t.findings.to_string(),
                Some(format!("{ledger}{}", c.keep_period('?'))),
            ),
            (
                lang.t("逾期整改", "Overdue rectifications"),
                t.overdue_rectifications.to_string(),
                Some(format!("{ledger}?overdue=1{}", c.keep_period('&'))),
            ),
        ]));
        if answered > 0 {
            let split: Vec<String> = ["satisfied", "basically_satisfied", "unsatisfied"]
                .iter()
                .map(|a| {
                    let n = t.team_satisfaction.get(*a).copied().unwrap_or(0);
                    format!(
                        "{} {n}（{}）",
                        esc(&choice_label(
                            c.template.as_ref(),
                            "evaluation",
                            "team_rating",
                            a,
                            lang
                        )),
                        crate::report::village::percent(n as f64 * 100.0 / answered as f64)
                    )
                })
                .collect();
            body.push_str(&format!(
                "<p>{}{answered}：{}</p>",
                lang.t(
                    "满意度测评（对班子的总体评价）",
                    "Evaluation forms on the team "
                ),
                split.join("，")
            ));
        }
    }
    // Progress per work group and village.
    let groups = state
        .storage
        .campaign_records(
            c.id,
            "work_group".into(),
            user.auth.visibility(),
            crate::storage::Period::all(),
        )
        .await?;
    let place_code: HashMap<String, String> = c
        .places
        .iter()
        .map(|p| (p.id.to_string(), p.scope.clone()))
        .collect();
    body.push_str(&format!("<h2>{}</h2>", lang.t("工作进度", "Progress")));
    let targets_set = t.targets.any();
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
        lang.t("目标完成情况", "Against the targets"),
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
            rows.push(vec![
                esc(group),
                format!(
                    "<a href=\"/ui/c/{}/v/{}{}\">{}</a>",
                    c.id,
                    esc(code),
                    c.keep_period('?'),
                    esc(&v.name)
                ),
                v.members.to_string(),
                v.interviews.to_string(),
                format!(
                    "{} {}/{}",
                    svg::progress(v.members_interviewed.min(v.members), v.members),
                    v.members_interviewed.min(v.members),
                    v.members
                ),
                v.meetings.to_string(),
                v.questionnaires.to_string(),
                v.evaluations.to_string(),
                v.document_reviews.to_string(),
                v.findings.to_string(),
                v.team_rating
                    .as_deref()
                    .map(|r| choice_label(c.template.as_ref(), "assessment", "rating", r, lang))
                    .unwrap_or_else(|| "—".into()),
                super::targets::cell(v, c, lang),
            ]);
        }
    }
    let (mut header, mut rows) = (header, rows);
    if !targets_set {
        header.pop();
        for row in &mut rows {
            row.pop();
        }
    }
    body.push_str(&table(&header, &rows));
    let visible_groups: Vec<(String, Vec<String>)> = group_of
        .iter()
        .map(|(g, codes)| {
            (
                g.clone(),
                codes
                    .iter()
                    .filter(|code| user.auth.sees(&c.id, code))
                    .cloned()
                    .collect(),
            )
        })
        .collect();
    let own = super::targets::campaign_record(state, c, user)
        .await?
        .map(|r| fieldsync_protocol::template::Targets::from_fields(&r.fields))
        .unwrap_or_default();
    body.push_str(&super::targets::section(c, &own, &visible_groups, user));
    // Charts: ratings in their fixed order (empty bars shown), other counts as they come.
    body.push_str(&format!("<h2>{}</h2>", lang.t("图表", "Charts")));
    let ratings = ["good", "normal", "poor"];
    let charts: [Chart<'_>; 4] = [
        (
            "班子定性评价分布",
            "Team ratings",
            &t.team_ratings,
            "assessment",
            "rating",
            Some(&ratings),
        ),
        (
            "问题类别",
            "Findings by category",
            &t.findings_by_category,
            "finding",
            "category",
            None,
        ),
        (
            "班子成员定性评价",
            "Member ratings",
            &t.member_ratings,
            "assessment",
            "rating",
            Some(&ratings),
        ),
        (
            "星级评定",
            "Star ratings",
            &t.star_ratings,
            "star_rating",
            "stars",
            None,
        ),
    ];
    for (i, (zh, en, counts, kind, field, order)) in charts.into_iter().enumerate() {
        if i > 0 && counts.is_empty() {
            continue;
        }
        let values: Vec<&str> = match order {
            Some(o) => o.to_vec(),
            None => counts.keys().map(String::as_str).collect(),
        };
        let items: Vec<(String, u64)> = values
            .into_iter()
            .map(|v| {
                (
                    choice_label(c.template.as_ref(), kind, field, v, lang),
                    counts.get(v).copied().unwrap_or(0),
                )
            })
            .collect();
        // Ratings in green to red, where that means good to bad; other counts in one colour.
        let tone = if order.is_some() {
            svg::Tone::Rating
        } else {
            svg::Tone::Plain
        };
        body.push_str(&svg::bars(lang.t(zh, en), &items, tone));
    }
    // Campaign-wide counts are for the department; a leader's conflicts page lists theirs.
    if t.conflicted_assessments > 0 && matches!(user.auth.0.person.role, Role::Admin | Role::Viewer)
    {
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
    if matches!(user.auth.0.person.role, Role::Admin | Role::Viewer) {
        body.push_str(&format!(
            "<p><a href=\"/ui/c/{}/devices\">{}</a></p>",
            c.id,
            lang.t("设备同步情况 →", "Devices and their last sync →")
        ));
    }
    Ok(body)
}

pub(super) async fn conflicts(
    State(state): State<Arc<AppState>>,
    user: User,
    Path(campaign): Path<String>,
) -> Response {
    let lang = user.lang;
    let c = match load_campaign(&state, &user, &campaign, crate::storage::Period::all()).await {
        Ok(c) => c,
        Err(e) => return ui_error(lang, e),
    };
    let list = match state
        .storage
        .records(
            RecordFilter {
                campaign: Some(c.id),
                conflicted: true,
                limit: Some(5000),
                ..Default::default()
            },
            user.auth.visibility(),
        )
        .await
    {
        Ok(l) => l,
        Err(e) => return ui_error(lang, e.into()),
    };
    // Each conflicted field with its values and who wrote each, so that most can be decided
    // from the list (the record page has the form).
    let mut rows: Vec<Vec<String>> = Vec::new();
    for r in list.iter().take(500) {
        let conflicts = match state.storage.conflicts(r.id).await {
            Ok(c) => c.unwrap_or_default(),
            Err(e) => return ui_error(lang, e.into()),
        };
        let actors: Vec<String> = conflicts
            .iter()
            .flat_map(|c| c.values.iter().map(|v| v.actor.clone()))
            .collect();
        let owners = match state.storage.actor_owners(actors).await {
            Ok(o) => o,
            Err(e) => return ui_error(lang, e.into()),
        };
        for f in &conflicts {
            let values: Vec<String> = f
                .values
                .iter()
                .map(|v| {
                    let who = owners
                        .get(&v.actor)
                        .and_then(|o| o.1.clone())
                        .unwrap_or_else(|| {
                            format!("{} {}", lang.t("设备", "device"), &v.actor[..8])
                        });
                    format!(
                        "{} — {} {}",
                        esc(&super::record::value_text(
                            c.template.as_ref(),
                            &r.kind,
                            &f.field,
                            &v.value,
                            lang
                        )),
                        esc(&who),
                        v.time.map(super::page::time).unwrap_or_default()
                    )
                })
                .collect();
            rows.push(vec![
                esc(&c.place_name(&r.scope)),
                esc(&kind_label(c.template.as_ref(), &r.kind, lang)),
                record_link(&r.id, &display_name(r)),
                esc(&field_label(c.template.as_ref(), &r.kind, &f.field, lang)),
                values.join("<br>"),
            ]);
        }
    }
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
                lang.t("字段", "Field").into(),
                lang.t("同时写入的值", "Values written at the same time")
                    .into(),
            ],
            &rows,
        )
    };
    nav_page(
        lang,
        lang.t("待处理冲突", "Conflicts to review"),
        &c.id.to_string(),
        Nav::Conflicts,
        &body,
    )
    .into_response()
}

/// The search box's query.
#[derive(Debug, serde::Deserialize)]
pub struct SearchForm {
    /// What to find: words separated by spaces, each to be found.
    #[serde(default)]
    pub q: String,
    /// Only this kind (empty: every kind).
    #[serde(default)]
    pub kind: String,
    /// Only this village (empty: every village).
    #[serde(default)]
    pub village: String,
}

/// The most hits the search page lists.
const SEARCH_PAGE_HITS: usize = 200;

pub(super) async fn search(
    State(state): State<Arc<AppState>>,
    user: User,
    Path(campaign): Path<String>,
    Query(form): Query<SearchForm>,
) -> Response {
    let lang = user.lang;
    let c = match load_campaign(&state, &user, &campaign, crate::storage::Period::all()).await {
        Ok(c) => c,
        Err(e) => return ui_error(lang, e),
    };
    let q = form.q.trim().to_string();
    let kind = Some(form.kind.trim()).filter(|k| !k.is_empty());
    let village = Some(form.village.trim()).filter(|v| !v.is_empty());
    let mut body = format!(
        "<form class=\"search\" action=\"/ui/c/{}/search\"><input type=\"search\" name=\"q\" \
         value=\"{}\" aria-label=\"{}\" placeholder=\"{}\"> \
         <label>{} <select name=\"kind\">{}</select></label> \
         <label>{} <select name=\"village\">{}</select></label> \
         <button>{}</button></form>",
        c.id,
        esc(&q),
        lang.t("搜索", "Search"),
        lang.t(
            "多个词用空格分开，如：集体 经济",
            "Separate words by spaces, e.g. collective economy"
        ),
        lang.t("类型", "Kind"),
        kind_options(&c, lang, kind),
        lang.t("村（社区）", "Village"),
        village_options(&c, lang, village),
        lang.t("搜索", "Search")
    );
    let words = crate::storage::search_words(&q);
    if !words.is_empty() {
        state
            .storage
            .audit(user.auth.audit(
                "search",
                serde_json::json!({ "q": q, "campaign": c.id, "kind": kind, "village": village }),
            ))
            .await;
        let search = crate::storage::Search {
            campaign: Some(c.id),
            kind: kind.map(String::from),
            scope: village.map(String::from),
            ..crate::storage::Search::new(&q, SEARCH_PAGE_HITS)
        };
        let hits = match state.storage.search(search, user.auth.visibility()).await {
            Ok(h) => h,
            Err(e) => return ui_error(lang, e.into()),
        };
        if hits.is_empty() {
            body.push_str(&format!(
                "<p class=\"muted\" role=\"status\">{}</p>",
                if lang.en {
                    format!(
                        "Nothing found containing {}. Try fewer words, other words, or every kind and village.",
                        esc(&words.join(" and "))
                    )
                } else {
                    format!(
                        "没有找到同时包含“{}”的记录。可以减少关键词、换个说法，或把类型和村（社区）改为全部再试。",
                        esc(&words.join("”“"))
                    )
                }
            ));
        } else {
            let rows: Vec<Vec<String>> = hits
                .iter()
                .map(|h| {
                    vec![
                        esc(&c.place_name(&h.scope)),
                        esc(&kind_label(c.template.as_ref(), &h.kind, lang)),
                        format!(
                            "<a href=\"/ui/r/{}\">{}</a>",
                            h.id,
                            highlight(&h.snippet, &words)
                        ),
                    ]
                })
                .collect();
            body.push_str(&format!(
                "<p role=\"status\">{}</p>",
                if hits.len() >= SEARCH_PAGE_HITS {
                    lang.t(
                        "找到的记录较多，只列出前 200 条；请加上类型、村（社区）或更多关键词。",
                        "Many records match; the first 200 are listed. Add a kind, a village or more words.",
                    )
                    .to_string()
                } else if lang.en {
                    format!("{} records found.", hits.len())
                } else {
                    format!("找到 {} 条记录。", hits.len())
                }
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
    }
    nav_page(
        lang,
        lang.t("搜索", "Search"),
        &c.id.to_string(),
        Nav::Search,
        &body,
    )
    .into_response()
}
