//! Accounts over HTTP: enrolling a device with a one-time code, a device asking who it is, and
//! the admin endpoints for people, codes, devices and the audit log (the audited operations
//! themselves are `operations`).

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, Query, State, rejection::JsonRejection, rejection::QueryRejection},
    http::StatusCode,
};
use fieldsync_protocol::auth::{
    EnrollRequest, EnrollResponse, MeResponse, PersonInfo, Role, code_hash, mac_key, token_hash,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    AppState,
    auth::{Auth, ClientIp, new_token, note_failed_credential},
    error::ApiError,
    operations::{self, By},
    storage::{AuditEntry, AuditFilter, DeviceView, NewEnrollment, Person, PersonUpdate},
};

fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(b)| b).map_err(|e| {
        ApiError::bad_request(format!("the JSON body is not valid: {}", e.body_text()))
            .with_hint("see docs/PROTOCOL.md, section Accounts")
    })
}

fn parse_uuid(what: &str, s: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s)
        .map_err(|e| ApiError::bad_request(format!("{what} {s:?} is not a UUID: {e}")))
}

fn person_info(p: &Person) -> PersonInfo {
    PersonInfo {
        id: p.id.to_string(),
        name: p.name.clone(),
        role: p.role,
        group: p.group.map(|g| g.to_string()),
    }
}

/// Uses up a one-time code for `device` and returns its person and new token, with the brake
/// on failed codes (a valid code always works) and an audit line either way. `/v1/enroll` and the dashboard's login share it.
pub async fn enroll_device(
    state: &AppState,
    ip: Option<std::net::IpAddr>,
    code: &str,
    device: Uuid,
    name: &str,
    browser: bool,
) -> Result<(Person, String), ApiError> {
    let token = new_token()?;
    let result = state
        .storage
        .enroll(NewEnrollment {
            code_hash: code_hash(code),
            device,
            name: name.trim().chars().take(100).collect(),
            token_hash: token_hash(&token),
            mac_key: mac_key(&token),
        })
        .await;
    match result {
        Ok(person) => {
            state
                .storage
                .audit(AuditEntry {
                    at: 0,
                    device: Some(device),
                    person: Some(person.id),
                    action: "enroll".into(),
                    outcome: "ok".into(),
                    detail: json!({ "name": name, "role": person.role, "browser": browser }),
                })
                .await;
            tracing::info!(%device, person = %person.id, role = %person.role, "device enrolled");
            Ok((person, token))
        }
        Err(e) => {
            let err = ApiError::from(e);
            let code = match &err {
                ApiError::Client { code, .. } => *code,
                ApiError::Internal(_) => "internal",
            };
            state
                .storage
                .audit(AuditEntry {
                    at: 0,
                    device: Some(device),
                    person: None,
                    action: "enroll".into(),
                    outcome: "refused".into(),
                    detail: json!({ "code": code, "ip": ip.map(|i| i.to_string()),
                                    "browser": browser }),
                })
                .await;
            if matches!(code, "invalid_code" | "code_used" | "code_expired") {
                note_failed_credential(state, ip)?;
            }
            Err(err)
        }
    }
}

/// `POST /v1/enroll`: exchanges a one-time code for a device token.
pub async fn enroll(
    State(state): State<Arc<AppState>>,
    ClientIp(ip): ClientIp,
    body: Result<Json<EnrollRequest>, JsonRejection>,
) -> Result<Json<EnrollResponse>, ApiError> {
    let req = json_body(body)?;
    let device = parse_uuid("device", &req.device)?;
    let (person, token) = enroll_device(&state, ip, &req.code, device, &req.name, false).await?;
    Ok(Json(EnrollResponse {
        device: device.to_string(),
        token,
        person: person_info(&person),
    }))
}

/// `GET /v1/me`: who this device is and what it may see.
pub async fn me(auth: Auth) -> Json<MeResponse> {
    Json(MeResponse {
        device: auth.0.device.to_string(),
        person: person_info(&auth.0.person),
        scope: auth.0.scope.clone(),
    })
}

/// `POST /v1/admin/people` body.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPerson {
    /// Name.
    pub name: String,
    /// Role (`admin`, `viewer`, `leader`, `worker`).
    pub role: Role,
    /// Work group (`work_group` record id) for leaders and workers.
    #[serde(default)]
    pub group: Option<Uuid>,
}

