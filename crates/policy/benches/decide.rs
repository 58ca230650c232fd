//! Decision latency on generated remits of 10, 200 and 2,000 policies: remit's sliced
//! evaluation beside Cedar's `Authorizer::is_authorized` over the whole set, in the same
//! run, on the same requests, with the decisions checked identical.
//!
//! `cargo bench -p remit-policy --bench decide`
//!
//! First a table of per-decision percentiles (p50, p99: criterion reports means and
//! confidence intervals, not tails), then the same decisions under criterion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark, not library code

use std::fmt::Write as _;
use std::time::Instant;

use remit_policy::engine::{Engine, Principal, Situation};
use remit_types::effect::Effect;

const VERBS: [&str; 12] = [
    "push", "publish", "deploy", "install", "run", "build", "test", "login", "exec", "apply",
    "delete", "sync",
];
const TOOLS: [&str; 12] = [
    "git",
    "npm",
    "cargo",
    "pip",
    "kubectl",
    "terraform",
    "docker",
    "gh",
    "aws",
    "gcloud",
    "helm",
    "make",
];

/// A remit with about `n` policies: command rules, resource-scoped Cedar policies on refs and
/// hosts, and typed actions.
fn generate(n: usize, dir: &std::path::Path) -> (String, Vec<Effect>) {
    let commands = n * 6 / 10;
    let refs = n * 2 / 10;
    let hosts = n / 10;
    let actions = (n / 10).max(1);
    let mut forbid = Vec::new();
    let mut prompt = Vec::new();
    let mut effects = Vec::new();
    for i in 0..commands {
        let tool = TOOLS[i % TOOLS.len()];
        let verb = VERBS[(i / TOOLS.len()) % VERBS.len()];
        let rule = format!("\"{tool} {verb} p{i}\"");
        if i % 5 == 0 {
            prompt.push(rule);
        } else {
            forbid.push(rule);
        }
        effects.push(Effect::Exec {
            argv: vec![
                tool.into(),
                "-C".into(),
                "x".into(),
                verb.into(),
                format!("p{i}"),
            ],
            cwd: "/w".into(),
        });
        effects.push(Effect::Exec {
            argv: vec![tool.into(), verb.into(), "other".into()],
            cwd: "/w".into(),
        });
    }
    let mut cedar = String::new();
    for i in 0..refs {
        let _ = writeln!(
            cedar,
            "@id(\"ref-{i}\")\n{}(principal, action == Action::\"git_push\", resource == Ref::\"refs/heads/b{i}\") when {{ !context.push.force }};",
            if i % 2 == 0 { "permit" } else { "forbid" }
        );
        effects.push(Effect::GitPush {
            remote: "origin".into(),
            reference: format!("refs/heads/b{i}"),
            old: String::new(),
            new: String::new(),
            force: i % 3 == 0,
            new_branch: false,
        });
    }
    for i in 0..hosts {
        let _ = writeln!(
            cedar,
            "@id(\"host-{i}\")\npermit(principal, action == Action::\"http_request\", resource == Host::\"h{i}.example.com\") when {{ context.request.method == \"GET\" }};"
        );
        effects.push(Effect::HttpRequest {
            host: format!("h{i}.example.com"),
            port: 443,
            method: if i % 2 == 0 { "GET" } else { "POST" }.into(),
            path: "/".into(),
        });
    }
    std::fs::write(dir.join("generated.cedar"), cedar).unwrap();
    let mut text = format!(
        "[policy]\ncedar = [\"generated.cedar\"]\n[commands]\nforbid = [{}]\nprompt = [{}]\n",
        forbid.join(", "),
        prompt.join(", ")
    );
    for i in 0..actions {
        let _ = write!(text, "[actions.act{i}]\nargs = [\"target\"]\n");
        if i % 2 == 0 {
            text.push_str("approve = { count = 2 }\n");
        }
        if i % 3 == 0 {
            text.push_str("quota = 3\n");
        }
        effects.push(Effect::Action {
            kind: format!("act{i}"),
            workspace: String::new(),
            args: [("target".to_string(), format!("t{i}"))].into(),
        });
    }
    (text, effects)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A generated remit of about `n` policies, loaded, and its effects (the directory holds its
/// Cedar file).
fn engine_of(n: usize) -> (tempfile::TempDir, Engine, Vec<Effect>) {
    let dir = tempfile::tempdir().unwrap();
    let (text, effects) = generate(n, dir.path());
    let loaded =
        remit_types::remit::parse(&text, "bench.remit.toml", dir.path().to_path_buf()).unwrap();
    let engine = Engine::load(&loaded).unwrap();
    (dir, engine, effects)
}

fn principal() -> Principal {
    Principal {
        task: "01BENCH".into(),
        agent: "bench".into(),
        owner: "alice".into(),
        requester: "alice".into(),
        remit: "sha256:00".into(),
        risk: "low".into(),
    }
}

/// The same decisions under criterion: every generated effect once per iteration.
fn with_criterion() {
    let mut c = criterion::Criterion::default()
        .sample_size(10)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2))
        .configure_from_args();
    let situation = Situation::default();
    let principal = principal();
    for n in [10usize, 200, 2000] {
        let (_dir, engine, effects) = engine_of(n);
        let mut group = c.benchmark_group(format!("decide/{n}_policies"));
        group.throughput(criterion::Throughput::Elements(effects.len() as u64));
        group.bench_function("remit sliced", |b| {
            b.iter(|| {
                for e in &effects {
                    std::hint::black_box(engine.decide(&principal, e, &situation));
                }
            })
        });
        group.bench_function("Cedar full set", |b| {
            b.iter(|| {
                for e in &effects {
                    std::hint::black_box(engine.decide_full(&principal, e, &situation));
                }
            })
        });
        group.finish();
    }
    c.final_summary();
}

fn main() {
    table();
    with_criterion();
}

fn table() {
    let principal = principal();
    let situation = Situation::default();
    println!(
        "| policies | remit p50 | remit p99 | Cedar full set p50 | Cedar full set p99 | speed-up (p50) | decisions identical |"
    );
    println!("|---|---|---|---|---|---|---|");
    for n in [10usize, 200, 2000] {
        let (_dir, engine, effects) = engine_of(n);
        let count = engine.policies().len();
        // Warm up and check decisions are identical.
        let mut identical = true;
        for e in &effects {
            identical &= engine.decide(&principal, e, &situation)
                == engine.decide_full(&principal, e, &situation);
        }
        let rounds = (20_000 / effects.len()).max(3);
        let mut sliced = Vec::new();
        let mut full = Vec::new();
        for _ in 0..rounds {
            for e in &effects {
                let t = Instant::now();
                std::hint::black_box(engine.decide(&principal, e, &situation));
                sliced.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
        let full_rounds = if n >= 2000 { 1 } else { rounds.min(20) };
        for _ in 0..full_rounds {
            for e in &effects {
                let t = Instant::now();
                std::hint::black_box(engine.decide_full(&principal, e, &situation));
                full.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
        sliced.sort_by(f64::total_cmp);
        full.sort_by(f64::total_cmp);
        let (s50, s99, f50, f99) = (
            percentile(&sliced, 0.5),
            percentile(&sliced, 0.99),
            percentile(&full, 0.5),
            percentile(&full, 0.99),
        );
        println!(
            "| {count} | {s50:.1} µs | {s99:.1} µs | {f50:.1} µs | {f99:.1} µs | {:.0}x | {} |",
            f50 / s50,
            if identical { "yes" } else { "NO" }
        );
    }
}
