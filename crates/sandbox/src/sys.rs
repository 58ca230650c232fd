//! Every `unsafe` block of remit lives here: thin wrappers over the Linux system calls the
//! sandbox needs, each returning `io::Result` and taking owned or borrowed descriptors, so the
//! rest of the crate is safe Rust.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::io;
use std::mem::{MaybeUninit, size_of, zeroed};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// `-1` → the current `errno`.
fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn check_long(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Take ownership of a descriptor a system call just returned.
fn owned(fd: libc::c_long) -> io::Result<OwnedFd> {
    let raw =
        RawFd::try_from(check_long(fd)?).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned `raw` as a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

// ---------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------

/// Result of [`clone_process`] in each of the two processes.
#[derive(Debug)]
pub(crate) enum Cloned {
    /// We are the new process.
    Child,
    /// We are the caller; the new process and a pidfd for it.
    Parent { pid: libc::pid_t, pidfd: OwnedFd },
}

/// `clone(2)` with fork semantics (copy-on-write memory, SIGCHLD on exit) plus `flags`
/// (namespaces), returning a pidfd for the child.
///
/// # Safety contract for callers
/// The caller must be single-threaded: the child starts with a copy of this one thread and
/// of every lock as it was, and glibc's fork handlers do not run. After a raw clone the child
/// must not call `raise` or other functions that trust glibc's cached thread id.
pub(crate) fn clone_process(flags: libc::c_int) -> io::Result<Cloned> {
    let mut pidfd: libc::c_int = -1;
    let all = (flags | libc::CLONE_PIDFD | libc::SIGCHLD) as libc::c_ulong;
    // SAFETY: with a null stack pointer clone behaves like fork: the child continues on a
    // copy of this stack. `pidfd` outlives the call; the kernel writes the pidfd into it.
    // INVARIANT: callers are single-threaded (checked by `Sandbox::create`).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            all,
            std::ptr::null_mut::<libc::c_void>(),
            &mut pidfd as *mut libc::c_int,
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    };
    cloned(ret, pidfd)
}

/// [`clone_process`] with the child born into the cgroup whose directory is `cgroup`
/// (`clone3` with `CLONE_INTO_CGROUP`: no migration, so no RCU grace period to wait for).
pub(crate) fn clone_process_into(
    flags: libc::c_int,
    cgroup: std::os::fd::BorrowedFd<'_>,
) -> io::Result<Cloned> {
    /// `struct clone_args` (version 2, with `cgroup`).
    #[repr(C)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let mut pidfd: libc::c_int = -1;
    let args = CloneArgs {
        flags: (flags as u32 as u64) | libc::CLONE_PIDFD as u64 | CLONE_INTO_CGROUP,
        pidfd: &mut pidfd as *mut libc::c_int as u64,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
        stack: 0,
        stack_size: 0,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: std::os::fd::AsRawFd::as_raw_fd(&cgroup) as u64,
    };
    // SAFETY: with no stack, clone3 behaves like fork: the child continues on a copy of this
    // stack. `args` and `pidfd` outlive the call; the kernel writes the pidfd into `pidfd`.
    // INVARIANT: callers are single-threaded (checked by `Sandbox::create`).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    cloned(ret, pidfd)
}

/// What a clone with `CLONE_PIDFD` returned (`ret`, and the descriptor it wrote to `pidfd`),
/// in the parent or in the child.
fn cloned(ret: libc::c_long, pidfd: libc::c_int) -> io::Result<Cloned> {
    let pid = check_long(ret)?;
    if pid == 0 {
        return Ok(Cloned::Child);
    }
    // SAFETY: the clone succeeded in the parent with CLONE_PIDFD set: the kernel stored a new
    // descriptor in `pidfd`, owned by no one else.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok(Cloned::Parent {
        pid: pid as libc::pid_t,
        pidfd,
    })
}

/// `unshare(2)`.
pub(crate) fn unshare(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: unshare takes only flags.
    check(unsafe { libc::unshare(flags) }).map(drop)
}

/// Leave the process immediately, without running destructors or atexit handlers (used by
/// the sandbox's init and after failed setup in a cloned child).
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust state.
    unsafe { libc::_exit(code) }
}

