//! From a remit and a command line to a sandbox spec: resolve paths, build the environment,
//! find the git directory, find the programs rules name, check the command exists.
//!
//! Everything here happens before anything is created, so a refusal leaves nothing behind.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use remit_policy::commands::CommandRules;
use remit_sandbox::{GitDirs, ResourceLimits, SandboxSpec, UserSpec};
use remit_types::id::TaskId;
use remit_types::remit::{LoadedRemit, io_reason};

use crate::glob;
use crate::programs::ProgramIndex;

/// What `remit run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The remit (from a file or the default).
    pub remit: LoadedRemit,
    /// `--workspace`, overriding the remit's.
    pub workspace: Option<PathBuf>,
    /// The command and its arguments.
    pub command: Vec<String>,
    /// `--dangerously-allow-degraded`.
    pub allow_degraded: bool,
    /// The invoking process's working directory.
    pub cwd: PathBuf,
    /// The invoking environment.
    pub host_env: Vec<(String, String)>,
    /// The task's id.
    pub task: TaskId,
}

/// A task ready to start.
#[derive(Debug)]
pub struct Prepared {
    /// The sandbox to build.
    pub spec: SandboxSpec,
    /// The program to start (absolute path inside).
    pub program: PathBuf,
    /// Its arguments (`argv[0]` as the user typed it).
    pub argv: Vec<String>,
    /// Its working directory.
    pub cwd: PathBuf,
    /// The remit's command rules.
    pub rules: CommandRules,
    /// Identities of the programs the rules name.
    pub programs: ProgramIndex,
    /// Wall-clock limit.
    pub wall: Option<Duration>,
    /// Things worth knowing that did not stop the run (paths skipped, …).
    pub notes: Vec<String>,
    /// The submodule git directories found (and protected) for a git workspace, for the
    /// check after the task ([`crate::changes::Baseline::git_with`]).
    pub submodules: Option<crate::submodules::Protected>,
}

/// Why a task could not be prepared. Every message is one line.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The workspace is missing or not a directory.
    #[error("workspace `{0}` {1}")]
    Workspace(String, String),
    /// No command was given.
    #[error("no command to run (usage: `remit run [--remit FILE] -- COMMAND [ARGS…]`)")]
    NoCommand,
    /// The command cannot be found inside the task.
    #[error("command `{0}` not found in the task's PATH")]
    NotFound(String),
    /// The command is outside everything the task can see.
    #[error(
        "command `{0}` is not visible inside the task (only the system, the workspace and granted paths are)"
    )]
    NotVisible(String),
    /// Searching the granted trees for paths to hide would read too much: the task does not
    /// start rather than start with something unhidden.
    #[error(
        "cannot search `{0}` for paths to hide ({1}): it would read more than {2} directory entries in all; grant narrower directories"
    )]
    HiddenScan(String, String, usize),
    /// Patterns matched more paths than can be masked.
    #[error(
        "more than {1} paths to hide matched in `{0}`; use fewer or narrower filesystem.hidden patterns"
    )]
    TooManyHidden(String, usize),
    /// The git directory of the workspace is not what it claims.
    #[error(
        "workspace `{0}` has a `.git` file pointing at `{1}`, which is not a git directory of this worktree"
    )]
    BadGitDir(String, String),
    /// A path remit mounts read-only is a symbolic link (a task may have planted it).
    #[error(
        "`{0}` is a symbolic link; remit protects it only as a file or directory of its own (a link could carry another file into the task): replace the link"
    )]
    ProtectedLink(String),
}

/// The paths of `candidates` that exist, refusing any that is a symbolic link: a read-only
/// bind of a link would mount its target, whatever a task pointed it at.
fn protectable(candidates: Vec<PathBuf>) -> Result<Vec<PathBuf>, PrepareError> {
    let mut out = Vec::new();
    for path in candidates {
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(PrepareError::ProtectedLink(path.display().to_string()));
            }
            Ok(_) => out.push(path),
            Err(_) => {}
        }
    }
    Ok(out)
}

const SYSTEM_TREES: [&str; 7] = ["/usr", "/etc", "/bin", "/sbin", "/lib", "/lib64", "/lib32"];

