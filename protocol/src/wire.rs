//! The sync messages, their CBOR encoding and gzip bodies. `docs/PROTOCOL.md` is the prose
//! version of this module; keep the two in step.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_bytes::ByteBuf;

use crate::record::{RecordError, RecordHeader};

mod bounded;
mod created;
pub use bounded::{Bound, DecodeLimits, MAX_ID_BYTES};

/// The protocol version every message carries in its `v` field.
pub const PROTOCOL_VERSION: u32 = 1;
/// The version of a push that may carry records in their compact creation form
/// ([`WireRecord::created`]). A server that speaks only version 1 refuses such a push whole
/// (400), and a client sends the same batch again as version 1; a server that reads it would
/// otherwise never see what an older one ignored. Pull pages carry `created` only to a client
/// that asks for it ([`PullQuery::created`]).
pub const COMPACT_VERSION: u32 = 2;
/// The media type of sync request and response bodies.
pub const CBOR_CONTENT_TYPE: &str = "application/cbor";
/// The push endpoint.
pub const PUSH_PATH: &str = "/v1/sync/push";
/// The pull endpoint.
pub const PULL_PATH: &str = "/v1/sync/pull";
/// The largest push body the server accepts once decompressed.
pub const MAX_PUSH_BYTES: usize = 16 << 20;
/// The most records one push may carry (the server answers 413 `too_many_records` beyond it).
pub const MAX_PUSH_RECORDS: usize = 5_000;
/// The largest compressed push body the server accepts.
pub const MAX_COMPRESSED_PUSH_BYTES: usize = 16 << 20;
/// The most change bytes a client puts in one push (a batch); the rest goes in further pushes.
pub const DEFAULT_PUSH_BATCH_BYTES: usize = 2 << 20;
/// The default, smallest and largest size of one pull page (change bytes).
pub const DEFAULT_PAGE_BYTES: usize = 1 << 20;
/// See [`DEFAULT_PAGE_BYTES`].
pub const MIN_PAGE_BYTES: usize = 16 << 10;
/// See [`DEFAULT_PAGE_BYTES`].
pub const MAX_PAGE_BYTES: usize = 8 << 20;

/// A record's header and some of its changes, as sent in a push or a pull page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireRecord {
    /// The record id: a lowercase hyphenated UUID.
    #[serde(deserialize_with = "bounded::string")]
    pub id: String,
    /// The record kind.
    #[serde(deserialize_with = "bounded::string")]
    pub kind: String,
    /// The campaign id: a lowercase hyphenated UUID.
    #[serde(deserialize_with = "bounded::string")]
    pub campaign: String,
    /// The record's scope (place code).
    #[serde(deserialize_with = "bounded::string")]
    pub scope: String,
    /// Raw Automerge change chunks, in an order where a change's dependencies in this list come
    /// before it.
    #[serde(deserialize_with = "bounded::changes")]
    pub changes: Vec<ByteBuf>,
    /// The record's creation in its compact form: the change that wrote its first values,
    /// without its framing and its one dependency, the genesis, which is left out of `changes`
    /// too (see [`WireRecord::expand_creation`] and docs/PROTOCOL.md, "A record's creation").
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "bounded::created"
    )]
    pub created: Option<ByteBuf>,
    /// Tags of relayed changes (see [`crate::auth::change_tag`]): empty, or one entry per change
    /// in `changes`, each either empty (no tag) or [`crate::auth::TAG_BYTES`] long. Only pushes
    /// and bundles carry them.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "bounded::tags"
    )]
    pub tags: Vec<ByteBuf>,
}

impl WireRecord {
    /// A wire record for `header` with no changes yet.
    pub fn new(header: &RecordHeader) -> Self {
        WireRecord {
            id: header.id.hyphenated().to_string(),
            kind: header.kind.clone(),
            campaign: header.campaign.hyphenated().to_string(),
            scope: header.scope.clone(),
            changes: Vec::new(),
            created: None,
            tags: Vec::new(),
        }
    }

