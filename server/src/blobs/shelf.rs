//! Where complete attachment files are kept: the [`Shelf`] trait, and [`DiskShelf`], its
//! implementation on a local directory (the default). [`super::object::ObjectShelf`] keeps them in
//! an S3-compatible object store instead.
//!
//! A shelf only ever holds whole files that hashed to their name: the bytes of an upload under
//! way stay in the server's own directory ([`super::BlobStore`]) until they are complete and
//! checked, and only then are put on the shelf. So a file on a shelf never changes, and a reader
//! needs no lock.

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;

/// The bytes of a file (or of a range of it), as they are read.
pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

/// A file as a shelf lists it.
#[derive(Debug, Clone)]
pub struct StoredFile {
    /// Its hash (its name).
    pub sha256: String,
    /// Bytes.
    pub len: u64,
    /// When it was put there.
    pub modified: SystemTime,
}

/// Where complete files live, named by their SHA-256 (lowercase hex).
#[async_trait]
pub trait Shelf: Send + Sync + std::fmt::Debug {
    /// Whether the file is on the shelf.
    async fn has(&self, sha256: &str) -> io::Result<bool>;

    /// Puts the local file `file`, whose bytes hash to `sha256`, on the shelf, and removes it
    /// from where it was. Putting a file that is already there is harmless (same name, same
    /// bytes).
    async fn put(&self, sha256: &str, file: &Path) -> io::Result<()>;

    /// The file's bytes `from..=to`, or all of them; `None` when it is not on the shelf.
    async fn read(&self, sha256: &str, range: Option<(u64, u64)>)
    -> io::Result<Option<ByteStream>>;

    /// Where the file is on this machine's disk, when the shelf is a directory here (it may not
    /// exist). `None` for a shelf elsewhere: read it with [`Shelf::read`].
    fn local_path(&self, sha256: &str) -> Option<PathBuf>;

    /// Every file on the shelf.
    async fn list(&self) -> io::Result<Vec<StoredFile>>;

    /// Removes the file (nothing happens when it is not there).
    async fn remove(&self, sha256: &str) -> io::Result<()>;

    /// What the shelf is, for logs and the administrators' page (no secrets).
    fn describe(&self) -> String;
}

/// A directory of files `ab/<hex>` (`ab` = the hash's first two digits).
#[derive(Debug, Clone)]
pub struct DiskShelf {
    dir: PathBuf,
}

impl DiskShelf {
    /// A shelf in `dir` (created when first written).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DiskShelf { dir: dir.into() }
    }

    /// The path of a file on this shelf.
    pub fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(&sha256[..2]).join(sha256)
    }
}

#[async_trait]
impl Shelf for DiskShelf {
    async fn has(&self, sha256: &str) -> io::Result<bool> {
        tokio::fs::try_exists(self.path(sha256)).await
    }

    async fn put(&self, sha256: &str, file: &Path) -> io::Result<()> {
        let to = self.path(sha256);
        if let Some(dir) = to.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        // The upload's directory is beside the shelf's on the same disk: a rename, atomic.
        tokio::fs::rename(file, &to).await
    }

    async fn read(
        &self,
        sha256: &str,
        range: Option<(u64, u64)>,
    ) -> io::Result<Option<ByteStream>> {
        use futures_util::StreamExt;
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let mut file = match tokio::fs::File::open(self.path(sha256)).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(match range {
            Some((from, to)) => {
                file.seek(io::SeekFrom::Start(from)).await?;
                tokio_util::io::ReaderStream::new(file.take(to + 1 - from)).boxed()
            }
            None => tokio_util::io::ReaderStream::new(file).boxed(),
        }))
    }

    fn local_path(&self, sha256: &str) -> Option<PathBuf> {
        Some(self.path(sha256))
    }

    async fn list(&self) -> io::Result<Vec<StoredFile>> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || listing(&dir, "", true))
            .await
            .map_err(io::Error::other)?
    }

    async fn remove(&self, sha256: &str) -> io::Result<()> {
        match tokio::fs::remove_file(self.path(sha256)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn describe(&self) -> String {
        format!("directory {}", self.dir.display())
    }
}

/// The files named `<hex><suffix>` in `dir` (or in its subdirectories when `nested`). Blocking.
pub(super) fn listing(dir: &Path, suffix: &str, nested: bool) -> io::Result<Vec<StoredFile>> {
    let mut out = Vec::new();
    let dirs: Vec<PathBuf> = if nested {
        match std::fs::read_dir(dir) {
            Ok(d) => d
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir())
                .collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        }
    } else {
        vec![dir.to_path_buf()]
    };
    for d in dirs {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for e in entries {
            let e = e?;
            let name = e.file_name().to_string_lossy().to_string();
            let Some(sha) = name.strip_suffix(suffix) else {
                continue;
            };
            if !fieldsync_protocol::attachment::is_sha256_hex(sha) {
                continue;
            }
            let m = e.metadata()?;
            out.push(StoredFile {
                sha256: sha.to_string(),
                len: m.len(),
                modified: m.modified()?,
            });
        }
    }
    Ok(out)
}
