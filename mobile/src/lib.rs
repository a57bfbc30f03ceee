//! fieldsync-mobile: client-core for the phone apps, exported to Kotlin and Swift by uniffi.
//!
//! The API is shaped for an app developer, not a mirror of client-core:
//!
//! - [`FieldStore`] ([`store`]): one open store (plain or encrypted with a 32-byte key),
//!   enrollment, who am I, status; safe to call from several threads (calls queue on one lock).
//! - [`error`]: [`FieldsyncError`], the one error type, Chinese and English.
//!
//! Not yet here (issue 15, in progress): forms and records, sync with progress and
//! cancellation, bundles, the field app; the Kotlin and Swift bindings and their tests.
//!
//! Slow calls (anything that reaches the network) are async; local calls are quick but still
//! touch the disk, so an app calls them off its UI thread.

pub mod error;
pub mod store;

pub use error::{FieldsyncError, FormProblem};
pub use store::{FieldStore, Identity, StoreStatus};

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
