//! First start: enroll this device with the server address and the one-time code from the
//! administrator, then sync at once so that the campaign's templates and the villages' reference
//! data are on the device and it can record offline from then on.

use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use fieldsync_client_core::TransportError;
use fieldsync_client_core::account::{self, AccountError};
use maud::html;
use serde::Deserialize;

use super::{PageResult, csrf_field};
use crate::AppState;
use crate::page::{Lang, failure, page};
use crate::syncing::{sync_message, sync_once};

/// The enrollment form.
#[derive(Debug, Deserialize, Default)]
pub struct EnrollForm {
    /// The server's address.
    #[serde(default)]
    pub server: String,
    /// The one-time code.
    #[serde(default)]
    pub code: String,
    /// How administrators will see this device.
    #[serde(default)]
    pub name: String,
}

fn render(
    state: &AppState,
    lang: Lang,
    form: &EnrollForm,
    problem: Option<(String, String)>,
) -> Response {
    let body = html! {
        h1 { (lang.t("登记本机", "Enroll this device")) }
        p { (lang.t("输入管理员给您的服务器地址和一次性登记码。登记后本机会立即同步一次，之后可离线记录。",
            "Enter the server address and the one-time code from your administrator. The device syncs once right after, then records offline.")) }
        @if let Some((zh, en)) = &problem { p.error #problem role="alert" { (lang.t(zh, en)) } }
        form method="post" action="/enroll" {
            (csrf_field(state))
            div.field {
                label.name for="server" { (lang.t("服务器地址", "Server address")) " " span.req { "*" } }
                input type="text" id="server" name="server" value=(form.server) placeholder="https://zzb.example.gov.cn" required;
            }
            div.field {
                label.name for="code" { (lang.t("登记码", "Enrollment code")) " " span.req { "*" } }
                input type="text" id="code" name="code" value=(form.code) placeholder="K7QX-2M4P-9RTA" autocomplete="off" required;
            }
            div.field {
                label.name for="name" { (lang.t("设备名称", "Device name")) }
                p.help { (lang.t("管理员看到的名称，如“张三的笔记本”", "what administrators see, such as “Zhang San's laptop”")) }
                input type="text" id="name" name="name" value=(form.name);
            }
            div.actions { button type="submit" { (lang.t("登记", "Enroll")) } }
        }
    };
    page(lang, lang.t("登记本机", "Enroll"), body).into_response()
}

/// `GET /enroll`: the enrollment form.
pub async fn enroll_page(State(state): State<AppState>, lang: Lang) -> PageResult {
    Ok(render(&state, lang, &EnrollForm::default(), None))
}

/// What went wrong with an enrollment, said for the person at the device.
fn explain(error: &AccountError) -> (String, String) {
    let refused = match error {
        AccountError::Transport(TransportError::Refused { code, .. }) => code.as_str(),
        _ => "",
    };
    let said = |zh: &str, en: &str| (zh.to_string(), en.to_string());
    match (refused, error) {
        ("invalid_code", _) => said(
            "登记码不正确：请核对后重新输入（不区分大小写，短横线和空格可省略），或向管理员索取新码",
            "this code is not valid: check it and type it again (capitals, dashes and spaces do not matter), or ask the administrator for a new one",
        ),
        ("code_used", _) => said(
            "这个登记码已经用过：每个登记码只能登记一台设备。请向管理员索取新的登记码",
            "this code has already been used: each code enrolls one device. Ask the administrator for a new code",
        ),
        ("code_expired", _) => said(
            "这个登记码已过期：登记码只在发出后的一段时间内有效。请向管理员索取新的登记码",
            "this code has expired: a code works only for a while after it is issued. Ask the administrator for a new code",
        ),
        (_, AccountError::Transport(TransportError::Refused { message, .. })) => (
            format!("服务器拒绝了登记：{message}。请核对登记码（一次性，有有效期），或向管理员索取新码"),
            format!("the server refused: {message}. Check the code (it works once and expires) or ask the administrator for a new one"),
        ),
        (_, AccountError::Transport(e)) if e.is_retryable() => (
            "无法连接服务器：请检查地址和网络，稍后再试（本机数据未丢失）".into(),
            "cannot reach the server: check the address and the network and try later (nothing on this device was lost)".into(),
        ),
        (_, other) => (
            format!("无法登记：{other}"),
            format!("cannot enroll: {other}"),
        ),
    }
}

/// `POST /enroll`: enrolls, then syncs once; home on success, the form with the reason
/// otherwise (what was typed kept).
pub async fn enroll(
    State(state): State<AppState>,
    lang: Lang,
    Form(form): Form<EnrollForm>,
) -> PageResult {
    let http = state.http().clone();
    let (server, code, name) = (
        form.server.trim().to_string(),
        form.code.trim().to_string(),
        form.name.trim().to_string(),
    );
    if server.is_empty() || code.is_empty() {
        let mut r = render(
            &state,
            lang,
            &form,
            Some((
                "请填写服务器地址和登记码".into(),
                "enter the server address and the code".into(),
            )),
        );
        *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        return Ok(r);
    }
    let outcome = state
        .with_store(move |s| {
            if let Err(e) = account::enroll(s, &server, &code, &name, &http) {
                return Ok(Err(explain(&e)));
            }
            let report = sync_once(s, &http, &mut |_| {});
            // Nothing older was seen here: the forms just downloaded are no news to announce.
            if let Some(campaign) = super::campaign_of(s)?
                && let Some(version) = s.new_template_version(campaign)?
            {
                s.acknowledge_template(campaign, version)?;
            }
            Ok(Ok(sync_message(&report)))
        })
        .await
        .map_err(|e| failure(lang, &e))?;
    match outcome {
        Ok((zh, en)) => {
            state.set_flash(
                format!("本机已登记。{zh}"),
                format!("this device is enrolled. {en}"),
            );
            Ok(Redirect::to("/").into_response())
        }
        Err(problem) => {
            let mut r = render(&state, lang, &form, Some(problem));
            *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            Ok(r)
        }
    }
}
