//! Records on this device: local edits (create, ensure, edit through an [`Editor`], delete,
//! resolve), each one transaction writing the change, the document and its projection; and reads
//! of the projection (get, list with a [`Filter`], counts) and of documents (conflicts).

use std::collections::BTreeMap;

use automerge::{ActorId, Automerge, Change, ROOT, transaction::CommitOptions};
use fieldsync_protocol::{
    FieldValue, RecordHeader, approval, creation, new_record_id,
    record::{self, Conflict, Projection},
};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use uuid::Uuid;

use super::{Result, Store, StoreError, now_ms};

/// A record as the store's projection holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Id, kind, campaign and scope.
    pub header: RecordHeader,
    /// Whether it is deleted (a tombstone that syncs like any edit).
    pub deleted: bool,
    /// Current field values.
    pub fields: BTreeMap<String, FieldValue>,
    /// How many fields hold conflicting values (see [`Store::conflicts`]).
    pub conflicts: usize,
    /// The document's heads (hex change hashes).
    pub heads: Vec<String>,
    /// When this device last changed it (ms since the Unix epoch).
    pub updated_at: i64,
}

/// Which records [`Store::list`] returns.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this kind.
    pub kind: Option<String>,
    /// Only this scope (place).
    pub scope: Option<String>,
    /// Only this campaign.
    pub campaign: Option<Uuid>,
    /// Only records whose field values contain this text.
    pub text: Option<String>,
    /// Include deleted records.
    pub include_deleted: bool,
    /// Only records with conflicts.
    pub conflicted: bool,
}

impl Store {
    // ----- local writes -------------------------------------------------------------------

    /// Creates a new record (fresh UUID v7 id) with the given field values, offline.
    pub fn create(
        &mut self,
        kind: &str,
        campaign: Uuid,
        scope: &str,
        fields: &[(&str, FieldValue)],
    ) -> Result<Uuid> {
        let header = RecordHeader {
            id: new_record_id(),
            kind: kind.into(),
            campaign,
            scope: scope.into(),
        };
        self.create_with_header(&header, fields)?;
        Ok(header.id)
    }

    /// Creates the record with exactly this header (a singleton with a derived id, say) and the
    /// given values. If the store already has it, fails with [`StoreError::Exists`]; use
    /// [`Store::ensure`] for create-or-edit.
    pub fn create_with_header(
        &mut self,
        header: &RecordHeader,
        fields: &[(&str, FieldValue)],
    ) -> Result<()> {
        if self.exists(header.id)? {
            return Err(StoreError::Exists(header.id));
        }
        self.ensure(header, fields)
    }

    /// Creates the record if this store does not have it yet, then writes the given values into
    /// it. Two devices that `ensure` the same singleton offline end with one merged record.
    pub fn ensure(&mut self, header: &RecordHeader, fields: &[(&str, FieldValue)]) -> Result<()> {
        let tx = self.conn.transaction()?;
        ensure_in(&tx, &self.actor, header, fields)?;
        tx.commit()?;
        Ok(())
    }

