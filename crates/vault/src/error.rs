//! Errors: one variant per failing step, one line each, never a secret value.

use std::path::PathBuf;

/// A backend could not issue or revoke a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The remote service could not be reached (retried with backoff on revocation).
    #[error("{0}")]
    Unavailable(String),
    /// The service refused, or answered something unexpected (not retried at issue).
    #[error("{0}")]
    Refused(String),
    /// The grant or the stored handle is not usable.
    #[error("{0}")]
    Invalid(String),
}

/// Anything remit-vault can fail at.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The store could not be created or opened.
    #[error(transparent)]
    Open(#[from] remit_identity::sqlite::OpenError),
    /// The store failed.
    #[error("vault store `{0}`: {1}")]
    Store(PathBuf, rusqlite::Error),
    /// Sealing or the master key failed.
    #[error(transparent)]
    Seal(#[from] remit_identity::IdentityError),
    /// A secret or credential name that is not a name.
    #[error(
        "`{0}` is not a secret name: use letters, digits, `-` and `_`, starting with a letter, at most 64"
    )]
    BadName(String),
    /// An empty or oversized value.
    #[error("the value of `{0}` is {1}")]
    BadValue(String, &'static str),
    /// No such secret.
    #[error("no secret `{0}` in the vault; add it with `remit secret set {0}`")]
    NoSecret(String),
    /// No such lease.
    #[error("no lease `{0}`")]
    NoLease(String),
    /// No backend for a kind of lease.
    #[error("no credential backend `{0}` is registered")]
    NoBackend(String),
    /// A lease lifetime of zero.
    #[error("lease `{0}` would expire at once: give it a positive ttl")]
    BadTtl(String),
    /// A backend failed while issuing.
    #[error("cannot issue `{name}` ({backend}): {error}")]
    Issue {
        /// The credential.
        name: String,
        /// The backend.
        backend: String,
        /// What failed.
        error: BackendError,
    },
    /// The lease was revoked (its agent suspended or revoked) while it was being issued:
    /// what the backend made was taken back and nothing is handed out.
    #[error("lease `{0}` was revoked while it was being issued; nothing was handed out")]
    RevokedWhileIssuing(String),
    /// A revocation failed (the lease stays open and is retried).
    #[error("cannot revoke lease `{0}` yet: {1}; it stays open and is retried")]
    Revoke(String, String),
    /// The ledger did not record the lease (it was revoked at once: fail closed).
    #[error("cannot record lease `{0}` in the ledger, so it was revoked: {1}")]
    Record(String, String),
    /// A grant that cannot be stored as a lease scope.
    #[error("cannot encode the scope of a lease: {0}")]
    Encode(String),
    /// A stored record that does not parse.
    #[error("vault store `{0}`: corrupt record: {1}")]
    Corrupt(PathBuf, String),
    /// No such agent.
    #[error("no agent `{0}`; register it with `remit agent add {0} --owner <human>`")]
    NoAgent(String),
    /// The agent exists already.
    #[error("agent `{0}` is already registered")]
    AgentExists(String),
    /// An agent field that is not acceptable.
    #[error("{0}")]
    BadAgent(String),
    /// The agent may not start tasks.
    #[error("agent `{name}` is {status}{reason}; it cannot start tasks")]
    AgentRefused {
        /// The agent.
        name: String,
        /// `suspended` or `revoked`.
        status: &'static str,
        /// ` (why)` or empty.
        reason: String,
    },
}

impl VaultError {
    /// Whether this is a refusal (exit code 1) rather than a failure (2).
    pub fn is_denial(&self) -> bool {
        matches!(self, VaultError::AgentRefused { .. })
    }
}

/// Results of this crate.
pub type Result<T, E = VaultError> = std::result::Result<T, E>;
