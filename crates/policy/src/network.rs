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

use std::fmt::Write as _;

use remit_types::network::{DEFAULT_PORT, HostName, HostPattern, Network, NetworkRule};

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

/// The resource scope and host condition of a host pattern, for `http_request`.
fn host_scope(pattern: &HostPattern) -> (String, Option<String>) {
    match &pattern.host {
        HostName::Exact(_) | HostName::Ip(_) => (
            format!("resource == Host::{}", quote(&pattern.host_text())),
            None,
        ),
        HostName::Suffix(suffix) => (
            "resource".to_owned(),
            Some(format!(
                "context.request.host like {}",
                like(&format!("*.{suffix}"))
            )),
        ),
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

fn rule_condition(rule: &NetworkRule) -> String {
    let mut parts = vec![ports_condition(&rule.ports)];
    if !rule.methods.is_empty() {
        let list: Vec<String> = rule.methods.iter().map(|m| quote(&m.0)).collect();
        parts.push(format!(
            "[{}].contains(context.request.method)",
            list.join(", ")
        ));
    }
    if !rule.paths.is_empty() {
        let mut alternatives = Vec::new();
        for path in &rule.paths {
            alternatives.push(format!("context.request.path like {}", like(&path.0)));
            if !path.0.ends_with('*') {
                alternatives.push(format!(
                    "context.request.path like {}",
                    like(&format!("{}?*", path.0))
                ));
            }
        }
        parts.push(format!("({})", alternatives.join(" || ")));
    }
    parts.join(" && ")
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

/// Compile a remit's `[network]` section. With no grants, nothing is compiled and every
/// request is denied by default.
pub fn compile(network: &Network) -> Vec<Compiled> {
    let mut out = Vec::new();

    for (i, allow) in network.allow.iter().enumerate() {
        let port = allow.port.unwrap_or(DEFAULT_PORT);
        let (scope, host) = host_scope(allow);
        let mut conditions: Vec<String> = host.into_iter().collect();
        conditions.push(ports_condition(&[port]));
        let shown = format!("{}:{port}", allow.host_text());
        out.push(Compiled {
            id: format!("network.allow[{i}]"),
            text: format!(
                "@reason({})\npermit(principal, action == Action::\"http_request\", {scope}) when {{ {} }};",
                quote(&format!("this task's remit allows any request to `{shown}` (network.allow)")),
                conditions.join(" && ")
            ),
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
        let (scope, host) = host_scope(&rule.host);
        let mut conditions: Vec<String> = host.into_iter().collect();
        conditions.push(rule_condition(rule));
        out.push(Compiled {
            id: format!("network.rule[{i}]"),
            text: format!(
                "@reason({})\npermit(principal, action == Action::\"http_request\", {scope}) when {{ {} }};",
                quote(&format!(
                    "this task's remit allows {} on `{}` (network.rule[{i}])",
                    rule_words(rule),
                    rule.host.host_text()
                )),
                conditions.join(" && ")
            ),
            locate: rule_locate(network, i),
        });
    }
    for (host, members) in &groups {
        let Some(first) = members.first().and_then(|i| network.rules.get(*i)) else {
            continue;
        };
        let mut ports: Vec<u16> = members
            .iter()
            .filter_map(|i| network.rules.get(*i))
            .flat_map(|r| r.ports.iter().copied())
            .collect();
        ports.sort_unstable();
        ports.dedup();
        let (scope, host_condition) = host_scope(&first.host);
        let mut when: Vec<String> = host_condition.into_iter().collect();
        when.push(ports_condition(&ports));
        let unless: Vec<String> = members
            .iter()
            .filter_map(|i| network.rules.get(*i))
            .map(|r| format!("({})", rule_condition(r)))
            .collect();
        let allowed: Vec<String> = members
            .iter()
            .filter_map(|i| network.rules.get(*i))
            .map(rule_words)
            .collect();
        let index = members.first().copied().unwrap_or(0);
        let mut reason = String::new();
        let _ = write!(
            reason,
            "on `{host}` this task's remit allows only {}; send only such requests there",
            allowed.join("; or ")
        );
        out.push(Compiled {
            id: format!("network.rule[{index}].only"),
            text: format!(
                "@reason({})\nforbid(principal, action == Action::\"http_request\", {scope}) when {{ {} }} unless {{ {} }};",
                quote(&reason),
                when.join(" && "),
                unless.join(" || ")
            ),
            locate: rule_locate(network, index),
        });
    }

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
