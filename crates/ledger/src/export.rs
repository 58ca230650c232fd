//! Export: JSON lines (the exact hashed bytes) and OCSF 1.3 events; one-line summaries.

use std::io::Write;

use remit_types::event::{Event, EventBody, Verdict};
use serde_json::{Value, json};

use crate::clock::parse_time;
use crate::error::{Error, Result};
use crate::reader::{LedgerReader, StoredEvent};
use crate::store::Query;

/// OCSF schema version the export follows.
pub const OCSF_VERSION: &str = "1.3.0";

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One event per line, the canonical JSON exactly as hashed (re-hashable by an auditor).
    Jsonl,
    /// One OCSF event per line.
    Ocsf,
}

impl std::str::FromStr for Format {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "jsonl" => Ok(Self::Jsonl),
            "ocsf" => Ok(Self::Ocsf),
            other => Err(Error::Invalid(format!(
                "unknown export format `{other}` (expected `jsonl` or `ocsf`)"
            ))),
        }
    }
}

/// Write the events matching `query` to `out` in `format`; returns how many were written.
pub fn export(
    reader: &mut LedgerReader,
    query: &Query,
    format: Format,
    out: &mut dyn Write,
) -> Result<u64> {
    let origin = reader.origin().to_owned();
    let mut count = 0u64;
    let mut line = Vec::with_capacity(1024);
    reader.scan(query, &mut |stored: StoredEvent| {
        line.clear();
        match format {
            Format::Jsonl => line.extend_from_slice(&stored.bytes),
            Format::Ocsf => serde_json::to_writer(&mut line, &ocsf(&origin, &stored.event))
                .map_err(|e| Error::Encode(e.to_string()))?,
        }
        line.push(b'\n');
        out.write_all(&line)
            .map_err(|e| Error::io("cannot write export", "<output>", e))?;
        count += 1;
        Ok(true)
    })?;
    out.flush()
        .map_err(|e| Error::io("cannot write export", "<output>", e))?;
    Ok(count)
}

fn epoch_ms(time: &str) -> u64 {
    parse_time(time)
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| u64::try_from(d.as_millis()).ok())
        .unwrap_or(0)
}

struct Class {
    uid: u32,
    name: &'static str,
    category_uid: u32,
    category_name: &'static str,
}

const PROCESS_ACTIVITY: Class = Class {
    uid: 1007,
    name: "Process Activity",
    category_uid: 1,
    category_name: "System Activity",
};
const DETECTION_FINDING: Class = Class {
    uid: 2004,
    name: "Detection Finding",
    category_uid: 2,
    category_name: "Findings",
};
const AUTHENTICATION: Class = Class {
    uid: 3002,
    name: "Authentication",
    category_uid: 3,
    category_name: "Identity & Access Management",
};
const NETWORK_ACTIVITY: Class = Class {
    uid: 4001,
    name: "Network Activity",
    category_uid: 4,
    category_name: "Network Activity",
};
const HTTP_ACTIVITY: Class = Class {
    uid: 4002,
    name: "HTTP Activity",
    category_uid: 4,
    category_name: "Network Activity",
};
const API_ACTIVITY: Class = Class {
    uid: 6003,
    name: "API Activity",
    category_uid: 6,
    category_name: "Application Activity",
};

fn http_activity(method: &str) -> (u32, &'static str) {
    match method.to_ascii_uppercase().as_str() {
        "CONNECT" => (1, "Connect"),
        "DELETE" => (2, "Delete"),
        "GET" => (3, "Get"),
        "HEAD" => (4, "Head"),
        "OPTIONS" => (5, "Options"),
        "POST" => (6, "Post"),
        "PUT" => (7, "Put"),
        "TRACE" => (8, "Trace"),
        "PATCH" => (9, "Patch"),
        _ => (99, "Other"),
    }
}

fn split_host_port(target: &str) -> (String, Option<u16>) {
    match target.rsplit_once(':') {
        Some((host, port)) => match port.parse() {
            Ok(port) => (host.trim_matches(['[', ']']).to_owned(), Some(port)),
            Err(_) => (target.to_owned(), None),
        },
        None => (target.to_owned(), None),
    }
}

