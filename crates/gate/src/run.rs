//! The supervisor of one task: build the sandbox, start the command, decide and record
//! every program it starts, serve the agent and control sockets, forward signals, enforce
//! the wall-clock limit and the kill switch, end the task with nothing left running and
//! everything recorded.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use remit_ledger::{Ledger, Options as LedgerOptions, SystemClock as LedgerClock};
use remit_policy::commands::{ExecFacts, is_loader, loader_target};
use remit_policy::engine::{Decision, Engine, Principal};
use remit_sandbox::host::{Readable, SignalWatch};
use remit_sandbox::{
    Bind, Event, ExecAttempt, ExecWatch, ExitStatus, Layer, Sandbox, SpawnRequest, Verdict,
};
use remit_types::effect::Effect;
use remit_types::event::{
    EndReason, EventBody, Exec, Permission, RemitRef, RunAuthorized, TaskCounts, TaskEnd,
    Verdict as EventVerdict,
};
use remit_types::network::HostPattern;
use std::collections::HashMap;
use tokio::sync::{mpsc, oneshot};

use crate::api::{self, Api};
use crate::authority::Authority;
use crate::egress::EgressAdapter;
use crate::gate::{Gate, Outcome as GateOutcome, SystemClock};
use crate::journal::{Journal, LedgerJournal, RedactingJournal};
use crate::prepare::{Prepared, RunRequest};
use crate::record::rfc3339;
use crate::registry::{AgentStatus, TaskDir, TaskInfo, agent_record, run_dir};
use remit_egress::{CredentialValue, Egress, EgressConfig, Secret, TaskCa, read_credentials_with};
use remit_identity::TaskIdentityRequest;

/// How the task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The command exited with a code.
    Exited(i32),
    /// A signal killed the command.
    Signaled(i32),
    /// The wall-clock limit was reached and everything was killed.
    TimedOut(Duration),
    /// The kill switch stopped the task.
    Killed(String),
    /// The command was refused by the remit before it started.
    Denied,
    /// The command could not start (errno).
    NotStarted(i32),
    /// A task without a command of its own ended (its server stopped).
    Ended,
}

/// What a finished run reports.
#[derive(Debug)]
pub struct RunReport {
    /// How it ended.
    pub outcome: Outcome,
    /// Programs started (including the command).
    pub commands: u64,
    /// Refusals, as one line each.
    pub denied: Vec<String>,
    /// Whether the memory limit killed something.
    pub oom_killed: bool,
    /// Layers skipped in degraded mode.
    pub degraded: Vec<(Layer, String)>,
    /// The signed receipt of the task.
    pub receipt: Option<PathBuf>,
    /// The JSON-lines export written for `--log`.
    pub log: Option<PathBuf>,
    /// Wall time.
    pub duration: Duration,
    /// A recording failure, if any (the run itself completed).
    pub record_error: Option<String>,
}

/// How often a running task's leases are read again from the vault's database.
const LEASE_POLL: Duration = Duration::from_secs(1);

/// A run that could not happen. One line each.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The sandbox could not be built.
    #[error(transparent)]
    Sandbox(#[from] remit_sandbox::Error),
    /// The remit's policy could not be loaded.
    #[error(transparent)]
    Policy(#[from] remit_policy::engine::PolicyError),
    /// The ledger could not be opened.
    #[error("cannot open the ledger: {0}")]
    Ledger(String),
    /// The agent may not start tasks.
    #[error("agent `{0}` is {1}{2}; it cannot start tasks")]
    Agent(String, &'static str, String),
    /// The task could reach secrets more severe than its remit accepts.
    #[error(
        "the task could reach {0} secret{1} at or above `{2}` (secrets.refuse_at), e.g. {3} ({4}); remove them from the workspace or hide them (filesystem.hidden)"
    )]
    Secrets(usize, &'static str, String, String, String),
    /// The task's identity or credentials could not be made.
    #[error("{0}")]
    Credentials(String),
    /// Something on the host failed.
    #[error("{0}")]
    Host(String),
}

impl RunError {
    /// Whether the error is a refusal (exit code 1) rather than a failure (2).
    pub fn is_denial(&self) -> bool {
        matches!(self, RunError::Agent(..) | RunError::Secrets(..))
    }
}

/// Where the supervisor keeps things and what it mounts.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// `$REMIT_HOME`.
    pub home: PathBuf,
    /// Write the task's events as JSON lines here at the end.
    pub log: Option<PathBuf>,
    /// The `remit` binary to mount into the task (for `remit act`).
    pub remit_binary: Option<PathBuf>,
    /// Print notices (pending approvals) on standard error.
    pub notices: bool,
    /// Tasks whose supervisor died, whose repositories were put back before this one was
    /// prepared ([`crate::recovery::put_back_crashed`]): their ends are recorded.
    pub recovered: Vec<crate::recovery::Recovered>,
}

/// Create `path` empty, readable by its owner only, owned by the task's host uid when there is
/// one (the task reads it through a read-only bind; remit fills it in later).
fn private_file(path: &Path, task_uid: Option<u32>) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    if let Some(uid) = task_uid {
        std::os::unix::fs::chown(path, Some(uid), Some(uid))?;
    }
    Ok(())
}

/// Write `bytes` into the existing file `path` (same inode: a bind of it sees the content).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)?;
    file.write_all(bytes)
}

fn host_err(what: &str, e: impl std::fmt::Display) -> RunError {
    RunError::Host(format!("{what}: {e}"))
}

fn agent_name(request: &RunRequest) -> String {
    request
        .remit
        .remit
        .agent
        .name
        .clone()
        .unwrap_or_else(|| "anonymous".into())
}

fn check_agent(home: &Path, name: &str) -> Result<(), RunError> {
    match agent_record(home, name) {
        Ok(Some(record)) if record.status != AgentStatus::Active => Err(RunError::Agent(
            name.to_owned(),
            if record.status == AgentStatus::Suspended {
                "suspended"
            } else {
                "revoked"
            },
            record.reason.map(|r| format!(" ({r})")).unwrap_or_default(),
        )),
        Ok(_) => Ok(()),
        Err(e) => Err(host_err(
            &format!("cannot read the status of agent `{name}`"),
            e,
        )),
    }
}

fn permissions(request: &RunRequest, prepared: &Prepared) -> Vec<Permission> {
    let spec = &prepared.spec;
    let mut out = vec![Permission {
        kind: "filesystem.write".into(),
        target: spec.workspace.display().to_string(),
        condition: None,
    }];
    for p in &spec.read_write {
        out.push(Permission {
            kind: "filesystem.write".into(),
            target: p.display().to_string(),
            condition: None,
        });
    }
    for p in &spec.read_only {
        out.push(Permission {
            kind: "filesystem.read".into(),
            target: p.display().to_string(),
            condition: None,
        });
    }
    let commands = &request.remit.remit.commands;
    out.push(Permission {
        kind: "command".into(),
        target: "*".into(),
        condition: Some(format!("default {:?}", commands.default).to_lowercase()),
    });
    for (section, rules) in [
        ("allow", &commands.allow),
        ("prompt", &commands.prompt),
        ("forbid", &commands.forbid),
    ] {
        for rule in rules {
            out.push(Permission {
                kind: format!("command.{section}"),
                target: rule.to_string(),
                condition: None,
            });
        }
    }
    for (kind, grant) in &request.remit.remit.actions {
        let mut conditions = Vec::new();
        if let Some(q) = grant.quota {
            conditions.push(format!("quota={q}"));
        }
        if grant.approve.is_some() {
            conditions.push("approval".to_owned());
        }
        if let Some(w) = &grant.when {
            conditions.push(format!("when {w}"));
        }
        out.push(Permission {
            kind: format!("action.{kind}"),
            target: kind.clone(),
            condition: (!conditions.is_empty()).then(|| conditions.join(", ")),
        });
    }
    for port in &spec.listen_ports {
        out.push(Permission {
            kind: "network.listen".into(),
            target: format!("127.0.0.1:{port}"),
            condition: None,
        });
    }
    out
}

/// Run a prepared task to its end: its command in the task, the task ending with it.
pub fn run(
    request: &RunRequest,
    prepared: Prepared,
    options: &RunOptions,
) -> Result<RunReport, RunError> {
    let mut task = Task::start(request, prepared, options)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| host_err("cannot start the supervisor's runtime", e))?;
    let outcome = runtime.block_on(task.supervise(true, None));
    task.end(outcome)
}

/// A running task: its sandbox, gate, ledger, sockets and egress proxy. Started with
/// [`Task::start`], driven by [`Task::supervise`] (inside a tokio runtime), ended with
/// [`Task::finish`]. Other components (an MCP server, code mode) start programs in it
/// through a [`TaskClient`].
pub struct Task {
    task: String,
    options: RunOptions,
    started: Instant,
    sandbox: Sandbox,
    signals: SignalWatch,
    agent_listener: Option<std::os::unix::net::UnixListener>,
    control_listener: Option<std::os::unix::net::UnixListener>,
    api: Arc<Api>,
    kill_rx: Option<mpsc::UnboundedReceiver<String>>,
    gate: Arc<Gate>,
    journal: Arc<LedgerJournal>,
    record: Arc<dyn Journal>,
    egress: Option<(Egress<EgressAdapter>, Arc<EgressAdapter>)>,
    dir: Option<TaskDir>,
    degraded: Vec<(Layer, String)>,
    commands_tx: mpsc::UnboundedSender<TaskCommand>,
    pauser: Pauser,
    commands_rx: Option<mpsc::UnboundedReceiver<TaskCommand>>,
    supervision: Supervision,
    baseline: crate::changes::Baseline,
    /// Held while the task runs in a git repository (see `lock_repository`).
    _repository_lock: Option<std::fs::File>,
    /// What to put back should the supervisor die, removed once the end has put it back.
    pending: Option<crate::recovery::Pending>,
    authority: crate::authority::Authority,
}

