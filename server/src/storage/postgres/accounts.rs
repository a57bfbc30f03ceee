//! People, enrollment codes, device tokens, scopes and the audit log in PostgreSQL: the same
//! rules as the SQLite storage's `storage::accounts`, as async functions on a connection or a
//! transaction of the pool.

use deadpool_postgres::GenericClient;
use fieldsync_protocol::auth::{Role, WireScope};
use tokio_postgres::Row;
use uuid::Uuid;

use super::{
    AuditEntry, AuditFilter, CredentialProblem, DeviceView, Identity, NewEnrollment, Person,
    PersonUpdate, StorageError, TokenCheck,
};

fn uuid_col(s: Option<String>) -> Option<Uuid> {
    s.and_then(|s| Uuid::parse_str(&s).ok())
}

fn person_row(r: &Row, at: usize) -> Person {
    let id: String = r.get(at);
    let role: String = r.get(at + 2);
    Person {
        id: Uuid::parse_str(&id).unwrap_or_default(),
        name: r.get(at + 1),
        role: Role::parse(&role).unwrap_or(Role::Viewer),
        group: uuid_col(r.get(at + 3)),
        disabled: r.get(at + 4),
        created_at: r.get(at + 5),
    }
}

const PERSON_COLUMNS: &str = "p.id, p.name, p.role, p.work_group, p.disabled, p.created_at";

/// One person.
pub(super) async fn person<C: GenericClient>(
    c: &C,
    id: Uuid,
) -> Result<Option<Person>, StorageError> {
    Ok(c.query_opt(
        &format!("SELECT {PERSON_COLUMNS} FROM people p WHERE p.id = $1"),
        &[&id.to_string()],
    )
    .await?
    .map(|r| person_row(&r, 0)))
}

/// Every person, oldest first.
pub(super) async fn people<C: GenericClient>(c: &C) -> Result<Vec<Person>, StorageError> {
    Ok(c.query(
        &format!("SELECT {PERSON_COLUMNS} FROM people p ORDER BY p.created_at, p.id"),
        &[],
    )
    .await?
    .iter()
    .map(|r| person_row(r, 0))
    .collect())
}

