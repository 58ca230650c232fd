//! Test harness: origins (plain and HTTPS with their own CA), a gate backed by the real
#![allow(dead_code)]
//! policy engine, a resolver we control, and the proxy itself, all on loopback.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use remit_egress::{
    BoxFuture, Egress, EgressConfig, EgressEvent, EgressGate, GateDecision, Resolve, Secret,
    TaskCa, read_credentials,
};
use remit_policy::engine::{Decision, Engine, Principal, Situation};
use remit_types::effect::Effect;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A request an origin received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub type Handler = Arc<dyn Fn(&Seen) -> (u16, Vec<(String, String)>, Vec<u8>) + Send + Sync>;

/// An origin server.
pub struct Origin {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Origin {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// A CA for origins, trusted by the proxy through `extra_roots`.
pub struct OriginCa {
    pub der: CertificateDer<'static>,
    pub pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl OriginCa {
    pub fn new() -> OriginCa {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test origin CA");
        let cert = params.self_signed(&key).unwrap();
        OriginCa {
            der: cert.der().clone(),
            pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    pub fn server_config(&self, names: &[&str]) -> Arc<rustls::ServerConfig> {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// Start an origin on `bind` (TLS when `tls` is given).
pub async fn origin(
    bind: &str,
    tls: Option<Arc<rustls::ServerConfig>>,
    handler: Handler,
) -> Origin {
    let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = Arc::clone(&handler);
            let log = Arc::clone(&log);
            let tls = tls.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let handler = Arc::clone(&handler);
                    let log = Arc::clone(&log);
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes().to_vec())
                            .unwrap_or_default();
                        let seen = Seen {
                            method: parts.method.to_string(),
                            uri: parts.uri.to_string(),
                            headers: parts
                                .headers
                                .iter()
                                .map(|(k, v)| {
                                    (
                                        k.to_string(),
                                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                    )
                                })
                                .collect(),
                            body,
                        };
                        let (status, headers, body) =
                            tokio::task::block_in_place(|| handler(&seen));
                        log.lock().unwrap().push(seen);
                        let mut response = Response::new(Full::new(Bytes::from(body)));
                        *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        for (k, v) in headers {
                            response.headers_mut().append(
                                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                                v.parse().unwrap(),
                            );
                        }
                        Ok::<_, Infallible>(response)
                    }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                match tls {
                    Some(config) => {
                        let Ok(stream) =
                            tokio_rustls::TlsAcceptor::from(config).accept(stream).await
                        else {
                            return;
                        };
                        let _ = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
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
    Origin { addr, seen }
}

/// An origin that answers `200 hello` to everything.
pub fn hello() -> Handler {
    Arc::new(|_| {
        (
            200,
            vec![("content-type".into(), "text/plain".into())],
            b"hello".to_vec(),
        )
    })
}

/// A gate over the real policy engine, recording decisions and events.
pub struct PolicyGate {
    pub engine: Engine,
    pub decisions: Mutex<Vec<(Effect, GateDecision)>>,
    pub events: Mutex<Vec<EgressEvent>>,
}

impl PolicyGate {
    pub fn new(remit: &str) -> Arc<PolicyGate> {
        let loaded = remit_types::remit::parse(remit, "test.remit.toml", ".".into())
            .unwrap_or_else(|e| panic!("{e}"));
        let engine = Engine::load(&loaded).unwrap_or_else(|e| panic!("{e}"));
        Arc::new(PolicyGate {
            engine,
            decisions: Mutex::new(Vec::new()),
            events: Mutex::new(Vec::new()),
        })
    }

    pub fn decisions(&self) -> Vec<(Effect, GateDecision)> {
        self.decisions.lock().unwrap().clone()
    }

    pub fn events(&self) -> Vec<EgressEvent> {
        self.events.lock().unwrap().clone()
    }

    pub fn effects_of(&self, kind: &str) -> Vec<(Effect, GateDecision)> {
        self.decisions()
            .into_iter()
            .filter(|(e, _)| e.kind() == kind)
            .collect()
    }
}

impl EgressGate for PolicyGate {
    async fn decide(&self, effect: Effect) -> GateDecision {
        let principal = Principal {
            task: "t1".into(),
            agent: "test".into(),
            owner: "owner".into(),
            requester: "owner".into(),
            remit: String::new(),
            risk: String::new(),
        };
        let decision = match self
            .engine
            .decide(&principal, &effect, &Situation::default())
        {
            Decision::Allow { .. } => GateDecision::Allow,
            Decision::Deny { policy, reason } => GateDecision::Deny { policy, reason },
            Decision::NeedsApproval { policies, .. } => GateDecision::Deny {
                policy: policies.join(","),
                reason: "needs a human's approval, and none was given".into(),
            },
        };
        self.decisions
            .lock()
            .unwrap()
            .push((effect, decision.clone()));
        decision
    }

    fn observe(&self, event: EgressEvent) {
        self.events.lock().unwrap().push(event);
    }
}

/// A resolver with a fixed table; a name may have a sequence of answers (the last repeats).
#[derive(Default)]
pub struct TableResolver {
    pub table: Mutex<HashMap<String, Vec<Vec<IpAddr>>>>,
    pub calls: AtomicUsize,
}

impl TableResolver {
    pub fn with(names: &[(&str, &str)]) -> Arc<TableResolver> {
        let r = TableResolver::default();
        for (name, ip) in names {
            r.table
                .lock()
                .unwrap()
                .insert(name.to_string(), vec![vec![ip.parse().unwrap()]]);
        }
        Arc::new(r)
    }

    pub fn answers(&self, name: &str, answers: &[&[&str]]) {
        let answers = answers
            .iter()
            .map(|a| a.iter().map(|ip| ip.parse().unwrap()).collect())
            .collect();
        self.table.lock().unwrap().insert(name.to_string(), answers);
    }
}

impl Resolve for TableResolver {
    fn resolve<'a>(&'a self, host: &'a str) -> BoxFuture<'a, std::io::Result<Vec<IpAddr>>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let mut table = self.table.lock().unwrap();
            match table.get_mut(host) {
                Some(answers) if answers.len() > 1 => Ok(answers.remove(0)),
                Some(answers) => Ok(answers[0].clone()),
                None => Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such test host",
                )),
            }
        })
    }
}

/// A running proxy with its files.
pub struct Proxy {
    pub addr: SocketAddr,
    pub gate: Arc<PolicyGate>,
    pub egress: Egress<PolicyGate>,
    pub dir: tempfile::TempDir,
    pub bundle: PathBuf,
    pub env: Vec<(String, String)>,
}

impl Proxy {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn var(&self, name: &str) -> String {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    /// Run a tool with the task's environment (and nothing inherited but PATH and HOME).
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        self.command(program, args).output().unwrap()
    }

    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new(program);
        command.args(args).env_clear();
        command.env("PATH", std::env::var("PATH").unwrap_or_default());
        command.env("HOME", self.dir.path());
        command.current_dir(self.dir.path());
        for (k, v) in &self.env {
            // Tests reach test hosts on 127.0.0.1 through the proxy.
            if k.eq_ignore_ascii_case("no_proxy") {
                continue;
            }
            command.env(k, v);
        }
        command
    }

