//! A push in PostgreSQL: in one transaction that first takes the log's advisory lock
//! (`log::LOG_LOCK`, so no other push on any server interleaves and sequence numbers become
//! visible in commit order), read the facts [`crate::ingest`] asks for (one query per kind of
//! fact, by arrays), let it plan, and write the plan.

use std::collections::HashMap;

use deadpool_postgres::Transaction;
use fieldsync_protocol::RecordHeader;
use uuid::Uuid;

use super::{
    CheckedPush, PushOutcome, Pusher, StorageError, log::LOG_LOCK, now_ms,
    templates::TemplateCache, versions,
};
use crate::ingest::{self, Facts, Plan, Wanted};

/// Checks and stores one push atomically: all of it or, on error, nothing.
pub(super) async fn push(
    client: &mut deadpool_postgres::Client,
    templates: &TemplateCache,
    pusher: &Pusher,
    push: CheckedPush,
) -> Result<PushOutcome, StorageError> {
    ingest::admit(pusher, &push).map_err(StorageError::Refused)?;
    let now = now_ms();
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOG_LOCK])
        .await?;
    let mut facts = read_facts(&tx, templates, &ingest::wanted(&push), now).await?;
    let keys = ingest::keys(&push, &facts);
    read_places(&tx, &keys.references, &mut facts).await?;
    let plan = ingest::plan(pusher, push, &facts, &keys).map_err(StorageError::Refused)?;
    let outcome = write_plan(&tx, plan, now).await?;
    tx.commit().await?;
    Ok(outcome)
}

async fn read_facts(
    tx: &Transaction<'_>,
    templates: &TemplateCache,
    wanted: &Wanted,
    now: i64,
) -> Result<Facts, StorageError> {
    let mut facts = Facts {
        recovering: tx
            .query_opt(
                "SELECT value FROM server_meta WHERE key = 'recovery_until'",
                &[],
            )
            .await?
            .and_then(|r| r.get::<_, String>(0).parse::<i64>().ok())
            .is_some_and(|until| until > now),
        ..Facts::default()
    };
    let ids: Vec<String> = wanted.records.iter().map(Uuid::to_string).collect();
    for r in tx
        .query(
            "SELECT id, kind, campaign, scope FROM records WHERE id = ANY($1)",
            &[&ids],
        )
        .await?
    {
        let id: &str = r.get(0);
        let header = RecordHeader::parse(id, r.get(1), r.get(2), r.get(3))
            .map_err(|e| StorageError::Other(format!("stored record {id}: {e}")))?;
        facts.headers.insert(header.id, header);
    }
    for r in tx
        .query(
            "SELECT actor, device FROM actors WHERE actor = ANY($1)",
            &[&wanted.actors],
        )
        .await?
    {
        if let Ok(owner) = Uuid::parse_str(r.get(1)) {
            facts.owners.insert(r.get(0), owner);
        }
    }
    let signers: Vec<String> = wanted.signers.iter().map(Uuid::to_string).collect();
    for r in tx
        .query(
            "SELECT id, mac_key FROM devices WHERE id = ANY($1) AND mac_key IS NOT NULL",
            &[&signers],
        )
        .await?
    {
        if let (Ok(id), Ok(key)) = (
            Uuid::parse_str(r.get(0)),
            <[u8; 32]>::try_from(r.get::<_, &[u8]>(1)),
        ) {
            facts.keys.insert(id, key);
        }
    }
    let hashes: Vec<&[u8]> = wanted.hashes.iter().map(|h| h.as_slice()).collect();
    for r in tx
        .query("SELECT hash FROM changes WHERE hash = ANY($1)", &[&hashes])
        .await?
    {
        if let Ok(h) = <[u8; 32]>::try_from(r.get::<_, &[u8]>(0)) {
            facts.known.insert(h);
        }
    }
    if !wanted.sequences.is_empty() {
        let records: Vec<String> = wanted.sequences.iter().map(|s| s.0.to_string()).collect();
        let actors: Vec<&[u8]> = wanted.sequences.iter().map(|s| s.1.as_slice()).collect();
        let seqs: Vec<i64> = wanted.sequences.iter().map(|s| s.2 as i64).collect();
        for r in tx
            .query(
                "SELECT c.record_id, c.actor, c.actor_seq, c.hash
                 FROM unnest($1::text[], $2::bytea[], $3::bigint[]) AS w (record_id, actor, seq)
                 JOIN changes c ON c.record_id = w.record_id AND c.actor = w.actor
                               AND c.actor_seq = w.seq",
                &[&records, &actors, &seqs],
            )
            .await?
        {
            if let (Ok(record), Ok(h)) = (
                Uuid::parse_str(r.get(0)),
                <[u8; 32]>::try_from(r.get::<_, &[u8]>(3)),
            ) {
                facts
                    .sequences
                    .insert((record, r.get(1), r.get::<_, i64>(2) as u64), h);
            }
        }
    }
    for campaign in &wanted.campaigns {
        if let Some(t) = templates
            .for_campaign(tx, &campaign.to_string())
            .await?
            .last()
        {
            facts.templates.insert(*campaign, t.clone());
        }
    }
    Ok(facts)
}

