//! What the sync stories share: a device with its own store in a temp dir, the campaign and village they record in.
// Each story file uses some of these; what one file leaves unused is not dead.
#![allow(dead_code)]

use std::path::PathBuf;

use anyhow::Result;
use fieldsync::TestServer;
use fieldsync_client_core::{FieldValue, HttpTransport, Store, SyncOptions, sync::sync};
use uuid::Uuid;

/// A field device: its store and the temp dir that holds it.
pub struct Device {
    /// Removed with the device.
    pub _dir: tempfile::TempDir,
    /// The store's file.
    pub path: PathBuf,
    /// The open store.
    pub store: Store,
}

impl Device {
    /// A device with a new, empty store.
    pub fn new() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("device.sqlite3");
        let store = Store::open(&path)?;
        Ok(Device {
            _dir: dir,
            path,
            store,
        })
    }

    /// Syncs with the server at `url`, enrolled by the test server.
    pub fn sync(&mut self, url: &str) -> Result<fieldsync_client_core::SyncReport> {
        let mut t = fieldsync::connect(url, &self.store)?;
        Ok(sync(&mut self.store, &mut t, &SyncOptions::default())?)
    }

    /// Syncs with `server` through another address (a proxy in front of it).
    pub fn sync_via(
        &mut self,
        server: &TestServer,
        url: &str,
    ) -> Result<fieldsync_client_core::SyncReport> {
        let mut t = HttpTransport::new(url)?.with_token(server.token_for(&self.store)?);
        Ok(sync(&mut self.store, &mut t, &SyncOptions::default())?)
    }
}

/// The village every story records in.
pub const VILLAGE: &str = "350102001";

/// The stories' campaign.
pub fn campaign() -> Uuid {
    Uuid::from_u128(0x2026_1122)
}

/// A plain string value.
pub fn s(v: &str) -> FieldValue {
    FieldValue::Str(v.into())
}

/// A Text value (merges character by character).
pub fn text(v: &str) -> FieldValue {
    FieldValue::Text(v.into())
}
