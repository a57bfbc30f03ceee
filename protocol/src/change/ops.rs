//! A change's operations read straight from its columns, borrowing keys and strings from its
//! bytes: what [`crate::fresh`] reads a new record from, at a fraction of the cost of
//! `Change::decode`, which builds an owned operation (and a string) for every character of a note.
//!
//! It reads bytes nobody has checked (a push, a pull page: [`crate::fresh::read_new_bytes`]),
//! so it is stricter than Automerge, never looser: every number must be in its shortest LEB128
//! form (Automerge refuses overlong ones), the chunk must end where its length says, a column
//! an operation needs (insertion, value, predecessors) must hold a value for it, and paired
//! columns come together. Anything it does not expect (a compressed column, an unknown
//! column, a value of an unknown type) ends the reading with `None`, and the caller then goes
//! through Automerge, which decides.

/// One operation as its columns hold it. Actors are indexes into the change's actor list: `0`
/// is the change's author, `k` its `k`-th other actor.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Op<'a> {
    /// The object it writes into: `(actor, counter)`, or `None` for the root.
    pub(crate) obj: Option<(u64, u64)>,
    /// Where in that object.
    pub(crate) key: Key<'a>,
    /// Whether it inserts into a sequence.
    pub(crate) insert: bool,
    /// Automerge's action number (0 make map, 1 put, 4 make text, ...).
    pub(crate) action: u64,
    /// Its value (null for the actions that make objects).
    pub(crate) value: Value<'a>,
    /// How many operations it overwrites.
    pub(crate) preds: u64,
}

/// An operation's key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Key<'a> {
    /// A map key.
    Map(&'a str),
    /// The start of a sequence.
    Head,
    /// After the element `(actor, counter)`.
    Elem(u64, u64),
}

/// A value in the value columns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value<'a> {
    Null,
    Bool(bool),
    Uint(u64),
    Int(i64),
    F64(f64),
    Str(&'a str),
    Counter(i64),
    Timestamp(i64),
}

impl Value<'_> {
    /// The value as Automerge's scalar.
    pub(crate) fn to_scalar(self) -> automerge::ScalarValue {
        use automerge::ScalarValue;
        match self {
            Value::Null => ScalarValue::Null,
            Value::Bool(b) => ScalarValue::Boolean(b),
            Value::Uint(u) => ScalarValue::Uint(u),
            Value::Int(i) => ScalarValue::Int(i),
            Value::F64(f) => ScalarValue::F64(f),
            Value::Str(s) => ScalarValue::Str(s.into()),
            Value::Counter(c) => ScalarValue::counter(c),
            Value::Timestamp(t) => ScalarValue::Timestamp(t),
        }
    }
}

/// Automerge's action numbers used here.
pub(crate) const MAKE_MAP: u64 = 0;
/// Put a scalar.
pub(crate) const PUT: u64 = 1;
/// Make a text object.
pub(crate) const MAKE_TEXT: u64 = 4;

/// A change chunk's facts and its operations.
pub(crate) struct Ops<'a> {
    /// The hashes it depends on, 32 bytes each.
    pub(crate) deps: &'a [u8],
    /// The author's actor id.
    pub(crate) actor: &'a [u8],
    /// Its sequence number for that actor.
    pub(crate) seq: u64,
    /// The other actors the operations refer to (index `k` is `others[k - 1]`).
    pub(crate) others: Vec<&'a [u8]>,
    /// The counter of the first operation.
    pub(crate) start_op: u64,
    columns: Columns<'a>,
}

impl<'a> Ops<'a> {
    /// The actor id at index `i` of the change's actor list.
    pub(crate) fn actor_at(&self, i: u64) -> Option<&'a [u8]> {
        match i {
            0 => Some(self.actor),
            k => self.others.get(usize::try_from(k - 1).ok()?).copied(),
        }
    }
}

