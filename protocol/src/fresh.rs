//! A record new to a store, received as exactly the changes [`crate::creation`] makes (its
//! genesis and at most one change writing its first values): its projection read straight from
//! the operations, without building an Automerge document.
//!
//! Applying a new record's changes to an empty document costs about 0.35 ms with a 500-character
//! note and projecting it another 0.05 ms; a device pulling 10,000 records, and the server
//! merging them, spent most of their time there. Yet most records arrive exactly as they were
//! created: one genesis, one change from the device that made them, nothing concurrent. For that
//! shape the result is fixed by the operations in order, so [`read_new`] reads it from them.
//!
//! The shape is checked strictly, and anything else gives `None` so that the caller applies the
//! changes with Automerge as before: the genesis must be the one this header's record has
//! ([`crate::genesis::is_genesis`]), the other change must depend on it alone, every operation
//! must write a key once without predecessors (no overwrite, no conflict, no deletion), and every
//! text must be written as one run of insertions each after the one before (what a single
//! `splice_text` at position 0 writes). Whatever it returns equals [`record::project`] of the
//! document Automerge builds from the same changes (tests below, including a property test over
//! documents edited at random). Nothing is trusted: every change was decoded and its hash checked
//! before it gets here.

use std::collections::BTreeMap;

use automerge::{Change, ChangeHash};

use crate::change::ops::{self, Key, Value};

use crate::genesis::is_genesis;
use crate::record::{self, FieldValue, Projection, RecordHeader};

/// The operation number of the `fields` map in every genesis (the sixth operation).
const FIELDS_OP: u64 = 6;

/// What a field holds while the operations are read.
enum Slot {
    /// A scalar value.
    Value(FieldValue),
    /// A text object: its characters so far and the number of the operation that inserted the
    /// last of them (the next insertion must follow it), `None` before the first.
    Text(String, Option<u64>),
    /// A map of strings.
    Map(BTreeMap<String, String>),
}

/// A new record read without a document: what a store keeps of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Fresh {
    /// Its state.
    pub projection: Projection,
    /// Its document: the change chunks, genesis first (they load with `record::load_doc`).
    pub doc: Vec<u8>,
}

/// A record that `changes` create from nothing, when they are exactly a creation (see the
/// module's documentation): its projection and its document; `None` for any other shape, which
/// the caller merges with Automerge.
pub fn read_new(header: &RecordHeader, changes: &[&Change]) -> Option<Fresh> {
    let projection = project_new(header, changes)?;
    let mut ordered = changes.to_vec();
    ordered.sort_by_key(|c| !c.deps().is_empty()); // the genesis has none
    Some(Fresh {
        projection,
        doc: ordered
            .iter()
            .flat_map(|c| c.raw_bytes().iter().copied())
            .collect(),
    })
}

/// A change that [`read_new_bytes`] checked: its hash and its author's actor id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The change's hash (its identity in the log).
    pub hash: ChangeHash,
    /// The actor that wrote it.
    pub actor: Vec<u8>,
}

