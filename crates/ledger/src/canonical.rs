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
pub fn body_json(body: &EventBody) -> Result<Vec<u8>> {
    serde_json_canonicalizer::to_vec(body).map_err(|e| Error::Encode(e.to_string()))
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

fn string(out: &mut Vec<u8>, value: &str) -> Result<()> {
    serde_json_canonicalizer::to_writer(&value, out).map_err(|e| Error::Encode(e.to_string()))
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
