//! Shared fixtures: a ledger in a temp dir on either store, sample tasks, raw SQL for tamper
//! tests.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use remit_ledger::testing::TempPostgres;
use remit_ledger::{FixedClock, Ledger, LedgerKey, LedgerReader, Location, Options};
use remit_types::event::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// The shared throwaway PostgreSQL of this test binary.
pub(crate) fn pg() -> &'static TempPostgres {
    static PG: OnceLock<Result<TempPostgres, String>> = OnceLock::new();
    match PG.get_or_init(TempPostgres::start) {
        Ok(pg) => pg,
        Err(e) => panic!("cannot start a test postgresql: {e}"),
    }
}

fn unique_db() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "ledger_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub(crate) struct Env {
    pub(crate) backend: Backend,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) location: Location,
    pub(crate) key: LedgerKey,
    pub(crate) clock: Arc<FixedClock>,
    pub(crate) db: Option<String>,
}

pub(crate) fn clock() -> Arc<FixedClock> {
    Arc::new(FixedClock::stepping(
        std::time::UNIX_EPOCH + Duration::from_secs(1_767_225_600),
        Duration::from_millis(3),
    ))
}

impl Env {
    pub(crate) fn new(backend: Backend) -> Self {
        Self::with_key(
            backend,
            LedgerKey::from_seed("test.remit/ledger-a", [1; 32]).unwrap(),
        )
    }

    pub(crate) fn with_key(backend: Backend, key: LedgerKey) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (location, db) = match backend {
            Backend::Sqlite => (Location::Sqlite(dir.path().join("ledger.db")), None),
            Backend::Postgres => {
                let db = unique_db();
                let url = pg().create_database(&db).unwrap();
                (Location::Postgres(url), Some(db))
            }
        };
        Self {
            backend,
            dir,
            location,
            key,
            clock: clock(),
            db,
        }
    }

    pub(crate) fn open(&self) -> Ledger {
        self.open_with(Options::default())
    }

    pub(crate) fn open_with(&self, options: Options) -> Ledger {
        Ledger::open(
            self.location.clone(),
            self.key.clone(),
            self.clock.clone(),
            options,
        )
        .unwrap()
    }

    pub(crate) fn reader(&self) -> LedgerReader {
        LedgerReader::open(&self.location).unwrap()
    }

    fn table(&self, name: &str) -> String {
        match self.backend {
            Backend::Sqlite => name.to_owned(),
            Backend::Postgres => format!("ledger_{name}"),
        }
    }

    fn expand(&self, sql: &str) -> String {
        sql.replace("{events}", &self.table("events"))
            .replace("{checkpoints}", &self.table("checkpoints"))
            .replace("{meta}", &self.table("meta"))
    }

    /// Run tamper SQL directly on the store (`{events}`, `{checkpoints}`, `{meta}` name the
    /// tables).
    pub(crate) fn sql(&self, sql: &str) {
        let sql = self.expand(sql);
        match self.backend {
            Backend::Sqlite => {
                let Location::Sqlite(path) = &self.location else {
                    unreachable!()
                };
                let conn = rusqlite::Connection::open(path).unwrap();
                conn.execute_batch(&sql).unwrap();
            }
            Backend::Postgres => {
                pg().psql_in(self.db.as_deref().unwrap(), &sql).unwrap();
            }
        }
    }

    /// A blob literal for this store.
    pub(crate) fn blob(&self, bytes: &[u8]) -> String {
        let hex = remit_ledger::hex::encode(bytes);
        match self.backend {
            Backend::Sqlite => format!("X'{hex}'"),
            Backend::Postgres => format!("'\\x{hex}'::bytea"),
        }
    }

    /// A text literal.
    pub(crate) fn text(&self, text: &str) -> String {
        format!("'{}'", text.replace('\'', "''"))
    }
}

