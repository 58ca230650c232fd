//! remit-codemode: code mode — an agent writes one program against a governed API instead of
//! issuing many tool calls, and the program runs in an isolate whose only capabilities are
//! that API's bindings.
//!
//! - [`source`]: the script as bytes → JavaScript QuickJS can run: UTF-8 and size checked,
//!   TypeScript types stripped with oxc, syntax errors with the script's own line and column.
//! - [`isolate`]: one QuickJS runtime per script (rquickjs), on a thread of its own, with
//!   no ambient I/O at all — no file system, network, process, timers, modules, and a clock
//!   frozen at the script's start — and limits on memory, stack, CPU time, wall time,
//!   binding calls and output, each stopping the script with an error it cannot catch.
//! - [`tools`]: the governed tools (`read_file`, `exec`, `http_fetch`, `git_push`, …),
//!   shared with the MCP server, with typed arguments and the arguments policies see.
//! - [`host`]: what a binding call asks of the world ([`host::Host`]).
//! - [`task`]: the task's host: every call a `tool_call` effect through the task's gate
//!   (decided with its arguments, recorded durably before it is performed, its outcome
//!   after, tied to the script's SHA-256), then performed *in the task*: programs through
//!   `TaskClient`, file and HTTP work by the in-task [`helper`], git by real `git`.
//! - [`d_ts`]: `remit.d.ts`, the API a script programs against.
//!
//! What it is not: not a sandbox for the programs a script starts (the task's sandbox is),
//! not a policy engine or a ledger (the gate is), and not a JavaScript runtime for general
//! use (no npm, no modules, no timers).
//!
//! ```
//! use std::sync::Arc;
//! use remit_codemode::host::{Host, Reply};
//! use remit_codemode::isolate::{Limits, RunOptions, StopHandle, run};
//! use remit_codemode::source::{Language, Script};
//! use remit_codemode::tools::Call;
//!
//! /// A host that reads every file as "hello" (a test double; the task's host is real).
//! struct Hello;
//! impl Host for Hello {
//!     fn call(&self, _script: &str, _call: Call) -> Reply {
//!         Reply::Ready(Ok(serde_json::json!({ "content": "hello" })))
//!     }
//! }
//!
//! let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
//! let script = Script::new(
//!     "greet.ts",
//!     b"const text: string = await remit.fs.read('a.txt'); console.log(text); return text.length;",
//!     Language::Ts,
//! )
//! .unwrap();
//! let options = RunOptions { limits: Limits::default(), runtime: runtime.handle().clone() };
//! let report = run(&script, Arc::new(Hello), &options, &StopHandle::new());
//! assert_eq!(report.output, "hello\n");
//! assert_eq!(report.result, Some(serde_json::json!(5)));
//! ```
#![forbid(unsafe_code)]

mod bindings;
pub mod helper;
pub mod host;
pub mod isolate;
pub mod source;
pub mod task;
pub mod tools;

pub use bindings::d_ts;
