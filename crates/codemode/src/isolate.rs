//! The isolate: one QuickJS runtime and context per script, whose only capabilities are the
//! bindings. It runs on a thread of its own; binding calls go to a [`Host`] whose futures
//! run on the host's tokio runtime, and come back over a channel.
//!
//! Limits, each stopping the script with a clear error: memory (QuickJS's allocator
//! limit), CPU time of the isolate's thread and wall time (the interrupt handler, and the
//! wait for binding results), binding calls, output (console and result). A stopped script
//! cannot catch the stop: the interrupt handler raises QuickJS's uncatchable exception.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rquickjs::context::EvalOptions;
use rquickjs::function::Rest;
use rquickjs::{
    Context, Ctx, Exception, Function, Object, Persistent, Promise, Runtime, Value,
    promise::PromiseState,
};
use serde::Serialize;

use crate::bindings::{BINDINGS, Binding};
use crate::host::{CallError, ErrorCode, Host, Reply};
use crate::source::Script;
use crate::tools::Call;

/// What a script may use. Each limit stops it with an error naming the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Heap of the isolate, in bytes. Default: 64 MiB.
    pub memory: usize,
    /// JavaScript stack, in bytes (deep recursion). Default: 1 MiB.
    pub stack: usize,
    /// CPU time of the isolate's thread. Default: 10 s.
    pub cpu: Duration,
    /// Wall time, binding calls included. Default: 5 min.
    pub wall: Duration,
    /// Binding calls. Default: 1000.
    pub calls: u64,
    /// Bytes of console output plus the result. Default: 1 MiB.
    pub output: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: 64 << 20,
            stack: 1 << 20,
            cpu: Duration::from_secs(10),
            wall: Duration::from_secs(300),
            calls: 1000,
            output: 1 << 20,
        }
    }
}

/// Which limit stopped a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Limit {
    /// Heap.
    Memory,
    /// Stack.
    Stack,
    /// CPU time.
    Cpu,
    /// Wall time.
    Wall,
    /// Binding calls.
    Calls,
    /// Output.
    Output,
}

/// How a run ended when it did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ErrorKind {
    /// The script did not parse.
    Syntax,
    /// It threw (or its promise rejected) and did not catch it.
    Exception {
        /// The error's name (`TypeError`), when it was an `Error`.
        name: Option<String>,
        /// The binding failure's code (`denied`, `pending`, …), when it was one.
        code: Option<String>,
    },
    /// A limit stopped it.
    Limit {
        /// Which one.
        limit: Limit,
    },
    /// It was stopped from outside (the task was killed or ended).
    Killed,
    /// It waited for a promise nothing could settle.
    Stuck,
    /// The isolate itself failed.
    Internal,
}

/// Why a script did not succeed. `message` is one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScriptError {
    /// What kind of failure.
    #[serde(flatten)]
    pub kind: ErrorKind,
    /// One line: what happened.
    pub message: String,
    /// Where in the script (1-based), when known.
    pub line: Option<u32>,
    /// Column (1-based), when known.
    pub column: Option<u32>,
    /// The JavaScript stack, positions mapped to the script.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
}

impl std::fmt::Display for ScriptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "line {l}, column {c}: {}", self.message),
            (Some(l), None) => write!(f, "line {l}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

/// What a run produced.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The script's name.
    pub script: String,
    /// Its digest (`sha256:…`).
    pub digest: String,
    /// Whether it completed without an uncaught error.
    pub ok: bool,
    /// What it returned, as JSON (`None` for `undefined`).
    pub result: Option<serde_json::Value>,
    /// Why it failed.
    pub error: Option<ScriptError>,
    /// What it printed (console), secrets redacted.
    pub output: String,
    /// Whether output was cut at the limit.
    pub output_truncated: bool,
    /// Binding calls made.
    pub calls: u64,
    /// Binding calls still running when it ended (cancelled).
    pub cancelled: u64,
    /// Wall time, in milliseconds.
    pub wall_ms: u64,
    /// CPU time of the isolate, in milliseconds.
    pub cpu_ms: u64,
}

/// How to run: limits, and where binding futures run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The limits.
    pub limits: Limits,
    /// The runtime binding futures run on (the task's).
    pub runtime: tokio::runtime::Handle,
}

