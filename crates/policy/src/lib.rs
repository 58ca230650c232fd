//! remit's decisions about effects.
//!
//! Today: command rules ([`commands`]), the decision behind every `execve` a task makes.
//! What this crate is not: it performs nothing and reads nothing from the system; callers
//! hand it facts and act on the answer.
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
