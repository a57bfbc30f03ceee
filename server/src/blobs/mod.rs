//! Where attachment bytes live: files named by their SHA-256, received into a partial file that
//! only goes on the [`Shelf`] once its whole content hashes to its name.
//!
//! Layout under the root (the server's own directory): `uploads/<hex>.part` for bytes received
//! so far, `tmp/` for ZIPs being made and files fetched from an object store, `orphans/<hex>`
//! noting when a stored file was first found that no record refers to ([`crate::blob_gc`]),
//! `thumbs/ab/<hex>.jpg` previews of pictures ([`crate::thumbnails`]), and, with the default
//! [`DiskShelf`], `blobs/ab/<hex>` for the complete files (`ab` = the hash's first two digits).
//! With an [`ObjectShelf`] the complete files are in the object store instead. A file is never
//! changed once it is on the shelf, so it may be read without a lock; writes to one hash are
//! serialized by [`BlobStore::lock`].

pub mod object;
pub mod shelf;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use object::{ObjectShelf, ObjectShelfError};
pub use shelf::{ByteStream, DiskShelf, Shelf, StoredFile};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// Content-addressed files: those under way in a local directory, the complete ones on a shelf.
#[derive(Debug)]
pub struct BlobStore {
    root: PathBuf,
    shelf: Arc<dyn Shelf>,
    locks: Mutex<HashMap<String, Arc<Slot>>>,
}

/// The lock of one hash, and the signal that tells its holder a newer request wants it.
#[derive(Debug, Default)]
struct Slot {
    lock: Arc<tokio::sync::Mutex<()>>,
    /// Raised by every request that wants the lock; the holder stops when it moves.
    wanted: std::sync::atomic::AtomicU64,
    notify: tokio::sync::Notify,
}

/// The lock of one hash held by one request (see [`BlobStore::lock`]).
#[derive(Debug)]
pub struct Held {
    slot: Arc<Slot>,
    seen: u64,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Held {
    /// Completes when a newer request for the same hash wants the lock: the holder should
    /// stop reading its body, keep what it wrote, and let go (its client has most likely given
    /// up on it: a dropped line that the server has not noticed yet).
    pub async fn superseded(&self) {
        use std::sync::atomic::Ordering;
        loop {
            let notified = self.slot.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.slot.wanted.load(Ordering::SeqCst) != self.seen {
                return;
            }
            notified.await;
        }
    }
}

/// How a hash stands on this server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobState {
    /// The whole file is stored.
    Complete,
    /// This many bytes have arrived (0 when nothing has).
    Partial(u64),
}

