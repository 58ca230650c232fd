//! The remit file: the declarative grant for one task.
//!
//! A remit is TOML. Every table and field is optional; what is absent takes the default
//! documented on the field, and the defaults together are the *default remit*: the workspace
//! read-write, the system read-only, no network, no secrets, a process limit. Unknown fields
//! are errors, and every error names the file, line and column.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::size::{ByteSize, Span};

/// The text of the default remit, used when `remit run` is given no `--remit`.
pub const DEFAULT_REMIT: &str = include_str!("default.remit.toml");

/// Origin name of the default remit in messages and records.
pub const DEFAULT_ORIGIN: &str = "<default remit>";

/// A parsed remit file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Remit {
    /// Who the task acts as. Default: an anonymous agent owned by the invoking user.
    #[serde(default)]
    pub agent: AgentSection,
    /// What the task can see and change on disk.
    #[serde(default)]
    pub filesystem: Filesystem,
    /// The task's environment variables.
    #[serde(default)]
    pub environment: Environment,
    /// Resource limits.
    #[serde(default)]
    pub limits: Limits,
    /// Network access (loopback only until egress rules are granted).
    #[serde(default)]
    pub network: crate::network::Network,
    /// Just-in-time credentials leased to the task (`docs/credentials.md`). Default: none.
    #[serde(default)]
    pub credentials: crate::credentials::Credentials,
    /// Which commands the task may run.
    #[serde(default)]
    pub commands: Commands,
    /// Containment settings that are not grants.
    #[serde(default)]
    pub sandbox: SandboxSection,
    /// Secrets the task can reach: found before it starts, kept out of what it emits.
    #[serde(default)]
    pub secrets: SecretsSection,
    /// Typed actions the task may request through the gate, by kind.
    #[serde(default)]
    pub actions: BTreeMap<String, ActionGrant>,
    /// Who may approve what, and for how long a request waits.
    #[serde(default)]
    pub approvals: Approvals,
    /// Raw Cedar policies added to what the remit compiles to.
    #[serde(default)]
    pub policy: PolicySection,
    /// Examples the remit's policy must decide as stated; checked at load.
    #[serde(default, rename = "test")]
    pub tests: Vec<PolicyTest>,
}

/// `[actions.<kind>]`: a typed action the task may request (`remit act <kind>` inside the
/// task). The capability lives outside the sandbox: the gate performs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionGrant {
    /// One line saying what the action does (shown to approvers). Default: none.
    #[serde(default)]
    pub description: Option<String>,
    /// Argument names the action takes (`remit act publish --arg tag=latest`). Arguments not
    /// declared are refused. Default: none.
    #[serde(default)]
    pub args: Vec<String>,
    /// The host command that performs the action, run in the workspace outside the sandbox
    /// with the supervisor's environment; `{name}` in a word is replaced by that argument.
    /// Default: none (the action is decided and recorded, and nothing runs).
    #[serde(default)]
    pub run: Option<CommandRule>,
    /// Whether each request needs approval, and from whom. Default: none.
    #[serde(default)]
    pub approve: Option<ApprovalRule>,
    /// Most requests of this kind that may be performed in one task. Default: unlimited.
    #[serde(default)]
    pub quota: Option<u32>,
    /// An extra Cedar condition under which the action is allowed, e.g.
    /// `context.args.tag != "latest"`. Default: always.
    #[serde(default)]
    pub when: Option<String>,
    /// Longest the host command may run. Default: `"10m"`.
    #[serde(default)]
    pub timeout: Option<Span>,
    /// Whether the action is bound to the workspace its host command runs in: decided and
    /// approved for a digest of the workspace's contents, and performed only on exactly those
    /// contents with the task frozen. `false` for a command that reads nothing of the task's
    /// (or a workspace too large to digest): the command then finds whatever the task left
    /// there when it runs. Default: `true`.
    #[serde(default = "yes")]
    pub bind_workspace: bool,
}

impl Default for ActionGrant {
    fn default() -> Self {
        ActionGrant {
            description: None,
            args: Vec::new(),
            run: None,
            approve: None,
            quota: None,
            when: None,
            timeout: None,
            bind_workspace: true,
        }
    }
}

