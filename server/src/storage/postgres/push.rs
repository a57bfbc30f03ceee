//! A checked push appended to the PostgreSQL log in one transaction, under the log's advisory
//! lock (`log::LOG_LOCK`): the same per-record checks as the SQLite writer (forged actors, header
//! mismatches, reused sequence numbers, untagged relays outside the recovery window, singleton
//! keys), each record stored whole or refused alone.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::{GenericClient, Transaction};
use uuid::Uuid;

use super::{
    CheckedChange, CheckedPush, PushOutcome, StorageError, log::LOG_LOCK, now_ms,
    templates::TemplateCache,
};
use crate::singleton::Refusal;

/// Stores a checked push: all of it or, on error, nothing.
pub(super) async fn push(
    client: &mut deadpool_postgres::Client,
    templates: &TemplateCache,
    push: &CheckedPush,
) -> Result<PushOutcome, StorageError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOG_LOCK])
        .await?;
    let device = push.device.to_string();
    let now = now_ms();
    tx.execute(
        "INSERT INTO devices (id, first_seen, last_push) VALUES ($1, $2, $2)
         ON CONFLICT (id) DO UPDATE SET last_push = $2",
        &[&device, &now],
    )
    .await?;
    for actor in &push.actors {
        let owner: Option<String> = tx
            .query_opt("SELECT device FROM actors WHERE actor = $1", &[actor])
            .await?
            .map(|r| r.get(0));
        match owner {
            Some(o) if o != device => {
                return Err(StorageError::Forbidden {
                    code: "forged_actor",
                    message: format!(
                        "actor {} belongs to another device; a device may only claim the actor \
                         ids it writes with",
                        hex::encode(actor)
                    ),
                });
            }
            Some(_) => {}
            None => {
                tx.execute(
                    "INSERT INTO actors (actor, device, first_seen) VALUES ($1, $2, $3)",
                    &[actor, &device, &now],
                )
                .await?;
            }
        }
    }
    let own: HashSet<&[u8]> = push.actors.iter().map(|a| a.as_slice()).collect();
    let recovering = tx
        .query_opt(
            "SELECT value FROM server_meta WHERE key = 'recovery_until'",
            &[],
        )
        .await?
        .and_then(|r| r.get::<_, String>(0).parse::<i64>().ok())
        .is_some_and(|until| until > now);
    let mut unverified_relays = 0u64;
    let mut stored = 0u64;
    let mut duplicates = 0u64;
    let mut rejected = Vec::new();
    for rec in &push.records {
        let id = rec.header.id.to_string();
        let existing = tx
            .query_opt(
                "SELECT kind, campaign, scope FROM records WHERE id = $1",
                &[&id],
            )
            .await?
            .map(|r| {
                (
                    r.get::<_, String>(0),
                    r.get::<_, String>(1),
                    r.get::<_, String>(2),
                )
            });
        // A record that contradicts what the server holds is refused alone.
        let mut refusal = match &existing {
            Some((kind, campaign, scope)) => {
                let same = *kind == rec.header.kind
                    && *campaign == rec.header.campaign.to_string()
                    && *scope == rec.header.scope;
                (!same).then(|| Refusal {
                    code: "header_mismatch",
                    message: format!(
                        "服务器上的同一记录属于其他类型或村（社区） / record {id} is stored as \
                         {kind} of campaign {campaign} in {scope}; the push says {} of campaign \
                         {} in {}",
                        rec.header.kind, rec.header.campaign, rec.header.scope
                    ),
                })
            }
            None => singleton_refusal(&tx, templates, rec).await?,
        };
        if refusal.is_none() {
            refusal = reused_sequence_number(&tx, &id, &rec.changes).await?;
        }
        let mut unverified_here = 0;
        if refusal.is_none() {
            for change in &rec.changes {
                if change.genesis || own.contains(change.actor.as_slice()) {
                    continue;
                }
                let known: bool = tx
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM changes WHERE hash = $1)",
                        &[&change.hash.as_slice()],
                    )
                    .await?
                    .get(0);
                if known {
                    continue;
                }
                match check_relay(&tx, &device, &id, change, now, recovering).await? {
                    Relay::Verified => {}
                    Relay::Unverified => unverified_here += 1,
                    Relay::Untagged(r) => {
                        refusal = Some(r);
                        break;
                    }
                }
            }
        }
        if let Some(refusal) = refusal {
            tracing::warn!(record = %id, code = refusal.code, "record refused");
            rejected.push(refusal.for_record(&rec.header.id));
            continue;
        }
        unverified_relays += unverified_here;
        let mut last_seq = None;
        for change in &rec.changes {
            let row = tx
                .query_opt(
                    "INSERT INTO changes
                       (seq, hash, record_id, actor, actor_seq, pushed_by, received_at, bytes)
                     VALUES (nextval('changes_seq'), $1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT DO NOTHING RETURNING seq",
                    &[
                        &change.hash.as_slice(),
                        &id,
                        &change.actor,
                        &(change.seq as i64),
                        &device,
                        &now,
                        &change.bytes,
                    ],
                )
                .await?;
            match row {
                Some(r) => {
                    stored += 1;
                    last_seq = Some(r.get::<_, i64>(0));
                }
                None => duplicates += 1,
            }
        }
        if let Some(seq) = last_seq {
            tx.execute(
                "INSERT INTO records (id, kind, campaign, scope, first_seq, last_seq, dirty)
                 VALUES ($1, $2, $3, $4, $5, $5, true)
                 ON CONFLICT (id) DO UPDATE SET last_seq = $5, dirty = true",
                &[
                    &id,
                    &rec.header.kind,
                    &rec.header.campaign.to_string(),
                    &rec.header.scope,
                    &seq,
                ],
            )
            .await?;
        }
    }
    tx.execute(
        "UPDATE devices SET pushed = pushed + $2 WHERE id = $1",
        &[&device, &(stored as i64)],
    )
    .await?;
    let head: i64 = tx
        .query_one("SELECT coalesce(max(seq), 0) FROM changes", &[])
        .await?
        .get(0);
    tx.commit().await?;
    Ok(PushOutcome {
        stored,
        duplicates,
        head: head as u64,
        unverified_relays,
        rejected,
    })
}

