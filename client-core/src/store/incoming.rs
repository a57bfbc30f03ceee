//! Received changes (pull pages, bundles) on their way into the store: checked and deduplicated
//! by hash, merged by Automerge on all cores without touching the store, then written in one
//! transaction with the pull cursor; the cursor and the server's epoch.

use std::collections::HashMap;

use automerge::{Change, ChangeHash};
use fieldsync_protocol::{
    RecordHeader, inspect_change,
    record::{self, Projection},
    wire::{PullResponse, WireRecord},
};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::records::{ChangeFlags, StoredChange, document_bytes, insert_stored, write_projection};
use super::{Result, Store, StoreError, now_ms, set_meta};

/// What applying received changes did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Changes this store did not have before.
    pub new_changes: u64,
    /// Changes it already had.
    pub known_changes: u64,
    /// Changes kept aside because a change they depend on has not arrived yet.
    pub waiting: u64,
    /// Records whose merged state changed.
    pub records_changed: u64,
}

/// Where a pull page ends in the server's log: the store's cursor after applying it.
#[derive(Debug, Clone)]
pub(crate) struct PageEnd {
    /// The server position after the page.
    pub(crate) next: u64,
    /// The hash of the change at that position.
    pub(crate) next_hash: Option<Vec<u8>>,
    /// The server's newest position when it sent the page.
    pub(crate) head: u64,
    /// The server log's epoch, kept with the cursor.
    pub(crate) epoch: Option<String>,
}

impl PageEnd {
    pub(crate) fn of(page: &PullResponse) -> Self {
        PageEnd {
            next: page.next,
            next_hash: page.next_hash.as_ref().map(|h| h.to_vec()),
            head: page.head,
            epoch: page.epoch.clone(),
        }
    }
}

/// Where this device is in the server's log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    /// The server sequence number of the last change seen.
    pub seq: u64,
    /// The hash of that change (absent at 0).
    pub hash: Option<Vec<u8>>,
}

impl Store {
    /// Where this device is in the server's log.
    pub fn cursor(&self) -> Result<Cursor> {
        let seq = self
            .meta("cursor_seq")?
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let hash = self.meta("cursor_hash")?.and_then(|s| hex::decode(s).ok());
        Ok(Cursor { seq, hash })
    }

    /// Applies one pulled page and moves the cursor past it, in one transaction.
    pub fn apply_pull(&mut self, page: &PullResponse) -> Result<ApplyStats> {
        let mut work = Incoming::new(true);
        let records: Vec<&WireRecord> = page.records.iter().collect();
        self.prepare_incoming(&records, &mut work)?;
        work.merge()?;
        self.write_page(work, PageEnd::of(page))
    }

    /// Reads what the store has for `records` into `work` (see [`Incoming`]).
    pub(crate) fn prepare_incoming(
        &self,
        records: &[&WireRecord],
        work: &mut Incoming,
    ) -> Result<()> {
        prepare_incoming(&self.conn, records, work)
    }

    /// Writes a merged pull page and moves the cursor past it, in one transaction.
    pub(crate) fn write_page(&mut self, work: Incoming, end: PageEnd) -> Result<ApplyStats> {
        let tx = self.conn.transaction()?;
        let stats = write_incoming(&tx, work)?;
        set_meta(&tx, "cursor_seq", &end.next.to_string())?;
        match &end.next_hash {
            Some(h) => set_meta(&tx, "cursor_hash", &hex::encode(h))?,
            None => {
                tx.execute("DELETE FROM meta WHERE key = 'cursor_hash'", [])?;
            }
        }
        if let Some(epoch) = &end.epoch {
            set_meta(&tx, "server_epoch", epoch)?;
        }
        set_meta(&tx, "last_pull_at", &now_ms().to_string())?;
        tx.commit()?;
        Ok(stats)
    }

    /// Applies changes received from anywhere (a pull page, a bundle from another device).
    /// `acked` says whether the server is known to have them.
    pub fn apply_records(&mut self, records: &[WireRecord], acked: bool) -> Result<ApplyStats> {
        let tx = self.conn.transaction()?;
        let stats = apply_records(&tx, records, acked)?;
        tx.commit()?;
        Ok(stats)
    }

