//! Connections to origins: resolved and checked by the SSRF guard, TLS verified, HTTP/1.1
//! or HTTP/2 by ALPN, kept for reuse per origin.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::body::ProxyBody;
use crate::events::{ConnectionError, EgressEvent, Stage};
use crate::ssrf::{self, Refusal};
use crate::{EgressGate, Shared};

/// Where requests go.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Origin {
    pub(crate) tls: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// Offer HTTP/2 (when the task speaks it too).
    pub(crate) h2: bool,
}

/// Why an origin could not be reached.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error(
        "`{host}` resolves to {address}, a {range} address this task's remit does not name in network.private"
    )]
    Refused {
        host: String,
        address: IpAddr,
        range: &'static str,
    },
    #[error("cannot resolve `{0}`: {1}")]
    Resolve(String, String),
    #[error("cannot connect to `{0}`: {1}")]
    Connect(String, String),
    #[error("tls with `{0}` failed: {1}")]
    Tls(String, String),
    #[error("http with `{0}` failed: {1}")]
    Http(String, String),
}

impl UpstreamError {
    pub(crate) fn stage(&self) -> Stage {
        match self {
            UpstreamError::Refused { .. }
            | UpstreamError::Resolve(..)
            | UpstreamError::Connect(..) => Stage::UpstreamConnect,
            UpstreamError::Tls(..) => Stage::UpstreamTls,
            UpstreamError::Http(..) => Stage::UpstreamHttp,
        }
    }
}

enum Sender {
    H1(http1::SendRequest<ProxyBody>),
    H2(http2::SendRequest<ProxyBody>),
}

struct Idle {
    h2: Option<(http2::SendRequest<ProxyBody>, SocketAddr)>,
    h1: Vec<(http1::SendRequest<ProxyBody>, SocketAddr, Instant)>,
}

/// Reusable connections per origin. Only ever holds connections this task's proxy made,
/// each to an address the SSRF guard passed for that origin's name.
pub(crate) struct Pool {
    idle: Mutex<HashMap<Origin, Idle>>,
    max_idle: usize,
}

/// How long an idle HTTP/1.1 connection is kept.
const IDLE_FOR: Duration = Duration::from_secs(60);

/// Idle connections kept in all, every origin together: a task that asks many origins once
/// each does not leave a socket open to each of them.
const MAX_IDLE_TOTAL: usize = 64;

impl Pool {
    pub(crate) fn new(max_idle: usize) -> Pool {
        Pool {
            idle: Mutex::new(HashMap::new()),
            max_idle,
        }
    }

    fn take(&self, origin: &Origin) -> Option<(Sender, SocketAddr)> {
        let mut idle = self.idle.lock().ok()?;
        let entry = idle.get_mut(origin)?;
        if let Some((h2, addr)) = &entry.h2 {
            if !h2.is_closed() {
                return Some((Sender::H2(h2.clone()), *addr));
            }
            entry.h2 = None;
        }
        let now = Instant::now();
        entry
            .h1
            .retain(|(s, _, at)| !s.is_closed() && now.duration_since(*at) < IDLE_FOR);
        let ready = entry.h1.iter().position(|(s, _, _)| s.is_ready())?;
        let (sender, addr, _) = entry.h1.swap_remove(ready);
        Some((Sender::H1(sender), addr))
    }

    fn put_h1(&self, origin: &Origin, sender: http1::SendRequest<ProxyBody>, addr: SocketAddr) {
        if let Ok(mut idle) = self.idle.lock() {
            make_room(&mut idle);
            let entry = idle.entry(origin.clone()).or_insert_with(|| Idle {
                h2: None,
                h1: Vec::new(),
            });
            if entry.h1.len() < self.max_idle {
                entry.h1.push((sender, addr, Instant::now()));
            }
        }
    }

    fn put_h2(&self, origin: &Origin, sender: http2::SendRequest<ProxyBody>, addr: SocketAddr) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.get(origin).is_none_or(|e| e.h2.is_none()) {
                make_room(&mut idle);
            }
            let entry = idle.entry(origin.clone()).or_insert_with(|| Idle {
                h2: None,
                h1: Vec::new(),
            });
            entry.h2 = Some((sender, addr));
        }
    }
}

