//! `remit code`: run a JavaScript or TypeScript program in code mode, print the API it
//! programs against, and (inside a task) the helper code mode uses for file and HTTP work.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use remit_codemode::isolate::{ErrorKind, Limits, Report, StopHandle};
use remit_codemode::source::{Language, Script};
use remit_codemode::task::{HELPER, HostOptions, TaskHost, approval_timeout};
use remit_gate::prepare::{RunRequest, prepare};
use remit_gate::record::remit_home;
use remit_gate::run::{Outcome, RunOptions, RunReport, Task};
use remit_types::size::{ByteSize, Span};

use crate::exit::Outcome as Exit;

/// `remit code …`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Run a script in a new task: its only capabilities are the `remit` bindings, each
    /// decided by the remit and recorded in the ledger with the script's SHA-256.
    Run(RunArgs),
    /// Print `remit.d.ts`, the API a script programs against.
    Api,
    /// Inside a task: answer one file or HTTP request of code mode (JSON on standard input).
    #[command(hide = true)]
    Helper,
}

/// Limits of a script.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct LimitArgs {
    /// Heap of the isolate.
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = ByteSize::parse)]
    memory: ByteSize,
    /// CPU time of the isolate.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = Span::parse)]
    cpu: Span,
    /// Wall time, binding calls included.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = Span::parse)]
    wall: Span,
    /// Binding calls.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    max_calls: u64,
    /// Console output plus the result.
    #[arg(long, value_name = "SIZE", default_value = "1MiB", value_parser = ByteSize::parse)]
    max_output: ByteSize,
}

impl LimitArgs {
    pub(crate) fn limits(&self) -> Limits {
        Limits {
            memory: usize::try_from(self.memory.0).unwrap_or(usize::MAX),
            cpu: self.cpu.0,
            wall: self.wall.0,
            calls: self.max_calls,
            output: usize::try_from(self.max_output.0).unwrap_or(usize::MAX),
            ..Limits::default()
        }
    }
}

/// Arguments of `remit code run`.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// The script (`.ts` is TypeScript, `.js` JavaScript; `-` reads standard input).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The remit granting what the task may do. Default: the embedded default remit.
    #[arg(long, value_name = "FILE", conflicts_with = "task")]
    remit: Option<PathBuf>,
    /// The workspace. Default: the remit's, else the current directory.
    #[arg(long, value_name = "DIR", conflicts_with = "task")]
    workspace: Option<PathBuf>,
    /// Run in this running task (`remit task list`) instead of a new one: under its remit,
    /// its identity and its leases, recorded in its ledger. Only its owner or root may.
    #[arg(long, value_name = "ID")]
    task: Option<String>,
    /// The script's language, when its name does not say.
    #[arg(long, value_enum)]
    language: Option<Lang>,
    /// Print the whole report (result, output, error, calls, task, receipt) as JSON.
    #[arg(long)]
    json: bool,
    /// Also write the task's ledger events here, as JSON lines, when it ends.
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Print no summary.
    #[arg(short, long)]
    quiet: bool,
    /// Run even if this host cannot enforce a layer the remit needs. Loud and recorded.
    #[arg(long)]
    dangerously_allow_degraded: bool,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum Lang {
    Ts,
    Js,
}

pub(crate) fn run(command: Command) -> anyhow::Result<Exit> {
    match command {
        Command::Api => {
            print!("{}", remit_codemode::d_ts());
            Ok(Exit::Success)
        }
        Command::Helper => Ok(match remit_codemode::helper::main() {
            c if c == std::process::ExitCode::SUCCESS => Exit::Success,
            _ => Exit::Status(2),
        }),
        Command::Run(args) => run_script(args),
    }
}

/// A task started for code mode or MCP: no command of its own.
pub(crate) struct Started {
    pub(crate) request: RunRequest,
    pub(crate) task: Task,
    pub(crate) has_helper: bool,
}

