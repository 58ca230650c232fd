//! `[network]`: what a task may reach. A task has its own network namespace with a loopback
//! interface and nothing else; everything that leaves goes through the egress proxy, which
//! asks the gate about every request.
//!
//! ```toml
//! [network]
//! allow = ["api.anthropic.com", "*.pythonhosted.org", "pypi.org:443"]
//! private = ["10.1.2.3"]                     # the SSRF guard lets this private address through
//!
//! [[network.rule]]                            # read-only GitHub API for one organisation
//! host = "api.github.com"
//! methods = ["GET", "HEAD"]
//! paths = ["/repos/acme/*"]
//!
//! [[network.credential]]                      # the task sees a phantom; the proxy swaps it
//! name = "anthropic"
//! env = "ANTHROPIC_API_KEY"
//! from = { env = "ANTHROPIC_API_KEY" }
//! inject = { hosts = ["api.anthropic.com"], header = "x-api-key" }
//!
//! [network.git]
//! push = ["refs/heads/remit/*"]
//!
//! [network.budget]
//! total = "2GiB"
//! ```
//!
//! Host patterns, paths and methods are checked when the remit is parsed; [`Network::validate`]
//! checks what spans several fields. Nothing here reads the system: credential sources are
//! names, resolved by the supervisor.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::size::ByteSize;

/// The port a host pattern gets when it names none.
pub const DEFAULT_PORT: u16 = 443;

/// `[network]`: the task's network. A task has its own network namespace with loopback only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// TCP ports the task may listen on and connect to on its own loopback (`0` allows
    /// ephemeral ports). Default: none.
    #[serde(default)]
    pub listen: Vec<u16>,
    /// Destinations the task may reach with any method and path: `host`, `host:port`,
    /// `*.suffix` (every name under `suffix`, not `suffix` itself), an IPv4 address or an
    /// IPv6 address in brackets. Without a port, only 443. Default: none.
    #[serde(default)]
    pub allow: Vec<HostPattern>,
    /// Destinations reached only with the methods and paths a rule names. Default: none.
    #[serde(default, rename = "rule")]
    pub rules: Vec<NetworkRule>,
    /// Addresses the SSRF guard lets through although they are loopback, private,
    /// link-local or otherwise special: an address (`10.0.0.7`), a range (`10.1.0.0/16`), or
    /// a host name whose addresses may then be special (`git.internal`). Names must still
    /// be allowed by `allow` or a rule. Default: none (every special address is refused,
    /// `169.254.169.254` included).
    #[serde(default)]
    pub private: Vec<PrivateEntry>,
    /// Host patterns whose `CONNECT` tunnels are passed through without TLS interception,
    /// for clients that pin certificates or speak other protocols. Nothing inside such a
    /// tunnel is seen: no method or path rules, no credential injection, no secret
    /// detection, no git or publish checks. Must also be allowed. Default: none.
    #[serde(default)]
    pub dangerously_tunnel: Vec<HostPattern>,
    /// Secrets the proxy injects on the way out. Default: none.
    #[serde(default, rename = "credential")]
    pub credentials: Vec<Credential>,
    /// Which git refs a push over HTTP(S) may update. Default: no pushes.
    #[serde(default)]
    pub git: GitRules,
    /// Byte budgets (request and response bytes together). Default: unlimited.
    #[serde(default)]
    pub budget: Budget,
}

/// `[[network.rule]]`: a destination reached only with some methods and paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkRule {
    /// The host: a name, `*.suffix`, or an address; a port here is an error (use `ports`).
    pub host: HostPattern,
    /// Ports. Default: `[443]`.
    #[serde(default = "default_ports")]
    pub ports: Vec<u16>,
    /// Methods, upper case (`GET`). Default: every method.
    #[serde(default)]
    pub methods: Vec<Method>,
    /// Path patterns: start with `/`; `*` matches any characters, `/` included. A pattern
    /// also matches its path followed by a query string. Default: every path.
    #[serde(default)]
    pub paths: Vec<PathPattern>,
}

fn default_ports() -> Vec<u16> {
    vec![DEFAULT_PORT]
}

