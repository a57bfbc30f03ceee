//! One field record as an Automerge document: layout, genesis, values, projection, conflicts.
//!
//! Every record document has this root map:
//!
//! | key | value |
//! |---|---|
//! | `schema` | integer `1` |
//! | `id` | the record id, a lowercase hyphenated UUID string |
//! | `kind` | the record kind (`interview`, `finding`, ...) |
//! | `campaign` | the campaign id, a lowercase hyphenated UUID string |
//! | `scope` | the place the record belongs to (a village or township code) |
//! | `fields` | a map from field name to value |
//! | `deleted` | `true` once the record is deleted (absent before) |
//!
//! The first five keys and the empty `fields` map are written by the record's **genesis change**,
//! made by an actor derived from the header with the timestamp 0, so that every device that
//! creates the same record (a singleton with a derived id) produces byte-identical genesis
//! changes, which merge into one. Field values are scalars, or Automerge `Text` objects for the
//! long texts people edit together (interview notes, summaries).

use std::collections::BTreeMap;

use automerge::{
    ActorId, Automerge, ChangeHash, ObjType, ROOT, ReadDoc, ScalarValue, TextEncoding, Value,
    transaction::{CommitOptions, Transactable},
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The namespace of genesis actor ids (UUID v5).
const GENESIS_NAMESPACE: Uuid = Uuid::from_u128(0x2f8e_61c4_0d9b_4a77_b3e5_7c10_94af_d268);

/// The key of the fields map in a record's root.
pub const FIELDS_KEY: &str = "fields";
/// The key of the tombstone flag in a record's root.
pub const DELETED_KEY: &str = "deleted";
/// The document layout version written by genesis.
pub const SCHEMA_VERSION: i64 = 1;

/// Something wrong with a record header, a field, or a document's layout.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum RecordError {
    /// A header value is malformed.
    #[error("invalid record {field}: {reason}")]
    InvalidHeader {
        /// Which header value (`id`, `kind`, `campaign`, `scope`).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A field name is malformed.
    #[error("invalid field name {name:?}: use 1 to 64 ASCII letters, digits, '_', '-' or '.'")]
    InvalidFieldName {
        /// The name as given.
        name: String,
    },
    /// A float that JSON and SQLite cannot carry.
    #[error("field {name:?}: numbers must be finite")]
    NonFiniteNumber {
        /// The field name.
        name: String,
    },
    /// The document does not have the layout of a fieldsync record.
    #[error("not a fieldsync record document: {0}")]
    Layout(String),
    /// Automerge refused an operation.
    #[error("automerge: {0}")]
    Automerge(String),
}

impl From<automerge::AutomergeError> for RecordError {
    fn from(e: automerge::AutomergeError) -> Self {
        RecordError::Automerge(e.to_string())
    }
}

/// What identifies a record and places it: fixed at creation, known to the server without loading
/// the document (it travels beside the changes and is checked against the genesis change).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RecordHeader {
    /// The record id.
    pub id: Uuid,
    /// The record kind: 1 to 64 of `a-z`, `0-9`, `_`.
    pub kind: String,
    /// The campaign the record belongs to.
    pub campaign: Uuid,
    /// The place it belongs to (the code of a village, community or township): 1 to 64 of
    /// ASCII letters, digits, `_`, `-`, `.`, `:`. Scoping of devices works on this value.
    pub scope: String,
}

