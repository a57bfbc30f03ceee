//! A new record's first changes built directly as Automerge changes, without a document: the
//! genesis and the change that writes the first field values, byte for byte what a document
//! transaction ([`record::genesis_change`], [`record::put_field`]) writes, and the projection
//! they give.
//!
//! Creating a record through a document costs about five times more (every operation is applied
//! to the document, then the change is encoded a second time from it), and creating records
//! offline is what a field worker waits for after every "save" and every import. The changes
//! are the same, so nothing else can tell which way a record was made: texts are still Automerge
//! `Text` objects (concurrent edits of a note merge character by character), and the genesis is
//! still the deterministic one the server recognises. Inputs the direct builder does not cover
//! (a field named twice, a value of another type) go through a document, and so does every
//! creation if the once-per-process comparison of both ways on a sample ever differs (a future
//! Automerge that encodes otherwise).

use std::collections::BTreeMap;
use std::num::NonZeroU64;
use std::sync::OnceLock;

use automerge::legacy::{ElementId, Key, ObjectId, Op, OpId, OpType, SortedVec};
use automerge::transaction::CommitOptions;
use automerge::{ActorId, Change, ChangeHash, ExpandedChange, ObjType, ScalarValue};

use crate::record::{
    self, FIELDS_KEY, FieldValue, Projection, RecordError, RecordHeader, SCHEMA_VERSION,
};

mod encode;

/// A new record's changes and the projection of the document they make.
#[derive(Debug, Clone)]
pub struct Creation {
    /// The genesis change.
    pub genesis: Change,
    /// The change writing the field values (`None` when there were none to write).
    pub fields: Option<Change>,
    /// The record's state after both.
    pub projection: Projection,
}

impl Creation {
    /// The changes in order (genesis first): stored one after the other, they load as the
    /// record's document.
    pub fn changes(&self) -> impl Iterator<Item = &Change> {
        std::iter::once(&self.genesis).chain(self.fields.as_ref())
    }
}

/// Checks a new record's header and field names.
fn validate(header: &RecordHeader, fields: &[(&str, FieldValue)]) -> Result<(), RecordError> {
    header.validate()?;
    for (name, _) in fields {
        record::validate_field_name(name)?;
    }
    Ok(())
}

/// Builds a new record with `header` whose first values, written by `actor` at `time` (ms since
/// the Unix epoch), are `fields`.
pub fn create(
    header: &RecordHeader,
    actor: &ActorId,
    time: i64,
    fields: &[(&str, FieldValue)],
) -> Result<Creation, RecordError> {
    validate(header, fields)?;
    if direct_is_exact() && direct_covers(fields) {
        Ok(direct(header, actor, time, fields))
    } else {
        through_document(header, actor, time, fields)
    }
}

/// A new record's changes as bytes, with their hashes, and the projection they give: what a
/// store keeps of a record it creates ([`create_bytes`]).
#[derive(Debug, Clone, PartialEq)]
pub struct CreatedBytes {
    /// The genesis change's chunk and hash.
    pub genesis: (Vec<u8>, ChangeHash),
    /// The change writing the field values, its chunk and hash (`None` when there were none).
    pub first: Option<(Vec<u8>, ChangeHash)>,
    /// The record's state after both.
    pub projection: Projection,
}

/// [`create`] as bytes: the same changes, written without Automerge encoding them (the genesis
/// from its template, [`crate::genesis::genesis_bytes`]; the other change by `encode`) once a
/// comparison with Automerge on a sample has held in this process. Inputs the byte writer does
/// not cover go through [`create`].
pub fn create_bytes(
    header: &RecordHeader,
    actor: &ActorId,
    time: i64,
    fields: &[(&str, FieldValue)],
) -> Result<CreatedBytes, RecordError> {
    validate(header, fields)?;
    if bytes_are_exact()
        && direct_covers(fields)
        && let Some(made) = direct_bytes(header, actor, time, fields)
    {
        return Ok(made);
    }
    let made = create(header, actor, time, fields)?;
    let bytes = |c: &Change| (c.raw_bytes().to_vec(), c.hash());
    Ok(CreatedBytes {
        genesis: bytes(&made.genesis),
        first: made.fields.as_ref().map(bytes),
        projection: made.projection,
    })
}

