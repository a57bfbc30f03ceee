//! Read endpoints over the merged records: health, status, records and their conflicts, search,
//! a campaign's tallies, its CSV exports and its draft report.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, Query, State, rejection::QueryRejection},
};
use fieldsync_protocol::FieldValue;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    AppState,
    auth::Auth,
    error::ApiError,
    storage::{Period, RecordFilter, RecordView, StoreStatus},
};

/// `GET /health`: 200 when the storage answers (one trivial read: no counting, so that a load
/// balancer's polling costs the database nothing).
pub async fn health(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    state.storage.ping().await?;
    Ok(Json(
        json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }),
    ))
}

/// `GET /v1/status`: counts of the whole log and of the merged records, for the department
/// (they count every group's records).
pub async fn status(
    State(state): State<Arc<AppState>>,
    auth: Auth,
) -> Result<Json<StoreStatus>, ApiError> {
    auth.require_department()?;
    Ok(Json(state.storage.status().await?))
}

/// `GET /v1/records?kind=&scope=&campaign=&conflicted=&needs_review=&limit=&after=`: visible
/// records, oldest first. Leaders and workers see only their group's villages and campaign-wide
/// records; the scope is part of the query, so `limit` counts visible records. When more
/// follow, the response carries `Link: </v1/records?…&after=N>; rel="next"` and
/// `X-Next-After: N`.
pub async fn records(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    uri: axum::http::Uri,
    filter: Result<Query<RecordFilter>, QueryRejection>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let Query(filter) = filter.map_err(|e| ApiError::bad_request(e.body_text()))?;
    filter.period().checked().map_err(ApiError::bad_request)?;
    let limit = filter.limit.unwrap_or(1000).clamp(1, 10_000);
    // One more than asked tells whether another page follows.
    let mut asked = filter.clone();
    asked.limit = Some(limit + 1);
    let mut records = state.storage.records(asked, auth.visibility()).await?;
    let more = records.len() > limit as usize;
    records.truncate(limit as usize);
    let mut response = Json(&records).into_response();
    if more && let Some(last) = records.last() {
        let next = next_page(uri.query().unwrap_or(""), last.position);
        let headers = response.headers_mut();
        if let Ok(v) = axum::http::HeaderValue::from_str(&format!("<{next}>; rel=\"next\"")) {
            headers.insert(axum::http::header::LINK, v);
        }
        headers.insert("x-next-after", axum::http::HeaderValue::from(last.position));
    }
    Ok(response)
}

/// The link to the page of `/v1/records` after `position`, keeping the other query parameters.
fn next_page(query: &str, position: i64) -> String {
    let mut next = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k != "after" {
            next.append_pair(&k, &v);
        }
    }
    next.append_pair("after", &position.to_string());
    format!("/v1/records?{}", next.finish())
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id)
        .map_err(|e| ApiError::bad_request(format!("{id:?} is not a record id: {e}")))
}

