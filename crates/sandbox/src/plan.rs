//! The mount plan: a [`SandboxSpec`] turned into an ordered list of steps the task's init
//! carries out. Building the plan is pure (testable without namespaces); carrying it out is
//! in `init`.
//!
//! The tree inside a task:
//! - `/` a small tmpfs, read-only once built;
//! - `/usr` (and `/bin`, `/lib*`, `/sbin` as the host has them) read-only, nosuid, nodev;
//! - `/etc` read-only, noexec, with generated `passwd`, `group` and `hosts`, and the host's
//!   secret-bearing files masked;
//! - the workspace read-write at its own path (idmapped to the task's uid when the
//!   supervisor is root), with `.git/config` and `.git/hooks` read-only;
//! - the home directory and `/tmp` as fresh private tmpfs, `/dev` with the harmless devices,
//!   a private `devpts` and `/dev/shm`, a fresh `/proc`;
//! - extra read-only and read-write paths from the remit at their own paths;
//! - masks (an empty unreadable file or directory) over hidden paths and forbidden programs.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::spec::SandboxSpec;
use crate::sys;

/// A host tree to clone before the init drops to the task's uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Source {
    /// Absolute host path.
    pub(crate) path: CString,
    /// Mount attributes to set on the clone.
    pub(crate) attrs: u64,
    /// Cloned by the supervisor with an idmap (the workspace and read-write paths when the
    /// supervisor is root); the init receives the descriptor.
    pub(crate) idmapped: bool,
    /// Short description for error messages.
    pub(crate) label: String,
    /// Cloned without following a final symbolic link: a path mounted read-only to protect
    /// it must be that path, never whatever a link put there (by a task running in the same
    /// workspace at the same moment) points at.
    pub(crate) nofollow: bool,
}

/// One step inside the new root (paths relative to it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// `mkdir -p` (the last component with `mode`).
    Dir { path: CString, mode: u32 },
    /// Create an empty file (and parents) as a mount point, with `mode`.
    Touch { path: CString, mode: u32 },
    /// A file with generated contents.
    File {
        path: CString,
        contents: Vec<u8>,
        mode: u32,
    },
    /// A symbolic link.
    Symlink { target: CString, path: CString },
    /// Attach source number `source` at `path`.
    Attach { source: usize, path: CString },
    /// A fresh tmpfs.
    Tmpfs {
        path: CString,
        data: CString,
        noexec: bool,
    },
    /// A fresh procfs for the task's pid namespace.
    Proc { path: CString },
    /// A private devpts instance.
    Devpts { path: CString },
    /// Bind something already in the new root over `path`, read-only (masks and generated
    /// files), executable only when `exec`.
    BindReadOnly {
        from: CString,
        path: CString,
        exec: bool,
    },
}

/// The whole plan.
#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    pub(crate) sources: Vec<Source>,
    pub(crate) steps: Vec<Step>,
    /// Landlock: paths (inside) with read and execute.
    pub(crate) exec_dirs: Vec<CString>,
    /// Landlock: paths (inside) with full write access.
    pub(crate) write_dirs: Vec<CString>,
    /// Landlock: device files that may be read, written and ioctl'd.
    pub(crate) devices: Vec<CString>,
    /// Landlock: when set, only these files are executable.
    pub(crate) exec_files: Option<Vec<CString>>,
}

/// Where the empty mask file and directory live inside the new root.
const MASK_FILE: &str = ".remit/masked-file";
const MASK_DIR: &str = ".remit/masked-dir";

