//! remit-egress: the only way out of a task. An HTTP/1.1 and HTTP/2 forward proxy that turns
//! every request a task makes into effects for the gate, and performs only what the gate
//! allows.
//!
//! What it does, for every connection a task opens to its proxy port:
//!
//! - **`CONNECT` and TLS interception.** HTTPS is intercepted with a per-task CA
//!   ([`TaskCa`], generated at task start; its key never leaves the supervisor) so that
//!   every request inside is seen. Hosts named in `network.dangerously_tunnel` are passed
//!   through untouched instead. Origins are verified against the host's roots.
//! - **Every request is an effect.** `http_request{host, port, method, path}` goes to
//!   [`EgressGate::decide`]; a `git-receive-pack` push adds one `git_push` per ref (with
//!   `force` and `new_branch`), a registry upload adds a `publish`, an injected credential a
//!   `secret_use`. A refusal answers `403` with the policy and a reason in the body and in the
//!   `x-remit-policy` / `x-remit-denied` headers (git pushes are refused per ref, in git's
//!   own report, so `git push` prints the reason).
//! - **SSRF guard.** The proxy resolves names itself, refuses loopback, private,
//!   link-local (cloud metadata) and other special addresses unless `network.private`
//!   names them, and connects to exactly the address it checked.
//! - **Credentials.** The task holds phantoms; the proxy swaps in the real value only on
//!   requests to the credential's hosts, in the declared header, basic-auth half or query
//!   parameter, and refuses a phantom sent anywhere else.
//! - **Secrets never leave.** Request lines, headers and bodies (raw, base64, URL-encoded,
//!   hex, JSON-escaped; gzip bodies inflated) are searched for the real credentials and the
//!   task's other known secrets (its identity token); a hit is refused before any of the
//!   secret is forwarded.
//! - **Budgets and records.** Bytes are charged to per-task and per-host budgets; every
//!   request, tunnel, violation and dropped connection is reported to
//!   [`EgressGate::observe`].
//!
//! What it is not: not a policy engine (the gate decides), not a ledger (the gate records),
//! not a cache, and not a general-purpose proxy for other hosts' users. It keeps no state
//! between tasks: one [`Egress`] serves one task.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use remit_egress::{Egress, EgressConfig, EgressEvent, EgressGate, GateDecision, TaskCa};
//! use remit_types::effect::Effect;
//!
//! struct Gate;
//! impl EgressGate for Gate {
//!     async fn decide(&self, effect: Effect) -> GateDecision {
//!         match &effect {
//!             Effect::HttpRequest { host, .. } if host == "example.com" => GateDecision::Allow,
//!             _ => GateDecision::Deny { policy: "default".into(), reason: "not granted".into() },
//!         }
//!     }
//!     fn observe(&self, event: EgressEvent) {
//!         println!("{}", serde_json::to_string(&event).unwrap_or_default());
//!     }
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let remit = remit_types::remit::parse("[network]\nallow = [\"example.com\"]\n", "r", ".".into())?;
//! let config = EgressConfig::new(remit.remit.network.clone(), Vec::new());
//! let ca = TaskCa::generate("task-1", std::time::Duration::from_secs(3600))?;
//! let egress = Egress::new(config, ca, Arc::new(Gate))?;
//! // The supervisor creates this listener inside the task's network namespace.
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let env = egress.task_environment(listener.local_addr()?, "/etc/remit/ca.pem");
//! // ... mount env.ca_bundle at /etc/remit/ca.pem, set env.vars, start the task ...
//! egress.serve(listener).await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod body;
mod budget;
mod ca;
mod credentials;
mod deny;
mod env;
mod error;
mod events;
mod forward;
pub mod git;
mod io;
mod matcher;
mod progress;
mod proxy;
mod publish;
mod ssrf;
mod tunnel;
mod upstream;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use remit_types::effect::Effect;
use remit_types::network::Network;
use rustls::pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