/// The byte writer's creation; `None` for a value it does not write.
fn direct_bytes(
    header: &RecordHeader,
    actor: &ActorId,
    time: i64,
    fields: &[(&str, FieldValue)],
) -> Option<CreatedBytes> {
    let genesis = crate::genesis::genesis_bytes(header).ok()?;
    let genesis_actor = record::genesis_actor(header);
    let first = if fields.is_empty() {
        None
    } else {
        Some(encode::first_change(
            actor.to_bytes(),
            &genesis.1,
            genesis_actor.to_bytes(),
            time,
            fields,
        )?)
    };
    let head = first.as_ref().unwrap_or(&genesis).1;
    let mut projected = BTreeMap::new();
    for (name, value) in fields {
        projected.insert((*name).to_string(), value.clone());
    }
    Some(CreatedBytes {
        genesis,
        first,
        projection: Projection {
            header: header.clone(),
            deleted: false,
            fields: projected,
            conflicts: 0,
            heads: vec![head.to_string()],
        },
    })
}

/// Whether the byte writer writes exactly what a document writes, checked once per process on
/// [`sample`] and each of its prefixes, and on [`runs`]: the column encodings' edge cases.
fn bytes_are_exact() -> bool {
    static EXACT: OnceLock<bool> = OnceLock::new();
    *EXACT.get_or_init(|| {
        let (header, fields) = sample();
        let actor = ActorId::from([7u8; 16]);
        (0..=fields.len()).all(|n| same_bytes(&header, &actor, &fields[..n]))
            && same_bytes(&header, &actor, &runs())
    })
}

/// Fields that take each column encoder through its other states: two texts (the key counter
/// falls back between them), runs and literal runs of 64 and more (two-byte counts), `false`, a
/// negative and a long integer, an empty string, an empty map, and a map after a text.
fn runs() -> Vec<(&'static str, FieldValue)> {
    vec![
        ("a", FieldValue::Text("好".repeat(70))),
        ("b", FieldValue::Text(('一'..).take(70).collect())),
        ("c", FieldValue::Bool(false)),
        ("d", FieldValue::Int(-1_234_567_890_123)),
        ("e", FieldValue::Str(String::new())),
        ("f", FieldValue::Map(BTreeMap::new())),
        ("g", FieldValue::Text("村".into())),
        (
            "h",
            FieldValue::Map(BTreeMap::from([("m".to_string(), String::new())])),
        ),
        ("i", FieldValue::Float(-0.0)),
    ]
}

/// Whether [`direct_bytes`] and a document transaction make the same record of `fields`.
fn same_bytes(header: &RecordHeader, actor: &ActorId, fields: &[(&str, FieldValue)]) -> bool {
    let Ok(slow) = through_document(header, actor, 1_700_000_000_000, fields) else {
        return false;
    };
    let Some(fast) = direct_bytes(header, actor, 1_700_000_000_000, fields) else {
        return false;
    };
    let bytes = |c: &Change| (c.raw_bytes().to_vec(), c.hash());
    fast.genesis == bytes(&slow.genesis)
        && fast.first == slow.fields.as_ref().map(bytes)
        && fast.projection == slow.projection
}

/// Whether the direct builder handles these values (each name once; the value types
/// `put_field` writes into a fresh record).
fn direct_covers(fields: &[(&str, FieldValue)]) -> bool {
    let mut names = std::collections::HashSet::new();
    fields.iter().all(|(name, value)| {
        names.insert(*name)
            && match value {
                FieldValue::Float(f) => f.is_finite(),
                FieldValue::Other(_) => false,
                _ => true,
            }
    })
}

