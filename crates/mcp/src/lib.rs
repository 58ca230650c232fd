//! remit-mcp: an MCP server whose tools are a task's governed tools.
//!
//! Any MCP client (Claude Code, Codex, an in-house agent) can be pointed at `remit mcp`:
//! the server starts a task under a remit and offers `run_code` (code mode), `exec`,
//! `read_file`, `write_file`, `list_files`, `glob`, `search`, `git_status`, `git_diff`,
//! `git_commit`, `git_push`, `http_fetch`, `request_action`, `secret_names` and
//! `task_status`. Every call is a `tool_call` effect through the task's gate, decided with
//! its arguments (`Tool::"write_file"`, `context.call.args.path`) and recorded before it is
//! performed; what the tool then does is decided again as its own effect (a program start
//! by the remit's command rules, a request or a push by its network rules). A refusal comes
//! back as a tool error that says what the model may do instead; a call that needs a
//! human's approval waits (up to the server's approval wait) or answers with the approval's
//! id to ask again with.
//!
//! What this crate is not: it does not start or end tasks (the `remit` binary does, around
//! [`serve_stdio`] and [`serve_http`]) and does not perform anything itself (the task's
//! host, `remit_codemode::task::TaskHost`, does).
//!
//! ```no_run
//! # async fn example(host: remit_codemode::task::TaskHost) -> Result<(), remit_mcp::ServeError> {
//! use remit_mcp::{Server, ServerOptions, serve_stdio};
//! let server = Server::new(host, ServerOptions::default());
//! serve_stdio(server).await?; // until the client closes standard input
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use remit_codemode::host::{CallError, ErrorCode};
use remit_codemode::isolate::{Limits, Report, StopHandle};
use remit_codemode::source::{Language, Script};
use remit_codemode::task::TaskHost;
use remit_codemode::tools::{self, Call};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
    ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

/// Why serving stopped with an error. One line each.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The MCP handshake failed.
    #[error("the MCP client did not complete the handshake: {0}")]
    Handshake(String),
    /// The HTTP listener failed.
    #[error("cannot serve MCP over HTTP on `{0}`: {1}")]
    Listen(String, std::io::Error),
    /// An HTTP address that is not loopback.
    #[error(
        "`{0}` is not a loopback address; `remit mcp --http` serves the task's tools to this machine only (127.0.0.1 or ::1)"
    )]
    NotLoopback(SocketAddr),
}

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Longest a call waits for a human's approval before answering with the approval's
    /// id. Default: 0 (answer at once; the model asks again once it is approved).
    pub approval_wait: Duration,
    /// Limits of `run_code` scripts.
    pub limits: Limits,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            approval_wait: Duration::ZERO,
            limits: Limits {
                wall: Duration::from_secs(120),
                ..Limits::default()
            },
        }
    }
}

/// The arguments of `run_code`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunCode {
    /// The program: TypeScript (default) or JavaScript, run as the body of an async
    /// function. Use `await` and `return` a value; `console.log` output is returned too.
    /// The API is in the tool's description (and `remit code api`).
    pub code: String,
    /// `ts` (default) or `js`.
    #[serde(default)]
    pub language: Option<Language>,
}

/// The MCP server of one task.
#[derive(Clone)]
pub struct Server {
    host: TaskHost,
    options: ServerOptions,
    tools: Arc<Vec<Tool>>,
    /// Calls in flight, for every session of the task together.
    calls: Arc<tokio::sync::Semaphore>,
}

/// Most `tools/call` requests of one task in flight at once (every session together); one
/// more is answered at once with a `limit` error, so a client flooding the server holds at
/// most this many requests (and their arguments) in the supervisor's memory.
pub const MAX_CALLS_IN_FLIGHT: usize = 64;

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("host", &self.host).finish()
    }
}

fn schema<T: JsonSchema>() -> Arc<JsonObject> {
    let value = serde_json::to_value(schemars::schema_for!(T)).unwrap_or_else(|_| json!({}));
    let mut object = match value {
        Value::Object(o) => o,
        _ => JsonObject::new(),
    };
    object.remove("$schema");
    object.remove("title");
    if !object.contains_key("type") {
        object.insert("type".into(), "object".into());
    }
    Arc::new(object)
}

fn tool(
    name: &'static str,
    description: String,
    input: Arc<JsonObject>,
    read_only: bool,
    open_world: bool,
) -> Tool {
    let mut t = Tool::new(name, description, input);
    let mut annotations = ToolAnnotations::default();
    annotations.read_only_hint = Some(read_only);
    annotations.open_world_hint = Some(open_world);
    annotations.destructive_hint = Some(!read_only);
    t.annotations = Some(annotations);
    t
}

