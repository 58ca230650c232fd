//! Package registry publish detection, from the reviewed table in `data/publish.toml`.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::credentials::percent_decode;
use crate::error::ConfigError;

const TABLE: &str = include_str!("../data/publish.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    endpoint: Vec<Endpoint>,
}

/// One publishing endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Endpoint {
    pub(crate) registry: String,
    pub(crate) operation: String,
    method: String,
    path: String,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    package: Option<String>,
}

/// The publish endpoints.
#[derive(Debug, Clone)]
pub(crate) struct Endpoints(Vec<Endpoint>);

/// A request that matched an endpoint by method and path.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub(crate) endpoint: Endpoint,
    pub(crate) captures: BTreeMap<String, String>,
}

impl Endpoints {
    pub(crate) fn builtin() -> Result<Endpoints, ConfigError> {
        let table: Table =
            toml::from_str(TABLE).map_err(|e| ConfigError::Publish(e.message().to_owned()))?;
        Ok(Endpoints(table.endpoint))
    }

    /// Endpoints matching by method, path and content type (body markers are checked later).
    pub(crate) fn candidates(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
    ) -> Vec<Candidate> {
        let path = path.split('?').next().unwrap_or(path);
        let segments: Vec<&str> = path.split('/').skip(1).collect();
        let mut out = Vec::new();
        for endpoint in &self.0 {
            if endpoint.method != method {
                continue;
            }
            if let Some(prefix) = &endpoint.content_type
                && !content_type.to_ascii_lowercase().starts_with(prefix)
            {
                continue;
            }
            let pattern: Vec<&str> = endpoint.path.split('/').skip(1).collect();
            let mut captures = BTreeMap::new();
            if match_segments(&pattern, &segments, &mut captures) {
                out.push(Candidate {
                    endpoint: endpoint.clone(),
                    captures,
                });
            }
        }
        out
    }
}

impl Candidate {
    /// Whether the body must be read to decide.
    pub(crate) fn needs_body(&self) -> bool {
        self.endpoint.body.is_some() || self.endpoint.package.is_some()
    }

    /// Whether the body (if needed) confirms the endpoint.
    ///
    /// A JSON body is also read as JSON: a registry decodes `"vers\u0069ons"` as
    /// `"versions"`, so a key spelled with escapes must confirm as well as a plain one.
    pub(crate) fn confirmed_by(&self, body: &[u8]) -> bool {
        let Some(marker) = &self.endpoint.body else {
            return true;
        };
        memchr_find(body, marker.as_bytes())
            || (self.endpoint.package.as_deref() == Some("npm-json")
                && serde_json::from_slice::<serde_json::Value>(body)
                    .ok()
                    .as_ref()
                    .and_then(serde_json::Value::as_object)
                    .is_some_and(|object| {
                        marker
                            .strip_prefix('"')
                            .and_then(|m| m.strip_suffix('"'))
                            .is_some_and(|key| object.contains_key(key))
                    }))
    }

    /// The effect's arguments: `registry`, `operation`, `package`, `version`.
    pub(crate) fn args(&self, body: &[u8]) -> BTreeMap<String, String> {
        let mut args = BTreeMap::new();
        args.insert("registry".to_owned(), self.endpoint.registry.clone());
        args.insert("operation".to_owned(), self.endpoint.operation.clone());
        let decode = |s: &String| String::from_utf8_lossy(&percent_decode(s)).into_owned();
        let mut package = self.captures.get("package").map(decode);
        let mut version = self.captures.get("version").map(decode);
        let (p, v) = match self.endpoint.package.as_deref() {
            Some("npm-json") => npm_json(body),
            Some("pypi-form") => (form_field(body, "name"), form_field(body, "version")),
            Some("crates-json") => crates_json(body),
            _ => (None, None),
        };
        package = package.or(p);
        version = version.or(v);
        args.insert("package".to_owned(), package.unwrap_or_default());
        args.insert("version".to_owned(), version.unwrap_or_default());
        args
    }
}

fn match_segments(
    pattern: &[&str],
    path: &[&str],
    captures: &mut BTreeMap<String, String>,
) -> bool {
    match (pattern.first(), path.first()) {
        (None, None) => true,
        (Some(&"**"), _) => (0..=path.len()).any(|skip| {
            let mut trial = captures.clone();
            let ok = match_segments(&pattern[1..], &path[skip..], &mut trial);
            if ok {
                *captures = trial;
            }
            ok
        }),
        (Some(p), Some(s)) => {
            let ok = if let Some(name) = p.strip_prefix('{').and_then(|n| n.strip_suffix('}')) {
                if s.is_empty() {
                    false
                } else {
                    captures.insert(name.to_owned(), (*s).to_owned());
                    true
                }
            } else if *p == "*" {
                !s.is_empty()
            } else if let Some(ext) = p.strip_prefix('*') {
                s.len() > ext.len() && s.ends_with(ext)
            } else {
                p == s
            };
            ok && match_segments(&pattern[1..], &path[1..], captures)
        }
        _ => false,
    }
}

