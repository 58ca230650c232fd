//! Performing typed actions: the host command a remit names for an action runs outside the
//! sandbox, in the workspace, with the supervisor's environment. The task reaches that
//! capability only through the gate.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use remit_types::effect::Effect;
use remit_types::remit::{ActionGrant, CommandRule};
use serde::Serialize;
use tokio::io::AsyncReadExt;

use crate::gate::Authorized;

/// Longest a host command runs when its action names no `timeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Most output kept from a host command, per stream.
const MAX_OUTPUT: usize = 64 * 1024;

/// What a performed action produced.
#[derive(Debug, Clone, Serialize)]
pub struct ActionResult {
    /// Exit code (`None` when killed).
    pub exit_code: Option<i32>,
    /// Standard output (at most 64 KiB).
    pub stdout: String,
    /// Standard error (at most 64 KiB).
    pub stderr: String,
    /// Whether output was cut.
    pub truncated: bool,
}

/// Why an argument value is refused before anything runs.
pub fn check_argument(name: &str, value: &str) -> Result<(), String> {
    if value.starts_with('-') {
        return Err(format!(
            "argument `{name}` may not start with `-`: it would be read as an option of the host command"
        ));
    }
    if value.chars().any(|c| c.is_control()) {
        return Err(format!("argument `{name}` contains control characters"));
    }
    if value.len() > 4096 {
        return Err(format!("argument `{name}` is longer than 4096 bytes"));
    }
    Ok(())
}

/// The host command with `{name}` replaced by argument values (each word stays one argv
/// entry: no shell ever sees it).
///
/// Each placeholder is replaced once, from the template only: a value that itself contains
/// `{other}` stays as it was given, so the command runs with exactly the values the policy
/// and the approver saw.
pub fn command_line(run: &CommandRule, args: &BTreeMap<String, String>) -> Vec<String> {
    run.0
        .iter()
        .map(|word| {
            let mut out = String::with_capacity(word.len());
            let mut rest = word.as_str();
            while let Some(open) = rest.find('{') {
                out.push_str(&rest[..open]);
                let after = &rest[open + 1..];
                let value = after
                    .find('}')
                    .and_then(|close| Some((args.get(&after[..close])?, close)));
                match value {
                    Some((value, close)) => {
                        out.push_str(value);
                        rest = &after[close + 1..];
                    }
                    None => {
                        out.push('{');
                        rest = after;
                    }
                }
            }
            out.push_str(rest);
            out
        })
        .collect()
}

/// Most entries of a workspace an action can be bound to.
const MAX_BOUND_ENTRIES: usize = 1_000_000;
/// Most bytes of a workspace an action can be bound to.
const MAX_BOUND_BYTES: u64 = 8 << 30;

