//! The task's init: pid 1 of the task's pid namespace. It builds the mount tree from the
//! plan, enters a nested user namespace as the task's user, drops every privilege, confines
//! itself (Landlock, seccomp) and then starts programs on the supervisor's request, reaping
//! everything and reporting exits.
//!
//! It is a fork of the supervisor, so it starts with the spec and the plan in memory. It runs
//! in a freshly cloned process: no other threads, no async runtime, nothing shared.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, NetPort, PathBeneath, PathFd,
    Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
};

use crate::error::Layer;
use crate::plan::{Plan, Step};
use crate::protocol::{FromInit, MAX_MESSAGE, ToInit};
use crate::spec::SandboxSpec;
use crate::sys;

/// What the supervisor decided before cloning.
#[derive(Debug, Clone)]
pub(crate) struct InitConfig<'a> {
    pub(crate) spec: &'a SandboxSpec,
    pub(crate) plan: &'a Plan,
    /// The task's user as the init sees it while building (first user namespace).
    pub(crate) owner: (u32, u32),
    /// The task's user as its programs see it (nested user namespace).
    pub(crate) agent: (u32, u32),
    /// Landlock ABI to use (0: skip Landlock).
    pub(crate) landlock_abi: i32,
    /// Layers to skip (degraded mode), decided by the supervisor's probe.
    pub(crate) skip: Vec<Layer>,
    /// The seccomp program.
    pub(crate) seccomp: &'static [libc::sock_filter],
    /// Ask the kernel for a user-notification listener.
    pub(crate) listener: bool,
}

/// A failed setup step.
struct Failure {
    step: String,
    err: io::Error,
    layer: Option<Layer>,
}

trait Step_<T> {
    fn step(self, step: impl FnOnce() -> String, layer: Option<Layer>) -> Result<T, Failure>;
}

impl<T> Step_<T> for io::Result<T> {
    fn step(self, step: impl FnOnce() -> String, layer: Option<Layer>) -> Result<T, Failure> {
        self.map_err(|err| Failure {
            step: step(),
            err,
            layer,
        })
    }
}

fn layer_code(layer: Option<Layer>) -> u8 {
    layer
        .and_then(|l| Layer::ALL.iter().position(|x| *x == l))
        .map(|i| i as u8 + 1)
        .unwrap_or(0)
}

/// Run the init. Never returns.
pub(crate) fn main(config: &InitConfig<'_>, sock: OwnedFd) -> ! {
    match setup(config, sock.as_fd()) {
        Ok((listener, proxy)) => {
            let skipped: Vec<u8> = config.skip.iter().map(|l| layer_code(Some(*l))).collect();
            let ready = FromInit::Ready {
                skipped,
                listener: listener.is_some(),
                proxy: proxy.is_some(),
            }
            .encode();
            let mut fds: Vec<RawFd> = listener.iter().map(|l| l.as_raw_fd()).collect();
            fds.extend(proxy.iter().map(|p| p.as_raw_fd()));
            if sys::send_with_fds(sock.as_fd(), &ready, &fds).is_err() {
                sys::exit_now(2);
            }
            drop(listener);
            drop(proxy);
            let code = serve(sock.as_fd());
            sys::exit_now(code)
        }
        Err(failure) => {
            let message = FromInit::SetupFailed {
                step: failure.step.into_bytes(),
                errno: failure.err.raw_os_error().unwrap_or(0),
                layer: layer_code(failure.layer),
            };
            let _ = sys::send_with_fds(sock.as_fd(), &message.encode(), &[]);
            sys::exit_now(2)
        }
    }
}

type Ready = (Option<OwnedFd>, Option<std::net::TcpListener>);

