//! The SQL function `fieldsync_facts(fields)`: a record's short values
//! ([`crate::storage::facts`]) as SQLite stores them in `records.facts`, which the index
//! `records_tally` holds. The merge writes them with [`facts`]; the migration that added the
//! column filled it through the same rule, registered on every connection by [`register`].

use rusqlite::{Connection, functions::FunctionFlags};

#[cfg(test)]
use crate::storage::facts::MAX_CHARS;

/// The facts of a projection's fields as SQLite stores them (`None` when they are not a JSON
/// object).
pub(super) fn facts(fields: &serde_json::Value) -> Option<String> {
    crate::storage::facts::facts(fields).map(|f| f.to_string())
}

/// Makes [`facts`] callable in SQL on `conn` as `fieldsync_facts(fields_json_text)`.
pub(super) fn register(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        "fieldsync_facts",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let text: Option<String> = ctx.get(0)?;
            Ok(text
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|f| facts(&f)))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_keep_every_value_but_long_texts_in_rust_and_in_sql() {
        let fields = serde_json::json!({
            "rating": "good",
            "stars": 4,
            "share": 0.5,
            "violation": true,
            "member": null,
            "ratings": {"m1": "satisfied", "m2": "unsatisfied"},
            "tags": ["a", "b"],
            "name": "一".repeat(MAX_CHARS),
            "notes": "二".repeat(MAX_CHARS + 1),
        });
        let mut expected = fields.as_object().unwrap().clone();
        expected.remove("notes");
        let expected = serde_json::Value::Object(expected).to_string();
        assert_eq!(facts(&fields).as_deref(), Some(expected.as_str()));
        let conn = Connection::open_in_memory().unwrap();
        register(&conn).unwrap();
        let (sql, none): (String, Option<String>) = conn
            .query_row(
                "SELECT fieldsync_facts(?1), fieldsync_facts('[1]')",
                [fields.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(sql, expected);
        assert_eq!(none, None);
    }
}
