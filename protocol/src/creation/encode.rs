//! A new record's first change written straight as bytes: Automerge's change chunk for the one
//! shape a creation has, the inverse of [`crate::change::ops`].
//!
//! Building the change as an `ExpandedChange` and letting Automerge encode it cost a third of a
//! record's creation (a hash map of actors, an owned operation and string for every character
//! of a note, then every column encoded through generic iterators). This writes the same bytes
//! directly: the column encoders below make the decisions Automerge 0.12's make (its run-length
//! states, delta and boolean columns and value metadata, in `columnar::encoding` and in the
//! `hexane` column writers its commits go through), and the workspace pins Automerge to 0.12.0
//! with Cargo.lock pinning hexane. [`super::create_bytes`] uses it only once a comparison with
//! Automerge on samples of every edge case has held in this process, and the tests hold it to
//! Automerge's bytes for any fields.

use std::collections::BTreeMap;

use automerge::ChangeHash;
use sha2::Digest;

use crate::change::ops::{
    ACTION, INSERT, KEY_ACTOR, KEY_CTR, KEY_STR, MAKE_MAP, MAKE_TEXT, OBJ_ACTOR, OBJ_CTR,
    PRED_GROUP, PUT, VAL_META, VAL_RAW,
};
use crate::change::{CHANGE_CHUNK, MAGIC};
use crate::record::FieldValue;

/// The counter of a creation's first operation: the genesis has six.
const FIRST: u64 = 7;
/// The `fields` map: the genesis's operation 6, by the genesis actor (the change's actor 1).
const FIELDS_MAP: (u64, u64) = (1, 6);

fn uleb(out: &mut Vec<u8>, v: u64) {
    leb128::write::unsigned(out, v).expect("writing into a Vec cannot fail");
}

fn sleb(out: &mut Vec<u8>, v: i64) {
    leb128::write::signed(out, v).expect("writing into a Vec cannot fail");
}

fn sleb_len(v: i64) -> u64 {
    let mut buf = [0u8; 10];
    leb128::write::signed(&mut &mut buf[..], v).expect("ten bytes hold any i64") as u64
}

/// A value an RLE column holds, written as Automerge writes it.
trait Item: Clone + PartialEq {
    fn write(&self, out: &mut Vec<u8>);
}

impl Item for u64 {
    fn write(&self, out: &mut Vec<u8>) {
        uleb(out, *self);
    }
}

impl Item for i64 {
    fn write(&self, out: &mut Vec<u8>) {
        sleb(out, *self);
    }
}

impl Item for &str {
    fn write(&self, out: &mut Vec<u8>) {
        uleb(out, self.len() as u64);
        out.extend_from_slice(self.as_bytes());
    }
}

/// Automerge's run-length encoder: the same states, so the same runs.
struct Rle<T> {
    out: Vec<u8>,
    state: State<T>,
}

enum State<T> {
    Empty,
    InitialNulls(u64),
    Nulls(u64),
    Lone(T),
    Run(T, u64),
    Literal(T, Vec<T>),
}

impl<T: Item> Rle<T> {
    fn new() -> Self {
        Rle {
            out: Vec::new(),
            state: State::Empty,
        }
    }

    fn run(&mut self, value: &T, n: u64) {
        sleb(&mut self.out, n as i64);
        value.write(&mut self.out);
    }

    fn nulls(&mut self, n: u64) {
        sleb(&mut self.out, 0);
        uleb(&mut self.out, n);
    }

    fn literal(&mut self, values: Vec<T>) {
        sleb(&mut self.out, -(values.len() as i64));
        for v in values {
            v.write(&mut self.out);
        }
    }

    fn null(&mut self) {
        self.state = match std::mem::replace(&mut self.state, State::Empty) {
            State::Empty => State::InitialNulls(1),
            State::InitialNulls(n) => State::InitialNulls(n + 1),
            State::Nulls(n) => State::Nulls(n + 1),
            State::Lone(v) => {
                self.literal(vec![v]);
                State::Nulls(1)
            }
            State::Run(v, n) => {
                self.run(&v, n);
                State::Nulls(1)
            }
            State::Literal(last, mut run) => {
                run.push(last);
                self.literal(run);
                State::Nulls(1)
            }
        }
    }

