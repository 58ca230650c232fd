//! History scans with the real git binary.

use std::path::Path;
use std::process::Command;

use remit_scan::GitOptions;

use crate::support::{github_token, ids, scanner};

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .arg("-C")
        .arg(dir)
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
        .env("HOME", dir)
        .status()
        .expect("git runs");
    assert!(status.success(), "git {args:?}");
}

#[test]
fn added_lines_of_every_commit_are_scanned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path();
    git(repo, &["init", "-q", "-b", "main"]);
    let token = github_token("ghp_", "Zq8mK2vR7pLxWq3nB6cT9yH4jF1dS5");
    std::fs::write(repo.join("app.py"), "print('hello')\n").expect("write");
    git(repo, &["add", "."]);
    git(repo, &["commit", "-q", "-m", "first"]);
    std::fs::write(
        repo.join("app.py"),
        format!("print('hello')\nTOKEN = \"{token}\"\n"),
    )
    .expect("write");
    std::fs::write(repo.join("odd name\t.env"), "DB_PASSWORD=Qm7#xP2!vK9@wL\n").expect("write");
    git(repo, &["add", "."]);
    git(repo, &["commit", "-q", "-m", "add secrets"]);
    // Removing the secrets later does not remove them from history.
    std::fs::write(repo.join("app.py"), "print('hello')\n").expect("write");
    std::fs::remove_file(repo.join("odd name\t.env")).expect("rm");
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", "remove secrets"]);

    let report = scanner()
        .scan_git(repo, &GitOptions::default())
        .expect("scan");
    let mut found = ids(&report.findings);
    found.sort();
    assert_eq!(found, ["generic-env-password", "github-pat-classic"]);
    let gh = report
        .findings
        .iter()
        .find(|f| &*f.rule == "github-pat-classic")
        .expect("gh");
    assert_eq!(gh.line, 2);
    assert_eq!(gh.path.as_deref(), Some(Path::new("app.py")));
    assert_eq!(gh.commit.as_ref().map(String::len), Some(40));
    let env = report
        .findings
        .iter()
        .find(|f| &*f.rule == "generic-env-password")
        .expect("env");
    assert_eq!(env.path.as_deref(), Some(Path::new("odd name\t.env")));
}

#[test]
fn not_a_repository_is_one_line_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = scanner()
        .scan_git(dir.path(), &GitOptions::default())
        .expect_err("not a repo");
    let text = err.to_string();
    assert!(
        text.contains(&format!("`{}`", dir.path().display())) && !text.contains('\n'),
        "{text}"
    );
}

/// Revisions narrow the history; a hostile repository's diff drivers and textconv filters
/// never run (they would write a marker the test owns).
#[test]
fn revisions_narrow_history_and_repository_programs_never_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).expect("mkdir");
    let marker = dir.path().join("marker");
    git(&repo, &["init", "-q", "-b", "main"]);
    let program = format!("touch {}; cat", marker.display());
    git(&repo, &["config", "diff.evil.textconv", &program]);
    git(&repo, &["config", "diff.external", &program]);
    std::fs::write(repo.join(".gitattributes"), "*.txt diff=evil\n").expect("write");
    std::fs::write(repo.join("old.txt"), "DB_PASSWORD=Qm7#xP2!vK9@wL\n").expect("write");
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "old"]);
    git(&repo, &["tag", "v1"]);
    let token = github_token("ghp_", "Zq8mK2vR7pLxWq3nB6cT9yH4jF1dS5");
    std::fs::write(repo.join("new.txt"), format!("TOKEN = \"{token}\"\n")).expect("write");
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "new"]);

    let only_new = |revisions: &[&str]| {
        let report = scanner()
            .scan_git(
                &repo,
                &GitOptions {
                    revisions: revisions.iter().map(|r| (*r).to_owned()).collect(),
                    progress: None,
                },
            )
            .expect("scan");
        let mut found = ids(&report.findings);
        found.sort();
        found
    };
    assert_eq!(only_new(&["v1..main"]), ["github-pat-classic"]);
    assert_eq!(only_new(&["main", "^v1"]), ["github-pat-classic"]);
    assert_eq!(only_new(&["v1"]), ["generic-env-password"]);
    assert_eq!(
        only_new(&[]),
        ["generic-env-password", "github-pat-classic"]
    );
    let err = scanner()
        .scan_git(
            &repo,
            &GitOptions {
                revisions: vec!["no-such-branch".into()],
                progress: None,
            },
        )
        .expect_err("bad revision");
    assert!(err.to_string().contains("no-such-branch"), "{err}");
    assert!(!marker.exists(), "a program of the repository ran");
}
