//! The decision engine: a remit compiled to Cedar, validated against the schema, sliced and
//! indexed so that a decision evaluates only the policies that can apply.
//!
//! Decisions are three-valued. **Allow**; **Deny**, with the policy that decided and a reason
//! written for the agent; **NeedsApproval**, when every policy standing in the way is an
//! approval gate (`forbid … unless { context.approvals.contains("<requirement>") }`) and
//! granting those approvals would allow the effect. A policy that fails to evaluate is a
//! deny, never skipped.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use cedar_policy::{
    ActionConstraint, Authorizer, Context, Decision as CedarDecision, Entities, Entity, EntityId,
    EntityTypeName, EntityUid, Policy, PolicyId, PolicySet, PrincipalConstraint, Request,
    ResourceConstraint, RestrictedExpression, Schema, ValidationMode, Validator,
};
use miette::Diagnostic;
use remit_types::effect::Effect;
use remit_types::remit::{ApprovalRule, CommandDefault, Expectation, LoadedRemit, line_column};

use crate::commands::{CommandWords, ExecFacts, command_words};
use crate::schema::schema_text;

/// Where a policy came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file (a remit or a `.cedar` file).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// For compiled policies, the remit path (`commands.forbid[0]`).
    pub path: Option<String>,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{} ({}:{})", path, self.file, self.line),
            None => write!(f, "{}:{}:{}", self.file, self.line, self.column),
        }
    }
}

/// What is known about one policy.
#[derive(Debug, Clone)]
pub struct PolicyInfo {
    /// Its id (`commands.forbid[0]`, an `@id`, or `file.cedar#3`).
    pub id: String,
    /// `permit` or `forbid`.
    pub permit: bool,
    /// Where it came from.
    pub origin: Origin,
    /// Why it decides what it decides, for the agent (`@reason`).
    pub reason: Option<String>,
    /// The approval requirement it gates on (`@approval`), if any.
    pub approval: Option<String>,
    /// Its Cedar text.
    pub text: String,
}

/// An approval requirement: how many distinct humans, from whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// Its id (`actions.publish.approve`, `commands.prompt[0]`).
    pub id: String,
    /// User and group names whose members may approve; empty: any human except the task.
    pub by: Vec<String>,
    /// Distinct approvers needed.
    pub count: u32,
}

/// A decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed, by these policies.
    Allow {
        /// Determining policies.
        policies: Vec<String>,
    },
    /// Denied.
    Deny {
        /// The deciding policy (`default` when no policy allows).
        policy: String,
        /// Why, for the agent, with what it may do instead.
        reason: String,
    },
    /// Allowed once these requirements are met.
    NeedsApproval {
        /// What must be approved.
        requirements: Vec<Requirement>,
        /// The gating policies.
        policies: Vec<String>,
    },
}

impl Decision {
    /// `allow`, `deny` or `needs-approval`.
    pub fn label(&self) -> &'static str {
        match self {
            Decision::Allow { .. } => "allow",
            Decision::Deny { .. } => "deny",
            Decision::NeedsApproval { .. } => "needs-approval",
        }
    }

    fn expectation(&self) -> Expectation {
        match self {
            Decision::Allow { .. } => Expectation::Allow,
            Decision::Deny { .. } => Expectation::Deny,
            Decision::NeedsApproval { .. } => Expectation::NeedsApproval,
        }
    }
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Task id.
    pub task: String,
    /// Agent name.
    pub agent: String,
    /// The agent's owner.
    pub owner: String,
    /// Who started the task.
    pub requester: String,
    /// The remit's hash.
    pub remit: String,
    /// The agent's risk tier.
    pub risk: String,
}

/// The circumstances of one request besides the effect.
#[derive(Debug, Clone, Default)]
pub struct Situation {
    /// Unix seconds now.
    pub unix: i64,
    /// Requirements already satisfied for this exact effect.
    pub approvals: BTreeSet<String>,
    /// How many effects of this kind the task has performed.
    pub quota_used: u64,
}

/// A policy file or remit that could not be loaded. One line, with file, line and column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct PolicyError {
    /// The file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// An effect that cannot be decided at all (not a policy outcome: bad input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// A typed action the remit does not declare.
    #[error("unknown action `{0}`; this task's remit declares: {1}")]
    UnknownAction(String, String),
    /// An argument a typed action does not declare.
    #[error("action `{0}` has no argument `{1}` (it takes: {2})")]
    UnknownArgument(String, String, String),
}

/// The result of one `[[test]]`.
#[derive(Debug, Clone)]
pub struct TestOutcome {
    /// The test's name.
    pub name: String,
    /// Where it is.
    pub line: usize,
    /// What it expected.
    pub expected: Expectation,
    /// What the policy decided.
    pub decision: Decision,
}

impl TestOutcome {
    /// Whether the decision is the expected one.
    pub fn passed(&self) -> bool {
        self.decision.expectation() == self.expected
    }
}

/// Annotations remit writes on the policies it compiles and reads back for its own use.
/// A raw Cedar file may not use them: a load that finds one is refused.
///
/// `@key` names the command word prefix a compiled `[commands]` rule needs.
pub const RESERVED_ANNOTATIONS: &[&str] = &["key"];

/// Policies of one action, indexed.
#[derive(Debug, Default, Clone)]
struct Slice {
    /// Policies that apply to every request of the action.
    always: Vec<usize>,
    /// Policies that need a command word prefix (`@key`).
    by_key: HashMap<String, Vec<usize>>,
    /// Policies scoped to one resource.
    by_resource: HashMap<EntityUid, Vec<usize>>,
    /// Policies scoped to one principal (a task or an agent).
    by_principal: HashMap<EntityUid, Vec<usize>>,
}

/// The built-in effect kinds' Cedar resource types.
fn resource_type(kind: &str) -> &'static str {
    match kind {
        "exec" => "Program",
        "http_request" => "Host",
        "git_push" => "Ref",
        "secret_use" => "Secret",
        "tool_call" => "Tool",
        _ => "Target",
    }
}

