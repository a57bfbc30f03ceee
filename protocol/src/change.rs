//! Decoding and checking one Automerge change before it is stored or applied.

use automerge::{ActorId, Change, ChangeHash};

mod bounds;
pub(crate) mod ops;
pub use bounds::MAX_OPS;

/// What was wrong with bytes that were supposed to be one Automerge change.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChangeError {
    /// Too short, wrong magic bytes, or a chunk that does not parse as a change.
    #[error("not an Automerge change: {0}")]
    NotAChange(String),
    /// The chunk parsed but its checksum does not match its content (corrupted in transit).
    #[error("the change's checksum does not match its content (corrupted bytes)")]
    BadChecksum,
}

/// The checked facts of one change.
#[derive(Debug, Clone)]
pub struct ChangeInfo {
    /// The change's hash (its identity).
    pub hash: ChangeHash,
    /// The actor that wrote it.
    pub actor: ActorId,
    /// Its sequence number for that actor within its document.
    pub seq: u64,
    /// The hashes of the changes it depends on.
    pub deps: Vec<ChangeHash>,
    /// When it was committed, in milliseconds since the Unix epoch as claimed by its author.
    pub time: i64,
    /// The decoded change.
    pub change: Change,
}

/// The magic bytes every Automerge chunk starts with.
pub(crate) const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
/// The chunk type of an uncompressed change (0 is a document, 2 a deflated change).
pub(crate) const CHANGE_CHUNK: u8 = 1;

/// Decodes `bytes` as exactly one uncompressed Automerge change chunk and verifies its checksum.
///
/// Before Automerge sees the bytes, every length and count they claim is checked against their
/// size ([`MAX_OPS`]), so a hostile chunk costs no more memory or time than its own length.
pub fn inspect_change(bytes: &[u8]) -> Result<ChangeInfo, ChangeError> {
    if bytes.len() < 9 || bytes[..4] != MAGIC {
        return Err(ChangeError::NotAChange(
            "it does not start with the Automerge magic bytes".into(),
        ));
    }
    if bytes[8] != CHANGE_CHUNK {
        return Err(ChangeError::NotAChange(format!(
            "its chunk type is {}, not an uncompressed change (1): send each change's raw bytes",
            bytes[8]
        )));
    }
    bounds::check(bytes).map_err(ChangeError::NotAChange)?;
    let change = Change::try_from(bytes).map_err(|e| ChangeError::NotAChange(e.to_string()))?;
    let hash = change.hash();
    if bytes[4..8] != hash.0[..4] {
        return Err(ChangeError::BadChecksum);
    }
    // Automerge reads the bytes after a change's columns as an author's footer and asserts, when
    // it adds the change to a document, that only an actor's first change names an author: such
    // a chunk would panic whatever applies it (the server's merge, a device's pull).
    if change.seq() != 1 && change.author().is_some() {
        return Err(ChangeError::NotAChange(
            "only an actor's first change (sequence number 1) may name an author".into(),
        ));
    }
    Ok(ChangeInfo {
        hash,
        actor: change.actor_id().clone(),
        seq: change.seq(),
        deps: change.deps().to_vec(),
        time: change.timestamp(),
        change,
    })
}

/// The hash of an uncompressed change chunk, computed without decoding it (SHA-256 of the chunk
/// after its magic bytes and checksum, as Automerge defines it). `None` for anything else; use
/// [`inspect_change`] to decode and verify. Cheap enough to deduplicate before decoding.
pub fn quick_hash(bytes: &[u8]) -> Option<ChangeHash> {
    use sha2::Digest;
    if bytes.len() < 10 || bytes[..4] != MAGIC || bytes[8] != CHANGE_CHUNK {
        return None;
    }
    Some(ChangeHash(sha2::Sha256::digest(&bytes[8..]).into()))
}

