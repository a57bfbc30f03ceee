//! An encrypted store started without its key (`fieldsync app` with no `--key-file`): every
//! page leads to the key page, which takes the key file (the same 64 hex digits or 32 bytes as
//! `--key-file`, read by client-core's `key_from_file`), opens the store with it and goes home.

use axum::extract::{DefaultBodyLimit, Multipart, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::MethodRouter;
use fieldsync_client_core::{Store, StoreError};
use maud::html;

use super::PageResult;
use crate::AppState;
use crate::page::{Lang, failure, page};

/// The largest key file read (a key is 64 hex digits or 32 bytes; a little room for a line end).
pub const MAX_KEY_FILE_BYTES: usize = 4096;

/// The middleware: while the store waits for its key, every page but the key page, the language
/// switch and the script leads to the key page (a 303, for a form sent too).
pub async fn while_locked(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let open = path == "/unlock" || path == "/app.js" || path.starts_with("/lang/");
    if state.locked_path().is_some() && !open {
        return Redirect::to("/unlock").into_response();
    }
    next.run(req).await
}

fn render(state: &AppState, lang: Lang, problem: Option<(&str, &str)>) -> Response {
    let action = format!(
        "/unlock?{}={}",
        crate::guard::CSRF_FIELD,
        state.secret().csrf_token()
    );
    let body = html! {
        h1 { (lang.t("本机数据已加密", "This device's data is encrypted")) }
        p { (lang.t("请选择本机数据的密钥文件（与 fieldsync --key-file 用的是同一个文件）。密钥只用于打开数据，不会保存到别处。",
            "Choose the key file of this device's data (the file fieldsync --key-file takes). The key only opens the data; it is kept nowhere else.")) }
        @if let Some((zh, en)) = problem { p.error #problem role="alert" { (lang.t(zh, en)) } }
        // Multipart bodies are not read by the guard: the CSRF token travels in the address.
        form method="post" enctype="multipart/form-data" action=(action) {
            div.field {
                label.name for="key" { (lang.t("密钥文件", "Key file")) " " span.req { "*" } }
                input type="file" id="key" name="key" required;
            }
            div.actions { button type="submit" { (lang.t("打开本机数据", "Open this device's data")) } }
        }
        p.muted { (lang.t("没有密钥文件，请联系为本机设置加密的管理员。没有密钥，任何人都读不出本机数据。",
            "No key file? Ask the administrator who set up the encryption. Without the key nobody can read this device's data.")) }
    };
    page(lang, lang.t("打开本机数据", "Unlock"), body).into_response()
}

/// `GET /unlock`: the key page (home once the store is open).
pub async fn unlock_page(State(state): State<AppState>, lang: Lang) -> PageResult {
    if state.locked_path().is_none() {
        return Ok(Redirect::to("/").into_response());
    }
    Ok(render(&state, lang, None))
}

/// `POST /unlock`: opens the store with the uploaded key file; home on success, the key page
/// with the reason otherwise.
pub async fn unlock(State(state): State<AppState>, lang: Lang, mut form: Multipart) -> PageResult {
    let Some(path) = state.locked_path().map(|p| p.to_path_buf()) else {
        return Ok(Redirect::to("/").into_response());
    };
    let mut file = None;
    while let Ok(Some(field)) = form.next_field().await {
        if field.name() == Some("key") {
            file = field.bytes().await.ok();
        }
    }
    let refuse = |zh: &str, en: &str| {
        let mut r = render(&state, lang, Some((zh, en)));
        *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        r
    };
    let Some(key) = file
        .as_deref()
        .and_then(fieldsync_client_core::store::key_from_file)
    else {
        return Ok(refuse(
            "这不是密钥文件：密钥文件应为 64 位十六进制数字或 32 字节",
            "this is no key file: a key file holds 64 hex digits or 32 bytes",
        ));
    };
    let opened = tokio::task::spawn_blocking(move || Store::open_encrypted(path, &key))
        .await
        .map_err(|e| failure(lang, &crate::AppError::Task(e.to_string())))?;
    match opened {
        Ok(store) => {
            if state.unlock(store) {
                state.set_flash("本机数据已打开".into(), "this device's data is open".into());
            }
            Ok(Redirect::to("/").into_response())
        }
        Err(StoreError::WrongKey) => Ok(refuse(
            "这个密钥打不开本机数据：请确认选的是本机的密钥文件",
            "this key does not open this device's data: check that it is this device's key file",
        )),
        Err(StoreError::EncryptionUnavailable) => Ok(refuse(
            "这个版本的 fieldsync 不能打开加密数据（编译时未带加密功能）",
            "this build of fieldsync cannot open encrypted data (built without encryption)",
        )),
        Err(e) => Err(failure(lang, &e.into())),
    }
}

/// The key page's routes, the upload limited to [`MAX_KEY_FILE_BYTES`].
pub fn route() -> MethodRouter<AppState> {
    axum::routing::get(unlock_page)
        .post(unlock)
        .layer(DefaultBodyLimit::max(MAX_KEY_FILE_BYTES))
}
