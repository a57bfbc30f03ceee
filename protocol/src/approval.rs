//! A record's review state (待审核 / 已通过 / 退回修改): reserved fields kept in the record
//! itself, so that a review syncs to every device like any field, and the one rule of how a
//! state is read and how an edit sends a reviewed record back for review.
//!
//! A reviewer writes [`STATE_FIELD`] (`approved` or `returned`), [`COMMENT_FIELD`] (why, for a
//! return), [`BY_FIELD`] (the reviewer's name) and [`AT_FIELD`] (ms since the epoch) in one
//! change. Any later edit of another field by anyone writes [`STATE_FIELD`] = `pending` in the
//! same change (the comment stays, so the worker still reads why it came back). A record without
//! the field is pending. When an approval and an edit cross (both write [`STATE_FIELD`] at once),
//! the field is in conflict and the record reads as pending: nobody approved what was edited.

use std::collections::BTreeMap;

use crate::FieldValue;

/// The state: `pending`, `approved` or `returned`.
pub const STATE_FIELD: &str = "_review";
/// The reviewer's comment (why it was returned; may be empty for an approval).
pub const COMMENT_FIELD: &str = "_review_comment";
/// The reviewer's name.
pub const BY_FIELD: &str = "_review_by";
/// When it was reviewed, ms since the epoch.
pub const AT_FIELD: &str = "_review_at";

/// Whether `field` is one of the review's own fields (editing them does not reset the state).
pub fn is_review_field(field: &str) -> bool {
    matches!(field, STATE_FIELD | COMMENT_FIELD | BY_FIELD | AT_FIELD)
}

/// Where a record stands in review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// 待审核: new, or changed since it was last reviewed.
    Pending,
    /// 已通过.
    Approved,
    /// 退回修改, with a comment.
    Returned,
}

impl State {
    /// Every state, in the order pages list them.
    pub const ALL: [State; 3] = [State::Pending, State::Returned, State::Approved];

    /// The word stored in [`STATE_FIELD`] and used in URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Approved => "approved",
            State::Returned => "returned",
        }
    }

    /// Parses a stored or URL word.
    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The Chinese label.
    pub fn zh(self) -> &'static str {
        match self {
            State::Pending => "待审核",
            State::Approved => "已通过",
            State::Returned => "退回修改",
        }
    }

    /// The English label.
    pub fn en(self) -> &'static str {
        match self {
            State::Pending => "Awaiting review",
            State::Approved => "Approved",
            State::Returned => "Returned for changes",
        }
    }
}

/// A record's review as its fields say.
#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    /// The state.
    pub state: State,
    /// The last reviewer's comment, empty when none.
    pub comment: String,
    /// The last reviewer, empty when never reviewed.
    pub by: String,
    /// When it was last reviewed (ms), `None` when never.
    pub at: Option<i64>,
}

/// Reads the review from a record's fields. `state_conflicted` says whether [`STATE_FIELD`] is
/// in conflict (an approval crossed an edit): then it is pending whatever value won.
pub fn read(fields: &BTreeMap<String, FieldValue>, state_conflicted: bool) -> Review {
    let text = |name: &str| match fields.get(name) {
        Some(FieldValue::Str(s)) | Some(FieldValue::Text(s)) => s.clone(),
        _ => String::new(),
    };
    let state = if state_conflicted {
        State::Pending
    } else {
        State::parse(&text(STATE_FIELD)).unwrap_or(State::Pending)
    };
    Review {
        state,
        comment: text(COMMENT_FIELD),
        by: text(BY_FIELD),
        at: match fields.get(AT_FIELD) {
            Some(FieldValue::Int(i)) => Some(*i),
            _ => None,
        },
    }
}

/// The state word an edit must write with its other changes: `Some("pending")` when the record
/// has been reviewed (approved or returned) and the edit touches a field that is not the
/// review's own; `None` when nothing needs writing.
pub fn after_edit(current: Option<&FieldValue>, touches_other_fields: bool) -> Option<FieldValue> {
    let reviewed = matches!(current, Some(FieldValue::Str(s)) if s != State::Pending.as_str());
    (reviewed && touches_other_fields).then(|| FieldValue::Str(State::Pending.as_str().into()))
}

/// The fields a reviewer writes for `state` (approved or returned) with `comment`, by `by`,
/// at `at_ms`.
pub fn decision(state: State, comment: &str, by: &str, at_ms: i64) -> Vec<(String, FieldValue)> {
    vec![
        (STATE_FIELD.into(), FieldValue::Str(state.as_str().into())),
        (COMMENT_FIELD.into(), FieldValue::Str(comment.into())),
        (BY_FIELD.into(), FieldValue::Str(by.into())),
        (AT_FIELD.into(), FieldValue::Int(at_ms)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, FieldValue)]) -> BTreeMap<String, FieldValue> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn a_record_never_reviewed_is_pending() {
        let r = read(
            &fields(&[("topic", FieldValue::Str("座谈会".into()))]),
            false,
        );
        assert_eq!(r.state, State::Pending);
        assert_eq!(r.at, None);
    }

    #[test]
    fn a_return_reads_back_with_its_comment_and_reviewer() {
        let d = decision(State::Returned, "缺少参会人数", "王部长", 42);
        let f: BTreeMap<_, _> = d.into_iter().collect();
        let r = read(&f, false);
        assert_eq!(r.state, State::Returned);
        assert_eq!(r.comment, "缺少参会人数");
        assert_eq!(r.by, "王部长");
        assert_eq!(r.at, Some(42));
    }

    #[test]
    fn a_conflicted_state_reads_as_pending_whatever_won() {
        let f = fields(&[(STATE_FIELD, FieldValue::Str("approved".into()))]);
        assert_eq!(read(&f, false).state, State::Approved);
        assert_eq!(read(&f, true).state, State::Pending);
    }

    #[test]
    fn only_an_edit_of_a_reviewed_record_writes_pending() {
        let approved = FieldValue::Str("approved".into());
        let pending = FieldValue::Str("pending".into());
        assert_eq!(after_edit(Some(&approved), true), Some(pending.clone()));
        assert_eq!(after_edit(Some(&approved), false), None);
        assert_eq!(after_edit(Some(&pending), true), None);
        assert_eq!(after_edit(None, true), None);
        assert!(is_review_field(COMMENT_FIELD) && !is_review_field("notes"));
    }
}