/// The lock of the repository whose common git directory is `common`, held for a task's
/// whole run in `$REMIT_HOME/locks` (where no task sees it); refused when another task holds
/// it.
fn lock_repository(home: &Path, common: &Path) -> Result<std::fs::File, RunError> {
    // Another start may hold it for a moment, putting back what a dead task left there.
    let begun = Instant::now();
    let mut lock = try_lock_repository(home, common)?;
    while lock.is_none() && begun.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(20));
        lock = try_lock_repository(home, common)?;
    }
    lock.ok_or_else(|| RunError::Host(format!(
        "another task is running in the repository of `{}`; tasks in one repository run one at a time (what one leaves in the git directory must not become what is put back after the other)",
        common.display()
    )))
}

/// [`lock_repository`], `None` when another task holds it.
pub(crate) fn try_lock_repository(
    home: &Path,
    common: &Path,
) -> Result<Option<std::fs::File>, RunError> {
    use sha2::Digest as _;
    let dir = home.join("locks");
    std::fs::create_dir_all(&dir)
        .map_err(|e| RunError::Host(format!("cannot create `{}`: {e}", dir.display())))?;
    // The directory itself, not its spelling: a bind mount shows one repository under two
    // canonical paths.
    let key = match std::fs::metadata(common) {
        Ok(meta) => {
            use std::os::unix::fs::MetadataExt as _;
            sha2::Sha256::digest(format!("dev {} ino {}", meta.dev(), meta.ino()))
        }
        Err(_) => sha2::Sha256::digest(common.as_os_str().as_encoded_bytes()),
    };
    let name: String = key.iter().take(16).map(|b| format!("{b:02x}")).collect();
    let path = dir.join(format!("repository-{name}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| RunError::Host(format!("cannot open `{}`: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(RunError::Host(format!(
            "cannot lock `{}`: {e}",
            path.display()
        ))),
    }
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task").field("task", &self.task).finish()
    }
}

