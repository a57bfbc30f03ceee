//! Records through the campaign's forms: create, edit, delete (validated by the template, each
//! problem named), list with filters, get, history, conflicts and their resolution, each value
//! given as people read it in both languages.

use std::collections::{BTreeMap, HashMap};

use fieldsync_app::fields::display_value;
use fieldsync_app::page::Lang;
use fieldsync_app::routes::record_name;
use fieldsync_app::routes::records::writer_text;
use fieldsync_client_core::forms::parse_input;
use fieldsync_client_core::store::{Writer, Writers};
use fieldsync_client_core::{FieldValue, Filter, Record, Store};
use fieldsync_protocol::approval;
use fieldsync_protocol::template::{FieldDef, KindDef, Template};

use crate::error::{FieldsyncError, FormProblem, Result};
use crate::forms::template_of;
use crate::store::{FieldStore, parse_id};

/// One field of a record as people read it.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct FieldShown {
    /// The field's name.
    pub name: String,
    /// Its label in Chinese (the name when the template does not know the field).
    pub label_zh: String,
    /// Its label in English.
    pub label_en: String,
    /// The value in Chinese: choices by label, references by name, 是/否.
    pub text_zh: String,
    /// The value in English.
    pub text_en: String,
    /// The value as stored, as JSON (for an app that renders it itself).
    pub json: String,
}

/// A record as an app shows it.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct RecordView {
    /// Its id.
    pub id: String,
    /// Its kind (`interview`).
    pub kind: String,
    /// The village (place code) it belongs to.
    pub village: String,
    /// A title for lists, in Chinese (a name, or the form, date and the first words).
    pub title_zh: String,
    /// The title in English.
    pub title_en: String,
    /// Whether it is deleted.
    pub deleted: bool,
    /// When this device last changed it (ms since the Unix epoch).
    pub updated_ms: i64,
    /// How many fields hold values two people wrote at once (see `record_conflicts`).
    pub conflicts: u32,
    /// `pending` (待审核), `approved` (已通过) or `returned` (退回修改).
    pub review_state: String,
    /// The review state in Chinese.
    pub review_zh: String,
    /// The review state in English.
    pub review_en: String,
    /// The reviewer's comment (why it was returned); empty when none.
    pub review_comment: String,
    /// Who reviewed it; empty when nobody has.
    pub reviewed_by: String,
    /// The fields that have values, in form order.
    pub fields: Vec<FieldShown>,
}

/// Which records `list_records` returns. Every part is optional.
#[derive(Debug, Clone, Default, PartialEq, uniffi::Record)]
pub struct RecordFilter {
    /// Only this kind.
    #[uniffi(default = None)]
    pub kind: Option<String>,
    /// Only this village (place code).
    #[uniffi(default = None)]
    pub village: Option<String>,
    /// Only records whose values contain this text.
    #[uniffi(default = None)]
    pub text: Option<String>,
    /// Only records with conflicts.
    #[uniffi(default = false)]
    pub conflicted: bool,
    /// Deleted records too.
    #[uniffi(default = false)]
    pub include_deleted: bool,
    /// At most this many (newest first).
    #[uniffi(default = None)]
    pub limit: Option<u32>,
}

/// One field a change set, from what to what.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct HistoryChange {
    /// The field's name.
    pub field: String,
    /// Its label in Chinese.
    pub label_zh: String,
    /// Its label in English.
    pub label_en: String,
    /// The value before, in Chinese (empty when it had none).
    pub before_zh: String,
    /// The value after, in Chinese (empty when the change removed it).
    pub after_zh: String,
    /// The value before, in English.
    pub before_en: String,
    /// The value after, in English.
    pub after_en: String,
}

/// One change of a record, oldest first.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct HistoryItem {
    /// When (ms since the epoch, by the writing device's clock).
    pub time_ms: i64,
    /// Whether it is the record's creation.
    pub created: bool,
    /// Whether this device wrote it (otherwise another device or the department).
    pub by_this_device: bool,
    /// Who wrote it, in Chinese: 本机, the person's name (learned from the server after a sync
    /// with conflicts), or 另一台设备 (xxxx); （记录建立） for the record's creation.
    pub written_by_zh: String,
    /// Who wrote it, in English.
    pub written_by_en: String,
    /// What it changed.
    pub changes: Vec<HistoryChange>,
}

