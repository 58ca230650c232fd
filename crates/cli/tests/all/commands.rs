//! Command rules hold however a command is spelled, every start is recorded, and a refusal
//! tells the agent why.

use crate::support::*;

const FORBID_TOUCH: &str = "[commands]\nforbid = [\"touch\", \"git push\"]\n";

fn marker_absent(w: &World, name: &str) -> bool {
    !w.exists(&w.ws.join(name))
}

#[test]
fn forbidden_command_every_way() {
    let w = World::new();
    std::fs::copy("/usr/bin/touch", w.ws.join("brought-along")).unwrap();
    chmod_x(&w.ws.join("brought-along"));
    let attacks = [
        ("a", "touch a"),
        ("b", "sh -c 'touch b'"),
        ("c", "env touch c"),
        ("d", "/usr/bin/touch d"),
        ("e", "cp /usr/bin/touch ./t 2>/dev/null; ./t e"),
        ("f", "ln -s /usr/bin/touch ./lt; ./lt f"),
        ("g", "./brought-along g"),
        ("h", "/lib64/ld-linux-x86-64.so.2 /usr/bin/touch h"),
        ("i", "(exec -a innocent /usr/bin/touch i)"),
        ("j", "xargs touch <<< j"),
        ("k", "find . -maxdepth 0 -exec touch k \\;"),
        (
            "l",
            "python3 -c 'import os; os.execv(\"/usr/bin/touch\", [\"touch\", \"l\"])'",
        ),
        // The loader runs a copy by identity, past its own options, or copied itself.
        ("m", "/lib64/ld-linux-x86-64.so.2 ./brought-along m"),
        (
            "n",
            "/lib64/ld-linux-x86-64.so.2 --argv0 cat /usr/bin/touch n",
        ),
        (
            "o",
            "cp /lib64/ld-linux-x86-64.so.2 ./myld; ./myld ./brought-along o",
        ),
        // A name that is not UTF-8 next to its lossy twin, which holds a harmless program:
        // the file checked is the file run.
        (
            "p",
            "mkdir -p $'\\xff' $'\\xef\\xbf\\xbd'; cp /usr/bin/touch $'\\xff'/x; cp /usr/bin/true $'\\xef\\xbf\\xbd'/x; ./$'\\xff'/x p",
        ),
        ("q", "/lib64/ld-linux-x86-64.so.2 ./$'\\xff'/x q"),
    ];
    for (marker, attack) in attacks {
        let out = w.run(Some(FORBID_TOUCH), &format!("{attack} 2>/dev/null; true"));
        assert!(out.status.success(), "{}", show(&out));
        assert!(
            marker_absent(&w, marker),
            "`{attack}` ran a forbidden command\n{}",
            show(&out)
        );
    }
    // Twin: other programs (and writing the same file another way) work, through the
    // loader too, and the harmless program under the lossy name runs.
    ok(&w.run(
        Some(FORBID_TOUCH),
        "echo > twin && ls twin && cp twin twin2 && /lib64/ld-linux-x86-64.so.2 /usr/bin/cp twin twin3 && ./$'\\xef\\xbf\\xbd'/x",
    ));
    assert!(w.exists(&w.ws.join("twin2")) && w.exists(&w.ws.join("twin3")));
    // `argv[0]` still makes a decision stricter: `cp` called `touch` is refused.
    let out = w.run(
        Some(FORBID_TOUCH),
        "/lib64/ld-linux-x86-64.so.2 --argv0 touch /usr/bin/cp twin twin4 2>/dev/null; true",
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(!w.exists(&w.ws.join("twin4")), "{}", show(&out));
}

#[test]
fn a_refusal_explains_itself_and_is_recorded() {
    let w = World::new();
    let log = w.dir.path().join("task.jsonl");
    let out = w
        .command()
        .args(["run", "--quiet", "--log"])
        .arg(&log)
        .arg("--remit")
        .arg(w.remit(FORBID_TOUCH))
        .args(["--", "bash", "-c", "touch x; echo after"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let err = stderr(&out);
    assert!(
        err.contains("remit: denied `touch x`")
            && err.contains("forbids `touch` (commands.forbid)"),
        "{err}"
    );
    assert!(stdout(&out).contains("after"));
    let records = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = records
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["body"]["kind"], "run_authorized");
    let execs: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["body"]["kind"] == "exec")
        .collect();
    let denied: Vec<&&serde_json::Value> = execs
        .iter()
        .filter(|l| l["body"]["decision"] == "deny")
        .collect();
    assert!(!denied.is_empty(), "{records}");
    assert_eq!(denied[0]["body"]["argv"], serde_json::json!(["touch", "x"]));
    assert_eq!(denied[0]["body"]["rule"], "commands.forbid[0]");
    assert!(
        execs
            .iter()
            .any(|l| l["body"]["decision"] == "allow" && l["body"]["argv"][0] == "bash"),
        "{records}"
    );
    let end = lines.last().unwrap();
    assert_eq!(end["body"]["kind"], "task_end");
    assert_eq!(end["body"]["reason"], "exited");
    assert!(end["body"]["counts"]["denials"].as_u64().unwrap() >= 1);
    for (i, line) in lines.iter().enumerate() {
        assert!(line["time"].as_str().unwrap().ends_with('Z'));
        assert_eq!(line["task"], lines[0]["task"]);
        if i > 0 {
            assert!(
                line["seq"].as_u64() > lines[i - 1]["seq"].as_u64(),
                "events out of order"
            );
        }
    }
    // The task's receipt verifies against the ledger.
    let receipts: Vec<_> = std::fs::read_dir(w.state.join("receipts"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(receipts.len(), 1);
    let out = w
        .command()
        .arg("verify")
        .arg(receipts[0].path())
        .arg("--ledger")
        .arg(w.state.join("ledger.db"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
}

#[test]
fn the_main_command_itself_can_be_refused() {
    let w = World::new();
    let out = w
        .command()
        .args(["run", "--quiet", "--remit"])
        .arg(w.remit(FORBID_TOUCH))
        .args(["--", "touch", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(marker_absent(&w, "x"));
    assert!(stderr(&out).contains("denied"), "{}", show(&out));
}

#[test]
fn git_push_is_forbidden_however_spelled() {
    let w = World::new();
    let setup = "git init -q -b main . && git -c user.email=a@b -c user.name=a commit -q --allow-empty -m init";
    ok(&w.run(None, setup));
    for push in [
        "git push",
        "git -C . push origin main",
        "git -c alias.p=push p",
        "git -c Alias.P=push p",
        "git --no-pager push --force",
        "(exec -a git-push git origin main)",
        "/usr/lib/git-core/git-push origin main",
    ] {
        let out = w.run(Some(FORBID_TOUCH), &format!("{push} 2>&1; echo rc=$?"));
        let text = stdout(&out);
        assert!(
            text.contains("remit: denied"),
            "`{push}` was not refused\n{}",
            show(&out)
        );
    }
    // Twin: other git subcommands run.
    ok(&w.run(
        Some(FORBID_TOUCH),
        "git status --short && git log --oneline | grep -q init",
    ));
}

#[test]
fn prompt_without_a_human_is_a_denial() {
    let w = World::new();
    let remit = "[commands]\nprompt = [\"touch\"]\n[approvals]\ntimeout = \"1s\"\n";
    let out = w.run(Some(remit), "touch prompted 2>&1; true");
    assert!(marker_absent(&w, "prompted"), "{}", show(&out));
    assert!(stdout(&out).contains("approval"), "{}", show(&out));
}

#[test]
fn default_deny_allows_only_what_is_listed() {
    let w = World::new();
    let remit = "[commands]\ndefault = \"deny\"\nallow = [\"bash\", \"echo\", \"cat\"]\n";
    let out = w.run(
        Some(remit),
        "echo listed > f; cat f; touch unlisted 2>/dev/null; ls >/dev/null 2>&1 || echo ls-refused",
    );
    let text = stdout(&out);
    assert!(
        text.contains("listed") && text.contains("ls-refused"),
        "{}",
        show(&out)
    );
    assert!(marker_absent(&w, "unlisted"));
    // Landlock execute rules hold it too: a program brought into the workspace cannot run
    // when the remit forbids executing from writable places.
    let remit = "[filesystem]\nexec_writable = false\n[commands]\ndefault = \"deny\"\nallow = [\"bash\", \"cp\"]\n";
    let out = w.run(Some(remit), "cp /usr/bin/true ./t && ./t && echo RAN");
    assert!(!stdout(&out).contains("RAN"), "{}", show(&out));
    // `argv[0]` never grants: a brought-along program named `cat` by its caller, the
    // loader told to call it `cat`; the twins, the real `cat` under any name.
    let remit = "[commands]\ndefault = \"deny\"\nallow = [\"bash\", \"cat\", \"cp\"]\n";
    let out = w.run(
        Some(remit),
        "cp /usr/bin/touch ./b; (exec -a cat ./b lie1) 2>/dev/null; /lib64/ld-linux-x86-64.so.2 --argv0 cat /usr/bin/touch lie2 2>/dev/null; (exec -a kitty /usr/bin/cat /dev/null) && echo CAT-RAN",
    );
    assert!(stdout(&out).contains("CAT-RAN"), "{}", show(&out));
    assert!(
        marker_absent(&w, "lie1") && marker_absent(&w, "lie2"),
        "{}",
        show(&out)
    );
}

/// A secret under a hidden path is not reachable: the task cannot read it, the record does
/// not list it, and `refuse_at` does not count it; its visible twin is listed.
#[test]
fn hidden_secrets_are_not_reachable() {
    let w = World::new();
    let grant = w.outside.join("grant");
    std::fs::create_dir_all(grant.join("vault")).unwrap();
    std::fs::write(
        grant.join("vault/key.txt"),
        "token = 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\n",
    )
    .unwrap();
    std::fs::write(grant.join("notes.txt"), "DB_PASSWORD=\"Zq8!mK2#vR7pLx\"\n").unwrap();
    // A hidden directory in the workspace (not a git repository) too.
    std::fs::create_dir_all(w.ws.join("private")).unwrap();
    std::fs::write(
        w.ws.join("private/key.txt"),
        "token = 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\n",
    )
    .unwrap();
    let remit = format!(
        "[filesystem]\nread_only = [\"{g}\"]\nhidden = [\"{g}/vault\", \"private\"]\n",
        g = grant.display()
    );
    let log = w.dir.path().join("t.jsonl");
    let out = w
        .command()
        .args(["run", "--quiet", "--log"])
        .arg(&log)
        .arg("--remit")
        .arg(w.remit(&remit))
        .args(["--", "bash", "-c"])
        .arg(format!(
            "cat {g}/vault/key.txt || echo hidden; cat private/key.txt || echo ws-hidden; \
             test -r {g}/notes.txt && echo visible",
            g = grant.display()
        ))
        .output()
        .unwrap();
    let text = ok(&out);
    assert!(
        text.contains("hidden\n") && text.contains("ws-hidden\n") && text.contains("visible\n"),
        "{text}"
    );
    assert!(!text.contains("ghp_"), "{text}");
    let records = std::fs::read_to_string(&log).unwrap();
    let first: serde_json::Value = serde_json::from_str(records.lines().next().unwrap()).unwrap();
    let locations: Vec<&str> = first["body"]["secrets_reachable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["location"].as_str().unwrap())
        .collect();
    assert!(
        locations.iter().any(|l| l.ends_with("grant/notes.txt:1")),
        "{locations:?}"
    );
    assert!(
        !locations
            .iter()
            .any(|l| l.contains("vault") || l.contains("private")),
        "{locations:?}"
    );
    // What is hidden from the task is still the workspace's: the task changed nothing.
    let changes: serde_json::Value = records
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["body"]["kind"] == "file_changes")
        .expect("a file_changes record");
    assert_eq!(changes["body"]["added"], 0, "{changes}");
    assert_eq!(changes["body"]["modified"], 0, "{changes}");
    assert_eq!(changes["body"]["deleted"], 0, "{changes}");
    // The hidden token (high) does not stop a task that refuses high secrets; the visible
    // password (medium) stops one that refuses medium.
    let with = |level: &str| format!("{remit}[secrets]\nrefuse_at = \"{level}\"\n");
    let out = w.run(Some(&with("high")), "echo started");
    assert!(stdout(&out).contains("started"), "{}", show(&out));
    let out = w.run(Some(&with("medium")), "echo started");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(!stdout(&out).contains("started"), "{}", show(&out));
    let refusal = stderr(&out);
    assert!(
        refusal.contains("secrets.refuse_at") && refusal.contains("notes.txt:1"),
        "{}",
        show(&out)
    );
    assert!(
        !refusal.contains("vault") && !refusal.contains("private"),
        "{}",
        show(&out)
    );
}

#[test]
fn secrets_are_found_refused_and_redacted() {
    let w = World::new();
    std::fs::write(w.ws.join(".env"), "DB_PASSWORD=\"Zq8!mK2#vR7pLx\"\n").unwrap();
    let token = "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";
    let log = w.dir.path().join("t.jsonl");
    let out = w
        .command()
        .args(["run", "--quiet", "--log"])
        .arg(&log)
        .args(["--", "bash", "-c"])
        .arg(format!("cat .env; echo {token}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    // Output to a pipe is redacted.
    let text = stdout(&out);
    assert!(
        !text.contains("Zq8!mK2#vR7pLx") && !text.contains(token),
        "{text}"
    );
    assert!(text.contains("[REDACTED"), "{text}");
    // The record says which secrets were reachable, never their values, and the command
    // line holding a token is redacted too.
    let records = std::fs::read_to_string(&log).unwrap();
    assert!(
        !records.contains("Zq8!mK2#vR7pLx") && !records.contains(token),
        "{records}"
    );
    let first: serde_json::Value = serde_json::from_str(records.lines().next().unwrap()).unwrap();
    let reachable = first["body"]["secrets_reachable"].as_array().unwrap();
    assert!(
        reachable
            .iter()
            .any(|r| r["location"].as_str().unwrap().ends_with(".env:1")),
        "{first}"
    );
    // A remit can refuse to start when secrets at a level are reachable.
    let out = w.run(Some("[secrets]\nrefuse_at = \"medium\"\n"), "echo started");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(!stdout(&out).contains("started"));
    assert!(
        stderr(&out).contains("secrets.refuse_at") && stderr(&out).contains(".env:1"),
        "{}",
        show(&out)
    );
    assert!(!stderr(&out).contains("Zq8!mK2#vR7pLx"));
    // Twin: a threshold above what is reachable lets the task start.
    let out = w.run(Some("[secrets]\nrefuse_at = \"high\"\n"), "echo started");
    assert!(stdout(&out).contains("started"), "{}", show(&out));
}

/// The summary and notices remit prints on the host show a refused command line redacted:
/// a task cannot put its own identity token into the CI log that captures remit's output.
#[test]
fn a_refused_command_line_is_shown_redacted() {
    let w = World::new();
    let remit = w.remit("[commands]\nforbid = [\"touch\"]\n");
    let out = w
        .command()
        .args(["run", "--summary", "--remit"])
        .arg(&remit)
        .args([
            "--",
            "bash",
            "-c",
            "touch \"$(cat \"$REMIT_IDENTITY_TOKEN_FILE\")\" 2>/dev/null; touch plain-name 2>/dev/null; true",
        ])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(err.contains("touch"), "{}", show(&out));
    assert!(
        !err.contains("eyJ"),
        "the token reached remit's own output: {err}"
    );
    // The twin: an ordinary refused command line is shown as it was.
    assert!(err.contains("touch plain-name"), "{}", show(&out));
}