/// An unsigned LEB128 number in its shortest form (an overlong one is refused, as Automerge
/// refuses it).
fn uleb(bytes: &mut &[u8]) -> Option<u64> {
    let before = bytes.len();
    let v = leb128::read::unsigned(bytes).ok()?;
    let mut buf = [0u8; 10];
    let n = leb128::write::unsigned(&mut &mut buf[..], v).ok()?;
    (before - bytes.len() == n).then_some(v)
}

/// A signed LEB128 number in its shortest form.
fn sleb(bytes: &mut &[u8]) -> Option<i64> {
    let before = bytes.len();
    let v = leb128::read::signed(bytes).ok()?;
    let mut buf = [0u8; 10];
    let n = leb128::write::signed(&mut &mut buf[..], v).ok()?;
    (before - bytes.len() == n).then_some(v)
}

fn take<'a>(bytes: &mut &'a [u8], n: u64) -> Option<&'a [u8]> {
    let n = usize::try_from(n).ok().filter(|n| *n <= bytes.len())?;
    let (head, rest) = bytes.split_at(n);
    *bytes = rest;
    Some(head)
}

/// Reads an uncompressed change chunk (magic, checksum, type, length, body): its header and an
/// iterator over its operations. `None` when it is not one or holds a column this reader does
/// not know.
pub(crate) fn read(chunk: &[u8]) -> Option<Ops<'_>> {
    let mut r = chunk.get(9..)?;
    let len = uleb(&mut r)?;
    let mut body = take(&mut r, len)?;
    if !r.is_empty() {
        return None; // bytes after the chunk
    }
    let n_deps = uleb(&mut body)?;
    let deps = take(&mut body, n_deps.checked_mul(32)?)?;
    let actor_len = uleb(&mut body)?;
    let actor = take(&mut body, actor_len)?;
    let seq = uleb(&mut body)?;
    let start_op = uleb(&mut body)?;
    if start_op == 0 || start_op > u64::from(u32::MAX) {
        return None; // Automerge's counters are 32 bits
    }
    sleb(&mut body)?; // time
    let message = uleb(&mut body)?;
    std::str::from_utf8(take(&mut body, message)?).ok()?;
    let n_others = uleb(&mut body)?;
    let mut others = Vec::new();
    for _ in 0..n_others {
        let n = uleb(&mut body)?;
        others.push(take(&mut body, n)?);
    }
    let n_columns = uleb(&mut body)?;
    let mut specs = Vec::new();
    for _ in 0..n_columns {
        specs.push((uleb(&mut body)?, uleb(&mut body)?));
    }
    if specs.windows(2).any(|w| w[0].0 >= w[1].0) {
        return None; // columns out of order or twice
    }
    let has = |spec: u64| specs.iter().any(|(s, _)| *s == spec);
    if (has(VAL_RAW) && !has(VAL_META)) || has(PRED_ACTOR) != has(PRED_CTR) {
        return None; // a column without its partner: Automerge refuses the change
    }
    let mut columns = Columns::default();
    for (spec, n) in specs {
        let data = take(&mut body, n)?;
        if spec & 8 != 0 {
            return None; // deflated: Automerge's to read
        }
        if matches!(spec, PRED_ACTOR | PRED_CTR) {
            // Only counted through the groups; a change with predecessors is not read here.
            if !data.is_empty() {
                return None;
            }
            continue;
        }
        let slot = match spec {
            OBJ_ACTOR => &mut columns.obj_actor,
            OBJ_CTR => &mut columns.obj_ctr,
            KEY_ACTOR => &mut columns.key_actor,
            KEY_CTR => &mut columns.key_ctr,
            KEY_STR => &mut columns.key_str,
            INSERT => &mut columns.insert,
            ACTION => &mut columns.action,
            VAL_META => &mut columns.val_meta,
            VAL_RAW => &mut columns.val_raw,
            PRED_GROUP => &mut columns.pred_group,
            EXPAND => &mut columns.expand,
            MARK_NAME => &mut columns.mark_name,
            _ => return None,
        };
        *slot = data;
    }
    Some(Ops {
        deps,
        actor,
        seq,
        others,
        start_op,
        columns,
    })
}