/// `[[network.credential]]`: a secret the task uses without seeing it.
///
/// Inside the task, `env` holds a *phantom*: a random value of the same shape as the real
/// one. The proxy replaces the phantom with the real value where `inject` says, on requests
/// to `inject.hosts`, and refuses any request that carries the phantom anywhere else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// A name for records and policies (`Secret::"<name>"`): letters, digits, `-`, `_`.
    pub name: String,
    /// The variable set inside the task to the phantom value. Default: none (the task
    /// learns the phantom some other way, or the credential is only injected into headers
    /// the task already sends).
    #[serde(default)]
    pub env: Option<String>,
    /// Where the supervisor reads the real value on the host.
    pub from: CredentialSource,
    /// Where and how it is injected.
    pub inject: Injection,
}

/// Where a credential's real value comes from, on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CredentialSource {
    /// `{ env = "NAME" }`: the supervisor's environment variable.
    Env(String),
    /// `{ file = "path" }`: a file (trailing newlines dropped); `~/` and paths relative to
    /// the remit's directory work.
    File(String),
    /// `{ vault = "name" }`: a secret of remit's vault (`remit secret set name`).
    Vault(String),
}

/// `inject = { hosts = [...], header = "..." }`: exactly one of `header`, `basic`, `query`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Injection {
    /// Destinations that receive the real value (host patterns, with ports as in `allow`).
    pub hosts: Vec<HostPattern>,
    /// A request header whose value holds the phantom (`x-api-key`, `authorization` with
    /// `Bearer <phantom>`): the phantom inside it is replaced. Default: none.
    #[serde(default)]
    pub header: Option<String>,
    /// HTTP basic authentication: the phantom is the `"password"` or the `"username"` in an
    /// `Authorization: Basic` header. Default: none.
    #[serde(default)]
    pub basic: Option<BasicPart>,
    /// A query parameter whose value is the phantom (`key`). Default: none.
    #[serde(default)]
    pub query: Option<String>,
}

/// Which half of basic credentials holds the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BasicPart {
    /// `user:<secret>`.
    Password,
    /// `<secret>:password`.
    Username,
}

/// Where a credential goes in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Inside this header's value (lower case name).
    Header(String),
    /// In basic authentication.
    Basic(BasicPart),
    /// As this query parameter's value.
    Query(String),
}

impl Injection {
    /// The one placement, if exactly one is given.
    pub fn placement(&self) -> Option<Placement> {
        match (&self.header, self.basic, &self.query) {
            (Some(h), None, None) => Some(Placement::Header(h.to_ascii_lowercase())),
            (None, Some(b), None) => Some(Placement::Basic(b)),
            (None, None, Some(q)) => Some(Placement::Query(q.clone())),
            _ => None,
        }
    }
}

/// `[network.git]`: pushes over smart HTTP, decided per ref.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitRules {
    /// Ref patterns a push may update (`refs/heads/remit/*`; `*` matches any characters).
    /// Default: none (every push is refused).
    #[serde(default)]
    pub push: Vec<RefPattern>,
    /// Whether a push may rewrite history (not a fast-forward). Default: `false`.
    #[serde(default)]
    pub force: bool,
    /// Whether a push may delete a ref. Default: `false`.
    #[serde(default)]
    pub delete: bool,
}

/// `[network.budget]`: bytes a task may move (request and response bytes, headers
/// included, counted by the proxy).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// For the whole task. Default: unlimited.
    #[serde(default)]
    pub total: Option<ByteSize>,
    /// For each destination host. Default: unlimited.
    #[serde(default)]
    pub per_host: Option<ByteSize>,
}

/// A host name or address, maybe with a wildcard prefix and a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPattern {
    /// What the name part is.
    pub host: HostName,
    /// The port, if the pattern names one.
    pub port: Option<u16>,
}

/// The name part of a [`HostPattern`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostName {
    /// One name, lower case, no trailing dot.
    Exact(String),
    /// `*.suffix`: every name ending in `.suffix` (holds `suffix`).
    Suffix(String),
    /// An address.
    Ip(IpAddr),
}

