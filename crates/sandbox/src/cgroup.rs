//! Task cgroups through whichever hierarchy the host offers for each controller.
//!
//! cgroup v2 is used for a controller when the unified hierarchy has it (`cgroup.controllers`
//! lists it and the parent can delegate it); otherwise the v1 hierarchy that mounts it.
//! Nothing is assumed: [`probe`] reads `/proc/self/mountinfo` and `/proc/self/cgroup`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, reason};

/// A controller remit can limit with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Controller {
    /// Memory.
    Memory,
    /// Process count.
    Pids,
    /// CPU bandwidth.
    Cpu,
}

impl Controller {
    fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Cpu => "cpu",
        }
    }
}

/// Where a controller can be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// In the unified hierarchy, under this directory (the supervisor's own cgroup).
    V2(PathBuf),
    /// In a v1 hierarchy, under this directory (the supervisor's own cgroup there).
    V1(PathBuf),
}

/// What the host offers for one controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerSupport {
    /// The controller.
    pub controller: Controller,
    /// Where it can be used, or why not.
    pub placement: Result<Placement, String>,
}

/// Read the host's cgroup layout.
pub fn probe() -> Vec<ControllerSupport> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    [Controller::Memory, Controller::Pids, Controller::Cpu]
        .into_iter()
        .map(|controller| ControllerSupport {
            controller,
            placement: place(controller, &mountinfo, &own, &|p: &Path| {
                fs::read_to_string(p).unwrap_or_default()
            }),
        })
        .collect()
}

fn place(
    controller: Controller,
    mountinfo: &str,
    own: &str,
    read: &dyn Fn(&Path) -> String,
) -> Result<Placement, String> {
    let name = controller.name();
    let v2_mounts = mounts(mountinfo, |fstype, _| fstype == "cgroup2");
    let v1_mounts = mounts(mountinfo, |fstype, options| {
        fstype == "cgroup" && options.split(',').any(|o| o == name)
    });
    let mut refused = None;
    if let Some((_, mount)) = v2_mounts.first() {
        let own_path = own
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .unwrap_or("/");
        // The controllers of the mounted hierarchy (one set for the whole hierarchy).
        let controllers = read(&mount.join("cgroup.controllers"));
        if controllers.split_whitespace().any(|c| c == name) {
            match within_any(&v2_mounts, own_path) {
                Ok(dir) => return Ok(Placement::V2(dir)),
                Err(e) => refused = Some(e),
            }
        }
    }
    if !v1_mounts.is_empty() {
        let own_path = own
            .lines()
            .find_map(|l| {
                let mut parts = l.splitn(3, ':');
                let _id = parts.next()?;
                let controllers = parts.next()?;
                let path = parts.next()?;
                controllers.split(',').any(|c| c == name).then_some(path)
            })
            .unwrap_or("/");
        return within_any(&v1_mounts, own_path).map(Placement::V1);
    }
    Err(match (refused, v2_mounts.first()) {
        (Some(e), _) => e,
        (None, Some((_, m))) => format!(
            "the unified hierarchy at `{}` has no `{name}` controller and no v1 hierarchy mounts it",
            m.display()
        ),
        (None, None) => format!("no cgroup hierarchy mounts the `{name}` controller"),
    })
}

/// The `(root, mount point)` of every mount in `mountinfo` whose filesystem type and super
/// options `select` accepts, in order. A mount shows its hierarchy from `root` (a container's
/// mount shows only its own part).
pub(crate) fn mounts(
    mountinfo: &str,
    select: impl Fn(&str, &str) -> bool,
) -> Vec<(PathBuf, PathBuf)> {
    mountinfo
        .lines()
        .filter_map(|line| {
            // `id parent major:minor root mountpoint options [optional…] - fstype source super`
            let (left, right) = line.split_once(" - ")?;
            let mut right_fields = right.split_whitespace();
            let fstype = right_fields.next()?;
            let super_options = right_fields.nth(1).unwrap_or_default();
            if !select(fstype, super_options) {
                return None;
            }
            let mut fields = left.split_whitespace().skip(3);
            Some((unescape(fields.next()?), unescape(fields.next()?)))
        })
        .collect()
}

