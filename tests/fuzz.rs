//! Fuzzing as a normal test: the decoders that read what a stranger sends (a push body, a pull
//! query, a template, a bundle file) get a bounded number of inputs mutated from real ones
//! (bit flips, truncation, splicing, huge CBOR length headers) by a seeded generator, so every
//! run is the same. Each must return (an error for garbage), never panic, and never hold much
//! memory. Inputs that once broke one are kept under `tests/fuzz-fixtures/<target>/` and
//! replayed by [`fixtures_found_by_fuzzing_stay_fixed`].

use std::alloc::System;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use anyhow::Result;
use automerge::ActorId;
use fieldsync_client_core::{FieldValue, Store};
use fieldsync_protocol::wire::{Bundle, PushRequest, WireRecord};
use fieldsync_protocol::{RecordHeader, creation, template::Template, wire};
use peakmem_alloc::{INSTRUMENTED_SYSTEM, PeakMemAlloc, PeakMemAllocTrait};
use serde_bytes::ByteBuf;
use uuid::Uuid;

#[global_allocator]
static GLOBAL: &PeakMemAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The most heap one input may take while it is decoded and checked (inputs are < 1 MiB).
const MAX_HEAP: usize = 96 << 20;

/// A decoder under test: whether it accepted the input.
type Target = dyn Fn(&[u8]) -> bool;

/// SplitMix64: small, fast and the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// CBOR headers that claim far more than follows: arrays, byte and text strings, maps.
const BIG_HEADERS: [&[u8]; 6] = [
    &[0x9b, 0, 0, 0, 1, 0, 0, 0, 0],
    &[0x9a, 0xff, 0xff, 0xff, 0xff],
    &[0x5b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    &[0x7a, 0x10, 0, 0, 0],
    &[0xbb, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff],
    &[0x9f, 0x9f, 0x9f, 0x9f, 0x9f, 0x9f, 0x9f, 0x9f],
];

/// One to four mutations of `seed`, sometimes spliced with `other`.
fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..=rng.below(4) {
        let len = v.len().max(1);
        match rng.below(8) {
            0 => {
                if !v.is_empty() {
                    let i = rng.below(v.len());
                    v[i] ^= 1 << rng.below(8);
                }
            }
            1 => {
                if !v.is_empty() {
                    let i = rng.below(v.len());
                    v[i] = [0x00, 0xff, 0x7f, 0x80, 0x9b, 0x5b, 0xbf, 0xf6][rng.below(8)];
                }
            }
            2 => v.truncate(rng.below(len)),
            3 => {
                let at = rng.below(len).min(v.len());
                let n = rng.below(16);
                let junk = rng.bytes(n);
                v.splice(at..at, junk);
            }
            4 => {
                let at = rng.below(len).min(v.len());
                let h = BIG_HEADERS[rng.below(BIG_HEADERS.len())];
                v.splice(at..at, h.iter().copied());
            }
            5 => {
                if !other.is_empty() {
                    let cut = rng.below(len).min(v.len());
                    let from = rng.below(other.len());
                    v.truncate(cut);
                    v.extend_from_slice(&other[from..]);
                }
            }
            6 => {
                let a = rng.below(len).min(v.len());
                let b = (a + rng.below(64)).min(v.len());
                v.drain(a..b);
            }
            _ => {
                let a = rng.below(len).min(v.len());
                let b = (a + rng.below(64)).min(v.len());
                let chunk = v[a..b].to_vec();
                v.splice(a..a, chunk);
            }
        }
    }
    v
}

