//! Files attached to records: a photo, scan or recording goes into a form's `attachments` field
//! as a reference (hash → description) validated by the template, its bytes kept in the store
//! until the server has them.

use std::collections::BTreeMap;

use fieldsync_protocol::FieldValue;
use fieldsync_protocol::attachment::{
    AttachmentRef, CHUNK_BYTES, MAX_CHUNK_BYTES, MAX_MISSING_ITEMS, MissingItem, MissingRequest,
    MissingResponse, media_type_for, refs, sha256_hex,
};
use fieldsync_protocol::template::FieldType;
use uuid::Uuid;

use crate::forms::FormError;
use crate::store::{Store, StoreError};
use crate::sync::TransportError;

type Result<T> = std::result::Result<T, FormError>;

impl Store {
    /// Attaches a file to `field` of record `id`: the bytes are kept in the store and the
    /// field's map gains the file's reference, checked against the form (accepted types, largest
    /// size) like any edit. `media_type` is told from the name's extension when not given. The
    /// same file attached twice is one entry. If the form refuses it, nothing is kept.
    pub fn attach(
        &mut self,
        id: Uuid,
        field: &str,
        name: &str,
        media_type: Option<&str>,
        bytes: &[u8],
    ) -> Result<AttachmentRef> {
        let record = self.get(id)?;
        let template = self
            .template(record.header.campaign)?
            .ok_or(FormError::NoTemplate(record.header.campaign))?;
        let is_attachments = template
            .kind(&record.header.kind)
            .and_then(|k| k.field(field))
            .is_some_and(|f| f.field_type == FieldType::Attachments);
        if !is_attachments {
            return Err(FormError::NotAttachments {
                field: field.into(),
            });
        }
        let media_type = match media_type {
            Some(t) => t.trim().to_ascii_lowercase(),
            None => media_type_for(name)
                .ok_or_else(|| FormError::UnknownMediaType { name: name.into() })?
                .to_string(),
        };
        let (sha256, new) = self.keep_attachment_bytes(id, &media_type, bytes, false)?;
        let reference = AttachmentRef {
            sha256: sha256.clone(),
            media_type,
            size: bytes.len() as u64,
            name: name.into(),
            by: self.device_id().to_string(),
            at: crate::store::now_ms(),
        };
        let mut entries: BTreeMap<String, String> = match record.fields.get(field) {
            Some(FieldValue::Map(m)) => m.clone(),
            _ => BTreeMap::new(),
        };
        if let Some(existing) = entries.get(&sha256)
            && let Ok(r) = AttachmentRef::parse(&sha256, existing)
        {
            return Ok(r);
        }
        entries.insert(sha256.clone(), reference.description());
        let changes = BTreeMap::from([(field.to_string(), FieldValue::Map(entries))]);
        if let Err(e) = self.edit_form(id, &changes) {
            if new {
                self.drop_attachment_bytes(&sha256)?;
            }
            return Err(e);
        }
        Ok(reference)
    }

    /// The files attached to a record, every attachments field together, in hash order.
    pub fn attachments_of(&self, id: Uuid) -> Result<Vec<AttachmentRef>> {
        let record = self.get(id)?;
        Ok(record.fields.values().flat_map(refs).collect())
    }
}

/// How a device sends and fetches attachment bytes (implemented by [`crate::HttpTransport`]).
pub trait BlobTransport {
    /// Of the files listed, those the server does not hold whole, with the offset to send from.
    fn missing(&mut self, request: &MissingRequest) -> Result2<MissingResponse>;
    /// How many bytes of the file the server has.
    fn offset(&mut self, record: Uuid, sha256: &str) -> Result2<u64>;
    /// Sends `chunk` to be written at `offset`; the server's offset after it. Sent without a
    /// per-chunk checksum, so that what arrived of a cut chunk is kept (the whole file's hash is
    /// checked by the server when the last byte arrives).
    fn append(&mut self, record: Uuid, sha256: &str, offset: u64, chunk: &[u8]) -> Result2<u64>;
    /// Appends the file's bytes from byte `into.len()` on (a ranged request when it is not 0).
    /// What arrived before the connection broke stays in `into`, so the next call goes on from
    /// there.
    fn download_from(&mut self, record: Uuid, sha256: &str, into: &mut Vec<u8>) -> Result2<()>;
}

