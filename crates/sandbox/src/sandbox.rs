//! The supervisor's handle on one sandbox: create it, start programs in it, read what they
//! do, end it. Dropping a [`Sandbox`] kills everything in it.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::cgroup::{self, CgroupLimits, Controller, TaskCgroups};
use crate::error::{Error, Layer, reason};
use crate::exec::ExecWatch;
use crate::init::{self, InitConfig};
use crate::plan;
use crate::protocol::{FromInit, MAX_MESSAGE, ToInit};
use crate::seccomp;
use crate::spec::SandboxSpec;
use crate::sys::{self, Cloned};

/// The host uid and gid a task's user maps to when the supervisor runs as root: unprivileged,
/// owning nothing on the host.
pub const TASK_HOST_ID: u32 = 0x7000_0000;

/// The task's user inside when the supervisor runs as root.
pub const TASK_UID: u32 = 1000;

/// A program to start in a sandbox.
#[derive(Debug)]
pub struct SpawnRequest<'a> {
    /// Absolute path (inside) of the program.
    pub path: &'a Path,
    /// Arguments, `argv[0]` included.
    pub argv: &'a [String],
    /// Environment (`KEY=value`).
    pub env: &'a [(String, String)],
    /// Working directory (inside).
    pub cwd: &'a Path,
    /// Standard input, output and error.
    pub stdio: [BorrowedFd<'a>; 3],
    /// Put it in a process group of its own (signals then reach its whole group).
    pub new_process_group: bool,
}

/// Something that happened in a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A spawn started; `pid` is its pid inside the task.
    Spawned {
        /// The spawn.
        id: u64,
        /// Pid inside.
        pid: i32,
    },
    /// A spawn could not start (`errno`).
    SpawnFailed {
        /// The spawn.
        id: u64,
        /// Why.
        errno: i32,
    },
    /// A spawned program ended.
    Exited {
        /// The spawn.
        id: u64,
        /// How.
        status: ExitStatus,
    },
}

/// How a program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

/// One running sandbox.
#[derive(Debug)]
pub struct Sandbox {
    init_pid: libc::pid_t,
    pidfd: OwnedFd,
    sock: OwnedFd,
    watch: Option<ExecWatch>,
    cgroups: TaskCgroups,
    /// The task's freezer, or why it has none (`None`: not asked for).
    freezer: Option<Result<crate::freezer::Freezer, String>>,
    skipped: Vec<(Layer, String)>,
    next_id: u64,
    reaped: bool,
    buf: Vec<u8>,
    /// The host id of the task's user when it differs from ours (we run as root).
    task_host_id: Option<u32>,
    /// The egress proxy's listening socket inside the task's network namespace.
    proxy: Option<std::net::TcpListener>,
    /// Messages for the init not sent yet, in order, with the descriptors they carry. The
    /// init reads one request at a time and stays inside `posix_spawn` until the new
    /// program's `execve` is decided, by whoever calls [`Sandbox::flush`]: waiting for room
    /// in its queue there would wait for ourselves.
    outbox: std::collections::VecDeque<(Vec<u8>, Vec<OwnedFd>)>,
}

/// What the host can do, decided once per sandbox before cloning.
struct Decisions {
    landlock_abi: i32,
    skip: Vec<(Layer, String)>,
    listener: bool,
}

