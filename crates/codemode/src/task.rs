//! The task's host: every tool call (from a code-mode script or an MCP client) becomes a
//! `tool_call` effect through the task's gate — decided with its arguments, recorded
//! durably before anything happens, its outcome recorded after — and is then performed in
//! the task: programs through [`TaskClient`], file and HTTP work by the in-task helper
//! ([`crate::helper`]), git by real `git` in the task (a push is then decided ref by ref
//! by the egress proxy), typed actions through the gate again as `action` effects.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use remit_gate::gate::{Authorized, Gate, Outcome};
use remit_gate::run::TaskClient;
use remit_sandbox::ExitStatus;
use remit_types::effect::Effect;
use remit_types::remit::Remit;
use serde_json::{Value, json};

use crate::helper::{self, Placement};
use crate::host::{CallError, ErrorCode, Host, Reply};
use crate::isolate::{self, Limits, Report, RunOptions, StopHandle};
use crate::source::Script;
use crate::tools::{Call, Encoding, url_host};

/// Where the in-task helper is (the `remit` binary every task has mounted).
pub const HELPER: &str = "/run/remit/bin/remit";

/// Default and largest sizes.
const DEFAULT_READ: u64 = 1 << 20;
const DEFAULT_OUTPUT: u64 = 1 << 20;
const MAX_OUTPUT: u64 = 16 << 20;
const DEFAULT_FETCH: u64 = 4 << 20;
const HELPER_TIMEOUT: Duration = Duration::from_secs(120);

/// How a [`TaskHost`] is set up.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// `code` or `mcp`: the `via` of every `tool_call` effect.
    pub via: &'static str,
    /// How long a call waits for a human's approval before answering `pending`.
    pub approval_wait: Duration,
    /// The helper program inside the task (`None`: file and HTTP tools are unavailable).
    pub helper: Option<PathBuf>,
}

struct Inner {
    client: TaskClient,
    gate: Arc<Gate>,
    remit: Remit,
    options: HostOptions,
    has_proxy: bool,
    scanner: Arc<OnceLock<Option<remit_scan::Scanner>>>,
    scanner_ready: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    scanner_watch: tokio::sync::watch::Receiver<bool>,
    /// Slots for calls being performed at once (their programs and output buffers).
    performing: Arc<tokio::sync::Semaphore>,
}

/// Most calls of one task performed at once, by MCP clients and scripts together; more wait
/// for a slot (a script's `Promise.all` over thousands of calls holds at most this many
/// programs and outputs at a time).
pub const MAX_PERFORMING: usize = 64;

/// The task's host for code mode and MCP. Cheap to clone.
#[derive(Clone)]
pub struct TaskHost {
    inner: Arc<Inner>,
    via: &'static str,
}

impl std::fmt::Debug for TaskHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskHost")
            .field("task", &self.inner.gate.principal().task)
            .field("via", &self.via)
            .finish()
    }
}

/// Records an effect as failed if it is dropped before being reported (the call was
/// cancelled): nothing stays "started" in the ledger without an outcome.
struct Performing {
    gate: Arc<Gate>,
    authorized: Option<Authorized>,
}

impl Performing {
    fn performed(mut self, outcome: &str) {
        if let Some(a) = self.authorized.take() {
            self.gate.performed(a, outcome);
        }
    }

    fn failed(mut self, error: &str) {
        if let Some(a) = self.authorized.take() {
            self.gate.failed(a, error);
        }
    }
}

impl Drop for Performing {
    fn drop(&mut self) {
        if let Some(a) = self.authorized.take() {
            self.gate.failed(a, "cancelled before it finished");
        }
    }
}

/// Kills a program started in the task if its call is dropped.
struct KillOnDrop {
    client: TaskClient,
    id: Option<u64>,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.client.signal(id, 9);
        }
    }
}

/// What a program run in the task produced.
#[derive(Debug, Clone)]
struct Ran {
    exit_code: Option<i32>,
    signal: Option<i32>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    truncated: bool,
    timed_out: bool,
}

/// `text`, trimmed, cut to at most `max` bytes (on a character boundary, `…` added).
pub(crate) fn clip(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.len() <= max {
        return text.to_owned();
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &text[..cut])
}

fn one_line(text: &str) -> String {
    clip(&text.split_whitespace().collect::<Vec<_>>().join(" "), 500)
}

/// A branch or remote name that cannot be read as an option or break a refspec.
fn check_name(what: &str, name: &str) -> Result<(), CallError> {
    let bad = name.is_empty()
        || name.starts_with('-')
        || name.contains("..")
        || name.contains(['\\', ' ', '~', '^', ':', '?', '*', '['])
        || name.chars().any(char::is_control)
        || name.ends_with(".lock")
        || name.ends_with('/');
    if bad {
        return Err(CallError::invalid(format!(
            "`{name}` is not a usable {what} name"
        )));
    }
    Ok(())
}

impl TaskHost {
    /// A host for the task `client` belongs to, run under `remit`.
    pub fn new(client: TaskClient, remit: &Remit, options: HostOptions) -> TaskHost {
        let network = &remit.network;
        let has_proxy = !network.allow.is_empty()
            || !network.rules.is_empty()
            || !network.credentials.is_empty();
        let scanner: Arc<OnceLock<Option<remit_scan::Scanner>>> = Arc::new(OnceLock::new());
        let ready = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let (watch_tx, scanner_watch) = tokio::sync::watch::channel(false);
        {
            // Building the scanner takes a moment: do it in the background, once.
            let scanner = Arc::clone(&scanner);
            let ready = Arc::clone(&ready);
            let _ = std::thread::Builder::new()
                .name("remit-redactor".into())
                .spawn(move || {
                    let _ = scanner.set(remit_scan::Scanner::builtin().ok());
                    if let Ok(mut done) = ready.0.lock() {
                        *done = true;
                    }
                    ready.1.notify_all();
                    let _ = watch_tx.send(true);
                });
        }
        TaskHost {
            via: options.via,
            inner: Arc::new(Inner {
                gate: Arc::clone(client.gate()),
                client,
                remit: remit.clone(),
                options,
                has_proxy,
                scanner,
                scanner_ready: ready,
                scanner_watch,
                performing: Arc::new(tokio::sync::Semaphore::new(MAX_PERFORMING)),
            }),
        }
    }