impl RecordHeader {
    /// Checks the kind and scope. Ids are UUIDs by type.
    pub fn validate(&self) -> Result<(), RecordError> {
        let kind_ok = !self.kind.is_empty()
            && self.kind.len() <= 64
            && self
                .kind
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !kind_ok {
            return Err(RecordError::InvalidHeader {
                field: "kind",
                reason: format!(
                    "{:?} must be 1 to 64 of lowercase a-z, digits and '_'",
                    self.kind
                ),
            });
        }
        let scope_ok = !self.scope.is_empty()
            && self.scope.len() <= 64
            && self
                .scope
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b));
        if !scope_ok {
            return Err(RecordError::InvalidHeader {
                field: "scope",
                reason: format!(
                    "{:?} must be 1 to 64 of ASCII letters, digits, '_', '-', '.', ':'",
                    self.scope
                ),
            });
        }
        Ok(())
    }

    /// Parses a header from its wire strings, naming the bad value in the error.
    pub fn parse(id: &str, kind: &str, campaign: &str, scope: &str) -> Result<Self, RecordError> {
        let parse_uuid = |field: &'static str, s: &str| {
            Uuid::parse_str(s).map_err(|e| RecordError::InvalidHeader {
                field,
                reason: format!("{s:?} is not a UUID: {e}"),
            })
        };
        let header = RecordHeader {
            id: parse_uuid("id", id)?,
            kind: kind.to_owned(),
            campaign: parse_uuid("campaign", campaign)?,
            scope: scope.to_owned(),
        };
        header.validate()?;
        Ok(header)
    }
}

/// The actor that writes a record's genesis change: UUID v5 of the header, so that a different
/// header can never produce a second, different change under the same actor and sequence number.
pub fn genesis_actor(header: &RecordHeader) -> ActorId {
    let name = format!(
        "{}\n{}\n{}\n{}",
        header.id.hyphenated(),
        header.kind,
        header.campaign.hyphenated(),
        header.scope
    );
    ActorId::from(Uuid::new_v5(&GENESIS_NAMESPACE, name.as_bytes()).into_bytes())
}

/// A new empty document using the text encoding fieldsync uses everywhere: positions count
/// Unicode code points.
pub fn new_doc() -> Automerge {
    Automerge::new_with_encoding(TextEncoding::UnicodeCodePoint)
}

/// Loads a stored document (a saved document and/or change chunks) with code-point text
/// positions.
pub fn load_doc(bytes: &[u8]) -> Result<Automerge, RecordError> {
    let options = automerge::LoadOptions::new().text_encoding(TextEncoding::UnicodeCodePoint);
    Ok(Automerge::load_with_options(bytes, options)?)
}

/// Builds the record's genesis: a document holding only the genesis change, and that change's
/// raw bytes. Deterministic: the same header gives the same bytes on every device.
pub fn genesis_change(header: &RecordHeader) -> Result<(Automerge, Vec<u8>), RecordError> {
    header.validate()?;
    let mut doc = new_doc();
    doc.set_actor(genesis_actor(header));
    let mut tx = doc.transaction();
    tx.put(ROOT, "schema", SCHEMA_VERSION)?;
    tx.put(ROOT, "id", header.id.hyphenated().to_string())?;
    tx.put(ROOT, "kind", header.kind.as_str())?;
    tx.put(ROOT, "campaign", header.campaign.hyphenated().to_string())?;
    tx.put(ROOT, "scope", header.scope.as_str())?;
    tx.put_object(ROOT, FIELDS_KEY, ObjType::Map)?;
    tx.commit_with(CommitOptions::default().with_time(0));
    let bytes = doc
        .get_last_local_change()
        .ok_or_else(|| RecordError::Layout("genesis produced no change".into()))?
        .raw_bytes()
        .to_vec();
    Ok((doc, bytes))
}

/// The hash of a record's genesis change.
pub fn genesis_hash(header: &RecordHeader) -> Result<ChangeHash, RecordError> {
    let (doc, _) = genesis_change(header)?;
    Ok(doc
        .get_last_local_change()
        .map(|c| c.hash())
        .expect("genesis has a change"))
}

/// Checks a field name: 1 to 64 ASCII letters, digits, `_`, `-`, `.`.
pub fn validate_field_name(name: &str) -> Result<(), RecordError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(RecordError::InvalidFieldName { name: name.into() })
    }
}

