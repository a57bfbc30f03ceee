//! A record's creation in its compact wire form (`created`): the change that writes a new
//! record's first values, without what a receiver rebuilds from the record's header.
//!
//! A record created offline travels as two changes: its genesis, which is deterministic from the
//! header (docs/PROTOCOL.md, "The genesis change"), and a change whose only dependency is the
//! genesis's hash and whose only other actor is the genesis's (its values go into the `fields`
//! map the genesis made). Neither the genesis (about 190 bytes), nor that hash (32 random bytes,
//! which gzip cannot shrink), nor the genesis actor (16 more) tells the receiver anything it
//! does not know from the header; together they were a quarter of the bytes of a first sync.
//! The compact form is the first change's checksum and its chunk body without those two:
//!
//! ```text
//! change chunk:  magic(4) checksum(4) type=1 uleb(body length) body
//! body:          uleb(1) genesis-hash(32) head uleb(1) uleb(16) genesis-actor(16) rest
//! head:          uleb(actor length) actor uleb(seq) uleb(start op) sleb(time)
//!                uleb(message length) message
//! created:       checksum(4) head rest
//! ```
//!
//! The receiver builds the genesis from the header ([`crate::genesis::genesis_bytes`]) and
//! writes the chunk back byte for byte; then it checks both changes as it checks any other: the
//! checksum (4 bytes of the SHA-256) is now of the rebuilt bytes, so an altered or misplaced
//! `created` fails as a corrupted change does, and the hash the receiver computes is of what it
//! stores. Nothing is trusted that was not before.

use automerge::ChangeHash;
use serde_bytes::ByteBuf;

use super::{WireError, WireRecord};
use crate::change::{CHANGE_CHUNK, MAGIC};
use crate::record::RecordHeader;

/// The bytes of a one-dependency list: its count (1) and the hash.
const ONE_DEPENDENCY: usize = 1 + 32;
/// A one-actor list of the genesis actor: its count (1), its length (16), the actor.
const ONE_OTHER_ACTOR: [u8; 2] = [1, 16];

/// What a receiver knows of a record's genesis from its header.
struct Genesis {
    bytes: Vec<u8>,
    hash: ChangeHash,
    actor: [u8; 16],
}

impl Genesis {
    fn of(header: &RecordHeader) -> Result<Genesis, crate::record::RecordError> {
        let (bytes, hash) = crate::genesis::genesis_bytes(header)?;
        let actor = crate::record::genesis_actor(header)
            .to_bytes()
            .try_into()
            .expect("a genesis actor is a UUID");
        Ok(Genesis { bytes, hash, actor })
    }
}

/// The length of a change body's head (see the module's text): from its author's actor to the
/// end of its message.
fn head_len(body: &[u8]) -> Option<usize> {
    let mut r = body;
    let skip = |r: &mut &[u8]| -> Option<()> {
        let n = usize::try_from(leb128::read::unsigned(r).ok()?).ok()?;
        *r = r.get(n..)?;
        Some(())
    };
    skip(&mut r)?;
    leb128::read::unsigned(&mut r).ok()?;
    leb128::read::unsigned(&mut r).ok()?;
    leb128::read::signed(&mut r).ok()?;
    skip(&mut r)?;
    Some(body.len() - r.len())
}

/// The first change's chunk rebuilt from its compact form.
fn rebuild(created: &[u8], genesis: &Genesis) -> Option<Vec<u8>> {
    let (checksum, compact) = (created.get(..4)?, &created[4..]);
    let (head, rest) = compact.split_at(head_len(compact)?);
    let body = ONE_DEPENDENCY + compact.len() + ONE_OTHER_ACTOR.len() + genesis.actor.len();
    let mut out = Vec::with_capacity(9 + 10 + body);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(checksum);
    out.push(CHANGE_CHUNK);
    leb128::write::unsigned(&mut out, body as u64).expect("writing into a Vec cannot fail");
    out.push(1);
    out.extend_from_slice(&genesis.hash.0);
    out.extend_from_slice(head);
    out.extend_from_slice(&ONE_OTHER_ACTOR);
    out.extend_from_slice(&genesis.actor);
    out.extend_from_slice(rest);
    Some(out)
}

/// Whether `chunk` is an uncompressed change whose dependency list is empty (as a genesis's is).
fn depends_on_nothing(chunk: &[u8]) -> bool {
    if chunk.len() < 10 || chunk[..4] != MAGIC || chunk[8] != CHANGE_CHUNK {
        return false;
    }
    let mut body = &chunk[9..];
    leb128::read::unsigned(&mut body).is_ok() && body.first() == Some(&0)
}