/// `GET /v1/records/{id}`: the merged record.
pub async fn record(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<RecordView>, ApiError> {
    let id = parse_id(&id)?;
    let record = state
        .storage
        .record(id, auth.visibility())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no record {id} on this server")))?;
    state
        .storage
        .audit(auth.audit(
            "record_view",
            json!({ "record": id, "kind": record.kind, "scope": record.scope }),
        ))
        .await;
    Ok(Json(record))
}

/// `GET /v1/records/{id}/conflicts`: every conflicted field with each value and its author.
pub async fn conflicts(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let visible = state.storage.record(id, auth.visibility()).await?.is_some();
    if !visible {
        return Err(ApiError::not_found(format!(
            "no merged record {id} on this server"
        )));
    }
    let conflicts = state
        .storage
        .conflicts(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no merged record {id} on this server")))?;
    let actors: Vec<String> = conflicts
        .iter()
        .flat_map(|c| c.values.iter().map(|v| v.actor.clone()))
        .collect();
    let owners = state.storage.actor_owners(actors).await?;
    let json: Vec<Value> = conflicts
        .into_iter()
        .map(|c| {
            json!({
                "field": c.field,
                "values": c.values.into_iter().map(|v| {
                    let owner = owners.get(&v.actor);
                    json!({
                        "value": value_json(&v.value),
                        "actor": v.actor,
                        "device": owner.map(|o| o.0),
                        "person": owner.and_then(|o| o.1.clone()),
                        "time": v.time,
                    })
                }).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(json!({ "record": id, "conflicts": json })))
}

fn value_json(v: &FieldValue) -> Value {
    v.to_json()
}

/// Query of `GET /v1/search`.
#[derive(Debug, serde::Deserialize)]
pub struct SearchQuery {
    /// The words to find (any language).
    pub q: String,
    /// Only this campaign.
    pub campaign: Option<Uuid>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only this village (place code).
    pub scope: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// `GET /v1/search?q=&campaign=&kind=&scope=&limit=`: records whose text contains every word of
/// `q` (words separated by spaces).
pub async fn search(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    query: Result<Query<SearchQuery>, QueryRejection>,
) -> Result<Json<Vec<crate::report::SearchHit>>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if q.q.trim().is_empty() {
        return Err(ApiError::bad_request(
            "q is empty: give the words to search for",
        ));
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    state
        .storage
        .audit(auth.audit(
            "search",
            json!({ "q": q.q, "campaign": q.campaign, "kind": q.kind, "village": q.scope }),
        ))
        .await;
    let search = crate::storage::Search {
        campaign: q.campaign,
        kind: q.kind.filter(|k| !k.is_empty()),
        scope: q.scope.filter(|s| !s.is_empty()),
        ..crate::storage::Search::new(&q.q, limit)
    };
    let hits = state.storage.search(search, auth.visibility()).await?;
    Ok(Json(hits))
}

/// The `from` and `to` of a page's or a download's address as a [`Period`], checked: every view
/// that counts takes one (`?from=2026-11-01&to=2026-11-30`; either may be left out or empty).
/// Never rejects: a wrong date is kept as the message saying what to write, for the handler to
/// answer in its own form (a JSON error, or a page).
#[derive(Debug, Clone)]
pub struct PeriodQuery(pub Result<Period, String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PeriodQuery {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        let mut p = Period::all();
        let query = parts.uri.query().unwrap_or("");
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let v = v.trim().to_string();
            if v.is_empty() {
                continue;
            }
            match k.as_ref() {
                "from" => p.from = Some(v),
                "to" => p.to = Some(v),
                _ => {}
            }
        }
        Ok(PeriodQuery(p.checked()))
    }
}

impl PeriodQuery {
    /// The period, or a 400 saying what was wrong with it.
    pub fn get(self) -> Result<Period, ApiError> {
        self.0.map_err(ApiError::bad_request)
    }
}

/// `GET /v1/campaigns/{id}/tallies`: every number of the department's report.
pub async fn tallies(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    Path(id): Path<String>,
    period: PeriodQuery,
) -> Result<Json<crate::report::Tallies>, ApiError> {
    auth.require_department()?;
    let id = parse_id(&id)?;
    let period = period.get()?;
    Ok(Json(
        state
            .tallies(id, &auth.visibility(), &period)
            .await?
            .as_ref()
            .clone(),
    ))
}

/// `GET /v1/campaigns/{id}/tallies.csv`: every tally as 项目,数量 rows for Excel.
pub async fn tallies_csv(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    Path(id): Path<String>,
    period: PeriodQuery,
) -> Result<impl axum::response::IntoResponse, ApiError> {
    auth.require_department()?;
    let id = parse_id(&id)?;
    let period = period.get()?;
    let t = state.tallies(id, &auth.visibility(), &period).await?;
    let template = state.storage.template(id).await?;
    let body = crate::report::tallies_csv(&t, template.as_ref());
    // Audited once the file exists: never a success for a failed response.
    exported(&state, &auth, id, "tallies.csv").await;
    Ok((
        attachment(
            "text/csv; charset=utf-8",
            t.name.as_deref(),
            Named {
                ascii: "tallies",
                zh: "统计表",
            },
            "csv",
        ),
        body,
    ))
}

/// `GET /v1/campaigns/{id}/report.md`: the draft report (seed 002's structure) as Markdown.
pub async fn report_markdown(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    Path(id): Path<String>,
    period: PeriodQuery,
) -> Result<impl axum::response::IntoResponse, ApiError> {
    auth.require_department()?;
    let id = parse_id(&id)?;
    let period = period.get()?;
    let t = state.tallies(id, &auth.visibility(), &period).await?;
    let body = crate::report::draft_markdown(&t);
    exported(&state, &auth, id, "report.md").await;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/markdown; charset=utf-8",
        )],
        body,
    ))
}

/// `GET /v1/campaigns/{id}/export/{kind}.csv`: one record kind as CSV (UTF-8 with BOM, Chinese
/// headers) for Excel.
pub async fn export_csv(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    Path((id, kind)): Path<(String, String)>,
    period: PeriodQuery,
) -> Result<impl axum::response::IntoResponse, ApiError> {
    auth.require_department()?;
    let id = parse_id(&id)?;
    let period = period.get()?;
    let kind = kind.strip_suffix(".csv").unwrap_or(&kind).to_string();
    let template = state.storage.template(id).await?;
    if let Some(t) = &template
        && t.kind(&kind).is_none()
    {
        return Err(ApiError::not_found(format!(
            "campaign {id} has no record kind {kind:?}"
        )));
    }
    let records = state
        .storage
        .campaign_records(id, kind.clone(), auth.visibility(), period.clone())
        .await?;
    let names = reference_names(&state, id, &auth.visibility()).await?;
    let body = crate::report::csv(template.as_ref(), &kind, &records, &names);
    let campaign_name = state
        .tallies(id, &auth.visibility(), &period)
        .await?
        .name
        .clone();
    exported(&state, &auth, id, &format!("{kind}.csv")).await;
    let label = template
        .as_ref()
        .and_then(|t| t.kind(&kind))
        .map(|k| k.label.zh.clone())
        .unwrap_or_else(|| kind.clone());
    Ok((
        attachment(
            "text/csv; charset=utf-8",
            campaign_name.as_deref(),
            Named {
                ascii: &kind,
                zh: &label,
            },
            "csv",
        ),
        body,
    ))
}

/// What a campaign's references point to, by id: places, teams, members and work groups by
/// their names (and each place's code to its name), findings by their first words.
pub async fn reference_names(
    state: &AppState,
    campaign: Uuid,
    visibility: &crate::storage::Visibility,
) -> Result<crate::report::Names, ApiError> {
    let mut names = crate::report::Names::new();
    for kind in ["place", "team", "member", "work_group"] {
        for r in state
            .storage
            .campaign_records(campaign, kind.into(), visibility.clone(), Period::all())
            .await?
        {
            if let Some(n) = r.fields.get("name").and_then(Value::as_str) {
                names.insert(r.id.to_string(), n.to_string());
                if kind == "place" {
                    names.insert(r.scope.clone(), n.to_string());
                }
            }
        }
    }
    // A rectification refers to its finding: shown by the finding's words.
    for r in state
        .storage
        .campaign_records(
            campaign,
            "finding".into(),
            visibility.clone(),
            Period::all(),
        )
        .await?
    {
        if let Some(text) = r.fields.get("text").and_then(Value::as_str) {
            let short: String = text.chars().take(30).collect();
            let more = if text.chars().count() > 30 {
                "……"
            } else {
                ""
            };
            names.insert(r.id.to_string(), format!("{short}{more}"));
        }
    }
    Ok(names)
}

async fn exported(state: &AppState, auth: &Auth, campaign: Uuid, what: &str) {
    state
        .storage
        .audit(auth.audit("export", json!({ "campaign": campaign, "file": what })))
        .await;
}

/// A download's names: `ascii` for old clients (`report`), `zh` for the others (报告初稿).
#[derive(Clone, Copy)]
pub(crate) struct Named<'a> {
    /// The ASCII name, without extension.
    pub ascii: &'a str,
    /// The Chinese name, without extension.
    pub zh: &'a str,
}

