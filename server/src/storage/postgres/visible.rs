//! The one SQL condition that limits a PostgreSQL query to what the asker may see (the same rule
//! as `storage::visible` for SQLite and `Visibility::sees`): every listing, search, tally and
//! pull of the PostgreSQL storage puts it into its `WHERE`, so a `LIMIT` counts only visible rows.

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