    /// The task's gate.
    pub fn gate(&self) -> &Arc<Gate> {
        &self.inner.gate
    }

    /// The same host, recording its calls as coming from `via` (`mcp` or `code`).
    pub fn with_via(&self, via: &'static str) -> TaskHost {
        TaskHost {
            inner: Arc::clone(&self.inner),
            via,
        }
    }

    /// The workspace.
    pub fn workspace(&self) -> &Path {
        self.inner.client.workspace()
    }

    fn scanner(&self) -> Option<&remit_scan::Scanner> {
        if self.inner.scanner.get().is_none() {
            let (lock, cv) = &*self.inner.scanner_ready;
            if let Ok(mut done) = lock.lock() {
                while !*done {
                    match cv.wait_timeout(done, Duration::from_secs(30)) {
                        Ok((d, t)) => {
                            done = d;
                            if t.timed_out() {
                                break;
                            }
                        }
                        Err(_) => break,
                    }
                }
            }
        }
        self.inner.scanner.get().and_then(Option::as_ref)
    }

    /// Wait (without blocking the runtime) until the redaction scanner is built.
    async fn scanner_built(&self) {
        let mut rx = self.inner.scanner_watch.clone();
        let _ = tokio::time::timeout(Duration::from_secs(60), rx.wait_for(|ready| *ready)).await;
    }

    /// Remove secrets from text (detected by the scanner) before it leaves; waits for the
    /// scanner without blocking the runtime.
    pub async fn redact_text_async(&self, text: &str) -> String {
        self.redact_owned(text.as_bytes().to_vec()).await
    }

    /// Remove secrets from output before it leaves, on the blocking pool: megabytes of it
    /// must not hold up the runtime that decides the task's other calls and programs.
    async fn redact_owned(&self, bytes: Vec<u8>) -> String {
        self.scanner_built().await;
        let (Some(scanner), Ok(known)) = (self.scanner(), self.inner.client.known_secrets()) else {
            return UNCHECKED.to_owned();
        };
        let scanner = scanner.clone();
        tokio::task::spawn_blocking(move || redact_with(&scanner, known, &bytes))
            .await
            .unwrap_or_else(|_| UNCHECKED.to_owned())
    }

    /// Remove secrets from text (detected by the scanner) before it leaves.
    pub fn redact_text(&self, text: &str) -> String {
        self.redact_bytes(text.as_bytes())
    }

    /// Perform one call, deciding it at the gate first. `script` is the calling script's
    /// digest (empty for a plain MCP call).
    pub async fn perform(&self, script: &str, call: Call) -> Result<Value, CallError> {
        self.perform_with(script, call, None).await
    }

    /// Like [`TaskHost::perform`], waiting at most `wait` for an approval.
    pub async fn perform_with(
        &self,
        script: &str,
        call: Call,
        wait: Option<Duration>,
    ) -> Result<Value, CallError> {
        let mut call = call;
        let args = self.precheck(&mut call)?;
        let effect = Effect::ToolCall {
            via: self.via.to_owned(),
            tool: call.tool().to_owned(),
            args,
            script: script.to_owned(),
        };
        let wait = wait.unwrap_or(self.inner.options.approval_wait);
        let authorized = self.decide(effect, wait).await?;
        // Decided: performed once a slot is free (dropped while it waits, it is recorded as
        // not performed, like any call given up). An action holds none: it starts no program
        // in the task, and may wait long for a human (64 pending approvals would otherwise
        // stop every other call of the task).
        let _slot = if matches!(call, Call::RequestAction(_)) {
            None
        } else {
            Some(
                Arc::clone(&self.inner.performing)
                    .acquire_owned()
                    .await
                    .map_err(|_| CallError::failed("the task's host is closing"))?,
            )
        };
        let tool = call.tool();
        let guard = self
            .start(
                authorized,
                !call.stays_inside(),
                &format!("`{tool}` was not performed"),
            )
            .await?;
        // Outputs are redacted: have the scanner ready without blocking the runtime.
        self.scanner_built().await;
        let result = self.run(script, call).await;
        match &result {
            Ok(_) => guard.performed("succeeded"),
            Err(e) => guard.failed(&call_failure(tool, e)),
        }
        result
    }

    /// Record that an authorized effect is about to be performed (durably first when
    /// `durable`: anything that changes or sends something), and hand back the guard that
    /// records its outcome. Nothing starts once the task is killed, even if it was decided
    /// just before: the effect is recorded as failed, never as started. `not_done` opens the
    /// message when the record cannot be made durable (`the action was not performed`).
    async fn start(
        &self,
        authorized: Authorized,
        durable: bool,
        not_done: &str,
    ) -> Result<Performing, CallError> {
        let gate = &self.inner.gate;
        if let Some(reason) = gate.killed() {
            let why = format!("the task was killed ({reason})");
            gate.failed(authorized, &format!("not started: {why}"));
            return Err(CallError::new(ErrorCode::Killed, why));
        }
        // The guard exists before the start is written: a call dropped while its start is
        // being made durable (its script ended) is still recorded as failed.
        let guard = Performing {
            gate: Arc::clone(gate),
            authorized: Some(authorized),
        };
        let Some(authorized) = guard.authorized.as_ref() else {
            return Err(CallError::failed(format!("{not_done}: no authorization")));
        };
        if !durable {
            gate.begin_observed(authorized);
        } else if let Err(e) = gate.begin(authorized).await {
            guard.failed(&format!("not recorded: {e}"));
            return Err(CallError::failed(format!(
                "{not_done}: its record could not be made durable ({e})"
            )));
        }
        Ok(guard)
    }

