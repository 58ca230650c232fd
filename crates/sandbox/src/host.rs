//! Small safe wrappers the supervisor needs around its own process: signals as a descriptor,
//! exiting "by the same signal" as a contained command, waiting on several descriptors.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use tokio::io::unix::AsyncFd;

use crate::sys;

/// Signals delivered through a descriptor instead of handlers. Creating one blocks the
/// signals for the calling thread; programs started in a sandbox get an empty mask.
#[derive(Debug)]
pub struct SignalWatch {
    fd: OwnedFd,
}

/// One received signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceivedSignal {
    /// The signal number.
    pub signal: i32,
    /// Sent by the terminal (Ctrl-C and friends): the whole foreground process group got it,
    /// contained programs included, so it must not be forwarded a second time.
    pub from_terminal: bool,
}

impl SignalWatch {
    /// Watch `signals`.
    pub fn new(signals: &[i32]) -> io::Result<SignalWatch> {
        Ok(SignalWatch {
            fd: sys::signalfd(signals)?,
        })
    }

    /// Descriptor to poll.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The next pending signal, if any.
    pub fn read(&self) -> io::Result<Option<ReceivedSignal>> {
        const SI_KERNEL: i32 = 0x80;
        Ok(
            sys::read_signal(self.fd.as_fd())?.map(|info| ReceivedSignal {
                signal: info.signal,
                from_terminal: info.code == SI_KERNEL,
            }),
        )
    }
}

/// Kill every process of the process group `group` (a host command run in its own group,
/// with whatever it left running).
pub fn kill_group(group: i32) {
    if group > 0 {
        let _ = sys::kill(-group, libc::SIGKILL);
    }
}

/// Never be stopped by the terminal: ignore SIGTTOU and SIGTTIN for this process. A task
/// shares the terminal, and can make its own process group the terminal's foreground one
/// (`tcsetpgrp`) and set `TOSTOP`; the supervisor's next message on the terminal would then
/// stop it (or, without job control, fail with `EIO`), and with it the wall-clock limit and
/// the clean-up after the task. With both ignored, its writes go through and its reads fail.
/// Programs the sandbox starts get every signal back at its default.
pub fn ignore_terminal_stops() {
    sys::ignore_terminal_stops();
}

/// End this process the way a contained program ended: by the same signal (no core file),
/// or with `128 + signal` if the signal does not terminate.
pub fn die_by_signal(signal: i32) -> ! {
    sys::die_by_signal(signal);
    std::process::exit(128 + signal)
}

/// Wait until one of `fds` is readable or `timeout_ms` passes (-1: forever).
pub fn poll_readable(fds: &[BorrowedFd<'_>], timeout_ms: i32) -> io::Result<Vec<bool>> {
    sys::poll_readable(fds, timeout_ms)
}

/// Whether a descriptor is a terminal.
pub fn is_terminal(fd: BorrowedFd<'_>) -> bool {
    std::io::IsTerminal::is_terminal(&fd)
}

/// A descriptor the async runtime watches for readability. It owns a duplicate of the
/// descriptor it was made from, so the registration can never outlive the descriptor.
#[derive(Debug)]
pub struct Readable(AsyncFd<OwnedFd>);

impl Readable {
    /// Watch a duplicate of `fd` (must be called inside a tokio runtime).
    pub fn new(fd: BorrowedFd<'_>) -> io::Result<Readable> {
        let owned = fd.try_clone_to_owned()?;
        crate::sys::register_async(owned).map(Readable)
    }

    /// Wait until the descriptor is readable. Readiness is cleared on return: the caller
    /// must drain the descriptor (read until it would block) before waiting again.
    pub async fn readable(&self) -> io::Result<()> {
        let mut guard = self.0.readable().await?;
        guard.clear_ready();
        Ok(())
    }
}
