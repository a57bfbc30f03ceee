//! People, enrollment codes, device tokens, scopes and the audit log in SQLite: plain functions
//! on a connection, called on the writer thread (writes) or a read connection (reads).

use fieldsync_protocol::auth::{Role, WireScope};
use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use crate::storage::{
    AuditEntry, AuditFilter, CredentialProblem, DeviceView, Identity, NewEnrollment, Person,
    PersonUpdate, StorageError, TokenCheck,
};

/// The schema these functions use (appended to the storage's migrations).
pub(super) const MIGRATION_SQL: &str = "
CREATE TABLE people (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    work_group TEXT,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
) STRICT;
CREATE TABLE enrollment_codes (
    hash BLOB PRIMARY KEY,
    person TEXT NOT NULL REFERENCES people (id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER,
    used_by TEXT
) STRICT;
ALTER TABLE devices ADD COLUMN person TEXT;
ALTER TABLE devices ADD COLUMN name TEXT;
ALTER TABLE devices ADD COLUMN token_hash BLOB;
ALTER TABLE devices ADD COLUMN mac_key BLOB;
ALTER TABLE devices ADD COLUMN enrolled_at INTEGER;
ALTER TABLE devices ADD COLUMN revoked_at INTEGER;
CREATE UNIQUE INDEX devices_by_token ON devices (token_hash) WHERE token_hash IS NOT NULL;
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    device TEXT,
    person TEXT,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL
) STRICT;
CREATE INDEX audit_by_action ON audit (action, id);
CREATE INDEX audit_by_device ON audit (device, id);
";

fn uuid_col(s: Option<String>) -> Option<Uuid> {
    s.and_then(|s| Uuid::parse_str(&s).ok())
}

