//! Many writer processes on one ledger: `remit-ledger-writer` processes append bursts
//! concurrently (some killed with SIGKILL mid-burst); afterwards the ledger verifies, its
//! sequence numbers have no gaps, every acknowledged event is where its writer was told, and
//! each process's events are in its own order.

use std::collections::BTreeMap;
use std::time::Duration;

use remit_ledger::verify::{VerifyOptions, VerifyReport, verify};
use remit_ledger::{Ledger, Query, build_receipt, verify_receipt};
use remit_types::event::EventBody;

use crate::common::{Backend, ENV_KEY_SEED, Env, WriterProcess, both_stores, exec};

const LONG: Duration = Duration::from_secs(120);

fn verify_ok(env: &Env) -> VerifyReport {
    verify(
        &mut env.reader(),
        &VerifyOptions {
            key: Some(env.key.public()),
            against: vec![],
        },
    )
    .unwrap()
}

/// Where an event came from, read back from its content.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    Start(String),
    Burst(String, u64, u64),
    End(String),
    Other,
}

fn origin(body: &EventBody, task: &str) -> Origin {
    let burst = |tag: &str, t: &str, i: &str| {
        Origin::Burst(tag.to_owned(), t.parse().unwrap(), i.parse().unwrap())
    };
    match body {
        EventBody::RunAuthorized(_) => Origin::Start(task.to_owned()),
        EventBody::TaskEnd(_) => Origin::End(task.to_owned()),
        EventBody::Exec(e) if e.argv.first().map(String::as_str) == Some("burst") => {
            burst(&e.argv[1], &e.argv[2], &e.argv[3])
        }
        EventBody::EffectStarted(s) => {
            let parts: Vec<&str> = s.effect.id.split('/').collect();
            burst(parts[0], parts[1], parts[2])
        }
        _ => Origin::Other,
    }
}

/// Every stored event's origin, by sequence number (a gapless prefix, or `verify` failed).
fn origins(env: &Env) -> Vec<Origin> {
    let mut out = Vec::new();
    env.reader()
        .scan(&Query::default(), &mut |e| {
            assert_eq!(e.event.seq, out.len() as u64, "sequence numbers have a gap");
            out.push(origin(&e.event.body, &e.event.task));
            Ok(true)
        })
        .unwrap();
    out
}

/// Each acknowledged event is stored at the sequence number its writer was given.
fn check_acks(all: &[Origin], acks: &[(u64, String)]) {
    for (seq, id) in acks {
        let stored = all
            .get(*seq as usize)
            .unwrap_or_else(|| panic!("acknowledged event {seq} ({id}) is lost"));
        let expected = match id.strip_suffix("/end") {
            Some(tag) => Origin::End(tag.to_owned()),
            None => {
                let parts: Vec<&str> = id.split('/').collect();
                Origin::Burst(
                    parts[0].to_owned(),
                    parts[1].parse().unwrap(),
                    parts[2].parse().unwrap(),
                )
            }
        };
        assert_eq!(
            stored, &expected,
            "event {seq} is not the acknowledged `{id}`"
        );
    }
}

/// Per writer thread, the burst indexes in sequence order; checks each task's start comes
/// before and its end after all of its events.
fn bursts(all: &[Origin]) -> BTreeMap<(String, u64), Vec<u64>> {
    let mut out: BTreeMap<(String, u64), Vec<u64>> = BTreeMap::new();
    let mut started = BTreeMap::new();
    let mut ended = BTreeMap::new();
    for (seq, o) in all.iter().enumerate() {
        match o {
            Origin::Start(tag) => assert!(started.insert(tag.clone(), seq).is_none()),
            Origin::End(tag) => assert!(ended.insert(tag.clone(), seq).is_none()),
            Origin::Burst(tag, t, i) => {
                if let Some(start) = started.get(tag) {
                    assert!(*start < seq, "{tag}: event before its run_authorized");
                }
                assert!(!ended.contains_key(tag), "{tag}: event after its task_end");
                out.entry((tag.clone(), *t)).or_default().push(*i);
            }
            Origin::Other => {}
        }
    }
    out
}

