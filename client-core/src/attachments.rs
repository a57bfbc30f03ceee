//! Files attached to records: a photo, scan or recording goes into a form's `attachments` field
//! as a reference (hash → description) validated by the template, its bytes kept in the store
//! until the server has them.

use std::collections::BTreeMap;

use fieldsync_protocol::FieldValue;
use fieldsync_protocol::attachment::{AttachmentRef, media_type_for, refs};
use fieldsync_protocol::template::FieldType;
use uuid::Uuid;

use crate::forms::FormError;
use crate::store::Store;

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
            at: now_ms(),
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

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
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
