//! Review on the dashboard: the review box on a record's page, and the review queue of a
//! campaign (filter by group's village, kind and state; approve or return several at once).
//! Both write through [`crate::review::decide`].

use std::sync::Arc;

use axum::{
    extract::{Path, Query, State},
    response::{IntoResponse, Redirect, Response},
};
use fieldsync_protocol::{
    approval::{Review, State as ReviewState},
    auth::DEPARTMENT_KINDS,
    template::TEMPLATE_KIND,
};
use uuid::Uuid;

use super::page::{Lang, Nav, esc, nav_page, table, time};
use super::*;
use crate::{AppState, error::ApiError, storage::RecordFilter};

/// At most this many records listed at once (the counts cover all).
const QUEUE_ROWS: usize = 200;

/// A state's label in the page language.
fn label(state: ReviewState, lang: Lang) -> &'static str {
    if lang.en { state.en() } else { state.zh() }
}

/// How a review reads on a page: the state, and who reviewed it when with their comment.
pub(super) fn summary(review: &Review, lang: Lang) -> String {
    let mut out = format!(
        "<span class=\"review-{}\">{}</span>",
        review.state.as_str(),
        esc(label(review.state, lang))
    );
    if let Some(at) = review.at {
        out.push_str(&format!(
            " <span class=\"muted\">{} {}</span>",
            esc(&review.by),
            esc(&time(at))
        ));
    }
    if !review.comment.is_empty() {
        out.push_str(&format!("<br>{}", esc(&review.comment)));
    }
    out
}

/// The review box of a record's page: the state, and for a reviewer the form to decide.
pub(super) async fn review_box(
    state: &AppState,
    user: &User,
    r: &crate::storage::RecordView,
) -> Result<String, ApiError> {
    let lang = user.lang;
    let review = crate::review::of(state, r).await?;
    let mut out = format!(
        "<section class=\"review\"><h2>{}</h2><p>{}</p>",
        lang.t("审核", "Review"),
        summary(&review, lang)
    );
    let template = state.storage.template(r.campaign).await?;
    if crate::review::may_review(&user.auth, r, template.as_ref()) {
        out.push_str(&format!(
            "<form method=\"post\" action=\"/ui/r/{id}/review\">\
             <label>{comment} <textarea name=\"comment\" rows=\"2\"></textarea></label>\
             <button name=\"decision\" value=\"approved\">{approve}</button> \
             <button name=\"decision\" value=\"returned\">{ret}</button></form>",
            id = r.id,
            comment = lang.t("意见（退回时必填）", "Comment (needed to return)"),
            approve = lang.t("通过", "Approve"),
            ret = lang.t("退回修改", "Return for changes"),
        ));
    }
    out.push_str("</section>");
    Ok(out)
}

/// The decision and comment of a review form, and the records ticked on the queue page
/// (repeated `id` fields, which `axum::Form` cannot read, so parsed here).
struct Decision {
    ids: Vec<Uuid>,
    decision: ReviewState,
    comment: String,
    back: String,
}

fn parse_form(body: &[u8]) -> Result<Decision, ApiError> {
    let mut ids = Vec::new();
    let mut decision = None;
    let mut comment = String::new();
    let mut back = String::new();
    for (k, v) in form_urlencoded::parse(body) {
        match &*k {
            "id" => ids.push(parse_uuid(&v)?),
            "decision" => {
                decision = Some(ReviewState::parse(&v).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "{v:?} is not a review decision: approved or returned"
                    ))
                })?)
            }
            "comment" => comment = v.into_owned(),
            "back" => back = v.into_owned(),
            _ => {}
        }
    }
    let decision = decision
        .ok_or_else(|| ApiError::bad_request("请选择通过或退回 / choose approve or return"))?;
    Ok(Decision {
        ids,
        decision,
        comment,
        back,
    })
}

/// `POST /ui/r/{id}/review`: one record's decision, back to its page.
pub(super) async fn review_one(
    State(state): State<Arc<AppState>>,
    user: User,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let lang = user.lang;
    let run = async {
        let id = parse_uuid(&id)?;
        let mut d = parse_form(&body)?;
        d.ids = vec![id];
        crate::review::decide(&state, &user.auth, &d.ids, d.decision, &d.comment).await?;
        Ok::<_, ApiError>(id)
    };
    match run.await {
        Ok(id) => Redirect::to(&format!("/ui/r/{id}")).into_response(),
        Err(e) => ui_error(lang, e),
    }
}

