//! What a task changed in its workspace: the `file_changes` event and the diff hash its
//! receipt carries.
//!
//! A git workspace is compared with the commit it started at, so commits the task made count
//! too: every file of the work tree (untracked ones included, ignored ones not) is added to a
//! throw-away copy of the index, and `git diff --cached --binary <base>` against it is the
//! workspace diff. Its SHA-256 is `diff_sha256`; an auditor with the repository gets the same
//! bytes from the same commands. The user's index, refs and configuration are not touched, and
//! git runs with no global or system configuration, no hooks and no external diff or
//! text-conversion programs (the task could have planted attributes naming them).
//!
//! Any other workspace is compared by file identity (inode, size, modification time) with a
//! listing taken before the task started; there is no diff hash.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use remit_types::event::FileChanges;
use sha2::{Digest, Sha256};

/// Most changed paths a `file_changes` event lists (the rest are counted).
pub const MAX_PATHS: usize = 1000;
/// Most entries a listing visits.
const MAX_ENTRIES: usize = 200_000;
/// The empty tree's object id (the base of a repository without commits).
const EMPTY_TREE: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

/// The workspace as the task found it.
#[derive(Debug, Clone)]
pub enum Baseline {
    /// A git work tree, at this commit (`None`: no commit yet).
    Git {
        /// The workspace (the work tree's top).
        workspace: PathBuf,
        /// The commit `HEAD` named.
        head: Option<String>,
        /// Where its git directory was, and the files that point git elsewhere.
        layout: Box<GitLayout>,
    },
    /// Any other directory: each regular file's identity, by path relative to the workspace.
    Files {
        /// The workspace.
        workspace: PathBuf,
        /// `path → (inode, size, mtime in ns)`.
        files: BTreeMap<String, (u64, u64, i128)>,
        /// Whether the listing stopped early.
        truncated: bool,
        /// The `.git` it had, by identity (device, inode, mode; a link itself, not followed):
        /// a `.git` the task makes or puts in its place is looked at after.
        had_git: Option<(u64, u64, u32)>,
    },
}

impl Baseline {
    /// Look at `workspace` before the task starts. Cheap for git (a few small reads); a walk
    /// that stats every file otherwise.
    pub fn capture(workspace: &Path) -> Baseline {
        Baseline::git(workspace).unwrap_or_else(|| {
            let (files, truncated) = list(workspace);
            Baseline::Files {
                workspace: workspace.to_path_buf(),
                files,
                truncated,
                had_git: dot_git_identity(workspace),
            }
        })
    }

    /// The common git directory, for a git work tree.
    pub fn common_dir(&self) -> Option<&Path> {
        match self {
            Baseline::Git { layout, .. } => Some(&layout.common_dir),
            Baseline::Files { .. } => None,
        }
    }

    /// The git directory and common directory found before the task, for a git work tree.
    pub fn git_dirs(&self) -> Option<GitDirs> {
        match self {
            Baseline::Git { layout, .. } => Some(GitDirs {
                git_dir: layout.git_dir.clone(),
                common_dir: layout.common_dir.clone(),
            }),
            Baseline::Files { .. } => None,
        }
    }

    /// The baseline of a git work tree, if `workspace` is the top of one.
    pub fn git(workspace: &Path) -> Option<Baseline> {
        Baseline::git_with(workspace, None)
    }

    /// [`Baseline::git`] with the submodule git directories already found (and protected)
    /// when the task was prepared, instead of finding them again.
    pub fn git_with(
        workspace: &Path,
        submodules: Option<crate::submodules::Protected>,
    ) -> Option<Baseline> {
        let git_dir = git_dir(workspace)?;
        let layout = Box::new(GitLayout::capture(workspace, &git_dir, submodules)?);
        Some(Baseline::Git {
            workspace: workspace.to_path_buf(),
            head: head_commit(workspace, &git_dir),
            layout,
        })
    }

    /// The baseline of any other directory from a listing already taken (the secrets
    /// pre-scan walks the same files): `path relative to workspace → (inode, size, mtime ns)`.
    pub fn from_listing(
        workspace: &Path,
        files: BTreeMap<String, (u64, u64, i128)>,
        truncated: bool,
    ) -> Baseline {
        Baseline::Files {
            workspace: workspace.to_path_buf(),
            files,
            truncated,
            had_git: dot_git_identity(workspace),
        }
    }

    /// What changed since. `Err` says why it could not be told (one line).
    pub fn changes(&self) -> Result<FileChanges, String> {
        self.changes_guarded().0
    }

    /// What changed since, and what the task had done to the repository's layout that was
    /// undone first (one line each). A git directory the task replaced is not run git on.
    pub fn changes_guarded(&self) -> (Result<FileChanges, String>, Vec<String>) {
        self.changes_within(crate::files::GIT_LIMIT)
    }

    /// [`Baseline::changes_guarded`], each git command given at most `limit`.
    pub fn changes_within(
        &self,
        limit: std::time::Duration,
    ) -> (Result<FileChanges, String>, Vec<String>) {
        match self {
            Baseline::Git {
                workspace,
                head,
                layout,
            } => match layout.restore() {
                (notes, Ok(())) => (
                    git_changes(workspace, head.as_deref(), layout, limit),
                    notes,
                ),
                (notes, Err(why)) => (Err(why), notes),
            },
            files @ Baseline::Files {
                workspace, had_git, ..
            } => {
                // The same `.git` as before (one remit could not use as a repository): the
                // task's part in it is the listing's. Another one (made, or put in the place
                // of a link the task could not follow): looked at.
                let notes = if *had_git == dot_git_identity(workspace) {
                    Vec::new()
                } else {
                    new_repository(workspace, limit).into_iter().collect()
                };
                (files.file_changes(), notes)
            }
        }
    }

    fn file_changes(&self) -> Result<FileChanges, String> {
        match self {
            Baseline::Git { .. } => Err("not a listing".into()),
            Baseline::Files {
                workspace,
                files,
                truncated,
                ..
            } => {
                let (now, truncated_now) = list(workspace);
                let mut changes = compare(files, &now);
                if *truncated || truncated_now {
                    changes.paths_omitted += 1;
                }
                Ok(changes)
            }
        }
    }
}

/// Settings a repository the task made may hold and still be kept: none of them names a
/// program, a file to include, or another place for git to look. `*` is any subsection.
const PLAIN_SETTINGS: [&str; 24] = [
    "core.repositoryformatversion",
    "core.filemode",
    "core.bare",
    "core.logallrefupdates",
    "core.ignorecase",
    "core.precomposeunicode",
    "core.symlinks",
    "core.autocrlf",
    "core.eol",
    "core.safecrlf",
    "user.name",
    "user.email",
    "init.defaultbranch",
    "remote.*.url",
    "remote.*.fetch",
    "branch.*.remote",
    "branch.*.merge",
    "branch.*.rebase",
    "extensions.objectformat",
    "extensions.refstorage",
    "pull.rebase",
    "push.default",
    "fetch.prune",
    "gc.auto",
];

fn plain_setting(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    let general = match (key.split_once('.'), key.rsplit_once('.')) {
        (Some((section, _)), Some((_, name))) if key.matches('.').count() > 1 => {
            format!("{section}.*.{name}")
        }
        _ => key.clone(),
    };
    PLAIN_SETTINGS.contains(&general.as_str())
}