/// Headers of a download named `{campaign name}-{zh}.{ext}` (RFC 6266: an ASCII `filename`
/// for old clients, the Chinese name as UTF-8 in `filename*`).
fn attachment(
    content_type: &str,
    campaign: Option<&str>,
    what: Named<'_>,
    ext: &str,
) -> [(axum::http::HeaderName, String); 2] {
    [
        (axum::http::header::CONTENT_TYPE, content_type.to_string()),
        (
            axum::http::header::CONTENT_DISPOSITION,
            download_disposition(campaign, what, ext),
        ),
    ]
}

/// The draft report's names.
const REPORT: Named<'static> = Named {
    ascii: "report",
    zh: "报告初稿",
};

/// The `Content-Disposition` value of a download (see [`attachment`]).
pub(crate) fn download_disposition(campaign: Option<&str>, what: Named<'_>, ext: &str) -> String {
    let ascii: String = what
        .ascii
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .collect();
    let ascii = if ascii.is_empty() { "export" } else { &ascii };
    let zh = if what.zh.trim().is_empty() {
        ascii
    } else {
        what.zh.trim()
    };
    let full = match campaign.map(str::trim).filter(|n| !n.is_empty()) {
        Some(name) => format!("{name}-{zh}.{ext}"),
        None => format!("{zh}.{ext}"),
    };
    // RFC 5987: every byte outside the unreserved set percent-encoded.
    let encoded: String = full
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("attachment; filename=\"{ascii}.{ext}\"; filename*=UTF-8''{encoded}")
}

