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
    // `id parent major:minor root mountpoint …`: the mount shows the hierarchy from `root`.
    let (root, mount) = mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            if right.split_whitespace().next()? != "cgroup2" {
                return None;
            }
            let mut fields = left.split_whitespace().skip(3);
            Some((
                crate::cgroup::unescape(fields.next()?),
                crate::cgroup::unescape(fields.next()?),
            ))
        })
        .next()
        .ok_or("no cgroup v2 (unified) hierarchy is mounted")?;
    let path = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("this process has no cgroup in the unified hierarchy")?;
    let within = Path::new(path).strip_prefix(&root).map_err(|_| {
        format!(
            "this process's cgroup `{path}` is outside the unified hierarchy's mount at `{}`",
            mount.display()
        )
    })?;
    Ok(mount.join(within))
}

/// Remove the freezer leaves of supervisors that are gone (empty once their task died).
fn collect_stale(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        // Removed only when empty (`rmdir` refuses otherwise): one of another pid namespace's
        // supervisor, alive, keeps its task.
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
