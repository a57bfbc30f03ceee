//! Attachment files no record refers to any more (the photo was removed from its record, or the
//! record deleted): noted when first found, removed only once a grace period has passed with no
//! record referring to them again; partial uploads abandoned as long are removed too. The same
//! walk tells what each campaign's files take on disk, for the administrators.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use fieldsync_protocol::attachment::refs_in_json;
use serde::Serialize;
use uuid::Uuid;

use crate::blobs::BlobStore;
use crate::storage::{RecordFilter, Storage, StorageError, Visibility};

/// How long a file no record refers to is kept (someone may undo the removal, or a device that
/// has not synced for weeks may still bring a record that refers to it).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30 * 24 * 3600);

/// How often a running server sweeps.
pub const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// Records read per page while collecting the references.
const PAGE: u32 = 5_000;

/// What one campaign's files take.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Files its records refer to that the server holds whole.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Files its records refer to that have not reached the server yet.
    pub waiting: u64,
}

/// What a sweep found and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SweepReport {
    /// When it ran (milliseconds since the epoch).
    pub at_ms: i64,
    /// Per campaign, what its records' files take.
    pub campaigns: BTreeMap<Uuid, Usage>,
    /// Files on disk no record refers to, kept until their grace period ends.
    pub unreferenced: u64,
    /// Their bytes.
    pub unreferenced_bytes: u64,
    /// Files removed now (unreferenced for longer than the grace period).
    pub removed: u64,
    /// Their bytes.
    pub removed_bytes: u64,
    /// Partial uploads removed now (untouched for longer than the grace period).
    pub partials_removed: u64,
}

/// What the server knows of the files' sizes: the last sweep's report, and the bytes of files
/// completed on this server since (so that a quota holds between sweeps).
#[derive(Debug, Default)]
pub struct Ledger {
    /// The last sweep's report (`None` before the first).
    pub report: Option<SweepReport>,
    /// Bytes of files stored since that report, or reserved by uploads under way, per campaign.
    pub added: HashMap<Uuid, u64>,
    /// Files whose bytes are counted in `added` since their upload began (under a quota).
    pub reserved: std::collections::HashSet<String>,
}

impl Ledger {
    /// Bytes a campaign's files take now, as far as this server knows.
    pub fn usage(&self, campaign: Uuid) -> u64 {
        let swept = self
            .report
            .as_ref()
            .and_then(|r| r.campaigns.get(&campaign))
            .map_or(0, |u| u.bytes);
        swept + self.added.get(&campaign).copied().unwrap_or(0)
    }

    /// Notes a file of `bytes` stored for `campaign` (unless its upload reserved them).
    pub fn add(&mut self, campaign: Uuid, sha256: &str, bytes: u64) {
        if !self.reserved.remove(sha256) {
            *self.added.entry(campaign).or_default() += bytes;
        }
    }

    /// Counts a file's bytes from the moment its upload begins, so that uploads running at
    /// once cannot pass a quota together.
    pub fn reserve(&mut self, campaign: Uuid, sha256: &str, bytes: u64) {
        if self.reserved.insert(sha256.to_string()) {
            *self.added.entry(campaign).or_default() += bytes;
        }
    }
}

/// The ledger, shared by the sweeper, the upload and the pages that show it.
pub type LastSweep = Arc<Mutex<Ledger>>;

