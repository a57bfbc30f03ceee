//! Ordered, append-only SQLite migrations, recorded in the database they changed.
//!
//! Each migration is applied once, in order, in one transaction with the row that records it. At
//! start-up every recorded migration's SQL must still equal the code's: editing a migration that
//! has shipped is refused instead of silently leaving databases that differ.

use rusqlite::{Connection, OptionalExtension, params};

/// One schema step: a name for people and the SQL that performs it.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// A short name, such as `initial schema`.
    pub name: &'static str,
    /// The statements to run.
    pub sql: &'static str,
}

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// A recorded migration's SQL differs from the code's.
    #[error(
        "migration {index} ({name}) was changed after it was applied; migrations are append-only: \
         restore its original text and add a new migration instead"
    )]
    Changed {
        /// Its position (1-based).
        index: usize,
        /// Its name.
        name: String,
    },
    /// The database was written by a newer version of fieldsync.
    #[error(
        "the database has {found} migrations but this program knows only {known}: it was written \
         by a newer fieldsync; upgrade this program"
    )]
    Newer {
        /// Migrations recorded in the database.
        found: usize,
        /// Migrations known to this program.
        known: usize,
    },
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// Applies the migrations `conn` has not seen yet, in order.
pub fn migrate(conn: &mut Connection, migrations: &[Migration]) -> Result<usize, MigrateError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            sql TEXT NOT NULL,
            applied_at INTEGER NOT NULL
        )",
    )?;
    let found: usize = conn.query_row("SELECT count(*) FROM schema_migrations", [], |r| {
        r.get::<_, i64>(0)
    })? as usize;
    if found > migrations.len() {
        return Err(MigrateError::Newer {
            found,
            known: migrations.len(),
        });
    }
    let mut applied = 0;
    for (i, m) in migrations.iter().enumerate() {
        let index = i + 1;
        let recorded: Option<String> = conn
            .query_row(
                "SELECT sql FROM schema_migrations WHERE id = ?1",
                [index as i64],
                |r| r.get(0),
            )
            .optional()?;
        match recorded {
            Some(sql) if sql == m.sql => {}
            Some(_) => {
                return Err(MigrateError::Changed {
                    index,
                    name: m.name.into(),
                });
            }
            None => {
                let tx = conn.transaction()?;
                tx.execute_batch(m.sql)?;
                tx.execute(
                    "INSERT INTO schema_migrations (id, name, sql, applied_at)
                     VALUES (?1, ?2, ?3, strftime('%s','now'))",
                    params![index as i64, m.name, m.sql],
                )?;
                tx.commit()?;
                applied += 1;
            }
        }
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &[Migration] = &[Migration {
        name: "one",
        sql: "CREATE TABLE t (a INTEGER);",
    }];

    #[test]
    fn applies_once_in_order_and_refuses_edits_and_newer_databases() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut conn, V1).unwrap(), 1);
        assert_eq!(migrate(&mut conn, V1).unwrap(), 0);
        let v2 = [
            V1[0],
            Migration {
                name: "two",
                sql: "ALTER TABLE t ADD COLUMN b TEXT;",
            },
        ];
        assert_eq!(migrate(&mut conn, &v2).unwrap(), 1);
        conn.execute("INSERT INTO t (a, b) VALUES (1, 'x')", [])
            .unwrap();

        let edited = [
            Migration {
                name: "one",
                sql: "CREATE TABLE t (a TEXT);",
            },
            v2[1],
        ];
        let err = migrate(&mut conn, &edited).unwrap_err();
        assert!(
            matches!(err, MigrateError::Changed { index: 1, .. }),
            "{err}"
        );
        let err = migrate(&mut conn, V1).unwrap_err();
        assert!(
            matches!(err, MigrateError::Newer { found: 2, known: 1 }),
            "{err}"
        );
    }

    #[test]
    fn a_failing_migration_leaves_nothing_behind() {
        let mut conn = Connection::open_in_memory().unwrap();
        let bad = [Migration {
            name: "bad",
            sql: "CREATE TABLE u (a INTEGER); THIS IS NOT SQL;",
        }];
        assert!(migrate(&mut conn, &bad).is_err());
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'u'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0);
    }
}
