//! Files a task may have planted, read and moved by the supervisor: never through a link the
//! task made, never waiting on a FIFO or a device, never over something already there, and
//! git run on them for a bounded time.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long remit's own git may take on a workspace after a task (a FIFO the task left where
/// git reads, `.gitignore` say, would stall it for ever).
pub const GIT_LIMIT: Duration = Duration::from_secs(120);

/// The content of `path` if it is a regular file of at most `max` bytes (`None` otherwise:
/// a link, a FIFO, a device, a directory, too large).
///
/// The file is first opened by `O_PATH`, which reaches no driver, and opened for reading only
/// once that descriptor is known to be a regular file: a device the task linked to (through a
/// directory link earlier in the path, which `O_NOFOLLOW` does not cover) is never opened,
/// and opening some devices acts (a watchdog's reboots the host once closed without its
/// magic character).
pub fn read_regular(path: &Path, max: u64) -> std::io::Result<Option<Vec<u8>>> {
    let handle = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path);
    let handle = match handle {
        Ok(handle) => handle,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(None),
        Err(e) => return Err(e),
    };
    // `O_PATH` with `O_NOFOLLOW` opens a link itself: that is a link, not a file.
    let meta = handle.metadata()?;
    if !meta.is_file() || meta.len() > max {
        return Ok(None);
    }
    // The same inode, now for reading.
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(format!("/proc/self/fd/{}", handle.as_raw_fd()))?;
    let mut data = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1).read_to_end(&mut data)?;
    Ok((data.len() as u64 <= max).then_some(data))
}

/// A small text file (a git pointer, a ref, `HEAD`) read as [`read_regular`] does.
pub fn read_text(path: &Path) -> Option<String> {
    let data = read_regular(path, 1 << 20).ok()??;
    String::from_utf8(data).ok()
}

/// Move `path` (whatever it is; a link itself, not its target) aside to
/// `<path>.remit-quarantine`, or `….remit-quarantine.N` when that is taken.
pub fn quarantine(path: &Path) -> Result<PathBuf, String> {
    for n in 0..100u32 {
        let mut name = path.as_os_str().to_owned();
        name.push(".remit-quarantine");
        if n > 0 {
            name.push(format!(".{n}"));
        }
        let to = PathBuf::from(name);
        if std::fs::symlink_metadata(&to).is_ok() {
            continue;
        }
        return std::fs::rename(path, &to)
            .map(|()| to)
            .map_err(|e| format!("cannot move `{}` aside: {e}", path.display()));
    }
    // Every name beside it taken (by the task, say): into a directory made for it.
    match path.parent() {
        Some(parent) => quarantine_into(path, parent),
        None => Err(format!("cannot move `{}` aside", path.display())),
    }
}

/// Move `path` into a directory made for it beside its parent's parent (`dir`), out of where
/// git looks: `dir/remit-quarantine-<n>/<name>`. For whole git directories found where git
/// would use them (`modules/<name>`), where a name beside it could be one git uses too.
pub fn quarantine_into(path: &Path, dir: &Path) -> Result<PathBuf, String> {
    let name = path
        .file_name()
        .ok_or_else(|| format!("cannot move `{}` aside: no name", path.display()))?;
    for n in 0..100u32 {
        let aside = dir.join(format!("remit-quarantine-{}-{n}", std::process::id()));
        // A directory made now, not one that was there (a link the task planted).
        match std::fs::create_dir(&aside) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("cannot move `{}` aside: {e}", path.display())),
        }
        let to = aside.join(name);
        return std::fs::rename(path, &to)
            .map(|()| to)
            .map_err(|e| format!("cannot move `{}` aside: {e}", path.display()));
    }
    Err(format!(
        "cannot move `{}` aside: no room for it",
        path.display()
    ))
}

/// Largest pointer file kept (a path, a few settings, an included configuration file).
pub const MAX_POINTER: u64 = 1 << 20;

