//! Sync with the server: push every unacknowledged change in bounded batches, then pull the
//! server's log page by page. The network is reached only through a [`Transport`].
//!
//! The decisions (what to do after each pull page) are a pure function, [`decide`], so that they
//! can be tested as a table; [`sync`] does the I/O around them.

use fieldsync_protocol::wire::{
    self, DEFAULT_PAGE_BYTES, DEFAULT_PUSH_BATCH_BYTES, MIN_PAGE_BYTES, PullQuery, PullResponse,
    PushRequest, PushResponse,
};

use fieldsync_protocol::wire::WireRecord;

use crate::store::{Incoming, PageEnd, Store, StoreError};

mod push;
use push::push_all;
pub use push::{FIRST_PUSH_BATCH_BYTES, MIN_PUSH_BATCH_BYTES, PushWindow};

/// How a transport failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// No connection could be made (no network, server down): nothing was sent.
    #[error("cannot reach the server: {0}")]
    Unreachable(String),
    /// The connection broke while a request or response was under way: what the server
    /// acknowledged before stays acknowledged, the rest is sent again next time.
    #[error("the connection broke during the exchange: {0}")]
    Interrupted(String),
    /// The server answered with an error.
    #[error("the server refused the request ({status} {code}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The error code from the server's JSON body.
        code: String,
        /// The server's message.
        message: String,
        /// The server's hint, if any.
        hint: Option<String>,
        /// How long the server asked to wait before trying again (its `Retry-After`, sent with
        /// 429 and 503 answers).
        retry_after: Option<std::time::Duration>,
    },
    /// The server answered with something that is not a valid sync message.
    #[error("the server's answer is not a valid sync message: {0}")]
    Protocol(String),
}

impl TransportError {
    /// Whether trying again later may succeed (network trouble, a busy server).
    pub fn is_retryable(&self) -> bool {
        match self {
            TransportError::Unreachable(_) | TransportError::Interrupted(_) => true,
            TransportError::Refused { status, .. } => {
                *status == 408 || *status == 429 || *status >= 500
            }
            TransportError::Protocol(_) => false,
        }
    }

    /// How long the server asked to wait before trying again, if it did (`Retry-After`).
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            TransportError::Refused { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// The way a store talks to a server: one call per request. Implemented over HTTP by
/// [`crate::http::HttpTransport`]; tests implement it in memory or through faulty proxies.
/// `Send`, because a sync fetches the next pull page on another thread while it applies the
/// current one, and sends a push on another thread while it encodes the next.
pub trait Transport: Send {
    /// Sends one push.
    fn push(&mut self, request: &PushRequest) -> Result<PushResponse, TransportError>;
    /// Asks for one page of the server's log.
    fn pull(&mut self, query: &PullQuery) -> Result<PullResponse, TransportError>;
    /// How this transport encodes a push for the wire. A sync encodes the next push with it
    /// while the current one is under way, then hands it to [`Transport::push_encoded`]. The
    /// default is the CBOR message as it is.
    fn push_encoder(&self) -> fn(&PushRequest) -> Vec<u8> {
        wire::encode::<PushRequest>
    }
    /// Sends a push that [`Transport::push_encoder`] encoded. The default decodes it and calls
    /// [`Transport::push`].
    fn push_encoded(&mut self, body: Vec<u8>) -> Result<PushResponse, TransportError> {
        let request: PushRequest = wire::decode(&body, "push")
            .map_err(|e| TransportError::Protocol(format!("push message: {e}")))?;
        self.push(&request)
    }
}

/// Why a sync stopped.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The transport failed. Everything acknowledged before the failure is kept; run sync again.
    #[error("{0} (nothing was lost: {1} changes wait to be uploaded; sync again later)")]
    Transport(TransportError, u64),
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The server kept announcing more pages beyond any sane number.
    #[error("the server sent more than {0} pages in one sync; stopping to avoid a loop")]
    TooManyPages(usize),
    /// An administrator revoked this device: its local store has been wiped, as the server
    /// asked.
    #[error(
        "此设备已被管理员停用，本机数据已清除 / this device was revoked by an administrator; \
         its local data has been wiped"
    )]
    Revoked,
}

