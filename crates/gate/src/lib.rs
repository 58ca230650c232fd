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
//! ```no_run
//! use remit_gate::prepare::{prepare, RunRequest};
//! use remit_gate::run::{run, NoPrompter};
//! let request = RunRequest {
//!     remit: remit_types::remit::default_remit(".".into()).unwrap(),
//!     workspace: None,
//!     command: vec!["cargo".into(), "test".into()],
//!     allow_degraded: false,
//!     cwd: std::env::current_dir().unwrap(),
//!     host_env: std::env::vars().collect(),
//!     task: remit_types::id::TaskId::new(0, [0; 10]),
//! };
//! let mut prepared = prepare(&request).unwrap();
//! let report = run(&request, &mut prepared, "/tmp/task.jsonl".into(), &mut NoPrompter).unwrap();
//! println!("{:?}", report.outcome);
//! ```
#![forbid(unsafe_code)]

pub mod glob;
pub mod prepare;
pub mod programs;
pub mod record;
pub mod run;
