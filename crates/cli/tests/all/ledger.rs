//! `remit ledger …` and `remit verify`, run as the real binary in a fresh temp dir.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use remit_ledger::testing::TempPostgres;
use remit_ledger::{FixedClock, Ledger, LedgerKey, Location, Options};
use remit_types::event::*;

const REMIT: &str = env!("CARGO_BIN_EXE_remit");

struct Fixture {
    dir: tempfile::TempDir,
    db: PathBuf,
    key: LedgerKey,
}

impl Fixture {
    fn arg(&self) -> String {
        self.db.display().to_string()
    }

    fn vkey(&self) -> String {
        self.key.public().to_vkey()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn key(seed: u8) -> LedgerKey {
    LedgerKey::from_seed(&format!("test.remit/cli-{seed}"), [seed; 32]).unwrap()
}

fn task(task: &str) -> Vec<NewEvent> {
    let effect = |id: &str, kind: &str, target: &str| EffectRef {
        id: id.into(),
        kind: kind.into(),
        target: target.into(),
        attributes: [("method".to_owned(), "GET".to_owned())]
            .into_iter()
            .collect(),
    };
    let bodies: Vec<EventBody> = vec![
        RunAuthorized {
            requester: "alice@example.com".into(),
            owner: "alice@example.com".into(),
            remit: RemitRef {
                name: "ci-fixer".into(),
                sha256: "ab".repeat(32),
            },
            identity: format!("spiffe://remit.local/agent/ci-fixer/task/{task}"),
            expires: None,
            permissions: vec![],
            secrets_reachable: vec![],
            degraded: vec![],
        }
        .into(),
        Exec {
            argv: vec!["cargo".into(), "test".into()],
            cwd: "/workspace".into(),
            pid: 3,
            ppid: 1,
            decision: Verdict::Allow,
            rule: None,
        }
        .into(),
        Decision {
            effect: effect("e1", "http.request", "api.github.com:443"),
            decision: Verdict::Allow,
            policy: None,
            reason: "read".into(),
        }
        .into(),
        Decision {
            effect: effect("e2", "git.push", "refs/heads/main"),
            decision: Verdict::Deny,
            policy: Some("protect-main".into()),
            reason: "needs a human".into(),
        }
        .into(),
        Violation {
            category: "secret_egress".into(),
            effect_id: None,
            rule: Some("aws-access-key".into()),
            detail: "blocked".into(),
            blocked: true,
        }
        .into(),
        TaskEnd {
            exit_code: Some(0),
            signal: None,
            reason: EndReason::Exited,
            detail: None,
            counts: TaskCounts::default(),
        }
        .into(),
    ];
    bodies
        .into_iter()
        .map(|b| NewEvent::new(task, "ci-fixer", b))
        .collect()
}

fn write_ledger(location: Location, key: &LedgerKey, tasks: &[&str]) {
    let clock = Arc::new(FixedClock::stepping(
        std::time::UNIX_EPOCH + Duration::from_secs(1_767_225_600),
        Duration::from_millis(1),
    ));
    let ledger = Ledger::open(location, key.clone(), clock, Options::default()).unwrap();
    for t in tasks {
        for e in task(t) {
            ledger.append(e).unwrap();
        }
        ledger.flush().unwrap();
    }
    ledger.close().unwrap();
}

/// A SQLite ledger with three tasks (18 events) and its key file beside it.
fn fixture() -> Fixture {
    fixture_with(key(1))
}

fn fixture_with(key: LedgerKey) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    key.save_new(&dir.path().join("ledger.key")).unwrap();
    write_ledger(Location::Sqlite(db.clone()), &key, &["t-1", "t-2", "t-3"]);
    Fixture { dir, db, key }
}

fn remit(args: &[&str]) -> Output {
    remit_env(args, &[])
}

fn remit_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(REMIT);
    cmd.args(args)
        .env_remove("REMIT_HOME")
        .env_remove("XDG_DATA_HOME");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
fn expect(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
    let err = stderr(out);
    assert!(!err.contains("panicked"), "{err}");
}

/// An error or a refusal is one line on stderr.
#[track_caller]
fn one_line_error(out: &Output) -> String {
    let err = stderr(out);
    let lines: Vec<&str> = err.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line: {err}");
    lines[0].to_owned()
}

/// Edit the ledger behind the tool's back, as an attacker with file access would.
fn sql(db: &Path, sql: &str) {
    rusqlite::Connection::open(db)
        .unwrap()
        .execute_batch(sql)
        .unwrap();
}

/// Fold the ledger's write-ahead log into the database and remove it.
fn fold_log(db: &Path) {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap();
    for suffix in ["-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(name);
    }
}

fn file_digest(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[test]
fn verify_intact_ledger() {
    let f = fixture();
    let out = remit(&["ledger", "verify", "--ledger", &f.arg(), "--key", &f.vkey()]);
    expect(&out, 0);
    assert!(
        stdout(&out).contains("is intact: 18 events"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("(pinned)"));
    // A key file works as --key too (public or private).
    let out = remit(&[
        "ledger",
        "verify",
        "--ledger",
        &f.arg(),
        "--key",
        &f.path("ledger.key").display().to_string(),
    ]);
    expect(&out, 0);
    // Without --key the recorded key is used, and the output says so.
    let out = remit(&["ledger", "verify", "--ledger", &f.arg()]);
    expect(&out, 0);
    assert!(stdout(&out).contains("recorded in the ledger"));
}

#[test]
fn verify_names_the_first_bad_event() {
    let f = fixture();
    sql(
        &f.db,
        "UPDATE events SET body = replace(body, 'protect-main', 'protect-xxxx') WHERE seq = 9",
    );
    let out = remit(&["ledger", "verify", "--ledger", &f.arg(), "--key", &f.vkey()]);
    expect(&out, 1);
    let line = one_line_error(&out);
    assert!(
        line.contains("event 9") && line.contains("edited"),
        "{line}"
    );

    let f = fixture();
    sql(&f.db, "DELETE FROM events WHERE seq = 4");
    let out = remit(&["ledger", "verify", "--ledger", &f.arg()]);
    expect(&out, 1);
    assert!(one_line_error(&out).contains("event 4 is missing"));
}

#[test]
fn verify_against_a_saved_checkpoint_catches_a_rewrite() {
    let f = fixture();
    let out = remit(&[
        "ledger",
        "checkpoint",
        "--ledger",
        &f.arg(),
        "--key",
        &f.vkey(),
    ]);
    expect(&out, 0);
    let saved = f.path("checkpoint.txt");
    std::fs::write(&saved, stdout(&out)).unwrap();
    assert!(stdout(&out).starts_with("test.remit/cli-1\n18\n"));

    // Rewrite the whole ledger with the same key and different history.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", f.arg()));
    }
    write_ledger(
        Location::Sqlite(f.db.clone()),
        &f.key,
        &["x-1", "x-2", "x-3", "x-4"],
    );
    let out = remit(&["ledger", "verify", "--ledger", &f.arg(), "--key", &f.vkey()]);
    expect(&out, 0);
    let out = remit(&[
        "ledger",
        "verify",
        "--ledger",
        &f.arg(),
        "--key",
        &f.vkey(),
        "--against",
        &saved.display().to_string(),
    ]);
    expect(&out, 1);
    assert!(one_line_error(&out).contains("rewritten"));
}

#[test]
fn show_filters_and_json() {
    let f = fixture();
    let out = remit(&["ledger", "show", "--ledger", &f.arg()]);
    expect(&out, 0);
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 19, "{text}");
    assert!(text.lines().next().unwrap().contains("SEQ"));
    assert!(
        text.contains("deny git.push refs/heads/main (policy `protect-main`)"),
        "{text}"
    );

    let out = remit(&[
        "ledger",
        "show",
        "--ledger",
        &f.arg(),
        "--task",
        "t-2",
        "--kind",
        "decision,violation",
        "--json",
    ]);
    expect(&out, 0);
    let events: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e["task"] == "t-2"));

    let out = remit(&[
        "ledger",
        "show",
        "--ledger",
        &f.arg(),
        "--since",
        "2026-01-01T00:00:00.050Z",
        "--json",
    ]);
    expect(&out, 0);
    assert!(stdout(&out).lines().count() < 18);
    let out = remit(&[
        "ledger",
        "show",
        "--ledger",
        &f.arg(),
        "--since",
        "1h",
        "--json",
    ]);
    expect(&out, 0);
    assert_eq!(
        stdout(&out).lines().count(),
        0,
        "all events are from 2026-01-01"
    );

    let out = remit(&["ledger", "show", "--ledger", &f.arg(), "--kind", "teleport"]);
    expect(&out, 2);
    assert!(one_line_error(&out).contains("unknown event kind `teleport`"));
    let out = remit(&[
        "ledger",
        "show",
        "--ledger",
        &f.arg(),
        "--since",
        "yesterday-ish",
    ]);
    expect(&out, 2);
    one_line_error(&out);
}

