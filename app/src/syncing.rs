//! The sync the app runs in the background: records first, then the files attached to them,
//! one sync at a time, on a second handle of the store so that every page keeps answering while
//! it runs, with its progress kept for the pages (and the bundled script) to read and its result
//! told on the next page.

use std::sync::{Arc, Mutex};

use fieldsync_client_core::account::WriterNames;
use fieldsync_client_core::attachments::{
    BlobTransport, UploadProgress, upload_attachments_with_progress,
};
use fieldsync_client_core::sync::{Progress, SyncError, sync_with_progress};
use fieldsync_client_core::{HttpOptions, Store, SyncOptions, SyncReport, Transport, account};

/// How many failed requests an upload of files retries before it stops (what arrived stays on
/// the server; the next sync goes on from there).
const FILE_RETRIES: u64 = 50;

/// What one sync did: the records, then the files.
#[derive(Debug, Clone, Default)]
pub struct Synced {
    /// The records' sync.
    pub records: SyncReport,
    /// Files the server now holds that it did not before this sync.
    pub files_uploaded: u64,
    /// Files still waiting to upload after it.
    pub files_waiting: usize,
    /// Why the files' upload stopped early, if it did (the records synced all the same).
    pub files_error: Option<String>,
}

/// Where a sync is: which phase, and how far.
#[derive(Debug, Clone)]
pub enum Stage {
    /// Sending and receiving records.
    Records(Progress),
    /// Sending files, after the records.
    Files(UploadProgress),
}

/// Why a sync from the app did not finish.
#[derive(Debug, Clone)]
pub enum SyncFailure {
    /// The server could not be reached (or the connection broke): changes waiting.
    Offline(u64),
    /// Anything else, as its message.
    Other(String),
}

/// What the pages know of the background sync.
#[derive(Debug, Clone, Default)]
pub struct SyncStatus {
    /// A sync is under way.
    pub running: bool,
    /// How far it has got (none before its first request is answered).
    pub progress: Option<Stage>,
    /// How many syncs this launch has finished (the script reloads when it grows).
    pub finished: u64,
}

impl SyncStatus {
    /// The line a page shows while the sync runs, Chinese and English.
    pub fn line(&self) -> (String, String) {
        match &self.progress {
            None => ("正在连接服务器…".into(), "connecting to the server…".into()),
            Some(Stage::Files(f)) => (
                format!(
                    "正在上传附件：第 {} / {} 个，{}%",
                    f.file,
                    f.files,
                    f.percent()
                ),
                format!(
                    "uploading files: {} of {}, {}%",
                    f.file,
                    f.files,
                    f.percent()
                ),
            ),
            Some(Stage::Records(Progress::Pushing { sent, total })) => (
                format!("正在上传：{sent} / {total} 条修改"),
                format!("uploading: {sent} of {total} changes"),
            ),
            Some(Stage::Records(Progress::Pulling { from, at, head })) => {
                let done = at.saturating_sub(*from);
                let all = head.saturating_sub(*from).max(done);
                (
                    format!("正在下载：{done} / {all}"),
                    format!("downloading: {done} of {all}"),
                )
            }
        }
    }

    /// The progress as the script reads it from `GET /sync/progress`.
    pub fn json(&self) -> serde_json::Value {
        let (zh, en) = self.line();
        serde_json::json!({
            "running": self.running,
            "finished": self.finished,
            "zh": zh,
            "en": en,
        })
    }
}

/// The state of the background sync, shared by the pages and the sync's thread.
#[derive(Debug, Clone, Default)]
pub struct Syncer {
    status: Arc<Mutex<SyncStatus>>,
}

impl Syncer {
    /// The file being uploaded now and how far, if one is.
    pub fn file_in_progress(&self) -> Option<UploadProgress> {
        match self.status().progress {
            Some(Stage::Files(f)) => Some(f),
            _ => None,
        }
    }

