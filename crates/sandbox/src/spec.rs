//! What a sandbox is made of, fully resolved: absolute paths that exist, a final environment,
//! numbers. The caller (the gate) turns a remit into a [`SandboxSpec`]; this crate enforces it.

use std::path::PathBuf;

/// Everything needed to build one task's sandbox.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    /// Task name used for cgroups and records (the task id).
    pub task: String,
    /// The workspace: read-write, at its own path. Absolute, canonical, existing.
    pub workspace: PathBuf,
    /// When the workspace is a git worktree or a repository, its git directory pieces.
    pub git: Option<GitDirs>,
    /// Extra read-only paths (absolute, existing).
    pub read_only: Vec<PathBuf>,
    /// Extra read-write paths (absolute, existing).
    pub read_write: Vec<PathBuf>,
    /// Paths to make unreachable (absolute, existing, inside something visible).
    pub hidden: Vec<PathBuf>,
    /// Paths inside writable places to keep read-only (absolute, existing).
    pub protected: Vec<PathBuf>,
    /// Host files or directories mounted at another path inside (the agent socket, the
    /// `remit` binary), read-only unless `writable`.
    pub binds: Vec<Bind>,
    /// Programs whose files are replaced by an empty, unreadable file (absolute host paths of
    /// binaries a remit forbids outright).
    pub masked_programs: Vec<PathBuf>,
    /// When set, only these files may be executed (Landlock execute rights), plus the
    /// dynamic loader, plus writable places when `exec_writable`.
    pub exec_allowlist: Option<Vec<PathBuf>>,
    /// Whether programs may be executed from the workspace, `/tmp` and home.
    pub exec_writable: bool,
    /// The task's environment, final (already scrubbed and extended).
    pub env: Vec<(String, String)>,
    /// The user the task's processes run as, inside.
    pub user: UserSpec,
    /// Host name inside.
    pub hostname: String,
    /// Resource limits.
    pub limits: ResourceLimits,
    /// TCP ports the task may bind and connect to on its own loopback.
    pub listen_ports: Vec<u16>,
    /// When set, a listening socket on `127.0.0.1:<port>` inside the task is made for the
    /// egress proxy and handed to the supervisor ([`crate::Sandbox::take_proxy_listener`]);
    /// the task may connect to it.
    pub proxy_port: Option<u16>,
    /// Give the task a freezer (a leaf cgroup of the unified hierarchy its init is born
    /// into), so that [`crate::Sandbox::freezer_dir`] can stop every process of it at once
    /// while a host command works on its workspace. Best effort: why it could not be made
    /// is kept ([`crate::Sandbox::freezer_dir`] answers it).
    pub freezable: bool,
    /// Observe every `execve` (seccomp user notification) so the supervisor can record and
    /// decide it.
    pub observe_exec: bool,
    /// Go on when a layer this spec needs is missing on the host (recorded and loud).
    pub allow_degraded: bool,
}

/// A host path mounted at a chosen path inside the task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Absolute host path (existing).
    pub source: PathBuf,
    /// Absolute path inside the task (created as needed).
    pub target: PathBuf,
    /// Whether the task may write through it (a socket needs it to connect).
    pub writable: bool,
}

/// The pieces of a git directory a task needs: the directory git writes to, and what must
/// stay read-only in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitDirs {
    /// The common git directory (`.git` of the main worktree). For a worktree it lies outside
    /// the workspace and is mounted read-write at its own path.
    pub common_dir: PathBuf,
    /// Whether `common_dir` lies outside the workspace (a linked worktree).
    pub outside_workspace: bool,
    /// Paths kept read-only: config, hooks, the worktree's own config, submodule configs
    /// and hooks.
    pub read_only: Vec<PathBuf>,
    /// Places that must exist to be protected but did not (created empty before mounting,
    /// e.g. `.git/hooks`).
    pub create_dirs: Vec<PathBuf>,
}

/// The user inside the task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSpec {
    /// Login name shown by `id` and `whoami`.
    pub name: String,
    /// Home directory path (a fresh private directory).
    pub home: PathBuf,
    /// Login shell recorded in the generated `/etc/passwd`.
    pub shell: String,
}

/// Resource limits for the whole task.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceLimits {
    /// Memory for all the task's processes, bytes (memory cgroup).
    pub memory: Option<u64>,
    /// Processes and threads at once (pids cgroup where available, always an rlimit).
    pub pids: Option<u32>,
    /// CPU cores (cpu cgroup).
    pub cpu: Option<f64>,
    /// Open files per process (rlimit).
    pub open_files: Option<u64>,
    /// Largest file a process may write, bytes (rlimit).
    pub file_size: Option<u64>,
    /// Size of the private `/tmp`, bytes.
    pub tmp_size: Option<u64>,
}

impl SandboxSpec {
    /// A spec with the workspace and nothing else granted, for tests and benchmarks.
    pub fn minimal(task: &str, workspace: PathBuf) -> SandboxSpec {
        SandboxSpec {
            task: task.to_owned(),
            workspace,
            git: None,
            read_only: Vec::new(),
            read_write: Vec::new(),
            hidden: Vec::new(),
            protected: Vec::new(),
            binds: Vec::new(),
            masked_programs: Vec::new(),
            exec_allowlist: None,
            exec_writable: true,
            env: vec![
                ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
                ("HOME".into(), "/home/agent".into()),
            ],
            user: UserSpec {
                name: "agent".into(),
                home: PathBuf::from("/home/agent"),
                shell: "/bin/sh".into(),
            },
            hostname: "remit".into(),
            limits: ResourceLimits {
                pids: Some(1024),
                open_files: Some(4096),
                ..ResourceLimits::default()
            },
            listen_ports: Vec::new(),
            proxy_port: None,
            freezable: false,
            observe_exec: true,
            allow_degraded: false,
        }
    }
}
