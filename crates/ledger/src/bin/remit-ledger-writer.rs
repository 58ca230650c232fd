//! A ledger writer process for tests and benchmarks (feature `testing`): opens a ledger,
//! appends a burst of events from some threads, some durable, and prints what was
//! acknowledged. Many of them run at once against one ledger to test and measure concurrent
//! writers; the tests kill some with SIGKILL.
//!
//! ```text
//! remit-ledger-writer (--sqlite PATH | --postgres URL) (--key-seed NAME:BYTE | --key-file PATH)
//!     [--tag TAG] [--threads T] [--events N] [--durable-every K] [--task] [--ready] [--quiet]
//! ```
//!
//! Each of `T` threads (default 1) appends `N` events (default 100; 0: until killed). Event
//! `i` of thread `t` is an `exec` with argv `["burst", TAG, t, i]`, except that every `K`-th
//! (`K` default 10, 0: none) is an `effect_started` with effect id `TAG/t/i`, appended with
//! `append_durable` and waited for, after which the thread prints `ACK <seq> TAG/t/i`. The
//! task of every event is `TAG`. With `--task`, a `run_authorized` comes first and a durable
//! `task_end` last (`ACK <seq> TAG/end`). With `--ready`, the process prints `READY` once the
//! ledger is open and starts when a line arrives on stdin. `--quiet` prints no `ACK` lines
//! (for benchmarks). At the end it closes the ledger
//! and prints `DONE TAG <events> <seconds from start to closed> <longest durable wait, ms>`.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use remit_ledger::{Ledger, LedgerKey, Location, Options, SystemClock};
use remit_types::event::{
    EffectRef, EffectStarted, EndReason, Exec, NewEvent, RemitRef, RunAuthorized, TaskCounts,
    TaskEnd, Verdict,
};

struct Args {
    location: Location,
    key: LedgerKey,
    tag: String,
    threads: u64,
    events: u64,
    durable_every: u64,
    task: bool,
    ready: bool,
    quiet: bool,
}

fn parse() -> Result<Args, String> {
    let mut location = None;
    let mut key = None;
    let mut tag = "w".to_owned();
    let (mut threads, mut events, mut durable_every) = (1u64, 100u64, 10u64);
    let (mut task, mut ready, mut quiet) = (false, false, false);
    let mut args = std::env::args().skip(1);
    let number = |v: Option<String>, name: &str| -> Result<u64, String> {
        v.ok_or(format!("`{name}` needs a value"))?
            .parse()
            .map_err(|_| format!("`{name}` needs a number"))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--sqlite" => {
                location = Some(Location::Sqlite(PathBuf::from(
                    args.next().ok_or("`--sqlite` needs a path")?,
                )))
            }
            "--postgres" => {
                location = Some(Location::Postgres(
                    args.next().ok_or("`--postgres` needs a url")?,
                ))
            }
            "--key-seed" => {
                let spec = args.next().ok_or("`--key-seed` needs NAME:BYTE")?;
                let (name, byte) = spec
                    .rsplit_once(':')
                    .ok_or("`--key-seed` needs NAME:BYTE")?;
                let byte: u8 = byte.parse().map_err(|_| "bad key seed byte")?;
                key = Some(LedgerKey::from_seed(name, [byte; 32]).map_err(|e| e.to_string())?);
            }
            "--key-file" => {
                let path = args.next().ok_or("`--key-file` needs a path")?;
                key = Some(LedgerKey::load(path.as_ref()).map_err(|e| e.to_string())?);
            }
            "--tag" => tag = args.next().ok_or("`--tag` needs a value")?,
            "--threads" => threads = number(args.next(), "--threads")?.max(1),
            "--events" => events = number(args.next(), "--events")?,
            "--durable-every" => durable_every = number(args.next(), "--durable-every")?,
            "--task" => task = true,
            "--ready" => ready = true,
            "--quiet" => quiet = true,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(Args {
        location: location.ok_or("give `--sqlite PATH` or `--postgres URL`")?,
        key: key.ok_or("give `--key-seed NAME:BYTE` or `--key-file PATH`")?,
        tag,
        threads,
        events,
        durable_every,
        task,
        ready,
        quiet,
    })
}

