//! The overdue rule of rectifications (整改): one rule for the tallies' count and the
//! dashboard's ledger.

/// Whether a rectification is overdue on `today` (`YYYY-MM-DD`, Beijing time): it is not
/// `done` and its deadline (`YYYY-MM-DD`) is before today. `status` and `deadline` are the
/// record's text fields, `""` when missing; without a deadline nothing is overdue.
pub fn overdue(status: &str, deadline: &str, today: &str) -> bool {
    status != "done" && !deadline.is_empty() && deadline < today
}

#[cfg(test)]
mod tests {
    use super::overdue;

    #[test]
    fn not_done_and_past_its_deadline() {
        let today = "2024-03-10";
        assert!(overdue("in_progress", "2024-03-09", today));
        assert!(overdue("", "2023-12-31", today), "no status is not done");
        assert!(!overdue("done", "2023-12-31", today));
        assert!(!overdue("in_progress", "2024-03-10", today), "due today");
        assert!(!overdue("in_progress", "", today), "no deadline");
    }
}