type Result2<T> = std::result::Result<T, TransportError>;

/// Why sending or fetching attachments stopped.
#[derive(Debug, thiserror::Error)]
pub enum AttachmentSyncError {
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The server could not be reached often enough, or refused.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// What the server sent does not hash to the file's name.
    #[error(
        "附件 {0} 下载后校验不符，已丢弃，请重试 / attachment {0} did not match its hash and was dropped: try again"
    )]
    Corrupt(String),
}

/// What an upload did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UploadReport {
    /// Files the server now holds whole that it did not before.
    pub uploaded: u64,
    /// Files the server already had (sent by another device, or before a cut).
    pub already_there: u64,
    /// Files left for the next sync (their record has not reached the server yet).
    pub waiting: u64,
    /// Bytes of file content sent (chunks sent again after a cut included).
    pub bytes_sent: u64,
    /// Requests that failed and were retried.
    pub retries: u64,
}

/// How far an upload has got, told after each chunk the server took (for a progress bar).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadProgress {
    /// Which file is being sent (1-based) of how many this upload sends.
    pub file: usize,
    /// How many files this upload sends.
    pub files: usize,
    /// The file being sent.
    pub sha256: String,
    /// Bytes of it the server holds.
    pub sent: u64,
    /// Its size.
    pub size: u64,
}

impl UploadProgress {
    /// How much of the file the server holds, in whole percent.
    pub fn percent(&self) -> u64 {
        (self.sent.min(self.size) * 100)
            .checked_div(self.size)
            .unwrap_or(100)
    }
}

/// How many rounds an upload waits for the server to merge the records that refer to files.
const NOT_MERGED_WAITS: u32 = 10;

/// Sends every file the server lacks, from the server's offset, in chunks of [`CHUNK_BYTES`].
/// After a cut the server's offset is asked (what arrived of the cut chunk is kept there) and
/// sending goes on from it. A cut or a busy server is retried up to `max_retries` times in all
/// before the error is returned; what arrived stays on the server, so the next call resumes.
pub fn upload_attachments(
    store: &mut Store,
    transport: &mut dyn BlobTransport,
    max_retries: u64,
) -> std::result::Result<UploadReport, AttachmentSyncError> {
    upload_attachments_with_progress(store, transport, max_retries, &mut |_| {})
}

/// [`upload_attachments`], telling `progress` where it is after every chunk.
pub fn upload_attachments_with_progress(
    store: &mut Store,
    transport: &mut dyn BlobTransport,
    max_retries: u64,
    progress: &mut dyn FnMut(&UploadProgress),
) -> std::result::Result<UploadReport, AttachmentSyncError> {
    let mut report = UploadReport::default();
    let waiting = store.attachments_to_upload()?;
    let files = waiting.len();
    // The files the server lacks, each with the offset it holds.
    let mut queue = Vec::new();
    for batch in waiting.chunks(MAX_MISSING_ITEMS) {
        let request = MissingRequest {
            items: batch
                .iter()
                .map(|a| MissingItem {
                    record: a.record.to_string(),
                    sha256: a.sha256.clone(),
                    size: a.size,
                })
                .collect(),
        };
        let missing = retrying(&mut report, max_retries, || transport.missing(&request))?;
        for a in batch {
            match missing.missing.iter().find(|m| m.sha256 == a.sha256) {
                Some(m) => queue.push((a.clone(), m.offset)),
                None => {
                    store.mark_attachment_uploaded(&a.sha256)?;
                    report.already_there += 1;
                }
            }
        }
    }
    // Files whose record the server has not merged yet (just pushed) go to the back of the
    // queue, so that the others are sent meanwhile; after a few rounds they wait for the next
    // sync.
    let mut file = 0;
    let mut chunk = CHUNK_BYTES;
    let mut refused: Option<TransportError> = None;
    for round in 0..=NOT_MERGED_WAITS {
        let mut deferred = Vec::new();
        let mut wait = std::time::Duration::ZERO;
        for (a, offset) in queue {
            let Some(bytes) = store.attachment_bytes(&a.sha256)? else {
                continue;
            };
            if round == 0 {
                file += 1;
            }
            let mut tell = |sent: u64| {
                progress(&UploadProgress {
                    file,
                    files,
                    sha256: a.sha256.clone(),
                    sent,
                    size: bytes.len() as u64,
                })
            };
            match send_file(
                transport,
                &a,
                &bytes,
                (offset, &mut chunk),
                max_retries,
                &mut report,
                &mut tell,
            )? {
                Sent::Whole => {
                    store.mark_attachment_uploaded(&a.sha256)?;
                    report.uploaded += 1;
                }
                Sent::NotMerged {
                    offset,
                    retry_after,
                } => {
                    wait = wait.max(retry_after);
                    deferred.push((a, offset));
                }
                Sent::Refused(e) => {
                    report.waiting += 1;
                    refused.get_or_insert(e);
                }
            }
        }
        if deferred.is_empty() {
            break;
        }
        if round == NOT_MERGED_WAITS {
            report.waiting += deferred.len() as u64;
            break;
        }
        std::thread::sleep(wait);
        queue = deferred;
    }
    // The others were sent; the refusal is still the answer (the files wait on the device).
    if let Some(e) = refused {
        return Err(e.into());
    }
    Ok(report)
}