impl ActionGrant {
    /// Whether the action's host command is bound to the workspace's contents.
    pub fn binds_workspace(&self) -> bool {
        self.run.is_some() && self.bind_workspace
    }
}

/// Who must approve: `true` (one approval from the default approvers) or a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ApprovalRule {
    /// `approve = true`: one approval from `[approvals] default`.
    Simple(bool),
    /// `approve = { by = ["release-managers"], count = 2 }`.
    Detailed {
        /// OS user names or `[approvals.groups]` names. Default: `[approvals] default`.
        #[serde(default)]
        by: Vec<String>,
        /// How many distinct humans. Default: 1.
        #[serde(default = "one")]
        count: u32,
    },
}

fn one() -> u32 {
    1
}

/// `[approvals]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approvals {
    /// Named groups of approvers (OS user names). Default: none.
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
    /// Who approves when a rule does not say: user or group names. Default: the agent's
    /// owner if it is set, else any human on the host (never the task itself).
    #[serde(default)]
    pub default: Vec<String>,
    /// How long a request waits for approval before it is denied. Default: `"15m"`.
    #[serde(default)]
    pub timeout: Option<Span>,
    /// How long an MCP tool call that needs approval waits for it before answering
    /// `pending` with the approval's id (the client calls again once it is approved).
    /// Default: `"0s"`, answer at once (MCP clients time calls out); `remit mcp
    /// --approval-wait` overrides it.
    #[serde(default)]
    pub wait: Option<Span>,
}

/// `[policy]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    /// Cedar files (relative to the remit) whose policies join the remit's. Default: none.
    #[serde(default)]
    pub cedar: Vec<String>,
}

/// What a `[[test]]` expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expectation {
    /// The effect is allowed.
    Allow,
    /// The effect is denied.
    Deny,
    /// The effect needs approval.
    NeedsApproval,
}

/// `[[test]]`: an effect and the decision the remit must give it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyTest {
    /// A name for reports. Default: the effect's description.
    #[serde(default)]
    pub name: Option<String>,
    /// The effect.
    pub effect: crate::effect::Effect,
    /// The decision expected.
    pub expect: Expectation,
    /// Decide as if every approval the effect needs had been given. Default: `false`.
    #[serde(default)]
    pub approved: bool,
}

/// `[agent]`: the non-human identity a task runs as.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// Registered agent name. Default: `"anonymous"`.
    #[serde(default)]
    pub name: Option<String>,
    /// The human accountable for the agent. Default: the invoking OS user.
    #[serde(default)]
    pub owner: Option<String>,
    /// What the agent is for, in one line. Default: none.
    #[serde(default)]
    pub purpose: Option<String>,
    /// How long a task may live; same as `limits.wall` when that is unset. Default: none.
    #[serde(default)]
    pub ttl: Option<Span>,
}

/// `[filesystem]`: the task's view of the disk.
///
/// Paths may start with `~/` (the invoking user's home). Relative paths are relative to the
/// directory holding the remit file. Paths that do not exist are skipped and noted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filesystem {
    /// The workspace, mounted read-write at its own path. `--workspace` overrides it.
    /// Default: the current directory.
    #[serde(default)]
    pub workspace: Option<String>,
    /// Extra paths visible read-only at their own path. Default: none.
    #[serde(default)]
    pub read_only: Vec<String>,
    /// Extra paths visible read-write at their own path. Default: none.
    #[serde(default)]
    pub read_write: Vec<String>,
    /// Paths or glob patterns (`**/.env*`) made unreachable inside the task even when they lie
    /// inside a visible directory. Relative entries apply inside every granted tree (the
    /// workspace, `read_only`, `read_write`), relative to its root. Default: none (secret-bearing
    /// host paths such as `~/.ssh` are never mounted in the first place, and `.env*` files in
    /// granted trees outside the workspace are always hidden).
    #[serde(default)]
    pub hidden: Vec<String>,
    /// Workspace-relative paths kept read-only inside an otherwise writable workspace.
    /// `.git/config` and `.git/hooks` are always protected. Default: none.
    #[serde(default)]
    pub protected: Vec<String>,
    /// Whether programs may be executed from writable places (workspace, `/tmp`, home).
    /// Builds and test runners need it. Default: `true`.
    #[serde(default = "yes")]
    pub exec_writable: bool,
}

