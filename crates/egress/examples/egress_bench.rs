//! Benchmark driver for `bench/egress.sh`. Three roles, each its own process:
//!
//! - `origin DIR`: a local origin on 127.0.0.1 — plain HTTP, and HTTPS (a CA of its own,
//!   written to `DIR/origin-ca.pem`) on two ports; `/small` answers 64 bytes, `/bulk?n=BYTES`
//!   streams zeros. Prints `http=PORT tls=PORT tls2=PORT`.
//! - `proxy DIR HTTP TLS TLS2`: remit's egress proxy with a remit that allows the three ports
//!   (TLS2 as a `dangerously_tunnel`, i.e. plain `CONNECT`), the real policy engine as its
//!   gate. Writes the task bundle to `DIR/task-ca.pem`, prints `proxy=PORT`.
//! - `load MODE ...`: the client. `latency MODE N` (sequential requests on one connection,
//!   prints p50/p99 in µs), `rps MODE CONNS SECONDS`, `bulk MODE BYTES` (MB/s).
//!   MODE: `direct-http`, `direct-https`, `proxy-http:ADDR`, `connect:ADDR` (tunnel to TLS2),
//!   `intercept:ADDR` (TLS terminated by the proxy; TLS port).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_debug_implementations,
    unreachable_pub
)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use remit_egress::{Egress, EgressConfig, EgressEvent, EgressGate, GateDecision, TaskCa};
use remit_types::effect::Effect;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn respond(req: Request<Incoming>) -> Response<Body> {
    if req.uri().path() == "/bulk" {
        let n: u64 = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("n="))
            .and_then(|n| n.parse().ok())
            .unwrap_or(1 << 30);
        let body = Zeros {
            left: n,
            chunk: Bytes::from(vec![0u8; 256 * 1024]),
        };
        let mut response = Response::new(BodyExt::boxed(body));
        response
            .headers_mut()
            .insert("content-length", n.to_string().parse().unwrap());
        response
    } else {
        Response::new(BodyExt::boxed(http_body_util::Full::new(
            Bytes::from_static(&[b'x'; 64]),
        )))
    }
}

/// `left` zero bytes, in chunks.
struct Zeros {
    left: u64,
    chunk: Bytes,
}

impl hyper::body::Body for Zeros {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = (self.chunk.len() as u64).min(self.left);
        self.left -= n;
        std::task::Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n as usize)))))
    }
    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.left)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = if args.first().map(String::as_str) == Some("proxy")
        && std::env::var_os("BENCH_PROXY_THREADS").is_none_or(|v| v == "1")
    {
        // As in `remit run`, whose supervisor serves the task's proxy on one thread.
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    };
    match args.first().map(String::as_str) {
        Some("origin") => rt.block_on(origin(Path::new(&args[1]))),
        Some("proxy") => rt.block_on(proxy(
            Path::new(&args[1]),
            args[2].parse().unwrap(),
            args[3].parse().unwrap(),
            args[4].parse().unwrap(),
        )),
        Some("load") => rt.block_on(load(&args[1..])),
        _ => panic!("usage: egress_bench origin|proxy|load ..."),
    }
}

async fn origin(dir: &Path) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    let ca = params.self_signed(&key).unwrap();
    std::fs::write(dir.join("origin-ca.pem"), ca.pem()).unwrap();
    let issuer = rcgen::Issuer::new(params, key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "origin.bench".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tls = Arc::new(config);
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let https = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let https2 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!(
        "http={} tls={} tls2={}",
        http.local_addr().unwrap().port(),
        https.local_addr().unwrap().port(),
        https2.local_addr().unwrap().port()
    );
    for (listener, tls) in [
        (http, None),
        (https, Some(tls.clone())),
        (https2, Some(tls)),
    ] {
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let _ = stream.set_nodelay(true);
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|req| async move {
                        Ok::<_, Infallible>(respond(req))
                    });
                    let builder = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(tls) => {
                            if let Ok(s) = tokio_rustls::TlsAcceptor::from(tls).accept(stream).await
                            {
                                let _ = builder.serve_connection(TokioIo::new(s), service).await;
                            }
                        }
                        None => {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                });
            }
        });
    }
    std::future::pending::<()>().await;
}

struct Gate(remit_policy::engine::Engine);

