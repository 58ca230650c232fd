//! `remit run`: run a command as a contained task.

use std::io::Read;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use remit_gate::prepare::{RunRequest, prepare};
use remit_gate::record::remit_home;
use remit_gate::run::{Outcome, RunOptions, RunReport};
use remit_types::id::TaskId;

use crate::exit::Outcome as Exit;

/// Arguments of `remit run`.
#[derive(Debug, clap::Args)]
#[command(trailing_var_arg = true)]
pub(crate) struct Args {
    /// The remit (TOML) granting what the task may do. Default: the embedded default remit
    /// (workspace read-write, no network, no secrets).
    #[arg(long, value_name = "FILE")]
    remit: Option<PathBuf>,
    /// The workspace, mounted read-write. Default: the remit's, else the current directory.
    #[arg(long, value_name = "DIR")]
    workspace: Option<PathBuf>,
    /// Also write the task's ledger events here, as JSON lines, when it ends.
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Run even if this host cannot enforce a layer the remit needs. Loud and recorded.
    #[arg(long)]
    dangerously_allow_degraded: bool,
    /// Print no summary and no notices.
    #[arg(short, long)]
    quiet: bool,
    /// Print the summary even when standard error is not a terminal.
    #[arg(long, conflicts_with = "quiet")]
    summary: bool,
    /// The command and its arguments (after `--`).
    #[arg(required = true, num_args = 1.., value_name = "COMMAND")]
    command: Vec<String>,
}

pub(crate) fn new_task_id() -> anyhow::Result<TaskId> {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut random = [0u8; 10];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut random))
        .context("cannot read random bytes for the task id")?;
    Ok(TaskId::new(millis, random))
}

/// Put back what tasks whose supervisor died left in their repositories (waiting briefly
/// for one of `request`'s own workspace that another start is putting back), and say so.
pub(crate) fn put_back_crashed(request: &RunRequest) -> Vec<remit_gate::recovery::Recovered> {
    let workspace = request.cwd.join(
        request
            .workspace
            .as_deref()
            .unwrap_or(std::path::Path::new(".")),
    );
    let here = std::fs::canonicalize(workspace).ok();
    let recovered =
        remit_gate::recovery::put_back_crashed(&remit_home(&request.host_env), here.as_deref());
    for line in recovered.iter().flat_map(|r| r.warnings()) {
        eprintln!("remit: warning: {line}");
    }
    recovered
}