/// The same record made through a document transaction, as everything else writes records.
fn through_document(
    header: &RecordHeader,
    actor: &ActorId,
    time: i64,
    fields: &[(&str, FieldValue)],
) -> Result<Creation, RecordError> {
    let (mut doc, genesis) = record::genesis_change(header)?;
    let genesis =
        Change::try_from(genesis.as_slice()).map_err(|e| RecordError::Automerge(e.to_string()))?;
    doc.set_actor(actor.clone());
    let mut change = None;
    if !fields.is_empty() {
        let fields_obj = record::fields_obj(&doc)?;
        let mut tx = doc.transaction();
        for (name, value) in fields {
            record::put_field(&mut tx, &fields_obj, name, value)?;
        }
        let (hash, _) = tx.commit_with(CommitOptions::default().with_time(time));
        if hash.is_some() {
            change = doc.get_last_local_change();
        }
    }
    Ok(Creation {
        genesis,
        fields: change,
        projection: record::project(&doc)?,
    })
}

fn op(action: OpType, obj: &ObjectId, key: Key, insert: bool) -> Op {
    Op {
        action,
        obj: obj.clone(),
        key,
        pred: SortedVec::new(),
        insert,
    }
}

fn expanded(
    actor: &ActorId,
    start_op: u64,
    time: i64,
    deps: Vec<ChangeHash>,
    ops: Vec<Op>,
) -> Change {
    Change::from(ExpandedChange {
        operations: ops,
        actor_id: actor.clone(),
        hash: None,
        seq: 1,
        start_op: NonZeroU64::new(start_op).expect("operations count from 1"),
        time,
        message: None,
        deps,
        extra_bytes: Vec::new(),
        author: None,
    })
}

/// The genesis as [`record::genesis_change`] writes it: five root keys and the `fields` map
/// (operation 6 of the genesis actor), at time 0.
fn direct_genesis(header: &RecordHeader) -> Change {
    let root = ObjectId::Root;
    let put =
        |key: &str, value: ScalarValue| op(OpType::Put(value), &root, Key::Map(key.into()), false);
    let ops = vec![
        put("schema", ScalarValue::Int(SCHEMA_VERSION)),
        put(
            "id",
            ScalarValue::Str(header.id.hyphenated().to_string().into()),
        ),
        put("kind", ScalarValue::Str(header.kind.as_str().into())),
        put(
            "campaign",
            ScalarValue::Str(header.campaign.hyphenated().to_string().into()),
        ),
        put("scope", ScalarValue::Str(header.scope.as_str().into())),
        op(
            OpType::Make(ObjType::Map),
            &root,
            Key::Map(FIELDS_KEY.into()),
            false,
        ),
    ];
    expanded(&record::genesis_actor(header), 1, 0, Vec::new(), ops)
}

fn direct(
    header: &RecordHeader,
    actor: &ActorId,
    time: i64,
    fields: &[(&str, FieldValue)],
) -> Creation {
    let genesis = direct_genesis(header);
    let fields_obj = ObjectId::Id(OpId(6, record::genesis_actor(header)));
    let first = 7;
    let mut ops = Vec::new();
    let mut projected = BTreeMap::new();
    for (name, value) in fields {
        let key = Key::Map((*name).into());
        let scalar = |v: ScalarValue| op(OpType::Put(v), &fields_obj, key.clone(), false);
        match value {
            FieldValue::Null => ops.push(scalar(ScalarValue::Null)),
            FieldValue::Bool(b) => ops.push(scalar(ScalarValue::Boolean(*b))),
            FieldValue::Int(i) => ops.push(scalar(ScalarValue::Int(*i))),
            FieldValue::Float(f) => ops.push(scalar(ScalarValue::F64(*f))),
            FieldValue::Str(s) => ops.push(scalar(ScalarValue::Str(s.as_str().into()))),
            FieldValue::Text(s) => {
                let text = ObjectId::Id(OpId(first + ops.len() as u64, actor.clone()));
                ops.push(op(OpType::Make(ObjType::Text), &fields_obj, key, false));
                // One insertion per code point, each after the one before.
                let mut after = ElementId::Head;
                let mut buf = [0u8; 4];
                for c in s.chars() {
                    let id = OpId(first + ops.len() as u64, actor.clone());
                    let value = ScalarValue::Str((&*c.encode_utf8(&mut buf)).into());
                    ops.push(op(OpType::Put(value), &text, Key::Seq(after), true));
                    after = ElementId::Id(id);
                }
            }
            FieldValue::Map(entries) => {
                let map = ObjectId::Id(OpId(first + ops.len() as u64, actor.clone()));
                ops.push(op(OpType::Make(ObjType::Map), &fields_obj, key, false));
                for (k, v) in entries {
                    ops.push(op(
                        OpType::Put(ScalarValue::Str(v.as_str().into())),
                        &map,
                        Key::Map(k.as_str().into()),
                        false,
                    ));
                }
            }
            FieldValue::Other(_) => unreachable!("direct_covers refuses other values"),
        }
        projected.insert((*name).to_string(), value.clone());
    }
    let change = (!ops.is_empty()).then(|| expanded(actor, first, time, vec![genesis.hash()], ops));
    let heads = vec![change.as_ref().unwrap_or(&genesis).hash().to_string()];
    Creation {
        projection: Projection {
            header: header.clone(),
            deleted: false,
            fields: projected,
            conflicts: 0,
            heads,
        },
        genesis,
        fields: change,
    }
}