    /// Parses and checks the header strings.
    pub fn header(&self) -> Result<RecordHeader, RecordError> {
        RecordHeader::parse(&self.id, &self.kind, &self.campaign, &self.scope)
    }
}

/// `POST /v1/sync/push` body: changes the device has that the server has not acknowledged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushRequest {
    /// [`PROTOCOL_VERSION`].
    pub v: u32,
    /// The pushing device's id (lowercase hyphenated UUID).
    #[serde(deserialize_with = "bounded::string")]
    pub device: String,
    /// The actor ids (16 bytes each) this device writes with that appear in this push. Changes by
    /// other actors in the push are relayed (received from another device) or genesis changes.
    #[serde(deserialize_with = "bounded::actors")]
    pub actors: Vec<ByteBuf>,
    /// The records and their changes.
    #[serde(deserialize_with = "bounded::records")]
    pub records: Vec<WireRecord>,
}

/// Response to a push that was stored, except for the records listed in `rejected`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushResponse {
    /// [`PROTOCOL_VERSION`].
    pub v: u32,
    /// Changes stored for the first time.
    pub stored: u64,
    /// Changes the server already had (delivered twice; harmless).
    pub duplicates: u64,
    /// The server's newest sequence number after this push.
    pub head: u64,
    /// Records of the push that the server refused, each with why; none of their changes was
    /// stored, every other record's were. The device keeps their changes unacknowledged (they
    /// are sent again next time) and shows the reasons to its user.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<RejectedRecord>,
}

/// A record of a push that the server refused while storing the rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedRecord {
    /// The record's id.
    pub id: String,
    /// A stable snake_case code: `header_mismatch` (the server holds this id with another kind,
    /// campaign or place), `duplicate_sequence_number` (an actor id was reused),
    /// `unverified_relay` (another device's change without its tag), `singleton_without_key`, `singleton_id_mismatch`, `singleton_scope_mismatch` or
    /// `unknown_reference` (a record that must exist once per key does not follow from its key).
    pub code: String,
    /// What is wrong, Chinese first.
    pub message: String,
}

/// `GET /v1/sync/pull` query: the device and where it is in the server's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullQuery {
    /// The pulling device's id.
    pub device: String,
    /// The sequence number of the last change the device has seen (0 for none).
    #[serde(default)]
    pub after: u64,
    /// Hex of the hash of the change at `after`, as the server reported it (absent when
    /// `after` is 0). Lets the server notice it no longer has the log the device saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_hash: Option<String>,
    /// The most change bytes wanted in this page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<usize>,
    /// Also return changes this device pushed itself (used to recover after a restore).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub include_own: bool,
    /// The device reads records' creations in their compact form ([`WireRecord::created`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub created: bool,
}

/// Response to a pull: one page of the server's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullResponse {
    /// [`PROTOCOL_VERSION`].
    pub v: u32,
    /// True when the server does not have the log position the device sent (it was restored from
    /// a backup or replaced): the device must re-push everything it has and pull from 0.
    pub reset: bool,
    /// The server's newest sequence number.
    pub head: u64,
    /// The cursor to send as `after` next time.
    pub next: u64,
    /// The hash of the change at `next` (absent when `next` is 0), to send as `after_hash`.
    pub next_hash: Option<ByteBuf>,
    /// True when more changes follow `next`: pull again straight away.
    pub more: bool,
    /// How many changes the server holds that this device pushed first. A device that
    /// remembers fewer acknowledged pushes than this has lost data (restored from a backup) and
    /// should pull again from 0 with `include_own`.
    pub pushed_by_you: u64,
    /// The changes of this page, grouped by record.
    #[serde(deserialize_with = "bounded::records")]
    pub records: Vec<WireRecord>,
    /// What this device may see and write now. A device drops the records it no longer sees
    /// (keeping any it has not uploaded yet) and, when the scope grew, pulls again from 0.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "bounded::scope"
    )]
    pub scope: Option<crate::auth::WireScope>,
    /// The server log's epoch: an id that stays the same for the life of the log and changes
    /// only when an administrator declares the server restored from a backup. A device that
    /// sees a different epoch than the one it stored with its cursor treats the answer like
    /// `reset` (the log it saw is gone: re-push everything, pull from 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
}

