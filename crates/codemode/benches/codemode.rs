//! Code mode's own costs, without any effect: an isolate's cold start with a "hello"
//! script (TypeScript stripped, bindings installed, run, torn down), and the overhead of a
//! binding call (argument conversion, the promise, the result back into JavaScript) with a
//! host that answers at once, and with one whose answer comes from the host's runtime.
//!
//! `cargo bench -p remit-codemode`; `bench/codemode.sh` puts `node -e` (and Deno) beside it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use remit_codemode::host::{Host, Reply};
use remit_codemode::isolate::{Limits, RunOptions, StopHandle, run};
use remit_codemode::source::{Language, Script};
use remit_codemode::tools::Call;

/// Answers every call at once (no effect).
struct Ready;

impl Host for Ready {
    fn call(&self, _script: &str, call: Call) -> Reply {
        Reply::Ready(Ok(
            serde_json::json!({ "path": "x", "content": "hello", "tool": call.tool() }),
        ))
    }
}

/// Answers every call from the host's runtime (a task switch each way, still no effect).
struct Later;

impl Host for Later {
    fn call(&self, _script: &str, _call: Call) -> Reply {
        Reply::Later(Box::pin(async {
            Ok(serde_json::json!({ "content": "hello" }))
        }))
    }
}

const HELLO_TS: &str =
    "const greeting: string = 'hello';\nconsole.log(greeting);\nreturn greeting;\n";
const CALLS: u64 = 1000;

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let options = RunOptions {
        limits: Limits::default(),
        runtime: runtime.handle().clone(),
    };
    let ready: Arc<dyn Host> = Arc::new(Ready);

    let mut group = c.benchmark_group("isolate");
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("cold start + hello (ts)", |b| {
        b.iter(|| {
            let script = Script::new("hello.ts", HELLO_TS.as_bytes(), Language::Ts).unwrap();
            let report = run(&script, Arc::clone(&ready), &options, &StopHandle::new());
            assert!(report.ok);
        })
    });
    group.bench_function("cold start + hello (js)", |b| {
        b.iter(|| {
            let script = Script::new(
                "hello.js",
                b"console.log('hello'); return 'hello';",
                Language::Js,
            )
            .unwrap();
            let report = run(&script, Arc::clone(&ready), &options, &StopHandle::new());
            assert!(report.ok);
        })
    });
    group.bench_function("strip types only (ts)", |b| {
        b.iter(|| Script::new("hello.ts", HELLO_TS.as_bytes(), Language::Ts).unwrap())
    });
    group.finish();

    // Per binding call: a script making CALLS calls, minus the same script making none.
    let loop_of = |n: u64| {
        Script::new(
            "calls.js",
            format!("let t = 0; for (let i = 0; i < {n}; i++) {{ t += (await remit.fs.read('x')).length; }} return t;")
                .as_bytes(),
            Language::Js,
        )
        .unwrap()
    };
    let many = loop_of(CALLS);
    let none = loop_of(0);
    let limits = Limits {
        calls: CALLS + 1,
        ..Limits::default()
    };
    let options = RunOptions {
        limits,
        runtime: runtime.handle().clone(),
    };
    let later: Arc<dyn Host> = Arc::new(Later);
    let mut group = c.benchmark_group("binding call");
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("script with 0 calls", |b| {
        b.iter(|| assert!(run(&none, Arc::clone(&ready), &options, &StopHandle::new()).ok))
    });
    group.throughput(Throughput::Elements(CALLS));
    group.bench_function("1000 calls, answered at once", |b| {
        b.iter(|| assert!(run(&many, Arc::clone(&ready), &options, &StopHandle::new()).ok))
    });
    group.bench_function("1000 calls, answered from the host runtime", |b| {
        b.iter(|| assert!(run(&many, Arc::clone(&later), &options, &StopHandle::new()).ok))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