/// Runs `f` on `input` and fails the test with the input saved when it panics or takes more
/// than [`MAX_HEAP`]; returns whether `f` accepted the input.
fn run(target: &str, input: &[u8], f: &Target) -> bool {
    GLOBAL.reset_peak_memory();
    let before = GLOBAL.get_peak_memory();
    let outcome = catch_unwind(AssertUnwindSafe(|| f(input)));
    let heap = GLOBAL.get_peak_memory().saturating_sub(before);
    if outcome.is_err() || heap > MAX_HEAP {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("fuzz-crashes")
            .join(target);
        std::fs::create_dir_all(&dir).expect("crash dir");
        let path = dir.join(format!("crash-{:016x}.bin", fnv(input)));
        std::fs::write(&path, input).expect("crash file");
        panic!(
            "{target}: {} on an input of {} bytes (saved to {}; copy it to \
             tests/fuzz-fixtures/{target}/ once fixed)",
            if outcome.is_err() {
                "panicked".to_string()
            } else {
                format!("{} MiB of heap", heap >> 20)
            },
            input.len(),
            path.display()
        );
    }
    outcome.unwrap_or(false)
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The seeds: a push and a bundle of three records of a real campaign, built from fixed ids,
/// actor and time, so that every run mutates the same bytes and finds the same inputs.
fn seeds() -> Result<(Vec<u8>, Vec<u8>)> {
    let campaign = Uuid::from_u128(0x2026_f022);
    let actor = ActorId::from([0x5e; 16]);
    let device = Uuid::from_u128(0xde71ce).to_string();
    let mut records = Vec::new();
    for (i, notes) in ["谈话记录：班子团结", "群众反映道路问题", ""]
        .iter()
        .enumerate()
    {
        let header = RecordHeader {
            id: Uuid::from_u128(0x1000 + i as u128),
            kind: "interview".into(),
            campaign,
            scope: format!("35010200{i}"),
        };
        let made = creation::create(
            &header,
            &actor,
            1_765_000_000_000 + i as i64,
            &[
                ("notes", FieldValue::Text((*notes).into())),
                ("interviewer", FieldValue::Str("张三".into())),
            ],
        )?;
        let mut record = WireRecord::new(&header);
        record.changes = made
            .changes()
            .map(|c| ByteBuf::from(c.raw_bytes().to_vec()))
            .collect();
        records.push(record);
    }
    let push = wire::encode(&PushRequest {
        v: wire::PROTOCOL_VERSION,
        device: device.clone(),
        actors: vec![ByteBuf::from(actor.to_bytes().to_vec())],
        records: records.clone(),
    });
    let bundle = wire::encode(&Bundle {
        format: wire::BUNDLE_FORMAT.into(),
        v: wire::PROTOCOL_VERSION,
        device,
        created_at: 1_765_000_000_000,
        last_seq: 6,
        records,
    });
    Ok((push, bundle))
}

fn check_push(body: &[u8], gzipped: bool) -> bool {
    fieldsync_server::sync::check_push(body, gzipped).is_ok()
}

fn import_bundle(bytes: &[u8]) -> bool {
    let mut store = Store::open_in_memory().expect("an in-memory store");
    store.import_bundle(bytes).is_ok()
}

fn parse_template(bytes: &[u8]) -> bool {
    Template::parse(&String::from_utf8_lossy(bytes)).is_ok()
}

fn parse_pull_query(bytes: &[u8]) -> bool {
    // The bytes as `key=value&…`, the way the query string arrives.
    let text = String::from_utf8_lossy(bytes);
    let map: HashMap<String, String> = text
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    fieldsync_server::sync::parse_pull_query(&map).is_ok()
}

/// Pure garbage of every length up to 300 bytes: refused by every target.
fn garbage_is_refused(rng: &mut Rng) {
    for n in 0..300 {
        let g = rng.bytes(n);
        assert!(!run("push", &g, &|b| check_push(b, false)), "{g:?}");
        assert!(!run("push-gzip", &g, &|b| check_push(b, true)), "{g:?}");
        assert!(!run("bundle", &g, &import_bundle), "{g:?}");
        if n % 10 == 0 {
            assert!(!run("template", &g, &parse_template), "{g:?}");
        }
    }
}

#[test]
fn decoders_of_untrusted_input_never_panic_nor_hold_much_memory() -> Result<()> {
    let mut rng = Rng(0x5eed_f1e1_d5ec);
    let (push, bundle_raw) = seeds()?;
    let bundle = wire::gzip(&bundle_raw);
    // The seeds themselves are accepted: the mutations start from valid input.
    assert!(check_push(&push, false));
    assert!(check_push(&wire::gzip(&push), true));
    assert!(import_bundle(&bundle));
    let templates = [
        include_str!("../protocol/templates/midterm.toml"),
        include_str!("../protocol/templates/lookback.toml"),
    ];
    for t in templates {
        assert!(parse_template(t.as_bytes()));
    }
    let query = format!(
        "device={}&after=12&after_hash={}&max_bytes=65536&include_own=true",
        Uuid::from_u128(4),
        "ab".repeat(32)
    );
    assert!(parse_pull_query(query.as_bytes()));

    garbage_is_refused(&mut rng);
    let mut accepted = HashMap::<&str, usize>::new();
    for i in 0..3_000 {
        let m = mutate(&mut rng, &push, &bundle_raw);
        *accepted.entry("push").or_default() += run("push", &m, &|b| check_push(b, false)) as usize;
        // Mutated CBOR inside valid gzip reaches the decoder; mutated gzip tests the inflater.
        let gz = if i % 2 == 0 {
            wire::gzip(&m)
        } else {
            mutate(&mut rng, &wire::gzip(&push), &[])
        };
        run("push-gzip", &gz, &|b| check_push(b, true));
    }
    for i in 0..600 {
        let m = mutate(&mut rng, &bundle_raw, &push);
        let file = if i % 3 == 0 {
            mutate(&mut rng, &bundle, &[])
        } else {
            wire::gzip(&m)
        };
        *accepted.entry("bundle").or_default() += run("bundle", &file, &import_bundle) as usize;
    }
    for i in 0..240 {
        let seed = templates[i % 2].as_bytes();
        let m = if i % 3 == 0 {
            // Whole lines dropped, repeated or given huge numbers: TOML-shaped damage.
            let mut lines: Vec<String> = String::from_utf8_lossy(seed)
                .lines()
                .map(str::to_string)
                .collect();
            for _ in 0..4 {
                let at = rng.below(lines.len());
                match rng.below(3) {
                    0 => {
                        lines.remove(at);
                    }
                    1 => {
                        let l = lines[at].clone();
                        lines.insert(at, l);
                    }
                    _ => {
                        if let Some((k, _)) = lines[at].split_once('=') {
                            lines[at] = format!("{k}= 99999999999999999999");
                        }
                    }
                }
            }
            lines.join("\n").into_bytes()
        } else {
            mutate(&mut rng, seed, templates[(i + 1) % 2].as_bytes())
        };
        *accepted.entry("template").or_default() += run("template", &m, &parse_template) as usize;
    }
    for _ in 0..3_000 {
        let m = mutate(
            &mut rng,
            query.as_bytes(),
            b"&max_bytes=99999999999999999999999&after=-1",
        );
        run("pull-query", &m, &parse_pull_query);
    }
    // Some mutations leave valid input (a flipped bit in a note): the generator is not only
    // producing garbage that the first check refuses.
    println!("accepted mutated inputs: {accepted:?}");
    assert!(accepted["template"] > 0, "{accepted:?}");
    Ok(())
}

#[test]
fn fixtures_found_by_fuzzing_stay_fixed() -> Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-fixtures");
    let targets: [(&str, &Target); 5] = [
        ("push", &|b| check_push(b, false)),
        ("push-gzip", &|b| check_push(b, true)),
        ("bundle", &import_bundle),
        ("template", &parse_template),
        ("pull-query", &parse_pull_query),
    ];
    let mut replayed = 0;
    for (target, f) in targets {
        let Ok(dir) = std::fs::read_dir(root.join(target)) else {
            continue;
        };
        for entry in dir {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "bin") {
                // Every fixture is an attack or garbage: refused, without a panic.
                let accepted = run(target, &std::fs::read(&path)?, f);
                assert!(!accepted, "{} was accepted", path.display());
                replayed += 1;
            }
        }
    }
    println!("replayed {replayed} fixtures");
    assert!(replayed > 0, "no fixtures under {}", root.display());
    Ok(())
}