impl Default for Filesystem {
    fn default() -> Self {
        Filesystem {
            workspace: None,
            read_only: Vec::new(),
            read_write: Vec::new(),
            hidden: Vec::new(),
            protected: Vec::new(),
            exec_writable: true,
        }
    }
}

/// `[environment]`: what the task's processes see in their environment.
///
/// The task starts from an allowlist (`PATH`, `HOME`, `TERM`, `LANG`, `LC_*`, `TZ`, …); every
/// other inherited variable is dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// Extra variables to inherit from the invoking environment: exact names or `PREFIX_*`.
    /// Names that look like credentials (`*_TOKEN`, `*_KEY`, `AWS_*`, …) are refused: a
    /// credential is granted through the egress gate, never through the environment.
    /// Default: none.
    #[serde(default)]
    pub pass: Vec<String>,
    /// Variables set to literal values. Default: none.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
}

/// `[limits]`: resources a task may consume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Memory for the whole task (all its processes), e.g. `"4GiB"`. Needs a memory cgroup
    /// controller. Default: none.
    #[serde(default)]
    pub memory: Option<ByteSize>,
    /// Processes and threads alive at once. Enforced by the pids cgroup controller where
    /// the host has one and always by a per-task process rlimit. Default: `1024`.
    #[serde(default = "default_pids")]
    pub pids: Option<u32>,
    /// CPU, in cores (`1.5`). Needs a cpu cgroup controller. Default: none.
    #[serde(default)]
    pub cpu: Option<f64>,
    /// Wall-clock limit after which the whole task is killed, e.g. `"40m"`. Default: none.
    #[serde(default)]
    pub wall: Option<Span>,
    /// Open files per process. Default: `4096`.
    #[serde(default = "default_open_files")]
    pub open_files: Option<u64>,
    /// Largest file a process may write. Default: none.
    #[serde(default)]
    pub file_size: Option<ByteSize>,
    /// Size of the task's private `/tmp`. Default: `"1GiB"`.
    #[serde(default = "default_tmp")]
    pub tmp: Option<ByteSize>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: None,
            pids: default_pids(),
            cpu: None,
            wall: None,
            open_files: default_open_files(),
            file_size: None,
            tmp: default_tmp(),
        }
    }
}

/// What happens to a command that no rule names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CommandDefault {
    /// Commands run unless a rule forbids or prompts for them.
    #[default]
    Allow,
    /// Only commands an `allow` rule names may run.
    Deny,
}

/// `[commands]`: which commands the task may run, by argv prefix.
///
/// A rule is a list of words (`["git", "push"]`) or a string split on spaces (`"git push"`).
/// The first word names a program (its file name, however it is reached: a path, a symlink,
/// a copy); the others must follow it in order, skipping options. When several rules match,
/// the strictest wins: forbid over prompt over allow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Commands {
    /// What a command no rule names gets. Default: `"allow"`.
    #[serde(default)]
    pub default: CommandDefault,
    /// Commands allowed (needed when `default = "deny"`). Default: none.
    #[serde(default)]
    pub allow: Vec<CommandRule>,
    /// Commands refused. Default: none.
    #[serde(default)]
    pub forbid: Vec<CommandRule>,
    /// Commands that need a human to confirm each run. Default: none.
    #[serde(default)]
    pub prompt: Vec<CommandRule>,
}

/// One command rule: a program and the words that must follow it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CommandRule(pub Vec<String>);

impl CommandRule {
    /// The program word (`git`).
    pub fn program(&self) -> &str {
        self.0.first().map(String::as_str).unwrap_or_default()
    }

    /// The words after the program (`["push"]`).
    pub fn rest(&self) -> &[String] {
        self.0.get(1..).unwrap_or_default()
    }
}

