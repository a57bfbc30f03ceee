//! A push in SQLite: on the writer thread, in one transaction, read the facts
//! [`crate::ingest`] asks for, let it plan, and write the plan. The single writer is what keeps
//! the facts true until the plan is committed.

use std::sync::Arc;

use fieldsync_protocol::RecordHeader;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use uuid::Uuid;

use super::{now_ms, pull::head, writer::TemplateCache};
use crate::ingest::{self, Facts, Plan, Wanted};
use crate::storage::{CheckedPush, PushOutcome, Pusher, StorageError};

/// Checks and stores one push atomically: all of it or, on error, nothing.
pub(super) fn push(
    conn: &mut Connection,
    templates: &mut TemplateCache,
    pusher: &Pusher,
    push: CheckedPush,
) -> Result<PushOutcome, StorageError> {
    ingest::admit(pusher, &push).map_err(StorageError::Refused)?;
    let now = now_ms();
    let tx = conn.transaction()?;
    let mut facts = read_facts(&tx, templates, &ingest::wanted(&push), now)?;
    let keys = ingest::keys(&push, &facts);
    read_places(&tx, &keys.references, &mut facts)?;
    let plan = ingest::plan(pusher, push, &facts, &keys).map_err(StorageError::Refused)?;
    let outcome = write_plan(&tx, plan, now)?;
    tx.commit()?;
    Ok(outcome)
}

fn read_facts(
    tx: &Transaction<'_>,
    templates: &mut TemplateCache,
    wanted: &Wanted,
    now: i64,
) -> Result<Facts, StorageError> {
    let mut facts = Facts {
        recovering: tx
            .query_row(
                "SELECT value FROM server_meta WHERE key = 'recovery_until'",
                [],
                |r| r.get::<_, String>(0),
            )
            .optional()?
            .and_then(|v| v.parse::<i64>().ok())
            .is_some_and(|until| until > now),
        ..Facts::default()
    };
    {
        let mut stmt =
            tx.prepare_cached("SELECT kind, campaign, scope FROM records WHERE id = ?1")?;
        for id in &wanted.records {
            let row: Option<(String, String, String)> = stmt
                .query_row([id.to_string()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            if let Some((kind, campaign, scope)) = row {
                let header = RecordHeader::parse(&id.to_string(), &kind, &campaign, &scope)
                    .map_err(|e| StorageError::Other(format!("stored record {id}: {e}")))?;
                facts.headers.insert(*id, header);
            }
        }
    }
    {
        let mut stmt = tx.prepare_cached("SELECT device FROM actors WHERE actor = ?1")?;
        for actor in &wanted.actors {
            let owner: Option<String> = stmt.query_row([actor], |r| r.get(0)).optional()?;
            if let Some(owner) = owner.and_then(|o| Uuid::parse_str(&o).ok()) {
                facts.owners.insert(actor.clone(), owner);
            }
        }
    }
    {
        let mut stmt = tx.prepare_cached("SELECT mac_key FROM devices WHERE id = ?1")?;
        for signer in &wanted.signers {
            let key: Option<Option<Vec<u8>>> = stmt
                .query_row([signer.to_string()], |r| r.get(0))
                .optional()?;
            if let Some(key) = key
                .flatten()
                .and_then(|k| <[u8; 32]>::try_from(k.as_slice()).ok())
            {
                facts.keys.insert(*signer, key);
            }
        }
    }
    {
        let mut stmt =
            tx.prepare_cached("SELECT EXISTS (SELECT 1 FROM changes WHERE hash = ?1)")?;
        for hash in &wanted.hashes {
            if stmt.query_row([hash.as_slice()], |r| r.get::<_, bool>(0))? {
                facts.known.insert(*hash);
            }
        }
    }
    {
        let mut stmt = tx.prepare_cached(
            "SELECT hash FROM changes WHERE record_id = ?1 AND actor = ?2 AND actor_seq = ?3",
        )?;
        for (record, actor, seq) in &wanted.sequences {
            let have: Option<Vec<u8>> = stmt
                .query_row(params![record.to_string(), actor, *seq as i64], |r| {
                    r.get(0)
                })
                .optional()?;
            if let Some(h) = have.and_then(|h| <[u8; 32]>::try_from(h.as_slice()).ok()) {
                facts.sequences.insert((*record, actor.clone(), *seq), h);
            }
        }
    }
    for campaign in &wanted.campaigns {
        if let Some(t) = templates.for_campaign(tx, &campaign.to_string())?.last() {
            facts.templates.insert(*campaign, Arc::clone(t));
        }
    }
    Ok(facts)
}

fn read_places(
    tx: &Transaction<'_>,
    references: &[(Uuid, String)],
    facts: &mut Facts,
) -> Result<(), StorageError> {
    let mut stmt =
        tx.prepare_cached("SELECT scope FROM records WHERE id = ?1 AND campaign = ?2")?;
    for (campaign, target) in references {
        let place: Option<String> = stmt
            .query_row(params![target, campaign.to_string()], |r| r.get(0))
            .optional()?;
        if let Some(place) = place {
            facts.places.insert((*campaign, target.clone()), place);
        }
    }
    Ok(())
}

fn write_plan(tx: &Transaction<'_>, plan: Plan, now: i64) -> Result<PushOutcome, StorageError> {
    let device = plan.device.to_string();
    tx.execute(
        "INSERT INTO devices (id, first_seen, last_push) VALUES (?1, ?2, ?2)
         ON CONFLICT (id) DO UPDATE SET last_push = ?2",
        params![device, now],
    )?;
    for (actor, owner) in &plan.actors {
        tx.prepare_cached("INSERT INTO actors (actor, device, first_seen) VALUES (?1, ?2, ?3)")?
            .execute(params![actor, owner.to_string(), now])?;
    }
    for rec in &plan.records {
        let id = rec.header.id.to_string();
        let mut insert = tx.prepare_cached(
            "INSERT INTO changes
               (hash, record_id, actor, actor_seq, pushed_by, received_at, bytes, campaign, scope)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        let campaign = rec.header.campaign.to_string();
        for change in &rec.changes {
            insert.execute(params![
                change.hash.as_slice(),
                id,
                change.actor,
                change.seq as i64,
                device,
                now,
                change.bytes,
                campaign,
                rec.header.scope
            ])?;
        }
        let seq = tx.last_insert_rowid();
        tx.prepare_cached(
            "INSERT INTO records (id, kind, campaign, scope, first_seq, last_seq, dirty)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5, 1)
             ON CONFLICT (id) DO UPDATE SET last_seq = ?5, dirty = 1",
        )?
        .execute(params![
            id,
            rec.header.kind,
            campaign,
            rec.header.scope,
            seq
        ])?;
    }
    tx.execute(
        "UPDATE devices SET pushed = pushed + ?2 WHERE id = ?1",
        params![device, plan.stored as i64],
    )?;
    Ok(PushOutcome {
        stored: plan.stored,
        duplicates: plan.duplicates,
        head: head(tx)?,
        unverified_relays: plan.unverified_relays,
        rejected: plan.rejected,
    })
}
