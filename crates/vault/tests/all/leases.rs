//! The lease lifecycle on an injected clock: issue, use, expire, revoke, recover.

use std::sync::Arc;
use std::time::Duration;

use remit_identity::Clock as _;
use remit_vault::backend::git::{GitAccess, GitTokenError, GitTokenVerifier};
use remit_vault::{Broker, LeaseEnded, LeaseState, RevokeReason, VaultError};

use crate::common::{Home, remit, task};

const REMIT: &str = r#"
[network]
allow = ["api.anthropic.com"]

[[network.credential]]
name = "anthropic"
env = "ANTHROPIC_API_KEY"
from = { vault = "anthropic-key" }
inject = { hosts = ["api.anthropic.com"], header = "x-api-key" }

[credentials]
ttl = "10m"

[credentials.git.widgets]
repository = "https://git.internal/acme/widgets.git"
push = ["refs/heads/remit/*"]
ttl = "5m"
"#;

#[test]
fn leases_live_expire_and_are_revoked_on_time() {
    let home = Home::new();
    home.vault
        .set("anthropic-key", b"sk-ant-api03-0123456789abcdef", "alice")
        .unwrap();
    let t = task("T1");
    let creds = home
        .broker
        .issue_for_task(&t, &remit(REMIT), Duration::from_secs(3600))
        .unwrap();
    assert_eq!(creds.leases.len(), 2);
    let (anthropic, widgets) = (&creds.leases[0], &creds.leases[1]);
    assert_eq!(
        (anthropic.name.as_str(), anthropic.backend.as_str()),
        ("anthropic", "static")
    );
    assert_eq!(anthropic.destination.as_deref(), Some("api.anthropic.com"));
    assert_eq!(anthropic.scope["source"], "vault");
    assert_eq!(anthropic.scope["from"], "anthropic-key");
    assert_eq!(widgets.backend, "git");
    let now = home.clock.now();
    assert_eq!(
        anthropic.expires.duration_since(now).unwrap(),
        Duration::from_secs(600)
    );
    assert_eq!(
        widgets.expires.duration_since(now).unwrap(),
        Duration::from_secs(300)
    );
    assert_eq!(creds.env.len(), 1);
    assert_eq!(creds.env[0].0, "WIDGETS_GIT_TOKEN");
    assert_eq!(creds.next_expiry(), Some(widgets.expires));
    assert_eq!(
        home.broker.next_expiry("T1").unwrap(),
        Some(widgets.expires)
    );
    creds.check("anthropic", now).unwrap();
    creds.check("widgets", now).unwrap();
    assert_eq!(
        creds.check("other", now),
        Err(LeaseEnded::NoLease("other".into()))
    );

    // Five minutes later the git token expires; the static secret does not yet.
    home.clock.advance(Duration::from_secs(300));
    let now = home.clock.now();
    assert_eq!(
        creds.check("widgets", now),
        Err(LeaseEnded::Expired("widgets".into()))
    );
    creds.check("anthropic", now).unwrap();
    let report = home.broker.revoke_expired().unwrap();
    assert_eq!(report.revoked, vec![widgets.id.clone()]);
    assert!(report.is_complete());
    assert_eq!(
        home.broker.lease(&widgets.id).unwrap().state,
        LeaseState::Revoked
    );

    // The task ends: the rest goes, once.
    let report = home
        .broker
        .revoke_task("T1", &RevokeReason::TaskEnd)
        .unwrap();
    assert_eq!(report.revoked, vec![anthropic.id.clone()]);
    assert_eq!(
        creds.check("anthropic", now),
        Err(LeaseEnded::Revoked("anthropic".into()))
    );
    assert!(
        home.broker
            .revoke_task("T1", &RevokeReason::TaskEnd)
            .unwrap()
            .revoked
            .is_empty()
    );
    assert_eq!(
        home.events(),
        vec![
            "credential_issued anthropic injected",
            "credential_issued widgets env",
            "credential_revoked widgets expired",
            "credential_revoked anthropic task_end",
        ]
    );
    // Nothing live remains.
    assert!(home.broker.live_leases(None).unwrap().is_empty());
    assert!(home.broker.stuck().unwrap().is_empty());
}