fn person_row(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Person> {
    let id: String = r.get(at)?;
    let role: String = r.get(at + 2)?;
    Ok(Person {
        id: Uuid::parse_str(&id).unwrap_or_default(),
        name: r.get(at + 1)?,
        role: Role::parse(&role).unwrap_or(Role::Viewer),
        group: uuid_col(r.get(at + 3)?),
        disabled: r.get(at + 4)?,
        created_at: r.get(at + 5)?,
    })
}

const PERSON_COLUMNS: &str = "p.id, p.name, p.role, p.work_group, p.disabled, p.created_at";

/// One person.
pub(super) fn person(conn: &Connection, id: Uuid) -> Result<Option<Person>, StorageError> {
    Ok(conn
        .query_row(
            &format!("SELECT {PERSON_COLUMNS} FROM people p WHERE p.id = ?1"),
            [id.to_string()],
            |r| person_row(r, 0),
        )
        .optional()?)
}

/// Every person, oldest first.
pub(super) fn people(conn: &Connection) -> Result<Vec<Person>, StorageError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {PERSON_COLUMNS} FROM people p ORDER BY p.created_at, p.id"
    ))?;
    let rows = stmt.query_map([], |r| person_row(r, 0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn check_group(conn: &Connection, role: Role, group: Option<Uuid>) -> Result<(), StorageError> {
    if let Some(g) = group {
        let kind: Option<String> = conn
            .query_row(
                "SELECT kind FROM records WHERE id = ?1",
                [g.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        if kind.as_deref() != Some("work_group") {
            return Err(StorageError::NotFound(format!(
                "no work group {g} on this server (a group is a work_group record; sync it first)"
            )));
        }
    }
    if !role.is_field() && group.is_some() {
        return Err(StorageError::Conflict {
            code: "group_not_allowed",
            message: format!(
                "a {} sees every village and has no work group; only leaders and workers do",
                role
            ),
        });
    }
    Ok(())
}

/// Adds a person.
pub(super) fn create_person(
    conn: &Connection,
    name: &str,
    role: Role,
    group: Option<Uuid>,
    now: i64,
) -> Result<Person, StorageError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(StorageError::Conflict {
            code: "invalid_person",
            message: "a person needs a name".into(),
        });
    }
    check_group(conn, role, group)?;
    let id = Uuid::now_v7();
    conn.execute(
        "INSERT INTO people (id, name, role, work_group, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            id.to_string(),
            name,
            role.as_str(),
            group.map(|g| g.to_string()),
            now
        ],
    )?;
    Ok(Person {
        id,
        name: name.to_string(),
        role,
        group,
        disabled: false,
        created_at: now,
    })
}

/// Changes a person.
pub(super) fn update_person(
    conn: &Connection,
    id: Uuid,
    update: &PersonUpdate,
) -> Result<Person, StorageError> {
    let mut p = person(conn, id)?
        .ok_or_else(|| StorageError::NotFound(format!("no person {id} on this server")))?;
    if let Some(n) = &update.name {
        if n.trim().is_empty() {
            return Err(StorageError::Conflict {
                code: "invalid_person",
                message: "a person needs a name".into(),
            });
        }
        p.name = n.trim().to_string();
    }
    if let Some(r) = update.role {
        p.role = r;
        if !r.is_field() {
            p.group = None;
        }
    }
    if let Some(g) = update.group {
        p.group = g;
    }
    if let Some(d) = update.disabled {
        p.disabled = d;
    }
    check_group(conn, p.role, p.group)?;
    conn.execute(
        "UPDATE people SET name = ?2, role = ?3, work_group = ?4, disabled = ?5 WHERE id = ?1",
        params![
            id.to_string(),
            p.name,
            p.role.as_str(),
            p.group.map(|g| g.to_string()),
            p.disabled
        ],
    )?;
    Ok(p)
}

/// Stores a code's hash.
pub(super) fn issue_code(
    conn: &Connection,
    person_id: Uuid,
    code_hash: &[u8; 32],
    expires_at: i64,
    now: i64,
) -> Result<(), StorageError> {
    let p = person(conn, person_id)?
        .ok_or_else(|| StorageError::NotFound(format!("no person {person_id} on this server")))?;
    if p.disabled {
        return Err(StorageError::Conflict {
            code: "person_disabled",
            message: format!(
                "{} is disabled; enable them before enrolling a device",
                p.name
            ),
        });
    }
    conn.execute(
        "INSERT INTO enrollment_codes (hash, person, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
        params![code_hash.as_slice(), person_id.to_string(), now, expires_at],
    )?;
    Ok(())
}

/// Uses up a code and registers the device, in one transaction.
pub(super) fn enroll(
    conn: &mut Connection,
    e: &NewEnrollment,
    now: i64,
) -> Result<Person, StorageError> {
    let tx = conn.transaction()?;
    let code: Option<(String, i64, Option<i64>)> = tx
        .query_row(
            "SELECT person, expires_at, used_at FROM enrollment_codes WHERE hash = ?1",
            [e.code_hash.as_slice()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let (person_id, expires_at, used_at) = code.ok_or(StorageError::Credential {
        problem: CredentialProblem::Unknown,
        code: "invalid_code",
        message: "登记码不正确 / this enrollment code is not valid; check it, or ask the \
                  administrator for a new one"
            .into(),
    })?;
    if used_at.is_some() {
        return Err(StorageError::Credential {
            problem: CredentialProblem::Used,
            code: "code_used",
            message: "登记码已使用过 / this enrollment code has already been used; each code \
                      enrolls one device: ask the administrator for a new one"
                .into(),
        });
    }
    if expires_at <= now {
        return Err(StorageError::Credential {
            problem: CredentialProblem::Expired,
            code: "code_expired",
            message: "登记码已过期 / this enrollment code has expired; ask the administrator \
                      for a new one"
                .into(),
        });
    }
    let person = person(&tx, Uuid::parse_str(&person_id).unwrap_or_default())?
        .ok_or_else(|| StorageError::Other(format!("code names missing person {person_id}")))?;
    if person.disabled {
        return Err(StorageError::Forbidden {
            code: "person_disabled",
            message: format!("{} is disabled and cannot enroll devices", person.name),
        });
    }
    let existing: Option<(Option<Vec<u8>>, Option<i64>)> = tx
        .query_row(
            "SELECT token_hash, revoked_at FROM devices WHERE id = ?1",
            [e.device.to_string()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    match existing {
        Some((_, Some(_))) => {
            return Err(StorageError::Forbidden {
                code: "device_revoked",
                message: format!(
                    "device {} was revoked; a revoked device cannot be enrolled again: wipe its \
                     store (a new store gets a new device id) and enroll that",
                    e.device
                ),
            });
        }
        Some((Some(_), None)) => {
            return Err(StorageError::Credential {
                problem: CredentialProblem::Used,
                code: "device_taken",
                message: format!(
                    "device {} is already enrolled; a device keeps its token. To hand it to \
                     someone else, revoke it and enroll a fresh store",
                    e.device
                ),
            });
        }
        _ => {}
    }
    tx.execute(
        "UPDATE enrollment_codes SET used_at = ?2, used_by = ?3 WHERE hash = ?1",
        params![e.code_hash.as_slice(), now, e.device.to_string()],
    )?;
    tx.execute(
        "INSERT INTO devices (id, first_seen, person, name, token_hash, mac_key, enrolled_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?2)
         ON CONFLICT (id) DO UPDATE SET person = ?3, name = ?4, token_hash = ?5, mac_key = ?6,
             enrolled_at = ?2",
        params![
            e.device.to_string(),
            now,
            person.id.to_string(),
            e.name,
            e.token_hash.as_slice(),
            e.mac_key.as_slice()
        ],
    )?;
    tx.commit()?;
    Ok(person)
}

/// What a person may see now: [`crate::scope::of`] over their work group as stored.
pub(super) fn scope_of(conn: &Connection, person: &Person) -> Result<WireScope, StorageError> {
    if !crate::scope::needs_group(person.role) {
        return Ok(crate::scope::of(person.role, None));
    }
    let Some(group) = person.group else {
        return Ok(crate::scope::of(person.role, None));
    };
    let row: Option<(String, Option<String>)> = conn
        .query_row(
            "SELECT campaign, fields FROM records
             WHERE id = ?1 AND kind = 'work_group' AND deleted = 0",
            [group.to_string()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((campaign, fields)) = row else {
        return Ok(crate::scope::of(person.role, None));
    };
    let mut places = Vec::new();
    let mut stmt =
        conn.prepare_cached("SELECT scope FROM records WHERE id = ?1 AND kind = 'place'")?;
    for id in crate::scope::village_ids(fields.as_deref()) {
        if let Some(code) = stmt.query_row([id], |r| r.get::<_, String>(0)).optional()? {
            places.push(code);
        }
    }
    Ok(crate::scope::of(
        person.role,
        Some(crate::scope::GroupPlaces { campaign, places }),
    ))
}

/// Who a token hash belongs to.
pub(super) fn authenticate(
    conn: &Connection,
    token_hash: &[u8; 32],
) -> Result<TokenCheck, StorageError> {
    let row: Option<(String, Option<i64>, Person)> = conn
        .query_row(
            &format!(
                "SELECT d.id, d.revoked_at, {PERSON_COLUMNS}
                 FROM devices d JOIN people p ON p.id = d.person WHERE d.token_hash = ?1"
            ),
            [token_hash.as_slice()],
            |r| Ok((r.get(0)?, r.get(1)?, person_row(r, 2)?)),
        )
        .optional()?;
    let Some((device, revoked, person)) = row else {
        return Ok(TokenCheck::Unknown);
    };
    let device = Uuid::parse_str(&device).unwrap_or_default();
    if revoked.is_some() {
        return Ok(TokenCheck::Revoked(device));
    }
    if person.disabled {
        return Ok(TokenCheck::Disabled(device));
    }
    let scope = scope_of(conn, &person)?;
    Ok(TokenCheck::Valid(Box::new(Identity {
        device,
        person,
        scope,
    })))
}

/// Every device, enrolled first.
pub(super) fn devices(conn: &Connection) -> Result<Vec<DeviceView>, StorageError> {
    let mut stmt = conn.prepare(
        "SELECT d.id, d.name, d.person, p.name, p.role, d.enrolled_at, d.last_push, d.last_pull,
                d.pushed, d.revoked_at
         FROM devices d LEFT JOIN people p ON p.id = d.person
         ORDER BY d.enrolled_at IS NULL, d.enrolled_at, d.first_seen",
    )?;
    let rows = stmt.query_map([], |r| {
        let role: Option<String> = r.get(4)?;
        Ok(DeviceView {
            id: Uuid::parse_str(&r.get::<_, String>(0)?).unwrap_or_default(),
            name: r.get(1)?,
            person: uuid_col(r.get(2)?),
            person_name: r.get(3)?,
            role: role.as_deref().and_then(Role::parse),
            enrolled_at: r.get(5)?,
            last_push: r.get(6)?,
            last_pull: r.get(7)?,
            pushed: r.get::<_, i64>(8)? as u64,
            revoked_at: r.get(9)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Revokes a device; returns whether it exists.
pub(super) fn revoke(conn: &Connection, device: Uuid, now: i64) -> Result<bool, StorageError> {
    let n = conn.execute(
        "UPDATE devices SET revoked_at = coalesce(revoked_at, ?2) WHERE id = ?1",
        params![device.to_string(), now],
    )?;
    Ok(n == 1)
}

/// Appends one audit line.
pub(super) fn audit(conn: &Connection, e: &AuditEntry, now: i64) -> Result<i64, StorageError> {
    conn.prepare_cached(
        "INSERT INTO audit (at, device, person, action, outcome, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        if e.at == 0 { now } else { e.at },
        e.device.map(|d| d.to_string()),
        e.person.map(|p| p.to_string()),
        e.action,
        e.outcome,
        e.detail.to_string()
    ])?;
    Ok(conn.last_insert_rowid())
}

/// Records that the event of audit line `id` happened `times` times in all.
pub(super) fn audit_repeated(conn: &Connection, id: i64, times: u64) -> Result<(), StorageError> {
    conn.prepare_cached("UPDATE audit SET detail = json_set(detail, '$.times', ?2) WHERE id = ?1")?
        .execute(params![id, times as i64])?;
    Ok(())
}

/// Reads audit lines, newest first.
pub(super) fn audit_log(
    conn: &Connection,
    f: &AuditFilter,
) -> Result<Vec<(i64, AuditEntry)>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, at, device, person, action, outcome, detail FROM audit
         WHERE (?1 IS NULL OR action = ?1) AND (?2 IS NULL OR device = ?2)
           AND (?3 IS NULL OR id < ?3)
         ORDER BY id DESC LIMIT ?4",
    )?;
    let rows = stmt.query_map(
        params![
            f.action,
            f.device.map(|d| d.to_string()),
            f.before,
            f.limit.unwrap_or(200).min(5000)
        ],
        |r| {
            let detail: String = r.get(6)?;
            Ok((
                r.get::<_, i64>(0)?,
                AuditEntry {
                    at: r.get(1)?,
                    device: uuid_col(r.get(2)?),
                    person: uuid_col(r.get(3)?),
                    action: r.get(4)?,
                    outcome: r.get(5)?,
                    detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
                },
            ))
        },
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The device and person name behind actors (hex).
pub(super) fn actor_owners(
    conn: &Connection,
    actors: &[String],
) -> Result<std::collections::HashMap<String, (Uuid, Option<String>)>, StorageError> {
    let mut out = std::collections::HashMap::new();
    let mut stmt = conn.prepare_cached(
        "SELECT a.device, p.name FROM actors a
         LEFT JOIN devices d ON d.id = a.device LEFT JOIN people p ON p.id = d.person
         WHERE a.actor = ?1",
    )?;
    for hex_actor in actors {
        let Ok(bytes) = hex::decode(hex_actor) else {
            continue;
        };
        if let Some((device, name)) = stmt
            .query_row([bytes], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
            })
            .optional()?
        {
            out.insert(
                hex_actor.clone(),
                (Uuid::parse_str(&device).unwrap_or_default(), name),
            );
        }
    }
    Ok(out)
}
