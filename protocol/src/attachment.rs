//! Attachments (photos, recordings, scans): how a record refers to one, and the messages and
//! headers of their resumable upload and ranged download (see `docs/PROTOCOL.md`,
//! Attachments).
//!
//! An attachment is named by the SHA-256 of its bytes. A record refers to its attachments in a
//! field of type `attachments`, whose value is a map from the hash (64 lowercase hex digits) to
//! a short JSON description ([`AttachmentRef`]): each attachment is its own Automerge key, so
//! two people adding photos to the same record at once both keep theirs. The bytes travel apart
//! from record sync, after it.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::record::FieldValue;

/// The bytes of one upload request the client sends (the server takes any size up to
/// [`MAX_CHUNK_BYTES`]). Small enough that a line which drops every few hundred kilobytes still
/// gets whole requests through; what a cut request delivered is kept by the server anyway.
pub const CHUNK_BYTES: usize = 256 * 1024;

/// The most bytes the server takes in one upload request.
pub const MAX_CHUNK_BYTES: usize = 8 * 1024 * 1024;

/// `POST`: which of these attachments the server lacks, and from which offset to send them.
pub const MISSING_PATH: &str = "/v1/attachments/missing";

/// The tus protocol version whose core the upload follows (`Tus-Resumable`).
pub const TUS_VERSION: &str = "1.0.0";

/// Header: how many bytes of the file the server holds (tus `Upload-Offset`).
pub const UPLOAD_OFFSET: &str = "upload-offset";
/// Header: the whole file's size (tus `Upload-Length`).
pub const UPLOAD_LENGTH: &str = "upload-length";
/// Header: the checksum of this request's body, `sha256 <base64>` (tus checksum extension).
pub const UPLOAD_CHECKSUM: &str = "upload-checksum";
/// Header: the file's media type, sent with every upload request.
pub const UPLOAD_MEDIA_TYPE: &str = "upload-media-type";
/// Header: the tus version (`1.0.0`).
pub const TUS_RESUMABLE: &str = "tus-resumable";
/// The content type of an upload request's body (tus).
pub const OFFSET_CONTENT_TYPE: &str = "application/offset+octet-stream";

/// The path of one attachment of one record: `HEAD` (its offset), `PATCH` (upload from an
/// offset), `GET` (download, `Range: bytes=N-` to resume).
pub fn attachment_path(record: &uuid::Uuid, sha256: &str) -> String {
    format!("/v1/records/{record}/attachments/{sha256}")
}

/// The SHA-256 of `bytes`, as 64 lowercase hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Whether `s` is a SHA-256 written as 64 lowercase hex digits.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// What a record says about one attachment (the value under its hash in an `attachments`
/// field). Written once when the attachment is added; never edited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentRef {
    /// SHA-256 of the bytes (the map key; not repeated in the stored value).
    #[serde(skip)]
    pub sha256: String,
    /// Media type, such as `image/jpeg`.
    #[serde(rename = "type")]
    pub media_type: String,
    /// Size in bytes.
    pub size: u64,
    /// The file's original name.
    pub name: String,
    /// The device that added it.
    pub by: String,
    /// When it was added (ms since the Unix epoch).
    pub at: i64,
}

/// Why a value is not an attachment reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachmentError {
    /// The key is not a SHA-256.
    #[error("{0:?} is not a SHA-256 (64 lowercase hex digits)")]
    BadHash(String),
    /// The description does not parse.
    #[error("the description of attachment {0} is not valid: {1}")]
    BadDescription(String, String),
    /// The media type is not `type/subtype`.
    #[error("{0:?} is not a media type such as image/jpeg")]
    BadMediaType(String),
}

impl AttachmentRef {
    /// The description stored under the hash.
    pub fn description(&self) -> String {
        serde_json::to_string(self).expect("an attachment reference serializes")
    }

    /// Reads the entry `sha256 → description` of an `attachments` field.
    pub fn parse(sha256: &str, description: &str) -> Result<Self, AttachmentError> {
        if !is_sha256_hex(sha256) {
            return Err(AttachmentError::BadHash(sha256.into()));
        }
        let mut r: AttachmentRef = serde_json::from_str(description)
            .map_err(|e| AttachmentError::BadDescription(sha256.into(), e.to_string()))?;
        if !is_media_type(&r.media_type) {
            return Err(AttachmentError::BadMediaType(r.media_type));
        }
        r.sha256 = sha256.into();
        Ok(r)
    }

    /// The kind of thing it is, for showing: `image`, `audio`, `video`, `pdf` or `file`.
    pub fn family(&self) -> &'static str {
        family(&self.media_type)
    }
}