pub use ca::TaskCa;
pub use credentials::{
    CredentialValue, Secret, phantom_of, read_credentials, read_credentials_with,
};
pub use deny::{DENIED_HEADER, POLICY_HEADER};
pub use env::{CA_VARIABLES, TaskEnvironment};
pub use error::{ConfigError, ServeError};
pub use events::{
    ConnectionError, Denial, EgressEvent, RequestRecord, Stage, TunnelRecord, Violation,
    ViolationKind,
};
pub use ssrf::{BoxFuture, Resolve, SystemResolver, special_range};

/// The gate's answer about one effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateDecision {
    /// Go ahead.
    Allow,
    /// Refused.
    Deny {
        /// The deciding policy's id.
        policy: String,
        /// Why, for the agent: what it may do instead.
        reason: String,
    },
}

/// What the proxy needs from the gate. The supervisor implements it over `remit-gate`:
/// `decide` runs the whole pipeline for one effect (identity, policy, approval — which may
/// wait for a human, so it may take long — and the ledger entry before the effect proceeds);
/// `observe` records what happened.
///
/// `decide` must only decide: the proxy performs the effect itself (it forwards the request,
/// the push, the upload). An error inside the gate must come back as a `Deny`.
pub trait EgressGate: Send + Sync + 'static {
    /// Decide one effect.
    fn decide(&self, effect: Effect) -> impl Future<Output = GateDecision> + Send;
    /// Decide one request or tunnel (an [`Effect::HttpRequest`]) whose outcome is reported
    /// later, once, by the [`RequestRecord`] or [`TunnelRecord`] carrying the same `id`:
    /// every allowed one is reported, sent or not. Default: [`EgressGate::decide`].
    fn decide_request(&self, id: u64, effect: Effect) -> impl Future<Output = GateDecision> + Send {
        let _ = id;
        self.decide(effect)
    }
    /// Record an event. Called on the proxy's tasks: keep it quick (queue, don't block).
    fn observe(&self, event: EgressEvent);
    /// A remit git token (`rgt_…`, a git lease's) presented on a git request to
    /// `repository` (`https://host/path`, without `.git` suffix handling): `Ok` if it may do
    /// `access` there now, else why not (the request is refused with it). Called before any
    /// byte of the request leaves. Default: no git token is valid.
    fn git_token(
        &self,
        token: &str,
        repository: &str,
        access: GitTokenAccess<'_>,
    ) -> Result<(), String> {
        let _ = (token, repository, access);
        Err("this task holds no git token remit issued".into())
    }
}

/// The certificates of a PEM file, to trust as extra roots for origins
/// ([`EgressConfig::extra_roots`]): a private CA in front of an internal registry, or a test
/// CA. A file without any certificate is an error.
pub fn read_roots(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    use rustls::pki_types::pem::PemObject as _;
    let fail = |reason: String| ConfigError::Roots {
        path: path.display().to_string(),
        reason,
    };
    let roots = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(e.to_string()))?;
    if roots.is_empty() {
        return Err(fail("no certificate in it".into()));
    }
    Ok(roots)
}

/// What a git request does with a remit git token ([`EgressGate::git_token`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitTokenAccess<'a> {
    /// Discover refs or fetch.
    Fetch,
    /// Update these refs.
    Push(&'a [String]),
}

/// The prefix of remit's git tokens.
pub const GIT_TOKEN_PREFIX: &str = "rgt_";

/// A secret the task holds in the clear and may send only to `hosts` (see
/// [`EgressConfig::bound_secrets`]).
#[derive(Clone)]
pub struct BoundSecret {
    /// A name for messages (`the git token of \`widgets\``).
    pub name: String,
    /// The value.
    pub value: Secret,
    /// Where it may go (a pattern without a port means the default ports).
    pub hosts: Vec<remit_types::network::HostPattern>,
}

