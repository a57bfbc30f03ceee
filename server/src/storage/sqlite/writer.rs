//! The SQLite storage's writer thread: it owns the only write connection and runs every write
//! in turn (pushes, other writes sent as closures) and, when sync traffic is quiet, merges dirty
//! records in chunks of about 100 ms each. One writer means log sequence numbers become visible in commit order.

use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use fieldsync_protocol::template::{TEMPLATE_KIND, Template};
use rusqlite::{Connection, params};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::now_ms;
use crate::storage::{CheckedPush, PushOutcome, Pusher, StorageError};

/// How many records the first merge transaction handles before the writer looks for pushes
/// again; later chunks are sized so that each takes about [`CHUNK_TIME`].
pub(super) const MERGE_CHUNK: usize = 64;
/// How long one merge transaction should take: what a push arriving meanwhile waits at most,
/// give or take. Longer transactions make fewer commits and fewer full-text index segments to
/// merge.
const CHUNK_TIME: Duration = Duration::from_millis(100);
/// How many records of a chunk are merged at once while the writer writes the ones before.
const MERGE_SLICE: usize = 64;
/// The bounds of a chunk's size.
const CHUNK_SIZES: std::ops::RangeInclusive<usize> = 16..=1024;
/// How long merging waits after the last push or pull before it starts.
const MERGE_QUIET: Duration = Duration::from_millis(250);
/// The longest merging is postponed by continuing sync traffic; after that, chunks alternate
/// with requests. Measured with 1 s instead (BENCHMARKS.md, 2026-12-07): on a machine whose
/// cores the devices share, a 10,000-record push and pull took 2.6 s longer and the merge ended
/// 2 s sooner, the same time until everything was merged; so the push keeps the cores.
const MERGE_MAX_DELAY: Duration = Duration::from_secs(5);
/// While a long merge runs, how often [`crate::storage::ChangeLog::data_version`] moves (it also moves whenever
/// merging has caught up).
const VERSION_INTERVAL: Duration = Duration::from_secs(2);

/// What the writer thread is asked to do.
pub(super) enum Command {
    /// Check a push with `crate::ingest` and store what it accepts.
    Push(
        Pusher,
        CheckedPush,
        oneshot::Sender<Result<PushOutcome, StorageError>>,
    ),
    /// A device pulled (its `last_pull`; sync traffic postpones merging).
    PulledBy(Uuid),
    /// Any other write, run on the writer's connection.
    Run(Box<dyn FnOnce(&mut Connection) + Send>),
    /// Finish: answer, then stop.
    Flush(oneshot::Sender<()>),
}

pub(super) struct Writer {
    pub(super) conn: Connection,
    /// Whether this writer merges records (not when opened for administration).
    pub(super) merge: bool,
    /// See [`crate::storage::ChangeLog::data_version`].
    pub(super) version: Arc<std::sync::atomic::AtomicU64>,
    /// Records merged since `version` last moved.
    pub(super) unannounced: bool,
    /// When `version` last moved.
    pub(super) announced_at: Instant,
    /// Parsed template versions per campaign, dropped whenever a template record is merged.
    pub(super) templates: TemplateCache,
    /// How many records the next merge chunk takes (see [`CHUNK_TIME`]).
    pub(super) chunk: usize,
    /// Whether anything was written since the last checkpoint.
    pub(super) logged: bool,
}

/// Parsed template versions per campaign (oldest first), loaded on first use.
#[derive(Default)]
pub(super) struct TemplateCache {
    by_campaign: std::collections::HashMap<String, Arc<Vec<Arc<Template>>>>,
}

impl TemplateCache {
    /// Every parsed version of a campaign's template, oldest first (see [`crate::templates`]).
    pub(super) fn for_campaign(
        &mut self,
        conn: &Connection,
        campaign: &str,
    ) -> Result<Arc<Vec<Arc<Template>>>, StorageError> {
        if let Some(t) = self.by_campaign.get(campaign) {
            return Ok(t.clone());
        }
        let mut stmt = conn.prepare_cached(
            "SELECT fields FROM records
             WHERE kind = ?1 AND campaign = ?2 AND deleted = 0 AND fields IS NOT NULL",
        )?;
        let fields: Vec<String> = stmt
            .query_map(params![TEMPLATE_KIND, campaign], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<_>>()?;
        let out = Arc::new(crate::templates::versions(
            fields.iter().map(String::as_str),
        ));
        self.by_campaign.insert(campaign.to_string(), out.clone());
        Ok(out)
    }

    /// Forgets a campaign's templates (a template record of it was merged).
    pub(super) fn forget(&mut self, campaign: &str) {
        self.by_campaign.remove(campaign);
    }
}

impl Writer {
    /// Copies the write-ahead log into the database as far as readers allow (PASSIVE: it waits
    /// for nobody), so that the next writes start on a short log.
    fn checkpoint(&mut self) {
        self.logged = false;
        if let Err(e) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        {
            tracing::warn!(error = %e, "checkpointing the database's log failed; will retry");
        }
    }

