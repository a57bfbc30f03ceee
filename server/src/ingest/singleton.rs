//! The rule that a record existing once per key (an assessment per target, a star rating per
//! village and year) follows from its key: its id is derived from the key, and its place is the
//! place of what the key refers to. Checked when such a record first reaches the server, so that
//! nobody can claim another group's singleton id under their own village.

use std::collections::BTreeMap;

use automerge::Change;
use fieldsync_protocol::{
    FieldValue, RecordHeader, record, singleton_id,
    template::{FieldType, Template},
};

use super::Refusal;

/// The fields that the pushed changes of a record new to the server set, when its kind has a key
/// (`None` for kinds without one, which pass [`check_new`] untouched). Decodes the changes
/// (a genesis and its edits) through Automerge.
pub fn key_fields(
    template: &Template,
    header: &RecordHeader,
    changes: &[&[u8]],
) -> Option<BTreeMap<String, FieldValue>> {
    let def = template.kind(&header.kind)?;
    if def.key.is_empty() {
        return None;
    }
    Some(fields_of(changes).unwrap_or_default())
}

/// The records that the key fields of a new keyed record refer to (ids as written), whose place
/// [`check_new`] asks for.
pub fn key_references(
    template: &Template,
    header: &RecordHeader,
    fields: &BTreeMap<String, FieldValue>,
) -> Vec<String> {
    let Some(def) = template.kind(&header.kind) else {
        return Vec::new();
    };
    def.key
        .iter()
        .filter(|name| {
            def.field(name)
                .is_some_and(|f| f.field_type == FieldType::Ref)
        })
        .filter_map(|name| match fields.get(name.as_str()) {
            Some(FieldValue::Str(target)) => Some(target.clone()),
            _ => None,
        })
        .collect()
}

/// Checks a record the server does not hold yet, given the fields its pushed changes set
/// ([`key_fields`]). `place_of` answers the scope (place code) of a record the server holds, by
/// id. Records of kinds without a key pass untouched.
///
/// A record of a kind with a key must arrive with its key fields set (its genesis and the change
/// that sets them travel together); its id must be the one derived from those values; and every
/// key field that refers to another record must refer to a record of the same place.
pub fn check_new(
    template: &Template,
    header: &RecordHeader,
    fields: &BTreeMap<String, FieldValue>,
    place_of: impl Fn(&str) -> Option<String>,
) -> Result<(), Refusal> {
    let Some(def) = template.kind(&header.kind) else {
        return Ok(());
    };
    if def.key.is_empty() {
        return Ok(());
    }
    let missing: Vec<&str> = def
        .key
        .iter()
        .filter(|k| !fields.contains_key(k.as_str()))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(Refusal {
            code: "singleton_without_key",
            message: format!(
                "记录 {} 每个{}只能有一份，但上传中没有{} / record {} of kind {} is unique per \
                 {}, but the push does not set {}: send its first changes together",
                header.id,
                def.key.join("、"),
                missing.join("、"),
                header.id,
                header.kind,
                def.key.join(", "),
                missing.join(", ")
            ),
        });
    }
    let key = template
        .singleton_key(&header.kind, fields)
        .unwrap_or_default();
    let expected = singleton_id(header.campaign, &header.kind, &key);
    if expected != header.id {
        return Err(Refusal {
            code: "singleton_id_mismatch",
            message: format!(
                "记录编号与其唯一键不符 / record {} of kind {} has key {key:?}, whose id is \
                 {expected}: a record that exists once per key takes the id derived from it",
                header.id, header.kind
            ),
        });
    }
    for name in &def.key {
        let Some(field) = def.field(name) else {
            continue;
        };
        if field.field_type != FieldType::Ref {
            continue;
        }
        let Some(FieldValue::Str(target)) = fields.get(name) else {
            continue;
        };
        match place_of(target) {
            Some(place) if place == header.scope => {}
            Some(place) => {
                return Err(Refusal {
                    code: "singleton_scope_mismatch",
                    message: format!(
                        "记录所属村（社区）与评价对象不符 / record {} of kind {} is about {target} \
                         of place {place}, but says it belongs to place {}",
                        header.id, header.kind, header.scope
                    ),
                });
            }
            None => {
                return Err(Refusal {
                    code: "unknown_reference",
                    message: format!(
                        "服务器上没有所引用的记录 / record {} of kind {} is about {target}, which \
                         this server does not hold: sync the device that created it first",
                        header.id, header.kind
                    ),
                });
            }
        }
    }
    Ok(())
}

/// The fields the pushed changes set, when they apply (a genesis and its edits).
fn fields_of(changes: &[&[u8]]) -> Option<BTreeMap<String, FieldValue>> {
    let decoded: Vec<Change> = changes
        .iter()
        .filter_map(|b| Change::try_from(*b).ok())
        .collect();
    let mut doc = record::new_doc();
    doc.apply_changes(decoded).ok()?;
    Some(record::project(&doc).ok()?.fields)
}