impl std::fmt::Debug for BoundSecret {
    // Never the value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundSecret")
            .field("name", &self.name)
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

/// Timeouts and sizes. The defaults suit agents talking to model APIs and registries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Connections from the task at once, pass-through tunnels included (a tunnel holds its
    /// place until it closes); more are closed at accept, or refused (`503`) for a tunnel.
    /// Default: 1024.
    pub max_connections: usize,
    /// Time to send a request's headers (slow senders are cut). Default: 30 s.
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers); larger gets `431`. Default: 64 KiB.
    pub max_header_bytes: usize,
    /// Time for the task's TLS handshake, and for its first bytes after `CONNECT`.
    /// Default: 10 s.
    pub handshake_timeout: Duration,
    /// Time to resolve and connect to an origin (each address). Default: 10 s.
    pub connect_timeout: Duration,
    /// Time for an origin's response headers after the request. Default: 10 min (model
    /// APIs answer slowly).
    pub response_timeout: Duration,
    /// Longest silence inside a body or tunnel before it is cut. Default: 5 min.
    pub idle_timeout: Duration,
    /// Largest request body read whole for inspection (git pushes, registry uploads,
    /// compressed bodies); larger ones are refused. Default: 256 MiB.
    pub max_inspected_body: usize,
    /// Bytes of request bodies held for inspection at once, across every connection of the
    /// task (each counted as read, and its inflated copy while it is inspected); a request
    /// that would pass it while other bodies hold part of it gets `503` and may be retried,
    /// one it could never hold gets `413`. Bounds the memory of bodies read for inspection
    /// however many arrive together (what HTTP/2 flow control lets a connection send ahead,
    /// up to 8 MiB, is per connection). Default: 512 MiB.
    pub max_inspected_total: usize,
    /// Idle connections kept per origin for reuse. Default: 8.
    pub max_idle_per_origin: usize,
    /// Requests of the task under way at once, from their head to the end of their answer,
    /// across every connection (each may hold an origin socket and buffers); more get `503`
    /// (`egress.requests`) and may be retried. Default: 256.
    pub max_requests: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(30),
            max_header_bytes: 64 * 1024,
            handshake_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(600),
            idle_timeout: Duration::from_secs(300),
            max_inspected_body: 256 << 20,
            max_inspected_total: 512 << 20,
            max_idle_per_origin: 8,
            max_requests: 256,
        }
    }
}

/// Everything one task's proxy needs besides its CA.
#[derive(Clone)]
pub struct EgressConfig {
    /// The remit's `[network]` section (hosts, rules, private addresses, tunnels, git, budgets).
    pub network: Network,
    /// Credentials with their real values and phantoms ([`read_credentials`]).
    pub credentials: Vec<CredentialValue>,
    /// Other secrets of the task that must never leave, with a name for messages: the
    /// task's identity token (`"the task's identity token"`), later the scanner's findings.
    /// Default: none.
    pub known_secrets: Vec<(String, Secret)>,
    /// Secrets the task holds and may send, but only to some hosts: a git lease's token goes
    /// to its repository's host and is refused (`egress.dlp`) anywhere else. Default: none.
    pub bound_secrets: Vec<BoundSecret>,
    /// Which arguments a `publish` effect carries: the ones the remit declares for
    /// `[actions.publish]` (of `registry`, `operation`, `package`, `version`). The gate
    /// refuses arguments a remit does not declare. Default: none.
    pub publish_args: Vec<String>,
    /// Trust the host's root certificates for origins. Default: `true`.
    pub host_roots: bool,
    /// More roots to trust for origins (a test CA). Default: none.
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// Name resolution. Default: the system resolver.
    pub resolver: Arc<dyn Resolve>,
    /// Timeouts and sizes.
    pub limits: Limits,
}

