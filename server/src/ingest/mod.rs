//! The one push pipeline, outside HTTP and outside any database: given a decoded push, who pushes
//! it and the facts a storage read about it, decide what to store, what is already stored, and
//! which records are refused and why — or that the whole push is refused.
//!
//! Every push goes through here: the sync endpoint's, the dashboard's conflict resolutions, and
//! the in-memory peer loop of the tests. A storage implements [`crate::storage::ChangeLog::push`]
//! in these steps, all inside one write transaction that no other push interleaves with (so the
//! facts cannot change between reading them and writing the plan):
//!
//! 1. [`admit`] (no facts: may the pusher write, is the push its own, is every record in its
//!    scope) — cheap, so a storage may call it before it opens the transaction;
//! 2. [`wanted`] lists what to read; the storage reads it into [`Facts`];
//! 3. [`keys`] decodes the key fields of new records whose kind exists once per key and lists
//!    the records they refer to; the storage adds those records' places to
//!    [`Facts::places`];
//! 4. [`plan`] checks every record against the facts and returns a [`Plan`], or a
//!    [`PushRefused`];
//! 5. the storage writes the plan (actors, then each accepted record's new changes in order,
//!    then the record's row) and commits.
//!
//! The SQLite storage runs these steps on its single writer thread; a PostgreSQL storage does the
//! same under a lock that serialises pushes (for example a transaction-level advisory lock),
//! reading the facts with `… = ANY($1)` queries.

pub mod decode;
pub mod relay;
pub mod review;
pub mod singleton;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use fieldsync_protocol::{
    FieldValue, RecordHeader,
    auth::{Role, WireScope},
    template::Template,
    wire::RejectedRecord,
};
use uuid::Uuid;

use crate::storage::{CheckedChange, CheckedPush, Identity};

/// Who pushes: the authenticated device, its person's name and role (for messages), and what it
/// may write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pusher {
    /// The device whose token the push came with.
    pub device: Uuid,
    /// Its person's name.
    pub name: String,
    /// Its person's role.
    pub role: Role,
    /// What it may see and write.
    pub scope: WireScope,
}

impl Pusher {
    /// The pusher behind an authenticated request.
    pub fn of(identity: &Identity) -> Self {
        Pusher {
            device: identity.device,
            name: identity.person.name.clone(),
            role: identity.person.role,
            scope: identity.scope.clone(),
        }
    }

    /// An administrator's device, which may write everything: for tools and tests that hold a
    /// storage directly, without a token.
    pub fn admin(device: Uuid) -> Self {
        Pusher {
            device,
            name: "administrator".into(),
            role: Role::Admin,
            scope: WireScope::everything(true),
        }
    }
}

/// Why a whole push is refused (nothing of it is stored): what betrays a hostile or mistaken
/// device. Answered as 403 with the code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PushRefused {
    /// Stable snake_case code.
    pub code: &'static str,
    /// What is wrong, Chinese first where a person reads it.
    pub message: String,
    /// What to do about it.
    pub hint: Option<&'static str>,
}

/// Why one record of a push is refused while the rest is stored (the code is
/// [`RejectedRecord::code`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Stable snake_case code.
    pub code: &'static str,
    /// What is wrong, Chinese first.
    pub message: String,
}

impl Refusal {
    /// The wire form for record `id`.
    pub fn for_record(self, id: &Uuid) -> RejectedRecord {
        RejectedRecord {
            id: id.to_string(),
            code: self.code.to_string(),
            message: self.message,
        }
    }
}

/// Refuses a pusher that may only read, but for the department's viewers: they may write
/// review decisions where the campaign's template lets them, which [`plan`] checks record by
/// record ([`review::reader_push`]).
pub fn may_write(pusher: &Pusher) -> Result<(), PushRefused> {
    if pusher.scope.write || review::reader_may_review(pusher.role) {
        return Ok(());
    }
    Err(read_only(pusher))
}

/// The refusal of a push by someone who may only read.
pub(crate) fn read_only(pusher: &Pusher) -> PushRefused {
    PushRefused {
        code: "read_only",
        message: format!(
            "{}（{}）只能查看，不能上传 / {} is a {} and may read but not write",
            pusher.name,
            pusher.role.zh(),
            pusher.name,
            pusher.role
        ),
        hint: None,
    }
}

