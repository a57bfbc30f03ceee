//! What the server keeps, as traits split by concern, with their value types: the change log
//! ([`ChangeLog`]: pushes, pull pages, documents, the epoch), the merged records and the queries
//! over them ([`Records`]), and accounts and audit ([`Accounts`]). [`Storage`] is all three, so
//! the HTTP layer holds one `Arc<dyn Storage>`. A storage only stores: what a push may store is
//! decided by [`crate::ingest`], merging by [`crate::merge`], who sees what by [`crate::scope`].
//! Nothing here knows HTTP or a database driver; `sqlite` is the SQLite implementation.

mod digest;
mod facts;
pub mod postgres;
pub mod sqlite;
mod tallies;

pub use digest::{DigestAsk, VillageDigest};
pub(crate) use digest::{DigestRow, Gather};
pub use tallies::{
    Counts, MAX_SEARCH_WORDS, NOTES_PER_VILLAGE, Period, Search, SearchHit, Tallies, Targets,
    VillageTally, search_words,
};

use async_trait::async_trait;
use fieldsync_protocol::{
    RecordHeader,
    auth::{Role, WireScope},
    record::Conflict,
    wire::WireRecord,
};
use uuid::Uuid;

/// What a query may return: every record, or one campaign's campaign-wide records and the
/// records of some of its places. Every listing, search and tally takes one and puts it into the
/// query itself, so that a limit counts only what the asker may see.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Visibility {
    /// Every record (administrators and the department).
    All,
    /// The campaign-wide records (scope `campaign`) and the records of these places of one
    /// campaign.
    Places {
        /// The campaign.
        campaign: String,
        /// The place codes.
        places: Vec<String>,
    },
}

impl Visibility {
    /// What a device with this scope may see.
    pub fn of(scope: &WireScope) -> Self {
        if scope.all {
            Visibility::All
        } else {
            Visibility::Places {
                campaign: scope.campaign.clone().unwrap_or_default(),
                places: scope.places.clone(),
            }
        }
    }

    /// Whether a record of `campaign` in `scope` is visible (the same rule as the queries').
    pub fn sees(&self, campaign: &Uuid, scope: &str) -> bool {
        match self {
            Visibility::All => true,
            Visibility::Places {
                campaign: c,
                places,
            } => {
                *c == campaign.to_string()
                    && (scope == fieldsync_protocol::template::CAMPAIGN_SCOPE
                        || places.iter().any(|p| p == scope))
            }
        }
    }

    /// Whether any record of `campaign` can be visible.
    pub fn sees_campaign(&self, campaign: &Uuid) -> bool {
        match self {
            Visibility::All => true,
            Visibility::Places { campaign: c, .. } => *c == campaign.to_string(),
        }
    }
}

/// A storage failure: what the request contradicts, or the storage itself failing. Knows nothing
/// of HTTP (`crate::error` maps it to statuses) or of a database driver (each implementation
/// converts its driver's errors to [`StorageError::Other`]).
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
    /// The request is not allowed (the client's fault); nothing was written.
    #[error("{message}")]
    Forbidden {
        /// Stable snake_case code.
        code: &'static str,
        /// What is not allowed.
        message: String,
    },
    /// A push refused whole by [`crate::ingest`] (a hostile or mistaken device); nothing of it
    /// was written.
    #[error("{0}")]
    Refused(crate::ingest::PushRefused),
    /// A one-time code or other credential is not (or no longer) valid.
    #[error("{message}")]
    Credential {
        /// What is wrong with it.
        problem: CredentialProblem,
        /// Stable snake_case code.
        code: &'static str,
        /// What is wrong with it, in words.
        message: String,
    },
    /// What the request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The storage itself failed.
    #[error("storage failure: {0}")]
    Other(String),
}

/// What is wrong with a presented credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialProblem {
    /// No such credential.
    Unknown,
    /// It was valid once and has been used up (a one-time code, a device already enrolled).
    Used,
    /// It has expired.
    Expired,
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
    /// Whether it is the record's deterministic genesis change (checked against the header).
    pub genesis: bool,
    /// The relay tag that came with it, if any.
    pub tag: Option<[u8; fieldsync_protocol::auth::TAG_BYTES]>,
}

