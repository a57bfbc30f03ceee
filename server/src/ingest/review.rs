//! The review rule of a push: only a reviewer (an administrator, a group's leader in the group's
//! villages, or a viewer where the campaign's template says `[review] viewers = true`) writes a
//! review decision; anyone's edit may send a record back to pending.
//!
//! A worker's device writes `_review = pending` with an edit of a reviewed record (see
//! `fieldsync_protocol::approval`); a change of the pusher's own that writes `approved` or
//! `returned`, or the reviewer's comment, name or time, refuses its record
//! (`review_not_allowed`) while the rest of the push is stored.

use std::collections::HashSet;

use automerge::{
    Change, ScalarValue,
    legacy::{self, Key, OpType},
};
use fieldsync_protocol::{approval, auth::Role};

use super::{Pusher, Refusal};
use crate::storage::CheckedChange;

/// Whether `role` may write review decisions (within what it may write at all, which
/// [`super::admit`] checks).
pub fn reviews(role: Role) -> bool {
    matches!(role, Role::Admin | Role::Leader)
}

/// Whether `role` reads everything and writes nothing but may review where a campaign's
/// template says `[review] viewers = true` (the department's viewers).
pub fn reader_may_review(role: Role) -> bool {
    role == Role::Viewer
}

/// Whether a reader (`role`) reviews the records of a campaign with this template.
pub fn reader_reviews(
    role: Role,
    template: Option<&fieldsync_protocol::template::Template>,
) -> bool {
    reader_may_review(role) && template.is_some_and(|t| t.review.viewers)
}

/// Refuses the whole push of a reader unless every record is of a campaign whose template lets
/// viewers review and every change of the push writes review fields only (no new record, no
/// other field).
pub fn reader_push(
    pusher: &Pusher,
    push: &crate::storage::CheckedPush,
    facts: &super::Facts,
) -> Result<(), super::PushRefused> {
    let refused = |why_zh: &str, why_en: &str| {
        let mut r = super::read_only(pusher);
        r.message = format!("{}；{why_zh} / {why_en}", r.message);
        r
    };
    for rec in &push.records {
        let template = facts
            .templates
            .get(&rec.header.campaign)
            .map(|t| t.as_ref());
        if !reader_reviews(pusher.role, template) {
            return Err(refused(
                "本工作任务未允许部机关查看人员审核记录",
                "this campaign's template does not let viewers review records",
            ));
        }
        // A decision is on a record the server holds, of the kinds the field work records
        // (never the department's reference data or the campaign's set-up), as stored.
        if facts.headers.get(&rec.header.id) != Some(&rec.header)
            || !reviewable_kind(&rec.header.kind)
        {
            return Err(refused(
                "只能审核服务器上已有的外业记录",
                "a viewer reviews only field records the server already holds",
            ));
        }
        let fields = fields_object(&rec.header);
        if fields.is_none()
            || !rec
                .changes
                .iter()
                .all(|c| writes_review_fields_only(c, fields.as_ref()))
        {
            return Err(refused(
                "查看人员只能写审核结论",
                "a viewer may write review decisions and nothing else",
            ));
        }
    }
    Ok(())
}

/// Whether records of `kind` are reviewed: the field work's, not the department's reference
/// data (places, teams, members, work groups, the campaign) nor templates.
pub fn reviewable_kind(kind: &str) -> bool {
    !fieldsync_protocol::auth::DEPARTMENT_KINDS.contains(&kind)
        && kind != fieldsync_protocol::template::TEMPLATE_KIND
}

/// The record's `fields` map as operations name it: made by the record's genesis change, the
/// same for every device.
fn fields_object(header: &fieldsync_protocol::RecordHeader) -> Option<legacy::ObjectId> {
    let (_, bytes) = fieldsync_protocol::record::genesis_change(header).ok()?;
    let change = Change::from_bytes(bytes).ok()?;
    let start = change.start_op().get();
    let actor = change.actor_id().clone();
    let ops = change.decode().operations;
    ops.iter()
        .position(|op| {
            matches!(&op.key, Key::Map(k) if k.as_str() == fieldsync_protocol::record::FIELDS_KEY)
                && matches!(op.action, OpType::Make(_))
        })
        .map(|i| legacy::ObjectId::Id(legacy::OpId(start + i as u64, actor)))
}