/// One of the values two people wrote at once.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ConflictChoice {
    /// The value in Chinese.
    pub text_zh: String,
    /// The value in English.
    pub text_en: String,
    /// The value as stored, as JSON.
    pub json: String,
    /// Whether this device wrote it.
    pub by_this_device: bool,
    /// Who wrote it, in Chinese: 本机, the person's name (learned from the server after a sync
    /// with conflicts), or 另一台设备 (xxxx).
    pub written_by_zh: String,
    /// Who wrote it, in English.
    pub written_by_en: String,
    /// When it was written (ms since the epoch), when known.
    pub time_ms: Option<i64>,
}

/// A field with values two people wrote at once: both are kept until someone chooses.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ConflictView {
    /// The field's name.
    pub field: String,
    /// Its label in Chinese.
    pub label_zh: String,
    /// Its label in English.
    pub label_en: String,
    /// Every value; the last is what the record shows until the conflict is resolved.
    pub values: Vec<ConflictChoice>,
}

const ZH: Lang = Lang { en: false };
const EN: Lang = Lang { en: true };

/// How one record's values read: the template's labels and the names of referenced records.
struct Reader<'a> {
    store: &'a Store,
    template: &'a Template,
}

impl Reader<'_> {
    fn name_of(&self, lang: Lang) -> impl Fn(&str) -> Option<String> + '_ {
        move |id: &str| {
            let id = uuid::Uuid::parse_str(id).ok()?;
            let r = self.store.get(id).ok()?;
            Some(record_name(lang, Some(self.template), &r))
        }
    }

    fn text(&self, def: Option<&FieldDef>, value: &FieldValue, lang: Lang) -> String {
        match def {
            Some(def) => display_value(lang, def, value, &self.name_of(lang)),
            None => plain(value),
        }
    }

    fn label(def: Option<&FieldDef>, name: &str) -> (String, String) {
        def.map(|d| (d.label.zh.clone(), d.label.en.clone()))
            .unwrap_or_else(|| (name.to_string(), name.to_string()))
    }

    fn view(&self, r: &Record) -> Result<RecordView> {
        let kind = self.template.kind(&r.header.kind);
        let state_conflicted = r.conflicts > 0
            && self
                .store
                .conflicts(r.header.id)?
                .iter()
                .any(|c| c.field == approval::STATE_FIELD);
        let review = approval::read(&r.fields, state_conflicted);
        let mut names: Vec<&str> = kind
            .map(|k| k.fields.iter().map(|f| f.name.as_str()).collect())
            .unwrap_or_default();
        for name in r.fields.keys() {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
        let fields = names
            .into_iter()
            .filter(|n| !n.starts_with('_'))
            .filter_map(|name| {
                let value = r.fields.get(name)?;
                let def = kind.and_then(|k| k.field(name));
                let (label_zh, label_en) = Self::label(def, name);
                Some(FieldShown {
                    name: name.to_string(),
                    label_zh,
                    label_en,
                    text_zh: self.text(def, value, ZH),
                    text_en: self.text(def, value, EN),
                    json: value.to_json().to_string(),
                })
            })
            .collect();
        Ok(RecordView {
            id: r.header.id.to_string(),
            kind: r.header.kind.clone(),
            village: r.header.scope.clone(),
            title_zh: record_name(ZH, Some(self.template), r),
            title_en: record_name(EN, Some(self.template), r),
            deleted: r.deleted,
            updated_ms: r.updated_at,
            conflicts: r.conflicts as u32,
            review_state: review.state.as_str().to_string(),
            review_zh: review.state.zh().to_string(),
            review_en: review.state.en().to_string(),
            review_comment: review.comment,
            reviewed_by: review.by,
            fields,
        })
    }
}

/// Who wrote a change of a record's history: the field app's rule, and the creation as such.
fn who(writers: &Writers, e: &fieldsync_protocol::history::HistoryEntry, lang: Lang) -> String {
    if e.genesis {
        lang.t("（记录建立）", "(record created)").to_string()
    } else {
        writer_text(lang, &writers.of(&e.actor))
    }
}

/// A value with no field definition to read it by.
fn plain(value: &FieldValue) -> String {
    match value {
        FieldValue::Str(s) | FieldValue::Text(s) => s.clone(),
        other => other.to_json().to_string(),
    }
}

