//! Errors as exit codes a script can rely on, mapped from client-core's error types; errors the
//! user can fix and usage errors.

use anyhow::anyhow;
use fieldsync_client_core::account;
use fieldsync_client_core::bundle::BundleError;
use fieldsync_client_core::import::ImportError;
use fieldsync_client_core::{FormError, StoreError, SyncError, TransportError};

use crate::output::t;

/// An error with the exit code a script can rely on.
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) error: anyhow::Error,
}

pub(crate) fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if let Some(f) = cause.downcast_ref::<FormError>() {
            return match f {
                FormError::Store(StoreError::NotFound(_)) => 6,
                FormError::Store(_) => 1,
                _ => 3,
            };
        }
        if cause.downcast_ref::<ImportError>().is_some() {
            return 3;
        }
        if let Some(b) = cause.downcast_ref::<BundleError>() {
            return match b {
                BundleError::NotABundle(..) => 3,
                BundleError::Store(StoreError::BadChange { .. }) => 3,
                BundleError::Store(_) => 1,
            };
        }
        if let Some(StoreError::NotFound(_)) = cause.downcast_ref::<StoreError>() {
            return 6;
        }
        if let Some(SyncError::Revoked) = cause.downcast_ref::<SyncError>() {
            return 5;
        }
        if let Some(a) = cause.downcast_ref::<account::AccountError>() {
            return match a {
                account::AccountError::Setup(_) | account::AccountError::NotEnrolled => 3,
                account::AccountError::Transport(
                    TransportError::Unreachable(_) | TransportError::Interrupted(_),
                ) => 4,
                account::AccountError::Transport(TransportError::Refused { .. }) => 5,
                _ => 1,
            };
        }
        if let Some(SyncError::Transport(t, _)) = cause.downcast_ref::<SyncError>() {
            return match t {
                TransportError::Unreachable(_) | TransportError::Interrupted(_) => 4,
                TransportError::Refused { .. } => 5,
                TransportError::Protocol(_) => 1,
            };
        }
        if cause.downcast_ref::<UsageError>().is_some() {
            return 2;
        }
        if cause.downcast_ref::<UserError>().is_some() {
            return 3;
        }
    }
    1
}

/// Input the user can fix.
#[derive(Debug)]
pub(crate) struct UserError(pub(crate) String);

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UserError {}

/// A command used wrongly (exit code 2, as for clap's own usage errors).
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

pub(crate) fn user(zh: &str, en: &str) -> anyhow::Error {
    anyhow!(UserError(t(zh, en)))
}
