//! The devices of a campaign's people and their last sync, for the department (admins and
//! viewers): who has synced when, which devices never did, which are revoked.

use std::collections::HashMap;
use std::sync::Arc;

use axum::{
    extract::{Path, State},
    response::{IntoResponse, Response},
};
use fieldsync_protocol::auth::Role;
use uuid::Uuid;

use super::page::{esc, page, table, time};
use super::*;

/// `GET /ui/c/{campaign}/devices`: every enrolled device with its person, group and last sync.
pub(super) async fn devices(
    State(state): State<Arc<AppState>>,
    user: User,
    Path(campaign): Path<String>,
) -> Response {
    let lang = user.lang;
    match body(&state, &user, &campaign).await {
        Ok((id, body)) => page(
            lang,
            lang.t("设备同步情况", "Devices and their last sync"),
            Some(&id),
            &body,
        )
        .into_response(),
        Err(e) => ui_error(lang, e),
    }
}

async fn body(state: &AppState, user: &User, campaign: &str) -> Result<(String, String), ApiError> {
    let lang = user.lang;
    let c = load_campaign(state, user, campaign, crate::storage::Period::all()).await?;
    if !matches!(user.auth.0.person.role, Role::Admin | Role::Viewer) {
        return Err(crate::auth::forbidden(
            "department_only",
            "设备情况只对组织部开放 / the devices page is for the department",
        ));
    }
    let groups = state
        .storage
        .campaign_records(
            c.id,
            "work_group".into(),
            user.auth.visibility(),
            crate::storage::Period::all(),
        )
        .await?;
    let mut body = String::new();
    {
        let devices = state.storage.devices().await?;
        let people = state.storage.people().await?;
        let group_name: HashMap<Uuid, String> = groups
            .iter()
            .map(|g| (g.id, field_str(g, "name").to_string()))
            .collect();
        let rows: Vec<Vec<String>> = devices
            .iter()
            .filter(|d| d.enrolled_at.is_some())
            .map(|d| {
                let group = d
                    .person
                    .and_then(|p| people.iter().find(|x| x.id == p))
                    .and_then(|p| p.group)
                    .and_then(|g| group_name.get(&g).cloned())
                    .unwrap_or_default();
                let last = d.last_push.max(d.last_pull);
                vec![
                    esc(d.person_name.as_deref().unwrap_or("")),
                    esc(&group),
                    esc(d.name.as_deref().unwrap_or("")),
                    last.map(time)
                        .unwrap_or_else(|| lang.t("从未同步", "never").into()),
                    if d.revoked_at.is_some() {
                        lang.t("已停用", "revoked").into()
                    } else {
                        String::new()
                    },
                ]
            })
            .collect();
        body.push_str(&table(
            &[
                lang.t("使用人", "Person").into(),
                lang.t("工作组", "Group").into(),
                lang.t("设备", "Device").into(),
                lang.t("最近同步", "Last sync").into(),
                String::new(),
            ],
            &rows,
        ));
    }
    Ok((c.id.to_string(), body))
}
