//! Signing in with a one-time code, signing out, and the language switch.

use std::sync::Arc;

use axum::{
    Form,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
};
use uuid::Uuid;

use super::page::{Lang, esc, public_page};
use super::*;
use crate::{
    AppState,
    auth::{ClientIp, SESSION_COOKIE},
    edge::Client,
    error::ApiError,
};

pub(super) async fn login_page(lang: Lang) -> Html<String> {
    login_html(lang, None)
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
    public_page(lang, lang.t("登录", "Sign in"), &body)
}

/// The login form.
#[derive(Debug, serde::Deserialize)]
pub struct LoginForm {
    /// The one-time code.
    pub code: String,
}

pub(super) async fn login(
    State(state): State<Arc<AppState>>,
    ClientIp(ip): ClientIp,
    client: Client,
    lang: Lang,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
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
                format!(
                    "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{}",
                    client.secure_attr()
                ),
            )],
            Redirect::to("/ui"),
        )
            .into_response(),
        Err(ApiError::Client {
            status,
            message,
            code,
            ..
        }) if status != StatusCode::TOO_MANY_REQUESTS => {
            let mut page =
                (StatusCode::UNAUTHORIZED, login_html(lang, Some(&message))).into_response();
            page.extensions_mut()
                .insert(crate::refusals::ErrorCode(code));
            page
        }
        Err(e) => ui_error(lang, e),
    }
}

pub(super) async fn logout(
    State(state): State<Arc<AppState>>,
    client: Client,
    user: User,
) -> Response {
    // Signing out ends this browser's device for good.
    let _ = state.storage.revoke(user.auth.0.device).await;
    state
        .storage
        .audit(user.auth.audit("logout", serde_json::json!({})))
        .await;
    (
        [(
            header::SET_COOKIE,
            format!(
                "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
                client.secure_attr()
            ),
        )],
        Redirect::to("/login"),
    )
        .into_response()
}

pub(super) async fn set_lang(
    Path(lang): Path<String>,
    client: Client,
    headers: HeaderMap,
) -> Response {
    let value = if lang == "en" { "en" } else { "zh" };
    let back = headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.find("/ui").map(|i| r[i..].to_string()))
        .unwrap_or_else(|| "/ui".into());
    (
        [(
            header::SET_COOKIE,
            format!(
                "{LANG_COOKIE}={value}; Path=/; SameSite=Strict; Max-Age=31536000{}",
                client.secure_attr()
            ),
        )],
        Redirect::to(&back),
    )
        .into_response()
}