/// A file that points git elsewhere, as found: `None` when absent; empty when it is not a
/// small regular file (a link, a FIFO, too large), which is never what a pointer holds.
pub fn read_pointer(path: &Path) -> Result<Option<Vec<u8>>, String> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot look at `{}`: {e}", path.display())),
        Ok(_) => read_regular(path, MAX_POINTER)
            .map(|data| Some(data.unwrap_or_default()))
            .map_err(|e| format!("cannot read `{}`: {e}", path.display())),
    }
}

/// Move what is at `path` aside (if anything) and put `before` back (if it existed); where
/// the task's version went.
pub fn put_back(path: &Path, before: Option<&[u8]>) -> Result<Option<PathBuf>, String> {
    let aside = match std::fs::symlink_metadata(path) {
        Ok(_) => Some(quarantine(path)?),
        Err(_) => None,
    };
    if let Some(text) = before {
        write_new(path, text).map_err(|e| format!("cannot put `{}` back: {e}", path.display()))?;
    }
    Ok(aside)
}

/// `git` with no configuration but what it is pointed at: no system or global file, no
/// prompt, no optional locks, no fetching of missing objects, the environment cleared.
pub fn plain_git() -> Command {
    let mut command = Command::new("git");
    command
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .env("LC_ALL", "C")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_OPTIONAL_LOCKS", "0")
        // A missing object is not fetched from a promisor remote the task configured: that
        // would run its `uploadpack` (or any transport) on the host.
        .env("GIT_NO_LAZY_FETCH", "1");
    command
}

/// Create `path` with `bytes`; fails if anything is there (a link included).
pub fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(0o644)
        .open(path)?
        .write_all(bytes)
}

/// Run `command` (its standard input empty), handing its standard output to `out` as it
/// comes, for at most `limit`: killed after that. Its exit status and standard error.
pub fn run_within(
    command: &mut Command,
    limit: Duration,
    out: &mut dyn FnMut(&[u8]),
) -> Result<(ExitStatus, Vec<u8>), String> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run git: {e}"))?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let child = Arc::new(Mutex::new(child));
    let (finished, watch) = mpsc::channel::<()>();
    let killer = {
        let child = Arc::clone(&child);
        std::thread::spawn(move || match watch.recv_timeout(limit) {
            Err(RecvTimeoutError::Timeout) => {
                let _ = child.lock().unwrap_or_else(|p| p.into_inner()).kill();
                true
            }
            _ => false,
        })
    };
    let errors = std::thread::spawn(move || {
        let mut data = Vec::new();
        if let Some(mut stderr) = stderr {
            let _ = stderr.by_ref().take(64 << 10).read_to_end(&mut data);
            // Drain the rest so the child never blocks on a full pipe.
            let _ = std::io::copy(&mut stderr, &mut std::io::sink());
        }
        data
    });
    let mut failed = None;
    if let Some(mut stdout) = stdout {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    failed = Some(format!("cannot read git's output: {e}"));
                    break;
                }
            }
        }
    }
    let stderr = errors.join().unwrap_or_default();
    // The output has ended: the child has exited, or is about to.
    let status = loop {
        let state = child.lock().unwrap_or_else(|p| p.into_inner()).try_wait();
        match state {
            Ok(Some(status)) => break status,
            Ok(None) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => {
                let _ = finished.send(());
                return Err(format!("cannot wait for git: {e}"));
            }
        }
    };
    let _ = finished.send(());
    if killer.join().unwrap_or(false) {
        return Err(format!(
            "git did not finish within {} s and was stopped (a FIFO where git reads?)",
            limit.as_secs()
        ));
    }
    match failed {
        Some(why) => Err(why),
        None => Ok((status, stderr)),
    }
}

/// Run the user's `git status` in `dir`, as after any run (nothing above `dir` searched),
/// and assert that nothing the task planted ran: `marker` is what the planted program would
/// have created. What the tests of remit's git clean-up check.
#[cfg(test)]
#[track_caller]
pub(crate) fn assert_user_status_runs_nothing(dir: &Path, marker: &Path) {
    let _ = Command::new("git")
        .args(["status", "--short"])
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CEILING_DIRECTORIES", dir.parent().unwrap_or(dir))
        .output();
    assert!(
        !marker.exists(),
        "something the task planted ran in the user's git status in `{}`",
        dir.display()
    );
}

