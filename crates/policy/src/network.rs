//! `[network]` compiled to Cedar policies on `http_request` (and the effects egress derives
//! from requests: `git_push`, `secret_use`).
//!
//! | remit | Cedar |
//! |---|---|
//! | `allow = ["h"]` | `permit` on `Host::"h"` when the port is 443 |
//! | `allow = ["*.s:8443"]` | `permit` when `context.request.host like "*.s"` and the port is 8443 |
//! | `[[network.rule]]` | a `permit` for its ports, methods and paths, and one `forbid` per host that refuses everything else there with a reason naming what is allowed |
//! | `[network.git] push` | `permit` on `git_push` per ref pattern; `forbid` of force pushes and deletions unless `force`/`delete` |
//! | `[[network.credential]]` | `permit` on `secret_use` of `Secret::"name"` toward its `inject.hosts` |
//!
//! Host-scoped policies use `resource == Host::"…"` where the host is one name, so the
//! engine's index evaluates only the policies of the requested host.
//!
//! The `http_request` policies are built once as data (`RequestPolicy`) from which both
//! their Cedar text and a direct decision (`RequestRules`) are made. When a remit adds no
//! raw Cedar they are the only policies on `http_request`, so the engine decides requests
//! from the data without Cedar (about a tenth of the cost: the proxy decides every request);
//! a property test holds the direct decision equal to Cedar's on random remits and requests.

use std::fmt::Write as _;

use remit_types::network::{DEFAULT_PORT, HostName, HostPattern, Network, NetworkRule, glob_match};

/// One compiled policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    /// Policy id, a remit path (`network.allow[0]`).
    pub id: String,
    /// Cedar text, annotations included.
    pub text: String,
    /// Strings to find in the remit text, in order, to locate the policy's origin.
    pub locate: Vec<String>,
}

/// A Cedar string literal.
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

/// A Cedar `like` pattern whose only wildcards are the `*` of a remit glob.
fn like(glob: &str) -> String {
    // INVARIANT: remit globs hold no `"` or `\` (checked when the remit is parsed), so the
    // only character with a meaning inside `like` is `*`, which keeps it.
    quote(glob)
}

/// Where an `http_request` policy applies.
#[derive(Debug, Clone)]
enum Scope {
    /// `resource == Host::"name"`: one name or address, as the proxy writes it.
    Host(String),
    /// `context.request.host like "*.suffix"`.
    Like(String),
}

impl Scope {
    fn of(pattern: &HostPattern) -> Scope {
        match &pattern.host {
            HostName::Exact(_) | HostName::Ip(_) => Scope::Host(pattern.host_text()),
            HostName::Suffix(suffix) => Scope::Like(format!("*.{suffix}")),
        }
    }

    /// The policy's resource scope and its host condition, if any.
    fn cedar(&self) -> (String, Option<String>) {
        match self {
            Scope::Host(host) => (format!("resource == Host::{}", quote(host)), None),
            Scope::Like(glob) => (
                "resource".to_owned(),
                Some(format!("context.request.host like {}", like(glob))),
            ),
        }
    }

    fn holds(&self, host: &str) -> bool {
        match self {
            Scope::Host(name) => name == host,
            Scope::Like(glob) => glob_match(glob, host),
        }
    }
}

/// Ports, methods and paths a request must have.
#[derive(Debug, Clone)]
struct Condition {
    ports: Vec<u16>,
    /// Empty: any method.
    methods: Vec<String>,
    /// `like` patterns for the path, any of which may match; empty: any path. A remit path
    /// pattern not ending in `*` stands here twice: as written, and followed by `?*` (a
    /// query string).
    paths: Vec<String>,
}

impl Condition {
    fn port(port: u16) -> Condition {
        Condition {
            ports: vec![port],
            methods: Vec::new(),
            paths: Vec::new(),
        }
    }