/// Knobs of one sync.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// The most change bytes in one push request.
    pub push_batch_bytes: usize,
    /// The most change bytes asked for in one pull page.
    pub page_bytes: usize,
    /// The most requests of each kind in one sync (a guard against a misbehaving server).
    pub max_requests: usize,
    /// How many pushes in a row a broken connection may cut before the sync gives up. After
    /// each cut the push goes on from the first change not acknowledged, in batches half as
    /// large (at least [`MIN_PUSH_BATCH_BYTES`]); each acknowledged batch lets the next grow
    /// again. 0: the first cut ends the sync.
    pub push_retries: u32,
    /// How many pulls in a row a broken connection may cut before the sync gives up. After each
    /// cut the pull goes on from the last page written, asking for pages half as large (at least
    /// the protocol's 16 KiB) for the rest of the sync: a line that cuts every connection after
    /// the same number of bytes would otherwise cut the same page again at every attempt.
    /// 0: the first cut ends the sync.
    pub pull_retries: u32,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            push_batch_bytes: DEFAULT_PUSH_BATCH_BYTES,
            page_bytes: DEFAULT_PAGE_BYTES,
            max_requests: 100_000,
            push_retries: 10,
            pull_retries: 10,
        }
    }
}

/// What one sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Changes pushed and acknowledged.
    pub pushed: u64,
    /// Of those, changes the server already had.
    pub duplicates: u64,
    /// Push requests made.
    pub push_requests: u64,
    /// Changes received that this store did not have.
    pub received: u64,
    /// Pull requests made.
    pub pull_requests: u64,
    /// Received changes still waiting for a dependency.
    pub waiting: u64,
    /// Whether the server had lost its log and this device re-pushed everything.
    pub server_reset: bool,
    /// Whether this device had lost changes it once pushed and pulled them back.
    pub recovered_own: bool,
    /// Records with conflicts after the sync.
    pub conflicted_records: u64,
    /// Changes kept on this device and not uploaded because their village is outside what it
    /// may write now (export them as a bundle for someone who may).
    pub held: u64,
    /// Records removed because this device may no longer see them.
    pub removed_records: u64,
    /// The device's scope grew during this sync, so it pulled the log again from the start.
    pub rescoped: bool,
    /// Records the server refused while storing the rest, with its reasons. Their changes stay
    /// on this device, unacknowledged, and are offered again on the next sync.
    pub rejected: Vec<fieldsync_protocol::wire::RejectedRecord>,
    /// The server speaks only protocol version 1: it refused new records in their compact form,
    /// and from then on this sync sent them whole.
    pub only_version_1: bool,
}

/// What to do after a pull page, decided from the page and the store's own count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Apply the page and pull the next one.
    ApplyAndContinue,
    /// Apply the page; the pull is complete.
    ApplyAndFinish,
    /// Apply the page; then pull everything again including this device's own pushes, because
    /// the server holds more of them than this store remembers (it was restored from a backup).
    ApplyAndRecoverOwn,
    /// The server does not have the log this device saw: forget acknowledgements, re-push
    /// everything, pull from the start.
    ResetServer,
}

/// Decides what to do with a pull page. `local_pushed` is how many of its own pushes the store
/// remembers as acknowledged; `recovering` is true while already pulling with `include_own`.
pub fn decide(page: &PullResponse, local_pushed: u64, recovering: bool) -> Next {
    if page.reset {
        Next::ResetServer
    } else if page.more {
        Next::ApplyAndContinue
    } else if !recovering && page.pushed_by_you > local_pushed {
        Next::ApplyAndRecoverOwn
    } else {
        Next::ApplyAndFinish
    }
}

/// How far a sync has got, reported after each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Changes acknowledged so far out of those waiting when the sync began.
    Pushing {
        /// Acknowledged so far.
        sent: u64,
        /// Waiting when the push began.
        total: u64,
    },
    /// Position in the server's log: from where this pull began to the server's newest.
    Pulling {
        /// Where this pull began.
        from: u64,
        /// Applied up to here.
        at: u64,
        /// The server's newest position.
        head: u64,
    },
}

/// Syncs `store` with the server behind `transport`: pushes every unacknowledged change, then
/// pulls until up to date. Safe to interrupt at any point; run it again to continue.
pub fn sync(
    store: &mut Store,
    transport: &mut dyn Transport,
    options: &SyncOptions,
) -> Result<SyncReport, SyncError> {
    sync_with_progress(store, transport, options, &mut |_| {})
}

