//! remit-identity: one workload identity per task, verifiable by anyone.
//!
//! Every task gets a SPIFFE ID, `spiffe://<trust-domain>/agent/<agent>/task/<task>`, and a
//! JWT-SVID for it: a compact JWS signed with ES256 whose claims are the JWT-SVID ones
//! (`sub` = the SPIFFE ID, `aud`, `exp`, plus `iss`, `iat`, `jti`) and remit's own (`agent`,
//! `task`, `owner`, `requester`, `remit_hash`). Its lifetime is the task's.
//!
//! - **Keys.** P-256 signing keys are generated here, sealed with the home's master key
//!   ([`seal`]: AES-256-GCM, key file 0600) in `$REMIT_HOME/identity/identity.db`.
//!   [`Identity::rotate`] makes a new key active and keeps the old one — published in the
//!   JWKS and trusted by the verifier — until the last token it signed expires.
//! - **Publishing.** [`Identity::jwks`] and [`Identity::discovery`] are the JWKS and the OIDC
//!   discovery document a third party (a cloud STS, a service) uses to verify task tokens
//!   offline with any JOSE library.
//! - **Revocation.** Tokens of ended or killed tasks are refused by remit's own verifier
//!   ([`Identity::verify`]); to everyone else they expire on their own. A supervisor that
//!   crashed leaves tokens nobody revoked: [`Identity::recover_orphans`] revokes them.
//!
//! What it is not: not a general JOSE library (one algorithm is signed, one verified, and
//! headers beyond `alg`/`kid`/`typ` are refused, as JWT-SVID requires), not an OIDC provider
//! (no login, no `/authorize`), and not where policy lives (the gate decides what a task may
//! do; this crate only says which task it is). The crypto is `ring`'s, the workspace's one
//! provider; JWS is written here because it is small and must be strict.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use remit_identity::{Identity, SystemClock, TaskIdentityRequest};
//!
//! # fn main() -> Result<(), remit_identity::IdentityError> {
//! let home = tempfile::tempdir().map_err(|e| remit_identity::IdentityError::CreateDir(".".into(), e))?;
//! let identity = Identity::open_home(home.path(), Arc::new(SystemClock))?;
//! let token = identity.mint(&TaskIdentityRequest {
//!     agent: "ci-fixer",
//!     task: "01JCZ8Q6F3V4X2M8N9P0R1S2T3",
//!     owner: "alice@example.com",
//!     requester: "alice",
//!     remit_hash: "sha256:00",
//!     audience: &[],
//!     lifetime: Duration::from_secs(45 * 60),
//! })?;
//! let verified = identity.verify(token.expose(), None)?;
//! assert_eq!(verified.claims.sub, "spiffe://remit.local/agent/ci-fixer/task/01JCZ8Q6F3V4X2M8N9P0R1S2T3");
//! identity.revoke_task("01JCZ8Q6F3V4X2M8N9P0R1S2T3", "task_end")?;
//! assert!(identity.verify(token.expose(), None).is_err());
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod clock;
pub mod error;
pub mod identity;
pub mod jws;
pub mod process;
pub mod seal;
pub mod spiffe;
pub mod sqlite;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{IdentityError, TokenError};
pub use identity::{
    Claims, DEFAULT_ISSUER, DEFAULT_TRUST_DOMAIN, Discovery, Expectations, Identity, KeyInfo,
    Rotation, Settings, TaskIdentityRequest, TaskToken, Verified, identity_db_path,
    verify_with_jwks,
};
pub use jws::{Jwk, Jwks};
pub use process::ProcessIdentity;
pub use seal::{MasterKey, master_key_path};
pub use spiffe::{SpiffeId, TrustDomain};