fn decide(spec: &SandboxSpec) -> Result<Decisions, Error> {
    let mut skip = Vec::new();
    let mut missing = |layer: Layer, why: String| -> Result<(), Error> {
        if spec.allow_degraded && layer.degradable() {
            skip.push((layer, why));
            Ok(())
        } else if layer.degradable() {
            Err(Error::Unavailable { layer, reason: why })
        } else {
            Err(Error::Required { layer, reason: why })
        }
    };
    if !seccomp::SUPPORTED || !sys::seccomp_supported() {
        missing(
            Layer::Seccomp,
            "no seccomp filter for this kernel or architecture".into(),
        )?;
    }
    let mut listener = spec.observe_exec;
    if listener && !sys::seccomp_notify_supported() {
        missing(
            Layer::SeccompNotify,
            "the kernel has no seccomp user notification".into(),
        )?;
        listener = false;
    }
    let landlock_abi = sys::landlock_abi();
    if landlock_abi < 1 {
        missing(Layer::Landlock, "the kernel does not offer Landlock".into())?;
    } else {
        if landlock_abi < 4 {
            missing(
                Layer::LandlockNet,
                format!("Landlock ABI {landlock_abi} has no TCP rules (needs 4)"),
            )?;
        }
        if landlock_abi < 6 {
            missing(
                Layer::LandlockScope,
                format!("Landlock ABI {landlock_abi} has no scoping (needs 6)"),
            )?;
        }
    }
    Ok(Decisions {
        landlock_abi,
        skip,
        listener,
    })
}

impl Sandbox {
    /// Build a sandbox for `spec` and wait until it is ready to start programs.
    ///
    /// Must be called from a single-threaded process (a fork is taken); the error says so
    /// otherwise.
    pub fn create(spec: &SandboxSpec) -> Result<Sandbox, Error> {
        Sandbox::start(spec)?.ready()
    }