/// Stops a running script from outside (the task was killed, the client went away).
#[derive(Debug, Clone, Default)]
pub struct StopHandle {
    inner: Arc<StopInner>,
}

#[derive(Debug, Default)]
struct StopInner {
    flag: AtomicBool,
    reason: Mutex<Option<(ErrorKind, String)>>,
    wake: Mutex<Option<mpsc::Sender<Event>>>,
}

impl StopHandle {
    /// A handle for one run.
    pub fn new() -> StopHandle {
        StopHandle::default()
    }

    /// Stop the script: it cannot catch this. The first reason given wins.
    pub fn stop(&self, reason: &str) {
        self.stop_with(ErrorKind::Killed, reason.to_owned());
    }

    fn stop_with(&self, kind: ErrorKind, message: String) {
        if let Ok(mut r) = self.inner.reason.lock()
            && r.is_none()
        {
            *r = Some((kind, message));
        }
        self.inner.flag.store(true, Ordering::SeqCst);
        if let Ok(w) = self.inner.wake.lock()
            && let Some(tx) = w.as_ref()
        {
            let _ = tx.send(Event::Wake);
        }
    }

    /// Whether it was stopped.
    pub fn stopped(&self) -> bool {
        self.inner.flag.load(Ordering::SeqCst)
    }

    fn reason(&self) -> Option<(ErrorKind, String)> {
        self.inner.reason.lock().ok().and_then(|r| r.clone())
    }
}

enum Event {
    Done(u64, Result<serde_json::Value, CallError>),
    Wake,
}

struct PendingCall {
    resolve: Persistent<Function<'static>>,
    reject: Persistent<Function<'static>>,
    pick: Option<&'static str>,
    join: tokio::task::JoinHandle<()>,
}

struct Shared {
    host: Arc<dyn Host>,
    digest: String,
    runtime: tokio::runtime::Handle,
    tx: mpsc::Sender<Event>,
    next: u64,
    calls: u64,
    limits: Limits,
    pending: HashMap<u64, PendingCall>,
    output: String,
    output_truncated: bool,
    cancelled: u64,
    stop: StopHandle,
}

const PRELUDE: &str = include_str!("prelude.js");

/// Largest JSON an argument or result may be.
const MAX_JSON: usize = 64 << 20;

/// Run a script on a new thread; `stop` stops it.
pub fn spawn(
    script: Script,
    host: Arc<dyn Host>,
    options: RunOptions,
    stop: StopHandle,
) -> tokio::sync::oneshot::Receiver<Report> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let name = script.name.clone();
    let digest = script.digest.clone();
    let spawned = std::thread::Builder::new()
        .name("remit-isolate".into())
        .stack_size(options.limits.stack.saturating_mul(4).max(8 << 20))
        .spawn(move || {
            let report = run(&script, host, &options, &stop);
            let _ = tx.send(report);
        });
    if let Err(e) = spawned {
        let (tx2, rx2) = tokio::sync::oneshot::channel();
        let _ = tx2.send(internal_report(
            &name,
            &digest,
            format!("cannot start the isolate's thread: {e}"),
        ));
        return rx2;
    }
    rx
}

/// Run a script on a new thread and wait for it.
pub async fn run_async(
    script: Script,
    host: Arc<dyn Host>,
    options: RunOptions,
    stop: StopHandle,
) -> Report {
    let name = script.name.clone();
    let digest = script.digest.clone();
    match spawn(script, host, options, stop).await {
        Ok(report) => report,
        Err(_) => internal_report(&name, &digest, "the isolate's thread ended early".into()),
    }
}

fn internal_report(name: &str, digest: &str, message: String) -> Report {
    Report {
        script: name.to_owned(),
        digest: digest.to_owned(),
        ok: false,
        result: None,
        error: Some(ScriptError {
            kind: ErrorKind::Internal,
            message,
            line: None,
            column: None,
            stack: None,
        }),
        output: String::new(),
        output_truncated: false,
        calls: 0,
        cancelled: 0,
        wall_ms: 0,
        cpu_ms: 0,
    }
}

fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// Run a script on this thread (which needs a stack well above `limits.stack`).
pub fn run(
    script: &Script,
    host: Arc<dyn Host>,
    options: &RunOptions,
    stop: &StopHandle,
) -> Report {
    let started = Instant::now();
    let cpu_start = thread_cpu();
    let limits = options.limits.clone();
    let (tx, rx) = mpsc::channel();
    if let Ok(mut w) = stop.inner.wake.lock() {
        *w = Some(tx.clone());
    }
    let shared = Rc::new(RefCell::new(Shared {
        host: Arc::clone(&host),
        digest: script.digest.clone(),
        runtime: options.runtime.clone(),
        tx,
        next: 0,
        calls: 0,
        limits: limits.clone(),
        pending: HashMap::new(),
        output: String::new(),
        output_truncated: false,
        cancelled: 0,
        stop: stop.clone(),
    }));
    let outcome = execute(script, &shared, &rx, &limits, stop, started, cpu_start);
    let (result, mut error) = outcome;
    let cancelled = shared.borrow().cancelled;
    if let Ok(mut w) = stop.inner.wake.lock() {
        *w = None;
    }
    let s = shared.borrow();
    let output = host.redact(&s.output);
    if let Some(e) = error.as_mut() {
        e.message = host.redact(&e.message);
        e.stack = e.stack.as_ref().map(|t| host.redact(t));
        if let ErrorKind::Exception { name, code } = &mut e.kind {
            *name = name.as_ref().map(|n| host.redact(n));
            *code = code.as_ref().map(|c| host.redact(c));
        }
    }
    let result = result.map(|v| redact_json(host.as_ref(), v));
    Report {
        script: script.name.clone(),
        digest: script.digest.clone(),
        ok: error.is_none(),
        result,
        error,
        output,
        output_truncated: s.output_truncated,
        calls: s.calls,
        cancelled,
        wall_ms: started.elapsed().as_millis() as u64,
        cpu_ms: thread_cpu().saturating_sub(cpu_start).as_millis() as u64,
    }
}

fn redact_json(host: &dyn Host, value: serde_json::Value) -> serde_json::Value {
    let text = value.to_string();
    let clean = host.redact(&text);
    if clean == text {
        return value;
    }
    serde_json::from_str(&clean).unwrap_or(serde_json::Value::String(clean))
}

type Outcome = (Option<serde_json::Value>, Option<ScriptError>);

fn internal(message: String) -> Outcome {
    (
        None,
        Some(ScriptError {
            kind: ErrorKind::Internal,
            message,
            line: None,
            column: None,
            stack: None,
        }),
    )
}

fn execute(
    script: &Script,
    shared: &Rc<RefCell<Shared>>,
    rx: &mpsc::Receiver<Event>,
    limits: &Limits,
    stop: &StopHandle,
    started: Instant,
    cpu_start: Duration,
) -> Outcome {
    let runtime = match Runtime::new() {
        Ok(r) => r,
        Err(e) => return internal(format!("cannot create the isolate: {e}")),
    };
    runtime.set_memory_limit(limits.memory);
    runtime.set_max_stack_size(limits.stack);
    let deadline = started + limits.wall;
    {
        let stop = stop.clone();
        let cpu_limit = limits.cpu;
        let wall = limits.wall;
        let mut checks: u32 = 0;
        runtime.set_interrupt_handler(Some(Box::new(move || {
            if stop.stopped() {
                return true;
            }
            checks = checks.wrapping_add(1);
            if Instant::now() >= deadline {
                stop.stop_with(
                    ErrorKind::Limit { limit: Limit::Wall },
                    format!(
                        "the script ran longer than its wall-time limit of {}",
                        human(wall)
                    ),
                );
                return true;
            }
            if thread_cpu().saturating_sub(cpu_start) >= cpu_limit {
                stop.stop_with(
                    ErrorKind::Limit { limit: Limit::Cpu },
                    format!(
                        "the script used more than its CPU-time limit of {}",
                        human(cpu_limit)
                    ),
                );
                return true;
            }
            false
        })));
    }
    let context = match Context::full(&runtime) {
        Ok(c) => c,
        Err(e) => return internal(format!("cannot create the isolate's context: {e}")),
    };
    let outcome = drive(
        script, shared, rx, stop, deadline, limits, &runtime, &context,
    );
    // QuickJS throws `null` when it cannot even allocate the error: near the limit, that is
    // the memory limit too.
    let used = usize::try_from(runtime.memory_usage().malloc_size).unwrap_or(0);
    let near_limit = used >= limits.memory / 4 * 3;
    let outcome = (
        outcome.0,
        outcome.1.map(|e| classify(e, limits, near_limit)),
    );
    // Whatever is still running was started by a script that is gone: cancel it.
    // INVARIANT: no value of this runtime may outlive it; the pending calls hold the
    // resolving functions of their promises.
    {
        let mut s = shared.borrow_mut();
        let pending: Vec<PendingCall> = s.pending.drain().map(|(_, c)| c).collect();
        s.cancelled = pending.len() as u64;
        for call in pending {
            call.join.abort();
        }
    }
    drop(context);
    runtime.run_gc();
    outcome
}

