//! Running the real `remit` binary in a fresh directory owned by the test.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A test's private world: a workspace, a fake home with secrets in it, a place outside the
/// workspace, and remit's state directory. Everything lives under one temp dir the test owns.
pub(crate) struct World {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) ws: PathBuf,
    pub(crate) home: PathBuf,
    pub(crate) outside: PathBuf,
    pub(crate) state: PathBuf,
}

impl World {
    /// Approve `id` from the host, as a human would; it must succeed.
    #[track_caller]
    pub(crate) fn approve(&self, id: &str) {
        let out = self
            .command()
            .args(["approvals", "approve", id])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", show(&out));
    }

    /// The first approval `remit approvals list --json` (with `more` options, `--all` for
    /// decided ones too) shows that `matches`, waited for up to 60 s.
    pub(crate) fn approval_where(
        &self,
        more: &[&str],
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let begun = std::time::Instant::now();
        loop {
            let out = self
                .command()
                .args(["approvals", "list", "--json"])
                .args(more)
                .output()
                .unwrap();
            let list: Vec<serde_json::Value> =
                serde_json::from_slice(&out.stdout).unwrap_or_default();
            if let Some(found) = list.into_iter().find(|a| matches(a)) {
                return found;
            }
            assert!(
                begun.elapsed() < std::time::Duration::from_secs(60),
                "no such approval appeared"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    pub(crate) fn new() -> World {
        let dir = tempfile::Builder::new()
            .prefix("remit-test-")
            .tempdir()
            .unwrap();
        let root = dir.path().to_path_buf();
        let ws = root.join("ws");
        let home = root.join("home");
        let outside = root.join("outside");
        let state = root.join("state");
        for d in [&ws, &home, &outside, &state] {
            std::fs::create_dir_all(d).unwrap();
        }
        // Secrets in the fake home, as a real user would have them.
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        std::fs::write(
            home.join(".ssh/id_ed25519"),
            "-----BEGIN OPENSSH PRIVATE KEY-----\nfake\n",
        )
        .unwrap();
        std::fs::create_dir_all(home.join(".aws")).unwrap();
        std::fs::write(
            home.join(".aws/credentials"),
            "[default]\naws_secret_access_key=fake\n",
        )
        .unwrap();
        std::fs::write(home.join(".env"), "TOKEN=fake-home-env\n").unwrap();
        std::fs::create_dir_all(home.join(".config/gh")).unwrap();
        std::fs::write(
            home.join(".config/gh/hosts.yml"),
            "github.com:\n    oauth_token: gho_fake\n",
        )
        .unwrap();
        std::fs::create_dir_all(home.join(".docker")).unwrap();
        std::fs::write(
            home.join(".docker/config.json"),
            "{\"auths\":{\"r\":{\"auth\":\"ZmFrZTpmYWtl\"}}}\n",
        )
        .unwrap();
        std::fs::write(outside.join("secret.txt"), "outside-secret").unwrap();
        World {
            dir,
            ws,
            home,
            outside,
            state,
        }
    }

    /// Write a remit file into the test directory and return its path.
    pub(crate) fn remit(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join("test.remit.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A `remit` command with a clean environment pointing at this world.
    pub(crate) fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_remit"));
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("HOME", &self.home)
            .env("LANG", "C.UTF-8")
            .env("REMIT_HOME", &self.state)
            .current_dir(&self.ws)
            .stdin(Stdio::null());
        cmd
    }

    /// Start `remit run --quiet [--remit R] -- bash -c SCRIPT` in the background; return once
    /// the script has printed its first line, which must be `ready`. The rest of its standard
    /// output stays readable in the returned pipe.
    pub(crate) fn start(
        &self,
        remit: Option<&str>,
        script: &str,
    ) -> (std::process::Child, std::process::ChildStdout) {
        let mut cmd = self.command();
        cmd.arg("run").arg("--quiet");
        if let Some(text) = remit {
            cmd.arg("--remit").arg(self.remit(text));
        }
        let mut child = cmd
            .args(["--", "bash", "-c", script])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut buf = [0u8; 6];
        std::io::Read::read_exact(&mut stdout, &mut buf).unwrap();
        assert_eq!(&buf, b"ready\n");
        (child, stdout)
    }

    /// `remit run [--remit R] -- bash -c SCRIPT` in the workspace.
    pub(crate) fn run(&self, remit: Option<&str>, script: &str) -> Output {
        let mut cmd = self.command();
        cmd.arg("run").arg("--quiet");
        if let Some(text) = remit {
            cmd.arg("--remit").arg(self.remit(text));
        }
        cmd.arg("--").arg("bash").arg("-c").arg(script);
        cmd.output().unwrap()
    }

    /// Whether a host path exists (checked from outside the sandbox).
    pub(crate) fn exists(&self, path: &Path) -> bool {
        std::fs::symlink_metadata(path).is_ok()
    }
}

pub(crate) fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub(crate) fn show(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        stdout(o),
        stderr(o)
    )
}

/// Make a file executable.
pub(crate) fn chmod_x(path: &Path) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Assert a run succeeded and return its stdout.
#[track_caller]
pub(crate) fn ok(o: &Output) -> String {
    assert!(o.status.success(), "expected success\n{}", show(o));
    stdout(o)
}