/// A workspace that had no `.git` has one after the task: the task made the repository, its
/// configuration and hooks, and the user's next `git status` there would run whatever they
/// name (`core.fsmonitor`, say). Kept when it holds only plain settings and no hooks;
/// otherwise moved aside. The line saying so, if anything was found.
fn new_repository(workspace: &Path, limit: std::time::Duration) -> Option<String> {
    let dot = workspace.join(".git");
    let meta = std::fs::symlink_metadata(&dot).ok()?;
    let why = if meta.is_dir() {
        suspicious_repository(&dot, limit)?
    } else {
        "that is not a plain directory (a link or a `gitdir:` file can lead git anywhere)"
            .to_owned()
    };
    Some(match crate::files::quarantine(&dot) {
        Ok(aside) => format!(
            "the task made `{}`, a repository {why}; moved to `{}` (move it back once you trust it)",
            dot.display(),
            aside.display()
        ),
        Err(e) => format!(
            "the task made `{}`, a repository {why}, and {e}; look at it before using git there",
            dot.display()
        ),
    })
}

/// The identity of `<workspace>/.git` (device, inode, mode), not followed; `None` if absent.
fn dot_git_identity(workspace: &Path) -> Option<(u64, u64, u32)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(workspace.join(".git")).ok()?;
    Some((meta.dev(), meta.ino(), meta.mode()))
}

/// What in a git directory the task made would run or redirect git, if anything.
fn suspicious_repository(dir: &Path, limit: std::time::Duration) -> Option<String> {
    for name in ["commondir", "config.worktree"] {
        if std::fs::symlink_metadata(dir.join(name)).is_ok() {
            return Some(format!("with `{name}`, which points git elsewhere"));
        }
    }
    // Submodules: git enters them from here, with configuration of their own.
    if std::fs::symlink_metadata(dir.join("modules")).is_ok() {
        return Some("with submodule repositories (`modules/`)".into());
    }
    // Every entry is looked at: one that cannot be (a listing cut short, or one that cannot
    // be read) could hide a hook git runs by its path.
    match std::fs::read_dir(dir.join("hooks")) {
        Ok(hooks) => {
            for (n, hook) in hooks.enumerate() {
                let Ok(hook) = hook else {
                    return Some("whose hooks cannot all be read".into());
                };
                if n >= 10_000 {
                    return Some("with more than 10,000 files in `hooks`".into());
                }
                let name = hook.file_name().to_string_lossy().into_owned();
                if !name.ends_with(".sample") {
                    return Some(format!("with a hook (`{name}`)"));
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(_) => return Some("whose hooks cannot be listed".into()),
    }
    // The configuration before the index: reading an index in a format remit's parser does
    // not know runs `git ls-files`, which must not run with a configuration the task wrote.
    if let Some(why) = suspicious_config(dir, limit) {
        return Some(why);
    }
    match crate::submodules::gitlinks(dir.parent().unwrap_or(dir), dir, &dir.join("config")) {
        Ok(links) if links.is_empty() => None,
        Ok(_) => Some("whose index names submodules".into()),
        Err(_) => Some("whose index cannot be read".into()),
    }
}

/// What in the configuration of a git directory the task made would run or redirect git, if
/// anything (`None` as well when it has none).
fn suspicious_config(dir: &Path, limit: std::time::Duration) -> Option<String> {
    let config = dir.join("config");
    match std::fs::symlink_metadata(&config) {
        Err(_) => return None,
        Ok(m) if !m.is_file() => {
            return Some("whose configuration is not a plain file".into());
        }
        Ok(_) => {}
    }
    let mut listed = Vec::new();
    let read = crate::files::run_within(
        crate::files::plain_git()
            .args(["config", "--file"])
            .arg(&config)
            .args(["--no-includes", "--list", "--name-only", "-z"]),
        limit,
        &mut |b| listed.extend_from_slice(b),
    );
    match read {
        Ok((status, _)) if status.success() => {}
        _ => return Some("whose configuration git cannot read".into()),
    }
    listed
        .split(|&b| b == 0)
        .filter(|k| !k.is_empty())
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .find(|k| !plain_setting(k))
        .map(|k| {
            format!(
                "whose configuration sets `{}`",
                remit_types::effect::escaped(&k)
            )
        })
}

/// The git directory of a work tree whose top is `workspace`.
fn git_dir(workspace: &Path) -> Option<PathBuf> {
    let dot = workspace.join(".git");
    let meta = std::fs::symlink_metadata(&dot).ok()?;
    if meta.is_dir() {
        return Some(dot);
    }
    let text = crate::files::read_text(&dot)?;
    let target = text.trim().strip_prefix("gitdir:")?.trim();
    Some(workspace.join(target))
}

/// Resolve `HEAD` by reading the ref files; asks git only for formats it does not know.
fn head_commit(workspace: &Path, git_dir: &Path) -> Option<String> {
    let is_id =
        |s: &str| (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit());
    let head = crate::files::read_text(&git_dir.join("HEAD"))?;
    let head = head.trim();
    if is_id(head) {
        return Some(head.to_ascii_lowercase());
    }
    let name = head.strip_prefix("ref:")?.trim();
    let common = crate::files::read_text(&git_dir.join("commondir"))
        .map(|c| git_dir.join(c.trim()))
        .unwrap_or_else(|| git_dir.to_path_buf());
    if !name.starts_with("refs/") || name.contains("..") || name.ends_with(".invalid") {
        // reftable, or something unusual: let git say.
        return git_head(workspace);
    }
    for dir in [git_dir, common.as_path()] {
        if let Some(id) = crate::files::read_text(&dir.join(name)) {
            let id = id.trim();
            if is_id(id) {
                return Some(id.to_ascii_lowercase());
            }
            return git_head(workspace);
        }
    }
    let packed = crate::files::read_text(&common.join("packed-refs")).unwrap_or_default();
    for line in packed.lines() {
        if let Some((id, r)) = line.split_once(' ')
            && r == name
            && is_id(id)
        {
            return Some(id.to_ascii_lowercase());
        }
    }
    // A branch with no commit yet.
    None
}

fn git_head(workspace: &Path) -> Option<String> {
    let mut out = Vec::new();
    let (status, _) = crate::files::run_within(
        git(workspace, None).args(["rev-parse", "--verify", "-q", "HEAD^{commit}"]),
        crate::files::GIT_LIMIT,
        &mut |b| out.extend_from_slice(b),
    )
    .ok()?;
    status
        .success()
        .then(|| String::from_utf8_lossy(&out).trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// A work tree's git directories as found before its task: what host commands run in it
/// are pinned to (`GIT_DIR`, `GIT_COMMON_DIR`), so that a pointer the task wrote meanwhile
/// (`.git/commondir`, a linked work tree's `.git` file) cannot send their git to a
/// configuration the task wrote, whose programs (`core.sshCommand`, a credential helper)
/// would run on the host.
#[derive(Debug, Clone)]
pub struct GitDirs {
    /// The git directory.
    pub git_dir: PathBuf,
    /// The common directory (the git directory itself, except in a linked work tree).
    pub common_dir: PathBuf,
}

/// What of a repository git follows to its configuration, as the task found it. The git
/// directory is writable where git needs it, so a task can write `commondir` (or rewrite a
/// linked work tree's `.git` file, or add `config.worktree`) to send git to a configuration
/// of its own — whose filters and `core.fsmonitor` would run on the host, in remit's own git
/// after the task and in the user's next `git status`. After the task the pointers are put
/// back (what the task wrote is kept beside them as `*.remit-quarantine`), and remit's git
/// is told the directories explicitly. Nothing is written where a directory is no longer the
/// one found (a task can swap a git directory for a link to anywhere): a replaced `.git` or
/// git directory is moved aside instead, and git is not run.
///
/// It is also what a task's recovery record holds (`crate::recovery`), paths as bytes.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitLayout {
    /// `<workspace>/.git` and its identity (device, inode).
    #[serde(with = "crate::recovery::path")]
    dot: PathBuf,
    dot_id: (u64, u64),
    /// Its content when it is a file (`gitdir: …`).
    dot_text: Option<Vec<u8>>,
    /// The git directory and the common directory, absolute, with their identities.
    #[serde(with = "crate::recovery::path")]
    git_dir: PathBuf,
    #[serde(with = "crate::recovery::path")]
    common_dir: PathBuf,
    dir_ids: [(u64, u64); 2],
    /// Files that redirect git, with their content (`None`: absent).
    /// Each with its directory's identity, which must still be the same for anything to
    /// be written there.
    #[serde(with = "crate::recovery::path_triples")]
    pointers: Vec<Pointer>,
    /// The submodule git directories protected for the task.
    submodules: crate::submodules::Protected,
    /// Operations in progress in the git directory (`rebase-merge`, `rebase-apply`,
    /// `sequencer`), by digest of their files (`None`: none).
    #[serde(with = "crate::recovery::path_pairs")]
    operations: Vec<(PathBuf, Option<[u8; 32]>)>,
}

/// Directories where git keeps an operation in progress whose steps it runs when the user
/// continues it (`exec` lines of an interactive rebase's to-do list).
const OPERATIONS: [&str; 3] = ["rebase-merge", "rebase-apply", "sequencer"];

/// A digest of the files directly in `dir` (names and contents; links and other kinds by
/// name only), `None` when there is no such directory. A link where the directory should be
/// is digested by its target's name, never followed (it could lead anywhere on the host).
fn operation_digest(dir: &Path) -> Option<[u8; 32]> {
    let meta = std::fs::symlink_metadata(dir).ok()?;
    let mut hasher = Sha256::new();
    if !meta.is_dir() {
        hasher.update(b"not a directory\0");
        if let Ok(target) = std::fs::read_link(dir) {
            hasher.update(target.as_os_str().as_encoded_bytes());
        }
        return Some(hasher.finalize().into());
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map(|e| e.flatten().take(10_000).collect())
        .unwrap_or_default();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let name = entry.file_name();
        hasher.update(name.as_encoded_bytes());
        hasher.update([0]);
        if let Ok(Some(data)) = crate::files::read_regular(&entry.path(), 16 << 20) {
            hasher.update((data.len() as u64).to_le_bytes());
            hasher.update(&data);
        } else {
            hasher.update(u64::MAX.to_le_bytes());
        }
    }
    Some(hasher.finalize().into())
}

/// A file that points git elsewhere, its content as found (`None`: absent), and the identity
/// of the directory it is in.
type Pointer = (PathBuf, Option<Vec<u8>>, Option<(u64, u64)>);

/// The files a configuration file includes (`include.path`, `includeIf.*.path`), resolved as
/// git resolves them: `~/` in the home directory, relative paths beside the including file.
/// Git is asked only when the file mentions an include at all.
/// `Err` when git cannot say (the includes are then unknown, and nothing can be put back).
fn included(config: &Path) -> Result<Vec<PathBuf>, String> {
    let Some(text) = crate::files::read_regular(config, crate::files::MAX_POINTER)
        .ok()
        .flatten()
    else {
        return Ok(Vec::new());
    };
    if !text
        .to_ascii_lowercase()
        .windows(7)
        .any(|w| w == b"include")
    {
        return Ok(Vec::new());
    }
    let mut listed = Vec::new();
    let (status, _) = crate::files::run_within(
        crate::files::plain_git()
            .args(["config", "--file"])
            .arg(config)
            .args([
                "--no-includes",
                "-z",
                "--get-regexp",
                r"^include(if\..*)?\.path$",
            ]),
        crate::files::GIT_LIMIT,
        &mut |b| listed.extend_from_slice(b),
    )?;
    // 1: no include after all.
    if !status.success() && status.code() != Some(1) {
        return Err(format!("git cannot read `{}`", config.display()));
    }
    let base = config.parent().unwrap_or(Path::new("/"));
    Ok(listed
        .split(|&b| b == 0)
        .filter_map(|entry| {
            let (_, value) = std::str::from_utf8(entry).ok()?.split_once('\n')?;
            let path = match value.strip_prefix("~/") {
                Some(rest) => PathBuf::from(std::env::var_os("HOME")?).join(rest),
                None => base.join(value),
            };
            Some(normalize(&path))
        })
        .collect())
}

/// `path` with `.` and `..` resolved lexically, and its parent resolved through links when
/// it exists (so a target is compared by where it really is).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    match (out.parent(), out.file_name()) {
        (Some(parent), Some(name)) => std::fs::canonicalize(parent)
            .map(|p| p.join(name))
            .unwrap_or(out),
        _ => out,
    }
}

/// A directory's identity, if it is one (not a link).
fn dir_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.is_dir())
        .map(|m| (m.dev(), m.ino()))
}

