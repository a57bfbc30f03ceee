//! The search-index policy: which words of a merged record the full-text index holds (every
//! text field and short values people would search for; not references, choice values, internal
//! fields, templates or deleted records).

use fieldsync_protocol::{FieldValue, Projection, template::TEMPLATE_KIND};
use uuid::Uuid;

/// The text to index for a merged record, or `None` when it must not be in the index at all
/// (deleted records and templates).
pub fn search_text(kind: &str, p: &Projection) -> Option<String> {
    if p.deleted || kind == TEMPLATE_KIND {
        return None;
    }
    let text: Vec<&str> = p
        .fields
        .iter()
        .filter(|(k, _)| !k.starts_with('_'))
        .filter_map(|(_, v)| match v {
            FieldValue::Text(s) => Some(s.as_str()),
            FieldValue::Str(s) if searchable(s) => Some(s.as_str()),
            _ => None,
        })
        .collect();
    Some(text.join("\n"))
}

/// Whether a short value is words people would search for, rather than a reference (record ids)
/// or a choice's stored value (`villager_rep`, `party_member,villager_rep`), which only clutter
/// snippets.
pub fn searchable(s: &str) -> bool {
    let machine = s.split(',').all(|part| {
        let part = part.trim();
        Uuid::parse_str(part).is_ok()
            || (!part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
    });
    !machine
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_and_choice_values_are_not_indexed_for_search() {
        for machine in [
            "villager_rep",
            "party_member,villager_rep",
            "0190f5c2-0000-7000-8000-000000000001",
            "0190f5c2-0000-7000-8000-000000000001,0190f5c2-0000-7000-8000-000000000002",
            "good",
        ] {
            assert!(!super::searchable(machine), "{machine}");
        }
        for words in [
            "集体经济",
            "王建国",
            "2023-05-10",
            "Zhang San",
            "村集体 income",
        ] {
            assert!(super::searchable(words), "{words}");
        }
    }
}