/// What a bundle file says it is (so that a state file is not imported as a bundle).
pub const BUNDLE_FORMAT: &str = "fieldsync-bundle";
/// What a state file says it is.
pub const STATE_FORMAT: &str = "fieldsync-state";
/// The largest bundle accepted, once decompressed.
pub const MAX_BUNDLE_BYTES: usize = 512 << 20;

/// A file of changes carried from one device to another without the server (USB stick,
/// Bluetooth, a chat app): gzip-compressed CBOR.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bundle {
    /// Always [`BUNDLE_FORMAT`].
    #[serde(deserialize_with = "bounded::string")]
    pub format: String,
    /// Protocol version.
    pub v: u32,
    /// The device that wrote it.
    #[serde(deserialize_with = "bounded::string")]
    pub device: String,
    /// When it was written (ms since the Unix epoch).
    pub created_at: i64,
    /// The writer's local log position at the time: `--since` this on the next export.
    pub last_seq: i64,
    /// The changes, grouped by record, each record's in an order where dependencies come first.
    #[serde(deserialize_with = "bounded::records")]
    pub records: Vec<WireRecord>,
}

/// What a device holds (every change hash), so that another can export only what it lacks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleState {
    /// Always [`STATE_FORMAT`].
    #[serde(deserialize_with = "bounded::string")]
    pub format: String,
    /// Protocol version.
    pub v: u32,
    /// The device it describes.
    #[serde(deserialize_with = "bounded::string")]
    pub device: String,
    /// The hashes of every change it holds.
    #[serde(deserialize_with = "bounded::hashes")]
    pub hashes: Vec<ByteBuf>,
}

/// The JSON body of every error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong, for machines (`code`) and people (`message`, `hint`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// A stable snake_case code, such as `invalid_change`.
    pub code: String,
    /// What was wrong.
    pub message: String,
    /// What to do about it, when there is something to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// A body that could not be read as a sync message.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The body is not valid CBOR of the expected message.
    #[error("the body is not a valid {what} message: {reason}")]
    Decode {
        /// Which message was expected.
        what: &'static str,
        /// What was wrong, in words (truncated, not CBOR, a field of the wrong type).
        reason: String,
    },
    /// The message has more elements (or longer ones) than a bound allows; decoding stopped
    /// there.
    #[error("the {what} message has more than {limit} {bound}")]
    Limit {
        /// Which message it was.
        what: &'static str,
        /// Which bound it passed.
        bound: Bound,
        /// The bound's value.
        limit: usize,
    },
    /// The body is not valid gzip.
    #[error("the body is not valid gzip: {0}")]
    Gzip(String),
    /// The body is larger than allowed once decompressed.
    #[error("the body is larger than {limit} bytes once decompressed")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The message is of a protocol version this side does not speak.
    #[error(
        "protocol version {got} is not supported (this side speaks {PROTOCOL_VERSION}, and \
         {COMPACT_VERSION} for pushes)"
    )]
    Version {
        /// The version received.
        got: u32,
    },
    /// A record's compact creation cannot be written back as changes.
    #[error("the compact creation (created) of record {id} cannot be read: {reason}")]
    Creation {
        /// The record's id.
        id: String,
        /// What is wrong.
        reason: String,
    },
}

/// Encodes a message as CBOR.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(message, &mut out).expect("writing CBOR into a Vec cannot fail");
    out
}

/// Decodes a CBOR message within [`DecodeLimits::BUNDLE`] (the widest bounds); `what` names it
/// in the error. Use [`decode_with`] for a message with tighter bounds (a push, a pull page).
pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &'static str) -> Result<T, WireError> {
    decode_with(bytes, what, DecodeLimits::BUNDLE)
}