impl HostPattern {
    /// Parse `host`, `host:port`, `*.suffix[:port]`, `1.2.3.4[:port]`, `[::1][:port]`.
    pub fn parse(text: &str) -> Result<HostPattern, String> {
        let bad = |why: &str| format!("`{text}` is not a host pattern: {why}");
        if text.is_empty() {
            return Err(bad("it is empty"));
        }
        if text.contains("://") || text.contains('/') {
            return Err(bad(
                "write a host (`example.com` or `example.com:8443`), not a URL",
            ));
        }
        let (name, port) = if let Some(rest) = text.strip_prefix('[') {
            let Some((inner, after)) = rest.split_once(']') else {
                return Err(bad("a `[` without `]`"));
            };
            let port = match after {
                "" => None,
                p => Some(
                    parse_port(p.strip_prefix(':').ok_or_else(|| bad("junk after `]`"))?)
                        .map_err(|e| bad(&e))?,
                ),
            };
            let ip: Ipv6Addr = inner
                .parse()
                .map_err(|_| bad("not an IPv6 address inside `[]`"))?;
            return Ok(HostPattern {
                host: HostName::Ip(IpAddr::V6(ip)),
                port,
            });
        } else {
            match text.rsplit_once(':') {
                Some((name, port)) => {
                    if name.contains(':') {
                        return Err(bad("write IPv6 addresses in brackets (`[::1]:443`)"));
                    }
                    (name, Some(parse_port(port).map_err(|e| bad(&e))?))
                }
                None => (text, None),
            }
        };
        let lower = name.trim_end_matches('.').to_ascii_lowercase();
        if let Ok(ip) = lower.parse::<Ipv4Addr>() {
            return Ok(HostPattern {
                host: HostName::Ip(IpAddr::V4(ip)),
                port,
            });
        }
        let (wild, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest.to_owned()),
            None => (false, lower.clone()),
        };
        if name.contains('*') {
            return Err(bad("`*` may only stand first, as in `*.example.com`"));
        }
        valid_dns_name(&name).map_err(|e| bad(&e))?;
        Ok(HostPattern {
            host: if wild {
                HostName::Suffix(name)
            } else {
                HostName::Exact(name)
            },
            port,
        })
    }

    /// Whether `host` (lower case, no trailing dot) matches the name part.
    pub fn matches_host(&self, host: &str) -> bool {
        match &self.host {
            HostName::Exact(name) => name == host,
            HostName::Suffix(suffix) => {
                host.len() > suffix.len() + 1
                    && host.ends_with(suffix.as_str())
                    && host.as_bytes().get(host.len() - suffix.len() - 1) == Some(&b'.')
            }
            HostName::Ip(ip) => host_ip(host) == Some(*ip),
        }
    }

    /// Whether `host:port` matches, with `default` standing for the pattern's missing port.
    pub fn matches(&self, host: &str, port: u16, default: &[u16]) -> bool {
        let port_ok = match self.port {
            Some(p) => p == port,
            None => default.contains(&port),
        };
        port_ok && self.matches_host(host)
    }

    /// The host as the proxy writes it in effects: a name, a dotted IPv4 address, or an
    /// IPv6 address without brackets; `*.suffix` for a wildcard.
    pub fn host_text(&self) -> String {
        match &self.host {
            HostName::Exact(n) => n.clone(),
            HostName::Suffix(s) => format!("*.{s}"),
            HostName::Ip(ip) => ip.to_string(),
        }
    }

    /// Whether every name this pattern matches is also matched by `other` (ports aside).
    pub fn host_covered_by(&self, other: &HostPattern) -> bool {
        match (&self.host, &other.host) {
            (HostName::Suffix(a), HostName::Suffix(b)) => a == b || other.matches_host(a),
            (HostName::Suffix(_), _) => false,
            (HostName::Exact(a), _) => other.matches_host(a),
            (HostName::Ip(a), HostName::Ip(b)) => a == b,
            (HostName::Ip(_), _) => false,
        }
    }
}

/// A host as it appears in a request (`10.0.0.1`, `::1`, `[::1]`) read as an address.
pub fn host_ip(host: &str) -> Option<IpAddr> {
    let inner = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    inner.parse().ok()
}

fn parse_port(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("`{text}` is not a port (1 to 65535)")),
        Ok(p) => Ok(p),
    }
}

