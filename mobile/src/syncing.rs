//! Sync from the phone apps: an async call (Kotlin `suspend`, Swift `async`) that runs the
//! field app's sync (records, then files) on a second handle of the store, reports progress to
//! a callback the app implements, and stops at the next request when cancelled, by
//! `cancel_sync` or by cancelling the coroutine or task. Nothing acknowledged is lost; the next
//! sync goes on from there.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use fieldsync_app::syncing::{Stage, SyncStatus, Synced, sync_message, sync_over};
use fieldsync_client_core::account::WriterNames;
use fieldsync_client_core::attachments::BlobTransport;
use fieldsync_client_core::sync::Progress;
use fieldsync_client_core::{Transport, TransportError, account};
use fieldsync_protocol::attachment::{MissingRequest, MissingResponse};
use fieldsync_protocol::wire::{PullQuery, PullResponse, PushRequest, PushResponse};
use uuid::Uuid;

use crate::error::{FieldsyncError, Result};
use crate::on_thread;
use crate::store::FieldStore;

/// Where a sync is, after each request.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct SyncUpdate {
    /// `connecting`, `uploading` (changes), `downloading` (changes) or `files` (attachments).
    pub phase: String,
    /// How many are done in this phase (changes, or bytes of the current file).
    pub done: u64,
    /// How many there are in this phase (0 when not known yet).
    pub total: u64,
    /// The line to show, in Chinese (“正在上传：120 / 300 条修改”).
    pub zh: String,
    /// The line in English.
    pub en: String,
}

/// What the app implements to be told how a sync goes. Called on the sync's own thread: hand
/// the update to the UI thread before touching views.
#[uniffi::export(with_foreign)]
pub trait SyncProgress: Send + Sync {
    /// Called after every request of the sync.
    fn on_progress(&self, update: SyncUpdate);
}

/// A record the server refused; it stays on the device and is offered again next sync.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct RefusedRecord {
    /// The record's id.
    pub id: String,
    /// Why, in the server's words.
    pub message: String,
}

/// What one sync did.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct SyncSummary {
    /// Changes uploaded (the server acknowledged them).
    pub uploaded: u64,
    /// Changes downloaded and applied.
    pub downloaded: u64,
    /// Records the server refused (kept here, offered again next time).
    pub refused: Vec<RefusedRecord>,
    /// Changes held back: outside what this device may upload now.
    pub held: u64,
    /// Records with conflicting values after the sync.
    pub conflicted_records: u64,
    /// Files uploaded.
    pub files_uploaded: u64,
    /// Files still waiting to upload (they go on from where they stopped next sync).
    pub files_waiting: u64,
    /// Why the files' upload stopped early, if it did (the records synced all the same).
    pub files_error: Option<String>,
    /// The sentence that reports it, in Chinese.
    pub zh: String,
    /// The sentence in English.
    pub en: String,
}

/// A transport that refuses its next request once `cancelled` is set.
struct Cancellable<T> {
    inner: T,
    cancelled: Arc<AtomicBool>,
}

impl<T> Cancellable<T> {
    fn check(&self) -> std::result::Result<(), TransportError> {
        if self.cancelled.load(Ordering::SeqCst) {
            // Not retryable: a cancelled sync does not try again.
            Err(TransportError::Protocol(CANCELLED.into()))
        } else {
            Ok(())
        }
    }
}

const CANCELLED: &str = "同步已取消 / the sync was cancelled";

impl<T: Transport> Transport for Cancellable<T> {
    fn push(&mut self, request: &PushRequest) -> std::result::Result<PushResponse, TransportError> {
        self.check()?;
        self.inner.push(request)
    }

    fn pull(&mut self, query: &PullQuery) -> std::result::Result<PullResponse, TransportError> {
        self.check()?;
        self.inner.pull(query)
    }

    fn push_encoder(&self) -> fn(&PushRequest) -> Vec<u8> {
        self.inner.push_encoder()
    }

    fn push_encoded(&mut self, body: Vec<u8>) -> std::result::Result<PushResponse, TransportError> {
        self.check()?;
        self.inner.push_encoded(body)
    }
}

impl<T: BlobTransport> BlobTransport for Cancellable<T> {
    fn missing(
        &mut self,
        request: &MissingRequest,
    ) -> std::result::Result<MissingResponse, TransportError> {
        self.check()?;
        self.inner.missing(request)
    }

    fn offset(&mut self, record: Uuid, sha256: &str) -> std::result::Result<u64, TransportError> {
        self.check()?;
        self.inner.offset(record, sha256)
    }

    fn append(
        &mut self,
        record: Uuid,
        sha256: &str,
        offset: u64,
        chunk: &[u8],
    ) -> std::result::Result<u64, TransportError> {
        self.check()?;
        self.inner.append(record, sha256, offset, chunk)
    }

    fn download_from(
        &mut self,
        record: Uuid,
        sha256: &str,
        into: &mut Vec<u8>,
    ) -> std::result::Result<(), TransportError> {
        self.check()?;
        self.inner.download_from(record, sha256, into)
    }
}

