//! The bytes of files attached to records (photos, scans, recordings), kept in the store's own
//! SQLite file (so an encrypted store encrypts them too) with whether the server has them yet.

use fieldsync_protocol::attachment::sha256_hex;
use rusqlite::{OptionalExtension, params};
use uuid::Uuid;

use super::{Result, Store, now_ms};

/// An attachment's bytes as the store keeps them, without the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAttachment {
    /// SHA-256 of the bytes (64 lowercase hex digits).
    pub sha256: String,
    /// The record it was first attached to.
    pub record: Uuid,
    /// Media type, such as `image/jpeg`.
    pub media_type: String,
    /// Size in bytes.
    pub size: u64,
    /// Whether the server has confirmed it holds the whole file.
    pub uploaded: bool,
}

impl Store {
    /// Keeps `bytes` under their SHA-256 (returned) for `record`. Adding the same bytes again
    /// keeps one copy. Returns whether they were new to this store.
    pub(crate) fn keep_attachment_bytes(
        &mut self,
        record: Uuid,
        media_type: &str,
        bytes: &[u8],
        uploaded: bool,
    ) -> Result<(String, bool)> {
        let sha = sha256_hex(bytes);
        let added = self.conn.execute(
            "INSERT OR IGNORE INTO attachments
                 (sha256, record_id, media_type, size, bytes, uploaded, added_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                sha,
                record.to_string(),
                media_type,
                bytes.len() as i64,
                bytes,
                uploaded,
                now_ms()
            ],
        )?;
        Ok((sha, added == 1))
    }

    /// Removes bytes that were kept for an attachment that was then refused.
    pub(crate) fn drop_attachment_bytes(&mut self, sha256: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM attachments WHERE sha256 = ?1", [sha256])?;
        Ok(())
    }

    /// The bytes of an attachment, if this store has them.
    pub fn attachment_bytes(&self, sha256: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .query_row(
                "SELECT bytes FROM attachments WHERE sha256 = ?1",
                [sha256],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Attachments whose bytes the server does not have yet, oldest first.
    pub fn attachments_to_upload(&self) -> Result<Vec<StoredAttachment>> {
        let mut stmt = self.conn.prepare(
            "SELECT sha256, record_id, media_type, size, uploaded FROM attachments
             WHERE uploaded = 0 ORDER BY added_at, sha256",
        )?;
        let rows = stmt.query_map([], stored)?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// What the store keeps of one file (its bytes not included): `None` when this device does
    /// not have its bytes (it was attached elsewhere and not opened here yet).
    pub fn stored_attachment(&self, sha256: &str) -> Result<Option<StoredAttachment>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT sha256, record_id, media_type, size, uploaded FROM attachments
             WHERE sha256 = ?1",
        )?;
        Ok(stmt.query_row([sha256], stored).optional()?)
    }

    /// Notes that the server holds the whole file.
    pub fn mark_attachment_uploaded(&mut self, sha256: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE attachments SET uploaded = 1 WHERE sha256 = ?1",
            [sha256],
        )?;
        Ok(())
    }
}

/// A row of `attachments` (sha256, record_id, media_type, size, uploaded).
fn stored(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredAttachment> {
    Ok(StoredAttachment {
        sha256: r.get(0)?,
        record: r
            .get::<_, String>(1)?
            .parse()
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?,
        media_type: r.get(2)?,
        size: r.get::<_, i64>(3)? as u64,
        uploaded: r.get(4)?,
    })
}