/// The compact form of `first` if it is an uncompressed change whose only dependency is the
/// genesis, whose only other actor is the genesis's, and whose chunk [`rebuild`] writes back
/// exactly (a number not in its shortest form would not be).
fn compact(first: &[u8], genesis: &Genesis) -> Option<Vec<u8>> {
    if first.len() < 10 || first[..4] != MAGIC || first[8] != CHANGE_CHUNK {
        return None;
    }
    let mut body = &first[9..];
    leb128::read::unsigned(&mut body).ok()?;
    if body.first() != Some(&1) || body.get(1..ONE_DEPENDENCY)? != genesis.hash.0.as_slice() {
        return None;
    }
    let body = &body[ONE_DEPENDENCY..];
    let head = head_len(body)?;
    let others = body.get(head..head + ONE_OTHER_ACTOR.len() + genesis.actor.len())?;
    if others[..2] != ONE_OTHER_ACTOR || others[2..] != genesis.actor {
        return None;
    }
    let created = [&first[4..8], &body[..head], &body[head + others.len()..]].concat();
    (rebuild(&created, genesis)?.as_slice() == first).then_some(created)
}

impl super::PushRequest {
    /// Puts every record's creation it can into its compact form
    /// ([`WireRecord::compact_creation`]) and, if any, marks the push [`super::COMPACT_VERSION`]
    /// (a server that reads only version 1 then refuses it instead of ignoring `created`).
    /// Returns how many records went compact.
    pub fn compact_creations(&mut self) -> usize {
        let mut n = 0;
        for record in &mut self.records {
            if let Ok(header) = record.header()
                && record.compact_creation(&header)
            {
                n += 1;
            }
        }
        if n > 0 {
            self.v = super::COMPACT_VERSION;
        }
        n
    }
}

impl WireRecord {
    /// Sends the record's creation in its compact form: when `changes` holds this header's
    /// genesis and a change depending on the genesis alone, both leave `changes` and the second
    /// goes into `created`. Records with relay tags are left as they are. Returns whether it
    /// did; a receiver that does not read `created` must not be sent the result (a push with it
    /// says [`super::COMPACT_VERSION`]; a pull page only when asked for).
    pub fn compact_creation(&mut self, header: &RecordHeader) -> bool {
        if self.created.is_some() || !self.tags.is_empty() || self.changes.len() < 2 {
            return false;
        }
        // No change without dependencies, no genesis: nothing to rebuild (most records of a
        // page of edits), so the genesis is not built for them.
        if !self.changes.iter().any(|c| depends_on_nothing(c)) {
            return false;
        }
        let Ok(genesis) = Genesis::of(header) else {
            return false;
        };
        let Some(g) = self.changes.iter().position(|c| **c == genesis.bytes) else {
            return false;
        };
        let Some((f, created)) = self
            .changes
            .iter()
            .enumerate()
            .find_map(|(i, c)| compact(c, &genesis).map(|created| (i, created)))
        else {
            return false;
        };
        self.created = Some(ByteBuf::from(created));
        let (first, second) = (g.max(f), g.min(f));
        self.changes.remove(first);
        self.changes.remove(second);
        true
    }