// Column specs: the column's id shifted by four, then its type (Automerge's binary format);
// `creation::encode` writes the same.
pub(crate) const OBJ_ACTOR: u64 = 1;
pub(crate) const OBJ_CTR: u64 = 2;
pub(crate) const KEY_ACTOR: u64 = (1 << 4) | 1;
pub(crate) const KEY_CTR: u64 = (1 << 4) | 3;
pub(crate) const KEY_STR: u64 = (1 << 4) | 5;
pub(crate) const INSERT: u64 = (3 << 4) | 4;
pub(crate) const ACTION: u64 = (4 << 4) | 2;
pub(crate) const VAL_META: u64 = (5 << 4) | 6;
pub(crate) const VAL_RAW: u64 = (5 << 4) | 7;
pub(crate) const PRED_GROUP: u64 = 7 << 4;
pub(crate) const PRED_ACTOR: u64 = (7 << 4) | 1;
pub(crate) const PRED_CTR: u64 = (7 << 4) | 3;
pub(crate) const EXPAND: u64 = (9 << 4) | 4;
pub(crate) const MARK_NAME: u64 = (10 << 4) | 5;

/// The columns' bytes (empty when the change has no such column).
#[derive(Default)]
struct Columns<'a> {
    obj_actor: &'a [u8],
    obj_ctr: &'a [u8],
    key_actor: &'a [u8],
    key_ctr: &'a [u8],
    key_str: &'a [u8],
    insert: &'a [u8],
    action: &'a [u8],
    val_meta: &'a [u8],
    val_raw: &'a [u8],
    pred_group: &'a [u8],
    expand: &'a [u8],
    mark_name: &'a [u8],
}

/// A run-length encoded column: a positive count and one value repeated, a negative count and
/// that many values, or zero and a count of nulls.
struct Rle<'a, T> {
    data: &'a [u8],
    read: fn(&mut &'a [u8]) -> Option<T>,
    run: Run<T>,
    left: u64,
}

#[derive(Clone, Copy)]
enum Run<T> {
    Repeat(T),
    Literal,
    Null,
}

impl<'a, T: Copy> Rle<'a, T> {
    fn new(data: &'a [u8], read: fn(&mut &'a [u8]) -> Option<T>) -> Self {
        Rle {
            data,
            read,
            run: Run::Null,
            left: 0,
        }
    }

    /// The next item: `Some(None)` for a null, also once the column has ended (a column may
    /// stop before the others when the rest of it is null); `None` when it is malformed.
    fn next(&mut self) -> Option<Option<T>> {
        while self.left == 0 {
            if self.data.is_empty() {
                return Some(None);
            }
            let count = sleb(&mut self.data)?;
            if count > 0 {
                self.run = Run::Repeat((self.read)(&mut self.data)?);
                self.left = count as u64;
            } else if count < 0 {
                self.run = Run::Literal;
                self.left = count.unsigned_abs();
            } else {
                self.run = Run::Null;
                self.left = uleb(&mut self.data)?;
            }
        }
        self.left -= 1;
        match self.run {
            Run::Repeat(v) => Some(Some(v)),
            Run::Literal => Some(Some((self.read)(&mut self.data)?)),
            Run::Null => Some(None),
        }
    }

    fn ended(&self) -> bool {
        self.left == 0 && self.data.is_empty()
    }
}

/// A delta-encoded column: run-length encoded differences from the value before.
struct Delta<'a> {
    rle: Rle<'a, i64>,
    last: i64,
}

impl<'a> Delta<'a> {
    fn new(data: &'a [u8]) -> Self {
        Delta {
            rle: Rle::new(data, sleb),
            last: 0,
        }
    }

    fn next(&mut self) -> Option<Option<u64>> {
        match self.rle.next()? {
            None => Some(None),
            Some(d) => {
                self.last = self.last.checked_add(d)?;
                Some(Some(u64::try_from(self.last).ok()?))
            }
        }
    }
}

