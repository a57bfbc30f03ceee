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
/// Lists longer than this are folded on the dossier.
const FOLD_ROWS: usize = 10;
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
    period: crate::api::PeriodQuery,
) -> Response {
    let lang = user.lang;
    let period = match period.get() {
        Ok(p) => p,
        Err(e) => return period_error(lang, &format!("/ui/c/{campaign}/v/{code}"), e),
    };
    let c = match load_campaign(&state, &user, &campaign, period).await {
        Ok(c) => c,
        Err(e) => return ui_error(lang, e),
    };
    if !user.auth.sees(&c.id, &code) || !c.knows_village(&code) {
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

/// The first `n` live records of one kind in one village, whole, in the order they arrived
/// (through the `(campaign, scope, kind, first_seq)` index).
async fn in_village(
    state: &AppState,
    c: &Campaign,
    kind: &str,
    code: &str,
    n: u32,
) -> Result<Vec<RecordView>, ApiError> {
    let read = |limit: u32| {
        state.storage.records(
            RecordFilter {
                kind: Some(kind.into()),
                scope: Some(code.into()),
                campaign: Some(c.id),
                limit: Some(limit),
                from: c.period.from.clone(),
                to: c.period.to.clone(),
                ..Default::default()
            },
            c.visibility.clone(),
        )
    };
    let first = read(n).await?;
    // Deleted records among the first n leave the list short: then read on.
    let read_all = first.len() == n as usize && first.iter().any(|r| r.deleted);
    let records = if read_all {
        read(MAX_LIST).await?
    } else {
        first
    };
    Ok(records
        .into_iter()
        .filter(|r| !r.deleted)
        .take(n as usize)
        .collect())
}

/// The most records of one kind a village's page lists or pages through.
const MAX_LIST: u32 = 10_000;

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
    let mut body = c.period_form(&format!("/ui/c/{}/v/{code}", c.id), lang);
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
    body.push_str(&format!(
        "<p><a href=\"/ui/c/{}/v/{}/dossier.docx{}\" download>{}</a> · <span class=\"muted\">{}</span></p>",
        c.id,
        esc(code),
        c.keep_period('?'),
        lang.t("下载本村分析材料（Word）", "Download the village's analysis (Word)"),
        lang.t(
            "打印本页：用浏览器的“打印”（Ctrl+P），已按 A4 排版；折叠的列表不打印，完整材料请用 Word 版",
            "To print this page use the browser's Print (Ctrl+P), laid out for A4; folded lists are left out, the Word file has everything"
        )
    ));
    // What the summary, the counts by kind and the photo strip need of the village's records,
    // in one pass (counted as the tallies count: approved records only where the campaign
    // says so); each list below reads its own first rows whole.
    let digest = state
        .storage
        .village_digest(
            crate::report::village::digest_ask(template, c.id, code, c.period.clone()),
            c.visibility.clone(),
        )
        .await?;
    let count_of = |kind: &str| digest.kinds.get(kind).copied().unwrap_or(0) as usize;
    let (zh, en) = crate::report::counting_basis(&c.tallies);
    body.push_str(&format!("<p class=\"muted\">{}</p>", esc(lang.t(&zh, &en))));
    let summary =
        crate::report::village::summarize(template, v, &digest, &super::page::today(), lang.en);
    body.push_str(&summary_html(&summary, lang));
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
    let members = in_village(state, c, "member", code, MAX_LIST).await?;
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
        // The same numbers as a table, with each member's rate: readable on a phone (where the
        // chart is small) and by a screen reader.
        let mut header = vec![lang.t("成员", "Member").to_string()];
        header.extend(legend.iter().cloned());
        header.push(lang.t("满意率", "Satisfaction rate").to_string());
        let rows: Vec<Vec<String>> = sat
            .iter()
            .map(|(name, counts)| {
                let total: u64 = counts.iter().sum();
                let mut row = vec![esc(name)];
                row.extend(counts.iter().map(u64::to_string));
                row.push(if total == 0 {
                    String::new()
                } else {
                    crate::report::village::percent(
                        (counts[0] + counts[1]) as f64 * 100.0 / total as f64,
                    )
                });
                row
            })
            .collect();
        body.push_str(&format!(
            "<details><summary>{}</summary>{}</details>",
            lang.t("成员满意度明细", "Satisfaction per member in numbers"),
            table(&header, &rows)
        ));
    }
    // Findings and their rectifications.
    let findings = in_village(state, c, "finding", code, MAX_LIST).await?;
    let rects = in_village(state, c, "rectification", code, MAX_LIST).await?;
    let today = super::page::today();
    body.push_str(&format!(
        "<h2>{}</h2>",
        lang.t("问题与整改", "Findings and rectifications")
    ));
    if !findings.is_empty() {
        body.push_str(&format!(
            "<p><a href=\"/ui/c/{}/ledger?village={}{}\">{}</a></p>",
            c.id,
            esc(code),
            c.keep_period('&'),
            lang.t(
                "在整改台账中查看本村的问题和整改措施 →",
                "The village's findings and measures in the rectification ledger →"
            )
        ));
    }
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
                    let deadline = field_str(r, "deadline");
                    let mut when = String::new();
                    if !deadline.is_empty() {
                        when = lang
                            .t(
                                &format!("，时限 {}", esc(deadline)),
                                &format!(", due {}", esc(deadline)),
                            )
                            .to_string();
                    }
                    if crate::rectification::overdue(field_str(r, "status"), deadline, &today) {
                        when.push_str(&format!(
                            "{}<span class=\"overdue\">{}</span>",
                            lang.t("，", ", "),
                            lang.t("已逾期", "overdue")
                        ));
                    }
                    lang.t(
                        &format!("{measure}（{owner}，{status}{when}）"),
                        &format!("{measure} ({owner}, {status}{when})"),
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
        let count = count_of(kind);
        if count == 0 {
            continue;
        }
        let shown = in_village(state, c, kind, code, DOSSIER_ROWS as u32).await?;
        body.push_str(&format!(
            "<h2>{}{}</h2>",
            esc(&kind_label(template, kind, lang)),
            lang.t(&format!("（{count}）"), &format!(" ({count})"))
        ));
        // Long lists folded: a click opens them (no script).
        let table = kind_table(c, kind, &shown, &names, lang);
        if count > FOLD_ROWS {
            body.push_str(&format!(
                "<details><summary>{}</summary>{table}</details>",
                if count > shown.len() {
                    lang.t(
                        &format!("展开前 {} 条记录", shown.len()),
                        &format!("Show the first {} records", shown.len()),
                    )
                    .to_string()
                } else {
                    lang.t(
                        &format!("展开 {} 条记录", shown.len()),
                        &format!("Show {} records", shown.len()),
                    )
                    .to_string()
                }
            ));
        } else {
            body.push_str(&table);
        }
        if count > DOSSIER_ROWS {
            body.push_str(&format!(
                "<p><a href=\"?kind={kind}{}\">{}</a></p>",
                c.keep_period('&'),
                lang.t(&format!("查看全部 {count} 条 →"), &format!("All {count} →"))
            ));
        }
    }
    body.push_str(&super::files::photo_strip(state, &digest.files, lang).await?);
    Ok(body)
}