/// A field's value.
///
/// In JSON (the projection, the HTTP API), every variant is the plain JSON value except `Text`,
/// which reads as a plain string in the projection; when written through an API that must tell
/// them apart, a text is `{"text": "..."}`.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// No value.
    Null,
    /// Yes or no.
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// A finite number with a fraction.
    Float(f64),
    /// A short string, replaced as a whole when edited (a choice, a date, a name).
    Str(String),
    /// A long text that people edit together; concurrent edits merge character by character.
    Text(String),
    /// A map from keys to short strings (per-member ratings: member id → choice). Entries are
    /// separate Automerge keys, so two people rating different members merge.
    Map(BTreeMap<String, String>),
    /// A value of a type this version does not edit (a list or map written by a newer client),
    /// shown as JSON.
    Other(serde_json::Value),
}

impl FieldValue {
    /// The value as plain JSON (a text becomes a string).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            FieldValue::Null => J::Null,
            FieldValue::Bool(b) => J::Bool(*b),
            FieldValue::Int(i) => J::from(*i),
            FieldValue::Float(f) => serde_json::Number::from_f64(*f)
                .map(J::Number)
                .unwrap_or(J::Null),
            FieldValue::Str(s) | FieldValue::Text(s) => J::String(s.clone()),
            FieldValue::Map(m) => J::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), J::String(v.clone())))
                    .collect(),
            ),
            FieldValue::Other(v) => v.clone(),
        }
    }

    /// Reads a value from JSON as written to the API: `{"text": "..."}` is a text, any other
    /// object whose values are all strings is a map, other values map to the scalar of the same
    /// JSON type. Arrays and other objects are refused.
    pub fn from_json(name: &str, v: &serde_json::Value) -> Result<Self, RecordError> {
        use serde_json::Value as J;
        Ok(match v {
            J::Null => FieldValue::Null,
            J::Bool(b) => FieldValue::Bool(*b),
            J::Number(n) => match n.as_i64() {
                Some(i) => FieldValue::Int(i),
                None => FieldValue::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            J::String(s) => FieldValue::Str(s.clone()),
            J::Object(o) if o.len() == 1 && o.get("text").is_some_and(J::is_string) => {
                FieldValue::Text(o["text"].as_str().unwrap_or_default().to_owned())
            }
            J::Object(o) if o.values().all(J::is_string) => FieldValue::Map(
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect(),
            ),
            _ => {
                return Err(RecordError::Layout(format!(
                    "field {name:?}: a value is null, true/false, a number, a string, \
                     {{\"text\": \"...\"}} or an object of strings"
                )));
            }
        })
    }
}

/// A scalar as a field value, for the types fieldsync reads (`None`: bytes and unknown types,
/// shown as [`FieldValue::Other`]).
pub(crate) fn scalar_field(value: &ScalarValue) -> Option<FieldValue> {
    Some(match value {
        ScalarValue::Null => FieldValue::Null,
        ScalarValue::Boolean(b) => FieldValue::Bool(*b),
        ScalarValue::Int(i) => FieldValue::Int(*i),
        ScalarValue::Uint(u) => i64::try_from(*u)
            .map(FieldValue::Int)
            .unwrap_or(FieldValue::Float(*u as f64)),
        ScalarValue::F64(f) => FieldValue::Float(*f),
        ScalarValue::Str(s) => FieldValue::Str(s.to_string()),
        ScalarValue::Counter(c) => FieldValue::Int(i64::from(c)),
        ScalarValue::Timestamp(t) => FieldValue::Int(*t),
        _ => return None,
    })
}

/// Reads the value at `fields[name]` (or any `(Value, ExId)` pair) into a [`FieldValue`].
fn read_value<D: ReadDoc>(doc: &D, value: &Value<'_>, id: &automerge::ObjId) -> FieldValue {
    match value {
        Value::Scalar(s) => scalar_field(s)
            .unwrap_or_else(|| FieldValue::Other(serde_json::Value::String(s.to_string()))),
        Value::Object(ObjType::Text) => FieldValue::Text(doc.text(id).unwrap_or_default()),
        Value::Object(ObjType::Map) => {
            let mut map = BTreeMap::new();
            for key in doc.keys(id) {
                match doc.get(id, key.as_str()) {
                    Ok(Some((Value::Scalar(s), _))) => match s.as_ref() {
                        ScalarValue::Str(v) => {
                            map.insert(key, v.to_string());
                        }
                        _ => return other_value(doc, id),
                    },
                    _ => return other_value(doc, id),
                }
            }
            FieldValue::Map(map)
        }
        Value::Object(_) => other_value(doc, id),
    }
}