    /// Start building a sandbox for `spec` and return while its init builds the task's tree:
    /// the caller can do other work (threads are fine from here on) and then wait with
    /// [`Starting::ready`]. Dropping the [`Starting`] kills the init.
    ///
    /// Must be called from a single-threaded process (a fork is taken); the error says so
    /// otherwise.
    pub fn start(spec: &SandboxSpec) -> Result<Starting, Error> {
        let threads = sys::thread_count().map_err(|e| Error::io("read `/proc/self/stat`", &e))?;
        if threads != 1 {
            return Err(Error::Threaded(threads));
        }
        let decisions = decide(spec)?;
        let (euid, egid) = sys::ids();
        let root = euid == 0;
        let ws_meta = std::fs::metadata(&spec.workspace)
            .map_err(|e| Error::io(format!("workspace `{}`", spec.workspace.display()), &e))?;
        // The init builds the tree as `owner` (the workspace's owner, mapped to an
        // unprivileged host id when we are root); programs run as `agent`.
        let (owner, host, agent) = if root {
            (
                (ws_meta.uid(), ws_meta.gid()),
                (TASK_HOST_ID, TASK_HOST_ID),
                (TASK_UID, TASK_UID),
            )
        } else {
            ((euid, egid), (euid, egid), (euid, egid))
        };
        let plan = plan::build(spec, root, agent, owner);

        // Cgroups first: a failure here leaves nothing else behind.
        let support = cgroup::probe();
        let cgroup_name = format!("{}-{}", std::process::id(), spec.task);
        // The pids limit always holds through the per-task process rlimit (counted per user
        // namespace, and every task has its own). A pids cgroup is added only when the task
        // gets a cgroup anyway: moving a process into a v1 cgroup waits for an RCU grace
        // period (10 ms and more here), too much to pay for a limit that already holds.
        let limits = CgroupLimits {
            memory: spec.limits.memory,
            pids: spec
                .limits
                .pids
                .filter(|_| spec.limits.memory.is_some() || spec.limits.cpu.is_some()),
            cpu: spec.limits.cpu,
        };
        let allow_degraded = spec.allow_degraded;
        if limits.memory.is_some() || limits.pids.is_some() || limits.cpu.is_some() {
            // Task cgroups of supervisors that died without removing theirs (SIGKILL).
            cgroup::collect_stale(&support);
        }
        let (cgroups, cgroup_skips) = TaskCgroups::create(&cgroup_name, limits, &support, |c| {
            // The pids limit always holds through the per-task process rlimit; a cgroup
            // only adds to it. Memory and CPU have no other enforcement.
            !allow_degraded && c != Controller::Pids
        })?;
        let mut skipped = decisions.skip.clone();
        for (controller, why) in cgroup_skips {
            let layer = match controller {
                Controller::Memory => Layer::CgroupMemory,
                Controller::Pids => Layer::CgroupPids,
                Controller::Cpu => Layer::CgroupCpu,
            };
            skipped.push((layer, why));
        }

        let (ours, theirs) =
            sys::seqpacket_pair().map_err(|e| Error::io("create a socket pair", &e))?;
        let config = InitConfig {
            spec,
            plan: &plan,
            owner,
            agent,
            landlock_abi: decisions.landlock_abi,
            skip: skipped.iter().map(|(l, _)| *l).collect(),
            seccomp: seccomp::program(decisions.listener),
            listener: decisions.listener,
        };
        let flags = libc::CLONE_NEWUSER
            | libc::CLONE_NEWNS
            | libc::CLONE_NEWPID
            | libc::CLONE_NEWNET
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWUTS
            | libc::CLONE_NEWCGROUP;
        // The freezer first: the init is born into it, and all it starts with it.
        let freezer = if spec.freezable {
            Some(crate::freezer::Freezer::create(&spec.task))
        } else {
            None
        };
        let mut freezer = freezer;
        let cloned = match &freezer {
            Some(Ok(f)) => match f
                .fd()
                .map(|fd| sys::clone_process_into(flags, std::os::fd::AsFd::as_fd(fd)))
            {
                Some(cloned) => match cloned {
                    // A kernel before 5.7 (no `CLONE_INTO_CGROUP`), or a cgroup it may not use: the
                    // task runs without a freezer, and says why when one is needed.
                    Err(e)
                        if matches!(
                            e.raw_os_error(),
                            Some(libc::EINVAL | libc::ENOSYS | libc::EPERM | libc::EACCES)
                        ) =>
                    {
                        freezer = Some(Err(format!(
                            "the task could not be started in its freezer cgroup: {}",
                            reason(&e)
                        )));
                        sys::clone_process(flags)
                    }
                    other => other,
                },
                None => sys::clone_process(flags),
            },
            _ => sys::clone_process(flags),
        };
        let (pid, pidfd) = match cloned {
            Ok(Cloned::Child) => {
                drop(ours);
                // The init keeps no handle on its own cgroup.
                if let Some(Ok(f)) = &mut freezer {
                    f.forget_in_child();
                }
                init::main(&config, theirs)
            }
            Ok(Cloned::Parent { pid, pidfd }) => (pid, pidfd),
            Err(e) => {
                return Err(Error::Required {
                    layer: Layer::UserNamespace,
                    reason: format!("cannot create the task's namespaces: {}", reason(&e)),
                });
            }
        };
        drop(theirs);
        let mut sandbox = Sandbox {
            init_pid: pid,
            pidfd,
            sock: ours,
            watch: None,
            cgroups,
            skipped,
            next_id: 1,
            reaped: false,
            buf: vec![0u8; MAX_MESSAGE],
            task_host_id: root.then_some(host.0),
            proxy: None,
            outbox: std::collections::VecDeque::new(),
            freezer,
        };
        sandbox.begin_setup(&plan, root, owner, host)?;
        Ok(Starting(sandbox))
    }