    /// curl through the proxy: (status, headers, body).
    pub fn curl(&self, args: &[&str]) -> (u16, String, String) {
        let mut all = vec![
            "-sS",
            "-o",
            "-",
            "-D",
            "/dev/stderr",
            "-w",
            "\n%{http_code}",
            "--max-time",
            "20",
        ];
        all.extend_from_slice(args);
        let out = self.run("curl", &all);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
        if code.trim() == "000" || code.trim().is_empty() {
            eprintln!("curl {args:?} failed: {stderr}");
        }
        (code.trim().parse().unwrap_or(0), stderr, body.to_owned())
    }
}

pub struct Setup {
    pub remit: String,
    pub resolver: Arc<TableResolver>,
    pub extra_roots: Vec<CertificateDer<'static>>,
    pub host_env: std::collections::BTreeMap<String, String>,
    pub known: Vec<(String, Secret)>,
    pub bound: Vec<remit_egress::BoundSecret>,
    pub publish_args: Vec<String>,
    pub limits: Option<remit_egress::Limits>,
}

impl Setup {
    pub fn new(remit: &str) -> Setup {
        Setup {
            remit: remit.to_owned(),
            resolver: Arc::new(TableResolver::default()),
            extra_roots: Vec::new(),
            host_env: Default::default(),
            known: Vec::new(),
            bound: Vec::new(),
            publish_args: Vec::new(),
            limits: None,
        }
    }

    pub async fn start(self) -> Proxy {
        let loaded = remit_types::remit::parse(&self.remit, "test.remit.toml", ".".into())
            .unwrap_or_else(|e| panic!("{e}"));
        let gate = PolicyGate::new(&self.remit);
        let credentials =
            read_credentials(&loaded.remit.network, &self.host_env, Path::new("."), None).unwrap();
        let mut config = EgressConfig::new(loaded.remit.network.clone(), credentials);
        config.extra_roots = self.extra_roots;
        config.resolver = self.resolver;
        config.known_secrets = self.known;
        config.bound_secrets = self.bound;
        config.publish_args = self.publish_args;
        if let Some(limits) = self.limits {
            config.limits = limits;
        }
        let ca = TaskCa::generate("t1", Duration::from_secs(3600)).unwrap();
        let egress = Egress::new(config, ca, Arc::clone(&gate)).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("ca.pem");
        let env = egress.task_environment(addr, bundle.to_str().unwrap());
        std::fs::write(&bundle, &env.ca_bundle).unwrap();
        let serving = egress.clone();
        tokio::spawn(async move { serving.serve(listener).await });
        Proxy {
            addr,
            gate,
            egress,
            dir,
            bundle,
            env: env.vars,
        }
    }
}

/// A multi-threaded runtime for one test (tools run on the test thread, servers on it).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Whether a program is on PATH.
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Request records the gate saw.
pub fn records(gate: &PolicyGate) -> Vec<remit_egress::RequestRecord> {
    gate.events()
        .into_iter()
        .filter_map(|e| match e {
            EgressEvent::Request(r) => Some(r),
            _ => None,
        })
        .collect()
}

/// Pass-through tunnels the gate saw end.
pub fn tunnels(gate: &PolicyGate) -> Vec<remit_egress::TunnelRecord> {
    gate.events()
        .into_iter()
        .filter_map(|e| match e {
            EgressEvent::Tunnel(t) => Some(t),
            _ => None,
        })
        .collect()
}

/// Violations the gate saw.
pub fn violations(gate: &PolicyGate) -> Vec<remit_egress::Violation> {
    gate.events()
        .into_iter()
        .filter_map(|e| match e {
            EgressEvent::Violation(v) => Some(v),
            _ => None,
        })
        .collect()
}

/// Wait until `check` holds (records arrive when bodies end), at most 5 s.
pub fn eventually(check: impl Fn() -> bool) -> bool {
    for _ in 0..100 {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}
