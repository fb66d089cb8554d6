//! The one error type of the HTTP API: `{"code": "snake_case", "message": "..."}` with the right status.
//!
//! Internal causes are logged (with the request's span, so its request id) and never sent to the client.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable, snake_case: the mini-program switches on it.
    pub code: String,
    /// For humans; may change.
    pub message: String,
    /// For `validation_failed`: the offending fields.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldError>,
}

/// One invalid input field.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the field, e.g. `limit` or `items[0].quantity`.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { field: field.into(), message: message.into() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 404 `<what>_not_found`.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 400 `invalid_parameter`: a query or path parameter that does not parse.
    #[error("{0}")]
    InvalidParameter(String),
    /// 400 with a specific code (a request that can never succeed as sent, e.g. `too_many_events`).
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// 400 `invalid_json`: a body that is not JSON.
    #[error("{0}")]
    InvalidJson(String),
    /// 422 `validation_failed`.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// 422 with a specific code and the offending fields.
    #[error("the request cannot be processed")]
    Unprocessable { code: &'static str, fields: Vec<FieldError> },
    /// 415 `unsupported_media_type`.
    #[error("expected a request body of type application/json")]
    UnsupportedMediaType,
    /// 413 `payload_too_large`.
    #[error("request body too large")]
    PayloadTooLarge,
    /// 401 with a code; carries `WWW-Authenticate: Bearer`.
    #[error("{message}")]
    Unauthorized { code: &'static str, message: String },
    /// 403 with a code.
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    /// 429 with a code and, when known, how many seconds until a retry can succeed (`Retry-After`).
    #[error("{message}")]
    TooManyRequests { code: &'static str, message: String, retry_after_secs: Option<u64> },
    /// 409 with a domain code.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// 503 with a code naming what is unavailable.
    #[error("{message}")]
    Unavailable { code: &'static str, message: String },
    /// 501: this build or start-up cannot do it (e.g. heap profiling without jemalloc).
    #[error("{message}")]
    NotImplemented { code: &'static str, message: String },
    /// 500 `internal_error`; the cause is logged, not returned.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    pub fn not_found(what: &'static str) -> Self {
        AppError::NotFound(what)
    }

    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        AppError::InvalidParameter(message.into())
    }

    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::Validation(vec![FieldError::new(field, message)])
    }

    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        AppError::Unauthorized { code, message: message.into() }
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        AppError::Forbidden { code, message: message.into() }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        AppError::Conflict { code, message: message.into() }
    }

    /// A 422 with its own code instead of `validation_failed` (e.g. `idempotency_key_mismatch`).
    pub fn with_code(self, code: &'static str) -> Self {
        match self {
            AppError::Validation(fields) => AppError::Unprocessable { code, fields },
            other => other,
        }
    }

    /// Whether the whole transaction may simply be run again: a deadlock or serialization failure (MySQL 1213,
    /// SQLSTATE 40001) or a lock wait that timed out (1205).
    pub fn is_transient(&self) -> bool {
        let AppError::Internal(cause) = self else { return false };
        let Some(sqlx::Error::Database(db)) = cause.downcast_ref::<sqlx::Error>() else { return false };
        matches!(db.code().as_deref(), Some("1213") | Some("40001"))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::InvalidParameter(_) | AppError::InvalidJson(_) | AppError::BadRequest { .. } => {
                StatusCode::BAD_REQUEST
            }
            AppError::Validation(_) | AppError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            AppError::Forbidden { .. } => StatusCode::FORBIDDEN,
            AppError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Conflict { .. } => StatusCode::CONFLICT,
            AppError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            AppError::NotImplemented { .. } => StatusCode::NOT_IMPLEMENTED,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> String {
        match self {
            AppError::NotFound(what) => format!("{what}_not_found"),
            AppError::InvalidParameter(_) => "invalid_parameter".into(),
            AppError::InvalidJson(_) => "invalid_json".into(),
            AppError::Validation(_) => "validation_failed".into(),
            AppError::UnsupportedMediaType => "unsupported_media_type".into(),
            AppError::PayloadTooLarge => "payload_too_large".into(),
            AppError::Conflict { code, .. }
            | AppError::BadRequest { code, .. }
            | AppError::Unprocessable { code, .. }
            | AppError::Unavailable { code, .. }
            | AppError::NotImplemented { code, .. }
            | AppError::Unauthorized { code, .. }
            | AppError::Forbidden { code, .. }
            | AppError::TooManyRequests { code, .. } => (*code).into(),
            AppError::Internal(_) => "internal_error".into(),
        }
    }
}

/// Database error codes that mean "cannot use the database right now" rather than a bad statement:
/// SQLite BUSY (5), LOCKED (6), CANTOPEN (14); MySQL too many connections (1040), access denied (1045),
/// unknown database (1049), server shutdown (1053), lock wait timeout (1205), statement deadline exceeded (MariaDB
/// 1969, MySQL 3024).
const UNAVAILABLE_DB_CODES: &[&str] = &["5", "6", "14", "1040", "1045", "1049", "1053", "1205", "1969", "3024"];

impl From<sqlx::Error> for AppError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            // The pool could not hand out a connection in time: the database is down or saturated.
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
                tracing::error!(error = %error, "database unavailable");
                AppError::Unavailable { code: "database_unavailable", message: "the database is unavailable".into() }
            }
            sqlx::Error::Database(ref db) if db.code().is_some_and(|c| UNAVAILABLE_DB_CODES.contains(&c.as_ref())) => {
                tracing::error!(error = %error, "database unavailable");
                AppError::Unavailable { code: "database_unavailable", message: "the database is unavailable".into() }
            }
            other => AppError::Internal(anyhow::Error::new(other)),
        }
    }
}

impl From<redis::RedisError> for AppError {
    fn from(error: redis::RedisError) -> Self {
        tracing::error!(%error, "redis unavailable");
        metrics::counter!("redis_errors_total", "operation" => "request").increment(1);
        AppError::Unavailable { code: "redis_unavailable", message: "a backing service is unavailable; retry".into() }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let code = self.code();
        let mut headers = axum::http::HeaderMap::new();
        match &self {
            AppError::Unauthorized { code, .. } => {
                let value = format!("Bearer error=\"invalid_token\", error_description=\"{code}\"");
                if let Ok(value) = axum::http::HeaderValue::from_str(&value) {
                    headers.insert(axum::http::header::WWW_AUTHENTICATE, value);
                }
            }
            AppError::TooManyRequests { retry_after_secs: Some(secs), .. } => {
                headers.insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(*secs));
            }
            // Every 503 is "try again": say when.
            AppError::Unavailable { .. } => {
                headers.insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(1));
            }
            _ => {}
        }
        let (message, fields) = match self {
            AppError::Internal(cause) => {
                tracing::error!(error = ?cause, "internal error");
                ("internal server error".to_owned(), Vec::new())
            }
            AppError::Validation(fields) => ("validation failed".to_owned(), fields),
            AppError::Unprocessable { code, fields } => (code.replace('_', " "), fields),
            other => (other.to_string(), Vec::new()),
        };
        (status, headers, Json(ErrorBody { code, message, fields })).into_response()
    }
}

/// The error code used for a bare status (responses produced by layers, not by `AppError`).
pub fn status_code_name(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "route_not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "validation_failed",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        StatusCode::SERVICE_UNAVAILABLE => "service_unavailable",
        StatusCode::GATEWAY_TIMEOUT => "request_timeout",
        s if s.is_server_error() => "internal_error",
        _ => "error",
    }
}
