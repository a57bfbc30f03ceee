//! Forms: records written through their campaign's template, validated before they are saved.
//!
//! A campaign's template travels as records of kind `template` (one per published version), so
//! a device learns of a new version by syncing. Every form record notes the version it was
//! written with in the reserved field `_form`; the server checks it again against that version
//! and flags, never drops, what fails.

use std::collections::BTreeMap;

use fieldsync_protocol::template::{
    CAMPAIGN_SCOPE, FORM_VERSION_FIELD, FieldDef, FieldType, Invalid, RefPolicy, TEMPLATE_KIND,
    Template, TemplateError,
};
use fieldsync_protocol::{FieldValue, RecordHeader, new_record_id, singleton_id};
use uuid::Uuid;

use crate::store::{Filter, Store, StoreError};

/// Why a form could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum FormError {
    /// The store holds no template for the campaign: sync first, or publish one.
    #[error(
        "活动 {0} 还没有表单模板，请先同步 / campaign {0} has no template on this device yet: \
         sync first"
    )]
    NoTemplate(Uuid),
    /// A stored template does not parse.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// The record does not fit its form; every problem names its field.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// An edit tried to change a field that makes a singleton unique.
    #[error(
        "“{field}”决定记录的唯一性，不能修改；请另建记录 / {field:?} identifies this record and \
         cannot be changed; create another record instead"
    )]
    KeyChanged {
        /// The key field.
        field: String,
    },
    /// A file was attached to a field that does not take files.
    #[error(
        "“{field}”不是附件字段，不能添加文件 / {field:?} is not an attachments field: attach \
         the file to one that is"
    )]
    NotAttachments {
        /// The field.
        field: String,
    },
    /// The kind of a file could not be told from its name.
    #[error(
        "看不出“{name}”是什么文件，请注明类型（如 image/jpeg） / cannot tell what kind of file \
         {name:?} is: give its media type (such as image/jpeg)"
    )]
    UnknownMediaType {
        /// The file's name.
        name: String,
    },
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

type Result<T> = std::result::Result<T, FormError>;

/// Reads what a person typed (a spreadsheet cell, a command-line flag, an answer at a prompt)
/// into the value `def` stores: choices by value, Chinese label, its short form before a
/// parenthesis (`区` for `区（县）`) or English label (several separated by `,` or `、` for a
/// multiple choice); numbers; `是/否`, `yes/no`, `1/0`; `id=choice,…` for ratings; text as is
/// (a long text becomes an Automerge text). The error is in Chinese and English.
pub fn parse_input(
    def: &FieldDef,
    text: &str,
) -> std::result::Result<FieldValue, (String, String)> {
    let text = text.trim();
    let choice = |cell: &str| {
        def.choices
            .iter()
            .find(|c| {
                let short = c.zh.split(['（', '(']).next().unwrap_or_default();
                c.value == cell || c.zh == cell || short == cell || c.en.eq_ignore_ascii_case(cell)
            })
            .map(|c| c.value.clone())
            .ok_or_else(|| {
                let zh: Vec<&str> = def.choices.iter().map(|c| c.zh.as_str()).collect();
                let en: Vec<&str> = def.choices.iter().map(|c| c.en.as_str()).collect();
                (
                    format!("“{cell}”不是可选项，可选：{}", zh.join("、")),
                    format!("{cell:?} is not one of: {}", en.join(", ")),
                )
            })
    };
    let parts = |s: &str| -> Vec<String> {
        s.split([',', '，', '、'])
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect()
    };
    match def.field_type {
        FieldType::Choice => choice(text).map(FieldValue::Str),
        FieldType::MultiChoice => Ok(FieldValue::Str(
            parts(text)
                .iter()
                .map(|p| choice(p))
                .collect::<std::result::Result<Vec<_>, _>>()?
                .join(","),
        )),
        FieldType::Ratings => {
            let mut map = BTreeMap::new();
            for p in parts(text) {
                let Some((id, rating)) = p.split_once('=') else {
                    return Err((
                        format!("“{p}”应写成“成员编号=评价”"),
                        format!("{p:?} must be written member-id=rating"),
                    ));
                };
                map.insert(id.trim().to_string(), choice(rating.trim())?);
            }
            Ok(FieldValue::Map(map))
        }
        FieldType::Number => text
            .parse::<i64>()
            .map(FieldValue::Int)
            .or_else(|_| text.parse::<f64>().map(FieldValue::Float))
            .map_err(|_| {
                (
                    format!("“{text}”不是数字"),
                    format!("{text:?} is not a number"),
                )
            }),
        FieldType::Bool => match text {
            "是" | "yes" | "Yes" | "true" | "1" | "Y" | "y" => Ok(FieldValue::Bool(true)),
            "否" | "no" | "No" | "false" | "0" | "N" | "n" => Ok(FieldValue::Bool(false)),
            _ => Err((
                format!("“{text}”应为“是”或“否”"),
                format!("{text:?} must be yes or no"),
            )),
        },
        FieldType::LongText => Ok(FieldValue::Text(text.to_string())),
        FieldType::Refs => Ok(FieldValue::Str(parts(text).join(","))),
        FieldType::Attachments => Err((
            "照片、扫描件和录音不能手填，请作为附件添加".to_string(),
            "photos, scans and recordings cannot be typed; add them as attachments".to_string(),
        )),
        _ => Ok(FieldValue::Str(text.to_string())),
    }
}

