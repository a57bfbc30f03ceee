//! Each village's progress against the campaign's targets (every member interviewed, villagers,
//! meetings, questionnaires, evaluation forms, document reviews), and whether it is behind: a
//! village short of a target is 未完成, past the deadline 已逾期, within a week of it 临近时限.

use crate::storage::{Tallies, Targets, VillageTally};

/// One target of one village: what it is, how far, how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The measure in Chinese (谈话成员, 座谈会, …).
    pub zh: &'static str,
    /// The measure in English.
    pub en: &'static str,
    /// How many are done.
    pub done: u64,
    /// How many the target asks for.
    pub target: u64,
}

impl Item {
    /// Whether the target is reached.
    pub fn met(&self) -> bool {
        self.done >= self.target
    }
}

/// Where a village stands against the targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Every target reached.
    Done,
    /// Short of a target, the deadline not near (or none set).
    Working,
    /// Short of a target, the deadline a week away or less.
    DeadlineNear,
    /// Short of a target, the deadline passed.
    Overdue,
}

impl Standing {
    /// The standing as the overview says it.
    pub fn label(self, en: bool) -> &'static str {
        match (self, en) {
            (Standing::Done, false) => "已完成",
            (Standing::Done, true) => "done",
            (Standing::Working, false) => "未完成",
            (Standing::Working, true) => "in progress",
            (Standing::DeadlineNear, false) => "临近时限",
            (Standing::DeadlineNear, true) => "deadline near",
            (Standing::Overdue, false) => "已逾期",
            (Standing::Overdue, true) => "overdue",
        }
    }

    /// Whether the village is behind (short of a target near or past the deadline).
    pub fn behind(self) -> bool {
        matches!(self, Standing::DeadlineNear | Standing::Overdue)
    }
}

/// A village's items against `targets`, in a fixed order; none when no target is set.
pub fn items(v: &VillageTally, targets: &Targets) -> Vec<Item> {
    let mut out = Vec::new();
    if targets.all_members && v.members > 0 {
        out.push(Item {
            zh: "谈话成员",
            en: "members interviewed",
            done: v.members_interviewed,
            target: v.members,
        });
    }
    for (target, done, zh, en) in [
        (
            targets.villagers,
            v.villager_interviews,
            "谈话群众",
            "villagers interviewed",
        ),
        (targets.meetings, v.meetings, "座谈会", "meetings"),
        (
            targets.questionnaires,
            v.questionnaires,
            "问卷",
            "questionnaires",
        ),
        (
            targets.evaluations,
            v.evaluations,
            "测评表",
            "evaluation forms",
        ),
        (
            targets.document_reviews,
            v.document_reviews,
            "查阅资料",
            "document reviews",
        ),
    ] {
        if let Some(target) = target {
            out.push(Item {
                zh,
                en,
                done,
                target,
            });
        }
    }
    out
}

/// Days from `from` to `to` (both `YYYY-MM-DD`); `None` when either is not a date.
fn days_between(from: &str, to: &str) -> Option<i64> {
    use fieldsync_protocol::dates::days_from_civil;
    Some(days_from_civil(to)? - days_from_civil(from)?)
}

/// Where a village with `items` stands on `today` (`YYYY-MM-DD`) given the deadline.
pub fn standing(items: &[Item], deadline: Option<&str>, today: &str) -> Standing {
    if items.iter().all(Item::met) {
        return Standing::Done;
    }
    match deadline.and_then(|d| days_between(today, d)) {
        Some(left) if left < 0 => Standing::Overdue,
        Some(left) if left <= 7 => Standing::DeadlineNear,
        _ => Standing::Working,
    }
}

/// Days left to the campaign's deadline on `today` (negative when past).
pub fn days_left(t: &Tallies, today: &str) -> Option<i64> {
    t.targets
        .deadline
        .as_deref()
        .and_then(|d| days_between(today, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn village() -> VillageTally {
        VillageTally {
            members: 5,
            members_interviewed: 5,
            villager_interviews: 3,
            meetings: 1,
            questionnaires: 30,
            ..Default::default()
        }
    }

    #[test]
    fn only_set_targets_count_and_the_deadline_decides_who_is_behind() {
        let targets = Targets {
            all_members: true,
            villagers: Some(5),
            meetings: Some(1),
            deadline: Some("2026-12-10".into()),
            ..Default::default()
        };
        let items = items(&village(), &targets);
        assert_eq!(
            items
                .iter()
                .map(|i| (i.zh, i.done, i.target))
                .collect::<Vec<_>>(),
            vec![("谈话成员", 5, 5), ("谈话群众", 3, 5), ("座谈会", 1, 1)]
        );
        let deadline = targets.deadline.as_deref();
        assert_eq!(standing(&items, deadline, "2026-11-01"), Standing::Working);
        assert_eq!(
            standing(&items, deadline, "2026-12-04"),
            Standing::DeadlineNear
        );
        assert_eq!(standing(&items, deadline, "2026-12-11"), Standing::Overdue);
        assert_eq!(standing(&items, None, "2030-01-01"), Standing::Working);
        assert!(Standing::Overdue.behind() && !Standing::Working.behind());
        // Every target met: done whatever the date.
        let met = &items[..1];
        assert_eq!(standing(met, deadline, "2027-01-01"), Standing::Done);
        assert!(super::items(&village(), &Targets::default()).is_empty());
    }

    #[test]
    fn days_between_civil_dates() {
        assert_eq!(days_between("2026-12-04", "2026-12-10"), Some(6));
        assert_eq!(days_between("2026-12-31", "2027-01-01"), Some(1));
        assert_eq!(days_between("2024-02-28", "2024-03-01"), Some(2));
        assert_eq!(days_between("x", "2024-03-01"), None);
    }
}