    fn value(&mut self, value: T) {
        self.state = match std::mem::replace(&mut self.state, State::Empty) {
            State::Empty => State::Lone(value),
            State::Lone(other) if other == value => State::Run(value, 2),
            State::Lone(other) => State::Literal(value, vec![other]),
            State::Run(other, n) if other == value => State::Run(other, n + 1),
            State::Run(other, n) => {
                self.run(&other, n);
                State::Lone(value)
            }
            State::Literal(last, run) if last == value => {
                self.literal(run);
                State::Run(value, 2)
            }
            State::Literal(last, mut run) => {
                run.push(last);
                State::Literal(value, run)
            }
            State::Nulls(n) | State::InitialNulls(n) => {
                self.nulls(n);
                State::Lone(value)
            }
        }
    }

    fn finish(mut self) -> Vec<u8> {
        match std::mem::replace(&mut self.state, State::Empty) {
            State::Empty | State::InitialNulls(_) => {}
            State::Nulls(n) => self.nulls(n),
            State::Lone(v) => self.literal(vec![v]),
            State::Run(v, n) => self.run(&v, n),
            State::Literal(last, mut run) => {
                run.push(last);
                self.literal(run);
            }
        }
        self.out
    }
}

/// Automerge's delta encoder: differences from the value before, run-length encoded.
struct Delta {
    rle: Rle<i64>,
    last: i64,
}

impl Delta {
    fn value(&mut self, v: i64) {
        self.rle.value(v.saturating_sub(self.last));
        self.last = v;
    }
}

/// Automerge's boolean encoder: alternating run lengths, starting with `false`.
struct Bools {
    out: Vec<u8>,
    last: bool,
    count: u64,
}

impl Bools {
    fn push(&mut self, v: bool) {
        if v == self.last {
            self.count += 1;
        } else {
            uleb(&mut self.out, self.count);
            self.last = v;
            self.count = 1;
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.count > 0 {
            uleb(&mut self.out, self.count);
        }
        self.out
    }
}

/// The columns of a change's operations as they are appended.
struct Columns<'a> {
    obj_actor: Rle<u64>,
    obj_ctr: Rle<u64>,
    key_actor: Rle<u64>,
    key_ctr: Delta,
    key_str: Rle<&'a str>,
    insert: Bools,
    action: Rle<u64>,
    val_meta: Rle<u64>,
    val_raw: Vec<u8>,
    ops: u64,
}

/// Where an operation writes: an object (actor index, counter) and a key in it.
enum Key<'a> {
    Map(&'a str),
    Head,
    After(u64),
}

/// A scalar as the value columns hold it.
enum Scalar<'a> {
    Null,
    Bool(bool),
    Int(i64),
    F64(f64),
    Str(&'a str),
}

impl<'a> Columns<'a> {
    fn new() -> Self {
        Columns {
            obj_actor: Rle::new(),
            obj_ctr: Rle::new(),
            key_actor: Rle::new(),
            key_ctr: Delta {
                rle: Rle::new(),
                last: 0,
            },
            key_str: Rle::new(),
            insert: Bools {
                out: Vec::new(),
                last: false,
                count: 0,
            },
            action: Rle::new(),
            val_meta: Rle::new(),
            val_raw: Vec::new(),
            ops: 0,
        }
    }

    /// Appends one operation without predecessors into object `(actor, counter)`; keys of a
    /// sequence are the author's (actor 0).
    fn op(&mut self, obj: (u64, u64), key: Key<'a>, insert: bool, action: u64, value: Scalar<'_>) {
        self.obj_actor.value(obj.0);
        self.obj_ctr.value(obj.1);
        match key {
            Key::Map(k) => {
                self.key_str.value(k);
                self.key_actor.null();
                self.key_ctr.rle.null();
            }
            Key::Head => {
                self.key_str.null();
                self.key_actor.null();
                self.key_ctr.value(0);
            }
            Key::After(counter) => {
                self.key_str.null();
                self.key_actor.value(0);
                self.key_ctr.value(counter as i64);
            }
        }
        self.insert.push(insert);
        self.action.value(action);
        let meta = match value {
            Scalar::Null => 0,
            Scalar::Bool(false) => 1,
            Scalar::Bool(true) => 2,
            Scalar::Int(i) => {
                sleb(&mut self.val_raw, i);
                (sleb_len(i) << 4) | 4
            }
            Scalar::F64(f) => {
                self.val_raw.extend_from_slice(&f.to_le_bytes());
                (8 << 4) | 5
            }
            Scalar::Str(s) => {
                self.val_raw.extend_from_slice(s.as_bytes());
                ((s.len() as u64) << 4) | 6
            }
        };
        self.val_meta.value(meta);
        self.ops += 1;
    }