    /// The status now.
    pub fn status(&self) -> SyncStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Marks a sync as started, unless one is running already (then `false`).
    pub fn begin(&self) -> bool {
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        if s.running {
            return false;
        }
        s.running = true;
        s.progress = None;
        true
    }

    fn report(&self, p: Stage) {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .progress = Some(p);
    }

    /// Marks the sync as ended (call it after its result has been told).
    pub fn end(&self) {
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        s.running = false;
        s.progress = None;
        s.finished += 1;
    }

    /// Runs one sync of `store` with its enrolled server, reporting progress as it goes
    /// (after `begin`; then `end`). Blocking: call it on its own thread.
    pub fn run(&self, store: &mut Store, http: &HttpOptions) -> Result<Synced, SyncFailure> {
        sync_once(store, http, &mut |p| self.report(p))
    }
}

/// One sync of `store` with its enrolled server: the records, then the files the server lacks
/// (a slow photo never holds up the numbers). The failure is told as the app tells it.
pub fn sync_once(
    store: &mut Store,
    http: &HttpOptions,
    progress: &mut dyn FnMut(Stage),
) -> Result<Synced, SyncFailure> {
    let mut transport =
        account::transport(store, http).map_err(|e| SyncFailure::Other(e.to_string()))?;
    sync_over(store, &mut transport, progress).map_err(|e| match e {
        SyncError::Transport(e, pending) if e.is_retryable() => SyncFailure::Offline(pending),
        e => SyncFailure::Other(e.to_string()),
    })
}

/// One sync of `store` over `transport`: the records, then the files the server lacks. The
/// records' failure ends it; the files' failure is reported in [`Synced::files_error`] (the
/// records synced all the same). What the phone apps' sync runs too, over a transport that can
/// be cancelled.
pub fn sync_over<T: Transport + BlobTransport + WriterNames>(
    store: &mut Store,
    transport: &mut T,
    progress: &mut dyn FnMut(Stage),
) -> Result<Synced, SyncError> {
    let records = sync_with_progress(store, transport, &SyncOptions::default(), &mut |p| {
        progress(Stage::Records(p))
    })?;
    // Who wrote the other values of a conflict, for the conflict page (best effort).
    if records.conflicted_records > 0
        && let Err(e) = account::learn_writers(store, transport)
    {
        tracing::warn!("could not keep the names of conflicting writers: {e}");
    }
    let files = upload_attachments_with_progress(store, transport, FILE_RETRIES, &mut |f| {
        progress(Stage::Files(f.clone()))
    });
    let files_waiting = store.attachments_to_upload()?.len();
    let (files_uploaded, files_error) = match files {
        Ok(r) => (r.uploaded, None),
        Err(e) => (0, Some(e.to_string())),
    };
    Ok(Synced {
        records,
        files_uploaded,
        files_waiting,
        files_error,
    })
}