/// [`read_new`] from the changes' bytes, without Automerge parsing them: for a pull of many new
/// records, Automerge's parsing (which decodes every operation to verify it) cost more than the
/// rest of reading them. Returns the record and, for each change in the order given, its hash
/// and author; `None` for any other shape, which the caller parses and merges with Automerge.
///
/// Nothing is trusted. Every change's checksum and claimed lengths are checked
/// ([`crate::change::check_unparsed`]); the genesis is recognised by its hash, which must be the
/// one this header's genesis has, so its bytes are exactly those; the other change must be an
/// uncompressed change of its own author, sequence number 1, depending on the genesis alone and
/// referring to no actor but the genesis's, with every column read to its end and every
/// operation of the creation shape. What is accepted, Automerge accepts and projects the same
/// (the property tests below mutate creations byte by byte).
pub fn read_new_bytes(header: &RecordHeader, changes: &[&[u8]]) -> Option<(Fresh, Vec<Checked>)> {
    let hashes: Vec<ChangeHash> = changes
        .iter()
        .map(|b| crate::change::check_unparsed(b))
        .collect::<Option<_>>()?;
    let genesis = record::genesis_actor(header);
    let genesis_actor = genesis.to_bytes();
    let is_genesis_at = |i: usize| is_genesis(header, changes[i], &hashes[i]).unwrap_or(false);
    let (g, first) = match changes.len() {
        1 => (0, None),
        2 if is_genesis_at(0) => (0, Some(1)),
        2 => (1, Some(0)),
        _ => return None,
    };
    if !is_genesis_at(g) {
        return None;
    }
    let mut checked = vec![
        Checked {
            hash: hashes[g],
            actor: genesis_actor.to_vec(),
        };
        changes.len()
    ];
    let (fields, head, doc) = match first {
        None => (BTreeMap::new(), hashes[g], changes[g].to_vec()),
        Some(f) => {
            let ops = ops::read(changes[f])?;
            if ops.deps != hashes[g].0.as_slice()
                || ops.seq != 1
                || ops.actor == genesis_actor
                || ops.others != [genesis_actor]
            {
                return None;
            }
            let fields = read_fields(&ops, genesis_actor)?;
            checked[f] = Checked {
                hash: hashes[f],
                actor: ops.actor.to_vec(),
            };
            (fields, hashes[f], [changes[g], changes[f]].concat())
        }
    };
    let projection = Projection {
        header: header.clone(),
        deleted: false,
        fields,
        conflicts: 0,
        heads: vec![head.to_string()],
    };
    Some((Fresh { projection, doc }, checked))
}

/// The projection part of [`read_new`].
fn project_new(header: &RecordHeader, changes: &[&Change]) -> Option<Projection> {
    let (genesis, first) = match changes {
        [g] => (*g, None),
        [a, b] if a.deps().is_empty() => (*a, Some(*b)),
        [a, b] if b.deps().is_empty() => (*b, Some(*a)),
        _ => return None,
    };
    if !genesis.deps().is_empty()
        || !is_genesis(header, genesis.raw_bytes(), &genesis.hash()).ok()?
    {
        return None;
    }
    let mut fields = BTreeMap::new();
    let head = match first {
        None => genesis.hash(),
        Some(change) => {
            let genesis_actor = record::genesis_actor(header);
            if change.deps() != [genesis.hash()]
                || change.seq() != 1
                || change.actor_id() == &genesis_actor
            {
                return None;
            }
            fields = read_fields(&ops::read(change.raw_bytes())?, genesis_actor.to_bytes())?;
            change.hash()
        }
    };
    Some(Projection {
        header: header.clone(),
        deleted: false,
        fields,
        conflicts: 0,
        heads: vec![head.to_string()],
    })
}

