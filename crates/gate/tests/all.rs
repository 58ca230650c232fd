//! The gate's decisions, approvals, quotas and kill switch, with an in-memory journal and a
//! clock the tests move.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use remit_gate::gate::{ApprovalError, ApprovalState, Clock, Gate, Outcome};
use remit_gate::journal::MemoryJournal;
use remit_policy::engine::{Engine, Principal};
use remit_types::effect::Effect;
use remit_types::event::EventBody;

struct TestClock(Mutex<SystemTime>);

impl Clock for TestClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap()
    }
}

impl TestClock {
    fn advance(&self, d: Duration) {
        *self.0.lock().unwrap() += d;
    }
}

const REMIT: &str = r#"
[agent]
name = "ci-fixer"
owner = "alice"

[commands]
prompt = ["cargo publish"]

[approvals]
groups = { release-managers = ["bob", "carol"] }
timeout = "10m"

[actions.publish]
args = ["tag"]
approve = { by = ["release-managers"], count = 2 }

[actions.ping]
quota = 2

[actions.deploy]
args = ["env"]
when = 'context.args.env != "production"'
"#;

fn gate() -> (Arc<Gate>, MemoryJournal, Arc<TestClock>) {
    let loaded = remit_types::remit::parse(REMIT, "t.remit.toml", ".".into()).unwrap();
    let engine = Engine::load(&loaded).unwrap();
    let journal = MemoryJournal::default();
    let clock = Arc::new(TestClock(Mutex::new(
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000),
    )));
    let principal = Principal {
        task: "01TASK".into(),
        agent: "ci-fixer".into(),
        owner: "alice".into(),
        requester: "alice".into(),
        remit: "sha256:00".into(),
        risk: "low".into(),
    };
    let gate = Gate::new(
        engine,
        principal,
        Arc::new(journal.clone()),
        clock.clone(),
        Duration::from_secs(600),
    );
    (Arc::new(gate), journal, clock)
}

fn publish(tag: &str) -> Effect {
    Effect::Action {
        kind: "publish".into(),
        args: [("tag".to_string(), tag.to_string())].into(),
    }
}

