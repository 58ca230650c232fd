//! Crash test: SIGKILL a writer process in the middle of a burst, restart, verify, and find
//! every acknowledged-durable event.
//!
//! The writer is this test binary itself, re-run with `REMIT_LEDGER_CRASH_CHILD` set: the
//! `child` test then appends bursts from several threads and prints `ACK <seq> <index>` for
//! each durable event once `wait()` returned, until it is killed.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use remit_ledger::verify::{VerifyOptions, verify};
use remit_ledger::{Ledger, LedgerKey, LedgerReader, Location, Options, SystemClock};
use remit_types::event::{EffectRef, EffectStarted, NewEvent};

use crate::common::{Backend, exec, pg};

const CHILD: &str = "REMIT_LEDGER_CRASH_CHILD";

fn key() -> LedgerKey {
    LedgerKey::from_seed("test.remit/crash", [5; 32]).unwrap()
}

fn started(thread: u64, i: u64) -> NewEvent {
    NewEvent::new(
        format!("t{thread}"),
        "crasher",
        EffectStarted {
            effect: EffectRef {
                id: format!("{thread}-{i}"),
                kind: "http.request".into(),
                target: "example.com:443".into(),
                attributes: Default::default(),
            },
            lease: None,
        },
    )
}

/// The writer process. Does nothing unless started by `crash_*` below.
#[test]
fn child() {
    let Ok(spec) = std::env::var(CHILD) else {
        return;
    };
    let location = match spec.split_once(':') {
        Some(("sqlite", path)) => Location::Sqlite(path.into()),
        Some(("postgres", url)) => Location::Postgres(url.into()),
        _ => panic!("bad {CHILD} `{spec}`"),
    };
    let ledger = Ledger::open(location, key(), Arc::new(SystemClock), Options::default()).unwrap();
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let ledger = ledger.clone();
            std::thread::spawn(move || {
                for i in 0.. {
                    for j in 0..20 {
                        ledger.append(exec(&format!("t{t}"), i * 100 + j)).unwrap();
                    }
                    let seq = ledger
                        .append_durable(started(t, i))
                        .unwrap()
                        .wait()
                        .unwrap();
                    println!("ACK {seq} {t}-{i}");
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

fn crash(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (location, spec) = match backend {
        Backend::Sqlite => {
            let path = dir.path().join("ledger.db");
            (
                Location::Sqlite(path.clone()),
                format!("sqlite:{}", path.display()),
            )
        }
        Backend::Postgres => {
            let url = pg()
                .create_database(&format!("crash_{}", std::process::id()))
                .unwrap();
            (Location::Postgres(url.clone()), format!("postgres:{url}"))
        }
    };
    for round in 0..3 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash::child", "--nocapture", "--test-threads=1"])
            .env(CHILD, &spec)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut acked = Vec::new();
        for line in stdout.lines() {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("ACK ") {
                let (seq, id) = rest.split_once(' ').unwrap();
                acked.push((seq.parse::<u64>().unwrap(), id.to_owned()));
                if acked.len() >= 150 + round * 50 {
                    // Mid-burst: other threads are appending and committing right now.
                    child.kill().unwrap();
                    break;
                }
            }
        }
        let _ = child.wait();
        assert!(
            acked.len() >= 150,
            "child stopped early after {} acks",
            acked.len()
        );

        // Restart: the writer recovers and goes on. (PostgreSQL notices the killed client's
        // closed socket, and releases its writer lock, a moment later.)
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let ledger = loop {
            match Ledger::open(
                location.clone(),
                key(),
                Arc::new(SystemClock),
                Options::default(),
            ) {
                Ok(ledger) => break ledger,
                Err(e)
                    if e.to_string().contains("another process is writing")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => panic!("cannot reopen after the crash: {e}"),
            }
        };
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
    if std::env::var(CHILD).is_ok() {
        return;
    }
    crash(Backend::Sqlite);
}

#[test]
fn crash_postgres() {
    if std::env::var(CHILD).is_ok() {
        return;
    }
    crash(Backend::Postgres);
}