/// Host paths that are masked wherever they become visible, whatever the remit says.
pub fn always_hidden(home: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = [
        "/etc/shadow",
        "/etc/shadow-",
        "/etc/gshadow",
        "/etc/gshadow-",
        "/etc/sudoers",
        "/etc/sudoers.d",
        "/etc/ssl/private",
        "/etc/krb5.keytab",
        "/etc/ssh/ssh_host_rsa_key",
        "/etc/ssh/ssh_host_ecdsa_key",
        "/etc/ssh/ssh_host_ed25519_key",
        "/etc/ssh/ssh_host_dsa_key",
        "/var/run/docker.sock",
        "/run/docker.sock",
        "/run/containerd/containerd.sock",
        "/run/podman/podman.sock",
        "/var/lib/docker",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    for rel in [
        ".ssh",
        ".aws",
        ".azure",
        ".gnupg",
        ".kube",
        ".docker/config.json",
        ".config/gh",
        ".config/gcloud",
        ".config/hub",
        ".netrc",
        ".git-credentials",
        ".npmrc",
        ".pypirc",
        ".cargo/credentials",
        ".cargo/credentials.toml",
        ".vault-token",
        ".terraform.d/credentials.tfrc.json",
    ] {
        paths.push(home.join(rel));
    }
    paths
}

fn cstring(path: &Path) -> CString {
    // INVARIANT: paths come from the filesystem or validated remit text, which cannot hold
    // NUL bytes; a NUL would truncate nothing because CString::new rejects it, so fall back
    // to an impossible path that makes the step fail loudly.
    CString::new(path.as_os_str().as_bytes()).unwrap_or_else(|_| c"/\u{1}invalid-path".to_owned())
}

/// `/a/b` → `a/b` (the new root is the current directory while the plan runs).
fn relative(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

fn depth(path: &Path) -> usize {
    relative(path).components().count()
}

/// The host's top-level system entries and what to do with each: `/bin` may be a directory
/// or a symlink to `usr/bin` (merged /usr).
fn system_entries() -> Vec<(PathBuf, Option<PathBuf>)> {
    ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"]
        .iter()
        .filter_map(|p| {
            let path = PathBuf::from(p);
            let meta = std::fs::symlink_metadata(&path).ok()?;
            if meta.file_type().is_symlink() {
                Some((path.clone(), std::fs::read_link(&path).ok()))
            } else if meta.is_dir() {
                Some((path, None))
            } else {
                None
            }
        })
        .collect()
}

/// Generated `/etc/passwd`, `/etc/group` and `/etc/hosts`.
fn generated_files(spec: &SandboxSpec, uid: u32, gid: u32) -> [(&'static str, Vec<u8>); 3] {
    let user = &spec.user;
    let passwd = format!(
        "root:x:0:0:root:/root:/usr/sbin/nologin\n{name}:x:{uid}:{gid}:remit task {task}:{home}:{shell}\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        name = user.name,
        task = spec.task,
        home = user.home.display(),
        shell = user.shell,
    );
    let group = format!(
        "root:x:0:\n{name}:x:{gid}:\nnogroup:x:65534:\n",
        name = user.name
    );
    let hosts = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{}\n",
        spec.hostname
    );
    [
        ("etc/passwd", passwd.into_bytes()),
        ("etc/group", group.into_bytes()),
        ("etc/hosts", hosts.into_bytes()),
    ]
}

/// Build the plan for `spec`. `idmap` says whether writable host trees are cloned by the
/// supervisor with an idmap; `agent` is the task's uid and gid as its processes see them,
/// `owner` the same user as the init sees it while it builds the tree.
pub(crate) fn build(spec: &SandboxSpec, idmap: bool, agent: (u32, u32), owner: (u32, u32)) -> Plan {
    let mut plan = Plan::default();
    // Mounts that have to happen in path order: (depth, order, steps).
    let mut mounts: Vec<(usize, usize, Vec<Step>)> = Vec::new();
    let add_source = |plan: &mut Plan, path: &Path, attrs: u64, idmapped: bool, label: &str| {
        plan.sources.push(Source {
            path: cstring(path),
            attrs,
            idmapped,
            label: label.to_owned(),
            nofollow: false,
        });
        plan.sources.len() - 1
    };
    let ro = sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV;
    let rw = sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV;
    let writable_exec = if spec.exec_writable {
        0
    } else {
        sys::MOUNT_ATTR_NOEXEC
    };

    // Skeleton directories in the root tmpfs.
    plan.steps.push(Step::Dir {
        path: c".remit/masked-dir".to_owned(),
        mode: 0,
    });
    plan.steps.push(Step::Touch {
        path: c".remit/masked-file".to_owned(),
        mode: 0,
    });
    for dir in ["usr", "etc", "proc", "tmp", "dev", "run", "var", "mnt"] {
        plan.steps.push(Step::Dir {
            path: cstring(Path::new(dir)),
            mode: 0o755,
        });
    }
    plan.steps.push(Step::Symlink {
        target: c"/tmp".to_owned(),
        path: c"var/tmp".to_owned(),
    });

    // System trees.
    let usr = add_source(&mut plan, Path::new("/usr"), ro, false, "/usr");
    mounts.push((
        1,
        0,
        vec![Step::Attach {
            source: usr,
            path: c"usr".to_owned(),
        }],
    ));
    plan.exec_dirs.push(c"/usr".to_owned());
    for (path, link) in system_entries() {
        let rel = relative(&path);
        match link {
            Some(target) => plan.steps.push(Step::Symlink {
                target: cstring(&target),
                path: cstring(&rel),
            }),
            None => {
                let source = add_source(&mut plan, &path, ro, false, &path.display().to_string());
                mounts.push((
                    1,
                    0,
                    vec![
                        Step::Dir {
                            path: cstring(&rel),
                            mode: 0o755,
                        },
                        Step::Attach {
                            source,
                            path: cstring(&rel),
                        },
                    ],
                ));
                plan.exec_dirs.push(cstring(&path));
            }
        }
    }
    let etc = add_source(
        &mut plan,
        Path::new("/etc"),
        ro | sys::MOUNT_ATTR_NOEXEC,
        false,
        "/etc",
    );
    let mut etc_steps = vec![Step::Attach {
        source: etc,
        path: c"etc".to_owned(),
    }];
    for (path, contents) in generated_files(spec, agent.0, agent.1) {
        let hidden_copy = format!(".remit/{}", path.trim_start_matches("etc/"));
        etc_steps.push(Step::File {
            path: cstring(Path::new(&hidden_copy)),
            contents,
            mode: 0o644,
        });
        if Path::new("/").join(path).exists() {
            etc_steps.push(Step::BindReadOnly {
                from: cstring(Path::new(&hidden_copy)),
                path: cstring(Path::new(path)),
                exec: false,
            });
        }
    }
    mounts.push((1, 1, etc_steps));

    // Fresh filesystems, each held to the `tmp` size: their pages belong to no process, so
    // without a memory limit a full one would press on the host's memory.
    let tmp_size = spec
        .limits
        .tmp_size
        .map(|s| format!(",size={s}"))
        .unwrap_or_default();
    mounts.push((
        1,
        0,
        vec![Step::Tmpfs {
            path: c"tmp".to_owned(),
            data: cstring(Path::new(&format!("mode=1777{tmp_size}"))),
            noexec: !spec.exec_writable,
        }],
    ));
    plan.write_dirs.push(c"/tmp".to_owned());
    let home = relative(&spec.user.home);
    if !home.as_os_str().is_empty() && !spec.user.home.starts_with(&spec.workspace) {
        mounts.push((
            depth(&spec.user.home),
            0,
            vec![
                Step::Dir {
                    path: cstring(&home),
                    mode: 0o755,
                },
                Step::Tmpfs {
                    path: cstring(&home),
                    data: cstring(Path::new(&format!(
                        "mode=0700,uid={},gid={}{tmp_size}",
                        owner.0, owner.1
                    ))),
                    noexec: !spec.exec_writable,
                },
            ],
        ));
        plan.write_dirs.push(cstring(&spec.user.home));
    }
    let mut dev = vec![Step::Tmpfs {
        path: c"dev".to_owned(),
        data: c"mode=0755,size=64k".to_owned(),
        noexec: true,
    }];
    for name in ["null", "zero", "full", "random", "urandom", "tty"] {
        let host = PathBuf::from("/dev").join(name);
        if !host.exists() {
            continue;
        }
        let source = add_source(
            &mut plan,
            &host,
            sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NOEXEC,
            false,
            &host.display().to_string(),
        );
        let rel = relative(&host);
        dev.push(Step::Touch {
            path: cstring(&rel),
            mode: 0o644,
        });
        dev.push(Step::Attach {
            source,
            path: cstring(&rel),
        });
        plan.devices.push(cstring(&host));
    }
    dev.push(Step::Dir {
        path: c"dev/pts".to_owned(),
        mode: 0o755,
    });
    dev.push(Step::Devpts {
        path: c"dev/pts".to_owned(),
    });
    dev.push(Step::Symlink {
        target: c"pts/ptmx".to_owned(),
        path: c"dev/ptmx".to_owned(),
    });
    dev.push(Step::Dir {
        path: c"dev/shm".to_owned(),
        mode: 0o755,
    });
    dev.push(Step::Tmpfs {
        path: c"dev/shm".to_owned(),
        data: cstring(Path::new(&format!("mode=1777{tmp_size}"))),
        noexec: true,
    });
    for (link, target) in [
        ("dev/fd", "/proc/self/fd"),
        ("dev/stdin", "/proc/self/fd/0"),
        ("dev/stdout", "/proc/self/fd/1"),
        ("dev/stderr", "/proc/self/fd/2"),
    ] {
        dev.push(Step::Symlink {
            target: cstring(Path::new(target)),
            path: cstring(Path::new(link)),
        });
    }
    mounts.push((1, 0, dev));
    plan.devices.push(c"/dev/pts".to_owned());
    plan.devices.push(c"/dev/ptmx".to_owned());
    plan.write_dirs.push(c"/dev/shm".to_owned());
    mounts.push((
        1,
        0,
        vec![Step::Proc {
            path: c"proc".to_owned(),
        }],
    ));

    // Granted trees: read-only extras, read-write extras, the workspace, the git directory.
    for path in &spec.read_only {
        let source = add_source(&mut plan, path, ro, false, &path.display().to_string());
        mounts.push((depth(path), 2, attach_at(source, path)));
        plan.exec_dirs.push(cstring(path));
    }
    for path in &spec.read_write {
        let source = add_source(
            &mut plan,
            path,
            rw | writable_exec,
            idmap,
            &path.display().to_string(),
        );
        mounts.push((depth(path), 2, attach_at(source, path)));
        plan.write_dirs.push(cstring(path));
    }
    let workspace = add_source(
        &mut plan,
        &spec.workspace,
        rw | writable_exec,
        idmap,
        &spec.workspace.display().to_string(),
    );
    mounts.push((
        depth(&spec.workspace),
        2,
        attach_at(workspace, &spec.workspace),
    ));
    plan.write_dirs.push(cstring(&spec.workspace));
    if let Some(git) = &spec.git
        && git.outside_workspace
    {
        let source = add_source(
            &mut plan,
            &git.common_dir,
            rw | sys::MOUNT_ATTR_NOEXEC,
            idmap,
            &git.common_dir.display().to_string(),
        );
        mounts.push((
            depth(&git.common_dir),
            2,
            attach_at(source, &git.common_dir),
        ));
        plan.write_dirs.push(cstring(&git.common_dir));
    }
    if spec.exec_writable {
        let writable: Vec<CString> = plan.write_dirs.clone();
        plan.exec_dirs.extend(writable);
    }

    // Chosen binds (the agent socket, the remit binary): read-only unless asked, never
    // setuid, executable only where they are meant to be run.
    for bind in &spec.binds {
        let attrs = if bind.writable {
            rw | sys::MOUNT_ATTR_NOEXEC
        } else {
            ro
        };
        let source = add_source(
            &mut plan,
            &bind.source,
            attrs,
            false,
            &bind.source.display().to_string(),
        );
        let rel = relative(&bind.target);
        let is_dir = std::fs::metadata(&bind.source)
            .map(|m| m.is_dir())
            .unwrap_or(false);
        let mount_point = if is_dir {
            Step::Dir {
                path: cstring(&rel),
                mode: 0o755,
            }
        } else {
            Step::Touch {
                path: cstring(&rel),
                mode: 0o644,
            }
        };
        mounts.push((
            depth(&bind.target),
            2,
            vec![
                mount_point,
                Step::Attach {
                    source,
                    path: cstring(&rel),
                },
            ],
        ));
        if !bind.writable {
            plan.exec_dirs.push(cstring(&bind.target));
        }
    }

    // Read-only pieces inside writable trees, then masks: above everything they cover.
    let mut protected: Vec<&PathBuf> = spec.protected.iter().collect();
    if let Some(git) = &spec.git {
        protected.extend(git.read_only.iter());
    }
    for path in protected {
        let source = add_source(
            &mut plan,
            path,
            ro | sys::MOUNT_ATTR_NOEXEC,
            false,
            &path.display().to_string(),
        );
        plan.sources[source].nofollow = true;
        mounts.push((
            depth(path),
            3,
            vec![Step::Attach {
                source,
                path: cstring(&relative(path)),
            }],
        ));
    }
    let mut hidden: Vec<PathBuf> = spec.hidden.clone();
    for path in always_hidden(&spec.user.home) {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        // A link (`~/.ssh -> dotfiles/ssh`) is hidden at its target, wherever that is
        // visible: a mask on the link itself would land there anyway.
        let target = if meta.file_type().is_symlink() {
            std::fs::canonicalize(&path).ok()
        } else {
            Some(path)
        };
        if let Some(target) = target.filter(|t| visible(spec, t)) {
            hidden.push(target);
        }
    }
    hidden.sort();
    hidden.dedup();
    // A mask covers everything under it: a path inside another masked one has nothing left
    // to mount on.
    let covering: Vec<PathBuf> = hidden
        .iter()
        .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| !m.file_type().is_symlink()))
        .cloned()
        .collect();
    hidden.retain(|p| !covering.iter().any(|q| q != p && p.starts_with(q)));
    // Forbidden programs are replaced by a stub that says so: the task's shell then calls
    // `execve` (which the supervisor refuses and records, with the reason on the caller's
    // standard error) instead of failing silently on an unreadable file, and nothing of the
    // real program is readable or copyable.
    for (i, program) in spec.masked_programs.iter().enumerate() {
        let Ok(meta) = std::fs::symlink_metadata(program) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let name = program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stub = format!(".remit/forbidden-{i}");
        let text = format!(
            "#!/bin/sh\necho \"remit: denied: \\`{}\\` is forbidden by this task's remit\" >&2\nexit 126\n",
            name.replace(['"', '\\', '`', '$'], "")
        );
        plan.steps.push(Step::File {
            path: cstring(Path::new(&stub)),
            contents: text.into_bytes(),
            mode: 0o555,
        });
        mounts.push((
            depth(program),
            4,
            vec![Step::BindReadOnly {
                from: cstring(Path::new(&stub)),
                path: cstring(&relative(program)),
                exec: true,
            }],
        ));
    }
    for path in hidden {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            // A mount on a symlink would land on its target; mask the target instead when
            // it stays visible.
            continue;
        }
        let from = if meta.is_dir() { MASK_DIR } else { MASK_FILE };
        mounts.push((
            depth(&path),
            4,
            vec![Step::BindReadOnly {
                from: cstring(Path::new(from)),
                path: cstring(&relative(&path)),
                exec: false,
            }],
        ));
    }

    // Parents before children; at equal depth, fresh filesystems and system trees before
    // granted trees, protections and masks last.
    mounts.sort_by_key(|(d, order, _)| (*order >= 3, *d, *order));
    for (_, _, steps) in mounts {
        plan.steps.extend(steps);
    }

    if let Some(allow) = &spec.exec_allowlist {
        let mut files: Vec<CString> = allow.iter().map(|p| cstring(p)).collect();
        for loader in ["/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1"] {
            if let Ok(real) = std::fs::canonicalize(loader) {
                files.push(cstring(Path::new(loader)));
                files.push(cstring(&real));
            }
        }
        if spec.exec_writable {
            files.extend(plan.write_dirs.iter().cloned());
        }
        plan.exec_files = Some(files);
    }
    plan
}

