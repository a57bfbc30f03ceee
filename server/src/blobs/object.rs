//! [`ObjectShelf`]: complete attachment files kept in an S3-compatible object store (Amazon S3,
//! MinIO, Ceph, the clouds' S3-compatible services), through the `object_store` crate, so that
//! several servers on one PostgreSQL share their files without a network file system.
//!
//! Objects are named `<prefix>/blobs/ab/<hex>`. The address is `s3://bucket/prefix`; the
//! credentials, region and endpoint come from the usual `AWS_*` environment variables
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`, and
//! `AWS_ALLOW_HTTP=true` for an endpoint on plain HTTP), read by `object_store` itself.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as Key;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::io::AsyncReadExt;

use super::shelf::{ByteStream, Shelf, StoredFile};

/// Files up to this size go up in one request; larger ones in parts of this size (S3 asks at
/// least 5 MiB of every part but the last).
const PART: usize = 8 << 20;

/// Parts sent at once.
const PARTS_AT_ONCE: usize = 2;

/// A shelf in an object store.
#[derive(Debug, Clone)]
pub struct ObjectShelf {
    store: Arc<dyn ObjectStore>,
    prefix: Key,
    address: String,
}

/// The object store could not be used as it was given.
#[derive(Debug, thiserror::Error)]
pub enum ObjectShelfError {
    /// Not an `s3://bucket/prefix` address.
    #[error("{0:?} is not an object store address: write it as s3://bucket or s3://bucket/prefix")]
    Address(String),
    /// The client could not be built from the address and the environment.
    #[error("cannot use the object store {address}: {reason}")]
    Client {
        /// The address given.
        address: String,
        /// What `object_store` said.
        reason: String,
    },
}

impl ObjectShelf {
    /// A shelf at `s3://bucket/prefix`, with the credentials, region and endpoint of the `AWS_*`
    /// environment variables, overridden by `options` (`object_store`'s keys, such as
    /// `aws_endpoint`, `aws_access_key_id`, `aws_allow_http`).
    pub fn s3(address: &str, options: &[(String, String)]) -> Result<Self, ObjectShelfError> {
        let (bucket, prefix) = parse_address(address)?;
        let mut builder = AmazonS3Builder::from_env();
        for (key, value) in options {
            let key = key
                .parse()
                .map_err(|e: object_store::Error| ObjectShelfError::Client {
                    address: address.to_string(),
                    reason: format!("{key:?} is not an S3 option: {e}"),
                })?;
            builder = builder.with_config(key, value);
        }
        let store =
            builder
                .with_bucket_name(bucket)
                .build()
                .map_err(|e| ObjectShelfError::Client {
                    address: address.to_string(),
                    reason: e.to_string(),
                })?;
        Ok(ObjectShelf {
            store: Arc::new(store),
            prefix: Key::from(prefix),
            address: address.to_string(),
        })
    }

    fn key(&self, sha256: &str) -> Key {
        self.prefix
            .clone()
            .join("blobs")
            .join(&sha256[..2])
            .join(sha256)
    }
}

/// `s3://bucket/a/b` as `("bucket", "a/b")`.
fn parse_address(address: &str) -> Result<(&str, &str), ObjectShelfError> {
    let rest = address
        .strip_prefix("s3://")
        .ok_or_else(|| ObjectShelfError::Address(address.to_string()))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty()
        || !bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    {
        return Err(ObjectShelfError::Address(address.to_string()));
    }
    Ok((bucket, prefix.trim_matches('/')))
}

fn other(e: object_store::Error) -> io::Error {
    match e {
        object_store::Error::NotFound { .. } => io::Error::new(io::ErrorKind::NotFound, e),
        e => io::Error::other(e),
    }
}

#[async_trait]
impl Shelf for ObjectShelf {
    async fn has(&self, sha256: &str) -> io::Result<bool> {
        match self.store.head(&self.key(sha256)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(other(e)),
        }
    }

    async fn put(&self, sha256: &str, file: &Path) -> io::Result<()> {
        let key = self.key(sha256);
        let mut f = tokio::fs::File::open(file).await?;
        let len = f.metadata().await?.len();
        if len <= PART as u64 {
            let mut bytes = Vec::with_capacity(len as usize);
            f.read_to_end(&mut bytes).await?;
            self.store
                .put(&key, PutPayload::from(bytes))
                .await
                .map_err(other)?;
        } else {
            let upload = self.store.put_multipart(&key).await.map_err(other)?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
            let mut buf = vec![0u8; 1 << 20];
            let sent: io::Result<()> = async {
                loop {
                    let n = f.read(&mut buf).await?;
                    if n == 0 {
                        return Ok(());
                    }
                    writer
                        .wait_for_capacity(PARTS_AT_ONCE)
                        .await
                        .map_err(other)?;
                    writer.write(&buf[..n]);
                }
            }
            .await;
            match sent {
                Ok(()) => {
                    writer.finish().await.map_err(other)?;
                }
                Err(e) => {
                    // The parts sent so far are dropped on the store's side.
                    let _ = writer.abort().await;
                    return Err(e);
                }
            }
        }
        tokio::fs::remove_file(file).await
    }

    async fn read(
        &self,
        sha256: &str,
        range: Option<(u64, u64)>,
    ) -> io::Result<Option<ByteStream>> {
        let options = GetOptions {
            range: range.map(|(from, to)| GetRange::Bounded(from..to + 1)),
            ..Default::default()
        };
        match self.store.get_opts(&self.key(sha256), options).await {
            Ok(got) => Ok(Some(got.into_stream().map_err(other).boxed())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(other(e)),
        }
    }

    fn local_path(&self, _sha256: &str) -> Option<PathBuf> {
        None
    }

    async fn list(&self) -> io::Result<Vec<StoredFile>> {
        let under = self.prefix.clone().join("blobs");
        let mut out = Vec::new();
        let mut listing = self.store.list(Some(&under));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(other)?;
            let Some(name) = meta.location.filename() else {
                continue;
            };
            if !fieldsync_protocol::attachment::is_sha256_hex(name) {
                continue;
            }
            out.push(StoredFile {
                sha256: name.to_string(),
                len: meta.size,
                modified: meta.last_modified.into(),
            });
        }
        Ok(out)
    }

    async fn remove(&self, sha256: &str) -> io::Result<()> {
        match self.store.delete(&self.key(sha256)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(other(e)),
        }
    }

    fn describe(&self) -> String {
        self.address.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_name_a_bucket_and_an_optional_prefix() {
        assert_eq!(parse_address("s3://zzb").unwrap(), ("zzb", ""));
        assert_eq!(
            parse_address("s3://zzb-files/fieldsync/2026/").unwrap(),
            ("zzb-files", "fieldsync/2026")
        );
        for bad in ["zzb", "s3://", "s3:///x", "https://zzb", "s3://ZZB"] {
            let e = parse_address(bad).unwrap_err();
            assert!(e.to_string().contains("s3://bucket"), "{bad}: {e}");
        }
    }
}