/// Reads what a person typed for each field into stored values; every problem named. An empty
/// text is `None` (left out on create, cleared on edit).
fn parse_fields(
    kind: &KindDef,
    input: &HashMap<String, String>,
) -> Result<BTreeMap<String, Option<FieldValue>>> {
    let mut out = BTreeMap::new();
    let mut problems = Vec::new();
    for (name, text) in input {
        let Some(def) = kind.field(name) else {
            problems.push(FormProblem {
                field: name.clone(),
                code: "unknown_field".into(),
                zh: format!("“{}”表单里没有“{name}”这一项", kind.label.zh),
                en: format!("the form {:?} has no field {name:?}", kind.label.en),
            });
            continue;
        };
        if text.trim().is_empty() {
            out.insert(name.clone(), None);
            continue;
        }
        match parse_input(def, text) {
            Ok(v) => {
                out.insert(name.clone(), Some(v));
            }
            Err((zh, en)) => problems.push(FormProblem {
                field: name.clone(),
                code: "invalid_value".into(),
                zh: format!("{}：{zh}", def.label.zh),
                en: format!("{}: {en}", def.label.en),
            }),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(FieldsyncError::form(problems))
    }
}

fn kind_of<'t>(template: &'t Template, kind: &str) -> Result<&'t KindDef> {
    template.kind(kind).ok_or_else(|| {
        FieldsyncError::form(vec![FormProblem {
            field: String::new(),
            code: "unknown_kind".into(),
            zh: format!("表单里没有“{kind}”这一类记录"),
            en: format!("the forms have no kind {kind:?}"),
        }])
    })
}

#[uniffi::export]
impl FieldStore {
    /// Creates a record of `kind` in `village` (a place code) from what the user typed or
    /// chose, field by field: a choice by its value or either label, numbers, `是`/`否`,
    /// `YYYY-MM-DD`, text as is; an empty text is left out. Checked against the template first:
    /// with any problem nothing is saved and the error lists each one. Saved offline; the
    /// record's id is returned.
    pub fn create_record(
        &self,
        kind: String,
        village: String,
        fields: HashMap<String, String>,
    ) -> Result<String> {
        self.with(|s| {
            let campaign = FieldStore::campaign_required(s)?;
            let template = template_of(s)?;
            let def = kind_of(&template, &kind)?;
            let values: BTreeMap<String, FieldValue> = parse_fields(def, &fields)?
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .collect();
            let id = s.create_form(campaign, &kind, village.trim(), &values)?;
            Ok(id.to_string())
        })
    }

    /// Changes fields of a record (an empty text clears the field), checked against the
    /// template as a whole record first. Writing a field that has a conflict resolves it.
    pub fn edit_record(&self, id: String, changes: HashMap<String, String>) -> Result<()> {
        let id = parse_id(&id)?;
        self.with(|s| {
            let template = template_of(s)?;
            let record = s.get(id)?;
            let def = kind_of(&template, &record.header.kind)?;
            let values: BTreeMap<String, FieldValue> = parse_fields(def, &changes)?
                .into_iter()
                .map(|(k, v)| (k, v.unwrap_or(FieldValue::Null)))
                .collect();
            Ok(s.edit_form(id, &values)?)
        })
    }

    /// Deletes a record: a deletion that syncs like any edit; its history is kept.
    pub fn delete_record(&self, id: String) -> Result<()> {
        let id = parse_id(&id)?;
        self.with(|s| Ok(s.delete(id)?))
    }

    /// The records the filter selects, newest change first.
    pub fn list_records(&self, filter: RecordFilter) -> Result<Vec<RecordView>> {
        self.with(|s| {
            let template = template_of(s)?;
            let campaign = FieldStore::campaign_required(s)?;
            let mut records = s.list(&Filter {
                kind: filter.kind.clone(),
                scope: filter.village.clone(),
                campaign: Some(campaign),
                text: filter.text.clone().filter(|t| !t.trim().is_empty()),
                include_deleted: filter.include_deleted,
                conflicted: filter.conflicted,
            })?;
            records.retain(|r| {
                r.header.kind != fieldsync_protocol::template::TEMPLATE_KIND
                    && r.header.scope != fieldsync_protocol::template::CAMPAIGN_SCOPE
            });
            records.sort_by_key(|r| std::cmp::Reverse(r.updated_at));
            if let Some(limit) = filter.limit {
                records.truncate(limit as usize);
            }
            let reader = Reader {
                store: s,
                template: &template,
            };
            records.iter().map(|r| reader.view(r)).collect()
        })
    }