/// `access(path, W_OK)`: whether this process may write `path` (by its real ids).
pub(crate) fn writable(path: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path for the call's duration.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// `kill(2)`.
pub(crate) fn kill(pid: libc::pid_t, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: kill takes plain integers.
    check(unsafe { libc::kill(pid, signal) }).map(drop)
}

/// `pidfd_send_signal(2)`: signal exactly the process the pidfd names (no pid reuse race).
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: a valid descriptor, a signal number, no siginfo, no flags.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    check_long(ret).map(drop)
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// `exit(code)`.
    Code(i32),
    /// Killed by a signal.
    Signal(i32),
}

impl Exit {
    pub(crate) fn from_wait_status(status: libc::c_int) -> Option<Exit> {
        if libc::WIFEXITED(status) {
            Some(Exit::Code(libc::WEXITSTATUS(status)))
        } else if libc::WIFSIGNALED(status) {
            Some(Exit::Signal(libc::WTERMSIG(status)))
        } else {
            None
        }
    }
}

/// `waitpid(pid, WNOHANG?)`: `Ok(None)` when nothing has ended (with WNOHANG) or no child
/// is left.
pub(crate) fn waitpid(pid: libc::pid_t, nohang: bool) -> io::Result<Option<(libc::pid_t, Exit)>> {
    loop {
        let mut status: libc::c_int = 0;
        let flags = if nohang { libc::WNOHANG } else { 0 };
        // SAFETY: `status` is a valid out-pointer for the duration of the call.
        let ret = unsafe { libc::waitpid(pid, &mut status, flags) };
        if ret < 0 {
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ECHILD) => return Ok(None),
                _ => return Err(err),
            }
        }
        if ret == 0 {
            return Ok(None);
        }
        match Exit::from_wait_status(status) {
            Some(exit) => return Ok(Some((ret, exit))),
            // Stopped or continued: not an end.
            None => continue,
        }
    }
}

/// `posix_spawn(3)`: start `path` with `argv`/`envp`, in `cwd`, with the three descriptors
/// as its standard streams and every signal reset to its default and unblocked.
pub(crate) fn spawn(
    path: &CStr,
    argv: &[CString],
    envp: &[CString],
    cwd: &CStr,
    stdio: [RawFd; 3],
    new_process_group: bool,
) -> io::Result<libc::pid_t> {
    let mut argv_ptrs: Vec<*mut libc::c_char> =
        argv.iter().map(|a| a.as_ptr().cast_mut()).collect();
    argv_ptrs.push(std::ptr::null_mut());
    let mut envp_ptrs: Vec<*mut libc::c_char> =
        envp.iter().map(|e| e.as_ptr().cast_mut()).collect();
    envp_ptrs.push(std::ptr::null_mut());

    // SAFETY: the attribute and file-action objects are initialised before use, destroyed on
    // every path, and every pointer handed to posix_spawn (path, argv, envp, cwd) outlives the
    // call; posix_spawn copies what it needs before returning.
    unsafe {
        let mut actions: libc::posix_spawn_file_actions_t = zeroed();
        let mut attr: libc::posix_spawnattr_t = zeroed();
        let r = libc::posix_spawn_file_actions_init(&mut actions);
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        let r = libc::posix_spawnattr_init(&mut attr);
        if r != 0 {
            libc::posix_spawn_file_actions_destroy(&mut actions);
            return Err(io::Error::from_raw_os_error(r));
        }
        let result = (|| {
            for (target, source) in stdio.iter().enumerate() {
                let r = libc::posix_spawn_file_actions_adddup2(
                    &mut actions,
                    *source,
                    target as libc::c_int,
                );
                if r != 0 {
                    return Err(io::Error::from_raw_os_error(r));
                }
            }
            let r = libc::posix_spawn_file_actions_addchdir_np(&mut actions, cwd.as_ptr());
            if r != 0 {
                return Err(io::Error::from_raw_os_error(r));
            }
            let mut empty: libc::sigset_t = zeroed();
            libc::sigemptyset(&mut empty);
            let mut all: libc::sigset_t = zeroed();
            libc::sigfillset(&mut all);
            let mut flags = libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF;
            if new_process_group {
                flags |= libc::POSIX_SPAWN_SETPGROUP;
                libc::posix_spawnattr_setpgroup(&mut attr, 0);
            }
            libc::posix_spawnattr_setsigmask(&mut attr, &empty);
            libc::posix_spawnattr_setsigdefault(&mut attr, &all);
            let r = libc::posix_spawnattr_setflags(&mut attr, flags as libc::c_short);
            if r != 0 {
                return Err(io::Error::from_raw_os_error(r));
            }
            let mut pid: libc::pid_t = 0;
            let r = libc::posix_spawn(
                &mut pid,
                path.as_ptr(),
                &actions,
                &attr,
                argv_ptrs.as_ptr(),
                envp_ptrs.as_ptr(),
            );
            if r != 0 {
                return Err(io::Error::from_raw_os_error(r));
            }
            Ok(pid)
        })();
        libc::posix_spawn_file_actions_destroy(&mut actions);
        libc::posix_spawnattr_destroy(&mut attr);
        result
    }
}

