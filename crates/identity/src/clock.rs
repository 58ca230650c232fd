//! Time, passed in: tokens, keys and leases read the clock they are given, so expiry and
//! rotation are testable without sleeping.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time.
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

/// A clock that only moves when told to (tests, benchmarks, replays).
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<SystemTime>,
}

impl ManualClock {
    /// A clock reading `at`.
    pub fn new(at: SystemTime) -> ManualClock {
        ManualClock {
            now: Mutex::new(at),
        }
    }

    /// A clock reading `2026-01-01T00:00:00Z`.
    pub fn epoch_2026() -> ManualClock {
        ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_767_225_600))
    }

    /// Move the clock to `at`.
    pub fn set(&self, at: SystemTime) {
        match self.now.lock() {
            Ok(mut now) => *now = at,
            Err(poisoned) => *poisoned.into_inner() = at,
        }
    }

    /// Move the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let at = self.now();
        self.set(at.checked_add(by).unwrap_or(at));
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        match self.now.lock() {
            Ok(now) => *now,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }
}

/// Seconds since the Unix epoch (JWT `NumericDate`); 0 before the epoch.
pub fn unix_seconds(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch; 0 before the epoch.
pub fn unix_millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The time `seconds` after the Unix epoch (negative values clamp to the epoch).
pub fn from_unix_seconds(seconds: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

/// The time `millis` after the Unix epoch (negative values clamp to the epoch).
pub fn from_unix_millis(millis: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap_or(0))
}

/// RFC 3339 UTC, seconds precision (`2026-11-23T14:46:00Z`).
pub fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}
