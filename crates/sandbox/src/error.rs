//! Containment layers and the ways building a sandbox fails.

use std::fmt;

/// One containment layer. `remit doctor` reports each; a run needing one the host lacks is
/// refused unless degraded mode is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Layer {
    /// User namespace mapped to an unprivileged uid.
    UserNamespace,
    /// Private mount namespace with `pivot_root` into a minimal tree.
    MountNamespace,
    /// Private pid namespace with an init that reaps.
    PidNamespace,
    /// Private network namespace (loopback only).
    NetNamespace,
    /// Private System V IPC namespace.
    IpcNamespace,
    /// Private host name.
    UtsNamespace,
    /// Private cgroup namespace.
    CgroupNamespace,
    /// Idmapped mounts, so the workspace's owner maps to the task's unprivileged uid (only
    /// needed when the supervisor runs as root).
    IdmappedMount,
    /// Landlock filesystem rules.
    Landlock,
    /// Landlock TCP bind/connect rules (ABI 4).
    LandlockNet,
    /// Landlock scoping of signals and abstract Unix sockets (ABI 6).
    LandlockScope,
    /// The seccomp filter.
    Seccomp,
    /// seccomp user notification: every `execve` observed and decided by the supervisor.
    SeccompNotify,
    /// `no_new_privs`.
    NoNewPrivs,
    /// Empty capability sets.
    Capabilities,
    /// Resource rlimits.
    Rlimits,
    /// Memory limit through a cgroup controller.
    CgroupMemory,
    /// Process-count limit through a cgroup controller.
    CgroupPids,
    /// CPU limit through a cgroup controller.
    CgroupCpu,
}

impl Layer {
    /// Every layer, in the order `remit doctor` prints them.
    pub const ALL: [Layer; 19] = [
        Layer::UserNamespace,
        Layer::MountNamespace,
        Layer::PidNamespace,
        Layer::NetNamespace,
        Layer::IpcNamespace,
        Layer::UtsNamespace,
        Layer::CgroupNamespace,
        Layer::IdmappedMount,
        Layer::Landlock,
        Layer::LandlockNet,
        Layer::LandlockScope,
        Layer::Seccomp,
        Layer::SeccompNotify,
        Layer::NoNewPrivs,
        Layer::Capabilities,
        Layer::Rlimits,
        Layer::CgroupMemory,
        Layer::CgroupPids,
        Layer::CgroupCpu,
    ];

    /// Stable short name (used in records and messages).
    pub fn name(self) -> &'static str {
        match self {
            Layer::UserNamespace => "user-namespace",
            Layer::MountNamespace => "mount-namespace",
            Layer::PidNamespace => "pid-namespace",
            Layer::NetNamespace => "net-namespace",
            Layer::IpcNamespace => "ipc-namespace",
            Layer::UtsNamespace => "uts-namespace",
            Layer::CgroupNamespace => "cgroup-namespace",
            Layer::IdmappedMount => "idmapped-mount",
            Layer::Landlock => "landlock",
            Layer::LandlockNet => "landlock-net",
            Layer::LandlockScope => "landlock-scope",
            Layer::Seccomp => "seccomp",
            Layer::SeccompNotify => "seccomp-notify",
            Layer::NoNewPrivs => "no-new-privs",
            Layer::Capabilities => "capabilities",
            Layer::Rlimits => "rlimits",
            Layer::CgroupMemory => "cgroup-memory",
            Layer::CgroupPids => "cgroup-pids",
            Layer::CgroupCpu => "cgroup-cpu",
        }
    }

    /// Whether a run may go on without this layer in degraded mode. Namespaces, the seccomp
    /// filter, `no_new_privs` and dropping capabilities are never optional: without them
    /// there is no sandbox at all.
    pub fn degradable(self) -> bool {
        matches!(
            self,
            Layer::Landlock
                | Layer::LandlockNet
                | Layer::LandlockScope
                | Layer::SeccompNotify
                | Layer::CgroupMemory
                | Layer::CgroupPids
                | Layer::CgroupCpu
        )
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Building or driving a sandbox failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The host cannot enforce a layer the spec needs, and degraded mode was not asked for.
    #[error(
        "cannot enforce `{layer}` on this host: {reason} (see `remit doctor`; \
         `--dangerously-allow-degraded` runs without it)"
    )]
    Unavailable {
        /// The missing layer.
        layer: Layer,
        /// Why it is missing.
        reason: String,
    },
    /// A layer that is never optional could not be set up.
    #[error("cannot enforce `{layer}` on this host: {reason} (see `remit doctor`)")]
    Required {
        /// The layer.
        layer: Layer,
        /// Why it failed.
        reason: String,
    },
    /// A setup step inside the new namespaces failed.
    #[error("sandbox setup failed at `{step}`: {reason}")]
    Setup {
        /// The step (`mount /usr`, `pivot_root`, …).
        step: String,
        /// The operating system's reason.
        reason: String,
    },
    /// A cgroup could not be created or configured.
    #[error("cgroup `{controller}` at `{path}`: {reason}")]
    Cgroup {
        /// Controller (`memory`, `pids`, `cpu`).
        controller: String,
        /// The cgroup file or directory.
        path: String,
        /// The operating system's reason.
        reason: String,
    },
    /// Sandboxes must be created from a single-threaded process.
    #[error(
        "a sandbox can only be created from a single-threaded process (this one has {0} threads)"
    )]
    Threaded(usize),
    /// The sandbox's init process ended or stopped answering.
    #[error("the task's init process ended unexpectedly{0}")]
    InitGone(String),
    /// Another operating-system failure.
    #[error("{what}: {reason}")]
    Io {
        /// What was being done, with the user's values in backticks.
        what: String,
        /// The operating system's reason.
        reason: String,
    },
    /// Not Linux.
    #[error("remit's sandbox needs Linux; this is `{0}`")]
    Unsupported(&'static str),
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, err: &std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            reason: reason(err),
        }
    }
}

/// An OS error as lowercase text without Rust's `(os error N)` suffix.
pub(crate) fn reason(err: &std::io::Error) -> String {
    remit_types::remit::io_reason(err)
}