impl fmt::Display for CommandRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(" "))
    }
}

impl Serialize for CommandRule {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for CommandRule {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Words(Vec<String>),
            Line(String),
        }
        let words = match Raw::deserialize(deserializer)? {
            Raw::Words(words) => words,
            Raw::Line(line) => line.split_whitespace().map(str::to_owned).collect(),
        };
        if words.is_empty() || words.iter().any(|w| w.trim().is_empty()) {
            return Err(serde::de::Error::custom(
                "a command rule needs at least a program name and no empty words",
            ));
        }
        if words.len() > 8 {
            return Err(serde::de::Error::custom(
                "a command rule has at most 8 words (a program and 7 words after it)",
            ));
        }
        if words[0].contains('/') {
            return Err(serde::de::Error::custom(format!(
                "command rules name programs, not paths: write `{}` instead of `{}`",
                words[0].rsplit('/').next().unwrap_or_default(),
                words[0]
            )));
        }
        Ok(CommandRule(words))
    }
}

/// `[secrets]`: what remit does about secrets the task can reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsSection {
    /// Scan the workspace and the granted paths before the task starts and record which
    /// secrets (rule, location, fingerprint — never the value) it can reach. Default: `true`.
    #[serde(default = "yes")]
    pub scan: bool,
    /// Refuse to start when a reachable secret is at least this severe: `low`, `medium`,
    /// `high` or `critical`. Default: none (record, do not refuse).
    #[serde(default)]
    pub refuse_at: Option<SecretLevel>,
    /// Redact secrets from the command's output when it goes to a pipe or a file (terminals
    /// get it as it is), from what typed actions return, and from the task's records.
    /// Default: `true`.
    #[serde(default = "yes")]
    pub redact: bool,
}

impl Default for SecretsSection {
    fn default() -> Self {
        SecretsSection {
            scan: true,
            refuse_at: None,
            redact: true,
        }
    }
}

/// A secret's severity, as a remit names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretLevel {
    /// Test keys, identifiers that need a paired secret.
    Low,
    /// Generic passwords and tokens.
    Medium,
    /// Provider credentials.
    High,
    /// Cloud root keys, private keys, payment secrets.
    Critical,
}

/// `[sandbox]`: containment settings that weaken nothing unless named `dangerously_*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxSection {
    /// Run even when the host cannot enforce a layer this remit needs. Loud and recorded.
    /// Default: `false`.
    #[serde(default)]
    pub dangerously_allow_degraded: bool,
    /// Host name inside the task. Default: `"remit"`.
    #[serde(default)]
    pub hostname: Option<String>,
}

fn yes() -> bool {
    true
}
fn default_pids() -> Option<u32> {
    Some(1024)
}
fn default_open_files() -> Option<u64> {
    Some(4096)
}
fn default_tmp() -> Option<ByteSize> {
    Some(ByteSize(1 << 30))
}

/// A remit together with where it came from and its hash.
#[derive(Debug, Clone)]
pub struct LoadedRemit {
    /// The parsed grant.
    pub remit: Remit,
    /// The file it was read from, or [`DEFAULT_ORIGIN`].
    pub origin: String,
    /// Directory that relative paths in the remit are relative to.
    pub base_dir: PathBuf,
    /// SHA-256 of the exact bytes of the remit file.
    pub sha256: [u8; 32],
    /// The remit file's text (for locating what a message is about).
    pub text: String,
}

impl LoadedRemit {
    /// The hash as `sha256:<hex>`.
    pub fn hash_hex(&self) -> String {
        let mut out = String::with_capacity(7 + 64);
        out.push_str("sha256:");
        for byte in self.sha256 {
            out.push_str(&format!("{byte:02x}"));
        }
        out
    }
}

/// A remit that could not be read, parsed or validated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemitError {
    /// The file could not be read.
    #[error("cannot read remit `{path}`: {reason}")]
    Read {
        /// The file.
        path: String,
        /// The operating system's reason.
        reason: String,
    },
    /// The file is not a valid remit.
    #[error("{origin}:{line}:{column}: {message}")]
    Invalid {
        /// The file.
        origin: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
}

