//! A village's digest: what its dossier counts of its records (records per kind, the answers of
//! its forms, the few records its summary reads one by one, the records that carry files),
//! gathered row by row as a storage reads the village's short values, so that a village of
//! tens of thousands of questionnaires is counted without holding a record for each. Each
//! storage selects the rows in SQL, with whether each passes the approval rule
//! ([`Records::village_digest`]); what is counted of a row is decided here, once for both.
//!
//! [`Records::village_digest`]: super::Records::village_digest

use std::{borrow::Cow, collections::BTreeMap, fmt};

use fieldsync_protocol::attachment::{is_sha256_hex, refs_in_json};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use uuid::Uuid;

use super::{Counts, Period, RecordView, StorageError};

/// What to gather of one village.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DigestAsk {
    /// The campaign.
    pub campaign: Uuid,
    /// The village's (or community's) place code.
    pub scope: String,
    /// Only records of these days (reference data whatever its day; see [`Period`]).
    pub period: Period,
    /// The kinds whose counted records come back one by one, in brief
    /// ([`VillageDigest::records`]): the few a summary reads whole (assessments, star ratings,
    /// rectifications).
    pub brief_kinds: Vec<String>,
    /// The `(kind, field)` pairs whose text values are counted over the counted records
    /// ([`VillageDigest::values`]): the questionnaire's questions, the evaluation form's rating.
    pub values: Vec<(String, String)>,
}

/// What a village's dossier counts of its live, visible records of the period. "Counted"
/// records are those that pass the campaign's approval rule (all, unless it counts approved
/// records only), as the tallies count.
#[derive(Debug, Clone, Default)]
pub struct VillageDigest {
    /// Records per kind, approved or not (the dossier lists them all).
    pub kinds: Counts,
    /// The counted records of [`DigestAsk::brief_kinds`], in brief (short values only, as
    /// [`super::RecordFilter::brief`]), in the order the server first received them.
    pub records: Vec<RecordView>,
    /// For each asked `(kind, field)`: how many counted records hold each text value there
    /// (kind → field → value → count; a missing or non-text value is not counted). Every asked
    /// pair is present, with no values when none was found.
    pub values: BTreeMap<String, BTreeMap<String, Counts>>,
    /// The records that refer to an attachment in any field, approved or not, in brief, in the
    /// order the server first received them (the dossier's photo strip).
    pub files: Vec<RecordView>,
}

/// One live record of the village as a storage reads it for [`Gather::add`].
pub(crate) struct DigestRow<'a> {
    pub id: &'a str,
    pub kind: &'a str,
    pub campaign: &'a str,
    pub scope: &'a str,
    /// The record's short values as JSON text (`records.facts`; `None` before its first merge).
    pub facts: Option<&'a str>,
    pub conflicts: u64,
    pub dirty: bool,
    pub problem: Option<String>,
    pub first_seq: i64,
    /// Whether the record counts by the campaign's approval rule (each storage's SQL
    /// `approved`; the period is in the statement's `WHERE`).
    pub counted: bool,
}

/// A digest being gathered: one [`DigestRow`] after another, in `first_seq` order.
pub(crate) struct Gather<'a> {
    ask: &'a DigestAsk,
    digest: VillageDigest,
}

impl<'a> Gather<'a> {
    /// An empty digest for `ask`.
    pub fn new(ask: &'a DigestAsk) -> Self {
        let mut values: BTreeMap<String, BTreeMap<String, Counts>> = BTreeMap::new();
        for (kind, field) in &ask.values {
            values
                .entry(kind.clone())
                .or_default()
                .entry(field.clone())
                .or_default();
        }
        Gather {
            ask,
            digest: VillageDigest {
                values,
                ..Default::default()
            },
        }
    }