/// Every tool, with its schema and description.
pub fn tool_list() -> Vec<Tool> {
    use remit_codemode::tools::*;
    let governed = " Decided by the task's remit and recorded in its ledger; a refusal says what you may do instead.";
    vec![
        tool(
            "run_code",
            format!(
                "Run a TypeScript or JavaScript program in an isolate whose only capabilities are the `remit` bindings (files, exec, git, http, actions), each one a governed tool call. One program instead of many tool calls.{governed}\n\n{}",
                remit_codemode::d_ts()
            ),
            schema::<RunCode>(),
            false,
            true,
        ),
        tool(
            "exec",
            format!(
                "Run a program in the task's sandbox (its workspace, its command rules) and return its exit code and output (secrets redacted).{governed}"
            ),
            schema::<Exec>(),
            false,
            false,
        ),
        tool(
            "read_file",
            format!("Read a file of the workspace (a path relative to it).{governed}"),
            schema::<ReadFile>(),
            true,
            false,
        ),
        tool(
            "write_file",
            format!("Create or replace a file of the workspace.{governed}"),
            schema::<WriteFile>(),
            false,
            false,
        ),
        tool(
            "list_files",
            format!("List a directory of the workspace.{governed}"),
            schema::<ListFiles>(),
            true,
            false,
        ),
        tool(
            "glob",
            format!("Workspace paths matching a glob (`src/**/*.rs`).{governed}"),
            schema::<Glob>(),
            true,
            false,
        ),
        tool(
            "search",
            format!("Lines of workspace files containing a text.{governed}"),
            schema::<Search>(),
            true,
            false,
        ),
        tool(
            "git_status",
            format!("The workspace's branch and changed files.{governed}"),
            schema::<GitStatus>(),
            true,
            false,
        ),
        tool(
            "git_diff",
            format!("The workspace's changes as a unified diff.{governed}"),
            schema::<GitDiff>(),
            true,
            false,
        ),
        tool(
            "git_commit",
            format!("Commit the workspace's changes on the task's branch.{governed}"),
            schema::<GitCommit>(),
            false,
            false,
        ),
        tool(
            "git_push",
            format!(
                "Push the current branch; the egress proxy decides each ref by the remit's `network.git` rules.{governed}"
            ),
            schema::<GitPush>(),
            false,
            true,
        ),
        tool(
            "http_fetch",
            format!(
                "An HTTP request through the task's egress proxy (network rules, credential injection by name, secrets refused).{governed}"
            ),
            schema::<HttpFetch>(),
            false,
            true,
        ),
        tool(
            "request_action",
            format!(
                "Request a typed action the remit declares (`publish`, `deploy`, …); may need a human's approval.{governed}"
            ),
            schema::<RequestAction>(),
            false,
            true,
        ),
        tool(
            "secret_names",
            format!("The credentials this task may use, by name (never values).{governed}"),
            schema::<SecretNames>(),
            true,
            false,
        ),
        tool(
            "task_status",
            format!("This task: id, agent, counters, approvals and recent denials.{governed}"),
            schema::<TaskStatus>(),
            true,
            false,
        ),
    ]
}

fn error_result(error: &CallError) -> CallToolResult {
    let advice = match error.code {
        ErrorCode::Denied => {
            " This is the task's remit, not a malfunction: do the work another way, or ask the task's owner to change the remit (`task_status` lists what was refused)."
        }
        ErrorCode::Killed => " The task was stopped; nothing more can be done in it.",
        _ => "",
    };
    let stop = if advice.is_empty() || error.message.ends_with('.') {
        ""
    } else {
        "."
    };
    let mut result = CallToolResult::error(vec![ContentBlock::text(format!(
        "{}{stop}{advice}",
        error.message
    ))]);
    result.structured_content = serde_json::to_value(error).ok();
    result
}

impl Server {
    /// A server for the task `host` belongs to.
    pub fn new(host: TaskHost, options: ServerOptions) -> Server {
        Server {
            host: host.with_via("mcp"),
            options,
            tools: Arc::new(tool_list()),
            calls: Arc::new(tokio::sync::Semaphore::new(MAX_CALLS_IN_FLIGHT)),
        }
    }