/// A record's checked header and changes.
#[derive(Debug, Clone)]
pub struct CheckedRecord {
    /// The header (checked against the record's genesis when the genesis is in the push).
    pub header: RecordHeader,
    /// The changes.
    pub changes: Vec<CheckedChange>,
}

pub use crate::ingest::Pusher;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOutcome {
    /// Changes stored for the first time.
    pub stored: u64,
    /// Changes already stored.
    pub duplicates: u64,
    /// The log's newest sequence number.
    pub head: u64,
    /// Relayed changes under another device's actor accepted without that device's tag, while
    /// the server refills itself after a restore (see `docs/PROTOCOL.md`, Relays).
    pub unverified_relays: u64,
    /// Records refused while the rest of the push was stored.
    pub rejected: Vec<fieldsync_protocol::wire::RejectedRecord>,
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
    /// What the device may see.
    pub scope: WireScope,
}

/// One page of the log.
#[derive(Debug, Clone)]
pub struct PullPage {
    /// The device's cursor is not in this log.
    pub reset: bool,
    /// The log's epoch (changes only when an administrator declares the server restored).
    pub epoch: String,
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
            rejected: o.rejected,
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
            scope: None,
            epoch: Some(page.epoch),
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
    /// Where the record stands in the listing order (the cursor to page after it).
    #[serde(skip)]
    pub position: i64,
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
    /// At most this many (default 1000, at most 10,000).
    pub limit: Option<u32>,
    /// Only records after this cursor (the `next` of the previous page; records are listed in
    /// the order the server first received them).
    pub after: Option<i64>,
    /// Only records of these days (reference data whatever its day; see [`Period`]).
    #[serde(default, deserialize_with = "tallies::blank_is_none")]
    pub from: Option<String>,
    /// Only records of days up to this one (see [`Period`]).
    #[serde(default, deserialize_with = "tallies::blank_is_none")]
    pub to: Option<String>,
}

impl RecordFilter {
    /// The most records this listing returns: `limit` (default 1,000) up to 10,000.
    pub fn max_rows(&self) -> u32 {
        self.limit.unwrap_or(1000).clamp(1, 10_000)
    }

    /// The days the filter keeps.
    pub fn period(&self) -> Period {
        Period {
            from: self.from.clone(),
            to: self.to.clone(),
        }
    }
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

/// A person who may enroll devices.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Person {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Work group (a `work_group` record id) for leaders and workers.
    pub group: Option<Uuid>,
    /// Disabled people's devices are refused.
    pub disabled: bool,
    /// When created (ms since the Unix epoch).
    pub created_at: i64,
}

/// Changes to a person; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonUpdate {
    /// New name.
    pub name: Option<String>,
    /// New role.
    pub role: Option<Role>,
    /// New work group; `Some(None)` (JSON `null`) removes it.
    #[serde(default, with = "serde_with_double_option")]
    pub group: Option<Option<Uuid>>,
    /// Disable or enable.
    pub disabled: Option<bool>,
}

mod serde_with_double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        Option::<T>::deserialize(d).map(Some)
    }
}

/// A device as admins see it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeviceView {
    /// Id.
    pub id: Uuid,
    /// Name the device gave itself.
    pub name: Option<String>,
    /// Owner.
    pub person: Option<Uuid>,
    /// Owner's name.
    pub person_name: Option<String>,
    /// Owner's role.
    pub role: Option<Role>,
    /// When enrolled (ms since the Unix epoch).
    pub enrolled_at: Option<i64>,
    /// Last push (ms).
    pub last_push: Option<i64>,
    /// Last pull (ms).
    pub last_pull: Option<i64>,
    /// Changes it pushed first.
    pub pushed: u64,
    /// When revoked, if revoked.
    pub revoked_at: Option<i64>,
}

/// Who is asking: an enrolled, unrevoked device and its person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The device.
    pub device: Uuid,
    /// Its person.
    pub person: Person,
    /// What it may see and write.
    pub scope: WireScope,
}

/// What a token turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCheck {
    /// A live device.
    Valid(Box<Identity>),
    /// A device an admin revoked: it must wipe its store.
    Revoked(Uuid),
    /// A device whose person is disabled.
    Disabled(Uuid),
    /// No device has this token.
    Unknown,
}