/// Number of threads of this process (from `/proc/self/stat`).
pub(crate) fn thread_count() -> io::Result<usize> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // The command name may contain spaces and parentheses; fields resume after the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::other("unreadable /proc/self/stat"))?;
    rest.split_whitespace()
        .nth(17)
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| io::Error::other("unreadable /proc/self/stat"))
}

/// Real user and group ids of this process.
pub(crate) fn ids() -> (libc::uid_t, libc::gid_t) {
    // SAFETY: getuid and getgid cannot fail.
    unsafe { (libc::getuid(), libc::getgid()) }
}

/// `setresgid` then `setresuid` to one id each.
pub(crate) fn become_ids(uid: libc::uid_t, gid: libc::gid_t) -> io::Result<()> {
    // SAFETY: plain integer arguments.
    check(unsafe { libc::setresgid(gid, gid, gid) })?;
    // SAFETY: plain integer arguments.
    check(unsafe { libc::setresuid(uid, uid, uid) }).map(drop)
}

/// `sethostname(2)`.
pub(crate) fn sethostname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes.
    check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }).map(drop)
}

/// `chdir(2)`.
pub(crate) fn chdir(path: &CStr) -> io::Result<()> {
    // SAFETY: `path` is a valid NUL-terminated string.
    check(unsafe { libc::chdir(path.as_ptr()) }).map(drop)
}

/// `dup2(2)` onto a standard stream.
pub(crate) fn dup2(from: RawFd, to: RawFd) -> io::Result<()> {
    // SAFETY: plain integers; dup2 validates both.
    check(unsafe { libc::dup2(from, to) }).map(drop)
}

/// Mark every descriptor from `first` up close-on-exec, so nothing the supervisor happened
/// to inherit reaches a task's programs.
pub(crate) fn cloexec_from(first: u32) -> io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range with the CLOEXEC flag only sets flags on descriptors.
    check_long(unsafe {
        libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC)
    })
    .map(drop)
}

/// Set a resource limit (soft and hard).
pub(crate) fn set_rlimit(resource: libc::__rlimit_resource_t, value: u64) -> io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: `limit` is a valid rlimit for the duration of the call.
    check(unsafe { libc::setrlimit(resource, &limit) }).map(drop)
}

// ---------------------------------------------------------------------------------------
// Privileges
// ---------------------------------------------------------------------------------------

fn prctl(option: libc::c_int, arg2: libc::c_ulong) -> io::Result<libc::c_int> {
    // SAFETY: every option used here takes integer arguments only.
    check(unsafe {
        libc::prctl(
            option,
            arg2,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    })
}

/// `PR_SET_NO_NEW_PRIVS`: no exec may ever grant privileges (setuid bits, file caps).
pub(crate) fn no_new_privs() -> io::Result<()> {
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1).map(drop)
}

/// `PR_SET_PDEATHSIG`.
pub(crate) fn parent_death_signal(signal: libc::c_int) -> io::Result<()> {
    prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong).map(drop)
}

