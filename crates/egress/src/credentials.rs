//! Credentials: real values read on the host, phantoms of the same shape for the task, and
//! the swap of one for the other on requests to bound destinations.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use base64::Engine as _;
use remit_types::network::{BasicPart, HostPattern, Network, Placement};

use crate::error::ConfigError;

/// A secret value. Its `Debug` never shows it; its bytes are zeroed when it is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Drop for Secret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl Secret {
    /// Wrap a value.
    pub fn new(value: impl Into<Vec<u8>>) -> Secret {
        Secret(value.into())
    }

    /// The bytes (handle with care).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// One credential, ready for the proxy.
#[derive(Clone)]
pub struct CredentialValue {
    /// Its name (`network.credential[].name`).
    pub name: String,
    /// The variable that holds the phantom inside the task.
    pub env: Option<String>,
    /// The real value.
    pub real: Secret,
    /// The phantom the task sees.
    pub phantom: String,
    /// Where the real value may go.
    pub hosts: Vec<HostPattern>,
    /// Where in a request it goes.
    pub placement: Placement,
}

impl fmt::Debug for CredentialValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialValue")
            .field("name", &self.name)
            .field("env", &self.env)
            .field("hosts", &self.hosts)
            .field("placement", &self.placement)
            .finish_non_exhaustive()
    }
}

impl CredentialValue {
    /// Build one from a real value, generating its phantom.
    pub fn new(
        name: &str,
        env: Option<String>,
        real: Secret,
        hosts: Vec<HostPattern>,
        placement: Placement,
    ) -> Result<CredentialValue, ConfigError> {
        let bad = |reason: &str| ConfigError::BadCredential {
            name: name.to_owned(),
            reason: reason.to_owned(),
        };
        let text = std::str::from_utf8(real.expose()).map_err(|_| bad("the value is not text"))?;
        if text.len() < remit_scan::KnownSecrets::MIN_LEN {
            return Err(bad(
                "the value is shorter than 8 characters, too short to be told apart from ordinary text",
            ));
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad(
                "the value has spaces, control or non-ASCII characters and cannot travel in a header",
            ));
        }
        let phantom = phantom_of(text)
            .ok_or_else(|| bad("the value has fewer than 8 letters or digits to randomise"))?;
        Ok(CredentialValue {
            name: name.to_owned(),
            env,
            real,
            phantom,
            hosts,
            placement,
        })
    }

    /// Whether the real value may be sent to `host:port`.
    pub fn bound_to(&self, host: &str, port: u16) -> bool {
        self.hosts
            .iter()
            .any(|p| p.matches(host, port, &[remit_types::network::DEFAULT_PORT]))
    }

    /// Whether the real value may be injected into a request to `host:port`, sent over TLS
    /// or not. A host pattern without a port means HTTPS on 443: over plain HTTP (`GET
    /// http://api.example:443/`) it binds nothing, so the value never travels in the clear
    /// unless the remit names a plain endpoint's port itself (`127.0.0.2:8080`).
    pub fn injects_into(&self, host: &str, port: u16, tls: bool) -> bool {
        self.hosts.iter().any(|p| {
            p.matches(host, port, &[remit_types::network::DEFAULT_PORT])
                && (tls
                    || p.port
                        .is_some_and(|q| q != remit_types::network::DEFAULT_PORT))
        })
    }
}

/// Read every credential of a `[network]` section: environment variables from `env`
/// (the supervisor's environment), files relative to `base_dir` (`~/` is `home`). A
/// credential `from = { vault = … }` is refused here: use [`read_credentials_with`].
pub fn read_credentials(
    network: &Network,
    env: &BTreeMap<String, String>,
    base_dir: &Path,
    home: Option<&Path>,
) -> Result<Vec<CredentialValue>, ConfigError> {
    read_credentials_with(network, env, base_dir, home, &|name: &str| {
        Err(format!("the vault was not opened to read secret `{name}`"))
    })
}