fn setup(config: &InitConfig<'_>, sock: BorrowedFd<'_>) -> Result<Ready, Failure> {
    let plan = config.plan;
    let spec = config.spec;
    let mount_ns = Some(Layer::MountNamespace);

    // Descriptors the supervisor inherited from whoever started it must not reach the task.
    sys::cloexec_from(3).step(|| "mark inherited descriptors close-on-exec".into(), None)?;

    // Nothing we mount may propagate back to the host, or from it into the task.
    sys::mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)
        .step(|| "make mounts private".into(), mount_ns)?;

    // Clone every host tree while we can still see all of the host (as the host user that
    // started us, with capabilities over our own mount namespace).
    let mut trees: Vec<Option<OwnedFd>> = Vec::with_capacity(plan.sources.len());
    for source in &plan.sources {
        if source.idmapped {
            trees.push(None);
            continue;
        }
        let follow = if source.nofollow {
            libc::AT_SYMLINK_NOFOLLOW as u32
        } else {
            0
        };
        let tree = sys::open_tree(
            &source.path,
            sys::OPEN_TREE_CLONE | sys::AT_RECURSIVE | follow,
        )
        .step(|| format!("clone mount `{}`", source.label), mount_ns)?;
        sys::mount_setattr(tree.as_fd(), true, source.attrs, 0, None)
            .step(|| format!("set attributes of `{}`", source.label), mount_ns)?;
        trees.push(Some(tree));
    }

    // Wait for the supervisor: maps written, cgroups joined, idmapped trees attached.
    let mut buf = vec![0u8; 64];
    let mut received = Vec::new();
    let n = sys::recv_with_fds(sock, &mut buf, &mut received, false)
        .step(|| "wait for the supervisor".into(), None)?;
    if n == 0 || ToInit::decode(&buf[..n]) != Some(ToInit::Go) {
        return Err(Failure {
            step: "wait for the supervisor".into(),
            err: io::Error::from_raw_os_error(libc::EPROTO),
            layer: None,
        });
    }
    let mut received = received.into_iter();
    for (slot, source) in trees.iter_mut().zip(&plan.sources) {
        if source.idmapped {
            *slot = Some(received.next().ok_or_else(|| Failure {
                step: format!("receive idmapped `{}`", source.label),
                err: io::Error::from_raw_os_error(libc::EPROTO),
                layer: Some(Layer::IdmappedMount),
            })?);
        }
    }

    // From here on, files we create belong to the task's user.
    sys::become_ids(config.owner.0, config.owner.1).step(
        || "switch to the task's user".into(),
        Some(Layer::UserNamespace),
    )?;
    // Changing ids made us undumpable, which makes our /proc files root's; we still need to
    // write our own uid map. Undumpable again once that is done.
    sys::set_dumpable(true).step(|| "make init dumpable during setup".into(), None)?;

    // The new root: a small tmpfs mounted over /tmp (in our namespace only), built in place.
    sys::mount(
        Some(c"tmpfs"),
        c"/tmp",
        Some(c"tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(c"mode=0755,size=4m"),
    )
    .step(|| "mount the root tmpfs".into(), mount_ns)?;
    sys::chdir(c"/tmp").step(|| "enter the new root".into(), mount_ns)?;

    for step in &plan.steps {
        run_step(step, &trees).map_err(|(what, err)| Failure {
            step: what,
            err,
            layer: mount_ns,
        })?;
    }
    drop(trees);

    sys::pivot_root(c".", c".").step(|| "pivot_root".into(), mount_ns)?;
    sys::umount_detach(c".").step(|| "detach the host root".into(), mount_ns)?;
    sys::chdir(c"/").step(|| "enter /".into(), mount_ns)?;
    let root = std::fs::File::open("/").step(|| "open /".into(), mount_ns)?;
    sys::mount_setattr(
        root.as_fd(),
        false,
        sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV,
        0,
        None,
    )
    .step(|| "make / read-only".into(), mount_ns)?;
    drop(root);

    sys::loopback_up().step(|| "bring up loopback".into(), Some(Layer::NetNamespace))?;
    // The egress proxy's door: a listening socket on the task's own loopback, handed to the
    // supervisor, which accepts on it directly and connects out from the host's namespace.
    let proxy = match spec.proxy_port {
        Some(port) => Some(
            std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port)).step(
                || format!("listen on 127.0.0.1:{port} for the egress proxy"),
                Some(Layer::NetNamespace),
            )?,
        ),
        None => None,
    };
    sys::sethostname(&spec.hostname)
        .step(|| "set the host name".into(), Some(Layer::UtsNamespace))?;

    // Our standard streams are the supervisor's; programs get theirs from spawn requests.
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .step(|| "open /dev/null".into(), mount_ns)?;
    for fd in 0..3 {
        sys::dup2(null.as_raw_fd(), fd).step(|| "detach standard streams".into(), None)?;
    }
    drop(null);

    // The task's user namespace: nested, so the task owns none of the namespaces above and
    // could not mount, change the network or the host name even with every capability.
    sys::unshare(libc::CLONE_NEWUSER).step(
        || "enter the task's user namespace".into(),
        Some(Layer::UserNamespace),
    )?;
    std::fs::write("/proc/self/setgroups", "deny")
        .step(|| "write setgroups".into(), Some(Layer::UserNamespace))?;
    std::fs::write(
        "/proc/self/uid_map",
        format!("{} {} 1\n", config.agent.0, config.owner.0),
    )
    .step(
        || "write the task's uid map".into(),
        Some(Layer::UserNamespace),
    )?;
    std::fs::write(
        "/proc/self/gid_map",
        format!("{} {} 1\n", config.agent.1, config.owner.1),
    )
    .step(
        || "write the task's gid map".into(),
        Some(Layer::UserNamespace),
    )?;

    limits(spec).step(|| "set resource limits".into(), Some(Layer::Rlimits))?;
    sys::drop_all_capabilities().step(|| "drop capabilities".into(), Some(Layer::Capabilities))?;
    sys::set_dumpable(false).step(|| "make init undumpable".into(), Some(Layer::Capabilities))?;
    sys::no_new_privs().step(|| "set no_new_privs".into(), Some(Layer::NoNewPrivs))?;

    if !config.skip.contains(&Layer::Landlock) {
        landlock(config)?;
    }
    let listener = sys::seccomp_install(config.seccomp, config.listener)
        .step(|| "install the seccomp filter".into(), Some(Layer::Seccomp))?;

    // The supervisor may die without telling us; then so do we (and with us, the namespace).
    sys::parent_death_signal(libc::SIGKILL).step(|| "set the parent-death signal".into(), None)?;
    let workspace = CString::new(spec.workspace.as_os_str().as_bytes()).map_err(|_| Failure {
        step: "enter the workspace".into(),
        err: io::Error::from_raw_os_error(libc::EINVAL),
        layer: None,
    })?;
    sys::chdir(&workspace).step(|| "enter the workspace".into(), mount_ns)?;
    Ok((listener, proxy))
}