#[allow(clippy::too_many_arguments)]
fn drive(
    script: &Script,
    shared: &Rc<RefCell<Shared>>,
    rx: &mpsc::Receiver<Event>,
    stop: &StopHandle,
    deadline: Instant,
    limits: &Limits,
    runtime: &Runtime,
    context: &Context,
) -> Outcome {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as f64)
        .unwrap_or(0.0);
    // Install the bindings, then start the script.
    let started: Result<Persistent<Promise<'static>>, Box<Outcome>> = context.with(|ctx| {
        install(&ctx, shared, now_ms).map_err(|e| {
            Box::new(internal(format!(
                "cannot install the bindings: {}",
                describe_error(&ctx, e, script).message
            )))
        })?;
        let mut options = EvalOptions::default();
        options.global = true;
        options.strict = true;
        options.filename = Some(script.name.clone());
        match ctx.eval_with_options::<Value, _>(script.code.as_bytes(), options) {
            Ok(value) => match value.into_promise() {
                Some(p) => Ok(Persistent::save(&ctx, p)),
                None => Err(Box::new(internal(
                    "the script did not start as an async function".into(),
                ))),
            },
            Err(e) => {
                let mut error = describe_error(&ctx, e, script);
                if error.message.starts_with("SyntaxError") {
                    error.kind = ErrorKind::Syntax;
                    error.message = format!(
                        "{}:{}:{}: syntax error: {}",
                        script.name,
                        error.line.unwrap_or(1),
                        error.column.unwrap_or(1),
                        error.message.trim_start_matches("SyntaxError: ")
                    );
                }
                Err(Box::new((None, Some(error))))
            }
        }
    });
    let main = match started {
        Ok(p) => p,
        Err(outcome) => return stopped_or(stop, *outcome),
    };
    let mut main = Some(main);
    loop {
        // Run every job (promise reactions) there is.
        loop {
            match runtime.execute_pending_job() {
                Ok(true) => continue,
                Ok(false) => break,
                Err(_) => {
                    if stop.stopped() {
                        break;
                    }
                    // An exception in a job rejects the promise it belongs to; keep going.
                    continue;
                }
            }
        }
        if stop.stopped() {
            return stopped_or(stop, internal("stopped".into()));
        }
        // Is the script done?
        let settled = context.with(|ctx| {
            let promise = main.take()?.restore(&ctx).ok()?;
            match promise.state() {
                PromiseState::Pending => {
                    main = Some(Persistent::save(&ctx, promise));
                    None
                }
                PromiseState::Resolved => Some(finish_value(&ctx, promise, shared, limits)),
                PromiseState::Rejected => {
                    let reason = rejection(&promise);
                    Some((None, Some(thrown(&ctx, reason, script))))
                }
            }
        });
        if let Some(outcome) = settled {
            return stopped_or(stop, outcome);
        }
        if main.is_none() {
            return internal("the script's promise was lost".into());
        }
        // Wait for a binding result, the stop, or the deadline.
        let in_flight = shared.borrow().pending.len();
        if in_flight == 0 && !runtime.is_job_pending() {
            return (
                None,
                Some(ScriptError {
                    kind: ErrorKind::Stuck,
                    message: "the script is waiting for a promise that nothing will settle (no binding call is running)".into(),
                    line: None,
                    column: None,
                    stack: None,
                }),
            );
        }
        let now = Instant::now();
        if now >= deadline {
            stop.stop_with(
                ErrorKind::Limit { limit: Limit::Wall },
                format!(
                    "the script ran longer than its wall-time limit of {}",
                    human(limits.wall)
                ),
            );
            continue;
        }
        let wait = (deadline - now).min(Duration::from_millis(250));
        match rx.recv_timeout(wait) {
            Ok(Event::Done(id, result)) => settle(context, shared, id, result),
            Ok(Event::Wake) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // A future whose runtime went away never reports: settle it as failed.
                let lost: Vec<u64> = shared
                    .borrow()
                    .pending
                    .iter()
                    .filter(|(_, c)| c.join.is_finished())
                    .map(|(id, _)| *id)
                    .collect();
                for id in lost {
                    // It may have reported just now.
                    while let Ok(event) = rx.try_recv() {
                        if let Event::Done(i, r) = event {
                            settle(context, shared, i, r);
                        }
                    }
                    if shared.borrow().pending.contains_key(&id) {
                        settle(
                            context,
                            shared,
                            id,
                            Err(CallError::new(
                                ErrorCode::Killed,
                                "the task ended before this call finished",
                            )),
                        );
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return internal("the isolate's channel closed".into());
            }
        }
    }
}