impl std::fmt::Debug for EgressConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressConfig")
            .field("network", &self.network)
            .field("credentials", &self.credentials)
            .field(
                "known_secrets",
                &self
                    .known_secrets
                    .iter()
                    .map(|(n, _)| n)
                    .collect::<Vec<_>>(),
            )
            .field(
                "bound_secrets",
                &self
                    .bound_secrets
                    .iter()
                    .map(|b| (&b.name, &b.hosts))
                    .collect::<Vec<_>>(),
            )
            .field("publish_args", &self.publish_args)
            .field("host_roots", &self.host_roots)
            .field("extra_roots", &self.extra_roots.len())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl EgressConfig {
    /// A configuration with the defaults for everything but the network section and the
    /// credentials.
    pub fn new(network: Network, credentials: Vec<CredentialValue>) -> EgressConfig {
        EgressConfig {
            network,
            credentials,
            known_secrets: Vec::new(),
            bound_secrets: Vec::new(),
            publish_args: Vec::new(),
            host_roots: true,
            extra_roots: Vec::new(),
            resolver: Arc::new(SystemResolver),
            limits: Limits::default(),
        }
    }
}

/// State shared by every connection of one task's proxy.
pub(crate) struct Shared<G> {
    pub(crate) gate: Arc<G>,
    pub(crate) network: Network,
    pub(crate) publish_args: Vec<String>,
    pub(crate) resolver: Arc<dyn Resolve>,
    pub(crate) limits: Limits,
    pub(crate) tls: ca::Tls,
    pub(crate) matcher: Arc<matcher::Matcher>,
    pub(crate) publish: publish::Endpoints,
    pub(crate) budgets: budget::Budgets,
    pub(crate) pool: upstream::Pool,
    pub(crate) connections: Arc<Semaphore>,
    /// The task's requests under way ([`Limits::max_requests`]).
    pub(crate) requests: Arc<Semaphore>,
    /// Bytes of request bodies held for inspection: [`Limits::max_inspected_total`].
    pub(crate) inspecting: Arc<Semaphore>,
    pub(crate) next_id: AtomicU64,
    /// Commits seen in this task's pushes (id → parents), to prove fast-forwards.
    pub(crate) commits: Mutex<git::PackCommits>,
    tasks: Mutex<JoinSet<()>>,
    stop: watch::Sender<bool>,
}

impl<G: EgressGate> Shared<G> {
    /// Run `future` as part of this proxy: [`Egress::shutdown`] ends it. Once the proxy is
    /// shutting down, `future` is dropped instead (checked under the same lock as the
    /// shutdown takes, so nothing slips in between).
    pub(crate) fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        if *self.stop.borrow() {
            return;
        }
        while tasks.try_join_next().is_some() {}
        tasks.spawn(future);
    }
}

/// Runs what hyper's HTTP/2 connections spawn (one future per stream) among the proxy's own
/// tasks, so that [`Egress::shutdown`] ends them, and waits for their records, too.
pub(crate) struct Spawner<G>(pub(crate) Arc<Shared<G>>);

impl<G> Clone for Spawner<G> {
    fn clone(&self) -> Self {
        Spawner(Arc::clone(&self.0))
    }
}

impl<G, F> hyper::rt::Executor<F> for Spawner<G>
where
    G: EgressGate,
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        self.0.spawn(async move {
            let _ = future.await;
        });
    }
}

/// One task's egress proxy.
pub struct Egress<G> {
    shared: Arc<Shared<G>>,
}