/// A value of a shape this version does not edit, shown as best it can.
fn other_value<D: ReadDoc>(doc: &D, id: &automerge::ObjId) -> FieldValue {
    let hydrated = doc.hydrate(id, None).ok();
    FieldValue::Other(serde_json::Value::String(format!("{hydrated:?}")))
}

/// The id of the `fields` map, or a layout error.
pub fn fields_obj<D: ReadDoc>(doc: &D) -> Result<automerge::ObjId, RecordError> {
    match doc.get(ROOT, FIELDS_KEY)? {
        Some((Value::Object(ObjType::Map), id)) => Ok(id),
        _ => Err(RecordError::Layout("the root has no `fields` map".into())),
    }
}

/// Writes `value` into `fields[name]` inside an open transaction. A text replaces the content of
/// an existing text object by a minimal diff (so it merges with concurrent edits); otherwise a new
/// text object is created.
pub fn put_field<T: Transactable>(
    tx: &mut T,
    fields: &automerge::ObjId,
    name: &str,
    value: &FieldValue,
) -> Result<(), RecordError> {
    validate_field_name(name)?;
    match value {
        FieldValue::Null => tx.put(fields, name, ScalarValue::Null)?,
        FieldValue::Bool(b) => tx.put(fields, name, *b)?,
        FieldValue::Int(i) => tx.put(fields, name, *i)?,
        FieldValue::Float(f) => {
            if !f.is_finite() {
                return Err(RecordError::NonFiniteNumber { name: name.into() });
            }
            tx.put(fields, name, *f)?
        }
        FieldValue::Str(s) => tx.put(fields, name, s.as_str())?,
        FieldValue::Text(s) => {
            // Only reuse the current text object when it is the only value: writing over a
            // conflict must replace every conflicting value, which a fresh put does.
            let all = tx.get_all(fields, name)?;
            match all.as_slice() {
                [(Value::Object(ObjType::Text), id)] => {
                    let id = id.clone();
                    tx.update_text(&id, s)?
                }
                _ => {
                    let id = tx.put_object(fields, name, ObjType::Text)?;
                    tx.splice_text(&id, 0, 0, s)?;
                }
            }
        }
        FieldValue::Map(entries) => {
            // Update the existing map entry by entry (so edits to different keys merge); a
            // conflict or another type is replaced by a fresh map.
            let all = tx.get_all(fields, name)?;
            let id = match all.as_slice() {
                [(Value::Object(ObjType::Map), id)] => id.clone(),
                _ => tx.put_object(fields, name, ObjType::Map)?,
            };
            let stale: Vec<String> = tx.keys(&id).filter(|k| !entries.contains_key(k)).collect();
            for key in stale {
                tx.delete(&id, key.as_str())?;
            }
            for (key, value) in entries {
                let same = matches!(
                    tx.get_all(&id, key.as_str())?.as_slice(),
                    [(Value::Scalar(s), _)] if s.as_str() == Some(value.as_str())
                );
                if !same {
                    tx.put(&id, key.as_str(), value.as_str())?;
                }
            }
        }
        FieldValue::Other(_) => {
            return Err(RecordError::Layout(format!(
                "field {name:?}: values of this type cannot be written by this version"
            )));
        }
    }
    Ok(())
}

/// The current state of a record, as the projection tables store it.
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    /// The record header, read from the document.
    pub header: RecordHeader,
    /// Whether the record is deleted.
    pub deleted: bool,
    /// Every field's current value (for a conflicted field, the value Automerge picks
    /// deterministically; see [`conflicts`] for all of them).
    pub fields: BTreeMap<String, FieldValue>,
    /// How many fields hold conflicting values.
    pub conflicts: usize,
    /// The document's heads, hex.
    pub heads: Vec<String>,
}

impl Projection {
    /// The fields as one JSON object.
    pub fn fields_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.fields
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect(),
        )
    }
}

