//! Observing `execve`: every program a task starts reaches the supervisor as an
//! [`ExecAttempt`] (seccomp user notification) and waits until the supervisor answers.
//!
//! What the supervisor reads here comes from a hostile process's memory, so every read is
//! bounded and every failure is a refusal. A decision made here can race another thread of
//! the same process rewriting the path or argv between our read and the kernel's (the known
//! limit of seccomp notification); hard enforcement is Landlock execute rules and mount masks.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

use crate::sys;

/// Most arguments read from one `execve`.
const MAX_ARGS: usize = 4096;
/// Most bytes of arguments read from one `execve`.
const MAX_ARG_BYTES: usize = 256 * 1024;
/// Longest single string read.
const MAX_STRING: usize = 128 * 1024;

/// The file a program was started from, as found inside the task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramFile {
    /// Device and inode (the same inside and outside: bind mounts keep them).
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// `#!` interpreter line split into words, if the file is a script.
    pub interpreter: Option<Vec<String>>,
}

/// One `execve` waiting for a decision.
#[derive(Debug, Clone)]
pub struct ExecAttempt {
    /// Notification id (internal).
    id: u64,
    /// Host pid of the calling process.
    pub host_pid: i32,
    /// Pid inside the task.
    pub pid: i32,
    /// Parent pid inside the task.
    pub ppid: i32,
    /// The path passed to `execve` (possibly relative).
    pub path: String,
    /// The path made absolute against the caller's working directory (lossily decoded: for
    /// messages and names; the file is opened by its exact bytes).
    pub absolute: String,
    /// The same, byte for byte: a name that is not UTF-8 must not lead to another file
    /// than the one the kernel runs (`\xff/x` is not `\u{fffd}/x`).
    absolute_raw: Vec<u8>,
    /// Arguments (lossily decoded; at most 4096 of them and 256 KiB in all).
    pub argv: Vec<String>,
    /// Whether arguments were cut.
    pub truncated: bool,
    /// Working directory of the caller, inside the task.
    pub cwd: String,
    /// The file to be executed, when it exists.
    pub program: Option<ProgramFile>,
}

/// The supervisor's end of the notification channel of one sandbox.
#[derive(Debug)]
pub struct ExecWatch {
    listener: OwnedFd,
}

/// How to answer an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let the call proceed.
    Allow,
    /// Fail it with this errno (`EACCES` for denials, `ENOENT` for missing files).
    Deny(i32),
}

impl ExecWatch {
    pub(crate) fn new(listener: OwnedFd) -> ExecWatch {
        ExecWatch { listener }
    }

    /// The descriptor to poll for readability.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    /// Receive the next attempt. `Ok(None)` when nothing is pending or the caller already
    /// died; an error of kind `BrokenPipe` when no process of the task is left (nothing
    /// will ever arrive again). Attempts whose memory cannot be read are refused on the spot
    /// and skipped.
    pub fn recv(&self) -> io::Result<Option<ExecAttempt>> {
        let Some(n) = sys::notif_recv(self.listener.as_fd())? else {
            return Ok(None);
        };
        match read_attempt(&n) {
            Ok(attempt) => {
                // The process may have died and its pid been reused while we read: the
                // notification must still be pending for what we read to be about it.
                if !sys::notif_id_valid(self.listener.as_fd(), n.id) {
                    return Ok(None);
                }
                Ok(Some(attempt))
            }
            Err(_) => {
                let _ = sys::notif_respond(self.listener.as_fd(), n.id, Some(libc::EACCES));
                Ok(None)
            }
        }
    }

    /// Whether the attempt's process is still waiting for an answer. It is not once it died,
    /// or once something interrupted its `execve` (the task frozen meanwhile), which the
    /// kernel then restarts as a new attempt.
    pub fn pending(&self, attempt: &ExecAttempt) -> bool {
        sys::notif_id_valid(self.listener.as_fd(), attempt.id)
    }

    /// Answer an attempt.
    pub fn respond(&self, attempt: &ExecAttempt, verdict: Verdict) -> io::Result<()> {
        let errno = match verdict {
            Verdict::Allow => None,
            Verdict::Deny(e) => Some(e),
        };
        sys::notif_respond(self.listener.as_fd(), attempt.id, errno)
    }

    /// Open the program file of an attempt (for hashing), resolved inside the task.
    /// Only a regular file is opened: the task may have swapped in a FIFO, whose opening
    /// would block the supervisor until somebody writes to it.
    pub fn open_program(&self, attempt: &ExecAttempt) -> io::Result<File> {
        let file = open_inside(attempt.host_pid, &attempt.absolute_raw)?;
        if !file.metadata()?.is_file() {
            return Err(io::Error::from_raw_os_error(libc::EACCES));
        }
        Ok(file)
    }