    /// The columns in spec order, empty ones left out, as Automerge writes them.
    fn finish(self) -> Vec<(u64, Vec<u8>)> {
        // No operation overwrites another: a group of no predecessors each.
        let mut pred = Rle::new();
        for _ in 0..self.ops {
            pred.value(0u64);
        }
        [
            (OBJ_ACTOR, self.obj_actor.finish()),
            (OBJ_CTR, self.obj_ctr.finish()),
            (KEY_ACTOR, self.key_actor.finish()),
            (KEY_CTR, self.key_ctr.rle.finish()),
            (KEY_STR, self.key_str.finish()),
            (INSERT, self.insert.finish()),
            (ACTION, self.action.finish()),
            (VAL_META, self.val_meta.finish()),
            (VAL_RAW, self.val_raw),
            (PRED_GROUP, pred.finish()),
        ]
        .into_iter()
        .filter(|(_, data)| !data.is_empty())
        .collect()
    }
}

/// The change that writes `fields` into a new record, by `actor` at `time`, depending on the
/// genesis `genesis` whose actor is `genesis_actor` and whose `fields` map is its operation 6:
/// its chunk and hash. `None` for a value this encoder does not write (the caller goes through
/// Automerge) and for no fields (there is no such change).
pub(super) fn first_change(
    actor: &[u8],
    genesis: &ChangeHash,
    genesis_actor: &[u8],
    time: i64,
    fields: &[(&str, FieldValue)],
) -> Option<(Vec<u8>, ChangeHash)> {
    if fields.is_empty() {
        return None;
    }
    let mut c = Columns::new();
    let mut buf = [0u8; 4];
    for (name, value) in fields {
        let key = Key::Map(name);
        let at = FIRST + c.ops;
        match value {
            FieldValue::Null => c.op(FIELDS_MAP, key, false, PUT, Scalar::Null),
            FieldValue::Bool(b) => c.op(FIELDS_MAP, key, false, PUT, Scalar::Bool(*b)),
            FieldValue::Int(i) => c.op(FIELDS_MAP, key, false, PUT, Scalar::Int(*i)),
            FieldValue::Float(f) if f.is_finite() => {
                c.op(FIELDS_MAP, key, false, PUT, Scalar::F64(*f))
            }
            FieldValue::Str(s) => c.op(FIELDS_MAP, key, false, PUT, Scalar::Str(s)),
            FieldValue::Text(s) => {
                c.op(FIELDS_MAP, key, false, MAKE_TEXT, Scalar::Null);
                // One insertion per code point, each after the one before.
                let mut after = Key::Head;
                for ch in s.chars() {
                    let id = FIRST + c.ops;
                    let ch: &str = ch.encode_utf8(&mut buf);
                    c.op((0, at), after, true, PUT, Scalar::Str(ch));
                    after = Key::After(id);
                }
            }
            FieldValue::Map(entries) => map(&mut c, key, at, entries),
            FieldValue::Float(_) | FieldValue::Other(_) => return None,
        }
    }
    let columns = c.finish();
    let mut body = Vec::with_capacity(64 + columns.iter().map(|(_, d)| d.len()).sum::<usize>());
    uleb(&mut body, 1);
    body.extend_from_slice(&genesis.0);
    uleb(&mut body, actor.len() as u64);
    body.extend_from_slice(actor);
    uleb(&mut body, 1); // seq
    uleb(&mut body, FIRST);
    sleb(&mut body, time);
    uleb(&mut body, 0); // no message
    uleb(&mut body, 1);
    uleb(&mut body, genesis_actor.len() as u64);
    body.extend_from_slice(genesis_actor);
    uleb(&mut body, columns.len() as u64);
    for (spec, data) in &columns {
        uleb(&mut body, *spec);
        uleb(&mut body, data.len() as u64);
    }
    for (_, data) in &columns {
        body.extend_from_slice(data);
    }
    Some(chunk(&body))
}

/// The operations of a map field: the map, then its entries in key order.
fn map<'a>(c: &mut Columns<'a>, key: Key<'a>, at: u64, entries: &'a BTreeMap<String, String>) {
    c.op(FIELDS_MAP, key, false, MAKE_MAP, Scalar::Null);
    for (k, v) in entries {
        c.op((0, at), Key::Map(k), false, PUT, Scalar::Str(v));
    }
}

/// A change chunk around `body`, and its hash.
fn chunk(body: &[u8]) -> (Vec<u8>, ChangeHash) {
    let mut out = Vec::with_capacity(body.len() + 16);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[0; 4]);
    out.push(CHANGE_CHUNK);
    uleb(&mut out, body.len() as u64);
    out.extend_from_slice(body);
    let hash = ChangeHash(sha2::Sha256::digest(&out[8..]).into());
    out[4..8].copy_from_slice(&hash.0[..4]);
    (out, hash)
}
