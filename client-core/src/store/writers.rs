//! Who wrote a change, by one rule for a record's history and its conflicts: this device (any
//! actor this store has opened with), a person the server named for the actor (kept in `meta`
//! as `writer:<actor hex>`, learned after a sync: `account::learn_writers`), or another device
//! known only by its actor.

use std::collections::{HashMap, HashSet};

use super::{Result, Store, set_meta};

/// The `meta` key prefix of a writer's name.
const WRITER_PREFIX: &str = "writer:";

/// Who wrote a change or a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Writer {
    /// This device (in this or an earlier session).
    ThisDevice,
    /// Another device whose person the server named.
    Named(String),
    /// Another device nobody named to this one: the first characters of its actor id.
    Unknown(String),
}

/// A snapshot of what the store knows about writers, for telling many actors apart at once.
#[derive(Debug, Clone, Default)]
pub struct Writers {
    mine: HashSet<String>,
    names: HashMap<String, String>,
}

impl Writers {
    /// Who wrote with `actor` (hex).
    pub fn of(&self, actor: &str) -> Writer {
        if self.mine.contains(actor) {
            Writer::ThisDevice
        } else if let Some(name) = self.names.get(actor) {
            Writer::Named(name.clone())
        } else {
            Writer::Unknown(actor.chars().take(4).collect())
        }
    }

    /// Whether `actor` (hex) is another device's that nobody has named yet.
    pub fn is_unnamed_other(&self, actor: &str) -> bool {
        !self.mine.contains(actor) && !self.names.contains_key(actor)
    }
}

impl Store {
    /// What the store knows about who wrote what: its own actors and the names learned.
    pub fn writers(&self) -> Result<Writers> {
        let mine = self.actors()?.iter().map(|a| a.to_hex_string()).collect();
        let mut stmt = self
            .conn
            .prepare("SELECT key, value FROM meta WHERE key >= ?1 AND key < ?2")?;
        let rows = stmt.query_map(["writer:", "writer;"], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut names = HashMap::new();
        for row in rows {
            let (key, name) = row?;
            if let Some(actor) = key.strip_prefix(WRITER_PREFIX) {
                names.insert(actor.to_string(), name);
            }
        }
        Ok(Writers { mine, names })
    }

    /// Keeps the names of other writers (actor hex → the person's name), in one transaction.
    /// Names are device data: never synced, erased by `wipe`.
    pub fn remember_writers(&mut self, names: &[(String, String)]) -> Result<()> {
        let tx = self.conn.transaction()?;
        for (actor, name) in names {
            if !actor.is_empty() && !name.trim().is_empty() {
                set_meta(&tx, &format!("{WRITER_PREFIX}{actor}"), name.trim())?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}