/// [`sync`], calling `progress` after every request (for a progress bar).
pub fn sync_with_progress(
    store: &mut Store,
    transport: &mut dyn Transport,
    options: &SyncOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<SyncReport, SyncError> {
    let mut report = SyncReport::default();
    let result = sync_inner(store, transport, options, &mut report, progress);
    match result {
        Ok(()) => {
            report.conflicted_records = store
                .list(&crate::store::Filter {
                    conflicted: true,
                    include_deleted: true,
                    ..Default::default()
                })?
                .len() as u64;
            Ok(report)
        }
        Err(SyncError::Transport(TransportError::Refused { code, .. }, _))
            if code == fieldsync_protocol::auth::REVOKED_CODE =>
        {
            tracing::warn!("this device was revoked: wiping the local store");
            store.wipe()?;
            Err(SyncError::Revoked)
        }
        Err(SyncError::Transport(e, _)) => {
            let waiting = store.pending_upload().unwrap_or(0);
            Err(SyncError::Transport(e, waiting))
        }
        Err(e) => Err(e),
    }
}

fn is_out_of_scope(e: &SyncError) -> bool {
    matches!(e, SyncError::Transport(TransportError::Refused { status: 403, code, .. }, _)
        if code == "out_of_scope")
}

fn sync_inner(
    store: &mut Store,
    transport: &mut dyn Transport,
    options: &SyncOptions,
    report: &mut SyncReport,
    progress: &mut dyn FnMut(Progress),
) -> Result<(), SyncError> {
    match push_all(store, transport, options, report, progress) {
        Ok(()) => {}
        // The scope shrank since the last sync: learn it from a pull, then push what may go.
        Err(e) if is_out_of_scope(&e) => {
            tracing::warn!("push refused as out of scope: refreshing the scope and retrying");
            pull_all(store, transport, options, report, false, progress)?;
            push_all(store, transport, options, report, progress)?;
        }
        Err(e) => return Err(e),
    }
    let next = pull_all(store, transport, options, report, false, progress)?;
    if report.rescoped {
        tracing::info!("the scope grew: pulling from the start to fetch what is now visible");
        store.rewind_cursor()?;
        pull_all(store, transport, options, report, false, progress)?;
    }
    report.held = store.held_changes()?;
    match next {
        Next::ResetServer => {
            tracing::warn!("the server lost its log (restored from a backup?): re-pushing");
            report.server_reset = true;
            store.forget_server_state()?;
            push_all(store, transport, options, report, progress)?;
            pull_all(store, transport, options, report, false, progress)?;
        }
        Next::ApplyAndRecoverOwn => {
            tracing::warn!("the server has changes of this device that it lost: pulling back");
            report.recovered_own = true;
            store.rewind_cursor()?;
            pull_all(store, transport, options, report, true, progress)?;
        }
        _ => {}
    }
    Ok(())
}

/// Fetches one pull page and writes creations in their compact form back as changes, here on
/// the fetching thread (they are then checked with all the others). A page whose compact
/// creations cannot be written back exactly (a rebuilt change's checksum does not match: this
/// build and the server's rebuild a genesis differently) is asked for again whole, and so is
/// every page after it in this sync: `compact` turns false.
fn fetch_page(
    transport: &mut dyn Transport,
    mut query: PullQuery,
    compact: &mut bool,
) -> Result<PullResponse, TransportError> {
    query.created = *compact;
    let mut page = transport.pull(&query)?;
    if let Err(problem) = expand_page(&mut page) {
        if !*compact {
            return Err(TransportError::Protocol(problem));
        }
        tracing::warn!("{problem}; asking for whole changes from here on");
        *compact = false;
        query.created = false;
        page = transport.pull(&query)?;
        expand_page(&mut page).map_err(TransportError::Protocol)?;
    }
    Ok(page)
}

/// Writes every compact creation of `page` back as changes and checks that each rebuilt change
/// is the one its author wrote (its checksum).
fn expand_page(page: &mut PullResponse) -> Result<(), String> {
    for record in page.records.iter_mut().filter(|r| r.created.is_some()) {
        let header = record.header().map_err(|e| e.to_string())?;
        record.expand_creation(&header).map_err(|e| e.to_string())?;
        let first = &record.changes[1];
        let intact = fieldsync_protocol::quick_hash(first).is_some_and(|h| h.0[..4] == first[4..8]);
        if !intact {
            return Err(format!(
                "the compact creation of record {} does not rebuild to its author's change",
                record.id
            ));
        }
    }
    Ok(())
}

fn transport_error(e: TransportError) -> SyncError {
    SyncError::Transport(e, 0)
}

/// Whether a failed push or pull was cut by the line (the connection broke, or the server gave
/// up on a stalled body): worth sending again at once, smaller.
fn is_cut(e: &TransportError) -> bool {
    matches!(
        e,
        TransportError::Interrupted(_) | TransportError::Refused { status: 408, .. }
    )
}

/// Pulls until up to date, going on after cut connections (see [`SyncOptions::pull_retries`]).
fn pull_all(
    store: &mut Store,
    transport: &mut dyn Transport,
    options: &SyncOptions,
    report: &mut SyncReport,
    include_own: bool,
    progress: &mut dyn FnMut(Progress),
) -> Result<Next, SyncError> {
    let mut options = options.clone();
    let mut cuts_in_a_row = 0;
    loop {
        let pages_before = report.pull_requests;
        match pull_pages(store, transport, &options, report, include_own, progress) {
            Err(SyncError::Transport(e, _)) if is_cut(&e) => {
                if report.pull_requests > pages_before {
                    cuts_in_a_row = 0;
                }
                cuts_in_a_row += 1;
                if cuts_in_a_row > options.pull_retries {
                    return Err(transport_error(e));
                }
                let floor = MIN_PAGE_BYTES.min(options.page_bytes);
                options.page_bytes = (options.page_bytes / 2).max(floor);
                let page_bytes = options.page_bytes;
                tracing::info!(
                    page_bytes,
                    "a pull was cut ({e}); going on with smaller pages"
                );
            }
            other => return other,
        }
    }
}

/// Pulls pages of `options.page_bytes` from the store's cursor until up to date or a request
/// fails.
fn pull_pages(
    store: &mut Store,
    transport: &mut dyn Transport,
    options: &SyncOptions,
    report: &mut SyncReport,
    include_own: bool,
    progress: &mut dyn FnMut(Progress),
) -> Result<Next, SyncError> {
    let cursor = store.cursor()?;
    let device = store.device_id().to_string();
    let max_pages = options.max_requests;
    let page_bytes = options.page_bytes;
    // The next page is fetched while this one is applied: a fetching thread walks the server's
    // log from the store's cursor (each page says where the next starts) and hands pages over
    // one at a time. The store's cursor still moves only when a page has been applied, so
    // stopping anywhere loses nothing; a page fetched but not applied is simply fetched again.
    std::thread::scope(|scope| {
        let (pages_tx, pages_rx) = std::sync::mpsc::sync_channel(0);
        scope.spawn(move || {
            let (mut after, mut after_hash) = (cursor.seq, cursor.hash.as_ref().map(hex::encode));
            let mut compact = true;
            for _ in 0..max_pages {
                let query = PullQuery {
                    device: device.clone(),
                    after,
                    after_hash: after_hash.take(),
                    max_bytes: Some(page_bytes),
                    include_own,
                    created: true,
                };
                let page = fetch_page(transport, query, &mut compact);
                let last = match &page {
                    Ok(p) => {
                        after = p.next;
                        after_hash = p.next_hash.as_ref().map(hex::encode);
                        p.reset || !p.more
                    }
                    Err(_) => true,
                };
                // A closed channel means the applying side stopped (an error): stop too.
                if pages_tx.send(page).is_err() || last {
                    return;
                }
            }
        });
        // Pages are applied in a pipeline: while page n is merged (Automerge's work, on every
        // core) the previous page is written (one SQLite transaction, with its cursor). A record
        // of page n that the unwritten previous page also holds is read and merged only after
        // that write, so every record is always read as the store last wrote it.
        let mut pending: Option<(Incoming, PageEnd)> = None;
        let write = |store: &mut Store,
                     report: &mut SyncReport,
                     progress: &mut dyn FnMut(Progress),
                     (work, end): (Incoming, PageEnd)|
         -> Result<(), SyncError> {
            let (at, head) = (end.next, end.head);
            let stats = store.write_page(work, end)?;
            report.received += stats.new_changes;
            report.waiting += stats.waiting;
            progress(Progress::Pulling {
                from: cursor.seq,
                at,
                head,
            });
            Ok(())
        };
        let known_epoch = store.server_epoch()?;
        for page in pages_rx {
            let mut page = match page {
                Ok(page) => page,
                Err(e) => {
                    // Keep what arrived before the connection broke.
                    if let Some(p) = pending.take() {
                        write(store, report, progress, p)?;
                    }
                    return Err(transport_error(e));
                }
            };
            report.pull_requests += 1;
            // A new epoch: an administrator declared the server restored from a backup, so the
            // log this store's cursor points into is gone, as with `reset`.
            if let (Some(theirs), Some(ours)) = (&page.epoch, &known_epoch)
                && theirs != ours
            {
                page.reset = true;
            }
            // Only the last page compares the server's count of this device's pushes with the
            // store's (a count over the change log: not worth doing for every page).
            let local_pushed = if page.more || page.reset {
                0
            } else {
                store.pushed_count()?
            };
            let next = decide(&page, local_pushed, include_own);
            if next == Next::ResetServer {
                if let Some(p) = pending.take() {
                    write(store, report, progress, p)?;
                }
                return Ok(next);
            }
            if let Some(scope) = &page.scope {
                if store.scope()?.as_ref() != Some(scope)
                    && let Some(p) = pending.take()
                {
                    // The scope changes: write what was pulled under the old one first.
                    write(store, report, progress, p)?;
                }
                let change = store.apply_scope(scope)?;
                report.removed_records += change.removed;
                report.rescoped |= change.grew;
            }
            let unwritten = pending
                .as_ref()
                .map(|(w, _)| w.merged_ids())
                .unwrap_or_default();
            let (after_write, now): (Vec<&WireRecord>, Vec<&WireRecord>) = page
                .records
                .iter()
                .partition(|r| unwritten.contains(r.id.as_str()));
            let mut work = Incoming::new(true);
            store.prepare_incoming(&now, &mut work)?;
            let previous = pending.take();
            let (merged, written) = std::thread::scope(|scope| {
                let merging = scope.spawn(move || work.merge().map(|()| work));
                let written = previous.map(|p| write(store, report, progress, p));
                let merged = merging.join().expect("merge thread panicked");
                (merged, written)
            });
            written.transpose()?;
            let mut work = merged?;
            if !after_write.is_empty() {
                store.prepare_incoming(&after_write, &mut work)?;
                work.merge()?;
            }
            pending = Some((work, PageEnd::of(&page)));
            if next != Next::ApplyAndContinue {
                if let Some(p) = pending.take() {
                    write(store, report, progress, p)?;
                }
                return Ok(next);
            }
        }
        if let Some(p) = pending.take() {
            write(store, report, progress, p)?;
        }
        Err(SyncError::TooManyPages(max_pages))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fieldsync_protocol::wire::PROTOCOL_VERSION;

    fn page(reset: bool, more: bool, pushed_by_you: u64) -> PullResponse {
        PullResponse {
            v: PROTOCOL_VERSION,
            reset,
            head: 10,
            next: 10,
            next_hash: None,
            more,
            pushed_by_you,
            records: vec![],
            scope: None,
            epoch: None,
        }
    }

    #[test]
    fn decisions_after_a_pull_page() {
        let cases = [
            // (reset, more, server count, local count, recovering) => next
            ((false, false, 3, 3, false), Next::ApplyAndFinish),
            ((false, true, 3, 3, false), Next::ApplyAndContinue),
            ((true, false, 3, 3, false), Next::ResetServer),
            ((true, true, 0, 9, false), Next::ResetServer),
            ((false, false, 5, 3, false), Next::ApplyAndRecoverOwn),
            ((false, true, 5, 3, false), Next::ApplyAndContinue),
            ((false, false, 5, 3, true), Next::ApplyAndFinish),
            ((false, false, 2, 3, false), Next::ApplyAndFinish),
        ];
        for ((reset, more, server, local, recovering), want) in cases {
            assert_eq!(
                decide(&page(reset, more, server), local, recovering),
                want,
                "reset={reset} more={more} server={server} local={local}"
            );
        }
    }

    #[test]
    fn which_errors_are_worth_retrying() {
        assert!(TransportError::Unreachable("x".into()).is_retryable());
        assert!(TransportError::Interrupted("x".into()).is_retryable());
        let refused = |status| TransportError::Refused {
            status,
            code: "c".into(),
            message: "m".into(),
            hint: None,
            retry_after: None,
        };
        assert!(refused(503).is_retryable());
        assert!(refused(429).is_retryable());
        assert!(!refused(400).is_retryable());
        assert!(!refused(403).is_retryable());
        assert!(!TransportError::Protocol("x".into()).is_retryable());
    }
}