fn env_get<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
    env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// `~/x` → home/x; relative → base/x.
fn expand(path: &str, home: &Path, base: &Path) -> PathBuf {
    if path == "~" {
        home.to_path_buf()
    } else if let Some(rest) = path.strip_prefix("~/") {
        home.join(rest)
    } else if Path::new(path).is_absolute() {
        PathBuf::from(path)
    } else {
        base.join(path)
    }
}

/// Prepare a run.
pub fn prepare(request: &RunRequest) -> Result<Prepared, PrepareError> {
    let remit = &request.remit.remit;
    let fs = &remit.filesystem;
    let host_home = PathBuf::from(env_get(&request.host_env, "HOME").unwrap_or("/root"));
    let base = &request.remit.base_dir;
    let mut notes = Vec::new();

    // The workspace.
    let workspace_raw = match (&request.workspace, &fs.workspace) {
        (Some(w), _) => request.cwd.join(w),
        (None, Some(w)) => expand(w, &host_home, base),
        (None, None) => request.cwd.clone(),
    };
    let workspace = std::fs::canonicalize(&workspace_raw).map_err(|e| {
        PrepareError::Workspace(
            workspace_raw.display().to_string(),
            format!("cannot be used: {}", io_reason(&e)),
        )
    })?;
    if !workspace.is_dir() {
        return Err(PrepareError::Workspace(
            workspace.display().to_string(),
            "is not a directory".into(),
        ));
    }
    if workspace == Path::new("/") || SYSTEM_TREES.iter().any(|s| workspace.starts_with(s)) {
        return Err(PrepareError::Workspace(
            workspace.display().to_string(),
            "is a system directory; a workspace must be a project directory".into(),
        ));
    }
    if request.command.is_empty() {
        return Err(PrepareError::NoCommand);
    }

    // Granted paths: canonical, existing; missing ones are noted and skipped.
    let mut resolve_all = |list: &[String], what: &str| -> Vec<PathBuf> {
        let mut out = Vec::new();
        for raw in list {
            let path = expand(raw, &host_home, base);
            match std::fs::canonicalize(&path) {
                Ok(p) if p == Path::new("/") => {
                    notes.push(format!("filesystem.{what} `{raw}` is `/`; skipped"))
                }
                Ok(p) => out.push(p),
                Err(_) => notes.push(format!("filesystem.{what} `{raw}` does not exist; skipped")),
            }
        }
        out
    };
    let read_only = resolve_all(&fs.read_only, "read_only");
    let read_write = resolve_all(&fs.read_write, "read_write");

    // The user inside.
    let root = is_root();
    let user = UserSpec {
        name: if root {
            "agent".into()
        } else {
            env_get(&request.host_env, "USER")
                .unwrap_or("agent")
                .to_owned()
        },
        home: host_home.clone(),
        shell: "/bin/sh".into(),
    };

    // Git.
    let (git, submodules) = match git_dirs(&workspace)? {
        Some((dirs, found)) => (Some(dirs), Some(found)),
        None => (None, None),
    };

    // Hidden paths and globs, in every granted tree.
    let trees = Trees {
        workspace: &workspace,
        read_only: &read_only,
        read_write: &read_write,
        git_dir: git
            .as_ref()
            .filter(|g| g.outside_workspace)
            .map(|g| g.common_dir.as_path()),
    };
    let mut hidden = hidden_paths(&fs.hidden, &host_home, base, &trees, HIDDEN_LIMITS)?;
    hidden.extend(remit_state_paths(&request.host_env, &workspace, &trees));
    let mut protected = protectable(fs.protected.iter().map(|p| workspace.join(p)).collect())?;
    // The remit itself and the Cedar files it names, where the task could otherwise write
    // them (the workspace, a writable grant): what governs the next run is not the task's to
    // change.
    let writable =
        |p: &Path| p.starts_with(&workspace) || read_write.iter().any(|r| p.starts_with(r));
    let governing = std::iter::once(PathBuf::from(&request.remit.origin)).chain(
        remit
            .policy
            .cedar
            .iter()
            .map(|c| expand(c, &host_home, base)),
    );
    for path in governing {
        if let Ok(path) = std::fs::canonicalize(&path)
            && writable(&path)
            && !protected.contains(&path)
        {
            protected.push(path);
        }
    }

    // Command rules and the programs they name.
    let rules = CommandRules::new(&remit.commands);
    let path_var = env_get(&request.host_env, "PATH")
        .unwrap_or("/usr/local/bin:/usr/bin:/bin")
        .to_owned();
    let search: Vec<PathBuf> = path_var
        .split(':')
        .filter(|d| d.starts_with('/'))
        .map(PathBuf::from)
        .chain(
            [
                "/usr/local/sbin",
                "/usr/local/bin",
                "/usr/sbin",
                "/usr/bin",
                "/sbin",
                "/bin",
            ]
            .map(PathBuf::from),
        )
        .collect();
    let mut programs = ProgramIndex::build(&rules.programs(), &search);
    if !rules.is_empty() {
        // A copy of the dynamic loader is still the loader: what it runs is identified.
        programs.add_loaders();
    }
    let mut masked: BTreeSet<PathBuf> = BTreeSet::new();
    for name in rules.forbidden_programs() {
        for file in programs.files_of(name) {
            masked.insert(file.to_path_buf());
        }
    }
    let exec_allowlist = rules.allowlist().map(|names| {
        names
            .iter()
            .flat_map(|n| programs.files_of(n).iter().cloned())
            .collect::<Vec<PathBuf>>()
    });

    // The environment.
    let env = environment(request, &user, &path_var);

    let visible = |p: &Path| {
        SYSTEM_TREES.iter().any(|s| p.starts_with(s))
            || p.starts_with(&workspace)
            || read_only.iter().any(|r| p.starts_with(r))
            || read_write.iter().any(|r| p.starts_with(r))
    };
    // The program.
    let command = &request.command[0];
    let program = if command.contains('/') {
        let path = request.cwd.join(command);
        let real =
            std::fs::canonicalize(&path).map_err(|_| PrepareError::NotFound(command.clone()))?;
        if !visible(&real) {
            return Err(PrepareError::NotVisible(command.clone()));
        }
        path
    } else {
        search
            .iter()
            .map(|d| d.join(command))
            .find(|p| {
                is_executable(p)
                    && std::fs::canonicalize(p)
                        .map(|r| visible(&r))
                        .unwrap_or(false)
            })
            .ok_or_else(|| PrepareError::NotFound(command.clone()))?
    };
    let cwd = if request.cwd.starts_with(&workspace) {
        request.cwd.clone()
    } else {
        workspace.clone()
    };

    let limits = &remit.limits;
    let spec = SandboxSpec {
        task: request.task.short(),
        workspace: workspace.clone(),
        git,
        read_only,
        read_write,
        hidden,
        protected,
        binds: Vec::new(),
        masked_programs: masked.into_iter().collect(),
        exec_allowlist,
        exec_writable: fs.exec_writable,
        env,
        user,
        hostname: remit
            .sandbox
            .hostname
            .clone()
            .unwrap_or_else(|| "remit".into()),
        limits: ResourceLimits {
            memory: limits.memory.map(|m| m.0),
            pids: limits.pids,
            cpu: limits.cpu,
            open_files: limits.open_files,
            file_size: limits.file_size.map(|f| f.0),
            tmp_size: limits.tmp.map(|t| t.0),
        },
        listen_ports: remit.network.listen.clone(),
        proxy_port: None,
        // An action whose host command runs in the workspace freezes the task meanwhile.
        freezable: remit
            .actions
            .values()
            .any(remit_types::remit::ActionGrant::binds_workspace),
        observe_exec: true,
        allow_degraded: request.allow_degraded || remit.sandbox.dangerously_allow_degraded,
    };
    let wall = match (limits.wall, remit.agent.ttl) {
        (Some(a), Some(b)) => Some(a.0.min(b.0)),
        (Some(a), None) | (None, Some(a)) => Some(a.0),
        (None, None) => None,
    };
    Ok(Prepared {
        spec,
        program,
        argv: request.command.clone(),
        cwd,
        rules,
        programs,
        wall,
        notes,
        submodules,
    })
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Variables inherited by default (plus `LC_*`).
const INHERITED: [&str; 14] = [
    "PATH",
    "TERM",
    "COLORTERM",
    "LANG",
    "LANGUAGE",
    "TZ",
    "NO_COLOR",
    "FORCE_COLOR",
    "CLICOLOR",
    "CLICOLOR_FORCE",
    "COLUMNS",
    "LINES",
    "TERM_PROGRAM",
    "TERMINFO",
];

/// Variables a `pass` pattern (`GIT_*`) does not match: their values carry credentials
/// (`GIT_CONFIG_VALUE_0` can hold an `http.extraHeader` bearer token) or make trusted
/// programs load other code. `pass` may still name one exactly.
fn named_only(key: &str) -> bool {
    key.starts_with("GIT_CONFIG")
        || key.starts_with("LD_")
        || matches!(
            key,
            "GIT_ASKPASS"
                | "SSH_ASKPASS"
                | "SSH_AUTH_SOCK"
                | "BASH_ENV"
                | "ENV"
                | "GIT_SSH_COMMAND"
                | "GIT_SSH"
                | "GIT_PROXY_COMMAND"
                | "GIT_EXEC_PATH"
                | "NODE_OPTIONS"
                | "PYTHONSTARTUP"
                | "PERL5OPT"
                | "RUBYOPT"
        )
}

fn environment(request: &RunRequest, user: &UserSpec, path: &str) -> Vec<(String, String)> {
    let remit = &request.remit.remit;
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| {
        env.retain(|(key, _)| key != k);
        env.push((k.to_owned(), v.to_owned()));
    };
    for (key, value) in &request.host_env {
        let inherited = INHERITED.contains(&key.as_str()) || key.starts_with("LC_");
        let passed = remit
            .environment
            .pass
            .iter()
            .any(|p| match p.strip_suffix('*') {
                // A pattern never brings in what carries credentials or loads code into
                // trusted programs; only its exact name can.
                Some(prefix) => key.starts_with(prefix) && !named_only(key),
                None => p == key,
            });
        if (inherited || passed) && !remit_types::remit::looks_like_secret_name(key) {
            set(key, value);
        }
    }
    set("PATH", path);
    set("HOME", &user.home.to_string_lossy());
    set("USER", &user.name);
    set("LOGNAME", &user.name);
    set("SHELL", &user.shell);
    set("TMPDIR", "/tmp");
    set("REMIT_TASK", &request.task.to_string());
    for (key, value) in &remit.environment.set {
        set(key, value);
    }
    env
}

/// Hidden in every granted tree outside the workspace, whatever the remit says: anything
/// whose name starts with `.env` (`.env`, `.env.local`, `.env.production`, direnv's `.envrc`).
/// Inside the workspace such files are the project's own and hidden only when the remit says.
pub const HIDDEN_OUTSIDE_WORKSPACE: &str = "**/.env*";

/// The bounds on finding paths to hide when a task starts, which walks granted trees:
/// directory entries read, in all trees and for all patterns together, and paths matched
/// (each becomes one mount). Past either the task does not start (fail closed), with a
/// message naming the tree.
#[derive(Debug, Clone, Copy)]
pub struct HiddenLimits {
    /// Most directory entries read.
    pub entries: usize,
    /// Most paths hidden by patterns.
    pub matches: usize,
}

/// The limits `remit run` uses: a million entries is a few hundred milliseconds with a warm
/// cache, and more than any project with its build output, or a large `~/.cargo/registry`.
pub const HIDDEN_LIMITS: HiddenLimits = HiddenLimits {
    entries: 1_000_000,
    matches: 10_000,
};

/// The trees a task can see besides the system.
struct Trees<'a> {
    workspace: &'a Path,
    read_only: &'a [PathBuf],
    read_write: &'a [PathBuf],
    git_dir: Option<&'a Path>,
}