    /// Call a tool by name with JSON arguments, as `tools/call` does.
    pub async fn call(
        &self,
        name: &str,
        arguments: Option<JsonObject>,
    ) -> Result<CallToolResult, ErrorData> {
        let Ok(_call) = Arc::clone(&self.calls).try_acquire_owned() else {
            return Ok(error_result(&CallError::new(
                ErrorCode::Limit,
                format!(
                    "{MAX_CALLS_IN_FLIGHT} tool calls of this task are already in flight; wait for one to finish and call again"
                ),
            )));
        };
        let args = Value::Object(arguments.unwrap_or_default());
        if name == "run_code" {
            return Ok(self.run_code(args).await);
        }
        if !tools::TOOLS.contains(&name) {
            return Err(ErrorData::invalid_params(
                format!(
                    "unknown tool `{name}`; this server has: run_code, {}",
                    tools::TOOLS.join(", ")
                ),
                None,
            ));
        }
        let call = match Call::parse(name, args) {
            Ok(c) => c,
            Err(e) => return Ok(error_result(&CallError::invalid(e))),
        };
        match self
            .host
            .perform_with("", call, Some(self.options.approval_wait))
            .await
        {
            Ok(value) => {
                let text = serde_json::to_string_pretty(&value).unwrap_or_default();
                let text = self.host.redact_text_async(&text).await;
                let mut result = CallToolResult::success(vec![ContentBlock::text(text.clone())]);
                result.structured_content =
                    Some(serde_json::from_str(&text).unwrap_or(Value::String(text)));
                Ok(result)
            }
            Err(e) => Ok(error_result(&e)),
        }
    }

    async fn run_code(&self, args: Value) -> CallToolResult {
        let args: RunCode = match serde_json::from_value(args) {
            Ok(a) => a,
            Err(e) => return error_result(&CallError::invalid(format!("`run_code`: {e}"))),
        };
        let language = args.language.unwrap_or(Language::Ts);
        let name = format!("run_code.{}", language.as_str());
        let script = match Script::new(&name, args.code.as_bytes(), language) {
            Ok(s) => s,
            Err(e) => return error_result(&CallError::invalid(e.to_string())),
        };
        let stop = StopHandle::new();
        // A cancelled call (the client gave up) stops its script.
        struct StopOnDrop(StopHandle, bool);
        impl Drop for StopOnDrop {
            fn drop(&mut self) {
                if !self.1 {
                    self.0.stop("the MCP client cancelled the call");
                }
            }
        }
        let mut guard = StopOnDrop(stop.clone(), false);
        let report = self
            .host
            .run_script(script, self.options.limits.clone(), stop)
            .await;
        guard.1 = true;
        report_result(&report)
    }
}

fn report_result(report: &Report) -> CallToolResult {
    let mut text = String::new();
    if !report.output.is_empty() {
        text.push_str(&report.output);
        if !text.ends_with('\n') {
            text.push('\n');
        }
    }
    if let Some(result) = &report.result {
        text.push_str(&format!(
            "result: {}\n",
            serde_json::to_string_pretty(result).unwrap_or_default()
        ));
    }
    if let Some(error) = &report.error {
        text.push_str(&format!("error: {error}\n"));
    }
    if report.cancelled > 0 {
        text.push_str(&format!(
            "note: {} binding call{} still running when the script ended {} cancelled\n",
            report.cancelled,
            if report.cancelled == 1 {
                " was"
            } else {
                "s were"
            },
            if report.cancelled == 1 {
                "and was"
            } else {
                "and were"
            }
        ));
    }
    if text.is_empty() {
        text.push_str("(no output, no result)\n");
    }
    let mut result = if report.ok {
        CallToolResult::success(vec![ContentBlock::text(text)])
    } else {
        CallToolResult::error(vec![ContentBlock::text(text)])
    };
    result.structured_content = serde_json::to_value(report).ok();
    result
}

impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        let mut capabilities = ServerCapabilities::default();
        capabilities.tools = Some(Default::default());
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("remit", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "These tools act inside one remit task: a sandboxed workspace on its own git branch, under a remit that decides every call. Prefer `run_code` for multi-step work (one program against the `remit` API). A refused call is the remit's answer, not a fault: its message says what you may do instead. A call that needs a human's approval answers with an approval id; ask again with the same arguments once it is approved.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools.as_ref().clone()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        // A cancelled request drops the call: its program is killed, its script stopped,
        // its effect recorded as failed.
        tokio::select! {
            result = self.call(&request.name, request.arguments) => result.map(CallToolResponse::from),
            _ = context.ct.cancelled() => Err(ErrorData::internal_error("the call was cancelled", None)),
        }
    }
}