/// The checks that need no stored facts: the pusher may write, the push names the pusher's own
/// device, and every record is one the pusher may write. [`plan`] runs them too.
pub fn admit(pusher: &Pusher, push: &CheckedPush) -> Result<(), PushRefused> {
    may_write(pusher)?;
    if push.device != pusher.device {
        return Err(PushRefused {
            code: "device_mismatch",
            message: format!(
                "the request says it comes from device {}, but its token belongs to device {}",
                push.device, pusher.device
            ),
            hint: None,
        });
    }
    // A reader writes nothing but review decisions: checked against the templates in [`plan`].
    if !pusher.scope.write {
        return Ok(());
    }
    let outside: Vec<String> = push
        .records
        .iter()
        .filter(|r| {
            !pusher.scope.writes(
                &r.header.campaign.to_string(),
                &r.header.scope,
                &r.header.kind,
            )
        })
        .map(|r| format!("{} {} in {}", r.header.kind, r.header.id, r.header.scope))
        .collect();
    if outside.is_empty() {
        return Ok(());
    }
    let shown: Vec<&str> = outside.iter().take(5).map(String::as_str).collect();
    Err(PushRefused {
        code: "out_of_scope",
        message: format!(
            "这次上传包含不属于本工作组的记录，全部未保存 / {} record(s) in this push are outside \
             what {} may write, so nothing of it was stored: {}{}",
            outside.len(),
            pusher.name,
            shown.join(", "),
            if outside.len() > shown.len() {
                ", …"
            } else {
                ""
            }
        ),
        hint: Some(
            "records of villages not assigned to your work group, and campaign-wide records, \
             cannot be uploaded from this device; sync again to learn your current scope",
        ),
    })
}

/// What a storage must read before [`plan`] can decide (each list without repeats).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    /// The records of the push: their stored headers ([`Facts::headers`]).
    pub records: Vec<Uuid>,
    /// The push's own actors and the actors of its changes: their owners ([`Facts::owners`]).
    pub actors: Vec<Vec<u8>>,
    /// The devices that relay tags name: their tag keys ([`Facts::keys`]).
    pub signers: Vec<Uuid>,
    /// The hashes of the push's changes: which are stored ([`Facts::known`]).
    pub hashes: Vec<[u8; 32]>,
    /// (record, actor, sequence number) of every change: the stored change's hash there
    /// ([`Facts::sequences`]).
    pub sequences: Vec<(Uuid, Vec<u8>, u64)>,
    /// The campaigns of the push's records: their newest templates ([`Facts::templates`]).
    pub campaigns: Vec<Uuid>,
}

/// What a storage read for a push, inside the transaction that will write its plan.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Whether an administrator's recovery window is open (see
    /// [`crate::storage::ChangeLog::declare_restored`]).
    pub recovering: bool,
    /// The stored header of each wanted record the storage holds.
    pub headers: HashMap<Uuid, RecordHeader>,
    /// The device owning each wanted actor the storage knows.
    pub owners: HashMap<Vec<u8>, Uuid>,
    /// The tag key of each wanted signer that is enrolled.
    pub keys: HashMap<Uuid, [u8; 32]>,
    /// The wanted hashes that are stored.
    pub known: HashSet<[u8; 32]>,
    /// The hash stored at each wanted (record, actor, sequence number) that is taken.
    pub sequences: HashMap<(Uuid, Vec<u8>, u64), [u8; 32]>,
    /// The newest template of each wanted campaign that has one.
    pub templates: HashMap<Uuid, Arc<Template>>,
    /// The place (scope) of each record of [`Keys::references`] the storage holds, by
    /// (campaign, id as written).
    pub places: HashMap<(Uuid, String), String>,
}

/// Lists what to read for `push`.
pub fn wanted(push: &CheckedPush) -> Wanted {
    let mut w = Wanted::default();
    let mut records = HashSet::new();
    let mut actors = HashSet::new();
    let mut signers = HashSet::new();
    let mut hashes = HashSet::new();
    let mut sequences = HashSet::new();
    let mut campaigns = HashSet::new();
    for actor in &push.actors {
        if actors.insert(actor.clone()) {
            w.actors.push(actor.clone());
        }
    }
    for rec in &push.records {
        let id = rec.header.id;
        if records.insert(id) {
            w.records.push(id);
        }
        if campaigns.insert(rec.header.campaign) {
            w.campaigns.push(rec.header.campaign);
        }
        for c in &rec.changes {
            if hashes.insert(c.hash) {
                w.hashes.push(c.hash);
            }
            let at = (id, c.actor.clone(), c.seq);
            if sequences.insert(at.clone()) {
                w.sequences.push(at);
            }
            if !c.genesis && actors.insert(c.actor.clone()) {
                w.actors.push(c.actor.clone());
            }
            if let Some(signer) = c
                .tag
                .as_ref()
                .and_then(|t| fieldsync_protocol::auth::tag_device(t))
                && signers.insert(signer)
            {
                w.signers.push(signer);
            }
        }
    }
    w
}

/// The key fields of the push's new records whose kind exists once per key, decoded once, and
/// the records those keys refer to.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    /// Per index of a record in the push: the fields its changes set.
    fields: HashMap<usize, BTreeMap<String, FieldValue>>,
    /// The (campaign, id as written) of every record a key refers to: the storage puts the
    /// places of those it holds into [`Facts::places`].
    pub references: Vec<(Uuid, String)>,
}

