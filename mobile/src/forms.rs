//! The campaign's forms as plain records an app renders natively: each kind with its fields,
//! labels in both languages, choices and limits, from the newest template on the device.

use fieldsync_protocol::template::{FieldDef, KindDef, RESERVED_KINDS, Template};

use crate::error::{FieldsyncError, Result};
use crate::store::FieldStore;

/// One form (a record kind people fill in: 个别谈话, 民主测评, 查阅资料…).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Form {
    /// The kind's name, what records are created with (`interview`).
    pub kind: String,
    /// Its name in Chinese.
    pub label_zh: String,
    /// Its name in English.
    pub label_en: String,
    /// Fields whose values make a record unique (one assessment per team): creating it again
    /// writes into the same record. Empty for ordinary forms.
    pub key: Vec<String>,
    /// The fields, in form order.
    pub fields: Vec<FormField>,
}

/// One field of a form.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct FormField {
    /// The field's name in the record.
    pub name: String,
    /// Its type: `text`, `long_text`, `number`, `date`, `bool`, `choice`, `multi_choice`,
    /// `ratings`, `ref`, `refs` or `attachments` (docs/TEMPLATES.md).
    pub field_type: String,
    /// Whether a record must have a value.
    pub required: bool,
    /// The label in Chinese.
    pub label_zh: String,
    /// The label in English.
    pub label_en: String,
    /// A hint under the field in Chinese (empty when none).
    pub help_zh: String,
    /// The hint in English.
    pub help_en: String,
    /// The choices (`choice`, `multi_choice`, `ratings`), in order.
    pub choices: Vec<FormChoice>,
    /// The most characters of a text.
    pub max_length: Option<u64>,
    /// The smallest number allowed.
    pub min: Option<f64>,
    /// The largest number allowed.
    pub max: Option<f64>,
    /// Whether a number must be whole.
    pub integer: bool,
    /// The kind a `ref`/`refs` points to, or the kind a `ratings` field rates.
    pub refers_to: Option<String>,
    /// The media types an `attachments` field takes (such as `image/jpeg`, or a whole family
    /// such as all images); empty for any.
    pub accept: Vec<String>,
}

/// One choice of a choice field.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct FormChoice {
    /// What is stored (and what `create_record` accepts, as do both labels).
    pub value: String,
    /// The Chinese label.
    pub zh: String,
    /// The English label.
    pub en: String,
}

fn field(f: &FieldDef) -> FormField {
    let name = serde_json::to_value(f.field_type)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    FormField {
        name: f.name.clone(),
        field_type: name,
        required: f.required,
        label_zh: f.label.zh.clone(),
        label_en: f.label.en.clone(),
        help_zh: f.help.as_ref().map(|h| h.zh.clone()).unwrap_or_default(),
        help_en: f.help.as_ref().map(|h| h.en.clone()).unwrap_or_default(),
        choices: f
            .choices
            .iter()
            .map(|c| FormChoice {
                value: c.value.clone(),
                zh: c.zh.clone(),
                en: c.en.clone(),
            })
            .collect(),
        max_length: f.max_length.map(|n| n as u64),
        min: f.min,
        max: f.max,
        integer: f.integer,
        refers_to: f.to.clone().or_else(|| f.of.clone()).or_else(|| {
            (f.field_type == fieldsync_protocol::template::FieldType::Ratings)
                .then(|| "member".to_string())
        }),
        accept: f.accept.clone(),
    }
}

/// The form of one kind.
pub(crate) fn form(k: &KindDef) -> Form {
    Form {
        kind: k.name.clone(),
        label_zh: k.label.zh.clone(),
        label_en: k.label.en.clone(),
        key: k.key.clone(),
        fields: k.fields.iter().map(field).collect(),
    }
}

/// The campaign's newest template on the device, or an error saying to sync first.
pub(crate) fn template_of(store: &fieldsync_client_core::Store) -> Result<Template> {
    let campaign = FieldStore::campaign_required(store)?;
    store.template(campaign)?.ok_or_else(|| {
        FieldsyncError::invalid(
            "本机还没有这个工作任务的表单，请先同步",
            "this device has no forms of the campaign yet: sync first",
        )
    })
}

#[uniffi::export]
impl FieldStore {
    /// The forms people fill in (not the reference kinds: villages, teams, members), from the
    /// newest template of the campaign on this device.
    pub fn forms(&self) -> Result<Vec<Form>> {
        self.with(|s| {
            let template = template_of(s)?;
            Ok(template
                .kinds
                .values()
                .filter(|k| !RESERVED_KINDS.contains(&k.name.as_str()))
                .map(form)
                .collect())
        })
    }

    /// The form of any kind, the reference kinds included (`member`, `team`, `place`).
    pub fn form(&self, kind: String) -> Result<Form> {
        self.with(|s| {
            let template = template_of(s)?;
            template.kind(&kind).map(form).ok_or_else(|| {
                FieldsyncError::invalid(
                    format!("表单里没有“{kind}”这一类记录"),
                    format!("the forms have no kind {kind:?}"),
                )
            })
        })
    }
}
