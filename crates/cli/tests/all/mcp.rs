//! `remit mcp` driven by a real MCP client (the Python MCP SDK) over stdio and streamable
//! HTTP, and by hand with raw JSON-RPC for denials, approvals and malformed messages.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::code_support::*;
use crate::support::*;

const TOOLS: [&str; 15] = [
    "exec",
    "git_commit",
    "git_diff",
    "git_push",
    "git_status",
    "glob",
    "http_fetch",
    "list_files",
    "read_file",
    "request_action",
    "run_code",
    "search",
    "secret_names",
    "task_status",
    "write_file",
];

const REMIT: &str = r#"
[agent]
name = "mcp-agent"

[actions.ping]
run = ["sh", "-c", "echo pong"]
"#;

fn workspace(w: &World) {
    std::fs::write(w.ws.join("README.md"), "# demo\n").unwrap();
    std::fs::write(w.ws.join("test.sh"), "grep -q demo README.md && echo ok\n").unwrap();
    git(&w.ws, &["init", "-q"]);
    git(&w.ws, &["add", "."]);
    git(&w.ws, &["commit", "-qm", "init"]);
}

fn env_of(w: &World) -> Value {
    json!({
        "REMIT_HOME": w.state,
        "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "HOME": w.home,
        "LANG": "C.UTF-8",
    })
}

fn all_calls() -> Value {
    json!([
        ["run_code", {"code": "const text: string = await remit.fs.read('README.md'); console.log('read', text.length); return { lines: text.split('\\n').length };"}],
        ["exec", {"argv": ["sh", "test.sh"]}],
        ["read_file", {"path": "README.md"}],
        ["write_file", {"path": "notes/todo.txt", "content": "write tests\n"}],
        ["write_file", {"path": "README.md", "content": "# demo\nchanged\n"}],
        ["list_files", {"path": "notes"}],
        ["glob", {"pattern": "**/*.txt"}],
        ["search", {"pattern": "changed"}],
        ["git_status", {}],
        ["git_diff", {}],
        ["git_commit", {"message": "notes"}],
        ["git_push", {}],
        ["http_fetch", {"url": "https://example.com/"}],
        ["request_action", {"kind": "ping"}],
        ["secret_names", {}],
        ["task_status", {}],
        ["no_such_tool", {}],
        ["write_file", {"path": "../escape.txt", "content": "x"}],
    ])
}

fn check_all(out: &Value) {
    assert_eq!(out["server"], "remit");
    assert_eq!(out["tools"], json!(TOOLS), "{out}");
    for tool in TOOLS {
        assert_eq!(out["schemas"][tool]["type"], "object", "{tool}");
    }
    let calls = out["calls"].as_array().unwrap();
    let by = |i: usize| &calls[i];
    let ok = |i: usize| {
        assert_eq!(by(i)["is_error"], false, "{}", by(i));
        &by(i)["structured"]
    };
    assert_eq!(ok(0)["result"]["lines"], 2);
    assert!(by(0)["text"].as_str().unwrap().contains("read 7"));
    assert_eq!(ok(1)["stdout"], "ok\n");
    assert_eq!(ok(2)["content"], "# demo\n");
    assert_eq!(ok(3)["bytes"], 12);
    ok(4);
    assert_eq!(ok(5)["entries"][0]["path"], "notes/todo.txt");
    assert_eq!(ok(6)["paths"], json!(["notes/todo.txt"]));
    assert_eq!(ok(7)["matches"][0]["path"], "README.md");
    assert_eq!(ok(8)["clean"], false);
    assert!(ok(9)["diff"].as_str().unwrap().contains("+changed"));
    assert_eq!(ok(10)["commit"].as_str().unwrap().len(), 40);
    // No remote, no network: a tool error that says why.
    assert_eq!(by(11)["is_error"], true, "{}", by(11));
    let fetch = by(12);
    assert_eq!(fetch["is_error"], true);
    assert_eq!(fetch["structured"]["code"], "denied");
    let text = fetch["text"].as_str().unwrap();
    assert!(
        text.contains("grants no network access to `example.com`")
            && text.contains("do the work another way"),
        "{text}"
    );
    assert_eq!(ok(13)["result"]["stdout"], "pong\n");
    assert_eq!(ok(14)["names"], json!([]));
    assert_eq!(ok(15)["agent"], "mcp-agent");
    assert!(
        by(16)["protocol_error"]
            .as_str()
            .unwrap()
            .contains("unknown tool `no_such_tool`"),
        "{}",
        by(16)
    );
    assert_eq!(by(17)["is_error"], true);
    assert_eq!(by(17)["structured"]["code"], "invalid");
}