/// The field values one creation-shaped change writes into an empty `fields` map, or `None`
/// when any operation is not of that shape. The operations are read from the change's columns
/// ([`crate::change::ops`]) rather than decoded into Automerge's owned operations, one for each
/// character of a note.
fn read_fields(ops: &ops::Ops<'_>, genesis_actor: &[u8]) -> Option<BTreeMap<String, FieldValue>> {
    // The author's own actor, by its bytes: an index of the other actors can name it too.
    let is_author = |i: u64| ops.actor_at(i) == Some(ops.actor);
    let mut slots: BTreeMap<String, Slot> = BTreeMap::new();
    // Objects this change made (a record has a few), by operation number, with the field that
    // holds each.
    let mut made: Vec<(u64, String)> = Vec::new();
    let mut it = ops.iter();
    let mut counter = ops.start_op;
    while let Some(op) = it.next_op()? {
        let this = counter;
        if this > u64::from(u32::MAX) {
            return None; // past Automerge's 32-bit counters
        }
        counter += 1;
        if op.preds != 0 {
            return None;
        }
        let (obj_actor, obj) = op.obj?; // the root: only the genesis writes there
        if obj == FIELDS_OP && ops.actor_at(obj_actor)? == genesis_actor {
            let (Key::Map(name), false) = (op.key, op.insert) else {
                return None;
            };
            if slots.contains_key(name) {
                return None;
            }
            let slot = match (op.action, op.value) {
                (ops::PUT, value) => Slot::Value(record::scalar_field(&value.to_scalar())?),
                (ops::MAKE_TEXT, Value::Null) => {
                    made.push((this, name.to_string()));
                    Slot::Text(String::new(), None)
                }
                (ops::MAKE_MAP, Value::Null) => {
                    made.push((this, name.to_string()));
                    Slot::Map(BTreeMap::new())
                }
                _ => return None,
            };
            slots.insert(name.to_string(), slot);
            continue;
        }
        if !is_author(obj_actor) {
            return None;
        }
        // `made` is in operation order: a binary search, so that a change making many
        // objects costs no more than its length.
        let at = made.binary_search_by_key(&obj, |(n, _)| *n).ok()?;
        let name = &made[at].1;
        let (ops::PUT, Value::Str(value)) = (op.action, op.value) else {
            return None;
        };
        match (slots.get_mut(name)?, op.key, op.insert) {
            (Slot::Text(text, after), key, true) if follows(key, *after, &is_author) => {
                text.push_str(value);
                *after = Some(this);
            }
            (Slot::Map(map), Key::Map(key), false) if !map.contains_key(key) => {
                map.insert(key.to_string(), value.to_string());
            }
            _ => return None,
        }
    }
    if !it.finished() {
        return None;
    }
    Some(
        slots
            .into_iter()
            .map(|(name, slot)| {
                let value = match slot {
                    Slot::Value(v) => v,
                    Slot::Text(text, _) => FieldValue::Text(text),
                    Slot::Map(map) => FieldValue::Map(map),
                };
                (name, value)
            })
            .collect(),
    )
}