fn exec(tag: &str, thread: u64, i: u64) -> NewEvent {
    NewEvent::new(
        tag,
        "writer",
        Exec {
            argv: vec![
                "burst".into(),
                tag.into(),
                thread.to_string(),
                i.to_string(),
            ],
            cwd: "/workspace/project".into(),
            pid: 2 + (i % 30_000) as u32,
            ppid: 1,
            decision: Verdict::Allow,
            rule: None,
        },
    )
}

fn started(tag: &str, thread: u64, i: u64) -> NewEvent {
    NewEvent::new(
        tag,
        "writer",
        EffectStarted {
            effect: EffectRef {
                id: format!("{tag}/{thread}/{i}"),
                kind: "http.request".into(),
                target: "example.com:443".into(),
                attributes: Default::default(),
            },
            lease: None,
        },
    )
}

/// Print one line at once (lines of different threads never mix) and flush it.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn run(args: Args) -> Result<(), String> {
    let ledger = Ledger::open(
        args.location.clone(),
        args.key.clone(),
        Arc::new(SystemClock),
        Options::default(),
    )
    .map_err(|e| e.to_string())?;
    if args.ready {
        say("READY");
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
    }
    let start = Instant::now();
    let tag = args.tag.clone();
    if args.task {
        ledger
            .append(NewEvent::new(
                &tag,
                "writer",
                RunAuthorized {
                    requester: "bench@example.com".into(),
                    owner: "bench@example.com".into(),
                    remit: RemitRef {
                        name: "burst".into(),
                        sha256: "0".repeat(64),
                    },
                    identity: format!("spiffe://remit.local/agent/writer/task/{tag}"),
                    expires: None,
                    permissions: vec![],
                    secrets_reachable: vec![],
                    degraded: vec![],
                },
            ))
            .map_err(|e| e.to_string())?;
    }
    let threads: Vec<_> = (0..args.threads)
        .map(|t| {
            let ledger = ledger.clone();
            let tag = tag.clone();
            let (events, every, quiet) = (args.events, args.durable_every, args.quiet);
            std::thread::spawn(move || -> Result<(u64, f64), String> {
                let mut i = 0u64;
                let mut longest = 0f64;
                while events == 0 || i < events {
                    if every > 0 && i % every == every - 1 {
                        let asked = Instant::now();
                        let seq = ledger
                            .append_durable(started(&tag, t, i))
                            .and_then(|d| d.wait())
                            .map_err(|e| e.to_string())?;
                        longest = longest.max(asked.elapsed().as_secs_f64());
                        if !quiet {
                            say(&format!("ACK {seq} {tag}/{t}/{i}"));
                        }
                    } else {
                        ledger.append(exec(&tag, t, i)).map_err(|e| e.to_string())?;
                    }
                    i += 1;
                }
                Ok((i, longest))
            })
        })
        .collect();
    let (mut total, mut longest) = (0, 0f64);
    for thread in threads {
        let (n, wait) = thread
            .join()
            .map_err(|_| "a writer thread panicked".to_owned())??;
        total += n;
        longest = longest.max(wait);
    }
    if args.task {
        let end = TaskEnd {
            exit_code: Some(0),
            signal: None,
            reason: EndReason::Exited,
            detail: None,
            counts: TaskCounts::default(),
        };
        let seq = ledger
            .append_durable(NewEvent::new(&tag, "writer", end))
            .and_then(|d| d.wait())
            .map_err(|e| e.to_string())?;
        say(&format!("ACK {seq} {tag}/end"));
        total += 2;
    }
    ledger.close().map_err(|e| e.to_string())?;
    say(&format!(
        "DONE {tag} {total} {:.6} {:.3}",
        start.elapsed().as_secs_f64(),
        longest * 1e3
    ));
    Ok(())
}

fn main() -> ExitCode {
    match parse().and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("remit-ledger-writer: {e}");
            ExitCode::from(2)
        }
    }
}