    /// [`Store::ensure`] for many records in one transaction: all are written, or (on any
    /// error) none is.
    pub fn ensure_all(
        &mut self,
        records: &[(RecordHeader, Vec<(String, FieldValue)>)],
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        for (header, fields) in records {
            let fields: Vec<(&str, FieldValue)> = fields
                .iter()
                .map(|(k, v)| (k.as_str(), v.clone()))
                .collect();
            ensure_in(&tx, &self.actor, header, &fields)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Edits a record: `f` gets an editor whose writes become one change, saved with the
    /// record's projection in one transaction. If `f` fails, nothing is written.
    pub fn edit<T>(
        &mut self,
        id: Uuid,
        f: impl FnOnce(&mut Editor<'_, '_>) -> Result<T>,
    ) -> Result<T> {
        let tx = self.conn.transaction()?;
        let (_, mut doc) = load_record(&tx, id)?.ok_or(StoreError::NotFound(id))?;
        doc.set_actor(self.actor.clone());
        let fields = record::fields_obj(&doc)?;
        let mut t = doc.transaction();
        let out = {
            let mut editor = Editor {
                tx: &mut t,
                fields: &fields,
                touched_other: false,
            };
            f(&mut editor).and_then(|v| {
                // A reviewed record that is edited goes back for review, in the same change.
                if editor.touched_other {
                    editor.reset_review()?;
                }
                Ok(v)
            })
        };
        let out = match out {
            Ok(v) => v,
            Err(e) => {
                t.rollback();
                return Err(e);
            }
        };
        let (hash, _) = t.commit_with(CommitOptions::default().with_time(now_ms()));
        if hash.is_some() {
            let change = doc
                .get_last_local_change()
                .expect("a committed change is the last local change");
            insert_change(&tx, id, &change, LOCAL)?;
            save_record(&tx, &doc)?;
            tx.commit()?;
        }
        Ok(out)
    }

    /// Sets one field.
    pub fn set(&mut self, id: Uuid, field: &str, value: FieldValue) -> Result<()> {
        self.edit(id, |e| e.set(field, &value))
    }

    /// Deletes a record: a tombstone that syncs like any edit. The record's history is kept.
    pub fn delete(&mut self, id: Uuid) -> Result<()> {
        self.edit(id, |e| e.mark_deleted(true))
    }

    /// Resolves a conflict on `field` by writing `value` over every concurrent value.
    pub fn resolve(&mut self, id: Uuid, field: &str, value: FieldValue) -> Result<()> {
        self.set(id, field, value)
    }

    // ----- reads ----------------------------------------------------------------------------

    /// Whether the store has a record with this id.
    pub fn exists(&self, id: Uuid) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM records WHERE id = ?1 AND ready = 1")?
            .query_row([id.to_string()], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// One record's current state.
    pub fn get(&self, id: Uuid) -> Result<Record> {
        self.conn
            .prepare_cached(
                "SELECT id, kind, campaign, scope, deleted, fields, conflicts, heads, updated_at
                 FROM records WHERE id = ?1 AND ready = 1",
            )?
            .query_row([id.to_string()], row_to_record)
            .optional()?
            .ok_or(StoreError::NotFound(id))?
    }

    /// Records matching `filter`, newest first.
    pub fn list(&self, filter: &Filter) -> Result<Vec<Record>> {
        let mut sql = String::from(
            "SELECT id, kind, campaign, scope, deleted, fields, conflicts, heads, updated_at
             FROM records WHERE ready = 1",
        );
        let mut args: Vec<String> = Vec::new();
        if let Some(k) = &filter.kind {
            args.push(k.clone());
            sql.push_str(&format!(" AND kind = ?{}", args.len()));
        }
        if let Some(s) = &filter.scope {
            args.push(s.clone());
            sql.push_str(&format!(" AND scope = ?{}", args.len()));
        }
        if let Some(c) = &filter.campaign {
            args.push(c.to_string());
            sql.push_str(&format!(" AND campaign = ?{}", args.len()));
        }
        if let Some(t) = &filter.text {
            args.push(format!(
                "%{}%",
                t.replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            ));
            sql.push_str(&format!(" AND fields LIKE ?{} ESCAPE '\\'", args.len()));
        }
        if !filter.include_deleted {
            sql.push_str(" AND deleted = 0");
        }
        if filter.conflicted {
            sql.push_str(" AND conflicts > 0");
        }
        sql.push_str(" ORDER BY updated_at DESC, id");
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), row_to_record)?;
        rows.map(|r| r?).collect()
    }

    /// The fields of a record that hold conflicting values, with who wrote each and when.
    pub fn conflicts(&self, id: Uuid) -> Result<Vec<Conflict>> {
        let (_, doc) = load_record(&self.conn, id)?.ok_or(StoreError::NotFound(id))?;
        Ok(record::conflicts(&doc)?)
    }

    /// Where the record stands in review (待审核, 已通过, 退回修改 with the reviewer's comment),
    /// read by the one rule of `protocol::approval`.
    pub fn review(&self, id: Uuid) -> Result<approval::Review> {
        let record = self.get(id)?;
        let conflicted = record.conflicts > 0
            && self
                .conflicts(id)?
                .iter()
                .any(|c| c.field == approval::STATE_FIELD);
        Ok(approval::read(&record.fields, conflicted))
    }

    /// The record's whole Automerge document (for history and inspection).
    pub fn document(&self, id: Uuid) -> Result<Automerge> {
        Ok(load_record(&self.conn, id)?
            .ok_or(StoreError::NotFound(id))?
            .1)
    }

    /// How many changes wait to be uploaded.
    pub fn pending_upload(&self) -> Result<u64> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM changes WHERE acked = 0", [], |r| {
                r.get::<_, i64>(0)
            })? as u64)
    }

    /// How many changes are kept aside waiting for a change they depend on.
    pub fn waiting_for_dependencies(&self) -> Result<u64> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM changes WHERE applied = 0", [], |r| {
                r.get::<_, i64>(0)
            })? as u64)
    }

    /// The number of records (not deleted).
    pub fn count(&self) -> Result<u64> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM records WHERE ready = 1 AND deleted = 0",
            [],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }
}

