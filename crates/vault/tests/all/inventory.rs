//! The agents inventory and what suspension and revocation do to leases.

use std::time::Duration;

use remit_identity::Clock as _;

use remit_vault::{AgentStatus, NewAgent, RevokeReason, RiskTier, VaultError};

use crate::common::{Home, remit, task};

#[test]
fn agents_have_owners_and_a_lifecycle() {
    let home = Home::new();
    let v = &home.vault;
    let agent = v
        .add_agent(
            &NewAgent {
                name: "ci-fixer",
                owner: "alice@example.com",
                purpose: Some("fix CI failures"),
                risk: RiskTier::Medium,
                default_remit: Some("ci-fixer.remit.toml"),
            },
            "alice",
        )
        .unwrap();
    assert_eq!(agent.status, AgentStatus::Active);
    assert!(matches!(
        v.add_agent(
            &NewAgent {
                name: "ci-fixer",
                owner: "bob",
                purpose: None,
                risk: RiskTier::Unrated,
                default_remit: None
            },
            "bob"
        ),
        Err(VaultError::AgentExists(_))
    ));
    assert!(matches!(
        v.add_agent(
            &NewAgent {
                name: "x",
                owner: " ",
                purpose: None,
                risk: RiskTier::Unrated,
                default_remit: None
            },
            "bob"
        ),
        Err(VaultError::BadAgent(_))
    ));
    v.admit("ci-fixer").unwrap();
    assert!(v.admit("never-registered").unwrap().is_none());
    v.task_started("ci-fixer", "T1", home.clock.now()).unwrap();
    assert_eq!(
        v.agent("ci-fixer").unwrap().unwrap().last_task.as_deref(),
        Some("T1")
    );

    // Leases of two tasks; suspension revokes them all at once.
    let r = remit("[credentials.git.w]\nrepository = \"https://x.internal/a/b\"\n");
    home.broker
        .issue_for_task(&task("T1"), &r, Duration::from_secs(600))
        .unwrap();
    home.broker
        .issue_for_task(&task("T2"), &r, Duration::from_secs(600))
        .unwrap();
    v.set_agent_status(
        "ci-fixer",
        AgentStatus::Suspended,
        "alice",
        Some("investigating"),
    )
    .unwrap();
    let err = v.admit("ci-fixer").unwrap_err();
    assert!(err.is_denial());
    assert_eq!(
        err.to_string(),
        "agent `ci-fixer` is suspended (investigating); it cannot start tasks"
    );
    let report = home
        .broker
        .revoke_agent("ci-fixer", &RevokeReason::AgentSuspended)
        .unwrap();
    assert_eq!(report.revoked.len(), 2);
    assert!(
        home.broker
            .live_leases(Some("ci-fixer"))
            .unwrap()
            .is_empty()
    );

    v.set_agent_status("ci-fixer", AgentStatus::Active, "alice", None)
        .unwrap();
    v.admit("ci-fixer").unwrap();
    v.set_agent_status(
        "ci-fixer",
        AgentStatus::Revoked,
        "alice",
        Some("offboarded"),
    )
    .unwrap();
    assert!(v.admit("ci-fixer").is_err());
    let err = v
        .set_agent_status("ci-fixer", AgentStatus::Active, "alice", None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot be resumed"), "{err}");
    let updated = v
        .update_agent(
            "ci-fixer",
            Some("carol@example.com"),
            None,
            Some(RiskTier::High),
            None,
        )
        .unwrap();
    assert_eq!(updated.owner, "carol@example.com");
    assert_eq!(updated.risk, RiskTier::High);
    assert_eq!(updated.purpose.as_deref(), Some("fix CI failures"));
}
