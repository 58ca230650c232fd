//! Tool calls as the policy sees them: `Tool::"name"` with its arguments in
//! `context.call.args`, allowed unless a policy forbids or gates it, validated strictly.

use std::sync::Arc;
use std::time::Duration;

use remit_codemode::tools::Call;
use remit_gate::gate::{Gate, Outcome, SystemClock};
use remit_gate::journal::MemoryJournal;
use remit_policy::engine::{Engine, Principal};
use remit_types::effect::Effect;

const CEDAR: &str = r#"
@id("tools.protect-ci")
@reason("this task may not change CI configuration")
forbid (principal, action == Action::"tool_call", resource == Tool::"write_file")
when { context.call.args has path && context.call.args.path like ".github/*" };

@id("tools.scripts-only-read")
@reason("scripts may only read")
forbid (principal, action == Action::"tool_call", resource)
when { context.call.via == "code" && context.call.tool != "read_file" && context.call.tool != "run_code" };

@id("tools.push")
@approval("tools.push")
@reason("a push needs a human")
forbid (principal, action == Action::"tool_call", resource == Tool::"git_push")
unless { context.approvals.contains("tools.push") };
"#;

const REMIT: &str = r#"
[policy]
cedar = ["tools.cedar"]

[[test]]
effect = { kind = "tool_call", tool = "write_file", args = { path = ".github/workflows/ci.yml" } }
expect = "deny"

[[test]]
effect = { kind = "tool_call", tool = "write_file", args = { path = "src/main.rs" } }
expect = "allow"

[[test]]
effect = { kind = "tool_call", via = "code", tool = "exec", args = { argv = "ls" } }
expect = "deny"

[[test]]
effect = { kind = "tool_call", tool = "git_push" }
expect = "needs-approval"
"#;

fn gate() -> Gate {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tools.cedar"), CEDAR).unwrap();
    let loaded =
        remit_types::remit::parse(REMIT, "t.remit.toml", dir.path().to_path_buf()).unwrap();
    // Loading validates every policy strictly against the schema and runs the tests.
    let engine = Engine::load(&loaded).unwrap();
    let principal = Principal {
        task: "01TASK".into(),
        agent: "a".into(),
        owner: "alice".into(),
        requester: "alice".into(),
        remit: "sha256:00".into(),
        risk: "low".into(),
    };
    Gate::new(
        engine,
        principal,
        Arc::new(MemoryJournal::default()),
        Arc::new(SystemClock),
        Duration::from_secs(60),
    )
}

fn effect(via: &str, tool: &str, args: serde_json::Value) -> Effect {
    let call = Call::parse(tool, args).unwrap();
    Effect::ToolCall {
        via: via.into(),
        tool: call.tool().into(),
        args: call.policy_args(),
        script: if via == "code" {
            "sha256:ab".into()
        } else {
            String::new()
        },
    }
}

#[tokio::test]
async fn tool_calls_are_decided_with_their_arguments() {
    let gate = gate();
    let decide = |e: Effect| gate.request(e, Duration::ZERO);
    match decide(effect(
        "mcp",
        "write_file",
        serde_json::json!({"path": ".github/x.yml", "content": ""}),
    ))
    .await
    {
        Outcome::Denied { policy, reason } => {
            assert_eq!(policy, "tools.protect-ci");
            assert!(reason.contains("CI configuration"));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        decide(effect(
            "mcp",
            "write_file",
            serde_json::json!({"path": "src/a.rs", "content": ""})
        ))
        .await,
        Outcome::Authorized(_)
    ));
    assert!(matches!(
        decide(effect("code", "exec", serde_json::json!({"argv": ["ls"]}))).await,
        Outcome::Denied { .. }
    ));
    assert!(matches!(
        decide(effect(
            "code",
            "read_file",
            serde_json::json!({"path": "a"})
        ))
        .await,
        Outcome::Authorized(_)
    ));
    assert!(matches!(
        decide(effect("mcp", "git_push", serde_json::json!({}))).await,
        Outcome::Pending { .. }
    ));
}