/// Environment variable names that look like credentials and are never inherited.
pub fn looks_like_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    const SUBSTRINGS: [&str; 10] = [
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "CREDENTIAL",
        "APIKEY",
        "API_KEY",
        "PRIVATE",
        "SESSION",
        "COOKIE",
    ];
    const PREFIXES: [&str; 12] = [
        "AWS_", "AZURE_", "GOOGLE_", "GCLOUD_", "GH_", "GITHUB_", "GITLAB_", "VAULT_", "DOCKER_",
        "NPM_", "KUBE", "SSH_",
    ];
    const EXACT: [&str; 3] = ["GPG_AGENT_INFO", "KUBECONFIG", "NETRC"];
    SUBSTRINGS.iter().any(|s| upper.contains(s))
        || PREFIXES.iter().any(|p| upper.starts_with(p))
        || EXACT.contains(&upper.as_str())
        || upper.ends_with("_KEY")
        || upper.contains("_KEY_")
        || upper.ends_with("_AUTH")
        || upper.ends_with("_PAT")
}

/// Read and validate a remit file.
pub fn load(path: &Path) -> Result<LoadedRemit, RemitError> {
    let bytes = std::fs::read(path).map_err(|err| RemitError::Read {
        path: path.display().to_string(),
        reason: io_reason(&err),
    })?;
    let origin = path.display().to_string();
    let text = String::from_utf8(bytes).map_err(|err| {
        let offset = err.utf8_error().valid_up_to();
        let (line, column) = line_column(
            &String::from_utf8_lossy(err.as_bytes()),
            offset.min(err.as_bytes().len()),
        );
        RemitError::Invalid {
            origin: origin.clone(),
            line,
            column,
            message: "the file is not valid UTF-8".into(),
        }
    })?;
    let base_dir = path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."))
        .to_path_buf();
    parse(&text, &origin, base_dir)
}

/// The default remit (embedded text), relative to `base_dir`.
pub fn default_remit(base_dir: PathBuf) -> Result<LoadedRemit, RemitError> {
    parse(DEFAULT_REMIT, DEFAULT_ORIGIN, base_dir)
}

/// Parse and validate remit text.
pub fn parse(text: &str, origin: &str, base_dir: PathBuf) -> Result<LoadedRemit, RemitError> {
    let remit: Remit = toml::from_str(text).map_err(|err| {
        let (line, column) = err
            .span()
            .map(|span| line_column(text, span.start))
            .unwrap_or((1, 1));
        RemitError::Invalid {
            origin: origin.to_owned(),
            line,
            column,
            message: one_line(err.message()),
        }
    })?;
    validate(&remit, text, origin)?;
    let sha256: [u8; 32] = Sha256::digest(text.as_bytes()).into();
    Ok(LoadedRemit {
        remit,
        origin: origin.to_owned(),
        base_dir,
        sha256,
        text: text.to_owned(),
    })
}