pub(crate) fn run(args: Args) -> anyhow::Result<Exit> {
    remit_gate::timing::mark("arguments parsed");
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let remit = match &args.remit {
        Some(path) => remit_types::remit::load(path)?,
        None => remit_types::remit::default_remit(cwd.clone())?,
    };
    let host_env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let task = new_task_id()?;
    let request = RunRequest {
        remit,
        workspace: args.workspace.clone(),
        command: args.command.clone(),
        allow_degraded: args.dangerously_allow_degraded,
        cwd,
        host_env: host_env.clone(),
        task,
    };
    // What tasks whose supervisor died left in their repositories, put back before this
    // task's sandbox is planned over one of them.
    let recovered = crate::cmd::run::put_back_crashed(&request);
    remit_gate::timing::mark("remit loaded");
    let prepared = prepare(&request)?;
    remit_gate::timing::mark("sandbox planned");
    if request.allow_degraded {
        eprintln!(
            "remit: WARNING: degraded mode was asked for: layers this host cannot enforce will be skipped, and the record will say so"
        );
    }
    let options = RunOptions {
        home: remit_home(&host_env),
        log: args.log.clone(),
        remit_binary: std::env::current_exe().ok(),
        notices: !args.quiet,
        recovered,
    };
    let notes = prepared.notes.clone();
    let report = match run_with_code(&request, prepared, &options) {
        Ok(report) => report,
        Err(e) if e.is_denial() => {
            eprintln!("remit: denied: {e}");
            return Ok(Exit::Denied);
        }
        Err(e) => return Err(e.into()),
    };
    for (layer, why) in &report.degraded {
        eprintln!("remit: WARNING: this task ran WITHOUT `{layer}`: {why}");
    }
    remit_gate::timing::mark("task over");
    let show_summary =
        !args.quiet && (args.summary || std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if show_summary {
        eprintln!("{}", summary(&task, &report, &notes));
    }
    if let Some(err) = &report.record_error {
        eprintln!("remit: error: the task's record is incomplete: {err}");
    }
    Ok(match report.outcome {
        Outcome::Exited(code) => Exit::Status(u8::try_from(code).unwrap_or(255)),
        Outcome::Signaled(signal) => remit_sandbox::host::die_by_signal(signal),
        Outcome::TimedOut(limit) => {
            eprintln!(
                "remit: task {task} reached its wall-clock limit of {} and was killed with everything it started",
                humantime::format_duration(limit)
            );
            Exit::Status(124)
        }
        Outcome::Killed(reason) => {
            eprintln!("remit: task {task} was {reason}");
            Exit::Status(137)
        }
        Outcome::Denied => Exit::Denied,
        Outcome::Ended => Exit::Success,
        Outcome::NotStarted(errno) => {
            anyhow::bail!(
                "cannot start `{}`: {}",
                args.command[0],
                remit_types::remit::io_reason(&std::io::Error::from_raw_os_error(errno))
            )
        }
    })
}

fn summary(task: &TaskId, report: &RunReport, notes: &[String]) -> String {
    let outcome = match &report.outcome {
        Outcome::Exited(c) => format!("exit {c}"),
        Outcome::Signaled(s) => format!("killed by signal {s}"),
        Outcome::TimedOut(_) => "wall-clock limit reached".into(),
        Outcome::Killed(_) => "killed".into(),
        Outcome::Denied => "denied".into(),
        Outcome::Ended => "ended".into(),
        Outcome::NotStarted(_) => "not started".into(),
    };
    let mut out = format!(
        "remit: task {task} · {outcome} · {} command{} · {} denied · {:.2}s",
        report.commands,
        if report.commands == 1 { "" } else { "s" },
        report.denied.len(),
        report.duration.as_secs_f64()
    );
    if report.oom_killed {
        out.push_str(" · memory limit hit");
    }
    let mut shown: Vec<&String> = Vec::new();
    for line in &report.denied {
        if !shown.contains(&line) {
            shown.push(line);
        }
    }
    for line in shown.iter().take(5) {
        out.push_str(&format!("\nremit:   denied `{line}`"));
    }
    if shown.len() > 5 {
        out.push_str(&format!("\nremit:   … and {} more", shown.len() - 5));
    }
    for note in notes {
        out.push_str(&format!("\nremit:   note: {note}"));
    }
    if let Some(receipt) = &report.receipt {
        out.push_str(&format!("\nremit:   receipt: {}", receipt.display()));
    }
    out
}

/// Run the task, letting `remit code run --task` run programs in it.
fn run_with_code(
    request: &RunRequest,
    prepared: remit_gate::prepare::Prepared,
    options: &RunOptions,
) -> Result<RunReport, remit_gate::run::RunError> {
    let mut task = remit_gate::run::Task::start(request, prepared, options)?;
    task.set_code_runner(std::sync::Arc::new(crate::cmd::code::Runner {
        remit: request.remit.remit.clone(),
        helper: options.remit_binary.is_some(),
    }));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            remit_gate::run::RunError::Host(format!("cannot start the supervisor's runtime: {e}"))
        })?;
    let outcome = runtime.block_on(task.supervise(true, None));
    let report = task.end(outcome)?;
    remit_gate::timing::mark("task finished");
    // Everything the task did is recorded and its authority revoked, its sandbox and run
    // directory are gone: what the runtime still holds (idle servers, the redaction
    // scanner's tables) is memory the process's exit frees, without half a millisecond of
    // dropping it piece by piece.
    std::mem::forget(runtime);
    remit_gate::timing::mark("runtime dropped");
    Ok(report)
}
