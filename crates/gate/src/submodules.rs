//! Submodules: the repositories git enters from the workspace's own.
//!
//! `git status` runs `git status` in every populated submodule its index names (a *gitlink*,
//! an entry of mode 160000), with that submodule's configuration, and `git submodule update`
//! checks submodules out and runs their hooks. A task can write the index and the work tree:
//! left alone, it could name a repository it made itself (or point a submodule's `.git` file
//! at one), and that repository's `core.fsmonitor` would run on the host, as the user, the
//! next time the user asked `git status` in their own repository.
//!
//! - Before the task, [`discover`] finds every submodule's git directory: those under the
//!   common directory's `modules/` (at any depth: nested submodules, names with slashes) and
//!   those embedded in a submodule's own directory (`sub/.git/`), reached through the
//!   gitlinks of each index. Their configuration and hooks are mounted read-only for the
//!   task, like the workspace's own, and [`Protected`] remembers each by identity (device,
//!   inode) with the files in it that point git elsewhere (`commondir`, `config.worktree`).
//! - After the task, [`Protected::check`] follows the gitlinks of every index again. A
//!   submodule whose git directory is not one of those has its `.git` moved aside
//!   (`.git.remit-quarantine`), so git sees an unpopulated submodule and runs nothing of it;
//!   a submodule path that passes through a symbolic link has the link moved aside; a pointer
//!   the task wrote in a protected git directory is put back. Each is one line of the task's
//!   end, and the user's files are kept beside.
//!
//! Only git directories inside the workspace or the common directory are protected (those
//! are the trees the task can write); a submodule reached elsewhere is not one of them.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use crate::files::{quarantine, quarantine_into, read_regular};

/// An index entry's mode for a gitlink.
const GITLINK: u32 = 0o160_000;
/// Deepest nesting of submodules followed.
const MAX_DEPTH: usize = 8;
/// Most gitlinks followed in all (the rest are reported, not checked).
const MAX_LINKS: usize = 100_000;
/// Most entries visited under `modules/`.
const MAX_MODULE_ENTRIES: usize = 20_000;
/// Longest path name an index entry may have here (git's own limit is `PATH_MAX`).
const MAX_NAME: usize = 4096;
/// Largest `.git` file read (it holds one path).
const MAX_GITFILE: u64 = 64 << 10;
/// Largest index read (a repository of a million files has one of about 100 MiB).
const MAX_INDEX: u64 = 1 << 30;

/// A git directory as found before the task.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Module {
    #[serde(with = "crate::recovery::path")]
    git_dir: PathBuf,
    id: (u64, u64),
    /// The files in it that point git elsewhere, as found (`None`: absent).
    #[serde(with = "pointer_names")]
    pointers: Vec<NamedPointer>,
}

