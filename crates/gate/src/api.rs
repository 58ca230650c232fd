//! The two sockets of a task, both JSON over HTTP/1.1 on a Unix socket.
//!
//! **The agent socket** (`$REMIT_SOCKET` inside the task) lets the agent request typed
//! actions, read its task's status and its own denials, and follow its own pending
//! approvals. It has no approval, kill or admin endpoint: nothing the task can send can
//! approve anything.
//!
//! **The control socket** (on the host only, never mounted into the task) lists and decides
//! approvals and kills the task. Every request is authorised by the connecting process's
//! kernel-reported uid (`SO_PEERCRED`): approvers by name, kills by the task's owner or root;
//! a process of the task itself is refused whatever its uid.
//!
//! Both answer unknown paths with 404, wrong methods with 405, malformed JSON with 400,
//! bodies over 64 KiB with 413, each with a one-line reason.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use remit_types::effect::Effect;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::UnixListener;
use tokio::sync::mpsc;

use crate::gate::{ApprovalError, Gate, Outcome};
use crate::perform;
use crate::registry::{TaskInfo, user_name};

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;
/// Longest a request may wait for an approval.
pub const MAX_WAIT: Duration = Duration::from_secs(3600);
/// Longest a request's body may take to arrive once its headers have (the headers have
/// their own limit): a client that stalls mid-body is answered `408` and let go.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections the agent socket serves at once. A task that opens more is answered `503`
/// on the extra ones, which are closed: whatever the task does, the supervisor's descriptors
/// and memory stay bounded.
pub const MAX_AGENT_CONNECTIONS: usize = 64;

/// What both sockets serve from.
pub struct Api {
    /// The task's gate.
    pub gate: Arc<Gate>,
    /// The task.
    pub info: TaskInfo,
    /// The remit (for actions' host commands and quotas).
    pub remit: remit_types::remit::Remit,
    /// Where actions' host commands run.
    pub workspace: PathBuf,
    /// The workspace's git directories as found before the task, which actions' host
    /// commands are pinned to (`None`: not a git work tree).
    pub git_dirs: Option<crate::changes::GitDirs>,
    /// Kill requests go here (with the reason).
    pub kill: mpsc::UnboundedSender<String>,
    /// The supervisor's uid (the task's owner on the host).
    pub owner_uid: u32,
    /// The task's uid on the host, when it differs from the owner's.
    pub task_uid: Option<u32>,
    /// Inode of the task's pid namespace: peers inside it are the task.
    pub task_pidns: Option<u64>,
    /// Redacts what host commands print before the task sees it.
    pub redactor: Option<crate::secrets::LazyScanner>,
    /// Runs code-mode programs in this task (`POST /v1/code` on the control socket), when
    /// the binary installed one ([`crate::run::Task::set_code_runner`]).
    pub code: std::sync::OnceLock<(Arc<dyn CodeRunner>, crate::run::TaskClient)>,
    /// Stops the task while an action's host command works on its workspace.
    pub pauser: crate::run::Pauser,
}

/// Runs a code-mode program in a running task, for `remit code run --task`. The crate that
/// links code mode provides it; the gate only routes the request to it.
pub trait CodeRunner: Send + Sync + 'static {
    /// Run `request` (the JSON body of `POST /v1/code`) in the task through `client`: the
    /// answer as JSON, or why the request is refused (bad input; nothing ran, nothing was
    /// recorded).
    fn run(
        &self,
        client: crate::run::TaskClient,
        request: Value,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Value, String>> + Send>>;
}

/// Largest `POST /v1/code` body: a script of the largest size, JSON-escaped.
pub const MAX_CODE_BODY: usize = 8 << 20;

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("task", &self.info.task)
            .finish()
    }
}

type Body = Full<Bytes>;

fn json(status: StatusCode, value: Value) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json(
        status,
        json!({ "status": "error", "error": message.into() }),
    )
}

async fn read_json<T: for<'de> Deserialize<'de>>(
    request: Request<Incoming>,
) -> Result<T, Response<Body>> {
    read_json_limited(request, MAX_BODY).await
}

async fn read_json_limited<T: for<'de> Deserialize<'de>>(
    request: Request<Incoming>,
    limit: usize,
) -> Result<T, Response<Body>> {
    let limited = Limited::new(request.into_body(), limit);
    let bytes = match tokio::time::timeout(BODY_READ_TIMEOUT, limited.collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(_)) => {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is larger than {limit} bytes"),
            ));
        }
        Err(_) => {
            return Err(error(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} s",
                    BODY_READ_TIMEOUT.as_secs()
                ),
            ));
        }
    };
    let bytes = if bytes.is_empty() {
        Bytes::from_static(b"{}")
    } else {
        bytes
    };
    serde_json::from_slice(&bytes)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}")))
}

