//! The writer: appends, durability, group commit, checkpoints, reopen.

use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use remit_ledger::verify::{VerifyOptions, verify};
use remit_ledger::{Error, Ledger, LedgerKey, Options};

use crate::common::{Backend, Env, both_stores, exec, fill, task_events};

fn verify_ok(env: &Env) -> remit_ledger::verify::VerifyReport {
    let mut reader = env.reader();
    verify(
        &mut reader,
        &VerifyOptions {
            key: Some(env.key.public()),
            against: vec![],
        },
    )
    .unwrap()
}

struct Flag(std::sync::atomic::AtomicBool);
impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Drive a future to completion on this thread, without any runtime.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    let flag = Arc::new(Flag(std::sync::atomic::AtomicBool::new(false)));
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        while !flag.0.swap(false, std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

#[test]
fn open_home_creates_key_and_ledger_and_receipts_save() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("remit");
    let ledger = Ledger::open_home(&home, crate::common::clock(), Options::default()).unwrap();
    assert!(ledger.origin().starts_with("remit.local/ledger/"));
    for e in task_events("t-1", "ci-fixer") {
        ledger.append(e).unwrap();
    }
    ledger.flush().unwrap();
    let receipt = ledger.receipt("t-1").unwrap();
    let path = home.join("t-1.receipt.json");
    receipt.save(&path).unwrap();
    assert!(receipt.save(&path).is_err(), "never overwrites");
    let text = std::fs::read_to_string(&path).unwrap();
    let parsed = remit_ledger::Envelope::parse(&text).unwrap();
    remit_ledger::verify_receipt(&parsed, &ledger.public_key(), None).unwrap();
    let origin = ledger.origin().to_owned();
    ledger.close().unwrap();
    drop(ledger);
    // Reopening finds the same key.
    let again = Ledger::open_home(&home, crate::common::clock(), Options::default()).unwrap();
    assert_eq!(again.origin(), origin);
    assert_eq!(again.size(), 14);
    again.close().unwrap();
}

