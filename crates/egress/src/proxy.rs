//! Task connections: the proxy protocol (absolute-form requests and `CONNECT`), TLS
//! interception inside tunnels, and pass-through tunnels.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite};

use crate::body::{ProxyBody, empty};
use crate::deny::{refusal, wants_json};
use crate::events::{ConnectionError, EgressEvent, Stage, Violation, ViolationKind};
use crate::forward::{self, Target};
use crate::io::Prefixed;
use crate::progress;
use crate::tunnel::Tunnel;
use crate::upstream::{UpstreamError, connect_checked};
use crate::{EgressGate, GateDecision, Shared};

/// A connection's place among the task's connections ([`crate::Limits::max_connections`]),
/// held while it serves requests and handed on to the tunnel or intercepted connection a
/// `CONNECT` on it opens, which outlives it.
pub(crate) type Slot = Arc<std::sync::Mutex<Option<tokio::sync::OwnedSemaphorePermit>>>;

/// Take `slot`'s place, or another one if it was handed on already; `None` when there is
/// none left.
pub(crate) fn take_place<G: EgressGate>(
    shared: &Shared<G>,
    slot: &Slot,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    let held = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
    held.or_else(|| Arc::clone(&shared.connections).try_acquire_owned().ok())
}

/// Serve one connection from the task, which holds `permit` (its place among the task's
/// connections) until it ends or hands it on.
pub(crate) async fn client<G: EgressGate>(
    shared: Arc<Shared<G>>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let service_shared = Arc::clone(&shared);
    let slot: Slot = Arc::new(std::sync::Mutex::new(Some(permit)));
    let progress = progress::Progress::new();
    let service_progress = Arc::clone(&progress);
    let service = service_fn(move |request: Request<Incoming>| {
        let shared = Arc::clone(&service_shared);
        let slot = Arc::clone(&slot);
        let progress = Arc::clone(&service_progress);
        async move {
            Ok::<_, Infallible>(
                progress::answer(progress, outer(shared, peer, request, slot)).await,
            )
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.limits.header_read_timeout)
        .max_buf_size(shared.limits.max_header_bytes.max(8192));
    let connection = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    let served = progress::serve(
        connection,
        |c| c.graceful_shutdown(),
        &progress,
        &shared.limits,
    )
    .await;
    report_served(&shared, peer, None, served);
}

/// How a client connection ended, recorded when it did not end well: an error, or closed
/// for want of progress (see [`progress`]).
fn report_served<G: EgressGate>(
    shared: &Shared<G>,
    peer: SocketAddr,
    host: Option<&str>,
    served: Result<Result<(), hyper::Error>, String>,
) {
    match served {
        Ok(Ok(())) => {}
        Ok(Err(error)) => report_client_error(shared, peer, host, Stage::ClientHttp, &error),
        Err(why) => shared
            .gate
            .observe(EgressEvent::ConnectionError(ConnectionError {
                peer: Some(peer),
                host: host.map(str::to_owned),
                stage: Stage::ClientHttp,
                error: format!("closed: {why}"),
            })),
    }
}

fn report_client_error<G: EgressGate>(
    shared: &Shared<G>,
    peer: SocketAddr,
    host: Option<&str>,
    stage: Stage,
    error: &hyper::Error,
) {
    // A task closing its connection between requests is not an error.
    if error.is_incomplete_message() && !error.is_parse() {
        return;
    }
    shared
        .gate
        .observe(EgressEvent::ConnectionError(ConnectionError {
            peer: Some(peer),
            host: host.map(str::to_owned),
            stage,
            error: crate::upstream::error_chain(error),
        }));
}

/// A request on the proxy port itself.
async fn outer<G: EgressGate>(
    shared: Arc<Shared<G>>,
    peer: SocketAddr,
    request: Request<Incoming>,
    slot: Slot,
) -> Response<ProxyBody> {
    if request.method() == Method::CONNECT {
        return connect(shared, peer, request, slot).await;
    }
    let uri = request.uri();
    let target = match (uri.scheme_str(), uri.authority()) {
        (Some(scheme @ ("http" | "https")), Some(authority))
            if !authority.as_str().contains('@') =>
        {
            let tls = scheme == "https";
            normalize_host(authority.host()).map(|host| Target {
                tls,
                port: authority.port_u16().unwrap_or(if tls { 443 } else { 80 }),
                host,
                tunneled: false,
                intercepted: false,
            })
        }
        _ => None,
    };
    match target {
        Some(target) => forward::handle(shared, peer, target, request).await,
        None => refusal(
            StatusCode::BAD_REQUEST,
            "egress.proxy",
            "this is remit's egress proxy: send absolute URLs (`GET http://host/path`) or `CONNECT host:port`, without credentials in the URL; tools do this when HTTP_PROXY and HTTPS_PROXY point here",
            &format!(
                "{} {}",
                request.method(),
                crate::forward::clip(&request.uri().to_string())
            ),
            wants_json(request.headers()),
        ),
    }
}

/// A host as it appears in an authority, lower case, without brackets or a trailing dot;
/// `None` if it has characters no host name has, an empty label (`.a.com`, `a..com`), or
/// brackets around anything but an IPv6 address (and a colon outside them): no name resolves
/// so, and a name the proxy and the remit's host patterns might read two ways is refused
/// before either decides on it.
pub(crate) fn normalize_host(host: &str) -> Option<String> {
    if let Some(address) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return address
            .parse::<std::net::Ipv6Addr>()
            .is_ok()
            .then(|| address.to_ascii_lowercase());
    }
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        && !host.split('.').any(str::is_empty);
    ok.then_some(host)
}

async fn connect<G: EgressGate>(
    shared: Arc<Shared<G>>,
    peer: SocketAddr,
    mut request: Request<Incoming>,
    slot: Slot,
) -> Response<ProxyBody> {
    let json = wants_json(request.headers());
    let Some((host, port)) = request
        .uri()
        .authority()
        .and_then(|a| Some((normalize_host(a.host())?, a.port_u16()?)))
    else {
        return refusal(
            StatusCode::BAD_REQUEST,
            "egress.proxy",
            "`CONNECT` needs `host:port`",
            &format!(
                "CONNECT {}",
                crate::forward::clip(&request.uri().to_string())
            ),
            json,
        );
    };
    let what = format!("CONNECT {host}:{port}");
    let passed_through = shared
        .network
        .dangerously_tunnel
        .iter()
        .any(|t| t.matches(&host, port, &[remit_types::network::DEFAULT_PORT]));
    let upgrade = hyper::upgrade::on(&mut request);
    if !passed_through {
        // Intercepted: every request inside is decided on its own. The connection keeps its
        // place among the task's connections for as long as it lives (the place of the
        // connection it arrived on, which ends at the upgrade).
        let Some(place) = take_place(&shared, &slot) else {
            return refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "egress.connections",
                &format!(
                    "more than {} connections and tunnels at once; close some and retry",
                    shared.limits.max_connections
                ),
                &what,
                json,
            );
        };
        let task_shared = Arc::clone(&shared);
        shared.spawn(async move {
            let _place = place;
            match upgrade.await {
                Ok(upgraded) => {
                    intercept(task_shared, peer, TokioIo::new(upgraded), host, port).await
                }
                Err(error) => {
                    report_client_error(&task_shared, peer, Some(&host), Stage::ClientHttp, &error)
                }
            }
        });
        return Response::new(empty());
    }

    // A pass-through tunnel: decided as one request.
    let effect = remit_types::effect::Effect::HttpRequest {
        host: host.clone(),
        port,
        method: "CONNECT".into(),
        path: String::new(),
    };
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    if let GateDecision::Deny { policy, reason } = shared.gate.decide_request(id, effect).await {
        return refusal(StatusCode::FORBIDDEN, &policy, &reason, &what, json);
    }
    // Allowed: from here on the tunnel is reported under its id, whichever way it ends.
    let mut tunnel = Tunnel::new(Arc::clone(&shared), id, peer, host.clone(), port);
    if !tunnel.take_slot(&slot) {
        let reason = format!(
            "more than {} connections and tunnels at once; close some and retry",
            shared.limits.max_connections
        );
        tunnel.fail(format!("refused by `egress.connections`: {reason}"));
        return refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "egress.connections",
            &reason,
            &what,
            json,
        );
    }
    let meter = match shared.budgets.meter(&host) {
        Ok(m) => m,
        Err(reason) => {
            violation(
                &shared,
                ViolationKind::Budget,
                peer,
                &host,
                port,
                "egress.budget",
                &reason,
            );
            tunnel.fail(format!("refused by `egress.budget`: {reason}"));
            // Refused: the connection goes on serving requests, in its place.
            tunnel.give_back(&slot);
            return refusal(StatusCode::FORBIDDEN, "egress.budget", &reason, &what, json);
        }
    };
    let (upstream, addr) = match connect_checked(&shared, &host, port).await {
        Ok(pair) => pair,
        Err(error) => {
            tunnel.fail(format!("not connected: {error}"));
            // Refused: the connection goes on serving requests, in its place.
            tunnel.give_back(&slot);
            return upstream_refusal(&shared, peer, &host, port, &what, json, &error);
        }
    };
    tunnel.connected(addr);
    let task_shared = Arc::clone(&shared);
    shared.spawn(async move {
        let upgraded = match upgrade.await {
            Ok(u) => u,
            Err(error) => {
                report_client_error(&task_shared, peer, Some(&host), Stage::Tunnel, &error);
                tunnel.fail(format!("the task's side of the tunnel failed: {error}"));
                return;
            }
        };
        let idle = task_shared.limits.idle_timeout;
        // The task's own TCP connection, as the listener gave it, with what hyper read of it.
        match upgraded.downcast::<TokioIo<tokio::net::TcpStream>>() {
            Ok(parts) => {
                let client = parts.io.into_inner();
                tunnel
                    .carry(client, &parts.read_buf, upstream, &meter, idle)
                    .await;
            }
            Err(upgraded) => {
                tunnel
                    .carry(TokioIo::new(upgraded), &[], upstream, &meter, idle)
                    .await;
            }
        }
    });
    Response::new(empty())
}

