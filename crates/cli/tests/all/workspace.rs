//! Git workspaces: commits work inside a task; hooks and config cannot be planted.

use std::process::Command;

use crate::support::*;

fn git(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("git")
        .args([
            "-c",
            "user.email=t@example.com",
            "-c",
            "user.name=t",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const COMMIT: &str = "echo change >> file.txt && git -c user.email=agent@example.com -c user.name=agent commit -qam change && git log --oneline | wc -l";

#[test]
fn commits_in_a_repository_hooks_and_config_protected() {
    let w = World::new();
    git(&w.ws, &["init", "-q"]);
    std::fs::write(w.ws.join("file.txt"), "one\n").unwrap();
    git(&w.ws, &["add", "file.txt"]);
    git(&w.ws, &["commit", "-qm", "one"]);
    let config_before = std::fs::read_to_string(w.ws.join(".git/config")).unwrap();

    let out = w.run(None, COMMIT);
    assert_eq!(ok(&out).trim(), "2");
    let log = Command::new("git")
        .args(["log", "--oneline"])
        .current_dir(&w.ws)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&log.stdout).lines().count(),
        2,
        "the commit did not reach the host repository"
    );

    // Attacks: plant a hook, change the config (core.hooksPath, fsmonitor), replace the hooks
    // directory.
    let out = w.run(
        None,
        "echo 'touch /tmp/pwned' > .git/hooks/post-checkout 2>/dev/null; chmod +x .git/hooks/post-checkout 2>/dev/null; \
         git config core.fsmonitor 'touch /tmp/pwned' 2>/dev/null; echo '[core] hooksPath = evil' >> .git/config 2>/dev/null; \
         mv .git/hooks .git/hooks-old 2>/dev/null; rm -rf .git/hooks 2>/dev/null; true",
    );
    ok(&out);
    assert!(
        !w.exists(&w.ws.join(".git/hooks/post-checkout")),
        "a hook was planted"
    );
    assert!(w.exists(&w.ws.join(".git/hooks")));
    assert_eq!(
        std::fs::read_to_string(w.ws.join(".git/config")).unwrap(),
        config_before,
        "the git config was changed"
    );
}

#[test]
fn commits_in_a_linked_worktree() {
    let w = World::new();
    let main_repo = w.dir.path().join("main-repo");
    std::fs::create_dir(&main_repo).unwrap();
    git(&main_repo, &["init", "-q"]);
    std::fs::write(main_repo.join("file.txt"), "one\n").unwrap();
    git(&main_repo, &["add", "file.txt"]);
    git(&main_repo, &["commit", "-qm", "one"]);
    // The task's workspace is a worktree on its own branch.
    std::fs::remove_dir(&w.ws).unwrap();
    git(
        &main_repo,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "remit/task",
            w.ws.to_str().unwrap(),
        ],
    );
    let config_before = std::fs::read_to_string(main_repo.join(".git/config")).unwrap();

    let out = w.run(None, COMMIT);
    assert_eq!(ok(&out).trim(), "2", "{}", show(&out));
    let log = Command::new("git")
        .args(["log", "--oneline", "remit/task"])
        .current_dir(&main_repo)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&log.stdout).lines().count(),
        2,
        "the worktree commit is not in the main repository"
    );

    let hook = main_repo.join(".git/hooks/pre-commit");
    let out = w.run(
        None,
        &format!(
            "echo 'touch /tmp/pwned' > {} 2>/dev/null; git config core.hooksPath /tmp 2>/dev/null; echo x >> {}/.git/config 2>/dev/null; true",
            hook.display(),
            main_repo.display()
        ),
    );
    ok(&out);
    assert!(
        !w.exists(&hook),
        "a hook was planted in the main repository"
    );
    assert_eq!(
        std::fs::read_to_string(main_repo.join(".git/config")).unwrap(),
        config_before
    );
    // The rest of the main repository's tree is not visible: only its git directory.
    let out = w.run(
        None,
        &format!(
            "cat {}/file.txt 2>/dev/null && echo VISIBLE; true",
            main_repo.display()
        ),
    );
    assert!(!stdout(&out).contains("VISIBLE"), "{}", show(&out));
}

#[test]
fn a_forged_git_file_cannot_grant_a_directory() {
    let w = World::new();
    // A `.git` file pointing somewhere else must not get that place mounted read-write.
    std::fs::write(
        w.ws.join(".git"),
        format!("gitdir: {}\n", w.outside.display()),
    )
    .unwrap();
    let out = w.run(None, "true");
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        stderr(&out).contains("not a git directory of this worktree"),
        "{}",
        show(&out)
    );
    assert_eq!(stderr(&out).lines().count(), 1, "{}", show(&out));
}
