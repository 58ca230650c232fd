//! `cargo bench -p remit-identity`: minting a task identity (claims, ES256 signature, the
//! token's record in `identity.db`), signing alone, and remit's own verification (signature,
//! claims, revocation list). Criterion's estimates, then per-call percentiles of the same
//! operations (`p50` is the target: mint + sign ≤ 200 µs).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use remit_identity::jws::EcSigner;
use remit_identity::{Identity, SystemClock, TaskIdentityRequest};

fn request(task: &str) -> TaskIdentityRequest<'_> {
    TaskIdentityRequest {
        agent: "ci-fixer",
        task,
        owner: "alice@example.com",
        requester: "alice",
        remit_hash: "sha256:7c1d0e5f8a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5",
        audience: &[],
        lifetime: Duration::from_secs(45 * 60),
    }
}

fn benches(c: &mut Criterion) {
    let home = tempfile::tempdir().unwrap();
    let identity = Identity::open_home(home.path(), Arc::new(SystemClock)).unwrap();
    let mut i = 0u64;
    c.bench_function("identity/mint+sign+record", |b| {
        b.iter(|| {
            i += 1;
            let task = format!("01JCZ8Q6F3V4X2M8N9P{i:07}");
            black_box(identity.mint(&request(&task)).unwrap());
        })
    });
    let signer = EcSigner::from_pkcs8(&EcSigner::generate_pkcs8().unwrap()).unwrap();
    let claims = serde_json::to_vec(&serde_json::json!({
        "iss": "https://remit.local", "sub": "spiffe://remit.local/agent/ci-fixer/task/01JCZ8Q6F3V4X2M8N9P0R1S2T3",
        "aud": ["https://remit.local"], "exp": 1_800_000_000, "iat": 1_799_997_300, "jti": "abcdefghijklmnopqrstuv",
        "agent": "ci-fixer", "task": "01JCZ8Q6F3V4X2M8N9P0R1S2T3", "owner": "alice@example.com",
        "requester": "alice", "remit_hash": "sha256:7c1d",
    }))
    .unwrap();
    c.bench_function("identity/sign (ES256 only)", |b| {
        b.iter(|| black_box(signer.sign(&claims).unwrap()))
    });
    let token = identity
        .mint(&request("01JCZ8Q6F3V4X2M8N9P0R1S2T3"))
        .unwrap();
    c.bench_function("identity/verify (remit's own, with revocation)", |b| {
        b.iter(|| black_box(identity.verify(token.expose(), None).unwrap()))
    });
}

fn percentiles(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    println!(
        "{name:<48} n={:<6} p50 {:>9.1?}  p90 {:>9.1?}  p99 {:>9.1?}",
        samples.len(),
        at(0.5),
        at(0.9),
        at(0.99)
    );
}

fn per_call() {
    let n: usize = std::env::var("REMIT_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let home = tempfile::tempdir().unwrap();
    let identity = Identity::open_home(home.path(), Arc::new(SystemClock)).unwrap();
    let tasks: Vec<String> = (0..n).map(|i| format!("T{i:025}")).collect();
    let mut mint = Vec::with_capacity(n);
    let mut tokens = Vec::with_capacity(n);
    for task in &tasks {
        let t = Instant::now();
        let token = identity.mint(&request(task)).unwrap();
        mint.push(t.elapsed());
        tokens.push(token);
    }
    let mut verify = Vec::with_capacity(n);
    for token in &tokens {
        let t = Instant::now();
        black_box(identity.verify(token.expose(), None).unwrap());
        verify.push(t.elapsed());
    }
    println!("\nper call (one process, SQLite WAL, synchronous=NORMAL for token records):");
    percentiles("identity mint + sign + record", mint);
    percentiles("identity verify (signature, claims, revocation)", verify);
}

criterion_group!(group, benches);

fn main() {
    group();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
    per_call();
}
