//! PostgreSQL dynamic roles against a real server: only what the remit names, and at
//! revocation the role is dropped and its sessions end.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use postgres::{Client, Config, NoTls};
use remit_vault::{Broker, LeaseState, RevokeReason, Vault};

use crate::common::{Home, database, fast_retry, remit, role_exists, sessions, task};

fn connect(url: &str) -> Client {
    Config::from_str(url).unwrap().connect(NoTls).unwrap()
}

fn grant(admin: &str, extra: &str) -> String {
    format!(
        "[credentials.postgres.analytics]\nadmin = \"{admin}\"\nschemas = [\"reporting\"]\nenv = \"DATABASE_URL\"\n{extra}"
    )
}

#[test]
fn a_role_gets_only_what_the_remit_names_and_loses_it_with_its_sessions() {
    let home = Home::at(SystemTime::now());
    let admin = database(&home, "vault_pg_read");
    let creds = home
        .broker
        .issue_for_task(
            &task("T1"),
            &remit(&grant(&admin, "")),
            Duration::from_secs(600),
        )
        .unwrap();
    let lease = &creds.leases[0];
    assert_eq!(creds.env[0].0, "DATABASE_URL");
    let url = creds.env[0].1.expose_str().unwrap().to_owned();
    let role = remit_vault::backend::postgres::role_name(&lease.id);
    assert!(
        url.starts_with(&format!("postgresql://{role}:")),
        "the url names the role"
    );
    assert_eq!(
        lease.detail.as_deref(),
        Some(format!("role {role} on vault_pg_read").as_str())
    );

    // The server holds a SCRAM verifier, a VALID UNTIL, and no clear password.
    let pg = crate::common::postgres();
    let row = pg
        .psql(&format!(
            "SELECT rolpassword LIKE 'SCRAM-SHA-256$%', rolvaliduntil IS NOT NULL, rolconnlimit, rolsuper, rolcreaterole FROM pg_authid WHERE rolname = '{role}'"
        ))
        .unwrap();
    assert_eq!(row.trim(), "t|t|4|f|f");

    // The task's session: reads what is granted, nothing else.
    let mut session = connect(&url);
    let total: i64 = session
        .query_one("SELECT sum(amount)::bigint FROM reporting.orders", &[])
        .unwrap()
        .get(0);
    assert_eq!(total, 30);
    for denied in [
        "SELECT * FROM private.notes",
        "INSERT INTO reporting.orders (amount) VALUES (1)",
        "CREATE TABLE reporting.mine (x int)",
        "CREATE ROLE other",
    ] {
        let err = session.batch_execute(denied).unwrap_err();
        assert!(
            err.as_db_error()
                .is_some_and(|e| e.message().contains("permission denied")),
            "{denied}: {err}"
        );
    }
    // Another database is out of reach too.
    pg.create_database("vault_pg_other").unwrap();
    pg.psql("REVOKE CONNECT ON DATABASE vault_pg_other FROM PUBLIC")
        .unwrap();
    let other = url.replace("/vault_pg_read", "/vault_pg_other");
    assert!(Config::from_str(&other).unwrap().connect(NoTls).is_err());
    assert_eq!(sessions(&role), 1);

    // Revocation ends the live session and drops the role.
    let report = home
        .broker
        .revoke_task("T1", &RevokeReason::TaskEnd)
        .unwrap();
    assert_eq!(report.revoked, vec![lease.id.clone()]);
    assert!(!role_exists(&role));
    assert_eq!(sessions(&role), 0);
    assert!(
        session.simple_query("SELECT 1").is_err(),
        "the session was terminated"
    );
    assert!(Config::from_str(&url).unwrap().connect(NoTls).is_err());

    // Nothing recorded holds the password.
    let password = url.split(':').nth(2).unwrap().split('@').next().unwrap();
    assert!(password.len() >= 30);
    let events = serde_json::to_string(&home.recorder.events()).unwrap();
    assert!(!events.contains(password));
    assert_eq!(
        home.events(),
        vec![
            "credential_issued analytics env",
            "credential_revoked analytics task_end"
        ]
    );
}