both_stores! {
    concurrent_writer_processes => |backend: Backend| {
        let env = Env::new(backend);
        // One process creates the ledger; the others find it (creation races are covered by
        // `processes_race_to_create`).
        env.open().close().unwrap();
        let (procs, events) = (4, 250u64);
        let mut writers: Vec<_> = (0..procs)
            .map(|p| {
                WriterProcess::spawn_ready(
                    &env.location,
                    ENV_KEY_SEED,
                    &["--tag", &format!("p{p}"), "--events", &events.to_string(), "--durable-every", "10", "--task"],
                )
            })
            .collect();
        // All open: start them at once.
        writers.iter_mut().for_each(WriterProcess::go);
        let acks: Vec<(u64, String)> = writers.into_iter().flat_map(|w| w.finish(LONG)).collect();
        let report = verify_ok(&env);
        assert_eq!(report.events, procs * (events + 2));
        let all = origins(&env);
        check_acks(&all, &acks);
        assert_eq!(acks.len() as u64, procs * (events / 10 + 1));
        let per_thread = bursts(&all);
        assert_eq!(per_thread.len() as u64, procs);
        for ((tag, _), indexes) in &per_thread {
            assert_eq!(indexes, &(0..events).collect::<Vec<_>>(), "{tag}: events out of order or missing");
        }
        // Commits of different processes interleaved (the point of the exercise).
        let switches = all.windows(2).filter(|w| match (&w[0], &w[1]) {
            (Origin::Burst(a, ..), Origin::Burst(b, ..)) => a != b,
            _ => false,
        }).count();
        assert!(switches >= 4, "writers did not interleave ({switches} switches)");

        // History: every task end kept, at most one transient checkpoint (the head).
        let rows = env.reader().checkpoint_rows().unwrap();
        let transient: Vec<u64> = rows.iter().filter(|r| !r.kept).map(|r| r.size).collect();
        assert!(transient.len() <= 1, "transient checkpoints left: {transient:?}");
        for p in 0..procs {
            let tag = format!("p{p}");
            let envelope = build_receipt(&mut env.reader(), &env.key, &tag).unwrap();
            let verified = verify_receipt(&envelope, &env.key.public(), Some(&mut env.reader())).unwrap();
            assert!(rows.iter().any(|r| r.kept && r.size == verified.checkpoint.checkpoint.size));
        }
        // Consistency between every pair of consecutive kept checkpoints.
        let mut reader = env.reader();
        let kept: Vec<_> = rows.iter().filter(|r| r.kept).map(|r| remit_ledger::SignedCheckpoint::open(&r.note, &env.key.public()).unwrap()).collect();
        for pair in kept.windows(2) {
            let (old, new) = (&pair[0].checkpoint, &pair[1].checkpoint);
            let proof = reader.consistency_proof(old.size, new.size).unwrap();
            remit_ledger::merkle::verify_consistency(old.size, new.size, &old.root, &new.root, &proof).unwrap();
        }
    };

    processes_race_to_create => |backend: Backend| {
        for _round in 0..4 {
            let env = Env::new(backend);
            let writers: Vec<_> = (0..4)
                .map(|p| WriterProcess::spawn(&env.location, ENV_KEY_SEED, &["--tag", &format!("c{p}"), "--events", "12", "--durable-every", "3"]))
                .collect();
            let acks: Vec<(u64, String)> = writers.into_iter().flat_map(|w| w.finish(LONG)).collect();
            assert_eq!(verify_ok(&env).events, 48);
            let all = origins(&env);
            check_acks(&all, &acks);
            for indexes in bursts(&all).values() {
                assert_eq!(indexes, &(0..12).collect::<Vec<_>>());
            }
        }
    };

    sigkill_one_writer_while_others_write => |backend: Backend| {
        let env = Env::new(backend);
        env.open().close().unwrap();
        // Endless bursts from two threads: 4 observations, then one durable effect.
        let mut victim = WriterProcess::spawn_ready(
            &env.location,
            ENV_KEY_SEED,
            &["--tag", "victim", "--threads", "2", "--events", "0", "--durable-every", "5"],
        );
        let mut others: Vec<_> = (0..3)
            .map(|p| {
                WriterProcess::spawn_ready(
                    &env.location,
                    ENV_KEY_SEED,
                    &["--tag", &format!("w{p}"), "--threads", "2", "--events", "600", "--durable-every", "10", "--task"],
                )
            })
            .collect();
        victim.go();
        others.iter_mut().for_each(WriterProcess::go);
        victim.read_until(LONG, |w| w.acks.len() >= 40);
        let victim_acks = victim.kill();
        let last_victim = victim_acks.iter().map(|(seq, _)| *seq).max().unwrap();
        let acks: Vec<(u64, String)> = others.into_iter().flat_map(|w| w.finish(LONG)).collect();
        assert!(
            acks.iter().any(|(seq, _)| *seq > last_victim + 50),
            "the other writers had finished before the kill"
        );

        let report = verify_ok(&env);
        let all = origins(&env);
        check_acks(&all, &victim_acks);
        check_acks(&all, &acks);
        for ((tag, t), indexes) in bursts(&all) {
            let n = indexes.len() as u64;
            if tag == "victim" {
                // What the killed process committed is a prefix of what it appended.
                assert_eq!(indexes, (0..n).collect::<Vec<_>>(), "victim thread {t}");
            } else {
                assert_eq!(indexes, (0..600).collect::<Vec<_>>(), "{tag} thread {t}");
            }
        }
        // A new writer goes on from there.
        let ledger = env.open();
        let seq = ledger.append_durable(exec("after", 0)).unwrap().wait().unwrap();
        assert_eq!(seq, report.events);
        ledger.close().unwrap();
        assert_eq!(verify_ok(&env).events, report.events + 1);
    };
    readers_see_a_consistent_ledger_while_writers_append => |backend: Backend| {
        let env = Env::new(backend);
        env.open().close().unwrap();
        let mut writers: Vec<_> = (0..2)
            .map(|p| {
                WriterProcess::spawn_ready(
                    &env.location,
                    ENV_KEY_SEED,
                    &["--tag", &format!("r{p}"), "--events", "0", "--durable-every", "3"],
                )
            })
            .collect();
        writers.iter_mut().for_each(WriterProcess::go);
        writers[0].read_until(LONG, |w| w.acks.len() >= 5);
        let mut last = 0;
        for _ in 0..20 {
            // Checkpoints and events are read from one snapshot: never "uncovered" events.
            let report = verify_ok(&env);
            assert!(report.events >= last);
            last = report.events;
            // A receipt of a task still running is refused, not half-built.
            assert!(build_receipt(&mut env.reader(), &env.key, "r0").is_err());
        }
        let acks: Vec<(u64, String)> = writers.into_iter().flat_map(|w| w.kill()).collect();
        check_acks(&origins(&env), &acks);
        verify_ok(&env);
    };
}

/// Writers in one process, each with its own connection, behave like separate processes.
#[test]
fn writers_in_one_process_interleave() {
    let env = Env::new(Backend::Sqlite);
    let a = env.open();
    let b = env.open();
    let mut seqs = Vec::new();
    for i in 0..20 {
        let (x, y): (&Ledger, &Ledger) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        seqs.push(x.append_durable(exec("a", i)).unwrap().wait().unwrap());
        y.append(exec("b", i)).unwrap();
    }
    a.close().unwrap();
    b.close().unwrap();
    let report = verify_ok(&env);
    assert_eq!(report.events, 40);
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    assert_eq!(seqs, sorted, "durable seqs of one thread increase");
}
