//! What this host can enforce, layer by layer, found by trying each one.

use std::path::Path;

use crate::cgroup::{self, Controller, Placement};
use crate::error::Layer;
use crate::sys::{self, Cloned};

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerReport {
    /// The layer.
    pub layer: Layer,
    /// Whether the host enforces it.
    pub available: bool,
    /// How it was found, or why not.
    pub detail: String,
}

/// Try a clone with `flags` in a child that exits at once.
fn try_clone(flags: libc::c_int) -> Result<(), String> {
    match sys::clone_process(flags) {
        Ok(Cloned::Child) => sys::exit_now(0),
        Ok(Cloned::Parent { pid, .. }) => match sys::waitpid(pid, false) {
            Ok(Some((_, sys::Exit::Code(0)))) => Ok(()),
            other => Err(format!("probe child ended with {other:?}")),
        },
        Err(e) => Err(crate::error::reason(&e)),
    }
}

/// Whether an idmapped mount of `dir` can be made (a root-only concern).
fn try_idmap(dir: &Path) -> Result<(), String> {
    let (euid, _) = sys::ids();
    if euid != 0 {
        return Ok(());
    }
    let (ours, theirs) = sys::seqpacket_pair().map_err(|e| crate::error::reason(&e))?;
    let (pid, _pidfd) = match sys::clone_process(libc::CLONE_NEWUSER) {
        Ok(Cloned::Child) => {
            drop(ours);
            // Wait until the parent is done with our namespace.
            let mut buf = [0u8; 1];
            let mut fds = Vec::new();
            let _ =
                sys::recv_with_fds(std::os::fd::AsFd::as_fd(&theirs), &mut buf, &mut fds, false);
            sys::exit_now(0)
        }
        Ok(Cloned::Parent { pid, pidfd }) => (pid, pidfd),
        Err(e) => return Err(crate::error::reason(&e)),
    };
    drop(theirs);
    let result = (|| {
        std::fs::write(format!("/proc/{pid}/uid_map"), "0 1879048192 1\n")
            .map_err(|e| crate::error::reason(&e))?;
        std::fs::write(format!("/proc/{pid}/setgroups"), "deny")
            .map_err(|e| crate::error::reason(&e))?;
        std::fs::write(format!("/proc/{pid}/gid_map"), "0 1879048192 1\n")
            .map_err(|e| crate::error::reason(&e))?;
        let userns = std::fs::File::open(format!("/proc/{pid}/ns/user"))
            .map_err(|e| crate::error::reason(&e))?;
        let path = crate::sandbox::c_path(dir).ok_or("path with a NUL byte")?;
        let tree =
            sys::open_tree(&path, sys::OPEN_TREE_CLONE).map_err(|e| crate::error::reason(&e))?;
        sys::mount_setattr(
            std::os::fd::AsFd::as_fd(&tree),
            false,
            sys::MOUNT_ATTR_IDMAP,
            0,
            Some(std::os::fd::AsFd::as_fd(&userns)),
        )
        .map_err(|e| format!("{} on `{}`", crate::error::reason(&e), dir.display()))
    })();
    let _ = sys::send_with_fds(std::os::fd::AsFd::as_fd(&ours), b"x", &[]);
    drop(ours);
    let _ = sys::waitpid(pid, false);
    result
}