impl BlobStore {
    /// A store rooted at `root` (created when first written) keeping complete files in
    /// `root/blobs`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let shelf = Arc::new(DiskShelf::new(root.join("blobs")));
        Self::with_shelf(root, shelf)
    }

    /// A store rooted at `root` keeping complete files on `shelf`.
    pub fn with_shelf(root: impl Into<PathBuf>, shelf: Arc<dyn Shelf>) -> Self {
        BlobStore {
            root: root.into(),
            shelf,
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// Where complete files are kept.
    pub fn shelf(&self) -> &dyn Shelf {
        self.shelf.as_ref()
    }

    /// The bytes of a complete file (`from..=to`, or all); `None` while it is not stored.
    pub async fn read(
        &self,
        sha256: &str,
        range: Option<(u64, u64)>,
    ) -> std::io::Result<Option<ByteStream>> {
        self.shelf.read(sha256, range).await
    }

    /// A complete file as a file on this machine's disk: the shelf's own, or a copy fetched
    /// into the scratch directory (removed when the answer is dropped). `None` while it is not
    /// stored.
    pub async fn local(&self, sha256: &str) -> std::io::Result<Option<LocalFile>> {
        if let Some(path) = self.shelf.local_path(sha256) {
            return Ok(tokio::fs::try_exists(&path)
                .await?
                .then_some(LocalFile::Shelf(path)));
        }
        let Some(mut bytes) = self.shelf.read(sha256, None).await? else {
            return Ok(None);
        };
        let dir = self.scratch_dir();
        tokio::fs::create_dir_all(&dir).await?;
        let temp = tempfile::Builder::new()
            .prefix(sha256)
            .tempfile_in(&dir)?
            .into_temp_path();
        let mut out = tokio::fs::File::create(&temp).await?;
        use futures_util::StreamExt;
        while let Some(chunk) = bytes.next().await {
            out.write_all(&chunk?).await?;
        }
        out.flush().await?;
        Ok(Some(LocalFile::Fetched(temp)))
    }

    /// A directory for files made on the way to an answer (a village's ZIP), removed as soon as
    /// they are open.
    pub fn scratch_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn part_path(&self, sha256: &str) -> PathBuf {
        self.root.join("uploads").join(format!("{sha256}.part"))
    }

    /// The lock of `sha256`, held while one request reads or writes its bytes. The newest
    /// request wins: asking for it tells the current holder ([`Held::superseded`]) to stop, as
    /// the resumable-upload draft asks of a server that gets a new request for an upload
    /// still in progress.
    pub async fn lock(&self, sha256: &str) -> Held {
        use std::sync::atomic::Ordering;
        let slot = {
            let mut locks = self.locks.lock().expect("blob locks");
            locks.retain(|_, l| Arc::strong_count(l) > 1);
            locks.entry(sha256.to_string()).or_default().clone()
        };
        // Each request takes a ticket; the holder is superseded by any later ticket, also one
        // taken while it was still waiting for the lock.
        let seen = slot.wanted.fetch_add(1, Ordering::SeqCst) + 1;
        slot.notify.notify_waiters();
        let guard = slot.lock.clone().lock_owned().await;
        Held {
            slot,
            seen,
            _guard: guard,
        }
    }

    /// Whether the file is stored, or how much of it has arrived.
    pub async fn state(&self, sha256: &str) -> std::io::Result<BlobState> {
        if self.shelf.has(sha256).await? {
            return Ok(BlobState::Complete);
        }
        match tokio::fs::metadata(self.part_path(sha256)).await {
            Ok(m) => Ok(BlobState::Partial(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BlobState::Partial(0)),
            Err(e) => Err(e),
        }
    }

    /// Opens the partial file to append at its end (created if absent). Hold [`Self::lock`].
    pub async fn append(&self, sha256: &str) -> std::io::Result<Partial> {
        let path = self.part_path(sha256);
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await?;
        let len = file.metadata().await?.len();
        Ok(Partial { file, len })
    }

    /// Puts the partial file on the shelf if its bytes hash to `sha256`; otherwise removes it.
    /// Returns whether it did. Hold [`Self::lock`].
    pub async fn complete(&self, sha256: &str) -> std::io::Result<bool> {
        let part = self.part_path(sha256);
        let hashed = {
            let part = part.clone();
            tokio::task::spawn_blocking(move || hash_file(&part))
                .await
                .map_err(std::io::Error::other)??
        };
        if hashed != sha256 {
            tokio::fs::remove_file(&part).await?;
            return Ok(false);
        }
        self.shelf.put(sha256, &part).await?;
        Ok(true)
    }
}

/// A complete file on this machine's disk (see [`BlobStore::local`]).
#[derive(Debug)]
pub enum LocalFile {
    /// The shelf's own file.
    Shelf(PathBuf),
    /// A copy fetched from the shelf, removed when this is dropped.
    Fetched(tempfile::TempPath),
}

impl LocalFile {
    /// Where it is.
    pub fn path(&self) -> &Path {
        match self {
            LocalFile::Shelf(p) => p,
            LocalFile::Fetched(p) => p,
        }
    }
}

impl BlobStore {
    /// Every complete file.
    pub async fn stored_files(&self) -> std::io::Result<Vec<StoredFile>> {
        self.shelf.list().await
    }

    /// Every partial upload (blocking).
    pub fn partial_files(&self) -> std::io::Result<Vec<StoredFile>> {
        shelf::listing(&self.root.join("uploads"), ".part", false)
    }

    fn orphan_path(&self, sha256: &str) -> PathBuf {
        self.root.join("orphans").join(sha256)
    }

    /// When `sha256` was first found unreferenced, if it is noted so (blocking).
    pub fn orphaned_since(&self, sha256: &str) -> std::io::Result<Option<std::time::SystemTime>> {
        match std::fs::read_to_string(self.orphan_path(sha256)) {
            Ok(t) => Ok(t
                .trim()
                .parse::<u64>()
                .ok()
                .map(|n| std::time::UNIX_EPOCH + std::time::Duration::from_nanos(n))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Notes that `sha256` was found unreferenced at `at` (blocking).
    pub fn note_orphan(&self, sha256: &str, at: std::time::SystemTime) -> std::io::Result<()> {
        let path = self.orphan_path(sha256);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // Nanoseconds, as file times are: a file written in the same second as the note must
        // still compare as older.
        let nanos = at
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        std::fs::write(path, nanos.to_string())
    }

    /// Every hash noted unreferenced (blocking).
    pub fn orphan_notes(&self) -> std::io::Result<Vec<String>> {
        Ok(shelf::listing(&self.root.join("orphans"), "", false)?
            .into_iter()
            .map(|o| o.sha256)
            .collect())
    }

    /// Forgets that `sha256` was unreferenced (a record refers to it again) (blocking).
    pub fn forget_orphan(&self, sha256: &str) -> std::io::Result<()> {
        remove_if_there(&self.orphan_path(sha256))
    }

    /// Removes a complete file, its preview and its note.
    pub async fn remove_stored(&self, sha256: &str) -> std::io::Result<()> {
        self.shelf.remove(sha256).await?;
        let (thumb, note) = (self.thumbnail_path(sha256), self.orphan_path(sha256));
        tokio::task::spawn_blocking(move || {
            remove_if_there(&thumb)?;
            remove_if_there(&note)
        })
        .await
        .map_err(std::io::Error::other)?
    }

    /// Where the small preview of a stored picture is kept (made by [`crate::thumbnails`]).
    pub fn thumbnail_path(&self, sha256: &str) -> PathBuf {
        self.root
            .join("thumbs")
            .join(&sha256[..2])
            .join(format!("{sha256}.jpg"))
    }

    /// Removes a partial upload (blocking).
    pub fn remove_partial(&self, sha256: &str) -> std::io::Result<()> {
        remove_if_there(&self.part_path(sha256))
    }
}

fn remove_if_there(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The partial file of one upload, open for appending.
#[derive(Debug)]
pub struct Partial {
    file: tokio::fs::File,
    len: u64,
}

impl Partial {
    /// Bytes in the file.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing has arrived.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends bytes.
    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.file.write_all(bytes).await?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Cuts the file back to `len` bytes (a request whose chunk failed its checksum).
    pub async fn truncate(&mut self, len: u64) -> std::io::Result<()> {
        self.file.flush().await?;
        self.file.set_len(len).await?;
        self.len = len;
        Ok(())
    }

    /// Writes what was received to disk.
    pub async fn finish(mut self) -> std::io::Result<u64> {
        self.file.flush().await?;
        self.file.sync_data().await?;
        Ok(self.len)
    }
}

fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_newer_request_tells_the_holder_to_let_go_and_then_gets_the_lock() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(BlobStore::new(dir.path()));
        let sha = "ab".repeat(32);
        let first = store.lock(&sha).await;
        // Nobody else wants it: the holder is not told to stop.
        let quiet = tokio::time::timeout(std::time::Duration::from_millis(50), first.superseded());
        assert!(quiet.await.is_err(), "superseded with nobody waiting");
        let (s2, h2) = (store.clone(), sha.clone());
        let second = tokio::spawn(async move { s2.lock(&h2).await });
        tokio::time::timeout(std::time::Duration::from_secs(5), first.superseded())
            .await
            .expect("the holder hears of the newer request");
        assert!(!second.is_finished(), "the lock is still held");
        drop(first);
        let second = tokio::time::timeout(std::time::Duration::from_secs(5), second)
            .await
            .expect("the newer request gets the lock")
            .expect("task");
        // The newer holder is not told to stop by its own request.
        let quiet = tokio::time::timeout(std::time::Duration::from_millis(50), second.superseded());
        assert!(quiet.await.is_err());

        // Two wait while one holds: the one that gets the lock first is superseded at once by
        // the one that came after it.
        let (s3, h3) = (store.clone(), sha.clone());
        let third = tokio::spawn(async move { s3.lock(&h3).await });
        tokio::task::yield_now().await;
        second.superseded().await;
        let (s4, h4) = (store.clone(), sha.clone());
        let fourth = tokio::spawn(async move { s4.lock(&h4).await });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        drop(second);
        let third = tokio::time::timeout(std::time::Duration::from_secs(5), third)
            .await
            .expect("the third gets the lock")
            .expect("task");
        tokio::time::timeout(std::time::Duration::from_secs(5), third.superseded())
            .await
            .expect("the fourth, waiting, supersedes the third");
        drop(third);
        let _ = fourth.await;
    }
}