/// Whether `name` is a DNS name remit accepts: labels of letters, digits, `-`, `_`,
/// 1 to 63 characters, 253 in all.
fn valid_dns_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 {
        return Err("a host name has 1 to 253 characters".into());
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("each dot-separated part has 1 to 63 characters".into());
        }
        if !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(
                "only letters, digits, `-`, `_` and `.` (write IDNs in their `xn--` form)".into(),
            );
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a part cannot start or end with `-`".into());
        }
    }
    Ok(())
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.host, self.port) {
            (HostName::Ip(IpAddr::V6(ip)), Some(p)) => write!(f, "[{ip}]:{p}"),
            (HostName::Ip(IpAddr::V6(ip)), None) => write!(f, "[{ip}]"),
            (_, Some(p)) => write!(f, "{}:{p}", self.host_text()),
            (_, None) => f.write_str(&self.host_text()),
        }
    }
}

impl Serialize for HostPattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HostPattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        HostPattern::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// An entry of `network.private`: an address range or a host name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrivateEntry {
    /// An address range (`10.0.0.0/8`; a lone address is a /32 or /128).
    Range(IpAddr, u8),
    /// A host name whose resolved addresses may be special.
    Name(String),
}

impl PrivateEntry {
    /// Parse `10.0.0.7`, `10.0.0.0/8`, `fd00::/8`, `[::1]` or `git.internal`.
    pub fn parse(text: &str) -> Result<PrivateEntry, String> {
        let bad = |why: &str| format!("`{text}` is not an address, a range or a host name: {why}");
        let (addr, bits) = match text.split_once('/') {
            Some((a, b)) => (
                a,
                Some(
                    b.parse::<u8>()
                        .map_err(|_| bad("the prefix length is not a number"))?,
                ),
            ),
            None => (text, None),
        };
        if let Some(ip) = host_ip(addr) {
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits = bits.unwrap_or(max);
            if bits > max {
                return Err(bad(&format!("the prefix length is at most {max}")));
            }
            if let Some(masked) = mask(ip, bits)
                && masked != ip
            {
                return Err(bad(&format!(
                    "host bits are set; did you mean `{masked}/{bits}`?"
                )));
            }
            return Ok(PrivateEntry::Range(ip, bits));
        }
        if bits.is_some() {
            return Err(bad("a range needs an address before `/`"));
        }
        let name = text.trim_end_matches('.').to_ascii_lowercase();
        valid_dns_name(&name).map_err(|e| bad(&e))?;
        Ok(PrivateEntry::Name(name))
    }

    /// Whether `ip` is in the range (never for a name).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match self {
            PrivateEntry::Range(base, bits) => match (base, ip) {
                (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                    mask(ip, *bits) == Some(*base)
                }
                _ => false,
            },
            PrivateEntry::Name(_) => false,
        }
    }
}

/// `ip` with all but the first `bits` bits cleared.
pub fn mask(ip: IpAddr, bits: u8) -> Option<IpAddr> {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(bits);
            let m = if bits == 0 {
                0
            } else {
                u32::MAX.checked_shl(32 - bits.min(32))?
            };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from(v4) & m)))
        }
        IpAddr::V6(v6) => {
            let bits = u32::from(bits);
            let m = if bits == 0 {
                0
            } else {
                u128::MAX.checked_shl(128 - bits.min(128))?
            };
            Some(IpAddr::V6(Ipv6Addr::from(u128::from(v6) & m)))
        }
    }
}

impl fmt::Display for PrivateEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrivateEntry::Range(ip, bits) => write!(f, "{ip}/{bits}"),
            PrivateEntry::Name(n) => f.write_str(n),
        }
    }
}

impl Serialize for PrivateEntry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PrivateEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        PrivateEntry::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// An HTTP method, upper case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Method(pub String);

impl<'de> Deserialize<'de> for Method {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.is_empty()
            || text.len() > 32
            || !text
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
        {
            return Err(serde::de::Error::custom(format!(
                "`{text}` is not an HTTP method (upper case letters, like `GET`)"
            )));
        }
        if text == "CONNECT" {
            return Err(serde::de::Error::custom(
                "`CONNECT` is not a request method remit decides; allow the host instead",
            ));
        }
        Ok(Method(text))
    }
}

