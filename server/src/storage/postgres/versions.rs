//! Each place's version (`place_versions`): moved by every transaction that writes a place's
//! records (a push adds them, a merge writes their values), so that the tallies can keep what
//! they counted of a place and count it again only once its version has moved.
//!
//! A version is a number of `place_version_seq`, never given out twice by one database, so a
//! place whose row was dropped and written again cannot come back at a version a cache already
//! holds. (A database restored from a backup may give numbers out again: servers are restarted
//! after a restore, docs/PROTOCOL.md, Several servers.) The rows
//! are moved last in their transaction and in one order (campaign, then place): two servers
//! writing one village wait for each other only between that statement and their commit, and no
//! cycle of waits can form between transactions that lock them.

use std::collections::BTreeSet;

use deadpool_postgres::Transaction;

use super::StorageError;

/// Moves the versions of `places` ((campaign, place code) pairs, in any order, repeats
/// allowed) in `tx`: call it after the transaction's last write to `records`.
pub(super) async fn touch<'a>(
    tx: &Transaction<'_>,
    places: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), StorageError> {
    let places: BTreeSet<(&str, &str)> = places.into_iter().collect();
    if places.is_empty() {
        return Ok(());
    }
    let (campaigns, scopes): (Vec<&str>, Vec<&str>) = places.into_iter().unzip();
    tx.execute(
        "INSERT INTO place_versions (campaign, scope)
         SELECT u.campaign, u.scope
         FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u (campaign, scope, n)
         ORDER BY u.n
         ON CONFLICT (campaign, scope) DO UPDATE SET version = nextval('place_version_seq')",
        &[&campaigns, &scopes],
    )
    .await?;
    Ok(())
}