    /// Open, as the task sees it, a file an attempt's program was asked to run (a loader's
    /// program argument): an absolute path inside the task, or one relative to the caller's
    /// working directory. Only a regular file is opened.
    pub fn open_named(&self, attempt: &ExecAttempt, name: &str) -> io::Result<File> {
        let path = if name.starts_with('/') {
            name.as_bytes().to_vec()
        } else {
            let mut joined = std::fs::read_link(format!("/proc/{}/cwd", attempt.host_pid))?
                .into_os_string()
                .into_vec();
            while joined.last() == Some(&b'/') {
                joined.pop();
            }
            joined.push(b'/');
            joined.extend_from_slice(name.as_bytes());
            joined
        };
        let file = open_inside(attempt.host_pid, &path)?;
        if !file.metadata()?.is_file() {
            return Err(io::Error::from_raw_os_error(libc::EACCES));
        }
        Ok(file)
    }

    /// Write a one-line message to the standard error of the process behind an attempt, so
    /// a denial explains itself where the agent reads it.
    ///
    /// The supervisor reopens that descriptor with its own rights, which may be more than the
    /// task's (root may write where the task may only read): it writes only when, after
    /// opening, the task's descriptor is still open for writing and still the same file as
    /// the one opened. A task that points its standard error at a file it may only read
    /// (`2</proc/sys/kernel/hostname`) gets no message, and that file is left alone.
    pub fn tell(&self, attempt: &ExecAttempt, message: &str) {
        let pid = attempt.host_pid;
        let Ok(path) = CString::new(format!("/proc/{pid}/fd/2")) else {
            return;
        };
        let Ok(fd) = sys::open_nonblocking_write(&path) else {
            return;
        };
        let opened = File::from(fd);
        let same_file = match (
            opened.metadata(),
            std::fs::metadata(format!("/proc/{pid}/fd/2")),
        ) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        };
        if same_file && task_may_write(pid, 2) {
            let _ = sys::write_all(opened.as_fd(), message.as_bytes());
        }
    }
}

fn read_attempt(n: &sys::Notification) -> io::Result<ExecAttempt> {
    let host_pid = i32::try_from(n.pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    let execveat = n.nr != libc::SYS_execve as i32;
    let (dirfd, path_ptr, argv_ptr) = if execveat {
        (n.args[0] as i32, n.args[1], n.args[2])
    } else {
        (libc::AT_FDCWD, n.args[0], n.args[1])
    };
    let mut budget = MAX_ARG_BYTES;
    let path_raw = read_bytes(host_pid, path_ptr, &mut budget)?;
    let path = String::from_utf8_lossy(&path_raw).into_owned();
    let mut argv = Vec::new();
    let mut truncated = false;
    for i in 0..MAX_ARGS {
        let mut word = [0u8; 8];
        if argv_ptr == 0 {
            break;
        }
        let got = sys::read_process_memory(host_pid, argv_ptr + 8 * i as u64, &mut word)?;
        if got != 8 {
            return Err(io::Error::from_raw_os_error(libc::EFAULT));
        }
        let ptr = u64::from_le_bytes(word);
        if ptr == 0 {
            break;
        }
        if budget == 0 {
            truncated = true;
            break;
        }
        argv.push(read_string(host_pid, ptr, &mut budget)?);
        if i + 1 == MAX_ARGS {
            truncated = true;
        }
    }
    let (pid, ppid) = ns_pids(host_pid);
    let link = |name: String| -> Vec<u8> {
        std::fs::read_link(name)
            .map(|p| p.into_os_string().into_vec())
            .unwrap_or_default()
    };
    let cwd_raw = link(format!("/proc/{host_pid}/cwd"));
    let cwd = String::from_utf8_lossy(&cwd_raw).into_owned();
    let base = if dirfd == libc::AT_FDCWD {
        cwd_raw
    } else {
        link(format!("/proc/{host_pid}/fd/{dirfd}"))
    };
    let absolute_raw = if path_raw.starts_with(b"/") {
        path_raw
    } else if path_raw.is_empty() {
        base
    } else {
        let mut joined = base;
        while joined.last() == Some(&b'/') {
            joined.pop();
        }
        joined.push(b'/');
        joined.extend_from_slice(&path_raw);
        joined
    };
    let absolute = String::from_utf8_lossy(&absolute_raw).into_owned();
    let program = if execveat && path.is_empty() {
        // Located first, opened only if it may be a program (see `open_inside`).
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH)
            .open(format!("/proc/{host_pid}/fd/{dirfd}"))
            .and_then(open_located)
            .ok()
            .and_then(|f| describe(f).ok())
    } else {
        open_inside(host_pid, &absolute_raw)
            .ok()
            .and_then(|f| describe(f).ok())
    };
    Ok(ExecAttempt {
        id: n.id,
        host_pid,
        pid,
        ppid,
        path,
        absolute,
        absolute_raw,
        argv,
        truncated,
        cwd,
        program,
    })
}

