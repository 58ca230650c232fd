//! RFC 8785 (JCS) canonical JSON of events.
//!
//! The body is canonicalised by `serde_json_canonicalizer` in the caller's thread; the writer
//! then wraps it in the envelope by hand, writing the envelope keys in their canonical order
//! (`agent`, `body`, `schema`, `seq`, `task`, `time`), which is byte-identical to
//! canonicalising the whole [`Event`] (a property test pins this).

use remit_types::event::{Event, EventBody};
use serde::Deserialize;

use crate::error::{Error, Result};

/// Canonical JSON of an event body.
///
/// Byte-identical to `serde_json_canonicalizer::to_vec(body)` (the tests pin it), about four
/// times faster: that serializer buffers every property separately and parses every key back
/// to sort it; this one builds the `serde_json::Value` tree once and writes it out sorted.
pub fn body_json(body: &EventBody) -> Result<Vec<u8>> {
    let value = serde_json::to_value(body).map_err(|e| Error::Encode(e.to_string()))?;
    let mut out = Vec::with_capacity(256);
    value_json(&mut out, &value)?;
    Ok(out)
}

/// Write `value` as RFC 8785 canonical JSON.
pub fn value_json(out: &mut Vec<u8>, value: &serde_json::Value) -> Result<()> {
    use serde_json::Value;
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => number(out, n)?,
        Value::String(s) => string(out, s)?,
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                value_json(out, item)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // RFC 8785 §3.2.3: properties sorted by the UTF-16 code units of their names.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            if !entries.is_sorted_by(|a, b| utf16_cmp(a.0, b.0).is_le()) {
                entries.sort_by(|a, b| utf16_cmp(a.0, b.0));
            }
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(out, key)?;
                out.push(b':');
                value_json(out, item)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn utf16_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    if a.is_ascii() && b.is_ascii() {
        a.as_bytes().cmp(b.as_bytes())
    } else {
        a.encode_utf16().cmp(b.encode_utf16())
    }
}

/// Integers of magnitude below 2^53 print as themselves in RFC 8785 (ECMAScript number
/// formatting); every other number goes through the reference serializer.
fn number(out: &mut Vec<u8>, n: &serde_json::Number) -> Result<()> {
    const EXACT: u64 = 1 << 53;
    if let Some(v) = n.as_u64().filter(|&v| v < EXACT) {
        out.extend_from_slice(v.to_string().as_bytes());
    } else if let Some(v) = n.as_i64().filter(|&v| v.unsigned_abs() < EXACT) {
        out.extend_from_slice(v.to_string().as_bytes());
    } else {
        serde_json_canonicalizer::to_writer(n, out).map_err(|e| Error::Encode(e.to_string()))?;
    }
    Ok(())
}

/// Canonical JSON of a whole event.
pub fn event_json(event: &Event) -> Result<Vec<u8>> {
    serde_json_canonicalizer::to_vec(event).map_err(|e| Error::Encode(e.to_string()))
}

/// Assemble the canonical JSON of an event from its parts and its canonical body.
pub fn assemble(
    out: &mut Vec<u8>,
    schema: u32,
    seq: u64,
    time: &str,
    task: &str,
    agent: &str,
    body: &[u8],
) -> Result<()> {
    out.clear();
    out.reserve(body.len() + task.len() + agent.len() + time.len() + 80);
    out.extend_from_slice(b"{\"agent\":");
    string(out, agent)?;
    out.extend_from_slice(b",\"body\":");
    out.extend_from_slice(body);
    out.extend_from_slice(b",\"schema\":");
    out.extend_from_slice(schema.to_string().as_bytes());
    out.extend_from_slice(b",\"seq\":");
    out.extend_from_slice(seq.to_string().as_bytes());
    out.extend_from_slice(b",\"task\":");
    string(out, task)?;
    out.extend_from_slice(b",\"time\":");
    string(out, time)?;
    out.push(b'}');
    Ok(())
}