/// Writes into one record inside [`Store::edit`]; all writes become one change.
pub struct Editor<'t, 'd> {
    tx: &'t mut automerge::transaction::Transaction<'d>,
    fields: &'t automerge::ObjId,
    /// Whether a field other than the review's own was written (see `protocol::approval`).
    touched_other: bool,
}

impl Editor<'_, '_> {
    /// Sets a field (a text value merges with concurrent edits of the same text).
    pub fn set(&mut self, field: &str, value: &FieldValue) -> Result<()> {
        record::put_field(self.tx, self.fields, field, value)?;
        self.touch(field);
        Ok(())
    }

    /// Removes a field.
    pub fn remove(&mut self, field: &str) -> Result<()> {
        use automerge::transaction::Transactable;
        record::validate_field_name(field)?;
        self.tx.delete(self.fields, field)?;
        self.touch(field);
        Ok(())
    }

    fn touch(&mut self, field: &str) {
        if !approval::is_review_field(field) {
            self.touched_other = true;
        }
    }

    /// Writes `pending` into the review state when the record had been reviewed.
    fn reset_review(&mut self) -> Result<()> {
        use automerge::{ReadDoc, Value};
        let current = match self.tx.get(self.fields, approval::STATE_FIELD)? {
            Some((Value::Scalar(s), _)) => s.as_str().map(|s| FieldValue::Str(s.into())),
            _ => None,
        };
        if let Some(pending) = approval::after_edit(current.as_ref(), true) {
            record::put_field(self.tx, self.fields, approval::STATE_FIELD, &pending)?;
        }
        Ok(())
    }

    fn text_obj(&mut self, field: &str) -> Result<(automerge::ObjId, usize)> {
        use automerge::{ObjType, ReadDoc, Value};
        record::validate_field_name(field)?;
        match self.tx.get(self.fields, field)? {
            Some((Value::Object(ObjType::Text), id)) => {
                let len = self.tx.length(&id);
                Ok((id, len))
            }
            _ => Err(StoreError::NotText(field.into())),
        }
    }

    /// Replaces `delete` characters at character position `pos` of a text field with `insert`.
    /// Positions count Unicode characters (code points), so `你好` has length 2.
    pub fn splice_text(
        &mut self,
        field: &str,
        pos: usize,
        delete: usize,
        insert: &str,
    ) -> Result<()> {
        use automerge::transaction::Transactable;
        let (id, len) = self.text_obj(field)?;
        if pos > len || pos + delete > len {
            return Err(StoreError::TextRange {
                field: field.into(),
                pos: pos + delete,
                len,
            });
        }
        self.tx.splice_text(&id, pos, delete as isize, insert)?;
        self.touch(field);
        Ok(())
    }

    /// Appends to a text field, creating it if the record does not have it yet.
    pub fn append_text(&mut self, field: &str, text: &str) -> Result<()> {
        use automerge::transaction::Transactable;
        match self.text_obj(field) {
            Ok((id, len)) => {
                self.tx.splice_text(&id, len, 0, text)?;
                self.touch(field);
                Ok(())
            }
            Err(StoreError::NotText(_)) => self.set(field, &FieldValue::Text(text.into())),
            Err(e) => Err(e),
        }
    }

    /// Sets or clears the tombstone.
    pub fn mark_deleted(&mut self, deleted: bool) -> Result<()> {
        use automerge::transaction::Transactable;
        self.tx.put(ROOT, record::DELETED_KEY, deleted)?;
        Ok(())
    }
}