fn run_step(step: &Step, trees: &[Option<OwnedFd>]) -> Result<(), (String, io::Error)> {
    let show = |p: &CStr| format!("/{}", p.to_string_lossy());
    match step {
        Step::Dir { path, mode } => {
            mkdir_all(path, *mode).map_err(|e| (format!("create `{}`", show(path)), e))
        }
        Step::Touch { path, mode } => {
            touch(path, *mode).map_err(|e| (format!("create `{}`", show(path)), e))
        }
        Step::File {
            path,
            contents,
            mode,
        } => {
            touch(path, 0o600).map_err(|e| (format!("create `{}`", show(path)), e))?;
            let file = std::ffi::OsStr::from_bytes(path.to_bytes());
            std::fs::write(file, contents).map_err(|e| (format!("write `{}`", show(path)), e))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(*mode))
                .map_err(|e| (format!("chmod `{}`", show(path)), e))
        }
        Step::Symlink { target, path } => {
            let link = std::path::Path::new(std::ffi::OsStr::from_bytes(path.to_bytes()));
            if let Some(parent) = link.parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent)
                    .map_err(|e| (format!("create `{}`", show(path)), e))?;
            }
            std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target.as_bytes()), link)
                .map_err(|e| (format!("link `{}`", show(path)), e))
        }
        Step::Attach { source, path } => {
            let tree = trees.get(*source).and_then(Option::as_ref).ok_or_else(|| {
                (
                    format!("mount `{}`", show(path)),
                    io::Error::from_raw_os_error(libc::EBADF),
                )
            })?;
            sys::move_mount(tree.as_fd(), path).map_err(|e| (format!("mount `{}`", show(path)), e))
        }
        Step::Tmpfs { path, data, noexec } => {
            let mut flags = libc::MS_NOSUID | libc::MS_NODEV;
            if *noexec {
                flags |= libc::MS_NOEXEC;
            }
            sys::mount(Some(c"tmpfs"), path, Some(c"tmpfs"), flags, Some(data))
                .map_err(|e| (format!("mount tmpfs on `{}`", show(path)), e))
        }
        Step::Proc { path } => sys::mount(
            Some(c"proc"),
            path,
            Some(c"proc"),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            None,
        )
        .map_err(|e| (format!("mount proc on `{}`", show(path)), e)),
        Step::Devpts { path } => sys::mount(
            Some(c"devpts"),
            path,
            Some(c"devpts"),
            libc::MS_NOSUID | libc::MS_NOEXEC,
            Some(c"newinstance,ptmxmode=0666,mode=0620"),
        )
        .map_err(|e| (format!("mount devpts on `{}`", show(path)), e)),
        Step::BindReadOnly { from, path, exec } => {
            sys::mount(Some(from), path, None, libc::MS_BIND, None)
                .map_err(|e| (format!("mask `{}`", show(path)), e))?;
            let noexec = if *exec { 0 } else { libc::MS_NOEXEC };
            sys::mount(
                None,
                path,
                None,
                libc::MS_REMOUNT
                    | libc::MS_BIND
                    | libc::MS_RDONLY
                    | libc::MS_NOSUID
                    | libc::MS_NODEV
                    | noexec,
                None,
            )
            .map_err(|e| (format!("mask `{}` read-only", show(path)), e))
        }
    }
}

