//! remit's decisions about effects: a facade over Cedar that callers use without importing
//! any Cedar type.
//!
//! - [`engine`]: a remit (its `[commands]`, `[actions]`, `[approvals]`, `[network]` and raw
//!   `.cedar` files) compiled to Cedar, validated strictly against remit's [`schema`] at
//!   load, and decided per effect with a sliced evaluation equal to the full policy set
//!   (`Decision`: allow, deny with the policy and its reason, or the approvals needed);
//!   `[[test]]` entries and `explain`.
//! - [`commands`]: the fast decision behind every `execve` a task makes.
//! - [`network`]: what `[network]` compiles to.
//!
//! What this crate is not: it performs nothing and reads nothing from the system; callers
//! hand it facts and act on the answer. A decision that errors is a deny.
//!
//! ```
//! use remit_policy::commands::{CommandRules, CommandVerdict, ExecFacts};
//! let remit = remit_types::remit::parse("[commands]\nforbid = [\"git push\"]\n", "r", ".".into()).unwrap();
//! let rules = CommandRules::new(&remit.remit.commands);
//! let facts = ExecFacts {
//!     path: "/usr/bin/git".into(),
//!     argv: vec!["git".into(), "-C".into(), "/repo".into(), "push".into()],
//!     ..ExecFacts::default()
//! };
//! assert_eq!(rules.decide(&facts).verdict, CommandVerdict::Forbid);
//! ```
#![forbid(unsafe_code)]

pub mod commands;
pub mod engine;
pub mod network;
pub mod schema;
