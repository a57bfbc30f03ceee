//! Checking that a change is a record's genesis without building the genesis each time.
//!
//! A record's genesis change is deterministic (see [`crate::record`]), so a server checks a
//! pushed genesis by comparing it with the one it would write itself. Building that change
//! through an Automerge transaction costs tens of microseconds per record, a quarter of a push's
//! CPU. But the genesis bytes of two records differ only where their actor, id, campaign and
//! scope are written, as long as their kind is the same and their scope has the same length:
//! every other byte (column layout, lengths, keys, the schema number) is the same. So the first
//! genesis of each (kind, scope length) becomes a **template** with the positions of those four
//! values, and later genesis changes are compared with the template patched with their own
//! header.
//!
//! A template is only kept after it has proved itself: patched for a second header of the same
//! shape that differs in every variable byte, it must equal that header's genesis as Automerge
//! writes it. A change that does not match the patched template is checked the slow way (its
//! hash against the genesis built by Automerge), so a template can make the check faster but
//! never change its answer for bytes Automerge would write.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use automerge::ChangeHash;
use uuid::Uuid;

use crate::record::{RecordError, RecordHeader, genesis_actor, genesis_change};

/// The most templates kept (one per kind and scope length; a campaign has a handful).
const MAX_TEMPLATES: usize = 1024;

/// Where the variable values sit in a genesis change of one shape.
#[derive(Debug)]
struct Template {
    bytes: Vec<u8>,
    actor_at: usize,
    id_at: usize,
    campaign_at: usize,
    scope_at: usize,
}

type Key = (String, usize);

fn templates() -> &'static RwLock<HashMap<Key, Option<Arc<Template>>>> {
    static TEMPLATES: OnceLock<RwLock<HashMap<Key, Option<Arc<Template>>>>> = OnceLock::new();
    TEMPLATES.get_or_init(Default::default)
}

/// The only position of `needle` in `haystack`, or `None` if it occurs zero or several times.
fn unique_position(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let mut found = haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i);
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

impl Template {
    /// Finds the variable values in `header`'s genesis bytes.
    fn locate(header: &RecordHeader, bytes: Vec<u8>) -> Option<Template> {
        let actor = genesis_actor(header);
        let actor_at = unique_position(&bytes, actor.to_bytes())?;
        // The genesis writes id, kind, campaign and scope one after another into the value
        // column (see `genesis_change`).
        let id = header.id.hyphenated().to_string();
        let campaign = header.campaign.hyphenated().to_string();
        let values = format!("{id}{}{campaign}{}", header.kind, header.scope);
        let id_at = unique_position(&bytes, values.as_bytes())?;
        let campaign_at = id_at + id.len() + header.kind.len();
        let scope_at = campaign_at + campaign.len();
        Some(Template {
            bytes,
            actor_at,
            id_at,
            campaign_at,
            scope_at,
        })
    }

    /// The template's bytes with `header`'s values written in (the checksum, bytes 4 to 8, is
    /// left as it was: compare from byte 8 on).
    fn patched(&self, header: &RecordHeader) -> Vec<u8> {
        let mut out = self.bytes.clone();
        let actor = genesis_actor(header);
        let mut put = |at: usize, value: &[u8]| out[at..at + value.len()].copy_from_slice(value);
        put(self.actor_at, actor.to_bytes());
        put(self.id_at, header.id.hyphenated().to_string().as_bytes());
        put(
            self.campaign_at,
            header.campaign.hyphenated().to_string().as_bytes(),
        );
        put(self.scope_at, header.scope.as_bytes());
        out
    }

    /// Builds and proves the template for `header`'s shape, or `None` if it cannot be trusted.
    fn build(header: &RecordHeader) -> Option<Template> {
        let (_, bytes) = genesis_change(header).ok()?;
        let template = Template::locate(header, bytes)?;
        let other = differing_header(header);
        let (_, expected) = genesis_change(&other).ok()?;
        let patched = template.patched(&other);
        (patched.len() == expected.len() && patched[8..] == expected[8..]).then_some(template)
    }
}

/// A header of the same kind and scope length as `header` whose id, campaign and scope differ
/// from it in every byte.
fn differing_header(header: &RecordHeader) -> RecordHeader {
    // Flipping every bit of a UUID changes every hex digit of its string.
    let flip = |u: Uuid| Uuid::from_u128(!u.as_u128());
    let scope = header
        .scope
        .bytes()
        .map(|b| match b {
            b'0'..=b'8' | b'a'..=b'y' | b'A'..=b'Y' => (b + 1) as char,
            b'9' => '0',
            b'z' => 'a',
            b'Z' => 'A',
            b'_' => '-',
            b'-' => '.',
            b'.' => ':',
            _ => '_',
        })
        .collect();
    RecordHeader {
        id: flip(header.id),
        kind: header.kind.clone(),
        campaign: flip(header.campaign),
        scope,
    }
}

fn template_for(header: &RecordHeader) -> Option<Arc<Template>> {
    let key = (header.kind.clone(), header.scope.len());
    if let Some(found) = templates()
        .read()
        .expect("genesis templates lock")
        .get(&key)
    {
        return found.clone();
    }
    let built = Template::build(header).map(Arc::new);
    let mut map = templates().write().expect("genesis templates lock");
    if map.len() < MAX_TEMPLATES {
        map.insert(key, built.clone());
    }
    built
}