impl Task {
    /// Build the task: check the agent, load the policy, create the sockets, the egress
    /// proxy, the sandbox and the ledger. Must be called from a single-threaded process
    /// (before any runtime or ledger thread exists).
    pub fn start(
        request: &RunRequest,
        prepared: Prepared,
        options: &RunOptions,
    ) -> Result<Task, RunError> {
        let started = Instant::now();
        let mut prepared = prepared;
        let task = request.task.to_string();
        let agent = agent_name(request);
        let home = &options.home;
        // Signals first, so a Ctrl-C during setup is seen rather than killing us half-way.
        let signals = SignalWatch::new(&[SIGINT, SIGTERM, SIGHUP, SIGQUIT])
            .map_err(|e| host_err("cannot watch signals", e))?;
        // A task that takes the terminal cannot stop the supervisor through it.
        remit_sandbox::host::ignore_terminal_stops();
        check_agent(home, &agent)?;
        let engine = Engine::load_cached(&request.remit, &home.join("cache").join("policy"))?;
        crate::timing::mark("policy loaded");

        // The task's directory and sockets, before the sandbox (which mounts the agent socket).
        let run = run_dir(&request.host_env, home);
        let dir = TaskDir::create(&run, &task)
            .map_err(|e| host_err(&format!("cannot create `{}`", run.join(&task).display()), e))?;
        let agent_path = dir.path().join("agent.sock");
        let control_path = dir.path().join("control.sock");
        let agent_listener = std::os::unix::net::UnixListener::bind(&agent_path)
            .map_err(|e| host_err("cannot create the agent socket", e))?;
        let control_listener = std::os::unix::net::UnixListener::bind(&control_path)
            .map_err(|e| host_err("cannot create the control socket", e))?;
        let owner_uid = crate::prepare::effective_uid();
        let task_uid = (owner_uid == 0).then_some(remit_sandbox::TASK_HOST_ID);
        {
            use std::os::unix::fs::PermissionsExt;
            if let Some(uid) = task_uid {
                std::os::unix::fs::chown(&agent_path, Some(uid), Some(uid))
                    .map_err(|e| host_err("cannot hand the agent socket to the task", e))?;
            }
            std::fs::set_permissions(&agent_path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| host_err("agent socket", e))?;
            // Authorised per request by peer uid; reachable by the humans who may approve.
            std::fs::set_permissions(&control_path, std::fs::Permissions::from_mode(0o666))
                .map_err(|e| host_err("control socket", e))?;
        }
        prepared.spec.binds.push(Bind {
            source: agent_path.clone(),
            target: PathBuf::from("/run/remit/agent.sock"),
            writable: true,
        });
        let mut path_var = String::from("/run/remit/bin");
        if let Some(binary) = &options.remit_binary {
            prepared.spec.binds.push(Bind {
                source: binary.clone(),
                target: PathBuf::from("/run/remit/bin/remit"),
                writable: false,
            });
        }
        for (k, v) in prepared.spec.env.iter_mut() {
            if k == "PATH" {
                path_var.push(':');
                path_var.push_str(v);
                *v = path_var.clone();
            }
        }
        prepared
            .spec
            .env
            .push(("REMIT_SOCKET".into(), "/run/remit/agent.sock".into()));

        // Files the task's tree mounts now and remit fills once the sandbox is forked (same
        // inode, so what is written later is what the task sees): its identity token, and
        // the egress proxy's CA bundle when the remit grants any network access.
        let identity_path = dir.path().join("identity.jwt");
        private_file(&identity_path, task_uid)
            .map_err(|e| host_err("cannot create the task's identity file", e))?;
        prepared.spec.binds.push(Bind {
            source: identity_path.clone(),
            target: PathBuf::from("/run/remit/identity.jwt"),
            writable: false,
        });
        // A PostgreSQL lease whose server is reached through its socket directory: that
        // directory, bound as it is (not idmapped: connecting needs write access to the
        // socket, which the kernel refuses through an idmapped mount when the socket's owner
        // is not mapped), so the leased role's connection string works inside.
        for grant in request.remit.remit.credentials.postgres.values() {
            if let Some(dir) = grant.host.as_deref().map(Path::new)
                && dir.is_absolute()
                && dir.is_dir()
                && !prepared.spec.binds.iter().any(|b| b.target == dir)
            {
                prepared.spec.binds.push(Bind {
                    source: dir.to_path_buf(),
                    target: dir.to_path_buf(),
                    writable: true,
                });
            }
        }
        let network = &request.remit.remit.network;
        let wants_egress = !network.allow.is_empty()
            || !network.rules.is_empty()
            || !network.credentials.is_empty();
        let bundle_path = dir.path().join("ca.pem");
        if wants_egress {
            std::fs::write(&bundle_path, b"")
                .map_err(|e| host_err("cannot create the task's CA bundle", e))?;
            prepared.spec.binds.push(Bind {
                source: bundle_path.clone(),
                target: PathBuf::from("/run/remit/ca.pem"),
                writable: false,
            });
            prepared.spec.proxy_port = Some(PROXY_PORT);
        }
        crate::timing::mark("sockets ready");

        // Which secrets the task can reach, before anything of it exists.
        let secrets = &request.remit.remit.secrets;
        let mut prescan = if secrets.scan {
            let mut roots = vec![prepared.spec.workspace.clone()];
            roots.extend(prepared.spec.read_only.iter().cloned());
            roots.extend(prepared.spec.read_write.iter().cloned());
            let key = {
                use sha2::{Digest, Sha256};
                let digest = Sha256::digest(
                    roots
                        .iter()
                        .map(|r| r.to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join("\0")
                        .as_bytes(),
                );
                digest
                    .iter()
                    .take(16)
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            };
            crate::secrets::prescan(
                &roots,
                &prepared.spec.hidden,
                &home.join("cache").join("scan").join(format!("{key}.json")),
            )
        } else {
            crate::secrets::Prescan::default()
        };
        if let (Some(limit), Some(found)) = (secrets.refuse_at, prescan.max_level())
            && found >= limit
        {
            let level = |s: &str| match s {
                "critical" => remit_types::remit::SecretLevel::Critical,
                "high" => remit_types::remit::SecretLevel::High,
                "medium" => remit_types::remit::SecretLevel::Medium,
                _ => remit_types::remit::SecretLevel::Low,
            };
            let over: Vec<&crate::secrets::Reachable> = prescan
                .reachable
                .iter()
                .filter(|r| level(&r.severity) >= limit)
                .collect();
            return Err(RunError::Secrets(
                over.len(),
                if over.len() == 1 { "" } else { "s" },
                format!("{limit:?}").to_lowercase(),
                over.first()
                    .map(|r| format!("`{}`", r.location))
                    .unwrap_or_default(),
                over.first().map(|r| r.rule.clone()).unwrap_or_default(),
            ));
        }

        crate::timing::mark("secrets pre-scanned");
        // The workspace as the task finds it, to tell afterwards what it changed.
        let workspace = prepared.spec.workspace.clone();
        let baseline = match crate::changes::Baseline::git_with(
            &workspace,
            prepared.submodules.take(),
        ) {
            Some(git) => git,
            None if prepared.spec.git.is_some() => {
                // A repository whose layout cannot be recorded could not be put back after
                // the task: not run in.
                return Err(RunError::Host(format!(
                    "the repository in `{}` cannot be read as remit records it before a task (a pointer file or an included configuration that is not a plain file?); look at it before running a task in it",
                    workspace.display()
                )));
            }
            None if secrets.scan => crate::changes::Baseline::from_listing(
                &workspace,
                std::mem::take(&mut prescan.listing),
                prescan.truncated,
            ),
            None => crate::changes::Baseline::capture(&workspace),
        };
        // One task at a time in a repository: what one task leaves in the git directory would
        // be the next one's "before", put back after it; and a filter one task configures
        // could reach the other's clean-up.
        let repository_lock = match baseline.common_dir() {
            Some(common) => Some(lock_repository(home, common)?),
            None => None,
        };
        // A record that could not be read may be this repository's: what a dead task planted
        // would become this task's "before". Refused until someone looks.
        if baseline.common_dir().is_some()
            && let Some(r) = options.recovered.iter().find(|r| r.unresolved)
        {
            return Err(RunError::Host(format!(
                "{}; no task runs in a git repository until it is resolved",
                r.notes.join("; ")
            )));
        }
        // Should remit be killed during the task, the next start puts the repository back.
        let pending = crate::recovery::remember(home, &task, &baseline).map_err(|e| {
            RunError::Host(format!(
                "cannot record what to put back in the repository should remit be killed: {e}"
            ))
        })?;
        let starting = Sandbox::start(&prepared.spec)?;
        crate::timing::mark("sandbox forked");
        // While the init builds the task's tree: threads are fine from here on.
        let redactor = request
            .remit
            .remit
            .secrets
            .redact
            .then(crate::secrets::LazyScanner::start);
        let ledger = Ledger::open_home(home, Arc::new(LedgerClock), LedgerOptions::default())
            .map_err(|e| RunError::Ledger(e.to_string()))?;
        crate::timing::mark("ledger open");
        let requester = crate::prepare::requester(&request.host_env);
        let owner = request
            .remit
            .remit
            .agent
            .owner
            .clone()
            .unwrap_or_else(|| requester.clone());
        let lifetime = prepared.wall.unwrap_or(Duration::from_secs(24 * 3600));
        let mut authority = Authority::begin(home, &ledger, &request.remit.remit, &agent, &task)?;
        // Tasks whose supervisor died get their end.
        let problems = crate::recovery::record_ends(
            home,
            &ledger,
            &options.recovered,
            &authority.orphans,
            &task,
        );
        authority.notes.extend(problems);
        // What their host commands started outlives them: killed now.
        if !authority.orphans.is_empty() || !options.recovered.is_empty() {
            remit_sandbox::freezer::collect_dead();
        }
        crate::timing::mark("leases recovered");
        let token = authority.mint(&TaskIdentityRequest {
            agent: &agent,
            task: &task,
            owner: &owner,
            requester: &requester,
            remit_hash: &request.remit.hash_hex(),
            audience: &request.remit.remit.credentials.audience,
            lifetime,
        })?;
        write_private(&identity_path, token.expose().as_bytes())
            .map_err(|e| host_err("cannot write the task's identity token", e))?;
        prepared.spec.env.push((
            "REMIT_IDENTITY_TOKEN_FILE".into(),
            "/run/remit/identity.jwt".into(),
        ));
        prepared
            .spec
            .env
            .push(("REMIT_SPIFFE_ID".into(), token.spiffe_id.to_string()));
        // A lease lives as long as the task may (its wall-clock limit, else the agent's TTL),
        // else one hour, as documented: a supervisor killed outright leaves nothing valid for
        // longer than that.
        let leases = authority.lease(
            &request.remit.remit,
            prepared.wall.unwrap_or(Duration::from_secs(3600)),
        )?;
        crate::timing::mark("identity minted");
        // Values the task's output and records must never show.
        let mut known: Vec<(String, Vec<u8>)> = vec![(
            "the task's identity token".into(),
            token.expose().as_bytes().to_vec(),
        )];
        // Git tokens travel to their repository's host and nowhere else; every other value
        // never leaves. All are redacted from output and records.
        let git_hosts: Vec<(String, String, Option<HostPattern>)> = request
            .remit
            .remit
            .credentials
            .git
            .iter()
            .map(|(n, g)| (n.clone(), g.env_var(n), repository_host(&g.repository)))
            .collect();
        let mut bound: Vec<remit_egress::BoundSecret> = Vec::new();
        let mut redact_only: Vec<(String, Vec<u8>)> = Vec::new();
        if let Some(leases) = &leases {
            for (name, value) in &leases.env {
                prepared.spec.env.retain(|(k, _)| k != name);
                prepared.spec.env.push((
                    name.clone(),
                    String::from_utf8_lossy(value.expose()).into_owned(),
                ));
                match git_hosts.iter().find(|(_, var, _)| var == name) {
                    Some((lease, _, host)) => {
                        bound.push(remit_egress::BoundSecret {
                            name: format!("the git token of `{lease}`"),
                            value: Secret::new(value.expose().to_vec()),
                            // A repository whose host cannot be read gets no host at all.
                            hosts: host.iter().cloned().collect(),
                        });
                        redact_only.push((name.clone(), value.expose().to_vec()));
                    }
                    None => known.push((name.clone(), value.expose().to_vec())),
                }
            }
        }

        // The egress proxy: bound to the gate once the gate exists.
        let egress = if wants_egress {
            let adapter = Arc::new(EgressAdapter::default());
            if let Some(leases) = &leases {
                adapter.set_leases(Arc::clone(leases));
            }
            if let Some(vault) = &authority.vault {
                adapter.set_git_tokens(Arc::clone(vault), &task);
            }
            let validity = lifetime + Duration::from_secs(300);
            let ca = TaskCa::generate(&task, validity)
                .map_err(|e| host_err("cannot make the task's CA", e))?;
            let env_map: std::collections::BTreeMap<String, String> =
                request.host_env.iter().cloned().collect();
            let host_home = request
                .host_env
                .iter()
                .find(|(k, _)| k == "HOME")
                .map(|(_, v)| PathBuf::from(v));
            let vault = authority.vault.clone();
            let mut credentials = read_credentials_with(
                network,
                &env_map,
                &request.remit.base_dir,
                host_home.as_deref(),
                &|name: &str| match &vault {
                    Some(v) => v
                        .get(name)
                        .map(|value| Secret::new(value.expose().to_vec()))
                        .map_err(|e| e.to_string()),
                    None => Err(format!("the vault holds no secret `{name}`")),
                },
            )
            .map_err(|e| host_err("cannot read the remit's credentials", e))?;
            if let Some(leases) = &leases {
                for injected in &leases.injected {
                    let placement = injected.inject.placement().ok_or_else(|| {
                        host_err(
                            "cannot inject a credential",
                            format!("`{}` says nowhere to put it", injected.name),
                        )
                    })?;
                    credentials.push(
                        CredentialValue::new(
                            &injected.name,
                            injected.env.clone(),
                            Secret::new(injected.value.expose().to_vec()),
                            injected.inject.hosts.clone(),
                            placement,
                        )
                        .map_err(|e| host_err("cannot inject a credential", e))?,
                    );
                }
            }
            let mut config = EgressConfig::new(network.clone(), credentials);
            // Roots to trust for origins besides the host's: a private CA (the host
            // operator's setting, never the task's).
            if let Some((_, roots)) = request
                .host_env
                .iter()
                .find(|(k, v)| k == "REMIT_EGRESS_ROOTS" && !v.is_empty())
            {
                config.extra_roots = remit_egress::read_roots(Path::new(roots))
                    .map_err(|e| host_err("REMIT_EGRESS_ROOTS", e))?;
            }
            config.known_secrets = known
                .iter()
                .map(|(name, value)| (name.clone(), Secret::new(value.clone())))
                .collect();
            config.bound_secrets = std::mem::take(&mut bound);
            known.extend(
                config
                    .credentials
                    .iter()
                    .map(|c| (c.name.clone(), c.real.expose().to_vec())),
            );
            config.publish_args = request
                .remit
                .remit
                .actions
                .get("publish")
                .map(|g| g.args.clone())
                .unwrap_or_default();
            let proxy = Egress::new(config, ca, Arc::clone(&adapter))
                .map_err(|e| host_err("cannot start the egress proxy", e))?;
            let environment = proxy.task_environment(
                std::net::SocketAddr::from(([127, 0, 0, 1], PROXY_PORT)),
                "/run/remit/ca.pem",
            );
            std::fs::write(&bundle_path, &environment.ca_bundle)
                .map_err(|e| host_err("cannot write the task's CA bundle", e))?;
            for (name, value) in environment.vars {
                prepared.spec.env.retain(|(k, _)| *k != name);
                prepared.spec.env.push((name, value));
            }
            Some((proxy, adapter))
        } else {
            None
        };
        if let Some(redactor) = &redactor {
            let values: Vec<Vec<u8>> = known
                .into_iter()
                .chain(redact_only)
                .map(|(_, v)| v)
                .collect();
            redactor.set_known(&values);
        }
        crate::timing::mark("egress ready");

        let mut sandbox = starting.ready()?;
        crate::timing::mark("sandbox ready");
        let degraded: Vec<(Layer, String)> = sandbox.skipped().to_vec();
        let task_pidns = std::fs::metadata(format!("/proc/{}/ns/pid", sandbox.init_pid()))
            .ok()
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m));
        let info = TaskInfo {
            task: task.clone(),
            agent: agent.clone(),
            owner: owner.clone(),
            requester: requester.clone(),
            remit: request.remit.origin.clone(),
            remit_hash: request.remit.hash_hex(),
            workspace: prepared.spec.workspace.display().to_string(),
            command: request.command.clone(),
            supervisor_pid: std::process::id(),
            init_pid: sandbox.init_pid(),
            started: rfc3339(SystemTime::now()),
        };
        dir.write_info(&info)
            .map_err(|e| host_err("cannot write task.json", e))?;
        // A suspension that raced with our start sees task.json now, or we see it here.
        check_agent(home, &agent)?;
        if let Some(vault) = &authority.vault {
            vault.admit(&agent).map_err(|e| match e {
                remit_vault::VaultError::AgentRefused {
                    name,
                    status,
                    reason,
                } => RunError::Agent(name, status, reason),
                other => RunError::Credentials(other.to_string()),
            })?;
            let _ = vault.task_started(&agent, &task, SystemTime::now());
        }
        if options.notices {
            for note in &authority.notes {
                eprintln!("remit: warning: {note}");
            }
        }
        let journal = Arc::new(LedgerJournal::new(ledger, &task, &agent));
        let record: Arc<dyn Journal> = match &redactor {
            Some(r) => Arc::new(RedactingJournal::new(Arc::clone(&journal), r.clone())),
            None => journal.clone(),
        };
        record.observe(EventBody::RunAuthorized(RunAuthorized {
            requester: requester.clone(),
            owner: owner.clone(),
            remit: RemitRef {
                name: request.remit.origin.clone(),
                sha256: request
                    .remit
                    .hash_hex()
                    .trim_start_matches("sha256:")
                    .to_owned(),
            },
            identity: token.spiffe_id.to_string(),
            expires: Some(rfc3339(token.expires)),
            permissions: permissions(request, &prepared),
            secrets_reachable: prescan
                .reachable
                .iter()
                .map(|r| remit_types::event::ReachableSecret {
                    rule: r.rule.clone(),
                    location: r.location.clone(),
                    fingerprint: r.fingerprint.clone(),
                })
                .chain(leases.iter().flat_map(|l| l.leases.iter()).map(|l| {
                    remit_types::event::ReachableSecret {
                        rule: format!("lease:{}", l.backend),
                        location: format!(
                            "credential `{}` ({}{})",
                            l.name,
                            l.delivery.as_str(),
                            l.destination
                                .as_deref()
                                .map(|d| format!(" toward {d}"))
                                .unwrap_or_default()
                        ),
                        fingerprint: l.id.clone(),
                    }
                }))
                .collect(),
            degraded: degraded
                .iter()
                .map(|(l, why)| format!("{l}: {why}"))
                .collect(),
        }));
        // Durable before the task runs anything (flushed in `supervise`); committed now,
        // while the rest is set up, rather than after a linger.
        journal.ledger().urge();
        let principal = Principal {
            task: task.clone(),
            agent: agent.clone(),
            owner,
            requester,
            remit: request.remit.hash_hex(),
            risk: "unrated".into(),
        };
        let approval_timeout = request
            .remit
            .remit
            .approvals
            .timeout
            .map(|t| t.0)
            .unwrap_or(Duration::from_secs(15 * 60));
        let gate = Arc::new(Gate::new(
            engine,
            principal,
            Arc::clone(&record),
            Arc::new(SystemClock),
            approval_timeout,
        ));
        if let Some((_, adapter)) = &egress {
            adapter.bind(Arc::clone(&gate), approval_timeout);
        }
        let (kill_tx, kill_rx) = mpsc::unbounded_channel();
        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        let pauser = Pauser {
            tx: commands_tx.clone(),
            one: Arc::new(tokio::sync::Mutex::new(())),
            acting: Arc::new(tokio::sync::Semaphore::new(MAX_ACTING)),
            unavailable: sandbox.freezer_dir().err(),
            review: Arc::default(),
        };
        if prepared.spec.freezable
            && let Err(why) = pauser.ready()
        {
            eprintln!("remit: warning: {why}");
        }
        let api = Arc::new(Api {
            pauser: pauser.clone(),
            gate: Arc::clone(&gate),
            info,
            remit: request.remit.remit.clone(),
            workspace: prepared.spec.workspace.clone(),
            git_dirs: baseline.git_dirs(),
            kill: kill_tx,
            owner_uid,
            task_uid,
            task_pidns,
            redactor: redactor.clone(),
            code: std::sync::OnceLock::new(),
        });

