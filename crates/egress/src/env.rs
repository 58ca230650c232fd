//! What a task's environment needs to use the proxy.

use std::net::SocketAddr;

use crate::ca::Tls;
use crate::credentials::CredentialValue;

/// Variables to set in the task and the CA bundle to mount in it.
#[derive(Clone, PartialEq, Eq)]
pub struct TaskEnvironment {
    /// `(name, value)` pairs: the proxy variables in both cases (`HTTP_PROXY`, `http_proxy`,
    /// …; curl reads only the lower-case `http_proxy`), `NO_PROXY` for the task's own
    /// loopback, the CA bundle for every common TLS stack, and each credential's phantom.
    pub vars: Vec<(String, String)>,
    /// PEM: the host's root certificates and the task CA. Mount it read-only at the path
    /// given to [`crate::Egress::task_environment`]. It holds no private key.
    pub ca_bundle: Vec<u8>,
}

impl std::fmt::Debug for TaskEnvironment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Phantoms are not secret, but keep records tidy: names only.
        f.debug_struct("TaskEnvironment")
            .field(
                "vars",
                &self.vars.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("ca_bundle", &self.ca_bundle.len())
            .finish()
    }
}

/// Variables naming the CA bundle, one per TLS stack that reads its own.
pub const CA_VARIABLES: [&str; 9] = [
    "SSL_CERT_FILE",
    "NODE_EXTRA_CA_CERTS",
    "REQUESTS_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "CARGO_HTTP_CAINFO",
    "PIP_CERT",
    "CURL_CA_BUNDLE",
    "AWS_CA_BUNDLE",
    // npm passes its own CA list to its proxy agent, ignoring NODE_EXTRA_CA_CERTS there.
    "NPM_CONFIG_CAFILE",
];

pub(crate) fn task_environment(
    tls: &Tls,
    credentials: &[CredentialValue],
    proxy: SocketAddr,
    bundle: &str,
) -> TaskEnvironment {
    let url = format!("http://{proxy}");
    let mut vars = Vec::new();
    for name in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
        vars.push((name.to_owned(), url.clone()));
        vars.push((name.to_ascii_lowercase(), url.clone()));
    }
    // The task's own loopback is its own (a private network namespace): reach it directly.
    let no_proxy = "localhost,127.0.0.1,::1".to_owned();
    vars.push(("NO_PROXY".into(), no_proxy.clone()));
    vars.push(("no_proxy".into(), no_proxy));
    // Node's built-in fetch and http honour the proxy variables only when asked.
    vars.push(("NODE_USE_ENV_PROXY".into(), "1".into()));
    for name in CA_VARIABLES {
        vars.push((name.to_owned(), bundle.to_owned()));
    }
    for credential in credentials {
        if let Some(env) = &credential.env {
            vars.push((env.clone(), credential.phantom.clone()));
        }
    }
    let mut ca_bundle = tls.roots_pem.clone().into_bytes();
    ca_bundle.extend_from_slice(tls.ca().cert_pem().as_bytes());
    TaskEnvironment { vars, ca_bundle }
}
