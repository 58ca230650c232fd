//! Gate overhead per effect, excluding the ledger (an in-memory journal): identify, check,
//! decide, record the decision, authorize; and the same for an exec decision.
//!
//! `cargo bench -p remit-gate --bench gate`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark, not library code

use std::sync::Arc;
use std::time::{Duration, Instant};

use remit_gate::gate::{Gate, Outcome, SystemClock};
use remit_gate::journal::MemoryJournal;
use remit_policy::engine::{Engine, Principal};
use remit_types::effect::Effect;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let text = r#"
[commands]
forbid = ["git push", "curl", "npm publish"]
prompt = ["cargo publish"]
[actions.deploy]
args = ["env"]
when = 'context.args.env != "production"'
"#;
    let loaded = remit_types::remit::parse(text, "bench.remit.toml", ".".into()).unwrap();
    let engine = Engine::load(&loaded).unwrap();
    let principal = Principal {
        task: "01BENCH".into(),
        agent: "bench".into(),
        owner: "alice".into(),
        requester: "alice".into(),
        remit: "sha256:00".into(),
        risk: "low".into(),
    };
    let journal = MemoryJournal::default();
    let gate = Arc::new(Gate::new(
        engine,
        principal,
        Arc::new(journal),
        Arc::new(SystemClock),
        Duration::from_secs(600),
    ));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let effect = Effect::Action {
        kind: "deploy".into(),
        workspace: String::new(),
        args: [("env".to_string(), "staging".to_string())].into(),
    };
    let facts = remit_policy::commands::ExecFacts {
        path: "/usr/bin/git".into(),
        argv: vec!["git".into(), "-C".into(), "repo".into(), "status".into()],
        ..Default::default()
    };
    let mut action = Vec::new();
    let mut exec = Vec::new();
    runtime.block_on(async {
        for i in 0..20_000 {
            let t = Instant::now();
            let outcome = gate.request(effect.clone(), Duration::ZERO).await;
            let elapsed = t.elapsed().as_secs_f64() * 1e6;
            let Outcome::Authorized(a) = outcome else {
                panic!("not authorized")
            };
            gate.performed(a, "ok");
            if i >= 1000 {
                action.push(elapsed);
            }
            let t = Instant::now();
            std::hint::black_box(gate.decide_exec(&facts, "/w"));
            if i >= 1000 {
                exec.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
    });
    action.sort_by(f64::total_cmp);
    exec.sort_by(f64::total_cmp);
    println!("| path | p50 | p99 |");
    println!("|---|---|---|");
    println!(
        "| typed action through the gate (decide + record + authorize) | {:.1} µs | {:.1} µs |",
        percentile(&action, 0.5),
        percentile(&action, 0.99)
    );
    println!(
        "| exec decision | {:.1} µs | {:.1} µs |",
        percentile(&exec, 0.5),
        percentile(&exec, 0.99)
    );
}