    fn begin_setup(
        &mut self,
        plan: &plan::Plan,
        root: bool,
        owner: (u32, u32),
        host: (u32, u32),
    ) -> Result<(), Error> {
        let proc_dir = format!("/proc/{}", self.init_pid);
        let write = |file: &str, text: String| {
            std::fs::write(format!("{proc_dir}/{file}"), text).map_err(|e| Error::Required {
                layer: Layer::UserNamespace,
                reason: format!("cannot write the task's `{file}`: {}", reason(&e)),
            })
        };
        // Under memory pressure the kernel kills the task first, not the supervisor (whose
        // end puts a repository back and records the task's end): the highest badness, for
        // the init and all it starts. Set by a root supervisor, it is also the floor the task
        // cannot go below.
        let _ = std::fs::write(format!("{proc_dir}/oom_score_adj"), "1000");
        write("setgroups", "deny".into())?;
        write("uid_map", format!("{} {} 1\n", owner.0, host.0))?;
        write("gid_map", format!("{} {} 1\n", owner.1, host.1))?;

        let mut idmapped: Vec<OwnedFd> = Vec::new();
        if root {
            let userns = std::fs::File::open(format!("{proc_dir}/ns/user"))
                .map_err(|e| Error::io("open the task's user namespace", &e))?;
            for source in plan.sources.iter().filter(|s| s.idmapped) {
                let tree = sys::open_tree(&source.path, sys::OPEN_TREE_CLONE | sys::AT_RECURSIVE)
                    .map_err(|e| Error::io(format!("clone mount `{}`", source.label), &e))?;
                sys::mount_setattr(
                    tree.as_fd(),
                    true,
                    source.attrs | sys::MOUNT_ATTR_IDMAP,
                    0,
                    Some(userns.as_fd()),
                )
                .map_err(|e| Error::Required {
                    layer: Layer::IdmappedMount,
                    reason: format!(
                        "cannot map `{}` to the task's user ({}); its filesystem may not support \
                         idmapped mounts — run remit as the owner of the workspace instead of root",
                        source.label,
                        reason(&e)
                    ),
                })?;
                idmapped.push(tree);
            }
        }
        let fds: Vec<RawFd> = idmapped.iter().map(|f| f.as_raw_fd()).collect();
        sys::send_with_fds(self.sock.as_fd(), &ToInit::Go.encode(), &fds)
            .map_err(|_| self.init_failure(None))?;
        drop(idmapped);
        // While the init builds the task's tree (it starts no process before it is told to,
        // after `Ready`), move it into its cgroups: everything it starts is born inside.
        if !self.cgroups.is_empty()
            && let Err(e) = self.cgroups.add(self.init_pid)
        {
            self.kill();
            return Err(e);
        }
        Ok(())
    }

    fn finish_setup(&mut self) -> Result<(), Error> {
        // Wait for the init to report.
        let mut fds = Vec::new();
        let n = sys::recv_with_fds(self.sock.as_fd(), &mut self.buf, &mut fds, false)
            .map_err(|e| Error::io("wait for the task's init", &e))?;
        match FromInit::decode(&self.buf[..n]) {
            Some(FromInit::Ready {
                listener, proxy, ..
            }) => {
                let mut fds = fds.into_iter();
                if listener && let Some(fd) = fds.next() {
                    self.watch = Some(ExecWatch::new(fd));
                }
                if proxy && let Some(fd) = fds.next() {
                    self.proxy = Some(std::net::TcpListener::from(fd));
                }
                Ok(())
            }
            Some(FromInit::SetupFailed { step, errno, layer }) => {
                let step = String::from_utf8_lossy(&step).into_owned();
                let why = reason(&io::Error::from_raw_os_error(errno));
                let layer = usize::from(layer)
                    .checked_sub(1)
                    .and_then(|i| Layer::ALL.get(i).copied());
                self.kill();
                Err(match layer {
                    Some(layer)
                        if matches!(
                            layer,
                            Layer::Landlock
                                | Layer::Seccomp
                                | Layer::NoNewPrivs
                                | Layer::Capabilities
                                | Layer::UserNamespace
                        ) =>
                    {
                        Error::Required {
                            layer,
                            reason: format!("{step}: {why}"),
                        }
                    }
                    _ => Error::Setup { step, reason: why },
                })
            }
            _ => Err(self.init_failure(None)),
        }
    }

    fn init_failure(&mut self, detail: Option<String>) -> Error {
        self.kill();
        let status = self.wait_init();
        let why = match (detail, status) {
            (Some(d), _) => format!(": {d}"),
            (None, Some(ExitStatus::Code(c))) => format!(" (exit {c})"),
            (None, Some(ExitStatus::Signal(s))) => format!(" (signal {s})"),
            (None, None) => String::new(),
        };
        Error::InitGone(why)
    }

    /// The init's pid on the host.
    pub fn init_pid(&self) -> i32 {
        self.init_pid
    }

    /// Layers skipped in degraded mode, with why.
    pub fn skipped(&self) -> &[(Layer, String)] {
        &self.skipped
    }