/// A new enrollment: the device and the hashes of its token.
#[derive(Debug, Clone)]
pub struct NewEnrollment {
    /// Hash of the one-time code presented.
    pub code_hash: [u8; 32],
    /// The device id the device chose.
    pub device: Uuid,
    /// Its name.
    pub name: String,
    /// Hash of the token issued.
    pub token_hash: [u8; 32],
    /// The tag key derived from the token.
    pub mac_key: [u8; 32],
}

/// One line of the audit log.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AuditEntry {
    /// When (ms since the Unix epoch); set by the storage when 0.
    pub at: i64,
    /// The device, if known.
    pub device: Option<Uuid>,
    /// The person, if known.
    pub person: Option<Uuid>,
    /// What happened: `enroll`, `code_issued`, `person_created`, `person_updated`, `revoke`,
    /// `push`, `pull`, `record_view`, `search`, `export`, `refused`.
    pub action: String,
    /// `ok` or `refused`.
    pub outcome: String,
    /// Details (counts, ids, the refusal's code).
    pub detail: serde_json::Value,
}

/// Which audit lines to read.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct AuditFilter {
    /// Only this action.
    pub action: Option<String>,
    /// Only this device.
    pub device: Option<Uuid>,
    /// Only lines before this id (to page backwards).
    pub before: Option<i64>,
    /// At most this many (default 200, at most 5000).
    pub limit: Option<u32>,
}

/// The change log: what devices push and pull. The log is the truth; everything else is built
/// from it.
#[async_trait]
pub trait ChangeLog: Send + Sync {
    /// Checks a decoded push with [`crate::ingest`] against what is stored and stores what it
    /// accepts, atomically: the facts are read and the plan written in one transaction that no
    /// other push interleaves with (see `crate::ingest` for the steps). A whole-push refusal is
    /// [`StorageError::Refused`], and nothing of the push is written.
    async fn push(&self, pusher: Pusher, push: CheckedPush) -> Result<PushOutcome, StorageError>;
    /// Reads one page of the log.
    async fn pull(&self, request: PullRequest) -> Result<PullPage, StorageError>;
    /// Counts.
    async fn status(&self) -> Result<StoreStatus, StorageError>;
    /// Answers once the storage does: one trivial read through the same path as every other
    /// (the health check, polled by load balancers; [`ChangeLog::status`] counts every row and
    /// took 60–340 ms on PostgreSQL at 100,000 records).
    async fn ping(&self) -> Result<(), StorageError>;
    /// The merged document of a record (Automerge's saved bytes), if merged.
    async fn document(&self, id: Uuid) -> Result<Option<Vec<u8>>, StorageError>;
    /// A number that changes after merging has changed records' projections: when merging has
    /// caught up, and at most every few seconds while a long merge runs (a cache key for what is
    /// computed from projections, such as tallies, so that a bulk merge does not make every
    /// dashboard request recompute them).
    fn data_version(&self) -> u64;
    /// Declares that this server was restored from a backup: the log gets a new epoch (so every
    /// device re-pushes what it has and pulls from the start) and, for seven days, untagged
    /// changes of other devices that devices relay while refilling the server are accepted (and
    /// counted as unverified in the audit log). Only an administrator's action opens this window;
    /// no device can. Returns the new epoch and when the window closes (ms since the Unix epoch).
    async fn declare_restored(&self) -> Result<(String, i64), StorageError>;
}