/// Whether descriptor `fd` of process `pid` is open for writing (its `fdinfo` flags).
fn task_may_write(pid: i32, fd: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .and_then(|f| i32::from_str_radix(f.trim(), 8).ok())
        })
        .is_some_and(|flags| matches!(flags & libc::O_ACCMODE, libc::O_WRONLY | libc::O_RDWR))
}

/// Open a file as found inside the task, for reading its identity and first line. The
/// supervisor opens it with its own rights, so only what could be a program is opened for
/// reading: a regular file (never a device, whose opening may act), on a filesystem that
/// holds files (never `/proc` or `/sys`, where reading acts too: `/proc/kmsg` drains the
/// host's kernel log).
fn open_inside(host_pid: i32, absolute: &[u8]) -> io::Result<File> {
    let root = File::open(format!("/proc/{host_pid}/root"))?;
    let path = CString::new(absolute).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    open_located(File::from(sys::open_in_root(
        root.as_fd(),
        &path,
        libc::O_PATH,
    )?))
}

/// Open for reading (without blocking) a file located with `O_PATH`, if it may be a program.
fn open_located(located: File) -> io::Result<File> {
    if !located.metadata()?.is_file() || sys::is_pseudo_filesystem(located.as_fd())? {
        return Err(io::Error::from_raw_os_error(libc::EACCES));
    }
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(format!("/proc/self/fd/{}", located.as_raw_fd()))
}

fn describe(mut file: File) -> io::Result<ProgramFile> {
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::from_raw_os_error(libc::EACCES));
    }
    let mut head = [0u8; 256];
    let n = file.read(&mut head).unwrap_or(0);
    let interpreter = head[..n].strip_prefix(b"#!").map(|rest| {
        let line = rest.split(|b| *b == b'\n').next().unwrap_or_default();
        OsStr::from_bytes(line)
            .to_string_lossy()
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    });
    Ok(ProgramFile {
        dev: meta.dev(),
        ino: meta.ino(),
        size: meta.size(),
        interpreter,
    })
}

fn read_string(pid: i32, address: u64, budget: &mut usize) -> io::Result<String> {
    read_bytes(pid, address, budget).map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

fn read_bytes(pid: i32, mut address: u64, budget: &mut usize) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // Never read across a page boundary in one call: the next page may be unmapped.
        let to_page_end = 4096 - (address % 4096) as usize;
        let want = to_page_end.min(chunk.len());
        let got = sys::read_process_memory(pid, address, &mut chunk[..want])?;
        if got == 0 {
            return Err(io::Error::from_raw_os_error(libc::EFAULT));
        }
        if let Some(end) = chunk[..got].iter().position(|b| *b == 0) {
            out.extend_from_slice(&chunk[..end]);
            break;
        }
        out.extend_from_slice(&chunk[..got]);
        address += got as u64;
        if out.len() >= MAX_STRING || out.len() >= *budget {
            break;
        }
    }
    *budget = budget.saturating_sub(out.len() + 1);
    Ok(out)
}

/// The caller's pid and parent pid as seen inside the task (last fields of `NSpid`).
fn ns_pids(host_pid: i32) -> (i32, i32) {
    let status = std::fs::read_to_string(format!("/proc/{host_pid}/status")).unwrap_or_default();
    let last = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().last())
            .and_then(|v| v.parse::<i32>().ok())
    };
    let pid = last("NSpid:").unwrap_or(host_pid);
    let host_ppid = last("PPid:").unwrap_or(0);
    let ppid = std::fs::read_to_string(format!("/proc/{host_ppid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .and_then(|v| v.split_whitespace().last())
                .and_then(|v| v.parse::<i32>().ok())
        })
        .unwrap_or(0);
    (pid, ppid)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::fd::AsFd;

    use super::open_located;

    fn located(path: &str) -> std::fs::File {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH)
            .open(path)
            .unwrap()
    }

    /// What the supervisor opens with its own rights to look at a program: never a file of
    /// `/proc` or `/sys` (reading `/proc/kmsg` would drain the host's kernel log), never a
    /// device or a directory; an ordinary file, yes.
    #[test]
    fn only_what_may_be_a_program_is_opened() {
        for path in [
            "/proc/self/status",
            "/proc/version",
            "/sys/kernel/uevent_seqnum",
        ] {
            if std::path::Path::new(path).exists() {
                assert!(open_located(located(path)).is_err(), "{path}");
            }
        }
        for path in ["/dev/null", "/"] {
            assert!(open_located(located(path)).is_err(), "{path}");
        }
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("x");
        std::fs::write(&program, "#!/bin/sh\n").unwrap();
        let file = open_located(located(program.to_str().unwrap())).unwrap();
        assert!(!crate::sys::is_pseudo_filesystem(file.as_fd()).unwrap());
    }
}