/// `PR_SET_DUMPABLE`: a non-dumpable process cannot be ptraced or read through /proc by
/// processes of the same uid.
pub(crate) fn set_dumpable(dumpable: bool) -> io::Result<()> {
    prctl(libc::PR_SET_DUMPABLE, u64::from(dumpable) as libc::c_ulong).map(drop)
}

/// Drop every capability: the bounding set, the ambient set and the permitted, effective
/// and inheritable sets; lock the securebits so uid 0 can never regain them.
pub(crate) fn drop_all_capabilities() -> io::Result<()> {
    let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<libc::c_ulong>().ok())
        .unwrap_or(63);
    for cap in 0..=last_cap {
        match prctl(libc::PR_CAPBSET_DROP, cap) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
            Err(e) => return Err(e),
        }
    }
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes no pointers.
    check(unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    })?;
    let bits = libc::SECBIT_NOROOT
        | libc::SECBIT_NOROOT_LOCKED
        | libc::SECBIT_NO_SETUID_FIXUP
        | libc::SECBIT_NO_SETUID_FIXUP_LOCKED
        | libc::SECBIT_KEEP_CAPS_LOCKED
        | libc::SECBIT_NO_CAP_AMBIENT_RAISE
        | libc::SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
    prctl(libc::PR_SET_SECUREBITS, bits as libc::c_ulong)?;
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: header and two data structs as capset(2) version 3 requires, alive for the call.
    check_long(unsafe { libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) })
        .map(drop)
}

// ---------------------------------------------------------------------------------------
// Mounts
// ---------------------------------------------------------------------------------------

pub(crate) const OPEN_TREE_CLONE: u32 = 1;
pub(crate) const AT_RECURSIVE: u32 = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;
pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub(crate) const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub(crate) const MOUNT_ATTR_NODEV: u64 = 0x4;
pub(crate) const MOUNT_ATTR_NOEXEC: u64 = 0x8;
pub(crate) const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `mount(2)`.
pub(crate) fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> io::Result<()> {
    let ptr = |s: Option<&CStr>| s.map(CStr::as_ptr).unwrap_or(std::ptr::null());
    // SAFETY: every pointer is null or a valid NUL-terminated string alive for the call.
    check(unsafe {
        libc::mount(
            ptr(source),
            target.as_ptr(),
            ptr(fstype),
            flags,
            ptr(data).cast(),
        )
    })
    .map(drop)
}

/// `umount2(target, MNT_DETACH)`.
pub(crate) fn umount_detach(target: &CStr) -> io::Result<()> {
    // SAFETY: `target` is a valid NUL-terminated string.
    check(unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) }).map(drop)
}

/// `pivot_root(2)`.
pub(crate) fn pivot_root(new_root: &CStr, put_old: &CStr) -> io::Result<()> {
    // SAFETY: both are valid NUL-terminated strings.
    check_long(unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) })
        .map(drop)
}

/// `open_tree(2)` relative to the current directory (or absolute).
pub(crate) fn open_tree(path: &CStr, flags: u32) -> io::Result<OwnedFd> {
    // SAFETY: `path` is a valid NUL-terminated string; the result is a new descriptor.
    owned(unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            flags | libc::O_CLOEXEC as u32,
        )
    })
}

/// `move_mount(2)` of a detached tree onto `target` (relative to the current directory).
pub(crate) fn move_mount(tree: BorrowedFd<'_>, target: &CStr) -> io::Result<()> {
    // SAFETY: an empty source path with MOVE_MOUNT_F_EMPTY_PATH names `tree` itself.
    check_long(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })
    .map(drop)
}

/// `mount_setattr(2)` on a mount (or detached tree) given as a descriptor.
pub(crate) fn mount_setattr(
    tree: BorrowedFd<'_>,
    recursive: bool,
    set: u64,
    clear: u64,
    userns: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: userns.map(|fd| fd.as_raw_fd() as u64).unwrap_or(0),
    };
    let flags = libc::AT_EMPTY_PATH as u32 | if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: `attr` is a valid mount_attr of the size passed, alive for the call.
    check_long(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            size_of::<MountAttr>(),
        )
    })
    .map(drop)
}