    /// Counts one row. Only the rows a summary reads whole, or that may refer to a file (a map
    /// keyed by hashes), are parsed into values; the others are scanned for the asked fields
    /// and dropped. A record not merged yet (no short values) counts as a record of its kind
    /// only. Short values that are not one JSON object are an error, not a row skipped: the
    /// storages write them from the projection, always as an object.
    pub fn add(&mut self, row: DigestRow<'_>) -> Result<(), StorageError> {
        match self.digest.kinds.get_mut(row.kind) {
            Some(n) => *n += 1,
            None => {
                self.digest.kinds.insert(row.kind.to_string(), 1);
            }
        }
        let Some(facts) = row.facts else {
            return Ok(());
        };
        let whole = row.counted && self.ask.brief_kinds.iter().any(|k| k == row.kind);
        let fields = if row.counted {
            self.digest.values.get_mut(row.kind)
        } else {
            None
        };
        let mut scan = Scan {
            fields,
            files: false,
        };
        let mut de = serde_json::Deserializer::from_str(facts);
        (&mut scan)
            .deserialize(&mut de)
            .and_then(|()| de.end())
            .map_err(|e| StorageError::Other(format!("a record's short values: {e}")))?;
        if !whole && !scan.files {
            return Ok(());
        }
        let fields: serde_json::Value = serde_json::from_str(facts)
            .map_err(|e| StorageError::Other(format!("a record's short values: {e}")))?;
        let files = scan.files && !refs_in_json(&fields).is_empty();
        if !whole && !files {
            return Ok(());
        }
        let view = RecordView {
            id: Uuid::parse_str(row.id).unwrap_or_default(),
            kind: row.kind.to_string(),
            campaign: Uuid::parse_str(row.campaign).unwrap_or_default(),
            scope: row.scope.to_string(),
            deleted: false,
            fields,
            conflicts: row.conflicts,
            heads: Vec::new(),
            up_to_date: !row.dirty,
            position: row.first_seq,
            waiting_changes: 0,
            problem: row.problem,
            review: None,
        };
        match (whole, files) {
            (true, true) => {
                self.digest.files.push(view.clone());
                self.digest.records.push(view);
            }
            (true, false) => self.digest.records.push(view),
            (false, _) => self.digest.files.push(view),
        }
        Ok(())
    }

    /// The digest gathered.
    pub fn finish(self) -> VillageDigest {
        self.digest
    }
}

/// One pass over a record's short values (a JSON object): counts the text values of the asked
/// fields into `fields`, and notes whether a value is an object keyed by SHA-256 hashes (a map
/// of attachments). Borrows the text where it has no escapes; allocates only for a value seen
/// first.
struct Scan<'c> {
    fields: Option<&'c mut BTreeMap<String, Counts>>,
    files: bool,
}

impl<'de> DeserializeSeed<'de> for &mut Scan<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for &mut Scan<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a record's fields as a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            match map.next_value::<Value<'de>>()? {
                Value::Text(value) => {
                    if let Some(counts) = self.fields.as_mut().and_then(|f| f.get_mut(&*key)) {
                        match counts.get_mut(&*value) {
                            Some(n) => *n += 1,
                            None => {
                                counts.insert(value.into_owned(), 1);
                            }
                        }
                    }
                }
                Value::Files => self.files = true,
                Value::Other => {}
            }
        }
        Ok(())
    }
}

/// A string, borrowed from the JSON text where it has no escapes.
struct Text<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Text<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

/// A field's value as [`Scan`] needs it: its text, or whether it is an object keyed by
/// SHA-256 hashes (a map of attachments; a map of choices is keyed by ids).
enum Value<'de> {
    Text(Cow<'de, str>),
    Files,
    Other,
}