/// `GET /v1/campaigns/{id}/report.docx`: the draft report as a Word document.
pub async fn report_docx(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    Path(id): Path<String>,
    period: PeriodQuery,
) -> Result<impl axum::response::IntoResponse, ApiError> {
    auth.require_department()?;
    let id = parse_id(&id)?;
    let period = period.get()?;
    let t = state.tallies(id, &auth.visibility(), &period).await?;
    let name = t.name.clone();
    let bytes =
        tokio::task::spawn_blocking(move || crate::report::draft_docx(&t, &crate::report::today()))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(ApiError::Internal)?;
    exported(&state, &auth, id, "report.docx").await;
    Ok((
        attachment(
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            name.as_deref(),
            REPORT,
            "docx",
        ),
        bytes,
    ))
}

/// `GET /v1/campaigns/{id}/report.pdf`: the draft report's Word document as PDF, made by
/// LibreOffice on the server (503 `pdf_unavailable` where it is not installed).
pub async fn report_pdf(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    Path(id): Path<String>,
    period: PeriodQuery,
) -> Result<impl axum::response::IntoResponse, ApiError> {
    auth.require_department()?;
    let id = parse_id(&id)?;
    let period = period.get()?;
    if !state.pdf.available() {
        return Err(pdf_unavailable());
    }
    let t = state.tallies(id, &auth.visibility(), &period).await?;
    let name = t.name.clone();
    let docx =
        tokio::task::spawn_blocking(move || crate::report::draft_docx(&t, &crate::report::today()))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(ApiError::Internal)?;
    let pdf = state.pdf.docx_to_pdf(docx).await.map_err(|e| match e {
        crate::pdf::PdfError::NotInstalled => pdf_unavailable(),
        crate::pdf::PdfError::Busy => ApiError::client(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "pdf_busy",
            "另一份 PDF 正在生成，请稍候再试 / another PDF is being made: try again in a moment",
        )
        .with_retry_after(10),
        e => ApiError::Internal(e.to_string()),
    })?;
    exported(&state, &auth, id, "report.pdf").await;
    Ok((
        attachment("application/pdf", name.as_deref(), REPORT, "pdf"),
        pdf,
    ))
}

