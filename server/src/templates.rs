//! Template loading on the server: a campaign's template versions are records of kind
//! `template` whose `source` field holds the TOML (`docs/TEMPLATES.md`). The one place that turns
//! such records into parsed [`Template`]s, for merging (review, singleton keys) and for queries.

use std::sync::Arc;

use fieldsync_protocol::template::Template;

/// The template a merged template record holds (its projection's fields as JSON), if its
/// source parses.
pub fn from_fields(fields: &serde_json::Value) -> Option<Template> {
    Template::parse(fields.get("source")?.as_str()?).ok()
}

/// The template in a stored projection (JSON text), if any.
pub fn from_fields_json(fields: &str) -> Option<Template> {
    from_fields(&serde_json::from_str(fields).ok()?)
}

/// Every version among these stored projections that parses, oldest first.
pub fn versions<'a>(fields: impl IntoIterator<Item = &'a str>) -> Vec<Arc<Template>> {
    let mut out: Vec<Arc<Template>> = fields
        .into_iter()
        .filter_map(from_fields_json)
        .map(Arc::new)
        .collect();
    out.sort_by_key(|t| t.version);
    out
}
