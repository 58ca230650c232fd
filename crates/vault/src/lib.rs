//! remit-vault: the secrets a task may use, and the leases that make every credential a
//! task holds temporary.
//!
//! - **Vault.** An encrypted local secret store ([`Vault`]): values sealed with AES-256-GCM
//!   under the home's master key (`$REMIT_HOME/master.key`, 0600), bound to their name and
//!   version; the store file never holds a value in clear; values are read into
//!   [`SecretValue`]s that are zeroed when dropped and never printed.
//! - **Leases.** Every credential a task can use is a lease ([`Lease`]: task, credential,
//!   scope, issued-at, TTL) in a durable table shared by every remit process of the home
//!   (SQLite, WAL). The [`Broker`] issues them through [`backend::Backend`]s, records them
//!   in the ledger ([`LeaseRecorder`]) when issued and revoked, and revokes them at task
//!   end, at TTL, on kill, on agent suspension or revocation, and after a crash
//!   ([`Broker::recover`]: leases whose supervisor died). A revocation that fails is retried
//!   with backoff and stays open, reported ([`doctor::stuck_leases`]) — never dropped.
//! - **Backends.** Static secrets injected by the egress proxy (the lease gates their use),
//!   PostgreSQL dynamic roles (created with `VALID UNTIL`, granted only what the remit names,
//!   dropped with their sessions terminated), git tokens scoped to a repository and ref
//!   patterns ([`backend::git::GitTokenVerifier`]), GitHub App installation tokens narrowed
//!   to the remit.
//! - **Inventory.** Registered agents with an owner, purpose, risk tier and lifecycle
//!   ([`Vault::admit`] refuses suspended and revoked agents).
//!
//! What it is not: not a policy engine (the gate decides whether a task may use a
//! credential for an effect), not a proxy (the egress proxy injects), and not a network
//! secret server: one home, one machine. Backend calls block: call them from a blocking
//! context, not inside an async runtime.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use remit_identity::SystemClock;
//! use remit_vault::{Broker, Delivery, LeaseSpec, MemoryRecorder, RevokeReason, TaskRef, Vault};
//!
//! # fn main() -> Result<(), remit_vault::VaultError> {
//! let home = tempfile::tempdir().map_err(|e| remit_vault::VaultError::Encode(e.to_string()))?;
//! let vault = Arc::new(Vault::open_home(home.path(), Arc::new(SystemClock))?);
//! vault.set("anthropic", b"sk-ant-api03-example-0123456789", "alice")?;
//! assert_eq!(vault.get("anthropic")?.expose(), b"sk-ant-api03-example-0123456789");
//!
//! let recorder = Arc::new(MemoryRecorder::default());
//! let broker = Broker::new(Arc::clone(&vault), recorder.clone());
//! let task = TaskRef { task: "01JCZ8Q6F3V4X2M8N9P0R1S2T3".into(), agent: "ci-fixer".into() };
//! let lease = broker.issue(&task, &LeaseSpec {
//!     name: "widgets".into(),
//!     backend: "git".into(),
//!     scope: serde_json::json!({ "repository": "https://git.internal/acme/widgets", "push": [] }),
//!     destination: None,
//!     delivery: Delivery::Env,
//!     ttl: Duration::from_secs(600),
//! })?;
//! assert!(lease.value.is_some());
//! let report = broker.revoke_task(&task.task, &RevokeReason::TaskEnd)?;
//! assert_eq!(report.revoked, vec![lease.lease.id]);
//! assert_eq!(recorder.events().len(), 2); // credential_issued, credential_revoked
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod backend;
pub mod broker;
pub mod doctor;
pub mod error;
pub mod inventory;
pub mod lease;
pub mod recorder;
pub mod secret;
pub mod store;
pub mod task;

pub use broker::{Broker, IssuedLease, LeaseSpec, RetryPolicy, RevokeReport};
pub use error::{BackendError, VaultError};
pub use inventory::{Agent, AgentStatus, NewAgent, RiskTier};
pub use lease::{Delivery, Lease, LeaseState, RevokeReason, TaskRef};
pub use recorder::{LeaseRecorder, MemoryRecorder};
pub use secret::SecretValue;
pub use store::{SecretInfo, Vault, vault_db_path};
pub use task::{InjectedCredential, LeaseEnded, TaskCredentials};