impl GitLayout {
    /// The common git directory (whose lock a task in the repository holds).
    pub(crate) fn common(&self) -> &Path {
        &self.common_dir
    }

    fn capture(
        workspace: &Path,
        git_dir: &Path,
        submodules: Option<crate::submodules::Protected>,
    ) -> Option<GitLayout> {
        let dot = workspace.join(".git");
        let meta = std::fs::symlink_metadata(&dot).ok()?;
        let dot_text = if meta.is_file() {
            Some(crate::files::read_regular(&dot, crate::files::MAX_POINTER).ok()??)
        } else {
            None
        };
        let git_dir = std::fs::canonicalize(git_dir).ok()?;
        let common_dir = match crate::files::read_text(&git_dir.join("commondir")) {
            Some(c) => std::fs::canonicalize(git_dir.join(c.trim())).ok()?,
            None => git_dir.clone(),
        };
        let dir_ids = [dir_id(&git_dir)?, dir_id(&common_dir)?];
        let mut pointers = Vec::new();
        for path in [
            git_dir.join("commondir"),
            git_dir.join("config.worktree"),
            common_dir.join("commondir"),
            common_dir.join("config.worktree"),
            // Bound read-only only when it exists: one the task creates is moved aside.
            common_dir.join("config"),
        ] {
            if !pointers.iter().any(|(p, _, _)| *p == path) {
                let before = crate::files::read_pointer(&path).ok()?;
                let parent = path.parent().and_then(dir_id);
                pointers.push((path, before, parent));
            }
        }
        // Configuration files the repository's configuration includes that the task can write
        // (`include.path = ../.gitconfig` is a common convention): what the task writes there
        // is the repository's configuration for the user's next git command.
        let submodules = submodules
            .unwrap_or_else(|| crate::submodules::discover(workspace, &git_dir, &common_dir));
        let mut configs: Vec<PathBuf> =
            vec![common_dir.join("config"), git_dir.join("config.worktree")];
        configs.extend(submodules.git_dirs().map(|d| d.join("config")));
        let real = std::fs::canonicalize(workspace).unwrap_or_else(|_| workspace.to_path_buf());
        let writable = |p: &Path| p.starts_with(&real) || p.starts_with(&common_dir);
        let mut seen = std::collections::BTreeSet::new();
        let mut depth = 0;
        while !configs.is_empty() && depth < 4 {
            depth += 1;
            let mut next = Vec::new();
            for config in configs.into_iter().take(256) {
                // Includes that cannot be listed cannot be put back: the layout is not
                // recorded, and the run is refused.
                for target in included(&config).ok()? {
                    if !seen.insert(target.clone()) {
                        continue;
                    }
                    if writable(&target) && !pointers.iter().any(|(p, _, _)| *p == target) {
                        // Unreadable (a parent that is not a directory): as if absent, so
                        // whatever is there after the task is moved aside.
                        let before = crate::files::read_pointer(&target).unwrap_or(None);
                        let parent = target.parent().and_then(dir_id);
                        pointers.push((target.clone(), before, parent));
                    }
                    next.push(target);
                }
            }
            configs = next;
        }
        let operations = OPERATIONS
            .iter()
            .map(|name| {
                let path = git_dir.join(name);
                let digest = operation_digest(&path);
                (path, digest)
            })
            .collect();
        Some(GitLayout {
            operations,
            submodules,
            dot,
            dot_id: (meta.dev(), meta.ino()),
            dot_text,
            git_dir,
            common_dir,
            dir_ids,
            pointers,
        })
    }