        crate::timing::mark("gate ready");
        let watch = sandbox.take_exec_watch().map(Arc::new);
        let lease_timer = match (authority.broker(), authority.leases()) {
            (Some(b), Some(l)) => Some((Arc::clone(b), Arc::clone(l))),
            _ => None,
        };
        Ok(Task {
            task,
            options: options.clone(),
            started,
            sandbox,
            signals,
            agent_listener: Some(agent_listener),
            control_listener: Some(control_listener),
            api,
            kill_rx: Some(kill_rx),
            gate: Arc::clone(&gate),
            journal,
            record,
            egress,
            dir: Some(dir),
            degraded,
            baseline,
            _repository_lock: repository_lock,
            pending,
            authority,
            commands_tx,
            pauser,
            commands_rx: Some(commands_rx),
            supervision: Supervision {
                leases: lease_timer,
                gate,
                prepared,
                watch,
                commands: 0,
                denied: Vec::new(),
                last_told: None,
                notices: options.notices,
                approval_timeout,
                announced: Arc::default(),
                pending: HashMap::new(),
                waiters: HashMap::new(),

                redactor: redactor.clone(),
                relays: Vec::new(),
            },
        })
    }

    /// Let the control socket run code-mode programs in this task (`remit code run
    /// --task`), with `runner`. Set once, before [`Task::supervise`].
    pub fn set_code_runner(&self, runner: Arc<dyn crate::api::CodeRunner>) {
        let _ = self.api.code.set((runner, self.client()));
    }

    /// A handle to start programs in the task.
    pub fn client(&self) -> TaskClient {
        TaskClient {
            redactor: self.supervision.redactor.clone(),
            tx: self.commands_tx.clone(),
            pauser: self.pauser.clone(),
            gate: Arc::clone(&self.gate),
            workspace: self.supervision.prepared.spec.workspace.clone(),
            git_dirs: self.baseline.git_dirs(),
            search: self
                .supervision
                .prepared
                .spec
                .env
                .iter()
                .find(|(k, _)| k == "PATH")
                .map(|(_, v)| v.clone())
                .unwrap_or_default(),
        }
    }

    /// The task's gate.
    pub fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }

    /// Drive the task until its command ends (`main`) or `until` resolves, the kill switch
    /// or the wall-clock limit fires, or the task's init ends.
    pub async fn supervise(
        &mut self,
        main: bool,
        until: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
    ) -> Result<Outcome, RunError> {
        let proxy = self.egress.as_ref().map(|(p, _)| p.clone());
        // The task's authorization, and the credentials issued for it, are durable before it
        // runs anything: a supervisor killed right after must not leave a task that ran with
        // no record of who authorized it.
        self.record.settle().map_err(|e| {
            RunError::Host(format!(
                "the task's authorization could not be recorded durably, so it did not run: {e}"
            ))
        })?;
        crate::timing::mark("authorization durable");
        let (Some(agent_listener), Some(control_listener), Some(kill_rx), Some(commands_rx)) = (
            self.agent_listener.take(),
            self.control_listener.take(),
            self.kill_rx.take(),
            self.commands_rx.take(),
        ) else {
            return Err(RunError::Host("the task was already supervised".into()));
        };
        let outcome = self
            .supervision
            .supervise(
                &mut self.sandbox,
                &self.signals,
                agent_listener,
                control_listener,
                Arc::clone(&self.api),
                kill_rx,
                commands_rx,
                self.started,
                proxy,
                main,
                until,
            )
            .await;
        if let Some((proxy, adapter)) = &self.egress {
            proxy.shutdown().await;
            adapter.close();
        }
        outcome
    }

    /// [`Task::finish`] whatever supervising it gave: an error still ends the task (its
    /// repository put back, its end recorded, its authority revoked) before it is returned.
    pub fn end(self, supervised: Result<Outcome, RunError>) -> Result<RunReport, RunError> {
        match supervised {
            Ok(outcome) => Ok(self.finish(outcome)),
            Err(e) => {
                let _ = self.finish(Outcome::Killed(format!("the supervisor failed: {e}")));
                Err(e)
            }
        }
    }

    /// End the task: kill whatever is left, record its end durably, write its receipt.
    pub fn finish(mut self, outcome: Outcome) -> RunReport {
        let task = self.task.clone();
        let home = self.options.home.clone();
        let options = self.options.clone();
        let journal = Arc::clone(&self.journal);
        let record = Arc::clone(&self.record);
        let gate = Arc::clone(&self.gate);
        let started = self.started;
        let degraded = self.degraded.clone();
        let sandbox = &mut self.sandbox;
        let supervision = &mut self.supervision;
        let dir = self.dir.take();
        let home = &home;
        let options = &options;
        // Whatever the command left behind (daemons, double forks) dies with the namespace.
        crate::timing::mark("command ended");
        let oom_killed = sandbox.oom_killed();
        sandbox.kill();
        sandbox.wait_until_gone();
        crate::timing::mark("sandbox gone");
        // Every writer of the relayed pipes is gone with the task: the relays drain and end.
        for relay in supervision.relays.drain(..) {
            let _ = relay.join();
        }
        gate.close("the task ended");
        let duration = started.elapsed();
        // What the task left in its workspace (it can change nothing more), recorded with
        // the task's end below.
        let mut last = Vec::with_capacity(2);
        let (changes, repository_undone) = self.baseline.changes_guarded();
        if let Some(pending) = self.pending.take() {
            pending.done();
        }
        for note in &repository_undone {
            // Paths and names in it are the task's: escaped for the terminal.
            eprintln!("remit: warning: {}", remit_types::effect::escaped(note));
        }
        let changes_unknown = match changes {
            Ok(changes) => {
                last.push(EventBody::FileChanges(changes));
                None
            }
            Err(why) => {
                if why.starts_with("the task ") {
                    // What the task did to the repository: the user must hear of it now.
                    eprintln!("remit: warning: {}", remit_types::effect::escaped(&why));
                }
                Some(format!("the workspace changes are unknown: {why}"))
            }
        };
        crate::timing::mark("workspace changes taken");
        // Its credentials and identity die with it.
        let revocation = self.authority.end(match &outcome {
            Outcome::Killed(_) | Outcome::TimedOut(_) => remit_vault::RevokeReason::Killed,
            _ => remit_vault::RevokeReason::TaskEnd,
        });
        crate::timing::mark("authority revoked");
        let counters = gate.counters();
        let (reason, exit_code, signal, detail) = match &outcome {
            Outcome::Exited(c) => (EndReason::Exited, Some(*c), None, None),
            Outcome::Signaled(s) => (EndReason::Exited, None, Some(*s), None),
            Outcome::TimedOut(limit) => (
                EndReason::TimedOut,
                None,
                None,
                Some(format!(
                    "wall-clock limit of {} reached",
                    humantime::format_duration(*limit)
                )),
            ),
            Outcome::Killed(why) => (EndReason::Killed, None, None, Some(why.clone())),
            Outcome::Ended => (
                EndReason::Exited,
                None,
                None,
                Some("the task's server stopped".into()),
            ),
            Outcome::Denied => (
                EndReason::Error,
                None,
                None,
                Some("the command was refused by the remit".into()),
            ),
            Outcome::NotStarted(e) => (
                EndReason::Error,
                None,
                None,
                Some(format!("the command could not start (errno {e})")),
            ),
        };
        last.push(EventBody::TaskEnd(TaskEnd {
            exit_code,
            signal,
            reason,
            detail: {
                let mut parts: Vec<String> = detail.into_iter().collect();
                if oom_killed {
                    parts.push("the memory limit killed a process".into());
                }
                parts.extend(changes_unknown);
                parts.extend(repository_undone);
                (!parts.is_empty()).then(|| parts.join("; "))
            },
            counts: TaskCounts {
                execs: supervision.commands,
                effects: counters.effects,
                denials: counters.denials,
                approvals: counters.approvals,
                violations: counters.violations,
            },
        }));
        // The task ends only once all its events are durable: its last ones, and the
        // checkpoint that covers them, in one commit; the ledger is closed with it.
        let mut record_error = record.finish(last).err().or_else(|| journal.failure());
        if !revocation.is_empty() {
            let text = revocation.join("; ");
            record_error = Some(match record_error {
                Some(e) => format!("{e}; {text}"),
                None => text,
            });
        }
        crate::timing::mark("events durable");
        let receipt = match journal.ledger().receipt(&task) {
            Ok(envelope) => {
                let path = home.join("receipts").join(format!("{task}.json"));
                let _ = std::fs::create_dir_all(home.join("receipts"));
                match envelope.save(&path) {
                    Ok(()) => Some(path),
                    Err(e) => {
                        record_error.get_or_insert(format!("cannot write the receipt: {e}"));
                        None
                    }
                }
            }
            Err(e) => {
                record_error.get_or_insert(format!("cannot build the receipt: {e}"));
                None
            }
        };
        crate::timing::mark("receipt written");
        let log = match &options.log {
            Some(path) => match export_task(journal.ledger(), &task, path) {
                Ok(()) => Some(path.clone()),
                Err(e) => {
                    record_error.get_or_insert(format!("cannot write `{}`: {e}", path.display()));
                    None
                }
            },
            None => None,
        };
        drop(dir);
        crate::timing::mark("run directory removed");
        RunReport {
            outcome,
            commands: supervision.commands,
            denied: std::mem::take(&mut supervision.denied),
            oom_killed,
            degraded,
            receipt,
            log,
            duration,
            record_error,
        }
    }
}

