//! Static secrets: a value that exists before the task (an API key in the vault, an
//! environment variable or a file on the host), injected by the egress proxy while the task
//! holds only a phantom. Nothing is created or destroyed: the lease *is* the permission to
//! use the value. The supervisor checks it ([`crate::TaskCredentials::check`]) before each
//! injection, so once revoked or expired the proxy stops injecting.

use serde::{Deserialize, Serialize};

use super::{Backend, BackendError, Draft, Handle, Issued, to_handle};
use crate::lease::Lease;

/// What a static lease grants (its scope): a network credential's source and hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticScope {
    /// `env`, `file` or `vault`.
    pub source: String,
    /// The variable, file or vault secret named (never the value).
    pub from: String,
    /// The hosts it is injected to.
    pub hosts: Vec<String>,
}

/// The static backend.
#[derive(Debug, Default)]
pub struct StaticBackend;

impl Backend for StaticBackend {
    fn kind(&self) -> &'static str {
        "static"
    }

    fn prepare(&self, _draft: &Draft<'_>) -> Result<Handle, BackendError> {
        to_handle(&serde_json::json!({}))
    }

    fn issue(&self, _draft: &Draft<'_>, _handle: &mut Handle) -> Result<Issued, BackendError> {
        Ok(Issued::default())
    }

    fn revoke(&self, _lease: &Lease, _handle: &[u8]) -> Result<(), BackendError> {
        Ok(())
    }
}
