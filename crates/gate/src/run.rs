//! The supervisor loop of one task: build the sandbox, start the command, decide and record
//! every program it starts, forward signals, enforce the wall-clock limit, end the task with
//! nothing left running.

use std::io::{BufRead, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use remit_policy::commands::{CommandDecision, CommandVerdict, ExecFacts};
use remit_sandbox::host::{SignalWatch, poll_readable};
use remit_sandbox::{Event, ExecAttempt, ExitStatus, Layer, Sandbox, SpawnRequest, Verdict};

use crate::prepare::{Prepared, RunRequest};
use crate::record::{Record, Recorder};

/// Asks a human whether a command may run.
pub trait Prompter {
    /// `question` is one line; return whether the human said yes.
    fn ask(&mut self, question: &str) -> bool;
}

/// Asks on the controlling terminal, with a timeout; no terminal means no.
#[derive(Debug)]
pub struct TerminalPrompter {
    /// How long to wait for an answer.
    pub timeout: Duration,
}

impl Prompter for TerminalPrompter {
    fn ask(&mut self, question: &str) -> bool {
        let Ok(tty) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
        else {
            return false;
        };
        let mut writer = &tty;
        if write!(writer, "{question} [y/N] ").is_err() {
            return false;
        }
        let _ = writer.flush();
        let millis = i32::try_from(self.timeout.as_millis()).unwrap_or(i32::MAX);
        match poll_readable(&[tty.as_fd()], millis) {
            Ok(ready) if ready.first().copied().unwrap_or(false) => {}
            _ => {
                let _ = writeln!(writer, "\nremit: no answer; denied");
                return false;
            }
        }
        let mut line = String::new();
        if std::io::BufReader::new(&tty).read_line(&mut line).is_err() {
            return false;
        }
        matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes")
    }
}

/// Never asks; every prompt is denied (non-interactive runs).
#[derive(Debug, Default)]
pub struct NoPrompter;

impl Prompter for NoPrompter {
    fn ask(&mut self, _question: &str) -> bool {
        false
    }
}

/// How the task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The command exited with a code.
    Exited(i32),
    /// A signal killed the command.
    Signaled(i32),
    /// The wall-clock limit was reached and everything was killed.
    TimedOut(Duration),
    /// The command was refused by the remit before it started.
    Denied,
    /// The command could not start (errno).
    NotStarted(i32),
}

/// What a finished run reports.
#[derive(Debug)]
pub struct RunReport {
    /// How it ended.
    pub outcome: Outcome,
    /// Programs started (including the command).
    pub commands: u64,
    /// Programs refused, as their command lines.
    pub denied: Vec<String>,
    /// Whether the memory limit killed something.
    pub oom_killed: bool,
    /// Layers skipped in degraded mode.
    pub degraded: Vec<(Layer, String)>,
    /// Where the record is.
    pub log: PathBuf,
    /// Wall time.
    pub duration: Duration,
    /// A record-writing failure, if any (the run itself completed).
    pub log_error: Option<String>,
}

/// A run that could not happen.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The sandbox could not be built.
    #[error(transparent)]
    Sandbox(#[from] remit_sandbox::Error),
    /// The record file could not be opened.
    #[error("cannot write the task's record `{0}`: {1}")]
    Record(String, String),
    /// Signals could not be set up.
    #[error("cannot watch signals: {0}")]
    Signals(String),
}

struct State<'a> {
    prepared: &'a mut Prepared,
    recorder: Recorder,
    prompter: &'a mut dyn Prompter,
    commands: u64,
    denied: Vec<String>,
    /// The last refusal explained, so a shell's PATH search does not repeat it.
    last_told: Option<(i32, String)>,
}

fn command_line(argv: &[String]) -> String {
    let mut out = String::new();
    for (i, arg) in argv.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || "'\"\\$`".contains(c)) {
            out.push('\'');
            out.push_str(&arg.replace('\'', "'\\''"));
            out.push('\'');
        } else {
            out.push_str(arg);
        }
        if out.len() > 200 {
            out.truncate(200);
            out.push('…');
            break;
        }
    }
    out
}