/// Reads a value of a JSON form file (`fieldsync new --file`) into the value `def` stores,
/// accepting what [`parse_input`] accepts wherever a person wrote text: a choice by its Chinese
/// or English label, a multiple choice as a string or an array of strings, ratings as
/// `{"member id": "好"}`, `"是"` for a yes/no field, `"12"` for a number. Other JSON is read by
/// [`FieldValue::from_json`]. The error is in Chinese and English.
pub fn parse_json_input(
    def: &FieldDef,
    value: &serde_json::Value,
) -> std::result::Result<FieldValue, (String, String)> {
    use serde_json::Value as J;
    let strings = |items: &[J]| -> Option<Vec<String>> {
        items
            .iter()
            .map(|i| i.as_str().map(str::to_string))
            .collect()
    };
    match (&def.field_type, value) {
        (
            FieldType::Choice
            | FieldType::MultiChoice
            | FieldType::Ratings
            | FieldType::Bool
            | FieldType::Number,
            J::String(s),
        ) => parse_input(def, s),
        (FieldType::MultiChoice | FieldType::Refs, J::Array(items)) => match strings(items) {
            Some(items) => parse_input(def, &items.join(",")),
            None => Err((
                format!("“{}”应为文字列表", def.name),
                format!("{:?} must be a list of strings", def.name),
            )),
        },
        (FieldType::Ratings, J::Object(map)) if map.values().all(J::is_string) => {
            let text: Vec<String> = map
                .iter()
                .map(|(id, rating)| format!("{id}={}", rating.as_str().unwrap_or_default()))
                .collect();
            parse_input(def, &text.join(","))
        }
        _ => FieldValue::from_json(&def.name, value).map_err(|e| (e.to_string(), e.to_string())),
    }
}

/// The id of the record that carries version `version` of template `template_id`.
pub fn template_record_id(campaign: Uuid, template_id: &str, version: u32) -> Uuid {
    singleton_id(campaign, TEMPLATE_KIND, &format!("{template_id}/{version}"))
}

/// Brings values to the shape the form stores: long texts become Automerge texts (so they
/// merge character by character), whole decimals in integer fields become integers.
fn normalize(template: &Template, kind: &str, fields: &mut BTreeMap<String, FieldValue>) {
    let Some(def) = template.kind(kind) else {
        return;
    };
    for f in &def.fields {
        let Some(v) = fields.get_mut(&f.name) else {
            continue;
        };
        match (f.field_type, &*v) {
            (FieldType::LongText, FieldValue::Str(s)) => *v = FieldValue::Text(s.clone()),
            (FieldType::Text, FieldValue::Text(s)) => *v = FieldValue::Str(s.clone()),
            (FieldType::Number, FieldValue::Float(x))
                if f.integer && x.fract() == 0.0 && x.abs() < 9.0e15 =>
            {
                *v = FieldValue::Int(*x as i64)
            }
            _ => {}
        }
    }
}

