//! A task's freezer: a leaf cgroup of the unified (v2) hierarchy its init is born into
//! (`clone3` with `CLONE_INTO_CGROUP`, which costs no migration), so that every process of
//! the task can be frozen at once while a host command works on its workspace.
//!
//! The cgroup freezer, not signals: a stopped process can be woken again by the kernel (a
//! timer or a file lease that sends `SIGCONT`), a thread of a stopped process can still be
//! finishing a write, and a program spawned meanwhile would run. A frozen cgroup holds every
//! thread of every process in it, including ones forked while it freezes, until it is thawed;
//! `cgroup.events` says when all of them are frozen. Fatal signals still kill frozen tasks.

use std::fs;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Prefix of the freezer cgroups' names (`remit-<supervisor pid>-<task>`).
const PREFIX: &str = "remit-";

/// The leaf cgroup of one task; removed when dropped (once the task is gone).
#[derive(Debug)]
pub(crate) struct Freezer {
    dir: PathBuf,
    fd: Option<OwnedFd>,
    /// In the forked init: nothing to remove there.
    child: bool,
}

impl Freezer {
    /// Create `remit-<supervisor pid>-<task>` under the supervisor's own cgroup of the
    /// unified hierarchy. `Err` (one line) when the host has no writable one.
    pub(crate) fn create(task: &str) -> Result<Freezer, String> {
        let base = own_v2_cgroup()?;
        // Leaves of supervisors killed outright.
        collect_stale(&base);
        let dir = base.join(format!("{PREFIX}{}-{task}", std::process::id()));
        fs::create_dir(&dir).map_err(|e| {
            format!(
                "cannot create the task's freezer cgroup `{}`: {e}",
                dir.display()
            )
        })?;
        if !dir.join("cgroup.freeze").exists() {
            let _ = fs::remove_dir(&dir);
            return Err(format!(
                "`{}` has no `cgroup.freeze` (a kernel before 5.2)",
                dir.display()
            ));
        }
        let fd = fs::File::open(&dir)
            .map(OwnedFd::from)
            .map_err(|e| format!("cannot open `{}`: {e}", dir.display()))?;
        Ok(Freezer {
            dir,
            fd: Some(fd),
            child: false,
        })
    }

    /// The cgroup's directory descriptor (for `CLONE_INTO_CGROUP`); `None` in the forked init.
    pub(crate) fn fd(&self) -> Option<&OwnedFd> {
        self.fd.as_ref()
    }

    /// In the forked init: close the descriptor, and never remove the cgroup from there.
    pub(crate) fn forget_in_child(&mut self) {
        self.fd = None;
        self.child = true;
    }

    /// Its directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Freezer {
    fn drop(&mut self) {
        if self.child {
            return;
        }
        let _ = fs::write(self.dir.join("cgroup.freeze"), "0");
        // Empty once the task's init is reaped; otherwise left for the next start.
        let _ = fs::remove_dir(&self.dir);
    }
}

/// A leaf cgroup that holds one host command and everything it starts, for the command's
/// lifetime: `remit-<supervisor pid>-command-<n>-<owner>` beside the tasks' freezers, where
/// `<owner>` names the supervisor beyond its pid (its pid namespace and start time), so that
/// the next supervisor to start can tell, for certain, that the one which made it is dead,
/// and kill what is left in it (see [`collect_stale`]).
///
/// A process group is not enough to end what a command started: a child that calls `setsid`
/// (or double-forks into a new session) leaves the group, and lives on with the host's
/// authority after the action is over. A process stays in its cgroup unless it writes
/// itself into another (which a command running hostile code as the supervisor's user can
/// do: this ends what a command starts, not what it arranges to escape); `cgroup.kill`
/// kills every process in it and below it at once, including ones forked meanwhile, and
/// `cgroup.events` says when they are all gone.
#[derive(Debug)]
pub struct CommandCgroup {
    dir: PathBuf,
    procs: OwnedFd,
    killed: bool,
}