    async fn decide(&self, effect: Effect, wait: Duration) -> Result<Authorized, CallError> {
        Self::authorized(self.inner.gate.request(effect, wait).await)
    }

    /// The authorization `outcome` gives, or why there is none.
    fn authorized(outcome: Outcome) -> Result<Authorized, CallError> {
        match outcome {
            Outcome::Authorized(a) => Ok(a),
            Outcome::Denied { policy, reason } if policy == "kill-switch" => {
                Err(CallError::new(ErrorCode::Killed, reason))
            }
            Outcome::Denied { policy, reason } => Err(CallError::denied(&policy, &reason)),
            Outcome::Pending { approval } => Err(CallError::pending(&approval)),
        }
    }

    /// Checks that need no decision: a bad path is bad input, not a refusal.
    /// Check a call and put its paths in the one spelling that is both decided and performed
    /// (`./.github//x` is `.github/x`: a rule on `.github/*` must see what is written); the
    /// arguments the policy sees.
    fn precheck(&self, call: &mut Call) -> Result<BTreeMap<String, String>, CallError> {
        let path = |p: &mut String| -> Result<(), CallError> {
            *p = helper::check_relative(p).map_err(CallError::invalid)?;
            Ok(())
        };
        let optional = |p: &mut Option<String>| -> Result<(), CallError> {
            match p {
                Some(p) => path(p),
                None => Ok(()),
            }
        };
        match call {
            Call::ReadFile(a) => path(&mut a.path)?,
            Call::WriteFile(a) => path(&mut a.path)?,
            Call::ListFiles(a) => optional(&mut a.path)?,
            Call::Search(a) => optional(&mut a.path)?,
            Call::Exec(a) => {
                if a.argv.is_empty() || a.argv[0].is_empty() {
                    return Err(CallError::invalid("`exec` needs a program in `argv`"));
                }
                optional(&mut a.cwd)?;
            }
            Call::GitDiff(a) => a.paths.iter_mut().try_for_each(path)?,
            Call::GitCommit(a) => a.paths.iter_mut().try_for_each(path)?,
            _ => {}
        }
        self.precheck_rest(call)?;
        let args = call.policy_args();
        for (name, value) in &args {
            if value.len() > crate::tools::MAX_POLICY_ARG {
                return Err(CallError::invalid(format!(
                    "`{name}` is {} bytes; remit decides on whole arguments of at most {} bytes",
                    value.len(),
                    crate::tools::MAX_POLICY_ARG
                )));
            }
        }
        Ok(args)
    }

    fn precheck_rest(&self, call: &Call) -> Result<(), CallError> {
        match call {
            Call::HttpFetch(a) => {
                if url_host(&a.url).is_none() {
                    return Err(CallError::invalid(format!(
                        "`{}` is not an http:// or https:// URL with a host",
                        a.url
                    )));
                }
                Ok(())
            }
            Call::GitPush(a) => {
                if let Some(r) = &a.remote {
                    check_name("remote", r)?;
                }
                if let Some(b) = &a.branch {
                    check_name("branch", b)?;
                }
                Ok(())
            }
            Call::GitCommit(a) if a.message.trim().is_empty() => {
                Err(CallError::invalid("a commit needs a message"))
            }
            _ => Ok(()),
        }
    }

    async fn run(&self, script: &str, call: Call) -> Result<Value, CallError> {
        let _ = script;
        match call {
            Call::ReadFile(a) => self.read_file(a).await,
            Call::WriteFile(a) => self.write_file(a).await,
            Call::ListFiles(a) => {
                self.helper(helper::Request::List {
                    root: self.root(),
                    path: a.path.unwrap_or_else(|| ".".into()),
                    recursive: a.recursive.unwrap_or(false),
                    max: a.max.unwrap_or(1000).min(100_000) as usize,
                })
                .await
            }
            Call::Glob(a) => {
                self.helper(helper::Request::Glob {
                    root: self.root(),
                    pattern: a.pattern,
                    max: a.max.unwrap_or(1000).min(100_000) as usize,
                })
                .await
            }
            Call::Search(a) => {
                self.helper(helper::Request::Search {
                    root: self.root(),
                    path: a.path.unwrap_or_else(|| ".".into()),
                    pattern: a.pattern,
                    glob: a.glob,
                    ignore_case: a.ignore_case.unwrap_or(false),
                    max: a.max.unwrap_or(200).min(10_000) as usize,
                })
                .await
            }
            Call::Exec(a) => self.exec(a).await,
            Call::HttpFetch(a) => self.fetch(a).await,
            Call::GitStatus(_) => self.git_status().await,
            Call::GitDiff(a) => self.git_diff(a).await,
            Call::GitCommit(a) => self.git_commit(a).await,
            Call::GitPush(a) => self.git_push(a).await,
            Call::RequestAction(a) => self.act(a).await,
            Call::SecretNames(_) => Ok(json!({
                "names": self.inner.remit.network.credentials.iter().map(|c| c.name.clone()).collect::<Vec<_>>()
            })),
            Call::TaskStatus(_) => Ok(self.status()),
        }
    }