#[test]
fn export_jsonl_and_ocsf() {
    let f = fixture();
    let out_file = f.path("export.jsonl");
    let out = remit(&[
        "ledger",
        "export",
        "--ledger",
        &f.arg(),
        "--format",
        "jsonl",
        "-o",
        &out_file.display().to_string(),
    ]);
    expect(&out, 0);
    let text = std::fs::read_to_string(&out_file).unwrap();
    assert_eq!(text.lines().count(), 18);
    // The JSON lines re-hash to the signed root.
    let mut tree = remit_ledger::merkle::MemoryTree::new();
    for line in text.lines() {
        tree.push_data(line.as_bytes());
    }
    let out = remit(&["ledger", "checkpoint", "--ledger", &f.arg()]);
    let cp = remit_ledger::SignedCheckpoint::open(&stdout(&out), &f.key.public()).unwrap();
    assert_eq!(tree.root(), cp.checkpoint.root);

    let out = remit(&[
        "ledger",
        "export",
        "--ledger",
        &f.arg(),
        "--format",
        "ocsf",
        "--kind",
        "exec,violation",
    ]);
    expect(&out, 0);
    let classes: Vec<u64> = stdout(&out)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["class_uid"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(classes, vec![1007, 2004, 1007, 2004, 1007, 2004]);

    let out = remit(&["ledger", "export", "--ledger", &f.arg(), "--format", "csv"]);
    expect(&out, 2);
    assert!(one_line_error(&out).contains("unknown export format `csv`"));
}

#[test]
fn prove_and_check_offline() {
    let f = fixture();
    let proof = f.path("proof.json");
    let out = remit(&[
        "ledger",
        "prove",
        "7",
        "--ledger",
        &f.arg(),
        "--key",
        &f.vkey(),
        "-o",
        &proof.display().to_string(),
    ]);
    expect(&out, 0);
    // Offline: no ledger, only the proof and the public key.
    std::fs::remove_file(&f.db).unwrap();
    let out = remit(&[
        "ledger",
        "check-proof",
        &proof.display().to_string(),
        "--key",
        &f.vkey(),
    ]);
    expect(&out, 0);
    assert!(
        stdout(&out).contains("event 7 (exec, task `t-2`)"),
        "{}",
        stdout(&out)
    );

    let text = std::fs::read_to_string(&proof)
        .unwrap()
        .replace("cargo", "cargp");
    let forged = f.path("forged.json");
    std::fs::write(&forged, text).unwrap();
    let out = remit(&[
        "ledger",
        "check-proof",
        &forged.display().to_string(),
        "--key",
        &f.vkey(),
    ]);
    expect(&out, 1);
    assert!(one_line_error(&out).contains("altered"));

    let out = remit(&[
        "ledger",
        "check-proof",
        &proof.display().to_string(),
        "--key",
        &key(2).public().to_vkey(),
    ]);
    expect(&out, 1);
    one_line_error(&out);

    std::fs::write(&forged, "{ not json").unwrap();
    let out = remit(&[
        "ledger",
        "check-proof",
        &forged.display().to_string(),
        "--key",
        &f.vkey(),
    ]);
    expect(&out, 1);
    one_line_error(&out);
}

#[test]
fn prove_missing_event() {
    let f = fixture();
    let out = remit(&["ledger", "prove", "99", "--ledger", &f.arg()]);
    expect(&out, 2);
    assert!(one_line_error(&out).contains("event 99"));
}

#[test]
fn receipts_verify_offline_and_against_the_ledger() {
    let f = fixture();
    let receipt = f.path("t-2.receipt.json");
    let out = remit(&[
        "ledger",
        "receipt",
        "t-2",
        "--ledger",
        &f.arg(),
        "-o",
        &receipt.display().to_string(),
    ]);
    expect(&out, 0);
    let r = receipt.display().to_string();

    let out = remit(&["verify", &r, "--key", &f.vkey()]);
    expect(&out, 0);
    assert!(
        stdout(&out).contains("receipt of task `t-2`"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("checked offline"));

    let out = remit(&["verify", &r, "--key", &f.vkey(), "--ledger", &f.arg()]);
    expect(&out, 0);
    assert!(stdout(&out).contains("matches the ledger"));

    // Wrong key.
    let out = remit(&["verify", &r, "--key", &key(2).public().to_vkey()]);
    expect(&out, 1);
    assert!(one_line_error(&out).contains("not signed by"));

    // A receipt from another ledger, checked against this one.
    let other = fixture_with(key(3));
    let other_receipt = other.path("r.json");
    let out = remit(&[
        "ledger",
        "receipt",
        "t-1",
        "--ledger",
        &other.arg(),
        "-o",
        &other_receipt.display().to_string(),
    ]);
    expect(&out, 0);
    let out = remit(&[
        "verify",
        &other_receipt.display().to_string(),
        "--ledger",
        &f.arg(),
    ]);
    expect(&out, 1);
    assert!(
        one_line_error(&out).contains("not signed by"),
        "{}",
        stderr(&out)
    );

    // An altered ledger no longer backs the receipt.
    sql(
        &f.db,
        "UPDATE events SET body = replace(body, '\"deny\"', '\"allow\"') WHERE seq = 9",
    );
    let out = remit(&["verify", &r, "--key", &f.vkey(), "--ledger", &f.arg()]);
    expect(&out, 1);
    assert!(one_line_error(&out).contains("event 9"));

    // Garbage and truncated receipts.
    let text = std::fs::read_to_string(&receipt).unwrap();
    std::fs::write(&receipt, &text[..text.len() / 2]).unwrap();
    let out = remit(&["verify", &r, "--key", &f.vkey()]);
    expect(&out, 1);
    assert!(one_line_error(&out).contains("not a receipt"));
    let out = remit(&[
        "verify",
        &f.path("missing.json").display().to_string(),
        "--key",
        &f.vkey(),
    ]);
    expect(&out, 2);
    one_line_error(&out);
}

#[test]
fn bad_ledger_files_fail_cleanly_and_reading_changes_nothing() {
    let f = fixture();
    // Writers leave a small write-ahead log beside the database: it is part of the ledger.
    let files = |f: &Fixture| -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(f.dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            // SQLite may rebuild the shared-memory index of the log when reading.
            .filter(|n| !n.ends_with("-shm"))
            .map(|n| (n.clone(), file_digest(&f.path(&n))))
            .collect();
        files.sort();
        files
    };
    let before = files(&f);
    for args in [
        vec!["ledger", "verify"],
        vec!["ledger", "show"],
        vec!["ledger", "export", "--format", "ocsf"],
        vec!["ledger", "prove", "3"],
        vec!["ledger", "checkpoint"],
        vec!["ledger", "info"],
    ] {
        let mut args = args.clone();
        let db = f.arg();
        args.extend(["--ledger", &db]);
        let out = remit(&args);
        expect(&out, 0);
    }
    assert_eq!(files(&f), before, "reading modified the ledger");

    // The database alone, as after a checkpoint, so that damaging it is not masked by the
    // log's copies of its pages.
    fold_log(&f.db);
    let before = files(&f);
    let out = remit(&["ledger", "verify", "--ledger", &f.arg()]);
    expect(&out, 0);
    assert_eq!(
        files(&f),
        before,
        "reading a ledger without a log created files"
    );

    // Truncated.
    let bytes = std::fs::read(&f.db).unwrap();
    std::fs::write(&f.db, &bytes[..bytes.len() / 2]).unwrap();
    let out = remit(&["ledger", "verify", "--ledger", &f.arg()]);
    assert_ne!(out.status.code(), Some(0));
    expect(&out, out.status.code().unwrap());
    assert!(one_line_error(&out).contains("ledger.db"));

    // Corrupted pages.
    let mut bytes = bytes.clone();
    let end = bytes.len().min(4096 * 5);
    for b in &mut bytes[4096..end] {
        *b ^= 0x5a;
    }
    std::fs::write(&f.db, &bytes).unwrap();
    for cmd in ["verify", "show"] {
        let out = remit(&["ledger", cmd, "--ledger", &f.arg()]);
        assert_ne!(out.status.code(), Some(0));
        expect(&out, out.status.code().unwrap());
        one_line_error(&out);
    }

    // Not a database at all.
    std::fs::write(
        &f.db,
        b"hello, this is not sqlite, but it is long enough to look like a header.",
    )
    .unwrap();
    let out = remit(&["ledger", "verify", "--ledger", &f.arg()]);
    expect(&out, 2);
    assert!(one_line_error(&out).contains("not a sqlite database"));
}

#[test]
fn key_init_and_default_location() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let home_s = home.display().to_string();
    let out = remit_env(
        &["ledger", "init", "--origin", "example.com/ledger"],
        &[("REMIT_HOME", &home_s)],
    );
    expect(&out, 0);
    assert!(home.join("ledger.db").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(home.join("ledger.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
    let out = remit_env(&["ledger", "key"], &[("REMIT_HOME", &home_s)]);
    expect(&out, 0);
    let text = stdout(&out);
    assert!(text.starts_with("example.com/ledger+"), "{text}");
    assert!(remit_ledger::PublicKey::parse_vkey(text.lines().next().unwrap()).is_ok());

    // XDG_DATA_HOME is the fallback for REMIT_HOME.
    let out = remit_env(
        &["ledger", "info"],
        &[("XDG_DATA_HOME", &dir.path().display().to_string())],
    );
    expect(&out, 2);
    assert!(one_line_error(&out).contains(&format!("{}/remit/ledger.db", dir.path().display())));
    let out = remit_env(&["ledger", "verify"], &[("REMIT_HOME", &home_s)]);
    expect(&out, 0);
}

fn pg() -> &'static TempPostgres {
    static PG: OnceLock<TempPostgres> = OnceLock::new();
    PG.get_or_init(|| TempPostgres::start().unwrap())
}

#[test]
fn postgres_ledger() {
    let url = pg().create_database("cli_ledger").unwrap();
    let k = key(4);
    write_ledger(Location::Postgres(url.clone()), &k, &["p-1", "p-2"]);
    let out = remit(&[
        "ledger",
        "verify",
        "--postgres",
        &url,
        "--key",
        &k.public().to_vkey(),
    ]);
    expect(&out, 0);
    assert!(stdout(&out).contains("12 events"));
    let out = remit(&[
        "ledger",
        "show",
        "--postgres",
        &url,
        "--task",
        "p-2",
        "--json",
    ]);
    expect(&out, 0);
    assert_eq!(stdout(&out).lines().count(), 6);
    pg().psql_in(
        "cli_ledger",
        "UPDATE ledger_events SET task = 'zz' WHERE seq = 3",
    )
    .unwrap();
    let out = remit(&["ledger", "verify", "--postgres", &url]);
    expect(&out, 1);
    assert!(one_line_error(&out).contains("event 3"));
    let out = remit(&[
        "ledger",
        "verify",
        "--postgres",
        "host=/nonexistent port=1 user=x dbname=y",
    ]);
    expect(&out, 2);
    one_line_error(&out);
}

/// Text an attacker wrote (a receipt's fields, a name a task chose) reaches the terminal
/// escaped, on one line: it can neither forge an `ok:` line nor send escape sequences.
#[test]
fn hostile_text_is_shown_escaped_on_one_line() {
    let f = fixture();
    let receipt = f.path("forged.json");
    let forged = serde_json::json!({
        "payloadType": "x\nremit: ok: receipt verified\u{1b}[32m",
        "payload": "",
        "signatures": [{"keyid": "k\u{1b}]0;title\u{7}", "sig": ""}],
    });
    std::fs::write(&receipt, forged.to_string()).unwrap();
    let out = remit(&["verify", &receipt.display().to_string(), "--key", &f.vkey()]);
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    let line = one_line_error(&out);
    assert!(
        !line.contains('\u{1b}') && !line.contains('\u{7}'),
        "{line:?}"
    );
    assert!(!err.lines().any(|l| l.starts_with("remit: ok")), "{err}");
}

/// A reader that goes away (`| head`) or a full disk never makes a command panic.
#[test]
fn a_closed_or_full_output_is_not_a_panic() {
    let f = fixture();
    let checkpoint = ["ledger", "checkpoint", "--ledger", &f.arg()];
    for args in [
        &["ledger", "verify", "--ledger", &f.arg()][..],
        &["ledger", "info", "--ledger", &f.arg()],
        &checkpoint,
    ] {
        // Standard output thrown away, then a reader that went away before the answer.
        let out = Command::new(REMIT)
            .args(args)
            .env_remove("REMIT_HOME")
            .stdout(std::process::Stdio::from(
                std::fs::File::open("/dev/null").unwrap(),
            ))
            .output()
            .unwrap();
        expect(&out, 0);
        let mut child = Command::new(REMIT)
            .args(args)
            .env_remove("REMIT_HOME")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert!(
            matches!(out.status.code(), Some(0 | 2)),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    }
    let full = Command::new(REMIT)
        .args(checkpoint)
        .env_remove("REMIT_HOME")
        .stdout(
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
        )
        .output()
        .unwrap();
    expect(&full, 2);
    assert!(
        one_line_error(&full).contains("No space left"),
        "{}",
        stderr(&full)
    );
}

/// An input file that never ends (`/dev/zero`) or is far too large is refused with one line,
/// not read into memory; a missing one says its cause once.
#[test]
fn endless_or_missing_inputs_get_one_line() {
    let f = fixture();
    for args in [
        vec!["verify", "/dev/zero", "--key", &f.vkey()],
        vec![
            "ledger",
            "verify",
            "--ledger",
            &f.arg(),
            "--against",
            "/dev/zero",
        ],
        vec!["ledger", "check-proof", "/dev/zero", "--key", &f.vkey()],
        vec![
            "ledger",
            "verify",
            "--ledger",
            &f.arg(),
            "--key",
            "/dev/zero",
        ],
    ] {
        let out = remit(&args);
        expect(&out, 2);
        let line = one_line_error(&out);
        assert!(line.contains("larger than"), "{args:?}: {line}");
    }
    let out = remit(&[
        "ledger",
        "verify",
        "--ledger",
        &f.arg(),
        "--key",
        "/nonexistent/key",
    ]);
    expect(&out, 2);
    let line = one_line_error(&out);
    assert_eq!(line.matches("No such file").count(), 1, "{line}");
}