/// The merged records and the department's queries over them. Every query takes the asker's
/// [`Visibility`] into the query itself.
#[async_trait]
pub trait Records: Send + Sync {
    /// One merged record, if it exists and is visible.
    async fn record(
        &self,
        id: Uuid,
        visibility: Visibility,
    ) -> Result<Option<RecordView>, StorageError>;
    /// The conflicts of one record (`None` if it does not exist or is not merged yet).
    async fn conflicts(&self, id: Uuid) -> Result<Option<Vec<Conflict>>, StorageError>;
    /// Visible merged records matching a filter, oldest first, at most `filter.limit`.
    async fn records(
        &self,
        filter: RecordFilter,
        visibility: Visibility,
    ) -> Result<Vec<RecordView>, StorageError>;
    /// Every visible live record of one kind in a campaign of the days of `period` (for
    /// exports), oldest first.
    async fn campaign_records(
        &self,
        campaign: Uuid,
        kind: String,
        visibility: Visibility,
        period: Period,
    ) -> Result<Vec<RecordView>, StorageError>;
    /// The campaign's tallies over the visible records of the days of `period`: every number of
    /// the seed reports.
    async fn tallies(
        &self,
        campaign: Uuid,
        visibility: Visibility,
        period: Period,
    ) -> Result<Tallies, StorageError>;
    /// What a village's dossier counts of its visible live records of the period, read in one
    /// pass without holding a record for each ([`VillageDigest`]).
    async fn village_digest(
        &self,
        ask: DigestAsk,
        visibility: Visibility,
    ) -> Result<VillageDigest, StorageError>;
    /// Visible records whose text contains every word of `search`, at most `search.limit`, in
    /// the order the server first received them; no word, no hit.
    async fn search(
        &self,
        search: Search,
        visibility: Visibility,
    ) -> Result<Vec<SearchHit>, StorageError>;
    /// The newest template version of a campaign.
    async fn template(
        &self,
        campaign: Uuid,
    ) -> Result<Option<fieldsync_protocol::template::Template>, StorageError>;
}

/// People, enrollment codes, devices and their tokens, and the audit log.
#[async_trait]
pub trait Accounts: Send + Sync {
    /// Who a device token belongs to (`token_hash` of it), with the scope it may see now.
    async fn authenticate(&self, token_hash: [u8; 32]) -> Result<TokenCheck, StorageError>;
    /// Adds a person.
    async fn create_person(
        &self,
        name: String,
        role: Role,
        group: Option<Uuid>,
    ) -> Result<Person, StorageError>;
    /// Changes a person (their devices see the new scope on their next request).
    async fn update_person(&self, id: Uuid, update: PersonUpdate) -> Result<Person, StorageError>;
    /// Every person.
    async fn people(&self) -> Result<Vec<Person>, StorageError>;
    /// Stores the hash of a one-time enrollment code for a person, valid until `expires_at`.
    async fn issue_code(
        &self,
        person: Uuid,
        code_hash: [u8; 32],
        expires_at: i64,
    ) -> Result<(), StorageError>;
    /// Uses up a one-time code and registers the device with its token; returns the person.
    async fn enroll(&self, enrollment: NewEnrollment) -> Result<Person, StorageError>;
    /// Every device.
    async fn devices(&self) -> Result<Vec<DeviceView>, StorageError>;
    /// Revokes a device: its token stops working and it is told to wipe its store. Returns
    /// whether the device exists.
    async fn revoke(&self, device: Uuid) -> Result<bool, StorageError>;
    /// Appends to the audit log and returns when the line is committed (so a request answered
    /// after it is never missing from the log). Never fails the request: problems are logged.
    async fn audit(&self, entry: AuditEntry) {
        if let Err(e) = self.audit_line(entry).await {
            tracing::error!(error = %e, "audit log write failed");
        }
    }
    /// Appends to the audit log; returns the line's id once it is committed.
    async fn audit_line(&self, entry: AuditEntry) -> Result<i64, StorageError>;
    /// Notes on audit line `id` that its event has happened `times` times in all (repeated
    /// refusals are one line per device, refusal and minute).
    async fn audit_repeated(&self, id: i64, times: u64) -> Result<(), StorageError>;
    /// Reads the audit log, newest first, with each line's id.
    async fn audit_log(&self, filter: AuditFilter) -> Result<Vec<(i64, AuditEntry)>, StorageError>;
    /// The device and person behind each of these actors (hex), where known.
    async fn actor_owners(
        &self,
        actors: Vec<String>,
    ) -> Result<std::collections::HashMap<String, (Uuid, Option<String>)>, StorageError>;
}

/// The server's storage: every concern, behind one `Arc<dyn Storage>`.
#[async_trait]
pub trait Storage: ChangeLog + Records + Accounts + 'static {
    /// Finishes pending writes and stops background work.
    async fn close(&self);
}