fn rejection<'js>(promise: &Promise<'js>) -> Value<'js> {
    match promise.result::<Value>() {
        Some(Err(rquickjs::Error::Exception)) => promise.ctx().catch(),
        Some(Ok(v)) => v,
        _ => Value::new_undefined(promise.ctx().clone()),
    }
}

/// A stop (limit, kill) wins over whatever the script was doing when it came.
fn stopped_or(stop: &StopHandle, outcome: Outcome) -> Outcome {
    match stop.reason() {
        Some((kind, message)) => (
            None,
            Some(ScriptError {
                kind,
                message,
                line: None,
                column: None,
                stack: None,
            }),
        ),
        None => outcome,
    }
}

/// An uncaught out-of-memory or stack overflow is the limit that caused it (`near_limit`:
/// the isolate's heap is close to its memory limit).
fn classify(error: ScriptError, limits: &Limits, near_limit: bool) -> ScriptError {
    if !matches!(error.kind, ErrorKind::Exception { .. }) {
        return error;
    }
    // QuickJS throws a bare `null` when memory runs out while it builds the error itself.
    let bare_null = error.message == "uncaught null" && error.stack.is_none();
    let (limit, message) = if error.message.contains("out of memory") || (bare_null && near_limit) {
        (
            Limit::Memory,
            format!(
                "the script ran out of memory (its limit is {} MiB): {}",
                limits.memory >> 20,
                error.message
            ),
        )
    } else if bare_null {
        (
            Limit::Memory,
            format!(
                "the script stopped with a bare `null`: it ran out of memory while the engine was \
                 reporting it (its limit is {} MiB), or it threw `null` itself",
                limits.memory >> 20
            ),
        )
    } else if error.message.contains("Maximum call stack size exceeded")
        || error.message.contains("stack overflow")
    {
        (
            Limit::Stack,
            format!(
                "the script recursed too deeply (its stack limit is {} KiB): {}",
                limits.stack >> 10,
                error.message
            ),
        )
    } else {
        return error;
    };
    ScriptError {
        kind: ErrorKind::Limit { limit },
        message,
        ..error
    }
}

fn human(d: Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{} ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

fn finish_value<'js>(
    ctx: &Ctx<'js>,
    promise: Promise<'js>,
    shared: &Rc<RefCell<Shared>>,
    limits: &Limits,
) -> Outcome {
    let value: Value = match promise.result::<Value>() {
        Some(Ok(v)) => v,
        _ => return (None, None),
    };
    if value.is_undefined() {
        return (None, None);
    }
    let text = match ctx.json_stringify(value) {
        Ok(Some(s)) => s.to_string().unwrap_or_default(),
        Ok(None) => return (None, None),
        Err(e) => {
            let error = ctx.catch();
            let message = match error.as_exception().and_then(Exception::message) {
                Some(m) => m,
                None => format!("{e}"),
            };
            return (
                None,
                Some(ScriptError {
                    kind: ErrorKind::Exception {
                        name: Some("TypeError".into()),
                        code: None,
                    },
                    message: format!("the script's result cannot be turned into JSON: {message}"),
                    line: None,
                    column: None,
                    stack: None,
                }),
            );
        }
    };
    let used = shared.borrow().output.len();
    if used + text.len() > limits.output {
        return (
            None,
            Some(ScriptError {
                kind: ErrorKind::Limit {
                    limit: Limit::Output,
                },
                message: format!(
                    "the script's result is {} bytes; with its output that exceeds the output limit of {} bytes",
                    text.len(),
                    limits.output
                ),
                line: None,
                column: None,
                stack: None,
            }),
        );
    }
    match serde_json::from_str(&text) {
        Ok(v) => (Some(v), None),
        Err(e) => internal(format!("the script's result is not JSON: {e}")),
    }
}