impl<T: WriterNames> WriterNames for Cancellable<T> {
    fn conflict_writers(
        &mut self,
        id: Uuid,
    ) -> std::result::Result<Vec<(String, String)>, TransportError> {
        self.check()?;
        self.inner.conflict_writers(id)
    }
}

/// Sets the flag when dropped unless disarmed: a cancelled coroutine or task drops the future,
/// and the sync's thread stops at its next request.
struct CancelOnDrop {
    flag: Arc<AtomicBool>,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed {
            self.flag.store(true, Ordering::SeqCst);
        }
    }
}

fn update(stage: &Stage) -> SyncUpdate {
    let (zh, en) = SyncStatus {
        running: true,
        progress: Some(stage.clone()),
        finished: 0,
    }
    .line();
    let (phase, done, total) = match stage {
        Stage::Records(Progress::Pushing { sent, total }) => ("uploading", *sent, *total),
        Stage::Records(Progress::Pulling { from, at, head }) => (
            "downloading",
            at.saturating_sub(*from),
            head.saturating_sub(*from),
        ),
        Stage::Files(f) => ("files", f.sent, f.size),
    };
    SyncUpdate {
        phase: phase.into(),
        done,
        total,
        zh,
        en,
    }
}

fn summary(synced: Synced) -> SyncSummary {
    let (zh, en) = sync_message(&Ok(synced.clone()));
    let r = synced.records;
    SyncSummary {
        uploaded: r.pushed,
        downloaded: r.received,
        refused: r
            .rejected
            .iter()
            .map(|x| RefusedRecord {
                id: x.id.clone(),
                message: x.message.clone(),
            })
            .collect(),
        held: r.held,
        conflicted_records: r.conflicted_records,
        files_uploaded: synced.files_uploaded,
        files_waiting: synced.files_waiting as u64,
        files_error: synced.files_error,
        zh,
        en,
    }
}

impl FieldStore {
    /// One sync on a second handle of the store (every other call keeps answering meanwhile),
    /// one sync at a time.
    fn sync_blocking(
        &self,
        progress: Option<Arc<dyn SyncProgress>>,
        cancelled: Arc<AtomicBool>,
    ) -> Result<SyncSummary> {
        let _one_at_a_time = self.sync_lock.lock().unwrap_or_else(|p| p.into_inner());
        *self.cancel.lock().unwrap_or_else(|p| p.into_inner()) = Some(cancelled.clone());
        let (mut second, http) = self.with(|s| Ok((s.reopen()?, Self::http_options(s)?)))?;
        let inner = account::transport(&second, &http)?;
        let mut transport = Cancellable {
            inner,
            cancelled: cancelled.clone(),
        };
        if let Some(p) = &progress {
            p.on_progress(SyncUpdate {
                phase: "connecting".into(),
                done: 0,
                total: 0,
                zh: "正在连接服务器…".into(),
                en: "connecting to the server…".into(),
            });
        }
        let result = sync_over(&mut second, &mut transport, &mut |stage| {
            if let Some(p) = &progress {
                p.on_progress(update(&stage));
            }
        });
        *self.cancel.lock().unwrap_or_else(|p| p.into_inner()) = None;
        // A revoked device's sync wiped the file through the second handle: this one starts
        // over on it too (it would keep the old device id and actor).
        {
            let mut guard = self.lock();
            if let Some(store) = guard.as_ref()
                && store.device_id() != second.device_id()
                && let Ok(fresh) = store.reopen()
            {
                *guard = Some(fresh);
            }
        }
        match result {
            Ok(synced) => Ok(summary(synced)),
            Err(_) if cancelled.load(Ordering::SeqCst) => {
                let waiting = second.pending_upload().unwrap_or(0);
                Err(FieldsyncError::Cancelled {
                    zh: format!("同步已取消；已传完的不会重传，还有 {waiting} 项修改待上传"),
                    en: format!(
                        "the sync was cancelled; what was sent stays sent, {waiting} changes \
                         wait to be uploaded"
                    ),
                })
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[uniffi::export]
impl FieldStore {
    /// Syncs with the server: uploads what waits, downloads what is new, then sends the files
    /// the server lacks. `progress` is told after every request. Cancelling the coroutine (or
    /// task), or calling `cancel_sync`, stops it at its next request with `Cancelled`: nothing
    /// acknowledged is lost, and the next sync goes on from there. A second sync started
    /// meanwhile waits for the first.
    pub async fn sync(
        self: Arc<Self>,
        progress: Option<Arc<dyn SyncProgress>>,
    ) -> Result<SyncSummary> {
        let cancelled = Arc::new(AtomicBool::new(false));
        let mut guard = CancelOnDrop {
            flag: cancelled.clone(),
            armed: true,
        };
        let result = on_thread("sync", move || self.sync_blocking(progress, cancelled)).await;
        guard.armed = false;
        result
    }

    /// Asks the running sync (if any) to stop at its next request.
    pub fn cancel_sync(&self) {
        if let Some(flag) = self
            .cancel
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            flag.store(true, Ordering::SeqCst);
        }
    }

    /// Whether a sync is running now.
    pub fn is_syncing(&self) -> bool {
        self.cancel
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }
}
