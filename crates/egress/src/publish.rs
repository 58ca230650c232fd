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
    /// The request's `Content-Type` (a multipart form's boundary is there).
    pub(crate) content_type: String,
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
                    content_type: content_type.to_owned(),
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
                && marker
                    .strip_prefix('"')
                    .and_then(|m| m.strip_suffix('"'))
                    .is_some_and(|key| Top::read(body, Some(key)).is_some_and(|top| top.has_key)))
    }

    /// The effect's arguments: `registry`, `operation`, `package`, `version`; `Err` (one
    /// line) when the body cannot say which version it publishes.
    pub(crate) fn args(&self, body: &[u8]) -> Result<BTreeMap<String, String>, String> {
        let mut args = BTreeMap::new();
        args.insert("registry".to_owned(), self.endpoint.registry.clone());
        args.insert("operation".to_owned(), self.endpoint.operation.clone());
        let decode = |s: &String| String::from_utf8_lossy(&percent_decode(s)).into_owned();
        let mut package = self.captures.get("package").map(decode);
        let mut version = self.captures.get("version").map(decode);
        let (p, v) = match self.endpoint.package.as_deref() {
            Some("npm-json") => npm_json(body)?,
            Some("pypi-form") => pypi_form(&self.content_type, body)?,
            Some("crates-json") => crates_json(body),
            _ => (None, None),
        };
        package = package.or(p);
        version = version.or(v);
        args.insert("package".to_owned(), package.unwrap_or_default());
        args.insert("version".to_owned(), version.unwrap_or_default());
        Ok(args)
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
    !needle.is_empty() && find(haystack, needle).is_some()
}

/// Distinct keys of `versions` read, at most: an upload listing more is refused, as remit
/// could not tell which version it publishes.
const MAX_VERSION_KEYS: usize = 10_000;

/// The few top-level fields of a JSON object a registry upload is told by, read as the text
/// streams past: nothing of the document is built, so a body of hundreds of MiB costs no
/// more memory than its own bytes (a `serde_json::Value` of `[0,0,…]` costs sixteen times
/// them). Keys are compared decoded (`"vers\u0069ons"` is `versions`), as a registry reads
/// them; a repeated key counts as a registry's JSON reader counts it: the last value wins,
/// and a key keeps the place it first had.
#[derive(Debug)]
struct Top {
    name: Option<String>,
    vers: Option<String>,
    /// The last of `versions`'s keys, in the order they first appear; `Err` when there are
    /// more than [`MAX_VERSION_KEYS`].
    last_version: Result<Option<String>, TooManyVersions>,
    /// Whether the key asked about is there.
    has_key: bool,
}

/// More distinct versions than [`MAX_VERSION_KEYS`].
#[derive(Debug)]
struct TooManyVersions;

impl Top {
    fn read(body: &[u8], key: Option<&str>) -> Option<Top> {
        use serde::Deserializer as _;
        let mut reader = serde_json::Deserializer::from_slice(body);
        let top = (&mut reader).deserialize_map(TopVisitor { key }).ok()?;
        reader.end().ok()?;
        Some(top)
    }
}

struct TopVisitor<'k> {
    key: Option<&'k str>,
}

impl<'de> serde::de::Visitor<'de> for TopVisitor<'_> {
    type Value = Top;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
        let mut top = Top {
            name: None,
            vers: None,
            last_version: Ok(None),
            has_key: false,
        };
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if self.key == Some(key.as_ref()) {
                top.has_key = true;
            }
            let value = map.next_value::<Field>()?;
            match key.as_ref() {
                "name" => top.name = value.string(),
                "vers" => top.vers = value.string(),
                "versions" => {
                    top.last_version = match value {
                        Field::Object(newest) => newest,
                        _ => Ok(None),
                    }
                }
                _ => {}
            }
        }
        Ok(top)
    }
}

/// A value of the upload's top level, kept only as far as an upload is told by it: a string,
/// an object's newest distinct key, or nothing (what is inside is skipped, never built).
enum Field {
    String(String),
    Object(Result<Option<String>, TooManyVersions>),
    Other,
}

impl Field {
    fn string(self) -> Option<String> {
        match self {
            Field::String(s) => Some(s),
            _ => None,
        }
    }
}

impl<'de> serde::Deserialize<'de> for Field {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FieldVisitor)
    }
}

struct FieldVisitor;