    /// Runs commands until the channel closes or a flush arrives.
    pub(super) fn run(mut self, rx: mpsc::Receiver<Command>) {
        let mut dirty = self.merge; // merge whatever a previous run left unmerged
        // Merging yields to sync traffic: it waits until no push or pull has come for
        // MERGE_QUIET, but never postpones for longer than MERGE_MAX_DELAY.
        let mut last_traffic = Instant::now() - MERGE_QUIET;
        let mut merge_due = Instant::now();
        loop {
            let command = if dirty {
                let now = Instant::now();
                let quiet_at = last_traffic + MERGE_QUIET;
                let wait = if now >= merge_due || now >= quiet_at {
                    Duration::ZERO
                } else {
                    quiet_at.min(merge_due) - now
                };
                match rx.recv_timeout(wait) {
                    Ok(c) => Some(c),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
            } else if self.logged {
                // Idle after writing: copy the log into the database now, not in the middle of
                // the next push or merge (the log checkpoints itself only past 256 MiB).
                match rx.try_recv() {
                    Ok(c) => Some(c),
                    Err(mpsc::TryRecvError::Empty) => {
                        self.checkpoint();
                        continue;
                    }
                    Err(mpsc::TryRecvError::Disconnected) => return,
                }
            } else {
                match rx.recv() {
                    Ok(c) => Some(c),
                    Err(_) => return,
                }
            };
            self.logged = true;
            match command {
                Some(Command::Push(pusher, push, reply)) => {
                    let result =
                        super::push::push(&mut self.conn, &mut self.templates, &pusher, push);
                    if self.merge && matches!(&result, Ok(o) if o.stored > 0) {
                        if !dirty {
                            merge_due = Instant::now() + MERGE_MAX_DELAY;
                        }
                        dirty = true;
                    }
                    last_traffic = Instant::now();
                    let _ = reply.send(result);
                }
                Some(Command::PulledBy(device)) => {
                    last_traffic = Instant::now();
                    let _ = self.conn.execute(
                        "INSERT INTO devices (id, first_seen, last_pull) VALUES (?1, ?2, ?2)
                         ON CONFLICT (id) DO UPDATE SET last_pull = ?2",
                        params![device.to_string(), now_ms()],
                    );
                }
                Some(Command::Run(f)) => f(&mut self.conn),
                Some(Command::Flush(reply)) => {
                    let _ = reply.send(());
                    return;
                }
                None => match self.merge_chunk() {
                    Ok(more) => dirty = more,
                    Err(e) => {
                        tracing::error!(error = %e, "merging records failed; will retry");
                        std::thread::sleep(Duration::from_millis(200));
                    }
                },
            }
        }
    }

    /// Merges up to `self.chunk` dirty records; returns whether more remain.
    fn merge_chunk(&mut self) -> Result<bool, StorageError> {
        let started = Instant::now();
        let tx = self.conn.transaction()?;
        let ids: Vec<String> = {
            // Templates first, so the records of a chunk are checked against them. Two indexed
            // queries: ordering all dirty records instead would cost a sort per chunk.
            let mut ids: Vec<String> = tx
                .prepare_cached("SELECT id FROM records WHERE kind = ?1 AND dirty = 1")?
                .query_map([TEMPLATE_KIND], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let rest = self.chunk.saturating_sub(ids.len()).max(1);
            let mut stmt = tx.prepare_cached("SELECT id FROM records WHERE dirty = 1 LIMIT ?1")?;
            for id in stmt.query_map([rest as i64], |r| r.get::<_, String>(0))? {
                let id = id?;
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            ids
        };
        // Reading and writing stay on this thread, in order (a template merged first is what
        // the records after it are reviewed against). Automerge's work runs ahead on other
        // threads a slice at a time, on every core, while this thread writes the slices already
        // merged: writing (SQLite, the search index) and merging overlap instead of taking
        // turns.
        let inputs = ids
            .iter()
            .map(|id| super::merge::read_input(&tx, id))
            .collect::<Result<Vec<_>, _>>()?;
        let templates = &mut self.templates;
        std::thread::scope(|scope| -> Result<(), StorageError> {
            let (merged, slices) = std::sync::mpsc::sync_channel(1);
            let inputs = &inputs;
            scope.spawn(move || {
                for slice in inputs.chunks(MERGE_SLICE) {
                    // The writer stopped on an error: stop too.
                    if merged.send(crate::merge::merge_many(slice)).is_err() {
                        return;
                    }
                }
            });
            let mut written = 0;
            for outcomes in slices {
                for outcome in outcomes {
                    let (id, input) = (&ids[written], &inputs[written]);
                    super::merge::write_outcome(&tx, id, input, outcome, templates)?;
                    written += 1;
                }
            }
            Ok(())
        })?;
        tx.commit()?;
        self.unannounced |= !ids.is_empty();
        // Size the next chunk to take about CHUNK_TIME at the rate this one went (a full chunk
        // only: a short one says nothing about the rate).
        let took = started.elapsed();
        if ids.len() >= self.chunk && !took.is_zero() {
            let rate = ids.len() as f64 / took.as_secs_f64();
            self.chunk = ((rate * CHUNK_TIME.as_secs_f64()) as usize)
                .clamp(*CHUNK_SIZES.start(), *CHUNK_SIZES.end());
        }
        if !ids.is_empty() {
            tracing::debug!(
                records = ids.len(),
                ms = started.elapsed().as_millis() as u64,
                "merged"
            );
        }
        // Merging a template marks its campaign's records dirty again: ask, do not guess.
        let more: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM records WHERE dirty = 1)",
            [],
            |r| r.get(0),
        )?;
        // What is computed from projections (tallies) is recomputed when the version moves: move
        // it when merging has caught up, and while a long merge runs at most every
        // VERSION_INTERVAL, not after every chunk.
        if self.unannounced && (!more || self.announced_at.elapsed() >= VERSION_INTERVAL) {
            self.version
                .fetch_add(1, std::sync::atomic::Ordering::Release);
            self.unannounced = false;
            self.announced_at = Instant::now();
        }
        Ok(more)
    }
}
