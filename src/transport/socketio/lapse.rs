//! When an admitted socket must leave: its admission's expiry or
//! revocation, as one future per socket (made once when it connects).
//!
//! Invariant: the future resolves once, at the earlier of the credential's
//! `exp` (or ticket window) and its revocation; without an expiry it waits
//! for revocation only.

use crate::auth::Admission;
use std::future::Future;
use std::pin::Pin;

/// Why an admitted socket must leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lapse {
    /// Its credential expired.
    Expired,
    /// Its credential was revoked.
    Revoked,
}

/// Waits for an admission's expiry or revocation.
pub(crate) type Watch = Pin<Box<dyn Future<Output = Lapse> + Send>>;

/// Waits for `admission`'s expiry or revocation.
pub(crate) fn watch(admission: &Admission) -> Watch {
    let expiry = admission
        .expires_at
        .map(crate::core::clock::instant_of_unix_seconds);
    let revoked = admission.revoked();
    Box::pin(async move {
        tokio::select! {
            () = crate::core::clock::sleep_until_or_forever(expiry) => Lapse::Expired,
            () = revoked => Lapse::Revoked,
        }
    })
}