/// A boolean column: alternating run lengths, starting with a run of `false`.
struct Bools<'a> {
    data: &'a [u8],
    value: bool,
    left: u64,
}

impl<'a> Bools<'a> {
    fn new(data: &'a [u8]) -> Self {
        Bools {
            data,
            value: true,
            left: 0,
        }
    }

    /// The next value (`false` once the column has ended, for a column that may end early:
    /// `optional`); `None` when malformed or when a required column has ended.
    fn next(&mut self, optional: bool) -> Option<bool> {
        while self.left == 0 {
            if self.data.is_empty() {
                return optional.then_some(false);
            }
            self.left = uleb(&mut self.data)?;
            self.value = !self.value;
        }
        self.left -= 1;
        Some(self.value)
    }
}

fn string<'a>(bytes: &mut &'a [u8]) -> Option<&'a str> {
    let n = uleb(bytes)?;
    std::str::from_utf8(take(bytes, n)?).ok()
}

/// Reads the change's operations in order, or `None` when any of them is not readable here.
pub(crate) struct OpIter<'a> {
    obj_actor: Rle<'a, u64>,
    obj_ctr: Rle<'a, u64>,
    key_actor: Rle<'a, u64>,
    key_ctr: Delta<'a>,
    key_str: Rle<'a, &'a str>,
    insert: Bools<'a>,
    action: Rle<'a, u64>,
    val_meta: Rle<'a, u64>,
    val_raw: &'a [u8],
    pred_group: Rle<'a, u64>,
    expand: Bools<'a>,
    mark_name: Rle<'a, &'a str>,
}

impl<'a> Ops<'a> {
    /// The operations, in the change's order.
    pub(crate) fn iter(&self) -> OpIter<'a> {
        let c = &self.columns;
        OpIter {
            obj_actor: Rle::new(c.obj_actor, uleb),
            obj_ctr: Rle::new(c.obj_ctr, uleb),
            key_actor: Rle::new(c.key_actor, uleb),
            key_ctr: Delta::new(c.key_ctr),
            key_str: Rle::new(c.key_str, string),
            insert: Bools::new(c.insert),
            action: Rle::new(c.action, uleb),
            val_meta: Rle::new(c.val_meta, uleb),
            val_raw: c.val_raw,
            pred_group: Rle::new(c.pred_group, uleb),
            expand: Bools::new(c.expand),
            mark_name: Rle::new(c.mark_name, string),
        }
    }
}

impl<'a> OpIter<'a> {
    /// Whether every column has been read to its end (after the last operation): a change
    /// whose columns hold more than its operations is left to Automerge.
    pub(crate) fn finished(&self) -> bool {
        self.action.ended()
            && self.obj_actor.ended()
            && self.obj_ctr.ended()
            && self.key_actor.ended()
            && self.key_ctr.rle.ended()
            && self.key_str.ended()
            && self.insert.left == 0
            && self.insert.data.is_empty()
            && self.val_meta.ended()
            && self.val_raw.is_empty()
            && self.pred_group.ended()
            && self.expand.left == 0
            && self.expand.data.is_empty()
            && self.mark_name.ended()
    }