/// A JSON string as RFC 8785 writes it: only `"`, `\\` and control characters escaped (the
/// short forms where JSON has them, else `\u00xx` in lower case), which is exactly
/// `serde_json`'s compact output.
fn string(out: &mut Vec<u8>, value: &str) -> Result<()> {
    if !value.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        // Nothing to escape (the common case: times, task ids, agent names).
        out.reserve(value.len() + 2);
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
        return Ok(());
    }
    serde_json::to_writer(out, value).map_err(|e| Error::Encode(e.to_string()))
}

/// The envelope fields of a stored event, read without decoding the body: what `verify`
/// checks against the columns copied out of it.
#[derive(Debug, Deserialize)]
pub(crate) struct Header<'a> {
    pub(crate) schema: u32,
    pub(crate) seq: u64,
    #[serde(borrow)]
    pub(crate) time: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) task: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) agent: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) body: KindOnly<'a>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct KindOnly<'a> {
    #[serde(borrow)]
    pub(crate) kind: std::borrow::Cow<'a, str>,
}

/// Decode a stored event fully (strict: unknown fields are refused).
pub fn decode(body: &[u8]) -> Result<Event> {
    serde_json::from_slice(body).map_err(|e| Error::Encode(format!("unreadable event: {e}")))
}

/// Check that `bytes` are canonical JSON (RFC 8785) exactly as the writer makes it: no
/// whitespace, object keys in canonical order and never twice, strings escaped only where
/// they must be and in the short forms, integers without leading zeros, signs or fractions
/// (other numbers as the reference serializer writes them). Returns where and why not.
///
/// A stored event that is valid JSON but not canonical was not written by a writer: its
/// bytes differ from what any reader re-encoding it would hash.
pub fn check_canonical(bytes: &[u8]) -> std::result::Result<(), String> {
    let mut parser = Parser { bytes, at: 0 };
    parser.value(0)?;
    if parser.at != bytes.len() {
        return Err(format!("bytes after the value at offset {}", parser.at));
    }
    Ok(())
}

/// Check a stored event as a writer writes it: canonical JSON ([`check_canonical`]), whose
/// keys are exactly the envelope's, and whose body, `kind` taken out, decodes strictly as
/// that kind's fields. The same answer as both checking the form and decoding it into an
/// [`Event`] (the envelope's fields' types are checked where its header is read), at a
/// fraction of the cost: the event is validated while its members are found, and decoding an
/// internally tagged enum would first copy the whole body into an intermediate tree.
pub fn check_schema(event: &[u8]) -> std::result::Result<(), String> {
    const ENVELOPE: [&str; 6] = ["agent", "body", "schema", "seq", "task", "time"];
    let mut parser = Parser {
        bytes: event,
        at: 0,
    };
    let members = parser.members()?;
    if parser.at != event.len() {
        return Err(format!("bytes after the value at offset {}", parser.at));
    }
    if members.len() != ENVELOPE.len() || members.iter().zip(ENVELOPE).any(|(m, k)| m.key != k) {
        let keys: Vec<&str> = members.iter().map(|m| &*m.key).collect();
        return Err(format!("envelope fields are {keys:?}, not {ENVELOPE:?}"));
    }
    let body = &event[members[1].value.clone()];
    let fields = Parser { bytes: body, at: 0 }.members()?;
    let Some(at) = fields.iter().position(|m| m.key == "kind") else {
        return Err("the body has no `kind`".into());
    };
    let kind: String = serde_json::from_slice(&body[fields[at].value.clone()])
        .map_err(|e| format!("`kind` is not a string: {e}"))?;
    // The body without its `kind` member (and one comma beside it).
    let member = &fields[at];
    let (cut_start, cut_end) = if at + 1 < fields.len() {
        (member.start, fields[at + 1].start)
    } else if at > 0 {
        (fields[at - 1].value.end, member.value.end)
    } else {
        (member.start, member.value.end)
    };
    let mut rest = Vec::with_capacity(body.len());
    rest.extend_from_slice(&body[..cut_start]);
    rest.extend_from_slice(&body[cut_end..]);
    macro_rules! strict {
        ($($name:literal => $kind:ident),* $(,)?) => {
            match kind.as_str() {
                $($name => serde_json::from_slice::<remit_types::event::$kind>(&rest).map(drop),)*
                other => return Err(format!("unknown kind `{other}`")),
            }
        };
    }
    strict!(
        "run_authorized" => RunAuthorized,
        "exec" => Exec,
        "decision" => Decision,
        "approval_requested" => ApprovalRequested,
        "approval_granted" => ApprovalGranted,
        "approval_denied" => ApprovalDenied,
        "approval_expired" => ApprovalExpired,
        "approval_cancelled" => ApprovalCancelled,
        "effect_started" => EffectStarted,
        "effect_performed" => EffectPerformed,
        "effect_failed" => EffectFailed,
        "credential_issued" => CredentialIssued,
        "credential_revoked" => CredentialRevoked,
        "file_changes" => FileChanges,
        "violation" => Violation,
        "task_end" => TaskEnd,
    )
    .map_err(|e| format!("`{kind}`: {e}"))
}