/// Whether `during` opened the FIFO at `fifo` (for reading, or at all): a writer waits in
/// `open` until someone does, and is woken by it. For tests of what must never be opened.
#[cfg(test)]
pub(crate) fn fifo_opened_during(fifo: &Path, during: impl FnOnce()) -> bool {
    let (opened_tx, opened) = mpsc::channel();
    let writer_path = fifo.to_owned();
    let writer = std::thread::spawn(move || {
        let file = std::fs::OpenOptions::new().write(true).open(&writer_path);
        let _ = opened_tx.send(());
        drop(file);
    });
    // Time for the writer to be waiting (an open it did not wait for wakes nothing).
    std::thread::sleep(Duration::from_millis(200));
    during();
    let woken = opened.recv_timeout(Duration::from_millis(300)).is_ok();
    // Let the writer go either way.
    let _ = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(fifo);
    let _ = writer.join();
    woken
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn a_command_past_its_limit_is_stopped() {
        let err = run_within(
            Command::new("sleep").arg("30"),
            Duration::from_millis(200),
            &mut |_| {},
        )
        .unwrap_err();
        assert!(err.contains("did not finish"), "{err}");
        // The twin: a quick one, its output and errors whole.
        let mut seen = Vec::new();
        let (status, errors) = run_within(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(60),
            &mut |b| seen.extend_from_slice(b),
        )
        .unwrap();
        assert_eq!(status.code(), Some(3));
        assert_eq!(seen, b"out\n");
        assert_eq!(errors, b"err\n");
    }

    /// What is not a regular file is never opened, even through a directory link earlier in
    /// the path (which `O_NOFOLLOW` alone does not cover): opening a device can act (a
    /// watchdog reboots the host), and opening a FIFO for reading wakes its writer, which is
    /// how this test sees an open. The twin: a regular file through the same link is read.
    #[test]
    fn a_fifo_or_device_behind_a_directory_link_is_never_opened() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::write(real.join("file"), "x").unwrap();
        let fifo = real.join("fifo");
        assert!(
            Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let woken = fifo_opened_during(&fifo, || {
            assert_eq!(read_regular(&link.join("fifo"), 10).unwrap(), None);
        });
        assert_eq!(
            read_regular(&link.join("file"), 10).unwrap().as_deref(),
            Some(&b"x"[..])
        );
        assert!(!woken, "the FIFO was opened through the directory link");
    }

    #[test]
    fn nothing_is_read_through_a_link_or_from_a_fifo_and_nothing_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        assert_eq!(read_text(&file).as_deref(), Some("x"));
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(read_regular(&link, 10).unwrap(), None);
        let fifo = dir.path().join("p");
        assert!(
            Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        assert_eq!(read_regular(&fifo, 10).unwrap(), None);
        assert!(write_new(&link, b"y").is_err());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
        // Quarantine takes the next free name, and moves a link, not its target.
        let aside = quarantine(&link).unwrap();
        assert!(aside.ends_with("l.remit-quarantine"));
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(quarantine(&link).unwrap().ends_with("l.remit-quarantine.1"));
        assert!(file.exists());
        // Every name beside it taken: into a directory made for it, never left in place.
        let busy = dir.path().join("b");
        std::fs::write(&busy, "task").unwrap();
        std::fs::write(dir.path().join("b.remit-quarantine"), "").unwrap();
        for n in 1..100 {
            std::fs::write(dir.path().join(format!("b.remit-quarantine.{n}")), "").unwrap();
        }
        let aside = quarantine(&busy).unwrap();
        assert!(
            !busy.exists() && aside.ends_with("b"),
            "{}",
            aside.display()
        );
        let moved = quarantine_into(&file, dir.path()).unwrap();
        assert!(moved.starts_with(dir.path()) && moved.ends_with("f"));
        assert!(!file.exists());
    }
}