    /// The exec observer, when commands are observed.
    pub fn exec_watch(&self) -> Option<&ExecWatch> {
        self.watch.as_ref()
    }

    /// Take the egress proxy's listening socket (bound to `127.0.0.1:<proxy_port>` inside the
    /// task's network namespace).
    pub fn take_proxy_listener(&mut self) -> Option<std::net::TcpListener> {
        self.proxy.take()
    }

    /// Take the exec observer out, to answer notifications from elsewhere (an async task).
    pub fn take_exec_watch(&mut self) -> Option<ExecWatch> {
        self.watch.take()
    }

    /// The descriptor that becomes readable when an [`Event`] is waiting.
    pub fn event_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// A descriptor that becomes readable when the init has ended.
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// Whether the memory limit killed something.
    pub fn oom_killed(&self) -> bool {
        self.cgroups.oom_killed()
    }

    /// Start a program. The answer ([`Event::Spawned`] or [`Event::SpawnFailed`]) arrives
    /// as an event with the returned id.
    pub fn spawn(&mut self, request: &SpawnRequest<'_>) -> Result<u64, Error> {
        let id = self.next_id;
        self.next_id += 1;
        let bytes = |p: &Path| p.as_os_str().as_bytes().to_vec();
        let message = ToInit::Spawn {
            id,
            path: bytes(request.path),
            argv: request.argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
            env: request
                .env
                .iter()
                .map(|(k, v)| format!("{k}={v}").into_bytes())
                .collect(),
            cwd: bytes(request.cwd),
            new_process_group: request.new_process_group,
        }
        .encode();
        if message.len() > MAX_MESSAGE {
            return Err(Error::Io {
                what: "start a program".into(),
                reason: "arguments and environment are larger than 1MiB".into(),
            });
        }
        if self.task_host_id.is_some() {
            for fd in &request.stdio {
                give_pipe_to_task(*fd);
            }
        }
        // Copies of the descriptors travel with the message, which may wait in the outbox.
        let fds = request
            .stdio
            .iter()
            .map(|fd| fd.try_clone_to_owned())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::io("start a program", &e))?;
        self.outbox.push_back((message, fds));
        self.flush()?;
        Ok(id)
    }

    /// Send what the outbox holds until the init's queue is full. Call it whenever the init
    /// may have read (after handling its events, and on a short timer while
    /// [`Sandbox::has_unsent`]). An error means the init is gone.
    pub fn flush(&mut self) -> Result<(), Error> {
        while let Some((message, fds)) = self.outbox.front() {
            let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
            match sys::try_send_with_fds(self.sock.as_fd(), message, &raw) {
                Ok(true) => {
                    self.outbox.pop_front();
                }
                Ok(false) => break,
                Err(e) => return Err(Error::io("reach the task's init", &e)),
            }
        }
        Ok(())
    }

    /// Whether messages wait in the outbox.
    pub fn has_unsent(&self) -> bool {
        !self.outbox.is_empty()
    }

    /// Read the next event without blocking. `Ok(None)`: nothing yet. An error means the
    /// init is gone.
    pub fn try_event(&mut self) -> Result<Option<Event>, Error> {
        let mut fds = Vec::new();
        let n = match sys::recv_with_fds(self.sock.as_fd(), &mut self.buf, &mut fds, true) {
            Ok(0) => return Err(self.init_failure(None)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(Error::io("read from the task's init", &e)),
        };
        Ok(match FromInit::decode(&self.buf[..n]) {
            Some(FromInit::Spawned { id, pid }) => Some(Event::Spawned { id, pid }),
            Some(FromInit::SpawnFailed { id, errno }) => Some(Event::SpawnFailed { id, errno }),
            Some(FromInit::Exited { id, code, signal }) => Some(Event::Exited {
                id,
                status: if signal != 0 {
                    ExitStatus::Signal(signal)
                } else {
                    ExitStatus::Code(code)
                },
            }),
            _ => None,
        })
    }

    /// Block until the next event (or the init ends).
    pub fn wait_event(&mut self) -> Result<Event, Error> {
        loop {
            if let Some(event) = self.try_event()? {
                return Ok(event);
            }
            let ready = sys::poll_readable(&[self.sock.as_fd(), self.pidfd.as_fd()], -1)
                .map_err(|e| Error::io("wait for the task", &e))?;
            if ready.get(1).copied().unwrap_or(false) && !ready.first().copied().unwrap_or(false) {
                return Err(self.init_failure(None));
            }
        }
    }

    /// The directory of the task's freezer cgroup, for [`crate::freezer::freeze`] and
    /// [`crate::freezer::thaw`]; `Err` (one line) when the task has none.
    pub fn freezer_dir(&self) -> Result<PathBuf, String> {
        match &self.freezer {
            // A limit put the task in a cgroup of the unified hierarchy, and moved it out of
            // the freezer leaf: that cgroup holds it.
            Some(Ok(_)) if self.cgroups.unified().is_some() => Ok(self
                .cgroups
                .unified()
                .map(Path::to_path_buf)
                .unwrap_or_default()),
            Some(Ok(f)) => Ok(f.dir().to_path_buf()),
            Some(Err(why)) => Err(why.clone()),
            None => Err("the task was started without a freezer".into()),
        }
    }

    /// Send a signal to a spawned program (its group if it has one).
    pub fn signal(&mut self, id: u64, signal: i32) -> Result<(), Error> {
        self.outbox
            .push_back((ToInit::Signal { id, signal }.encode(), Vec::new()));
        self.flush()
    }

    /// Kill everything in the sandbox at once (the pid namespace goes with its init).
    pub fn kill(&mut self) {
        self.cgroups.kill_all();
        let _ = sys::pidfd_send_signal(self.pidfd.as_fd(), libc::SIGKILL);
    }

    fn wait_init(&mut self) -> Option<ExitStatus> {
        if self.reaped {
            return None;
        }
        self.reaped = true;
        match sys::waitpid(self.init_pid, false) {
            Ok(Some((_, sys::Exit::Code(c)))) => Some(ExitStatus::Code(c)),
            Ok(Some((_, sys::Exit::Signal(s)))) => Some(ExitStatus::Signal(s)),
            _ => None,
        }
    }

    /// Kill everything and wait until nothing of the task is left.
    pub fn shutdown(mut self) {
        self.kill();
        self.wait_init();
    }

    /// Wait until the init (and with it every process of the task) is gone; call after
    /// [`Sandbox::kill`].
    pub fn wait_until_gone(&mut self) {
        self.wait_init();
    }
}

