//! `remit code`: scripts in a task, through the real binary — files, programs, git, HTTP
//! through the egress proxy, approvals, the kill switch, limits and bad input.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::code_support::*;
use crate::support::*;

fn script(w: &World, name: &str, text: &str) -> PathBuf {
    let path = w.dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn code_run(w: &World, remit: Option<&str>, path: &Path, extra: &[&str]) -> Output {
    let mut cmd = w.command();
    cmd.args(["code", "run", "--json"]);
    if let Some(text) = remit {
        cmd.arg("--remit").arg(w.remit(text));
    }
    cmd.args(extra).arg(path);
    cmd.output().unwrap()
}

/// The fields `remit code api` declares for `interface`, sorted.
fn declared_fields(w: &World, interface: &str) -> Value {
    let out = w.command().args(["code", "api"]).output().unwrap();
    let api = ok(&out);
    let start = api
        .find(&format!("interface {interface} {{"))
        .unwrap_or_else(|| panic!("no interface {interface}"));
    let mut fields: Vec<String> = api[start..]
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with('}'))
        .filter_map(|l| {
            let name = l.strip_prefix("  ")?;
            let end = name.find([':', '?'])?;
            let name = &name[..end];
            (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
                .then(|| name.to_owned())
        })
        .collect();
    fields.sort();
    serde_json::json!(fields)
}

fn report(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("no JSON report\n{}", show(o)))
}

fn events(w: &World, log: &Path) -> Vec<Value> {
    let _ = w;
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn api_prints_the_declarations() {
    let w = World::new();
    let out = w.command().args(["code", "api"]).output().unwrap();
    let text = ok(&out);
    assert!(text.contains("declare namespace remit"), "{text}");
    for f in [
        "function exec(",
        "function read(",
        "function fetch(",
        "function push(",
        "function act(",
    ] {
        assert!(text.contains(f), "{f}");
    }
}

#[test]
fn a_script_works_in_the_task_and_every_call_is_recorded_with_its_digest() {
    let w = World::new();
    std::fs::write(w.ws.join("in.txt"), "hello\n").unwrap();
    let path = script(
        &w,
        "work.ts",
        r#"
        interface Out { text: string; listed: string[]; exit: number | null }
        const text = await remit.fs.read("in.txt");
        await remit.fs.write("out/result.txt", text.toUpperCase());
        const r = await remit.exec(["cat", "out/result.txt"]);
        const listed = (await remit.fs.list("out")).map(e => e.path);
        console.log("done");
        const out: Out = { text: r.stdout, listed, exit: r.exit_code };
        return out;
        "#,
    );
    let log = w.dir.path().join("log.jsonl");
    let out = code_run(&w, None, &path, &["--log", log.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    let r = report(&out);
    assert_eq!(r["report"]["result"]["text"], "HELLO\n", "{r}");
    assert_eq!(
        r["report"]["result"]["listed"],
        serde_json::json!(["out/result.txt"])
    );
    assert_eq!(r["report"]["output"], "done\n");
    assert_eq!(
        std::fs::read_to_string(w.ws.join("out/result.txt")).unwrap(),
        "HELLO\n"
    );
    assert!(r["receipt"].is_string(), "a receipt: {r}");
    // Every binding call is a tool call in the ledger, tied to the script's digest.
    let digest = digest_of(&path);
    let events = events(&w, &log);
    let calls: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["body"]["kind"] == "effect_started" && e["body"]["effect"]["kind"] == "tool.call"
        })
        .collect();
    let tools: Vec<&str> = calls
        .iter()
        .map(|e| e["body"]["effect"]["target"].as_str().unwrap())
        .collect();
    assert_eq!(
        tools,
        ["run_code", "read_file", "write_file", "exec", "list_files"],
        "{events:#?}"
    );
    for call in &calls {
        assert_eq!(
            call["body"]["effect"]["attributes"]["script"],
            digest.as_str()
        );
    }
    let performed = events
        .iter()
        .filter(|e| e["body"]["kind"] == "effect_performed")
        .count();
    assert_eq!(performed, 5);
}

#[test]
fn bad_input_is_refused_before_any_task_exists() {
    let w = World::new();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "syntax.ts",
            b"const a = 1;\nconst b = ;\n".to_vec(),
            "syntax.ts:2:11: syntax error",
        ),
        (
            "bytes.ts",
            b"const a = '\xff\xfe';".to_vec(),
            "is not UTF-8 text",
        ),
        ("big.ts", vec![b' '; 2 << 20], "scripts may be at most"),
        (
            "types.ts",
            b"let x: = 3;".to_vec(),
            "types.ts:1:8: syntax error",
        ),
        (
            "syntax.js",
            b"let ok = 1;\nlet = = 2;".to_vec(),
            "syntax error",
        ),
    ];
    for (name, bytes, expected) in cases {
        let path = w.dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let out = w
            .command()
            .args(["code", "run"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}: {}", show(&out));
        assert!(stderr(&out).contains(expected), "{name}: {}", stderr(&out));
        assert_eq!(
            stderr(&out).lines().count(),
            1,
            "one line: {}",
            stderr(&out)
        );
    }
    assert!(!w.state.join("receipts").exists(), "no task was started");
}

