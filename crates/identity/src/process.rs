//! Which process owns something, in a form that survives pid reuse and reboots.
//!
//! A supervisor records itself as `(pid, start time in clock ticks since boot, boot id)`.
//! Later, anyone can tell whether that exact process still runs: the pid must exist, have
//! the same start time, and the machine must not have rebooted since. Crash recovery
//! revokes what dead owners left open.

/// A process, identified across pid reuse and reboots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessIdentity {
    /// The pid.
    pub pid: u32,
    /// Start time, clock ticks after boot (`/proc/<pid>/stat` field 22).
    pub start: u64,
    /// The kernel's boot id (`/proc/sys/kernel/random/boot_id`).
    pub boot: String,
}

impl ProcessIdentity {
    /// This process.
    pub fn current() -> ProcessIdentity {
        let pid = std::process::id();
        ProcessIdentity {
            pid,
            start: start_ticks(pid).unwrap_or(0),
            boot: boot_id(),
        }
    }

    /// Whether this exact process is still running.
    pub fn is_alive(&self) -> bool {
        if self.boot != boot_id() {
            return false;
        }
        match start_ticks(self.pid) {
            Some(start) => start == self.start,
            None => false,
        }
    }
}

#[cfg(target_os = "linux")]
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `comm` (field 2) may hold spaces and parentheses: count from the last `)`.
    let after = &stat[stat.rfind(')')? + 1..];
    // Fields after `comm` start at 3 (state); starttime is field 22.
    after.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(target_os = "linux")]
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

// Without /proc there is no liveness check here: every recorded process counts as alive,
// so crash recovery never revokes what a running supervisor holds (it revokes nothing).
#[cfg(not(target_os = "linux"))]
fn start_ticks(_pid: u32) -> Option<u64> {
    Some(0)
}

#[cfg(not(target_os = "linux"))]
fn boot_id() -> String {
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_dead_child_is_not() {
        let me = ProcessIdentity::current();
        assert!(me.is_alive());
        assert!(me.start > 0);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let them = ProcessIdentity {
            pid,
            start: start_ticks(pid).unwrap_or(1),
            boot: boot_id(),
        };
        child.wait().unwrap();
        assert!(!them.is_alive());
        let rebooted = ProcessIdentity {
            boot: "another-boot".into(),
            ..me
        };
        assert!(!rebooted.is_alive());
    }
}