/// Longest message line read from a client (a code-mode script of 1 MiB, JSON-escaped, fits).
pub const MAX_LINE: usize = 16 << 20;

/// A JSON-RPC `Parse error` (`-32700`, `id: null`) saying `why`, as one line.
fn parse_error(why: &str) -> Vec<u8> {
    let answer = json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": { "code": -32700, "message": format!("Parse error: {why}") },
    });
    let mut bytes = answer.to_string().into_bytes();
    bytes.push(b'\n');
    bytes
}

/// Read and drop the rest of a line; `false` at the end of the input.
async fn skip_line<R: tokio::io::AsyncBufRead + Unpin>(input: &mut R) -> bool {
    use tokio::io::AsyncBufReadExt as _;
    loop {
        let (found, used) = match input.fill_buf().await {
            Ok([]) | Err(_) => return false,
            Ok(buf) => match buf.iter().position(|b| *b == b'\n') {
                Some(at) => (true, at + 1),
                None => (false, buf.len()),
            },
        };
        input.consume(used);
        if found {
            return true;
        }
    }
}

/// Serve MCP on standard input and output until the client closes its end.
pub async fn serve_stdio(server: Server) -> Result<(), ServeError> {
    serve_lines(server, tokio::io::stdin(), tokio::io::stdout()).await
}

/// Serve newline-delimited JSON-RPC from `input` to `output`. A line that is not JSON (not
/// UTF-8, cut short, garbage) is answered with a JSON-RPC `Parse error` (`-32700`, `id:
/// null`) naming what is wrong, as JSON-RPC 2.0 asks, and never reaches the protocol layer;
/// the server keeps serving. Everything else goes to the MCP service as it came.
pub async fn serve_lines<R, W>(server: Server, input: R, output: W) -> Result<(), ServeError>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
    const PIPE: usize = 1 << 20;
    let (mut to_service, service_in) = tokio::io::duplex(PIPE);
    let (service_out, from_service) = tokio::io::duplex(PIPE);
    // Bounded: a client that sends garbage and never reads its answers stops being read.
    let (errors_tx, mut errors_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);

    let reader = tokio::spawn(async move {
        use tokio::io::AsyncReadExt as _;
        let mut input = BufReader::new(input);
        let mut line = Vec::new();
        loop {
            line.clear();
            let limit = u64::try_from(MAX_LINE).unwrap_or(u64::MAX) + 1;
            match (&mut input).take(limit).read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let too_long = line.len() > MAX_LINE && !line.ends_with(b"\n");
            if too_long {
                // The rest of the line is read and dropped, never held.
                let ended = skip_line(&mut input).await;
                let answer = parse_error(&format!(
                    "a message is at most {MAX_LINE} bytes; this one was longer and was dropped"
                ));
                if errors_tx.send(answer).await.is_err() || !ended {
                    break;
                }
                continue;
            }
            let text = line.trim_ascii();
            if text.is_empty() {
                continue;
            }
            match serde_json::from_slice::<serde::de::IgnoredAny>(text) {
                Ok(_) => {
                    if to_service.write_all(text).await.is_err()
                        || to_service.write_all(b"\n").await.is_err()
                    {
                        break;
                    }
                }
                Err(e) => {
                    let answer = parse_error(&format!("a message must be one line of JSON ({e})"));
                    if errors_tx.send(answer).await.is_err() {
                        break;
                    }
                }
            }
        }
        // Dropping `to_service` tells the service the client is gone.
    });
    let writer = tokio::spawn(async move {
        let mut output = output;
        let mut from_service = BufReader::new(from_service);
        let mut line = Vec::new();
        let mut errors_open = true;
        loop {
            tokio::select! {
                // `read_until` keeps what it read in `line` if the other branch wins.
                read = from_service.read_until(b'\n', &mut line) => {
                    match read {
                        Ok(0) | Err(_) => break,
                        Ok(_) if line.ends_with(b"\n") => {
                            if output.write_all(&line).await.is_err() || output.flush().await.is_err() {
                                break;
                            }
                            line.clear();
                        }
                        Ok(_) => {}
                    }
                }
                error = errors_rx.recv(), if errors_open => {
                    match error {
                        Some(bytes) => {
                            if output.write_all(&bytes).await.is_err() || output.flush().await.is_err() {
                                break;
                            }
                        }
                        None => errors_open = false,
                    }
                }
            }
        }
        let _ = output.flush().await;
    });

    let running = server
        .serve((service_in, service_out))
        .await
        .map_err(|e| ServeError::Handshake(e.to_string()))?;
    let _ = running.waiting().await;
    reader.abort();
    // The service's end of the pipe is gone with it; what it wrote last is flushed.
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    Ok(())
}