/// Whether `bytes` (whose hash is `hash`) are exactly `header`'s genesis change.
pub fn is_genesis(
    header: &RecordHeader,
    bytes: &[u8],
    hash: &ChangeHash,
) -> Result<bool, RecordError> {
    header.validate()?;
    if let Some(template) = template_for(header)
        && template.bytes.len() == bytes.len()
        && template.patched(header)[8..] == bytes[8..]
    {
        return Ok(true);
    }
    // Not the bytes the template predicts (or no template for this shape): build the genesis.
    Ok(crate::record::genesis_hash(header)? == *hash)
}

/// `header`'s genesis change, its bytes and hash, written from the template of its shape when
/// there is one (a copy and a SHA-256: a microsecond), otherwise built through Automerge. A
/// receiver of a record's compact creation ([`crate::wire::WireRecord::expand_creation`])
/// rebuilds the genesis with it.
pub fn genesis_bytes(header: &RecordHeader) -> Result<(Vec<u8>, ChangeHash), RecordError> {
    use sha2::Digest;
    header.validate()?;
    if let Some(template) = template_for(header) {
        let mut bytes = template.patched(header);
        let hash = ChangeHash(sha2::Sha256::digest(&bytes[8..]).into());
        bytes[4..8].copy_from_slice(&hash.0[..4]);
        return Ok((bytes, hash));
    }
    let (doc, bytes) = genesis_change(header)?;
    let hash = doc
        .get_last_local_change()
        .map(|c| c.hash())
        .expect("genesis has a change");
    Ok((bytes, hash))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect_change;
    use proptest::prelude::*;

    fn header(id: u128, kind: &str, campaign: u128, scope: &str) -> RecordHeader {
        RecordHeader {
            id: Uuid::from_u128(id),
            kind: kind.into(),
            campaign: Uuid::from_u128(campaign),
            scope: scope.into(),
        }
    }

    #[test]
    fn a_genesis_is_recognised_and_anything_else_is_not() {
        let h = header(1, "interview", 2, "350102001");
        let (_, bytes) = genesis_change(&h).unwrap();
        let hash = inspect_change(&bytes).unwrap().hash;
        assert!(
            template_for(&h).is_some(),
            "no template for an ordinary header"
        );
        assert!(is_genesis(&h, &bytes, &hash).unwrap());
        // The same bytes are not the genesis of another record of the same shape.
        let other = header(3, "interview", 2, "350102001");
        assert!(!is_genesis(&other, &bytes, &hash).unwrap());
        // Nor of a record in another village, or of another kind.
        assert!(!is_genesis(&header(1, "interview", 2, "350102002"), &bytes, &hash).unwrap());
        assert!(!is_genesis(&header(1, "meeting", 2, "350102001"), &bytes, &hash).unwrap());
        // One byte of a value changed: neither the template nor the slow check accepts it.
        let mut bad = bytes.clone();
        let at = unique_position(&bad, b"350102001").unwrap();
        bad[at] = b'4';
        let bad_hash = crate::quick_hash(&bad).unwrap();
        assert!(!is_genesis(&h, &bad, &bad_hash).unwrap());
    }

    #[test]
    fn the_scope_campaign_which_is_also_a_key_name_still_works() {
        // "campaign" occurs as a key and as the scope value: the template is located by the
        // run of values, not by the scope alone.
        let h = header(7, "work_group", 8, "campaign");
        let (_, bytes) = genesis_change(&h).unwrap();
        let hash = inspect_change(&bytes).unwrap().hash;
        assert!(is_genesis(&h, &bytes, &hash).unwrap());
        let next = header(9, "work_group", 8, "campaign");
        let (_, next_bytes) = genesis_change(&next).unwrap();
        let next_hash = inspect_change(&next_bytes).unwrap().hash;
        assert!(is_genesis(&next, &next_bytes, &next_hash).unwrap());
        assert!(!is_genesis(&next, &bytes, &hash).unwrap());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The patched template is byte for byte the genesis Automerge writes, for any header, and so
        /// is `genesis_bytes`.
        #[test]
        fn patched_templates_equal_automerge_genesis(
            id in any::<u128>(),
            campaign in any::<u128>(),
            kind in "[a-z_][a-z0-9_]{0,20}",
            scope in "[A-Za-z0-9_.:-]{1,24}",
        ) {
            let h = header(id, &kind, campaign, &scope);
            let (_, bytes) = genesis_change(&h).unwrap();
            let t = template_for(&h);
            prop_assert!(t.is_some(), "no template for {:?}", h);
            prop_assert_eq!(&t.unwrap().patched(&h)[8..], &bytes[8..]);
            let hash = inspect_change(&bytes).unwrap().hash;
            prop_assert!(is_genesis(&h, &bytes, &hash).unwrap());
            // What a receiver of a compact creation rebuilds, checksum included.
            prop_assert_eq!(genesis_bytes(&h).unwrap(), (bytes, hash));
        }
    }
}
