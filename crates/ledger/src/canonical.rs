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
