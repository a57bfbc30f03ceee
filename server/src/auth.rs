//! Who is asking and what they may do: the bearer-token extractor every protected handler takes,
//! role checks, request limits per device, and the brake on guessed tokens and codes.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::{StatusCode, header, request::Parts},
};
use fieldsync_protocol::auth::{REVOKED_CODE, Role, token_hash};
use uuid::Uuid;

use crate::{
    AppState,
    error::ApiError,
    storage::{AuditEntry, Identity, TokenCheck},
};

/// Limits that protect the server from one device or one address.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Requests one device may make per minute before it gets 429.
    pub requests_per_minute: u32,
    /// Failed token or enrollment-code attempts one address may make per minute.
    pub failed_auth_per_minute: u32,
    /// The most records in one push.
    pub max_push_records: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            requests_per_minute: 1200,
            failed_auth_per_minute: 20,
            max_push_records: fieldsync_protocol::wire::MAX_PUSH_RECORDS,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Device(Uuid),
    FailedFrom(Option<IpAddr>),
}

/// Fixed one-minute windows of request counts.
#[derive(Debug)]
pub struct RateLimiter {
    started: Instant,
    windows: Mutex<HashMap<Key, (u64, u32)>>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter {
            started: Instant::now(),
            windows: Mutex::new(HashMap::new()),
        }
    }
}

impl RateLimiter {
    fn minute(&self) -> u64 {
        self.started.elapsed().as_secs() / 60
    }

    /// Counts one event for `key`; returns the seconds to wait when over `limit`.
    fn hit(&self, key: Key, limit: u32) -> Option<u64> {
        let minute = self.minute();
        let mut w = self.windows.lock().expect("rate limiter lock");
        if w.len() > 50_000 {
            w.retain(|_, (m, _)| *m == minute);
        }
        let entry = w.entry(key).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        (entry.1 > limit).then(|| 60 - self.started.elapsed().as_secs() % 60)
    }
}

fn too_many(wait: u64, what: &str) -> ApiError {
    ApiError::client(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("请求过于频繁 / too many {what}; wait {wait} s and try again"),
    )
    .with_retry_after(wait)
}

/// The client address: what [`crate::edge::resolve`] worked out (through trusted proxies), else
/// the TCP peer.
fn client_ip(parts: &Parts) -> Option<IpAddr> {
    match parts.extensions.get::<crate::edge::Client>() {
        Some(c) => c.ip,
        None => parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip()),
    }
}

/// Counts a failed credential (unknown token, wrong, used or expired code) from `ip`; once the
/// address is over [`Limits::failed_auth_per_minute`] this minute, the failure is answered 429
/// instead of its own error, which then says nothing about why the credential failed.
///
/// Only failures are braked: a valid credential is never refused for its address's failures
/// (so that one guesser behind a shared address or proxy cannot lock everyone out). Guessing
/// stays hopeless at 256-bit tokens and 60-bit codes.
pub fn note_failed_credential(state: &AppState, ip: Option<IpAddr>) -> Result<(), ApiError> {
    match state
        .rate
        .hit(Key::FailedFrom(ip), state.limits.failed_auth_per_minute)
    {
        Some(wait) => Err(too_many(wait, "failed sign-in attempts from this address")),
        None => Ok(()),
    }
}

/// The token of an `Authorization: Bearer <token>` header value; the scheme is
/// case-insensitive (RFC 7235), spaces around the token are ignored.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The request's client address, when the server knows it.
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<Arc<AppState>> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(parts)))
    }
}

/// The name of the dashboard's session cookie (it holds the browser's device token).
pub const SESSION_COOKIE: &str = "fieldsync_session";

/// The session cookie's value, if the request has one.
pub fn session_cookie(parts: &Parts) -> Option<String> {
    cookie(parts, SESSION_COOKIE)
}

/// A cookie's value.
pub fn cookie(parts: &Parts, name: &str) -> Option<String> {
    cookie_in(&parts.headers, name)
}