    /// The task's status as tools report it.
    pub fn status(&self) -> Value {
        let gate = &self.inner.gate;
        let p = gate.principal();
        let denials = gate.denials();
        let recent: Vec<_> = denials.iter().rev().take(20).rev().collect();
        let approvals: Vec<Value> = gate
            .approvals()
            .into_iter()
            .map(|a| {
                json!({
                    "id": a.id,
                    "effect": a.effect,
                    "state": serde_json::to_value(&a.state).unwrap_or_default()["state"].clone(),
                })
            })
            .collect();
        json!({
            "task": p.task,
            "agent": p.agent,
            "owner": p.owner,
            "requester": p.requester,
            "remit": p.remit,
            "workspace": self.workspace().display().to_string(),
            "killed": gate.killed(),
            "counters": gate.counters(),
            "approvals": approvals,
            "denials": recent,
        })
    }

    fn root(&self) -> String {
        self.workspace().display().to_string()
    }

    async fn read_file(&self, a: crate::tools::ReadFile) -> Result<Value, CallError> {
        let max = a.max_bytes.unwrap_or(DEFAULT_READ).min(helper::MAX_BYTES);
        let mut r = self
            .helper(helper::Request::Read {
                root: self.root(),
                path: a.path,
                max,
            })
            .await?;
        let raw = r["content"].as_str().unwrap_or_default().to_owned();
        if a.encoding != Some(Encoding::Base64) {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(raw)
                .unwrap_or_default();
            r["content"] = Value::String(String::from_utf8_lossy(&bytes).into_owned());
            r["encoding"] = "utf-8".into();
        } else {
            r["encoding"] = "base64".into();
        }
        Ok(r)
    }

    async fn write_file(&self, a: crate::tools::WriteFile) -> Result<Value, CallError> {
        let content = match a.encoding {
            Some(Encoding::Base64) => {
                base64::engine::general_purpose::STANDARD
                    .decode(&a.content)
                    .map_err(|e| CallError::invalid(format!("`content` is not base64: {e}")))?;
                a.content
            }
            _ => base64::engine::general_purpose::STANDARD.encode(a.content.as_bytes()),
        };
        self.helper(helper::Request::Write {
            root: self.root(),
            path: a.path,
            content,
            create_dirs: a.create_dirs.unwrap_or(true),
        })
        .await
    }

    /// Run the helper in the task with one request.
    async fn helper(&self, request: helper::Request) -> Result<Value, CallError> {
        let Some(program) = self.inner.options.helper.clone() else {
            return Err(CallError::failed(
                "file and HTTP tools need the `remit` binary inside the task, and this task has none",
            ));
        };
        let input = serde_json::to_vec(&request)
            .map_err(|e| CallError::failed(format!("cannot encode the request: {e}")))?;
        let argv = vec![
            program.display().to_string(),
            "code".into(),
            "helper".into(),
        ];
        let ran = self
            .spawn_and_wait(argv, None, input, MAX_OUTPUT as usize * 2, HELPER_TIMEOUT)
            .await?;
        if ran.timed_out {
            return Err(CallError::failed(
                "the task's helper did not finish in time",
            ));
        }
        let answer: Value = serde_json::from_slice(&ran.stdout).map_err(|_| {
            CallError::failed(format!(
                "the task's helper failed{}: {}",
                ran.exit_code
                    .map(|c| format!(" (exit {c})"))
                    .unwrap_or_default(),
                one_line(&String::from_utf8_lossy(&ran.stderr))
            ))
        })?;
        match (answer.get("ok"), answer.get("error")) {
            (Some(ok), _) => Ok(ok.clone()),
            (_, Some(Value::String(e))) => Err(CallError::failed(e.clone())),
            _ => Err(CallError::failed("the task's helper answered nothing")),
        }
    }

