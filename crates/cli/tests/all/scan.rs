//! `remit scan`, run as the real binary in a fresh temp dir.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const REMIT: &str = env!("CARGO_BIN_EXE_remit");

/// A GitHub classic token with a valid checksum (random, never issued).
const GH_TOKEN: &str = "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";
const GH_SECRET_PART: &str = "C3KCQypnDyzoGQmTr8gbw5XbkwrBJG";
const DB_PASSWORD: &str = "Qm7#xP2!vK9@wL";

fn remit(dir: &Path, args: &[&str]) -> Output {
    Command::new(REMIT)
        .current_dir(dir)
        .arg("scan")
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("CLICOLOR_FORCE")
        .output()
        .expect("run remit")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// No output of the command contains a secret.
fn assert_no_secret(output: &Output) {
    for stream in [&output.stdout, &output.stderr] {
        let s = text(stream);
        assert!(!s.contains(GH_SECRET_PART), "a token leaked");
        assert!(!s.contains(DB_PASSWORD), "a password leaked");
    }
}

fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("src")).expect("mkdir");
    std::fs::write(
        dir.path().join("src/main.rs"),
        "fn main() { println!(\"hi\"); }\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("src/config.py"),
        format!("API = 'https://api.acme.io'\nGITHUB_TOKEN = \"{GH_TOKEN}\"\n"),
    )
    .expect("write");
    std::fs::write(
        dir.path().join(".env"),
        format!("DB_PASSWORD={DB_PASSWORD}\n"),
    )
    .expect("write");
    dir
}

#[test]
fn clean_tree_exits_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("README.md"),
        "# nothing secret here\npassword = \"${DB_PASSWORD}\"\n",
    )
    .expect("write");
    let out = remit(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    assert!(text(&out.stderr).contains("0 findings"));
}

