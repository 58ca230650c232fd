//! What a supervisor killed outright leaves behind, undone at the next start.
//!
//! A task in a git repository may write the files that point git elsewhere (`commondir`, the
//! work tree's `.git` file, an absent `config.worktree`, an included configuration file):
//! they stay writable because git needs the directory. The supervisor puts them back when the
//! task ends ([`crate::changes`]). A supervisor killed with SIGKILL (or by the kernel's OOM
//! killer) cannot: what the task wrote would then be the configuration of the user's next git
//! command, whose `core.fsmonitor` runs a program.
//!
//! So before a task in a repository starts, what must be put back is written, durably, to
//! `$REMIT_HOME/recovery/<task>.json`, and removed once the task's end has put it back. The
//! repository's lock (held for the task's whole run, by the supervisor and its sandbox's
//! init, both gone when the supervisor is killed) tells a live task from a dead one: the next
//! task that starts, in any workspace, takes the lock of each record it finds; one it gets
//! belongs to a dead task, whose put-back it runs before preparing its own sandbox.
//!
//! A task whose supervisor died never recorded its end. Once the next task's ledger is open,
//! every such task (those of the records, and those whose identity tokens the identity store
//! finds orphaned) gets a `task_end` with reason `error`, saying what was undone for it.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use remit_ledger::{Ledger, Query};
use remit_types::event::{EndReason, EventBody, NewEvent, TaskCounts, TaskEnd};
use serde::{Deserialize, Serialize};

use crate::changes::Baseline;

/// Largest record read (a repository's layout: a few paths and small files).
const MAX_RECORD: u64 = 16 << 20;

/// What a task in a git repository must have put back if its supervisor dies.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    /// The task.
    task: String,
    /// The workspace, as bytes.
    #[serde(with = "path")]
    workspace: PathBuf,
    /// The repository's layout as the task found it.
    layout: crate::changes::GitLayout,
}

/// A record of a running task: removed when the task's end has put its repository back.
#[derive(Debug)]
pub struct Pending {
    path: PathBuf,
}

impl Pending {
    /// The task's end put everything back: the record goes.
    pub fn done(self) {
        drop(self);
    }
}

impl Drop for Pending {
    /// Also when the task never ran (its start failed after the record was made): only a
    /// supervisor killed outright leaves a record behind.
    fn drop(&mut self) {
        // A panic unwinding past the task did not put anything back: the next start will.
        if std::thread::panicking() {
            return;
        }
        let _ = std::fs::remove_file(&self.path);
        if let Some(dir) = self.path.parent() {
            sync_dir(dir);
        }
    }
}

/// The directory of the records.
fn directory(home: &Path) -> PathBuf {
    home.join("recovery")
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Write, durably, what must be put back after the task `task` if its supervisor dies. `None`
/// for a workspace that is not a git repository (nothing there is put back).
pub fn remember(home: &Path, task: &str, baseline: &Baseline) -> Result<Option<Pending>, String> {
    let Baseline::Git {
        workspace, layout, ..
    } = baseline
    else {
        return Ok(None);
    };
    let record = Record {
        task: task.to_owned(),
        workspace: workspace.clone(),
        layout: (**layout).clone(),
    };
    let text = serde_json::to_vec(&record).map_err(|e| e.to_string())?;
    let dir = directory(home);
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
    }
    let path = dir.join(format!("{task}.json"));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| format!("cannot create `{}`: {e}", path.display()))?;
    file.write_all(&text)
        .and_then(|()| file.sync_data())
        .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
    sync_dir(&dir);
    Ok(Some(Pending { path }))
}

/// A task whose supervisor died, found at the start of another: what was undone for it.
#[derive(Debug, Clone, Default)]
pub struct Recovered {
    /// The task.
    pub task: String,
    /// Its workspace (empty when its record could not be read).
    pub workspace: PathBuf,
    /// What was put back or moved aside in its repository, one line each (the last one says
    /// so when the repository must be looked at before git is used in it).
    pub notes: Vec<String>,
    /// Its record (or the records' directory) could not be read: a repository may still hold
    /// what the task planted, and no task runs in a repository until someone looks.
    pub unresolved: bool,
}