#[test]
fn git_tokens_are_scoped_and_die_with_their_lease() {
    let home = Home::new();
    let creds = home
        .broker
        .issue_for_task(
            &task("T1"),
            &remit(
                REMIT
                    .replace(
                        "from = { vault = \"anthropic-key\" }",
                        "from = { env = \"K\" }",
                    )
                    .as_str(),
            ),
            Duration::from_secs(3600),
        )
        .unwrap();
    let token = creds.env[0].1.expose_str().unwrap().to_owned();
    assert!(token.starts_with("rgt_"));
    let verifier = GitTokenVerifier::new(home.vault.clone());
    let repo = "https://git.internal/acme/widgets";
    let ok = verifier.verify(&token, repo, GitAccess::Fetch).unwrap();
    assert_eq!((ok.task.as_str(), ok.name.as_str()), ("T1", "widgets"));
    verifier
        .verify(
            &token,
            "https://GIT.internal/acme/widgets.git/",
            GitAccess::Push(&["refs/heads/remit/fix"]),
        )
        .unwrap();
    assert!(matches!(
        verifier.verify(&token, repo, GitAccess::Push(&["refs/heads/remit/x", "refs/heads/main"])),
        Err(GitTokenError::RefNotAllowed { reference, .. }) if reference == "refs/heads/main"
    ));
    assert!(matches!(
        verifier.verify(&token, "https://git.internal/acme/other", GitAccess::Fetch),
        Err(GitTokenError::WrongRepository { .. })
    ));
    assert_eq!(
        verifier.verify("rgt_made-up", repo, GitAccess::Fetch),
        Err(GitTokenError::Unknown)
    );
    assert_eq!(
        verifier.verify("ghp_other", repo, GitAccess::Fetch),
        Err(GitTokenError::Unknown)
    );
    // Expired: refused even before anyone revokes it.
    home.clock.advance(Duration::from_secs(301));
    assert!(matches!(
        verifier.verify(&token, repo, GitAccess::Fetch),
        Err(GitTokenError::Ended { why, .. }) if why == "expired"
    ));
    home.broker
        .revoke_task("T1", &RevokeReason::Killed)
        .unwrap();
    let err = verifier.verify(&token, repo, GitAccess::Fetch).unwrap_err();
    assert!(err.to_string().contains("revoked (killed)"), "{err}");
}

#[test]
fn a_lease_the_ledger_cannot_record_is_not_handed_out() {
    let home = Home::new();
    home.recorder.fail_with(Some("disk full"));
    let err = home
        .broker
        .issue_for_task(
            &task("T1"),
            &remit("[credentials.git.w]\nrepository = \"https://x.internal/a/b\"\n"),
            Duration::from_secs(60),
        )
        .unwrap_err();
    assert!(matches!(err, VaultError::Record(..)), "{err}");
    assert!(err.to_string().contains("disk full"));
    let leases = home.broker.task_leases("T1").unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].state, LeaseState::Revoked);
    assert_eq!(
        leases[0].revoke_reason.as_deref(),
        Some("task_start_failed")
    );
    home.recorder.fail_with(None);
}

#[test]
fn all_or_nothing_at_task_start() {
    let home = Home::new();
    // The second grant needs a vault secret that does not exist: the first is revoked.
    let err = home
        .broker
        .issue_for_task(
            &task("T1"),
            &remit(
                "[credentials.git.w]\nrepository = \"https://x.internal/a/b\"\n\
                 [credentials.github.g]\nkey = \"missing\"\napp = \"1\"\ninstallation = 2\n\
                 repositories = [\"b\"]\npermissions = { contents = \"read\" }\n\
                 api = \"http://127.0.0.1:9\"\n",
            ),
            Duration::from_secs(60),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("remit secret set missing"), "{err}");
    let states: Vec<_> = home
        .broker
        .task_leases("T1")
        .unwrap()
        .into_iter()
        .map(|l| (l.name, l.state, l.revoke_reason))
        .collect();
    assert_eq!(
        states,
        vec![
            (
                "w".into(),
                LeaseState::Revoked,
                Some("task_start_failed".into())
            ),
            (
                "g".into(),
                LeaseState::Revoked,
                Some("task_start_failed".into())
            ),
        ]
    );
}

