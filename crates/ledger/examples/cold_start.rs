//! What one `remit run` pays for its ledger: open, a few appends, flush, close, on an existing
//! SQLite ledger, timed phase by phase over many fresh opens:
//! `cargo run --release -p remit-ledger --example cold_start -- [DIR] [RUNS]`.
//!
//! Each run opens the ledger the way the supervisor does (`Ledger::open_home`, key file beside
//! it), appends `run_authorized`, two `exec` and `task_end`, flushes, builds the task's
//! receipt (as `remit run` does; timed apart) and closes. Prints the median and 90th
//! percentile of each phase. Run it under
//! `strace -f -c -e trace=fsync,fdatasync` to count the syncs, or with `-T` to time them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use remit_ledger::{Ledger, Options, SystemClock};
use remit_types::event::{
    EndReason, Exec, NewEvent, RemitRef, RunAuthorized, TaskCounts, TaskEnd, Verdict,
};

fn events(task: &str) -> Vec<NewEvent> {
    let exec = |pid: u32, argv: &[&str]| Exec {
        argv: argv.iter().map(|a| (*a).to_owned()).collect(),
        cwd: "/workspace".into(),
        pid,
        ppid: 1,
        decision: Verdict::Allow,
        rule: None,
    };
    vec![
        NewEvent::new(
            task,
            "bench-agent",
            RunAuthorized {
                requester: "alice@example.com".into(),
                owner: "alice@example.com".into(),
                remit: RemitRef {
                    name: "bench".into(),
                    sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
                        .into(),
                },
                identity: format!("spiffe://remit.local/agent/bench-agent/task/{task}"),
                expires: None,
                permissions: vec![],
                secrets_reachable: vec![],
                degraded: vec![],
            },
        ),
        NewEvent::new(task, "bench-agent", exec(2, &["/bin/true"])),
        NewEvent::new(task, "bench-agent", exec(3, &["/bin/true", "again"])),
        NewEvent::new(
            task,
            "bench-agent",
            TaskEnd {
                exit_code: Some(0),
                signal: None,
                reason: EndReason::Exited,
                detail: None,
                counts: TaskCounts::default(),
            },
        ),
    ]
}

fn summary(name: &str, samples: &mut [Duration]) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    println!(
        "{name:>8}: median {:>7.1} µs   mean {:>7.1} µs   p90 {:>7.1} µs",
        at(0.5).as_secs_f64() * 1e6,
        mean.as_secs_f64() * 1e6,
        at(0.9).as_secs_f64() * 1e6
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (home, _scratch) = match args.next() {
        Some(dir) => (PathBuf::from(dir), None),
        None => {
            let dir = tempfile::tempdir()?;
            (dir.path().join("remit"), Some(dir))
        }
    };
    let runs: usize = args.next().map_or(Ok(200), |n| n.parse())?;
    // The first open creates the key and the ledger; that is not what a run pays.
    Ledger::open_home(&home, Arc::new(SystemClock), Options::default())?.close()?;
    let (mut open, mut append, mut flush, mut close, mut total) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut receipt = Vec::new();
    for run in 0..runs {
        let batch = events(&format!("t-{run}"));
        let t0 = Instant::now();
        let ledger = Ledger::open_home(&home, Arc::new(SystemClock), Options::default())?;
        let t1 = Instant::now();
        for event in batch {
            ledger.append(event)?;
        }
        let t2 = Instant::now();
        ledger.flush()?;
        let t3 = Instant::now();
        ledger.receipt(&format!("t-{run}"))?;
        let r = Instant::now();
        ledger.close()?;
        drop(ledger);
        let t4 = Instant::now();
        open.push(t1 - t0);
        append.push(t2 - t1);
        flush.push(t3 - t2);
        receipt.push(r - t3);
        close.push(t4 - r);
        total.push(t4 - t0 - (r - t3));
    }
    println!("{runs} runs on `{}`", home.join("ledger.db").display());
    summary("open", &mut open);
    summary("append", &mut append);
    summary("flush", &mut flush);
    summary("close", &mut close);
    summary("total", &mut total);
    summary("receipt", &mut receipt);
    Ok(())
}