fn row_to_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Record>> {
    let id: String = r.get(0)?;
    let kind: String = r.get(1)?;
    let campaign: String = r.get(2)?;
    let scope: String = r.get(3)?;
    let deleted: bool = r.get(4)?;
    let fields: String = r.get(5)?;
    let conflicts: i64 = r.get(6)?;
    let heads: String = r.get(7)?;
    let updated_at: i64 = r.get(8)?;
    Ok((|| {
        let header = RecordHeader::parse(&id, &kind, &campaign, &scope)?;
        let damaged = |reason: String| StoreError::Damaged {
            id: header.id,
            reason,
        };
        let json: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&fields).map_err(|e| damaged(e.to_string()))?;
        let fields = json
            .iter()
            .map(|(k, v)| Ok((k.clone(), FieldValue::from_json(k, v)?)))
            .collect::<Result<BTreeMap<_, _>>>()?;
        let heads = serde_json::from_str(&heads).map_err(|e| damaged(e.to_string()))?;
        Ok(Record {
            header,
            deleted,
            fields,
            conflicts: conflicts as usize,
            heads,
            updated_at,
        })
    })())
}

/// Loads a record's header and document. `None` when the store has no ready record of that id.
pub(super) fn load_record(
    conn: &Connection,
    id: Uuid,
) -> Result<Option<(RecordHeader, Automerge)>> {
    let row = conn
        .prepare_cached(
            "SELECT kind, campaign, scope, doc FROM records WHERE id = ?1 AND ready = 1",
        )?
        .query_row([id.to_string()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Vec<u8>>(3)?,
            ))
        })
        .optional()?;
    let Some((kind, campaign, scope, bytes)) = row else {
        return Ok(None);
    };
    let header = RecordHeader::parse(&id.to_string(), &kind, &campaign, &scope)?;
    let bytes = document_bytes(conn, &id.to_string(), bytes)?;
    let doc = record::load_doc(&bytes).map_err(|e| StoreError::Damaged {
        id,
        reason: e.to_string(),
    })?;
    Ok(Some((header, doc)))
}

/// A record's stored document: `records.doc`, or, when that is empty, the record's applied
/// changes in the order they were stored. A record stored exactly as it was created (here, or
/// received so) keeps its document only as its change rows, genesis first, rather than a
/// second copy of their bytes in its row: creating 10,000 records wrote 19 MB less (the
/// first edit stores the document saved).
pub(super) fn document_bytes(conn: &Connection, id: &str, doc: Vec<u8>) -> Result<Vec<u8>> {
    if !doc.is_empty() {
        return Ok(doc);
    }
    let mut stmt = conn.prepare_cached(
        "SELECT bytes FROM changes WHERE record_id = ?1 AND applied = 1 ORDER BY seq",
    )?;
    let mut out = Vec::new();
    for bytes in stmt.query_map([id], |r| r.get::<_, Vec<u8>>(0))? {
        out.extend_from_slice(&bytes?);
    }
    Ok(out)
}

/// The typed JSON the projection column stores: texts as `{"text": ...}` so they read back as
/// texts.
fn typed_fields_json(p: &Projection) -> String {
    let map: serde_json::Map<String, serde_json::Value> = p
        .fields
        .iter()
        .map(|(k, v)| {
            let j = match v {
                FieldValue::Text(s) => serde_json::json!({ "text": s }),
                other => other.to_json(),
            };
            (k.clone(), j)
        })
        .collect();
    serde_json::Value::Object(map).to_string()
}

/// Saves a record's document and projection (the document must hold its genesis).
fn save_record(tx: &Transaction<'_>, doc: &Automerge) -> Result<()> {
    let p = record::project(doc)?;
    write_projection(tx, &p, &doc.save(), now_ms())
}

pub(super) fn write_projection(
    tx: &Transaction<'_>,
    p: &Projection,
    doc: &[u8],
    now: i64,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO records (id, kind, campaign, scope, doc, ready, fields, deleted, conflicts,
                              heads, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (id) DO UPDATE SET doc = ?5, ready = 1, fields = ?6, deleted = ?7,
             conflicts = ?8, heads = ?9, updated_at = ?10",
    )?
    .execute(params![
        p.header.id.to_string(),
        p.header.kind,
        p.header.campaign.to_string(),
        p.header.scope,
        doc,
        typed_fields_json(p),
        p.deleted,
        p.conflicts as i64,
        serde_json::to_string(&p.heads).unwrap_or_else(|_| "[]".into()),
        now,
    ])?;
    Ok(())
}