impl State<'_> {
    fn decide(&mut self, sandbox: &Sandbox, attempt: &ExecAttempt) -> Verdict {
        let Some(program) = &attempt.program else {
            // No such file (or not a regular file): the kernel would refuse the same way,
            // and a file that appears later cannot slip through our answer.
            return Verdict::Deny(libc_enoent());
        };
        let identical_to = match sandbox.exec_watch() {
            Some(watch) => {
                self.prepared
                    .programs
                    .identify(program.dev, program.ino, program.size, || {
                        watch.open_program(attempt).ok()
                    })
            }
            None => Vec::new(),
        };
        let facts = ExecFacts {
            path: attempt.path.clone(),
            argv: attempt.argv.clone(),
            identical_to,
            interpreter: program.interpreter.clone(),
        };
        let decision = self.prepared.rules.decide(&facts);
        let line = command_line(&attempt.argv);
        let (verdict, label) = match decision.verdict {
            CommandVerdict::Allow => (Verdict::Allow, "allow"),
            CommandVerdict::Forbid => (Verdict::Deny(libc_eacces()), "deny"),
            CommandVerdict::Prompt => {
                let question = format!(
                    "remit: task wants to run `{line}` ({}). Allow?",
                    decision.source()
                );
                if self.prompter.ask(&question) {
                    (Verdict::Allow, "prompt-allowed")
                } else {
                    (Verdict::Deny(libc_eacces()), "prompt-denied")
                }
            }
        };
        if let Verdict::Deny(_) = verdict {
            let told = (attempt.host_pid, line.clone());
            if self.last_told.as_ref() != Some(&told) {
                self.denied.push(line.clone());
                if let Some(watch) = sandbox.exec_watch() {
                    watch.tell(attempt, &denial_message(&line, &decision, label));
                }
                self.last_told = Some(told);
            }
        } else {
            self.commands += 1;
        }
        self.recorder.write(&Record::Exec {
            pid: attempt.pid,
            ppid: attempt.ppid,
            path: &attempt.path,
            argv: &attempt.argv,
            truncated: attempt.truncated,
            cwd: &attempt.cwd,
            decision: label,
            rule: decision.source(),
        });
        verdict
    }
}

/// The message a refused program's caller sees on its standard error: what was refused,
/// by which rule, and what to do instead.
fn denial_message(line: &str, decision: &CommandDecision, label: &str) -> String {
    let why = match (label, &decision.rule) {
        ("prompt-denied", _) => "it needs a human's approval and none was given".to_owned(),
        (_, Some(_)) => format!("this task's remit forbids it ({})", decision.source()),
        (_, None) => format!(
            "this task's remit only allows the commands it lists, and `{}` is not one of them",
            decision.program
        ),
    };
    format!(
        "remit: denied `{line}`: {why}. Do the work without it, or ask the task's owner to change the remit.\n"
    )
}

fn libc_eacces() -> i32 {
    13
}
fn libc_enoent() -> i32 {
    2
}

