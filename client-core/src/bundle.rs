//! Sync without the server: a device writes the changes another lacks into a file (a USB stick,
//! Bluetooth, a chat app), the other imports it with the same checks and idempotency as a
//! server sync, and both later sync with the server without duplicating anything.
//!
//! 1. The receiving device writes a state file ([`Store::bundle_state`]): the hashes it holds.
//! 2. The sending device exports what that state lacks ([`Store::export_bundle`]), or
//!    everything, or everything since a local log position.
//! 3. The receiver imports it ([`Store::import_bundle`]). Imported changes count as not yet
//!    uploaded, so whichever device reaches the server first delivers them; the server keeps
//!    each change once.

use std::collections::{HashMap, HashSet};

use fieldsync_protocol::wire::{
    self, BUNDLE_FORMAT, Bundle, BundleState, DecodeLimits, MAX_BUNDLE_BYTES, PROTOCOL_VERSION,
    STATE_FORMAT, WireRecord,
};
use serde_bytes::ByteBuf;

use crate::store::{ApplyStats, Store, StoreError};

/// Why a bundle could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The file is not a bundle (or not the kind of file expected).
    #[error("这不是 fieldsync 同步包（{0}） / this file is not a fieldsync {1} ({0})")]
    NotABundle(String, &'static str),
    /// The local store failed (an invalid change inside a bundle is reported here, and nothing
    /// of the bundle is applied).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Records with changes in the bundle.
    pub records: usize,
    /// Changes in the bundle.
    pub changes: usize,
    /// The local log position the bundle reaches (for `since` next time).
    pub last_seq: i64,
}

/// Which changes an export includes.
#[derive(Debug, Clone, Default)]
pub enum Export {
    /// Every change this store holds.
    #[default]
    All,
    /// Changes after this local log position (see [`Bundle::last_seq`]).
    Since(i64),
    /// Changes the device that wrote this state file lacks.
    Lacking(Vec<u8>),
}

fn read_state(bytes: &[u8]) -> Result<BundleState, BundleError> {
    let state: BundleState =
        wire::decode_gzip(bytes, "state file", MAX_BUNDLE_BYTES, DecodeLimits::BUNDLE)
            .map_err(|e| BundleError::NotABundle(e.to_string(), "state file"))?;
    if state.format != STATE_FORMAT {
        return Err(BundleError::NotABundle(
            format!("it says it is a {:?}", state.format),
            "state file",
        ));
    }
    Ok(state)
}

impl Store {
    /// A state file: every change hash this store holds, for another device to export against.
    pub fn bundle_state(&self) -> Result<Vec<u8>, BundleError> {
        let hashes = self
            .change_rows(0)?
            .into_iter()
            .map(|row| ByteBuf::from(row.hash))
            .collect();
        let state = BundleState {
            format: STATE_FORMAT.into(),
            v: PROTOCOL_VERSION,
            device: self.device_id().to_string(),
            hashes,
        };
        Ok(wire::gzip(&wire::encode(&state)))
    }

    /// Writes a bundle of changes (see [`Export`]) and says what is in it.
    pub fn export_bundle(&self, which: &Export) -> Result<(Vec<u8>, ExportStats), BundleError> {
        let since = match which {
            Export::Since(seq) => *seq,
            _ => 0,
        };
        let have: HashSet<Vec<u8>> = match which {
            Export::Lacking(state) => read_state(state)?
                .hashes
                .into_iter()
                .map(ByteBuf::into_vec)
                .collect(),
            _ => HashSet::new(),
        };
        let mut records: Vec<WireRecord> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut stats = ExportStats {
            last_seq: since,
            ..Default::default()
        };
        let own: HashSet<Vec<u8>> = self
            .actors()?
            .into_iter()
            .map(|a| a.to_bytes().to_vec())
            .collect();
        for row in self.change_rows(since)? {
            stats.last_seq = stats.last_seq.max(row.seq);
            if have.contains(&row.hash) {
                continue;
            }
            let i = *index.entry(row.header.id.to_string()).or_insert_with(|| {
                records.push(WireRecord::new(&row.header));
                records.len() - 1
            });
            // Tag this device's own changes (so that whoever delivers them to the server proves
            // who wrote them) and pass on the tags of changes it relays.
            let tag = if own.contains(&row.actor) {
                self.own_tag(&row.actor, &row.hash)?
            } else {
                row.tag
            };
            let r = &mut records[i];
            r.changes.push(ByteBuf::from(row.bytes));
            match tag {
                Some(t) => {
                    r.tags.resize(r.changes.len() - 1, ByteBuf::new());
                    r.tags.push(ByteBuf::from(t));
                }
                None if !r.tags.is_empty() => r.tags.push(ByteBuf::new()),
                None => {}
            }
            stats.changes += 1;
        }
        stats.records = records.len();
        let bundle = Bundle {
            format: BUNDLE_FORMAT.into(),
            v: PROTOCOL_VERSION,
            device: self.device_id().to_string(),
            created_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
            last_seq: stats.last_seq,
            records,
        };
        Ok((wire::gzip(&wire::encode(&bundle)), stats))
    }

    /// Applies a bundle: every change is decoded and checked, duplicates are skipped, changes
    /// whose dependencies are missing wait; all in one transaction (a bad change anywhere and
    /// nothing is applied). Imported changes will be uploaded by this device too.
    pub fn import_bundle(&mut self, bytes: &[u8]) -> Result<ApplyStats, BundleError> {
        // Decoded as it is decompressed, within the bounds of a bundle: a small file that
        // claims millions of elements is refused before it costs memory.
        let bundle: Bundle =
            wire::decode_gzip(bytes, "bundle", MAX_BUNDLE_BYTES, DecodeLimits::BUNDLE)
                .map_err(|e| BundleError::NotABundle(e.to_string(), "bundle"))?;
        if bundle.format != BUNDLE_FORMAT {
            return Err(BundleError::NotABundle(
                format!("it says it is a {:?}", bundle.format),
                "bundle",
            ));
        }
        wire::check_version(bundle.v)
            .map_err(|e| BundleError::NotABundle(e.to_string(), "bundle"))?;
        Ok(self.apply_records(&bundle.records, false)?)
    }
}