fn pdf_unavailable() -> ApiError {
    ApiError::client(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "pdf_unavailable",
        "服务器上没有安装 LibreOffice，无法生成 PDF。The server has no LibreOffice to make a PDF with.",
    )
    .with_hint(
        "请下载 Word 版（DOCX），用 WPS 或 Word 另存为 PDF；或请管理员在服务器上安装 LibreOffice（Debian：apt-get install libreoffice-writer-nogui）。 Download the DOCX and save it as PDF in WPS or Word, or ask the administrator to install LibreOffice on the server.",
    )
}

/// `GET /v1/campaigns/{id}/export.xlsx`: a workbook with a sheet of tallies and one sheet per
/// record kind, Chinese headers.
pub async fn export_xlsx(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    Path(id): Path<String>,
    period: PeriodQuery,
) -> Result<impl axum::response::IntoResponse, ApiError> {
    auth.require_department()?;
    let id = parse_id(&id)?;
    let period = period.get()?;
    let template = state.storage.template(id).await?;
    let tallies = state.tallies(id, &auth.visibility(), &period).await?;
    let name = tallies.name.clone();
    // Every kind but the campaign's own record (its name is the file's; its template name
    // means nothing to whoever files the workbook).
    let kinds: Vec<String> = match &template {
        Some(t) => t
            .kinds
            .keys()
            .filter(|k| *k != "campaign")
            .cloned()
            .collect(),
        None => Vec::new(),
    };
    let names = reference_names(&state, id, &auth.visibility()).await?;
    let mut sheets = Vec::new();
    for kind in kinds {
        let records = state
            .storage
            .campaign_records(id, kind.clone(), auth.visibility(), period.clone())
            .await?;
        if !records.is_empty() {
            sheets.push((kind, records));
        }
    }
    let bytes = tokio::task::spawn_blocking(move || {
        crate::report::xlsx(template.as_ref(), &tallies, &sheets, &names)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    // Audited once the workbook exists: a failed export is never logged as one.
    exported(&state, &auth, id, "export.xlsx").await;
    Ok((
        attachment(
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            name.as_deref(),
            Named {
                ascii: "campaign",
                zh: "数据汇总",
            },
            "xlsx",
        ),
        bytes,
    ))
}

/// `GET /v1/openapi.json`: the OpenAPI 3.1 description of every endpoint.
pub async fn openapi() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        include_str!("../static/openapi.json"),
    )
}

#[cfg(test)]
mod tests {
    use super::{Named, download_disposition};

    #[test]
    fn downloads_carry_the_campaign_name_in_utf8_and_an_ascii_fallback() {
        let workbook = Named {
            ascii: "campaign",
            zh: "数据汇总",
        };
        assert_eq!(
            download_disposition(Some("届中分析"), workbook, "xlsx"),
            "attachment; filename=\"campaign.xlsx\"; \
             filename*=UTF-8''%E5%B1%8A%E4%B8%AD%E5%88%86%E6%9E%90-\
             %E6%95%B0%E6%8D%AE%E6%B1%87%E6%80%BB.xlsx"
        );
        assert_eq!(
            download_disposition(None, super::REPORT, "docx"),
            "attachment; filename=\"report.docx\"; \
             filename*=UTF-8''%E6%8A%A5%E5%91%8A%E5%88%9D%E7%A8%BF.docx"
        );
        // A name with quotes or spaces cannot break out of the header value.
        let d = download_disposition(Some("a\" b"), Named { ascii: "x", zh: "" }, "csv");
        assert!(d.ends_with("filename*=UTF-8''a%22%20b-x.csv"), "{d}");
    }
}