    fn of(rule: &NetworkRule) -> Condition {
        let mut paths = Vec::new();
        for path in &rule.paths {
            paths.push(path.0.clone());
            if !path.0.ends_with('*') {
                paths.push(format!("{}?*", path.0));
            }
        }
        Condition {
            ports: rule.ports.clone(),
            methods: rule.methods.iter().map(|m| m.0.clone()).collect(),
            paths,
        }
    }

    fn cedar(&self) -> String {
        let mut parts = vec![ports_condition(&self.ports)];
        if !self.methods.is_empty() {
            let list: Vec<String> = self.methods.iter().map(|m| quote(m)).collect();
            parts.push(format!(
                "[{}].contains(context.request.method)",
                list.join(", ")
            ));
        }
        if !self.paths.is_empty() {
            let alternatives: Vec<String> = self
                .paths
                .iter()
                .map(|p| format!("context.request.path like {}", like(p)))
                .collect();
            parts.push(format!("({})", alternatives.join(" || ")));
        }
        parts.join(" && ")
    }

    fn holds(&self, port: u16, method: &str, path: &str) -> bool {
        self.ports.contains(&port)
            && (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
            && (self.paths.is_empty() || self.paths.iter().any(|p| glob_match(p, path)))
    }
}

/// What an `http_request` policy does where it applies.
#[derive(Debug, Clone)]
enum Kind {
    /// `permit … when { condition }`.
    Permit(Condition),
    /// `forbid … when { port in ports } unless { any of the conditions }`.
    Only {
        ports: Vec<u16>,
        unless: Vec<Condition>,
    },
}

/// One policy `[network]` compiles on `http_request`: the Cedar text is written from it,
/// and [`RequestRules`] decides with it directly.
#[derive(Debug, Clone)]
struct RequestPolicy {
    id: String,
    reason: String,
    scope: Scope,
    kind: Kind,
    locate: Vec<String>,
}

impl RequestPolicy {
    fn cedar(&self) -> String {
        let (scope, host) = self.scope.cedar();
        let mut when: Vec<String> = host.into_iter().collect();
        match &self.kind {
            Kind::Permit(condition) => {
                when.push(condition.cedar());
                format!(
                    "@reason({})\npermit(principal, action == Action::\"http_request\", {scope}) when {{ {} }};",
                    quote(&self.reason),
                    when.join(" && ")
                )
            }
            Kind::Only { ports, unless } => {
                when.push(ports_condition(ports));
                let unless: Vec<String> =
                    unless.iter().map(|c| format!("({})", c.cedar())).collect();
                format!(
                    "@reason({})\nforbid(principal, action == Action::\"http_request\", {scope}) when {{ {} }} unless {{ {} }};",
                    quote(&self.reason),
                    when.join(" && "),
                    unless.join(" || ")
                )
            }
        }
    }