/// Put back the repositories of tasks whose supervisor died (each record whose repository
/// lock is free). Records of live tasks are left alone; a record that cannot be read is
/// left in place and reported each time, since its repository was never put back.
///
/// `here` is the workspace the starting task will run in: a record of it whose lock is held
/// (another start putting it back at this moment) is waited for, up to two seconds, so this
/// task does not record what the dead one planted as the repository it found.
pub fn put_back_crashed(home: &Path, here: Option<&Path>) -> Vec<Recovered> {
    let dir = directory(home);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            return vec![Recovered {
                task: "?".into(),
                workspace: PathBuf::new(),
                unresolved: true,
                notes: vec![format!(
                    "`{}` cannot be read ({e}): what tasks whose supervisor died left in their repositories may not have been put back",
                    dir.display()
                )],
            }];
        }
    };
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    found.sort();
    let mut out = Vec::new();
    for path in found {
        let task = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let record = match read_record(&path) {
            Ok(record) => record,
            Err(why) => {
                out.push(Recovered {
                    task,
                    workspace: PathBuf::new(),
                    unresolved: true,
                    notes: vec![format!(
                        "what a task left in its repository could not be put back: `{}` {why}; look at the repository's `.git` before using git in it, then remove the file",
                        path.display()
                    )],
                });
                continue;
            }
        };
        // Held: the task still runs (its supervisor and the sandbox's init hold the lock), or
        // another start is putting it back.
        let patience = if here == Some(record.workspace.as_path()) {
            std::time::Duration::from_secs(2)
        } else {
            std::time::Duration::ZERO
        };
        let Some(_lock) = lock_within(home, record.layout.common(), patience) else {
            continue;
        };
        // Put back by another start between the read and the lock.
        if std::fs::symlink_metadata(&path).is_err() {
            continue;
        }
        let (mut notes, refused) = record.layout.restore();
        if let Err(why) = refused {
            notes.push(why);
        }
        let _ = std::fs::remove_file(&path);
        sync_dir(&dir);
        out.push(Recovered {
            task: record.task,
            workspace: record.workspace,
            notes,
            unresolved: false,
        });
    }
    out
}

impl Recovered {
    /// What to tell the user, one line each (paths and names escaped for a terminal).
    pub fn warnings(&self) -> Vec<String> {
        let place = if self.workspace.as_os_str().is_empty() {
            String::new()
        } else {
            format!(" in `{}`", self.workspace.display())
        };
        self.notes
            .iter()
            .map(|note| {
                remit_types::effect::escaped(&format!(
                    "task {} ended without its supervisor{place}: {note}",
                    self.task
                ))
            })
            .collect()
    }
}

/// The repository lock of `common`, tried until `patience` has passed.
fn lock_within(home: &Path, common: &Path, patience: std::time::Duration) -> Option<std::fs::File> {
    let begun = std::time::Instant::now();
    loop {
        match crate::run::try_lock_repository(home, common) {
            Ok(Some(lock)) => return Some(lock),
            Ok(None) if begun.elapsed() < patience => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            _ => return None,
        }
    }
}

fn read_record(path: &Path) -> Result<Record, String> {
    let data = crate::files::read_regular(path, MAX_RECORD)
        .map_err(|e| format!("cannot be read ({e})"))?
        .ok_or_else(|| "is not a regular file of at most 16 MiB".to_owned())?;
    serde_json::from_slice(&data).map_err(|e| format!("cannot be read ({e})"))
}