/// `openat2(root, path, O_PATH|O_CLOEXEC, RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS)`: resolve
/// `path` as if `root` were `/`, so absolute symlinks and `..` cannot leave it.
/// Whether `fd` lies on a kernel pseudo-filesystem (proc, sysfs, debugfs, tracefs,
/// securityfs, cgroup, bpf, nsfs), whose files act when read rather than hold a program.
pub(crate) fn is_pseudo_filesystem(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: statfs is plain data; all-zero is a valid value.
    let mut st: libc::statfs = unsafe { zeroed() };
    // SAFETY: `fd` is a valid descriptor and `st` a valid statfs to write.
    if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    const PSEUDO: [i64; 9] = [
        0x9fa0,      // proc
        0x6265_6572, // sysfs
        0x6462_6720, // debugfs
        0x7472_6163, // tracefs
        0x7363_6673, // securityfs
        0x0027_e0eb, // cgroup
        0x6367_7270, // cgroup2
        0xcafe_4a11, // bpf
        0x6e73_6673, // nsfs
    ];
    Ok(PSEUDO.contains(&st.f_type))
}

pub(crate) fn open_in_root(
    root: BorrowedFd<'_>,
    path: &CStr,
    flags: libc::c_int,
) -> io::Result<OwnedFd> {
    // SAFETY: open_how is plain data; all-zero is a valid value.
    let mut how: libc::open_how = unsafe { zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: `path` is NUL-terminated and `how` is a valid open_how of the size passed.
    owned(unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            path.as_ptr(),
            &how as *const libc::open_how,
            size_of::<libc::open_how>(),
        )
    })
}

// ---------------------------------------------------------------------------------------
// Network
// ---------------------------------------------------------------------------------------

/// Bring the loopback interface of the current network namespace up.
pub(crate) fn loopback_up() -> io::Result<()> {
    // SAFETY: a plain socket call; the descriptor is owned right away.
    let sock =
        owned(
            unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) }
                as libc::c_long,
        )?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { zeroed() };
    for (slot, byte) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = *byte as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads an ifreq, which `req` is, alive for the call.
    check(unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCSIFFLAGS,
            &req as *const libc::ifreq,
        )
    })
    .map(drop)
}

// ---------------------------------------------------------------------------------------
// Descriptor passing
// ---------------------------------------------------------------------------------------

/// A connected `SOCK_SEQPACKET` pair (message boundaries kept, close-on-exec).
pub(crate) fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors socketpair writes.
    check(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: both descriptors are new and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

const MAX_FDS: usize = 8;

/// Send one message with up to 8 descriptors attached (SCM_RIGHTS).
pub(crate) fn send_with_fds(sock: BorrowedFd<'_>, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    send_with_fds_flags(sock, data, fds, 0)
}

/// [`send_with_fds`] without waiting: `Ok(false)` when the receiver's queue is full.
pub(crate) fn try_send_with_fds(
    sock: BorrowedFd<'_>,
    data: &[u8],
    fds: &[RawFd],
) -> io::Result<bool> {
    match send_with_fds_flags(sock, data, fds, libc::MSG_DONTWAIT) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e),
    }
}

fn send_with_fds_flags(
    sock: BorrowedFd<'_>,
    data: &[u8],
    fds: &[RawFd],
    flags: libc::c_int,
) -> io::Result<()> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut iov = libc::iovec {
        iov_base: data.as_ptr().cast_mut().cast(),
        iov_len: data.len(),
    };
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE((MAX_FDS * size_of::<RawFd>()) as u32) } as usize;
    let mut control = vec![0u8; space];
    // SAFETY: msghdr is plain old data; all-zero is a valid value.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        // SAFETY: pure size computation.
        msg.msg_controllen =
            unsafe { libc::CMSG_SPACE(std::mem::size_of_val(fds) as u32) } as usize;
        // SAFETY: the control buffer is large enough for one header carrying `fds`, as
        // computed by CMSG_SPACE; CMSG_FIRSTHDR/CMSG_DATA point inside it.
        unsafe {
            let header = libc::CMSG_FIRSTHDR(&msg);
            (*header).cmsg_level = libc::SOL_SOCKET;
            (*header).cmsg_type = libc::SCM_RIGHTS;
            (*header).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(fds) as u32) as usize;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr(),
                libc::CMSG_DATA(header).cast::<RawFd>(),
                fds.len(),
            );
        }
    }
    loop {
        // SAFETY: `msg` points at `iov` and `control`, both alive for the call.
        let ret = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL | flags) };
        if ret >= 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