/// Probe every layer. `workspace` is where idmapped mounts are tried.
///
/// Must run single-threaded (it forks probes).
pub fn probe(workspace: &Path) -> Vec<LayerReport> {
    let mut out = Vec::new();
    let mut push = |layer: Layer, result: Result<String, String>| {
        let (available, detail) = match result {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        out.push(LayerReport {
            layer,
            available,
            detail,
        });
    };
    let user = try_clone(libc::CLONE_NEWUSER);
    push(
        Layer::UserNamespace,
        user.clone().map(|()| {
            if sys::ids().0 == 0 {
                format!(
                    "tasks map to unprivileged host uid {}",
                    crate::sandbox::TASK_HOST_ID
                )
            } else {
                "tasks map to the invoking user's uid".into()
            }
        }),
    );
    for (layer, flag, name) in [
        (Layer::MountNamespace, libc::CLONE_NEWNS, "mount"),
        (Layer::PidNamespace, libc::CLONE_NEWPID, "pid"),
        (Layer::NetNamespace, libc::CLONE_NEWNET, "network"),
        (Layer::IpcNamespace, libc::CLONE_NEWIPC, "ipc"),
        (Layer::UtsNamespace, libc::CLONE_NEWUTS, "uts"),
        (Layer::CgroupNamespace, libc::CLONE_NEWCGROUP, "cgroup"),
    ] {
        push(
            layer,
            try_clone(libc::CLONE_NEWUSER | flag)
                .map(|()| format!("private {name} namespace per task"))
                .map_err(|e| format!("cannot create a {name} namespace: {e}")),
        );
    }
    push(
        Layer::IdmappedMount,
        if sys::ids().0 != 0 {
            Ok("not needed: remit runs as the workspace's owner".into())
        } else {
            try_idmap(workspace).map(|()| {
                format!(
                    "`{}` can be idmapped to the task's user",
                    workspace.display()
                )
            })
        },
    );
    let abi = sys::landlock_abi();
    push(
        Layer::Landlock,
        if abi >= 1 {
            Ok(format!("ABI {abi}"))
        } else {
            Err(
                "the kernel does not offer Landlock (not built in, or not in the `lsm=` list)"
                    .into(),
            )
        },
    );
    push(
        Layer::LandlockNet,
        if abi >= 4 {
            Ok("TCP bind and connect rules".into())
        } else {
            Err(format!("Landlock ABI {abi} < 4"))
        },
    );
    push(
        Layer::LandlockScope,
        if abi >= 6 {
            Ok("signals and abstract Unix sockets scoped to the task".into())
        } else {
            Err(format!("Landlock ABI {abi} < 6"))
        },
    );
    push(
        Layer::Seccomp,
        if crate::seccomp::SUPPORTED && sys::seccomp_supported() {
            Ok(format!(
                "{} rules over syscalls up to {}",
                crate::seccomp::rules().len(),
                crate::seccomp::max_known_syscall()
            ))
        } else {
            Err("no seccomp filter for this kernel or architecture".into())
        },
    );
    push(
        Layer::SeccompNotify,
        if sys::seccomp_notify_supported() {
            Ok("every execve is observed and decided by the supervisor".into())
        } else {
            Err("the kernel has no seccomp user notification".into())
        },
    );
    push(
        Layer::NoNewPrivs,
        Ok("set before any program starts".into()),
    );
    push(
        Layer::Capabilities,
        Ok("bounding, ambient, permitted and effective sets emptied".into()),
    );
    push(
        Layer::Rlimits,
        Ok("processes, open files, file size, core dumps".into()),
    );
    for support in cgroup::probe() {
        let layer = match support.controller {
            Controller::Memory => Layer::CgroupMemory,
            Controller::Pids => Layer::CgroupPids,
            Controller::Cpu => Layer::CgroupCpu,
        };
        push(
            layer,
            support.placement.and_then(|placement| {
                let (version, dir) = match &placement {
                    Placement::V1(d) => ("v1", d),
                    Placement::V2(d) => ("v2", d),
                };
                if writable(dir) {
                    Ok(format!("cgroup {version} at `{}`", dir.display()))
                } else {
                    Err(format!(
                        "cgroup {version} at `{}` is not writable by this user",
                        dir.display()
                    ))
                }
            }),
        );
    }
    out
}

fn writable(dir: &Path) -> bool {
    match std::fs::metadata(dir) {
        Ok(meta) => {
            use std::os::unix::fs::MetadataExt;
            let (euid, _) = sys::ids();
            euid == 0 || (meta.uid() == euid && meta.mode() & 0o200 != 0)
        }
        Err(_) => false,
    }
}