impl Trees<'_> {
    /// Whether a host path is visible inside the task.
    fn visible(&self, p: &Path) -> bool {
        SYSTEM_TREES.iter().any(|s| p.starts_with(s))
            || p.starts_with(self.workspace)
            || self.read_only.iter().any(|r| p.starts_with(r))
            || self.read_write.iter().any(|r| p.starts_with(r))
            || self.git_dir.is_some_and(|g| p.starts_with(g))
    }

    /// Whether `dir` is visible or holds something visible (a walk must enter it).
    fn leads_somewhere(&self, dir: &Path) -> bool {
        self.visible(dir)
            || self
                .read_only
                .iter()
                .chain(self.read_write)
                .map(PathBuf::as_path)
                .chain([self.workspace])
                .any(|r| r.starts_with(dir))
    }

    /// Granted trees outside the workspace (nested duplicates kept: each is searched from
    /// its own root).
    fn outside(&self) -> Vec<&Path> {
        let mut out: Vec<&Path> = self
            .read_only
            .iter()
            .chain(self.read_write)
            .map(PathBuf::as_path)
            .filter(|p| !p.starts_with(self.workspace))
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// remit's own state — its keys, ledger, vault, identity store and every task's sockets —
/// masked wherever a grant makes it visible (`read_only = ["~"]`), whatever the remit says.
/// When the workspace lies inside it, everything in it but the way to the workspace.
fn remit_state_paths(
    env: &[(String, String)],
    workspace: &Path,
    trees: &Trees<'_>,
) -> Vec<PathBuf> {
    let home = crate::record::remit_home(env);
    let run = crate::registry::run_dir(env, &home);
    let mut out = Vec::new();
    for state in [home, run] {
        let Ok(state) = std::fs::canonicalize(&state) else {
            continue;
        };
        if workspace.starts_with(&state) {
            for entry in std::fs::read_dir(&state).into_iter().flatten().flatten() {
                let path = entry.path();
                if !workspace.starts_with(&path) && trees.visible(&path) {
                    out.push(path);
                }
            }
        } else if trees.visible(&state) {
            out.push(state);
        }
    }
    // One mask covers what lies under it (the run directory is in the home by default).
    let all = out.clone();
    out.retain(|p| !all.iter().any(|q| q != p && p.starts_with(q)));
    out
}

/// Every host path to mask, from `filesystem.hidden` and the default for trees outside the
/// workspace.
///
/// - Absolute entries (`/…`, `~/…`) name host paths; their globs are searched only where
///   the task can see something.
/// - Relative entries apply inside every granted tree, relative to its root: the workspace,
///   `read_only` and `read_write`.
/// - Every tree outside the workspace is also searched for [`HIDDEN_OUTSIDE_WORKSPACE`]. The
///   search of such a tree does not enter the workspace, which has its own rules.
/// - A match that is a symbolic link hides its target too when the target is visible (a
///   mount over a link would land on the target, so the link itself is never masked).
///
/// Symbolic links are never followed while searching: inside the task they resolve to
/// another visible tree (searched on its own) or to nothing.
fn hidden_paths(
    hidden: &[String],
    home: &Path,
    base: &Path,
    trees: &Trees<'_>,
    limits: HiddenLimits,
) -> Result<Vec<PathBuf>, PrepareError> {
    let mut budget = limits.entries;
    let mut out: Vec<PathBuf> = Vec::new();
    let absolute = |raw: &str| raw.starts_with('/') || raw.starts_with('~');
    let relative_globs: Vec<String> = hidden
        .iter()
        .filter(|r| !absolute(r) && glob::is_glob(r))
        .cloned()
        .collect();
    let outside = trees.outside();
    let roots = std::iter::once(trees.workspace).chain(outside.iter().copied());
    let describe = |patterns: &[String]| {
        patterns
            .iter()
            .map(|p| {
                if p == HIDDEN_OUTSIDE_WORKSPACE {
                    format!("`{p}`, hidden by default outside the workspace")
                } else {
                    format!("`{p}`")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };

    // Plain paths.
    for raw in hidden.iter().filter(|r| !glob::is_glob(r)) {
        if absolute(raw) {
            out.push(expand(raw, home, base));
        } else {
            out.extend(roots.clone().map(|root| root.join(raw)));
        }
    }
    out.retain(|p| std::fs::symlink_metadata(p).is_ok());

    // Relative globs in every tree, and the default outside the workspace.
    for root in roots.clone() {
        let mut patterns = relative_globs.clone();
        let is_workspace = root == trees.workspace;
        if !is_workspace {
            patterns.push(HIDDEN_OUTSIDE_WORKSPACE.to_owned());
        }
        if patterns.is_empty() {
            continue;
        }
        let enter = |dir: &Path| is_workspace || dir != trees.workspace;
        // Outside the workspace, a Unix socket in a granted tree (a docker or agent socket
        // under a granted home) is hidden too: a read-only mount does not stop `connect`.
        let found = walk(root, &patterns, !is_workspace, &enter, &mut budget).map_err(|()| {
            PrepareError::HiddenScan(
                root.display().to_string(),
                describe(&patterns),
                limits.entries,
            )
        })?;
        out.extend(found);
        if out.len() > limits.matches {
            return Err(PrepareError::TooManyHidden(
                root.display().to_string(),
                limits.matches,
            ));
        }
    }

    // Absolute globs: searched from the directory before the first wildcard, entering only
    // directories the task can see or that lead to one.
    for raw in hidden.iter().filter(|r| absolute(r) && glob::is_glob(r)) {
        let full = expand(raw, home, base);
        let text = full.to_string_lossy().into_owned();
        let cut = text.find(['*', '?']).unwrap_or(text.len());
        let dir_end = text[..cut].rfind('/').unwrap_or(0);
        let root = PathBuf::from(&text[..dir_end.max(1)]);
        let pattern = vec![text[dir_end + 1..].to_owned()];
        if !trees.leads_somewhere(&root) {
            continue;
        }
        let enter = |dir: &Path| trees.leads_somewhere(dir);
        let found = walk(&root, &pattern, false, &enter, &mut budget).map_err(|()| {
            PrepareError::HiddenScan(
                root.display().to_string(),
                describe(&pattern),
                limits.entries,
            )
        })?;
        out.extend(found.into_iter().filter(|p| trees.visible(p)));
        if out.len() > limits.matches {
            return Err(PrepareError::TooManyHidden(
                root.display().to_string(),
                limits.matches,
            ));
        }
    }

    // Links: hide what they point at when the task can see it.
    let targets: Vec<PathBuf> = out
        .iter()
        .filter(|p| {
            std::fs::symlink_metadata(p)
                .map(|m| m.file_type().is_symlink())
                .unwrap_or(false)
        })
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .filter(|t| trees.visible(t))
        .collect();
    out.extend(targets);
    out.sort();
    out.dedup();
    Ok(out)
}

/// Walk `root` for entries whose path relative to `root` matches one of `patterns`. Matched
/// directories are not entered (they are hidden whole); symbolic links are not followed;
/// directories `enter` refuses are skipped; with `sockets`, every Unix socket matches too.
/// Every entry read takes one from `budget`; `Err` when it runs out.
fn walk(
    root: &Path,
    patterns: &[String],
    sockets: bool,
    enter: &dyn Fn(&Path) -> bool,
    budget: &mut usize,
) -> Result<Vec<PathBuf>, ()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::FileTypeExt as _;
    let patterns: Vec<glob::Pattern> = patterns.iter().map(|p| glob::Pattern::new(p)).collect();
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            *budget = budget.checked_sub(1).ok_or(())?;
            let path = entry.path();
            let name = entry.file_name();
            let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy();
            let socket = sockets && entry.file_type().is_ok_and(|t| t.is_socket());
            if socket || patterns.iter().any(|p| p.matches(&rel, name.as_bytes())) {
                out.push(path);
                continue;
            }
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) && enter(&path) {
                stack.push(path);
            }
        }
    }
    Ok(out)
}

