//! Every kind of alteration is detected, with a message naming the first bad event.

use remit_ledger::merkle::MemoryTree;
use remit_ledger::verify::{VerifyOptions, verify};
use remit_ledger::{Error, Ledger, LedgerKey, Options, Query, SignedCheckpoint};

use crate::common::{Backend, Env, both_stores, exec, fill};

/// A closed ledger of 42 events (three tasks) and its final checkpoint.
fn setup(backend: Backend) -> (Env, SignedCheckpoint) {
    let env = Env::new(backend);
    let ledger = env.open();
    fill(&ledger);
    let cp = ledger.close().unwrap().unwrap();
    (env, cp)
}

fn verify_err(env: &Env, against: Vec<String>) -> remit_ledger::VerifyFailure {
    let mut reader = env.reader();
    match verify(
        &mut reader,
        &VerifyOptions {
            key: Some(env.key.public()),
            against,
        },
    ) {
        Err(Error::Verify(failure)) => failure,
        Err(other) => panic!("expected a verification failure, got error: {other}"),
        Ok(report) => panic!("tampered ledger verified: {} events", report.events),
    }
}

fn bodies(env: &Env) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    env.reader()
        .scan(&Query::default(), &mut |e| {
            out.push(e.bytes);
            Ok(true)
        })
        .unwrap();
    out
}

/// Rewrite every stored tree hash from `bodies`, as an attacker who knows the format would.
fn rehash(env: &Env, bodies: &[Vec<u8>]) {
    let mut tree = MemoryTree::new();
    let mut sql = String::new();
    for (seq, body) in bodies.iter().enumerate() {
        tree.push_data(body);
        let mut blob = Vec::new();
        for level in 0..=(seq as u64).trailing_ones() {
            let index = seq as u64 >> level;
            blob.extend_from_slice(
                &remit_ledger::merkle::NodeSource::node(&mut tree, level, index).unwrap(),
            );
        }
        sql.push_str(&format!(
            "UPDATE {{events}} SET nodes = {} WHERE seq = {seq};\n",
            env.blob(&blob)
        ));
    }
    env.sql(&sql);
}

fn set_body(env: &Env, seq: u64, body: &[u8]) {
    let text = std::str::from_utf8(body).unwrap();
    env.sql(&format!(
        "UPDATE {{events}} SET body = {} WHERE seq = {seq}",
        env.text(text)
    ));
}

