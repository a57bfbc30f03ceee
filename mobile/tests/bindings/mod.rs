//! What the binding tests share: the library cargo just built for them, and uniffi's generator
//! at the pinned version run on it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use camino::Utf8PathBuf;

/// `target/<profile>`: where cargo put this test and the library it depends on.
pub fn target_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe
        .parent()
        .and_then(Path::parent)
        .context("the test runs from target/<profile>/deps")?
        .to_path_buf())
}

/// The directory of the library built for this test: `target/<profile>/deps`. Cargo builds
/// the crate's cdylib there as a dependency of its integration tests, but copies it up to
/// `target/<profile>` only on `cargo build`, so the copy there may be stale.
pub fn library_dir() -> Result<PathBuf> {
    Ok(target_dir()?.join("deps"))
}

/// The host build of fieldsync-mobile (`libfieldsync_mobile.so` on Linux), what JNA loads.
pub fn library() -> Result<PathBuf> {
    let name = format!(
        "{}fieldsync_mobile{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    let path = library_dir()?.join(name);
    anyhow::ensure!(path.exists(), "{} was not built", path.display());
    Ok(path)
}

/// The crate's directory (`mobile/`).
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Generates the bindings of `language` from the library into `out_dir`, with the names of
/// `mobile/uniffi.toml`.
pub fn generate(language: uniffi::TargetLanguage, out_dir: &Path) -> Result<()> {
    if out_dir.exists() {
        std::fs::remove_dir_all(out_dir)?;
    }
    std::fs::create_dir_all(out_dir)?;
    let path = |p: PathBuf| Utf8PathBuf::from_path_buf(p).map_err(|p| anyhow::anyhow!("{p:?}"));
    uniffi::generate(uniffi::GenerateOptions {
        languages: vec![language],
        source: path(library()?)?,
        out_dir: path(out_dir.to_path_buf())?,
        // The names come from mobile/uniffi.toml, found beside the crate's Cargo.toml.
        config_override: None,
        format: false,
        crate_filter: None,
        metadata_no_deps: true,
    })
    .map_err(|e| anyhow::anyhow!("uniffi could not generate the bindings: {e:#}"))
}