/// Write one task's events as JSON lines (the ledger's canonical JSON).
fn export_task(ledger: &Ledger, task: &str, path: &Path) -> Result<(), String> {
    use std::io::Write;
    let mut reader = ledger.reader().map_err(|e| e.to_string())?;
    let query = remit_ledger::store::Query {
        task: Some(task.to_owned()),
        ..Default::default()
    };
    let mut out = Vec::new();
    reader
        .scan(&query, &mut |row| {
            out.extend_from_slice(&row.bytes);
            out.push(b'\n');
            Ok(true)
        })
        .map_err(|e| e.to_string())?;
    let mut file = std::fs::File::create(path).map_err(|e| e.to_string())?;
    file.write_all(&out).map_err(|e| e.to_string())
}

struct Supervision {
    gate: Arc<Gate>,
    prepared: Prepared,
    watch: Option<Arc<ExecWatch>>,
    commands: u64,
    denied: Vec<String>,
    last_told: Option<(i32, String)>,
    notices: bool,
    approval_timeout: Duration,
    /// Approvals a program's `execve` waits for that were announced already, with the waiting
    /// process (its host pid): an attempt restarted after a freeze is the same process waiting
    /// for the same approval, and is not announced again; another process (a retry of the same
    /// command) is.
    announced: Arc<std::sync::Mutex<std::collections::HashSet<(i32, String)>>>,
    /// Spawns waiting for the init's answer.
    pending: HashMap<u64, oneshot::Sender<Result<Running, String>>>,
    /// Spawns whose end someone waits for.
    waiters: HashMap<u64, oneshot::Sender<ExitStatus>>,

    /// Redacts what the command prints to pipes and files.
    redactor: Option<crate::secrets::LazyScanner>,
    /// Threads copying redacted output; joined when the task ends.
    relays: Vec<std::thread::JoinHandle<()>>,
    /// The task's leases, revoked as their TTLs pass.
    leases: Option<(Arc<remit_vault::Broker>, Arc<remit_vault::TaskCredentials>)>,
}

/// The host (and port, when the URL names one) of a repository URL: `https://git.example/a/b`
/// gives `git.example`.
fn repository_host(url: &str) -> Option<HostPattern> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    // Credentials in the URL are not part of the host.
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    HostPattern::parse(&host.to_ascii_lowercase()).ok()
}

/// Copy what the task writes into a new pipe to `out` through the redactor, on a thread.
/// `None` when `out` is neither a pipe nor a file (a terminal, `/dev/null`).
/// `Ok(None)` for a terminal or a device (passed as it is); an error when the relay that
/// output to a pipe, file or socket needs cannot be set up (the task must not start then:
/// its output would go out unredacted).
fn relay(
    out: std::os::fd::BorrowedFd<'_>,
    redactor: crate::secrets::LazyScanner,
) -> std::io::Result<Option<(std::os::fd::OwnedFd, std::thread::JoinHandle<()>)>> {
    use std::io::{Read, Write};
    use std::os::unix::fs::FileTypeExt;
    let target = std::fs::File::from(out.try_clone_to_owned()?);
    let kind = target.metadata()?.file_type();
    if !(kind.is_fifo() || kind.is_file() || kind.is_socket()) {
        return Ok(None);
    }
    let (mut reader, writer) = std::io::pipe()?;
    let handle = std::thread::Builder::new()
        .name("remit-output".into())
        .spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let known = match redactor.known() {
                Ok(known) => known,
                Err(why) => {
                    // Nothing may pass unchecked: say so once, and drain the task's output
                    // so that it does not block on a full pipe.
                    let mut target = target;
                    let _ = writeln!(
                        target,
                        "[REDACTED: output withheld, the task's secrets could not be checked: {why}]"
                    );
                    while !matches!(reader.read(&mut buf), Ok(0) | Err(_)) {}
                    return;
                }
            };
            let mut sink = remit_scan::RedactingWriter::new(target, redactor.get(), known);
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if sink
                            .write_all(&buf[..n])
                            .and_then(|()| sink.flush())
                            .is_err()
                        {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            let _ = sink.finish();
        })?;
    Ok(Some((std::os::fd::OwnedFd::from(writer), handle)))
}

/// What a [`TaskClient`] asks the supervisor.
#[derive(Debug)]
enum TaskCommand {
    Spawn {
        program: PathBuf,
        argv: Vec<String>,
        cwd: PathBuf,
        stdio: [std::os::fd::OwnedFd; 3],
        reply: oneshot::Sender<Result<Running, String>>,
    },
    Signal {
        id: u64,
        signal: i32,
    },
    /// Stop every process of the task; answered once all are stopped. `hold` keeps the one
    /// pause at a time until the freeze is over, even if the pause was given up.
    Pause {
        reply: oneshot::Sender<Result<(), String>>,
        hold: Arc<tokio::sync::OwnedMutexGuard<()>>,
    },
    /// Let them go on.
    Resume,
}

/// Longest a pause waits for every process of the task to freeze.
const PAUSE_LIMIT: Duration = Duration::from_secs(5);

/// Most actions of one task doing host work (a workspace digest, a host command) at once.
pub const MAX_ACTING: usize = 4;

/// Freezes every process of a task (its freezer cgroup) while a host command works on its
/// workspace (an action's `run`): what the command finds there is then what was checked,
/// whatever the task does. One pause at a time; the task goes on when the [`Paused`] it
/// gives is dropped.
#[derive(Clone)]
pub struct Pauser {
    tx: mpsc::UnboundedSender<TaskCommand>,
    one: Arc<tokio::sync::Mutex<()>>,
    /// Actions digesting the workspace or running their host command at once.
    acting: Arc<tokio::sync::Semaphore>,
    /// Why the task cannot be frozen, if it cannot.
    unavailable: Option<String>,
    /// The approval the task is held for, while a human decides it.
    review: Arc<std::sync::Mutex<Option<String>>>,
}

impl std::fmt::Debug for Pauser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pauser").finish_non_exhaustive()
    }
}

impl Pauser {
    /// A pauser with no task behind it (an [`crate::api::Api`] served without a sandbox, in
    /// tests): every pause fails, so no action's host command runs through it.
    pub fn without_task() -> Pauser {
        let (tx, _) = mpsc::unbounded_channel();
        Pauser {
            tx,
            one: Arc::new(tokio::sync::Mutex::new(())),
            acting: Arc::new(tokio::sync::Semaphore::new(MAX_ACTING)),
            unavailable: Some("this API has no task to freeze".into()),
            review: Arc::default(),
        }
    }

    /// A slot for an action's work on the host (digesting the workspace, running its host
    /// command): at most [`MAX_ACTING`] of a task at once, whoever asks (the agent's socket,
    /// MCP, scripts); more wait.
    pub async fn acting(&self) -> Result<tokio::sync::OwnedSemaphorePermit, String> {
        Arc::clone(&self.acting)
            .acquire_owned()
            .await
            .map_err(|_| "the task has ended".to_owned())
    }