fn mkdir_all(path: &CStr, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let p = std::path::Path::new(std::ffi::OsStr::from_bytes(path.to_bytes()));
    if p.is_dir() {
        return Ok(());
    }
    if let Some(parent) = p.parent()
        && !parent.as_os_str().is_empty()
        && !parent.is_dir()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)?;
    }
    match std::fs::DirBuilder::new().mode(mode).create(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

fn touch(path: &CStr, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let p = std::path::Path::new(std::ffi::OsStr::from_bytes(path.to_bytes()));
    if p.exists() {
        return Ok(());
    }
    if let Some(parent) = p.parent()
        && !parent.as_os_str().is_empty()
        && !parent.is_dir()
    {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(mode)
        .open(p)
        .map(drop)
}

fn limits(spec: &SandboxSpec) -> io::Result<()> {
    let limits = &spec.limits;
    sys::set_rlimit(libc::RLIMIT_CORE, 0)?;
    if let Some(n) = limits.pids {
        sys::set_rlimit(libc::RLIMIT_NPROC, u64::from(n))?;
    }
    if let Some(n) = limits.open_files {
        sys::set_rlimit(libc::RLIMIT_NOFILE, n)?;
    }
    if let Some(n) = limits.file_size {
        sys::set_rlimit(libc::RLIMIT_FSIZE, n)?;
    }
    Ok(())
}

fn abi_of(version: i32) -> ABI {
    match version {
        ..=0 => ABI::Unsupported,
        1 => ABI::V1,
        2 => ABI::V2,
        3 => ABI::V3,
        4 => ABI::V4,
        5 => ABI::V5,
        6 => ABI::V6,
        _ => ABI::V7,
    }
}

fn landlock(config: &InitConfig<'_>) -> Result<(), Failure> {
    let abi = abi_of(config.landlock_abi);
    let plan = config.plan;
    let fail = |what: &str, err: landlock::RulesetError| Failure {
        step: format!("landlock: {what}"),
        err: io::Error::other(err.to_string()),
        layer: Some(Layer::Landlock),
    };
    let all = AccessFs::from_all(abi);
    let read = AccessFs::ReadFile | AccessFs::ReadDir;
    let exec = AccessFs::Execute;
    let write = all
        & !(AccessFs::Execute
            | AccessFs::MakeChar
            | AccessFs::MakeBlock
            | AccessFs::IoctlDev
            | AccessFs::ResolveUnix)
        | AccessFs::ReadFile
        | AccessFs::ReadDir;
    let device = (AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::IoctlDev) & all;

    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(all)
        .map_err(|e| fail("handle filesystem access", e))?;
    let net = config.landlock_abi >= 4 && !config.skip.contains(&Layer::LandlockNet);
    if net {
        ruleset = ruleset
            .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)
            .map_err(|e| fail("handle TCP access", e))?;
    }
    if config.landlock_abi >= 6 && !config.skip.contains(&Layer::LandlockScope) {
        ruleset = ruleset
            .scope(Scope::AbstractUnixSocket | Scope::Signal)
            .map_err(|e| fail("scope signals and abstract sockets", e))?;
    }
    let mut created = ruleset
        .create()
        .map_err(|e| fail("create the ruleset", e))?;

    let mut add = |path: &CStr, access: landlock::BitFlags<AccessFs>| -> Result<(), Failure> {
        let os = std::ffi::OsStr::from_bytes(path.to_bytes());
        let fd = match PathFd::new(os) {
            Ok(fd) => fd,
            // A path that does not exist inside needs no rule.
            Err(_) => return Ok(()),
        };
        let is_dir = std::fs::metadata(os).map(|m| m.is_dir()).unwrap_or(false);
        let access = if is_dir {
            access
        } else {
            access & AccessFs::from_file(abi)
        };
        (&mut created)
            .add_rule(PathBeneath::new(fd, access))
            .map_err(|e| fail(&format!("rule for `{}`", os.to_string_lossy()), e))?;
        Ok(())
    };
    add(c"/", read)?;
    match &plan.exec_files {
        None => {
            for dir in &plan.exec_dirs {
                add(dir, read | exec)?;
            }
        }
        Some(files) => {
            for dir in &plan.exec_dirs {
                add(dir, read)?;
            }
            for file in files {
                add(file, read | exec)?;
            }
        }
    }
    for dir in &plan.write_dirs {
        let mut access = write;
        if config.spec.exec_writable && plan.exec_files.is_none() {
            access |= exec;
        }
        add(dir, access)?;
    }
    for dev in &plan.devices {
        add(dev, device | AccessFs::ReadDir)?;
    }
    if net {
        if let Some(port) = config.spec.proxy_port {
            created = created
                .add_rule(NetPort::new(port, AccessNet::ConnectTcp))
                .map_err(|e| fail(&format!("rule for the proxy port {port}"), e))?;
        }
        for port in &config.spec.listen_ports {
            created = created
                .add_rule(NetPort::new(
                    *port,
                    AccessNet::BindTcp | AccessNet::ConnectTcp,
                ))
                .map_err(|e| fail(&format!("rule for port {port}"), e))?;
        }
    }
    let status = created.restrict_self().map_err(|e| fail("restrict", e))?;
    if status.ruleset != RulesetStatus::FullyEnforced {
        return Err(Failure {
            step: "landlock: restrict".into(),
            err: io::Error::other(format!("only {:?}", status.ruleset)),
            layer: Some(Layer::Landlock),
        });
    }
    Ok(())
}

/// A program the init started for the supervisor.
struct Child {
    id: u64,
    group: bool,
}

fn serve(sock: BorrowedFd<'_>) -> i32 {
    let Ok(sigchld) = sys::signalfd(&[libc::SIGCHLD]) else {
        return 2;
    };
    let mut children: HashMap<libc::pid_t, Child> = HashMap::new();
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let Ok(ready) = sys::poll_readable(&[sock, sigchld.as_fd()], -1) else {
            return 2;
        };
        if ready.get(1).copied().unwrap_or(false) {
            while let Ok(Some(_)) = sys::read_signal(sigchld.as_fd()) {}
            reap(sock, &mut children);
        }
        if !ready.first().copied().unwrap_or(false) {
            continue;
        }
        let mut fds = Vec::new();
        let n = match sys::recv_with_fds(sock, &mut buf, &mut fds, true) {
            Ok(0) => return 0,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(_) => return 0,
        };
        match ToInit::decode(&buf[..n]) {
            Some(ToInit::Spawn {
                id,
                path,
                argv,
                env,
                cwd,
                new_process_group,
            }) => {
                let reply = match start(&path, &argv, &env, &cwd, &fds, new_process_group) {
                    Ok(pid) => {
                        children.insert(
                            pid,
                            Child {
                                id,
                                group: new_process_group,
                            },
                        );
                        FromInit::Spawned { id, pid }
                    }
                    Err(e) => FromInit::SpawnFailed {
                        id,
                        errno: e.raw_os_error().unwrap_or(libc::EIO),
                    },
                };
                drop(fds);
                if sys::send_with_fds(sock, &reply.encode(), &[]).is_err() {
                    return 0;
                }
                // A fast program may already have ended.
                reap(sock, &mut children);
            }
            Some(ToInit::Signal { id, signal }) => {
                for (pid, child) in &children {
                    if child.id == id {
                        let target = if child.group { -*pid } else { *pid };
                        let _ = sys::kill(target, signal);
                    }
                }
            }
            Some(ToInit::Go) | None => {}
        }
    }
}