pub(crate) fn effect(id: &str, kind: &str, target: &str, attrs: &[(&str, &str)]) -> EffectRef {
    EffectRef {
        id: id.into(),
        kind: kind.into(),
        target: target.into(),
        attributes: attrs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// A realistic task: 14 events from `run_authorized` to `task_end`.
pub(crate) fn task_events(task: &str, agent: &str) -> Vec<NewEvent> {
    let push = effect(
        "e-push",
        "git.push",
        "refs/heads/main",
        &[("remote", "origin"), ("force", "false")],
    );
    let get = effect(
        "e-get",
        "http.request",
        "api.github.com:443",
        &[("method", "GET"), ("path", "/repos/acme/app")],
    );
    let publish = effect("e-pub", "action.publish", "crates/acme-app", &[]);
    let bodies: Vec<EventBody> = vec![
        RunAuthorized {
            requester: "alice@example.com".into(),
            owner: "alice@example.com".into(),
            remit: RemitRef {
                name: "ci-fixer".into(),
                sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
            },
            identity: format!("spiffe://remit.local/agent/{agent}/task/{task}"),
            expires: Some("2026-01-01T00:45:00.000000Z".into()),
            permissions: vec![
                Permission {
                    kind: "network".into(),
                    target: "api.github.com:443".into(),
                    condition: Some("methods=GET".into()),
                },
                Permission {
                    kind: "filesystem.write".into(),
                    target: "/workspace".into(),
                    condition: None,
                },
            ],
            secrets_reachable: vec![ReachableSecret {
                rule: "aws-access-key".into(),
                location: "config/dev.env:3".into(),
                fingerprint: "3f2a9c1b7d4e5f60".into(),
            }],
            degraded: vec![],
        }
        .into(),
        Exec {
            argv: vec!["cargo".into(), "test".into()],
            cwd: "/workspace".into(),
            pid: 12,
            ppid: 1,
            decision: Verdict::Allow,
            rule: None,
        }
        .into(),
        Exec {
            argv: vec!["curl".into(), "https://evil.example".into()],
            cwd: "/workspace".into(),
            pid: 13,
            ppid: 1,
            decision: Verdict::Deny,
            rule: Some("forbid-curl".into()),
        }
        .into(),
        Decision {
            effect: get.clone(),
            decision: Verdict::Allow,
            policy: Some("github-read".into()),
            reason: "read-only github api".into(),
        }
        .into(),
        CredentialIssued {
            lease: "lease-1".into(),
            name: "github".into(),
            destination: Some("api.github.com".into()),
            delivery: "injected".into(),
            expires: "2026-01-01T00:15:00.000000Z".into(),
            effect_id: Some("e-get".into()),
        }
        .into(),
        EffectStarted {
            effect: get,
            lease: Some("lease-1".into()),
        }
        .into(),
        EffectPerformed {
            effect_id: "e-get".into(),
            outcome: "http 200".into(),
            bytes_out: Some(512),
            bytes_in: Some(20_480),
        }
        .into(),
        Decision {
            effect: push,
            decision: Verdict::Deny,
            policy: Some("protect-main".into()),
            reason: "pushes to main need a human; push to refs/heads/remit/* instead".into(),
        }
        .into(),
        ApprovalRequested {
            effect: publish.clone(),
            approvers: vec!["release-managers".into()],
            required: 1,
            expires: None,
        }
        .into(),
        ApprovalGranted {
            effect_id: "e-pub".into(),
            approver: "bob@example.com".into(),
        }
        .into(),
        Violation {
            category: "secret_egress".into(),
            effect_id: Some("e-x".into()),
            rule: Some("aws-access-key".into()),
            detail: "request body to paste.example held `aws-access-key` (redacted)".into(),
            blocked: true,
        }
        .into(),
        CredentialRevoked {
            lease: "lease-1".into(),
            name: "github".into(),
            reason: "task_end".into(),
        }
        .into(),
        FileChanges {
            added: 1,
            modified: 2,
            deleted: 0,
            diff_sha256: Some("a".repeat(64)),
            paths: vec![
                "src/lib.rs".into(),
                "src/new.rs".into(),
                "Cargo.toml".into(),
            ],
            paths_omitted: 0,
        }
        .into(),
        TaskEnd {
            exit_code: Some(0),
            signal: None,
            reason: EndReason::Exited,
            detail: None,
            counts: TaskCounts {
                execs: 2,
                effects: 3,
                denials: 2,
                approvals: 1,
                violations: 1,
            },
        }
        .into(),
    ];
    bodies
        .into_iter()
        .map(|b| NewEvent::new(task, agent, b))
        .collect()
}

/// A small exec observation numbered `i`.
pub(crate) fn exec(task: &str, i: u64) -> NewEvent {
    NewEvent::new(
        task,
        "ci-fixer",
        Exec {
            argv: vec!["step".into(), i.to_string()],
            cwd: "/workspace".into(),
            pid: 100,
            ppid: 1,
            decision: Verdict::Allow,
            rule: None,
        },
    )
}

/// Fill a ledger with three complete tasks (42 events). Each task is flushed before the next,
/// so the checkpoints kept at task end are exactly at sizes 14, 28 and 42.
pub(crate) fn fill(ledger: &Ledger) {
    for t in ["t-1", "t-2", "t-3"] {
        for event in task_events(t, "ci-fixer") {
            ledger.append(event).unwrap();
        }
        ledger.flush().unwrap();
    }
}

/// Run `body` on both stores.
macro_rules! both_stores {
    ($($name:ident => $body:expr;)*) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $(#[test] fn $name() { let f: fn($crate::common::Backend) = $body; f($crate::common::Backend::Sqlite) })*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(#[test] fn $name() { let f: fn($crate::common::Backend) = $body; f($crate::common::Backend::Postgres) })*
        }
    };
}
pub(crate) use both_stores;

/// `NAME:BYTE` of [`Env::new`]'s key, for `remit-ledger-writer --key-seed`.
pub(crate) const ENV_KEY_SEED: &str = "test.remit/ledger-a:1";

/// A `remit-ledger-writer` process (see `src/bin/remit-ledger-writer.rs`) with its output
/// read as it comes.
pub(crate) struct WriterProcess {
    pub(crate) child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    /// `(seq, id)` of every acknowledged durable event so far.
    pub(crate) acks: Vec<(u64, String)>,
    pub(crate) done: bool,
    /// Exited before being asked to.
    stderr: Option<std::process::ChildStderr>,
}

/// A test that fails half-way must not leave writers running.
impl Drop for WriterProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl WriterProcess {
    pub(crate) fn spawn(location: &Location, key_seed: &str, args: &[&str]) -> Self {
        use std::io::BufRead;
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_remit-ledger-writer"));
        match location {
            Location::Sqlite(path) => cmd.arg("--sqlite").arg(path),
            Location::Postgres(url) => cmd.args(["--postgres", url]),
        };
        let mut child = cmd
            .args(["--key-seed", key_seed])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let stderr = child.stderr.take();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            acks: Vec::new(),
            done: false,
            stderr,
        }
    }

    /// Spawn with `--ready` and wait until the ledger is open; [`WriterProcess::go`] starts it.
    pub(crate) fn spawn_ready(location: &Location, key_seed: &str, args: &[&str]) -> Self {
        let mut args = args.to_vec();
        args.push("--ready");
        let mut w = Self::spawn(location, key_seed, &args);
        let ready = w.lines.recv_timeout(Duration::from_secs(120));
        assert_eq!(ready.as_deref(), Ok("READY"), "{}", w.error_output());
        w
    }

    /// Let a process spawned with [`WriterProcess::spawn_ready`] start appending.
    pub(crate) fn go(&mut self) {
        use std::io::Write;
        let mut stdin = self.child.stdin.take().unwrap();
        stdin.write_all(b"go\n").unwrap();
    }

    fn take(&mut self, line: String) {
        if let Some(rest) = line.strip_prefix("ACK ") {
            let (seq, id) = rest.split_once(' ').unwrap();
            self.acks.push((seq.parse().unwrap(), id.to_owned()));
        } else if line.starts_with("DONE ") {
            self.done = true;
        }
    }

    /// Read output until `until` holds or `timeout` passes (then panic).
    pub(crate) fn read_until(&mut self, timeout: Duration, until: impl Fn(&Self) -> bool) {
        let deadline = std::time::Instant::now() + timeout;
        while !until(self) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.take(line),
                Err(_) => panic!(
                    "writer process: no progress after {} acks: {}",
                    self.acks.len(),
                    self.error_output()
                ),
            }
        }
    }

    fn error_output(&mut self) -> String {
        use std::io::Read;
        let _ = self.child.kill();
        let mut text = String::new();
        if let Some(mut err) = self.stderr.take() {
            let _ = err.read_to_string(&mut text);
        }
        text
    }

    /// Wait for a normal exit and read everything it printed.
    pub(crate) fn finish(mut self, timeout: Duration) -> Vec<(u64, String)> {
        self.read_until(timeout, |w| w.done);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "writer failed: {}", self.error_output());
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.take(line);
        }
        std::mem::take(&mut self.acks)
    }

    /// SIGKILL it and return what it acknowledged before dying.
    pub(crate) fn kill(mut self) -> Vec<(u64, String)> {
        self.child.kill().unwrap();
        let _ = self.child.wait();
        // Lines already written to the pipe were acknowledged.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.take(line);
        }
        std::mem::take(&mut self.acks)
    }
}