/// The sample both ways are compared on: every value type, Chinese, an emoji, an empty text.
fn sample() -> (RecordHeader, Vec<(&'static str, FieldValue)>) {
    let header = RecordHeader {
        id: uuid::Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0001),
        kind: "interview".into(),
        campaign: uuid::Uuid::from_u128(0x2026),
        scope: "350102001".into(),
    };
    let fields = vec![
        ("interviewee", FieldValue::Str("王建国".into())),
        ("age", FieldValue::Int(48)),
        ("share", FieldValue::Float(0.25)),
        ("member", FieldValue::Bool(true)),
        ("none", FieldValue::Null),
        (
            "notes",
            FieldValue::Text("班子团结，集体经济收入偏低 👍 e\u{301}。".into()),
        ),
        ("empty", FieldValue::Text(String::new())),
        (
            "ratings",
            FieldValue::Map(BTreeMap::from([
                ("m1".to_string(), "好".to_string()),
                ("m2".to_string(), "较好".to_string()),
            ])),
        ),
    ];
    (header, fields)
}

/// Whether the direct builder writes exactly what a document writes, checked once per process
/// on [`sample`].
fn direct_is_exact() -> bool {
    static EXACT: OnceLock<bool> = OnceLock::new();
    *EXACT.get_or_init(|| {
        let (header, fields) = sample();
        let actor = ActorId::from([7u8; 16]);
        let Ok(slow) = through_document(&header, &actor, 1_700_000_000_000, &fields) else {
            return false;
        };
        let fast = direct(&header, &actor, 1_700_000_000_000, &fields);
        same(&slow, &fast)
    })
}