fn validate(remit: &Remit, text: &str, origin: &str) -> Result<(), RemitError> {
    let invalid = |needle: &str, message: String| {
        let (line, column) = text
            .find(needle)
            .map(|offset| line_column(text, offset))
            .unwrap_or((1, 1));
        RemitError::Invalid {
            origin: origin.to_owned(),
            line,
            column,
            message,
        }
    };
    for name in &remit.environment.pass {
        if name.is_empty() || name.contains('=') {
            return Err(invalid(
                name,
                format!("environment.pass entry `{name}` is not a variable name"),
            ));
        }
        if name
            .strip_suffix('*')
            .is_some_and(|prefix| prefix.len() < 2)
        {
            return Err(invalid(
                name,
                format!(
                    "environment.pass entry `{name}` would pass nearly every variable; name the variables or a longer prefix (`RUST_*`)"
                ),
            ));
        }
        if looks_like_secret_name(name.trim_end_matches('*')) {
            return Err(invalid(
                name,
                format!(
                    "environment.pass entry `{name}` looks like a credential; credentials are \
                     granted through the egress gate, never inherited"
                ),
            ));
        }
    }
    for name in remit.environment.set.keys() {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return Err(invalid(
                name,
                format!("environment.set key `{name}` is not a variable name"),
            ));
        }
    }
    if let Some(cpu) = remit.limits.cpu
        && !(cpu.is_finite() && cpu > 0.0 && cpu <= 4096.0)
    {
        return Err(invalid(
            "cpu",
            format!("limits.cpu must be a positive number of cores, not `{cpu}`"),
        ));
    }
    if remit.limits.pids == Some(0) {
        return Err(invalid("pids", "limits.pids must be at least 1".into()));
    }
    if let Some(memory) = remit.limits.memory
        && memory.0 < (8 << 20)
    {
        return Err(invalid(
            "memory",
            format!("limits.memory `{memory}` is below the 8MiB a task needs to start"),
        ));
    }
    if let Some(hostname) = &remit.sandbox.hostname
        && (hostname.is_empty()
            || hostname.len() > 64
            || !hostname
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'))
    {
        return Err(invalid(
            "hostname",
            format!("sandbox.hostname `{hostname}` is not a valid host name"),
        ));
    }
    for (kind, grant) in &remit.actions {
        if crate::effect::BUILTIN_KINDS.contains(&kind.as_str())
            || kind == "action"
            || !crate::effect::valid_action_name(kind)
        {
            return Err(invalid(
                &format!("actions.{kind}"),
                format!(
                    "`{kind}` cannot be an action kind (letters, digits, `-`, `_`; not exec, http_request, git_push, secret_use, tool_call or action)"
                ),
            ));
        }
        for arg in &grant.args {
            if !crate::effect::valid_action_name(arg) {
                return Err(invalid(
                    arg,
                    format!("actions.{kind}: `{arg}` is not an argument name"),
                ));
            }
        }
        if let Some(ApprovalRule::Detailed { count, by }) = &grant.approve {
            if *count == 0 || *count > 16 {
                return Err(invalid(
                    "count",
                    format!("actions.{kind}: approval count must be 1 to 16, not {count}"),
                ));
            }
            for name in by {
                if name.is_empty() {
                    return Err(invalid(
                        "by",
                        format!("actions.{kind}: an empty approver name"),
                    ));
                }
            }
        }
        if grant.quota == Some(0) {
            return Err(invalid(
                "quota",
                format!("actions.{kind}: a quota of 0 forbids the action; remove it instead"),
            ));
        }
    }
    for (group, members) in &remit.approvals.groups {
        if members.is_empty() {
            return Err(invalid(
                group,
                format!("approvals.groups.{group} has no members"),
            ));
        }
    }
    if remit.commands.default == CommandDefault::Deny && remit.commands.allow.is_empty() {
        return Err(invalid(
            "default",
            "commands.default is `deny` but commands.allow is empty: nothing could run".into(),
        ));
    }
    for path in remit
        .filesystem
        .read_only
        .iter()
        .chain(&remit.filesystem.read_write)
        .chain(&remit.filesystem.hidden)
        .chain(&remit.filesystem.protected)
    {
        if path.is_empty() || path.contains('\0') {
            return Err(invalid(path, "an empty path in [filesystem]".into()));
        }
    }
    if let Err(issue) = remit.network.validate() {
        let (line, column) = line_column(text, issue.offset_in(text));
        return Err(RemitError::Invalid {
            origin: origin.to_owned(),
            line,
            column,
            message: issue.message,
        });
    }
    if let Err(issue) = remit.credentials.validate(&remit.network) {
        let (line, column) = line_column(text, issue.offset_in(text));
        return Err(RemitError::Invalid {
            origin: origin.to_owned(),
            line,
            column,
            message: issue.message,
        });
    }
    for path in &remit.filesystem.protected {
        if path.starts_with('/') || path.starts_with('~') || path.split('/').any(|c| c == "..") {
            return Err(invalid(
                path,
                format!("filesystem.protected entry `{path}` must be relative to the workspace"),
            ));
        }
    }
    Ok(())
}

