//! The push half of a sync: every unacknowledged change in batches whose size follows the line
//! ([`PushWindow`]), one push on the wire while the next is read and encoded, new records in
//! their compact form until a server refuses protocol version 2.

use automerge::ChangeHash;
use fieldsync_protocol::wire::PushResponse;

use super::{
    Progress, SyncError, SyncOptions, SyncReport, Transport, TransportError, is_cut,
    transport_error,
};
use crate::store::Store;

/// The smallest push batch (change bytes) a sync shrinks to after broken connections.
pub const MIN_PUSH_BATCH_BYTES: usize = 8 << 10;

/// The first push batch of a sync (change bytes): the batches double from here up to
/// [`SyncOptions::push_batch_bytes`] while the line holds, so a line that breaks early costs
/// little resent.
pub const FIRST_PUSH_BATCH_BYTES: usize = 64 << 10;

/// The size of push batches over a line that may break: start small and double while pushes
/// are acknowledged; halve after a cut, and from then on grow by a quarter per acknowledged
/// batch (a line that broke once is likely to break again at about the same length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushWindow {
    bytes: usize,
    max: usize,
    cut_before: bool,
}

impl PushWindow {
    /// A window growing up to `max` change bytes a batch.
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        PushWindow {
            bytes: FIRST_PUSH_BATCH_BYTES.min(max),
            max,
            cut_before: false,
        }
    }

    /// The change bytes of the next batch.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// A batch was acknowledged.
    pub fn acknowledged(&mut self) {
        let grown = if self.cut_before {
            self.bytes + self.bytes / 4
        } else {
            self.bytes.saturating_mul(2)
        };
        self.bytes = grown.min(self.max);
    }

    /// A batch was cut by a broken connection.
    pub fn cut(&mut self) {
        self.cut_before = true;
        self.bytes = (self.bytes / 2).max(MIN_PUSH_BATCH_BYTES.min(self.max));
    }
}

/// Where a push round stopped.
enum RoundEnd {
    /// Everything was pushed.
    Done,
    /// A batch was cut: resume after this local log position (the batches before it are
    /// acknowledged).
    Cut(i64, TransportError),
    /// The server speaks only protocol version 1 and refused a batch with compact creations:
    /// resume after this local log position, in version 1.
    OnlyVersion1(i64),
}

/// Whether `e` is a server's refusal of a push's protocol version: a server that speaks only
/// version 1 answers a version-2 push 400 `invalid_body` "protocol version 2 is not supported";
/// later ones say `unsupported_version`.
fn refuses_version(e: &TransportError) -> bool {
    matches!(e, TransportError::Refused { status: 400, code, message, .. }
        if code == "unsupported_version"
            || (code == "invalid_body" && message.contains("protocol version")))
}

/// The counts a push keeps across rounds.
struct PushState {
    total: u64,
    sent: u64,
    requests: usize,
    window: PushWindow,
    /// Whether pushes send new records in their compact form (protocol version 2): until a
    /// server refuses it.
    compact: bool,
}

pub(super) fn push_all(
    store: &mut Store,
    transport: &mut dyn Transport,
    options: &SyncOptions,
    report: &mut SyncReport,
    progress: &mut dyn FnMut(Progress),
) -> Result<(), SyncError> {
    let mut state = PushState {
        total: store.pending_upload()?,
        sent: 0,
        requests: 0,
        window: PushWindow::new(options.push_batch_bytes),
        compact: !report.only_version_1,
    };
    let mut after = 0;
    let mut cuts_in_a_row = 0;
    loop {
        let acked_before = report.push_requests;
        match push_round(
            store, transport, options, report, progress, &mut state, after,
        )? {
            RoundEnd::Done => return Ok(()),
            RoundEnd::OnlyVersion1(resume_after) => {
                tracing::info!("the server speaks protocol version 1: pushing in it");
                state.compact = false;
                report.only_version_1 = true;
                after = resume_after;
            }
            RoundEnd::Cut(resume_after, e) => {
                if report.push_requests > acked_before {
                    cuts_in_a_row = 0;
                }
                cuts_in_a_row += 1;
                if cuts_in_a_row > options.push_retries {
                    return Err(transport_error(e));
                }
                state.window.cut();
                tracing::info!(
                    batch_bytes = state.window.bytes(),
                    "a push was cut ({e}); going on with smaller batches"
                );
                after = resume_after;
            }
        }
    }
}