fn same(a: &Creation, b: &Creation) -> bool {
    let bytes =
        |c: &Creation| -> Vec<Vec<u8>> { c.changes().map(|c| c.raw_bytes().to_vec()).collect() };
    bytes(a) == bytes(b) && a.projection == b.projection
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_direct_builder_writes_what_a_document_writes() {
        assert!(direct_is_exact());
        let (header, fields) = sample();
        let actor = ActorId::random();
        for n in 0..=fields.len() {
            let slow = through_document(&header, &actor, 42, &fields[..n]).unwrap();
            let fast = direct(&header, &actor, 42, &fields[..n]);
            assert!(same(&slow, &fast), "the first {n} fields");
        }
        // The genesis is the one the server recognises.
        let (_, genesis) = record::genesis_change(&header).unwrap();
        assert_eq!(direct_genesis(&header).raw_bytes(), genesis.as_slice());
    }

    #[test]
    fn the_byte_writer_writes_what_a_document_writes() {
        assert!(bytes_are_exact());
        let (header, fields) = sample();
        let actor = ActorId::random();
        for n in 0..=fields.len() {
            assert!(same_bytes(&header, &actor, &fields[..n]), "the first {n}");
            // And each field alone, so every value type starts a change.
            assert!(same_bytes(
                &header,
                &actor,
                &fields[n.min(fields.len() - 1)..][..1]
            ));
        }
        // Long runs: a note of one character repeated, of all different ones, and of both.
        let notes = [
            "好".repeat(300),
            ('一'..='龥').take(300).collect::<String>(),
            "村村通公路好好好好".repeat(40),
        ];
        for note in notes {
            let fields = [
                ("notes", FieldValue::Text(note)),
                ("n", FieldValue::Int(-70000)),
                ("v", FieldValue::Str(String::new())),
            ];
            assert!(same_bytes(&header, &actor, &fields));
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Any fields of the types a form writes: the byte writer's changes are Automerge's,
        /// byte for byte.
        #[test]
        fn any_creation_is_written_as_automerge_writes_it(
            values in proptest::collection::vec(value(), 0..12),
            time in proptest::prelude::any::<i64>(),
        ) {
            let (header, _) = sample();
            let names: Vec<String> = (0..values.len()).map(|i| format!("f{i}")).collect();
            let fields: Vec<(&str, FieldValue)> =
                names.iter().map(String::as_str).zip(values).collect();
            let actor = ActorId::random();
            let slow = through_document(&header, &actor, time, &fields).unwrap();
            let fast = direct_bytes(&header, &actor, time, &fields).unwrap();
            proptest::prop_assert_eq!(&fast.genesis.0, &slow.genesis.raw_bytes().to_vec());
            proptest::prop_assert_eq!(
                fast.first.map(|f| f.0),
                slow.fields.map(|c| c.raw_bytes().to_vec())
            );
        }
    }

    fn value() -> impl proptest::strategy::Strategy<Value = FieldValue> {
        use proptest::prelude::*;
        prop_oneof![
            Just(FieldValue::Null),
            any::<bool>().prop_map(FieldValue::Bool),
            any::<i64>().prop_map(FieldValue::Int),
            (-1e12f64..1e12).prop_map(FieldValue::Float),
            "[a-z好坏一二 ]{0,12}".prop_map(FieldValue::Str),
            "[a-z好坏一二，。 ]{0,40}".prop_map(FieldValue::Text),
            proptest::collection::btree_map("[a-z0-9]{1,4}", "[好较差一般]{0,3}", 0..4)
                .prop_map(FieldValue::Map),
        ]
    }

    #[test]
    fn a_long_chinese_note_loads_and_projects_the_same() {
        let (header, _) = sample();
        let note: String = "村两委班子团结协作，集体经济收入渠道单一。".repeat(25);
        let fields = [("notes", FieldValue::Text(note.clone()))];
        let c = create(&header, &ActorId::random(), 5, &fields).unwrap();
        let bytes: Vec<u8> = c.changes().flat_map(|c| c.raw_bytes().to_vec()).collect();
        let doc = record::load_doc(&bytes).unwrap();
        assert_eq!(record::project(&doc).unwrap(), c.projection);
        assert_eq!(c.projection.fields["notes"], FieldValue::Text(note));
    }

    #[test]
    fn inputs_the_builder_does_not_cover_go_through_a_document() {
        let (header, _) = sample();
        let twice = [("a", FieldValue::Int(1)), ("a", FieldValue::Int(2))];
        assert!(!direct_covers(&twice));
        let c = create(&header, &ActorId::random(), 5, &twice).unwrap();
        assert_eq!(c.projection.fields["a"], FieldValue::Int(2));
        let bad = [("x", FieldValue::Float(f64::NAN))];
        assert!(matches!(
            create(&header, &ActorId::random(), 5, &bad),
            Err(RecordError::NonFiniteNumber { .. })
        ));
        assert!(
            create(
                &header,
                &ActorId::random(),
                5,
                &[("bad name", FieldValue::Null)]
            )
            .is_err()
        );
    }
}