#[test]
fn read_write_on_named_tables_only() {
    let home = Home::at(SystemTime::now());
    let admin = database(&home, "vault_pg_write");
    let creds = home
        .broker
        .issue_for_task(
            &task("T1"),
            &remit(&format!(
                "[credentials.postgres.orders]\nadmin = \"{admin}\"\naccess = \"read_write\"\ntables = [\"reporting.orders\"]\n"
            )),
            Duration::from_secs(600),
        )
        .unwrap();
    assert_eq!(creds.env[0].0, "ORDERS_DATABASE_URL");
    let mut session = connect(creds.env[0].1.expose_str().unwrap());
    session
        .batch_execute("INSERT INTO reporting.orders (amount) VALUES (5); UPDATE reporting.orders SET amount = 6 WHERE amount = 5; DELETE FROM reporting.orders WHERE amount = 6")
        .unwrap();
    assert!(
        session
            .batch_execute("SELECT * FROM reporting.refunds")
            .is_err()
    );
    assert!(session.batch_execute("TRUNCATE reporting.orders").is_err());
    drop(session);
    home.broker
        .revoke_task("T1", &RevokeReason::TaskEnd)
        .unwrap();
    assert!(!role_exists(&remit_vault::backend::postgres::role_name(
        &creds.leases[0].id
    )));
}

#[test]
fn postgres_down_during_revocation_keeps_the_lease_open_and_reported() {
    let home = Home::at(SystemTime::now());
    let admin = database(&home, "vault_pg_down");
    let creds = home
        .broker
        .issue_for_task(
            &task("T1"),
            &remit(&grant(&admin, "")),
            Duration::from_secs(600),
        )
        .unwrap();
    let lease = creds.leases[0].clone();
    let role = remit_vault::backend::postgres::role_name(&lease.id);
    let mut session = connect(creds.env[0].1.expose_str().unwrap());

    // The server becomes unreachable (a fresh supervisor, whose admin connection string
    // now points nowhere).
    let real = home.vault.get(&admin).unwrap();
    home.vault
        .set(
            &admin,
            b"host=/nonexistent-remit-test port=1 user=postgres dbname=x connect_timeout=1",
            "test",
        )
        .unwrap();
    let vault = Arc::new(Vault::open_home(home.path(), home.clock.clone()).unwrap());
    let broker = Broker::new(vault, home.recorder.clone()).with_retry(fast_retry());
    let report = broker.revoke_task("T1", &RevokeReason::TaskEnd).unwrap();
    assert!(report.revoked.is_empty());
    assert_eq!(report.failed.len(), 1);
    assert!(
        report.failed[0].1.contains("postgresql unavailable"),
        "{:?}",
        report.failed
    );
    let stored = broker.lease(&lease.id).unwrap();
    assert_eq!(stored.state, LeaseState::Open);
    assert_eq!(stored.revoke_reason.as_deref(), Some("task_end"));
    assert_eq!(stored.attempts, 1);
    let stuck = remit_vault::doctor::stuck_leases(home.path()).unwrap();
    assert_eq!(stuck.len(), 1);
    assert!(stuck[0].why.contains("failed 1 time"), "{}", stuck[0].why);
    assert!(
        home.events()
            .contains(&"violation credential_revocation_failed ".to_owned())
    );
    // The role and the session are still there; the lease is no longer usable meanwhile.
    assert!(role_exists(&role));
    session.simple_query("SELECT 1").unwrap();

    // Back up: the retry revokes it (once due).
    home.vault.set(&admin, real.expose(), "test").unwrap();
    assert!(
        broker.retry_pending().unwrap().revoked.is_empty(),
        "not due yet"
    );
    home.clock.advance(Duration::from_secs(2));
    let report = broker.retry_pending().unwrap();
    assert_eq!(report.revoked, vec![lease.id.clone()]);
    assert!(!role_exists(&role));
    assert!(session.simple_query("SELECT 1").is_err());
    assert!(
        remit_vault::doctor::stuck_leases(home.path())
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        home.events().last().unwrap(),
        "credential_revoked analytics task_end"
    );
}

