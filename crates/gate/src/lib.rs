//! The supervisor of remit tasks: from a remit and a command to a contained, observed,
//! recorded task.
//!
//! [`prepare`] turns a remit into a sandbox spec (resolving paths, the environment, the git
//! directory, the programs rules name); [`run`] drives the task: it starts the command in
//! the sandbox, decides every program the task starts against the remit's command rules,
//! forwards signals, enforces the wall-clock limit and records everything.
//!
//! What this crate is not: it does not build containment (that is `remit-sandbox`) and does
//! not parse remits (`remit-types`); it decides and records.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use remit_gate::gate::{Gate, Outcome, SystemClock};
//! use remit_gate::journal::MemoryJournal;
//! use remit_policy::engine::{Engine, Principal};
//! use remit_types::effect::Effect;
//!
//! let remit = remit_types::remit::parse("[actions.deploy]\nargs = [\"env\"]\n", "r.toml", ".".into()).unwrap();
//! let principal = Principal {
//!     task: "01TASK".into(), agent: "bot".into(), owner: "alice".into(),
//!     requester: "alice".into(), remit: remit.hash_hex(), risk: "low".into(),
//! };
//! let journal = Arc::new(MemoryJournal::default());
//! let gate = Gate::new(Engine::load(&remit).unwrap(), principal, journal, Arc::new(SystemClock), Duration::from_secs(900));
//! let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
//! let effect = Effect::Action { kind: "deploy".into(), args: [("env".into(), "staging".into())].into(), workspace: String::new() };
//! match runtime.block_on(gate.request(effect, Duration::ZERO)) {
//!     Outcome::Authorized(authorized) => {
//!         runtime.block_on(gate.begin(&authorized)).unwrap(); // durable before the effect
//!         // … perform it …
//!         gate.performed(authorized, "succeeded");
//!     }
//!     other => panic!("{other:?}"),
//! }
//! ```
#![forbid(unsafe_code)]

pub mod api;
pub mod authority;
pub mod changes;
pub mod client;
pub mod egress;
pub mod files;
pub mod gate;
pub mod glob;
pub mod journal;
pub mod perform;
pub mod prepare;
pub mod programs;
pub mod record;
pub mod recovery;
pub mod registry;
pub mod run;
pub mod secrets;
pub mod submodules;
pub mod timing;
