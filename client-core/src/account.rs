//! Enrolling this device with a server: a one-time code from an administrator becomes a device
//! token kept in the store, and the store learns which server it belongs to; who this device is
//! (`whoami`); and who wrote the values of its conflicts (`learn_writers`).

use fieldsync_protocol::auth::{EnrollResponse, MeResponse};

use crate::http::{HttpOptions, HttpSetupError, HttpTransport};
use crate::store::{Store, StoreError};
use crate::sync::TransportError;

/// Why enrolling or reaching the enrolled server failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The server address or TLS settings are not usable.
    #[error(transparent)]
    Setup(#[from] HttpSetupError),
    /// The server refused (a wrong, used or expired code) or could not be reached.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store has no server and token yet.
    #[error(
        "此设备尚未登记 / this device is not enrolled yet: run `fieldsync enroll --server <address> --code <code>`"
    )]
    NotEnrolled,
}

/// Enrolls `store` with the server at `server` using a one-time `code`, and keeps the token in
/// the store. `name` is how admins will see the device ("张三的笔记本").
pub fn enroll(
    store: &mut Store,
    server: &str,
    code: &str,
    name: &str,
    options: &HttpOptions,
) -> Result<EnrollResponse, AccountError> {
    let mut transport = HttpTransport::with_options(server, options)?;
    let response = transport.enroll(store.device_id(), code, name)?;
    store.set_credentials(transport.base(), &response.token)?;
    Ok(response)
}

/// A transport to the server this store was enrolled with, carrying its token.
pub fn transport(store: &Store, options: &HttpOptions) -> Result<HttpTransport, AccountError> {
    let (server, token) = store.credentials()?.ok_or(AccountError::NotEnrolled)?;
    Ok(HttpTransport::with_options(&server, options)?.with_token(token))
}

/// Asks the server who this device is and what it may see.
pub fn whoami(store: &Store, options: &HttpOptions) -> Result<MeResponse, AccountError> {
    Ok(transport(store, options)?.me()?)
}

/// Where the names of other writers come from: the server, which knows whose device wrote with
/// each actor (an [`HttpTransport`]; a phone's cancellable transport passes it on).
pub trait WriterNames {
    /// (actor hex, the person's name) for the values of record `id`'s conflicts.
    fn conflict_writers(&mut self, id: uuid::Uuid)
    -> Result<Vec<(String, String)>, TransportError>;
}

impl WriterNames for HttpTransport {
    fn conflict_writers(
        &mut self,
        id: uuid::Uuid,
    ) -> Result<Vec<(String, String)>, TransportError> {
        HttpTransport::conflict_writers(self, id)
    }
}

/// At most this many records are asked about after one sync.
const LEARN_AT_MOST: usize = 50;

/// Asks the server who wrote the values of this store's conflicts that it cannot name yet, and
/// keeps the names ([`Store::remember_writers`]), so the conflict page and a record's history
/// say who wrote what even offline. Best effort, after a sync: a record the server has not
/// merged yet (404) is asked again after the next sync, and a network failure ends the round
/// without an error. Returns how many records were asked about.
pub fn learn_writers(
    store: &mut Store,
    source: &mut impl WriterNames,
) -> Result<usize, StoreError> {
    let writers = store.writers()?;
    let mut ask = Vec::new();
    for r in store.list(&crate::Filter {
        conflicted: true,
        ..Default::default()
    })? {
        let unnamed = store
            .conflicts(r.header.id)?
            .iter()
            .flat_map(|c| &c.values)
            .any(|v| writers.is_unnamed_other(&v.actor));
        if unnamed {
            ask.push(r.header.id);
        }
        if ask.len() == LEARN_AT_MOST {
            break;
        }
    }
    let mut names = Vec::new();
    for id in &ask {
        match source.conflict_writers(*id) {
            Ok(found) => names.extend(found),
            Err(TransportError::Refused { status: 404, .. }) => continue,
            Err(_) => break,
        }
    }
    store.remember_writers(&names)?;
    Ok(ask.len())
}