impl<G> Clone for Egress<G> {
    fn clone(&self) -> Self {
        Egress {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<G> std::fmt::Debug for Egress<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Egress").finish_non_exhaustive()
    }
}

impl<G: EgressGate> Egress<G> {
    /// Build the proxy: TLS configurations, the secret matcher, the publish table.
    pub fn new(config: EgressConfig, ca: TaskCa, gate: Arc<G>) -> Result<Egress<G>, ConfigError> {
        config
            .network
            .validate()
            .map_err(|issue| ConfigError::Network(issue.message))?;
        let tls = ca::Tls::new(ca, config.host_roots, &config.extra_roots)?;
        let matcher = Arc::new(matcher::Matcher::new(
            config.credentials,
            &config.known_secrets,
            config.bound_secrets,
        )?);
        let (stop, _) = watch::channel(false);
        Ok(Egress {
            shared: Arc::new(Shared {
                gate,
                budgets: budget::Budgets::new(&config.network.budget),
                network: config.network,
                publish_args: config.publish_args,
                resolver: config.resolver,
                connections: Arc::new(Semaphore::new(config.limits.max_connections.max(1))),
                requests: Arc::new(Semaphore::new(config.limits.max_requests.max(1))),
                inspecting: Arc::new(Semaphore::new(
                    config
                        .limits
                        .max_inspected_total
                        .clamp(1, Semaphore::MAX_PERMITS),
                )),
                pool: upstream::Pool::new(config.limits.max_idle_per_origin),
                limits: config.limits,
                tls,
                matcher,
                publish: publish::Endpoints::builtin()?,
                next_id: AtomicU64::new(1),
                commits: Mutex::new(git::PackCommits::default()),
                tasks: Mutex::new(JoinSet::new()),
                stop,
            }),
        })
    }

    /// Accept the task's connections on `listener` until [`Egress::shutdown`]. The
    /// supervisor creates the listener inside the task's network namespace (so the task
    /// reaches it on its own loopback); connections to origins are made from the namespace
    /// this process runs in.
    pub async fn serve(&self, listener: TcpListener) -> Result<(), ServeError> {
        let mut stop = self.shared.stop.subscribe();
        loop {
            let accepted = tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => return Ok(()),
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of descriptors or a connection reset before accept: report, wait a
                    // moment, keep serving. Anything else ends the listener.
                    use std::io::ErrorKind::*;
                    let transient = matches!(
                        error.kind(),
                        ConnectionAborted
                            | ConnectionReset
                            | Interrupted
                            | WouldBlock
                            | OutOfMemory
                    ) || error
                        .raw_os_error()
                        .is_some_and(|c| c == 23 || c == 24 || c == 105);
                    self.shared
                        .gate
                        .observe(EgressEvent::ConnectionError(ConnectionError {
                            peer: listener.local_addr().ok(),
                            host: None,
                            stage: Stage::Accept,
                            error: error.to_string(),
                        }));
                    if transient {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    return Err(ServeError::Accept(error));
                }
            };
            let Ok(permit) = Arc::clone(&self.shared.connections).try_acquire_owned() else {
                self.shared
                    .gate
                    .observe(EgressEvent::ConnectionError(ConnectionError {
                        peer: Some(peer),
                        host: None,
                        stage: Stage::Accept,
                        error: format!(
                            "more than {} connections at once; connection closed",
                            self.shared.limits.max_connections
                        ),
                    }));
                drop(stream);
                continue;
            };
            let shared = Arc::clone(&self.shared);
            self.shared.spawn(async move {
                proxy::client(shared, stream, peer, permit).await;
            });
        }
    }

    /// Stop accepting and end every connection, tunnel and origin connection of this proxy.
    pub async fn shutdown(&self) {
        let mut tasks = {
            let mut tasks = self.shared.tasks.lock().unwrap_or_else(|p| p.into_inner());
            self.shared.stop.send_replace(true);
            std::mem::take(&mut *tasks)
        };
        tasks.abort_all();
        // Wait for the aborted work to be dropped, so that every request and tunnel still
        // open has reported how it ended (to the task's end) before this returns. Bounded:
        // an abort takes effect at the next poll.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
    }

    /// The task's environment and CA bundle for a proxy reached at `proxy` (an address on
    /// the task's loopback), with the bundle mounted at `ca_bundle_path` inside the task.
    pub fn task_environment(&self, proxy: SocketAddr, ca_bundle_path: &str) -> TaskEnvironment {
        env::task_environment(
            &self.shared.tls,
            &self.shared.matcher.credentials,
            proxy,
            ca_bundle_path,
        )
    }

    /// The task CA's certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        self.shared.tls.ca().cert_pem()
    }

    /// Bytes the task has moved so far (request and response bodies, tunnels).
    pub fn bytes_used(&self) -> u64 {
        self.shared.budgets.used()
    }
}