    /// Forgets what the server acknowledged: every change becomes unacknowledged and the cursor
    /// goes back to 0. Used when the server turns out to have lost its log (restored from a
    /// backup), so that this device re-pushes everything it has.
    pub fn forget_server_state(&mut self) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute("UPDATE changes SET acked = 0, pushed = 0", [])?;
        tx.execute(
            "DELETE FROM meta WHERE key IN ('cursor_seq', 'cursor_hash', 'server_epoch')",
            [],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The epoch of the server log this store's cursor points into, once it has pulled.
    pub fn server_epoch(&self) -> Result<Option<String>> {
        self.meta("server_epoch")
    }

    /// Moves the cursor back to 0 without touching acknowledgements (to pull everything again).
    pub fn rewind_cursor(&mut self) -> Result<()> {
        self.conn.execute(
            "DELETE FROM meta WHERE key IN ('cursor_seq', 'cursor_hash')",
            [],
        )?;
        Ok(())
    }

    /// When this device last completed a pull (ms since the Unix epoch).
    pub fn last_sync_at(&self) -> Result<Option<i64>> {
        Ok(self.meta("last_pull_at")?.and_then(|s| s.parse().ok()))
    }
}

/// A received record after its changes have been checked, with what the store already has.
struct Prepared {
    header: RecordHeader,
    /// Changes this store does not have yet: their position in the record's list and bytes,
    /// decoded and verified during the merge.
    fresh: Vec<(usize, Vec<u8>)>,
    /// Earlier changes of the record still waiting for their dependencies.
    waiting: Vec<Change>,
    /// The stored document, if the store has one.
    doc: Option<Vec<u8>>,
}

/// A prepared record after merging (the CPU-heavy part, done in parallel).
struct Merged {
    header: RecordHeader,
    /// Each fresh change and whether it could be applied.
    fresh: Vec<(NewChange, bool)>,
    /// Hashes of waiting changes that could now be applied.
    now_applied: Vec<ChangeHash>,
    /// What to store, when anything changed.
    result: Option<MergeResult>,
}

/// A received change on its way into the log.
struct NewChange {
    hash: ChangeHash,
    actor: Vec<u8>,
    bytes: Vec<u8>,
}

impl From<&Change> for NewChange {
    fn from(c: &Change) -> Self {
        NewChange {
            hash: c.hash(),
            actor: c.actor_id().to_bytes().to_vec(),
            bytes: c.raw_bytes().to_vec(),
        }
    }
}

struct MergeResult {
    doc: Vec<u8>,
    projection: Option<Projection>,
}

fn merge_prepared(p: Prepared) -> Result<Merged> {
    let Prepared {
        header,
        fresh,
        waiting,
        doc: stored,
    } = p;
    if stored.is_none() && waiting.is_empty() {
        // A record new to this store that arrives exactly as it was created (the common case of
        // a pull): read and checked from its bytes, without Automerge parsing or merging them
        // (protocol::fresh); its document is its change chunks.
        let bytes: Vec<&[u8]> = fresh.iter().map(|(_, b)| b.as_slice()).collect();
        if let Some((fieldsync_protocol::fresh::Fresh { projection, .. }, checked)) =
            fieldsync_protocol::fresh::read_new_bytes(&header, &bytes)
        {
            let genesis_actor = record::genesis_actor(&header);
            let mut fresh: Vec<(NewChange, bool)> = fresh
                .into_iter()
                .zip(checked)
                .map(|((_, bytes), c)| {
                    let change = NewChange {
                        hash: c.hash,
                        actor: c.actor,
                        bytes,
                    };
                    (change, true)
                })
                .collect();
            // Stored genesis first, the changes are the record's document: its row keeps no
            // second copy of them (`records::document_bytes`).
            fresh.sort_by_key(|(c, _)| c.actor != genesis_actor.to_bytes());
            return Ok(Merged {
                header,
                fresh,
                now_applied: Vec::new(),
                result: Some(MergeResult {
                    doc: Vec::new(),
                    projection: Some(projection),
                }),
            });
        }
    }
    let fresh = fresh
        .into_iter()
        .map(|(index, bytes)| {
            inspect_change(&bytes)
                .map(|info| info.change)
                .map_err(|source| StoreError::BadChange {
                    record: header.id.to_string(),
                    index,
                    source,
                })
        })
        .collect::<Result<Vec<Change>>>()?;
    let was_empty = stored.is_none();
    let mut doc = match &stored {
        Some(bytes) => record::load_doc(bytes).map_err(|e| StoreError::Damaged {
            id: header.id,
            reason: e.to_string(),
        })?,
        None => record::new_doc(),
    };
    let before = doc.get_heads();
    doc.apply_changes(
        fresh
            .iter()
            .chain(waiting.iter())
            .cloned()
            .collect::<Vec<_>>(),
    )?;
    let fresh: Vec<(Change, bool)> = fresh
        .into_iter()
        .map(|c| {
            let applied = doc.get_change_meta_by_hash(&c.hash()).is_some();
            (c, applied)
        })
        .collect();
    let now_applied: Vec<ChangeHash> = waiting
        .iter()
        .map(Change::hash)
        .filter(|h| doc.get_change_meta_by_hash(h).is_some())
        .collect();
    let result = if doc.get_heads() == before && !was_empty {
        None
    } else {
        let doc_bytes = if was_empty {
            // A record new to this store: its applied change chunks, in an order where every
            // change follows its dependencies, load as its document. Skips re-encoding it.
            let mut bytes = Vec::new();
            let applied: Vec<&Change> = fresh
                .iter()
                .filter(|(_, a)| *a)
                .map(|(c, _)| c)
                .chain(waiting.iter().filter(|c| now_applied.contains(&c.hash())))
                .collect();
            for c in topological(&applied) {
                bytes.extend_from_slice(c.raw_bytes());
            }
            bytes
        } else {
            doc.save()
        };
        Some(MergeResult {
            doc: doc_bytes,
            projection: record::project(&doc).ok(),
        })
    };
    Ok(Merged {
        header,
        fresh: fresh.iter().map(|(c, a)| (c.into(), *a)).collect(),
        now_applied,
        result,
    })
}

/// Orders changes so that each comes after those of its dependencies that are in the list.
fn topological<'a>(changes: &[&'a Change]) -> Vec<&'a Change> {
    let mut out: Vec<&Change> = Vec::with_capacity(changes.len());
    let mut placed = std::collections::HashSet::new();
    let mut rest: Vec<&Change> = changes.to_vec();
    let in_list: std::collections::HashSet<ChangeHash> = changes.iter().map(|c| c.hash()).collect();
    while !rest.is_empty() {
        let before = rest.len();
        rest.retain(|c| {
            let ready = c
                .deps()
                .iter()
                .all(|d| !in_list.contains(d) || placed.contains(d));
            if ready {
                placed.insert(c.hash());
                out.push(*c);
            }
            !ready
        });
        if rest.len() == before {
            out.append(&mut rest); // a cycle cannot happen with hashes; keep everything anyway
        }
    }
    out
}