/// The git directory pieces of a workspace, validated.
/// With the submodule git directories found, whose configuration and hooks are among them.
pub fn git_dirs(
    workspace: &Path,
) -> Result<Option<(GitDirs, crate::submodules::Protected)>, PrepareError> {
    let dot_git = workspace.join(".git");
    let Ok(meta) = std::fs::symlink_metadata(&dot_git) else {
        return Ok(None);
    };
    let (git_dir, common_dir) = if meta.is_dir() {
        (dot_git.clone(), dot_git.clone())
    } else if meta.is_file() {
        let text = crate::files::read_text(&dot_git).unwrap_or_default();
        let bad = |target: &str| {
            PrepareError::BadGitDir(workspace.display().to_string(), target.to_owned())
        };
        let target = text
            .trim()
            .strip_prefix("gitdir:")
            .map(str::trim)
            .ok_or_else(|| bad("?"))?;
        let git_dir = std::fs::canonicalize(workspace.join(target)).map_err(|_| bad(target))?;
        // The worktree's git directory must point back at this workspace: a `.git` file
        // cannot be used to get any other directory mounted read-write.
        let back = crate::files::read_text(&git_dir.join("gitdir")).ok_or_else(|| bad(target))?;
        let back = std::fs::canonicalize(back.trim()).map_err(|_| bad(target))?;
        if back != std::fs::canonicalize(&dot_git).unwrap_or_default() {
            return Err(bad(target));
        }
        let common =
            crate::files::read_text(&git_dir.join("commondir")).ok_or_else(|| bad(target))?;
        let common_dir =
            std::fs::canonicalize(git_dir.join(common.trim())).map_err(|_| bad(target))?;
        let looks_like_git = common_dir.join("HEAD").is_file()
            && common_dir.join("objects").is_dir()
            && common_dir.join("refs").is_dir();
        if !looks_like_git
            || git_dir.parent().and_then(Path::parent) != Some(common_dir.as_path())
            || SYSTEM_TREES.iter().any(|s| common_dir.starts_with(s))
        {
            return Err(bad(target));
        }
        (git_dir, common_dir)
    } else {
        return Ok(None);
    };
    let mut read_only = vec![common_dir.join("config"), common_dir.join("hooks")];
    let mut create_dirs = Vec::new();
    if !common_dir.join("hooks").exists() {
        create_dirs.push(common_dir.join("hooks"));
    }
    if git_dir != common_dir {
        read_only.push(git_dir.join("config.worktree"));
    }
    // Every submodule's git directory, wherever git would enter one from here: their
    // configuration and hooks run in the user's next `git status` or `git submodule update`.
    let submodules = crate::submodules::discover(workspace, &git_dir, &common_dir);
    for module in submodules.git_dirs() {
        read_only.push(module.join("config"));
        read_only.push(module.join("hooks"));
        if !module.join("hooks").exists() {
            create_dirs.push(module.join("hooks"));
        }
    }
    for dir in &create_dirs {
        // Without a hooks directory the task could create one; an empty one is mounted
        // read-only instead. Git creates the same directory on `init`.
        let _ = std::fs::create_dir_all(dir);
    }
    let read_only = protectable(read_only)?;
    Ok(Some((
        GitDirs {
            outside_workspace: !common_dir.starts_with(workspace),
            common_dir,
            read_only,
            create_dirs,
        },
        submodules,
    )))
}

