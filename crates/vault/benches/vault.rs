//! `cargo bench -p remit-vault`: PostgreSQL role leases issued and revoked against a local
//! server (a throwaway cluster from Debian's packages, Unix socket), each recorded durably in
//! a real SQLite ledger, and the revocation of 1,000 leases at once (a kill). Per-call
//! percentiles; targets from the issue: issue and revoke ≤ 20 ms p50 each, 1,000 leases
//! revoked ≤ 2 s.
//!
//! `REMIT_BENCH_N` sets the number of single leases (default 200); `REMIT_BENCH_NO_PG=1`
//! skips PostgreSQL; `REMIT_BENCH_HOME` places the vault and the ledger (e.g. on another disk).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use remit_identity::SystemClock;
use remit_ledger::testing::TempPostgres;
use remit_ledger::{Ledger, Options};
use remit_vault::{Broker, Delivery, LeaseSpec, RevokeReason, TaskRef, Vault};

fn percentiles(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    println!(
        "{name:<52} n={:<5} p50 {:>9.2?}  p90 {:>9.2?}  p99 {:>9.2?}",
        samples.len(),
        at(0.5),
        at(0.9),
        at(0.99)
    );
}

fn once(name: &str, d: Duration) {
    println!("{name:<52} {d:>9.2?}");
}

fn pg_spec(admin: &str) -> LeaseSpec {
    LeaseSpec {
        name: "analytics".into(),
        backend: "postgres".into(),
        scope: serde_json::to_value(
            &remit_types::remit::parse(
                &format!(
                    "[credentials.postgres.analytics]\nadmin = \"{admin}\"\nschemas = [\"reporting\"]\n"
                ),
                "bench",
                ".".into(),
            )
            .unwrap()
            .remit
            .credentials
            .postgres["analytics"],
        )
        .unwrap(),
        destination: None,
        delivery: Delivery::Env,
        ttl: Duration::from_secs(3600),
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: usize = std::env::var("REMIT_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    // `REMIT_BENCH_HOME`: where the vault and the ledger live (default: a temporary
    // directory); pointing it at a tmpfs separates their fsyncs from PostgreSQL's.
    let home = match std::env::var_os("REMIT_BENCH_HOME") {
        Some(dir) => tempfile::tempdir_in(dir).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let vault = Arc::new(Vault::open_home(home.path(), Arc::new(SystemClock)).unwrap());
    let ledger = Arc::new(
        Ledger::open_home(
            home.path(),
            Arc::new(remit_ledger::SystemClock),
            Options::default(),
        )
        .unwrap(),
    );
    let broker = Broker::new(Arc::clone(&vault), ledger.clone());
    println!(
        "remit-vault (vault.db synchronous=FULL; every lease recorded durably in a SQLite ledger)"
    );

    // Static leases: the lease table and the ledger alone.
    let t = TaskRef {
        task: "STATIC".into(),
        agent: "bench".into(),
    };
    let spec = |i: usize| LeaseSpec {
        name: format!("s{i}"),
        backend: "static".into(),
        scope: serde_json::json!({}),
        destination: Some("api.example.com".into()),
        delivery: Delivery::Injected,
        ttl: Duration::from_secs(3600),
    };
    let mut issue = Vec::new();
    for i in 0..n {
        let s = Instant::now();
        broker.issue(&t, &spec(i)).unwrap();
        issue.push(s.elapsed());
    }
    percentiles("static lease issue", issue);
    let big = TaskRef {
        task: "KILLED".into(),
        agent: "bench".into(),
    };
    for i in 0..1000 {
        broker.issue(&big, &spec(i)).unwrap();
    }
    let s = Instant::now();
    let report = broker.revoke_task("KILLED", &RevokeReason::Killed).unwrap();
    let took = s.elapsed();
    assert_eq!(report.revoked.len(), 1000);
    once("revoke 1,000 static leases of a killed task", took);

    if std::env::var_os("REMIT_BENCH_NO_PG").is_some() {
        return;
    }
    let pg = TempPostgres::start().unwrap();
    let url = pg.create_database("bench").unwrap();
    pg.psql_in(
        "bench",
        "CREATE SCHEMA reporting; CREATE TABLE reporting.orders (id int)",
    )
    .unwrap();
    vault.set("pg-admin", url.as_bytes(), "bench").unwrap();
    let spec = pg_spec("pg-admin");
    // Warm the admin connection (a supervisor keeps it).
    let warm = broker
        .issue(
            &TaskRef {
                task: "WARM".into(),
                agent: "bench".into(),
            },
            &spec,
        )
        .unwrap();
    broker
        .revoke(&warm.lease.id, &RevokeReason::TaskEnd)
        .unwrap();

    // The backend alone: no lease table, no ledger (what PostgreSQL and the role's SCRAM
    // verifier cost).
    {
        use remit_vault::backend::postgres::PostgresBackend;
        use remit_vault::backend::{Backend, Draft};
        let backend = PostgresBackend::new(Arc::clone(&vault));
        let t = TaskRef {
            task: "RAW".into(),
            agent: "bench".into(),
        };
        let mut issue = Vec::new();
        let mut revoke = Vec::new();
        for i in 0..n.min(100) {
            let id = format!("lease-{i:016x}");
            let now = std::time::SystemTime::now();
            let draft = Draft {
                id: &id,
                task: &t,
                name: "analytics",
                scope: &spec.scope,
                issued: now,
                expires: now + Duration::from_secs(3600),
            };
            let s = Instant::now();
            let mut handle = backend.prepare(&draft).unwrap();
            backend.issue(&draft, &mut handle).unwrap();
            issue.push(s.elapsed());
            let lease = broker.lease(&warm.lease.id).unwrap();
            let s = Instant::now();
            backend.revoke(&lease, &handle).unwrap();
            revoke.push(s.elapsed());
        }
        percentiles("postgres backend issue alone", issue);
        percentiles("postgres backend revoke alone", revoke);
    }

    let mut issue = Vec::new();
    let mut ids = Vec::new();
    for i in 0..n {
        let t = TaskRef {
            task: format!("PG{i}"),
            agent: "bench".into(),
        };
        let s = Instant::now();
        let lease = broker.issue(&t, &spec).unwrap();
        issue.push(s.elapsed());
        ids.push(lease.lease.id);
    }
    let mut revoke = Vec::new();
    for id in &ids {
        let s = Instant::now();
        broker.revoke(id, &RevokeReason::TaskEnd).unwrap();
        revoke.push(s.elapsed());
    }
    percentiles("postgres role lease issue (CREATE ROLE + grants)", issue);
    percentiles(
        "postgres role lease revoke (NOLOGIN, terminate, DROP)",
        revoke,
    );

    let big = TaskRef {
        task: "PGKILLED".into(),
        agent: "bench".into(),
    };
    let s = Instant::now();
    for _ in 0..1000 {
        broker.issue(&big, &spec).unwrap();
    }
    once("issue 1,000 postgres role leases (one by one)", s.elapsed());
    let s = Instant::now();
    let report = broker
        .revoke_task("PGKILLED", &RevokeReason::Killed)
        .unwrap();
    let took = s.elapsed();
    assert_eq!(report.revoked.len(), 1000, "{report:?}");
    once("revoke 1,000 postgres role leases of a killed task", took);
    let left = pg
        .psql("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'remit_%'")
        .unwrap();
    assert_eq!(left.trim(), "0");
    ledger.close().unwrap();
}
