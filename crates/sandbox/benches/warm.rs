//! The warm path: a second command started inside an already-running task (pre-made
//! namespaces, Landlock and seccomp already applied, the supervisor answering exec
//! notifications), beside a plain `fork+exec` of the same program from the same process.
//!
//! `cargo bench -p remit-sandbox --bench warm`

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // a development tool, not library code

use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use criterion::Criterion;
use remit_sandbox::{Event, Sandbox, SandboxSpec, SpawnRequest, Verdict};

fn run_once(sandbox: &mut Sandbox, spec: &SandboxSpec, argv: &[String], null: &std::fs::File) {
    let id = sandbox
        .spawn(&SpawnRequest {
            path: Path::new(&format!("/usr/bin/{}", argv[0])),
            argv,
            env: &spec.env,
            cwd: &spec.workspace,
            stdio: [null.as_fd(), null.as_fd(), null.as_fd()],
            new_process_group: false,
        })
        .unwrap_or_else(|e| panic!("{e}"));
    loop {
        let mut fds = vec![sandbox.event_fd()];
        if let Some(watch) = sandbox.exec_watch() {
            fds.push(watch.fd());
        }
        let ready = remit_sandbox::host::poll_readable(&fds, 1000).unwrap_or_default();
        if ready.get(1).copied().unwrap_or(false)
            && let Some(watch) = sandbox.exec_watch()
        {
            while let Ok(Some(attempt)) = watch.recv() {
                let _ = watch.respond(&attempt, Verdict::Allow);
            }
        }
        while let Ok(Some(event)) = sandbox.try_event() {
            if let Event::Exited { id: done, .. } = event
                && done == id
            {
                return;
            }
        }
    }
}

fn bench(c: &mut Criterion, sandbox: &mut Sandbox, spec: &SandboxSpec) {
    let null = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .unwrap_or_else(|e| panic!("{e}"));
    let mut group = c.benchmark_group("second command in a running task");
    group.measurement_time(Duration::from_secs(8));
    for (name, argv) in [
        ("true", vec!["true".to_string()]),
        (
            "sh -c 'echo hi'",
            vec!["sh".to_string(), "-c".to_string(), "echo hi".to_string()],
        ),
    ] {
        group.bench_function(format!("plain fork+exec: {name}"), |b| {
            b.iter(|| {
                std::process::Command::new(format!("/usr/bin/{}", argv[0]))
                    .args(&argv[1..])
                    .stdin(null.try_clone().unwrap_or_else(|e| panic!("{e}")))
                    .stdout(null.try_clone().unwrap_or_else(|e| panic!("{e}")))
                    .status()
                    .unwrap_or_else(|e| panic!("{e}"))
            })
        });
        group.bench_function(format!("remit task: {name}"), |b| {
            b.iter(|| run_once(sandbox, spec, &argv, &null))
        });
    }
    group.finish();
}

fn main() {
    // The sandbox is created first, while this process is still single-threaded.
    let workspace = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let spec = SandboxSpec::minimal("bench", workspace.path().to_path_buf());
    let mut sandbox = Sandbox::create(&spec).unwrap_or_else(|e| panic!("{e}"));
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion, &mut sandbox, &spec);
    criterion.final_summary();
}
