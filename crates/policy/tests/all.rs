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
        workspace: String::new(),
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

/// The confirmed bug: the compiler indexes its `[commands]` policies by `@key`, and the
/// index used to read that annotation from raw Cedar too, so this forbid was filed under a
/// command prefix nothing has and never reached the sliced decision (`explain` said deny,
/// `remit run` ran the command).
const KEYED_FORBID: &str =
    "@key(\"zzz\")\nforbid(principal, action == Action::\"exec\", resource);\n";

#[test]
fn raw_cedar_may_not_use_reserved_annotations() {
    let err = with_cedar("", KEYED_FORBID).expect_err("a reserved annotation loaded");
    assert!(
        err.contains("extra.cedar:1:1:") && err.contains("`@key` is reserved"),
        "{err}"
    );
    assert!(!err.contains('\n'), "{err}");
    // The error points at the annotation, past comments and strings that mention it.
    let err = with_cedar(
        "",
        "permit(principal, action == Action::\"git_push\", resource);\n\n// not @key(\"a\")\n@reason(\"@key(x)\")  @key(\"git\")\npermit(principal, action == Action::\"exec\", resource);\n",
    )
    .expect_err("a reserved annotation loaded");
    assert!(err.contains("extra.cedar:4:21:"), "{err}");
    // Every reserved annotation, with or without a value, is refused.
    for name in remit_policy::engine::RESERVED_ANNOTATIONS {
        for annotation in [format!("@{name}(\"git\")"), format!("@{name}")] {
            let err = with_cedar(
                "",
                &format!("{annotation}\npermit(principal, action, resource);"),
            )
            .err()
            .unwrap_or_else(|| panic!("`{annotation}` loaded"));
            assert!(err.contains(&format!("`@{name}` is reserved")), "{err}");
        }
    }
    // The cached load refuses too, with or without a marker from an earlier load.
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    std::fs::write(
        dir.path().join("x.cedar"),
        "permit(principal, action, resource);",
    )
    .unwrap();
    let text = "[policy]\ncedar = [\"x.cedar\"]\n";
    let loaded = parse(text, "t.remit.toml", dir.path().to_path_buf()).unwrap();
    Engine::load_cached(&loaded, &cache).unwrap();
    std::fs::write(dir.path().join("x.cedar"), KEYED_FORBID).unwrap();
    for _ in 0..2 {
        let err = Engine::load_cached(&loaded, &cache)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`@key` is reserved"), "{err}");
    }
    // Twin: other annotations, even ones that look like it, are free to use and change
    // nothing about which requests a policy applies to.
    let e = with_cedar(
        "",
        "@Key(\"zzz\") @keys(\"zzz\") @reason(\"no programs\")\nforbid(principal, action == Action::\"exec\", resource);\n",
    )
    .unwrap();
    let Decision::Deny { reason, .. } = decide(&e, &exec("sh -c echo RAN")) else {
        panic!("a raw forbid was skipped")
    };
    assert_eq!(reason, "no programs");
}

#[test]
fn a_raw_exec_forbid_holds_on_the_sliced_path() {
    for (policy, denied, allowed) in [
        (
            "forbid(principal, action == Action::\"exec\", resource);",
            "sh -c echo",
            None,
        ),
        (
            "forbid(principal, action in [Action::\"exec\"], resource) when { context.command.prefixes.contains(\"sh\") };",
            "sh -c echo",
            Some("ls"),
        ),
        (
            "forbid(principal in Agent::\"ci-fixer\", action, resource == Program::\"sh\");",
            "sh -c echo",
            Some("ls"),
        ),
        (
            "forbid(principal == Task::\"01TASK\", action, resource is Program);",
            "sh -c echo",
            None,
        ),
    ] {
        let e = with_cedar("", policy).unwrap_or_else(|err| panic!("{policy}: {err}"));
        let d = decide(&e, &exec(denied));
        assert_eq!(d.label(), "deny", "{policy}: {d:?}");
        if let Some(line) = allowed {
            assert_eq!(decide(&e, &exec(line)).label(), "allow", "{policy}");
        }
    }
}

