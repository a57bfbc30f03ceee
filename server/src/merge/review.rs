//! Template review of merged records: whether a record fits its campaign's template (the version
//! it names in `_form`). What does not fit is flagged for a reviewer, never refused or dropped:
//! validation refuses on the device and flags on the server.

use std::sync::Arc;

use fieldsync_protocol::{
    FieldValue, Projection,
    template::{FORM_VERSION_FIELD, Problem, ProblemCode, RefPolicy, TEMPLATE_KIND, Template},
};
use uuid::Uuid;

/// Checks a merged record against its campaign's template versions (`templates`, oldest first):
/// `None` when it passes (or the campaign has no template), else the problems. A template record
/// is checked for parsing. `kind_of` answers the kind of a live record the storage holds, for
/// references.
pub fn review(
    p: &Projection,
    templates: &[Arc<Template>],
    kind_of: impl Fn(Uuid) -> Option<String>,
) -> Option<Vec<Problem>> {
    if p.deleted {
        return None;
    }
    if p.header.kind == TEMPLATE_KIND {
        let source = match p.fields.get("source") {
            Some(FieldValue::Str(s)) => s.clone(),
            _ => String::new(),
        };
        return match Template::parse(&source) {
            Ok(_) => None,
            Err(e) => Some(vec![Problem {
                field: "source".into(),
                code: ProblemCode::BadTemplate,
                zh: e.to_string(),
                en: e.to_string(),
            }]),
        };
    }
    let latest = templates.last()?;
    let template = match p.fields.get(FORM_VERSION_FIELD) {
        Some(FieldValue::Int(v)) => match templates.iter().find(|t| i64::from(t.version) == *v) {
            Some(t) => t,
            None => {
                return Some(vec![Problem {
                    field: FORM_VERSION_FIELD.into(),
                    code: ProblemCode::UnknownVersion,
                    zh: format!("记录按模板第 {v} 版填写，服务器没有这一版"),
                    en: format!(
                        "written with template version {v}, which this server does not have"
                    ),
                }]);
            }
        },
        _ => latest,
    };
    match template.validate(&p.header.kind, &p.fields, &kind_of, RefPolicy::IfKnown) {
        Ok(()) => None,
        Err(invalid) => Some(invalid.problems),
    }
}