    /// Start a program in the task and wait for it, killing it if the call is dropped.
    async fn spawn_and_wait(
        &self,
        argv: Vec<String>,
        cwd: Option<PathBuf>,
        stdin: Vec<u8>,
        limit: usize,
        timeout: Duration,
    ) -> Result<Ran, CallError> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let client = &self.inner.client;
        if let Some(reason) = self.inner.gate.killed() {
            return Err(CallError::new(
                ErrorCode::Killed,
                format!("the task was killed ({reason})"),
            ));
        }
        let pipe = |what: &str| {
            std::io::pipe()
                .map_err(|e| CallError::failed(format!("cannot make a pipe for {what}: {e}")))
        };
        let (in_r, in_w) = pipe("stdin")?;
        let (out_r, out_w) = pipe("stdout")?;
        let (err_r, err_w) = pipe("stderr")?;
        let line = argv.join(" ");
        let spawned = client
            .spawn(argv, cwd, [in_r.into(), out_w.into(), err_w.into()])
            .await;
        let to_tokio = |r: std::io::PipeReader| {
            tokio::net::unix::pipe::Receiver::from_owned_fd(std::os::fd::OwnedFd::from(r))
                .map_err(|e| CallError::failed(e.to_string()))
        };
        let err = to_tokio(err_r)?;
        let read = |mut r: tokio::net::unix::pipe::Receiver| async move {
            let mut buf = Vec::new();
            let mut cut = false;
            let mut chunk = vec![0u8; 16 * 1024];
            loop {
                match r.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let room = limit.saturating_sub(buf.len());
                        buf.extend_from_slice(&chunk[..n.min(room)]);
                        cut |= n > room;
                    }
                }
            }
            (buf, cut)
        };
        let running = match spawned {
            Ok(r) => r,
            Err(e) => {
                // A refused program is told why on its standard error.
                drop(in_w);
                let (told, _) = tokio::time::timeout(Duration::from_millis(200), read(err))
                    .await
                    .unwrap_or_default();
                let told = String::from_utf8_lossy(&told).into_owned();
                if e.contains("permission denied") || told.contains("remit: denied") {
                    let latest = self
                        .inner
                        .gate
                        .denials()
                        .into_iter()
                        .rev()
                        .find(|d| d.kind == "exec");
                    let (policy, reason) = match latest {
                        Some(d) => (d.policy, d.reason),
                        None => ("commands".to_owned(), one_line(&told)),
                    };
                    return Err(CallError::denied(
                        &policy,
                        &format!("`{}` may not run in this task: {reason}", clip(&line, 200)),
                    ));
                }
                return Err(CallError::failed(format!("`{}`: {e}", clip(&line, 200))));
            }
        };
        let mut guard = KillOnDrop {
            client: client.clone(),
            id: Some(running.id),
        };
        let out = to_tokio(out_r)?;
        let mut input =
            tokio::net::unix::pipe::Sender::from_owned_fd(std::os::fd::OwnedFd::from(in_w))
                .map_err(|e| CallError::failed(e.to_string()))?;
        let feed = async move {
            let _ = input.write_all(&stdin).await;
            drop(input);
        };
        let work = async {
            let ((), (o, oc), (e, ec), status) =
                tokio::join!(feed, read(out), read(err), running.exited);
            (o, oc, e, ec, status)
        };
        let ran = match tokio::time::timeout(timeout, work).await {
            Ok((stdout, oc, stderr, ec, status)) => {
                guard.id = None;
                let status = status.ok();
                Ran {
                    exit_code: match status {
                        Some(ExitStatus::Code(c)) => Some(c),
                        _ => None,
                    },
                    signal: match status {
                        Some(ExitStatus::Signal(s)) => Some(s),
                        _ => None,
                    },
                    stdout,
                    stderr,
                    truncated: oc || ec,
                    timed_out: false,
                }
            }
            Err(_) => Ran {
                exit_code: None,
                signal: Some(9),
                stdout: Vec::new(),
                stderr: Vec::new(),
                truncated: false,
                timed_out: true,
            },
        };
        drop(guard);
        Ok(ran)
    }

    /// Redact output before it leaves: the scanner's findings and the task's own secrets
    /// (its identity token, injected and leased credentials). What cannot be checked is
    /// withheld, never passed on unchecked.
    fn redact_bytes(&self, bytes: &[u8]) -> String {
        let (Some(scanner), Ok(known)) = (self.scanner(), self.inner.client.known_secrets()) else {
            return UNCHECKED.to_owned();
        };
        redact_with(scanner, known, bytes)
    }

    fn cwd(&self, cwd: Option<&str>) -> Result<Option<PathBuf>, CallError> {
        match cwd {
            None => Ok(None),
            Some(c) => {
                let rel = helper::check_relative(c).map_err(CallError::invalid)?;
                Ok(Some(self.workspace().join(rel)))
            }
        }
    }

    async fn exec(&self, a: crate::tools::Exec) -> Result<Value, CallError> {
        let limit = a.max_output.unwrap_or(DEFAULT_OUTPUT).min(MAX_OUTPUT) as usize;
        let timeout = Duration::from_millis(a.timeout_ms.unwrap_or(600_000));
        let cwd = self.cwd(a.cwd.as_deref())?;
        let ran = self
            .spawn_and_wait(
                a.argv,
                cwd,
                a.stdin.unwrap_or_default().into_bytes(),
                limit,
                timeout,
            )
            .await?;
        let (stdout, stderr) =
            tokio::join!(self.redact_owned(ran.stdout), self.redact_owned(ran.stderr));
        Ok(json!({
            "exit_code": ran.exit_code,
            "signal": ran.signal,
            "stdout": stdout,
            "stderr": stderr,
            "truncated": ran.truncated,
            "timed_out": ran.timed_out,
        }))
    }

    /// `git` in the task with `args`; fails with git's message on a non-zero exit.
    async fn git(&self, args: &[&str]) -> Result<Ran, CallError> {
        let mut argv = vec!["git".to_owned()];
        argv.extend(args.iter().map(|s| (*s).to_owned()));
        let ran = self
            .spawn_and_wait(
                argv,
                None,
                Vec::new(),
                MAX_OUTPUT as usize,
                Duration::from_secs(600),
            )
            .await?;
        Ok(ran)
    }

    async fn git_ok(&self, args: &[&str]) -> Result<Ran, CallError> {
        let ran = self.git(args).await?;
        if ran.exit_code != Some(0) {
            return Err(CallError::failed(format!(
                "`git {}` failed: {}",
                args.first().copied().unwrap_or_default(),
                one_line(&self.redact_bytes(&ran.stderr))
            )));
        }
        Ok(ran)
    }

    async fn git_status(&self) -> Result<Value, CallError> {
        let ran = self
            .git_ok(&["status", "--porcelain=v1", "--branch"])
            .await?;
        let text = String::from_utf8_lossy(&ran.stdout).into_owned();
        let mut branch = None;
        let mut upstream = None;
        let mut entries = Vec::new();
        for line in text.lines() {
            if let Some(head) = line.strip_prefix("## ") {
                let head = head.split(" [").next().unwrap_or(head);
                let (b, u) = match head.split_once("...") {
                    Some((b, u)) => (b, Some(u.to_owned())),
                    None => (head, None),
                };
                let b = b.strip_prefix("No commits yet on ").unwrap_or(b);
                branch = Some(b.to_owned());
                upstream = u;
            } else if line.len() > 3 {
                entries.push(json!({ "status": &line[..2], "path": &line[3..] }));
            }
        }
        Ok(json!({
            "branch": branch,
            "upstream": upstream,
            "clean": entries.is_empty(),
            "entries": entries,
        }))
    }

    async fn git_diff(&self, a: crate::tools::GitDiff) -> Result<Value, CallError> {
        for p in &a.paths {
            helper::check_relative(p).map_err(CallError::invalid)?;
        }
        let mut args = vec!["--no-pager", "diff", "--no-color", "--no-ext-diff"];
        if a.staged.unwrap_or(false) {
            args.push("--cached");
        }
        args.push("--");
        args.extend(a.paths.iter().map(String::as_str));
        let ran = self.git_ok(&args).await?;
        Ok(json!({
            "diff": self.redact_bytes(&ran.stdout),
            "truncated": ran.truncated,
        }))
    }

    async fn git_commit(&self, a: crate::tools::GitCommit) -> Result<Value, CallError> {
        for p in &a.paths {
            helper::check_relative(p).map_err(CallError::invalid)?;
        }
        if a.paths.is_empty() {
            self.git_ok(&["add", "-A"]).await?;
        } else {
            let mut args = vec!["add", "--"];
            args.extend(a.paths.iter().map(String::as_str));
            self.git_ok(&args).await?;
        }
        // A task without a git identity commits as its agent.
        let has_identity = self
            .git(&["config", "user.email"])
            .await
            .map(|r| r.exit_code == Some(0))
            .unwrap_or(false);
        let agent = self.inner.gate.principal().agent.clone();
        let name = format!("user.name={agent} (remit)");
        let email = format!("user.email={agent}@remit.invalid");
        let mut args: Vec<&str> = Vec::new();
        if !has_identity {
            args.extend(["-c", &name, "-c", &email]);
        }
        args.extend(["commit", "--no-verify", "-m", &a.message]);
        if !a.paths.is_empty() {
            args.push("--");
            args.extend(a.paths.iter().map(String::as_str));
        }
        let ran = self.git(&args).await?;
        if ran.exit_code != Some(0) {
            let out = format!(
                "{} {}",
                String::from_utf8_lossy(&ran.stdout),
                String::from_utf8_lossy(&ran.stderr)
            );
            if out.contains("nothing to commit") || out.contains("no changes added") {
                return Err(CallError::failed(
                    "nothing to commit: the workspace has no changes",
                ));
            }
            return Err(CallError::failed(format!(
                "`git commit` failed: {}",
                one_line(&self.redact_text(&out))
            )));
        }
        let head = self.git_ok(&["rev-parse", "HEAD"]).await?;
        Ok(json!({
            "commit": String::from_utf8_lossy(&head.stdout).trim(),
            "summary": one_line(&self.redact_bytes(&ran.stdout)),
        }))
    }

    async fn git_push(&self, a: crate::tools::GitPush) -> Result<Value, CallError> {
        let remote = a.remote.unwrap_or_else(|| "origin".into());
        let branch = match a.branch {
            Some(b) => b,
            None => {
                let head = self.git_ok(&["rev-parse", "--abbrev-ref", "HEAD"]).await?;
                let b = String::from_utf8_lossy(&head.stdout).trim().to_owned();
                if b == "HEAD" || b.is_empty() {
                    return Err(CallError::invalid(
                        "the workspace is not on a branch; name one with `branch`",
                    ));
                }
                b
            }
        };
        check_name("branch", &branch)?;
        // A remote the repository names, never a path or URL: git takes a name it does not
        // know for one, and a repository the script wrote into the workspace would run its
        // own configuration (`core.alternateRefsCommand`) while being pushed to.
        if remote.contains(['/', ':']) || remote.starts_with('.') {
            return Err(CallError::invalid(format!(
                "`{remote}` is not a remote of this repository: give the name of one (`origin`)"
            )));
        }
        check_name("remote", &remote)?;
        let key = format!("remote.{remote}.url");
        let named = self.git(&["config", "--get", key.as_str()]).await?;
        if named.exit_code != Some(0) {
            return Err(CallError::invalid(format!(
                "`{remote}` is not a remote of this repository: give the name of one (`origin`)"
            )));
        }
        let refspec = format!("HEAD:refs/heads/{branch}");
        let mut args = vec!["push", "--porcelain"];
        if a.force.unwrap_or(false) {
            args.push("--force");
        }
        args.extend(["--", remote.as_str(), refspec.as_str()]);
        let ran = self.git(&args).await?;
        let output = format!(
            "{}{}",
            self.redact_bytes(&ran.stdout),
            self.redact_bytes(&ran.stderr)
        );
        if ran.exit_code == Some(0) {
            return Ok(json!({
                "remote": remote,
                "ref": format!("refs/heads/{branch}"),
                "output": output.trim(),
            }));
        }
        // The proxy refuses per ref in git's own report: `(remit: <reason> (policy `<id>`))`.
        if let Some(at) = output.find("remit: ") {
            let rest = &output[at + "remit: ".len()..];
            let line = rest.lines().next().unwrap_or(rest);
            let policy = line
                .rsplit_once("(policy `")
                .and_then(|(_, p)| p.split('`').next())
                .unwrap_or("network.git")
                .to_owned();
            let reason = line
                .rsplit_once(" (policy `")
                .map(|(r, _)| r)
                .unwrap_or(line)
                .trim_start_matches("push refused: ")
                .trim_end_matches(')')
                .to_owned();
            return Err(CallError::denied(
                &policy,
                &format!("push to `refs/heads/{branch}` refused: {reason}"),
            ));
        }
        Err(CallError::failed(format!(
            "`git push` failed: {}",
            one_line(&output)
        )))
    }

    async fn fetch(&self, a: crate::tools::HttpFetch) -> Result<Value, CallError> {
        let method = a
            .method
            .clone()
            .unwrap_or_else(|| "GET".into())
            .to_uppercase();
        if !self.inner.has_proxy {
            // No egress proxy: the gate refuses the request itself, with the remit's reason.
            let host = url_host(&a.url).unwrap_or_default();
            let tls = a.url.starts_with("https://");
            let rest = a.url.split_once("://").map(|(_, r)| r).unwrap_or_default();
            let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
            let port = authority
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse().ok())
                .unwrap_or(if tls { 443 } else { 80 });
            let path = rest
                .find(['/', '?'])
                .map(|i| rest[i..].split('#').next().unwrap_or("/").to_owned())
                .unwrap_or_else(|| "/".into());
            let effect = Effect::HttpRequest {
                host,
                port,
                method,
                path,
            };
            let authorized = self.decide(effect, Duration::ZERO).await?;
            self.inner
                .gate
                .failed(authorized, "the task has no egress proxy");
            return Err(CallError::failed(
                "this task has no egress proxy (its remit has no [network] section)",
            ));
        }
        let mut placements = Vec::new();
        for name in &a.credentials {
            let credential = self
                .inner
                .remit
                .network
                .credentials
                .iter()
                .find(|c| &c.name == name)
                .ok_or_else(|| {
                    let names: Vec<&str> = self
                        .inner
                        .remit
                        .network
                        .credentials
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect();
                    CallError::invalid(format!(
                        "unknown credential `{name}` (this task has: {})",
                        if names.is_empty() {
                            "none".into()
                        } else {
                            names.join(", ")
                        }
                    ))
                })?;
            let env = credential.env.clone().ok_or_else(|| {
                CallError::invalid(format!(
                    "credential `{name}` has no `env` in the remit, so a script cannot name it"
                ))
            })?;
            use remit_types::network::{BasicPart, Placement as P};
            let (how, field) = match credential.inject.placement() {
                Some(P::Header(h)) => ("header", h),
                Some(P::Basic(BasicPart::Password)) => ("basic-password", String::new()),
                Some(P::Basic(BasicPart::Username)) => ("basic-username", String::new()),
                Some(P::Query(q)) => ("query", q),
                None => {
                    return Err(CallError::invalid(format!(
                        "credential `{name}` has no single injection in the remit"
                    )));
                }
            };
            placements.push(Placement {
                name: name.clone(),
                env,
                how: how.to_owned(),
                field,
            });
        }
        let body = match (&a.body, a.body_encoding) {
            (None, _) => String::new(),
            (Some(b), Some(Encoding::Base64)) => b.clone(),
            (Some(b), _) => base64::engine::general_purpose::STANDARD.encode(b.as_bytes()),
        };
        let timeout_ms = a.timeout_ms.unwrap_or(60_000).min(600_000);
        let r = self
            .helper(helper::Request::Fetch {
                url: a.url.clone(),
                method,
                headers: a.headers.into_iter().collect(),
                body,
                credentials: placements,
                timeout_ms,
                max: a.max_bytes.unwrap_or(DEFAULT_FETCH).min(helper::MAX_BYTES),
            })
            .await?;
        let status = r["status"].as_u64().unwrap_or(0);
        let headers = r["headers"].clone();
        // The proxy's refusals (403, or 400, 413, 502, 503 for what it cannot pass on) carry
        // its headers, which it removes from every answer it forwards: an origin cannot pass
        // its text off as a decision. (A `dangerously_tunnel` host's answers are not read by
        // the proxy at all.)
        if let (Some(policy), Some(reason)) = (
            headers.get("x-remit-policy").and_then(Value::as_str),
            headers.get("x-remit-denied").and_then(Value::as_str),
        ) {
            return Err(CallError::denied(policy, reason));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(r["body"].as_str().unwrap_or_default())
            .unwrap_or_default();
        let (body, encoding) = match String::from_utf8(bytes) {
            Ok(text) => (text, "utf-8"),
            Err(e) => (
                base64::engine::general_purpose::STANDARD.encode(e.into_bytes()),
                "base64",
            ),
        };
        Ok(json!({
            "url": a.url,
            "status": status,
            "ok": (200..300).contains(&status),
            "headers": headers,
            "body": body,
            "encoding": encoding,
            "truncated": r["truncated"],
        }))
    }

    async fn act(&self, a: crate::tools::RequestAction) -> Result<Value, CallError> {
        let gate = &self.inner.gate;
        let mut effect = Effect::Action {
            kind: a.kind.clone(),
            workspace: String::new(),
            args: a.args.clone(),
        };
        gate.engine()
            .check_request(&effect)
            .map_err(|e| CallError::invalid(e.to_string()))?;
        for (name, value) in &a.args {
            remit_gate::perform::check_argument(name, value).map_err(CallError::invalid)?;
        }
        // A host command in the workspace: decided (and approved) for what the workspace
        // holds, the task frozen from the digest until the command has run, or, when a human
        // must decide, until they have.
        let mut held = None;
        if self
            .inner
            .remit
            .actions
            .get(&a.kind)
            .is_some_and(remit_types::remit::ActionGrant::binds_workspace)
        {
            let taken =
                remit_gate::perform::Held::take(self.inner.client.pauser(), self.workspace())
                    .await
                    .map_err(CallError::failed)?;
            if let Effect::Action { workspace, .. } = &mut effect {
                workspace.clone_from(&taken.digest);
            }
            held = Some(taken);
        }
        let wait = a
            .wait
            .map(Duration::from_secs)
            .unwrap_or(self.inner.options.approval_wait)
            .min(remit_gate::api::MAX_WAIT);
        let asking = held.map(|held| held.asking(gate, &effect));
        let outcome = gate.request(effect, wait).await;
        let held = asking.and_then(|asking| asking.decided(&outcome));
        let authorized = Self::authorized(outcome)?;
        // Dropped before it finished (the call was cancelled), the action is recorded as
        // failed rather than left started.
        let guard = self
            .start(authorized, true, "the action was not performed")
            .await?;
        let Some(grant) = self
            .inner
            .remit
            .actions
            .get(&a.kind)
            .filter(|g| g.run.is_some())
        else {
            guard.performed("allowed (no host command)");
            return Ok(json!({ "status": "allowed" }));
        };
        let Some(authorized) = guard.authorized.as_ref() else {
            return Err(CallError::failed("the action's authorization was lost"));
        };
        match remit_gate::perform::run(
            authorized,
            grant,
            &a.args,
            (self.workspace(), self.inner.client.git_dirs()),
            self.inner.client.pauser(),
            held,
        )
        .await
        {
            Ok(mut result) => {
                let outcome = match result.exit_code {
                    Some(0) => "succeeded".to_owned(),
                    Some(c) => format!("exit {c}"),
                    None => "killed".to_owned(),
                };
                guard.performed(&outcome);
                result.stdout = self.redact_text(&result.stdout);
                result.stderr = self.redact_text(&result.stderr);
                Ok(json!({ "status": "performed", "result": result }))
            }
            Err(e) => {
                guard.failed(&e);
                Err(CallError::failed(e))
            }
        }
    }

    /// Run a script as one `run_code` tool call (decided and recorded with its digest),
    /// each of its binding calls a `tool_call` of its own. The script stops when the task
    /// is killed, or when `stop` is used.
    pub async fn run_script(&self, script: Script, limits: Limits, stop: StopHandle) -> Report {
        let gate = Arc::clone(&self.inner.gate);
        let mut args = BTreeMap::new();
        args.insert("language".to_owned(), script.language.as_str().to_owned());
        args.insert("bytes".to_owned(), script.bytes.to_string());
        let effect = Effect::ToolCall {
            via: self.via.to_owned(),
            tool: "run_code".into(),
            args,
            script: script.digest.clone(),
        };
        let refused = |message: String, code: &str| Report {
            script: script.name.clone(),
            digest: script.digest.clone(),
            ok: false,
            result: None,
            error: Some(isolate::ScriptError {
                kind: isolate::ErrorKind::Exception {
                    name: Some("RemitError".into()),
                    code: Some(code.to_owned()),
                },
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
        };
        let authorized = match self.decide(effect, self.inner.options.approval_wait).await {
            Ok(a) => a,
            Err(e) => return refused(e.message.clone(), e.code.as_str()),
        };
        let guard = match self.start(authorized, true, "the script was not run").await {
            Ok(g) => g,
            Err(e) => return refused(e.message.clone(), e.code.as_str()),
        };
        let options = RunOptions {
            limits,
            runtime: tokio::runtime::Handle::current(),
        };
        // The script's own calls are code mode's, whoever asked to run it.
        let host: Arc<dyn Host> = Arc::new(self.with_via("code"));
        let watch = {
            let stop = stop.clone();
            let gate = Arc::clone(&gate);
            tokio::spawn(async move {
                gate.wait_killed().await;
                let why = gate.killed().unwrap_or_default();
                stop.stop(&format!("the task was killed ({why})"));
            })
        };
        let report = isolate::run_async(script, host, options, stop).await;
        watch.abort();
        match &report.error {
            None => guard.performed(&format!(
                "succeeded: {} call{} in {} ms",
                report.calls,
                if report.calls == 1 { "" } else { "s" },
                report.wall_ms
            )),
            Some(e) => guard.failed(&one_line(&e.to_string())),
        }
        report
    }
}

/// The reason a tool call that was authorized but did not do its work is recorded with (its
/// `effect_failed`), in one line.
///
/// A call refused further down — a program the command rules forbid, a push or request the
/// egress proxy denies, an action that is denied or still awaits a human — performed
/// nothing, so it is never recorded as performed: its refusal (recorded already as the
/// refused effect's own denial) is the reason, once: "denied: WHY (policy ID)" or "pending:
/// approval ID is not given yet; …". Anything else is the tool's own failure: "TOOL: WHY".
fn call_failure(tool: &str, e: &CallError) -> String {
    match (e.code, e.approval.as_deref()) {
        (ErrorCode::Pending, Some(approval)) => {
            format!("pending: approval `{approval}` is not given yet; nothing was performed")
        }
        (ErrorCode::Denied | ErrorCode::Pending, _) => one_line(&e.message),
        _ => format!("{tool}: {}", one_line(&e.message)),
    }
}

/// What stands for output that could not be checked for secrets.
const UNCHECKED: &str = "[REDACTED: output could not be checked]";

fn redact_with(
    scanner: &remit_scan::Scanner,
    known: Option<remit_scan::KnownSecrets>,
    bytes: &[u8],
) -> String {
    use std::io::Write as _;
    let mut writer = remit_scan::RedactingWriter::new(Vec::new(), Some(scanner.clone()), known);
    if writer.write_all(bytes).is_err() {
        return UNCHECKED.to_owned();
    }
    match writer.finish() {
        Ok(out) => String::from_utf8_lossy(&out).into_owned(),
        Err(_) => UNCHECKED.to_owned(),
    }
}

impl Host for TaskHost {
    fn call(&self, script: &str, call: Call) -> Reply {
        let host = self.clone();
        let script = script.to_owned();
        Reply::Later(Box::pin(async move { host.perform(&script, call).await }))
    }

    fn redact(&self, text: &str) -> String {
        self.redact_text(text)
    }
}

/// The remit's approval timeout (how long code mode waits for a human by default).
pub fn approval_timeout(remit: &Remit) -> Duration {
    remit
        .approvals
        .timeout
        .map(|t| t.0)
        .unwrap_or(Duration::from_secs(15 * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_call_is_recorded_with_its_refusal_once() {
        let denied = CallError::denied(
            "commands.forbid[0]",
            "`curl https://example.com` may not run in this task: no curl",
        );
        assert_eq!(
            call_failure("exec", &denied),
            "denied: `curl https://example.com` may not run in this task: no curl (policy `commands.forbid[0]`)"
        );
        let pending = CallError::pending("ap-123");
        assert_eq!(
            call_failure("request_action", &pending),
            "pending: approval `ap-123` is not given yet; nothing was performed"
        );
        let failed = CallError::failed("`git push` failed: no remote\n  at all");
        assert_eq!(
            call_failure("git_push", &failed),
            "git_push: `git push` failed: no remote at all"
        );
    }
}