impl<'de> de::Deserialize<'de> for Value<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Value<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Value<'de>, E> {
                Ok(Value::Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Value<'de>, E> {
                Ok(Value::Text(Cow::Owned(s.to_string())))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value<'de>, A::Error> {
                let mut hashes = false;
                while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
                    hashes |= is_sha256_hex(&key);
                    map.next_value::<IgnoredAny>()?;
                }
                Ok(if hashes { Value::Files } else { Value::Other })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Value::Other)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Value<'de>, E> {
                Ok(Value::Other)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Value<'de>, E> {
                Ok(Value::Other)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Value<'de>, E> {
                Ok(Value::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Value<'de>, E> {
                Ok(Value::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Value<'de>, E> {
                Ok(Value::Other)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row<'a>(id: &'a str, kind: &'a str, facts: &'a str, counted: bool) -> DigestRow<'a> {
        DigestRow {
            id,
            kind,
            campaign: "20230002-0000-0000-0000-0000000007e7",
            scope: "v1",
            facts: Some(facts),
            conflicts: 0,
            dirty: false,
            problem: None,
            first_seq: 1,
            counted,
        }
    }

    #[test]
    fn counts_the_asked_text_values_of_counted_records_only() {
        let ask = DigestAsk {
            brief_kinds: vec!["rectification".into()],
            values: vec![
                ("questionnaire".into(), "q_overall".into()),
                ("questionnaire".into(), "q_unused".into()),
                ("evaluation".into(), "team_rating".into()),
            ],
            ..Default::default()
        };
        let mut g = Gather::new(&ask);
        let id = "01a252ae-3d39-77aa-98ca-5a7f98f5c7aa";
        // Escaped text is counted as the text it stands for.
        for facts in [
            r#"{"q_overall":"satisfied","age":3,"q_team_unity":"united"}"#,
            r#"{"q_overall":"satisfi\u0065d","list":[1,{"a":2}]}"#,
            r#"{"q_overall":"unsatisfied","team_rating":"good"}"#,
            r#"{"q_overall":4}"#,
        ] {
            g.add(row(id, "questionnaire", facts, true)).unwrap();
        }
        // Not counted by the approval rule: counted as a record of its kind only.
        g.add(row(
            id,
            "questionnaire",
            r#"{"q_overall":"satisfied"}"#,
            false,
        ))
        .unwrap();
        g.add(row(id, "rectification", r#"{"status":"done"}"#, true))
            .unwrap();
        g.add(row(id, "rectification", r#"{"status":"planned"}"#, false))
            .unwrap();
        let d = g.finish();
        assert_eq!(d.kinds["questionnaire"], 5);
        assert_eq!(d.kinds["rectification"], 2);
        let q = &d.values["questionnaire"];
        assert_eq!(q["q_overall"]["satisfied"], 2);
        assert_eq!(q["q_overall"]["unsatisfied"], 1);
        assert_eq!(q["q_overall"].len(), 2, "{q:?}");
        assert!(q["q_unused"].is_empty());
        assert!(!q.contains_key("q_team_unity"), "only the asked fields");
        assert!(d.values["evaluation"]["team_rating"].is_empty());
        assert_eq!(d.records.len(), 1);
        assert_eq!(d.records[0].fields["status"], "done");
        assert!(d.files.is_empty(), "a nested list is no file");
    }

    #[test]
    fn a_record_referring_to_a_file_comes_back_approved_or_not() {
        let ask = DigestAsk::default();
        let mut g = Gather::new(&ask);
        let sha = "a".repeat(64);
        let description = fieldsync_protocol::attachment::AttachmentRef {
            sha256: sha.clone(),
            media_type: "image/jpeg".into(),
            size: 12,
            name: "村部.jpg".into(),
            by: "device".into(),
            at: 1,
        }
        .description();
        let photo = serde_json::json!({ "photos": { sha: description } }).to_string();
        let choices = r#"{"member_ratings":{"01a252ae-3d39-77aa-98ca-5a7f98f5c7aa":"satisfied"}}"#;
        g.add(row(
            "01a252ae-3d39-77aa-98ca-5a7f98f5c7ab",
            "site_visit",
            &photo,
            false,
        ))
        .unwrap();
        g.add(row(
            "01a252ae-3d39-77aa-98ca-5a7f98f5c7ac",
            "evaluation",
            choices,
            true,
        ))
        .unwrap();
        let d = g.finish();
        assert_eq!(d.files.len(), 1, "a map of choices is no file");
        assert_eq!(d.files[0].kind, "site_visit");
        assert_eq!(refs_in_json(&d.files[0].fields).len(), 1);
    }

    #[test]
    fn short_values_that_do_not_read_are_an_error_not_a_silent_zero() {
        let ask = DigestAsk::default();
        let mut g = Gather::new(&ask);
        assert!(g.add(row("x", "interview", "[1, 2]", true)).is_err());
        assert!(g.add(row("x", "interview", "{\"a\":", true)).is_err());
        assert!(g.add(row("x", "interview", "{} {}", true)).is_err());
    }
}
