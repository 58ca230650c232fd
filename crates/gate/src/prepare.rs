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
    /// A hidden pattern matched too much to enumerate.
    #[error(
        "filesystem.hidden pattern `{0}` matched more than {1} entries; name the paths instead"
    )]
    TooManyHidden(String, usize),
    /// The git directory of the workspace is not what it claims.
    #[error(
        "workspace `{0}` has a `.git` file pointing at `{1}`, which is not a git directory of this worktree"
    )]
    BadGitDir(String, String),
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
    let git = git_dirs(&workspace)?;

    // Hidden paths and globs.
    let mut hidden = Vec::new();
    for raw in &fs.hidden {
        if glob::is_glob(raw) {
            let (root_dir, pattern) = if raw.starts_with('/') || raw.starts_with("~/") {
                let full = expand(raw, &host_home, base);
                let text = full.to_string_lossy().into_owned();
                let cut = text.find(['*', '?']).unwrap_or(text.len());
                let dir_end = text[..cut].rfind('/').unwrap_or(0);
                (
                    PathBuf::from(&text[..dir_end.max(1)]),
                    text[dir_end + 1..].to_owned(),
                )
            } else {
                (workspace.clone(), raw.clone())
            };
            hidden.extend(
                walk_glob(&root_dir, &pattern)
                    .map_err(|limit| PrepareError::TooManyHidden(raw.clone(), limit))?,
            );
        } else {
            let path = if raw.starts_with('/') || raw.starts_with('~') {
                expand(raw, &host_home, base)
            } else {
                workspace.join(raw)
            };
            if std::fs::symlink_metadata(&path).is_ok() {
                hidden.push(path);
            }
        }
    }
    let protected: Vec<PathBuf> = fs
        .protected
        .iter()
        .map(|p| workspace.join(p))
        .filter(|p| p.exists())
        .collect();

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
    let programs = ProgramIndex::build(&rules.programs(), &search);
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
                Some(prefix) => key.starts_with(prefix),
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

/// Walk `root` for entries matching `pattern` (relative to `root`). Bounded.
fn walk_glob(root: &Path, pattern: &str) -> Result<Vec<PathBuf>, usize> {
    const LIMIT: usize = 200_000;
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    let mut seen = 0usize;
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > LIMIT {
                return Err(LIMIT);
            }
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            if glob::matches(pattern, &rel) {
                out.push(path.clone());
                continue;
            }
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(path);
            }
        }
    }
    Ok(out)
}

/// The git directory pieces of a workspace, validated.
pub fn git_dirs(workspace: &Path) -> Result<Option<GitDirs>, PrepareError> {
    let dot_git = workspace.join(".git");
    let Ok(meta) = std::fs::symlink_metadata(&dot_git) else {
        return Ok(None);
    };
    let (git_dir, common_dir) = if meta.is_dir() {
        (dot_git.clone(), dot_git.clone())
    } else if meta.is_file() {
        let text = std::fs::read_to_string(&dot_git).unwrap_or_default();
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
        let back = std::fs::read_to_string(git_dir.join("gitdir")).map_err(|_| bad(target))?;
        let back = std::fs::canonicalize(back.trim()).map_err(|_| bad(target))?;
        if back != std::fs::canonicalize(&dot_git).unwrap_or_default() {
            return Err(bad(target));
        }
        let common = std::fs::read_to_string(git_dir.join("commondir")).map_err(|_| bad(target))?;
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
    if let Ok(modules) = std::fs::read_dir(common_dir.join("modules")) {
        for module in modules.flatten() {
            read_only.push(module.path().join("config"));
            read_only.push(module.path().join("hooks"));
        }
    }
    for dir in &create_dirs {
        // Without a hooks directory the task could create one; an empty one is mounted
        // read-only instead. Git creates the same directory on `init`.
        let _ = std::fs::create_dir_all(dir);
    }
    read_only.retain(|p| p.exists());
    Ok(Some(GitDirs {
        outside_workspace: !common_dir.starts_with(workspace),
        common_dir,
        read_only,
        create_dirs,
    }))
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