/// The checks of [`inspect_change`] that need no Automerge (magic bytes, chunk type, every
/// claimed length and count against the chunk's size, the checksum), and the chunk's hash.
/// What the operations mean is for the caller to read ([`crate::fresh::read_new_bytes`]).
pub(crate) fn check_unparsed(bytes: &[u8]) -> Option<ChangeHash> {
    let hash = quick_hash(bytes)?;
    if bytes[4..8] != hash.0[..4] {
        return None;
    }
    bounds::check(bytes).ok()?;
    Some(hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::{Automerge, ROOT, transaction::Transactable};

    fn sample() -> Vec<u8> {
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        tx.put(ROOT, "note", "村集体经济收入").unwrap();
        tx.commit();
        doc.get_last_local_change().unwrap().raw_bytes().to_vec()
    }

    #[test]
    fn a_valid_change_is_inspected() {
        let bytes = sample();
        let info = inspect_change(&bytes).unwrap();
        assert_eq!(info.seq, 1);
        assert!(info.deps.is_empty());
        assert_eq!(info.change.raw_bytes(), &bytes[..]);
        assert_eq!(quick_hash(&bytes), Some(info.hash));
        assert_eq!(quick_hash(b"short"), None);
    }

    /// `chunk` with `extra` appended to its body, its length and checksum made right again.
    fn with_extra_bytes(chunk: &[u8], extra: &[u8]) -> Vec<u8> {
        use sha2::Digest;
        let mut rest = &chunk[9..];
        let len = leb128::read::unsigned(&mut rest).unwrap() as usize;
        let mut body = rest[..len].to_vec();
        body.extend_from_slice(extra);
        let mut out = chunk[..9].to_vec();
        leb128::write::unsigned(&mut out, body.len() as u64).unwrap();
        out.extend_from_slice(&body);
        let hash = sha2::Sha256::digest(&out[8..]);
        out[4..8].copy_from_slice(&hash[..4]);
        out
    }

    #[test]
    fn an_author_on_a_later_change_is_refused_before_automerge_would_panic_on_it() {
        let mut doc = Automerge::new();
        for note in ["一", "二"] {
            let mut tx = doc.transaction();
            tx.put(ROOT, "note", note).unwrap();
            tx.commit();
        }
        let first = doc.get_changes(&[])[0].raw_bytes().to_vec();
        let second = doc.get_last_local_change().unwrap().raw_bytes().to_vec();
        // Footer kind 1 (an author), 3 bytes long.
        let footer = [1, 3, 0xaa, 0xbb, 0xcc];

        // The same bytes on an actor's first change are an author Automerge accepts.
        let authored = with_extra_bytes(&first, &footer);
        let info = inspect_change(&authored).unwrap();
        assert!(info.change.author().is_some());

        let hostile = with_extra_bytes(&second, &footer);
        // What is refused would have panicked: Automerge asserts on it when applying.
        let panicked = std::panic::catch_unwind(|| {
            let mut other = Automerge::new();
            let _ = other.load_incremental(&first);
            let _ = other.load_incremental(&hostile);
        });
        assert!(panicked.is_err(), "Automerge no longer panics on it");
        let err = inspect_change(&hostile).unwrap_err();
        assert!(err.to_string().contains("sequence number 1"), "{err}");

        // Extra bytes that are not an author's footer stay allowed (they are Automerge's room
        // for later formats).
        assert!(inspect_change(&with_extra_bytes(&second, &[7, 1, 0])).is_ok());
    }

    #[test]
    fn every_single_flipped_byte_is_refused() {
        let bytes = sample();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x41;
            assert!(
                inspect_change(&bad).is_err(),
                "flipping byte {i} went unnoticed"
            );
        }
    }

    #[test]
    fn truncated_and_extended_bytes_are_refused() {
        let bytes = sample();
        for n in 0..bytes.len() {
            assert!(
                inspect_change(&bytes[..n]).is_err(),
                "prefix of {n} bytes accepted"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(inspect_change(&longer).is_err());
        assert!(matches!(
            inspect_change(b"{\"json\": true}"),
            Err(ChangeError::NotAChange(_))
        ));
    }
}