/// Receive one message and the descriptors attached to it. `Ok(0)` with no descriptors
/// means the peer closed.
pub(crate) fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    nonblocking: bool,
) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: pure size computation.
    let space = unsafe { libc::CMSG_SPACE((MAX_FDS * size_of::<RawFd>()) as u32) } as usize;
    let mut control = vec![0u8; space];
    // SAFETY: msghdr is plain old data; all-zero is a valid value.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space;
    let flags = libc::MSG_CMSG_CLOEXEC | if nonblocking { libc::MSG_DONTWAIT } else { 0 };
    let n = loop {
        // SAFETY: `msg` points at `iov` and `control`, both alive for the call.
        let ret = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, flags) };
        if ret >= 0 {
            break ret as usize;
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    };
    // SAFETY: the kernel filled `control` up to msg_controllen; the CMSG_* macros walk only
    // within it, and every SCM_RIGHTS descriptor is new and ours to own.
    unsafe {
        let mut header = libc::CMSG_FIRSTHDR(&msg);
        while !header.is_null() {
            if (*header).cmsg_level == libc::SOL_SOCKET && (*header).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(header).cast::<RawFd>();
                let bytes = (*header).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..bytes / size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            header = libc::CMSG_NXTHDR(&msg, header);
        }
    }
    if msg.msg_flags & libc::MSG_TRUNC != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "message truncated",
        ));
    }
    Ok(n)
}

// ---------------------------------------------------------------------------------------
// Signals
// ---------------------------------------------------------------------------------------

fn sigset(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise and fill it.
    unsafe {
        let mut set: libc::sigset_t = zeroed();
        libc::sigemptyset(&mut set);
        for s in signals {
            libc::sigaddset(&mut set, *s);
        }
        set
    }
}

/// Block `signals` for this thread and return a signalfd that reads them.
pub(crate) fn signalfd(signals: &[libc::c_int]) -> io::Result<OwnedFd> {
    let set = sigset(signals);
    // SAFETY: `set` is initialised; the old mask is not wanted.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    // SAFETY: `set` is initialised; -1 asks for a new descriptor.
    owned(
        unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) } as libc::c_long,
    )
}

/// One signal read from a signalfd: number, `si_code`, sender pid.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SignalInfo {
    pub(crate) signal: libc::c_int,
    pub(crate) code: i32,
}

/// Read one pending signal from a non-blocking signalfd.
pub(crate) fn read_signal(fd: BorrowedFd<'_>) -> io::Result<Option<SignalInfo>> {
    let mut info = MaybeUninit::<libc::signalfd_siginfo>::zeroed();
    let size = size_of::<libc::signalfd_siginfo>();
    // SAFETY: `info` has room for exactly one signalfd_siginfo.
    let n = unsafe { libc::read(fd.as_raw_fd(), info.as_mut_ptr().cast(), size) };
    if n < 0 {
        let err = io::Error::last_os_error();
        return match err.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
            _ => Err(err),
        };
    }
    if n as usize != size {
        return Ok(None);
    }
    // SAFETY: the kernel wrote a whole signalfd_siginfo.
    let info = unsafe { info.assume_init() };
    Ok(Some(SignalInfo {
        signal: info.ssi_signo as libc::c_int,
        code: info.ssi_code,
    }))
}

/// Ignore SIGTTOU and SIGTTIN (see `host::ignore_terminal_stops`).
pub(crate) fn ignore_terminal_stops() {
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler: nothing runs
    // in signal context.
    unsafe {
        libc::signal(libc::SIGTTOU, libc::SIG_IGN);
        libc::signal(libc::SIGTTIN, libc::SIG_IGN);
    }
}

