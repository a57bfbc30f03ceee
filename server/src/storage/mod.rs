//! Where the server keeps the change log and the merged records: a small trait, so that a
//! PostgreSQL implementation can be added without touching the HTTP handlers.

pub mod sqlite;
mod tally;

use async_trait::async_trait;
use fieldsync_protocol::{RecordHeader, record::Conflict, wire::WireRecord};
use uuid::Uuid;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The request contradicts what is stored (the client's fault); nothing was written.
    #[error("{message}")]
    Conflict {
        /// Stable snake_case code.
        code: &'static str,
        /// What contradicts what.
        message: String,
    },
    /// The storage itself failed.
    #[error("storage failure: {0}")]
    Other(String),
}

impl From<rusqlite::Error> for StorageError {
    fn from(e: rusqlite::Error) -> Self {
        StorageError::Other(e.to_string())
    }
}

/// One change that has been decoded and checked.
#[derive(Debug, Clone)]
pub struct CheckedChange {
    /// Its hash.
    pub hash: [u8; 32],
    /// Its actor's bytes.
    pub actor: Vec<u8>,
    /// Its sequence number for that actor in its record.
    pub seq: u64,
    /// The raw change chunk.
    pub bytes: Vec<u8>,
}

/// A record's checked header and changes.
#[derive(Debug, Clone)]
pub struct CheckedRecord {
    /// The header (checked against the record's genesis when the genesis is in the push).
    pub header: RecordHeader,
    /// The changes.
    pub changes: Vec<CheckedChange>,
}

/// A push whose every change has been decoded and checked.
#[derive(Debug, Clone)]
pub struct CheckedPush {
    /// The pushing device.
    pub device: Uuid,
    /// The device's own actors appearing in the push.
    pub actors: Vec<Vec<u8>>,
    /// The records.
    pub records: Vec<CheckedRecord>,
}

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushOutcome {
    /// Changes stored for the first time.
    pub stored: u64,
    /// Changes already stored.
    pub duplicates: u64,
    /// The log's newest sequence number.
    pub head: u64,
}

/// A pull request after its query has been checked.
#[derive(Debug, Clone)]
pub struct PullRequest {
    /// The pulling device.
    pub device: Uuid,
    /// The cursor's sequence number.
    pub after: u64,
    /// The cursor's hash.
    pub after_hash: Option<[u8; 32]>,
    /// The page size in change bytes.
    pub max_bytes: usize,
    /// Include changes this device pushed.
    pub include_own: bool,
}

/// One page of the log.
#[derive(Debug, Clone)]
pub struct PullPage {
    /// The device's cursor is not in this log.
    pub reset: bool,
    /// Newest sequence number.
    pub head: u64,
    /// Cursor to continue from.
    pub next: u64,
    /// Hash of the change at `next`.
    pub next_hash: Option<[u8; 32]>,
    /// More follows.
    pub more: bool,
    /// Changes this device pushed first.
    pub pushed_by_you: u64,
    /// The changes, grouped by record.
    pub records: Vec<WireRecord>,
}

impl From<PushOutcome> for fieldsync_protocol::wire::PushResponse {
    fn from(o: PushOutcome) -> Self {
        fieldsync_protocol::wire::PushResponse {
            v: fieldsync_protocol::wire::PROTOCOL_VERSION,
            stored: o.stored,
            duplicates: o.duplicates,
            head: o.head,
        }
    }
}

impl From<PullPage> for fieldsync_protocol::wire::PullResponse {
    fn from(page: PullPage) -> Self {
        fieldsync_protocol::wire::PullResponse {
            v: fieldsync_protocol::wire::PROTOCOL_VERSION,
            reset: page.reset,
            head: page.head,
            next: page.next,
            next_hash: page
                .next_hash
                .map(|h| serde_bytes::ByteBuf::from(h.to_vec())),
            more: page.more,
            pushed_by_you: page.pushed_by_you,
            records: page.records,
        }
    }
}

/// A merged record as the server's projection holds it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecordView {
    /// Record id.
    pub id: Uuid,
    /// Kind.
    pub kind: String,
    /// Campaign id.
    pub campaign: Uuid,
    /// Scope.
    pub scope: String,
    /// Tombstone.
    pub deleted: bool,
    /// Field values (texts as strings), `null` until the record is first merged.
    pub fields: serde_json::Value,
    /// Number of conflicted fields.
    pub conflicts: u64,
    /// Heads of the merged document.
    pub heads: Vec<String>,
    /// Whether every stored change of the record has been merged.
    pub up_to_date: bool,
    /// Changes stored but waiting for a change they depend on.
    pub waiting_changes: u64,
    /// Why the record could not be merged, when it could not.
    pub problem: Option<String>,
    /// What does not fit the campaign's template, when something does not: the record is kept
    /// and synced, and flagged here for a reviewer.
    pub review: Option<Vec<fieldsync_protocol::template::Problem>>,
}

/// Which records to list.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct RecordFilter {
    /// Only this kind.
    pub kind: Option<String>,
    /// Only this scope.
    pub scope: Option<String>,
    /// Only this campaign.
    pub campaign: Option<Uuid>,
    /// Only records with conflicts.
    #[serde(default)]
    pub conflicted: bool,
    /// Only records flagged for review (they do not fit their template).
    #[serde(default)]
    pub needs_review: bool,
    /// At most this many (default 1000).
    pub limit: Option<u32>,
}

/// Counts describing the store.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct StoreStatus {
    /// Newest log sequence number.
    pub head: u64,
    /// Changes stored.
    pub changes: u64,
    /// Records known.
    pub records: u64,
    /// Records with changes not merged yet.
    pub unmerged_records: u64,
    /// Changes waiting for a dependency.
    pub waiting_changes: u64,
    /// Devices seen.
    pub devices: u64,
    /// Records that do not fit their campaign's template, kept and flagged for review.
    pub records_needing_review: u64,
}

/// The server's storage.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Stores a checked push atomically: all of it or, on error, nothing.
    async fn push(&self, push: CheckedPush) -> Result<PushOutcome, StorageError>;
    /// Reads one page of the log.
    async fn pull(&self, request: PullRequest) -> Result<PullPage, StorageError>;
    /// Counts.
    async fn status(&self) -> Result<StoreStatus, StorageError>;
    /// One merged record.
    async fn record(&self, id: Uuid) -> Result<Option<RecordView>, StorageError>;
    /// The conflicts of one record (`None` if it does not exist or is not merged yet).
    async fn conflicts(&self, id: Uuid) -> Result<Option<Vec<Conflict>>, StorageError>;
    /// Merged records matching a filter.
    async fn records(&self, filter: RecordFilter) -> Result<Vec<RecordView>, StorageError>;
    /// Every live record of one kind in a campaign (for exports), oldest first.
    async fn campaign_records(
        &self,
        campaign: Uuid,
        kind: String,
    ) -> Result<Vec<RecordView>, StorageError>;
    /// The campaign's tallies: every number of the seed reports.
    async fn tallies(&self, campaign: Uuid) -> Result<crate::report::Tallies, StorageError>;
    /// Records whose text contains `q`.
    async fn search(
        &self,
        q: String,
        campaign: Option<Uuid>,
        kind: Option<String>,
        limit: usize,
    ) -> Result<Vec<crate::report::SearchHit>, StorageError>;
    /// The newest template version of a campaign.
    async fn template(
        &self,
        campaign: Uuid,
    ) -> Result<Option<fieldsync_protocol::template::Template>, StorageError>;
    /// Finishes pending writes and stops background work.
    async fn close(&self);
}