async fn check_group<C: GenericClient>(
    c: &C,
    role: Role,
    group: Option<Uuid>,
) -> Result<(), StorageError> {
    if let Some(g) = group {
        let kind: Option<String> = c
            .query_opt("SELECT kind FROM records WHERE id = $1", &[&g.to_string()])
            .await?
            .map(|r| r.get(0));
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
pub(super) async fn create_person<C: GenericClient>(
    c: &C,
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
    check_group(c, role, group).await?;
    let id = Uuid::now_v7();
    c.execute(
        "INSERT INTO people (id, name, role, work_group, created_at) VALUES ($1, $2, $3, $4, $5)",
        &[
            &id.to_string(),
            &name,
            &role.as_str(),
            &group.map(|g| g.to_string()),
            &now,
        ],
    )
    .await?;
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
pub(super) async fn update_person<C: GenericClient>(
    c: &C,
    id: Uuid,
    update: &PersonUpdate,
) -> Result<Person, StorageError> {
    let mut p = person(c, id)
        .await?
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
    check_group(c, p.role, p.group).await?;
    c.execute(
        "UPDATE people SET name = $2, role = $3, work_group = $4, disabled = $5 WHERE id = $1",
        &[
            &id.to_string(),
            &p.name,
            &p.role.as_str(),
            &p.group.map(|g| g.to_string()),
            &p.disabled,
        ],
    )
    .await?;
    Ok(p)
}

/// Stores a code's hash.
pub(super) async fn issue_code<C: GenericClient>(
    c: &C,
    person_id: Uuid,
    code_hash: &[u8; 32],
    expires_at: i64,
    now: i64,
) -> Result<(), StorageError> {
    let p = person(c, person_id)
        .await?
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
    c.execute(
        "INSERT INTO enrollment_codes (hash, person, created_at, expires_at)
         VALUES ($1, $2, $3, $4)",
        &[
            &code_hash.as_slice(),
            &person_id.to_string(),
            &now,
            &expires_at,
        ],
    )
    .await?;
    Ok(())
}

/// Uses up a code and registers the device, in one transaction: the code's row is locked
/// (`FOR UPDATE`), so two servers given the same code at once enroll one device.
pub(super) async fn enroll(
    client: &mut deadpool_postgres::Client,
    e: &NewEnrollment,
    now: i64,
) -> Result<Person, StorageError> {
    let tx = client.transaction().await?;
    let code = tx
        .query_opt(
            "SELECT person, expires_at, used_at FROM enrollment_codes WHERE hash = $1 FOR UPDATE",
            &[&e.code_hash.as_slice()],
        )
        .await?;
    let Some(code) = code else {
        return Err(StorageError::Credential {
            problem: CredentialProblem::Unknown,
            code: "invalid_code",
            message: "登记码不正确 / this enrollment code is not valid; check it, or ask the \
                      administrator for a new one"
                .into(),
        });
    };
    let (person_id, expires_at, used_at): (String, i64, Option<i64>) =
        (code.get(0), code.get(1), code.get(2));
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
    let person = person(&tx, Uuid::parse_str(&person_id).unwrap_or_default())
        .await?
        .ok_or_else(|| StorageError::Other(format!("code names missing person {person_id}")))?;
    if person.disabled {
        return Err(StorageError::Forbidden {
            code: "person_disabled",
            message: format!("{} is disabled and cannot enroll devices", person.name),
        });
    }
    let existing = tx
        .query_opt(
            "SELECT token_hash, revoked_at FROM devices WHERE id = $1 FOR UPDATE",
            &[&e.device.to_string()],
        )
        .await?
        .map(|r| (r.get::<_, Option<Vec<u8>>>(0), r.get::<_, Option<i64>>(1)));
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
        "UPDATE enrollment_codes SET used_at = $2, used_by = $3 WHERE hash = $1",
        &[&e.code_hash.as_slice(), &now, &e.device.to_string()],
    )
    .await?;
    tx.execute(
        "INSERT INTO devices (id, first_seen, person, name, token_hash, mac_key, enrolled_at)
         VALUES ($1, $2, $3, $4, $5, $6, $2)
         ON CONFLICT (id) DO UPDATE SET person = $3, name = $4, token_hash = $5, mac_key = $6,
             enrolled_at = $2",
        &[
            &e.device.to_string(),
            &now,
            &person.id.to_string(),
            &e.name,
            &e.token_hash.as_slice(),
            &e.mac_key.as_slice(),
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(person)
}

/// What a person may see now (the rule is `crate::scope`; their work group is read here).
pub(super) async fn scope_of<C: GenericClient>(
    c: &C,
    person: &Person,
) -> Result<WireScope, StorageError> {
    let group = match person.group {
        Some(g) if crate::scope::needs_group(person.role) => g,
        _ => return Ok(crate::scope::of(person.role, None)),
    };
    let row = c
        .query_opt(
            "SELECT campaign, fields::text FROM records
             WHERE id = $1 AND kind = 'work_group' AND NOT deleted",
            &[&group.to_string()],
        )
        .await?;
    let Some(row) = row else {
        return Ok(crate::scope::of(person.role, None));
    };
    let villages = crate::scope::village_ids(row.get::<_, Option<&str>>(1));
    let places = c
        .query(
            "SELECT scope FROM records WHERE id = ANY($1) AND kind = 'place'",
            &[&villages],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(crate::scope::of(
        person.role,
        Some(crate::scope::GroupPlaces {
            campaign: row.get(0),
            places,
        }),
    ))
}

/// Who a token hash belongs to.
pub(super) async fn authenticate<C: GenericClient>(
    c: &C,
    token_hash: &[u8; 32],
) -> Result<TokenCheck, StorageError> {
    let row = c
        .query_opt(
            &format!(
                "SELECT d.id, d.revoked_at, {PERSON_COLUMNS}
                 FROM devices d JOIN people p ON p.id = d.person WHERE d.token_hash = $1"
            ),
            &[&token_hash.as_slice()],
        )
        .await?;
    let Some(row) = row else {
        return Ok(TokenCheck::Unknown);
    };
    let device = Uuid::parse_str(&row.get::<_, String>(0)).unwrap_or_default();
    let revoked: Option<i64> = row.get(1);
    let person = person_row(&row, 2);
    if revoked.is_some() {
        return Ok(TokenCheck::Revoked(device));
    }
    if person.disabled {
        return Ok(TokenCheck::Disabled(device));
    }
    let scope = scope_of(c, &person).await?;
    Ok(TokenCheck::Valid(Box::new(Identity {
        device,
        person,
        scope,
    })))
}

/// Every device, enrolled first.
pub(super) async fn devices<C: GenericClient>(c: &C) -> Result<Vec<DeviceView>, StorageError> {
    let rows = c
        .query(
            "SELECT d.id, d.name, d.person, p.name, p.role, d.enrolled_at, d.last_push,
                    d.last_pull, d.pushed, d.revoked_at
             FROM devices d LEFT JOIN people p ON p.id = d.person
             ORDER BY d.enrolled_at IS NULL, d.enrolled_at, d.first_seen",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let role: Option<String> = r.get(4);
            DeviceView {
                id: Uuid::parse_str(&r.get::<_, String>(0)).unwrap_or_default(),
                name: r.get(1),
                person: uuid_col(r.get(2)),
                person_name: r.get(3),
                role: role.as_deref().and_then(Role::parse),
                enrolled_at: r.get(5),
                last_push: r.get(6),
                last_pull: r.get(7),
                pushed: r.get::<_, i64>(8) as u64,
                revoked_at: r.get(9),
            }
        })
        .collect())
}

/// Revokes a device; returns whether it exists.
pub(super) async fn revoke<C: GenericClient>(
    c: &C,
    device: Uuid,
    now: i64,
) -> Result<bool, StorageError> {
    let n = c
        .execute(
            "UPDATE devices SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1",
            &[&device.to_string(), &now],
        )
        .await?;
    Ok(n == 1)
}

/// Appends one audit line; returns its id.
pub(super) async fn audit<C: GenericClient>(
    c: &C,
    e: &AuditEntry,
    now: i64,
) -> Result<i64, StorageError> {
    let row = c
        .query_one(
            "INSERT INTO audit (at, device, person, action, outcome, detail)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            &[
                &if e.at == 0 { now } else { e.at },
                &e.device.map(|d| d.to_string()),
                &e.person.map(|p| p.to_string()),
                &e.action,
                &e.outcome,
                &e.detail,
            ],
        )
        .await?;
    Ok(row.get(0))
}

/// Records that the event of audit line `id` happened `times` times in all.
pub(super) async fn audit_repeated<C: GenericClient>(
    c: &C,
    id: i64,
    times: u64,
) -> Result<(), StorageError> {
    c.execute(
        "UPDATE audit SET detail = jsonb_set(detail, '{times}', to_jsonb($2::bigint))
         WHERE id = $1",
        &[&id, &(times as i64)],
    )
    .await?;
    Ok(())
}

/// Reads audit lines, newest first.
pub(super) async fn audit_log<C: GenericClient>(
    c: &C,
    f: &AuditFilter,
) -> Result<Vec<(i64, AuditEntry)>, StorageError> {
    let rows = c
        .query(
            "SELECT id, at, device, person, action, outcome, detail FROM audit
             WHERE ($1::text IS NULL OR action = $1) AND ($2::text IS NULL OR device = $2)
               AND ($3::bigint IS NULL OR id < $3)
             ORDER BY id DESC LIMIT $4",
            &[
                &f.action,
                &f.device.map(|d| d.to_string()),
                &f.before,
                &i64::from(f.limit.unwrap_or(200).min(5000)),
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get::<_, i64>(0),
                AuditEntry {
                    at: r.get(1),
                    device: uuid_col(r.get(2)),
                    person: uuid_col(r.get(3)),
                    action: r.get(4),
                    outcome: r.get(5),
                    detail: r.get(6),
                },
            )
        })
        .collect())
}

/// The device and person name behind actors (hex).
pub(super) async fn actor_owners<C: GenericClient>(
    c: &C,
    actors: &[String],
) -> Result<std::collections::HashMap<String, (Uuid, Option<String>)>, StorageError> {
    let bytes: Vec<Vec<u8>> = actors.iter().filter_map(|a| hex::decode(a).ok()).collect();
    let rows = c
        .query(
            "SELECT a.actor, a.device, p.name FROM actors a
             LEFT JOIN devices d ON d.id = a.device LEFT JOIN people p ON p.id = d.person
             WHERE a.actor = ANY($1)",
            &[&bytes],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                hex::encode(r.get::<_, Vec<u8>>(0)),
                (
                    Uuid::parse_str(&r.get::<_, String>(1)).unwrap_or_default(),
                    r.get::<_, Option<String>>(2),
                ),
            )
        })
        .collect())
}