/// A revocation that failed while a task runs (at its lease's TTL) is retried by that task's
/// supervisor once due: [`Broker::retry_pending_of`] takes back the task's leases, and only
/// its own.
#[test]
fn a_failed_revocation_is_retried_for_its_own_task_alone() {
    let home = Home::at(SystemTime::now());
    let admin = database(&home, "vault_pg_retry_own");
    let issue = |id: &str| {
        home.broker
            .issue_for_task(
                &task(id),
                &remit(&grant(&admin, "")),
                Duration::from_secs(600),
            )
            .unwrap()
            .leases[0]
            .id
            .clone()
    };
    let (own, other) = (issue("T1"), issue("T2"));
    let real = home.vault.get(&admin).unwrap();
    home.vault
        .set(
            &admin,
            b"host=/nonexistent-remit-test port=1 user=postgres dbname=x connect_timeout=1",
            "test",
        )
        .unwrap();
    let vault = Arc::new(Vault::open_home(home.path(), home.clock.clone()).unwrap());
    let broker = Broker::new(vault, home.recorder.clone()).with_retry(fast_retry());
    home.clock.advance(Duration::from_secs(601));
    let report = broker.revoke_expired().unwrap();
    assert_eq!(report.failed.len(), 2, "{report:?}");

    home.vault.set(&admin, real.expose(), "test").unwrap();
    assert!(
        broker.retry_pending_of("T1").unwrap().revoked.is_empty(),
        "not due yet"
    );
    home.clock.advance(Duration::from_secs(2));
    assert_eq!(
        broker.retry_pending_of("T1").unwrap().revoked,
        vec![own.clone()]
    );
    assert_eq!(broker.lease(&own).unwrap().state, LeaseState::Revoked);
    assert!(!role_exists(&remit_vault::backend::postgres::role_name(
        &own
    )));
    // The other task's lease is its own supervisor's (or the next start's) to retry.
    let left = broker.lease(&other).unwrap();
    assert_eq!(left.state, LeaseState::Open);
    assert_eq!(left.revoke_reason.as_deref(), Some("expired"));
    assert!(role_exists(&remit_vault::backend::postgres::role_name(
        &other
    )));
    assert_eq!(broker.retry_pending().unwrap().revoked, vec![other.clone()]);
    assert!(!role_exists(&remit_vault::backend::postgres::role_name(
        &other
    )));
}

/// What a task's role creates dies with it: handed to the admin instead, a `SECURITY DEFINER`
/// function planted in a schema open to `PUBLIC` would run as the admin for the next caller.
#[test]
fn what_a_role_created_is_dropped_with_it_never_handed_to_the_admin() {
    let home = Home::at(SystemTime::now());
    let admin = database(&home, "vault_pg_plant");
    let pg = crate::common::postgres();
    // As on PostgreSQL 14 and older (or a cluster upgraded from one).
    pg.psql_in("vault_pg_plant", "GRANT CREATE ON SCHEMA public TO PUBLIC")
        .unwrap();
    let url = |id: &str| {
        home.broker
            .issue_for_task(
                &task(id),
                &remit(&grant(&admin, "")),
                Duration::from_secs(600),
            )
            .unwrap()
            .env[0]
            .1
            .expose_str()
            .unwrap()
            .to_owned()
    };
    // The attack: a function that would read what the task may not, left for later.
    let mut first = connect(&url("T1"));
    first
        .batch_execute(
            "CREATE FUNCTION public.x() RETURNS SETOF text SECURITY DEFINER LANGUAGE plpgsql AS $$ BEGIN RETURN QUERY EXECUTE 'SELECT x FROM private.notes'; END $$",
        )
        .unwrap();
    drop(first);
    home.broker
        .revoke_task("T1", &RevokeReason::TaskEnd)
        .unwrap();
    let left = pg
        .psql_in(
            "vault_pg_plant",
            "SELECT count(*) FROM pg_proc WHERE proname = 'x'",
        )
        .unwrap();
    assert_eq!(left.trim(), "0", "the planted function outlived its role");
    let mut second = connect(&url("T2"));
    assert!(second.batch_execute("SELECT * FROM public.x()").is_err());
    // The harmless twin: what the remit grants still works for the next task.
    let total: i64 = second
        .query_one("SELECT sum(amount)::bigint FROM reporting.orders", &[])
        .unwrap()
        .get(0);
    assert_eq!(total, 30);
    drop(second);
    home.broker
        .revoke_task("T2", &RevokeReason::TaskEnd)
        .unwrap();
}