/// Pushes batches from local log position `after` until everything is acknowledged or a batch
/// fails.
fn push_round(
    store: &mut Store,
    transport: &mut dyn Transport,
    options: &SyncOptions,
    report: &mut SyncReport,
    progress: &mut dyn FnMut(Progress),
    state: &mut PushState,
    mut after: i64,
) -> Result<RoundEnd, SyncError> {
    let max_requests = options.max_requests;
    let encode = transport.push_encoder();
    // The next batch is read and encoded here while a sending thread has the current one on the
    // wire; at most one push is in flight. A batch is marked acknowledged only when its answer
    // is in, so stopping anywhere loses nothing: unacknowledged changes are pushed again.
    std::thread::scope(|scope| {
        /// A batch on its way: where it starts in the local log, its hashes and their records.
        type Sent = (i64, Vec<ChangeHash>, Vec<String>);
        let (batches_tx, batches_rx) = std::sync::mpsc::sync_channel::<(Vec<u8>, Sent)>(0);
        let (answers_tx, answers_rx) = std::sync::mpsc::channel();
        scope.spawn(move || {
            for (body, sent) in batches_rx {
                let answer = transport.push_encoded(body);
                let failed = answer.is_err();
                if answers_tx.send((sent, answer)).is_err() || failed {
                    return;
                }
            }
        });
        let mut cut: Option<(i64, TransportError)> = None;
        let mut only_version_1: Option<i64> = None;
        let mut handle = |store: &mut Store,
                          state: &mut PushState,
                          ((start, hashes, owners), answer): (
            Sent,
            Result<PushResponse, TransportError>,
        )|
         -> Result<(), SyncError> {
            let response = match answer {
                Ok(r) => r,
                Err(e) if is_cut(&e) => {
                    cut = Some((start, e));
                    return Ok(());
                }
                Err(e) if state.compact && refuses_version(&e) => {
                    only_version_1 = Some(start);
                    return Ok(());
                }
                Err(e) => return Err(transport_error(e)),
            };
            // The changes of refused records stay unacknowledged: offered again next time.
            let refused: std::collections::HashSet<&str> =
                response.rejected.iter().map(|r| r.id.as_str()).collect();
            let acked: Vec<ChangeHash> = hashes
                .iter()
                .zip(&owners)
                .filter(|(_, owner)| !refused.contains(owner.as_str()))
                .map(|(h, _)| *h)
                .collect();
            for r in &response.rejected {
                tracing::warn!(record = %r.id, code = %r.code, "the server refused a record: {}", r.message);
            }
            store.mark_pushed(&acked)?;
            report.push_requests += 1;
            report.pushed += acked.len() as u64;
            report.duplicates += response.duplicates;
            report.rejected.extend(response.rejected);
            state.sent += hashes.len() as u64;
            state.window.acknowledged();
            progress(Progress::Pushing {
                sent: state.sent,
                total: state.total,
            });
            Ok(())
        };
        let outcome = loop {
            let batch = match store.outbox_batch(after, state.window.bytes()) {
                Ok(Some(batch)) => batch,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e.into()),
            };
            state.requests += 1;
            if state.requests > max_requests {
                break Err(SyncError::TooManyPages(max_requests));
            }
            let start = after;
            after = batch.last_seq;
            let mut request = batch.request;
            if state.compact {
                request.compact_creations();
            }
            let body = encode(&request);
            // Blocks until the sender has taken it, i.e. until the previous push is answered.
            let handed_over = batches_tx
                .send((body, (start, batch.hashes, batch.owners)))
                .is_ok();
            while let Ok(answer) = answers_rx.try_recv() {
                if let Err(e) = handle(store, state, answer) {
                    drop(batches_tx);
                    return Err(e);
                }
            }
            if !handed_over {
                // The sender stopped after a failed push; its answer is handled below.
                break Ok(());
            }
        };
        drop(batches_tx);
        for answer in answers_rx {
            handle(store, state, answer)?;
        }
        outcome?;
        Ok(match (only_version_1, cut) {
            (Some(start), _) => RoundEnd::OnlyVersion1(start),
            (None, Some((start, e))) => RoundEnd::Cut(start, e),
            (None, None) => RoundEnd::Done,
        })
    })
}
