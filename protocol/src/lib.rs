//! The parts of fieldsync that both ends of a sync must agree on.
//!
//! - [`attachment`]: how a record refers to a photo, recording or scan, and the messages of
//!   their resumable upload.
//! - [`auth`]: roles, enrollment, scopes, device tokens and change tags.
//! - [`ids`]: record ids (UUID v7 for new records, UUID v5 for singletons).
//! - [`record`]: how one field record is laid out as an Automerge document: its deterministic
//!   genesis change, its field values, the projection of its current state and its conflicts.
//! - [`change`]: decoding and checking one change before anyone stores it.
//! - [`creation`]: a new record's first changes built without a document (the same bytes).
//! - [`fresh`]: a new record's projection read from its creation changes, without a document.
//! - [`genesis`]: recognising a record's genesis change cheaply (a proven template per shape).
//! - [`template`]: campaign templates (forms as TOML data) and record validation against them.
//! - [`wire`]: the sync messages, their CBOR encoding and gzip bodies (see `docs/PROTOCOL.md`).
//!
//! - [`migrate`] (feature `sqlite`): the ordered, append-only migration runner both SQLite
//!   stores use.
//!
//! Apart from `migrate`, this crate does no I/O: it turns bytes into checked values and back.

pub mod approval;
pub mod attachment;
pub mod auth;
pub mod change;
pub mod creation;
pub mod dates;
pub mod fresh;
pub mod genesis;
pub mod history;
pub mod ids;
pub mod record;
pub mod template;
pub mod wire;

pub use change::{ChangeError, ChangeInfo, inspect_change, quick_hash};
pub use ids::{new_record_id, singleton_id};
pub use record::{
    Conflict, ConflictValue, FieldValue, Projection, RecordError, RecordHeader, genesis_actor,
    genesis_change,
};

#[cfg(feature = "sqlite")]
pub mod migrate;
