//! The policy engine: remits compiled to Cedar decide as written; errors point at the file,
//! line and column; an evaluation error is a denial; the sliced index decides exactly like
//! evaluating every policy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use proptest::prelude::*;
use remit_policy::engine::{Decision, Engine, Principal, Situation};
use remit_types::effect::Effect;
use remit_types::remit::parse;

fn engine(text: &str) -> Engine {
    let loaded = parse(text, "t.remit.toml", std::env::temp_dir()).unwrap();
    Engine::load(&loaded).unwrap_or_else(|e| panic!("{e}"))
}

fn load_err(text: &str) -> String {
    let loaded = parse(text, "t.remit.toml", std::env::temp_dir()).unwrap();
    Engine::load(&loaded).unwrap_err().to_string()
}

fn principal() -> Principal {
    Principal {
        task: "01TASK".into(),
        agent: "ci-fixer".into(),
        owner: "alice".into(),
        requester: "alice".into(),
        remit: "sha256:00".into(),
        risk: "medium".into(),
    }
}

fn exec(line: &str) -> Effect {
    Effect::Exec {
        argv: line.split_whitespace().map(str::to_owned).collect(),
        cwd: "/w".into(),
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

fn decide(e: &Engine, effect: &Effect) -> Decision {
    let d = e.decide(&principal(), effect, &Situation::default());
    assert_eq!(
        d,
        e.decide_full(&principal(), effect, &Situation::default()),
        "sliced and full disagree on {effect}"
    );
    d
}

const REMIT: &str = r#"
[agent]
name = "ci-fixer"
owner = "alice"

[commands]
forbid = ["git push", "curl"]
prompt = ["cargo publish"]

[approvals]
groups = { release-managers = ["bob", "carol"] }

[actions.publish]
description = "publish the package to the registry"
args = ["tag"]
run = ["npm", "publish", "--tag", "{tag}"]
approve = { by = ["release-managers"], count = 2 }
quota = 2

[actions.deploy]
args = ["env"]
when = 'context.args.env != "production"'

[[test]]
effect = { kind = "exec", command = "git -C repo push origin main" }
expect = "deny"

[[test]]
effect = { kind = "exec", command = "cargo test" }
expect = "allow"

[[test]]
effect = { kind = "publish", args = { tag = "latest" } }
expect = "needs-approval"

[[test]]
name = "publish once approved"
effect = { kind = "publish", args = { tag = "latest" } }
approved = true
expect = "allow"

[[test]]
effect = { kind = "deploy", args = { env = "production" } }
expect = "deny"
"#;

#[test]
fn the_default_remit() {
    let e = engine("");
    assert!(matches!(
        decide(&e, &exec("ls -la")),
        Decision::Allow { .. }
    ));
    let Decision::Deny { policy, reason } = decide(
        &e,
        &Effect::HttpRequest {
            host: "example.com".into(),
            port: 443,
            method: "GET".into(),
            path: "/".into(),
        },
    ) else {
        panic!()
    };
    assert_eq!(policy, "default");
    assert!(
        reason.contains("no network access to `example.com`"),
        "{reason}"
    );
    let Decision::Deny { reason, .. } = decide(&e, &action("publish", &[])) else {
        panic!()
    };
    assert!(
        reason.contains("does not grant the `publish` action"),
        "{reason}"
    );
}

#[test]
fn commands_compile_to_cedar() {
    let e = engine(REMIT);
    for line in [
        "git push",
        "git -C . push",
        "git -c alias.p=push p",
        "curl -s example.com",
    ] {
        let Decision::Deny { policy, reason } = decide(&e, &exec(line)) else {
            panic!("{line} allowed")
        };
        assert!(policy.starts_with("commands.forbid"), "{line}: {policy}");
        assert!(reason.contains("forbids"), "{reason}");
    }
    assert!(matches!(
        decide(&e, &exec("git status")),
        Decision::Allow { .. }
    ));
    let Decision::NeedsApproval { requirements, .. } = decide(&e, &exec("cargo publish --dry-run"))
    else {
        panic!()
    };
    assert_eq!(requirements[0].id, "commands.prompt[0]");
    assert_eq!(
        requirements[0].by,
        vec!["alice".to_string()],
        "the owner approves by default"
    );
    let approved = Situation {
        approvals: ["commands.prompt[0]".to_string()].into(),
        ..Situation::default()
    };
    assert!(matches!(
        e.decide(&principal(), &exec("cargo publish"), &approved),
        Decision::Allow { .. }
    ));
}

#[test]
fn actions_approvals_and_quotas() {
    let e = engine(REMIT);
    let publish = action("publish", &[("tag", "latest")]);
    let Decision::NeedsApproval {
        requirements,
        policies,
    } = decide(&e, &publish)
    else {
        panic!()
    };
    assert_eq!(policies, vec!["actions.publish.approve".to_string()]);
    assert_eq!(requirements[0].count, 2);
    assert_eq!(requirements[0].by, vec!["release-managers".to_string()]);
    assert!(e.may_approve(&requirements[0], "bob"));
    assert!(!e.may_approve(&requirements[0], "mallory"));
    let approved = Situation {
        approvals: ["actions.publish.approve".to_string()].into(),
        ..Situation::default()
    };
    assert!(matches!(
        e.decide(&principal(), &publish, &approved),
        Decision::Allow { .. }
    ));
    let used_up = Situation {
        approvals: ["actions.publish.approve".to_string()].into(),
        quota_used: 2,
        ..Situation::default()
    };
    let Decision::Deny { policy, reason } = e.decide(&principal(), &publish, &used_up) else {
        panic!()
    };
    assert_eq!(policy, "actions.publish.quota");
    assert!(reason.contains("quota of 2"), "{reason}");
    // A quota denial is not an approval matter: even unapproved, it is a plain deny.
    let Decision::Deny { .. } = e.decide(
        &principal(),
        &publish,
        &Situation {
            quota_used: 5,
            ..Situation::default()
        },
    ) else {
        panic!()
    };
    // `when` conditions.
    assert!(matches!(
        decide(&e, &action("deploy", &[("env", "staging")])),
        Decision::Allow { .. }
    ));
    assert!(matches!(
        decide(&e, &action("deploy", &[("env", "production")])),
        Decision::Deny { .. }
    ));
    // Unknown actions and arguments are refused as bad requests.
    assert!(
        e.check_request(&action("launch", &[]))
            .unwrap_err()
            .to_string()
            .contains("unknown action `launch`")
    );
    assert!(
        e.check_request(&action("publish", &[("force", "1")]))
            .unwrap_err()
            .to_string()
            .contains("no argument `force`")
    );
    assert_eq!(e.test_outcomes().len(), 5);
    assert!(e.test_outcomes().iter().all(|t| t.passed()));
}

fn with_cedar(remit: &str, cedar: &str) -> Result<Engine, String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("extra.cedar"), cedar).unwrap();
    let text = format!("[policy]\ncedar = [\"extra.cedar\"]\n{remit}");
    let loaded = parse(&text, "t.remit.toml", dir.path().to_path_buf()).unwrap();
    Engine::load(&loaded).map_err(|e| e.to_string())
}

