//! Write a SQLite ledger of N synthetic events, for benchmarks and manual testing:
//! `cargo run --release -p remit-ledger --example gen_ledger -- PATH N`.
//! The signing key is written beside it (`PATH` with extension `key`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use remit_ledger::{Ledger, LedgerKey, Location, Options, OsRandomness, SystemClock};
use remit_types::event::{Exec, NewEvent, Verdict};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = PathBuf::from(args.next().ok_or("usage: gen_ledger PATH N")?);
    let n: u64 = args.next().ok_or("usage: gen_ledger PATH N")?.parse()?;
    let key = LedgerKey::load_or_create(
        &path.with_extension("key"),
        "bench.remit/ledger",
        &mut OsRandomness,
    )?;
    let ledger = Ledger::open(
        Location::Sqlite(path.clone()),
        key,
        Arc::new(SystemClock),
        Options::default(),
    )?;
    let start = Instant::now();
    for i in 0..n {
        ledger.append(NewEvent::new(
            format!("task-{}", i / 1000),
            "bench-agent",
            Exec {
                argv: vec![
                    "cargo".into(),
                    "test".into(),
                    "--".into(),
                    format!("case_{i}"),
                ],
                cwd: "/workspace/project".into(),
                pid: (i % 30_000) as u32 + 2,
                ppid: 1,
                decision: Verdict::Allow,
                rule: None,
            },
        ))?;
    }
    let cp = ledger.close()?.ok_or("no checkpoint")?;
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "wrote {n} events to `{}` in {secs:.2}s ({:.0} events/s), root {}",
        path.display(),
        n as f64 / secs,
        cp.checkpoint.root_hex()
    );
    Ok(())
}