    /// Put the pointers back as the task found them, and check the submodules; what was
    /// undone, one line each, and `Err` (one line, starting "the task") when git must not
    /// be run on the workspace. Every step is tried: one that fails does not keep the
    /// others from being undone.
    pub(crate) fn restore(&self) -> (Vec<String>, Result<(), String>) {
        let mut notes = Vec::new();
        let mut refused = None;
        let meta = std::fs::symlink_metadata(&self.dot).ok();
        if meta
            .as_ref()
            .is_none_or(|m| (m.dev(), m.ino()) != self.dot_id)
        {
            // Whatever is there now is the task's: moved aside, so the user's git finds no
            // repository rather than the task's.
            let aside = meta.is_some().then(|| crate::files::quarantine(&self.dot));
            refused = Some(format!(
                "the task replaced or moved `{}`{}",
                self.dot.display(),
                match aside {
                    Some(Ok(a)) => format!(" (what it put there is `{}`)", a.display()),
                    Some(Err(why)) => format!(" ({why})"),
                    None => String::new(),
                }
            ));
        }
        let [git_id, common_id] = self.dir_ids;
        let common_kept = dir_id(&self.common_dir) == Some(common_id);
        if !common_kept {
            // Only reachable with write access to its parent, outside the task's trees:
            // refused, nothing touched.
            refused.get_or_insert_with(|| {
                format!(
                    "the task replaced the git directory `{}`",
                    self.common_dir.display()
                )
            });
        } else if self.git_dir != self.common_dir
            && dir_id(&self.git_dir) != Some(git_id)
            && std::fs::symlink_metadata(&self.git_dir).is_ok()
        {
            // A linked work tree's git directory (`worktrees/<id>`), replaced (by a link to
            // anywhere, say): moved out of where git looks, nothing written into it.
            let aside = crate::files::quarantine_into(&self.git_dir, &self.common_dir);
            refused.get_or_insert_with(|| {
                format!(
                    "the task replaced the git directory `{}` ({})",
                    self.git_dir.display(),
                    match aside {
                        Ok(a) => format!("what it put there is `{}`", a.display()),
                        Err(why) => why,
                    }
                )
            });
        }
        if let Some(why) = refused {
            return (
                notes,
                Err(format!(
                    "{why}: git was not run on the workspace; look at the repository before using git in it"
                )),
            );
        }
        if let Some(text) = &self.dot_text
            && crate::files::read_regular(&self.dot, crate::files::MAX_POINTER)
                .ok()
                .flatten()
                .as_ref()
                != Some(text)
        {
            match crate::files::put_back(&self.dot, Some(text)) {
                Ok(aside) => notes.push(format!(
                    "the task rewrote `{}` to point git elsewhere; put back{}",
                    self.dot.display(),
                    aside.map_or_else(String::new, |a| format!(
                        " (its version is `{}`)",
                        a.display()
                    ))
                )),
                Err(why) => {
                    refused = Some(format!(
                        "the task rewrote `{}`, and {why}",
                        self.dot.display()
                    ))
                }
            }
        }
        for (path, before, parent) in &self.pointers {
            let now = crate::files::read_pointer(path).unwrap_or(Some(Vec::new()));
            if now == *before {
                continue;
            }
            // Written only into the directory found before the task, reached without a link:
            // the task may have swapped a directory on the way for a link to anywhere.
            let dir = path.parent().unwrap_or(Path::new("/"));
            let same = parent.is_some()
                && path.parent().and_then(dir_id) == *parent
                && std::fs::canonicalize(dir).ok().as_deref() == Some(dir);
            if !same {
                refused.get_or_insert_with(|| {
                    format!(
                        "the task changed `{}` and replaced the directory it is in",
                        path.display()
                    )
                });
                continue;
            }
            match crate::files::put_back(path, before.as_deref()) {
                Ok(aside) => notes.push(match (before, aside) {
                    (None, Some(aside)) => format!(
                        "the task created `{}`, which points git at other configuration; moved to `{}`",
                        path.display(),
                        aside.display()
                    ),
                    (_, aside) => format!(
                        "the task changed `{}`, which points git at other configuration; put back{}",
                        path.display(),
                        aside.map_or_else(String::new, |a| format!(
                            " (its version is `{}`)",
                            a.display()
                        ))
                    ),
                }),
                Err(why) => {
                    refused.get_or_insert_with(|| {
                        format!("the task changed `{}`, and {why}", path.display())
                    });
                }
            }
        }
        // An operation in progress the task started or changed: continuing it would run the
        // steps the task wrote.
        for (path, before) in &self.operations {
            let now = operation_digest(path);
            if now.is_none() || now == *before {
                continue;
            }
            notes.push(match crate::files::quarantine_into(path, &self.git_dir) {
                Ok(aside) => format!(
                    "the task left `{}`, an operation in progress whose steps `--continue` would run (an `exec` line runs a program); moved to `{}`",
                    path.display(),
                    aside.display()
                ),
                Err(why) => format!(
                    "the task left `{}`, an operation in progress whose steps `--continue` would run, and {why}; do not continue it",
                    path.display()
                ),
            });
        }
        notes.extend(self.submodules.check(
            self.dot.parent().unwrap_or(Path::new("/")),
            &self.git_dir,
            &self.common_dir,
        ));
        match refused {
            Some(why) => (
                notes,
                Err(format!(
                    "{why}: git was not run on the workspace; look at the repository before using git in it"
                )),
            ),
            None => (notes, Ok(())),
        }
    }
}

/// `git` on `workspace` with nothing but the repository's own configuration.
pub(crate) fn git(workspace: &Path, index: Option<&Path>) -> Command {
    let mut command = crate::files::plain_git();
    command
        .arg("-C")
        .arg(workspace)
        .arg("-c")
        .arg(format!("safe.directory={}", workspace.display()))
        .args([
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "core.fsmonitor=false",
            "-c",
            "core.untrackedCache=false",
            "-c",
            "diff.external=",
            "-c",
            "protocol.allow=never",
        ])
        .stdin(Stdio::null());
    if let Some(index) = index {
        command.env("GIT_INDEX_FILE", index);
    }
    command
}

/// Most entries an object store may hold for its changes to be read with git.
const MAX_OBJECT_ENTRIES: usize = 4_000_000;