/// `image`, `audio`, `video`, `pdf` or `file` for a media type.
pub fn family(media_type: &str) -> &'static str {
    match media_type.split('/').next().unwrap_or("") {
        "image" => "image",
        "audio" => "audio",
        "video" => "video",
        _ if media_type == "application/pdf" => "pdf",
        _ => "file",
    }
}

/// Whether `s` is a media type `type/subtype` of the characters media types use.
pub fn is_media_type(s: &str) -> bool {
    let ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 100
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    match s.split_once('/') {
        Some((t, sub)) => ok(t) && ok(sub),
        None => false,
    }
}

/// Whether `media_type` is one of `accept` (`image/*` takes every image; an empty list takes
/// anything).
pub fn accepts(accept: &[String], media_type: &str) -> bool {
    accept.is_empty()
        || accept.iter().any(|a| match a.strip_suffix("/*") {
            Some(family) => media_type
                .split_once('/')
                .is_some_and(|(t, _)| t.eq_ignore_ascii_case(family)),
            None => a.eq_ignore_ascii_case(media_type),
        })
}

/// The media type for a file name's extension, for files added without one (`None` when the
/// extension is unknown).
pub fn media_type_for(name: &str) -> Option<&'static str> {
    let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "heic" => "image/heic",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "pdf" => "application/pdf",
        "mp3" => "audio/mpeg",
        "m4a" => "audio/mp4",
        "aac" => "audio/aac",
        "amr" => "audio/amr",
        "wav" => "audio/wav",
        "ogg" | "opus" => "audio/ogg",
        "mp4" => "video/mp4",
        "txt" => "text/plain",
        "doc" => "application/msword",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        _ => return None,
    })
}

/// A name safe to write as one file or one ZIP entry: no path separators, no characters Windows
/// refuses, no control characters, no leading dots (so never `..`); `_` when nothing is left.
pub fn safe_file_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if "/\\:*?\"<>|".contains(c) || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').trim();
    if cleaned.is_empty() {
        "_".into()
    } else {
        cleaned.to_string()
    }
}

/// A file's size as people read it: 2.4 MB, 830 KB, 512 B.
pub fn size_text(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{} KB", b.div_ceil(1 << 10)),
        b => format!("{b} B"),
    }
}

/// The media type a file is served as to a browser: pictures (not SVG, which may hold scripts),
/// recordings, videos and PDFs as they are, so that they show in the page; anything else as
/// `application/octet-stream`, saved and never rendered.
pub fn served_media_type(media_type: &str) -> &str {
    let shown = matches!(family(media_type), "image" | "audio" | "video" | "pdf")
        && !media_type.to_ascii_lowercase().contains("svg")
        && is_media_type(media_type);
    if shown {
        media_type
    } else {
        "application/octet-stream"
    }
}

/// The `Content-Disposition` header that serves a file under its original name (RFC 6266: an
/// ASCII fallback and the UTF-8 name, so 会议记录.jpg is saved as 会议记录.jpg): `inline` shows
/// it in the page, else it is saved.
pub fn content_disposition(name: &str, inline: bool) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._- ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let fallback = if fallback.trim_matches(['_', ' ', '.']).is_empty() {
        "file".to_string()
    } else {
        fallback
    };
    format!(
        "{}; filename=\"{fallback}\"; filename*=UTF-8''{}",
        if inline { "inline" } else { "attachment" },
        utf8_percent_encode(name, NON_ALPHANUMERIC)
    )
}

/// The attachments an `attachments` field's value refers to, in hash order; entries that do
/// not read are skipped (validation reports them).
pub fn refs(value: &FieldValue) -> Vec<AttachmentRef> {
    match value {
        FieldValue::Map(m) => m
            .iter()
            .filter_map(|(k, v)| AttachmentRef::parse(k, v).ok())
            .collect(),
        _ => Vec::new(),
    }
}

/// The attachments a record's projected fields (plain JSON, as the server and the store keep
/// them) refer to in any field: every object entry keyed by a SHA-256 whose value describes an
/// attachment.
pub fn refs_in_json(fields: &serde_json::Value) -> Vec<AttachmentRef> {
    let mut out = Vec::new();
    if let Some(fields) = fields.as_object() {
        for value in fields.values() {
            if let Some(map) = value.as_object() {
                for (k, v) in map {
                    if let Some(Ok(r)) = v.as_str().map(|d| AttachmentRef::parse(k, d)) {
                        out.push(r);
                    }
                }
            }
        }
    }
    out
}

/// One attachment a device asks about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingItem {
    /// A record that refers to it (the server checks that the device may see it).
    pub record: String,
    /// Its hash.
    pub sha256: String,
    /// Its size.
    pub size: u64,
}

/// `POST /v1/attachments/missing`: which of these the server lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingRequest {
    /// At most [`MAX_MISSING_ITEMS`].
    pub items: Vec<MissingItem>,
}

