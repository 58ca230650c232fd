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

/// The git directory is writable where git needs it, so a task can write `.git/commondir`
/// to send git to a configuration of its own, whose filters and `core.fsmonitor` would run
/// on the host: in remit's own git after the task and in the user's next `git status`. The
/// pointer is put back (the task's version kept aside) and nothing the task configured runs.
#[test]
fn a_repository_pointed_at_a_planted_configuration_runs_nothing_on_the_host() {
    let w = World::new();
    git(&w.ws, &["init", "-q"]);
    std::fs::write(w.ws.join("file.txt"), "one\n").unwrap();
    git(&w.ws, &["add", "file.txt"]);
    git(&w.ws, &["commit", "-qm", "one"]);
    let filtered = w.dir.path().join("filter-ran");
    let monitored = w.dir.path().join("fsmonitor-ran");
    let attack = format!(
        "mkdir evil && printf '[core]\\n\\trepositoryformatversion = 0\\n\\tfsmonitor = touch {monitored}\\n[filter \"x\"]\\n\\tclean = touch {filtered} && cat\\n' > evil/config && \
         ln -s ../.git/objects evil/objects && ln -s ../.git/refs evil/refs && \
         echo ../evil > .git/commondir && echo '* filter=x' > .gitattributes && echo two >> file.txt && \
         git status --short >/dev/null 2>&1; test -f .git/commondir",
        monitored = monitored.display(),
        filtered = filtered.display(),
    );
    let out = w.run(None, &attack);
    assert!(
        out.status.success(),
        "the attack could not be set up: {}",
        show(&out)
    );
    assert!(
        !w.exists(&filtered),
        "remit's git ran the task's filter on the host"
    );
    assert!(
        stderr(&out).contains("commondir") && stderr(&out).contains("remit-quarantine"),
        "{}",
        show(&out)
    );
    assert!(
        !w.exists(&w.ws.join(".git/commondir")),
        "the pointer was left in place"
    );
    assert!(w.exists(&w.ws.join(".git/commondir.remit-quarantine")));
    // The user's next git command on the host.
    let status = Command::new("git")
        .args(["status", "--short"])
        .current_dir(&w.ws)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", &w.ws)
        .output()
        .unwrap();
    assert!(status.status.success());
    assert!(!w.exists(&filtered), "the task's filter ran on the host");
    assert!(
        !w.exists(&monitored),
        "the task's fsmonitor ran on the host"
    );

    // The harmless twin: attributes naming a filter nobody defined, and a commit.
    let out = w.run(
        None,
        &format!("echo '*.txt filter=y' > .gitattributes && {COMMIT}"),
    );
    assert_eq!(ok(&out).trim(), "2", "{}", show(&out));
    assert!(!stderr(&out).contains("remit-quarantine"), "{}", show(&out));
}

/// A repository a task makes in a plain workspace is moved aside when its configuration
/// names programs; moved back by the user, it is a git workspace for the next run, with the
/// task's own configuration, and remit's git after that task runs no filter driver it
/// defines.
#[test]
fn a_repository_a_task_made_runs_none_of_its_filters_on_the_host() {
    let w = World::new();
    let marker = w.dir.path().join("filter-ran");
    let plant = format!(
        "git init -q && git config filter.x.clean 'touch {m}; cat' && git config filter.x.process 'touch {m}' && echo '* filter=x' > .gitattributes && echo one > f",
        m = marker.display()
    );
    let out = w.run(None, &plant);
    assert!(out.status.success(), "{}", show(&out));
    // The repository the task made names programs: moved aside at once.
    assert!(
        stderr(&out).contains("filter.x") && stderr(&out).contains("remit-quarantine"),
        "{}",
        show(&out)
    );
    assert!(!w.exists(&w.ws.join(".git")));
    // Moved back by a user who trusts it: the next task runs in a git workspace whose
    // configuration the first task wrote.
    std::fs::rename(w.ws.join(".git.remit-quarantine"), w.ws.join(".git")).unwrap();
    let out = w.run(None, "echo two >> f");
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        !w.exists(&marker),
        "remit's git ran the task's filter on the host"
    );
}