#[test]
fn raw_cedar_beside_a_remit() {
    let e = with_cedar(
        "",
        r#"
// Pushes only to the task's own branches; never force.
@id("push-task-branches")
@reason("push to refs/heads/remit/* only")
permit(principal, action == Action::"git_push", resource) when { context.push.ref like "refs/heads/remit/*" };

@id("no-force")
forbid(principal, action == Action::"git_push", resource) when { context.push.force };
"#,
    )
    .unwrap();
    let push = |r: &str, force: bool| Effect::GitPush {
        remote: "origin".into(),
        reference: r.into(),
        old: String::new(),
        new: String::new(),
        force,
        new_branch: false,
    };
    assert!(matches!(
        decide(&e, &push("refs/heads/remit/t1", false)),
        Decision::Allow { .. }
    ));
    let Decision::Deny { policy, .. } = decide(&e, &push("refs/heads/remit/t1", true)) else {
        panic!()
    };
    assert_eq!(policy, "no-force");
    assert!(matches!(
        decide(&e, &push("refs/heads/main", false)),
        Decision::Deny { .. }
    ));
    let info = e.policies().iter().find(|p| p.id == "no-force").unwrap();
    assert_eq!(info.origin.line, 7, "the policy starts at its annotations");
}

#[test]
fn errors_point_at_file_line_and_column() {
    // Cedar syntax error.
    let err = with_cedar(
        "",
        "permit(principal, action, resource);\n\nforbid(principal action, resource);\n",
    )
    .unwrap_err();
    assert!(err.contains("extra.cedar:3:"), "{err}");
    // Strict validation: an attribute that does not exist.
    let err = with_cedar("", "\n\npermit(principal, action == Action::\"exec\", resource) when { context.command.colour == \"red\" };").unwrap_err();
    assert!(
        err.contains("extra.cedar:3:") && err.contains("colour"),
        "{err}"
    );
    // A `when` in the remit with a type error points at the remit.
    let err = load_err("[actions.deploy]\nargs = [\"env\"]\nwhen = 'context.args.env == 3'\n");
    assert!(err.starts_with("t.remit.toml:3:"), "{err}");
    // A failing [[test]] points at the test.
    let err = load_err(
        "[commands]\nforbid = [\"curl\"]\n\n[[test]]\neffect = { kind = \"exec\", command = \"curl x\" }\nexpect = \"allow\"\n",
    );
    assert!(
        err.starts_with("t.remit.toml:4:1:")
            && err.contains("expects allow but the policy decides deny"),
        "{err}"
    );
    // Duplicate ids.
    let err = with_cedar("", "@id(\"a\") permit(principal, action, resource);\n@id(\"a\") forbid(principal, action, resource);").unwrap_err();
    assert!(err.contains("used twice"), "{err}");
    assert!(!err.contains('\n'));
}