    /// Every slot of [`Self::acting`]: for an action bound to the workspace, whose host
    /// command must be the only one of the task working on it (another action's command
    /// already running would otherwise write to the workspace under it, frozen task or not).
    pub async fn acting_alone(&self) -> Result<tokio::sync::OwnedSemaphorePermit, String> {
        Arc::clone(&self.acting)
            .acquire_many_owned(MAX_ACTING as u32)
            .await
            .map_err(|_| "the task has ended".to_owned())
    }

    /// The approval the task is held (frozen) for while a human decides it, if it is.
    pub fn held_for(&self) -> Option<String> {
        self.review
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether the task can be frozen: `Err` says why not, before anything is asked for.
    pub fn ready(&self) -> Result<(), String> {
        match &self.unavailable {
            Some(why) => Err(format!(
                "this task cannot be frozen while an action's host command uses its workspace ({why}), so actions bound to the workspace cannot be performed in it"
            )),
            None => Ok(()),
        }
    }

    /// Stop every process of the task; resolves once all are stopped. `Err` when they could
    /// not all be stopped (they go on) or the task has ended.
    pub async fn pause(&self) -> Result<Paused, String> {
        // Held by the pause and by the freeze under way: a pause given up mid-freeze keeps the
        // next one waiting until its freeze (and the thaw after it) is over.
        let guard = Arc::new(Arc::clone(&self.one).lock_owned().await);
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(TaskCommand::Pause {
                reply,
                hold: Arc::clone(&guard),
            })
            .map_err(|_| "the task has ended".to_owned())?;
        // From here on the task is resumed when this is dropped, whatever the answer.
        let paused = Paused {
            tx: self.tx.clone(),
            _one: guard,
            review: Arc::clone(&self.review),
            reviewing: false,
        };
        answer
            .await
            .map_err(|_| "the task has ended".to_owned())??;
        Ok(paused)
    }
}

/// A paused task: it goes on when this is dropped.
#[derive(Debug)]
pub struct Paused {
    tx: mpsc::UnboundedSender<TaskCommand>,
    _one: Arc<tokio::sync::OwnedMutexGuard<()>>,
    review: Arc<std::sync::Mutex<Option<String>>>,
    reviewing: bool,
}

impl Paused {
    /// The task is held for a human's decision on approval `id` until this is dropped:
    /// programs asked for meanwhile are refused at once ([`Pauser::held_for`]).
    pub fn for_review(&mut self, id: &str) {
        *self.review.lock().unwrap_or_else(|p| p.into_inner()) = Some(id.to_owned());
        self.reviewing = true;
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        if self.reviewing {
            *self.review.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        let _ = self.tx.send(TaskCommand::Resume);
    }
}

/// A program started in a task.
#[derive(Debug)]
pub struct Running {
    /// Its spawn id.
    pub id: u64,
    /// Resolves when it ends.
    pub exited: oneshot::Receiver<ExitStatus>,
}

/// The output of a program run to its end with [`TaskClient::exec`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExecOutput {
    /// Exit code (`None` when a signal ended it).
    pub exit_code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// Standard output (at most the limit asked for).
    pub stdout: String,
    /// Standard error (at most the limit asked for).
    pub stderr: String,
    /// Whether output was cut at the limit.
    pub truncated: bool,
    /// Whether the time limit ended it.
    pub timed_out: bool,
}

/// Starts programs in a running task (its sandbox, its observed execs, its records).
#[derive(Debug, Clone)]
pub struct TaskClient {
    tx: mpsc::UnboundedSender<TaskCommand>,
    pauser: Pauser,
    gate: Arc<Gate>,
    workspace: PathBuf,
    git_dirs: Option<crate::changes::GitDirs>,
    search: String,
    redactor: Option<crate::secrets::LazyScanner>,
}

impl TaskClient {
    /// The task's own secrets (its identity token, injected credentials' real values, leased
    /// tokens), which every output leaving the task must not carry: `Ok(None)` when there
    /// are none, `Err` when they could not be made into a matcher (withhold the output).
    pub fn known_secrets(&self) -> Result<Option<remit_scan::KnownSecrets>, String> {
        match &self.redactor {
            Some(redactor) => redactor.known(),
            None => Ok(None),
        }
    }

    /// The task's gate.
    pub fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }

    /// The task's workspace.
    pub fn workspace(&self) -> &Path {
        &self.workspace
    }

    /// The workspace's git directories as found before the task (`None`: not a git work
    /// tree), which actions' host commands are pinned to.
    pub fn git_dirs(&self) -> Option<&crate::changes::GitDirs> {
        self.git_dirs.as_ref()
    }

    /// Resolve a program name the way the task's shell would (its `PATH`), or a path
    /// relative to `cwd`.
    pub fn resolve(&self, program: &str, cwd: &Path) -> Option<PathBuf> {
        if program.contains('/') {
            return Some(cwd.join(program));
        }
        self.search
            .split(':')
            .filter(|d| d.starts_with('/'))
            .map(|d| Path::new(d).join(program))
            .find(|p| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::metadata(p)
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
    }

    /// Start a program with the given standard streams (every exec is observed and decided
    /// like any other in the task).
    pub async fn spawn(
        &self,
        argv: Vec<String>,
        cwd: Option<PathBuf>,
        stdio: [std::os::fd::OwnedFd; 3],
    ) -> Result<Running, String> {
        // Held for a human's decision, a program would only wait (for minutes) in the frozen
        // task: refused now, to be asked again once it is decided.
        if let Some(approval) = self.pauser.held_for() {
            return Err(format!(
                "the task is held while approval {approval} is decided (an action bound to its workspace); ask again once it is"
            ));
        }
        let cwd = cwd.unwrap_or_else(|| self.workspace.clone());
        let first = argv.first().ok_or("an empty command")?;
        let program = self
            .resolve(first, &cwd)
            .ok_or_else(|| format!("command `{first}` not found in the task's PATH"))?;
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(TaskCommand::Spawn {
                program,
                argv,
                cwd,
                stdio,
                reply,
            })
            .map_err(|_| "the task has ended".to_owned())?;
        answer.await.map_err(|_| "the task has ended".to_owned())?
    }

    /// Stops the task while an action's host command works on its workspace.
    pub fn pauser(&self) -> &Pauser {
        &self.pauser
    }

    /// Send a signal to a program started with [`TaskClient::spawn`] (its process group).
    pub fn signal(&self, id: u64, signal: i32) {
        let _ = self.tx.send(TaskCommand::Signal { id, signal });
    }

    /// Run a program to its end with `stdin` as its input, capturing at most `limit` bytes
    /// of each output stream, killing it after `timeout`.
    pub async fn exec(
        &self,
        argv: Vec<String>,
        cwd: Option<PathBuf>,
        stdin: Vec<u8>,
        limit: usize,
        timeout: Duration,
    ) -> Result<ExecOutput, String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let pipe =
            |what: &str| std::io::pipe().map_err(|e| format!("cannot make a pipe for {what}: {e}"));
        let (in_r, in_w) = pipe("stdin")?;
        let (out_r, out_w) = pipe("stdout")?;
        let (err_r, err_w) = pipe("stderr")?;
        let running = self
            .spawn(argv, cwd, [in_r.into(), out_w.into(), err_w.into()])
            .await?;
        let id = running.id;
        let to_tokio = |r: std::io::PipeReader| {
            tokio::net::unix::pipe::Receiver::from_owned_fd(std::os::fd::OwnedFd::from(r))
        };
        let out = to_tokio(out_r).map_err(|e| e.to_string())?;
        let err = to_tokio(err_r).map_err(|e| e.to_string())?;
        let mut input =
            tokio::net::unix::pipe::Sender::from_owned_fd(std::os::fd::OwnedFd::from(in_w))
                .map_err(|e| e.to_string())?;
        let feed = async move {
            let _ = input.write_all(&stdin).await;
            drop(input);
        };
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
        let work = async {
            let ((), (o, oc), (e, ec), status) =
                tokio::join!(feed, read(out), read(err), running.exited);
            (o, oc, e, ec, status)
        };
        let (stdout, o_cut, stderr, e_cut, status, timed_out) =
            match tokio::time::timeout(timeout, work).await {
                Ok((o, oc, e, ec, status)) => (o, oc, e, ec, status.ok(), false),
                Err(_) => {
                    self.signal(id, 9);
                    (Vec::new(), false, Vec::new(), false, None, true)
                }
            };
        Ok(ExecOutput {
            exit_code: match status {
                Some(ExitStatus::Code(c)) => Some(c),
                _ => None,
            },
            signal: match status {
                Some(ExitStatus::Signal(s)) => Some(s),
                _ => None,
            },
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            truncated: o_cut || e_cut,
            timed_out,
        })
    }
}

/// A command line as a shell would read it, whole.
fn quoted_line(argv: &[String]) -> String {
    let mut out = String::new();
    for (i, arg) in argv.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || "'\"\\$`".contains(c)) {
            out.push('\'');
            out.push_str(&arg.replace('\'', "'\\''"));
            out.push('\'');
        } else {
            out.push_str(arg);
        }
        if out.len() > MAX_ARG_BYTES_SHOWN {
            break;
        }
    }
    out
}

/// Longest command line shown, in bytes.
const MAX_LINE_SHOWN: usize = 200;
/// How much of a command line is read before it is clipped: enough for any secret to be
/// whole when it is redacted, so no prefix of one survives the cut.
const MAX_ARG_BYTES_SHOWN: usize = 64 << 10;