#[test]
fn an_action_group_covers_every_typed_action() {
    let e = with_cedar(
        "[actions.publish]\nargs = [\"tag\"]\n[actions.ship]\n",
        "@id(\"no-actions\")\nforbid(principal, action in Action::\"action\", resource);\n",
    )
    .unwrap();
    for kind in ["publish", "ship"] {
        let Decision::Deny { policy, .. } = decide(&e, &action(kind, &[])) else {
            panic!("{kind} allowed")
        };
        assert_eq!(policy, "no-actions", "{kind}");
    }
    // Twin: effects that are not typed actions are outside the group.
    assert_eq!(decide(&e, &exec("ls")).label(), "allow");
    let e = with_cedar(
        "",
        "permit(principal, action in [Action::\"action\"], resource) when { context.quota.used < 1 };",
    )
    .unwrap();
    assert_eq!(decide(&e, &action("deploy", &[])).label(), "allow");
    assert_eq!(
        e.decide(
            &principal(),
            &action("deploy", &[]),
            &Situation {
                quota_used: 1,
                ..Situation::default()
            }
        )
        .label(),
        "deny"
    );
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
        Just(action("deploy", &[])),
        Just(Effect::HttpRequest {
            host: "example.com".into(),
            port: 443,
            method: "GET".into(),
            path: "/".into(),
        }),
        (
            prop::sample::select(&["refs/heads/main", "refs/heads/remit/x"][..]),
            prop::bool::ANY
        )
            .prop_map(|(r, force)| Effect::GitPush {
                remote: "origin".into(),
                reference: r.into(),
                old: String::new(),
                new: String::new(),
                force,
                new_branch: !force,
            }),
    ]
}

/// Conditions any request's context can answer; the last overflows once `quota.used` is 2,
/// an evaluation error (a denial).
const ANY_CONDITIONS: &[&str] = &[
    "context.quota.used >= 1",
    "context.approvals.contains(\"gate\")",
    "context.time.hour < 12",
    "principal.owner == \"alice\"",
    "context.quota.used * 4611686018427387904 > 1",
];
const EXEC_CONDITIONS: &[&str] = &[
    "context.command.prefixes.contains(\"git push\")",
    "context.command.prefixes.contains(\"cargo\")",
    "context.command.program == \"npm\"",
    "context.command.line like \"*--force*\"",
];
const PUSH_CONDITIONS: &[&str] = &[
    "context.push.force",
    "context.push.ref like \"refs/heads/remit/*\"",
    "context.push.new_branch",
];
const PUBLISH_CONDITIONS: &[&str] = &[
    "context.args.tag == \"latest\"",
    "context.args.tag like \"n*\"",
];

/// Action scopes, each with the conditions its context has.
const ACTION_SCOPES: &[(&str, &[&str])] = &[
    ("action", &[]),
    ("action == Action::\"exec\"", EXEC_CONDITIONS),
    ("action in [Action::\"exec\"]", EXEC_CONDITIONS),
    ("action == Action::\"git_push\"", PUSH_CONDITIONS),
    ("action == Action::\"publish\"", PUBLISH_CONDITIONS),
    ("action == Action::\"deploy\"", &[]),
    ("action in Action::\"action\"", &[]),
    ("action in [Action::\"exec\", Action::\"git_push\"]", &[]),
    (
        "action in [Action::\"action\", Action::\"http_request\"]",
        &[],
    ),
];
const PRINCIPAL_SCOPES: &[&str] = &[
    "principal",
    "principal == Task::\"01TASK\"",
    "principal == Task::\"02TASK\"",
    "principal in Agent::\"ci-fixer\"",
    "principal in Agent::\"other\"",
    "principal == Agent::\"ci-fixer\"",
    "principal is Task",
    "principal is Task in Agent::\"other\"",
];
const RESOURCE_SCOPES: &[&str] = &[
    "resource",
    "resource == Program::\"git\"",
    "resource == Program::\"cargo\"",
    "resource in Program::\"npm\"",
    "resource == Ref::\"refs/heads/main\"",
    "resource == Target::\"publish\"",
    "resource == Host::\"example.com\"",
    "resource is Program",
];

