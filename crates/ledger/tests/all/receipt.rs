//! Signed task receipts: built from the ledger, verified offline and against the ledger.

use base64::Engine;
use remit_ledger::receipt::{Envelope, PREDICATE_TYPE, Statement, build_receipt, verify_receipt};
use remit_ledger::{Error, LedgerKey};

use crate::common::{Backend, Env, both_stores, exec, fill};

fn decode(envelope: &Envelope) -> Statement {
    let payload = base64::engine::general_purpose::STANDARD
        .decode(&envelope.payload)
        .unwrap();
    serde_json::from_slice(&payload).unwrap()
}

both_stores! {
    receipt_summarises_the_task_and_verifies => |backend: Backend| {
        let env = Env::new(backend);
        let ledger = env.open();
        fill(&ledger);
        let envelope = ledger.receipt("t-2").unwrap();
        ledger.close().unwrap();

        let statement = decode(&envelope);
        assert_eq!(statement.predicate_type, PREDICATE_TYPE);
        let s = &statement.predicate.summary;
        assert_eq!(s.task, "t-2");
        assert_eq!(s.agent, "ci-fixer");
        assert_eq!(s.owner, "alice@example.com");
        assert_eq!(s.requester, "alice@example.com");
        assert_eq!(s.remit.name, "ci-fixer");
        assert_eq!(s.identity, "spiffe://remit.local/agent/ci-fixer/task/t-2");
        assert_eq!(s.permissions.len(), 2);
        assert_eq!(s.secrets_reachable[0].location, "config/dev.env:3");
        assert_eq!(s.effects["http.request"]["allow"], 1);
        assert_eq!(s.effects["git.push"]["deny"], 1);
        assert_eq!(s.execs["allow"], 1);
        assert_eq!(s.execs["deny"], 1);
        assert_eq!(s.denials.len(), 2);
        assert_eq!(s.approvals.len(), 1);
        assert_eq!(s.approvals[0].status, "granted");
        assert_eq!(s.approvals[0].granted_by, vec!["bob@example.com".to_owned()]);
        assert_eq!(s.violations.len(), 1);
        assert_eq!(s.credentials["issued"], 1);
        assert_eq!(s.credentials["revoked"], 1);
        assert_eq!(s.outcomes["performed"], 1);
        assert_eq!(s.workspace_diff_sha256.as_deref(), Some("a".repeat(64).as_str()));
        assert_eq!(s.events, 14);
        assert_eq!(statement.predicate.ledger.task_end.seq, 27);
        assert_eq!(statement.subject.len(), 2);

        // Offline, with the public key only.
        let verified = verify_receipt(&envelope, &env.key.public(), None).unwrap();
        assert!(!verified.checked_against_ledger);
        assert_eq!(verified.checkpoint.checkpoint.size, 28);
        // And against the ledger, whose summary must match.
        let mut reader = env.reader();
        let verified = verify_receipt(&envelope, &env.key.public(), Some(&mut reader)).unwrap();
        assert!(verified.checked_against_ledger);
        // Survives a round trip through its file format.
        let text = envelope.to_json().unwrap();
        verify_receipt(&Envelope::parse(&text).unwrap(), &env.key.public(), None).unwrap();
    };

    altered_receipt_is_refused => |backend: Backend| {
        let env = Env::new(backend);
        let ledger = env.open();
        fill(&ledger);
        let envelope = ledger.receipt("t-1").unwrap();
        ledger.close().unwrap();
        let mut statement = decode(&envelope);
        statement.predicate.summary.denials.clear();
        let mut forged = envelope.clone();
        forged.payload = base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&statement).unwrap());
        let err = verify_receipt(&forged, &env.key.public(), None).unwrap_err();
        assert!(err.to_string().contains("does not verify"), "{err}");
    };

    wrong_key_and_other_ledger_are_refused => |backend: Backend| {
        let env = Env::new(backend);
        let ledger = env.open();
        fill(&ledger);
        let envelope = ledger.receipt("t-1").unwrap();
        ledger.close().unwrap();

        let other_key = LedgerKey::from_seed("test.remit/ledger-b", [3; 32]).unwrap();
        let err = verify_receipt(&envelope, &other_key.public(), None).unwrap_err();
        assert!(err.to_string().contains("not signed by `test.remit/ledger-b+"), "{err}");

        // A ledger of its own under the other key: the receipt is from elsewhere.
        let other = Env::with_key(backend, other_key.clone());
        let l = other.open();
        fill(&l);
        l.close().unwrap();
        let mut reader = other.reader();
        let err = verify_receipt(&envelope, &env.key.public(), Some(&mut reader)).unwrap_err();
        assert!(err.to_string().contains("receipt is from ledger `test.remit/ledger-a`"), "{err}");
    };

    receipt_against_an_altered_ledger_fails => |backend: Backend| {
        let env = Env::new(backend);
        let ledger = env.open();
        fill(&ledger);
        let envelope = ledger.receipt("t-1").unwrap();
        ledger.close().unwrap();
        // Hide a denial of task t-1 by changing its decision in place.
        env.sql("UPDATE {events} SET body = replace(body, '\"decision\":\"deny\"', '\"decision\":\"allow\"') WHERE seq = 7");
        let mut reader = env.reader();
        let err = verify_receipt(&envelope, &env.key.public(), Some(&mut reader)).unwrap_err();
        assert!(matches!(err, Error::Receipt(_)), "{err}");
        assert!(err.to_string().contains("ledger"), "{err}");
    };

    no_receipt_before_task_end => |backend: Backend| {
        let env = Env::new(backend);
        let ledger = env.open();
        for event in crate::common::task_events("t-1", "ci-fixer").into_iter().take(5) {
            ledger.append(event).unwrap();
        }
        ledger.append(exec("t-1", 99)).unwrap();
        ledger.flush().unwrap();
        let err = ledger.receipt("t-1").unwrap_err();
        assert!(err.to_string().contains("has not ended"), "{err}");
        let err = ledger.receipt("nope").unwrap_err();
        assert!(err.to_string().contains("task `nope` has no `run_authorized`"), "{err}");
        let mut reader = env.reader();
        let stranger = LedgerKey::from_seed("test.remit/other", [4; 32]).unwrap();
        assert!(build_receipt(&mut reader, &stranger, "t-1").is_err());
        ledger.close().unwrap();
    };
}