fn start(
    path: &[u8],
    argv: &[Vec<u8>],
    env: &[Vec<u8>],
    cwd: &[u8],
    fds: &[OwnedFd],
    group: bool,
) -> io::Result<libc::pid_t> {
    let invalid = || io::Error::from_raw_os_error(libc::EINVAL);
    let path = CString::new(path).map_err(|_| invalid())?;
    let argv: Vec<CString> = argv
        .iter()
        .map(|a| CString::new(a.as_slice()).map_err(|_| invalid()))
        .collect::<Result<_, _>>()?;
    let env: Vec<CString> = env
        .iter()
        .map(|e| CString::new(e.as_slice()).map_err(|_| invalid()))
        .collect::<Result<_, _>>()?;
    let cwd = CString::new(cwd).map_err(|_| invalid())?;
    let [stdin, stdout, stderr] = fds else {
        return Err(invalid());
    };
    sys::spawn(
        &path,
        &argv,
        &env,
        &cwd,
        [stdin.as_raw_fd(), stdout.as_raw_fd(), stderr.as_raw_fd()],
        group,
    )
}

fn reap(sock: BorrowedFd<'_>, children: &mut HashMap<libc::pid_t, Child>) {
    while let Ok(Some((pid, exit))) = sys::waitpid(-1, true) {
        if let Some(child) = children.remove(&pid) {
            let (code, signal) = match exit {
                sys::Exit::Code(c) => (c, 0),
                sys::Exit::Signal(s) => (-1, s),
            };
            let message = FromInit::Exited {
                id: child.id,
                code,
                signal,
            };
            let _ = sys::send_with_fds(sock, &message.encode(), &[]);
        }
    }
}