/// Refuse an object store the task could have turned against the host's git: `objects`, its
/// fan-out, `pack` and `info` directories that are not real directories, entries in them
/// that are not regular files (a link to a device git would open, a FIFO it would wait on),
/// and other stores it lists as alternates that are not the same kind of clean (checked one
/// level deep: an alternate with alternates of its own is refused).
fn check_object_store(objects: &Path, follow_alternates: bool) -> Result<(), String> {
    let refuse = |what: String| {
        Err(format!(
            "the repository's object store (`{}`) {what}: what the task changed is not read with git",
            objects.display()
        ))
    };
    let meta = match std::fs::symlink_metadata(objects) {
        Ok(meta) => meta,
        Err(e) => return refuse(format!("cannot be read ({e})")),
    };
    if !meta.is_dir() {
        return refuse("is not a directory".into());
    }
    let listing = |dir: &Path| {
        let shown = dir.display().to_string();
        std::fs::read_dir(dir)
            .map_err(|e| format!("cannot list `{shown}`: {e}"))
            .map(move |entries| {
                entries.map(move |e| e.map_err(|e| format!("cannot list `{shown}`: {e}")))
            })
    };
    let mut entries = 0usize;
    let mut count = || {
        entries += 1;
        if entries > MAX_OBJECT_ENTRIES {
            refuse(format!("holds more than {MAX_OBJECT_ENTRIES} entries"))
        } else {
            Ok(())
        }
    };
    for entry in listing(objects)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let fan_out = name.len() == 2 && name.bytes().all(|b| b.is_ascii_hexdigit());
        if !fan_out && name != "pack" && name != "info" {
            continue;
        }
        // The entry's own type: a link is not followed.
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            return refuse(format!("holds `{name}`, which is not a directory"));
        }
        if name == "info" {
            for list in ["alternates", "http-alternates"] {
                let path = entry.path().join(list);
                if std::fs::symlink_metadata(&path).is_err() {
                    continue;
                }
                if !follow_alternates || list == "http-alternates" {
                    return refuse(format!("lists other stores (`info/{list}`)"));
                }
                let Some(text) = crate::files::read_text(&path) else {
                    return refuse(format!(
                        "has an `info/{list}` that is not a small text file"
                    ));
                };
                for line in text
                    .lines()
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                {
                    check_object_store(&objects.join(line), false)?;
                }
            }
        }
        // Files git reads (objects, packs, `info/commit-graph`), and in `info` the directory
        // of a commit-graph chain, itself of files.
        for inner in listing(&entry.path())? {
            let inner = inner?;
            let inner_name = inner.file_name().to_string_lossy().into_owned();
            count()?;
            let kind = inner.file_type().ok();
            if name == "info" && kind.is_some_and(|t| t.is_dir()) {
                for file in listing(&inner.path())? {
                    let file = file?;
                    count()?;
                    if !file.file_type().is_ok_and(|t| t.is_file()) {
                        return refuse(format!(
                            "holds `info/{inner_name}/{}`, which is not a regular file",
                            file.file_name().to_string_lossy()
                        ));
                    }
                }
                continue;
            }
            if !kind.is_some_and(|t| t.is_file()) {
                return refuse(format!(
                    "holds `{name}/{inner_name}`, which is not a regular file"
                ));
            }
        }
    }
    Ok(())
}

fn git_changes(
    workspace: &Path,
    head: Option<&str>,
    layout: &GitLayout,
    limit: std::time::Duration,
) -> Result<FileChanges, String> {
    let scratch = tempfile::Builder::new()
        .prefix("remit-diff-")
        .tempdir()
        .map_err(|e| format!("cannot make a scratch directory: {e}"))?;
    let index = scratch.path().join("index");
    let dir = &layout.git_dir;
    if std::fs::symlink_metadata(dir.join("index")).is_ok_and(|m| m.is_file()) {
        std::fs::copy(dir.join("index"), &index)
            .map_err(|e| format!("cannot copy the git index: {e}"))?;
    }
    let base = head.unwrap_or(EMPTY_TREE);
    // Git reads the repository's objects and, to add the work tree, writes new ones. The task
    // could have made the store's directories or files links: to a host directory this git
    // (often root's) would write its new objects into, or to a device it would open. The
    // store is checked first; new objects go to the scratch directory, and the repository's
    // are read through the alternates variable, so nothing is written into the repository.
    let objects = layout.common_dir.join("objects");
    check_object_store(&objects, true)?;
    let new_objects = scratch.path().join("objects");
    std::fs::create_dir(&new_objects)
        .map_err(|e| format!("cannot make a scratch directory: {e}"))?;
    let command = || {
        let mut command = git(workspace, Some(&index));
        // The directories found before the task, not whatever its pointers say now.
        command
            .env("GIT_DIR", &layout.git_dir)
            .env("GIT_COMMON_DIR", &layout.common_dir)
            .env("GIT_WORK_TREE", workspace)
            .env("GIT_OBJECT_DIRECTORY", &new_objects)
            .env("GIT_ALTERNATE_OBJECT_DIRECTORIES", &objects);
        command
    };
    // The repository's configuration may be the task's own (a repository a task made with
    // `git init` is a git workspace for the next run): every filter driver it defines is
    // switched off, so adding the work tree runs no program it names. Reading the
    // configuration runs nothing.
    let mut overrides: Vec<String> = Vec::new();
    let mut listed = Vec::new();
    let (status, stderr) = crate::files::run_within(
        command().args(["config", "--get-regexp", "--name-only", r"^filter\."]),
        limit,
        &mut |b| listed.extend_from_slice(b),
    )?;
    // 1: no filter is configured. Anything else but success: the drivers are unknown, so
    // git is not run with them.
    if !status.success() && status.code() != Some(1) {
        return Err(format!(
            "cannot list the repository's filters: {}",
            String::from_utf8_lossy(&stderr)
                .lines()
                .next()
                .unwrap_or("no reason given")
        ));
    }
    let mut drivers: Vec<String> = String::from_utf8_lossy(&listed)
        .lines()
        .filter_map(|key| {
            key.strip_prefix("filter.")?
                .rsplit_once('.')
                .map(|(n, _)| n.to_owned())
        })
        .collect();
    drivers.sort();
    drivers.dedup();
    for name in drivers {
        for (key, value) in [
            ("clean", ""),
            ("smudge", ""),
            ("process", ""),
            ("required", "false"),
        ] {
            overrides.push("-c".into());
            overrides.push(format!("filter.{name}.{key}={value}"));
        }
    }
    // Every git bounded in time: a FIFO the task left where git reads (`.gitignore`,
    // `info/exclude`, a shared index) would hold it, and the task's end, for ever.
    let run_into = |args: &[&str], out: &mut dyn FnMut(&[u8])| -> Result<(), String> {
        let (status, stderr) =
            crate::files::run_within(command().args(&overrides).args(args), limit, out)?;
        if !status.success() {
            let why = String::from_utf8_lossy(&stderr);
            return Err(format!(
                "`git {}` failed: {}",
                args.first().copied().unwrap_or_default(),
                why.lines().next().unwrap_or("no reason given")
            ));
        }
        Ok(())
    };
    let run = |args: &[&str]| -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        run_into(args, &mut |b| out.extend_from_slice(b))?;
        Ok(out)
    };
    // Ignored files (build output, caches) are left out: they can be huge, and a change to
    // `.gitignore` itself is in the diff.
    run(&["add", "--all", "--", "."])?;
    let mut changes = FileChanges {
        added: 0,
        modified: 0,
        deleted: 0,
        diff_sha256: None,
        paths: Vec::new(),
        paths_omitted: 0,
    };
    // `<status>\0<path>\0…`, read as it streams: a task can change millions of paths, and
    // only the first `MAX_PATHS` are kept (a field is cut at 64 KiB, beyond any real path).
    let mut field: Vec<u8> = Vec::new();
    let mut status: Option<u8> = None;
    run_into(
        &[
            "diff",
            "--cached",
            "--no-renames",
            "--name-status",
            "-z",
            base,
            "--",
        ],
        &mut |bytes| {
            for part in bytes.split_inclusive(|b| *b == 0) {
                let (text, ends) = match part.split_last() {
                    Some((0, text)) => (text, true),
                    _ => (part, false),
                };
                if field.len() < 1 << 16 {
                    let room = (1 << 16) - field.len();
                    field.extend_from_slice(&text[..text.len().min(room)]);
                }
                if !ends {
                    continue;
                }
                match status.take() {
                    None => status = Some(field.first().copied().unwrap_or(b'M')),
                    Some(kind) => {
                        match kind {
                            b'A' => changes.added += 1,
                            b'D' => changes.deleted += 1,
                            _ => changes.modified += 1,
                        }
                        push_path(&mut changes, String::from_utf8_lossy(&field).into_owned());
                    }
                }
                field.clear();
            }
        },
    )?;
    // Stream the diff through the hash: it can be large.
    let mut hasher = Sha256::new();
    run_into(
        &[
            "diff",
            "--cached",
            "--binary",
            "--no-renames",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            base,
            "--",
        ],
        &mut |b| hasher.update(b),
    )?;
    changes.diff_sha256 = Some(hex(&hasher.finalize()));
    Ok(changes)
}

