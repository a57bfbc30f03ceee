//! The Swift bindings never drift from the library: generates the Swift source, the C header
//! and the module map from the library cargo just built and compares them with the ones
//! checked in under `mobile/swift/` (what an iOS app's XCFramework ships). After changing the
//! API, run `FIELDSYNC_BLESS=1 cargo test -p fieldsync-mobile --test swift` and commit them.

mod bindings;

use anyhow::{Result, ensure};

const FILES: &[&str] = &[
    "FieldsyncMobile.swift",
    "fieldsync_mobileFFI.h",
    "fieldsync_mobileFFI.modulemap",
];

#[test]
fn the_checked_in_swift_bindings_match_the_library() -> Result<()> {
    let out = tempfile::tempdir()?;
    bindings::generate(uniffi::TargetLanguage::Swift, out.path())?;
    let checked_in = bindings::crate_dir().join("swift");
    let bless = std::env::var_os("FIELDSYNC_BLESS").is_some();
    let mut drifted = Vec::new();
    for name in FILES {
        let fresh = std::fs::read_to_string(out.path().join(name))?;
        ensure!(
            fresh.to_lowercase().contains("fieldstore") || name.ends_with(".modulemap"),
            "{name} does not describe the store"
        );
        let path = checked_in.join(name);
        if bless {
            std::fs::create_dir_all(&checked_in)?;
            std::fs::write(&path, &fresh)?;
            continue;
        }
        if std::fs::read_to_string(&path).ok().as_deref() != Some(fresh.as_str()) {
            drifted.push(*name);
        }
    }
    ensure!(
        drifted.is_empty(),
        "mobile/swift/{{{}}} no longer match the library's interface: run \
         `FIELDSYNC_BLESS=1 cargo test -p fieldsync-mobile --test swift` and commit them",
        drifted.join(",")
    );
    Ok(())
}