impl<'de> serde::de::Visitor<'de> for FieldVisitor {
    type Value = Field;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E>(self, v: &str) -> Result<Field, E> {
        Ok(Field::String(v.to_owned()))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Field, E> {
        Ok(Field::Other)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Field, E> {
        Ok(Field::Other)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Field, E> {
        Ok(Field::Other)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Field, E> {
        Ok(Field::Other)
    }

    fn visit_unit<E>(self) -> Result<Field, E> {
        Ok(Field::Other)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Field, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Field::Other)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Field, A::Error> {
        // A key keeps the place it first had: the newest is the last one not seen before.
        let mut seen = std::collections::HashSet::new();
        let mut newest = None;
        let mut too_many = false;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            map.next_value::<serde::de::IgnoredAny>()?;
            if too_many || seen.contains(key.as_ref()) {
                continue;
            }
            if seen.len() == MAX_VERSION_KEYS {
                too_many = true;
                seen = std::collections::HashSet::new();
                continue;
            }
            newest = Some(key.clone().into_owned());
            seen.insert(key.into_owned());
        }
        Ok(Field::Object(if too_many {
            Err(TooManyVersions)
        } else {
            Ok(newest)
        }))
    }
}

/// Package and version of an npm upload; `Err` when it lists more versions than remit reads.
fn npm_json(body: &[u8]) -> Result<(Option<String>, Option<String>), String> {
    match Top::read(body, None) {
        Some(top) => match top.last_version {
            Ok(version) => Ok((top.name, version)),
            Err(TooManyVersions) => Err(format!(
                "the upload lists more than {MAX_VERSION_KEYS} versions; remit cannot tell which one it publishes"
            )),
        },
        // A registry that reads it would publish something remit cannot name.
        None => Err("the upload is not JSON remit can read".into()),
    }
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
    match Top::read(json, None) {
        Some(top) => (top.name, top.vers),
        None => (None, None),
    }
}

/// Package and version of a PyPI upload (`multipart/form-data`), read part by part as the
/// registry's form parser reads them: the boundary from `content_type`, each part's name
/// from its `Content-Disposition`. `Err` when the form cannot be told for certain: no
/// boundary, a `name` or `version` part given twice (or named with `name*`), a value that
/// is no plain package name or version. A delimiter is taken after a bare LF too, so a part
/// a stricter parser sees is never missed (at worst one more is seen, and a second `name`
/// refuses the upload).
fn pypi_form(content_type: &str, body: &[u8]) -> Result<(Option<String>, Option<String>), String> {
    let boundary = header_param(content_type, "boundary")
        .filter(|b| !b.is_empty() && b.len() <= 200)
        .ok_or("the upload's `Content-Type` names no multipart boundary")?;
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    // Where each delimiter line starts: at the start of the body or after a line feed.
    let mut starts = Vec::new();
    let mut from = 0;
    while let Some(at) = find(&body[from..], delimiter).map(|i| from + i) {
        if at == 0 || body[at - 1] == b'\n' {
            starts.push(at);
        }
        from = at + 1;
    }
    // A last part without its closing delimiter is read too.
    starts.push(body.len());
    let (mut name, mut version) = (None, None);
    for pair in starts.windows(2) {
        let (at, next) = (pair[0], pair[1]);
        let after = (at + delimiter.len()).min(next);
        if body[after..].starts_with(b"--") {
            break;
        }
        // The part: headers, a blank line, the content up to the line break before `next`.
        let part = &body[after..next];
        let Some((head, content)) = split_head(part) else {
            continue;
        };
        let content = content
            .strip_suffix(b"\r\n")
            .or_else(|| content.strip_suffix(b"\n"))
            .unwrap_or(content);
        let disposition = String::from_utf8_lossy(head)
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-disposition"))
            .map(|(_, v)| v.to_owned());
        let Some(disposition) = disposition else {
            continue;
        };
        if header_param(&disposition, "name*").is_some() {
            // RFC 5987's encoded form: a name remit would have to decode as the registry
            // does. No uploader writes it.
            return Err(
                "the upload names a part with `name*`; remit cannot tell what it publishes".into(),
            );
        }
        // A part whose name cannot be read (a quote left open) may be `name` to the
        // registry's parser: refused, not skipped.
        let field = header_param(&disposition, "name")
            .ok_or("a part of the upload has no name remit can read")?;
        let (slot, what) = match field.as_str() {
            "name" => (&mut name, "package name"),
            "version" => (&mut version, "version"),
            _ => continue,
        };
        if slot.is_some() {
            return Err(format!(
                "the upload gives its {what} more than once; remit cannot tell which one it publishes"
            ));
        }
        let plain = !content.is_empty()
            && content.len() <= 256
            && content
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"._-+!".contains(b));
        if !plain {
            return Err(format!(
                "the upload's {what} is not a plain name remit can read"
            ));
        }
        *slot = Some(String::from_utf8_lossy(content).into_owned());
    }
    // Every upload names both: one that does not is not decided as a publish of nothing.
    match (name, version) {
        (Some(name), Some(version)) => Ok((Some(name), Some(version))),
        _ => Err("the upload does not give its package name and version".into()),
    }
}

/// A part's headers and content, split at the first blank line (CRLF or LF).
fn split_head(part: &[u8]) -> Option<(&[u8], &[u8])> {
    let crlf = find(part, b"\r\n\r\n").map(|i| (i, 4));
    let lf = find(part, b"\n\n").map(|i| (i, 2));
    let (at, len) = match (crlf, lf) {
        (Some(a), Some(b)) => {
            if a.0 <= b.0 {
                a
            } else {
                b
            }
        }
        (a, b) => a.or(b)?,
    };
    Some((&part[..at], &part[at + len..]))
}

/// The value of parameter `name` (case-insensitive) of a header value such as
/// `form-data; name="version"` or `multipart/form-data; boundary=x`, quoted or not.
fn header_param(value: &str, name: &str) -> Option<String> {
    let mut rest = value.split_once(';')?.1;
    loop {
        let trimmed = rest.trim_start();
        let (key, after) = trimmed.split_once('=')?;
        let after = after.trim_start();
        let (found, tail) = if let Some(quoted) = after.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, next)) = chars.next() {
                            out.push(next);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => out.push(c),
                }
            }
            (out, &quoted[end?..])
        } else {
            let end = after.find(';').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        if key.trim().eq_ignore_ascii_case(name) {
            return Some(found);
        }
        rest = tail.split_once(';')?.1;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
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

    /// Package and version are read as a registry's JSON reader would: keys decoded, the last
    /// of a repeated key winning, a repeated version keeping its first place; anything else
    /// where a string or object belongs is no answer; past the limit of versions, none.
    #[test]
    fn uploads_are_read_like_a_registry_reads_them() {
        let read = |json: &str| npm_json(json.as_bytes()).unwrap();
        let some = |a: &str, b: &str| (Some(a.to_owned()), Some(b.to_owned()));
        assert_eq!(
            read(r#"{"name":"demo","versions":{"1.0.0":{"x":[1,{"y":2}]}}}"#),
            some("demo", "1.0.0")
        );
        assert_eq!(
            read(r#"{"name":"demo","versions":{"1.0.1":{}}}"#),
            some("demo", "1.0.1")
        );
        assert_eq!(
            read(r#"{"name":"first","name":"second","versions":{"1":{},"2":{},"1":{}}}"#),
            some("second", "2")
        );
        assert_eq!(
            read(r#"{"name":["demo"],"versions":"1.0.0"}"#),
            (None, None)
        );
        // Not JSON a registry reads as a packument: refused, not decided as a publish of
        // nothing.
        assert!(npm_json(br#"{"name":"demo"} trailing"#).is_err());
        assert!(npm_json(br#"["name","demo"]"#).is_err());
        // Past the versions remit reads, the upload is not told (and so refused); at the
        // limit, it is.
        let versions = |n: usize| {
            let many: Vec<String> = (0..n).map(|i| format!("\"{i}\":0")).collect();
            format!(r#"{{"name":"demo","versions":{{{}}}}}"#, many.join(","))
        };
        assert!(npm_json(versions(MAX_VERSION_KEYS + 1).as_bytes()).is_err());
        let last = (MAX_VERSION_KEYS - 1).to_string();
        assert_eq!(read(&versions(MAX_VERSION_KEYS)), some("demo", &last));
        let crates = |json: &[u8]| {
            let mut body = u32::try_from(json.len()).unwrap().to_le_bytes().to_vec();
            body.extend_from_slice(json);
            crates_json(&body)
        };
        assert_eq!(
            crates(br#"{"vers":"0.1.0","deps":[{"name":"x"}],"name":"demo"}"#),
            some("demo", "0.1.0")
        );
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
        let args = c.args(&body).unwrap();
        assert_eq!(args["package"], "demo");
        assert_eq!(args["version"], "0.1.0");
        let form = b"--x\r\nContent-Disposition: form-data; name=\":action\"\r\n\r\nfile_upload\r\n--x\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\ndemo\r\n--x\r\nContent-Disposition: form-data; name=\"version\"\r\n\r\n1.2\r\n--x--";
        let c = &Endpoints::builtin().unwrap().candidates(
            "POST",
            "/legacy/",
            "multipart/form-data; boundary=x",
        )[0];
        assert!(c.confirmed_by(form));
        assert_eq!(c.args(form).unwrap()["package"], "demo");
        assert_eq!(c.args(form).unwrap()["version"], "1.2");
        // A field name without quotes, as lenient form parsers take it.
        assert!(c.confirmed_by(
            b"--x\r\nContent-Disposition: form-data; name=:action\r\n\r\nfile_upload\r\n--x--"
        ));
    }

    /// A PyPI upload is read part by part, as the registry's form parser reads it: what one
    /// part's text says about another field is text, and a form that could be read two ways
    /// is refused.
    #[test]
    fn a_pypi_upload_is_read_as_its_parts() {
        let c = &Endpoints::builtin().unwrap().candidates(
            "POST",
            "/legacy/",
            "multipart/form-data; boundary=\"b0und\"",
        )[0];
        let part = |head: &str, value: &str| {
            format!("--b0und\r\nContent-Disposition: form-data; {head}\r\n\r\n{value}\r\n")
        };
        let form = |parts: &[String]| {
            let mut body = parts.concat();
            body.push_str("--b0und--\r\n");
            body.into_bytes()
        };
        let read = |body: &[u8]| {
            c.args(body)
                .map(|a| (a["package"].clone(), a["version"].clone()))
        };
        let action = part("name=\":action\"", "file_upload");
        // The attack: a description that spells out other fields. Only the real ones count.
        let decoy = part(
            "name=\"description\"",
            "x\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nallowed-pkg\r\nname=\"version\"\r\n\r\n1.0.0",
        );
        let real = [
            part("name=name", "victim-pkg"),
            part("NAME=\"version\"", "6.6.6"),
        ];
        let body = form(&[action.clone(), decoy, real[0].clone(), real[1].clone()]);
        assert!(c.confirmed_by(&body));
        assert_eq!(read(&body).unwrap(), ("victim-pkg".into(), "6.6.6".into()));
        // The harmless twin: an upload as twine sends it, a file part included.
        let file = part(
            "name=\"content\"; filename=\"demo-1.2.tar.gz\"",
            "\u{1f}\u{8b}binary\r\n--not-the-boundary",
        );
        let body = form(&[
            action.clone(),
            part("name=\"name\"", "demo"),
            part("name=\"version\"", "1.2"),
            file,
        ]);
        assert_eq!(read(&body).unwrap(), ("demo".into(), "1.2".into()));
        // Ways to make the registry read another name than remit: refused.
        for (body, why) in [
            (
                form(&[
                    part("name=\"name\"", "demo"),
                    part("name=\"name\"", "other"),
                ]),
                "more than once",
            ),
            (
                // A delimiter after a bare line feed: a part to some parsers, text to others.
                form(&[
                    part(
                        "name=\"summary\"",
                        "x\n--b0und\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nother",
                    ),
                    part("name=\"name\"", "demo"),
                ]),
                "more than once",
            ),
            (
                form(&[
                    part("name*=utf-8''name", "other"),
                    part("name=\"name\"", "demo"),
                ]),
                "name*",
            ),
            (
                form(&[part("name=\"name\"", "demo pkg")]),
                "not a plain name",
            ),
            (form(&[part("name=\"version\"", "")]), "not a plain name"),
            (
                form(&[
                    part("name=\"name", "other"),
                    part("name=\"name\"", "demo"),
                    part("name=\"version\"", "1"),
                ]),
                "no name remit can read",
            ),
            (
                form(&[action.clone(), part("name=\"name\"", "demo")]),
                "package name and version",
            ),
        ] {
            let err = read(&body).unwrap_err();
            assert!(
                err.contains(why),
                "{err}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        let bare =
            &Endpoints::builtin()
                .unwrap()
                .candidates("POST", "/legacy/", "multipart/form-data")[0];
        assert!(
            bare.args(&form(&[part("name=\"name\"", "demo")]))
                .unwrap_err()
                .contains("boundary")
        );
        // A JSON upload remit cannot read is refused, not decided as a publish of nothing.
        let npm = &Endpoints::builtin()
            .unwrap()
            .candidates("PUT", "/demo", "application/json")[0];
        assert!(npm.args(b"{\"name\":\"demo\",\"versions\":").is_err());
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
        assert_eq!(c.args(escaped).unwrap()["version"], "1.0.1");
        assert!(c.confirmed_by(br#"{"name":"demo","\u0076ersions":{}}"#));
        // Harmless twins: other documents stay ordinary requests.
        assert!(!c.confirmed_by(br#"{"name":"demo","description":"v"}"#));
        assert!(!c.confirmed_by(br#"{"name":"demo","nested":{"vers\u0069ons":{}}}"#));
        assert!(!c.confirmed_by(b"not json"));
    }
}