/// How sending one file ended (errors aside).
enum Sent {
    /// The server holds it whole.
    Whole,
    /// Its record has not been merged by the server yet: try again after `retry_after`.
    NotMerged {
        offset: u64,
        retry_after: std::time::Duration,
    },
    /// The server will not take it now (its campaign's quota is full).
    Refused(TransportError),
}

/// A chunk that arrives within this long makes the next one twice as large.
const FAST_CHUNK: std::time::Duration = std::time::Duration::from_secs(1);

/// Sends one file from `offset` in chunks, resuming from the server's offset after a cut. The
/// chunk starts at [`CHUNK_BYTES`] and doubles after each one that arrived within
/// [`FAST_CHUNK`] (a fast line then needs few requests), up to [`MAX_CHUNK_BYTES`]; a failure
/// brings it back to the start.
fn send_file(
    transport: &mut dyn BlobTransport,
    a: &crate::store::StoredAttachment,
    bytes: &[u8],
    (offset, chunk): (u64, &mut usize),
    max_retries: u64,
    report: &mut UploadReport,
    tell: &mut dyn FnMut(u64),
) -> std::result::Result<Sent, AttachmentSyncError> {
    let mut offset = offset.min(bytes.len() as u64);
    tell(offset);
    loop {
        // At the end too a request is sent (empty): only the server's answer that it holds the
        // whole file counts, never an offset equal to the size (the last step, hashing and
        // storing, may have failed after every byte arrived).
        let end = (offset as usize + *chunk).min(bytes.len());
        let started = std::time::Instant::now();
        match transport.append(a.record, &a.sha256, offset, &bytes[offset as usize..end]) {
            Ok(next) => {
                if started.elapsed() < FAST_CHUNK && end - offset as usize == *chunk {
                    *chunk = (*chunk * 2).min(MAX_CHUNK_BYTES);
                }
                report.bytes_sent += (end - offset as usize) as u64;
                offset = next;
                tell(offset);
                if offset >= bytes.len() as u64 {
                    return Ok(Sent::Whole);
                }
            }
            Err(TransportError::Refused {
                code, retry_after, ..
            }) if code == "not_referenced" => {
                return Ok(Sent::NotMerged {
                    offset,
                    retry_after: retry_after.unwrap_or(std::time::Duration::from_secs(1)),
                });
            }
            // No room for this file: not worth retrying; the other files go on.
            Err(e @ TransportError::Refused { .. }) if matches!(&e, TransportError::Refused { code, .. } if code == "quota_exceeded") =>
            {
                return Ok(Sent::Refused(e));
            }
            Err(e) => {
                let resumable = e.is_retryable()
                    || matches!(&e, TransportError::Refused { code, .. }
                        if code == "offset_mismatch" || code == "superseded"
                            || code == "checksum_mismatch" || code == "body_cut"
                            || code == "hash_mismatch");
                if !resumable || report.retries >= max_retries {
                    return Err(e.into());
                }
                *chunk = CHUNK_BYTES;
                report.retries += 1;
                report.bytes_sent += (end - offset as usize) as u64;
                if let Some(t) = e.retry_after() {
                    std::thread::sleep(t);
                }
                offset = retrying(report, max_retries, || {
                    transport.offset(a.record, &a.sha256)
                })?;
            }
        }
    }
}