/// A bound HTTP listener, before it serves.
#[derive(Debug)]
pub struct HttpListener {
    listener: tokio::net::TcpListener,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// Bind the streamable-HTTP endpoint (`http://ADDR/mcp`); loopback only.
pub async fn bind_http(addr: SocketAddr) -> Result<HttpListener, ServeError> {
    if !addr.ip().is_loopback() {
        return Err(ServeError::NotLoopback(addr));
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| ServeError::Listen(addr.to_string(), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ServeError::Listen(addr.to_string(), e))?;
    Ok(HttpListener { listener, addr })
}

/// Serve MCP over streamable HTTP at `/mcp` until the listener fails. Every request must
/// carry `Authorization: Bearer <token>`.
pub async fn serve_http(
    server: Server,
    listener: HttpListener,
    token: String,
) -> Result<(), ServeError> {
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    };
    let mut config = StreamableHttpServerConfig::default();
    config.allowed_hosts = vec![
        "localhost".into(),
        "127.0.0.1".into(),
        "::1".into(),
        "[::1]".into(),
        listener.addr.to_string(),
    ];
    config.json_response = true;
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let token = Arc::new(format!("Bearer {token}"));
    loop {
        let (stream, _) = match listener.listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
                ) {
                    continue;
                }
                return Err(ServeError::Listen(listener.addr.to_string(), e));
            }
        };
        let service = service.clone();
        let token = Arc::clone(&token);
        tokio::spawn(async move {
            let handler = hyper::service::service_fn(
                move |request: hyper::Request<hyper::body::Incoming>| {
                    let mut service = service.clone();
                    let token = Arc::clone(&token);
                    async move {
                        if let Some(refusal) = refuse(&request, &token) {
                            return Ok::<_, std::convert::Infallible>(refusal);
                        }
                        let response = tower_service::Service::call(&mut service, request).await?;
                        Ok(response.map(http_body_util::BodyExt::boxed_unsync))
                    }
                },
            );
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(hyper_util::rt::TokioIo::new(stream), handler)
                .await;
        });
    }
}

type Body = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, std::convert::Infallible>;

fn refuse(
    request: &hyper::Request<hyper::body::Incoming>,
    token: &str,
) -> Option<hyper::Response<Body>> {
    use http_body_util::BodyExt as _;
    let reply = |status: u16, message: &str| {
        let body = json!({ "error": message }).to_string();
        let mut response = hyper::Response::new(
            http_body_util::Full::new(bytes::Bytes::from(body)).boxed_unsync(),
        );
        *response.status_mut() =
            hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_REQUEST);
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
        response
    };
    if request.uri().path() != "/mcp" {
        return Some(reply(404, "this server serves MCP at `/mcp` only"));
    }
    let given = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
        return Some(reply(
            401,
            "missing or wrong `Authorization: Bearer <token>`; use the token `remit mcp` printed (or set in REMIT_MCP_TOKEN)",
        ));
    }
    None
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_is_listed_with_an_object_schema() {
        let tools = tool_list();
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        assert_eq!(names[0], "run_code");
        for tool in tools::TOOLS {
            assert!(names.contains(&tool), "{tool}");
        }
        assert_eq!(names.len(), tools::TOOLS.len() + 1);
        for t in &tools {
            assert_eq!(
                t.input_schema.get("type"),
                Some(&json!("object")),
                "{}",
                t.name
            );
            assert!(
                t.description.as_ref().is_some_and(|d| d.contains("remit")),
                "{}",
                t.name
            );
        }
        let run_code = &tools[0];
        assert!(
            run_code
                .description
                .as_ref()
                .is_some_and(|d| d.contains("declare namespace remit"))
        );
    }

    #[test]
    fn refusals_tell_the_model_what_to_do() {
        let r = error_result(&CallError::denied("p", "not here"));
        assert_eq!(r.is_error, Some(true));
        let text = serde_json::to_string(&r.content).unwrap_or_default();
        assert!(
            text.contains("denied: not here (policy `p`). This is the task's remit"),
            "{text}"
        );
        assert_eq!(
            r.structured_content.as_ref().map(|s| s["code"].clone()),
            Some(json!("denied"))
        );
        assert!(constant_time_eq(b"Bearer a", b"Bearer a"));
        assert!(!constant_time_eq(b"Bearer a", b"Bearer b"));
        assert!(!constant_time_eq(b"Bearer a", b"Bearer ab"));
    }
}