/// A thrown value → an error report with positions in the script.
fn thrown<'js>(ctx: &Ctx<'js>, value: Value<'js>, script: &Script) -> ScriptError {
    if let Some(exception) = value.as_exception() {
        // Everything here is the script's to set: the name one short line, a code only if it
        // looks like one of the bindings' (`denied`, `pending`), the stack cut (it is not
        // counted against the output limit otherwise). All of it is redacted in `run`.
        let name: Option<String> = exception
            .get::<_, Option<String>>("name")
            .ok()
            .flatten()
            .map(|n| crate::task::clip(&one_line(&n), 200));
        let message = exception.message().unwrap_or_default();
        let code: Option<String> = exception
            .get::<_, Option<String>>("code")
            .ok()
            .flatten()
            .filter(|c| {
                !c.is_empty()
                    && c.len() <= 32
                    && c.bytes()
                        .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'-')
            });
        let stack = exception.stack().map(|s| {
            crate::task::clip(
                &map_stack(&crate::task::clip(&s, 4 * MAX_STACK), script),
                MAX_STACK,
            )
        });
        let (line, column) = stack
            .as_deref()
            .and_then(|s| first_position(s, &script.name))
            .map_or((None, None), |(l, c)| (Some(l), Some(c)));
        let text = match &name {
            Some(n) if !n.is_empty() => format!("{n}: {message}"),
            _ => message,
        };
        return ScriptError {
            kind: ErrorKind::Exception { name, code },
            message: one_line(&text),
            line,
            column,
            stack,
        };
    }
    let text = match ctx.json_stringify(value.clone()) {
        Ok(Some(s)) => s.to_string().unwrap_or_default(),
        _ => format!("a {} value", value.type_name()),
    };
    ScriptError {
        kind: ErrorKind::Exception {
            name: None,
            code: None,
        },
        message: one_line(&format!("uncaught {text}")),
        line: None,
        column: None,
        stack: None,
    }
}

fn describe_error<'js>(ctx: &Ctx<'js>, error: rquickjs::Error, script: &Script) -> ScriptError {
    match error {
        rquickjs::Error::Exception => {
            let value = ctx.catch();
            thrown(ctx, value, script)
        }
        other => ScriptError {
            kind: ErrorKind::Internal,
            message: one_line(&other.to_string()),
            line: None,
            column: None,
            stack: None,
        },
    }
}

/// Most bytes of a script's stack kept in its report.
const MAX_STACK: usize = 16 * 1024;

fn one_line(text: &str) -> String {
    crate::task::clip(&text.split_whitespace().collect::<Vec<_>>().join(" "), 2000)
}

/// Rewrite `name:LINE:COL` in a stack to the script's own positions.
fn map_stack(stack: &str, script: &Script) -> String {
    let needle = format!("{}:", script.name);
    let mut out = String::with_capacity(stack.len());
    let mut rest = stack;
    while let Some(at) = rest.find(&needle) {
        out.push_str(&rest[..at + needle.len()]);
        rest = &rest[at + needle.len()..];
        let digits = |s: &str| s.chars().take_while(char::is_ascii_digit).count();
        let l = digits(rest);
        if l == 0 {
            continue;
        }
        let line: u32 = rest[..l].parse().unwrap_or(0);
        let after = &rest[l..];
        let (column, used) = match after.strip_prefix(':') {
            Some(c) => {
                let n = digits(c);
                (c[..n].parse().unwrap_or(0), l + 1 + n)
            }
            None => (0, l),
        };
        let (ml, mc) = script
            .original(line, column.max(1))
            .unwrap_or((line, column));
        if used > l {
            out.push_str(&format!("{ml}:{mc}"));
        } else {
            out.push_str(&ml.to_string());
        }
        rest = &rest[used..];
    }
    out.push_str(rest);
    out
}

fn first_position(stack: &str, name: &str) -> Option<(u32, u32)> {
    let needle = format!("{name}:");
    let at = stack.find(&needle)?;
    let rest = &stack[at + needle.len()..];
    let mut parts = rest.splitn(3, |c: char| !c.is_ascii_digit());
    let line: u32 = parts.next()?.parse().ok()?;
    let column: u32 = parts.next().and_then(|c| c.parse().ok()).unwrap_or(1);
    Some((line, column))
}