#[test]
fn leases_of_a_dead_supervisor_are_recovered() {
    let home = Home::new();
    let r = remit("[credentials.git.w]\nrepository = \"https://x.internal/a/b\"\n");
    let dead = home
        .broker
        .issue_for_task(&task("DEAD"), &r, Duration::from_secs(600))
        .unwrap();
    let alive = home
        .broker
        .issue_for_task(&task("ALIVE"), &r, Duration::from_secs(600))
        .unwrap();
    // Make the first look like it belongs to a supervisor from before a reboot.
    let conn = rusqlite::Connection::open(remit_vault::vault_db_path(home.path())).unwrap();
    conn.execute(
        "UPDATE leases SET owner_boot = 'a-previous-boot' WHERE task = 'DEAD'",
        [],
    )
    .unwrap();
    // And one that was being issued when it died.
    conn.execute(
        "UPDATE leases SET owner_boot = 'a-previous-boot', state = 'issuing' WHERE id = ?1",
        [&alive.leases[0].id],
    )
    .unwrap();
    let stuck = remit_vault::doctor::stuck_leases(home.path()).unwrap();
    assert_eq!(stuck.len(), 2, "{stuck:?}");
    assert!(stuck[0].why.contains("supervisor"), "{}", stuck[0].why);
    let report = home.broker.recover().unwrap();
    assert_eq!(report.revoked.len(), 2);
    assert!(report.revoked.contains(&dead.leases[0].id));
    assert!(
        home.events()
            .iter()
            .any(|e| e == "credential_revoked w recovered_after_crash")
    );
    assert!(home.broker.live_leases(None).unwrap().is_empty());
    assert!(
        remit_vault::doctor::stuck_leases(home.path())
            .unwrap()
            .is_empty()
    );
    // A live supervisor's lease is never taken by recovery.
    let mine = home
        .broker
        .issue_for_task(&task("MINE"), &r, Duration::from_secs(600))
        .unwrap();
    assert!(home.broker.recover().unwrap().revoked.is_empty());
    assert_eq!(
        home.broker.lease(&mine.leases[0].id).unwrap().state,
        LeaseState::Open
    );
    // Unless it expired.
    home.clock.advance(Duration::from_secs(601));
    assert_eq!(home.broker.recover().unwrap().revoked, mine.lease_ids());
}

#[test]
fn a_thousand_leases_are_revoked_at_once() {
    let home = Home::new();
    let t = task("BIG");
    for i in 0..1000 {
        home.broker
            .issue(
                &t,
                &remit_vault::LeaseSpec {
                    name: format!("s{i}"),
                    backend: "static".into(),
                    scope: serde_json::json!({}),
                    destination: None,
                    delivery: remit_vault::Delivery::Injected,
                    ttl: Duration::from_secs(600),
                },
            )
            .unwrap();
    }
    let report = home
        .broker
        .revoke_task("BIG", &RevokeReason::Killed)
        .unwrap();
    assert_eq!(report.revoked.len(), 1000);
    assert!(report.is_complete());
    assert_eq!(home.recorder.events().len(), 2000);
}

/// Another process (`remit agent suspend`) revokes a running task's static lease in the
/// vault's database only: once the supervisor reads the lease states again, the proxy stops
/// injecting it. The twin: a lease still open stays usable.
#[test]
fn a_revocation_by_another_process_stops_injection() {
    let home = Home::new();
    home.vault
        .set("anthropic-key", b"sk-ant-api03-0123456789abcdef", "alice")
        .unwrap();
    let creds = home
        .broker
        .issue_for_task(&task("T1"), &remit(REMIT), Duration::from_secs(3600))
        .unwrap();
    let now = home.clock.now();
    let anthropic = creds.lease("anthropic").unwrap().id.clone();
    // The other process: its own broker on the same vault.
    let other = Broker::new(
        Arc::clone(&home.vault),
        Arc::new(remit_vault::MemoryRecorder::default()),
    );
    assert!(other.revoke(&anthropic, &RevokeReason::Manual).unwrap());
    creds.check("anthropic", now).unwrap();
    let ended = home.broker.refresh_ended(&creds.lease_ids());
    assert_eq!(ended, vec![anthropic]);
    assert_eq!(
        creds.check("anthropic", now),
        Err(LeaseEnded::Revoked("anthropic".into()))
    );
    creds.check("widgets", now).unwrap();
    assert!(home.broker.refresh_ended(&creds.lease_ids()).is_empty());
}