impl CommandCgroup {
    /// Create the next command's cgroup. `Err` (one line) when the host has no writable
    /// unified hierarchy for this process.
    pub fn create() -> Result<CommandCgroup, String> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let base = own_v2_cgroup()?;
        collect_stale(&base);
        // A name left by an earlier supervisor with this pid (in a container, always the same
        // one) is skipped.
        let dir = loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = base.join(format!(
                "{PREFIX}{}-command-{n}-{}",
                std::process::id(),
                own_stamp()
            ));
            match fs::create_dir(&dir) {
                Ok(()) => break dir,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1 << 20 => {
                    remove_tree(&dir);
                }
                Err(e) => {
                    return Err(format!(
                        "cannot create the command's cgroup `{}`: {e}",
                        dir.display()
                    ));
                }
            }
        };
        let procs = fs::OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))
            .map(OwnedFd::from)
            .map_err(|e| {
                let _ = fs::remove_dir(&dir);
                format!("cannot open `{}/cgroup.procs`: {e}", dir.display())
            })?;
        Ok(CommandCgroup {
            dir,
            procs,
            killed: false,
        })
    }

    /// Make `command`, once spawned, move itself into this cgroup between `fork` and `exec`;
    /// a child that cannot move in fails to start, rather than running outside it. The
    /// cgroup must outlive the spawn.
    pub fn attach(&self, command: &mut std::process::Command) -> Result<(), String> {
        let procs = self
            .procs
            .try_clone()
            .map_err(|e| format!("cannot duplicate a descriptor: {e}"))?;
        crate::sys::enter_cgroup_before_exec(command, procs);
        Ok(())
    }

    /// Kill every process in the cgroup and wait until it is empty, at most `limit`. `Err`
    /// (one line) when something is still in it afterwards.
    pub fn kill(&mut self, limit: Duration) -> Result<(), String> {
        self.killed = true;
        kill_all(&self.dir, limit)
    }

    /// Send every process in it `SIGKILL`, without waiting (see [`signal_all`]).
    pub fn signal(&self) -> bool {
        signal_all(&self.dir)
    }
}

/// Kill every process in the cgroup at `dir` (and below it) and wait until it is empty, at
/// most `limit`. `Err` (one line) when something is still in it afterwards.
fn kill_all(dir: &Path, limit: Duration) -> Result<(), String> {
    let begun = Instant::now();
    let atomic = signal_all(dir);
    loop {
        let events = match fs::read_to_string(dir.join("cgroup.events")) {
            Ok(events) => events,
            // Removed meanwhile (by another supervisor collecting it): nothing left in it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(_) => String::new(),
        };
        if events.lines().any(|l| l.trim() == "populated 0") {
            return Ok(());
        }
        if !atomic {
            kill_members(dir);
        }
        if begun.elapsed() > limit {
            return Err(format!(
                "what the command started was not all gone within {} s (`{}`)",
                limit.as_secs(),
                dir.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Send every process in the cgroup at `dir` `SIGKILL`, without waiting. `cgroup.kill` since
/// Linux 5.14 (`true`); before it, the cgroup is frozen, so none can fork meanwhile, and
/// [`kill_all`] kills each process by pid until it is empty (`false`).
fn signal_all(dir: &Path) -> bool {
    if fs::write(dir.join("cgroup.kill"), "1").is_ok() {
        return true;
    }
    let _ = fs::write(dir.join("cgroup.freeze"), "1");
    kill_members(dir);
    false
}

/// `SIGKILL` to every process in the cgroup at `dir` and in the cgroups below it.
fn kill_members(dir: &Path) {
    let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        if pid > 0 {
            let _ = crate::sys::kill(pid, libc::SIGKILL);
        }
    }
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            kill_members(&entry.path());
        }
    }
}

/// Remove the cgroup at `dir` and the (empty) cgroups a command made below it, deepest first.
fn remove_tree(dir: &Path) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path());
        }
    }
    let _ = fs::remove_dir(dir);
}

impl Drop for CommandCgroup {
    fn drop(&mut self) {
        if !self.killed {
            let _ = self.kill(Duration::from_secs(5));
        }
        // Left for the next start when something would not die.
        remove_tree(&self.dir);
    }
}