#[test]
fn runtime_errors_and_unknown_bindings_point_into_the_script() {
    let w = World::new();
    let path = script(
        &w,
        "oops.ts",
        "const a: number = 1;\n\nawait remit.fs.remove('x');\n",
    );
    let log = w.dir.path().join("log.jsonl");
    let out = code_run(&w, None, &path, &["--log", log.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let r = report(&out);
    let e = &r["report"]["error"];
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("unknown binding `remit.fs.remove`"),
        "{e}"
    );
    assert_eq!(e["line"], 3, "{e}");
    // The run is recorded as failed; nothing else was performed.
    let events = events(&w, &log);
    assert!(events.iter().any(|e| e["body"]["kind"] == "effect_failed"));
    assert!(
        !events
            .iter()
            .any(|e| e["body"]["kind"] == "effect_performed")
    );
}

#[test]
fn files_stay_in_the_workspace_and_hidden_files_stay_hidden() {
    let w = World::new();
    std::os::unix::fs::symlink(&w.outside, w.ws.join("link")).unwrap();
    std::fs::write(w.ws.join(".env"), "TOKEN=in-the-workspace\n").unwrap();
    let remit = "[filesystem]\nhidden = [\".env\"]\n";
    let path = script(
        &w,
        "escape.ts",
        r##"
        const tries: Record<string, string> = {};
        const attempt = async (name: string, f: () => Promise<unknown>) => {
          try { await f(); tries[name] = "allowed"; } catch (e: any) { tries[name] = e.code + ": " + e.message; }
        };
        await attempt("dotdot", () => remit.fs.read("../outside/secret.txt"));
        await attempt("absolute", () => remit.fs.read("/etc/passwd"));
        await attempt("symlink", () => remit.fs.read("link/secret.txt"));
        await attempt("write-symlink", () => remit.fs.write("link/planted.txt", "x"));
        await attempt("hidden", () => remit.fs.read(".env"));
        await attempt("git-hooks", () => remit.fs.write(".git/hooks/pre-commit", "#!/bin/sh\necho pwned\n"));
        await attempt("glob-out", () => remit.fs.glob("../**"));
        return tries;
        "##,
    );
    git(&w.ws, &["init", "-q"]);
    let out = code_run(&w, Some(remit), &path, &[]);
    assert!(out.status.success(), "{}", show(&out));
    let tries = &report(&out)["report"]["result"];
    for (name, expect) in [
        ("dotdot", "invalid"),
        ("absolute", "invalid"),
        ("symlink", "out of the workspace"),
        ("write-symlink", "out of the workspace"),
        ("glob-out", "without `..`"),
    ] {
        assert!(
            tries[name].as_str().unwrap().contains(expect),
            "{name}: {tries}"
        );
    }
    assert!(
        tries["hidden"].as_str().unwrap().starts_with("failed"),
        "{tries}"
    );
    assert!(
        tries["git-hooks"].as_str().unwrap().starts_with("failed"),
        "{tries}"
    );
    assert!(!w.outside.join("planted.txt").exists());
    assert!(!w.ws.join(".git/hooks/pre-commit").exists());
    // The ledger: the writes that did not happen are recorded as failed, never performed;
    // a path refused as bad input is no effect at all.
    let events = ledger(&w);
    for path in ["link/planted.txt", ".git/hooks/pre-commit"] {
        let id = tool_call(&events, "write_file", "path", path);
        let outcomes = outcomes(&events, &id);
        assert_eq!(outcomes.len(), 1, "{outcomes:#?}");
        assert_eq!(outcomes[0]["body"]["kind"], "effect_failed", "{path}");
        assert!(
            outcomes[0]["body"]["error"]
                .as_str()
                .unwrap()
                .starts_with("write_file: "),
            "{path}: {outcomes:#?}"
        );
    }
    assert!(
        !events
            .iter()
            .any(|e| e["body"]["effect"]["attributes"]["arg.path"]
                .as_str()
                .is_some_and(|p| p.starts_with("../") || p.starts_with('/'))),
        "{events:#?}"
    );
}

#[test]
fn exec_follows_the_command_rules_and_output_is_redacted() {
    let w = World::new();
    std::fs::write(
        w.ws.join("creds.txt"),
        "token=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\n",
    )
    .unwrap();
    let remit = "[commands]\nforbid = [[\"curl\"]]\n";
    let path = script(
        &w,
        "exec.ts",
        r#"
        let refused = "";
        try { await remit.exec(["curl", "https://example.com"]); } catch (e: any) { refused = e.code + " " + e.policy + " " + e.message; }
        const cat = await remit.exec(["cat", "creds.txt"]);
        const fail = await remit.exec(["sh", "-c", "echo err >&2; exit 3"]);
        return { refused, cat: cat.stdout, code: fail.exit_code, err: fail.stderr };
        "#,
    );
    let out = code_run(&w, Some(remit), &path, &[]);
    assert!(out.status.success(), "{}", show(&out));
    let r = &report(&out)["report"]["result"];
    let refused = r["refused"].as_str().unwrap();
    assert!(
        refused.starts_with("denied commands.forbid[0]") && refused.contains("curl"),
        "{r}"
    );
    assert!(
        !r["cat"]
            .as_str()
            .unwrap()
            .contains("C3KCQypnDyzoGQmTr8gbw5Xbkwr"),
        "{r}"
    );
    assert!(r["cat"].as_str().unwrap().contains("REDACTED"), "{r}");
    assert_eq!(r["code"], 3);
    assert_eq!(r["err"], "err\n");
    // The ledger: the program was refused as its own effect, and the `exec` call that asked
    // for it is recorded as failed with that refusal, not as performed.
    let events = ledger(&w);
    assert!(
        events.iter().any(|e| e["body"]["kind"] == "exec"
            && e["body"]["argv"][0] == "curl"
            && e["body"]["decision"] == "deny"
            && e["body"]["rule"] == "commands.forbid[0]"),
        "{events:#?}"
    );
    let curl = tool_call(&events, "exec", "program", "curl");
    let error = refused_outcome(&events, &curl, "denied");
    assert!(
        error.contains("`curl https://example.com` may not run in this task")
            && error.ends_with("(policy `commands.forbid[0]`)"),
        "{error}"
    );
    // The programs that ran are performed (a non-zero exit is the program's answer).
    for program in ["cat", "sh"] {
        let id = tool_call(&events, "exec", "program", program);
        let outcomes = outcomes(&events, &id);
        assert_eq!(outcomes.len(), 1, "{outcomes:#?}");
        assert_eq!(outcomes[0]["body"]["kind"], "effect_performed", "{program}");
        assert_eq!(outcomes[0]["body"]["outcome"], "succeeded", "{program}");
    }
}

#[test]
fn http_goes_through_the_egress_proxy_with_credentials_injected() {
    let w = World::new();
    let server = Server::echo();
    let port = server.port;
    let remit = format!(
        r#"
[network]
allow = ["127.0.0.2:{port}"]
private = ["127.0.0.2"]

[[network.credential]]
name = "echo-key"
env = "ECHO_KEY"
from = {{ env = "REAL_ECHO_KEY" }}
inject = {{ hosts = ["127.0.0.2:{port}"], header = "x-api-key" }}
"#
    );
    let path = script(
        &w,
        "fetch.ts",
        &format!(
            r#"
        const names = await remit.secrets.names();
        const r = await remit.http.fetch("http://127.0.0.2:{port}/hello?x=1", {{
          method: "POST", body: "payload", headers: {{ "content-type": "text/plain" }}, credentials: ["echo-key"],
        }});
        const seen = JSON.parse(r.body);
        let other = "";
        try {{ await remit.http.fetch("http://127.0.0.3:{port}/"); }} catch (e: any) {{ other = e.code + ": " + e.message; }}
        const status = await remit.task.status();
        return {{ names, status: r.status, method: seen.method, body: seen.body, key: seen.headers["x-api-key"], other,
                  fetch_keys: Object.keys(r).sort(), status_keys: Object.keys(status).sort() }};
        "#
        ),
    );
    let mut cmd = w.command();
    cmd.env("REAL_ECHO_KEY", "sk-real-value-0123456789abcdef")
        .args(["code", "run", "--json", "--remit"])
        .arg(w.remit(&remit))
        .arg(&path);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let r = &report(&out)["report"]["result"];
    assert_eq!(r["names"], serde_json::json!(["echo-key"]));
    // What the bindings return is what `remit.d.ts` declares.
    assert_eq!(r["fetch_keys"], declared_fields(&w, "FetchResult"), "{r}");
    assert_eq!(r["status_keys"], declared_fields(&w, "TaskStatus"), "{r}");
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["method"], "POST");
    assert_eq!(r["body"], "payload");
    assert_eq!(
        r["key"], 30,
        "the origin got a key of the real value's length: {r}"
    );
    // The origin got the real value; the script never saw it.
    let seen = server.seen.lock().unwrap();
    assert_eq!(
        seen[0].header("x-api-key"),
        Some("sk-real-value-0123456789abcdef")
    );
    assert!(!stdout(&out).contains("sk-real-value"));
    assert!(r["other"].as_str().unwrap().starts_with("denied:"), "{r}");
    // The ledger: the fetch the proxy refused is recorded as failed with its refusal; the
    // one it forwarded is performed.
    let events = ledger(&w);
    let refused = tool_call(
        &events,
        "http_fetch",
        "url",
        &format!("http://127.0.0.3:{port}/"),
    );
    refused_outcome(&events, &refused, "denied");
    let fetched = tool_call(
        &events,
        "http_fetch",
        "url",
        &format!("http://127.0.0.2:{port}/hello?x=1"),
    );
    let outcomes = outcomes(&events, &fetched);
    assert_eq!(outcomes.len(), 1, "{outcomes:#?}");
    assert_eq!(outcomes[0]["body"]["kind"], "effect_performed");
}