/// Where this process's cgroup `own` (a path from the hierarchy's root) is, through the first
/// of `mounts` that shows it. `Err` (one line) when none does, or when the path climbs
/// (`..`: a cgroup outside this process's cgroup namespace): said, not guessed (a path outside
/// what is mounted would name another cgroup).
pub(crate) fn within_any(mounts: &[(PathBuf, PathBuf)], own: &str) -> Result<PathBuf, String> {
    let own_path = Path::new(own);
    if own_path
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(format!(
            "this process's cgroup `{own}` is outside its cgroup namespace"
        ));
    }
    mounts
        .iter()
        .find_map(|(root, mount)| Some(mount.join(own_path.strip_prefix(root).ok()?)))
        .ok_or_else(|| match mounts.first() {
            Some((_, mount)) => format!(
                "this process's cgroup `{own}` is outside the hierarchy's mount at `{}`",
                mount.display()
            ),
            None => "no cgroup hierarchy is mounted".into(),
        })
}

pub(crate) fn unescape(path: &str) -> PathBuf {
    PathBuf::from(
        path.replace("\\040", " ")
            .replace("\\011", "\t")
            .replace("\\012", "\n")
            .replace("\\134", "\\"),
    )
}

/// Limits to apply.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CgroupLimits {
    /// Bytes.
    pub memory: Option<u64>,
    /// Tasks.
    pub pids: Option<u32>,
    /// Cores.
    pub cpu: Option<f64>,
}

/// The cgroups of one task; removed on drop.
#[derive(Debug, Default)]
pub struct TaskCgroups {
    dirs: Vec<(Controller, PathBuf, bool)>,
}

impl TaskCgroups {
    /// Create the task's cgroups for every limit that is set. `required` says, per
    /// controller, whether a missing controller is an error (else it is skipped and
    /// reported in the second return value).
    pub fn create(
        name: &str,
        limits: CgroupLimits,
        support: &[ControllerSupport],
        required: impl Fn(Controller) -> bool,
    ) -> Result<(TaskCgroups, Vec<(Controller, String)>), Error> {
        let mut cgroups = TaskCgroups::default();
        let mut skipped = Vec::new();
        let wanted = [
            (Controller::Memory, limits.memory.is_some()),
            (Controller::Pids, limits.pids.is_some()),
            (Controller::Cpu, limits.cpu.is_some()),
        ];
        for (controller, want) in wanted {
            if !want {
                continue;
            }
            let placement = support
                .iter()
                .find(|s| s.controller == controller)
                .map(|s| s.placement.clone())
                .unwrap_or_else(|| Err("not probed".into()));
            let placement = match placement {
                Ok(p) => p,
                Err(why) if required(controller) => {
                    return Err(Error::Unavailable {
                        layer: layer_of(controller),
                        reason: why,
                    });
                }
                Err(why) => {
                    skipped.push((controller, why));
                    continue;
                }
            };
            let (base, v2) = match placement {
                Placement::V2(base) => (base, true),
                Placement::V1(base) => (base, false),
            };
            // v2 shares one directory for every controller.
            let dir = base.join("remit").join(name);
            if v2 {
                let parent = base.join("remit");
                create_dir(controller, &parent)?;
                enable_controller(controller, &base)?;
                enable_controller(controller, &parent)?;
            }
            if !cgroups.dirs.iter().any(|(_, d, _)| d == &dir) {
                create_dir(controller, &dir)?;
                cgroups.dirs.push((controller, dir.clone(), v2));
            }
            match (controller, v2) {
                (Controller::Memory, false) => {
                    let bytes = limits.memory.unwrap_or(u64::MAX).to_string();
                    write(controller, &dir.join("memory.limit_in_bytes"), &bytes)?;
                    // Swap counts too where swap accounting exists.
                    let memsw = dir.join("memory.memsw.limit_in_bytes");
                    if memsw.exists() {
                        write(controller, &memsw, &bytes)?;
                    }
                }
                (Controller::Memory, true) => {
                    let bytes = limits.memory.unwrap_or(u64::MAX).to_string();
                    write(controller, &dir.join("memory.max"), &bytes)?;
                    let swap = dir.join("memory.swap.max");
                    if swap.exists() {
                        write(controller, &swap, "0")?;
                    }
                }
                (Controller::Pids, _) => {
                    let max = limits.pids.unwrap_or(u32::MAX).to_string();
                    write(controller, &dir.join("pids.max"), &max)?;
                }
                (Controller::Cpu, false) => {
                    let period: u64 = 100_000;
                    let quota = (limits.cpu.unwrap_or(1.0) * period as f64)
                        .round()
                        .max(1000.0) as u64;
                    write(
                        controller,
                        &dir.join("cpu.cfs_period_us"),
                        &period.to_string(),
                    )?;
                    write(
                        controller,
                        &dir.join("cpu.cfs_quota_us"),
                        &quota.to_string(),
                    )?;
                }
                (Controller::Cpu, true) => {
                    let period: u64 = 100_000;
                    let quota = (limits.cpu.unwrap_or(1.0) * period as f64)
                        .round()
                        .max(1000.0) as u64;
                    write(
                        controller,
                        &dir.join("cpu.max"),
                        &format!("{quota} {period}"),
                    )?;
                }
            }
        }
        Ok((cgroups, skipped))
    }