/// Start a task with no command of its own, shown as `label`. Must run before any thread
/// exists in this process.
pub(crate) fn start_task(
    remit: Option<&PathBuf>,
    workspace: Option<&PathBuf>,
    label: Vec<String>,
    allow_degraded: bool,
    log: Option<PathBuf>,
) -> anyhow::Result<Result<Started, String>> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let remit = match remit {
        Some(path) => remit_types::remit::load(path)?,
        None => remit_types::remit::default_remit(cwd.clone())?,
    };
    let host_env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let mut request = RunRequest {
        remit,
        workspace: workspace.cloned(),
        // The task runs no command of its own; `prepare` wants one that exists.
        command: vec!["true".into()],
        allow_degraded,
        cwd,
        host_env: host_env.clone(),
        task: crate::cmd::run::new_task_id()?,
    };
    // What tasks whose supervisor died left in their repositories, put back before this
    // task's sandbox is planned over one of them.
    let recovered = crate::cmd::run::put_back_crashed(&request);
    let prepared = prepare(&request)?;
    request.command = label;
    if request.allow_degraded {
        eprintln!(
            "remit: WARNING: degraded mode was asked for: layers this host cannot enforce will be skipped, and the record will say so"
        );
    }
    let binary = std::env::current_exe().ok();
    let options = RunOptions {
        home: remit_home(&host_env),
        log,
        remit_binary: binary.clone(),
        notices: false,
        recovered,
    };
    match Task::start(&request, prepared, &options) {
        Ok(task) => Ok(Ok(Started {
            request,
            task,
            has_helper: binary.is_some(),
        })),
        Err(e) if e.is_denial() => Ok(Err(e.to_string())),
        Err(e) => Err(e.into()),
    }
}

fn run_script(args: RunArgs) -> anyhow::Result<Exit> {
    // Read and check the script before any task exists: bad input records nothing.
    let (name, bytes) = if args.file.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .take(remit_codemode::source::MAX_SCRIPT_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .context("cannot read the script from standard input")?;
        ("stdin.ts".to_owned(), bytes)
    } else {
        let meta = std::fs::metadata(&args.file)
            .with_context(|| format!("cannot read `{}`", args.file.display()))?;
        if meta.len() > remit_codemode::source::MAX_SCRIPT_BYTES as u64 {
            anyhow::bail!(
                "`{}` is {} bytes; scripts may be at most {} bytes",
                args.file.display(),
                meta.len(),
                remit_codemode::source::MAX_SCRIPT_BYTES
            );
        }
        let bytes = std::fs::read(&args.file)
            .with_context(|| format!("cannot read `{}`", args.file.display()))?;
        let name = args
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "script.ts".into());
        (name, bytes)
    };
    let language = match args.language {
        Some(Lang::Ts) => Language::Ts,
        Some(Lang::Js) => Language::Js,
        None => Language::from_path(std::path::Path::new(&name)),
    };
    let script = Script::new(&name, &bytes, language)?;
    let limits = args.limits.limits();
    if let Some(task) = &args.task {
        return run_in_task(&args, task, &name, &bytes, language, &limits);
    }

    let label = vec![
        "remit".to_owned(),
        "code".to_owned(),
        "run".to_owned(),
        name.clone(),
    ];
    let started = match start_task(
        args.remit.as_ref(),
        args.workspace.as_ref(),
        label,
        args.dangerously_allow_degraded,
        args.log.clone(),
    )? {
        Ok(s) => s,
        Err(denial) => {
            eprintln!("remit: denied: {denial}");
            return Ok(Exit::Denied);
        }
    };
    let Started {
        request,
        mut task,
        has_helper,
    } = started;
    let task_id = request.task.to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the supervisor's runtime")?;
    let remit = request.remit.remit.clone();
    let wall = limits.wall;
    let (outcome, report) = runtime.block_on(async {
        let host = TaskHost::new(
            task.client(),
            &remit,
            HostOptions {
                via: "code",
                approval_wait: approval_timeout(&remit).min(wall),
                helper: has_helper.then(|| PathBuf::from(HELPER)),
            },
        );
        let stop = StopHandle::new();
        let (tx, mut rx) = tokio::sync::oneshot::channel::<Report>();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        {
            let host = host.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let report = host.run_script(script, limits, stop).await;
                let _ = tx.send(report);
                let _ = done_tx.send(());
            });
        }
        let until = Box::pin(async move {
            let _ = done_rx.await;
        });
        let outcome = task.supervise(false, Some(until)).await;
        // The task ended first (killed, out of time): stop the script and collect what it did.
        let report = match rx.try_recv() {
            Ok(r) => Some(r),
            Err(_) => {
                stop.stop(match &outcome {
                    Ok(Outcome::TimedOut(_)) => "the task reached its wall-clock limit",
                    _ => "the task ended",
                });
                tokio::time::timeout(Duration::from_secs(10), rx)
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
        };
        (outcome, report)
    });
    let run_report = task.end(outcome)?;
    drop(runtime);
    print_report(&args, &task_id, report.as_ref(), &run_report)
}