/// [`read_credentials`], with `vault` reading `from = { vault = "name" }` secrets (the
/// supervisor passes `remit_vault::Vault::get`; this crate never opens the vault itself).
pub fn read_credentials_with(
    network: &Network,
    env: &BTreeMap<String, String>,
    base_dir: &Path,
    home: Option<&Path>,
    vault: &dyn Fn(&str) -> Result<Secret, String>,
) -> Result<Vec<CredentialValue>, ConfigError> {
    let mut out = Vec::new();
    for credential in &network.credentials {
        let name = &credential.name;
        let real = match &credential.from {
            remit_types::network::CredentialSource::Env(var) => env
                .get(var)
                .cloned()
                .ok_or_else(|| ConfigError::MissingEnv {
                    name: name.clone(),
                    var: var.clone(),
                })?
                .into_bytes(),
            remit_types::network::CredentialSource::File(file) => {
                let path = match (file.strip_prefix("~/"), home) {
                    (Some(rest), Some(home)) => home.join(rest),
                    _ => base_dir.join(file),
                };
                let mut bytes = std::fs::read(&path).map_err(|e| ConfigError::ReadFile {
                    name: name.clone(),
                    path: path.display().to_string(),
                    reason: remit_types::remit::io_reason(&e),
                })?;
                while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    bytes.pop();
                }
                bytes
            }
            remit_types::network::CredentialSource::Vault(secret) => vault(secret)
                .map_err(|reason| ConfigError::BadCredential {
                    name: name.clone(),
                    reason: format!("cannot read vault secret `{secret}`: {reason}"),
                })?
                .expose()
                .to_vec(),
        };
        let placement =
            credential
                .inject
                .placement()
                .ok_or_else(|| ConfigError::BadCredential {
                    name: name.clone(),
                    reason: "`inject` needs exactly one of `header`, `basic` or `query`".into(),
                })?;
        out.push(CredentialValue::new(
            name,
            credential.env.clone(),
            Secret::new(real),
            credential.inject.hosts.clone(),
            placement,
        )?);
    }
    Ok(out)
}

/// A value of the same shape as `real`: the prefix up to its last `-` or `_` within the
/// first 16 characters kept (`sk-ant-api03-`, `ghp_`), every other letter or digit replaced
/// by a random one of the same class. `None` when fewer than 8 characters would change.
pub fn phantom_of(real: &str) -> Option<String> {
    let head: String = real.chars().take(16).collect();
    let keep = head.rfind(['-', '_']).map(|i| i + 1).unwrap_or(0);
    let (prefix, rest) = real.split_at(keep.min(real.len()));
    let changeable = rest.chars().filter(|c| c.is_ascii_alphanumeric()).count();
    if changeable < 8 {
        return None;
    }
    for _ in 0..8 {
        let mut random = vec![0u8; rest.len()];
        getrandom::fill(&mut random).ok()?;
        let mut out = String::with_capacity(real.len());
        out.push_str(prefix);
        for (c, r) in rest.chars().zip(random) {
            let r = usize::from(r);
            out.push(match c {
                '0'..='9' => char::from(b"0123456789"[r % 10]),
                'a'..='z' => char::from(b"abcdefghijklmnopqrstuvwxyz"[r % 26]),
                'A'..='Z' => char::from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"[r % 26]),
                other => other,
            });
        }
        if out != real {
            return Some(out);
        }
    }
    None
}

/// Replace the phantom by the real value inside a header value.
pub(crate) fn swap_header(value: &[u8], credential: &CredentialValue) -> Vec<u8> {
    replace_all(
        value,
        credential.phantom.as_bytes(),
        credential.real.expose(),
    )
}

/// Replace the phantom inside `Authorization: Basic …`; `None` if it is not there.
pub(crate) fn swap_basic(
    value: &[u8],
    credential: &CredentialValue,
    part: BasicPart,
) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(value).ok()?;
    let (scheme, encoded) = text.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    let (user, pass) = (&decoded[..colon], &decoded[colon + 1..]);
    let phantom = credential.phantom.as_bytes();
    let real = credential.real.expose();
    let (user, pass) = match part {
        BasicPart::Password if pass == phantom => (user.to_vec(), real.to_vec()),
        BasicPart::Username if user == phantom => (real.to_vec(), pass.to_vec()),
        _ => return None,
    };
    let mut joined = user;
    joined.push(b':');
    joined.extend_from_slice(&pass);
    let mut out = b"Basic ".to_vec();
    out.extend_from_slice(
        base64::engine::general_purpose::STANDARD
            .encode(joined)
            .as_bytes(),
    );
    Some(out)
}

/// Replace the phantom as the value of query parameter `param` in `path_and_query`; `None`
/// if it is not there.
pub(crate) fn swap_query(
    path_and_query: &str,
    credential: &CredentialValue,
    param: &str,
) -> Option<String> {
    let (path, query) = path_and_query.split_once('?')?;
    let mut changed = false;
    let parts: Vec<String> = query
        .split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if percent_decode(k) == param.as_bytes()
                && (v == credential.phantom || percent_decode(v) == credential.phantom.as_bytes())
            {
                changed = true;
                format!("{k}={}", percent_encode(credential.real.expose()))
            } else {
                pair.to_owned()
            }
        })
        .collect();
    changed.then(|| format!("{path}?{}", parts.join("&")))
}

/// Whether the query of `path_and_query` has parameter `param` equal to `value`.
pub(crate) fn query_has(path_and_query: &str, param: &str, value: &[u8]) -> bool {
    let Some((_, query)) = path_and_query.split_once('?') else {
        return false;
    };
    query.split('&').any(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        percent_decode(k) == param.as_bytes()
            && (v.as_bytes() == value || percent_decode(v) == value)
    })
}

pub(crate) fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