/// The answer for an origin that could not be reached (or must not be).
pub(crate) fn upstream_refusal<G: EgressGate>(
    shared: &Shared<G>,
    peer: SocketAddr,
    host: &str,
    port: u16,
    what: &str,
    json: bool,
    error: &UpstreamError,
) -> Response<ProxyBody> {
    match error {
        UpstreamError::Refused { .. } => {
            let reason = format!(
                "{error}; the SSRF guard refuses loopback, private, link-local and metadata addresses (ask for `{host}` to be added to network.private if it is meant to be reached)"
            );
            violation(
                shared,
                ViolationKind::Ssrf,
                peer,
                host,
                port,
                "egress.ssrf",
                &reason,
            );
            refusal(StatusCode::FORBIDDEN, "egress.ssrf", &reason, what, json)
        }
        other => {
            shared
                .gate
                .observe(EgressEvent::ConnectionError(ConnectionError {
                    peer: Some(peer),
                    host: Some(host.to_owned()),
                    stage: other.stage(),
                    error: other.to_string(),
                }));
            refusal(
                StatusCode::BAD_GATEWAY,
                "egress.upstream",
                &other.to_string(),
                what,
                json,
            )
        }
    }
}

pub(crate) fn violation<G: EgressGate>(
    shared: &Shared<G>,
    kind: ViolationKind,
    peer: SocketAddr,
    host: &str,
    port: u16,
    policy: &str,
    reason: &str,
) {
    shared.gate.observe(EgressEvent::Violation(Violation {
        kind,
        peer,
        host: host.to_owned(),
        port,
        method: None,
        path: None,
        policy: policy.to_owned(),
        reason: reason.to_owned(),
    }));
}

