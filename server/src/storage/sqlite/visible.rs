//! The one SQL condition that limits a query to what the asker may see: every listing, search,
//! tally and pull of the SQLite storage puts it into its `WHERE`, so a `LIMIT` counts only rows the
//! asker may see and nothing is filtered after the fact.

use fieldsync_protocol::template::CAMPAIGN_SCOPE;

use crate::storage::Visibility;

/// The condition that the `records` row aliased `alias` is visible. It takes two parameters:
/// `?{n}`, the campaign (NULL for everything), and `?{n + 1}`, the visible place codes as a JSON
/// array (see [`params`]).
pub(crate) fn condition(alias: &str, n: usize) -> String {
    let m = n + 1;
    format!(
        "(?{n} IS NULL OR ({alias}.campaign = ?{n} AND ({alias}.scope = 'campaign' \
         OR {alias}.scope IN (SELECT value FROM json_each(?{m})))))"
    )
}

/// The two parameters of [`condition`].
pub(crate) fn params(v: &Visibility) -> (Option<String>, String) {
    match v {
        Visibility::All => (None, "[]".into()),
        Visibility::Places { campaign, places } => (
            Some(campaign.clone()),
            serde_json::to_string(places).unwrap_or_else(|_| "[]".into()),
        ),
    }
}

/// The same rule for the change log, where each change carries its record's campaign and
/// place: the condition that the `changes` row aliased `alias` is visible, with the two
/// parameters of [`log_params`] as `?{n}` and `?{n + 1}`. Written for the `changes_by_place`
/// index (campaign, place, sequence number), so that a pull reads the device's own part of the
/// log however large the rest is.
pub(crate) fn log_condition(alias: &str, n: usize) -> String {
    let m = n + 1;
    format!("({alias}.campaign = ?{n} AND {alias}.scope IN (SELECT value FROM json_each(?{m})))")
}

/// The two parameters of [`log_condition`]: the campaign and the visible places as a JSON array,
/// campaign-wide records' [`CAMPAIGN_SCOPE`] among them. `None` when everything is visible: then
/// the log is read in order, with no condition.
pub(crate) fn log_params(v: &Visibility) -> Option<(String, String)> {
    match v {
        Visibility::All => None,
        Visibility::Places { campaign, places } => {
            let mut codes: Vec<&str> = places.iter().map(String::as_str).collect();
            codes.push(CAMPAIGN_SCOPE);
            Some((
                campaign.clone(),
                serde_json::to_string(&codes).unwrap_or_else(|_| "[]".into()),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    #[test]
    fn the_condition_keeps_exactly_the_visible_rows() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE records (id TEXT, campaign TEXT, scope TEXT);
             INSERT INTO records VALUES ('a', 'c1', 'v1'), ('b', 'c1', 'v2'),
                                        ('c', 'c1', 'campaign'), ('d', 'c2', 'v1'),
                                        ('e', 'c2', 'campaign');",
        )
        .unwrap();
        let ids = |v: &Visibility| -> Vec<String> {
            let (c, p) = params(v);
            let sql = format!(
                "SELECT id FROM records r WHERE {} ORDER BY id",
                condition("r", 1)
            );
            let mut stmt = conn.prepare(&sql).unwrap();
            stmt.query_map(rusqlite::params![c, p], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        assert_eq!(ids(&Visibility::All), ["a", "b", "c", "d", "e"]);
        let v1 = Visibility::Places {
            campaign: "c1".into(),
            places: vec!["v1".into()],
        };
        assert_eq!(ids(&v1), ["a", "c"]);
        let none = Visibility::Places {
            campaign: "c1".into(),
            places: vec![],
        };
        assert_eq!(ids(&none), ["c"]);
    }

    #[test]
    fn the_log_condition_keeps_the_changes_of_exactly_the_visible_records() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE records (id TEXT, campaign TEXT, scope TEXT);
             CREATE TABLE changes (seq INTEGER PRIMARY KEY, record_id TEXT, campaign TEXT,
                                   scope TEXT);
             INSERT INTO records VALUES ('a', 'c1', 'v1'), ('b', 'c1', 'v2'),
                                        ('c', 'c1', 'campaign'), ('d', 'c2', 'v1'),
                                        ('e', 'c2', 'campaign');
             INSERT INTO changes (record_id, campaign, scope)
                 SELECT id, campaign, scope FROM records;
             INSERT INTO changes (record_id, campaign, scope)
                 SELECT id, campaign, scope FROM records;",
        )
        .unwrap();
        for v in [
            Visibility::Places {
                campaign: "c1".into(),
                places: vec!["v1".into()],
            },
            Visibility::Places {
                campaign: "c1".into(),
                places: vec![],
            },
            Visibility::Places {
                campaign: "c2".into(),
                places: vec!["v1".into(), "v2".into()],
            },
        ] {
            let (c, p) = params(&v);
            let by_record: Vec<i64> = conn
                .prepare(&format!(
                    "SELECT c.seq FROM changes c JOIN records r ON r.id = c.record_id
                     WHERE {} ORDER BY c.seq",
                    condition("r", 1)
                ))
                .unwrap()
                .query_map(rusqlite::params![c, p], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let (c, p) = log_params(&v).expect("a scoped visibility");
            let by_change: Vec<i64> = conn
                .prepare(&format!(
                    "SELECT seq FROM changes c WHERE {} ORDER BY seq",
                    log_condition("c", 1)
                ))
                .unwrap()
                .query_map(rusqlite::params![c, p], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert!(!by_record.is_empty());
            assert_eq!(by_change, by_record, "{v:?}");
        }
        assert_eq!(log_params(&Visibility::All), None);
    }
}
