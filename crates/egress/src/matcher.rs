//! One automaton over every value the proxy must recognise: the real credentials, the
//! task's other known secrets (its identity token), and the phantoms.

use remit_scan::{Encoding, KnownSecrets};

use crate::credentials::{CredentialValue, Secret};
use crate::error::ConfigError;

/// What a pattern stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Label {
    /// The real value of credential `i`.
    Real(usize),
    /// Known secret `i` (identity token, …).
    Known(usize),
    /// The phantom of credential `i`.
    Phantom(usize),
    /// Bound secret `i` (a git lease's token): allowed to its hosts only.
    Bound(usize),
}

/// A match that blocks a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hit {
    pub(crate) label: Label,
    pub(crate) encoding: Encoding,
}

/// The matcher and what its patterns stand for.
pub(crate) struct Matcher {
    known: Option<KnownSecrets>,
    labels: Vec<Label>,
    pub(crate) credentials: Vec<CredentialValue>,
    known_names: Vec<String>,
    bound: Vec<crate::BoundSecret>,
}

impl std::fmt::Debug for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matcher")
            .field("patterns", &self.labels.len())
            .finish_non_exhaustive()
    }
}

/// A match anywhere, with its label and position.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Found {
    pub(crate) label: Label,
    pub(crate) encoding: Encoding,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

impl Matcher {
    pub(crate) fn new(
        credentials: Vec<CredentialValue>,
        known: &[(String, Secret)],
        bound: Vec<crate::BoundSecret>,
    ) -> Result<Matcher, ConfigError> {
        let mut values: Vec<Vec<u8>> = Vec::new();
        let mut labels = Vec::new();
        for (i, c) in credentials.iter().enumerate() {
            values.push(c.real.expose().to_vec());
            labels.push(Label::Real(i));
            values.push(c.phantom.as_bytes().to_vec());
            labels.push(Label::Phantom(i));
        }
        for (i, (name, value)) in known.iter().enumerate() {
            if value.expose().len() < KnownSecrets::MIN_LEN {
                return Err(ConfigError::BadCredential {
                    name: name.clone(),
                    reason: "shorter than 8 bytes, too short to be recognised".into(),
                });
            }
            values.push(value.expose().to_vec());
            labels.push(Label::Known(i));
        }
        for (i, b) in bound.iter().enumerate() {
            if b.value.expose().len() < KnownSecrets::MIN_LEN {
                return Err(ConfigError::BadCredential {
                    name: b.name.clone(),
                    reason: "shorter than 8 bytes, too short to be recognised".into(),
                });
            }
            values.push(b.value.expose().to_vec());
            labels.push(Label::Bound(i));
        }
        let known_secrets = if values.is_empty() {
            None
        } else {
            Some(KnownSecrets::new(values).map_err(|e| ConfigError::Matcher(e.to_string()))?)
        };
        Ok(Matcher {
            known: known_secrets,
            labels,
            credentials,
            known_names: known.iter().map(|(n, _)| n.clone()).collect(),
            bound,
        })
    }

    /// Whether there is anything to look for.
    pub(crate) fn is_empty(&self) -> bool {
        self.known.is_none()
    }

    /// The longest encoded form (hold-back for streams).
    pub(crate) fn longest(&self) -> usize {
        self.known.as_ref().map_or(0, KnownSecrets::longest)
    }

    /// Every match in `bytes`.
    pub(crate) fn find_all(&self, bytes: &[u8]) -> Vec<Found> {
        let Some(known) = &self.known else {
            return Vec::new();
        };
        known
            .find_iter(bytes)
            .filter_map(|m| {
                self.labels.get(m.secret).map(|label| Found {
                    label: *label,
                    encoding: m.encoding,
                    start: m.start,
                    end: m.end,
                })
            })
            .collect()
    }

    /// The first match that must block a body to `host:port`: a real value or known secret
    /// anywhere; outbound, also a phantom of a credential not bound to the destination.
    pub(crate) fn scan(&self, bytes: &[u8], host: &str, port: u16, outbound: bool) -> Option<Hit> {
        self.find_all(bytes)
            .into_iter()
            .find_map(|f| match f.label {
                Label::Real(_) | Label::Known(_) => Some(Hit {
                    label: f.label,
                    encoding: f.encoding,
                }),
                Label::Phantom(i)
                    if outbound
                        && !self
                            .credentials
                            .get(i)
                            .is_some_and(|c| c.bound_to(host, port)) =>
                {
                    Some(Hit {
                        label: f.label,
                        encoding: f.encoding,
                    })
                }
                Label::Phantom(_) => None,
                Label::Bound(i) if self.bound_allows(i, host, port) => None,
                Label::Bound(_) => Some(Hit {
                    label: f.label,
                    encoding: f.encoding,
                }),
            })
    }

    /// Whether bound secret `i` may go to `host:port`.
    pub(crate) fn bound_allows(&self, i: usize, host: &str, port: u16) -> bool {
        self.bound.get(i).is_some_and(|b| {
            b.hosts
                .iter()
                .any(|p| p.matches(host, port, &[remit_types::network::DEFAULT_PORT]))
        })
    }

    /// Where bound secret `i` may go, for messages.
    pub(crate) fn bound_hosts(&self, i: usize) -> String {
        self.bound.get(i).map_or_else(String::new, |b| {
            b.hosts
                .iter()
                .map(|h| format!("`{h}`"))
                .collect::<Vec<_>>()
                .join(", ")
        })
    }

    /// A name for what a label stands for, for messages: `the credential \`gh\``.
    pub(crate) fn describe(&self, label: Label) -> String {
        match label {
            Label::Real(i) | Label::Phantom(i) => match self.credentials.get(i) {
                Some(c) => format!("the credential `{}`", c.name),
                None => "a credential".into(),
            },
            Label::Known(i) => self
                .known_names
                .get(i)
                .cloned()
                .unwrap_or_else(|| "a secret".into()),
            Label::Bound(i) => self
                .bound
                .get(i)
                .map_or_else(|| "a secret".into(), |b| b.name.clone()),
        }
    }

    /// `text` with every real value or known secret replaced by `[REDACTED:<what>]`.
    pub(crate) fn redact(&self, text: &str) -> String {
        let found: Vec<Found> = self
            .find_all(text.as_bytes())
            .into_iter()
            .filter(|f| !matches!(f.label, Label::Phantom(_)))
            .collect();
        if found.is_empty() {
            return text.to_owned();
        }
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut at = 0;
        for f in found {
            if f.start < at {
                continue;
            }
            out.extend_from_slice(&bytes[at..f.start]);
            let name = match f.label {
                Label::Real(i) => self
                    .credentials
                    .get(i)
                    .map_or("credential".into(), |c| c.name.clone()),
                Label::Known(i) => self
                    .known_names
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| "secret".into()),
                Label::Bound(i) => self
                    .bound
                    .get(i)
                    .map_or("secret".into(), |b| b.name.clone()),
                Label::Phantom(_) => String::new(),
            };
            out.extend_from_slice(format!("[REDACTED:{name}]").as_bytes());
            at = f.end;
        }
        out.extend_from_slice(&bytes[at.min(bytes.len())..]);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// How an encoding is named in messages.
pub(crate) fn encoding_name(encoding: Encoding) -> &'static str {
    match encoding {
        Encoding::Raw => "as is",
        Encoding::Base64 => "base64-encoded",
        Encoding::Base64Url => "base64url-encoded",
        Encoding::UrlEncoded => "URL-encoded",
        Encoding::Hex => "hex-encoded",
        Encoding::JsonEscaped => "JSON-escaped",
    }
}