    /// Move a process (and, later, its children) into every task cgroup.
    pub fn add(&self, pid: libc::pid_t) -> Result<(), Error> {
        for (controller, dir, _) in &self.dirs {
            write(*controller, &dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// The task's cgroup in the unified hierarchy, when a limit put it there (a process is in
    /// one cgroup of that hierarchy: this one, which also has `cgroup.freeze`).
    pub fn unified(&self) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(_, _, v2)| *v2)
            .map(|(_, dir, _)| dir.as_path())
    }

    /// Whether any cgroup is in use.
    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }

    /// Whether the memory controller recorded an out-of-memory kill.
    pub fn oom_killed(&self) -> bool {
        self.dirs.iter().any(|(controller, dir, v2)| {
            if *controller != Controller::Memory {
                return false;
            }
            let file = if *v2 {
                "memory.events"
            } else {
                "memory.oom_control"
            };
            fs::read_to_string(dir.join(file))
                .map(|text| {
                    text.lines().any(|l| {
                        let mut parts = l.split_whitespace();
                        matches!(parts.next(), Some("oom_kill"))
                            && parts
                                .next()
                                .and_then(|n| n.parse::<u64>().ok())
                                .unwrap_or(0)
                                > 0
                    })
                })
                .unwrap_or(false)
        })
    }

    /// Kill every process in the task's cgroups (v2 `cgroup.kill`; v1 has no such file and
    /// relies on the pid namespace).
    pub fn kill_all(&self) {
        for (_, dir, v2) in &self.dirs {
            if *v2 {
                let _ = fs::write(dir.join("cgroup.kill"), "1");
            }
        }
    }

    fn remove(&mut self) {
        for (_, dir, _) in self.dirs.drain(..).rev() {
            // Processes leave a cgroup asynchronously after they are reaped; retry briefly.
            for attempt in 0..50 {
                match fs::remove_dir(&dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(_) if attempt < 49 => {
                        std::thread::sleep(std::time::Duration::from_millis(2))
                    }
                    Err(_) => {}
                }
            }
        }
    }
}

impl Drop for TaskCgroups {
    fn drop(&mut self) {
        self.remove();
    }
}

fn layer_of(controller: Controller) -> crate::Layer {
    match controller {
        Controller::Memory => crate::Layer::CgroupMemory,
        Controller::Pids => crate::Layer::CgroupPids,
        Controller::Cpu => crate::Layer::CgroupCpu,
    }
}

fn create_dir(controller: Controller, dir: &Path) -> Result<(), Error> {
    match fs::create_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) => Err(Error::Cgroup {
            controller: controller.name().into(),
            path: dir.display().to_string(),
            reason: reason(&e),
        }),
    }
}

fn enable_controller(controller: Controller, dir: &Path) -> Result<(), Error> {
    let file = dir.join("cgroup.subtree_control");
    let current = fs::read_to_string(&file).unwrap_or_default();
    if current.split_whitespace().any(|c| c == controller.name()) {
        return Ok(());
    }
    write(controller, &file, &format!("+{}", controller.name()))
}