/// The OCSF 1.3 event for a ledger event. The original event rides along in
/// `unmapped.remit`, so nothing is lost in translation.
pub fn ocsf(origin: &str, event: &Event) -> Value {
    let mut out = json!({
        "time": epoch_ms(&event.time),
        "metadata": {
            "version": OCSF_VERSION,
            "product": {
                "name": "remit",
                "vendor_name": "remit",
                "version": env!("CARGO_PKG_VERSION"),
            },
            "uid": format!("{origin}#{}", event.seq),
            "log_name": origin,
            "sequence": event.seq,
            "correlation_uid": event.task,
        },
        "actor": {
            "user": { "name": event.agent, "type_id": 99, "type": "Other" },
            "app_name": "remit",
        },
        "unmapped": { "remit": event },
    });
    let (class, activity_id, activity_name, extra) = map_body(event);
    let mut severity_id = 1;
    let mut status_id = 1;
    let mut action_id = None;
    match &event.body {
        EventBody::Exec(e) if e.decision == Verdict::Deny => {
            (severity_id, status_id, action_id) = (3, 2, Some(2));
        }
        EventBody::Exec(_) => action_id = Some(1),
        EventBody::Decision(d) => match d.decision {
            Verdict::Allow => action_id = Some(1),
            Verdict::Deny => (severity_id, status_id, action_id) = (3, 2, Some(2)),
            Verdict::NeedsApproval => action_id = Some(99),
        },
        EventBody::ApprovalDenied(_)
        | EventBody::ApprovalExpired(_)
        | EventBody::ApprovalCancelled(_) => status_id = 2,
        EventBody::EffectFailed(_) => (severity_id, status_id) = (2, 2),
        EventBody::Violation(v) => {
            severity_id = 4;
            action_id = Some(if v.blocked { 2 } else { 1 });
        }
        EventBody::TaskEnd(t) if t.exit_code != Some(0) => status_id = 2,
        _ => {}
    }
    if let Value::Object(map) = &mut out {
        map.insert("class_uid".into(), json!(class.uid));
        map.insert("class_name".into(), json!(class.name));
        map.insert("category_uid".into(), json!(class.category_uid));
        map.insert("category_name".into(), json!(class.category_name));
        map.insert("activity_id".into(), json!(activity_id));
        map.insert("activity_name".into(), json!(activity_name));
        map.insert(
            "type_uid".into(),
            json!(u64::from(class.uid) * 100 + u64::from(activity_id)),
        );
        map.insert(
            "type_name".into(),
            json!(format!("{}: {activity_name}", class.name)),
        );
        map.insert("severity_id".into(), json!(severity_id));
        map.insert(
            "severity".into(),
            json!(match severity_id {
                1 => "Informational",
                2 => "Low",
                3 => "Medium",
                _ => "High",
            }),
        );
        map.insert("status_id".into(), json!(status_id));
        map.insert(
            "status".into(),
            json!(if status_id == 1 { "Success" } else { "Failure" }),
        );
        if let Some(action_id) = action_id {
            map.insert("action_id".into(), json!(action_id));
            map.insert(
                "action".into(),
                json!(match action_id {
                    1 => "Allowed",
                    2 => "Denied",
                    _ => "Other",
                }),
            );
        }
        map.insert("message".into(), json!(summarize(event)));
        if let Value::Object(extra) = extra {
            map.extend(extra);
        }
    }
    out
}

fn map_body(event: &Event) -> (Class, u32, &'static str, Value) {
    let effect_class =
        |kind: &str, attrs: &std::collections::BTreeMap<String, String>, target: &str| {
            let (host, port) = split_host_port(target);
            if kind.starts_with("http") {
                let method = attrs.get("method").map_or("", String::as_str);
                let (id, name) = http_activity(method);
                let path = attrs.get("path").cloned().unwrap_or_default();
                (
                    HTTP_ACTIVITY,
                    id,
                    name,
                    json!({
                        "http_request": {
                            "http_method": method,
                            "url": { "hostname": host, "port": port, "path": path },
                        },
                        "dst_endpoint": { "hostname": host, "port": port },
                    }),
                )
            } else if kind.starts_with("net") || kind.starts_with("tcp") {
                (
                    NETWORK_ACTIVITY,
                    1,
                    "Open",
                    json!({ "dst_endpoint": { "hostname": host, "port": port } }),
                )
            } else {
                (
                    API_ACTIVITY,
                    99,
                    "Other",
                    json!({
                        "api": { "operation": kind },
                        "resources": [{ "name": target, "type": kind }],
                    }),
                )
            }
        };
    match &event.body {
        EventBody::Exec(e) => (
            PROCESS_ACTIVITY,
            1,
            "Launch",
            json!({
                "process": {
                    "pid": e.pid,
                    "cmd_line": e.argv.join(" "),
                    "file": { "path": e.argv.first().cloned().unwrap_or_default(), "type_id": 1 },
                    "parent_process": { "pid": e.ppid },
                    "cwd": e.cwd,
                },
                "device": { "type_id": 0, "type": "Unknown" },
            }),
        ),
        EventBody::Decision(d) => {
            effect_class(&d.effect.kind, &d.effect.attributes, &d.effect.target)
        }
        EventBody::EffectStarted(e) => {
            effect_class(&e.effect.kind, &e.effect.attributes, &e.effect.target)
        }
        EventBody::CredentialIssued(c) => (
            AUTHENTICATION,
            3,
            "Authentication Ticket",
            json!({
                "user": { "name": c.name, "uid": c.lease },
                "service": { "name": c.destination.clone().unwrap_or_default() },
            }),
        ),
        EventBody::CredentialRevoked(c) => (
            AUTHENTICATION,
            99,
            "Other",
            json!({ "user": { "name": c.name, "uid": c.lease } }),
        ),
        EventBody::Violation(v) => (
            DETECTION_FINDING,
            1,
            "Create",
            json!({
                "finding_info": {
                    "uid": format!("{}#{}", event.task, event.seq),
                    "title": v.category,
                    "desc": v.detail,
                    "types": [v.category],
                },
            }),
        ),
        body => (
            API_ACTIVITY,
            99,
            "Other",
            json!({ "api": { "operation": body.kind() } }),
        ),
    }
}

