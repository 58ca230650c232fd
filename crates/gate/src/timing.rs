//! Where a task's start and end spend their time: with `REMIT_TIMING=1` in the environment,
//! `remit run` prints one line per phase to standard error (`remit: timing: 1.234 ms sandbox
//! ready`), measured from the first mark. Off, a mark costs one relaxed atomic load.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);
static START: OnceLock<Instant> = OnceLock::new();

const UNKNOWN: u8 = 0;
const OFF: u8 = 1;
const ON: u8 = 2;

/// Whether timing marks are printed.
pub fn enabled() -> bool {
    match STATE.load(Ordering::Relaxed) {
        ON => true,
        OFF => false,
        _ => {
            let on = std::env::var_os("REMIT_TIMING").is_some_and(|v| !v.is_empty() && v != "0");
            STATE.store(if on { ON } else { OFF }, Ordering::Relaxed);
            on
        }
    }
}

/// Print `what` with the time since the first mark, when `REMIT_TIMING` is set.
pub fn mark(what: &str) {
    if !enabled() {
        return;
    }
    let start = *START.get_or_init(Instant::now);
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    eprintln!("remit: timing: {ms:8.3} ms {what}");
}