/// Why a sweep stopped (nothing was removed after the failure).
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// The records could not be read.
    #[error("reading the records: {0}")]
    Storage(#[from] StorageError),
    /// The attachment directory could not be read or changed.
    #[error("attachment storage: {0}")]
    Io(#[from] std::io::Error),
}

/// Every hash a live record refers to, with the campaign of (one of) the records.
async fn references(storage: &dyn Storage) -> Result<HashMap<String, Uuid>, StorageError> {
    let mut out = HashMap::new();
    let mut after = None;
    loop {
        let page = storage
            .records(
                RecordFilter {
                    limit: Some(PAGE),
                    after,
                    ..Default::default()
                },
                Visibility::All,
            )
            .await?;
        for r in page.iter().filter(|r| !r.deleted) {
            for f in refs_in_json(&r.fields) {
                out.entry(f.sha256).or_insert(r.campaign);
            }
        }
        match page.last() {
            Some(last) if page.len() as u32 == PAGE => after = Some(last.position),
            _ => return Ok(out),
        }
    }
}

/// Sweeps once at `now`: notes newly unreferenced files, forgets the notes of files referred
/// to again, removes files unreferenced for longer than `grace` (unless written since they were
/// noted: uploaded again by a device that refers to them anew) and partial uploads untouched as
/// long, and tells what each campaign's files take.
pub async fn sweep(
    storage: &dyn Storage,
    blobs: &Arc<BlobStore>,
    now: SystemTime,
    grace: Duration,
) -> Result<SweepReport, SweepError> {
    let referenced = references(storage).await?;
    let report = walk(blobs, referenced.clone(), now, grace, None).await?;
    if report.removed == 0 {
        return Ok(report);
    }
    // Files were due for removal: the references are read again, so that a record that came to
    // refer to one again during the walk keeps it (the window left is the time between this
    // read and the removal).
    let again = references(storage).await?;
    let mut last = walk(blobs, referenced, now, grace, Some(again)).await?;
    last.partials_removed += report.partials_removed;
    Ok(last)
}

/// One pass over the directory with the references read (`recheck`: a second reading; a file
/// is removed only when neither refers to it, and without one the pass only counts what it
/// would remove). Notes and partial uploads are handled in every pass.
async fn walk(
    blobs: &Arc<BlobStore>,
    referenced: HashMap<String, Uuid>,
    now: SystemTime,
    grace: Duration,
    recheck: Option<HashMap<String, Uuid>>,
) -> Result<SweepReport, SweepError> {
    // The shelf may be an object store: listed and emptied with async calls, while the notes
    // and partial uploads are small local files handled in one blocking pass.
    let stored = blobs.stored_files().await?;
    let local = blobs.clone();
    let (report, remove) = tokio::task::spawn_blocking(move || -> Result<_, SweepError> {
        let blobs = local;
        let mut remove = Vec::new();
        let mut report = SweepReport {
            at_ms: now
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as i64,
            ..Default::default()
        };
        let mut on_disk = std::collections::HashSet::new();
        for f in &stored {
            on_disk.insert(f.sha256.clone());
            if let Some(campaign) = referenced.get(&f.sha256) {
                let u = report.campaigns.entry(*campaign).or_default();
                u.files += 1;
                u.bytes += f.len;
                continue;
            }
            match blobs.orphaned_since(&f.sha256)? {
                None => {
                    blobs.note_orphan(&f.sha256, now)?;
                    report.unreferenced += 1;
                    report.unreferenced_bytes += f.len;
                }
                Some(since)
                    if now.duration_since(since).unwrap_or_default() >= grace
                        && f.modified <= since =>
                {
                    match &recheck {
                        Some(again) if !again.contains_key(&f.sha256) => {
                            remove.push(f.sha256.clone());
                        }
                        // Referred to again since the first reading: kept.
                        Some(_) => {
                            blobs.forget_orphan(&f.sha256)?;
                            continue;
                        }
                        // The first pass only counts what it would remove.
                        None => {}
                    }
                    report.removed += 1;
                    report.removed_bytes += f.len;
                }
                Some(_) => {
                    report.unreferenced += 1;
                    report.unreferenced_bytes += f.len;
                }
            }
        }
        for (sha, campaign) in &referenced {
            if !on_disk.contains(sha) {
                report.campaigns.entry(*campaign).or_default().waiting += 1;
            }
        }
        for sha in blobs.orphan_notes()? {
            if referenced.contains_key(&sha) || !on_disk.contains(&sha) {
                blobs.forget_orphan(&sha)?;
            }
        }
        for p in blobs.partial_files()? {
            if now.duration_since(p.modified).unwrap_or_default() >= grace {
                blobs.remove_partial(&p.sha256)?;
                report.partials_removed += 1;
            }
        }
        Ok((report, remove))
    })
    .await
    .map_err(|e| SweepError::Io(std::io::Error::other(e)))??;
    for sha in remove {
        blobs.remove_stored(&sha).await?;
    }
    Ok(report)
}

/// Sweeps every [`SWEEP_EVERY`] until the server stops, keeping the last report in `last`. The
/// first sweep runs `first_after` the start (at once when a quota needs its figures). A failed
/// sweep is logged and tried again next time.
pub async fn run(
    storage: Arc<dyn Storage>,
    blobs: Arc<BlobStore>,
    grace: Duration,
    last: LastSweep,
    first_after: Duration,
) {
    let mut next = tokio::time::Instant::now() + first_after;
    loop {
        tokio::time::sleep_until(next).await;
        next += SWEEP_EVERY;
        match sweep(storage.as_ref(), &blobs, SystemTime::now(), grace).await {
            Ok(report) => {
                if report.removed > 0 || report.partials_removed > 0 {
                    tracing::info!(
                        removed = report.removed,
                        removed_bytes = report.removed_bytes,
                        partials_removed = report.partials_removed,
                        "removed attachment files no record has referred to for the grace period"
                    );
                }
                let mut ledger = last.lock().expect("sweep report");
                ledger.report = Some(report);
                // The report counts stored files; uploads under way are counted again when
                // they complete.
                ledger.added.clear();
                ledger.reserved.clear();
            }
            Err(e) => tracing::warn!(error = %e, "the attachment sweep failed; trying again later"),
        }
    }
}