impl Serialize for Method {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// A path pattern: starts with `/`; `*` matches any characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PathPattern(pub String);

impl PathPattern {
    /// Whether `path` (with its query string, if any) matches.
    pub fn matches(&self, path: &str) -> bool {
        glob_match(&self.0, path)
            || path
                .split_once('?')
                .is_some_and(|(p, _)| glob_match(&self.0, p))
    }
}

impl<'de> Deserialize<'de> for PathPattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if !text.starts_with('/') {
            return Err(serde::de::Error::custom(format!(
                "path pattern `{text}` must start with `/`"
            )));
        }
        if text
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '\\' || c == '"' || c == '#')
        {
            return Err(serde::de::Error::custom(format!(
                "path pattern `{text}` has a space, a control character, `\\`, `\"` or `#`"
            )));
        }
        if text
            .split('/')
            .any(|segment| segment == ".." || segment == ".")
        {
            return Err(serde::de::Error::custom(format!(
                "path pattern `{text}` has a `.` or `..` segment; requests are matched after those are resolved"
            )));
        }
        Ok(PathPattern(text))
    }
}

impl Serialize for PathPattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// A git ref pattern: `refs/...`; `*` matches any characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RefPattern(pub String);

impl RefPattern {
    /// Whether `reference` matches.
    pub fn matches(&self, reference: &str) -> bool {
        glob_match(&self.0, reference)
    }
}

impl<'de> Deserialize<'de> for RefPattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if !text.starts_with("refs/") {
            return Err(serde::de::Error::custom(format!(
                "ref pattern `{text}` must be a full ref name (`refs/heads/{text}`)"
            )));
        }
        if text.chars().any(|c| {
            c.is_control()
                || c.is_whitespace()
                || c == '\\'
                || c == '"'
                || c == '~'
                || c == '^'
                || c == ':'
        }) {
            return Err(serde::de::Error::custom(format!(
                "`{text}` is not a ref pattern"
            )));
        }
        Ok(RefPattern(text))
    }
}

impl Serialize for RefPattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// `*`-only glob over bytes: `*` matches any run of characters (`/` included).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// A problem in `[network]` that spans fields: what to search for in the remit text (in
/// order: each needle is searched after the previous one) and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkIssue {
    /// Strings to find, in order, to locate the problem.
    pub locate: Vec<String>,
    /// What is wrong, one line.
    pub message: String,
}

impl NetworkIssue {
    pub(crate) fn new(locate: &[&str], message: String) -> NetworkIssue {
        NetworkIssue {
            locate: locate.iter().map(|s| (*s).to_owned()).collect(),
            message,
        }
    }

    /// The byte offset in `text` the issue points at.
    pub fn offset_in(&self, text: &str) -> usize {
        let mut from = 0;
        for needle in &self.locate {
            match text.get(from..).and_then(|rest| rest.find(needle.as_str())) {
                Some(at) => from += at,
                None => break,
            }
        }
        from
    }
}