/// `GET /v1/admin/people`.
pub async fn people(
    State(state): State<Arc<AppState>>,
    auth: Auth,
) -> Result<Json<Vec<Person>>, ApiError> {
    auth.require_admin()?;
    Ok(Json(state.storage.people().await?))
}

/// `POST /v1/admin/people`.
pub async fn create_person(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    body: Result<Json<NewPerson>, JsonRejection>,
) -> Result<(StatusCode, Json<Person>), ApiError> {
    auth.require_admin()?;
    let p = json_body(body)?;
    let person = operations::create_person(
        state.storage.as_ref(),
        By::Device(&auth.0),
        p.name,
        p.role,
        p.group,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(person)))
}

/// `PATCH /v1/admin/people/{id}`: change name, role, group or disable; devices see it on their
/// next request.
pub async fn update_person(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    Path(id): Path<String>,
    body: Result<Json<PersonUpdate>, JsonRejection>,
) -> Result<Json<Person>, ApiError> {
    auth.require_admin()?;
    let id = parse_uuid("person", &id)?;
    let update = json_body(body)?;
    let person =
        operations::update_person(state.storage.as_ref(), By::Device(&auth.0), id, update).await?;
    Ok(Json(person))
}

/// `POST /v1/admin/people/{id}/codes` body.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCode {
    /// Hours the code stays valid (default 72, at most 720).
    #[serde(default)]
    pub hours: Option<u32>,
}

/// `POST /v1/admin/people/{id}/codes`: a one-time enrollment code for a person. The code is
/// shown once; the server keeps only its hash.
pub async fn issue_code(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    Path(id): Path<String>,
    body: Option<Json<NewCode>>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    auth.require_admin()?;
    let person = parse_uuid("person", &id)?;
    let hours = body.and_then(|b| b.0.hours).unwrap_or(72);
    let (code, expires_at) =
        operations::issue_code(state.storage.as_ref(), By::Device(&auth.0), person, hours).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "person": person, "code": code, "expires_at": expires_at })),
    ))
}

pub use crate::operations::issue;

/// `GET /v1/admin/devices`: every device, its owner and when it last synced.
pub async fn devices(
    State(state): State<Arc<AppState>>,
    auth: Auth,
) -> Result<Json<Vec<DeviceView>>, ApiError> {
    auth.require_admin()?;
    Ok(Json(state.storage.devices().await?))
}

/// `GET /v1/admin/attachments`: what each campaign's files take and what the last sweep found
/// unreferenced or removed (`null` until the first sweep, a minute after the server starts).
pub async fn attachments(
    State(state): State<Arc<AppState>>,
    auth: Auth,
) -> Result<Json<Value>, ApiError> {
    auth.require_admin()?;
    let (report, added) = {
        let ledger = state.blob_sweep.lock().expect("sweep report");
        (ledger.report.clone(), ledger.added.clone())
    };
    let Some(report) = report else {
        return Ok(Json(Value::Null));
    };
    let mut v = serde_json::to_value(report)
        .map_err(|e| ApiError::Internal(format!("sweep report: {e}")))?;
    v["quota_bytes"] = serde_json::json!(state.attachment_quota);
    v["added_since_bytes"] = serde_json::json!(added);
    Ok(Json(v))
}

/// `POST /v1/admin/devices/{id}/revoke`: the device's next request is refused and it is told
/// to wipe its store.
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    auth.require_admin()?;
    let device = parse_uuid("device", &id)?;
    if !operations::revoke(state.storage.as_ref(), By::Device(&auth.0), device).await? {
        return Err(ApiError::not_found(format!(
            "no device {device} on this server"
        )));
    }
    tracing::warn!(%device, by = %auth.0.device, "device revoked");
    Ok(Json(json!({ "device": device, "revoked": true })))
}

/// `GET /v1/admin/audit?action=&device=&before=&limit=`: the audit log, newest first.
pub async fn audit(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    filter: Result<Query<AuditFilter>, QueryRejection>,
) -> Result<Json<Vec<Value>>, ApiError> {
    auth.require_admin()?;
    let Query(filter) = filter.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let lines = state.storage.audit_log(filter).await?;
    Ok(Json(
        lines
            .into_iter()
            .map(|(id, e)| {
                let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
                v["id"] = id.into();
                v
            })
            .collect(),
    ))
}
