//! What the proxy reports to the gate for the record: finished requests with sizes and
//! timings, tunnels, violations it blocked itself, and connections it had to drop.
//!
//! Paths are reported as the task sent them; a known secret found in one is replaced by
//! `[REDACTED:<name>]` first. Secret values never appear.

use std::net::SocketAddr;

use serde::Serialize;

/// One record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EgressEvent {
    /// A request finished (answered, refused, or cut off).
    Request(RequestRecord),
    /// A `dangerously_tunnel` connection closed.
    Tunnel(TunnelRecord),
    /// The proxy blocked something on its own authority (not a gate decision): a known
    /// secret leaving, a phantom sent to the wrong host, a special address, a budget.
    Violation(Violation),
    /// A connection was dropped because of bad input or a failing origin.
    ConnectionError(ConnectionError),
}

/// A refusal: which policy, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Denial {
    /// The gate's policy id, or `egress.<check>` for the proxy's own checks.
    pub policy: String,
    /// The reason given to the task.
    pub reason: String,
}

/// A finished request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestRecord {
    /// Per-proxy request number.
    pub id: u64,
    /// The task-side address of the connection.
    pub peer: SocketAddr,
    /// Destination host (as the task named it).
    pub host: String,
    /// Destination port.
    pub port: u16,
    /// Method.
    pub method: String,
    /// Path and query (redacted if a secret was in it).
    pub path: String,
    /// Whether the request travelled in TLS the proxy terminated (intercepted HTTPS).
    pub intercepted: bool,
    /// Status sent to the task.
    pub status: u16,
    /// Set when the request was refused (before or after it was sent: see `sent`).
    pub denied: Option<Denial>,
    /// Whether the request was handed to the origin's connection: its head, and perhaps part
    /// or all of its body, may have reached the origin, whatever happened after (a refusal
    /// of what the body or the answer held, a broken connection).
    pub sent: bool,
    /// The address the proxy connected to.
    pub upstream: Option<SocketAddr>,
    /// Protocol towards the origin (`http/1.1`, `h2`).
    pub protocol: Option<String>,
    /// Credentials injected into the request, by name.
    pub credentials: Vec<String>,
    /// Request bytes sent upstream (body only).
    pub request_bytes: u64,
    /// Response bytes sent to the task (body only).
    pub response_bytes: u64,
    /// Unix time the request arrived, in milliseconds.
    pub started_unix_ms: u64,
    /// Microseconds until the origin's response headers arrived.
    pub response_after_us: Option<u64>,
    /// Microseconds until the response body ended.
    pub duration_us: u64,
    /// Why the transfer ended early, if it did.
    pub error: Option<String>,
}

/// A tunnel that was passed through uninspected, or refused after its `CONNECT` was allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TunnelRecord {
    /// The id its `CONNECT` was decided under ([`crate::EgressGate::decide_request`]).
    pub id: u64,
    /// The task-side address.
    pub peer: SocketAddr,
    /// Destination host.
    pub host: String,
    /// Destination port.
    pub port: u16,
    /// The address connected to; `None` if the tunnel was refused before (a budget used up,
    /// an origin that could not or must not be reached).
    pub upstream: Option<SocketAddr>,
    /// Bytes from the task to the origin.
    pub bytes_up: u64,
    /// Bytes from the origin to the task.
    pub bytes_down: u64,
    /// How long the tunnel lived, in microseconds.
    pub duration_us: u64,
    /// Why it ended, if not by a clean close.
    pub error: Option<String>,
}

/// What kind of violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ViolationKind {
    /// A real credential or the task's identity token in a request (or reflected back).
    KnownSecret,
    /// A phantom credential sent to a host it is not bound to.
    Phantom,
    /// A destination whose address is loopback, private, link-local or otherwise special.
    Ssrf,
    /// A request inside a tunnel naming another host than the tunnel's.
    HostMismatch,
    /// A tunnel carrying neither HTTP nor TLS.
    Protocol,
    /// A byte budget was exhausted.
    Budget,
    /// More at once than the task may have (requests under way).
    Limit,
}

/// A violation the proxy blocked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// What.
    pub kind: ViolationKind,
    /// The task-side address.
    pub peer: SocketAddr,
    /// Destination host.
    pub host: String,
    /// Destination port.
    pub port: u16,
    /// Method, when a request was read.
    pub method: Option<String>,
    /// Path (redacted), when a request was read.
    pub path: Option<String>,
    /// The check's policy id (`egress.dlp`, `egress.phantom`, …).
    pub policy: String,
    /// The reason given to the task.
    pub reason: String,
}

/// Where a connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Accepting a task connection.
    Accept,
    /// Reading HTTP from the task (malformed request, oversized headers, slow headers).
    ClientHttp,
    /// TLS with the task.
    ClientTls,
    /// Resolving or connecting to the origin.
    UpstreamConnect,
    /// TLS with the origin.
    UpstreamTls,
    /// HTTP with the origin (garbage, reset).
    UpstreamHttp,
    /// A pass-through tunnel.
    Tunnel,
}

/// A dropped connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionError {
    /// The task-side address (the listener's own for accept errors).
    pub peer: Option<SocketAddr>,
    /// The destination, when known.
    pub host: Option<String>,
    /// Where it failed.
    pub stage: Stage,
    /// What failed, one line.
    pub error: String,
}
