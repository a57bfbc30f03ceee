//! A village's progress as this device holds it, for the home page: members interviewed of all
//! members, the counts of the other work, rectifications open and done, and whether each team's
//! assessment (分析研判) is written. Computed from the device's own records, so it shows what the
//! work group has recorded even while offline (the department's dashboard counts the server's).

use std::collections::BTreeSet;

use fieldsync_client_core::{FieldValue, Filter, Record, Store};
use fieldsync_protocol::template::Template;
use uuid::Uuid;

use crate::AppError;
use crate::page::Lang;

/// The kinds counted on a village's card after the interviews, in this order.
pub const COUNTED_KINDS: &[&str] = &[
    "meeting",
    "questionnaire",
    "evaluation",
    "document_review",
    "finding",
];

/// What a village's card shows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Progress {
    /// Team members of the village.
    pub members: usize,
    /// Members with at least one interview recorded.
    pub interviewed: usize,
    /// (label, records) of each of [`COUNTED_KINDS`] the template has.
    pub counts: Vec<(String, usize)>,
    /// Rectifications not done yet.
    pub open: usize,
    /// Rectifications done.
    pub done: usize,
    /// Teams of the village.
    pub teams: usize,
    /// Teams whose assessment is written.
    pub assessed: usize,
}

fn list(store: &Store, campaign: Uuid, code: &str, kind: &str) -> Result<Vec<Record>, AppError> {
    Ok(store.list(&Filter {
        kind: Some(kind.into()),
        scope: Some(code.into()),
        campaign: Some(campaign),
        ..Default::default()
    })?)
}

fn str_of<'r>(r: &'r Record, field: &str) -> Option<&'r str> {
    match r.fields.get(field) {
        Some(FieldValue::Str(s)) => Some(s.as_str()),
        _ => None,
    }
}

/// The progress of village `code` in `campaign`.
pub fn of_village(
    store: &Store,
    lang: Lang,
    template: Option<&Template>,
    campaign: Uuid,
    code: &str,
) -> Result<Progress, AppError> {
    let members: BTreeSet<String> = list(store, campaign, code, "member")?
        .iter()
        .map(|m| m.header.id.to_string())
        .collect();
    let interviewed: BTreeSet<String> = list(store, campaign, code, "interview")?
        .iter()
        .filter_map(|i| str_of(i, "interviewee"))
        .filter(|id| members.contains(*id))
        .map(str::to_string)
        .collect();
    let mut counts = Vec::new();
    for kind in COUNTED_KINDS {
        let Some(def) = template.and_then(|t| t.kind(kind)) else {
            continue;
        };
        let n = list(store, campaign, code, kind)?.len();
        counts.push((lang.t(&def.label.zh, &def.label.en).to_string(), n));
    }
    let rectifications = list(store, campaign, code, "rectification")?;
    let done = rectifications
        .iter()
        .filter(|r| str_of(r, "status") == Some("done"))
        .count();
    let teams: BTreeSet<String> = list(store, campaign, code, "team")?
        .iter()
        .map(|t| t.header.id.to_string())
        .collect();
    let assessed: BTreeSet<String> = list(store, campaign, code, "assessment")?
        .iter()
        .filter(|a| str_of(a, "target_type") == Some("team"))
        .filter_map(|a| str_of(a, "target"))
        .filter(|id| teams.contains(*id))
        .map(str::to_string)
        .collect();
    Ok(Progress {
        members: members.len(),
        interviewed: interviewed.len(),
        counts,
        open: rectifications.len() - done,
        done,
        teams: teams.len(),
        assessed: assessed.len(),
    })
}