impl EgressGate for Gate {
    async fn decide(&self, effect: Effect) -> GateDecision {
        let principal = remit_policy::engine::Principal {
            task: "bench".into(),
            agent: "bench".into(),
            owner: "bench".into(),
            requester: "bench".into(),
            remit: String::new(),
            risk: String::new(),
        };
        match self.0.decide(
            &principal,
            &effect,
            &remit_policy::engine::Situation::default(),
        ) {
            remit_policy::engine::Decision::Allow { .. } => GateDecision::Allow,
            remit_policy::engine::Decision::Deny { policy, reason } => {
                GateDecision::Deny { policy, reason }
            }
            remit_policy::engine::Decision::NeedsApproval { .. } => GateDecision::Deny {
                policy: "approval".into(),
                reason: "approval".into(),
            },
        }
    }
    fn observe(&self, event: EgressEvent) {
        std::hint::black_box(event);
    }
}

async fn proxy(dir: &Path, http: u16, tls: u16, tls2: u16) {
    let text = format!(
        "[network]\nallow = [\"127.0.0.1:{http}\", \"127.0.0.1:{tls}\", \"127.0.0.1:{tls2}\"]\nprivate = [\"127.0.0.1\"]\ndangerously_tunnel = [\"127.0.0.1:{tls2}\"]\n"
    );
    let loaded = remit_types::remit::parse(&text, "bench.remit.toml", ".".into()).unwrap();
    let engine = remit_policy::engine::Engine::load(&loaded).unwrap();
    let mut config = EgressConfig::new(loaded.remit.network.clone(), Vec::new());
    config.extra_roots = vec![read_pem(&dir.join("origin-ca.pem"))];
    // The task's identity token: DLP scans every request for it, as in a real task.
    config.known_secrets = vec![(
        "the task's identity token".into(),
        remit_egress::Secret::new("eyJhbGciOiJFUzI1NiJ9.benchmark-token-value-0123456789"),
    )];
    let ca = TaskCa::generate("bench", Duration::from_secs(3600)).unwrap();
    let egress = Egress::new(config, ca, Arc::new(Gate(engine))).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let env = egress.task_environment(listener.local_addr().unwrap(), "/dev/null");
    let mut bundle = std::fs::read(dir.join("origin-ca.pem")).unwrap();
    bundle.extend_from_slice(egress.ca_pem().as_bytes());
    std::fs::write(dir.join("task-ca.pem"), bundle).unwrap();
    drop(env);
    println!("proxy={}", listener.local_addr().unwrap().port());
    egress.serve(listener).await.unwrap();
}

fn read_pem(path: &Path) -> CertificateDer<'static> {
    use base64::Engine as _;
    let text = std::fs::read_to_string(path).unwrap();
    let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    CertificateDer::from(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
}