/// 1-based line and column of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count() + 1)
        .unwrap_or(1);
    (line, column)
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An OS error without Rust's `(os error N)` suffix.
pub fn io_reason(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error") {
        Some(cut) => text[..cut].to_lowercase(),
        None => text.to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<LoadedRemit, RemitError> {
        parse(text, "t.remit.toml", PathBuf::from("."))
    }

    #[test]
    fn default_remit_is_the_default_struct() {
        let loaded = default_remit(PathBuf::from(".")).unwrap();
        assert_eq!(loaded.remit, Remit::default());
        assert_eq!(parse_str("").unwrap().remit, Remit::default());
    }

    #[test]
    fn unknown_field_names_line_and_column() {
        let err = parse_str("[filesystem]\nwokspace = \".\"\n").unwrap_err();
        let RemitError::Invalid {
            line,
            column,
            message,
            ..
        } = &err
        else {
            panic!("{err}")
        };
        assert_eq!((*line, *column), (2, 1));
        assert!(message.contains("wokspace"), "{message}");
        assert!(err.to_string().starts_with("t.remit.toml:2:1: "), "{err}");
    }

    #[test]
    fn command_rules_accept_words_and_lines() {
        let loaded =
            parse_str("[commands]\nforbid = [[\"git\", \"push\"], \"npm publish\", \"curl\"]\n")
                .unwrap();
        let forbid = &loaded.remit.commands.forbid;
        assert_eq!(forbid[0].0, vec!["git", "push"]);
        assert_eq!(forbid[1].0, vec!["npm", "publish"]);
        assert_eq!(forbid[2].program(), "curl");
    }

    #[test]
    fn bad_values_are_refused() {
        for (text, needle) in [
            ("[commands]\nforbid = [[]]\n", "at least a program"),
            (
                "[commands]\nforbid = [\"/usr/bin/curl\"]\n",
                "name programs",
            ),
            (
                "[environment]\npass = [\"GITHUB_TOKEN\"]\n",
                "looks like a credential",
            ),
            (
                "[environment]\npass = [\"AWS_*\"]\n",
                "looks like a credential",
            ),
            ("[environment]\npass = [\"*\"]\n", "nearly every variable"),
            ("[environment]\npass = [\"G*\"]\n", "nearly every variable"),
            ("[limits]\nmemory = \"1KiB\"\n", "below"),
            ("[limits]\ncpu = -1.0\n", "positive"),
            ("[limits]\nwall = \"soon\"\n", "not a duration"),
            ("[limits]\npids = 0\n", "at least 1"),
            ("[commands]\ndefault = \"deny\"\n", "nothing could run"),
            ("[filesystem]\nprotected = [\"../x\"]\n", "relative"),
            ("[sandbox]\nhostname = \"a b\"\n", "host name"),
            ("[network]\nlisten = [70000]\n", "invalid value"),
        ] {
            let err = parse_str(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?} gave {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn secret_names() {
        for name in [
            "GITHUB_TOKEN",
            "AWS_PROFILE",
            "OPENAI_API_KEY",
            "DB_PASSWORD",
            "SSH_AUTH_SOCK",
            "MY_KEY",
        ] {
            assert!(looks_like_secret_name(name), "{name}");
        }
        for name in [
            "PATH",
            "HOME",
            "RUST_LOG",
            "CARGO_TARGET_DIR",
            "KEYBOARD",
            "LANG",
        ] {
            assert!(!looks_like_secret_name(name), "{name}");
        }
    }

    #[test]
    fn hash_is_of_the_bytes() {
        let a = parse_str("[limits]\npids = 10\n").unwrap();
        let b = parse_str("[limits]\npids  = 10\n").unwrap();
        assert_eq!(a.remit, b.remit);
        assert_ne!(a.sha256, b.sha256);
        assert!(a.hash_hex().starts_with("sha256:"));
        assert_eq!(a.hash_hex().len(), 71);
    }

    #[test]
    fn line_column_counts_chars() {
        assert_eq!(line_column("ab\ncé\nx", 7), (3, 1));
        assert_eq!(line_column("ab", 99), (1, 3));
    }
}