fn root_str<D: ReadDoc>(doc: &D, key: &'static str) -> Result<String, RecordError> {
    let all = doc.get_all(ROOT, key)?;
    match all.as_slice() {
        [(Value::Scalar(s), _)] => match s.as_ref() {
            ScalarValue::Str(s) => Ok(s.to_string()),
            _ => Err(RecordError::Layout(format!("root `{key}` is not a string"))),
        },
        [] => Err(RecordError::Layout(format!("root `{key}` is missing"))),
        _ => Err(RecordError::Layout(format!(
            "root `{key}` was overwritten after genesis"
        ))),
    }
}

/// Reads the header that the genesis change wrote into `doc`.
pub fn read_header<D: ReadDoc>(doc: &D) -> Result<RecordHeader, RecordError> {
    RecordHeader::parse(
        &root_str(doc, "id")?,
        &root_str(doc, "kind")?,
        &root_str(doc, "campaign")?,
        &root_str(doc, "scope")?,
    )
}

/// Projects a record document: header, tombstone, field values and the number of conflicts.
pub fn project(doc: &Automerge) -> Result<Projection, RecordError> {
    let header = read_header(doc)?;
    let fields_id = fields_obj(doc)?;
    let mut fields = BTreeMap::new();
    let mut conflicts = 0;
    // One pass over the map; only a key Automerge marks as conflicted is looked up again for all
    // its values.
    for item in doc.map_range(&fields_id, ..) {
        if !item.conflict {
            let id = item.id();
            let value = item.value.into_value();
            fields.insert(item.key.into_owned(), read_value(doc, &value, &id));
            continue;
        }
        let key = item.key.into_owned();
        let all = doc.get_all(&fields_id, key.as_str())?;
        let values: Vec<FieldValue> = all.iter().map(|(v, id)| read_value(doc, v, id)).collect();
        if values.iter().any(|v| *v != values[0]) {
            conflicts += 1;
        }
        // get_all lists values in Automerge's order; the last one is the winner `get` returns.
        if let Some(winner) = values.into_iter().last() {
            fields.insert(key, winner);
        }
    }
    let deleted = matches!(
        doc.get(ROOT, DELETED_KEY)?,
        Some((Value::Scalar(s), _)) if matches!(s.as_ref(), ScalarValue::Boolean(true))
    );
    Ok(Projection {
        header,
        deleted,
        fields,
        conflicts,
        heads: doc.get_heads().iter().map(|h| h.to_string()).collect(),
    })
}

/// One of the values in a conflict, with who wrote it and when.
#[derive(Debug, Clone, PartialEq)]
pub struct ConflictValue {
    /// The value.
    pub value: FieldValue,
    /// The actor (hex) whose change wrote it.
    pub actor: String,
    /// When that change was committed (ms since the Unix epoch), if known.
    pub time: Option<i64>,
}

/// A field that two or more people set to different values concurrently.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    /// The field name.
    pub field: String,
    /// Every concurrent value; the last one is what the projection shows until resolved.
    pub values: Vec<ConflictValue>,
}