/// Install `remit`, `console` and the frozen clock.
fn install<'js>(ctx: &Ctx<'js>, shared: &Rc<RefCell<Shared>>, now_ms: f64) -> rquickjs::Result<()> {
    let natives = Object::new(ctx.clone())?;
    for binding in BINDINGS {
        let shared = Rc::clone(shared);
        let binding: &'static Binding = binding;
        let f = Function::new(ctx.clone(), move |ctx: Ctx<'js>, args: Rest<Value<'js>>| {
            call_binding(&ctx, &shared, binding, args.0)
        })?
        .with_name(binding.path.rsplit('.').next().unwrap_or(binding.path))?;
        natives.set(binding.path, f)?;
    }
    let log = {
        let shared = Rc::clone(shared);
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, level: String, text: String| console(&ctx, &shared, &level, &text),
        )?
    };
    let prelude: Function = ctx.eval(PRELUDE)?;
    prelude.call::<_, ()>((natives, log, now_ms))?;
    Ok(())
}

fn console<'js>(
    ctx: &Ctx<'js>,
    shared: &Rc<RefCell<Shared>>,
    level: &str,
    text: &str,
) -> rquickjs::Result<()> {
    let mut s = shared.borrow_mut();
    let prefix = match level {
        "warn" => "warning: ",
        "error" => "error: ",
        _ => "",
    };
    let need = prefix.len() + text.len() + 1;
    if s.output.len() + need > s.limits.output {
        let room = s.limits.output.saturating_sub(s.output.len());
        let mut cut = room.min(text.len());
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        s.output.push_str(&text[..cut]);
        s.output_truncated = true;
        let limit = s.limits.output;
        let stop = s.stop.clone();
        drop(s);
        stop.stop_with(
            ErrorKind::Limit {
                limit: Limit::Output,
            },
            format!("the script printed more than its output limit of {limit} bytes"),
        );
        return Err(Exception::throw_message(ctx, "output limit reached"));
    }
    s.output.push_str(prefix);
    s.output.push_str(text);
    s.output.push('\n');
    Ok(())
}

fn type_error<'js>(ctx: &Ctx<'js>, message: &str) -> rquickjs::Error {
    Exception::throw_type(ctx, message)
}

fn to_json<'js>(ctx: &Ctx<'js>, value: Value<'js>) -> Result<serde_json::Value, String> {
    if value.is_undefined() {
        return Ok(serde_json::Value::Null);
    }
    if value.is_function() {
        return Err("a function cannot be passed to a binding".into());
    }
    let text = match ctx.json_stringify(value) {
        Ok(Some(s)) => s.to_string().map_err(|e| e.to_string())?,
        Ok(None) => return Ok(serde_json::Value::Null),
        Err(_) => {
            let error = ctx.catch();
            return Err(error
                .as_exception()
                .and_then(Exception::message)
                .unwrap_or_else(|| "the value cannot be turned into JSON".into()));
        }
    };
    if text.len() > MAX_JSON {
        return Err(format!("the arguments are larger than {MAX_JSON} bytes"));
    }
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

