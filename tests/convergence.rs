//! Property test: five devices make random offline edits (fields, Chinese text, singletons,
//! deletions) and sync with a real server in random partial orders. After everyone has synced
//! twice more, every device and the server hold identical records, and nothing anyone wrote is
//! missing. The property runs with the server on SQLite and again on PostgreSQL.

use std::collections::BTreeMap;

use fieldsync::{Backend, TestServer};
use fieldsync_client_core::{
    FieldValue, RecordHeader, Store, SyncOptions, singleton_id, sync::sync,
};
use proptest::prelude::*;
use uuid::Uuid;

const DEVICES: usize = 5;
const VILLAGES: [&str; 2] = ["350102001", "350102002"];
const WORDS: [&str; 6] = [
    "集体经济",
    "班子团结",
    "党员教育",
    "产业发展",
    "村务公开",
    "后备干部",
];
const FIELDS: [&str; 3] = ["rating", "status", "owner"];

#[derive(Debug, Clone)]
enum Op {
    Create {
        device: usize,
        village: usize,
        word: usize,
    },
    Set {
        device: usize,
        record: usize,
        field: usize,
        word: usize,
    },
    Append {
        device: usize,
        record: usize,
        word: usize,
    },
    Splice {
        device: usize,
        record: usize,
        pos: usize,
        delete: usize,
        word: usize,
    },
    Singleton {
        device: usize,
        village: usize,
        field: usize,
        word: usize,
    },
    Delete {
        device: usize,
        record: usize,
    },
    Sync {
        device: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let d = 0..DEVICES;
    prop_oneof![
        3 => (d.clone(), 0..2usize, 0..6usize)
            .prop_map(|(device, village, word)| Op::Create { device, village, word }),
        3 => (d.clone(), 0..50usize, 0..3usize, 0..6usize)
            .prop_map(|(device, record, field, word)| Op::Set { device, record, field, word }),
        2 => (d.clone(), 0..50usize, 0..6usize)
            .prop_map(|(device, record, word)| Op::Append { device, record, word }),
        2 => (d.clone(), 0..50usize, 0..40usize, 0..3usize, 0..6usize).prop_map(
            |(device, record, pos, delete, word)| Op::Splice { device, record, pos, delete, word }
        ),
        2 => (d.clone(), 0..2usize, 0..3usize, 0..6usize)
            .prop_map(|(device, village, field, word)| Op::Singleton { device, village, field, word }),
        1 => (d.clone(), 0..50usize).prop_map(|(device, record)| Op::Delete { device, record }),
        3 => d.prop_map(|device| Op::Sync { device }),
    ]
}

fn campaign() -> Uuid {
    Uuid::from_u128(0xC0FFEE)
}

/// Picks the `n`-th (mod count) record the device can see, oldest first.
fn pick(store: &Store, n: usize) -> Option<Uuid> {
    let mut ids: Vec<Uuid> = store
        .list(&Default::default())
        .unwrap()
        .into_iter()
        .map(|r| r.header.id)
        .collect();
    ids.sort();
    if ids.is_empty() {
        None
    } else {
        Some(ids[n % ids.len()])
    }
}

type Snapshot = BTreeMap<Uuid, (bool, serde_json::Value, Vec<String>)>;

fn snapshot(store: &Store) -> Snapshot {
    store
        .list(&fieldsync_client_core::Filter {
            include_deleted: true,
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .map(|r| {
            let fields = serde_json::Value::Object(
                r.fields
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            );
            let mut heads = r.heads.clone();
            heads.sort();
            (r.header.id, (r.deleted, fields, heads))
        })
        .collect()
}

fn run(backend: Backend, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let server = TestServer::start_on(backend).unwrap();
    let url = server.url();
    let mut devices: Vec<Store> = (0..DEVICES)
        .map(|_| Store::open_in_memory().unwrap())
        .collect();
    let mut created: Vec<Uuid> = Vec::new();
    let options = SyncOptions {
        // Small batches and pages so that syncs span several requests.
        push_batch_bytes: 2 << 10,
        page_bytes: 16 << 10,
        ..Default::default()
    };
    let sync_one = |store: &mut Store| {
        let mut t = fieldsync::connect(&url, store).unwrap();
        sync(store, &mut t, &options).unwrap();
    };
    for op in ops {
        match op {
            Op::Create {
                device,
                village,
                word,
            } => {
                let id = devices[device]
                    .create(
                        "interview",
                        campaign(),
                        VILLAGES[village],
                        &[("notes", FieldValue::Text(WORDS[word].into()))],
                    )
                    .unwrap();
                created.push(id);
            }
            Op::Set {
                device,
                record,
                field,
                word,
            } => {
                if let Some(id) = pick(&devices[device], record) {
                    devices[device]
                        .set(id, FIELDS[field], FieldValue::Str(WORDS[word].into()))
                        .unwrap();
                }
            }
            Op::Append {
                device,
                record,
                word,
            } => {
                if let Some(id) = pick(&devices[device], record) {
                    devices[device]
                        .edit(id, |e| e.append_text("notes", WORDS[word]))
                        .unwrap();
                }
            }
            Op::Splice {
                device,
                record,
                pos,
                delete,
                word,
            } => {
                if let Some(id) = pick(&devices[device], record) {
                    let len = match devices[device].get(id).unwrap().fields.get("notes") {
                        Some(FieldValue::Text(t)) => t.chars().count(),
                        _ => continue,
                    };
                    let pos = pos % (len + 1);
                    let delete = delete.min(len - pos);
                    devices[device]
                        .edit(id, |e| e.splice_text("notes", pos, delete, WORDS[word]))
                        .unwrap();
                }
            }
            Op::Singleton {
                device,
                village,
                field,
                word,
            } => {
                let header = RecordHeader {
                    id: singleton_id(campaign(), "assessment", VILLAGES[village]),
                    kind: "assessment".into(),
                    campaign: campaign(),
                    scope: VILLAGES[village].into(),
                };
                devices[device]
                    .ensure(
                        &header,
                        &[(FIELDS[field], FieldValue::Str(WORDS[word].into()))],
                    )
                    .unwrap();
                if !created.contains(&header.id) {
                    created.push(header.id);
                }
            }
            Op::Delete { device, record } => {
                if let Some(id) = pick(&devices[device], record) {
                    devices[device].delete(id).unwrap();
                }
            }
            Op::Sync { device } => sync_one(&mut devices[device]),
        }
    }
    for _ in 0..2 {
        for d in devices.iter_mut() {
            sync_one(d);
        }
    }
    let first = snapshot(&devices[0]);
    for id in &created {
        prop_assert!(first.contains_key(id), "record {} was lost", id);
    }
    prop_assert_eq!(first.len(), created.len(), "no record duplicated");
    for (i, d) in devices.iter().enumerate().skip(1) {
        prop_assert_eq!(&snapshot(d), &first, "device {} differs from device 0", i);
        prop_assert_eq!(d.pending_upload().unwrap(), 0);
        prop_assert_eq!(d.waiting_for_dependencies().unwrap(), 0);
    }
    server.wait_merged().unwrap();
    for (id, (deleted, fields, heads)) in &first {
        let r = server.get_json(&format!("/v1/records/{id}")).unwrap();
        prop_assert_eq!(&r["deleted"], &serde_json::Value::Bool(*deleted));
        prop_assert_eq!(&r["fields"], fields, "server fields of {}", id);
        let mut server_heads: Vec<String> = serde_json::from_value(r["heads"].clone()).unwrap();
        server_heads.sort();
        prop_assert_eq!(&server_heads, heads);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(16),
        max_shrink_iters: 50,
        ..ProptestConfig::default()
    })]

    #[test]
    fn five_devices_syncing_in_random_orders_converge(ops in prop::collection::vec(op(), 10..60)) {
        run(Backend::Sqlite, ops)?;
    }
}

proptest! {
    // The same property with the server on PostgreSQL (a fresh database a case), fewer cases.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(8),
        max_shrink_iters: 50,
        ..ProptestConfig::default()
    })]

    #[test]
    fn five_devices_syncing_in_random_orders_converge_on_postgres(
        ops in prop::collection::vec(op(), 10..60)
    ) {
        run(Backend::Postgres, ops)?;
    }
}