/// The queue's filters.
#[derive(Debug, Default, serde::Deserialize)]
pub struct QueueQuery {
    /// `pending` (the default), `returned`, `approved` or `all`.
    pub state: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only this village (its code).
    pub village: Option<String>,
    /// How many were just reviewed (shown once).
    pub done: Option<usize>,
}

/// `GET /ui/c/{campaign}/review`: the records to review, with their state, filters and a form
/// to approve or return the ticked ones.
pub(super) async fn queue(
    State(state): State<Arc<AppState>>,
    user: User,
    Path(campaign): Path<String>,
    Query(q): Query<QueueQuery>,
    period: crate::api::PeriodQuery,
) -> Response {
    let lang = user.lang;
    match queue_body(&state, &user, &campaign, q, period).await {
        Ok((c, body)) => {
            nav_page(lang, lang.t("审核", "Review"), &c, Nav::Review, &body).into_response()
        }
        Err(e) => ui_error(lang, e),
    }
}

async fn queue_body(
    state: &AppState,
    user: &User,
    campaign: &str,
    q: QueueQuery,
    period: crate::api::PeriodQuery,
) -> Result<(String, String), ApiError> {
    let lang = user.lang;
    let c = load_campaign(state, user, campaign, period.get()?).await?;
    let wanted = match q.state.as_deref() {
        None | Some("") => Some(ReviewState::Pending),
        Some("all") => None,
        Some(s) => Some(
            ReviewState::parse(s)
                .ok_or_else(|| ApiError::bad_request(format!("{s:?} is not a review state")))?,
        ),
    };
    let kind = q.kind.clone().filter(|k| !k.is_empty());
    let village = q.village.clone().filter(|v| !v.is_empty());
    // Every visible record of the filter, page by page (the visibility is in the query).
    let mut records = Vec::new();
    let mut after = None;
    loop {
        let page = state
            .storage
            .records(
                RecordFilter {
                    campaign: Some(c.id),
                    kind: kind.clone(),
                    scope: village.clone(),
                    limit: Some(1000),
                    after,
                    from: c.period.from.clone(),
                    to: c.period.to.clone(),
                    ..RecordFilter::default()
                },
                c.visibility.clone(),
            )
            .await?;
        let full = page.len() == 1000;
        after = page.last().map(|r| r.position);
        records.extend(page.into_iter().filter(|r| {
            !r.deleted && r.kind != TEMPLATE_KIND && !DEPARTMENT_KINDS.contains(&r.kind.as_str())
        }));
        if !full {
            break;
        }
    }
    let names = crate::api::reference_names(state, c.id, &c.visibility).await?;
    let mut counts = std::collections::BTreeMap::new();
    let mut rows = Vec::new();
    let mut matching = 0usize;
    for r in &records {
        let review = crate::review::of(state, r).await?;
        *counts.entry(review.state).or_insert(0usize) += 1;
        if wanted.is_some_and(|w| w != review.state) {
            continue;
        }
        matching += 1;
        if rows.len() == QUEUE_ROWS {
            continue;
        }
        let tick = if crate::review::may_review(&user.auth, r, c.template.as_ref()) {
            format!(
                "<input type=\"checkbox\" name=\"id\" value=\"{}\" form=\"decide\" aria-label=\"{}\">",
                r.id,
                lang.t("选中", "Select")
            )
        } else {
            String::new()
        };
        rows.push(vec![
            tick,
            record_link(&r.id, &record_title(r, &names)),
            esc(&kind_label(c.template.as_ref(), &r.kind, lang)),
            esc(&c.place_name(&r.scope)),
            summary(&review, lang),
        ]);
    }
    let mut body = c.period_form(&format!("/ui/c/{}/review", c.id), lang);
    if let Some(n) = q.done {
        body.push_str(&format!(
            "<p class=\"flash\">{} {n} {}</p>",
            lang.t("已审核", "Reviewed"),
            lang.t(
                "条记录，结论会同步到各设备。",
                "record(s); the decision syncs to every device."
            )
        ));
    }
    // The filters: state links with counts, kind and village pickers.
    let base = format!("/ui/c/{}/review", c.id);
    let keep = |state: &str| {
        let mut url = format!("{base}?state={state}");
        if let Some(k) = &kind {
            url.push_str(&format!("&kind={}", esc(k)));
        }
        if let Some(v) = &village {
            url.push_str(&format!("&village={}", esc(v)));
        }
        let period = c.period.query();
        if !period.is_empty() {
            url.push_str(&format!("&{}", esc(&period)));
        }
        url
    };
    let mut links: Vec<String> = ReviewState::ALL
        .iter()
        .map(|s| {
            let n = counts.get(s).copied().unwrap_or(0);
            let text = format!("{} {n}", label(*s, lang));
            if wanted == Some(*s) {
                format!("<strong>{}</strong>", esc(&text))
            } else {
                format!("<a href=\"{}\">{}</a>", keep(s.as_str()), esc(&text))
            }
        })
        .collect();
    links.push(if wanted.is_none() {
        format!("<strong>{}</strong>", lang.t("全部", "All"))
    } else {
        format!("<a href=\"{}\">{}</a>", keep("all"), lang.t("全部", "All"))
    });
    body.push_str(&format!("<p>{}</p>", links.join(" · ")));
    let kind_options = kind_options(&c, lang, kind.as_deref());
    let village_options = village_options(&c, lang, village.as_deref());
    body.push_str(&format!(
        "<form method=\"get\" action=\"{base}\"><input type=\"hidden\" name=\"state\" value=\"{}\">\
         <label>{} <select name=\"kind\">{kind_options}</select></label> \
         <label>{} <select name=\"village\">{village_options}</select></label> {}\
         <button>{}</button></form>",
        wanted.map(|w| w.as_str()).unwrap_or("all"),
        lang.t("类型", "Kind"),
        lang.t("村（社区）", "Village"),
        c.period_inputs(),
        lang.t("筛选", "Filter"),
    ));
    if rows.is_empty() {
        body.push_str(&format!(
            "<p class=\"muted\">{}</p>",
            lang.t("没有符合条件的记录。", "No record matches.")
        ));
    } else {
        if matching > rows.len() {
            body.push_str(&format!(
                "<p class=\"muted\">{}</p>",
                esc(&if lang.en {
                    format!(
                        "Showing the first {} of {matching}; pick a kind or a village to narrow \
                         the list.",
                        rows.len()
                    )
                } else {
                    format!(
                        "共 {matching} 条，显示前 {} 条；请选择类型或村（社区）缩小范围。",
                        rows.len()
                    )
                })
            ));
        }
        // The decision first, so a reviewer need not scroll past the list to reach it.
        body.push_str(&format!(
            "<form id=\"decide\" method=\"post\" action=\"{base}\">\
             <input type=\"hidden\" name=\"back\" value=\"{}\">\
             <label>{} <textarea name=\"comment\" rows=\"2\"></textarea></label>\
             <button name=\"decision\" value=\"approved\">{}</button> \
             <button name=\"decision\" value=\"returned\">{}</button></form>",
            esc(&keep(wanted.map(|w| w.as_str()).unwrap_or("all"))),
            lang.t("意见（退回时必填）", "Comment (needed to return)"),
            lang.t("通过选中的记录", "Approve the ticked records"),
            lang.t("退回选中的记录", "Return the ticked records"),
        ));
        body.push_str(&table(
            &[
                String::new(),
                lang.t("记录", "Record").into(),
                lang.t("类型", "Kind").into(),
                lang.t("村（社区）", "Village").into(),
                lang.t("审核状态", "Review").into(),
            ],
            &rows,
        ));
    }
    Ok((c.id.to_string(), body))
}

/// `POST /ui/c/{campaign}/review`: the ticked records' decision, back to the queue.
pub(super) async fn queue_decide(
    State(state): State<Arc<AppState>>,
    user: User,
    Path(campaign): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let lang = user.lang;
    let run = async {
        let c = parse_uuid(&campaign)?;
        let d = parse_form(&body)?;
        let n = crate::review::decide(&state, &user.auth, &d.ids, d.decision, &d.comment).await?;
        // Back to the same filters (only a path of this queue is followed).
        let base = format!("/ui/c/{c}/review");
        let back = if d.back.starts_with(&base) {
            d.back
        } else {
            base
        };
        let sep = if back.contains('?') { '&' } else { '?' };
        Ok::<_, ApiError>(format!("{back}{sep}done={n}"))
    };
    match run.await {
        Ok(to) => Redirect::to(&to).into_response(),
        Err(e) => ui_error(lang, e),
    }
}