    fn compiled(&self) -> Compiled {
        Compiled {
            id: self.id.clone(),
            text: self.cedar(),
            locate: self.locate.clone(),
        }
    }
}

fn ports_condition(ports: &[u16]) -> String {
    match ports {
        [one] => format!("context.request.port == {one}"),
        many => format!(
            "[{}].contains(context.request.port)",
            many.iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// What a rule allows, in words: `GET, HEAD to /repos/acme/*`.
fn rule_words(rule: &NetworkRule) -> String {
    let methods = if rule.methods.is_empty() {
        "any method".to_owned()
    } else {
        rule.methods
            .iter()
            .map(|m| m.0.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let paths = if rule.paths.is_empty() {
        "any path".to_owned()
    } else {
        rule.paths
            .iter()
            .map(|p| format!("`{}`", p.0))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let ports = rule
        .ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    format!("{methods} to {paths} (port {ports})")
}

/// `[network]`'s policies on `http_request`, in the order they are compiled.
fn request_policies(network: &Network) -> Vec<RequestPolicy> {
    let mut out = Vec::new();

    for (i, allow) in network.allow.iter().enumerate() {
        let port = allow.port.unwrap_or(DEFAULT_PORT);
        let shown = format!("{}:{port}", allow.host_text());
        out.push(RequestPolicy {
            id: format!("network.allow[{i}]"),
            reason: format!("this task's remit allows any request to `{shown}` (network.allow)"),
            scope: Scope::of(allow),
            kind: Kind::Permit(Condition::port(port)),
            locate: vec!["[network]".into(), "allow".into(), allow.host_text()],
        });
    }

    // Rules: one permit each; then one forbid per distinct host pattern that refuses, on the
    // rules' ports, whatever none of the rules for that host allows, with a reason that says
    // what is allowed.
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, rule) in network.rules.iter().enumerate() {
        let key = rule.host.host_text();
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(i),
            None => groups.push((key, vec![i])),
        }
        out.push(RequestPolicy {
            id: format!("network.rule[{i}]"),
            reason: format!(
                "this task's remit allows {} on `{}` (network.rule[{i}])",
                rule_words(rule),
                rule.host.host_text()
            ),
            scope: Scope::of(&rule.host),
            kind: Kind::Permit(Condition::of(rule)),
            locate: rule_locate(network, i),
        });
    }
    for (host, members) in &groups {
        let rules: Vec<&NetworkRule> = members
            .iter()
            .filter_map(|i| network.rules.get(*i))
            .collect();
        let Some(first) = rules.first() else {
            continue;
        };
        let mut ports: Vec<u16> = rules.iter().flat_map(|r| r.ports.iter().copied()).collect();
        ports.sort_unstable();
        ports.dedup();
        let allowed: Vec<String> = rules.iter().map(|r| rule_words(r)).collect();
        let index = members.first().copied().unwrap_or(0);
        let mut reason = String::new();
        let _ = write!(
            reason,
            "on `{host}` this task's remit allows only {}; send only such requests there",
            allowed.join("; or ")
        );
        out.push(RequestPolicy {
            id: format!("network.rule[{index}].only"),
            reason,
            scope: Scope::of(&first.host),
            kind: Kind::Only {
                ports,
                unless: rules.iter().map(|r| Condition::of(r)).collect(),
            },
            locate: rule_locate(network, index),
        });
    }
    out
}

/// How `[network]`'s policies decide one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RequestVerdict {
    /// The permits that allow it, by id, sorted.
    Allow(Vec<String>),
    /// The first forbid (by id) that refuses it, and its reason.
    Forbid { policy: String, reason: String },
    /// No policy applies: refused by default.
    Default,
}

/// `[network]`'s `http_request` policies, decided without Cedar, exactly as their compiled
/// Cedar text decides (a property test holds the two equal): for a remit without raw Cedar
/// they are the only policies on `http_request`, and the proxy decides every request.
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestRules {
    policies: Vec<RequestPolicy>,
    /// Policies scoped to one host, by host.
    by_host: std::collections::HashMap<String, Vec<usize>>,
    /// Policies scoped by a `like` pattern, tried for every host.
    by_pattern: Vec<usize>,
}

impl RequestRules {
    pub(crate) fn new(network: &Network) -> RequestRules {
        let mut rules = RequestRules {
            policies: request_policies(network),
            ..RequestRules::default()
        };
        for (i, policy) in rules.policies.iter().enumerate() {
            match &policy.scope {
                Scope::Host(host) => rules.by_host.entry(host.clone()).or_default().push(i),
                Scope::Like(_) => rules.by_pattern.push(i),
            }
        }
        rules
    }

    pub(crate) fn decide(&self, host: &str, port: u16, method: &str, path: &str) -> RequestVerdict {
        let mut permits: Vec<&str> = Vec::new();
        let mut forbid: Option<&RequestPolicy> = None;
        let candidates = self
            .by_host
            .get(host)
            .into_iter()
            .flatten()
            .chain(&self.by_pattern);
        for policy in candidates.filter_map(|i| self.policies.get(*i)) {
            if !policy.scope.holds(host) {
                continue;
            }
            match &policy.kind {
                Kind::Permit(condition) => {
                    if condition.holds(port, method, path) {
                        permits.push(&policy.id);
                    }
                }
                Kind::Only { ports, unless } => {
                    if ports.contains(&port)
                        && !unless.iter().any(|c| c.holds(port, method, path))
                        && forbid.is_none_or(|f| policy.id < f.id)
                    {
                        forbid = Some(policy);
                    }
                }
            }
        }
        if let Some(f) = forbid {
            return RequestVerdict::Forbid {
                policy: f.id.clone(),
                reason: f.reason.clone(),
            };
        }
        if permits.is_empty() {
            return RequestVerdict::Default;
        }
        permits.sort_unstable();
        RequestVerdict::Allow(permits.into_iter().map(str::to_owned).collect())
    }
}

/// Compile a remit's `[network]` section. With no grants, nothing is compiled and every
/// request is denied by default.
pub fn compile(network: &Network) -> Vec<Compiled> {
    let mut out: Vec<Compiled> = request_policies(network)
        .iter()
        .map(RequestPolicy::compiled)
        .collect();

    // Git pushes.
    let git = &network.git;
    let allowed_refs: Vec<String> = git.push.iter().map(|p| format!("`{}`", p.0)).collect();
    for (i, pattern) in git.push.iter().enumerate() {
        out.push(Compiled {
            id: format!("network.git.push[{i}]"),
            text: format!(
                "@reason({})\npermit(principal, action == Action::\"git_push\", resource) when {{ context.push.ref like {} }};",
                quote(&format!("this task's remit allows pushing to `{}` (network.git.push)", pattern.0)),
                like(&pattern.0)
            ),
            locate: vec!["[network.git]".into(), "push".into(), pattern.0.clone()],
        });
    }
    if !git.push.is_empty() {
        let instead = format!(
            "push to a new branch matching {} instead",
            allowed_refs.join(" or ")
        );
        if !git.force {
            out.push(Compiled {
                id: "network.git.force".into(),
                text: format!(
                    "@reason({})\nforbid(principal, action == Action::\"git_push\", resource) when {{ context.push.force }};",
                    quote(&format!(
                        "this task may not rewrite history on a remote (a force push, not a fast-forward); {instead}"
                    ))
                ),
                locate: vec!["[network.git]".into()],
            });
        }
        if !git.delete {
            out.push(Compiled {
                id: "network.git.delete".into(),
                text: format!(
                    "@reason({})\nforbid(principal, action == Action::\"git_push\", resource) when {{ context.push.new == \"\" && context.push.old != \"\" }};",
                    quote("this task may not delete refs on a remote; leave the branch in place")
                ),
                locate: vec!["[network.git]".into()],
            });
        }
    }

    // Credentials: which secret may travel where.
    for (i, credential) in network.credentials.iter().enumerate() {
        out.push(secret_use(
            format!("network.credential[{i}]"),
            &credential.name,
            &credential.inject.hosts,
            vec!["[[network.credential]]".into(), credential.name.clone()],
        ));
    }
    out
}

/// The `permit` that lets the proxy send credential `name` to `hosts` (and nowhere else).
pub fn secret_use(id: String, name: &str, hosts: &[HostPattern], locate: Vec<String>) -> Compiled {
    let destinations: Vec<String> = hosts
        .iter()
        .map(|h| {
            let port = h.port.unwrap_or(DEFAULT_PORT);
            match &h.host {
                HostName::Suffix(s) => format!(
                    "context.use.destination like {}",
                    like(&format!("*.{s}:{port}"))
                ),
                _ => format!(
                    "context.use.destination == {}",
                    quote(&format!("{}:{port}", h.host_text()))
                ),
            }
        })
        .collect();
    let shown: Vec<String> = hosts.iter().map(|h| format!("`{h}`")).collect();
    Compiled {
        text: format!(
            "@reason({})\npermit(principal, action == Action::\"secret_use\", resource == Secret::{}) when {{ {} }};",
            quote(&format!(
                "this task's remit lets the proxy send `{name}` to {} ({id})",
                shown.join(", ")
            )),
            quote(name),
            if destinations.is_empty() {
                "false".to_owned()
            } else {
                destinations.join(" || ")
            }
        ),
        id,
        locate,
    }
}

/// Needles for the `i`th `[[network.rule]]`.
fn rule_locate(network: &Network, i: usize) -> Vec<String> {
    let _ = network;
    let mut out = vec!["[[network.rule]]".to_owned(); i + 1];
    out.push("host".into());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> Network {
        remit_types::remit::parse(text, "t", ".".into())
            .unwrap()
            .remit
            .network
    }

    #[test]
    fn nothing_granted_compiles_to_nothing() {
        assert!(compile(&Network::default()).is_empty());
    }

    #[test]
    fn shapes() {
        let n = section(
            "[network]\nallow = [\"a.com\", \"*.b.com:8443\"]\n[[network.rule]]\nhost = \"c.com\"\nmethods = [\"GET\"]\npaths = [\"/x/*\", \"/y\"]\n[network.git]\npush = [\"refs/heads/remit/*\"]\n",
        );
        let c = compile(&n);
        let ids: Vec<&str> = c.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "network.allow[0]",
                "network.allow[1]",
                "network.rule[0]",
                "network.rule[0].only",
                "network.git.push[0]",
                "network.git.force",
                "network.git.delete"
            ]
        );
        assert!(
            c[0].text.contains("resource == Host::\"a.com\""),
            "{}",
            c[0].text
        );
        assert!(c[1].text.contains("like \"*.b.com\""), "{}", c[1].text);
        assert!(
            c[2].text.contains("context.request.path like \"/y?*\""),
            "{}",
            c[2].text
        );
        assert!(
            c[3].text
                .starts_with("@reason(\"on `c.com` this task's remit allows only GET"),
            "{}",
            c[3].text
        );
    }

    fn engine(text: &str) -> crate::engine::Engine {
        let loaded = remit_types::remit::parse(text, "t.remit.toml", ".".into()).unwrap();
        crate::engine::Engine::load(&loaded).unwrap_or_else(|e| panic!("{e}"))
    }

    fn decide(
        e: &crate::engine::Engine,
        effect: &remit_types::effect::Effect,
    ) -> crate::engine::Decision {
        let principal = crate::engine::Principal {
            task: "t".into(),
            agent: "a".into(),
            owner: String::new(),
            requester: String::new(),
            remit: String::new(),
            risk: String::new(),
        };
        let situation = crate::engine::Situation::default();
        let sliced = e.decide(&principal, effect, &situation);
        assert_eq!(
            sliced,
            e.decide_full(&principal, effect, &situation),
            "{effect}"
        );
        sliced
    }

    fn http(host: &str, port: u16, method: &str, path: &str) -> remit_types::effect::Effect {
        remit_types::effect::Effect::HttpRequest {
            host: host.into(),
            port,
            method: method.into(),
            path: path.into(),
        }
    }

    fn push(reference: &str, force: bool, new: &str) -> remit_types::effect::Effect {
        remit_types::effect::Effect::GitPush {
            remote: "https://git.test/r.git".into(),
            reference: reference.into(),
            old: "a".repeat(40),
            new: new.into(),
            force,
            new_branch: false,
        }
    }

    const REMIT: &str = r#"
[network]
allow = ["api.anthropic.com", "*.pythonhosted.org", "127.0.0.1:8080", "*.github.com:8443"]

[[network.rule]]
host = "api.github.com"
methods = ["GET", "HEAD"]
paths = ["/repos/acme/*", "/user"]

[[network.rule]]
host = "api.github.com"
methods = ["POST"]
paths = ["/repos/acme/widgets/issues"]

[[network.credential]]
name = "gh"
from = { env = "GH_REAL" }
inject = { hosts = ["api.github.com", "*.github.com:8443"], header = "authorization" }

[network.git]
push = ["refs/heads/remit/*"]

[[test]]
effect = { kind = "http_request", host = "api.github.com", method = "DELETE", path = "/repos/acme/x" }
expect = "deny"

[[test]]
effect = { kind = "git_push", ref = "refs/heads/remit/t1" }
expect = "allow"
"#;

    #[test]
    fn decisions() {
        use crate::engine::Decision;
        let e = engine(REMIT);
        let allow = |d: Decision| matches!(d, Decision::Allow { .. });
        assert!(allow(decide(
            &e,
            &http("api.anthropic.com", 443, "POST", "/v1/messages")
        )));
        assert!(!allow(decide(
            &e,
            &http("api.anthropic.com", 80, "GET", "/")
        )));
        assert!(allow(decide(
            &e,
            &http("files.pythonhosted.org", 443, "GET", "/p/x.whl")
        )));
        assert!(!allow(decide(
            &e,
            &http("pythonhosted.org", 443, "GET", "/")
        )));
        assert!(!allow(decide(
            &e,
            &http("evilpythonhosted.org", 443, "GET", "/")
        )));
        assert!(allow(decide(&e, &http("127.0.0.1", 8080, "GET", "/"))));
        assert!(allow(decide(
            &e,
            &http("api.github.com", 443, "GET", "/repos/acme/widgets")
        )));
        assert!(allow(decide(
            &e,
            &http("api.github.com", 443, "GET", "/user?page=2")
        )));
        assert!(allow(decide(
            &e,
            &http("api.github.com", 443, "POST", "/repos/acme/widgets/issues")
        )));
        let Decision::Deny { policy, reason } = decide(
            &e,
            &http("api.github.com", 443, "POST", "/repos/acme/widgets/pulls"),
        ) else {
            panic!()
        };
        assert_eq!(policy, "network.rule[0].only");
        assert!(
            reason.contains("GET, HEAD to `/repos/acme/*`, `/user`"),
            "{reason}"
        );
        assert!(!allow(decide(
            &e,
            &http("api.github.com", 443, "GET", "/users/x")
        )));
        let Decision::Deny { policy, reason } = decide(&e, &http("example.com", 443, "GET", "/"))
        else {
            panic!()
        };
        assert_eq!(policy, "default");
        assert!(reason.contains("`example.com`"), "{reason}");

        assert!(allow(decide(
            &e,
            &push("refs/heads/remit/t1", false, &"b".repeat(40))
        )));
        let Decision::Deny { policy, reason } =
            decide(&e, &push("refs/heads/remit/t1", true, &"b".repeat(40)))
        else {
            panic!()
        };
        assert_eq!(policy, "network.git.force");
        assert!(reason.contains("`refs/heads/remit/*`"), "{reason}");
        let Decision::Deny { policy, .. } = decide(&e, &push("refs/heads/remit/t1", false, ""))
        else {
            panic!()
        };
        assert_eq!(policy, "network.git.delete");
        assert!(!allow(decide(
            &e,
            &push("refs/heads/main", false, &"b".repeat(40))
        )));

        let secret = |destination: &str| remit_types::effect::Effect::SecretUse {
            name: "gh".into(),
            destination: destination.into(),
        };
        assert!(allow(decide(&e, &secret("api.github.com:443"))));
        assert!(allow(decide(&e, &secret("uploads.github.com:8443"))));
        assert!(!allow(decide(&e, &secret("uploads.github.com:443"))));
        assert!(!allow(decide(&e, &secret("evil.com:443"))));
    }

    #[test]
    fn errors_point_into_the_remit() {
        let err = remit_types::remit::parse(
            "[limits]\npids = 5\n[network]\nallow = [\"x.com\"]\n[[network.rule]]\nhost = \"x.com\"\nmethods = [\"GET\"]\n",
            "t.remit.toml",
            ".".into(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("t.remit.toml:6:9: network.rule[0]"),
            "{err}"
        );
        let err = remit_types::remit::parse(
            "[network]\nallow = [\"x.com\", \"a b\"]\n",
            "t.remit.toml",
            ".".into(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("t.remit.toml:2:9: "), "{err}");
    }
}