/// A task's role may log in to any database that lets `PUBLIC` connect (as `postgres` does by
/// default) and own something there. Dropped only in the leased database, the role could not
/// be dropped at all: the lease stayed open and what it planted lived on, run as the role.
#[test]
fn what_a_role_created_in_another_database_is_dropped_with_it() {
    let home = Home::at(SystemTime::now());
    let admin = database(&home, "vault_pg_leased");
    let pg = crate::common::postgres();
    // Left open to `PUBLIC`, with a schema anyone may create in (PostgreSQL 14 and older).
    pg.create_database("vault_pg_elsewhere").unwrap();
    pg.psql_in(
        "vault_pg_elsewhere",
        "GRANT CREATE ON SCHEMA public TO PUBLIC",
    )
    .unwrap();
    let creds = home
        .broker
        .issue_for_task(
            &task("T1"),
            &remit(&grant(&admin, "")),
            Duration::from_secs(600),
        )
        .unwrap();
    let lease = creds.leases[0].id.clone();
    let role = remit_vault::backend::postgres::role_name(&lease);
    let url = creds.env[0].1.expose_str().unwrap().to_owned();
    let elsewhere = url.replace("/vault_pg_leased?", "/vault_pg_elsewhere?");
    assert_ne!(url, elsewhere);
    let mut session = connect(&elsewhere);
    session
        .batch_execute(
            "CREATE FUNCTION public.planted() RETURNS int SECURITY DEFINER LANGUAGE sql AS 'SELECT 1';
             SELECT lo_create(4242);",
        )
        .unwrap();
    drop(session);
    // The harmless twin: the leased database is used as granted.
    let total: i64 = connect(&url)
        .query_one("SELECT sum(amount)::bigint FROM reporting.orders", &[])
        .unwrap()
        .get(0);
    assert_eq!(total, 30);

    let report = home
        .broker
        .revoke_task("T1", &RevokeReason::TaskEnd)
        .unwrap();
    assert_eq!(report.revoked, vec![lease.clone()], "{:?}", report.failed);
    assert_eq!(
        home.broker.lease(&lease).unwrap().state,
        LeaseState::Revoked
    );
    assert!(!role_exists(&role), "the role outlived its lease");
    let left = pg
        .psql_in(
            "vault_pg_elsewhere",
            "SELECT (SELECT count(*) FROM pg_proc WHERE proname = 'planted')
                  + (SELECT count(*) FROM pg_largeobject_metadata WHERE oid = 4242)",
        )
        .unwrap();
    assert_eq!(left.trim(), "0", "what the role planted outlived it");
}

