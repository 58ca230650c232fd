//! Time, passed in: the ledger never reads the system clock itself.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// A source of wall-clock time for event timestamps.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock for tests: it returns a set time, advanced by a fixed step at every reading.
#[derive(Debug)]
pub struct FixedClock {
    state: Mutex<(SystemTime, Duration)>,
}

impl FixedClock {
    /// A clock that always reads `at`.
    pub fn new(at: SystemTime) -> Self {
        Self::stepping(at, Duration::ZERO)
    }

    /// A clock that reads `start`, then `start + step`, `start + 2 * step`, …
    pub fn stepping(start: SystemTime, step: Duration) -> Self {
        Self {
            state: Mutex::new((start, step)),
        }
    }

    /// `2026-01-01T00:00:00Z`, fixed.
    pub fn epoch_2026() -> Self {
        Self::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600))
    }

    /// Move the clock to `at`.
    pub fn set(&self, at: SystemTime) {
        if let Ok(mut state) = self.state.lock() {
            state.0 = at;
        }
    }
}

impl Clock for FixedClock {
    fn now(&self) -> SystemTime {
        match self.state.lock() {
            Ok(mut state) => {
                let now = state.0;
                state.0 = now.checked_add(state.1).unwrap_or(now);
                now
            }
            Err(poisoned) => poisoned.into_inner().0,
        }
    }
}

/// RFC 3339 UTC with microseconds (`2026-11-23T14:46:00.123456Z`): fixed width, so these
/// strings sort in time order.
pub fn format_time(at: SystemTime) -> String {
    humantime::format_rfc3339_micros(at).to_string()
}

/// Parse an RFC 3339 time.
pub fn parse_time(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text).ok()
}