fn retrying<T>(
    report: &mut UploadReport,
    max_retries: u64,
    mut f: impl FnMut() -> Result2<T>,
) -> std::result::Result<T, AttachmentSyncError> {
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retryable() && report.retries < max_retries => {
                report.retries += 1;
                if let Some(t) = e.retry_after() {
                    std::thread::sleep(t);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Fetches a file of a record from the server, checks its hash and keeps it in the store.
pub fn download_attachment(
    store: &mut Store,
    transport: &mut dyn BlobTransport,
    record: Uuid,
    sha256: &str,
) -> std::result::Result<Vec<u8>, AttachmentSyncError> {
    if let Some(bytes) = store.attachment_bytes(sha256)? {
        return Ok(bytes);
    }
    let bytes = fetch_attachment(transport, record, sha256)?;
    store.keep_fetched_attachment(record, &bytes)?;
    Ok(bytes)
}

/// How many broken connections a download goes on after (from the byte it had got to).
const DOWNLOAD_RETRIES: u32 = 50;

/// Fetches a file of a record from the server and checks its hash, without the store (so that a
/// slow download holds no lock on it); [`Store::keep_fetched_attachment`] keeps it after. A
/// connection that breaks is asked again from the byte it had got to, up to
/// [`DOWNLOAD_RETRIES`] times.
pub fn fetch_attachment(
    transport: &mut dyn BlobTransport,
    record: Uuid,
    sha256: &str,
) -> std::result::Result<Vec<u8>, AttachmentSyncError> {
    let mut bytes = Vec::new();
    let mut retries = 0;
    loop {
        match transport.download_from(record, sha256, &mut bytes) {
            Ok(()) => break,
            Err(e) if e.is_retryable() && retries < DOWNLOAD_RETRIES => {
                retries += 1;
                if let Some(t) = e.retry_after() {
                    std::thread::sleep(t);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    if sha256_hex(&bytes) != sha256 {
        return Err(AttachmentSyncError::Corrupt(sha256.into()));
    }
    Ok(bytes)
}

/// What fetching a village's files did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchReport {
    /// Files fetched now.
    pub fetched: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Files this device held already.
    pub here: u64,
    /// Files not fetched (not on the server yet, or the line gave out), with why.
    pub failed: Vec<(String, String)>,
}

/// Fetches every file of the village's records (`scope`) that this device does not hold, so that
/// they open offline later; `progress` hears (done, all) after each. A file the server refuses
/// or sends wrong is named in the report and the others go on; a line that stays broken ends
/// it (what was fetched is kept).
pub fn fetch_village(
    store: &mut Store,
    transport: &mut dyn BlobTransport,
    (campaign, scope): (Uuid, &str),
    progress: &mut dyn FnMut(usize, usize),
) -> std::result::Result<FetchReport, AttachmentSyncError> {
    let records = store.list(&crate::store::Filter {
        scope: Some(scope.to_string()),
        campaign: Some(campaign),
        ..Default::default()
    })?;
    let mut wanted = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut report = FetchReport::default();
    for r in records.iter().filter(|r| !r.deleted) {
        for f in r.fields.values().flat_map(refs) {
            if !seen.insert(f.sha256.clone()) {
                continue;
            }
            if store.stored_attachment(&f.sha256)?.is_some() {
                report.here += 1;
            } else {
                wanted.push((r.header.id, f));
            }
        }
    }
    let all = wanted.len();
    for (i, (record, f)) in wanted.into_iter().enumerate() {
        match fetch_attachment(transport, record, &f.sha256) {
            Ok(bytes) => {
                store.keep_fetched_attachment(record, &bytes)?;
                report.fetched += 1;
                report.bytes += bytes.len() as u64;
            }
            Err(AttachmentSyncError::Transport(e)) if !e.is_retryable() => {
                report.failed.push((f.name.clone(), e.to_string()));
            }
            Err(e @ AttachmentSyncError::Corrupt(_)) => {
                report.failed.push((f.name.clone(), e.to_string()));
            }
            Err(e) => return Err(e),
        }
        progress(i + 1, all);
    }
    Ok(report)
}

impl Store {
    /// Keeps the bytes of a file fetched from the server for `record` (already on the server,
    /// so never uploaded again), with the media type its reference gives.
    pub fn keep_fetched_attachment(
        &mut self,
        record: Uuid,
        bytes: &[u8],
    ) -> std::result::Result<(), StoreError> {
        let sha256 = sha256_hex(bytes);
        let media_type = self
            .get(record)
            .ok()
            .and_then(|r| {
                r.fields
                    .values()
                    .flat_map(refs)
                    .find(|a| a.sha256 == sha256)
            })
            .map(|r| r.media_type)
            .unwrap_or_else(|| "application/octet-stream".into());
        self.keep_attachment_bytes(record, &media_type, bytes, true)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use fieldsync_protocol::template::{ProblemCode, Template};

    use super::*;

    const TEMPLATE: &str = r#"
id = "t"
version = 1
name.zh = "测试"
name.en = "Test"
[kinds.visit]
label = { zh = "走访", en = "Visit" }
[[kinds.visit.fields]]
name = "who"
type = "text"
label = { zh = "对象", en = "Who" }
[[kinds.visit.fields]]
name = "photos"
type = "attachments"
accept = ["image/*"]
max_bytes = 100
label = { zh = "照片", en = "Photos" }
"#;

    fn problem(e: FormError) -> ProblemCode {
        match e {
            FormError::Invalid(i) => i.problems[0].code,
            other => panic!("expected a problem of the form, got {other}"),
        }
    }

    #[test]
    fn a_file_is_kept_once_checked_by_the_form_and_waits_for_upload() {
        let mut store = Store::open_in_memory().unwrap();
        let campaign = Uuid::now_v7();
        store
            .publish_template(campaign, &Template::parse(TEMPLATE).unwrap())
            .unwrap();
        let fields = BTreeMap::from([("who".to_string(), FieldValue::Str("张三".into()))]);
        let id = store
            .create_form(campaign, "visit", "350102001", &fields)
            .unwrap();

        let photo = store
            .attach(id, "photos", "会议记录.JPG", None, b"jpeg bytes")
            .unwrap();
        assert_eq!(photo.media_type, "image/jpeg");
        assert_eq!(photo.size, 10);
        assert_eq!(
            store.attachment_bytes(&photo.sha256).unwrap().as_deref(),
            Some(&b"jpeg bytes"[..])
        );
        // The same file again is the same entry.
        let again = store
            .attach(id, "photos", "copy.jpg", None, b"jpeg bytes")
            .unwrap();
        assert_eq!(again, photo);
        store
            .attach(id, "photos", "scan.png", None, b"png bytes")
            .unwrap();
        assert_eq!(store.attachments_of(id).unwrap().len(), 2);

        // Refused by the form: nothing kept.
        let audio = store
            .attach(id, "photos", "talk.mp3", None, b"mp3 bytes")
            .unwrap_err();
        assert_eq!(problem(audio), ProblemCode::AttachmentType);
        let big = vec![0u8; 101];
        let too_large = store
            .attach(id, "photos", "big.png", None, &big)
            .unwrap_err();
        assert_eq!(problem(too_large), ProblemCode::AttachmentTooLarge);
        let hash = fieldsync_protocol::attachment::sha256_hex(&big);
        assert_eq!(store.attachment_bytes(&hash).unwrap(), None);
        assert!(matches!(
            store.attach(id, "who", "a.jpg", None, b"x"),
            Err(FormError::NotAttachments { .. })
        ));
        assert!(matches!(
            store.attach(id, "photos", "noext", None, b"x"),
            Err(FormError::UnknownMediaType { .. })
        ));
        assert_eq!(store.attachments_of(id).unwrap().len(), 2);

        let waiting = store.attachments_to_upload().unwrap();
        assert_eq!(waiting.len(), 2);
        assert!(waiting.iter().all(|a| a.record == id && !a.uploaded));
        store.mark_attachment_uploaded(&photo.sha256).unwrap();
        let waiting = store.attachments_to_upload().unwrap();
        assert_eq!(waiting.len(), 1);
        assert_eq!(waiting[0].media_type, "image/png");
    }
}