/// The singleton checks of a record the server does not hold yet (`singleton::check_new`),
/// with the places of the records its key refers to read first.
async fn singleton_refusal(
    tx: &Transaction<'_>,
    templates: &TemplateCache,
    rec: &super::CheckedRecord,
) -> Result<Option<Refusal>, StorageError> {
    let campaign = rec.header.campaign.to_string();
    let versions = templates.for_campaign(tx, &campaign).await?;
    let Some(template) = versions.last() else {
        return Ok(None);
    };
    let bytes: Vec<&[u8]> = rec.changes.iter().map(|c| c.bytes.as_slice()).collect();
    // First learn which records the check asks about, then answer from what is stored.
    let asked = std::sync::Mutex::new(Vec::<String>::new());
    let _ = crate::singleton::check_new(template, &rec.header, &bytes, |target| {
        asked.lock().expect("asked").push(target.to_string());
        None
    });
    let asked = asked.into_inner().expect("asked");
    let places: HashMap<String, String> = if asked.is_empty() {
        HashMap::new()
    } else {
        tx.query(
            "SELECT id, scope FROM records WHERE id = ANY($1) AND campaign = $2",
            &[&asked, &campaign],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    };
    Ok(
        crate::singleton::check_new(template, &rec.header, &bytes, |target| {
            places.get(target).cloned()
        })
        .err(),
    )
}

/// A change of the record whose actor already wrote a different change with the same sequence
/// number (an actor id reused, as by a device restored from a backup that kept its actor).
async fn reused_sequence_number<C: GenericClient>(
    c: &C,
    id: &str,
    changes: &[CheckedChange],
) -> Result<Option<Refusal>, StorageError> {
    for change in changes {
        let have: Option<Vec<u8>> = c
            .query_opt(
                "SELECT hash FROM changes WHERE record_id = $1 AND actor = $2 AND actor_seq = $3",
                &[&id, &change.actor, &(change.seq as i64)],
            )
            .await?
            .map(|r| r.get(0));
        if have.is_some_and(|h| h != change.hash) {
            return Ok(Some(Refusal {
                code: "duplicate_sequence_number",
                message: format!(
                    "同一作者的修改序号重复 / record {id} already has a different change by actor \
                     {} with sequence number {}; an actor id was reused (a device restored from \
                     a backup must write with a new actor id)",
                    hex::encode(&change.actor),
                    change.seq
                ),
            }));
        }
    }
    Ok(None)
}

/// What [`check_relay`] found.
enum Relay {
    Verified,
    Unverified,
    Untagged(Refusal),
}

/// Checks a change another device wrote that the pushing device relays (the SQLite writer's
/// rule: see `check_relay` there).
async fn check_relay<C: GenericClient>(
    c: &C,
    pusher: &str,
    record: &str,
    change: &CheckedChange,
    now: i64,
    recovering: bool,
) -> Result<Relay, StorageError> {
    let owner: Option<String> = c
        .query_opt(
            "SELECT device FROM actors WHERE actor = $1",
            &[&change.actor],
        )
        .await?
        .map(|r| r.get(0));
    let forged = |why: &str| StorageError::Forbidden {
        code: "forged_actor",
        message: format!(
            "a change to record {record} is written under actor {} {why}; a device may relay \
             another device's changes only with that device's tag (bundles carry them)",
            hex::encode(&change.actor)
        ),
    };
    let tag_device: Option<Uuid> = change
        .tag
        .as_ref()
        .and_then(|t| fieldsync_protocol::auth::tag_device(t));
    match (&owner, tag_device) {
        (Some(o), _) if o == pusher => return Ok(Relay::Verified),
        (None, None) => return Ok(Relay::Verified),
        (Some(_), None) if recovering => return Ok(Relay::Unverified),
        (Some(_), None) => {
            return Ok(Relay::Untagged(Refusal {
                code: "unverified_relay",
                message: format!(
                    "记录含有其他设备的修改但没有其签名 / a change to record {record} is written \
                     under actor {}, which belongs to another device, without that device's \
                     tag: the other device uploads it itself",
                    hex::encode(&change.actor)
                ),
            }));
        }
        (Some(o), Some(t)) if *o != t.to_string() => {
            return Err(forged("that belongs to another device than its tag names"));
        }
        _ => {}
    }
    let signer = tag_device.expect("checked above");
    let key = c
        .query_opt(
            "SELECT mac_key FROM devices WHERE id = $1",
            &[&signer.to_string()],
        )
        .await?
        .and_then(|r| r.get::<_, Option<Vec<u8>>>(0))
        .and_then(|k| <[u8; 32]>::try_from(k.as_slice()).ok())
        .ok_or_else(|| forged("with a tag of a device this server has not enrolled"))?;
    let tag = change.tag.as_ref().expect("checked above");
    if !fieldsync_protocol::auth::verify_tag(&key, &change.actor, &change.hash, tag) {
        return Err(forged("with a tag that does not verify"));
    }
    if owner.is_none() {
        c.execute(
            "INSERT INTO actors (actor, device, first_seen) VALUES ($1, $2, $3)",
            &[&change.actor, &signer.to_string(), &now],
        )
        .await?;
    }
    Ok(Relay::Verified)
}