/// Restore the default disposition of `signal` and deliver it to this process (used to exit
/// "by the same signal" as the contained command).
pub(crate) fn die_by_signal(signal: libc::c_int) {
    let limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain calls with valid arguments: no core file, default disposition, unblock,
    // then signal ourselves.
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &limit);
        libc::signal(signal, libc::SIG_DFL);
        let set = sigset(&[signal]);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::kill(libc::getpid(), signal);
    }
}

// ---------------------------------------------------------------------------------------
// Polling
// ---------------------------------------------------------------------------------------

/// `poll(2)` on descriptors for readability; returns which are ready (or hung up).
pub(crate) fn poll_readable(fds: &[BorrowedFd<'_>], timeout_ms: i32) -> io::Result<Vec<bool>> {
    let mut pollfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: `pollfds` is a valid array of the length passed.
        let ret = unsafe {
            libc::poll(
                pollfds.as_mut_ptr(),
                pollfds.len() as libc::nfds_t,
                timeout_ms,
            )
        };
        if ret >= 0 {
            break;
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
    Ok(pollfds.iter().map(|p| p.revents != 0).collect())
}

// ---------------------------------------------------------------------------------------
// seccomp
// ---------------------------------------------------------------------------------------

/// Install a seccomp filter on this thread (and its future children). With `listener`, the
/// kernel returns a user-notification descriptor.
pub(crate) fn seccomp_install(
    program: &[libc::sock_filter],
    listener: bool,
) -> io::Result<Option<OwnedFd>> {
    let prog = libc::sock_fprog {
        len: u16::try_from(program.len())
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
        filter: program.as_ptr().cast_mut(),
    };
    let flags = if listener {
        libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
    } else {
        0
    };
    // SAFETY: `prog` points at `program`, alive for the call; the kernel copies it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &prog as *const libc::sock_fprog,
        )
    };
    if listener {
        owned(ret).map(Some)
    } else {
        check_long(ret).map(|_| None)
    }
}

/// Whether the kernel supports seccomp user notification (SECCOMP_GET_NOTIF_SIZES).
pub(crate) fn seccomp_notify_supported() -> bool {
    // SAFETY: seccomp_notif_sizes is plain data; the kernel fills it.
    let mut sizes: libc::seccomp_notif_sizes = unsafe { zeroed() };
    // SAFETY: `sizes` is a valid out-pointer for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_NOTIF_SIZES,
            0,
            &mut sizes as *mut libc::seccomp_notif_sizes,
        )
    };
    ret == 0 && usize::from(sizes.seccomp_notif) >= size_of::<libc::seccomp_notif>()
}

/// Whether seccomp filters are available at all (`PR_GET_SECCOMP` answers).
pub(crate) fn seccomp_supported() -> bool {
    prctl(libc::PR_GET_SECCOMP, 0).is_ok()
}

/// One pending seccomp notification.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Notification {
    pub(crate) id: u64,
    pub(crate) pid: u32,
    pub(crate) nr: i32,
    pub(crate) args: [u64; 6],
}

/// Receive one notification (blocking unless the descriptor is polled first). `Ok(None)`
/// when the notifying process died before it could be read.
pub(crate) fn notif_recv(listener: BorrowedFd<'_>) -> io::Result<Option<Notification>> {
    let mut pollfd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no wait.
    let ready = unsafe { libc::poll(&mut pollfd, 1, 0) };
    if ready < 0 {
        return Err(io::Error::last_os_error());
    }
    if pollfd.revents & libc::POLLIN == 0 {
        if pollfd.revents & (libc::POLLHUP | libc::POLLERR) != 0 {
            // Every process the filter applied to is gone: nothing will ever arrive.
            return Err(io::Error::from(io::ErrorKind::BrokenPipe));
        }
        return Ok(None);
    }
    // SAFETY: the kernel requires a zeroed seccomp_notif; it is plain data.
    let mut notif: libc::seccomp_notif = unsafe { zeroed() };
    loop {
        // SAFETY: `notif` is a valid seccomp_notif for the ioctl to fill.
        let ret = unsafe {
            libc::ioctl(
                listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_RECV,
                &mut notif as *mut libc::seccomp_notif,
            )
        };
        if ret == 0 {
            break;
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::ENOENT) | Some(libc::EAGAIN) => return Ok(None),
            _ => return Err(err),
        }
    }
    Ok(Some(Notification {
        id: notif.id,
        pid: notif.pid,
        nr: notif.data.nr,
        args: notif.data.args,
    }))
}