#[test]
fn http_without_network_grants_is_a_clear_denial() {
    let w = World::new();
    let path = script(
        &w,
        "nonet.ts",
        "try { await remit.http.fetch('https://example.com/x'); } catch (e: any) { return [e.code, e.message]; }",
    );
    let out = code_run(&w, None, &path, &[]);
    assert!(out.status.success(), "{}", show(&out));
    let r = &report(&out)["report"]["result"];
    assert_eq!(r[0], "denied");
    assert!(
        r[1].as_str()
            .unwrap()
            .contains("grants no network access to `example.com`"),
        "{r}"
    );
    let events = ledger(&w);
    let fetch = tool_call(&events, "http_fetch", "url", "https://example.com/x");
    let error = refused_outcome(&events, &fetch, "denied");
    assert!(
        error.contains("grants no network access to `example.com`"),
        "{error}"
    );
}

#[test]
fn a_program_tests_commits_and_pushes_only_to_its_own_branch() {
    let w = World::new();
    let (server, repos, main_before) = cloned_origin(&w);
    let remit = format!(
        r#"
[agent]
name = "fixer"

[network]
allow = ["127.0.0.2:{}"]
private = ["127.0.0.2"]

[network.git]
push = ["refs/heads/remit/*"]
"#,
        server.port
    );
    let path = script(
        &w,
        "ship.ts",
        r#"
        const readme = await remit.fs.read("README.md");
        const tests = await remit.exec(["sh", "test.sh"]);
        if (tests.exit_code !== 0) throw new Error("tests failed: " + tests.stderr);
        await remit.fs.write("CHANGELOG.md", "- " + readme.trim() + " changed\n");
        const status = await remit.git.status();
        const commit = await remit.git.commit("add a changelog");
        let main = "pushed";
        try { await remit.git.push({ branch: "main" }); } catch (e: any) { main = e.code + ": " + e.message; }
        const pushed = await remit.git.push({ branch: "remit/changelog" });
        // A repository the script writes is not a remote: git would run its configuration.
        await remit.fs.write("evil.git/HEAD", "ref: refs/heads/main\n");
        await remit.fs.write("evil.git/config", "[core]\n\trepositoryformatversion = 0\n\tbare = true\n\talternateRefsCommand = touch ALT_MARKER\n");
        await remit.fs.write("evil.git/objects/info/alternates", "../../.git/objects\n");
        await remit.fs.write("evil.git/refs/heads/.keep", "");
        const refusals = [];
        for (const remote of ["evil.git", "./evil.git", "/tmp/x.git", "file:///tmp/x", "nope"]) {
          try { await remit.git.push({ remote, branch: "remit/elsewhere" }); refusals.push("pushed"); }
          catch (e: any) { refusals.push(e.code); }
        }
        return { tests: tests.stdout, changed: status.entries.map(e => e.path), commit: commit.commit, main, pushed: pushed.ref, refusals };
        "#,
    );
    let log = w.dir.path().join("log.jsonl");
    let out = code_run(&w, Some(&remit), &path, &["--log", log.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    let r = &report(&out)["report"]["result"];
    assert_eq!(r["tests"], "tests passed\n", "{r}");
    assert_eq!(r["changed"], serde_json::json!(["CHANGELOG.md"]));
    let main = r["main"].as_str().unwrap();
    assert!(
        main.starts_with("denied: ") && main.contains("refs/heads/main"),
        "{r}"
    );
    assert_eq!(r["pushed"], "refs/heads/remit/changelog");
    assert_eq!(
        r["refusals"],
        serde_json::json!(["invalid", "invalid", "invalid", "invalid", "invalid"]),
        "{r}"
    );
    assert!(!w.ws.join("ALT_MARKER").exists());
    let origin = repos.join("origin.git");
    assert_eq!(
        git(&origin, &["rev-parse", "refs/heads/main"]),
        main_before,
        "main moved"
    );
    assert_eq!(
        git(&origin, &["rev-parse", "refs/heads/remit/changelog"]),
        r["commit"].as_str().unwrap()
    );
    // Both pushes were decided as git_push effects by the egress proxy.
    let events = events(&w, &log);
    let pushes: Vec<(String, String)> = events
        .iter()
        .filter(|e| e["body"]["kind"] == "decision" && e["body"]["effect"]["kind"] == "git.push")
        .map(|e| {
            (
                e["body"]["effect"]["target"].as_str().unwrap().to_owned(),
                e["body"]["decision"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        pushes,
        [
            ("refs/heads/main".to_owned(), "deny".to_owned()),
            ("refs/heads/remit/changelog".to_owned(), "allow".to_owned())
        ],
        "{pushes:?}"
    );
    // The `git_push` call refused by the proxy is recorded as failed with the proxy's
    // refusal, not as performed; the allowed one is performed.
    let events = ledger(&w);
    let main = tool_call(&events, "git_push", "branch", "main");
    let error = refused_outcome(&events, &main, "denied");
    assert!(
        error.contains("push to `refs/heads/main` refused") && error.contains("(policy `"),
        "{error}"
    );
    let own = tool_call(&events, "git_push", "branch", "remit/changelog");
    let outcomes = outcomes(&events, &own);
    assert_eq!(outcomes.len(), 1, "{outcomes:#?}");
    assert_eq!(outcomes[0]["body"]["kind"], "effect_performed");
}

/// A `publish` action a human must approve, which touches `published-<tag>`.
const PUBLISH_ON_APPROVAL: &str = r#"
[approvals]
timeout = "2m"

[actions.publish]
args = ["tag"]
run = ["touch", "published-{tag}"]
approve = true
"#;

#[test]
fn actions_wait_for_a_human() {
    let w = World::new();
    let remit = PUBLISH_ON_APPROVAL;
    let path = script(
        &w,
        "act.ts",
        "return await remit.act('publish', { tag: 'v1' });",
    );
    let child = w
        .command()
        .args(["code", "run", "--json", "--remit"])
        .arg(w.remit(remit))
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let id = w.approval_where(&[], |a| a["kind"] == "publish")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!w.ws.join("published-v1").exists());
    w.approve(&id);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(report(&out)["report"]["result"]["status"], "performed");
    assert!(w.ws.join("published-v1").exists());
}

/// While the task is held for a human's decision on an action bound to its workspace, a
/// program asked for is refused at once, saying why, instead of waiting in the frozen task;
/// once the approval is granted, the action asked again is performed and programs run again.
#[test]
fn programs_asked_for_while_the_task_is_held_are_refused_at_once() {
    let w = World::new();
    let remit = PUBLISH_ON_APPROVAL;
    let path = script(
        &w,
        "held.ts",
        r#"
        let pending = "";
        try { await remit.act('publish', { tag: 'v1' }, { wait: 0 }); } catch (e: any) { pending = e.code; }
        const begun = Date.now();
        let held = "";
        try { await remit.exec(["true"]); } catch (e: any) { held = e.message; }
        const refusedIn = Date.now() - begun;
        // Asked again, it waits for the human's decision, then is performed.
        const done = await remit.act('publish', { tag: 'v1' }, { wait: 60 });
        const after = await remit.exec(["echo", "ran"]);
        return { pending, held, refusedIn, performed: done.status, after: after.stdout.trim() };
        "#,
    );
    let child = w
        .command()
        .args(["code", "run", "--json", "--remit"])
        .arg(w.remit(remit))
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let id = w.approval_where(&[], |a| a["kind"] == "publish")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    std::thread::sleep(Duration::from_millis(500));
    w.approve(&id);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let result = &report(&out)["report"]["result"];
    assert_eq!(result["pending"], "pending", "{result}");
    assert!(
        result["held"]
            .as_str()
            .unwrap()
            .contains(&format!("held while approval {id} is decided")),
        "{result}"
    );
    assert!(result["refusedIn"].as_u64().unwrap() < 5_000, "{result}");
    // The harmless twins: decided, the action is performed and the task runs programs again.
    assert_eq!(result["performed"], "performed", "{result}");
    assert_eq!(result["after"], "ran", "{result}");
    assert!(w.ws.join("published-v1").exists());
}

#[test]
fn the_kill_switch_stops_a_script() {
    let w = World::new();
    let path = script(
        &w,
        "forever.ts",
        "for (;;) { await remit.exec(['sleep', '0.1']); }",
    );
    let child = w
        .command()
        .args(["code", "run", "--json"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let task = loop {
        let out = w
            .command()
            .args(["task", "list", "--json"])
            .output()
            .unwrap();
        let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if let Some(t) = list.first() {
            break t["task"].as_str().unwrap().to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no task appeared"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_millis(500));
    let out = w.command().args(["task", "kill", &task]).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let killed_at = remit_gate::record::rfc3339(SystemTime::now());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(137), "{}", show(&out));
    let r = report(&out);
    assert!(
        r["report"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("killed"),
        "{r}"
    );
    assert!(r["receipt"].is_string());
    // The ledger: nothing started after the kill — neither after the first record that
    // names it (a refusal by the kill switch, an effect failed because of it, the task's
    // end) nor once `remit task kill` had answered.
    let events = ledger(&w);
    let kill = events
        .iter()
        .position(|e| {
            e["body"]["policy"] == "kill-switch"
                || e["body"]["kind"] == "task_end"
                || e["body"]["error"]
                    .as_str()
                    .is_some_and(|m| m.contains("killed by"))
        })
        .unwrap_or_else(|| panic!("the kill is not in the ledger: {events:#?}"));
    let late: Vec<&Value> = events
        .iter()
        .enumerate()
        .filter(|(i, e)| {
            e["body"]["kind"] == "effect_started"
                && (*i >= kill || e["time"].as_str().unwrap() >= killed_at.as_str())
        })
        .map(|(_, e)| e)
        .collect();
    assert!(
        late.is_empty(),
        "started after the kill (at {killed_at}): {late:#?}"
    );
    // Every effect started has its outcome, and the script's run failed because of the kill.
    for started in events
        .iter()
        .filter(|e| e["body"]["kind"] == "effect_started")
    {
        let id = started["body"]["effect"]["id"].as_str().unwrap();
        let starts = events
            .iter()
            .filter(|e| e["body"]["kind"] == "effect_started" && e["body"]["effect"]["id"] == id)
            .count();
        assert_eq!(outcomes(&events, id).len(), starts, "{id}: {events:#?}");
    }
    let run = tool_call(&events, "run_code", "language", "ts");
    let outcomes = outcomes(&events, &run);
    assert_eq!(
        outcomes[0]["body"]["kind"], "effect_failed",
        "{outcomes:#?}"
    );
    assert!(
        outcomes[0]["body"]["error"]
            .as_str()
            .unwrap()
            .contains("killed by"),
        "{outcomes:#?}"
    );
}

#[test]
fn limits_stop_scripts_with_clear_errors() {
    let w = World::new();
    for (code, flag, value, expected) in [
        ("while (true) {}", "--cpu", "300ms", "CPU-time limit"),
        (
            "const a = []; for (;;) a.push(new Array(1e5).fill(1.5));",
            "--memory",
            "16MiB",
            "out of memory",
        ),
        (
            "for (let i = 0; ; i++) await remit.fs.list('.');",
            "--max-calls",
            "3",
            "limit of 3 binding calls",
        ),
        (
            "for (;;) console.log('x'.repeat(100));",
            "--max-output",
            "1KiB",
            "output limit",
        ),
    ] {
        let path = script(&w, "limit.js", code);
        let out = code_run(&w, None, &path, &[flag, value]);
        assert_eq!(out.status.code(), Some(2), "{code}: {}", show(&out));
        let message = report(&out)["report"]["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.contains(expected), "{code}: {message}");
    }
}

/// A script's thrown error is the script's text too: its name and code are redacted like
/// its message, and its stack is cut (not a way around the output limit).
#[test]
fn a_thrown_errors_fields_are_redacted_and_bounded() {
    let w = World::new();
    std::fs::write(
        w.ws.join("creds.txt"),
        "token=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\n",
    )
    .unwrap();
    let path = script(
        &w,
        "throw.js",
        r#"const t = (await remit.fs.read("creds.txt")).trim();
const e = new Error("x");
e.name = t;
e.code = t;
e.stack = "A".repeat(4 << 20);
throw e;"#,
    );
    let out = code_run(&w, None, &path, &["--max-output", "64KiB"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("C3KCQypnDyzoGQmTr8gbw5Xbkwr"), "{text}");
    assert!(text.len() < 64 * 1024, "{} bytes", text.len());
    let error = &report(&out)["report"]["error"];
    assert_eq!(error["kind"], "exception", "{error}");
    assert!(error["code"].is_null(), "{error}");
}

/// Many programs started at once (more than the task's init queues while it waits for one
/// program's start to be decided) all run, and the supervisor keeps deciding: the script
/// finishes, with every result. Before, the supervisor waited for room in the init's queue
/// while the init waited for the supervisor, and the task outlived its wall-clock limit.
#[test]
fn many_programs_started_at_once_do_not_stall_the_supervisor() {
    let w = World::new();
    let path = script(
        &w,
        "burst.js",
        r#"const pad = "x".repeat(15000);
const results = await Promise.all([...Array(40)].map((_, i) => remit.exec(["echo", String(i), pad])));
console.log(results.filter(r => r.exit_code === 0).length);"#,
    );
    let out = code_run(&w, Some("[limits]\nwall = \"60s\"\n"), &path, &[]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        report(&out)["report"]["output"].as_str().unwrap().trim(),
        "40",
        "{}",
        show(&out)
    );
}

/// `remit code run --task ID` runs a program in a task already running: under that task's
/// remit, recorded in its ledger with the script's digest; refusals stay refusals.
#[test]
fn a_script_runs_in_a_task_already_running() {
    let w = World::new();
    std::fs::write(w.ws.join("in.txt"), "hello\n").unwrap();
    let (mut child, _stdout) = w.start(
        Some("[commands]\nforbid = [\"curl\"]\n"),
        "echo ready; sleep 60",
    );
    let out = w
        .command()
        .args(["task", "list", "--json"])
        .output()
        .unwrap();
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let task = list[0]["task"].as_str().unwrap().to_owned();

    let path = script(
        &w,
        "in-task.ts",
        r#"
        const text = await remit.fs.read("in.txt");
        await remit.fs.write("from-script.txt", text.toUpperCase());
        const r = await remit.exec(["cat", "from-script.txt"]);
        let refused = "";
        try { await remit.exec(["curl", "https://example.com"]); } catch (e: any) { refused = e.code; }
        console.log("in the task");
        return { cat: r.stdout, refused };
        "#,
    );
    let out = code_run(&w, None, &path, &["--task", &task]);
    assert!(out.status.success(), "{}", show(&out));
    let r = report(&out);
    assert_eq!(r["task"], task.as_str());
    assert_eq!(r["report"]["result"]["cat"], "HELLO\n", "{r}");
    assert_eq!(r["report"]["result"]["refused"], "denied", "{r}");
    assert_eq!(r["report"]["output"], "in the task\n");

    // Bad input never reaches the task; a missing task and a remit beside --task are errors.
    let bad = script(&w, "bad.ts", "let x = ;");
    let out = code_run(&w, None, &bad, &["--task", &task]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr(&out).contains("bad.ts:1:9"), "{}", show(&out));
    let out = code_run(&w, None, &path, &["--task", "01NOSUCHTASK"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr(&out).contains("no running task"), "{}", show(&out));
    let out = code_run(&w, Some(""), &path, &["--task", &task]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));

    let out = w.command().args(["task", "kill", &task]).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let _ = child.wait();

    // The calls are the running task's, tied to the script's digest; the refused exec is
    // recorded as failed, never as performed.
    let events = ledger(&w);
    let digest = digest_of(&path);
    let calls: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["body"]["kind"] == "effect_started" && e["body"]["effect"]["kind"] == "tool.call"
        })
        .collect();
    assert_eq!(calls.len(), 5, "{calls:#?}");
    for call in &calls {
        assert_eq!(call["task"], task.as_str());
        assert_eq!(
            call["body"]["effect"]["attributes"]["script"],
            digest.as_str()
        );
    }
    let curl = tool_call(&events, "exec", "argv", "curl https://example.com");
    refused_outcome(&events, &curl, "denied");
}