/// Flags of a change being added to the log.
#[derive(Clone, Copy)]
pub(super) struct ChangeFlags {
    pub(super) local: bool,
    pub(super) acked: bool,
    pub(super) applied: bool,
}

pub(super) fn insert_change(
    tx: &Transaction<'_>,
    record: Uuid,
    change: &Change,
    flags: ChangeFlags,
) -> Result<()> {
    let stored = StoredChange {
        hash: change.hash(),
        actor: change.actor_id().to_bytes(),
        bytes: change.raw_bytes(),
    };
    insert_stored(tx, record, &stored, flags)
}

/// A change as the log keeps it: its hash, its author's actor id and its bytes.
pub(super) struct StoredChange<'a> {
    pub(super) hash: automerge::ChangeHash,
    pub(super) actor: &'a [u8],
    pub(super) bytes: &'a [u8],
}

/// Adds a change to the log (see [`insert_change`] for one Automerge has parsed).
pub(super) fn insert_stored(
    tx: &Transaction<'_>,
    record: Uuid,
    change: &StoredChange<'_>,
    ChangeFlags {
        local,
        acked,
        applied,
    }: ChangeFlags,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO changes (hash, record_id, actor, bytes, local, acked, applied, seen_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        change.hash.0.as_slice(),
        record.to_string(),
        change.actor,
        change.bytes,
        local,
        acked,
        applied,
        now_ms()
    ])?;
    Ok(())
}

const LOCAL: ChangeFlags = ChangeFlags {
    local: true,
    acked: false,
    applied: true,
};

