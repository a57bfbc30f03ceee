//! The role → scope rule: what a person's devices may see and write follows from their role and,
//! for leaders and workers, from their work group's villages. The storage reads the work group;
//! the rule is here.

use fieldsync_protocol::{
    auth::{Role, WireScope},
    template::CAMPAIGN_SCOPE,
};

/// A work group as the rule needs it: its campaign and the place codes of its villages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupPlaces {
    /// The work group's campaign.
    pub campaign: String,
    /// The place codes of its villages (in any order, repeats allowed).
    pub places: Vec<String>,
}

/// Whether a role's scope depends on its work group (so the storage must read it).
pub fn needs_group(role: Role) -> bool {
    matches!(role, Role::Leader | Role::Worker)
}

/// What a person of `role` may see and write: administrators everything (writing), department
/// viewers everything (reading only), leaders and workers the campaign-wide records and their
/// work group's villages (`group`: `None` when they have none, or it is gone).
pub fn of(role: Role, group: Option<GroupPlaces>) -> WireScope {
    match role {
        Role::Admin => return WireScope::everything(true),
        Role::Viewer => return WireScope::everything(false),
        Role::Leader | Role::Worker => {}
    }
    let mut scope = WireScope {
        all: false,
        campaign: None,
        places: Vec::new(),
        write: true,
    };
    let Some(group) = group else {
        return scope;
    };
    scope.campaign = Some(group.campaign);
    scope.places = group
        .places
        .into_iter()
        .filter(|code| code != CAMPAIGN_SCOPE)
        .collect();
    scope.places.sort();
    scope.places.dedup();
    scope
}

/// The ids of the place records a work group's merged fields (JSON) name in `villages`.
pub fn village_ids(fields: Option<&str>) -> Vec<String> {
    let villages = fields
        .and_then(|f| serde_json::from_str::<serde_json::Value>(f).ok())
        .and_then(|v| v.get("villages").and_then(|v| v.as_str()).map(String::from))
        .unwrap_or_default();
    villages
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_get_their_scopes() {
        assert_eq!(of(Role::Admin, None), WireScope::everything(true));
        assert_eq!(of(Role::Viewer, None), WireScope::everything(false));
        let leader = of(
            Role::Leader,
            Some(GroupPlaces {
                campaign: "c".into(),
                places: vec!["v2".into(), CAMPAIGN_SCOPE.into(), "v1".into(), "v2".into()],
            }),
        );
        assert_eq!(leader.places, vec!["v1", "v2"]);
        assert_eq!(leader.campaign.as_deref(), Some("c"));
        assert!(leader.write && !leader.all);
        assert!(of(Role::Worker, None).places.is_empty());
        assert_eq!(
            village_ids(Some(r#"{"villages":"a, b,,c"}"#)),
            vec!["a", "b", "c"]
        );
        assert!(village_ids(None).is_empty());
    }
}