/// The `wait` query parameter (seconds, capped at [`MAX_WAIT`]); the error is the message.
fn wait_param(request: &Request<Incoming>) -> Result<Duration, String> {
    let Some(query) = request.uri().query() else {
        return Ok(Duration::ZERO);
    };
    for pair in query.split('&') {
        if let Some(v) = pair.strip_prefix("wait=") {
            let secs: u64 = v
                .parse()
                .map_err(|_| format!("`wait` must be a number of seconds, not `{v}`"))?;
            return Ok(Duration::from_secs(secs).min(MAX_WAIT));
        }
    }
    Ok(Duration::ZERO)
}

/// Serve the agent socket until the listener fails.
pub async fn serve_agent(listener: UnixListener, api: Arc<Api>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_AGENT_CONNECTIONS));
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt as _;
                let body = json!({
                    "status": "error",
                    "error": format!("the task already has {MAX_AGENT_CONNECTIONS} connections open to remit's agent socket; close some"),
                })
                .to_string();
                let answer = format!(
                    "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tokio::time::timeout(BODY_READ_TIMEOUT, async {
                    let _ = stream.write_all(answer.as_bytes()).await;
                    let _ = stream.shutdown().await;
                })
                .await;
            });
            continue;
        };
        let api = Arc::clone(&api);
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(move |request| {
                let api = Arc::clone(&api);
                async move {
                    let response = agent_route(&api, request).await;
                    // A killed task hears nothing more until its processes are gone: an
                    // answer (a cancelled approval, a refusal) would let the process that
                    // waited for it run on for as long as the kill takes to land.
                    if api.gate.killed().is_some() {
                        api.gate.wait_closed().await;
                    }
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = builder()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Serve the control socket until the listener fails.
pub async fn serve_control(listener: UnixListener, api: Arc<Api>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let peer = stream.peer_cred().ok();
        let api = Arc::clone(&api);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let api = Arc::clone(&api);
                async move { Ok::<_, Infallible>(control_route(&api, peer, request).await) }
            });
            let _ = builder()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn builder() -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .max_buf_size(64 * 1024)
        .keep_alive(true);
    b
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionRequest {
    kind: String,
    #[serde(default)]
    args: BTreeMap<String, String>,
    /// Seconds to wait for an approval before answering `pending`.
    #[serde(default)]
    wait: u64,
}

async fn agent_route(api: &Api, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (Method::GET, ["v1", "status"]) => json(StatusCode::OK, status(api)),
        (Method::GET, ["v1", "denials"]) => {
            json(StatusCode::OK, json!({ "denials": api.gate.denials() }))
        }
        (Method::POST, ["v1", "actions"]) => match read_json::<ActionRequest>(request).await {
            Ok(body) => act(api, body).await,
            Err(response) => response,
        },
        (Method::GET, ["v1", "approvals", id]) => {
            let wait = match wait_param(&request) {
                Ok(w) => w,
                Err(message) => return error(StatusCode::BAD_REQUEST, message),
            };
            match api.gate.wait_approval(id, wait).await {
                Some(view) => json(
                    StatusCode::OK,
                    serde_json::to_value(view).unwrap_or_default(),
                ),
                None => error(
                    StatusCode::NOT_FOUND,
                    format!("no approval `{id}` in this task"),
                ),
            }
        }
        (_, ["v1", "status" | "denials" | "actions"]) | (_, ["v1", "approvals", _]) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("`{}` does not take {}", path, request.method()),
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            format!(
                "no such endpoint `{path}` (this socket serves GET /v1/status, GET /v1/denials, POST /v1/actions, GET /v1/approvals/ID)"
            ),
        ),
    }
}

fn status(api: &Api) -> Value {
    let performed = api.gate.performed_counts();
    let in_progress = api.gate.in_progress_counts();
    let quotas: BTreeMap<String, Value> = api
        .remit
        .actions
        .iter()
        .map(|(kind, grant)| {
            (
                kind.clone(),
                json!({
                    "quota": grant.quota,
                    "used": performed.get(kind).copied().unwrap_or(0),
                    "in_progress": in_progress.get(kind).copied().unwrap_or(0),
                    "approval": grant.approve.is_some(),
                    "args": grant.args,
                    "description": grant.description,
                }),
            )
        })
        .collect();
    let approvals: Vec<Value> = api
        .gate
        .approvals()
        .into_iter()
        .map(|a| json!({ "id": a.id, "effect": a.effect, "state": serde_json::to_value(&a.state).unwrap_or_default()["state"].clone() }))
        .collect();
    json!({
        "task": api.info.task,
        "agent": api.info.agent,
        "owner": api.info.owner,
        "remit": api.info.remit,
        "remit_hash": api.info.remit_hash,
        "started": api.info.started,
        "killed": api.gate.killed(),
        "counters": api.gate.counters(),
        "actions": quotas,
        "approvals": approvals,
    })
}