/// A pointer's name in its git directory, and its content as found (`None`: absent).
type NamedPointer = (&'static str, Option<Vec<u8>>);

/// The pointers' names, read back as the names this code knows (a record naming another
/// file is refused).
mod pointer_names {
    use serde::{Deserialize, Serialize};

    pub(crate) fn serialize<S: serde::Serializer>(
        v: &[super::NamedPointer],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }

    pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<super::NamedPointer>, D::Error> {
        let v = Vec::<(String, Option<Vec<u8>>)>::deserialize(d)?;
        v.into_iter()
            .map(|(name, before)| {
                super::WORKTREE_POINTERS
                    .iter()
                    .find(|known| **known == name)
                    .map(|known| (*known, before))
                    .ok_or_else(|| serde::de::Error::custom(format!("unknown pointer `{name}`")))
            })
            .collect()
    }
}

impl Module {
    fn capture(git_dir: PathBuf, id: (u64, u64), names: &[&'static str]) -> Module {
        Module {
            pointers: names
                .iter()
                .map(|&name| (name, read_pointer(&git_dir.join(name))))
                .collect(),
            git_dir,
            id,
        }
    }
}

/// Pointers of a submodule's git directory.
const MODULE_POINTERS: [&str; 2] = ["commondir", "config.worktree"];
/// Pointers of a linked work tree's git directory (`worktrees/<id>`).
const WORKTREE_POINTERS: [&str; 3] = ["commondir", "gitdir", "config.worktree"];

/// The submodule git directories protected for a task, and the other work trees' git
/// directories.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Protected {
    modules: Vec<Module>,
    worktrees: Vec<Module>,
}

impl Protected {
    /// The protected git directories (their `config` and `hooks` are what is mounted
    /// read-only).
    pub fn git_dirs(&self) -> impl Iterator<Item = &Path> {
        self.modules.iter().map(|m| m.git_dir.as_path())
    }

    fn find(&self, id: (u64, u64)) -> Option<&Module> {
        self.modules.iter().find(|m| m.id == id)
    }

    /// After the task: follow every gitlink from the workspace's repository (`git_dir`,
    /// `common_dir`, as found before the task) and undo what would lead git into a
    /// repository that was not protected. What was undone, one line each.
    pub fn check(&self, workspace: &Path, git_dir: &Path, common_dir: &Path) -> Vec<String> {
        let mut notes = Vec::new();
        let Ok(workspace) = std::fs::canonicalize(workspace) else {
            return notes;
        };
        // `modules/`: what git uses for a submodule of that name (`git submodule update`
        // checks it out there, with its hooks and configuration) must be one of those found.
        let complete = walk_modules(common_dir, &mut |entry| match entry {
            ModuleEntry::GitDir(path, id) if self.find(id).is_some() => {
                if let Some(module) = self.find(id) {
                    notes.extend(put_back_pointers(module, path));
                }
                true
            }
            ModuleEntry::GitDir(path, _) | ModuleEntry::Stray(path) => {
                notes.push(match quarantine_into(path, common_dir) {
                    Ok(aside) => format!(
                        "the task made `{}`, a git directory git would use for a submodule, with configuration and hooks of its own; moved to `{}`",
                        path.display(),
                        aside.display()
                    ),
                    Err(why) => why,
                });
                false
            }
        });
        if !complete {
            // Too many to check: none is trusted. The submodules are checked out again from
            // their remotes (`git submodule update --init`).
            let modules = common_dir.join("modules");
            notes.push(match quarantine_into(&modules, common_dir) {
                Ok(aside) => format!(
                    "`{}` holds more than {MAX_MODULE_ENTRIES} entries, more than remit checks: all of it was moved to `{}`",
                    modules.display(),
                    aside.display()
                ),
                Err(why) => format!(
                    "`{}` holds more than {MAX_MODULE_ENTRIES} entries, more than remit checks, and {why}; look at it before using git in the repository",
                    modules.display()
                ),
            });
        }
        // The other work trees' git directories: the user's git in those work trees reads
        // their pointers.
        for tree in &self.worktrees {
            let meta = std::fs::symlink_metadata(&tree.git_dir).ok();
            match meta {
                None => {}
                Some(m) if !m.file_type().is_symlink() && (m.dev(), m.ino()) == tree.id => {
                    notes.extend(put_back_pointers(tree, &tree.git_dir));
                }
                Some(_) => notes.push(match quarantine_into(&tree.git_dir, common_dir) {
                    Ok(aside) => format!(
                        "the task replaced `{}`, the git directory of another work tree; moved to `{}` (git in that work tree will not find its repository)",
                        tree.git_dir.display(),
                        aside.display()
                    ),
                    Err(why) => why,
                }),
            }
        }
        let mut budget = MAX_LINKS;
        let mut seen = HashSet::new();
        let mut queue = vec![(
            workspace.clone(),
            git_dir.to_path_buf(),
            common_dir.join("config"),
            0usize,
        )];
        while let Some((work, dir, config, depth)) = queue.pop() {
            let links = match gitlinks(&work, &dir, &config) {
                Ok(links) => links,
                Err(why) => {
                    notes.push(format!(
                        "cannot read the index of `{}` to check its submodules ({why}); look at them before using git in the repository",
                        dir.display()
                    ));
                    continue;
                }
            };
            for rel in links {
                if budget == 0 {
                    notes.push(format!(
                        "more than {MAX_LINKS} submodules: the rest were not checked; look at them before using git in the repository"
                    ));
                    return notes;
                }
                budget -= 1;
                let shown = String::from_utf8_lossy(&rel).into_owned();
                match follow(&work, &rel) {
                    Found::Empty => {}
                    Found::Linked(link) => match quarantine(&link) {
                        Ok(aside) => notes.push(format!(
                            "the submodule path `{shown}` passes through a symbolic link to a repository; the link was moved to `{}`",
                            aside.display()
                        )),
                        Err(why) => notes.push(why),
                    },
                    Found::Repo {
                        work: sub,
                        git_dir: sub_dir,
                        id,
                    } => match self.find(id).filter(|_| inside(&sub_dir, &workspace, common_dir)) {
                        Some(module) => {
                            notes.extend(put_back_pointers(module, &sub_dir));
                            if depth + 1 < MAX_DEPTH && seen.insert(id) {
                                let config = common_of(&sub_dir).join("config");
                                queue.push((sub, sub_dir, config, depth + 1));
                            }
                        }
                        None => match quarantine(&sub.join(".git")) {
                            Ok(aside) => notes.push(format!(
                                "the submodule `{shown}` leads to a repository remit did not protect (its configuration would run in the user's next `git status`); its `.git` was moved to `{}`",
                                aside.display()
                            )),
                            Err(why) => notes.push(why),
                        },
                    },
                }
            }
        }
        notes
    }
}

/// Before the task: every submodule git directory of the repository whose work tree is
/// `workspace` (git directory `git_dir`, common directory `common_dir`).
pub fn discover(workspace: &Path, git_dir: &Path, common_dir: &Path) -> Protected {
    let mut found = Protected::default();
    let (Ok(workspace), Ok(git_dir), Ok(common_dir)) = (
        std::fs::canonicalize(workspace),
        std::fs::canonicalize(git_dir),
        std::fs::canonicalize(common_dir),
    ) else {
        return found;
    };
    let add = |found: &mut Protected, dir: PathBuf, id: (u64, u64)| {
        if found.find(id).is_none() {
            found
                .modules
                .push(Module::capture(dir, id, &MODULE_POINTERS));
        }
    };
    // Everything under `modules/`, at any depth.
    walk_modules(&common_dir, &mut |entry| {
        if let ModuleEntry::GitDir(path, id) = entry {
            add(&mut found, path.to_path_buf(), id);
        }
        true
    });
    // The linked work trees' git directories.
    if let Ok(entries) = std::fs::read_dir(common_dir.join("worktrees")) {
        for entry in entries.flatten().take(MAX_MODULE_ENTRIES) {
            let path = entry.path();
            if let Ok(meta) = path.symlink_metadata()
                && meta.is_dir()
            {
                found.worktrees.push(Module::capture(
                    path,
                    (meta.dev(), meta.ino()),
                    &WORKTREE_POINTERS,
                ));
            }
        }
    }
    // Repositories embedded in submodule directories, through the gitlinks of each index.
    let mut seen = HashSet::new();
    let mut queue = vec![(
        workspace.clone(),
        git_dir,
        common_dir.join("config"),
        0usize,
    )];
    let mut links_left = MAX_LINKS;
    while let Some((work, dir, config, depth)) = queue.pop() {
        let Ok(links) = gitlinks(&work, &dir, &config) else {
            continue;
        };
        for rel in links {
            let Some(left) = links_left.checked_sub(1) else {
                return found;
            };
            links_left = left;
            if let Found::Repo {
                work: sub,
                git_dir: sub_dir,
                id,
            } = follow(&work, &rel)
                && inside(&sub_dir, &workspace, &common_dir)
            {
                add(&mut found, sub_dir.clone(), id);
                if depth + 1 < MAX_DEPTH && seen.insert(id) {
                    let config = common_of(&sub_dir).join("config");
                    queue.push((sub, sub_dir, config, depth + 1));
                }
            }
        }
    }
    found
}

/// What the walk of `modules/` meets.
enum ModuleEntry<'a> {
    /// A git directory (or what is meant to look like one), with its identity.
    GitDir(&'a Path, (u64, u64)),
    /// What git never makes there: a symbolic link (git follows it), or directories nested
    /// deeper than any submodule's name.
    Stray(&'a Path),
}

/// Visit everything under `<common>/modules` that git could use as a submodule's git
/// directory, at any depth (nested submodules, names with slashes); `visit` says whether to
/// look inside a git directory for its own `modules/`. `false` when the walk was cut short.
fn walk_modules(common: &Path, visit: &mut dyn FnMut(ModuleEntry<'_>) -> bool) -> bool {
    let mut budget = MAX_MODULE_ENTRIES;
    let mut stack = vec![(common.join("modules"), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Some(left) = budget.checked_sub(1) else {
                return false;
            };
            budget = left;
            let path = entry.path();
            let Ok(meta) = path.symlink_metadata() else {
                continue;
            };
            if meta.file_type().is_symlink() || (meta.is_dir() && depth >= 4 * MAX_DEPTH) {
                visit(ModuleEntry::Stray(&path));
                continue;
            }
            if !meta.is_dir() {
                continue;
            }
            // A git directory (or what is meant to look like one: its configuration is
            // protected, and refused if it is a link).
            if path.join("HEAD").symlink_metadata().is_ok()
                || path.join("config").symlink_metadata().is_ok()
            {
                if visit(ModuleEntry::GitDir(&path, (meta.dev(), meta.ino()))) {
                    stack.push((path.join("modules"), depth + 1));
                }
            } else {
                // A part of a name with slashes.
                stack.push((path, depth + 1));
            }
        }
    }
    true
}

/// Whether a git directory lies in a tree the task can write (and so may be protected).
fn inside(dir: &Path, workspace: &Path, common_dir: &Path) -> bool {
    dir.starts_with(workspace) || dir.starts_with(common_dir)
}

/// The common directory of a git directory (itself unless it has a `commondir`).
fn common_of(dir: &Path) -> PathBuf {
    std::fs::read_to_string(dir.join("commondir"))
        .ok()
        .and_then(|c| std::fs::canonicalize(dir.join(c.trim())).ok())
        .unwrap_or_else(|| dir.to_path_buf())
}

/// A pointer as found; one that cannot be looked at counts as absent (whatever is there
/// after the task is then moved aside).
fn read_pointer(path: &Path) -> Option<Vec<u8>> {
    crate::files::read_pointer(path).unwrap_or(None)
}

/// Put a protected git directory's pointers back as they were found; one line each.
fn put_back_pointers(module: &Module, dir: &Path) -> Vec<String> {
    let mut notes = Vec::new();
    for (name, before) in &module.pointers {
        let path = dir.join(name);
        if read_pointer(&path) == *before {
            continue;
        }
        let aside = match crate::files::put_back(&path, before.as_deref()) {
            Ok(aside) => aside,
            Err(why) => {
                notes.push(why);
                continue;
            }
        };
        notes.push(format!(
            "the task changed `{}`, which points git at other configuration; put back{}",
            path.display(),
            aside.map_or_else(String::new, |a| format!(
                " (its version is `{}`)",
                a.display()
            ))
        ));
    }
    notes
}

/// Where a gitlink leads.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    /// Nothing git would enter: no directory there, or no repository in it.
    Empty,
    /// A repository, reached through this symbolic link (the first on the way).
    Linked(PathBuf),
    /// A repository: the submodule's work tree and its git directory (canonical), with the
    /// git directory's identity.
    Repo {
        work: PathBuf,
        git_dir: PathBuf,
        id: (u64, u64),
    },
}

/// Follow the gitlink `rel` of the work tree `work` (canonical) as git would.
fn follow(work: &Path, rel: &[u8]) -> Found {
    let mut here = work.to_path_buf();
    for part in Path::new(OsStr::from_bytes(rel)).components() {
        let Component::Normal(name) = part else {
            // Git refuses such paths in an index.
            return Found::Empty;
        };
        here.push(name);
        match std::fs::symlink_metadata(&here) {
            Err(_) => return Found::Empty,
            Ok(m) if m.file_type().is_symlink() => {
                // Git follows it; whatever it leads to was not protected through it.
                let target = work.join(OsStr::from_bytes(rel));
                return match std::fs::canonicalize(&target)
                    .ok()
                    .and_then(|t| repo_at(&t))
                {
                    Some(_) => Found::Linked(here),
                    None => Found::Empty,
                };
            }
            Ok(m) if !m.is_dir() => return Found::Empty,
            Ok(_) => {}
        }
    }
    match repo_at(&here) {
        Some((git_dir, id)) => Found::Repo {
            work: here,
            git_dir,
            id,
        },
        None => Found::Empty,
    }
}

/// The git directory `<dir>/.git` names (a directory, or a `gitdir:` file), canonical, with
/// its identity. Links are followed, as git follows them.
fn repo_at(dir: &Path) -> Option<(PathBuf, (u64, u64))> {
    let dot = dir.join(".git");
    let meta = std::fs::metadata(&dot).ok()?;
    let target = if meta.is_dir() {
        dot
    } else if meta.is_file() {
        // Through a link too, as git reads it; never a FIFO or a device.
        let real = std::fs::canonicalize(&dot).ok()?;
        let text = read_regular(&real, MAX_GITFILE).ok()??;
        let text = std::str::from_utf8(&text).ok()?;
        let target = text.trim().strip_prefix("gitdir:")?.trim();
        dir.join(target)
    } else {
        return None;
    };
    let target = std::fs::canonicalize(target).ok()?;
    let meta = std::fs::metadata(&target).ok()?;
    meta.is_dir().then(|| (target, (meta.dev(), meta.ino())))
}

/// The gitlink paths in the index of `git_dir` (work tree `work`), whose repository
/// configuration is `config` (read for the object format only).
pub(crate) fn gitlinks(work: &Path, git_dir: &Path, config: &Path) -> Result<Vec<Vec<u8>>, String> {
    let index = git_dir.join("index");
    let data = match read_regular(&index, MAX_INDEX) {
        Ok(Some(data)) => data,
        Ok(None) => return Err(format!("`{}` is not a regular file", index.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read `{}`: {e}", index.display())),
    };
    let config = read_regular(config, crate::files::MAX_POINTER)
        .ok()
        .flatten()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let sha256 = config
        .split(|&b| b == b'\n')
        .any(|line| contains(line, b"objectformat") && contains(line, b"sha256"));
    if let Some(links) = parse_index(&data, if sha256 { 32 } else { 20 }) {
        return Ok(links);
    }
    // A split or sparse index, or a format this reader does not know: git lists it, for a
    // bounded time (a FIFO the task left as the shared index would hold it for ever).
    let mut listed = Vec::new();
    let (status, stderr) = crate::files::run_within(
        crate::changes::git(work, None)
            .env("GIT_DIR", git_dir)
            .env("GIT_WORK_TREE", work)
            .args(["ls-files", "--stage", "-z"]),
        crate::files::GIT_LIMIT,
        &mut |b| listed.extend_from_slice(b),
    )?;
    if !status.success() {
        return Err(String::from_utf8_lossy(&stderr)
            .lines()
            .next()
            .unwrap_or("git could not read it")
            .to_owned());
    }
    Ok(listed
        .split(|&b| b == 0)
        .filter_map(|line| {
            let (meta, path) = line.split_at(line.iter().position(|&b| b == b'\t')?);
            meta.starts_with(b"160000 ").then(|| path[1..].to_vec())
        })
        .collect())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The gitlink paths of an index file (versions 2 to 4, object ids of `oid_len` bytes).
/// `None`: not an index this reader understands (a split or sparse index among them), for
/// git to read instead.
fn parse_index(data: &[u8], oid_len: usize) -> Option<Vec<Vec<u8>>> {
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(
            data.get(at..at.checked_add(4)?)?.try_into().ok()?,
        ))
    };
    if data.get(..4)? != b"DIRC" {
        return None;
    }
    let version = u32_at(4)?;
    if !(2..=4).contains(&version) {
        return None;
    }
    let count = u32_at(8)?;
    // The index ends with the checksum of everything before it.
    let end = data.len().checked_sub(oid_len)?;
    let mut at = 12usize;
    let mut links = Vec::new();
    let mut name: Vec<u8> = Vec::new();
    for _ in 0..count {
        let start = at;
        let mode = u32_at(start.checked_add(24)?)?;
        let flags_at = start.checked_add(40 + oid_len)?;
        let flags = u16::from_be_bytes(
            data.get(flags_at..flags_at.checked_add(2)?)?
                .try_into()
                .ok()?,
        );
        at = flags_at + 2;
        if flags & 0x4000 != 0 {
            // Extended flags, from version 3 on.
            if version < 3 {
                return None;
            }
            at = at.checked_add(2)?;
        }
        let rest = data.get(at..end)?;
        if version == 4 {
            // Prefix compression: drop this many bytes of the previous name, then a suffix.
            let (strip, used) = varint(rest)?;
            name.truncate(name.len().checked_sub(strip)?);
            let rest = &rest[used..];
            let nul = rest.iter().position(|&b| b == 0)?;
            name.extend_from_slice(&rest[..nul]);
            at += used + nul + 1;
            if name.len() > MAX_NAME {
                // Git's own paths are shorter; a name grown past it is an index made to
                // exhaust memory: git reads it instead.
                return None;
            }
        } else {
            let nul = rest.iter().position(|&b| b == 0)?;
            name.clear();
            name.extend_from_slice(&rest[..nul]);
            // NUL-padded to a multiple of eight bytes from the entry's start.
            let len = at + nul - start;
            at = start.checked_add((len + 8) & !7)?;
        }
        if at > end {
            return None;
        }
        if mode & 0o170_000 == GITLINK {
            if links.len() > MAX_LINKS {
                return None;
            }
            links.push(name.clone());
        }
    }
    // Extensions: a split index keeps its entries in another file, a sparse index folds
    // whole directories (gitlinks included) into one entry.
    while at < end {
        let signature = data.get(at..at.checked_add(4)?)?;
        if signature == b"link" || signature == b"sdir" {
            return None;
        }
        let size = u32_at(at + 4)? as usize;
        at = at.checked_add(8)?.checked_add(size)?;
    }
    (at == end).then_some(links)
}

/// Git's variable-length offset encoding (index version 4): the value and bytes used.
fn varint(data: &[u8]) -> Option<(usize, usize)> {
    let mut used = 1;
    let mut c = *data.first()?;
    let mut value = usize::from(c & 127);
    while c & 128 != 0 {
        c = *data.get(used)?;
        used += 1;
        value = value
            .checked_add(1)?
            .checked_mul(128)?
            .checked_add(usize::from(c & 127))?;
    }
    Some((value, used))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::process::Command;

    use super::*;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(["-c", "user.email=t@example.com", "-c", "user.name=t"])
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// A repository with files (one with a long path), a gitlink at `sub` and one at
    /// `deep/er/sub2`, its index written in `version`.
    fn repository(format: &str, version: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().join("top");
        std::fs::create_dir(&top).unwrap();
        git(&top, &["init", "-q", &format!("--object-format={format}")]);
        std::fs::create_dir_all(top.join("deep/er")).unwrap();
        std::fs::write(top.join("a.txt"), "a").unwrap();
        std::fs::write(top.join("deep/er/b.txt"), "b").unwrap();
        let long = top.join(format!("deep/{}/{}", "n".repeat(200), "m".repeat(200)));
        std::fs::create_dir_all(long.parent().unwrap()).unwrap();
        std::fs::write(long, "n").unwrap();
        git(&top, &["add", "-A"]);
        git(&top, &["commit", "-qm", "one"]);
        let id = git(&top, &["rev-parse", "HEAD"]);
        for path in ["sub", "deep/er/sub2"] {
            git(
                &top,
                &[
                    "update-index",
                    "--add",
                    "--cacheinfo",
                    &format!("160000,{id},{path}"),
                ],
            );
        }
        git(&top, &["update-index", "--index-version", version]);
        (dir, top)
    }

    fn links_of(top: &Path) -> Vec<String> {
        let mut links: Vec<String> = gitlinks(top, &top.join(".git"), &top.join(".git/config"))
            .unwrap()
            .into_iter()
            .map(|l| String::from_utf8(l).unwrap())
            .collect();
        links.sort();
        links
    }

    #[test]
    fn the_index_reader_finds_every_gitlink_in_every_format() {
        for format in ["sha1", "sha256"] {
            for version in ["2", "3", "4"] {
                let (_dir, top) = repository(format, version);
                let data = std::fs::read(top.join(".git/index")).unwrap();
                let oid = if format == "sha256" { 32 } else { 20 };
                let mut parsed: Vec<String> = parse_index(&data, oid)
                    .unwrap_or_else(|| panic!("{format} v{version} not read"))
                    .into_iter()
                    .map(|l| String::from_utf8(l).unwrap())
                    .collect();
                parsed.sort();
                assert_eq!(parsed, ["deep/er/sub2", "sub"], "{format} v{version}");
                assert_eq!(links_of(&top), ["deep/er/sub2", "sub"]);
            }
        }
    }

    #[test]
    fn an_index_it_cannot_read_is_left_to_git() {
        let (_dir, top) = repository("sha1", "2");
        // A split index: the entries live in a shared file.
        git(&top, &["update-index", "--split-index"]);
        let data = std::fs::read(top.join(".git/index")).unwrap();
        assert_eq!(parse_index(&data, 20), None);
        assert_eq!(links_of(&top), ["deep/er/sub2", "sub"]);
        // Damaged: no truncation panics or names a gitlink that is not there (git checks
        // the checksum and refuses a damaged index: it enters no submodule then); one that
        // cuts into the entries is refused.
        let (_dir, top) = repository("sha1", "4");
        let data = std::fs::read(top.join(".git/index")).unwrap();
        let all = parse_index(&data, 20).unwrap();
        for len in 0..data.len() - 1 {
            if let Some(links) = parse_index(&data[..len], 20) {
                assert!(len > data.len() / 2, "{len}");
                assert!(links.iter().all(|l| all.contains(l)), "{len}");
            }
        }
        assert_eq!(parse_index(&data, 32), None);
    }

    fn mkfifo(path: &Path) {
        assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
    }

    /// A task can leave a FIFO (or a link to one, or to a device) where the index or a
    /// `.git` file was: remit reports it and goes on, it never waits on it.
    #[test]
    fn a_fifo_or_a_link_is_reported_never_waited_on() {
        let (_dir, top) = repository("sha1", "2");
        let index = top.join(".git/index");
        std::fs::remove_file(&index).unwrap();
        mkfifo(&index);
        let why = gitlinks(&top, &top.join(".git"), &top.join(".git/config")).unwrap_err();
        assert!(why.contains("not a regular file"), "{why}");
        let notes = Protected::default().check(&top, &top.join(".git"), &top.join(".git"));
        assert_eq!(notes.len(), 1, "{notes:?}");
        std::fs::remove_file(&index).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &index).unwrap();
        assert!(gitlinks(&top, &top.join(".git"), &top.join(".git/config")).is_err());
        // A submodule's `.git` file made a link to a FIFO: not a repository.
        std::fs::create_dir(top.join("sub")).unwrap();
        mkfifo(&top.join("pipe"));
        std::os::unix::fs::symlink(top.join("pipe"), top.join("sub/.git")).unwrap();
        assert_eq!(follow(&top, b"sub"), Found::Empty);
    }

    #[test]
    fn gitlinks_lead_where_git_goes() {
        let (_dir, top) = repository("sha1", "2");
        // `sub`: nothing there yet.
        assert_eq!(follow(&top, b"sub"), Found::Empty);
        // A repository of its own.
        std::fs::create_dir(top.join("sub")).unwrap();
        git(&top.join("sub"), &["init", "-q"]);
        let Found::Repo { git_dir, .. } = follow(&top, b"sub") else {
            panic!()
        };
        assert_eq!(git_dir, top.join("sub/.git"));
        // Through a link: the link is what is named.
        std::fs::create_dir_all(top.join("deep/er")).unwrap();
        std::os::unix::fs::symlink(top.join("sub"), top.join("deep/er/sub2")).unwrap();
        assert_eq!(
            follow(&top, b"deep/er/sub2"),
            Found::Linked(top.join("deep/er/sub2"))
        );
        assert_eq!(follow(&top, b"../sub"), Found::Empty);
    }

    /// A workspace with an absorbed submodule `lib` (from `upstream`), and its protection.
    fn with_submodule() -> (tempfile::TempDir, PathBuf, Protected) {
        let dir = tempfile::tempdir().unwrap();
        let upstream = dir.path().join("upstream");
        let top = dir.path().join("top");
        for d in [&upstream, &top] {
            std::fs::create_dir(d).unwrap();
            git(d, &["init", "-q"]);
        }
        std::fs::write(upstream.join("lib.txt"), "lib").unwrap();
        git(&upstream, &["add", "lib.txt"]);
        git(&upstream, &["commit", "-qm", "lib"]);
        git(
            &top,
            &[
                "-c",
                "protocol.file.allow=always",
                "submodule",
                "add",
                "-q",
                upstream.to_str().unwrap(),
                "lib",
            ],
        );
        git(&top, &["commit", "-qm", "sub"]);
        let protected = discover(&top, &top.join(".git"), &top.join(".git"));
        assert_eq!(protected.git_dirs().count(), 1);
        (dir, top, protected)
    }

    /// The task moves a protected submodule git directory away (its read-only binds go with
    /// it) and puts one of its own, with its own configuration, where git looks for it: it is
    /// moved out of `modules/`, and the user's `git status` runs nothing of it.
    #[test]
    fn a_submodule_git_directory_the_task_put_in_place_is_moved_out() {
        let (dir, top, protected) = with_submodule();
        let marker = dir.path().join("fsmonitor-ran");
        let modules = top.join(".git/modules");
        std::fs::rename(modules.join("lib"), modules.join("lib.old")).unwrap();
        assert!(
            Command::new("cp")
                .arg("-r")
                .arg(modules.join("lib.old"))
                .arg(modules.join("lib"))
                .status()
                .unwrap()
                .success()
        );
        git(
            &top.join("lib"),
            &[
                "config",
                "core.fsmonitor",
                &format!("touch {}", marker.display()),
            ],
        );
        // And a link where git would look for another submodule's.
        std::os::unix::fs::symlink(modules.join("lib"), modules.join("other")).unwrap();
        let notes = protected.check(&top, &top.join(".git"), &top.join(".git"));
        assert_eq!(
            notes.iter().filter(|n| n.contains("moved to")).count(),
            2,
            "{notes:?}"
        );
        assert!(!modules.join("lib").exists() && !modules.join("other").exists());
        assert!(
            modules.join("lib.old/config").exists(),
            "the user's own was moved"
        );
        crate::files::assert_user_status_runs_nothing(&top, &marker);
        // The twin: untouched, nothing is moved.
        let (_dir, top, protected) = with_submodule();
        let notes = protected.check(&top, &top.join(".git"), &top.join(".git"));
        assert!(notes.is_empty(), "{notes:?}");
        assert!(top.join(".git/modules/lib/config").exists());
    }

    /// Another work tree's git directory (`worktrees/<id>`) is in the common directory the
    /// task writes: a `commondir` it rewrites there is put back.
    #[test]
    fn another_work_trees_pointers_are_put_back() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("fsmonitor-ran");
        let top = dir.path().join("top");
        std::fs::create_dir(&top).unwrap();
        git(&top, &["init", "-q"]);
        git(&top, &["commit", "-q", "--allow-empty", "-m", "one"]);
        git(&top, &["worktree", "add", "-q", "../wt2"]);
        let protected = discover(&top, &top.join(".git"), &top.join(".git"));
        let commondir = top.join(".git/worktrees/wt2/commondir");
        let before = std::fs::read(&commondir).unwrap();
        let evil = top.join(".git/evil");
        std::fs::create_dir_all(evil.join("refs")).unwrap();
        std::fs::create_dir_all(evil.join("objects")).unwrap();
        std::fs::copy(top.join(".git/HEAD"), evil.join("HEAD")).unwrap();
        std::fs::write(
            evil.join("config"),
            format!(
                "[core]\n\trepositoryformatversion = 0\n\tfsmonitor = touch {}\n",
                marker.display()
            ),
        )
        .unwrap();
        std::fs::write(&commondir, "../../evil\n").unwrap();
        let notes = protected.check(&top, &top.join(".git"), &top.join(".git"));
        assert!(notes.iter().any(|n| n.contains("commondir")), "{notes:?}");
        assert_eq!(std::fs::read(&commondir).unwrap(), before);
        crate::files::assert_user_status_runs_nothing(&dir.path().join("wt2"), &marker);
    }

    /// Directories nested under `modules/` deeper than any submodule name are not skipped
    /// unchecked: they are moved out like anything else git did not make there.
    #[test]
    fn a_git_directory_buried_deep_in_modules_is_moved_out() {
        let (_dir, top, protected) = with_submodule();
        let mut deep = top.join(".git/modules/d");
        for _ in 0..40 {
            deep.push("d");
        }
        std::fs::create_dir_all(deep.join("hooks")).unwrap();
        std::fs::write(deep.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        let notes = protected.check(&top, &top.join(".git"), &top.join(".git"));
        assert!(notes.iter().any(|n| n.contains("moved to")), "{notes:?}");
        assert!(!deep.exists());
        assert!(top.join(".git/modules/lib/config").exists());
    }
}