both_stores! {
    append_and_read_back => |backend: Backend| {
        let env = Env::new(backend);
        let ledger = env.open();
        fill(&ledger);
        assert_eq!(ledger.size(), 42);
        assert_eq!(ledger.pending(), 0);
        ledger.close().unwrap();
        let mut reader = env.reader();
        assert_eq!(reader.size().unwrap(), 42);
        let e = reader.event(13).unwrap();
        assert_eq!(e.event.seq, 13);
        assert_eq!(e.event.task, "t-1");
        assert_eq!(e.event.body.kind(), "task_end");
        assert_eq!(e.event.schema, 1);
        let report = verify_ok(&env);
        assert_eq!(report.events, 42);
        // genesis, three task ends, and the final head
        assert!(report.checkpoints >= 4, "{} checkpoints", report.checkpoints);
    };

    durable_wait_blocks_until_committed => |backend: Backend| {
        let env = Env::new(backend);
        let ledger = env.open();
        let d = ledger.append_durable(exec("t", 0)).unwrap();
        assert_eq!(d.wait().unwrap(), 0);
        assert!(d.is_durable());
        assert_eq!(d.seq(), Some(0));
        assert_eq!(d.wait_timeout(Duration::from_millis(1)).unwrap(), Some(0));
        // Once durable, a separate reader sees it.
        let mut reader = ledger.reader().unwrap();
        assert_eq!(reader.event(0).unwrap().event.seq, 0);
        ledger.close().unwrap();
    };

    // A durable event whose handle is held but not yet waited on does not hold up what is
    // appended after it (all of it committed within a linger), and one whose handle is
    // dropped is committed all the same.
    an_unawaited_durable_event_is_committed_all_the_same => |backend: Backend| {
        let env = Env::new(backend);
        let ledger = env.open();
        ledger.append_durable(exec("t", 0)).unwrap().wait().unwrap();
        // The writer thread is idle, waiting for work.
        std::thread::sleep(Duration::from_millis(50));
        let held = ledger.append_durable(exec("t", 1)).unwrap();
        ledger.append(exec("t", 2)).unwrap();
        let started = std::time::Instant::now();
        while ledger.size() < 3 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "queued events were left uncommitted"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(held.wait().unwrap(), 1);
        // A handle dropped without waiting: committed all the same.
        std::thread::sleep(Duration::from_millis(50));
        drop(ledger.append_durable(exec("t", 3)).unwrap());
        while ledger.size() < 4 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "a dropped durable event was left uncommitted"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        ledger.close().unwrap();
    };

    durable_is_a_future => |backend: Backend| {
        let env = Env::new(backend);
        let ledger = env.open();
        for i in 0..20 {
            ledger.append(exec("t", i)).unwrap();
        }
        let d = ledger.append_durable(exec("t", 20)).unwrap();
        assert_eq!(block_on(d).unwrap(), 20);
        // Another one, polled from its first state.
        assert_eq!(block_on(ledger.append_durable(exec("t", 21)).unwrap()).unwrap(), 21);
        ledger.close().unwrap();
    };

    every_commit_is_signed_and_history_is_kept => |backend: Backend| {
        let env = Env::new(backend);
        let ledger = env.open();
        for i in 0..10 {
            ledger.append_durable(exec("t", i)).unwrap().wait().unwrap();
            let head = ledger.latest_checkpoint().unwrap();
            assert_eq!(head.checkpoint.size, i + 1, "each commit signs its own head");
        }
        let kept = ledger.checkpoint().unwrap();
        assert_eq!(kept.checkpoint.size, 10);
        ledger.append_durable(exec("t", 10)).unwrap().wait().unwrap();
        ledger.close().unwrap();
        let mut reader = env.reader();
        let sizes: Vec<u64> = reader.checkpoint_rows().unwrap().iter().map(|c| c.size).collect();
        // Transient heads were replaced; genesis, the explicit one and the final one stay.
        assert_eq!(sizes, vec![0, 10, 11]);
        verify_ok(&env);
    };

    append_batch_commits_a_group_at_once => |backend: Backend| {
        let env = Env::new(backend);
        let ledger = env.open();
        assert!(ledger.append_batch(Vec::new()).unwrap().is_none());
        ledger.append_durable(exec("t", 0)).unwrap().wait().unwrap();
        // 250 events (more than the 50 of one multi-row insert, and a remainder), one commit.
        let last = ledger.append_batch((1..251).map(|i| exec("t", i))).unwrap().unwrap();
        assert_eq!(last.wait().unwrap(), 250);
        let head = ledger.latest_checkpoint().unwrap();
        assert_eq!(head.checkpoint.size, 251, "the head covers the whole group");
        let mut reader = ledger.reader().unwrap();
        for seq in [1, 50, 51, 250] {
            let e = reader.event(seq).unwrap();
            assert_eq!(e.event.seq, seq);
            assert_eq!(e.event, reader.event(seq).unwrap().event);
        }
        assert_eq!(reader.event(250).unwrap().event.body, exec("t", 250).body);
        ledger.close().unwrap();
        assert_eq!(verify_ok(&env).events, 251);
    };

    task_end_keeps_a_checkpoint => |backend: Backend| {
        let env = Env::new(backend);
        let ledger = env.open();
        let events = task_events("t-9", "ci-fixer");
        let n = events.len() as u64;
        for e in events {
            ledger.append_durable(e).unwrap().wait().unwrap();
        }
        ledger.append_durable(exec("t-10", 0)).unwrap().wait().unwrap();
        let mut reader = ledger.reader().unwrap();
        let sizes: Vec<u64> = reader.checkpoint_rows().unwrap().iter().map(|c| c.size).collect();
        assert!(sizes.contains(&n), "task end at size {n} kept: {sizes:?}");
        ledger.close().unwrap();
    };

    history_cadence_is_shared_by_writers => |backend: Backend| {
        let env = Env::new(backend);
        let a = env.open();
        let b = env.open();
        let start = std::time::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        a.append_durable(exec("a", 0)).unwrap().wait().unwrap();
        // B's commit comes more than a second after the newest kept checkpoint (genesis),
        // whoever made it: B keeps its checkpoint…
        env.clock.set(start + Duration::from_secs(5));
        b.append_durable(exec("b", 0)).unwrap().wait().unwrap();
        // …and A, right after, neither keeps its own nor deletes B's.
        a.append_durable(exec("a", 1)).unwrap().wait().unwrap();
        let rows = env.reader().checkpoint_rows().unwrap();
        let sizes: Vec<(u64, bool)> = rows.iter().map(|c| (c.size, c.kept)).collect();
        assert_eq!(sizes, vec![(0, true), (2, true), (3, false)]);
        // A keeps the head covering its events at close; B's events are covered already.
        assert_eq!(a.close().unwrap().unwrap().checkpoint.size, 3);
        assert_eq!(b.close().unwrap().unwrap().checkpoint.size, 2);
        let rows = env.reader().checkpoint_rows().unwrap();
        let sizes: Vec<(u64, bool)> = rows.iter().map(|c| (c.size, c.kept)).collect();
        assert_eq!(sizes, vec![(0, true), (2, true), (3, true)]);
        verify_ok(&env);
    };

    checkpoint_keeps_another_writers_head => |backend: Backend| {
        let env = Env::new(backend);
        let a = env.open();
        let b = env.open();
        a.append_durable(exec("a", 0)).unwrap().wait().unwrap();
        b.append_durable(exec("b", 0)).unwrap().wait().unwrap();
        // A's events are covered by B's (transient) head: keeping it signs nothing new.
        let kept = a.checkpoint().unwrap();
        assert_eq!(kept.checkpoint.size, 2);
        assert_eq!(kept, b.latest_checkpoint().unwrap());
        // A writer that appended nothing keeps the current head too.
        let c = env.open();
        assert_eq!(c.checkpoint().unwrap().checkpoint.size, 2);
        for l in [a, b, c] {
            l.close().unwrap();
        }
        let sizes: Vec<u64> = env.reader().checkpoint_rows().unwrap().iter().map(|c| c.size).collect();
        assert_eq!(sizes, vec![0, 2]);
        verify_ok(&env);
    };

    reopen_continues_the_tree => |backend: Backend| {
        let env = Env::new(backend);
        let ledger = env.open();
        fill(&ledger);
        let first = ledger.close().unwrap().unwrap();
        drop(ledger);
        let ledger = env.open();
        assert_eq!(ledger.size(), 42);
        for i in 0..5 {
            ledger.append(exec("t-4", i)).unwrap();
        }
        let cp = ledger.checkpoint().unwrap();
        assert_eq!(cp.checkpoint.size, 47);
        ledger.close().unwrap();
        let mut reader = env.reader();
        let proof = reader.consistency_proof(42, 47).unwrap();
        remit_ledger::merkle::verify_consistency(42, 47, &first.checkpoint.root, &cp.checkpoint.root, &proof).unwrap();
        let report = verify(&mut reader, &VerifyOptions { key: Some(env.key.public()), against: vec![first.note.clone()] }).unwrap();
        assert_eq!(report.events, 47);
        assert_eq!(report.against, vec![42]);
    };

    wrong_key_is_refused => |backend: Backend| {
        let env = Env::new(backend);
        env.open().close().unwrap();
        let other = LedgerKey::from_seed("test.remit/ledger-a", [2; 32]).unwrap();
        let err = Ledger::open(env.location.clone(), other, env.clock.clone(), Options::default()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("is signed by key"), "{msg}");
    };

    second_writer_shares_the_ledger => |backend: Backend| {
        let env = Env::new(backend);
        let first = env.open();
        let second = env.open();
        fill(&first);
        let seq = second.append_durable(exec("t-9", 0)).unwrap().wait().unwrap();
        assert_eq!(seq, 42, "the second writer continues the first one's tree");
        first.append_durable(exec("t-9", 1)).unwrap().wait().unwrap();
        assert_eq!(first.size(), 44);
        second.close().unwrap();
        first.close().unwrap();
        assert_eq!(verify_ok(&env).events, 44);
    };

    closed_ledger_refuses_appends => |backend: Backend| {
        let env = Env::new(backend);
        let ledger = env.open();
        ledger.append(exec("t", 0)).unwrap();
        let last = ledger.close().unwrap().unwrap();
        assert_eq!(last.checkpoint.size, 1);
        assert!(matches!(ledger.append(exec("t", 1)), Err(Error::Closed)));
        verify_ok(&env);
    };

    concurrent_appenders_group_commit => |backend: Backend| {
        let env = Env::new(backend);
        let ledger = env.open();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let ledger = ledger.clone();
                std::thread::spawn(move || {
                    let mut seqs = Vec::new();
                    for i in 0..150u64 {
                        if i % 10 == 9 {
                            seqs.push(ledger.append_durable(exec(&format!("t{t}"), i)).unwrap().wait().unwrap());
                        } else {
                            ledger.append(exec(&format!("t{t}"), i)).unwrap();
                        }
                    }
                    seqs
                })
            })
            .collect();
        let durable: Vec<Vec<u64>> = threads.into_iter().map(|h| h.join().unwrap()).collect();
        ledger.close().unwrap();
        let report = verify_ok(&env);
        assert_eq!(report.events, 1200);
        // Each thread's events are in its order, and its durable events where it was told.
        let mut reader = env.reader();
        let mut last = String::new();
        let mut next = [0u64; 8];
        reader.scan(&remit_ledger::Query::default(), &mut |e| {
            // Times never go backwards along the sequence of one writer.
            assert!(e.event.time >= last);
            last = e.event.time.clone();
            let t: usize = e.event.task[1..].parse().unwrap();
            let remit_types::event::EventBody::Exec(x) = &e.event.body else { panic!() };
            let i: u64 = x.argv[1].parse().unwrap();
            assert_eq!(i, next[t], "thread {t} out of order");
            next[t] += 1;
            if i % 10 == 9 {
                assert_eq!(durable[t][(i / 10) as usize], e.event.seq);
            }
            Ok(true)
        }).unwrap();
        assert_eq!(next, [150; 8]);
    };

    small_batches_still_commit_everything => |backend: Backend| {
        let env = Env::new(backend);
        let ledger = env.open_with(Options { max_batch: 3, max_pending: 5, ..Options::default() });
        for i in 0..100 {
            ledger.append(exec("t", i)).unwrap();
        }
        ledger.flush().unwrap();
        assert_eq!(ledger.size(), 100);
        assert_eq!(ledger.pending(), 0);
        ledger.close().unwrap();
        assert_eq!(verify_ok(&env).events, 100);
    };

    writer_failure_fails_waiters_and_later_appends => |backend: Backend| {
        let env = Env::new(backend);
        let ledger = env.open();
        ledger.append_durable(exec("t", 0)).unwrap().wait().unwrap();
        // Break the store under the writer: the next commit fails.
        env.sql("DROP TABLE {events}");
        let d = ledger.append_durable(exec("t", 1)).unwrap();
        let err = d.wait().unwrap_err();
        assert!(matches!(err, Error::WriterFailed { durable: 1, .. }), "{err}");
        assert!(matches!(ledger.append(exec("t", 2)), Err(Error::WriterFailed { .. })));
        assert!(ledger.flush().is_err());
        assert!(ledger.close().is_err());
    };

    observations_wait_for_company_and_waiters_commit_at_once => |backend: Backend| {
        let env = Env::new(backend);
        // A linger no test outlasts: only a waiter can get these committed.
        let ledger = env.open_with(Options { linger: Duration::from_secs(3600), ..Options::default() });
        ledger.append(exec("t", 0)).unwrap();
        ledger.append(exec("t", 1)).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(ledger.pending(), 2, "observations linger");
        // A durable event takes them along.
        assert_eq!(ledger.append_durable(exec("t", 2)).unwrap().wait().unwrap(), 2);
        assert_eq!(ledger.pending(), 0);
        // So does a flush, and an async durable event.
        ledger.append(exec("t", 3)).unwrap();
        ledger.flush().unwrap();
        assert_eq!(ledger.size(), 4);
        ledger.append(exec("t", 4)).unwrap();
        assert_eq!(block_on(ledger.append_durable(exec("t", 5)).unwrap()).unwrap(), 5);
        // And a checkpoint.
        ledger.append(exec("t", 6)).unwrap();
        assert_eq!(ledger.checkpoint().unwrap().checkpoint.size, 7);
        ledger.close().unwrap();
        assert_eq!(verify_ok(&env).events, 7);
    };

    lingering_observations_commit_by_themselves => |backend: Backend| {
        let env = Env::new(backend);
        let ledger = env.open_with(Options { linger: Duration::from_millis(1), ..Options::default() });
        ledger.append(exec("t", 0)).unwrap();
        // Nobody waits: the linger ends and the writer commits (polled, the disk may be slow).
        for _ in 0..3000 {
            if ledger.pending() == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(ledger.pending(), 0);
        assert_eq!(env.reader().size().unwrap(), 1);
    };

    a_tasks_last_events_and_its_kept_checkpoint_share_one_commit => |backend: Backend| {
        // Every commit keeps its checkpoint here, so the kept checkpoints count the commits.
        let commits = |linger: Duration, flush_each: bool| {
            let env = Env::new(backend);
            let ledger = env.open_with(Options {
                linger,
                checkpoint_interval: Duration::ZERO,
                ..Options::default()
            });
            let mut events = task_events("t", "ci-fixer");
            let end = events.pop().unwrap();
            for event in events {
                ledger.append(event).unwrap();
                if flush_each {
                    ledger.flush().unwrap();
                }
            }
            let checkpoint = ledger.finish([end]).unwrap().unwrap();
            assert_eq!(checkpoint.checkpoint.size, 14);
            assert!(matches!(ledger.append(exec("t", 99)), Err(Error::Closed)));
            assert_eq!(verify_ok(&env).events, 14);
            let rows = env.reader().checkpoint_rows().unwrap();
            rows.iter().filter(|r| r.kept && r.size > 0).map(|r| r.size).collect::<Vec<_>>()
        };
        // The task's observations wait for its end: one commit, one kept checkpoint.
        assert_eq!(commits(Duration::from_secs(3600), false), vec![14]);
        // Its twin, made durable one by one: a commit each.
        assert_eq!(commits(Duration::ZERO, true), (1..=14).collect::<Vec<_>>());
    };

    readers_after_close_reuse_the_writers_connection_then_open_their_own => |backend: Backend| {
        let env = Env::new(backend);
        let ledger = env.open();
        let mut events = task_events("t", "ci-fixer");
        let end = events.pop().unwrap();
        for event in events {
            ledger.append(event).unwrap();
        }
        // Before close, a reader is a connection of its own (the writer is still using its).
        assert!(ledger.reader().unwrap().size().unwrap() <= 13);
        ledger.finish([end]).unwrap();
        // The receipt, right after: the writer's connection, which sees everything committed.
        let envelope = ledger.receipt("t").unwrap();
        let verified =
            remit_ledger::receipt::verify_receipt(&envelope, &env.key.public(), None).unwrap();
        assert_eq!(verified.statement.predicate.summary.task, "t");
        // It was handed out once; later readers open their own, and read the same ledger.
        for _ in 0..2 {
            let mut reader = ledger.reader().unwrap();
            assert_eq!(reader.size().unwrap(), 14);
            assert_eq!(reader.event(13).unwrap().event.seq, 13);
        }
        assert_eq!(verify_ok(&env).events, 14);
    };
}