fn write(controller: Controller, file: &Path, value: &str) -> Result<(), Error> {
    fs::write(file, value).map_err(|e| Error::Cgroup {
        controller: controller.name().into(),
        path: file.display().to_string(),
        reason: reason(&e),
    })
}

/// Remove leftover task cgroups whose supervisor is gone (named `<pid>-<task>`).
pub fn collect_stale(support: &[ControllerSupport]) {
    for s in support {
        let Ok(placement) = &s.placement else {
            continue;
        };
        let base = match placement {
            Placement::V1(b) | Placement::V2(b) => b.join("remit"),
        };
        let Ok(entries) = fs::read_dir(&base) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.split('-').next())
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = fs::remove_dir(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
30 1 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw
31 30 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
32 30 0:28 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
33 30 0:29 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
";

    fn no_v2(_: &Path) -> String {
        String::new()
    }

    #[test]
    fn v2_is_preferred_when_it_has_the_controller() {
        let own = "5:memory:/user.slice\n0::/tasks\n";
        let read = |p: &Path| {
            assert_eq!(p, Path::new("/sys/fs/cgroup/unified/cgroup.controllers"));
            "cpu memory pids".to_owned()
        };
        assert_eq!(
            place(Controller::Memory, MOUNTINFO, own, &read),
            Ok(Placement::V2(PathBuf::from("/sys/fs/cgroup/unified/tasks")))
        );
    }

    #[test]
    fn v1_controllers_are_found_when_v2_lacks_them() {
        let own = "5:memory:/user.slice\n4:pids:/\n0::/\n";
        assert_eq!(
            place(Controller::Memory, MOUNTINFO, own, &no_v2),
            Ok(Placement::V1(PathBuf::from(
                "/sys/fs/cgroup/memory/user.slice"
            )))
        );
        assert_eq!(
            place(Controller::Pids, MOUNTINFO, own, &no_v2),
            Ok(Placement::V1(PathBuf::from("/sys/fs/cgroup/pids")))
        );
        let cpu = place(Controller::Cpu, MOUNTINFO, own, &no_v2).unwrap_err();
        assert!(cpu.contains("no `cpu` controller"), "{cpu}");
    }

    /// A container's mounts show only its part of each hierarchy (`root` is not `/`), while
    /// `/proc/self/cgroup` names the full path: the part below the mount's root is where this
    /// process is. A cgroup outside what is mounted is refused, not guessed at.
    #[test]
    fn a_mount_of_part_of_a_hierarchy_is_placed_within_it() {
        const PART: &str = "\
31 30 0:27 /docker/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
33 30 0:29 /docker/abc /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
";
        let own = "5:memory:/docker/abc/task\n0::/docker/abc/task\n";
        assert_eq!(
            place(Controller::Memory, PART, own, &no_v2),
            Ok(Placement::V1(PathBuf::from("/sys/fs/cgroup/memory/task")))
        );
        let v2 = |_: &Path| "memory pids".to_owned();
        assert_eq!(
            place(Controller::Memory, PART, own, &v2),
            Ok(Placement::V2(PathBuf::from("/sys/fs/cgroup/unified/task")))
        );
        let elsewhere = "5:memory:/system.slice\n0::/system.slice\n";
        for read in [&no_v2 as &dyn Fn(&Path) -> String, &v2] {
            let refused = place(Controller::Memory, PART, elsewhere, read).unwrap_err();
            assert!(refused.contains("outside"), "{refused}");
        }
        // Moved out of its cgroup namespace's root: refused, not joined into a path that climbs.
        let climbed = "5:memory:/../other\n0::/../other\n";
        let refused = place(Controller::Memory, PART, climbed, &v2).unwrap_err();
        assert!(
            refused.contains("outside its cgroup namespace"),
            "{refused}"
        );
        // Two mounts of a hierarchy: the one that shows this process's cgroup.
        const TWO: &str = "\
33 30 0:29 /docker/other /mnt/other rw - cgroup2 cgroup2 rw
34 30 0:29 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw
";
        assert_eq!(
            place(Controller::Memory, TWO, own, &v2),
            Ok(Placement::V2(PathBuf::from(
                "/sys/fs/cgroup/docker/abc/task"
            )))
        );
    }
}
