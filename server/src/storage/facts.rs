//! A record's short values (its `facts`): every field of its projection but a text over
//! [`MAX_CHARS`] characters. Both storages keep them beside the whole projection, so that the
//! tallies and a village's dossier group and count by choices, ids, numbers, dates and maps of
//! choices without reading the notes (SQLite from the index `records_tally`; PostgreSQL from an
//! inline `jsonb` column, where reading `fields` would fetch and decompress each row's notes).

/// The longest text kept among the facts; longer ones (notes, minutes, summaries) are read from
/// `fields` where a query needs them.
pub const MAX_CHARS: usize = 64;

/// The facts of a projection's fields (`None` when they are not a JSON object).
pub fn facts(fields: &serde_json::Value) -> Option<serde_json::Value> {
    let serde_json::Value::Object(fields) = fields else {
        return None;
    };
    let short: serde_json::Map<String, serde_json::Value> = fields
        .iter()
        .filter(
            |(_, v)| !matches!(v, serde_json::Value::String(s) if s.chars().count() > MAX_CHARS),
        )
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Some(serde_json::Value::Object(short))
}