impl Store {
    /// Publishes a template version for a campaign (what the department does; it syncs to
    /// every device like any record). Publishing the same version again changes nothing.
    pub fn publish_template(&mut self, campaign: Uuid, template: &Template) -> Result<Uuid> {
        let header = RecordHeader {
            id: template_record_id(campaign, &template.id, template.version),
            kind: TEMPLATE_KIND.into(),
            campaign,
            scope: CAMPAIGN_SCOPE.into(),
        };
        self.ensure(
            &header,
            &[
                ("template_id", FieldValue::Str(template.id.clone())),
                ("version", FieldValue::Int(i64::from(template.version))),
                ("source", FieldValue::Str(template.source.clone())),
            ],
        )?;
        Ok(header.id)
    }

    /// Starts a campaign (what the department does first): publishes its template and writes
    /// its `campaign` record (name, template, year). Pass [`new_record_id`] for a new campaign.
    pub fn create_campaign(
        &mut self,
        campaign: Uuid,
        name: &str,
        template: &Template,
        year: i64,
    ) -> Result<Uuid> {
        self.publish_template(campaign, template)?;
        let mut fields = BTreeMap::new();
        fields.insert("name".to_string(), FieldValue::Str(name.into()));
        fields.insert("template".to_string(), FieldValue::Str(template.id.clone()));
        fields.insert("year".to_string(), FieldValue::Int(year));
        self.create_form(campaign, "campaign", CAMPAIGN_SCOPE, &fields)
    }

    /// A setting of this device (the CLI keeps its server address and campaign here).
    pub fn setting(&self, name: &str) -> std::result::Result<Option<String>, StoreError> {
        self.meta_value(&format!("setting:{name}"))
    }

    /// Changes a setting of this device.
    pub fn set_setting(&mut self, name: &str, value: &str) -> std::result::Result<(), StoreError> {
        self.set_meta_value(&format!("setting:{name}"), value)
    }

    /// Every template version of the campaign this store holds, oldest first.
    pub fn templates(&self, campaign: Uuid) -> Result<Vec<Template>> {
        let records = self.list(&Filter {
            kind: Some(TEMPLATE_KIND.into()),
            campaign: Some(campaign),
            ..Default::default()
        })?;
        let mut out = Vec::new();
        let mut cache = self.parsed_templates.borrow_mut();
        for r in records {
            if let Some(FieldValue::Str(source)) = r.fields.get("source") {
                if let Some(t) = cache.get(source) {
                    out.push(t.clone());
                    continue;
                }
                let t = Template::parse(source)?;
                if cache.len() >= 32 {
                    cache.clear();
                }
                cache.insert(source.clone(), t.clone());
                out.push(t);
            }
        }
        out.sort_by_key(|t| t.version);
        Ok(out)
    }

    /// The newest template version of the campaign this store holds.
    pub fn template(&self, campaign: Uuid) -> Result<Option<Template>> {
        Ok(self.templates(campaign)?.pop())
    }

    /// A template version newer than the one last acknowledged with
    /// [`Store::acknowledge_template`]: the app should tell its user that the forms changed.
    pub fn new_template_version(&self, campaign: Uuid) -> Result<Option<u32>> {
        let Some(latest) = self.template(campaign)? else {
            return Ok(None);
        };
        let seen: u32 = self
            .meta_value(&format!("template_seen:{campaign}"))?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok((latest.version > seen).then_some(latest.version))
    }

    /// Notes that the user has been told about template `version` of the campaign.
    pub fn acknowledge_template(&mut self, campaign: Uuid, version: u32) -> Result<()> {
        self.set_meta_value(&format!("template_seen:{campaign}"), &version.to_string())?;
        Ok(())
    }

    fn lookup_kind(&self, id: Uuid) -> Option<String> {
        self.get(id)
            .ok()
            .filter(|r| !r.deleted)
            .map(|r| r.header.kind)
    }