/// A sandbox whose init is still building the task's tree (from [`Sandbox::start`]).
#[derive(Debug)]
pub struct Starting(Sandbox);

impl Starting {
    /// The init's pid on the host.
    pub fn init_pid(&self) -> i32 {
        self.0.init_pid
    }

    /// Wait until the init is ready to start programs.
    pub fn ready(mut self) -> Result<Sandbox, Error> {
        self.0.finish_setup()?;
        Ok(self.0)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill();
            self.wait_init();
        }
    }
}

/// An anonymous pipe handed to a task as a standard stream belongs to whoever created it,
/// with mode 0600; a task running as another user could then not reopen it through
/// `/dev/stdout` or `/proc/self/fd`, which scripts do (`echo oops > /dev/stderr`). Give such
/// pipes to the task's user. Only anonymous pipes: they exist for this one pipeline and have
/// no path, so their owner matters for nothing else. Files and terminals are left alone.
fn give_pipe_to_task(fd: BorrowedFd<'_>) {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_default();
    if link.to_string_lossy().starts_with("pipe:[") {
        let _ = std::os::unix::fs::fchown(fd, Some(TASK_HOST_ID), Some(TASK_HOST_ID));
    }
}

/// Path of a program as a C string (for callers that check it before spawning).
pub(crate) fn c_path(path: &Path) -> Option<CString> {
    CString::new(path.as_os_str().as_bytes()).ok()
}