    /// One record.
    pub fn get_record(&self, id: String) -> Result<RecordView> {
        let id = parse_id(&id)?;
        self.with(|s| {
            let template = template_of(s)?;
            let record = s.get(id)?;
            Reader {
                store: s,
                template: &template,
            }
            .view(&record)
        })
    }

    /// Every change of a record, oldest first: when, whether this device wrote it, and each
    /// field from what to what.
    pub fn record_history(&self, id: String) -> Result<Vec<HistoryItem>> {
        let id = parse_id(&id)?;
        self.with(|s| {
            let template = template_of(s)?;
            let record = s.get(id)?;
            let doc = s.document(id)?;
            let writers = s.writers()?;
            let kind = template.kind(&record.header.kind);
            let reader = Reader {
                store: s,
                template: &template,
            };
            let text = |def: Option<&FieldDef>, v: &Option<FieldValue>, lang: Lang| match v {
                Some(v) => reader.text(def, v, lang),
                None => String::new(),
            };
            Ok(fieldsync_protocol::history::of(&record.header, &doc)
                .into_iter()
                .map(|e| HistoryItem {
                    time_ms: e.time,
                    created: e.genesis,
                    by_this_device: writers.of(&e.actor) == Writer::ThisDevice,
                    written_by_zh: who(&writers, &e, ZH),
                    written_by_en: who(&writers, &e, EN),
                    changes: e
                        .fields
                        .iter()
                        .filter(|c| !c.field.starts_with('_'))
                        .map(|c| {
                            let def = kind.and_then(|k| k.field(&c.field));
                            let (label_zh, label_en) = Reader::label(def, &c.field);
                            HistoryChange {
                                field: c.field.clone(),
                                label_zh,
                                label_en,
                                before_zh: text(def, &c.before, ZH),
                                after_zh: text(def, &c.after, ZH),
                                before_en: text(def, &c.before, EN),
                                after_en: text(def, &c.after, EN),
                            }
                        })
                        .collect(),
                })
                .collect())
        })
    }

    /// The fields of a record that hold values two people wrote at once, each with every value
    /// and who wrote it.
    pub fn record_conflicts(&self, id: String) -> Result<Vec<ConflictView>> {
        let id = parse_id(&id)?;
        self.with(|s| {
            let template = template_of(s)?;
            let record = s.get(id)?;
            let writers = s.writers()?;
            let kind = template.kind(&record.header.kind);
            let reader = Reader {
                store: s,
                template: &template,
            };
            Ok(s.conflicts(id)?
                .into_iter()
                .map(|c| {
                    let def = kind.and_then(|k| k.field(&c.field));
                    let (label_zh, label_en) = Reader::label(def, &c.field);
                    ConflictView {
                        values: c
                            .values
                            .iter()
                            .map(|v| ConflictChoice {
                                text_zh: reader.text(def, &v.value, ZH),
                                text_en: reader.text(def, &v.value, EN),
                                json: v.value.to_json().to_string(),
                                by_this_device: writers.of(&v.actor) == Writer::ThisDevice,
                                written_by_zh: writer_text(ZH, &writers.of(&v.actor)),
                                written_by_en: writer_text(EN, &writers.of(&v.actor)),
                                time_ms: v.time,
                            })
                            .collect(),
                        field: c.field,
                        label_zh,
                        label_en,
                    }
                })
                .collect())
        })
    }

    /// Resolves the conflict on `field` by keeping value number `choice` (0-based, in the order
    /// `record_conflicts` lists them) over the others. To keep neither, edit the field instead.
    pub fn resolve_conflict(&self, id: String, field: String, choice: u32) -> Result<()> {
        let id = parse_id(&id)?;
        self.with(|s| {
            let conflict = s
                .conflicts(id)?
                .into_iter()
                .find(|c| c.field == field)
                .ok_or_else(|| {
                    FieldsyncError::invalid(
                        format!("“{field}”没有冲突（也许已在别处处理）"),
                        format!("{field:?} has no conflict (perhaps resolved elsewhere)"),
                    )
                })?;
            let value = conflict
                .values
                .get(choice as usize)
                .ok_or_else(|| {
                    FieldsyncError::invalid(
                        format!("“{field}”只有 {} 个不同的值", conflict.values.len()),
                        format!("{field:?} has only {} values", conflict.values.len()),
                    )
                })?
                .value
                .clone();
            Ok(s.resolve(id, &field, value)?)
        })
    }
}
