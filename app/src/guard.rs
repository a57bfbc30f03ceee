//! The local web app's security, in one middleware every request passes: the `Host` header
//! must name the loopback address and the app's port (DNS rebinding), the per-launch secret
//! must come with the request (handed over once in the address, then an HttpOnly SameSite=Strict
//! cookie), and every POST must carry the CSRF token derived from the secret.

use std::fmt;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::page::{Lang, refusal};

/// The largest form body read (a long interview note fits many times over).
pub const MAX_FORM_BYTES: usize = 4 * 1024 * 1024;
/// The form field (or `x-csrf-token` header, or query parameter) that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf";

/// The per-launch secret: 256 random bits from the operating system, as 64 hex digits. Its
/// `Debug` does not show it.
#[derive(Clone)]
pub struct Secret(String);

impl Default for Secret {
    fn default() -> Self {
        // Version 4 UUIDs take 122 random bits each from the OS generator (getrandom).
        let bytes: Vec<u8> = (0..3)
            .flat_map(|_| uuid::Uuid::new_v4().into_bytes())
            .collect();
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&bytes).expect("any key length");
        mac.update(b"fieldsync-app secret");
        Secret(hex::encode(mac.finalize().into_bytes()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Secret {
    /// A secret given by the embedder (a phone shell that made its own).
    pub fn from_string(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself (for the launch address).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `given` is the secret (constant time).
    pub fn matches(&self, given: &str) -> bool {
        self.0.as_bytes().ct_eq(given.as_bytes()).into()
    }

    /// The CSRF token of this launch: HMAC-SHA256 of a fixed label under the secret, so a page
    /// can carry it without carrying the secret.
    pub fn csrf_token(&self) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(self.0.as_bytes()).expect("any key length");
        mac.update(b"fieldsync-app csrf v1");
        hex::encode(mac.finalize().into_bytes())
    }

    fn csrf_matches(&self, given: &str) -> bool {
        self.csrf_token().as_bytes().ct_eq(given.as_bytes()).into()
    }
}

/// The name of the cookie that keeps the secret. It names the port: cookies do not separate
/// ports, and two app instances on one machine must not overwrite each other's.
pub fn cookie_name(port: u16) -> String {
    format!("fieldsync_app_{port}")
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query?).ok()?;
    pairs.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// Whether the `Host` header is the app's own loopback address.
pub fn host_allowed(headers: &HeaderMap, port: u16) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    host == format!("127.0.0.1:{port}") || host == format!("localhost:{port}")
}

/// The middleware: refuses (403 page) what does not pass, adds the security headers to every
/// answer.
pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let lang = Lang::from_headers(req.headers());
    let mut response = check(&state, lang, req, next).await;
    let h = response.headers_mut();
    // A file served from a record sets its own (stricter: no scripts at all) policy.
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; \
                 img-src 'self'; media-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
        );
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn check(state: &AppState, lang: Lang, req: Request, next: Next) -> Response {
    let port = state.port();
    let secret = state.secret();
    if !host_allowed(req.headers(), port) {
        return refusal(
            lang,
            "地址不对：请用 fieldsync app 打印的地址（127.0.0.1）打开",
            "wrong address: open the app at the address fieldsync app printed (127.0.0.1)",
        );
    }
    if let Some(given) = query_value(req.uri().query(), "secret") {
        if !secret.matches(&given) {
            return refusal(
                lang,
                "启动密钥不对：请用 fieldsync app 最近一次打印的地址打开",
                "wrong launch secret: open the address fieldsync app printed last",
            );
        }
        let cookie = format!(
            "{}={}; HttpOnly; SameSite=Strict; Path=/",
            cookie_name(port),
            secret.expose()
        );
        // Back to the page asked for, on this app only ("//host" would leave it).
        let path = req.uri().path();
        let back = if path.starts_with("//") || path.starts_with("/\\") {
            "/"
        } else {
            path
        };
        let mut r = Redirect::to(back).into_response();
        r.headers_mut().insert(
            header::SET_COOKIE,
            HeaderValue::from_str(&cookie).expect("hex and ascii"),
        );
        return r;
    }
    if !cookie(req.headers(), &cookie_name(port)).is_some_and(|c| secret.matches(c)) {
        return refusal(
            lang,
            "请从 fieldsync app 打印的地址打开本应用（地址中带有启动密钥）",
            "open the app at the address fieldsync app printed (it carries the launch secret)",
        );
    }
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return next.run(req).await;
    }
    // Every other method must carry the CSRF token: header, query parameter (multipart
    // uploads) or a field of a urlencoded form.
    let (parts, body) = req.into_parts();
    let mut token = parts
        .headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| query_value(parts.uri.query(), CSRF_FIELD));
    let is_form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let body = if is_form {
        let bytes: Bytes = match axum::body::to_bytes(body, MAX_FORM_BYTES).await {
            Ok(b) => b,
            Err(_) => {
                return (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    refusal(lang, "表单内容过大", "the form is too large"),
                )
                    .into_response();
            }
        };
        if token.is_none() {
            let pairs: Vec<(String, String)> =
                serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
            token = pairs
                .into_iter()
                .find(|(k, _)| k == CSRF_FIELD)
                .map(|(_, v)| v);
        }
        Body::from(bytes)
    } else {
        body
    };
    if !token.is_some_and(|t| secret.csrf_matches(&t)) {
        return refusal(
            lang,
            "表单已过期或来源不明，未保存：请重新打开页面再提交",
            "the form is stale or came from elsewhere; nothing was saved: reload the page and submit again",
        );
    }
    next.run(Request::from_parts(parts, body)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_differ_and_hide_in_debug() {
        let a = Secret::default();
        let b = Secret::default();
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), 64);
        assert!(!format!("{a:?}").contains(a.expose()));
        assert!(a.matches(a.expose()));
        assert!(!a.matches(b.expose()));
        assert!(!a.matches(""));
    }

    #[test]
    fn csrf_token_is_not_the_secret_and_is_checked() {
        let s = Secret::from_string("k");
        let t = s.csrf_token();
        assert_ne!(t, "k");
        assert!(s.csrf_matches(&t));
        assert!(!s.csrf_matches("k"));
        assert!(!Secret::from_string("other").csrf_matches(&t));
    }

    #[test]
    fn host_must_be_loopback_with_the_port() {
        let mut h = HeaderMap::new();
        assert!(!host_allowed(&h, 8000));
        for (host, ok) in [
            ("127.0.0.1:8000", true),
            ("localhost:8000", true),
            ("127.0.0.1:8001", false),
            ("evil.example:8000", false),
            ("127.0.0.1", false),
        ] {
            h.insert(header::HOST, HeaderValue::from_static(host));
            assert_eq!(host_allowed(&h, 8000), ok, "{host}");
        }
    }

    #[test]
    fn cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; fieldsync_app_9=xyz; b=2"),
        );
        assert_eq!(cookie(&h, "fieldsync_app_9"), Some("xyz"));
        assert_eq!(cookie(&h, "fieldsync_app_8"), None);
    }
}