/// Whether a change only puts or deletes review fields of the record's `fields` map (a
/// reviewer's decision, and nothing else: not a new record, not another field, not a key of
/// that name inside another field's map).
fn writes_review_fields_only(change: &CheckedChange, fields: Option<&legacy::ObjectId>) -> bool {
    if change.genesis || !may_name_review_fields(&change.bytes) {
        return false;
    }
    let Ok(change) = Change::from_bytes(change.bytes.clone()) else {
        return false;
    };
    let ops = change.decode().operations;
    !ops.is_empty()
        && ops.iter().all(|op| {
            Some(&op.obj) == fields
                && matches!(&op.key, Key::Map(key) if approval::is_review_field(key.as_str()))
                && matches!(op.action, OpType::Put(_) | OpType::Delete)
        })
}

/// Whether a change's bytes may hold an operation on a review field: a compressed chunk may,
/// and an uncompressed one (chunk type 1, after the 4-byte magic and 4-byte checksum) only
/// when the key's name is in it verbatim (keys are stored as plain UTF-8). Lets a push of
/// thousands of ordinary changes skip decoding them.
fn may_name_review_fields(bytes: &[u8]) -> bool {
    const UNCOMPRESSED_CHANGE: u8 = 1;
    bytes.get(8) != Some(&UNCOMPRESSED_CHANGE)
        || bytes
            .windows(approval::STATE_FIELD.len())
            .any(|w| w == approval::STATE_FIELD.as_bytes())
}

/// Refuses a record when one of the pusher's own changes (`own` actors; relayed changes are
/// their signers' and checked by their tags) writes a review decision the pusher may not.
pub fn check(
    pusher: &Pusher,
    changes: &[CheckedChange],
    own: &HashSet<Vec<u8>>,
) -> Option<Refusal> {
    // A reader's push holds review decisions only, where its template allows them
    // ([`reader_push`] checked it before).
    if reviews(pusher.role) || !pusher.scope.write {
        return None;
    }
    let writes_decision = |change: &CheckedChange| {
        if !may_name_review_fields(&change.bytes) {
            return false;
        }
        // A change that does not decode was refused by the decoder already.
        let Ok(change) = Change::from_bytes(change.bytes.clone()) else {
            return false;
        };
        change.decode().operations.iter().any(|op| match &op.key {
            Key::Map(key) if key.as_str() == approval::STATE_FIELD => !matches!(
                &op.action,
                OpType::Put(ScalarValue::Str(s)) if s.as_str() == approval::State::Pending.as_str()
            ) && !matches!(op.action, OpType::Delete),
            Key::Map(key) => approval::is_review_field(key.as_str()),
            Key::Seq(_) => false,
        })
    };
    changes
        .iter()
        .filter(|c| !c.genesis && own.contains(&c.actor))
        .any(writes_decision)
        .then(|| Refusal {
            code: "review_not_allowed",
            message: format!(
                "只有组长或管理员可以审核记录，{}（{}）的这条记录未保存 / only a group leader or an \
                 administrator reviews records; {} is a {}, so this record was not stored",
                pusher.name,
                pusher.role.zh(),
                pusher.name,
                pusher.role
            ),
        })
}

#[cfg(test)]
mod tests {
    use automerge::{ActorId, Automerge, ROOT, transaction::Transactable};

    use super::*;

    fn change(key: &str, value: &str) -> Vec<u8> {
        let mut doc = Automerge::new();
        doc.set_actor(ActorId::random());
        let mut tx = doc.transaction();
        tx.put(ROOT, key, value).unwrap();
        tx.commit();
        doc.get_last_local_change().unwrap().raw_bytes().to_vec()
    }

    #[test]
    fn only_changes_naming_a_review_field_or_compressed_are_decoded() {
        assert!(may_name_review_fields(&change("_review", "approved")));
        assert!(may_name_review_fields(&change("_review_comment", "好")));
        assert!(!may_name_review_fields(&change("topic", "座谈会")));
        // A compressed chunk is always decoded.
        let mut compressed = change("topic", "座谈会");
        compressed[8] = 2;
        assert!(may_name_review_fields(&compressed));
    }
}