/// The body of `POST /v1/code`: a script and its limits.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeRequest {
    name: String,
    source: String,
    language: String,
    memory: u64,
    cpu_ms: u64,
    wall_ms: u64,
    calls: u64,
    output: u64,
}

/// Runs `remit code run --task` requests inside the supervisor of a `remit run` task.
pub(crate) struct Runner {
    pub(crate) remit: remit_types::remit::Remit,
    pub(crate) helper: bool,
}

impl remit_gate::api::CodeRunner for Runner {
    fn run(
        &self,
        client: remit_gate::run::TaskClient,
        request: serde_json::Value,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<serde_json::Value, String>> + Send>,
    > {
        let remit = self.remit.clone();
        let helper = self.helper;
        Box::pin(async move {
            let request: CodeRequest = serde_json::from_value(request)
                .map_err(|e| format!("malformed code request: {e}"))?;
            let language = match request.language.as_str() {
                "ts" => Language::Ts,
                "js" => Language::Js,
                other => return Err(format!("unknown language `{other}` (ts or js)")),
            };
            let script = Script::new(&request.name, request.source.as_bytes(), language)
                .map_err(|e| e.to_string())?;
            let limits = Limits {
                memory: usize::try_from(request.memory).unwrap_or(usize::MAX),
                cpu: Duration::from_millis(request.cpu_ms),
                wall: Duration::from_millis(request.wall_ms),
                calls: request.calls,
                output: usize::try_from(request.output).unwrap_or(usize::MAX),
                ..Limits::default()
            };
            let host = TaskHost::new(
                client,
                &remit,
                HostOptions {
                    via: "code",
                    approval_wait: approval_timeout(&remit).min(limits.wall),
                    helper: helper.then(|| PathBuf::from(HELPER)),
                },
            );
            let report = host.run_script(script, limits, StopHandle::new()).await;
            let exit = match exit_of(Some(&report), false) {
                Exit::Success => 0,
                Exit::Denied => 1,
                Exit::Status(code) => code,
            };
            Ok(serde_json::json!({ "report": report, "exit": exit }))
        })
    }
}

/// `remit code run --task ID`: send the script to the task's supervisor and print what it
/// reports.
fn run_in_task(
    args: &RunArgs,
    task: &str,
    name: &str,
    bytes: &[u8],
    language: Language,
    limits: &Limits,
) -> anyhow::Result<Exit> {
    let Some((dir, _)) = crate::cmd::approvals::tasks()
        .into_iter()
        .find(|(_, i)| i.task == task)
    else {
        anyhow::bail!("no running task `{task}` (see `remit task list`)");
    };
    let request = CodeRequest {
        name: name.to_owned(),
        // `Script::new` has checked it is UTF-8.
        source: String::from_utf8_lossy(bytes).into_owned(),
        language: match language {
            Language::Ts => "ts".into(),
            Language::Js => "js".into(),
        },
        memory: limits.memory as u64,
        cpu_ms: u64::try_from(limits.cpu.as_millis()).unwrap_or(u64::MAX),
        wall_ms: u64::try_from(limits.wall.as_millis()).unwrap_or(u64::MAX),
        calls: limits.calls,
        output: limits.output as u64,
    };
    let socket = dir.join("control.sock");
    let response = remit_gate::client::request(
        &socket,
        "POST",
        "/v1/code",
        Some(&serde_json::to_value(&request)?),
        limits.wall + Duration::from_secs(30),
    )
    .with_context(|| {
        format!(
            "cannot reach the task's control socket `{}`",
            socket.display()
        )
    })?;
    if response.status != 200 {
        anyhow::bail!(
            "task `{task}` refused the script: {}",
            response.body["error"].as_str().unwrap_or("no reason given")
        );
    }
    let report = &response.body["report"];
    let exit = match response.body["exit"].as_u64() {
        Some(0) => Exit::Success,
        Some(1) => Exit::Denied,
        Some(code) => Exit::Status(u8::try_from(code).unwrap_or(2)),
        None => anyhow::bail!("task `{task}` answered without an exit status"),
    };
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let value = serde_json::json!({ "task": task, "report": report });
        writeln!(stdout, "{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        stdout.write_all(report["output"].as_str().unwrap_or("").as_bytes())?;
        if !report["result"].is_null() {
            writeln!(
                stdout,
                "{}",
                serde_json::to_string_pretty(&report["result"])?
            )?;
        }
    }
    stdout.flush()?;
    if !args.json
        && let Some(error) = report.get("error").filter(|e| !e.is_null())
    {
        eprintln!(
            "remit: error: {}: {}",
            report["script"].as_str().unwrap_or(name),
            error["message"].as_str().unwrap_or("failed")
        );
    }
    Ok(exit)
}

/// The exit status of a script's report (`timed_out`: the task reached its wall limit).
fn exit_of(report: Option<&Report>, timed_out: bool) -> Exit {
    match report {
        None => Exit::Status(2),
        Some(r) => match &r.error {
            None => Exit::Success,
            Some(e) => match &e.kind {
                ErrorKind::Exception { code: Some(c), .. } if c == "denied" || c == "pending" => {
                    Exit::Denied
                }
                ErrorKind::Killed if timed_out => Exit::Status(124),
                ErrorKind::Killed => Exit::Status(137),
                _ => Exit::Status(2),
            },
        },
    }
}

/// `text` with every control but newlines and tabs escaped (see `controls_escaped`).
fn terminal_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (body, newline) = match line.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (line, ""),
        };
        let pieces: Vec<String> = body
            .split('\t')
            .map(remit_types::effect::controls_escaped)
            .collect();
        out.push_str(&pieces.join("\t"));
        out.push_str(newline);
    }
    out
}