/// Inside a `CONNECT` tunnel that is not passed through: TLS (intercepted with a minted
/// certificate) or plain HTTP; anything else is closed.
async fn intercept<G, S>(
    shared: Arc<Shared<G>>,
    peer: SocketAddr,
    mut io: S,
    host: String,
    port: u16,
) where
    G: EgressGate,
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut first = vec![0u8; 8];
    let n = match tokio::time::timeout(shared.limits.handshake_timeout, io.read(&mut first)).await {
        Ok(Ok(n)) if n > 0 => n,
        Ok(Ok(_)) => return,
        Ok(Err(e)) => {
            return shared
                .gate
                .observe(EgressEvent::ConnectionError(ConnectionError {
                    peer: Some(peer),
                    host: Some(host),
                    stage: Stage::ClientHttp,
                    error: e.to_string(),
                }));
        }
        Err(_) => {
            return shared
                .gate
                .observe(EgressEvent::ConnectionError(ConnectionError {
                    peer: Some(peer),
                    host: Some(host),
                    stage: Stage::ClientHttp,
                    error: "nothing sent after CONNECT".into(),
                }));
        }
    };
    first.truncate(n);
    let io = Prefixed::new(first.clone(), io);
    if first[0] == 0x16 {
        let config = match shared.tls.server_config(&host) {
            Ok(c) => c,
            Err(e) => {
                return shared
                    .gate
                    .observe(EgressEvent::ConnectionError(ConnectionError {
                        peer: Some(peer),
                        host: Some(host),
                        stage: Stage::ClientTls,
                        error: e.to_string(),
                    }));
            }
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let tls = match tokio::time::timeout(shared.limits.handshake_timeout, acceptor.accept(io))
            .await
        {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                return shared
                    .gate
                    .observe(EgressEvent::ConnectionError(ConnectionError {
                        peer: Some(peer),
                        host: Some(host),
                        stage: Stage::ClientTls,
                        error: e.to_string(),
                    }));
            }
            Err(_) => {
                return shared
                    .gate
                    .observe(EgressEvent::ConnectionError(ConnectionError {
                        peer: Some(peer),
                        host: Some(host),
                        stage: Stage::ClientTls,
                        error: "tls handshake timed out".into(),
                    }));
            }
        };
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let target = Target {
            tls: true,
            host,
            port,
            tunneled: true,
            intercepted: true,
        };
        serve_inner(shared, peer, tls, target, h2).await;
    } else if first[0].is_ascii_uppercase() {
        let target = Target {
            tls: false,
            host,
            port,
            tunneled: true,
            intercepted: false,
        };
        serve_inner(shared, peer, io, target, false).await;
    } else {
        let reason = format!(
            "the tunnel to `{host}:{port}` carries neither TLS nor HTTP; remit inspects only those (a remit can list the host in network.dangerously_tunnel)"
        );
        violation(
            &shared,
            ViolationKind::Protocol,
            peer,
            &host,
            port,
            "egress.protocol",
            &reason,
        );
    }
}

