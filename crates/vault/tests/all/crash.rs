//! Crash recovery: SIGKILL a supervisor holding a PostgreSQL role with an open session; the
//! next supervisor's recovery drops the role and ends the session before it does anything
//! else.

use std::path::Path;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use remit_identity::SystemClock;
use remit_ledger::{Ledger, LedgerReader, Location, Options, Query};
use remit_vault::{Broker, TaskRef, Vault};

use crate::common::{database, remit, role_exists, sessions};

const CHILD_ENV: &str = "REMIT_VAULT_TEST_CHILD_HOME";

fn ledger(home: &Path) -> Ledger {
    Ledger::open_home(
        home,
        Arc::new(remit_ledger::SystemClock),
        Options::default(),
    )
    .unwrap()
}

/// The supervisor that will be killed: leases a role, publishes its connection string
/// (test plumbing only), then waits to die.
#[test]
#[ignore = "run as a child process by another test"]
fn child_supervisor_holds_a_role() {
    let Some(home) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let home = Path::new(&home);
    let vault = Arc::new(Vault::open_home(home, Arc::new(SystemClock)).unwrap());
    let broker = Broker::new(vault, Arc::new(ledger(home)));
    let admin = std::fs::read_to_string(home.join("admin")).unwrap();
    let creds = broker
        .issue_for_task(
            &TaskRef {
                task: "CRASHED".into(),
                agent: "ci-fixer".into(),
            },
            &remit(&format!(
                "[credentials.postgres.db]\nadmin = \"{admin}\"\nschemas = [\"reporting\"]\n"
            )),
            Duration::from_secs(3600),
        )
        .unwrap();
    let tmp = home.join("url.tmp");
    std::fs::write(&tmp, creds.env[0].1.expose()).unwrap();
    std::fs::rename(&tmp, home.join("url")).unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn sigkill_with_a_role_and_a_session_then_recovery() {
    let home_dir = tempfile::tempdir().unwrap();
    let home = home_dir.path();
    // The admin secret lives in the same home's vault.
    let setup = crate::common::Home::at(SystemTime::now());
    let admin = database(&setup, "vault_crash");
    let vault = Arc::new(Vault::open_home(home, Arc::new(SystemClock)).unwrap());
    vault
        .set(&admin, setup.vault.get(&admin).unwrap().expose(), "test")
        .unwrap();
    std::fs::write(home.join("admin"), &admin).unwrap();

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash::child_supervisor_holds_a_role",
            "--ignored",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, home)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !home.join("url").exists() {
        assert!(Instant::now() < deadline, "the child never leased a role");
        assert!(child.try_wait().unwrap().is_none(), "the child died early");
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = std::fs::read_to_string(home.join("url")).unwrap();
    let role = url
        .trim_start_matches("postgresql://")
        .split(':')
        .next()
        .unwrap()
        .to_owned();
    // The task's open session, which outlives its supervisor.
    let mut session = postgres::Config::from_str(&url)
        .unwrap()
        .connect(postgres::NoTls)
        .unwrap();
    session.simple_query("SELECT 1").unwrap();
    assert!(role_exists(&role));
    assert_eq!(sessions(&role), 1);

    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // The lease is stuck until a supervisor starts.
    let stuck = remit_vault::doctor::stuck_leases(home).unwrap();
    assert_eq!(stuck.len(), 1);
    assert!(stuck[0].why.contains("is gone"), "{}", stuck[0].why);

    // The next supervisor: recovery first.
    let broker = Broker::new(Arc::clone(&vault), Arc::new(ledger(home)));
    let report = broker.recover().unwrap();
    assert_eq!(report.revoked.len(), 1, "{report:?}");
    assert!(report.is_complete(), "{report:?}");
    assert!(!role_exists(&role), "the role is gone");
    assert_eq!(sessions(&role), 0, "the session was terminated");
    assert!(session.simple_query("SELECT 1").is_err());
    assert!(remit_vault::doctor::stuck_leases(home).unwrap().is_empty());

    // Both sides of it are in the ledger, and not the password.
    let location = Location::Sqlite(home.join("ledger.db"));
    let mut kinds = Vec::new();
    LedgerReader::open(&location)
        .unwrap()
        .scan(&Query::default(), &mut |row| {
            let v: serde_json::Value = serde_json::from_slice(&row.bytes).unwrap();
            kinds.push(format!(
                "{} {}",
                v["body"]["kind"].as_str().unwrap(),
                v["body"]["reason"].as_str().unwrap_or("")
            ));
            Ok(true)
        })
        .unwrap();
    assert_eq!(
        kinds,
        vec![
            "credential_issued ",
            "credential_revoked recovered_after_crash"
        ]
    );
    let password = url.split(':').nth(2).unwrap().split('@').next().unwrap();
    for (path, bytes) in crate::common::all_bytes(home) {
        if path.ends_with("/url") {
            continue; // this test's own plumbing
        }
        assert!(
            !crate::common::contains(&bytes, password.as_bytes()),
            "`{path}` holds the role's password"
        );
    }
}