/// Whether an insertion at `key` comes right after `after` (the author's element of that
/// number, or the start of the text when `None`).
fn follows(key: Key<'_>, after: Option<u64>, is_author: &impl Fn(u64) -> bool) -> bool {
    match (key, after) {
        (Key::Head, None) => true,
        (Key::Elem(actor, n), Some(last)) => n == last && is_author(actor),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::creation;
    use automerge::transaction::{CommitOptions, Transactable};
    use automerge::{ActorId, ObjType, ROOT, ReadDoc};
    use proptest::prelude::*;

    fn header(n: u128) -> RecordHeader {
        RecordHeader {
            id: uuid::Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0000 + n),
            kind: "interview".into(),
            campaign: uuid::Uuid::from_u128(0x2026),
            scope: "350102001".into(),
        }
    }

    /// What Automerge makes of `changes` applied to an empty document.
    fn through_automerge(changes: &[&Change]) -> Projection {
        let mut doc = record::new_doc();
        doc.apply_changes(changes.iter().map(|c| (*c).clone()).collect::<Vec<_>>())
            .unwrap();
        record::project(&doc).unwrap()
    }

    fn every_type() -> Vec<(&'static str, FieldValue)> {
        vec![
            ("interviewee", FieldValue::Str("王建国".into())),
            ("age", FieldValue::Int(48)),
            ("share", FieldValue::Float(0.25)),
            ("member", FieldValue::Bool(true)),
            ("none", FieldValue::Null),
            (
                "notes",
                FieldValue::Text("班子团结，集体经济收入偏低 👍 e\u{301}。".repeat(20)),
            ),
            ("empty", FieldValue::Text(String::new())),
            (
                "ratings",
                FieldValue::Map(BTreeMap::from([
                    ("m1".to_string(), "好".to_string()),
                    ("m2".to_string(), "较好".to_string()),
                ])),
            ),
            ("no_ratings", FieldValue::Map(BTreeMap::new())),
        ]
    }

    #[test]
    fn a_created_record_is_read_without_a_document_and_equals_automerge() {
        let h = header(1);
        let fields = every_type();
        for n in 0..=fields.len() {
            let c = creation::create(&h, &ActorId::random(), 42, &fields[..n]).unwrap();
            let changes: Vec<&Change> = c.changes().collect();
            let fast = project_new(&h, &changes).expect("a creation is recognised");
            assert_eq!(fast, through_automerge(&changes), "the first {n} fields");
            assert_eq!(fast, c.projection);
            // The order the changes arrive in does not matter, and the document kept is the
            // changes, genesis first.
            let reversed: Vec<&Change> = changes.iter().rev().copied().collect();
            let kept = read_new(&h, &reversed).expect("a creation in any order is recognised");
            assert_eq!(kept.projection, fast);
            let loaded = record::load_doc(&kept.doc).unwrap();
            assert_eq!(record::project(&loaded).unwrap(), fast);
            let in_order: Vec<u8> = c.changes().flat_map(|c| c.raw_bytes().to_vec()).collect();
            assert_eq!(kept.doc, in_order);
        }
    }

    #[test]
    fn other_shapes_are_left_to_automerge() {
        let h = header(2);
        let actor = ActorId::random();
        let c = creation::create(&h, &actor, 42, &every_type()).unwrap();
        let genesis = c.genesis.clone();
        let first = c.fields.clone().unwrap();

        // Another record's genesis, or the first change alone.
        assert_eq!(project_new(&header(3), &[&genesis, &first]), None);
        assert_eq!(project_new(&h, &[&first]), None);
        assert_eq!(project_new(&h, &[]), None);

        // A later edit of the record (three changes).
        let mut doc = record::load_doc(
            &[genesis.raw_bytes(), first.raw_bytes()].concat(), //
        )
        .unwrap();
        doc.set_actor(actor.clone());
        let fields = record::fields_obj(&doc).unwrap();
        let mut tx = doc.transaction();
        tx.put(&fields, "age", 49).unwrap();
        tx.commit_with(CommitOptions::default().with_time(43));
        let edit = doc.get_last_local_change().unwrap().clone();
        assert_eq!(project_new(&h, &[&genesis, &first, &edit]), None);

        // Two devices writing the same new record at once.
        let other = creation::create(&h, &ActorId::random(), 42, &every_type()).unwrap();
        let concurrent = other.fields.clone().unwrap();
        assert_eq!(project_new(&h, &[&first, &concurrent]), None);
    }

    #[test]
    fn a_first_change_that_overwrites_deletes_or_splices_backwards_is_left_to_automerge() {
        let h = header(4);
        let (mut doc, genesis) = record::genesis_change(&h).unwrap();
        let genesis = Change::try_from(genesis.as_slice()).unwrap();
        doc.set_actor(ActorId::random());
        let fields = record::fields_obj(&doc).unwrap();
        let mut tx = doc.transaction();
        tx.put(&fields, "a", 1).unwrap();
        tx.put(&fields, "a", 2).unwrap(); // an overwrite: a predecessor
        let text = tx.put_object(&fields, "t", ObjType::Text).unwrap();
        tx.splice_text(&text, 0, 0, "后来").unwrap();
        tx.splice_text(&text, 0, 0, "先").unwrap(); // inserted before the first character
        tx.commit();
        let first = doc.get_last_local_change().unwrap().clone();
        assert_eq!(project_new(&h, &[&genesis, &first]), None);
        assert_eq!(
            through_automerge(&[&genesis, &first]).fields["t"],
            FieldValue::Text("先后来".into())
        );
    }

    /// One random edit of a new record's first change.
    #[derive(Debug, Clone)]
    enum Edit {
        Put(u8, i64),
        Str(u8, String),
        Text(u8, String),
        Splice(u8, usize, usize, String),
        Delete(u8),
        MapPut(u8, u8, String),
        Root(String),
    }

    fn edit() -> impl Strategy<Value = Edit> {
        let name = 0u8..4;
        prop_oneof![
            (name.clone(), any::<i64>()).prop_map(|(n, v)| Edit::Put(n, v)),
            (name.clone(), "[a-z村两委]{0,4}").prop_map(|(n, s)| Edit::Str(n, s)),
            (name.clone(), "[a-z村两委]{0,6}").prop_map(|(n, s)| Edit::Text(n, s)),
            (name.clone(), 0usize..4, 0usize..3, "[a-z村]{0,3}")
                .prop_map(|(n, at, del, s)| Edit::Splice(n, at, del, s)),
            name.clone().prop_map(Edit::Delete),
            (name, 0u8..3, "[a-z好]{0,2}").prop_map(|(n, k, v)| Edit::MapPut(n, k, v)),
            "[a-z]{1,3}".prop_map(Edit::Root),
        ]
    }

    /// `read_new_bytes` of `changes`' bytes, compared with `read_new` of the parsed changes.
    fn from_bytes(h: &RecordHeader, changes: &[&Change]) -> Option<Fresh> {
        let bytes: Vec<&[u8]> = changes.iter().map(|c| c.raw_bytes()).collect();
        let unparsed = read_new_bytes(h, &bytes);
        let parsed = read_new(h, changes);
        match (&unparsed, &parsed) {
            (Some((fresh, checked)), Some(parsed)) => {
                assert_eq!(fresh, parsed);
                for (c, k) in changes.iter().zip(checked) {
                    assert_eq!(k.hash, c.hash());
                    assert_eq!(k.actor, c.actor_id().to_bytes());
                }
            }
            (None, _) => {}
            (Some(_), None) => panic!("read from bytes but not from the parsed changes"),
        }
        unparsed.map(|(f, _)| f)
    }

    #[test]
    fn a_created_record_is_read_from_its_bytes_as_from_its_parsed_changes() {
        let h = header(6);
        let fields = every_type();
        for n in 0..=fields.len() {
            let c = creation::create(&h, &ActorId::random(), 42, &fields[..n]).unwrap();
            let changes: Vec<&Change> = c.changes().collect();
            let fresh = from_bytes(&h, &changes).expect("a creation is read from its bytes");
            assert_eq!(fresh.projection, c.projection);
            let reversed: Vec<&Change> = changes.iter().rev().copied().collect();
            assert_eq!(from_bytes(&h, &reversed), Some(fresh));
        }
        // The genesis alone is a record with no fields yet.
        let c = creation::create(&h, &ActorId::random(), 42, &[]).unwrap();
        assert!(from_bytes(&h, &[&c.genesis]).is_some());
    }

    #[test]
    fn other_shapes_are_not_read_from_bytes() {
        let h = header(7);
        let c = creation::create(&h, &ActorId::random(), 42, &every_type()).unwrap();
        let genesis = c.genesis.raw_bytes();
        let first = c.fields.as_ref().unwrap().raw_bytes();
        assert!(read_new_bytes(&header(8), &[genesis, first]).is_none());
        assert!(read_new_bytes(&h, &[first]).is_none());
        assert!(read_new_bytes(&h, &[]).is_none());
        assert!(read_new_bytes(&h, &[first, first]).is_none());
        assert!(read_new_bytes(&h, &[genesis, genesis]).is_none());
        let other = creation::create(&h, &ActorId::random(), 42, &every_type()).unwrap();
        let concurrent = other.fields.as_ref().unwrap().raw_bytes();
        assert!(read_new_bytes(&h, &[genesis, first, concurrent]).is_none());
        // A flipped byte anywhere: the checksum no longer matches.
        for i in 0..first.len() {
            let mut bad = first.to_vec();
            bad[i] ^= 0x20;
            assert!(read_new_bytes(&h, &[genesis, &bad]).is_none(), "byte {i}");
        }
    }

    fn uleb(out: &mut Vec<u8>, v: u64) {
        leb128::write::unsigned(out, v).unwrap();
    }
    fn sleb(out: &mut Vec<u8>, v: i64) {
        leb128::write::signed(out, v).unwrap();
    }

    /// A first change written by hand: `seq` and `start_op` as raw bytes, the given columns,
    /// `trailing` bytes after the chunk, and the checksum made right over everything after it.
    fn hand_made(
        genesis: &Change,
        genesis_actor: &[u8],
        (seq, start_op): (&[u8], &[u8]),
        columns: &[(u64, Vec<u8>)],
        trailing: &[u8],
    ) -> Vec<u8> {
        use sha2::Digest;
        let mut body = Vec::new();
        uleb(&mut body, 1);
        body.extend(genesis.hash().0);
        uleb(&mut body, 16);
        body.extend([5u8; 16]); // the author
        body.extend(seq);
        body.extend(start_op);
        sleb(&mut body, 42); // time
        uleb(&mut body, 0); // no message
        uleb(&mut body, 1);
        uleb(&mut body, genesis_actor.len() as u64);
        body.extend(genesis_actor);
        uleb(&mut body, columns.len() as u64);
        for (spec, data) in columns {
            uleb(&mut body, *spec);
            uleb(&mut body, data.len() as u64);
        }
        for (_, data) in columns {
            body.extend(data);
        }
        let mut chunk = vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 1];
        uleb(&mut chunk, body.len() as u64);
        chunk.extend(body);
        chunk.extend(trailing);
        let hash: [u8; 32] = sha2::Sha256::digest(&chunk[8..]).into();
        chunk[4..8].copy_from_slice(&hash[..4]);
        chunk
    }

    /// The columns of one operation writing `age = 48` into the fields map (value bytes given).
    fn age_columns(raw: &[u8]) -> Vec<(u64, Vec<u8>)> {
        let run = |v: u64| {
            let mut out = Vec::new();
            sleb(&mut out, 1);
            uleb(&mut out, v);
            out
        };
        let mut key = run(3);
        key.extend(b"age");
        vec![
            (1, run(1)),                                        // object: the genesis actor's…
            (2, run(6)),                                        // …sixth operation, the fields map
            ((1 << 4) | 5, key),                                // key "age"
            ((3 << 4) | 4, vec![1]),                            // not an insertion
            ((4 << 4) | 2, run(1)),                             // put
            ((5 << 4) | 6, run(((raw.len() as u64) << 4) | 4)), // an integer
            ((5 << 4) | 7, raw.to_vec()),
            (7 << 4, run(0)), // no predecessors
        ]
    }

    #[test]
    fn hand_made_bytes_are_read_only_when_automerge_would_read_them() {
        let h = header(10);
        let c = creation::create(&h, &ActorId::random(), 42, &[]).unwrap();
        let genesis = c.genesis.clone();
        let ga = record::genesis_actor(&h).to_bytes().to_vec();
        let one = [1u8];
        let seven = [7u8];
        let make = |seq: &[u8], start: &[u8], columns: &[(u64, Vec<u8>)], trailing: &[u8]| {
            hand_made(&genesis, &ga, (seq, start), columns, trailing)
        };

        // Well made: read, and what Automerge makes of it.
        let good = make(&one, &seven, &age_columns(&[48]), &[]);
        let (fresh, _) = read_new_bytes(&h, &[genesis.raw_bytes(), &good]).expect("read");
        let parsed = Change::try_from(good.as_slice()).expect("Automerge parses it");
        assert_eq!(fresh.projection, through_automerge(&[&genesis, &parsed]));
        assert_eq!(fresh.projection.fields["age"], FieldValue::Int(48));

        let refused = |bytes: Vec<u8>, why: &str| {
            assert!(
                read_new_bytes(&h, &[genesis.raw_bytes(), &bytes]).is_none(),
                "{why}"
            );
        };
        refused(
            make(&one, &seven, &age_columns(&[48]), &[0]),
            "a byte after the chunk",
        );
        refused(
            make(&[0x81, 0], &seven, &age_columns(&[48]), &[]),
            "an overlong number",
        );
        refused(
            make(&one, &seven, &age_columns(&[0xb0, 0]), &[]),
            "an overlong value",
        );
        let mut start = Vec::new();
        uleb(&mut start, 1 << 32);
        refused(
            make(&one, &start, &age_columns(&[48]), &[]),
            "a counter past 32 bits",
        );
        for (spec, why) in [
            ((3 << 4) | 4, "no insertion column"),
            ((5 << 4) | 6, "a value without its metadata"),
            (7 << 4, "no predecessor counts"),
        ] {
            let columns: Vec<_> = age_columns(&[48])
                .into_iter()
                .filter(|(s, _)| *s != spec)
                .collect();
            refused(make(&one, &seven, &columns, &[]), why);
        }
        let mut lone = age_columns(&[48]);
        lone.push(((7 << 4) | 1, vec![])); // predecessor actors without their counters
        refused(
            make(&one, &seven, &lone, &[]),
            "a column without its partner",
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// A creation's first change with bytes replaced and its checksum made right again:
        /// whatever is read from the bytes, Automerge parses and projects the same.
        #[test]
        fn what_is_read_from_mutated_bytes_is_what_automerge_makes_of_them(
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)
        ) {
            use sha2::Digest;
            let h = header(9);
            let c = creation::create(&h, &ActorId::from([3u8; 16]), 42, &every_type()).unwrap();
            let genesis = c.genesis.raw_bytes();
            let mut bytes = c.fields.as_ref().unwrap().raw_bytes().to_vec();
            for (at, b) in &edits {
                let i = 9 + at.index(bytes.len() - 9);
                bytes[i] = *b;
            }
            let hash: [u8; 32] = sha2::Sha256::digest(&bytes[8..]).into();
            bytes[4..8].copy_from_slice(&hash[..4]);
            if let Some((fresh, _)) = read_new_bytes(&h, &[genesis, &bytes]) {
                let first = Change::try_from(bytes.as_slice())
                    .expect("Automerge parses what was read from the bytes");
                prop_assert_eq!(&fresh.projection, &through_automerge(&[&c.genesis, &first]));
                prop_assert_eq!(
                    record::project(&record::load_doc(&fresh.doc).unwrap()).unwrap(),
                    fresh.projection
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Whatever a first change does, the fast reading is either declined or exactly what
        /// Automerge makes of it.
        #[test]
        fn the_fast_reading_is_automerge_or_nothing(edits in prop::collection::vec(edit(), 0..8)) {
            let h = header(5);
            let (mut doc, genesis) = record::genesis_change(&h).unwrap();
            let genesis = Change::try_from(genesis.as_slice()).unwrap();
            doc.set_actor(ActorId::random());
            let fields = record::fields_obj(&doc).unwrap();
            let mut tx = doc.transaction();
            for e in &edits {
                let name = |n: &u8| format!("f{n}");
                let _ = match e {
                    Edit::Put(n, v) => tx.put(&fields, name(n), *v).map(|_| ()),
                    Edit::Str(n, s) => tx.put(&fields, name(n), s.as_str()).map(|_| ()),
                    Edit::Text(n, s) => tx
                        .put_object(&fields, name(n), ObjType::Text)
                        .and_then(|id| tx.splice_text(&id, 0, 0, s)),
                    Edit::Splice(n, at, del, s) => match tx.get(&fields, name(n)) {
                        Ok(Some((automerge::Value::Object(ObjType::Text), id))) => {
                            let len = tx.length(&id);
                            let at = (*at).min(len);
                            let del = (*del).min(len - at) as isize;
                            tx.splice_text(&id, at, del, s)
                        }
                        _ => Ok(()),
                    },
                    Edit::Delete(n) => tx.delete(&fields, name(n)),
                    Edit::MapPut(n, k, v) => {
                        let id = match tx.get(&fields, name(n)) {
                            Ok(Some((automerge::Value::Object(ObjType::Map), id))) => id,
                            _ => tx.put_object(&fields, name(n), ObjType::Map).unwrap(),
                        };
                        tx.put(&id, format!("k{k}"), v.as_str())
                    }
                    Edit::Root(k) => tx.put(ROOT, format!("x{k}"), 1),
                };
            }
            tx.commit();
            let mut changes = vec![genesis];
            if let Some(c) = doc.get_last_local_change() {
                changes.push(c.clone());
            }
            let refs: Vec<&Change> = changes.iter().collect();
            if let Some(fast) = project_new(&h, &refs) {
                prop_assert_eq!(fast, record::project(&doc).unwrap());
            }
            if let Some(fresh) = from_bytes(&h, &refs) {
                prop_assert_eq!(fresh.projection, record::project(&doc).unwrap());
            }
        }
    }
}