/// Record the end of every task whose supervisor died (`recovered` and `orphans`, the tasks
/// the identity store found left open) that has a start but no end in the ledger. Problems,
/// one line each.
pub fn record_ends(
    home: &Path,
    ledger: &Ledger,
    recovered: &[Recovered],
    orphans: &[String],
    current: &str,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut tasks: BTreeSet<&str> = orphans.iter().map(String::as_str).collect();
    // An unreadable record's task may still run: its end is not this start's to record.
    tasks.extend(
        recovered
            .iter()
            .filter(|r| !r.unresolved)
            .map(|r| r.task.as_str()),
    );
    tasks.remove(current);
    if tasks.is_empty() {
        return problems;
    }
    // One start at a time looks for a dead task's end and records it (durably, before the
    // next looks): two starts at once would both find none.
    let dir = directory(home);
    let _ = std::fs::create_dir_all(&dir);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("ends.lock"))
        .and_then(|f| f.lock().map(|()| f));
    if let Err(e) = &lock {
        problems.push(format!(
            "the ends of tasks whose supervisor died were not recorded: {e}"
        ));
        return problems;
    }
    let mut reader = match ledger.reader() {
        Ok(reader) => reader,
        Err(e) => {
            problems.push(format!(
                "the ends of tasks whose supervisor died were not recorded: {e}"
            ));
            return problems;
        }
    };
    for task in tasks {
        let mut first = None;
        let mut ended = false;
        let mut look = |kinds: Vec<String>, seen: &mut dyn FnMut(remit_ledger::StoredEvent)| {
            let query = Query {
                task: Some(task.to_owned()),
                kinds,
                limit: Some(1),
                ..Query::default()
            };
            reader.scan(&query, &mut |event| {
                seen(event);
                Ok(false)
            })
        };
        let scanned = look(Vec::new(), &mut |e| first = Some(e.event.agent))
            .and_then(|()| look(vec!["task_end".into()], &mut |_| ended = true));
        if let Err(e) = scanned {
            problems.push(format!("the end of task {task} was not recorded: {e}"));
            continue;
        }
        // No start recorded (it died before its first event), or already ended (it died
        // after its end was durable): nothing to close.
        let (Some(agent), false) = (first, ended) else {
            continue;
        };
        let undone: Vec<&str> = recovered
            .iter()
            .filter(|r| r.task == task)
            .flat_map(|r| r.notes.iter().map(String::as_str))
            .collect();
        let mut detail = format!(
            "the task's supervisor was killed before the task ended; found when task {current} started"
        );
        if !undone.is_empty() {
            detail.push_str("; ");
            detail.push_str(&undone.join("; "));
        }
        let end = TaskEnd {
            exit_code: None,
            signal: None,
            reason: EndReason::Error,
            detail: Some(detail),
            counts: TaskCounts::default(),
        };
        if let Err(e) = ledger.append(NewEvent::new(task, agent, EventBody::TaskEnd(end))) {
            problems.push(format!("the end of task {task} was not recorded: {e}"));
        }
    }
    if let Err(e) = ledger.flush() {
        problems.push(format!(
            "the ends of tasks whose supervisor died may not be recorded: {e}"
        ));
    }
    drop(lock);
    problems
}

/// A path as its bytes (a path need not be UTF-8).
pub(crate) mod path {
    use super::*;

    pub(crate) fn serialize<S: serde::Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(p.as_os_str().as_bytes())
    }

    pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        let bytes = Vec::<u8>::deserialize(d)?;
        Ok(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
    }
}

/// Pairs whose first member is a path.
pub(crate) mod path_pairs {
    use super::*;

    pub(crate) fn serialize<S: serde::Serializer, T: Serialize>(
        v: &[(PathBuf, T)],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|(p, t)| (p.as_os_str().as_bytes(), t)))
    }

    pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Vec<(PathBuf, T)>, D::Error> {
        let v = Vec::<(Vec<u8>, T)>::deserialize(d)?;
        Ok(v.into_iter()
            .map(|(p, t)| (PathBuf::from(std::ffi::OsString::from_vec(p)), t))
            .collect())
    }
}