impl Network {
    /// Check what spans several fields. Every message says what to write instead.
    pub fn validate(&self) -> Result<(), NetworkIssue> {
        for (i, rule) in self.rules.iter().enumerate() {
            let host = rule.host.to_string();
            let at = ["[[network.rule]]", "host", host.as_str()];
            if rule.host.port.is_some() {
                return Err(NetworkIssue::new(
                    &at,
                    format!(
                        "network.rule[{i}]: write the port in `ports`, not in `host = \"{host}\"`"
                    ),
                ));
            }
            if rule.ports.is_empty() || rule.ports.contains(&0) {
                return Err(NetworkIssue::new(
                    &at,
                    format!("network.rule[{i}]: `ports` needs ports from 1 to 65535"),
                ));
            }
            for (j, allow) in self.allow.iter().enumerate() {
                let inside = allow.host_covered_by(&rule.host)
                    && rule.ports.contains(&allow.port.unwrap_or(DEFAULT_PORT));
                if inside && !rule.host.host_covered_by(allow) {
                    return Err(NetworkIssue::new(
                        &at,
                        format!(
                            "network.allow[{j}] `{allow}` lies inside network.rule[{i}] `{host}`, whose methods and paths would restrict it; give it its own rule or narrow the rule"
                        ),
                    ));
                }
                let ports_covered = rule
                    .ports
                    .iter()
                    .all(|p| allow.port.map_or(*p == DEFAULT_PORT, |a| a == *p));
                if ports_covered && rule.host.host_covered_by(allow) {
                    return Err(NetworkIssue::new(
                        &at,
                        format!(
                            "network.rule[{i}] for `{host}` has no effect: network.allow[{j}] `{allow}` already allows every method and path there; remove one"
                        ),
                    ));
                }
            }
        }
        for tunnel in &self.dangerously_tunnel {
            let text = tunnel.to_string();
            let at = ["dangerously_tunnel", text.as_str()];
            let allowed = self.allow.iter().any(|a| {
                tunnel.host_covered_by(a)
                    && (tunnel.port.is_none() || tunnel.port == a.port.or(Some(DEFAULT_PORT)))
            });
            if !allowed {
                return Err(NetworkIssue::new(
                    &at,
                    format!(
                        "network.dangerously_tunnel `{text}` is not in network.allow; a tunnel only passes what is allowed"
                    ),
                ));
            }
            if let Some(rule) = self
                .rules
                .iter()
                .find(|r| r.host.host_covered_by(tunnel) || tunnel.host_covered_by(&r.host))
            {
                return Err(NetworkIssue::new(
                    &at,
                    format!(
                        "network.dangerously_tunnel `{text}` overlaps the rule for `{}`: method and path rules need the traffic to be inspected",
                        rule.host
                    ),
                ));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, credential) in self.credentials.iter().enumerate() {
            let at = ["[[network.credential]]", credential.name.as_str()];
            let name = &credential.name;
            if !crate::effect::valid_action_name(name) {
                return Err(NetworkIssue::new(
                    &at,
                    format!(
                        "network.credential[{i}]: `{name}` is not a name (letters, digits, `-`, `_`, starting with a letter)"
                    ),
                ));
            }
            if !names.insert(name.clone()) {
                return Err(NetworkIssue::new(
                    &at,
                    format!("network.credential[{i}]: the name `{name}` is used twice"),
                ));
            }
            if let Some(env) = &credential.env
                && (env.is_empty()
                    || env.contains('=')
                    || env.contains('\0')
                    || !env.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            {
                return Err(NetworkIssue::new(
                    &at,
                    format!("network.credential[{i}]: `{env}` is not a variable name"),
                ));
            }
            match &credential.from {
                CredentialSource::Env(v) if v.is_empty() || v.contains('=') => {
                    return Err(NetworkIssue::new(
                        &at,
                        format!("network.credential[{i}]: `from.env` `{v}` is not a variable name"),
                    ));
                }
                CredentialSource::Vault(v) if !crate::effect::valid_action_name(v) => {
                    return Err(NetworkIssue::new(
                        &at,
                        format!("network.credential[{i}]: `from.vault` `{v}` is not a secret name"),
                    ));
                }
                CredentialSource::File(f) if f.is_empty() || f.contains('\0') => {
                    return Err(NetworkIssue::new(
                        &at,
                        format!("network.credential[{i}]: `from.file` is empty"),
                    ));
                }
                _ => {}
            }
            if credential.inject.hosts.is_empty() {
                return Err(NetworkIssue::new(
                    &at,
                    format!(
                        "network.credential[{i}]: `inject.hosts` is empty; name the hosts that receive `{name}`"
                    ),
                ));
            }
            let Some(placement) = credential.inject.placement() else {
                return Err(NetworkIssue::new(
                    &at,
                    format!(
                        "network.credential[{i}]: `inject` needs exactly one of `header`, `basic` or `query`"
                    ),
                ));
            };
            match placement {
                Placement::Header(h) => {
                    let forbidden = [
                        "host",
                        "connection",
                        "content-length",
                        "transfer-encoding",
                        "proxy-authorization",
                        "te",
                        "upgrade",
                        "cookie2",
                    ];
                    if h.is_empty()
                        || !h
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b))
                        || forbidden.contains(&h.as_str())
                    {
                        return Err(NetworkIssue::new(
                            &at,
                            format!("network.credential[{i}]: `{h}` cannot carry a credential"),
                        ));
                    }
                }
                Placement::Query(q) if q.is_empty() || q.contains(['&', '=', '#', ' ']) => {
                    return Err(NetworkIssue::new(
                        &at,
                        format!("network.credential[{i}]: `{q}` is not a query parameter name"),
                    ));
                }
                _ => {}
            }
            for host in &credential.inject.hosts {
                let reachable = self.allow.iter().any(|a| host.host_covered_by(a))
                    || self.rules.iter().any(|r| host.host_covered_by(&r.host));
                if !reachable {
                    return Err(NetworkIssue::new(
                        &at,
                        format!(
                            "network.credential[{i}]: `{host}` is not allowed by network.allow or a network.rule, so `{name}` could never be sent there"
                        ),
                    ));
                }
                if self
                    .dangerously_tunnel
                    .iter()
                    .any(|t| host.host_covered_by(t) || t.host_covered_by(host))
                {
                    return Err(NetworkIssue::new(
                        &at,
                        format!(
                            "network.credential[{i}]: `{host}` is a dangerously_tunnel host; credentials are injected only into inspected traffic"
                        ),
                    ));
                }
            }
        }
        for limit in [self.budget.total, self.budget.per_host]
            .into_iter()
            .flatten()
        {
            if limit.0 == 0 {
                return Err(NetworkIssue::new(&["[network.budget]"], "network.budget: a budget of 0 bytes forbids all traffic; remove the grants instead".into()));
            }
        }
        Ok(())
    }