/// `sha256:<hex>` of everything in `workspace`, as the host command of an action would find
/// it: every entry's path, kind and permission bits, a regular file's contents and
/// modification time, a link's target. The walk goes by descriptor, never through a link (a
/// directory the task swaps for a link to `/` is not followed), opens no FIFO or device, and
/// refuses a workspace with another file system mounted in it (not digested, so not bound). An
/// approval of the action is bound to it (it is part of the effect), and the command runs
/// only when the workspace, with the task frozen, still has it. `Err` (one line) when the
/// workspace cannot be read whole, or holds more than a million entries or 8 GiB.
pub fn workspace_digest(workspace: &Path) -> Result<String, String> {
    use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, openat, statat};
    use sha2::{Digest, Sha256};
    use std::io::Read;
    use std::os::unix::ffi::OsStrExt;

    let unreadable = |path: &Path, e: &dyn std::fmt::Display| {
        format!("cannot read `{}` in the workspace: {e}", path.display())
    };
    let open_dir = |at: &std::os::fd::OwnedFd, name: &std::ffi::CStr| {
        openat(
            at,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
    };
    let names_of =
        |fd: &std::os::fd::OwnedFd, path: &Path| -> Result<Vec<std::ffi::CString>, String> {
            let mut dir = Dir::read_from(fd).map_err(|e| unreadable(path, &e))?;
            let mut names = Vec::new();
            for entry in &mut dir {
                let entry = entry.map_err(|e| unreadable(path, &e))?;
                let name = entry.file_name();
                if name.to_bytes() != b"." && name.to_bytes() != b".." {
                    names.push(name.to_owned());
                }
            }
            names.sort();
            Ok(names)
        };
    let root = rustix::fs::open(
        workspace,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| unreadable(Path::new("."), &e))?;
    let root_dev = rustix::fs::fstat(&root)
        .map_err(|e| unreadable(Path::new("."), &e))?
        .st_dev;

    let mut hasher = Sha256::new();
    let mut entries = 0usize;
    let mut bytes = 0u64;
    let mut buf = vec![0u8; 256 << 10];
    // Depth first, names in order: one open descriptor per level.
    let root_names = names_of(&root, Path::new("."))?;
    let mut stack = vec![(root, std::path::PathBuf::new(), root_names.into_iter())];
    while let Some((fd, dir_path, names)) = stack.last_mut() {
        let Some(name) = names.next() else {
            stack.pop();
            continue;
        };
        entries += 1;
        if entries > MAX_BOUND_ENTRIES {
            return Err(format!(
                "the workspace holds more than {MAX_BOUND_ENTRIES} entries: an action's approval cannot be bound to it"
            ));
        }
        let path = dir_path.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
        let stat =
            statat(&*fd, &name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| unreadable(&path, &e))?;
        let kind = FileType::from_raw_mode(stat.st_mode);
        if stat.st_dev != root_dev {
            // What is mounted there is not digested: refused rather than bound half-way.
            return Err(format!(
                "`{}` in the workspace is another file system: an action's approval cannot be bound to a workspace with mounts in it (the remit can set `bind_workspace = false` for the action)",
                path.display()
            ));
        }
        let tag: u8 = match kind {
            FileType::Directory => b'd',
            FileType::RegularFile => b'f',
            FileType::Symlink => b'l',
            FileType::Fifo => b'p',
            FileType::Socket => b's',
            _ => b'c',
        };
        hasher.update([tag]);
        hasher.update((path.as_os_str().len() as u64).to_le_bytes());
        hasher.update(path.as_os_str().as_bytes());
        hasher.update((stat.st_mode & 0o7777).to_le_bytes());
        match tag {
            b'd' => {
                let sub = open_dir(fd, &name).map_err(|e| unreadable(&path, &e))?;
                let opened = rustix::fs::fstat(&sub).map_err(|e| unreadable(&path, &e))?;
                if (opened.st_dev, opened.st_ino) != (stat.st_dev, stat.st_ino) {
                    return Err(format!(
                        "`{}` in the workspace changed while it was read",
                        path.display()
                    ));
                }
                let names = names_of(&sub, &path)?;
                stack.push((sub, path, names.into_iter()));
            }
            b'f' => {
                let file = openat(
                    &*fd,
                    &name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| unreadable(&path, &e))?;
                let opened = rustix::fs::fstat(&file).map_err(|e| unreadable(&path, &e))?;
                if FileType::from_raw_mode(opened.st_mode) != FileType::RegularFile
                    || (opened.st_dev, opened.st_ino) != (stat.st_dev, stat.st_ino)
                {
                    return Err(format!(
                        "`{}` in the workspace changed while it was read",
                        path.display()
                    ));
                }
                hasher.update(stat.st_mtime.to_le_bytes());
                hasher.update(stat.st_mtime_nsec.to_le_bytes());
                let mut file = std::fs::File::from(file);
                let mut content = Sha256::new();
                let mut length = 0u64;
                loop {
                    let n = file.read(&mut buf).map_err(|e| unreadable(&path, &e))?;
                    if n == 0 {
                        break;
                    }
                    length += n as u64;
                    bytes += n as u64;
                    if bytes > MAX_BOUND_BYTES {
                        return Err(
                            "the workspace holds more than 8 GiB: an action's approval cannot be bound to it"
                                .into(),
                        );
                    }
                    content.update(&buf[..n]);
                }
                hasher.update(length.to_le_bytes());
                hasher.update(content.finalize());
            }
            b'l' => {
                let target = rustix::fs::readlinkat(&*fd, &name, Vec::new())
                    .map_err(|e| unreadable(&path, &e))?;
                hasher.update((target.as_bytes().len() as u64).to_le_bytes());
                hasher.update(target.as_bytes());
            }
            _ => hasher.update(stat.st_rdev.to_le_bytes()),
        }
    }
    Ok(format!("sha256:{}", hex(&hasher.finalize())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// [`workspace_digest`] off the runtime's threads.
pub async fn workspace_digest_of(workspace: &Path) -> Result<String, String> {
    let workspace = workspace.to_path_buf();
    tokio::task::spawn_blocking(move || workspace_digest(&workspace))
        .await
        .map_err(|e| format!("the workspace could not be read: {e}"))?
}

/// An action bound to the workspace, as it is asked for: the task frozen, and the digest of
/// the workspace it cannot change while frozen. Keep it ([`Held::until_decided`]) while a
/// human decides, and hand it to [`run`], so the freeze lasts from the digest to the host
/// command: what the approver can look at in the workspace is what the digest covers, and
/// what the command then finds.
///
/// It holds every slot of the task's host work too ([`crate::run::Pauser::acting_alone`]),
/// always taken before the freeze: no other action's command writes to the workspace
/// meanwhile, and no two holders can each wait for what the other has.
#[derive(Debug)]
pub struct Held {
    alone: tokio::sync::OwnedSemaphorePermit,
    paused: crate::run::Paused,
    /// The workspace's digest, taken while frozen.
    pub digest: String,
}

impl Held {
    /// Freeze the task (waiting for any other freeze, and other actions' host work, to be
    /// over) and digest the workspace.
    pub async fn take(pauser: &crate::run::Pauser, workspace: &Path) -> Result<Held, String> {
        pauser.ready()?;
        let alone = pauser.acting_alone().await?;
        let paused = pauser.pause().await.map_err(|e| {
            format!("the task could not be frozen while the action's workspace is digested: {e}")
        })?;
        let digest = workspace_digest_of(workspace).await?;
        Ok(Held {
            alone,
            paused,
            digest,
        })
    }

    /// Hold the freeze while `gate` decides `effect` (see [`Asking`]).
    pub fn asking(self, gate: &std::sync::Arc<crate::gate::Gate>, effect: &Effect) -> Asking {
        Asking {
            digest: effect.digest(&gate.principal().task),
            gate: std::sync::Arc::clone(gate),
            held: Some(self),
        }
    }

    /// Keep the task frozen until the approval `id` is no longer pending (granted, denied,
    /// expired) or the task's gate closes.
    pub fn until_decided(mut self, gate: std::sync::Arc<crate::gate::Gate>, id: String) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        self.paused.for_review(&id);
        runtime.spawn(async move {
            let decided = async {
                // In steps: the approval's own expiry ends it.
                while gate
                    .wait_approval(&id, Duration::from_secs(3600))
                    .await
                    .is_some_and(|v| v.state == crate::gate::ApprovalState::Pending)
                {
                }
            };
            tokio::select! {
                () = decided => {}
                () = gate.wait_closed() => {}
            }
            drop(self);
        });
    }
}

/// A bound action's freeze while the gate decides it. Asked how it was decided
/// ([`Asking::decided`]), it keeps the freeze for the command, hands it to
/// [`Held::until_decided`] when a human must decide, or lets the task go on. Dropped before
/// that (the call was cancelled while the request waited for a human), it still hands the
/// freeze to a pending approval of the same effect: a caller that gives up cannot thaw the
/// task while its reviewer looks.
#[derive(Debug)]
pub struct Asking {
    held: Option<Held>,
    gate: std::sync::Arc<crate::gate::Gate>,
    digest: String,
}

impl Asking {
    /// The freeze to run the command under, when `outcome` authorizes it.
    pub fn decided(mut self, outcome: &crate::gate::Outcome) -> Option<Held> {
        let held = self.held.take()?;
        match outcome {
            crate::gate::Outcome::Authorized(_) => Some(held),
            crate::gate::Outcome::Pending { approval } => {
                held.until_decided(std::sync::Arc::clone(&self.gate), approval.clone());
                None
            }
            crate::gate::Outcome::Denied { .. } => None,
        }
    }
}

impl Drop for Asking {
    fn drop(&mut self) {
        let Some(held) = self.held.take() else {
            return;
        };
        let pending =
            self.gate.approvals().into_iter().find(|a| {
                a.digest == self.digest && a.state == crate::gate::ApprovalState::Pending
            });
        if let Some(approval) = pending {
            held.until_decided(std::sync::Arc::clone(&self.gate), approval.id);
        }
    }
}

/// Run an authorized action's host command in `workspace`, killing it after `timeout`. When
/// the action is bound to the workspace's contents (its effect's `workspace`), every process
/// of the task is stopped first and stays stopped until the command has ended, and the
/// command runs only if the workspace still has the contents the action was asked (and
/// approved) for. When the command cannot be started at all, the authorization is marked as
/// never started, so reporting the error with [`crate::gate::Gate::failed`] gives its quota
/// slot back.
pub async fn run(
    authorized: &Authorized,
    grant: &ActionGrant,
    args: &BTreeMap<String, String>,
    (workspace, git_dirs): (&Path, Option<&crate::changes::GitDirs>),
    pauser: &crate::run::Pauser,
    held: Option<Held>,
) -> Result<ActionResult, String> {
    let Some(run) = grant.run.as_ref() else {
        authorized.not_started();
        return Err("the action has no host command".into());
    };
    let timeout = grant.timeout.map_or(DEFAULT_TIMEOUT, |t| t.0);
    let bound = match authorized.effect() {
        remit_types::effect::Effect::Action { workspace, .. } => workspace.clone(),
        _ => String::new(),
    };
    // Host work of a task's actions, a few at a time; a command bound to the workspace alone
    // (no other action's command writes to it meanwhile), its slots taken before the freeze.
    let (acting, held) = match held {
        Some(Held {
            alone,
            paused,
            digest: _,
        }) if !bound.is_empty() => (alone, Some(paused)),
        _ if bound.is_empty() => (
            pauser
                .acting()
                .await
                .inspect_err(|_| authorized.not_started())?,
            None,
        ),
        _ => (
            pauser
                .acting_alone()
                .await
                .inspect_err(|_| authorized.not_started())?,
            None,
        ),
    };
    let mut acting = Some(acting);
    // The grant says whether the command is bound, not the effect: one decided without its
    // digest is not run unfrozen.
    if grant.binds_workspace() && bound.is_empty() {
        authorized.not_started();
        return Err(
            "the action is bound to the workspace, and was decided without its digest; nothing was run"
                .into(),
        );
    }
    let mut paused = if bound.is_empty() {
        None
    } else {
        // Frozen since it was asked for, or frozen now (the workspace is checked either way).
        let paused = match held {
            Some(paused) => paused,
            None => pauser.pause().await.map_err(|e| {
                authorized.not_started();
                format!("the task could not be frozen while the action uses its workspace: {e}")
            })?,
        };
        let now = workspace_digest_of(workspace)
            .await
            .inspect_err(|_| authorized.not_started())?;
        if now != bound {
            authorized.not_started();
            return Err(format!(
                "the workspace changed after the action was asked for (it was {bound}, it is {now}); nothing was run: ask again, for what the workspace holds now"
            ));
        }
        Some(paused)
    };
    let argv = command_line(run, args);
    let Some((program, rest)) = argv.split_first() else {
        authorized.not_started();
        return Err("the action's `run` is empty".into());
    };
    // Its own process group and, where the host has a writable unified hierarchy, its own
    // cgroup: whatever it leaves running is killed with it, before the task goes on (a
    // background child would otherwise keep working on the workspace, and one that left the
    // group with `setsid` would live on with the host's authority).
    // Off the runtime's threads: making it may first empty what dead supervisors left (a
    // wait of up to 5 s).
    let cgroup = tokio::task::spawn_blocking(remit_sandbox::freezer::CommandCgroup::create)
        .await
        .unwrap_or_else(|e| Err(format!("making its cgroup failed: {e}")));
    let mut note = None;
    if let Err(why) = &cgroup {
        // A bound command runs only where what it starts can be ended before the task
        // thaws (the task's freezer is in the same hierarchy: this should not happen).
        if !bound.is_empty() {
            authorized.not_started();
            return Err(format!(
                "the command cannot be given a cgroup of its own ({why}); nothing was run"
            ));
        }
        note = Some(format!(
            "the command ran without a cgroup of its own ({why}): only its process group was killed after it"
        ));
    }
    let mut command = tokio::process::Command::new(program);
    command
        .args(rest)
        .current_dir(workspace)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // Its git uses the directories found before the task, whatever pointers the task wrote.
    if let Some(dirs) = git_dirs {
        command
            .env("GIT_DIR", &dirs.git_dir)
            .env("GIT_COMMON_DIR", &dirs.common_dir)
            .env("GIT_WORK_TREE", workspace);
    }
    if let Ok(cgroup) = &cgroup
        && let Err(why) = cgroup.attach(command.as_std_mut())
    {
        authorized.not_started();
        return Err(format!("cannot start `{program}`: {why}"));
    }
    let mut child = command.spawn().map_err(|e| {
        // Nothing ran: a failure reported now gives the action's quota slot back.
        authorized.not_started();
        format!(
            "cannot start `{program}`: {}",
            remit_types::remit::io_reason(&e)
        )
    })?;
    let group = child.id().and_then(|p| i32::try_from(p).ok());
    // Dropped (the call cancelled) or done, the command's group and cgroup go before the task
    // thaws and its slots are given back: the guard holds both until then.
    let group_guard = KillGroup {
        group: std::sync::Mutex::new(group),
        cgroup: std::sync::Mutex::new(cgroup.ok()),
        after: std::sync::Mutex::new(Some((paused.take(), acting.take()))),
    };
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let read = |stream: Option<tokio::process::ChildStdout>| async move {
        let mut buf = Vec::new();
        if let Some(mut s) = stream {
            let _ = (&mut s)
                .take(MAX_OUTPUT as u64 + 1)
                .read_to_end(&mut buf)
                .await;
            // Drain the rest so the command never blocks on a full pipe.
            let mut sink = [0u8; 8192];
            while let Ok(n) = s.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        }
        buf
    };
    let read_err = |stream: Option<tokio::process::ChildStderr>| async move {
        let mut buf = Vec::new();
        if let Some(mut s) = stream {
            let _ = (&mut s)
                .take(MAX_OUTPUT as u64 + 1)
                .read_to_end(&mut buf)
                .await;
            let mut sink = [0u8; 8192];
            while let Ok(n) = s.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        }
        buf
    };
    let work = async {
        // Once the command has exited, what it left running goes too (it holds the output
        // pipes open, and would work on the workspace after the task goes on).
        let exited = async {
            let status = child.wait().await;
            group_guard.kill();
            status
        };
        let (out, err, status) = tokio::join!(read(stdout.take()), read_err(stderr.take()), exited);
        (out, err, status)
    };
    let ended = tokio::time::timeout(timeout, work).await;
    // Everything it started is gone before the task thaws.
    // What it started and could not be ended runs on beside the task: the action is not
    // reported as done, whatever the command itself answered.
    if let Some(left) = group_guard.end().await {
        return Err(format!("`{program}` ran, but {left}"));
    }
    match ended {
        Ok((mut out, mut err, status)) => {
            let truncated = out.len() > MAX_OUTPUT || err.len() > MAX_OUTPUT;
            out.truncate(MAX_OUTPUT);
            err.truncate(MAX_OUTPUT);
            let status = status.map_err(|e| format!("waiting for `{program}`: {e}"))?;
            let mut stderr = String::from_utf8_lossy(&err).into_owned();
            if let Some(note) = note {
                stderr.push_str(&format!("\nremit: {note}\n"));
            }
            Ok(ActionResult {
                exit_code: status.code(),
                stdout: String::from_utf8_lossy(&out).into_owned(),
                stderr,
                truncated,
            })
        }
        Err(_) => Err(format!(
            "`{program}` ran longer than {} and was killed",
            humantime_short(timeout)
        )),
    }
}

/// How long the processes a host command started may take to die once killed.
const KILL_LIMIT: Duration = Duration::from_secs(5);

/// Kills a host command's process group, once, and everything in its cgroup: when asked, or
/// when dropped. What must wait until they are gone (the task's freeze, the action slots)
/// is given back only afterwards, on every path.
struct KillGroup {
    group: std::sync::Mutex<Option<i32>>,
    cgroup: std::sync::Mutex<Option<remit_sandbox::freezer::CommandCgroup>>,
    after: std::sync::Mutex<Option<After>>,
}

/// The task's freeze and the action's slots, released once the command's processes are gone.
type After = (
    Option<crate::run::Paused>,
    Option<tokio::sync::OwnedSemaphorePermit>,
);

fn unpoisoned<T>(lock: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    lock.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl KillGroup {
    /// Send the kill, without waiting.
    fn kill(&self) {
        if let Some(group) = unpoisoned(&self.group).take() {
            remit_sandbox::host::kill_group(group);
        }
        if let Some(cgroup) = unpoisoned(&self.cgroup).as_ref() {
            cgroup.signal();
        }
    }

    /// Kill, wait (off the runtime's threads) until nothing the command started is left,
    /// then thaw the task; what could not be killed, in one line.
    async fn end(&self) -> Option<String> {
        self.kill();
        let cgroup = unpoisoned(&self.cgroup).take();
        let after = unpoisoned(&self.after).take();
        match cgroup {
            // The freeze and the slots go with the wait: given back once it is over, even
            // when this call is cancelled meanwhile.
            Some(mut cgroup) => tokio::task::spawn_blocking(move || {
                let left = cgroup.kill(KILL_LIMIT).err();
                drop(after);
                left
            })
            .await
            .unwrap_or_else(|e| Some(format!("waiting for the command's processes to die: {e}"))),
            None => {
                drop(after);
                None
            }
        }
    }
}

impl Drop for KillGroup {
    fn drop(&mut self) {
        self.kill();
        let cgroup = unpoisoned(&self.cgroup).take();
        let after = unpoisoned(&self.after).take();
        // Cancelled: the killed cgroup is waited for and removed off the runtime's threads,
        // and only then is the task thawed and the slots given back.
        let wait = move || {
            drop(cgroup);
            drop(after);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(wait)),
            Err(_) => wait(),
        }
    }
}

fn humantime_short(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The digest a host command's approval is bound to changes with anything the command
    /// could read differently (contents, a name, permission bits, a link's target), and does
    /// not follow links out of the workspace or open a FIFO.
    #[test]
    fn the_workspace_digest_covers_what_a_command_would_find() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("ws");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(ws.join("sub")).unwrap();
        std::fs::write(&outside, "outside").unwrap();
        std::fs::write(ws.join("sub/a"), "one").unwrap();
        std::os::unix::fs::symlink(&outside, ws.join("link")).unwrap();
        assert!(
            std::process::Command::new("mkfifo")
                .arg(ws.join("fifo"))
                .status()
                .unwrap()
                .success()
        );
        let first = workspace_digest(&ws).unwrap();
        assert!(first.starts_with("sha256:") && first.len() == 71, "{first}");
        // The same workspace, the same digest; what lies behind a link is not part of it.
        std::fs::write(&outside, "changed outside").unwrap();
        assert_eq!(workspace_digest(&ws).unwrap(), first);
        let changes: [&dyn Fn(); 5] = [
            &|| {
                assert!(
                    std::process::Command::new("touch")
                        .args(["-d", "2001-01-01"])
                        .arg(ws.join("sub/a"))
                        .status()
                        .unwrap()
                        .success()
                )
            },
            &|| std::fs::write(ws.join("sub/a"), "two").unwrap(),
            &|| std::fs::rename(ws.join("sub/a"), ws.join("sub/b")).unwrap(),
            &|| {
                std::fs::set_permissions(ws.join("sub/b"), std::fs::Permissions::from_mode(0o755))
                    .unwrap()
            },
            &|| {
                std::fs::remove_file(ws.join("link")).unwrap();
                std::os::unix::fs::symlink("elsewhere", ws.join("link")).unwrap();
            },
        ];
        let mut seen = vec![first];
        for change in changes {
            change();
            let now = workspace_digest(&ws).unwrap();
            assert!(!seen.contains(&now), "a change left the digest as it was");
            seen.push(now);
        }
    }

    /// What is mounted inside the workspace is not digested, so such a workspace is not bound
    /// at all (root only: the test mounts a tmpfs over a directory it owns).
    #[test]
    fn a_workspace_with_a_mount_in_it_is_not_bound() {
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("ws");
        std::fs::create_dir_all(ws.join("mnt")).unwrap();
        std::fs::write(ws.join("file"), "x").unwrap();
        assert!(workspace_digest(&ws).is_ok());
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "none"])
            .arg(ws.join("mnt"))
            .status()
            .unwrap();
        if !mounted.success() {
            return;
        }
        let refused = workspace_digest(&ws);
        let _ = std::process::Command::new("umount")
            .arg(ws.join("mnt"))
            .status();
        let why = refused.unwrap_err();
        assert!(
            why.contains("another file system") && why.contains("mnt"),
            "{why}"
        );
    }

    #[test]
    fn placeholders_are_replaced_once_from_the_template() {
        let run = CommandRule(vec![
            "deploy".into(),
            "{env}".into(),
            "{ref}".into(),
            "--tag={env}-{ref}".into(),
            "{unknown}".into(),
            "{".into(),
        ]);
        let args = |env: &str, git_ref: &str| {
            BTreeMap::from([
                ("env".to_owned(), env.to_owned()),
                ("ref".to_owned(), git_ref.to_owned()),
            ])
        };
        // A value naming another placeholder is passed as given: the policy saw `pr{ref}`,
        // and `prod` must not be what runs.
        assert_eq!(
            command_line(&run, &args("pr{ref}", "od")),
            [
                "deploy",
                "pr{ref}",
                "od",
                "--tag=pr{ref}-od",
                "{unknown}",
                "{"
            ]
        );
        // The harmless twin.
        assert_eq!(
            command_line(&run, &args("staging", "v1")),
            [
                "deploy",
                "staging",
                "v1",
                "--tag=staging-v1",
                "{unknown}",
                "{"
            ]
        );
    }
}