/// The effective uid of this process (from `/proc/self`, which it owns).
pub fn effective_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap_or(u32::MAX)
}

/// The invoking OS user: `USER`, `LOGNAME`, else the name `/etc/passwd` gives our uid.
pub fn requester(env: &[(String, String)]) -> String {
    if let Some((_, name)) = env
        .iter()
        .find(|(k, v)| (k == "USER" || k == "LOGNAME") && !v.is_empty())
    {
        return name.clone();
    }
    crate::registry::user_name(effective_uid())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    /// `root/ro` (read-only, holding the workspace `root/ro/proj`), `root/rw` (read-write).
    struct Fixture {
        _dir: tempfile::TempDir,
        root: PathBuf,
        ws: PathBuf,
        ro: Vec<PathBuf>,
        rw: Vec<PathBuf>,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let ws = root.join("ro/proj");
        for d in [ws.join("conf"), root.join("ro/sub"), root.join("rw")] {
            std::fs::create_dir_all(d).unwrap();
        }
        for f in [
            "ro/proj/.env",
            "ro/proj/conf/k.pem",
            "ro/proj/main.rs",
            "ro/.env",
            "ro/.envrc",
            "ro/sub/.env.local",
            "ro/sub/k.pem",
            "ro/app.toml",
            "rw/.env.production",
            "rw/keep.txt",
            "rw/real.conf",
        ] {
            std::fs::write(root.join(f), "x").unwrap();
        }
        std::os::unix::fs::symlink(root.join("rw/real.conf"), root.join("rw/.env")).unwrap();
        Fixture {
            ro: vec![root.join("ro")],
            rw: vec![root.join("rw")],
            _dir: dir,
            root,
            ws,
        }
    }

    fn find(f: &Fixture, hidden: &[&str], limits: HiddenLimits) -> Result<Vec<String>, String> {
        let trees = Trees {
            workspace: &f.ws,
            read_only: &f.ro,
            read_write: &f.rw,
            git_dir: None,
        };
        let hidden: Vec<String> = hidden.iter().map(|s| s.to_string()).collect();
        hidden_paths(&hidden, &f.root.join("home"), &f.root, &trees, limits)
            .map(|paths| {
                paths
                    .iter()
                    .map(|p| p.strip_prefix(&f.root).unwrap().display().to_string())
                    .collect()
            })
            .map_err(|e| e.to_string())
    }

    #[test]
    fn env_files_outside_the_workspace_are_hidden_by_default() {
        let f = fixture();
        let found = find(&f, &[], HIDDEN_LIMITS).unwrap();
        assert_eq!(
            found,
            [
                "ro/.env",
                "ro/.envrc",
                "ro/sub/.env.local",
                "rw/.env",
                "rw/.env.production",
                // The link's target is hidden with it.
                "rw/real.conf",
            ],
            "the workspace's own `.env` is the project's, hidden only when asked"
        );
    }

    #[test]
    fn relative_patterns_apply_in_every_granted_tree() {
        let f = fixture();
        let found = find(&f, &["**/*.pem", "**/.env*", "app.toml"], HIDDEN_LIMITS).unwrap();
        for path in [
            "ro/proj/conf/k.pem",
            "ro/sub/k.pem",
            "ro/proj/.env",
            "ro/.env",
            "ro/app.toml",
        ] {
            assert!(found.iter().any(|p| p == path), "{path} not in {found:?}");
        }
        assert!(
            !found
                .iter()
                .any(|p| p.ends_with("main.rs") || p.ends_with("keep.txt"))
        );
    }

    #[test]
    fn absolute_globs_search_only_what_the_task_can_see() {
        let f = fixture();
        std::fs::create_dir_all(f.root.join("home")).unwrap();
        std::fs::write(f.root.join("home/a.key"), "x").unwrap();
        std::fs::write(f.root.join("rw/b.key"), "x").unwrap();
        let found = find(
            &f,
            &["~/*.key", &format!("{}/**/*.key", f.root.display())],
            HIDDEN_LIMITS,
        )
        .unwrap();
        assert!(found.iter().any(|p| p == "rw/b.key"), "{found:?}");
        assert!(!found.iter().any(|p| p == "home/a.key"), "{found:?}");
    }

    #[test]
    fn the_search_is_bounded_and_fails_closed() {
        let f = fixture();
        let many = f.root.join("ro/many");
        std::fs::create_dir_all(&many).unwrap();
        for i in 0..100 {
            std::fs::write(many.join(format!("f{i}")), "x").unwrap();
        }
        let err = find(
            &f,
            &[],
            HiddenLimits {
                entries: 50,
                matches: 100,
            },
        )
        .unwrap_err();
        assert!(
            err.contains(&f.root.join("ro").display().to_string())
                && err.contains("more than 50 directory entries")
                && err.contains("hidden by default outside the workspace"),
            "{err}"
        );
        // Enough room: the same tree is searched.
        assert!(
            find(
                &f,
                &[],
                HiddenLimits {
                    entries: 200,
                    matches: 100
                }
            )
            .is_ok()
        );
        // Too many matches (each is a mount) fail closed too.
        for i in 0..20 {
            std::fs::write(many.join(format!(".env.{i}")), "x").unwrap();
        }
        let err = find(
            &f,
            &[],
            HiddenLimits {
                entries: 1000,
                matches: 10,
            },
        )
        .unwrap_err();
        assert!(err.contains("more than 10 paths to hide"), "{err}");
    }
}