/// A cookie's value among request headers.
pub fn cookie_in(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// An authenticated device: extract it in a handler to require a valid token.
#[derive(Debug, Clone)]
pub struct Auth(pub Identity);

/// Tells the refusal audit (see [`crate::refusals`]) which device is asking.
fn note_device(parts: &Parts, device: Uuid, person: Option<Uuid>) {
    if let Some(slot) = parts.extensions.get::<crate::refusals::AuditSlot>() {
        slot.set(device, person);
    }
}

impl FromRequestParts<Arc<AppState>> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let ip = client_ip(parts);
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let token = match value
            .and_then(bearer_token)
            .map(str::to_string)
            .or_else(|| session_cookie(parts))
        {
            Some(t) if !t.trim().is_empty() => t.trim().to_string(),
            _ => {
                return Err(ApiError::client(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "需要登录 / this endpoint needs a device token: send \
                     Authorization: Bearer <token>",
                )
                .with_hint(
                    "enroll the device with a code from the administrator: fieldsync enroll",
                ));
            }
        };
        // No brake before the check: a valid token passes whatever its address did; failures
        // are counted (and braked) below.
        match state.storage.authenticate(token_hash(&token)).await? {
            TokenCheck::Valid(identity) => {
                note_device(parts, identity.device, Some(identity.person.id));
                if let Some(wait) = state.rate.hit(
                    Key::Device(identity.device),
                    state.limits.requests_per_minute,
                ) {
                    return Err(too_many(wait, "requests from this device"));
                }
                Ok(Auth(*identity))
            }
            TokenCheck::Revoked(device) => {
                note_device(parts, device, None);
                Err(ApiError::client(
                    StatusCode::FORBIDDEN,
                    REVOKED_CODE,
                    "此设备已被管理员停用 / this device was revoked by an administrator",
                )
                .with_hint("wipe this device's local store; enroll a new store to continue"))
            }
            TokenCheck::Disabled(device) => {
                note_device(parts, device, None);
                Err(ApiError::client(
                    StatusCode::FORBIDDEN,
                    "person_disabled",
                    "此设备的使用人已被停用 / the person this device belongs to is disabled",
                )
                .with_hint("ask the administrator"))
            }
            TokenCheck::Unknown => {
                note_failed_credential(state, ip)?;
                Err(ApiError::client(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "设备凭据无效 / this device token is not valid",
                )
                .with_hint("enroll the device again with a new code from the administrator"))
            }
        }
    }
}

impl Auth {
    /// Refuses anyone but admins.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.0.person.role == Role::Admin {
            Ok(())
        } else {
            Err(forbidden(
                "admin_only",
                format!(
                    "只有管理员可以这样做 / only administrators may do this ({} is a {})",
                    self.0.person.name, self.0.person.role
                ),
            ))
        }
    }

    /// Refuses anyone but admins and department viewers (campaign-wide reports and exports).
    pub fn require_department(&self) -> Result<(), ApiError> {
        match self.0.person.role {
            Role::Admin | Role::Viewer => Ok(()),
            _ => Err(forbidden(
                "department_only",
                "只有部门人员可以查看全局汇总和导出 / campaign-wide tallies, reports and exports \
                 are for the department (viewers and administrators)",
            )),
        }
    }

    /// What this device may see, for the storage's queries.
    pub fn visibility(&self) -> crate::storage::Visibility {
        crate::storage::Visibility::of(&self.0.scope)
    }

    /// Whether this device may see a record of `campaign` in `scope`.
    pub fn sees(&self, campaign: &Uuid, scope: &str) -> bool {
        self.0.scope.sees(&campaign.to_string(), scope)
    }

    /// An audit line about this device.
    pub fn audit(&self, action: &str, detail: serde_json::Value) -> AuditEntry {
        AuditEntry {
            at: 0,
            device: Some(self.0.device),
            person: Some(self.0.person.id),
            action: action.into(),
            outcome: "ok".into(),
            detail,
        }
    }
}

/// 403 with a code.
pub fn forbidden(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::client(StatusCode::FORBIDDEN, code, message)
}

/// A new device token: 256 random bits.
pub fn new_token() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(format!("fst_{}", hex::encode(bytes)))
}

/// A new one-time enrollment code: 60 random bits as `XXXX-XXXX-XXXX`.
pub fn new_code() -> Result<String, ApiError> {
    let mut bytes = [0u8; 8];
    getrandom::getrandom(&mut bytes).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(fieldsync_protocol::auth::format_code(
        u64::from_le_bytes(bytes) >> 4,
    ))
}