/// The admin the docs describe: not a superuser, only `CREATEROLE` and ownership of what it
/// grants. It must still end the task's sessions and drop its role at revocation (both need
/// the role's privileges, which a `CREATEROLE` admin does not have by itself).
#[test]
fn an_admin_that_is_not_a_superuser_revokes_all_the_same() {
    let home = Home::at(SystemTime::now());
    database(&home, "vault_pg_nonsuper");
    let pg = crate::common::postgres();
    pg.psql("DROP ROLE IF EXISTS vault_admin").ok();
    pg.psql("CREATE ROLE vault_admin LOGIN CREATEROLE PASSWORD 'admin-pw'")
        .unwrap();
    for sql in [
        "ALTER DATABASE vault_pg_nonsuper OWNER TO vault_admin",
        "ALTER SCHEMA reporting OWNER TO vault_admin",
        "ALTER TABLE reporting.orders OWNER TO vault_admin",
        "ALTER TABLE reporting.refunds OWNER TO vault_admin",
    ] {
        pg.psql_in("vault_pg_nonsuper", sql).unwrap();
    }
    let url = pg
        .url("vault_pg_nonsuper")
        .replace("user=postgres", "user=vault_admin password=admin-pw");
    home.vault
        .set("pg-nonsuper-admin", url.as_bytes(), "test")
        .unwrap();
    let creds = home
        .broker
        .issue_for_task(
            &task("T9"),
            &remit(&grant("pg-nonsuper-admin", "")),
            Duration::from_secs(600),
        )
        .unwrap();
    let lease = &creds.leases[0];
    let role = remit_vault::backend::postgres::role_name(&lease.id);
    let mut session = connect(creds.env[0].1.expose_str().unwrap());
    let total: i64 = session
        .query_one("SELECT sum(amount)::bigint FROM reporting.orders", &[])
        .unwrap()
        .get(0);
    assert_eq!(total, 30);
    let report = home
        .broker
        .revoke_task("T9", &RevokeReason::TaskEnd)
        .unwrap();
    assert_eq!(report.revoked, vec![lease.id.clone()], "{report:?}");
    assert!(!role_exists(&role));
    assert_eq!(sessions(&role), 0);
    assert!(session.simple_query("SELECT 1").is_err());
}

/// The real PostgreSQL backend with a hook run before each issue (given the lease id) and
/// one after each revocation's backend call: where a test makes another process's
/// revocation land.
struct Hooked {
    inner: remit_vault::backend::postgres::PostgresBackend,
    before_issue: Box<dyn Fn(&str) + Send + Sync>,
    after_revoke: Box<dyn Fn() + Send + Sync>,
}

impl Hooked {
    fn new(home: &Home) -> Hooked {
        Hooked {
            inner: remit_vault::backend::postgres::PostgresBackend::new(Arc::clone(&home.vault)),
            before_issue: Box::new(|_| {}),
            after_revoke: Box::new(|| {}),
        }
    }
}

impl remit_vault::backend::Backend for Hooked {
    fn kind(&self) -> &'static str {
        "postgres"
    }
    fn prepare(
        &self,
        draft: &remit_vault::backend::Draft<'_>,
    ) -> Result<remit_vault::backend::Handle, remit_vault::BackendError> {
        self.inner.prepare(draft)
    }
    fn issue(
        &self,
        draft: &remit_vault::backend::Draft<'_>,
        handle: &mut remit_vault::backend::Handle,
    ) -> Result<remit_vault::backend::Issued, remit_vault::BackendError> {
        (self.before_issue)(draft.id);
        self.inner.issue(draft, handle)
    }
    fn revoke(
        &self,
        lease: &remit_vault::Lease,
        handle: &[u8],
    ) -> Result<(), remit_vault::BackendError> {
        let result = self.inner.revoke(lease, handle);
        (self.after_revoke)();
        result
    }
}