/// The sentence that reports a sync, Chinese and English.
pub fn sync_message(result: &Result<Synced, SyncFailure>) -> (String, String) {
    match result {
        Ok(synced) => {
            let r = &synced.records;
            let mut zh = format!("已上传 {} 条修改，已下载 {} 条", r.pushed, r.received);
            let mut en = format!("uploaded {} changes, downloaded {}", r.pushed, r.received);
            if !r.rejected.is_empty() {
                let list: Vec<String> = r
                    .rejected
                    .iter()
                    .map(|x| format!("{}（{}）", x.id, x.message))
                    .collect();
                zh.push_str(&format!(
                    "；服务器拒收 {} 条记录，已留在本机，下次同步再试：{}",
                    r.rejected.len(),
                    list.join("；")
                ));
                en.push_str(&format!(
                    "; the server refused {} records, kept on this device and offered again next sync: {}",
                    r.rejected.len(),
                    list.join("; ")
                ));
            }
            if r.held > 0 {
                zh.push_str(&format!(
                    "；{} 条修改不在本机可上传的范围内，留在本机",
                    r.held
                ));
                en.push_str(&format!(
                    "; {} changes are outside what this device may upload and stay here",
                    r.held
                ));
            }
            if r.conflicted_records > 0 {
                zh.push_str(&format!("；{} 条记录有冲突待处理", r.conflicted_records));
                en.push_str(&format!(
                    "; {} records have conflicts",
                    r.conflicted_records
                ));
            }
            if synced.files_uploaded > 0 {
                zh.push_str(&format!("；已上传附件 {} 个", synced.files_uploaded));
                en.push_str(&format!("; {} files uploaded", synced.files_uploaded));
            }
            if synced.files_waiting > 0 {
                zh.push_str(&format!(
                    "；{} 个附件等待上传，下次同步接着传，已传部分不会重传",
                    synced.files_waiting
                ));
                en.push_str(&format!(
                    "; {} files wait to upload and go on from where they stopped next sync",
                    synced.files_waiting
                ));
            }
            if let Some(e) = &synced.files_error {
                zh.push_str(&format!("（附件上传中断：{e}）"));
                en.push_str(&format!(" (file upload stopped: {e})"));
            }
            (zh, en)
        }
        Err(SyncFailure::Offline(pending)) => (
            format!("离线，稍后再试，数据未丢失（{pending} 条修改等待上传）"),
            format!(
                "offline: try again later; nothing was lost ({pending} changes wait to upload)"
            ),
        ),
        Err(SyncFailure::Other(message)) => (
            format!("同步未完成，数据未丢失：{message}"),
            format!("the sync did not finish; nothing was lost: {message}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_and_refused_syncs_say_nothing_was_lost() {
        let (zh, _) = sync_message(&Err(SyncFailure::Offline(3)));
        assert!(zh.starts_with("离线，稍后再试，数据未丢失"), "{zh}");
        let report = SyncReport {
            pushed: 12,
            received: 340,
            rejected: vec![fieldsync_protocol::wire::RejectedRecord {
                id: "r1".into(),
                code: "header_mismatch".into(),
                message: "不符".into(),
            }],
            ..Default::default()
        };
        let (zh, en) = sync_message(&Ok(Synced {
            records: report,
            files_uploaded: 2,
            files_waiting: 1,
            files_error: None,
        }));
        assert!(zh.starts_with("已上传 12 条修改，已下载 340 条"), "{zh}");
        assert!(
            zh.contains("服务器拒收 1 条记录") && zh.contains("r1"),
            "{zh}"
        );
        assert!(en.contains("refused 1 records"), "{en}");
        assert!(
            zh.contains("已上传附件 2 个") && zh.contains("1 个附件等待上传"),
            "{zh}"
        );
    }

    #[test]
    fn one_sync_at_a_time_and_progress_in_words() {
        let s = Syncer::default();
        assert!(s.begin());
        assert!(!s.begin(), "a second sync must wait for the first");
        assert_eq!(s.status().line().0, "正在连接服务器…");
        s.report(Stage::Records(Progress::Pushing { sent: 3, total: 10 }));
        assert_eq!(s.status().line().0, "正在上传：3 / 10 条修改");
        s.report(Stage::Records(Progress::Pulling {
            from: 100,
            at: 150,
            head: 300,
        }));
        assert_eq!(s.status().line().1, "downloading: 50 of 200");
        assert!(s.file_in_progress().is_none());
        s.report(Stage::Files(UploadProgress {
            file: 2,
            files: 5,
            sha256: "ab".repeat(32),
            sent: 400,
            size: 1000,
        }));
        assert_eq!(s.status().line().0, "正在上传附件：第 2 / 5 个，40%");
        assert_eq!(s.file_in_progress().map(|f| f.percent()), Some(40));
        s.end();
        let done = s.status();
        assert!(!done.running && done.finished == 1);
        assert_eq!(done.json()["running"], false);
        assert!(s.begin(), "after the end a new sync may start");
    }
}