/// The village at a glance: rating, stars, satisfaction, rectification progress, and the
/// questionnaire's answers as percentages per question (folded).
fn summary_html(s: &crate::report::village::Summary, lang: Lang) -> String {
    use crate::report::village::percent;
    let none = || lang.t("暂无", "none yet").to_string();
    let total = s.done + s.in_progress + s.planned;
    let mut out = cards(&[
        (
            lang.t("班子定性评价", "Team rating"),
            match &s.rating {
                Some(r) => r.clone(),
                None if s.rating_pending => lang
                    .t(
                        "意见不一致，待审核",
                        "Assessments disagree, awaiting review",
                    )
                    .to_string(),
                None => none(),
            },
        ),
        (
            lang.t("星级评定", "Stars"),
            s.stars.clone().unwrap_or_else(none),
        ),
        (
            lang.t("群众满意率", "Satisfaction"),
            s.satisfaction_rate.map(percent).unwrap_or_else(none),
        ),
        (
            lang.t("整改完成", "Rectified"),
            if total == 0 {
                none()
            } else {
                format!("{} / {total}", s.done)
            },
        ),
    ]);
    if let Some(a) = &s.satisfaction {
        let split: Vec<String> = a
            .answers
            .iter()
            .map(|(l, n, p)| {
                let (l, p) = (esc(l), percent(*p));
                lang.t(&format!("{l} {n}（{p}）"), &format!("{l} {n} ({p})"))
                    .to_string()
            })
            .collect();
        out.push_str(&format!(
            "<p>{}</p>",
            lang.t(
                &format!("满意度测评 {}：{}", a.total, split.join("，")),
                &format!("Evaluation forms {}: {}", a.total, split.join(", "))
            )
        ));
    }
    if total > 0 {
        out.push_str(&format!(
            "<p>{}</p>",
            if lang.en {
                format!(
                    "Rectifications: {} done, {} in progress, {} not started{}.",
                    s.done,
                    s.in_progress,
                    s.planned,
                    if s.overdue > 0 {
                        format!(
                            ", <span class=\"overdue\">{} of them overdue</span>",
                            s.overdue
                        )
                    } else {
                        String::new()
                    }
                )
            } else {
                format!(
                    "整改措施：已完成 {}，整改中 {}，未开始 {}{}。",
                    s.done,
                    s.in_progress,
                    s.planned,
                    if s.overdue > 0 {
                        format!(
                            "，<span class=\"overdue\">其中逾期未完成 {}</span>",
                            s.overdue
                        )
                    } else {
                        String::new()
                    }
                )
            }
        ));
    }
    if !s.questions.is_empty() {
        let rows: Vec<Vec<String>> = s
            .questions
            .iter()
            .map(|q| {
                vec![
                    esc(&q.label),
                    q.total.to_string(),
                    q.answers
                        .iter()
                        .map(|(l, _, p)| format!("{} {}", esc(l), percent(*p)))
                        .collect::<Vec<_>>()
                        .join(lang.t("；", "; ")),
                ]
            })
            .collect();
        out.push_str(&format!(
            "<details><summary>{}</summary>{}</details>",
            lang.t(
                &format!("问卷调查：{} 个问题的作答比例", s.questions.len()),
                &format!("Questionnaires: answers to {} questions", s.questions.len())
            ),
            table(
                &[
                    lang.t("问题", "Question").into(),
                    lang.t("作答人数", "Answers").into(),
                    lang.t("各选项比例", "Share of each answer").into(),
                ],
                &rows
            )
        ));
    }
    out
}

