//! Identities, the vault and the agents inventory through the real binary: `remit secret`,
//! `remit identity`, `remit keys`, `remit agent`. Secret values never appear in output or
//! in the state directory.

use std::io::Write;
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use remit_identity::{Identity, SystemClock, TaskIdentityRequest};
use remit_vault::{Broker, LeaseSpec, MemoryRecorder, TaskRef, Vault};

use crate::support::{World, ok, show, stderr, stdout};

fn remit(w: &World, args: &[&str]) -> Output {
    w.command().args(args).output().unwrap()
}

fn remit_with_stdin(w: &World, args: &[&str], input: &[u8]) -> Output {
    let mut child = w
        .command()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn mint(w: &World, agent: &str, task: &str) -> String {
    let identity = Identity::open_home(&w.state, Arc::new(SystemClock)).unwrap();
    identity
        .mint(&TaskIdentityRequest {
            agent,
            task,
            owner: "alice@example.com",
            requester: "alice",
            remit_hash: "sha256:00",
            audience: &[],
            lifetime: Duration::from_secs(600),
        })
        .unwrap()
        .expose()
        .to_owned()
}

fn files_contain(w: &World, needle: &[u8]) -> Option<String> {
    let mut stack = vec![w.state.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p)
                && bytes.windows(needle.len()).any(|x| x == needle)
            {
                return Some(p.display().to_string());
            }
        }
    }
    None
}

