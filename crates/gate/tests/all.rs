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

[actions.release]
args = ["tag"]
approve = true
quota = 1

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
        workspace: String::new(),
        args: [("tag".to_string(), tag.to_string())].into(),
    }
}

fn action(kind: &str, args: &[(&str, &str)]) -> Effect {
    Effect::Action {
        kind: kind.into(),
        workspace: String::new(),
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

/// A granted approval is for the request as it was asked then: left unused for one approval
/// timeout after it was granted, it expires and performs nothing.
#[tokio::test]
async fn a_granted_approval_left_unused_expires() {
    let (gate, journal, clock) = gate();
    let id = pending(&gate, publish("v6")).await;
    clock.advance(Duration::from_secs(500));
    gate.decide_approval(&id, "bob", true, None).unwrap();
    gate.decide_approval(&id, "carol", true, None).unwrap();
    // Still good 500 s after the grant (1,000 s after it was asked)...
    let id2 = pending(&gate, publish("v7")).await;
    gate.decide_approval(&id2, "bob", true, None).unwrap();
    gate.decide_approval(&id2, "carol", true, None).unwrap();
    clock.advance(Duration::from_secs(500));
    assert!(matches!(
        gate.request(publish("v6"), Duration::ZERO).await,
        Outcome::Authorized(_)
    ));
    // ...gone 601 s after it.
    clock.advance(Duration::from_secs(101));
    let Outcome::Denied { reason, .. } = gate.request(publish("v7"), Duration::ZERO).await else {
        panic!("an approval granted 601 s ago was used")
    };
    assert!(reason.contains("expired"), "{reason}");
    assert!(
        journal
            .events()
            .iter()
            .any(|(e, _)| e.kind() == "approval_expired")
    );
}

/// A flood of requests that need a human cannot bury the approvers' list: past
/// `MAX_OPEN_APPROVALS` waiting, a request is denied (and once they are decided, another
/// may open).
#[tokio::test]
async fn a_flood_of_approval_requests_is_capped() {
    let (gate, _, _) = gate();
    let mut ids = Vec::new();
    for i in 0..remit_gate::gate::MAX_OPEN_APPROVALS {
        ids.push(pending(&gate, publish(&format!("f{i}"))).await);
    }
    let Outcome::Denied { reason, .. } = gate.request(publish("one-more"), Duration::ZERO).await
    else {
        panic!("an approval past the cap was opened")
    };
    assert!(reason.contains("waiting for a human already"), "{reason}");
    // The same request as an open one is still that approval, not a new one.
    assert_eq!(pending(&gate, publish("f0")).await, ids[0]);
    gate.decide_approval(&ids[1], "bob", false, None).unwrap();
    pending(&gate, publish("one-more")).await;
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

/// Fire `n` requests for `effect` at once, on several threads; return their outcomes.
async fn at_once(gate: &Arc<Gate>, effect: Effect, n: usize) -> Vec<Outcome> {
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (gate, barrier, effect) = (Arc::clone(gate), Arc::clone(&barrier), effect.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            gate.request(effect, Duration::ZERO).await
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    outcomes
}

fn split(outcomes: Vec<Outcome>) -> (Vec<remit_gate::gate::Authorized>, Vec<(String, String)>) {
    let mut authorized = Vec::new();
    let mut denied = Vec::new();
    for outcome in outcomes {
        match outcome {
            Outcome::Authorized(a) => authorized.push(a),
            Outcome::Denied { policy, reason } => denied.push((policy, reason)),
            Outcome::Pending { approval } => panic!("unexpected pending approval {approval}"),
        }
    }
    (authorized, denied)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_get_exactly_the_quota() {
    let (gate, journal, _) = gate();
    // Nothing is performed until every request was decided: the quota holds on what is in
    // progress, not only on what was already performed.
    let (authorized, denied) = split(at_once(&gate, action("ping", &[]), 16).await);
    assert_eq!(
        authorized.len(),
        2,
        "quota = 2, yet {} proceeded",
        authorized.len()
    );
    assert_eq!(denied.len(), 14);
    for (policy, reason) in &denied {
        assert_eq!(policy, "actions.ping.quota");
        assert!(
            reason.contains("quota of 2") && reason.contains("2 in progress"),
            "{reason}"
        );
    }
    assert_eq!(gate.in_progress_counts().get("ping"), Some(&2));
    // Every refusal is a recorded denial.
    assert_eq!(gate.denials().len(), 14);
    assert_eq!(gate.counters().denials, 14);
    assert_eq!(gate.counters().effects, 16);
    let recorded = journal
        .events()
        .iter()
        .filter(|(e, _)| {
            matches!(e, EventBody::Decision(d)
                if d.decision == remit_types::event::Verdict::Deny
                    && d.policy.as_deref() == Some("actions.ping.quota"))
        })
        .count();
    assert_eq!(recorded, 14);
    for a in authorized {
        gate.begin(&a).await.unwrap();
        gate.performed(a, "ok");
    }
    assert_eq!(gate.performed_counts().get("ping"), Some(&2));
    assert!(gate.in_progress_counts().is_empty());
    let (authorized, denied) = split(at_once(&gate, action("ping", &[]), 4).await);
    assert!(authorized.is_empty());
    assert!(
        denied[0].1.contains("2 performed, 0 in progress"),
        "{denied:?}"
    );
}

#[tokio::test]
async fn a_quota_slot_comes_back_only_when_nothing_was_performed() {
    let (gate, _, _) = gate();
    let ping = || gate.request(action("ping", &[]), Duration::ZERO);
    let Outcome::Authorized(a) = ping().await else {
        panic!()
    };
    let Outcome::Authorized(b) = ping().await else {
        panic!()
    };
    assert!(matches!(ping().await, Outcome::Denied { .. }));
    // Dropped before its start was recorded (the caller gave up): the slot comes back.
    drop(a);
    let Outcome::Authorized(c) = ping().await else {
        panic!("a slot held by an abandoned authorization was not given back")
    };
    // Failed before its start was recorded (the record could not be made durable): back.
    gate.failed(b, "not recorded: disk full");
    let Outcome::Authorized(d) = ping().await else {
        panic!("a slot of an effect that never started was not given back")
    };
    assert!(matches!(ping().await, Outcome::Denied { .. }));
    // Failed after its start was recorded: it may have crossed the boundary, so it counts.
    gate.begin(&c).await.unwrap();
    gate.failed(c, "ran longer than 10m and was killed");
    assert!(matches!(ping().await, Outcome::Denied { .. }));
    // Dropped after its start was recorded: counted too.
    gate.begin(&d).await.unwrap();
    drop(d);
    assert_eq!(gate.performed_counts().get("ping"), Some(&2));
    assert!(gate.in_progress_counts().is_empty());
    let Outcome::Denied { reason, .. } = ping().await else {
        panic!()
    };
    assert!(reason.contains("2 performed, 0 in progress"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_approval_is_used_once_under_concurrent_requests() {
    let (gate, _, _) = gate();
    let release = action("release", &[("tag", "v1")]);
    let id = pending(&gate, release.clone()).await;
    gate.decide_approval(&id, "alice", true, None).unwrap();
    let outcomes = at_once(&gate, release.clone(), 8).await;
    let authorized: Vec<_> = outcomes
        .into_iter()
        .filter_map(|o| match o {
            Outcome::Authorized(a) => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(authorized.len(), 1, "one approval, one quota slot");
    assert_eq!(gate.approval(&id).unwrap().state, ApprovalState::Used);
    // Abandoned before it started: the quota slot comes back, the approval does not.
    drop(authorized);
    assert!(matches!(
        gate.request(release, Duration::ZERO).await,
        Outcome::Pending { .. }
    ));
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

/// Approvals still open when the task is killed or ends are cancelled in the record too
/// (otherwise the ledger and the receipt show them open for ever): pending ones and granted
/// ones never used; used, denied and expired ones keep their answer.
#[tokio::test]
async fn approvals_open_at_the_end_are_recorded_as_cancelled() {
    let cancelled = |journal: &MemoryJournal| -> Vec<(String, String)> {
        journal
            .events()
            .iter()
            .filter_map(|(e, _)| match e {
                EventBody::ApprovalCancelled(c) => Some((c.effect_id.clone(), c.reason.clone())),
                _ => None,
            })
            .collect()
    };
    let digest = |g: &Gate, id: &str| g.approval(id).unwrap().digest;

    // Killed: one pending, one granted and unused, one used, one denied.
    let (killed, journal, _) = gate();
    let open = pending(&killed, publish("open")).await;
    let unused = pending(&killed, publish("unused")).await;
    let used = pending(&killed, publish("used")).await;
    let denied = pending(&killed, publish("denied")).await;
    for id in [&unused, &used] {
        killed.decide_approval(id, "bob", true, None).unwrap();
        killed.decide_approval(id, "carol", true, None).unwrap();
    }
    killed.decide_approval(&denied, "bob", false, None).unwrap();
    let Outcome::Authorized(authorized) = killed.request(publish("used"), Duration::ZERO).await
    else {
        panic!("approved effect not authorized")
    };
    killed.begin(&authorized).await.unwrap();
    killed.performed(authorized, "succeeded");
    killed.kill("wall-clock limit reached");
    let reason = "task killed: wall-clock limit reached".to_string();
    assert_eq!(
        cancelled(&journal),
        [
            (digest(&killed, &open), reason.clone()),
            (digest(&killed, &unused), reason)
        ]
    );
    // Ending after a kill records nothing twice.
    killed.close("the task ended");
    assert_eq!(cancelled(&journal).len(), 2);

    // Ended normally with one approval still pending.
    let (ended, journal, _) = gate();
    let waiting = pending(&ended, publish("waiting")).await;
    ended.close("the task ended");
    assert_eq!(
        cancelled(&journal),
        [(digest(&ended, &waiting), "the task ended".to_string())]
    );
    assert!(matches!(
        ended.approval(&waiting).unwrap().state,
        ApprovalState::Cancelled { .. }
    ));
}

/// No start stays without an outcome: an effect started and still running when the task
/// ends (a script stuck past the wall-clock limit) is recorded as failed then, and its late
/// report is not recorded after the task's end. Its twin, finished in time, is performed.
#[tokio::test]
async fn effects_still_running_at_the_end_are_recorded_as_failed() {
    let (gate, journal, _) = gate();
    let outcomes = |journal: &MemoryJournal| -> Vec<(String, String)> {
        journal
            .events()
            .iter()
            .filter_map(|(e, _)| match e {
                EventBody::EffectPerformed(p) => Some(("performed".into(), p.effect_id.clone())),
                EventBody::EffectFailed(f) => Some((f.error.clone(), f.effect_id.clone())),
                _ => None,
            })
            .collect()
    };
    let Outcome::Authorized(done) = gate.request(action("ping", &[]), Duration::ZERO).await else {
        panic!("ping not authorized")
    };
    let Outcome::Authorized(stuck) = gate.request(action("ping", &[]), Duration::ZERO).await else {
        panic!("ping not authorized")
    };
    gate.begin(&done).await.unwrap();
    gate.begin(&stuck).await.unwrap();
    let (done_id, stuck_id) = (done.id().to_owned(), stuck.id().to_owned());
    gate.performed(done, "ok");
    gate.close("the task ended");
    // Reported after the end: not recorded a second time.
    gate.performed(stuck, "ok at last");
    assert_eq!(
        outcomes(&journal),
        [
            ("performed".to_string(), done_id),
            ("the task ended before it finished".to_string(), stuck_id)
        ]
    );
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
    let view = gate
        .approvals()
        .into_iter()
        .find(|a| a.id == approval)
        .unwrap();
    assert_eq!(view.effect, "exec `/usr/bin/cargo publish`");
    // The same program under a harmless-looking name: shown (and bound) as what runs, a
    // request of its own.
    let disguised = remit_policy::commands::ExecFacts {
        argv: vec!["ls".into(), "publish".into()],
        ..facts.clone()
    };
    let Outcome::Pending { approval: other } =
        gate.request_exec(disguised, "/w", Duration::ZERO).await
    else {
        panic!()
    };
    assert_ne!(other, approval);
    let view = gate
        .approvals()
        .into_iter()
        .find(|a| a.id == other)
        .unwrap();
    assert_eq!(view.effect, "exec `exec -a ls /usr/bin/cargo publish`");
    gate.decide_approval(&approval, "alice", true, None)
        .unwrap();
    assert!(matches!(
        gate.request_exec(facts, "/w", Duration::ZERO).await,
        Outcome::Authorized(_)
    ));
}

/// An effect whose start was recorded and whose caller went away without reporting is
/// recorded as failed: nothing stays started in the ledger without an outcome. One that
/// never started leaves nothing to report.
#[tokio::test]
async fn an_abandoned_effect_is_recorded_as_failed() {
    let (gate, journal, _) = gate();
    let Outcome::Authorized(a) = gate.request(action("ping", &[]), Duration::ZERO).await else {
        panic!()
    };
    gate.begin(&a).await.unwrap();
    let id = a.id().to_owned();
    drop(a);
    let failed: Vec<String> = journal
        .events()
        .into_iter()
        .filter_map(|(e, _)| match e {
            EventBody::EffectFailed(f) if f.effect_id == id => Some(f.error),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].starts_with("abandoned"), "{failed:?}");

    let before = journal.events().len();
    let Outcome::Authorized(b) = gate.request(action("ping", &[]), Duration::ZERO).await else {
        panic!()
    };
    drop(b);
    let after: Vec<_> = journal.events()[before..]
        .iter()
        .filter(|(e, _)| matches!(e, EventBody::EffectFailed(_)))
        .cloned()
        .collect();
    assert!(after.is_empty(), "{after:?}");
}

/// Send one request on the agent socket; the answer is read on a task of its own. The
/// writing half is returned so that the connection stays open.
async fn agent_request(
    socket: &std::path::Path,
    request: &str,
) -> (
    tokio::net::unix::OwnedWriteHalf,
    tokio::task::JoinHandle<String>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    write.write_all(request.as_bytes()).await.unwrap();
    let reader = tokio::spawn(async move {
        let mut answer = Vec::new();
        let _ = read.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    });
    (write, reader)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_task_hears_nothing_until_its_processes_are_gone() {
    let (gate, _, _) = gate();
    let dir = tempfile::tempdir().unwrap();
    let (socket, _kills) = serve_test_agent(&gate, dir.path());
    let body = r#"{"kind":"publish","args":{"tag":"v1"},"wait":60}"#;
    let post = format!(
        "POST /v1/actions HTTP/1.1\r\nHost: remit\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let status = "GET /v1/status HTTP/1.1\r\nHost: remit\r\nConnection: close\r\n\r\n";

    // The harmless twin: a live task is answered at once.
    let (_open, answer) = agent_request(&socket, status).await;
    let text = tokio::time::timeout(Duration::from_secs(30), answer)
        .await
        .unwrap()
        .unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");

    // A request waits for an approval; the task is killed meanwhile.
    let (_open, waiting) = agent_request(&socket, &post).await;
    for _ in 0..3000 {
        if !gate.approvals().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(gate.approvals().len(), 1);
    gate.kill("killed by alice: runaway");
    // The gate refused the effect at once, and a new request is refused too, but neither
    // answer leaves while the task's processes may still be running.
    let (_open2, refused) = agent_request(&socket, &post).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished() && !refused.is_finished());
    // Its processes are gone: the answers go out, saying why.
    gate.close("the task ended");
    for answer in [waiting, refused] {
        let text = tokio::time::timeout(Duration::from_secs(30), answer)
            .await
            .unwrap()
            .unwrap();
        assert!(text.starts_with("HTTP/1.1 403"), "{text}");
        assert!(
            text.contains("kill-switch") || text.contains("killed"),
            "{text}"
        );
    }
}

/// The agent API of a task, on a socket in `dir`; the receiver gets what the API asks to
/// kill (keep it while the API serves).
fn serve_test_agent(
    gate: &Arc<Gate>,
    dir: &std::path::Path,
) -> (
    std::path::PathBuf,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (api, kills) = test_api(gate, dir);
    let socket = dir.join("agent.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    tokio::spawn(remit_gate::api::serve_agent(listener, api));
    (socket, kills)
}

/// A task's API over `gate` (its workspace `dir`), and what it asks to kill.
fn test_api(
    gate: &Arc<Gate>,
    dir: &std::path::Path,
) -> (
    Arc<remit_gate::api::Api>,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    use remit_gate::api::Api;
    let loaded = remit_types::remit::parse(REMIT, "t.remit.toml", ".".into()).unwrap();
    let (kill, kills) = tokio::sync::mpsc::unbounded_channel();
    let api = Arc::new(Api {
        gate: Arc::clone(gate),
        info: remit_gate::registry::TaskInfo {
            task: "01TASK".into(),
            agent: "ci-fixer".into(),
            owner: "alice".into(),
            requester: "alice".into(),
            remit: "t.remit.toml".into(),
            remit_hash: "sha256:00".into(),
            workspace: dir.display().to_string(),
            command: vec!["sh".into()],
            supervisor_pid: std::process::id(),
            init_pid: 0,
            started: "2026-12-07T00:00:00Z".into(),
        },
        remit: loaded.remit,
        workspace: dir.to_owned(),
        git_dirs: None,
        kill,
        owner_uid: 0,
        task_uid: None,
        task_pidns: None,
        redactor: None,
        code: std::sync::OnceLock::new(),
        pauser: remit_gate::run::Pauser::without_task(),
    });
    (api, kills)
}

/// The control socket answers the humans beside the supervisor, never a process in a pid
/// namespace of its own, as any sandboxed task is (another task that can reach this
/// socket through a grant, as the same user, included).
#[tokio::test]
async fn the_control_socket_refuses_any_sandboxed_peer() {
    let dir = tempfile::tempdir().unwrap();
    let (gate, _journal, _clock) = gate();
    let (api, _kills) = test_api(&gate, dir.path());
    let socket = dir.path().join("control.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    tokio::spawn(remit_gate::api::serve_control(listener, api));
    let ask = |sandboxed: bool| {
        let socket = socket.clone();
        async move {
            let script = "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\ns.sendall(b'GET /v1/approvals HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n')\nprint(s.recv(64).decode().split()[1])";
            let mut command = if sandboxed {
                let mut c = tokio::process::Command::new("unshare");
                c.args(["--user", "--map-current-user", "--pid", "--fork", "python3"]);
                c
            } else {
                tokio::process::Command::new("python3")
            };
            let out = command
                .args(["-c", script])
                .arg(&socket)
                .output()
                .await
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        }
    };
    assert_eq!(
        ask(false).await,
        "200",
        "the human beside the supervisor is refused"
    );
    assert_eq!(
        ask(true).await,
        "403",
        "a process in another pid namespace was answered"
    );
}

/// Read one HTTP answer (headers and a `content-length` body) from `stream`.
async fn read_answer(stream: &mut tokio::net::UnixStream) -> String {
    use tokio::io::AsyncReadExt as _;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return text,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalling_or_flooding_task_cannot_hold_the_agent_socket() {
    use tokio::io::AsyncWriteExt as _;
    let (gate, _, _) = gate();
    let dir = tempfile::tempdir().unwrap();
    let (socket, _kills) = serve_test_agent(&gate, dir.path());
    let status = "GET /v1/status HTTP/1.1\r\nHost: remit\r\nConnection: close\r\n\r\n";
    let ask = |request: &'static str| {
        let socket = socket.clone();
        async move {
            let mut stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
            // A refused connection may be closed before the request is written.
            let _ = stream.write_all(request.as_bytes()).await;
            let answer = tokio::time::timeout(Duration::from_secs(60), read_answer(&mut stream));
            (answer.await.unwrap(), stream)
        }
    };
    assert!(ask(status).await.0.starts_with("HTTP/1.1 200"));

    // A body announced and never sent: answered 408 once the body's time is up, the
    // connection let go.
    let (answer, _stalled) = ask(
        "POST /v1/actions HTTP/1.1\r\nHost: remit\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"kind\"",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive within"), "{answer}");
    assert!(gate.approvals().is_empty());

    // As many idle connections as the socket serves: one more is refused with a reason…
    let mut idle = Vec::new();
    for _ in 0..remit_gate::api::MAX_AGENT_CONNECTIONS {
        idle.push(tokio::net::UnixStream::connect(&socket).await.unwrap());
    }
    let (answer, _) = ask(status).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("connections open"), "{answer}");
    // …and once they close, the task is served again.
    drop(idle);
    let mut served = false;
    for _ in 0..600 {
        if ask(status).await.0.starts_with("HTTP/1.1 200") {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served);
}