async fn serve_inner<G, S>(
    shared: Arc<Shared<G>>,
    peer: SocketAddr,
    io: S,
    target: Target,
    h2: bool,
) where
    G: EgressGate,
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let service_shared = Arc::clone(&shared);
    let service_target = target.clone();
    let progress = progress::Progress::new();
    let service_progress = Arc::clone(&progress);
    let service = service_fn(move |request: Request<Incoming>| {
        let shared = Arc::clone(&service_shared);
        let target = service_target.clone();
        let progress = Arc::clone(&service_progress);
        async move {
            Ok::<_, Infallible>(
                progress::answer(progress, forward::handle(shared, peer, target, request)).await,
            )
        }
    });
    let io = TokioIo::new(io);
    let served = if h2 {
        // What one connection can hold: 32 streams, each with at most 128 KiB queued for a
        // client that does not read, and 4 MiB (8 MiB in all) of what it sends unread (a
        // body refused mid-way is then usually all sent before the refusal is read).
        let connection = http2::Builder::new(crate::Spawner(Arc::clone(&shared)))
            .timer(TokioTimer::new())
            .max_concurrent_streams(MAX_STREAMS)
            .max_send_buf_size(128 << 10)
            .max_pending_accept_reset_streams(20)
            .max_header_list_size(u32::try_from(shared.limits.max_header_bytes).unwrap_or(u32::MAX))
            .initial_stream_window_size(4 << 20)
            .initial_connection_window_size(8 << 20)
            .max_frame_size(64 * 1024)
            .serve_connection(io, service);
        progress::serve(
            connection,
            |c| c.graceful_shutdown(),
            &progress,
            &shared.limits,
        )
        .await
    } else {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(shared.limits.header_read_timeout)
            .max_buf_size(shared.limits.max_header_bytes.max(8192));
        let connection = builder.serve_connection(io, service);
        progress::serve(
            connection,
            |c| c.graceful_shutdown(),
            &progress,
            &shared.limits,
        )
        .await
    };
    report_served(&shared, peer, Some(&target.host), served);
}

/// Streams one intercepted HTTP/2 connection may have open at once.
const MAX_STREAMS: u32 = 32;

#[cfg(test)]
mod tests {
    use super::normalize_host;

    #[test]
    fn hosts_are_normalized_and_malformed_ones_refused() {
        for (given, want) in [
            ("Example.COM", Some("example.com")),
            ("example.com.", Some("example.com")),
            ("a-b_c.example", Some("a-b_c.example")),
            ("10.0.0.1", Some("10.0.0.1")),
            ("[::1]", Some("::1")),
            ("[FE80::1]", Some("fe80::1")),
            ("[::ffff:10.0.0.1]", Some("::ffff:10.0.0.1")),
            ("[example.com]", None),
            ("[10.0.0.1]", None),
            ("[fe80::1%eth0]", None),
            ("::1", None),
            ("a:b", None),
            (".example.com", None),
            ("a..example.com", None),
            ("example.com..", None),
            (".", None),
            ("", None),
            ("exa mple.com", None),
            ("example.com/x", None),
        ] {
            assert_eq!(normalize_host(given).as_deref(), want, "{given:?}");
        }
        assert_eq!(normalize_host(&"a".repeat(254)), None);
    }
}