/// Run a prepared task to its end.
pub fn run(
    request: &RunRequest,
    prepared: &mut Prepared,
    log: PathBuf,
    prompter: &mut dyn Prompter,
) -> Result<RunReport, RunError> {
    let started = Instant::now();
    // Signals first, so a Ctrl-C during setup is seen rather than killing us half-way.
    let signals = SignalWatch::new(&[SIGINT, SIGTERM, SIGHUP, SIGQUIT])
        .map_err(|e| RunError::Signals(e.to_string()))?;
    let mut sandbox = Sandbox::create(&prepared.spec)?;
    let recorder = Recorder::open(&log, &request.task.to_string()).map_err(|e| {
        RunError::Record(log.display().to_string(), remit_types::remit::io_reason(&e))
    })?;
    let degraded: Vec<(Layer, String)> = sandbox.skipped().to_vec();
    let requester = requester(&request.host_env);
    let mut state = State {
        prepared,
        recorder,
        prompter,
        commands: 0,
        denied: Vec::new(),
        last_told: None,
    };
    state.recorder.write(&Record::RunStarted {
        remit: &request.remit.origin,
        remit_hash: &request.remit.hash_hex(),
        workspace: &state.prepared.spec.workspace,
        argv: &request.command,
        requester: &requester,
        degraded: degraded
            .iter()
            .map(|(l, why)| format!("{l}: {why}"))
            .collect(),
        notes: &state.prepared.notes,
    });

    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let main = sandbox.spawn(&SpawnRequest {
        path: &state.prepared.program,
        argv: &state.prepared.argv,
        env: &state.prepared.spec.env,
        cwd: &state.prepared.cwd,
        stdio: [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()],
        new_process_group: false,
    })?;
    let deadline = state.prepared.wall.map(|w| started + w);
    let outcome = loop {
        let timeout = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    sandbox.kill();
                    break Outcome::TimedOut(state.prepared.wall.unwrap_or_default());
                }
                i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX)
            }
            None => -1,
        };
        let ready = {
            let mut fds = vec![sandbox.event_fd(), signals.fd(), sandbox.pidfd()];
            if let Some(watch) = sandbox.exec_watch() {
                fds.push(watch.fd());
            }
            poll_readable(&fds, timeout).map_err(|e| RunError::Signals(e.to_string()))?
        };
        // Exec attempts first: a program waiting on us blocks its parent too.
        if ready.get(3).copied().unwrap_or(false) {
            while let Some(attempt) = sandbox.exec_watch().and_then(|w| w.recv().ok().flatten()) {
                let verdict = state.decide(&sandbox, &attempt);
                if let Some(watch) = sandbox.exec_watch() {
                    let _ = watch.respond(&attempt, verdict);
                }
            }
        }
        if ready.get(1).copied().unwrap_or(false) {
            while let Ok(Some(signal)) = signals.read() {
                // Terminal signals already reached the command (it shares our process
                // group); others were sent to us alone and are passed on.
                if !signal.from_terminal {
                    let _ = sandbox.signal(main, signal.signal);
                }
            }
        }
        let mut ended = None;
        loop {
            match sandbox.try_event() {
                Ok(Some(Event::Exited { id, status })) if id == main => {
                    ended = Some(match status {
                        ExitStatus::Code(c) => Outcome::Exited(c),
                        ExitStatus::Signal(s) => Outcome::Signaled(s),
                    });
                    break;
                }
                Ok(Some(Event::SpawnFailed { id, errno })) if id == main => {
                    ended = Some(if errno == libc_eacces() && !state.denied.is_empty() {
                        Outcome::Denied
                    } else {
                        Outcome::NotStarted(errno)
                    });
                    break;
                }
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(e) => return Err(RunError::Sandbox(e)),
            }
        }
        if let Some(outcome) = ended {
            break outcome;
        }
    };
    // Whatever the command left behind (daemons, double forks) dies with the namespace.
    let oom_killed = sandbox.oom_killed();
    sandbox.shutdown();
    let duration = started.elapsed();
    let (label, code) = match outcome {
        Outcome::Exited(c) => ("exit", Some(c)),
        Outcome::Signaled(s) => ("signal", Some(s)),
        Outcome::TimedOut(_) => ("timeout", None),
        Outcome::Denied => ("denied", None),
        Outcome::NotStarted(e) => ("failed", Some(e)),
    };
    let denied = state.denied.len() as u64;
    state.recorder.write(&Record::RunEnded {
        outcome: label,
        code,
        commands: state.commands,
        denied,
        duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
        oom_killed,
    });
    let log_error = state.recorder.finish().err().map(|e| e.to_string());
    Ok(RunReport {
        outcome,
        commands: state.commands,
        denied: state.denied,
        oom_killed,
        degraded,
        log: state.recorder.path().to_path_buf(),
        duration,
        log_error,
    })
}

/// The invoking OS user: `USER`, `LOGNAME`, else the name `/etc/passwd` gives our uid.
pub fn requester(env: &[(String, String)]) -> String {
    if let Some((_, name)) = env
        .iter()
        .find(|(k, v)| (k == "USER" || k == "LOGNAME") && !v.is_empty())
    {
        return name.clone();
    }
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("Uid:")
                    .and_then(|v| v.split_whitespace().next().map(str::to_owned))
            })
        })
        .unwrap_or_default();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|l| {
            let fields: Vec<&str> = l.split(':').collect();
            (fields.get(2) == Some(&uid.as_str())).then(|| fields[0].to_owned())
        })
        .unwrap_or_else(|| format!("uid:{uid}"))
}

const SIGHUP: i32 = 1;
const SIGINT: i32 = 2;
const SIGQUIT: i32 = 3;
const SIGTERM: i32 = 15;