/// Decodes a CBOR message, refusing it as soon as it passes one of `limits`.
pub fn decode_with<T: DeserializeOwned>(
    bytes: &[u8],
    what: &'static str,
    limits: DecodeLimits,
) -> Result<T, WireError> {
    decode_from(bytes, what, limits, false, || {
        path_of::<T, _>(bytes, limits)
    })
}

/// Decompresses a gzip body (at most `max_bytes` once decompressed) and decodes the CBOR
/// message in it as it streams out, so that the decompressed body is never held whole.
pub fn decode_gzip<T: DeserializeOwned>(
    bytes: &[u8],
    what: &'static str,
    max_bytes: usize,
    limits: DecodeLimits,
) -> Result<T, WireError> {
    let mut capped = Capped {
        inner: flate2::read::GzDecoder::new(bytes),
        left: max_bytes,
        over: false,
    };
    let inflate = || {
        std::io::BufReader::with_capacity(
            64 << 10,
            Capped {
                inner: flate2::read::GzDecoder::new(bytes),
                left: max_bytes,
                over: false,
            },
        )
    };
    let result = decode_from(
        std::io::BufReader::with_capacity(64 << 10, &mut capped),
        what,
        limits,
        true,
        || path_of::<T, _>(inflate(), limits),
    );
    if matches!(result, Err(WireError::Decode { .. })) && !capped.over {
        // A body too large is told as such even when its start is already garbage: read on
        // (into nothing) to learn whether it passes the limit.
        let _ = std::io::copy(&mut capped, &mut std::io::sink());
    }
    if capped.over {
        return Err(WireError::TooLarge { limit: max_bytes });
    }
    result
}

/// A reader that fails once more than `left` bytes were asked of it.
struct Capped<R> {
    inner: R,
    left: usize,
    over: bool,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let mut one = [0u8; 1];
            if self.inner.read(&mut one)? == 0 {
                return Ok(0);
            }
            self.over = true;
            return Err(std::io::Error::other("the body is too large"));
        }
        let n = buf.len().min(self.left);
        let n = self.inner.read(&mut buf[..n])?;
        self.left -= n;
        Ok(n)
    }
}

/// Where in the message decoding fails (`records[3].id`): a second decode of the same input
/// that tracks the path, run only for an error that needs it (tracking costs ~20% on success).
fn path_of<T: DeserializeOwned, R: Read>(reader: R, limits: DecodeLimits) -> Option<String> {
    let (_, outcome) = bounded::with_limits(limits, || {
        ciborium::from_reader::<bounded::Tracked<T>, _>(reader)
    });
    outcome.path
}

fn decode_from<T: DeserializeOwned, R: Read>(
    reader: R,
    what: &'static str,
    limits: DecodeLimits,
    gzipped: bool,
    path: impl FnOnce() -> Option<String>,
) -> Result<T, WireError> {
    let (result, outcome) = bounded::with_limits(limits, || ciborium::from_reader::<T, _>(reader));
    let error = match result {
        Ok(message) => return Ok(message),
        Err(e) => e,
    };
    if let Some((bound, limit)) = outcome.passed {
        return Err(WireError::Limit { what, bound, limit });
    }
    let path = match error {
        ciborium::de::Error::Semantic(..) => path(),
        _ => None,
    };
    let at = match path.as_deref() {
        None | Some(".") | Some("") => String::new(),
        Some(path) => format!(" (at field {path})"),
    };
    let reason = match error {
        ciborium::de::Error::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            format!("the body ends in the middle of the message (truncated){at}")
        }
        ciborium::de::Error::Io(e) if gzipped => return Err(WireError::Gzip(e.to_string())),
        ciborium::de::Error::Io(e) => format!("the body could not be read: {e}"),
        ciborium::de::Error::Syntax(offset) => {
            format!("the body is not CBOR (malformed at byte {offset})")
        }
        ciborium::de::Error::Semantic(_, message) => format!("{message}{at}"),
        ciborium::de::Error::RecursionLimitExceeded => {
            "the body is nested too deeply (more than 256 levels)".to_string()
        }
    };
    Err(WireError::Decode { what, reason })
}