/// Received records on their way into the store, in three steps so that a sync can merge one
/// pull page while it writes the previous one: [`prepare_incoming`] reads what the store has,
/// [`merge_incoming`] does Automerge's work without touching the store, and
/// [`write_incoming`] writes everything in one transaction.
pub(crate) struct Incoming {
    /// Whether the server is known to have these changes (a pull page, not a bundle).
    acked: bool,
    stats: ApplyStats,
    /// Hashes of the new changes seen so far (one change sent twice is stored once).
    seen: std::collections::HashSet<ChangeHash>,
    /// Relay tags received with new changes.
    tags: HashMap<ChangeHash, Vec<u8>>,
    /// Changes the store already has, to mark acknowledged.
    known: Vec<ChangeHash>,
    /// Records read and waiting to be merged.
    prepared: Vec<Prepared>,
    /// Records merged and waiting to be written.
    merged: Vec<Merged>,
}

impl Incoming {
    pub(crate) fn new(acked: bool) -> Self {
        Incoming {
            acked,
            stats: ApplyStats::default(),
            seen: Default::default(),
            tags: HashMap::new(),
            known: Vec::new(),
            prepared: Vec::new(),
            merged: Vec::new(),
        }
    }

    /// The records merged and not yet written.
    pub(crate) fn merged_ids(&self) -> std::collections::HashSet<String> {
        self.merged
            .iter()
            .map(|m| m.header.id.to_string())
            .collect()
    }

