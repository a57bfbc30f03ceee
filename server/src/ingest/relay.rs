//! The relay policy: when a device may upload a change another device wrote (received in a
//! bundle), and when that refuses the record or the whole push. Plain data in, a verdict out.

use uuid::Uuid;

use super::{PushRefused, Refusal};
use crate::storage::CheckedChange;

/// What [`check`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relay {
    /// The change's author is the pushing device, unknown yet, or proven by its valid tag. When
    /// the tag proved an author the server did not know, `register` names the device the actor
    /// now belongs to.
    Verified {
        /// The device to register the change's actor to.
        register: Option<Uuid>,
    },
    /// Untagged under another device's actor, accepted because an administrator declared the
    /// server restored (the recovery window).
    Unverified,
    /// Untagged under another device's actor: the record is refused (the author uploads its own
    /// changes itself, or a device relays them with the author's tag).
    Untagged(Refusal),
}

/// Checks a change another device wrote that `pusher` relays, given the device the server knows
/// owns the change's actor (`owner`), the tag keys of enrolled devices (`key_of`) and whether the
/// recovery window is open.
///
/// A change under an actor the server knows belongs to another device must carry that device's
/// valid tag; a valid tag under an actor the server does not know yet registers the actor to the
/// tag's device. An untagged change under an unknown actor is accepted and attributed to the
/// pushing device (it cannot claim anyone else's name). An untagged change under another
/// device's actor refuses its record, unless an administrator declared the server restored from a
/// backup (`recovering`, see [`crate::storage::ChangeLog::declare_restored`]). A tag that does not
/// verify, or that names another device than the actor's, refuses the whole push: no honest
/// device sends one.
pub fn check(
    pusher: Uuid,
    record: &str,
    change: &CheckedChange,
    owner: Option<Uuid>,
    key_of: impl Fn(Uuid) -> Option<[u8; 32]>,
    recovering: bool,
) -> Result<Relay, PushRefused> {
    let forged = |why: &str| PushRefused {
        code: "forged_actor",
        message: format!(
            "a change to record {record} is written under actor {} {why}; a device may relay \
             another device's changes only with that device's tag (bundles carry them)",
            hex::encode(&change.actor)
        ),
        hint: None,
    };
    let tag_device = change
        .tag
        .as_ref()
        .and_then(|t| fieldsync_protocol::auth::tag_device(t));
    match (owner, tag_device) {
        (Some(o), _) if o == pusher => return Ok(Relay::Verified { register: None }),
        (None, None) => return Ok(Relay::Verified { register: None }),
        (Some(_), None) if recovering => return Ok(Relay::Unverified),
        (Some(_), None) => {
            return Ok(Relay::Untagged(Refusal {
                code: "unverified_relay",
                message: format!(
                    "记录含有其他设备的修改但没有其签名 / a change to record {record} is written \
                     under actor {}, which belongs to another device, without that device's \
                     tag: the other device uploads it itself",
                    hex::encode(&change.actor)
                ),
            }));
        }
        (Some(o), Some(t)) if o != t => {
            return Err(forged("that belongs to another device than its tag names"));
        }
        _ => {}
    }
    let signer = tag_device.expect("checked above");
    let key = key_of(signer)
        .ok_or_else(|| forged("with a tag of a device this server has not enrolled"))?;
    let tag = change.tag.as_ref().expect("checked above");
    if !fieldsync_protocol::auth::verify_tag(&key, &change.actor, &change.hash, tag) {
        return Err(forged("with a tag that does not verify"));
    }
    Ok(Relay::Verified {
        register: owner.is_none().then_some(signer),
    })
}
