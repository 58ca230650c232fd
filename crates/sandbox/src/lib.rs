//! Linux containment for remit tasks.
//!
//! A task runs in its own user, mount, pid, network, IPC, UTS and cgroup namespaces, in a
//! minimal tree reached by `pivot_root` (system read-only, workspace read-write, secrets
//! absent), as an unprivileged user with no capabilities, under Landlock and a seccomp filter,
//! with resource limits. Every program it starts is observed by the supervisor through seccomp
//! user notification. A pid-1 init inside reaps, forwards signals and starts further programs
//! on request, so a second command in a running task costs about a plain `fork+exec`.
//!
//! What this crate is not: it decides nothing. Which paths, programs, limits and commands a
//! task gets comes from the caller's [`SandboxSpec`] (built from a remit by the gate), and
//! whether an observed `execve` may proceed is answered by the caller through [`ExecWatch`].
//! It never weakens a layer silently: a layer the host cannot enforce is an error unless the
//! spec allows degraded mode, and then it is reported.
//!
//! ```no_run
//! use remit_sandbox::{Sandbox, SandboxSpec, SpawnRequest, Event};
//! use std::os::fd::AsFd;
//!
//! let spec = SandboxSpec::minimal("example", std::env::current_dir().unwrap());
//! let mut sandbox = Sandbox::create(&spec).unwrap();
//! let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
//! let id = sandbox
//!     .spawn(&SpawnRequest {
//!         path: "/bin/true".as_ref(),
//!         argv: &["true".to_string()],
//!         env: &spec.env,
//!         cwd: &spec.workspace,
//!         stdio: [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()],
//!         new_process_group: false,
//!     })
//!     .unwrap();
//! loop {
//!     // Commands are observed: answer each exec (here: allow everything).
//!     if let Some(watch) = sandbox.exec_watch() {
//!         while let Ok(Some(attempt)) = watch.recv() {
//!             watch.respond(&attempt, remit_sandbox::Verdict::Allow).unwrap();
//!         }
//!     }
//!     if let Ok(Some(Event::Exited { id: done, status })) = sandbox.try_event() {
//!         if done == id {
//!             println!("{status:?}");
//!             break;
//!         }
//!     }
//! }
//! ```

mod error;
mod spec;

pub use error::{Error, Layer};
pub use spec::{Bind, GitDirs, ResourceLimits, SandboxSpec, UserSpec};

#[cfg(target_os = "linux")]
pub mod cgroup;
#[cfg(target_os = "linux")]
pub mod doctor;
#[cfg(target_os = "linux")]
mod exec;
#[cfg(target_os = "linux")]
pub mod freezer;
#[cfg(target_os = "linux")]
pub mod host;
#[cfg(target_os = "linux")]
mod init;
#[cfg(target_os = "linux")]
mod plan;
#[cfg(target_os = "linux")]
mod protocol;
#[cfg(target_os = "linux")]
mod sandbox;
#[cfg(target_os = "linux")]
pub mod seccomp;
#[cfg(target_os = "linux")]
mod sys;

#[cfg(target_os = "linux")]
pub use exec::{ExecAttempt, ExecWatch, ProgramFile, Verdict};
#[cfg(target_os = "linux")]
pub use plan::always_hidden;
#[cfg(target_os = "linux")]
pub use sandbox::{Event, ExitStatus, Sandbox, SpawnRequest, Starting, TASK_HOST_ID, TASK_UID};

#[cfg(not(target_os = "linux"))]
mod unsupported;
#[cfg(not(target_os = "linux"))]
pub use unsupported::*;