fn clip_line(mut out: String) -> String {
    if out.len() > MAX_LINE_SHOWN {
        let mut cut = MAX_LINE_SHOWN;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}

fn exec_event(attempt: &ExecAttempt, verdict: EventVerdict, rule: Option<String>) -> EventBody {
    EventBody::Exec(Exec {
        argv: attempt.argv.clone(),
        cwd: attempt.cwd.clone(),
        pid: u32::try_from(attempt.pid).unwrap_or(0),
        ppid: u32::try_from(attempt.ppid).unwrap_or(0),
        decision: verdict,
        rule,
    })
}

fn denial_message(line: &str, reason: &str) -> String {
    format!(
        "remit: denied `{line}`: {reason}. Do the work without it, or ask the task's owner to change the remit.\n"
    )
}

const EACCES: i32 = 13;
const ENOENT: i32 = 2;

impl Supervision {
    #[allow(clippy::too_many_arguments)]
    async fn supervise(
        &mut self,
        sandbox: &mut Sandbox,
        signals: &SignalWatch,
        agent_listener: std::os::unix::net::UnixListener,
        control_listener: std::os::unix::net::UnixListener,
        api: Arc<Api>,
        mut kill_rx: mpsc::UnboundedReceiver<String>,
        mut commands_rx: mpsc::UnboundedReceiver<TaskCommand>,
        started: Instant,
        proxy: Option<Egress<EgressAdapter>>,
        with_main: bool,
        until: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
    ) -> Result<Outcome, RunError> {
        for listener in [&agent_listener, &control_listener] {
            listener
                .set_nonblocking(true)
                .map_err(|e| host_err("socket", e))?;
        }
        let agent = tokio::net::UnixListener::from_std(agent_listener)
            .map_err(|e| host_err("agent socket", e))?;
        let control = tokio::net::UnixListener::from_std(control_listener)
            .map_err(|e| host_err("control socket", e))?;
        tokio::spawn(api::serve_agent(agent, Arc::clone(&api)));
        tokio::spawn(api::serve_control(control, Arc::clone(&api)));
        if let (Some(proxy), Some(listener)) = (proxy, sandbox.take_proxy_listener()) {
            listener
                .set_nonblocking(true)
                .map_err(|e| host_err("egress listener", e))?;
            let listener = tokio::net::TcpListener::from_std(listener)
                .map_err(|e| host_err("egress listener", e))?;
            let gate = Arc::clone(&self.gate);
            tokio::spawn(async move {
                if let Err(e) = proxy.serve(listener).await {
                    gate.violation("egress", &format!("the egress proxy stopped: {e}"), None);
                }
            });
        }

        let main = if with_main {
            let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
            // Output going to a pipe or a file is redacted on its way; a terminal gets the
            // command's output as it is (a person is watching, and tools need the terminal).
            let mut relayed: Vec<std::os::fd::OwnedFd> = Vec::new();
            if let Some(redactor) = &self.redactor {
                for fd in [stdout.as_fd(), stderr.as_fd()] {
                    match relay(fd, redactor.clone())
                        .map_err(|e| host_err("cannot redact the command's output", e))?
                    {
                        Some((write, handle)) => {
                            relayed.push(write);
                            self.relays.push(handle);
                        }
                        None => relayed.push(
                            fd.try_clone_to_owned()
                                .map_err(|e| host_err("standard streams", e))?,
                        ),
                    }
                }
            }
            let (out, err) = match relayed.as_slice() {
                [o, e] => (o.as_fd(), e.as_fd()),
                _ => (stdout.as_fd(), stderr.as_fd()),
            };
            let id = sandbox.spawn(&SpawnRequest {
                path: &self.prepared.program,
                argv: &self.prepared.argv,
                env: &self.prepared.spec.env,
                cwd: &self.prepared.cwd,
                stdio: [stdin.as_fd(), out, err],
                new_process_group: false,
            })?;
            crate::timing::mark("command sent to the task's init");
            drop(relayed);
            Some(id)
        } else {
            None
        };
        let mut until = until;
        let events = Readable::new(sandbox.event_fd()).map_err(|e| host_err("poll", e))?;
        let pidfd = Readable::new(sandbox.pidfd()).map_err(|e| host_err("poll", e))?;
        let sigfd = Readable::new(signals.fd()).map_err(|e| host_err("poll", e))?;
        let mut execfd = match &self.watch {
            Some(w) => Some(Readable::new(w.fd()).map_err(|e| host_err("poll", e))?),
            None => None,
        };
        let deadline = self
            .prepared
            .wall
            .map(|w| tokio::time::Instant::from_std(started + w));
        let mut killed: Option<String> = None;
        // Leases revoked by another process (in the vault's database only) stop being
        // injected within a second.
        let mut next_lease_poll = tokio::time::Instant::now() + LEASE_POLL;
        loop {
            // Requests the init had no room for yet: it reads one at a time and waits in
            // `posix_spawn` for an `execve` this loop decides, so they are never waited for
            // here; they go out as it reads, tried again on every turn and every 10 ms.
            let _ = sandbox.flush();
            let unsent = sandbox.has_unsent();
            let retry = async {
                if unsent {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            let lease_poll = async {
                if self.leases.is_some() {
                    tokio::time::sleep_until(next_lease_poll).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            let exec_ready = async {
                match &execfd {
                    Some(fd) => fd.readable().await,
                    None => std::future::pending().await,
                }
            };
            let timeout = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            // The next lease to reach its TTL (leases already past it were revoked).
            let now = SystemTime::now();
            let next_expiry = self.leases.as_ref().and_then(|(_, l)| {
                l.leases
                    .iter()
                    .map(|l| l.expires)
                    .filter(|e| *e > now)
                    .min()
            });
            let lease_expiry = async move {
                match next_expiry {
                    Some(at) => {
                        let wait = at.duration_since(now).unwrap_or_default();
                        tokio::time::sleep(wait + Duration::from_millis(1)).await;
                    }
                    None => std::future::pending().await,
                }
            };
            let finished = async {
                match until.as_mut() {
                    Some(f) => f.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = retry => {}
                _ = exec_ready => {
                    loop {
                        let Some(watch) = self.watch.clone() else { break };
                        match watch.recv() {
                            Ok(Some(attempt)) => self.on_exec(attempt),
                            Ok(None) => break,
                            Err(_) => {
                                // No process of the task is left to notify us: stop watching.
                                execfd = None;
                                break;
                            }
                        }
                    }
                }
                _ = events.readable() => {
                    loop {
                        match sandbox.try_event() {
                            Ok(Some(Event::Exited { id, status })) if Some(id) == main => {
                                return Ok(match (killed.take(), status) {
                                    (Some(why), _) => Outcome::Killed(why),
                                    (None, ExitStatus::Code(c)) => Outcome::Exited(c),
                                    (None, ExitStatus::Signal(s)) => Outcome::Signaled(s),
                                });
                            }
                            Ok(Some(Event::SpawnFailed { id, errno })) if Some(id) == main => {
                                return Ok(if errno == EACCES && !self.denied.is_empty() {
                                    Outcome::Denied
                                } else {
                                    Outcome::NotStarted(errno)
                                });
                            }
                            Ok(Some(Event::Spawned { id, .. })) => {
                                if let Some(reply) = self.pending.remove(&id) {
                                    let (tx, rx) = oneshot::channel();
                                    self.waiters.insert(id, tx);
                                    // Whoever asked gave up meanwhile (a cancelled call, while
                                    // the task was frozen): the program does not run on behind
                                    // its back.
                                    if reply.send(Ok(Running { id, exited: rx })).is_err() {
                                        self.waiters.remove(&id);
                                        let _ = sandbox.signal(id, libc::SIGKILL);
                                    }
                                }
                            }
                            Ok(Some(Event::SpawnFailed { id, errno })) => {
                                if let Some(reply) = self.pending.remove(&id) {
                                    let why = remit_types::remit::io_reason(&std::io::Error::from_raw_os_error(errno));
                                    let _ = reply.send(Err(format!("cannot start the program: {why}")));
                                }
                            }
                            Ok(Some(Event::Exited { id, status })) => {
                                if let Some(waiter) = self.waiters.remove(&id) {
                                    let _ = waiter.send(status);
                                }
                            }

                            Ok(None) => break,
                            Err(e) => {
                                return match killed.take() {
                                    Some(why) => Ok(Outcome::Killed(why)),
                                    None => Err(RunError::Sandbox(e)),
                                };
                            }
                        }
                    }
                }
                _ = sigfd.readable() => {
                    while let Ok(Some(signal)) = signals.read() {
                        // Terminal signals already reached the command (it shares our process
                        // group); others were sent to us alone and are passed on.
                        if let Some(main) = main
                            && !signal.from_terminal
                        {
                            let _ = sandbox.signal(main, signal.signal);
                        } else if main.is_none() && matches!(signal.signal, SIGINT | SIGTERM | SIGHUP) {
                            // No command of our own: a signal ends the task.
                            self.gate.kill("stopped by a signal");
                            sandbox.kill();
                            killed.get_or_insert_with(|| "stopped by a signal".into());
                        }
                    }
                }
                _ = pidfd.readable() => {
                    // The init ended: read what it reported last, then stop.
                    while let Ok(Some(event)) = sandbox.try_event() {
                        if let Event::Exited { id, status } = event
                            && Some(id) == main
                            && killed.is_none()
                        {
                            return Ok(match status {
                                ExitStatus::Code(c) => Outcome::Exited(c),
                                ExitStatus::Signal(s) => Outcome::Signaled(s),
                            });
                        }
                    }
                    return Ok(Outcome::Killed(killed.take().unwrap_or_else(|| "the task's init ended".into())));
                }
                Some(reason) = kill_rx.recv() => {
                    self.gate.kill(&reason);
                    sandbox.kill();
                    killed = Some(reason);
                }
                Some(command) = commands_rx.recv() => {
                    match command {
                        TaskCommand::Spawn { program, argv, cwd, stdio, reply } => {
                            let request = SpawnRequest {
                                path: &program,
                                argv: &argv,
                                env: &self.prepared.spec.env,
                                cwd: &cwd,
                                stdio: [stdio[0].as_fd(), stdio[1].as_fd(), stdio[2].as_fd()],
                                new_process_group: true,
                            };
                            match sandbox.spawn(&request) {
                                Ok(id) => {
                                    self.pending.insert(id, reply);
                                }
                                Err(e) => {
                                    let _ = reply.send(Err(e.to_string()));
                                }
                            }
                        }
                        TaskCommand::Signal { id, signal } => {
                            let _ = sandbox.signal(id, signal);
                        }
                        TaskCommand::Pause { reply, hold } => match sandbox.freezer_dir() {
                            // Frozen off the loop: it goes on deciding meanwhile.
                            Ok(dir) => {
                                tokio::task::spawn_blocking(move || {
                                    let _hold = hold;
                                    let frozen = remit_sandbox::freezer::freeze(&dir, PAUSE_LIMIT);
                                    // Nobody waits any more (the action was cancelled, and its
                                    // thaw may have come first): the task must not stay frozen.
                                    if reply.send(frozen).is_err() {
                                        remit_sandbox::freezer::thaw(&dir);
                                    }
                                });
                            }
                            Err(why) => {
                                let _ = reply.send(Err(why));
                            }
                        },
                        TaskCommand::Resume => {
                            if let Ok(dir) = sandbox.freezer_dir() {
                                remit_sandbox::freezer::thaw(&dir);
                            }
                        }
                    }
                }
                _ = finished => {
                    return Ok(match killed.take() {
                        Some(why) => Outcome::Killed(why),
                        None => Outcome::Ended,
                    });
                }
                _ = lease_poll => {
                    next_lease_poll = tokio::time::Instant::now() + LEASE_POLL;
                    if let Some((broker, leases)) = &self.leases {
                        let broker = Arc::clone(broker);
                        let ids = leases.lease_ids();
                        let task = leases.task.task.clone();
                        let _ = tokio::task::spawn_blocking(move || {
                            broker.refresh_ended(&ids);
                            // A revocation that failed (at a TTL, say) is retried once due,
                            // not left until the task ends.
                            let _ = broker.retry_pending_of(&task);
                        })
                        .await;
                    }
                }
                _ = lease_expiry => {
                    if let Some((broker, _)) = &self.leases {
                        let broker = Arc::clone(broker);
                        // Backends block (a database, an HTTP API): off the runtime thread.
                        let _ = tokio::task::spawn_blocking(move || broker.revoke_expired()).await;
                    }
                }
                _ = timeout => {
                    self.gate.kill("wall-clock limit reached");
                    sandbox.kill();
                    return Ok(Outcome::TimedOut(self.prepared.wall.unwrap_or_default()));
                }
            }
        }
    }

    fn on_exec(&mut self, attempt: ExecAttempt) {
        let Some(watch) = self.watch.clone() else {
            return;
        };
        let Some(program) = attempt.program.clone() else {
            // No such file (or not a regular file): the kernel would refuse the same way,
            // and a file that appears later cannot slip through our answer.
            let _ = watch.respond(&attempt, Verdict::Deny(ENOENT));
            return;
        };
        let Some(identical_to) =
            self.prepared
                .programs
                .identify(program.dev, program.ino, program.size, || {
                    watch.open_program(&attempt).ok()
                })
        else {
            // As large as a program a rule names, and unreadable to compare: it may be a copy.
            let line = quoted_line(&attempt.argv);
            let reason = "the program file could not be read to tell whether it is a copy of one the remit names";
            self.refused(&watch, &attempt, &line, "commands.identity", reason);
            let _ = watch.respond(&attempt, Verdict::Deny(EACCES));
            return;
        };
        // A dynamic loader runs the file its argument names without an `execve` of it: that
        // file is identified too (a copy of a forbidden program run through `ld.so`). One
        // that cannot be (gone, not a regular file, a name not kept whole in UTF-8) is not
        // run: the loader would run something the rules never saw.
        let loader = is_loader(attempt.path.rsplit('/').next().unwrap_or_default())
            || identical_to.iter().any(|name| is_loader(name));
        let mut launched = Vec::new();
        if loader
            && !self.prepared.rules.is_empty()
            && let Some(target) = loader_target(&attempt.argv)
        {
            let identified = watch
                .open_named(&attempt, target)
                .ok()
                .filter(|_| !target.contains('\u{fffd}'))
                .and_then(|file| {
                    use std::os::unix::fs::MetadataExt;
                    let meta = file.metadata().ok()?;
                    self.prepared
                        .programs
                        .identify(meta.dev(), meta.ino(), meta.size(), || Some(file))
                });
            match identified {
                Some(names) => launched = names,
                None => {
                    let line = quoted_line(&attempt.argv);
                    let reason = format!(
                        "the dynamic loader would run `{}`, which cannot be identified",
                        remit_types::effect::escaped(target)
                    );
                    self.refused(&watch, &attempt, &line, "commands.loader", &reason);
                    let _ = watch.respond(&attempt, Verdict::Deny(EACCES));
                    return;
                }
            }
        }
        let facts = ExecFacts {
            path: attempt.path.clone(),
            argv: attempt.argv.clone(),
            identical_to,
            interpreter: program.interpreter.clone(),
            launched,
        };
        // The command line as messages and the exit summary show it (on the host's terminal
        // or a CI log): redacted like everything else that leaves the task. Only a refused
        // or held command is shown, so an allowed one never waits for the redactor.
        let shown = |redactor: &Option<crate::secrets::LazyScanner>| {
            // Redacted whole, then clipped: a secret cut in two would keep its prefix.
            let line = quoted_line(&attempt.argv);
            clip_line(match redactor {
                Some(redactor) => redactor.redact(&line),
                None => line,
            })
        };
        match self.gate.decide_exec(&facts, &attempt.cwd) {
            Decision::Allow { .. } => {
                self.commands += 1;
                let _ = watch.respond(&attempt, Verdict::Allow);
                self.gate
                    .journal()
                    .observe(exec_event(&attempt, EventVerdict::Allow, None));
            }
            Decision::Deny { policy, reason } => {
                // Explain first: once answered, the process may be gone.
                let line = shown(&self.redactor);
                self.refused(&watch, &attempt, &line, &policy, &reason);
                let _ = watch.respond(&attempt, Verdict::Deny(EACCES));
            }
            Decision::NeedsApproval { .. } => {
                // The process waits in `execve` until a human decides (or the approval
                // expires); everything else keeps running.
                let gate = Arc::clone(&self.gate);
                let timeout = self.approval_timeout;
                let notices = self.notices;
                let announced = Arc::clone(&self.announced);
                let line = shown(&self.redactor);
                self.commands += 1;
                tokio::spawn(async move {
                    let cwd = attempt.cwd.clone();
                    let first = gate.request_exec(facts.clone(), &cwd, Duration::ZERO).await;
                    let outcome = match first {
                        GateOutcome::Pending { approval } => {
                            let first = announced
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .insert((attempt.host_pid, approval.to_string()));
                            if first {
                                let message = format!(
                                    "remit: `{line}` is waiting for approval {approval}: a human must run `remit approvals approve {approval}` on the host\n"
                                );
                                watch.tell(&attempt, &message);
                                if notices {
                                    eprint!("{message}");
                                }
                            }
                            let _ = gate.wait_approval(&approval, timeout).await;
                            // Interrupted meanwhile (a freeze restarts the `execve` as a new
                            // attempt, which waits for the same approval) or gone: the
                            // approval is left for the attempt that is still waiting.
                            if !watch.pending(&attempt) {
                                return;
                            }
                            gate.request_exec(facts, &cwd, Duration::ZERO).await
                        }
                        other => other,
                    };
                    match outcome {
                        GateOutcome::Authorized(authorized) => {
                            // Durable before the program may start; refused if it cannot be.
                            if let Err(e) = gate.begin(&authorized).await {
                                let _ = watch.respond(&attempt, Verdict::Deny(EACCES));
                                gate.failed(authorized, &format!("not recorded: {e}"));
                                return;
                            }
                            match watch.respond(&attempt, Verdict::Allow) {
                                Ok(()) => {
                                    gate.journal().observe(exec_event(
                                        &attempt,
                                        EventVerdict::Allow,
                                        Some("approved".into()),
                                    ));
                                    gate.performed(authorized, "started");
                                }
                                Err(e) => gate.failed(authorized, &format!("not started: {e}")),
                            }
                        }
                        GateOutcome::Denied { policy, reason } => {
                            watch.tell(&attempt, &denial_message(&line, &reason));
                            let _ = watch.respond(&attempt, Verdict::Deny(EACCES));
                            gate.journal().observe(exec_event(
                                &attempt,
                                EventVerdict::Deny,
                                Some(policy),
                            ));
                        }
                        GateOutcome::Pending { approval } => {
                            watch.tell(
                                &attempt,
                                &denial_message(
                                    &line,
                                    &format!("approval {approval} was not given in time"),
                                ),
                            );
                            let _ = watch.respond(&attempt, Verdict::Deny(EACCES));
                            gate.journal().observe(exec_event(
                                &attempt,
                                EventVerdict::Deny,
                                Some("approval".into()),
                            ));
                        }
                    }
                });
            }
        }
    }

    fn refused(
        &mut self,
        watch: &ExecWatch,
        attempt: &ExecAttempt,
        line: &str,
        policy: &str,
        reason: &str,
    ) {
        let effect = Effect::Exec {
            argv: attempt.argv.clone(),
            cwd: attempt.cwd.clone(),
        };
        self.gate.journal().observe(exec_event(
            attempt,
            EventVerdict::Deny,
            Some(policy.to_owned()),
        ));
        // A shell's PATH search tries the same command several times: explain it once.
        let told = (attempt.host_pid, line.to_owned());
        if self.last_told.as_ref() != Some(&told) {
            self.gate.note_denial(&effect, policy, reason);
            self.denied.push(line.to_owned());
            watch.tell(attempt, &denial_message(line, reason));
            self.last_told = Some(told);
        }
    }
}

/// The egress proxy's port on every task's own loopback.
pub const PROXY_PORT: u16 = 3128;

const SIGHUP: i32 = 1;
const SIGINT: i32 = 2;
const SIGQUIT: i32 = 3;
const SIGTERM: i32 = 15;