fn uid(kind: &str, id: &str) -> Option<EntityUid> {
    Some(EntityUid::from_type_name_and_id(
        EntityTypeName::from_str(kind).ok()?,
        EntityId::new(id),
    ))
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A compiled policy before parsing.
struct Draft {
    id: String,
    text: String,
    origin: Origin,
    /// Where the text of a user-written condition inside it starts, for error locations.
    condition: Option<(usize, Origin)>,
    /// The command word prefix the policy needs, for the index. Set only by the compiler
    /// for the `[commands]` rules it generates (whose condition is exactly
    /// `context.command.prefixes.contains(key)`, or `granting` for an allow rule, a subset
    /// of `prefixes`); never taken from an annotation.
    key: Option<String>,
}

/// The Cedar side of an engine: parsed policies and their index.
#[derive(Debug)]
struct Core {
    policies: Vec<Policy>,
    /// Per policy, the command word prefix the compiler indexed it by (see [`Draft::key`]).
    keys: Vec<Option<String>>,
    infos: Vec<PolicyInfo>,
    full: Arc<PolicySet>,
    slices: HashMap<String, Slice>,
    cache: Mutex<HashMap<Vec<usize>, Arc<PolicySet>>>,
    entities: Mutex<Option<(Principal, Arc<Entities>)>>,
    action_parents: HashMap<String, Vec<String>>,
}

/// The engine for one remit.
#[derive(Debug)]
pub struct Engine {
    loaded: LoadedRemit,
    commands: crate::commands::CommandRules,
    /// `[network]`'s policies on `http_request`, decided directly.
    requests: crate::network::RequestRules,
    /// Whether raw Cedar files join the remit (then exec decisions go through Cedar too).
    raw_cedar: bool,
    schema: Option<Schema>,
    requirements: BTreeMap<String, Requirement>,
    groups: BTreeMap<String, Vec<String>>,
    declared: BTreeMap<String, Vec<String>>,
    tests: Vec<(String, usize, remit_types::remit::PolicyTest)>,
    core: std::sync::OnceLock<Result<Core, String>>,
}

fn locate(text: &str, needles: &[&str]) -> (usize, usize) {
    let mut from = 0;
    for needle in needles {
        match text[from..].find(needle) {
            Some(at) => from += at,
            None => break,
        }
    }
    line_column(text, from)
}

impl Engine {
    /// Compile, validate and index a remit's policy, then run its `[[test]]` entries. Any
    /// failure is one error with file, line and column.
    pub fn load(loaded: &LoadedRemit) -> Result<Engine, PolicyError> {
        let (core, schema, requirements) = build_core(loaded, true)?;
        let mut engine = Engine::cheap(loaded, requirements);
        engine.schema = schema;
        let _ = engine.core.set(Ok(core));
        engine.check_tests()?;
        Ok(engine)
    }

    /// Like [`Engine::load`], but when this exact policy (remit text, Cedar files, schema)
    /// was validated and tested before — a marker under `cache` records it — skip the
    /// validation and parse Cedar only when a decision first needs it. A marker is written
    /// after a full load succeeds.
    pub fn load_cached(
        loaded: &LoadedRemit,
        cache: &std::path::Path,
    ) -> Result<Engine, PolicyError> {
        let marker = cache.join(content_key(loaded));
        if marker.exists() {
            let requirements = cheap_requirements(loaded);
            let engine = Engine::cheap(loaded, requirements);
            if engine.raw_cedar {
                // Raw policies may add requirements; parse them now (still unvalidated).
                let (core, _, requirements) = build_core(loaded, false)?;
                let mut engine = Engine::cheap(loaded, requirements);
                let _ = engine.core.set(Ok(core));
                engine.tests = test_list(loaded);
                return Ok(engine);
            }
            return Ok(engine);
        }
        let engine = Engine::load(loaded)?;
        let _ = std::fs::create_dir_all(cache);
        let _ = std::fs::write(&marker, b"validated\n");
        Ok(engine)
    }

    fn cheap(loaded: &LoadedRemit, requirements: BTreeMap<String, Requirement>) -> Engine {
        let mut declared = BTreeMap::new();
        for (kind, grant) in &loaded.remit.actions {
            declared.insert(kind.clone(), grant.args.clone());
        }
        Engine {
            loaded: loaded.clone(),
            commands: crate::commands::CommandRules::new(&loaded.remit.commands),
            requests: crate::network::RequestRules::new(&loaded.remit.network),
            raw_cedar: !loaded.remit.policy.cedar.is_empty(),
            schema: None,
            requirements,
            groups: loaded.remit.approvals.groups.clone(),
            declared,
            tests: test_list(loaded),
            core: std::sync::OnceLock::new(),
        }
    }

    fn core(&self) -> Result<&Core, &str> {
        self.core
            .get_or_init(|| {
                build_core(&self.loaded, false)
                    .map(|(c, _, _)| c)
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(String::as_str)
    }

    fn check_tests(&self) -> Result<(), PolicyError> {
        for i in 0..self.tests.len() {
            let outcome = self.run_test(i);
            if !outcome.passed() {
                return Err(PolicyError {
                    file: self.loaded.origin.clone(),
                    line: outcome.line,
                    column: 1,
                    message: format!(
                        "test `{}` expects {} but the policy decides {}{}",
                        outcome.name,
                        expectation_label(outcome.expected),
                        outcome.decision.label(),
                        match &outcome.decision {
                            Decision::Deny { policy, reason } =>
                                format!(" (policy `{policy}`: {reason})"),
                            Decision::Allow { policies } if !policies.is_empty() =>
                                format!(" (policy `{}`)", policies.join("`, `")),
                            _ => String::new(),
                        }
                    ),
                });
            }
        }
        Ok(())
    }
}

fn test_list(loaded: &LoadedRemit) -> Vec<(String, usize, remit_types::remit::PolicyTest)> {
    let text = &loaded.text;
    let mut out = Vec::new();
    let mut search_from = 0;
    for test in &loaded.remit.tests {
        let at = text[search_from..]
            .find("[[test]]")
            .map(|o| search_from + o)
            .unwrap_or(0);
        search_from = at + 1;
        let (line, _) = line_column(text, at);
        let name = test.name.clone().unwrap_or_else(|| test.effect.describe());
        out.push((name, line, test.clone()));
    }
    out
}

/// A key for the exact policy content: remit text, Cedar files, schema and engine version.
fn content_key(loaded: &LoadedRemit) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(env!("CARGO_PKG_VERSION").as_bytes());
    hasher.update([0]);
    hasher.update(loaded.text.as_bytes());
    for name in &loaded.remit.policy.cedar {
        hasher.update([0]);
        hasher.update(std::fs::read(loaded.base_dir.join(name)).unwrap_or_default());
    }
    let mut declared = BTreeMap::new();
    for (kind, grant) in &loaded.remit.actions {
        declared.insert(kind.clone(), grant.args.clone());
    }
    hasher.update([0]);
    hasher.update(schema_text(&declared).as_bytes());
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn default_approvers(remit: &remit_types::remit::Remit) -> Vec<String> {
    if !remit.approvals.default.is_empty() {
        remit.approvals.default.clone()
    } else {
        remit.agent.owner.iter().cloned().collect()
    }
}

/// The requirements the remit's own sections define (without parsing any Cedar).
fn cheap_requirements(loaded: &LoadedRemit) -> BTreeMap<String, Requirement> {
    let remit = &loaded.remit;
    let approvers = default_approvers(remit);
    let mut out = BTreeMap::new();
    for i in 0..remit.commands.prompt.len() {
        let id = format!("commands.prompt[{i}]");
        out.insert(
            id.clone(),
            Requirement {
                id,
                by: approvers.clone(),
                count: 1,
            },
        );
    }
    for (kind, grant) in &remit.actions {
        let (by, count) = match &grant.approve {
            None | Some(ApprovalRule::Simple(false)) => continue,
            Some(ApprovalRule::Simple(true)) => (approvers.clone(), 1),
            Some(ApprovalRule::Detailed { by, count }) => (
                if by.is_empty() {
                    approvers.clone()
                } else {
                    by.clone()
                },
                *count,
            ),
        };
        let id = format!("actions.{kind}.approve");
        out.insert(id.clone(), Requirement { id, by, count });
    }
    out
}

/// A compiled remit: the core, the schema (when validated) and every approval requirement.
type Built = (Core, Option<Schema>, BTreeMap<String, Requirement>);

/// Compile a remit to Cedar, parse it, optionally validate it against the schema, and index
/// it.
fn build_core(loaded: &LoadedRemit, validate: bool) -> Result<Built, PolicyError> {
    {
        let remit = &loaded.remit;
        let file = loaded.origin.clone();
        let text = &loaded.text;
        let origin_of = |needles: &[&str], path: String| {
            let (line, column) = locate(text, needles);
            Origin {
                file: file.clone(),
                line,
                column,
                path: Some(path),
            }
        };
        let mut drafts: Vec<Draft> = Vec::new();
        let mut requirements = BTreeMap::new();
        let default_approvers: Vec<String> = if !remit.approvals.default.is_empty() {
            remit.approvals.default.clone()
        } else {
            remit.agent.owner.iter().cloned().collect()
        };

        // [commands]
        let commands = &remit.commands;
        if commands.default == CommandDefault::Allow {
            drafts.push(Draft {
                id: "commands.default".into(),
                text: "@reason(\"commands not named by a rule may run\")\npermit(principal, action == Action::\"exec\", resource);".into(),
                origin: origin_of(&["[commands]"], "commands.default".into()),
                condition: None,
                key: None,
            });
        }
        for (section, list) in [
            ("allow", &commands.allow),
            ("forbid", &commands.forbid),
            ("prompt", &commands.prompt),
        ] {
            for (i, rule) in list.iter().enumerate() {
                let key = rule.0.join(" ");
                let path = format!("commands.{section}[{i}]");
                let origin = origin_of(
                    &["[commands]", section, &format!("\"{}", rule.program())],
                    path.clone(),
                );
                let key_q = quote(&key);
                let text = match section {
                    "allow" => format!(
                        "@key({key_q})\n@reason({})\npermit(principal, action == Action::\"exec\", resource) when {{ context.command.granting.contains({key_q}) }};",
                        quote(&format!("this task's remit allows `{key}`"))
                    ),
                    "forbid" => format!(
                        "@key({key_q})\n@reason({})\nforbid(principal, action == Action::\"exec\", resource) when {{ context.command.prefixes.contains({key_q}) }};",
                        quote(&reason_forbid(&key))
                    ),
                    _ => {
                        requirements.insert(
                            path.clone(),
                            Requirement {
                                id: path.clone(),
                                by: default_approvers.clone(),
                                count: 1,
                            },
                        );
                        format!(
                            "@key({key_q})\n@approval({})\n@reason({})\nforbid(principal, action == Action::\"exec\", resource) when {{ context.command.prefixes.contains({key_q}) }} unless {{ context.approvals.contains({}) }};",
                            quote(&path),
                            quote(&reason_prompt(&key)),
                            quote(&path)
                        )
                    }
                };
                drafts.push(Draft {
                    id: path,
                    text,
                    origin,
                    condition: None,
                    key: Some(key),
                });
            }
        }

        // Tool calls (MCP and code mode) are allowed unless a policy says otherwise: what a
        // tool does (a program, a request, a push, an action) is decided again as its own
        // effect under the remit's other sections. Raw Cedar forbids or gates tools by name
        // and arguments (`context.call.args`).
        drafts.push(Draft {
            id: "tools.default".into(),
            text: "@reason(\"tools may be called; what each one does is decided as its own effect\")\npermit(principal, action == Action::\"tool_call\", resource);".into(),
            origin: Origin {
                file: file.clone(),
                line: 1,
                column: 1,
                path: Some("tools.default".into()),
            },
            condition: None,
            key: None,
        });

        // [actions.<kind>]
        let mut declared = BTreeMap::new();
        for (kind, grant) in &remit.actions {
            declared.insert(kind.clone(), grant.args.clone());
            let header = format!("[actions.{kind}]");
            let action = format!("Action::{}", quote(kind));
            let description = grant
                .description
                .clone()
                .unwrap_or_else(|| format!("the `{kind}` action"));
            let (permit_text, condition) = match &grant.when {
                Some(when) => {
                    let prefix = format!(
                        "@reason({})\npermit(principal, action == {action}, resource) when {{ ",
                        quote(&format!(
                            "this task's remit allows {description} when `{when}`"
                        ))
                    );
                    let at = prefix.len();
                    (format!("{prefix}{when} }};"), Some(at))
                }
                None => (
                    format!(
                        "@reason({})\npermit(principal, action == {action}, resource);",
                        quote(&format!("this task's remit allows {description}"))
                    ),
                    None,
                ),
            };
            let path = format!("actions.{kind}");
            drafts.push(Draft {
                id: path.clone(),
                text: permit_text,
                origin: origin_of(&[&header], path.clone()),
                condition: condition
                    .map(|at| (at, origin_of(&[&header, "when"], format!("{path}.when")))),
                key: None,
            });
            if let Some(quota) = grant.quota {
                let path = format!("actions.{kind}.quota");
                drafts.push(Draft {
                    id: path.clone(),
                    text: format!(
                        "@reason({})\nforbid(principal, action == {action}, resource) when {{ context.quota.used >= {quota} }};",
                        quote(&format!("the quota of {quota} `{kind}` action{} per task is used up", if quota == 1 { "" } else { "s" }))
                    ),
                    origin: origin_of(&[&header, "quota"], path),
                    condition: None,
                    key: None,
                });
            }
            let approval = match &grant.approve {
                None | Some(ApprovalRule::Simple(false)) => None,
                Some(ApprovalRule::Simple(true)) => Some((default_approvers.clone(), 1)),
                Some(ApprovalRule::Detailed { by, count }) => Some((
                    if by.is_empty() {
                        default_approvers.clone()
                    } else {
                        by.clone()
                    },
                    *count,
                )),
            };
            if let Some((by, count)) = approval {
                let path = format!("actions.{kind}.approve");
                let who = if by.is_empty() {
                    "a human".to_owned()
                } else {
                    by.join(", ")
                };
                requirements.insert(
                    path.clone(),
                    Requirement {
                        id: path.clone(),
                        by,
                        count,
                    },
                );
                drafts.push(Draft {
                    id: path.clone(),
                    text: format!(
                        "@approval({})\n@reason({})\nforbid(principal, action == {action}, resource) unless {{ context.approvals.contains({}) }};",
                        quote(&path),
                        quote(&format!("{description} needs {count} approval{} from {who}", if count == 1 { "" } else { "s" })),
                        quote(&path)
                    ),
                    origin: origin_of(&[&header, "approve"], path),
                    condition: None,
                    key: None,
                });
            }
        }

        // [network], and the credentials of [credentials.github.*] the proxy injects.
        let injected = remit.credentials.github.iter().filter_map(|(name, grant)| {
            grant.inject.as_ref().map(|inject| {
                crate::network::secret_use(
                    format!("credentials.github.{name}"),
                    name,
                    &inject.hosts,
                    vec![format!("[credentials.github.{name}]"), "inject".into()],
                )
            })
        });
        for compiled in crate::network::compile(&remit.network)
            .into_iter()
            .chain(injected)
        {
            let needles: Vec<&str> = compiled.locate.iter().map(String::as_str).collect();
            drafts.push(Draft {
                origin: origin_of(&needles, compiled.id.clone()),
                id: compiled.id,
                text: compiled.text,
                condition: None,
                key: None,
            });
        }

        // Parse compiled policies one by one, so an error points into the remit.
        let mut policies = Vec::new();
        let mut infos = Vec::new();
        for draft in drafts {
            let policy =
                Policy::parse(Some(PolicyId::new(&draft.id)), &draft.text).map_err(|errors| {
                    let offset = first_offset(&errors);
                    error_at_draft(&draft, offset, &one_line(&errors.to_string()))
                })?;
            infos.push(info(&policy, &draft.id, draft.origin.clone(), &draft.text));
            policies.push((policy, Some(draft)));
        }

        // Raw Cedar files beside the remit.
        for name in &remit.policy.cedar {
            let path = loaded.base_dir.join(name);
            let display = path.display().to_string();
            let source = std::fs::read_to_string(&path).map_err(|e| PolicyError {
                file: display.clone(),
                line: 1,
                column: 1,
                message: format!("cannot read: {}", remit_types::remit::io_reason(&e)),
            })?;
            for (index, (start, chunk)) in split_policies(&source).into_iter().enumerate() {
                let at = |offset: usize, message: String| {
                    let (line, column) = line_column(&source, start + offset);
                    PolicyError {
                        file: display.clone(),
                        line,
                        column,
                        message,
                    }
                };
                let parsed = Policy::parse(None, chunk)
                    .map_err(|errors| at(first_offset(&errors), one_line(&errors.to_string())))?;
                if let Some((reserved, _)) = parsed
                    .annotations()
                    .find(|(k, _)| RESERVED_ANNOTATIONS.contains(k))
                {
                    let offset = annotation_offset(chunk, reserved)
                        .unwrap_or_else(|| chunk.len() - chunk.trim_start().len());
                    return Err(at(
                        offset,
                        format!(
                            "annotation `@{reserved}` is reserved for the policies remit compiles itself and may not be used in a Cedar file"
                        ),
                    ));
                }
                let id = parsed
                    .annotation("id")
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("{name}#{}", index + 1));
                if infos.iter().any(|i: &PolicyInfo| i.id == id) {
                    return Err(at(0, format!("policy id `{id}` is used twice")));
                }
                let policy = parsed.new_id(PolicyId::new(&id));
                let (line, column) =
                    line_column(&source, start + chunk.len() - chunk.trim_start().len());
                let origin = Origin {
                    file: display.clone(),
                    line,
                    column,
                    path: None,
                };
                if let Some(approval) = policy.annotation("approval") {
                    requirements
                        .entry(approval.to_owned())
                        .or_insert_with(|| Requirement {
                            id: approval.to_owned(),
                            by: default_approvers.clone(),
                            count: 1,
                        });
                }
                infos.push(info(&policy, &id, origin.clone(), chunk));
                policies.push((
                    policy,
                    Some(Draft {
                        id,
                        text: source.clone(),
                        origin: Origin {
                            line: 1,
                            column: 1,
                            ..origin
                        },
                        condition: Some((
                            start,
                            Origin {
                                file: display.clone(),
                                line: 1,
                                column: 1,
                                path: None,
                            },
                        )),
                        // Raw Cedar is indexed by its scope alone, never by annotations.
                        key: None,
                    }),
                ));
            }
        }

        let mut full = PolicySet::new();
        for (policy, _) in &policies {
            full.add(policy.clone()).map_err(|e| PolicyError {
                file: loaded.origin.clone(),
                line: 1,
                column: 1,
                message: one_line(&e.to_string()),
            })?;
        }
        // The schema, then strict validation.
        let schema = if validate {
            let schema_source = schema_text(&declared);
            let (schema, _) =
                Schema::from_cedarschema_str(&schema_source).map_err(|e| PolicyError {
                    file: loaded.origin.clone(),
                    line: 1,
                    column: 1,
                    message: format!(
                        "the remit's actions do not make a valid schema: {}",
                        one_line(&e.to_string())
                    ),
                })?;
            let validation = Validator::new(schema.clone()).validate(&full, ValidationMode::Strict);
            if let Some(error) = validation.validation_errors().next() {
                let id = error.policy_id().to_string();
                let message = one_line(&error.to_string());
                let offset = error
                    .labels()
                    .and_then(|mut l| l.next())
                    .map(|l| l.offset());
                let draft = policies
                    .iter()
                    .find(|(p, _)| p.id().to_string() == id)
                    .and_then(|(_, d)| d.as_ref());
                return Err(match draft {
                    Some(draft) => error_at_draft(draft, offset.unwrap_or(0), &message),
                    None => PolicyError {
                        file: loaded.origin.clone(),
                        line: 1,
                        column: 1,
                        message,
                    },
                });
            }
            Some(schema)
        } else {
            None
        };

        let mut action_parents: HashMap<String, Vec<String>> = HashMap::new();
        for kind in declared
            .keys()
            .map(String::as_str)
            .chain(remit_types::effect::STANDARD_ACTIONS)
        {
            action_parents.insert(kind.to_owned(), vec!["action".to_owned()]);
        }
        let keys: Vec<Option<String>> = policies
            .iter()
            .map(|(_, d)| d.as_ref().and_then(|d| d.key.clone()))
            .collect();
        let policies: Vec<Policy> = policies.into_iter().map(|(p, _)| p).collect();
        let mut core = Core {
            keys,
            full: Arc::new(full),
            slices: HashMap::new(),
            cache: Mutex::new(HashMap::new()),
            entities: Mutex::new(None),
            action_parents,
            infos,
            policies,
        };
        core.index();
        Ok((core, schema, requirements))
    }
}

impl Core {
    fn index(&mut self) {
        let mut actions: Vec<String> = vec![
            "exec".into(),
            "http_request".into(),
            "git_push".into(),
            "secret_use".into(),
            "tool_call".into(),
        ];
        actions.extend(self.action_parents.keys().cloned());
        for (i, policy) in self.policies.iter().enumerate() {
            let applies: Vec<String> = match policy.action_constraint() {
                ActionConstraint::Any => actions.clone(),
                ActionConstraint::Eq(a) => self.expand_action(a.id().unescaped(), &actions),
                ActionConstraint::In(list) => list
                    .iter()
                    .flat_map(|a| self.expand_action(a.id().unescaped(), &actions))
                    .collect(),
            };
            // Only the compiler's own key, never an annotation: a raw policy could carry any
            // annotation, and indexing it by one would hide it from requests it applies to.
            let key = self.keys.get(i).cloned().flatten();
            let resource = match policy.resource_constraint() {
                ResourceConstraint::Eq(r) => Some(r),
                _ => None,
            };
            let principal = match policy.principal_constraint() {
                PrincipalConstraint::Eq(p) | PrincipalConstraint::In(p) => Some(p),
                _ => None,
            };
            for action in applies {
                let slice = self.slices.entry(action).or_default();
                match (&key, &resource, &principal) {
                    (Some(k), _, _) => slice.by_key.entry(k.clone()).or_default().push(i),
                    (None, Some(r), _) => slice.by_resource.entry(r.clone()).or_default().push(i),
                    (None, None, Some(p)) => {
                        slice.by_principal.entry(p.clone()).or_default().push(i)
                    }
                    (None, None, None) => slice.always.push(i),
                }
            }
        }
    }

    fn expand_action(&self, id: &str, all: &[String]) -> Vec<String> {
        if id == "action" {
            all.iter()
                .filter(|a| {
                    self.action_parents
                        .get(*a)
                        .is_some_and(|p| p.iter().any(|x| x == "action"))
                })
                .cloned()
                .collect()
        } else {
            vec![id.to_owned()]
        }
    }
}

impl Engine {
    /// Every policy, in load order.
    pub fn policies(&self) -> &[PolicyInfo] {
        self.core().map(|c| c.infos.as_slice()).unwrap_or(&[])
    }

    /// The Cedar schema text this remit's policies are validated against.
    pub fn schema_text(&self) -> String {
        schema_text(&self.declared)
    }

    /// A requirement by id.
    pub fn requirement(&self, id: &str) -> Option<&Requirement> {
        self.requirements.get(id)
    }

    /// Whether `human` (an OS user name) is one of the approvers `requirement` names,
    /// directly or through a group.
    pub fn may_approve(&self, requirement: &Requirement, human: &str) -> bool {
        requirement.by.is_empty()
            || requirement.by.iter().any(|name| {
                name == human
                    || self
                        .groups
                        .get(name)
                        .is_some_and(|members| members.iter().any(|m| m == human))
            })
    }

    /// Typed actions the remit declares, with their arguments.
    pub fn declared_actions(&self) -> &BTreeMap<String, Vec<String>> {
        &self.declared
    }

    /// Check an effect against what the remit declares (typed action names and arguments).
    pub fn check_request(&self, effect: &Effect) -> Result<(), RequestError> {
        if let Effect::Action { kind, args, .. } = effect {
            let standard = remit_types::effect::STANDARD_ACTIONS.contains(&kind.as_str());
            static NONE: Vec<String> = Vec::new();
            let Some(declared) = self.declared.get(kind).or(standard.then_some(&NONE)) else {
                let known: Vec<&str> = self.declared.keys().map(String::as_str).collect();
                return Err(RequestError::UnknownAction(
                    kind.clone(),
                    if known.is_empty() {
                        "no actions".into()
                    } else {
                        known.join(", ")
                    },
                ));
            };
            for name in args.keys() {
                if !declared.contains(name) {
                    return Err(RequestError::UnknownArgument(
                        kind.clone(),
                        name.clone(),
                        if declared.is_empty() {
                            "no arguments".into()
                        } else {
                            declared.join(", ")
                        },
                    ));
                }
            }
        }
        Ok(())
    }

    /// Decide an effect with the sliced index.
    pub fn decide(
        &self,
        principal: &Principal,
        effect: &Effect,
        situation: &Situation,
    ) -> Decision {
        let facts = exec_facts(effect);
        self.decide_with(principal, effect, facts.as_ref(), situation, false)
    }

    /// Decide a program start (with what the exec observer knows beyond argv).
    pub fn decide_exec(
        &self,
        principal: &Principal,
        facts: &ExecFacts,
        cwd: &str,
        situation: &Situation,
    ) -> Decision {
        let effect = Effect::Exec {
            argv: facts.argv.clone(),
            cwd: cwd.to_owned(),
        };
        self.decide_with(principal, &effect, Some(facts), situation, false)
    }

    /// Decide an effect by evaluating every policy (the reference the sliced path must
    /// equal; used by tests and `explain`).
    pub fn decide_full(
        &self,
        principal: &Principal,
        effect: &Effect,
        situation: &Situation,
    ) -> Decision {
        let facts = exec_facts(effect);
        self.decide_with(principal, effect, facts.as_ref(), situation, true)
    }

    fn decide_with(
        &self,
        principal: &Principal,
        effect: &Effect,
        facts: Option<&ExecFacts>,
        situation: &Situation,
        full: bool,
    ) -> Decision {
        let words = facts.map(command_words);
        // Without raw Cedar, exec decisions come from `[commands]` alone and requests from
        // `[network]` alone: decide them from the rules directly, exactly as their compiled
        // Cedar policies would (the property tests hold the two equal), without loading
        // Cedar at all.
        if !full && !self.raw_cedar {
            match (effect, words.as_ref()) {
                (Effect::Exec { .. }, Some(w)) => return self.commands_decision(w, situation),
                (
                    Effect::HttpRequest {
                        host,
                        port,
                        method,
                        path,
                    },
                    _,
                ) => return self.request_decision(effect, host, *port, method, path),
                _ => {}
            }
        }
        let core = match self.core() {
            Ok(c) => c,
            Err(e) => {
                return Decision::Deny {
                    policy: "remit".into(),
                    reason: format!(
                        "the remit's policy could not be loaded ({e}); nothing is allowed"
                    ),
                };
            }
        };
        let prepared = match self.prepare(core, principal, effect, words.as_ref(), situation) {
            Ok(p) => p,
            Err(reason) => {
                return Decision::Deny {
                    policy: "remit".into(),
                    reason,
                };
            }
        };
        let set = if full {
            Arc::clone(&core.full)
        } else {
            self.slice_for(
                core,
                effect.kind(),
                &prepared.resource,
                principal,
                words.as_ref(),
            )
        };
        let outcome = self.evaluate(&set, &prepared, &situation.approvals);
        match outcome {
            Evaluated::Allow(policies) => Decision::Allow { policies },
            Evaluated::Error(policy, error) => Decision::Deny {
                policy: policy.clone(),
                reason: format!(
                    "policy `{policy}` could not be evaluated ({error}); an error is a denial"
                ),
            },
            Evaluated::Deny(forbids) if forbids.is_empty() => {
                let reason = match effect {
                    Effect::Action { kind, .. } => match self
                        .loaded
                        .remit
                        .actions
                        .get(kind)
                        .and_then(|g| g.when.as_ref())
                    {
                        Some(when) => format!(
                            "this task's remit allows `{kind}` only when `{when}` (actions.{kind}.when)"
                        ),
                        None => default_reason(effect, words.as_ref()),
                    },
                    _ => default_reason(effect, words.as_ref()),
                };
                Decision::Deny {
                    policy: "default".into(),
                    reason,
                }
            }
            Evaluated::Deny(forbids) => {
                let gates: Vec<&PolicyInfo> =
                    forbids.iter().filter_map(|id| info_of(core, id)).collect();
                let all_gated =
                    gates.len() == forbids.len() && gates.iter().all(|g| g.approval.is_some());
                if all_gated {
                    // Would approving everything they ask for allow the effect?
                    let mut approvals = situation.approvals.clone();
                    for gate in &gates {
                        if let Some(a) = &gate.approval {
                            approvals.insert(a.clone());
                        }
                    }
                    if let Evaluated::Allow(_) = self.evaluate(&set, &prepared, &approvals) {
                        let mut requirements: Vec<Requirement> = gates
                            .iter()
                            .filter_map(|g| g.approval.as_ref())
                            .filter(|a| !situation.approvals.contains(*a))
                            .filter_map(|a| self.requirements.get(a).cloned())
                            .collect();
                        requirements.dedup();
                        return Decision::NeedsApproval {
                            requirements,
                            policies: forbids,
                        };
                    }
                }
                let first = forbids
                    .iter()
                    .find(|id| info_of(core, id).is_some_and(|i| i.approval.is_none()))
                    .or(forbids.first())
                    .cloned()
                    .unwrap_or_default();
                let reason = info_of(core, &first)
                    .and_then(|i| i.reason.clone())
                    .unwrap_or_else(|| format!("policy `{first}` forbids {}", effect.describe()));
                Decision::Deny {
                    policy: first,
                    reason,
                }
            }
        }
    }

    fn slice_for(
        &self,
        core: &Core,
        kind: &str,
        resource: &EntityUid,
        principal: &Principal,
        words: Option<&CommandWords>,
    ) -> Arc<PolicySet> {
        let Some(slice) = core.slices.get(kind) else {
            return Arc::new(PolicySet::new());
        };
        let mut chosen: Vec<usize> = slice.always.clone();
        if let Some(words) = words {
            for prefix in &words.prefixes {
                if let Some(ids) = slice.by_key.get(prefix) {
                    chosen.extend(ids);
                }
            }
        }
        if let Some(ids) = slice.by_resource.get(resource) {
            chosen.extend(ids);
        }
        for p in [uid("Task", &principal.task), uid("Agent", &principal.agent)]
            .into_iter()
            .flatten()
        {
            if let Some(ids) = slice.by_principal.get(&p) {
                chosen.extend(ids);
            }
        }
        chosen.sort_unstable();
        chosen.dedup();
        let Ok(mut cache) = core.cache.lock() else {
            return Arc::new(build_set(core, &chosen));
        };
        if let Some(set) = cache.get(&chosen) {
            return Arc::clone(set);
        }
        if cache.len() > 4096 {
            cache.clear();
        }
        let set = Arc::new(build_set(core, &chosen));
        cache.insert(chosen, Arc::clone(&set));
        set
    }

    fn prepare(
        &self,
        core: &Core,
        principal: &Principal,
        effect: &Effect,
        words: Option<&CommandWords>,
        situation: &Situation,
    ) -> Result<Prepared, String> {
        let kind = effect.kind();
        let action = uid("Action", kind).ok_or("bad action")?;
        let (resource_id, detail): (String, (&str, RestrictedExpression)) = match effect {
            Effect::Exec { argv, cwd } => {
                let w = words.cloned().unwrap_or_else(|| {
                    command_words(&ExecFacts {
                        path: argv.first().cloned().unwrap_or_default(),
                        argv: argv.clone(),
                        ..ExecFacts::default()
                    })
                });
                (
                    w.program.clone(),
                    (
                        "command",
                        RestrictedExpression::new_record([
                            (
                                "program".to_owned(),
                                RestrictedExpression::new_string(w.program.clone()),
                            ),
                            (
                                "line".to_owned(),
                                RestrictedExpression::new_string(w.line.clone()),
                            ),
                            (
                                "prefixes".to_owned(),
                                RestrictedExpression::new_set(
                                    w.prefixes
                                        .iter()
                                        .map(|p| RestrictedExpression::new_string(p.clone())),
                                ),
                            ),
                            (
                                "granting".to_owned(),
                                RestrictedExpression::new_set(
                                    w.granting
                                        .iter()
                                        .map(|p| RestrictedExpression::new_string(p.clone())),
                                ),
                            ),
                            (
                                "cwd".to_owned(),
                                RestrictedExpression::new_string(cwd.clone()),
                            ),
                        ])
                        .map_err(|e| e.to_string())?,
                    ),
                )
            }
            Effect::HttpRequest {
                host,
                port,
                method,
                path,
            } => (
                host.clone(),
                (
                    "request",
                    RestrictedExpression::new_record([
                        (
                            "host".to_owned(),
                            RestrictedExpression::new_string(host.clone()),
                        ),
                        (
                            "port".to_owned(),
                            RestrictedExpression::new_long(i64::from(*port)),
                        ),
                        (
                            "method".to_owned(),
                            RestrictedExpression::new_string(method.clone()),
                        ),
                        (
                            "path".to_owned(),
                            RestrictedExpression::new_string(path.clone()),
                        ),
                    ])
                    .map_err(|e| e.to_string())?,
                ),
            ),
            Effect::GitPush {
                remote,
                reference,
                old,
                new,
                force,
                new_branch,
            } => (
                reference.clone(),
                (
                    "push",
                    RestrictedExpression::new_record([
                        (
                            "remote".to_owned(),
                            RestrictedExpression::new_string(remote.clone()),
                        ),
                        (
                            "ref".to_owned(),
                            RestrictedExpression::new_string(reference.clone()),
                        ),
                        (
                            "old".to_owned(),
                            RestrictedExpression::new_string(old.clone()),
                        ),
                        (
                            "new".to_owned(),
                            RestrictedExpression::new_string(new.clone()),
                        ),
                        ("force".to_owned(), RestrictedExpression::new_bool(*force)),
                        (
                            "new_branch".to_owned(),
                            RestrictedExpression::new_bool(*new_branch),
                        ),
                    ])
                    .map_err(|e| e.to_string())?,
                ),
            ),
            Effect::SecretUse { name, destination } => (
                name.clone(),
                (
                    "use",
                    RestrictedExpression::new_record([
                        (
                            "name".to_owned(),
                            RestrictedExpression::new_string(name.clone()),
                        ),
                        (
                            "destination".to_owned(),
                            RestrictedExpression::new_string(destination.clone()),
                        ),
                    ])
                    .map_err(|e| e.to_string())?,
                ),
            ),
            Effect::ToolCall {
                via,
                tool,
                args,
                script,
            } => (
                tool.clone(),
                (
                    "call",
                    RestrictedExpression::new_record([
                        (
                            "via".to_owned(),
                            RestrictedExpression::new_string(via.clone()),
                        ),
                        (
                            "tool".to_owned(),
                            RestrictedExpression::new_string(tool.clone()),
                        ),
                        (
                            "script".to_owned(),
                            RestrictedExpression::new_string(script.clone()),
                        ),
                        (
                            "args".to_owned(),
                            RestrictedExpression::new_record(args.iter().map(|(k, v)| {
                                (k.clone(), RestrictedExpression::new_string(v.clone()))
                            }))
                            .map_err(|e| e.to_string())?,
                        ),
                    ])
                    .map_err(|e| e.to_string())?,
                ),
            ),
            Effect::Action { kind, args, .. } => {
                self.check_request(effect).map_err(|e| e.to_string())?;
                let declared = self.declared.get(kind).cloned().unwrap_or_default();
                let fields = declared.iter().map(|name| {
                    (
                        name.clone(),
                        RestrictedExpression::new_string(
                            args.get(name).cloned().unwrap_or_default(),
                        ),
                    )
                });
                (
                    kind.clone(),
                    (
                        "args",
                        RestrictedExpression::new_record(fields).map_err(|e| e.to_string())?,
                    ),
                )
            }
        };
        let resource = uid(resource_type(kind), &resource_id).ok_or("bad resource")?;
        let seconds = situation.unix;
        let time = RestrictedExpression::new_record([
            ("unix".to_owned(), RestrictedExpression::new_long(seconds)),
            (
                "hour".to_owned(),
                RestrictedExpression::new_long(seconds.rem_euclid(86_400) / 3600),
            ),
            // 1970-01-01 was a Thursday; Monday is 0.
            (
                "weekday".to_owned(),
                RestrictedExpression::new_long((seconds.div_euclid(86_400) + 3).rem_euclid(7)),
            ),
        ])
        .map_err(|e| e.to_string())?;
        let quota = RestrictedExpression::new_record([(
            "used".to_owned(),
            RestrictedExpression::new_long(i64::try_from(situation.quota_used).unwrap_or(i64::MAX)),
        )])
        .map_err(|e| e.to_string())?;
        let task = uid("Task", &principal.task).ok_or("bad task id")?;
        let entities = entities_for(core, principal, &task)?;
        Ok(Prepared {
            task,
            action,
            resource,
            entities,
            common: vec![
                ("time".to_owned(), time),
                ("quota".to_owned(), quota),
                (detail.0.to_owned(), detail.1),
            ],
        })
    }

    fn evaluate(
        &self,
        set: &PolicySet,
        prepared: &Prepared,
        approvals: &BTreeSet<String>,
    ) -> Evaluated {
        let mut pairs = prepared.common.clone();
        pairs.push((
            "approvals".to_owned(),
            RestrictedExpression::new_set(
                approvals
                    .iter()
                    .map(|a| RestrictedExpression::new_string(a.clone())),
            ),
        ));
        let context = match Context::from_pairs(pairs) {
            Ok(c) => c,
            Err(e) => return Evaluated::Error("remit".into(), one_line(&e.to_string())),
        };
        let request = match Request::new(
            prepared.task.clone(),
            prepared.action.clone(),
            prepared.resource.clone(),
            context,
            None,
        ) {
            Ok(r) => r,
            Err(e) => return Evaluated::Error("remit".into(), one_line(&e.to_string())),
        };
        let response = Authorizer::new().is_authorized(&request, set, &prepared.entities);
        // Cedar skips a policy whose evaluation errors; remit treats any error as a denial.
        if let Some(error) = response.diagnostics().errors().next() {
            let text = one_line(&error.to_string());
            let policy = text
                .split('`')
                .nth(1)
                .map(str::to_owned)
                .unwrap_or_else(|| "unknown".into());
            return Evaluated::Error(policy, text);
        }
        let mut reasons: Vec<String> = response
            .diagnostics()
            .reason()
            .map(|id| id.to_string())
            .collect();
        reasons.sort();
        match response.decision() {
            CedarDecision::Allow => Evaluated::Allow(reasons),
            CedarDecision::Deny => Evaluated::Deny(reasons),
        }
    }

    /// Which policies apply to an effect and why, as lines for people.
    pub fn explain(
        &self,
        principal: &Principal,
        effect: &Effect,
        situation: &Situation,
    ) -> Vec<String> {
        let facts = exec_facts(effect);
        let words = facts.as_ref().map(command_words);
        let mut lines = Vec::new();
        if let Some(w) = &words {
            lines.push(format!(
                "command words: {}",
                w.prefixes
                    .iter()
                    .map(|p| format!("`{p}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let core = match self.core() {
            Ok(c) => c,
            Err(e) => {
                lines.push(format!("the remit's policy could not be loaded: {e}"));
                return lines;
            }
        };
        let Ok(prepared) = self.prepare(core, principal, effect, words.as_ref(), situation) else {
            lines.push("the effect cannot be evaluated".into());
            return lines;
        };
        for (i, info) in core.infos.iter().enumerate() {
            let mut single = PolicySet::new();
            if let Some(p) = core.policies.get(i) {
                let _ = single.add(p.clone());
            }
            let matched = match self.evaluate(&single, &prepared, &situation.approvals) {
                Evaluated::Allow(r) | Evaluated::Deny(r) => !r.is_empty(),
                Evaluated::Error(_, e) => {
                    lines.push(format!("{} ({}): error: {e}", info.id, info.origin));
                    continue;
                }
            };
            if matched {
                lines.push(format!(
                    "{} {} ({}): {}",
                    if info.permit { "permit" } else { "forbid" },
                    info.id,
                    info.origin,
                    info.reason.clone().unwrap_or_default()
                ));
            }
        }
        lines
    }

    fn commands_decision(&self, words: &CommandWords, situation: &Situation) -> Decision {
        use crate::commands::CommandVerdict as V;
        let id = |section: V, i: usize| match section {
            V::Allow => format!("commands.allow[{i}]"),
            V::Prompt => format!("commands.prompt[{i}]"),
            V::Forbid => format!("commands.forbid[{i}]"),
        };
        let matched = self.commands.matching(words);
        let mut permits: Vec<String> = Vec::new();
        if self.commands.default_allows() {
            permits.push("commands.default".into());
        }
        let mut forbids: Vec<(String, V, usize)> = Vec::new();
        for (section, i) in matched {
            match section {
                V::Allow => permits.push(id(section, i)),
                V::Forbid => forbids.push((id(section, i), section, i)),
                V::Prompt => {
                    let pid = id(section, i);
                    if !situation.approvals.contains(&pid) {
                        forbids.push((pid, section, i));
                    }
                }
            }
        }
        permits.sort();
        forbids.sort_by(|a, b| a.0.cmp(&b.0));
        if forbids.is_empty() {
            return if permits.is_empty() {
                Decision::Deny {
                    policy: "default".into(),
                    reason: default_reason(
                        &Effect::Exec {
                            argv: Vec::new(),
                            cwd: String::new(),
                        },
                        Some(words),
                    ),
                }
            } else {
                Decision::Allow { policies: permits }
            };
        }
        let all_gated = forbids.iter().all(|(_, s, _)| *s == V::Prompt);
        if all_gated && !permits.is_empty() {
            let mut requirements: Vec<Requirement> = forbids
                .iter()
                .filter_map(|(pid, _, _)| self.requirements.get(pid).cloned())
                .collect();
            requirements.dedup();
            return Decision::NeedsApproval {
                requirements,
                policies: forbids.into_iter().map(|(pid, _, _)| pid).collect(),
            };
        }
        let (first, section, i) = forbids
            .iter()
            .find(|(_, s, _)| *s != V::Prompt)
            .or(forbids.first())
            .cloned()
            .unwrap_or_else(|| ("default".into(), V::Forbid, 0));
        let key = self
            .commands
            .rule(section, i)
            .map(|r| r.0.join(" "))
            .unwrap_or_default();
        let reason = match section {
            V::Prompt => reason_prompt(&key),
            _ => reason_forbid(&key),
        };
        Decision::Deny {
            policy: first,
            reason,
        }
    }

    fn request_decision(
        &self,
        effect: &Effect,
        host: &str,
        port: u16,
        method: &str,
        path: &str,
    ) -> Decision {
        use crate::network::RequestVerdict;
        match self.requests.decide(host, port, method, path) {
            RequestVerdict::Allow(policies) => Decision::Allow { policies },
            RequestVerdict::Forbid { policy, reason } => Decision::Deny { policy, reason },
            RequestVerdict::Default => Decision::Deny {
                policy: "default".into(),
                reason: default_reason(effect, None),
            },
        }
    }

    /// The remit's `[[test]]` entries and their outcomes.
    pub fn test_outcomes(&self) -> Vec<TestOutcome> {
        (0..self.tests.len()).map(|i| self.run_test(i)).collect()
    }

    fn run_test(&self, i: usize) -> TestOutcome {
        let (name, line, test) = &self.tests[i];
        let principal = Principal {
            task: "test".into(),
            agent: "test".into(),
            owner: String::new(),
            requester: String::new(),
            remit: String::new(),
            risk: String::new(),
        };
        let mut situation = Situation {
            unix: 0,
            ..Situation::default()
        };
        if test.approved {
            situation.approvals = self.requirements.keys().cloned().collect();
        }
        let decision = match self.check_request(&test.effect) {
            Ok(()) => self.decide(&principal, &test.effect, &situation),
            Err(e) => Decision::Deny {
                policy: "remit".into(),
                reason: e.to_string(),
            },
        };
        TestOutcome {
            name: name.clone(),
            line: *line,
            expected: test.expect,
            decision,
        }
    }

    /// Whether the policy was validated against remit's schema at load.
    pub fn validated(&self) -> bool {
        self.schema.is_some()
    }
}

fn info_of<'a>(core: &'a Core, id: &str) -> Option<&'a PolicyInfo> {
    core.infos.iter().find(|i| i.id == id)
}

fn build_set(core: &Core, chosen: &[usize]) -> PolicySet {
    let mut set = PolicySet::new();
    for i in chosen {
        if let Some(p) = core.policies.get(*i) {
            // INVARIANT: ids are unique in the full set, so adding cannot fail.
            let _ = set.add(p.clone());
        }
    }
    set
}

/// The principal's entities (its task and agent) and the action hierarchy (every typed
/// action is in `Action::"action"`, so `action in Action::"action"` matches them), built once
/// per principal.
fn entities_for(
    core: &Core,
    principal: &Principal,
    task: &EntityUid,
) -> Result<Arc<Entities>, String> {
    if let Ok(cache) = core.entities.lock()
        && let Some((p, e)) = cache.as_ref()
        && p == principal
    {
        return Ok(Arc::clone(e));
    }
    let agent = uid("Agent", &principal.agent).ok_or("bad agent name")?;
    let mut actions = Vec::with_capacity(core.action_parents.len());
    for (kind, parents) in &core.action_parents {
        let action = uid("Action", kind).ok_or("bad action")?;
        let parents = parents
            .iter()
            .map(|p| uid("Action", p).ok_or("bad action"))
            .collect::<Result<_, _>>()?;
        actions.push(Entity::new_no_attrs(action, parents));
    }
    let entities = Entities::from_entities(
        actions.into_iter().chain([
            Entity::new(
                agent.clone(),
                [
                    (
                        "owner".to_owned(),
                        RestrictedExpression::new_string(principal.owner.clone()),
                    ),
                    (
                        "risk".to_owned(),
                        RestrictedExpression::new_string(principal.risk.clone()),
                    ),
                ]
                .into(),
                Default::default(),
            )
            .map_err(|e| e.to_string())?,
            Entity::new(
                task.clone(),
                [
                    (
                        "agent".to_owned(),
                        RestrictedExpression::new_string(principal.agent.clone()),
                    ),
                    (
                        "owner".to_owned(),
                        RestrictedExpression::new_string(principal.owner.clone()),
                    ),
                    (
                        "requester".to_owned(),
                        RestrictedExpression::new_string(principal.requester.clone()),
                    ),
                    (
                        "remit".to_owned(),
                        RestrictedExpression::new_string(principal.remit.clone()),
                    ),
                ]
                .into(),
                [agent].into(),
            )
            .map_err(|e| e.to_string())?,
        ]),
        None,
    )
    .map_err(|e| e.to_string())?;
    let entities = Arc::new(entities);
    if let Ok(mut cache) = core.entities.lock() {
        *cache = Some((principal.clone(), Arc::clone(&entities)));
    }
    Ok(entities)
}

struct Prepared {
    task: EntityUid,
    action: EntityUid,
    resource: EntityUid,
    entities: Arc<Entities>,
    common: Vec<(String, RestrictedExpression)>,
}

enum Evaluated {
    Allow(Vec<String>),
    Deny(Vec<String>),
    Error(String, String),
}

fn exec_facts(effect: &Effect) -> Option<ExecFacts> {
    match effect {
        Effect::Exec { argv, .. } => Some(ExecFacts {
            path: argv.first().cloned().unwrap_or_default(),
            argv: argv.clone(),
            ..ExecFacts::default()
        }),
        _ => None,
    }
}

fn default_reason(effect: &Effect, words: Option<&CommandWords>) -> String {
    match (effect, words) {
        (Effect::Exec { .. }, Some(w)) => format!(
            "this task's remit only allows the commands it lists, and `{}` is not one of them",
            w.program
        ),
        (Effect::Action { kind, .. }, _) => {
            format!("this task's remit does not grant the `{kind}` action")
        }
        (Effect::HttpRequest { host, .. }, _) => {
            format!("this task's remit grants no network access to `{host}`")
        }
        (Effect::GitPush { reference, .. }, _) => {
            format!("this task's remit does not allow pushing to `{reference}`")
        }
        (Effect::SecretUse { name, .. }, _) => {
            format!("this task's remit does not grant the secret `{name}`")
        }
        (Effect::ToolCall { tool, .. }, _) => {
            format!("this task's remit does not allow the tool `{tool}`")
        }
        (Effect::Exec { .. }, None) => "this task's remit does not allow this command".into(),
    }
}

fn reason_forbid(key: &str) -> String {
    format!("this task's remit forbids `{key}` (commands.forbid)")
}

fn reason_prompt(key: &str) -> String {
    format!("`{key}` needs a human's approval each time (commands.prompt)")
}

fn expectation_label(e: Expectation) -> &'static str {
    match e {
        Expectation::Allow => "allow",
        Expectation::Deny => "deny",
        Expectation::NeedsApproval => "needs-approval",
    }
}

fn info(policy: &Policy, id: &str, origin: Origin, text: &str) -> PolicyInfo {
    PolicyInfo {
        id: id.to_owned(),
        permit: matches!(policy.effect(), cedar_policy::Effect::Permit),
        origin,
        reason: policy.annotation("reason").map(str::to_owned),
        approval: policy.annotation("approval").map(str::to_owned),
        text: text.trim().to_owned(),
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn first_offset(errors: &cedar_policy::ParseErrors) -> usize {
    errors
        .labels()
        .and_then(|mut l| l.next())
        .map(|l| l.offset())
        .unwrap_or(0)
}

/// An error inside a policy mapped to where its text came from.
fn error_at_draft(draft: &Draft, offset: usize, message: &str) -> PolicyError {
    match &draft.condition {
        // A user-written condition inside a compiled policy: point into the remit at the
        // condition, or (raw Cedar files) into the file at the error.
        Some((start, origin)) if draft.origin.path.is_none() => {
            let (line, column) = line_column(&draft.text, start + offset);
            PolicyError {
                file: origin.file.clone(),
                line,
                column,
                message: message.to_owned(),
            }
        }
        Some((_, origin)) => PolicyError {
            file: origin.file.clone(),
            line: origin.line,
            column: origin.column,
            message: format!("{}: {message}", origin.path.clone().unwrap_or_default()),
        },
        None => PolicyError {
            file: draft.origin.file.clone(),
            line: draft.origin.line,
            column: draft.origin.column,
            message: format!(
                "{}: {message}",
                draft.origin.path.clone().unwrap_or_default()
            ),
        },
    }
}

/// If a string literal or a `//` comment starts at `i`, the index just past it.
fn skip_literal(bytes: &[u8], mut i: usize) -> Option<usize> {
    match bytes.get(i)? {
        b'"' => {
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                if bytes[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            Some(i + 1)
        }
        b'/' if bytes.get(i + 1) == Some(&b'/') => {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
            Some(i + 1)
        }
        _ => None,
    }
}

/// Where annotation `@name` starts in one policy's text, skipping strings and comments.
fn annotation_offset(policy: &str, name: &str) -> Option<usize> {
    let bytes = policy.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if let Some(next) = skip_literal(bytes, i) {
            i = next;
            continue;
        }
        if bytes[i] == b'@' {
            let ident = policy[i + 1..].trim_start();
            let len = ident
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(ident.len());
            if &ident[..len] == name {
                return Some(i);
            }
        }
        i += 1;
    }
    None
}

/// Split Cedar source into policies at top-level `;`, keeping each one's start offset.
/// Strings and comments are skipped, so a `;` inside them does not split.
pub fn split_policies(source: &str) -> Vec<(usize, &str)> {
    let bytes = source.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(next) = skip_literal(bytes, i) {
            i = next;
            continue;
        }
        if bytes[i] == b';' {
            out.push((start, &source[start..=i]));
            start = i + 1;
        }
        i += 1;
    }
    let rest = &source[start.min(source.len())..];
    if !strip_comments(rest).trim().is_empty() {
        out.push((start, rest));
    }
    out
}

fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    /// The index files a policy under a command word only when the compiler says so; the
    /// same annotation on any other policy (a raw one, were it ever to get past the load
    /// check) leaves it where its scope puts it.
    #[test]
    fn the_index_never_trusts_an_annotation() {
        let parse = |id: &str, text: &str| Policy::parse(Some(PolicyId::new(id)), text).unwrap();
        let mut core = Core {
            policies: vec![
                parse(
                    "raw",
                    "@key(\"zzz\")\nforbid(principal, action == Action::\"exec\", resource);",
                ),
                parse(
                    "commands.forbid[0]",
                    "@key(\"git push\")\nforbid(principal, action == Action::\"exec\", resource) when { context.command.prefixes.contains(\"git push\") };",
                ),
                parse(
                    "raw-program",
                    "@key(\"zzz\")\nforbid(principal, action, resource == Program::\"sh\");",
                ),
            ],
            keys: vec![None, Some("git push".into()), None],
            infos: Vec::new(),
            full: Arc::new(PolicySet::new()),
            slices: HashMap::new(),
            cache: Mutex::new(HashMap::new()),
            entities: Mutex::new(None),
            action_parents: HashMap::new(),
        };
        core.index();
        let exec = &core.slices["exec"];
        assert_eq!(exec.always, vec![0]);
        assert_eq!(exec.by_key.len(), 1);
        assert_eq!(exec.by_key["git push"], vec![1]);
        assert_eq!(exec.by_resource[&uid("Program", "sh").unwrap()], vec![2]);
    }

    #[test]
    fn annotations_are_found_outside_strings_and_comments() {
        let text =
            "// @key(\"a\")\n@reason(\"@key\") @ key(\"b\")\npermit(principal, action, resource);";
        assert_eq!(annotation_offset(text, "key"), text.find("@ key"));
        assert_eq!(annotation_offset(text, "reason"), text.find("@reason"));
        assert_eq!(annotation_offset(text, "id"), None);
        assert_eq!(
            annotation_offset("@keys(\"x\") permit(principal, action, resource);", "key"),
            None
        );
    }
}
