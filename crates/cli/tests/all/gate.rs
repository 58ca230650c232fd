//! The gate through the real binary: typed actions, approvals from the host, the agent's
//! lack of any approval path, quotas, the kill switch, agent suspension, policy commands.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

const REMIT: &str = r#"
[agent]
name = "gate-test"

[approvals]
timeout = "2m"

[actions.publish]
description = "publish the package"
args = ["tag"]
run = ["touch", "published-{tag}"]
approve = true

[actions.ping]
run = ["sh", "-c", "echo pong"]
quota = 2

[actions.deploy]
args = ["env"]
when = 'context.args.env != "production"'
"#;

fn background(w: &World, remit: &str, script: &str) -> Child {
    w.command()
        .args(["run", "--quiet", "--remit"])
        .arg(w.remit(remit))
        .args(["--", "bash", "-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn host(w: &World, args: &[&str]) -> std::process::Output {
    w.command().args(args).output().unwrap()
}

/// Wait until `remit approvals list --json` shows a pending approval; return it.
fn wait_pending(w: &World) -> Value {
    w.approval_where(&[], |_| true)
}

/// Wait for the first pending approval and approve it from the host; return it and its id.
fn approve_first(w: &World) -> (Value, String) {
    let first = wait_pending(w);
    let id = first["id"].as_str().unwrap().to_owned();
    assert!(host(w, &["approvals", "approve", &id]).status.success());
    (first, id)
}

fn finish(child: Child) -> std::process::Output {
    child.wait_with_output().unwrap()
}

#[test]
fn a_forbidden_action_is_denied_with_its_reason() {
    let w = World::new();
    let out = w.run(Some(REMIT), "remit act deploy --arg env=production; echo rc=$?; remit act deploy --arg env=staging; echo rc=$?");
    let text = stdout(&out);
    assert!(
        text.contains("rc=1") && text.contains("rc=0"),
        "{}",
        show(&out)
    );
    let err = stderr(&out);
    assert!(
        err.contains("denied `deploy`") && err.contains("actions.deploy"),
        "{err}"
    );
    // Unknown actions and arguments are bad requests (exit 2), not denials.
    let out = w.run(
        Some(REMIT),
        "remit act launch; echo rc=$?; remit act deploy --arg colour=red; echo rc=$?",
    );
    assert_eq!(stdout(&out).matches("rc=2").count(), 2, "{}", show(&out));
    assert!(
        stderr(&out).contains("unknown action `launch`"),
        "{}",
        show(&out)
    );
}

#[test]
fn approval_flow_end_to_end() {
    let w = World::new();
    let child = background(
        &w,
        REMIT,
        "remit act publish --arg tag=v1 --wait 60; echo rc=$?",
    );
    let pending = wait_pending(&w);
    // The host sees the facts the gate derived.
    assert_eq!(pending["agent"], "gate-test");
    assert_eq!(pending["kind"], "publish");
    assert_eq!(pending["details"]["args"]["tag"], "v1");
    assert!(
        pending["policies"][0]
            .as_str()
            .unwrap()
            .contains("actions.publish.approve")
    );
    assert!(
        pending["enables"]
            .as_str()
            .unwrap()
            .contains("publish tag=v1")
    );
    let id = pending["id"].as_str().unwrap().to_owned();
    assert!(
        !w.exists(&w.ws.join("published-v1")),
        "performed before approval"
    );
    let out = host(&w, &["approvals", "approve", &id, "--reason", "release"]);
    assert!(out.status.success(), "{}", show(&out));
    let out = finish(child);
    assert!(stdout(&out).contains("rc=0"), "{}", show(&out));
    assert!(
        stderr(&out).contains(&format!("pending approval {id}")),
        "{}",
        show(&out)
    );
    assert!(
        w.exists(&w.ws.join("published-v1")),
        "not performed after approval"
    );

    // Replaying the approval is refused (the task is gone, and with it the approval).
    let out = host(&w, &["approvals", "approve", &id]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));

    // Within one task: an approval is used once; a changed argument needs a new approval.
    let child = background(
        &w,
        REMIT,
        "remit act publish --arg tag=v2 --wait 60; echo first=$?; remit act publish --arg tag=v2 --wait 60; echo second=$?",
    );
    let (_, first_id) = approve_first(&w);
    let second = w.approval_where(&[], |a| a["id"] != first_id.as_str());
    let out = host(&w, &["approvals", "approve", &first_id]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a used approval was accepted again: {}",
        show(&out)
    );
    assert!(
        stderr(&out).contains("used") || stderr(&out).contains("no running task"),
        "{}",
        show(&out)
    );
    let out = host(
        &w,
        &[
            "approvals",
            "deny",
            second["id"].as_str().unwrap(),
            "--reason",
            "once is enough",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    let out = finish(child);
    let text = stdout(&out);
    assert!(
        text.contains("first=0") && text.contains("second=1"),
        "{}",
        show(&out)
    );
    assert!(stderr(&out).contains("once is enough"), "{}", show(&out));
}

#[test]
fn the_agent_cannot_reach_any_approval_path() {
    let w = World::new();
    let child = background(
        &w,
        REMIT,
        r#"remit act publish --arg tag=self --wait 0 >/dev/null 2>&1
id=$(curl -s --unix-socket "$REMIT_SOCKET" http://remit/v1/status | python3 -c 'import json,sys; print(json.load(sys.stdin)["approvals"][0]["id"])')
for path in "/v1/approvals/$id/approve" "/v1/approvals/$id" "/v1/kill" "/v1/approvals"; do
  curl -s -o /dev/null -w "%{http_code} $path\n" --unix-socket "$REMIT_SOCKET" -X POST -d '{}' "http://remit$path"
done
ls -A /run/remit; find / -name control.sock 2>/dev/null | head -1; echo done"#,
    );
    let out = finish(child);
    let text = stdout(&out);
    for line in text.lines().filter(|l| l.contains("/v1/")) {
        let code: u16 = line.split_whitespace().next().unwrap().parse().unwrap();
        assert!(
            code == 404 || code == 405,
            "the agent reached `{line}`\n{text}"
        );
    }
    assert!(!text.contains("control.sock"), "{text}");
    assert!(text.contains("done"), "{}", show(&out));
    // Its own request is still pending: nothing it sent approved it.
    assert!(!w.exists(&w.ws.join("published-self")));
}

#[test]
fn malformed_requests_get_4xx() {
    let w = World::new();
    let out = w.run(
        Some(REMIT),
        r#"c() { curl -s -o /dev/null -w "%{http_code}\n" --unix-socket "$REMIT_SOCKET" "$@"; }
c -X POST -d 'not json' http://remit/v1/actions
c -X POST -d '{"kind":"ping","extra":1}' http://remit/v1/actions
c -X POST -H 'Content-Type: application/json' --data-binary @<(head -c 100000 /dev/zero | tr '\0' a) http://remit/v1/actions
c -X DELETE http://remit/v1/status
c http://remit/nope
c -X POST -d '{"kind":"deploy","args":{"env":"--force"}}' http://remit/v1/actions
printf 'GARBAGE\r\n\r\n' | python3 -c 'import socket,os,sys; s=socket.socket(socket.AF_UNIX); s.connect(os.environ["REMIT_SOCKET"]); s.sendall(sys.stdin.buffer.read()); print("raw", s.recv(100)[:12])'
c http://remit/v1/status"#,
    );
    let text = stdout(&out);
    let codes: Vec<&str> = text.lines().collect();
    assert_eq!(
        &codes[..6],
        &["400", "400", "413", "405", "404", "400"],
        "{}",
        show(&out)
    );
    assert!(codes[6].contains("HTTP/1.1 400"), "{}", show(&out));
    assert_eq!(
        codes[7],
        "200",
        "the socket kept serving after bad requests: {}",
        show(&out)
    );
}

#[test]
fn quotas_hold() {
    let w = World::new();
    let out = w.run(
        Some(REMIT),
        "for i in 1 2 3; do remit act ping; echo rc=$?; done",
    );
    let text = stdout(&out);
    assert_eq!(text.matches("pong").count(), 2, "{}", show(&out));
    assert!(text.ends_with("rc=1\n"), "{}", show(&out));
    assert!(stderr(&out).contains("quota of 2"), "{}", show(&out));
}

#[test]
fn quotas_hold_under_parallel_requests() {
    // Each action takes a while, so every request arrives while the first ones are still
    // running: a quota counted only on finished actions would let all of them through.
    const SLOW: &str = r#"
[agent]
name = "gate-test"

[actions.slow]
run = ["sh", "-c", "sleep 2; echo pong"]
quota = 2
"#;
    let w = World::new();
    let out = w.run(
        Some(SLOW),
        r#"pids=""
for i in 1 2 3 4 5 6 7 8; do remit act slow & pids="$pids $!"; done
for p in $pids; do wait $p; echo rc=$?; done
curl -s --unix-socket "$REMIT_SOCKET" http://remit/v1/status; echo"#,
    );
    let text = stdout(&out);
    assert_eq!(text.matches("pong").count(), 2, "{}", show(&out));
    assert_eq!(text.matches("rc=0").count(), 2, "{}", show(&out));
    assert_eq!(text.matches("rc=1").count(), 6, "{}", show(&out));
    assert_eq!(
        stderr(&out).matches("quota of 2").count(),
        6,
        "{}",
        show(&out)
    );
    // The gate's own counts agree: two performed, six recorded denials, nothing left open.
    let status: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(status["actions"]["slow"]["used"], 2, "{status}");
    assert_eq!(status["actions"]["slow"]["in_progress"], 0, "{status}");
    assert_eq!(status["counters"]["denials"], 6, "{status}");
}

#[test]
fn kill_during_a_pending_approval_leaves_nothing_running() {
    let w = World::new();
    let child = background(
        &w,
        REMIT,
        "sleep 31.41597 & remit act publish --arg tag=k --wait 120; echo after",
    );
    let pending = wait_pending(&w);
    let task = pending["task"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let out = host(&w, &["task", "kill", &task, "--reason", "runaway"]);
    assert!(out.status.success(), "{}", show(&out));
    let out = finish(child);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(137), "{}", show(&out));
    assert!(
        stderr(&out).contains("killed by") && stderr(&out).contains("runaway"),
        "{}",
        show(&out)
    );
    assert!(!stdout(&out).contains("after"));
    assert!(!w.exists(&w.ws.join("published-k")));
    let ps = Command::new("pgrep")
        .args(["-f", "31.41597"])
        .output()
        .unwrap();
    assert!(ps.stdout.is_empty(), "a process survived the kill");
    let list = host(&w, &["task", "list", "--json"]);
    assert_eq!(stdout(&list).trim(), "[]");
}

#[test]
fn suspended_agents_cannot_run_and_lose_their_tasks() {
    let w = World::new();
    let child = background(&w, REMIT, "echo started; sleep 30; echo finished");
    let started = Instant::now();
    while host(&w, &["task", "list", "--json"]).stdout.len() < 10 {
        assert!(started.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = host(
        &w,
        &["agent", "suspend", "gate-test", "--reason", "investigation"],
    );
    assert!(
        out.status.success() && stdout(&out).contains("1 running task killed"),
        "{}",
        show(&out)
    );
    let out = finish(child);
    assert_eq!(out.status.code(), Some(137), "{}", show(&out));
    let out = w.run(Some(REMIT), "echo should-not-run");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).contains("suspended") && !stdout(&out).contains("should-not-run"),
        "{}",
        show(&out)
    );
    assert!(host(&w, &["agent", "resume", "gate-test"]).status.success());
    ok(&w.run(Some(REMIT), "true"));
    assert!(host(&w, &["agent", "revoke", "gate-test"]).status.success());
    assert_eq!(
        host(&w, &["agent", "resume", "gate-test"]).status.code(),
        Some(2)
    );
}

#[test]
fn an_exec_prompt_waits_for_a_human() {
    let w = World::new();
    let remit = "[commands]\nprompt = [\"touch\"]\n[approvals]\ntimeout = \"1m\"\n";
    let child = background(&w, remit, "touch approved-file; echo rc=$?");
    let pending = wait_pending(&w);
    assert_eq!(pending["kind"], "exec");
    assert!(
        pending["effect"]
            .as_str()
            .unwrap()
            .contains("touch approved-file")
    );
    let out = host(
        &w,
        &["approvals", "approve", pending["id"].as_str().unwrap()],
    );
    assert!(out.status.success(), "{}", show(&out));
    let out = finish(child);
    assert!(stdout(&out).contains("rc=0"), "{}", show(&out));
    assert!(w.exists(&w.ws.join("approved-file")));
}

/// A program waiting for approval while the task is frozen for an action (its `execve`
/// interrupted, and restarted once thawed) runs once approved, and the approval is used once;
/// the restarted attempt is not announced again.
#[test]
fn an_exec_waiting_for_approval_across_a_freeze_runs_once_approved() {
    let w = World::new();
    let remit = "[commands]\nprompt = [\"touch\"]\n[approvals]\ntimeout = \"1m\"\n\n[actions.copy]\nrun = [\"true\"]\n";
    let child = background(
        &w,
        remit,
        "(touch approved-file; echo touch=$?) & \
         while ! test -e go; do sleep 0.05; done; remit act copy; echo act=$? | tee acted; wait",
    );
    let pending = wait_pending(&w);
    assert_eq!(pending["kind"], "exec");
    // Freeze and thaw the task around the waiting `execve`.
    std::fs::write(w.ws.join("go"), "").unwrap();
    let begun = Instant::now();
    while !w.exists(&w.ws.join("acted")) {
        assert!(
            begun.elapsed() < Duration::from_secs(30),
            "the action never ran"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let id = pending["id"].as_str().unwrap();
    let out = host(&w, &["approvals", "approve", id]);
    assert!(out.status.success(), "{}", show(&out));
    let out = finish(child);
    assert!(
        stdout(&out).contains("touch=0") && stdout(&out).contains("act=0"),
        "{}",
        show(&out)
    );
    assert!(w.exists(&w.ws.join("approved-file")));
    let told = show(&out).matches("is waiting for approval").count();
    assert_eq!(told, 1, "{}", show(&out));
}

/// What the agent asks is shown to the approver as it would run: a terminal escape or a
/// carriage return in its arguments (or in the program name it gives, which the rule does
/// not look at) cannot redraw the approver's screen, and words are quoted. An approval can
/// be bound to the digest the approver saw.
#[test]
fn an_approval_shows_the_request_as_it_would_run() {
    let w = World::new();
    let remit = "[commands]\nprompt = [\"touch\"]\n[approvals]\ntimeout = \"1m\"\n";
    let child = background(
        &w,
        remit,
        "(exec -a $'\\e[0m\\r\\e[2Kap-0 [pending] exec ls' touch $'file\\e[8m' 'two words'); echo rc=$?",
    );
    let pending = wait_pending(&w);
    let out = host(&w, &["approvals", "list"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        !text.contains('\u{1b}') && !text.contains('\r'),
        "a control character reached the approver's terminal: {text:?}"
    );
    // Escaped once, as the gate describes it (`$'\x1b[0m\x0d…'`, not doubled), and as what
    // runs: the program's path, the name the task gave it only as `exec -a`.
    assert!(
        text.contains("exec `exec -a $'\\x1b[0m\\x0d\\x1b[2Kap-0 [pending] exec ls' /")
            && text.contains("/touch $'file\\x1b[8m' 'two words'`"),
        "{text}"
    );
    let id = pending["id"].as_str().unwrap();
    // Bound to another digest: not approved.
    let out = host(&w, &["approvals", "approve", id, "--digest", "sha256:0"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr(&out).contains("another request"), "{}", show(&out));
    assert!(!w.exists(&w.ws.join("two words")));
    // Bound to the digest shown: approved.
    let digest = pending["digest"].as_str().unwrap();
    let out = host(&w, &["approvals", "approve", id, "--digest", digest]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(!stdout(&out).contains('\u{1b}'), "{}", show(&out));
    let out = finish(child);
    assert!(stdout(&out).contains("rc=0"), "{}", show(&out));
    assert!(w.exists(&w.ws.join("two words")));
}

#[test]
fn policy_commands() {
    let w = World::new();
    let good = w.remit(&format!("{REMIT}\n[[test]]\neffect = {{ kind = \"deploy\", args = {{ env = \"production\" }} }}\nexpect = \"deny\"\n"));
    let out = host(&w, &["policy", "check", good.to_str().unwrap()]);
    assert!(
        out.status.success() && stdout(&out).contains("1 test pass"),
        "{}",
        show(&out)
    );
    let out = host(&w, &["policy", "test", good.to_str().unwrap()]);
    assert!(
        out.status.success() && stdout(&out).contains("ok  "),
        "{}",
        show(&out)
    );
    let out = host(
        &w,
        &[
            "policy",
            "explain",
            good.to_str().unwrap(),
            "kind=publish",
            "args.tag=latest",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("needs approval"), "{}", show(&out));
    let out = host(
        &w,
        &[
            "policy",
            "explain",
            good.to_str().unwrap(),
            "--approved",
            "kind=publish",
            "args.tag=latest",
        ],
    );
    assert!(
        out.status.success() && stdout(&out).contains("decision: allow"),
        "{}",
        show(&out)
    );
    let out = host(
        &w,
        &[
            "policy",
            "explain",
            good.to_str().unwrap(),
            "kind=exec",
            "command=git push",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));

    let bad = w.dir.path().join("bad.remit.toml");
    std::fs::write(
        &bad,
        "[actions.deploy]\nargs = [\"env\"]\nwhen = 'context.args.nope == \"x\"'\n",
    )
    .unwrap();
    let out = host(&w, &["policy", "check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{}:3:", bad.display())) && err.contains("nope"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let failing = w.dir.path().join("failing.remit.toml");
    std::fs::write(
        &failing,
        "[[test]]\neffect = { kind = \"publish\" }\nexpect = \"allow\"\n",
    )
    .unwrap();
    let out = host(&w, &["policy", "test", failing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let out = host(
        &w,
        &["policy", "explain", good.to_str().unwrap(), "kind=launch"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let out = host(&w, &["approvals", "approve", "ap-doesnotexist"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no running task has approval `ap-doesnotexist`"),
        "{}",
        show(&out)
    );
}

/// Raw Cedar beside a remit holds on the path `remit run` takes, the same as `remit policy
/// explain` says; a Cedar file using an annotation remit reserves for its own policies (the
/// one its index once trusted, hiding this forbid from every decision) is refused outright.
#[test]
fn a_raw_cedar_forbid_stops_the_command() {
    let w = World::new();
    let remit = w.remit("[agent]\nname = \"raw-cedar\"\n\n[policy]\ncedar = [\"x.cedar\"]\n");
    let cedar = w.dir.path().join("x.cedar");
    let run = || {
        w.command()
            .args(["run", "--quiet", "--remit"])
            .arg(&remit)
            .args(["--", "sh", "-c", "echo RAN"])
            .output()
            .unwrap()
    };
    let explain = || {
        host(
            &w,
            &[
                "policy",
                "explain",
                remit.to_str().unwrap(),
                "kind=exec",
                "command=sh -c 'echo RAN'",
            ],
        )
    };

    std::fs::write(
        &cedar,
        "@key(\"zzz\")\nforbid(principal, action == Action::\"exec\", resource);\n",
    )
    .unwrap();
    let out = run();
    assert!(!stdout(&out).contains("RAN"), "{}", show(&out));
    assert!(!out.status.success(), "{}", show(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{}:1:1:", cedar.display())) && err.contains("`@key` is reserved"),
        "{err}"
    );
    let out = explain();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        stderr(&out).contains("`@key` is reserved"),
        "{}",
        show(&out)
    );

    // The same forbid without the annotation: explain and run agree, and nothing runs.
    std::fs::write(
        &cedar,
        "@id(\"no-programs\")\nforbid(principal, action == Action::\"exec\", resource);\n",
    )
    .unwrap();
    let out = explain();
    assert!(
        stdout(&out).contains("deny") && stdout(&out).contains("no-programs"),
        "{}",
        show(&out)
    );
    let out = run();
    assert!(!stdout(&out).contains("RAN"), "{}", show(&out));

    // Twin: a raw policy about something else leaves the command alone.
    std::fs::write(
        &cedar,
        "forbid(principal, action == Action::\"git_push\", resource);\n",
    )
    .unwrap();
    let out = run();
    assert!(stdout(&out).contains("RAN"), "{}", show(&out));
}

/// Within one task, an approval for one argument does not approve another; an approval that
/// expired cannot be given, and trying changes nothing.
#[test]
fn a_changed_argument_needs_its_own_approval_and_expired_ones_cannot_be_given() {
    let w = World::new();
    let remit = REMIT.replace("timeout = \"2m\"", "timeout = \"3s\"");
    let child = background(
        &w,
        &remit,
        "remit act publish --arg tag=v3 --wait 30; echo a=$?; remit act publish --arg tag=v4 --wait 0; echo b=$?; sleep 2; echo end",
    );
    let (first, first_id) = approve_first(&w);
    assert_eq!(first["details"]["args"]["tag"], "v3");
    // The v4 request opens its own approval; v3's does not cover it.
    let second = w.approval_where(&["--all"], |a| a["details"]["args"]["tag"] == "v4");
    let second_id = second["id"].as_str().unwrap().to_owned();
    assert_ne!(second_id, first_id);

    // Let it expire, then try to approve it: exit 2, one line, no state change.
    std::thread::sleep(Duration::from_secs(4));
    let before = host(&w, &["ledger", "show", "--json"]).stdout;
    let out = host(&w, &["approvals", "approve", &second_id]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", show(&out));
    assert!(stderr(&out).contains("expired"), "{}", show(&out));
    let after = host(&w, &["ledger", "show", "--json"]).stdout;
    let new_events: Vec<Value> = String::from_utf8_lossy(&after[before.len()..])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        new_events
            .iter()
            .all(|e| e["body"]["kind"] != "approval_granted"),
        "{new_events:?}"
    );
    let out = finish(child);
    let text = stdout(&out);
    assert!(
        text.contains("a=0") && text.contains("b=1"),
        "{}",
        show(&out)
    );
    assert!(w.exists(&w.ws.join("published-v3")));
    assert!(
        !w.exists(&w.ws.join("published-v4")),
        "v4 was never approved"
    );
}

/// An action whose host command runs in the workspace is decided, and approved, for what the
/// workspace holds when it is asked for: a task that changes the workspace once it is
/// approved (to get something else published under the approval) gets nothing run, and a new
/// approval to ask for; the twin that leaves it alone gets its action performed.
#[test]
fn an_approval_is_bound_to_the_workspace_it_was_asked_for() {
    let w = World::new();
    let child = background(
        &w,
        REMIT,
        "echo good > payload; remit act publish --arg tag=v1 --wait 0; echo first=$?; \
         echo evil > payload; remit act publish --arg tag=v1 --wait 0; echo second=$?",
    );
    let pending = wait_pending(&w);
    assert!(
        pending["enables"]
            .as_str()
            .unwrap()
            .contains("on the workspace sha256:"),
        "{pending}"
    );
    let id = pending["id"].as_str().unwrap().to_owned();
    assert!(host(&w, &["approvals", "approve", &id]).status.success());
    // Asked again, the same arguments on another workspace: not covered by the approval.
    let again = w.approval_where(&[], |a| a["id"] != id.as_str());
    assert_ne!(again["digest"], pending["digest"]);
    assert_ne!(again["enables"], pending["enables"]);
    let second = again["id"].as_str().unwrap();
    assert!(host(&w, &["approvals", "deny", second]).status.success());
    let out = finish(child);
    assert!(
        stdout(&out).contains("first=1") && stdout(&out).contains("second=1"),
        "{}",
        show(&out)
    );
    assert!(
        !w.exists(&w.ws.join("published-v1")),
        "the command ran on a workspace nobody approved"
    );

    // The twin: the workspace stays as it was asked for.
    let child = background(
        &w,
        REMIT,
        "echo good > payload2; remit act publish --arg tag=v2 --wait 60; echo rc=$?",
    );
    approve_first(&w);
    let out = finish(child);
    assert!(stdout(&out).contains("rc=0"), "{}", show(&out));
    assert!(w.exists(&w.ws.join("published-v2")));
}

/// While an action's host command works on the workspace, every process of the task is
/// stopped: a task that writes the workspace under the command (a loop started just after it
/// asked) cannot change what the command reads; it goes on once the command is done.
#[test]
fn the_task_is_stopped_while_an_actions_command_uses_the_workspace() {
    assert_held_while_copying(
        &World::new(),
        "(sleep 1; touch went-on; while :; do echo evil > payload; done)",
    );
}

/// Runs `writer` in the background of a task that then asks for `copy`, whose host command
/// reads `payload` two seconds later; `writer` touches `went-on` after a second, then writes
/// `evil` there. The command must read what was there when it was asked for, and the writer
/// must go on once the command is done.
#[track_caller]
fn assert_held_while_copying(w: &World, writer: &str) {
    let remit = r#"
[actions.copy]
run = ["sh", "-c", "sleep 2; cat payload > published"]
"#;
    let out = w.run(
        Some(remit),
        &format!(
            "echo good > payload; {writer} & writer=$!; \
             remit act copy; echo rc=$?; \
             for i in $(seq 200); do test -e went-on && break; sleep 0.05; done; kill -9 $writer; \
             test -e went-on && echo went-on"
        ),
    );
    assert!(stdout(&out).contains("rc=0"), "{}", show(&out));
    assert_eq!(
        std::fs::read_to_string(w.ws.join("published")).unwrap(),
        "good\n",
        "the task changed the workspace under the command: {}",
        show(&out)
    );
    // The task went on afterwards: its writer ran once the command was done.
    assert!(stdout(&out).ends_with("went-on\n"), "{}", show(&out));
}

/// Another action's host command, already running when a bound action is asked for, does not
/// write under the bound command: the bound one is digested, decided and run once the other
/// is over.
#[test]
fn another_actions_command_does_not_write_under_a_bound_one() {
    let w = World::new();
    let remit = r#"
[actions.copy]
run = ["sh", "-c", "cat payload > before; sleep 2; cat payload > published"]

[actions.scribble]
bind_workspace = false
run = ["sh", "-c", "echo one > payload; touch scribbling; sleep 1.5; echo two > payload"]
"#;
    let out = w.run(
        Some(remit),
        "echo zero > payload; (remit act scribble; echo scribble=$?) & \
         while ! test -e scribbling; do sleep 0.05; done; \
         remit act copy; echo copy=$?; wait",
    );
    // The harmless twins: both actions did their work, one after the other.
    assert!(
        stdout(&out).contains("scribble=0") && stdout(&out).contains("copy=0"),
        "{}",
        show(&out)
    );
    let read = |name: &str| std::fs::read_to_string(w.ws.join(name)).unwrap();
    assert_eq!(
        read("before"),
        read("published"),
        "another action's command wrote under the bound one: {}",
        show(&out)
    );
    assert_eq!(read("published"), "two\n");
}

/// While a human decides on an action bound to the workspace, the task is held (frozen): it
/// cannot show the reviewer other contents than the ones the approval is for. Once decided,
/// the task goes on.
#[test]
fn the_task_is_held_while_an_action_bound_to_its_workspace_awaits_approval() {
    let w = World::new();
    let (child, pending) = held_while_pending(&w, "remit act copy --wait 60; echo rc=$?", 1500);
    assert!(
        pending["enables"]
            .as_str()
            .unwrap()
            .contains("on the workspace sha256:"),
        "{pending}"
    );
    let out = denied_and_gone_on(&w, &pending, child);
    assert!(stdout(&out).contains("rc=1"), "{}", show(&out));
}

/// The task stays held while a human decides even when the request that asked gives up
/// waiting (its process killed mid-wait by its own alarm): the freeze goes to the pending
/// approval, not back to the task.
#[test]
fn a_request_given_up_half_way_leaves_the_task_held_until_decided() {
    let w = World::new();
    let asker = r#"
import json, os, signal, socket
body = json.dumps({"kind": "copy", "args": {}, "wait": 30}).encode()
s = socket.socket(socket.AF_UNIX)
s.connect(os.environ["REMIT_SOCKET"])
signal.alarm(2)
s.sendall(b"POST /v1/actions HTTP/1.1\r\nhost: remit\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
s.recv(65536)
"#;
    std::fs::write(w.ws.join("asker.py"), asker).unwrap();
    // Past the asker's alarm: it is gone, and the task is still held.
    let (child, pending) = held_while_pending(&w, "python3 asker.py; echo asker=$?", 3500);
    let out = denied_and_gone_on(&w, &pending, child);
    // The asker died by its alarm.
    assert!(stdout(&out).contains("asker=142"), "{}", show(&out));
}

/// Start a task that writes `evil` to `payload`, runs a flipper that (once told to go) writes
/// `benign` there and touches `flipped`, and runs `ask`, which asks for `copy` (bound to the
/// workspace, needing approval). Once it is pending, the flipper is told to go; `settle_ms`
/// later, the task must not have changed anything: what the reviewer finds is what the
/// digest covers.
fn held_while_pending(w: &World, ask: &str, settle_ms: u64) -> (Child, Value) {
    let remit = r#"
[approvals]
timeout = "2m"

[actions.copy]
run = ["sh", "-c", "cat payload > published"]
approve = true
"#;
    let child = background(
        w,
        remit,
        &format!(
            "echo evil > payload; \
             (while ! test -e go; do sleep 0.05; done; echo benign > payload; touch flipped) & \
             {ask}; wait"
        ),
    );
    let pending = wait_pending(w);
    std::fs::write(w.ws.join("go"), "").unwrap();
    std::thread::sleep(Duration::from_millis(settle_ms));
    assert!(
        !w.exists(&w.ws.join("flipped")),
        "the task ran again while its action awaited approval"
    );
    assert_eq!(
        std::fs::read_to_string(w.ws.join("payload")).unwrap(),
        "evil\n"
    );
    (child, pending)
}

/// Deny `pending`; the task goes on (its flipper runs), and nothing was published.
fn denied_and_gone_on(w: &World, pending: &Value, child: Child) -> std::process::Output {
    let id = pending["id"].as_str().unwrap();
    assert!(host(w, &["approvals", "deny", id]).status.success());
    let out = finish(child);
    assert!(w.exists(&w.ws.join("flipped")), "{}", show(&out));
    assert!(!w.exists(&w.ws.join("published")), "{}", show(&out));
    out
}

/// A task that arranges to be woken by the kernel (a POSIX timer that sends it `SIGCONT`
/// every 5 ms, re-stopping itself after each write, so a stop signal could not hold it) is
/// still held while the command works: the task is frozen, not stopped.
#[test]
fn a_task_that_keeps_waking_itself_is_held_while_an_actions_command_runs() {
    let w = World::new();
    std::fs::write(
        w.ws.join("waker.py"),
        r#"
import ctypes, os, signal, time
libc = ctypes.CDLL(None, use_errno=True)
class sigevent(ctypes.Structure):
    _fields_ = [("value", ctypes.c_void_p), ("signo", ctypes.c_int), ("notify", ctypes.c_int), ("pad", ctypes.c_byte * 48)]
class timespec(ctypes.Structure):
    _fields_ = [("s", ctypes.c_long), ("ns", ctypes.c_long)]
class itimerspec(ctypes.Structure):
    _fields_ = [("interval", timespec), ("value", timespec)]
event = sigevent()
event.signo = signal.SIGCONT
event.notify = 0
timer = ctypes.c_void_p()
assert libc.timer_create(1, ctypes.byref(event), ctypes.byref(timer)) == 0
period = itimerspec(timespec(0, 5_000_000), timespec(0, 5_000_000))
assert libc.timer_settime(timer, 0, ctypes.byref(period), None) == 0
time.sleep(1)
open("went-on", "w").close()
while True:
    with open("payload", "w") as f:
        f.write("evil\n")
    os.kill(os.getpid(), signal.SIGSTOP)
"#,
    )
    .unwrap();
    assert_held_while_copying(&w, "python3 waker.py");
}

/// What an action's host command leaves running in the background is killed with it, before
/// the task goes on: nothing keeps working on the workspace once the task runs again.
#[test]
fn an_actions_command_leaves_nothing_running() {
    let w = World::new();
    let remit = r#"
[actions.spawn]
run = ["sh", "-c", "(sleep 1; echo late > late-write) & echo started"]
"#;
    let out = w.run(Some(remit), "remit act spawn; echo rc=$?; sleep 2");
    assert!(
        stdout(&out).contains("started") && stdout(&out).contains("rc=0"),
        "{}",
        show(&out)
    );
    assert!(
        !w.exists(&w.ws.join("late-write")),
        "the command's background child outlived it"
    );
}

/// Nor does one that left the command's process group and session (`setsid`, a double
/// fork), bound to the workspace or not: the command has a cgroup of its own, killed whole.
#[test]
fn an_actions_command_leaves_nothing_running_in_another_session() {
    for bind in ["true", "false"] {
        let w = World::new();
        let remit = format!(
            r#"
[actions.spawn]
bind_workspace = {bind}
run = ["sh", "-c", "(setsid -f sh -c 'ps -o sid= -p $$ > sid.tmp && mv sid.tmp setsid-ran; while ! test -e go; do sleep 0.05; done; echo late > late-write' >/dev/null 2>&1 &); echo hello > early-write; while ! test -e setsid-ran; do sleep 0.05; done; echo started"]
"#
        );
        let out = w.run(
            Some(&remit),
            "remit act spawn; echo rc=$?; touch go; sleep 1.5",
        );
        assert!(
            stdout(&out).contains("started") && stdout(&out).contains("rc=0"),
            "{}",
            show(&out)
        );
        // The harmless twin: what the command itself did stays done. The child did leave
        // the command's session (it ran as the leader of its own).
        assert!(w.exists(&w.ws.join("early-write")), "{}", show(&out));
        let sid = std::fs::read_to_string(w.ws.join("setsid-ran")).unwrap();
        assert!(!sid.trim().is_empty(), "{}", show(&out));
        assert!(
            !w.exists(&w.ws.join("late-write")),
            "a child in a new session outlived the command (bind_workspace = {bind})"
        );
    }
}

/// A supervisor killed outright while an action's host command runs cannot end what the
/// command started; the next task to start does. The twin: right after the kill, the child
/// that left the command's session is still alive (the kill alone does not end it).
#[test]
fn what_a_killed_supervisors_command_started_is_killed_by_the_next_start() {
    let w = World::new();
    let remit = r#"
[actions.spawn]
bind_workspace = false
timeout = "2m"
run = ["sh", "-c", "setsid -f sh -c 'echo $$ > child.tmp && mv child.tmp child; for i in $(seq 400); do test -e go && break; sleep 0.05; done; echo late > late-write' >/dev/null 2>&1; exec sleep 30"]
"#;
    let (mut supervisor, _stdout) = w.start(Some(remit), "echo ready; remit act spawn");
    let begun = Instant::now();
    while !w.exists(&w.ws.join("child")) {
        assert!(
            begun.elapsed() < Duration::from_secs(30),
            "the command never ran"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = std::fs::read_to_string(w.ws.join("child")).unwrap();
    let alive = || {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
        !stat.is_empty() && !stat.contains(") Z ")
    };
    supervisor.kill().unwrap();
    supervisor.wait().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        alive(),
        "the child died with its supervisor: nothing left to test"
    );

    ok(&w.run(None, "true"));
    let begun = Instant::now();
    while alive() && begun.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let survived = alive();
    std::fs::write(w.ws.join("go"), "").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !survived,
        "what the dead supervisor's command started still runs"
    );
    assert!(!w.exists(&w.ws.join("late-write")));
}

/// `bind_workspace = false`: the remit's author says the command reads nothing of the task's;
/// the approval is for the arguments alone, and a workspace changed meanwhile does not undo
/// it.
#[test]
fn an_unbound_action_is_approved_for_its_arguments_alone() {
    let w = World::new();
    let remit = r#"
[approvals]
timeout = "2m"

[actions.notify]
args = ["channel"]
run = ["touch", "notified-{channel}"]
approve = true
bind_workspace = false
"#;
    let child = background(
        &w,
        remit,
        "(sleep 1; echo more > notes; touch changed) & \
         remit act notify --arg channel=ops --wait 60; echo rc=$?; wait",
    );
    let pending = wait_pending(&w);
    assert!(
        !pending["enables"]
            .as_str()
            .unwrap()
            .contains("on the workspace"),
        "{pending}"
    );
    let begun = Instant::now();
    while !w.exists(&w.ws.join("changed")) {
        assert!(begun.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(20));
    }
    let id = pending["id"].as_str().unwrap();
    assert!(host(&w, &["approvals", "approve", id]).status.success());
    let out = finish(child);
    assert!(stdout(&out).contains("rc=0"), "{}", show(&out));
    assert!(w.exists(&w.ws.join("notified-ops")));
}