#[test]
fn secrets_are_stored_sealed_and_never_printed() {
    let w = World::new();
    let value = b"sk-ant-api03-CLItestVALUE0123456789";
    let out = remit_with_stdin(
        &w,
        &["secret", "set", "anthropic"],
        &[value.as_slice(), b"\n"].concat(),
    );
    assert!(ok(&out).contains("secret anthropic stored (version 1)"));
    let file = w.dir.path().join("v2");
    std::fs::write(&file, b"sk-ant-api03-CLItestVALUE9876543210\n").unwrap();
    let out = remit(
        &w,
        &[
            "secret",
            "rotate",
            "anthropic",
            "--from-file",
            file.to_str().unwrap(),
        ],
    );
    assert!(ok(&out).contains("version 2"));
    let out = remit(&w, &["secret", "list"]);
    assert!(
        ok(&out).starts_with("anthropic  v2  updated "),
        "{}",
        show(&out)
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&remit(&w, &["secret", "list", "--json"]))).unwrap();
    assert_eq!(json[0]["name"], "anthropic");
    // The value is in the vault (the library reads it) and nowhere in clear.
    let vault = Vault::open_home(&w.state, Arc::new(SystemClock)).unwrap();
    assert_eq!(
        vault.get("anthropic").unwrap().expose(),
        b"sk-ant-api03-CLItestVALUE9876543210"
    );
    for v in [value.as_slice(), b"sk-ant-api03-CLItestVALUE9876543210"] {
        assert_eq!(files_contain(&w, v), None);
    }
    // Refusals: a value from a terminal or an argument is never taken; bad names.
    let out = remit(&w, &["secret", "set", "bad name"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let out = remit(&w, &["secret", "rm", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no secret `nope`"), "{}", show(&out));
    assert!(ok(&remit(&w, &["secret", "rm", "anthropic"])).contains("removed"));
    assert_eq!(ok(&remit(&w, &["secret", "list"])).trim(), "no secrets");
}

#[test]
fn tokens_verify_until_their_task_is_revoked_and_across_rotation() {
    let w = World::new();
    let token = mint(&w, "ci-fixer", "T1");
    let out = remit(&w, &["identity", "verify", &token]);
    assert!(
        ok(&out).starts_with("valid: spiffe://remit.local/agent/ci-fixer/task/T1"),
        "{}",
        show(&out)
    );
    let out = remit_with_stdin(&w, &["identity", "verify", "-", "--json"], token.as_bytes());
    let claims: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(claims["task"], "T1");
    assert!(!stderr(&out).contains(&token));

    // A wrong token: exit 1, the reason on stderr.
    // One character in the middle of the signature changed: it still decodes, and no
    // longer verifies.
    let mut forged = token.clone().into_bytes();
    let at = forged.len() - 10;
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let out = remit(&w, &["identity", "verify", &forged]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stderr(&out).contains("token refused"), "{}", show(&out));

    // JWKS and discovery for third parties.
    let jwks = ok(&remit(&w, &["identity", "jwks"]));
    let jwks_json: serde_json::Value = serde_json::from_str(&jwks).unwrap();
    assert_eq!(jwks_json["keys"].as_array().unwrap().len(), 1);
    assert!(!jwks.contains("\"d\""), "no private part");
    let discovery: serde_json::Value =
        serde_json::from_str(&ok(&remit(&w, &["identity", "discovery"]))).unwrap();
    assert_eq!(discovery["issuer"], "https://remit.local");

    // Rotation: the old token still verifies, new ones use the new key.
    let out = ok(&remit(&w, &["keys", "rotate"]));
    assert!(out.contains("retired key"), "{out}");
    ok(&remit(&w, &["identity", "verify", &token]));
    let keys = ok(&remit(&w, &["keys", "list"]));
    assert_eq!(keys.lines().count(), 2, "{keys}");
    let jwks_file = w.dir.path().join("jwks.json");
    std::fs::write(&jwks_file, ok(&remit(&w, &["identity", "jwks"]))).unwrap();

    // The task is killed: remit refuses its token; a third party with the JWKS does not
    // know until it expires.
    Identity::open_home(&w.state, Arc::new(SystemClock))
        .unwrap()
        .revoke_task("T1", "killed")
        .unwrap();
    let out = remit(&w, &["identity", "verify", &token]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("was revoked (killed)"),
        "{}",
        show(&out)
    );
    let out = remit(
        &w,
        &[
            "identity",
            "verify",
            &token,
            "--jwks",
            jwks_file.to_str().unwrap(),
        ],
    );
    ok(&out);
}

#[test]
fn the_inventory_and_its_kill_switch() {
    let w = World::new();
    let out = remit(
        &w,
        &[
            "agent",
            "add",
            "ci-fixer",
            "--owner",
            "alice@example.com",
            "--purpose",
            "fix CI",
            "--risk",
            "medium",
        ],
    );
    assert!(
        ok(&out).contains("registered, owned by alice@example.com"),
        "{}",
        show(&out)
    );
    assert_eq!(
        remit(&w, &["agent", "add", "ci-fixer", "--owner", "bob"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        remit(&w, &["agent", "add", "other"]).status.code(),
        Some(2),
        "owner is required"
    );

    // What the agent holds: a lease and a token of a task.
    let vault = Arc::new(Vault::open_home(&w.state, Arc::new(SystemClock)).unwrap());
    let broker = Broker::new(vault, Arc::new(MemoryRecorder::default()));
    let lease = broker
        .issue(
            &TaskRef {
                task: "T1".into(),
                agent: "ci-fixer".into(),
            },
            &LeaseSpec {
                name: "widgets".into(),
                backend: "git".into(),
                scope: serde_json::json!({ "repository": "https://git.internal/a/b", "push": [] }),
                destination: None,
                delivery: remit_vault::Delivery::Env,
                ttl: Duration::from_secs(600),
            },
        )
        .unwrap();
    let token = mint(&w, "ci-fixer", "T1");
    let shown: serde_json::Value =
        serde_json::from_str(&ok(&remit(&w, &["agent", "show", "ci-fixer", "--json"]))).unwrap();
    assert_eq!(shown["owner"], "alice@example.com");
    assert_eq!(shown["risk"], "medium");
    assert_eq!(shown["status"], "active");
    assert_eq!(shown["live_leases"][0]["id"], lease.lease.id.as_str());
    assert_eq!(shown["tokens_outstanding"], 1);
    let list = ok(&remit(&w, &["agent", "list"]));
    assert!(
        list.contains(
            "ci-fixer  active  owner alice@example.com  risk medium  0 running  1 leases  1 tokens"
        ),
        "{list}"
    );

    // Suspension takes everything at once.
    let out = remit(
        &w,
        &["agent", "suspend", "ci-fixer", "--reason", "investigating"],
    );
    assert!(
        ok(&out).contains("0 running tasks killed; 1 lease revoked; 1 task's tokens revoked"),
        "{}",
        show(&out)
    );
    let out = remit(&w, &["identity", "verify", &token]);
    assert_eq!(out.status.code(), Some(1));
    let shown: serde_json::Value =
        serde_json::from_str(&ok(&remit(&w, &["agent", "show", "ci-fixer", "--json"]))).unwrap();
    assert_eq!(shown["status"], "suspended");
    assert_eq!(shown["status_reason"], "investigating");
    assert_eq!(shown["live_leases"].as_array().unwrap().len(), 0);
    assert_eq!(shown["tokens_outstanding"], 0);
    // The revocation is in the ledger.
    let events = ok(&remit(&w, &["ledger", "show", "--json"]));
    assert!(events.contains("agent_suspended"), "{events}");

    // A suspended agent cannot start a task.
    let out = w.run(
        Some("[agent]\nname = \"ci-fixer\"\n"),
        "echo should-not-run",
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stderr(&out).contains("suspended"), "{}", show(&out));
    assert!(!stdout(&out).contains("should-not-run"));

    ok(&remit(&w, &["agent", "resume", "ci-fixer"]));
    ok(&remit(
        &w,
        &["agent", "revoke", "ci-fixer", "--reason", "offboarded"],
    ));
    let out = remit(&w, &["agent", "resume", "ci-fixer"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr(&out).contains("cannot be resumed"));
    let out = remit(&w, &["agent", "show", "nobody"]);
    assert_eq!(out.status.code(), Some(2));
}

/// A suspension goes on past a step that fails: with the home's ledger unreadable, the
/// agent's leases cannot be revoked (and that is said), but its tokens are revoked all the
/// same and the command fails.
#[test]
fn a_suspension_goes_on_past_a_step_that_fails() {
    let w = World::new();
    ok(&remit(
        &w,
        &["agent", "add", "ci-fixer", "--owner", "alice@example.com"],
    ));
    let token = mint(&w, "ci-fixer", "T1");
    ok(&remit(&w, &["identity", "verify", &token]));
    for name in ["ledger.db-wal", "ledger.db-shm"] {
        let _ = std::fs::remove_file(w.state.join(name));
    }
    std::fs::write(
        w.state.join("ledger.db"),
        b"not a database, and long enough to say so",
    )
    .unwrap();

    let out = remit(
        &w,
        &["agent", "suspend", "ci-fixer", "--reason", "investigating"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        stderr(&out).contains("leases not revoked, the ledger did not open"),
        "{}",
        show(&out)
    );
    assert!(
        stdout(&out).contains("1 task's tokens revoked"),
        "{}",
        show(&out)
    );
    let out = remit(&w, &["identity", "verify", &token]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
}

/// Every event of the home's ledger, parsed.
fn events(w: &World) -> Vec<serde_json::Value> {
    ok(&remit(w, &["ledger", "show", "--json"]))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn of_kind<'a>(events: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    events
        .iter()
        .filter(|e| e["body"]["kind"] == kind)
        .collect()
}

const GIT_GRANT: &str = r#"
[credentials.git.widgets]
repository = "https://git.example.test/acme/widgets.git"
push = ["refs/heads/remit/*"]
"#;

/// A task runs with a token that names it and a leased credential; both work while it
/// runs and are dead once it ends; what it changed in the workspace is recorded.
#[test]
fn a_task_gets_its_own_identity_and_leases_that_die_with_it() {
    let w = World::new();
    let out = w.run(
        Some(GIT_GRANT),
        r#"set -e
test "$(stat -c %a "$REMIT_IDENTITY_TOKEN_FILE")" = 600
cp "$REMIT_IDENTITY_TOKEN_FILE" token.jwt
printf %s "$REMIT_SPIFFE_ID" > spiffe.txt
printf %s "$WIDGETS_GIT_TOKEN" > git.tok
# The token is redacted from what the task prints.
cat "$REMIT_IDENTITY_TOKEN_FILE"; echo
echo done"#,
    );
    let printed = ok(&out);
    let token = std::fs::read_to_string(w.ws.join("token.jwt")).unwrap();
    let spiffe = std::fs::read_to_string(w.ws.join("spiffe.txt")).unwrap();
    let git_token = std::fs::read_to_string(w.ws.join("git.tok")).unwrap();
    assert!(token.starts_with("eyJ"), "{token}");
    assert!(!printed.contains(&token), "{printed}");
    assert!(printed.contains("[REDACTED:known-secret]"), "{printed}");
    assert!(git_token.starts_with("rgt_"), "{git_token}");

    // Offline, with the published keys, the token names this task.
    let jwks_file = w.dir.path().join("jwks.json");
    std::fs::write(&jwks_file, ok(&remit(&w, &["identity", "jwks"]))).unwrap();
    let offline = remit_with_stdin(
        &w,
        &[
            "identity",
            "verify",
            "-",
            "--json",
            "--jwks",
            jwks_file.to_str().unwrap(),
        ],
        token.as_bytes(),
    );
    let claims: serde_json::Value = serde_json::from_str(&ok(&offline)).unwrap();
    let task = claims["task"].as_str().unwrap().to_owned();
    assert_eq!(claims["sub"], spiffe, "{claims}");
    assert!(spiffe.ends_with(&format!("/task/{task}")), "{spiffe}");
    // Online, remit knows the task ended.
    let online = remit_with_stdin(&w, &["identity", "verify", "-"], token.as_bytes());
    assert_eq!(online.status.code(), Some(1), "{}", show(&online));
    assert!(stderr(&online).contains("revoked"), "{}", show(&online));

    // The git token was good for this repository only while the task ran.
    let vault = Arc::new(Vault::open_home(&w.state, Arc::new(SystemClock)).unwrap());
    let verifier = remit_vault::backend::git::GitTokenVerifier::new(vault);
    let refused = verifier
        .verify(
            &git_token,
            "https://git.example.test/acme/widgets.git",
            remit_vault::backend::git::GitAccess::Fetch,
        )
        .unwrap_err()
        .to_string();
    assert!(refused.contains("task_end"), "{refused}");

    // The ledger: issued, revoked at the end, the lease among the reachable secrets, and the
    // workspace changes.
    let all = events(&w);
    let text = serde_json::to_string(&all).unwrap();
    assert!(!text.contains(&token), "the token is never recorded");
    assert!(
        !text.contains(&git_token),
        "the git token is never recorded"
    );
    let issued = of_kind(&all, "credential_issued");
    assert_eq!(issued.len(), 1, "{text}");
    // No wall-clock limit and no agent TTL: the lease lives an hour, as documented.
    let at = |v: &serde_json::Value| humantime::parse_rfc3339_weak(v.as_str().unwrap()).unwrap();
    let life = at(&issued[0]["body"]["expires"])
        .duration_since(at(&issued[0]["time"]))
        .unwrap();
    assert!(
        life <= std::time::Duration::from_secs(3600) && life > std::time::Duration::from_secs(3500),
        "{life:?}"
    );
    let revoked = of_kind(&all, "credential_revoked");
    assert_eq!(revoked.len(), 1, "{text}");
    let revoked = serde_json::to_string(revoked[0]).unwrap();
    assert!(revoked.contains("task_end"), "{revoked}");
    let authorized = serde_json::to_string(of_kind(&all, "run_authorized")[0]).unwrap();
    assert!(authorized.contains("lease:git"), "{authorized}");
    assert!(authorized.contains(&spiffe), "{authorized}");
    let changes = serde_json::to_string(of_kind(&all, "file_changes")[0]).unwrap();
    for path in ["token.jwt", "spiffe.txt", "git.tok"] {
        assert!(changes.contains(path), "{changes}");
    }
}

/// A supervisor killed outright leaves its leases open; the next one to start revokes them
/// before doing anything else.
#[test]
fn leases_of_a_crashed_supervisor_are_revoked_by_the_next() {
    let w = World::new();
    let (mut child, _stdout) = w.start(
        Some(GIT_GRANT),
        "printf %s \"$WIDGETS_GIT_TOKEN\" > git.tok; echo ready; sleep 60",
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let git_token = std::fs::read_to_string(w.ws.join("git.tok")).unwrap();
    let vault = Arc::new(Vault::open_home(&w.state, Arc::new(SystemClock)).unwrap());
    let verifier = remit_vault::backend::git::GitTokenVerifier::new(Arc::clone(&vault));
    let repo = "https://git.example.test/acme/widgets.git";
    let fetch = remit_vault::backend::git::GitAccess::Fetch;
    verifier
        .verify(&git_token, repo, fetch)
        .expect("still open: its supervisor died before revoking it");

    ok(&w.run(None, "true"));
    let refused = verifier
        .verify(&git_token, repo, fetch)
        .unwrap_err()
        .to_string();
    assert!(refused.contains("recovered_after_crash"), "{refused}");
}

/// Start `remit run` with `remit_text` running `script`; wait for its first line.
fn start_task(w: &World, remit_text: &str, script: &str) -> (std::process::Child, String) {
    let (child, _stdout) = w.start(Some(remit_text), script);
    let list: Vec<serde_json::Value> =
        serde_json::from_str(&ok(&remit(w, &["task", "list", "--json"]))).unwrap();
    let task = list[0]["task"].as_str().unwrap().to_owned();
    (child, task)
}

fn git_verdict(w: &World, token: &str) -> Result<(), String> {
    let vault = Arc::new(Vault::open_home(&w.state, Arc::new(SystemClock)).unwrap());
    remit_vault::backend::git::GitTokenVerifier::new(vault)
        .verify(
            token,
            "https://git.example.test/acme/widgets.git",
            remit_vault::backend::git::GitAccess::Fetch,
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// `remit task kill` takes the task's leases and token with it, at once.
#[test]
fn killing_a_task_revokes_its_leases_and_token() {
    let w = World::new();
    let (child, task) = start_task(
        &w,
        GIT_GRANT,
        "printf %s \"$WIDGETS_GIT_TOKEN\" > git.tok; cp \"$REMIT_IDENTITY_TOKEN_FILE\" token.jwt; echo ready; sleep 60",
    );
    let git_token = std::fs::read_to_string(w.ws.join("git.tok")).unwrap();
    let token = std::fs::read_to_string(w.ws.join("token.jwt")).unwrap();
    git_verdict(&w, &git_token).expect("valid while the task runs");
    ok(&remit_with_stdin(
        &w,
        &["identity", "verify", "-"],
        token.as_bytes(),
    ));

    ok(&remit(&w, &["task", "kill", &task, "--reason", "runaway"]));
    let out = child.wait_with_output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    let refused = git_verdict(&w, &git_token).unwrap_err();
    assert!(refused.contains("killed"), "{refused}");
    let online = remit_with_stdin(&w, &["identity", "verify", "-"], token.as_bytes());
    assert_eq!(online.status.code(), Some(1), "{}", show(&online));
    let all = events(&w);
    let revoked = serde_json::to_string(&of_kind(&all, "credential_revoked")).unwrap();
    assert!(revoked.contains("\"killed\""), "{revoked}");
}

/// A lease ends at its TTL while its task still runs.
#[test]
fn a_lease_ends_at_its_ttl_while_the_task_runs() {
    let w = World::new();
    let (child, _task) = start_task(
        &w,
        &format!("[credentials]\nttl = \"2s\"\n{GIT_GRANT}"),
        "printf %s \"$WIDGETS_GIT_TOKEN\" > git.tok; echo ready; sleep 60",
    );
    let git_token = std::fs::read_to_string(w.ws.join("git.tok")).unwrap();
    git_verdict(&w, &git_token).expect("valid before its TTL");
    let started = std::time::Instant::now();
    let refused = loop {
        match git_verdict(&w, &git_token) {
            Err(why) => break why,
            Ok(()) => {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "the lease outlived its TTL"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    assert!(refused.contains("expired"), "{refused}");
    // The task itself runs on.
    let list = ok(&remit(&w, &["task", "list", "--json"]));
    assert!(list.contains("\"task\""), "{list}");
    kill_child(child);
    let all = events(&w);
    let revoked = serde_json::to_string(&of_kind(&all, "credential_revoked")).unwrap();
    assert!(revoked.contains("\"expired\""), "{revoked}");
}

fn kill_child(mut child: std::process::Child) {
    let pid = child.id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    let _ = child.wait();
}

/// A vault secret injected by the egress proxy into a `remit run` task: the origin gets the
/// real value, the task only a phantom; once the lease's TTL passes, the proxy refuses to
/// inject it and says why.
#[test]
fn a_vault_secret_is_injected_until_its_lease_expires() {
    let w = World::new();
    let real = "sk-vault-value-0123456789abcdef";
    ok(&remit_with_stdin(
        &w,
        &["secret", "set", "echo-key"],
        format!("{real}\n").as_bytes(),
    ));
    let server = crate::code_support::Server::echo();
    let port = server.port;
    let remit_text = format!(
        r#"
[credentials]
ttl = "3s"

[network]
allow = ["127.0.0.2:{port}"]
private = ["127.0.0.2"]

[[network.credential]]
name = "echo"
env = "ECHO_KEY"
from = {{ vault = "echo-key" }}
inject = {{ hosts = ["127.0.0.2:{port}"], header = "x-api-key" }}
"#
    );
    let (child, _task) = start_task(
        &w,
        &remit_text,
        &format!(
            r#"printf %s "$ECHO_KEY" > phantom.txt
curl -sS -H "x-api-key: $ECHO_KEY" -o first.txt -w '%{{http_code}}' http://127.0.0.2:{port}/one > first.code
echo ready
sleep 4
curl -sS -H "x-api-key: $ECHO_KEY" -o second.txt -w '%{{http_code}}' http://127.0.0.2:{port}/two > second.code
touch done
sleep 60"#
        ),
    );
    let started = std::time::Instant::now();
    while !w.ws.join("done").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no second request"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    kill_child(child);
    let read = |f: &str| std::fs::read_to_string(w.ws.join(f)).unwrap();
    let phantom = read("phantom.txt");
    assert!(!phantom.is_empty() && phantom != real, "{phantom}");
    assert_eq!(read("first.code"), "200", "{}", read("first.txt"));
    let seen = server.seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "the second request never reached the origin");
    assert_eq!(seen[0].header("x-api-key"), Some(real));
    assert_eq!(read("second.code"), "403");
    let refusal = read("second.txt");
    assert!(refusal.contains("expired"), "{refusal}");
    assert!(files_contain(&w, real.as_bytes()).is_none());
}

/// A git lease's token travels through the egress proxy to its repository's host only, and
/// the task's output never shows it.
#[test]
fn a_git_token_goes_to_its_repository_host_only() {
    let w = World::new();
    let server = crate::code_support::Server::echo();
    let port = server.port;
    let remit_text = format!(
        r#"
[network]
allow = ["127.0.0.2:{port}", "127.0.0.3:{port}"]
private = ["127.0.0.2", "127.0.0.3"]

[credentials.git.widgets]
repository = "http://127.0.0.2:{port}/acme/widgets.git"
"#
    );
    let out = w.run(
        Some(&remit_text),
        &format!(
            r#"printf %s "$WIDGETS_GIT_TOKEN" > git.tok
curl -sS -H "authorization: Bearer $WIDGETS_GIT_TOKEN" -o /dev/null -w '%{{http_code}}\n' http://127.0.0.2:{port}/acme/widgets.git/info/refs
curl -sS -H "authorization: Bearer $WIDGETS_GIT_TOKEN" -w '\n%{{http_code}}\n' http://127.0.0.3:{port}/steal
echo "token: $WIDGETS_GIT_TOKEN""#
        ),
    );
    let printed = ok(&out);
    let token = std::fs::read_to_string(w.ws.join("git.tok")).unwrap();
    assert!(token.starts_with("rgt_"), "{token}");
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines[0], "200", "{printed}");
    assert!(printed.contains("\n403\n"), "{printed}");
    assert!(
        printed.contains("may be sent only to `127.0.0.2"),
        "{printed}"
    );
    assert!(!printed.contains(&token), "{printed}");
    assert!(
        printed.contains("token: [REDACTED:known-secret]"),
        "{printed}"
    );
    let seen = server.seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {token}").as_str())
    );
}

/// A PostgreSQL role made for the task: reachable from inside it through the server's socket
/// directory (granted by the remit), able to read what the grant names, dropped at the end.
#[test]
fn a_postgres_role_is_made_for_the_task_and_dropped_after() {
    let pg = remit_ledger::testing::TempPostgres::start().unwrap();
    let admin = pg.create_database("analytics").unwrap();
    pg.psql_in(
        "analytics",
        "CREATE TABLE figures (x int); INSERT INTO figures VALUES (42); REVOKE CONNECT ON DATABASE analytics FROM PUBLIC",
    )
    .unwrap();
    let w = World::new();
    ok(&remit_with_stdin(
        &w,
        &["secret", "set", "pg-admin"],
        admin.as_bytes(),
    ));
    let socket = pg.socket_dir().display().to_string();
    // The socket directory is named once, in the grant; remit makes it reachable.
    let remit_text = format!(
        r#"
[credentials.postgres.analytics]
admin = "pg-admin"
host = "{socket}"
"#
    );
    let psql = remit_ledger::testing::TempPostgres::find_bin()
        .unwrap()
        .join("psql");
    let out = w.run(
        Some(&remit_text),
        &format!(
            r#"{psql} "$ANALYTICS_DATABASE_URL" -X -A -t -c 'SELECT x FROM figures'
{psql} "$ANALYTICS_DATABASE_URL" -X -A -t -c 'CREATE TABLE mine (y int)' 2>&1 | head -1
{psql} "$ANALYTICS_DATABASE_URL" -X -A -t -c 'SELECT current_user' > role.txt"#,
            psql = psql.display()
        ),
    );
    let printed = ok(&out);
    assert!(printed.starts_with("42\n"), "{}", show(&out));
    assert!(printed.contains("permission denied"), "{}", show(&out));
    let role = std::fs::read_to_string(w.ws.join("role.txt")).unwrap();
    let role = role.trim();
    assert!(role.starts_with("remit_"), "{role}");
    // Gone with the task.
    let left = pg
        .psql(&format!(
            "SELECT count(*) FROM pg_roles WHERE rolname = '{role}'"
        ))
        .unwrap();
    assert_eq!(left.trim(), "0", "the role outlived its task");
}

/// The egress proxy's git inspection accepts a git lease's token for its repository and the
/// refs it names, and refuses it for other refs and other repositories, before anything of
/// the request leaves.
#[test]
fn the_git_inspection_holds_a_git_token_to_its_scope() {
    let w = World::new();
    let (server, repos, main_before) = crate::code_support::cloned_origin(&w);
    crate::code_support::git(&repos, &["init", "-q", "--bare", "other.git"]);
    let port = server.port;
    let remit_text = format!(
        r#"
[network]
allow = ["127.0.0.2:{port}"]
private = ["127.0.0.2"]

[network.git]
push = ["refs/heads/*"]

[credentials.git.origin]
repository = "http://127.0.0.2:{port}/origin.git"
push = ["refs/heads/remit/*"]
"#
    );
    let out = w.run(
        Some(&remit_text),
        &format!(
            r#"auth="http.extraHeader=Authorization: Bearer $ORIGIN_GIT_TOKEN"
git -c user.name=t -c user.email=t@t commit -q --allow-empty -m work
git -c "$auth" push -q origin HEAD:refs/heads/remit/work 2>&1 && echo branch=ok
git -c "$auth" push -q origin HEAD:refs/heads/main 2>&1; echo main=$?
git -c "$auth" ls-remote http://127.0.0.2:{port}/other.git 2>&1; echo other=$?"#
        ),
    );
    let printed = ok(&out);
    assert!(printed.contains("branch=ok"), "{}", show(&out));
    assert!(!printed.contains("main=0"), "{}", show(&out));
    assert!(!printed.contains("other=0"), "{}", show(&out));
    let bare = repos.join("origin.git");
    assert_eq!(
        crate::code_support::git(&bare, &["rev-parse", "refs/heads/main"]),
        main_before
    );
    assert!(!crate::code_support::git(&bare, &["rev-parse", "refs/heads/remit/work"]).is_empty());
    // The refusals are recorded as violations.
    let all = events(&w);
    let violations = serde_json::to_string(&of_kind(&all, "violation")).unwrap();
    assert!(violations.contains("credentials.git"), "{violations}");
    assert!(violations.contains("other"), "{violations}");
    assert!(violations.contains("refs/heads/main"), "{violations}");
}

/// A role the supervisor cannot drop (PostgreSQL unreachable when the task ends) is kept open
/// and reported: in the ledger, and by `remit doctor`, which fails until it is gone.
#[test]
fn a_lease_that_cannot_be_revoked_is_reported_not_dropped() {
    let pg = remit_ledger::testing::TempPostgres::start().unwrap();
    let admin = pg.create_database("stuck").unwrap();
    let w = World::new();
    ok(&remit_with_stdin(
        &w,
        &["secret", "set", "pg-admin"],
        admin.as_bytes(),
    ));
    let socket = pg.socket_dir().display().to_string();
    let (child, _task) = start_task(
        &w,
        &format!("[credentials.postgres.db]\nadmin = \"pg-admin\"\nhost = \"{socket}\"\n"),
        "echo ready; while [ ! -f go ]; do sleep 0.05; done",
    );
    // The server goes away before the task ends.
    drop(pg);
    std::fs::write(w.ws.join("go"), "").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    let doctor = w.command().args(["doctor"]).output().unwrap();
    assert_eq!(doctor.status.code(), Some(1), "{}", show(&doctor));
    assert!(
        stderr(&doctor).contains("is still open"),
        "{}",
        show(&doctor)
    );
    let all = events(&w);
    let violations = serde_json::to_string(&of_kind(&all, "violation")).unwrap();
    assert!(
        violations.contains("credential_revocation_failed"),
        "{violations}"
    );
    assert!(of_kind(&all, "credential_revoked").is_empty());
}