pub(crate) fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn replace_all(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    if needle.is_empty() {
        return haystack.to_vec();
    }
    let mut out = Vec::with_capacity(haystack.len() + with.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(real: &str, placement: Placement) -> CredentialValue {
        CredentialValue::new(
            "k",
            None,
            Secret::new(real),
            vec![HostPattern::parse("api.test").unwrap()],
            placement,
        )
        .unwrap()
    }

    #[test]
    fn a_credential_is_injected_in_the_clear_only_where_the_remit_names_the_port() {
        let at = |pattern: &str| {
            CredentialValue::new(
                "k",
                None,
                Secret::new("sk-live-Z3kq9PmW2xR7tY4uV8nB6cD1eF5gH0jA"),
                vec![HostPattern::parse(pattern).unwrap()],
                Placement::Header("x-api-key".into()),
            )
            .unwrap()
        };
        let https_only = at("api.test");
        assert!(https_only.injects_into("api.test", 443, true));
        assert!(!https_only.injects_into("api.test", 443, false));
        assert!(!at("api.test:443").injects_into("api.test", 443, false));
        let plain = at("127.0.0.2:8080");
        assert!(plain.injects_into("127.0.0.2", 8080, false));
        assert!(plain.injects_into("127.0.0.2", 8080, true));
        assert!(!plain.injects_into("127.0.0.2", 8081, false));
    }

    #[test]
    fn phantoms_keep_the_shape() {
        for real in [
            "sk-ant-api03-AbCdEf0123456789xyz-_QQ",
            "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",
            "AKIAIOSFODNN7EXAMPLE",
        ] {
            let p = phantom_of(real).unwrap();
            assert_ne!(p, real);
            assert_eq!(p.len(), real.len());
            for (a, b) in p.chars().zip(real.chars()) {
                assert_eq!(a.is_ascii_digit(), b.is_ascii_digit());
                assert_eq!(a.is_ascii_lowercase(), b.is_ascii_lowercase());
                assert_eq!(a.is_ascii_uppercase(), b.is_ascii_uppercase());
            }
        }
        assert!(phantom_of("sk-ant-api03-abc").is_none());
        assert!(
            phantom_of("sk-ant-api03-AbCdEf0123")
                .unwrap()
                .starts_with("sk-ant-api03-")
        );
        assert!(
            CredentialValue::new(
                "k",
                None,
                Secret::new("short"),
                vec![],
                Placement::Query("k".into())
            )
            .is_err()
        );
        assert!(format!("{:?}", Secret::new("hunter2hunter2")).contains("14 bytes"));
    }

    #[test]
    fn vault_sources_need_the_vault() {
        let remit = remit_types::remit::parse(
            "[network]\nallow = [\"api.test\"]\n[[network.credential]]\nname = \"k\"\nenv = \"K\"\nfrom = { vault = \"api-key\" }\ninject = { hosts = [\"api.test\"], header = \"x-key\" }\n",
            "t",
            ".".into(),
        )
        .unwrap();
        let network = &remit.remit.network;
        let env = BTreeMap::new();
        let err = read_credentials(network, &env, Path::new("."), None).unwrap_err();
        assert!(err.to_string().contains("vault"), "{err}");
        let got = read_credentials_with(network, &env, Path::new("."), None, &|name| {
            assert_eq!(name, "api-key");
            Ok(Secret::new("vault-value-0123456789"))
        })
        .unwrap();
        assert_eq!(got[0].real.expose(), b"vault-value-0123456789");
        assert_ne!(got[0].phantom, "vault-value-0123456789");
        let err = read_credentials_with(network, &env, Path::new("."), None, &|_| {
            Err("no secret `api-key`".into())
        })
        .unwrap_err();
        assert!(err.to_string().contains("api-key"), "{err}");
    }

    #[test]
    fn swaps() {
        let c = cred(
            "real-value-0123456789",
            Placement::Header("authorization".into()),
        );
        let header = format!("Bearer {}", c.phantom);
        assert_eq!(
            swap_header(header.as_bytes(), &c),
            b"Bearer real-value-0123456789"
        );

        let c = cred(
            "real-value-0123456789",
            Placement::Basic(BasicPart::Password),
        );
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("x-token:{}", c.phantom))
        );
        let swapped = swap_basic(basic.as_bytes(), &c, BasicPart::Password).unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(&swapped[6..])
            .unwrap();
        assert_eq!(decoded, b"x-token:real-value-0123456789");
        assert!(swap_basic(basic.as_bytes(), &c, BasicPart::Username).is_none());

        let c = cred("real/value+0123456789", Placement::Query("key".into()));
        let path = format!("/v1/x?a=1&key={}&b=2", c.phantom);
        assert_eq!(
            swap_query(&path, &c, "key").unwrap(),
            "/v1/x?a=1&key=real%2Fvalue%2B0123456789&b=2"
        );
        assert!(query_has(&path, "key", c.phantom.as_bytes()));
        assert!(swap_query("/v1/x?key=other", &c, "key").is_none());
        assert_eq!(percent_decode("a%2Fb+c%zz%4"), b"a/b c%zz%4");
    }
}