    /// The next operation: `Some(None)` after the last one, `None` when it cannot be read here.
    pub(crate) fn next_op(&mut self) -> Option<Option<Op<'a>>> {
        if self.action.ended() {
            return Some(None);
        }
        let action = self.action.next()??;
        let obj = match (self.obj_actor.next()?, self.obj_ctr.next()?) {
            (None, None) => None,
            (Some(a), Some(c)) if c > 0 => Some((a, c)),
            _ => return None,
        };
        let key = match (
            self.key_actor.next()?,
            self.key_ctr.next()?,
            self.key_str.next()?,
        ) {
            (None, None, Some(s)) => Key::Map(s),
            (None, Some(0), None) => Key::Head,
            (Some(a), Some(c), None) if c > 0 => Key::Elem(a, c),
            _ => return None,
        };
        // Every operation has an insertion flag, a value and a count of predecessors: a column
        // that ends early or holds a null there makes Automerge refuse the change.
        let insert = self.insert.next(false)?;
        let meta = self.val_meta.next()??;
        let raw = take(&mut self.val_raw, meta >> 4)?;
        let value = value(meta & 15, raw)?;
        let preds = self.pred_group.next()??;
        if self.expand.next(true)? || self.mark_name.next()?.is_some() {
            return None; // marks: Automerge's to read
        }
        Some(Some(Op {
            obj,
            key,
            insert,
            action,
            value,
            preds,
        }))
    }
}

