//! Crash test: SIGKILL a writer process in the middle of a burst, restart, verify, and find
//! every acknowledged-durable event.
//!
//! The writer is `remit-ledger-writer`: four threads append bursts of 20 observations and one
//! durable effect, printing `ACK <seq> <id>` for each durable event once `wait()` returned,
//! until it is killed.

use std::sync::Arc;
use std::time::Duration;

use remit_ledger::verify::{VerifyOptions, verify};
use remit_ledger::{Ledger, LedgerKey, LedgerReader, Location, Options, SystemClock};

use crate::common::{Backend, WriterProcess, exec, pg};

const KEY_SEED: &str = "test.remit/crash:5";

fn key() -> LedgerKey {
    LedgerKey::from_seed("test.remit/crash", [5; 32]).unwrap()
}

fn crash(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let location = match backend {
        Backend::Sqlite => Location::Sqlite(dir.path().join("ledger.db")),
        Backend::Postgres => Location::Postgres(
            pg().create_database(&format!("crash_{}", std::process::id()))
                .unwrap(),
        ),
    };
    for round in 0..3 {
        let mut child = WriterProcess::spawn(
            &location,
            KEY_SEED,
            &[
                "--tag",
                &format!("r{round}"),
                "--threads",
                "4",
                "--events",
                "0",
                "--durable-every",
                "21",
            ],
        );
        // Mid-burst: other threads are appending and committing right now.
        child.read_until(Duration::from_secs(120), |w| {
            w.acks.len() >= 150 + round * 50
        });
        let acked = child.kill();

        // Restart: a new writer recovers at once (no lock outlives a process) and goes on.
        let ledger = Ledger::open(
            location.clone(),
            key(),
            Arc::new(SystemClock),
            Options::default(),
        )
        .unwrap_or_else(|e| panic!("cannot reopen after the crash: {e}"));
        ledger
            .append_durable(exec("after-crash", round as u64))
            .unwrap()
            .wait()
            .unwrap();
        ledger.close().unwrap();

        let mut reader = LedgerReader::open(&location).unwrap();
        let report = verify(
            &mut reader,
            &VerifyOptions {
                key: Some(key().public()),
                against: vec![],
            },
        )
        .unwrap();
        for (seq, id) in &acked {
            assert!(
                *seq < report.events,
                "acknowledged event {seq} lost (round {round})"
            );
            let stored = reader.event(*seq).unwrap();
            assert_eq!(
                stored.event.body.effect_id(),
                Some(id.as_str()),
                "event {seq} is not the acknowledged one"
            );
        }
    }
}

#[test]
fn crash_sqlite() {
    crash(Backend::Sqlite);
}

#[test]
fn crash_postgres() {
    crash(Backend::Postgres);
}
