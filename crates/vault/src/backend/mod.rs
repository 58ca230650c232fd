//! Credential backends: what makes a credential for a lease and takes it back.
//!
//! A backend is registered with the [`crate::Broker`] under its [`Backend::kind`]. The
//! broker drives every lease the same way, so that a crash at any point leaves something
//! the next supervisor can revoke:
//!
//! 1. [`Backend::prepare`] returns a *handle*: everything needed to revoke whatever step 3
//!    may create (a role name, the API to call). It creates nothing.
//! 2. The broker stores the lease as `issuing`, with the handle sealed, durably.
//! 3. [`Backend::issue`] creates the credential and returns its value; it may extend the
//!    handle (a token needed to revoke itself).
//! 4. The broker records `credential_issued` in the ledger, then marks the lease `open`.
//!
//! [`Backend::revoke`] must be idempotent (revoking what is already gone succeeds) and must
//! work in another process from the stored lease and handle alone: crash recovery calls it.
//! Return [`BackendError::Unavailable`] for what may succeed later (a server down): the
//! broker retries with backoff and keeps the lease open, reported, until it succeeds.
//!
//! Adding a backend (cloud STS with the task's identity token, OpenBao, …) is a new
//! implementation registered with [`crate::Broker::register`] and a grant that names its
//! kind; neither the gate nor the lease table changes.

pub mod git;
pub mod github;
pub(crate) mod http;
pub mod postgres;
pub(crate) mod scram;
pub mod static_secret;

use std::time::SystemTime;

use zeroize::Zeroizing;

pub use crate::error::BackendError;
use crate::lease::{Lease, TaskRef};
use crate::secret::SecretValue;

/// A lease about to be issued.
#[derive(Debug, Clone)]
pub struct Draft<'a> {
    /// Its id.
    pub id: &'a str,
    /// The task.
    pub task: &'a TaskRef,
    /// The credential's name.
    pub name: &'a str,
    /// What it grants (the backend's own grant, as JSON).
    pub scope: &'a serde_json::Value,
    /// Now.
    pub issued: SystemTime,
    /// When it expires.
    pub expires: SystemTime,
}

/// A revocation handle: backend-specific bytes (JSON by convention), sealed at rest,
/// zeroed in memory.
pub type Handle = Zeroizing<Vec<u8>>;

/// What [`Backend::issue`] made.
#[derive(Debug, Default)]
pub struct Issued {
    /// The credential's value for the task (`None`: the backend hands nothing out, as for
    /// static secrets whose value the proxy injects).
    pub value: Option<SecretValue>,
    /// A non-secret description (a role name) for listings.
    pub detail: Option<String>,
    /// A lookup key (a token's hash) by which a verifier finds the lease.
    pub lookup: Option<String>,
}

/// A kind of credential.
pub trait Backend: Send + Sync {
    /// The name stored in leases (`postgres`).
    fn kind(&self) -> &'static str;

    /// Everything needed to revoke what [`Backend::issue`] may create; creates nothing.
    fn prepare(&self, draft: &Draft<'_>) -> Result<Handle, BackendError>;

    /// Create the credential. `handle` is what `prepare` returned (already stored); extend it
    /// if revocation needs more.
    fn issue(&self, draft: &Draft<'_>, handle: &mut Handle) -> Result<Issued, BackendError>;

    /// Take the credential back. Idempotent.
    fn revoke(&self, lease: &Lease, handle: &[u8]) -> Result<(), BackendError>;

    /// Take many back at once (a task's end, an agent's revocation). One result per item,
    /// in order. The default revokes one by one.
    fn revoke_many(&self, items: &[(&Lease, &[u8])]) -> Vec<Result<(), BackendError>> {
        items
            .iter()
            .map(|(lease, handle)| self.revoke(lease, handle))
            .collect()
    }
}

/// A handle as JSON.
pub(crate) fn to_handle<T: serde::Serialize>(value: &T) -> Result<Handle, BackendError> {
    serde_json::to_vec(value)
        .map(Zeroizing::new)
        .map_err(|e| BackendError::Invalid(format!("cannot encode the handle: {e}")))
}

/// A handle from JSON.
pub(crate) fn from_handle<T: serde::de::DeserializeOwned>(
    handle: &[u8],
) -> Result<T, BackendError> {
    serde_json::from_slice(handle)
        .map_err(|e| BackendError::Invalid(format!("the stored handle does not parse: {e}")))
}

/// A grant from a lease's scope.
pub(crate) fn from_scope<T: serde::de::DeserializeOwned>(
    scope: &serde_json::Value,
) -> Result<T, BackendError> {
    serde_json::from_value(scope.clone())
        .map_err(|e| BackendError::Invalid(format!("the lease's scope does not parse: {e}")))
}