/// Decodes the key fields of the push's records that are new to the storage and exist once per
/// key (step 3).
pub fn keys(push: &CheckedPush, facts: &Facts) -> Keys {
    let mut keys = Keys::default();
    let mut seen = HashSet::new();
    for (i, rec) in push.records.iter().enumerate() {
        if facts.headers.contains_key(&rec.header.id) {
            continue;
        }
        let Some(template) = facts.templates.get(&rec.header.campaign) else {
            continue;
        };
        let bytes: Vec<&[u8]> = rec.changes.iter().map(|c| c.bytes.as_slice()).collect();
        let Some(fields) = singleton::key_fields(template, &rec.header, &bytes) else {
            continue;
        };
        for target in singleton::key_references(template, &rec.header, &fields) {
            let r = (rec.header.campaign, target);
            if seen.insert(r.clone()) {
                keys.references.push(r);
            }
        }
        keys.fields.insert(i, fields);
    }
    keys
}

/// What to store of a push: the storage writes exactly this, in order.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The pushing device.
    pub device: Uuid,
    /// Actors to register, each to its device (the push's own new actors, then the authors that
    /// relay tags proved).
    pub actors: Vec<(Vec<u8>, Uuid)>,
    /// The records with changes to store, in push order, each with only its new changes (at
    /// least one).
    pub records: Vec<Accepted>,
    /// Changes stored for the first time (the sum over `records`).
    pub stored: u64,
    /// Changes already stored (or repeated within the push).
    pub duplicates: u64,
    /// Relayed changes accepted without their author's tag in the recovery window.
    pub unverified_relays: u64,
    /// The records refused while the rest is stored.
    pub rejected: Vec<RejectedRecord>,
}

/// One record of a [`Plan`].
#[derive(Debug, Clone)]
pub struct Accepted {
    /// Its header (the storage creates the record with it when it is new).
    pub header: RecordHeader,
    /// Whether the storage holds no record with this id yet (nor did an earlier record of the
    /// plan create it).
    pub new: bool,
    /// The changes to append to the log, in order.
    pub changes: Vec<CheckedChange>,
}

/// What the plan has decided so far, on top of the stored facts: later records of a push see
/// what earlier ones stored, as they would in the storage's transaction.
struct State<'f> {
    facts: &'f Facts,
    headers: HashMap<Uuid, RecordHeader>,
    owners: HashMap<Vec<u8>, Uuid>,
    known: HashSet<[u8; 32]>,
    sequences: HashMap<(Uuid, Vec<u8>, u64), [u8; 32]>,
}

impl State<'_> {
    fn header(&self, id: &Uuid) -> Option<&RecordHeader> {
        self.headers.get(id).or_else(|| self.facts.headers.get(id))
    }

    fn owner(&self, actor: &[u8]) -> Option<Uuid> {
        self.owners
            .get(actor)
            .or_else(|| self.facts.owners.get(actor))
            .copied()
    }

    fn known(&self, hash: &[u8; 32]) -> bool {
        self.known.contains(hash) || self.facts.known.contains(hash)
    }

    fn at(&self, at: &(Uuid, Vec<u8>, u64)) -> Option<[u8; 32]> {
        self.sequences
            .get(at)
            .or_else(|| self.facts.sequences.get(at))
            .copied()
    }

    fn place_of(&self, campaign: Uuid, target: &str) -> Option<String> {
        let planned = self
            .headers
            .values()
            .find(|h| h.campaign == campaign && h.id.to_string() == target);
        match planned {
            Some(h) => Some(h.scope.clone()),
            None => self
                .facts
                .places
                .get(&(campaign, target.to_string()))
                .cloned(),
        }
    }
}