/// `GET /ui/c/{campaign}/v/{code}/dossier.docx`: the village's analysis (村情分析) as a 公文-layout
/// Word document, from the records the user may see. Audited as an export.
pub(super) async fn dossier_docx(
    State(state): State<Arc<AppState>>,
    user: User,
    Path((campaign, code)): Path<(String, String)>,
    period: crate::api::PeriodQuery,
) -> Response {
    let lang = user.lang;
    match dossier_docx_inner(&state, &user, &campaign, &code, period).await {
        Ok(r) => r,
        Err(e) => ui_error(lang, e),
    }
}

async fn dossier_docx_inner(
    state: &AppState,
    user: &User,
    campaign: &str,
    code: &str,
    period: crate::api::PeriodQuery,
) -> Result<Response, ApiError> {
    use axum::http::{HeaderMap, HeaderValue, header};
    let c = load_campaign(state, user, campaign, period.get()?).await?;
    if !user.auth.sees(&c.id, code) || !c.knows_village(code) {
        return Err(ApiError::not_found(format!("no village {code} for you")));
    }
    // The summary from the village's digest (every record counted, however many); the
    // findings and their rectifications whole, for their texts.
    let digest = state
        .storage
        .village_digest(
            crate::report::village::digest_ask(c.template.as_ref(), c.id, code, c.period.clone()),
            c.visibility.clone(),
        )
        .await?;
    // Those that count are the digest's (approved only where the campaign says so).
    let counted: std::collections::HashSet<uuid::Uuid> =
        digest.records.iter().map(|r| r.id).collect();
    let mut live = in_village(state, &c, "finding", code, MAX_LIST).await?;
    live.extend(in_village(state, &c, "rectification", code, MAX_LIST).await?);
    live.retain(|r| counted.contains(&r.id));
    let basis = crate::report::document_basis(&c.tallies);
    let name = c.place_name(code);
    let template = c.template.clone();
    let tally = c
        .tallies
        .villages_detail
        .iter()
        .find(|v| v.code == code)
        .cloned();
    let today = super::page::today();
    let bytes = tokio::task::spawn_blocking(move || {
        use crate::report::village;
        let summary = village::summarize(template.as_ref(), tally.as_ref(), &digest, &today, false);
        let md = village::markdown(
            &name,
            template.as_ref(),
            tally.as_ref(),
            &summary,
            &live,
            &today,
        );
        // The counting basis right under the title, as the draft report has it.
        let md = match md.split_once("\n\n") {
            Some((title, rest)) => format!("{title}\n\n（{basis}）\n\n{rest}"),
            None => md,
        };
        crate::report::docx_from_markdown(&md, &today)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(ApiError::Internal)?;
    state
        .storage
        .audit(user.auth.audit(
            "export",
            serde_json::json!({ "campaign": c.id, "village": code, "file": "dossier.docx", "ui": true }),
        ))
        .await;
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
    );
    let file = format!("{}村情分析.docx", c.place_name(code));
    if let Ok(v) = HeaderValue::from_str(&fieldsync_protocol::attachment::content_disposition(
        &file, false,
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    Ok((StatusCode::OK, h, bytes).into_response())
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
    header[0] = lang.t("记录", "Record").into();
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
            // Named by what it is about (and its date), never by a hash.
            let title = record_title(r, names);
            let title = if title.starts_with(r.kind.as_str()) {
                format!(
                    "{}{}",
                    kind_label(c.template.as_ref(), kind, lang),
                    lang.t(
                        &format!("（{}）", short_id(&r.id)),
                        &format!(" ({})", short_id(&r.id))
                    )
                )
            } else {
                title
            };
            cells[0] = record_link(&r.id, &title);
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
    let records = in_village(state, c, kind, code, MAX_LIST).await?;
    let pages = records.len().div_ceil(PAGE_ROWS).max(1);
    let page = page.clamp(1, pages);
    let shown = &records[(page - 1) * PAGE_ROWS..(page * PAGE_ROWS).min(records.len())];
    let names = crate::api::reference_names(state, c.id, &c.visibility).await?;
    let mut body = format!(
        "<p><a href=\"?{}\">{}</a></p><h2>{} {}</h2>",
        esc(&c.period.query()),
        lang.t("← 返回村情档案", "← back to the dossier"),
        esc(&kind_label(c.template.as_ref(), kind, lang)),
        lang.t(
            &format!("（共 {} 条，第 {page}/{pages} 页）", records.len()),
            &format!("({} in all, page {page} of {pages})", records.len())
        )
    );
    body.push_str(&kind_table(c, kind, shown, &names, lang));
    let keep = c.keep_period('&');
    let mut links = Vec::new();
    if page > 1 {
        links.push(format!(
            "<a href=\"?kind={kind}&amp;page={}{keep}\">{}</a>",
            page - 1,
            lang.t("← 上一页", "← previous")
        ));
    }
    if page < pages {
        links.push(format!(
            "<a href=\"?kind={kind}&amp;page={}{keep}\">{}</a>",
            page + 1,
            lang.t("下一页 →", "next →")
        ));
    }
    if !links.is_empty() {
        body.push_str(&format!("<p>{}</p>", links.join(" · ")));
    }
    Ok(body)
}