/// Drop closed and expired idle connections, then, while [`MAX_IDLE_TOTAL`] are kept, the
/// oldest HTTP/1.1 one (or, when there is none, an HTTP/2 one): room for one more.
fn make_room(idle: &mut HashMap<Origin, Idle>) {
    let now = Instant::now();
    for entry in idle.values_mut() {
        entry
            .h1
            .retain(|(s, _, at)| !s.is_closed() && now.duration_since(*at) < IDLE_FOR);
        if entry.h2.as_ref().is_some_and(|(s, _)| s.is_closed()) {
            entry.h2 = None;
        }
    }
    idle.retain(|_, e| e.h2.is_some() || !e.h1.is_empty());
    let total = |idle: &HashMap<Origin, Idle>| {
        idle.values()
            .map(|e| e.h1.len() + usize::from(e.h2.is_some()))
            .sum::<usize>()
    };
    while total(idle) >= MAX_IDLE_TOTAL {
        let oldest = idle
            .iter()
            .filter_map(|(origin, e)| {
                e.h1.iter()
                    .map(|(_, _, at)| *at)
                    .min()
                    .map(|at| (at, origin))
            })
            .min_by_key(|(at, _)| *at)
            .map(|(_, origin)| origin.clone());
        match oldest {
            Some(origin) => {
                if let Some(entry) = idle.get_mut(&origin) {
                    let first = entry
                        .h1
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, (_, _, at))| *at)
                        .map(|(i, _)| i);
                    if let Some(i) = first {
                        entry.h1.swap_remove(i);
                    }
                }
            }
            None => {
                let any = idle.keys().next().cloned();
                if let Some(origin) = any
                    && let Some(entry) = idle.get_mut(&origin)
                {
                    entry.h2 = None;
                }
            }
        }
        idle.retain(|_, e| e.h2.is_some() || !e.h1.is_empty());
    }
}

/// Resolve `host`, check every address, and connect to one of them.
pub(crate) async fn connect_checked<G: EgressGate>(
    shared: &Shared<G>,
    host: &str,
    port: u16,
) -> Result<(TcpStream, SocketAddr), UpstreamError> {
    let timeout = shared.limits.connect_timeout;
    let addrs: Vec<IpAddr> = match remit_types::network::host_ip(host) {
        Some(ip) => vec![ip],
        None => match tokio::time::timeout(timeout, shared.resolver.resolve(host)).await {
            Err(_) => return Err(UpstreamError::Resolve(host.to_owned(), "timed out".into())),
            Ok(Err(e)) => return Err(UpstreamError::Resolve(host.to_owned(), e.to_string())),
            Ok(Ok(addrs)) if addrs.is_empty() => {
                return Err(UpstreamError::Resolve(
                    host.to_owned(),
                    "no addresses".into(),
                ));
            }
            Ok(Ok(addrs)) => addrs,
        },
    };
    ssrf::check(host, &addrs, &shared.network.private).map_err(|Refusal { address, range }| {
        UpstreamError::Refused {
            host: host.to_owned(),
            address,
            range,
        }
    })?;
    // INVARIANT: these are exactly the addresses checked above; nothing resolves again.
    let sockets: Vec<SocketAddr> = addrs
        .into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect();
    ssrf::connect(&sockets, timeout)
        .await
        .map_err(|e| UpstreamError::Connect(format!("{host}:{port}"), e.to_string()))
}

async fn handshake<G, S>(
    shared: &Arc<Shared<G>>,
    origin: &Origin,
    io: S,
    h2: bool,
) -> Result<Sender, UpstreamError>
where
    G: EgressGate,
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let name = format!("{}:{}", origin.host, origin.port);
    let io = TokioIo::new(io);
    if h2 {
        let (sender, conn) = http2::Builder::new(crate::Spawner(Arc::clone(shared)))
            .timer(TokioTimer::new())
            .initial_stream_window_size(4 << 20)
            .initial_connection_window_size(8 << 20)
            .max_frame_size(64 * 1024)
            .handshake(io)
            .await
            .map_err(|e| UpstreamError::Http(name.clone(), e.to_string()))?;
        let gate = Arc::clone(&shared.gate);
        let host = origin.host.clone();
        shared.spawn(async move {
            if let Err(e) = conn.await {
                gate.observe(EgressEvent::ConnectionError(ConnectionError {
                    peer: None,
                    host: Some(host),
                    stage: Stage::UpstreamHttp,
                    error: e.to_string(),
                }));
            }
        });
        Ok(Sender::H2(sender))
    } else {
        let (sender, conn) = http1::Builder::new()
            .max_buf_size(shared.limits.max_header_bytes.max(8192) * 4)
            .handshake(io)
            .await
            .map_err(|e| UpstreamError::Http(name.clone(), e.to_string()))?;
        shared.spawn(async move {
            // Errors surface on the request that was in flight.
            let _ = conn.await;
        });
        Ok(Sender::H1(sender))
    }
}

