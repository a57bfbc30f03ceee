//! The one SQL condition that limits a query to what the asker may see: every listing, search,
//! tally and pull of the SQLite storage puts it into its `WHERE`, so a `LIMIT` counts only rows the
//! asker may see and nothing is filtered after the fact.

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
}
