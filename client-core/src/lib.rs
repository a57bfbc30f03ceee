//! fieldsync client-core: the offline record store and its sync, embedded by the mobile app, the
//! command line and the tests.
//!
//! - [`account`]: enrolling the device with a one-time code; its token and server.
//! - [`store`]: [`Store`], one SQLite file of Automerge record documents with a queryable
//!   projection, local edits, conflicts, and the change log with its sync state.
//! - [`sync`]: [`sync()`](sync::sync), the push-then-pull driver, over any [`Transport`].
//! - [`forms`]: records written through their campaign's template (validated first), templates
//!   as records, campaigns.
//! - [`attachments`]: files (photos, scans, recordings) attached to a form's attachments field.
//! - [`import`]: places, members and work groups from CSV (UTF-8 or GBK), all or nothing.
//! - [`bundle`]: sync without the server, through files exchanged between devices.
//! - [`http`]: [`HttpTransport`], the only code here that touches the network.
//!
//! ```no_run
//! use fieldsync_client_core::{FieldValue, HttpTransport, Store, sync};
//! # fn main() -> anyhow::Result<()> {
//! let mut store = Store::open("device.sqlite3")?;
//! let campaign = uuid::Uuid::now_v7();
//! let id = store.create("interview", campaign, "350102001", &[
//!     ("interviewee", FieldValue::Str("张三".into())),
//!     ("notes", FieldValue::Text("村集体经济收入不高".into())),
//! ])?;
//! store.edit(id, |e| e.append_text("notes", "，需要产业项目支撑。"))?;
//! let mut server = HttpTransport::new("http://127.0.0.1:8080")?;
//! let report = sync::sync(&mut store, &mut server, &Default::default())?;
//! println!("sent {} changes, received {}", report.pushed, report.received);
//! # Ok(()) }
//! ```

pub mod account;
pub mod attachments;
pub mod bundle;
pub mod forms;
pub mod http;
pub mod import;
pub mod store;
pub mod sync;

pub use fieldsync_protocol::{FieldValue, RecordHeader, record::Conflict, singleton_id};
pub use forms::FormError;
pub use http::{HttpOptions, HttpTransport};
pub use store::{Filter, Record, Store, StoreError};
pub use sync::{SyncError, SyncOptions, SyncReport, Transport, TransportError};