/// Freeze the cgroup at `dir` and wait until every task in it is frozen, at most `limit`;
/// `Err` (one line) when it is not, and then it is thawed again.
pub fn freeze(dir: &Path, limit: Duration) -> Result<(), String> {
    fs::write(dir.join("cgroup.freeze"), "1")
        .map_err(|e| format!("cannot freeze the task: {e}"))?;
    let begun = Instant::now();
    loop {
        let events = fs::read_to_string(dir.join("cgroup.events")).unwrap_or_default();
        // An empty cgroup is "frozen" at once: the task must be in it.
        if events.lines().any(|l| l.trim() == "populated 0") {
            thaw(dir);
            return Err("the task's processes are not in its freezer cgroup".into());
        }
        if events.lines().any(|l| l.trim() == "frozen 1") {
            return Ok(());
        }
        if begun.elapsed() > limit {
            thaw(dir);
            return Err(format!(
                "the task's processes did not all freeze within {} s",
                limit.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// Let the task at `dir` run again.
pub fn thaw(dir: &Path) {
    let _ = fs::write(dir.join("cgroup.freeze"), "0");
}

/// This process's cgroup in the unified hierarchy, from `/proc/self/mountinfo` and
/// `/proc/self/cgroup`.
fn own_v2_cgroup() -> Result<PathBuf, String> {
    v2_cgroup_of(
        &fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
        &fs::read_to_string("/proc/self/cgroup").unwrap_or_default(),
    )
}

/// [`own_v2_cgroup`] from the texts of `mountinfo` and `cgroup`.
fn v2_cgroup_of(mountinfo: &str, own: &str) -> Result<PathBuf, String> {
    let mounts = crate::cgroup::mounts(mountinfo, |fstype, _| fstype == "cgroup2");
    if mounts.is_empty() {
        return Err("no cgroup v2 (unified) hierarchy is mounted".into());
    }
    let path = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("this process has no cgroup in the unified hierarchy")?;
    crate::cgroup::within_any(&mounts, path)
}

/// What names this supervisor beyond its pid: `<pid namespace inode>.<time namespace
/// inode>.<start time in clock ticks since boot>` (`/proc/<pid>/stat`'s 22nd field, which the
/// kernel shifts by the reader's time namespace). A pid is reused; the triple is not, within
/// one boot. `0.0.0` when `/proc` is not this pid namespace's own (`NSpid` in
/// `/proc/self/status` lists more than this pid) or cannot be read: then no supervisor can
/// judge this one's liveness, nor this one another's.
fn own_stamp() -> &'static str {
    static STAMP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    STAMP.get_or_init(|| {
        let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
        let own_proc = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .map(|pids| pids.split_whitespace().collect::<Vec<_>>())
            .is_some_and(|pids| pids == [std::process::id().to_string().as_str()]);
        match (own_proc, namespaces(), start_time(std::process::id())) {
            (true, Some((pid_ns, time_ns)), Owner::Started(start)) => {
                format!("{pid_ns}.{time_ns}.{start}")
            }
            _ => UNKNOWN_STAMP.into(),
        }
    })
}

const UNKNOWN_STAMP: &str = "0.0.0";

/// The inodes of this process's pid and time namespaces.
fn namespaces() -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let inode = |name: &str| fs::metadata(format!("/proc/self/ns/{name}")).map(|m| m.ino());
    Some((inode("pid").ok()?, inode("time").ok()?))
}

/// What `/proc` says of a pid of this pid namespace.
#[derive(Debug, PartialEq)]
enum Owner {
    /// A process started at this time (clock ticks since boot).
    Started(u64),
    /// No such process.
    Gone,
    /// Could not be told (no descriptor left, a `/proc` that hides other users' processes,
    /// a text that does not parse): never taken for dead.
    Unknown,
}

fn start_time(pid: u32) -> Owner {
    let stat = match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH)) => {
            return Owner::Gone;
        }
        Err(_) => return Owner::Unknown,
    };
    // After the command name, which may hold anything, including ") ".
    let Some(close) = stat.rfind(')') else {
        return Owner::Unknown;
    };
    match stat[close + 1..].split_whitespace().nth(19).map(str::parse) {
        Some(Ok(start)) => Owner::Started(start),
        _ => Owner::Unknown,
    }
}

/// A host command's cgroup name, after the prefix: `<pid>-command-<n>-<stamp>`. Its owner's pid
/// and stamp; `None` for any other name (a task's freezer). The stamp is `None` in a name
/// without one.
fn command_owner(rest: &str) -> Option<(u32, Option<&str>)> {
    let mut parts = rest.splitn(4, '-');
    let pid = parts.next()?.parse::<u32>().ok()?;
    if parts.next()? != "command" {
        return None;
    }
    parts.next()?.parse::<u64>().ok()?;
    Some((pid, parts.next()))
}

/// Whether a host command's cgroup whose owner is `pid` with `stamp` belongs to a supervisor
/// that is certainly dead: one of this pid and time namespace (whose `/proc` this process
/// can trust) whose pid is gone or now names a process that started at another time. One of
/// another namespace, a name without a stamp, or a pid `/proc` cannot tell about, may be a
/// live supervisor's: `false`.
fn dead_commands_owner(pid: u32, stamp: Option<&str>) -> bool {
    let Some(stamp) = stamp else {
        return false;
    };
    let own = own_stamp();
    let (Some((own_ns, _)), Some((ns, start))) = (own.rsplit_once('.'), stamp.rsplit_once('.'))
    else {
        return false;
    };
    let Ok(start) = start.parse::<u64>() else {
        return false;
    };
    if own == UNKNOWN_STAMP || ns != own_ns || start == 0 {
        return false;
    }
    match start_time(pid) {
        Owner::Gone => true,
        Owner::Started(now) => now != start,
        Owner::Unknown => false,
    }
}