fn action(kind: &str, args: &[(&str, &str)]) -> Effect {
    Effect::Action {
        kind: kind.into(),
        args: args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

async fn pending(gate: &Gate, effect: Effect) -> String {
    match gate.request(effect, Duration::ZERO).await {
        Outcome::Pending { approval } => approval,
        other => panic!("expected pending, got {other:?}"),
    }
}

#[tokio::test]
async fn two_distinct_approvers_then_performed_once() {
    let (gate, journal, _) = gate();
    let id = pending(&gate, publish("v1")).await;
    // The same request while pending is the same approval.
    assert_eq!(pending(&gate, publish("v1")).await, id);
    assert!(matches!(
        gate.decide_approval(&id, "mallory", true, None),
        Err(ApprovalError::NotAnApprover(..))
    ));
    let view = gate
        .decide_approval(&id, "bob", true, Some("looks right".into()))
        .unwrap();
    assert_eq!(view.state, ApprovalState::Pending, "one approval of two");
    assert!(matches!(
        gate.decide_approval(&id, "bob", true, None),
        Err(ApprovalError::Twice(..))
    ));
    let view = gate.decide_approval(&id, "carol", true, None).unwrap();
    assert_eq!(view.state, ApprovalState::Approved);
    let Outcome::Authorized(authorized) = gate.request(publish("v1"), Duration::ZERO).await else {
        panic!("approved effect not authorized")
    };
    gate.begin(&authorized).await.unwrap();
    gate.performed(authorized, "succeeded");
    assert_eq!(gate.approval(&id).unwrap().state, ApprovalState::Used);
    // Replaying the approval is refused; asking again needs a new one.
    assert!(matches!(
        gate.decide_approval(&id, "carol", true, None),
        Err(ApprovalError::Decided(..))
    ));
    let again = pending(&gate, publish("v1")).await;
    assert_ne!(again, id);
    // The record: requested, granted twice, decision, durable start, performed — in order.
    let kinds: Vec<(&str, bool)> = journal
        .events()
        .iter()
        .map(|(e, durable)| (e.kind(), *durable))
        .collect();
    let position = |k: &str| kinds.iter().position(|(x, _)| *x == k).unwrap();
    assert!(position("approval_requested") < position("approval_granted"));
    assert!(position("decision") < position("effect_started"));
    assert!(position("effect_started") < position("effect_performed"));
    assert!(
        kinds
            .iter()
            .any(|(k, durable)| *k == "effect_started" && *durable),
        "the start must be durable"
    );
}

#[tokio::test]
async fn a_changed_argument_needs_its_own_approval() {
    let (gate, _, _) = gate();
    let id = pending(&gate, publish("v1")).await;
    gate.decide_approval(&id, "bob", true, None).unwrap();
    gate.decide_approval(&id, "carol", true, None).unwrap();
    // Approved for v1; v2 is another effect.
    let other = pending(&gate, publish("v2")).await;
    assert_ne!(other, id);
    assert!(matches!(
        gate.request(publish("v1"), Duration::ZERO).await,
        Outcome::Authorized(_)
    ));
}

#[tokio::test]
async fn denial_expiry_and_waiting() {
    let (gate, journal, clock) = gate();
    let id = pending(&gate, publish("v3")).await;
    gate.decide_approval(&id, "carol", false, Some("not today".into()))
        .unwrap();
    let Outcome::Denied { reason, .. } = gate.request(publish("v3"), Duration::ZERO).await else {
        panic!()
    };
    assert!(
        reason.contains("carol denied") && reason.contains("not today"),
        "{reason}"
    );

    let id = pending(&gate, publish("v4")).await;
    clock.advance(Duration::from_secs(601));
    let Outcome::Denied { reason, .. } = gate.request(publish("v4"), Duration::ZERO).await else {
        panic!()
    };
    assert!(reason.contains("expired"), "{reason}");
    assert!(matches!(
        gate.decide_approval(&id, "bob", true, None),
        Err(ApprovalError::Decided(..))
    ));
    assert!(
        journal
            .events()
            .iter()
            .any(|(e, _)| e.kind() == "approval_expired")
    );

    // A waiting request wakes up when the approval is given.
    let g = Arc::clone(&gate);
    let waiter =
        tokio::spawn(async move { g.request(publish("v5"), Duration::from_secs(30)).await });
    let mut id = None;
    for _ in 0..100 {
        tokio::task::yield_now().await;
        id = gate
            .approvals()
            .into_iter()
            .find(|a| a.state == ApprovalState::Pending)
            .map(|a| a.id);
        if id.is_some() {
            break;
        }
    }
    let id = id.unwrap();
    gate.decide_approval(&id, "bob", true, None).unwrap();
    gate.decide_approval(&id, "carol", true, None).unwrap();
    assert!(matches!(waiter.await.unwrap(), Outcome::Authorized(_)));
}

#[tokio::test]
async fn quotas_count_performed_effects() {
    let (gate, _, _) = gate();
    for _ in 0..2 {
        let Outcome::Authorized(a) = gate.request(action("ping", &[]), Duration::ZERO).await else {
            panic!()
        };
        gate.performed(a, "ok");
    }
    let Outcome::Denied { policy, reason } =
        gate.request(action("ping", &[]), Duration::ZERO).await
    else {
        panic!()
    };
    assert_eq!(policy, "actions.ping.quota");
    assert!(reason.contains("quota of 2"), "{reason}");
    assert_eq!(gate.denials().len(), 1);
}

#[tokio::test]
async fn conditions_and_unknown_actions() {
    let (gate, _, _) = gate();
    assert!(matches!(
        gate.request(action("deploy", &[("env", "staging")]), Duration::ZERO)
            .await,
        Outcome::Authorized(_)
    ));
    assert!(matches!(
        gate.request(action("deploy", &[("env", "production")]), Duration::ZERO)
            .await,
        Outcome::Denied { .. }
    ));
    let Outcome::Denied { reason, .. } = gate.request(action("launch", &[]), Duration::ZERO).await
    else {
        panic!()
    };
    assert!(reason.contains("unknown action `launch`"), "{reason}");
}

#[tokio::test]
async fn the_kill_switch_stops_everything() {
    let (gate, journal, _) = gate();
    let g = Arc::clone(&gate);
    let waiter =
        tokio::spawn(async move { g.request(publish("v9"), Duration::from_secs(60)).await });
    for _ in 0..100 {
        tokio::task::yield_now().await;
        if !gate.approvals().is_empty() {
            break;
        }
    }
    gate.kill("killed by alice: runaway");
    let Outcome::Denied { policy, .. } = waiter.await.unwrap() else {
        panic!()
    };
    assert_eq!(policy, "kill-switch");
    assert!(matches!(
        gate.approvals()[0].state,
        ApprovalState::Cancelled { .. }
    ));
    assert!(matches!(
        gate.request(action("ping", &[]), Duration::ZERO).await,
        Outcome::Denied { .. }
    ));
    let facts = remit_policy::commands::ExecFacts {
        path: "/bin/ls".into(),
        argv: vec!["ls".into()],
        ..Default::default()
    };
    assert!(matches!(
        gate.decide_exec(&facts, "/w"),
        remit_policy::engine::Decision::Deny { .. }
    ));
    assert!(journal.events().iter().any(
        |(e, _)| matches!(e, EventBody::Decision(d) if d.policy.as_deref() == Some("kill-switch"))
    ));
}

#[tokio::test]
async fn exec_prompts_go_through_approvals() {
    let (gate, _, _) = gate();
    let facts = remit_policy::commands::ExecFacts {
        path: "/usr/bin/cargo".into(),
        argv: vec!["cargo".into(), "publish".into()],
        ..Default::default()
    };
    assert!(matches!(
        gate.decide_exec(&facts, "/w"),
        remit_policy::engine::Decision::NeedsApproval { .. }
    ));
    let Outcome::Pending { approval } =
        gate.request_exec(facts.clone(), "/w", Duration::ZERO).await
    else {
        panic!()
    };
    // Default approvers: the agent's owner.
    assert!(matches!(
        gate.decide_approval(&approval, "bob", true, None),
        Err(ApprovalError::NotAnApprover(..))
    ));
    gate.decide_approval(&approval, "alice", true, None)
        .unwrap();
    assert!(matches!(
        gate.request_exec(facts, "/w", Duration::ZERO).await,
        Outcome::Authorized(_)
    ));
}
