//! The one SQL condition that limits a PostgreSQL query to what the asker may see (the same rule
//! as `storage::visible` for SQLite and `Visibility::sees`): every listing, search, tally and
//! pull of the PostgreSQL storage puts it into its `WHERE`, so a `LIMIT` counts only visible rows.

use fieldsync_protocol::template::CAMPAIGN_SCOPE;

use super::Visibility;

/// The condition that the `records` row aliased `alias` is visible. It takes three parameters:
/// `$n` whether everything is visible, `$n+1` the campaign, `$n+2` the visible place codes (a
/// `text[]`); see [`Params`].
pub(super) fn condition(alias: &str, n: usize) -> String {
    format!(
        "(${n}::boolean OR ({alias}.campaign = ${c}::text AND ({alias}.scope = 'campaign' \
         OR {alias}.scope = ANY(${p}::text[]))))",
        c = n + 1,
        p = n + 2
    )
}

/// The three parameters of [`condition`].
#[derive(Debug, Clone)]
pub(super) struct Params {
    /// Everything is visible.
    pub all: bool,
    /// The campaign (empty: none).
    pub campaign: String,
    /// The visible place codes.
    pub places: Vec<String>,
}

impl Params {
    /// The parameters of a visibility.
    pub fn of(v: &Visibility) -> Self {
        match v {
            Visibility::All => Params {
                all: true,
                campaign: String::new(),
                places: Vec::new(),
            },
            Visibility::Places { campaign, places } => Params {
                all: false,
                campaign: campaign.clone(),
                places: places.clone(),
            },
        }
    }
}

/// The same rule for the change log, where each change carries its record's campaign and place:
/// the condition that the `changes` row aliased `alias` is visible, with `$n` the campaign and
/// `$n+1` the visible places, campaign-wide records' [`CAMPAIGN_SCOPE`] among them (see
/// [`log_params`]). Written for the `changes_by_place` index (campaign, place, sequence number),
/// so that a pull reads the device's own part of the log however large the rest is.
pub(super) fn log_condition(alias: &str, n: usize) -> String {
    format!(
        "({alias}.campaign = ${n}::text AND {alias}.scope = ANY(${p}::text[]))",
        p = n + 1
    )
}

/// The two parameters of [`log_condition`]; `None` when everything is visible (the log is then
/// read in order, with no condition).
pub(super) fn log_params(v: &Visibility) -> Option<(String, Vec<String>)> {
    match v {
        Visibility::All => None,
        Visibility::Places { campaign, places } => {
            let mut codes = places.clone();
            codes.push(CAMPAIGN_SCOPE.to_string());
            Some((campaign.clone(), codes))
        }
    }
}