fn push_path(changes: &mut FileChanges, path: String) {
    if changes.paths.len() < MAX_PATHS {
        changes.paths.push(path);
    } else {
        changes.paths_omitted += 1;
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every regular file under `root` (not following symbolic links, skipping `.git`).
fn list(root: &Path) -> (BTreeMap<String, (u64, u64, i128)>, bool) {
    let mut files = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    let mut seen = 0usize;
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_ENTRIES {
                return (files, true);
            }
            let Ok(meta) = entry.metadata() else { continue };
            let path = entry.path();
            if meta.is_dir() {
                if entry.file_name() != ".git" {
                    stack.push(path);
                }
                continue;
            }
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            let mtime = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
            files.insert(rel, (meta.ino(), meta.size(), mtime));
        }
    }
    (files, false)
}

fn compare(
    before: &BTreeMap<String, (u64, u64, i128)>,
    after: &BTreeMap<String, (u64, u64, i128)>,
) -> FileChanges {
    let mut changes = FileChanges {
        added: 0,
        modified: 0,
        deleted: 0,
        diff_sha256: None,
        paths: Vec::new(),
        paths_omitted: 0,
    };
    for (path, id) in after {
        match before.get(path) {
            None => {
                changes.added += 1;
                push_path(&mut changes, path.clone());
            }
            Some(old) if old != id => {
                changes.modified += 1;
                push_path(&mut changes, path.clone());
            }
            Some(_) => {}
        }
    }
    for path in before.keys() {
        if !after.contains_key(path) {
            changes.deleted += 1;
            push_path(&mut changes, path.clone());
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(dir: &Path, script: &str) {
        let ok = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .status()
            .expect("sh")
            .success();
        assert!(ok, "{script}");
    }

    /// A `.git` remit does not use as a repository (here a link) that the task replaces with
    /// a repository of its own is looked at like one the task made: a hook in it is moved
    /// aside. The twin: the same `.git` left as it was raises nothing.
    #[test]
    fn a_dot_git_put_in_the_place_of_a_link_is_looked_at() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ws = dir.path().join("ws");
        std::fs::create_dir(&ws).expect("ws");
        sh(dir.path(), "git init -q elsewhere");
        std::os::unix::fs::symlink(dir.path().join("elsewhere/.git"), ws.join(".git"))
            .expect("link");
        let limit = std::time::Duration::from_secs(60);
        let base = Baseline::Files {
            workspace: ws.clone(),
            files: BTreeMap::new(),
            truncated: false,
            had_git: dot_git_identity(&ws),
        };
        assert!(base.changes_within(limit).1.is_empty());
        sh(
            &ws,
            "rm .git && git init -q && echo 'touch owned' > .git/hooks/pre-commit",
        );
        let notes = base.changes_within(limit).1;
        assert!(
            notes
                .iter()
                .any(|n| n.contains("hook") && n.contains("moved")),
            "{notes:?}"
        );
        assert!(!ws.join(".git").exists());
    }

    /// A repository the task made is judged by its configuration before its index is read: an
    /// index this reader does not know makes remit run `git ls-files`, which reads that
    /// configuration with its includes. Here an include names a FIFO whose waiting writer
    /// shows whether git opened it. The twin: the configuration is what is reported.
    #[test]
    fn a_task_made_repositorys_configuration_is_judged_before_git_reads_its_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo");
        sh(
            dir.path(),
            "mkfifo fifo && mkdir ws && cd ws && git init -q",
        );
        let git = dir.path().join("ws/.git");
        sh(
            &git,
            &format!("git config --file config include.path {}", fifo.display()),
        );
        // An index of a version this reader does not parse.
        let mut index = b"DIRC\0\0\0\x05\0\0\0\0".to_vec();
        index.extend_from_slice(&[0; 20]);
        std::fs::write(git.join("index"), index).expect("index");
        let mut why = None;
        let woken = crate::files::fifo_opened_during(&fifo, || {
            why = suspicious_repository(&git, std::time::Duration::from_secs(10));
        });
        assert!(
            !woken,
            "git read the task's configuration, includes and all"
        );
        let why = why.expect("suspicious");
        assert!(why.contains("configuration"), "{why}");
    }

    /// An operation's directory that is a link is digested by where it points, never read
    /// through (it could lead anywhere on the host). The twin: a real one is read.
    #[test]
    fn an_operation_directory_link_is_not_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("real");
        std::fs::create_dir(&real).expect("dir");
        std::fs::write(real.join("todo"), "1").expect("write");
        let link = dir.path().join("rebase-merge");
        std::os::unix::fs::symlink(&real, &link).expect("link");
        let (linked, direct) = (operation_digest(&link), operation_digest(&real));
        std::fs::write(real.join("todo"), "2").expect("write");
        assert_eq!(operation_digest(&link), linked);
        assert_ne!(operation_digest(&real), direct);
        assert!(linked.is_some());
    }

    /// A hook in a repository the task made is found however many sample files come before
    /// it in the directory's order (the old check looked at the first 10,000 and stopped).
    /// The twin: 9,000 samples alone are not suspicious.
    #[test]
    fn a_hook_hidden_behind_many_samples_is_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        sh(dir.path(), "git init -q && rm -f .git/hooks/*");
        let limit = std::time::Duration::from_secs(60);
        let git = dir.path().join(".git");
        sh(
            &git.join("hooks"),
            "for i in $(seq 9000); do : > $i.sample; done",
        );
        assert_eq!(suspicious_repository(&git, limit), None);
        // More than are looked at one by one: suspicious as such, hook or not.
        sh(
            &git.join("hooks"),
            "for i in $(seq 9001 10001); do : > $i.sample; done; echo true > pre-commit",
        );
        let found = suspicious_repository(&git, limit).expect("the hook is found");
        assert!(found.contains("hook"), "{found}");
    }

    #[test]
    fn plain_directory_changes_are_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        sh(
            dir.path(),
            "echo a > keep; echo b > edit; echo c > gone; mkdir d; echo e > d/f",
        );
        let base = Baseline::capture(dir.path());
        sh(dir.path(), "echo bb >> edit; rm gone; echo n > d/new");
        let c = base.changes().expect("changes");
        assert_eq!((c.added, c.modified, c.deleted), (1, 1, 1), "{c:?}");
        assert_eq!(c.paths, vec!["d/new", "edit", "gone"]);
        assert!(c.diff_sha256.is_none());
    }

    #[test]
    fn git_changes_include_commits_and_untracked_files_and_leave_the_index_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        sh(
            dir.path(),
            "git init -q -b main . && echo a > a && echo b > b && echo '*.log' > .gitignore \
             && git add -A && git commit -qm one",
        );
        let base = Baseline::capture(dir.path());
        let Baseline::Git {
            head: Some(head), ..
        } = &base
        else {
            panic!("not seen as git: {base:?}")
        };
        assert_eq!(head.len(), 40);
        let index_before = std::fs::read(dir.path().join(".git/index")).expect("index");
        // A commit during the task, an edit, an untracked file, an ignored file, a delete.
        sh(
            dir.path(),
            "echo c > c && git add c && git commit -qm two && echo aa >> a && echo u > untracked \
             && echo x > debug.log && rm b",
        );
        let index_mid = std::fs::read(dir.path().join(".git/index")).expect("index");
        let c = base.changes().expect("changes");
        assert_eq!((c.added, c.modified, c.deleted), (2, 1, 1), "{c:?}");
        assert_eq!(c.paths, vec!["a", "b", "c", "untracked"]);
        let hash = c.diff_sha256.clone().expect("hash");
        assert_eq!(hash.len(), 64);
        // The user's index is as the task left it; the same tree hashes the same.
        assert_ne!(index_before, index_mid);
        assert_eq!(
            std::fs::read(dir.path().join(".git/index")).expect("index"),
            index_mid
        );
        assert_eq!(
            base.changes().expect("again").diff_sha256,
            Some(hash.clone())
        );
        sh(dir.path(), "echo more >> untracked");
        assert_ne!(base.changes().expect("changed").diff_sha256, Some(hash));
    }

    #[test]
    fn git_without_commits_compares_with_the_empty_tree() {
        let dir = tempfile::tempdir().expect("tempdir");
        sh(dir.path(), "git init -q -b main .");
        let base = Baseline::capture(dir.path());
        assert!(matches!(base, Baseline::Git { head: None, .. }));
        sh(dir.path(), "echo a > a");
        let c = base.changes().expect("changes");
        assert_eq!((c.added, c.modified, c.deleted), (1, 0, 0));
    }

    #[test]
    fn diff_programs_named_by_planted_attributes_do_not_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("driver-ran");
        // The repository defines diff programs (its configuration is the owner's, not the
        // task's); the task plants attributes that point every file at them.
        sh(
            dir.path(),
            &format!(
                "git init -q -b main . && echo a > a && git add a && git commit -qm one && \
                 git config diff.evil.command 'touch {m}' && \
                 git config diff.evil.textconv 'touch {m}'",
                m = marker.display()
            ),
        );
        let base = Baseline::capture(dir.path());
        sh(
            dir.path(),
            "echo '* diff=evil' > .gitattributes && echo b >> a",
        );
        let c = base.changes().expect("changes");
        assert!(c.diff_sha256.is_some());
        assert_eq!((c.added, c.modified), (1, 1));
        assert!(!marker.exists(), "a diff program ran");
    }

    #[test]
    fn a_fifo_where_git_reads_holds_remits_git_only_so_long() {
        let dir = tempfile::tempdir().expect("tempdir");
        sh(
            dir.path(),
            "git init -q -b main . && echo a > a && git add a && git commit -qm one",
        );
        let base = Baseline::capture(dir.path());
        sh(dir.path(), "mkfifo .gitignore");
        let (changes, _) = base.changes_within(std::time::Duration::from_millis(500));
        let why = changes.expect_err("git read the FIFO");
        assert!(why.contains("did not finish"), "{why}");
        // The twin: the same repository without the FIFO.
        sh(dir.path(), "rm .gitignore && echo b >> a");
        let (changes, notes) = base.changes_within(std::time::Duration::from_secs(60));
        assert_eq!(changes.expect("changes").modified, 1);
        assert!(notes.is_empty(), "{notes:?}");
    }

    /// A name taken where the task's pointer would be moved to keeps nothing else from being
    /// put back, and the user hears of it.
    #[test]
    fn a_taken_quarantine_name_does_not_stop_the_put_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("fsmonitor-ran");
        let ws = dir.path().join("ws");
        std::fs::create_dir(&ws).expect("ws");
        sh(
            &ws,
            "git init -q -b main . && echo a > a && git add a && git commit -qm one",
        );
        let base = Baseline::capture(&ws);
        sh(
            &ws,
            &format!(
                "mkdir -p .git/evil/refs .git/evil/objects && cp .git/HEAD .git/evil/ && \
                 printf '[core]\\n\\trepositoryformatversion = 0\\n\\tfsmonitor = touch {m}\\n' > .git/evil/config && \
                 echo evil > .git/commondir && mkdir -p .git/commondir.remit-quarantine/x",
                m = marker.display()
            ),
        );
        let (changes, notes) = base.changes_guarded();
        assert!(changes.is_ok(), "{changes:?}");
        assert!(
            notes
                .iter()
                .any(|n| n.contains("commondir.remit-quarantine.1")),
            "{notes:?}"
        );
        assert!(!ws.join(".git/commondir").exists());
        crate::files::assert_user_status_runs_nothing(&ws, &marker);
    }

    /// A missing object is not fetched: the fetch would run the transport the task's
    /// configuration names (a repository an earlier task made is a git workspace now).
    #[test]
    fn a_missing_object_is_not_fetched_from_a_remote_the_task_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("uploadpack-ran");
        let ws = dir.path().join("ws");
        std::fs::create_dir(&ws).expect("ws");
        sh(
            &ws,
            &format!(
                "git init -q -b main . && echo secret > a && git add a && git commit -qm one && \
                 git config remote.x.promisor true && git config remote.x.url {u} && \
                 git config remote.x.uploadpack 'touch {m}; false' && \
                 id=$(git rev-parse HEAD:a) && rm -f .git/objects/$(echo $id | cut -c1-2)/$(echo $id | cut -c3-)",
                u = dir.path().display(),
                m = marker.display()
            ),
        );
        let base = Baseline::capture(&ws);
        sh(&ws, "echo b > a");
        let (_, _) = base.changes_guarded();
        assert!(!marker.exists(), "remit's git ran the task's transport");
    }

    /// The task swaps a linked work tree's git directory for a link to a directory of the
    /// test's: nothing is written through it, the link is moved out of where git looks.
    #[test]
    fn a_git_directory_swapped_for_a_link_is_not_written_through() {
        let dir = tempfile::tempdir().expect("tempdir");
        let main = dir.path().join("main");
        let target = dir.path().join("elsewhere");
        std::fs::create_dir_all(&main).expect("main");
        std::fs::create_dir_all(&target).expect("target");
        sh(
            &main,
            "git init -q -b main . && echo a > a && git add a && git commit -qm one && git worktree add -q ../wt",
        );
        let ws = dir.path().join("wt");
        let base = Baseline::capture(&ws);
        assert!(matches!(base, Baseline::Git { .. }));
        sh(
            &main,
            &format!(
                "mv .git/worktrees/wt .git/worktrees/wt.moved && ln -s {t} .git/worktrees/wt && \
                 echo ../.. > .git/worktrees/wt.moved/commondir.new",
                t = target.display()
            ),
        );
        let (changes, _) = base.changes_guarded();
        let why = changes.expect_err("git ran on a replaced git directory");
        assert!(
            why.starts_with("the task replaced the git directory"),
            "{why}"
        );
        assert_eq!(
            std::fs::read_dir(&target).expect("target").count(),
            0,
            "remit wrote through the link"
        );
        assert!(!main.join(".git/worktrees/wt").exists());
    }

    /// A `.git` the task replaced (with a repository of its own) is moved aside: the user's
    /// next git command finds no repository there rather than the task's.
    #[test]
    fn a_replaced_git_directory_is_moved_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("fsmonitor-ran");
        let ws = dir.path().join("ws");
        std::fs::create_dir(&ws).expect("ws");
        sh(
            &ws,
            "git init -q -b main . && echo a > a && git add a && git commit -qm one",
        );
        let base = Baseline::capture(&ws);
        sh(
            &ws,
            &format!(
                "mv .git .git-old && git init -q && git config core.fsmonitor 'touch {m}'",
                m = marker.display()
            ),
        );
        let (changes, _) = base.changes_guarded();
        let why = changes.expect_err("git ran on a replaced .git");
        assert!(
            why.contains("replaced or moved") && why.contains("remit-quarantine"),
            "{why}"
        );
        assert!(!ws.join(".git").exists());
        crate::files::assert_user_status_runs_nothing(&ws, &marker);
    }

    /// A repository the task made where there was none: kept when it holds only plain
    /// settings, moved aside when its configuration names a program (the user's next
    /// `git status` there would run it) or it has a hook.
    #[test]
    fn a_repository_the_task_made_is_kept_only_when_it_runs_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("fsmonitor-ran");
        let ws = dir.path().join("ws");
        std::fs::create_dir(&ws).expect("ws");
        let base = Baseline::capture(&ws);
        sh(
            &ws,
            &format!(
                "git init -q -b main . && git config core.fsmonitor 'touch {m}' && echo a > a",
                m = marker.display()
            ),
        );
        let (changes, notes) = base.changes_guarded();
        assert!(changes.is_ok());
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("core.fsmonitor"), "{notes:?}");
        assert!(!ws.join(".git").exists());
        crate::files::assert_user_status_runs_nothing(&ws, &marker);

        // A hook is the same.
        std::fs::remove_dir_all(&ws).expect("clean");
        std::fs::create_dir(&ws).expect("ws");
        let base = Baseline::capture(&ws);
        sh(
            &ws,
            "git init -q -b main . && printf '#!/bin/sh\\n' > .git/hooks/pre-commit",
        );
        let (_, notes) = base.changes_guarded();
        assert!(notes.iter().any(|n| n.contains("pre-commit")), "{notes:?}");

        // The twin: what `git init`, a commit and a remote leave is kept as it is.
        std::fs::remove_dir_all(&ws).expect("clean");
        std::fs::create_dir(&ws).expect("ws");
        let base = Baseline::capture(&ws);
        sh(
            &ws,
            "git init -q -b main . && git config user.email a@example.com && echo a > a && git add a && \
             git commit -qm one && git remote add origin https://example.com/r.git && \
             git branch -u origin/main 2>/dev/null; true",
        );
        let (_, notes) = base.changes_guarded();
        assert!(notes.is_empty(), "{notes:?}");
        assert!(ws.join(".git/config").exists());
    }

    /// The repository's configuration includes a file in the work tree (a common
    /// convention): what the task writes there is put back, so the user's next `git status`
    /// runs nothing the task configured.
    #[test]
    fn a_configuration_file_the_repository_includes_is_put_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("fsmonitor-ran");
        let ws = dir.path().join("ws");
        std::fs::create_dir(&ws).expect("ws");
        sh(
            &ws,
            "git init -q -b main . && echo a > a && git add a && git commit -qm one && \
             git config include.path ../.gitconfig && git config 'includeIf.onbranch:main.path' ../team.gitconfig && \
             printf '[user]\\n\\tname = team\\n' > team.gitconfig",
        );
        let base = Baseline::capture(&ws);
        let plant = format!("[core]\n\tfsmonitor = touch {}\n", marker.display());
        std::fs::write(ws.join(".gitconfig"), &plant).expect("plant");
        std::fs::write(ws.join("team.gitconfig"), &plant).expect("plant");
        let (changes, notes) = base.changes_guarded();
        assert!(changes.is_ok(), "{changes:?}");
        assert_eq!(
            notes.iter().filter(|n| n.contains("gitconfig")).count(),
            2,
            "{notes:?}"
        );
        assert!(!ws.join(".gitconfig").exists());
        assert_eq!(
            std::fs::read_to_string(ws.join("team.gitconfig")).expect("team"),
            "[user]\n\tname = team\n"
        );
        crate::files::assert_user_status_runs_nothing(&ws, &marker);
    }

    /// A repository without a configuration file: one the task adds is moved aside (it is
    /// bound read-only only when it exists). A new repository whose index names a
    /// submodule is moved aside as a whole.
    #[test]
    fn a_configuration_or_a_submodule_the_task_adds_is_not_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("fsmonitor-ran");
        let ws = dir.path().join("ws");
        std::fs::create_dir(&ws).expect("ws");
        sh(
            &ws,
            "git init -q -b main . && echo a > a && git add a && git commit -qm one && rm .git/config",
        );
        let base = Baseline::capture(&ws);
        std::fs::write(
            ws.join(".git/config"),
            format!("[core]\n\tfsmonitor = touch {}\n", marker.display()),
        )
        .expect("plant");
        let (_, notes) = base.changes_guarded();
        assert!(notes.iter().any(|n| n.contains("config")), "{notes:?}");
        crate::files::assert_user_status_runs_nothing(&ws, &marker);

        let ws = dir.path().join("ws2");
        std::fs::create_dir(&ws).expect("ws");
        let base = Baseline::capture(&ws);
        sh(
            &ws,
            &format!(
                "git init -q -b main . && mkdir sub && cd sub && git init -q && \
                 git commit -q --allow-empty -m x && cd .. && \
                 git update-index --add --cacheinfo 160000,$(git -C sub rev-parse HEAD),sub && \
                 git -C sub config core.fsmonitor 'touch {m}'",
                m = marker.display()
            ),
        );
        let (_, notes) = base.changes_guarded();
        assert!(notes.iter().any(|n| n.contains("submodules")), "{notes:?}");
        assert!(!ws.join(".git").exists());
        crate::files::assert_user_status_runs_nothing(&ws, &marker);
    }

    /// The directory of an included configuration swapped for a link to a directory of the
    /// test's: nothing is written or renamed through it.
    #[test]
    fn an_included_file_behind_a_swapped_directory_is_not_written_through() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ws = dir.path().join("ws");
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir_all(ws.join("conf")).expect("ws");
        std::fs::create_dir_all(&elsewhere).expect("elsewhere");
        sh(
            &ws,
            "git init -q -b main . && echo a > a && git add a && git commit -qm one && \
             git config include.path ../conf/x.inc && printf '[user]\\n\\tname = x\\n' > conf/x.inc",
        );
        let base = Baseline::capture(&ws);
        std::fs::remove_dir_all(ws.join("conf")).expect("rm");
        std::os::unix::fs::symlink(&elsewhere, ws.join("conf")).expect("link");
        std::fs::write(elsewhere.join("x.inc"), "[core]\n\tbare = false\n").expect("write");
        let (changes, _) = base.changes_guarded();
        let why = changes.expect_err("git ran");
        assert!(why.contains("replaced the directory"), "{why}");
        let names: Vec<_> = std::fs::read_dir(&elsewhere)
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["x.inc"], "remit wrote or renamed through the link");
        assert_eq!(
            std::fs::read_to_string(elsewhere.join("x.inc")).expect("read"),
            "[core]\n\tbare = false\n"
        );
    }

    /// An interactive rebase the task leaves in progress, with an `exec` step: the user's
    /// `git rebase --continue` would run it. Moved aside; an operation the user had in
    /// progress and the task left alone stays.
    #[test]
    fn an_operation_the_task_leaves_in_progress_is_moved_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("exec-ran");
        let ws = dir.path().join("ws");
        std::fs::create_dir(&ws).expect("ws");
        sh(
            &ws,
            "git init -q -b main . && echo a > a && git add a && git commit -qm one && \
             echo b >> a && git commit -qam two",
        );
        let base = Baseline::capture(&ws);
        sh(
            &ws,
            &format!(
                "mkdir -p .git/rebase-merge && printf 'exec touch {m}\\n' > .git/rebase-merge/git-rebase-todo && \
                 git rev-parse HEAD > .git/rebase-merge/orig-head && echo refs/heads/main > .git/rebase-merge/head-name && \
                 git rev-parse HEAD~1 > .git/rebase-merge/onto && touch .git/rebase-merge/interactive",
                m = marker.display()
            ),
        );
        let (changes, notes) = base.changes_guarded();
        assert!(changes.is_ok(), "{changes:?}");
        assert!(
            notes.iter().any(|n| n.contains("rebase-merge")),
            "{notes:?}"
        );
        assert!(!ws.join(".git/rebase-merge").exists());
        let _ = Command::new("git")
            .args(["rebase", "--continue"])
            .current_dir(&ws)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_EDITOR", "true")
            .output();
        assert!(!marker.exists(), "the task's exec step ran");
        // The twin: nothing in progress, nothing moved.
        let base = Baseline::capture(&ws);
        let (_, notes) = base.changes_guarded();
        assert!(notes.is_empty(), "{notes:?}");
    }
}