/// One member of an object: where it starts, its key, and where its value lies.
struct Member<'a> {
    start: usize,
    key: std::borrow::Cow<'a, str>,
    value: std::ops::Range<usize>,
}

/// Deepest nesting [`check_canonical`] follows (events nest three or four levels).
const MAX_DEPTH: usize = 64;

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Parser<'a> {
    fn fail<T>(&self, why: &str) -> std::result::Result<T, String> {
        Err(format!("{why} at offset {}", self.at))
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn expect(&mut self, byte: u8) -> std::result::Result<(), String> {
        if self.peek() != Some(byte) {
            return self.fail(&format!("expected `{}`", byte as char));
        }
        self.at += 1;
        Ok(())
    }

    fn value(&mut self, depth: usize) -> std::result::Result<(), String> {
        if depth > MAX_DEPTH {
            return self.fail("nested too deep");
        }
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(drop),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => self.fail("not a canonical value"),
        }
    }

    /// The members of the object here, in order.
    fn members(&mut self) -> std::result::Result<Vec<Member<'a>>, String> {
        self.expect(b'{')?;
        let mut out = Vec::new();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(out);
        }
        loop {
            let start = self.at;
            let key = self.string()?;
            if let Some(previous) = out.last()
                && utf16_cmp(&previous.key, &key) != std::cmp::Ordering::Less
            {
                return self.fail("keys out of canonical order or repeated");
            }
            self.expect(b':')?;
            let from = self.at;
            self.value(1)?;
            out.push(Member {
                start,
                key,
                value: from..self.at,
            });
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(out);
                }
                _ => return self.fail("expected `,` or `}`"),
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> std::result::Result<(), String> {
        if !self.bytes[self.at..].starts_with(word) {
            return self.fail("not a canonical value");
        }
        self.at += word.len();
        Ok(())
    }

    fn object(&mut self, depth: usize) -> std::result::Result<(), String> {
        self.expect(b'{')?;
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(());
        }
        let mut previous: Option<std::borrow::Cow<'a, str>> = None;
        loop {
            let key = self.string()?;
            if let Some(previous) = &previous
                && utf16_cmp(previous, &key) != std::cmp::Ordering::Less
            {
                return self.fail("keys out of canonical order or repeated");
            }
            self.expect(b':')?;
            self.value(depth + 1)?;
            previous = Some(key);
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return self.fail("expected `,` or `}`"),
            }
        }
    }

    fn array(&mut self, depth: usize) -> std::result::Result<(), String> {
        self.expect(b'[')?;
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(());
        }
        loop {
            self.value(depth + 1)?;
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return self.fail("expected `,` or `]`"),
            }
        }
    }

    /// A string in canonical form; its value (borrowed when it holds no escape).
    fn string(&mut self) -> std::result::Result<std::borrow::Cow<'a, str>, String> {
        self.expect(b'"')?;
        let start = self.at;
        let mut owned: Option<Vec<u8>> = None;
        loop {
            let Some(byte) = self.peek() else {
                return self.fail("unterminated string");
            };
            match byte {
                b'"' => {
                    let raw = &self.bytes[start..self.at];
                    self.at += 1;
                    return match owned {
                        None => std::str::from_utf8(raw)
                            .map(std::borrow::Cow::Borrowed)
                            .or_else(|_| self.fail("not UTF-8")),
                        Some(bytes) => String::from_utf8(bytes)
                            .map(std::borrow::Cow::Owned)
                            .or_else(|_| self.fail("not UTF-8")),
                    };
                }
                0..0x20 => return self.fail("unescaped control character"),
                b'\\' => {
                    let out = owned.get_or_insert_with(|| self.bytes[start..self.at].to_vec());
                    let decoded = match self.bytes.get(self.at + 1) {
                        Some(b'"') => b'"',
                        Some(b'\\') => b'\\',
                        Some(b'b') => 0x08,
                        Some(b'f') => 0x0c,
                        Some(b'n') => b'\n',
                        Some(b'r') => b'\r',
                        Some(b't') => b'\t',
                        Some(b'u') => {
                            // Only control characters without a short form are written as
                            // `\u00xx`, in lower case.
                            let hex = self.bytes.get(self.at + 2..self.at + 6).unwrap_or_default();
                            let value = std::str::from_utf8(hex)
                                .ok()
                                .filter(|h| {
                                    h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                                })
                                .and_then(|h| u8::from_str_radix(h, 16).ok())
                                .filter(|v| {
                                    *v < 0x20 && !matches!(v, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d)
                                });
                            let Some(value) = value.filter(|_| hex.len() == 4) else {
                                return self.fail("non-canonical \\u escape");
                            };
                            self.at += 4;
                            value
                        }
                        _ => return self.fail("non-canonical escape"),
                    };
                    out.push(decoded);
                    self.at += 2;
                }
                _ => {
                    if let Some(out) = owned.as_mut() {
                        out.push(byte);
                    }
                    self.at += 1;
                }
            }
        }
    }

    fn number(&mut self) -> std::result::Result<(), String> {
        let start = self.at;
        while matches!(
            self.peek(),
            Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
        ) {
            self.at += 1;
        }
        let token = &self.bytes[start..self.at];
        let digits = token.strip_prefix(b"-").unwrap_or(token);
        let plain = !digits.is_empty()
            && digits.iter().all(u8::is_ascii_digit)
            && (digits == b"0" || digits[0] != b'0')
            && token != b"-0";
        if plain && digits.len() <= 15 {
            return Ok(());
        }
        // Large or not an integer: as the writer would have written it.
        let same = serde_json::from_slice::<serde_json::Number>(token)
            .ok()
            .and_then(|n| {
                let mut out = Vec::new();
                number(&mut out, &n).ok().map(|()| out)
            })
            .is_some_and(|out| out == token);
        if same {
            Ok(())
        } else {
            self.at = start;
            self.fail("non-canonical number")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_canonical;

    #[test]
    fn only_the_writers_form_is_canonical() {
        for good in [
            r#"{"a":"\u001f\n\"\\","b":[1,-2,0,9007199254740991],"c":{},"d":[],"e":null,"f":true}"#,
            r#"{"":1,"a":false,"é":"x","😀":"y"}"#,
            "[]",
            "\"text\"",
        ] {
            assert_eq!(check_canonical(good.as_bytes()), Ok(()), "{good}");
        }
        for bad in [
            r#"{"a":1, "b":2}"#,
            r#"{ "a":1}"#,
            r#"{"b":1,"a":2}"#,
            r#"{"a":1,"a":2}"#,
            r#"{"a":"\/"}"#,
            r#"{"a":"\u0041"}"#,
            r#"{"a":"\u001F"}"#,
            r#"{"a":"\u000a"}"#,
            "{\"a\":\"\t\"}",
            r#"{"a":01}"#,
            r#"{"a":-0}"#,
            r#"{"a":1.0}"#,
            r#"{"a":1e2}"#,
            r#"{"a":9007199254740993}"#,
            r#"{"a":1}x"#,
            r#"{"a":1}"#.trim_end_matches('}'),
            r#"{"a":tru}"#,
        ] {
            assert!(check_canonical(bad.as_bytes()).is_err(), "{bad}");
        }
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(check_canonical(deep.as_bytes()).is_err());
    }

    /// `check_schema` answers as a strict decode into an `Event` does, on events of several
    /// kinds (the kind first, in the middle, last in its body) and on every kind of damage.
    #[test]
    fn the_schema_check_agrees_with_a_strict_decode() {
        use remit_types::event::*;
        let event = |body: EventBody| Event {
            schema: SCHEMA_VERSION,
            seq: 7,
            time: "2026-12-07T00:00:00.000000Z".into(),
            task: "t".into(),
            agent: "a".into(),
            body,
        };
        let samples = [
            event(EventBody::ApprovalExpired(ApprovalExpired {
                effect_id: "e".into(),
            })),
            event(EventBody::ApprovalCancelled(ApprovalCancelled {
                effect_id: "e".into(),
                reason: "r".into(),
            })),
            event(EventBody::Exec(Exec {
                argv: vec!["ls".into()],
                cwd: "/w".into(),
                pid: 3,
                ppid: 1,
                decision: Verdict::Allow,
                rule: None,
            })),
            event(EventBody::TaskEnd(TaskEnd {
                exit_code: Some(0),
                signal: None,
                reason: EndReason::Exited,
                detail: None,
                counts: TaskCounts::default(),
            })),
        ];
        let strict = |bytes: &[u8]| serde_json::from_slice::<Event>(bytes).is_ok();
        for sample in samples {
            let bytes = super::event_json(&sample).unwrap();
            let text = String::from_utf8(bytes.clone()).unwrap();
            assert_eq!(check_canonical(&bytes), Ok(()), "{text}");
            assert_eq!(super::check_schema(&bytes), Ok(()), "{text}");
            // Not canonical: refused by the schema check on its own.
            for form in [
                text.replacen(":", ": ", 1),
                text.replacen("\"agent\":\"a\",", "", 1),
                format!("{text} "),
                text.replacen("\"seq\":7", "\"seq\":07", 1),
                text.replacen("\"schema\":1,\"seq\":7", "\"seq\":7,\"schema\":1", 1),
            ] {
                assert!(super::check_schema(form.as_bytes()).is_err(), "{form}");
            }
            let kind = sample.body.kind();
            for damaged in [
                text.replacen("\"agent\":", "\"agenz\":1,\"agent\":", 1),
                text.replacen("\"body\":{", "\"body\":{\"aaa\":1,", 1),
                text.replacen(&format!("\"kind\":\"{kind}\""), "\"kind\":\"nothing\"", 1),
                text.replacen(&format!("\"kind\":\"{kind}\""), "\"kind\":7", 1),
                text.replacen(&format!(",\"kind\":\"{kind}\""), "", 1),
                text.replacen(&format!("\"kind\":\"{kind}\","), "", 1),
                text.replacen("\"effect_id\":\"e\"", "\"effect_id\":1", 1),
                text.replacen("\"argv\":[\"ls\"]", "\"argv\":\"ls\"", 1),
                text.replacen("\"exit_code\":0", "\"exit_code\":\"0\"", 1),
            ] {
                if damaged == text {
                    continue;
                }
                assert_eq!(
                    super::check_schema(damaged.as_bytes()).is_ok(),
                    strict(damaged.as_bytes()),
                    "{damaged}"
                );
                assert!(!strict(damaged.as_bytes()), "{damaged}");
            }
        }
    }
}