/// Lists the fields of a record that hold different concurrent values. Concurrent writes of the
/// same value are not conflicts.
pub fn conflicts(doc: &Automerge) -> Result<Vec<Conflict>, RecordError> {
    let fields_id = fields_obj(doc)?;
    let mut out = Vec::new();
    let mut metas = None;
    for key in doc.keys(&fields_id) {
        let all = doc.get_all(&fields_id, key.as_str())?;
        if all.len() < 2 {
            continue;
        }
        let values: Vec<(FieldValue, &automerge::ObjId)> = all
            .iter()
            .map(|(v, id)| (read_value(doc, v, id), id))
            .collect();
        if values.iter().all(|(v, _)| *v == values[0].0) {
            continue;
        }
        let metas = metas.get_or_insert_with(|| doc.get_changes_meta(&[]));
        let values = values
            .into_iter()
            .map(|(value, id)| {
                let (actor, time) = match id {
                    automerge::ObjId::Id(counter, actor, _) => {
                        let time = metas
                            .iter()
                            .find(|m| {
                                m.actor.as_ref() == actor
                                    && m.start_op <= *counter
                                    && *counter <= m.max_op
                            })
                            .map(|m| m.timestamp);
                        (actor.to_hex_string(), time)
                    }
                    automerge::ObjId::Root => (String::new(), None),
                };
                ConflictValue { value, actor, time }
            })
            .collect();
        out.push(Conflict { field: key, values });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> RecordHeader {
        RecordHeader {
            id: Uuid::from_u128(42),
            kind: "assessment".into(),
            campaign: Uuid::from_u128(7),
            scope: "350102001".into(),
        }
    }

    fn fork(doc: &Automerge, actor: u8) -> Automerge {
        let mut d = doc.fork();
        d.set_actor(ActorId::from([actor; 16]));
        d
    }

    fn edit(doc: &mut Automerge, name: &str, value: FieldValue) {
        let fields = fields_obj(doc).unwrap();
        let mut tx = doc.transaction();
        put_field(&mut tx, &fields, name, &value).unwrap();
        tx.commit_with(CommitOptions::default().with_time(1_700_000_000_000));
    }

    #[test]
    fn genesis_is_deterministic_and_projects_its_header() {
        let (doc_a, bytes_a) = genesis_change(&header()).unwrap();
        let (_, bytes_b) = genesis_change(&header()).unwrap();
        assert_eq!(bytes_a, bytes_b);
        let p = project(&doc_a).unwrap();
        assert_eq!(p.header, header());
        assert!(p.fields.is_empty());
        assert!(!p.deleted);

        let mut other = header();
        other.scope = "350102002".into();
        let (_, bytes_c) = genesis_change(&other).unwrap();
        assert_ne!(bytes_a, bytes_c);
        assert_ne!(genesis_actor(&header()), genesis_actor(&other));
    }

    #[test]
    fn two_geneses_of_one_singleton_merge_into_one_document() {
        let (g1, _) = genesis_change(&header()).unwrap();
        let (g2, _) = genesis_change(&header()).unwrap();
        let mut a = fork(&g1, 1);
        let mut b = fork(&g2, 2);
        edit(&mut a, "rating", FieldValue::Str("好".into()));
        edit(
            &mut b,
            "reasons",
            FieldValue::Text("班子团结，干事有劲头".into()),
        );
        a.merge(&mut b).unwrap();
        let p = project(&a).unwrap();
        assert_eq!(p.fields["rating"], FieldValue::Str("好".into()));
        assert_eq!(
            p.fields["reasons"],
            FieldValue::Text("班子团结，干事有劲头".into())
        );
        assert_eq!(p.conflicts, 0);
    }

    #[test]
    fn different_concurrent_values_are_a_conflict_until_resolved() {
        let (g, _) = genesis_change(&header()).unwrap();
        let mut a = fork(&g, 1);
        let mut b = fork(&g, 2);
        edit(&mut a, "rating", FieldValue::Str("好".into()));
        edit(&mut b, "rating", FieldValue::Str("正常".into()));
        a.merge(&mut b).unwrap();
        assert_eq!(project(&a).unwrap().conflicts, 1);
        let c = conflicts(&a).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].field, "rating");
        let mut seen: Vec<_> = c[0]
            .values
            .iter()
            .map(|v| (v.value.clone(), v.actor.clone()))
            .collect();
        seen.sort_by(|x, y| x.1.cmp(&y.1));
        assert_eq!(
            seen,
            vec![
                (FieldValue::Str("好".into()), "01".repeat(16)),
                (FieldValue::Str("正常".into()), "02".repeat(16)),
            ]
        );
        assert!(
            c[0].values
                .iter()
                .all(|v| v.time == Some(1_700_000_000_000))
        );

        edit(&mut a, "rating", FieldValue::Str("正常".into()));
        assert!(conflicts(&a).unwrap().is_empty());
        assert_eq!(project(&a).unwrap().conflicts, 0);
    }

    #[test]
    fn ratings_of_different_members_merge_and_a_map_round_trips() {
        let (g, _) = genesis_change(&header()).unwrap();
        let mut a = fork(&g, 1);
        let map = |pairs: &[(&str, &str)]| {
            FieldValue::Map(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        edit(&mut a, "member_ratings", map(&[("m1", "satisfied")]));
        let mut b = a.fork();
        b.set_actor(ActorId::from([2u8; 16]));
        edit(
            &mut a,
            "member_ratings",
            map(&[("m1", "satisfied"), ("m2", "unsatisfied")]),
        );
        edit(
            &mut b,
            "member_ratings",
            map(&[("m1", "basically_satisfied")]),
        );
        a.merge(&mut b).unwrap();
        let p = project(&a).unwrap();
        assert_eq!(
            p.fields["member_ratings"],
            map(&[("m1", "basically_satisfied"), ("m2", "unsatisfied")])
        );
        assert_eq!(p.conflicts, 0);
        // Removing an entry removes just that entry; JSON round-trips.
        edit(&mut a, "member_ratings", map(&[("m2", "unsatisfied")]));
        let v = project(&a).unwrap().fields["member_ratings"].clone();
        assert_eq!(v, map(&[("m2", "unsatisfied")]));
        assert_eq!(FieldValue::from_json("r", &v.to_json()).unwrap(), v);
    }

    #[test]
    fn the_same_value_written_twice_is_not_a_conflict() {
        let (g, _) = genesis_change(&header()).unwrap();
        let mut a = fork(&g, 1);
        let mut b = fork(&g, 2);
        edit(&mut a, "rating", FieldValue::Str("好".into()));
        edit(&mut b, "rating", FieldValue::Str("好".into()));
        a.merge(&mut b).unwrap();
        assert!(conflicts(&a).unwrap().is_empty());
    }

    #[test]
    fn chinese_text_edits_merge_character_by_character() {
        let (g, _) = genesis_change(&header()).unwrap();
        let mut base = fork(&g, 9);
        edit(&mut base, "notes", FieldValue::Text("你好世界".into()));
        let mut a = fork(&base, 1);
        let mut b = fork(&base, 2);
        edit(&mut a, "notes", FieldValue::Text("你好，美丽世界".into()));
        edit(
            &mut b,
            "notes",
            FieldValue::Text("你好世界！集体经济".into()),
        );
        a.merge(&mut b).unwrap();
        assert_eq!(
            project(&a).unwrap().fields["notes"],
            FieldValue::Text("你好，美丽世界！集体经济".into())
        );
    }

    #[test]
    fn headers_and_field_names_are_checked() {
        let mut h = header();
        h.kind = "Interview!".into();
        assert!(matches!(
            h.validate(),
            Err(RecordError::InvalidHeader { field: "kind", .. })
        ));
        let mut h = header();
        h.scope = "村 1".into();
        assert!(matches!(
            h.validate(),
            Err(RecordError::InvalidHeader { field: "scope", .. })
        ));
        assert!(RecordHeader::parse("nope", "interview", &Uuid::nil().to_string(), "v1").is_err());
        assert!(validate_field_name("notes").is_ok());
        assert!(validate_field_name("").is_err());
        assert!(validate_field_name("谈话").is_err());
        assert!(validate_field_name(&"x".repeat(65)).is_err());
    }

    #[test]
    fn field_values_round_trip_through_json() {
        for (json, value) in [
            (serde_json::json!(null), FieldValue::Null),
            (serde_json::json!(true), FieldValue::Bool(true)),
            (serde_json::json!(-3), FieldValue::Int(-3)),
            (serde_json::json!(2.5), FieldValue::Float(2.5)),
            (serde_json::json!("好"), FieldValue::Str("好".into())),
            (
                serde_json::json!({"text": "谈话记录"}),
                FieldValue::Text("谈话记录".into()),
            ),
        ] {
            assert_eq!(FieldValue::from_json("f", &json).unwrap(), value);
        }
        assert!(FieldValue::from_json("f", &serde_json::json!([1, 2])).is_err());
        assert_eq!(
            FieldValue::Text("x".into()).to_json(),
            serde_json::json!("x")
        );
    }
}
