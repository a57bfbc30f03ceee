//! Enrolling this device with a server: a one-time code from an administrator becomes a device
//! token kept in the store, and the store learns which server it belongs to.

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
