//! Helpers shared by the tests.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use remit_identity::ManualClock;
use remit_ledger::testing::TempPostgres;
use remit_vault::{Broker, MemoryRecorder, RetryPolicy, TaskRef, Vault};

/// A remit home with a vault, a manual clock and an in-memory recorder.
pub(crate) struct Home {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) vault: Arc<Vault>,
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) recorder: Arc<MemoryRecorder>,
    pub(crate) broker: Broker,
}

impl Home {
    /// A fresh home whose clock reads `at`.
    pub(crate) fn at(at: SystemTime) -> Home {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(at));
        let vault = Arc::new(Vault::open_home(dir.path(), clock.clone()).unwrap());
        let recorder = Arc::new(MemoryRecorder::default());
        let broker = Broker::new(Arc::clone(&vault), recorder.clone()).with_retry(fast_retry());
        Home {
            dir,
            vault,
            clock,
            recorder,
            broker,
        }
    }

    /// A fresh home on `2026-01-01T00:00:00Z`.
    pub(crate) fn new() -> Home {
        Home::at(std::time::UNIX_EPOCH + Duration::from_secs(1_767_225_600))
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Event kinds recorded so far, with their lease and reason.
    pub(crate) fn events(&self) -> Vec<String> {
        self.recorder
            .events()
            .iter()
            .map(|e| {
                let v = serde_json::to_value(&e.body).unwrap();
                format!(
                    "{} {} {}",
                    v["kind"].as_str().unwrap(),
                    v["name"].as_str().or(v["category"].as_str()).unwrap_or(""),
                    v["reason"]
                        .as_str()
                        .or(v["delivery"].as_str())
                        .unwrap_or("")
                )
            })
            .collect()
    }
}

/// Retries fast enough for tests.
pub(crate) fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        first_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        later: Duration::from_secs(1),
    }
}

pub(crate) fn task(id: &str) -> TaskRef {
    TaskRef {
        task: id.to_owned(),
        agent: "ci-fixer".to_owned(),
    }
}

/// Parse a remit.
pub(crate) fn remit(text: &str) -> remit_types::remit::Remit {
    remit_types::remit::parse(text, "t.remit.toml", ".".into())
        .unwrap()
        .remit
}

/// Every byte of every file under `dir`.
pub(crate) fn all_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.push((p.display().to_string(), bytes));
            }
        }
    }
    out
}

pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The shared throwaway PostgreSQL cluster, with password (SCRAM) authentication for
/// every role but `postgres`, so leased roles log in for real.
pub(crate) fn postgres() -> &'static TempPostgres {
    static PG: OnceLock<TempPostgres> = OnceLock::new();
    PG.get_or_init(|| {
        let pg = TempPostgres::start().unwrap();
        let hba = pg.socket_dir().join("data").join("pg_hba.conf");
        std::fs::write(
            &hba,
            "local all postgres trust\nlocal all all scram-sha-256\n\
             host all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
        )
        .unwrap();
        pg.psql("SELECT pg_reload_conf()").unwrap();
        pg
    })
}

/// A database with schemas `reporting` (orders, refunds) and `private` (notes), and the
/// admin connection string stored in `home`'s vault as `pg-<name>`.
pub(crate) fn database(home: &Home, name: &str) -> String {
    let pg = postgres();
    let url = pg.create_database(name).unwrap();
    for sql in [
        "REVOKE CONNECT ON DATABASE ".to_owned() + name + " FROM PUBLIC",
        "CREATE SCHEMA reporting".into(),
        "CREATE TABLE reporting.orders (id serial PRIMARY KEY, amount int)".into(),
        "CREATE TABLE reporting.refunds (id int)".into(),
        "INSERT INTO reporting.orders (amount) VALUES (10), (20)".into(),
        "CREATE SCHEMA private".into(),
        "CREATE TABLE private.notes (x text)".into(),
    ] {
        pg.psql_in(name, &sql).unwrap();
    }
    let secret = format!("pg-{}", name.replace('_', "-"));
    home.vault.set(&secret, url.as_bytes(), "test").unwrap();
    secret
}

/// Whether a role exists.
pub(crate) fn role_exists(role: &str) -> bool {
    postgres()
        .psql(&format!(
            "SELECT count(*) FROM pg_roles WHERE rolname = '{role}'"
        ))
        .unwrap()
        .trim()
        == "1"
}

/// Sessions of a role.
pub(crate) fn sessions(role: &str) -> u32 {
    postgres()
        .psql(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = '{role}'"
        ))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}