async fn read_places(
    tx: &Transaction<'_>,
    references: &[(Uuid, String)],
    facts: &mut Facts,
) -> Result<(), StorageError> {
    if references.is_empty() {
        return Ok(());
    }
    let campaigns: Vec<String> = references.iter().map(|r| r.0.to_string()).collect();
    let targets: Vec<&str> = references.iter().map(|r| r.1.as_str()).collect();
    let found: HashMap<(String, String), String> = tx
        .query(
            "SELECT w.campaign, w.id, r.scope
             FROM unnest($1::text[], $2::text[]) AS w (campaign, id)
             JOIN records r ON r.id = w.id AND r.campaign = w.campaign",
            &[&campaigns, &targets],
        )
        .await?
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect();
    for (campaign, target) in references {
        if let Some(place) = found.get(&(campaign.to_string(), target.clone())) {
            facts
                .places
                .insert((*campaign, target.clone()), place.clone());
        }
    }
    Ok(())
}

async fn write_plan(
    tx: &Transaction<'_>,
    plan: Plan,
    now: i64,
) -> Result<PushOutcome, StorageError> {
    let device = plan.device.to_string();
    tx.execute(
        "INSERT INTO devices (id, first_seen, last_push) VALUES ($1, $2, $2)
         ON CONFLICT (id) DO UPDATE SET last_push = $2",
        &[&device, &now],
    )
    .await?;
    for (actor, owner) in &plan.actors {
        tx.execute(
            "INSERT INTO actors (actor, device, first_seen) VALUES ($1, $2, $3)",
            &[actor, &owner.to_string(), &now],
        )
        .await?;
    }
    // Every change of the push with one statement, in the plan's order, then every record's
    // row with one more: two round trips per push, not two per record.
    let mut record_ids: Vec<String> = Vec::new();
    // The (campaign, place) of every record row written.
    let mut written: Vec<(String, String)> = Vec::new();
    let (mut hashes, mut actors, mut seqs, mut bytes) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut change_campaigns, mut change_scopes) = (Vec::new(), Vec::new());
    for rec in &plan.records {
        let id = rec.header.id.to_string();
        let campaign = rec.header.campaign.to_string();
        for c in &rec.changes {
            record_ids.push(id.clone());
            hashes.push(c.hash.as_slice());
            actors.push(c.actor.as_slice());
            seqs.push(c.seq as i64);
            bytes.push(c.bytes.as_slice());
            change_campaigns.push(campaign.clone());
            change_scopes.push(rec.header.scope.as_str());
        }
    }
    if !record_ids.is_empty() {
        let inserted = tx
            .query(
                "INSERT INTO changes
                   (seq, hash, record_id, actor, actor_seq, pushed_by, received_at, bytes,
                    campaign, scope)
                 SELECT nextval('changes_seq'), w.hash, w.record_id, w.actor, w.actor_seq, $1,
                        $2, w.bytes, w.campaign, w.scope
                 FROM unnest($3::text[], $4::bytea[], $5::bytea[], $6::bigint[], $7::bytea[],
                             $8::text[], $9::text[])
                      WITH ORDINALITY AS w (record_id, hash, actor, actor_seq, bytes, campaign,
                                            scope, n)
                 ORDER BY w.n
                 RETURNING record_id, seq",
                &[
                    &device,
                    &now,
                    &record_ids,
                    &hashes,
                    &actors,
                    &seqs,
                    &bytes,
                    &change_campaigns,
                    &change_scopes,
                ],
            )
            .await?;
        // The newest sequence number of each record (a record listed twice gets one row).
        let mut last: HashMap<&str, i64> = HashMap::new();
        for r in &inserted {
            let seq: i64 = r.get(1);
            let e = last.entry(r.get(0)).or_insert(seq);
            *e = (*e).max(seq);
        }
        let (mut ids, mut kinds, mut campaigns, mut scopes, mut lasts) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for rec in &plan.records {
            let id = rec.header.id.to_string();
            if let Some(seq) = last.remove(id.as_str()) {
                ids.push(id);
                kinds.push(rec.header.kind.as_str());
                campaigns.push(rec.header.campaign.to_string());
                scopes.push(rec.header.scope.as_str());
                lasts.push(seq);
                written.push((rec.header.campaign.to_string(), rec.header.scope.clone()));
            }
        }
        tx.execute(
            "INSERT INTO records (id, kind, campaign, scope, first_seq, last_seq, dirty)
             SELECT w.id, w.kind, w.campaign, w.scope, w.seq, w.seq, true
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[])
                  AS w (id, kind, campaign, scope, seq)
             ON CONFLICT (id) DO UPDATE SET last_seq = excluded.last_seq, dirty = true",
            &[&ids, &kinds, &campaigns, &scopes, &lasts],
        )
        .await?;
    }
    tx.execute(
        "UPDATE devices SET pushed = pushed + $2 WHERE id = $1",
        &[&device, &(plan.stored as i64)],
    )
    .await?;
    // Last: the places whose records this push added to or marked (their tallies move); a
    // push of duplicates only moves none.
    versions::touch(
        tx,
        written
            .iter()
            .map(|(c, scope)| (c.as_str(), scope.as_str())),
    )
    .await?;
    let head: i64 = tx
        .query_one("SELECT coalesce(max(seq), 0) FROM changes", &[])
        .await?
        .get(0);
    Ok(PushOutcome {
        stored: plan.stored,
        duplicates: plan.duplicates,
        head: head as u64,
        unverified_relays: plan.unverified_relays,
        rejected: plan.rejected,
    })
}
