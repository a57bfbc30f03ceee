//! The administrator's operations, each with its audit line, whoever asks: the admin endpoints
//! (`admin`), the `fieldsync-server admin …` commands on a data directory (`main.rs`) and the
//! first start (`bootstrap_admin`). One place, so that an operation is audited the same way by
//! every path to it.

use std::ops::RangeInclusive;

use fieldsync_protocol::auth::{Role, code_hash};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    auth::new_code,
    error::ApiError,
    storage::{AuditEntry, Identity, Person, PersonUpdate, Storage},
};

/// How many hours an enrollment code may stay valid.
pub const CODE_HOURS: RangeInclusive<u32> = 1..=720;

/// Who performs an operation.
#[derive(Debug, Clone, Copy)]
pub enum By<'a> {
    /// An administrator's device, over HTTP.
    Device(&'a Identity),
    /// The `fieldsync-server admin …` command line on the data directory.
    CommandLine,
    /// The server's first start (the first administrator's code).
    FirstStart,
}

impl By<'_> {
    fn entry(&self, action: &str, mut detail: Value) -> AuditEntry {
        let (device, person) = match self {
            By::Device(who) => (Some(who.device), Some(who.person.id)),
            By::CommandLine => {
                detail["via"] = "command line".into();
                (None, None)
            }
            By::FirstStart => {
                detail["bootstrap"] = true.into();
                (None, None)
            }
        };
        AuditEntry {
            at: 0,
            device,
            person,
            action: action.into(),
            outcome: "ok".into(),
            detail,
        }
    }
}

/// Adds a person.
pub async fn create_person(
    storage: &dyn Storage,
    by: By<'_>,
    name: String,
    role: Role,
    group: Option<Uuid>,
) -> Result<Person, ApiError> {
    let p = storage.create_person(name, role, group).await?;
    storage
        .audit(by.entry(
            "person_created",
            json!({ "person": p.id, "name": p.name, "role": p.role, "group": p.group }),
        ))
        .await;
    Ok(p)
}

/// Changes a person (name, role, group, disabled).
pub async fn update_person(
    storage: &dyn Storage,
    by: By<'_>,
    id: Uuid,
    update: PersonUpdate,
) -> Result<Person, ApiError> {
    let p = storage.update_person(id, update).await?;
    storage
        .audit(by.entry(
            "person_updated",
            json!({ "person": p.id, "role": p.role, "group": p.group, "disabled": p.disabled }),
        ))
        .await;
    Ok(p)
}

/// Issues a one-time enrollment code for `person`, valid for `hours` (within [`CODE_HOURS`]);
/// returns it and its expiry (ms since the Unix epoch). The server keeps only its hash.
pub async fn issue_code(
    storage: &dyn Storage,
    by: By<'_>,
    person: Uuid,
    hours: u32,
) -> Result<(String, i64), ApiError> {
    if !CODE_HOURS.contains(&hours) {
        return Err(ApiError::bad_request(format!(
            "hours={hours}: a code is valid for {} to {} hours",
            CODE_HOURS.start(),
            CODE_HOURS.end()
        )));
    }
    let issued = issue(storage, person, hours).await?;
    storage
        .audit(by.entry("code_issued", json!({ "person": person, "hours": hours })))
        .await;
    Ok(issued)
}

/// Issues a code without an audit line, for tests and examples that set a server up.
/// Operations use [`issue_code`].
pub async fn issue(
    storage: &dyn Storage,
    person: Uuid,
    hours: u32,
) -> Result<(String, i64), ApiError> {
    let code = new_code()?;
    let expires_at = now_ms() + i64::from(hours) * 3_600_000;
    storage
        .issue_code(person, code_hash(&code), expires_at)
        .await?;
    Ok((code, expires_at))
}

/// Revokes a device; returns whether it exists (only then is the revocation audited).
pub async fn revoke(storage: &dyn Storage, by: By<'_>, device: Uuid) -> Result<bool, ApiError> {
    if !storage.revoke(device).await? {
        return Ok(false);
    }
    storage
        .audit(by.entry("revoke", json!({ "revoked": device })))
        .await;
    Ok(true)
}

/// Declares the server restored from a backup (see
/// [`crate::storage::ChangeLog::declare_restored`]); returns the new epoch and when the
/// recovery window closes.
pub async fn declare_restored(
    storage: &dyn Storage,
    by: By<'_>,
) -> Result<(String, i64), ApiError> {
    let (epoch, until) = storage.declare_restored().await?;
    storage
        .audit(by.entry(
            "restored",
            json!({ "epoch": epoch, "recovery_until": until }),
        ))
        .await;
    Ok((epoch, until))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