fn short(hex: &str) -> &str {
    hex.get(..12).unwrap_or(hex)
}

/// One human line about an event (for `remit ledger show`).
pub fn summarize(event: &Event) -> String {
    match &event.body {
        EventBody::RunAuthorized(r) => format!(
            "requested by {} (owner {}), remit `{}` {}, identity {}, {} permissions, {} secrets reachable{}",
            r.requester,
            r.owner,
            r.remit.name,
            short(&r.remit.sha256),
            r.identity,
            r.permissions.len(),
            r.secrets_reachable.len(),
            if r.degraded.is_empty() {
                String::new()
            } else {
                format!(", degraded: {}", r.degraded.join(", "))
            }
        ),
        EventBody::Exec(e) => format!(
            "{} `{}` pid {}{}",
            e.decision.as_str(),
            e.argv.join(" "),
            e.pid,
            e.rule
                .as_ref()
                .map(|r| format!(" (rule `{r}`)"))
                .unwrap_or_default()
        ),
        EventBody::Decision(d) => format!(
            "{} {} {}{}: {}",
            d.decision.as_str(),
            d.effect.kind,
            d.effect.target,
            d.policy
                .as_ref()
                .map(|p| format!(" (policy `{p}`)"))
                .unwrap_or_default(),
            d.reason
        ),
        EventBody::ApprovalRequested(a) => format!(
            "approval needed for {} {} from {} of [{}]",
            a.effect.kind,
            a.effect.target,
            a.required,
            a.approvers.join(", ")
        ),
        EventBody::ApprovalGranted(a) => {
            format!("approved by {} (effect {})", a.approver, a.effect_id)
        }
        EventBody::ApprovalDenied(a) => format!(
            "refused by {} (effect {}){}",
            a.approver,
            a.effect_id,
            a.reason
                .as_ref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
        EventBody::ApprovalExpired(a) => format!("approval expired (effect {})", a.effect_id),
        EventBody::ApprovalCancelled(a) => {
            format!("approval cancelled (effect {}): {}", a.effect_id, a.reason)
        }
        EventBody::EffectStarted(e) => {
            format!("about to perform {} {}", e.effect.kind, e.effect.target)
        }
        EventBody::EffectPerformed(e) => {
            format!("performed (effect {}): {}", e.effect_id, e.outcome)
        }
        EventBody::EffectFailed(e) => format!("failed (effect {}): {}", e.effect_id, e.error),
        EventBody::CredentialIssued(c) => format!(
            "credential `{}` leased as {} until {}{}",
            c.name,
            c.lease,
            c.expires,
            c.destination
                .as_ref()
                .map(|d| format!(" for {d}"))
                .unwrap_or_default()
        ),
        EventBody::CredentialRevoked(c) => format!(
            "credential `{}` lease {} revoked: {}",
            c.name, c.lease, c.reason
        ),
        EventBody::FileChanges(f) => format!(
            "{} added, {} modified, {} deleted{}",
            f.added,
            f.modified,
            f.deleted,
            f.diff_sha256
                .as_ref()
                .map(|d| format!(", diff {}", short(d)))
                .unwrap_or_default()
        ),
        EventBody::Violation(v) => format!(
            "{} {}: {}",
            if v.blocked { "blocked" } else { "flagged" },
            v.category,
            v.detail
        ),
        EventBody::TaskEnd(t) => format!(
            "ended ({:?}){}{}",
            t.reason,
            t.exit_code
                .map(|c| format!(", exit {c}"))
                .unwrap_or_default(),
            t.signal
                .map(|s| format!(", signal {s}"))
                .unwrap_or_default()
        )
        .to_lowercase(),
    }
}
