//! Decoding a push: the body (gzip or not) decoded within [`DecodeLimits::PUSH`], every change
//! decoded and its checksum verified, genesis changes checked against their record's header,
//! every other change required to build on something. What passes is a [`CheckedPush`] for
//! [`super::plan`]; nothing of a push that fails is stored.

use fieldsync_protocol::{
    RecordHeader,
    auth::TAG_BYTES,
    inspect_change,
    record::genesis_actor,
    wire::{self, Bound, DecodeLimits, MAX_PUSH_BYTES, PushRequest},
};
use serde_bytes::ByteBuf;
use uuid::Uuid;

use crate::storage::{CheckedChange, CheckedPush, CheckedRecord};

/// What kind of refusal a [`DecodeError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeProblem {
    /// Over a size or count bound (HTTP 413).
    TooLarge,
    /// Not a push message (HTTP 400).
    Malformed,
    /// A well-formed message whose records or changes are not valid (HTTP 422).
    Invalid,
    /// The server failed while checking (HTTP 500).
    Internal,
}

/// Why a push body was refused before anything of it could be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    /// What kind of refusal.
    pub problem: DecodeProblem,
    /// Stable snake_case code.
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: Option<&'static str>,
}

impl DecodeError {
    fn new(problem: DecodeProblem, code: &'static str, message: impl Into<String>) -> Self {
        DecodeError {
            problem,
            code,
            message: message.into(),
            hint: None,
        }
    }

    fn too_large(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(DecodeProblem::TooLarge, code, message)
    }

    fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(DecodeProblem::Invalid, code, message)
    }

    fn malformed(message: impl Into<String>) -> Self {
        Self::new(DecodeProblem::Malformed, "invalid_body", message)
    }

    fn internal(message: impl Into<String>) -> Self {
        Self::new(DecodeProblem::Internal, "internal", message)
    }

    fn with_hint(mut self, hint: &'static str) -> Self {
        self.hint = Some(hint);
        self
    }
}

/// A device id as the push names it.
pub fn device(s: &str) -> Result<Uuid, DecodeError> {
    Uuid::parse_str(s)
        .map_err(|e| DecodeError::malformed(format!("device {s:?} is not a UUID: {e}")))
}

/// Decodes a push body and checks every change in it. Nothing is stored unless all of it passes.
/// The body is decoded within [`DecodeLimits::PUSH`] (a gzip body as it is decompressed), so a
/// body that passes a bound is refused before it costs more memory.
pub fn push(body: &[u8], gzipped: bool) -> Result<CheckedPush, DecodeError> {
    let decoded = if gzipped {
        wire::decode_gzip::<PushRequest>(body, "push", MAX_PUSH_BYTES, DecodeLimits::PUSH)
    } else if body.len() > MAX_PUSH_BYTES {
        Err(wire::WireError::TooLarge {
            limit: MAX_PUSH_BYTES,
        })
    } else {
        wire::decode_with::<PushRequest>(body, "push", DecodeLimits::PUSH)
    };
    let request = decoded.map_err(|e| match e {
        wire::WireError::TooLarge { .. } => DecodeError::too_large("too_large", e.to_string())
            .with_hint("push fewer changes per request"),
        wire::WireError::Limit {
            bound: Bound::Records,
            ..
        } => DecodeError::too_large("too_many_records", e.to_string())
            .with_hint("push in smaller batches (client-core does this automatically)"),
        wire::WireError::Limit { .. } => DecodeError::too_large("limit_exceeded", e.to_string())
            .with_hint("see the limits of a push in docs/PROTOCOL.md"),
        other => DecodeError::malformed(other.to_string())
            .with_hint("see docs/PROTOCOL.md for the push message"),
    })?;
    wire::check_push_version(request.v).map_err(|e| {
        DecodeError::new(
            DecodeProblem::Malformed,
            "unsupported_version",
            e.to_string(),
        )
        .with_hint("send v 1, or v 2 with records in their compact form (docs/PROTOCOL.md)")
    })?;
    // A server that speaks only version 1 ignores `created` (and would acknowledge records it
    // never stored): a client must say version 2 to use it, so that it learns which it talks to.
    if request.v != wire::COMPACT_VERSION
        && let Some(r) = request.records.iter().find(|r| r.created.is_some())
    {
        return Err(DecodeError::new(
            DecodeProblem::Malformed,
            "unsupported_version",
            format!(
                "record {} is sent in its compact form (created) in a push of version {}; \
                 that form needs \"v\": {}",
                r.id,
                request.v,
                wire::COMPACT_VERSION
            ),
        )
        .with_hint("send v 2 with compact records, or the record's changes whole in v 1"));
    }
    let device = device(&request.device)?;
    let actors = request
        .actors
        .iter()
        .map(|a| {
            if a.len() == 16 {
                Ok(a.to_vec())
            } else {
                Err(DecodeError::malformed(format!(
                    "actor ids are 16 bytes; got one of {} bytes",
                    a.len()
                )))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Records are independent: check them on every core.
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(request.records.len().div_ceil(64).max(1));
    let chunk = request.records.len().div_ceil(threads).max(1);
    let mut chunks: Vec<Vec<_>> = Vec::new();
    let mut it = request.records.into_iter().peekable();
    while it.peek().is_some() {
        chunks.push(it.by_ref().take(chunk).collect());
    }
    let checked: Vec<Result<Vec<CheckedRecord>, DecodeError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|c| scope.spawn(move || c.into_iter().map(check_record).collect()))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(DecodeError::internal("check panicked")))
            })
            .collect()
    });
    let mut records = Vec::new();
    for c in checked {
        records.extend(c?);
    }
    Ok(CheckedPush {
        device,
        actors,
        records,
    })
}