fn client_tls(dir: &Path) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    let text = std::fs::read_to_string(dir.join("task-ca.pem")).unwrap();
    for block in text.split("-----END CERTIFICATE-----") {
        let b64: String = block
            .lines()
            .filter(|l| !l.starts_with("-----") && !l.trim().is_empty())
            .collect();
        if b64.is_empty() {
            continue;
        }
        use base64::Engine as _;
        roots
            .add(CertificateDer::from(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap(),
            ))
            .unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

struct Mode {
    kind: String,
    proxy: Option<SocketAddr>,
    ports: (u16, u16, u16),
    dir: PathBuf,
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

impl Mode {
    /// A connection, and the URI to request `path` with.
    async fn connect(&self) -> (Sender, String) {
        let (http, tls, tls2) = self.ports;
        let io: Box<dyn Io> = match (self.kind.as_str(), self.proxy) {
            ("direct-http", _) => Box::new(tcp(&format!("127.0.0.1:{http}")).await),
            ("proxy-http", Some(p)) => Box::new(tcp(&p.to_string()).await),
            ("direct-https", _) => Box::new(self.tls(tcp(&format!("127.0.0.1:{tls}")).await).await),
            ("connect", Some(p)) => Box::new(self.tls(connect(p, tls2).await).await),
            ("intercept", Some(p)) => Box::new(self.tls(connect(p, tls).await).await),
            (other, _) => panic!("mode {other}"),
        };
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .unwrap();
        tokio::spawn(conn);
        let base = if self.kind == "proxy-http" {
            format!("http://127.0.0.1:{http}")
        } else {
            String::new()
        };
        (sender, base)
    }

    async fn tls(&self, stream: TcpStream) -> tokio_rustls::client::TlsStream<TcpStream> {
        client_tls(&self.dir)
            .connect(ServerName::try_from("127.0.0.1").unwrap(), stream)
            .await
            .unwrap()
    }
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

async fn tcp(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    s
}

async fn connect(proxy: SocketAddr, port: u16) -> TcpStream {
    let mut s = tcp(&proxy.to_string()).await;
    s.write_all(
        format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

/// A connection that is made again when the proxy closes it (tinyproxy closes after each
/// forwarded request; the reconnect is part of its cost).
struct Conn<'a> {
    mode: &'a Mode,
    sender: Sender,
    base: String,
}

impl<'a> Conn<'a> {
    async fn new(mode: &'a Mode) -> Conn<'a> {
        let (sender, base) = mode.connect().await;
        Conn { mode, sender, base }
    }

    async fn get(&mut self, path: &str) -> u64 {
        if self.sender.ready().await.is_err() {
            let (sender, _) = self.mode.connect().await;
            self.sender = sender;
        }
        let uri = format!("{}{path}", self.base);
        match get(&mut self.sender, &uri).await {
            Ok(n) => n,
            Err(_) => {
                let (sender, _) = self.mode.connect().await;
                self.sender = sender;
                get(&mut self.sender, &uri).await.unwrap()
            }
        }
    }
}

async fn get(sender: &mut Sender, uri: &str) -> Result<u64, hyper::Error> {
    sender.ready().await?;
    let request = Request::builder()
        .uri(uri)
        .header("host", "127.0.0.1")
        .body(Empty::new())
        .unwrap();
    let response = sender.send_request(request).await?;
    assert!(response.status().is_success(), "{}", response.status());
    let mut body = response.into_body();
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            n += data.len() as u64;
        }
    }
    Ok(n)
}

async fn load(args: &[String]) {
    let dir = PathBuf::from(std::env::var("BENCH_DIR").unwrap());
    let ports: Vec<u16> = std::env::var("BENCH_PORTS")
        .unwrap()
        .split(',')
        .map(|p| p.parse().unwrap())
        .collect();
    let (kind, proxy) = match args[1].split_once(':') {
        Some((k, addr)) => (
            k.to_owned(),
            Some(format!("127.0.0.1:{addr}").parse().unwrap()),
        ),
        None => (args[1].clone(), None),
    };
    let mode = Mode {
        kind,
        proxy,
        ports: (ports[0], ports[1], ports[2]),
        dir,
    };
    match args[0].as_str() {
        "latency" => {
            let n: usize = args[2].parse().unwrap();
            let mut conn = Conn::new(&mode).await;
            for _ in 0..200 {
                conn.get("/small").await;
            }
            let mut times = Vec::with_capacity(n);
            for _ in 0..n {
                let t = Instant::now();
                conn.get("/small").await;
                times.push(t.elapsed().as_nanos() as u64);
            }
            times.sort_unstable();
            let p = |q: f64| {
                times[((times.len() as f64 * q) as usize).min(times.len() - 1)] as f64 / 1000.0
            };
            println!("p50_us={:.1} p99_us={:.1}", p(0.50), p(0.99));
        }
        "rps" => {
            let conns: usize = args[2].parse().unwrap();
            let secs: f64 = args[3].parse().unwrap();
            let deadline = Instant::now() + Duration::from_secs_f64(secs);
            let mode = Arc::new(mode);
            let mut tasks = Vec::new();
            for _ in 0..conns {
                let mode = Arc::clone(&mode);
                tasks.push(tokio::spawn(async move {
                    let mut conn = Conn::new(&mode).await;
                    let mut count = 0u64;
                    while Instant::now() < deadline {
                        conn.get("/small").await;
                        count += 1;
                    }
                    count
                }));
            }
            let mut total = 0;
            for t in tasks {
                total += t.await.unwrap();
            }
            println!("rps={:.0}", total as f64 / secs);
        }
        "bulk" => {
            let bytes: u64 = args[2].parse().unwrap();
            let mut conn = Conn::new(&mode).await;
            let t = Instant::now();
            let n = conn.get(&format!("/bulk?n={bytes}")).await;
            assert_eq!(n, bytes);
            println!(
                "mb_per_s={:.0}",
                bytes as f64 / t.elapsed().as_secs_f64() / 1e6
            );
        }
        other => panic!("load {other}"),
    }
}