/// The most items in one [`MissingRequest`].
pub const MAX_MISSING_ITEMS: usize = 1000;

/// One attachment the server lacks, and how much of it it already holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Missing {
    /// Its hash.
    pub sha256: String,
    /// Bytes the server holds from an earlier, broken upload: send from here.
    pub offset: u64,
}

/// The answer to a [`MissingRequest`]: every asked hash not listed is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingResponse {
    /// What to send, with where to start.
    pub missing: Vec<Missing>,
}

/// The value of an `Upload-Checksum` header for `body`: `sha256 <base64 of the digest>`.
pub fn checksum_header(body: &[u8]) -> String {
    use base64::Engine;
    format!(
        "sha256 {}",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body))
    )
}

/// The digest an `Upload-Checksum: sha256 <base64>` header names, if it is one.
pub fn parse_checksum(header: &str) -> Option<[u8; 32]> {
    use base64::Engine;
    let b64 = header.trim().strip_prefix("sha256 ")?;
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?
        .try_into()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_cannot_leave_their_folder() {
        assert_eq!(safe_file_name("会议记录.jpg"), "会议记录.jpg");
        assert_eq!(safe_file_name("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(safe_file_name("a\\b:c*?\"<>|\r"), "a_b_c_______");
        assert_eq!(safe_file_name(" .. "), "_");
        assert_eq!(safe_file_name(".hidden"), "hidden");
    }

    #[test]
    fn sizes_read_as_people_say_them() {
        assert_eq!(size_text(512), "512 B");
        assert_eq!(size_text(830 * 1024 - 5), "830 KB");
        assert_eq!(size_text(2_516_582), "2.4 MB");
        assert_eq!(size_text(100 << 20), "100.0 MB");
    }

    #[test]
    fn files_are_served_so_that_none_can_run_as_a_page() {
        assert_eq!(served_media_type("image/jpeg"), "image/jpeg");
        assert_eq!(served_media_type("audio/mp4"), "audio/mp4");
        assert_eq!(served_media_type("application/pdf"), "application/pdf");
        assert_eq!(
            served_media_type("image/svg+xml"),
            "application/octet-stream"
        );
        assert_eq!(served_media_type("text/html"), "application/octet-stream");
        assert_eq!(
            served_media_type("image/jpeg\r\nx: y"),
            "application/octet-stream"
        );
        assert_eq!(
            content_disposition("会议记录 1.jpg", true),
            "inline; filename=\"____ 1.jpg\"; filename*=UTF-8''%E4%BC%9A%E8%AE%AE%E8%AE%B0%E5%BD%95%201%2Ejpg"
        );
        assert_eq!(
            content_disposition("\"a\"\r\n", false),
            "attachment; filename=\"_a___\"; filename*=UTF-8''%22a%22%0D%0A"
        );
        assert!(content_disposition("照片", true).contains("filename=\"file\""));
    }

    #[test]
    fn a_reference_reads_back_and_refuses_what_is_not_one() {
        let r = AttachmentRef {
            sha256: sha256_hex(b"photo"),
            media_type: "image/jpeg".into(),
            size: 5,
            name: "三会一课记录.jpg".into(),
            by: "device".into(),
            at: 1,
        };
        let back = AttachmentRef::parse(&r.sha256, &r.description()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.family(), "image");
        assert!(matches!(
            AttachmentRef::parse("ABC", &r.description()),
            Err(AttachmentError::BadHash(_))
        ));
        assert!(matches!(
            AttachmentRef::parse(&r.sha256, "{}"),
            Err(AttachmentError::BadDescription(..))
        ));
        let bad_type = r.description().replace("image/jpeg", "jpeg");
        assert!(matches!(
            AttachmentRef::parse(&r.sha256, &bad_type),
            Err(AttachmentError::BadMediaType(_))
        ));
    }

    #[test]
    fn accept_lists_take_families_and_exact_types() {
        let accept = vec!["image/*".to_string(), "application/pdf".to_string()];
        assert!(accepts(&accept, "image/jpeg"));
        assert!(accepts(&accept, "application/pdf"));
        assert!(!accepts(&accept, "audio/mpeg"));
        assert!(accepts(&[], "audio/mpeg"));
        assert_eq!(media_type_for("会议.JPG"), Some("image/jpeg"));
        assert_eq!(media_type_for("noext"), None);
    }

    #[test]
    fn the_checksum_header_is_the_tus_form() {
        assert_eq!(
            checksum_header(b""),
            "sha256 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
        let digest: [u8; 32] = Sha256::digest(b"chunk").into();
        assert_eq!(parse_checksum(&checksum_header(b"chunk")), Some(digest));
        assert_eq!(parse_checksum("md5 abc"), None);
        assert_eq!(parse_checksum("sha256 !!"), None);
    }
}