fn memchr_find(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn npm_json(body: &[u8]) -> (Option<String>, Option<String>) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return (None, None);
    };
    let name = value
        .get("name")
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    let version = value
        .get("versions")
        .and_then(|v| v.as_object())
        .and_then(|m| m.keys().next_back().cloned());
    (name, version)
}

fn crates_json(body: &[u8]) -> (Option<String>, Option<String>) {
    let Some(len) = body
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    else {
        return (None, None);
    };
    let Some(json) = usize::try_from(len).ok().and_then(|l| body.get(4..4 + l)) else {
        return (None, None);
    };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(json) else {
        return (None, None);
    };
    (
        value
            .get("name")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
        value
            .get("vers")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
    )
}

/// The value of a multipart form field (`name="<field>"`), short text only.
fn form_field(body: &[u8], field: &str) -> Option<String> {
    let marker = format!("name=\"{field}\"");
    let at = body
        .windows(marker.len())
        .position(|w| w == marker.as_bytes())?
        + marker.len();
    let rest = body.get(at..)?;
    let start = rest.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let value = rest.get(start..)?;
    let end = value.windows(2).position(|w| w == b"\r\n")?;
    let text = String::from_utf8_lossy(value.get(..end.min(256))?).into_owned();
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(method: &str, path: &str, ct: &str) -> Vec<String> {
        Endpoints::builtin()
            .unwrap()
            .candidates(method, path, ct)
            .iter()
            .map(|c| format!("{}:{}", c.endpoint.registry, c.endpoint.operation))
            .collect()
    }

    #[test]
    fn table() {
        assert_eq!(ops("PUT", "/left-pad", "application/json"), ["npm:publish"]);
        assert_eq!(
            ops("PUT", "/@scope%2fpkg", "application/json"),
            ["npm:publish"]
        );
        assert!(ops("GET", "/left-pad", "").is_empty());
        assert_eq!(ops("PUT", "/api/v1/crates/new", ""), ["crates:publish"]);
        assert_eq!(
            ops("DELETE", "/api/v1/crates/serde/1.0.0/yank", ""),
            ["crates:yank"]
        );
        assert_eq!(
            ops("POST", "/legacy/", "multipart/form-data; boundary=x"),
            ["pypi:publish"]
        );
        assert!(ops("POST", "/legacy/", "application/json").is_empty());
        assert_eq!(
            ops("PUT", "/repo/com/acme/x/1.0/x-1.0.jar", ""),
            ["maven:publish"]
        );
        assert_eq!(
            ops("PUT", "/v2/acme/app/manifests/latest", ""),
            ["oci:publish"]
        );
        assert_eq!(
            ops("PUT", "/-/package/left-pad/dist-tags/latest", ""),
            ["npm:tag"]
        );
        assert!(ops("PUT", "/v2/acme/app/blobs/uploads/x", "").is_empty());
        let c = &Endpoints::builtin()
            .unwrap()
            .candidates("PUT", "/api/v1/crates/new", "")[0];
        let mut body = Vec::new();
        let json = br#"{"name":"demo","vers":"0.1.0"}"#;
        body.extend_from_slice(&u32::try_from(json.len()).unwrap().to_le_bytes());
        body.extend_from_slice(json);
        let args = c.args(&body);
        assert_eq!(args["package"], "demo");
        assert_eq!(args["version"], "0.1.0");
        let form = b"--x\r\nContent-Disposition: form-data; name=\":action\"\r\n\r\nfile_upload\r\n--x\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\ndemo\r\n--x\r\nContent-Disposition: form-data; name=\"version\"\r\n\r\n1.2\r\n--x--";
        let c = &Endpoints::builtin().unwrap().candidates(
            "POST",
            "/legacy/",
            "multipart/form-data; boundary=x",
        )[0];
        assert!(c.confirmed_by(form));
        assert_eq!(c.args(form)["package"], "demo");
        assert_eq!(c.args(form)["version"], "1.2");
        // A field name without quotes, as lenient form parsers take it.
        assert!(c.confirmed_by(
            b"--x\r\nContent-Disposition: form-data; name=:action\r\n\r\nfile_upload\r\n--x--"
        ));
    }

    #[test]
    fn a_packument_is_recognised_however_its_keys_are_spelled() {
        let c = &Endpoints::builtin()
            .unwrap()
            .candidates("PUT", "/demo", "application/json")[0];
        assert!(c.confirmed_by(br#"{"name":"demo","versions":{"1.0.0":{}}}"#));
        // Escapes a registry decodes: still a publish, with its version read.
        let escaped = br#"{"name":"demo","vers\u0069ons":{"1.0.1":{}}}"#;
        assert!(c.confirmed_by(escaped));
        assert_eq!(c.args(escaped)["version"], "1.0.1");
        assert!(c.confirmed_by(br#"{"name":"demo","\u0076ersions":{}}"#));
        // Harmless twins: other documents stay ordinary requests.
        assert!(!c.confirmed_by(br#"{"name":"demo","description":"v"}"#));
        assert!(!c.confirmed_by(br#"{"name":"demo","nested":{"vers\u0069ons":{}}}"#));
        assert!(!c.confirmed_by(b"not json"));
    }
}