/// One raw Cedar policy, and whether it carries a reserved annotation.
fn raw_policy() -> impl Strategy<Value = (String, bool)> {
    (0..ACTION_SCOPES.len())
        .prop_flat_map(|a| {
            let (scope, own) = ACTION_SCOPES[a];
            let conditions: Vec<&'static str> =
                ANY_CONDITIONS.iter().chain(own.iter()).copied().collect();
            let condition = prop::option::of(prop::sample::select(conditions));
            (
                Just(scope),
                prop::bool::ANY,
                prop::sample::select(PRINCIPAL_SCOPES),
                prop::sample::select(RESOURCE_SCOPES),
                condition.clone(),
                condition,
                prop::option::of(prop::sample::select(
                    &[
                        "@reason(\"raw\")",
                        "@approval(\"gate\")",
                        "@keys(\"git\")",
                        "@Key(\"zzz\")",
                    ][..],
                )),
                // The reserved annotation, keyed to prefixes that occur and one that never does.
                prop::option::weighted(
                    0.08,
                    prop::sample::select(&["git", "git push", "cargo", "zzz"][..]),
                ),
            )
        })
        .prop_map(
            |(action, permit, principal, resource, when, unless, annotation, key)| {
                let mut text = String::new();
                if let Some(a) = annotation {
                    text.push_str(a);
                    text.push('\n');
                }
                if let Some(k) = key {
                    text.push_str(&format!("@key(\"{k}\")\n"));
                }
                text.push_str(&format!(
                    "{}({principal}, {action}, {resource})",
                    if permit { "permit" } else { "forbid" }
                ));
                if let Some(c) = when {
                    text.push_str(&format!(" when {{ {c} }}"));
                }
                if let Some(c) = unless {
                    text.push_str(&format!(" unless {{ {c} }}"));
                }
                text.push_str(";\n");
                (text, key.is_some())
            },
        )
}

/// A remit, and raw Cedar beside it (possibly none).
fn remit_and_cedar() -> impl Strategy<Value = (String, Vec<(String, bool)>)> {
    (remit(), prop::collection::vec(raw_policy(), 0..5))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn sliced_equals_full(
        (text, raw) in remit_and_cedar(),
        effects in prop::collection::vec(effect(), 1..8),
        used in 0u64..4,
        approve in prop::bool::ANY,
        afternoon in prop::bool::ANY,
        other in prop::bool::ANY,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let cedar: String = raw.iter().map(|(p, _)| p.as_str()).collect();
        let mut text = text;
        if !raw.is_empty() {
            std::fs::write(dir.path().join("raw.cedar"), &cedar).unwrap();
            text.push_str("[policy]\ncedar = [\"raw.cedar\"]\n");
        }
        let loaded = parse(&text, "p.remit.toml", dir.path().to_path_buf()).unwrap();
        let e = match Engine::load(&loaded) {
            Ok(e) => {
                prop_assert!(!raw.iter().any(|(_, reserved)| *reserved), "a reserved annotation loaded:\n{}", cedar);
                e
            }
            Err(err) => {
                // The only load error the generator can produce: a reserved annotation,
                // refused at the first one.
                let at = cedar.find("@key(").unwrap_or_else(|| panic!("load failed: {err}\n{cedar}"));
                let line = cedar[..at].matches('\n').count() + 1;
                prop_assert_eq!(err.line, line, "{}\n{}", err, cedar);
                prop_assert_eq!(err.column, 1, "{}", err);
                prop_assert!(err.file.ends_with("raw.cedar") && err.message.contains("`@key` is reserved"), "{}", err);
                return Ok(());
            }
        };
        let who = if other {
            Principal { task: "02TASK".into(), agent: "other".into(), owner: "bob".into(), ..principal() }
        } else {
            principal()
        };
        for effect in &effects {
            let mut situation = Situation {
                quota_used: used,
                unix: if afternoon { 50_000 } else { 0 },
                ..Situation::default()
            };
            if approve {
                situation.approvals = ["actions.publish.approve", "commands.prompt[0]", "gate"]
                    .into_iter()
                    .map(str::to_owned)
                    .collect::<BTreeSet<_>>();
            }
            let sliced = e.decide(&who, effect, &situation);
            let full = e.decide_full(&who, effect, &situation);
            prop_assert_eq!(sliced, full, "remit:\n{}\ncedar:\n{}\neffect: {}", text, cedar, effect);
        }
    }
}

// --- property: `[network]` decided directly equals its Cedar -----------------------------