/// Whether a notification is still pending (its process has not died or been replaced).
pub(crate) fn notif_id_valid(listener: BorrowedFd<'_>, id: u64) -> bool {
    // SAFETY: ID_VALID reads a u64, alive for the call.
    unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_ID_VALID,
            &id as *const u64,
        ) == 0
    }
}

/// Answer a notification: let the call proceed, or fail it with `errno`.
pub(crate) fn notif_respond(
    listener: BorrowedFd<'_>,
    id: u64,
    errno: Option<i32>,
) -> io::Result<()> {
    let resp = libc::seccomp_notif_resp {
        id,
        val: 0,
        error: errno.map(|e| -e).unwrap_or(0),
        flags: if errno.is_none() {
            libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32
        } else {
            0
        },
    };
    // SAFETY: SEND reads a seccomp_notif_resp, alive for the call.
    let ret = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND,
            &resp as *const libc::seccomp_notif_resp,
        )
    };
    if ret == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    // The process died or was interrupted meanwhile: nothing to answer.
    if err.raw_os_error() == Some(libc::ENOENT) {
        return Ok(());
    }
    Err(err)
}

/// Read `buf.len()` bytes (or fewer, at an unmapped page) from another process's memory.
pub(crate) fn read_process_memory(
    pid: libc::pid_t,
    address: u64,
    buf: &mut [u8],
) -> io::Result<usize> {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: address as usize as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: `local` describes `buf`, which we own; the remote address is only read by the
    // kernel, which validates it against the other process's address space.
    let ret = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

// ---------------------------------------------------------------------------------------
// Landlock
// ---------------------------------------------------------------------------------------

/// The Landlock ABI version this kernel offers (0 when Landlock is unavailable).
pub(crate) fn landlock_abi() -> i32 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    const SYS_LANDLOCK_CREATE_RULESET: libc::c_long = 444;
    // SAFETY: with a null attribute, zero size and the VERSION flag the call only reports.
    let ret = unsafe {
        libc::syscall(
            SYS_LANDLOCK_CREATE_RULESET,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if ret < 0 { 0 } else { ret as i32 }
}

/// Write `text` to a descriptor, retrying on EINTR; short writes continue.
pub(crate) fn write_all(fd: BorrowedFd<'_>, mut text: &[u8]) -> io::Result<()> {
    while !text.is_empty() {
        // SAFETY: the pointer and length describe `text`.
        let n = unsafe { libc::write(fd.as_raw_fd(), text.as_ptr().cast(), text.len()) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(err);
        }
        text = &text[n as usize..];
    }
    Ok(())
}

/// Open a path for writing without blocking and without acquiring a controlling terminal.
pub(crate) fn open_nonblocking_write(path: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: `path` is NUL-terminated; the result is a new descriptor.
    owned(unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_WRONLY | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC | libc::O_APPEND,
        )
    } as libc::c_long)
}

/// Register a descriptor with the tokio reactor.
pub(crate) fn register_async(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: tokio requires the descriptor to stay open while registered; the AsyncFd owns
    // it (an OwnedFd nobody else can close), so it does until the AsyncFd is dropped.
    unsafe { tokio::io::unix::AsyncFd::register(fd) }.map_err(|e| e.into())
}

/// Have `command`'s child write `0` to `procs` (an open `cgroup.procs`) before it `exec`s:
/// it moves itself into that cgroup.
pub(crate) fn enter_cgroup_before_exec(command: &mut std::process::Command, procs: OwnedFd) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: the closure makes one `write` (async-signal-safe) from a static buffer, to a
    // descriptor it owns (close-on-exec: the command never has it).
    unsafe {
        command.pre_exec(
            move || match libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) {
                1 => Ok(()),
                _ => Err(io::Error::last_os_error()),
            },
        );
    }
}
