//! Errors, one type per layer, and the single mapping from API errors to HTTP.
//!
//! * [`ApiError`] is what request handlers return. It always renders as the one
//!   error envelope `{"error":{"code":…,"message":…,"details"?:…}}` with the
//!   HTTP status that belongs to its [`ErrorCode`] (or an explicit override for
//!   the few statuses that share a code, such as 405, 408 and 415).
//! * [`StartupError`] is what can stop the process before or while it serves;
//!   `main` maps each kind to a documented exit code.
//!
//! Invariant: no other module builds error JSON by hand; everything that reaches
//! a client as an error goes through [`ApiError::to_json`].

use http::StatusCode;
use serde_json::{Value, json};
use std::fmt;

/// The stable, machine-readable error codes clients can branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Missing or invalid credentials (401).
    Unauthorized,
    /// Valid credentials that do not allow this (403).
    Forbidden,
    /// Unknown path or resource (404).
    NotFound,
    /// The request is malformed or fails validation (400 and its relatives).
    ValidationError,
    /// The request conflicts with the current state (409).
    Conflict,
    /// Too many requests or connections (429).
    RateLimited,
    /// The request body is larger than allowed (413).
    PayloadTooLarge,
    /// The server cannot take the request now (503).
    ServiceUnavailable,
    /// A live-event interval older than its stream keeps (410).
    IntervalExpired,
    /// A live-event interval after its stream ended (410).
    StreamEnded,
    /// A bug or an unexpected failure on our side (500).
    Internal,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Forbidden => "FORBIDDEN",
            Self::NotFound => "NOT_FOUND",
            Self::ValidationError => "VALIDATION_ERROR",
            Self::Conflict => "CONFLICT",
            Self::RateLimited => "RATE_LIMITED",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            Self::IntervalExpired => "INTERVAL_EXPIRED",
            Self::StreamEnded => "STREAM_ENDED",
            Self::Internal => "INTERNAL",
        }
    }

    /// The HTTP status a code maps to unless an error overrides it.
    pub fn default_status(self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::ValidationError => StatusCode::BAD_REQUEST,
            Self::Conflict => StatusCode::CONFLICT,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::IntervalExpired | Self::StreamEnded => StatusCode::GONE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An error a request handler returns; rendered as the error envelope.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The machine-readable code.
    pub code: ErrorCode,
    /// A sentence for humans saying what went wrong and, ideally, how to fix it.
    pub message: String,
    /// Optional structured detail (for example which field failed).
    pub details: Option<Value>,
    /// The HTTP status; defaults to the code's status.
    pub status: StatusCode,
    /// Extra response headers (for example `Allow` on 405, `Retry-After` on 429).
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

impl ApiError {
    /// An error with the code's default status.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: None,
            status: code.default_status(),
            headers: Vec::new(),
        }
    }

    /// 400 `VALIDATION_ERROR`.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ValidationError, message)
    }

    /// 404 `NOT_FOUND`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// 500 `INTERNAL`; the message must not leak internals.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    /// 503 `SERVICE_UNAVAILABLE`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ServiceUnavailable, message)
    }

    /// 503 `SERVICE_UNAVAILABLE` with `Retry-After` (whole seconds, at least 1).
    pub fn unavailable_for(message: impl Into<String>, after: std::time::Duration) -> Self {
        let seconds = after.as_secs_f64().ceil().max(1.0) as u64;
        Self::unavailable(message)
            .with_header(http::header::RETRY_AFTER, http::HeaderValue::from(seconds))
    }

    /// Replaces the HTTP status (for statuses that share a code, e.g. 415).
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Attaches structured details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: http::HeaderName, value: http::HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The envelope as JSON.
    pub fn to_json(&self) -> Value {
        let mut error = json!({ "code": self.code.as_str(), "message": self.message });
        if let Some(details) = &self.details {
            error["details"] = details.clone();
        }
        json!({ "error": error })
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code.as_str(),
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

/// Why the process could not start or keep serving. Each kind has an exit code.
#[derive(Debug)]
pub enum StartupError {
    /// The command line or the stored configuration is invalid (exit 2).
    Config(String),
    /// Another process holds the data directory (exit 3).
    DataDirInUse(String),
    /// Reading or writing the data directory, binding the socket, TLS files… (exit 1).
    Io(String),
}

impl StartupError {
    /// The process exit code for this error, as documented in the README.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Io(_) => 1,
            Self::Config(_) => 2,
            Self::DataDirInUse(_) => 3,
        }
    }

    /// An I/O failure with context saying what we were doing.
    pub fn io(context: impl fmt::Display, err: impl fmt::Display) -> Self {
        Self::Io(format!("{context}: {err}"))
    }
}

impl fmt::Display for StartupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(msg) | Self::DataDirInUse(msg) | Self::Io(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for StartupError {}
