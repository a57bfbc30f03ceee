//! The server's one error type: every failure becomes a JSON body with a stable code, and
//! internal failures are logged and hidden from the client.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use fieldsync_protocol::wire::{ErrorBody, ErrorDetail};

use crate::{
    ingest::{
        PushRefused,
        decode::{DecodeError, DecodeProblem},
    },
    storage::{CredentialProblem, StorageError},
};

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
        /// Seconds to wait before trying again (sent as `Retry-After`).
        retry_after: Option<u64>,
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
            retry_after: None,
        }
    }

    /// Adds a `Retry-After` to a client error.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        if let ApiError::Client { retry_after, .. } = &mut self {
            *retry_after = Some(seconds);
        }
        self
    }

    /// Adds a hint to a client error.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        if let ApiError::Client { hint: h, .. } = &mut self {
            *h = Some(hint.into());
        }
        self
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
            StorageError::Forbidden { code, message } => {
                ApiError::client(StatusCode::FORBIDDEN, code, message)
            }
            StorageError::Refused(r) => {
                let e = ApiError::client(StatusCode::FORBIDDEN, r.code, r.message);
                match r.hint {
                    Some(hint) => e.with_hint(hint),
                    None => e,
                }
            }
            StorageError::Credential {
                problem,
                code,
                message,
            } => ApiError::client(
                match problem {
                    CredentialProblem::Unknown => StatusCode::UNAUTHORIZED,
                    CredentialProblem::Used => StatusCode::CONFLICT,
                    CredentialProblem::Expired => StatusCode::GONE,
                },
                code,
                message,
            ),
            StorageError::NotFound(m) => ApiError::not_found(m),
            StorageError::Other(m) => ApiError::Internal(m),
        }
    }
}

impl From<DecodeError> for ApiError {
    fn from(e: DecodeError) -> Self {
        let status = match e.problem {
            DecodeProblem::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            DecodeProblem::Malformed => StatusCode::BAD_REQUEST,
            DecodeProblem::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            DecodeProblem::Internal => return ApiError::Internal(e.message),
        };
        let api = ApiError::client(status, e.code, e.message);
        match e.hint {
            Some(hint) => api.with_hint(hint),
            None => api,
        }
    }
}

impl From<PushRefused> for ApiError {
    fn from(r: PushRefused) -> Self {
        StorageError::Refused(r).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut wait = None;
        let mut error_code = None;
        let (status, detail) = match self {
            ApiError::Client {
                status,
                code,
                message,
                hint,
                retry_after,
            } => {
                tracing::info!(%status, code, %message, "request refused");
                wait = retry_after;
                error_code = Some(code);
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
        let mut response = (status, Json(ErrorBody { error: detail })).into_response();
        if let Some(code) = error_code {
            response
                .extensions_mut()
                .insert(crate::refusals::ErrorCode(code));
        }
        if let Some(w) = wait {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, w.into());
        }
        response
    }
}