async fn act(api: &Api, body: ActionRequest) -> Response<Body> {
    let mut effect = Effect::Action {
        kind: body.kind.clone(),
        workspace: String::new(),
        args: body.args.clone(),
    };
    if let Err(e) = api.gate.engine().check_request(&effect) {
        return error(StatusCode::BAD_REQUEST, e.to_string());
    }
    for (name, value) in &body.args {
        if let Err(e) = perform::check_argument(name, value) {
            return error(StatusCode::BAD_REQUEST, e);
        }
    }
    // A host command in the workspace: decided (and approved) for what the workspace holds.
    // The task is frozen from the digest until the command has run, or, when a human must
    // decide, until they have: what they can see in the workspace is what is decided.
    let mut held = None;
    if api
        .remit
        .actions
        .get(&body.kind)
        .is_some_and(remit_types::remit::ActionGrant::binds_workspace)
    {
        if let Err(why) = api.pauser.ready() {
            return error(StatusCode::CONFLICT, why);
        }
        match perform::Held::take(&api.pauser, &api.workspace).await {
            Ok(taken) => {
                if let Effect::Action { workspace, .. } = &mut effect {
                    workspace.clone_from(&taken.digest);
                }
                held = Some(taken);
            }
            Err(e) => return error(StatusCode::CONFLICT, e),
        }
    }
    let wait = Duration::from_secs(body.wait).min(MAX_WAIT);
    let is_held = held.is_some();
    let asking = held.map(|held| held.asking(&api.gate, &effect));
    let outcome = api.gate.request(effect, wait).await;
    let held = asking.and_then(|asking| asking.decided(&outcome));
    match outcome {
        Outcome::Denied { policy, reason } => json(
            StatusCode::FORBIDDEN,
            json!({ "status": "denied", "policy": policy, "reason": reason }),
        ),
        Outcome::Pending { approval } => {
            let view = api.gate.approval(&approval);
            json(
                StatusCode::ACCEPTED,
                json!({
                    "status": "pending",
                    "approval": approval,
                    "held": is_held,
                    "expires": view.as_ref().map(|v| v.expires.clone()),
                    "reason": format!("pending approval {approval}: a human must run `remit approvals approve {approval}` on the host"),
                }),
            )
        }
        Outcome::Authorized(authorized) => {
            if let Err(e) = api.gate.begin(&authorized).await {
                api.gate.failed(authorized, &format!("not recorded: {e}"));
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "the action was not performed: its record could not be made durable ({e})"
                    ),
                );
            }
            let Some(grant) = api
                .remit
                .actions
                .get(&body.kind)
                .filter(|g| g.run.is_some())
            else {
                api.gate.performed(authorized, "allowed (no host command)");
                return json(StatusCode::OK, json!({ "status": "allowed" }));
            };
            match perform::run(
                &authorized,
                grant,
                &body.args,
                (&api.workspace, api.git_dirs.as_ref()),
                &api.pauser,
                held,
            )
            .await
            {
                Ok(mut result) => {
                    if let Some(redactor) = &api.redactor {
                        result.stdout = redactor.redact(&result.stdout);
                        result.stderr = redactor.redact(&result.stderr);
                    }
                    let outcome = match result.exit_code {
                        Some(0) => "succeeded".to_owned(),
                        Some(c) => format!("exit {c}"),
                        None => "killed".to_owned(),
                    };
                    api.gate.performed(authorized, &outcome);
                    json(
                        StatusCode::OK,
                        json!({ "status": "performed", "result": result }),
                    )
                }
                Err(e) => {
                    api.gate.failed(authorized, &e);
                    json(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        json!({ "status": "failed", "error": e }),
                    )
                }
            }
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    #[serde(default)]
    reason: Option<String>,
}

fn peer_in_task(api: &Api, pid: Option<i32>) -> bool {
    let (Some(ns), Some(pid)) = (api.task_pidns, pid) else {
        return false;
    };
    std::fs::metadata(format!("/proc/{pid}/ns/pid"))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m) == ns)
        .unwrap_or(true)
}

