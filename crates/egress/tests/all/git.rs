//! Real `git clone` and `git push` over HTTPS through the proxy, to git's own
//! `http-backend` behind a small CGI harness: each pushed ref is a `git_push` effect.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use crate::support::*;

/// Run `git http-backend` for one request (CGI).
fn backend(root: &Path) -> Handler {
    let root = root.to_path_buf();
    Arc::new(move |seen: &Seen| {
        let uri: http::Uri = seen.uri.parse().unwrap();
        let mut command = Command::new("git");
        command
            .arg("http-backend")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("GIT_PROJECT_ROOT", &root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("REMOTE_USER", "tester")
            .env("REMOTE_ADDR", "127.0.0.1")
            .env("REQUEST_METHOD", &seen.method)
            .env("PATH_INFO", uri.path())
            .env("QUERY_STRING", uri.query().unwrap_or(""))
            .env("CONTENT_LENGTH", seen.body.len().to_string())
            .env("CONTENT_TYPE", seen.header("content-type").unwrap_or(""))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        if let Some(enc) = seen.header("content-encoding") {
            command.env("HTTP_CONTENT_ENCODING", enc);
        }
        if let Some(p) = seen.header("git-protocol") {
            command.env("GIT_PROTOCOL", p);
        }
        let mut child = command.spawn().unwrap();
        {
            use std::io::Write as _;
            let mut stdin = child.stdin.take().unwrap();
            let body = seen.body.clone();
            std::thread::spawn(move || {
                let _ = stdin.write_all(&body);
            });
        }
        let out = child.wait_with_output().unwrap();
        let split = out
            .stdout
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| (p, 4))
            .or_else(|| {
                out.stdout
                    .windows(2)
                    .position(|w| w == b"\n\n")
                    .map(|p| (p, 2))
            });
        let (head, body) = match split {
            Some((p, n)) => (
                String::from_utf8_lossy(&out.stdout[..p]).into_owned(),
                out.stdout[p + n..].to_vec(),
            ),
            None => (String::new(), out.stdout.clone()),
        };
        let mut status = 200;
        let mut headers = Vec::new();
        for line in head.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            if k.eq_ignore_ascii_case("status") {
                status = v
                    .trim()
                    .split(' ')
                    .next()
                    .unwrap_or("200")
                    .parse()
                    .unwrap_or(500);
            } else {
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        (status, headers, body)
    })
}

fn git(proxy: &Proxy, dir: &Path, args: &[&str]) -> (bool, String) {
    let mut command = proxy.command("git", args);
    command
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "agent")
        .env("GIT_AUTHOR_EMAIL", "agent@example.invalid")
        .env("GIT_COMMITTER_NAME", "agent")
        .env("GIT_COMMITTER_EMAIL", "agent@example.invalid");
    let out = command.output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn plain_git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .env("GIT_AUTHOR_NAME", "owner")
        .env("GIT_AUTHOR_EMAIL", "owner@example.invalid")
        .env("GIT_COMMITTER_NAME", "owner")
        .env("GIT_COMMITTER_EMAIL", "owner@example.invalid")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn pushes_are_decided_per_ref() {
    let rt = runtime();
    let server_dir = tempfile::tempdir().unwrap();
    let root = server_dir.path();
    // The remote: a bare repository with one commit on main.
    let seed = root.join("seed");
    std::fs::create_dir(&seed).unwrap();
    plain_git(&seed, &["init", "-q", "-b", "main"]);
    std::fs::write(seed.join("README"), "hello\n").unwrap();
    plain_git(&seed, &["add", "README"]);
    plain_git(&seed, &["commit", "-q", "-m", "first"]);
    plain_git(root, &["clone", "-q", "--bare", "seed", "repo.git"]);
    let bare = root.join("repo.git");

    let ca = OriginCa::new();
    let server = rt.block_on(origin(
        "127.0.0.1:0",
        Some(ca.server_config(&["git.test"])),
        backend(root),
    ));
    let remit = format!(
        "[network]\nallow = [\"git.test:{}\"]\nprivate = [\"git.test\"]\n\n[network.git]\npush = [\"refs/heads/remit/*\"]\n",
        server.port()
    );
    let mut setup = Setup::new(&remit);
    setup.resolver = TableResolver::with(&[("git.test", "127.0.0.1")]);
    setup.extra_roots = vec![ca.der.clone()];
    let proxy = rt.block_on(setup.start());
    let home = proxy.dir.path().to_path_buf();
    let url = format!("https://git.test:{}/repo.git", server.port());

    let (ok, out) = git(&proxy, &home, &["clone", &url, "work"]);
    assert!(ok, "{out}");
    let work = home.join("work");

    // A new branch under remit/: allowed.
    std::fs::write(work.join("a.txt"), "a\n").unwrap();
    git(&proxy, &work, &["add", "a.txt"]);
    git(&proxy, &work, &["commit", "-q", "-m", "a"]);
    let (ok, out) = git(
        &proxy,
        &work,
        &["push", "origin", "HEAD:refs/heads/remit/t1"],
    );
    assert!(ok, "{out}");
    let a = plain_git(&work, &["rev-parse", "HEAD"]);
    assert_eq!(plain_git(&bare, &["rev-parse", "refs/heads/remit/t1"]), a);

    // A fast-forward with a 3 MiB file (a chunked request): allowed.
    let blob: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(work.join("big.bin"), blob).unwrap();
    git(&proxy, &work, &["add", "big.bin"]);
    git(&proxy, &work, &["commit", "-q", "-m", "b"]);
    let (ok, out) = git(
        &proxy,
        &work,
        &["push", "origin", "HEAD:refs/heads/remit/t1"],
    );
    assert!(ok, "{out}");
    let b = plain_git(&work, &["rev-parse", "HEAD"]);
    assert_eq!(plain_git(&bare, &["rev-parse", "refs/heads/remit/t1"]), b);

    // Rewriting history: refused, with the reason in git's own output.
    git(
        &proxy,
        &work,
        &["commit", "-q", "--amend", "-m", "b rewritten"],
    );
    let (ok, out) = git(
        &proxy,
        &work,
        &["push", "--force", "origin", "HEAD:refs/heads/remit/t1"],
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("remote rejected") && out.contains("may not rewrite history"),
        "{out}"
    );
    assert_eq!(plain_git(&bare, &["rev-parse", "refs/heads/remit/t1"]), b);

    // A commit that names the old head on a `parent` line git does not read (after the
    // committer): to git it has no parent, so moving the branch to it rewrites history.
    let tree = plain_git(&work, &["rev-parse", "HEAD^{tree}"]);
    std::fs::write(
        home.join("forged-commit"),
        format!(
            "tree {tree}\nauthor a <a@x> 1700000000 +0000\ncommitter a <a@x> 1700000000 +0000\nparent {b}\n\nforged\n"
        ),
    )
    .unwrap();
    let forged_file = home.join("forged-commit");
    let forged = plain_git(
        &work,
        &[
            "hash-object",
            "-t",
            "commit",
            "--literally",
            "-w",
            forged_file.to_str().unwrap(),
        ],
    );
    assert_eq!(plain_git(&work, &["rev-list", "--count", &forged]), "1");
    let (ok, out) = git(
        &proxy,
        &work,
        &[
            "push",
            "--force",
            "origin",
            &format!("{forged}:refs/heads/remit/t1"),
        ],
    );
    assert!(!ok, "{out}");
    assert!(out.contains("may not rewrite history"), "{out}");
    assert_eq!(plain_git(&bare, &["rev-parse", "refs/heads/remit/t1"]), b);

    // main is not the task's: refused.
    let (ok, out) = git(&proxy, &work, &["push", "origin", "HEAD:main"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("does not allow pushing to `refs/heads/main`"),
        "{out}"
    );
    // Deleting a ref: refused.
    let (ok, out) = git(&proxy, &work, &["push", "origin", ":refs/heads/remit/t1"]);
    assert!(!ok, "{out}");
    assert!(out.contains("may not delete"), "{out}");
    // Two refs in one push, one refused: neither is updated.
    let (ok, out) = git(
        &proxy,
        &work,
        &[
            "push",
            "origin",
            "HEAD:refs/heads/remit/t2",
            "HEAD:refs/heads/release",
        ],
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("another ref in this push was refused"),
        "{out}"
    );
    assert!(
        Command::new("git")
            .args(["rev-parse", "--verify", "-q", "refs/heads/remit/t2"])
            .current_dir(&bare)
            .output()
            .unwrap()
            .stdout
            .is_empty()
    );

    let pushes = proxy.gate.effects_of("git_push");
    let summary: Vec<(String, bool, bool, bool)> = pushes
        .iter()
        .map(|(e, d)| match e {
            remit_types::effect::Effect::GitPush {
                reference,
                force,
                new_branch,
                ..
            } => (
                reference.clone(),
                *force,
                *new_branch,
                *d == remit_egress::GateDecision::Allow,
            ),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(
        summary[..6],
        [
            ("refs/heads/remit/t1".to_owned(), false, true, true),
            ("refs/heads/remit/t1".to_owned(), false, false, true),
            ("refs/heads/remit/t1".to_owned(), true, false, false),
            // The forged commit: a rewrite, refused.
            ("refs/heads/remit/t1".to_owned(), true, false, false),
            ("refs/heads/main".to_owned(), false, false, false),
            ("refs/heads/remit/t1".to_owned(), false, false, false),
        ],
        "{summary:?}"
    );
    let remote = match &pushes[0].0 {
        remit_types::effect::Effect::GitPush { remote, .. } => remote.clone(),
        _ => unreachable!(),
    };
    assert_eq!(
        remote,
        format!("https://git.test:{}/repo.git", server.port())
    );

    // A push whose path only some servers route as one (Jetty drops `;x=1`; a proxy in front
    // of the backend may decode `%2F`): refused, not decided as a plain request past every
    // git rule. The plain path is the harmless twin (decided as a push, above).
    let seen = server.requests().len();
    for disguised in [
        "repo.git/git-receive-pack;x=1",
        "repo.git%2Fgit-receive-pack",
    ] {
        let (status, headers, _) = proxy.curl(&[
            "--cacert",
            proxy.bundle.to_str().unwrap(),
            "-X",
            "POST",
            "--data-binary",
            "0000",
            &format!("https://git.test:{}/{disguised}", server.port()),
        ]);
        assert_eq!(status, 403, "{disguised}: {headers}");
        assert!(
            headers.contains("a git service's path must be written plainly"),
            "{headers}"
        );
    }
    assert_eq!(
        server.requests().len(),
        seen,
        "a disguised push reached the server"
    );
}