/// Compresses with gzip at a level that favours speed.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 3),
        flate2::Compression::new(6),
    );
    enc.write_all(bytes)
        .expect("writing into a Vec cannot fail");
    enc.finish().expect("writing into a Vec cannot fail")
}

/// Decompresses gzip, refusing output larger than `limit`.
pub fn gunzip(bytes: &[u8], limit: usize) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::new();
    let mut dec = flate2::read::GzDecoder::new(bytes).take(limit as u64 + 1);
    dec.read_to_end(&mut out)
        .map_err(|e| WireError::Gzip(e.to_string()))?;
    if out.len() > limit {
        return Err(WireError::TooLarge { limit });
    }
    Ok(out)
}

/// Checks a push's protocol version: [`PROTOCOL_VERSION`] or [`COMPACT_VERSION`].
pub fn check_push_version(v: u32) -> Result<(), WireError> {
    if v == PROTOCOL_VERSION || v == COMPACT_VERSION {
        Ok(())
    } else {
        Err(WireError::Version { got: v })
    }
}

/// Checks a message's protocol version.
pub fn check_version(v: u32) -> Result<(), WireError> {
    if v == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(WireError::Version { got: v })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_bytes_stay_bytes() {
        let req = PushRequest {
            v: PROTOCOL_VERSION,
            device: uuid::Uuid::from_u128(5).to_string(),
            actors: vec![ByteBuf::from(vec![1u8; 16])],
            records: vec![WireRecord {
                id: uuid::Uuid::from_u128(6).to_string(),
                kind: "interview".into(),
                campaign: uuid::Uuid::from_u128(7).to_string(),
                scope: "350102001".into(),
                changes: vec![ByteBuf::from(vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3])],
                created: None,
                tags: Vec::new(),
            }],
        };
        let bytes = encode(&req);
        // A byte string of 7 bytes is major type 2 (0x47), not an array of integers.
        assert!(
            bytes
                .windows(8)
                .any(|w| w == [0x47, 0x85, 0x6f, 0x4a, 0x83, 1, 2, 3])
        );
        let back: PushRequest = decode(&bytes, "push").unwrap();
        assert_eq!(back, req);
        let gz = gzip(&bytes);
        assert_eq!(gunzip(&gz, 1 << 20).unwrap(), bytes);
    }

    #[test]
    fn bad_bodies_are_named_errors() {
        let err = decode::<PushRequest>(b"\xa1\x61v\x01", "push").unwrap_err();
        assert!(
            err.to_string().contains("not a valid push message"),
            "{err}"
        );
        assert!(matches!(gunzip(b"not gzip", 100), Err(WireError::Gzip(_))));
        let big = gzip(&vec![0u8; 10_000]);
        assert!(matches!(
            gunzip(&big, 100),
            Err(WireError::TooLarge { limit: 100 })
        ));
        assert!(check_version(2).is_err());
    }

    /// A CBOR array header claiming `n` elements.
    fn array_header(n: u64) -> Vec<u8> {
        let mut out = vec![0x9b];
        out.extend_from_slice(&n.to_be_bytes());
        out
    }

    /// A push whose `actors` array holds `n` empty byte strings.
    fn push_with_actors(n: usize) -> Vec<u8> {
        let mut body = vec![0xa4];
        body.extend_from_slice(b"\x61v\x01");
        body.extend_from_slice(b"\x66device\x60");
        body.extend_from_slice(b"\x66actors");
        body.extend(array_header(n as u64));
        body.extend(std::iter::repeat_n(0x40, n));
        body.extend_from_slice(b"\x67records\x80");
        body
    }

    #[test]
    fn arrays_past_a_bound_are_refused_while_decoding() {
        let ok: PushRequest = decode_with(&push_with_actors(1_024), "push", DecodeLimits::PUSH)
            .expect("1024 actors are allowed");
        assert_eq!(ok.actors.len(), 1_024);
        let err = decode_with::<PushRequest>(&push_with_actors(1_025), "push", DecodeLimits::PUSH)
            .unwrap_err();
        assert!(
            matches!(
                err,
                WireError::Limit {
                    bound: Bound::Actors,
                    limit: 1_024,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "the push message has more than 1024 actor ids"
        );
        // A header claiming 2^32 actors with none behind it: refused as truncated, without
        // reserving room for them.
        let mut claim = push_with_actors(0);
        let at = claim.windows(6).position(|w| w == b"actors").unwrap() + 6;
        claim.splice(at..at + 9, array_header(1 << 32));
        claim.truncate(at + 9);
        let err = decode_with::<PushRequest>(&claim, "push", DecodeLimits::PUSH).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        // The whole-message budget counts across records.
        let record = WireRecord {
            id: "a".into(),
            kind: "k".into(),
            campaign: "c".into(),
            scope: "s".into(),
            changes: vec![ByteBuf::from(vec![1u8]); 10],
            created: None,
            tags: Vec::new(),
        };
        let bundle = Bundle {
            format: BUNDLE_FORMAT.into(),
            v: PROTOCOL_VERSION,
            device: "d".into(),
            created_at: 0,
            last_seq: 0,
            records: vec![record; 20],
        };
        let tight = DecodeLimits {
            items: 100,
            ..DecodeLimits::BUNDLE
        };
        let err = decode_with::<Bundle>(&encode(&bundle), "bundle", tight).unwrap_err();
        assert!(
            matches!(
                err,
                WireError::Limit {
                    bound: Bound::Items,
                    limit: 100,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(decode::<Bundle>(&encode(&bundle), "bundle").is_ok());
        let long = WireRecord {
            scope: "x".repeat(300),
            ..bundle.records[0].clone()
        };
        let err = decode::<WireRecord>(&encode(&long), "record").unwrap_err();
        assert!(
            matches!(
                err,
                WireError::Limit {
                    bound: Bound::StringBytes,
                    limit: 256,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn decoder_errors_are_told_in_words() {
        let req = PushRequest {
            v: PROTOCOL_VERSION,
            device: "d".into(),
            actors: Vec::new(),
            records: Vec::new(),
        };
        let bytes = encode(&req);
        let truncated = decode::<PushRequest>(&bytes[..bytes.len() - 3], "push").unwrap_err();
        let not_cbor = decode::<PushRequest>(b"\xfc\xfd", "push").unwrap_err();
        let mut wrong = bytes.clone();
        let at = wrong.windows(6).position(|w| w == b"device").unwrap() + 6;
        wrong[at] = 0x05; // the integer 5 where the device id string was
        wrong.remove(at + 1);
        let wrong_type = decode::<PushRequest>(&wrong, "push").unwrap_err();
        for (err, words) in [
            (&truncated, "truncated"),
            (&not_cbor, "not CBOR"),
            (&wrong_type, "at field device"),
        ] {
            let text = err.to_string();
            assert!(text.contains(words), "{text}");
            for debug in ["Io(", "Error {", "kind:", "Semantic(", "Syntax("] {
                assert!(!text.contains(debug), "{text}");
            }
        }
        assert!(
            wrong_type.to_string().contains("expected string"),
            "{wrong_type}"
        );
        // Streaming from gzip: too large, not gzip and truncated are each told apart.
        let gz = gzip(&bytes);
        let back: PushRequest = decode_gzip(&gz, "push", 1 << 20, DecodeLimits::PUSH).unwrap();
        assert_eq!(back, req);
        assert!(matches!(
            decode_gzip::<PushRequest>(
                &gzip(&push_with_actors(1_000)),
                "push",
                100,
                DecodeLimits::PUSH
            ),
            Err(WireError::TooLarge { limit: 100 })
        ));
        assert!(matches!(
            decode_gzip::<PushRequest>(b"not gzip at all", "push", 100, DecodeLimits::PUSH),
            Err(WireError::Gzip(_) | WireError::Decode { .. })
        ));
    }
}