    /// Whether the section grants anything beyond the task's own loopback.
    pub fn grants_egress(&self) -> bool {
        !self.allow.is_empty() || !self.rules.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Network, String> {
        #[derive(Deserialize)]
        struct Wrap {
            network: Network,
        }
        toml::from_str::<Wrap>(text)
            .map(|w| w.network)
            .map_err(|e| e.message().to_owned())
    }

    #[test]
    fn host_patterns() {
        let p = HostPattern::parse("*.Example.com.").unwrap();
        assert_eq!(p.host, HostName::Suffix("example.com".into()));
        assert!(p.matches_host("a.example.com"));
        assert!(p.matches_host("a.b.example.com"));
        assert!(!p.matches_host("example.com"));
        assert!(!p.matches_host("badexample.com"));
        assert!(p.matches("a.example.com", 443, &[443]));
        assert!(!p.matches("a.example.com", 80, &[443]));
        let p = HostPattern::parse("[::1]:8443").unwrap();
        assert_eq!(p.to_string(), "[::1]:8443");
        assert!(p.matches("::1", 8443, &[]));
        assert!(p.matches("[::1]", 8443, &[]));
        let p = HostPattern::parse("127.0.0.1:80").unwrap();
        assert_eq!(p.host, HostName::Ip("127.0.0.1".parse().unwrap()));
        for bad in [
            "",
            "https://x.com",
            "a*.com",
            "*",
            "x.com:0",
            "x.com:99999",
            "::1",
            "a b",
            "-a.com",
            "x.com/path",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
        assert!(
            HostPattern::parse("a.com")
                .unwrap()
                .host_covered_by(&HostPattern::parse("a.com:80").unwrap())
        );
        assert!(
            HostPattern::parse("*.a.b.com")
                .unwrap()
                .host_covered_by(&HostPattern::parse("*.b.com").unwrap())
        );
        assert!(
            !HostPattern::parse("*.b.com")
                .unwrap()
                .host_covered_by(&HostPattern::parse("x.b.com").unwrap())
        );
    }

    #[test]
    fn private_entries() {
        let r = PrivateEntry::parse("10.0.0.0/8").unwrap();
        assert!(r.contains("10.200.0.1".parse().unwrap()));
        assert!(!r.contains("11.0.0.1".parse().unwrap()));
        assert!(
            PrivateEntry::parse("127.0.0.1")
                .unwrap()
                .contains("127.0.0.1".parse().unwrap())
        );
        assert!(
            PrivateEntry::parse("fd00::/8")
                .unwrap()
                .contains("fd12::1".parse().unwrap())
        );
        assert_eq!(
            PrivateEntry::parse("Git.Internal").unwrap(),
            PrivateEntry::Name("git.internal".into())
        );
        assert!(
            PrivateEntry::parse("10.0.0.1/8")
                .unwrap_err()
                .contains("10.0.0.0/8")
        );
        assert!(PrivateEntry::parse("x/8").is_err());
        assert!(
            PrivateEntry::parse("0.0.0.0/0")
                .unwrap()
                .contains("1.2.3.4".parse().unwrap())
        );
    }

    #[test]
    fn globs() {
        assert!(glob_match("refs/heads/remit/*", "refs/heads/remit/a/b"));
        assert!(!glob_match("refs/heads/remit/*", "refs/heads/main"));
        assert!(glob_match("/a/*/c", "/a/b/x/c"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("/a", "/ab"));
        let p = PathPattern("/v1/messages".into());
        assert!(p.matches("/v1/messages?beta=true"));
        assert!(!p.matches("/v1/messages/x"));
    }

    #[test]
    fn a_full_section() {
        let n = parse(
            r#"
[network]
allow = ["api.anthropic.com", "*.pythonhosted.org", "127.0.0.1:8080"]
private = ["127.0.0.1", "git.internal"]
[[network.rule]]
host = "api.github.com"
methods = ["GET"]
paths = ["/repos/acme/*"]
[[network.credential]]
name = "anthropic"
env = "ANTHROPIC_API_KEY"
from = { env = "ANTHROPIC_API_KEY" }
inject = { hosts = ["api.anthropic.com"], header = "X-Api-Key" }
[network.git]
push = ["refs/heads/remit/*"]
[network.budget]
total = "1GiB"
"#,
        )
        .unwrap();
        n.validate().unwrap();
        assert_eq!(n.rules[0].ports, vec![443]);
        assert_eq!(
            n.credentials[0].inject.placement(),
            Some(Placement::Header("x-api-key".into()))
        );
        assert_eq!(n.budget.total, Some(ByteSize(1 << 30)));
        assert!(n.grants_egress());
    }

    #[test]
    fn bad_sections() {
        for (text, needle) in [
            ("[network]\nallow = [\"https://x.com\"]", "not a URL"),
            (
                "[[network.rule]]\nhost = \"x.com\"\nmethods = [\"get\"]",
                "not an HTTP method",
            ),
            (
                "[[network.rule]]\nhost = \"x.com\"\nmethods = [\"CONNECT\"]",
                "allow the host",
            ),
            (
                "[[network.rule]]\nhost = \"x.com\"\npaths = [\"v1\"]",
                "start with `/`",
            ),
            (
                "[[network.rule]]\nhost = \"x.com\"\npaths = [\"/a/../b\"]",
                "segment",
            ),
            ("[network.git]\npush = [\"main\"]", "refs/heads/main"),
            (
                "[[network.credential]]\nname = \"a\"\nfrom = { keyring = \"x\" }\ninject = { hosts = [\"x.com\"], header = \"x\" }",
                "unknown variant",
            ),
            ("[network]\nprivat = []", "unknown field"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
        for (text, needle) in [
            (
                "[network]\nallow = [\"x.com\"]\n[[network.rule]]\nhost = \"x.com\"\nmethods = [\"GET\"]",
                "has no effect",
            ),
            (
                "[network]\nallow = [\"*.x.com\"]\n[[network.rule]]\nhost = \"a.x.com\"",
                "has no effect",
            ),
            ("[[network.rule]]\nhost = \"x.com:80\"", "ports"),
            (
                "[network]\ndangerously_tunnel = [\"x.com\"]",
                "not in network.allow",
            ),
            (
                "[network]\nallow = [\"x.com\"]\n[[network.credential]]\nname = \"k\"\nfrom = { env = \"K\" }\ninject = { hosts = [\"y.com\"], header = \"x-key\" }",
                "could never be sent",
            ),
            (
                "[network]\nallow = [\"x.com\"]\n[[network.credential]]\nname = \"k\"\nfrom = { env = \"K\" }\ninject = { hosts = [\"x.com\"], header = \"x-key\", query = \"k\" }",
                "exactly one",
            ),
            (
                "[network]\nallow = [\"x.com\"]\n[[network.credential]]\nname = \"k\"\nfrom = { env = \"K\" }\ninject = { hosts = [\"x.com\"], header = \"host\" }",
                "cannot carry",
            ),
            (
                "[network]\nallow = [\"x.com\"]\ndangerously_tunnel = [\"x.com\"]\n[[network.credential]]\nname = \"k\"\nfrom = { env = \"K\" }\ninject = { hosts = [\"x.com\"], header = \"x-key\" }",
                "tunnel",
            ),
            ("[network.budget]\ntotal = 0", "0 bytes"),
            (
                "[network]\nallow = [\"up.x.com\"]\n[[network.rule]]\nhost = \"*.x.com\"\nmethods = [\"GET\"]",
                "lies inside",
            ),
        ] {
            let n = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let issue = n.validate().unwrap_err();
            assert!(issue.message.contains(needle), "{text}: {}", issue.message);
            assert!(!issue.message.contains('\n'));
        }
    }
}
