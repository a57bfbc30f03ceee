//! The village dossier: the team, its members and their satisfaction, findings with their
//! rectifications, and the village's records by kind (the first 50 of each; the rest paged).

use std::sync::Arc;

use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};

use super::page::{Lang, cards, esc, page, table};
use super::*;
use crate::{
    AppState,
    error::ApiError,
    storage::{RecordFilter, RecordView},
};

/// Rows of each kind shown on the dossier itself; the rest are a link away.
const DOSSIER_ROWS: usize = 50;
/// Rows per page when one kind of a village is listed whole.
const PAGE_ROWS: usize = 100;

/// `?kind=interview&page=2`: one kind of the village, page by page.
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct DossierQuery {
    kind: Option<String>,
    page: Option<usize>,
}

pub(super) async fn dossier(
    State(state): State<Arc<AppState>>,
    user: User,
    Path((campaign, code)): Path<(String, String)>,
    Query(query): Query<DossierQuery>,
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
            "not_found",
            lang.t(
                "没有这个村（社区）的记录",
                "No records of this village for you",
            ),
        );
    }
    let listing = query
        .kind
        .as_deref()
        .and_then(|k| DOSSIER_KINDS.iter().find(|known| **known == k).copied());
    let body = match listing {
        Some(kind) => kind_pages(&state, &c, &code, kind, query.page.unwrap_or(1), lang).await,
        None => dossier_body(&state, &c, &code, lang).await,
    };
    match body {
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
    c: &Campaign,
    kind: &str,
    code: &str,
) -> Result<Vec<RecordView>, ApiError> {
    Ok(state
        .storage
        .records(
            RecordFilter {
                kind: Some(kind.into()),
                scope: Some(code.into()),
                campaign: Some(c.id),
                limit: Some(10_000),
                ..Default::default()
            },
            c.visibility.clone(),
        )
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
    if state.blobs.is_some() {
        body.push_str(&format!(
            "<p><a href=\"/ui/c/{}/v/{}/files.zip\">{}</a></p>",
            c.id,
            esc(code),
            lang.t(
                "下载本村全部照片、录音和扫描件（ZIP）",
                "Download all of the village's photos, recordings and scans (ZIP)"
            )
        ));
    }
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
    let members = in_village(state, c, "member", code).await?;
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
    let findings = in_village(state, c, "finding", code).await?;
    let rects = in_village(state, c, "rectification", code).await?;
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
                    let (measure, owner) =
                        (esc(field_str(r, "measure")), esc(field_str(r, "owner")));
                    let status = choice_label(
                        template,
                        "rectification",
                        "status",
                        field_str(r, "status"),
                        lang,
                    );
                    lang.t(
                        &format!("{measure}（{owner}，{status}）"),
                        &format!("{measure} ({owner}, {status})"),
                    )
                    .to_string()
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
    // Every other record, by kind; references shown by name; long lists a link away.
    let names = crate::api::reference_names(state, c.id, &c.visibility).await?;
    for kind in DOSSIER_KINDS {
        let records = in_village(state, c, kind, code).await?;
        if records.is_empty() {
            continue;
        }
        body.push_str(&format!(
            "<h2>{} {}</h2>",
            esc(&kind_label(template, kind, lang)),
            lang.t(
                &format!("（{}）", records.len()),
                &format!("({})", records.len())
            )
        ));
        body.push_str(&kind_table(
            c,
            kind,
            &records[..records.len().min(DOSSIER_ROWS)],
            &names,
            lang,
        ));
        if records.len() > DOSSIER_ROWS {
            body.push_str(&format!(
                "<p><a href=\"?kind={kind}\">{}</a></p>",
                lang.t(
                    &format!("查看全部 {} 条 →", records.len()),
                    &format!("All {} →", records.len())
                )
            ));
        }
    }
    body.push_str(&super::files::photo_strip(state, c, code, lang).await?);
    Ok(body)
}

/// The records of one kind as a table: the first eight columns, cells cut at 60 characters, the
/// first linking to the record (⚠ when it holds a conflict).
fn kind_table(
    c: &Campaign,
    kind: &str,
    records: &[RecordView],
    names: &crate::report::Names,
    lang: Lang,
) -> String {
    let (mut header, rows) =
        crate::report::table(c.template.as_ref(), kind, records, names, lang.en);
    header.truncate(8);
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .zip(records)
        .map(|(row, r)| {
            let mut cells: Vec<String> = row
                .into_iter()
                .take(8)
                .map(|cell| {
                    let short: String = cell.chars().take(60).collect();
                    esc(&short)
                })
                .collect();
            cells[0] = record_link(&r.id, &short_id(&r.id));
            if r.conflicts > 0 {
                cells[0].push_str(" ⚠");
            }
            cells
        })
        .collect();
    table(&header.iter().map(|h| esc(h)).collect::<Vec<_>>(), &rows)
}

/// One kind of a village, [`PAGE_ROWS`] records a page, with links to the pages around it.
async fn kind_pages(
    state: &AppState,
    c: &Campaign,
    code: &str,
    kind: &str,
    page: usize,
    lang: Lang,
) -> Result<String, ApiError> {
    let records = in_village(state, c, kind, code).await?;
    let pages = records.len().div_ceil(PAGE_ROWS).max(1);
    let page = page.clamp(1, pages);
    let shown = &records[(page - 1) * PAGE_ROWS..(page * PAGE_ROWS).min(records.len())];
    let names = crate::api::reference_names(state, c.id, &c.visibility).await?;
    let mut body = format!(
        "<p><a href=\"?\">{}</a></p><h2>{} {}</h2>",
        lang.t("← 返回村情档案", "← back to the dossier"),
        esc(&kind_label(c.template.as_ref(), kind, lang)),
        lang.t(
            &format!("（共 {} 条，第 {page}/{pages} 页）", records.len()),
            &format!("({} in all, page {page} of {pages})", records.len())
        )
    );
    body.push_str(&kind_table(c, kind, shown, &names, lang));
    let mut links = Vec::new();
    if page > 1 {
        links.push(format!(
            "<a href=\"?kind={kind}&amp;page={}\">{}</a>",
            page - 1,
            lang.t("← 上一页", "← previous")
        ));
    }
    if page < pages {
        links.push(format!(
            "<a href=\"?kind={kind}&amp;page={}\">{}</a>",
            page + 1,
            lang.t("下一页 →", "next →")
        ));
    }
    if !links.is_empty() {
        body.push_str(&format!("<p>{}</p>", links.join(" · ")));
    }
    Ok(body)
}