fn check_record(
    mut wire_record: fieldsync_protocol::wire::WireRecord,
) -> Result<CheckedRecord, DecodeError> {
    let header = wire_record.header().map_err(|e| {
        DecodeError::invalid(
            "invalid_record",
            format!("record {:?}: {e}", wire_record.id),
        )
    })?;
    // A creation in its compact form becomes the genesis and the change it stood for; both are
    // checked below like every other change.
    wire_record
        .expand_creation(&header)
        .map_err(|e| DecodeError::invalid("invalid_change", e.to_string()))?;
    let tags = wire_record.tags;
    if !tags.is_empty() && tags.len() != wire_record.changes.len() {
        return Err(DecodeError::invalid(
            "invalid_record",
            format!(
                "record {}: {} tags for {} changes; tags must be absent or one per change",
                header.id,
                tags.len(),
                wire_record.changes.len()
            ),
        ));
    }
    let mut changes = changes(&header, wire_record.changes)?;
    for (change, tag) in changes.iter_mut().zip(tags) {
        if tag.is_empty() {
            continue;
        }
        change.tag = Some(<[u8; TAG_BYTES]>::try_from(tag.as_slice()).map_err(|_| {
            DecodeError::invalid(
                "invalid_record",
                format!(
                    "record {}: a tag of {} bytes; tags are {TAG_BYTES} bytes",
                    header.id,
                    tag.len()
                ),
            )
        })?);
    }
    Ok(CheckedRecord { header, changes })
}

/// Decodes and checks the changes of one record (checksums, genesis, dependencies).
pub fn changes(
    header: &RecordHeader,
    changes: Vec<ByteBuf>,
) -> Result<Vec<CheckedChange>, DecodeError> {
    let genesis_actor = genesis_actor(header);
    {
        // A record pushed exactly as it was created (its genesis and the change writing its
        // first values, the common case): checked from its bytes without Automerge parsing
        // them (protocol::fresh: checksums, bounds, the genesis by its hash, every operation
        // of the other change). Anything else is checked change by change below.
        let bytes: Vec<&[u8]> = changes.iter().map(|b| b.as_slice()).collect();
        if let Some((_, checked)) = fieldsync_protocol::fresh::read_new_bytes(header, &bytes) {
            let genesis_actor = genesis_actor.to_bytes();
            return Ok(changes
                .into_iter()
                .zip(checked)
                .map(|(bytes, c)| CheckedChange {
                    hash: c.hash.0,
                    genesis: c.actor == genesis_actor,
                    actor: c.actor,
                    seq: 1,
                    bytes: bytes.into_vec(),
                    tag: None,
                })
                .collect());
        }
    }
    let mut out = Vec::with_capacity(changes.len());
    for (index, bytes) in changes.into_iter().enumerate() {
        let bytes = bytes.into_vec();
        let invalid = |message: String| DecodeError::invalid("invalid_change", message);
        let info = inspect_change(&bytes)
            .map_err(|e| invalid(format!("change {index} of record {}: {e}", header.id)))?;
        let genesis = info.actor == genesis_actor;
        if genesis {
            let is_genesis = fieldsync_protocol::genesis::is_genesis(header, &bytes, &info.hash)
                .map_err(|e| invalid(e.to_string()))?;
            if !is_genesis {
                return Err(invalid(format!(
                    "change {index} of record {} claims the record's genesis actor but is not \
                     the genesis of {} / {} / {}",
                    header.id, header.kind, header.campaign, header.scope
                )));
            }
        } else if info.deps.is_empty() {
            return Err(invalid(format!(
                "change {index} of record {} has no dependencies but is not the record's \
                 genesis: every edit must build on the genesis change",
                header.id
            )));
        }
        out.push(CheckedChange {
            hash: info.hash.0,
            actor: info.actor.to_bytes().to_vec(),
            seq: info.seq,
            bytes,
            genesis,
            tag: None,
        });
    }
    Ok(out)
}
