//! The department's review of records: reading a stored record's review state, and writing a
//! decision (已通过 / 退回修改) as a real change through the one push pipeline, audited, so it
//! syncs to the devices like any field. Who may review is [`crate::ingest::review`]'s rule.

use std::collections::BTreeMap;

use fieldsync_protocol::{
    FieldValue,
    approval::{self, Review, State},
};
use uuid::Uuid;

use crate::{AppState, auth::Auth, error::ApiError, storage::RecordView};

/// A stored record's review, by the one rule of `protocol::approval` (a state in conflict reads
/// as pending).
pub async fn of(state: &AppState, r: &RecordView) -> Result<Review, ApiError> {
    let fields: BTreeMap<String, FieldValue> = [
        approval::STATE_FIELD,
        approval::COMMENT_FIELD,
        approval::BY_FIELD,
        approval::AT_FIELD,
    ]
    .into_iter()
    .filter_map(|k| {
        let v = r.fields.get(k)?;
        FieldValue::from_json(k, v).ok().map(|v| (k.to_string(), v))
    })
    .collect();
    let conflicted = r.conflicts > 0
        && state
            .storage
            .conflicts(r.id)
            .await?
            .unwrap_or_default()
            .iter()
            .any(|c| c.field == approval::STATE_FIELD);
    Ok(approval::read(&fields, conflicted))
}

/// Whether the signed-in `auth` may review record `r` of a campaign with `template`: an
/// administrator, a leader who may write the record's village, or a viewer where the template
/// lets viewers review (the rules of [`crate::ingest::review`], which the push enforces).
pub fn may_review(
    auth: &Auth,
    r: &RecordView,
    template: Option<&fieldsync_protocol::template::Template>,
) -> bool {
    let role = auth.0.person.role;
    let campaign = r.campaign.to_string();
    (crate::ingest::review::reviews(role) && auth.0.scope.writes(&campaign, &r.scope, &r.kind))
        || (crate::ingest::review::reader_reviews(role, template)
            && crate::ingest::review::reviewable_kind(&r.kind)
            && auth.0.scope.sees(&campaign, &r.scope))
}

/// Writes `decision` (approved or returned; a return needs a comment) on every record of `ids`
/// the reviewer sees, one change each through the push pipeline, each audited as `review`.
/// Returns how many were written.
pub async fn decide(
    state: &AppState,
    auth: &Auth,
    ids: &[Uuid],
    decision: State,
    comment: &str,
) -> Result<usize, ApiError> {
    let comment = comment.trim();
    match decision {
        State::Pending => {
            return Err(ApiError::bad_request(
                "审核结论只能是通过或退回 / a review decides approved or returned",
            ));
        }
        State::Returned if comment.is_empty() => {
            return Err(ApiError::bad_request(
                "退回修改时请写明原因 / say why when returning a record for changes",
            ));
        }
        _ => {}
    }
    if ids.is_empty() {
        return Err(ApiError::bad_request(
            "请先勾选要审核的记录 / tick the records to review first",
        ));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let mut written = 0;
    let mut templates = std::collections::HashMap::new();
    for &id in ids {
        let r = state
            .storage
            .record(id, auth.visibility())
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no record {id}")))?;
        let template = match templates.entry(r.campaign) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(state.storage.template(r.campaign).await?)
            }
        };
        if !may_review(auth, &r, template.as_ref()) {
            return Err(crate::auth::forbidden(
                "review_not_allowed",
                "只有本组组长或管理员可以审核记录 / only the group's leader or an administrator \
                 reviews records",
            ));
        }
        let fields = approval::decision(decision, comment, &auth.0.person.name, now);
        let outcome = crate::ui::write::write_fields(state, auth, &r, fields).await?;
        state
            .storage
            .audit(auth.audit(
                "review",
                serde_json::json!({
                    "record": id, "decision": decision.as_str(), "comment": comment,
                    "stored": outcome.stored,
                }),
            ))
            .await;
        written += 1;
    }
    if let Some(&last) = ids.last() {
        crate::ui::write::wait_merged(state, auth, last).await?;
    }
    Ok(written)
}
