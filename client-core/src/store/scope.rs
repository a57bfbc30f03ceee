//! The device's account in the store: credentials, the scope the server last sent and applying
//! a new one (never dropping what is not uploaded), changes held outside it, own change tags, and
//! the wipe of a revoked device.

use fieldsync_protocol::auth::WireScope;
use rusqlite::OptionalExtension;

use super::{Result, Store, schema::identity, set_meta};

/// What applying a new scope did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScopeChange {
    /// Records removed because this device may no longer see them.
    pub removed: u64,
    /// Records outside the scope kept because they hold changes not uploaded yet.
    pub kept_unsynced: u64,
    /// The scope now covers something it did not: pull from the start to fetch it.
    pub grew: bool,
}

impl Store {
    // ----- accounts ---------------------------------------------------------------------------

    /// The server address and device token this store was enrolled with.
    pub fn credentials(&self) -> Result<Option<(String, String)>> {
        Ok(
            match (self.meta("server_url")?, self.meta("device_token")?) {
                (Some(url), Some(token)) => Some((url, token)),
                _ => None,
            },
        )
    }

    /// Remembers the server and the device token (after enrollment).
    pub fn set_credentials(&mut self, server: &str, token: &str) -> Result<()> {
        let tx = self.conn.transaction()?;
        set_meta(&tx, "server_url", server)?;
        set_meta(&tx, "device_token", token)?;
        tx.commit()?;
        Ok(())
    }

    /// What the server last said this device may see and write (`None` before the first sync
    /// with an account).
    pub fn scope(&self) -> Result<Option<WireScope>> {
        Ok(self
            .meta("scope")?
            .and_then(|s| serde_json::from_str(&s).ok()))
    }

    /// Changes waiting to upload that this device may not upload now (their village is no
    /// longer assigned to it). They are kept; export them as a bundle for someone who may.
    pub fn held_changes(&self) -> Result<u64> {
        let Some(scope) = self.scope()? else {
            return Ok(0);
        };
        let mut stmt = self.conn.prepare(
            "SELECT r.campaign, r.scope, r.kind, count(*)
             FROM changes c JOIN records r ON r.id = c.record_id
             WHERE c.acked = 0 GROUP BY r.campaign, r.scope, r.kind",
        )?;
        let mut held = 0u64;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        for row in rows {
            let (campaign, place, kind, n) = row?;
            if !scope.writes(&campaign, &place, &kind) {
                held += n as u64;
            }
        }
        Ok(held)
    }

    /// Applies the scope the server sent: records this device may no longer see are removed,
    /// except those holding changes not yet uploaded (nothing unsynced is ever dropped).
    pub fn apply_scope(&mut self, scope: &WireScope) -> Result<ScopeChange> {
        let old = self.scope()?;
        if old.as_ref() == Some(scope) {
            return Ok(ScopeChange::default());
        }
        let grew = match &old {
            None => false,
            Some(old) => {
                if old.all {
                    false
                } else if scope.all {
                    true
                } else {
                    scope.campaign != old.campaign
                        || scope.places.iter().any(|p| !old.places.contains(p))
                }
            }
        };
        let tx = self.conn.transaction()?;
        let mut change = ScopeChange {
            grew,
            ..Default::default()
        };
        if !scope.all {
            let candidates: Vec<(String, String, String, i64)> = {
                let mut stmt = tx.prepare(
                    "SELECT r.id, r.campaign, r.scope,
                            (SELECT count(*) FROM changes c WHERE c.record_id = r.id AND c.acked = 0)
                     FROM records r",
                )?;
                let rows =
                    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let mut dropped_pushed = 0i64;
            for (id, campaign, place, unsynced) in candidates {
                if scope.sees(&campaign, &place) {
                    continue;
                }
                if unsynced > 0 {
                    change.kept_unsynced += 1;
                    continue;
                }
                dropped_pushed += tx.query_row(
                    "SELECT count(*) FROM changes WHERE record_id = ?1 AND pushed = 1",
                    [&id],
                    |r| r.get::<_, i64>(0),
                )?;
                tx.execute("DELETE FROM changes WHERE record_id = ?1", [&id])?;
                tx.execute("DELETE FROM records WHERE id = ?1", [&id])?;
                change.removed += 1;
            }
            if dropped_pushed > 0 {
                let before: i64 = tx
                    .query_row(
                        "SELECT value FROM meta WHERE key = 'pushed_dropped'",
                        [],
                        |r| r.get::<_, String>(0),
                    )
                    .optional()?
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                set_meta(
                    &tx,
                    "pushed_dropped",
                    &(before + dropped_pushed).to_string(),
                )?;
            }
        }
        set_meta(
            &tx,
            "scope",
            &serde_json::to_string(scope).expect("a scope serializes"),
        )?;
        tx.commit()?;
        if change.removed > 0 || change.kept_unsynced > 0 {
            tracing::info!(
                removed = change.removed,
                kept = change.kept_unsynced,
                "scope changed: records outside it removed"
            );
        }
        Ok(change)
    }

    /// Erases everything: records, changes, attached files, credentials, settings. The store
    /// becomes a new device (new device id, new actor). Used when the server says this device
    /// was revoked, and when the user asks.
    pub fn wipe(&mut self) -> Result<()> {
        let tx = self.conn.transaction()?;
        for table in ["changes", "records", "attachments", "actors", "meta"] {
            tx.execute(&format!("DELETE FROM {table}"), [])?;
        }
        let (device, actor) = identity(&tx)?;
        tx.commit()?;
        self.parsed_templates.borrow_mut().clear();
        // Free the pages, so the erased data does not linger in the file, then move the
        // rewritten pages into the file and empty the write-ahead log, which still held the
        // erased pages (a handle reading meanwhile can delay this to its next checkpoint).
        let _ = self.conn.execute_batch("VACUUM");
        let _ = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            });
        self.device = device;
        self.actor = actor;
        Ok(())
    }

    /// The tag of one of this device's own changes, if the store is enrolled.
    pub(crate) fn own_tag(&self, actor: &[u8], hash: &[u8]) -> Result<Option<Vec<u8>>> {
        let Some((_, token)) = self.credentials()? else {
            return Ok(None);
        };
        let Ok(hash) = <[u8; 32]>::try_from(hash) else {
            return Ok(None);
        };
        let key = fieldsync_protocol::auth::mac_key(&token);
        Ok(Some(
            fieldsync_protocol::auth::change_tag(self.device, &key, actor, &hash).to_vec(),
        ))
    }
}