#[test]
fn an_evaluation_error_is_a_denial() {
    // Strict validation rules out most runtime errors; arithmetic overflow remains.
    let e = with_cedar(
        "",
        r#"
permit(principal, action == Action::"http_request", resource);
@id("overflow")
forbid(principal, action == Action::"http_request", resource) when { context.request.port * 4611686018427387904 > 4611686018427387904 };
"#,
    )
    .unwrap();
    let get = |port: u16| Effect::HttpRequest {
        host: "example.com".into(),
        port,
        method: "GET".into(),
        path: "/".into(),
    };
    assert!(matches!(decide(&e, &get(1)), Decision::Allow { .. }));
    // Port 443 overflows: the forbid errors. Cedar alone skips it and allows.
    let Decision::Deny { policy, reason } = decide(&e, &get(443)) else {
        panic!("an erroring policy was skipped")
    };
    assert_eq!(policy, "overflow");
    assert!(reason.contains("could not be evaluated"), "{reason}");
}

// --- property: the sliced index decides like the whole set ------------------------------

const WORDS: [&str; 6] = ["git", "push", "cargo", "publish", "npm", "test"];

fn rule() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(&WORDS[..]), 1..3)
        .prop_map(|w| format!("\"{}\"", w.join(" ")))
}

fn remit() -> impl Strategy<Value = String> {
    (
        prop::bool::ANY,
        prop::collection::vec(rule(), 0..4),
        prop::collection::vec(rule(), 0..4),
        prop::collection::vec(rule(), 0..4),
        prop::option::of(1u32..3),
        prop::option::of(1u32..3),
        prop::bool::ANY,
    )
        .prop_map(|(deny, allow, forbid, prompt, quota, approvals, when)| {
            let mut text = format!(
                "[commands]\ndefault = \"{}\"\nallow = [{}]\nforbid = [{}]\nprompt = [{}]\n",
                if deny && !allow.is_empty() {
                    "deny"
                } else {
                    "allow"
                },
                allow.join(", "),
                forbid.join(", "),
                prompt.join(", ")
            );
            text.push_str("[actions.publish]\nargs = [\"tag\"]\n");
            if let Some(q) = quota {
                text.push_str(&format!("quota = {q}\n"));
            }
            if let Some(c) = approvals {
                text.push_str(&format!("approve = {{ count = {c} }}\n"));
            }
            if when {
                text.push_str("when = 'context.args.tag != \"latest\"'\n");
            }
            text
        })
}

fn effect() -> impl Strategy<Value = Effect> {
    prop_oneof![
        prop::collection::vec(
            prop::sample::select(
                &[
                    "git", "push", "-C", "x", "cargo", "publish", "npm", "test", "--force"
                ][..]
            ),
            1..6
        )
        .prop_map(|w| exec(&w.join(" "))),
        prop::sample::select(&["latest", "next", ""][..])
            .prop_map(|t| action("publish", &[("tag", t)])),
        prop::sample::select(&["refs/heads/main", "refs/heads/remit/x"][..]).prop_map(|r| {
            Effect::GitPush {
                remote: "origin".into(),
                reference: r.into(),
                old: String::new(),
                new: String::new(),
                force: false,
                new_branch: true,
            }
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn sliced_equals_full(text in remit(), effects in prop::collection::vec(effect(), 1..8), used in 0u64..4, approve in prop::bool::ANY) {
        let loaded = parse(&text, "p.remit.toml", std::env::temp_dir()).unwrap();
        let e = Engine::load(&loaded).unwrap();
        for effect in &effects {
            let mut situation = Situation { quota_used: used, ..Situation::default() };
            if approve {
                situation.approvals = ["actions.publish.approve".to_string(), "commands.prompt[0]".to_string()]
                    .into_iter()
                    .collect::<BTreeSet<_>>();
            }
            let sliced = e.decide(&principal(), effect, &situation);
            let full = e.decide_full(&principal(), effect, &situation);
            prop_assert_eq!(sliced, full, "remit:\n{}\neffect: {}", text, effect);
        }
    }
}
