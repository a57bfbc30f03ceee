//! What every response carries on its way out: the browser security headers, and the JSON error
//! body in place of the plain-text or empty answers the framework itself gives (405, 413, 415,
//! 422, a body that could not be read…).

use std::sync::LazyLock;

use axum::{
    http::{HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};

use crate::error::ApiError;

/// The Content-Security-Policy of every response: the dashboard's pages use no external asset,
/// inline SVG, one inline style sheet ([`crate::ui::page::STYLE`]) and one inline script that
/// sorts tables ([`crate::ui::page::SCRIPT`]), each allowed by its SHA-256 so that no injected
/// `<style>` or `<script>` applies; forms post only to the server itself, and no other site may
/// frame a page.
pub fn content_security_policy() -> &'static HeaderValue {
    static CSP: LazyLock<HeaderValue> = LazyLock::new(|| {
        use base64::Engine;
        use sha2::Digest;
        let hash = |text: &str| {
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(text.as_bytes()))
        };
        HeaderValue::from_str(&format!(
            "default-src 'none'; style-src 'sha256-{}'; script-src 'sha256-{}'; img-src 'self' \
             data:; media-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            hash(crate::ui::page::STYLE),
            hash(crate::ui::page::SCRIPT)
        ))
        .expect("the policy is a valid header value")
    });
    &CSP
}

/// The policy of every answer that is not a page: nothing may be loaded, nothing framed.
pub const API_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

/// `Strict-Transport-Security` for responses that went out over HTTPS.
pub const STRICT_TRANSPORT_SECURITY: &str = "max-age=31536000";

/// Adds the security headers (HSTS only when the client reached us over HTTPS) to a response
/// and turns the framework's own error answers into [`ApiError`] JSON. Called by
/// [`crate::edge::resolve`] for every response, refusals included.
pub async fn finish(response: Response, https: bool, method: &Method, path: &str) -> Response {
    let mut response = json_error(response, method, path).await;
    let h = response.headers_mut();
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        // Pages get the dashboard's policy; everything else (JSON, files) may load nothing.
        let page = h
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/html"));
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            if page {
                content_security_policy().clone()
            } else {
                HeaderValue::from_static(API_CONTENT_SECURITY_POLICY)
            },
        );
    }
    let mut set = |name, value: &'static str| {
        if !h.contains_key(&name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    };
    set(header::X_FRAME_OPTIONS, "DENY");
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::REFERRER_POLICY, "same-origin");
    if https {
        set(header::STRICT_TRANSPORT_SECURITY, STRICT_TRANSPORT_SECURITY);
    }
    response
}

/// The most of a framework error text kept in the JSON message.
const MAX_TEXT: usize = 4096;

/// A client error without a JSON or HTML body (the framework's plain text, or nothing) as the
/// [`ApiError`] JSON with a stable code; every other response unchanged.
async fn json_error(response: Response, method: &Method, path: &str) -> Response {
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !status.is_client_error()
        || !(content_type.is_empty() || content_type.starts_with("text/plain"))
    {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_TEXT)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            format!(
                "此地址不接受 {method} 请求 / {method} is not allowed on {path}; the Allow header \
                 lists what is"
            ),
        ),
        StatusCode::NOT_FOUND => ("not_found", "no such endpoint; see docs/PROTOCOL.md".into()),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "too_large",
            format!("请求体过大 / the request body is too large: {text}"),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            format!("请求体类型不对 / the request body has the wrong Content-Type: {text}"),
        ),
        StatusCode::REQUEST_TIMEOUT => (
            "request_timeout",
            "请求体发送过慢 / the request body arrived too slowly".into(),
        ),
        _ => (
            "invalid_body",
            format!("请求无效 / the request is not valid: {text}"),
        ),
    };
    let mut fixed = ApiError::client(status, code, message)
        .with_hint("see docs/PROTOCOL.md")
        .into_response();
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(v) = parts.headers.get(&name) {
            fixed.headers_mut().insert(name, v.clone());
        }
    }
    fixed
}

/// An empty body, for tests of [`json_error`] without a router.
#[cfg(test)]
fn empty(status: StatusCode) -> Response {
    (status, axum::body::Body::empty()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn framework_errors_become_json_and_others_stay() {
        let r = json_error(
            empty(StatusCode::METHOD_NOT_ALLOWED),
            &axum::http::Method::DELETE,
            "/health",
        )
        .await;
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        let html = (
            StatusCode::FORBIDDEN,
            axum::response::Html("<p>no</p>".to_string()),
        )
            .into_response();
        let r = json_error(html, &axum::http::Method::GET, "/ui").await;
        assert!(
            r.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
    }
}
