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
use std::io::Read;
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
        layout: GitLayout,
    },
    /// Any other directory: each regular file's identity, by path relative to the workspace.
    Files {
        /// The workspace.
        workspace: PathBuf,
        /// `path → (inode, size, mtime in ns)`.
        files: BTreeMap<String, (u64, u64, i128)>,
        /// Whether the listing stopped early.
        truncated: bool,
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
            }
        })
    }

    /// The baseline of a git work tree, if `workspace` is the top of one.
    pub fn git(workspace: &Path) -> Option<Baseline> {
        let git_dir = git_dir(workspace)?;
        let layout = GitLayout::capture(workspace, &git_dir)?;
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
        }
    }

    /// What changed since. `Err` says why it could not be told (one line).
    pub fn changes(&self) -> Result<FileChanges, String> {
        self.changes_guarded().0
    }

    /// What changed since, and what the task had done to the repository's layout that was
    /// undone first (one line each). A git directory the task replaced is not run git on.
    pub fn changes_guarded(&self) -> (Result<FileChanges, String>, Vec<String>) {
        match self {
            Baseline::Git {
                workspace,
                head,
                layout,
            } => match layout.restore() {
                Ok(mut notes) => {
                    notes.extend(layout.submodules.check(
                        workspace,
                        &layout.git_dir,
                        &layout.common_dir,
                    ));
                    (git_changes(workspace, head.as_deref(), layout), notes)
                }
                Err(why) => (Err(why), Vec::new()),
            },
            files @ Baseline::Files { .. } => (files.file_changes(), Vec::new()),
        }
    }

    fn file_changes(&self) -> Result<FileChanges, String> {
        match self {
            Baseline::Git { .. } => Err("not a listing".into()),
            Baseline::Files {
                workspace,
                files,
                truncated,
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

/// The git directory of a work tree whose top is `workspace`.
fn git_dir(workspace: &Path) -> Option<PathBuf> {
    let dot = workspace.join(".git");
    let meta = std::fs::symlink_metadata(&dot).ok()?;
    if meta.is_dir() {
        return Some(dot);
    }
    let text = std::fs::read_to_string(&dot).ok()?;
    let target = text.trim().strip_prefix("gitdir:")?.trim();
    Some(workspace.join(target))
}

/// Resolve `HEAD` by reading the ref files; asks git only for formats it does not know.
fn head_commit(workspace: &Path, git_dir: &Path) -> Option<String> {
    let is_id =
        |s: &str| (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit());
    let head = std::fs::read_to_string(git_dir.join("HEAD")).ok()?;
    let head = head.trim();
    if is_id(head) {
        return Some(head.to_ascii_lowercase());
    }
    let name = head.strip_prefix("ref:")?.trim();
    let common = std::fs::read_to_string(git_dir.join("commondir"))
        .map(|c| git_dir.join(c.trim()))
        .unwrap_or_else(|_| git_dir.to_path_buf());
    if !name.starts_with("refs/") || name.contains("..") || name.ends_with(".invalid") {
        // reftable, or something unusual: let git say.
        return git_head(workspace);
    }
    for dir in [git_dir, common.as_path()] {
        if let Ok(id) = std::fs::read_to_string(dir.join(name)) {
            let id = id.trim();
            if is_id(id) {
                return Some(id.to_ascii_lowercase());
            }
            return git_head(workspace);
        }
    }
    let packed = std::fs::read_to_string(common.join("packed-refs")).unwrap_or_default();
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
    let out = git(workspace, None)
        .args(["rev-parse", "--verify", "-q", "HEAD^{commit}"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// What of a repository git follows to its configuration, as the task found it. The git
/// directory is writable where git needs it, so a task can write `commondir` (or rewrite a
/// linked work tree's `.git` file, or add `config.worktree`) to send git to a configuration
/// of its own — whose filters and `core.fsmonitor` would run on the host, in remit's own git
/// after the task and in the user's next `git status`. After the task the pointers are put
/// back (what the task wrote is kept beside them as `*.remit-quarantine`), and remit's git
/// is told the directories explicitly.
#[derive(Debug, Clone)]
pub struct GitLayout {
    /// `<workspace>/.git` and its identity (device, inode).
    dot: PathBuf,
    dot_id: (u64, u64),
    /// Its content when it is a file (`gitdir: …`).
    dot_text: Option<Vec<u8>>,
    /// The git directory and the common directory, absolute.
    git_dir: PathBuf,
    common_dir: PathBuf,
    /// Files that redirect git, with their content (`None`: absent).
    pointers: Vec<(PathBuf, Option<Vec<u8>>)>,
    /// The submodule git directories protected for the task.
    submodules: crate::submodules::Protected,
}

/// Largest pointer file kept (they hold a path or a few settings).
const MAX_POINTER: u64 = 64 << 10;

fn read_pointer(path: &Path) -> Result<Option<Vec<u8>>, String> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot look at `{}`: {e}", path.display())),
        Ok(m) if !m.is_file() || m.len() > MAX_POINTER => Ok(Some(Vec::new())),
        Ok(_) => std::fs::read(path)
            .map(Some)
            .map_err(|e| format!("cannot read `{}`: {e}", path.display())),
    }
}

impl GitLayout {
    fn capture(workspace: &Path, git_dir: &Path) -> Option<GitLayout> {
        let dot = workspace.join(".git");
        let meta = std::fs::symlink_metadata(&dot).ok()?;
        let dot_text = if meta.is_file() {
            Some(std::fs::read(&dot).ok()?)
        } else {
            None
        };
        let git_dir = std::fs::canonicalize(git_dir).ok()?;
        let common_dir = match std::fs::read_to_string(git_dir.join("commondir")) {
            Ok(c) => std::fs::canonicalize(git_dir.join(c.trim())).ok()?,
            Err(_) => git_dir.clone(),
        };
        let mut pointers = Vec::new();
        for path in [
            git_dir.join("commondir"),
            git_dir.join("config.worktree"),
            common_dir.join("commondir"),
            common_dir.join("config.worktree"),
        ] {
            if !pointers.iter().any(|(p, _)| *p == path) {
                let before = read_pointer(&path).ok()?;
                pointers.push((path, before));
            }
        }
        let submodules = crate::submodules::discover(workspace, &git_dir, &common_dir);
        Some(GitLayout {
            submodules,
            dot,
            dot_id: (meta.dev(), meta.ino()),
            dot_text,
            git_dir,
            common_dir,
            pointers,
        })
    }

    /// Put the pointers back as the task found them; what was undone, one line each. `Err`
    /// when `.git` itself was replaced: git is not run on it then.
    fn restore(&self) -> Result<Vec<String>, String> {
        let mut notes = Vec::new();
        let meta = std::fs::symlink_metadata(&self.dot).ok();
        if meta.is_none_or(|m| (m.dev(), m.ino()) != self.dot_id) {
            return Err(format!(
                "the task replaced or moved `{}`: git was not run on the workspace; look at the repository before using git in it",
                self.dot.display()
            ));
        }
        let quarantine = |path: &Path| -> Result<PathBuf, String> {
            let mut name = path.as_os_str().to_owned();
            name.push(".remit-quarantine");
            let to = PathBuf::from(name);
            std::fs::rename(path, &to)
                .map_err(|e| format!("cannot move `{}` aside: {e}", path.display()))?;
            Ok(to)
        };
        if let Some(text) = &self.dot_text
            && std::fs::read(&self.dot).ok().as_ref() != Some(text)
        {
            let aside = quarantine(&self.dot)?;
            std::fs::write(&self.dot, text)
                .map_err(|e| format!("cannot put `{}` back: {e}", self.dot.display()))?;
            notes.push(format!(
                "the task rewrote `{}` to point git elsewhere; put back (its version is `{}`)",
                self.dot.display(),
                aside.display()
            ));
        }
        for (path, before) in &self.pointers {
            let now = read_pointer(path)?;
            if now == *before {
                continue;
            }
            let aside = if now.is_some() {
                Some(quarantine(path)?)
            } else {
                None
            };
            if let Some(text) = before {
                std::fs::write(path, text)
                    .map_err(|e| format!("cannot put `{}` back: {e}", path.display()))?;
            }
            notes.push(match (before, aside) {
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
            });
        }
        Ok(notes)
    }
}

/// `git` on `workspace` with nothing but the repository's own configuration.
pub(crate) fn git(workspace: &Path, index: Option<&Path>) -> Command {
    let mut command = Command::new("git");
    command
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .env("LC_ALL", "C")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_OPTIONAL_LOCKS", "0")
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
        ])
        .stdin(Stdio::null());
    if let Some(index) = index {
        command.env("GIT_INDEX_FILE", index);
    }
    command
}

fn git_changes(
    workspace: &Path,
    head: Option<&str>,
    layout: &GitLayout,
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
    let command = || {
        let mut command = git(workspace, Some(&index));
        // The directories found before the task, not whatever its pointers say now.
        command
            .env("GIT_DIR", &layout.git_dir)
            .env("GIT_COMMON_DIR", &layout.common_dir)
            .env("GIT_WORK_TREE", workspace);
        command
    };
    // The repository's configuration may be the task's own (a repository a task made with
    // `git init` is a git workspace for the next run): every filter driver it defines is
    // switched off, so adding the work tree runs no program it names. Reading the
    // configuration runs nothing.
    let mut overrides: Vec<String> = Vec::new();
    let listed = command()
        .args(["config", "--get-regexp", "--name-only", r"^filter\."])
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    // 1: no filter is configured. Anything else but success: the drivers are unknown, so
    // git is not run with them.
    if !listed.status.success() && listed.status.code() != Some(1) {
        return Err(format!(
            "cannot list the repository's filters: {}",
            String::from_utf8_lossy(&listed.stderr)
                .lines()
                .next()
                .unwrap_or("no reason given")
        ));
    }
    let mut drivers: Vec<String> = String::from_utf8_lossy(&listed.stdout)
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
    let run = |args: &[&str]| -> Result<Vec<u8>, String> {
        let out = command()
            .args(&overrides)
            .args(args)
            .output()
            .map_err(|e| format!("cannot run git: {e}"))?;
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            return Err(format!(
                "`git {}` failed: {}",
                args.first().copied().unwrap_or_default(),
                why.lines().next().unwrap_or("no reason given")
            ));
        }
        Ok(out.stdout)
    };
    // Ignored files (build output, caches) are left out: they can be huge, and a change to
    // `.gitignore` itself is in the diff.
    run(&["add", "--all", "--", "."])?;
    let names = run(&[
        "diff",
        "--cached",
        "--no-renames",
        "--name-status",
        "-z",
        base,
        "--",
    ])?;
    let mut changes = FileChanges {
        added: 0,
        modified: 0,
        deleted: 0,
        diff_sha256: None,
        paths: Vec::new(),
        paths_omitted: 0,
    };
    let mut fields = names.split(|b| *b == 0).filter(|f| !f.is_empty());
    while let (Some(status), Some(path)) = (fields.next(), fields.next()) {
        match status.first() {
            Some(b'A') => changes.added += 1,
            Some(b'D') => changes.deleted += 1,
            _ => changes.modified += 1,
        }
        push_path(&mut changes, String::from_utf8_lossy(path).into_owned());
    }
    // Stream the diff through the hash: it can be large.
    let mut child = git(workspace, Some(&index))
        .args([
            "diff",
            "--cached",
            "--binary",
            "--no-renames",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            base,
            "--",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run git: {e}"))?;
    let mut hasher = Sha256::new();
    if let Some(mut out) = child.stdout.take() {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match out.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => hasher.update(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("cannot read the diff: {e}")),
            }
        }
    }
    let status = child.wait().map_err(|e| format!("git: {e}"))?;
    if !status.success() {
        return Err("`git diff` failed".into());
    }
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
}
