//! Bundles for days with no network at all: download everything this device holds for a
//! colleague, upload a colleague's file; the result says what arrived.

use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{MethodRouter, post};
use fieldsync_client_core::bundle::Export;
use maud::html;

use super::PageResult;
use crate::page::{Lang, failure, page};
use crate::{AppError, AppState};

/// The largest bundle file accepted for upload (compressed; client-core checks it again).
pub const MAX_UPLOAD_BYTES: usize = 256 << 20;

/// `GET /bundle`: the export link and the import form.
pub async fn bundle_page(State(state): State<AppState>, lang: Lang) -> PageResult {
    let body = html! {
        @if let Some((zh, en)) = state.take_flash() { p.flash #result role="status" { (lang.t(&zh, &en)) } }
        h1 { (lang.t("离线数据包", "Bundles")) }
        p { (lang.t("没有网络时，用文件与同事交换数据（U 盘、蓝牙、聊天软件）。联网后各自同步，不会重复。",
            "With no network, exchange data with a colleague by file (USB stick, Bluetooth, a chat app). Both sync later without duplicates.")) }
        h2 { (lang.t("导出", "Export")) }
        p { a.button href="/bundle/export" download { (lang.t("下载本机全部数据", "Download everything on this device")) } }
        h2 { (lang.t("导入", "Import")) }
        // Multipart bodies are not read by the guard: the CSRF token travels in the address.
        form method="post" enctype="multipart/form-data"
            action=(format!("/bundle/import?{}={}", crate::guard::CSRF_FIELD, state.secret().csrf_token())) {
            input type="file" name="file" required;
            div.actions { button type="submit" { (lang.t("导入", "Import")) } }
        }
    };
    Ok(page(lang, lang.t("离线数据包", "Bundles"), body).into_response())
}

/// `GET /bundle/export`: every change this device holds, as a file to download.
pub async fn export(State(state): State<AppState>, lang: Lang) -> PageResult {
    let bytes = state
        .with_store(|s| {
            s.export_bundle(&Export::All)
                .map(|(b, _)| b)
                .map_err(|e| AppError::Task(e.to_string()))
        })
        .await
        .map_err(|e| failure(lang, &e))?;
    let mut r = bytes.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"fieldsync.fsb\""),
    );
    Ok(r)
}

/// `POST /bundle/import`: applies an uploaded bundle (all or nothing), back to the bundle page
/// with what arrived.
pub async fn import(State(state): State<AppState>, lang: Lang, mut form: Multipart) -> PageResult {
    let mut file = None;
    while let Ok(Some(field)) = form.next_field().await {
        if field.name() == Some("file") {
            file = field.bytes().await.ok();
        }
    }
    let Some(bytes) = file.filter(|b| !b.is_empty()) else {
        state.set_flash(
            "没有收到文件，请选择数据包后再导入".into(),
            "no file arrived: choose a bundle, then import".into(),
        );
        return Ok(Redirect::to("/bundle").into_response());
    };
    let result = state
        .with_store(move |s| Ok(s.import_bundle(&bytes)))
        .await
        .map_err(|e| failure(lang, &e))?;
    let (zh, en) = match result {
        Ok(st) => (
            format!(
                "已导入：新修改 {} 条，已有 {} 条，{} 条记录有变化{}",
                st.new_changes,
                st.known_changes,
                st.records_changed,
                if st.waiting > 0 {
                    format!("；{} 条修改在等待它依赖的修改", st.waiting)
                } else {
                    String::new()
                }
            ),
            format!(
                "imported: {} new changes, {} already here, {} records changed{}",
                st.new_changes,
                st.known_changes,
                st.records_changed,
                if st.waiting > 0 {
                    format!("; {} changes wait for changes they depend on", st.waiting)
                } else {
                    String::new()
                }
            ),
        ),
        Err(e) => (
            format!("未导入任何数据：{e}"),
            format!("nothing was imported: {e}"),
        ),
    };
    state.set_flash(zh, en);
    Ok(Redirect::to("/bundle").into_response())
}

/// The import route with its upload limit.
pub fn import_route() -> MethodRouter<AppState> {
    post(import).layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES))
}
