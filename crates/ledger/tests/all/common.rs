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
