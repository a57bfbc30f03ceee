//! Sync logic without sockets: devices sync through an in-memory transport that calls the
//! server's own push checks and its SQLite storage directly, in a bounded loop (as Automerge's
//! own sync tests do) until every device holds the same heads as every other and the server.
//! Fast and deterministic, so it runs many rounds with tiny pages and batches.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Result;
use fieldsync::generator::Rng;
use fieldsync_client_core::{
    FieldValue, Filter, RecordHeader, Store, SyncOptions, Transport, TransportError, singleton_id,
    sync::sync,
};
use fieldsync_protocol::wire::{
    self, MAX_PAGE_BYTES, MIN_PAGE_BYTES, PullQuery, PullResponse, PushRequest, PushResponse,
};
use fieldsync_server::{
    ingest::Pusher,
    storage::{ChangeLog, PullRequest, RecordFilter, Records, Storage, sqlite::SqliteStorage},
};
use uuid::Uuid;

/// A transport that hands requests straight to the server's checks and storage.
struct InMemory {
    storage: Arc<SqliteStorage>,
    rt: tokio::runtime::Handle,
}

impl Transport for InMemory {
    fn push(&mut self, request: &PushRequest) -> Result<PushResponse, TransportError> {
        let body = wire::encode(request);
        let checked = fieldsync_server::sync::check_push(&body, false).map_err(|e| {
            TransportError::Refused {
                status: 400,
                code: "invalid".into(),
                message: e.to_string(),
                hint: None,
                retry_after: None,
            }
        })?;
        // An administrator's device: the peer loop tests sync, not roles.
        let pusher = Pusher::admin(checked.device);
        let outcome = self
            .rt
            .block_on(self.storage.push(pusher, checked))
            .map_err(|e| TransportError::Protocol(e.to_string()))?;
        Ok(PushResponse::from(outcome))
    }

    fn pull(&mut self, query: &PullQuery) -> Result<PullResponse, TransportError> {
        let bad = |e: String| TransportError::Protocol(e);
        let request = PullRequest {
            device: Uuid::parse_str(&query.device).map_err(|e| bad(e.to_string()))?,
            after: query.after,
            after_hash: match &query.after_hash {
                None => None,
                Some(h) => Some(
                    <[u8; 32]>::try_from(hex::decode(h).map_err(|e| bad(e.to_string()))?)
                        .map_err(|_| bad("hash length".into()))?,
                ),
            },
            max_bytes: query
                .max_bytes
                .unwrap_or(wire::DEFAULT_PAGE_BYTES)
                .clamp(MIN_PAGE_BYTES, MAX_PAGE_BYTES),
            include_own: query.include_own,
            scope: fieldsync_protocol::auth::WireScope::everything(true),
        };
        let page = self
            .rt
            .block_on(self.storage.pull(request))
            .map_err(|e| bad(e.to_string()))?;
        Ok(PullResponse::from(page))
    }
}

const WORDS: [&str; 5] = ["集体经济", "班子团结", "党员教育", "产业发展", "后备干部"];

/// Record id → heads, for every record a store holds (deleted ones included).
fn heads(store: &Store) -> Result<BTreeMap<Uuid, Vec<String>>> {
    let mut out = BTreeMap::new();
    for r in store.list(&Filter {
        include_deleted: true,
        ..Default::default()
    })? {
        let mut h = r.heads.clone();
        h.sort();
        out.insert(r.header.id, h);
    }
    Ok(out)
}

#[test]
fn devices_converge_through_the_server_within_a_bounded_number_of_rounds() -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    let storage = Arc::new(SqliteStorage::open(dir.path())?);
    let transport = || InMemory {
        storage: storage.clone(),
        rt: rt.handle().clone(),
    };
    // Tiny batches and pages: every sync crosses many page boundaries.
    let options = SyncOptions {
        push_batch_bytes: 2_000,
        page_bytes: MIN_PAGE_BYTES,
        ..Default::default()
    };
    let campaign = Uuid::from_u128(0x5eed);
    let mut devices: Vec<Store> = (0..4)
        .map(|_| Store::open_in_memory())
        .collect::<Result<_, _>>()?;
    let mut rng = Rng(2026);
    let mut created: Vec<Uuid> = Vec::new();
    for _ in 0..40 {
        for device in devices.iter_mut() {
            for _ in 0..(1 + rng.below(3)) {
                let known: Vec<Uuid> = heads(device)?.into_keys().collect();
                match rng.below(6) {
                    0 => {
                        let id = device.create(
                            "interview",
                            campaign,
                            "350102001",
                            &[("notes", FieldValue::Text(WORDS[rng.below(5)].into()))],
                        )?;
                        created.push(id);
                    }
                    1 => {
                        // A singleton that several devices create offline.
                        let key = format!("team-{}", rng.below(3));
                        let header = RecordHeader {
                            id: singleton_id(campaign, "assessment", &key),
                            kind: "assessment".into(),
                            campaign,
                            scope: "350102001".into(),
                        };
                        let rating = ["good", "normal"][rng.below(2)];
                        device.ensure(&header, &[("rating", FieldValue::Str(rating.into()))])?;
                        if !created.contains(&header.id) {
                            created.push(header.id);
                        }
                    }
                    2 | 3 if !known.is_empty() => {
                        let id = known[rng.below(known.len())];
                        let word = WORDS[rng.below(5)];
                        let at = rng.below(4);
                        device.edit(id, |e| match e.splice_text("notes", at, 0, word) {
                            Ok(()) => Ok(()),
                            // A record without notes (an assessment): give it some.
                            Err(_) => e.set("notes", &FieldValue::Text(word.into())),
                        })?;
                    }
                    4 if !known.is_empty() => {
                        let id = known[rng.below(known.len())];
                        device.set(id, "status", FieldValue::Str(WORDS[rng.below(5)].into()))?;
                    }
                    5 if !known.is_empty() && rng.below(4) == 0 => {
                        device.delete(known[rng.below(known.len())])?;
                    }
                    _ => {}
                }
            }
            // Some devices reach the network this round, some do not.
            if rng.below(2) == 0 {
                sync(device, &mut transport(), &options)?;
            }
        }
    }
    // Everyone syncs in turn until all hold the same heads: bounded, as a sync protocol must be.
    let mut rounds = 0;
    loop {
        rounds += 1;
        for d in devices.iter_mut() {
            sync(d, &mut transport(), &options)?;
        }
        let first = heads(&devices[0])?;
        if devices[1..]
            .iter()
            .all(|d| heads(d).map(|h| h == first).unwrap_or(false))
        {
            break;
        }
        assert!(
            rounds < 3,
            "devices did not converge in {rounds} rounds of syncing"
        );
    }
    let all = heads(&devices[0])?;
    // Nothing anyone created is missing, nothing is duplicated.
    let mut want = created.clone();
    want.sort();
    want.dedup();
    assert_eq!(all.keys().copied().collect::<Vec<_>>(), want);
    // The server's merged records carry the same heads.
    let merged = loop {
        let status = rt.block_on(storage.status())?;
        if status.unmerged_records == 0 {
            break rt.block_on(storage.records(
                RecordFilter {
                    limit: Some(10_000),
                    ..Default::default()
                },
                fieldsync_server::storage::Visibility::All,
            ))?;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let server: BTreeMap<Uuid, Vec<String>> = merged
        .into_iter()
        .map(|r| {
            let mut h = r.heads;
            h.sort();
            (r.id, h)
        })
        .collect();
    assert_eq!(server, all);
    rt.block_on(storage.close());
    Ok(())
}