#[test]
fn findings_exit_1_grouped_by_file_without_secrets() {
    let dir = workspace();
    let out = remit(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_no_secret(&out);
    let stdout = text(&out.stdout);
    assert!(stdout.contains(".env\n"), "{stdout}");
    assert!(stdout.contains("src/config.py\n"), "{stdout}");
    assert!(
        stdout.contains("2:17") && stdout.contains("github-pat-classic"),
        "{stdout}"
    );
    assert!(stdout.contains("generic-env-password"), "{stdout}");
    assert!(!stdout.contains('\x1b'), "no colour when not a terminal");
    assert!(text(&out.stderr).contains("2 findings in 2 files"));
}

#[test]
fn colour_can_be_forced() {
    let dir = workspace();
    let out = remit(dir.path(), &["--color", "always"]);
    assert!(text(&out.stdout).contains('\x1b'));
    assert_no_secret(&out);
}

#[test]
fn json_report() {
    let dir = workspace();
    let out = remit(dir.path(), &["--json", "src"]);
    assert_eq!(out.status.code(), Some(1));
    assert_no_secret(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let findings = report["findings"].as_array().expect("findings");
    assert_eq!(findings.len(), 1);
    let f = &findings[0];
    assert_eq!(f["rule"], "github-pat-classic");
    assert_eq!(f["severity"], "critical");
    assert_eq!(f["path"], "src/config.py");
    assert_eq!(f["line"], 2);
    assert_eq!(f["column"], 17);
    assert_eq!(f["fingerprint"].as_str().map(str::len), Some(32));
}

#[test]
fn sarif_log() {
    let dir = workspace();
    let out = remit(dir.path(), &["--sarif"]);
    assert_eq!(out.status.code(), Some(1));
    assert_no_secret(&out);
    let log: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(log["version"], "2.1.0");
    let run = &log["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "remit");
    let results = run["results"].as_array().expect("results");
    assert_eq!(results.len(), 2);
    for r in results {
        let rule_index = r["ruleIndex"].as_u64().expect("index") as usize;
        assert_eq!(
            run["tool"]["driver"]["rules"][rule_index]["id"],
            r["ruleId"]
        );
        assert!(
            r["locations"][0]["physicalLocation"]["region"]["startLine"]
                .as_u64()
                .is_some()
        );
        assert!(r["partialFingerprints"]["remitSecret/v1"].is_string());
    }
}

#[test]
fn baseline_suppresses_accepted_findings() {
    let dir = workspace();
    let baseline = dir.path().join("baseline.json");
    let out = remit(
        dir.path(),
        &["--write-baseline", baseline.to_str().expect("utf8")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_no_secret(&out);
    assert!(
        !std::fs::read_to_string(&baseline)
            .expect("read")
            .contains(GH_SECRET_PART)
    );
    let out = remit(dir.path(), &["--baseline", "baseline.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("2 suppressed by the baseline"));
    // A new secret is still reported.
    std::fs::write(
        dir.path().join("new.txt"),
        "curl -u admin:Wq8!zK2mP7xy https://ci.acme.io\n",
    )
    .expect("write");
    let out = remit(dir.path(), &["--baseline", "baseline.json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("curl-user-password"));
}

#[test]
fn errors_exit_2_on_one_line_naming_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (args, path) in [
        (vec!["does-not-exist"], "does-not-exist"),
        (vec!["--baseline", "missing.json"], "missing.json"),
        (vec!["--rules", "missing.toml"], "missing.toml"),
        (vec!["--git", "."], "."),
    ] {
        let out = remit(dir.path(), &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = text(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(&format!("`{path}`")), "{args:?}: {stderr}");
        // The reason once, not repeated by its cause.
        assert!(
            stderr.matches("(os error").count() <= 1,
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn a_bad_rule_file_names_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("mine.toml"),
        "[[rule]]\nid = \"mine\"\ndescription = \"x\"\nkeywords = [\"abc\"]\npattern = 'abc('\nmatch = [\"abc\"]\nnot_match = [\"x\"]\n",
    )
    .expect("write");
    let out = remit(dir.path(), &["--rules", "mine.toml"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("mine.toml:1: rule `mine`: bad pattern"),
        "{stderr}"
    );
}

#[test]
fn user_rules_are_used() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("acme.toml"),
        "[[rule]]\nid = \"acme-token\"\ndescription = \"ACME token\"\nkeywords = [\"acme_\"]\npattern = '\\b(?P<secret>acme_[a-z0-9]{24})\\b'\nmatch = [\"acme_9f8e7d6c5b4a39281706f5e4\"]\nnot_match = [\"acme_x\"]\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("a.txt"),
        "k = acme_9f8e7d6c5b4a39281706f5e4\n",
    )
    .expect("write");
    let out = remit(
        dir.path(),
        &["--rules", "acme.toml", "--no-builtin-rules", "a.txt"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("acme-token"));
}

#[test]
fn standard_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(REMIT)
        .current_dir(dir.path())
        .args(["scan", "-", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("$ env\nHOME=/root\nGH={GH_TOKEN}\n").as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(1));
    assert_no_secret(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["findings"][0]["path"], "<stdin>");
    assert_eq!(report["findings"][0]["line"], 3);
    assert!(report["bytes"].as_u64().unwrap_or(0) > 0, "{report}");
}

#[test]
fn skips_are_counted_and_listed_with_verbose() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("blob.bin"), b"\x00\x01\x02binary").expect("write");
    std::fs::write(dir.path().join("big.log"), vec![b'a'; 4096]).expect("write");
    let out = remit(dir.path(), &["--max-file-size", "1K"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("2 skipped"),
        "{}",
        text(&out.stderr)
    );
    let out = remit(dir.path(), &["--max-file-size", "1K", "-v"]);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("`blob.bin`: skipped: binary file"),
        "{stderr}"
    );
    assert!(
        stderr.contains("`big.log`: skipped: 4096 bytes is over the 1024-byte limit"),
        "{stderr}"
    );
}

#[test]
fn git_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path();
    let git = |args: &[&str]| {
        let ok = Command::new("git")
            .current_dir(repo)
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@example.com",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", repo)
            .status()
            .expect("git")
            .success();
        assert!(ok, "git {args:?}");
    };
    git(&["init", "-q", "-b", "main"]);
    std::fs::write(
        repo.join("deploy.sh"),
        format!("export GITHUB_TOKEN={GH_TOKEN}\n"),
    )
    .expect("write");
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "oops"]);
    std::fs::write(repo.join("deploy.sh"), "export GITHUB_TOKEN=\"$TOKEN\"\n").expect("write");
    git(&["commit", "-q", "-am", "fix"]);
    // The working tree is clean, the history is not.
    assert_eq!(remit(repo, &[]).status.code(), Some(0));
    let out = remit(repo, &["--git", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_no_secret(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let f = &report["findings"][0];
    assert_eq!(f["path"], "deploy.sh");
    assert_eq!(f["commit"].as_str().map(str::len), Some(40));
    let out = remit(repo, &["--git", "--rev", "HEAD~1..HEAD"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}
