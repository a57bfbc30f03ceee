//! The review rule of a push: only a reviewer (an administrator, or a group's leader in the
//! group's villages) writes a review decision; anyone's edit may send a record back to pending.
//!
//! A worker's device writes `_review = pending` with an edit of a reviewed record (see
//! `fieldsync_protocol::approval`); a change of the pusher's own that writes `approved` or
//! `returned`, or the reviewer's comment, name or time, refuses its record
//! (`review_not_allowed`) while the rest of the push is stored.

use std::collections::HashSet;

use automerge::{
    Change, ScalarValue,
    legacy::{Key, OpType},
};
use fieldsync_protocol::{approval, auth::Role};

use super::{Pusher, Refusal};
use crate::storage::CheckedChange;

/// Whether `role` may write review decisions (within what it may write at all, which
/// [`super::admit`] checks).
pub fn reviews(role: Role) -> bool {
    matches!(role, Role::Admin | Role::Leader)
}

/// Refuses a record when one of the pusher's own changes (`own` actors; relayed changes are
/// their signers' and checked by their tags) writes a review decision the pusher may not.
pub fn check(
    pusher: &Pusher,
    changes: &[CheckedChange],
    own: &HashSet<Vec<u8>>,
) -> Option<Refusal> {
    if reviews(pusher.role) {
        return None;
    }
    let writes_decision = |change: &CheckedChange| {
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
