//! `remit run` behaves like running the command directly (streams, exit status, signals),
//! and bad input gets one clear line, exit code 2 and nothing left behind.

use std::io::Write;
use std::process::Stdio;

use crate::support::*;

#[test]
fn streams_and_exit_status_pass_through() {
    let w = World::new();
    let mut child = w
        .command()
        .args([
            "run",
            "--quiet",
            "--",
            "bash",
            "-c",
            "tr a-z A-Z; echo to-stderr > /dev/stderr; exit 7",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello through stdin\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(7), "{}", show(&out));
    assert_eq!(stdout(&out), "HELLO THROUGH STDIN\n");
    assert_eq!(stderr(&out), "to-stderr\n");
}

#[test]
fn death_by_signal_passes_through() {
    let w = World::new();
    let out = w.run(None, "kill -SEGV $$");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(11), "{}", show(&out));
}

/// `kill -SIGNAL` on `remit run` (not from a terminal) reaches the command, which handles it
/// and exits with `code`.
fn signal_reaches_the_command(signal: &str, code: i32) {
    let w = World::new();
    let (mut child, mut stdout) = w.start(
        None,
        &format!(
            "trap 'echo got-{signal}; exit {code}' {signal}; echo ready; while true; do sleep 0.05; done"
        ),
    );
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert!(rest.contains(&format!("got-{signal}")), "{rest}");
    assert_eq!(status.code(), Some(code));
}

#[test]
fn sigterm_reaches_the_command() {
    signal_reaches_the_command("TERM", 42);
}

/// Ctrl-C from outside a terminal (`kill -INT`).
#[test]
fn sigint_reaches_the_command() {
    signal_reaches_the_command("INT", 3);
}

#[test]
fn summary_on_request() {
    let w = World::new();
    let out = w
        .command()
        .args(["run", "--summary", "--", "true"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("remit: task ") && err.contains("exit 0") && err.contains("1 command"),
        "{err}"
    );
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let w = World::new();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--workspace".into(),
                "/nonexistent/ws".into(),
                "--".into(),
                "true".into(),
            ],
            "workspace `/nonexistent/ws`",
        ),
        (
            vec!["--".into(), "no-such-command-anywhere".into()],
            "command `no-such-command-anywhere` not found",
        ),
        (
            vec![
                "--remit".into(),
                "/nonexistent.toml".into(),
                "--".into(),
                "true".into(),
            ],
            "cannot read remit",
        ),
        (
            vec![
                "--workspace".into(),
                "/usr".into(),
                "--".into(),
                "true".into(),
            ],
            "system directory",
        ),
    ];
    for (args, needle) in cases {
        let out = w.command().arg("run").args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}\n{}", show(&out));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // A malformed remit names file, line and column.
    let remit = w.remit("[filesystem]\nread_only = [\"/opt\"]\nwokspace = \".\"\n");
    let out = w
        .command()
        .arg("run")
        .arg("--remit")
        .arg(&remit)
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{}:3:1", remit.display())) && err.contains("wokspace"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    // Nothing was left behind: no task cgroups, no records.
    assert!(std::fs::read_dir(&w.state).map(|d| d.count()).unwrap_or(0) == 0);
}

#[test]
fn missing_layer_refuses_to_start() {
    // Simulate a host without a memory controller by asking for a limit on a controller
    // that cannot be used: an impossible cgroup is not available; `doctor` tells the truth
    // about the real host, so compare with it.
    let w = World::new();
    let doctor = w.command().args(["doctor", "--json"]).output().unwrap();
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&doctor.stdout).unwrap();
    let memory = rows.iter().find(|r| r["layer"] == "cgroup-memory").unwrap();
    let out = w.run(Some("[limits]\nmemory = \"128MiB\"\n"), "true");
    if memory["available"] == true {
        assert!(out.status.success(), "{}", show(&out));
    } else {
        assert_eq!(out.status.code(), Some(2), "{}", show(&out));
        assert!(
            stderr(&out).contains("cannot enforce `cgroup-memory`"),
            "{}",
            show(&out)
        );
    }
}

#[test]
fn doctor_reports_every_layer() {
    let w = World::new();
    let out = w.command().args(["doctor", "--json"]).output().unwrap();
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    for layer in [
        "user-namespace",
        "mount-namespace",
        "pid-namespace",
        "net-namespace",
        "landlock",
        "seccomp",
        "seccomp-notify",
        "cgroup-pids",
    ] {
        let row = rows
            .iter()
            .find(|r| r["layer"] == layer)
            .unwrap_or_else(|| panic!("no `{layer}` row"));
        assert!(row["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
    let all = rows.iter().all(|r| r["available"] == true);
    assert_eq!(out.status.code(), Some(if all { 0 } else { 1 }));
    let table = w.command().arg("doctor").output().unwrap();
    assert!(stdout(&table).contains("landlock"));
}

#[test]
fn degraded_mode_is_loud_and_recorded() {
    let w = World::new();
    let log = w.dir.path().join("t.jsonl");
    let out = w
        .command()
        .args(["run", "--dangerously-allow-degraded", "--log"])
        .arg(&log)
        .args(["--", "true"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert!(stderr(&out).contains("WARNING"), "{}", show(&out));
    let first = std::fs::read_to_string(&log).unwrap();
    let first: serde_json::Value = serde_json::from_str(first.lines().next().unwrap()).unwrap();
    assert_eq!(first["body"]["kind"], "run_authorized");
    assert!(first["body"]["degraded"].is_array());
}

#[test]
fn a_second_task_starts_clean() {
    // Two tasks one after the other share nothing: /tmp and home are fresh.
    let w = World::new();
    ok(&w.run(
        None,
        "echo one > /tmp/left-behind && echo one > ~/left-behind",
    ));
    let out = w.run(
        None,
        "test -e /tmp/left-behind || test -e ~/left-behind; echo $?",
    );
    assert_eq!(ok(&out).trim(), "1");
    ok(&w.run(None, "true"));
}
