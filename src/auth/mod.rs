//! Authentication. Today: the admin key from the data directory's config,
//! sent as `X-API-Key`, which grants everything on the default tenant.
//! Tenants, scoped API keys, JWT realms and stream tickets come next and
//! will answer the same question: which [`Principal`] is making this request.
//!
//! Invariants: secrets are compared in constant time; a missing or wrong key
//! is 401 with the error envelope; the key itself is never logged.

pub mod jwt;

use crate::error::{ApiError, ErrorCode};
use crate::http::Request;
use subtle::ConstantTimeEq;
use uuid::Uuid;

/// Header carrying API keys.
pub const API_KEY_HEADER: &str = "x-api-key";

/// Who is making a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The tenant the credential belongs to.
    pub tenant: Uuid,
    /// A name for the credential, recorded as the actor of what it writes.
    pub name: String,
}

/// Verifies credentials.
#[derive(Clone)]
pub struct Authenticator {
    admin_key: String,
    default_tenant: Uuid,
}

impl Authenticator {
    /// An authenticator knowing the admin key and the default tenant.
    pub fn new(admin_key: String, default_tenant: Uuid) -> Self {
        Self {
            admin_key,
            default_tenant,
        }
    }

    /// The principal behind the request's `X-API-Key`, or 401.
    pub fn api_key(&self, request: &Request) -> Result<Principal, ApiError> {
        let supplied = request.header(API_KEY_HEADER).ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthorized,
                "send the API key in the X-API-Key header",
            )
        })?;
        if bool::from(supplied.as_bytes().ct_eq(self.admin_key.as_bytes())) {
            Ok(Principal {
                tenant: self.default_tenant,
                name: "admin".into(),
            })
        } else {
            Err(ApiError::new(
                ErrorCode::Unauthorized,
                "the API key is not valid",
            ))
        }
    }
}