async fn open<G: EgressGate>(
    shared: &Arc<Shared<G>>,
    origin: &Origin,
) -> Result<(Sender, SocketAddr), UpstreamError> {
    let (tcp, addr) = connect_checked(shared, &origin.host, origin.port).await?;
    if !origin.tls {
        return Ok((handshake(shared, origin, tcp, false).await?, addr));
    }
    let name = format!("{}:{}", origin.host, origin.port);
    let server_name = crate::ca::server_name(&origin.host)
        .ok_or_else(|| UpstreamError::Tls(name.clone(), "not a valid tls name".into()))?;
    let config = if origin.h2 {
        Arc::clone(&shared.tls.client_h2)
    } else {
        Arc::clone(&shared.tls.client_h1)
    };
    let connector = tokio_rustls::TlsConnector::from(config);
    let tls = tokio::time::timeout(
        shared.limits.handshake_timeout,
        connector.connect(server_name, tcp),
    )
    .await
    .map_err(|_| UpstreamError::Tls(name.clone(), "handshake timed out".into()))?
    .map_err(|e| UpstreamError::Tls(name.clone(), e.to_string()))?;
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    Ok((handshake(shared, origin, tls, h2).await?, addr))
}

/// Send a request to `origin`, reusing a connection when one is free. Returns the response
/// headers, the address, and the protocol used.
pub(crate) async fn send<G: EgressGate>(
    shared: &Arc<Shared<G>>,
    origin: &Origin,
    make: impl FnOnce(bool) -> Result<Request<ProxyBody>, UpstreamError>,
) -> Result<(Response<Incoming>, SocketAddr, &'static str), UpstreamError> {
    let name = format!("{}:{}", origin.host, origin.port);
    let (sender, addr) = match shared.pool.take(origin) {
        Some(found) => found,
        None => open(shared, origin).await?,
    };
    let timeout = shared.limits.response_timeout;
    match sender {
        Sender::H2(mut sender) => {
            shared.pool.put_h2(origin, sender.clone(), addr);
            sender
                .ready()
                .await
                .map_err(|e| UpstreamError::Http(name.clone(), e.to_string()))?;
            let request = make(true)?;
            let response = tokio::time::timeout(timeout, sender.send_request(request))
                .await
                .map_err(|_| {
                    UpstreamError::Http(name.clone(), format!("no response within {timeout:?}"))
                })?
                .map_err(|e| UpstreamError::Http(name.clone(), error_chain(&e)))?;
            Ok((response, addr, "h2"))
        }
        Sender::H1(mut sender) => {
            sender
                .ready()
                .await
                .map_err(|e| UpstreamError::Http(name.clone(), e.to_string()))?;
            let request = make(false)?;
            let response = tokio::time::timeout(timeout, sender.send_request(request))
                .await
                .map_err(|_| {
                    UpstreamError::Http(name.clone(), format!("no response within {timeout:?}"))
                })?
                .map_err(|e| UpstreamError::Http(name.clone(), error_chain(&e)))?;
            shared.pool.put_h1(origin, sender, addr);
            Ok((response, addr, "http/1.1"))
        }
    }
}

/// An error and its causes on one line.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Idle connections kept are bounded for all origins together, the oldest going first,
    /// and closed ones are not kept.
    #[tokio::test]
    async fn the_pool_keeps_a_bounded_number_of_idle_connections() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let pool = Pool::new(8);
        let origin = |i: u16| Origin {
            tls: false,
            host: format!("o{i}.test"),
            port: 80,
            h2: false,
        };
        let mut drivers = Vec::new();
        for i in 0..100u16 {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let (sender, conn) = http1::Builder::new()
                .handshake::<_, ProxyBody>(TokioIo::new(tcp))
                .await
                .unwrap();
            drivers.push(tokio::spawn(conn));
            pool.put_h1(&origin(i), sender, addr);
        }
        let kept = |pool: &Pool| {
            pool.idle
                .lock()
                .unwrap()
                .values()
                .map(|e| e.h1.len())
                .sum::<usize>()
        };
        assert_eq!(kept(&pool), MAX_IDLE_TOTAL);
        // The oldest went first: the first origins' connections are gone, the last kept.
        let has = |pool: &Pool, i: u16| pool.idle.lock().unwrap().contains_key(&origin(i));
        assert!(!has(&pool, 0) && !has(&pool, 35));
        assert!(has(&pool, 36) && has(&pool, 99));
        // Closed connections are dropped when room is made.
        for driver in &drivers {
            driver.abort();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = http1::Builder::new()
            .handshake::<_, ProxyBody>(TokioIo::new(tcp))
            .await
            .unwrap();
        let _driver = tokio::spawn(conn);
        pool.put_h1(&origin(1000), sender, addr);
        assert_eq!(kept(&pool), 1);
        accepted.abort();
    }
}