    /// Undoes [`WireRecord::compact_creation`]: puts the genesis of `header` (the record's own,
    /// parsed from this record) and the change rebuilt from `created` in front of `changes`, in
    /// that order, with no tag. The rebuilt changes are not checked here; check them as any
    /// other received change.
    pub fn expand_creation(&mut self, header: &RecordHeader) -> Result<(), WireError> {
        let Some(created) = self.created.take() else {
            return Ok(());
        };
        let invalid = |reason: String| WireError::Creation {
            id: self.id.clone(),
            reason,
        };
        let genesis = Genesis::of(header).map_err(|e| invalid(e.to_string()))?;
        let first = rebuild(&created, &genesis).ok_or_else(|| {
            invalid(format!(
                "its {} bytes are not a 4-byte checksum and a change's head (actor, sequence \
                 number, first operation, time, message)",
                created.len()
            ))
        })?;
        if !self.tags.is_empty() {
            self.tags.splice(0..0, [ByteBuf::new(), ByteBuf::new()]);
        }
        self.changes
            .splice(0..0, [ByteBuf::from(genesis.bytes), ByteBuf::from(first)]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{creation, inspect_change};
    use uuid::Uuid;

    fn header(n: u128) -> RecordHeader {
        RecordHeader {
            id: Uuid::from_u128(n),
            kind: "interview".into(),
            campaign: Uuid::from_u128(7),
            scope: "350102001".into(),
        }
    }

    /// A record as a device creates it: its genesis and first change, as chunks.
    fn created_record(n: u128) -> (RecordHeader, Vec<Vec<u8>>) {
        let h = header(n);
        let fields = [
            ("name", crate::FieldValue::Str("张三".into())),
            ("note", crate::FieldValue::Text("村里修了路".into())),
        ];
        let actor = automerge::ActorId::from(Uuid::from_u128(n + 1000).into_bytes());
        let made = creation::create(&h, &actor, 1_700_000_000_000, &fields).unwrap();
        let changes = made.changes().map(|c| c.raw_bytes().to_vec()).collect();
        (h, changes)
    }

    fn wire(h: &RecordHeader, changes: &[Vec<u8>]) -> WireRecord {
        let mut r = WireRecord::new(h);
        r.changes = changes.iter().cloned().map(ByteBuf::from).collect();
        r
    }

    #[test]
    fn a_creation_goes_compact_and_comes_back_byte_for_byte() {
        let (h, changes) = created_record(1);
        let mut r = wire(&h, &changes);
        assert!(r.compact_creation(&h));
        assert!(r.changes.is_empty());
        let created = r.created.clone().unwrap();
        // The genesis, the 32-byte hash and the genesis actor are gone, and the chunk's
        // framing: the magic bytes, the chunk type and the body's length (two bytes here).
        assert_eq!(
            changes.iter().map(Vec::len).sum::<usize>() - created.len(),
            changes[0].len() + 4 + 1 + 2 + ONE_DEPENDENCY + 2 + 16,
            "{} and {} bytes became {}",
            changes[0].len(),
            changes[1].len(),
            created.len()
        );
        r.expand_creation(&h).unwrap();
        assert_eq!(r, wire(&h, &changes));
        // Through CBOR, as it travels.
        let mut r = wire(&h, &changes);
        r.compact_creation(&h);
        let mut back: WireRecord = crate::wire::decode(&crate::wire::encode(&r), "record").unwrap();
        back.expand_creation(&h).unwrap();
        assert_eq!(back.changes, wire(&h, &changes).changes);
    }

    #[test]
    fn later_changes_and_tags_stay_where_they_belong() {
        let (h, mut changes) = created_record(2);
        // Given in another order, with an unrelated change (another record's first change,
        // standing in for a later edit: it does not depend on this genesis) between them.
        let (_, other) = created_record(3);
        changes.reverse();
        changes.insert(1, other[1].clone());
        let mut r = wire(&h, &changes);
        assert!(r.compact_creation(&h));
        assert_eq!(r.changes, vec![ByteBuf::from(other[1].clone())]);
        r.expand_creation(&h).unwrap();
        assert_eq!(
            r.changes,
            [&changes[2], &changes[0], &other[1]]
                .map(|c| ByteBuf::from(c.clone()))
                .to_vec()
        );
        // Tags of the other changes keep their place; the rebuilt two have none.
        let mut tagged = wire(&h, &changes[1..2]);
        tagged.created = {
            let mut c = wire(&h, &[changes[2].clone(), changes[0].clone()]);
            c.compact_creation(&h);
            c.created
        };
        tagged.tags = vec![ByteBuf::from(vec![9u8; 32])];
        tagged.expand_creation(&h).unwrap();
        assert_eq!(tagged.tags.len(), 3);
        assert!(tagged.tags[0].is_empty() && tagged.tags[1].is_empty());
        assert_eq!(tagged.tags[2].len(), 32);
    }

    #[test]
    fn what_is_not_a_creation_is_sent_as_it_is() {
        let (h, changes) = created_record(4);
        // The genesis alone, the first change alone, another record's creation, tagged changes.
        for (header, list, tags) in [
            (&h, vec![changes[0].clone()], vec![]),
            (&h, vec![changes[1].clone()], vec![]),
            (&header(5), changes.clone(), vec![]),
            (&h, changes.clone(), vec![ByteBuf::new(), ByteBuf::new()]),
        ] {
            let mut r = wire(header, &list);
            r.tags = tags;
            let before = r.clone();
            assert!(!r.compact_creation(header));
            assert_eq!(r, before);
        }
        // A change whose length is not written in its shortest form cannot be rebuilt exactly.
        let first = &changes[1];
        let mut rest = &first[9..];
        let len = leb128::read::unsigned(&mut rest).unwrap();
        let mut padded = first[..9].to_vec();
        // The same length in three bytes instead of two.
        assert!((128..1 << 14).contains(&len));
        padded.extend_from_slice(&[(len as u8 & 0x7f) | 0x80, (len >> 7) as u8 | 0x80, 0]);
        padded.extend_from_slice(rest);
        let genesis = Genesis::of(&h).unwrap();
        assert_eq!(genesis.hash, inspect_change(&changes[0]).unwrap().hash);
        assert_eq!(compact(&padded, &genesis), None);
        assert!(compact(first, &genesis).is_some());
    }

    #[test]
    fn a_compact_creation_too_short_or_altered_is_refused() {
        let (h, changes) = created_record(6);
        let mut r = wire(&h, &[]);
        r.created = Some(ByteBuf::from(vec![1, 2, 3]));
        let e = r.expand_creation(&h).unwrap_err().to_string();
        assert!(e.contains("4-byte checksum"), "{e}");
        // A head that claims more than there is.
        r.created = Some(ByteBuf::from(vec![1, 2, 3, 4, 16, 0]));
        assert!(r.expand_creation(&h).is_err());
        // One byte altered: rebuilt, and refused by the change checks as any corrupted change.
        let mut r = wire(&h, &changes);
        r.compact_creation(&h);
        let mut created = r.created.take().unwrap().into_vec();
        let last = created.len() - 1;
        created[last] ^= 1;
        r.created = Some(ByteBuf::from(created));
        r.expand_creation(&h).unwrap();
        assert!(inspect_change(&r.changes[0]).is_ok());
        assert!(inspect_change(&r.changes[1]).is_err());
    }
}