/// A revocation by another process (`remit agent suspend`) that read the lease before its
/// role existed and stores its outcome after the issue: the role must not be handed out and
/// left behind, untracked, under a lease marked revoked.
#[test]
fn a_role_made_while_its_lease_was_being_revoked_is_dropped() {
    let home = Home::at(SystemTime::now());
    let admin = database(&home, "vault_pg_midway");
    let (revoked_tx, revoked_rx) = std::sync::mpsc::sync_channel(1);
    let (go_on_tx, go_on_rx) = std::sync::mpsc::sync_channel(1);
    // The other process's revocation: its backend call runs (finding nothing yet), then it
    // waits, before storing its outcome, until it is let go.
    let mut other = Broker::new(
        Arc::clone(&home.vault),
        Arc::new(remit_vault::MemoryRecorder::default()),
    );
    let go_on = std::sync::Mutex::new(go_on_rx);
    other.register(Arc::new(Hooked {
        after_revoke: Box::new(move || {
            revoked_tx.send(()).unwrap();
            go_on.lock().unwrap().recv().unwrap();
        }),
        ..Hooked::new(&home)
    }));
    let other = Arc::new(other);
    // The issue starts that revocation before the role is made, and goes on once its
    // backend call is done.
    let revoking = Arc::new(std::sync::Mutex::new(None));
    let started = Arc::clone(&revoking);
    let revoked = std::sync::Mutex::new(revoked_rx);
    let mut broker =
        Broker::new(Arc::clone(&home.vault), home.recorder.clone()).with_retry(fast_retry());
    broker.register(Arc::new(Hooked {
        before_issue: Box::new(move |id| {
            let other = Arc::clone(&other);
            let id = id.to_owned();
            *started.lock().unwrap() = Some(std::thread::spawn(move || {
                other
                    .revoke(&id, &RevokeReason::Manual)
                    .map_err(|e| e.to_string())
            }));
            revoked.lock().unwrap().recv().unwrap();
        }),
        ..Hooked::new(&home)
    }));
    let issued = broker.issue_for_task(
        &task("T8"),
        &remit(&grant(&admin, "")),
        Duration::from_secs(600),
    );
    // The revocation stores its outcome now, after the issue.
    go_on_tx.send(()).unwrap();
    let revoking = revoking.lock().unwrap().take().unwrap();
    let _ = revoking.join().unwrap();
    let err = issued.map(|c| c.leases[0].id.clone()).unwrap_err();
    assert!(err.to_string().contains("revoked"), "{err}");
    let leases = home.broker.task_leases("T8").unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].state, LeaseState::Revoked);
    let role = remit_vault::backend::postgres::role_name(&leases[0].id);
    assert!(!role_exists(&role), "{role} was left behind");
}

/// A lease revoked by another process while its role was being made: the role made after
/// that revocation is dropped too, and nothing is handed to the task.
#[test]
fn a_role_made_after_its_lease_was_revoked_is_dropped() {
    let home = Home::at(SystemTime::now());
    let admin = database(&home, "vault_pg_race");
    let other = Broker::new(
        Arc::clone(&home.vault),
        Arc::new(remit_vault::MemoryRecorder::default()),
    );
    let mut broker =
        Broker::new(Arc::clone(&home.vault), home.recorder.clone()).with_retry(fast_retry());
    // Nothing exists yet: the other side's revocation succeeds and forgets the handle.
    broker.register(Arc::new(Hooked {
        before_issue: Box::new(move |id| {
            assert!(other.revoke(id, &RevokeReason::Manual).unwrap());
        }),
        ..Hooked::new(&home)
    }));
    let err = broker
        .issue_for_task(
            &task("T7"),
            &remit(&grant(&admin, "")),
            Duration::from_secs(600),
        )
        .unwrap_err();
    assert!(err.to_string().contains("revoked"), "{err}");
    // Other tests' roles may exist at this moment; this test's lease's role must not.
    let roles: Vec<String> = home
        .broker
        .task_leases("T7")
        .unwrap()
        .into_iter()
        .map(|l| remit_vault::backend::postgres::role_name(&l.id))
        .collect();
    assert!(!roles.is_empty());
    for role in &roles {
        assert!(!role_exists(role), "{role} was left behind");
    }
}
