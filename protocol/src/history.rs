//! A record's history from its Automerge document: every change, oldest first, with each
//! field it set from what to what (texts whole, so an appended note shows as the note before
//! and after), its time and its actor. The dashboard and the field app both show it.

use automerge::Automerge;

use crate::{FieldValue, RecordHeader, record};

/// One field a change set: its value before the change and after it.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldChange {
    /// The field.
    pub field: String,
    /// Its value before (as the change's dependencies had it), `None` when it had none.
    pub before: Option<FieldValue>,
    /// Its value right after the change (`None` when the change removed it).
    pub after: Option<FieldValue>,
}

/// One entry of a record's history.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    /// When (ms since the epoch, as the writing device's clock said). The genesis has no time
    /// of its own (it is the same bytes on every device); it gets the time of the first change
    /// written on top of it.
    pub time: i64,
    /// The actor (hex).
    pub actor: String,
    /// The fields the change set, each from what to what (texts whole; an appended note shows
    /// as the note before and after).
    pub fields: Vec<FieldChange>,
    /// Whether it is the record's genesis.
    pub genesis: bool,
}

/// Every change of a merged document, oldest first, with what each one changed: the record as
/// the change's dependencies had it against the record right after it.
pub fn of(header: &RecordHeader, doc: &Automerge) -> Vec<HistoryEntry> {
    let genesis = record::genesis_actor(header);
    let fields_at =
        |heads: &[automerge::ChangeHash]| -> std::collections::BTreeMap<String, FieldValue> {
            if heads.is_empty() {
                return Default::default();
            }
            doc.fork_at(heads)
                .ok()
                .and_then(|d| record::project(&d).ok())
                .map(|p| p.fields)
                .unwrap_or_default()
        };
    let mut out = Vec::new();
    for change in doc.get_changes(&[]) {
        let before = fields_at(change.deps());
        let after = fields_at(&[change.hash()]);
        let mut names: Vec<&String> = before.keys().chain(after.keys()).collect();
        names.sort();
        names.dedup();
        let fields = names
            .into_iter()
            .filter(|k| !k.starts_with('_'))
            .filter(|k| before.get(*k) != after.get(*k))
            .map(|k| FieldChange {
                field: k.clone(),
                before: before.get(k).cloned(),
                after: after.get(k).cloned(),
            })
            .collect();
        out.push(HistoryEntry {
            time: change.timestamp(),
            actor: change.actor_id().to_hex_string(),
            fields,
            genesis: *change.actor_id() == genesis,
        });
    }
    out.sort_by_key(|e| (!e.genesis, e.time));
    let first = out
        .iter()
        .filter(|e| !e.genesis)
        .map(|e| e.time)
        .find(|t| *t > 0);
    for e in out.iter_mut().filter(|e| e.genesis && e.time == 0) {
        e.time = first.unwrap_or(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{genesis_change, put_field};
    use automerge::{ActorId, transaction::CommitOptions};

    #[test]
    fn history_says_what_each_change_changed_from_what_to_what() {
        let header = RecordHeader {
            id: uuid::Uuid::now_v7(),
            kind: "interview".into(),
            campaign: uuid::Uuid::now_v7(),
            scope: "510100001".into(),
        };
        let (mut doc, _) = genesis_change(&header).unwrap();
        doc.set_actor(ActorId::random());
        let fields = record::fields_obj(&doc).unwrap();
        let write = |doc: &mut automerge::Automerge, k: &str, v: FieldValue, t: i64| {
            let mut tx = doc.transaction();
            put_field(&mut tx, &fields, k, &v).unwrap();
            tx.commit_with(CommitOptions::default().with_time(t));
        };
        write(&mut doc, "rating", FieldValue::Str("good".into()), 1_000);
        write(&mut doc, "notes", FieldValue::Text("第一段".into()), 2_000);
        write(&mut doc, "rating", FieldValue::Str("poor".into()), 3_000);
        write(
            &mut doc,
            "notes",
            FieldValue::Text("第一段，补充".into()),
            4_000,
        );
        let h = of(&header, &doc);
        assert_eq!(h.len(), 5);
        assert!(h[0].genesis);
        assert_eq!(
            h[0].time, 1_000,
            "the creation row has the first edit's time"
        );
        assert_eq!(
            h[3].fields,
            vec![FieldChange {
                field: "rating".into(),
                before: Some(FieldValue::Str("good".into())),
                after: Some(FieldValue::Str("poor".into())),
            }]
        );
        assert_eq!(h[4].fields.len(), 1, "{:?}", h[4]);
        assert_eq!(h[4].fields[0].field, "notes");
        assert_eq!(
            h[4].fields[0].after,
            Some(FieldValue::Text("第一段，补充".into()))
        );
    }
}
