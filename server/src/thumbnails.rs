//! Small JPEG previews of the photos attached to records, for the dashboard's pages: made once
//! from the stored file (JPEG, PNG, GIF, TIFF, BMP), kept beside it, so that a dossier with fifty
//! photos does not send the department a hundred megabytes. Other pictures (HEIC, WebP) get none:
//! the pages show their name and a link.

use std::path::{Path, PathBuf};

use crate::blobs::BlobStore;

/// The longest side of a preview, in pixels (sharp at the dashboard's 12rem on a high-density
/// screen).
pub const SIDE: u32 = 400;

/// The most memory decoding one picture may take (a 48-megapixel photo in RGBA is 192 MB).
const DECODE_LIMIT: u64 = 256 << 20;

/// Whether pictures of this media type get a preview.
pub fn can_preview(media_type: &str) -> bool {
    matches!(
        media_type.to_ascii_lowercase().as_str(),
        "image/jpeg"
            | "image/jpg"
            | "image/png"
            | "image/gif"
            | "image/tiff"
            | "image/bmp"
            | "image/webp"
    )
}

/// The preview of stored picture `sha256`: made now from the file at `source` (the stored file
/// on this machine's disk, see [`BlobStore::local`]) if it is not there yet. `None` when it is
/// not and there is no `source`, or the file is not a picture this server can read. Blocking:
/// call it off the async threads (and not too many at once: decoding a large photo takes
/// memory).
pub fn preview(blobs: &BlobStore, sha256: &str, source: Option<&Path>) -> Option<PathBuf> {
    let thumb = blobs.thumbnail_path(sha256);
    if thumb.exists() {
        return Some(thumb);
    }
    let mut reader = image::ImageReader::open(source?)
        .ok()?
        .with_guessed_format()
        .ok()?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(DECODE_LIMIT);
    reader.limits(limits);
    let picture = reader.decode().ok()?;
    let small = picture.thumbnail(SIDE, SIDE).into_rgb8();
    let dir = thumb.parent()?;
    std::fs::create_dir_all(dir).ok()?;
    // Written aside and renamed, so that a half-written preview is never served.
    let part = dir.join(format!("{sha256}.{}.part", uuid::Uuid::new_v4()));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&part).ok()?);
    let encoded = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
        .encode_image(&small)
        .is_ok();
    drop(out);
    if !encoded || std::fs::rename(&part, &thumb).is_err() {
        let _ = std::fs::remove_file(&part);
        return None;
    }
    Some(thumb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_photo_gets_a_small_preview_once_and_other_files_none() {
        let dir = tempfile::tempdir().expect("temp dir");
        let blobs = BlobStore::new(dir.path());
        // A 1200 × 900 photo, stored as the server stores blobs.
        let photo = image::RgbImage::from_fn(1200, 900, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
        });
        let mut bytes = std::io::Cursor::new(Vec::new());
        photo
            .write_to(&mut bytes, image::ImageFormat::Jpeg)
            .expect("encode");
        let bytes = bytes.into_inner();
        let sha = fieldsync_protocol::attachment::sha256_hex(&bytes);
        let path = dir.path().join("photo.jpg");
        std::fs::write(&path, &bytes).unwrap();

        let thumb = preview(&blobs, &sha, Some(&path)).expect("a preview");
        let small = image::open(&thumb).expect("the preview is a picture");
        assert_eq!((small.width(), small.height()), (400, 300));
        assert!(std::fs::metadata(&thumb).unwrap().len() < bytes.len() as u64);
        // Made once: the same file is answered again.
        let made = std::fs::metadata(&thumb).unwrap().modified().unwrap();
        assert_eq!(preview(&blobs, &sha, None), Some(thumb.clone()));
        assert_eq!(std::fs::metadata(&thumb).unwrap().modified().unwrap(), made);

        // A phone's WebP photo gets one too.
        let webp = image::RgbImage::from_fn(800, 600, |x, y| {
            image::Rgb([(y % 256) as u8, 90, (x % 256) as u8])
        });
        let mut bytes = std::io::Cursor::new(Vec::new());
        webp.write_to(&mut bytes, image::ImageFormat::WebP)
            .expect("encode WebP");
        let bytes = bytes.into_inner();
        let webp_sha = fieldsync_protocol::attachment::sha256_hex(&bytes);
        let webp_path = dir.path().join("photo.webp");
        std::fs::write(&webp_path, &bytes).unwrap();
        assert!(can_preview("image/webp"));
        let thumb = preview(&blobs, &webp_sha, Some(&webp_path)).expect("a WebP preview");
        let small = image::open(&thumb).expect("the preview is a picture");
        assert_eq!((small.width(), small.height()), (400, 300));

        // A recording is no picture; a file not stored has no preview.
        let sound = b"ID3 not a picture".to_vec();
        let sound_sha = fieldsync_protocol::attachment::sha256_hex(&sound);
        let sound_path = dir.path().join("sound.mp3");
        std::fs::write(&sound_path, &sound).unwrap();
        assert_eq!(preview(&blobs, &sound_sha, Some(&sound_path)), None);
        assert_eq!(preview(&blobs, &"cd".repeat(32), None), None);
    }
}