/// One `[[network.rule]]`.
fn network_rule() -> impl Strategy<Value = String> {
    (
        prop::sample::select(&["c.test", "d.test", "*.e.test", "x.e.test", "10.0.0.1"][..]),
        prop::option::of(prop::sample::subsequence(&[443u16, 8443, 80][..], 1..3)),
        prop::sample::subsequence(&["GET", "POST", "HEAD"][..], 0..3),
        prop::sample::subsequence(&["/x/*", "/y", "/", "/z*", "/a/*/b"][..], 0..3),
    )
        .prop_map(|(host, ports, methods, paths)| {
            let list = |items: &[&str]| {
                items
                    .iter()
                    .map(|i| format!("\"{i}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mut text = format!("[[network.rule]]\nhost = \"{host}\"\n");
            if let Some(ports) = ports {
                let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
                text.push_str(&format!("ports = [{}]\n", ports.join(", ")));
            }
            if !methods.is_empty() {
                text.push_str(&format!("methods = [{}]\n", list(&methods)));
            }
            if !paths.is_empty() {
                text.push_str(&format!("paths = [{}]\n", list(&paths)));
            }
            text
        })
}

fn network_remit() -> impl Strategy<Value = String> {
    (
        prop::sample::subsequence(
            &[
                "a.test",
                "a.test:8443",
                "*.b.test",
                "*.b.test:8443",
                "127.0.0.1:8080",
                "[::1]:8080",
                "c.test",
            ][..],
            0..5,
        ),
        prop::collection::vec(network_rule(), 0..5),
    )
        .prop_map(|(allow, rules)| {
            let allow: Vec<String> = allow.iter().map(|a| format!("\"{a}\"")).collect();
            format!(
                "[network]\nallow = [{}]\n{}",
                allow.join(", "),
                rules.concat()
            )
        })
}

fn request() -> impl Strategy<Value = Effect> {
    (
        prop::sample::select(
            &[
                "a.test",
                "c.test",
                "d.test",
                "x.b.test",
                "b.test",
                ".b.test",
                "y.x.b.test",
                "127.0.0.1",
                "::1",
                "A.test",
                "x.e.test",
                "e.test",
                "y.x.e.test",
                "10.0.0.1",
                "z.test",
            ][..],
        ),
        prop::sample::select(&[443u16, 8443, 8080, 80][..]),
        prop::sample::select(&["GET", "POST", "HEAD", "DELETE"][..]),
        prop::sample::select(
            &[
                "/", "/x/1", "/x/", "/x", "/y", "/y?q=1", "/yz", "/y/", "/z", "/zz/q", "/a/1/b",
                "/a/b", "/?", "/x/?a",
            ][..],
        ),
    )
        .prop_map(|(host, port, method, path)| Effect::HttpRequest {
            host: host.into(),
            port,
            method: method.into(),
            path: path.into(),
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn requests_decided_directly_equal_cedar(
        text in network_remit(),
        requests in prop::collection::vec(request(), 1..12),
    ) {
        // Some combinations are refused when the remit is read (an allowed host inside a
        // rule's); those have nothing to decide.
        let Ok(loaded) = parse(&text, "n.remit.toml", std::env::temp_dir()) else {
            return Ok(());
        };
        let e = Engine::load(&loaded).unwrap_or_else(|err| panic!("{err}\n{text}"));
        for effect in &requests {
            let direct = e.decide(&principal(), effect, &Situation::default());
            let cedar = e.decide_full(&principal(), effect, &Situation::default());
            prop_assert_eq!(direct, cedar, "remit:\n{}\nrequest: {}", text, effect);
        }
    }
}

#[test]
fn requests_decided_directly_cover_every_outcome() {
    // The property above compares like with like; this twin makes sure the generator's
    // shapes reach every kind of decision: allowed, refused by a rule, refused by default.
    let e = engine(
        "[network]\nallow = [\"*.b.test\"]\n[[network.rule]]\nhost = \"c.test\"\nmethods = [\"GET\"]\npaths = [\"/y\"]\n",
    );
    let http = |host: &str, method: &str, path: &str| Effect::HttpRequest {
        host: host.into(),
        port: 443,
        method: method.into(),
        path: path.into(),
    };
    for (effect, label, policy) in [
        (http("x.b.test", "GET", "/"), "allow", "network.allow[0]"),
        (http("c.test", "GET", "/y?q=1"), "allow", "network.rule[0]"),
        (http("c.test", "POST", "/y"), "deny", "network.rule[0].only"),
        (http("c.test", "GET", "/yz"), "deny", "network.rule[0].only"),
        (http("b.test", "GET", "/"), "deny", "default"),
    ] {
        let d = decide(&e, &effect);
        assert_eq!(d.label(), label, "{effect}: {d:?}");
        match d {
            Decision::Allow { policies } => assert_eq!(policies, [policy], "{effect}"),
            Decision::Deny { policy: p, .. } => assert_eq!(p, policy, "{effect}"),
            Decision::NeedsApproval { .. } => panic!("{effect}: approval"),
        }
    }
}