    /// Merges what was prepared (the CPU-heavy step; reads nothing from the store).
    pub(crate) fn merge(&mut self) -> Result<()> {
        let prepared = std::mem::take(&mut self.prepared);
        self.merged.extend(merge_incoming(prepared)?);
        Ok(())
    }
}

/// Step 1: checks every change of `records` by hash against the store and reads, for each record
/// with new changes, its stored document and the changes still waiting for dependencies.
/// Reads only. The records must not be waiting in another unwritten [`Incoming`].
fn prepare_incoming(conn: &Connection, records: &[&WireRecord], work: &mut Incoming) -> Result<()> {
    for wire in records {
        let header = wire.header()?;
        // A creation in its compact form (`wire::created`): its two changes written back first,
        // whoever hands the record over (a sync expands pages as they arrive; a caller of
        // `apply_pull`, `apply_records` or a bundle may not have).
        let expanded;
        let wire: &WireRecord = if wire.created.is_some() {
            let mut whole = (*wire).clone();
            whole
                .expand_creation(&header)
                .map_err(|e| StoreError::BadChange {
                    record: wire.id.clone(),
                    index: 0,
                    source: fieldsync_protocol::ChangeError::NotAChange(e.to_string()),
                })?;
            expanded = whole;
            &expanded
        } else {
            wire
        };
        let id_str = header.id.to_string();
        let mut fresh = Vec::new();
        for (index, bytes) in wire.changes.iter().enumerate() {
            // Deduplicate by hash without decoding; the merge decodes and verifies what is new.
            let hash = match fieldsync_protocol::quick_hash(bytes) {
                Some(h) => h,
                None => {
                    inspect_change(bytes)
                        .map_err(|source| StoreError::BadChange {
                            record: wire.id.clone(),
                            index,
                            source,
                        })?
                        .hash
                }
            };
            let known = conn
                .prepare_cached("SELECT 1 FROM changes WHERE hash = ?1")?
                .query_row([hash.0.as_slice()], |_| Ok(()))
                .optional()?
                .is_some();
            if known {
                work.stats.known_changes += 1;
                if work.acked {
                    work.known.push(hash);
                }
            } else if work.seen.insert(hash) {
                if let Some(tag) = wire.tags.get(index).filter(|t| !t.is_empty()) {
                    work.tags.insert(hash, tag.to_vec());
                }
                fresh.push((index, bytes.to_vec()));
            }
        }
        if fresh.is_empty() {
            continue;
        }
        work.stats.new_changes += fresh.len() as u64;
        let row: Option<(String, String, String, Vec<u8>)> = conn
            .prepare_cached("SELECT kind, campaign, scope, doc FROM records WHERE id = ?1")?
            .query_row([&id_str], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?;
        let doc = match row {
            Some((kind, campaign, scope, doc)) => {
                let doc = document_bytes(conn, &id_str, doc)?;
                let have = RecordHeader::parse(&id_str, &kind, &campaign, &scope)?;
                if have != header {
                    return Err(StoreError::HeaderMismatch {
                        id: header.id,
                        have: Box::new(have),
                        got: Box::new(header),
                    });
                }
                Some(doc)
            }
            None => None,
        };
        let mut waiting = Vec::new();
        {
            let mut stmt = conn
                .prepare_cached("SELECT bytes FROM changes WHERE record_id = ?1 AND applied = 0")?;
            for bytes in stmt.query_map([&id_str], |r| r.get::<_, Vec<u8>>(0))? {
                if let Ok(info) = inspect_change(&bytes?) {
                    waiting.push(info.change);
                }
            }
        }
        work.prepared.push(Prepared {
            header,
            fresh,
            waiting,
            doc,
        });
    }
    Ok(())
}

/// Step 2: merges prepared records on as many threads as there are cores (records are
/// independent).
fn merge_incoming(prepared: Vec<Prepared>) -> Result<Vec<Merged>> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(prepared.len().div_ceil(16).max(1));
    let merged: Vec<Result<Merged>> = if threads <= 1 {
        prepared.into_iter().map(merge_prepared).collect()
    } else {
        let chunk = prepared.len().div_ceil(threads);
        let mut chunks: Vec<Vec<Prepared>> = Vec::new();
        let mut it = prepared.into_iter().peekable();
        while it.peek().is_some() {
            chunks.push(it.by_ref().take(chunk).collect());
        }
        std::thread::scope(|scope| {
            let handles: Vec<_> = chunks
                .into_iter()
                .map(|c| scope.spawn(move || c.into_iter().map(merge_prepared).collect::<Vec<_>>()))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("merge thread panicked"))
                .collect()
        })
    };
    merged.into_iter().collect()
}

