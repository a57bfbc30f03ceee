//! Sync without the server through files (a USB stick, Bluetooth, a chat app): the state file
//! of what a device holds, a bundle of what another lacks, and its import with the same checks
//! as a server sync. Files are written whole or not at all.

use std::path::Path;

use fieldsync_client_core::bundle::Export;

use crate::error::Result;
use crate::store::FieldStore;

/// What a bundle export wrote.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct BundleWritten {
    /// Records with changes in the bundle.
    pub records: u64,
    /// Changes in the bundle.
    pub changes: u64,
    /// The file's size in bytes.
    pub bytes: u64,
}

/// What a bundle import did.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct BundleImported {
    /// Changes this device did not have.
    pub new_changes: u64,
    /// Changes it had already (importing twice is harmless).
    pub known_changes: u64,
    /// Changes kept until a change they depend on arrives.
    pub waiting: u64,
    /// Records whose values changed.
    pub records_changed: u64,
}

/// Writes `bytes` to `path` through a temporary file beside it, so that a full disk or a crash
/// never leaves half a file under the name.
fn write_whole(path: &str, bytes: &[u8]) -> Result<()> {
    let path = Path::new(path);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".part");
    std::fs::write(&tmp, bytes)?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.into());
    }
    Ok(())
}

#[uniffi::export]
impl FieldStore {
    /// Writes this device's state file to `path`: what it holds, for another device to export
    /// what it lacks.
    pub fn write_bundle_state(&self, path: String) -> Result<u64> {
        let bytes = self.with(|s| Ok(s.bundle_state()?))?;
        write_whole(&path, &bytes)?;
        Ok(bytes.len() as u64)
    }

    /// Writes a bundle to `path`: every change this device holds, or, given the other device's
    /// state file (`state_path`), only what that device lacks.
    pub fn export_bundle(&self, path: String, state_path: Option<String>) -> Result<BundleWritten> {
        let which = match &state_path {
            Some(p) => Export::Lacking(std::fs::read(p)?),
            None => Export::All,
        };
        let (bytes, stats) = self.with(|s| Ok(s.export_bundle(&which)?))?;
        write_whole(&path, &bytes)?;
        Ok(BundleWritten {
            records: stats.records as u64,
            changes: stats.changes as u64,
            bytes: bytes.len() as u64,
        })
    }

    /// Imports the bundle at `path`, checked as a server sync checks a push: all of it or, if
    /// anything in it is invalid, nothing. Imported changes upload with this device's next sync
    /// (the server keeps each change once, whoever delivers it).
    pub fn import_bundle(&self, path: String) -> Result<BundleImported> {
        let bytes = std::fs::read(&path)?;
        let stats = self.with(|s| Ok(s.import_bundle(&bytes)?))?;
        Ok(BundleImported {
            new_changes: stats.new_changes,
            known_changes: stats.known_changes,
            waiting: stats.waiting,
            records_changed: stats.records_changed,
        })
    }
}