/// Triples whose first member is a path.
pub(crate) mod path_triples {
    use super::*;

    pub(crate) fn serialize<S: serde::Serializer, T: Serialize, U: Serialize>(
        v: &[(PathBuf, T, U)],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|(p, t, u)| (p.as_os_str().as_bytes(), t, u)))
    }

    pub(crate) fn deserialize<'de, D, T, U>(d: D) -> Result<Vec<(PathBuf, T, U)>, D::Error>
    where
        D: serde::Deserializer<'de>,
        T: Deserialize<'de>,
        U: Deserialize<'de>,
    {
        let v = Vec::<(Vec<u8>, T, U)>::deserialize(d)?;
        Ok(v.into_iter()
            .map(|(p, t, u)| (PathBuf::from(std::ffi::OsString::from_vec(p)), t, u))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) {
        let status = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// A record survives its writer: what it holds puts the repository back as well as the
    /// baseline it was made from would, and a record whose repository is locked (its task
    /// still runs) is left alone.
    #[test]
    fn a_record_puts_back_what_a_dead_task_wrote_and_leaves_a_live_one_alone() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let ws = dir.path().join("ws");
        std::fs::create_dir_all(&ws).unwrap();
        git(&ws, &["init", "-q"]);
        std::fs::write(ws.join("f"), "x").unwrap();
        git(&ws, &["add", "f"]);
        git(&ws, &["commit", "-qm", "one"]);
        let baseline = Baseline::git(&ws).unwrap();
        let pending = remember(&home, "task-a", &baseline).unwrap().unwrap();
        let common = baseline.common_dir().unwrap().to_path_buf();

        // The task writes a configuration git would follow, and is still running.
        std::fs::write(ws.join(".git/config.worktree"), "[core]\n\tfsmonitor = x\n").unwrap();
        let lock = crate::run::try_lock_repository(&home, &common)
            .unwrap()
            .unwrap();
        assert!(
            put_back_crashed(&home, None).is_empty(),
            "a live task's record"
        );
        assert!(ws.join(".git/config.worktree").exists());
        assert!(home.join("recovery/task-a.json").exists());

        // Its supervisor is gone: the next start puts the repository back.
        drop(lock);
        let recovered = put_back_crashed(&home, None);
        assert_eq!(recovered.len(), 1);
        assert_eq!(recovered[0].task, "task-a");
        assert!(
            recovered[0]
                .notes
                .iter()
                .any(|n| n.contains("config.worktree")),
            "{:?}",
            recovered[0].notes
        );
        assert!(!ws.join(".git/config.worktree").exists());
        assert!(!home.join("recovery/task-a.json").exists());
        // Once only.
        assert!(put_back_crashed(&home, None).is_empty());
        drop(pending);

        // The twin: a dead task that changed nothing there leaves nothing to say.
        let baseline = Baseline::git(&ws).unwrap();
        let _pending = remember(&home, "task-b", &baseline).unwrap().unwrap();
        let recovered = put_back_crashed(&home, None);
        assert_eq!(recovered.len(), 1);
        assert!(recovered[0].notes.is_empty(), "{:?}", recovered[0].notes);
        assert!(ws.join("f").exists());
    }

    /// A record that cannot be read is reported, and kept: its repository was never put
    /// back.
    #[test]
    fn an_unreadable_record_is_reported_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        std::fs::create_dir_all(home.join("recovery")).unwrap();
        std::fs::write(home.join("recovery/t.json"), "{\"task\":").unwrap();
        let recovered = put_back_crashed(home, None);
        assert_eq!(recovered.len(), 1);
        assert!(
            recovered[0].notes[0].contains("could not be put back"),
            "{:?}",
            recovered[0].notes
        );
        assert_eq!(recovered[0].notes[0].lines().count(), 1);
        assert!(home.join("recovery/t.json").exists());
    }
}