    /// Checks fields against the campaign's newest template without saving anything.
    pub fn check_form(
        &self,
        campaign: Uuid,
        kind: &str,
        fields: &BTreeMap<String, FieldValue>,
    ) -> Result<()> {
        self.checked(campaign, kind, fields).map(|_| ())
    }

    /// The campaign's newest template and the fields in the shape it stores, once they pass.
    fn checked(
        &self,
        campaign: Uuid,
        kind: &str,
        fields: &BTreeMap<String, FieldValue>,
    ) -> Result<(Template, BTreeMap<String, FieldValue>)> {
        let template = self
            .template(campaign)?
            .ok_or(FormError::NoTemplate(campaign))?;
        let mut fields = fields.clone();
        normalize(&template, kind, &mut fields);
        template.validate(
            kind,
            &fields,
            &|id| self.lookup_kind(id),
            RefPolicy::MustExist,
        )?;
        Ok((template, fields))
    }

    /// Creates a record of `kind` through the campaign's newest template: validated first
    /// (nothing is saved if any field is wrong), then saved offline. A kind with a key (one
    /// assessment per target, one star rating per village and year) gets the id derived from
    /// the key, so records created on several devices merge into one; creating it again here
    /// writes the values into the existing record.
    pub fn create_form(
        &mut self,
        campaign: Uuid,
        kind: &str,
        scope: &str,
        fields: &BTreeMap<String, FieldValue>,
    ) -> Result<Uuid> {
        let (template, mut fields) = self.checked(campaign, kind, fields)?;
        fields.insert(
            FORM_VERSION_FIELD.into(),
            FieldValue::Int(i64::from(template.version)),
        );
        let id = match template.singleton_key(kind, &fields) {
            Some(key) => singleton_id(campaign, kind, &key),
            None => new_record_id(),
        };
        let header = RecordHeader {
            id,
            kind: kind.into(),
            campaign,
            scope: scope.into(),
        };
        let values: Vec<(&str, FieldValue)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        self.ensure(&header, &values)?;
        Ok(id)
    }

    /// Changes fields of a form record (a `Null` value clears a field), validated against the
    /// campaign's newest template as a whole record first. The record then notes that version.
    pub fn edit_form(&mut self, id: Uuid, changes: &BTreeMap<String, FieldValue>) -> Result<()> {
        let record = self.get(id)?;
        let campaign = record.header.campaign;
        let kind = record.header.kind.clone();
        let template = self
            .template(campaign)?
            .ok_or(FormError::NoTemplate(campaign))?;
        let mut changes = changes.clone();
        normalize(&template, &kind, &mut changes);
        if let Some(def) = template.kind(&kind) {
            for key in &def.key {
                if let Some(new) = changes.get(key)
                    && record.fields.get(key) != Some(new)
                {
                    return Err(FormError::KeyChanged { field: key.clone() });
                }
            }
        }
        let mut merged = record.fields.clone();
        for (k, v) in &changes {
            if *v == FieldValue::Null {
                merged.remove(k);
            } else {
                merged.insert(k.clone(), v.clone());
            }
        }
        template.validate(
            &kind,
            &merged,
            &|id| self.lookup_kind(id),
            RefPolicy::MustExist,
        )?;
        let version = FieldValue::Int(i64::from(template.version));
        // Writing a field resolves its conflict, even when the value written is the one shown.
        let conflicted: Vec<String> = if record.conflicts > 0 {
            self.conflicts(id)?.into_iter().map(|c| c.field).collect()
        } else {
            Vec::new()
        };
        self.edit(id, |e| {
            for (k, v) in &changes {
                if *v == FieldValue::Null {
                    e.remove(k)?;
                } else if record.fields.get(k) != Some(v) || conflicted.contains(k) {
                    e.set(k, v)?;
                }
            }
            if record.fields.get(FORM_VERSION_FIELD) != Some(&version) {
                e.set(FORM_VERSION_FIELD, &version)?;
            }
            Ok(())
        })?;
        Ok(())
    }
}
