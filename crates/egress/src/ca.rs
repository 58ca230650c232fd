//! The per-task certificate authority and the TLS configurations built on it.
//!
//! A [`TaskCa`] is generated when a task starts. Its certificate goes into the task's CA
//! bundle; its private key stays in the supervisor's memory and is never written anywhere.
//! The proxy mints one leaf certificate per intercepted host name, signed by the task CA,
//! all sharing one leaf key generated with the CA.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::error::ConfigError;

/// The most host certificates kept at once; the cache is emptied when it is full.
const LEAF_CACHE: usize = 1024;

/// A certificate authority that exists for one task.
pub struct TaskCa {
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
    leaf_key: KeyPair,
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
}

impl fmt::Debug for TaskCa {
    // Never the keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskCa")
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl TaskCa {
    /// Generate a CA (ECDSA P-256) named after `task`, valid from an hour ago (clock skew)
    /// for `validity`.
    pub fn generate(task: &str, validity: Duration) -> Result<TaskCa, ConfigError> {
        let ca_key = KeyPair::generate().map_err(|e| ConfigError::Ca(e.to_string()))?;
        let leaf_key = KeyPair::generate().map_err(|e| ConfigError::Ca(e.to_string()))?;
        let now = time::OffsetDateTime::now_utc();
        let not_before = now - time::Duration::hours(1);
        let not_after = now + time::Duration::try_from(validity).unwrap_or(time::Duration::days(1));
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        let task: String = task
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(48)
            .collect();
        name.push(DnType::CommonName, format!("remit task CA {task}"));
        name.push(DnType::OrganizationName, "remit");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = not_before;
        params.not_after = not_after;
        params.serial_number = Some(random_serial()?);
        let cert = params
            .self_signed(&ca_key)
            .map_err(|e| ConfigError::Ca(e.to_string()))?;
        Ok(TaskCa {
            cert_der: cert.der().clone(),
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, ca_key),
            leaf_key,
            not_before,
            not_after,
        })
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The CA certificate, PEM (what the task's bundle holds).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A leaf certificate chain for `host` (a name or an address), and its key.
    fn mint(
        &self,
        host: &str,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), ConfigError> {
        let mut params = CertificateParams::default();
        let san = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                host.to_owned()
                    .try_into()
                    .map_err(|e: rcgen::Error| ConfigError::Ca(e.to_string()))?,
            ),
        };
        params.subject_alt_names = vec![san];
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, host);
        params.distinguished_name = name;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = self.not_before;
        params.not_after = self.not_after;
        params.serial_number = Some(random_serial()?);
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&self.leaf_key, &self.issuer)
            .map_err(|e| ConfigError::Ca(e.to_string()))?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key.serialize_der()));
        Ok((vec![cert.der().clone(), self.cert_der.clone()], key))
    }
}

fn random_serial() -> Result<rcgen::SerialNumber, ConfigError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| ConfigError::Ca(e.to_string()))?;
    bytes[0] &= 0x7f;
    Ok(rcgen::SerialNumber::from_slice(&bytes))
}

/// The crypto provider every TLS configuration here uses.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS towards the agent (minted certificates) and towards origins (verified).
pub(crate) struct Tls {
    ca: TaskCa,
    servers: Mutex<HashMap<String, Arc<ServerConfig>>>,
    /// ALPN `h2`, `http/1.1`.
    pub(crate) client_h2: Arc<ClientConfig>,
    /// ALPN `http/1.1` only.
    pub(crate) client_h1: Arc<ClientConfig>,
    /// The host's roots, PEM, for the task's bundle.
    pub(crate) roots_pem: String,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

impl Tls {
    pub(crate) fn new(
        ca: TaskCa,
        host_roots: bool,
        extra_roots: &[CertificateDer<'static>],
    ) -> Result<Tls, ConfigError> {
        let mut roots = RootCertStore::empty();
        let mut roots_pem = String::new();
        if host_roots {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                let pem = pem_encode("CERTIFICATE", cert.as_ref());
                if roots.add(cert).is_ok() {
                    roots_pem.push_str(&pem);
                }
            }
        }
        for cert in extra_roots {
            roots
                .add(cert.clone())
                .map_err(|e| ConfigError::Ca(format!("extra root: {e}")))?;
        }
        let roots = Arc::new(roots);
        let client = |alpn: Vec<Vec<u8>>| -> Result<Arc<ClientConfig>, ConfigError> {
            let mut config = ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| ConfigError::Ca(e.to_string()))?
                .with_root_certificates(Arc::clone(&roots))
                .with_no_client_auth();
            config.alpn_protocols = alpn;
            Ok(Arc::new(config))
        };
        Ok(Tls {
            ca,
            servers: Mutex::new(HashMap::new()),
            client_h2: client(vec![b"h2".to_vec(), b"http/1.1".to_vec()])?,
            client_h1: client(vec![b"http/1.1".to_vec()])?,
            roots_pem,
        })
    }

    pub(crate) fn ca(&self) -> &TaskCa {
        &self.ca
    }

    /// The server configuration presenting a certificate for `host`.
    pub(crate) fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, ConfigError> {
        if let Ok(cache) = self.servers.lock()
            && let Some(config) = cache.get(host)
        {
            return Ok(Arc::clone(config));
        }
        let (chain, key) = self.ca.mint(host)?;
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::Ca(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| ConfigError::Ca(e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let config = Arc::new(config);
        if let Ok(mut cache) = self.servers.lock() {
            if cache.len() >= LEAF_CACHE {
                cache.clear();
            }
            cache.insert(host.to_owned(), Arc::clone(&config));
        }
        Ok(config)
    }
}

/// The TLS name for a host (a DNS name or an address).
pub(crate) fn server_name(host: &str) -> Option<ServerName<'static>> {
    ServerName::try_from(host.to_owned()).ok()
}

/// PEM text of one DER object.
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