/// Kill what the host commands of supervisors killed outright left running, and remove their
/// cgroups, beside this process's own (see [`collect_stale`]). Nothing where the host has no
/// unified hierarchy. Task starts call it when they find tasks whose supervisor died.
pub fn collect_dead() {
    // Once is enough at a start: a task's freezer, made earlier, already collected.
    if COLLECTED.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    if let Ok(base) = own_v2_cgroup() {
        collect_stale(&base);
    }
}

/// Whether this process has collected already.
static COLLECTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The longest one collection waits for what it killed to be gone, over all the cgroups it
/// empties (what is not gone by then is removed by a later one).
const COLLECT_WAIT: Duration = Duration::from_secs(1);

/// Remove the leaves of supervisors that are gone.
///
/// A task's freezer is removed only when empty (`rmdir` refuses otherwise): its task dies with
/// its supervisor, and one of another pid namespace's supervisor, alive, keeps its task (so
/// nothing in them is killed from here). A host command's cgroup is another matter: what a
/// command started does not die with the supervisor (it runs on the host, possibly in its
/// own session), and could go on acting with the host's authority after the supervisor was
/// killed outright. When its owner is certainly dead ([`dead_commands_owner`]), everything
/// left in it is killed (where this process may: `cgroup.kill` writable) before it is
/// removed; otherwise it is left alone, even empty (its owner may be about to use it).
fn collect_stale(base: &Path) {
    COLLECTED.store(true, std::sync::atomic::Ordering::Relaxed);
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    let deadline = Instant::now() + COLLECT_WAIT;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else {
            continue;
        };
        if let Some((pid, stamp)) = command_owner(rest) {
            let dir = entry.path();
            if dead_commands_owner(pid, stamp) && crate::sys::writable(&dir.join("cgroup.kill")) {
                let left = deadline.saturating_duration_since(Instant::now());
                if kill_all(&dir, left).is_ok() {
                    remove_tree(&dir);
                }
            }
            continue;
        }
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            remove_tree(&entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything a command started is killed with its cgroup, including a child in a new
    /// session; the cgroup is gone afterwards. Skipped where no cgroup can be created.
    #[test]
    fn a_commands_cgroup_kills_what_left_its_session() {
        let Ok(mut cgroup) = CommandCgroup::create() else {
            return;
        };
        let dir = cgroup.dir.clone();
        let scratch = tempfile::tempdir().unwrap();
        let pids = scratch.path().join("pids");
        let mut command = std::process::Command::new("sh");
        command.arg("-c").arg(format!(
            "setsid sh -c 'echo $$ >> {p}; exec sleep 60' & echo $$ >> {p}; exec sleep 60",
            p = pids.display()
        ));
        cgroup.attach(&mut command).unwrap();
        let mut child = command.spawn().unwrap();
        let begun = Instant::now();
        let listed = loop {
            let text = fs::read_to_string(&pids).unwrap_or_default();
            let listed: Vec<i32> = text.lines().filter_map(|l| l.parse().ok()).collect();
            if listed.len() == 2 {
                break listed;
            }
            assert!(begun.elapsed() < Duration::from_secs(10), "{text}");
            std::thread::sleep(Duration::from_millis(10));
        };
        // Both are in the cgroup, though one left the session.
        let members = fs::read_to_string(dir.join("cgroup.procs")).unwrap();
        for pid in &listed {
            assert!(members.lines().any(|l| l == pid.to_string()), "{members}");
        }
        cgroup.kill(Duration::from_secs(5)).unwrap();
        child.wait().unwrap();
        for pid in &listed {
            let state = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Gone, or a zombie waiting for its parent (this test, or init).
            assert!(
                state.is_empty() || state.contains(") Z "),
                "{pid} lives: {state}"
            );
        }
        drop(cgroup);
        assert!(!dir.exists());
    }

    /// What a killed supervisor's host command left running is killed by the next
    /// supervisor to start, and its cgroup removed; a live supervisor's (here: this test's
    /// own stamp) and one of another pid namespace's are left alone. Skipped where no cgroup
    /// can be created.
    #[test]
    fn a_dead_supervisors_command_cgroup_is_emptied_by_the_next_start() {
        let (Ok(base), Ok(_probe)) = (own_v2_cgroup(), CommandCgroup::create()) else {
            return;
        };
        let stamp = own_stamp();
        assert_ne!(stamp, UNKNOWN_STAMP);
        let parts: Vec<u64> = stamp.split('.').map(|p| p.parse().unwrap()).collect();
        let [pid_ns, time_ns, start] = parts[..] else {
            panic!("{stamp}")
        };
        let me = std::process::id();
        let unique = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            % 1_000_000
            + 900_000_000;
        let name = |n: u128, stamp: String| base.join(format!("{PREFIX}{me}-command-{n}-{stamp}"));
        // Same namespaces, this pid, another start time: the pid's supervisor is dead.
        let dead = name(unique, format!("{pid_ns}.{time_ns}.{}", start + 1));
        // This very process: alive.
        let alive = name(unique + 1, stamp.to_owned());
        // Another pid namespace, or another time namespace (whose start times read otherwise):
        // cannot be judged from here.
        let foreign = name(
            unique + 2,
            format!("{}.{time_ns}.{}", pid_ns + 1, start + 1),
        );
        let other_time = name(
            unique + 3,
            format!("{pid_ns}.{}.{}", time_ns + 1, start + 1),
        );
        let mut children = Vec::new();
        for dir in [&dead, &alive, &foreign, &other_time] {
            fs::create_dir(dir).unwrap();
            let child = std::process::Command::new("sleep")
                .arg("60")
                .spawn()
                .unwrap();
            fs::write(dir.join("cgroup.procs"), child.id().to_string()).unwrap();
            children.push(child);
        }
        collect_stale(&base);
        let status = children[0].wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
        assert!(!dead.exists());
        for (child, dir) in children[1..]
            .iter_mut()
            .zip([&alive, &foreign, &other_time])
        {
            let running = child.try_wait().unwrap().is_none();
            kill_all(dir, Duration::from_secs(5)).unwrap();
            let _ = child.wait();
            remove_tree(dir);
            assert!(running, "{} was emptied", dir.display());
        }
    }

    /// Only a command cgroup's name gives an owner; a pid `/proc` cannot tell about is never
    /// taken for dead, nor a name without a stamp or with a malformed one.
    #[test]
    fn a_commands_owner_is_read_from_its_name_and_dead_only_when_certain() {
        assert_eq!(
            command_owner("12-command-3-4.5.6"),
            Some((12, Some("4.5.6")))
        );
        assert_eq!(command_owner("12-command-3"), Some((12, None)));
        assert_eq!(command_owner("12-01M99D15C9C5CX0ZXRCD9X7R4H"), None);
        assert_eq!(command_owner("12-command-x-4.5.6"), None);
        assert_eq!(command_owner("x-command-3-4.5.6"), None);
        let stamp = own_stamp();
        let (namespaces, _) = stamp.rsplit_once('.').unwrap();
        let gone = format!("{namespaces}.7");
        // A pid no process has (beyond `pid_max`).
        assert!(dead_commands_owner(u32::MAX, Some(&gone)));
        assert!(!dead_commands_owner(u32::MAX, None));
        assert!(!dead_commands_owner(u32::MAX, Some("garbage")));
        assert!(!dead_commands_owner(
            u32::MAX,
            Some(&format!("{namespaces}.0"))
        ));
        assert!(!dead_commands_owner(std::process::id(), Some(stamp)));
        assert_eq!(start_time(u32::MAX), Owner::Gone);
    }

    #[test]
    fn the_own_cgroup_is_found_where_the_hierarchy_is_mounted() {
        let own = "1:cpu:/\n0::/user.slice/session-1.scope\n";
        let whole = "33 30 0:29 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            v2_cgroup_of(whole, own).unwrap(),
            Path::new("/sys/fs/cgroup/unified/user.slice/session-1.scope")
        );
        // A mount of part of the hierarchy (a container's), with an escaped space.
        let part = "33 30 0:29 /user.slice /sys/fs/my\\040cg rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            v2_cgroup_of(part, own).unwrap(),
            Path::new("/sys/fs/my cg/session-1.scope")
        );
        // Outside what is mounted, or nothing mounted: said, not guessed.
        let other = "33 30 0:29 /system.slice /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert!(v2_cgroup_of(other, own).unwrap_err().contains("outside"));
        assert!(v2_cgroup_of("", own).unwrap_err().contains("no cgroup v2"));
    }
}