/// Step 3: stores the new changes (applied or waiting), the merged documents and their
/// projections inside `tx`.
fn write_incoming(tx: &Transaction<'_>, work: Incoming) -> Result<ApplyStats> {
    let Incoming {
        acked,
        mut stats,
        tags,
        known,
        prepared,
        merged,
        ..
    } = work;
    debug_assert!(prepared.is_empty(), "prepared records were not merged");
    for hash in &known {
        tx.prepare_cached("UPDATE changes SET acked = 1 WHERE hash = ?1")?
            .execute([hash.0.as_slice()])?;
    }
    let now = now_ms();
    for m in merged {
        let id = m.header.id;
        for (change, applied) in &m.fresh {
            if !applied {
                stats.waiting += 1;
            }
            let flags = ChangeFlags {
                local: false,
                acked,
                applied: *applied,
            };
            let stored = StoredChange {
                hash: change.hash,
                actor: &change.actor,
                bytes: &change.bytes,
            };
            insert_stored(tx, id, &stored, flags)?;
            if let Some(tag) = tags.get(&change.hash) {
                tx.prepare_cached("UPDATE changes SET tag = ?2 WHERE hash = ?1")?
                    .execute(params![change.hash.0.as_slice(), tag])?;
            }
        }
        for hash in &m.now_applied {
            tx.prepare_cached("UPDATE changes SET applied = 1 WHERE hash = ?1")?
                .execute([hash.0.as_slice()])?;
        }
        let Some(result) = m.result else { continue };
        stats.records_changed += 1;
        match &result.projection {
            Some(p) => write_projection(tx, p, &result.doc, now)?,
            None => {
                // No genesis yet (its changes are waiting): keep the header so the record's
                // changes can be pushed on, but do not show it.
                tx.prepare_cached(
                    "INSERT INTO records (id, kind, campaign, scope, doc, ready, fields, deleted,
                                          conflicts, heads, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, 0, '{}', 0, 0, '[]', ?6)
                     ON CONFLICT (id) DO UPDATE SET doc = ?5",
                )?
                .execute(params![
                    id.to_string(),
                    m.header.kind,
                    m.header.campaign.to_string(),
                    m.header.scope,
                    result.doc,
                    now
                ])?;
            }
        }
    }
    Ok(stats)
}

/// Applies received records inside `tx`: new changes are checked, stored, and merged into the
/// record's document together with any earlier changes that were waiting for them; changes whose
/// dependencies are still missing are stored and wait.
fn apply_records(tx: &Transaction<'_>, records: &[WireRecord], acked: bool) -> Result<ApplyStats> {
    let mut work = Incoming::new(acked);
    let records: Vec<&WireRecord> = records.iter().collect();
    prepare_incoming(tx, &records, &mut work)?;
    work.merge()?;
    write_incoming(tx, work)
}