fn attach_at(source: usize, path: &Path) -> Vec<Step> {
    let rel = relative(path);
    let is_dir = std::fs::metadata(path).map(|m| m.is_dir()).unwrap_or(true);
    let mount_point = if is_dir {
        Step::Dir {
            path: cstring(&rel),
            mode: 0o755,
        }
    } else {
        Step::Touch {
            path: cstring(&rel),
            mode: 0o644,
        }
    };
    vec![
        mount_point,
        Step::Attach {
            source,
            path: cstring(&rel),
        },
    ]
}

/// Whether a host path is visible inside the task at all.
pub(crate) fn visible(spec: &SandboxSpec, path: &Path) -> bool {
    let system = ["/usr", "/etc", "/bin", "/sbin", "/lib", "/lib64"];
    system.iter().any(|s| path.starts_with(s))
        || path.starts_with(&spec.workspace)
        || spec.read_only.iter().any(|p| path.starts_with(p))
        || spec.read_write.iter().any(|p| path.starts_with(p))
        || spec
            .git
            .as_ref()
            .is_some_and(|g| g.outside_workspace && path.starts_with(&g.common_dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SandboxSpec {
        SandboxSpec::minimal("t", PathBuf::from("/tmp/work"))
    }

    fn position(plan: &Plan, wanted: impl Fn(&Step) -> bool) -> usize {
        plan.steps.iter().position(wanted).unwrap_or(usize::MAX)
    }

    #[test]
    fn workspace_under_tmp_is_attached_after_the_tmpfs() {
        let plan = build(&spec(), false, (1000, 1000), (0, 0));
        let tmpfs = position(
            &plan,
            |s| matches!(s, Step::Tmpfs { path, .. } if path.as_bytes() == b"tmp"),
        );
        let ws_source = plan
            .sources
            .iter()
            .position(|s| s.path.as_bytes() == b"/tmp/work")
            .unwrap();
        let attach = position(
            &plan,
            |s| matches!(s, Step::Attach { source, .. } if *source == ws_source),
        );
        assert!(tmpfs < attach, "{plan:#?}");
        assert!(plan.write_dirs.iter().any(|d| d.as_bytes() == b"/tmp/work"));
    }

    #[test]
    fn masks_come_last() {
        let mut s = spec();
        s.hidden.push(PathBuf::from("/etc/hostname"));
        let plan = build(&s, false, (1000, 1000), (0, 0));
        let mask = position(
            &plan,
            |st| matches!(st, Step::BindReadOnly { path, .. } if path.as_bytes() == b"etc/hostname"),
        );
        let last_attach = plan
            .steps
            .iter()
            .rposition(|st| matches!(st, Step::Attach { .. }))
            .unwrap();
        assert!(mask > last_attach);
    }

    #[test]
    fn shadow_is_always_masked() {
        let plan = build(&spec(), false, (1000, 1000), (0, 0));
        if Path::new("/etc/shadow").exists() {
            assert!(plan.steps.iter().any(
                |s| matches!(s, Step::BindReadOnly { path, .. } if path.as_bytes() == b"etc/shadow")
            ));
        }
    }

    #[test]
    fn idmap_applies_to_writable_trees_only() {
        let plan = build(&spec(), true, (1000, 1000), (0, 0));
        for source in &plan.sources {
            let writable = source.attrs & sys::MOUNT_ATTR_RDONLY == 0
                && !source.path.to_bytes().starts_with(b"/dev");
            assert_eq!(source.idmapped, writable, "{source:?}");
        }
    }
}