/// A value from its type code and raw bytes, each of which it must use exactly.
fn value(code: u64, raw: &[u8]) -> Option<Value<'_>> {
    let whole = |mut r: &[u8], f: fn(&mut &[u8]) -> Option<i64>| {
        let v = f(&mut r)?;
        r.is_empty().then_some(v)
    };
    Some(match code {
        0 if raw.is_empty() => Value::Null,
        1 if raw.is_empty() => Value::Bool(false),
        2 if raw.is_empty() => Value::Bool(true),
        3 => {
            let mut r = raw;
            let v = uleb(&mut r)?;
            if !r.is_empty() {
                return None;
            }
            Value::Uint(v)
        }
        4 => Value::Int(whole(raw, sleb)?),
        5 => Value::F64(f64::from_le_bytes(raw.try_into().ok()?)),
        6 => Value::Str(std::str::from_utf8(raw).ok()?),
        8 => Value::Counter(whole(raw, sleb)?),
        9 => Value::Timestamp(whole(raw, sleb)?),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FieldValue, RecordHeader, creation};
    use automerge::legacy::{ElementId, Key as LKey, ObjectId, OpType};
    use automerge::transaction::Transactable;
    use automerge::{ActorId, Change, ObjType, ROOT, ReadDoc, ScalarValue};
    use proptest::prelude::*;

    /// An operation in Automerge's legacy terms: object, key, insertion, action, predecessors.
    type Legacy = (ObjectId, LKey, bool, OpType, usize);

    /// Every operation of `change` as this reader reads it, in Automerge's legacy terms for
    /// comparison; `None` when the reader declines.
    fn read_all(change: &Change) -> Option<Vec<Legacy>> {
        let ops = read(change.raw_bytes())?;
        let actor = |i: u64| ActorId::from(ops.actor_at(i).unwrap());
        let mut out = Vec::new();
        let mut it = ops.iter();
        while let Some(op) = it.next_op()? {
            let obj = match op.obj {
                None => ObjectId::Root,
                Some((a, c)) => ObjectId::Id(automerge::legacy::OpId(c, actor(a))),
            };
            let key = match op.key {
                Key::Map(s) => LKey::Map(s.into()),
                Key::Head => LKey::Seq(ElementId::Head),
                Key::Elem(a, c) => LKey::Seq(ElementId::Id(automerge::legacy::OpId(c, actor(a)))),
            };
            let scalar = op.value.to_scalar();
            let action = match op.action {
                MAKE_MAP => OpType::Make(ObjType::Map),
                PUT => OpType::Put(scalar),
                2 => OpType::Make(ObjType::List),
                3 => OpType::Delete,
                MAKE_TEXT => OpType::Make(ObjType::Text),
                _ => return None,
            };
            out.push((obj, key, op.insert, action, op.preds as usize));
        }
        Some(out)
    }

    /// The same operations as `Change::decode` gives them.
    fn decoded(change: &Change) -> Vec<Legacy> {
        change
            .decode()
            .operations
            .into_iter()
            .map(|op| (op.obj, op.key, op.insert, op.action, op.pred.len()))
            .collect()
    }

    #[test]
    fn a_creation_reads_as_automerge_decodes_it() {
        let header = RecordHeader {
            id: uuid::Uuid::from_u128(7),
            kind: "interview".into(),
            campaign: uuid::Uuid::from_u128(8),
            scope: "350102001".into(),
        };
        let fields = [
            (
                "notes",
                FieldValue::Text("村两委班子团结 👍 e\u{301}".repeat(30)),
            ),
            ("name", FieldValue::Str("王建国".into())),
            ("age", FieldValue::Int(-48)),
            ("big", FieldValue::Int(1 << 40)),
            ("share", FieldValue::Float(0.25)),
            ("yes", FieldValue::Bool(true)),
            ("no", FieldValue::Bool(false)),
            ("none", FieldValue::Null),
            (
                "ratings",
                FieldValue::Map([("m1".to_string(), "好".to_string())].into()),
            ),
        ];
        let made = creation::create(&header, &ActorId::random(), 42, &fields).unwrap();
        for change in made.changes() {
            let ours = read_all(change).expect("a creation is read");
            assert!(!ours.is_empty());
            assert_eq!(ours, decoded(change));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        /// Whatever a change does, this reader declines it or reads what Automerge decodes.
        #[test]
        fn any_change_reads_as_automerge_decodes_it_or_not_at_all(
            edits in prop::collection::vec((0u8..6, 0u8..3, any::<i32>(), "[a-z村两委]{0,5}"), 0..12)
        ) {
            let mut doc = automerge::AutoCommit::new();
            let text = doc.put_object(ROOT, "t", ObjType::Text).unwrap();
            let map = doc.put_object(ROOT, "m", ObjType::Map).unwrap();
            doc.commit();
            for (what, key, n, s) in &edits {
                let k = format!("k{key}");
                let _ = match what {
                    0 => doc.put(&map, &k, *n as i64),
                    1 => doc.put(&map, &k, s.as_str()),
                    2 => doc.put(ROOT, &k, *n as f64),
                    3 => doc.delete(&map, &k),
                    4 => {
                        let len = doc.length(&text);
                        let at = (*n as usize) % (len + 1);
                        let del = (len - at).min(*key as usize) as isize;
                        doc.splice_text(&text, at, del, s)
                    }
                    _ => doc.increment(&map, "c", 1).or_else(|_| {
                        doc.put(&map, "c", ScalarValue::counter(*n as i64))
                    }),
                };
            }
            doc.commit();
            for change in doc.get_changes(&[]) {
                let bytes = change.raw_bytes().to_vec();
                let change = Change::try_from(bytes.as_slice()).unwrap();
                match read_all(&change) {
                    Some(ours) => prop_assert_eq!(ours, decoded(&change)),
                    // Only operations with predecessors (an overwrite, a deletion) and a
                    // counter's increment are not read here; puts and insertions anywhere in a
                    // text are.
                    None => prop_assert!(decoded(&change)
                        .iter()
                        .any(|op| op.4 > 0 || matches!(op.3, OpType::Increment(_)))),
                }
            }
        }
    }

    #[test]
    fn cut_or_unknown_bytes_are_declined() {
        let header = RecordHeader {
            id: uuid::Uuid::from_u128(9),
            kind: "interview".into(),
            campaign: uuid::Uuid::from_u128(8),
            scope: "350102001".into(),
        };
        let made = creation::create(
            &header,
            &ActorId::random(),
            42,
            &[("n", FieldValue::Text("某某".into()))],
        )
        .unwrap();
        let bytes = made.fields.unwrap().raw_bytes().to_vec();
        for n in 0..bytes.len() - 1 {
            // A prefix either fails to read or reads fewer bytes than the chunk claims.
            assert!(read(&bytes[..n]).is_none(), "a prefix of {n} bytes read");
        }
        assert!(value(10, &[]).is_none(), "an unknown value type");
        assert!(value(5, &[0; 4]).is_none(), "a float of four bytes");
        assert!(
            value(4, &[1, 2]).is_none(),
            "an integer with a byte left over"
        );
    }
}