/// Whether the peer runs in the supervisor's own pid namespace (where the humans' `remit`
/// commands run); `false` when it cannot be told.
fn peer_beside_supervisor(pid: Option<i32>) -> bool {
    let Some(pid) = pid.filter(|&p| p > 0) else {
        return false;
    };
    let ns = |path: &str| {
        std::fs::metadata(path).ok().map(|m| {
            (
                std::os::unix::fs::MetadataExt::dev(&m),
                std::os::unix::fs::MetadataExt::ino(&m),
            )
        })
    };
    match (ns("/proc/self/ns/pid"), ns(&format!("/proc/{pid}/ns/pid"))) {
        (Some(own), Some(theirs)) => own == theirs,
        _ => false,
    }
}

async fn control_route(
    api: &Api,
    peer: Option<tokio::net::unix::UCred>,
    request: Request<Incoming>,
) -> Response<Body> {
    let Some(peer) = peer else {
        return error(
            StatusCode::FORBIDDEN,
            "cannot identify the connecting process",
        );
    };
    let uid = peer.uid();
    if api.task_uid == Some(uid) || peer_in_task(api, peer.pid()) {
        return error(
            StatusCode::FORBIDDEN,
            ApprovalError::SelfApproval.to_string(),
        );
    }
    if !peer_beside_supervisor(peer.pid()) {
        // Any sandboxed task (another one, that can reach this socket through a grant)
        // runs in a pid namespace of its own, as the same user: refused, as is a peer
        // whose namespace cannot be told.
        return error(
            StatusCode::FORBIDDEN,
            "the control socket answers only processes in remit's own process namespace, never a sandboxed task",
        );
    }
    let human = user_name(uid);
    let owner = uid == 0 || uid == api.owner_uid;
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (Method::GET, ["v1", "task"]) => json(
            StatusCode::OK,
            json!({ "info": api.info, "counters": api.gate.counters(), "killed": api.gate.killed() }),
        ),
        (Method::GET, ["v1", "approvals"]) => {
            let views: Vec<_> = api
                .gate
                .approvals()
                .into_iter()
                .filter(|v| {
                    owner
                        || v.requirements.iter().any(|r| {
                            api.gate.engine().may_approve(
                                &remit_policy::engine::Requirement {
                                    id: r.id.clone(),
                                    by: r.by.clone(),
                                    count: r.count,
                                },
                                &human,
                            )
                        })
                })
                .collect();
            json(StatusCode::OK, json!({ "approvals": views }))
        }
        (Method::POST, ["v1", "approvals", id, verb @ ("approve" | "deny")]) => {
            let body: DecisionBody = match read_json(request).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            match api
                .gate
                .decide_approval(id, &human, *verb == "approve", body.reason)
            {
                Ok(view) => json(
                    StatusCode::OK,
                    serde_json::to_value(view).unwrap_or_default(),
                ),
                Err(e @ ApprovalError::Unknown(_)) => error(StatusCode::NOT_FOUND, e.to_string()),
                Err(e @ ApprovalError::NotAnApprover(..)) => {
                    error(StatusCode::FORBIDDEN, e.to_string())
                }
                Err(e) => error(StatusCode::CONFLICT, e.to_string()),
            }
        }
        (Method::POST, ["v1", "code"]) => {
            if !owner {
                return error(
                    StatusCode::FORBIDDEN,
                    format!(
                        "`{human}` may not run programs in task `{}` (only its owner or root)",
                        api.info.task
                    ),
                );
            }
            let Some((runner, client)) = api.code.get() else {
                return error(
                    StatusCode::NOT_IMPLEMENTED,
                    "this task's supervisor does not run code-mode programs",
                );
            };
            let body: Value = match read_json_limited(request, MAX_CODE_BODY).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            match runner.run(client.clone(), body).await {
                Ok(answer) => json(StatusCode::OK, answer),
                Err(why) => error(StatusCode::BAD_REQUEST, why),
            }
        }
        (Method::POST, ["v1", "kill"]) => {
            if !owner {
                return error(
                    StatusCode::FORBIDDEN,
                    format!(
                        "`{human}` may not kill task `{}` (only its owner or root)",
                        api.info.task
                    ),
                );
            }
            let body: DecisionBody = match read_json(request).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let reason = format!(
                "killed by {human}{}",
                body.reason.map(|r| format!(": {r}")).unwrap_or_default()
            );
            let _ = api.kill.send(reason.clone());
            json(
                StatusCode::OK,
                json!({ "status": "killed", "task": api.info.task, "reason": reason }),
            )
        }
        _ => error(StatusCode::NOT_FOUND, format!("no such endpoint `{path}`")),
    }
}
