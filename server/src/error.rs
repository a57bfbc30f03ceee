//! The server's one error type: every failure becomes a JSON body with a stable code, and
//! internal failures are logged and hidden from the client.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use fieldsync_protocol::wire::{ErrorBody, ErrorDetail};

use crate::storage::StorageError;

/// An error answered to an HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The client sent something wrong; the message says what and the hint what to do.
    #[error("{message}")]
    Client {
        /// HTTP status (4xx).
        status: StatusCode,
        /// Stable snake_case code.
        code: &'static str,
        /// What was wrong.
        message: String,
        /// What to do about it.
        hint: Option<String>,
    },
    /// Something failed inside the server. Logged; the client sees only a generic message.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A 4xx error.
    pub fn client(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Client {
            status,
            code,
            message: message.into(),
            hint: None,
        }
    }

    /// Adds a hint to a client error.
    pub fn with_hint(self, hint: impl Into<String>) -> Self {
        match self {
            ApiError::Client {
                status,
                code,
                message,
                ..
            } => ApiError::Client {
                status,
                code,
                message,
                hint: Some(hint.into()),
            },
            other => other,
        }
    }

    /// 400 with code `invalid_body`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::client(StatusCode::BAD_REQUEST, "invalid_body", message)
    }

    /// 404 with code `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::client(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Conflict { code, message } => {
                ApiError::client(StatusCode::CONFLICT, code, message)
            }
            StorageError::Other(m) => ApiError::Internal(m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, detail) = match self {
            ApiError::Client {
                status,
                code,
                message,
                hint,
            } => {
                tracing::info!(%status, code, %message, "request refused");
                (
                    status,
                    ErrorDetail {
                        code: code.into(),
                        message,
                        hint,
                    },
                )
            }
            ApiError::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorDetail {
                        code: "internal".into(),
                        message: "the server failed to handle this request; it has been logged"
                            .into(),
                        hint: Some(
                            "try again later; if it persists, tell the administrator".into(),
                        ),
                    },
                )
            }
        };
        (status, Json(ErrorBody { error: detail })).into_response()
    }
}