/// A path remit protects read-only that an earlier task replaced by a symbolic link (to a
/// host secret) is refused, never mounted: a bind of the link would carry its target in.
#[test]
fn a_protected_path_made_a_link_is_refused_not_mounted() {
    let w = World::new();
    git(&w.ws, &["init", "-q"]);
    std::fs::write(w.ws.join("file.txt"), "one\n").unwrap();
    git(&w.ws, &["add", "file.txt"]);
    git(&w.ws, &["commit", "-qm", "one"]);
    // What a first task could leave: a submodule's config that is a link to a host key.
    let module = w.ws.join(".git/modules/x");
    std::fs::create_dir_all(&module).unwrap();
    std::os::unix::fs::symlink(w.home.join(".ssh/id_ed25519"), module.join("config")).unwrap();
    let key = std::fs::read_to_string(w.home.join(".ssh/id_ed25519")).unwrap();
    let out = w.run(None, "cat .git/modules/x/config");
    assert!(!out.status.success(), "{}", show(&out));
    assert!(!stdout(&out).contains(key.trim()), "{}", show(&out));
    assert!(
        stderr(&out).contains("is a symbolic link"),
        "{}",
        show(&out)
    );
    // The twin: a real submodule configuration is readable and stays read-only.
    std::fs::remove_file(module.join("config")).unwrap();
    std::fs::write(module.join("config"), "[core]\n").unwrap();
    let out = w.run(
        None,
        "cat .git/modules/x/config && ! echo x >> .git/modules/x/config 2>/dev/null",
    );
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        std::fs::read_to_string(module.join("config")).unwrap(),
        "[core]\n"
    );
}

/// A remit kept in the workspace it governs (and the Cedar files it names) is read-only to
/// the task: what the next run is allowed is not the task's to change.
#[test]
fn the_remit_in_the_workspace_is_not_the_tasks_to_change() {
    let w = World::new();
    let remit = w.ws.join("ci.remit.toml");
    std::fs::write(&remit, "[policy]\ncedar = [\"extra.cedar\"]\n").unwrap();
    std::fs::write(w.ws.join("extra.cedar"), "// nothing\n").unwrap();
    let before = std::fs::read_to_string(&remit).unwrap();
    let out = w
        .command()
        .args(["run", "--quiet", "--remit"])
        .arg(&remit)
        .args([
            "--",
            "bash",
            "-c",
            "echo '[environment]' >> ci.remit.toml; echo 'permit(principal,action,resource);' >> extra.cedar; echo x > other.toml && echo wrote-other",
        ])
        .output()
        .unwrap();
    assert!(stdout(&out).contains("wrote-other"), "{}", show(&out));
    assert_eq!(std::fs::read_to_string(&remit).unwrap(), before);
    assert_eq!(
        std::fs::read_to_string(w.ws.join("extra.cedar")).unwrap(),
        "// nothing\n"
    );
    assert_eq!(
        std::fs::read_to_string(w.ws.join("other.toml")).unwrap(),
        "x\n"
    );
}