fn print_report(
    args: &RunArgs,
    task: &str,
    report: Option<&Report>,
    run: &RunReport,
) -> anyhow::Result<Exit> {
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let value = serde_json::json!({
            "task": task,
            "report": report,
            "receipt": run.receipt.as_ref().map(|p| p.display().to_string()),
            "record_error": run.record_error,
        });
        writeln!(stdout, "{}", serde_json::to_string_pretty(&value)?)?;
    } else if let Some(report) = report {
        if std::io::IsTerminal::is_terminal(&stdout) {
            // The script's text on the user's terminal: lines and tabs as they are, every
            // other control escaped, so it cannot hide or forge remit's own lines.
            stdout.write_all(terminal_text(&report.output).as_bytes())?;
        } else {
            stdout.write_all(report.output.as_bytes())?;
        }
        if let Some(result) = &report.result {
            writeln!(stdout, "{}", serde_json::to_string_pretty(result)?)?;
        }
    }
    stdout.flush()?;
    drop(stdout);
    if let Some(err) = &run.record_error {
        eprintln!("remit: error: the task's record is incomplete: {err}");
    }
    let show = !args.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
    match report {
        None => eprintln!("remit: error: the script did not report (task {task})"),
        Some(r) => {
            if let Some(e) = &r.error
                && !args.json
            {
                eprintln!(
                    "remit: error: {}: {}",
                    r.script,
                    remit_types::effect::controls_escaped(&e.to_string())
                );
            }
        }
    }
    let exit = exit_of(report, matches!(run.outcome, Outcome::TimedOut(_)));
    if show {
        let mut line = format!(
            "remit: task {task} · {} · {} call{} · {:.2}s",
            if exit == Exit::Success {
                "ok"
            } else {
                "failed"
            },
            report.map(|r| r.calls).unwrap_or(0),
            if report.map(|r| r.calls).unwrap_or(0) == 1 {
                ""
            } else {
                "s"
            },
            run.duration.as_secs_f64()
        );
        if let Some(receipt) = &run.receipt {
            line.push_str(&format!("\nremit:   receipt: {}", receipt.display()));
        }
        eprintln!("{line}");
    }
    Ok(exit)
}

#[cfg(test)]
mod terminal_tests {
    use super::terminal_text;

    /// A script's text reaches the terminal with its lines and tabs, and nothing that could
    /// move the cursor, hide text or overwrite remit's own lines.
    #[test]
    fn controls_but_lines_and_tabs_are_escaped() {
        assert_eq!(terminal_text("a\tb\nc\n"), "a\tb\nc\n");
        assert_eq!(
            terminal_text("x\u{1b}[8m\r\nremit: ok\u{7}"),
            "x\\x1b[8m\\x0d\nremit: ok\\x07"
        );
    }
}
