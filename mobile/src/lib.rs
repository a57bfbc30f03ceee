//! fieldsync-mobile: client-core for the phone apps, exported to Kotlin and Swift by uniffi.
//!
//! The API is shaped for an app developer, not a mirror of client-core:
//!
//! - [`FieldStore`] ([`store`]): one open store (plain or encrypted with a 32-byte key),
//!   enrollment, who am I, status; safe to call from several threads (calls queue on one lock).
//! - [`forms`]: the campaign's forms (kinds, fields, labels, choices) as plain records.
//! - [`records`]: create, edit, delete through the template; list, get, history, conflicts,
//!   resolve.
//! - [`syncing`]: sync as an async call with a progress callback and cancellation.
//! - [`bundles`]: sync through files (state, export, import).
//! - [`field_app`]: the field app on the store, for a WebView shell.
//! - [`error`]: [`FieldsyncError`], the one error type, Chinese and English.
//!
//! The Kotlin bindings (`mobile/kotlin`, tested on the JVM by `mobile/tests/kotlin.rs`) and the
//! Swift ones (`mobile/swift`, checked for drift by `mobile/tests/swift.rs`) are generated from
//! this crate's library by uniffi at the pinned version (docs/MOBILE.md).
//!
//! Slow calls (anything that reaches the network) are async; local calls are quick but still
//! touch the disk, so an app calls them off its UI thread.

pub mod bundles;
pub mod error;
pub mod field_app;
pub mod forms;
pub mod records;
pub mod store;
pub mod syncing;

pub use bundles::{BundleImported, BundleWritten};
pub use error::{FieldsyncError, FormProblem};
pub use forms::{Form, FormChoice, FormField};
pub use records::{
    ConflictChoice, ConflictView, FieldShown, HistoryChange, HistoryItem, RecordFilter, RecordView,
};
pub use store::{FieldStore, Identity, StoreStatus};
pub use syncing::{RefusedRecord, SyncProgress, SyncSummary, SyncUpdate};

uniffi::setup_scaffolding!();

/// Runs `f` on a thread of its own and waits for it without blocking the caller's executor:
/// what the async exports are made of, since client-core's sync and HTTP are blocking.
pub(crate) async fn on_thread<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name(format!("fieldsync-{name}"))
        .spawn(move || {
            let _ = tx.send(f());
        });
    if let Err(e) = spawned {
        panic!("cannot start a thread: {e}");
    }
    match rx.await {
        Ok(v) => v,
        Err(_) => panic!("the {name} thread panicked"),
    }
}