both_stores! {
    intact_ledger_verifies => |backend: Backend| {
        let (env, cp) = setup(backend);
        let mut reader = env.reader();
        let report = verify(&mut reader, &VerifyOptions { key: Some(env.key.public()), against: vec![cp.note] }).unwrap();
        assert_eq!(report.events, 42);
    };

    edited_event => |backend: Backend| {
        let (env, _) = setup(backend);
        let body = String::from_utf8(bodies(&env)[21].clone()).unwrap().replace("protect-main", "protect-mainx");
        set_body(&env, 21, body.as_bytes());
        let f = verify_err(&env, vec![]);
        assert_eq!(f.seq, Some(21), "{f}");
        assert!(f.to_string().contains("event 21") && f.reason.contains("edited"), "{f}");
    };

    edited_event_with_recomputed_hashes => |backend: Backend| {
        let (env, _) = setup(backend);
        let mut all = bodies(&env);
        all[21] = String::from_utf8(all[21].clone()).unwrap().replace("protect-main", "protect-mainx").into_bytes();
        set_body(&env, 21, &all[21]);
        rehash(&env, &all);
        let f = verify_err(&env, vec![]);
        // The last checkpoint kept before event 20 is the end of task t-1 (size 14); the first
        // one after it is the end of task t-2 (size 28).
        assert_eq!(f.seq, Some(14), "{f}");
        assert!(f.reason.contains("events 14..27 do not match the checkpoint signed at size 28"), "{f}");
    };

    edited_column => |backend: Backend| {
        let (env, _) = setup(backend);
        env.sql("UPDATE {events} SET task = 'hidden' WHERE seq = 7");
        let f = verify_err(&env, vec![]);
        assert_eq!(f.seq, Some(7), "{f}");
        assert!(f.reason.contains("indexed `task`"), "{f}");
    };

    deleted_event => |backend: Backend| {
        let (env, _) = setup(backend);
        env.sql("DELETE FROM {events} WHERE seq = 9");
        let f = verify_err(&env, vec![]);
        assert_eq!(f.seq, Some(9), "{f}");
        assert!(f.to_string().contains("event 9 is missing"), "{f}");
    };

    deleted_event_renumbered => |backend: Backend| {
        let (env, _) = setup(backend);
        let all = bodies(&env);
        env.sql("DELETE FROM {events} WHERE seq = 9");
        let mut sql = String::new();
        for seq in 10..42 {
            sql.push_str(&format!("UPDATE {{events}} SET seq = {} WHERE seq = {seq};\n", seq - 1));
        }
        env.sql(&sql);
        let mut rest = all.clone();
        rest.remove(9);
        rehash(&env, &rest);
        let f = verify_err(&env, vec![]);
        assert_eq!(f.seq, Some(9), "{f}");
        assert!(f.reason.contains("records sequence number 10"), "{f}");
    };

    reordered_events => |backend: Backend| {
        let (env, _) = setup(backend);
        let all = bodies(&env);
        set_body(&env, 5, &all[7]);
        set_body(&env, 7, &all[5]);
        let f = verify_err(&env, vec![]);
        assert_eq!(f.seq, Some(5), "{f}");
        assert!(f.reason.contains("records sequence number 7"), "{f}");
    };

    inserted_event => |backend: Backend| {
        let (env, _) = setup(backend);
        let all = bodies(&env);
        let mut sql = String::new();
        for seq in (5..42).rev() {
            sql.push_str(&format!("UPDATE {{events}} SET seq = {} WHERE seq = {seq};\n", seq + 1));
        }
        env.sql(&sql);
        // A forged event claiming to be event 5, with a correct leaf hash.
        let forged = String::from_utf8(all[5].clone()).unwrap().replace("lease-1", "lease-X");
        let leaf = remit_ledger::merkle::leaf_hash(forged.as_bytes());
        env.sql(&format!(
            "INSERT INTO {{events}} (seq, time, task, agent, kind, body, nodes) SELECT 5, time, task, agent, kind, {}, {} FROM {{events}} WHERE seq = 6",
            env.text(&forged),
            env.blob(&leaf)
        ));
        let f = verify_err(&env, vec![]);
        assert_eq!(f.seq, Some(5), "{f}");
    };

    truncated_tail_against_saved_checkpoint => |backend: Backend| {
        let (env, cp) = setup(backend);
        env.sql("DELETE FROM {events} WHERE seq >= 39; DELETE FROM {checkpoints} WHERE size > 28");
        // Without a saved checkpoint the remaining tail is uncovered…
        let f = verify_err(&env, vec![]);
        assert_eq!(f.seq, Some(28), "{f}");
        assert!(f.reason.contains("not covered by any signed checkpoint"), "{f}");
        // …and with the one saved at close, the truncation is named.
        env.sql("DELETE FROM {events} WHERE seq >= 28");
        let f = verify_err(&env, vec![cp.note.clone()]);
        assert_eq!(f.seq, Some(28), "{f}");
        assert!(f.reason.contains("events were removed from the end"), "{f}");
    };

    truncated_tail_with_checkpoints_left => |backend: Backend| {
        let (env, _) = setup(backend);
        env.sql("DELETE FROM {events} WHERE seq >= 40");
        let f = verify_err(&env, vec![]);
        assert_eq!(f.seq, Some(40), "{f}");
        assert!(f.reason.contains("removed from the end"), "{f}");
    };

    appended_forged_event => |backend: Backend| {
        let (env, _) = setup(backend);
        let mut all = bodies(&env);
        let forged = String::from_utf8(all[41].clone()).unwrap().replace("\"seq\":41", "\"seq\":42");
        all.push(forged.clone().into_bytes());
        env.sql(&format!(
            "INSERT INTO {{events}} (seq, time, task, agent, kind, body, nodes) SELECT 42, time, task, agent, kind, {}, nodes FROM {{events}} WHERE seq = 41",
            env.text(&forged)
        ));
        rehash(&env, &all);
        let f = verify_err(&env, vec![]);
        assert_eq!(f.seq, Some(42), "{f}");
        assert!(f.reason.contains("not covered by any signed checkpoint"), "{f}");
        // The writer refuses to build on it, instead of signing the forgery.
        let err = Ledger::open(env.location.clone(), env.key.clone(), env.clock.clone(), Options::default()).unwrap_err();
        assert!(err.to_string().contains("not covered by a signed checkpoint"), "{err}");
    };

    forged_checkpoint_signature => |backend: Backend| {
        let (env, _) = setup(backend);
        let note = env.reader().latest_checkpoint(&env.key.public()).unwrap().note;
        let forged = note.replace("\n42\n", "\n41\n");
        assert_ne!(note, forged);
        env.sql(&format!("UPDATE {{checkpoints}} SET note = {} WHERE size = 42", env.text(&forged)));
        let f = verify_err(&env, vec![]);
        assert!(f.reason.contains("does not verify"), "{f}");
    };

    deleted_checkpoints => |backend: Backend| {
        let (env, _) = setup(backend);
        env.sql("DELETE FROM {checkpoints}");
        let f = verify_err(&env, vec![]);
        assert!(f.reason.contains("no signed checkpoint"), "{f}");
    };

    edited_event_with_its_own_hashes_recomputed => |backend: Backend| {
        // An attacker edits an event and rewrites only the hashes stored with it: the
        // subtree hash stored with a later event still covers the original, and the message
        // names the edited event (or the few it may be), not the later one.
        for seq in [10u64, 4] {
            let (env, _) = setup(backend);
            let all = bodies(&env);
            let forged = String::from_utf8(all[seq as usize].clone()).unwrap().replace("t-1", "t-X");
            assert_ne!(forged.as_bytes(), &all[seq as usize][..]);
            set_body(&env, seq, forged.as_bytes());
            // Its own stored hashes as a careful attacker recomputes them (an even event
            // completes no subtree but its leaf); the next event's are left alone.
            let leaf = remit_ledger::merkle::leaf_hash(forged.as_bytes());
            env.sql(&format!(
                "UPDATE {{events}} SET nodes = {} WHERE seq = {seq}",
                env.blob(&leaf)
            ));
            env.sql(&format!("UPDATE {{events}} SET task = 't-X' WHERE seq = {seq}"));
            let f = verify_err(&env, vec![]);
            assert_eq!(f.seq, Some(seq), "{f}");
            assert!(f.reason.contains(&format!("event {seq} was altered")), "{f}");
        }
    };

    signed_events_no_reader_accepts => |backend: Backend| {
        // Whoever holds the key re-signs a ledger whose last event carries what no writer
        // writes: each must fail verify, as it fails every reader that decodes it.
        let last = r#""seq":41"#;
        for (what, edit) in [
            ("an unknown field", (r#""schema":1"#, r#""evil":1,"schema":1"#)),
            ("an unknown body field", (r#""kind":"#, r#""kinc":1,"kind":"#)),
            ("an unknown kind", (r#""kind":"task_end""#, r#""kind":"task_ended""#)),
            ("a repeated key", (r#""schema":1"#, r#""schema":1,"schema":1"#)),
            ("whitespace", (r#""schema":1"#, r#""schema": 1"#)),
            ("a number beyond 2^53", (r#""exit_code":0"#, r#""exit_code":9007199254740993"#)),
        ] {
            let (env, _) = setup(backend);
            let mut all = bodies(&env);
            let body = String::from_utf8(all[41].clone()).unwrap();
            assert!(body.contains(last) && body.contains(edit.0), "{what}: {body}");
            let forged = body.replacen(edit.0, edit.1, 1);
            set_body(&env, 41, forged.as_bytes());
            if what == "an unknown kind" {
                env.sql("UPDATE {events} SET kind = 'task_ended' WHERE seq = 41");
            }
            all[41] = forged.into_bytes();
            rehash(&env, &all);
            let mut tree = MemoryTree::new();
            for b in &all {
                tree.push_data(b);
            }
            let signed = SignedCheckpoint::sign(
                remit_ledger::Checkpoint {
                    origin: env.key.name().to_owned(),
                    size: 42,
                    root: tree.root(),
                },
                &env.key,
            )
            .unwrap();
            env.sql(&format!(
                "UPDATE {{checkpoints}} SET note = {} WHERE size = 42",
                env.text(&signed.note)
            ));
            let f = verify_err(&env, vec![]);
            assert_eq!(f.seq, Some(41), "{what}: {f}");
            assert!(f.reason.starts_with("content is not"), "{what}: {f}");
        }
    };

    row_hidden_below_zero => |backend: Backend| {
        // A row with a negative sequence number is outside every scan: verify counts them.
        let (env, _) = setup(backend);
        if matches!(backend, Backend::Postgres) {
            // The PostgreSQL table refuses them; whoever can write the table can drop that.
            env.sql("ALTER TABLE {events} DROP CONSTRAINT ledger_events_seq_check");
        }
        env.sql("INSERT INTO {events} (seq, time, task, agent, kind, body, nodes) SELECT -1, time, task, agent, kind, body, nodes FROM {events} WHERE seq = 3");
        let f = verify_err(&env, vec![]);
        assert!(f.reason.contains("negative sequence number"), "{f}");
    };

    rewritten_from_genesis_with_the_same_key => |backend: Backend| {
        let (env, cp) = setup(backend);
        // An insider holding the key rebuilds the ledger with different history.
        env.sql("DROP TABLE {events}; DROP TABLE {checkpoints}; DROP TABLE {meta}");
        // In two sessions: the forged ledger keeps a signed checkpoint of its own at 20,
        // below the auditor's, which must not pass for proof that events 0..19 are genuine.
        for range in [0..20, 20..50] {
            let ledger = env.open();
            for i in range {
                ledger.append(exec("t-x", i)).unwrap();
            }
            ledger.close().unwrap();
        }
        // On its own the rewritten ledger is consistent…
        let mut reader = env.reader();
        verify(&mut reader, &VerifyOptions { key: Some(env.key.public()), against: vec![] }).unwrap();
        // …but not with the checkpoint an auditor saved earlier.
        let f = verify_err(&env, vec![cp.note.clone()]);
        assert!(f.reason.contains("rewritten"), "{f}");
        assert_eq!(f.seq, Some(0), "{f}");
    };

    rewritten_from_genesis_with_a_new_key => |backend: Backend| {
        let (env, cp) = setup(backend);
        env.sql("DROP TABLE {events}; DROP TABLE {checkpoints}; DROP TABLE {meta}");
        let forger = LedgerKey::from_seed("test.remit/ledger-a", [9; 32]).unwrap();
        let ledger = Ledger::open(env.location.clone(), forger, env.clock.clone(), Options::default()).unwrap();
        ledger.append(exec("t-x", 0)).unwrap();
        ledger.close().unwrap();
        let f = verify_err(&env, vec![]);
        assert!(f.reason.contains("re-keyed or rewritten"), "{f}");
        // Trusting only what the ledger says, the saved checkpoint still catches it.
        let mut reader = env.reader();
        let err = verify(&mut reader, &VerifyOptions { key: None, against: vec![cp.note.clone()] }).unwrap_err();
        assert!(err.to_string().contains("checkpoint 1 given to verify against"), "{err}");
    };
}