/// The user's `git status` on the host, as after any run; returns its output.
fn user_status(w: &World, dir: &std::path::Path) -> String {
    let out = Command::new("git")
        .args(["status", "--short"])
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", &w.ws)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A repository with one commit, and a second one (`upstream`) beside the workspace.
fn repository_with_upstream(w: &World) -> std::path::PathBuf {
    git(&w.ws, &["init", "-q"]);
    std::fs::write(w.ws.join("file.txt"), "one\n").unwrap();
    git(&w.ws, &["add", "file.txt"]);
    git(&w.ws, &["commit", "-qm", "one"]);
    let upstream = w.dir.path().join("upstream");
    std::fs::create_dir(&upstream).unwrap();
    git(&upstream, &["init", "-q"]);
    std::fs::write(upstream.join("lib.txt"), "lib\n").unwrap();
    git(&upstream, &["add", "lib.txt"]);
    git(&upstream, &["commit", "-qm", "lib"]);
    upstream
}

/// `git status` enters every populated submodule the index names and runs `git status` in
/// it, with that repository's configuration. A task that makes a repository of its own
/// (whose `core.fsmonitor` names a program) and puts it in the index would have the user's
/// next `git status` run the program on the host: its `.git` is moved aside instead. A real
/// submodule, absorbed or embedded, works as before, its configuration read-only.
#[test]
fn a_submodule_the_task_made_runs_nothing_in_the_users_next_git_status() {
    let w = World::new();
    let upstream = repository_with_upstream(&w);
    // A real submodule (absorbed into .git/modules) and an embedded repository.
    git(
        &w.ws,
        &[
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "add",
            "-q",
            &upstream.display().to_string(),
            "lib",
        ],
    );
    std::fs::create_dir(w.ws.join("embedded")).unwrap();
    git(&w.ws.join("embedded"), &["init", "-q"]);
    git(
        &w.ws.join("embedded"),
        &["commit", "-q", "--allow-empty", "-m", "e"],
    );
    git(&w.ws, &["add", "embedded"]);
    git(&w.ws, &["commit", "-qm", "submodules"]);

    let monitored = w.dir.path().join("fsmonitor-ran");
    let attack = format!(
        "mkdir evil && cd evil && git init -q && git -c user.email=a@example.com -c user.name=a commit -q --allow-empty -m x && \
         git config core.fsmonitor 'touch {m}; false' && echo x > f && cd .. && \
         git update-index --add --cacheinfo 160000,$(git -C evil rev-parse HEAD),evil && git ls-files -s evil",
        m = monitored.display()
    );
    let out = w.run(None, &attack);
    assert!(ok(&out).starts_with("160000"), "{}", show(&out));
    assert!(
        stderr(&out).contains("`evil`") && stderr(&out).contains("remit-quarantine"),
        "{}",
        show(&out)
    );
    assert!(!w.exists(&w.ws.join("evil/.git")));
    assert!(w.exists(&w.ws.join("evil/.git.remit-quarantine/config")));
    user_status(&w, &w.ws);
    assert!(
        !w.exists(&monitored),
        "the task's fsmonitor ran in the user's git status"
    );

    // The real submodules: configuration and hooks read-only, commits work, nothing moved.
    let out = w.run(
        None,
        "for d in lib embedded; do ! git -C $d config core.fsmonitor x 2>/dev/null || exit 9; \
         ! touch $(git -C $d rev-parse --git-dir)/hooks/post-checkout 2>/dev/null || exit 8; done; \
         cd lib && echo two >> lib.txt && git -c user.email=a@example.com -c user.name=a commit -qam two && git log --oneline | wc -l",
    );
    assert_eq!(ok(&out).trim(), "2", "{}", show(&out));
    assert!(!stderr(&out).contains("remit-quarantine"), "{}", show(&out));
    assert!(w.ws.join("lib/.git").is_file());
    assert!(w.ws.join("embedded/.git").is_dir());
    assert!(user_status(&w, &w.ws).contains("lib"));
}

/// A task can rewrite a real submodule's `.git` file to lead to a repository it made, or
/// write `commondir` into the submodule's git directory to send git to a configuration of
/// its own: either is undone, and the user's next `git status` runs nothing of the task's.
#[test]
fn a_submodule_pointed_at_a_planted_repository_runs_nothing_on_the_host() {
    let w = World::new();
    let upstream = repository_with_upstream(&w);
    git(
        &w.ws,
        &[
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "add",
            "-q",
            &upstream.display().to_string(),
            "lib",
        ],
    );
    git(&w.ws, &["commit", "-qm", "submodule"]);
    let gitfile = std::fs::read_to_string(w.ws.join("lib/.git")).unwrap();
    let monitored = w.dir.path().join("fsmonitor-ran");
    let plant = format!(
        "git init -q planted && git -C planted config core.fsmonitor 'touch {m}; false' && \
         cp -r .git/modules/lib/objects .git/modules/lib/refs .git/modules/lib/HEAD planted/.git/",
        m = monitored.display()
    );

    // The `.git` file, rewritten.
    let out = w.run(
        None,
        &format!("{plant} && echo 'gitdir: ../planted/.git' > lib/.git"),
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stderr(&out).contains("`lib`") && stderr(&out).contains("remit-quarantine"),
        "{}",
        show(&out)
    );
    user_status(&w, &w.ws);
    assert!(
        !w.exists(&monitored),
        "the task's fsmonitor ran on the host"
    );
    std::fs::rename(
        w.ws.join("lib/.git.remit-quarantine"),
        w.dir.path().join("old"),
    )
    .unwrap();
    std::fs::write(w.ws.join("lib/.git"), &gitfile).unwrap();
    std::fs::remove_dir_all(w.ws.join("planted")).unwrap();

    // `commondir` in the submodule's git directory.
    let out = w.run(
        None,
        &format!("{plant} && echo ../../../planted/.git > .git/modules/lib/commondir"),
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stderr(&out).contains("commondir") && stderr(&out).contains("remit-quarantine"),
        "{}",
        show(&out)
    );
    assert!(!w.exists(&w.ws.join(".git/modules/lib/commondir")));
    user_status(&w, &w.ws);
    assert!(
        !w.exists(&monitored),
        "the task's fsmonitor ran on the host"
    );

    // The twin: the submodule's own work, untouched.
    let out = w.run(None, "cat lib/lib.txt && git -C lib status --short");
    assert_eq!(ok(&out).trim(), "lib", "{}", show(&out));
    assert!(!stderr(&out).contains("remit-quarantine"), "{}", show(&out));
}

/// Two tasks at once in one repository: the second is refused (what the first leaves in the
/// git directory would become what is put back after the second); in another workspace
/// at the same time a task runs.
#[test]
fn tasks_in_one_repository_run_one_at_a_time() {
    let w = World::new();
    git(&w.ws, &["init", "-q"]);
    git(&w.ws, &["commit", "-q", "--allow-empty", "-m", "one"]);
    let started = w.ws.join("started");
    let mut first = w
        .command()
        .args(["run", "--quiet", "--", "bash", "-c"])
        .arg(format!(
            "touch {}; for i in $(seq 1200); do test -e go-on && break; sleep 0.05; done",
            started.display()
        ))
        .spawn()
        .unwrap();
    let begun = std::time::Instant::now();
    while !started.exists() {
        assert!(begun.elapsed() < std::time::Duration::from_secs(30));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = w.run(None, "echo second");
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        stderr(&out).contains("one at a time") && !stdout(&out).contains("second"),
        "{}",
        show(&out)
    );
    // Nor through another path to the same directory (a bind mount: root only).
    let alias = w.dir.path().join("alias");
    std::fs::create_dir_all(&alias).unwrap();
    let bound = is_root()
        && std::process::Command::new("mount")
            .arg("--bind")
            .arg(&w.ws)
            .arg(&alias)
            .status()
            .unwrap()
            .success();
    if bound {
        let out = w
            .command()
            .current_dir(&alias)
            .args(["run", "--quiet", "--", "echo", "second"])
            .output()
            .unwrap();
        let _ = std::process::Command::new("umount").arg(&alias).status();
        assert_eq!(out.status.code(), Some(2), "{}", show(&out));
        assert!(stderr(&out).contains("one at a time"), "{}", show(&out));
    }
    std::fs::write(w.ws.join("go-on"), "").unwrap();
    assert!(first.wait().unwrap().success());
    // Once the first has ended, the next runs.
    assert_eq!(ok(&w.run(None, "echo second")).trim(), "second");
}

/// A supervisor killed outright (SIGKILL, the kernel's OOM killer) cannot put back what its
/// task wrote to the repository's layout: the next task that starts, in any workspace, does
/// it before anything else, says so, and records the dead task's end. A task still running
/// in its repository is left alone.
#[test]
fn what_a_task_wrote_in_a_repository_is_put_back_after_its_supervisor_is_killed() {
    let w = World::new();
    git(&w.ws, &["init", "-q"]);
    git(&w.ws, &["commit", "-q", "--allow-empty", "-m", "one"]);
    let monitored = w.dir.path().join("fsmonitor-ran");
    let planted = w.ws.join(".git/config.worktree");
    let (mut victim, _out) = w.start(
        None,
        &format!(
            "printf '[core]\\n\\tfsmonitor = touch {}\\n' > .git/config.worktree && echo ready && sleep 60",
            monitored.display()
        ),
    );
    // A task that starts meanwhile, elsewhere, leaves the running one's repository alone.
    let other = w.dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let out = w
        .command()
        .current_dir(&other)
        .args(["run", "--quiet", "--", "true"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert!(!stderr(&out).contains("supervisor"), "{}", show(&out));
    assert!(
        w.exists(&planted),
        "a running task's repository was touched"
    );

    // The supervisor is killed: its task dies with it, and the put-back never runs.
    victim.kill().unwrap();
    victim.wait().unwrap();
    assert!(w.exists(&planted));
    let task = records(&w)
        .into_iter()
        .next()
        .expect("the task's recovery record");

    // The next task, in another workspace, puts it back first.
    let out = w
        .command()
        .current_dir(&other)
        .args(["run", "--quiet", "--", "true"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stderr(&out).contains(&format!("task {task} ended without its supervisor"))
            && stderr(&out).contains("config.worktree"),
        "{}",
        show(&out)
    );
    assert!(!w.exists(&planted), "what the task wrote was left in place");
    assert!(w.exists(&w.ws.join(".git/config.worktree.remit-quarantine")));
    assert_eq!(user_status(&w, &w.ws), "");
    assert!(
        !w.exists(&monitored),
        "the task's fsmonitor ran on the host"
    );
    // Its end is recorded, once; a second start has nothing more to say.
    let recorded = task_ends(&w, &task);
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert!(
        recorded[0].contains("supervisor") && recorded[0].contains("config.worktree"),
        "{recorded:?}"
    );
    let out = w.run(None, "git status --short");
    assert!(out.status.success(), "{}", show(&out));
    assert!(!stderr(&out).contains("supervisor"), "{}", show(&out));
    assert_eq!(task_ends(&w, &task).len(), 1);
    assert!(
        !w.exists(&monitored),
        "the task's fsmonitor ran on the host"
    );
}

/// A task outside any repository whose supervisor is killed gets its end recorded by the next
/// start too, with nothing to put back and nothing to warn about.
#[test]
fn a_task_whose_supervisor_is_killed_gets_its_end_recorded() {
    let w = World::new();
    let (mut victim, _out) = w.start(None, "echo ready && sleep 60");
    victim.kill().unwrap();
    victim.wait().unwrap();
    assert_eq!(records(&w), Vec::<String>::new());
    let events = crate::code_support::ledger(&w);
    let task = events
        .iter()
        .find(|e| e["body"]["kind"] == "run_authorized")
        .map(|e| e["task"].as_str().unwrap().to_owned())
        .unwrap();
    assert!(!events.iter().any(|e| e["body"]["kind"] == "task_end"));
    let out = w.run(None, "true");
    assert!(out.status.success(), "{}", show(&out));
    assert!(!stderr(&out).contains("supervisor"), "{}", show(&out));
    let ends = task_ends(&w, &task);
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert!(ends[0].contains("supervisor was killed"), "{ends:?}");
}

/// The details of `task`'s `task_end` events in the world's ledger.
fn task_ends(w: &World, task: &str) -> Vec<String> {
    crate::code_support::ledger(w)
        .iter()
        .filter(|e| e["task"] == task && e["body"]["kind"] == "task_end")
        .map(|e| e["body"]["detail"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// The tasks with a recovery record in the world's home.
fn records(w: &World) -> Vec<String> {
    std::fs::read_dir(w.state.join("recovery"))
        .map(|dir| {
            dir.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A recovery record that cannot be read may be of the repository a task is about to run
/// in: what a dead task planted there would become the new task's "before". No task runs in
/// a git repository until someone has looked; one outside any repository runs.
#[test]
fn an_unreadable_recovery_record_keeps_tasks_out_of_repositories() {
    let w = World::new();
    std::fs::create_dir_all(w.state.join("recovery")).unwrap();
    std::fs::write(w.state.join("recovery/01DEAD.json"), "{\"task\":").unwrap();
    // The twin: a plain workspace.
    let out = w.run(None, "echo plain");
    assert_eq!(ok(&out).trim(), "plain", "{}", show(&out));
    assert!(
        stderr(&out).contains("could not be put back"),
        "{}",
        show(&out)
    );
    git(&w.ws, &["init", "-q"]);
    git(&w.ws, &["commit", "-q", "--allow-empty", "-m", "one"]);
    let out = w.run(None, "echo ran");
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(!stdout(&out).contains("ran"), "{}", show(&out));
    assert!(
        stderr(&out).contains("no task runs in a git repository until it is resolved"),
        "{}",
        show(&out)
    );
    // Resolved: the file removed, tasks run there again.
    std::fs::remove_file(w.state.join("recovery/01DEAD.json")).unwrap();
    assert_eq!(ok(&w.run(None, "echo ran")).trim(), "ran");
}

/// `remit run --log` in the workspace; the task's records.
fn run_logged(w: &World, script: &str) -> (std::process::Output, Vec<serde_json::Value>) {
    let log = w.dir.path().join(format!("{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let out = w
        .command()
        .args(["run", "--quiet", "--log"])
        .arg(&log)
        .args(["--", "bash", "-c", script])
        .output()
        .unwrap();
    let records = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (out, records)
}

/// Every path under `dir`, sorted.
fn listing(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        out.push(path.display().to_string());
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(listing(&path));
        }
    }
    out.sort();
    out
}

/// After a task, remit lists what it changed with git, as the supervisor (often root). The
/// task could make the repository's object directories links to a host directory, which that
/// git would write its new objects into: the object store is checked first, and remit's git
/// writes no object into the repository at all (a scratch store, the repository's read as an
/// alternate). The twin: a task that only adds a file has its change recorded, and the
/// repository's object store is exactly as the task left it.
#[test]
fn remits_git_writes_nothing_through_links_in_the_object_store() {
    let w = World::new();
    git(&w.ws, &["init", "-q"]);
    std::fs::write(w.ws.join("file.txt"), "one\n").unwrap();
    git(&w.ws, &["add", "file.txt"]);
    git(&w.ws, &["commit", "-qm", "one"]);

    // The twin.
    let before = listing(&w.ws.join(".git/objects"));
    let (out, records) = run_logged(&w, "echo new > added.txt");
    ok(&out);
    let changes = records
        .iter()
        .find(|e| e["body"]["kind"] == "file_changes")
        .expect("a file_changes record");
    assert_eq!(changes["body"]["added"], 1, "{changes}");
    assert_eq!(
        listing(&w.ws.join(".git/objects")),
        before,
        "remit's git wrote into the repository's object store"
    );

    // The attack: every fan-out directory a link to a directory the test owns, outside the
    // workspace (a host directory root's git would write into).
    let target = tempfile::tempdir().unwrap();
    let (out, records) = run_logged(
        &w,
        &format!(
            "cd .git/objects && for d in $(printf '%02x ' $(seq 0 255)); do \
               if [ -d $d ]; then mv $d $d.real; fi; ln -s {t} $d; done; cd ../..; \
             echo another > another.txt",
            t = target.path().display()
        ),
    );
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        listing(target.path()),
        Vec::<String>::new(),
        "remit's git wrote through the task's link"
    );
    assert!(
        !records.iter().any(|e| e["body"]["kind"] == "file_changes"),
        "changes were read through a store the task had made links of"
    );
    assert!(
        show(&out).contains("object store")
            || records
                .iter()
                .any(|e| e.to_string().contains("object store")),
        "{}",
        show(&out)
    );
}

/// An action's host command runs git in the workspace while the task runs: a `commondir`
/// pointer the task wrote would send that git to a configuration the task wrote (whose
/// `core.sshCommand` or credential helper would run on the host). Host commands are pinned to
/// the git directories found before the task. The twin: the repository's own configuration
/// is what the command reads.
#[test]
fn an_actions_git_reads_the_repository_not_a_pointer_the_task_planted() {
    let w = World::new();
    git(&w.ws, &["init", "-q"]);
    std::fs::write(w.ws.join("file.txt"), "one\n").unwrap();
    git(&w.ws, &["add", "file.txt"]);
    git(&w.ws, &["commit", "-qm", "one"]);
    git(&w.ws, &["config", "remit.marker", "real"]);
    let remit = r#"
[actions.probe]
bind_workspace = false
run = ["sh", "-c", "echo marker=$(git config --get remit.marker || echo unset)"]
"#;
    let out = w.run(
        Some(remit),
        "remit act probe; \
         mkdir -p evil/objects evil/refs && printf '[remit]\\n\\tmarker = planted\\n' > evil/config && \
         echo ../evil > .git/commondir && echo planted-pointer; remit act probe",
    );
    let text = stdout(&out);
    assert!(text.contains("planted-pointer"), "{}", show(&out));
    assert_eq!(text.matches("marker=real").count(), 2, "{}", show(&out));
    assert!(!text.contains("marker=planted"), "{}", show(&out));
}