#[test]
fn a_real_client_over_stdio_lists_and_calls_every_tool() {
    let w = World::new();
    workspace(&w);
    let remit = w.remit(REMIT);
    let out = Command::new(mcp_python())
        .arg(mcp_client())
        .arg("stdio")
        .arg(env!("CARGO_BIN_EXE_remit"))
        .arg(env_of(&w).to_string())
        .arg(all_calls().to_string())
        .arg("--")
        .args(["mcp", "--remit"])
        .arg(&remit)
        .arg("--workspace")
        .arg(&w.ws)
        .current_dir(&w.ws)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    check_all(&result);
    assert!(w.ws.join("notes/todo.txt").exists());
    // The client closed the connection: the task ended with its receipt.
    let started = Instant::now();
    while std::fs::read_dir(w.state.join("receipts"))
        .map(|d| d.count())
        .unwrap_or(0)
        == 0
    {
        assert!(started.elapsed() < Duration::from_secs(20), "no receipt");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kill_term(child: &Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}

#[test]
fn a_real_client_over_streamable_http() {
    let w = World::new();
    workspace(&w);
    let mut server = w
        .command()
        .env("REMIT_MCP_TOKEN", "test-token-123")
        .args(["mcp", "--http", "127.0.0.1:0", "--remit"])
        .arg(w.remit(REMIT))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(server.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in `{line}`"))
        .to_owned();
    let out = Command::new(mcp_python())
        .arg(mcp_client())
        .args(["http", &url, "test-token-123"])
        .arg(all_calls().to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    check_all(&serde_json::from_slice(&out.stdout).unwrap());
    // Without the token: refused.
    let hostport = url.trim_start_matches("http://").trim_end_matches("/mcp");
    let mut tcp = std::net::TcpStream::connect(hostport).unwrap();
    write!(
        tcp,
        "POST /mcp HTTP/1.1\r\nHost: {hostport}\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
    )
    .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    // Malformed bodies with the token: a 4xx each, and the server keeps serving.
    let post = |body: &str| -> String {
        let mut tcp = std::net::TcpStream::connect(hostport).unwrap();
        write!(
            tcp,
            "POST /mcp HTTP/1.1\r\nHost: {hostport}\r\nauthorization: Bearer test-token-123\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).unwrap();
        answer
    };
    for body in [
        "this is not json",
        "{\"jsonrpc\": \"2.0\", \"id\": 1, \"meth",
        "[1, 2, 3]",
    ] {
        let answer = post(body);
        assert!(answer.starts_with("HTTP/1.1 4"), "{body}: {answer}");
    }
    let out = Command::new(mcp_python())
        .arg(mcp_client())
        .args(["http", &url, "test-token-123"])
        .arg(json!([["read_file", {"path": "README.md"}]]).to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "still serving: {}", show(&out));
    kill_term(&server);
    let status = server.wait().unwrap();
    let mut rest = String::new();
    let _ = err.read_to_string(&mut rest);
    assert!(status.success(), "{status:?}: {rest}");
    assert_eq!(
        std::fs::read_dir(w.state.join("receipts")).unwrap().count(),
        1
    );
}

/// A raw JSON-RPC client over the server's standard streams.
struct Raw {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Raw {
    fn start(w: &World, remit: &str, extra: &[&str]) -> Raw {
        let mut child = w
            .command()
            .args(["mcp", "--remit"])
            .arg(w.remit(remit))
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut raw = Raw {
            child,
            stdin,
            lines,
        };
        raw.send(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}));
        assert_eq!(raw.answer(0)["result"]["serverInfo"]["name"], "remit");
        raw.line(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        raw
    }

    fn line(&mut self, text: &str) {
        self.stdin.write_all(text.as_bytes()).unwrap();
        self.stdin.write_all(b"\n").unwrap();
        self.stdin.flush().unwrap();
    }

    fn send(&mut self, v: &Value) {
        self.line(&v.to_string());
    }

    fn answer(&mut self, id: i64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no answer to {id}"));
            let v: Value =
                serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
            if v["id"] == id {
                return v;
            }
        }
    }

    /// Whatever the server says within `wait` (its answers to malformed input).
    fn drain(&mut self, wait: Duration) -> Vec<Value> {
        let mut out = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(wait) {
            out.push(serde_json::from_str(&line).unwrap_or(Value::String(line)));
        }
        out
    }

    fn call(&mut self, id: i64, tool: &str, args: Value) -> Value {
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": args}}));
        self.answer(id)
    }

    fn close(self) -> std::process::Output {
        drop(self.stdin);
        self.child.wait_with_output().unwrap()
    }
}

#[test]
fn malformed_messages_get_clear_errors_and_the_server_keeps_serving() {
    let w = World::new();
    workspace(&w);
    let log = w.dir.path().join("log.jsonl");
    let mut raw = Raw::start(&w, REMIT, &["--log", log.to_str().unwrap()]);
    // Not JSON: a Parse error each, with a null id; JSON that is not a message: an
    // Invalid Request error.
    raw.line("this is not json");
    raw.line("{\"no\": \"method\"}");
    raw.line(&"x".repeat(100_000));
    raw.line("\u{0}\u{1}\u{2}");
    raw.line("{\"jsonrpc\": \"2.0\", \"id\": 9, \"method\": \"tools/li");
    // Longer than any message may be: answered once, dropped as it is read, never held.
    raw.line(&"y".repeat(remit_mcp::MAX_LINE + (1 << 20)));
    // Wait (up to a minute) for the six answers expected, then a little longer for any
    // answer too many.
    let mut said = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while said.len() < 6 && Instant::now() < deadline {
        said.extend(raw.drain(Duration::from_millis(200)));
    }
    said.extend(raw.drain(Duration::from_millis(300)));
    assert!(
        said.iter().any(|v| v["error"]["code"] == -32600),
        "no invalid-request error: {said:?}"
    );
    let parse_errors: Vec<&Value> = said
        .iter()
        .filter(|v| v["error"]["code"] == -32700)
        .collect();
    assert_eq!(parse_errors.len(), 5, "{said:?}");
    assert!(
        parse_errors
            .iter()
            .any(|e| e["error"]["message"].as_str().unwrap().contains("at most")),
        "{said:?}"
    );
    for e in parse_errors {
        assert!(e["id"].is_null(), "{e}");
        let message = e["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("Parse error: "), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }
    // Bad arguments: a tool error naming the problem, nothing performed.
    let r = raw.call(1, "read_file", json!({"path": 5}));
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert!(
        r["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("invalid type"),
        "{r}"
    );
    let r = raw.call(2, "exec", json!({"argv": []}));
    assert_eq!(r["result"]["isError"], true, "{r}");
    let r = raw.call(3, "run_code", json!({"code": "let x = ;"}));
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert!(
        r["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("run_code.ts:1:9: syntax error"),
        "{r}"
    );
    let r = raw.call(4, "nope", json!({}));
    assert_eq!(r["error"]["code"], -32602, "{r}");
    raw.send(&json!({"jsonrpc": "2.0", "id": 5, "method": "no/such/method"}));
    assert!(raw.answer(5)["error"].is_object());
    // Still serving.
    let r = raw.call(6, "read_file", json!({"path": "README.md"}));
    assert_eq!(
        r["result"]["structuredContent"]["content"], "# demo\n",
        "{r}"
    );
    let out = raw.close();
    assert!(out.status.success(), "{}", show(&out));
    // Only the good call was decided and performed.
    let events: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let performed = events
        .iter()
        .filter(|e| e["body"]["kind"] == "effect_performed")
        .count();
    let decided: Vec<&Value> = events
        .iter()
        .filter(|e| e["body"]["kind"] == "decision" && e["body"]["effect"]["kind"] == "tool.call")
        .collect();
    assert_eq!(decided.len(), 1, "{decided:?}");
    assert_eq!(performed, 1);
}

#[test]
fn denials_say_what_to_do_and_approvals_are_waited_for_or_pending() {
    let w = World::new();
    workspace(&w);
    std::fs::write(w.ws.join("deploy.sh"), "#!/bin/sh\necho deployed\n").unwrap();
    chmod_x(&w.ws.join("deploy.sh"));
    std::fs::write(
        w.dir.path().join("tools.cedar"),
        r#"
@id("tools.protect-ci")
@reason("this task may not change CI configuration; change the code and tests instead")
forbid (principal, action == Action::"tool_call", resource == Tool::"write_file")
when { context.call.args has path && context.call.args.path like ".github/*" };

@id("tools.deploy")
@approval("tools.deploy")
@reason("running the deploy script needs a human's approval")
forbid (principal, action == Action::"tool_call", resource == Tool::"exec")
when { context.call.args has program && context.call.args.program == "./deploy.sh" }
unless { context.approvals.contains("tools.deploy") };
"#,
    )
    .unwrap();
    let remit = r#"
[agent]
name = "mcp-agent"

[policy]
cedar = ["tools.cedar"]

[commands]
forbid = [["curl"]]

[actions.publish]
approve = true
"#;
    let mut raw = Raw::start(&w, remit, &[]);
    let r = raw.call(
        1,
        "write_file",
        json!({"path": ".github/workflows/ci.yml", "content": "x"}),
    );
    let text = r["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(r["result"]["isError"], true);
    assert!(
        text.contains("may not change CI configuration") && text.contains("`tools.protect-ci`"),
        "{text}"
    );
    assert!(!w.ws.join(".github").exists());
    // The same path spelled otherwise is decided as what would be written.
    for (id, path) in [
        (101, "./.github/workflows/ci.yml"),
        (102, ".github//workflows/./ci.yml"),
    ] {
        let r = raw.call(id, "write_file", json!({"path": path, "content": "x"}));
        assert_eq!(r["result"]["isError"], true, "{path}: {r}");
        assert!(
            r["result"]["content"][0]["text"]
                .as_str()
                .unwrap()
                .contains("`tools.protect-ci`"),
            "{path}: {r}"
        );
    }
    assert!(!w.ws.join(".github").exists());
    // An argument too long to be decided whole is refused, not cut.
    let long = "x".repeat(20_000);
    let r = raw.call(103, "exec", json!({"argv": ["echo", long]}));
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert!(
        r["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("decides on whole arguments"),
        "{r}"
    );
    let r = raw.call(
        2,
        "write_file",
        json!({"path": "src/ok.txt", "content": "fine"}),
    );
    assert_eq!(r["result"]["isError"], false, "{r}");
    // Needs approval: answered at once with the approval to wait for.
    let r = raw.call(3, "exec", json!({"argv": ["./deploy.sh"]}));
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert_eq!(r["result"]["structuredContent"]["code"], "pending");
    let id = r["result"]["structuredContent"]["approval"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        r["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains(&format!("remit approvals approve {id}"))
    );
    w.approve(&id);
    let r = raw.call(4, "exec", json!({"argv": ["./deploy.sh"]}));
    assert_eq!(
        r["result"]["structuredContent"]["stdout"], "deployed\n",
        "{r}"
    );
    // Used once: the next run needs a new approval.
    let r = raw.call(5, "exec", json!({"argv": ["./deploy.sh"]}));
    assert_eq!(r["result"]["structuredContent"]["code"], "pending", "{r}");
    let status = raw.call(6, "task_status", json!({}));
    let denials = status["result"]["structuredContent"]["denials"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        denials.iter().any(|d| d["policy"] == "tools.protect-ci"),
        "{status}"
    );
    // Allowed as tool calls, refused further down: a program the command rules forbid, an
    // action that needs a human.
    let r = raw.call(7, "exec", json!({"argv": ["curl", "https://example.com"]}));
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert_eq!(r["result"]["structuredContent"]["code"], "denied", "{r}");
    assert_eq!(
        r["result"]["structuredContent"]["policy"], "commands.forbid[0]",
        "{r}"
    );
    let r = raw.call(8, "request_action", json!({"kind": "publish"}));
    assert_eq!(r["result"]["structuredContent"]["code"], "pending", "{r}");
    let approval = r["result"]["structuredContent"]["approval"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = raw.close();
    assert!(out.status.success(), "{}", show(&out));
    // The ledger records those calls as failed with their refusal, not as performed.
    let events = ledger(&w);
    let curl = tool_call(&events, "exec", "program", "curl");
    let error = refused_outcome(&events, &curl, "denied");
    assert!(error.ends_with("(policy `commands.forbid[0]`)"), "{error}");
    let publish = tool_call(&events, "request_action", "kind", "publish");
    let error = refused_outcome(&events, &publish, "pending");
    assert!(error.contains(&approval), "{error}");
    // The two approvals nobody answered (the second `./deploy.sh`, the publish) are
    // cancelled when the task ends, the one used is not.
    let requested: Vec<&Value> = events
        .iter()
        .filter(|e| e["body"]["kind"] == "approval_requested")
        .map(|e| &e["body"]["effect"]["id"])
        .collect();
    let cancelled: Vec<&Value> = events
        .iter()
        .filter(|e| e["body"]["kind"] == "approval_cancelled")
        .inspect(|e| assert_eq!(e["body"]["reason"], "the task ended", "{e}"))
        .map(|e| &e["body"]["effect_id"])
        .collect();
    assert_eq!(requested.len(), 3, "{requested:?}");
    assert_eq!(cancelled, requested[1..], "{events:#?}");
    // The call that did its work is performed.
    let ok = tool_call(&events, "write_file", "path", "src/ok.txt");
    let outcomes = outcomes(&events, &ok);
    assert_eq!(outcomes.len(), 1, "{outcomes:#?}");
    assert_eq!(outcomes[0]["body"]["kind"], "effect_performed");
}

#[test]
fn an_approval_can_be_waited_for() {
    let w = World::new();
    workspace(&w);
    // The remit says how long a call waits for a human (no `--approval-wait`).
    let remit = "[approvals]\ntimeout = \"2m\"\nwait = \"60s\"\n\n[actions.publish]\nargs = [\"tag\"]\nrun = [\"touch\", \"published-{tag}\"]\napprove = true\n";
    let mut raw = Raw::start(&w, remit, &[]);
    raw.send(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "request_action", "arguments": {"kind": "publish", "args": {"tag": "v2"}}}}));
    let id = w.approval_where(&[], |a| a["kind"] == "publish")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    w.approve(&id);
    let r = raw.answer(1);
    assert_eq!(
        r["result"]["structuredContent"]["status"], "performed",
        "{r}"
    );
    assert!(w.ws.join("published-v2").exists());
    raw.close();
}

/// Over MCP, a push goes where the remit allows (a `remit/*` branch) and not to `main`, and a
/// fetch reaches an allowed host: the tools work, not only their refusals.
#[test]
fn pushes_and_fetches_work_where_the_remit_allows() {
    let w = World::new();
    let (git_server, repos, main_before) = cloned_origin(&w);
    let echo = Server::echo();
    let remit = format!(
        r#"
[agent]
name = "mcp-agent"

[network]
allow = ["127.0.0.2:{}", "127.0.0.2:{}"]
private = ["127.0.0.2"]

[network.git]
push = ["refs/heads/remit/*"]
"#,
        git_server.port, echo.port
    );
    let mut raw = Raw::start(&w, &remit, &[]);
    let r = raw.call(
        1,
        "write_file",
        json!({"path": "CHANGELOG.md", "content": "- changed\n"}),
    );
    assert_eq!(r["result"]["isError"], false, "{r}");
    let r = raw.call(2, "git_commit", json!({"message": "add a changelog"}));
    let commit = r["result"]["structuredContent"]["commit"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_owned();
    let r = raw.call(3, "git_push", json!({"branch": "main"}));
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert_eq!(r["result"]["structuredContent"]["code"], "denied", "{r}");
    let r = raw.call(4, "git_push", json!({"branch": "remit/changelog"}));
    assert_eq!(r["result"]["isError"], false, "{r}");
    let r = raw.call(
        5,
        "http_fetch",
        json!({"url": format!("http://127.0.0.2:{}/hello", echo.port)}),
    );
    assert_eq!(r["result"]["isError"], false, "{r}");
    assert_eq!(r["result"]["structuredContent"]["status"], 200, "{r}");
    let out = raw.close();
    assert!(out.status.success(), "{}", show(&out));

    let bare = repos.join("origin.git");
    assert_eq!(
        git(&bare, &["rev-parse", "refs/heads/remit/changelog"]),
        commit
    );
    assert_eq!(git(&bare, &["rev-parse", "refs/heads/main"]), main_before);
    assert_eq!(echo.seen.lock().unwrap().len(), 1);
}

/// A script cannot hold anything past its end: a call it left running is cancelled, and the
/// next script starts from a fresh isolate in which nothing of the first remains.
#[test]
fn nothing_a_script_holds_outlives_it() {
    let w = World::new();
    workspace(&w);
    let log = w.dir.path().join("log.jsonl");
    let mut raw = Raw::start(&w, REMIT, &["--log", log.to_str().unwrap()]);
    let r = raw.call(
        1,
        "run_code",
        json!({"code": "globalThis.kept = remit.exec(['sh', '-c', 'sleep 3.14159; touch late.txt']); (globalThis as any).fs = remit.fs; return 'left';"}),
    );
    assert_eq!(r["result"]["structuredContent"]["result"], "left", "{r}");
    let r = raw.call(
        2,
        "run_code",
        json!({"code": "return [typeof (globalThis as any).kept, typeof (globalThis as any).fs];"}),
    );
    assert_eq!(
        r["result"]["structuredContent"]["result"],
        json!(["undefined", "undefined"]),
        "{r}"
    );
    // Nothing of the abandoned program is running once the next script has answered.
    let running = std::process::Command::new("pgrep")
        .args(["-f", "sleep 3.14159"])
        .output()
        .unwrap();
    assert!(
        running.stdout.is_empty(),
        "the abandoned program ran on after its script: {}",
        String::from_utf8_lossy(&running.stdout)
    );
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        !w.ws.join("late.txt").exists(),
        "the abandoned program ran on after its script"
    );
    let out = raw.close();
    assert!(out.status.success(), "{}", show(&out));
    // Every effect started has exactly one outcome; the abandoned call, if it got as far
    // as starting, is recorded as failed, never as performed.
    let events: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for started in events
        .iter()
        .filter(|e| e["body"]["kind"] == "effect_started")
    {
        let id = started["body"]["effect"]["id"].as_str().unwrap();
        let found = outcomes(&events, id);
        assert_eq!(found.len(), 1, "{started}: {found:?}");
        if started["body"]["effect"]["attributes"]["arg.argv"]
            == "sh -c sleep 3.14159; touch late.txt"
        {
            assert_eq!(found[0]["body"]["kind"], "effect_failed", "{found:?}");
        }
    }
}

/// The task's own secrets are redacted from what a tool returns, not only what the scanner
/// recognises: its identity token, base64-encoded, never reaches the MCP client.
#[test]
fn the_tasks_own_secrets_never_reach_the_client() {
    let w = World::new();
    workspace(&w);
    std::fs::write(w.ws.join("plain.txt"), "nothing secret here\n").unwrap();
    let mut raw = Raw::start(&w, REMIT, &[]);
    let r = raw.call(
        1,
        "exec",
        json!({"argv": ["sh", "-c", "base64 -w0 \"$REMIT_IDENTITY_TOKEN_FILE\"; echo; cat \"$REMIT_IDENTITY_TOKEN_FILE\""]}),
    );
    let stdout = r["result"]["structuredContent"]["stdout"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(stdout.contains("[REDACTED"), "{r}");
    // `eyJ` starts every token, `ZXlK` its base64.
    assert!(
        !stdout.contains("eyJ") && !stdout.contains("ZXlK"),
        "the token or its base64 left the task: {stdout}"
    );
    // The harmless twin: ordinary output comes back as it was.
    let r = raw.call(2, "exec", json!({"argv": ["base64", "-w0", "plain.txt"]}));
    assert_eq!(
        r["result"]["structuredContent"]["stdout"], "bm90aGluZyBzZWNyZXQgaGVyZQo=",
        "{r}"
    );
}

/// A client that floods the server with calls holds at most `MAX_CALLS_IN_FLIGHT` (64) of
/// them in the supervisor at once: the rest are answered at once with a `limit` error, and
/// once the calls in flight are done, the next call is served.
#[test]
fn a_flood_of_calls_is_bounded() {
    let w = World::new();
    workspace(&w);
    let mut raw = Raw::start(&w, REMIT, &[]);
    for id in 1..=80 {
        raw.send(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "exec", "arguments": {"argv": ["sleep", "3"]}}}));
    }
    let mut answers: Vec<Value> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while answers.len() < 80 {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = raw
            .lines
            .recv_timeout(left)
            .expect("an answer to every call");
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["id"].as_i64().is_some_and(|id| (1..=80).contains(&id)) {
            answers.push(v);
        }
    }
    let limited = answers
        .iter()
        .filter(|a| {
            a["result"]["isError"] == true
                && a["result"]["structuredContent"]["code"] == "limit"
                && a["result"]["content"][0]["text"]
                    .as_str()
                    .unwrap_or("")
                    .contains("already in flight")
        })
        .count();
    let served = answers
        .iter()
        .filter(|a| a["result"]["isError"] == false)
        .count();
    assert_eq!(served, 64, "{answers:?}");
    assert_eq!(limited, 16, "{answers:?}");
    // The twin: with the flood over, a call is served.
    let r = raw.call(100, "exec", json!({"argv": ["echo", "after"]}));
    assert_eq!(r["result"]["isError"], false, "{r}");
    let out = raw.close();
    assert!(out.status.success(), "{}", show(&out));
}