/// Checks a push against the facts (step 4): the whole push refused, or what to store.
///
/// Refuses the whole push when [`admit`] does, when one of its own actors belongs to another
/// device (`forged_actor`), or when a relay tag is forged ([`relay::check`]). Refuses a record
/// alone when its header contradicts the stored one (`header_mismatch`), when a new record that
/// exists once per key breaks [`singleton::check_new`] (`singleton_*`, `unknown_reference`), when
/// one of its changes reuses an actor's sequence number (`duplicate_sequence_number`), or when
/// it relays another device's change without its tag (`unverified_relay`), or when a pusher who
/// may not review writes a review decision ([`review::check`], `review_not_allowed`).
pub fn plan(
    pusher: &Pusher,
    push: CheckedPush,
    facts: &Facts,
    keys: &Keys,
) -> Result<Plan, PushRefused> {
    admit(pusher, &push)?;
    if !pusher.scope.write {
        review::reader_push(pusher, &push, facts)?;
    }
    let device = push.device;
    let mut state = State {
        facts,
        headers: HashMap::new(),
        owners: HashMap::new(),
        known: HashSet::new(),
        sequences: HashMap::new(),
    };
    let mut out = Plan {
        device,
        ..Plan::default()
    };
    for actor in &push.actors {
        match state.owner(actor) {
            Some(o) if o != device => {
                return Err(PushRefused {
                    code: "forged_actor",
                    message: format!(
                        "actor {} belongs to another device; a device may only claim the actor \
                         ids it writes with",
                        hex::encode(actor)
                    ),
                    hint: None,
                });
            }
            Some(_) => {}
            None => {
                state.owners.insert(actor.clone(), device);
                out.actors.push((actor.clone(), device));
            }
        }
    }
    let own: HashSet<Vec<u8>> = push.actors.iter().cloned().collect();
    for (index, rec) in push.records.into_iter().enumerate() {
        let id = rec.header.id;
        let refusal = match state.header(&id) {
            Some(stored) => (*stored != rec.header).then(|| Refusal {
                code: "header_mismatch",
                message: format!(
                    "服务器上的同一记录属于其他类型或村（社区） / record {id} is stored as {} of \
                     campaign {} in {}; the push says {} of campaign {} in {}",
                    stored.kind,
                    stored.campaign,
                    stored.scope,
                    rec.header.kind,
                    rec.header.campaign,
                    rec.header.scope
                ),
            }),
            None => match (
                facts.templates.get(&rec.header.campaign),
                keys.fields.get(&index),
            ) {
                (Some(template), Some(fields)) => {
                    singleton::check_new(template, &rec.header, fields, |target| {
                        state.place_of(rec.header.campaign, target)
                    })
                    .err()
                }
                _ => None,
            },
        };
        let refusal = refusal
            .or_else(|| reused_sequence_number(&state, &id, &rec.changes))
            .or_else(|| review::check(pusher, &rec.changes, &own));
        // Changes of other devices new to the server: relays, checked by their tags.
        let mut unverified_here = 0;
        let mut register = Vec::new();
        let mut refusal = refusal;
        if refusal.is_none() {
            for change in &rec.changes {
                if change.genesis || own.contains(&change.actor) || state.known(&change.hash) {
                    continue;
                }
                let owner = state.owner(&change.actor);
                let verdict = relay::check(
                    device,
                    &id.to_string(),
                    change,
                    owner,
                    |d| facts.keys.get(&d).copied(),
                    facts.recovering,
                )?;
                match verdict {
                    relay::Relay::Verified { register: None } => {}
                    relay::Relay::Verified {
                        register: Some(signer),
                    } => {
                        // Registered now, as the storage would while checking the next change.
                        state.owners.insert(change.actor.clone(), signer);
                        register.push((change.actor.clone(), signer));
                    }
                    relay::Relay::Unverified => unverified_here += 1,
                    relay::Relay::Untagged(r) => {
                        refusal = Some(r);
                        break;
                    }
                }
            }
        }
        // Actors proved by a tag are registered even when a later change refuses the record.
        out.actors.extend(register);
        if let Some(refusal) = refusal {
            tracing::warn!(record = %id, code = refusal.code, "record refused");
            out.rejected.push(refusal.for_record(&id));
            continue;
        }
        out.unverified_relays += unverified_here;
        let mut changes = Vec::new();
        for change in rec.changes {
            let at = (id, change.actor.clone(), change.seq);
            // A change already stored, repeated within the push, or at a (record, actor,
            // sequence number) an earlier change of this push took, is not stored again.
            if state.known(&change.hash) || state.sequences.contains_key(&at) {
                out.duplicates += 1;
                continue;
            }
            state.known.insert(change.hash);
            state.sequences.insert(at, change.hash);
            changes.push(change);
        }
        if changes.is_empty() {
            continue;
        }
        out.stored += changes.len() as u64;
        let new = state.header(&id).is_none();
        state.headers.insert(id, rec.header.clone());
        out.records.push(Accepted {
            header: rec.header,
            new,
            changes,
        });
    }
    Ok(out)
}

/// A change of the record whose actor already wrote a different change with the same sequence
/// number (an actor id reused, as by a device restored from a backup that kept its actor).
fn reused_sequence_number(
    state: &State<'_>,
    id: &Uuid,
    changes: &[CheckedChange],
) -> Option<Refusal> {
    changes.iter().find_map(|change| {
        let have = state.at(&(*id, change.actor.clone(), change.seq))?;
        (have != change.hash).then(|| Refusal {
            code: "duplicate_sequence_number",
            message: format!(
                "同一作者的修改序号重复 / record {id} already has a different change by actor {} \
                 with sequence number {}; an actor id was reused (a device restored from a backup \
                 must write with a new actor id)",
                hex::encode(&change.actor),
                change.seq
            ),
        })
    })
}

#[cfg(test)]
mod tests;