fn call_binding<'js>(
    ctx: &Ctx<'js>,
    shared: &Rc<RefCell<Shared>>,
    binding: &'static Binding,
    args: Vec<Value<'js>>,
) -> rquickjs::Result<Value<'js>> {
    let name = format!("remit.{}", binding.path);
    {
        let s = shared.borrow();
        if s.stop.stopped() {
            let why = s
                .stop
                .reason()
                .map(|(_, m)| m)
                .unwrap_or_else(|| "the script was stopped".into());
            return Err(Exception::throw_message(ctx, &format!("{name}: {why}")));
        }
    }
    if args.len() > binding.params.len() {
        return Err(type_error(
            ctx,
            &format!(
                "{name} takes at most {} argument{}",
                binding.params.len(),
                if binding.params.len() == 1 { "" } else { "s" }
            ),
        ));
    }
    let mut object = serde_json::Map::new();
    for (param, value) in binding.params.iter().zip(args) {
        if value.is_undefined() {
            continue;
        }
        let json = to_json(ctx, value).map_err(|e| type_error(ctx, &format!("{name}: {e}")))?;
        if *param == "..." {
            match json {
                serde_json::Value::Object(options) => {
                    for (k, v) in options {
                        if object.contains_key(&k) {
                            return Err(type_error(
                                ctx,
                                &format!("{name}: option `{k}` repeats an argument"),
                            ));
                        }
                        object.insert(k, v);
                    }
                }
                serde_json::Value::Null => {}
                _ => {
                    return Err(type_error(
                        ctx,
                        &format!("{name}: options must be an object"),
                    ));
                }
            }
        } else {
            object.insert((*param).to_owned(), json);
        }
    }
    let call = Call::parse(binding.tool, serde_json::Value::Object(object)).map_err(|e| {
        type_error(
            ctx,
            &format!(
                "{name}: {}",
                e.split_once(": ").map_or(e.as_str(), |(_, r)| r)
            ),
        )
    })?;
    let (host, digest, runtime, tx, id) = {
        let mut s = shared.borrow_mut();
        s.calls += 1;
        if s.calls > s.limits.calls {
            let limit = s.limits.calls;
            let stop = s.stop.clone();
            drop(s);
            stop.stop_with(
                ErrorKind::Limit {
                    limit: Limit::Calls,
                },
                format!("the script made more than its limit of {limit} binding calls"),
            );
            return Err(Exception::throw_message(
                ctx,
                &format!("{name}: binding call limit reached"),
            ));
        }
        s.next += 1;
        (
            Arc::clone(&s.host),
            s.digest.clone(),
            s.runtime.clone(),
            s.tx.clone(),
            s.next,
        )
    };
    let (promise, resolve, reject) = ctx.promise()?;
    match host.call(&digest, call) {
        Reply::Ready(result) => {
            settle_now(ctx, &resolve, &reject, binding.pick, result)?;
        }
        Reply::Later(future) => {
            let join = runtime.spawn(async move {
                let result = future.await;
                let _ = tx.send(Event::Done(id, result));
            });
            shared.borrow_mut().pending.insert(
                id,
                PendingCall {
                    resolve: Persistent::save(ctx, resolve),
                    reject: Persistent::save(ctx, reject),
                    pick: binding.pick,
                    join,
                },
            );
        }
    }
    Ok(promise.into_value())
}

fn settle(
    context: &Context,
    shared: &Rc<RefCell<Shared>>,
    id: u64,
    result: Result<serde_json::Value, CallError>,
) {
    let Some(call) = shared.borrow_mut().pending.remove(&id) else {
        return;
    };
    context.with(|ctx| {
        let (Ok(resolve), Ok(reject)) = (call.resolve.restore(&ctx), call.reject.restore(&ctx))
        else {
            return;
        };
        let _ = settle_now(&ctx, &resolve, &reject, call.pick, result);
    });
}

fn settle_now<'js>(
    ctx: &Ctx<'js>,
    resolve: &Function<'js>,
    reject: &Function<'js>,
    pick: Option<&'static str>,
    result: Result<serde_json::Value, CallError>,
) -> rquickjs::Result<()> {
    match result {
        Ok(mut value) => {
            if let Some(field) = pick
                && let Some(picked) = value.get_mut(field)
            {
                value = picked.take();
            }
            let js = ctx.json_parse(value.to_string())?;
            resolve.call::<_, ()>((js,))
        }
        Err(error) => {
            let exception = Exception::from_message(ctx.clone(), &error.message)?;
            exception.set("code", error.code.as_str())?;
            if let Some(policy) = &error.policy {
                exception.set("policy", policy.as_str())?;
            }
            if let Some(approval) = &error.approval {
                exception.set("approval", approval.as_str())?;
            }
            exception.set("name", "RemitError")?;
            reject.call::<_, ()>((exception,))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_positions_are_mapped() {
        let script = Script::new(
            "x.js",
            b"let a = 1;\nthrow new Error('b');",
            crate::source::Language::Js,
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        let mapped = map_stack("    at <anonymous> (x.js:2:7)\n", &script);
        assert_eq!(mapped, "    at <anonymous> (x.js:2:7)\n");
        let mapped = map_stack("at (x.js:1:20)", &script);
        assert_eq!(mapped, "at (x.js:1:6)");
        assert_eq!(first_position("at (x.js:4:2)", "x.js"), Some((4, 2)));
    }
}
