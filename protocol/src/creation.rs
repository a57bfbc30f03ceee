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

/// Builds a new record with `header` whose first values, written by `actor` at `time` (ms since
/// the Unix epoch), are `fields`.
pub fn create(
    header: &RecordHeader,
    actor: &ActorId,
    time: i64,
    fields: &[(&str, FieldValue)],
) -> Result<Creation, RecordError> {
    header.validate()?;
    for (name, _) in fields {
        record::validate_field_name(name)?;
    }
    if direct_is_exact() && direct_covers(fields) {
        Ok(direct(header, actor, time, fields))
    } else {
        through_document(header, actor, time, fields)
    }
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