/// Creates the record if missing and writes `fields` into it, inside `tx`.
fn ensure_in(
    tx: &Transaction<'_>,
    actor: &ActorId,
    header: &RecordHeader,
    fields: &[(&str, FieldValue)],
) -> Result<()> {
    header.validate()?;
    for (name, _) in fields {
        record::validate_field_name(name)?;
    }
    let Some((have, mut doc)) = load_record(tx, header.id)? else {
        // A record new to this store: its changes are written directly as bytes (the same
        // bytes a document would write, at a fraction of the cost), and stored one after the other they
        // load as its document, as a record new from a pull does. The first edit saves it
        // compacted.
        let created = creation::create_bytes(header, actor, now_ms(), fields)?;
        let genesis_actor = record::genesis_actor(header);
        let genesis = StoredChange {
            hash: created.genesis.1,
            actor: genesis_actor.to_bytes(),
            bytes: &created.genesis.0,
        };
        insert_stored(tx, header.id, &genesis, LOCAL)?;
        if let Some((bytes, hash)) = &created.first {
            let first = StoredChange {
                hash: *hash,
                actor: actor.to_bytes(),
                bytes,
            };
            insert_stored(tx, header.id, &first, LOCAL)?;
        }
        // The document is the changes just stored, genesis first (see `document_bytes`).
        write_projection(tx, &created.projection, &[], now_ms())?;
        return Ok(());
    };
    if have != *header {
        return Err(StoreError::HeaderMismatch {
            id: header.id,
            have: Box::new(have),
            got: Box::new(header.clone()),
        });
    }
    if fields.is_empty() {
        return Ok(());
    }
    doc.set_actor(actor.clone());
    let fields_obj = record::fields_obj(&doc)?;
    let mut t = doc.transaction();
    for (name, value) in fields {
        record::put_field(&mut t, &fields_obj, name, value)?;
    }
    // Writing values the record already holds commits nothing: then there is no new change
    // (and the last local change is an old one that is already stored).
    let (hash, _) = t.commit_with(CommitOptions::default().with_time(now_ms()));
    if hash.is_none() {
        return Ok(());
    }
    let change = doc
        .get_last_local_change()
        .expect("a committed change is the last local change");
    insert_change(tx, header.id, &change, LOCAL)?;
    save_record(tx, &doc)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fieldsync_protocol::wire::WireRecord;
    use serde_bytes::ByteBuf;

    fn stored_doc_len(store: &Store, id: Uuid) -> i64 {
        store
            .conn
            .query_row(
                "SELECT length(doc) FROM records WHERE id = ?1",
                [id.to_string()],
                |r| r.get(0),
            )
            .unwrap()
    }

    /// The document Automerge loads for `id` projects to what the store shows.
    fn document_agrees(store: &Store, id: Uuid) {
        let projected = record::project(&store.document(id).unwrap()).unwrap();
        assert_eq!(projected.fields, store.get(id).unwrap().fields);
        assert_eq!(projected.heads, store.get(id).unwrap().heads);
    }

    #[test]
    fn a_created_record_keeps_its_document_as_its_changes_until_it_is_edited() {
        let mut store = Store::open_in_memory().unwrap();
        let fields = [
            ("notes", FieldValue::Text("谈心谈话".into())),
            ("score", FieldValue::Int(3)),
        ];
        let id = store
            .create("interview", Uuid::from_u128(1), "350102001", &fields)
            .unwrap();
        assert_eq!(
            stored_doc_len(&store, id),
            0,
            "no second copy of the changes"
        );
        document_agrees(&store, id);

        store
            .edit(id, |e| e.splice_text("notes", 4, 0, "记录"))
            .unwrap();
        assert!(
            stored_doc_len(&store, id) > 0,
            "an edited record stores its document"
        );
        assert_eq!(
            store.get(id).unwrap().fields["notes"],
            FieldValue::Text("谈心谈话记录".into())
        );
        document_agrees(&store, id);
    }

    #[test]
    fn a_received_creation_in_any_order_keeps_its_document_as_its_changes() {
        let mut sender = Store::open_in_memory().unwrap();
        let id = sender
            .create(
                "interview",
                Uuid::from_u128(2),
                "350102001",
                &[("notes", FieldValue::Text("班子团结".into()))],
            )
            .unwrap();
        let header = RecordHeader {
            id,
            kind: "interview".into(),
            campaign: Uuid::from_u128(2),
            scope: "350102001".into(),
        };
        let changes: Vec<ByteBuf> = sender
            .conn
            .prepare("SELECT bytes FROM changes WHERE record_id = ?1 ORDER BY seq DESC")
            .unwrap()
            .query_map([id.to_string()], |r| r.get::<_, Vec<u8>>(0))
            .unwrap()
            .map(|b| ByteBuf::from(b.unwrap()))
            .collect();
        assert_eq!(changes.len(), 2);
        // The first change before the genesis: stored genesis first all the same.
        let wire = WireRecord {
            id: id.to_string(),
            kind: header.kind.clone(),
            campaign: header.campaign.to_string(),
            scope: header.scope.clone(),
            changes,
            created: None,
            tags: Vec::new(),
        };
        // The same record in its compact form, as a pull page with `created` brings it: applied
        // by any caller, it is stored whole.
        let mut compact = wire.clone();
        assert!(compact.compact_creation(&header));
        assert!(compact.changes.is_empty());
        let mut other = Store::open_in_memory().unwrap();
        other.apply_records(&[compact.clone()], true).unwrap();
        assert_eq!(other.get(id).unwrap().heads, sender.get(id).unwrap().heads);
        document_agrees(&other, id);
        // Altered, it is refused with the record named, and nothing of it is stored.
        let created = compact.created.as_mut().unwrap();
        created.truncate(3);
        let mut third = Store::open_in_memory().unwrap();
        let err = third.apply_records(&[compact], true).unwrap_err();
        assert!(err.to_string().contains(&id.to_string()), "{err}");
        assert!(!third.exists(id).unwrap());
        let mut receiver = Store::open_in_memory().unwrap();
        receiver.apply_records(&[wire], true).unwrap();
        assert_eq!(stored_doc_len(&receiver, id), 0);
        assert_eq!(
            receiver.get(id).unwrap().fields,
            sender.get(id).unwrap().fields
        );
        document_agrees(&receiver, id);
        receiver.set(id, "score", FieldValue::Int(5)).unwrap();
        document_agrees(&receiver, id);
        assert_eq!(
            receiver.get(id).unwrap().fields["score"],
            FieldValue::Int(5)
        );
    }
}
